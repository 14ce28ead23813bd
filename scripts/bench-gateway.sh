#!/usr/bin/env bash
# Benchmark of keel's ingress gateway (keel-gateway's proxy, served by its
# gateway_bench example: the same request path as in the agent, with the
# routing table given instead of watched) against Debian's nginx configured
# as the equivalent reverse proxy (one upstream, keep-alive to it, the same
# X-Forwarded-* headers). Both proxy to the same two backends: nginx
# instances serving a small static file on 127.0.0.1 (a backend fast enough
# that the proxies, not it, are measured). wrk drives each proxy for
# SECONDS with CONNS connections, in turn, ROUNDS times: on a machine shared
# with other work only the ratios of one round compare, so each round's
# ratios are printed and their medians are the result.
#
# usage: scripts/bench-gateway.sh [SECONDS] [CONNS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SECONDS_EACH=${1:-5}
CONNS=${2:-64}
ROUNDS=${3:-7}

keel_ensure_packages
[ -n "${KEEL_BENCH_PREBUILT:-}" ] || cargo build --release -q -p keel-gateway --example gateway_bench
GW="$CARGO_TARGET_DIR/release/examples/gateway_bench"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$WORK"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$WORK/www"
head -c 1024 /dev/zero | tr '\0' 'k' >"$WORK/www/index.html"
B1=$(port); B2=$(port); NP=$(port); KP=$(port)

nginx_conf() { # name, body of the http block
  cat >"$WORK/$1.conf" <<CONF
worker_processes auto;
pid $WORK/$1.pid;
error_log $WORK/$1.err;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1-body;
  proxy_temp_path $WORK/$1-proxy;
  fastcgi_temp_path $WORK/$1-fcgi;
  uwsgi_temp_path $WORK/$1-uwsgi;
  scgi_temp_path $WORK/$1-scgi;
  $2
}
CONF
  nginx -c "$WORK/$1.conf" -p "$WORK"
}

nginx_conf backend "server { listen 127.0.0.1:$B1; listen 127.0.0.1:$B2; root $WORK/www; keepalive_requests 100000; }"
# What ingress-nginx renders for one Prefix / rule, reduced to the proxying.
nginx_conf proxy "
  upstream backend { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 320; }
  server {
    listen 127.0.0.1:$NP;
    keepalive_requests 100000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Port \$server_port;
      proxy_read_timeout 60s;
    }
  }"
"$GW" "$KP" "127.0.0.1:$B1" "127.0.0.1:$B2" 2>"$WORK/gw.log" &
PIDS+=($!)
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$KP/" >/dev/null && curl -sf "http://127.0.0.1:$NP/" >/dev/null && break
  sleep 0.1
done

run() { wrk -t2 -c"$CONNS" -d"$1s" --latency -H 'Host: bench.example' "http://127.0.0.1:$2/"; }
rps() { sed -n 's/^Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' <<<"$1"; }
p99() { # wrk prints 99% latency as e.g. 1.23ms / 456.00us / 1.02s
  sed -n 's/^[[:space:]]*99%[[:space:]]*\([0-9.]*\)\([a-z]*\).*/\1 \2/p' <<<"$1" |
    awk '{ u = $2; v = $1; if (u == "us") v /= 1000; else if (u == "s") v *= 1000; print v }'
}

echo "bench-gateway: wrk -t2 -c$CONNS ${SECONDS_EACH}s x $ROUNDS rounds, 1 KiB file, 2 backends; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
run 2 "$KP" >/dev/null; run 2 "$NP" >/dev/null   # warm-up
for r in $(seq "$ROUNDS"); do
  # Turns alternate: a load change within a round favours neither.
  if [ $((r % 2)) = 1 ]; then
    K=$(run "$SECONDS_EACH" "$KP"); N=$(run "$SECONDS_EACH" "$NP")
  else
    N=$(run "$SECONDS_EACH" "$NP"); K=$(run "$SECONDS_EACH" "$KP")
  fi
  echo "round $r: keel-gateway $(rps "$K") req/s p99 $(p99 "$K") ms | nginx $(rps "$N") req/s p99 $(p99 "$N") ms"
done | tee "$WORK/rounds"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK/rounds" <<'PY'
import re, sys
from statistics import median
rows = [list(map(float, re.findall(r"([0-9.]+) (?:req/s|ms)", l))) for l in open(sys.argv[1])]
col = lambda i: median(r[i] for r in rows)
print(f"median keel-gateway: {col(0):.0f} req/s, p99 {col(1):.2f} ms")
print(f"median nginx:        {col(2):.0f} req/s, p99 {col(3):.2f} ms")
rps = median(r[0] / r[2] for r in rows)
p99 = median(r[1] / max(r[3], 0.001) for r in rows)
print(f"median ratio keel/nginx: req/s {rps:.2f}x, p99 {p99:.2f}x (p99 lower is better)")
PY
