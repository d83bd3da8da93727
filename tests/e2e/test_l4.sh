#!/usr/bin/env bash
# The L4 fast path end to end: a client namespace reaches TCP and UDP VIPs through sluiced's
# workers (conntrack, locality levels, Maglev, full-NAT), served by real servers in three zone
# namespaces (zone-a and zone-b in region-1/network-1, zone-c in region-2/network-2); the
# appliance sits in zone-a. Every backend reports who answered.
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
TOOL="$E2E_ROOT/tests/e2e/l4_tool.py"
MESH="$E2E_ROOT/tests/e2e/l4/mesh.yaml"
VIP=198.18.10.1
sed -i "s|^  files = \[ \];|  files = [ \"$MESH\" ];|" "$conf"

# Two more addresses per zone namespace: each zone has several endpoints.
in_ns be-a ip addr add 198.19.1.11/24 dev eth0
in_ns be-a ip addr add 198.19.1.12/24 dev eth0
in_ns be-b ip addr add 198.19.2.11/24 dev eth0
in_ns be-c ip addr add 198.19.3.11/24 dev eth0

# start_backend ZONE ADDR: a server answering "ADDR" on TCP 7000 and UDP 7001, for 600 s.
start_backend() {
  in_ns "be-$1" python3 "$TOOL" serve "$2" "$2" 7000 7001 600 >/dev/null 2>&1 &
}
stop_zone() { ip netns pids "$(ns "be-$1")" | xargs -r kill; }
start_zone_a() { for a in 198.19.1.10 198.19.1.11 198.19.1.12; do start_backend a $a; done; }
start_zone_a
start_backend b 198.19.2.10
start_backend b 198.19.2.11
start_backend c 198.19.3.10
start_backend c 198.19.3.11

# tally FILE: "backend count" lines, most first.
tally() { awk '{print $2}' "$1" | sort | uniq -c | sort -rn; }

t_tcp_vip_stays_in_zone() {
  local out="$E2E_TMP/tcp1.txt"
  in_ns client python3 "$TOOL" tcp $VIP 7000 300 0 3 >"$out"
  tally "$out"
  # PreferClose: every connection is answered by a zone-a endpoint.
  [ "$(grep -c ' 198\.19\.1\.' "$out")" = 300 ]
}

t_udp_vip_stays_in_zone() {
  local out="$E2E_TMP/udp1.txt"
  in_ns client python3 "$TOOL" udp $VIP 7001 300 0 3 >"$out"
  tally "$out"
  [ "$(grep -c ' 198\.19\.1\.' "$out")" = 300 ]
}

t_maglev_spread_1000() {
  local out="$E2E_TMP/tcp1000.txt"
  in_ns client python3 "$TOOL" tcp $VIP 7000 1000 0 3 >"$out"
  tally "$out"
  [ "$(grep -c ' 198\.19\.1\.' "$out")" = 1000 ] || return 1
  # Three equal endpoints: each within 333 +- 25% (250..417).
  local a
  for a in 198.19.1.10 198.19.1.11 198.19.1.12; do
    local n
    n=$(grep -c " $a\$" "$out")
    [ "$n" -ge 250 ] && [ "$n" -le 417 ] || { echo "$a: $n"; return 1; }
  done
}

t_counters() {
  stats_refresh || return 1
  grep '^stats: l4' "$SLUICED_LOG" | tail -n 1
  local nf
  nf=$(grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n 's/^new_flows=//p')
  [ "${nf:-0}" -ge 1500 ]
}

# Two sluiced processes (a restart: new process, new conntrack seed) with one config choose
# identical backends for the same 5-tuples: 10,000 UDP source ports.
t_same_config_same_choices() {
  local a="$E2E_TMP/det1.txt" b="$E2E_TMP/det2.txt"
  in_ns client python3 "$TOOL" udp $VIP 7001 10000 20000 3 >"$a" || return 1
  sluiced_stop || return 1
  sluiced_start "$conf" || return 1
  in_ns client python3 "$TOOL" udp $VIP 7001 10000 20000 3 >"$b" || return 1
  echo "errors: $(grep -c ERROR "$a") / $(grep -c ERROR "$b")"
  stats_refresh; grep -E '^stats: (drops|l4)' "$SLUICED_LOG" | tail -n 2; grep -iE 'warn|err|resolve' "$SLUICED_LOG" | head
  [ "$(grep -c ERROR "$a")" -le 20 ] || return 1
  # Ports answered in both runs (a lost datagram is not a different choice) must agree.
  join <(grep -v ERROR "$a" | sort) <(grep -v ERROR "$b" | sort) | awk '$2 != $3 {d++} END {print NR, "compared,", d+0, "differ"; exit d+0 != 0 || NR < 9900}'
}

