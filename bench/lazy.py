#!/usr/bin/env python3
"""Lazy restore benchmark: how soon a restored workload runs again, and how soon all its memory is
in, with the memory served on demand by ckpt's page server (checkpointer/lazy), against an eager
restore of the same checkpoint and against Podman.

    sudo .venv/bin/python bench/lazy.py [--suite cli|plumbing] [--sizes 512,2048,8192] [--repeat 3]
                                        [--podman-sizes 512,2048] [--json OUT]

Suite `cli` (the default) measures the commands a user runs, from a docker-registry on 127.0.0.1:
for each memory size it starts the sample workload (samples/workload.c, ticking every 20 ms),
`ckpt save`s it to the registry once, and then, interleaved per repetition, restores it into an
empty CKPT_HOME (nothing of the source at hand) three ways:

  ckpt eager      `ckpt restore REF`
  ckpt lazy       `ckpt restore --lazy REF` (then `ckpt status --wait`)
  Podman          `podman pull` + `podman container restore` of a `--create-image` checkpoint
                  pushed to the same registry (sizes in --podman-sizes)

"first tick" is from the start of the command to the workload's first state write after the
restore (the state file's mtime); "all in" is when every page was in (eager: the command
returned; lazy: the supervisor's status says so). At the sizes in --migrate-sizes it also measures
a migration as the workload sees it (downtime: its longest gap between two ticks) with `ckpt save`
followed by `ckpt restore` and by `ckpt restore --lazy`; `ckpt inspect` of the checkpoint (bytes
the registry sent, through a counting proxy, and time); and a second lazy and eager restore into
the CKPT_HOME of an earlier one, whose blob cache holds every chunk (blob bytes sent: must be 0).
From 4 GiB up scratch stays on disk (CKPT_NO_TMPFS): twice the memory in tmpfs would crowd the
machine.

Suite `plumbing` measures the page server alone, without the command line: for each memory size
it dumps the workload with `runc checkpoint`, packs the dump with ckpt's writer into an OCI layout
and pushes that to the registry; then, interleaved per repetition, it restores the same checkpoint
four ways into a fresh copy of the bundle (the rootfs is not part of what is timed):

  eager, layout     unpack the criu and pages layers (tmpfs; on disk from 4 GiB up), `runc restore`
  eager, registry   pull every blob into a fresh layout, then as above
  lazy, layout      fork the page supervisor, unpack the criu layer meanwhile, hand it the job
                    (it writes the few pages the restore reads itself and starts `criu lazy-pages`),
                    `runc restore --lazy-pages`
  lazy, registry    fetch the manifest and the criu layer from the registry, then as above with
                    every chunk fetched from the registry on demand (no cache)

Access patterns (plumbing): `idle` the workload touches little of its memory; `busy` it reads all
of it every second (the first read may fall inside the transfer); after a busy run the memory
checksum must verify. Every restore checks that the workload carried on (same nonce).
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

from support.recording_proxy import RecordingProxy  # noqa: E402
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


def run(cmd: list[str], *, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if check and res.returncode != 0:
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


def plumbing_main(opts: argparse.Namespace) -> int:
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


# -- the command line: ckpt restore --lazy against ckpt restore and Podman ----------------------------

PY = str(REPO / ".venv" / "bin" / "python")
PODMAN_RUN = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
BASE_IMAGE = "localhost/ckpt-lazy-bench:latest"
LARGE = 4096  # MiB: from here on scratch stays on disk


def workload_args(size: int) -> list[str]:
    return ["/bin/workload", "--mem", str(size), "--state", "/state", "--interval-ms", str(INTERVAL_MS),
            "--verify-every", str(VERIFY_EVERY["idle"]), "--seed", str(random.randrange(1, 1 << 40))]


def tick_of(path: Path, after: int, not_before: float = 0.0, timeout: float = 180.0) -> float:
    """Wall-clock time of the first tick past `after` written to the state file `path` (which may
    not exist yet) since `not_before` (the file unpacked from a checkpoint's root filesystem keeps
    its old time), less the ticks that came after it when the file was read late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = path.stat()
            fields = dict(i.split("=", 1) for i in path.read_text().split())
            counter = int(fields["counter"])
        except (OSError, ValueError, KeyError):
            counter = -1
        if counter > after and st.st_mtime >= not_before:
            return st.st_mtime - (counter - after - 1) * INTERVAL_MS / 1000
        time.sleep(0.001)
    raise RuntimeError(f"the restored workload never ticked ({path})")


