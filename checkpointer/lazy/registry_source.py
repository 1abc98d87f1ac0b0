"""Pages chunks straight from a registry, one blob GET per chunk, each verified in memory before
use and kept in a local cache layout when one is given (a chunk already there is not fetched).

A transfer cut short is resumed with a Range request (distribution answers 206); a server that
ignores Range makes it start over. Trouble that may pass comes out as Unreachable (the caller
retries with backoff, within its deadline); a blob that is not what its digest says, or that the
registry does not have, as CorruptData or NotFound."""
from __future__ import annotations

import logging
import re
import threading

import requests
import urllib3

from ..errors import CorruptData, NotFound, Unreachable
from ..oci.digest import verify_bytes
from ..oci.layout import Layout
from ..oci.model import Descriptor
from ..registry.auth import scope
from ..registry.client import Registry

log = logging.getLogger(__name__)

RESUMES = 3
_READ = 1 << 20
_CUT_OFF = (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, urllib3.exceptions.HTTPError,
            ConnectionError, TimeoutError)
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class RegistrySource:
    def __init__(self, registry: Registry, repository: str, *, cache: Layout | None = None) -> None:
        self.registry, self.repository, self.cache = registry, repository, cache
        self.fetched_bytes = 0  # bytes that came over the network
        self.blobs_fetched = 0
        self._lock = threading.Lock()

    def read_blob(self, desc: Descriptor) -> bytes:
        if self.cache is not None and self.cache.has_blob(desc.digest):
            try:
                return self.cache.read_blob(desc)
            except (CorruptData, NotFound) as exc:  # damaged or removed meanwhile: fetch it again
                log.info("cached blob %s unusable (%s); fetching it again", desc.digest, exc)
        data = verify_bytes(self._download(desc), desc.digest, desc.size, what="pages chunk")
        with self._lock:
            self.blobs_fetched += 1
        if self.cache is not None:
            with self.cache.writing(known_digest=desc.digest) as writer:
                writer.write(data)
                writer.commit(desc.media_type, expected=desc.digest)
        return data

    def close(self) -> None:
        self.registry.close()

    def _download(self, desc: Descriptor) -> bytes:
        got = bytearray()
        for _ in range(RESUMES + 1):
            headers = {"Range": f"bytes={len(got)}-"} if got else {}
            resp = self.registry.request("GET", f"/v2/{self.repository}/blobs/{desc.digest}",
                                         scopes=(scope(self.repository, "pull"),), stream=True, headers=headers,
                                         what=f"fetching pages chunk {desc.digest}", ok=(200, 206))
            with resp:
                if resp.status_code == 200 and got or resp.status_code == 206 and not self._resumes(resp, len(got)):
                    got.clear()  # the Range was not honoured as asked: start over
                    if resp.status_code == 206:
                        continue
                try:
                    while chunk := resp.raw.read1(_READ, decode_content=True):
                        got += chunk
                        self._count(len(chunk))
                        if len(got) > desc.size:
                            raise CorruptData(f"pages chunk {desc.digest} is longer than its {desc.size} bytes")
                except _CUT_OFF as exc:
                    log.info("pages chunk %s cut off at %d of %d bytes (%s)", desc.digest, len(got), desc.size,
                             type(exc).__name__)
                    continue
            if len(got) == desc.size:
                return bytes(got)
        raise Unreachable(f"the download of pages chunk {desc.digest} from {self.registry.host} kept breaking off "
                          f"({len(got)} of {desc.size} bytes)", hint="check the network and the registry")

    def _resumes(self, resp: requests.Response, offset: int) -> bool:
        m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        return m is not None and int(m.group(1)) == offset

    def _count(self, n: int) -> None:
        with self._lock:
            self.fetched_bytes += n
