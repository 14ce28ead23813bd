#!/usr/bin/env bash
# Benchmark of the pod network: HTTP requests/s and p99 latency (wrk,
# 16 connections, nginx answering a 3-byte body) pod to pod on one node
# (the node's bridge), pod to pod across nodes (keel's VXLAN overlay), and
# node host to node host (the routed underlay the overlay rides on, the
# baseline), side by side in one run. A 2-node cluster of node hosts in
# network namespaces on this machine (crates/keel/tests/node_hosts); the
# data path is the kernel's, so the debug build of keel is fine.
# Everything is torn down on exit.
#
# usage: scripts/bench-podnet.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
keel_ensure_packages
export KEEL_BENCH_SECS=${1:-10}
cargo test -q -p keel --test cluster_network -- --ignored --exact bench_pod_network --nocapture 2>&1 \
  | grep '^podnet:'
