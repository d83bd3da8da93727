#!/usr/bin/env bash
# The REST config port and sluicectl's live verbs against a running sluiced: apply, get,
# delete; invalid applies change nothing; If-Match; auth; persistence across restarts and
# kill -9; /metrics; and 100 applies while traffic crosses the appliance lose nothing.
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
MESH="$E2E_ROOT/tests/e2e/routes/mesh.yaml"

start() {
  sluiced_start "$conf" || { echo "FAIL: sluiced starts"; exit 1; }
}
start
echo "PASS: sluiced starts with the REST port"
E2E_PASSED=$((E2E_PASSED + 1))

t_token_created() { [ "$(stat -c %a "$E2E_TMP/token")" = 600 ] && [ "$(wc -c <"$E2E_TMP/token")" -ge 64 ]; }

t_apply_get() {
  local out
  out=$(ctl apply -f "$MESH") || { echo "$out"; return 1; }
  echo "$out"
  echo "$out" | grep -qx "VirtualService prod/api configured" &&
    echo "$out" | grep -qx "generation 1" || return 1
  out=$(ctl get vs -n prod)
  echo "$out"
  echo "$out" | grep -qE '^prod +api +VirtualService +api.example.com$' || return 1
  ctl get gw edge -n istio-system -o json | python3 -c '
import json, sys
items = json.load(sys.stdin)
assert items[0]["spec"]["servers"][0]["port"]["number"] == 80, items'
}

