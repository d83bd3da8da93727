#!/usr/bin/env bash
# The cost of the resilience machinery in the L7 engine (issue 7): two sluice-l7d on
# loopback, one with the plain benchmark mesh (perf/l7/gen_mesh.py: 100 rules, 10 regex, the
# request matching the last) and one with the same mesh plus, on the matched route, a timeout,
# a retry policy (attempts 2, perTryTimeout, retryOn 5xx,reset,connect-failure) and a
# DestinationRule with outlierDetection (every answer is reported to the detector) and a
# connectionPool (the circuit-breaker counters run). One nginx backend, wrk keep-alive;
# alternating runs, medians:
#   RESULT l7_resilience_overhead p50_ms=<+x> p99_ms=<+y> plain_p50_ms=... plain_p99_ms=...
#          resilient_p50_ms=... resilient_p99_ms=... rps_ratio=<resilient/plain> runs=<n>
# Latency is taken at a fixed offered load (closed-loop wrk with a per-request delay, as in
# perf/l7_vs_peers.sh); rps_ratio from saturated runs. Loopback only; everything it starts is
# stopped at exit. Usage: perf/l7/resilience_overhead.sh   (RUNS=5 DURATION=4 CONNS=50)
set -uo pipefail
cd "$(dirname "$0")/../.."
source perf/lib.sh
root=$(pwd)
RUNS=${RUNS:-5}
DURATION=${DURATION:-4}
CONNS=${CONNS:-50}
LOAD_CPU=0
PROXY_CPU=1
ninja -C build perf/l7/sluice-l7d >/dev/null || exit 1
L7D="$root/build/perf/l7/sluice-l7d"
tmp=$(mktemp -d /tmp/sluice-l7res.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
P_BACKEND=$(free_port)
P_PLAIN=$(free_port)
P_RES=$(free_port)
wait_http() {
  local i
  for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1/bench/hello" || true)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

mkdir -p "$tmp/backend"
cat >"$tmp/backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/backend/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_temp_path $tmp/backend/body;
  server {
    listen 127.0.0.1:$P_BACKEND backlog=4096;
    location / { return 200 "hello\n"; }
  }
}
EOF
taskset -c $LOAD_CPU nginx -p "$tmp/backend" -c "$tmp/backend/nginx.conf" -e stderr >"$tmp/backend.log" 2>&1 &
PIDS+=("$!")
wait_http "$P_BACKEND" || { echo "backend did not start" >&2; cat "$tmp/backend.log" >&2; exit 1; }

python3 perf/l7/gen_mesh.py "$P_BACKEND" "$tmp/plain.yaml" || exit 1
# The resilient mesh: the matched (last) rule gains a timeout and retries; the backend's
# DestinationRule adds outlier detection and connection-pool limits (high enough never to
# trigger: their bookkeeping is what is measured).
python3 - "$tmp/plain.yaml" "$tmp/resilient.yaml" <<'EOF'
import sys
s = open(sys.argv[1]).read()
a = '    match: [{uri: {prefix: /bench/}}]\n'
assert s.count(a) == 1
s = s.replace(a, a + '    timeout: 5s\n'
              '    retries: {attempts: 2, perTryTimeout: 2s, retryOn: "5xx,reset,connect-failure"}\n')
s += """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend, namespace: default}
spec:
  host: backend.bench
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10000}
      http: {http1MaxPendingRequests: 10000, http2MaxRequests: 10000, maxRetries: 100}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
"""
open(sys.argv[2], "w").write(s)
EOF
taskset -c $PROXY_CPU "$L7D" --mesh "$tmp/plain.yaml" --bind 127.0.0.1 --port-map "8080:$P_PLAIN" \
  >"$tmp/plain.log" 2>&1 &
PIDS+=("$!")
taskset -c $PROXY_CPU "$L7D" --mesh "$tmp/resilient.yaml" --bind 127.0.0.1 --port-map "8080:$P_RES" \
  >"$tmp/res.log" 2>&1 &
PIDS+=("$!")
wait_http "$P_PLAIN" || { cat "$tmp/plain.log" >&2; exit 1; }
wait_http "$P_RES" || { cat "$tmp/res.log" >&2; exit 1; }

# wrk's latency lines: "50%  550.00us" -> ms.
pct_ms() {
  awk -v q="$2" '$1 == q { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.3f", v }' "$1"
}
printf 'function delay()\n  return 4\nend\n' >"$tmp/delay.lua"
run() { # PORT SECONDS OUT [wrk args]
  local port=$1 secs=$2 out=$3
  shift 3
  timeout $((secs + 30)) taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s "$@" \
    "http://127.0.0.1:$port/bench/hello" >"$out" 2>&1
}

declare -A RPS P50 P99
for r in $(seq 1 "$RUNS"); do
  for v in plain res; do
    port=$P_PLAIN
    [ $v = res ] && port=$P_RES
    run "$port" 1 "$tmp/warm" # warm-up, discarded
    run "$port" "$DURATION" "$tmp/sat-$v-$r"
    run "$port" "$DURATION" "$tmp/lat-$v-$r" --latency -s "$tmp/delay.lua"
    RPS[$v]+="$(rps_of "$tmp/sat-$v-$r") "
    P50[$v]+="$(pct_ms "$tmp/lat-$v-$r" 50%) "
    P99[$v]+="$(pct_ms "$tmp/lat-$v-$r" 99%) "
    echo "[$r/$RUNS] $v: saturated rps=$(rps_of "$tmp/sat-$v-$r") fixed-load rps=$(rps_of "$tmp/lat-$v-$r")" \
      "p50_ms=$(pct_ms "$tmp/lat-$v-$r" 50%) p99_ms=$(pct_ms "$tmp/lat-$v-$r" 99%)"
  done
done
m() { echo "$1" | tr ' ' '\n' | sed '/^$/d' | median; }
pp50=$(m "${P50[plain]}"); pp99=$(m "${P99[plain]}")
rp50=$(m "${P50[res]}"); rp99=$(m "${P99[res]}")
ratio=$(awk -v a="$(m "${RPS[res]}")" -v b="$(m "${RPS[plain]}")" 'BEGIN { printf "%.3f", a / b }')
printf 'RESULT l7_resilience_overhead p50_ms=%+.3f p99_ms=%+.3f plain_p50_ms=%s plain_p99_ms=%s resilient_p50_ms=%s resilient_p99_ms=%s rps_ratio=%s runs=%s\n' \
  "$(awk -v a="$rp50" -v b="$pp50" 'BEGIN { print a - b }')" \
  "$(awk -v a="$rp99" -v b="$pp99" 'BEGIN { print a - b }')" \
  "$pp50" "$pp99" "$rp50" "$rp99" "$ratio" "$RUNS"
