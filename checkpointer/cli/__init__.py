"""The `ckpt` command line: parse, call the porcelain, render. The app and its global options are in
app.py, the shared options in options.py, one module per command group; here is the one error
boundary every command goes through (`python -m checkpointer.hooks` too)."""
from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from .. import ui
from ..errors import CkptError, StorageError
from . import check, hooks, registry, save, status, store  # noqa: F401 - each registers its commands on the app
from .app import State, app

__all__ = ["app", "main", "run"]

# The order `ckpt --help` lists the commands in.
ORDER = ("save", "restore", "status", "inspect", "convert", "export", "ls", "rm", "push", "pull", "login", "logout",
         "check", "fsck")
app.registered_commands.sort(key=lambda c: ORDER.index(c.name or c.callback.__name__))  # type: ignore[union-attr]


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
            return self._stream.write(text)  # type: ignore[attr-defined, no-any-return]

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
    except Exception as exc:  # the last line of defence shows a bug as a bug
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
