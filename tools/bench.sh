#!/usr/bin/env bash
# Side-by-side benchmark of Parley, ejabberd and Prosody on this machine with tools/loadgen.
#
#   tools/bench.sh run            # everything: install, configure, 3 repetitions, medians, table
#   tools/bench.sh smoke          # short runs against ejabberd and Prosody only (validation)
#   tools/bench.sh fanout        one sender into rooms of 10, 100, 1,000 (parley, ejabberd)
#   tools/bench.sh start|stop|pid ejabberd|prosody|parley
#   tools/bench.sh table DIR      # print the markdown table for a results directory
#   tools/bench.sh ab BIN_A BIN_B [SCENARIO]  # two Parley builds, interleaved A B A B …
#                                 (BENCH_REPS pairs, default pairs50): the cost of a change
#
# Environment: BENCH_REPS (3), BENCH_DURATION (10 s per measured phase), BENCH_CONNS (10000),
# BENCH_WORK (/tmp/parley-bench: configs, data, logs), BENCH_SERVERS ("relay parley ejabberd
# prosody"; "relay" is loadgen's minimal byte-scanning relay: the generator's own ceiling).
# Every server listens on 127.0.0.1 only, on ports of its own; servers are pinned to CPU 0 and
# the generator to CPU 1. Raw JSON lands in tools/bench-results/<UTC time>/ (gitignored).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/parley-bench}
REPS=${BENCH_REPS:-3}
DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-10000}
SERVERS=${BENCH_SERVERS:-"relay parley ejabberd prosody"}
PASS=loadgen-pass
SERVER_CPU=0
GEN_CPU=1
LOADGEN=$ROOT/target/release/loadgen
PARLEY=${PARLEY_BIN:-$ROOT/target/release/parley}   # PARLEY_BIN measures another build

# Ports: ejabberd 152xx, Prosody 252xx, Parley 352xx (+ REST 38080), relay 45222.
EJ_C2S=15222 EJ_TLS=15223 EJ_WS=15280
PR_C2S=25222 PR_TLS=25223 PR_WS=25280 PR_S2S=25269
PA_C2S=35222 PA_TLS=35223 PA_WS=35291 PA_HTTP=38080
RELAY=45222

log() { echo "bench: $*" >&2; }

install_servers() {
    if ! command -v ejabberdctl >/dev/null || ! command -v prosody >/dev/null; then
        log "installing ejabberd and prosody from Debian"
        apt-get update -qq
        # policy-rc.d in containers keeps the packaged services from starting; we never use them.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q ejabberd prosody >/dev/null
    fi
}

build() {
    log "building loadgen (release)"
    (cd "$ROOT" && cargo build --release -q -p loadgen)
    if [[ " $SERVERS " == *" parley "* && ! -x $PARLEY ]]; then
        log "building parley (release)"
        (cd "$ROOT" && cargo build --release -q)
    fi
}

