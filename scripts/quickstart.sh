#!/usr/bin/env bash
# keel's quickstart on embedded defaults. Grows with each capability.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
cargo build --release --locked -p keel
KEEL="$CARGO_TARGET_DIR/release/keel"
"$KEEL" --version
