#pragma once
/// @file
/// The fast path's neighbour table: (port, IP) -> MAC, mirrored from the kernel's ARP/ND
/// entries on the exception interfaces. Immutable once built; a change builds a new table
/// and publishes it through RCU (rcu::published<neigh_table>). Kept apart from the route
/// table because neighbours change often and a table of them is cheap to rebuild, while an
/// rte_fib rebuild is not. Pure: no EAL needed to build or look up.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "sluice/net/addr.hh"

namespace sluice::net {

/// A resolved neighbour on a port.
struct neighbour {
    uint16_t port = 0;
    ip_addr ip;
    mac_addr mac;

    auto operator<=>(const neighbour&) const = default;
};

class neigh_table {
public:
    /// Builds a table; a (port, IP) given twice keeps the last MAC.
    static std::unique_ptr<neigh_table> build(std::span<const neighbour> neighbours);

    /// MAC of a neighbour; nullptr when unresolved. Hot path: no allocation, bounded probes.
    [[nodiscard]] const mac_addr* lookup(uint16_t port, const ip_addr& ip) const noexcept;
    [[nodiscard]] size_t size() const noexcept { return _count; }
    /// Unique per table built in this process (never reused): caches of lookups key on it.
    [[nodiscard]] uint64_t generation() const noexcept { return _generation; }

private:
    struct slot {
        neighbour n;
        bool used = false;
    };
    std::vector<slot> _slots; ///< open addressing, power-of-two size, at most half full
    size_t _count = 0;
    uint64_t _generation = 0;
};

} // namespace sluice::net
