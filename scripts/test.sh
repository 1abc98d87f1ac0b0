#!/usr/bin/env bash
# Install what the tests need (idempotent), then run them all. Needs root: the end-to-end tests
# checkpoint and restore real containers with CRIU and runc, and start a registry server.
# Extra arguments go to pytest (e.g. scripts/test.sh -k registry).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest -ra "$@"
