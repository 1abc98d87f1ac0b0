"""Push a manifest (or index) and everything it names from a Layout to a registry.

Order: blobs (in parallel, HEAD first to skip what is there), then child manifests, then the
manifest itself, so an interrupted push never leaves a tag pointing at missing data. Small blobs go
as POST + PUT with the body; large ones as POST, one streamed PATCH, then PUT `?digest=`
(distribution 2.8.2 discards a POSTed body, so a big body is never sent speculatively)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from ..errors import CorruptData, RegistryError, UsageError
from ..oci import mediatypes as mt
from ..oci.digest import sha256_digest
from ..oci.layout import Layout
from ..oci.model import EMPTY_CONFIG_DATA, Descriptor, Index, Manifest, empty_config, media_type_of
from ..progress import OnProgress
from ..reference import RegistryRef
from .auth import scope
from .client import Registry
from .counter import Counter
from .parallel import run_parallel
from .referrers import add_to_referrers_tag
from .transport import error_codes

log = logging.getLogger(__name__)

# Blobs above this are streamed (PATCH) instead of held in memory. A pages chunk that zstd could
# not shrink is 8 MiB plus its block headers: it still goes in one PUT, one request fewer.
STREAM_THRESHOLD = (8 << 20) + (64 << 10)
UPLOAD_RESTARTS = 3          # a blob upload whose session was lost is started again this often
BLOCK = 1 << 20


class _ProgressReader:
    """A file-like view of a layout blob for requests: streams it and reports progress. It does not
    hash what it sends: the registry checks the digest of every upload before it accepts it."""

    def __init__(self, layout: Layout, desc: Descriptor, counter: Counter) -> None:
        self._reader = layout.open_blob_unverified(desc)
        self._desc = desc
        self._counter = counter
        self.sent = 0

    def __len__(self) -> int:
        return self._desc.size - self.sent

    def read(self, n: int = -1) -> bytes:
        data = self._reader.read(BLOCK)  # bigger than asked is fine: http.client sends all it gets
        self.sent += len(data)
        if data:
            self._counter.add(len(data), self._desc.digest)
        return data

    def close(self) -> None:
        self._reader.close()


def _with_query(location: str, **params: str) -> str:
    parts = urlsplit(location)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class _Pusher:
    def __init__(self, registry: Registry, layout: Layout, repository: str, *, jobs: int,
                 counter: Counter, stream_threshold: int, mount_from: Sequence[str]) -> None:
        self.reg = registry
        self.layout = layout
        self.repo = repository
        self.jobs = max(1, jobs)
        self.counter = counter
        self.stream_threshold = stream_threshold
        self.mount_from = tuple(r for r in mount_from if r != repository)
        self.scopes = (scope(repository, "pull", "push"),)
        self._new_repository: bool | None = None
        self._new_lock = threading.Lock()

    # -- blobs ----------------------------------------------------------------------------------

    def push_blobs(self, blobs: Sequence[Descriptor]) -> None:
        unique = list({b.digest: b for b in blobs}.values())
        run_parallel(self.push_blob, unique, jobs=self.jobs, name="ckpt-push")

    def exists(self, desc: Descriptor) -> bool:
        if (self.repo, desc.digest) in self.reg.uploaded:
            return True
        if self.new_repository():
            return False
        resp = self.reg.request("HEAD", f"/v2/{self.repo}/blobs/{desc.digest}", scopes=self.scopes,
                                what=f"checking blob {desc.digest}", ok=(200, 404))
        resp.close()
        return resp.status_code == 200

    def new_repository(self) -> bool:
        """True when the registry says the repository does not exist (its tag list answers 404
        NAME_UNKNOWN): it holds no blob then, and a HEAD for each one would only cost a request
        each. Asked once; any other answer keeps the HEADs. (A repository with blobs but no tag,
        after an interrupted push, looks new too: its blobs are then sent again, no harm done.)"""
        with self._new_lock:
            if self._new_repository is None:
                try:
                    resp = self.reg.request("GET", f"/v2/{self.repo}/tags/list?n=1", scopes=self.scopes,
                                            what=f"listing the tags of {self.repo}", ok=(200, 404))
                except RegistryError:  # refused, or an odd answer: ask blob by blob
                    self._new_repository = False
                else:
                    codes = error_codes(resp)[0] if resp.status_code == 404 else ()
                    resp.close()
                    self._new_repository = "NAME_UNKNOWN" in codes
            return self._new_repository

    def push_blob(self, desc: Descriptor, data: bytes | None = None) -> None:
        """Upload `desc` unless the repository has it; `data`, if given, is its bytes (else they are
        read from the layout)."""
        if self.exists(desc):
            log.debug("blob %s already in %s", desc.digest, self.repo)
            self.counter.add(desc.size, desc.digest)
            return
        for attempt in range(1, UPLOAD_RESTARTS + 1):
            location = self._start_upload(desc)
            if location is None:
                self.counter.add(desc.size, desc.digest)
                return
            try:
                self._upload(desc, location, data)
                self.reg.uploaded.add((self.repo, desc.digest))
                return
            except RegistryError as exc:
                if "DIGEST_INVALID" in exc.codes:
                    raise CorruptData(f"local blob {desc.digest} does not match its digest: the registry "
                                      "refused it", hint="run `ckpt fsck`, or save the checkpoint again") from exc
                if attempt < UPLOAD_RESTARTS and {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"} & set(exc.codes):
                    log.info("upload of %s lost its session (%s); starting again", desc.digest, exc.codes)
                    continue
                raise

    def _start_upload(self, desc: Descriptor) -> str | None:
        """POST a new upload (or a cross-repo mount); the Location to upload to, None if mounted."""
        for source in self.mount_from:
            path = f"/v2/{self.repo}/blobs/uploads/?" + urlencode({"mount": desc.digest, "from": source})
            scopes = (*self.scopes, scope(source, "pull"))
            resp = self.reg.request("POST", path, scopes=scopes, what=f"mounting blob {desc.digest}", ok=(201, 202))
            resp.close()
            if resp.status_code == 201:
                log.debug("mounted %s from %s", desc.digest, source)
                return None
            return self._location(resp)  # not mountable: the registry opened a normal upload
        resp = self.reg.request("POST", f"/v2/{self.repo}/blobs/uploads/", scopes=self.scopes,
                                what=f"starting the upload of blob {desc.digest}", ok=(202,),
                                headers={"Content-Length": "0"})
        resp.close()
        return self._location(resp)

    def _location(self, resp: requests.Response) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.reg.host} opened an upload without a Location header")
        return urljoin(resp.url, location)

    def _upload(self, desc: Descriptor, location: str, data: bytes | None = None) -> None:
        if desc.size <= self.stream_threshold or data is not None:
            if data is None or len(data) != desc.size:
                data = self._small_blob(desc)
            resp = self.reg.request("PUT", _with_query(location, digest=desc.digest), scopes=self.scopes,
                                    what=f"uploading blob {desc.digest}", ok=(201,), body=data,
                                    headers={"Content-Type": "application/octet-stream"})
            resp.close()
            self.counter.add(desc.size, desc.digest)
            return
        readers: list[_ProgressReader] = []

        def body() -> _ProgressReader:
            for old in readers:  # a retried PATCH starts over; take back what the old one counted
                self.counter.add(-old.sent)
                old.close()
            readers.clear()
            readers.append(_ProgressReader(self.layout, desc, self.counter))
            return readers[-1]

        try:
            resp = self.reg.request("PATCH", location, scopes=self.scopes, body=body, ok=(202,),
                                    what=f"uploading blob {desc.digest}",
                                    headers={"Content-Type": "application/octet-stream",
                                             "Content-Length": str(desc.size)})
        finally:
            for reader in readers:
                reader.close()
        resp.close()
        location = self._location(resp)  # the latest Location, verbatim (its _state changes)
        resp = self.reg.request("PUT", _with_query(location, digest=desc.digest), scopes=self.scopes,
                                what=f"finishing the upload of blob {desc.digest}", ok=(201,),
                                headers={"Content-Length": "0"})
        resp.close()

    def _small_blob(self, desc: Descriptor) -> bytes:
        if desc.digest == empty_config().digest and not self.layout.has_blob(desc.digest):
            return EMPTY_CONFIG_DATA
        with self.layout.open_blob_unverified(desc) as reader:  # the registry verifies the digest
            data = reader.read()
        if len(data) != desc.size:
            raise CorruptData(f"local blob {desc.digest} has {len(data)} bytes, not {desc.size}")
        return data

    # -- manifests ------------------------------------------------------------------------------

    def put_manifest(self, data: bytes, media_type: str, reference: str) -> str | None:
        """PUT a manifest; returns the OCI-Subject header (None when the registry sent none)."""
        resp = self.reg.request("PUT", f"/v2/{self.repo}/manifests/{reference}", scopes=self.scopes,
                                what=f"pushing manifest {reference}", ok=(201, 200), body=data,
                                headers={"Content-Type": media_type})
        resp.close()
        digest = resp.headers.get("Docker-Content-Digest")
        if digest and digest.startswith("sha256:") and digest != sha256_digest(data):
            raise CorruptData(f"registry {self.reg.host} stored manifest {reference} under digest {digest}, "
                              f"not {sha256_digest(data)}")
        return resp.headers.get("OCI-Subject")

    def push_manifest_tree(self, desc: Descriptor, reference: str) -> None:
        data = self.layout.read_blob(desc)
        media_type = desc.media_type or media_type_of(data) or mt.OCI_MANIFEST
        if media_type in mt.INDEX_TYPES:
            index = Index.from_bytes(data)
            for child in index.manifests:
                self.push_manifest_tree(child, child.digest)
            self.put_manifest(data, media_type, reference)
            return
        manifest = Manifest.from_bytes(data)
        self.push_blobs(manifest.blobs())
        subject_header = self.put_manifest(data, media_type, reference)
        if manifest.subject is not None and subject_header is None:
            entry = Descriptor(media_type, desc.digest, len(data), manifest.annotations,
                               artifact_type=manifest.artifact_type or manifest.config.media_type)
            add_to_referrers_tag(self.reg, self.repo, manifest.subject.digest, entry)


class BlobUploader:
    """Uploads blobs to `dest`'s repository while the rest are still being produced. Only blobs:
    the manifest (and so the tag) is written by push() afterwards, which then finds them there.
    A blob handed over with its bytes is sent from memory, as long as no more than HOLD bytes
    wait that way (packing outruns uploading; memory must not grow with the checkpoint)."""

    HOLD = 32 << 20  # about what the upload threads have in flight at once

    def __init__(self, layout: Layout, dest: RegistryRef, *, registry: Registry, jobs: int = 4,
                 on_progress: OnProgress | None = None, mount_from: Sequence[str] = ()) -> None:
        self._pusher = _Pusher(registry, layout, dest.repository, jobs=jobs,
                               counter=Counter("upload", 0, on_progress), stream_threshold=STREAM_THRESHOLD,
                               mount_from=mount_from)
        self._pool = ThreadPoolExecutor(max(1, jobs), thread_name_prefix="ckpt-upload")
        self._futures: list[Future[None]] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._held = 0

    def submit(self, desc: Descriptor, data: bytes | None = None) -> None:
        """Queue `desc` (already committed to the layout; `data`, its bytes, if at hand) for upload;
        safe from any thread."""
        with self._lock:
            if desc.digest in self._seen:
                return
            self._seen.add(desc.digest)
            if data is not None and self._held + len(data) > self.HOLD:
                data = None  # read back from the layout when its turn comes
            self._held += len(data) if data is not None else 0
            self._futures.append(self._pool.submit(self._push, desc, data))

    def _push(self, desc: Descriptor, data: bytes | None) -> None:
        try:
            self._pusher.push_blob(desc, data)
        finally:
            if data is not None:
                with self._lock:
                    self._held -= len(data)

    def finish(self) -> None:
        """Wait for every queued upload; raise the first failure."""
        try:
            for future in list(self._futures):
                future.result()
        finally:
            self.abort()

    def abort(self) -> None:
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True)


def _blob_total(layout: Layout, desc: Descriptor) -> int:
    data = layout.read_blob(desc)
    if desc.media_type in mt.INDEX_TYPES or media_type_of(data) in mt.INDEX_TYPES:
        return sum(_blob_total(layout, child) for child in Index.from_bytes(data).manifests)
    return sum({b.digest: b.size for b in Manifest.from_bytes(data).blobs()}.values())


def push(layout: Layout, manifest_desc: Descriptor, dest: RegistryRef, *, registry: Registry | None = None,
         jobs: int = 4, on_progress: OnProgress | None = None, stream_threshold: int = STREAM_THRESHOLD,
         mount_from: Sequence[str] = ()) -> Descriptor:
    """Push `manifest_desc` (a manifest or an index in `layout`) and all it names to `dest`, tagged
    with `dest.tag` (or by digest only when it has none). Returns the pushed manifest's descriptor."""
    if dest.digest and dest.digest != manifest_desc.digest:
        raise UsageError(f"cannot push {manifest_desc.digest} as {dest}: the digests differ")
    own = registry is None
    reg = registry or Registry(dest.api_host)
    try:
        counter = Counter("push", _blob_total(layout, manifest_desc), on_progress)
        pusher = _Pusher(reg, layout, dest.repository, jobs=jobs, counter=counter,
                         stream_threshold=stream_threshold, mount_from=mount_from)
        pusher.push_manifest_tree(manifest_desc, dest.tag or manifest_desc.digest)
        log.info("pushed %s as %s", manifest_desc.digest, dest)
        return manifest_desc
    finally:
        if own:
            reg.close()
