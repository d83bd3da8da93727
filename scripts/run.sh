#!/usr/bin/env bash
# Runs the appliance on its default virtual NICs with a live demo:
#   - sets up what is missing and builds;
#   - creates the demo topology (a client, the appliance, backends in zones a/b/c) in
#     network namespaces named sluice-demo-*, addresses from 198.18.0.0/15;
#   - starts sluiced on conf/sluice.conf in the appliance namespace;
#   - shows traffic crossing it (ping and HTTP from the client, ping from each zone) with
#     sluiced's counters, every few seconds, until Ctrl-C (or DEMO_SECONDS, default 3600);
#   - shows the L4 fast path: 20 TCP connections per round to the VIP 198.18.10.1:7000, which
#     stay in zone-a (PreferClose); in rounds 4-6 zone-a's server is stopped and outlier
#     detection fails new connections over to zone-b; from round 7 zone-a is back;
#   - shows the L7 engine: 20 HTTP requests per round to web.demo.example.com/api/orders on
#     the edge gateway (198.18.0.1:80), routed and balanced over the zones' web servers;
#     while zone-a is down, retries and outlier detection keep every answer a 200;
#   - tears everything down.
# Usage: sudo ./scripts/run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (sudo): the demo creates network namespaces" >&2
  exit 2
fi
./scripts/setup.sh || exit 1
ninja -C build || exit 1

source scripts/topology.sh
P=sluice-demo
tmp=$(mktemp -d /tmp/sluice-demo.XXXXXX)
sluiced_pid=""

