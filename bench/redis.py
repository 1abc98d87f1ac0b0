#!/usr/bin/env python3
"""Redis benchmark: a real Redis (Debian's redis-server) holding 1 GiB of data, migrated through a
registry with ckpt and with Podman, interleaved in one run.

    sudo .venv/bin/python bench/redis.py [--gib 1] [--repeat 3] [--json bench/results/redis-DATE.json]

Both run the same root filesystem (samples/debian_rootfs.py: Debian's redis-server and its
libraries; Podman gets it through `podman import`). Before each migration Redis is filled with
GIB x 2^20 keys of 1 KiB values (hex text of fresh random bytes: compresses about 2:1, and
nothing repeats across runs) through `redis-cli --pipe`; 1000 random keys, DBSIZE and Redis's
run_id are read. After the migration the same are read again from a new client and must match
(the same process, every key there).

  ckpt      `ckpt save C REGISTRY/REPO:TAG` (runc), then the bundle and ckpt's store are removed,
            `ckpt restore REGISTRY/REPO:TAG` into an empty CKPT_HOME
  podman    `podman container checkpoint --create-image`, `podman push`, the container and the
            checkpoint image are removed, `podman pull`, `podman container restore`. Podman runs
            on its default bridge network: with `--network none` its restored container's
            loopback is down and Redis cannot be reached

"answering again" is how long after the restore command returned Redis first answered PING;
"unavailable" is the time from the start of the checkpoint to that first answer, the outage
a client sees (less the untimed clean-up between the two halves). Bytes pushed is the growth of
the registry's storage; Podman's base image is pushed once, untimed, and reported beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "samples"))

import debian_rootfs  # noqa: E402
import servers  # noqa: E402
from migrate import PY, RegistryServer, dir_bytes, machine, medians, run, settle, timed, timed_with_peak_rss  # noqa: E402

PODMAN_RUN = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
VALUE_BYTES = 512       # random bytes per value, sent as 1 KiB of hex text
SAMPLE = 1000           # keys compared before and after


class RedisBench:
    def __init__(self, work: Path, registry: RegistryServer, gib: float) -> None:
        self.work, self.reg, self.gib = work, registry, gib
        self.template = servers.redis_bundle(debian_rootfs.ensure(), work / "template")
        self.rootfs = self.template / "rootfs"  # the host's redis-cli runs from here (chroot)
        self.runc_root = work / "runc-root"
        self.runc_root.mkdir()
        self.blobs = Path(registry.workdir) / "data" / "docker" / "registry" / "v2" / "blobs"
        self.image = f"localhost/ckpt-bench-redis:{os.getpid()}"

    def registry_size(self) -> int:
        return dir_bytes(self.blobs)

    # -- talking to Redis from outside its container ---------------------------------------------

    def cli(self, pid: int, *args: str, stdin=None, check: bool = True) -> subprocess.CompletedProcess:  # noqa: ANN001
        cmd = ["nsenter", f"--net=/proc/{pid}/ns/net", "chroot", str(self.rootfs), "/usr/bin/redis-cli", *args]
        res = subprocess.run(cmd, input=stdin, capture_output=True, timeout=600)
        if check and res.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args[:2])} failed: {res.stderr.decode(errors='replace')}")
        return res

    def wait_ready(self, pid: int, timeout: float = 60) -> float:
        """Seconds until Redis answers PING from a new client."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.cli(pid, "PING", check=False).stdout.strip() == b"PONG":
                return time.perf_counter() - start
            time.sleep(0.02)
        raise RuntimeError(f"Redis in pid {pid} never answered")

    def fill(self, pid: int, seed: int) -> dict:
        """GIB of fresh random values, then what must come back: DBSIZE, run_id, a sample of keys."""
        keys = int(self.gib * (1 << 30) / (2 * VALUE_BYTES))
        proc = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "chroot", str(self.rootfs),
                                 "/usr/bin/redis-cli", "--pipe"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin
        batch = []
        for i in range(keys):
            value = os.urandom(VALUE_BYTES).hex()
            key = f"k:{seed:x}:{i}"
            batch.append(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(value)}\r\n{value}\r\n")
            if len(batch) == 4096:
                proc.stdin.write("".join(batch).encode())
                batch = []
        proc.stdin.write("".join(batch).encode())
        out, err = proc.communicate()
        if proc.returncode != 0 or b"errors: 0" not in out:
            raise RuntimeError(f"redis-cli --pipe: {out.decode()[-500:]} {err.decode()[-500:]}")
        sample = [f"k:{seed:x}:{i}" for i in random.Random(seed).sample(range(keys), min(SAMPLE, keys))]
        return self.observe(pid, sample) | {"keys": keys, "sample_keys": sample}

    def observe(self, pid: int, sample: list[str]) -> dict:
        info = self.cli(pid, "INFO").stdout.decode()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return {"dbsize": int(self.cli(pid, "DBSIZE").stdout), "run_id": fields["run_id"].strip(),
                "used_memory": int(fields["used_memory"]), "sample": self.cli(pid, "MGET", *sample).stdout}

    def check_same(self, tool: str, before: dict, pid: int) -> None:
        after = self.observe(pid, before["sample_keys"])
        for key in ("run_id", "dbsize", "sample"):
            if after[key] != before[key]:
                raise RuntimeError(f"{tool}: {key} differs after the migration: the data did not come back whole")

    # -- ckpt -------------------------------------------------------------------------------------

    def runc_pid(self, name: str) -> int:
        return int(json.loads(run(["runc", "--root", str(self.runc_root), "state", name]).stdout)["pid"])

    def migrate_ckpt(self, seed: int, tag: str) -> dict:
        name = f"bench-redis-ckpt-{tag}"
        bundle = self.work / f"bundle-{tag}"
        shutil.copytree(self.template, bundle, symlinks=True)
        run(["runc", "--root", str(self.runc_root), "run", "--detach", "--bundle", str(bundle), name])
        pid = self.runc_pid(name)
        self.wait_ready(pid)
        before = self.fill(pid, seed)
        ref = f"{self.reg.host}/bench/redis-ckpt-{tag}:v1"
        src, dst = self.work / f"home-src-{tag}", self.work / f"home-dst-{tag}"
        grown = self.registry_size()
        settle()
        env = {"CKPT_HOME": str(src)}
        t_save, rss_save = timed_with_peak_rss([PY, "-m", "checkpointer", "save", "--runc-root", str(self.runc_root),
                                                name, ref, "--insecure"], env)
        pushed = self.registry_size() - grown
        shutil.rmtree(bundle)
        shutil.rmtree(src)
        t_restore, rss_restore = timed_with_peak_rss([PY, "-m", "checkpointer", "restore", "--runc-root",
                                                      str(self.runc_root), ref, "--insecure"], {"CKPT_HOME": str(dst)})
        pid = self.runc_pid(name)
        t_answer = self.wait_ready(pid)
        self.check_same("ckpt", before, pid)
        run(["runc", "--root", str(self.runc_root), "delete", "--force", name], check=False)
        shutil.rmtree(dst)
        return {"save": t_save, "restore": t_restore, "total": t_save + t_restore, "answering": t_answer,
                "unavailable": t_save + t_restore + t_answer, "pushed": pushed, "used_memory": before["used_memory"],
                "peak_rss_save_kib": rss_save, "peak_rss_restore_kib": rss_restore}

    # -- Podman -----------------------------------------------------------------------------------

    def podman_ready(self) -> int:
        tar = self.work / "redis-rootfs.tar"
        run(["tar", "-C", str(self.rootfs), "-cf", str(tar), "."])
        run(["podman", "import", str(tar), self.image])
        tar.unlink()
        grown = self.registry_size()
        run(["podman", "push", "--tls-verify=false", self.image, f"docker://{self.reg.host}/bench/redis-base:v1"])
        return self.registry_size() - grown

    def podman_pid(self, name: str) -> int:
        return int(run(["podman", "inspect", "--format", "{{.State.Pid}}", name]).stdout)

    def migrate_podman(self, seed: int, tag: str) -> dict:
        name = f"bench-redis-podman-{tag}"
        image = f"localhost/bench-redis-checkpoint-{tag}:v1"
        remote = f"{self.reg.host}/bench/redis-podman-{tag}:v1"
        spec = json.loads((self.template / "config.json").read_text())
        run(["podman", "run", "--detach", "--name", name, *PODMAN_RUN, self.image, *spec["process"]["args"]])
        try:
            pid = self.podman_pid(name)
            self.wait_ready(pid)
            before = self.fill(pid, seed)
            grown = self.registry_size()
            settle()
            t_ckpt = timed(["podman", "container", "checkpoint", "--create-image", image, name])
            t_push = timed(["podman", "push", "--tls-verify=false", image, f"docker://{remote}"])
            pushed = self.registry_size() - grown
            run(["podman", "rm", "--force", "--time", "0", name])
            run(["podman", "rmi", "--force", image])
            t_pull = timed(["podman", "pull", "--tls-verify=false", f"docker://{remote}"])
            t_restore = timed(["podman", "container", "restore", remote])
            pid = self.podman_pid(name)
            t_answer = self.wait_ready(pid)
            self.check_same("podman", before, pid)
        finally:
            run(["podman", "rm", "--force", "--time", "0", name], check=False)
            run(["podman", "rmi", "--force", remote, image], check=False)
        total = t_ckpt + t_push + t_pull + t_restore
        return {"checkpoint": t_ckpt, "push": t_push, "pull": t_pull, "restore": t_restore, "total": total,
                "answering": t_answer, "unavailable": total + t_answer, "pushed": pushed,
                "used_memory": before["used_memory"]}


def report(results: dict) -> str:
    ck, pm = medians(results["ckpt"]), medians(results["podman"])
    n = len(results["ckpt"])
    mib = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
    s = lambda x: f"{x:.2f} s"  # noqa: E731
    lines = [f"### Redis with {results['gib']:g} GiB of data, median of {n} runs\n",
             f"Redis's used_memory: {mib(ck['used_memory'])} (ckpt runs), {mib(pm['used_memory'])} (Podman runs)\n",
             "| stage | ckpt | Podman |", "|---|---|---|",
             f"| checkpoint (+pack) | save: {s(ck['save'])} | {s(pm['checkpoint'])} |",
             f"| push | (in save) | {s(pm['push'])} |",
             f"| pull | restore: {s(ck['restore'])} | {s(pm['pull'])} |",
             f"| restore | (in restore) | {s(pm['restore'])} |",
             f"| **total** | **{s(ck['total'])}** | **{s(pm['total'])}** |",
             f"| Redis answering again, after the restore returned | {s(ck['answering'])} | {s(pm['answering'])} |",
             f"| **unavailable** (checkpoint start to first answer) | **{s(ck['unavailable'])}** | "
             f"**{s(pm['unavailable'])}** |",
             f"| bytes pushed | {mib(ck['pushed'])} | {mib(pm['pushed'])} |",
             f"| Podman's base image, which its target also needs (pushed once, not timed) | | "
             f"{mib(results['podman_base_bytes'])} |",
             f"| ckpt peak RSS (save / restore) | {ck['peak_rss_save_kib'] / 1024:.0f} / "
             f"{ck['peak_rss_restore_kib'] / 1024:.0f} MiB | |",
             "",
             f"Ratios (medians of this run): ckpt / Podman = {ck['total'] / pm['total']:.3f}x (total), "
             f"{ck['unavailable'] / pm['unavailable']:.3f}x (unavailable); bytes ckpt / (Podman + its base "
             f"image) = {ck['pushed'] / (pm['pushed'] + results['podman_base_bytes']):.3f}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=1.0, help="GiB of values Redis holds")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root", file=sys.stderr)
        return 1
    results: dict = {"machine": machine(), "gib": opts.gib, "ckpt": [], "podman": []}
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-redis-") as tmp, \
            RegistryServer(Path(tmp), auth="none") as reg:
        bench = RedisBench(Path(tmp), reg, opts.gib)
        results["podman_base_bytes"] = bench.podman_ready()
        rng = random.Random()
        try:
            for i in range(opts.repeat):
                order = ["ckpt", "podman"]
                rng.shuffle(order)
                for tool in order:
                    tag = f"{i}-{rng.randrange(1 << 30):x}"
                    fn = bench.migrate_ckpt if tool == "ckpt" else bench.migrate_podman
                    results[tool].append(fn(rng.randrange(1 << 62), tag))
                    print(f"run {i + 1} {tool}: {results[tool][-1]['total']:.2f} s", file=sys.stderr)
        finally:
            run(["podman", "rmi", "--force", bench.image], check=False)
    text = f"Machine: {results['machine']}\n\n" + report(results)
    print(text)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
