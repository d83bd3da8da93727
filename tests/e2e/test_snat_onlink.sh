#!/usr/bin/env bash
# SNAT addresses inside the backends' subnet (the LVS/DPVS "local address" setup), IPv4 and
# IPv6: the backends resolve them with ARP / neighbour discovery, which the appliance's kernel
# answers on the port's exception interface (drivers-glue/kernel.cc add_snat_addresses), so
# TCP and UDP through the VIPs work, the backends see the SNAT address as the client, and no
# connect failure is reported. The kernel holds them as host addresses it never uses as a
# source.
#
#   client  198.18.0.2/24  2001:2::2/64       appliance wan 198.18.0.1/24  2001:2::1/64
#   zone-a  198.19.1.10-12/24  2001:2:0:1::10-12/64   appliance lan 198.19.1.1/24 ... 2001:2:0:1::1/64 ...
#   SNAT (lan) 198.19.1.100 and 2001:2:0:1::100: on-link for zone-a (its connected subnet)
#   VIPs 198.18.10.1 (tests/e2e/l4/mesh.yaml), 2001:2:0:10::1 (tests/e2e/l4/mesh_v6.yaml)
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
TOOL="$E2E_ROOT/tests/e2e/l4_tool.py"
VIP4=198.18.10.1
VIP6=2001:2:0:10::1
SNAT4=198.19.1.100
SNAT6=2001:2:0:1::100
sed -i "s|^  files = \[ \];|  files = [ \"$E2E_ROOT/tests/e2e/l4/mesh.yaml\", \"$E2E_ROOT/tests/e2e/l4/mesh_v6.yaml\" ];|" "$conf"
sed -i -e 's|addresses = \[ "198.18.0.1/24" \];|addresses = [ "198.18.0.1/24", "2001:2::1/64" ];|' \
  -e 's|addresses = \[ "198.19.1.1/24", "198.19.2.1/24", "198.19.3.1/24" \];|addresses = [ "198.19.1.1/24", "198.19.2.1/24", "198.19.3.1/24", "2001:2:0:1::1/64", "2001:2:0:2::1/64", "2001:2:0:3::1/64" ];|' \
  -e "s|snat      = \[ \"198.19.255.1\" \];|snat      = [ \"$SNAT4\", \"$SNAT6\" ];|" "$conf"
if [ "$(grep -c '2001:2:' "$conf")" != 3 ] || ! grep -q "\"$SNAT4\"" "$conf"; then
  echo "FAIL: the appliance config takes on-link SNAT addresses (conf/sluice.conf changed shape?)"
  grep -nE 'files|addresses|snat' "$conf"
  exit 1
fi

in_ns app sysctl -qw net.ipv6.conf.default.disable_ipv6=0
in_ns client sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
in_ns client ip -6 addr add 2001:2::2/64 dev eth0 nodad
in_ns client ip -6 route add 2001:2::/48 via 2001:2::1 dev eth0
zi=1
for z in a b c; do
  in_ns "be-$z" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
  in_ns "be-$z" ip -6 addr add "2001:2:0:$zi::10/64" dev eth0 nodad
  in_ns "be-$z" ip -6 addr add "2001:2:0:$zi::11/64" dev eth0 nodad
  in_ns "be-$z" ip -6 route add 2001:2::/48 via "2001:2:0:$zi::1" dev eth0
  zi=$((zi + 1))
done
in_ns be-a ip -6 addr add 2001:2:0:1::12/64 dev eth0 nodad
in_ns be-a ip addr add 198.19.1.11/24 dev eth0
in_ns be-a ip addr add 198.19.1.12/24 dev eth0
in_ns be-b ip addr add 198.19.2.11/24 dev eth0
in_ns be-c ip addr add 198.19.3.11/24 dev eth0

