#!/usr/bin/env bash
# The L4 fast path over IPv6 end to end: a client namespace reaches an IPv6 TCP and UDP VIP
# (a Service with an IPv6 clusterIP, EndpointSlices of addressType IPv6) and an IPv6
# ServiceEntry address through sluiced's workers (conntrack, locality levels, Maglev,
# full-NAT to the IPv6 SNAT address of the backend-side port), served by real kernel TCP/UDP
# servers in three zone namespaces. Every backend reports who answered.
#
# Addresses: 2001:2::/48 only (RFC 5180, the IPv6 benchmarking prefix, the counterpart of
# 198.18.0.0/15), added with nodad (no DAD wait):
#   client  2001:2::2/64            appliance wan 2001:2::1/64
#   zone-a  2001:2:0:1::10-12/64    appliance lan 2001:2:0:1::1/64 (and :2::1, :3::1)
#   zone-b  2001:2:0:2::10-11/64    SNAT (lan)    2001:2:0:ff::1 (off-link, as 198.19.255.1)
#   zone-c  2001:2:0:3::10-11/64    VIPs          2001:2:0:10::1 (Service), ::2 (ServiceEntry)
# Client and backends route 2001:2::/48 via the appliance's address on their subnet; their
# neighbour discovery for it crosses the workers and the exception path to the appliance's
# kernel, which answers (the NIC veths themselves keep IPv6 off, as lib.sh sets them).
set -u
source "$(dirname "$0")/lib.sh"
e2e_setup
conf=$(e2e_config)
TOOL="$E2E_ROOT/tests/e2e/l4_tool.py"
MESH="$E2E_ROOT/tests/e2e/l4/mesh_v6.yaml"
VIP=2001:2:0:10::1
SE_VIP=2001:2:0:10::2
sed -i "s|^  files = \[ \];|  files = [ \"$MESH\" ];|" "$conf"
# IPv6 addresses on both ports and an IPv6 SNAT address on the backend side (lan).
sed -i -e 's|addresses = \[ "198.18.0.1/24" \];|addresses = [ "198.18.0.1/24", "2001:2::1/64" ];|' \
  -e 's|addresses = \[ "198.19.1.1/24", "198.19.2.1/24", "198.19.3.1/24" \];|addresses = [ "198.19.1.1/24", "198.19.2.1/24", "198.19.3.1/24", "2001:2:0:1::1/64", "2001:2:0:2::1/64", "2001:2:0:3::1/64" ];|' \
  -e 's|snat      = \[ "198.19.255.1" \];|snat      = [ "198.19.255.1", "2001:2:0:ff::1" ];|' "$conf"
if [ "$(grep -c '2001:2:' "$conf")" != 3 ]; then
  echo "FAIL: the appliance config takes IPv6 addresses (conf/sluice.conf changed shape?)"
  grep -nE 'addresses|snat' "$conf"
  exit 1
fi

# IPv6 in the namespaces. The appliance's exception interfaces (created by sluiced) take the
# namespace default; the NIC veths stay without IPv6 (lib.sh: DPDK owns them).
in_ns app sysctl -qw net.ipv6.conf.default.disable_ipv6=0
in_ns client sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
in_ns client ip -6 addr add 2001:2::2/64 dev eth0 nodad
in_ns client ip -6 route add 2001:2::/48 via 2001:2::1 dev eth0
zi=1
for z in a b c; do
  in_ns "be-$z" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
  # Port unreachable for every probe of the ICMPv6 case (the default limits a peer to ~1/s).
  in_ns "be-$z" sysctl -qw net.ipv6.icmp.ratelimit=0
  in_ns "be-$z" ip -6 addr add "2001:2:0:$zi::10/64" dev eth0 nodad
  in_ns "be-$z" ip -6 addr add "2001:2:0:$zi::11/64" dev eth0 nodad
  in_ns "be-$z" ip -6 route add 2001:2::/48 via "2001:2:0:$zi::1" dev eth0
  zi=$((zi + 1))
done
in_ns be-a ip -6 addr add 2001:2:0:1::12/64 dev eth0 nodad

# start_backend ZONE ADDR: a server answering "ADDR" on TCP 7000 and UDP 7001 (UDP 7009 stays
# closed), for 300 s.
start_backend() {
  in_ns "be-$1" python3 "$TOOL" serve "$2" "$2" 7000 7001 300 >/dev/null 2>&1 &
}
stop_zone() { ip netns pids "$(ns "be-$1")" | xargs -r kill; }
start_zone_a() { for a in 2001:2:0:1::10 2001:2:0:1::11 2001:2:0:1::12; do start_backend a $a; done; }
start_zone_a
start_backend b 2001:2:0:2::10
start_backend b 2001:2:0:2::11
start_backend c 2001:2:0:3::10
start_backend c 2001:2:0:3::11

