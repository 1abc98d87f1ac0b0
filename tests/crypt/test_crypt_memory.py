"""Encryption streams: a 64 MiB layer is encrypted and decrypted in a few MiB of memory. Measured
in a fresh interpreter (peak RSS, which counts OpenSSL's buffers too, not just Python's)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from crypt_helpers import KeySet

from checkpointer.format import pages, roles
from checkpointer.oci import annotations as ann
from checkpointer.oci import mediatypes as mt
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Manifest

REPO = Path(__file__).resolve().parents[2]
LAYER_BYTES = 64 << 20
MAX_GROWTH = 24 << 20  # holding the layer whole would take 64 MiB, plaintext and ciphertext 128

PROBE = r"""
import json, resource, sys
from pathlib import Path
from checkpointer.crypt import decrypt_manifest, encrypt_manifest, load_private_key, load_public_key
from checkpointer.oci.layout import Layout
from checkpointer.oci.model import Descriptor

root, digest, size, pub, key = sys.argv[1:]
layout = Layout(Path(root))
desc = Descriptor("application/vnd.oci.image.manifest.v1+json", digest, int(size))
recipient, private = load_public_key(pub), load_private_key(key)
layout.read_manifest(desc)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = peak()
enc = encrypt_manifest(layout, desc, [recipient])
after_encrypt = peak()
out = decrypt_manifest(layout, enc, [private])
print(json.dumps({"base": base, "encrypt": after_encrypt, "decrypt": peak(), "same": out.digest == desc.digest}))
"""


def test_64_mib_layer_streams(tmp_path: Path, keys: KeySet) -> None:
    layout = Layout(tmp_path / "store", create=True)
    with layout.writing() as w:
        block = os.urandom(1 << 20)
        for _ in range(LAYER_BYTES >> 20):
            w.write(block)
        big = w.commit(pages.MEDIA_TYPE, {ann.LAYER_ROLE: roles.PAGES})
    config = layout.put_bytes(b'{"schemaVersion":1}', mt.CHECKPOINT_CONFIG)
    small = layout.put_bytes(b"criu", mt.LAYER_TAR_ZSTD, {ann.LAYER_ROLE: roles.CRIU})
    desc = layout.put_manifest(Manifest(config, (small, big), artifact_type=mt.CHECKPOINT_ARTIFACT))

    run = subprocess.run([sys.executable, "-c", PROBE, str(layout.root), desc.digest, str(desc.size),
                          str(keys.rsa_pub), str(keys.rsa_key)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr
    peaks = json.loads(run.stdout)
    assert peaks["same"]
    assert peaks["encrypt"] - peaks["base"] < MAX_GROWTH, peaks
    assert peaks["decrypt"] - peaks["base"] < MAX_GROWTH, peaks
