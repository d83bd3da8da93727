#!/usr/bin/env bash
# Two worker lcores, two RX/TX queues per port (af_packet fanout spreads flows across the
# queues the way RSS does on a NIC): traffic still crosses intact, and both workers carry
# part of it.
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
sed -i 's|"--lcores", "(0-2)@(0-1)"|"--lcores", "(0-3)@(0-1)"|; s|workers  = \[ 1 \];|workers  = [ 1, 2 ];|;
        s|slowpath = 2;|slowpath = 3;|; s|qpairs=1|qpairs=2|; s|queues    = 1;|queues    = 2;|' "$conf"
sed -i "s|^  files = \[ \];|  files = [ \"$E2E_ROOT/tests/e2e/l4/mq.yaml\" ];|" "$conf"
TOOL="$E2E_ROOT/tests/e2e/l4_tool.py"
in_ns be-a python3 "$TOOL" serve mq 198.19.1.10 7000 7001 300 >/dev/null 2>&1 &

t_traffic_crosses() {
  in_ns client ping -c 4 -i 0.2 -W 2 198.18.0.1 | grep -q ' 4 received' || return 1
  mkdir -p "$E2E_TMP/www"
  head -c 262144 /dev/urandom >"$E2E_TMP/www/blob"
  in_ns app python3 -m http.server --bind 198.18.0.1 --directory "$E2E_TMP/www" 8080 \
    >/dev/null 2>&1 &
  local i
  for i in $(seq 1 50); do
    in_ns app bash -c 'exec 3<>/dev/tcp/198.18.0.1/8080' 2>/dev/null && break
    sleep 0.1
  done
  # 12 connections: 12 source ports, spread over both queues by the flow hash.
  for i in $(seq 1 12); do
    in_ns client curl -sS -m 10 -o "$E2E_TMP/out.$i" http://198.18.0.1:8080/blob || return 1
    cmp "$E2E_TMP/www/blob" "$E2E_TMP/out.$i" || return 1
  done
}

t_both_workers_carry_traffic() {
  stats_refresh || return 1
  local w1 w2
  w1=$(grep '^stats: lcore=1 ' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n 's/^rx_packets=//p')
  w2=$(grep '^stats: lcore=2 ' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n 's/^rx_packets=//p')
  echo "worker lcore 1 rx=$w1, worker lcore 2 rx=$w2"
  [ "${w1:-0}" -gt 0 ] && [ "${w2:-0}" -gt 0 ]
}

# Started in this shell (not inside check's subshell): sluiced must stay our child.
if grep -q 'workers  = \[ 1, 2 \]' "$conf" && grep -q 'qpairs=2' "$conf" && sluiced_start "$conf"; then
  echo "PASS: sluiced starts with two workers and two queues per port"
  E2E_PASSED=$((E2E_PASSED + 1))
else
  echo "FAIL: sluiced starts with two workers and two queues per port"
  exit 1
fi
check "ping and 12 HTTP transfers cross intact" t_traffic_crosses
check "both worker lcores carry part of the traffic" t_both_workers_carry_traffic

# L4 with two workers: each worker owns half of the SNAT ports; a backend's reply that the
# NIC (af_packet fanout here) hands to the other worker is passed to the owner over a ring.
t_l4_replies_reach_their_owner() {
  local out="$E2E_TMP/mq.txt" red
  in_ns client python3 "$TOOL" tcp 198.18.11.1 7000 200 0 3 >"$out"
  [ "$(grep -c ' mq$' "$out")" = 200 ] || { sort "$out" | awk '{print $2, $3}' | uniq -c | head; return 1; }
  stats_refresh || return 1
  grep '^stats: l4' "$SLUICED_LOG" | tail -n 1
  red=$(grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n 's/^redirected_in=//p')
  [ "${red:-0}" -gt 0 ]
}
check "L4 with two workers: 200 connections complete; replies redirected to their owner" t_l4_replies_reach_their_owner

# /v1/endpoints sums the open TCP connections over both workers (flows land on either, by
# the fanout hash): 10 held through the VIP show as 10 on its one endpoint, then 0.
# mq_active: the endpoint's active_connections from /v1/endpoints.
mq_active() {
  api GET "/v1/endpoints?host=mq.l4.svc.cluster.local" | head -n -1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["endpoints"][0]["active_connections"])'
}
t_active_connections_over_two_workers() {
  local hold="$E2E_TMP/hold-mq.go" out="$E2E_TMP/hold-mq.out" n i
  rm -f "$hold"
  in_ns client python3 "$TOOL" hold 198.18.11.1 7000 10 "$hold" 30 >"$out" &
  local pid=$!
  for i in $(seq 1 50); do grep -q '^opened' "$out" 2>/dev/null && break; sleep 0.2; done
  n=$(mq_active)
  touch "$hold"
  wait $pid
  grep -E '^(opened|held)' "$out"
  echo "active_connections while held: $n"
  grep -q '^held 10 ok 10$' "$out" && [ "$n" = 10 ] || return 1
  for i in $(seq 1 25); do
    n=$(mq_active)
    [ "$n" = 0 ] && return 0
    sleep 0.2
  done
  echo "after close: $n"
  return 1
}
check "two workers: /v1/endpoints counts 10 held connections (summed over workers), then 0" \
  t_active_connections_over_two_workers

