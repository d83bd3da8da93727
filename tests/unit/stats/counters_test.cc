#include <gtest/gtest.h>

#include <set>
#include <string>

#include "sluice/stats/counters.hh"

namespace sluice::stats {
namespace {

TEST(DropReasons, NamesAreUniqueAndDocumented)
{
    std::set<std::string_view> names;
    for (size_t i = 0; i < drop_count; ++i) {
        const auto d = static_cast<drop>(i);
        EXPECT_FALSE(drop_name(d).empty());
        EXPECT_FALSE(drop_help(d).empty());
        EXPECT_TRUE(names.insert(drop_name(d)).second) << drop_name(d);
    }
    EXPECT_EQ(drop_name(drop::ipv4_truncated), "ipv4_truncated");
    EXPECT_EQ(drop_name(drop::count), "unknown");
}

TEST(Registry, SumsEveryLcore)
{
    auto r = std::make_unique<registry>();
    r->lcore(1).port[0].rx_packets.add(3);
    r->lcore(2).port[0].rx_packets.add(4);
    r->lcore(2).port[1].to_kernel.add(7);
    r->lcore(1).count_drop(drop::runt);
    r->lcore(3).count_drop(drop::runt, 2);
    r->lcore(3).count_drop(drop::tx_full, 5);
    const auto t = r->sum();
    EXPECT_EQ(t.port[0].rx_packets, 7u);
    EXPECT_EQ(t.port[1].to_kernel, 7u);
    EXPECT_EQ(t.drop(drop::runt), 3u);
    EXPECT_EQ(t.total_drops(), 8u);
    EXPECT_EQ(r->sum_lcore(2).port[0].rx_packets, 4u);
}

TEST(Registry, LcoreBlocksDoNotShareCacheLines)
{
    auto r = std::make_unique<registry>();
    const auto a = reinterpret_cast<uintptr_t>(&r->lcore(0));
    const auto b = reinterpret_cast<uintptr_t>(&r->lcore(1));
    EXPECT_EQ(a % RTE_CACHE_LINE_SIZE, 0u);
    EXPECT_GE(b - a, sizeof(lcore_counters));
    EXPECT_EQ(sizeof(lcore_counters) % RTE_CACHE_LINE_SIZE, 0u);
}

} // namespace
} // namespace sluice::stats
