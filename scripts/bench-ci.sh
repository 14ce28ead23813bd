#!/usr/bin/env bash
# Benchmark: `keel ci run` and nektos/act 0.2.89 side by side in one run
# (hyperfine), both in host mode (-P ubuntu-latest=-self-hosted), on the
# same workflows:
#   matrix: a 20-job matrix, two short steps a job
#   chain:  a 5-job needs chain, two short steps a job
# Goal: keel <= 0.5x act's wall time.
# Then keel's container jobs (busybox): a 10-job needs chain of one `true`
# step each, in containers and on the host; the overhead a job pays for its
# container is (container - host) / 10. Goal: <= 50 ms. A bare
# `keel run --rm busybox true` is timed in the same run for scale.
# Usage: scripts/bench-ci.sh [RUNS]   (default 10)
#        KEEL_BIN=path/to/keel scripts/bench-ci.sh   (skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
keel_ensure_act
RUNS="${1:-10}"
if [ -n "${KEEL_BIN:-}" ]; then
  KEEL="$KEEL_BIN"
else
  cargo build --release --locked -p keel >&2
  KEEL="$CARGO_TARGET_DIR/release/keel"
fi
WORK="$(mktemp -d /var/tmp/keel-bench-ci.XXXXXX)"
export KEEL_ROOT="$WORK/keel"
cleanup() {
  "$KEEL" rm -f $("$KEEL" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

REPO="$WORK/repo"
mkdir -p "$REPO/.github/workflows"
{
  echo "name: matrix"
  echo "on: push"
  echo "jobs:"
  echo "  m:"
  echo "    runs-on: ubuntu-latest"
  echo "    strategy:"
  echo "      matrix:"
  echo "        i: [$(seq -s, 1 20)]"
  echo "    steps:"
  echo "      - run: echo \"job \${{ matrix.i }}\""
  echo "      - run: test -n \"\$GITHUB_SHA\""
} > "$REPO/.github/workflows/matrix.yml"
chain() { # NAME JOBS RUNS_ON STEPS...
  local name="$1" n="$2" runs_on="$3"
  shift 3
  echo "name: $name"
  echo "on: push"
  echo "jobs:"
  for i in $(seq 1 "$n"); do
    echo "  j$i:"
    [ "$i" -gt 1 ] && echo "    needs: j$((i - 1))"
    echo "    runs-on: $runs_on"
    echo "    steps:"
    for s in "$@"; do echo "      - run: $s"; done
  done
}
chain chain 5 ubuntu-latest 'echo "job $GITHUB_JOB"' 'test -n "$GITHUB_SHA"' > "$REPO/.github/workflows/chain.yml"
mkdir -p "$WORK/containers/.github/workflows"
chain containers 10 container-job true > "$WORK/containers/.github/workflows/c.yml"
chain host 10 self-hosted true > "$WORK/containers/.github/workflows/h.yml"
for r in "$REPO" "$WORK/containers"; do
  git -C "$r" init -q -b main
  git -C "$r" -c user.name=bench -c user.email=b@example.com add -A
  git -C "$r" -c user.name=bench -c user.email=b@example.com commit -qm bench
done
"$KEEL" image seed-busybox busybox:latest >/dev/null

echo "== keel $("$KEEL" version | head -1) vs $("$ACT" --version), host mode, $(nproc) CPUs" >&2
for wf in matrix chain; do
  hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$WORK/$wf.json" \
    -n "keel $wf" "$KEEL ci run -C $REPO -W .github/workflows/$wf.yml -P ubuntu-latest=-self-hosted" \
    -n "act $wf" "$ACT push -C $REPO -W .github/workflows/$wf.yml -P ubuntu-latest=-self-hosted" >&2
done
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$WORK/containers.json" \
  -n "keel 10 container jobs" "$KEEL ci run -C $WORK/containers -W .github/workflows/c.yml -P container-job=busybox" \
  -n "keel 10 host jobs" "$KEEL ci run -C $WORK/containers -W .github/workflows/h.yml -P self-hosted=-self-hosted" \
  -n "keel run --rm busybox true" "$KEEL run --rm busybox true" >&2
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def mean(f, i):
    r = json.load(open(f"{work}/{f}.json"))["results"][i]
    return r["mean"], r["stddev"]
print("| workload | keel | act | keel/act |")
print("|---|---|---|---|")
for wf, label in (("matrix", "20-job matrix"), ("chain", "5-job needs chain")):
    (k, ks), (a, as_) = mean(wf, 0), mean(wf, 1)
    print(f"| {label} | {k*1000:.0f} ms ± {ks*1000:.0f} | {a*1000:.0f} ms ± {as_*1000:.0f} | {k/a:.3f}x |")
(c, cs), (h, hs), (r, rs) = mean("containers", 0), mean("containers", 1), mean("containers", 2)
per_job = (c - h) / 10
print()
print(f"container jobs: 10-job chain {c*1000:.0f} ms ± {cs*1000:.0f}, same on the host {h*1000:.0f} ms ± {hs*1000:.0f}: "
      f"{per_job*1000:.1f} ms container overhead per job (goal <= 50 ms); "
      f"a bare `keel run --rm busybox true` took {r*1000:.1f} ms ± {rs*1000:.0f} in the same run, "
      f"so a job's container costs {per_job/r:.2f}x one container run")
PY
