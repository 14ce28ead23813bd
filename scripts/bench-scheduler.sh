#!/usr/bin/env bash
# Benchmark of keel server's scheduler: 1,000 fake nodes (Ready, 32 CPUs,
# 110 pods each, as kwok makes them) and 10,000 pods created by 16
# concurrent clients; pods bound per second (first create to last binding)
# and the create→bound latency (p50/p99), on the embedded SQLite store.
# There is no kube-scheduler to run beside it offline: its own performance
# tests (scheduler_perf, SchedulingBasic 5000 nodes) set thresholds of a
# few hundred pods/s, the goal here is ≥ 2,000 pods/s.
# The node grace period is raised for the run: the fake nodes have no
# heartbeat, and the server's own node agent is off (only fake nodes).
# Everything listens on 127.0.0.1 and is removed on exit.
#
# usage: scripts/bench-scheduler.sh [NODES] [PODS] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
NODES=${1:-1000}
PODS=${2:-10000}
CLIENTS=${3:-16}

# KEEL_BENCH_PREBUILT=1 reuses the last release build.
[ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel --bin keel --example bench_scheduler
KEEL="$CARGO_TARGET_DIR/release/keel"
BENCH="$CARGO_TARGET_DIR/release/examples/bench_scheduler"

WORK=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# /14 in /24 blocks: a pod CIDR for each of up to 1,024 nodes.
"$KEEL" --root "$WORK/root" server --listen "127.0.0.1:$PORT" --write-kubeconfig "$WORK/kc" \
  --node-monitor-grace-period 30m --cluster-cidr 10.0.0.0/14 --disable-agent >"$WORK/server.log" 2>&1 &
PID=$!
disown
for _ in $(seq 300); do [ -s "$WORK/kc" ] && break; sleep 0.1; done
[ -s "$WORK/kc" ] || { echo "keel server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
sleep 2
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH" "$WORK/kc" "$NODES" "$PODS" "$CLIENTS"
echo "keel server rss_mb=$(( $(awk '/VmRSS/ {print $2}' "/proc/$PID/status") / 1024 ))"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
