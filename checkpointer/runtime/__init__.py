"""Container runtimes (runc, Podman) driven through their command lines, and the resume guard."""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

# How a runtime runs its binary and finds it: subprocess.run and shutil.which, or a test's stand-ins
# (tests/porcelain drives the engines with a scripted runc and podman, as a normal user).
Runner = Callable[..., "subprocess.CompletedProcess[Any]"]
Which = Callable[[str], "str | None"]
