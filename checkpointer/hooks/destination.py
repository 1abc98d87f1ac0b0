"""Which destination a container's annotation names, and whether this host lets it go there.

A container's annotations are written by whoever creates it, while the hook publishes with the
host's credentials. So by default an annotation may name a registry or the local store, but not
a path on the host (oci:PATH, archives); `dev.ckpt.hooks.allow` narrows this to given prefixes.
"""
from __future__ import annotations

import re
from datetime import datetime

from ..errors import UsageError
from ..reference import ArchiveRef, LayoutRef, Ref, parse

_FIELD = re.compile(r"\{(timestamp|id)\}")


def expand(template: str, *, container_id: str, when: datetime) -> str:
    """Fill `{timestamp}` (UTC, 20261128T084500Z) and `{id}` (the container id's first 12
    characters) into a destination, so that repeated checkpoints get tags of their own."""
    values = {"timestamp": when.strftime("%Y%m%dT%H%M%SZ"), "id": container_id[:12].lower()}
    return _FIELD.sub(lambda m: values[m.group(1)], template.strip())


def check(text: str, allow: tuple[str, ...]) -> Ref:
    """The parsed destination, or UsageError when it is malformed or not allowed here."""
    ref = parse(text)
    if allow:
        if not any(_under(text, prefix) for prefix in allow):
            raise UsageError(f"destination {text!r} is not allowed on this host",
                             hint="dev.ckpt.hooks.allow in the hooks config lists the allowed prefixes: "
                                  + ", ".join(allow))
    elif isinstance(ref, (LayoutRef, ArchiveRef)):
        raise UsageError(f"destination {text!r} is a path on the host, which an annotation may not name "
                         "unless the host allows it", hint="list it in dev.ckpt.hooks.allow in the hooks config")
    return ref


def _under(text: str, prefix: str) -> bool:
    """`text` is `prefix` or lies below it: "reg.example.com/team" covers "reg.example.com/team/web:v1"
    and "reg.example.com/team:v1", but not "reg.example.com/teammate/web"."""
    if not text.startswith(prefix):
        return False
    return prefix.endswith(("/", ":")) or len(text) == len(prefix) or text[len(prefix)] in "/:@"
