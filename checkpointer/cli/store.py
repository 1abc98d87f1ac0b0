"""The commands on stored checkpoints: inspect, convert, export, ls, rm, push, pull, fsck."""
from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from .. import ui
from .app import REF_HELP, app, home, size
from .options import Compat, DecryptKey, Json, Registry, RegistryNoJobs, grouped, private_keys


@app.command()
@grouped
def inspect(
    ref: Annotated[str, typer.Argument(help="The checkpoint to look into (REF).")],
    *, decrypt_key: DecryptKey = None, registry: RegistryNoJobs, as_json: Json = False,
) -> None:
    """Show what a checkpoint holds: container, engine, CRIU, host, processes, memory, layers.
    Of an encrypted checkpoint without --decrypt-key: all but the processes. Of a pod: a tree of
    its containers, each with its processes and memory, and what they share."""
    from ..porcelain.inspect import inspect as do_inspect
    from . import pod

    if pod.inspect(ref, registry=registry, as_json=as_json):
        return

    view = do_inspect(ref, home=home(), registry=registry.options(), decrypt_keys=private_keys(decrypt_key))
    if as_json:
        ui.print_json(view.to_json())
        return
    c = view.config
    rows = [("reference", view.reference), ("digest", view.digest), ("format", view.origin),
            ("container", c.container_name),
            ("engine", f"{c.engine} (runtime {c.runtime} {c.runtime_version})"), ("criu", c.criu_version),
            ("host", f"{c.host.arch}, kernel {c.host.kernel}, cgroup v{c.host.cgroup_version}"),
            ("created", c.created), ("memory", size(view.memory))]
    for key, value in rows:
        ui.out.print(f"{key:<10} {value}")
    ui.out.print("processes:")
    for p in view.processes:
        ui.out.print(f"  {p.pid:>6} {p.ppid:>6}  {size(p.memory):>10}  {p.cmdline}")
    ui.out.print("layers:")
    chunks = [layer for layer in view.layers if layer.role == "pages"]
    for layer in view.layers:
        if layer.role == "pages" and len(chunks) > 1:
            if layer is chunks[0]:
                unique = len({c.digest for c in chunks})
                ui.out.print(f"  {'pages':<7} {size(sum(c.size for c in chunks)):>10}  {len(chunks)} chunks "
                             f"({unique} distinct)  {layer.media_type}")
            continue
        ui.out.print(f"  {layer.role:<7} {size(layer.size):>10}  {layer.digest[:19]}  {layer.media_type}")


@app.command(epilog=REF_HELP)
@grouped
def convert(
    src: Annotated[str, typer.Argument(help="The checkpoint to read (REF): ckpt's, or another engine's image "
                                            "or archive.")],
    dest: Annotated[str, typer.Argument(help="Where to write the result (REF).")],
    *, compat: Compat = None,
    registry: Registry, as_json: Json = False,
) -> None:
    """Convert a checkpoint between ckpt's format and the shapes Podman, CRI-O and Kubernetes use.

    Pods too: CRI-O's and containerd's pod directories and archives in, back out with --compat cri-o-pod|pod-archive.

    Example: ckpt convert podman-ckpt.tar.zst web:v1            (a Podman export into the store)
             ckpt convert web:v1 oci:/tmp/img:web --compat podman   (an image `podman container restore` takes)
             ckpt convert /var/lib/kubelet/checkpoints/shop REG/shop:v1   (a CRI-O pod into a registry)
    """
    from ..porcelain.convert import convert as do_convert
    from . import pod

    if pod.convert(src, dest, compat=compat, registry=registry, as_json=as_json):
        return
    with ui.progress(not as_json) as on_progress:
        result = do_convert(src, dest, compat=compat or "ckpt", home=home(), registry=registry.options(),
                            on_progress=on_progress)
    _converted(result, as_json)


@app.command(epilog=REF_HELP)
@grouped
def export(
    ref: Annotated[str, typer.Argument(help="The checkpoint to export (REF).")],
    path: Annotated[str, typer.Argument(help="The archive to write: PATH.tar, PATH.tar.gz or PATH.tar.zst.")],
    registry: Registry, as_json: Json = False,
) -> None:
    """Write a checkpoint as an engine's archive (what `podman container restore --import` and
    `checkpointctl show` read)."""
    from ..porcelain.convert import export as do_export

    with ui.progress(not as_json) as on_progress:
        result = do_export(ref, path, home=home(), registry=registry.options(), on_progress=on_progress)
    _converted(result, as_json)


def _converted(result: Any, as_json: bool) -> None:
    if as_json:
        ui.print_json(asdict(result))
    else:
        ui.out.print(f"converted {result.source} ({result.origin}) -> {result.destination} ({result.compat})\n"
                     f"digest {result.digest} ({size(result.size)})")


