#!/usr/bin/env bash
# Benchmark of chart releases: install, upgrade and rollback of one chart
# with 40 templates (ConfigMaps, Services, Deployments with 0 replicas),
# `keel chart` vs the real Helm 4.1.4, both against the same `keel server`
# on 127.0.0.1, in one run; each tool gets its own release and namespace.
# `upgrade3` upgrades a release as Helm 3 left it (installed client-side by
# helm --server-side=false): both tools then apply with the three-way merge.
# Wall time per step is the median of ROUNDS rounds; the ratio is keel/helm.
#
# usage: scripts/bench-chart-release.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ROUNDS=${1:-5}
keel_ensure_helm
HELM="$KEEL_HELM"

# KEEL_BENCH_PREBUILT=1 reuses the last build; KEEL_BENCH_PROFILE=debug
# measures the debug build (only to compare with itself).
PROFILE=${KEEL_BENCH_PROFILE:-release}
if [ -z "${KEEL_BENCH_PREBUILT:-}" ]; then
  if [ "$PROFILE" = release ]; then cargo build --release -q -p keel --bin keel; else cargo build -q -p keel --bin keel; fi
fi
KEEL="$CARGO_TARGET_DIR/$PROFILE/keel"

WORK=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port)
"$KEEL" --root "$WORK/root" server --listen "127.0.0.1:$P" --write-kubeconfig "$WORK/kc" >"$WORK/server.log" 2>&1 &
PID=$!
disown
for _ in $(seq 300); do [ -s "$WORK/kc" ] && break; sleep 0.1; done
export KUBECONFIG="$WORK/kc" HOME="$WORK/home" HELM_CACHE_HOME="$WORK/home/cache" \
  HELM_CONFIG_HOME="$WORK/home/config" HELM_DATA_HOME="$WORK/home/data"
mkdir -p "$HOME"

CHART="$WORK/chart"
mkdir -p "$CHART/templates"
printf 'apiVersion: v2\nname: bench\nversion: 0.1.0\n' >"$CHART/Chart.yaml"
printf 'tag: "1"\n' >"$CHART/values.yaml"
for i in $(seq 1 14); do
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm%s\ndata:\n  tag: {{ .Values.tag | quote }}\n' "$i" >"$CHART/templates/cm$i.yaml"
  printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}-svc%s\nspec:\n  selector: {app: a%s}\n  ports: [{port: 80}]\n' "$i" "$i" >"$CHART/templates/svc$i.yaml"
done
for i in $(seq 1 12); do
  printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-d%s\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: d%s}}\n  template:\n    metadata: {labels: {app: d%s, tag: {{ .Values.tag | quote }}}}\n    spec: {containers: [{name: c, image: "nginx:{{ .Values.tag }}"}]}\n' "$i" "$i" "$i" >"$CHART/templates/d$i.yaml"
done

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T
for r in $(seq 1 "$ROUNDS"); do
  for tool in keel helm; do
    if [ "$tool" = keel ]; then cmd=("$KEEL" chart); else cmd=("$HELM"); fi
    ns="$tool-$r"
    T[$tool.install]+="$(ms "${cmd[@]}" install rel "$CHART" -n "$ns" --create-namespace) "
    T[$tool.upgrade]+="$(ms "${cmd[@]}" upgrade rel "$CHART" -n "$ns" --set tag=2) "
    T[$tool.rollback]+="$(ms "${cmd[@]}" rollback rel 1 -n "$ns") "
    "${cmd[@]}" uninstall rel -n "$ns" >/dev/null
    "$HELM" install old "$CHART" -n "$ns" --server-side=false >/dev/null
    T[$tool.upgrade3]+="$(ms "${cmd[@]}" upgrade old "$CHART" -n "$ns" --set tag=2) "
    "$HELM" uninstall old -n "$ns" >/dev/null
  done
done
echo "chart release benchmark: 40 templates, median of $ROUNDS rounds, same keel server, keel $PROFILE build"
printf '%-9s %8s %8s %7s\n' step keel_ms helm_ms ratio
for step in install upgrade rollback upgrade3; do
  k=$(echo "${T[keel.$step]}" | tr ' ' '\n' | grep . | median)
  h=$(echo "${T[helm.$step]}" | tr ' ' '\n' | grep . | median)
  printf '%-9s %8s %8s %7s\n' "$step" "$k" "$h" "$(awk -v k="$k" -v h="$h" 'BEGIN {printf "%.2f", k / h}')"
done
