// l7::cluster_lb: Envoy's load balancers as Istio configures them (LEAST_REQUEST P2C,
// ROUND_ROBIN, RANDOM, PASSTHROUGH, ring hash, Maglev) over locality levels under health
// (failover, panic), plus the consistent-hash key hash and the generated-cookie helpers.
// Pure: no EAL; every random draw comes from a seeded engine.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sluice/l7/lb.hh"
#include "sluice/locality/levels.hh"
#include "sluice/maglev/maglev.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::l7 {
namespace {

using simple_t = snapshot::lb_policy::simple_t;
using algorithm_t = snapshot::hash_policy::algorithm_t;

// A cluster whose endpoint i has weight `weights[i]` and sits in level `levels[i]` (all in
// level 0 when `levels` is empty). Addresses 10.0.0.(i+1):80.
snapshot::cluster make_cluster(const std::vector<uint32_t>& weights,
                               const std::vector<uint32_t>& levels = {})
{
    snapshot::cluster c;
    c.name = "outbound|80||echo.test.svc.cluster.local";
    c.host = "echo.test.svc.cluster.local";
    c.port = 80;
    uint32_t nlevels = 1;
    for (const uint32_t l : levels) {
        nlevels = std::max(nlevels, l + 1);
    }
    c.plan.levels.resize(nlevels);
    for (uint32_t l = 0; l < nlevels; ++l) {
        c.plan.levels[l].tier = l;
    }
    for (size_t i = 0; i < weights.size(); ++i) {
        snapshot::endpoint e;
        e.address = "10.0.0." + std::to_string(i + 1);
        e.port = 80;
        e.id = maglev::stable_key("|" + e.address + ":80");
        e.weight = weights[i];
        c.endpoints.push_back(e);
        const uint32_t l = levels.empty() ? 0 : levels[i];
        c.plan.level_of.push_back(l);
        c.plan.levels[l].endpoints.push_back(static_cast<uint32_t>(i));
        c.plan.levels[l].weights.push_back(weights[i]);
    }
    return c;
}

// unhealthy flags as build() takes them (std::vector<bool> has no contiguous storage).
struct flags {
    std::unique_ptr<bool[]> v;
    size_t n = 0;
    explicit flags(const std::vector<int>& bad)
        : v(std::make_unique<bool[]>(bad.size())), n(bad.size())
    {
        for (size_t i = 0; i < n; ++i) {
            v[i] = bad[i] != 0;
        }
    }
    std::span<const bool> span() const { return {v.get(), n}; }
};

cluster_lb must_build(const snapshot::cluster& c, const std::vector<int>& bad = {},
                      uint64_t seed = 0)
{
    const flags f(bad);
    auto lb = cluster_lb::build(c, f.span(), seed);
    EXPECT_TRUE(lb.ok()) << (lb.ok() ? "" : lb.err().to_string());
    return lb.ok() ? std::move(lb).value() : cluster_lb{};
}

// Picks `n` times with fresh random draws (and no hash); counts per endpoint index.
std::map<uint32_t, uint32_t> spread(const cluster_lb& lb, uint32_t n,
                                    std::span<const uint32_t> active = {}, uint64_t seed = 1)
{
    std::mt19937_64 rng(seed);
    std::map<uint32_t, uint32_t> count;
    for (uint32_t i = 0; i < n; ++i) {
        ++count[lb.pick({std::nullopt, rng()}, active)];
    }
    return count;
}

double share(const std::map<uint32_t, uint32_t>& m, uint32_t k, uint32_t n)
{
    const auto it = m.find(k);
    return it == m.end() ? 0.0 : static_cast<double>(it->second) / n;
}

snapshot::cluster with_policy(snapshot::cluster c, simple_t s)
{
    c.policy.lb.simple = s;
    return c;
}

snapshot::cluster with_hash(snapshot::cluster c, algorithm_t a)
{
    snapshot::hash_policy h;
    h.key = snapshot::hash_policy::key_t::header;
    h.header_name = "x-user";
    h.algorithm = a;
    c.policy.lb.hash = h;
    return c;
}

std::string key(uint32_t i)
{
    return "user-" + std::to_string(i);
}

// ------------------------------------------------------------------------ RANDOM

TEST(LbRandom, EqualWeightsSpreadEvenly)
{
    const auto lb = must_build(with_policy(make_cluster({1, 1, 1}), simple_t::random));
    EXPECT_EQ(lb.algorithm(), lb_algorithm::random);
    const auto m = spread(lb, 30000);
    ASSERT_EQ(m.size(), 3U);
    for (uint32_t e = 0; e < 3; ++e) {
        EXPECT_NEAR(m.at(e), 10000.0, 500.0) << e; // +-5%
    }
}

TEST(LbRandom, WeightsAreHonoured)
{
    const auto lb = must_build(with_policy(make_cluster({80, 20}), simple_t::random));
    const auto m = spread(lb, 30000);
    EXPECT_NEAR(share(m, 0, 30000), 0.80, 0.02);
    EXPECT_NEAR(share(m, 1, 30000), 0.20, 0.02);
}

TEST(LbRandom, WeightZeroIsNeverChosen)
{
    for (const simple_t s : {simple_t::random, simple_t::least_request, simple_t::round_robin}) {
        const auto lb = must_build(with_policy(make_cluster({1, 0, 1}), s));
        const auto m = spread(lb, 3000);
        EXPECT_EQ(m.count(1), 0U) << static_cast<int>(s);
        EXPECT_EQ(m.size(), 2U);
    }
}

// ------------------------------------------------------------------------ LEAST_REQUEST

TEST(LbLeastRequest, IsTheDefaultAndSpreadsEvenlyWhenIdle)
{
    const auto lb = must_build(make_cluster({1, 1, 1}));
    EXPECT_EQ(lb.algorithm(), lb_algorithm::least_request);
    EXPECT_EQ(lb.simple(), simple_t::least_request);
    const std::vector<uint32_t> idle(3, 0);
    const auto m = spread(lb, 30000, idle);
    for (uint32_t e = 0; e < 3; ++e) {
        EXPECT_NEAR(m.at(e), 10000.0, 500.0) << e;
    }
}

TEST(LbLeastRequest, PowerOfTwoChoicesAvoidsTheLoaded)
{
    const auto lb = must_build(make_cluster({1, 1, 1}));
    // Envoy's N_CHOICES samples with replacement: the loaded endpoint wins only when both
    // draws land on it, 1/9 of the time; the others split the rest.
    const std::vector<uint32_t> active = {100, 0, 0};
    const auto m = spread(lb, 30000, active);
    EXPECT_NEAR(share(m, 0, 30000), 1.0 / 9, 0.01);
    EXPECT_NEAR(share(m, 1, 30000), 4.0 / 9, 0.015);
    EXPECT_NEAR(share(m, 2, 30000), 4.0 / 9, 0.015);

    // With more endpoints the loaded one all but disappears.
    const auto lb8 = must_build(make_cluster(std::vector<uint32_t>(8, 1)));
    std::vector<uint32_t> active8(8, 0);
    active8[0] = 100;
    const auto m8 = spread(lb8, 30000, active8);
    EXPECT_LT(share(m8, 0, 30000), 0.03);

    // One idle endpoint among loaded ones wins whenever it is drawn: 1 - (2/3)^2 = 5/9.
    const std::vector<uint32_t> busy = {0, 7, 7};
    const auto mb = spread(lb, 30000, busy);
    EXPECT_NEAR(share(mb, 0, 30000), 5.0 / 9, 0.015);
}

TEST(LbLeastRequest, LeastConnIsLeastRequest)
{
    const auto lb = must_build(with_policy(make_cluster({1, 1}), simple_t::least_conn));
    EXPECT_EQ(lb.algorithm(), lb_algorithm::least_request);
    EXPECT_EQ(lb.simple(), simple_t::least_conn);
    const std::vector<uint32_t> active = {0, 5};
    const auto m = spread(lb, 10000, active);
    EXPECT_NEAR(share(m, 0, 10000), 0.75, 0.02); // loses only when both draws hit 1
}

TEST(LbLeastRequest, WeightedIsWeightedRandomWhenIdleAndShiftsUnderLoad)
{
    const auto lb = must_build(make_cluster({3, 1}));
    const std::vector<uint32_t> idle = {0, 0};
    const auto m = spread(lb, 30000, idle);
    EXPECT_NEAR(share(m, 0, 30000), 0.75, 0.02);
    // Endpoint 0 at 9 active per 3 weight is costlier than endpoint 1 at 0: it wins only when
    // both draws land on it (9/16).
    const std::vector<uint32_t> loaded = {9, 0};
    const auto ml = spread(lb, 30000, loaded);
    EXPECT_NEAR(share(ml, 0, 30000), 9.0 / 16, 0.02);
    // Missing active entries count as idle.
    const auto mm = spread(lb, 30000, {});
    EXPECT_NEAR(share(mm, 0, 30000), 0.75, 0.02);
}

// ------------------------------------------------------------------------ ROUND_ROBIN

TEST(LbRoundRobin, EqualWeightsRotateExactly)
{
    const auto lb = must_build(with_policy(make_cluster({1, 1, 1}), simple_t::round_robin));
    std::mt19937_64 rng(7);
    for (uint32_t i = 0; i < 30; ++i) {
        EXPECT_EQ(lb.pick({std::nullopt, rng()}), i % 3) << i;
    }
    // The seed offsets the cursor; the rotation stays exact.
    const auto seeded =
        must_build(with_policy(make_cluster({1, 1, 1}), simple_t::round_robin), {}, 4);
    for (uint32_t i = 0; i < 9; ++i) {
        EXPECT_EQ(seeded.pick({std::nullopt, rng()}), (i + 1) % 3) << i;
    }
}

TEST(LbRoundRobin, WeightedProportionsAreExactAndInterleaved)
{
    const auto lb = must_build(with_policy(make_cluster({3, 2, 1}), simple_t::round_robin));
    std::vector<uint32_t> seq;
    for (uint32_t i = 0; i < 6000; ++i) {
        seq.push_back(lb.pick({std::nullopt, 0}));
    }
    std::array<uint32_t, 3> total{};
    for (size_t w = 0; w < seq.size(); w += 6) {
        std::array<uint32_t, 3> window{};
        for (size_t k = w; k < w + 6; ++k) {
            ++window[seq[k]];
            ++total[seq[k]];
        }
        // Every period of 6 picks holds each endpoint its weight's worth, within one.
        EXPECT_NEAR(window[0], 3, 1) << w;
        EXPECT_NEAR(window[1], 2, 1) << w;
        EXPECT_NEAR(window[2], 1, 1) << w;
    }
    EXPECT_NEAR(total[0], 3000, 1);
    EXPECT_NEAR(total[1], 2000, 1);
    EXPECT_NEAR(total[2], 1000, 1);
    // Smooth: the heavy endpoint is never picked three times in a row.
    for (size_t k = 2; k < seq.size(); ++k) {
        EXPECT_FALSE(seq[k] == 0 && seq[k - 1] == 0 && seq[k - 2] == 0) << k;
    }
}

TEST(LbRoundRobin, ScheduleSurvivesItsRebase)
{
    // Weights 2:1 advance the earliest deadline by 2^40 per 3 picks; the schedule rebases at
    // 2^62, i.e. after 3 * 2^22 picks. The rotation must not notice.
    const auto lb = must_build(with_policy(make_cluster({2, 1}), simple_t::round_robin));
    constexpr uint32_t picks = 3 * (1U << 22) + 3000;
    uint32_t ones = 0;
    uint32_t window_ones = 0;
    for (uint32_t i = 0; i < picks; ++i) {
        const uint32_t e = lb.pick({});
        ones += e;
        if (i % 3 == 2) {
            window_ones += e;
            if (window_ones != 1) {
                ADD_FAILURE() << "period ending at pick " << i << " has " << window_ones;
                break;
            }
            window_ones = 0;
        } else {
            window_ones += e;
        }
    }
    EXPECT_EQ(ones, picks / 3);
}

TEST(LbRoundRobin, CopiesHaveIndependentCursors)
{
    const auto a = must_build(with_policy(make_cluster({1, 1}), simple_t::round_robin));
    EXPECT_EQ(a.pick({}), 0U);
    const cluster_lb b = a; // NOLINT(performance-unnecessary-copy-initialization)
    EXPECT_EQ(a.pick({}), 1U);
    EXPECT_EQ(b.pick({}), 1U);
    EXPECT_EQ(b.pick({}), 0U);
}

// ------------------------------------------------------------------------ consistent hash

class LbConsistent : public ::testing::TestWithParam<algorithm_t> {};

TEST_P(LbConsistent, SameKeySameEndpointAndEvenSpread)
{
    const auto c = with_hash(make_cluster({1, 1, 1}), GetParam());
    const auto lb = must_build(c);
    EXPECT_TRUE(lb.consistent());
    std::mt19937_64 rng(3);
    std::map<uint32_t, uint32_t> count;
    for (uint32_t i = 0; i < 30000; ++i) {
        const uint64_t h = lb_hash_key(key(i));
        const uint32_t e = lb.pick({h, rng()});
        ASSERT_LT(e, 3U);
        EXPECT_EQ(lb.pick({h, rng()}), e); // the random draw does not matter
        ++count[e];
    }
    for (uint32_t e = 0; e < 3; ++e) {
        EXPECT_NEAR(count[e], 10000.0, 1500.0) << e; // ring of ~1024 entries: +-15%
    }
    // A rebuild (same health) gives the same answers.
    const auto again = must_build(c);
    for (uint32_t i = 0; i < 1000; ++i) {
        const uint64_t h = lb_hash_key(key(i));
        EXPECT_EQ(again.pick({h, 0}), lb.pick({h, 0}));
    }
}

TEST_P(LbConsistent, WeightsAreHonoured)
{
    const auto lb = must_build(with_hash(make_cluster({80, 20}), GetParam()));
    std::map<uint32_t, uint32_t> count;
    for (uint32_t i = 0; i < 30000; ++i) {
        ++count[lb.pick({lb_hash_key(key(i)), 0})];
    }
    EXPECT_NEAR(share(count, 0, 30000), 0.80, 0.03);
}

TEST_P(LbConsistent, RemovingAnEndpointMovesOnlyItsKeys)
{
    constexpr uint32_t n = 10;
    const auto c = with_hash(make_cluster(std::vector<uint32_t>(n, 1)), GetParam());
    const auto before = must_build(c);
    std::vector<int> bad(n, 0);
    bad[3] = 1; // ejected: 90% healthy, no panic, no spill
    const auto after = must_build(c, bad);
    constexpr uint32_t keys = 20000;
    uint32_t moved = 0;
    uint32_t moved_from_survivor = 0;
    for (uint32_t i = 0; i < keys; ++i) {
        const uint64_t h = lb_hash_key(key(i));
        const uint32_t a = before.pick({h, 0});
        const uint32_t b = after.pick({h, 0});
        EXPECT_NE(b, 3U);
        if (a != b) {
            ++moved;
            moved_from_survivor += a != 3 ? 1 : 0;
        }
    }
    const double frac = static_cast<double>(moved) / keys;
    EXPECT_LT(frac, 1.0 / n + 0.03) << moved;
    EXPECT_GT(frac, 1.0 / n - 0.04) << moved;
    // Ring hash: entries of survivors are untouched, so only the removed endpoint's keys move.
    // Maglev: a little extra churn among survivors.
    if (GetParam() == algorithm_t::ring_hash) {
        EXPECT_EQ(moved_from_survivor, 0U);
    } else {
        EXPECT_LT(static_cast<double>(moved_from_survivor) / keys, 0.03);
    }
}

TEST_P(LbConsistent, MissingKeyIsRandom)
{
    const auto lb = must_build(with_hash(make_cluster({1, 1, 1}), GetParam()));
    const auto m = spread(lb, 30000);
    ASSERT_EQ(m.size(), 3U);
    for (uint32_t e = 0; e < 3; ++e) {
        EXPECT_NEAR(m.at(e), 10000.0, 1500.0) << e;
    }
}

TEST_P(LbConsistent, HashTakesPrecedenceOverSimple)
{
    const auto lb =
        must_build(with_hash(with_policy(make_cluster({1, 1}), simple_t::round_robin), GetParam()));
    EXPECT_EQ(lb.algorithm(),
              GetParam() == algorithm_t::maglev ? lb_algorithm::maglev : lb_algorithm::ring_hash);
    const uint64_t h = lb_hash_key("alice");
    const uint32_t first = lb.pick({h, 0});
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(lb.pick({h, 0}), first);
    }
}

