#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "sluice/fastpath/stages.hh"
#include "sluice/net/parse.hh"

namespace sluice::fastpath {
namespace {

constexpr stats::drop to_drop(net::malformed m) noexcept
{
    switch (m) {
    case net::malformed::runt:
        return stats::drop::runt;
    case net::malformed::vlan_truncated:
        return stats::drop::vlan_truncated;
    case net::malformed::arp_truncated:
        return stats::drop::arp_truncated;
    case net::malformed::ipv4_truncated:
        return stats::drop::ipv4_truncated;
    case net::malformed::ipv4_bad_header:
        return stats::drop::ipv4_bad_header;
    case net::malformed::ipv4_bad_length:
        return stats::drop::ipv4_bad_length;
    case net::malformed::ipv6_truncated:
        return stats::drop::ipv6_truncated;
    case net::malformed::ipv6_bad_header:
        return stats::drop::ipv6_bad_header;
    case net::malformed::ipv6_bad_length:
        return stats::drop::ipv6_bad_length;
    case net::malformed::l4_truncated:
        return stats::drop::l4_truncated;
    case net::malformed::none:
        break;
    }
    return stats::drop::count;
}

} // namespace

uint16_t classify_stage(std::span<rte_mbuf* const> pkts, verdicts& v) noexcept
{
    const auto n = static_cast<uint16_t>(pkts.size());
    for (uint16_t i = 0; i < n && i < 2; ++i) {
        rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
    }
    for (uint16_t i = 0; i < n; ++i) {
        if (i + 2 < n) { // H3: data two packets ahead
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 2], void*));
        }
        rte_mbuf* m = pkts[i];
        net::frame_info& info = v.info[i];
        const auto bad = net::parse_frame(rte_pktmbuf_mtod(m, const uint8_t*),
                                          rte_pktmbuf_data_len(m), info, rte_pktmbuf_pkt_len(m));
        if (bad == net::malformed::none) [[likely]] {
            v.next[i] = next_node::exception;
        } else {
            v.next[i] = next_node::drop;
            v.reason[i] = to_drop(bad);
        }
    }
    return n;
}

} // namespace sluice::fastpath
