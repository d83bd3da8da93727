#!/usr/bin/env bash
# The L4 fast path against DPDK's raw I/O ceiling on this machine (BENCHMARKS.md, rows "L4 fast
# path" and "L4 new flows"): sluiced with ONE worker lcore forwarding full-NAT flows between
# two vdev ports, and dpdk-testpmd --forward-mode=io with ONE forwarding lcore between the
# same vdev ports, replaying the same pcap, alternating A B A B, each run bounded in time.
#   RESULT l4_established ratio=<sluice/testpmd> sluice=<x>Mpps peer=<y>Mpps runs=<n>
#   RESULT l4_new_flows ratio=<sluice/testpmd> sluice=<x>Mpps peer=<y>Mpps runs=<n>
# ratio is the median of the per-pair ratios (each sluiced run against the testpmd run right
# after it); sluice and peer are the medians of the raw rates. Raw per-run figures (rates,
# deltas of every counter that moved, drops by reason) are printed as they come.
#
# Usage: sudo perf/l4_vs_testpmd.sh        (about 4 minutes: 20 runs of ~11 s, start-up included)
# Environment: RUNS=5 pairs per scenario, WINDOW=4 s measured per run, WARMUP=1 s after the
# flows are set up, FLOWS=1000000 distinct 5-tuples, CONNECT_TIMEOUT_MS=100, FWD_CPU=1 (the
# CPU of sluiced's worker and testpmd's forwarding lcore), CTL_CPU=0 (everything else),
# SCENARIOS="udp syn" (either or both: established flows, new flows), DISTINCT=FLOWS (a
# diagnostic for the established scenario: its FLOWS frames cycle through only DISTINCT flows,
# so the replayed stream stays the same size while conntrack shrinks to DISTINCT entries, e.g.
# 4096 to keep it in cache; the RESULT is then named l4_established_distinct<DISTINCT>).
#
# Traffic: perf/l4/gen_pcap.py writes 64-byte frames (60 bytes + FCS), one per client 5-tuple
# (clients 198.18.128.0/17, VIP 198.18.10.1), FLOWS of them. net_pcap with infinite_rx=1
# replays the file from memory forever (it copies each frame into a fresh mbuf: that copy is
# part of both sides' cost, and nearly all of testpmd's). Nothing touches a network: the
# "wan" port is that pcap (its TX drops), the "lan" port is net_null,no-rx=1 (TX frees).
#  - established: UDP to VIP:7001. The first pass creates the FLOWS flows (full-NAT to 16
#    backends, 8 SNAT addresses); the script waits until conntrack holds all of them, so in
#    the window every packet is a conntrack hit (checked: new_flows must not move).
#  - new flows: TCP SYNs to VIP:7000. A pcap replays the same 5-tuples every pass, and a
#    flow lives tcp_syn seconds (>= 1) in conntrack, so the second pass would only find SYN
#    retransmits. perf/l4/mesh.yaml therefore sets the DestinationRule connectTimeout to
#    CONNECT_TIMEOUT_MS (100 ms): no SYN-ACK comes back (net_null), so each flow expires
#    100 ms after its SYN, well before the same 5-tuple comes around again (one pass of 1M
#    SYNs takes far longer than 100 ms at any rate below 10 Mpps). Every SYN in the window is
#    then a conntrack miss (the expired entry is reclaimed inline, as aging would do in a
#    steady SYN flood), a Maglev pick, an SNAT port probe and an insert: new_flows is checked
#    to move with the packets (>= 95%, else a WARNING; so FLOWS must be large enough that
#    a pass outlasts the timeout). Expiring SYN-only flows raise passive connect-failure
#    signals; the mesh has no outlierDetection, so none ejects an endpoint.
# Only the client -> backend direction is measured (replies would need backends answering).
#
# net_pcap's infinite_rx keeps the whole pcap in mbufs of the port's pool: sluiced's
# `mempool.mbufs` and testpmd's --total-num-mbufs give both sides the same pool.
#
# CPUs: this is a 2-core machine. sluiced's worker lcore and testpmd's forwarding lcore both
# run alone on FWD_CPU; sluiced's main (config) and slow-path lcores and testpmd's main lcore
# share CTL_CPU with this script. Runs never overlap.
#
# Network: sluiced and testpmd run in a network namespace of this run's own (unique name),
# deleted on exit with everything started in it (trap EXIT). The 16 backends 198.19.1.10-25
# are static permanent neighbours of sluiced's "lan" exception interface in that namespace
# (the netlink mirror gives them to the fast path). Every address is in 198.18.0.0/15.
# sluiced's neighbour resolution requests reset static entries (see run_sluiced): the script
# re-applies them until they hold, and says how many it had to re-apply.
set -euo pipefail
cd "$(dirname "$0")/.."
source perf/lib.sh
root=$(pwd)
RUNS=${RUNS:-5}
WINDOW=${WINDOW:-4}
WARMUP=${WARMUP:-1}
FLOWS=${FLOWS:-1000000}
DISTINCT=${DISTINCT:-$FLOWS}
CONNECT_TIMEOUT_MS=${CONNECT_TIMEOUT_MS:-100}
FWD_CPU=${FWD_CPU:-1}
SCENARIOS=${SCENARIOS:-udp syn} # udp: established flows, syn: new flows
CTL_CPU=${CTL_CPU:-0}
BACKENDS=16
VIP=198.18.10.1
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
if [ "$RUNS" -lt 1 ] || [ "$FLOWS" -lt 1024 ] || [ "$DISTINCT" -lt 1 ] || [ "$DISTINCT" -gt "$FLOWS" ]; then
  echo "RUNS >= 1, FLOWS >= 1024, 1 <= DISTINCT <= FLOWS" >&2
  exit 2
