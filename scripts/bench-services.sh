#!/usr/bin/env bash
# Benchmark of keel's service proxy (Services as nftables rules), two parts:
#
# 1. Rule change with SERVICES Services (3 endpoints each, NodePort): the
#    kernel transaction keel's proxy applies when one Service's endpoints
#    change (`nft -f` of that Service's chains and map elements) against
#    kube-proxy's iptables mode, which restores its whole nat table
#    (`iptables-restore` of the same Services' KUBE-SVC/KUBE-SEP chains).
#    Both in a throwaway network namespace; each hyperfine run applies the
#    change and its reverse, so times are halved.
# 2. Requests through a ClusterIP against the pod IP directly: a
#    `keel server` with its own agent in a network namespace made here
#    (temporary root, API on 127.0.0.1 there), a busybox httpd pod, wrk
#    from that namespace for SECONDS each; requests/s and p99 side by side.
#
# usage: scripts/bench-services.sh [SERVICES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${1:-1000}
SECONDS_EACH=${2:-10}

keel_ensure_packages
# KEEL_BIN: a keel binary to use (the data path is the kernel's either way).
if [ -z "${KEEL_BENCH_PREBUILT:-}" ]; then
  cargo build --release -q -p keel-net --example proxy_scripts
  [ -n "${KEEL_BIN:-}" ] || cargo build --release -q -p keel
fi
GEN="$CARGO_TARGET_DIR/release/examples/proxy_scripts"
KEEL="${KEEL_BIN:-$CARGO_TARGET_DIR/release/keel}"

