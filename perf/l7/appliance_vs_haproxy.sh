#!/usr/bin/env bash
# The L7 engine on the full appliance path against HAProxy on a plain kernel path
# (BENCHMARKS.md, row "L7 slow path"; the l7_appliance_vs_haproxy line of perf/l7_vs_peers.sh,
# which runs this script at its end; it also runs alone):
#   RESULT l7_appliance_vs_haproxy ratio=<sluice/haproxy> sluice=<rps> peer=<rps> runs=<n>
#   RESULT l7_appliance_cpu_efficiency_vs_haproxy ratio=... sluice=<rq/cpu-s> peer=<rq/cpu-s> runs=<n>
#   RESULT l7_appliance_saturated_latency proxy=<sluice|haproxy> p50_ms=<x> p99_ms=<y>
# ratio is the median of the per-round ratios (each sluice run against the HAProxy run right
# after it); sluice and peer are the medians of the raw rates. Raw figures print as they come.
#
# Usage: sudo perf/l7/appliance_vs_haproxy.sh     (about 90 s with the defaults)
# Environment: RUNS=5 rounds, DURATION=5 s per measured wrk run (after WARMUP=1 s of the same
# load, discarded), CONNS=50 wrk connections (-t1), RULES=100 and REGEX=10 (sluice's route
# table), LOAD_CPU=0 (wrk and the backend nginx).
#
# The path, the same veths for both sides: scripts/topology.sh (the e2e topology, its own
# unique prefix), wrk in the client namespace -> 198.18.0.1:80 -> veth -> the app
# namespace's "nic-wan" ... "nic-lan" -> veth -> the fabric bridge -> veth -> one nginx
# backend (1 worker, "hello\n") at 198.19.1.10:8080 in be-a. What runs in the app namespace:
#  - sluice: sluiced itself with conf/sluice.conf (private state_dir and token, mesh.files =
#    the mesh below): nic-wan and nic-lan are DPDK net_af_packet ports, the kernel owns
#    198.18.0.1 and 198.19.1.1 on the TAP exception interfaces "wan" and "lan", and the L7
#    engine on the slow-path lcore accepts on port 80 and proxies over kernel sockets, so
#    every packet crosses af_packet -> the worker lcore -> TAP -> the kernel (and back) on
#    both sides of the engine. The mesh is perf/l7/gen_mesh.py's (RULES rules, REGEX of them
#    regexes, the request GET /bench/hello matching only the last) with the Gateway on port
#    80 and the ServiceEntry's endpoint at the backend's address.
#  - HAProxy: while sluiced is stopped, nic-wan and nic-lan are plain kernel interfaces:
#    the script gives them 198.18.0.1/24 and 198.19.1.1/24 (the TAP interfaces' addresses
#    and, being the same MACs, the same neighbours for the client and the backend) and
#    starts HAProxy as perf/l7_vs_peers.sh configures it (nbthread 1, mode http, http-reuse
#    always, no logging, one server, no routing) on 198.18.0.1:80; afterwards the addresses
#    go away again (and ARP goes back off) before sluiced starts.
# sluiced is started and stopped in every round (it is ready in about a second): while
# idle its polling lcores cost ~15% of a CPU, which must not land on HAProxy's runs; and
# HAProxy needs the NICs that sluiced holds. Every side starts with a check that the client
# gets the backend's "hello" through it; each sluice run also checks from sluiced's counters
# that the requests went through the L7 engine (downstream_rq_total, no 5xx, no no_route)
# and the DPDK ports (wan to_kernel), without drops; every run checks from the backend's
# stub_status that the appliance reused its backend connections (backend_conns_opened).
#
# CPUs (2-core box): sluiced keeps conf/sluice.conf's `--lcores (0-2)@(0-1)`: its main
# (lcore 0), worker (lcore 1) and slow-path (lcore 2, the L7 engine) threads all float over
# CPUs 0-1; HAProxy (one thread) is not pinned either, so both appliances may use every CPU.
# wrk and the backend nginx are pinned to LOAD_CPU, as in the loopback part. Each run prints
# the appliance's CPU (per thread role for sluiced), the backend's and wrk's, each CPU's busy
# share, the kernel's softirq share and what no process of the run accounts for
# (unaccounted: softirq work not charged to a task, other jobs on this shared machine):
# when both CPUs are near 100% the box, not one component, is the limit. The efficiency
# line divides requests by the appliance process's CPU (all its threads, utime + stime);
# kernel work done in softirq context on the appliance's behalf is not in it.
# Latency: wrk --latency of the saturated runs (closed loop, CONNS connections), not a fixed
# offered load.
#
# Network: namespaces of this run only (unique prefix), addresses in 198.18.0.0/15; every
# namespace, interface and process is removed at exit (trap EXIT); every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
source perf/lib.sh
root=$(pwd)
RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-50}
RULES=${RULES:-100}
REGEX=${REGEX:-10}
LOAD_CPU=${LOAD_CPU:-0}
PATH_REQ=/bench/hello
GW=198.18.0.1       # the appliance's address on the client side (sluiced's "wan" address)
LAN=198.19.1.1      # the appliance's address on the backend side (be-a's default gateway)
BACKEND=198.19.1.10 # be-a's address (scripts/topology.sh)
BPORT=8080
for v in RUNS DURATION WARMUP CONNS RULES; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ]; then echo "$v must be a positive integer" >&2; exit 2; fi
done
[ -d "/sys/devices/system/cpu/cpu$LOAD_CPU" ] || { echo "no CPU $LOAD_CPU on this machine" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }

# --- packages and build ---------------------------------------------------------------------
./scripts/setup.sh >/dev/null # haproxy, nginx-light, wrk, dpdk, iproute2, ethtool, the build dir
PATH="$PATH:/usr/sbin:/sbin"
for c in haproxy nginx wrk curl python3 taskset ip ethtool; do
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
ninja -C "$bdir" app/sluiced/sluiced >/dev/null
SLUICED="$root/$bdir/app/sluiced/sluiced"
echo "appliance path: sluiced $SLUICED ($(buildtype "$bdir") build) vs $(haproxy -v | head -n 1 | cut -d' ' -f1-3)"

# --- topology, files, processes and cleanup ---------------------------------------------------
# shellcheck source=../../scripts/topology.sh
source "$root/scripts/topology.sh"
PFX="sl7a$$r$RANDOM"
tmp=$(mktemp -d /tmp/sluice-l7app.XXXXXX)
SLUICED_PID=""
HAPROXY_PID=""
BACKEND_PID=""
in_ns() { local n=$1; shift; ip netns exec "$PFX-$n" "$@"; }
cleanup() {
  [ -z "$SLUICED_PID" ] || stop_pid "$SLUICED_PID" || true
  [ -z "$HAPROXY_PID" ] || stop_pid "$HAPROXY_PID" || true
  [ -z "$BACKEND_PID" ] || stop_pid "$BACKEND_PID" || true
  topo_down "$PFX" # kills whatever is left in the namespaces, deletes them and their links
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

topo_up "$PFX" || { echo "the topology could not be built" >&2; exit 1; }

# The backend: nginx, 1 worker, pinned to LOAD_CPU (as in the loopback part).
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
    listen $BACKEND:$BPORT backlog=4096;
    location / { return 200 "hello\n"; }
    location = /backend-status { stub_status; }
  }
}
EOF
# ip netns exec and taskset exec: $! is nginx's master.
ip netns exec "$PFX-be-a" taskset -c "$LOAD_CPU" nginx -p "$tmp/backend" -c "$tmp/backend/nginx.conf" \
  -e stderr >"$tmp/backend.log" 2>&1 &
