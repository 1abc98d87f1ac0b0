"""ckpt decodes CRIU's pagemap images itself (on every save's critical path): it must read them
exactly as CRIU's own pycriu does, and refuse a damaged one with CorruptData, nothing else."""
from __future__ import annotations

import io

import pytest
from hypothesis import given, settings, strategies as st

from checkpointer.criu.images import read_pagemap
from checkpointer.errors import CorruptData

pycriu_images = pytest.importorskip("pycriu.images")

_OPTIONAL = {"flags": st.integers(0, 15), "in_parent": st.booleans()}
# CRIU 4.2 writes the page count as a uint64 in nr_pages (field 5) and 0 in compat_nr_pages (field
# 2); older CRIUs write only field 2. Images of both kinds are read, also mixed in one file.
_CRIU_4_2 = st.fixed_dictionaries({"vaddr": st.integers(0, (1 << 64) - 1), "compat_nr_pages": st.just(0),
                                   "nr_pages": st.integers(0, (1 << 64) - 1)}, optional=_OPTIONAL)
_OLDER = st.fixed_dictionaries({"vaddr": st.integers(0, (1 << 64) - 1),
                                "compat_nr_pages": st.integers(0, (1 << 32) - 1)}, optional=_OPTIONAL)
ENTRIES = st.lists(st.one_of(_CRIU_4_2, _OLDER), max_size=40)


def _image(pages_id: int, entries: list[dict]) -> bytes:
    out = io.BytesIO()
    pycriu_images.dump({"magic": "PAGEMAP", "entries": [{"pages_id": pages_id}, *entries]}, out)
    return out.getvalue()


def _pycriu_regions(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """The present regions as CRIU's own library decodes them (PE_PRESENT = 4, the default), with
    CRIU's rule for the count: nr_pages when set, else compat_nr_pages."""
    head, *entries = pycriu_images.load(io.BytesIO(data))["entries"]
    return head["pages_id"], [(e["vaddr"], e.get("nr_pages", e["compat_nr_pages"])) for e in entries
                              if e.get("flags", 4) & 4]


@settings(max_examples=150, deadline=None)
@given(pages_id=st.integers(0, (1 << 32) - 1), entries=ENTRIES)
def test_reads_what_pycriu_reads(tmp_path_factory, pages_id, entries):
    data = _image(pages_id, entries)
    path = tmp_path_factory.mktemp("pm") / "pagemap-1.img"
    path.write_bytes(data)
    assert read_pagemap(path) == _pycriu_regions(data)


@settings(max_examples=200, deadline=None)
@given(entries=ENTRIES.filter(bool), cut=st.integers(1, 1 << 20), noise=st.binary(max_size=64))
def test_a_damaged_pagemap_is_corrupt_data(tmp_path_factory, entries, cut, noise):
    data = _image(1, entries)
    path = tmp_path_factory.mktemp("pm") / "pagemap-1.img"
    for damaged in (data[:max(1, len(data) - cut % len(data))], data + noise, data[:8] + noise):
        path.write_bytes(damaged)
        try:
            header, regions = read_pagemap(path)
        except CorruptData:
            continue
        assert isinstance(header, int) and all(isinstance(v, int) and isinstance(n, int) for v, n in regions)


def test_not_a_pagemap(tmp_path):
    path = tmp_path / "pagemap-1.img"
    path.write_bytes(b"\x19\x43\x56\x54" + b"\0" * 12)
    with pytest.raises(CorruptData, match="not a pagemap"):
        read_pagemap(path)
    with pytest.raises(CorruptData, match="missing"):
        read_pagemap(tmp_path / "pagemap-2.img")
