"""Pods with real runc, CRIU, Podman and a real registry: a sandbox holding network, ipc and uts and
two workload containers that join it, a server (samples/workloads/tcp_pair.c, on 127.0.0.1 in the
pod's network namespace) and a client (samples/workloads/tcp_keep.c) that polls it or keeps a
connection to it. Saved as one pod checkpoint through a registry, every container and bundle wiped,
restored: both go on, and still talk. A pod whose second member CRIU refuses runs on, and nothing is
stored. A ckpt killed mid-save leaves the pod running, its network unlocked."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.registry_server import RegistryServer
from support.sample import REPO, ckpt, make_bundle, runc_status

WORKLOADS = REPO / "samples" / "workloads"
PORT = 7000
CHAIN = "CKPT-POD"


@pytest.fixture(scope="session")
def tools(bundle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The workloads, static: tcp_pair (the server), tcp_keep (the client), iouring (what CRIU refuses)."""
    out = tmp_path_factory.mktemp("pod-tools")
    built = {}
    for name in ("tcp_pair", "tcp_keep", "iouring"):
        built[name] = out / name
        subprocess.run(["gcc", "-O2", "-static", "-I", str(WORKLOADS), "-o", str(built[name]),
                        str(WORKLOADS / f"{name}.c")], check=True)
    return built


class RuncPod:
    """A runc pod under a private runc root: its sandbox and members, by name in the pod."""

    def __init__(self, runc_root: Path, where: Path, template: Path, tools: dict[str, Path]) -> None:
        self.root, self.where, self.template, self.tools = runc_root, where, template, tools
        self.name = f"pod-{uuid.uuid4().hex[:8]}"
        self.bundles: dict[str, Path] = {}

    def id(self, member: str) -> str:
        return f"{self.name}-{member}"

    def _bundle(self, member: str, args: list[str], joins: int | None) -> Path:
        bundle = make_bundle(self.template, self.where / member, args)
        for tool in self.tools.values():
            shutil.copy2(tool, bundle / "rootfs" / "bin" / tool.name)
        spec = json.loads((bundle / "config.json").read_text())
        if joins is None:
            spec["annotations"] = {"dev.ckpt.pod.name": self.name}
        else:
            spec.pop("hostname", None)  # the sandbox's uts namespace has it
            keep = [ns for ns in spec["linux"]["namespaces"] if ns["type"] not in ("network", "ipc", "uts")]
            spec["linux"]["namespaces"] = keep + [{"type": kind, "path": f"/proc/{joins}/ns/{file}"}
                                                  for kind, file in (("network", "net"), ("ipc", "ipc"),
                                                                     ("uts", "uts"))]
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        self.bundles[member] = bundle
        return bundle

    def start(self, member: str, args: list[str]) -> None:
        joins = None if member == "sandbox" else self.pid("sandbox")
        bundle = self._bundle(member, args, joins)
        subprocess.run(["runc", "--root", str(self.root), "run", "--detach", "--bundle", str(bundle),
                        self.id(member)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=30)

    def pid(self, member: str, name: str | None = None) -> int:
        out = subprocess.run(["runc", "--root", str(self.root), "state", name or self.id(member)],
                             capture_output=True, text=True, check=True).stdout
        return int(json.loads(out)["pid"])

    def status(self, member: str) -> str | None:
        return runc_status(self.root, self.id(member))


def state(bundle: Path) -> dict[str, str]:
    return dict(word.split("=", 1) for word in (bundle / "rootfs" / "state").read_text().split())


def wait_state(bundle: Path, predicate, timeout: float = 20.0) -> dict[str, str]:  # noqa: ANN001
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = state(bundle)
            if last.get("ok") == "0":
                raise AssertionError(f"the client lost its connection: {last}")
            if predicate(last):
                return last
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"workload state never matched within {timeout}s; last seen: {last}")


def locked(pid: int) -> bool:
    """Whether ckpt's pod lock is in the network namespace of `pid`."""
    res = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "iptables", "-w", "-S"], capture_output=True,
                         text=True, check=True)
    return CHAIN in res.stdout