WORK=$(mktemp -d)
SERVER=""
NS="keel-bench-svc-$$"
IN=(nsenter "--net=/run/netns/$NS")
cleanup() {
  if [ -n "$SERVER" ]; then
    KUBECONFIG="$WORK/kubeconfig" "${IN[@]}" kubectl delete deployment bench-web --wait=true --timeout=60s >/dev/null 2>&1 || true
    kill -TERM "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    for c in $("$KEEL" --root "$WORK/root" ps -aq 2>/dev/null); do "${IN[@]}" "$KEEL" --root "$WORK/root" rm -f "$c" >/dev/null 2>&1 || true; done
    "${IN[@]}" "$KEEL" --root "$WORK/root" network rm keel-pods >/dev/null 2>&1 || true
  fi
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== 1. one Service change with $N Services"
"$GEN" "$N" "$WORK"
unshare --net bash -s "$WORK" <<'SH'
set -euo pipefail
W=$1
t0=$(date +%s%N); nft -f "$W/full.nft"; t1=$(date +%s%N)
iptables-restore <"$W/iptables.rules"; t2=$(date +%s%N)
echo "initial load: keel nft $(( (t1 - t0) / 1000000 )) ms, iptables-restore $(( (t2 - t1) / 1000000 )) ms"
echo "rules: keel $(nft list table ip keel-svc-bench | wc -l) lines, iptables $(iptables-save -t nat | wc -l) lines"
echo "add table ip keel-svc-bench" >"$W/nocache.nft"
hyperfine -N --warmup 3 --runs 40 --export-json "$W/change.json" \
  -n keel "sh -c 'nft -f $W/update.nft && nft -f $W/update-back.nft'" \
  -n burst "sh -c 'nft -f $W/burst.nft && nft -f $W/burst-back.nft'" \
  -n nocache "sh -c 'nft -f $W/nocache.nft && nft -f $W/nocache.nft'" \
  -n iptables "sh -c 'iptables-restore --noflush <$W/iptables-after.rules && iptables-restore --noflush <$W/iptables.rules'" >/dev/null
python3 - "$W" <<'PY'
import json, resource, subprocess, sys
w = sys.argv[1]
r = {x["command"]: x for x in json.load(open(f"{w}/change.json"))["results"]}
ms = lambda x: x * 1000 / 2
def cpu(cmd, runs=20):
    """CPU (user+sys) of the programs per change, in ms: on a loaded
    machine the wall time is mostly waiting for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        subprocess.run(["sh", "-c", cmd], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used * 1000 / runs / 2
cmds = {
    "keel": f"nft -f {w}/update.nft && nft -f {w}/update-back.nft",
    "burst": f"nft -f {w}/burst.nft && nft -f {w}/burst-back.nft",
    "nocache": f"nft -f {w}/nocache.nft && nft -f {w}/nocache.nft",
    "iptables": f"iptables-restore --noflush <{w}/iptables-after.rules && iptables-restore --noflush <{w}/iptables.rules",
}
c = {k: cpu(v, 5 if k == "iptables" else 20) for k, v in cmds.items()}
for k, what in [("keel", "one change (keel, nft)"),
                ("burst", "10 Services, one transaction"),
                ("nocache", "an nft run without cache"),
                ("iptables", "one change (iptables full restore)")]:
    print(f"{what}: {ms(r[k]['mean']):.1f} ms wall (max {ms(r[k]['max']):.1f}), {c[k]:.1f} ms CPU")
k, i = r["keel"], r["iptables"]
print(f"ratio iptables/keel: wall {i['mean']/k['mean']:.1f}x, CPU {c['iptables']/c['keel']:.1f}x")
PY
SH

echo "== 2. ClusterIP vs pod IP (wrk, ${SECONDS_EACH}s each)"
mkdir -p "$WORK/root"
"$KEEL" --root "$WORK/root" image seed-busybox >/dev/null
ip netns add "$NS"
"${IN[@]}" ip link set lo up
# A default route (over a veth pair inside the namespace): cluster IPs need
# a route before the proxy's DNAT picks the pod, as on any real node.
"${IN[@]}" ip link add keel-bench0 type veth peer name keel-bench1
"${IN[@]}" ip addr add 192.0.2.1/24 dev keel-bench0
"${IN[@]}" ip link set keel-bench0 up
"${IN[@]}" ip link set keel-bench1 up
"${IN[@]}" ip route add default via 192.0.2.2
PORT=6443
"${IN[@]}" "$KEEL" --root "$WORK/root" server --listen "127.0.0.1:$PORT" --write-kubeconfig "$WORK/kubeconfig" \
  --disable-dns >"$WORK/server.log" 2>&1 &
SERVER=$!
export KUBECONFIG="$WORK/kubeconfig"
KUBECTL_BIN=$(command -v kubectl)
kubectl() { "${IN[@]}" "$KUBECTL_BIN" "$@"; }
for _ in $(seq 100); do [ -s "$WORK/kubeconfig" ] && kubectl get nodes 2>/dev/null | grep -q ' Ready' && break; sleep 0.3; done
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: bench-web}
spec:
  replicas: 1
  selector: {matchLabels: {app: bench-web}}
  template:
    metadata: {labels: {app: bench-web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:latest
        command: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: bench-web}
spec:
  selector: {app: bench-web}
  ports: [{port: 80, targetPort: 8080}]
YAML
kubectl rollout status deployment/bench-web --timeout=120s >/dev/null || {
  kubectl get pods -o wide; tail -20 "$WORK/server.log"; exit 1; }
POD_IP=$(kubectl get pods -l app=bench-web -o jsonpath='{.items[0].status.podIP}')
SVC_IP=$(kubectl get service bench-web -o jsonpath='{.spec.clusterIP}')
for _ in $(seq 50); do "${IN[@]}" timeout 2 busybox wget -q -O- "http://$SVC_IP/" >/dev/null 2>&1 && break; sleep 0.2; done
bench() { "${IN[@]}" wrk -t2 -c16 -d"${SECONDS_EACH}s" --latency "$1" | awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {print r, p}'; }
read -r d_rps d_p99 < <(bench "http://$POD_IP:8080/")
read -r s_rps s_p99 < <(bench "http://$SVC_IP/")
echo "pod IP:     $d_rps req/s, p99 $d_p99"
echo "ClusterIP:  $s_rps req/s, p99 $s_p99"
python3 -c "import sys; d,s=float(sys.argv[1]),float(sys.argv[2]); print(f'ClusterIP/pod IP throughput: {s/d:.3f}')" "$d_rps" "$s_rps"
