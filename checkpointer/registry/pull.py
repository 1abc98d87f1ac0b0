"""Pull a manifest and its blobs from a registry into a Layout, verifying every digest.

Blobs are written through `Layout.writer()` and committed only if their digest matches, so a damaged
or hostile registry can make a pull fail but never plant bad bytes. A download cut short resumes
with a Range request; a server that ignores Range, or answers 416 (distribution 2.8.2 then sends a
bogus Content-Length, so its body is never read by length), makes it start over."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable

import requests
import urllib3

from ..errors import CorruptData, NotFound, Unreachable
from ..host import oci_platform
from ..oci import mediatypes as mt
from ..oci.layout import BlobWriter, Layout
from ..oci.model import Descriptor, Index, Manifest
from ..progress import OnProgress
from ..reference import RegistryRef
from ..retry import RetryPolicy
from .auth import scope
from .client import Registry
from .counter import Counter
from .manifests import Fetched, fetch_manifest
from .parallel import run_parallel

log = logging.getLogger(__name__)

MAX_RESUMES = 5
# Pauses before resuming a cut download: up to 0.1 s after the first cut, doubling, at most 2 s.
RESUME_POLICY = RetryPolicy(tries=MAX_RESUMES + 1, base=0.1, cap=2.0)
CHUNK = 1 << 20
KEEP_LIMIT = 16 << 20  # blobs up to this size (pages chunks) are also handed over in memory
_CUT_OFF = (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, urllib3.exceptions.HTTPError,
            ConnectionError, TimeoutError)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def _platform_str(desc: Descriptor) -> str:
    p = desc.platform or {}
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return text + (f"/{p['variant']}" if p.get("variant") else "")


def choose_manifest(index: Index, wanted: str | None, what: str) -> Descriptor:
    """The entry of `index` for platform `wanted` ("os/arch[/variant]"; default: this host). An index
    with a single manifest (an artifact) gives that one, whatever its platform."""
    manifests = [d for d in index.manifests if d.media_type in mt.MANIFEST_TYPES]
    if wanted is None and len(manifests) == 1:
        return manifests[0]
    target = wanted or oci_platform()
    for desc in manifests:
        have = _platform_str(desc)
        if have == target or (target.count("/") == 1 and have.rsplit("/", 1)[0] == target
                              and have.count("/") == 2) or (have.count("/") == 1 and target.startswith(have + "/")):
            return desc
    offered = ", ".join(sorted({_platform_str(d) for d in manifests})) or "none"
    raise NotFound(f"{what} has no manifest for platform {target} (it has: {offered})",
                   hint="choose one of those with --platform")


class _Download:
    def __init__(self, reg: Registry, layout: Layout, repository: str, counter: Counter, *, keep: bool) -> None:
        self.reg, self.layout, self.repo, self.counter = reg, layout, repository, counter
        self.keep = keep

    def run(self, desc: Descriptor) -> bytes | None:
        """Download `desc` into the layout; its bytes too, once verified, if it is small and `keep`."""
        path = f"/v2/{self.repo}/blobs/{desc.digest}"
        writer: BlobWriter = self.layout.writer()
        kept: list[bytes] | None = [] if self.keep and desc.size <= KEEP_LIMIT else None
        committed = False
        # Every failed try counts against MAX_RESUMES; only a connection cut pauses before the next.
        resumes = RESUME_POLICY.start(sleep=self.reg.transport.sleep, clock=self.reg.transport.clock)
        try:
            while True:
                headers = {"Range": f"bytes={writer.size}-"} if writer.size else {}
                resp = self.reg.request("GET", path, scopes=(scope(self.repo, "pull"),), stream=True,
                                        what=f"downloading blob {desc.digest}", headers=headers,
                                        ok=(200, 206, 416))
                with resp:
                    if resp.status_code == 416 or (resp.status_code == 200 and writer.size) \
                            or (resp.status_code == 206 and not self._range_ok(resp, writer.size)):
                        # no usable partial answer: throw away what we have and start over
                        log.info("blob %s: HTTP %d to a Range request; starting over", desc.digest, resp.status_code)
                        writer = self._restart(writer)
                        if kept is not None:
                            kept.clear()
                        if resp.status_code != 200:
                            if resumes.failed() is None:
                                raise CorruptData(f"blob {desc.digest}: the registry keeps refusing Range requests")
                            continue
                    try:
                        self._copy(resp, writer, desc, kept)
                    except _CUT_OFF as exc:
                        pause = resumes.failed()
                        if pause is None:
                            raise Unreachable(f"download of blob {desc.digest} kept breaking off: {exc}",
                                              hint="check the network and try again") from None
                        log.info("blob %s cut off at %d of %d bytes (%s); resuming in %.2f s", desc.digest,
                                 writer.size, desc.size, type(exc).__name__, pause)
                        resumes.pause(pause)
                        continue
                if writer.size == desc.size:
                    writer.commit(desc.media_type, expected=desc.digest)  # the digest check
                    committed = True
                    return b"".join(kept) if kept is not None else None
                # the stream ended early without an error: resume
                if resumes.failed() is None:
                    raise CorruptData(f"blob {desc.digest} is truncated: {writer.size} of {desc.size} bytes")
        finally:
            if not committed:
                writer.abort()

    def _range_ok(self, resp: requests.Response, offset: int) -> bool:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        return m is not None and int(m.group(1)) == offset

    def _restart(self, writer: BlobWriter) -> BlobWriter:
        self.counter.add(-writer.size)
        writer.abort()
        return self.layout.writer()

    def _copy(self, resp: requests.Response, writer: BlobWriter, desc: Descriptor, kept: list[bytes] | None) -> None:
        # read1: whatever has arrived, so a connection cut keeps every byte received before it
        while chunk := resp.raw.read1(CHUNK, decode_content=True):
            if writer.size + len(chunk) > desc.size:
                raise CorruptData(f"blob {desc.digest} is longer than its {desc.size} bytes")
            writer.write(chunk)
            if kept is not None:
                kept.append(chunk)
            self.counter.add(len(chunk), desc.digest)


def _resolve(reg: Registry, src: RegistryRef, wanted: str | None) -> Fetched:
    got = fetch_manifest(reg, src.repository, src.reference, expected=src.digest)
    assert got is not None
    if got.media_type not in mt.INDEX_TYPES:
        return got
    chosen = choose_manifest(Index.from_bytes(got.data), wanted, str(src))
    child = fetch_manifest(reg, src.repository, chosen.digest)
    assert child is not None
    if len(child.data) != chosen.size:
        raise CorruptData(f"manifest {chosen.digest} has {len(child.data)} bytes; the index says {chosen.size}")
    return child


def pull(src: RegistryRef, layout: Layout, *, registry: Registry | None = None, jobs: int = 4,
         on_progress: OnProgress | None = None, platform: str | None = None,
         on_manifest: Callable[[Manifest], None] | None = None,
         on_blob: Callable[[Descriptor, bytes | None], None] | None = None) -> Descriptor:
    """Fetch `src` (an index resolves to the manifest for `platform`, default this host) and all its
    blobs into `layout`. Stores the manifest blob (untagged) and returns its descriptor.
    `on_manifest` hears of the manifest before any blob is fetched; `on_blob` of each blob (from a
    worker thread) as soon as it is in `layout`, verified: a caller can start using it at once.
    A blob of up to KEEP_LIMIT bytes that was downloaded comes with its verified bytes, so the
    caller need not read and hash it again; others come with None."""
    own = registry is None
    reg = registry or Registry(src.api_host)
    try:
        got = _resolve(reg, src, platform)
        manifest = Manifest.from_bytes(got.data)
        if on_manifest:
            on_manifest(manifest)
        blobs = list({b.digest: b for b in manifest.blobs()}.values())
        counter = Counter("pull", sum(b.size for b in blobs), on_progress)
        missing = [b for b in blobs if not layout.has_blob(b.digest)]
        download = _Download(reg, layout, src.repository, counter, keep=on_blob is not None)

        def fetch(blob: Descriptor) -> None:
            data = None
            if blob in missing:
                data = download.run(blob)
            else:
                counter.add(blob.size, blob.digest)
            if on_blob:
                on_blob(blob, data)

        run_parallel(fetch, blobs, jobs=jobs, name="ckpt-pull")
        stored = layout.put_bytes(got.data, got.media_type)
        log.info("pulled %s (%s)", src, stored.digest)
        return Descriptor(got.media_type, stored.digest, stored.size,
                          artifact_type=manifest.artifact_type or manifest.config.media_type)
    finally:
        if own:
            reg.close()
