"""`ckpt save`: checkpoint a runc container into the store, an OCI layout or a registry.

Ordering is what keeps the promises: CRIU dumps first (on failure CRIU resumes the container);
if anything after the dump fails or is interrupted, the container is restored in place from
the images just taken; the destination's tag is written only after every blob is stored.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..criu import probe
from ..criu.options import CriuOptions
from ..errors import CkptError, Interrupted, UsageError
from ..format.config import CheckpointConfig
from ..format.write import write_checkpoint
from ..host import host_info, tree_rss
from ..progress import OnProgress, Update, noop
from ..reference import StoreRef, parse
from ..runtime.runc import Runc, load_spec, rootfs_of
from .home import Home, disk_errors
from .locations import RegistryOptions, early_upload, preflight, publish


@dataclass(frozen=True, slots=True)
class SaveResult:
    container: str
    references: tuple[str, ...]
    digest: str
    size: int  # bytes of all blobs
    left_running: bool


def store_name_for(container_id: str) -> str:
    """A local store name derived from a container id (store names are lower-case)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", container_id.lower()).strip("._-")
    return name or "checkpoint"


def save(container_id: str, dest: str | None = None, *, runc_root: Path | None = None,
         options: CriuOptions = CriuOptions(), home: Home | None = None,
         registry: RegistryOptions = RegistryOptions(), on_progress: OnProgress = noop) -> SaveResult:
    home = home or Home()
    runc = Runc(root=runc_root)
    state = runc.state(container_id)
    if state.status not in ("running", "paused"):
        raise UsageError(f"container {container_id!r} is {state.status}, not running",
                         hint="only running containers can be checkpointed")
    spec = load_spec(state.bundle)
    rootfs = rootfs_of(state.bundle, spec)
    now = datetime.now(timezone.utc)
    dests = [parse(dest)] if dest else [StoreRef(store_name_for(container_id)),
                                        StoreRef(store_name_for(container_id), now.strftime("%Y%m%dT%H%M%SZ"))]
    info = host_info()
    config = CheckpointConfig(
        engine="runc", runtime="runc", runtime_version=runc.version(), criu_version=probe.version(),
        host=info, container_id=container_id, container_name=container_id,
        created=now.strftime("%Y-%m-%dT%H:%M:%SZ"), criu_options=options, ckpt_version=__version__)
    store = home.store()
    for target in dests:
        preflight(target, registry=registry)

    with home.workdir("save-", size_hint=tree_rss(state.pid)) as work:
        images, criu_work = work / "images", work / "criu"
        images.mkdir()
        criu_work.mkdir()
        on_progress(Update("checkpoint", 0, 1, container_id))
        runc.checkpoint(container_id, images, criu_work, options)
        on_progress(Update("checkpoint", 1, 1, container_id))
        try:
            with disk_errors("could not store the checkpoint"), \
                    early_upload(dests, store, registry=registry, on_progress=on_progress) as on_blob:
                desc = write_checkpoint(store, images=images, rootfs=rootfs,
                                        spec=(state.bundle / "config.json").read_bytes(), config=config,
                                        on_progress=on_progress, on_blob=on_blob)
            for target in dests:
                publish(store, desc, target, registry=registry, on_progress=on_progress)
        except BaseException as exc:
            if not options.leave_running:
                _put_back(runc, container_id, state.bundle, images, work, options, home)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted("save interrupted; the container was put back and nothing was tagged") from None
            raise
    manifest = store.read_manifest(desc)
    size = desc.size + sum(b.size for b in manifest.blobs())
    return SaveResult(container=container_id, references=tuple(str(d) for d in dests), digest=desc.digest, size=size,
                      left_running=options.leave_running)


def _put_back(runc: Runc, container_id: str, bundle: Path, images: Path, work: Path,
              options: CriuOptions, home: Home) -> None:
    """Restore the container where it was, after a failure that came after the dump."""
    restore_work = work / "rollback"
    restore_work.mkdir(exist_ok=True)
    try:
        runc.restore(container_id, bundle, images, restore_work, options.for_restore())
    except CkptError as exc:
        rescue = home.root / "rescue" / f"{store_name_for(container_id)}-{datetime.now():%Y%m%dT%H%M%S}"
        rescue.parent.mkdir(parents=True, exist_ok=True)
        images.rename(rescue)
        raise CkptError(f"save failed after the dump, and putting the container back failed too: {exc}",
                        hint=f"the CRIU images were kept in {rescue}; `runc restore --image-path` "
                             "can bring the container back") from exc



