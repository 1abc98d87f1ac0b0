"""Where the hooks report: SPOOL/hooks.log, and syslog (so the journal) when the host has one.

The hooks run under the runtime, where nobody reads stderr: this log and `ckpt hooks status`
are how an operator learns what happened.
"""
from __future__ import annotations

import logging
import logging.handlers
import os

from .spool import Spool

LOGGER = "ckpt.hooks"
SYSLOG_SOCKET = "/dev/log"


def setup(spool: Spool | None, *, syslog: bool = True) -> logging.Logger:
    """The hooks' logger, writing to the spool's log file (when there is a spool) and to syslog;
    set up once per process."""
    log = logging.getLogger(LOGGER)
    if log.handlers:
        return log
    log.setLevel(logging.INFO)
    log.propagate = False
    if spool is not None:
        _to_file(log, spool)
    if syslog and os.path.exists(SYSLOG_SOCKET):
        try:
            handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET,
                                                     facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            handler.setFormatter(logging.Formatter("ckpt-hooks[%(process)d]: %(message)s"))
            log.addHandler(handler)
        except OSError:
            pass
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


def _to_file(log: logging.Logger, spool: Spool) -> None:
    try:
        spool.ensure()
        os.close(os.open(spool.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
        handler = logging.FileHandler(spool.log_path)
    except OSError:
        return  # a read-only or missing spool must not break the checkpoint; syslog may still work
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    log.addHandler(handler)
