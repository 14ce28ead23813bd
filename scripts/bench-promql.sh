#!/usr/bin/env bash
# PromQL query latency, keel-metrics beside Debian's Prometheus in one run:
# N counter series (job x instance x code) and a 10-bucket histogram per
# instance, one hour at a 15s scrape interval, loaded into both (Prometheus
# through `promtool tsdb create-blocks-from openmetrics`, keel through its
# promql_serve example from the same file). Each query is sent REPEAT
# times, one at a time over a keep-alive connection; p50 and p99 per
# query and the ratios keel/Prometheus (below 1 means keel is faster).
# Everything listens on 127.0.0.1 random ports and is removed on exit.
#
# usage: scripts/bench-promql.sh [SERIES] [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N=${1:-1000}
REPEAT=${2:-50}

keel_ensure_packages
[ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel-metrics --example promql_serve
SERVE="$CARGO_TARGET_DIR/release/examples/promql_serve"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

END=$(( $(date +%s) / 60 * 60 - 600 ))
python3 - "$N" "$END" "$WORK/data.om" <<'PY'
import random, sys
n, end, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(7)
start = end - 3600
out = []
instances = max(1, n // 20)
for i in range(n):
    inst, code = i // 2 % instances, ("200", "500")[i % 2]
    job = f"job{i // (2 * instances)}"
    v = random.randint(1000, 5000)
    for t in range(start, end, 15):
        out.append(f'http_requests_total{{job="{job}",instance="i{inst}",code="{code}"}} {v} {t}.{random.randint(1, 999):03d}')
        v += random.randint(0, 100)
bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
for inst in range(instances):
    counts = [0] * len(bounds)
    lines = [[] for _ in bounds]
    for t in range(start, end, 15):
        ms = random.randint(1, 999)
        for _ in range(random.randint(0, 50)):
            b = random.randrange(len(bounds))
            for j in range(b, len(bounds)):
                counts[j] += 1
        for j, le in enumerate(bounds):
            lines[j].append(f'req_duration_seconds_bucket{{instance="i{inst}",le="{le}"}} {counts[j]} {t}.{ms:03d}')
    for l in lines:
        out.extend(l)
out.append("# EOF")
open(path, "w").write("\n".join(out) + "\n")
PY
promtool tsdb create-blocks-from openmetrics "$WORK/data.om" "$WORK/tsdb" >/dev/null
echo "global: {}" > "$WORK/prometheus.yml"

PPORT=$(port)
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PPORT" --storage.tsdb.retention.time=30d >"$WORK/prom.log" 2>&1 &
PIDS+=($!)
KPORT=$(port)
"$SERVE" "$WORK/data.om" "127.0.0.1:$KPORT" 2>"$WORK/keel.log" &
PIDS+=($!)
for i in $(seq 300); do
  curl -sf "http://127.0.0.1:$PPORT/-/ready" >/dev/null 2>&1 && grep -q ready "$WORK/keel.log" && break
  sleep 0.2
done
grep -q ready "$WORK/keel.log" || { cat "$WORK/keel.log"; exit 1; }

python3 - "$PPORT" "$KPORT" "$END" "$REPEAT" "$N" <<'PY'
import http.client, json, sys, time, urllib.parse
pport, kport, end, repeat, n = map(int, sys.argv[1:])
t = end - 120.5
queries = [
    ("rate 5m", "query", {"query": "rate(http_requests_total[5m])", "time": t}),
    ("sum by code (rate)", "query", {"query": "sum by (code) (rate(http_requests_total[5m]))", "time": t}),
    ("sum by job, instance (irate)", "query", {"query": "sum by (job, instance) (irate(http_requests_total[1m]))", "time": t}),
    ("histogram_quantile", "query", {"query": "histogram_quantile(0.9, sum by (le) (rate(req_duration_seconds_bucket[5m])))", "time": t}),
    ("range 1h/15s sum by code", "query_range", {"query": "sum by (code) (rate(http_requests_total[5m]))", "start": end - 3600 + 300, "end": end, "step": 15}),
]
def run(port, kind, params):
    c = http.client.HTTPConnection("127.0.0.1", port)
    path = f"/api/v1/{kind}?" + urllib.parse.urlencode(params)
    c.request("GET", path); r = c.getresponse(); body = r.read()
    assert r.status == 200, body[:300]
    res = json.loads(body)["data"]["result"]
    times = []
    for _ in range(repeat):
        s = time.perf_counter(); c.request("GET", path); r = c.getresponse(); r.read(); times.append(time.perf_counter() - s)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))], len(res)
print(f"{n} counter series, 1h at 15s; {repeat} sequential requests per query; latency in ms")
print(f"{'query':32} {'keel p50':>9} {'prom p50':>9} {'ratio':>6} {'keel p99':>9} {'prom p99':>9} {'ratio':>6} series")
for name, kind, params in queries:
    kp50, kp99, kn = run(kport, kind, params)
    pp50, pp99, pn = run(pport, kind, params)
    assert kn == pn, f"{name}: keel {kn} series, Prometheus {pn}"
    print(f"{name:32} {kp50*1e3:9.2f} {pp50*1e3:9.2f} {kp50/pp50:6.2f} {kp99*1e3:9.2f} {pp99*1e3:9.2f} {kp99/pp99:6.2f} {kn}")
PY
