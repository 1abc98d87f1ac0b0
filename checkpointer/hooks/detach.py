"""Start a process that outlives the caller and holds none of its pipes (double fork + setsid).

The runtime waits for CRIU, CRIU waits for the action script, and whoever ran the runtime may
wait for EOF on its output pipes: the publisher must share none of those, or the checkpoint
would wait for the upload after all.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def python_argv(python: str, function: str, *args: str) -> list[str]:
    """A command that runs `function` ("package.module:name", called with the args, returning
    an exit code) under `python` in isolated mode (-I: no PYTHON* variables from the runtime's
    environment), finding this very copy of ckpt first."""
    module, name = function.split(":")
    root = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path.insert(0, sys.argv.pop(1)); from {module} import {name}; "
            f"sys.exit({name}(sys.argv[1:]))")
    return [python or sys.executable, "-I", "-c", code, root, *args]


def spawn_detached(argv: list[str], *, log: Path, pass_fds: tuple[int, ...] = (),
                   env: dict[str, str] | None = None) -> None:
    """Run `argv` in a new session, as a grandchild reparented away from us; its stdout and
    stderr go to `log`. Returns once the intermediate child has exited."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            with open(log, "ab") as out:
                subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/", env=env,
                                 pass_fds=pass_fds, close_fds=True)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(f"could not start {argv[0]} (status {status})")
