#pragma once
/// @file
/// Per-lcore counters and the one list of named drop reasons (STYLE H5, H8).
///
/// Each lcore writes only its own cache-aligned `lcore_counters` (single writer: a relaxed
/// load+store, no locked instruction); readers on other threads sum all lcores with relaxed
/// loads and may see a slightly old value, never a torn one.

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include <rte_common.h>

namespace sluice::stats {

/// Every reason the data path drops a packet: name (metric label, CLI) and help text.
/// Add new reasons here only; everything that lists drops is generated from this.
#define SLUICE_DROP_REASONS(X)                                                                     \
    X(runt, "frame shorter than an Ethernet header")                                               \
    X(vlan_truncated, "VLAN tag cut short")                                                        \
    X(arp_truncated, "ARP body shorter than 28 bytes")                                             \
    X(ipv4_truncated, "IPv4 header cut short")                                                     \
    X(ipv4_bad_header, "IPv4 version not 4 or IHL below 5")                                        \
    X(ipv4_bad_length, "IPv4 total length below its header or beyond the frame")                   \
    X(ipv6_truncated, "IPv6 header or extension header cut short")                                 \
    X(ipv6_bad_header, "IPv6 version not 6")                                                       \
    X(ipv6_bad_length, "IPv6 payload length beyond the frame")                                     \
    X(l4_truncated, "TCP, UDP or ICMP header cut short")                                           \
    X(exception_full, "exception port TX queue full (kernel not keeping up)")                      \
    X(tx_full, "NIC TX queue full")                                                                \
    X(inject_full, "slow-path to worker TX ring full")                                             \
    X(l4_no_backend, "L4: no usable endpoint (missing cluster, none healthy, no route match)")     \
    X(l4_no_flow, "L4: full-NAT packet of no tracked flow (not a SYN, or a reply to nothing)")     \
    X(l4_no_listener, "L4: backend reply of a tracked flow whose VIP left the config")             \
    X(l4_conntrack_full, "L4: full-NAT new flow refused: flow table full (flood guard)")           \
    X(l4_no_snat, "L4: the egress port has no SNAT address of the flow's family")                  \
    X(l4_snat_exhausted, "L4: no free SNAT port for the backend after bounded probing")            \
    X(l4_family_mismatch, "L4: full-NAT between IPv4 and IPv6 is not supported")                   \
    X(l4_no_route, "L4: no FIB route to the backend or client")                                    \
    X(l4_no_neighbour, "L4: next hop not resolved yet (resolution requested from the kernel)")     \
    X(l4_ttl_exceeded, "L4: TTL or hop limit would reach zero")                                    \
    X(l4_fragment, "L4: IP fragment of a VIP flow (not reassembled; see README)")                  \
    X(l4_too_big, "L4: over the egress MTU, IPv4 without DF (the appliance does not fragment)")    \
    X(l4_no_headroom, "L4: mbuf has no headroom for the encapsulation")                            \
    X(l4_redirect_full, "L4: ring to the flow's owner lcore full")

enum class drop : uint16_t {
#define SLUICE_X(name, help) name,
    SLUICE_DROP_REASONS(SLUICE_X)
#undef SLUICE_X
        count
};

inline constexpr size_t drop_count = static_cast<size_t>(drop::count);

/// The reason's name, e.g. "ipv4_truncated".
std::string_view drop_name(drop d) noexcept;
/// One line of help for the reason.
std::string_view drop_help(drop d) noexcept;

/// A counter with one writer. add() is two plain moves on x86.
class counter {
public:
    void add(uint64_t n) noexcept
    {
        // Relaxed: one writer; readers only need an untorn value.
        _v.store(_v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    [[nodiscard]] uint64_t get() const noexcept { return _v.load(std::memory_order_relaxed); }

private:
    std::atomic<uint64_t> _v{0};
};

inline constexpr size_t max_ports = 16;

/// Traffic of one port as seen by one lcore.
struct port_counters {
    counter rx_packets; ///< received from the NIC
    counter rx_bytes;
    counter tx_packets; ///< transmitted on the NIC
    counter tx_bytes;
    counter to_kernel;   ///< exception out: sent to the port's exception interface
    counter from_kernel; ///< exception in: received from the exception interface
};

/// L4 fast-path events (not drops: drops have reasons above): name and help.
#define SLUICE_L4_EVENTS(X)                                                                        \
    X(new_flows, "flows inserted into conntrack")                                                  \
    X(flow_hits, "packets of tracked flows, client side")                                          \
    X(reply_hits, "packets of tracked flows, backend side (full-NAT)")                             \
    X(stateless, "forwarded by Maglev alone (flow table full, or a DSR flow not tracked)")         \
    X(redirected_out, "replies handed to the lcore that owns their flow")                          \
    X(redirected_in, "replies received from another lcore")                                        \
    X(icmp_translated, "ICMP errors translated back through the NAT")                              \
    X(mss_clamped, "SYN / SYN-ACK MSS lowered for the egress MTU")                                 \
    X(encapsulated, "IPIP / GUE packets sent")                                                     \
    X(health_signals, "passive health signals sent to the control thread")                         \
    X(resolve_requests, "neighbour resolutions requested from the kernel")                         \
    X(overflow, "new TCP connections refused with RST: connectionPool.tcp.maxConnections")         \
    X(icmp_too_big, "ICMP fragmentation needed / packet too big sent for packets over the MTU")

enum class l4_event : uint16_t {
#define SLUICE_X(name, help) name,
    SLUICE_L4_EVENTS(SLUICE_X)
#undef SLUICE_X
        count
};
inline constexpr size_t l4_event_count = static_cast<size_t>(l4_event::count);
std::string_view l4_event_name(l4_event e) noexcept;

/// Everything one lcore counts; written only by that lcore.
struct alignas(RTE_CACHE_LINE_SIZE) lcore_counters {
    std::array<port_counters, max_ports> port;
    std::array<counter, drop_count> drops;
    std::array<counter, l4_event_count> l4;
    counter loops;      ///< poll loop iterations
    counter idle_loops; ///< iterations that found no work

    void count_drop(drop d, uint64_t n = 1) noexcept { drops[static_cast<size_t>(d)].add(n); }
    void count(l4_event e, uint64_t n = 1) noexcept { l4[static_cast<size_t>(e)].add(n); }
};

/// Plain totals, as summed by a reader.
struct port_totals {
    uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
    uint64_t to_kernel = 0, from_kernel = 0;
};
struct totals {
    std::array<port_totals, max_ports> port{};
    std::array<uint64_t, drop_count> drops{};
    std::array<uint64_t, l4_event_count> l4{};
    [[nodiscard]] uint64_t drop(drop d) const noexcept { return drops[static_cast<size_t>(d)]; }
    [[nodiscard]] uint64_t event(l4_event e) const noexcept { return l4[static_cast<size_t>(e)]; }
    [[nodiscard]] uint64_t total_drops() const noexcept;
};

/// The counters of every lcore of the process, indexed by lcore id.
class registry {
public:
    static constexpr unsigned max_lcores = RTE_MAX_LCORE;

    /// The block an lcore writes. `lcore` < max_lcores.
    lcore_counters& lcore(unsigned lcore) noexcept { return _lcores[lcore]; }
    const lcore_counters& lcore(unsigned lcore) const noexcept { return _lcores[lcore]; }

    /// Sums one lcore or all of them.
    [[nodiscard]] totals sum_lcore(unsigned lcore) const noexcept;
    [[nodiscard]] totals sum() const noexcept;

private:
    std::array<lcore_counters, max_lcores> _lcores;
};

} // namespace sluice::stats
