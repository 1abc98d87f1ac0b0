"""How pods are shown: `ckpt save --pod`, `ckpt restore` and `ckpt inspect` of a pod checkpoint
(the commands themselves are in save.py and store.py; they hand a pod to these)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .. import ui
from ..format import pod as podfmt
from .app import size


def saved(result: Any, as_json: bool) -> None:
    if as_json:
        ui.print_json({**asdict(result), "kind": "pod"})
        return
    for ref in result.references:
        ui.out.print(f"saved pod {result.pod} ({', '.join(result.members)}) -> {ref}")
    ui.out.print(f"digest {result.digest} ({size(result.size)}, {size(result.shared)} shared between members, "
                 "stored once)")


def restored(result: Any, as_json: bool, delivered: dict[str, Any] | None = None) -> None:
    """`delivered`: by member name, how its lazy restore's page delivery ended (--wait)."""
    delivered = delivered or {}
    if as_json:
        members = [{**{k: v for k, v in asdict(m).items() if k != "delivery" or v is not None},
                    **({"delivered": delivered[m.name].to_json()} if m.name in delivered else {})}
                   for m in result.members]
        ui.print_json({"kind": "pod", "pod": result.pod, "digest": result.digest, "engine": result.engine,
                       "origin": result.origin, "members": members, "warnings": list(result.warnings)})
        return
    ui.out.print(f"restored pod {result.pod} into {result.engine}:")
    for member in result.members:
        if member.name in delivered:
            view = delivered[member.name]
            lazily = f", memory: {view.state}"
        else:
            lazily = f", memory arriving (ckpt status {member.container})" if member.delivery else ""
        ui.out.print(f"  {member.name:<12} {member.container} (pid {member.pid}){lazily}")
    for warning in result.warnings:
        ui.err.print(f"[bold yellow]WARNING[/]: {ui.escape(warning)}")


def _namespaces(member: Any) -> str:
    owns, joins = member.owns(), member.joins()
    words = [f"owns {' '.join(owns)}"] if owns else []
    by_owner: dict[str, list[str]] = {}
    for kind, owner in joins.items():
        by_owner.setdefault(owner, []).append(kind)
    for owner, kinds in by_owner.items():
        of = "the engine's sandbox" if owner == podfmt.ENGINE_SANDBOX else owner
        words.append(f"joins {' '.join(kinds)} of {of}")
    return "; ".join(words)


def inspected(view: Any, as_json: bool) -> None:
    if as_json:
        ui.print_json(view.to_json())
        return
    config = view.config
    keys = " ".join(f"{k}={v}" for k, v in config.pod.annotations().items())
    ui.out.print(f"pod {ui.escape(config.pod.name)}  ({config.engine}, {len(view.members)} members, created "
                 f"{config.created}, network lock: {config.network_lock})  {ui.escape(keys)}")
    ui.out.print(f"digest {view.digest}  format {view.origin}")
    for i, member in enumerate(view.members):
        last = i == len(view.members) - 1
        branch, stem = ("└─", "   ") if last else ("├─", "│  ")
        processes = member.view.processes
        ui.out.print(f"{branch} {ui.escape(member.name):<10} {ui.escape(_namespaces(member))}  "
                     f"{len(processes)} process{'es' if len(processes) != 1 else ''}  {size(member.view.memory)}")
        for p in processes:
            ui.out.print(f"{stem}   {p.pid:>6} {p.ppid:>6}  {size(p.memory):>10}  {ui.escape(p.cmdline)}")
    ui.out.print(f"stored: {view.blobs} blobs, {size(view.stored)} ({size(view.shared)} shared between members, "
                 "stored once)")


# -- the commands' pod halves (save.py and store.py hand pods here) ----------------------------------

def save(pod: str, members: list[str] | None, dest: str | None, *, engine: str | None, criu: Any,
         with_volumes: bool, refused: dict[str, bool], runc_root: Any, registry: Any, as_json: bool) -> None:
    """`ckpt save --pod POD [DEST]`. `refused`: options given that a pod save does not take."""
    from ..errors import UsageError
    from ..porcelain.engines.base import DumpOptions
    from ..porcelain.pod.save import PodSaveRequest, save_pod
    from .app import home

    given = [option for option, value in refused.items() if value]
    if given:
        raise UsageError(f"{', '.join(given)} cannot be combined with --pod",
                         hint="save the pod in ckpt's format, then convert or copy it")
    request = PodSaveRequest(pod=pod, members=tuple(members or ()), dest=dest, engine=engine, runc_root=runc_root,
                             dump=DumpOptions(criu=criu.options(), with_volumes=with_volumes))
    with ui.progress(not as_json) as on_progress:
        result = save_pod(request, home=home(), registry=registry.options(), on_progress=on_progress)
    saved(result, as_json)


def restore(ref: str, *, name: str | None, engine: str | None, runc_root: Any, force: bool, lazy: bool,
            if_running: bool, registry: Any, as_json: bool, wait: bool = False,
            lazy_deadline: float | None = None) -> bool:
    """`ckpt restore REF` when REF is a pod: restore it and say so (True); False when it is no pod."""
    from ..porcelain.pod.places import ref_or_path
    from ..porcelain.pod.restore import PodRestoreRequest, restore_if_pod
    from .app import home

    request = PodRestoreRequest(name=name, engine=engine, runc_root=runc_root, force=force, lazy=lazy,
                                if_running=if_running, lazy_deadline=lazy_deadline)
    # No progress thread with --lazy: a lazy restore forks its page supervisors while none runs.
    with ui.progress(not as_json and not lazy) as on_progress:
        result = restore_if_pod(ref, ref_or_path(ref), request, home=home(), registry=registry.options(),
                                on_progress=on_progress)
    if result is None:
        return False
    delivered = {}
    if wait:
        from .status import follow

        delivered = {m.name: follow(m.delivery, display=False) for m in result.members if m.delivery}
    restored(result, as_json, delivered)
    for view in delivered.values():
        if (error := view.error()) is not None:
            raise error
    return True


def inspect(ref: str, *, registry: Any, as_json: bool) -> bool:
    """`ckpt inspect REF` when REF is a pod: show its tree (True); False when it is no pod."""
    from ..porcelain.pod.inspect import inspect_if_pod
    from ..porcelain.pod.places import ref_or_path
    from .app import home

    view = inspect_if_pod(ref, ref_or_path(ref), home=home(), registry=registry.options())
    if view is None:
        return False
    inspected(view, as_json)
    return True


def convert(src: str, dest: str, *, compat: str | None, registry: Any, as_json: bool) -> bool:
    """`ckpt convert SRC DEST` when SRC is a pod: convert it (True); False when it is no pod."""
    from ..porcelain.pod.convert import convert_if_pod
    from .app import home

    with ui.progress(not as_json) as on_progress:
        result = convert_if_pod(src, dest, compat=compat or "ckpt", home=home(), registry=registry.options(),
                                on_progress=on_progress)
    if result is None:
        return False
    if as_json:
        ui.print_json({**asdict(result), "kind": "pod"})
    else:
        ui.out.print(f"converted pod {result.source} ({result.origin}, {', '.join(result.members)}) -> "
                     f"{result.destination} ({result.compat})\ndigest {result.digest} ({size(result.size)})")
    return True