# Flows opened before 100 config applies (each one changing the endpoints of the zone the
# flows use, so Maglev tables change) keep their backends and complete.
t_flows_survive_100_applies() {
  local hold="$E2E_TMP/hold.go" out="$E2E_TMP/hold.out" i
  sed 's/- {addresses: \[198.19.1.12\], zone: zone-a, conditions: {ready: true}}/&\n- {addresses: [198.19.1.13], zone: zone-a, conditions: {ready: true}}/' \
    "$MESH" >"$E2E_TMP/mesh2.yaml"
  grep -q 198.19.1.13 "$E2E_TMP/mesh2.yaml" || return 1
  rm -f "$hold"
  in_ns client python3 "$TOOL" hold $VIP 7000 20 "$hold" 120 >"$out" &
  local pid=$!
  for i in $(seq 1 50); do grep -q opened "$out" 2>/dev/null && break; sleep 0.2; done
  cat "$out"
  for i in $(seq 1 50); do
    ctl apply -f "$E2E_TMP/mesh2.yaml" >/dev/null || { echo "apply $i failed"; kill $pid; return 1; }
    ctl apply -f "$MESH" >/dev/null || { echo "apply $i failed"; kill $pid; return 1; }
  done
  touch "$hold"
  wait $pid
  cat "$out"
  grep -q '^held 20 ok 20$' "$out"
}

# ep_active HOST: "ADDRESS active_connections" per endpoint of the TCP port (7000), from a
# /v1/endpoints answer on stdin (sluicectl -o json, or api's body and status line).
ep_active() {
  python3 -c '
import json, sys
text = sys.stdin.read().strip()
body = json.loads(text[:text.rfind("}") + 1])
for e in body["endpoints"]:
    if e["port"] == 7000:
        print(e["address"], e["active_connections"], e["l4_connections"], e["active_requests"])
'
}

# sluicectl endpoints shows the TCP connections open through the L4 workers: 12 held through
# the VIP count once each, on the endpoint that answered them, and none once they close.
t_endpoints_active_connections() {
  local hold="$E2E_TMP/hold-ep.go" out="$E2E_TMP/hold-ep.out" got="$E2E_TMP/ep-active.txt" i a
  rm -f "$hold"
  in_ns client python3 "$TOOL" hold $VIP 7000 12 "$hold" 30 >"$out" &
  local pid=$!
  for i in $(seq 1 50); do grep -q '^opened' "$out" 2>/dev/null && break; sleep 0.2; done
  grep '^opened' "$out"
  ctl endpoints echo.l4.svc.cluster.local
  ctl -o json endpoints echo.l4.svc.cluster.local | ep_active >"$got"
  touch "$hold"
  wait $pid
  cat "$got"
  grep -q '^opened 12$' "$out" || return 1
  grep -q '^held 12 ok 12$' "$out" || return 1
  # Every endpoint: as many as the backend at that address answered (address, total, l4,
  # requests); L4 connections are no L7 requests.
  for a in 198.19.1.10 198.19.1.11 198.19.1.12 198.19.2.10 198.19.2.11 198.19.3.10 198.19.3.11; do
    local n
    n=$(grep -c "^conn $a\$" "$out")
    grep -q "^$a $n $n 0\$" "$got" || { echo "$a: expected $n"; return 1; }
  done
  [ "$(awk '{s += $2} END {print s}' "$got")" = 12 ] || return 1
  # Closed (both FINs seen): back to 0 everywhere, through the REST API. Bounded: 5 s.
  for i in $(seq 1 25); do
    api GET "/v1/endpoints?host=echo.l4.svc.cluster.local" | ep_active >"$got"
    [ "$(awk '{s += $2} END {print s}' "$got")" = 0 ] && { echo "0 after $((i * 200)) ms"; return 0; }
    sleep 0.2
  done
  cat "$got"
  return 1
}

