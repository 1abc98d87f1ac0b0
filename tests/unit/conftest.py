"""Unit tests: offline, fast, no root needed (tests that need root skip without it)."""
from __future__ import annotations

import os
import tempfile

# hypothesis keeps a cache in ./.hypothesis by default; keep the work tree clean.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "ckpt-hypothesis"))