def start_pod(pod: RuncPod, client: str) -> tuple[dict[str, str], dict[str, str]]:
    pod.start("sandbox", ["/bin/sleep", "1000000"])
    pod.start("server", ["/bin/tcp_pair", "serve", "--state", "/state", "--port", str(PORT), "--clients", "0"])
    interval = "200" if client == "poll" else "50"
    pod.start("client", ["/bin/tcp_keep", client, "127.0.0.1", str(PORT), "--state", "/state", "--interval-ms",
                         interval])
    client_state = wait_state(pod.bundles["client"], lambda s: int(s["sent"]) >= 5)
    return state(pod.bundles["server"]), client_state


def wipe(pod: RuncPod, home: Path) -> None:
    for member in ("sandbox", "server", "client"):
        assert pod.status(member) is None, f"the saved {member} should be gone"
    shutil.rmtree(pod.where)
    shutil.rmtree(home)
    home.mkdir()


@pytest.fixture
def runc_pod(runc_root: Path, tmp_path: Path, bundle_template: Path, tools: dict[str, Path]) -> RuncPod:
    return RuncPod(runc_root, tmp_path / "bundles", bundle_template, tools)


def test_pod_moves_through_a_registry_and_its_members_still_talk(runc_pod, tmp_path, ckpt_home):
    pod = runc_pod
    server_before, client_before = start_pod(pod, "poll")
    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        ref = f"{reg.host}/pods/{pod.name}:v1"
        saved = ckpt("save", "--runc-root", str(pod.root), "--pod", pod.name, ref, "--insecure", "--json",
                     home=ckpt_home)
        assert saved.returncode == 0, saved.stderr
        result = json.loads(saved.stdout)
        assert result["kind"] == "pod" and sorted(result["members"]) == ["client", "sandbox", "server"]
        wipe(pod, ckpt_home)
        shown = ckpt("inspect", ref, "--insecure", "--json", home=ckpt_home, check=True)
        view = json.loads(shown.stdout)
        assert view["kind"] == "pod" and [m["name"] for m in view["members"]][0] == "sandbox"
        assert all(m["processes"] for m in view["members"])
        new = f"{pod.name}-b"
        out = ckpt("restore", "--runc-root", str(pod.root), ref, "--name", new, "--insecure", "--json",
                   home=ckpt_home)
        assert out.returncode == 0, out.stderr
    restored = {m["name"]: m for m in json.loads(out.stdout)["members"]}
    assert {m["container"] for m in restored.values()} == {f"{new}-sandbox", f"{new}-server", f"{new}-client"}
    client_bundle = ckpt_home / "containers" / f"{new}-client"
    server_bundle = ckpt_home / "containers" / f"{new}-server"
    after = wait_state(client_bundle, lambda s: int(s["sent"]) >= int(client_before["sent"]) + 10)
    assert after["nonce"] == client_before["nonce"], "a new client started instead of the checkpointed one"
    served = wait_state(server_bundle, lambda s: int(s["served"]) > int(server_before["served"]))
    assert served["nonce"] == server_before["nonce"]
    sandbox_pid = restored["sandbox"]["pid"]
    assert not locked(sandbox_pid)
    for member in ("server", "client"):  # both in the restored sandbox's namespaces
        pid = restored[member]["pid"]
        for ns in ("net", "ipc", "uts"):
            assert os.stat(f"/proc/{pid}/ns/{ns}").st_ino == os.stat(f"/proc/{sandbox_pid}/ns/{ns}").st_ino


def test_an_established_connection_between_members_survives(runc_pod, tmp_path, ckpt_home):
    pod = runc_pod
    _, before = start_pod(pod, "keep")
    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        ref = f"{reg.host}/pods/{pod.name}:v1"
        saved = ckpt("save", "--runc-root", str(pod.root), "--pod", pod.name, ref, "--tcp-established", "--insecure",
                     home=ckpt_home)
        assert saved.returncode == 0, saved.stderr
        wipe(pod, ckpt_home)
        out = ckpt("restore", "--runc-root", str(pod.root), ref, "--insecure", "--json", home=ckpt_home)
        assert out.returncode == 0, out.stderr
    client_bundle = ckpt_home / "containers" / pod.id("client")
    after = wait_state(client_bundle, lambda s: int(s["sent"]) >= int(before["sent"]) + 20)
    assert after["nonce"] == before["nonce"] and after["ok"] == "1"
    assert not locked(pod.pid("sandbox"))


