// Golden packets through the real pipeline: a NIC port and an exception port built on DPDK
// rings, a worker stepping worker_poll() and the slow path stepping slowpath_poll(), exactly
// the functions the lcores run. Each case: {description, input frame, verdict, output}.
#include <gtest/gtest.h>

#include <atomic>

#include "eal_env.hh"
#include "frames.hh"
#include "sluice/fastpath/worker.hh"
#include "sluice/glue/port.hh"
#include "sluice/rcu/qsbr.hh"

namespace sluice {
namespace {

using namespace sluice::test;
using stats::drop;

struct golden {
    const char* description;
    bytes input;
    bool to_kernel; ///< else dropped
    drop reason;    ///< when dropped
};

bytes tagged(const bytes& inner_ip)
{
    return eth(0x0800, inner_ip, {42});
}

std::vector<golden> cases()
{
    bytes cut_ext(8, 0);
    cut_ext[1] = 3;
    auto short_tcp = ipv4(6, bytes(12, 0));
    auto bad_len = ipv4(17, udp(5, 6));
    put16(bad_len, 2, 1400);
    auto bad_ver = ipv4(1, icmp_echo(1, 1));
    bad_ver[0] = 0x55;
    auto short6 = ipv6(17, udp(53, 53));
    put16(short6, 4, 900);
    return {
        {"ARP request for the box goes to the kernel unchanged", eth(0x0806, arp_request()), true,
         drop::count},
        {"ICMP echo to the box", eth(0x0800, ipv4(1, icmp_echo(7, 1))), true, drop::count},
        {"TCP SYN to an L7 listener", eth(0x0800, ipv4(6, tcp(40000, 443, 0x02))), true,
         drop::count},
        {"802.1Q-tagged UDP", tagged(ipv4(17, udp(1000, 53, 20))), true, drop::count},
        {"IPv6 UDP", eth(0x86dd, ipv6(17, udp(5353, 5353, 10))), true, drop::count},
        {"IPv4 fragment (not first)", eth(0x0800, ipv4(17, bytes(64, 1), 1, 2, {}, 0x0008)), true,
         drop::count},
        {"LLDP and other EtherTypes are the kernel's", eth(0x88cc, bytes(40, 0)), true,
         drop::count},
        {"runt: 10 bytes", bytes(10, 0xff), false, drop::runt},
        {"IPv4 header cut after 10 bytes", eth(0x0800, bytes(10, 0x45)), false,
         drop::ipv4_truncated},
        {"IPv4 total length beyond the frame", eth(0x0800, bad_len), false, drop::ipv4_bad_length},
        {"IPv4 version 5", eth(0x0800, bad_ver), false, drop::ipv4_bad_header},
        {"TCP header cut short", eth(0x0800, short_tcp), false, drop::l4_truncated},
        {"IPv6 payload length beyond the frame", eth(0x86dd, short6), false, drop::ipv6_bad_length},
        {"IPv6 extension header cut short", eth(0x86dd, ipv6(6, bytes(), cut_ext, 0)), false,
         drop::ipv6_truncated},
        {"ARP body cut short", eth(0x0806, bytes(12, 0)), false, drop::arp_truncated},
        {"VLAN tag cut short", eth(0x8100, bytes(2, 0)), false, drop::vlan_truncated},
    };
}

class Pipeline : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        auto p = glue::create_pool(0, 8191, "pkt_pool");
        ASSERT_TRUE(p.ok());
        s_pool = *p;
        ASSERT_TRUE(s_nic.create("pkt_nic"));
        ASSERT_TRUE(s_exc.create("pkt_exc"));
        ASSERT_TRUE(
            glue::configure_and_start(s_nic.port, "nic", 1, 1, 256, 256, 1500, s_pool).ok());
        ASSERT_TRUE(
            glue::configure_and_start(s_exc.port, "exc", 1, 1, 256, 256, 1500, s_pool).ok());
    }

