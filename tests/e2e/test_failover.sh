#!/usr/bin/env bash
# The seeds' failover scenarios end to end (000, 003): replicas in zone-a and zone-b of
# region-1 (network-1) and zone-c of region-2 (network-2); the appliance is in zone-a. A
# zone "dies" when its servers are killed (connections refused) and "returns" when they are
# started again. Prints the time from a zone's death to the last failed client request.
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
TOOL="$E2E_ROOT/tests/e2e/l7_tool.py"
MESH="$E2E_ROOT/tests/e2e/l7/failover.yaml"
GW=198.18.0.1
sed -i "s|^  files = \[ \];|  files = [ \"$MESH\" ];|" "$conf"

in_ns be-a ip addr add 198.19.1.11/24 dev eth0
in_ns be-b ip addr add 198.19.2.11/24 dev eth0
start_backend() { # ZONE NAME ADDR
  in_ns "be-$1" python3 "$TOOL" serve "$2" "$3" 8080 600 >/dev/null 2>&1 &
}
start_zone() {
  case $1 in
  a) start_backend a a-0 198.19.1.10; start_backend a a-1 198.19.1.11 ;;
  b) start_backend b b-0 198.19.2.10; start_backend b b-1 198.19.2.11 ;;
  c) start_backend c c-0 198.19.3.10 ;;
  esac
  sleep 0.3
}
kill_zone() { ip netns pids "$(ns "be-$1")" | xargs -r kill; sleep 0.2; }
start_zone a
start_zone b
start_zone c

get() { in_ns client python3 "$TOOL" get $GW 80 "$@"; }
zones_of() { awk '{print $2}' | cut -c1 | sort | uniq -c | tr '\n' ' '; }

t_default_prefers_network() {
  local out
  out=$(get dflt.example.com / 200)
  echo "default mode: $(echo "$out" | zones_of)"
  # PreferNetwork (the default toward backends): zones a and b (network-1), never c.
  [ "$(echo "$out" | grep -c ' a-')" -gt 0 ] && [ "$(echo "$out" | grep -c ' b-')" -gt 0 ] &&
    [ "$(echo "$out" | grep -c ' c-')" = 0 ] && [ "$(echo "$out" | grep -c '^200 ')" = 200 ]
}

t_prefer_close_stays_in_zone() {
  local out
  out=$(get close.example.com / 100)
  echo "PreferClose: $(echo "$out" | zones_of)"
  [ "$(echo "$out" | grep -c '^200 a-')" = 100 ]
}

t_zone_death_and_failback() {
  local log="$E2E_TMP/watch.txt" t_kill t_back last_fail fails n_b after
  in_ns client python3 "$TOOL" watch $GW 80 close.example.com / 14 20 >"$log" &
  local w=$!
  sleep 1.5
  t_kill=$(date +%s%3N)
  kill_zone a
  sleep 3
  t_back=$(date +%s%3N)
  start_zone a
  wait "$w"
  fails=$(awk '$2 != 200' "$log" | wc -l)
  last_fail=$(awk '$2 != 200 {t=$1} END {print t+0}' "$log")
  if [ "$fails" -gt 0 ]; then
    echo "zone death to last failed client request: $((last_fail - t_kill)) ms ($fails failed)" |
      tee "$E2E_TMP/measure"
  else
    echo "zone death to last failed client request: none failed (retries moved them to zone-b)" |
      tee "$E2E_TMP/measure"
  fi
  n_b=$(awk -v k="$t_kill" -v b="$t_back" '$1 > k + 200 && $1 < b && $3 ~ /^b-/' "$log" | wc -l)
  echo "while zone-a was down: $n_b requests answered by zone-b, $(awk -v k="$t_kill" -v b="$t_back" '$1 > k && $1 < b && $3 ~ /^c-/' "$log" | wc -l) by zone-c"
  # Fail back once zone-a is back and its ejection ended (baseEjectionTime 3 s, doubled if
  # it was re-admitted before its servers were up and ejected again).
  after=$(awk -v b="$t_back" '$1 > b + 7000 {print $3}' "$log" | cut -c1 | sort | uniq -c | tr '\n' ' ')
  echo "after zone-a returned (+7 s): $after"
  [ "$fails" = 0 ] && [ "$n_b" -gt 10 ] &&
    [ "$(awk -v b="$t_back" '$1 > b + 7000 && $3 ~ /^a-/' "$log" | wc -l)" -gt 0 ] &&
    [ "$(awk -v b="$t_back" '$1 > b + 7000 && $3 !~ /^a-/' "$log" | wc -l)" = 0 ]
}

t_prefer_network_crosses_when_unhealthy() {
  local out log="$E2E_TMP/watch2.txt"
  out=$(get net.example.com / 100)
  echo "PreferNetwork, all up: $(echo "$out" | zones_of)"
  [ "$(echo "$out" | grep -c ' c-')" = 0 ] || return 1
  kill_zone a
  kill_zone b
  out=$(get net.example.com / 50)
  echo "PreferNetwork, network-1 down: $(echo "$out" | zones_of)"
  start_zone a
  start_zone b
  [ "$(echo "$out" | grep -c '^200 c-')" -ge 45 ]
}

t_failover_priority_overrides() {
  local out
  sleep 3.5 # ejections of the previous case end
  # failoverPriority [region, zone] overrides PreferNetwork: zone-a first (not a and b).
  out=$(get prio.example.com / 100)
  echo "failoverPriority: $(echo "$out" | zones_of)"
  [ "$(echo "$out" | grep -c '^200 a-')" = 100 ]
}

if ! sluiced_start "$conf"; then
  echo "FAIL: sluiced did not start"
  exit 1
fi
for _ in $(seq 1 50); do
  in_ns client curl -s -o /dev/null -m 1 -H 'Host: dflt.example.com' "http://$GW/" && break
  sleep 0.2
done

check "default mode prefers the local network (zones a, b; not c)" t_default_prefers_network
check "PreferClose keeps traffic in zone-a" t_prefer_close_stays_in_zone
check "zone-a dies: zone-b answers, no client error (retries); zone-a returns: fail back" t_zone_death_and_failback
[ -f "$E2E_TMP/measure" ] && sed 's/^/MEASURE: /' "$E2E_TMP/measure"
check "PreferNetwork crosses to network-2 only when network-1 is down" t_prefer_network_crosses_when_unhealthy
check "DestinationRule failoverPriority overrides the annotation" t_failover_priority_overrides
sluiced_stop
e2e_finish
