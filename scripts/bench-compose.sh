#!/usr/bin/env bash
# Benchmark: a 5-service compose project (busybox; a web server with a
# published port, services on the project network, a named volume),
# side by side in one run (hyperfine):
#   keel compose up -d   /  keel compose down
#   podman-compose up -d /  podman-compose down   (podman with runc, cgroupfs)
# Each `up -d` starts from a downed project; each `down` from an upped one.
# Prints keel/podman-compose ratios.
# Usage: scripts/bench-compose.sh [RUNS]   (default 10)
#        KEEL_BIN=path/to/keel scripts/bench-compose.sh   (skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
RUNS="${1:-10}"
if [ -n "${KEEL_BIN:-}" ]; then
  KEEL="$KEEL_BIN"
else
  cargo build --release --locked -p keel >&2
  KEEL="$CARGO_TARGET_DIR/release/keel"
fi
WORK="$(mktemp -d /var/tmp/keel-bench-compose.XXXXXX)"
PODMAN_DIR="$WORK/podman"
export KEEL_ROOT="$WORK/keel"
PROJECT="kbench$$"
cleanup() {
  (cd "$WORK/project" && "$KEEL" compose -p "$PROJECT" down -v -t 0 >/dev/null 2>&1) || true
  (cd "$WORK/project" && $PC -p "$PROJECT" down >/dev/null 2>&1) || true
  [ -n "${PODMAN:-}" ] && $PODMAN system reset -f >/dev/null 2>&1 || true
  umount -R "$PODMAN_DIR/root" >/dev/null 2>&1 || true
  grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
keel_podman_setup "$PODMAN_DIR"
# podman-compose with podman's throw-away store (a wrapper: the arguments have spaces).
cat > "$WORK/podman-compose" <<SH
#!/bin/sh
exec podman-compose --podman-args="${PODMAN#podman }" "\$@"
SH
chmod +x "$WORK/podman-compose"
PC="$WORK/podman-compose"

mkdir -p "$WORK/project"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/project/docker-compose.yml" <<YAML
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "8080", "-h", "/"]
    ports: ["127.0.0.1:$PORT:8080"]
    stop_signal: SIGKILL
    depends_on: [api]
  api:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    depends_on: [db, cache]
  db:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    volumes: ["data:/data"]
  cache:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
  worker:
    image: busybox
    command: ["sleep", "3600"]
    stop_signal: SIGKILL
    depends_on: [db]
volumes:
  data: {}
YAML

# The same busybox image for everyone.
"$KEEL" image seed-busybox >/dev/null
"$KEEL" save -o "$WORK/busybox.tar" busybox >/dev/null
$PODMAN load -q -i "$WORK/busybox.tar" >/dev/null

cd "$WORK/project"
K="$KEEL compose -p $PROJECT"
P="$PC -p $PROJECT"
# Sanity: each brings the project up (serving on the port) and down.
$K up -d >/dev/null 2>&1
python3 - "$PORT" <<'PY'
import sys, time, urllib.error, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2)
        break
    except urllib.error.HTTPError:
        break  # an HTTP answer (404 for /) is what we wait for
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("keel compose: the web service does not answer on its published port")
PY
[ "$("$KEEL" ps -q | wc -l)" = 5 ] || { echo "keel compose up did not start 5 containers" >&2; exit 1; }
$K down >/dev/null 2>&1
$P up -d >"$WORK/pc-up.log" 2>&1 || { cat "$WORK/pc-up.log" >&2; exit 1; }
[ "$($PODMAN ps -q | wc -l)" = 5 ] || { echo "podman-compose up did not start 5 containers" >&2; exit 1; }
$P down >/dev/null 2>&1

# Only one project is up at a time: each prepare downs the other tool's.
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/up.json" \
  --prepare "$P down >/dev/null 2>&1; $K down >/dev/null 2>&1" -n "keel compose up -d" "$K up -d" \
  --prepare "$K down >/dev/null 2>&1; $P down >/dev/null 2>&1" -n "podman-compose up -d" "$P up -d" >&2
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/down.json" \
  --prepare "$P down >/dev/null 2>&1; $K up -d >/dev/null 2>&1" -n "keel compose down" "$K down" \
  --prepare "$K down >/dev/null 2>&1; $P up -d >/dev/null 2>&1" -n "podman-compose down" "$P down" >&2

python3 - "$WORK/up.json" "$WORK/down.json" <<'PY'
import json, sys
print("| 5-service project | keel median (ms) | podman-compose median (ms) | keel / podman-compose |")
print("|---|---|---|---|")
for f in sys.argv[1:]:
    r = [x for x in json.load(open(f))["results"]]
    k, p = r[0]["median"], r[1]["median"]
    op = r[0]["command"].replace("keel compose ", "")
    print(f"| `{op}` | {k*1000:.0f} | {p*1000:.0f} | {k/p:.3f}x |")
PY