def test_a_pod_restored_lazily_runs_before_its_memory_and_every_member_gets_all_of_it(runc_pod, tmp_path,
                                                                                      ckpt_home):
    """--lazy on a pod: each member restored through runc's lazy pages with a page supervisor of
    its own, fed from the registry's chunks; the established connection survives, and every
    delivery ends complete (--wait), the pod's lock gone."""
    pod = runc_pod
    _, before = start_pod(pod, "keep")
    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        ref = f"{reg.host}/pods/{pod.name}:v1"
        saved = ckpt("save", "--runc-root", str(pod.root), "--pod", pod.name, ref, "--tcp-established", "--insecure",
                     home=ckpt_home)
        assert saved.returncode == 0, saved.stderr
        wipe(pod, ckpt_home)
        out = ckpt("restore", "--lazy", "--wait", "--runc-root", str(pod.root), ref, "--insecure", "--json",
                   home=ckpt_home)
        assert out.returncode == 0, out.stderr
        shown = ckpt("status", "--json", home=ckpt_home, check=True)
    members = {m["name"]: m for m in json.loads(out.stdout)["members"]}
    assert set(members) == {"sandbox", "server", "client"}
    for member in members.values():
        assert member["delivery"] and member["delivered"]["state"] == "complete", member
    statuses = {s["container"]: s["state"] for s in json.loads(shown.stdout)}
    assert statuses == {pod.id(m): "complete" for m in ("sandbox", "server", "client")}
    client_bundle = ckpt_home / "containers" / pod.id("client")
    after = wait_state(client_bundle, lambda s: int(s["sent"]) >= int(before["sent"]) + 20)
    assert after["nonce"] == before["nonce"] and after["ok"] == "1"
    assert not locked(pod.pid("sandbox"))


def test_a_pod_whose_member_criu_refuses_runs_on_and_nothing_is_stored(runc_pod, tmp_path, ckpt_home):
    pod = runc_pod
    pod.start("sandbox", ["/bin/sleep", "1000000"])
    pod.start("server", ["/bin/tcp_pair", "serve", "--state", "/state", "--port", str(PORT), "--clients", "0"])
    pod.start("uring", ["/bin/iouring", "--state", "/state", "--interval-ms", "50"])
    first = wait_state(pod.bundles["uring"], lambda s: int(s.get("completed", 0)) >= 3)
    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        ref = f"{reg.host}/pods/{pod.name}:v1"
        res = ckpt("save", "--runc-root", str(pod.root), "--pod", pod.name, ref, "--insecure", home=ckpt_home)
        assert res.returncode == 6, res.stderr
        assert "io_uring" in res.stderr
        tags = subprocess.run(["curl", "-s", f"{reg.url}/v2/pods/{pod.name}/tags/list"], capture_output=True,
                              text=True).stdout
        assert "v1" not in tags
    for member in ("sandbox", "server", "uring"):
        assert pod.status(member) == "running", f"{member} should run on"
    wait_state(pod.bundles["uring"], lambda s: int(s["completed"]) > int(first["completed"]) + 3)
    assert not locked(pod.pid("sandbox"))
    assert ckpt("ls", "--json", home=ckpt_home, check=True).stdout.strip() == "[]"


