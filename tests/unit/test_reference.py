"""checkpointer.reference: the REF grammar every command accepts."""
from __future__ import annotations

from pathlib import Path

import pytest

from checkpointer.errors import UsageError
from checkpointer.reference import ArchiveRef, LayoutRef, RegistryRef, StoreRef, parse

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX


@pytest.mark.parametrize("text, expected", [
    ("web", StoreRef("web", "latest", None)),
    ("web:v1", StoreRef("web", "v1", None)),
    ("web:V1.2_rc-3", StoreRef("web", "V1.2_rc-3", None)),
    ("web:" + "t" * 128, StoreRef("web", "t" * 128, None)),
    (f"web@{DIGEST}", StoreRef("web", "latest", DIGEST)),
    (f"web:v1@{DIGEST}", StoreRef("web", "v1", DIGEST)),
    ("my-app_2.x", StoreRef("my-app_2.x", "latest", None)),
    ("a__b--c", StoreRef("a__b--c", "latest", None)),
    ("0", StoreRef("0", "latest", None)),
])
def test_store_references(text: str, expected: StoreRef) -> None:
    assert parse(text) == expected


def test_store_reference_names() -> None:
    assert parse("web").ref_name == "web:latest"        # type: ignore[union-attr]
    assert str(parse("web:v1")) == "web:v1"
    assert str(parse(f"web@{DIGEST}")) == f"web@{DIGEST}"


@pytest.mark.parametrize("text, host, repository, tag, digest", [
    ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None),
    ("localhost/x", "localhost", "x", "latest", None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None),
    ("[::1]:5000/x:y", "[::1]:5000", "x", "y", None),
    ("[::1]/x", "[::1]", "x", "latest", None),
    ("[fe80::1]:5000/x", "[fe80::1]:5000", "x", "latest", None),
    (f"registry.example.com/team/app@{DIGEST}", "registry.example.com", "team/app", None, DIGEST),
    (f"registry.example.com/team/app:v2@{DIGEST}", "registry.example.com", "team/app", "v2", DIGEST),
    ("registry.example.com:443/a/b/c/d:1.0", "registry.example.com:443", "a/b/c/d", "1.0", None),
    ("ubuntu/x", "docker.io", "ubuntu/x", "latest", None),
    ("ubuntu/x:22.04", "docker.io", "ubuntu/x", "22.04", None),
    ("docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", None),
    ("docker.io/ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
    ("docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", None),
    ("ghcr.io/o/r", "ghcr.io", "o/r", "latest", None),
])
def test_registry_references(text: str, host: str, repository: str, tag: str | None, digest: str | None) -> None:
    assert parse(text) == RegistryRef(host, repository, tag, digest)


def test_registry_reference_helpers() -> None:
    by_tag = parse("localhost:5000/a/b:t")
    assert isinstance(by_tag, RegistryRef)
    assert by_tag.reference == "t"
    assert by_tag.api_host == "localhost:5000"
    assert str(by_tag) == "localhost:5000/a/b:t"
    pinned = parse(f"registry.example.com/team/app@{DIGEST}")
    assert isinstance(pinned, RegistryRef)
    assert pinned.reference == DIGEST
    assert str(pinned) == f"registry.example.com/team/app@{DIGEST}"
    both = parse(f"registry.example.com/team/app:v2@{DIGEST}")
    assert isinstance(both, RegistryRef)
    assert both.reference == DIGEST
    assert str(both) == f"registry.example.com/team/app:v2@{DIGEST}"
    hub = parse("ubuntu/x")
    assert isinstance(hub, RegistryRef)
    assert hub.api_host == "registry-1.docker.io"
    assert str(hub) == "docker.io/ubuntu/x:latest"
    assert by_tag.with_reference(digest=DIGEST) == RegistryRef("localhost:5000", "a/b", None, DIGEST)
    assert by_tag.with_reference(tag="u") == RegistryRef("localhost:5000", "a/b", "u", None)
    assert RegistryRef("h", "r", None, None).reference == "latest"


@pytest.mark.parametrize("text", ["localhost:5000/a/b:t", f"registry.example.com/team/app@{DIGEST}",
                                  "docker.io/library/ubuntu:22.04", "[::1]:5000/x:y"])
def test_registry_references_print_back_to_themselves(text: str) -> None:
    assert str(parse(text)) == text
    assert parse(str(parse(text))) == parse(text)


@pytest.mark.parametrize("text, path, tag", [
    ("oci:/p/x:tag", "/p/x", "tag"),
    ("oci:/p/x", "/p/x", "latest"),
    ("oci:relative/dir:v1.0", "relative/dir", "v1.0"),
    ("oci:.", ".", "latest"),
])
def test_layout_references(text: str, path: str, tag: str) -> None:
    ref = parse(text)
    assert ref == LayoutRef(Path(path), tag)
    assert str(ref) == f"oci:{path}:{tag}"


@pytest.mark.parametrize("text", ["ck.tar", "ck.tar.zst", "ck.tar.zstd", "ck.tar.gz", "ck.tgz",
                                  "/abs/dir/ck.tar", "./rel/Upper Case.tar.gz", "../x.tar.zst"])
def test_archive_references(text: str) -> None:
    ref = parse(text)
    assert ref == ArchiveRef(Path(text))
    assert str(ref) == str(Path(text))


@pytest.mark.parametrize("text", [
    "",                                 # empty
    "Web", "WEB:v1", "web App",         # bad local names
    "-web", "web-", "web.", "_web", "a___b", "a..b",
    "docker.io/Ubuntu", "localhost:5000/A/b", "ubuntu/X",  # upper-case repositories
    "registry.example.com/team//app", "x/", "/x", "registry.example.com/", "localhost:5000/",
    "web:", "web:-bad", "web:.bad", "web:" + "t" * 129, "web:v 1", "web:v/1", "web:ü",  # bad tags
    "localhost:5000/x:", "localhost:5000/x:-y",
    "web@", "web@sha256:abc", f"web@sha256:{HEX.upper()}", f"web@md5:{HEX}", f"web@sha512:{HEX}{HEX}",
    f"web@{DIGEST}0", f"web@{DIGEST}@{DIGEST}", "web@latest",       # bad digests
    "oci:", "oci::tag", "oci:/p:bad tag", "oci:/p:-x",             # bad layout references
    "bad_host.com/x", "bad!host:5000/x", "[::1/x", "host:port/x",   # bad hosts
    "web\n", "web:v1\n", f"web@{DIGEST}\n", "localhost:5000/x\n", "localhost:5000/x:t\n", "oci:/p:t\n",
    "docker.io/ubuntu\n", "web\x00",
])
def test_bad_references_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse(text)
