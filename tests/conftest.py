"""Shared fixtures. End-to-end tests need root, CRIU, runc and busybox: in CI they must run,
so a skipped e2e test is turned into a failure when CI is set (see pytest_runtest_makereport)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("e2e") and os.environ.get("CI"):
        report.outcome = "failed"
        report.longrepr = f"e2e test skipped in CI, which must run it: {report.longrepr}"


def pytest_collection_modifyitems(items):  # noqa: ANN001, ANN201
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def require_e2e() -> None:
    missing = [tool for tool in ("criu", "runc", "gcc") if not shutil.which(tool)]
    if not Path("/bin/busybox").exists():
        missing.append("busybox-static")
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root")
    if missing:
        pytest.skip(f"end-to-end tests need {', '.join(missing)} (scripts/setup.sh --test installs them)")


@pytest.fixture(scope="session")
def bundle_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_e2e()
    path = tmp_path_factory.mktemp("template") / "bundle"
    subprocess.run([sys.executable, str(REPO / "samples" / "make_bundle.py"), str(path), "--mem", "16",
                    "--interval-ms", "50", "--verify-every", "4"], check=True)
    return path


@pytest.fixture
def runc_root(tmp_path: Path):  # noqa: ANN201
    require_e2e()
    root = tmp_path / "runc-root"
    root.mkdir()
    yield root
    # Remove every container this test left, by id, under its private runc root.
    listing = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True)
    for cid in listing.stdout.split():
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True)


@pytest.fixture
def ckpt_home(tmp_path: Path) -> Path:
    home = tmp_path / "ckpt-home"
    home.mkdir()
    return home


@pytest.fixture
def container_name() -> str:
    return f"ckpt-test-{uuid.uuid4().hex[:10]}"
