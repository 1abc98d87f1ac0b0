"""The `ckpt` command line: parse, call the porcelain, render. Nothing else lives here."""
from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from . import __version__, ui
from .criu.options import CriuOptions
from .errors import EXIT_CODES, CkptError, StorageError
from .errors import UsageError as CkptUsage
from .porcelain.home import Home
from .porcelain.locations import RegistryOptions

REF_HELP = """\b
REF grammar:
  NAME[:TAG]                       the local store ($CKPT_HOME, default /var/lib/ckpt for root)
  HOST[:PORT]/REPO[:TAG|@DIGEST]   a registry
  oci:PATH[:TAG]                   an OCI image-layout directory
  PATH.tar[.zst|.gz]               a checkpoint archive (Podman export, CRI-O, containerd, kubelet)
"""

EXIT_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code:<4} {name}" for name, code in EXIT_CODES.items())

app = typer.Typer(
    name="ckpt", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="Checkpoint running containers into OCI images and restore them anywhere.\n\n"
         + REF_HELP + "\n" + EXIT_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class State:
    debug = False
    home: Home | None = None


def _home() -> Home:
    return State.home or Home()


def _version(value: bool) -> None:
    if value:
        print(f"ckpt {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", envvar="CKPT_DEBUG",
                                        help="Show tracebacks for errors.")] = False,
    home: Annotated[Optional[Path], typer.Option("--home", envvar="CKPT_HOME",
                                                 help="Where the local store lives.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
    timings: Annotated[bool, typer.Option("--timings", envvar="CKPT_TIMINGS",
                                          help="Print how long each step took, on stderr.")] = False,
) -> None:
    State.debug = debug
    if timings:
        ui.show_timings()
    State.home = Home(home) if home else None


RuncRoot = Annotated[Optional[Path], typer.Option("--runc-root", help="runc's state directory (runc --root).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
Insecure = Annotated[bool, typer.Option("--insecure", help="Allow plain HTTP / unverified TLS to this registry.")]
CaDir = Annotated[Optional[Path], typer.Option("--ca-dir", help="Directory of extra CA certificates (*.crt).")]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, help="Blobs transferred in parallel.")]
EncryptTo = Annotated[Optional[list[Path]], typer.Option(
    "--encrypt-to", help="Encrypt every layer to this PEM public key (RSA or EC; repeatable; `jwe:PATH` too). "
                         "Readable by skopeo and containerd's imgcrypt.")]
DecryptKey = Annotated[Optional[list[Path]], typer.Option(
    "--decrypt-key", help="PEM private key to decrypt an encrypted checkpoint (repeatable). A passphrase "
                          "is read from $CKPT_KEY_PASSPHRASE.")]


def _registry(insecure: bool, ca_dir: Path | None, jobs: int) -> RegistryOptions:
    return RegistryOptions(insecure=insecure, ca_dir=ca_dir, jobs=jobs)


def _public_keys(paths: list[Path] | None) -> list:
    if not paths:
        return []
    from .crypt import load_public_key

    return [load_public_key(str(p)) for p in paths]


def _private_keys(paths: list[Path] | None) -> list:
    if not paths:
        return []
    import os

    from .crypt import load_private_key

    passphrase = os.environ.get("CKPT_KEY_PASSPHRASE")
    return [load_private_key(p, passphrase) for p in paths]


Engine = Annotated[Optional[str], typer.Option(
    "--engine", help="runc, podman or process. save: found by the container's name; restore: the engine "
                     "that made the checkpoint.")]
Compat = Annotated[Optional[str], typer.Option(
    "--compat", help="Shape of the result: ckpt (default), podman (an image `podman container restore` "
                     "takes), cri-o or kubernetes (an image CRI-O restores).")]


@app.command(epilog=REF_HELP)
def save(
    container: Annotated[Optional[str], typer.Argument(
        help="The container (runc id, or Podman name or id). Leave out with --pid.")] = None,
    dest: Annotated[Optional[str], typer.Argument(
        help="Where to put the checkpoint (REF). Default: the local store as CONTAINER:latest "
             "and CONTAINER:<timestamp>.")] = None,
    pid: Annotated[Optional[int], typer.Option(
        "--pid", help="Checkpoint the process tree rooted at PID (no container); DEST is then the only argument.")] = None,
    engine: Engine = None,
    leave_running: Annotated[bool, typer.Option("--leave-running", help="Keep the container running.")] = False,
    tcp_established: Annotated[bool, typer.Option("--tcp-established",
                                                  help="Checkpoint established TCP connections.")] = False,
    file_locks: Annotated[bool, typer.Option("--file-locks", help="Checkpoint held file locks.")] = False,
    ext_unix_sk: Annotated[bool, typer.Option("--ext-unix-sk",
                                              help="Allow unix sockets connected outside the container.")] = False,
    shell_job: Annotated[bool, typer.Option("--shell-job", help="The container runs on an outside terminal.")] = False,
    with_volumes: Annotated[bool, typer.Option("--with-volumes", help="Podman: include the container's "
                                                                       "volumes in the checkpoint.")] = False,
    compat: Compat = None, encrypt_to: EncryptTo = None,
    subject: Annotated[Optional[str], typer.Option(
        "--subject", help="The image (REG/REPO:TAG or @DIGEST, in the repository the checkpoint goes to) this "
                          "checkpoint belongs to; `ckpt ls REG/REPO@DIGEST` then lists it.")] = None,
    runc_root: RuncRoot = None, insecure: Insecure = False, ca_dir: CaDir = None, jobs: Jobs = 4,
    as_json: Json = False,
) -> None:
    """Checkpoint a running container (runc or Podman) or process tree, and store or push it.

    Example: ckpt save web            (local store, web:latest)
             ckpt save web registry.example.com/team/web:v1
             ckpt save --pid 4242 job:v1
    """
    from .porcelain.save import save as do_save

    if pid is not None and container and not dest:
        container, dest = None, container  # `ckpt save --pid PID DEST`
    elif pid is not None and container:
        raise CkptUsage("give either a container or --pid, not both")
    options = CriuOptions(leave_running=leave_running, tcp_established=tcp_established, file_locks=file_locks,
                          ext_unix_sk=ext_unix_sk, shell_job=shell_job)
    recipients = _public_keys(encrypt_to)  # a bad key fails before anything is frozen
    with ui.progress(not as_json) as on_progress:
        result = do_save(container, dest, pid=pid, engine=engine, runc_root=runc_root, options=options,
                         with_volumes=with_volumes, compat=compat, encrypt_to=recipients, subject=subject,
                         home=_home(),
                         registry=_registry(insecure, ca_dir, jobs), on_progress=on_progress)
    if as_json:
        ui.print_json(asdict(result))
        return
    for ref in result.references:
        ui.out.print(f"saved {result.container} -> {ref}")
    ui.out.print(f"digest {result.digest} ({_size(result.size)})")


@app.command(epilog=REF_HELP)
def restore(
    ref: Annotated[str, typer.Argument(help="The checkpoint to restore (REF).")],
    name: Annotated[Optional[str], typer.Option("--name", help="Container id to restore as "
                                                                "(default: the original id).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Restore even if the host looks incompatible.")] = False,
    if_running: Annotated[bool, typer.Option(
        "--if-running-ok", help="Succeed without doing anything if a container of that name is running.")] = False,
    engine: Engine = None, decrypt_key: DecryptKey = None,
    runc_root: RuncRoot = None, insecure: Insecure = False, ca_dir: CaDir = None, jobs: Jobs = 4,
    as_json: Json = False,
) -> None:
    """Restore a checkpoint (ckpt's, or Podman's, CRI-O's, containerd's) into runc, Podman or as a
    bare process tree; it carries on where it stopped."""
    from .porcelain.restore import restore as do_restore

    with ui.progress(not as_json) as on_progress:
        result = do_restore(ref, name=name, engine=engine, runc_root=runc_root, home=_home(), force=force,
                            if_running=if_running, decrypt_keys=_private_keys(decrypt_key),
                            registry=_registry(insecure, ca_dir, jobs),
                            on_progress=on_progress)
    if as_json:
        ui.print_json(asdict(result))
        return
    verb = "already running" if result.already_running else "restored"
    where = f", bundle {result.bundle}" if result.bundle else ""
    ui.out.print(f"{verb} {result.container} into {result.engine} (pid {result.pid}{where})")
    for warning in result.warnings:
        ui.err.print(f"[bold yellow]WARNING[/]: {ui.escape(warning)}")


@app.command()
def inspect(
    ref: Annotated[str, typer.Argument(help="The checkpoint to look into (REF).")],
    decrypt_key: DecryptKey = None, insecure: Insecure = False, ca_dir: CaDir = None, as_json: Json = False,
) -> None:
    """Show what a checkpoint holds: container, engine, CRIU, host, processes, memory, layers.
    Of an encrypted checkpoint without --decrypt-key: all but the processes."""
    from .porcelain.inspect import inspect as do_inspect

    view = do_inspect(ref, home=_home(), registry=_registry(insecure, ca_dir, 4),
                      decrypt_keys=_private_keys(decrypt_key))
    if as_json:
        ui.print_json(view.to_json())
        return
    c = view.config
    rows = [("reference", view.reference), ("digest", view.digest), ("format", view.origin),
            ("container", c.container_name),
            ("engine", f"{c.engine} (runtime {c.runtime} {c.runtime_version})"), ("criu", c.criu_version),
            ("host", f"{c.host.arch}, kernel {c.host.kernel}, cgroup v{c.host.cgroup_version}"),
            ("created", c.created), ("memory", _size(view.memory))]
    for key, value in rows:
        ui.out.print(f"{key:<10} {value}")
    ui.out.print("processes:")
    for p in view.processes:
        ui.out.print(f"  {p.pid:>6} {p.ppid:>6}  {_size(p.memory):>10}  {p.cmdline}")
    ui.out.print("layers:")
    chunks = [layer for layer in view.layers if layer.role == "pages"]
    for layer in view.layers:
        if layer.role == "pages" and len(chunks) > 1:
            if layer is chunks[0]:
                unique = len({c.digest for c in chunks})
                ui.out.print(f"  {'pages':<7} {_size(sum(c.size for c in chunks)):>10}  {len(chunks)} chunks "
                             f"({unique} distinct)  {layer.media_type}")
            continue
        ui.out.print(f"  {layer.role:<7} {_size(layer.size):>10}  {layer.digest[:19]}  {layer.media_type}")


@app.command(epilog=REF_HELP)
def convert(
    src: Annotated[str, typer.Argument(help="The checkpoint to read (REF): ckpt's, or another engine's image "
                                            "or archive.")],
    dest: Annotated[str, typer.Argument(help="Where to write the result (REF).")],
    compat: Compat = None,
    insecure: Insecure = False, ca_dir: CaDir = None, jobs: Jobs = 4, as_json: Json = False,
) -> None:
    """Convert a checkpoint between ckpt's format and the shapes Podman, CRI-O and Kubernetes use.

    Example: ckpt convert podman-ckpt.tar.zst web:v1            (a Podman export into the store)
             ckpt convert web:v1 oci:/tmp/img:web --compat podman   (an image `podman container restore` takes)
    """
    from .porcelain.convert import convert as do_convert

    with ui.progress(not as_json) as on_progress:
        result = do_convert(src, dest, compat=compat or "ckpt", home=_home(),
                            registry=_registry(insecure, ca_dir, jobs), on_progress=on_progress)
    _converted(result, as_json)


@app.command(epilog=REF_HELP)
def export(
    ref: Annotated[str, typer.Argument(help="The checkpoint to export (REF).")],
    path: Annotated[str, typer.Argument(help="The archive to write: PATH.tar, PATH.tar.gz or PATH.tar.zst.")],
    insecure: Insecure = False, ca_dir: CaDir = None, jobs: Jobs = 4, as_json: Json = False,
) -> None:
    """Write a checkpoint as an engine's archive (what `podman container restore --import` and
    `checkpointctl show` read)."""
    from .porcelain.convert import export as do_export

    with ui.progress(not as_json) as on_progress:
        result = do_export(ref, path, home=_home(), registry=_registry(insecure, ca_dir, jobs),
                           on_progress=on_progress)
    _converted(result, as_json)


def _converted(result, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        ui.print_json(asdict(result))
    else:
        ui.out.print(f"converted {result.source} ({result.origin}) -> {result.destination} ({result.compat})\n"
                     f"digest {result.digest} ({_size(result.size)})")


@app.command("ls")
def list_cmd(
    image: Annotated[Optional[str], typer.Argument(
        help="REG/REPO@sha256:... of an image: list the checkpoints that name it as their subject.")] = None,
    insecure: Insecure = False, ca_dir: CaDir = None, as_json: Json = False,
) -> None:
    """List the checkpoints in the local store, or the checkpoints of an image in a registry."""
    from .porcelain.store import list_checkpoints

    if image:
        from .porcelain.referrers import list_checkpoints_of

        found = list_checkpoints_of(image, registry=_registry(insecure, ca_dir, 4))
        if as_json:
            ui.print_json([asdict(r) for r in found])
        else:
            for r in found:
                ui.out.print(f"{r.digest}  {r.created:<20}  {_size(r.size):>10}  {r.container}")
            if not found:
                ui.err.print(f"no checkpoints name {image} as their subject")
        return

    entries = list_checkpoints(home=_home())
    if as_json:
        ui.print_json([asdict(e) for e in entries])
        return
    if not entries:
        ui.err.print("the local store is empty")
    for e in entries:
        ui.out.print(f"{e.reference:<40} {e.digest[7:19]}  {e.created:<20}  {_size(e.size):>10}  {e.container}")


@app.command()
def rm(ref: Annotated[str, typer.Argument(help="NAME[:TAG] in the local store.")], as_json: Json = False) -> None:
    """Remove a checkpoint from the local store (and the data no other checkpoint uses)."""
    from .porcelain.store import remove

    digest, freed = remove(ref, home=_home())
    if as_json:
        ui.print_json({"removed": ref, "digest": digest, "freed": freed})
    else:
        ui.out.print(f"removed {ref} ({digest[:19]}), freed {_size(freed)}")


@app.command(epilog=REF_HELP)
def push(
    src: Annotated[str, typer.Argument(help="The checkpoint to copy (REF), e.g. web:latest.")],
    dest: Annotated[str, typer.Argument(help="Where to copy it (REF), e.g. registry.example.com/team/web:v1.")],
    insecure: Insecure = False, ca_dir: CaDir = None, jobs: Jobs = 4, as_json: Json = False,
) -> None:
    """Copy a checkpoint to a registry, an OCI layout or the store. The tag is written last."""
    _copy(src, dest, insecure, ca_dir, jobs, as_json)


@app.command(epilog=REF_HELP)
def pull(
    src: Annotated[str, typer.Argument(help="The checkpoint to fetch (REF).")],
    dest: Annotated[Optional[str], typer.Argument(
        help="Local name (default: the repository's last part and the tag).")] = None,
    insecure: Insecure = False, ca_dir: CaDir = None, jobs: Jobs = 4, as_json: Json = False,
) -> None:
    """Fetch a checkpoint into the local store, verifying every blob."""
    _copy(src, dest, insecure, ca_dir, jobs, as_json)


def _copy(src: str, dest: str | None, insecure: bool, ca_dir: Path | None, jobs: int, as_json: bool) -> None:
    from .porcelain.transfer import copy

    with ui.progress(not as_json) as on_progress:
        result = copy(src, dest, home=_home(), registry=_registry(insecure, ca_dir, jobs), on_progress=on_progress)
    if as_json:
        ui.print_json(asdict(result))
    else:
        ui.out.print(f"copied {result.source} -> {result.destination}\ndigest {result.digest} ({_size(result.size)})")


@app.command()
def login(
    host: Annotated[str, typer.Argument(help="Registry host[:port].")],
    username: Annotated[str, typer.Option("--username", "-u", prompt=True, help="User name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="Read the password from standard input.")] = False,
    insecure: Insecure = False, ca_dir: CaDir = None, as_json: Json = False,
) -> None:
    """Check credentials against a registry and store them where ckpt looks first: $REGISTRY_AUTH_FILE
    if set, else the docker config.json (or the credential helper it names)."""
    from .registry import login as do_login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    result = do_login(host, username, password, insecure=insecure, ca_dir=ca_dir)
    if as_json:
        ui.print_json(asdict(result))
        return
    ui.out.print(f"login succeeded; credentials stored in {ui.escape(result.stored_in)}")
    ui.out.print(f"credentials for {ui.escape(host)} used from {ui.escape(str(result.used_from))}")
    if result.used_from != result.stored_in:
        ui.err.print(f"[bold yellow]WARNING[/]: ckpt takes the credentials for {ui.escape(host)} from "
                     f"{ui.escape(str(result.used_from))}, not from what was just stored")


@app.command()
def logout(host: Annotated[str, typer.Argument(help="Registry host[:port].")], as_json: Json = False) -> None:
    """Forget the credentials stored for a registry where `ckpt login` puts them."""
    from .registry import logout as do_logout

    result = do_logout(host)
    if as_json:
        ui.print_json(asdict(result))
        return
    name = ui.escape(host)
    ui.out.print(f"removed credentials for {name} from {ui.escape(result.removed_from)}" if result.removed_from
                 else f"no credentials stored for {name} where `ckpt login` puts them")
    if result.used_from:
        ui.out.print(f"credentials for {name} are still used from {ui.escape(result.used_from)}")


@app.command()
def check(as_json: Json = False) -> None:
    """Tell whether this host can save and restore checkpoints, with a hint for each gap."""
    from .porcelain.check import check as do_check

    findings = do_check(home=_home())
    if as_json:
        ui.print_json([asdict(f) for f in findings])
    else:
        for f in findings:
            mark = "[green]ok[/]  " if f.ok else "[red]no[/]  "
            ui.out.print(f"{mark}{f.what:<34} {ui.escape(f.detail)}")
            if f.hint:
                ui.out.print(f"      [yellow]{ui.escape(f.hint)}[/]")
    # Without a network lock or ip/nsenter no container with its own network can be saved or restored.
    essential = {"criu", "runc", "pycriu", "store", "root", "network lock", "ip, nsenter"}
    if any(not f.ok and f.what in essential for f in findings):
        raise typer.Exit(1)


@app.command()
def fsck(
    repair: Annotated[bool, typer.Option("--repair", help="Remove tags whose data is missing or damaged, "
                                                          "garbage blobs, and what killed runs left.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Check sizes only; do not re-hash every blob.")] = False,
    as_json: Json = False,
) -> None:
    """Check the local store (every digest) and find what interrupted runs left behind."""
    from .porcelain.fsck import fsck as do_fsck

    report, leftovers = do_fsck(home=_home(), repair=repair, full=not quick)
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
                         f"freed {_size(report.freed)}")
        elif report.garbage or leftovers:
            ui.out.print(f"{_size(report.garbage)} of garbage and {len(leftovers)} leftover work dirs: "
                         "`ckpt fsck --repair` removes them")
    if not report.ok and not repair:
        raise typer.Exit(8)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _mount_hooks() -> None:
    from .hooks.cli import hooks_app

    app.add_typer(hooks_app, name="hooks")


_mount_hooks()


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


INTERRUPTED = 130


class _Stdout:
    """sys.stdout, except that output it cannot write (its disk is full) is a StorageError, not a
    crash reported as a bug. A reader that went away is left to typer (BrokenPipeError)."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        with self._storage_errors():
            return self._stream.write(text)  # type: ignore[attr-defined]

    def flush(self) -> None:
        with self._storage_errors():
            self._stream.flush()  # type: ignore[attr-defined]

    @staticmethod
    @contextmanager
    def _storage_errors() -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StorageError(f"could not write the output: {exc.strerror or exc}") from exc


def main(argv: list[str] | None = None, *, prog_name: str | None = None) -> int:
    """The one error boundary of every ckpt command (`python -m checkpointer.hooks` comes here too):
    ckpt's errors with their exit code and hint, Ctrl-C and SIGTERM as 130, a bug as 70."""
    signal.signal(signal.SIGTERM, _sigterm)
    stdout, sys.stdout = sys.stdout, _Stdout(sys.stdout)  # type: ignore[assignment]
    try:
        return _main(argv, prog_name)
    finally:
        sys.stdout = stdout


def _main(argv: list[str] | None, prog_name: str | None) -> int:
    try:
        # Not standalone: typer then returns the code of a typer.Exit (`ckpt fsck` asks for 8) and
        # turns a KeyboardInterrupt inside a command into 130, instead of exiting itself.
        code = app(args=argv, prog_name=prog_name, standalone_mode=False)
    except CkptError as exc:
        ui.show_error(exc, debug=State.debug)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # typer's own exit when stdout's reader went away
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence shows a bug as a bug
        if _is_usage_error(exc):
            exc.show()  # type: ignore[attr-defined]
            return 2
        ui.show_unexpected(exc)
        return 70
    if code == INTERRUPTED:  # no command asks for 130 itself
        ui.err.print("[bold red]ERROR[/]: interrupted")
    return code if isinstance(code, int) else 0


def _is_usage_error(exc: Exception) -> bool:
    """A command-line parsing error of typer's (vendored) click: it shows itself with usage."""
    return type(exc).__module__.endswith("click.exceptions") and hasattr(exc, "show")


def _flush_stdout() -> OSError | None:
    """Write out what stdout still holds; the error if it could not be (a reader that went away
    is not one: nobody is left to miss the output)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return None
    except OSError as exc:
        return exc
    except ValueError:  # closed
        return None
    return None


def _output_lost(exc: OSError) -> int:
    ui.err.print(f"[bold red]ERROR[/]: could not write the output: {ui.escape(exc.strerror or str(exc))}")
    return StorageError.exit_code


def run() -> None:
    """Console-script entry point. Every file, lock, thread and child ckpt made is settled when
    main() returns, so the process ends at once instead of tearing the interpreter down (about
    80 ms of freeing modules and objects, paid on every command).

    os._exit skips atexit handlers and the final flush of stdout, so both are done here: logging
    is shut down, stdout flushed (output lost to a full disk is an error, exit 13), stderr too.
    The other atexit handlers in ckpt's process have nothing left to do by then: certifi's
    removes a CA file extracted from a zipped install, concurrent.futures' joins pool threads,
    and every pool is shut down before main() returns (tests/e2e/test_exit_without_atexit.py)."""
    code = main()
    logging.shutdown()
    if lost := _flush_stdout():
        code = code or _output_lost(lost)
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


if __name__ == "__main__":
    run()
