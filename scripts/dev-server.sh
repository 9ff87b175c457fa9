#!/usr/bin/env bash
# Builds the zipapps and starts the service on the embedded SQLite store in
# .dev/, for development. The first run generates a development signing key
# in .dev/jwk-priv.json and says so; the service itself never makes keys.
# Extra arguments go to the service (e.g. -port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."

./build.sh
mkdir -p .dev
KEY=.dev/jwk-priv.json
STORE=sqlite:.dev/keys.db
if [ ! -e "$KEY" ]; then
    python3 dist/generate-jwk.pyz -out "$KEY"
    echo "Generated a DEVELOPMENT signing key in $KEY; never use it in production."
fi
cat <<MSG

Starting token-exchange on the embedded store ($STORE).
In another terminal, create a key and exchange it (8080 unless you chose -port):
  python3 dist/create-integration.pyz -store $STORE -integration-id demo
  curl -s -X POST localhost:8080/v0/token/integration -d '{"api_key": "<API Key printed above>"}'

MSG
exec python3 dist/token-exchange.pyz -store "$STORE" -private-key-path "$KEY" "$@"
