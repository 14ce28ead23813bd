#!/usr/bin/env bash
# Benchmark of pod startup on one node: `keel server` with its embedded
# node agent, busybox already in the node's store, 100 pods (busybox
# `sleep`) created at a steady 10 pods/s by the official Python client;
# each pod's latency runs from just before its create request to the watch
# event that shows it Ready (Kubernetes' pod startup SLO: p99 <= 5 s).
# Then the steady-state RSS of the server process (API server, controllers,
# scheduler and agent in one) with the 100 pods running, and beside it the
# memory (RSS and PSS) of the per-container monitors (the part containerd's shims play).
# No kubelet can run here offline to compare; k3s documents 768 MB+ for
# its server alone. Everything listens on 127.0.0.1 and is removed on exit.
#
# usage: scripts/bench-pods.sh [PODS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
PODS=${1:-100}
RATE=${2:-10}

# KEEL_BENCH_PREBUILT=1 reuses the last release build; KEEL_BIN names
# another keel binary (say which in the figures you record).
if [ -n "${KEEL_BIN:-}" ]; then
  KEEL=$KEEL_BIN
else
  [ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel --bin keel
  KEEL="$CARGO_TARGET_DIR/release/keel"
fi

WORK=$(mktemp -d)
PID=
cleanup() {
  if [ -n "$PID" ]; then
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
  fi
  # The pods' containers outlive a killed server (as with a kubelet).
  for id in $("$KEEL" --root "$WORK/root" ps -aq 2>/dev/null); do
    "$KEEL" --root "$WORK/root" rm -f "$id" >/dev/null 2>&1 || true
  done
  "$KEEL" --root "$WORK/root" network rm keel-pods >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$KEEL" --root "$WORK/root" image seed-busybox >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$KEEL" --root "$WORK/root" server --listen "127.0.0.1:$PORT" --write-kubeconfig "$WORK/kc" \
  >"$WORK/server.log" 2>&1 &
PID=$!
disown
for _ in $(seq 300); do [ -s "$WORK/kc" ] && break; sleep 0.1; done
[ -s "$WORK/kc" ] || { echo "keel server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

KUBECONFIG="$WORK/kc" /usr/bin/python3 - "$PODS" "$RATE" <<'EOF'
import statistics, sys, threading, time
from kubernetes import client, config, watch

pods, rate = int(sys.argv[1]), float(sys.argv[2])
config.load_kube_config()
core = client.CoreV1Api()
# The node is Ready first: this measures pods, not the node's start.
deadline = time.time() + 120
while time.time() < deadline:
    nodes = core.list_node().items
    if nodes and all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                     for n in nodes):
        break
    time.sleep(0.5)
else:
    sys.exit("the node never became Ready")

created, ready = {}, {}
done = threading.Event()

def watcher():
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_pod, "default", timeout_seconds=600):
        p = ev["object"]
        name = p.metadata.name
        if name in ready:
            continue
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []):
            ready[name] = time.monotonic()
            if len(ready) == pods:
                done.set()
                w.stop()

t = threading.Thread(target=watcher, daemon=True)
t.start()
time.sleep(1)  # the watch is established
start = time.monotonic()
for i in range(pods):
    name = f"bench-{i}"
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "app", "image": "busybox:latest",
                                     "command": ["sleep", "3600"]}]}}
    created[name] = time.monotonic()
    core.create_namespaced_pod("default", body)
    pause = start + (i + 1) / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)
if not done.wait(300):
    for n in sorted(set(created) - set(ready)):
        p = core.read_namespaced_pod(n, "default")
        conds = [(c.type, c.status) for c in p.status.conditions or []]
        states = [(c.name, c.state.to_dict(), c.ready) for c in p.status.container_statuses or []]
        print(f"not ready: {n} node={p.spec.node_name} phase={p.status.phase} {conds} {states}",
              file=sys.stderr)
    sys.exit(f"only {len(ready)} of {pods} pods became Ready within 300 s")
lat = sorted(ready[n] - created[n] for n in created)
q = statistics.quantiles(lat, n=100, method="inclusive")
print(f"pods={pods} rate={rate}/s startup_p50_s={statistics.median(lat):.3f} "
      f"startup_p99_s={q[98]:.3f} startup_max_s={lat[-1]:.3f}")
EOF

sleep "${KEEL_BENCH_SETTLE:-10}"  # steady state (seconds after the last pod is Ready)
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# PSS shares each page among the processes that map it: the monitors all
# map the same keel binary, so their RSS summed would count it N times.
pss() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# Anonymous memory leaves out the mapped binary (large in a debug build).
anon() { awk '/^Anonymous:/ {printf "%.1f", $2 / 1024}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
echo "keel server (with its agent) rss_mb=$(( $(rss "$PID") / 1024 )) pss_mb=$(( $(pss "$PID") / 1024 )) anon_mb=$(anon "$PID")"
# KEEL_BENCH_MALLOC=1: glibc's own totals (held and in use, less noisy
# than RSS), printed by the server to its log when gdb makes it call
# malloc_stats().
if [ -n "${KEEL_BENCH_MALLOC:-}" ]; then
  gdb -p "$PID" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
  echo "glibc malloc totals: $(grep -A2 '^Total (incl. mmap)' "$WORK/server.log" | tail -2 | tr -s ' ' | tr '\n' ';')"
fi
MON=0; MON_RSS=0; N=0
for p in $(pgrep -f -- "--root $WORK/root __monitor" || true); do
  MON=$(( MON + $(pss "$p") )); MON_RSS=$(( MON_RSS + $(rss "$p") )); N=$(( N + 1 ))
done
echo "container monitors: $N processes, pss_mb=$(( MON / 1024 )) (rss summed: $(( MON_RSS / 1024 )) MB)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
