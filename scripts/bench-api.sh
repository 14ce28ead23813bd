#!/usr/bin/env bash
# Benchmark of keel server: 10,000 ConfigMap creates from 16 concurrent
# clients (throughput, p50/p99) and the write-to-event delay at 100 watchers,
# on the embedded SQLite store and on etcd (the peer store, as k3s/kine users
# run it), side by side in one run; plus keel server's idle RSS.
# Everything listens on 127.0.0.1 random ports and is removed on exit.
#
# usage: [KEEL_BENCH_SERVER_ARGS=--disable-agent] [MALLOC_ARENA_MAX=N] scripts/bench-api.sh [CREATES] [CLIENTS] [WATCHERS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
CREATES=${1:-10000}
CLIENTS=${2:-16}
WATCHERS=${3:-100}

# KEEL_BENCH_PREBUILT=1 reuses the last release build.
[ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel --bin keel --example bench_api
KEEL="$CARGO_TARGET_DIR/release/keel"
BENCH="$CARGO_TARGET_DIR/release/examples/bench_api"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_file() { for _ in $(seq 300); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; exit 1; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# etcd, single member, as the peer store.
EC=$(port); EP=$(port)
etcd --name b --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$EC" --advertise-client-urls "http://127.0.0.1:$EC" \
  --listen-peer-urls "http://127.0.0.1:$EP" --initial-advertise-peer-urls "http://127.0.0.1:$EP" \
  --initial-cluster "b=http://127.0.0.1:$EP" >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
disown
for _ in $(seq 100); do curl -s "http://127.0.0.1:$EC/health" 2>/dev/null | grep -q true && break; sleep 0.1; done

run() { # name datastore-args...
  local name=$1; shift
  local p; p=$(port)
  # shellcheck disable=SC2086 # KEEL_BENCH_SERVER_ARGS: extra flags, split on spaces (e.g. --disable-agent)
  "$KEEL" --root "$WORK/$name" server --listen "127.0.0.1:$p" --write-kubeconfig "$WORK/$name.kc" ${KEEL_BENCH_SERVER_ARGS:-} "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  disown
  wait_file "$WORK/$name.kc"
  sleep 3
  local idle; idle=$(rss_kb "$pid")
  local out; out=$("$BENCH" "$WORK/$name.kc" "$CREATES" "$CLIENTS" "$WATCHERS")
  local after; after=$(rss_kb "$pid")
  echo "$name: idle_rss_mb=$((idle / 1024)) rss_after_mb=$((after / 1024))"
  echo "$out" | sed "s/^/$name: /"
  echo "$out" | awk -v n="$name" '/per_sec/ {for(i=1;i<=NF;i++){split($i,a,"="); if(a[1]=="per_sec") print a[2] > "'"$WORK"'/" n ".rate"}}'
}

run sqlite
run etcd --datastore "etcd://127.0.0.1:$EC"
python3 -c "import sys; s=float(open('$WORK/sqlite.rate').read()); e=float(open('$WORK/etcd.rate').read()); print(f'ratio creates/s sqlite:etcd = {s/e:.2f}')"
