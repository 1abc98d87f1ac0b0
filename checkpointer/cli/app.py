"""The `ckpt` typer app and its global options; the command groups register on it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import __version__, ui
from ..errors import EXIT_CODES
from ..porcelain.home import Home

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


def home() -> Home:
    return State.home or Home()


def _version(value: bool) -> None:
    if value:
        print(f"ckpt {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", envvar="CKPT_DEBUG",
                                        help="Show tracebacks for errors.")] = False,
    home: Annotated[Path | None, typer.Option("--home", envvar="CKPT_HOME",
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


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
