// Unit tests for lib/health: outlier detection (Istio/Envoy semantics) and the health table.
// Time is a fake steady clock: plain durations passed in, no sleeps (STYLE T6).
#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "sluice/health/health.hh"

namespace sluice::health {
namespace {

using namespace std::chrono_literals;
using ids = std::vector<uint64_t>;

/// A fake steady clock.
struct fake_clock {
    duration t{0};
    duration now() const { return t; }
    duration advance(duration d) { return t += d; }
    duration set(duration to) { return t = to; }
};

cluster_config make_cluster(std::string name, uint64_t n, outlier_config oc = {})
{
    cluster_config c{.name = std::move(name), .outlier = oc, .endpoints = {}};
    for (uint64_t i = 1; i <= n; ++i) {
        c.endpoints.push_back(i);
    }
    return c;
}

/// Reports `o` n times; returns how many of those reports changed the ejected set.
int report_n(detector& d, std::string_view cluster, uint64_t id, outcome o, uint32_t n,
             duration now)
{
    int changes = 0;
    for (uint32_t i = 0; i < n; ++i) {
        changes += d.report(cluster, id, o, now) ? 1 : 0;
    }
    return changes;
}

bool is_ejected(const detector& d, std::string_view cluster, uint64_t id)
{
    const auto s = d.status(cluster, id);
    EXPECT_TRUE(s.has_value()) << cluster << "/" << id;
    return s && s->ejected;
}

uint32_t multiplier(const detector& d, std::string_view cluster, uint64_t id)
{
    const auto s = d.status(cluster, id);
    EXPECT_TRUE(s.has_value()) << cluster << "/" << id;
    return s ? s->multiplier : 0;
}

// ---------------------------------------------------------------------------------------------
// Consecutive counters

TEST(HealthDetector, EjectsAtExactlyTheNthConsecutive5xx)
{
    detector d;
    fake_clock clk;
    d.configure({make_cluster("c", 10)}, clk.now()); // defaults: 5 consecutive 5xx
    for (int i = 0; i < 4; ++i) {
        EXPECT_FALSE(d.report("c", 3, outcome::http_5xx, clk.advance(1ms))) << i;
    }
    EXPECT_FALSE(is_ejected(d, "c", 3));
    EXPECT_EQ(d.status("c", 3)->consecutive_5xx, 4u);
    EXPECT_TRUE(d.report("c", 3, outcome::http_5xx, clk.advance(1ms)));
    EXPECT_EQ(d.ejected("c"), ids{3});
    EXPECT_EQ(d.ejections_active("c"), 1u);
    EXPECT_EQ(d.ejections_total("c"), 1u);
    EXPECT_EQ(d.status("c", 3)->last_kind, ejection_kind::consecutive_5xx);
    EXPECT_EQ(d.stats("c")->ejections_enforced_consecutive_5xx, 1u);
}

TEST(HealthDetector, CustomThresholdIsExact)
{
    detector d;
    outlier_config oc;
    oc.consecutive_5xx_errors = 2;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    EXPECT_FALSE(d.report("c", 1, outcome::http_5xx, 1s));
    EXPECT_TRUE(d.report("c", 1, outcome::http_5xx, 1s));
}

TEST(HealthDetector, SuccessResetsTheStreak)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 4, 1s), 0);
    EXPECT_FALSE(d.report("c", 1, outcome::success, 1s));
    EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 0u);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 4, 1s), 0);
    EXPECT_FALSE(is_ejected(d, "c", 1));
    EXPECT_TRUE(d.report("c", 1, outcome::http_5xx, 1s));
}

TEST(HealthDetector, StreaksArePerEndpoint)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    for (int i = 0; i < 4; ++i) {
        d.report("c", 1, outcome::http_5xx, 1s);
        d.report("c", 2, outcome::http_5xx, 1s);
    }
    EXPECT_TRUE(d.ejected("c").empty());
    EXPECT_TRUE(d.report("c", 2, outcome::http_5xx, 1s));
    EXPECT_EQ(d.ejected("c"), ids{2});
}

TEST(HealthDetector, GatewayThresholdIsIndependent)
{
    detector d;
    outlier_config oc;
    oc.consecutive_5xx_errors = 10;
    oc.consecutive_gateway_errors = 3;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_gateway_error, 2, 1s), 0);
    EXPECT_TRUE(d.report("c", 1, outcome::http_gateway_error, 1s));
    EXPECT_EQ(d.status("c", 1)->last_kind, ejection_kind::consecutive_gateway_failure);
    const auto st = d.stats("c");
    EXPECT_EQ(st->ejections_enforced_consecutive_gateway_failure, 1u);
    EXPECT_EQ(st->ejections_enforced_consecutive_5xx, 0u);
    // The 5xx streak counted the gateway errors too and is left alone by the gateway ejection.
    EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 3u);
}

