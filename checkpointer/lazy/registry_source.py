"""Blobs straight from a registry, one GET each: pages chunks for a lazy restore (read_blob, verified
in memory before use), and any blob, however large, streamed into a local layout (fetch_into, the
on-demand reads of porcelain/places/registry.py). With a cache (lazy/cache.py, or any layout), a
blob already there is not fetched, and every fetched one is kept there.

A transfer cut short is resumed with a Range request (distribution answers 206); a server that
ignores Range makes it start over. Trouble that may pass comes out as Unreachable (the caller
retries with backoff, within its deadline); a blob that is not what its digest says, or that the
registry does not have, as CorruptData or NotFound."""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import requests
import urllib3

from ..errors import CorruptData, NotFound, Unreachable
from ..oci.digest import verify_bytes
from ..oci.layout import BlobWriter, Layout
from ..oci.model import Descriptor
from ..registry.auth import scope
from ..registry.client import Registry
from .cache import ChunkCache

log = logging.getLogger(__name__)

RESUMES = 3
_READ = 1 << 20
_CUT_OFF = (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, urllib3.exceptions.HTTPError,
            ConnectionError, TimeoutError)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class BlobCache(Protocol):
    """Where fetched blobs are kept: a Layout, or the node's ChunkCache."""

    def has_blob(self, digest: str) -> bool: ...

    def read_blob(self, desc: Descriptor) -> bytes: ...

    def writing(self, known_digest: str | None = None) -> AbstractContextManager[BlobWriter]: ...


class _Sink(Protocol):
    @property
    def size(self) -> int: ...

    def write(self, data: bytes) -> int: ...


class _Bytes:
    """A sink in memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def size(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


class RegistrySource:
    def __init__(self, registry: Registry, repository: str, *, cache: BlobCache | None = None) -> None:
        self.registry, self.repository, self.cache = registry, repository, cache
        self.where = f"registry {registry.host} ({repository})"
        self.fetched_bytes = 0  # bytes that came over the network
        self.blobs_fetched = 0
        self._lock = threading.Lock()

    def read_blob(self, desc: Descriptor) -> bytes:
        if self.cache is not None and self.cache.has_blob(desc.digest):
            try:
                return self.cache.read_blob(desc)
            except (CorruptData, NotFound) as exc:  # damaged or evicted meanwhile: fetch it again
                log.info("cached blob %s unusable (%s); fetching it again", desc.digest, exc)
        sink = _Bytes()
        self._download(desc, lambda: sink, lambda: sink.data.clear())
        data = verify_bytes(bytes(sink.data), desc.digest, desc.size, what="pages chunk")
        self._counted()
        if self.cache is not None:
            try:
                with self.cache.writing(known_digest=desc.digest) as writer:
                    writer.write(data)
                    writer.commit(desc.media_type, expected=desc.digest)
            except OSError as exc:  # a full disk: the pages are here all the same, only not kept
                log.warning("pages chunk %s not kept in the cache: %s", desc.digest, exc.strerror or exc)
        return data

    def fetch_into(self, desc: Descriptor, layout: Layout) -> None:
        """Stream `desc` into `layout` (through its writer: a writing session its gc respects),
        committed only once its digest matched: a blob of any size, in little memory."""
        writer = [layout.writer()]

        def restart() -> None:
            writer[0].abort()
            writer[0] = layout.writer()

        try:
            self._download(desc, lambda: writer[0], restart)
            writer[0].commit(desc.media_type, expected=desc.digest)  # the digest check
        finally:
            writer[0].abort()  # nothing, once committed
        self._counted()

    def close(self) -> None:
        self.registry.close()
        if isinstance(self.cache, ChunkCache):
            self.cache.trim()

    def _counted(self) -> None:
        with self._lock:
            self.blobs_fetched += 1

    def _download(self, desc: Descriptor, sink: Callable[[], _Sink], restart: Callable[[], None]) -> None:
        """GET the blob into `sink()`, resuming a cut transfer; `restart()` empties the sink when the
        server will not resume."""
        for _ in range(RESUMES + 1):
            got = sink().size
            headers = {"Range": f"bytes={got}-"} if got else {}
            resp = self.registry.request("GET", f"/v2/{self.repository}/blobs/{desc.digest}",
                                         scopes=(scope(self.repository, "pull"),), stream=True, headers=headers,
                                         what=f"fetching blob {desc.digest}", ok=(200, 206))
            with resp:
                if resp.status_code == 200 and got or resp.status_code == 206 and not self._resumes(resp, got):
                    restart()  # the Range was not honoured as asked: start over
                    if resp.status_code == 206:
                        continue
                try:
                    for chunk in _chunks(resp):
                        out = sink()
                        if out.size + len(chunk) > desc.size:
                            raise CorruptData(f"blob {desc.digest} is longer than its {desc.size} bytes")
                        out.write(chunk)
                        self._count(len(chunk))
                except _CUT_OFF as exc:
                    log.info("blob %s cut off at %d of %d bytes (%s)", desc.digest, sink().size, desc.size,
                             type(exc).__name__)
                    continue
            if sink().size == desc.size:
                return
        raise Unreachable(f"the download of blob {desc.digest} from {self.registry.host} kept breaking off "
                          f"({sink().size} of {desc.size} bytes)", hint="check the network and the registry")

    def _resumes(self, resp: requests.Response, offset: int) -> bool:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        return m is not None and int(m.group(1)) == offset

    def _count(self, n: int) -> None:
        with self._lock:
            self.fetched_bytes += n


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    # read1: whatever has arrived, so a connection cut keeps every byte received before it
    while chunk := resp.raw.read1(_READ, decode_content=True):
        yield chunk