INSTANTIATE_TEST_SUITE_P(Lb, LbConsistent,
                         ::testing::Values(algorithm_t::ring_hash, algorithm_t::maglev),
                         [](const auto& info) {
                             return info.param == algorithm_t::maglev ? std::string("Maglev")
                                                                      : std::string("RingHash");
                         });

TEST(LbRingHash, RingSizeFollowsMinimumRingSize)
{
    auto c = with_hash(make_cluster({1, 1, 1}), algorithm_t::ring_hash);
    const auto lb = must_build(c);
    // ceil(1024 / 3) = 342 entries each (Envoy's scale).
    EXPECT_NE(lb.describe().find("ring 1026"), std::string::npos) << lb.describe();
    c.policy.lb.hash->minimum_ring_size = 0; // unset: Envoy's 1024
    EXPECT_NE(must_build(c).describe().find("ring 1026"), std::string::npos);
    c.policy.lb.hash->minimum_ring_size = 3000;
    EXPECT_NE(must_build(c).describe().find("ring 3000"), std::string::npos);
}

TEST(LbMaglev, TableSizeIsHonoured)
{
    auto c = with_hash(make_cluster({1, 1, 1}), algorithm_t::maglev);
    c.policy.lb.hash->maglev_table_size = 251;
    const auto lb = must_build(c);
    EXPECT_NE(lb.describe().find("maglev 251"), std::string::npos) << lb.describe();
    c.policy.lb.hash->maglev_table_size = 100; // not prime
    const flags none({0, 0, 0});
    EXPECT_FALSE(cluster_lb::build(c, none.span()).ok());
}