fi

# --- packages and build ---------------------------------------------------------------------
./scripts/setup.sh >/dev/null # dpdk, python3, the build directory
command -v dpdk-testpmd >/dev/null ||
  { echo "dpdk-testpmd is missing: run scripts/setup.sh (Debian 12 ships it in dpdk-dev)" >&2; exit 2; }
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
SLUICED=${SLUICED:-"$root/$bdir/app/sluiced/sluiced"} # SLUICED=path: another build (A/B runs)
echo "sluiced: $SLUICED ($(buildtype "$bdir") build); testpmd: $(command -v dpdk-testpmd)"

# --- the run's namespace, files and cleanup -------------------------------------------------
NS="slperfl4$$r$RANDOM"
tmp=$(mktemp -d /tmp/sluice-l4perf.XXXXXX)
PID=""
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "$PID" ] && stop_pid "$PID" 15 || true
  local pids
  pids=$(ip netns pids "$NS" 2>/dev/null || true)
  # shellcheck disable=SC2086
  if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; fi
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 141' PIPE # testpmd gone while we write to its FIFO: clean up, do not die silently
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

# --- ports and memory -------------------------------------------------------------------------
# net_pcap's infinite_rx keeps the whole pcap in mbufs of the port's pool: sluiced's
# `mempool.mbufs` and testpmd's --total-num-mbufs size both pools alike (2^k - 1, the pcap plus
# descriptors, TAP descriptors, lcore caches and bursts in flight).
DESC=1024
NPORTS=2
POOL=1
while [ "$POOL" -lt $((FLOWS + NPORTS * (2 * DESC + 2048) + 16384)) ]; do POOL=$((POOL * 2)); done
POOL=$((POOL - 1))
MEM_MB=$((POOL * 2432 * 2 / 1048576 + 512)) # mbuf ~2.4 KB; no-huge needs slack
echo "flows=$FLOWS distinct(udp)=$DISTINCT ports=$NPORTS mbufs=$POOL eal_mem=${MEM_MB}MB" \
  "window=${WINDOW}s warmup=${WARMUP}s runs=$RUNS cpu: forwarding lcore on $FWD_CPU, others on $CTL_CPU"

