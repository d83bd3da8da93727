#include "sluice/fastpath/worker.hh"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "sluice/fastpath/stages.hh"
#include "sluice/rcu/qsbr.hh"

namespace sluice::fastpath {
namespace {

// Empty polls in a row before an idle worker may sleep (when idle_sleep_us > 0).
constexpr unsigned idle_polls_before_sleep = 256;

unsigned poll_rx(const worker_ctx& w, const port_ctx& p) noexcept
{
    rte_mbuf* pkts[burst_size];
    const uint16_t n = rte_eth_rx_burst(p.nic, w.queue, pkts, burst_size);
    if (n == 0) {
        return 0;
    }
    auto& c = *w.counters;
    auto& pc = c.port[p.index];
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; ++i) {
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
    }
    pc.rx_packets.add(n);
    pc.rx_bytes.add(bytes);

    // Decide, then dispatch (H2).
    verdicts v;
    classify_stage(std::span<rte_mbuf* const>(pkts, n), v);
    rte_mbuf* punt[burst_size];
    rte_mbuf* drop[burst_size];
    uint16_t npunt = 0;
    uint16_t ndrop = 0;
    for (uint16_t i = 0; i < n; ++i) {
        if (v.next[i] == next_node::exception) {
            punt[npunt++] = pkts[i];
        } else {
            c.count_drop(v.reason[i]);
            drop[ndrop++] = pkts[i];
        }
    }
    if (npunt > 0) {
        const unsigned q = rte_ring_sp_enqueue_burst(
            p.punt[w.queue], reinterpret_cast<void**>(punt), npunt, nullptr);
        if (q < npunt) [[unlikely]] {
            c.count_drop(stats::drop::exception_full, npunt - q);
            rte_pktmbuf_free_bulk(punt + q, npunt - q);
        }
    }
    if (ndrop > 0) {
        rte_pktmbuf_free_bulk(drop, ndrop);
    }
    return n;
}

unsigned drain_inject(const worker_ctx& w, const port_ctx& p) noexcept
{
    rte_mbuf* pkts[burst_size];
    const unsigned n = rte_ring_sc_dequeue_burst(p.inject[w.queue], reinterpret_cast<void**>(pkts),
                                                 burst_size, nullptr);
    if (n == 0) {
        return 0;
    }
    auto& c = *w.counters;
    auto& pc = c.port[p.index];
    const uint16_t sent = rte_eth_tx_burst(p.nic, w.queue, pkts, static_cast<uint16_t>(n));
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < sent; ++i) {
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
    }
    pc.tx_packets.add(sent);
    pc.tx_bytes.add(bytes);
    if (sent < n) [[unlikely]] {
        c.count_drop(stats::drop::tx_full, n - sent);
        rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    }
    return n;
}

} // namespace

unsigned worker_poll(const worker_ctx& w) noexcept
{
    unsigned work = 0;
    for (const auto& p : w.ports) {
        work += poll_rx(w, p);
        work += drain_inject(w, p);
    }
    return work;
}

void worker_loop(const worker_ctx& w) noexcept
{
    unsigned idle = 0;
    auto& c = *w.counters;
    // Acquire pairs with the release-store of the stopping thread; checked once per loop.
    while (!w.stop->load(std::memory_order_acquire)) {
        const unsigned work = worker_poll(w);
        c.loops.add(1);
        w.qsbr->quiescent(w.reader_id); // P2: once per loop, holding no published pointer
        if (work != 0) {
            idle = 0;
            continue;
        }
        c.idle_loops.add(1);
        if (w.idle_sleep_us != 0 && ++idle >= idle_polls_before_sleep) {
            // Idle: go offline so writers need not wait for us, then sleep (one syscall per
            // idle period, never per packet).
            w.qsbr->offline(w.reader_id);
            rte_delay_us_sleep(w.idle_sleep_us);
            w.qsbr->online(w.reader_id);
        }
    }
}

} // namespace sluice::fastpath