# Zone-a dies: its servers refuse connections (RST); outlier detection ejects each endpoint
# after 3 connect failures and new connections go to zone-b (same region). Then zone-a
# returns and traffic fails back once the ejections end.
t_failover_and_failback() {
  local out="$E2E_TMP/failover.txt" fails
  stop_zone a
  sleep 0.5
  # One new connection every 10 ms, as a steady client would open them; 150 of them take
  # less than the 4 s ejection time.
  in_ns client python3 "$TOOL" tcp $VIP 7000 150 0 3 0.01 >"$out"
  tally "$out"
  fails=$(grep -c ERROR "$out")
  echo "failed connections while zone-a was ejected: $fails"
  # 3 failures per zone-a endpoint eject it (3 endpoints), plus what arrives while the
  # control thread (10 ms loop) rebuilds the view; the last 100 all land in zone-b.
  [ "$fails" -le 12 ] || { grep "health:" "$SLUICED_LOG"; return 1; }
  [ "$(tail -n 100 "$out" | grep -c ' 198\.19\.2\.')" = 100 ] || return 1
  ctl endpoints echo.l4.svc.cluster.local >"$E2E_TMP/eps.txt"
  cat "$E2E_TMP/eps.txt"
  [ "$(grep 198.19.1. "$E2E_TMP/eps.txt" | grep -c ejected)" = 3 ] || return 1
  api GET /metrics | grep 'envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name="outbound|7000||echo.l4.svc.cluster.local"}' | grep -q ' 3$' || return 1
  start_zone_a
  # Failback: once the ejections end (baseEjectionTime 4 s), new connections land in zone-a
  # again. Bounded: 20 tries, 1 s apart.
  local i
  for i in $(seq 1 20); do
    sleep 1
    in_ns client python3 "$TOOL" tcp $VIP 7000 30 0 3 >"$out"
    [ "$(grep -c ' 198\.19\.1\.' "$out")" = 30 ] && { echo "failback after ${i}s"; return 0; }
  done
  tally "$out"
  return 1
}

# connectionPool.tcp.maxConnections: 2 open connections are admitted, the third gets a RST
# (the client sees "connection refused"), and once they close a new one is admitted.
t_max_connections() {
  local hold="$E2E_TMP/hold-lim.go" out="$E2E_TMP/hold-lim.out" third i
  rm -f "$hold"
  in_ns client python3 "$TOOL" hold 198.18.10.4 7000 2 "$hold" 60 >"$out" &
  local pid=$!
  for i in $(seq 1 50); do grep -q opened "$out" 2>/dev/null && break; sleep 0.2; done
  cat "$out"
  grep -q 'opened 2' "$out" || { kill $pid; return 1; }
  third=$(in_ns client python3 "$TOOL" tcp 198.18.10.4 7000 1 0 3)
  echo "third connection: $third"
  touch "$hold"
  wait $pid
  cat "$out"
  echo "$third" | grep -q 'ERROR ConnectionRefusedError' || return 1
  grep -q '^held 2 ok 2$' "$out" || return 1
  stats_refresh || return 1
  local ov
  ov=$(grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n 's/^overflow=//p')
  echo "overflow=$ov"
  [ "${ov:-0}" -ge 1 ] || return 1
  sleep 0.5
  in_ns client python3 "$TOOL" tcp 198.18.10.4 7000 1 0 3 | grep -q ' 198\.19\.1\.10$'
}

