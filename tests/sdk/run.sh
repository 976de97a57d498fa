#!/usr/bin/env bash
# Starts a throw-away Parley (fresh data dir, embedded PostgreSQL, free loopback ports), runs the
# SDK acceptance tests against it with the real `connectycube` npm package, and stops it.
# Usage: tests/sdk/run.sh [path/to/parley]   (default: target/debug/parley, built if missing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/debug/parley}
[ -x "$bin" ] || (cd "$root" && cargo build --bin parley)

data=$(mktemp -d "$root/target/sdk-data.XXXXXX")
chmod 755 "$data"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(port)
xmpp_port=$(port)
xmpp_tls_port=$(port)
ws_port=$(port)
log="$data/parley.log"

PARLEY_DATA_DIR="$data" PARLEY_HTTP_ADDR="127.0.0.1:$http_port" PARLEY_DATABASE_URL= \
  PARLEY_XMPP_ADDR="127.0.0.1:$xmpp_port" PARLEY_XMPP_TLS_ADDR="127.0.0.1:$xmpp_tls_port" \
  PARLEY_WS_ADDR="127.0.0.1:$ws_port" PARLEY_ADMIN_ADDR=127.0.0.1:0 \
  PARLEY_DATABASE_EMBEDDED_UNSAFE_FAST=true PARLEY_LOG=warn "$bin" serve >"$log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

for _ in $(seq 1 300); do
  if curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; echo "parley exited before it was ready" >&2; exit 1; fi
  sleep 0.2
done
curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null || { cat "$log"; echo "parley never became ready" >&2; exit 1; }

app="$data/dev-application.json"
export PARLEY_API_URL="http://127.0.0.1:$http_port"
export PARLEY_WS_URL="ws://127.0.0.1:$ws_port"
export PARLEY_APP_ID=$(node -e "console.log(require('$app').application_id)")
export PARLEY_AUTH_KEY=$(node -e "console.log(require('$app').auth_key)")

cd "$here"
[ -d node_modules/connectycube ] || npm ci --no-audit --no-fund
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=./results-reporter.mjs --test-reporter-destination=results.json ./*.test.js