# --- traffic ----------------------------------------------------------------------------------
python3 perf/l4/gen_pcap.py udp "$FLOWS" $VIP 7001 "$tmp/udp.pcap" "$DISTINCT"
python3 perf/l4/gen_pcap.py syn "$FLOWS" $VIP 7000 "$tmp/syn.pcap"
sed "s/connectTimeout: [0-9]*ms/connectTimeout: ${CONNECT_TIMEOUT_MS}ms/" perf/l4/mesh.yaml >"$tmp/mesh.yaml"
grep -q "connectTimeout: ${CONNECT_TIMEOUT_MS}ms" "$tmp/mesh.yaml"

# gen_conf SCENARIO: sluiced's config for one scenario's pcap.
gen_conf() {
  local s=$1 i
  {
    sed -e "s|@PCAP@|$tmp/$s.pcap|" -e "s|@MEM@|$MEM_MB|" -e "s|@DESC@|$DESC|g" \
      -e "s|@LCORES@|0@$CTL_CPU,1@$FWD_CPU,2@$CTL_CPU|" -e "s|@TMP@|$tmp/$s|g" \
      -e "s|@MESH@|$tmp/mesh.yaml|" -e "s|@CAPACITY@|$((FLOWS > 1048576 ? FLOWS : 1048576))|" \
      -e "s|@MBUFS@|$POOL|" perf/l4/sluice.conf.in
    echo ");"
  } >"$tmp/$s.conf"
  mkdir -p "$tmp/$s"
  "$SLUICED" --check -c "$tmp/$s.conf" >/dev/null
}
gen_conf udp
gen_conf syn

# --- sluiced side -------------------------------------------------------------------------
LOG=""
dumps() { grep -c '^stats: lcore=.* role=slowpath' "$LOG" || true; }
# dump: SIGUSR1 and wait (bounded) for the whole dump; prints the time it was asked for.
dump() {
  local before i t
  before=$(dumps)
  t=$(date +%s.%N)
  kill -USR1 "$PID" || { echo "sluiced is gone; its log:" >&2; tail -n 20 "$LOG" >&2; return 1; }
  for i in $(seq 1 100); do
    [ "$(dumps)" -gt "$before" ] && { echo "$t"; return 0; }
    sleep 0.02
  done
  echo "sluiced did not answer SIGUSR1" >&2
  return 1
}
# flat: the latest dump as key=value lines (wan.rx_packets, drop.l4_no_flow, l4.new_flows, ...).
flat() {
  awk '/^stats: port=/ { split($2, a, "="); p = a[2]; for (i = 3; i <= NF; i++) port[p "." $i] = 1; last_port[p] = $0 }
       /^stats: drops/ { d = $0 } /^stats: l4 / { l = $0 } /^stats: mirror/ { m = $0 }
       END {
         for (p in last_port) { n = split(last_port[p], f, " "); for (i = 3; i <= n; i++) print p "." f[i] }
         n = split(d, f, " "); for (i = 3; i <= n; i++) print "drop." f[i]
         n = split(l, f, " "); for (i = 3; i <= n; i++) print "l4." f[i]
         n = split(m, f, " "); for (i = 3; i <= n; i++) print "mirror." f[i]
       }' "$LOG"
}
val() { local v; v=$(sed -n "s/^$2=//p" "$1"); echo "${v:-0}"; } # val FILE KEY (0 when absent)

