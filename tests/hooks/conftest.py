"""Fixtures for the hook tests (helpers live in hook_helpers.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hook_helpers import Installed, install  # noqa: E402


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    return install(tmp_path)
