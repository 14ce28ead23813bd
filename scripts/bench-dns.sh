#!/usr/bin/env bash
# Benchmark of keel's cluster DNS (keel-dns) against Debian's dnsmasq
# answering the same records from a hosts file: N ClusterIP Services,
# A questions for their names (in turn) from CLIENTS concurrent UDP
# clients for SECONDS each; queries/s, p50 and p99, side by side.
# keel-dns is served by its dns_serve example, loaded with the Services as
# keel server's API watch would feed them (the same query path, no API
# server in the measurement). Everything listens on 127.0.0.1 random ports
# and is removed on exit.
#
# usage: scripts/bench-dns.sh [SERVICES] [SECONDS] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${1:-1000}
SECONDS_EACH=${2:-10}
CLIENTS=${3:-8}

keel_ensure_packages
[ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel-dns --example dns_serve --example dns_load
SERVE="$CARGO_TARGET_DIR/release/examples/dns_serve"
LOAD="$CARGO_TARGET_DIR/release/examples/dns_load"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The same N names and addresses for both servers.
python3 - "$N" "$WORK" <<'PY'
import json, sys
n, work = int(sys.argv[1]), sys.argv[2]
objs, hosts, names = [], [], []
for i in range(n):
    ip = f"10.43.{(i + 11) // 256}.{(i + 11) % 256}"
    name = f"svc{i}.bench.svc.cluster.local"
    objs.append({"kind": "Service", "metadata": {"namespace": "bench", "name": f"svc{i}"},
                 "spec": {"type": "ClusterIP", "clusterIP": ip,
                          "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    hosts.append(f"{ip} {name}")
    names.append(name + ".")
open(f"{work}/objects.json", "w").write(json.dumps(objs))
open(f"{work}/hosts", "w").write("\n".join(hosts) + "\n")
open(f"{work}/names", "w").write("\n".join(names) + "\n")
PY

KP=$(port)
"$SERVE" "$WORK/objects.json" "127.0.0.1:$KP" >"$WORK/keel.log" 2>&1 &
PIDS+=($!); disown
DP=$(port)
# dnsmasq: only the hosts file, no upstream, a cache large enough for all.
dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$WORK/hosts" \
  --listen-address=127.0.0.1 --bind-interfaces --port="$DP" --cache-size=10000 \
  --user=root --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log" &
PIDS+=($!); disown
for _ in $(seq 50); do
  grep -q listening "$WORK/keel.log" 2>/dev/null && break
  sleep 0.1
done
sleep 0.5

echo "bench-dns: $N services, $CLIENTS clients, ${SECONDS_EACH}s each, $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
# Warm-up, then the measured runs.
"$LOAD" "127.0.0.1:$KP" "$WORK/names" 1 "$CLIENTS" >/dev/null
"$LOAD" "127.0.0.1:$DP" "$WORK/names" 1 "$CLIENTS" >/dev/null
K=$("$LOAD" "127.0.0.1:$KP" "$WORK/names" "$SECONDS_EACH" "$CLIENTS")
D=$("$LOAD" "127.0.0.1:$DP" "$WORK/names" "$SECONDS_EACH" "$CLIENTS")
echo "keel-dns: $K"
echo "dnsmasq:  $D"
get() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" <<<"$1"; }
python3 - "$(get "$K" qps)" "$(get "$D" qps)" "$(get "$K" p99_us)" "$(get "$D" p99_us)" <<'PY'
import sys
kq, dq, kp, dp = map(float, sys.argv[1:])
print(f"ratio keel/dnsmasq: qps {kq / dq:.2f}x, p99 {kp / max(dp, 1):.2f}x")
PY
