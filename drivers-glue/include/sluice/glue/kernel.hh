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

/// Sets MTU and brings the interface up, then installs its addresses (IPv6 without DAD).
result<void> configure_interface(const std::string& name, uint16_t mtu,
                                 const std::vector<net::prefix>& addresses);

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