# Client-side ICMP errors with two workers: the fanout hash gives every error from one client
# to one worker (an ICMP error has no ports), while the client's connections are spread over
# both. An error about another worker's flow goes round to it, so all 10 are translated for
# their backends; before, only those the receiving worker owned were.
l4_stat() { grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
t_icmp_errors_reach_their_flow() {
  local hold="$E2E_TMP/hold-icmp.go" out="$E2E_TMP/hold-icmp.out" before after i
  stats_refresh || return 1
  before=$(l4_stat icmp_translated)
  rm -f "$hold"
  in_ns client python3 "$TOOL" hold 198.18.11.1 7000 10 "$hold" 30 1300 >"$out" &
  local pid=$!
  for i in $(seq 1 50); do grep -q '^icmp_sent' "$out" 2>/dev/null && break; sleep 0.2; done
  for i in $(seq 1 20); do # bounded: until all 10 are counted, at most ~5 s
    stats_refresh || return 1
    after=$(l4_stat icmp_translated)
    [ $((${after:-0} - ${before:-0})) -ge 10 ] && break
    sleep 0.25
  done
  touch "$hold"
  wait $pid
  grep -E '^(opened|icmp_sent|held)' "$out"
  grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | grep -E '^(icmp_translated|redirected_in|redirected_out)='
  echo "icmp_translated: ${before:-0} -> ${after:-0}"
  grep -q '^icmp_sent 10$' "$out" && grep -q '^held 10 ok 10$' "$out" &&
    [ $((${after:-0} - ${before:-0})) = 10 ]
}
check "two workers: 10 client-side ICMP errors, all translated by the worker owning the flow" \
  t_icmp_errors_reach_their_flow

# rte_flow steering of the replies (l4.flow_steering = "auto", the default): af_packet has no
# rte_flow, so the lan port (the one with an SNAT address) falls back to the software rings,
# says so once in the startup log with the driver's refusal, and /v1/status and
# `sluicectl status` report it. (Rules on a real NIC cannot be tested without one.)
# steering_status PORT MODE REASON-SUBSTRING: what /v1/status says about PORT.
steering_status() {
  local body
  body=$(api GET /v1/status) || return 1
  printf '%s\n' "$body" | head -n -1 | python3 -c '
import json, sys
port, mode, reason = sys.argv[1:4]
p = {p["name"]: p for p in json.load(sys.stdin)["ports"]}[port]
print(port, p["flow_steering"], p["flow_rules"], p["flow_steering_reason"])
sys.exit(0 if p["flow_steering"] == mode and p["flow_rules"] == 0 and
         reason in p["flow_steering_reason"] else 1)' "$1" "$2" "$3"
}
t_steering_falls_back_to_software() {
  grep 'port lan: flow steering software: .*rte_flow_validate refused rule 1 of' "$SLUICED_LOG" ||
    { grep 'flow steering' "$SLUICED_LOG"; return 1; }
  [ "$(grep -c 'port lan: flow steering' "$SLUICED_LOG")" = 1 ] || return 1
  steering_status lan software "rte_flow_validate refused rule 1 of 20" || return 1
  steering_status wan software "no SNAT addresses" || return 1
  api GET /metrics | grep -x 'sluice_port_flow_rules{port="lan"} 0' || return 1
  ctl status | grep -A1 '^port lan' | grep 'flow steering: software (rte_flow_validate refused'
}
check "flow steering on af_packet: the NIC refuses rte_flow; software redirection, reported" \
  t_steering_falls_back_to_software
sluiced_stop
check "SIGTERM with two workers: exit 0" test $? = 0

# l4.flow_steering = "off": no rule is asked for, both ports report software with that reason,
# and the rings alone still bring every reply to its owner.
sed -i 's|flow_steering = "auto";|flow_steering = "off";|' "$conf"
if grep -q 'flow_steering = "off";' "$conf" && sluiced_start "$conf"; then
  echo "PASS: sluiced starts with l4.flow_steering = \"off\""
  E2E_PASSED=$((E2E_PASSED + 1))
else
  echo "FAIL: sluiced starts with l4.flow_steering = \"off\""
  exit 1
fi
t_steering_off() {
  ! grep 'rte_flow_validate' "$SLUICED_LOG" || return 1
  steering_status lan software 'l4.flow_steering = "off"' || return 1
  steering_status wan software 'l4.flow_steering = "off"' || return 1
  local out="$E2E_TMP/mq-off.txt" red
  in_ns client python3 "$TOOL" tcp 198.18.11.1 7000 100 0 3 >"$out"
  [ "$(grep -c ' mq$' "$out")" = 100 ] || return 1
  stats_refresh || return 1
  red=$(grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n 's/^redirected_in=//p')
  echo "redirected_in=$red"
  [ "${red:-0}" -gt 0 ]
}
check "flow_steering off: software reported; 100 connections complete over the rings" \
  t_steering_off
sluiced_stop
check "SIGTERM: exit 0" test $? = 0
e2e_finish
