"""Helpers shared by the registry client tests (importable by other test suites too)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE.parents[1]), str(_HERE.parent), str(_HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from checkpointer.oci import mediatypes as mt  # noqa: E402
from checkpointer.oci.layout import Layout  # noqa: E402
from checkpointer.oci.model import Descriptor, Manifest  # noqa: E402
from checkpointer.registry import Credentials, Registry, RetryPolicy  # noqa: E402

FAST_RETRY = RetryPolicy(tries=5, base=0.01, cap=0.05, max_retry_after=5)
STREAM_THRESHOLD = 64 << 10   # blobs above this go by streamed PATCH in these tests


def client_for(server, **kw) -> Registry:
    """A Registry client for a RegistryServer or FakeRegistry, with its credentials and CA."""
    creds = Credentials(server.username, server.password) if getattr(server, "username", "") else Credentials()
    kw.setdefault("credentials", creds)
    kw.setdefault("retry", FAST_RETRY)
    return Registry(server.host, ca_dir=getattr(server, "cert_dir", None), **kw)


@dataclass
class Artifact:
    layout: Layout
    manifest: Manifest
    desc: Descriptor
    payloads: dict[str, bytes]   # digest -> bytes, for every blob


def make_artifact(root: Path, *, big: int = 300_000, seed: bytes = b"", subject: Descriptor | None = None,
                  artifact_type: str = mt.CHECKPOINT_ARTIFACT) -> Artifact:
    layout = Layout(root, create=True)
    payloads = {}
    config_data = b'{"created":"2026-01-01T00:00:00Z","seed":"' + seed.hex().encode() + b'"}'
    config = layout.put_bytes(config_data, mt.CHECKPOINT_CONFIG)
    payloads[config.digest] = config_data
    layers = []
    for data, media_type in ((b"small layer " + seed, mt.LAYER_TAR),
                             (seed + os.urandom(big), mt.LAYER_TAR_ZSTD)):
        desc = layout.put_bytes(data, media_type)
        payloads[desc.digest] = data
        layers.append(desc)
    manifest = Manifest(config, tuple(layers), annotations={"dev.ckpt.test": "yes"},
                        artifact_type=artifact_type, subject=subject)
    desc = layout.put_manifest(manifest)
    return Artifact(layout, manifest, desc, payloads)


def skopeo_raw(server, ref: str) -> bytes:
    """The raw manifest `ref` ("repo:tag") as skopeo, an independent client, sees it."""
    done = subprocess.run(["skopeo", "inspect", "--raw", *server.skopeo_args(), f"docker://{server.host}/{ref}"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout
