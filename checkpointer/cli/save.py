"""`ckpt save` and `ckpt restore`."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from .. import ui
from ..errors import UsageError
from .app import REF_HELP, app, home, size
from .options import (
    Compat,
    Criu,
    DecryptKey,
    EncryptTo,
    Engine,
    Json,
    Registry,
    RuncRoot,
    grouped,
    private_keys,
    public_keys,
)

if TYPE_CHECKING:
    from ..porcelain.restore import RestoreResult


@app.command(epilog=REF_HELP)
@grouped
def save(
    container: Annotated[str | None, typer.Argument(
        help="The container (runc id, or Podman name or id). Leave out with --pid.")] = None,
    dest: Annotated[str | None, typer.Argument(
        help="Where to put the checkpoint (REF). Default: the local store as CONTAINER:latest "
             "and CONTAINER:<timestamp>.")] = None,
    *,
    pid: Annotated[int | None, typer.Option(
        "--pid", help="Checkpoint the process tree rooted at PID (no container); DEST is then the only "
                      "argument.")] = None,
    pod: Annotated[str | None, typer.Option(
        "--pod", help="Checkpoint a whole pod at one moment, as one checkpoint: a Podman pod, or a runc pod named "
                      "by its sandbox (its id, or its dev.ckpt.pod.name annotation); DEST is then the only "
                      "argument.")] = None,
    member: Annotated[list[str] | None, typer.Option(
        "--member", help="With --pod: exactly this container of the pod (repeatable; default: every one that "
                         "joins the sandbox's namespaces).")] = None,
    engine: Engine = None,
    criu: Criu,
    with_volumes: Annotated[bool, typer.Option("--with-volumes", help="Podman: include the container's "
                                                                       "volumes in the checkpoint.")] = False,
    compat: Compat = None, encrypt_to: EncryptTo = None,
    subject: Annotated[str | None, typer.Option(
        "--subject", help="The image (REG/REPO:TAG or @DIGEST, in the repository the checkpoint goes to) this "
                          "checkpoint belongs to; `ckpt ls REG/REPO@DIGEST` then lists it.")] = None,
    runc_root: RuncRoot = None, registry: Registry,
    as_json: Json = False,
) -> None:
    """Checkpoint a running container (runc or Podman) or process tree, and store or push it.

    Example: ckpt save web            (local store, web:latest)
             ckpt save web registry.example.com/team/web:v1
             ckpt save --pid 4242 job:v1
             ckpt save --pod web registry.example.com/team/web-pod:v1
    """
    from ..porcelain import save as porcelain

    if pod is not None:
        from . import pod as pods

        if container and dest:
            raise UsageError("give the pod with --pod, and at most a DEST")
        pods.save(pod, member, container, engine=engine, criu=criu, with_volumes=with_volumes,
                  refused={"--compat": bool(compat), "--encrypt-to": bool(encrypt_to), "--subject": bool(subject),
                           "--pid": pid is not None}, runc_root=runc_root, registry=registry, as_json=as_json)
        return
    if member:
        raise UsageError("--member goes with --pod")
    if pid is not None and container and not dest:
        container, dest = None, container  # `ckpt save --pid PID DEST`
    elif pid is not None and container:
        raise UsageError("give either a container or --pid, not both")
    request = porcelain.SaveRequest(
        target=porcelain.Target(container=container, pid=pid), dest=dest, engine=engine, runc_root=runc_root,
        dump=porcelain.DumpOptions(criu=criu.options(), with_volumes=with_volumes),
        output=porcelain.Output(compat=compat, encrypt_to=tuple(public_keys(encrypt_to))),  # a bad key fails now
        subject=subject)
    with ui.progress(not as_json) as on_progress:
        result = porcelain.save(request, home=home(), registry=registry.options(), on_progress=on_progress)
    if as_json:
        ui.print_json(asdict(result))
        return
    for ref in result.references:
        ui.out.print(f"saved {result.container} -> {ref}")
    ui.out.print(f"digest {result.digest} ({size(result.size)})")


@app.command(epilog=REF_HELP)
@grouped
def restore(
    ref: Annotated[str, typer.Argument(help="The checkpoint to restore (REF).")],
    *,
    name: Annotated[str | None, typer.Option("--name", help="Container id to restore as "
                                                             "(default: the original id).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Restore even if the host looks incompatible.")] = False,
    if_running: Annotated[bool, typer.Option(
        "--if-running-ok", help="Succeed without doing anything if a container of that name is running.")] = False,
    lazy: Annotated[bool, typer.Option(
        "--lazy", help="runc: run the container before its memory has arrived. A background page supervisor "
                       "brings the memory in (what the container touches first), until every page is in; "
                       "`ckpt status` shows it. If the memory cannot arrive, the container is killed. A runc pod: "
                       "every member, each with a supervisor of its own.")] = False,
    wait: Annotated[bool, typer.Option(
        "--wait", help="With --lazy: return once every page is in (exit code of the failure if delivery "
                       "fails).")] = False,
    lazy_deadline: Annotated[float | None, typer.Option(
        "--lazy-deadline", min=0.1, help="With --lazy: how long (seconds) a page may wait for the registry, "
                                         "retried meanwhile, before the container is killed. Default 30.")] = None,
    engine: Engine = None, decrypt_key: DecryptKey = None,
    runc_root: RuncRoot = None, registry: Registry,
    as_json: Json = False,
) -> None:
    """Restore a checkpoint (ckpt's, or Podman's, CRI-O's, containerd's) into runc, Podman or as a
    bare process tree; it carries on where it stopped."""
    from ..porcelain import restore as porcelain

    if (wait or lazy_deadline is not None) and not lazy:
        raise UsageError("--wait and --lazy-deadline go with --lazy",
                         hint="an eager restore returns once every page is in")
    from . import pod

    if pod.restore(ref, name=name, engine=engine, runc_root=runc_root, force=force, lazy=lazy, if_running=if_running,
                   registry=registry, as_json=as_json, wait=wait, lazy_deadline=lazy_deadline):
        return
    request = porcelain.RestoreRequest(name=name, engine=engine, runc_root=runc_root, force=force,
                                       if_running=if_running, decrypt_keys=tuple(private_keys(decrypt_key)), lazy=lazy,
                                       lazy_deadline=lazy_deadline)
    if lazy:  # no progress bars: their thread would start before the page supervisor is forked
        result = porcelain.restore(ref, request, home=home(), registry=registry.options())
    else:
        with ui.progress(not as_json) as on_progress:
            result = porcelain.restore(ref, request, home=home(), registry=registry.options(), on_progress=on_progress)
    final = None
    if not as_json:
        _show_restored(result)
    if wait and result.delivery:
        from .status import follow

        final = follow(result.delivery, display=not as_json)
    if as_json:
        shown = {k: v for k, v in asdict(result).items() if k != "delivery" or v is not None}
        ui.print_json({**shown, **({"delivered": final.to_json()} if final else {})})
    if final is not None and (error := final.error()) is not None:
        raise error


def _show_restored(result: RestoreResult) -> None:
    verb = "already running" if result.already_running else "restored"
    where = f", bundle {result.bundle}" if result.bundle else ""
    lazily = ", memory arriving (ckpt status " + result.container + ")" if result.delivery else ""
    ui.out.print(f"{verb} {result.container} into {result.engine} (pid {result.pid}{where}){lazily}")
    for warning in result.warnings:
        ui.err.print(f"[bold yellow]WARNING[/]: {ui.escape(warning)}")
