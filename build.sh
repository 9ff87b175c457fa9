#!/usr/bin/env bash
# Builds the service and its tools as self-contained zipapps in dist/:
#   dist/token-exchange.pyz       the service
#   dist/create-integration.pyz   create an integration and an API key
#   dist/create-autojoin-key.pyz  create an autojoin API key
#   dist/integration-keys.pyz     list, add, revoke, re-activate, re-tier integration keys
#   dist/autojoin-keys.pyz        list and revoke autojoin keys
#   dist/generate-jwk.pyz         generate a private signing JWK
# Each runs with a plain python3 of the same minor version as the build's
# (dependencies with compiled parts are bundled for this platform); on another
# one it stops with a line saying which (zipapp/preamble.py).
# Needs python3 with venv; fetches what the lock files pin, and nothing else,
# from PyPI, checking every file's hash.
# `./build.sh deps` only installs the locked dependencies (the Dockerfile's
# cached layer); they are reinstalled whenever a lock file changes.
# `./build.sh if-stale` builds only when a zipapp is missing or something it
# is built from is newer than the oldest one (scripts/dev-server.sh and
# scripts/test.sh use it).
set -euo pipefail
cd "$(dirname "$0")"

ZIPAPPS=(token-exchange create-integration create-autojoin-key integration-keys autojoin-keys generate-jwk)
if [ "${1:-}" = if-stale ]; then
    stale=false
    for name in "${ZIPAPPS[@]}"; do
        [ -e "dist/$name.pyz" ] || stale=true
    done
    if ! $stale; then
        oldest=$(ls -t dist/*.pyz | tail -n 1)
        newer=$(find token_exchange zipapp setup.cfg pyproject.toml build.sh requirements*.lock \
            -newer "$oldest" -not -name '*.pyc' -not -path '*/__pycache__*' -print -quit)
        [ -z "$newer" ] || stale=true
    fi
    if ! $stale; then
        echo "dist/ is up to date; not rebuilding"
        exit 0
    fi
fi

PYTHON=${PYTHON:-python3}
BUILD_VENV=build/venv
DEPS=build/deps
PROJECT=build/project

if ! cmp -s requirements-build.lock "$BUILD_VENV.lock"; then
    rm -rf "$BUILD_VENV" "$BUILD_VENV.lock"
    "$PYTHON" -m venv "$BUILD_VENV"
    "$BUILD_VENV/bin/pip" install --quiet --require-hashes -r requirements-build.lock
    cp requirements-build.lock "$BUILD_VENV.lock"
fi
if ! cmp -s requirements.lock "$DEPS.lock"; then
    rm -rf "$DEPS" "$DEPS.lock"
    "$BUILD_VENV/bin/pip" install --quiet --require-hashes --no-deps --no-compile --target "$DEPS" -r requirements.lock
    cp requirements.lock "$DEPS.lock"
fi
if [ "${1:-}" = deps ]; then exit 0; fi

# The project alone; its build backend comes from the build environment, not from PyPI.
rm -rf "$PROJECT" build/lib build/bdist.* && mkdir -p dist
"$BUILD_VENV/bin/pip" install --quiet --no-deps --no-build-isolation --no-compile --target "$PROJECT" .
# What the preamble checks the running Python against.
mkdir -p "$PROJECT/bin"
"$BUILD_VENV/bin/python" -c 'import json, platform, sys
print(json.dumps({"implementation": platform.python_implementation(), "python": "{}.{}".format(*sys.version_info[:2])}))' \
    > "$PROJECT/bin/zipapp.json"

build_pyz() {  # name entry-point
    "$BUILD_VENV/bin/shiv" --site-packages "$DEPS" --site-packages "$PROJECT" --python '/usr/bin/env python3' \
        --preamble zipapp/preamble.py --entry-point "$2" --output-file "dist/$1.pyz" --reproducible
    echo "built dist/$1.pyz"
}
build_pyz token-exchange token_exchange.cli.service:main
build_pyz create-integration token_exchange.tools.create_integration:main
build_pyz create-autojoin-key token_exchange.tools.create_autojoin_key:main
build_pyz integration-keys token_exchange.tools.integration_keys:main
build_pyz autojoin-keys token_exchange.tools.autojoin_keys:main
build_pyz generate-jwk token_exchange.tools.generate_jwk:main
