#!/usr/bin/env python3
"""A Podman-engine save, this tree against an earlier revision, in one run.

    sudo .venv/bin/python bench/podman_save.py --baseline REV [--mem 512] [--repeat 5]

Each repetition starts the sample workload (samples/workload.c) in a Podman container and times
`ckpt save NAME REGISTRY/REPO:TAG` (checkpoint, pack, push to a docker-registry on 127.0.0.1), once
with each tree, in a random order per repetition so machine noise hits both alike. REV's tree is
taken with `git archive` into a scratch directory and run with this venv (`python -m checkpointer`
from there). Prints medians and the ratio.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from migrate import PODMAN_RUN, BASE_IMAGE, PY, Bench, machine, run, settle, wait_state, workload_args  # noqa: E402
from support.registry_server import RegistryServer  # noqa: E402


def tree_at(rev: str, dest: Path) -> Path:
    """The checkpointer package of revision `rev`, unpacked into `dest`."""
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "checkpointer"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def save_once(bench: Bench, tree: Path, mem: int, tag: str) -> float:
    name = f"bench-psave-{tag}"
    run(["podman", "run", "--detach", "--name", name, *PODMAN_RUN, BASE_IMAGE,
         *workload_args(mem, random.randrange(1, 1 << 62))])
    try:
        wait_state(lambda: run(["podman", "exec", name, "cat", "/state"]).stdout, lambda s: int(s["counter"]) >= 3)
        home = bench.work / f"home-{tag}"
        settle()
        start = time.perf_counter()
        subprocess.run([PY, "-m", "checkpointer", "save", name, f"{bench.reg.host}/bench/psave-{tag}:v1",
                        "--insecure"], cwd=tree, env={**os.environ, "CKPT_HOME": str(home), "PYTHONPATH": str(tree)},
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        return time.perf_counter() - start
    finally:
        run(["podman", "rm", "--force", "--time", "0", name], check=False)
        subprocess.run(["rm", "-rf", str(bench.work / f"home-{tag}")], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--mem", type=int, default=512, help="MiB of workload memory")
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 1
    times: dict[str, list[float]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-") as tmp, RegistryServer(Path(tmp), auth="none") as reg:
        bench = Bench(Path(tmp), reg)
        bench.podman_ready()
        trees = {"before": tree_at(opts.baseline, Path(tmp) / "before"), "after": REPO}
        for i in range(opts.repeat):
            order = list(trees)
            random.shuffle(order)
            for which in order:
                times[which].append(save_once(bench, trees[which], opts.mem, f"{which}-{i}"))
                print(f"run {i + 1} {which}: {times[which][-1]:.2f} s", file=sys.stderr)
        run(["podman", "rmi", "--force", BASE_IMAGE], check=False)
    before, after = (statistics.median(times[k]) for k in ("before", "after"))
    print(f"Machine: {machine()}\n")
    print(f"Podman-engine save of {opts.mem} MiB to a registry, median of {opts.repeat}:\n")
    print("| tree | save |\n|---|---|")
    print(f"| {opts.baseline} (before) | {before:.2f} s |\n| this tree (after) | {after:.2f} s |")
    print(f"\nRatio after / before = {after / before:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