# Every endpoint of both meshes serves (zone-a's is where PreferClose sends everything) and
# logs the peers it saw into one file.
PEERS="$E2E_TMP/peers.txt"
: >"$PEERS"
for ep in a:198.19.1.10 a:198.19.1.11 a:198.19.1.12 b:198.19.2.10 b:198.19.2.11 \
  c:198.19.3.10 c:198.19.3.11 a:2001:2:0:1::10 a:2001:2:0:1::11 a:2001:2:0:1::12 \
  b:2001:2:0:2::10 b:2001:2:0:2::11 c:2001:2:0:3::10 c:2001:2:0:3::11; do
  z=${ep%%:*} a=${ep#*:}
  in_ns "be-$z" python3 "$TOOL" serve "$a" "$a" 7000 7001 120 "$PEERS" >/dev/null 2>&1 &
done

l4_stat() { grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# The kernel has the SNAT addresses as host addresses that are never a source: IPv4 of scope
# host, IPv6 deprecated; no route for them but their local one; and its own traffic to the
# backends' subnet (and to an address next to the SNAT address) leaves from the port address.
t_kernel_holds_snat() {
  in_ns app ip addr show dev lan
  in_ns app ip addr show dev lan | grep -q "inet $SNAT4/32 scope host" || return 1
  in_ns app ip -6 addr show dev lan | grep -E "inet6 $SNAT6/128 .*deprecated" || return 1
  in_ns app ip route get 198.19.1.10 | grep -q 'src 198.19.1.1 ' || return 1
  in_ns app ip route get 198.19.1.101 | grep -q 'src 198.19.1.1 ' || return 1
  in_ns app ip -6 route get 2001:2:0:1::101 | grep -q 'src 2001:2:0:1::1 ' || return 1
  in_ns app ip -6 route get 2001:2:0:1::10 | grep -q 'src 2001:2:0:1::1 ' || return 1
  # No route was added for them in the main table (the mirror would copy it).
  ! in_ns app ip route show table main | grep -qF "$SNAT4" &&
    ! in_ns app ip -6 route show table main | grep -qF "$SNAT6"
}

# family VIP SNAT PROTO: 50 flows through the VIP, every one answered by a zone-a endpoint.
flows() {
  local vip=$1 proto=$2 out="$E2E_TMP/$2-$1.txt"
  in_ns client python3 "$TOOL" "$proto" "$vip" "$([ "$proto" = tcp ] && echo 7000 || echo 7001)" \
    50 0 3 >"$out"
  awk '{print $2}' "$out" | sort | uniq -c
  [ "$(grep -cE ' (198\.19\.1\.1[0-2]|2001:2:0:1::1[0-2])$' "$out")" = 50 ]
}
t_tcp4() { flows $VIP4 tcp; }
t_udp4() { flows $VIP4 udp; }
t_tcp6() { flows $VIP6 tcp; }
t_udp6() { flows $VIP6 udp; }

# What the backends saw as the client: only the SNAT addresses, over TCP and UDP, both
# families; and their neighbour entries for them carry the appliance's lan MAC.
t_backends_see_snat() {
  sort "$PEERS" | uniq -c
  [ "$(grep -c "^tcp $SNAT4\$" "$PEERS")" -ge 50 ] || return 1
  [ "$(grep -c "^udp $SNAT4\$" "$PEERS")" -ge 50 ] || return 1
  [ "$(grep -c "^tcp $SNAT6\$" "$PEERS")" -ge 50 ] || return 1
  [ "$(grep -c "^udp $SNAT6\$" "$PEERS")" -ge 50 ] || return 1
  [ "$(grep -vcE "^(tcp|udp) ($SNAT4|$SNAT6)\$" "$PEERS")" = 0 ] || return 1
  local mac
  mac=$(in_ns app cat /sys/class/net/lan/address)
  in_ns be-a ip neigh show "$SNAT4"
  in_ns be-a ip -6 neigh show "$SNAT6"
  in_ns be-a ip neigh show "$SNAT4" | grep -qE "lladdr $mac (REACHABLE|STALE|DELAY|PROBE)" &&
    in_ns be-a ip -6 neigh show "$SNAT6" | grep -qE "lladdr $mac (REACHABLE|STALE|DELAY|PROBE)"
}

# The kernel answers pings to the SNAT addresses (ICMP echo is not the workers').
t_ping_snat() {
  in_ns be-a ping -c 1 -W 2 $SNAT4 && in_ns be-a ping -6 -c 1 -W 2 $SNAT6
}

# No connect failure was reported, no endpoint is ejected, no reply lacked its flow.
t_no_health_signal() {
  stats_refresh || return 1
  grep -E '^stats: (l4|drops)' "$SLUICED_LOG" | tail -n 2
  [ "$(l4_stat health_signals)" = 0 ] || return 1
  [ "$(drop l4_no_flow)" = 0 ] || return 1
  ctl endpoints echo.l4.svc.cluster.local >"$E2E_TMP/eps4.txt" || return 1
  ctl endpoints echo6.l4v6.svc.cluster.local >"$E2E_TMP/eps6.txt" || return 1
  cat "$E2E_TMP/eps4.txt" "$E2E_TMP/eps6.txt"
  ! grep -q ejected "$E2E_TMP/eps4.txt" "$E2E_TMP/eps6.txt"
}

if sluiced_start "$conf"; then
  check "on-link SNAT: the kernel holds them as host addresses it never uses as a source" t_kernel_holds_snat
  check "on-link SNAT 198.19.1.100: 50 TCP connections through the VIP" t_tcp4
  check "on-link SNAT 198.19.1.100: 50 UDP flows through the VIP" t_udp4
  check "on-link SNAT 2001:2:0:1::100: 50 TCP connections through the VIP" t_tcp6
  check "on-link SNAT 2001:2:0:1::100: 50 UDP flows through the VIP" t_udp6
  check "on-link SNAT: backends saw only the SNAT addresses as clients, resolved to the lan MAC" t_backends_see_snat
  check "on-link SNAT: the appliance's kernel answers pings to them" t_ping_snat
  check "on-link SNAT: no health signal, no ejection, no l4_no_flow drop" t_no_health_signal
else
  check "sluiced starts" false
fi
e2e_finish
