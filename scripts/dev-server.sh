#!/usr/bin/env bash
# Starts the service on the embedded SQLite store in .dev/, for development.
# Checks first that its two ports are free, builds the zipapps only when a
# source is newer than dist/, and on the first run generates a development
# signing key in .dev/jwk-priv.json and says so (the service itself never
# makes keys). Extra arguments go to the service (e.g. -port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."

# The ports the service will use, as its flags and environment set them.
PORT=${PORT:-8080}
METRICS=${PROMETHEUSX_LISTEN_ADDRESS:-:9990}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    arg=${args[i]}
    next=${args[i + 1]:-}
    case "$arg" in
        -port | --port) PORT=$next ;;
        -port=* | --port=*) PORT=${arg#*=} ;;
        -prometheusx.listen-address | --prometheusx.listen-address) METRICS=$next ;;
        -prometheusx.listen-address=* | --prometheusx.listen-address=*) METRICS=${arg#*=} ;;
    esac
done
METRICS_PORT=${METRICS##*:}

port_in_use() {  # port: true when something listens on it already
    python3 - "$1" <<'PY'
import socket, sys
with socket.socket() as s:
    try:
        s.bind(("", int(sys.argv[1])))
    except (OSError, ValueError):
        sys.exit(0)
sys.exit(1)
PY
}
for port in "$PORT" "$METRICS_PORT"; do
    if port_in_use "$port"; then
        echo "dev-server: port $port is in use (choose others with -port N and -prometheusx.listen-address :M)" >&2
        exit 1
    fi
done

./build.sh if-stale

mkdir -p .dev
KEY=.dev/jwk-priv.json
STORE=sqlite:.dev/keys.db
if [ ! -e "$KEY" ]; then
    python3 dist/generate-jwk.pyz -out "$KEY"
    echo "Generated a DEVELOPMENT signing key in $KEY; never use it in production."
fi
cat <<MSG

Starting token-exchange on the embedded store ($STORE):
  tokens and JWKS on http://localhost:$PORT (/v0/token/integration, /.well-known/jwks.json)
  metrics on http://localhost:$METRICS_PORT/metrics
In another terminal, create a key and exchange it:
  API_KEY=\$(python3 dist/create-integration.pyz -store $STORE -integration-id demo | awk '/^API Key:/ {print \$3}')
  curl -s -X POST localhost:$PORT/v0/token/integration -d "{\"api_key\": \"\$API_KEY\"}"

MSG
exec python3 dist/token-exchange.pyz -store "$STORE" -private-key-path "$KEY" "$@"
