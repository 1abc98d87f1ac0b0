"""`ckpt hooks ...`: the runtime hooks' own sub-app (checkpointer/hooks/cli.py), mounted here."""
from __future__ import annotations

from ..hooks.cli import hooks_app
from .app import app

app.add_typer(hooks_app, name="hooks")
