#pragma once
/// @file
/// Burst stages (STYLE H1, H2): each takes at most `burst_size` mbufs, decides a verdict
/// per packet into an array, then dispatches. Pure over mbufs: tests drive them with
/// mbufs from a pool, no port needed.

#include <cstdint>
#include <span>

#include "sluice/net/parse.hh"
#include "sluice/stats/counters.hh"

struct rte_mbuf;

namespace sluice::fastpath {

/// What happens to a packet.
enum class next_node : uint8_t {
    exception, ///< to the port's exception interface (the kernel)
    drop,      ///< freed; `reason` says why
};

struct verdicts {
    next_node next[32];
    stats::drop reason[32];
    net::frame_info info[32]; ///< where the headers are (valid when next is exception)
};

/// Validates each frame (net::parse_frame) and decides its next hop. Malformed frames get
/// next_node::drop with their named reason. Returns the number classified (= pkts.size()).
uint16_t classify_stage(std::span<rte_mbuf* const> pkts, verdicts& v) noexcept;

} // namespace sluice::fastpath
