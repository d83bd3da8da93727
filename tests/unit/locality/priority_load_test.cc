// Unit tests for locality::selector: Envoy's priority load with overprovisioning 1.4, panic,
// and locality-weighted groups, checked against Envoy's documented numbers.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "sluice/locality/levels.hh"
#include "sluice/locality/priority_load.hh"

namespace sluice::locality {
namespace {

// A plan with `sizes[i]` weight-1 endpoints in level i, numbered consecutively.
plan make_plan(const std::vector<uint32_t>& sizes)
{
    plan p;
    uint32_t next = 0;
    for (size_t l = 0; l < sizes.size(); ++l) {
        level lv;
        lv.tier = static_cast<uint32_t>(l);
        for (uint32_t i = 0; i < sizes[l]; ++i) {
            lv.endpoints.push_back(next++);
            lv.weights.push_back(1);
            p.level_of.push_back(static_cast<uint32_t>(l));
        }
        p.levels.push_back(std::move(lv));
    }
    return p;
}

// The first healthy[i] endpoints of level i are healthy, the rest unhealthy.
std::vector<health> health_of(const plan& p, const std::vector<uint32_t>& healthy)
{
    std::vector<health> h(p.level_of.size(), health::unhealthy);
    for (size_t l = 0; l < p.levels.size(); ++l) {
        for (uint32_t i = 0; i < healthy[l]; ++i) {
            h[p.levels[l].endpoints[i]] = health::healthy;
        }
    }
    return h;
}

selector must_compute(const plan& p, const std::vector<health>& h, uint32_t threshold)
{
    auto r = selector::compute(p, h, threshold);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    return r.ok() ? std::move(r).value() : selector{};
}

std::vector<uint32_t> load(const selector& s)
{
    return {s.load().begin(), s.load().end()};
}

// Percent-healthy levels of 100 endpoints each; no panic (threshold 0, as Istio sets with
// outlierDetection), which is what Envoy's priority tables assume.
std::vector<uint32_t> load_for(const std::vector<uint32_t>& healthy_pct)
{
    const plan p = make_plan(std::vector<uint32_t>(healthy_pct.size(), 100));
    return load(must_compute(p, health_of(p, healthy_pct), 0));
}

using loads = std::vector<uint32_t>;

TEST(LocalityPriorityLoadTest, TwoOfFourHealthyGivesSeventyThirty)
{
    const plan p = make_plan({4, 4});
    const selector s = must_compute(p, health_of(p, {2, 4}), envoy_default_panic_threshold);
    EXPECT_EQ(load(s), (loads{70, 30}));
    EXPECT_EQ(s.health_score()[0], 70);
    EXPECT_EQ(s.health_score()[1], 100);
    EXPECT_FALSE(s.in_panic(0)); // normalized availability is 100: no panic
}

TEST(LocalityPriorityLoadTest, EnvoyTableTwoLevelsP1Healthy)
{
    // envoy docs: arch_overview/upstream/load_balancing/priority, first table.
    EXPECT_EQ(load_for({100, 100}), (loads{100, 0}));
    EXPECT_EQ(load_for({72, 100}), (loads{100, 0}));
    EXPECT_EQ(load_for({71, 100}), (loads{99, 1}));
    EXPECT_EQ(load_for({50, 100}), (loads{70, 30}));
    EXPECT_EQ(load_for({25, 100}), (loads{35, 65}));
    EXPECT_EQ(load_for({0, 100}), (loads{0, 100}));
}

TEST(LocalityPriorityLoadTest, EnvoyTableTwoLevelsBothDegraded)
{
    EXPECT_EQ(load_for({100, 100}), (loads{100, 0}));
    EXPECT_EQ(load_for({72, 72}), (loads{100, 0}));
    EXPECT_EQ(load_for({71, 71}), (loads{99, 1}));
    EXPECT_EQ(load_for({50, 50}), (loads{70, 30}));
    EXPECT_EQ(load_for({25, 100}), (loads{35, 65}));
    EXPECT_EQ(load_for({25, 25}), (loads{50, 50})); // normalized from a total of 70
}

TEST(LocalityPriorityLoadTest, EnvoyTableThreeLevels)
{
    EXPECT_EQ(load_for({100, 100, 100}), (loads{100, 0, 0}));
    EXPECT_EQ(load_for({72, 72, 100}), (loads{100, 0, 0}));
    EXPECT_EQ(load_for({71, 71, 100}), (loads{99, 1, 0}));
    EXPECT_EQ(load_for({50, 50, 100}), (loads{70, 30, 0}));
    EXPECT_EQ(load_for({25, 100, 100}), (loads{35, 65, 0}));
    EXPECT_EQ(load_for({25, 25, 100}), (loads{35, 35, 30}));
    // Health 35/35/28, total 98: integer shares 35/35/28 and the 2 left over go to the first
    // healthy level, as Envoy's code does (its docs print the rounded 36/36/28).
    EXPECT_EQ(load_for({25, 25, 20}), (loads{37, 35, 28}));
}

TEST(LocalityPriorityLoadTest, FullFailoverWhenALevelIsAllUnhealthy)
{
    const plan p = make_plan({3, 2, 5});
    const selector s = must_compute(p, health_of(p, {0, 2, 5}), envoy_default_panic_threshold);
    EXPECT_EQ(load(s), (loads{0, 100, 0}));
    for (uint64_t h = 0; h < 10000; ++h) {
        const choice c = s.choose(h * 0x9e3779b97f4a7c15ULL);
        ASSERT_TRUE(c.ok);
        ASSERT_EQ(c.level, 1) << h;
        ASSERT_FALSE(c.panic);
    }
    // And on to P2 when P1 fails too.
    const selector s2 = must_compute(p, health_of(p, {0, 0, 5}), envoy_default_panic_threshold);
    EXPECT_EQ(load(s2), (loads{0, 0, 100}));
}

TEST(LocalityPriorityLoadTest, ChooseFollowsTheLoad)
{
    const plan p = make_plan({4, 4});
    const selector s = must_compute(p, health_of(p, {2, 4}), 0);
    const int n = 200000;
    int to_p0 = 0;
    for (int i = 0; i < n; ++i) {
        const choice c = s.choose(static_cast<uint64_t>(i));
        ASSERT_TRUE(c.ok);
        ASSERT_EQ(c.group, all_groups);
        to_p0 += c.level == 0 ? 1 : 0;
    }
    // Stated tolerance: within 1 point of the computed 70%.
    EXPECT_NEAR(100.0 * to_p0 / n, 70.0, 1.0);
    // Deterministic per hash.
    for (uint64_t h = 0; h < 1000; ++h) {
        EXPECT_EQ(s.choose(h).level, s.choose(h).level);
    }
}

TEST(LocalityPriorityLoadTest, NoPanicWhileNormalizedAvailabilityIsFull)
{
    // P0 is only 10% healthy (below the 50% threshold), but P0 + P1 availability is 100.
    const plan p = make_plan({10, 10});
    const selector s = must_compute(p, health_of(p, {1, 10}), 50);
    EXPECT_EQ(load(s), (loads{14, 86}));
    EXPECT_FALSE(s.in_panic(0));
    EXPECT_FALSE(s.total_panic());
}

TEST(LocalityPriorityLoadTest, TotalPanicSpreadsByEndpointCount)
{
    // Health 28 and 14 (total 42 < 100); 20% and 10% healthy are both below 50%: every
    // level panics, load follows endpoint counts and all endpoints are used.
    const plan p = make_plan({10, 30});
    const selector s = must_compute(p, health_of(p, {2, 3}), 50);
    EXPECT_TRUE(s.total_panic());
    EXPECT_EQ(load(s), (loads{25, 75}));
    const choice c = s.choose(1);
    EXPECT_TRUE(c.ok);
    EXPECT_TRUE(c.panic);
}

TEST(LocalityPriorityLoadTest, PartialPanicKeepsHealthLoads)
{
    // Threshold 15: P0 (20% healthy) is fine, P1 (10%) panics. Loads stay health-based:
    // 28 * 100 / 42 = 66, 14 * 100 / 42 = 33, 1 left over to P0.
    const plan p = make_plan({10, 10});
    const selector s = must_compute(p, health_of(p, {2, 1}), 15);
    EXPECT_FALSE(s.total_panic());
    EXPECT_EQ(load(s), (loads{67, 33}));
    EXPECT_FALSE(s.in_panic(0));
    EXPECT_TRUE(s.in_panic(1));
    bool saw_p1 = false;
    for (uint64_t h = 0; h < 1000; ++h) {
        const choice c = s.choose(h);
        EXPECT_EQ(c.panic, c.level == 1);
        saw_p1 = saw_p1 || c.level == 1;
    }
    EXPECT_TRUE(saw_p1);
}

TEST(LocalityPriorityLoadTest, SingleLevelPanicThreshold)
{
    const plan p = make_plan({10});
    // 40% healthy (health 56) is below Envoy's 50% threshold: panic, all endpoints.
    const selector low = must_compute(p, health_of(p, {4}), envoy_default_panic_threshold);
    EXPECT_TRUE(low.in_panic(0));
    EXPECT_TRUE(low.choose(5).panic);
    // 50% healthy is not below 50%: healthy endpoints only.
    const selector at = must_compute(p, health_of(p, {5}), envoy_default_panic_threshold);
    EXPECT_FALSE(at.in_panic(0));
    // Istio with outlierDetection and the default minHealthPercent 0: never panic.
    const selector istio = must_compute(p, health_of(p, {1}), 0);
    EXPECT_FALSE(istio.in_panic(0));
    EXPECT_EQ(load(istio), (loads{100}));
    EXPECT_TRUE(istio.choose(5).ok);
}

TEST(LocalityPriorityLoadTest, NothingHealthyWithPanicDisabledIsNoHealthyUpstream)
{
    const plan p = make_plan({3, 3});
    const selector s = must_compute(p, health_of(p, {0, 0}), 0);
    EXPECT_EQ(load(s), (loads{100, 0}));
    for (uint64_t h = 0; h < 100; ++h) {
        const choice c = s.choose(h);
        EXPECT_FALSE(c.ok);
        EXPECT_EQ(c.level, 0);
    }
}

TEST(LocalityPriorityLoadTest, NothingHealthyWithPanicEnabledUsesEverything)
{
    const plan p = make_plan({3, 1});
    const selector s = must_compute(p, health_of(p, {0, 0}), envoy_default_panic_threshold);
    EXPECT_TRUE(s.total_panic());
    EXPECT_EQ(load(s), (loads{75, 25}));
    const choice c = s.choose(3);
    EXPECT_TRUE(c.ok);
    EXPECT_TRUE(c.panic);
}

TEST(LocalityPriorityLoadTest, EmptyPlanNeverChooses)
{
    const plan p;
    const selector s = must_compute(p, {}, 50);
    EXPECT_TRUE(s.load().empty());
    EXPECT_FALSE(s.choose(0).ok);
    EXPECT_FALSE(selector{}.choose(7).ok);
}

TEST(LocalityPriorityLoadTest, HealthOfTheWrongSizeIsAnError)
{
    const plan p = make_plan({2});
    const std::vector<health> h(3, health::healthy);
    EXPECT_FALSE(selector::compute(p, h, 50).ok());
}

TEST(LocalityPriorityLoadTest, ExcludedEndpointsDoNotCount)
{
    // A plan from build_plan: same-zone P0 has 2 endpoints, one excluded by weight 0.
    node self;
    self.locality = {"r1", "z1", ""};
    self.network = "n1";
    std::vector<endpoint> eps(4);
    for (auto& e : eps) {
        e.network = "n1";
        e.locality = {"r1", "z1", ""};
    }
    eps[2].locality.zone = "z2";
    eps[3].locality.zone = "z2";
    eps[1].weight = 0;
    policy pol;
    pol.distribution = mode::prefer_close;
    auto p = build_plan(self, eps, pol);
    ASSERT_TRUE(p.ok());
    std::vector<health> h = {health::healthy, health::unhealthy, health::healthy, health::healthy};
    const selector s = must_compute(*p, h, 0);
    EXPECT_EQ(load(s), (loads{100, 0})); // the unhealthy endpoint is excluded, P0 is 1/1
    h[0] = health::unhealthy;
    const selector s2 = must_compute(*p, h, 0);
    EXPECT_EQ(load(s2), (loads{0, 100})); // full failover to the other zone
}

TEST(LocalityPriorityLoadTest, DistributeEffectiveWeightFollowsAvailability)
{
    // ISTIO.md / Envoy locality_weight: X weight 1, Y weight 2, X 50% available:
    // X gets 1 * 0.7 / (1 * 0.7 + 2) = 25.9%.
    node self;
    self.locality = {"r1", "zx", ""};
    std::vector<endpoint> eps(4);
    eps[0].locality = eps[1].locality = {"r1", "zx", ""};
    eps[2].locality = eps[3].locality = {"r1", "zy", ""};
    policy pol;
    pol.use_lb_setting = true;
    pol.setting.distribute = {{"r1", {{"r1/zx", 1}, {"r1/zy", 2}}}};
    auto p = build_plan(self, eps, pol);
    ASSERT_TRUE(p.ok());
    ASSERT_EQ(p->levels.size(), 1U);
    ASSERT_EQ(p->levels[0].groups.size(), 2U);
    EXPECT_EQ(p->levels[0].groups[0].weight, 1U);
    EXPECT_EQ(p->levels[0].groups[1].weight, 2U);

    const std::vector<health> all = {health::healthy, health::healthy, health::healthy,
                                     health::healthy};
    const selector full = must_compute(*p, all, 0);
    EXPECT_NEAR(full.group_share(0, 0), 1.0 / 3.0, 1e-6);

    const std::vector<health> half_x = {health::healthy, health::unhealthy, health::healthy,
                                        health::healthy};
    const selector s = must_compute(*p, half_x, 0);
    EXPECT_NEAR(s.group_share(0, 0), 0.7 / 2.7, 1e-6);
    EXPECT_NEAR(s.group_share(0, 1), 2.0 / 2.7, 1e-6);
    const int n = 200000;
    int to_x = 0;
    for (int i = 0; i < n; ++i) {
        const choice c = s.choose(static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL + 1);
        ASSERT_TRUE(c.ok);
        ASSERT_NE(c.group, all_groups);
        to_x += c.group == 0 ? 1 : 0;
    }
    // Stated tolerance: within 1 point of 25.9%.
    EXPECT_NEAR(100.0 * to_x / n, 25.93, 1.0);

    // X entirely down: everything goes to Y.
    const std::vector<health> x_down = {health::unhealthy, health::unhealthy, health::healthy,
                                        health::healthy};
    const selector d = must_compute(*p, x_down, 0);
    EXPECT_EQ(d.group_share(0, 0), 0.0);
    for (uint64_t h = 0; h < 1000; ++h) {
        EXPECT_EQ(d.choose(h).group, 1);
    }
}

} // namespace
} // namespace sluice::locality