# Direct server return: UDP VIPs forwarded as IPIP and GUE to backends that decapsulate and
# answer the client straight from the VIP (through the appliance's kernel as their router).
t_dsr_ipip_and_gue() {
  local out="$E2E_TMP/dsr.txt"
  in_ns app sysctl -qw net.ipv4.ip_forward=1
  for i in all default lan wan; do in_ns app sysctl -qw "net.ipv4.conf.$i.rp_filter=0"; done
  in_ns be-b python3 "$TOOL" dsr dsr-ipip 198.19.2.10 ipip 6080 600 >/dev/null 2>&1 &
  in_ns be-b python3 "$TOOL" dsr dsr-gue 198.19.2.11 gue 6080 600 >/dev/null 2>&1 &
  sleep 0.5
  in_ns client python3 "$TOOL" udp 198.18.10.2 7001 50 0 3 >"$out"
  tally "$out"
  [ "$(grep -c ' dsr-ipip$' "$out")" = 50 ] || return 1
  in_ns client python3 "$TOOL" udp 198.18.10.3 7001 50 0 3 >"$out"
  tally "$out"
  [ "$(grep -c ' dsr-gue$' "$out")" = 50 ] || return 1
  stats_refresh || return 1
  local enc
  enc=$(grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n 's/^encapsulated=//p')
  echo "encapsulated=$enc"
  [ "${enc:-0}" -ge 100 ]
}

# A backend that was down (its ARP failed, the kernel's entry is FAILED) when traffic first
# reached for it, then comes up: new connections reach it once the appliance asks again.
t_failed_neighbour_is_resolved_again() {
  local i out
  in_ns client python3 "$TOOL" tcp 198.18.10.5 7000 2 0 1 || true
  sleep 4 # ARP gives up: the kernel's entry for 198.19.3.20 is FAILED
  in_ns app ip neigh show 198.19.3.20
  in_ns be-c ip addr add 198.19.3.20/24 dev eth0
  in_ns be-c python3 "$TOOL" serve late 198.19.3.20 7000 7001 120 >/dev/null 2>&1 &
  for i in $(seq 1 20); do
    out=$(in_ns client python3 "$TOOL" tcp 198.18.10.5 7000 1 0 1)
    echo "$out" | grep -q ' late$' && { echo "reached after ${i} tries"; return 0; }
    sleep 1
  done
  echo "$out"
  in_ns app ip neigh show 198.19.3.20
  return 1
}

# Right after start, a brand-new client (lib.sh: neighbour tables flushed on both sides) gets
# the answer to its first UDP datagram without a resend: its ARP request teaches the
# appliance's kernel its address, and the netlink mirror brings it to the workers before the
# backend's reply is back.
t_first_datagram_answered() {
  new_client_first_datagram 4 $VIP 7001 5 ' 198\.19\.1\.1[0-2]$'
}

if sluiced_start "$conf"; then
  check "a brand-new client's first datagram is answered without a resend (at least 4 of 5)" t_first_datagram_answered
  check "TCP VIP: 300 connections stay in the local zone (PreferClose)" t_tcp_vip_stays_in_zone
  check "UDP VIP: 300 flows stay in the local zone" t_udp_vip_stays_in_zone
  check "Maglev spreads 1,000 connections over the zone's 3 endpoints within 25%" t_maglev_spread_1000
  check "L4 counters: new flows counted" t_counters
  # Not inside check's subshell: sluiced must stay this shell's child across the restart.
  if t_same_config_same_choices >"$E2E_TMP/det.log" 2>&1; then
    echo "PASS: two sluiced processes with one config pick identical backends for 10,000 5-tuples"
    E2E_PASSED=$((E2E_PASSED + 1))
  else
    echo "FAIL: two sluiced processes with one config pick identical backends for 10,000 5-tuples"
    sed 's/^/    /' "$E2E_TMP/det.log"
    E2E_FAILED=$((E2E_FAILED + 1))
  fi
  check "sluicectl endpoints: 12 held TCP connections counted on their endpoints, 0 after close" t_endpoints_active_connections
  check "20 flows opened before 100 config applies keep their backends and complete" t_flows_survive_100_applies
  check "zone-a dies: outlier detection ejects it, new connections fail over to zone-b; failback" t_failover_and_failback
  check "maxConnections 2: the third connection is refused with RST, admitted after close" t_max_connections
  check "DSR: UDP VIPs over IPIP and GUE answered straight from the backends" t_dsr_ipip_and_gue
  check "a backend whose ARP failed is resolved again when it comes up" t_failed_neighbour_is_resolved_again
else
  check "sluiced starts" false
fi
e2e_finish