@app.command("ls")
@grouped
def list_cmd(
    image: Annotated[str | None, typer.Argument(
        help="REG/REPO@sha256:... of an image: list the checkpoints that name it as their subject.")] = None,
    *, registry: RegistryNoJobs, as_json: Json = False,
) -> None:
    """List the checkpoints in the local store, or the checkpoints of an image in a registry."""
    from ..porcelain.store import list_checkpoints

    if image:
        from ..porcelain.referrers import list_checkpoints_of

        found = list_checkpoints_of(image, registry=registry.options())
        if as_json:
            ui.print_json([asdict(r) for r in found])
        else:
            for r in found:
                ui.out.print(f"{r.digest}  {r.created:<20}  {size(r.size):>10}  {r.container}")
            if not found:
                ui.err.print(f"no checkpoints name {image} as their subject")
        return

    entries = list_checkpoints(home=home())
    if as_json:
        ui.print_json([asdict(e) for e in entries])
        return
    if not entries:
        ui.err.print("the local store is empty")
    for e in entries:
        ui.out.print(f"{e.reference:<40} {e.digest[7:19]}  {e.created:<20}  {size(e.size):>10}  {e.container}")


@app.command()
def rm(ref: Annotated[str, typer.Argument(help="NAME[:TAG] in the local store.")], as_json: Json = False) -> None:
    """Remove a checkpoint from the local store (and the data no other checkpoint uses)."""
    from ..porcelain.store import remove

    digest, freed = remove(ref, home=home())
    if as_json:
        ui.print_json({"removed": ref, "digest": digest, "freed": freed})
    else:
        ui.out.print(f"removed {ref} ({digest[:19]}), freed {size(freed)}")


@app.command(epilog=REF_HELP)
@grouped
def push(
    src: Annotated[str, typer.Argument(help="The checkpoint to copy (REF), e.g. web:latest.")],
    dest: Annotated[str, typer.Argument(help="Where to copy it (REF), e.g. registry.example.com/team/web:v1.")],
    registry: Registry, as_json: Json = False,
) -> None:
    """Copy a checkpoint to a registry, an OCI layout or the store. The tag is written last."""
    _copy(src, dest, registry, as_json)


@app.command(epilog=REF_HELP)
@grouped
def pull(
    src: Annotated[str, typer.Argument(help="The checkpoint to fetch (REF).")],
    dest: Annotated[str | None, typer.Argument(
        help="Local name (default: the repository's last part and the tag).")] = None,
    *, registry: Registry, as_json: Json = False,
) -> None:
    """Fetch a checkpoint into the local store, verifying every blob."""
    _copy(src, dest, registry, as_json)


def _copy(src: str, dest: str | None, registry: Registry, as_json: bool) -> None:
    from ..porcelain.transfer import copy

    with ui.progress(not as_json) as on_progress:
        result = copy(src, dest, home=home(), registry=registry.options(), on_progress=on_progress)
    if as_json:
        ui.print_json(asdict(result))
    else:
        ui.out.print(f"copied {result.source} -> {result.destination}\ndigest {result.digest} ({size(result.size)})")


@app.command()
def fsck(
    repair: Annotated[bool, typer.Option("--repair", help="Remove tags whose data is missing or damaged, "
                                                          "garbage blobs, and what killed runs left.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Check sizes only; do not re-hash every blob.")] = False,
    as_json: Json = False,
) -> None:
    """Check the local store (every digest) and find what interrupted runs left behind."""
    from ..porcelain.fsck import fsck as do_fsck

    report, leftovers = do_fsck(home=home(), repair=repair, full=not quick)
    if as_json:
        ui.print_json({"ok": report.ok, "tags": report.tags, "blobs_checked": report.blobs_checked,
                       "problems": [asdict(f) for f in report.findings], "removed_tags": list(report.removed_tags),
                       "garbage": report.garbage, "freed": report.freed,
                       "leftover_workdirs": [str(p) for p in leftovers], "repaired": repair})
    else:
        ui.out.print(f"{report.tags} tags, {report.blobs_checked} blobs checked")
        for finding in report.findings:
            ui.out.print(f"[red]damaged[/] {ui.escape(finding.ref)}: {ui.escape(finding.problem)}")
        if repair:
            ui.out.print(f"removed {len(report.removed_tags)} tags and {len(leftovers)} leftover work dirs, "
                         f"freed {size(report.freed)}")
        elif report.garbage or leftovers:
            ui.out.print(f"{size(report.garbage)} of garbage and {len(leftovers)} leftover work dirs: "
                         "`ckpt fsck --repair` removes them")
    if not report.ok and not repair:
        raise typer.Exit(8)
