#!/usr/bin/env bash
# Chart rendering benchmark, keel beside the real Helm 4.1.4 in one run:
#  1. `keel chart template` vs `helm template` on real charts from
#     ../shared/charts (the corpus the parity test uses), same arguments, same
#     working directory, hyperfine with warm-up; prints each mean and the ratio.
#  2. The template engine alone: 200 templates over 100 values entries,
#     rendered by keel-gotmpl and by Go's text/template + sprig (tests/goref)
#     doing the same work (parse each template once, execute it REPEAT times).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
keel_ensure_helm

CHARTS_DIR="${KEEL_CHARTS:-$(cd .. && while [ "$PWD" != / ] && [ ! -d shared/charts ]; do cd ..; done; echo "$PWD/shared/charts")}"
[ -f "$CHARTS_DIR/determinism.json" ] || { echo "chart corpus not found (set KEEL_CHARTS)" >&2; exit 1; }
RUNS="${RUNS:-10}"
export CARGO_TARGET_DIR
if [ -n "${KEEL_BIN:-}" ]; then
  KEEL="$KEEL_BIN"  # a release build made already
else
  cargo build --release -q -p keel
  KEEL="$CARGO_TARGET_DIR/release/keel"
fi
helm_home="$(mktemp -d)"
trap 'rm -rf "$helm_home"' EXIT
export HELM_CACHE_HOME="$helm_home/cache" HELM_CONFIG_HOME="$helm_home/config" HELM_DATA_HOME="$helm_home/data"

echo "keel chart template vs helm template (Helm $("$KEEL_HELM" version --template '{{.Version}}')), mean of $RUNS runs after 2 warm-ups"
printf '%-44s %10s %10s %8s\n' "chart/variant" "keel ms" "helm ms" "keel/helm"
# chart, variant args (as in the corpus' variants.tsv)
while read -r chart variant args; do
  dir="$CHARTS_DIR/$chart"
  common="rel chart/ --namespace ns1 --kube-version 1.32.0 $args"
  json="$helm_home/$chart-$variant.json"
  (cd "$dir" && hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$json" \
     "$KEEL chart template $common" "$KEEL_HELM template $common" >/dev/null)
  python3 - "$json" "$chart/$variant" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
k, h = r[0]["mean"] * 1000, r[1]["mean"] * 1000
print(f"{sys.argv[2]:<44} {k:10.1f} {h:10.1f} {k/h:8.2f}x")
PY
done <<'LIST'
cert-manager default
ingress-nginx default
argo-cd ha -f values-ha.yaml --api-versions monitoring.coreos.com/v1
bitnami-wordpress cache-ingress -f values-cache-ingress.yaml
kube-prometheus-stack full -f values-full.yaml
LIST
echo

REPEAT="${REPEAT:-20}"
work="$(mktemp -d)"
trap 'rm -rf "$work" "$helm_home"' EXIT

# --- the workload: 200 Helm-style templates, 100 values entries
python3 - "$work" "$REPEAT" <<'PY'
import json, os, sys
work, repeat = sys.argv[1], int(sys.argv[2])
entries = {f"key{i:03d}": (f"value-{i}" if i % 3 else i * 1000) for i in range(100)}
values = {"name": "bench", "replicas": 3, "entries": entries,
          "image": {"repository": "nginx", "tag": "1.25"}, "labels": {"team": "a", "tier": "web"}}
tmpl = '''{{- define "labels" -}}
app.kubernetes.io/name: {{ .Values.name }}
{{- range $k, $v := .Values.labels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "%s-cm-NUM" .Values.name | trunc 63 | trimSuffix "-" }}
  labels:
    {{- include "labels" . | nindent 4 }}
data:
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default "latest" }}"
  count: {{ len .Values.entries | quote }}
{{- range $k, $v := .Values.entries }}
  {{ $k }}: {{ $v | toString | upper | quote }}
{{- end }}
  all.yaml: |
    {{- toYaml .Values.entries | nindent 4 }}
  digest: {{ toJson .Values.labels | sha256sum }}
{{- if gt (int .Values.replicas) 1 }}
  ha: "true"
{{- end }}
'''
# Go's text/template has no include; define it for the Go side as sprig-free template call.
go_tmpl = tmpl.replace('{{- include "labels" . | nindent 4 }}', '{{- template "labels" . }}')
keel_tmpl = go_tmpl
with open(os.path.join(work, "cases.jsonl"), "w") as f:
    for n in range(200):
        t = keel_tmpl.replace("NUM", str(n))
        f.write(json.dumps({"tmpl": t, "data": {"Values": values}, "ints": True, "missing": "zero", "repeat": repeat}) + "\n")
# the same chart for `keel chart template`
chart = os.path.join(work, "benchchart")
os.makedirs(os.path.join(chart, "templates"))
with open(os.path.join(chart, "Chart.yaml"), "w") as f:
    f.write("apiVersion: v2\nname: benchchart\nversion: 0.1.0\n")
with open(os.path.join(chart, "values.yaml"), "w") as f:
    json.dump(values, f)
for n in range(200):
    with open(os.path.join(chart, "templates", f"cm{n:03d}.yaml"), "w") as f:
        f.write(tmpl.replace("NUM", str(n)).replace('define "labels"', f'define "labels{n}"').replace('include "labels"', f'include "labels{n}"'))
PY

# --- build both sides
cargo build --release -q -p keel-gotmpl --example bench_render
goref_dir="$CARGO_TARGET_DIR/goref"
mkdir -p "$goref_dir"
GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$goref_dir/cache" \
  go build -o "$goref_dir/goref-bench" crates/keel-gotmpl/tests/goref/main.go

# --- run: best of 3 for each
best() { sort -n | head -1; }
keel_ns=$(for _ in 1 2 3; do "$CARGO_TARGET_DIR/release/examples/bench_render" < "$work/cases.jsonl" | cut -d' ' -f1; done | best)
go_ns=$(for _ in 1 2 3; do "$goref_dir/goref-bench" < "$work/cases.jsonl" | python3 -c 'import sys,json; print(sum(json.loads(l)["ns"] for l in sys.stdin))'; done | best)
chart_ns=$(for _ in 1 2 3; do s=$(date +%s%N); "$KEEL" chart template bench "$work/benchchart" > /dev/null; e=$(date +%s%N); echo $((e - s)); done | best)
helm_ns=$(for _ in 1 2 3; do s=$(date +%s%N); "$KEEL_HELM" template bench "$work/benchchart" > /dev/null; e=$(date +%s%N); echo $((e - s)); done | best)

python3 - "$keel_ns" "$go_ns" "$chart_ns" "$REPEAT" "$helm_ns" <<'PY'
import sys
k, g, c, r, h = (int(x) for x in sys.argv[1:])
print(f"200 templates x 100 values entries, each parsed once and executed {r} times")
print(f"  keel-gotmpl : {k/1e6:9.1f} ms")
print(f"  Go + sprig  : {g/1e6:9.1f} ms")
print(f"  ratio keel/Go: {k/g:.2f}x (goal <= 1.0x)")
print(f"the same 200-template chart, whole command, best of 3: keel chart template {c/1e6:.1f} ms, helm template {h/1e6:.1f} ms, ratio {c/h:.2f}x")
PY
