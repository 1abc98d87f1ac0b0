"""The background publisher: pack a spooled checkpoint in ckpt's format, then publish it.

Started detached by the action script (with a descriptor holding the container's rootfs), or in
the foreground by `ckpt hooks retry`. Packing comes first and at once, while the rootfs is still
held; the upload is retried after `dev.ckpt.hooks.retry-delays`, and a job that still fails is
left `failed` with the reason, its packed checkpoint kept for `ckpt hooks retry`.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from ..criu import probe
from ..errors import AlreadyExists, CkptError, RegistryError, Unreachable
from ..format.write import write_checkpoint
from ..oci import mediatypes as mt
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..porcelain.engines.base import ConfigFacts, checkpoint_config
from ..porcelain.home import Home, disk_errors
from ..porcelain.places import RegistryOptions, open_sink
from ..reference import RegistryRef, StoreRef, parse
from ..retry import RetryPolicy, Sleep
from ..runtime.runc import Runc
from . import capture, logs
from .job import FAILED, PACKING, PUBLISHED, PUBLISHING, Job
from .settings import HookSettings
from .spool import Spool


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ckpt-hooks-publisher")
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--rootfs-fd", type=int)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(argv)
    settings = HookSettings.load(args.config)
    spool = Spool(args.spool)
    log = logs.setup(spool)
    try:
        job = run(spool, args.job, settings, rootfs_fd=args.rootfs_fd, delays=settings.retry_delays, log=log)
    except CkptError as exc:
        log.error("%s: %s", args.job, exc)
        return exc.exit_code
    return 0 if job.state == PUBLISHED else 1


def run(spool: Spool, job_id: str, settings: HookSettings, *, rootfs_fd: int | None = None,
        delays: tuple[float, ...] = (), log: logging.Logger | None = None, sleep: Sleep = time.sleep) -> Job:
    """Pack (unless done) and publish job `job_id`; returns the job as it ends up. A publish that
    fails in a way that may pass is tried again after each of `delays` (seconds; the one retry
    policy with a fixed schedule), waiting with `sleep`."""
    log = log or logging.getLogger(logs.LOGGER)
    with spool.lock(job_id) as mine:
        if not mine:
            raise AlreadyExists(f"a publisher is working on hook job {job_id} right now",
                                hint="`ckpt hooks status` shows how it goes")
        job = spool.load(job_id)
        if job.state == PUBLISHED:
            return job
        try:
            layout, desc, job = _packed(spool, job, settings, rootfs_fd, log)
        except Exception as exc:  # any failure is recorded on the job, bugs included
            job = _failed(spool, job, f"packing failed: {exc}", exc, log)
            if not isinstance(exc, CkptError):
                log.exception("%s: packing failed", job.id)
            return job
        finally:
            if rootfs_fd is not None:
                os.close(rootfs_fd)  # let the runtime's rootfs mount go
        return _deliver(spool, job, layout, desc, settings, delays, log, sleep)


def _layout(spool: Spool, job: Job, settings: HookSettings) -> Layout:
    if isinstance(parse(job.destination), StoreRef):
        return Home(settings.home).store()  # a store destination is a tag in the store itself
    return Layout(spool.job_dir(job.id) / "layout", create=True)


def _packed(spool: Spool, job: Job, settings: HookSettings, rootfs_fd: int | None,
            log: logging.Logger) -> tuple[Layout, Descriptor, Job]:
    layout = _layout(spool, job, settings)
    if job.digest and layout.has_blob(job.digest):
        manifest_blob = layout.blob_path(job.digest)
        return layout, Descriptor(mt.OCI_MANIFEST, job.digest,
                                  manifest_blob.stat().st_size), job
    job_dir = spool.job_dir(job.id)
    images = job_dir / "images"
    if not images.is_dir():
        raise CkptError("the CRIU images of this job are gone", hint="checkpoint the container again")
    job = job.moved(PACKING, "packing")
    spool.save(job)
    started = time.monotonic()
    rootfs = capture.fd_path(rootfs_fd) if rootfs_fd is not None else _rootfs_again(job)
    facts = ConfigFacts(engine=job.engine, runtime="runc", runtime_version=_runc_version(job.runc_binary),
                        container_id=job.container_id, container_name=job.container_name or job.container_id,
                        base_name=job.image or None)
    config = checkpoint_config(facts, job.criu_options, created=job.created[:19] + "Z",
                               criu_version=probe.version())
    with disk_errors("could not pack the checkpoint"):
        desc = write_checkpoint(layout, images=images, rootfs=rootfs, spec=(job_dir / "spec.json").read_bytes(),
                                config=config)
    size = layout.read_manifest(desc).total_size(desc.size)
    shutil.rmtree(images, ignore_errors=True)
    job = job.moved(PUBLISHING, f"packed {desc.digest} ({size} bytes) in {time.monotonic() - started:.1f} s",
                    digest=desc.digest, size=size)
    spool.save(job)
    log.info("%s: packed %s (%d bytes)", job.id, desc.digest, size)
    return layout, desc, job


def _rootfs_again(job: Job) -> Path:
    """The rootfs by its path, for a retry after the publisher that held it died before packing:
    only if the same filesystem is still mounted there (Podman unmounts it after a checkpoint)."""
    path = Path(job.rootfs)
    try:
        same = os.stat(path).st_dev == job.rootfs_dev
    except OSError:
        same = False
    if not same:
        raise CkptError(f"the container's rootfs is no longer at {path} as it was at the checkpoint",
                        hint="its runtime unmounted it; restore the container with the runtime and checkpoint "
                             "it again")
    return path


def _runc_version(binary: str) -> str:
    try:
        return Runc(binary=binary if os.access(binary, os.X_OK) else "runc").version()
    except CkptError:
        return "unknown"


def _deliver(spool: Spool, job: Job, layout: Layout, desc: Descriptor, settings: HookSettings,
             delays: tuple[float, ...], log: logging.Logger, sleep: Sleep) -> Job:
    dest = parse(job.destination)
    host = dest.host if isinstance(dest, RegistryRef) else ""
    options = RegistryOptions(insecure=settings.insecure(host), ca_dir=settings.ca_dir)
    attempts = RetryPolicy.fixed(delays).start(sleep=sleep)
    while True:
        try:
            open_sink(dest, Home(settings.home), registry=options).publish(layout, desc)
        except Exception as exc:  # any failure is recorded on the job; bugs are logged with a traceback
            pause = attempts.failed() if _transient(exc) else None
            if not isinstance(exc, CkptError):
                log.exception("%s: publishing failed", job.id)
            if pause is None:
                return _failed(spool, _counted(job), f"publishing to {dest} failed: {exc}", exc, log)
            job = _counted(job).moved(PUBLISHING, f"attempt {attempts.failures} failed: {exc}; next in "
                                                  f"{pause:g} s", error=str(exc))
            spool.save(job)
            log.warning("%s: publishing to %s failed (%s); trying again in %g s", job.id, dest, exc, pause)
            attempts.pause(pause)
            continue
        job = _counted(job).moved(PUBLISHED, f"published to {dest}", error="", hint="")
        spool.save(job)
        if not isinstance(dest, StoreRef):
            shutil.rmtree(spool.job_dir(job.id) / "layout", ignore_errors=True)
        spool.prune(settings.keep_published)
        log.info("%s: published %s to %s", job.id, desc.digest, dest)
        return job


def _counted(job: Job) -> Job:
    return replace(job, attempts=job.attempts + 1)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, Unreachable):
        return True
    return type(exc) is RegistryError and (exc.status is None or exc.status >= 500 or exc.status == 429)


def _failed(spool: Spool, job: Job, message: str, exc: BaseException, log: logging.Logger) -> Job:
    hint = getattr(exc, "hint", None) or ""
    retry = f"`ckpt hooks retry {job.id}` tries again"
    job = job.moved(FAILED, message, error=str(exc) or repr(exc), hint=f"{hint}; {retry}" if hint else retry)
    spool.save(job)
    log.error("%s: %s", job.id, message)
    return job
