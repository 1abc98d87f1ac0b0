"""Referrers: the OCI 1.1 referrers API, and the tag schema (`sha256-<hex>` holding an index) that
clients maintain themselves on registries without it (distribution 2.8.2 among them)."""
from __future__ import annotations

import logging
import random
import time
from urllib.parse import urlencode

from ..errors import CorruptData, UsageError
from ..oci import mediatypes as mt
from ..oci.digest import hex_of
from ..oci.model import MAX_MANIFEST_BYTES, Descriptor, Index
from ..reference import RegistryRef
from .auth import scope
from .client import Registry
from .manifests import fetch_manifest
from .transport import read_capped

log = logging.getLogger(__name__)


def referrers_tag(subject_digest: str) -> str:
    return "sha256-" + hex_of(subject_digest)


def _tag_index(reg: Registry, repository: str, subject_digest: str) -> list[Descriptor]:
    try:
        got = fetch_manifest(reg, repository, referrers_tag(subject_digest), ok_missing=True)
        if got is None:
            return []
        return list(Index.from_bytes(got.data).manifests)
    except CorruptData as exc:  # the spec: a tag that is not a valid index means "no referrers"
        log.warning("referrers tag %s in %s is not a valid index (%s); treating it as empty",
                    referrers_tag(subject_digest), repository, exc)
        return []


VERIFY_ROUNDS = 6


def add_to_referrers_tag(reg: Registry, repository: str, subject_digest: str, entry: Descriptor) -> None:
    """Read the tag-schema index of `subject_digest`, add `entry` (once), and push it back.

    The registry offers no compare-and-swap, so two pushers racing can each write a list without
    the other's entry. After writing, this waits a moment, reads the tag again and, if `entry`
    was lost, merges it into what is there now: the lists converge on one holding every entry."""
    for _ in range(VERIFY_ROUNDS):
        current = _tag_index(reg, repository, subject_digest)
        if any(d.digest == entry.digest for d in current):
            return  # there already, or our write (or a merge of it) survived
        kept = [d for d in current if d.digest != entry.digest]
        index = Index((*kept, entry))
        resp = reg.request("PUT", f"/v2/{repository}/manifests/{referrers_tag(subject_digest)}",
                           scopes=(scope(repository, "pull", "push"),), what="updating the referrers tag",
                           ok=(200, 201), body=index.to_bytes(), headers={"Content-Type": mt.OCI_INDEX})
        resp.close()
        log.debug("referrers tag %s now lists %d manifests", referrers_tag(subject_digest), len(index.manifests))
        time.sleep(random.uniform(0.05, 0.25))  # let a racing pusher finish its write before checking
    log.warning("referrers tag %s kept changing; %s may be missing from it", referrers_tag(subject_digest),
                entry.digest)


def list_referrers(ref: RegistryRef, *, registry: Registry | None = None,
                   artifact_type: str | None = None) -> list[Descriptor]:
    """The manifests whose `subject` is `ref.digest`, optionally only those of `artifact_type`."""
    if not ref.digest:
        raise UsageError(f"{ref} names no digest", hint="referrers are listed for REPO@sha256:...")
    own = registry is None
    reg = registry or Registry(ref.api_host)
    try:
        path = f"/v2/{ref.repository}/referrers/{ref.digest}"
        if artifact_type:
            path += "?" + urlencode({"artifactType": artifact_type})
        resp = reg.request("GET", path, scopes=(scope(ref.repository, "pull"),), what="listing referrers",
                           headers={"Accept": mt.OCI_INDEX}, stream=True, ok=(200, 404))
        if resp.status_code == 404:
            resp.close()
            log.debug("registry %s has no referrers API; reading the tag schema", reg.host)
            found = _tag_index(reg, ref.repository, ref.digest)
        else:
            found = list(Index.from_bytes(read_capped(resp, MAX_MANIFEST_BYTES, "referrers index")).manifests)
        if artifact_type:  # also when the registry said it filtered: cheap, and guards a sloppy one
            found = [d for d in found if d.artifact_type == artifact_type]
        return found
    finally:
        if own:
            reg.close()