TEST(HealthDetector, Http5xxResetsTheGatewayStreakButNotThe5xxStreak)
{
    detector d;
    outlier_config oc;
    oc.consecutive_5xx_errors = 10;
    oc.consecutive_gateway_errors = 3;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_gateway_error, 2, 1s), 0);
    EXPECT_FALSE(d.report("c", 1, outcome::http_5xx, 1s)); // a 500: gateway streak back to 0
    EXPECT_EQ(d.status("c", 1)->consecutive_gateway, 0u);
    EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 3u);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_gateway_error, 2, 1s), 0);
    EXPECT_FALSE(is_ejected(d, "c", 1)); // 4 gateway errors in 5 responses, only 2 in a row
    EXPECT_TRUE(d.report("c", 1, outcome::http_gateway_error, 1s));
    EXPECT_EQ(d.status("c", 1)->last_kind, ejection_kind::consecutive_gateway_failure);
    EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 6u);
}

TEST(HealthDetector, The5xxCheckFiresWhileTheGatewayStreakIsShort)
{
    detector d;
    outlier_config oc;
    oc.consecutive_5xx_errors = 6;
    oc.consecutive_gateway_errors = 4;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    report_n(d, "c", 1, outcome::http_gateway_error, 2, 1s);
    d.report("c", 1, outcome::http_5xx, 1s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_gateway_error, 2, 1s), 0);
    EXPECT_TRUE(d.report("c", 1, outcome::http_gateway_error, 1s)); // 6th 5xx, 3rd gateway
    EXPECT_EQ(d.status("c", 1)->last_kind, ejection_kind::consecutive_5xx);
}

TEST(HealthDetector, GatewayErrorsWinWhenBothThresholdsTripTogether)
{
    detector d;
    outlier_config oc;
    oc.consecutive_5xx_errors = 3;
    oc.consecutive_gateway_errors = 3;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_gateway_error, 3, 1s), 1);
    const auto st = d.stats("c");
    EXPECT_EQ(st->ejections_enforced_total, 1u);
    EXPECT_EQ(st->ejections_enforced_consecutive_gateway_failure, 1u);
    EXPECT_EQ(st->ejections_detected_total, 1u);
}

TEST(HealthDetector, GatewayUnsetOrZeroDisables)
{
    for (const std::optional<uint32_t> gw :
         {std::optional<uint32_t>{}, std::optional<uint32_t>{0}}) {
        detector d;
        outlier_config oc;
        oc.consecutive_5xx_errors = 0;
        oc.consecutive_gateway_errors = gw;
        d.configure({make_cluster("c", 10, oc)}, 0s);
        EXPECT_EQ(report_n(d, "c", 1, outcome::http_gateway_error, 100, 1s), 0);
        EXPECT_EQ(report_n(d, "c", 1, outcome::connect_failure, 100, 1s), 0);
        EXPECT_TRUE(d.ejected("c").empty());
        EXPECT_EQ(d.stats("c")->ejections_detected_total, 0u);
    }
}

TEST(HealthDetector, Consecutive5xxZeroDisables)
{
    detector d;
    outlier_config oc;
    oc.consecutive_5xx_errors = 0;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 100, 1s), 0);
    EXPECT_TRUE(d.ejected("c").empty());
}

TEST(HealthDetector, LocalOriginFailuresCountAs5xxAndGatewayErrorsWithoutSplit)
{
    {
        detector d;
        d.configure({make_cluster("c", 10)}, 0s);
        EXPECT_EQ(report_n(d, "c", 1, outcome::connect_failure, 2, 1s), 0);
        EXPECT_EQ(report_n(d, "c", 1, outcome::local_origin_failure, 2, 1s), 0);
        EXPECT_TRUE(d.report("c", 1, outcome::http_5xx, 1s)); // 5 in a row, of mixed origin
        EXPECT_EQ(d.status("c", 1)->last_kind, ejection_kind::consecutive_5xx);
    }
    {
        detector d;
        outlier_config oc;
        oc.consecutive_5xx_errors = 0;
        oc.consecutive_gateway_errors = 2;
        d.configure({make_cluster("c", 10, oc)}, 0s);
        EXPECT_FALSE(d.report("c", 1, outcome::connect_failure, 1s));
        EXPECT_TRUE(d.report("c", 1, outcome::local_origin_failure, 1s)); // 503, then 504
        EXPECT_EQ(d.status("c", 1)->last_kind, ejection_kind::consecutive_gateway_failure);
    }
}

TEST(HealthDetector, WithoutSplitTheLocalOriginThresholdIsIgnored)
{
    detector d;
    outlier_config oc;
    oc.consecutive_local_origin_failures = 2;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::connect_failure, 4, 1s), 0);
    EXPECT_EQ(d.status("c", 1)->consecutive_local_origin, 0u);
    EXPECT_TRUE(d.report("c", 1, outcome::connect_failure, 1s)); // the 5th: 5xx threshold
}

