#pragma once
/// @file
/// The L4 view: what the worker lcores need of the snapshot to forward L4 flows, compiled
/// into flat, hot-path friendly tables (DESIGN.md §1, §3):
/// - the L4 listeners: (VIP address, port, protocol) -> service, for Service/ServiceEntry VIPs
///   with a TCP/UDP (non-HTTP) port and for Gateway servers of protocol TCP (their `tcp`
///   routes: port, destinationSubnets, weighted destinations), in an open-addressing table;
/// - per cluster: its endpoints as binary addresses, the locality selector computed from the
///   plan and the health of every endpoint (spillover at 1.4, panic), and per priority level
///   (and locality group) a Maglev table over the level's *healthy* endpoints, plus one over
///   all of them for panic.
///
/// Built on the control side by build_l4_view() from a snapshot and the health table; then
/// immutable and published through RCU (rcu::published<l4_view>): workers load it once per
/// burst. Clusters are shared (control-side shared_ptr, never copied per packet) between
/// successive views when neither their config nor their endpoints' health changed, so a
/// health change rebuilds only the Maglev tables of the clusters it touches.
///
/// Determinism (DESIGN.md §3): every choice is a pure function of the 5-tuple, the config and
/// the health: two appliances with the same config and health pick the same backend.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/base/result.hh"
#include "sluice/locality/priority_load.hh"
#include "sluice/maglev/maglev.hh"
#include "sluice/net/addr.hh"

namespace sluice::snapshot {
struct snapshot;
}

namespace sluice::fastpath {

inline constexpr uint32_t l4_none = 0xffffffffU;

/// How a service's flows reach their endpoints.
enum class forwarding : uint8_t {
    fullnat, ///< source -> an SNAT address and port of the egress port, destination -> endpoint
    ipip,    ///< IP-in-IP to the endpoint (direct server return)
    gue,     ///< GUE variant 1 (IP in UDP) to the endpoint (direct server return)
};

/// Parses "fullnat", "ipip", "gue".
[[nodiscard]] result<forwarding> parse_forwarding(std::string_view s);
[[nodiscard]] std::string_view forwarding_name(forwarding f) noexcept;

/// One backend. // fastpath: ro
struct l4_endpoint {
    std::array<uint8_t, 16> addr{}; ///< network order; IPv4 in the first 4 bytes
    uint64_t id = 0;                ///< the snapshot's stable endpoint id (conntrack pins it)
    uint16_t port = 0;              ///< network order
    uint8_t family = 0;             ///< 4 or 6
};

/// A Maglev table over some endpoints, with the cluster endpoint index of every rank.
struct l4_ring {
    maglev::table table;
    std::vector<uint32_t> endpoint_of_rank;

    /// The endpoint (index into l4_cluster::endpoints) for `hash`, or l4_none when empty.
    [[nodiscard]] uint32_t pick(uint64_t hash) const noexcept
    {
        const uint32_t r = table.lookup64(hash);
        return r == maglev::no_endpoint ? l4_none : endpoint_of_rank[r];
    }
};

/// The rings of one priority level: over its healthy endpoints, and over all of them (panic).
/// `healthy` is null when every endpoint is healthy (then `all` serves both).
struct l4_level {
    std::shared_ptr<const l4_ring> all;
    std::shared_ptr<const l4_ring> healthy;
    std::vector<std::shared_ptr<const l4_ring>> groups_all; ///< per locality group (distribute)
    std::vector<std::shared_ptr<const l4_ring>> groups_healthy;
};

/// One cluster (host x subset x port) as the L4 path uses it. // fastpath: ro
struct l4_cluster {
    std::string name;
    std::vector<l4_endpoint> endpoints; ///< the snapshot's order (sorted by id)
    locality::selector selector;        ///< levels' load under the current health
    std::vector<l4_level> levels;
    uint64_t connect_timeout_ticks = 0; ///< connectionPool.tcp.connectTimeout in TSC ticks
    /// connectionPool.tcp.maxConnections divided among the workers (rounded up); 0: no limit.
    uint32_t max_conns_per_lcore = 0;
    uint32_t unhealthy = 0;         ///< endpoints currently excluded for health
    bool outlier_detection = false; ///< the DestinationRule sets outlierDetection
    bool missing = false;           ///< no such cluster: new flows are refused
    uint64_t digest = 0;            ///< config + health fingerprint (reuse across views)

