// The fast path's forwarding view (rte_fib/rte_fib6 + neighbour table), built from what the
// netlink mirror hands it.
#include <gtest/gtest.h>

#include <rte_lcore.h>

#include "sluice/net/fib.hh"

namespace sluice::net {
namespace {

ip_addr ip(const char* s)
{
    return *ip_addr::parse(s);
}
prefix pfx(const char* s)
{
    return prefix::parse(s)->network();
}

std::unique_ptr<fwd_table> build(const std::vector<route>& r)
{
    auto t = fwd_table::build(r, static_cast<int>(rte_socket_id()));
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.err().message);
    return t.ok() ? std::move(*t) : nullptr;
}

TEST(FwdTable, LongestPrefixMatchV4)
{
    auto t = build({
        {pfx("0.0.0.0/0"), ip("198.18.0.254"), 0, route_kind::unicast, 0},
        {pfx("198.19.0.0/16"), {}, 1, route_kind::unicast, 0},
        {pfx("198.19.64.0/18"), ip("198.19.1.254"), 1, route_kind::unicast, 0},
        {pfx("198.18.0.1/32"), {}, 0, route_kind::local, 0},
        {pfx("198.19.200.0/24"), {}, 1, route_kind::blackhole, 0},
    });
    ASSERT_TRUE(t);
    EXPECT_EQ(t->route_count(), 5u);
    const nexthop* nh = t->lookup(ip("8.8.8.8"));
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->port, 0);
    EXPECT_EQ(nh->gateway.to_string(), "198.18.0.254");
    nh = t->lookup(ip("198.19.2.10"));
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->port, 1);
    EXPECT_FALSE(nh->gateway.is_set()) << "connected: the destination itself is the next hop";
    nh = t->lookup(ip("198.19.100.1"));
    ASSERT_NE(nh, nullptr);
    EXPECT_EQ(nh->gateway.to_string(), "198.19.1.254");
    EXPECT_EQ(t->lookup(ip("198.18.0.1"))->kind, route_kind::local);
    EXPECT_EQ(t->lookup(ip("198.19.200.7"))->kind, route_kind::blackhole);
    EXPECT_EQ(t->lookup4(0xc6136401u)->gateway.to_string(), "198.19.1.254");
}

TEST(FwdTable, NoDefaultRouteMeansNoMatch)
{
    auto t = build({{pfx("198.19.1.0/24"), {}, 1, route_kind::unicast, 0}});
    ASSERT_TRUE(t);
    EXPECT_EQ(t->lookup(ip("198.20.0.1")), nullptr);
    EXPECT_EQ(t->lookup(ip("2001:db8::1")), nullptr);
    auto empty = build({});
    ASSERT_TRUE(empty);
    EXPECT_EQ(empty->lookup(ip("198.19.1.1")), nullptr);
}

TEST(FwdTable, LowestMetricWinsForTheSameDestination)
{
    auto t = build({
        {pfx("198.19.64.0/18"), ip("198.19.1.254"), 1, route_kind::unicast, 200},
        {pfx("198.19.64.0/18"), ip("198.19.2.254"), 1, route_kind::unicast, 100},
    });
    ASSERT_TRUE(t);
    EXPECT_EQ(t->lookup(ip("198.19.65.1"))->gateway.to_string(), "198.19.2.254");
}

TEST(FwdTable, Ipv6)
{
    auto t = build({
        {pfx("2001:db8::/32"), ip("2001:db8::fe"), 1, route_kind::unicast, 0},
        {pfx("2001:db8:1::/48"), {}, 0, route_kind::unicast, 0},
    });
    ASSERT_TRUE(t);
    EXPECT_EQ(t->lookup(ip("2001:db8:1::5"))->port, 0);
    EXPECT_EQ(t->lookup(ip("2001:db8:2::5"))->gateway.to_string(), "2001:db8::fe");
    EXPECT_EQ(t->lookup(ip("2001:db9::1")), nullptr);
}

TEST(FwdTable, RebuildsAreIndependent)
{
    // Each publish builds a new table; two can coexist (old readers, new readers).
    auto a = build({{pfx("198.19.1.0/24"), {}, 1, route_kind::unicast, 0}});
    auto b = build({{pfx("198.19.1.0/24"), {}, 0, route_kind::unicast, 0}});
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->lookup(ip("198.19.1.1"))->port, 1);
    EXPECT_EQ(b->lookup(ip("198.19.1.1"))->port, 0);
}

} // namespace
} // namespace sluice::net
