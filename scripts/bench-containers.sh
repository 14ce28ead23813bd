#!/usr/bin/env bash
# Benchmark: one container cycle (create, start, run `true`, wait, remove)
# until nothing of it is left, side by side in one run (hyperfine):
#   keel run --rm --network none busybox true   (libcontainer in process, and --runtime runc)
#   podman run --rm --network none busybox true (podman with runc, cgroupfs)
#   runc run on an equivalent bundle            (the floor: no image, no bookkeeping)
# and the same on the default bridge (keel and podman).
# Equal work: podman's and runc's commands return once the container is
# removed; `keel run --rm` returns on the exit code while its monitor
# still releases the container (mounts, cgroups, netns, veth, record). So
# every measured command is followed by a wait until the runtime holds
# nothing of the container (for keel: no record, hidden or not, left under
# its root, which is the last thing the release deletes); the time is
# "until removed" for all. The time until `keel run` returns is printed
# beside, for information.
# Prints keel/podman and keel/runc ratios, the machine's load, and two kernel
# floors every runtime pays: new namespaces (`unshare`), and the first
# cgroup migration after an idle spell (a cgroup.procs write waits for an RCU
# grace period unless cgroupfs has favordynmods; see
# crates/keel-runtime/src/cgroups.rs). Any failing run fails the script.
# Usage: scripts/bench-containers.sh [RUNS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
RUNS="${1:-30}"
cargo build --release --locked -p keel >&2
KEEL="$CARGO_TARGET_DIR/release/keel"
WORK="$(mktemp -d /var/tmp/keel-bench-containers.XXXXXX)"
PODMAN_DIR="$WORK/podman"
export KEEL_ROOT="$WORK/keel"
cleanup() {
  for id in $("$KEEL" ps -aq 2>/dev/null); do "$KEEL" rm -f "$id" >/dev/null 2>&1 || true; done
  # Gives back the default bridge and its iptables rules.
  "$KEEL" network prune -f >/dev/null 2>&1 || true
  [ -n "${PODMAN:-}" ] && $PODMAN system reset -f >/dev/null 2>&1 || true
  umount -R "$PODMAN_DIR/root" >/dev/null 2>&1 || true
  grep -o " $WORK[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
keel_podman_setup "$PODMAN_DIR"

# The same busybox image for everyone.
"$KEEL" image seed-busybox >/dev/null
"$KEEL" save -o "$WORK/busybox.tar" busybox >/dev/null
$PODMAN load -q -i "$WORK/busybox.tar" >/dev/null

# A runc bundle: runc's default spec (its own namespaces, caps, rlimits) over
# the unpacked busybox root, running `true`.
mkdir -p "$WORK/bundle/rootfs"
tar -C "$WORK/bundle/rootfs" -xf <(python3 - "$WORK/busybox.tar" <<'PY'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
m = json.load(t.extractfile("manifest.json"))[0]
sys.stdout.buffer.write(t.extractfile(m["Layers"][0]).read())
PY
)
(cd "$WORK/bundle" && runc spec && python3 - <<'PY'
import json
s = json.load(open("config.json"))
s["process"]["args"] = ["true"]
s["process"]["terminal"] = False
s["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
json.dump(s, open("config.json", "w"))
PY
)
RUNC="runc --root $WORK/runc-state run --bundle $WORK/bundle bench"

# Waits (bash builtins only: no process is started, so the wait costs the
# same for everyone) until no record of a keel container is left under
# KEEL_ROOT; a no-op for podman and runc, which remove before returning.
# hyperfine runs every command through bash and subtracts bash's start-up.
mkfifo "$WORK/idle"
GONE="exec 9<>$WORK/idle; shopt -s nullglob; while f=($KEEL_ROOT/containers/[0-9a-f]* $KEEL_ROOT/containers/.removed-*); ((\${#f[@]})); do read -t 0.0002 -u 9 || :; done"
until_gone() { echo "$1 && $GONE"; }

# Sanity: each works once (bridge included: a failure stops the script).
"$KEEL" run --rm --network none busybox true
"$KEEL" run --rm --network none --runtime runc busybox true
$PODMAN run --rm --network none busybox true
$RUNC
"$KEEL" run --rm busybox true
$PODMAN run --rm busybox true
bash -c "$(until_gone true)"

# Let the sanity runs' background work (podman's cleanup process, keel's
# monitors releasing their containers, netns teardown) finish first.
sleep 3
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
hyperfine --runs "$RUNS" --warmup 3 -S bash --export-json "$WORK/none.json" \
  -n "keel (libcontainer)" "$(until_gone "$KEEL run --rm --network none busybox true")" \
  -n "keel --runtime runc" "$(until_gone "$KEEL run --rm --network none --runtime runc busybox true")" \
  -n "podman (runc)" "$(until_gone "$PODMAN run --rm --network none busybox true")" \
  -n "runc run" "$(until_gone "$RUNC")" >&2
# For information: until `keel run` returns (the previous release waited
# for, untimed, before each run).
hyperfine --runs "$RUNS" --warmup 3 -S bash --prepare "$GONE" --export-json "$WORK/returns.json" \
  -n "keel (libcontainer), until run returns" "$KEEL run --rm --network none busybox true" >&2
hyperfine --runs "$RUNS" --warmup 3 -S bash --export-json "$WORK/bridge.json" \
  -n "keel bridge" "$(until_gone "$KEEL run --rm busybox true")" \
  -n "podman bridge" "$(until_gone "$PODMAN run --rm busybox true")" >&2
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# The kernel floors, measured the same way each time: medians of 7.
hyperfine --runs 20 --warmup 3 -N --export-json "$WORK/unshare.json" \
  -n "unshare" "unshare --fork --pid --mount --net --uts --ipc true" >&2
python3 - "$WORK/unshare.json" > "$WORK/floors.txt" <<'PY'
import json, os, statistics, sys, time
ns = json.load(open(sys.argv[1]))["results"][0]["median"]
# This process's own cgroup.procs in the first cgroup hierarchy found; moving
# into the cgroup it is already in is a no-op migration that still takes the
# kernel's cgroup_threadgroup_rwsem for writing.
procs = None
mounts = [l.split(" - ") for l in open("/proc/self/mountinfo").read().splitlines()]
for l in open("/proc/self/cgroup").read().splitlines():
    _, ctrls, path = l.split(":", 2)
    for left, right in mounts:
        f, r = left.split(), right.split()
        ok = (r[0] == "cgroup2" and not ctrls) or (
            r[0] == "cgroup" and ctrls and set(ctrls.split(",")) <= set(r[2].split(",")))
        if ok and f[3] == "/":
            procs = f[4] + path.rstrip("/") + "/cgroup.procs"
            break
    if procs:
        break
def move():
    t = time.perf_counter()
    with open(procs, "w") as fh:
        fh.write(str(os.getpid()))
    return time.perf_counter() - t
cold, warm = [], []
for _ in range(7):
    time.sleep(0.3)  # idle: the lock falls back to its reader-friendly mode
    cold.append(move())
    warm.append(move())
print(f"Kernel floors: new pid/mount/net/uts/ipc namespaces (unshare) {ns*1000:.1f} ms; "
      f"first cgroup migration after idle {statistics.median(cold)*1000:.1f} ms, "
      f"the next one {statistics.median(warm)*1000:.2f} ms ({procs}).")
PY

python3 - "$WORK/none.json" "$WORK/bridge.json" "$WORK/returns.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
pod, runc = r["podman (runc)"], r["runc run"]
print("| `run --rm busybox true`, until removed | median (ms) | vs podman | vs runc run |")
print("|---|---|---|---|")
for name, v in r.items():
    print(f"| {name}, `--network none` | {v*1000:.1f} | {v/pod:.3f}x | {v/runc:.2f}x |")
b = {x["command"]: x["median"] for x in json.load(open(sys.argv[2]))["results"]}
kb, pb = b["keel bridge"], b["podman bridge"]
print(f"| keel, default bridge | {kb*1000:.1f} | {kb/pb:.3f}x (podman bridge {pb*1000:.1f} ms) | |")
ret = json.load(open(sys.argv[3]))["results"][0]["median"]
print(f"\n`keel run --rm --network none` returned after {ret*1000:.1f} ms (median), "
      f"{(r['keel (libcontainer)'] - ret)*1000:.1f} ms before the release was done.")
PY
cat "$WORK/floors.txt"
