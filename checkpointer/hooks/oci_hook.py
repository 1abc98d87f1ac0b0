"""The OCI hook for `dev.ckpt.restore-from=REF`: what can honestly be done at container create.

OCI hooks run inside the runtime's `create`, for the container being created: by then the
runtime has made its namespaces and is about to start a fresh process. A restore has to be the
runtime's own `restore` instead of `create`, so no hook can turn one into the other, and a hook
cannot restore a *different* container either (it would live outside the engine's knowledge).

What the hook can do is stop a container that was meant to come back from a checkpoint from
silently starting from scratch: by default (`dev.ckpt.restore-policy=refuse`) it fails the
create and says how to restore instead; with `warn` it lets the fresh start go on and logs it.
The supported path is an orchestrator-side `ckpt restore --if-running-ok` (docs/hooks.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import CkptError
from ..reference import parse
from . import keys, logs
from .settings import HookSettings
from .spool import Spool

REFUSE, WARN = "refuse", "warn"


def verdict(state: dict) -> tuple[bool, str]:
    """(may the create go on, what to say) for the OCI state of the container being created."""
    annotations = state.get("annotations") or {}
    ref = str(annotations.get(keys.RESTORE_FROM, "")).strip()
    if not ref:
        return True, ""
    cid = str(state.get("id", "?"))
    policy = str(annotations.get(keys.RESTORE_POLICY, REFUSE)).strip().lower()
    try:
        parse(ref)
    except CkptError as exc:
        return policy == WARN, f"container {cid}: {keys.RESTORE_FROM}={ref!r} is not a valid reference ({exc})"
    how = f"ckpt restore --if-running-ok --name {cid} {ref}"
    if policy == WARN:
        return True, (f"container {cid} starts fresh although it carries {keys.RESTORE_FROM}={ref} "
                      f"({keys.RESTORE_POLICY}=warn); to bring back its checkpoint instead: {how}")
    return False, (f"container {cid} carries {keys.RESTORE_FROM}={ref}: an OCI hook cannot restore a checkpoint "
                   f"into the container being created, and it is not started fresh instead. Restore it with: "
                   f"{how} (or set {keys.RESTORE_POLICY}=warn to allow a fresh start)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ckpt-oci-hook")
    parser.add_argument("--config", type=Path)
    parser.add_argument("stage", nargs="?", default="createRuntime")
    args = parser.parse_args(argv)
    try:
        state = json.load(sys.stdin)
    except ValueError as exc:
        sys.stderr.write(f"ckpt-oci-hook: no OCI state on stdin: {exc}\n")
        return 1
    allowed, message = verdict(state if isinstance(state, dict) else {})
    if not message:
        return 0
    try:
        log = logs.setup(Spool(HookSettings.load(args.config).spool))
        (log.warning if allowed else log.error)("%s hook: %s", args.stage, message)
    except CkptError:
        pass
    if not allowed:
        sys.stderr.write(f"ckpt: {message}\n")
        return 1
    return 0