# tally FILE: "backend count" lines, most first.
tally() { awk '{print $2}' "$1" | sort | uniq -c | sort -rn; }
# l4_stat NAME: a counter of the latest "stats: l4" dump.
l4_stat() { grep '^stats: l4' "$SLUICED_LOG" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# zone_a FILE: how many lines were answered by a zone-a endpoint.
zone_a() { grep -c ' 2001:2:0:1::1[0-2]$' "$1"; }

# The exception path over IPv6: neighbour discovery and ICMPv6 echo between the client or a
# backend and the appliance's kernel cross the workers and the TAP interfaces both ways.
t_exception_path_ping() {
  in_ns client ping -6 -c 1 -W 2 2001:2::1 || return 1
  in_ns be-a ping -6 -c 1 -W 2 2001:2:0:1::1 || return 1
  in_ns be-b ping -6 -c 1 -W 2 2001:2:0:2::1 || return 1
  in_ns be-c ping -6 -c 1 -W 2 2001:2:0:3::1
}

# Right after start, the first datagram to the VIP is answered without a resend: the
# endpoints were resolved when the config named them. (The exception interfaces must not be
# doing DAD on their link-local address then: the kernel sends no neighbour solicitation
# while it is tentative, and the endpoints stayed unresolved for a second or two.) And the
# client is brand new each time (lib.sh): its neighbour solicitation teaches the appliance's
# kernel its address, and the netlink mirror, read as soon as its socket is readable, brings
# it to the workers before the backend's reply is back.
t_first_datagram_answered() {
  local rc=0
  new_client_first_datagram 6 $VIP 7001 5 ' 2001:2:0:1::1[0-2]$' || rc=1
  # What that allowed (a reply that lost the race): t_counters counts from here.
  drop l4_no_neighbour >"$E2E_TMP/no_neighbour_base"
  return $rc
}

t_tcp_vip_stays_in_zone() {
  local out="$E2E_TMP/tcp1.txt"
  in_ns client python3 "$TOOL" tcp $VIP 7000 300 0 3 >"$out"
  tally "$out"
  # PreferClose: every connection is answered by a zone-a endpoint.
  [ "$(zone_a "$out")" = 300 ]
}

t_udp_vip_stays_in_zone() {
  local out="$E2E_TMP/udp1.txt"
  in_ns client python3 "$TOOL" udp $VIP 7001 300 0 3 >"$out"
  tally "$out"
  [ "$(zone_a "$out")" = 300 ]
}

t_maglev_spread_1000() {
  local out="$E2E_TMP/tcp1000.txt" a n
  in_ns client python3 "$TOOL" tcp $VIP 7000 1000 0 3 >"$out"
  tally "$out"
  [ "$(zone_a "$out")" = 1000 ] || return 1
  # Three equal endpoints: each within 333 +- 25% (250..417).
  for a in 2001:2:0:1::10 2001:2:0:1::11 2001:2:0:1::12; do
    n=$(grep -c " $a\$" "$out")
    [ "$n" -ge 250 ] && [ "$n" -le 417 ] || { echo "$a: $n"; return 1; }
  done
}

t_service_entry_vip() {
  local out="$E2E_TMP/se.txt"
  in_ns client python3 "$TOOL" tcp $SE_VIP 7000 20 0 3 >"$out"
  tally "$out"
  [ "$(grep -c ' 2001:2:0:2::11$' "$out")" = 20 ]
}

# 1 MiB up and 1 MiB back (hex lines, 2 MiB each way on the wire) through the NAT in both
# directions: the bytes arrive intact (the receiving kernels drop any segment whose checksum
# the rewrite broke; the transfer would then stall and time out).
t_bulk_transfer() {
  local out
  out=$(in_ns client python3 "$TOOL" bulk $VIP 7000 1048576 30)
  echo "$out"
  echo "$out" | grep -qE '^2001:2:0:1::1[0-2] sent 1048576 received 1048576 sha256 ok$'
}

# UDP to a port no backend listens on: the backend's kernel answers ICMPv6 port unreachable
# to the SNAT address; the appliance translates it (quote and all) back to the client, whose
# connected socket reports ECONNREFUSED. The open port, from the same client, answers.
t_icmp6_port_unreachable() {
  local out="$E2E_TMP/icmp.txt" before after
  stats_refresh || return 1
  before=$(l4_stat icmp_translated)
  in_ns client python3 "$TOOL" udpconn $VIP 7001 3 3 >"$out"
  in_ns client python3 "$TOOL" udpconn $VIP 7009 5 3 >>"$out"
  cat "$out"
  [ "$(head -n 3 "$out" | grep -c ' 2001:2:0:1::1[0-2]$')" = 3 ] || return 1
  [ "$(tail -n 5 "$out" | grep -c ' ERROR ConnectionRefusedError$')" = 5 ] || return 1
  stats_refresh || return 1
  after=$(l4_stat icmp_translated)
  echo "icmp_translated: $before -> $after"
  [ "$((${after:-0} - ${before:-0}))" -ge 5 ]
}

t_counters() {
  stats_refresh || return 1
  grep -E '^stats: (l4|drops)' "$SLUICED_LOG" | tail -n 2
  local nf
  nf=$(l4_stat new_flows)
  [ "${nf:-0}" -ge 1600 ] || return 1
  # Nothing was refused for a family mismatch or dropped for want of a neighbour (since the
  # brand-new client check).
  [ "$(drop l4_family_mismatch)" = 0 ] &&
    [ "$(drop l4_no_neighbour)" = "$(cat "$E2E_TMP/no_neighbour_base" 2>/dev/null || echo 0)" ]
}

# Zone-a dies: its servers refuse connections (RST); outlier detection ejects each endpoint
# after 3 connect failures and new connections go to zone-b (same region). Then zone-a
# returns and traffic fails back once the ejections end.
t_failover_and_failback() {
  local out="$E2E_TMP/failover.txt" fails i
  stop_zone a
  sleep 0.5
  # One new connection every 10 ms, as a steady client would open them; 150 of them take
  # less than the 4 s ejection time.
  in_ns client python3 "$TOOL" tcp $VIP 7000 150 0 3 0.01 >"$out"
  tally "$out"
  fails=$(grep -c ERROR "$out")
  echo "failed connections while zone-a was ejected: $fails"
  # 3 failures per zone-a endpoint eject it (3 endpoints), plus what arrives while the
  # control thread rebuilds the view; the last 100 all land in zone-b.
  [ "$fails" -le 12 ] || { grep "health:" "$SLUICED_LOG"; return 1; }
  [ "$(tail -n 100 "$out" | grep -c ' 2001:2:0:2::1[01]$')" = 100 ] || return 1
  ctl endpoints echo6.l4v6.svc.cluster.local >"$E2E_TMP/eps.txt"
  cat "$E2E_TMP/eps.txt"
  [ "$(grep '2001:2:0:1::' "$E2E_TMP/eps.txt" | grep -c ejected)" = 3 ] || return 1
  start_zone_a
  # Failback: once the ejections end (baseEjectionTime 4 s), new connections land in zone-a
  # again. Bounded: 20 tries, 1 s apart.
  for i in $(seq 1 20); do
    sleep 1
    in_ns client python3 "$TOOL" tcp $VIP 7000 30 0 3 >"$out"
    [ "$(zone_a "$out")" = 30 ] && { echo "failback after ${i}s"; return 0; }
  done
  tally "$out"
  return 1
}

if sluiced_start "$conf"; then
  check "IPv6 exception path: client and zone backends ping the appliance (ND, ICMPv6)" t_exception_path_ping
  check "IPv6: a brand-new client's first datagram is answered without a resend (at least 4 of 5)" t_first_datagram_answered
  check "IPv6 TCP VIP: 300 connections stay in the local zone (PreferClose)" t_tcp_vip_stays_in_zone
  check "IPv6 UDP VIP: 300 flows stay in the local zone" t_udp_vip_stays_in_zone
  check "IPv6: Maglev spreads 1,000 connections over the zone's 3 endpoints within 25%" t_maglev_spread_1000
  check "IPv6 ServiceEntry address: 20 connections reach its endpoint" t_service_entry_vip
  check "IPv6: 1 MiB each way over TCP through full-NAT arrives intact (sha256)" t_bulk_transfer
  check "IPv6: a backend's ICMPv6 port unreachable is translated back to the client" t_icmp6_port_unreachable
  check "IPv6 L4 counters: new flows counted, no drop for a family mismatch or a neighbour" t_counters
  check "IPv6: zone-a dies, outlier detection ejects it, connections fail over to zone-b; failback" t_failover_and_failback
else
  check "sluiced starts" false
fi
e2e_finish