    void SetUp() override
    {
        _counters = std::make_unique<stats::registry>();
        auto q = rcu::qsbr_domain::create(1);
        ASSERT_TRUE(q.ok());
        _qsbr = std::move(*q);
        ASSERT_TRUE(_qsbr->register_reader(0).ok());
        _ctx.nic = s_nic.port;
        _ctx.exc = s_exc.port;
        _ctx.index = 0;
        _ctx.inject_worker = 0;
        _punt = rte_ring_create("pkt_punt", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        _inject = rte_ring_create("pkt_inject", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        ASSERT_TRUE(_punt && _inject);
        _ctx.punt[0] = _punt;
        _ctx.inject[0] = _inject;
        _worker.queue = 0;
        _worker.reader_id = 0;
        _worker.ports = std::span<const fastpath::port_ctx>(&_ctx, 1);
        _worker.counters = &_counters->lcore(1);
        _worker.qsbr = _qsbr.get();
        _worker.stop = &_stop;
        _slow.ports = _worker.ports;
        _slow.workers = 1;
        _slow.counters = &_counters->lcore(2);
    }

    void TearDown() override
    {
        rte_ring_free(_punt);
        rte_ring_free(_inject);
    }

    /// Steps worker then slow path (or the reverse) until nothing moves (bounded).
    void step()
    {
        for (int i = 0; i < 8; ++i) {
            fastpath::worker_poll(_worker);
            fastpath::slowpath_poll(_slow);
        }
    }

    static std::vector<bytes> drain(rte_ring* r)
    {
        std::vector<bytes> out;
        void* m = nullptr;
        while (rte_ring_dequeue(r, &m) == 0) {
            out.push_back(from_mbuf(static_cast<rte_mbuf*>(m)));
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
        return out;
    }

    static inline rte_mempool* s_pool = nullptr;
    static inline ring_port s_nic;
    static inline ring_port s_exc;
    std::unique_ptr<stats::registry> _counters;
    std::unique_ptr<rcu::qsbr_domain> _qsbr;
    fastpath::port_ctx _ctx;
    fastpath::worker_ctx _worker;
    fastpath::slowpath_ctx _slow;
    rte_ring* _punt = nullptr;
    rte_ring* _inject = nullptr;
    std::atomic<bool> _stop{false};
};

TEST_F(Pipeline, GoldenPacketsFromTheNic)
{
    for (const auto& g : cases()) {
        SCOPED_TRACE(g.description);
        const auto before = _counters->sum();
        rte_mbuf* m = to_mbuf(s_pool, g.input);
        ASSERT_NE(m, nullptr);
        ASSERT_EQ(rte_ring_enqueue(s_nic.rx, m), 0);
        step();
        const auto after = _counters->sum();
        const auto to_kernel = drain(s_exc.tx);
        EXPECT_TRUE(drain(s_nic.tx).empty()) << "nothing is sent back out of the NIC";
        EXPECT_EQ(after.port[0].rx_packets - before.port[0].rx_packets, 1u);
        if (g.to_kernel) {
            ASSERT_EQ(to_kernel.size(), 1u);
            EXPECT_EQ(to_kernel[0], g.input) << "the kernel gets the frame unchanged";
            EXPECT_EQ(after.port[0].to_kernel - before.port[0].to_kernel, 1u);
            EXPECT_EQ(after.total_drops(), before.total_drops());
        } else {
            EXPECT_TRUE(to_kernel.empty());
            EXPECT_EQ(after.drop(g.reason) - before.drop(g.reason), 1u)
                << "drop reason " << stats::drop_name(g.reason);
            EXPECT_EQ(after.total_drops() - before.total_drops(), 1u);
        }
    }
}

TEST_F(Pipeline, KernelFramesLeaveThroughTheNic)
{
    const bytes reply = eth(0x0800, ipv4(1, icmp_echo(7, 1), 0xc6120001, 0xc6120002));
    for (int i = 0; i < 40; ++i) {
        ASSERT_EQ(rte_ring_enqueue(s_exc.rx, to_mbuf(s_pool, reply)), 0);
    }
    step();
    const auto out = drain(s_nic.tx);
    ASSERT_EQ(out.size(), 40u) << "a burst and more, all transmitted";
    for (const auto& f : out) {
        EXPECT_EQ(f, reply);
    }
    const auto t = _counters->sum();
    EXPECT_EQ(t.port[0].from_kernel, 40u);
    EXPECT_EQ(t.port[0].tx_packets, 40u);
    EXPECT_EQ(t.port[0].tx_bytes, 40u * reply.size());
    EXPECT_EQ(t.total_drops(), 0u);
}

TEST_F(Pipeline, MixedBurstKeepsOrderAndCountsEachDrop)
{
    const auto all = cases();
    for (const auto& g : all) {
        ASSERT_EQ(rte_ring_enqueue(s_nic.rx, to_mbuf(s_pool, g.input)), 0);
    }
    step();
    const auto out = drain(s_exc.tx);
    std::vector<bytes> expected;
    uint64_t drops = 0;
    for (const auto& g : all) {
        if (g.to_kernel) {
            expected.push_back(g.input);
        } else {
            ++drops;
        }
    }
    EXPECT_EQ(out, expected) << "kernel-bound frames keep their order";
    EXPECT_EQ(_counters->sum().total_drops(), drops);
    EXPECT_EQ(rte_mempool_in_use_count(s_pool), 0u) << "every mbuf was freed or delivered";
}

TEST_F(Pipeline, FullPuntRingDropsAndCounts)
{
    // The slow path is not stepped: the punt ring (1023 usable slots) fills up.
    const bytes f = eth(0x0800, ipv4(1, icmp_echo(1, 1)));
    unsigned sent = 0;
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < 1000; ++i) {
            if (rte_ring_enqueue(s_nic.rx, to_mbuf(s_pool, f)) == 0) {
                ++sent;
            }
        }
        for (int i = 0; i < 40; ++i) {
            fastpath::worker_poll(_worker);
        }
    }
    const auto t = _counters->sum();
    EXPECT_EQ(t.port[0].rx_packets, sent);
    EXPECT_EQ(t.drop(drop::exception_full), sent - 1023u);
    for (int i = 0; i < 64; ++i) { // a burst per poll: 1023 frames need 32 polls
        fastpath::slowpath_poll(_slow);
    }
    EXPECT_EQ(drain(s_exc.tx).size(), 1023u);
    EXPECT_EQ(rte_mempool_in_use_count(s_pool), 0u);
}

} // namespace
} // namespace sluice
