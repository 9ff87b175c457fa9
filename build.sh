#!/usr/bin/env bash
# Builds the service and its tools as self-contained zipapps in dist/:
#   dist/token-exchange.pyz       the service
#   dist/create-integration.pyz   create an integration and an API key
#   dist/create-autojoin-key.pyz  create an autojoin API key
#   dist/integration-keys.pyz     list, add, revoke, re-activate, re-tier integration keys
#   dist/autojoin-keys.pyz        list and revoke autojoin keys
#   dist/generate-jwk.pyz         generate a private signing JWK
# Each runs with a plain python3 of the same minor version as the build's
# (dependencies with compiled parts are bundled for this platform).
# Needs python3 with venv; fetches shiv and the dependencies from PyPI.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
BUILD_VENV=build/venv
SITE=build/site

if [ ! -x "$BUILD_VENV/bin/shiv" ]; then
    "$PYTHON" -m venv "$BUILD_VENV"
    "$BUILD_VENV/bin/pip" install --quiet --upgrade pip
    "$BUILD_VENV/bin/pip" install --quiet 'shiv>=1.0.4,<2'
fi

rm -rf "$SITE" build/lib build/bdist.* && mkdir -p "$SITE" dist
"$BUILD_VENV/bin/pip" install --quiet --no-compile --target "$SITE" .

build_pyz() {  # name entry-point
    "$BUILD_VENV/bin/shiv" --site-packages "$SITE" --python '/usr/bin/env python3' \
        --entry-point "$2" --output-file "dist/$1.pyz" --reproducible --no-modify
    echo "built dist/$1.pyz"
}
build_pyz token-exchange token_exchange.cli.service:main
build_pyz create-integration token_exchange.tools.create_integration:main
build_pyz create-autojoin-key token_exchange.tools.create_autojoin_key:main
build_pyz integration-keys token_exchange.tools.integration_keys:main
build_pyz autojoin-keys token_exchange.tools.autojoin_keys:main
build_pyz generate-jwk token_exchange.tools.generate_jwk:main
