"""Servers and their network across a save and a restore, with real CRIU, runc, Podman and a real
registry: listeners are reachable again, loopback is up with its addresses and routes, established
TCP connections go on (--tcp-established), and all of it without iptables on the host.

The workload is samples/workloads/tcp_pair.c: a server on 0.0.0.0:7000 and [::]:7001, and (unless
--clients 0) a client in the same container with three connections to it (127.0.0.1,
::ffff:127.0.0.1, ::1) that checks every echo. Its `ask` mode is the client from outside, run on
the host or in the container's network namespace (nsenter)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from support.registry_server import RegistryServer, free_port
from support.sample import ckpt, make_bundle, runc_status, start

from checkpointer.criu import probe
from checkpointer.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "samples" / "workloads" / "tcp_pair.c"
PORT = 7000
PODMAN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@pytest.fixture(scope="session")
def tcp_pair(bundle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workload, static: the same binary runs in the containers and on the host."""
    out = tmp_path_factory.mktemp("tcp-pair") / "tcp_pair"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(SOURCE)], check=True)
    return out


def serve_args(*extra: str, port: int = PORT) -> list[str]:
    return ["/bin/tcp_pair", "serve", "--state", "/state", "--port", str(port), "--interval-ms", "50", *extra]


def tcp_bundle(bundle_template: Path, tcp_pair: Path, dest: Path, args: list[str]) -> Path:
    bundle = make_bundle(bundle_template, dest, args)
    shutil.copy2(tcp_pair, bundle / "rootfs" / "bin" / "tcp_pair")
    return bundle


