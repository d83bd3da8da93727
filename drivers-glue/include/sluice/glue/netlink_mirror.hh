#pragma once
/// @file
/// Mirrors the kernel's routes and neighbours of the exception interfaces into the fast
/// path's route table (net::fwd_table) and neighbour table (net::neigh_table), each
/// published through RCU and rebuilt only when its own part changed (an rte_fib rebuild
/// costs tens of milliseconds; neighbours change far more often than routes). The kernel is
/// the L2/L3 control plane (DESIGN.md §1); the fast path only reads its mirror.
///
/// mirror_state is pure (unit-tested with forged netlink messages); netlink_mirror owns the
/// socket and runs on the slow-path lcore: poll() never blocks. The slow path polls it as soon
/// as the socket is readable (its fd is in the L7 reactor's epoll set, which the lcore polls
/// every loop anyway), so a neighbour the kernel has just learnt (a new client's ARP request
/// or neighbour solicitation) reaches the workers within microseconds, not at the next timer
/// tick; a publish_pacer bounds how much of the lcore rebuilds may take under churn.

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include <linux/netlink.h>

#include "sluice/base/result.hh"
#include "sluice/glue/netlink.hh"
#include "sluice/net/fib.hh"
#include "sluice/net/neigh.hh"
#include "sluice/rcu/published.hh"

namespace sluice::glue {

/// What the kernel has, restricted to the mirrored interfaces.
class mirror_state {
public:
    /// `ports` maps the kernel ifindex of each exception interface to its port index.
    explicit mirror_state(std::map<unsigned, uint16_t> ports) : _ports(std::move(ports)) {}

    /// Applies every netlink message in `buf`; returns how many changed the state.
    unsigned apply(std::span<const uint8_t> buf);
    /// Applies one message; true when it changed the state. Unknown types are ignored.
    bool apply(const nlmsghdr* h);

    /// Something changed since clear_dirty().
    [[nodiscard]] bool dirty() const noexcept { return _routes_dirty || _neigh_dirty; }
    [[nodiscard]] bool routes_dirty() const noexcept { return _routes_dirty; }
    [[nodiscard]] bool neighbours_dirty() const noexcept { return _neigh_dirty; }
    void clear_dirty() noexcept { _routes_dirty = _neigh_dirty = false; }
    void clear_routes_dirty() noexcept { _routes_dirty = false; }
    void clear_neighbours_dirty() noexcept { _neigh_dirty = false; }
    /// Forgets everything (before a full resync after an overrun).
    void clear();

    [[nodiscard]] std::vector<net::route> routes() const;
    [[nodiscard]] std::vector<net::neighbour> neighbours() const;

private:
    struct route_key {
        uint8_t table;
        net::prefix dst;
        uint32_t metric;
        auto operator<=>(const route_key&) const = default;
    };
    bool apply_route(const nlmsghdr* h);
    bool apply_neigh(const nlmsghdr* h);

    std::map<unsigned, uint16_t> _ports;
    std::map<route_key, net::route> _routes;
    std::map<std::pair<uint16_t, net::ip_addr>, net::mac_addr> _neigh;
    bool _routes_dirty = false;
    bool _neigh_dirty = false;
};

/// Paces the rebuilds of one table: after a build that took D, the next may start only
/// `gap_factor` x D after it ended, so rebuilds take at most 1 / (1 + gap_factor) of the
/// lcore however fast the kernel's events come, while a change after a quiet spell is
/// published at once. Times in any monotonic unit (TSC cycles in sluiced). Pure.
class publish_pacer {
public:
    static constexpr uint64_t gap_factor = 4;

    /// A rebuild may start at `now`.
    [[nodiscard]] bool ready(uint64_t now) const noexcept { return now >= _next; }
    /// The earliest time a rebuild may start.
    [[nodiscard]] uint64_t next() const noexcept { return _next; }
    /// A rebuild ran from `start` to `end`.
    void built(uint64_t start, uint64_t end) noexcept
    {
        _next = end + gap_factor * (end > start ? end - start : 0);
    }

private:
    uint64_t _next = 0;
};

class netlink_mirror {
public:
    /// Opens the event socket. `routes` and `neighbours` receive each new table;
    /// `socket_id` is the NUMA node route tables are allocated on.
    static result<std::unique_ptr<netlink_mirror>>
    create(std::map<unsigned, uint16_t> ports, rcu::published<net::fwd_table>& routes,
           rcu::published<net::neigh_table>& neighbours, int socket_id);

    /// Dumps routes and neighbours and publishes a table. Blocking; start-up and resync.
    result<void> sync();
    /// Drains queued events (at most 64 reads); rebuilds and publishes what changed, unless
    /// its pacer defers it (publish_due() then says when). Never blocks (but for a resync
    /// after the kernel dropped events). Returns true when it published a table.
    bool poll();
    /// The socket may hold more events than the last poll() read (it stopped at its bound):
    /// poll again without waiting for the socket to become readable again.
    [[nodiscard]] bool backlog() const noexcept { return _backlog; }
    /// A change waits for its pacer: poll() again at publish_due() (TSC cycles).
    [[nodiscard]] bool deferred() const noexcept { return _state.dirty(); }
    [[nodiscard]] uint64_t publish_due() const noexcept;
    /// The event socket, for an epoll set (EPOLLIN: events are queued).
    [[nodiscard]] int fd() const noexcept { return _sock.fd(); }

    [[nodiscard]] uint64_t route_tables_published() const noexcept { return _route_tables; }
    [[nodiscard]] uint64_t neighbour_tables_published() const noexcept { return _neigh_tables; }
    [[nodiscard]] const mirror_state& state() const noexcept { return _state; }

private:
    netlink_mirror(nl_socket s, std::map<unsigned, uint16_t> ports,
                   rcu::published<net::fwd_table>& routes,
                   rcu::published<net::neigh_table>& neighbours, int socket_id)
        : _sock(std::move(s)), _state(std::move(ports)), _routes_out(routes),
          _neigh_out(neighbours), _socket_id(socket_id)
    {
    }
    /// Publishes the tables whose part of the state changed (all when `force`).
    bool rebuild(bool force);

    nl_socket _sock;
    mirror_state _state;
    rcu::published<net::fwd_table>& _routes_out;
    rcu::published<net::neigh_table>& _neigh_out;
    int _socket_id;
    uint64_t _route_tables = 0;
    uint64_t _neigh_tables = 0;
    publish_pacer _route_pacer;
    publish_pacer _neigh_pacer;
    bool _resync = false;
    bool _backlog = false;
};

} // namespace sluice::glue