// ------------------------------------------------------------------------ health, locality

TEST(LbHealth, UnhealthyEndpointsAreExcluded)
{
    for (const simple_t s : {simple_t::least_request, simple_t::round_robin, simple_t::random}) {
        const auto lb = must_build(with_policy(make_cluster({1, 1, 1, 1}), s), {0, 1, 0, 0});
        const auto m = spread(lb, 6000);
        EXPECT_EQ(m.count(1), 0U);
        EXPECT_EQ(m.size(), 3U);
    }
    const auto lb =
        must_build(with_hash(make_cluster({1, 1, 1, 1}), algorithm_t::ring_hash), {0, 1, 0, 0});
    for (uint32_t i = 0; i < 3000; ++i) {
        EXPECT_NE(lb.pick({lb_hash_key(key(i)), 0}), 1U);
    }
}

TEST(LbHealth, PanicUsesAllEndpoints)
{
    // 1 of 4 healthy: 25% < Envoy's 50% panic threshold: every endpoint is used.
    auto c = make_cluster({1, 1, 1, 1});
    const auto lb = must_build(c, {1, 1, 0, 1});
    EXPECT_TRUE(lb.selector().in_panic(0));
    const auto m = spread(lb, 8000);
    ASSERT_EQ(m.size(), 4U);
    for (uint32_t e = 0; e < 4; ++e) {
        EXPECT_NEAR(share(m, e, 8000), 0.25, 0.03) << e;
    }
    // Istio with outlierDetection: minHealthPercent 0 disables panic: only the healthy one.
    c.policy.panic_threshold = 0;
    const auto strict = must_build(c, {1, 1, 0, 1});
    const auto ms = spread(strict, 1000);
    ASSERT_EQ(ms.size(), 1U);
    EXPECT_EQ(ms.begin()->first, 2U);
    // Nothing healthy and no panic: no healthy upstream.
    const auto none = must_build(c, {1, 1, 1, 1});
    EXPECT_EQ(none.pick({std::nullopt, 42}), no_endpoint_index);
}

