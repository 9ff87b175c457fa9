#!/usr/bin/env bash
# The lock files, for the Python of the image (Dockerfile), whatever python3 runs this:
#   requirements.lock        what the zipapps and the image bundle (setup.cfg's install_requires)
#   requirements-build.lock  build.sh's build environment (requirements-build.in)
#   requirements-dev.lock    the test set-up: the other two's pins, the test and lint extras
# Each pins every distribution with the hashes of all its files on PyPI.
#
#   scripts/lock.sh                         refresh after an input changed; pins move only where it demands
#   scripts/lock.sh --upgrade               take the newest versions the inputs allow
#   scripts/lock.sh --upgrade-package NAME  the same for one distribution
#   scripts/lock.sh audit                   check every pin against PyPI's vulnerability data (pip-audit);
#                                           fails on a finding, and on a pin it could not check
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_PYTHON=3.11
LOCKS=(requirements.lock requirements-build.lock requirements-dev.lock)
TOOLS=build/tools-venv
if [ ! -x "$TOOLS/bin/uv" ] || [ ! -x "$TOOLS/bin/pip-audit" ]; then
    "${PYTHON:-python3}" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet 'uv==0.13.8' 'pip-audit==2.10.1'
fi

if [ "${1:-}" = audit ]; then
    for lock in "${LOCKS[@]}"; do
        echo "== $lock"
        "$TOOLS/bin/pip-audit" --strict --disable-pip --require-hashes --progress-spinner off -r "$lock"
    done
    exit 0
fi

compile() {  # output inputs...
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
echo "locked for Python $TARGET_PYTHON: ${LOCKS[*]}"
