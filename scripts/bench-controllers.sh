#!/usr/bin/env bash
# Benchmark of keel server's workload controllers: a Deployment of REPLICAS
# (default 1,000) on fake nodes (the load generator marks every pod Ready
# through pods/status as soon as it appears, as kwok does), timed until all
# pods exist and until the Deployment reports them all available, then a
# rolling update (25% surge/unavailable) until it completes. keel only: no
# kube-controller-manager is installed here to run beside it.
# Everything listens on 127.0.0.1 random ports and is removed on exit.
#
# usage: scripts/bench-controllers.sh [REPLICAS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
REPLICAS=${1:-1000}

# KEEL_BENCH_PREBUILT=1 reuses the last release build.
[ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel --bin keel --example bench_controllers
KEEL="$CARGO_TARGET_DIR/release/keel"
BENCH="$CARGO_TARGET_DIR/release/examples/bench_controllers"

WORK=$(mktemp -d)
PID=
cleanup() {
  [ -z "$PID" ] || kill -9 "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

P=$(port)
"$KEEL" --root "$WORK/root" server --listen "127.0.0.1:$P" --write-kubeconfig "$WORK/kc" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 300); do [ -s "$WORK/kc" ] && break; sleep 0.1; done
[ -s "$WORK/kc" ] || { echo "keel server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
sleep 1
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH" "$WORK/kc" "$REPLICAS" | sed 's/^/keel: /'
echo "keel: server_rss_mb=$(( $(awk '/VmRSS/ {print $2}' "/proc/$PID/status") / 1024 ))"
