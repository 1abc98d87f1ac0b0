#!/usr/bin/env python3
"""Draw docs/benchmarks.png from the JSON that `bench/migrate.py --json` wrote.

    .venv/bin/pip install matplotlib   # only for this picture; the project does not need it
    .venv/bin/python bench/plot.py RESULTS.json docs/benchmarks.png
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main(source: Path, target: Path) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(source.read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))

    sizes = sorted(results["migration"], key=int)
    tools = (("podman", "Podman", "tab:red"), ("ckpt", "ckpt", "tab:blue"), ("floor", "bare tools", "tab:gray"))
    width = 0.27
    for i, (key, label, color) in enumerate(tools):
        values = [statistics.median(r["total"] for r in results["migration"][s][key]) if results["migration"][s][key]
                  else 0 for s in sizes]
        xs = [j + (i - 1) * width for j in range(len(sizes))]
        bars = left.bar(xs, values, width, label=label, color=color)
        left.bar_label(bars, fmt="%.1f s", fontsize=8)
    left.set_xticks(range(len(sizes)), [f"{int(s)} MiB" for s in sizes])
    left.set_ylabel("migration time, save + restore (s)")
    left.set_title("Migration through a registry on 127.0.0.1 (median)")
    left.legend()

    points = {int(s): statistics.median(r["total"] for r in results["migration"][s]["ckpt"]) for s in sizes}
    points.update({int(s): statistics.median(r["total"] for r in runs) for s, runs in results["scaling"].items()})
    xs = sorted(points)
    right.plot([x / 1024 for x in xs], [points[x] for x in xs], "o-", color="tab:blue", label="ckpt")
    podman = {int(s): statistics.median(r["total"] for r in results["migration"][s]["podman"])
              for s in sizes if results["migration"][s]["podman"]}
    if podman:
        right.plot([x / 1024 for x in sorted(podman)], [podman[x] for x in sorted(podman)], "o-", color="tab:red",
                   label="Podman")
    right.set_xlabel("container memory (GiB)")
    right.set_ylabel("migration time (s)")
    right.set_title("Cost against memory size")
    right.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
