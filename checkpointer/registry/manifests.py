"""GET a manifest or index with the right Accept header, capped and digest-verified."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CorruptData
from ..oci import mediatypes as mt
from ..oci.digest import sha256_digest
from ..oci.model import MAX_MANIFEST_BYTES, media_type_of
from .auth import scope
from .client import Registry
from .transport import read_capped

ACCEPT = ", ".join((mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST))


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    media_type: str
    digest: str


def fetch_manifest(reg: Registry, repository: str, reference: str, *, expected: str | None = None,
                   ok_missing: bool = False) -> Fetched | None:
    """The manifest `reference` (tag or digest) of `repository`. Its digest must equal `expected`,
    or `reference` when that is a digest, or else the Docker-Content-Digest the registry sent.
    With `ok_missing`, a 404 gives None."""
    what = f"manifest {repository}:{reference}" if ":" not in reference else f"manifest {repository}@{reference}"
    resp = reg.request("GET", f"/v2/{repository}/manifests/{reference}", scopes=(scope(repository, "pull"),),
                       what=f"fetching {what}", headers={"Accept": ACCEPT}, stream=True,
                       ok=(200, 404) if ok_missing else (200,))
    if resp.status_code == 404:
        resp.close()
        return None
    data = read_capped(resp, MAX_MANIFEST_BYTES, what)
    digest = sha256_digest(data)
    if expected is None and reference.startswith("sha256:"):
        expected = reference
    if expected is None:
        header = resp.headers.get("Docker-Content-Digest", "")
        expected = header if header.startswith("sha256:") else None
    if expected is not None and digest != expected:
        raise CorruptData(f"{what} from {reg.host} does not match its digest: expected {expected}, got {digest}",
                          hint="the registry or something between it and you damaged the data; try again")
    content_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
    declared = media_type_of(data)
    media_type = declared or content_type
    if media_type not in mt.MANIFEST_TYPES + mt.INDEX_TYPES:
        raise CorruptData(f"{what} has an unsupported media type {media_type!r}",
                          hint="ckpt reads OCI and docker v2 manifests and indexes")
    return Fetched(data, media_type, digest)