# run_sluiced SCENARIO RUN: prints "rate" (Mpps) on the last line; details above it.
run_sluiced() {
  local s=$1 r=$2 i t0 t1 ok=0 want
  LOG="$tmp/$s/sluiced-$r.log"
  # Not through in_ns: $! must be sluiced itself (ip netns exec execs it), not a subshell.
  ip netns exec "$NS" "$SLUICED" -c "$tmp/$s.conf" >"$LOG" 2>&1 &
  PID=$!
  for i in $(seq 1 600); do
    grep -q '^sluiced: ready' "$LOG" && { ok=1; break; }
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok = 0 ]; then
    echo "sluiced did not start:" >&2
    tail -n 20 "$LOG" >&2
    return 1
  fi
  # The backends' static neighbours (the netlink mirror gives them to the fast path). Apply,
  # wait, and check that all of them stay PERMANENT and the fast path stops dropping for want
  # of a neighbour (bounded: 30 tries). sluiced's resolution requests create entries only
  # (NLM_F_EXCL): they no longer reset ours; the count printed says if one ever did.
  local tries clobbered=0 a b
  ok=0
  for tries in $(seq 1 30); do
    clobbered=$((clobbered + BACKENDS - $(in_ns ip neigh show dev lan nud permanent | wc -l)))
    for ((i = 0; i < BACKENDS; i++)); do
      in_ns ip neigh replace "198.19.1.$((10 + i))" lladdr "$(printf '02:00:c6:13:01:%02x' $((10 + i)))" \
        dev lan nud permanent
    done
    sleep 0.3
    dump >/dev/null || { stop_pid "$PID" 15 || true; PID=""; return 1; }
    a=$(flat | sed -n 's/^drop.l4_no_neighbour=//p')
    sleep 0.3
    dump >/dev/null || { stop_pid "$PID" 15 || true; PID=""; return 1; }
    b=$(flat | sed -n 's/^drop.l4_no_neighbour=//p')
    if [ "$a" = "$b" ] && [ "$(in_ns ip neigh show dev lan nud permanent | wc -l)" = "$BACKENDS" ]; then
      ok=1
      break
    fi
  done
  echo "  neighbours: $BACKENDS static, $((clobbered - BACKENDS)) reset by sluiced's resolve requests and re-applied ($tries tries)"
  if [ $ok = 0 ]; then
    echo "sluiced $s run $r: the backends' neighbours never settled; kernel table:" >&2
    in_ns ip neigh show dev lan >&2
    stop_pid "$PID" 15 || true; PID=""
    return 1
  fi
  # Set-up: (established) every flow in conntrack, or (new flows) one whole pass of SYNs
  # done. Bounded: 60 s.
  ok=0
  for i in $(seq 1 300); do
    dump >/dev/null || { stop_pid "$PID" 15 || true; PID=""; return 1; }
    flat >"$tmp/now"
    want=$FLOWS
    [ "$s" = udp ] && want=$DISTINCT
    if [ "$(val "$tmp/now" l4.new_flows)" -ge "$want" ]; then ok=1; break; fi
    sleep 0.2
  done
  if [ $ok = 0 ]; then
    echo "sluiced $s run $r: flows not set up within 60 s; last counters:" >&2
    grep -v '=0$' "$tmp/now" >&2
    stop_pid "$PID" 15 || true; PID=""
    return 1
  fi
  sleep "$WARMUP"
  t0=$(dump) || return 1
  flat >"$tmp/a"
  sleep "$WINDOW"
  t1=$(dump) || return 1
  flat >"$tmp/b"
  stop_pid "$PID" 15 || true
  PID=""
  # Deltas of every counter that moved in the window.
  join -t= <(sort "$tmp/a") <(sort "$tmp/b") |
    awk -F= '$3 - $2 != 0 && $1 !~ /^(mirror|idle)|_bytes=?$/ { printf "%s=%d ", $1, $3 - $2 }' >"$tmp/delta"
  local dt tx rx nf hits drops
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  tx=$(($(val "$tmp/b" lan.tx_packets) - $(val "$tmp/a" lan.tx_packets)))
  rx=$(($(val "$tmp/b" wan.rx_packets) - $(val "$tmp/a" wan.rx_packets)))
  nf=$(($(val "$tmp/b" l4.new_flows) - $(val "$tmp/a" l4.new_flows)))
  hits=$(($(val "$tmp/b" l4.flow_hits) - $(val "$tmp/a" l4.flow_hits)))
  drops=$(($(val "$tmp/b" drop.total) - $(val "$tmp/a" drop.total)))
  echo "  window ${dt}s: wan rx=$rx lan tx=$tx drops=$drops new_flows=$nf flow_hits=$hits" \
    "conntrack_entries=$(val "$tmp/b" l4.conntrack_entries)"
  echo "  moved: $(cat "$tmp/delta")"
  if [ "$s" = udp ] && [ "$nf" != 0 ]; then
    echo "  WARNING: $nf new flows in the established window"
  fi
  if [ "$s" = syn ] && [ $((nf * 100)) -lt $((tx * 95)) ]; then
    echo "  WARNING: only $nf of $tx forwarded SYNs were new flows"
  fi
  if [ "$drops" != 0 ]; then
    echo "  WARNING: drops in the window: $(tr ' ' '\n' <"$tmp/delta" | grep '^drop\.' | grep -v '^drop.total' | tr '\n' ' ')"
  fi
  awk -v n="$tx" -v dt="$dt" 'BEGIN { printf "%.4f\n", n / dt / 1e6 }'
}

