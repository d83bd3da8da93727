// The netlink mirror's table updates, fed with forged kernel messages (no socket, no EAL).
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <linux/neighbour.h>

#include "sluice/glue/netlink_mirror.hh"

namespace sluice::glue {
namespace {

constexpr unsigned if_wan = 7;
constexpr unsigned if_lan = 9;
constexpr unsigned if_other = 11;

net::ip_addr ip(const char* s)
{
    return *net::ip_addr::parse(s);
}

nl_msg route_msg(uint16_t type, const char* dst, uint8_t len, unsigned oif,
                 const char* gw = nullptr, uint8_t rtype = RTN_UNICAST,
                 uint8_t table = RT_TABLE_MAIN, uint32_t metric = 0)
{
    const auto d = ip(dst);
    rtmsg rt{};
    rt.rtm_family = d.is_v4() ? AF_INET : AF_INET6;
    rt.rtm_dst_len = len;
    rt.rtm_table = table;
    rt.rtm_type = rtype;
    nl_msg m(type, 0, &rt, sizeof(rt));
    m.attr(RTA_DST, d.bytes.data(), d.is_v4() ? 4 : 16);
    if (gw != nullptr) {
        const auto g = ip(gw);
        m.attr(RTA_GATEWAY, g.bytes.data(), g.is_v4() ? 4 : 16);
    }
    m.attr_u32(RTA_OIF, oif);
    if (metric != 0) {
        m.attr_u32(RTA_PRIORITY, metric);
    }
    return m;
}

nl_msg neigh_msg(uint16_t type, const char* addr, unsigned ifindex, uint16_t state,
                 const uint8_t* mac)
{
    const auto a = ip(addr);
    ndmsg nd{};
    nd.ndm_family = a.is_v4() ? AF_INET : AF_INET6;
    nd.ndm_ifindex = static_cast<int>(ifindex);
    nd.ndm_state = state;
    nl_msg m(type, 0, &nd, sizeof(nd));
    m.attr(NDA_DST, a.bytes.data(), a.is_v4() ? 4 : 16);
    if (mac != nullptr) {
        m.attr(NDA_LLADDR, mac, 6);
    }
    return m;
}

class MirrorState : public ::testing::Test {
protected:
    mirror_state state{{{if_wan, 0}, {if_lan, 1}}};

    bool apply(nl_msg m) { return state.apply(m.hdr()); }
};

TEST_F(MirrorState, ConnectedAndGatewayRoutes)
{
    EXPECT_TRUE(apply(route_msg(RTM_NEWROUTE, "198.18.0.0", 24, if_wan)));
    EXPECT_TRUE(apply(route_msg(RTM_NEWROUTE, "198.19.64.0", 18, if_lan, "198.19.1.254")));
    EXPECT_TRUE(state.dirty());
    const auto r = state.routes();
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].dst.to_string(), "198.18.0.0/24");
    EXPECT_EQ(r[0].port, 0);
    EXPECT_FALSE(r[0].gateway.is_set());
    EXPECT_EQ(r[1].dst.to_string(), "198.19.64.0/18");
    EXPECT_EQ(r[1].port, 1);
    EXPECT_EQ(r[1].gateway.to_string(), "198.19.1.254");
}

TEST_F(MirrorState, IgnoresOtherInterfacesTablesAndTypes)
{
    EXPECT_FALSE(apply(route_msg(RTM_NEWROUTE, "10.0.0.0", 8, if_other)));
    EXPECT_FALSE(
        apply(route_msg(RTM_NEWROUTE, "198.18.0.0", 24, if_wan, nullptr, RTN_UNICAST, 100)));
    EXPECT_FALSE(apply(route_msg(RTM_NEWROUTE, "198.18.0.255", 32, if_wan, nullptr, RTN_BROADCAST,
                                 RT_TABLE_LOCAL)));
    EXPECT_FALSE(state.dirty());
    EXPECT_TRUE(state.routes().empty());
    // The box's own addresses (local table) are mirrored as local routes.
    EXPECT_TRUE(apply(
        route_msg(RTM_NEWROUTE, "198.18.0.1", 32, if_wan, nullptr, RTN_LOCAL, RT_TABLE_LOCAL)));
    ASSERT_EQ(state.routes().size(), 1u);
    EXPECT_EQ(state.routes()[0].kind, net::route_kind::local);
}

TEST_F(MirrorState, ReplaceAndDelete)
{
    EXPECT_TRUE(apply(route_msg(RTM_NEWROUTE, "198.19.64.0", 18, if_lan, "198.19.1.254")));
    state.clear_dirty();
    EXPECT_FALSE(apply(route_msg(RTM_NEWROUTE, "198.19.64.0", 18, if_lan, "198.19.1.254")))
        << "the same route again changes nothing";
    EXPECT_FALSE(state.dirty());
    EXPECT_TRUE(apply(route_msg(RTM_NEWROUTE, "198.19.64.0", 18, if_lan, "198.19.2.254")));
    EXPECT_EQ(state.routes()[0].gateway.to_string(), "198.19.2.254");
    // A second metric is a second route.
    EXPECT_TRUE(apply(route_msg(RTM_NEWROUTE, "198.19.64.0", 18, if_lan, "198.19.3.254",
                                RTN_UNICAST, RT_TABLE_MAIN, 100)));
    EXPECT_EQ(state.routes().size(), 2u);
    EXPECT_TRUE(apply(route_msg(RTM_DELROUTE, "198.19.64.0", 18, if_lan, "198.19.2.254")));
    ASSERT_EQ(state.routes().size(), 1u);
    EXPECT_EQ(state.routes()[0].metric, 100u);
    EXPECT_FALSE(apply(route_msg(RTM_DELROUTE, "198.19.64.0", 18, if_lan)));
}

