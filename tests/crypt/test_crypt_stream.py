"""checkpointer.crypt.stream and .options: the cipher and the JSON documents, against the
definitions ocicrypt's implementation (Go) follows."""
from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from checkpointer.crypt import TamperedLayer, spec, stream
from checkpointer.crypt.options import PrivateOptions, PublicOptions

KEY = bytes(range(32))
B64KEY = base64.b64encode(KEY)
NONCE = b'"cipheroptions":{"nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}'


def reference_ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """CTR as Go's cipher.NewCTR defines it: the whole 16-byte block is one big-endian counter."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    start = int.from_bytes(nonce, "big")
    blocks = b"".join(((start + i) % (1 << 128)).to_bytes(16, "big") for i in range(len(data) // 16 + 1))
    keystream = ecb.update(blocks)
    return bytes(a ^ b for a, b in zip(data, keystream))


@pytest.mark.parametrize("nonce", [bytes(16), b"\x00" * 8 + b"\xff" * 8, b"\xff" * 16, bytes(range(16))])
def test_counter_carries_through_all_128_bits(nonce: bytes) -> None:
    data = bytes(range(256)) * 3 + b"tail"
    out = io.BytesIO()
    mac = stream.encrypt(io.BytesIO(data), out, KEY, nonce)
    assert out.getvalue() == reference_ctr(KEY, nonce, data)
    check = hmac.HMAC(KEY, hashes.SHA256())
    check.update(out.getvalue())
    assert mac == check.finalize()  # HMAC over the ciphertext, keyed with the layer key


def test_decrypt_reports_hmac_and_digest() -> None:
    data = b"x" * (stream.CHUNK * 2 + 5)
    nonce = bytes(range(16))
    ciphertext = io.BytesIO()
    mac = stream.encrypt(io.BytesIO(data), ciphertext, KEY, nonce)
    plain = io.BytesIO()
    authentic, digest = stream.decrypt(io.BytesIO(ciphertext.getvalue()), plain, KEY, nonce, mac)
    assert authentic and plain.getvalue() == data
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    flipped = bytearray(ciphertext.getvalue())
    flipped[-1] ^= 1
    authentic, _ = stream.decrypt(io.BytesIO(bytes(flipped)), stream.Discard(), KEY, nonce, mac)
    assert not authentic


def test_options_in_ocicrypt_json() -> None:
    private = PrivateOptions(KEY, bytes(16), "sha256:" + "a" * 64)
    doc = json.loads(private.to_bytes())
    assert doc == {"symkey": base64.b64encode(KEY).decode(), "digest": "sha256:" + "a" * 64,
                   "cipheroptions": {"nonce": "AAAAAAAAAAAAAAAAAAAAAA=="}}
    assert PrivateOptions.from_bytes(private.to_bytes(), "layer") == private
    assert "symkey" not in repr(private) and repr(KEY) not in repr(private)
    # What skopeo 1.9.3 writes (extra fields such as previouslayersdigest are ignored).
    go = b'{"symkey":"' + base64.b64encode(KEY) + b'","digest":"sha256:' + b"b" * 64 + \
         b'","cipheroptions":{"nonce":"AAAAAAAAAAAAAAAAAAAAAA=="},"previouslayersdigest":""}'
    assert PrivateOptions.from_bytes(go, "layer").digest == "sha256:" + "b" * 64

    public = PublicOptions(spec.CIPHER, b"\x07" * 32)
    assert base64.b64decode(public.to_annotation()) == \
        b'{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"' + base64.b64encode(b"\x07" * 32) + b'","cipheroptions":{}}'
    assert PublicOptions.from_annotation(public.to_annotation(), "layer") == public


@pytest.mark.parametrize("doc, match", [
    (b"{", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (b'{"symkey":"AAAA","digest":"sha256:' + b"0" * 64 + b'",' + NONCE + b"}", "symkey has 3 bytes"),
    (b'{"symkey":"' + B64KEY + b'","digest":"",' + NONCE + b"}", "do not record"),
    (b'{"symkey":"' + B64KEY + b'","digest":"md5:x",' + NONCE + b"}", "invalid digest"),
    (b'{"symkey":"' + B64KEY + b'","digest":"sha256:' + b"0" * 64 + b'"}', "no cipher options"),
])
def test_bad_private_options(doc: bytes, match: str) -> None:
    with pytest.raises(TamperedLayer, match=match):
        PrivateOptions.from_bytes(doc, "layer")
