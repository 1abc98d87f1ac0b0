"""Porcelain: save, restore, inspect and the local store, each combining the plumbing packages."""
