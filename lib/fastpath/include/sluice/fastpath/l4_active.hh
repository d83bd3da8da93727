#pragma once
/// @file
/// Open TCP connections per endpoint as the L4 workers count them (`l4_lcore::active`), read
/// by the control thread for `GET /v1/endpoints` and `sluicectl endpoints`.
///
/// A worker counts a TCP flow from its SYN (a new flow, full-NAT or encapsulated) to its
/// close (RST, both FINs; the client's FIN for direct server return) or expiry, in a
/// 4096-slot table direct-mapped by `fmix64(endpoint id)`. It is an approximation: endpoint
/// ids that share a slot share a count, and an endpoint named by several clusters (two
/// subsets of one host) has one count, since its id is `network|address:port`. UDP and ICMP
/// flows are not counted.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "sluice/base/hash.hh"
#include "sluice/fastpath/l4_stage.hh"

namespace sluice::fastpath {

/// Slots in `l4_lcore::active` (a power of two).
inline constexpr size_t l4_active_slots = std::tuple_size_v<decltype(l4_lcore::active)>;
static_assert((l4_active_slots & (l4_active_slots - 1)) == 0, "l4_lcore::active: power of two");

/// The slot of `endpoint_id` in `l4_lcore::active`: the mapping l4_stage.cc's
/// `active_slot()` uses (the pkt tier checks that they agree). Pure, hot-path safe.
[[nodiscard]] constexpr size_t l4_active_slot(uint64_t endpoint_id) noexcept
{
    return static_cast<size_t>(fmix64(endpoint_id) & (l4_active_slots - 1));
}

/// Open TCP connections of `endpoint_id` on worker `l` (and of the ids sharing its slot).
///
/// Thread contract: any thread, while the worker runs and writes the slot with plain
/// increments. The read is a relaxed load through `std::atomic_ref` of an aligned 32-bit
/// word: it cannot tear, and it is only ever a moment's view for monitoring (a connection
/// opening or closing meanwhile may or may not be in it; sums over workers are not one
/// instant). Nothing is written, so the worker's cache line stays its own apart from the
/// reader's shared copy. Not for admission decisions (those stay on the worker).
[[nodiscard]] inline uint32_t l4_active_connections(const l4_lcore& l,
                                                    uint64_t endpoint_id) noexcept
{
    static_assert(alignof(uint32_t) >= std::atomic_ref<uint32_t>::required_alignment);
    // atomic_ref<const T> is C++26; the load does not write through the reference.
    auto& slot = const_cast<uint32_t&>(l.active[l4_active_slot(endpoint_id)]);
    return std::atomic_ref<uint32_t>(slot).load(std::memory_order_relaxed);
}

} // namespace sluice::fastpath
