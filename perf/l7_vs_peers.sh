#!/usr/bin/env bash
# The L7 engine against HAProxy and nginx as reverse proxies (BENCHMARKS.md, rows "L7 slow
# path" and "L7 latency"): wrk -> proxy -> one nginx backend, all on loopback, the same
# backend and the same request for every proxy, alternating sluice / haproxy / nginx RUNS
# times, medians reported.
#   RESULT l7_vs_haproxy ratio=<sluice/haproxy> sluice=<rps> peer=<rps> runs=<n>
#   RESULT l7_vs_nginx ratio=<sluice/nginx> sluice=<rps> peer=<rps> runs=<n>
#   RESULT l7_cpu_efficiency_vs_{haproxy,nginx} ratio=... sluice=<rq/cpu-s> peer=<rq/cpu-s> runs=<n>
#   RESULT l7_latency proxy=<name> p50_ms=<x> p99_ms=<y>          (one per proxy)
#   RESULT l7_allocs_per_request sluice=<x>
#   RESULT l7_idle_conn_memory sluice_bytes=<x> haproxy_bytes=<y> nginx_bytes=<z>
#   RESULT l7_appliance_vs_haproxy ratio=<sluice/haproxy> sluice=<rps> peer=<rps> runs=<n>
#   RESULT l7_appliance_cpu_efficiency_vs_haproxy ratio=... sluice=<rq/cpu-s> peer=<rq/cpu-s> runs=<n>
#   RESULT l7_appliance_saturated_latency proxy=<sluice|haproxy> p50_ms=<x> p99_ms=<y>
#   RESULT l7_resilience_overhead p50_ms=<+x> p99_ms=<+y> ...      (perf/l7/resilience_overhead.sh)
#   (the l7_appliance lines: the full appliance path, perf/l7/appliance_vs_haproxy.sh, run at
#   the end; as root only, else `RESULT l7_appliance_vs_haproxy skipped reason=needs-root`)
# ratio is the median of the per-run ratios (each sluice run against the peer's run of the
# same round); sluice and peer are the medians of the raw rates. Raw figures are printed as
# they come.
#
# Usage: sudo perf/l7_vs_peers.sh  (about 5 minutes with the defaults: 3 on loopback, 1.5 on
#                                   the appliance path; without root, the loopback part only,
#                                   if scripts/setup.sh has nothing to install)
# Environment: RUNS=5 rounds, DURATION=5 s per measured wrk run (after WARMUP=1 s of the same
# load, discarded), CONNS=50 wrk connections (-t1), LAT_DURATION=4 s per latency run,
# LAT_LOAD=50 (the latency runs' offered load, percent of the slowest proxy's median
# saturated rate), IDLE_CONNS=2000, RULES=100 and REGEX=10 (sluice's route table),
# PROXY_CPU=1, LOAD_CPU=0; the appliance part: APP_RUNS=$RUNS rounds of APP_DURATION=$DURATION s
# (WARMUP, CONNS, RULES, REGEX and LOAD_CPU as above; APP_RUNS=0 skips it).
#
# The proxies:
#  - sluice: perf/l7/sluice-l7d (the engine of lib/l7 alone, one thread, blocking in
#    epoll_wait) on a mesh from perf/l7/gen_mesh.py: a Gateway on 8080 (hosts "*"), a
#    ServiceEntry for the backend, ONE VirtualService of RULES http rules (REGEX of them uri
#    regexes, the others exact/prefix/header matches) of which the request (GET /bench/hello)
#    matches only the last: every request walks the whole route table.
#  - HAProxy: nbthread 1, mode http, http-reuse always, no logging, one server.
#  - nginx: 1 worker, proxy_http_version 1.1, upstream keepalive, no access log.
# HAProxy and nginx do no routing at all (one backend, no ACL or location match) and add no
# header; sluice matches RULES rules and does what an Istio gateway does to each request
# (x-request-id generated, x-forwarded-for and x-forwarded-proto set).
#
# CPUs: this is a 2-core machine. Each proxy runs alone on PROXY_CPU; the nginx backend and
# wrk share LOAD_CPU (the script's own work, between runs, too). So a proxy is the bottleneck
# only while it is near 100% of PROXY_CPU: each run prints the proxy's CPU share, what else
# ran on its CPU (others, steal) and how busy the load CPU was. The machine is shared: other
# jobs' bursts land on both CPUs (nice does not help: the scheduler shares CPU between
# cgroups first) and move the rps of whichever proxy runs meanwhile, so the
# l7_cpu_efficiency lines give the same ratios in requests per proxy CPU-second (utime +
# stime of the proxy's process over the window), which depend far less on who the
# bottleneck was.
#
# Latency: Debian 12 has no wrk2 (no open-loop, constant-rate generator), so the latency runs
# are wrk --latency, closed-loop, with the same CONNS connections, each pausing between its
# requests (wrk's Lua delay(), whole milliseconds) so that the offered load is about LAT_LOAD%
# of the slowest proxy's saturated rate, the same pause for every proxy. Closed-loop: a slow
# response delays the requests behind it instead of queueing them (coordinated omission), so
# p99 understates what an open-loop client would see. The achieved rate is printed per run.
#
# Allocations: sluice-l7d counts global operator new calls (perf/micro/alloc_counter.cc);
# its SIGUSR1 report is read before and after each measured window, so the figure is the
# steady state (50 new client connections per window included, start-up and warm-up not).
#
# Idle connections: after the rounds, IDLE_CONNS client connections that each made one
# request (perf/l7/idle_conns.py) are held open on one proxy at a time; the figure is the
# growth of the proxy's VmRSS (the worker's, for nginx) divided by IDLE_CONNS.
#
# Network: loopback only (127.0.0.1), ports chosen free at start. Every process the script
# starts is stopped at exit (trap EXIT); every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/lib.sh
root=$(pwd)
RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-50}
LAT_DURATION=${LAT_DURATION:-4}
LAT_LOAD=${LAT_LOAD:-50}
IDLE_CONNS=${IDLE_CONNS:-2000}
RULES=${RULES:-100}
REGEX=${REGEX:-10}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PATH_REQ=/bench/hello
for v in RUNS DURATION WARMUP CONNS LAT_DURATION LAT_LOAD IDLE_CONNS RULES; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then echo "$v must be a positive integer" >&2; exit 2; fi
done
if [ "$LAT_LOAD" -gt 100 ]; then echo "LAT_LOAD is a percentage (1-100)" >&2; exit 2; fi
if [ ! -d "/sys/devices/system/cpu/cpu$PROXY_CPU" ] || [ ! -d "/sys/devices/system/cpu/cpu$LOAD_CPU" ]; then
  echo "no CPU $PROXY_CPU or $LOAD_CPU on this machine" >&2
  exit 2
