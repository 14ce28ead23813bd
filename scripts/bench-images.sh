#!/usr/bin/env bash
# Benchmark: `load` and `save` of a generated 20-layer / 500 MB image, keel
# and podman side by side in one run (hyperfine), printing keel/podman ratios.
# Usage: scripts/bench-images.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
RUNS="${1:-5}"
cargo build --release --locked -p keel >&2
KEEL="$CARGO_TARGET_DIR/release/keel"
WORK="$(mktemp -d /var/tmp/keel-bench-images.XXXXXX)"
PODMAN_DIR="$WORK/podman"
cleanup() {
  [ -n "${PODMAN:-}" ] && $PODMAN system reset -f >/dev/null 2>&1 || true
  umount -R "$PODMAN_DIR/root" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
keel_podman_setup "$PODMAN_DIR"

echo "generating a 20-layer, 500 MB docker-archive in $WORK ..." >&2
python3 - "$WORK/image.tar" <<'PY'
import hashlib, io, json, os, sys, tarfile, time
out = sys.argv[1]
layers, diff_ids = [], []
for i in range(20):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for j in range(5):  # 5 files of 5 MB of random (incompressible) data per layer
            data = os.urandom(5 * 1000 * 1000)
            ti = tarfile.TarInfo(f"layer{i}/file{j}.bin"); ti.size = len(data); ti.mtime = 0
            t.addfile(ti, io.BytesIO(data))
    b = buf.getvalue()
    d = hashlib.sha256(b).hexdigest()
    layers.append((d, b)); diff_ids.append("sha256:" + d)
config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
    "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [{"created": "2026-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(20)]}).encode()
cd = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": f"{cd}.json", "RepoTags": ["localhost/bench:1"],
    "Layers": [f"{d}.tar" for d, _ in layers]}]).encode()
with tarfile.open(out, "w") as t:
    for name, data in [(f"{cd}.json", config), ("manifest.json", manifest)] + [(f"{d}.tar", b) for d, b in layers]:
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 0
        t.addfile(ti, io.BytesIO(data))
PY
ls -l "$WORK/image.tar" >&2

export KEEL_ROOT="$WORK/keel"
# Each load starts from an empty store; each save from a loaded image.
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/load.json" \
  -n "keel load" --prepare "$KEEL rmi -f localhost/bench:1 >/dev/null 2>&1; $KEEL system prune -a -f >/dev/null; sync" \
  "$KEEL load -i $WORK/image.tar" \
  -n "podman load" --prepare "$PODMAN rmi -f localhost/bench:1 >/dev/null 2>&1; sync" \
  "$PODMAN load -q -i $WORK/image.tar" >&2
$KEEL load -i "$WORK/image.tar" >/dev/null
$PODMAN load -q -i "$WORK/image.tar" >/dev/null
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/save.json" \
  -n "keel save" --prepare "rm -f $WORK/out-k.tar; sync" "$KEEL save -o $WORK/out-k.tar localhost/bench:1" \
  -n "podman save" --prepare "rm -f $WORK/out-p.tar; sync" "$PODMAN save -q -o $WORK/out-p.tar localhost/bench:1" >&2

python3 - "$WORK/load.json" "$WORK/save.json" <<'PY'
import json, sys
print("| operation | keel median (s) | podman median (s) | keel/podman |")
print("|---|---|---|---|")
for f in sys.argv[1:]:
    r = {x["command"]: x["median"] for x in json.load(open(f))["results"]}
    (kn, k), (pn, p) = [(n, v) for n, v in r.items() if n.startswith("keel")][0], [(n, v) for n, v in r.items() if n.startswith("podman")][0]
    print(f"| {kn.split()[1]} 20 layers / 500 MB | {k:.3f} | {p:.3f} | {k/p:.2f}x |")
PY
