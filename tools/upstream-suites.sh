#!/usr/bin/env bash
# Runs aioxmpp's upstream end-to-end suite (tests/**/test_e2e.py, run by the `aioxmpp.e2etest`
# pytest plugin) against a throw-away Parley, or with --prosody against the Debian `prosody`
# package (0.12 on bookworm) configured from aioxmpp's own utils/prosody-cfg/0.12, on the same
# machine, and prints passed/failed/skipped per test file and in total. With --slixmpp it runs
# slixmpp's integration tests (itests/, in the slixmpp 1.17.0 sdist on PyPI) instead; Prosody
# then gets slixmpp's own itests/prosody.cfg.lua, on localhost.
#
# Usage: tools/upstream-suites.sh [--slixmpp] [--prosody] [--keep] [path/to/parley] [-- args…]
#   --slixmpp  slixmpp's itests instead of aioxmpp's e2e tests (they connect to localhost:5222
#              and :5223, which must be free; certificates are verified: the server's own
#              development certificate is trusted through SSL_CERT_FILE)
#   --prosody  test Prosody instead of Parley (needs `apt-get install -y prosody`; the system
#              service is not used: a private config, data dir and loopback ports, stopped after)
#   --keep     keep the private data dir (server log, test log, junit XML) for a look
# Needs: network once (Debian's mirror for aioxmpp, PyPI for slixmpp; cached under
# target/upstream-suites/), python3 with aioxmpp 0.13.3 and pytest (`pip install
# aioxmpp==0.13.3 pytest`), and for slixmpp's itests aiodns and pyasn1-modules (slixmpp's own
# dependencies; its source tree is used as is, in pure Python).
# Not part of .ci/run: it needs the network and takes a few minutes.
#
# Both servers get the same provisioner, aioxmpp's StaticPasswordProvisioner, with the same
# number of accounts (Parley has no SASL ANONYMOUS nor an "any password" auth, which aioxmpp's
# own Prosody setup uses): Parley's accounts are signed up over REST, Prosody's with
# `prosodyctl register`. TLS is not verified (`no_verify`: a development certificate on
# loopback). Parley runs with `xmpp.room_default_persistent = false`, Prosody's default: the
# accounts are the same in every test, and the suite's MUC tests expect the room they ban
# people from to be gone once everyone left it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
server=parley
suite=aioxmpp
keep=false
bin=$root/target/debug/parley
while [ $# -gt 0 ]; do
  case "$1" in
    --prosody) server=prosody ;;
    --slixmpp) suite=slixmpp ;;
    --keep) keep=true ;;
    --) shift; break ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) bin=$1 ;;
  esac
  shift
done
accounts=8

# --- the aioxmpp source (Debian's orig tarball carries the e2e tests; PyPI's sdist does not) ---
cache=$root/target/upstream-suites
aio=$cache/aioxmpp-0.13.3
if [ ! -f "$aio/aioxmpp/e2etest/provision.py" ]; then
  mkdir -p "$cache/apt/lists/partial"
  echo "deb-src http://deb.debian.org/debian bookworm main" >"$cache/apt/src.list"
  aptopts=(-o Dir::Etc::SourceList="$cache/apt/src.list" -o Dir::Etc::SourceParts=/dev/null
           -o Dir::State::Lists="$cache/apt/lists" -o Dir::Cache="$cache/apt/cache")
  apt-get "${aptopts[@]}" update >/dev/null
  # The .debian.tar.xz may 404 on a mirror that dropped it; the orig tarball is all we need.
  (cd "$cache" && apt-get "${aptopts[@]}" source --download-only python-aioxmpp=0.13.3-1 || true)
  [ -f "$cache/python-aioxmpp_0.13.3.orig.tar.gz" ] || { echo "could not fetch python-aioxmpp_0.13.3.orig.tar.gz" >&2; exit 1; }
  rm -rf "$aio.tmp" && mkdir -p "$aio.tmp"
  tar xzf "$cache/python-aioxmpp_0.13.3.orig.tar.gz" -C "$aio.tmp"
  # This tarball has its files at the top; a future one may wrap them in one directory.
  top=$aio.tmp
  [ -f "$top/setup.py" ] || top=$(dirname "$(find "$aio.tmp" -maxdepth 2 -name setup.py | head -n 1)")
  mv "$top" "$aio"
  rm -rf "$aio.tmp"