cleanup() {
  echo
  echo "== stopping"
  if [ -n "$sluiced_pid" ] && kill -0 "$sluiced_pid" 2>/dev/null; then
    kill -TERM "$sluiced_pid"
    for _ in $(seq 1 100); do kill -0 "$sluiced_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$sluiced_pid" 2>/dev/null || true
    tail -n 6 "$tmp/sluiced.log" | grep '^stats:' || true
  fi
  topo_down "$P"
  rm -rf "$tmp"
  echo "== demo topology removed"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

topo_down "$P" # leftovers of an interrupted run
echo "== creating the demo topology ($P-*)"
topo_up "$P" || exit 1

echo "== starting sluiced -c conf/sluice.conf in $P-app"
# The demo keeps its state (mesh generations, API token) in its own temporary directory.
sed -e "s|^state_dir = .*|state_dir = \"$tmp/state\";|" -e "s|token_file = .*|token_file = \"$tmp/token\";|" \
  "$root/conf/sluice.conf" >"$tmp/sluice.conf"
ip netns exec "$P-app" "$root/build/app/sluiced/sluiced" -c "$tmp/sluice.conf" >"$tmp/sluiced.log" 2>&1 &
sluiced_pid=$!
for _ in $(seq 1 150); do
  grep -q '^sluiced: ready' "$tmp/sluiced.log" && break
  kill -0 "$sluiced_pid" 2>/dev/null || { cat "$tmp/sluiced.log"; exit 1; }
  sleep 0.2
done
grep -v '^ ' "$tmp/sluiced.log" | grep -vE '^(tap_|qdisc_|eth_dev_tap)' | sed 's/^/   /'

# A web server in the appliance namespace: the kernel behind the exception path serves it.
mkdir -p "$tmp/www"
echo "hello from sluice's kernel side (appliance namespace), reached through DPDK" >"$tmp/www/index.html"
ip netns exec "$P-app" python3 -m http.server --bind 198.18.0.1 --directory "$tmp/www" 8080 >/dev/null 2>&1 &
sleep 0.5

# One TCP server (7000) and one HTTP server (8080) per zone, each answering with its zone's
# name.
tool="$root/tests/e2e/l4_tool.py"
l7tool="$root/tests/e2e/l7_tool.py"
start_zone() {
  local i=$2
  ip netns exec "$P-be-$1" python3 "$tool" serve "zone-$1" "198.19.$i.10" 7000 7001 86400 \
    >/dev/null 2>&1 &
  ip netns exec "$P-be-$1" python3 "$l7tool" serve "zone-$1" "198.19.$i.10" 8080 86400 \
    >/dev/null 2>&1 &
}
i=1
for z in "${TOPO_ZONES[@]}"; do start_zone "$z" $i; i=$((i + 1)); done

# The mesh config, through the REST config port, as an operator would apply it.
ctl() { ip netns exec "$P-app" "$root/build/app/sluicectl/sluicectl" --token-file "$tmp/token" "$@"; }
echo
echo "== sluicectl apply -f conf/mesh/demo.yaml   (REST port 127.0.0.1:9180 in $P-app)"
ctl apply -f "$root/conf/mesh/demo.yaml" | sed 's/^/   /'
echo "== sluicectl endpoints web.demo.svc.cluster.local   (the appliance is in zone-a)"
ctl endpoints web.demo.svc.cluster.local | sed 's/^/   /'
echo "== sluicectl route check: GET http://web.demo.example.com/api/orders on the edge gateway"
"$root/build/app/sluicectl/sluicectl" route check -f "$root/conf/mesh/demo.yaml" \
  --request 'GET http://web.demo.example.com/api/orders' --gateway istio-system/edge | sed 's/^/   /'

cat <<EOT

== sluice is running. The topology:
   client 198.18.0.2 --[wan 198.18.0.1]-- sluiced (DPDK) --[lan 198.19.{1,2,3}.1]-- backends
                                                             zone a 198.19.1.10
                                                             zone b 198.19.2.10
                                                             zone c 198.19.3.10
   Try it yourself in another terminal, e.g.:
     sudo ip netns exec $P-client ping 198.18.0.1
     sudo ip netns exec $P-client curl http://198.18.0.1:8080/
     sudo ip netns exec $P-client nc 198.18.10.1 7000   # the L4 VIP: a zone answers
     sudo ip netns exec $P-client curl -i -H 'Host: web.demo.example.com' http://198.18.0.1/api/orders
                                                        # the L7 engine routes it to a zone
     sudo ip netns exec $P-app ip route      # what the netlink mirror copies into the FIB
     sudo ip netns exec $P-app $root/build/app/sluicectl/sluicectl --token-file $tmp/token status
   Ctrl-C stops the demo and removes everything.

EOT

deadline=$((SECONDS + ${DEMO_SECONDS:-3600}))
round=0
while [ $SECONDS -lt $deadline ]; do
  round=$((round + 1))
  echo "== round $round"
  ip netns exec "$P-client" ping -c 3 -i 0.2 -W 2 198.18.0.1 | sed -n 's/^/   client: /; /packets transmitted/p; /rtt/p'
  body=$(ip netns exec "$P-client" curl -sS -m 5 http://198.18.0.1:8080/ 2>&1)
  echo "   client: GET http://198.18.0.1:8080/ -> $body"
  i=1
  for z in "${TOPO_ZONES[@]}"; do
    ip netns exec "$P-be-$z" ping -c 1 -W 2 "198.19.$i.1" >/dev/null 2>&1 &&
      echo "   zone $z backend 198.19.$i.10: ping 198.19.$i.1 ok" ||
      echo "   zone $z backend 198.19.$i.10: ping 198.19.$i.1 FAILED"
    i=$((i + 1))
  done
  if [ $round = 4 ]; then
    echo "   demo: stopping zone-a's server (its connections are now refused)"
    ip netns pids "$P-be-a" | xargs -r kill
  elif [ $round = 7 ]; then
    echo "   demo: zone-a's server is back (traffic fails back when its ejection ends)"
    start_zone a 1
  fi
  tally=$(ip netns exec "$P-client" python3 "$tool" tcp 198.18.10.1 7000 20 0 2 0.02 |
    awk '{print $2}' | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}')
  echo "   client: 20 TCP connections to VIP 198.18.10.1:7000 -> ${tally%, }"
  tally=$(ip netns exec "$P-client" python3 "$l7tool" get 198.18.0.1 80 web.demo.example.com \
    /api/orders 20 | awk '{print $1 " " $2}' | sort | uniq -c | awk '{printf "%s %s %s, ", $3, $2, $1}')
  echo "   client: 20 HTTP requests, web.demo.example.com/api/orders via the L7 engine -> ${tally%, }"
  n=$(grep -c '^stats: drops' "$tmp/sluiced.log")
  kill -USR1 "$sluiced_pid"
  for _ in $(seq 1 20); do [ "$(grep -c '^stats: drops' "$tmp/sluiced.log")" -gt "$n" ] && break; sleep 0.1; done
  grep '^stats: port=' "$tmp/sluiced.log" | tail -n 2 | sed 's/^stats: /   counters: /'
  grep '^stats: drops' "$tmp/sluiced.log" | tail -n 1 | awk '{print "   counters: drops " $3}'
  grep '^stats: l4' "$tmp/sluiced.log" | tail -n 1 |
    awk '{print "   counters: l4 " $3, $4, $5, $12, $NF}'
  grep '^stats: l7' "$tmp/sluiced.log" | tail -n 1 |
    awk '{print "   counters: l7 " $4, $5, $8, $10, $11, $13, $14}'
  kill -0 "$sluiced_pid" 2>/dev/null || { echo "sluiced exited"; tail "$tmp/sluiced.log"; exit 1; }
  sleep 5
done