def test_a_killed_save_leaves_the_pod_running_and_unlocked(runc_pod, tmp_path, ckpt_home):
    """SIGKILL to ckpt while it holds the pod frozen and locked: the guard unlocks and resumes."""
    pod = runc_pod
    _, before = start_pod(pod, "keep")
    sandbox = pod.pid("sandbox")
    env = {**os.environ, "CKPT_HOME": str(ckpt_home)}
    proc = subprocess.Popen([sys.executable, "-m", "checkpointer", "save", "--runc-root", str(pod.root), "--pod",
                             pod.name, "--tcp-established"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not locked(sandbox) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert locked(sandbox), "ckpt never locked the pod's network"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    deadline, statuses = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        statuses = {member: pod.status(member) for member in ("sandbox", "server", "client")}
        if set(statuses.values()) == {"running"}:
            break
        time.sleep(0.1)
    assert set(statuses.values()) == {"running"}, statuses
    assert not locked(sandbox)
    wait_state(pod.bundles["client"], lambda s: int(s["sent"]) >= int(before["sent"]) + 10)
    # What the killed save left (its work directory with the dumps made so far) goes with fsck.
    fsck = json.loads(ckpt("fsck", "--repair", "--json", home=ckpt_home).stdout)
    assert any("pod-save-" in path for path in fsck["leftover_workdirs"])


# --- Podman ------------------------------------------------------------------------------------


def podman(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120, env=env,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


@pytest.fixture
def podman_env(tmp_path: Path) -> dict[str, str]:
    """Podman's settings for this test only (CONTAINERS_CONF): runc (crun fails on cgroup v1 hybrid),
    and file limits under this VM's hard limit, for the infra container too (`podman pod create`
    has no --ulimit)."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (scripts/setup.sh --test installs it)")
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                    '[engine]\nruntime = "runc"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


@pytest.fixture
def pod_image(bundle_template: Path, tools: dict[str, Path], tmp_path: Path, podman_env):  # noqa: ANN001, ANN201
    """An image with busybox, the workloads and /bin/pause (the infra's command: Podman's own pause
    image needs catatonit, which Debian 12 lacks), made with `podman import`."""
    rootfs = tmp_path / "image-rootfs"
    shutil.copytree(bundle_template / "rootfs", rootfs, symlinks=True)
    for tool in tools.values():
        shutil.copy2(tool, rootfs / "bin" / tool.name)
    (rootfs / "bin" / "pause").write_text("#!/bin/sh\nexec sleep 2147483647\n")
    (rootfs / "bin" / "pause").chmod(0o755)
    tar = tmp_path / "image.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    name = f"localhost/ckpt-pod-{uuid.uuid4().hex[:8]}:v1"
    podman("import", str(tar), name, env=podman_env)
    yield name
    podman("rmi", "--force", name, env=podman_env, check=False)


def test_a_podman_pod_moves_through_a_registry_with_its_connection(pod_image, podman_env, tmp_path, ckpt_home):
    env, name = podman_env, f"pod-{uuid.uuid4().hex[:8]}"
    try:
        podman("pod", "create", "--name", name, "--infra-image", pod_image, "--infra-command", "/bin/pause",
               "--network", "none", "--label", "team=shop", env=env)
        podman("run", "-d", "--pod", name, "--name", f"{name}-server", pod_image, "/bin/tcp_pair", "serve",
               "--state", "/state", "--port", str(PORT), "--clients", "0", env=env)
        podman("run", "-d", "--pod", name, "--name", f"{name}-client", pod_image, "/bin/tcp_keep", "keep",
               "127.0.0.1", str(PORT), "--state", "/state", "--interval-ms", "50", env=env)

        def client_state() -> dict[str, str]:
            out = podman("exec", f"{name}-client", "cat", "/state", env=env, check=False).stdout
            return dict(word.split("=", 1) for word in out.split()) if "=" in out else {}

        deadline = time.monotonic() + 20
        while int(client_state().get("sent", 0)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = client_state()
        with RegistryServer(tmp_path / "registry", auth="none") as reg:
            ref = f"{reg.host}/pods/{name}:v1"
            saved = ckpt("save", "--pod", name, ref, "--tcp-established", "--insecure", "--json", home=ckpt_home,
                         env=env)
            assert saved.returncode == 0, saved.stderr
            assert sorted(json.loads(saved.stdout)["members"]) == ["client", "server"]
            assert podman("pod", "exists", name, env=env, check=False).returncode != 0, "the saved pod should be gone"
            shown = json.loads(ckpt("inspect", ref, "--insecure", "--json", home=ckpt_home, env=env,
                                    check=True).stdout)
            assert shown["pod"]["engine"] == "podman" and shown["pod"]["sandbox"] is None
            assert shown["pod"]["annotations"] == {"team": "shop"}
            restored = ckpt("restore", ref, "--insecure", "--json", home=ckpt_home, env=env)
            assert restored.returncode == 0, restored.stderr
        deadline = time.monotonic() + 20
        while int(client_state().get("sent", 0)) < int(before["sent"]) + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = client_state()
        assert after["nonce"] == before["nonce"] and after["ok"] == "1"
        assert int(after["sent"]) >= int(before["sent"]) + 20
        labels = json.loads(podman("pod", "inspect", name, env=env).stdout)
        labels = labels[0] if isinstance(labels, list) else labels
        assert labels["Labels"] == {"team": "shop"} and sorted(labels["SharedNamespaces"]) == ["ipc", "net", "uts"]
    finally:
        podman("pod", "rm", "--force", "--time", "0", name, env=env, check=False)
