#!/usr/bin/env bash
# Benchmark: `keel build` vs `podman build` on one multi-stage Dockerfile with
# a generated ~200 MB context (2,000 small files + 4 big ones, deterministic),
# side by side in one run (hyperfine), printing medians and keel/podman ratios:
#   (a) no-change rebuild          goal <= 0.05x podman
#   (b) cold build, empty caches   goal <= 0.8x
#   (c) rebuild after changing one source file   goal <= 0.3x
# Usage: scripts/bench-build.sh [RUNS]   (default 5; the cold build uses 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
RUNS="${1:-5}"
COLD_RUNS=3
[ "$RUNS" -lt "$COLD_RUNS" ] && COLD_RUNS="$RUNS"
cargo build --release --locked -p keel >&2
KEEL="$CARGO_TARGET_DIR/release/keel"
WORK="$(mktemp -d /var/tmp/keel-bench-build.XXXXXX)"
PODMAN_DIR="$WORK/podman"
cleanup() {
  local rc=$?
  # A failed build shows why (the timed runs discard their output).
  [ "$rc" -ne 0 ] && [ -s "$WORK/build.log" ] && tail -20 "$WORK/build.log" >&2
  [ -n "${PODMAN:-}" ] && $PODMAN system reset -f >/dev/null 2>&1 || true
  umount -R "$PODMAN_DIR/root" >/dev/null 2>&1 || true
  # keel's RUN containers are gone when builds end; nothing is mounted here.
  rm -rf "$WORK"
}
trap cleanup EXIT
keel_podman_setup "$PODMAN_DIR"
export KEEL_ROOT="$WORK/keel"
CTX="$WORK/ctx"

echo "generating a ~200 MB build context in $CTX ..." >&2
python3 - "$CTX" <<'PY'
import os, random, sys
ctx = sys.argv[1]
rng = random.Random(4)  # deterministic: same context every run
for i in range(2000):  # 2,000 files of 50 KB in 20 directories
    d = os.path.join(ctx, "src", f"pkg{i % 20:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:04}.dat"), "wb") as f:
        f.write(rng.randbytes(50 * 1000))
os.makedirs(os.path.join(ctx, "assets"), exist_ok=True)
for i in range(4):  # 4 files of 25 MB
    with open(os.path.join(ctx, "assets", f"big{i}.bin"), "wb") as f:
        f.write(rng.randbytes(25 * 1000 * 1000))
with open(os.path.join(ctx, ".dockerignore"), "w") as f:
    f.write("Dockerfile\n.dockerignore\n")
with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write("""\
FROM busybox AS assets
COPY assets/ /assets/
RUN md5sum /assets/* > /assets.md5

FROM busybox AS build
RUN mkdir -p /out && echo toolchain > /out/toolchain
COPY src/ /src/
RUN find /src -type f | sort | xargs md5sum > /out/sums && tar -cf /out/src.tar -C /src .

FROM busybox
COPY --from=assets /assets.md5 /app/
COPY --from=build /out/ /app/
ENV APP=/app
CMD ["ls", "-l", "/app"]
""")
PY
du -sh "$CTX" >&2

$KEEL image seed-busybox >/dev/null
$KEEL save -o "$WORK/busybox.tar" busybox
$PODMAN load -q -i "$WORK/busybox.tar" >/dev/null
KB="$KEEL build -t localhost/bench-build:1 $CTX"
PB="$PODMAN build --format docker --pull=never --network=none -t localhost/bench-build:1 $CTX"

# (a) Nothing changed since the last build (warmups fill the caches).
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/a.json" \
  -n "keel no-change" "$KB >/dev/null 2>>$WORK/build.log" \
  -n "podman no-change" "$PB >/dev/null 2>>$WORK/build.log" >&2

# (c) One source file changed before each run.
touch_one="python3 -c 'import os,sys; open(sys.argv[1],\"ab\").write(os.urandom(64))' $CTX/src/pkg07/f0007.dat"
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/c.json" \
  -n "keel one-file" --prepare "$touch_one" "$KB >/dev/null 2>>$WORK/build.log" \
  -n "podman one-file" --prepare "$touch_one" "$PB >/dev/null 2>>$WORK/build.log" >&2

# (b) Cold: empty stores and caches, only the busybox base present.
hyperfine --runs "$COLD_RUNS" --export-json "$WORK/b.json" \
  -n "keel cold" --prepare "rm -rf $KEEL_ROOT && $KEEL load -i $WORK/busybox.tar >/dev/null && sync" "$KB >/dev/null 2>>$WORK/build.log" \
  -n "podman cold" --prepare "$PODMAN system reset -f >/dev/null 2>&1; $PODMAN load -q -i $WORK/busybox.tar >/dev/null && sync" "$PB >/dev/null 2>>$WORK/build.log" >&2

python3 - "$WORK/a.json" "$WORK/b.json" "$WORK/c.json" <<'PY'
import json, sys
labels = {"a": ("(a) no-change rebuild", 0.05), "b": ("(b) cold build", 0.8), "c": ("(c) one-file change", 0.3)}
print("| build (multi-stage, ~200 MB context) | keel median (s) | podman median (s) | keel/podman | goal |")
print("|---|---|---|---|---|")
for f in sys.argv[1:]:
    r = {x["command"].split()[0]: x["median"] for x in json.load(open(f))["results"]}
    name, goal = labels[f.rsplit("/", 1)[1][0]]
    k, p = r["keel"], r["podman"]
    print(f"| {name} | {k:.3f} | {p:.3f} | {k/p:.3f}x | <= {goal}x |")
PY