    /// The endpoint for a new flow with hash `h` (deterministic), or l4_none when nothing is
    /// usable. Hot path: O(levels), no allocation.
    [[nodiscard]] uint32_t choose(uint64_t h) const noexcept;
};

/// A weighted destination of an L4 route.
struct l4_dest {
    uint32_t cluster = l4_none; ///< index into l4_view clusters
    uint32_t cumulative = 0;    ///< running sum of weights, inclusive
};

/// One TCP route of a Gateway server (or the single route of a Service VIP).
struct l4_route {
    std::vector<net::prefix> subnets; ///< destinationSubnets; empty: any
    std::vector<l4_dest> dests;
    uint32_t total = 0; ///< sum of weights
};

/// One L4 listener: VIP address, port and protocol.
struct l4_service {
    std::array<uint8_t, 16> addr{}; ///< network order
    uint16_t port = 0;              ///< network order
    uint8_t proto = 0;              ///< IPPROTO_TCP / IPPROTO_UDP
    uint8_t family = 0;
    forwarding fwd = forwarding::fullnat;
    std::vector<l4_route> routes; ///< first match on the destination wins
    std::string name;             ///< "VIP host:port" or "gateway ns/name:port" (diagnostics)
};

/// The hash every choice derives from: a fixed function of the 5-tuple (never seeded per
/// process, so every appliance computes the same). Addresses and ports in network order.
[[nodiscard]] uint64_t flow_hash(uint8_t family, const uint8_t* src, const uint8_t* dst,
                                 uint16_t sport, uint16_t dport, uint8_t proto) noexcept;

struct l4_view_input;
class l4_view;
[[nodiscard]] result<std::unique_ptr<l4_view>> build_l4_view(const l4_view_input& in);

class l4_view {
public:
    /// The listener for a destination, or nullptr. Hot path: one hash, a few probes.
    [[nodiscard]] const l4_service* find(uint8_t family, const uint8_t* addr, uint8_t proto,
                                         uint16_t port) const noexcept;

    /// A new flow's destination: the route (first whose subnets hold `dst`), the weighted
    /// destination, then the cluster's level and endpoint. Returns the endpoint and sets
    /// `*cluster`, or returns nullptr (cluster null too when no route/destination applies).
    [[nodiscard]] const l4_endpoint* choose(const l4_service& s, const uint8_t* dst, uint64_t hash,
                                            const l4_cluster** cluster) const noexcept;

    /// True when `addr` is the address of some L4 listener (any port or protocol): later
    /// fragments, which carry no ports, are recognised by it. Binary search.
    [[nodiscard]] bool has_vip_address(uint8_t family, const uint8_t* addr) const noexcept;

    /// Unique per built view (never reused, unlike an address): caches of "this listener
    /// exists" are valid for one generation.
    [[nodiscard]] uint64_t generation() const noexcept { return _generation; }

    [[nodiscard]] const std::vector<l4_service>& services() const noexcept { return _services; }
    [[nodiscard]] size_t cluster_count() const noexcept { return _clusters.size(); }
    [[nodiscard]] const l4_cluster& cluster(size_t i) const noexcept { return *_clusters[i]; }
    /// The cluster by name (control side; binary search), or nullptr.
    [[nodiscard]] const l4_cluster* find_cluster(std::string_view name) const noexcept;

private:
    friend struct l4_view_builder;
    friend result<std::unique_ptr<l4_view>> build_l4_view(const l4_view_input& in);
    std::vector<l4_service> _services;
    std::vector<uint32_t> _slots; ///< service index + 1 (0 empty), power-of-two size
    std::vector<std::array<uint8_t, 17>> _vip_addrs; ///< family + address, sorted
    uint64_t _mask = 0;
    uint64_t _generation = 0;
    std::vector<std::shared_ptr<const l4_cluster>> _clusters; ///< by name
};

/// What build_l4_view() reads.
struct l4_view_input {
    const snapshot::snapshot* snap = nullptr;
    forwarding default_forwarding = forwarding::fullnat;
    /// The appliance's own addresses: Gateway TCP servers without a bind listen on each.
    std::vector<net::ip_addr> local_addresses;
    /// Health source of truth: true when endpoint `id` of cluster `cluster` must not get new
    /// flows (ejected, failed active checks). Null: everything healthy.
    std::function<bool(std::string_view cluster, uint64_t id)> unhealthy;
    /// The previous view: clusters whose config and health did not change are shared.
    const l4_view* previous = nullptr;
    uint64_t tsc_hz = 0;  ///< for connect timeouts
    uint16_t workers = 1; ///< worker lcores sharing each cluster's maxConnections
};

/// Builds a view (control side: allocates, builds Maglev tables). Errors: a Maglev build that
/// fails (too many endpoints for the table size).
[[nodiscard]] result<std::unique_ptr<l4_view>> build_l4_view(const l4_view_input& in);

} // namespace sluice::fastpath
