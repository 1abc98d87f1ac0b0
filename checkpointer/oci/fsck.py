"""Check an image layout against itself and, when asked, repair it: the tool behind `ckpt fsck`.

Problems a crash or a bad disk can leave: a tag whose manifest or blobs are missing or damaged,
blobs nothing names any more, files left in ingest/ by a writer that died. Repair removes the
tags that cannot be trusted and then collects the garbage; it never rewrites a blob.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CkptError
from . import mediatypes as mt
from .layout import Layout
from .model import Descriptor, Index, Manifest


@dataclass(frozen=True, slots=True)
class Finding:
    ref: str
    problem: str


@dataclass(frozen=True, slots=True)
class FsckReport:
    tags: int
    blobs_checked: int
    findings: tuple[Finding, ...] = ()
    removed_tags: tuple[str, ...] = ()
    freed: int = 0
    garbage: int = 0  # bytes of blobs or leftovers nothing names (freed when repairing)

    @property
    def ok(self) -> bool:
        return not self.findings

    repaired: bool = field(default=False)


def _check_tree(layout: Layout, desc: Descriptor, seen: dict[str, str | None], full: bool) -> str | None:
    """The first problem under `desc` (a manifest or an index), or None. Results are memoised."""
    if desc.digest in seen:
        return seen[desc.digest]
    seen[desc.digest] = None  # an index that names itself ends here
    problem = _check_blob(layout, desc, full=True)
    if problem is None:
        try:
            data = layout.read_blob(desc)
            if desc.media_type in mt.INDEX_TYPES:
                children = Index.from_bytes(data).manifests
                problem = next(filter(None, (_check_tree(layout, c, seen, full) for c in children)), None)
            else:
                blobs = [b for b in Manifest.from_bytes(data).blobs() if b.media_type != mt.OCI_EMPTY]
                problem = next(filter(None, (_check_memo(layout, b, seen, full) for b in blobs)), None)
        except CkptError as exc:
            problem = str(exc)
    seen[desc.digest] = problem
    return problem


def _check_memo(layout: Layout, desc: Descriptor, seen: dict[str, str | None], full: bool) -> str | None:
    if desc.digest not in seen:
        seen[desc.digest] = _check_blob(layout, desc, full)
    return seen[desc.digest]


def _check_blob(layout: Layout, desc: Descriptor, full: bool) -> str | None:
    path = layout.blob_path(desc.digest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"blob {desc.digest} is missing"
    if size != desc.size:
        return f"blob {desc.digest} has {size} bytes, not {desc.size}"
    if full:
        try:
            layout.verify_blob(desc)
        except CkptError as exc:
            return str(exc)
    return None


def fsck(layout: Layout, *, repair: bool = False, full: bool = True) -> FsckReport:
    """Check every tag of `layout` (`full` re-hashes every blob; otherwise sizes only)."""
    seen: dict[str, str | None] = {}
    findings = []
    refs = layout.refs()
    for name, desc in refs:
        problem = _check_tree(layout, desc, seen, full)
        if problem:
            findings.append(Finding(name, problem))
    removed: list[str] = []
    freed = 0
    garbage = layout.garbage_bytes()
    if repair:
        for finding in findings:
            layout.untag(finding.ref)
            removed.append(finding.ref)
        freed = layout.gc()
    return FsckReport(tags=len(refs), blobs_checked=len(seen), findings=tuple(findings),
                      removed_tags=tuple(removed), freed=freed, garbage=garbage, repaired=repair)
