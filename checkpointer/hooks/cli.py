"""`ckpt hooks`: install, uninstall, status, retry, drop. A typer sub-app: parse, call, render.

Mounted in the main command line (checkpointer/cli/hooks.py); also runs on its own as
`python -m checkpointer.hooks` (hooks/__main__.py), which is `ckpt hooks` through the same error
boundary (checkpointer/cli main).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from .. import ui
from ..errors import UsageError
from ..porcelain.home import default_home
from . import keys
from .paths import InstallPaths, config_path
from .settings import DEFAULT_RETRY_DELAYS, HookSettings, default_config_path

hooks_app = typer.Typer(
    name="hooks", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Runtime hooks: publish the checkpoints runc, Podman, CRI-O or containerd take of containers "
         f"annotated {keys.PUBLISH_TO}=REF, with no ckpt command typed (docs/hooks.md).",
)

Prefix = Annotated[Path | None, typer.Option(
    "--prefix", help="Install under this directory instead of /usr/local and /etc (tests, packaging).")]
ConfigDir = Annotated[Path | None, typer.Option(
    "--config-dir", help="Where hooks.json lives (default /etc/ckpt, or PREFIX/etc/ckpt).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


def _config(prefix: Path | None, config_dir: Path | None) -> Path:
    return config_path(prefix, config_dir) if prefix or config_dir else default_config_path()


def _settings(prefix: Path | None, config_dir: Path | None) -> HookSettings:
    return HookSettings.load(_config(prefix, config_dir))


@hooks_app.command()
def install(
    ctx: typer.Context,
    prefix: Prefix = None, config_dir: ConfigDir = None,
    runc_criu_config: Annotated[Path | None, typer.Option(
        "--runc-criu-config", help="The CRIU config runc reads for every container; gets the action-script line "
                                   "(default /etc/criu/runc.conf, or PREFIX/etc/criu/runc.conf).")] = None,
    no_runc_criu_config: Annotated[bool, typer.Option(
        "--no-runc-criu-config", help="Leave runc's CRIU config alone: containers opt in with the annotation "
                                      "org.criu.config=CONFIG_DIR/criu.conf.")] = False,
    hooks_dir: Annotated[Path | None, typer.Option(
        "--hooks-dir", help="oci-hooks.d directory for the restore-from hook (default "
                            "/etc/containers/oci/hooks.d, or under PREFIX).")] = None,
    no_oci_hook: Annotated[bool, typer.Option("--no-oci-hook", help="Do not install the OCI hook.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="CKPT_HOME for the hooks (default: ckpt's).")] = None,
    spool: Annotated[Path | None, typer.Option(
        "--spool", help="Where checkpoints wait to be published (default HOME/spool); same filesystem as the "
                        "runtime's images makes spooling a hardlink.")] = None,
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", help="Destination prefix an annotation may name (repeatable; default any registry or the "
                        "local store, no host paths).")] = None,
    insecure_registry: Annotated[list[str] | None, typer.Option(
        "--insecure-registry", help="host[:port] reached over plain HTTP / unverified TLS (repeatable).")] = None,
    ca_dir: Annotated[Path | None, typer.Option("--ca-dir", help="Directory of extra CA certificates.")] = None,
    docker_config: Annotated[Path | None, typer.Option(
        "--docker-config", help="Directory of the docker config.json with registry credentials.")] = None,
    retry_delays: Annotated[str, typer.Option(
        "--retry-delays", help="Seconds between publish attempts, comma-separated ('' for a single attempt).")]
    = ",".join(f"{d:g}" for d in DEFAULT_RETRY_DELAYS),
    deadline: Annotated[float, typer.Option("--deadline", min=1.0, help="Seconds the action script may take.")]
    = 20.0,
    as_json: Json = False,
) -> None:
    """Install the CRIU action script, its CRIU config, the OCI hook and the hooks config."""
    from .install import install as do_install

    root_home = home or ctx.find_root().params.get("home") or default_home()
    try:
        delays = tuple(float(d) for d in retry_delays.split(",") if d.strip())
    except ValueError:
        raise UsageError(f"--retry-delays wants seconds separated by commas, not {retry_delays!r}") from None
    paths = InstallPaths.make(prefix, config_dir=config_dir, runc_conf=runc_criu_config, hooks_dir=hooks_dir,
                              global_criu=not no_runc_criu_config, oci_hook=not no_oci_hook)
    settings = HookSettings(home=Path(root_home).absolute(),
                            spool=(spool or Path(root_home) / "spool").absolute(), allow=tuple(allow or ()),
                            insecure_registries=tuple(insecure_registry or ()), ca_dir=ca_dir,
                            docker_config=docker_config, retry_delays=delays, deadline=deadline)
    done = do_install(paths, settings)
    if as_json:
        ui.print_json({"config": str(done.config), "files": [str(f) for f in done.files],
                       "runcCriuConfig": str(done.runc_conf) if done.runc_conf else None, "spool": str(done.spool)})
        return
    ui.out.print(f"installed the ckpt hooks; config {done.config}, spool {done.spool}")
    for path in done.files:
        ui.out.print(f"  wrote {path}")
    if done.runc_conf:
        ui.out.print(f"  added the action script to {done.runc_conf} (every runc checkpoint runs it)")
    else:
        ui.out.print(f"  containers opt in with the annotation {keys.CRIU_CONFIG}={paths.criu_conf}")
    ui.out.print(f"containers annotated {keys.PUBLISH_TO}=REF are now published when their runtime checkpoints them")


@hooks_app.command()
def uninstall(
    prefix: Prefix = None, config_dir: ConfigDir = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the spool (pending and failed jobs).")] = False,
    as_json: Json = False,
) -> None:
    """Remove what `ckpt hooks install` wrote (the spool stays unless --purge)."""
    from .install import uninstall as do_uninstall

    removed = do_uninstall(_config(prefix, config_dir), purge=purge)
    if as_json:
        ui.print_json({"removed": [str(p) for p in removed]})
        return
    for path in removed:
        ui.out.print(f"removed {path}")


@hooks_app.command()
def status(prefix: Prefix = None, config_dir: ConfigDir = None, as_json: Json = False) -> None:
    """Show the installation and every publish job: pending, stalled, failed (with why), published."""
    from .status import status as do_status

    view = do_status(_config(prefix, config_dir))
    if as_json:
        ui.print_json(view.to_json())
        return
    inst = view.install
    if not inst.installed:
        ui.out.print(f"[yellow]not installed[/] (no {ui.escape(inst.config)})")
    else:
        for key, value in (("config", inst.config), ("python", inst.python), ("spool", inst.spool)):
            ui.out.print(f"{key:<7} {ui.escape(value)}")
        for path, present in inst.files:
            ui.out.print(f"  {'[green]ok[/]' if present else '[red]missing[/]'}  {ui.escape(path)}")
        if inst.runc_conf:
            mark = "[green]ok[/]" if inst.runc_conf_ok else "[red]no action-script line[/]"
            ui.out.print(f"  {mark}  {ui.escape(inst.runc_conf)}")
    if not view.jobs:
        ui.out.print("no jobs")
    else:
        ui.out.print(f"{len(view.jobs)} jobs: " + ", ".join(f"{n} {state}" for state, n in view.summary().items()))
    for job in view.jobs:
        colour = {"published": "green", "failed": "red", "stalled": "yellow"}.get(job.state, "cyan")
        ui.out.print(f"[{colour}]{job.state:<10}[/] {job.id}  {ui.escape(job.container)} -> "
                     f"{ui.escape(job.destination)}")
        detail = job.digest if job.state == "published" else job.error or job.last
        if detail:
            ui.out.print(f"           {ui.escape(detail)}")
        if job.state in ("failed", "stalled") and job.hint:
            ui.out.print(f"           [yellow]{ui.escape(job.hint)}[/]")


@hooks_app.command()
def retry(
    jobs: Annotated[list[str] | None, typer.Argument(help="Job ids (default: every failed or stalled job).")]
    = None,
    prefix: Prefix = None, config_dir: ConfigDir = None, as_json: Json = False,
) -> None:
    """Publish failed or stalled jobs again, now, in the foreground."""
    from .retry import retry as do_retry

    outcomes = do_retry(_settings(prefix, config_dir), jobs or None)
    if as_json:
        ui.print_json([{"job": o.job_id, "state": o.job.state if o.job else "error",
                        "error": str(o.error) if o.error else (o.job.error if o.job else ""),
                        "digest": o.job.digest if o.job else ""} for o in outcomes])
    else:
        if not outcomes:
            ui.out.print("nothing to retry")
        for o in outcomes:
            if o.job and o.job.state == "published":
                ui.out.print(f"[green]published[/] {o.job_id} -> {ui.escape(o.job.destination)} ({o.job.digest})")
            else:
                ui.out.print(f"[red]failed[/]    {o.job_id}: {ui.escape(str(o.error) if o.error else o.job.error)}")
    if any(not o.job or o.job.state != "published" for o in outcomes):
        raise typer.Exit(1)


@hooks_app.command()
def drop(
    jobs: Annotated[list[str], typer.Argument(help="Job ids to forget, with their images and packed data.")],
    prefix: Prefix = None, config_dir: ConfigDir = None, as_json: Json = False,
) -> None:
    """Forget jobs (for instance failed ones that will never publish)."""
    from .retry import drop as do_drop

    settings = _settings(prefix, config_dir)
    dropped = [do_drop(settings, job_id) for job_id in jobs]
    if as_json:
        ui.print_json([asdict(j) | {"criu_options": j.criu_options.to_json()} for j in dropped])
        return
    for job in dropped:
        ui.out.print(f"dropped {job.id} ({job.state})")
