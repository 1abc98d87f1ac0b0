"""`ckpt check`."""
from __future__ import annotations

from dataclasses import asdict

import typer

from .. import ui
from .app import app, home
from .options import Json

# Without a network lock or ip/nsenter no container with its own network can be saved or restored.
ESSENTIAL = {"criu", "runc", "pycriu", "store", "root", "network lock", "ip, nsenter"}


@app.command()
def check(as_json: Json = False) -> None:
    """Tell whether this host can save and restore checkpoints, with a hint for each gap."""
    from ..porcelain.check import check as do_check

    findings = do_check(home=home())
    if as_json:
        ui.print_json([asdict(f) for f in findings])
    else:
        for f in findings:
            mark = "[green]ok[/]  " if f.ok else "[red]no[/]  "
            ui.out.print(f"{mark}{f.what:<34} {ui.escape(f.detail)}")
            if f.hint:
                ui.out.print(f"      [yellow]{ui.escape(f.hint)}[/]")
    if any(not f.ok and f.what in ESSENTIAL for f in findings):
        raise typer.Exit(1)
