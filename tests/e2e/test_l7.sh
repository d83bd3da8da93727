#!/usr/bin/env bash
# The L7 engine end to end: a client namespace sends HTTP to the appliance's address
# (198.18.0.1:80); the request crosses the DPDK port, the exception path and the kernel into
# sluiced's L7 engine on the slow-path lcore, which routes it and proxies it over kernel
# sockets (back through the exception path and DPDK) to real HTTP servers in the zone
# namespaces. Every backend reports who answered and counts its connections.
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
TOOL="$E2E_ROOT/tests/e2e/l7_tool.py"
MESH="$E2E_ROOT/tests/e2e/l7/mesh.yaml"
GW=198.18.0.1
# TLS: a CA, the gateway's certificate for www.example.com, and a backend certificate for
# the passthrough service (the client must see the backend's, proving no termination).
CERTS="$E2E_TMP/certs"
mkdir -p "$CERTS"
mkcert() { # NAME CN
  openssl req -new -newkey rsa:2048 -nodes -keyout "$CERTS/$1.key" -subj "/CN=$2" \
    -addext "subjectAltName=DNS:$2" -out "$CERTS/$1.csr" 2>/dev/null &&
    openssl x509 -req -in "$CERTS/$1.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
      -CAcreateserial -days 2 -copy_extensions copy -out "$CERTS/$1.crt" 2>/dev/null
}
openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$CERTS/ca.key" -subj "/CN=sluice e2e CA" \
  -days 2 -out "$CERTS/ca.crt" 2>/dev/null
mkcert gw www.example.com
mkcert pass pass.example.com
TLSMESH="$E2E_TMP/tls.yaml"
sed "s|@CERTS@|$CERTS|g" "$E2E_ROOT/tests/e2e/l7/tls.yaml.in" >"$TLSMESH"
sed -i "s|^  files = \[ \];|  files = [ \"$MESH\", \"$TLSMESH\" ];|" "$conf"
# The access log goes to a file the checks read.
sed -i "s|^  access_log      = \"\";|  access_log      = \"$E2E_TMP/access.log\";|" "$conf"
grep -q "access.log" "$conf" || { echo "FAIL: cannot set l7.access_log"; exit 1; }

# Name resolution inside the appliance namespace (ip netns exec bind-mounts these over
# /etc): web-dns.test is a zone-b backend; every other name fails at once (the resolver is
# on loopback, where nothing answers: no query leaves the namespace).
mkdir -p "/etc/netns/$(ns app)"
printf '127.0.0.1 localhost\n198.19.2.10 web-dns.test\n' >"/etc/netns/$(ns app)/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$(ns app)/resolv.conf"

in_ns be-a ip addr add 198.19.1.11/24 dev eth0
in_ns be-b ip addr add 198.19.2.11/24 dev eth0
CONNS="$E2E_TMP/conns"
: >"$CONNS"
start_backend() { # ZONE NAME ADDR
  in_ns "be-$1" python3 "$TOOL" serve "$2" "$3" 8080 600 "$CONNS" >/dev/null 2>&1 &
}
start_backend a v1-a 198.19.1.10
start_backend a v1-b 198.19.1.11
start_backend b v2-a 198.19.2.10
start_backend b v2-b 198.19.2.11

# The passthrough backend: a TLS server with its own certificate.
in_ns be-b openssl s_server -accept 198.19.2.10:9443 -cert "$CERTS/pass.crt" \
  -key "$CERTS/pass.key" -www -quiet >/dev/null 2>&1 &
# The origination backend: a TLS web server that the route reaches over TLS.
in_ns be-b openssl s_server -accept 198.19.2.11:9444 -cert "$CERTS/pass.crt" \
  -key "$CERTS/pass.key" -www -quiet >/dev/null 2>&1 &

client_get() { in_ns client python3 "$TOOL" get $GW 80 "$@"; }
curl_c() { in_ns client curl -sS -m 10 "$@"; }

t_header_routing() {
  local out
  out=$(client_get www.example.com / 20)
  echo "$out" | sort | uniq -c
  [ "$(echo "$out" | grep -c '^200 v1-')" = 20 ] || return 1
  out=$(client_get www.example.com / 20 "end-user: jason")
  echo "$out" | sort | uniq -c
  [ "$(echo "$out" | grep -c '^200 v2-a')" = 20 ]
}

t_weights_80_20() {
  local out v1 v2
  out=$(client_get www.example.com /split 2000)
  v1=$(echo "$out" | grep -c '^200 v1-')
  v2=$(echo "$out" | grep -c '^200 v2-')
  echo "v1=$v1 v2=$v2"
  # 80/20 within +-3 points over 2,000 requests.
  [ $((v1 + v2)) = 2000 ] && [ "$v1" -ge 1540 ] && [ "$v1" -le 1660 ]
}

t_rewrite() {
  local body
  body=$(curl_c -H 'Host: www.example.com' "http://$GW/api/v1/users?id=7")
  echo "$body" | head -n 3
  echo "$body" | grep -q '^v1-. GET /v1/users?id=7$'
}

