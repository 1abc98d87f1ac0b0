"""The only place that draws on the terminal: errors, tips and progress bars (rich, on stderr)."""
from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["escape", "err", "out", "print_json", "progress", "show_error", "show_unexpected"]

from .errors import CkptError, CriuFailed, RegistryError, RuntimeFailed
from .progress import OnProgress, Update

err = Console(stderr=True, highlight=False, soft_wrap=True)  # no hard wraps in logs and pipes
out = Console(highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def show_timings() -> None:
    """Send the "ckpt.timing" log (checkpointer/timing.py) to stderr."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("timing: %(message)s"))
    logger = logging.getLogger("ckpt.timing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def show_error(exc: CkptError, *, debug: bool = False) -> None:
    if debug:
        err.print(escape("".join(traceback.format_exception(exc))), style="dim")
    err.print(f"[bold red]ERROR[/]: {escape(str(exc))}")
    if isinstance(exc, RegistryError) and exc.codes:
        err.print(f"  registry said: {escape(', '.join(exc.codes))} (HTTP {exc.status})")
    if isinstance(exc, CriuFailed) and exc.log_tail:
        err.print("  CRIU log:")
        for line in exc.log_tail.splitlines():
            err.print(f"    {escape(line)}", style="dim")
    elif isinstance(exc, RuntimeFailed) and exc.output:
        for line in exc.output.splitlines()[-10:]:
            err.print(f"    {escape(line)}", style="dim")
    if exc.hint:
        err.print(f"[bold yellow]TIP[/]: {escape(exc.hint)}")


def show_unexpected(exc: BaseException) -> None:
    err.print(escape("".join(traceback.format_exception(exc))), style="dim")
    err.print(f"[bold red]INTERNAL ERROR[/]: {escape(repr(exc))}")
    err.print("[bold yellow]TIP[/]: this is a bug in ckpt; run again with --debug and report it")


@contextmanager
def progress(enabled: bool) -> Iterator[OnProgress]:
    """A progress callback that draws one bar per phase on a terminal, and nothing otherwise."""
    if not enabled or not err.is_terminal:
        yield lambda update: None
        return
    # Imported here: progress bars are drawn on terminals only, and rich.progress costs ~15 ms.
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn, TransferSpeedColumn

    bars = Progress(TextColumn("{task.description:<16}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeElapsedColumn(), console=err, transient=False)
    tasks: dict[str, Any] = {}

    def on_progress(update: Update) -> None:
        task = tasks.get(update.phase)
        if task is None:
            task = tasks[update.phase] = bars.add_task(update.phase, total=update.total or None)
        bars.update(task, completed=update.done, total=update.total or None)

    with bars:
        yield on_progress