# --- testpmd side -------------------------------------------------------------------------
# run_testpmd SCENARIO RUN: interactive testpmd fed through a FIFO (--auto-start), so "show
# port stats all" reads the counters at t0 and t1 like SIGUSR1 does for sluiced.
run_testpmd() {
  local s=$1 r=$2 i t0 t1 ok=0 out vdevs
  out="$tmp/$s/testpmd-$r.log"
  vdevs=(--vdev "net_pcap0,rx_pcap=$tmp/$s.pcap,infinite_rx=1" --vdev "net_null0,no-rx=1")
  rm -f "$tmp/fifo"
  mkfifo "$tmp/fifo"
  ip netns exec "$NS" stdbuf -oL dpdk-testpmd --no-huge --no-pci --no-shconf -m "$MEM_MB" --lcores "0@$CTL_CPU,1@$FWD_CPU" \
    --no-telemetry --log-level lib.eal:warning "${vdevs[@]}" -- \
    -i --auto-start --forward-mode=io --port-topology=chained --nb-cores=1 \
    --total-num-mbufs="$POOL" <"$tmp/fifo" >"$out" 2>&1 &
  PID=$!
  exec 3>"$tmp/fifo"
  for i in $(seq 1 600); do
    grep -q 'testpmd> ' "$out" && { ok=1; break; }
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ $ok = 0 ]; then
    echo "testpmd did not start:" >&2
    tail -n 20 "$out" >&2
    exec 3>&-
    return 1
  fi
  sleep "$WARMUP"
  local n0
  n0=$(grep -c 'NIC statistics for port' "$out" || true)
  t0=$(date +%s.%N)
  echo "show port stats all" >&3
  for i in $(seq 1 100); do
    [ "$(grep -c 'NIC statistics for port' "$out" || true)" -ge $((n0 + NPORTS)) ] && break
    sleep 0.02
  done
  sleep "$WINDOW"
  t1=$(date +%s.%N)
  echo "show port stats all" >&3
  for i in $(seq 1 100); do
    [ "$(grep -c 'NIC statistics for port' "$out" || true)" -ge $((n0 + 2 * NPORTS)) ] && break
    sleep 0.02
  done
  echo "stop" >&3
  echo "quit" >&3
  exec 3>&-
  for i in $(seq 1 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$PID" 15 || true
  PID=""
  # Port P's RX/TX packets in the two "show" outputs (the last 2*NPORTS blocks).
  awk -v nports="$NPORTS" -v n0="$n0" '
    /NIC statistics for port/ { k++; port = $6 }
    /RX-packets:/ && k > n0 { rx[k] = $2 } /TX-packets:/ && k > n0 { tx[k] = $2; p[k] = port }
    /Tx-pps:/ && k > n0 { pps[k] = $2 }
    END {
      for (i = n0 + 1; i <= n0 + nports; i++) { j = i + nports
        printf "%s %d %d %d %d %d\n", p[i], rx[i], rx[j], tx[i], tx[j], pps[j] }
    }' "$out" >"$tmp/tp"
  local dt rx tx pps
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
  rx=$(awk '$1 == 0 { print $3 - $2 }' "$tmp/tp")
  tx=$(awk '$1 == 1 { print $5 - $4 }' "$tmp/tp")
  pps=$(awk '$1 == 1 { print $6 }' "$tmp/tp")
  echo "  window ${dt}s: port0 (pcap) rx=$rx port1 (null) tx=$tx (testpmd's own Tx-pps over the window: $pps)"
  if [ -z "$tx" ] || [ "$tx" -le 0 ]; then
    echo "testpmd $s run $r: no forwarded packets read from its output:" >&2
    tail -n 30 "$out" >&2
    return 1
  fi
  awk -v n="$tx" -v dt="$dt" 'BEGIN { printf "%.4f\n", n / dt / 1e6 }'
}

