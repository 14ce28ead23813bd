#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages), then
# formatting, lints and every test. Tests never skip for a missing tool: a
# missing tool is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
keel_ensure_helm      # real Helm 4.1.4: chart conformance tests compare with it
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
