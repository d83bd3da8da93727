# shellcheck shell=bash
# The demo and e2e topology (../shared/docs/TESTING.md), built from network namespaces:
#
#  ns P-client 198.18.0.2/24 --veth-- [nic-wan] ns P-app [nic-lan] --veth-- ns P-fabric (br0)
#                                    sluiced: DPDK af_packet ports,         |-- ns P-be-a 198.19.1.10/24
#                                    TAP exception ifaces wan/lan           |-- ns P-be-b 198.19.2.10/24
#                                                                           `-- ns P-be-c 198.19.3.10/24
#
# Every address is in 198.18.0.0/15. Nothing is created outside the namespaces (veths are
# created directly inside them), so parallel runs with different prefixes never collide.
# Source this file, then: topo_up PREFIX / topo_down PREFIX.

TOPO_ZONES=(a b c)

# topo_ns PREFIX ROLE -> namespace name
topo_ns() { printf '%s-%s' "$1" "$2"; }

# Disables checksum/segmentation offloads: af_packet would otherwise hand DPDK frames whose
# checksums the sending kernel left for "hardware" to fill in.
_topo_no_offload() {
  ip netns exec "$1" ethtool -K "$2" tx off >/dev/null 2>&1 || true
}

topo_up() {
  local p=$1 ns z i
  for ns in client app fabric "${TOPO_ZONES[@]/#/be-}"; do
    ip netns add "$p-$ns" || return 1
    ip -n "$p-$ns" link set lo up
  done
  # client <-> appliance "wan" NIC
  ip -n "$p-client" link add eth0 type veth peer name nic-wan netns "$p-app" || return 1
  ip -n "$p-client" addr add 198.18.0.2/24 dev eth0
  ip -n "$p-client" link set eth0 up
  ip -n "$p-client" route add default via 198.18.0.1
  _topo_no_offload "$p-client" eth0

  # appliance "lan" NIC <-> fabric bridge <-> one backend namespace per zone
  ip -n "$p-app" link add nic-lan type veth peer name app netns "$p-fabric" || return 1
  ip -n "$p-fabric" link add br0 type bridge
  ip -n "$p-fabric" link set app master br0
  ip -n "$p-fabric" link set app up
  ip -n "$p-fabric" link set br0 up
  i=1
  for z in "${TOPO_ZONES[@]}"; do
    ip -n "$p-be-$z" link add eth0 type veth peer name "be-$z" netns "$p-fabric" || return 1
    ip -n "$p-fabric" link set "be-$z" master br0
    ip -n "$p-fabric" link set "be-$z" up
    ip -n "$p-be-$z" addr add "198.19.$i.10/24" dev eth0
    ip -n "$p-be-$z" link set eth0 up
    ip -n "$p-be-$z" route add default via "198.19.$i.1"
    _topo_no_offload "$p-be-$z" eth0
    i=$((i + 1))
  done

  # The appliance's NIC veths belong to DPDK (af_packet): the kernel must not answer on
  # them. No IPv6, no ARP, and strict reverse-path filtering (their traffic's sources are
  # reachable only through the TAP interfaces) keep the kernel's stack off them.
  for i in nic-wan nic-lan; do
    ip netns exec "$p-app" sysctl -qw "net.ipv6.conf.$i.disable_ipv6=1"
    ip netns exec "$p-app" sysctl -qw "net.ipv4.conf.$i.rp_filter=1"
    ip -n "$p-app" link set "$i" arp off
    ip -n "$p-app" link set "$i" up
    _topo_no_offload "$p-app" "$i"
  done
}

# Kills every process left in the namespaces, then deletes them (with their interfaces).
topo_down() {
  local p=$1 ns pids
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$p-" || true); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill $pids 2>/dev/null || true
      sleep 0.5
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      # shellcheck disable=SC2086
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
}