TEST(HealthDetector, SplitSeparatesLocalOriginFromExternalErrors)
{
    outlier_config oc;
    oc.split_external_local_origin_errors = true;
    oc.consecutive_local_origin_failures = 3;
    oc.consecutive_5xx_errors = 5;
    {
        // Local-origin failures do not touch the external streak (and vice versa)...
        detector d;
        d.configure({make_cluster("c", 10, oc)}, 0s);
        EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 4, 1s), 0);
        EXPECT_EQ(report_n(d, "c", 1, outcome::connect_failure, 2, 1s), 0);
        EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 4u);
        EXPECT_EQ(d.status("c", 1)->consecutive_local_origin, 2u);
        // ...but a response proves the connection worked: the local-origin streak resets.
        EXPECT_TRUE(d.report("c", 1, outcome::http_5xx, 1s));
        EXPECT_EQ(d.status("c", 1)->last_kind, ejection_kind::consecutive_5xx);
        EXPECT_EQ(d.status("c", 1)->consecutive_local_origin, 0u);
    }
    {
        detector d;
        d.configure({make_cluster("c", 10, oc)}, 0s);
        EXPECT_EQ(report_n(d, "c", 1, outcome::connect_failure, 2, 1s), 0);
        EXPECT_FALSE(d.report("c", 1, outcome::http_gateway_error, 1s));
        EXPECT_EQ(report_n(d, "c", 1, outcome::local_origin_failure, 2, 1s), 0);
        EXPECT_TRUE(d.report("c", 1, outcome::connect_failure, 1s));
        EXPECT_EQ(d.status("c", 1)->last_kind, ejection_kind::consecutive_local_origin_failure);
        EXPECT_EQ(d.stats("c")->ejections_enforced_consecutive_local_origin_failure, 1u);
    }
    {
        // With the split, local-origin failures never reach the 5xx threshold.
        detector d;
        outlier_config only5xx = oc;
        only5xx.consecutive_local_origin_failures = 1000;
        d.configure({make_cluster("c", 10, only5xx)}, 0s);
        EXPECT_EQ(report_n(d, "c", 1, outcome::connect_failure, 20, 1s), 0);
        EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 0u);
    }
}

TEST(HealthDetector, SplitLocalOriginZeroMeansEnvoysDefaultFive)
{
    detector d;
    outlier_config oc;
    oc.split_external_local_origin_errors = true;
    oc.consecutive_local_origin_failures = 0;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::connect_failure, 4, 1s), 0);
    EXPECT_TRUE(d.report("c", 1, outcome::connect_failure, 1s));
}

// ---------------------------------------------------------------------------------------------
// maxEjectionPercent

TEST(HealthMaxEjection, FourEndpointsFiftyPercentEjectsOnlyTwoOfThree)
{
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 50;
    d.configure({make_cluster("c", 4, oc)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 5, 1s), 1); // 0/4 < 50%
    EXPECT_EQ(report_n(d, "c", 2, outcome::http_5xx, 5, 1s), 1); // 1/4 < 50%
    EXPECT_EQ(report_n(d, "c", 3, outcome::http_5xx, 5, 1s), 0); // 2/4 is not < 50%
    EXPECT_EQ(d.ejected("c"), (ids{1, 2}));
    const auto st = d.stats("c");
    EXPECT_EQ(st->ejections_overflow, 1u);
    EXPECT_EQ(st->ejections_detected_total, 3u);
    EXPECT_EQ(st->ejections_enforced_total, 2u);
}

TEST(HealthMaxEjection, OneEndpointTenPercentStillEjectsOne)
{
    detector d;
    d.configure({make_cluster("c", 1)}, 0s); // default 10%: 0/1 < 10%
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 5, 1s), 1);
    EXPECT_EQ(d.ejected("c"), ids{1});
}

TEST(HealthMaxEjection, TenEndpointsTenPercentEjectsOne)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 5, 1s), 1);
    EXPECT_EQ(report_n(d, "c", 2, outcome::http_5xx, 5, 1s), 0); // 1/10 is not < 10%
    EXPECT_EQ(d.ejected("c"), ids{1});
}

TEST(HealthMaxEjection, CountIsTakenBeforeTheEjectionSoItMayOvershoot)
{
    // ISTIO.md: ejected/total < max, counted before this ejection: 1/3 = 33% < 50% lets a
    // second ejection through, leaving 67% ejected.
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 50;
    d.configure({make_cluster("c", 3, oc)}, 0s);
    for (uint64_t id = 1; id <= 3; ++id) {
        report_n(d, "c", id, outcome::http_5xx, 5, 1s);
    }
    EXPECT_EQ(d.ejected("c"), (ids{1, 2}));
}

