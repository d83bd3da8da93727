// The slow path's side of the exception path: it alone touches the exception ports.
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "sluice/fastpath/worker.hh"

namespace sluice::fastpath {

unsigned slowpath_poll(const slowpath_ctx& s) noexcept
{
    unsigned moved = 0;
    rte_mbuf* pkts[burst_size];
    auto& c = *s.counters;
    for (const auto& p : s.ports) {
        auto& pc = c.port[p.index];
        // Kernel-bound: punt rings of every worker -> exception TX.
        for (unsigned w = 0; w < s.workers; ++w) {
            const unsigned n = rte_ring_sc_dequeue_burst(p.punt[w], reinterpret_cast<void**>(pkts),
                                                         burst_size, nullptr);
            if (n == 0) {
                continue;
            }
            const uint16_t sent = rte_eth_tx_burst(p.exc, 0, pkts, static_cast<uint16_t>(n));
            pc.to_kernel.add(sent);
            if (sent < n) [[unlikely]] {
                c.count_drop(stats::drop::exception_full, n - sent);
                rte_pktmbuf_free_bulk(pkts + sent, n - sent);
            }
            moved += n;
        }
        // NIC-bound: exception RX -> the inject ring of the port's TX worker.
        const uint16_t n = rte_eth_rx_burst(p.exc, 0, pkts, burst_size);
        if (n == 0) {
            continue;
        }
        pc.from_kernel.add(n);
        const unsigned q = rte_ring_sp_enqueue_burst(p.inject[p.inject_worker],
                                                     reinterpret_cast<void**>(pkts), n, nullptr);
        if (q < n) [[unlikely]] {
            c.count_drop(stats::drop::inject_full, n - q);
            rte_pktmbuf_free_bulk(pkts + q, n - q);
        }
        moved += n;
    }
    return moved;
}

} // namespace sluice::fastpath
