"""The workload zoo: real kernel objects and real servers, saved to a real registry, every trace
wiped, restored from the reference alone, and seen from outside to go on (docs/workloads.md).

Each zoo program (samples/workloads/) checks its own invariants and says ok=0 the moment one
breaks; the tests check from outside the container that its state advances with the same
nonce (the same processes), and talk to it where it serves: through its unix socket file, in its
network namespace, through /proc. Where CRIU must refuse, the save fails with CRIU's exit code,
names the object and the option, and the container runs on with nothing pushed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from support.registry_server import RegistryServer
from support.sample import ckpt, runc_status, start
from support.workloads import (ZooState, container_pid, debian_rootfs, fnv64, http_get, migrate, read_zoo_state,
                               redis_cli, registry_has, save_to, servers, udp_ask,
                               unix_ask, wait_zoo, zoo_bundle)

from checkpointer.errors import CriuFailed


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    with RegistryServer(tmp_path_factory.mktemp("zoo-registry"), auth="none") as reg:
        yield reg


# Both depend on bundle_template (tests/conftest.py) for its check that this host can run
# end-to-end tests (root, CRIU, runc, gcc, busybox) before anything is built.

@pytest.fixture(scope="session")
def zoo_template(bundle_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zoo_bundle.build_template(tmp_path_factory.mktemp("zoo") / "template")


@pytest.fixture(scope="session")
def debian_root(bundle_template: Path) -> Path:
    return debian_rootfs.ensure()


# -- the zoo: one case per kind of kernel object ------------------------------------------------

@dataclass(frozen=True)
class Running:
    """A zoo container as the checks see it: where its files are and its init's pid on the host."""
    rootfs: Path
    pid: int

    def kill(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)


@dataclass(frozen=True)
class Case:
    id: str
    program: str
    args: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()        # what `ckpt save` needs for it
    progress: str = "ticks"            # the state word that must go on growing
    before_save: Callable[[Running], None] | None = None
    after: Callable[[Running, ZooState, ZooState], None] | None = None   # (restored, at save, now)


def threads_after(run: Running, saved: ZooState, now: ZooState) -> None:
    assert now.fields["tids"] == saved.fields["tids"], "threads came back with other ids"
    later = wait_zoo(run.rootfs,
                     lambda s: all(int(a) > int(b) for a, b in zip(s.list("counts"), saved.list("counts"))))
    assert later.int("wakeups") > saved.int("wakeups"), "the thread asleep in the futex never woke"


def pipes_after(run: Running, saved: ZooState, now: ZooState) -> None:
    assert now.fields["pids"] == saved.fields["pids"]
    # From outside: init has one child, which has one child (the ring's three processes).
    child = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    assert len(child) == 1, child
    grandchild = Path(f"/proc/{child[0]}/task/{child[0]}/children").read_text().split()
    assert len(grandchild) == 1, grandchild


def unix_after(run: Running, saved: ZooState, now: ZooState) -> None:
    # A new client from the host, through the socket file in the restored container's root (by
    # /proc: a unix socket path has room for 107 bytes, less than a test's rootfs path may take).
    answer = unix_ask(Path(f"/proc/{run.pid}/root/tmp/zoo.sock"))
    assert answer.startswith(f"nonce={now.nonce} answered="), answer
    later = wait_zoo(run.rootfs, lambda s: s.int("accepted") > now.int("accepted") + 2)
    assert later.int("pairs") > saved.int("pairs")


def udp_after(run: Running, saved: ZooState, now: ZooState) -> None:
    answer = udp_ask(run.pid, 7100)
    assert answer.startswith(f"nonce={now.nonce} received="), answer
    wait_zoo(run.rootfs, lambda s: s.int("asked") > saved.int("asked"))


def shm_after(run: Running, saved: ZooState, now: ZooState) -> None:
    assert now.fields["static_sum"] == saved.fields["static_sum"]
    # From outside: the object in the container's /dev/shm carries the header and the same nonce.
    header = Path(f"/proc/{run.pid}/root/dev/shm/zoo-shm").read_bytes()[:32]
    assert header[:8] == b"zooshm01"
    assert int.from_bytes(header[8:16], "little") == int(now.nonce, 16)
    assert int.from_bytes(header[16:24], "little") >= saved.int("seq")