TEST(HealthMaxEjection, HundredPercentCanEjectAll)
{
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 250; // clamped to 100
    d.configure({make_cluster("c", 3, oc)}, 0s);
    for (uint64_t id = 1; id <= 3; ++id) {
        report_n(d, "c", id, outcome::http_5xx, 5, 1s);
    }
    EXPECT_EQ(d.ejected("c"), (ids{1, 2, 3}));
}

TEST(HealthMaxEjection, ZeroMeansIstiosDefaultTen)
{
    // Istio only sets Envoy's max_ejection_percent when the field is non-zero.
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 0;
    d.configure({make_cluster("c", 20, oc)}, 0s);
    for (uint64_t id = 1; id <= 5; ++id) {
        report_n(d, "c", id, outcome::http_5xx, 5, 1s);
    }
    EXPECT_EQ(d.ejected("c"), (ids{1, 2})); // 0/20, 1/20 < 10%; 2/20 is not
}

TEST(HealthMaxEjection, ClustersAreCountedSeparately)
{
    detector d;
    d.configure({make_cluster("a", 10), make_cluster("b", 10)}, 0s);
    EXPECT_EQ(report_n(d, "a", 1, outcome::http_5xx, 5, 1s), 1);
    EXPECT_EQ(report_n(d, "b", 1, outcome::http_5xx, 5, 1s), 1);
    EXPECT_EQ(d.ejections_active("a"), 1u);
    EXPECT_EQ(d.ejections_active("b"), 1u);
}

TEST(HealthMaxEjection, ARefusedAttemptResetsTheCounter)
{
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 50;
    d.configure({make_cluster("c", 2, oc)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s); // ejected until 30s
    EXPECT_EQ(report_n(d, "c", 2, outcome::http_5xx, 5, 1s), 0);
    EXPECT_EQ(d.status("c", 2)->consecutive_5xx, 0u);
    EXPECT_TRUE(d.tick(30s)); // endpoint 1 back: room again
    // One more error is not enough: the refused attempt used up the streak (Envoy).
    EXPECT_EQ(report_n(d, "c", 2, outcome::http_5xx, 4, 31s), 0);
    EXPECT_TRUE(d.report("c", 2, outcome::http_5xx, 31s));
    EXPECT_EQ(d.ejected("c"), ids{2});
}

// ---------------------------------------------------------------------------------------------
// Ejection time and the multiplier

TEST(HealthEjectionTime, ReadmittedExactlyAtBaseTime)
{
    detector d;
    fake_clock clk;
    d.configure({make_cluster("c", 10)}, clk.now());
    clk.set(5s);
    report_n(d, "c", 1, outcome::http_5xx, 5, clk.now());
    EXPECT_EQ(d.status("c", 1)->ejected_until, 35s);
    EXPECT_FALSE(d.tick(35s - 1ns));
    EXPECT_EQ(d.ejected("c"), ids{1});
    EXPECT_TRUE(d.tick(35s));
    EXPECT_TRUE(d.ejected("c").empty());
    EXPECT_EQ(d.ejections_total("c"), 1u); // a total, not a gauge
    EXPECT_FALSE(d.tick(36s));
}

TEST(HealthEjectionTime, MultipliesWithRepeatedEjectionsAndIsCapped)
{
    detector d;
    outlier_config oc;
    oc.base_ejection_time = 100s;
    oc.max_ejection_time = 300s;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    // Each re-ejection comes right at re-admission, before a healthy interval can pass.
    const duration expect_until[] = {100s, 300s, 600s, 900s, 1200s, 1500s};
    const uint32_t expect_mult[] = {1, 2, 3, 4, 4, 4}; // Envoy: saturates one step past the cap
    duration t = 0s;
    for (size_t i = 0; i < std::size(expect_until); ++i) {
        EXPECT_TRUE(d.tick(t) || i == 0);
        EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 5, t), 1) << i;
        const auto s = d.status("c", 1);
        EXPECT_EQ(s->ejected_until, expect_until[i]) << i;
        EXPECT_EQ(s->multiplier, expect_mult[i]) << i;
        EXPECT_FALSE(d.tick(expect_until[i] - 1ns)) << i;
        EXPECT_TRUE(is_ejected(d, "c", 1)) << i;
        t = expect_until[i];
    }
}

TEST(HealthEjectionTime, CapIsTheLargerOfBaseAndMaxEjectionTime)
{
    detector d;
    outlier_config oc;
    oc.base_ejection_time = 400s;
    oc.max_ejection_time = 300s;
    d.configure({make_cluster("c", 10, oc)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s);
    EXPECT_EQ(d.status("c", 1)->ejected_until, 400s);
    EXPECT_TRUE(d.tick(400s));
    report_n(d, "c", 1, outcome::http_5xx, 5, 400s);
    EXPECT_EQ(d.status("c", 1)->multiplier, 2u);
    EXPECT_EQ(d.status("c", 1)->ejected_until, 800s);
}

TEST(HealthEjectionTime, DefaultCapIsThreeHundredSeconds)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s); // base 30s, cap 300s
    duration t = 0s;
    for (int i = 0; i < 14; ++i) {
        d.tick(t);
        report_n(d, "c", 1, outcome::http_5xx, 5, t);
        const auto s = d.status("c", 1);
        EXPECT_EQ(s->ejected_until - t, std::min<duration>(30s * (i + 1), 300s)) << i;
        t = s->ejected_until;
    }
    EXPECT_EQ(multiplier(d, "c", 1), 11u);
}