t_invalid_apply_changes_nothing() {
  cat >"$E2E_TMP/bad.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: prod}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/edge]
  http:
  - route:
    - destination: {host: reviews}
      weight: 101
YAML
  local out rc
  out=$(ctl apply -f "$E2E_TMP/bad.yaml" 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" = 1 ] || return 1
  echo "$out" | grep -qF "error: VirtualService prod/api: spec.http[0].route[0].weight: must be between 0 and 100" || return 1
  ctl status | grep -q '^generation: 1 ' || return 1
  # The stored VS is still the good one (7 rules).
  ctl get vs api -n prod -o json | python3 -c '
import json, sys
assert len(json.load(sys.stdin)[0]["spec"]["http"]) == 7'
}

t_if_match() {
  local out
  out=$(api POST /v1/apply -H 'If-Match: 0' -H 'Content-Type: application/yaml' --data-binary "@$MESH")
  echo "$out"
  [ "$(echo "$out" | tail -n 1)" = 409 ] || return 1
  out=$(api POST /v1/apply -H 'If-Match: 1' -H 'Content-Type: application/yaml' --data-binary "@$MESH")
  [ "$(echo "$out" | tail -n 1)" = 200 ]
}

t_auth() {
  local code
  code=$(ip netns exec "$(ns app)" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9180/v1/status)
  [ "$code" = 401 ] || { echo "no token: $code"; return 1; }
  code=$(ip netns exec "$(ns app)" curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' http://127.0.0.1:9180/v1/objects)
  [ "$code" = 401 ] || { echo "bad token: $code"; return 1; }
  code=$(ip netns exec "$(ns app)" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9180/healthz)
  [ "$code" = 200 ] || return 1
  local out rc
  out=$(ip netns exec "$(ns app)" env SLUICE_TOKEN=wrong-token-0123456789 "$SLUICECTL" status 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" = 1 ] && echo "$out" | grep -q "refused the token (401)" || return 1
  out=$(ctl --server http://127.0.0.1:9 status 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" = 1 ] && echo "$out" | grep -q "cannot reach http://127.0.0.1:9"
}

t_delete() {
  local out
  out=$(ctl delete vs shop -n shop) || { echo "$out"; return 1; }
  echo "$out" | grep -qx "VirtualService shop/shop deleted" || return 1
  ctl get vs shop -n shop >/dev/null 2>&1 && return 1
  ctl delete vs shop -n shop >/dev/null 2>&1 && return 1
  return 0
}

t_metrics_parse() {
  local m
  m=$(api GET /metrics) || return 1
  [ "$(echo "$m" | tail -n 1)" = 200 ] || return 1
  echo "$m" | sed '$d' | python3 -c '
import re, sys
sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\",?)*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$")
names = set()
for line in sys.stdin.read().splitlines():
    if not line or line.startswith("#"):
        continue
    assert sample.match(line), "bad sample line: " + line
    names.add(line.split("{")[0].split(" ")[0])
need = {"sluice_port_packets_total", "sluice_drops_total", "sluice_snapshot_generation",
        "envoy_cluster_upstream_rq_total"}
assert need <= names, need - names
'
}

t_readyz_status_endpoints() {
  [ "$(api GET /readyz | tail -n 1)" = 200 ] || return 1
  ctl status | grep -q '^ready: yes' || return 1
  ctl stats | grep -qE '^wan +[0-9]+' || return 1
  # No EndpointSlices in this mesh: the endpoints query answers 404 with a reason.
  local out
  out=$(ctl endpoints reviews.prod.svc.cluster.local --subset v1 2>&1)
  echo "$out" | grep -q "no endpoints for host reviews.prod.svc.cluster.local subset v1"
}

t_restart_restores() {
  local before
  before=$(ctl status | sed -n 's/^generation: \([0-9]*\).*/\1/p')
  sluiced_stop || return 1
  start || return 1
  ctl status | grep -q "^generation: $before " || { ctl status; return 1; }
  ctl get vs api -n prod >/dev/null
}

t_kill9_keeps_a_whole_generation() {
  local i pid gen objs
  # A burst of applies, each adding one uniquely named VirtualService; kill -9 mid-burst.
  (for i in $(seq 1 40); do
     printf 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: burst-%d, namespace: prod}\nspec:\n  hosts: [burst-%d.example.com]\n  gateways: [istio-system/edge]\n  http:\n  - directResponse: {status: 200}\n' "$i" "$i" |
       ctl apply -f - >/dev/null 2>&1
   done) &
  pid=$!
  sleep 0.6
  kill -9 "$(ip netns pids "$(ns app)" | while read -r p; do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = sluiced ] && echo "$p"; done | head -n 1)"
  wait "$pid" 2>/dev/null
  SLUICED_PID=""
  sleep 0.5
  start || return 1
  gen=$(ctl status | sed -n 's/^generation: \([0-9]*\).*/\1/p')
  objs=$(ctl get vs -A -o json | python3 -c 'import json,sys; print(sum(1 for o in json.load(sys.stdin) if o["metadata"]["name"].startswith("burst-")))')
  echo "after restart: generation $gen, $objs burst objects"
  # Every burst apply is one generation: the restored generation holds exactly the burst
  # objects applied before it (none torn, none half-applied).
  python3 - "$E2E_TMP/state/mesh.json" "$gen" "$objs" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
gen, objs = int(sys.argv[2]), int(sys.argv[3])
assert state["generation"] == gen, (state["generation"], gen)
names = sorted(int(o["metadata"]["name"][6:]) for o in state["objects"]
               if o["metadata"]["name"].startswith("burst-"))
assert names == list(range(1, len(names) + 1)), names
assert len(names) == objs
PY
}

t_applies_under_traffic() {
  # A TCP stream and pings cross the appliance while 100 applies publish 100 snapshots.
  mkdir -p "$E2E_TMP/www"
  head -c 4194304 /dev/urandom >"$E2E_TMP/www/blob"
  in_ns app python3 -m http.server --bind 198.18.0.1 --directory "$E2E_TMP/www" 8080 >/dev/null 2>&1 &
  local i
  for i in $(seq 1 50); do
    in_ns app bash -c 'exec 3<>/dev/tcp/198.18.0.1/8080' 2>/dev/null && break
    sleep 0.1
  done
  in_ns client ping -q -c 150 -i 0.04 -W 2 198.18.0.1 >"$E2E_TMP/ping.out" 2>&1 &
  local ping_pid=$!
  in_ns client curl -sS -m 60 --limit-rate 400k -o "$E2E_TMP/blob.out" http://198.18.0.1:8080/blob \
    >"$E2E_TMP/curl.out" 2>&1 &
  local curl_pid=$!
  local fails=0
  for i in $(seq 1 100); do
    ctl apply -f "$MESH" >/dev/null 2>&1 || fails=$((fails + 1))
  done
  wait "$ping_pid"
  wait "$curl_pid"
  local crc=$?
  cat "$E2E_TMP/ping.out"
  echo "apply failures: $fails, curl exit: $crc"
  [ "$fails" = 0 ] && [ "$crc" = 0 ] && cmp "$E2E_TMP/www/blob" "$E2E_TMP/blob.out" &&
    grep -q ' 0% packet loss' "$E2E_TMP/ping.out"
}

check "the API token file is created with mode 0600" t_token_created
check "sluicectl apply and get" t_apply_get
check "an invalid apply exits 1 with the field path and changes nothing" t_invalid_apply_changes_nothing
check "If-Match: a stale generation answers 409" t_if_match
check "401 without the token; sluicectl reports a bad token or an unreachable server" t_auth
check "sluicectl delete KIND NAME" t_delete
check "/metrics scrapes and parses" t_metrics_parse
check "/readyz, status, stats, endpoints" t_readyz_status_endpoints
t_restart_restores >"$E2E_TMP/restart.out" 2>&1; rc=$?
if [ "$rc" = 0 ]; then echo "PASS: a restart restores the last generation"; E2E_PASSED=$((E2E_PASSED + 1));
else echo "FAIL: a restart restores the last generation"; sed 's/^/    /' "$E2E_TMP/restart.out"; E2E_FAILED=$((E2E_FAILED + 1)); fi
t_kill9_keeps_a_whole_generation >"$E2E_TMP/kill9.out" 2>&1; rc=$?
if [ "$rc" = 0 ]; then echo "PASS: kill -9 during a burst of applies, then restart: a whole generation"; E2E_PASSED=$((E2E_PASSED + 1));
else echo "FAIL: kill -9 during a burst of applies, then restart: a whole generation"; sed 's/^/    /' "$E2E_TMP/kill9.out"; E2E_FAILED=$((E2E_FAILED + 1)); fi
cat "$E2E_TMP/kill9.out" | grep "after restart" | sed 's/^/    /'
check "100 applies while a TCP stream and pings cross: no loss, no reset" t_applies_under_traffic
sluiced_stop
check "SIGTERM: exit 0" test $? = 0
e2e_finish
