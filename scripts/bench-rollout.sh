#!/usr/bin/env bash
# Benchmark of progressive delivery through keel's gateway (a keel server
# and one agent in a network namespace made here, as crates/keel/tests'
# node_hosts clusters; removed on exit). One client sends requests one
# after another through the node's gateway, each on a new connection, and
# records every answer with the time it ended.
#
# - blue-green switch: a Rollout with autoPromotionEnabled: false is
#   promoted (the pause conditions cleared, as `kubectl argo rollouts
#   promote` does) once it paused with the preview up; the switch time runs
#   from the API's acknowledgment of that patch to the end of blue's last
#   answer (every request after it reaches green). Goal < 100 ms.
# - abort: a canary at 20% whose pods answer 500 is failed by its
#   prometheus analysis (keel's gateway metrics, scraped every 500 ms, read
#   through prometheus.keel-system.svc from the server's own query API);
#   the abort time runs from the AnalysisRun turning Failed (as a watch
#   sees it) to the end of the canary's last answer. Goal < 1 s.
#
# usage: scripts/bench-rollout.sh [RUNS]   (as root: netns, veths)
# KEEL_BENCH_DEBUG=1 uses a debug build (say so in the figures recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export KEEL_BENCH_RUNS=${1:-5}
PROFILE=(--release)
[ -n "${KEEL_BENCH_DEBUG:-}" ] && PROFILE=()
echo "bench-rollout: $KEEL_BENCH_RUNS runs each, ${PROFILE[*]:-debug} build; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test "${PROFILE[@]}" -q -p keel --test cluster_rollout -- --ignored --test-threads 1 --nocapture bench_ 2>&1 \
  | grep -E '^(run [0-9]+|bench-rollout):'