TEST(HealthEjectionTime, MultiplierDecrementedByHealthyIntervals)
{
    detector d;
    outlier_config oc;                            // interval 10s, base 30s
    d.configure({make_cluster("c", 10, oc)}, 0s); // boundaries at 10s, 20s, ...
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s);
    EXPECT_TRUE(d.tick(30s));
    report_n(d, "c", 1, outcome::http_5xx, 5, 30s); // again at once: x2, until 90s
    EXPECT_EQ(d.status("c", 1)->ejected_until, 90s);
    EXPECT_TRUE(d.tick(90s)); // re-admitted on a boundary: no healthy interval yet
    EXPECT_EQ(multiplier(d, "c", 1), 2u);
    d.tick(100s - 1ns);
    EXPECT_EQ(multiplier(d, "c", 1), 2u);
    d.tick(100s); // healthy for all of (90s, 100s]
    EXPECT_EQ(multiplier(d, "c", 1), 1u);
    d.tick(109s);
    EXPECT_EQ(multiplier(d, "c", 1), 1u);
    d.tick(110s);
    EXPECT_EQ(multiplier(d, "c", 1), 0u);
    d.tick(200s);
    EXPECT_EQ(multiplier(d, "c", 1), 0u);
    report_n(d, "c", 1, outcome::http_5xx, 5, 205s); // back to the base time
    EXPECT_EQ(d.status("c", 1)->multiplier, 1u);
    EXPECT_EQ(d.status("c", 1)->ejected_until, 235s);
}

TEST(HealthEjectionTime, NoDecrementUntilAWholeIntervalHasPassedSinceReadmission)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 1s); // until 31s
    d.tick(31s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 31s); // x2, until 91s
    d.tick(91s);
    d.tick(100s); // 100 - 91 = 9s < interval
    EXPECT_EQ(multiplier(d, "c", 1), 2u);
    d.tick(110s); // 19s >= 10s
    EXPECT_EQ(multiplier(d, "c", 1), 1u);
    // Ejected again before the next boundary: no decrement while ejected.
    report_n(d, "c", 1, outcome::http_5xx, 5, 115s);
    EXPECT_EQ(multiplier(d, "c", 1), 2u);
    EXPECT_EQ(d.status("c", 1)->ejected_until, 175s);
    d.tick(170s);
    EXPECT_EQ(multiplier(d, "c", 1), 2u);
}

TEST(HealthEjectionTime, ALateCallCatchesUpExactlyLikeTickingEverySecond)
{
    outlier_config oc;
    oc.interval = 7s;
    oc.base_ejection_time = 20s;
    oc.max_ejection_percent = 100;
    struct step {
        duration at;
        uint64_t id;
    };
    // Failure bursts at fixed times; some land during ejections, some after recovery.
    const step bursts[] = {{3s, 1},   {3s, 2},   {24s, 1},  {50s, 1}, {61s, 2},
                           {140s, 1}, {141s, 3}, {260s, 1}, {400s, 2}};
    detector every;
    detector lazy;
    every.configure({make_cluster("c", 4, oc)}, 0s);
    lazy.configure({make_cluster("c", 4, oc)}, 0s);
    size_t next = 0;
    for (duration t = 0s; t <= 600s; t += 1s) {
        every.tick(t);
        while (next < std::size(bursts) && bursts[next].at == t) {
            report_n(every, "c", bursts[next].id, outcome::http_5xx, 5, t);
            report_n(lazy, "c", bursts[next].id, outcome::http_5xx, 5, t);
            ++next;
        }
        if (t == 300s) {
            lazy.tick(t);
        }
    }
    lazy.tick(600s);
    for (uint64_t id = 1; id <= 4; ++id) {
        const auto a = every.status("c", id);
        const auto b = lazy.status("c", id);
        EXPECT_EQ(a->ejected, b->ejected) << id;
        EXPECT_EQ(a->multiplier, b->multiplier) << id;
        EXPECT_EQ(a->ejected_at, b->ejected_at) << id;
    }
    EXPECT_EQ(every.ejections_total("c"), lazy.ejections_total("c"));
    EXPECT_GE(every.ejections_total("c"), 6u);
}

// ---------------------------------------------------------------------------------------------
// Ejected endpoints, time, unknowns, deadlines