TEST(LbLocality, FailoverToTheNextLevel)
{
    // P0 = {0, 1}, P1 = {2, 3}.
    const auto c = make_cluster({1, 1, 1, 1}, {0, 0, 1, 1});
    const auto healthy = must_build(c);
    const auto m0 = spread(healthy, 4000);
    EXPECT_EQ(m0.count(2) + m0.count(3), 0U); // P0 takes everything while healthy
    const auto failed = must_build(c, {1, 1, 0, 0});
    EXPECT_EQ(failed.selector().load()[1], 100);
    const auto m1 = spread(failed, 4000);
    EXPECT_EQ(m1.count(0) + m1.count(1), 0U);
    EXPECT_NEAR(share(m1, 2, 4000), 0.5, 0.04);
    // Half of P0 healthy: 70% stays, 30% spills (1.4 overprovisioning), only to healthy ones.
    const auto half = must_build(c, {1, 0, 0, 0});
    const auto mh = spread(half, 20000);
    EXPECT_EQ(mh.count(0), 0U);
    EXPECT_NEAR(share(mh, 1, 20000), 0.70, 0.02);
    EXPECT_NEAR(share(mh, 2, 20000) + share(mh, 3, 20000), 0.30, 0.02);
}

TEST(LbLocality, ConsistentHashFailsOverToo)
{
    const auto c = with_hash(make_cluster({1, 1, 1, 1}, {0, 0, 1, 1}), algorithm_t::maglev);
    const auto failed = must_build(c, {1, 1, 0, 0});
    for (uint32_t i = 0; i < 2000; ++i) {
        const uint32_t e = failed.pick({lb_hash_key(key(i)), 0});
        EXPECT_TRUE(e == 2 || e == 3) << e;
    }
}

