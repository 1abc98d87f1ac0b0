"""Lazy restore: serve a restored process its memory on demand from a checkpoint's pages chunks."""
