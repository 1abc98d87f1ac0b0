#!/usr/bin/env python3
"""Lazy restore benchmark: how soon a restored workload runs again, and how soon all its memory is
in, with the memory served on demand by ckpt's page server (checkpointer/lazy), against an eager
restore of the same checkpoint.

    sudo .venv/bin/python bench/lazy.py [--sizes 512,2048] [--repeat 3] [--access idle,busy] [--json OUT]

For each memory size it starts the sample workload (samples/workload.c, ticking every 20 ms),
dumps it with `runc checkpoint`, packs the dump with ckpt's writer into an OCI layout and pushes
that to a docker-registry on 127.0.0.1. Then, interleaved per repetition, it restores the same
checkpoint four ways into a fresh copy of the bundle (the rootfs is not part of what is timed):

  eager, layout     unpack the criu and pages layers (tmpfs; on disk from 4 GiB up), `runc restore`
  eager, registry   pull every blob into a fresh layout, then as above
  lazy, layout      fork the page supervisor, unpack the criu layer meanwhile, hand it the job
                    (it writes the few pages the restore reads itself and starts `criu lazy-pages`),
                    `runc restore --lazy-pages`
  lazy, registry    fetch the manifest and the criu layer from the registry, then as above with
                    every chunk fetched from the registry on demand (no cache)

"first tick" is when the workload wrote its first state after the restore (the state file's
mtime), "all in" when every page was in (eager: `runc restore` returned; lazy: the daemon said
so). Times count from the start of the restore. Access patterns: `idle` the workload touches
little of its memory; `busy` it reads all of it every second (the first read may fall inside
the transfer); after a busy run the memory checksum must verify.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from support.registry_server import RegistryServer  # noqa: E402

from checkpointer.format import roles  # noqa: E402
from checkpointer.format.config import CheckpointConfig  # noqa: E402
from checkpointer.format.read import open_checkpoint, unpack_images, unpack_layer  # noqa: E402
from checkpointer.format.write import write_checkpoint  # noqa: E402
from checkpointer.host import host_info  # noqa: E402
from checkpointer.lazy.handle import Delivery  # noqa: E402
from checkpointer.lazy.job import Job, SourceSpec  # noqa: E402
from checkpointer.lazy.registry_source import RegistrySource  # noqa: E402
from checkpointer.lazy.status import COMPLETE  # noqa: E402
from checkpointer.lazy.stop import Stopper  # noqa: E402
from checkpointer.oci import tarball  # noqa: E402
from checkpointer.oci.layout import Layout  # noqa: E402
from checkpointer.oci.model import Manifest  # noqa: E402
from checkpointer.reference import RegistryRef  # noqa: E402
from checkpointer.registry import Registry, pull, push  # noqa: E402
from checkpointer.registry.manifests import fetch_manifest  # noqa: E402

INTERVAL_MS = 20
VERIFY_EVERY = {"idle": 1_000_000_000, "busy": 1000 // INTERVAL_MS}
SHM = Path("/dev/shm")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res


def state(bundle: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in (bundle / "rootfs" / "state").read_text().split())


def wait_state(bundle: Path, predicate, timeout: float = 120.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = state(bundle)
            if predicate(last):
                return last
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)
    raise RuntimeError(f"the workload never reached the expected state; last: {last}")


def first_tick(bundle: Path, dumped_counter: int, timeout: float = 120.0) -> float:
    """Wall-clock time of the workload's first tick after the restore: the state file's mtime,
    less the ticks that came after it when the file was read late."""
    path = bundle / "rootfs" / "state"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = path.stat()
            counter = int(dict(i.split("=", 1) for i in path.read_text().split())["counter"])
        except (OSError, ValueError, KeyError):
            counter = 0
        if counter > dumped_counter:
            return st.st_mtime - (counter - dumped_counter - 1) * INTERVAL_MS / 1000
        time.sleep(0.001)
    raise RuntimeError("the restored workload never ticked")


@dataclass
class Dumped:
    size: int
    access: str
    layout: Layout
    manifest: Manifest
    ref: RegistryRef
    pristine: Path  # the bundle as it was at the dump
    before: dict[str, str]


class Rig:
    def __init__(self, work: Path, registry: RegistryServer) -> None:
        self.work, self.reg = work, registry
        self.template = work / "template"
        self.runc_root = work / "runc-root"
        self.runc_root.mkdir()
        run([sys.executable, str(REPO / "samples" / "make_bundle.py"), str(self.template)])
        self.n = 0

    def scratch(self, prefix: str, size: int = 0) -> Path:
        """A private scratch directory: in tmpfs, unless `size` MiB of it (twice over, with the
        restored process) would crowd out the machine's memory."""
        return Path(tempfile.mkdtemp(prefix=prefix, dir=SHM if size < 4096 else self.work))

    def runc(self, *args: str) -> subprocess.CompletedProcess:
        return run(["runc", "--root", str(self.runc_root), *args])

    def dump(self, size: int, access: str) -> Dumped:
        name = f"lazy-bench-{size}-{access}"
        bundle = self.work / f"bundle-{name}"
        shutil.copytree(self.template, bundle, symlinks=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["args"] = ["/bin/workload", "--mem", str(size), "--state", "/state", "--interval-ms",
                                   str(INTERVAL_MS), "--verify-every", str(VERIFY_EVERY[access]), "--seed",
                                   str(random.randrange(1, 1 << 40))]
        (bundle / "config.json").write_text(json.dumps(spec))
        self.runc("run", "--detach", "--bundle", str(bundle), name)
        wait_state(bundle, lambda s: int(s["counter"]) >= 5)
        images = self.scratch("dump-", size)
        self.runc("checkpoint", "--image-path", str(images), "--work-path", str(images), name)
        before = state(bundle)
        pristine = self.work / f"pristine-{name}"
        shutil.copytree(bundle, pristine, symlinks=True)
        shutil.rmtree(bundle)
        layout = Layout(self.work / f"layout-{name}", create=True)
        config = CheckpointConfig(engine="runc", runtime="runc", runtime_version="", criu_version="",
                                  host=host_info(), container_id=name, container_name=name,
                                  created="2026-01-01T00:00:00Z")
        for log in images.glob("*.log"):
            log.unlink()
        desc = write_checkpoint(layout, images=images, rootfs=None, spec=None, config=config)
        shutil.rmtree(images)
        layout.tag("bench", desc)
        ref = RegistryRef(self.reg.host, f"bench/lazy-{size}-{access}", "v1")
        with Registry(self.reg.host) as reg:
            push(layout, desc, ref, registry=reg)
        return Dumped(size, access, layout, open_checkpoint(layout, desc).manifest, ref, pristine, before)

    def bundle_for(self, d: Dumped) -> tuple[str, Path]:
        self.n += 1
        name = f"lazy-bench-r{self.n}"
        bundle = self.work / f"bundle-{name}"
        shutil.copytree(d.pristine, bundle, symlinks=True)
        return name, bundle

    def finish(self, d: Dumped, name: str, bundle: Path, result: dict) -> dict:
        """Check that the workload carried on (and, when busy, that its memory verifies), then remove it."""
        after = wait_state(bundle, lambda s: int(s["counter"]) > int(d.before["counter"]) + 2)
        ok = after["nonce"] == d.before["nonce"]
        if d.access == "busy":
            done = int(after["counter"])
            checked = wait_state(bundle, lambda s: int(s["counter"]) > done and s["ticks_since_verify"] == "0")
            ok = ok and checked["verified"] == d.before["checksum"]
        result["ok"] = ok
        run(["runc", "--root", str(self.runc_root), "delete", "--force", name])
        shutil.rmtree(bundle, ignore_errors=True)
        return result

    # -- eager --------------------------------------------------------------------------------

    def eager(self, d: Dumped, *, registry: bool) -> dict:
        name, bundle = self.bundle_for(d)
        os.sync()
        images = self.scratch("eager-", d.size)
        t0 = time.time()
        layout = d.layout
        if registry:
            layout = Layout(self.scratch("eager-pull-", d.size), create=True)
            with Registry(self.reg.host) as reg:
                desc = pull(d.ref, layout, registry=reg)
        else:
            desc = d.layout.resolve("bench")
        unpack_images(layout, open_checkpoint(layout, desc), images)
        t_unpacked = time.time()
        self.runc("restore", "--detach", "--image-path", str(images), "--work-path", str(images),
                  "--bundle", str(bundle), name)
        t_restored = time.time()
        result = {"first_tick": first_tick(bundle, int(d.before["counter"])) - t0, "all_in": t_restored - t0,
                  "fetch": t_unpacked - t0, "restore": t_restored - t_unpacked}
        shutil.rmtree(images)
        if registry:
            shutil.rmtree(layout.root)
        return self.finish(d, name, bundle, result)

    # -- lazy ---------------------------------------------------------------------------------

    def lazy(self, d: Dumped, *, registry: bool) -> dict:
        name, bundle = self.bundle_for(d)
        os.sync()
        base = self.scratch("lazy-", d.size)
        images, work = base / "images", base / "work"
        images.mkdir()
        work.mkdir()
        t0 = time.time()
        delivery = Delivery.fork(work)  # before any thread: a few ms, not an interpreter start
        manifest, criu_layout = d.manifest, d.layout
        if registry:
            with Registry(self.reg.host) as reg:
                manifest = Manifest.from_bytes(fetch_manifest(reg, d.ref.repository, "v1").data)
                criu_layout = Layout(base / "criu-layer", create=True)
                source = RegistrySource(reg, d.ref.repository)
                for layer in manifest.layers:
                    if layer.annotations.get("dev.ckpt.layer.role") == roles.CRIU:
                        criu_layout.put_bytes(source.read_blob(layer), layer.media_type)
            spec = SourceSpec("registry", host=self.reg.host, repository=d.ref.repository)
        else:
            spec = SourceSpec("layout", layout=str(d.layout.root))
        for layer in manifest.layers:
            if layer.annotations.get("dev.ckpt.layer.role") == roles.CRIU:
                unpack_layer(criu_layout, layer, images, tarball.CRIU_IMAGES)
        runc = ("runc", "--root", str(self.runc_root))
        chunks = tuple(layer for layer in manifest.layers if layer.annotations.get("dev.ckpt.layer.role")
                       == roles.PAGES)
        job = Job(images, work, chunks, spec,
                  Stopper((*runc, "kill", "--all", name, "KILL"), ((*runc, "delete", "--force", name),)))
        t_criu = time.time()
        delivery.begin(job)
        t_ready = time.time()
        self.runc("restore", "--detach", "--lazy-pages", "--image-path", str(images), "--work-path", str(work),
                  "--bundle", str(bundle), name)
        t_restored = time.time()
        delivery.restored(json.loads(self.runc("state", name).stdout)["pid"])
        tick = first_tick(bundle, int(d.before["counter"]))
        status = delivery.wait(600)
        if status.state != COMPLETE:
            raise RuntimeError(f"lazy restore failed: {status.error}")
        result = {"first_tick": tick - t0, "all_in": status.finished - t0, "fetch": t_criu - t0,
                  "supervisor": t_ready - t_criu, "restore": t_restored - t_ready,
                  "requests": status.requests, "fetched_mb": status.fetched_bytes / 2**20}
        result = self.finish(d, name, bundle, result)
        shutil.rmtree(base, ignore_errors=True)
        return result


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(results: dict) -> str:
    lines = []
    for key, modes in results.items():
        size, access = key.split("/")
        n = len(next(iter(modes.values())))
        lines.append(f"\n### {size} MiB, workload {access}, median of {n}\n")
        lines.append("| restore | first tick | all in | fetch | supervisor | runc restore | requests | ok |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for mode, runs in modes.items():
            sup = f"{median(runs, 'supervisor'):.2f} s" if "supervisor" in runs[0] else ""
            req = f"{median(runs, 'requests'):.0f}" if "requests" in runs[0] else ""
            lines.append(f"| {mode} | {median(runs, 'first_tick'):.3f} s | {median(runs, 'all_in'):.2f} s | "
                         f"{median(runs, 'fetch'):.2f} s | {sup} | {median(runs, 'restore'):.2f} s | {req} | "
                         f"{all(r['ok'] for r in runs)} |")
        for where in ("layout", "registry"):
            lazy, eager = modes.get(f"lazy, {where}"), modes.get(f"eager, {where}")
            if lazy and eager:
                all_in = median(lazy, "all_in") / median(eager, "all_in")
                tick = median(lazy, "first_tick") / median(eager, "first_tick")
                lines.append(f"\n{where}: lazy all-in / eager = {all_in:.2f}x, first tick lazy / eager = {tick:.2f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="512,2048")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--access", default="idle,busy")
    parser.add_argument("--modes", default="eager-layout,lazy-layout,eager-registry,lazy-registry")
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lazy.py needs root (runc, CRIU)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ckpt-lazy-bench-", dir="/var/tmp"))
    results: dict[str, dict[str, list[dict]]] = {}
    try:
        with RegistryServer(work) as registry:
            rig = Rig(work, registry)
            for size in (int(s) for s in opts.sizes.split(",")):
                for access in opts.access.split(","):
                    dumped = rig.dump(size, access)
                    modes = results.setdefault(f"{size}/{access}", {})
                    for _ in range(opts.repeat):
                        for mode in opts.modes.split(","):
                            kind, where = mode.split("-")
                            fn = rig.lazy if kind == "lazy" else rig.eager
                            res = fn(dumped, registry=where == "registry")
                            modes.setdefault(f"{kind}, {where}", []).append(res)
                            print(f"{size} MiB {access} {kind}/{where}: " + ", ".join(
                                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()),
                                flush=True)
                    shutil.rmtree(dumped.layout.root)
                    shutil.rmtree(dumped.pristine)
    finally:
        subprocess.run(["runc", "--root", str(work / "runc-root"), "list", "-q"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(report(results))
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
