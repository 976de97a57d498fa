#!/usr/bin/env bash
# Chat REST benchmark (issues 3 and 4): seeds 10k users, 100k group dialogs and 1M messages into
# a throw-away Parley (embedded PostgreSQL), then measures with wrk, server pinned to CPU 0 and
# wrk to CPU 1:
#   GET /chat/Dialog for a user in 200 dialogs (sorted by last_message_date_sent, unread counts),
#   a history page of 100 from a 100k-message dialog, GET /chat/Message/unread, GET /chat/search,
#   POST /chat/Message sustained (with inbox updates);
# and logs each endpoint's query plans (auto_explain) into the results folder.
# Usage: tools/chat-bench.sh            (full size; ~2 min seeding)
#        SMALL=1 tools/chat-bench.sh    (1k users, 10k dialogs, 110k messages: a smoke run)
# Env: DURATION (s per endpoint, default 10), CONNS (wrk connections, default 16),
#      CREATE_CONNS (connections for the create throughput run, default CONNS),
#      ONLY (space-separated endpoint names to run, e.g. ONLY="dialog-list"; default: all),
#      BIN (a prebuilt parley binary to measure instead of building this tree's, for
#      before/after comparisons on the same seed size).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-10}
conns=${CONNS:-16}
create_conns=${CREATE_CONNS:-$conns}
if [ -n "${SMALL:-}" ]; then users=1000 dialogs=10000 big=10000 busy=1000 per=100; else users=10000 dialogs=100000 big=100000 busy=9000 per=100; fi
mine=200
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ -n "${BIN:-}" ]; then bin=$(realpath "$BIN"); else (cd "$root" && cargo build --release --bin parley); bin="$root/target/release/parley"; fi

out="$root/target/chat-bench-results"
mkdir -p "$out"
data=$(mktemp -d "$root/target/chat-bench.XXXXXX")
chmod 755 "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api="http://127.0.0.1:$port"
# XMPP listeners on free ports: the defaults may belong to another Parley on this machine.
export PARLEY_XMPP_ADDR=127.0.0.1:0 PARLEY_XMPP_TLS_ADDR=127.0.0.1:0 PARLEY_WS_ADDR=127.0.0.1:0 PARLEY_ADMIN_ADDR=127.0.0.1:0
# wrk sends thousands of requests per second with one token from 127.0.0.1: lift the request and
# message rate limits (0 = unlimited), which do not exempt loopback.
export PARLEY_HTTP_REQUESTS_PER_SEC_PER_IP=0 PARLEY_HTTP_REQUESTS_PER_SEC_PER_TOKEN=0 \
  PARLEY_CHAT_MESSAGES_PER_SEC_PER_USER=0
PARLEY_DATA_DIR="$data" PARLEY_HTTP_ADDR="127.0.0.1:$port" PARLEY_DATABASE_URL= PARLEY_LOG=warn \
  PARLEY_DATABASE_POOL_SIZE=16 taskset -c 0 "$bin" serve >"$data/parley.log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for _ in $(seq 1 300); do curl -fs "$api/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
app_id=$(python3 -c "import json;print(json.load(open('$data/dev-application.json'))['application_id'])")
auth_key=$(python3 -c "import json;print(json.load(open('$data/dev-application.json'))['auth_key'])")
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
session=$(curl -fs -X POST "$api/session" -H 'Content-Type: application/json' \
  -d "{\"application_id\":$app_id,\"auth_key\":\"$auth_key\",\"user\":{\"login\":\"bench_user\",\"password\":\"bench-password\"}}")
token=$(echo "$session" | json "d['session']['token']")
uid=$(echo "$session" | json "d['session']['user_id']")

psql_() { psql -X -q -h "$data/postgres/run" -U parley -d parley "$@"; }
echo "seeding: $users users, $dialogs dialogs, $((big + busy * per)) messages..."
t0=$(date +%s)
psql_ -v app="$app_id" -v uid="$uid" -v users="$users" -v dialogs="$dialogs" -v mine="$mine" -v big="$big" -v busy="$busy" -v per="$per" \
  -f "$root/tools/chat-bench/seed.sql"
echo "seeded in $(( $(date +%s) - t0 )) s"
big_dialog="d$(printf '%023x' 1)"
small_dialog="d$(printf '%023x' 2)"

run() { # name, then wrk arguments (C: connections, default $conns)
  local name=$1; shift
  case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
  taskset -c 1 wrk -t1 -c"${C:-$conns}" -d"${duration}s" --latency -H "CB-Token: $token" "$@" >"$out/$name.txt" 2>&1
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$out/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$out/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$out/$name.txt")
  local errs
  errs=$(awk '/Non-2xx/ {print $NF}' "$out/$name.txt")
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "${errs:-0}" | tee -a "$out/summary.md"
}
: >"$out/summary.md"
echo "| endpoint | requests/s | p50 | p99 | non-2xx |" | tee -a "$out/summary.md"
echo "|---|---|---|---|---|" | tee -a "$out/summary.md"
run dialog-list "$api/chat/Dialog.json?limit=100&sort_desc=last_message_date_sent"
run history-page "$api/chat/Message.json?chat_dialog_id=$big_dialog&limit=100&sort_desc=date_sent"
run unread "$api/chat/Message/unread.json"
# A selective term (a fragment of one body's random word) and a common one (in ~1/1000 bodies,
# but made of trigrams found in every body).
rare=$(python3 -c "import hashlib; print(hashlib.md5(b'500').hexdigest()[:8])")
run search-rare "$api/chat/search.json?search_text=$rare&limit=20"
run search-common "$api/chat/search.json?search_text=topic421&limit=20"
C=$create_conns TOKEN=$token DIALOGS=$mine run message-create -s "$root/tools/chat-bench/post-message.lua" "$api/chat/Message.json"

# The plans PostgreSQL chose for one request of each kind.
psql_ -c "LOAD 'auto_explain'" -c "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'" \
  -c "ALTER SYSTEM SET auto_explain.log_min_duration = 0" -c "ALTER SYSTEM SET auto_explain.log_analyze = on" >/dev/null
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
PARLEY_DATA_DIR="$data" PARLEY_HTTP_ADDR="127.0.0.1:$port" PARLEY_DATABASE_URL= PARLEY_LOG=warn "$bin" serve >>"$data/parley.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do curl -fs "$api/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
log="$data/postgres/log/postgresql.log"
: >"$log"
for path in "/chat/Dialog.json?limit=100&sort_desc=last_message_date_sent" "/chat/Message.json?chat_dialog_id=$big_dialog&limit=100&sort_desc=date_sent" \
            "/chat/Message/unread.json" "/chat/search.json?search_text=$rare&limit=20"; do
  curl -fs "$api$path" -H "CB-Token: $token" >/dev/null
done
cp "$log" "$out/plans.log"
echo "plans: $out/plans.log; raw wrk output: $out/*.txt"
