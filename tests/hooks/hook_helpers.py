"""Helpers for the hook tests: hooks installed under a private prefix (never the host's /etc),
runc checkpoints as a runtime would run them, and `ckpt hooks status` read as JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def hooks_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ckpt hooks ...` as its own program (python -m checkpointer.hooks)."""
    res = subprocess.run([sys.executable, "-m", "checkpointer.hooks", *args], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, **(env or {})}, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"ckpt hooks {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


@dataclass
class Installed:
    prefix: Path
    home: Path
    spool: Path

    @property
    def criu_conf(self) -> Path:
        """The private CRIU config: containers name it with org.criu.config."""
        return self.prefix / "etc" / "ckpt" / "criu.conf"

    @property
    def config(self) -> Path:
        return self.prefix / "etc" / "ckpt" / "hooks.json"

    @property
    def hooks_dir(self) -> Path:
        return self.prefix / "etc" / "containers" / "oci" / "hooks.d"

    def status(self) -> dict:
        return json.loads(hooks_cli("status", "--prefix", str(self.prefix), "--json").stdout)

    def jobs(self) -> list[dict]:
        return self.status()["jobs"]

    def wait_jobs(self, count: int, done: tuple[str, ...] = ("published", "failed"), timeout: float = 90) -> list[dict]:
        deadline = time.monotonic() + timeout
        jobs: list[dict] = []
        while time.monotonic() < deadline:
            jobs = self.jobs()
            if len(jobs) >= count and all(j["state"] in done for j in jobs):
                return jobs
            time.sleep(0.2)
        log = (self.spool / "hooks.log").read_text() if (self.spool / "hooks.log").exists() else ""
        raise AssertionError(f"hook jobs did not finish within {timeout}s: {jobs}\n{log}")


def install(tmp_path: Path, *extra: str) -> Installed:
    """The hooks installed under tmp_path/prefix with a private CKPT_HOME (one publish attempt
    unless `extra` says otherwise)."""
    prefix, home = tmp_path / "prefix", tmp_path / "ckpt-home"
    hooks_cli("install", "--prefix", str(prefix), "--home", str(home), "--retry-delays", "", *extra)
    return Installed(prefix, home, home / "spool")


def annotate(bundle: Path, annotations: dict[str, str]) -> None:
    spec_path = bundle / "config.json"
    spec = json.loads(spec_path.read_text())
    spec.setdefault("annotations", {}).update(annotations)
    spec_path.write_text(json.dumps(spec, indent=2))


def runc_checkpoint(runc_root: Path, name: str, images: Path, *extra: str,
                    env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """`runc checkpoint` as a person or a runtime would type it; (wall seconds, result)."""
    started = time.monotonic()
    res = subprocess.run(["runc", "--root", str(runc_root), "checkpoint", "--image-path", str(images),
                          "--work-path", str(images.parent / f"{images.name}-work"), *extra, name],
                         capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    return time.monotonic() - started, res