cert() {
    mkdir -p "$WORK"
    chmod 755 "$WORK"
    if [[ ! -f $WORK/cert.pem ]]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
            -addext "subjectAltName=DNS:localhost,DNS:muc.localhost" \
            -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
        cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"
        chmod 644 "$WORK"/*.pem
    fi
}

wait_port() { # port seconds
    local end=$((SECONDS + ${2%.*}))
    while true; do
        ss -Hltn "sport = :$1" | grep -q LISTEN && return 0
        ((SECONDS >= end)) && return 1
        sleep 0.1
    done
}

port_pid() { ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

# ---------------------------------------------------------------- ejabberd
# Limits raised from ejabberd's defaults so they do not distort results:
#   c2s_shaper none (default "normal" = 1000 B/s per connection), max_fsm_queue 100000 (10000),
#   registration_timeout infinity (one registration per IP per 600 s), mod_muc max_users 1000
#   (200), max_user_sessions 10 kept. Passwords stored plain (auth_password_format: plain) so
#   SASL PLAIN costs no PBKDF2 per login (with SCRAM storage ejabberd logins are far slower).
ejabberd_config() {
    local d=$WORK/ejabberd
    mkdir -p "$d/spool" "$d/logs"
    cat >"$d/ejabberd.yml" <<EOF
hosts: ["localhost"]
loglevel: warning
certfiles: ["$WORK/combined.pem"]
auth_method: internal
auth_password_format: plain
registration_timeout: infinity
max_fsm_queue: 100000
shaper:
  normal: 1000
  fast: 50000
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
acl:
  local:
    user_regexp: ""
  loopback:
    ip: ["127.0.0.0/8", "::1/128"]
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
  muc_create:
    allow: local
listen:
  - port: $EJ_C2S
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    backlog: 1024
    shaper: c2s_shaper
    access: c2s
    starttls: true
  - port: $EJ_TLS
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    backlog: 1024
    shaper: c2s_shaper
    access: c2s
    tls: true
  - port: $EJ_WS
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /ws: ejabberd_http_ws
modules:
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_register:
    access: register
    ip_access: all
  mod_muc:
    host: "muc.@HOST@"
    access: all
    access_create: muc_create
    access_persistent: muc_create
    access_admin: none
    history_size: 20
    max_users: 1000
    max_user_conferences: 100
EOF
    cat >"$d/ejabberdctl.cfg" <<EOF
ERLANG_NODE=lgbench@localhost
ERL_MAX_PORTS=65536
ERL_PROCESSES=1000000
INET_DIST_INTERFACE=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
EOF
    chown -R ejabberd:ejabberd "$d"
}

ejabberdctl_() {
    local d=$WORK/ejabberd
    ${PIN:-} ejabberdctl --config-dir "$d" --config "$d/ejabberd.yml" \
        --ctl-config "$d/ejabberdctl.cfg" --spool "$d/spool" --logs "$d/logs" "$@"
}

start_ejabberd() {
    ejabberd_config
    : >"$WORK/ejabberd/logs/error.log"
    # Run ejabberdctl as the ejabberd user ourselves: its own "su ejabberd" would reset the
    # open-file soft limit to 1024 (ejabberd then fails accept() at ~1,000 connections).
    su -s /bin/bash ejabberd -c "ulimit -n \$(ulimit -Hn); cd $WORK/ejabberd/spool; WORK=$WORK; \
        $(declare -f ejabberdctl_); PIN='taskset -c $SERVER_CPU' ejabberdctl_ start"
    for _ in $(seq 600); do
        wait_port $EJ_C2S 0.1 && return 0
        if grep -q critical "$WORK/ejabberd/logs/error.log" 2>/dev/null; then break; fi
    done
    log "ejabberd did not start:"
    tail -3 "$WORK/ejabberd/logs/error.log" >&2
    return 1
}

stop_ejabberd() { ejabberdctl_ stop >/dev/null 2>&1 || true; ejabberdctl_ stopped >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- Prosody
# Limits: mod_limits not loaded (no c2s rate limit); registration from loopback is on Prosody's
# default allow list (no throttle); c2s_stanza_size_limit default (256 KiB); MUC rooms not locked
# on creation (muc_room_locking = false) and no room cache eviction below 10000 rooms.
prosody_config() {
    local d=$WORK/prosody
    mkdir -p "$d/data"
    cat >"$d/prosody.cfg.lua" <<EOF
run_as_root = true
daemonize = false
pidfile = "$d/prosody.pid"
data_path = "$d/data"
log = { warn = "$d/prosody.log" }
admins = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"; "websocket"; "posix" }
modules_disabled = { "s2s" }
authentication = "internal_plain"
allow_registration = true
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
c2s_ports = { $PR_C2S }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { $PR_TLS }
c2s_direct_tls_interfaces = { "127.0.0.1" }
s2s_ports = { $PR_S2S }
s2s_interfaces = { "127.0.0.1" }
http_ports = { $PR_WS }
http_interfaces = { "127.0.0.1" }
https_ports = { }
consider_websocket_secure = true
certificates = "$d/certs"
ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
c2s_direct_tls_ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
VirtualHost "localhost"
  ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
Component "muc.localhost" "muc"
  ssl = { certificate = "$WORK/cert.pem"; key = "$WORK/key.pem" }
  muc_room_locking = false
  muc_room_cache_size = 10000
  restrict_room_creation = false
EOF
    mkdir -p "$d/certs"
}

start_prosody() {
    prosody_config
    local d=$WORK/prosody
    (
        cd "$d" || exit 1
        nohup taskset -c $SERVER_CPU prosody --config "$d/prosody.cfg.lua" -F \
            >>"$d/stdout.log" 2>&1 &
    )
    wait_port $PR_C2S 30 || { log "prosody did not start; see $d/prosody.log"; return 1; }
}

stop_prosody() {
    local d=$WORK/prosody pid
    pid=$(cat "$d/prosody.pid" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
}

# ---------------------------------------------------------------- Parley
start_parley() {
    local d=$WORK/parley
    mkdir -p "$d"
    chmod 755 "$d"
    [[ -x $PARLEY ]] || { log "no $PARLEY (cargo build --release)"; return 1; }
    # Provisioned users (id, token) are cached across runs; a new data directory voids them.
    [[ -d $d/data ]] || rm -f "$d/users.cache"
    (
        cd "$d" || exit 1
        # Every connection and message comes from 127.0.0.1, and loopback is not exempt from
        # the caps and rate limits, so lift them as for ejabberd's shapers: the connection caps
        # off (0), the rate limiters left on with rates no run reaches, so their cost is measured.
        PARLEY_DATA_DIR=$d/data PARLEY_HTTP_ADDR=127.0.0.1:$PA_HTTP \
            PARLEY_XMPP_ADDR=127.0.0.1:$PA_C2S PARLEY_XMPP_TLS_ADDR=127.0.0.1:$PA_TLS \
            PARLEY_WS_ADDR=127.0.0.1:$PA_WS PARLEY_ADMIN_ADDR=127.0.0.1:0 PARLEY_LOG=warn \
            PARLEY_XMPP_MAX_CONNECTIONS=0 PARLEY_XMPP_MAX_CONNECTIONS_PER_IP=0 \
            PARLEY_HTTP_MAX_CONNECTIONS=0 PARLEY_HTTP_MAX_CONNECTIONS_PER_IP=0 \
            PARLEY_HTTP_REQUESTS_PER_SEC_PER_IP=100000000 PARLEY_HTTP_REQUEST_BURST_PER_IP=100000000 \
            PARLEY_HTTP_REQUESTS_PER_SEC_PER_TOKEN=100000000 PARLEY_HTTP_REQUEST_BURST_PER_TOKEN=100000000 \
            PARLEY_CHAT_MESSAGES_PER_SEC_PER_USER=100000000 PARLEY_CHAT_MESSAGE_BURST_PER_USER=100000000 \
            PARLEY_PASSWORDS_MAX_PENDING_HASHES=100000 \
            nohup taskset -c $SERVER_CPU "$PARLEY" >>"$d/parley.log" 2>&1 &
        echo $! >"$d/parley.pid"
    )
    wait_port $PA_HTTP 120 || { log "parley did not start; see $d/parley.log"; return 1; }
}

stop_parley() {
    local pid
    pid=$(cat "$WORK/parley/parley.pid" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid"
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        # A server still draining after 30 s would be measured again as the "fresh" process.
        if kill -0 "$pid" 2>/dev/null; then
            log "parley did not stop in 30 s: killed"
            kill -KILL "$pid"
            sleep 1
        fi
    fi
}

# ---------------------------------------------------------------- calibration relay
start_relay() {
    mkdir -p "$WORK/relay"
    (
        nohup taskset -c $SERVER_CPU "$LOADGEN" relay --addr 127.0.0.1:$RELAY --duration 7200 \
            >>"$WORK/relay/relay.log" 2>&1 &
        echo $! >"$WORK/relay/relay.pid"
    )
    wait_port $RELAY 10
}

stop_relay() {
    local pid
    pid=$(cat "$WORK/relay/relay.pid" 2>/dev/null || true)
    [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
}

parley_app() { # prints "ID KEY"
    jq -r '"\(.application_id) \(.auth_key)"' "$WORK/parley/data/dev-application.json"
}

server_pid() {
    case $1 in
        ejabberd) port_pid $EJ_C2S ;;
        prosody) port_pid $PR_C2S ;;
        parley) cat "$WORK/parley/parley.pid" ;;
        relay) cat "$WORK/relay/relay.pid" ;;
    esac
}

# Loadgen arguments that select a server.
target_args() {
    case $1 in
        ejabberd) echo "--port $EJ_C2S --domain localhost --label ejabberd --password $PASS" ;;
        prosody) echo "--port $PR_C2S --domain localhost --label prosody --password $PASS" ;;
        relay) echo "--port $RELAY --domain localhost --label relay --password $PASS" ;;
        parley)
            read -r id key < <(parley_app)
            echo "--port $PA_C2S --domain localhost --label parley --parley" \
                "--api http://127.0.0.1:$PA_HTTP --app-id $id --auth-key $key" \
                "--user lg{i} --password $PASS --parley-cache $WORK/parley/users.cache"
            ;;
    esac
}

# name | scenario arguments | servers it applies to
define_scenarios() {
SCENARIOS=(
    "pairs50|pairs --pairs 50 --window 16|relay parley ejabberd prosody"
    "rate4000|pairs --pairs 50 --rate 4000|relay parley ejabberd prosody"
    "muc100|muc --rooms 1 --occupants 100 --senders 5 --window 4|parley ejabberd prosody"
    "conns|conns --count $CONNS --concurrency 64 --setup-timeout 1800|parley ejabberd prosody"
    "conns_tls|conns --count $CONNS --concurrency 64 --setup-timeout 1800 --transport starttls|parley ejabberd prosody"
    "logins_password|conns --count $((CONNS < 2000 ? CONNS : 2000)) --concurrency 64 --xmpp-auth password|parley"
    "tls|pairs --pairs 50 --window 16 --transport starttls|parley ejabberd prosody"
    "pairs_idle|pairs --pairs 50 --window 16 --idle $CONNS --setup-timeout 1800|parley ejabberd prosody"
    "history|history --pairs 50 --window 16|parley"
    "rest|rest --workers 8|parley"
)
}

run_one() { # server name args out
    local server=$1 name=$2 args=$3 out=$4 extra=""
    [[ $name == conns* ]] && extra="--server-pid $(server_pid "$server")"
    # shellcheck disable=SC2046,SC2086
    taskset -c $GEN_CPU "$LOADGEN" $args $(target_args "$server") --duration "$DUR" \
        --quiet --json $extra >"$out" 2>"$out.stderr" || true
    [[ -s $out ]] || echo '{"na": "no result: see the .stderr file"}' >"$out"
}

register_users() { # server count
    log "registering user1..user$2 on $1"
    local port=$EJ_C2S
    [[ $1 == prosody ]] && port=$PR_C2S
    taskset -c $GEN_CPU "$LOADGEN" register --port $port --count "$2" --password $PASS \
        --concurrency 16 --quiet --setup-timeout 1800 >/dev/null 2>&1 || true
}

parley_has_xmpp() { ss -Hltn "sport = :$PA_C2S" | grep -q LISTEN; }

bench_server() { # server dir users
    local server=$1 dir=$2 users=$3
    log "== $server"
    "start_$server" || { log "$server failed to start: marked n/a"; return 0; }
    [[ $server == ejabberd || $server == prosody ]] && register_users "$server" "$users"
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r name args applies <<<"$entry"
        [[ " $applies " == *" $server "* ]] || continue
        if [[ $server == parley && $name != rest ]] && ! parley_has_xmpp; then
            echo '{"na": "Parley has no XMPP listener in this build"}' >"$dir/${server}_${name}_1.json"
            continue
        fi
        for rep in $(seq "$REPS"); do
            if [[ $name == conns* ]]; then
                # RSS per connection needs a fresh process: memory freed by earlier scenarios
                # stays resident and would be reused by the new connections.
                "stop_$server"
                sleep 1
                "start_$server" || { log "$server failed to restart"; break; }
            fi
            log "$server $name rep $rep"
            run_one "$server" "$name" "$args" "$dir/${server}_${name}_${rep}.json"
        done
    done
    "stop_$server"
}

versions() {
    echo "ejabberd $(dpkg-query -W -f '${Version}' ejabberd 2>/dev/null)," \
        "prosody $(dpkg-query -W -f '${Version}' prosody 2>/dev/null)," \
        "parley $(cd "$ROOT" && git rev-parse --short HEAD)"
}

table() { python3 - "$1" <<'PY'
import json, os, statistics, sys, glob
d = sys.argv[1]
def runs(server, name):
    out = []
    for f in sorted(glob.glob(os.path.join(d, f"{server}_{name}_[0-9]*.json"))):
        try:
            j = json.load(open(f))
        except Exception:
            continue
        out.append(j)
    return out
def med(server, name, get):
    vals = []
    for j in runs(server, name):
        if "na" in j:
            return None, j["na"]
        try:
            v = get(j)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.append(v)
    if not vals:
        return None, "n/a"
    return statistics.median(vals), None
def lost(server, name):
    return sum(j.get("lost", 0) for j in runs(server, name) if "na" not in j)
M = lambda k: (lambda j: j["metrics"][k])
L = lambda k: (lambda j: j["latency"][k] / 1000.0)
rows = [
  ("pairs: 50 pairs, max delivered msgs/s, p99", "pairs50", [("msgs/s", M("delivered_per_s"), "{:,.0f}", True), ("p99 ms", L("p99_us"), "{:.2f}", False)]),
  ("pairs: 4,000 msgs/s offered, p50/p99 latency", "rate4000", [("p50 ms", L("p50_us"), "{:.2f}", False), ("p99 ms", L("p99_us"), "{:.2f}", False)]),
  ("muc: 100 occupants, max deliveries/s, p99", "muc100", [("deliv/s", M("deliveries_per_s"), "{:,.0f}", True), ("p99 ms", L("p99_us"), "{:.2f}", False)]),
  ("conns: idle, RSS per connection, login rate", "conns", [("KiB/conn", M("rss_per_conn_kib"), "{:.1f}", False), ("logins/s", M("logins_per_s"), "{:,.0f}", True)]),
  ("conns over STARTTLS: RSS per connection, login rate", "conns_tls", [("KiB/conn", M("rss_per_conn_kib"), "{:.1f}", False), ("logins/s", M("logins_per_s"), "{:,.0f}", True)]),
  ("logins/s with password auth (Parley: argon2; token auth is the conns row)", "logins_password", [("logins/s", M("logins_per_s"), "{:,.0f}", True)]),
  ("pairs over TLS (STARTTLS), msgs/s, p99", "tls", [("msgs/s", M("delivered_per_s"), "{:,.0f}", True), ("p99 ms", L("p99_us"), "{:.2f}", False)]),
  ("pairs after a login burst (idle conns held), msgs/s, p99", "pairs_idle", [("msgs/s", M("delivered_per_s"), "{:,.0f}", True), ("p99 ms", L("p99_us"), "{:.2f}", False)]),
  ("history (save_to_history=1) msgs/s", "history", [("msgs/s", M("delivered_per_s"), "{:,.0f}", True)]),
  ("REST mix requests/s, p99", "rest", [("req/s", M("requests_per_s"), "{:,.0f}", True), ("p99 ms", L("p99_us"), "{:.2f}", False)]),
]
servers = ["parley", "ejabberd", "prosody"]
print("| scenario | Parley | ejabberd | Prosody | Parley / best other |")
print("|---|---|---|---|---|")
for title, name, metrics in rows:
    cells = {s: [] for s in servers}
    ratio = []
    for label, get, fmt, higher in metrics:
        vals = {}
        for s in servers:
            v, why = med(s, name, get)
            vals[s] = v
            cells[s].append(f"{fmt.format(v)} {label}" if v is not None else "n/a")
        others = [vals[s] for s in ("ejabberd", "prosody") if vals[s] is not None]
        if vals["parley"] is not None and others:
            best = max(others) if higher else min(others)
            ratio.append(f"{vals['parley'] / best:.2f}× {label}" if best else "–")
        else:
            ratio.append("n/a")
    for s in servers:
        l = lost(s, name)
        if l:
            cells[s].append(f"**{l} lost**")
    def cell(parts):
        return "n/a" if all(p == "n/a" for p in parts) else ", ".join(parts)
    print(f"| {title} | " + " | ".join(cell(cells[s]) for s in servers) + f" | {cell(ratio)} |")
relay = []
for title, name, get, fmt in [("max delivered msgs/s (50 pairs, window 16)", "pairs50", M("delivered_per_s"), "{:,.0f}"),
                              ("p99 ms at 4,000 msgs/s offered", "rate4000", L("p99_us"), "{:.2f}")]:
    v, _ = med("relay", name, get)
    if v is not None:
        relay.append(f"{title}: {fmt.format(v)}")
if relay:
    print("\nGenerator ceiling (loadgen's minimal relay on the server core): " + "; ".join(relay))
PY
}

fanout_table() { python3 - "$1" "$SERVERS" <<'PY'
import glob, json, os, statistics, sys
d, servers = sys.argv[1], sys.argv[2].split()
print("| room size | " + " | ".join(f"{s}: deliveries/s, p50/p99 ms" for s in servers) + " |")
print("|---|" + "---|" * len(servers))
for size in ("10", "100", "1000"):
    cells = []
    for s in servers:
        runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, f"{s}_room{size}_*.json")))]
        runs = [r for r in runs if "na" not in r and "metrics" in r]
        if not runs:
            cells.append("n/a")
            continue
        med = lambda f: statistics.median(f(r) for r in runs)
        lost = sum(r.get("lost", 0) for r in runs)
        cells.append(f"{med(lambda r: r['metrics']['deliveries_per_s']):,.0f}, "
                     f"{med(lambda r: r['latency']['p50_us']) / 1000:.2f}/{med(lambda r: r['latency']['p99_us']) / 1000:.2f}"
                     + (f" (LOST {lost})" if lost else ""))
    print(f"| {size} | " + " | ".join(cells) + " |")
PY
}

main() {
    local cmd=${1:-run}
    case $cmd in
        start | stop)
            cert
            "${cmd}_$2"
            ;;
        pid) server_pid "$2" ;;
        table) table "$2" ;;
        run | smoke)
            install_servers
            build
            cert
            local dir
            dir=$ROOT/tools/bench-results/$(date -u +%Y%m%dT%H%M%SZ)
            mkdir -p "$dir"
            if [[ $cmd == smoke ]]; then
                REPS=1 DUR=${BENCH_DURATION:-3} CONNS=${BENCH_CONNS:-300}
                SERVERS=${BENCH_SERVERS:-"relay ejabberd prosody"}
            fi
            define_scenarios
            {
                echo "date: $(date -u)"
                echo "versions: $(versions)"
                echo "nproc: $(nproc)"
                free -h
                lscpu | head -20
            } >"$dir/machine.txt"
            for s in $SERVERS; do
                bench_server "$s" "$dir" $((CONNS + 100))
            done
            log "results in $dir"
            table "$dir"
            ;;
        fanout)
            # Group fan-out (the real-time issue): one sender into one room of 10, 100 and
            # 1,000 occupants; deliveries/s and latency, medians of BENCH_REPS.
            install_servers
            build
            cert
            local dir
            dir=$ROOT/tools/bench-results/fanout-$(date -u +%Y%m%dT%H%M%SZ)
            mkdir -p "$dir"
            SERVERS=${BENCH_SERVERS:-"parley ejabberd"}
            SCENARIOS=(
                "room10|muc --rooms 1 --occupants 10 --senders 1 --window 8|parley ejabberd prosody"
                "room100|muc --rooms 1 --occupants 100 --senders 1 --window 8|parley ejabberd prosody"
                "room1000|muc --rooms 1 --occupants 1000 --senders 1 --window 8 --setup-timeout 600|parley ejabberd prosody"
            )
            for s in $SERVERS; do
                bench_server "$s" "$dir" 1100
            done
            log "results in $dir"
            fanout_table "$dir"
            ;;
        ab)
            # The cost of a change: the same scenario on two builds, alternated so that both
            # see the same machine (noise, thermal state, page cache); medians per build.
            local a=$2 b=$3 want=${4:-pairs50} dir
            build
            cert
            dir=$ROOT/tools/bench-results/ab-$(date -u +%Y%m%dT%H%M%SZ)
            mkdir -p "$dir"
            define_scenarios
            local args=""
            for entry in "${SCENARIOS[@]}"; do
                IFS='|' read -r name sargs _ <<<"$entry"
                [[ $name == "$want" ]] && args=$sargs
            done
            [[ -n $args ]] || { log "no scenario $want"; exit 2; }
            for rep in $(seq "$REPS"); do
                for side in a b; do
                    PARLEY=$a
                    [[ $side == b ]] && PARLEY=$b
                    # A fresh data directory per build: users are provisioned by each.
                    WORK=$ROOT/tools/bench-results/.ab-work-$side
                    start_parley || exit 1
                    log "$side ($PARLEY) $want rep $rep"
                    run_one parley "$want" "$args" "$dir/${side}_${want}_${rep}.json"
                    stop_parley
                done
            done
            python3 - "$dir" "$want" "$a" "$b" <<'PY'
import glob, json, os, statistics, sys
d, want, a, b = sys.argv[1:5]
for side, binary in (("a", a), ("b", b)):
    rs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, f"{side}_{want}_*.json")))]
    rs = [r for r in rs if "na" not in r]
    if not rs:
        print(f"{side}: no result"); continue
    m = [r["metrics"].get("delivered_per_s") or r["metrics"].get("deliveries_per_s") for r in rs]
    p99 = [r["latency"]["p99_us"] / 1000 for r in rs]
    print(f"{side} {binary}: {want} median {statistics.median(m):,.0f}/s (runs: "
          + ", ".join(f"{x:,.0f}" for x in m) + f"), p99 median {statistics.median(p99):.2f} ms")
PY
            ;;
        *)
            sed -n '2,14p' "$0"
            exit 2
            ;;
    esac
}

main "$@"