TEST_F(MirrorState, Ipv6Routes)
{
    EXPECT_TRUE(apply(route_msg(RTM_NEWROUTE, "2001:db8:1::", 48, if_lan, "2001:db8::fe")));
    ASSERT_EQ(state.routes().size(), 1u);
    EXPECT_EQ(state.routes()[0].dst.to_string(), "2001:db8:1::/48");
}

TEST_F(MirrorState, NeighboursFollowTheirState)
{
    const uint8_t mac1[6] = {2, 0, 0, 0, 0, 1};
    const uint8_t mac2[6] = {2, 0, 0, 0, 0, 2};
    EXPECT_TRUE(apply(neigh_msg(RTM_NEWNEIGH, "198.19.1.10", if_lan, NUD_REACHABLE, mac1)));
    ASSERT_EQ(state.neighbours().size(), 1u);
    EXPECT_EQ(state.neighbours()[0].mac.to_string(), "02:00:00:00:00:01");
    EXPECT_EQ(state.neighbours()[0].port, 1);
    EXPECT_FALSE(apply(neigh_msg(RTM_NEWNEIGH, "198.19.1.10", if_lan, NUD_STALE, mac1)))
        << "reachable -> stale keeps the same MAC";
    EXPECT_TRUE(apply(neigh_msg(RTM_NEWNEIGH, "198.19.1.10", if_lan, NUD_REACHABLE, mac2)));
    EXPECT_EQ(state.neighbours()[0].mac.to_string(), "02:00:00:00:00:02");
    EXPECT_TRUE(apply(neigh_msg(RTM_NEWNEIGH, "198.19.1.10", if_lan, NUD_FAILED, nullptr)))
        << "a failed neighbour is forgotten";
    EXPECT_TRUE(state.neighbours().empty());
    EXPECT_FALSE(apply(neigh_msg(RTM_NEWNEIGH, "198.19.1.11", if_lan, NUD_INCOMPLETE, nullptr)));
    EXPECT_FALSE(apply(neigh_msg(RTM_NEWNEIGH, "198.19.1.12", if_other, NUD_REACHABLE, mac1)));
    EXPECT_TRUE(apply(neigh_msg(RTM_NEWNEIGH, "2001:db8::10", if_wan, NUD_PERMANENT, mac1)));
    EXPECT_TRUE(apply(neigh_msg(RTM_DELNEIGH, "2001:db8::10", if_wan, 0, nullptr)));
    EXPECT_TRUE(state.neighbours().empty());
}

TEST_F(MirrorState, RouteAndNeighbourChangesAreTrackedApart)
{
    // An rte_fib rebuild is expensive: a neighbour change must not ask for one.
    const uint8_t mac[6] = {2, 0, 0, 0, 0, 9};
    EXPECT_TRUE(apply(neigh_msg(RTM_NEWNEIGH, "198.19.1.10", if_lan, NUD_REACHABLE, mac)));
    EXPECT_TRUE(state.neighbours_dirty());
    EXPECT_FALSE(state.routes_dirty());
    state.clear_dirty();
    EXPECT_TRUE(apply(route_msg(RTM_NEWROUTE, "198.19.1.0", 24, if_lan)));
    EXPECT_TRUE(state.routes_dirty());
    EXPECT_FALSE(state.neighbours_dirty());
    state.clear_dirty();
    EXPECT_FALSE(state.dirty());
}

TEST_F(MirrorState, BufferOfSeveralMessagesAndTruncatedOnes)
{
    auto a = route_msg(RTM_NEWROUTE, "198.18.0.0", 24, if_wan);
    auto b = route_msg(RTM_NEWROUTE, "198.19.1.0", 24, if_lan);
    std::vector<uint8_t> buf(a.bytes().begin(), a.bytes().end());
    buf.insert(buf.end(), b.bytes().begin(), b.bytes().end());
    EXPECT_EQ(state.apply(std::span<const uint8_t>(buf)), 2u);
    // A message cut short is skipped, never read past its end.
    auto c = route_msg(RTM_NEWROUTE, "198.19.2.0", 24, if_lan);
    std::vector<uint8_t> cut(c.bytes().begin(), c.bytes().begin() + 20);
    EXPECT_EQ(state.apply(std::span<const uint8_t>(cut)), 0u);
    EXPECT_EQ(state.routes().size(), 2u);
    state.clear();
    EXPECT_TRUE(state.routes().empty());
    EXPECT_TRUE(state.dirty());
}

} // namespace
} // namespace sluice::glue

namespace sluice::glue {
namespace {

// The mirror publishes a change at once after a quiet spell, and under a stream of changes
// spaces its rebuilds by 4x the last one's cost (at most a fifth of the slow-path lcore).
TEST(PublishPacer, FirstChangeAtOnceThenSpacedByTheBuildCost)
{
    publish_pacer p;
    EXPECT_TRUE(p.ready(0));
    p.built(1000, 1100); // took 100
    EXPECT_EQ(p.next(), 1100U + publish_pacer::gap_factor * 100);
    EXPECT_FALSE(p.ready(1100));
    EXPECT_FALSE(p.ready(1499));
    EXPECT_TRUE(p.ready(1500));
    p.built(5000, 5000); // too fast to measure: no wait
    EXPECT_TRUE(p.ready(5000));
}

} // namespace
} // namespace sluice::glue