TEST(HealthDetector, AnEjectedEndpointIsNotReEjectedAndItsStreaksResetOnReadmission)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 20, 1s), 0);
    EXPECT_FALSE(d.report("c", 1, outcome::success, 2s)); // success does not re-admit early
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 20, 3s), 0);
    EXPECT_EQ(d.status("c", 1)->ejected_until, 30s); // not extended
    EXPECT_EQ(d.ejections_total("c"), 1u);
    EXPECT_TRUE(d.tick(30s));
    EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 0u);
    EXPECT_EQ(report_n(d, "c", 1, outcome::http_5xx, 4, 31s), 0);
    EXPECT_TRUE(d.report("c", 1, outcome::http_5xx, 31s));
}

TEST(HealthDetector, AReportFirstReadmitsWhatFellDue)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s);
    // No tick: the report at 30s finds endpoint 1 due, re-admits it, then counts.
    EXPECT_TRUE(d.report("c", 1, outcome::http_5xx, 30s));
    EXPECT_TRUE(d.ejected("c").empty());
    EXPECT_EQ(d.status("c", 1)->consecutive_5xx, 1u);
    EXPECT_FALSE(d.tick(31s));
}

TEST(HealthDetector, ReadmissionMakesRoomUnderMaxEjectionPercentAtTheSameInstant)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s);
    report_n(d, "c", 2, outcome::http_5xx, 4, 29s);
    EXPECT_TRUE(d.report("c", 2, outcome::http_5xx, 30s)); // 1 expires first, then 2 is ejected
    EXPECT_EQ(d.ejected("c"), ids{2});
}

TEST(HealthDetector, UnknownClustersAndEndpointsAreIgnoredAndCounted)
{
    detector d;
    d.configure({make_cluster("c", 3)}, 0s);
    EXPECT_FALSE(d.report("nope", 1, outcome::http_5xx, 1s));
    EXPECT_FALSE(d.report("c", 99, outcome::http_5xx, 1s));
    EXPECT_EQ(d.unknown_reports(), 2u);
    EXPECT_TRUE(d.ejected("nope").empty());
    EXPECT_EQ(d.ejections_active("nope"), 0u);
    EXPECT_EQ(d.ejections_total("nope"), 0u);
    EXPECT_FALSE(d.stats("nope").has_value());
    EXPECT_FALSE(d.status("c", 99).has_value());
}

TEST(HealthDetector, TimeNeverRunsBackwards)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 100s); // until 130s
    EXPECT_FALSE(d.tick(50s));                       // treated as 100s
    EXPECT_EQ(d.ejected("c"), ids{1});
    EXPECT_TRUE(d.tick(130s));
    report_n(d, "c", 2, outcome::http_5xx, 5, 10s); // treated as 130s
    EXPECT_EQ(d.status("c", 2)->ejected_at, 130s);
}

TEST(HealthDetector, NextDeadline)
{
    detector d;
    EXPECT_EQ(d.next_deadline(), duration::max());
    d.configure({make_cluster("a", 10), make_cluster("b", 10)}, 0s);
    EXPECT_EQ(d.next_deadline(), duration::max());
    report_n(d, "a", 1, outcome::http_5xx, 5, 10s); // until 40s
    EXPECT_EQ(d.next_deadline(), 40s);
    report_n(d, "b", 1, outcome::http_5xx, 5, 5s);  // time does not go back: 10s, until 40s
    report_n(d, "b", 2, outcome::http_5xx, 5, 20s); // refused: 10%
    EXPECT_EQ(d.next_deadline(), 40s);
    EXPECT_TRUE(d.tick(d.next_deadline()));
    EXPECT_EQ(d.next_deadline(), duration::max());
    report_n(d, "a", 1, outcome::http_5xx, 5, 40s); // x2: until 100s
    report_n(d, "b", 3, outcome::http_5xx, 5, 45s); // until 75s
    EXPECT_EQ(d.next_deadline(), 75s);
    EXPECT_FALSE(d.tick(74s));
    EXPECT_TRUE(d.tick(75s));
    EXPECT_EQ(d.next_deadline(), 100s);
}

TEST(HealthDetector, GenerationMovesWithTheEjectedSet)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    const uint64_t g0 = d.generation();
    report_n(d, "c", 1, outcome::http_5xx, 4, 0s);
    EXPECT_EQ(d.generation(), g0);
    report_n(d, "c", 1, outcome::http_5xx, 1, 0s);
    const uint64_t g1 = d.generation();
    EXPECT_NE(g1, g0);
    d.tick(29s);
    EXPECT_EQ(d.generation(), g1);
    d.tick(30s);
    EXPECT_NE(d.generation(), g1);
}

// ---------------------------------------------------------------------------------------------
// configure()

