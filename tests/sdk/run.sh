#!/usr/bin/env bash
# Starts a throw-away Parley (fresh data dir, embedded PostgreSQL, free loopback ports), runs the
# SDK acceptance tests against it with the real `connectycube` npm package, and stops it.
# Usage: tests/sdk/run.sh [--nodes N] [path/to/parley]   (default: target/debug/parley, built if
# missing)
#
# --nodes N (N >= 2): a cluster instead — a real `nats-server` on a free port and N Parley nodes
# on ONE database (node 1 runs the embedded PostgreSQL; the others reach it through its Unix
# socket with PARLEY_DATABASE_URL) and one blob directory (a shared disk, as nodes of the disk
# store must have). support.js spreads each test file's users over the nodes in turn (the first
# user on node 1, the second on node 2, …), so every 1:1 story crosses the bus. The results go
# to results-Nnodes.json instead of results.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nodes=1
if [ "${1:-}" = "--nodes" ]; then
  nodes=${2:?--nodes needs a number}
  shift 2
fi
case "$nodes" in
  '' | *[!0-9]*) echo "--nodes: not a number: $nodes" >&2; exit 2 ;;
esac
[ "$nodes" -ge 1 ] || { echo "--nodes must be at least 1" >&2; exit 2; }
bin=${1:-$root/target/debug/parley}
results=results.json
[ "$nodes" -eq 1 ] || results="results-${nodes}nodes.json"
# A run that dies before the tests leaves no results (a deleted file in `git diff`), never the
# previous run's.
rm -f "$here/$results"
[ -x "$bin" ] || (cd "$root" && cargo build --bin parley)

data=$(mktemp -d "$root/target/sdk-data.XXXXXX")
chmod 755 "$data"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() {
  # Nodes first (newest first: node 1 owns the database the others use), then NATS.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  rm -rf "$data"
}
trap cleanup EXIT

cluster_env=()
if [ "$nodes" -gt 1 ]; then
  command -v nats-server >/dev/null \
    || { echo "--nodes $nodes needs nats-server (apt-get install nats-server)" >&2; exit 1; }
  nats_port=$(port)
  nats-server -a 127.0.0.1 -p "$nats_port" >"$data/nats.log" 2>&1 &
  pids+=($!)
  cluster_env=(PARLEY_CLUSTER_NATS_URL="nats://127.0.0.1:$nats_port")
fi

# wait_ready URL PID LOG: until URL answers 2xx (or the process dies).
wait_ready() {
  local url=$1 pid=$2 log=$3
  for _ in $(seq 1 300); do
    if curl -fs "$url" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; echo "parley exited before it was ready" >&2; exit 1; fi
    sleep 0.2
  done
  curl -fs "$url" >/dev/null || { cat "$log"; echo "parley never became ready" >&2; exit 1; }
}

api=() ws=() admin=()
for i in $(seq 1 "$nodes"); do
  dir="$data"
  [ "$nodes" -eq 1 ] || dir="$data/node$i"
  mkdir -p "$dir"
  chmod 755 "$dir"
  http_port=$(port) xmpp_port=$(port) xmpp_tls_port=$(port) ws_port=$(port) admin_port=$(port)
  db=
  if [ "$i" -gt 1 ]; then
    # Node 1's embedded PostgreSQL, through its private socket (trust auth, superuser parley);
    # and node 1's blob directory: one disk, one URL-signing key.
    db="host=$data/node1/postgres/run port=5432 user=parley dbname=parley"
    ln -s "$data/node1/blobs" "$dir/blobs"
  fi
  log="$dir/parley.log"
  env PARLEY_DATA_DIR="$dir" PARLEY_HTTP_ADDR="127.0.0.1:$http_port" PARLEY_DATABASE_URL="$db" \
    PARLEY_XMPP_ADDR="127.0.0.1:$xmpp_port" PARLEY_XMPP_TLS_ADDR="127.0.0.1:$xmpp_tls_port" \
    PARLEY_WS_ADDR="127.0.0.1:$ws_port" PARLEY_ADMIN_ADDR="127.0.0.1:$admin_port" \
    PARLEY_CLUSTER_NODE_NAME="sdk-node-$i" "${cluster_env[@]}" \
    PARLEY_DATABASE_EMBEDDED_UNSAFE_FAST=true PARLEY_LOG=warn "$bin" serve >"$log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$http_port/readyz" "$!" "$log"
  api+=("http://127.0.0.1:$http_port")
  ws+=("ws://127.0.0.1:$ws_port")
  admin+=("http://127.0.0.1:$admin_port")
done

# A cluster is ready when every node lists every other as a peer (heartbeats crossed NATS).
if [ "$nodes" -gt 1 ]; then
  for i in $(seq 1 "$nodes"); do
    for j in $(seq 1 "$nodes"); do
      [ "$i" -ne "$j" ] || continue
      ok=
      for _ in $(seq 1 150); do
        if curl -fs "${admin[$((i - 1))]}/readyz" | grep -q "\"sdk-node-$j\""; then ok=1; break; fi
        sleep 0.2
      done
      [ -n "$ok" ] || { cat "$data"/node*/parley.log; echo "node $i never saw node $j" >&2; exit 1; }
    done
  done
fi

app="$data/dev-application.json"
[ "$nodes" -eq 1 ] || app="$data/node1/dev-application.json"
export PARLEY_API_URL=${api[0]}
export PARLEY_WS_URL=${ws[0]}
# The other nodes' endpoints: PARLEY_API_URL_2, PARLEY_WS_URL_2, … (support.js reads them).
for i in $(seq 2 "$nodes"); do
  export "PARLEY_API_URL_$i=${api[$((i - 1))]}" "PARLEY_WS_URL_$i=${ws[$((i - 1))]}"
done
export PARLEY_APP_ID=$(node -e "console.log(require('$app').application_id)")
export PARLEY_AUTH_KEY=$(node -e "console.log(require('$app').auth_key)")

cd "$here"
[ -d node_modules/connectycube ] || npm ci --no-audit --no-fund
node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=./results-reporter.mjs --test-reporter-destination="$results" ./*.test.js
