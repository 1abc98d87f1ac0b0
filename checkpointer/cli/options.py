"""The options several commands share, in one place, and typed option groups: a command parameter
annotated with one of the groups below shows on the command line as the group's options, and the
command receives the group, built (see `grouped`)."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..criu.options import CriuOptions
from ..porcelain.places import RegistryOptions

RuncRoot = Annotated[Path | None, typer.Option("--runc-root", help="runc's state directory (runc --root).")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
Insecure = Annotated[bool, typer.Option("--insecure", help="Allow plain HTTP / unverified TLS to this registry.")]
CaDir = Annotated[Path | None, typer.Option("--ca-dir", help="Directory of extra CA certificates (*.crt).")]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, help="Blobs transferred in parallel.")]
EncryptTo = Annotated[list[Path] | None, typer.Option(
    "--encrypt-to", help="Encrypt every layer to this PEM public key (RSA or EC; repeatable; `jwe:PATH` too). "
                         "Readable by skopeo and containerd's imgcrypt.")]
DecryptKey = Annotated[list[Path] | None, typer.Option(
    "--decrypt-key", help="PEM private key to decrypt an encrypted checkpoint (repeatable). A passphrase "
                          "is read from $CKPT_KEY_PASSPHRASE.")]
Engine = Annotated[str | None, typer.Option(
    "--engine", help="runc, podman or process. save: found by the container's name; restore: the engine "
                     "that made the checkpoint.")]
Compat = Annotated[str | None, typer.Option(
    "--compat", help="Shape of the result: ckpt (default), podman (an image `podman container restore` "
                     "takes), cri-o or kubernetes (an image CRI-O restores).")]


@dataclasses.dataclass(frozen=True)
class Registry:
    """--insecure --ca-dir --jobs"""

    insecure: Insecure = False
    ca_dir: CaDir = None
    jobs: Jobs = 4

    def options(self) -> RegistryOptions:
        return RegistryOptions(insecure=self.insecure, ca_dir=self.ca_dir, jobs=self.jobs)


@dataclasses.dataclass(frozen=True)
class RegistryNoJobs:
    """--insecure --ca-dir (commands that move one small thing)"""

    insecure: Insecure = False
    ca_dir: CaDir = None

    def options(self) -> RegistryOptions:
        return RegistryOptions(insecure=self.insecure, ca_dir=self.ca_dir, jobs=4)


@dataclasses.dataclass(frozen=True)
class Criu:
    """The CRIU options a dump needs; recorded in the checkpoint, and used again by its restore."""

    leave_running: Annotated[bool, typer.Option("--leave-running", help="Keep the container running.")] = False
    tcp_established: Annotated[bool, typer.Option("--tcp-established",
                                                  help="Checkpoint established TCP connections.")] = False
    file_locks: Annotated[bool, typer.Option("--file-locks", help="Checkpoint held file locks.")] = False
    ext_unix_sk: Annotated[bool, typer.Option("--ext-unix-sk",
                                              help="Allow unix sockets connected outside the container.")] = False
    shell_job: Annotated[bool, typer.Option("--shell-job", help="The container runs on an outside terminal.")] = False

    def options(self) -> CriuOptions:
        return CriuOptions(leave_running=self.leave_running, tcp_established=self.tcp_established,
                           file_locks=self.file_locks, ext_unix_sk=self.ext_unix_sk, shell_job=self.shell_job)


F = TypeVar("F", bound=Callable[..., Any])


def grouped(command: F) -> F:
    """Let `command` take option groups: each parameter annotated with a dataclass above is shown to
    typer as that dataclass's fields (in their order, at its place), and `command` is called with
    the dataclass built from them."""
    hints = typing.get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for param in inspect.signature(command).parameters.values():
        annotation = hints.get(param.name, param.annotation)
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            fields = typing.get_type_hints(annotation, include_extras=True)
            names = [field.name for field in dataclasses.fields(annotation)]
            params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=fields[name],
                                         default=getattr(annotation, name)) for name in names]
            groups[param.name] = (annotation, names)
        else:
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=annotation))

    @functools.wraps(command)
    def run(**given: Any) -> Any:
        for name, (group, names) in groups.items():
            given[name] = group(**{field: given.pop(field) for field in names})
        return command(**given)

    run.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    run.__annotations__ = {param.name: param.annotation for param in params}
    return typing.cast(F, run)


def public_keys(paths: list[Path] | None) -> list[Any]:
    if not paths:
        return []
    from ..crypt import load_public_key

    return [load_public_key(str(p)) for p in paths]


def private_keys(paths: list[Path] | None) -> list[Any]:
    if not paths:
        return []
    from ..crypt import load_private_key

    passphrase = os.environ.get("CKPT_KEY_PASSPHRASE")
    return [load_private_key(p, passphrase) for p in paths]