TEST(HealthConfigure, KeepsStateForSurvivingEndpointsAndForgetsRemovedOnes)
{
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 100;
    d.configure({make_cluster("c", 3, oc)}, 0s); // endpoints 1, 2, 3
    report_n(d, "c", 1, outcome::http_5xx, 5, 1s);
    report_n(d, "c", 2, outcome::http_5xx, 3, 1s);
    report_n(d, "c", 3, outcome::http_5xx, 5, 1s);
    EXPECT_EQ(d.ejected("c"), (ids{1, 3}));

    cluster_config next{.name = "c", .outlier = oc, .endpoints = {4, 2, 1}};
    d.configure({next}, 2s);
    EXPECT_EQ(d.ejected("c"), ids{1}); // 3 is gone with its ejection
    EXPECT_EQ(d.ejections_active("c"), 1u);
    EXPECT_EQ(d.ejections_total("c"), 2u); // history of a surviving cluster stays
    EXPECT_EQ(d.status("c", 1)->ejected_until, 31s);
    EXPECT_EQ(d.status("c", 2)->consecutive_5xx, 3u);
    EXPECT_FALSE(d.status("c", 3).has_value());
    EXPECT_EQ(d.status("c", 4)->consecutive_5xx, 0u);
    EXPECT_EQ(report_n(d, "c", 2, outcome::http_5xx, 2, 3s), 1); // 3 + 2 = 5
    EXPECT_EQ(d.report("c", 3, outcome::http_5xx, 3s), false);
    EXPECT_EQ(d.unknown_reports(), 1u);

    // An endpoint that comes back starts from scratch.
    d.configure({make_cluster("c", 4, oc)}, 4s);
    EXPECT_FALSE(is_ejected(d, "c", 3));
    EXPECT_EQ(multiplier(d, "c", 3), 0u);
}

TEST(HealthConfigure, KeepsTheMultiplierAcrossSnapshots)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s);
    d.configure({make_cluster("c", 12)}, 30s); // re-admits 1 at 30s under the old rules
    EXPECT_TRUE(d.ejected("c").empty());
    report_n(d, "c", 1, outcome::http_5xx, 5, 30s);
    EXPECT_EQ(d.status("c", 1)->multiplier, 2u);
    EXPECT_EQ(d.status("c", 1)->ejected_until, 90s);
}

TEST(HealthConfigure, RemovedClusterIsForgotten)
{
    detector d;
    d.configure({make_cluster("a", 10), make_cluster("b", 10)}, 0s);
    report_n(d, "a", 1, outcome::http_5xx, 5, 0s);
    const uint64_t g = d.generation();
    d.configure({make_cluster("b", 10)}, 1s);
    EXPECT_NE(d.generation(), g); // an ejected endpoint left the table
    EXPECT_EQ(d.clusters(), std::vector<std::string>{"b"});
    EXPECT_TRUE(d.ejected("a").empty());
    EXPECT_EQ(d.ejections_total("a"), 0u);
    EXPECT_EQ(d.next_deadline(), duration::max());
    d.configure({make_cluster("a", 10), make_cluster("b", 10)}, 2s);
    EXPECT_EQ(d.ejections_total("a"), 0u);
    EXPECT_EQ(multiplier(d, "a", 1), 0u);
}

TEST(HealthConfigure, NewSettingsApplyToCurrentEjections)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s); // until 30s
    outlier_config shorter;
    shorter.base_ejection_time = 5s;
    d.configure({make_cluster("c", 10, shorter)}, 10s);
    EXPECT_EQ(d.ejected("c"), ids{1}); // configure() itself does not re-admit
    EXPECT_EQ(d.next_deadline(), 5s);  // already due
    EXPECT_TRUE(d.tick(10s));
    EXPECT_TRUE(d.ejected("c").empty());

    // A lower threshold fires on the next error of an endpoint already past it.
    report_n(d, "c", 2, outcome::http_5xx, 3, 11s);
    outlier_config strict;
    strict.consecutive_5xx_errors = 2;
    d.configure({make_cluster("c", 10, strict)}, 12s);
    EXPECT_TRUE(d.report("c", 2, outcome::http_5xx, 12s));
}

TEST(HealthConfigure, IntervalChangeRestartsBoundariesAtNow)
{
    detector d;
    d.configure({make_cluster("c", 10)}, 0s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 0s);
    d.tick(30s);
    report_n(d, "c", 1, outcome::http_5xx, 5, 30s); // x2 until 90s
    d.tick(90s);
    outlier_config slow;
    slow.interval = 60s;
    d.configure({make_cluster("c", 10, slow)}, 95s); // boundaries now at 155s, 215s, ...
    d.tick(154s);
    EXPECT_EQ(multiplier(d, "c", 1), 2u);
    d.tick(155s);
    EXPECT_EQ(multiplier(d, "c", 1), 1u);
    d.tick(215s);
    EXPECT_EQ(multiplier(d, "c", 1), 0u);
}

