"""containerd's legacy `ctr checkpoint` image: an index whose entries are blobs, not manifests.

    criu.checkpoint.criu.tar        -> checkpoint/ (a plain tar of the CRIU image directory)
    layer tar+gzip (the rw diff)    -> rootfs-diff.tar, as is (containerd's CRI does the same)
    checkpoint.config.v1+proto      -> spec.dump (a protobuf Any whose value is the spec's JSON)
    checkpoint.options.v1+proto     -> the CRIU options (an Any of runc's CheckpointOptions)
    index annotations               -> runtime (io.containerd.checkpoint.runtime), image name (ref.name)

Registries refuse such an index (containerd#8661), so it arrives through an OCI layout.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..errors import CorruptData
from ..format.read import unpack_layer
from ..oci import annotations as ann
from ..oci import mediatypes as mt
from ..oci.layout import Layout
from ..oci.model import Descriptor, Index
from . import keys
from .exportdir import POLICY

OPTIONS_KEY = "dev.ckpt.compat.containerd.options"  # carries the decoded options to config_for()
_RW_TYPES = (mt.LAYER_TAR_GZIP, mt.LAYER_TAR, keys.CTD_RW_TAR, "application/vnd.docker.image.rootfs.diff.tar.gzip")
# runc's CheckpointOptions (containerd runtime/v2/runc/options): field number -> ckpt's option name.
_OPTION_FIELDS = {2: "tcpEstablished", 3: "extUnixSk", 4: "shellJob", 5: "fileLocks"}
MAX_PROTO = 16 << 20


def is_legacy(index: Index) -> bool:
    return any(d.media_type == keys.CTD_CRIU_TAR for d in index.manifests)


def _find(index: Index, *media_types: str) -> Descriptor | None:
    return next((d for d in index.manifests if d.media_type in media_types), None)


def unpack(layout: Layout, index: Index, dest: Path) -> dict[str, str]:
    """Lay the legacy checkpoint out in `dest` as containerd's CRI archive would; returns annotations
    for the config (image name, runtime, CRIU options)."""
    criu = _find(index, keys.CTD_CRIU_TAR)
    spec_desc = _find(index, keys.CTD_CONFIG)
    if criu is None or spec_desc is None:
        raise CorruptData("the containerd checkpoint index lacks its CRIU tar or its spec (config.v1+proto)")
    (dest / keys.CHECKPOINT_DIR).mkdir(mode=0o700)
    unpack_layer(layout, replace(criu, media_type=mt.LAYER_TAR), dest / keys.CHECKPOINT_DIR, POLICY)
    spec = _any_value(_read(layout, spec_desc))
    try:
        spec_obj = json.loads(spec)
    except ValueError as exc:
        raise CorruptData(f"the containerd checkpoint's spec is not JSON: {exc}") from None
    (dest / keys.SPEC_DUMP).write_bytes(spec)
    if rw := _find(index, *_RW_TYPES):
        with layout.open_blob(rw) as reader, open(dest / keys.ROOTFS_DIFF, "wb") as out:
            while chunk := reader.read(1 << 20):
                out.write(chunk)
    runtime = index.annotations.get(keys.CTD_ANN_RUNTIME, "")
    if not runtime and (named := _find(index, keys.CTD_RUNTIME_NAME)):
        runtime = _read(layout, named).decode(errors="replace").strip()
    image = index.annotations.get(ann.REF_NAME, "")
    name = str(spec_obj.get("hostname") or "containerd-checkpoint") if isinstance(spec_obj, dict) else "checkpoint"
    config = {"id": name, "name": name, "rootfsImageName": image,
              "runtime": runtime.rsplit(".", 1)[-1] if runtime else "runc"}
    (dest / keys.CONFIG_DUMP).write_text(json.dumps(config, indent=2))
    out = {}
    if options := _find(index, keys.CTD_OPTIONS):
        out[OPTIONS_KEY] = _any_value(_read(layout, options)).hex()
    if base := _find(index, *mt.MANIFEST_TYPES):
        out[ann.BASE_DIGEST] = base.digest
    return out


def options_json(hex_value: str) -> dict[str, bool]:
    """runc's CheckpointOptions (protobuf, hex-encoded) as ckpt's criu.options JSON."""
    fields = _fields(bytes.fromhex(hex_value))
    return {name: bool(fields.get(number, [0])[-1]) for number, name in _OPTION_FIELDS.items()}


def _read(layout: Layout, desc: Descriptor) -> bytes:
    if desc.size > MAX_PROTO:
        raise CorruptData(f"blob {desc.digest} of the containerd checkpoint is too large ({desc.size} bytes)")
    return layout.read_blob(desc)


def _any_value(data: bytes) -> bytes:
    """The `value` (field 2) of a google.protobuf.Any."""
    values = _fields(data).get(2)
    if not values or not isinstance(values[-1], bytes):
        raise CorruptData("a containerd checkpoint blob is not a protobuf Any with a value")
    return values[-1]


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise CorruptData("truncated or overlong protobuf varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _fields(data: bytes) -> dict[int, list[int | bytes]]:
    """A protobuf message's fields by number (varints as int, length-delimited as bytes)."""
    out: dict[int, list[int | bytes]] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            length, i = _varint(data, i)
            if i + length > len(data):
                raise CorruptData("truncated protobuf field")
            value, i = data[i:i + length], i + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = data[i:i + size], i + size
        else:
            raise CorruptData(f"unsupported protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out
