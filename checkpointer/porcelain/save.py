"""`ckpt save`: checkpoint a container (runc, Podman) or a bare process tree, and store it locally,
in an `oci:` layout, in a registry or as an archive. Every engine goes through the one pipeline:

    engine.dump -> write_checkpoint (uploading each blob as it is packed) -> compat | encrypt
                -> every destination, the tag last -> commit

The order keeps the promises. The container stays frozen, not gone, until the checkpoint is safely
at every destination; only commit() then stops it (or resumes it, with --leave-running). A failure
or Ctrl-C before that puts it back (engines/base.py, Engine.dump), and nothing is tagged.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ..criu import probe as criu_probe
from ..format.config import CheckpointConfig
from ..format.write import OnBlob, write_checkpoint
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..progress import OnProgress, noop
from ..reference import Ref, StoreRef, parse
from ..timing import phase
from . import engines
from .engines.base import Context, Dumped, DumpOptions, Target, checkpoint_config, store_name_for
from .home import Home, disk_errors
from .places import RegistryOptions, Sink, open_sink
from .referrers import subject_for
from .repair import repair_images
from .transform import Output, transformed

__all__ = ["SaveRequest", "SaveResult", "Output", "Target", "DumpOptions", "save", "store_name_for"]


@dataclass(frozen=True, slots=True)
class SaveRequest:
    target: Target  # a container by name or id, or a process tree by pid
    dest: str | None = None  # a REF; default: the local store as NAME:latest and NAME:<timestamp>
    engine: str | None = None  # default: the engine that has the container
    runc_root: Path | None = None
    dump: DumpOptions = DumpOptions()
    output: Output = Output()
    subject: str | None = None  # the image (REG/REPO:TAG) this checkpoint is a referrer of


@dataclass(frozen=True, slots=True)
class SaveResult:
    container: str
    references: tuple[str, ...]
    digest: str
    size: int  # bytes of all blobs
    left_running: bool


def save(request: SaveRequest, *, home: Home | None = None, registry: RegistryOptions = RegistryOptions(),
         on_progress: OnProgress = noop) -> SaveResult:
    home = home or Home()
    request.output.check()
    engine = engines.for_save(request.target, request.engine,
                              Context(home, on_progress, request.runc_root, registry.insecure))
    # The registry check (with the import of the HTTP stack) and the version probes run while the
    # engine is asked about the container: one after the other they were a tenth of a small save.
    # An error does not wait for them (an unreachable registry can take its retries' time).
    pool = ThreadPoolExecutor(6, thread_name_prefix="preflight")
    with ExitStack() as stack:
        stack.callback(pool.shutdown, wait=False, cancel_futures=True)
        stack.enter_context(engine.lock(request.target.container or ""))
        given = [open_sink(parse(request.dest), home, registry=registry, on_progress=on_progress)] \
            if request.dest else []
        checks = [pool.submit(sink.preflight) for sink in given]
        criu_version = pool.submit(criu_probe.version)
        container = engine.find(request.target)
        now = datetime.now(UTC)
        sinks = given or [open_sink(ref, home) for ref in local_names(container.name, now)]
        probe = engine.probe(container, request.dump, pool)
        with phase("preflight"):
            for check in checks:
                check.result()
            subject = subject_for(request.subject, [s.ref for s in sinks], registry=registry) \
                if request.subject else None
            probe.lock()  # a host without CRIU's network lock fails here, before anything is frozen
            config = checkpoint_config(probe.facts(), request.dump.criu, created=rfc3339(now),
                                       criu_version=criu_version.result())

        work = stack.enter_context(home.workdir("save-", size_hint=probe.size_hint))
        with engine.dump(probe, work) as dumped:
            repair_images(dumped.images)
            store = home.store()
            packed = store if any(sink.local for sink in sinks) else home.packing_layout(work, probe.size_hint)
            desc = _pack(packed, dumped, replace(config, network=dumped.network), subject, sinks, request.output,
                         on_progress)
            with phase("publish"), transformed(packed, desc, request.output, on_progress) as final:
                for sink in sinks:
                    sink.publish(packed, final)
                saved = _result(packed, container.name, sinks, final, request.dump.criu.leave_running)
            dumped.commit()
    return saved


def _pack(layout: Layout, dumped: Dumped, config: CheckpointConfig, subject: Descriptor | None,
          sinks: Sequence[Sink], output: Output, on_progress: OnProgress) -> Descriptor:
    """Pack the dump into `layout`; every destination that can takes each blob as soon as it is packed."""
    with disk_errors("could not store the checkpoint"), early_upload(sinks if output.plain else (), layout) \
            as on_blob, phase("pack+upload"):
        return write_checkpoint(layout, images=dumped.images, rootfs=dumped.rootfs, spec=dumped.spec,
                                engine_files=dumped.engine_files, config=config, subject=subject,
                                on_progress=on_progress, on_blob=on_blob)


@contextmanager
def early_upload(sinks: Sequence[Sink], layout: Layout) -> Iterator[OnBlob | None]:
    """One callback that hands each packed blob to every sink that uploads early (registries)."""
    with ExitStack() as stack:
        takers = [taker for sink in sinks if (taker := stack.enter_context(sink.early_upload(layout)))]
        if not takers:
            yield None
            return

        def on_blob(desc: Descriptor, data: bytes | None) -> None:
            for taker in takers:
                taker(desc, data)

        yield on_blob


def local_names(name: str, now: datetime) -> list[Ref]:
    """Where a save goes when no destination is named: NAME:latest and NAME:<timestamp> in the store."""
    return [StoreRef(store_name_for(name)), StoreRef(store_name_for(name), now.strftime("%Y%m%dT%H%M%SZ"))]


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _result(layout: Layout, container: str, sinks: Sequence[Sink], desc: Descriptor,
            left_running: bool) -> SaveResult:
    size = layout.read_manifest(desc).total_size(desc.size)
    return SaveResult(container=container, references=tuple(str(sink.ref) for sink in sinks), digest=desc.digest,
                      size=size, left_running=left_running)