# --- extra informational figures (micro-benchmarks, if built) -------------------------------
info=()
if [ -x "$bdir/perf/micro/maglev_bench" ]; then
  info+=("$("$bdir/perf/micro/maglev_bench" --benchmark_filter='BM_maglev_build/65537/(10|100)$' \
    --benchmark_format=json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)["benchmarks"]
print("info: maglev build M=65537: " + ", ".join("%s backends %.3f %s" % (b["name"].split("/")[-1], b["real_time"], b["time_unit"]) for b in d))
' || echo "info: maglev_bench failed")")
fi
if [ -x "$bdir/perf/micro/conntrack_bench" ]; then
  info+=("$("$bdir/perf/micro/conntrack_bench" --benchmark_filter='BM_insert_remove<v4>/1048576$' \
    --benchmark_format=json 2>/dev/null | python3 -c '
import json, sys
b = json.load(sys.stdin)["benchmarks"][0]
print("info: conntrack %.0f bytes per entry (capacity 2^20), insert+remove %.0f %s" % (b["bytes_per_entry"], b["real_time"], b["time_unit"]))
' || echo "info: conntrack_bench failed")")
fi

# --- the alternating runs -----------------------------------------------------------------
declare -A A B
for r in $(seq 1 "$RUNS"); do
  for s in $SCENARIOS; do
    label="established flows (UDP)"
    [ $s = syn ] && label="new flows (TCP SYN)"
    echo "[$r/$RUNS] $label, sluiced:"
    run_sluiced "$s" "$r" >"$tmp/res" || exit 1
    sed '$d' "$tmp/res"
    A[$s]+="$(tail -n 1 "$tmp/res") "
    echo "  sluice=$(tail -n 1 "$tmp/res")Mpps"
    echo "[$r/$RUNS] $label, testpmd (same pcap):"
    run_testpmd "$s" "$r" >"$tmp/res" || exit 1
    sed '$d' "$tmp/res"
    B[$s]+="$(tail -n 1 "$tmp/res") "
    echo "  testpmd=$(tail -n 1 "$tmp/res")Mpps"
  done
done

for s in $SCENARIOS; do
  name=l4_established
  [ "$DISTINCT" != "$FLOWS" ] && name=l4_established_distinct$DISTINCT
  [ $s = syn ] && name=l4_new_flows
  ratios=$(paste -d' ' <(echo "${A[$s]}" | tr ' ' '\n' | grep -v '^$') <(echo "${B[$s]}" | tr ' ' '\n' | grep -v '^$') |
    awk '{ printf "%.4f ", $1 / $2 }')
  echo "raw $name: sluice_mpps=[${A[$s]% }] testpmd_mpps=[${B[$s]% }] pair_ratios=[${ratios% }]"
done
for l in "${info[@]}"; do echo "$l"; done
for s in $SCENARIOS; do
  name=l4_established
  [ "$DISTINCT" != "$FLOWS" ] && name=l4_established_distinct$DISTINCT
  [ $s = syn ] && name=l4_new_flows
  ratios=$(paste -d' ' <(echo "${A[$s]}" | tr ' ' '\n' | grep -v '^$') <(echo "${B[$s]}" | tr ' ' '\n' | grep -v '^$') |
    awk '{ printf "%.6f ", $1 / $2 }')
  printf 'RESULT %s ratio=%.3f sluice=%.3fMpps peer=%.3fMpps runs=%d\n' "$name" "$(echo "$ratios" | median)" \
    "$(echo "${A[$s]}" | median)" "$(echo "${B[$s]}" | median)" "$RUNS"
done