TEST(LbLocality, DistributeGroupsSplitByWeight)
{
    // One level, two locality groups weighted 80/20 (localityLbSetting.distribute).
    auto c = make_cluster({1, 1, 1, 1});
    c.plan.locality_weighted = true;
    locality::locality_group a;
    a.locality = {"r", "a", ""};
    a.weight = 80;
    a.endpoints = {0, 1};
    locality::locality_group b;
    b.locality = {"r", "b", ""};
    b.weight = 20;
    b.endpoints = {2, 3};
    c.plan.levels[0].groups = {a, b};
    const auto lb = must_build(c);
    EXPECT_EQ(lb.candidates(0, 1, false).size(), 2U);
    const auto m = spread(lb, 30000);
    EXPECT_NEAR(share(m, 0, 30000) + share(m, 1, 30000), 0.80, 0.02);
    EXPECT_NEAR(share(m, 2, 30000) + share(m, 3, 30000), 0.20, 0.02);
}

TEST(LbReady, NotReadyIsNeverChosenEvenInPanic)
{
    // compile() leaves not-ready endpoints out of the plan; a plan that still names one must
    // not send it traffic, healthy or in panic.
    auto c = make_cluster({1, 1, 1, 1});
    c.endpoints[0].ready = false;
    const auto lb = must_build(c);
    EXPECT_EQ(spread(lb, 3000).count(0), 0U);
    const auto panic = must_build(c, {0, 1, 1, 0});
    EXPECT_TRUE(panic.selector().in_panic(0));
    const auto m = spread(panic, 3000);
    EXPECT_EQ(m.count(0), 0U);
    EXPECT_EQ(m.size(), 3U);
    EXPECT_EQ(panic.candidates(0, locality::all_groups, true).size(), 3U);
    EXPECT_EQ(panic.candidates(0, locality::all_groups, false).size(), 1U);
}