TEST(HealthConfigure, DuplicateEndpointIdsCountOnce)
{
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 50;
    d.configure({cluster_config{.name = "c", .outlier = oc, .endpoints = {7, 7, 7, 8}}}, 0s);
    report_n(d, "c", 7, outcome::http_5xx, 5, 0s);
    report_n(d, "c", 8, outcome::http_5xx, 5, 0s); // 1/2 is not < 50%
    EXPECT_EQ(d.ejected("c"), ids{7});
}

// ---------------------------------------------------------------------------------------------
// table

TEST(HealthTable, EmptyTableIsHealthy)
{
    const table t;
    EXPECT_EQ(t.lookup("c", 1), reason::healthy);
    EXPECT_EQ(t.ejected_count(), 0u);
    detector d;
    d.configure({make_cluster("c", 3)}, 0s);
    EXPECT_EQ(table::build(d, {}).version(), t.version());
    EXPECT_EQ(table::build(detector{}, {}).version(), t.version());
}

TEST(HealthTable, LookupReportsOutlierEjectionsPerCluster)
{
    detector d;
    outlier_config oc;
    oc.max_ejection_percent = 50;
    d.configure({make_cluster("a", 4, oc), make_cluster("b", 4, oc), make_cluster("c", 4, oc)}, 0s);
    report_n(d, "a", 1, outcome::http_5xx, 5, 0s);
    report_n(d, "a", 3, outcome::http_5xx, 5, 0s);
    report_n(d, "c", 2, outcome::http_5xx, 5, 0s);
    const table t = table::build(d, {});
    EXPECT_EQ(t.ejected_count(), 3u);
    EXPECT_EQ(t.lookup("a", 1), reason::outlier_ejected);
    EXPECT_EQ(t.lookup("a", 2), reason::healthy);
    EXPECT_EQ(t.lookup("a", 3), reason::outlier_ejected);
    EXPECT_EQ(t.lookup("b", 1), reason::healthy); // same id, other cluster
    EXPECT_EQ(t.lookup("c", 2), reason::outlier_ejected);
    EXPECT_EQ(t.lookup("c", 1), reason::healthy);
    EXPECT_EQ(t.lookup("", 1), reason::healthy);
    EXPECT_EQ(t.lookup("a0", 1), reason::healthy); // prefix of nothing, after "a"
    EXPECT_EQ(t.lookup("zzz", 2), reason::healthy);
    // A table is a snapshot: later detector changes do not reach it.
    d.tick(30s);
    EXPECT_EQ(t.lookup("a", 1), reason::outlier_ejected);
    EXPECT_EQ(table::build(d, {}).lookup("a", 1), reason::healthy);
}

TEST(HealthTable, ActiveCheckFailuresApplyInEveryClusterAndWin)
{
    detector d;
    d.configure({make_cluster("a", 10), make_cluster("b", 10)}, 0s);
    report_n(d, "a", 2, outcome::http_5xx, 5, 0s);
    const uint64_t failed[] = {9, 2, 9}; // unsorted, duplicated: accepted
    const table t = table::build(d, failed);
    EXPECT_EQ(t.lookup("a", 2), reason::active_check_failed);
    EXPECT_EQ(t.lookup("b", 2), reason::active_check_failed);
    EXPECT_EQ(t.lookup("b", 9), reason::active_check_failed);
    EXPECT_EQ(t.lookup("unknown", 9), reason::active_check_failed);
    EXPECT_EQ(t.lookup("a", 3), reason::healthy);
    EXPECT_EQ(std::vector<uint64_t>(t.active_check_failed().begin(), t.active_check_failed().end()),
              (ids{2, 9}));
}

TEST(HealthTable, VersionTracksContent)
{
    detector d;
    d.configure({make_cluster("a", 10), make_cluster("b", 10)}, 0s);
    const uint64_t v0 = table::build(d, {}).version();
    report_n(d, "a", 1, outcome::http_5xx, 5, 0s);
    const uint64_t v1 = table::build(d, {}).version();
    EXPECT_NE(v1, v0);
    EXPECT_EQ(table::build(d, {}).version(), v1); // same content, same version

    const uint64_t one[] = {1};
    const uint64_t v2 = table::build(d, one).version();
    EXPECT_NE(v2, v1);

    // Same ids in another cluster, or as active failures: all different.
    detector e;
    e.configure({make_cluster("a", 10), make_cluster("b", 10)}, 0s);
    report_n(e, "b", 1, outcome::http_5xx, 5, 0s);
    EXPECT_NE(table::build(e, {}).version(), v1);
    EXPECT_NE(table::build(detector{}, one).version(), v1);

    // The same content from another detector with another history: the same version.
    detector f;
    f.configure({make_cluster("a", 3)}, 100s);
    report_n(f, "a", 1, outcome::connect_failure, 5, 100s);
    EXPECT_EQ(table::build(f, {}).version(), v1);

    // Back to no ejection: back to the empty version.
    d.tick(30s);
    EXPECT_EQ(table::build(d, {}).version(), v0);
}

} // namespace
} // namespace sluice::health
