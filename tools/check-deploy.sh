#!/usr/bin/env bash
# Validates deploy/ and the production config example as far as this machine can without
# running containers: the systemd unit (systemd-analyze verify), the production config
# (`parley config check`, with a throw-away certificate in place of the real one), and that the
# compose and container files parse. Usage: tools/check-deploy.sh [path/to/parley]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/debug/parley}
[ -x "$bin" ] || (cd "$root" && cargo build --bin parley)
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "check-deploy: systemd unit"
# verify needs the unit's binary to exist: point it at this build.
sed "s#/usr/local/bin/parley#$bin#g" "$root/deploy/parley.service" >"$work/parley.service"
systemd-analyze verify "$work/parley.service"

echo "check-deploy: production config"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=chat.example.com \
    -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
PARLEY_XMPP_CERT_FILE="$work/fullchain.pem" PARLEY_XMPP_KEY_FILE="$work/privkey.pem" \
    "$bin" config check "$root/config/production.example.toml"

echo "check-deploy: compose and container files"
python3 - "$root/deploy/compose.yaml" "$root/deploy/Containerfile" "$work" <<'PY'
import sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
services = compose["services"]
assert {"db", "parley"} <= set(services), services.keys()
assert services["parley"]["depends_on"]["db"]["condition"] == "service_healthy"
assert services["db"]["image"].startswith("postgres:15")
# coturn checks the credentials Parley mints with the same secret.
turn = services["turn"]
assert "--use-auth-secret" in turn["command"], turn
assert "PARLEY_CALLS_TURN_SECRET" in services["parley"]["environment"]
from dockerfile_parse import DockerfileParser
# The parser keeps a copy as <dir>/Dockerfile: a scratch directory, not the work tree.
df = DockerfileParser(path=sys.argv[3])
df.content = open(sys.argv[2]).read()
stages = [i for i in df.structure if i["instruction"] == "FROM"]
assert len(stages) >= 2, "multi-stage build"
users = [i["value"] for i in df.structure if i["instruction"] == "USER"]
assert users and users[-1] != "root", "the runtime image runs as a non-root user"
print("compose: services", ", ".join(sorted(services)), "| Containerfile:", len(stages), "stages, user", users[-1])
PY
echo "check-deploy: cluster (deploy/cluster/)"
python3 - "$root/deploy/cluster/compose.yaml" "$root/deploy/cluster/haproxy.cfg" <<'PY'
import sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
nodes = sorted(n for n in services if n.startswith("parley-"))
nats = sorted(n for n in services if n.startswith("nats-"))
assert len(nodes) >= 2 and len(nats) == 3, (nodes, nats)
names = set()
for n in nodes:
    env = services[n]["environment"]
    # Every node on the one database and the whole NATS cluster, each with its own name.
    assert env["PARLEY_DATABASE_URL"].endswith("@db:5432/parley"), env
    assert all(f"nats://{s}:4222" in env["PARLEY_CLUSTER_NATS_URL"] for s in nats), env
    names.add(env["PARLEY_CLUSTER_NODE_NAME"])
assert len(names) == len(nodes), "node names must be unique"
assert "pg_basebackup" in " ".join(services["db-replica"]["command"])
lb = open(sys.argv[2]).read()
for n in nodes:
    for port in ("5222", "5223", "5291", "8080"):
        assert f"{n}:{port}" in lb, f"haproxy.cfg does not balance {n}:{port}"
print("cluster compose:", len(nodes), "Parley nodes,", len(nats), "NATS servers; haproxy balances all")
PY
if command -v nats-server >/dev/null; then
    nats-server -t -c "$root/deploy/cluster/nats.conf" --name nats-1 --cluster_name parley
fi
echo "check-deploy: ok"
