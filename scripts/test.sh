#!/usr/bin/env bash
# Sets up .venv with the project and its test dependencies, builds the
# zipapps (the tests run them) and runs the test suite. Extra arguments go
# to pytest (e.g. scripts/test.sh -k tools -x).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test,lint]'
./build.sh
# Two workers: the suite is built for pytest-xdist (own ports, own files per test).
exec .venv/bin/python -m pytest -n 2 "$@"
