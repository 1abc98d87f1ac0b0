"""Blobs handed to the early uploader with their bytes go from memory, up to a bound; past it they
are read back from the layout, so memory does not grow with the checkpoint."""
from __future__ import annotations

import pytest

from checkpointer.errors import CkptError
from checkpointer.reference import RegistryRef
from checkpointer.registry import BlobUploader
from registry_helpers import client_for, make_artifact


def _big_layer(art):
    return max(art.manifest.layers, key=lambda d: d.size)


def test_bytes_at_hand_are_sent_from_memory(registry_none, tmp_path, monkeypatch):
    art = make_artifact(tmp_path / "art", big=200_000)
    big = _big_layer(art)
    monkeypatch.setattr(BlobUploader, "HOLD", big.size)
    dest = RegistryRef(registry_none.host, "early/blobs", "v1")
    with client_for(registry_none) as reg:
        uploader = BlobUploader(art.layout, dest, registry=reg, jobs=1)
        uploader.submit(big, art.payloads[big.digest])
        art.layout.blob_path(big.digest).unlink()  # only the bytes in memory can send it now
        uploader.finish()
        assert (dest.repository, big.digest) in reg.uploaded


def test_past_the_bound_bytes_are_read_back_from_the_layout(registry_none, tmp_path, monkeypatch):
    art = make_artifact(tmp_path / "art", big=200_000)
    big = _big_layer(art)
    monkeypatch.setattr(BlobUploader, "HOLD", big.size - 1)
    dest = RegistryRef(registry_none.host, "early/bound", "v1")
    with client_for(registry_none) as reg:
        uploader = BlobUploader(art.layout, dest, registry=reg, jobs=1)
        uploader.submit(big, art.payloads[big.digest])  # not held: over the bound
        art.layout.blob_path(big.digest).unlink()
        with pytest.raises(CkptError):  # nothing left to read it from
            uploader.finish()
        assert (dest.repository, big.digest) not in reg.uploaded
