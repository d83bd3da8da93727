#!/usr/bin/env bash
# Resilience end to end (issue 7's scenarios), through the whole appliance: a client namespace
# sends HTTP to 198.18.0.1:80 (and TCP to the L4 VIP 198.18.20.1:7000); real HTTP backends in
# the zone namespaces can be told to fail (500), to fail their health check (503 on /healthz),
# and log every request they receive.
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
TOOL="$E2E_ROOT/tests/e2e/l7_tool.py"
MESH="$E2E_ROOT/tests/e2e/l7/resilience.yaml"
GW=198.18.0.1
STATE="$E2E_TMP/backends"
mkdir -p "$STATE"
: >"$STATE/requests"
sed -i "s|^  files = \[ \];|  files = [ \"$MESH\" ];|" "$conf"

in_ns be-a ip addr add 198.19.1.11/24 dev eth0
in_ns be-a ip addr add 198.19.1.12/24 dev eth0
in_ns be-a ip addr add 198.19.1.13/24 dev eth0
in_ns be-b ip addr add 198.19.2.11/24 dev eth0
in_ns be-c ip addr add 198.19.3.11/24 dev eth0
start_backend() { # ZONE NAME ADDR PORT
  in_ns "be-$1" python3 "$TOOL" serve "$2" "$3" "$4" 600 /dev/null "$STATE" >/dev/null 2>&1 &
}
start_backend a od-0 198.19.1.10 8080
start_backend a od-1 198.19.1.11 8080
start_backend a od-2 198.19.1.12 8080
start_backend a od-3 198.19.1.13 8080
start_backend b cb 198.19.2.10 8080
start_backend b web 198.19.2.11 8080
start_backend c hc-0 198.19.3.10 7000
start_backend c hc-1 198.19.3.11 7000

get() { in_ns client python3 "$TOOL" get $GW 80 "$@"; }
requests_of() { grep -c "^$1 " "$STATE/requests"; }

t_outlier_ejection() {
  local out n before after
  touch "$STATE/od-3.fail"
  # Round robin over four replicas: od-3 answers 500 to every fourth request; its fifth
  # consecutive error ejects it.
  out=$(get od.example.com /od 40)
  echo "$out" | sort | uniq -c
  n=$(echo "$out" | grep -c '^500 od-3')
  [ "$n" = 5 ] || { echo "od-3 failed $n times before its ejection, want 5"; return 1; }
  # Ejected for baseEjectionTime (4 s): it receives nothing meanwhile.
  before=$(requests_of od-3)
  get od.example.com /od 40 >/dev/null
  after=$(requests_of od-3)
  echo "od-3 requests while ejected: $((after - before))"
  [ "$after" = "$before" ] || return 1
  ctl endpoints od.rs.svc.cluster.local | tee /dev/stderr | grep 198.19.1.13 | grep -qi eject || return 1
  # Re-admitted after the ejection time (healthy again: the flag is gone).
  rm -f "$STATE/od-3.fail"
  sleep 4.5
  out=$(get od.example.com /od 40)
  echo "after re-admission: $(echo "$out" | grep -c '^200 od-3') answers from od-3"
  [ "$(echo "$out" | grep -c '^200 od-3')" -ge 5 ]
}

t_outlier_max_ejection_percent() {
  local out ejected
  sleep 5 # the previous case's ejection multiplier decays
  touch "$STATE/od-1.fail" "$STATE/od-2.fail" "$STATE/od-3.fail"
  get od.example.com /od 120 >/dev/null
  ejected=$(ctl endpoints od.rs.svc.cluster.local | grep -ci eject)
  echo "ejected with three of four failing: $ejected"
  rm -f "$STATE"/od-*.fail
  # maxEjectionPercent 50: at most two of four.
  [ "$ejected" -ge 1 ] && [ "$ejected" -le 2 ]
}

t_circuit_breaker() {
  local out uo ok metric
  # Three concurrent clients, each request held 500 ms by the backend: one holds the
  # only connection, one waits, the rest overflow.
  out=$(in_ns client python3 "$TOOL" par $GW 80 cb.example.com /sleep/500 3 4)
  echo "$out" | sort | uniq -c
  uo=$(echo "$out" | grep -c '^503 true')
  ok=$(echo "$out" | grep -c '^200 ')
  [ "$uo" -ge 1 ] && [ "$ok" -ge 4 ] && [ $((uo + ok)) = 12 ] || return 1
  metric=$(api GET /metrics | grep '^envoy_cluster_upstream_rq_pending_overflow{envoy_cluster_name="outbound|8080||cb.rs.svc.cluster.local"}')
  echo "$metric"
  [ "$(echo "$metric" | awk '{print $2}')" = "$uo" ]
}