BACKEND_PID=$!
BACKEND_WORKER=""
for i in $(seq 1 50); do
  read -r BACKEND_WORKER _ < <(cat "/proc/$BACKEND_PID/task/$BACKEND_PID/children" 2>/dev/null; echo) || true
  [ -n "$BACKEND_WORKER" ] && [ "$(in_ns be-a curl -s -m 1 "http://$BACKEND:$BPORT$PATH_REQ" || true)" = hello ] && break
  BACKEND_WORKER=""
  sleep 0.1
done
[ -n "$BACKEND_WORKER" ] || { echo "the backend nginx did not start:" >&2; cat "$tmp/backend.log" >&2; exit 1; }

# The mesh: the loopback part's, with the Gateway on port 80 and the backend's address.
python3 perf/l7/gen_mesh.py "$BPORT" "$tmp/mesh.yaml" "$RULES" "$REGEX"
sed -i -e 's/^\(  - port: {number: \)8080,/\180,/' -e "s/^\(  - address: \)127\.0\.0\.1$/\1$BACKEND/" "$tmp/mesh.yaml"
if [ "$(grep -c '^  - port: {number: 80,' "$tmp/mesh.yaml")" != 1 ] ||
  [ "$(grep -c "^  - address: $BACKEND\$" "$tmp/mesh.yaml")" != 1 ]; then
  echo "perf/l7/gen_mesh.py's output changed shape: cannot move its Gateway to port 80 and its endpoint to $BACKEND" >&2
  exit 1
fi
# sluiced's config: conf/sluice.conf with a private state directory and token (as e2e_config)
# and the mesh; everything else (lcores, ports, exception path, l7) as the default has it.
sed -e "s|^state_dir = .*|state_dir = \"$tmp/state\";|" \
  -e "s|token_file = .*|token_file = \"$tmp/token\";|" \
  -e "s|^  files = \[ \];|  files = [ \"$tmp/mesh.yaml\" ];|" conf/sluice.conf >"$tmp/sluice.conf"
if ! grep -q "^  files = \[ \"$tmp/mesh.yaml\" \];" "$tmp/sluice.conf" ||
  ! grep -q "^state_dir = \"$tmp/state\";" "$tmp/sluice.conf"; then
  echo "conf/sluice.conf changed shape: cannot set mesh.files and state_dir" >&2
  exit 1
fi
echo "sluiced eal: $(sed -n 's/^ *"--lcores", "\([^"]*\)".*/--lcores \1/p' "$tmp/sluice.conf");" \
  "$(grep -E '^ *(workers|slowpath|idle_sleep_us) *=' "$tmp/sluice.conf" | sed 's/;.*//; s/  */ /g' | tr '\n' ';')"

# HAProxy keeps idle server connections for reuse only while few of its descriptors are in use
# (tune.pool-high-fd-ratio, 25% of maxsock): with maxconn near 2 * CONNS it closes its
# backend connection after every request (a quarter of the rate, measured). So maxconn is
# generous, like the loopback part's, and the descriptor limit is raised to match.
HAPROXY_MAXCONN=$((CONNS * 8 > 2000 ? CONNS * 8 : 2000))
want_fd=$((HAPROXY_MAXCONN * 2 + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fd" ]; then
  echo "descriptor limit $hard: HAProxy needs $want_fd for maxconn $HAPROXY_MAXCONN" >&2
  exit 2
fi
ulimit -n "$want_fd"
cat >"$tmp/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $HAPROXY_MAXCONN
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
frontend fe
  bind $GW:80
  default_backend be
backend be
  server backend $BACKEND:$BPORT
EOF

# --- the two sides --------------------------------------------------------------------------
# client_hello: the client gets the backend's hello through the appliance (bounded: 10 s).
client_hello() {
  local i
  for i in $(seq 1 50); do
    [ "$(in_ns client curl -s -m 1 "http://$GW$PATH_REQ" || true)" = hello ] && return 0
    sleep 0.2
  done
  return 1
}
# Forget the appliance's neighbours on both sides of it (same MACs either way, but no stale
# entry of the other side's kernel may linger).
flush_neigh() {
  in_ns client ip neigh flush dev eth0 2>/dev/null || true
  in_ns be-a ip neigh flush dev eth0 2>/dev/null || true
  in_ns app ip neigh flush dev nic-wan 2>/dev/null || true
  in_ns app ip neigh flush dev nic-lan 2>/dev/null || true
}
# sluiced_up LOG: starts sluiced in the app namespace, waits (bounded) until it is ready and
# serves the request.
sluiced_up() {
  local log=$1 i
  flush_neigh
  # ip netns exec execs: $! is sluiced itself.
  ip netns exec "$PFX-app" "$SLUICED" -c "$tmp/sluice.conf" >"$log" 2>&1 &
  SLUICED_PID=$!
  for i in $(seq 1 150); do
    grep -q '^sluiced: ready' "$log" && break
    kill -0 "$SLUICED_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^sluiced: ready' "$log" && client_hello && return 0
  echo "sluiced did not start or does not serve $GW$PATH_REQ; its log:" >&2
  tail -n 30 "$log" >&2
  return 1
}
sluiced_down() {
  local pid=$SLUICED_PID rc=0 i
  SLUICED_PID=""
  stop_pid "$pid" || rc=$?
  [ $rc = 0 ] || echo "  WARNING: sluiced exited with status $rc"
  # Its TAP interfaces (and with them the addresses and routes of the box) go with it.
  for i in $(seq 1 50); do
    in_ns app ip link show wan >/dev/null 2>&1 || in_ns app ip link show lan >/dev/null 2>&1 || return 0
    sleep 0.1
  done
  echo "sluiced's TAP interfaces outlived it" >&2
  return 1
}
# haproxy_up LOG: the NIC veths become plain kernel interfaces with the box's addresses;
# HAProxy on GW:80 (unpinned, like sluiced's lcores).
haproxy_up() {
  local log=$1
  in_ns app ip addr add "$GW/24" dev nic-wan
  in_ns app ip addr add "$LAN/24" dev nic-lan
  in_ns app ip link set nic-wan arp on
  in_ns app ip link set nic-lan arp on
  flush_neigh
  ip netns exec "$PFX-app" haproxy -db -f "$tmp/haproxy.cfg" >"$log" 2>&1 &
  HAPROXY_PID=$!
  client_hello && return 0
  echo "HAProxy does not serve $GW$PATH_REQ; its log:" >&2
  tail -n 30 "$log" >&2
  return 1
}
haproxy_down() {
  local pid=$HAPROXY_PID
  HAPROXY_PID=""
  stop_pid "$pid" || true
  in_ns app ip addr flush dev nic-wan
  in_ns app ip addr flush dev nic-lan
  in_ns app ip link set nic-wan arp off
  in_ns app ip link set nic-lan arp off
}

# --- measuring ----------------------------------------------------------------------------------
TCK=$(getconf CLK_TCK)
NCPU=$(grep -c '^cpu[0-9]' /proc/stat)
ticks() { sed 's/^.*) //' "$1" 2>/dev/null | awk '{print $12 + $13}' || true; } # utime + stime
# snap PID: CPU time counters (ticks) as "key value" lines: every CPU's busy, softirq and
# steal, the appliance PID's threads by role (sluiced: main = lcore 0, rte-worker-1 = the
# worker lcore, rte-worker-2 = the slow-path lcore, other = its other threads), the backend.
snap() {
  local pid=$1 t tid role
  echo "time $(date +%s.%N)"
  awk '/^cpu[0-9]/ { print $1 ".busy", $2 + $3 + $4 + $7 + $8; print $1 ".softirq", $8; print "all.softirq", $8
                     print $1 ".steal", $9; print "all.steal", $9; print "all.busy", $2 + $3 + $4 + $7 + $8 }' /proc/stat
  for t in /proc/"$pid"/task/*; do
    tid=${t##*/}
    case "$(cat "$t/comm" 2>/dev/null || true)" in
      rte-worker-1) role=worker ;;
      rte-worker-2) role=slowpath ;;
      *) role=other ;;
    esac
    [ "$tid" = "$pid" ] && role=main
    echo "app.$role $(ticks "$t/stat")"
    echo "app.total $(ticks "$t/stat")"
  done
  echo "backend $(ticks "/proc/$BACKEND_WORKER/stat")"
}
# delta A B: "key pct" lines, the percentage of one CPU each counter moved by between the
# snapshots (time: the seconds between them).
delta() {
  # shellcheck disable=SC2016 # awk program
  local sum='{ a[$1] += $2 } END { for (k in a) printf "%s %.6f\n", k, a[k] }'
  join <(awk "$sum" "$1" | sort) <(awk "$sum" "$2" | sort) |
    awk -v t="$TCK" '$1 == "time" { dt = $3 - $2; next } { d[$1] = $3 - $2 }
      END { print "time", dt; for (k in d) printf "%s %.1f\n", k, 100 * d[k] / t / dt }'
}
# backend_accepts: connections the backend accepted so far (its stub_status, asked from its
# own namespace).
backend_accepts() { in_ns be-a curl -s -m 2 "http://$BACKEND:$BPORT/backend-status" | awk 'NR == 3 {print $1}'; }
val() { awk -v k="$2" '$1 == k {print $2; f = 1} END {if (!f) print 0}' "$1"; } # val FILE KEY
# children_cpu_s FILE: user + system seconds of this shell's reaped children in the output of
# bash's `times` (which must run in this shell, not in a subshell: a fork starts at zero).
children_cpu_s() { tail -n 1 "$1" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } printf "%.3f", n }'; }
# to_ms VALUE: wrk's "1.23ms" / "850.00us" / "1.02s" in milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
pct_of() { to_ms "$(awk -v p="$2%" '$1 == p {print $2}' "$1")"; } # pct_of FILE 50
# wrk_run SECONDS OUT [ARGS...]: one wrk run from the client namespace on LOAD_CPU, bounded.
wrk_run() {
  local secs=$1 out=$2
  shift 2
  in_ns client timeout $((secs + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s "$@" \
    "http://$GW$PATH_REQ" >"$out" 2>&1 || { echo "wrk failed:" >&2; cat "$out" >&2; return 1; }
  if grep -qE 'Socket errors|Non-2xx' "$out"; then
    echo "  WARNING: $(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
  fi
}
# sluiced's counters: SIGUSR1, wait (bounded) for the dump's l7 line, then the latest dump as
# key=value lines (wan.rx_packets, l7.downstream_rq_total, drops.total, ...).
stats_dump() {
  local log=$1 before i
  before=$(grep -c '^stats: mirror' "$log" || true)
  kill -USR1 "$SLUICED_PID" || return 1
  for i in $(seq 1 100); do
    [ "$(grep -c '^stats: mirror' "$log" || true)" -gt "$before" ] && break
    sleep 0.02
  done
  [ "$(grep -c '^stats: mirror' "$log" || true)" -gt "$before" ] || { echo "sluiced did not answer SIGUSR1" >&2; return 1; }
  awk '/^stats: port=/ { split($2, a, "="); p[a[2]] = $0 } /^stats: drops/ { d = $0 } /^stats: l7 / { l = $0 }
       END {
         for (k in p) { n = split(p[k], f, " "); for (i = 3; i <= n; i++) print k "." f[i] }
         n = split(d, f, " "); for (i = 3; i <= n; i++) print "drops." f[i]
         n = split(l, f, " "); for (i = 3; i <= n; i++) print "l7." f[i]
       }' "$log" | tr '=' ' '
}

declare -A RPS EFF P50 P99
# measure SIDE ROUND PID [LOG]: warm-up, then one measured run; prints the run's line and
# records its figures.
measure() {
  local side=$1 r=$2 pid=$3 log=${4:-} out="$tmp/wrk-$1-$2" a0 a1 c0 c1 rps p50 p99 d wrk_cpu app eff extra=""
  wrk_run "$WARMUP" "$tmp/warm" || return 1
  [ -z "$log" ] || stats_dump "$log" >"$tmp/stats0" || return 1
  a0=$(backend_accepts)
  snap "$pid" >"$tmp/snap0"
  times >"$tmp/times0"
  wrk_run "$DURATION" "$out" --latency || return 1
  times >"$tmp/times1"
  c0=$(children_cpu_s "$tmp/times0")
  c1=$(children_cpu_s "$tmp/times1")
  snap "$pid" >"$tmp/snap1"
  a1=$(backend_accepts)
  [ -z "$log" ] || stats_dump "$log" >"$tmp/stats1" || return 1
  d="$tmp/delta-$side-$r"
  delta "$tmp/snap0" "$tmp/snap1" >"$d"
  rps=$(rps_of "$out")
  [ -n "$rps" ] || { echo "no Requests/sec in wrk's output:" >&2; cat "$out" >&2; return 1; }
  p50=$(pct_of "$out" 50)
  p99=$(pct_of "$out" 99)
  wrk_cpu=$(awk -v a="$c0" -v b="$c1" -v dt="$(val "$d" time)" 'BEGIN { printf "%.1f", 100 * (b - a) / dt }')
  app=$(val "$d" app.total)
  eff=$(awk -v rps="$rps" -v c="$app" 'BEGIN { printf "%.0f", (c > 0) ? rps * 100 / c : 0 }')
  RPS[$side]+="$rps "
  EFF[$side]+="$eff "
  P50[$side]+="$p50 "
  P99[$side]+="$p99 "
  if [ "$side" = sluice ]; then
    extra=" (main=$(val "$d" app.main)% worker=$(val "$d" app.worker)% slowpath=$(val "$d" app.slowpath)% other=$(val "$d" app.other)%)"
  fi
  local cpus="" i
  for ((i = 0; i < NCPU; i++)); do cpus+="cpu$i=$(val "$d" "cpu$i.busy")% "; done
  echo "[$r/$RUNS] $side: rps=$rps p50_ms=$p50 p99_ms=$p99 appliance_cpu=${app}%$extra backend_cpu=$(val "$d" backend)%" \
    "wrk_cpu=${wrk_cpu}% | ${cpus}softirq=$(val "$d" all.softirq)% steal=$(val "$d" all.steal)%" \
    "unaccounted=$(awk -v b="$(val "$d" all.busy)" -v a="$app" -v k="$(val "$d" backend)" -v w="$wrk_cpu" \
      'BEGIN { printf "%.0f", b - a - k - w }')% | rq_per_appliance_cpu_s=$eff backend_conns_opened=$((a1 - a0 - 1))"
  # Both appliances keep their backend connections: a run that opened more than the pool's
  # worth measured connection set-up, not proxying.
  if [ $((a1 - a0 - 1)) -gt $((CONNS * 2)) ]; then
    echo "  WARNING: $side opened $((a1 - a0 - 1)) backend connections in the window: its upstream keep-alive is not working"
  fi
  if [ -n "$log" ]; then
    # The requests went through the L7 engine (routed: no no_route, no 5xx) and the DPDK
    # ports, and nothing was dropped.
    local k s=""
    for k in l7.downstream_rq_total l7.rq_2xx l7.rq_5xx l7.no_route l7.upstream_cx_total wan.rx_packets wan.to_kernel \
      lan.rx_packets lan.to_kernel drops.total; do
      s+="${k}=$(($(val "$tmp/stats1" "$k") - $(val "$tmp/stats0" "$k"))) "
    done
    echo "    sluiced counters in the window: ${s% }"
    local rq bad
    rq=$(($(val "$tmp/stats1" l7.downstream_rq_total) - $(val "$tmp/stats0" l7.downstream_rq_total)))
    bad=$(($(val "$tmp/stats1" l7.rq_5xx) - $(val "$tmp/stats0" l7.rq_5xx) + $(val "$tmp/stats1" l7.no_route) -
      $(val "$tmp/stats0" l7.no_route) + $(val "$tmp/stats1" drops.total) - $(val "$tmp/stats0" drops.total)))
    if [ "$rq" -lt "$(awk -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%d", r * d * 0.9 }')" ] ||
      [ "$(($(val "$tmp/stats1" wan.to_kernel) - $(val "$tmp/stats0" wan.to_kernel)))" -lt "$rq" ] || [ "$bad" != 0 ]; then
      echo "  WARNING: sluiced's counters do not show wrk's requests served by the L7 engine through the DPDK ports"
    fi
  fi
}

echo "appliance path: wrk -t1 -c$CONNS (client ns, cpu$LOAD_CPU) -> $GW:80 -> app ns -> backend nginx $BACKEND:$BPORT" \
  "(be-a, cpu$LOAD_CPU); $RULES sluice routes ($REGEX regex), the request matches the last; sluiced and HAProxy unpinned"
for r in $(seq 1 "$RUNS"); do
  sluiced_up "$tmp/sluiced-$r.log" || exit 1
  measure sluice "$r" "$SLUICED_PID" "$tmp/sluiced-$r.log" || exit 1
  sluiced_down || exit 1
  haproxy_up "$tmp/haproxy-$r.log" || exit 1
  measure haproxy "$r" "$HAPROXY_PID" || exit 1
  haproxy_down
done

# --- the end ------------------------------------------------------------------------------------
for p in sluice haproxy; do
  echo "raw appliance $p: rps=[${RPS[$p]% }] rq_per_appliance_cpu_s=[${EFF[$p]% }]" \
    "saturated_p50_ms=[${P50[$p]% }] saturated_p99_ms=[${P99[$p]% }]"
done
pairs() { paste -d' ' <(echo "$1" | tr ' ' '\n' | grep -v '^$') <(echo "$2" | tr ' ' '\n' | grep -v '^$') |
  awk '{ printf "%.6f ", ($2 > 0) ? $1 / $2 : 0 }'; }
printf 'RESULT l7_appliance_vs_haproxy ratio=%.3f sluice=%.0f peer=%.0f runs=%d\n' \
  "$(pairs "${RPS[sluice]}" "${RPS[haproxy]}" | median)" "$(echo "${RPS[sluice]}" | median)" \
  "$(echo "${RPS[haproxy]}" | median)" "$RUNS"
printf 'RESULT l7_appliance_cpu_efficiency_vs_haproxy ratio=%.3f sluice=%.0frq/cpu-s peer=%.0frq/cpu-s runs=%d\n' \
  "$(pairs "${EFF[sluice]}" "${EFF[haproxy]}" | median)" "$(echo "${EFF[sluice]}" | median)" \
  "$(echo "${EFF[haproxy]}" | median)" "$RUNS"
for p in sluice haproxy; do
  printf 'RESULT l7_appliance_saturated_latency proxy=%s p50_ms=%.3f p99_ms=%.3f\n' "$p" \
    "$(echo "${P50[$p]}" | median)" "$(echo "${P99[$p]}" | median)"
done
