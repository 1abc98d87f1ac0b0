"""Four pushers add referrers of one subject at the same time on a registry without the referrers
API: the tag-schema index ends up listing all four."""
from __future__ import annotations

import threading

from checkpointer.oci import mediatypes as mt
from checkpointer.oci.digest import sha256_digest
from checkpointer.oci.model import Descriptor
from checkpointer.reference import RegistryRef
from checkpointer.registry import Registry, list_referrers, push
from checkpointer.registry.referrers import add_to_referrers_tag
from registry_helpers import make_artifact


def test_racing_referrer_updates_converge(registry_none, tmp_path):
    subject = sha256_digest(b"the base image manifest")
    entries = []
    with Registry(registry_none.host) as reg:  # the index may only name manifests the registry has
        for i in range(4):
            art = make_artifact(tmp_path / f"a{i}", big=1000, seed=f"{i}".encode())
            push(art.layout, art.desc, RegistryRef(registry_none.host, "race/app", f"c{i}"), registry=reg)
            entries.append(Descriptor(mt.OCI_MANIFEST, art.desc.digest, art.desc.size,
                                      artifact_type=mt.CHECKPOINT_ARTIFACT))
    start = threading.Barrier(len(entries))
    errors: list[BaseException] = []

    def pusher(entry: Descriptor) -> None:
        try:
            with Registry(registry_none.host) as reg:
                start.wait()
                add_to_referrers_tag(reg, "race/app", subject, entry)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pusher, args=(e,)) for e in entries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Registry(registry_none.host) as reg:
        listed = list_referrers(RegistryRef(registry_none.host, "race/app", None, subject), registry=reg)
    assert {d.digest for d in listed} == {e.digest for e in entries}
