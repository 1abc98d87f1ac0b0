"""The node's blob cache as ckpt uses it: $CKPT_HOME/cache (lazy/cache.py), holding every blob a
restore or an inspect fetched from a registry, so that a warm restart fetches only the manifest.

Its size limit is $CKPT_CACHE_SIZE (bytes, or with a K, M, G or T suffix; 0 turns the cache off),
by default a tenth of the filesystem it lives on, at least 1 GiB and at most 32 GiB: enough for a
few restarts of large containers, never a crowd on a small disk."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import UsageError
from ..lazy.cache import CacheReport, CacheUsage, ChunkCache
from .home import Home

__all__ = ["CacheReport", "CacheUsage", "cache_limit", "cache_path", "check_cache", "open_cache", "parse_size",
           "trim_cache"]

ENV = "CKPT_CACHE_SIZE"
DEFAULT_SHARE = 0.10
DEFAULT_MIN, DEFAULT_MAX = 1 << 30, 32 << 30
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from "512M", "10G", "1.5GiB", "4096"; UsageError for anything else."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"{ENV}={text!r} is not a size", hint="give bytes, or a number with K, M, G or T (10G)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


def cache_path(home: Home) -> Path:
    return home.root / "cache"


def cache_limit(home: Home) -> int:
    """$CKPT_CACHE_SIZE, or the default for the filesystem the cache is on."""
    if (given := os.environ.get(ENV)) is not None:
        return parse_size(given)
    where = home.root if home.root.exists() else home.root.parent
    try:
        st = os.statvfs(where)
    except OSError:
        return DEFAULT_MIN
    return int(min(DEFAULT_MAX, max(DEFAULT_MIN, st.f_blocks * st.f_frsize * DEFAULT_SHARE)))


def open_cache(home: Home) -> ChunkCache:
    home.ensure_root()  # it holds memory images: owner only
    return ChunkCache(cache_path(home), cache_limit(home))


def check_cache(home: Home, *, repair: bool = False) -> CacheReport | None:
    """`ckpt fsck`'s look at the cache (None if there is none): every blob verified; with `repair`,
    damaged blobs and leftovers of interrupted writes removed, and the cache trimmed to its limit."""
    if not (cache_path(home) / "oci-layout").is_file():
        return None
    cache = open_cache(home)
    report = cache.check(repair=repair)
    if repair:
        cache.trim()
    return report


def trim_cache(home: Home) -> int:
    """Evict from the cache what is over its limit (least recently used first); bytes freed."""
    if not (cache_path(home) / "oci-layout").is_file():
        return 0
    return open_cache(home).trim()