def deleted_after(run: Running, saved: ZooState, now: ZooState) -> None:
    fd = now.int("fd")
    link = f"/proc/{run.pid}/fd/{fd}"
    assert os.readlink(link).endswith("/tmp/zoo-deleted (deleted)"), os.readlink(link)
    # From outside: the content the process holds is what its state says (read between two ticks).
    for _ in range(50):
        first = read_zoo_state(run.rootfs)
        content = Path(link).read_bytes()
        if read_zoo_state(run.rootfs).fields == first.fields:
            assert len(content) == first.int("size")
            assert f"{fnv64(content):016x}" == first.fields["sum"]
            return
    raise AssertionError("the deleted file's content never held still between two ticks")


def fds_before(run: Running) -> None:
    run.kill(signal.SIGUSR2)  # blocked and never read: must still be pending after the restore
    wait_zoo(run.rootfs, lambda s: s.fields["usr2_pending"] == "1")


def fds_after(run: Running, saved: ZooState, now: ZooState) -> None:
    assert now.fields["usr2_pending"] == "1" and now.int("period_ms") == 20
    run.kill(signal.SIGUSR1)
    later = wait_zoo(run.rootfs, lambda s: s.int("usr1") > saved.int("usr1"))
    assert later.int("drained") > saved.int("drained")


def timerfd_periodic_after(run: Running, saved: ZooState, now: ZooState) -> None:
    # The workload says timer_silent after a second without a wakeup (wait_zoo fails on it): watch
    # well past that, and at the timer's own pace (5 ms, so ~100 expirations every half second).
    assert now.int("period_ms") == 5, "the timer's period changed"
    since = time.monotonic()
    later = wait_zoo(run.rootfs, lambda s: time.monotonic() - since > 2.5)
    assert later.int("expirations") - now.int("expirations") > 200, (now, later)


def locks_after(run: Running, saved: ZooState, now: ZooState) -> None:
    assert now.fields["holder"] == saved.fields["holder"]
    # From outside: the kernel's lock table has all three locks again, the flock and the POSIX
    # lock held by the restored init (its host pid).
    inodes = {kind: os.stat(run.rootfs / "tmp" / f"zoo-{kind}").st_ino for kind in ("flock", "posix", "ofd")}
    held = set()
    for line in Path("/proc/locks").read_text().splitlines():
        words = line.split()
        if words[1] == "->":  # a process waiting for a lock, not a lock
            continue
        kind, owner, inode = words[1], words[4], int(words[5].split(":")[2])
        for name, wanted in (("flock", "FLOCK"), ("posix", "POSIX"), ("ofd", "OFDLCK")):
            if kind == wanted and inode == inodes[name] and (name == "ofd" or owner == str(run.pid)):
                held.add(name)
    assert held == {"flock", "posix", "ofd"}, held