TEST(LbDns, NamedEndpointsAreUsable)
{
    auto c = make_cluster({1, 1});
    c.dns = true;
    c.endpoints[0].address = "a.example.com";
    c.endpoints[1].address = "b.example.com";
    EXPECT_EQ(spread(must_build(c), 1000).size(), 2U);
    EXPECT_EQ(spread(must_build(with_hash(c, algorithm_t::ring_hash)), 1000).size(), 2U);
}

// ------------------------------------------------------------------------ nothing to pick

TEST(LbNone, MissingEmptyAndDefaultPickNothing)
{
    EXPECT_EQ(cluster_lb{}.pick({std::nullopt, 1}), no_endpoint_index);
    auto missing = make_cluster({1, 1});
    missing.missing = true;
    const auto lm = must_build(missing);
    EXPECT_EQ(lm.algorithm(), lb_algorithm::none);
    EXPECT_EQ(lm.pick({std::nullopt, 1}), no_endpoint_index);
    snapshot::cluster empty;
    empty.name = "outbound|80||none";
    const auto le = must_build(empty);
    EXPECT_EQ(le.pick({std::nullopt, 1}), no_endpoint_index);
    const auto lh = must_build(with_hash(empty, algorithm_t::maglev));
    EXPECT_EQ(lh.pick({7, 1}), no_endpoint_index);
    // All weights 0.
    const auto lz = must_build(make_cluster({0, 0}));
    EXPECT_EQ(lz.pick({std::nullopt, 1}), no_endpoint_index);
}

