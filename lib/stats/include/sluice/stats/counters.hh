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
    X(inject_full, "slow-path to worker TX ring full")

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

/// Everything one lcore counts; written only by that lcore.
struct alignas(RTE_CACHE_LINE_SIZE) lcore_counters {
    std::array<port_counters, max_ports> port;
    std::array<counter, drop_count> drops;
    counter loops;      ///< poll loop iterations
    counter idle_loops; ///< iterations that found no work

    void count_drop(drop d, uint64_t n = 1) noexcept { drops[static_cast<size_t>(d)].add(n); }
};

/// Plain totals, as summed by a reader.
struct port_totals {
    uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
    uint64_t to_kernel = 0, from_kernel = 0;
};
struct totals {
    std::array<port_totals, max_ports> port{};
    std::array<uint64_t, drop_count> drops{};
    [[nodiscard]] uint64_t drop(drop d) const noexcept { return drops[static_cast<size_t>(d)]; }
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
