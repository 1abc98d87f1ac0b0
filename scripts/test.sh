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

# The porcelain's own tests and the unit tests, as a user who is not root (nobody): the porcelain
# must not need root to decide, roll back or refuse, and these tests must not lean on it. They
# must cover 85% of porcelain/ (coverage.py).
as_nobody() {
    setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$scratch" TMPDIR="$scratch" \
        CKPT_HOME="$scratch/ckpt" COVERAGE_FILE="$scratch/.coverage" PYTHONDONTWRITEBYTECODE=1 "$@"
}
scratch=$(mktemp -d /tmp/ckpt-nobody-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
chown 65534:65534 "$scratch"
as_nobody .venv/bin/python -m coverage run --source=checkpointer/porcelain -m pytest -m "not e2e" -q \
    -p no:cacheprovider tests/porcelain tests/unit
as_nobody .venv/bin/python -m coverage report --fail-under=85
rm -rf "$scratch"
trap - EXIT

exec .venv/bin/python -m pytest -ra "$@"
