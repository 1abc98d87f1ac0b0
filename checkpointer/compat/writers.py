"""Placeholder replaced in a later step."""
from __future__ import annotations

from ..errors import UsageError

SHAPES = ("ckpt",)


def check_compat(shape: str) -> None:
    if shape not in SHAPES:
        raise UsageError(f"unknown --compat {shape!r}", hint=f"one of: {', '.join(SHAPES)}")


def write_compat(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    raise UsageError("--compat is not available yet")
