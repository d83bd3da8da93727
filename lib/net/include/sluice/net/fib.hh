#pragma once
/// @file
/// The fast path's route table: longest-prefix match (rte_fib for IPv4, rte_fib6 for IPv6)
/// to a next hop. It mirrors the kernel's routes on the exception interfaces
/// (drivers-glue/netlink_mirror builds it); neighbours are in neigh.hh.
///
/// Immutable once built: a change builds a new table and publishes it through RCU
/// (rcu::published<fwd_table>); readers never see a table being edited (STYLE P1, P3).
/// Building needs the EAL (rte_fib allocates from DPDK memory); lookups are lock-free and
/// allocation-free.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "sluice/base/result.hh"
#include "sluice/net/addr.hh"

struct rte_fib;
struct rte_fib6;

namespace sluice::net {

enum class route_kind : uint8_t {
    unicast,     ///< forward: to `gateway`, or to the destination itself when connected
    local,       ///< an address of the box: the kernel's
    blackhole,   ///< drop silently
    unreachable, ///< drop; the kernel would answer ICMP unreachable
};

/// One route as the kernel has it. `dst` is in network form.
struct route {
    prefix dst;
    ip_addr gateway; ///< unset for a connected route
    uint16_t port = 0;
    route_kind kind = route_kind::unicast;
    uint32_t metric = 0;

    auto operator<=>(const route&) const = default;
};

/// What a route lookup yields.
struct nexthop {
    uint16_t port = 0;
    route_kind kind = route_kind::unicast;
    ip_addr gateway; ///< unset: the destination is on-link
};

class fwd_table {
public:
    /// Builds a table. Duplicate destinations keep the lowest metric. Needs the EAL.
    static result<std::unique_ptr<fwd_table>> build(std::span<const route> routes, int socket_id);
    ~fwd_table();
    fwd_table(const fwd_table&) = delete;
    fwd_table& operator=(const fwd_table&) = delete;

    /// Longest-prefix match; nullptr when no route covers `dst`. Hot path.
    [[nodiscard]] const nexthop* lookup(const ip_addr& dst) const noexcept;
    /// IPv4 lookup by host-order address. Hot path.
    [[nodiscard]] const nexthop* lookup4(uint32_t dst_host) const noexcept;
    [[nodiscard]] size_t route_count() const noexcept { return _routes; }
    /// Unique per table built in this process (never reused): caches of lookups key on it.
    [[nodiscard]] uint64_t generation() const noexcept { return _generation; }

private:
    fwd_table() = default;

    rte_fib* _fib4 = nullptr;
    rte_fib6* _fib6 = nullptr;
    std::vector<nexthop> _nexthops; ///< index 0 is "no route"
    size_t _routes = 0;
    uint64_t _generation = 0;
};

} // namespace sluice::net