t_fault_abort_half() {
  local out n
  out=$(get fault.example.com /f 400 "x-fault: abort")
  n=$(echo "$out" | grep -c '^555 ')
  echo "555 answers: $n of 400 (200s: $(echo "$out" | grep -c '^200 '))"
  # 50% of 400: sd 10; within 4 sd.
  [ "$n" -ge 160 ] && [ "$n" -le 240 ] && [ $((n + $(echo "$out" | grep -c '^200 '))) = 400 ]
}

t_fault_delay_all() {
  local t0 t1 out
  t0=$(date +%s%N)
  out=$(get fault.example.com /f 3 "x-fault: delay")
  t1=$(date +%s%N)
  echo "$out"; echo "3 requests took $(((t1 - t0) / 1000000)) ms"
  [ "$(echo "$out" | grep -c '^200 ')" = 3 ] && [ $(((t1 - t0) / 1000000)) -ge 3000 ]
}

t_timeout_504() {
  local t0 t1 code
  t0=$(date +%s%N)
  code=$(in_ns client curl -s -o /dev/null -m 10 -w '%{http_code}' -H 'Host: front.example.com' "http://$GW/t")
  t1=$(date +%s%N)
  echo "code $code after $(((t1 - t0) / 1000000)) ms"
  [ "$code" = 504 ] && [ $(((t1 - t0) / 1000000)) -ge 1900 ] && [ $(((t1 - t0) / 1000000)) -lt 2900 ]
}

t_retries_hide_flaky() {
  local out before after
  before=$(requests_of web)
  out=$(get retry.example.com /flaky 20)
  after=$(requests_of web)
  echo "$out" | sort | uniq -c
  echo "backend attempts: $((after - before))"
  # Every other attempt fails with 503; retryOn 5xx hides all of them.
  [ "$(echo "$out" | grep -c '^200 web')" = 20 ] && [ $((after - before)) -ge 30 ]
}

t_retries_bounded() {
  local out before after
  before=$(requests_of web)
  out=$(get retry.example.com /status/503 1)
  after=$(requests_of web)
  echo "$out; attempts: $((after - before))"
  # attempts: 3 -> the first try and three retries, then the 503 reaches the client.
  [ "$out" = "503 web" ] && [ $((after - before)) = 4 ]
}

t_active_health_check() {
  local out l4 i
  touch "$STATE/hc-0.unhealthy"
  sleep 2.2 # two intervals
  out=$(get hc.example.com / 20)
  echo "L7: $(echo "$out" | sort | uniq -c | tr '\n' ' ')"
  [ "$(echo "$out" | grep -c '^200 hc-1')" = 20 ] || return 1
  # New L4 flows avoid it too (the VIP is full-NAT on the workers).
  l4=""
  for i in $(seq 1 10); do
    l4="$l4 $(in_ns client curl -s -m 5 -D - -o /dev/null "http://198.18.20.1:7000/" | tr -d '\r' | sed -n 's/^x-backend: //p')"
  done
  echo "L4:$l4"
  [ "$(echo "$l4" | tr ' ' '\n' | grep -c '^hc-1$')" = 10 ] || return 1
  # Back in the pool once its check passes again.
  rm -f "$STATE/hc-0.unhealthy"
  sleep 2.2
  out=$(get hc.example.com / 40)
  echo "after recovery: $(echo "$out" | sort | uniq -c | tr '\n' ' ')"
  [ "$(echo "$out" | grep -c '^200 hc-0')" -ge 1 ]
}

if ! sluiced_start "$conf"; then
  echo "FAIL: sluiced did not start"
  exit 1
fi
for _ in $(seq 1 50); do
  in_ns client curl -s -o /dev/null -m 1 -H 'Host: retry.example.com' "http://$GW/" && break
  sleep 0.2
done

check "outlier detection ejects after 5 errors, holds, re-admits" t_outlier_ejection
check "maxEjectionPercent 50 bounds ejections" t_outlier_max_ejection_percent
check "circuit breaker: 503 UO with x-envoy-overloaded, counted" t_circuit_breaker
check "fault abort 50% answers 555 within tolerance" t_fault_abort_half
check "fault delay 100% delays every request by 1 s" t_fault_delay_all
check "route timeout 2 s over a 3 s delay answers 504" t_timeout_504
check "retries on 5xx hide a flaky backend" t_retries_hide_flaky
check "retry attempts bound the tries" t_retries_bounded
check "active health check removes a 503 /healthz from L7 and L4" t_active_health_check
stats_refresh && grep '^stats: l7' "$SLUICED_LOG" | tail -n 1
sluiced_stop
e2e_finish
