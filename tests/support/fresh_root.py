"""A fresh Debian machine for tests: a minimal root made by `debootstrap --variant=minbase`, run
with pivot_root in mount and PID namespaces of its own (enter_root.sh), so that what it lacks
shows and nothing it starts outlives it.

Two images are cached under /var/cache/ckpt-tests (root's only, 0700) so that a run pays for
debootstrap and for setup's downloads only when they change:

    base      minbase + python3 (every Debian machine has it; minbase does not) with the host's
              Debian apt sources; rebuilt each ISO week, as the mirror moves on
    prepared  base after one `scripts/setup.sh` (no --test) ran in it; keyed by the base and by
              the bytes of setup.sh and of this module, so a change to either builds it again

What ties the root to this machine and is no package (DNS, the apt settings no package owns, the
CA certificates of the network's TLS proxy) is copied in before each run: a machine of this kind
has them before anyone installs anything.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

SUITE = "bookworm"
CACHE_DIR = Path(os.environ.get("CKPT_TEST_CACHE", "/var/cache/ckpt-tests"))  # shared with samples/debian_rootfs.py
ENTER = Path(__file__).resolve().parent / "enter_root.sh"
CHECKOUT = "/opt/ckpt"  # where the checkout lies inside the root
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
PYTHON_VERSION = 'import sys; print("%d.%d.%d" % sys.version_info[:3])'
TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"]


SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tool(name: str) -> str | None:
    """NAME's path, also where the caller's PATH lacks the sbin directories."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")


