#pragma once
/// @file
/// Configures the kernel side of an exception interface over rtnetlink: MTU, link up,
/// addresses, and the appliance config's routes. Control path (start-up).

#include <string>
#include <vector>

#include "sluice/base/result.hh"
#include "sluice/config/appliance.hh"

namespace sluice::glue {

/// The ifindex of a kernel interface, or an error naming it.
result<unsigned> ifindex(const std::string& name);

/// Turns IPv6 duplicate address detection off on an exception interface (its
/// net.ipv6.conf.NAME.accept_dad = 0), before it comes up. The interface carries the port's
/// own MAC, so its link-local address cannot be anyone else's; while that address is
/// tentative the kernel sends no neighbour solicitation at all (it needs a usable link-local
/// source), so endpoints and clients would stay unresolved for a second or two after start.
/// Succeeds without doing anything when the kernel has no IPv6 for it.
result<void> skip_ipv6_dad(const std::string& name);

/// Sets MTU and brings the interface up, then installs its addresses (IPv6 without DAD).
result<void> configure_interface(const std::string& name, uint16_t mtu,
                                 const std::vector<net::prefix>& addresses);

/// Adds a port's SNAT addresses to its exception interface as host addresses, so that the
/// kernel answers ARP (IPv4) and neighbour discovery (IPv6) for them: an SNAT address inside
/// the backends' subnet is then reachable (the LVS/DPVS "local address" setup). IPv4: /32,
/// scope host, noprefixroute; IPv6: /128, nodad, noprefixroute, preferred lifetime 0
/// (deprecated). Neither is ever chosen by the kernel as a source of its own traffic (IPv4
/// source selection skips scope-host addresses, IPv6's avoids deprecated ones), and neither
/// adds a route. The kernel never sees their TCP/UDP: the workers consume it (replies of
/// their flows, or dropped as l4_no_flow). Control path (start-up).
result<void> add_snat_addresses(const std::string& name, const std::vector<net::ip_addr>& snat);

/// Installs (or replaces) a route in the main table through the named interface.
result<void> install_route(const config::route_conf& r, const std::string& ifname);

/// Makes `ip` a local address of the namespace (a `local` route on lo, as `ip route add local
/// IP dev lo table local`) or removes it: the kernel then accepts TCP for L7 VIPs the L7 engine
/// listens on. Control path.
result<void> set_local_address(const net::ip_addr& ip, bool present);

/// Asks the kernel to resolve the neighbour `ip` on interface `ifindex` (RTM_NEWNEIGH with
/// NTF_USE: ARP/ND starts now, as if the kernel had a packet for it). The fast path sees the
/// answer through the netlink mirror. Control path (called by the control thread, never by a
/// worker).
result<void> resolve_neighbour(unsigned ifindex, const net::ip_addr& ip);
} // namespace sluice::glue
