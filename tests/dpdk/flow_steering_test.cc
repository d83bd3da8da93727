// rte_flow steering on vdevs: net_null and net_ring have no rte_flow (nor do af_packet, or
// net_tap on a kernel without the multiq qdisc), so bring-up must fall back to the software
// rings cleanly: all rules or none, the port still running, and the reason reported.
#include <gtest/gtest.h>

#include <vector>

#include "eal_env.hh"
#include "sluice/glue/flow_steering.hh"
#include "sluice/glue/port.hh"

namespace sluice::glue {
namespace {

rte_mempool* pool()
{
    static rte_mempool* mp = [] {
        auto p = create_pool(0, 4095, "steering_test_pool");
        EXPECT_TRUE(p.ok());
        return p.ok() ? *p : nullptr;
    }();
    return mp;
}

TEST(FlowSteeringOnVdevs, NullPortWithTwoQueuesFallsBackToSoftware)
{
    auto id = probe("net_null7,copy=0");
    ASSERT_TRUE(id.ok()) << id.err().message;
    ASSERT_TRUE(configure_and_start(*id, "null7", 2, 2, 256, 256, 1500, pool()).ok());
    const std::vector<net::ip_addr> snat = {*net::ip_addr::parse("198.19.255.1"),
                                            *net::ip_addr::parse("2001:db8::5")};
    steering_request req;
    req.queues = 2;
    req.span = snat_port_span(2, true);
    req.snat = snat;
    const steering_status st = setup_steering(*id, req);
    EXPECT_FALSE(st.active);
    EXPECT_STREQ(st.mode(), "software");
    EXPECT_EQ(st.rules, 0u);
    // The first rule is refused at validation (nothing was created), with DPDK's reason.
    EXPECT_EQ(st.reason.rfind("rte_flow_validate refused rule 1 of 40 (198.19.255.1 tcp dst "
                              "0x0400/0xfc00 -> queue 0): ",
                              0),
              0u)
        << st.reason;
    EXPECT_NE(st.reason.find("not implemented"), std::string::npos) << st.reason;
    // The port is still up and both queues still receive: the software path carries on.
    EXPECT_EQ(link_state(*id).rfind("up", 0), 0u) << link_state(*id);
    rte_mbuf* pkts[8];
    for (uint16_t q = 0; q < 2; ++q) {
        const uint16_t n = rte_eth_rx_burst(*id, q, pkts, 8);
        EXPECT_GT(n, 0) << "queue " << q;
        rte_pktmbuf_free_bulk(pkts, n);
    }
    close_port(*id);
}

TEST(FlowSteeringOnVdevs, RingPortRefusesToo)
{
    test::ring_port rp;
    ASSERT_TRUE(rp.create("ring_fs"));
    const std::vector<net::ip_addr> snat = {*net::ip_addr::parse("198.19.255.1")};
    const auto st = install_steering(rp.port, plan_steering(snat, 2, snat_port_span(2, true)));
    EXPECT_FALSE(st.active);
    EXPECT_NE(st.reason.find("rte_flow_validate refused rule 1 of 20"), std::string::npos)
        << st.reason;
}

} // namespace
} // namespace sluice::glue