fi

# --- packages and build ---------------------------------------------------------------------
./scripts/setup.sh >/dev/null # haproxy, nginx-light, wrk, python3, curl, the build directory
PATH="$PATH:/usr/sbin:/sbin"
for c in haproxy nginx wrk curl python3 taskset; do
  command -v "$c" >/dev/null || { echo "$c is missing: run scripts/setup.sh as root" >&2; exit 2; }
done
buildtype() {
  meson introspect "$1" --buildoptions 2>/dev/null |
    python3 -c 'import json,sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"), ""))'
}
bdir=build
if [ "$(buildtype build)" != release ]; then
  bdir=build-release
  [ -f "$bdir/build.ninja" ] || meson setup "$bdir" --buildtype=release -Ddeveloper_mode=disabled >/dev/null
fi
ninja -C "$bdir" perf/l7/sluice-l7d >/dev/null
L7D="$root/$bdir/perf/l7/sluice-l7d"
echo "sluice-l7d: $L7D ($(buildtype "$bdir") build); $(haproxy -v | head -n 1 | cut -d' ' -f1-3);" \
  "$(nginx -v 2>&1 | sed 's/^nginx version: //'); $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"

# Enough descriptors for IDLE_CONNS (client side in python, both sides in the proxies).
want_fd=$((IDLE_CONNS * 2 + 4096))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fd" ]; then want_fd=$hard; fi
ulimit -n "$want_fd"
if [ $((IDLE_CONNS * 2 + 1024)) -gt "$want_fd" ]; then
  IDLE_CONNS=$(((want_fd - 1024) / 2))
  echo "note: descriptor limit $want_fd: IDLE_CONNS lowered to $IDLE_CONNS"
fi
MAXCONN=$((want_fd / 2 - 100))

# --- files, processes and cleanup -------------------------------------------------------------
tmp=$(mktemp -d /tmp/sluice-l7perf.XXXXXX)
PIDS=()    # every process started, stopped in reverse order at exit
WORKERS=() # nginx workers (their master stops them; killed after it if it could not)
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}" 5 || true; done
  for i in "${WORKERS[@]}"; do kill -KILL "$i" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four free loopback ports (bound to 0, then released: nothing else here takes them meanwhile).
