"""Progress reports: plain data handed to an optional callback; the CLI decides how to show them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Update:
    """`done` of `total` units (bytes unless said otherwise) of `phase`; total 0 means unknown."""

    phase: str
    done: int
    total: int = 0
    item: str = ""


OnProgress = Callable[[Update], None]


def noop(_: Update) -> None:
    pass
