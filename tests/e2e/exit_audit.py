"""Run ckpt commands in one process through cli.main, as `ckpt` does before it ends with os._exit,
and report what an ordinary interpreter exit would still have done that os._exit skips: the
atexit (and threading-atexit) handlers registered, threads still running, weakref finalizers
waiting for the exit (a TemporaryDirectory nobody cleaned up).

    python exit_audit.py REPORT.json '[["ls", "--json"], ["save", ...]]'
"""
import atexit
import json
import sys
import threading
import weakref
from pathlib import Path

registered = []


def _spy(register):
    def spy(func, *args, **kwargs):
        registered.append(f"{func.__module__}.{func.__qualname__}")
        return register(func, *args, **kwargs)
    return spy


atexit.register = _spy(atexit.register)
threading._register_atexit = _spy(threading._register_atexit)  # concurrent.futures joins its workers there

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from checkpointer import cli  # noqa: E402

codes = [cli.main(command) for command in json.loads(sys.argv[2])]
main = threading.main_thread()
report = {
    "codes": codes,
    "registered": sorted(set(registered)),
    "threads": sorted(t.name for t in threading.enumerate() if t is not main and t.is_alive() and not t.daemon),
    "finalizers": [repr(f) for f, info in list(weakref.finalize._registry.items()) if info.atexit],  # type: ignore[attr-defined]
}
Path(sys.argv[1]).write_text(json.dumps(report))
