"""The one way a save or a restore undoes what it started when a step fails or the user presses
Ctrl-C: undo, then report the failure; Ctrl-C becomes Interrupted (exit 130) with what was undone."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import Interrupted

SAVE_INTERRUPTED = "save interrupted; the container was put back and nothing was tagged"
RESTORE_INTERRUPTED = "restore interrupted; nothing was left behind"


@contextmanager
def undone_on_failure(undo: Callable[[], None], *, interrupted: str) -> Iterator[None]:
    """Run `undo` if the block raises anything (KeyboardInterrupt and SIGTERM included), then
    re-raise; a KeyboardInterrupt as Interrupted(`interrupted`). An error of `undo` itself (the
    container could not be put back) is raised instead, with the first one as its cause."""
    try:
        yield
    except BaseException as exc:
        undo()
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(interrupted) from None
        raise