fi
python3 -c 'import pytest, aioxmpp' || { echo "needs python3 -m pip install pytest aioxmpp==0.13.3" >&2; exit 1; }

# --- slixmpp's itests: in the sdist since 1.9 or so (not in 1.8.x, nor Debian's orig tarball,
# which 404s on the mirror anyway) ---
slix=$cache/slixmpp-1.17.0
if [ "$suite" = slixmpp ] && [ ! -f "$slix/run_integration_tests.py" ]; then
  mkdir -p "$cache"
  python3 -m pip download -q --no-deps --no-binary :all: slixmpp==1.17.0 -d "$cache"
  tar xzf "$cache/slixmpp-1.17.0.tar.gz" -C "$cache"
fi
if [ "$suite" = slixmpp ]; then
  python3 -c 'import aiodns, pyasn1_modules' || { echo "needs python3 -m pip install aiodns pyasn1-modules" >&2; exit 1; }
  for p in 5222 5223; do
    # A listener answers a connect (a bind would also trip over the last run's TIME_WAIT).
    ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $p), 1)" 2>/dev/null \
      || { echo "slixmpp's itests connect to localhost:$p, which is taken" >&2; exit 1; }
  done
  accounts=2
fi

mkdir -p "$root/target"
run=$(mktemp -d "$root/target/upstream-run.XXXXXX")
chmod 755 "$run"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pid=
status_pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$status_pid" ]; then kill -TERM "$status_pid" 2>/dev/null || true; wait "$status_pid" 2>/dev/null || true; fi
  if $keep; then echo "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
xmpp_port=$(port)
tls_port=$(port)
if [ "$suite" = slixmpp ]; then xmpp_port=5222; tls_port=5223; fi
list="["

