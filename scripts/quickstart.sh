#!/usr/bin/env bash
# keel's quickstart on embedded defaults (state under /var/lib/keel, or
# $KEEL_ROOT). It grows with each capability; today: make the offline busybox
# base image, push it through a local registry, pull it back; plan and apply
# a Terraform configuration with keel infra.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
cargo build --release --locked -p keel >&2
KEEL="$CARGO_TARGET_DIR/release/keel"
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  step() { printf '\n==> %s\n' "$*"; }
fi

step "keel version"
"$KEEL" version

step "import Debian's busybox-static as busybox:latest"
"$KEEL" image seed-busybox busybox:latest
"$KEEL" image prune -f >/dev/null  # an earlier busybox:latest, now untagged
"$KEEL" images busybox

REG_DIR="$(mktemp -d /tmp/keel-quickstart-registry.XXXXXX)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$REG_DIR/config.yml" <<CONF
version: 0.1
storage:
  filesystem:
    rootdirectory: $REG_DIR/data
http:
  addr: 127.0.0.1:$PORT
log:
  level: warn
CONF
docker-registry serve "$REG_DIR/config.yml" >"$REG_DIR/log" 2>&1 &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null; rm -rf "$REG_DIR"' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

step "push it to a local registry (Debian's docker-registry on 127.0.0.1:$PORT)"
"$KEEL" tag busybox "127.0.0.1:$PORT/quickstart/busybox:1"
"$KEEL" push "127.0.0.1:$PORT/quickstart/busybox:1"

step "remove it locally (blobs go too) and pull it back from the registry"
"$KEEL" rmi "127.0.0.1:$PORT/quickstart/busybox:1" busybox:latest
"$KEEL" pull "127.0.0.1:$PORT/quickstart/busybox:1"
"$KEEL" tag "127.0.0.1:$PORT/quickstart/busybox:1" busybox:latest
"$KEEL" images --digests

step "save it to an archive that docker and podman load"
"$KEEL" save -o "$REG_DIR/busybox.tar" busybox
ls -l "$REG_DIR/busybox.tar"
"$KEEL" history busybox
"$KEEL" rmi "127.0.0.1:$PORT/quickstart/busybox:1" >/dev/null  # that registry is gone after this script

step "render a Helm chart as helm template does (values numbers are Helm's float64)"
"$KEEL" chart create "$REG_DIR/mychart" >/dev/null 2>&1
"$KEEL" chart template web "$REG_DIR/mychart" -n prod --set service.port=8080 \
  --set-literal 'podAnnotations.note=a,b=c' --show-only templates/service.yaml

step "run a GitHub Actions workflow locally: keel ci (host job, busybox container job, masked secret)"
CI_DIR="$(mktemp -d /tmp/keel-quickstart-ci.XXXXXX)"
mkdir -p "$CI_DIR/.github/workflows"
cat > "$CI_DIR/.github/workflows/ci.yml" <<'YAML'
name: quickstart
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        n: [1, 2]
    outputs:
      greeting: ${{ steps.hi.outputs.greeting }}
    steps:
      - id: hi
        run: echo "greeting=hello from job ${{ matrix.n }}" >> "$GITHUB_OUTPUT"
      - run: echo "the token is $TOKEN"
        env:
          TOKEN: ${{ secrets.TOKEN }}
  in-container:
    needs: test
    runs-on: busybox-runner
    steps:
      - run: echo "${{ needs.test.outputs.greeting }}, now in $(cat /etc/hostname)"
YAML
git -C "$CI_DIR" init -q -b main
git -C "$CI_DIR" -c user.name=quickstart -c user.email=q@example.com add -A
git -C "$CI_DIR" -c user.name=quickstart -c user.email=q@example.com commit -qm ci
"$KEEL" ci run -C "$CI_DIR" -P ubuntu-latest=-self-hosted -s TOKEN=s3cret
"$KEEL" ci runs
rm -rf "$CI_DIR"

step "infrastructure as code: keel infra on a Terraform configuration (built-in providers, offline)"
INFRA_DIR="$(mktemp -d /tmp/keel-quickstart-infra.XXXXXX)"
cat > "$INFRA_DIR/main.tf" <<'TF'
resource "random_pet" "name" {}
resource "terraform_data" "server" {
  count = 2
  input = "${random_pet.name.id}-${count.index}"
}
output "servers" {
  value = terraform_data.server[*].output
}
TF
(cd "$INFRA_DIR" && "$KEEL" infra init >/dev/null && "$KEEL" infra apply -auto-approve && "$KEEL" infra destroy -auto-approve)
rm -rf "$INFRA_DIR"

printf '\nDone. State is under %s.\n' "${KEEL_ROOT:-/var/lib/keel}"
