#!/usr/bin/env bash
# Benchmark of the Horizontal Pod Autoscaler's reaction: a Deployment of 2
# idle busybox pods (CPU request 100m, limit 200m) under
# `kubectl autoscale --cpu-percent=50 --min=2 --max=4`; the load starts
# (both pods start spinning, through kubectl exec) and we time until the
# autoscaler raises spec.replicas ("decide") and until 4 pods are Ready
# ("ready"). keel server runs with its defaults (15 s sync, 5 s sampling)
# in a network namespace made here (entered with nsenter --net only: `ip
# netns exec` would remount /sys and hide the cgroups), removed on exit.
# There is no Kubernetes peer on this machine (no kubelet, no
# metrics-server); its defaults (15 s sync, metrics-server's 15 s
# resolution) bound its reaction from below at one metrics window plus one
# sync.
#
# usage: scripts/bench-hpa.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
RUNS=${1:-3}

# KEEL_BENCH_PREBUILT=1 reuses the last release build; KEEL_BIN picks a binary.
if [ -z "${KEEL_BIN:-}" ]; then
  [ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel --bin keel
  KEEL_BIN="$CARGO_TARGET_DIR/release/keel"
fi

NS="keel-bench-hpa-$$"
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null || true
  for d in "$WORK"/containers/*; do
    [ -e "$d" ] && nsenter --net=/run/netns/"$NS" "$KEEL_BIN" --root "$WORK" rm -f "$(basename "$d")" >/dev/null 2>&1 || true
  done
  nsenter --net=/run/netns/"$NS" "$KEEL_BIN" --root "$WORK" network rm keel-pods >/dev/null 2>&1 || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
k() { nsenter --net=/run/netns/"$NS" kubectl --kubeconfig "$WORK/kc" "$@"; }
now() { date +%s.%N; }
wait_for() { # seconds command...
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout: $*" >&2; exit 1; }
    sleep 0.2
  done
}

ip netns add "$NS"
nsenter --net=/run/netns/"$NS" ip link set lo up
"$KEEL_BIN" --root "$WORK" image seed-busybox >/dev/null
nsenter --net=/run/netns/"$NS" "$KEEL_BIN" --root "$WORK" server --listen "127.0.0.1:$(port)" \
  --write-kubeconfig "$WORK/kc" --node-name bench-node --dns-listen "127.0.0.1:$(port)" \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
wait_for 60 test -s "$WORK/kc"
wait_for 60 k get node bench-node

replicas() { k get deploy web -o 'jsonpath={.spec.replicas}'; }
scaled() { [ "$(replicas)" -gt 2 ]; }
ready() { [ "$(k get deploy web -o 'jsonpath={.status.readyReplicas}')" = "$1" ]; }
has_reading() { k get hpa web -o 'jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}' | grep -q '[0-9]'; }

for run in $(seq "$RUNS"); do
  k delete hpa web --ignore-not-found >/dev/null
  k delete deploy web --ignore-not-found --wait=true >/dev/null
  k apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: spin
        image: busybox
        command: [sh, -c, 'while [ ! -e /tmp/busy ]; do sleep 0.2; done; while :; do :; done']
        resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
EOF
  wait_for 120 ready 2
  k autoscale deployment web --cpu-percent=50 --min=2 --max=4 >/dev/null
  wait_for 120 has_reading
  t0=$(now)
  for p in $(k get pods -l app=web -o 'jsonpath={.items[*].metadata.name}'); do
    k exec "$p" -- touch /tmp/busy
  done
  wait_for 180 scaled
  t1=$(now)
  wait_for 180 ready 4
  t2=$(now)
  printf 'run %s: decide_s=%.1f ready_s=%.1f\n' "$run" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)"
done