t_redirect() {
  local out
  out=$(curl_c -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: www.example.com' \
    "http://$GW/old")
  echo "$out"
  [ "$out" = "301 http://www.example.com/new" ]
}

t_direct_response() {
  local out
  out=$(curl_c -w '%{http_code}' -H 'Host: www.example.com' "http://$GW/healthz")
  echo "$out"
  [ "$out" = "sluice ok
200" ]
}

t_unclaimed_host_404() {
  local out
  out=$(curl_c -o /dev/null -w '%{http_code}' -H 'Host: nobody.example.com' "http://$GW/")
  echo "$out"
  [ "$out" = 404 ]
}

t_forwarded_headers() {
  local body
  body=$(curl_c -H 'Host: www.example.com' -H 'x-envoy-force-trace: 1' "http://$GW/whoami")
  echo "$body"
  echo "$body" | grep -q '^x-forwarded-for: 198.18.0.2$' &&
    echo "$body" | grep -q '^x-forwarded-proto: http$' &&
    echo "$body" | grep -Eq '^x-request-id: [0-9a-f-]{36}$' &&
    ! echo "$body" | grep -q 'x-envoy-force-trace'
}

t_consistent_hash_sticky() {
  local u first out distinct=""
  for u in alice bob carol dave erin frank; do
    out=$(client_get sticky.example.com / 10 "x-user: $u")
    first=$(echo "$out" | head -n 1)
    # Every request of one user lands on one backend.
    [ "$(echo "$out" | sort -u | wc -l)" = 1 ] || { echo "$u: $out"; return 1; }
    echo "$u -> $first"
    distinct="$distinct
$first"
  done
  # Six users do not all share one backend.
  [ "$(echo "$distinct" | sed '/^$/d' | sort -u | wc -l)" -ge 2 ]
}

t_keepalive_reuse() {
  local before after
  before=$(wc -l <"$CONNS")
  client_get www.example.com /ka 200 >/dev/null
  after=$(wc -l <"$CONNS")
  echo "upstream connections opened for 200 requests: $((after - before))"
  # One client connection, one backend picked per request among two v1 endpoints: the
  # pooled connections are reused, so at most a couple are opened.
  [ $((after - before)) -le 2 ]
}

# ep_l7_sums: "REQUESTS L7_CONNECTIONS CONNECTIONS" summed over the endpoints of a
# /v1/endpoints answer on stdin (sluicectl -o json).
ep_l7_sums() {
  python3 -c '
import json, sys
es = json.load(sys.stdin)["endpoints"]
print(sum(e["active_requests"] for e in es), sum(e["l7_connections"] for e in es),
      sum(e["active_connections"] for e in es))
'
}

# sluicectl endpoints shows the L7 engine's outstanding requests and upstream connections:
# 6 concurrent requests that the v1 backends hold for 1.5 s count 6 on v1's endpoints (each
# on an upstream connection of its own), and none once answered.
t_endpoints_active_requests() {
  local out="$E2E_TMP/par-ep.txt" rq=0 cx=0 all=0 i pid
  in_ns client python3 "$TOOL" par $GW 80 www.example.com /sleep/1500 6 1 >"$out" &
  pid=$!
  for i in $(seq 1 40); do
    read -r rq cx all < <(ctl -o json endpoints web.l7.svc.cluster.local --subset v1 | ep_l7_sums)
    [ "$rq" = 6 ] && break
    sleep 0.05
  done
  ctl endpoints web.l7.svc.cluster.local --subset v1
  echo "while held: requests $rq, L7 connections $cx, connections $all"
  wait $pid
  cat "$out"
  [ "$(grep -c '^200 ' "$out")" = 6 ] || return 1
  [ "$rq" = 6 ] && [ "$cx" -ge 6 ] && [ "$all" = "$cx" ] || return 1
  for i in $(seq 1 20); do
    read -r rq cx all < <(ctl -o json endpoints web.l7.svc.cluster.local --subset v1 | ep_l7_sums)
    [ "$rq" = 0 ] && { echo "answered: requests 0, L7 connections $cx (pooled)"; return 0; }
    sleep 0.1
  done
  echo "after: requests $rq"
  return 1
}

t_websocket_echo() {
  local out
  out=$(in_ns client python3 "$TOOL" ws $GW 80 www.example.com "hello-through-sluice")
  echo "$out"
  [ "$out" = "hello-through-sluice" ]
}

t_bad_request_400() {
  local out
  out=$(in_ns client bash -c "printf 'POST / HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' | timeout 5 nc -q 2 $GW 80 | head -n 1")
  echo "$out"
  [[ "$out" == "HTTP/1.1 400 Bad Request"* ]]
}

t_http_service_vip() {
  local out
  out=$(curl_c -H 'Host: vip.l7.svc.cluster.local' "http://198.18.30.1/vip-check")
  echo "$out" | head -n 2
  echo "$out" | grep -q '^v2-b GET /vip-check$'
}

t_dns_endpoints() {
  local out code
  out=$(curl_c -H 'Host: dns.example.com' "http://$GW/dns-check")
  echo "$out" | head -n 1
  echo "$out" | grep -q '^v2-a GET /dns-check$' || return 1
  code=$(curl_c -o /dev/null -w '%{http_code}' -H 'Host: nxdomain.example.com' "http://$GW/")
  echo "unresolvable name: $code"
  [ "$code" = 503 ]
}

t_access_log() {
  kill -USR1 "$SLUICED_PID"
  sleep 0.5
  tail -n 3 "$E2E_TMP/access.log"
  grep -q '"GET /healthz HTTP/1.1" 200 - ' "$E2E_TMP/access.log" &&
    grep -q '"GET / HTTP/1.1" 404 NR ' "$E2E_TMP/access.log" &&
    grep -Eq '"GET /split HTTP/1.1" 200 - .* "198\.19\.[12]\.1[01]:8080"$' "$E2E_TMP/access.log"
}

t_https_termination() {
  local out
  out=$(curl_c --cacert "$CERTS/ca.crt" --resolve "www.example.com:443:$GW" \
    "https://www.example.com/tls-check")
  echo "$out" | head -n 8
  # The backend sees plain HTTP with x-forwarded-proto https.
  echo "$out" | grep -q '^v1-. GET /tls-check$' && echo "$out" | grep -q '^x-forwarded-proto: https$'
}

t_https_redirect() {
  local out
  out=$(curl_c -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: secure.example.com' \
    "http://$GW:8081/page")
  echo "$out"
  [ "$out" = "301 https://secure.example.com/page" ]
}

t_tls_passthrough_by_sni() {
  local subject code
  # The certificate the client sees is the backend's: sluice did not terminate.
  subject=$(in_ns client bash -c "echo | timeout 5 openssl s_client -connect $GW:8443 \
    -servername pass.example.com 2>/dev/null | openssl x509 -noout -subject")
  echo "$subject"
  [[ "$subject" == *"CN = pass.example.com"* ]] || return 1
  code=$(curl_c -o /dev/null -w '%{http_code}' --cacert "$CERTS/ca.crt" \
    --resolve "pass.example.com:8443:$GW" "https://pass.example.com:8443/")
  echo "curl through passthrough: $code"
  [ "$code" = 200 ]
}

t_tls_origination() {
  local out
  out=$(curl_c -w '\n%{http_code}' -H 'Host: origin.example.com' "http://$GW:8082/")
  echo "$out" | tail -n 3
  # openssl s_server -www answers over the TLS session sluice opened and verified.
  [ "$(echo "$out" | tail -n 1)" = 200 ] && echo "$out" | grep -q 's_server'
}

t_tls_passthrough_unknown_sni_closed() {
  # No tls route claims this SNI: the connection is closed, no certificate is presented.
  ! in_ns client bash -c "echo | timeout 5 openssl s_client -connect $GW:8443 \
    -servername nobody.example.com 2>/dev/null | grep -q 'BEGIN CERTIFICATE'"
}

if ! sluiced_start "$conf"; then
  echo "FAIL: sluiced did not start"
  exit 1
fi
# The engine opens its listener when the slow-path lcore applies the config: wait for it.
for _ in $(seq 1 50); do
  in_ns client curl -s -o /dev/null -m 1 -H 'Host: www.example.com' "http://$GW/healthz" && break
  sleep 0.2
done

check "header match routes end-user jason to v2" t_header_routing
check "weights 80/20 over 2000 requests within 3 points" t_weights_80_20
check "rewrite uri prefix keeps the query" t_rewrite
check "redirect answers 301 with Location" t_redirect
check "direct response" t_direct_response
check "unclaimed host answers 404" t_unclaimed_host_404
check "x-forwarded-for/-proto, x-request-id; x-envoy-* stripped" t_forwarded_headers
check "consistent hash by header is sticky" t_consistent_hash_sticky
check "keep-alive upstream connections are reused" t_keepalive_reuse
check "sluicectl endpoints: 6 held requests counted on v1's endpoints, 0 once answered" t_endpoints_active_requests
check "websocket upgrade echoes through the tunnel" t_websocket_echo
check "smuggling shape answers 400" t_bad_request_400
check "https termination with the gateway certificate" t_https_termination
check "httpsRedirect answers 301 to https" t_https_redirect
check "tls passthrough routed by SNI, backend certificate seen" t_tls_passthrough_by_sni
check "tls passthrough with an unclaimed SNI is closed" t_tls_passthrough_unknown_sni_closed
check "DestinationRule tls SIMPLE originates verified TLS" t_tls_origination
check "HTTP Service VIP served by the engine (mesh routes)" t_http_service_vip
check "DNS-named endpoints resolve; an unresolvable one answers 503" t_dns_endpoints
check "access log lines in Envoy's format" t_access_log
stats_refresh && grep '^stats: l7' "$SLUICED_LOG" | tail -n 1
sluiced_stop
e2e_finish
