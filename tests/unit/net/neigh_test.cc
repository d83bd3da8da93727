#include <gtest/gtest.h>

#include "sluice/net/neigh.hh"

namespace sluice::net {
namespace {

ip_addr ip(const char* s)
{
    return *ip_addr::parse(s);
}

TEST(NeighTable, LooksUpByPortAndAddress)
{
    std::vector<neighbour> n;
    for (uint32_t i = 0; i < 1000; ++i) {
        mac_addr m;
        m.bytes = {2, 0, 0, 0, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
        n.push_back({static_cast<uint16_t>(i % 2), ip_addr::v4(0xc6130000u + i), m});
    }
    n.push_back({1, ip("2001:db8::10"), *mac_addr::parse("02:00:00:00:aa:bb")});
    auto t = neigh_table::build(n);
    EXPECT_EQ(t->size(), 1001u);
    for (uint32_t i = 0; i < 1000; ++i) {
        const mac_addr* m = t->lookup(static_cast<uint16_t>(i % 2), ip_addr::v4(0xc6130000u + i));
        ASSERT_NE(m, nullptr) << i;
        EXPECT_EQ(m->bytes[5], static_cast<uint8_t>(i));
        EXPECT_EQ(m->bytes[4], static_cast<uint8_t>(i >> 8));
    }
    EXPECT_EQ(t->lookup(1, ip_addr::v4(0xc6130000u)), nullptr) << "same IP, other port";
    EXPECT_EQ(t->lookup(0, ip("198.20.0.1")), nullptr);
    EXPECT_EQ(t->lookup(1, ip("2001:db8::10"))->to_string(), "02:00:00:00:aa:bb");
}

TEST(NeighTable, EmptyAndDuplicates)
{
    auto empty = neigh_table::build({});
    EXPECT_EQ(empty->size(), 0u);
    EXPECT_EQ(empty->lookup(0, ip("198.19.1.1")), nullptr);
    std::vector<neighbour> n = {{0, ip("198.19.1.1"), *mac_addr::parse("02:00:00:00:00:01")},
                                {0, ip("198.19.1.1"), *mac_addr::parse("02:00:00:00:00:02")}};
    auto t = neigh_table::build(n);
    EXPECT_EQ(t->size(), 1u);
    EXPECT_EQ(t->lookup(0, ip("198.19.1.1"))->to_string(), "02:00:00:00:00:02") << "last wins";
}

} // namespace
} // namespace sluice::net