def parse(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


def wait_state(read, predicate, timeout: float = 20.0) -> dict[str, str]:  # noqa: ANN001
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = parse(read())
            if predicate(last):
                return last
        except (OSError, ValueError, KeyError, AssertionError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"workload state never matched within {timeout}s; last seen: {last}")


def file_reader(rootfs: Path):  # noqa: ANN201
    return lambda: (rootfs / "state").read_text()


def init_pid(runc_root: Path, name: str) -> int:
    out = subprocess.run(["runc", "--root", str(runc_root), "state", name], capture_output=True, text=True,
                         check=True).stdout
    return int(json.loads(out)["pid"])


def in_netns(pid: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", "--", *argv], capture_output=True, text=True,
                          check=check, timeout=30)


def ask(tcp_pair: Path, host: str, port: int, pid: int | None = None) -> bool:
    """One connection from outside: to the container's namespace (nsenter) or, without pid, from the host."""
    argv = [str(tcp_pair), "ask", host, str(port)]
    res = in_netns(pid, *argv, check=False) if pid else subprocess.run(argv, capture_output=True, text=True,
                                                                       timeout=30)
    return res.returncode == 0 and res.stdout.strip() == "echo ok"


def loopback(pid: int) -> tuple[list[str], set[str]]:
    """Flags and addresses (CIDR) of lo in the namespace of `pid`."""
    lo = json.loads(in_netns(pid, "ip", "-j", "address", "show", "dev", "lo").stdout)[0]
    return lo["flags"], {f"{a['local']}/{a['prefixlen']}" for a in lo["addr_info"]}


def routes(pid: int) -> set[str]:
    return {r["dst"] for r in json.loads(in_netns(pid, "ip", "-j", "route", "show", "dev", "lo").stdout)}


def wipe(path: Path) -> None:
    shutil.rmtree(path)
    path.mkdir()


def without_iptables(tmp_path: Path) -> tuple[str, Path]:
    """A PATH with every command of this host but iptables*/ip6tables*, and a `criu` first on it
    that notes each CRIU config ckpt hands over before it runs the real CRIU."""
    bin_dir, record = tmp_path / "no-iptables-bin", tmp_path / "criu-configs"
    bin_dir.mkdir()
    real_criu = shutil.which("criu")
    (bin_dir / "criu").write_text(
        f'#!/bin/sh\nif [ -n "$CRIU_CONFIG_FILE" ]; then echo "== $CRIU_CONFIG_FILE" >> {record}; '
        f'cat "$CRIU_CONFIG_FILE" >> {record}; fi\nexec {real_criu} "$@"\n')
    (bin_dir / "criu").chmod(0o755)
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = bin_dir / entry.name
            if entry.name.startswith(("iptables", "ip6tables")) or os.path.lexists(link):
                continue
            link.symlink_to(entry.path)
    path = str(bin_dir)
    assert shutil.which("iptables-restore", path=path) is None and shutil.which("ip", path=path)
    return path, record


def criu_configs(record: Path) -> dict[str, str]:
    """The configs the `criu` of without_iptables() saw, by path (CRIU starts more than once per run)."""
    configs: dict[str, str] = {}
    current = None
    for line in record.read_text().splitlines() if record.exists() else []:
        if line.startswith("== "):
            current = line[3:]
            configs[current] = ""
        elif current is not None:
            configs[current] += line + "\n"
    return configs


def two_free_ports() -> int:
    """A port P such that P and P+1 are both free on 127.0.0.1 (the workload listens on both)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _free(port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET6) as sock:  # dual-stack, as the workload binds it
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind(("::", port))
        except OSError:
            return False
    return True


# --- runc --------------------------------------------------------------------------------------


def test_listener_loopback_addresses_and_routes_come_back(bundle_template, tcp_pair, tmp_path, runc_root,
                                                           ckpt_home, container_name):
    bundle = tcp_bundle(bundle_template, tcp_pair, tmp_path / "bundle", serve_args("--clients", "0"))
    start(runc_root, bundle, container_name)
    first = wait_state(file_reader(bundle / "rootfs"), lambda s: "served" in s)
    pid = init_pid(runc_root, container_name)
    # What a network hook or plugin may have given the loopback: ckpt must carry it.
    in_netns(pid, "ip", "address", "add", "10.77.0.1/32", "dev", "lo")
    in_netns(pid, "ip", "route", "add", "10.78.0.0/16", "dev", "lo")
    assert ask(tcp_pair, "127.0.0.1", PORT, pid)

    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        ref = f"{reg.host}/net/{container_name}:v1"
        ckpt("save", "--runc-root", str(runc_root), container_name, ref, "--insecure", home=ckpt_home, check=True)
        assert runc_status(runc_root, container_name) is None
        shutil.rmtree(bundle)
        wipe(ckpt_home)
        out = ckpt("restore", "--runc-root", str(runc_root), ref, "--insecure", "--json", home=ckpt_home,
                   check=True)
    info = json.loads(out.stdout)
    assert info["warnings"] == []
    pid = info["pid"]
    flags, addresses = loopback(pid)
    assert "UP" in flags
    assert {"127.0.0.1/8", "::1/128", "10.77.0.1/32"} <= addresses
    assert "10.78.0.0/16" in routes(pid)
    for host, port in (("127.0.0.1", PORT), ("::1", PORT + 1), ("::ffff:127.0.0.1", PORT + 1), ("10.77.0.1", PORT)):
        assert ask(tcp_pair, host, port, pid), f"the restored listener does not answer on {host}:{port}"
    # One echo before the save, four after: the count of the server that was saved goes on.
    after = wait_state(file_reader(Path(info["bundle"]) / "rootfs"), lambda s: s["served"] == "5")
    assert after["nonce"] == first["nonce"], "a new server started instead of the checkpointed one"


def test_established_connections_go_on(bundle_template, tcp_pair, tmp_path, runc_root, ckpt_home, container_name):
    bundle = tcp_bundle(bundle_template, tcp_pair, tmp_path / "bundle", serve_args())
    start(runc_root, bundle, container_name)
    before = wait_state(file_reader(bundle / "rootfs"), lambda s: int(s["sent"]) >= 5)

    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        ref = f"{reg.host}/net/{container_name}:v1"
        ckpt("save", "--runc-root", str(runc_root), "--tcp-established", container_name, ref, "--insecure",
             home=ckpt_home, check=True)
        at_save = parse((bundle / "rootfs" / "state").read_text())
        shutil.rmtree(bundle)
        wipe(ckpt_home)
        out = ckpt("restore", "--runc-root", str(runc_root), ref, "--insecure", "--json", home=ckpt_home,
                   check=True)
    rootfs = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
    after = wait_state(file_reader(rootfs), lambda s: s["ok"] != "1" or int(s["sent"]) > int(at_save["sent"]) + 10)
    assert after["ok"] == "1" and after["conns"] == "3", f"a connection broke after the restore: {after}"
    assert after["nonce"] == before["nonce"], "a new client started instead of the checkpointed one"


def test_save_and_restore_without_iptables(bundle_template, tcp_pair, tmp_path, runc_root, ckpt_home, container_name):
    assert probe.has_feature("network_lock_nftables"), "this CRIU has no nftables network lock"
    path, record = without_iptables(tmp_path)
    env = {"PATH": path}
    check = json.loads(ckpt("check", "--json", home=ckpt_home, env=env).stdout)
    lock = next(f for f in check if f["what"] == "network lock")
    assert lock["ok"] and lock["detail"].startswith("nftables")

    bundle = tcp_bundle(bundle_template, tcp_pair, tmp_path / "bundle", serve_args())
    start(runc_root, bundle, container_name)
    wait_state(file_reader(bundle / "rootfs"), lambda s: int(s["sent"]) >= 5)
    ckpt("save", "--runc-root", str(runc_root), "--tcp-established", container_name, "net:v1", home=ckpt_home,
         env=env, check=True)
    at_save = parse((bundle / "rootfs" / "state").read_text())
    shutil.rmtree(bundle)
    out = ckpt("restore", "--runc-root", str(runc_root), "net:v1", "--json", home=ckpt_home, env=env, check=True)
    rootfs = Path(json.loads(out.stdout)["bundle"]) / "rootfs"
    after = wait_state(file_reader(rootfs), lambda s: s["ok"] != "1" or int(s["sent"]) > int(at_save["sent"]) + 5)
    assert after["ok"] == "1"
    # CRIU locked the network both times, with nftables: the configs ckpt gave the dump and the
    # restore said so, and iptables was not there to use.
    configs = criu_configs(record)
    assert len(configs) == 2 and all("network-lock nftables" in text for text in configs.values()), configs
    assert sum("action-script" in text for text in configs.values()) == 1, configs


def test_host_network_needs_no_lock_and_no_script(bundle_template, tcp_pair, tmp_path, runc_root, ckpt_home,
                                                  container_name):
    """A container in the host's network namespace: CRIU locks nothing (no --tcp-established) and
    restores into the host's namespace, so ckpt hands it no config at all."""
    path, record = without_iptables(tmp_path)
    port = two_free_ports()
    bundle = tcp_bundle(bundle_template, tcp_pair, tmp_path / "bundle", serve_args("--clients", "0", port=port))
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
    (bundle / "config.json").write_text(json.dumps(spec))
    start(runc_root, bundle, container_name)
    wait_state(file_reader(bundle / "rootfs"), lambda s: "served" in s)
    assert ask(tcp_pair, "127.0.0.1", port)

    ckpt("save", "--runc-root", str(runc_root), container_name, "host-net:v1", home=ckpt_home, env={"PATH": path},
         check=True)
    assert not ask(tcp_pair, "127.0.0.1", port)
    shutil.rmtree(bundle)
    out = ckpt("restore", "--runc-root", str(runc_root), "host-net:v1", "--json", home=ckpt_home,
               env={"PATH": path}, check=True)
    assert json.loads(out.stdout)["warnings"] == []
    assert ask(tcp_pair, "127.0.0.1", port) and ask(tcp_pair, "::1", port + 1)
    assert criu_configs(record) == {}


def test_hook_made_interface_comes_back_and_a_missing_one_is_reported(bundle_template, tcp_pair, tmp_path,
                                                                       runc_root, ckpt_home, container_name):
    """runc runs the spec's createRuntime hooks again at restore: what they make comes back. What
    was added by hand does not, and the restore says so."""
    hook = tmp_path / "add-veth.sh"
    ip, nsenter = shutil.which("ip"), shutil.which("nsenter")
    hook.write_text("#!/bin/sh\npid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p')\n"
                    f'exec {nsenter} -t "$pid" -n {ip} link add hk0 type veth peer name hk1\n')
    hook.chmod(0o755)
    bundle = tcp_bundle(bundle_template, tcp_pair, tmp_path / "bundle", serve_args("--clients", "0"))
    spec = json.loads((bundle / "config.json").read_text())
    spec["hooks"] = {"createRuntime": [{"path": str(hook)}]}
    (bundle / "config.json").write_text(json.dumps(spec))
    start(runc_root, bundle, container_name)
    wait_state(file_reader(bundle / "rootfs"), lambda s: "served" in s)
    pid = init_pid(runc_root, container_name)
    in_netns(pid, "ip", "link", "add", "mn0", "type", "veth", "peer", "name", "mn1")

    ckpt("save", "--runc-root", str(runc_root), container_name, "ifaces:v1", home=ckpt_home, check=True)
    shutil.rmtree(bundle)
    out = ckpt("restore", "--runc-root", str(runc_root), "ifaces:v1", "--json", home=ckpt_home, check=True)
    info = json.loads(out.stdout)
    names = {link["ifname"] for link in json.loads(in_netns(info["pid"], "ip", "-j", "link", "show").stdout)}
    assert {"lo", "hk0", "hk1"} <= names and not {"mn0", "mn1"} & names
    assert sorted(w.split()[1] for w in info["warnings"]) == ["mn0", "mn1"]
    assert all(w.startswith("interface ") and " is missing " in w for w in info["warnings"])
    assert ask(tcp_pair, "127.0.0.1", PORT, info["pid"])


# --- Podman ------------------------------------------------------------------------------------


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    res = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


@pytest.fixture(scope="session")
def podman_image(bundle_template: Path, tcp_pair: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (scripts/setup.sh --test installs it)")
    work = tmp_path_factory.mktemp("podman-tcp")
    bundle = tcp_bundle(bundle_template, tcp_pair, work / "bundle", serve_args())
    subprocess.run(["tar", "-C", str(bundle / "rootfs"), "-cf", str(work / "rootfs.tar"), "."], check=True)
    name = f"localhost/ckpt-test-tcp-{uuid.uuid4().hex[:8]}:v1"
    podman("import", str(work / "rootfs.tar"), name)
    yield name
    podman("rmi", "--force", name, check=False)


@pytest.fixture
def pods():  # noqa: ANN201
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "0", name, check=False)


def run_pod(pods: list[str], image: str, args: list[str], *flags: str) -> str:
    name = f"ckpt-test-{uuid.uuid4().hex[:10]}"
    pods.append(name)
    podman("run", "-d", "--name", name, *PODMAN_FLAGS, *flags, image, *args)
    return name


def pod_reader(name: str):  # noqa: ANN201
    return lambda: podman("exec", name, "cat", "/state").stdout


def address(name: str) -> str:
    return podman("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()


def pod_pid(name: str) -> int:
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())


def test_podman_bridge_keeps_address_listener_and_connections(podman_image, tcp_pair, pods, tmp_path, ckpt_home):
    name = run_pod(pods, podman_image, serve_args())
    before = wait_state(pod_reader(name), lambda s: int(s["sent"]) >= 5)
    ip = address(name)
    assert ip and ask(tcp_pair, ip, PORT)

    with RegistryServer(tmp_path / "registry", auth="none") as reg:
        ref = f"{reg.host}/net/{name}:v1"
        ckpt("save", "--tcp-established", name, ref, "--insecure", home=ckpt_home, check=True)
        podman("rm", "--force", "--time", "0", name)
        wipe(ckpt_home)
        out = ckpt("restore", ref, "--insecure", "--json", home=ckpt_home, check=True)
    info = json.loads(out.stdout)
    assert info["container"] == name and info["warnings"] == []
    assert address(name) == ip, "Podman did not give the container its address back"
    after = wait_state(pod_reader(name), lambda s: s["ok"] != "1" or int(s["sent"]) > int(before["sent"]) + 10)
    assert after["ok"] == "1" and after["nonce"] == before["nonce"]
    assert ask(tcp_pair, ip, PORT) and ask(tcp_pair, ip, PORT + 1)
    flags, addresses = loopback(pod_pid(name))
    assert "UP" in flags and {"127.0.0.1/8", "::1/128"} <= addresses


def test_podman_copy_a_taken_address_and_a_taken_id_get_new_ones(podman_image, tcp_pair, pods, ckpt_home):
    name = run_pod(pods, podman_image, serve_args("--clients", "0"))
    wait_state(pod_reader(name), lambda s: "served" in s)
    ip = address(name)
    ckpt("save", "--leave-running", name, "snap:v1", home=ckpt_home, check=True)

    copy = f"{name}-copy"
    pods.append(copy)
    info = json.loads(ckpt("restore", "snap:v1", "--name", copy, "--json", home=ckpt_home, check=True).stdout)
    assert info["warnings"] == []  # another name: Podman gives another address, as it always does
    assert address(copy) not in ("", ip) and ask(tcp_pair, address(copy), PORT) and ask(tcp_pair, ip, PORT)

    # The original goes, and another container takes its address: the restore under the original name
    # cannot have it back, gets a new one and says so.
    podman("rm", "--force", "--time", "0", name)
    run_pod(pods, podman_image, ["/bin/sleep", "1000"], "--ip", ip)
    info = json.loads(ckpt("restore", "snap:v1", "--json", home=ckpt_home, check=True).stdout)
    assert info["container"] == name
    assert len(info["warnings"]) == 1 and "IP address is taken" in info["warnings"][0]
    assert address(name) not in ("", ip) and ask(tcp_pair, address(name), PORT)

    # A container with the checkpoint's id (renamed) is here: a new id, a new address, and a word.
    podman("rename", name, f"{name}-renamed")
    pods.append(f"{name}-renamed")
    taken = {ip, address(f"{name}-renamed"), address(copy)}
    info = json.loads(ckpt("restore", "snap:v1", "--json", home=ckpt_home, check=True).stdout)
    assert len(info["warnings"]) == 1 and "id exists here" in info["warnings"][0]
    assert address(name) not in taken and ask(tcp_pair, address(name), PORT)


def test_podman_tcp_established_only_under_its_own_name(podman_image, pods, ckpt_home):
    name = run_pod(pods, podman_image, serve_args())
    wait_state(pod_reader(name), lambda s: int(s["sent"]) >= 3)
    ckpt("save", "--tcp-established", "--leave-running", name, "tcp:v1", home=ckpt_home, check=True)
    res = ckpt("restore", "tcp:v1", "--name", f"{name}-copy", home=ckpt_home)
    assert res.returncode == UsageError.exit_code, res.stderr
    assert "only under the container's own name" in " ".join(res.stderr.split())
    assert podman("container", "exists", f"{name}-copy", check=False).returncode != 0


def test_podman_without_network_gets_its_loopback_back(podman_image, tcp_pair, pods, ckpt_home):
    name = run_pod(pods, podman_image, serve_args("--clients", "0"), "--network", "none")
    first = wait_state(pod_reader(name), lambda s: "served" in s)
    ckpt("save", name, "none:v1", home=ckpt_home, check=True)
    podman("rm", "--force", "--time", "0", name)
    info = json.loads(ckpt("restore", "none:v1", "--json", home=ckpt_home, check=True).stdout)
    pid = pod_pid(name)
    flags, addresses = loopback(pid)
    assert "UP" in flags and {"127.0.0.1/8", "::1/128"} <= addresses
    assert ask(tcp_pair, "127.0.0.1", PORT, pid) and ask(tcp_pair, "::1", PORT + 1, pid)
    assert parse(pod_reader(name)())["nonce"] == first["nonce"] and info["warnings"] == []