TEST(LbNone, HealthOfTheWrongSizeIsAnError)
{
    const auto c = make_cluster({1, 1, 1});
    const flags two({0, 1});
    const auto r = cluster_lb::build(c, two.span());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().to_string().find(c.name), std::string::npos);
}

TEST(LbPassthrough, ReturnsTheMarker)
{
    const auto lb = must_build(with_policy(make_cluster({1, 1}), simple_t::passthrough));
    EXPECT_EQ(lb.algorithm(), lb_algorithm::passthrough);
    EXPECT_EQ(lb.pick({std::nullopt, 5}), passthrough_index);
    EXPECT_NE(passthrough_index, no_endpoint_index);
    // Even with no endpoint at all (ORIGINAL_DST has none).
    EXPECT_EQ(must_build(with_policy(make_cluster({}), simple_t::passthrough)).pick({}),
              passthrough_index);
}

TEST(LbHealthTable, EmptyTableIsAllHealthy)
{
    const auto c = with_policy(make_cluster({1, 1, 1}), simple_t::round_robin);
    auto lb = cluster_lb::build(c, health::table{});
    ASSERT_TRUE(lb.ok());
    EXPECT_EQ(spread(*lb, 300).size(), 3U);
}

TEST(LbDescribe, NamesAlgorithmLevelsAndSets)
{
    const auto lb = must_build(make_cluster({2, 1, 1}, {0, 0, 1}), {0, 1, 0});
    const std::string d = lb.describe();
    EXPECT_NE(d.find("least_request"), std::string::npos) << d;
    EXPECT_NE(d.find("level 1"), std::string::npos) << d;
    EXPECT_NE(d.find("healthy {0}"), std::string::npos) << d;
    EXPECT_NE(d.find("all {0*2,1*1}"), std::string::npos) << d;
    EXPECT_EQ(lb_algorithm_name(lb_algorithm::ring_hash), "ring_hash");
}