read -r P_BACKEND P_SLUICE P_HAPROXY P_NGINX < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
declare -A PORT=([sluice]=$P_SLUICE [haproxy]=$P_HAPROXY [nginx]=$P_NGINX)
declare -A PIDOF # the process started for a name (nginx: the master)
declare -A WPID  # the process doing the proxy's work (nginx: the worker)
PROXIES=(sluice haproxy nginx)

# children PID: the PIDs of PID's children.
children() { cat "/proc/$1/task/$1/children" 2>/dev/null || true; }
# wait_http PORT: until GET answers 200 (bounded: 10 s).
wait_http() {
  local i
  for i in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$1$PATH_REQ" || true)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
# start NAME LOG CPU CMD...: starts CMD pinned to CPU in the background, records its PID.
start() {
  local name=$1 log=$2 cpu=$3
  shift 3
  taskset -c "$cpu" "$@" >"$log" 2>&1 &
  PIDS+=("$!")
  PIDOF[$name]=$!
}

# --- the backend ------------------------------------------------------------------------------
mkdir -p "$tmp/backend" "$tmp/nginx"
cat >"$tmp/backend/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/backend/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile $want_fd;
events { worker_connections $MAXCONN; }
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
start backend "$tmp/backend.log" "$LOAD_CPU" nginx -p "$tmp/backend" -c "$tmp/backend/nginx.conf" -e stderr
wait_http "$P_BACKEND" || { echo "the backend nginx did not start:" >&2; cat "$tmp/backend.log" >&2; exit 1; }
read -ra w < <(children "${PIDOF[backend]}") || true # no newline at the end: read says 1
WORKERS+=("${w[@]}")

# --- the proxies ------------------------------------------------------------------------------
python3 perf/l7/gen_mesh.py "$P_BACKEND" "$tmp/mesh.yaml" "$RULES" "$REGEX"
start sluice "$tmp/sluice.log" "$PROXY_CPU" "$L7D" --mesh "$tmp/mesh.yaml" --bind 127.0.0.1 \
  --port-map "8080:$P_SLUICE" --cpu "$PROXY_CPU"
WPID[sluice]=${PIDOF[sluice]}
for i in $(seq 1 100); do
  grep -q '^sluice-l7d: ready' "$tmp/sluice.log" && break
  kill -0 "${WPID[sluice]}" 2>/dev/null || break
  sleep 0.1
done
grep -q '^sluice-l7d: ready' "$tmp/sluice.log" || { echo "sluice-l7d did not start:" >&2; cat "$tmp/sluice.log" >&2; exit 1; }

cat >"$tmp/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $MAXCONN
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  default_backend be
backend be
  server backend 127.0.0.1:$P_BACKEND
EOF
start haproxy "$tmp/haproxy.log" "$PROXY_CPU" haproxy -db -f "$tmp/haproxy.cfg"
WPID[haproxy]=${PIDOF[haproxy]}

cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile $want_fd;
events { worker_connections $MAXCONN; }
http {
  access_log off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  upstream backend {
    server 127.0.0.1:$P_BACKEND;
    keepalive 128;
    keepalive_requests 1000000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
start nginx "$tmp/nginx.log" "$PROXY_CPU" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e stderr

for p in "${PROXIES[@]}"; do
  wait_http "${PORT[$p]}" || { echo "$p does not answer on ${PORT[$p]}:" >&2; cat "$tmp/$p.log" >&2; exit 1; }
  body=$(curl -s --max-time 2 "http://127.0.0.1:${PORT[$p]}$PATH_REQ")
  [ "$body" = hello ] || { echo "$p answered '$body' instead of the backend's hello" >&2; exit 1; }
done
read -ra w < <(children "${PIDOF[nginx]}") || true # no newline at the end: read says 1
WORKERS+=("${w[@]}")
WPID[nginx]=${w[0]:-}
[ -n "${WPID[nginx]}" ] || { echo "no nginx worker under ${PIDOF[nginx]}" >&2; exit 1; }
echo "ports: backend=$P_BACKEND sluice=$P_SLUICE haproxy=$P_HAPROXY nginx=$P_NGINX;" \
  "cpus: proxies on $PROXY_CPU, backend nginx and wrk on $LOAD_CPU (2-core box: they share it);" \
  "sluice routes: $RULES rules ($REGEX regex), the request matches the last"

# --- measuring ----------------------------------------------------------------------------------
TCK=$(getconf CLK_TCK)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# cpu_busy N: CPU N's busy (user+nice+system+irq+softirq) and steal ticks so far.
cpu_busy() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
# sluice_stats: asks sluice-l7d for its stats line (SIGUSR1) and prints it (bounded: 2 s).
sluice_stats() {
  local before i
  before=$(grep -c '^sluice-l7d: stats' "$tmp/sluice.log" || true)
  kill -USR1 "${WPID[sluice]}"
  for i in $(seq 1 100); do
    [ "$(grep -c '^sluice-l7d: stats' "$tmp/sluice.log" || true)" -gt "$before" ] && break
    sleep 0.02
  done
  grep '^sluice-l7d: stats' "$tmp/sluice.log" | tail -n 1
}
kv() { tr ' ' '\n' | sed -n "s/^$1=//p"; } # kv KEY < "a=1 b=2"
# to_ms VALUE: wrk's "1.23ms" / "850.00us" / "1.02s" in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
# wrk_run PORT SECONDS OUT [ARGS...]: one wrk run on LOAD_CPU; checks errors and status codes.
wrk_run() {
  local port=$1 secs=$2 out=$3
  shift 3
  timeout $((secs + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s "$@" \
    "http://127.0.0.1:$port$PATH_REQ" >"$out" 2>&1 || { echo "wrk failed:" >&2; cat "$out" >&2; return 1; }
  if grep -qE 'Socket errors|Non-2xx' "$out"; then
    echo "  WARNING: $(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
  fi
}
pct_of() { to_ms "$(awk -v p="$2%" '$1 == p {print $2}' "$1")"; } # pct_of FILE 50

# --- throughput rounds --------------------------------------------------------------------------
declare -A RPS CPU EFF SP50 SP99
ALLOCS=""
for r in $(seq 1 "$RUNS"); do
  for p in "${PROXIES[@]}"; do
    wrk_run "${PORT[$p]}" "$WARMUP" "$tmp/warm" || exit 1
    [ "$p" = sluice ] && s0=$(sluice_stats)
    c0=$(cpu_ticks "${WPID[$p]}")
    read -r b0 st0 < <(cpu_busy "$PROXY_CPU")
    read -r l0 _ < <(cpu_busy "$LOAD_CPU")
    t0=$(date +%s.%N)
    wrk_run "${PORT[$p]}" "$DURATION" "$tmp/wrk-$p-$r" --latency || exit 1
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "${WPID[$p]}")
    read -r b1 st1 < <(cpu_busy "$PROXY_CPU")
    read -r l1 _ < <(cpu_busy "$LOAD_CPU")
    # Others on the proxy's CPU (its busy time not spent by the proxy, and steal) and how
    # busy the load CPU was: a run where the proxy is below ~90% was not proxy-bound.
    others=$(awk -v a="$b0" -v b="$b1" -v p0="$c0" -v p1="$c1" -v s0="$st0" -v s1="$st1" -v t="$TCK" -v x="$t0" -v y="$t1" \
      'BEGIN { o = ((b - a) - (p1 - p0)) / t / (y - x) * 100; printf "%.0f%% steal=%.0f%%", (o < 0) ? 0 : o, (s1 - s0) / t / (y - x) * 100 }')
    loadcpu=$(awk -v a="$l0" -v b="$l1" -v t="$TCK" -v x="$t0" -v y="$t1" 'BEGIN { printf "%.0f%%", (b - a) / t / (y - x) * 100 }')
    rps=$(rps_of "$tmp/wrk-$p-$r")
    [ -n "$rps" ] || { echo "no Requests/sec in wrk's output:" >&2; cat "$tmp/wrk-$p-$r" >&2; exit 1; }
    cpu=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v x="$t0" -v y="$t1" 'BEGIN { printf "%.1f", 100 * (b - a) / t / (y - x) }')
    eff=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" -v rps="$rps" -v x="$t0" -v y="$t1" \
      'BEGIN { s = (b - a) / t; printf "%.0f", (s > 0) ? rps * (y - x) / s : 0 }')
    p50=$(pct_of "$tmp/wrk-$p-$r" 50)
    p99=$(pct_of "$tmp/wrk-$p-$r" 99)
    RPS[$p]+="$rps "
    CPU[$p]+="$cpu "
    EFF[$p]+="$eff "
    SP50[$p]+="$p50 "
    SP99[$p]+="$p99 "
    extra=""
    if [ "$p" = sluice ]; then
      s1=$(sluice_stats)
      drq=$(($(echo "$s1" | kv requests) - $(echo "$s0" | kv requests)))
      dal=$(($(echo "$s1" | kv allocs) - $(echo "$s0" | kv allocs)))
      apr=$(awk -v a="$dal" -v n="$drq" 'BEGIN { printf "%.4f", (n > 0) ? a / n : 0 }')
      ALLOCS+="$apr "
      extra=" requests=$drq allocs=$dal allocs_per_request=$apr upstream_cx_total=$(echo "$s1" | kv upstream_cx_total)"
      extra+=" rq_5xx=$(echo "$s1" | kv rq_5xx) no_route=$(echo "$s1" | kv no_route)"
    fi
    echo "[$r/$RUNS] $p: rps=$rps proxy_cpu=${cpu}% rq_per_cpu_s=$eff (cpu$PROXY_CPU others=$others;" \
      "cpu$LOAD_CPU busy=$loadcpu) saturated_p50_ms=$p50 p99_ms=$p99$extra"
  done
done

# --- latency at a fixed offered load ------------------------------------------------------------
slowest=$(for p in "${PROXIES[@]}"; do echo "${RPS[$p]}" | median; done | sort -g | head -n 1)
target=$(awk -v s="$slowest" -v l="$LAT_LOAD" 'BEGIN { printf "%.0f", s * l / 100 }')
# Each connection pauses DELAY ms between a response and its next request (whole ms).
delay=$(awk -v c="$CONNS" -v t="$target" 'BEGIN { d = c * 1000 / t; d = (d == int(d)) ? d : int(d) + 1; print (d < 1) ? 1 : d }')
printf 'function delay()\n  return %d\nend\n' "$delay" >"$tmp/delay.lua"
echo "latency: closed-loop wrk --latency, $CONNS connections each pausing ${delay} ms between requests" \
  "(offered <= $((CONNS * 1000 / delay)) rps; target $LAT_LOAD% of the slowest median rate $slowest rps)"
declare -A LP50 LP99
for r in $(seq 1 "$RUNS"); do
  for p in "${PROXIES[@]}"; do
    wrk_run "${PORT[$p]}" "$LAT_DURATION" "$tmp/lat-$p-$r" --latency -s "$tmp/delay.lua" || exit 1
    p50=$(pct_of "$tmp/lat-$p-$r" 50)
    p99=$(pct_of "$tmp/lat-$p-$r" 99)
    LP50[$p]+="$p50 "
    LP99[$p]+="$p99 "
    echo "[$r/$RUNS] latency $p: rps=$(rps_of "$tmp/lat-$p-$r") p50_ms=$p50 p99_ms=$p99"
  done
done

# --- idle keep-alive connections --------------------------------------------------------------
declare -A IDLE
for p in "${PROXIES[@]}"; do
  rss0=$(rss_kb "${WPID[$p]}")
  : >"$tmp/idle-$p.out"
  python3 perf/l7/idle_conns.py 127.0.0.1 "${PORT[$p]}" "$IDLE_CONNS" "$PATH_REQ" 120 >"$tmp/idle-$p.out" 2>&1 &
  ipid=$!
  PIDS+=("$ipid")
  ok=0
  for i in $(seq 1 600); do
    grep -q '^open ' "$tmp/idle-$p.out" && { ok=1; break; }
    kill -0 "$ipid" 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok = 0 ]; then
    echo "idle connections to $p failed:" >&2
    cat "$tmp/idle-$p.out" >&2
    exit 1
  fi
  sleep 0.5
  rss1=$(rss_kb "${WPID[$p]}")
  stop_pid "$ipid" 5 || true
  IDLE[$p]=$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CONNS" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
  echo "idle $p: $IDLE_CONNS connections, VmRSS ${rss0} kB -> ${rss1} kB: ${IDLE[$p]} bytes per connection"
done

# --- the end ------------------------------------------------------------------------------------
stop_pid "${WPID[sluice]}" 5 || true
echo "sluice-l7d exit report: $(grep '^sluice-l7d: stats' "$tmp/sluice.log" | tail -n 1 | sed 's/^sluice-l7d: stats //')"
for p in "${PROXIES[@]}"; do
  echo "raw $p: rps=[${RPS[$p]% }] proxy_cpu_pct=[${CPU[$p]% }] rq_per_cpu_s=[${EFF[$p]% }]" \
    "saturated_p50_ms=[${SP50[$p]% }] saturated_p99_ms=[${SP99[$p]% }] latency_p50_ms=[${LP50[$p]% }] latency_p99_ms=[${LP99[$p]% }]"
done
echo "raw sluice allocs_per_request=[${ALLOCS% }]"
for peer in haproxy nginx; do
  ratios=$(paste -d' ' <(echo "${RPS[sluice]}" | tr ' ' '\n' | grep -v '^$') <(echo "${RPS[$peer]}" | tr ' ' '\n' | grep -v '^$') |
    awk '{ printf "%.6f ", $1 / $2 }')
  printf 'RESULT l7_vs_%s ratio=%.3f sluice=%.0f peer=%.0f runs=%d\n' "$peer" "$(echo "$ratios" | median)" \
    "$(echo "${RPS[sluice]}" | median)" "$(echo "${RPS[$peer]}" | median)" "$RUNS"
done
# The same ratios in requests per proxy CPU-second: what each request costs the proxy, whoever
# the bottleneck was (on a shared machine, the throughput ratio moves with the neighbours).
for peer in haproxy nginx; do
  ratios=$(paste -d' ' <(echo "${EFF[sluice]}" | tr ' ' '\n' | grep -v '^$') <(echo "${EFF[$peer]}" | tr ' ' '\n' | grep -v '^$') |
    awk '{ printf "%.6f ", ($2 > 0) ? $1 / $2 : 0 }')
  printf 'RESULT l7_cpu_efficiency_vs_%s ratio=%.3f sluice=%.0frq/cpu-s peer=%.0frq/cpu-s runs=%d\n' "$peer" \
    "$(echo "$ratios" | median)" "$(echo "${EFF[sluice]}" | median)" "$(echo "${EFF[$peer]}" | median)" "$RUNS"
done
for p in "${PROXIES[@]}"; do
  printf 'RESULT l7_latency proxy=%s p50_ms=%.3f p99_ms=%.3f\n' "$p" "$(echo "${LP50[$p]}" | median)" "$(echo "${LP99[$p]}" | median)"
done
printf 'RESULT l7_allocs_per_request sluice=%.4f\n' "$(echo "$ALLOCS" | median)"
echo "RESULT l7_idle_conn_memory sluice_bytes=${IDLE[sluice]} haproxy_bytes=${IDLE[haproxy]} nginx_bytes=${IDLE[nginx]}"

# --- the full appliance path -------------------------------------------------------------------
# l7_appliance_vs_haproxy: wrk -> sluiced's DPDK "wan" port -> the exception path -> the L7 engine
# on the slow-path lcore -> the backend (and back the same way), against wrk -> HAProxy on the
# same veths with plain kernel networking: perf/l7/appliance_vs_haproxy.sh (its header says how).
# The loopback part's processes are stopped first: nothing of it runs meanwhile.
APP_RUNS=${APP_RUNS:-$RUNS}
APP_DURATION=${APP_DURATION:-$DURATION}
cleanup_loopback() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}" 5 || true; done
  for i in "${WORKERS[@]}"; do kill -KILL "$i" 2>/dev/null || true; done
  PIDS=()
  WORKERS=()
}
if [ "$APP_RUNS" = 0 ]; then
  echo "RESULT l7_appliance_vs_haproxy skipped reason=APP_RUNS=0"
elif [ "$(id -u)" != 0 ]; then
  echo "RESULT l7_appliance_vs_haproxy skipped reason=needs-root"
else
  cleanup_loopback
  RUNS=$APP_RUNS DURATION=$APP_DURATION WARMUP=$WARMUP CONNS=$CONNS RULES=$RULES REGEX=$REGEX LOAD_CPU=$LOAD_CPU \
    perf/l7/appliance_vs_haproxy.sh || { echo "RESULT l7_appliance_vs_haproxy failed (see above)"; exit 1; }
fi

# l7_resilience_overhead: the same engine with a timeout, a retry policy, outlier detection and
# connection-pool limits on the benchmark route, against the plain mesh (issue 7's "added
# latency of the resilience machinery"): perf/l7/resilience_overhead.sh.
RES_RUNS=${RES_RUNS:-$RUNS}
if [ "$RES_RUNS" = 0 ]; then
  echo "RESULT l7_resilience_overhead skipped reason=RES_RUNS=0"
else
  cleanup_loopback
  RUNS=$RES_RUNS CONNS=$CONNS perf/l7/resilience_overhead.sh ||
    { echo "RESULT l7_resilience_overhead failed (see above)"; exit 1; }
fi
