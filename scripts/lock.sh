#!/usr/bin/env bash
# Refreshes the lock files from setup.cfg and requirements-build.in, for the
# Python of the image (Dockerfile) whatever python3 runs this:
#   requirements.lock        what the zipapps and the image bundle (install_requires)
#   requirements-build.lock  build.sh's build environment (shiv, setuptools, pip)
#   requirements-dev.lock    the test set-up: the bundle's pins, the test and lint extras, the build tools
# Each pins every distribution with the hashes of all its files on PyPI.
# Pins move only when asked: `scripts/lock.sh` keeps them where the inputs
# allow; `scripts/lock.sh --upgrade` (or `--upgrade-package NAME`) takes newer ones.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_PYTHON=3.11
TOOLS=build/tools-venv
if [ ! -x "$TOOLS/bin/uv" ]; then
    "${PYTHON:-python3}" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet 'uv==0.13.8' 'pip-audit==2.10.1'
fi

compile() {  # output inputs... (each lock starts from its previous pins)
    local out=$1
    shift
    "$TOOLS/bin/uv" pip compile --quiet --python-version "$TARGET_PYTHON" --generate-hashes \
        --no-emit-index-url --custom-compile-command scripts/lock.sh "${EXTRA_ARGS[@]}" --output-file "$out" "$@"
}
EXTRA_ARGS=("$@")
compile requirements.lock setup.cfg
compile requirements-build.lock requirements-build.in
# The dev lock takes the other two's pins as they are.
compile requirements-dev.lock setup.cfg --extra test --extra lint requirements-build.in \
    --constraint requirements.lock --constraint requirements-build.lock
echo "locked for Python $TARGET_PYTHON: requirements.lock requirements-build.lock requirements-dev.lock"