// ------------------------------------------------------------------------ keys and cookies

TEST(LbHashKey, IsXxHash64SeedZero)
{
    // Published xxHash64 vectors (the function Envoy's HashUtil::xxHash64 uses).
    EXPECT_EQ(lb_hash_key(""), 0xEF46DB3751D8E999ULL);
    EXPECT_EQ(lb_hash_key("a"), 0xD24EC4F1A98C6E5BULL);
    EXPECT_EQ(lb_hash_key("abc"), 0x44BC2CF5AD770999ULL);
    EXPECT_EQ(lb_hash_key("Hello, World!"), 0xC49AACF8080FE47FULL);
    EXPECT_EQ(lb_hash_key(std::string(32, 'a')), 0x856E843298F99AD7ULL);
    EXPECT_EQ(lb_hash_key(std::string(33, 'a')), 0x18F3FF0C21E3B24BULL);
    EXPECT_NE(lb_hash_key("user-1"), lb_hash_key("user-2"));
}

TEST(LbCookie, GeneratedValueIsSixteenLowerHexDigits)
{
    const auto v = cookie_value(12345);
    const std::string s(v.begin(), v.end());
    ASSERT_EQ(s.size(), 16U);
    for (const char ch : s) {
        EXPECT_TRUE((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) << s;
    }
    EXPECT_EQ(cookie_value(12345), v); // deterministic
    EXPECT_NE(cookie_value(12346), v);
    const auto z = cookie_value(0);
    EXPECT_EQ(std::string(z.begin(), z.end()).size(), 16U);
}

TEST(LbCookie, SetCookieIsFormattedAsEnvoyDoes)
{
    std::array<char, 128> buf{};
    size_t n = format_set_cookie(buf, "session", "0123456789abcdef", "/app", 3600);
    EXPECT_EQ(std::string_view(buf.data(), n),
              "session=\"0123456789abcdef\"; Max-Age=3600; Path=/app; HttpOnly");
    EXPECT_EQ(n, set_cookie_size("session", "0123456789abcdef", "/app", 3600));
    // ttl 0: a session cookie (no Max-Age); no path: no Path.
    n = format_set_cookie(buf, "s", "v", "", 0);
    EXPECT_EQ(std::string_view(buf.data(), n), "s=\"v\"; HttpOnly");
    n = format_set_cookie(buf, "s", "v", "", 10);
    EXPECT_EQ(std::string_view(buf.data(), n), "s=\"v\"; Max-Age=10; HttpOnly");
    // Too small: nothing.
    std::array<char, 8> tiny{};
    EXPECT_EQ(format_set_cookie(tiny, "session", "v", "/", 1), 0U);
    const size_t exact = set_cookie_size("s", "v", "/", 9);
    std::vector<char> fit(exact);
    EXPECT_EQ(format_set_cookie(fit, "s", "v", "/", 9), exact);
    EXPECT_EQ(std::string_view(fit.data(), exact), "s=\"v\"; Max-Age=9; Path=/; HttpOnly");
}

TEST(LbCookie, GeneratedCookieIsSticky)
{
    const auto lb = must_build(with_hash(make_cluster({1, 1, 1}), algorithm_t::ring_hash));
    const auto v = cookie_value(99);
    const uint64_t h = lb_hash_key(std::string_view(v.data(), v.size()));
    const uint32_t e = lb.pick({h, 1});
    for (uint64_t r = 2; r < 20; ++r) {
        EXPECT_EQ(lb.pick({h, r}), e);
    }
}

} // namespace
} // namespace sluice::l7
