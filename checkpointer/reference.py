"""The REF grammar every command accepts (also shown by `ckpt --help`):

    NAME[:TAG] | NAME@sha256:HEX            the local store ($CKPT_HOME)
    HOST[:PORT]/REPO[:TAG|@sha256:HEX]      a registry (docker rules: a first part with '.' or ':',
                                            or 'localhost', or '[v6]' is a host; else docker.io)
    oci:PATH[:TAG]                          an OCI image-layout directory
    PATH.tar | PATH.tar.zst | PATH.tar.gz   a checkpoint archive (Podman/CRI-O/kubelet layout)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

DEFAULT_TAG = "latest"
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

# Used with fullmatch only: `$` also matches before a final newline, which would let "web:v1\n" in.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?")
ARCHIVE_SUFFIXES = (".tar", ".tar.zst", ".tar.zstd", ".tar.gz", ".tgz")


@dataclass(frozen=True, slots=True)
class StoreRef:
    name: str
    tag: str = DEFAULT_TAG
    digest: str | None = None

    @property
    def ref_name(self) -> str:
        return f"{self.name}:{self.tag}"

    def __str__(self) -> str:
        return f"{self.name}@{self.digest}" if self.digest else self.ref_name


@dataclass(frozen=True, slots=True)
class RegistryRef:
    host: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/ in the URL: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    def with_reference(self, *, tag: str | None = None, digest: str | None = None) -> RegistryRef:
        return RegistryRef(self.host, self.repository, tag, digest)

    def __str__(self) -> str:
        base = f"{self.host}/{self.repository}"
        if self.digest:
            return f"{base}@{self.digest}" if not self.tag else f"{base}:{self.tag}@{self.digest}"
        return f"{base}:{self.tag or DEFAULT_TAG}"


@dataclass(frozen=True, slots=True)
class LayoutRef:
    path: Path
    tag: str = DEFAULT_TAG

    def __str__(self) -> str:
        return f"oci:{self.path}:{self.tag}"


@dataclass(frozen=True, slots=True)
class ArchiveRef:
    path: Path

    def __str__(self) -> str:
        return str(self.path)


Ref = StoreRef | RegistryRef | LayoutRef | ArchiveRef


def _split_tag_digest(rest: str, text: str) -> tuple[str, str | None, str | None]:
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise UsageError(f"bad digest in {text!r}", hint="a digest looks like sha256:<64 hex digits>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise UsageError(f"bad tag {tag!r} in {text!r}",
                             hint="tags are letters, digits, '_', '.', '-' (up to 128, not starting with . or -)")
    return rest, tag, digest


def parse(text: str) -> Ref:
    if not text:
        raise UsageError("empty reference")
    if text.startswith("oci:"):
        body = text[4:]
        path, _, tag = body.partition(":")
        if not path:
            raise UsageError(f"no path in {text!r}", hint="write oci:/path/to/layout[:tag]")
        if tag and not _TAG.fullmatch(tag):
            raise UsageError(f"bad tag {tag!r} in {text!r}")
        return LayoutRef(Path(path), tag or DEFAULT_TAG)
    if text.endswith(ARCHIVE_SUFFIXES):
        return ArchiveRef(Path(text))
    name, tag, digest = _split_tag_digest(text, text)
    if "/" not in name:
        if not _REPO.fullmatch(name):
            raise UsageError(f"bad checkpoint name {name!r}",
                             hint="names are lower-case letters, digits and separators . _ -")
        return StoreRef(name, tag or DEFAULT_TAG, digest)
    first, rest = name.split("/", 1)
    if "." in first or ":" in first or first == "localhost" or first.startswith("["):
        if not _HOST.fullmatch(first):
            raise UsageError(f"bad registry host {first!r} in {text!r}")
        host, repository = first, rest
    else:
        host, repository = DOCKER_HUB, name
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not _REPO.fullmatch(repository):
        raise UsageError(f"bad repository {repository!r} in {text!r}",
                         hint="repositories are lower-case path components separated by '/'")
    return RegistryRef(host, repository, tag if tag or digest else DEFAULT_TAG, digest)
