"""`ckpt save --pod`: checkpoint every container of a pod at one moment, and store them as one pod
checkpoint (docs/format.md section 9). One pipeline for every pod engine and destination:

    find the pod -> preflight -> freeze every member, lock the pod's network
        -> dump member 1 -> dump member 2 ... (member k is packed, and uploaded, while k+1 is dumped)
        -> the pod config and the index -> every destination, the tag last -> commit

Nothing is resumed or stopped before the whole pod checkpoint is stored: a member that cannot be
dumped, a full disk, an unreachable registry or Ctrl-C puts every member back as it was (the
engine's freeze context), and nothing is tagged.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ... import __version__, atomic
from ...criu import probe as criu_probe
from ...format import pod as podfmt
from ...format.config import CheckpointConfig
from ...format.write import EngineFiles, OnBlob, write_checkpoint
from ...host import tree_rss
from ...oci.layout import Layout
from ...oci.model import Descriptor
from ...progress import OnProgress, noop
from ...reference import parse
from ...timing import phase
from ..engines.base import Context, Dumped, DumpOptions, checkpoint_config, done
from ..home import Home, disk_errors
from ..places import RegistryOptions, open_sink
from ..repair import repair_images
from ..save import early_upload, local_names, rfc3339
from . import engines, places
from .model import Pod


@dataclass(frozen=True, slots=True)
class PodSaveRequest:
    pod: str  # the pod's name (Podman), or its sandbox's id or pod name annotation (runc)
    members: tuple[str, ...] = ()  # exactly these members (checked), default: every one
    dest: str | None = None  # a REF; default: the local store as POD:latest and POD:<timestamp>
    engine: str | None = None  # default: the engine that has the pod
    runc_root: Path | None = None
    dump: DumpOptions = DumpOptions()
    overlap: bool = True  # pack member k while member k+1 is dumped (bench/pod.py turns it off)


@dataclass(frozen=True, slots=True)
class PodSaveResult:
    pod: str
    members: tuple[str, ...]
    references: tuple[str, ...]
    digest: str
    size: int  # bytes stored: every blob once
    shared: int  # bytes the members have in common, stored once instead of once per member
    left_running: bool


def save_pod(request: PodSaveRequest, *, home: Home | None = None, registry: RegistryOptions | None = None,
             on_progress: OnProgress = noop) -> PodSaveResult:
    home, registry = home or Home(), registry or RegistryOptions()
    ctx = Context(home, on_progress, request.runc_root, registry.insecure)
    engine = engines.for_save(request.pod, request.engine, ctx)
    pool = ThreadPoolExecutor(6, thread_name_prefix="preflight")
    with ExitStack() as stack:
        stack.callback(pool.shutdown, wait=False, cancel_futures=True)
        given = [parse(request.dest)] if request.dest else []
        sinks = [open_sink(ref, home, registry=registry, on_progress=on_progress) for ref in given]
        checks = [pool.submit(sink.preflight) for sink in sinks]
        criu_version = pool.submit(criu_probe.version)
        pod = engine.find(request.pod, request.members)
        stack.enter_context(engine.lock(pod))
        now = datetime.now(UTC)
        refs = given or local_names(pod.identity.name, now)
        sinks = sinks or [open_sink(ref, home) for ref in refs]
        facts = {m.name: pool.submit(engine.facts, m) for m in pod.members}
        networks = {m.name: pool.submit(engine.network, m) for m in pod.members}
        size_hint = sum(tree_rss(m.pid) for m in pod.members)
        with phase("preflight"):
            for check in checks:
                check.result()
            criu = criu_version.result()
            for future in facts.values():
                future.result()

        def config_of(name: str) -> CheckpointConfig:
            return checkpoint_config(facts[name].result(), request.dump.criu, created=rfc3339(now), criu_version=criu,
                                     network=networks[name].result())

        work = stack.enter_context(home.workdir("pod-save-", size_hint=size_hint))
        packed = home.store() if any(sink.local for sink in sinks) else home.packing_layout(work, size_hint)
        with engine.freeze(pod, work, request.dump) as frozen:
            with early_upload(sinks, packed) as on_blob, phase("dump+pack+upload"):
                written = _dump_and_pack(pod, frozen.dump, config_of, packed, on_blob, request.overlap, on_progress)
                config = podfmt.PodConfig(
                    engine=pod.engine, pod=pod.identity, created=rfc3339(now), sandbox=pod.sandbox,
                    members=tuple(podfmt.PodMember(m.name, m.id, m.namespaces, written[m.name]) for m in pod.members),
                    criu_options=request.dump.criu, annotations=pod.annotations, ckpt_version=__version__,
                    network_lock=podfmt.LOCK_POD if pod.netns_pid else podfmt.LOCK_CRIU)
                with disk_errors("could not store the pod checkpoint"):
                    index = podfmt.write_pod(packed, config, engine_files=_pod_files(pod, work), on_blob=on_blob)
            with phase("publish"):
                for ref in refs:
                    places.publish(ref, packed, index, home, registry, on_progress)
                size, shared = places.stored_sizes(packed, index)
            frozen.commit()
    return PodSaveResult(pod=pod.identity.name, members=tuple(m.name for m in pod.members),
                         references=tuple(str(ref) for ref in refs), digest=index.digest, size=size, shared=shared,
                         left_running=request.dump.criu.leave_running)


def _dump_and_pack(pod: Pod, dump: Callable[..., Dumped], config_of: Callable[[str], CheckpointConfig],
                   layout: Layout, on_blob: OnBlob | None, overlap: bool,
                   on_progress: OnProgress) -> dict[str, Descriptor]:
    """Dump every member, in the pod's dump order, packing each into `layout` (one after the other,
    beside the next member's dump when `overlap`); the members' manifests, named for the pod."""
    packer = ThreadPoolExecutor(1, thread_name_prefix="pod-pack")
    futures: dict[str, Future[Descriptor]] = {}
    try:
        for member in pod.dump_order():
            dumped = dump(member)
            config = config_of(member.name)

            def pack(dumped: Dumped = dumped, config: CheckpointConfig = config) -> Descriptor:
                with disk_errors("could not store the checkpoint"):
                    repair_images(dumped.images)
                    desc = write_checkpoint(layout, images=dumped.images, rootfs=dumped.rootfs, spec=dumped.spec,
                                            engine_files=dumped.engine_files, config=config,
                                            on_progress=on_progress, on_blob=on_blob)
                    shutil.rmtree(dumped.images.parent, ignore_errors=True)  # packed: its memory goes back
                    return podfmt.member_annotations(layout, desc, pod.identity)

            futures[member.name] = packer.submit(pack) if overlap else done(pack())
        return {name: future.result() for name, future in futures.items()}
    finally:
        packer.shutdown(wait=True, cancel_futures=True)


def _pod_files(pod: Pod, work: Path) -> EngineFiles | None:
    """The engine's pod-level files (Podman's `pod inspect`), for the pod manifest's engine layer."""
    if not pod.files:
        return None
    root = work / "pod-files"
    root.mkdir()
    for name, data in pod.files.items():
        atomic.write_bytes(root / name, data)
    return EngineFiles(root, sorted(pod.files))
