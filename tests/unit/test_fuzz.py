"""Property and fuzz tests (hypothesis): whatever bytes come in, only ckpt's own errors go out,
nothing is written outside the target directory, and what parses prints back the same."""
from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from checkpointer.errors import CkptError, UsageError  # noqa: E402
from checkpointer.oci import mediatypes as mt  # noqa: E402
from checkpointer.oci.digest import sha256_digest  # noqa: E402
from checkpointer.oci.model import Descriptor, Index, Manifest, empty_config, media_type_of  # noqa: E402
from checkpointer.oci.tarball import CRIU_IMAGES, ROOTFS, unpack  # noqa: E402
from checkpointer.reference import ArchiveRef, LayoutRef, RegistryRef, parse  # noqa: E402
from unit.tarcraft import Sandbox, craft, entry  # noqa: E402

D1 = sha256_digest(b"one")
D2 = sha256_digest(b"two")
D3 = sha256_digest(b"three")
HEX = "0123456789abcdef" * 4


# -- tarball.unpack ----------------------------------------------------------------------------

# Mostly plausible names, so most archives get far enough to try the interesting things.
_PARTS = st.sampled_from(["a", "b", "c", "a", "b", "c", "..", ".", "", "OUT", "x" * 10])
_NAMES = st.lists(_PARTS, min_size=1, max_size=4).map("/".join)
_KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                          tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE,
                          tarfile.CONTTYPE])
_RARELY = st.integers(0, 9).map(lambda n: n == 0)
_MEMBER = st.tuples(_NAMES, _KINDS, _NAMES, st.sampled_from([0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o000]),
                    st.binary(max_size=40), _RARELY, _RARELY)


def _fuzz_archive(members: list[tuple], out: str) -> bytes:
    built = []
    for name, kind, link, mode, data, abs_name, abs_link in members:
        name = name.replace("OUT", "outside")
        link = link.replace("OUT", "outside")
        if abs_name:
            name = out + "/" + name
        if abs_link:
            link = out + "/" + link
        built.append(entry(name or "z", kind, data=data, linkname=link, mode=mode))
    return craft(*built)


def _run_in_sandbox(func: Callable[[Sandbox], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        b = Sandbox(Path(tmp))
        try:
            func(b)
        except CkptError:
            pass
        b.assert_untouched()
        for dirpath, dirnames, _ in os.walk(b.dest):   # let TemporaryDirectory clean up
            for d in dirnames:
                p = os.path.join(dirpath, d)
                if not os.path.islink(p):
                    os.chmod(p, 0o755)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=st.lists(_MEMBER, max_size=8), rootfs=st.booleans())
def test_fuzz_random_members_only_raise_ckpt_errors(members: list[tuple], rootfs: bool) -> None:
    def go(b: Sandbox) -> None:
        unpack(io.BytesIO(_fuzz_archive(members, str(b.outside))), b.dest, ROOTFS if rootfs else CRIU_IMAGES)
    _run_in_sandbox(go)


@settings(max_examples=150, deadline=None, database=None)
@given(flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=4),
       cut=st.integers(0, 4200), rootfs=st.booleans())
def test_fuzz_damaged_archives_only_raise_ckpt_errors(flips: list[tuple[int, int]], cut: int,
                                                      rootfs: bool) -> None:
    base = bytearray(craft(entry("d", tarfile.DIRTYPE), entry("d/f", data=b"x" * 600),
                           entry("l", tarfile.SYMTYPE, linkname="d/f"), entry("h", tarfile.LNKTYPE, linkname="d/f"),
                           entry("p" * 120 + "/q", data=b"long name")))
    for pos, xor in flips:
        if pos < len(base):
            base[pos] ^= xor

    def go(b: Sandbox) -> None:
        unpack(io.BytesIO(bytes(base[:cut])), b.dest, ROOTFS if rootfs else CRIU_IMAGES)
    _run_in_sandbox(go)


@settings(max_examples=100, deadline=None, database=None)
@given(data=st.binary(max_size=3000))
def test_fuzz_random_bytes_only_raise_ckpt_errors(data: bytes) -> None:
    def go(b: Sandbox) -> None:
        unpack(io.BytesIO(data), b.dest, ROOTFS)
    _run_in_sandbox(go)


# -- model -------------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2 ** 70) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from([D1, mt.OCI_MANIFEST, mt.OCI_INDEX, "schemaVersion", "layers"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["schemaVersion", "mediaType", "config", "layers", "manifests", "digest", "size",
                         "annotations", "subject", "artifactType", "platform", "x"]), children, max_size=6),
    max_leaves=25)


@settings(max_examples=300, deadline=None, database=None)
@given(doc=_JSON)
def test_fuzz_json_documents_only_raise_ckpt_errors(doc: Any) -> None:
    data = json.dumps(doc).encode()
    for parse_as in (Manifest.from_bytes, Index.from_bytes):
        try:
            parsed = parse_as(data)
        except CkptError:
            continue
        assert type(parsed).from_bytes(parsed.to_bytes()) == parsed
    media_type_of(data)


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.binary(max_size=200))
def test_fuzz_bytes_only_raise_ckpt_errors(data: bytes) -> None:
    for parse_as in (Manifest.from_bytes, Index.from_bytes):
        try:
            parse_as(data)
        except CkptError:
            pass
    assert media_type_of(data) is None or isinstance(media_type_of(data), str)


@settings(max_examples=200, deadline=None, database=None)
@given(layers=st.lists(st.tuples(st.sampled_from([D1, D2, D3]), st.integers(0, 2 ** 63),
                                 st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
                       max_size=4),
       annotations=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_fuzz_built_manifests_round_trip(layers: list[tuple[str, int, dict[str, str]]],
                                         annotations: dict[str, str]) -> None:
    manifest = Manifest(empty_config(), [Descriptor(mt.LAYER_TAR, d, s, a) for d, s, a in layers], annotations)
    data = manifest.to_bytes()
    assert Manifest.from_bytes(data) == manifest
    assert Manifest.from_bytes(data).to_bytes() == data


# -- reference.parse ---------------------------------------------------------------------------

_PIECES = st.sampled_from(list("abcXYZ019:/@.-_[]\n ") + ["sha256:", HEX, "oci:", ".tar", "localhost",
                                                             "docker.io/", "localhost:5000/"])
_REF_TEXT = st.lists(_PIECES, max_size=10).map("".join) | st.text(max_size=20)


@settings(max_examples=500, deadline=None, database=None)
@given(text=_REF_TEXT)
def test_fuzz_parse_only_raises_usage_errors_and_registry_refs_print_back(text: str) -> None:
    try:
        ref = parse(text)
    except UsageError:
        return
    assert "\n" not in str(ref) or isinstance(ref, (ArchiveRef, LayoutRef))
    if isinstance(ref, RegistryRef):
        assert parse(str(ref)) == ref
