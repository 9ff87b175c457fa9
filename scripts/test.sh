#!/usr/bin/env bash
# Sets up .venv with the project and its test dependencies (requirements-dev.lock), builds the
# zipapps (the tests run them) and runs the test suite. Extra arguments go
# to pytest (e.g. scripts/test.sh -k tools -x).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Exactly the locked versions (the bundle's, the test and lint extras, the build backend), hashes checked;
# then the project itself, editable, with nothing more fetched.
.venv/bin/pip install --quiet --require-hashes -r requirements-dev.lock
.venv/bin/pip install --quiet --no-deps --no-build-isolation -e .
./build.sh
# Two workers: the suite is built for pytest-xdist (own ports, own files per test).
exec .venv/bin/python -m pytest -n 2 "$@"
