#include "sluice/fastpath/worker.hh"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "sluice/fastpath/l4_stage.hh"
#include "sluice/fastpath/stages.hh"
#include "sluice/rcu/qsbr.hh"

namespace sluice::fastpath {
namespace {

// Empty polls in a row before an idle worker may sleep (when idle_sleep_us > 0).
constexpr unsigned idle_polls_before_sleep = 256;

/// Transmits `n` frames on port `p`'s queue of this worker, counting them; frees what the
/// queue refuses. `all_bytes`: the frames' total length when the caller knows it (else 0).
void tx_burst(const worker_ctx& w, const port_ctx& p, rte_mbuf** pkts, uint16_t n,
              uint64_t all_bytes = 0) noexcept
{
    auto& c = *w.counters;
    auto& pc = c.port[p.index];
    const uint16_t sent = rte_eth_tx_burst(p.nic, w.queue, pkts, n);
    uint64_t bytes = 0;
    if (all_bytes != 0 && sent == n) {
        bytes = all_bytes;
    } else {
        for (uint16_t i = 0; i < sent; ++i) {
            bytes += rte_pktmbuf_pkt_len(pkts[i]);
        }
    }
    pc.tx_packets.add(sent);
    pc.tx_bytes.add(bytes);
    if (sent < n) [[unlikely]] {
        c.count_drop(stats::drop::tx_full, n - sent);
        rte_pktmbuf_free_bulk(pkts + sent, n - sent);
    }
}

/// Frames another worker handed over that go to the kernel after all (a client-side ICMP
/// error no worker's flow claimed): each by the exception port of the port it arrived on
/// (m->port), the first port when that is unknown. Cold path.
[[gnu::cold]] void punt_by_arrival(const worker_ctx& w, rte_mbuf* const* pkts, uint16_t n) noexcept
{
    for (uint16_t i = 0; i < n; ++i) {
        const port_ctx* to = &w.ports[0];
        for (const auto& pc : w.ports) {
            if (pc.nic == pkts[i]->port) {
                to = &pc;
                break;
            }
        }
        if (rte_ring_sp_enqueue(to->punt[w.queue], pkts[i]) != 0) {
            w.counters->count_drop(stats::drop::exception_full);
            rte_pktmbuf_free(pkts[i]);
        }
    }
}

/// Classify and the L4 stage for the packets the fast path left (`slow`: bit i for packet i;
/// `d` holds the fast path's decisions for the others), then dispatch (H2) in arrival order:
/// one burst from port `p` (or redirected to this worker by another, then `p` is only where
/// unclaimed frames go to the kernel).
void finish(const worker_ctx& w, const port_ctx& p, rte_mbuf* const* pkts, uint16_t n,
            uint32_t slow, l4_decision* d, bool redirected) noexcept
{
    auto& c = *w.counters;
    if (slow != 0) {
        // The packets the fast path left, compacted: parse, then the whole L4 stage.
        rte_mbuf* sp[burst_size];
        uint8_t at[burst_size];
        uint16_t ns = 0;
        for (uint32_t bits = slow; bits != 0; bits &= bits - 1) {
            const auto i = static_cast<uint8_t>(__builtin_ctz(bits));
            at[ns] = i;
            sp[ns++] = pkts[i];
        }
        verdicts v;
        classify_stage(std::span<rte_mbuf* const>(sp, ns), v);
        l4_decision sd[burst_size];
        const uint16_t l4 =
            l4_stage(w, p, std::span<rte_mbuf* const>(sp, ns), v, std::span(sd, ns), redirected);
        for (uint16_t j = 0; j < ns; ++j) {
            if (l4 != 0 && sd[j].v != l4_verdict::pass) {
                d[at[j]] = sd[j];
            } else if (v.next[j] == next_node::exception) {
                d[at[j]] = {}; // pass: to the kernel
            } else {
                d[at[j]] = {l4_verdict::drop, 0, v.reason[j]};
            }
        }
    }

    rte_mbuf* punt[burst_size];
    rte_mbuf* dropped[burst_size];
    uint16_t npunt = 0;
    uint16_t ndrop = 0;
    rte_mbuf* tx[stats::max_ports][burst_size];
    uint16_t ntx[stats::max_ports] = {};
    bool any_tx = false;
    for (uint16_t i = 0; i < n; ++i) {
        switch (d[i].v) {
        case l4_verdict::tx:
            tx[d[i].port][ntx[d[i].port]++] = pkts[i];
            any_tx = true;
            break;
        case l4_verdict::redirect:
            if (rte_ring_sp_enqueue(w.l4->redirect_out[d[i].port], pkts[i]) == 0) {
                c.count(stats::l4_event::redirected_out);
            } else {
                c.count_drop(stats::drop::l4_redirect_full);
                dropped[ndrop++] = pkts[i];
            }
            break;
        case l4_verdict::drop:
            c.count_drop(d[i].reason);
            dropped[ndrop++] = pkts[i];
            break;
        case l4_verdict::pass:
            punt[npunt++] = pkts[i];
            break;
        }
    }
    if (any_tx) {
        for (size_t port = 0; port < w.ports.size(); ++port) {
            if (ntx[port] != 0) {
                tx_burst(w, w.ports[port], tx[port], ntx[port]);
            }
        }
    }
    if (npunt > 0 && redirected) [[unlikely]] {
        punt_by_arrival(w, punt, npunt);
    } else if (npunt > 0) {
        const unsigned q = rte_ring_sp_enqueue_burst(
            p.punt[w.queue], reinterpret_cast<void**>(punt), npunt, nullptr);
        if (q < npunt) [[unlikely]] {
            c.count_drop(stats::drop::exception_full, npunt - q);
            rte_pktmbuf_free_bulk(punt + q, npunt - q);
        }
    }
    if (ndrop > 0) {
        rte_pktmbuf_free_bulk(dropped, ndrop);
    }
}

/// Decisions of a burst: every one is written (by the fast path for its packets, by finish()
/// for the rest) before it is read, so the array is left uninitialized (l4_decision's
/// default construction would cost a store per packet).
union burst_decisions {
    burst_decisions() noexcept {} // NOLINT: no member initialized, on purpose
    l4_decision d[burst_size];
};

/// The whole pipeline for one burst at once (the fast path's two halves back to back).
void process(const worker_ctx& w, const port_ctx& p, rte_mbuf** pkts, uint16_t n,
             bool redirected) noexcept
{
    burst_decisions bd;
    const uint32_t slow =
        l4_fast_path(w, p.index, std::span<rte_mbuf* const>(pkts, n), std::span(bd.d, n));
    finish(w, p, pkts, n, slow, bd.d, redirected);
}

/// The rest of the waiting burst of the pipeline (see fast_burst), if any.
void flush_pending(const worker_ctx& w) noexcept
{
    l4_lcore& l = *w.l4;
    if (l.pending < 0) {
        return;
    }
    fast_burst& b = l.bursts[static_cast<size_t>(l.pending)];
    l.pending = -1;
    burst_decisions bd;
    const uint32_t slow = l4_fast_finish(w, b, std::span(bd.d, b.n));
    if (b.tx_port >= 0) {
        // All one way, full-NAT IPv4 rewritten in place: the lengths are those received.
        tx_burst(w, w.ports[static_cast<size_t>(b.tx_port)], b.pkts, b.n, b.rx_bytes);
        return;
    }
    finish(w, w.ports[b.in_port], b.pkts, b.n, slow, bd.d, false);
}

/// Counts `n` frames of `bytes` in all received on port `p`.
void count_rx(const worker_ctx& w, const port_ctx& p, uint16_t n, uint64_t bytes) noexcept
{
    auto& pc = w.counters->port[p.index];
    pc.rx_packets.add(n);
    pc.rx_bytes.add(bytes);
}

unsigned poll_rx(const worker_ctx& w, const port_ctx& p) noexcept
{
    if (w.l4 == nullptr) {
        rte_mbuf* pkts[burst_size];
        const uint16_t n = rte_eth_rx_burst(p.nic, w.queue, pkts, burst_size);
        if (n != 0) {
            uint64_t bytes = 0;
            for (uint16_t i = 0; i < n; ++i) {
                bytes += rte_pktmbuf_pkt_len(pkts[i]);
            }
            count_rx(w, p, n, bytes);
            process(w, p, pkts, n, false);
        }
        return n;
    }
    // Pipelined: receive into the free slot, start it (first pass: bucket prefetches), then
    // finish the waiting burst, whose buckets loaded meanwhile; the new one waits in turn.
    l4_lcore& l = *w.l4;
    const size_t slot = l.pending == 0 ? 1 : 0;
    fast_burst& b = l.bursts[slot];
    const uint16_t n = rte_eth_rx_burst(p.nic, w.queue, b.pkts, burst_size);
    if (n == 0) {
        return 0;
    }
    b.n = n;
    b.in_port = p.index;
    l4_fast_begin(w, b); // sums the burst's length on the way (rx_bytes)
    count_rx(w, p, n, b.rx_bytes);
    flush_pending(w);
    l.pending = static_cast<int>(slot);
    return n;
}

/// Replies that RSS delivered to another worker, handed over through its ring.
unsigned drain_redirects(const worker_ctx& w) noexcept
{
    if (w.l4 == nullptr || w.l4->workers < 2) {
        return 0;
    }
    unsigned work = 0;
    rte_mbuf* pkts[burst_size];
    for (unsigned from = 0; from < w.l4->workers; ++from) {
        rte_ring* r = w.l4->redirect_in[from];
        if (r == nullptr) {
            continue;
        }
        const unsigned n =
            rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(pkts), burst_size, nullptr);
        if (n == 0) {
            continue;
        }
        w.counters->count(stats::l4_event::redirected_in, n);
        // Frames that go to the kernel after all leave by the port they arrived on.
        process(w, w.ports[0], pkts, static_cast<uint16_t>(n), true);
        work += n;
    }
    return work;
}

unsigned drain_inject(const worker_ctx& w, const port_ctx& p) noexcept
{
    rte_mbuf* pkts[burst_size];
    const unsigned n = rte_ring_sc_dequeue_burst(p.inject[w.queue], reinterpret_cast<void**>(pkts),
                                                 burst_size, nullptr);
    if (n == 0) {
        return 0;
    }
    tx_burst(w, p, pkts, static_cast<uint16_t>(n));
    return n;
}

} // namespace

unsigned worker_poll(const worker_ctx& w) noexcept
{
    unsigned work = 0;
    unsigned received = 0;
    for (const auto& p : w.ports) {
        received += poll_rx(w, p);
        work += drain_inject(w, p);
    }
    work += drain_redirects(w);
    // A burst waits at most one loop: when nothing new came in, it is finished now (at low
    // rates the pipeline adds no latency).
    if (received == 0 && w.l4 != nullptr && w.l4->pending >= 0) {
        flush_pending(w);
        ++work;
    }
    return work + received;
}

void worker_flush(const worker_ctx& w) noexcept
{
    if (w.l4 != nullptr) {
        flush_pending(w);
    }
}

void worker_loop(const worker_ctx& w) noexcept
{
    unsigned idle = 0;
    auto& c = *w.counters;
    // Acquire pairs with the release-store of the stopping thread; checked once per loop.
    while (!w.stop->load(std::memory_order_acquire)) {
        const unsigned work = worker_poll(w);
        c.loops.add(1);
        l4_housekeeping(w, rte_rdtsc());
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
    worker_flush(w);                // nothing left waiting in the pipeline
    w.qsbr->quiescent(w.reader_id); // it read published tables: release them too
}

} // namespace sluice::fastpath
