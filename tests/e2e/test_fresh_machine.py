"""The README's first command on a fresh Debian 12 machine, with only what `scripts/setup.sh`
(without --test) installs, and setup leaving the machine's /usr/bin/python3 as it found it.

The machine is a minimal Debian 12 root (`debootstrap --variant=minbase`, plus python3, which
every Debian 12 machine has) with the host's Debian apt sources, entered with pivot_root in mount
and PID namespaces of its own (support/enter_root.sh): it has its own /, /proc, /run and
/dev/shm and sees only its own files, packages and processes, so a tool the demo needs and setup
does not install is simply missing there, as on a new machine. A plain chroot is not enough: runc
then fails to make "/" a slave mount, and CRIU refuses a task whose root is not its mount
namespace's root. (systemd-nspawn is not installed on these machines and would bring its own
cgroup and network set-up into what is being tested.)

Why a cached root still proves a fresh machine: building the root (1 min) and setup's first
install in it (1.5-3 min) are cached (support/fresh_root.py); a run from the cache takes 40-110 s
on these 2-CPU machines. The "prepared" image is the fresh root after one run of exactly this
scripts/setup.sh (its bytes are part of the key: a changed setup builds it again from the bare
root, and that build fails the test if setup fails or moves /usr/bin/python3), and the bare root
is rebuilt every week. So the prepared root holds the bare root and what setup installed, nothing
more; anything else the demo needs is missing there just as on a new machine. Each run starts
from a new copy of it with a clean checkout (the committed tree, with scripts/ as in the working
tree) and no venv, and runs `scripts/demo.sh`, which runs setup again: setup's second run, the
venv, pycriu and the demo itself are proven on every run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import fresh_root
from support.sample import REPO, WorkloadState, parse_state


def require_fresh_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and entering a Debian root needs root")
    missing = [tool for tool in ("debootstrap", "unshare", "pivot_root", "git") if not fresh_root.tool(tool)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup.sh --test installs debootstrap)")
    if not (REPO / ".git").exists():
        pytest.skip("needs a git checkout (the root gets `git archive HEAD`)")


def state_after(output: str, marker: str) -> WorkloadState:
    """The workload state the demo printed on its line starting with MARKER."""
    for line in output.splitlines():
        if line.startswith(marker):
            return parse_state(line.removeprefix(marker))
    raise AssertionError(f"the demo printed no line starting with {marker!r}")


def test_demo_passes_on_a_fresh_debian_12_with_only_setup(tmp_path: Path, record_property) -> None:  # noqa: ANN001
    require_fresh_root_tools()
    image = fresh_root.prepared_image(REPO)
    with fresh_root.fresh_root(image, tmp_path) as root:
        checkout = fresh_root.copy_checkout(REPO, root)
        run = fresh_root.run_in_root(root, f"cd {fresh_root.CHECKOUT} && scripts/demo.sh", timeout=900)
        record_property("demo_seconds", round(run.seconds, 1))
        assert run.returncode == 0, (
            f"scripts/demo.sh failed ({run.returncode}) on a fresh Debian 12 root with only what setup "
            f"installs:\n{fresh_root._tail(run.output, 40)}")

        running, restored = state_after(run.output, "== running:"), state_after(run.output, "== restored:")
        assert restored.nonce == running.nonce, "the restored container is another process"
        assert restored.checksum == restored.verified, "the restored workload's memory check failed"
        assert restored.counter > running.counter, "the restored workload did not carry on counting"
        # `ckpt inspect` read the process tree from CRIU's images: pycriu in the venv, protobuf from PyPI.
        assert "/bin/workload --mem 64" in run.output.split("processes:", 1)[-1]

        assert fresh_root.python_version(root) == image.python, "setup moved the root's /usr/bin/python3"
        recorded = json.loads((checkout / ".venv/ckpt-setup.json").read_text())
        assert recorded["system_python_before"] == recorded["system_python_after"] == image.python

        # Nor does the machine's next `apt upgrade` go to Debian testing, where CRIU came from.
        upgrade = fresh_root.run_in_root(root, "apt-get -s -o Debug::NoLocking=1 upgrade", timeout=300)
        assert upgrade.returncode == 0, upgrade.output
        to_testing = [line for line in upgrade.output.splitlines()
                      if line.startswith("Inst ") and any(word in line for word in ("testing", "forky", "unstable"))]
        assert not to_testing, "apt upgrade would take these from Debian testing:\n" + "\n".join(to_testing)


def test_setup_left_the_host_python_as_it_found_it() -> None:
    """On this host: what setup recorded when it ran here, against /usr/bin/python3 now, and the venv
    runs that same Python without the system's site-packages."""
    record = REPO / ".venv/ckpt-setup.json"
    if not record.is_file():
        pytest.skip("scripts/setup.sh has not run in this checkout (no .venv/ckpt-setup.json)")
    recorded = json.loads(record.read_text())
    now = subprocess.run(["/usr/bin/python3", "-c", fresh_root.PYTHON_VERSION], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert recorded["system_python_before"] == recorded["system_python_after"] == now

    cfg = dict(line.split(" = ", 1) for line in (REPO / ".venv/pyvenv.cfg").read_text().splitlines() if " = " in line)
    assert cfg["home"] == "/usr/bin"
    assert cfg["include-system-site-packages"] == "false"
    assert cfg["version"] == now
    if Path(sys.prefix) == REPO / ".venv":
        assert "%d.%d.%d" % sys.version_info[:3] == now
