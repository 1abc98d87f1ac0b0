"""Fixtures of the crypt tests: one set of openssl-made keys per session, a checkpoint per test."""
from __future__ import annotations

from pathlib import Path

import pytest
from crypt_helpers import KeySet, make_checkpoint, make_keys

from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def store(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "store", create=True)


@pytest.fixture
def checkpoint(store: Layout) -> tuple[Descriptor, dict[str, bytes]]:
    return make_checkpoint(store)
