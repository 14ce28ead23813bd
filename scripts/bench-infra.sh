#!/usr/bin/env bash
# keel infra vs terraform 1.11, side by side on one configuration of 1,001
# terraform_data resources (a root and a fan of 1,000 depending on it):
# apply, a no-change plan, destroy. Prints seconds and keel/terraform ratios.
# Usage: scripts/bench-infra.sh [N_FAN]   (KEEL=path/to/keel to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
N="${1:-1000}"
if [ -z "${KEEL:-}" ]; then
  cargo build --release -p keel >&2
  KEEL="$CARGO_TARGET_DIR/release/keel"
fi
command -v terraform >/dev/null || { echo "terraform 1.11 is required" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export TF_CLI_CONFIG_FILE=/dev/null CHECKPOINT_DISABLE=1
for tool in keel tf; do
  mkdir -p "$work/$tool"
  cat > "$work/$tool/main.tf" <<TF
resource "terraform_data" "root" {
  input = "root"
}
resource "terraform_data" "fan" {
  count = $N
  input = "\${terraform_data.root.output}-\${count.index}"
}
output "count" {
  value = length(terraform_data.fan)
}
TF
done
(cd "$work/tf" && terraform init -no-color >/dev/null)
(cd "$work/keel" && "$KEEL" infra init -no-color >/dev/null)

secs() { # dir, command...
  local dir="$1"; shift
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$dir" && "$@" >/dev/null)
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

printf '%-22s %10s %10s %8s\n' step terraform keel ratio
for step in apply plan destroy; do
  case $step in
    apply) targs=(apply -auto-approve -no-color); kargs=(infra apply -auto-approve -no-color) ;;
    plan) targs=(plan -no-color -detailed-exitcode); kargs=(infra plan -no-color -detailed-exitcode) ;;
    destroy) targs=(destroy -auto-approve -no-color); kargs=(infra destroy -auto-approve -no-color) ;;
  esac
  t=$(secs "$work/tf" terraform "${targs[@]}")
  k=$(secs "$work/keel" "$KEEL" "${kargs[@]}")
  printf '%-22s %10.3f %10.3f %8.4f\n' "$step ($((N + 1)) resources)" "$t" "$k" "$(echo "$k / $t" | bc -l)"
done
