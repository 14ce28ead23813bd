#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Debian packages), then
# formatting, lints and every test. Tests never skip for a missing tool: a
# missing tool is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
# Snapshots and goldens that keel itself wrote are regression tests only:
# under CI they are compared, never rewritten (see .config/insta.yaml).
case "${CI:-}" in
  "" | false | 0) ;;
  *)
    case "${INSTA_UPDATE:-no}" in
      no | auto) ;;
      *) echo "CI is set: refusing INSTA_UPDATE=$INSTA_UPDATE (snapshots are compared, never rewritten, in CI)" >&2; exit 1 ;;
    esac
    if [ -n "${UPDATE_GOLDEN:-}" ]; then
      echo "CI is set: refusing UPDATE_GOLDEN (goldens are compared, never rewritten, in CI)" >&2
      exit 1
    fi
    export INSTA_UPDATE=no
    ;;
esac
keel_ensure_packages
keel_ensure_helm      # real Helm 4.1.4: chart conformance tests compare with it; server_helm installs with it
keel_ensure_terraform
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