class RootError(AssertionError):
    """Building or entering a root failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class RootImage:
    key: str
    tarball: Path
    python: str          # /usr/bin/python3's version in the base, before any setup ran
    built_seconds: float


@dataclass(frozen=True)
class RunResult:
    returncode: int
    output: str
    seconds: float


# -- the cache directory ------------------------------------------------------------------------

def cache_dir() -> Path:
    """/var/cache/ckpt-tests, made 0700; refused if a link, not root's, or open to others."""
    with contextlib.suppress(FileExistsError):
        CACHE_DIR.mkdir(mode=0o700)
    st = os.lstat(CACHE_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise RootError(f"{CACHE_DIR} must be a directory owned by root with mode 0700; remove it")
    return CACHE_DIR


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Builds take this lock, so a build or pack file found while holding it was left by a run
    that was killed: it is removed."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for orphan in (*directory.glob(".build-*"), *directory.glob(".pack-*")):
            if orphan.is_dir() and not orphan.is_symlink():
                remove_root(orphan)
            else:
                orphan.unlink()
        yield
    finally:
        os.close(fd)


def _cached(directory: Path, key: str) -> RootImage | None:
    meta, tarball = directory / f"{key}.json", directory / f"{key}.tar.zst"
    if not (meta.is_file() and tarball.is_file()):
        return None
    try:
        data = json.loads(meta.read_text())
        return RootImage(key, tarball, data["python"], data["built_seconds"])
    except (ValueError, KeyError):
        return None  # cut short by a killed run: built again


def _store(directory: Path, key: str, root: Path, python: str, seconds: float) -> RootImage:
    """Packs ROOT as KEY (written under a unique name, then renamed) and drops older images of
    the same family (base-* or prepared-*): the cache holds one of each."""
    family = key.split("-", 1)[0] + "-"
    for old in directory.glob(family + "*"):
        if not old.name.startswith(key + "."):
            old.unlink()
    tarball = directory / f"{key}.tar.zst"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pack-")
    try:
        with os.fdopen(fd, "wb") as out:
            _pack(root, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, tarball)
    except BaseException:
        os.unlink(tmp)
        raise
    meta = {"python": python, "built_seconds": round(seconds, 1),
            "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (directory / f"{key}.json").write_text(json.dumps(meta) + "\n")
    return RootImage(key, tarball, python, seconds)


def _pack(root: Path, out) -> None:  # noqa: ANN001
    tar = subprocess.Popen(["tar", "-C", str(root), *TAR_FLAGS, "-cf", "-", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    zstandard.ZstdCompressor(level=3, threads=-1).copy_stream(tar.stdout, out)
    if tar.wait() != 0:
        raise RootError(f"tar of {root} failed ({tar.returncode})")


def unpack(image: RootImage, dest: Path) -> None:
    tar = subprocess.Popen(["tar", "-C", str(dest), *TAR_FLAGS, "-xpf", "-"], stdin=subprocess.PIPE)
    assert tar.stdin is not None
    with image.tarball.open("rb") as src:
        zstandard.ZstdDecompressor().copy_stream(src, tar.stdin)
    tar.stdin.close()
    if tar.wait() != 0:
        raise RootError(f"unpacking {image.tarball} failed ({tar.returncode})")


# -- the images ---------------------------------------------------------------------------------

def host_mirror() -> str:
    """The Debian mirror the host's own sources name for SUITE (deb822 debian.sources)."""
    if HOST_SOURCES.is_file():
        for stanza in HOST_SOURCES.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith("#"))
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    return "http://deb.debian.org/debian"


def base_image() -> RootImage:
    """minbase SUITE with python3, as of this ISO week."""
    directory = cache_dir()
    year, week, _ = datetime.date.today().isocalendar()
    mirror = host_mirror()
    recipe = hashlib.sha256(f"{SUITE} minbase python3 {mirror}".encode()).hexdigest()[:12]
    key = f"base-{SUITE}-{year}w{week:02d}-{recipe}"
    with _locked(directory):
        image = _cached(directory, key)
        if image is not None:
            return image
        started = time.monotonic()
        build = Path(tempfile.mkdtemp(dir=directory, prefix=".build-"))
        try:
            root = build / "root"
            log = build / "debootstrap.log"
            with log.open("wb") as out:
                res = subprocess.run([tool("debootstrap") or "debootstrap", "--variant=minbase", "--include=python3",
                                      SUITE, str(root), mirror], stdout=out, stderr=subprocess.STDOUT, timeout=1200)
            if res.returncode != 0:
                raise RootError(f"debootstrap failed ({res.returncode}):\n{_tail(log.read_text())}")
            _debian_sources(root, mirror)
            python = python_version(root)
            return _store(directory, key, root, python, time.monotonic() - started)
        finally:
            remove_root(build)


def _debian_sources(root: Path, mirror: str) -> None:
    """The host's Debian sources (deb822, with its updates and security suites) as a machine of
    this kind has them, not debootstrap's one-line sources.list."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    target = root / "etc/apt/sources.list.d/debian.sources"
    if HOST_SOURCES.is_file() and f" {SUITE}" in HOST_SOURCES.read_text():
        shutil.copyfile(HOST_SOURCES, target)
    else:
        target.write_text(f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
                          "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")


def prepared_image(repo: Path) -> RootImage:
    """The base after `scripts/setup.sh` ran in it once (apt's packages; the checkout and its venv
    are dropped again). Built from the base whenever setup.sh or the base changes."""
    base = base_image()
    recipe = hashlib.sha256()
    for part in (repo / "scripts/setup.sh", Path(__file__), ENTER):  # setup, and how it is run here
        recipe.update(part.read_bytes())
    key = f"prepared-{base.key.removeprefix('base-')}-{recipe.hexdigest()[:12]}"
    directory = cache_dir()
    with _locked(directory):
        image = _cached(directory, key)
        if image is not None:
            return image
        started = time.monotonic()
        build = Path(tempfile.mkdtemp(dir=directory, prefix=".build-"))
        try:
            root = build / "root"
            root.mkdir()
            unpack(base, root)
            add_machine_settings(root)
            copy_checkout(repo, root)
            res = run_in_root(root, f"cd {CHECKOUT} && scripts/setup.sh", timeout=1800)
            if res.returncode != 0:
                raise RootError(f"scripts/setup.sh failed in a fresh {SUITE} root ({res.returncode}):\n"
                                f"{_tail(res.output)}")
            after = python_version(root)
            if after != base.python:
                raise RootError(f"scripts/setup.sh moved the root's /usr/bin/python3 from {base.python} to {after}")
            # What setup leaves outside the system: the checkout, its scratch and apt's downloads.
            shutil.rmtree(root / CHECKOUT.lstrip("/"))
            for deb in (root / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            for leftover in (root / "tmp").iterdir():
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
            return _store(directory, key, root, base.python, base.built_seconds + time.monotonic() - started)
        finally:
            remove_root(build)


# -- using a root -------------------------------------------------------------------------------

def add_machine_settings(root: Path) -> None:
    """What this machine has before anything is installed and no package owns: name resolution,
    its own apt settings (such as how its mirror's Release files are checked), and the CA
    certificates its network needs (a TLS proxy's). Copied in afresh for every run."""
    for name in ("etc/resolv.conf", "etc/hosts"):
        target = root / name
        target.unlink(missing_ok=True)  # may be a link in the root
        shutil.copyfile(Path("/") / name, target)
    apt_conf = Path("/etc/apt/apt.conf.d")
    for conf in sorted(apt_conf.iterdir()):
        if conf.is_file() and not _owned_by_package(conf):
            shutil.copyfile(conf, root / "etc/apt/apt.conf.d" / conf.name)
    if LOCAL_CAS.is_dir():
        target = root / LOCAL_CAS.relative_to("/")
        target.mkdir(parents=True, exist_ok=True)
        for cert in LOCAL_CAS.glob("*.crt"):
            shutil.copyfile(cert, target / cert.name)
    if CA_BUNDLE.is_file():
        target = root / CA_BUNDLE.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copyfile(CA_BUNDLE, target)


def _owned_by_package(path: Path) -> bool:
    return subprocess.run([tool("dpkg") or "dpkg", "-S", str(path)], capture_output=True).returncode == 0


def copy_checkout(repo: Path, root: Path) -> Path:
    """A clean checkout at CHECKOUT: the committed tree (git archive HEAD) with scripts/ as it is
    in the working tree. Nothing else of the working tree (no .venv, no caches)."""
    dest = root / CHECKOUT.lstrip("/")
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", "HEAD"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-C", str(dest), "-xf", "-"], input=archive, check=True)
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z", "scripts"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = repo / name
        if source.is_file():
            shutil.copy2(source, dest / name)
    return dest


def run_in_root(root: Path, command: str, timeout: float) -> RunResult:
    """Runs COMMAND (bash) as the only system in ROOT. Every runc container left in the root is
    deleted after it (their cgroups are the host's); every process and mount ends with it."""
    cleanup = 'rc=$?; for c in $(runc list -q 2>/dev/null); do runc delete --force "$c"; done; exit $rc'
    env = {"PATH": SBIN_PATH}
    if CA_BUNDLE.is_file():
        env["ROOT_PIP_CERT"] = str(CA_BUNDLE)  # pip's own CA list lacks the network's TLS proxy
    started = time.monotonic()
    res = subprocess.run([tool("unshare") or "unshare", "--mount", "--pid", "--fork", "--kill-child",
                          "--propagation", "private", "bash", str(ENTER), str(root), f"{command}\n{cleanup}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         timeout=timeout)
    return RunResult(res.returncode, res.stdout.decode(errors="replace"), time.monotonic() - started)


def python_version(root: Path) -> str:
    res = subprocess.run([tool("chroot") or "chroot", str(root), "/usr/bin/python3", "-c", PYTHON_VERSION],
                         capture_output=True, text=True, env={"PATH": SBIN_PATH})
    if res.returncode != 0:
        raise RootError(f"/usr/bin/python3 does not run in {root}: {res.stderr.strip()}")
    return res.stdout.strip()


def remove_root(path: Path) -> None:
    """Removes PATH, refusing while anything is mounted under it (it would reach the host's /dev
    or /sys): a root is only ever mounted in a namespace that is gone once its run ended."""
    prefix = str(path.resolve()).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as info:
        mounted = [line.split()[4] for line in info if (line.split()[4] + "/").startswith(prefix)]
    if mounted:
        raise RootError(f"still mounted under {path}, not removed: {mounted}")
    shutil.rmtree(path, ignore_errors=False)


@contextlib.contextmanager
def fresh_root(image: RootImage, parent: Path) -> Iterator[Path]:
    """A private copy of IMAGE under PARENT with this machine's settings, removed afterwards."""
    holder = Path(tempfile.mkdtemp(dir=parent, prefix="fresh-"))
    try:
        root = holder / "root"
        root.mkdir()
        unpack(image, root)
        add_machine_settings(root)
        yield root
    finally:
        remove_root(holder)


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])