def read_fields(path: Path) -> dict[str, str]:
    return dict(i.split("=", 1) for i in path.read_text().split())


@dataclass
class Saved:
    size: int
    name: str
    ref: str
    frozen: dict[str, str]  # the workload's state at the checkpoint
    blob_bytes: int  # config and layers, as pushed


class CliRig:
    def __init__(self, work: Path, registry: RegistryServer, proxy: RecordingProxy) -> None:
        self.work, self.reg, self.proxy = work, registry, proxy
        self.template = work / "template"
        self.runc_root = work / "runc-root"
        self.runc_root.mkdir()
        run([sys.executable, str(REPO / "samples" / "make_bundle.py"), str(self.template)])
        self.n = 0

    def env(self, home: Path, size: int) -> dict[str, str]:
        env = {**os.environ, "CKPT_HOME": str(home)}
        if size >= LARGE:
            env["CKPT_NO_TMPFS"] = "1"
        return env

    def ckpt(self, home: Path, size: int, *args: str) -> subprocess.CompletedProcess:
        return run([PY, "-m", "checkpointer", *args], env=self.env(home, size), cwd=REPO)

    def home(self) -> Path:
        self.n += 1
        return self.work / f"home-{self.n}"

    def start(self, size: int, name: str) -> Path:
        bundle = self.work / f"bundle-{name}"
        shutil.copytree(self.template, bundle, symlinks=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"]["args"] = workload_args(size)
        (bundle / "config.json").write_text(json.dumps(spec))
        run(["runc", "--root", str(self.runc_root), "run", "--detach", "--bundle", str(bundle), name])
        wait_state(bundle, lambda s: int(s["counter"]) >= 5)
        return bundle

    def remove(self, name: str) -> None:
        subprocess.run(["runc", "--root", str(self.runc_root), "delete", "--force", name], capture_output=True)

    def save(self, size: int) -> Saved:
        name = f"lazy-cli-{size}"
        bundle = self.start(size, name)
        ref = f"{self.reg.host}/bench/lazy-cli-{size}:v1"
        home = self.home()
        self.ckpt(home, size, "save", "--runc-root", str(self.runc_root), name, ref)
        frozen = read_fields(bundle / "rootfs" / "state")
        shutil.rmtree(bundle)
        shutil.rmtree(home)
        with Registry(self.reg.host) as reg:
            manifest = Manifest.from_bytes(fetch_manifest(reg, f"bench/lazy-cli-{size}", "v1").data)
        total = manifest.config.size + sum(layer.size for layer in manifest.layers)
        return Saved(size, name, ref, frozen, total)

    def carried_on(self, saved: Saved, home: Path) -> bool:
        state_file = home / "containers" / saved.name / "rootfs" / "state"
        after = wait_state(state_file.parent.parent, lambda s: int(s["counter"]) > int(saved.frozen["counter"]) + 2)
        return after["nonce"] == saved.frozen["nonce"]

    def restore(self, saved: Saved, *, lazy: bool, home: Path | None = None, proxied: bool = False) -> dict:
        """One `ckpt restore` (`--lazy`) of `saved` into `home` (default: a new, empty one)."""
        fresh = home is None
        home = home or self.home()
        self.remove(saved.name)
        shutil.rmtree(home / "containers" / saved.name, ignore_errors=True)  # its state file too
        os.sync()
        ref = saved.ref.replace(self.reg.host, self.proxy.host) if proxied else saved.ref
        self.proxy.clear()
        args = [PY, "-m", "checkpointer", "restore", *(["--lazy"] if lazy else []), "--runc-root",
                str(self.runc_root), ref]
        t0 = time.time()
        proc = subprocess.Popen(args, env=self.env(home, saved.size), cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tick = tick_of(home / "containers" / saved.name / "rootfs" / "state", int(saved.frozen["counter"]), t0)
        _, err = proc.communicate()
        returned = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"ckpt restore failed ({proc.returncode}): {err[-2000:]}")
        result = {"first_tick": tick - t0, "returned": returned - t0, "all_in": returned - t0}
        if lazy:
            status = json.loads(self.ckpt(home, saved.size, "status", saved.name, "--wait", "--json").stdout)[0]
            if status["state"] != COMPLETE:
                raise RuntimeError(f"lazy restore failed: {status['error']}")
            result["all_in"] = status["finished"] - t0
            result["fetched_mib"] = status["fetchedBytes"] / 2**20
        if proxied:
            result["blob_bytes"] = self.proxy.blob_bytes()
        result["ok"] = self.carried_on(saved, home)
        self.remove(saved.name)
        if fresh and not proxied:
            shutil.rmtree(home, ignore_errors=True)
        return result

    def cached(self, saved: Saved) -> dict:
        """A restore into the home of an earlier one: its cache holds every blob."""
        home = self.home()
        self.restore(saved, lazy=True, home=home, proxied=True)
        out = {}
        for lazy in (True, False):
            again = self.restore(saved, lazy=lazy, home=home, proxied=True)
            out["lazy" if lazy else "eager"] = again
        shutil.rmtree(home, ignore_errors=True)
        return out

    def inspect(self, saved: Saved) -> dict:
        home = self.home()
        ref = saved.ref.replace(self.reg.host, self.proxy.host)
        self.proxy.clear()
        t0 = time.time()
        self.ckpt(home, saved.size, "inspect", ref, "--json")
        took = time.time() - t0
        shutil.rmtree(home, ignore_errors=True)
        return {"time": took, "bytes": self.proxy.blob_bytes(), "total": saved.blob_bytes,
                "share": self.proxy.blob_bytes() / saved.blob_bytes}

    def migrate(self, size: int, *, lazy: bool) -> dict:
        """save + restore as the workload sees it: its longest gap between two ticks."""
        name = f"lazy-mig-{size}-{'lazy' if lazy else 'eager'}"
        bundle = self.start(size, name)
        ref = f"{self.reg.host}/bench/lazy-mig-{size}-{int(lazy)}:v{self.n}"
        src, dst = self.home(), self.home()
        t0 = time.time()
        self.ckpt(src, size, "save", "--runc-root", str(self.runc_root), name, ref)
        t_saved = time.time()
        frozen = read_fields(bundle / "rootfs" / "state")
        shutil.rmtree(bundle)
        shutil.rmtree(src)
        self.ckpt(dst, size, "restore", *(["--lazy", "--wait"] if lazy else []), "--runc-root", str(self.runc_root),
                  ref)
        t_done = time.time()
        rootfs = dst / "containers" / name
        after = wait_state(rootfs, lambda s: int(s["counter"]) > int(frozen["counter"]) + 5)
        self.remove(name)
        shutil.rmtree(dst, ignore_errors=True)
        return {"downtime": (int(after["max_gap_ms"]) - INTERVAL_MS) / 1000, "save": t_saved - t0,
                "restore": t_done - t_saved, "ok": after["nonce"] == frozen["nonce"]}

    # -- Podman ---------------------------------------------------------------------------------------

    def podman_ready(self) -> None:
        run(["podman", "rmi", "--force", BASE_IMAGE], check=False)
        tar = self.work / "rootfs.tar"
        run(["tar", "-C", str(self.template / "rootfs"), "-cf", str(tar), "."])
        run(["podman", "import", str(tar), BASE_IMAGE])

    def podman_save(self, size: int) -> tuple[str, str, dict[str, str]]:
        name = f"lazy-podman-{size}"
        image = f"localhost/lazy-podman-{size}:v1"
        remote = f"{self.reg.host}/bench/lazy-podman-{size}:v1"
        run(["podman", "rm", "--force", name], check=False)
        run(["podman", "run", "--detach", "--name", name, *PODMAN_RUN, BASE_IMAGE, *workload_args(size)])
        merged = Path(run(["podman", "inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", name]).stdout.strip())
        tick_of(merged / "state", 4)
        run(["podman", "container", "checkpoint", "--create-image", image, name])
        copied = self.work / f"podman-state-{size}"
        run(["podman", "cp", f"{name}:/state", str(copied)])
        frozen = read_fields(copied)
        run(["podman", "push", "--tls-verify=false", image, f"docker://{remote}"])
        run(["podman", "rm", "--force", name])
        run(["podman", "rmi", "--force", image])
        return name, remote, frozen

    def podman_restore(self, name: str, remote: str, frozen: dict[str, str]) -> dict:
        run(["podman", "rm", "--force", name], check=False)
        run(["podman", "rmi", "--force", remote], check=False)
        os.sync()
        t0 = time.time()
        run(["podman", "pull", "--tls-verify=false", f"docker://{remote}"])
        run(["podman", "container", "restore", remote])
        returned = time.time()
        merged = Path(run(["podman", "inspect", "--format", "{{.GraphDriver.Data.MergedDir}}", name]).stdout.strip())
        tick = tick_of(merged / "state", int(frozen["counter"]), t0)
        tick_of(merged / "state", int(frozen["counter"]) + 2)  # it carries on
        after = read_fields(merged / "state")
        run(["podman", "rm", "--force", name], check=False)
        return {"first_tick": tick - t0, "returned": returned - t0, "all_in": returned - t0,
                "ok": after["nonce"] == frozen["nonce"]}


def cli_report(results: dict) -> str:
    lines = ["\n### Time to resume and until every page is in (medians)\n",
             "| memory | restore | first tick | all in | ckpt returned | runs | ok |", "|---|---|---|---|---|---|---|"]
    for size, modes in results["restore"].items():
        for mode, runs in modes.items():
            lines.append(f"| {size} MiB | {mode} | {median(runs, 'first_tick'):.2f} s | {median(runs, 'all_in'):.2f} s | "
                         f"{median(runs, 'returned'):.2f} s | {len(runs)} | {all(r['ok'] for r in runs)} |")
    base = results["restore"].get("512", {}).get("ckpt lazy")
    if base:
        ref = median(base, "first_tick")
        lines.append("")
        for size, modes in results["restore"].items():
            lazy, eager = modes.get("ckpt lazy"), modes.get("ckpt eager")
            if lazy and eager:
                lines.append(f"- {size} MiB: first tick lazy / 512 MiB lazy = {median(lazy, 'first_tick') / ref:.2f}x; "
                             f"all in lazy / eager = {median(lazy, 'all_in') / median(eager, 'all_in'):.2f}x; "
                             f"first tick lazy / eager = {median(lazy, 'first_tick') / median(eager, 'first_tick'):.2f}x")
    for size, kinds in results.get("migrate", {}).items():
        lines.append(f"\n### Migration at {size} MiB: save + restore, downtime the workload saw (medians)\n")
        lines.append("| restore | downtime | save | restore (lazy: until every page is in) |\n|---|---|---|---|")
        for kind, runs in kinds.items():
            lines.append(f"| {kind} | {median(runs, 'downtime'):.2f} s | {median(runs, 'save'):.2f} s | "
                         f"{median(runs, 'restore'):.2f} s |")
        if "lazy" in kinds and "eager" in kinds:
            lines.append(f"\ndowntime lazy / eager = {median(kinds['lazy'], 'downtime') / median(kinds['eager'], 'downtime'):.2f}x")
    for size, runs in results.get("inspect", {}).items():
        lines.append(f"\n`ckpt inspect` of the {size} MiB checkpoint: {median(runs, 'bytes') / 2**20:.2f} MiB of "
                     f"{runs[0]['total'] / 2**20:.0f} MiB ({100 * median(runs, 'share'):.2f}%), {median(runs, 'time'):.2f} s")
    for size, runs in results.get("cached", {}).items():
        lazy = [r["lazy"] for r in runs]
        eager = [r["eager"] for r in runs]
        lines.append(f"\nRestart from the cache, {size} MiB: lazy {median(lazy, 'blob_bytes'):.0f} blob bytes, first tick "
                     f"{median(lazy, 'first_tick'):.2f} s, all in {median(lazy, 'all_in'):.2f} s; eager "
                     f"{median(eager, 'blob_bytes'):.0f} blob bytes, {median(eager, 'all_in'):.2f} s")
    return "\n".join(lines)


def cli_main(opts: argparse.Namespace) -> int:
    sizes = [int(s) for s in opts.sizes.split(",") if s]
    podman_sizes = {int(s) for s in opts.podman_sizes.split(",") if s}
    migrate_sizes = {int(s) for s in opts.migrate_sizes.split(",") if s}
    work = Path(tempfile.mkdtemp(prefix="ckpt-lazy-cli-", dir="/var/tmp"))
    results: dict = {"restore": {}, "migrate": {}, "inspect": {}, "cached": {}}
    try:
        with RegistryServer(work) as registry, RecordingProxy(registry.url) as proxy:
            rig = CliRig(work, registry, proxy)
            if podman_sizes:
                rig.podman_ready()
            for size in sizes:
                saved = rig.save(size)
                podman = rig.podman_save(size) if size in podman_sizes else None
                modes = results["restore"].setdefault(str(size), {})
                for _ in range(opts.repeat if size < LARGE else opts.repeat_large):
                    order = ["ckpt lazy", "ckpt eager"] + (["Podman"] if podman else [])
                    random.shuffle(order)
                    for mode in order:
                        if mode == "Podman":
                            assert podman is not None
                            res = rig.podman_restore(*podman)
                        else:
                            res = rig.restore(saved, lazy=mode == "ckpt lazy")
                        modes.setdefault(mode, []).append(res)
                        print(f"{size} MiB {mode}: " + ", ".join(
                            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()), flush=True)
                    if size in migrate_sizes:
                        results["inspect"].setdefault(str(size), []).append(rig.inspect(saved))
                        results["cached"].setdefault(str(size), []).append(rig.cached(saved))
                        for lazy in (True, False):
                            res = rig.migrate(size, lazy=lazy)
                            results["migrate"].setdefault(str(size), {}).setdefault(
                                "lazy" if lazy else "eager", []).append(res)
                            print(f"{size} MiB migrate {'lazy' if lazy else 'eager'}: {res}", flush=True)
                        print(f"inspect: {results['inspect'][str(size)][-1]}; cached: {results['cached'][str(size)][-1]}",
                              flush=True)
                if podman:
                    run(["podman", "rmi", "--force", podman[1]], check=False)
    finally:
        listed = subprocess.run(["runc", "--root", str(work / "runc-root"), "list", "-q"], capture_output=True,
                                text=True).stdout.split()
        for name in listed:  # what a failed round left: this run's containers only (its own runc root)
            subprocess.run(["runc", "--root", str(work / "runc-root"), "delete", "--force", name], capture_output=True)
        if podman_sizes:
            run(["podman", "rmi", "--force", BASE_IMAGE], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(cli_report(results))
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("cli", "plumbing"), default="cli")
    parser.add_argument("--sizes", default=None, help="MiB of workload memory (cli: 512,2048,8192; plumbing: 512,2048)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-large", type=int, default=1, help="cli: repetitions from 4 GiB up")
    parser.add_argument("--podman-sizes", default="512,2048", help="cli: the sizes Podman is measured at too")
    parser.add_argument("--migrate-sizes", default="2048", help="cli: the sizes migration downtime is measured at")
    parser.add_argument("--access", default="idle,busy", help="plumbing: access patterns")
    parser.add_argument("--modes", default="eager-layout,lazy-layout,eager-registry,lazy-registry",
                        help="plumbing: restore modes")
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lazy.py needs root (runc, CRIU)", file=sys.stderr)
        return 1
    if opts.suite == "plumbing":
        opts.sizes = opts.sizes or "512,2048"
        return plumbing_main(opts)
    opts.sizes = opts.sizes or "512,2048,8192"
    return cli_main(opts)


if __name__ == "__main__":
    sys.exit(main())
