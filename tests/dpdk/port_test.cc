// Port bring-up on vdevs: probing device strings, queue configuration, errors.
#include <gtest/gtest.h>

#include "eal_env.hh"
#include "sluice/glue/port.hh"

namespace sluice::glue {
namespace {

rte_mempool* pool()
{
    static rte_mempool* mp = [] {
        auto p = create_pool(0, 4095, "port_test_pool");
        EXPECT_TRUE(p.ok());
        return p.ok() ? *p : nullptr;
    }();
    return mp;
}

TEST(PortBringUp, NullVdevWithTwoQueues)
{
    auto id = probe("net_null0,copy=0");
    ASSERT_TRUE(id.ok()) << id.err().message;
    auto r = configure_and_start(*id, "null0", 2, 2, 256, 256, 1500, pool());
    ASSERT_TRUE(r.ok()) << r.err().message;
    EXPECT_EQ(link_state(*id).rfind("up", 0), 0u) << link_state(*id);
    // net_null produces frames on every RX queue: both queues of the port are live.
    rte_mbuf* pkts[8];
    for (uint16_t q = 0; q < 2; ++q) {
        const uint16_t n = rte_eth_rx_burst(*id, q, pkts, 8);
        EXPECT_GT(n, 0) << "queue " << q;
        rte_pktmbuf_free_bulk(pkts, n);
    }
    close_port(*id);
}

TEST(PortBringUp, UnknownDeviceIsAnError)
{
    auto id = probe("net_nosuchdriver0");
    ASSERT_FALSE(id.ok());
    EXPECT_NE(id.err().message.find("cannot probe device \"net_nosuchdriver0\""), std::string::npos)
        << id.err().message;
}

TEST(PortBringUp, TooManyQueuesForTheDevice)
{
    test::ring_port rp;
    ASSERT_TRUE(rp.create("ring_q"));
    auto r = configure_and_start(rp.port, "ringq", 2, 2, 256, 256, 1500, pool());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().message.find("needs 2 RX and 2 TX queues"), std::string::npos)
        << r.err().message;
}

TEST(PortBringUp, ExceptionDeviceStrings)
{
    const auto mac = *net::mac_addr::parse("02:00:00:00:00:01");
    config::exception_conf tap;
    EXPECT_EQ(exception_devargs(tap, 0, "wan", mac), "net_tap0,iface=wan,mac=02:00:00:00:00:01");
    config::exception_conf vu;
    vu.kind = config::exception_kind::virtio_user;
    EXPECT_EQ(exception_devargs(vu, 3, "lan", mac),
              "virtio_user3,path=/dev/vhost-net,iface=lan,mac=02:00:00:00:00:01,queues=1,"
              "queue_size=1024");
}

} // namespace
} // namespace sluice::glue
