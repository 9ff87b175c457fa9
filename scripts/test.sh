#!/usr/bin/env bash
# Sets up .venv with the project and its test dependencies (requirements-dev.lock), builds the
# zipapps (the tests run them) and runs the test suite. Extra arguments go
# to pytest (e.g. scripts/test.sh -k tools -x). Only what changed is installed or built again:
# the dependencies when the lock file changed, the zipapps when a source is newer than dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# A .venv left half-made (no pip: its creation was cut short) is made again.
[ -x .venv/bin/pip ] || { rm -rf .venv && "$PYTHON" -m venv .venv; }
# Exactly the locked versions (the bundle's, the test and lint extras, the build backend), hashes checked;
# then the project itself, editable, with nothing more fetched.
# Again only when the lock file or the project's metadata changed since the last install.
installed=$(cat requirements-dev.lock setup.cfg pyproject.toml | sha256sum)
if [ "$installed" != "$(cat .venv/installed 2>/dev/null)" ]; then
    .venv/bin/pip install --quiet --require-hashes -r requirements-dev.lock
    .venv/bin/pip install --quiet --no-deps --no-build-isolation -e .
    echo "$installed" > .venv/installed
fi
./build.sh if-stale
# Two workers: the suite is built for pytest-xdist (own ports, own files per test).
exec .venv/bin/python -m pytest -n 2 "$@"