def tcp_after(run: Running, saved: ZooState, now: ZooState) -> None:
    assert now.fields["conns"] == "3"
    # A new connection from outside (in the container's network namespace) to the restored listener.
    out = subprocess.run(["nsenter", f"--net=/proc/{run.pid}/ns/net", str(run.rootfs / "bin" / "tcp_pair"), "ask",
                          "127.0.0.1", "7000"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and "echo ok" in out.stdout, out.stdout + out.stderr


CASES = [
    Case("threads", "threads", after=threads_after),
    Case("pipes-fifo-in-tmpfs", "pipes", ("--fifo", "/dev/shm/zoo.fifo"), progress="rounds", after=pipes_after),
    # CRIU reopens a FIFO of the rootfs by its path: the rootfs layer carries it.
    Case("pipes-fifo-in-rootfs", "pipes", ("--fifo", "/tmp/zoo.fifo"), progress="rounds", after=pipes_after),
    Case("unix-sockets", "unix", progress="answered", after=unix_after),
    Case("udp", "udp", progress="received", after=udp_after),
    Case("posix-shm", "shm", progress="seq", after=shm_after),
    Case("deleted-open-file", "deleted", after=deleted_after),
    Case("timerfd-oneshot-eventfd-epoll-signalfd", "fds", ("--timer", "oneshot"), progress="expirations",
         before_save=fds_before, after=fds_after),
    # A periodic timerfd that expired while the container was frozen (a 5 ms period, shorter than the
    # freeze): CRIU dumps it as it_value=0 with ticks=1 and would restore it disarmed
    # (checkpoint-restore/criu#3162); criu/fixups.py re-arms it in the dumped images, so it fires on.
    Case("timerfd-periodic-expired-while-frozen", "fds", ("--timer", "periodic", "--period-ms", "5"),
         progress="expirations", after=timerfd_periodic_after),
    Case("file-locks", "locks", flags=("--file-locks",), progress="checks", after=locks_after),
    Case("tcp-established", "tcp_pair", ("serve", "--port", "7000"), flags=("--tcp-established",),
         progress="sent", after=tcp_after),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_zoo_workload_goes_on_after_migration(case: Case, zoo_template, registry, tmp_path, runc_root, ckpt_home,
                                              container_name):
    bundle = zoo_bundle.make_bundle(zoo_template, tmp_path / "bundle", case.program, list(case.args))
    start(runc_root, bundle, container_name)
    before = wait_zoo(bundle / "rootfs", lambda s: s.int(case.progress) >= 5)
    if case.before_save:
        case.before_save(Running(bundle / "rootfs", container_pid(runc_root, container_name)))
    states: list[ZooState] = []
    restored = migrate(registry, runc_root, container_name, bundle, ckpt_home, case.flags,
                       before_wipe=lambda b: states.append(read_zoo_state(b / "rootfs")))
    saved = states[0]  # its last tick before the dump
    now = wait_zoo(restored.rootfs, lambda s: s.int(case.progress) > saved.int(case.progress) + 3)
    assert now.nonce == before.nonce, "a new process started instead of the checkpointed one"
    if case.after:
        case.after(Running(restored.rootfs, restored.pid), saved, now)
    final = wait_zoo(restored.rootfs, lambda s: s.int(case.progress) > now.int(case.progress))
    assert final.ok and final.nonce == before.nonce


# -- what CRIU refuses: a clear error, and the container runs on --------------------------------

@dataclass(frozen=True)
class Refusal:
    id: str
    program: str
    args: tuple[str, ...]
    says: tuple[str, ...]     # what the error must name: the object, and the option that would help
    progress: str = "ticks"


REFUSALS = [
    Refusal("file-locks-without-option", "locks", (), ("file locks", "--file-locks"), "checks"),
    Refusal("deleted-file-over-ghost-limit", "deleted", ("--kib", "2048"),
            ("ghost file", "/tmp/zoo-deleted", "ghost-limit")),
    Refusal("io_uring", "iouring", (), ("io_uring", "no CRIU release supports io_uring")),
    Refusal("tcp-without-option", "tcp_pair", ("serve", "--port", "7000"), ("TCP", "--tcp-established"), "sent"),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.id)
def test_zoo_workload_criu_refuses_clearly(refusal: Refusal, zoo_template, registry, tmp_path, runc_root,
                                          ckpt_home, container_name):
    bundle = zoo_bundle.make_bundle(zoo_template, tmp_path / "bundle", refusal.program, list(refusal.args))
    start(runc_root, bundle, container_name)
    before = wait_zoo(bundle / "rootfs", lambda s: s.int(refusal.progress) >= 3)
    res = save_to(registry, runc_root, container_name, ckpt_home)
    assert res.returncode == CriuFailed.exit_code, res.stderr
    text = " ".join(res.stderr.split())
    for word in refusal.says:
        assert word.lower() in text.lower(), f"the error does not name {word!r}:\n{res.stderr}"
    assert runc_status(runc_root, container_name) == "running"
    after = wait_zoo(bundle / "rootfs", lambda s: s.int(refusal.progress) > before.int(refusal.progress) + 3)
    assert after.nonce == before.nonce
    assert not registry_has(registry, container_name), "a refused save pushed a tag"


def test_unix_client_outside_the_container_is_refused(zoo_template, registry, tmp_path, runc_root, ckpt_home,
                                                     container_name):
    """A host process connected to the container's unix listener at save time: the socket the
    server accepted belongs to the client's network namespace (the host's), where CRIU's socket
    listing of the container does not look. CRIU refuses, with --ext-unix-sk too."""
    bundle = zoo_bundle.make_bundle(zoo_template, tmp_path / "bundle", "unix", [])
    start(runc_root, bundle, container_name)
    before = wait_zoo(bundle / "rootfs", lambda s: s.int("answered") >= 3)
    pid = container_pid(runc_root, container_name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(f"/proc/{pid}/root/tmp/zoo.sock")
        wait_zoo(bundle / "rootfs", lambda s: s.int("accepted") > before.int("accepted") + 1)
        for flags in ((), ("--ext-unix-sk",)):
            res = save_to(registry, runc_root, container_name, ckpt_home, *flags)
            assert res.returncode == CriuFailed.exit_code, res.stderr
            assert re.search(r"Unix socket \d+ not found", res.stderr), res.stderr
            text = " ".join(res.stderr.split())
            assert "outside the container is connected" in text and "disconnect it first" in text, res.stderr
            assert runc_status(runc_root, container_name) == "running"
    after = wait_zoo(bundle / "rootfs", lambda s: s.int("answered") > before.int("answered") + 3)
    assert after.nonce == before.nonce
    assert not registry_has(registry, container_name)


# -- known defects: what breaks today, shown as it breaks (when one of these starts failing, it was
# fixed: move its workload into CASES). None today: the periodic timerfd is repaired (criu/fixups.py).

# -- real programs from Debian's packages -------------------------------------------------------

def test_redis_keeps_its_keys_and_takes_new_clients(debian_root, registry, tmp_path, runc_root, ckpt_home,
                                                     container_name):
    bundle = servers.redis_bundle(debian_root, tmp_path / "bundle")
    start(runc_root, bundle, container_name)
    pid = container_pid(runc_root, container_name)
    wait_until(lambda: redis_cli(pid, bundle / "rootfs", "PING") == "PONG")
    values = {f"key:{i}": uuid.uuid4().hex for i in range(200)}
    redis_cli(pid, bundle / "rootfs", "MSET", *[x for kv in values.items() for x in kv])
    assert redis_cli(pid, bundle / "rootfs", "INCRBY", "counter", "41") == "41"
    run_id = info_field(redis_cli(pid, bundle / "rootfs", "INFO", "server"), "run_id")

    restored = migrate(registry, runc_root, container_name, bundle, ckpt_home)
    rootfs = restored.rootfs
    wait_until(lambda: redis_cli(restored.pid, rootfs, "PING") == "PONG")
    assert info_field(redis_cli(restored.pid, rootfs, "INFO", "server"), "run_id") == run_id, "not the same server"
    keys = list(values)
    assert redis_cli(restored.pid, rootfs, "MGET", *keys).split("\n") == [values[k] for k in keys]
    assert redis_cli(restored.pid, rootfs, "INCR", "counter") == "42"
    assert redis_cli(restored.pid, rootfs, "SET", "after", "restore") == "OK"
    assert redis_cli(restored.pid, rootfs, "DBSIZE") == str(len(values) + 2)
    connections = int(info_field(redis_cli(restored.pid, rootfs, "INFO", "stats"), "total_connections_received"))
    assert connections > 5  # the clients before the save count too: the same process took them


def test_python_http_server_serves_before_and_after(debian_root, registry, tmp_path, runc_root, ckpt_home,
                                                    container_name):
    bundle = servers.web_bundle(debian_root, tmp_path / "bundle")
    page = (bundle / "rootfs" / "srv" / "www" / "index.html").read_text()
    start(runc_root, bundle, container_name)
    pid = container_pid(runc_root, container_name)
    first = wait_until(lambda: http_get(pid, "/count"))
    nonce = re.fullmatch(r"nonce=(\w+) served=1\n", first).group(1)
    assert http_get(pid, "/index.html") == page

    restored = migrate(registry, runc_root, container_name, bundle, ckpt_home)
    assert http_get(restored.pid, "/index.html") == page
    assert http_get(restored.pid, "/count") == f"nonce={nonce} served=4\n"  # counted on from before the save


def wait_until(probe, timeout: float = 20.0):  # noqa: ANN001, ANN201
    """The first truthy answer of `probe`; its errors count as "not yet" until the time is up."""
    deadline, error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            answer = probe()
            if answer:
                return answer
        except (AssertionError, OSError, subprocess.SubprocessError) as exc:
            error = exc
        time.sleep(0.1)
    raise AssertionError(f"no answer within {timeout}s: {error}")


def info_field(info: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(f"{key}:"))


# -- under Podman: the same zoo programs, saved with ckpt from Podman and restored into it --------

PODMAN_RUN = ["--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


def podman_pid(name: str) -> int:
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)


@pytest.fixture(scope="module")
def podman_zoo_image(zoo_template, registry, tmp_path_factory):  # noqa: ANN001, ANN201
    """The zoo's rootfs as a Podman image (podman import), also in the registry: the container
    names it there, so a restore on a host without it pulls it back."""
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (scripts/setup.sh --test installs it)")
    tar = tmp_path_factory.mktemp("zoo-podman") / "rootfs.tar"
    subprocess.run(["tar", "-C", str(zoo_template / "rootfs"), "-cf", str(tar), "."], check=True)
    image = f"{registry.host}/zoo-base/zoo-{uuid.uuid4().hex[:8]}:v1"
    podman("import", str(tar), image)
    podman("push", "--tls-verify=false", image)
    yield image
    podman("rmi", "--force", image, check=False)


# Podman's own checkpoint carries the container's changed files, FIFOs among them.
PODMAN_CASES = [c for c in CASES if c.id in ("threads", "unix-sockets", "pipes-fifo-in-rootfs")]


@pytest.mark.parametrize("case", PODMAN_CASES, ids=lambda c: c.id)
def test_zoo_workload_under_podman(case: Case, podman_zoo_image, registry, ckpt_home):
    name = f"ckpt-test-{uuid.uuid4().hex[:10]}"
    try:
        podman("run", "-d", "--name", name, *PODMAN_RUN, podman_zoo_image, f"/bin/{case.program}", *case.args,
               "--state", "/state")
        root = Path(f"/proc/{podman_pid(name)}/root")
        before = wait_zoo(root, lambda s: s.int(case.progress) >= 5)
        ref = f"{registry.host}/zoo/{name}:v1"
        files = Path(podman("mount", name).stdout.strip())  # the container's files, kept until it is removed
        res = ckpt("save", *case.flags, name, ref, "--insecure", "--json", home=ckpt_home)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["references"] == [ref]
        saved = read_zoo_state(files)  # its last tick before the dump
        podman("rm", "--force", "--time", "0", name)
        podman("rmi", "--force", podman_zoo_image)
        shutil.rmtree(ckpt_home)
        ckpt_home.mkdir()

        out = ckpt("restore", ref, "--insecure", "--json", home=ckpt_home)
        assert out.returncode == 0, out.stderr
        info = json.loads(out.stdout)
        assert info["engine"] == "podman" and info["container"] == name
        pid = podman_pid(name)
        root = Path(f"/proc/{pid}/root")
        now = wait_zoo(root, lambda s: s.int(case.progress) > saved.int(case.progress) + 3)
        assert now.nonce == before.nonce, "a new process started instead of the checkpointed one"
        if case.after:
            case.after(Running(root, pid), saved, now)
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)

