"""The CRIU action script's body: on post-dump, spool the checkpoint and start a publisher.

CRIU calls the script at every step (pre-dump, network-lock, post-dump, and the restore steps);
the shell wrapper (hooks/criu-action.in) lets only post-dump through, and quick.py runs this
only for a container annotated dev.ckpt.publish-to (or when it cannot tell). At post-dump the images
are complete, the container's processes are frozen but alive, runc still knows the container
and its rootfs is mounted: everything can be taken then, and nothing earlier is needed.

Whatever happens, this returns 0: a nonzero post-dump script makes CRIU abort the dump, and the
runtime's checkpoint must never fail because of a publication. It returns within the configured
deadline too; the upload happens later, in a detached publisher (publisher.py).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ..errors import CkptError
from . import capture, container, destination, keys, logs, procfs, quick
from .detach import python_argv, spawn_detached
from .job import FAILED, SPOOLED, Job, now
from .settings import HookSettings
from .spool import Spool

PUBLISHER = "checkpointer.hooks.publisher:main"


def main(argv: list[str] | None = None) -> int:  # argv is unused: CRIU passes no arguments
    started = time.monotonic()
    _stdio_to_devnull()
    if os.environ.get("CRTOOLS_SCRIPT_ACTION") != "post-dump" or os.environ.get(keys.ENV_SWITCH) == "off":
        return 0
    try:
        settings = HookSettings.load()
    except CkptError as exc:
        # Fail closed: without its config (allow-list, spool) the hook must not publish anything.
        logs.setup(None).error("post-dump hook not run: %s", exc)
        return 0
    spool = Spool(settings.spool)
    log = logs.setup(spool)
    try:
        with _deadline(settings.deadline):
            post_dump(settings, spool, log, started)
    except BaseException as exc:  # never let the runtime's checkpoint fail because of us
        log.error("post-dump hook failed: %s", exc, exc_info=not isinstance(exc, (CkptError, TimeoutError)))
    return 0


def post_dump(settings: HookSettings, spool: Spool, log: logging.Logger, started: float) -> None:
    image_dir = os.environ.get("CRTOOLS_IMAGE_DIR", "")
    criu = quick.criu_pid()
    call = procfs.find_runc_checkpoint(os.getpid())
    if call is None:
        return  # CRIU was not run by `runc checkpoint`: not a container ckpt knows about
    job_id = quick.job_id(criu, call.container_id)
    if spool.job_dir(job_id).exists():
        return  # the second call of the same post-dump: CRIU 4.1 under runc runs each script twice
    _, annotations, bundle = container.annotations_of(call)
    template = annotations.get(keys.PUBLISH_TO, "").strip()
    if not template:
        return  # the container did not ask to be published
    if call.pre_dump or call.remote_pages:
        log.info("%s: a %s is not a complete checkpoint; not published", call.container_id,
                 "pre-dump" if call.pre_dump else "dump with remote pages (--lazy-pages/--page-server)")
        return
    job_dir = spool.claim(job_id)
    if job_dir is None:
        return  # a second call that overtook the first
    job = Job(id=job_id, state=SPOOLED, destination=template, container_id=call.container_id, created=now(),
              criu_options=call.options, runc_binary=call.binary, image_dir=call.image_path or image_dir)
    try:
        when = datetime.fromtimestamp(quick.started(criu), UTC)
        dest = destination.expand(template, container_id=call.container_id, when=when)
        job = replace(job, destination=dest)
        destination.check(dest, settings.allow)
        target = container.describe(call, annotations, bundle)
        job = replace(job, container_name=target.name, engine=target.engine, image=target.image,
                      rootfs=str(target.rootfs))
        (job_dir / "spec.json").write_bytes(target.spec)
        source = image_dir or call.image_path
        if not source:
            raise CkptError("CRIU named no image directory (CRTOOLS_IMAGE_DIR is empty)")
        taken = capture.take_images(source, job_dir / "images")
        rootfs_fd, rootfs_dev = capture.hold_rootfs(target.rootfs)
    except (CkptError, OSError) as exc:
        hint = getattr(exc, "hint", None) or ""
        spool.save(job.moved(FAILED, f"not spooled: {exc}", error=str(exc), hint=hint))
        _drop(job_dir / "images")
        log.error("%s: checkpoint of %s not spooled for %s: %s", job.id, call.container_id, job.destination, exc)
        return
    hook_ms = _elapsed_ms(started)
    job = replace(job, spooled_files=taken.files, spooled_bytes=taken.bytes, linked_files=taken.linked,
                  rootfs_dev=rootfs_dev, hook_ms=hook_ms)
    spool.save(job.moved(SPOOLED, f"spooled {taken.files} files ({taken.linked} hardlinked, "
                                  f"{taken.bytes} bytes) in {hook_ms} ms"))
    argv = python_argv(settings.python, PUBLISHER, "--spool", str(spool.root), "--job", job.id,
                       "--rootfs-fd", str(rootfs_fd), *(["--config", str(settings.source)] if settings.source else []))
    env = dict(os.environ)
    if settings.docker_config:
        env["DOCKER_CONFIG"] = str(settings.docker_config)
    try:
        spawn_detached(argv, log=spool.log_path, pass_fds=(rootfs_fd,), env=env)
    except OSError as exc:
        spool.save(job.moved(FAILED, f"the publisher did not start: {exc}", error=f"the publisher did not start: {exc}",
                             hint=f"check {keys.CFG_PYTHON} in {settings.source}; `ckpt hooks retry {job.id}` "
                                  "publishes what was spooled"))
        log.error("%s: the publisher did not start: %s", job.id, exc)
        return
    finally:
        os.close(rootfs_fd)
    log.info("%s: %s container %s checkpointed; publishing to %s in the background (hook: %d ms)", job.id,
             job.engine, job.container_name, job.destination, _elapsed_ms(started))


def _elapsed_ms(started: float) -> int:
    """Milliseconds since the shell wrapper started (so Python's own start-up counts too), or
    since main() started if that cannot be told."""
    try:
        parent = os.getppid()
        if os.path.basename(procfs.cmdline(parent)[0]) in ("sh", "dash", "bash"):
            return int(procfs.age(parent) * 1000)
    except (OSError, ValueError, IndexError):
        pass
    return int((time.monotonic() - started) * 1000)


def _drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _stdio_to_devnull() -> None:
    """CRIU runs scripts with stdin closed: files opened later would land on fds 0-2."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def expired(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"the post-dump hook took longer than {seconds:g} s (dev.ckpt.hooks.deadline); "
                           "the checkpoint was not spooled")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