if [ "$server" = parley ]; then
  [ -x "$bin" ] || (cd "$root" && cargo build --bin parley)
  http_port=$(port)
  # XEP-0455: the outage status document lives on another web server than the one it reports
  # on; here a loopback python http.server with "no outage" ({}), named in Parley's config.
  status_port=$(port)
  mkdir -p "$run/status" && echo '{}' >"$run/status/status.json"
  python3 -m http.server --bind 127.0.0.1 --directory "$run/status" "$status_port" >/dev/null 2>&1 &
  status_pid=$!
  printf '[xmpp]\noutage_status_urls = ["http://127.0.0.1:%s/status.json"]\n' "$status_port" >"$run/parley.toml"
  PARLEY_CONFIG="$run/parley.toml" PARLEY_DATA_DIR="$run/data" PARLEY_HTTP_ADDR="127.0.0.1:$http_port" PARLEY_DATABASE_URL= \
    PARLEY_XMPP_ADDR="127.0.0.1:$xmpp_port" PARLEY_XMPP_TLS_ADDR="127.0.0.1:$tls_port" \
    PARLEY_WS_ADDR="127.0.0.1:$(port)" PARLEY_ADMIN_ADDR=127.0.0.1:0 \
    PARLEY_DATABASE_EMBEDDED_UNSAFE_FAST=true PARLEY_LOG=warn \
    PARLEY_XMPP_ROOM_DEFAULT_PERSISTENT=false PARLEY_XMPP_ARCHIVE_PLAIN_MESSAGES=true "$bin" serve >"$run/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$run/server.log"; echo "parley exited before it was ready" >&2; exit 1; }
    sleep 0.2
  done
  curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null || { cat "$run/server.log"; echo "parley never became ready" >&2; exit 1; }
  # Accounts: signed up over REST as an application's users; the XMPP login is {id}-{app}.
  list=$(python3 - "$http_port" "$run/data/dev-application.json" "$accounts" <<'PY'
import json, sys, urllib.request
port, appfile, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = json.load(open(appfile))
base = f"http://127.0.0.1:{port}"
def call(method, path, body, token=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json", **({"CB-Token": token} if token else {})})
    return json.load(urllib.request.urlopen(req))
token = call("POST", "/session", {"application_id": app["application_id"], "auth_key": app["auth_key"]})["session"]["token"]
out = []
for i in range(n):
    login, password = f"e2e{i}", f"e2e-pass-{i}-secret"
    user = call("POST", "/users", {"user": {"login": login, "password": password}}, token)["user"]
    out.append((f"{user['id']}-{app['application_id']}", password))
print(repr(out))
PY
)
  section="host=127.0.0.1
domain=localhost
port=$xmpp_port
no_verify=true"
else
  command -v prosody >/dev/null || { echo "needs the prosody package (apt-get install -y prosody)" >&2; exit 1; }
  cfgdir=$aio/utils/prosody-cfg/0.12
  mkdir -p "$run/data" "$run/upload"
  cp -r "$cfgdir/certs" "$run/certs"
  http_port=$(port)
  if [ "$suite" = slixmpp ]; then
  # slixmpp's own itests/prosody.cfg.lua (the modules its CI loads), on localhost instead of the
  # host `prosody`, with aioxmpp's localhost certificate, loopback ports and private paths. Its
  # community modules (muc_moderation, service_outage_status) are not packaged by Debian:
  # Prosody logs that and runs without them.
  awk -v run="$run" -v c2s="$xmpp_port" -v tls="$tls_port" -v http="$http_port" '
    /^(daemonize|pidfile|certificates|log|c2s_direct_tls_ports|outage_status_urls|http_files_dir|component_interfaces) *=/ { next }
    /http_host = "prosody"/ { next }
    /^VirtualHost/ && !done {
      print "pidfile = \"" run "/prosody.pid\""; print "data_path = \"" run "/data\""
      print "daemonize = false"; print "run_as_root = true"
      print "c2s_ports = { " c2s " }"; print "c2s_direct_tls_ports = { " tls " }"
      print "c2s_interfaces = { \"127.0.0.1\" }"; print "s2s_ports = {}"; print "s2s_direct_tls_ports = {}"
      print "component_ports = {}"; print "http_ports = { " http " }"; print "https_ports = {}"
      print "http_interfaces = { \"127.0.0.1\" }"; print "admin_socket = \"" run "/prosody.sock\""
      print "ssl = { key = \"" run "/certs/localhost.key\"; certificate = \"" run "/certs/localhost.crt\"; }"
      print "log = { debug = \"" run "/server.log\" }"
      done = 1
    }
    { gsub(/"prosody"/, "\"localhost\""); gsub(/\.prosody"/, ".localhost\""); print }
  ' "$slix/itests/prosody.cfg.lua" >"$run/prosody.cfg.lua"
  else
  # aioxmpp's 0.12 config, changed only where this machine differs: loopback ports, private
  # paths, accounts with passwords (internal_hashed + internal storage, for the shared
  # provisioner) instead of SASL ANONYMOUS on memory storage, Prosody's own
  # mod_http_file_share instead of the community mod_http_upload (not packaged by Debian), and
  # without aioxmpp's patch to the system's mod_pubsub (it would edit /usr/lib/prosody).
  {
    cat <<LUA
pidfile = "$run/prosody.pid"
data_path = "$run/data"
daemonize = false
run_as_root = true
c2s_ports = { $xmpp_port }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = {}
s2s_ports = {}
s2s_direct_tls_ports = {}
component_ports = {}
http_ports = { $http_port }
http_interfaces = { "127.0.0.1" }
https_ports = {}
admin_socket = "$run/prosody.sock"
LUA
    sed -e '/^plugin_paths = {/,/^}/d' \
        -e 's|^authentication = "anonymous"|authentication = "internal_hashed"|' \
        -e 's|^storage = "memory".*|storage = "internal"|' \
        -e "s|^\tdebug = \"\\*console\";|\tdebug = \"$run/server.log\";|" \
        -e 's|"upload.localhost" "http_upload"|"upload.localhost" "http_file_share"|' \
        -e "s|^http_upload_path = \"/tmp\"|http_file_share_path = \"$run/upload\"|" \
        "$cfgdir/prosody.cfg.lua"
  } >"$run/prosody.cfg.lua"
  fi
  : >"$run/server.log"
  out="["
  for i in $(seq 0 $((accounts - 1))); do
    prosodyctl --config "$run/prosody.cfg.lua" register "e2e$i" localhost "e2e-pass-$i-secret" >>"$run/server.log" 2>&1
    out="$out(\"e2e$i\", \"e2e-pass-$i-secret\"),"
  done
  list="$out]"
  prosody --config "$run/prosody.cfg.lua" >>"$run/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $xmpp_port), 1)" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$run/server.log"; echo "prosody exited before it was ready" >&2; exit 1; }
    sleep 0.2
  done
  # aioxmpp's own settings for Prosody 0.12 (utils/prosody-cfg/0.12/e2etest.ini).
  section="host=127.0.0.1
domain=localhost
port=$xmpp_port
no_verify=true
block_features={\"localhost\": [\"http://jabber.org/protocol/pubsub#*\"]}
quirks=[\"https://zombofant.net/xmlns/aioxmpp/e2etest/quirks#no-adhoc-ping\"]"
fi

if [ "$suite" = slixmpp ]; then
  if [ "$server" = parley ]; then cert=$run/data/tls/localhost.dev-cert.pem; else cert=$run/certs/localhost.crt; fi
  echo "== slixmpp 1.17.0 itests against $server (localhost:5222, direct TLS :5223)"
  cd "$slix"
  set +e
  SSL_CERT_FILE="$cert" CI_MUC_SERVER=muc.localhost timeout 1200 python3 - "$list" "$server" "$@" <<'PY' 2>"$run/itests.log"
import ast, collections, os, sys, unittest
from importlib import import_module
from pathlib import Path
accounts = ast.literal_eval(sys.argv[1])
for n, (user, password) in enumerate(accounts[:2], 1):
    os.environ[f"CI_ACCOUNT{n}"] = f"{user}@localhost"
    os.environ[f"CI_ACCOUNT{n}_PASSWORD"] = password
names = sys.argv[3:] or sorted(str(p) for p in Path("itests").glob("test_*.py"))
files = {}
suites = []
for name in names:
    mod = ".".join(Path(name).with_suffix("").parts)
    suite = import_module(mod).suite
    suites.append(suite)
    def walk(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                walk(t)
            else:
                files[t.id()] = Path(name).name
    walk(suite)
result = unittest.TextTestRunner(verbosity=2).run(unittest.TestSuite(suites))
kind = {t.id(): "failed" for t, _ in result.failures + result.errors}
kind.update({t.id(): "skipped" for t, _ in result.skipped})
per = collections.defaultdict(collections.Counter)
for tid, f in files.items():
    per[f][kind.get(tid, "passed")] += 1
tot = collections.Counter()
print(f"\n{sys.argv[2]}: per file  passed/failed/skipped")
for f, c in sorted(per.items()):
    tot += c
    print(f"  {f:32} {c['passed']:3} {c['failed']:3} {c['skipped']:3}")
print(f"  {'total':32} {tot['passed']:3} {tot['failed']:3} {tot['skipped']:3}")
for t, _ in result.failures + result.errors:
    print(f"  failed: {t.id()}")
PY
  set -e
  exit 0
fi

cat >"$run/e2etest.ini" <<INI
[global]
provisioner=aioxmpp.e2etest.provision.StaticPasswordProvisioner
timeout=5

[aioxmpp.e2etest.provision.StaticPasswordProvisioner]
$section
accounts=$list
skip_on_too_few_accounts=true
INI

echo "== aioxmpp 0.13.3 e2e suite against $server (xmpp 127.0.0.1:$xmpp_port)"
cd "$aio"
set +e
timeout 1200 python3 -m pytest -p aioxmpp.e2etest --e2etest-config "$run/e2etest.ini" --e2etest-only \
  -p no:cacheprovider -q -rfEs --junitxml="$run/junit.xml" "$@" $(find tests -name test_e2e.py | sort) \
  >"$run/pytest.log" 2>&1
rc=$?
set -e
tail -n 60 "$run/pytest.log"
python3 - "$run/junit.xml" "$server" <<'PY'
import sys, collections, xml.etree.ElementTree as ET
per = collections.OrderedDict()
for case in ET.parse(sys.argv[1]).iter("testcase"):
    # classname: <path as dots>.tests.<pkg>.test_e2e.<Class>; the suite's own path is kept.
    cn = case.get("classname", "").rsplit(".", 1)[0]
    cn = cn[cn.find("tests."):] if "tests." in cn else cn
    f = cn.replace(".", "/") + ".py"
    kind = "passed"
    for child in case:
        if child.tag in ("failure", "error"): kind = "failed"
        elif child.tag == "skipped": kind = "skipped"
    per.setdefault(f, collections.Counter())[kind] += 1
tot = collections.Counter()
print(f"\n{sys.argv[2]}: per file  passed/failed/skipped")
for f, c in sorted(per.items()):
    tot += c
    print(f"  {f:32} {c['passed']:3} {c['failed']:3} {c['skipped']:3}")
print(f"  {'total':32} {tot['passed']:3} {tot['failed']:3} {tot['skipped']:3}")
PY
exit 0
