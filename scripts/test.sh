#!/usr/bin/env bash
# Install what the tests need (idempotent), lint and type-check, then run the tests. Needs root:
# the end-to-end tests checkpoint and restore real containers with CRIU and runc, and start a
# registry server.
# Extra arguments go to pytest (e.g. scripts/test.sh -k registry).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check   # lint; what and where: [tool.ruff] in pyproject.toml
.venv/bin/mypy         # types, strict on the plumbing: [tool.mypy] in pyproject.toml
exec .venv/bin/python -m pytest -ra "$@"
