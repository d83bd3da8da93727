// Unit tests for locality::build_plan: every traffic-distribution mode, failoverPriority,
// failover and distribute, on a 3-zone / 2-region / 2-network cluster.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sluice/locality/levels.hh"

namespace sluice::locality {
namespace {

using idx = std::vector<std::vector<uint32_t>>;

node self()
{
    node n;
    n.locality = {"r1", "z1", "s1"};
    n.network = "n1";
    n.node_name = "node-a";
    n.cluster = "c1";
    return n;
}

endpoint ep(std::string net, std::string region, std::string zone, std::string subzone,
            std::string node_name, labels l = {})
{
    endpoint e;
    e.network = std::move(net);
    e.locality = {std::move(region), std::move(zone), std::move(subzone)};
    e.node_name = std::move(node_name);
    e.endpoint_labels = std::move(l);
    return e;
}

// Networks n1/n2, regions r1/r2, zones z1/z2/z3. The appliance is n1 r1/z1/s1 on node-a.
std::vector<endpoint> cluster()
{
    return {
        ep("n1", "r1", "z1", "s1", "node-a", {{"version", "v1"}}), // 0: same node
        ep("n1", "r1", "z1", "s1", "node-b", {{"version", "v2"}}), // 1: same subzone
        ep("n1", "r1", "z1", "s2", "node-c", {{"version", "v1"}}), // 2: same zone
        ep("n1", "r1", "z2", "s3", "node-d", {{"version", "v1"}}), // 3: same region
        ep("n1", "r2", "z3", "s4", "node-e", {{"version", "v2"}}), // 4: same network
        ep("n2", "r1", "z1", "s1", "node-f", {{"version", "v1"}}), // 5: other network, r1/z1
        ep("n2", "r2", "z3", "s4", "node-g", {{"version", "v1"}}), // 6: other network
    };
}

plan must_plan(const node& n, const std::vector<endpoint>& eps, const policy& p)
{
    auto r = build_plan(n, eps, p);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    return r.ok() ? std::move(r).value() : plan{};
}

idx levels_of(const plan& p)
{
    idx out;
    for (const level& l : p.levels) {
        out.push_back(l.endpoints);
    }
    return out;
}

std::vector<uint32_t> tiers_of(const plan& p)
{
    std::vector<uint32_t> out;
    for (const level& l : p.levels) {
        out.push_back(l.tier);
    }
    return out;
}

policy mode_policy(mode m)
{
    policy p;
    p.distribution = m;
    return p;
}

TEST(LocalityLevelsTest, PreferCloseIsNetworkThenRegionThenZone)
{
    const plan p = must_plan(self(), cluster(), mode_policy(mode::prefer_close));
    // Endpoint 5 shares region and zone but not the network: cross-network, last.
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 2}, {3}, {4}, {5, 6}}));
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{0, 1, 2, 3}));
    EXPECT_EQ(p.level_of, (std::vector<uint32_t>{0, 0, 0, 1, 2, 3, 3}));
    EXPECT_FALSE(p.locality_weighted);
    EXPECT_TRUE(p.excluded.empty());
    EXPECT_EQ(prefer_same_zone, mode::prefer_close);
}

TEST(LocalityLevelsTest, PreferNetworkIsTwoLevels)
{
    const plan p = must_plan(self(), cluster(), mode_policy(mode::prefer_network));
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 2, 3, 4}, {5, 6}}));
}

TEST(LocalityLevelsTest, PreferRegionIsNetworkThenRegion)
{
    const plan p = must_plan(self(), cluster(), mode_policy(mode::prefer_region));
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 2, 3}, {4}, {5, 6}}));
}

TEST(LocalityLevelsTest, PreferSameNodeHasSixLevels)
{
    const plan p = must_plan(self(), cluster(), mode_policy(mode::prefer_same_node));
    EXPECT_EQ(levels_of(p), (idx{{0}, {1}, {2}, {3}, {4}, {5, 6}}));
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(LocalityLevelsTest, AnyIsOneLevel)
{
    const plan p = must_plan(self(), cluster(), mode_policy(mode::any));
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 2, 3, 4, 5, 6}}));
}

TEST(LocalityLevelsTest, EmptyLevelsAreCompacted)
{
    auto eps = cluster();
    eps.erase(eps.begin(), eps.begin() + 3); // nothing left in our zone
    const plan p = must_plan(self(), eps, mode_policy(mode::prefer_close));
    EXPECT_EQ(levels_of(p), (idx{{0}, {1}, {2, 3}}));
    // P0 is now "same region": the tiers keep the table's numbering.
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{1, 2, 3}));
}

TEST(LocalityLevelsTest, ZeroWeightEndpointsAreExcluded)
{
    auto eps = cluster();
    eps[1].weight = 0;
    const plan p = must_plan(self(), eps, mode_policy(mode::prefer_close));
    EXPECT_EQ(levels_of(p), (idx{{0, 2}, {3}, {4}, {5, 6}}));
    EXPECT_EQ(p.excluded, (std::vector<uint32_t>{1}));
    EXPECT_EQ(p.level_of[1], no_level);
}

TEST(LocalityLevelsTest, WeightsAreCarriedPerLevel)
{
    auto eps = cluster();
    eps[2].weight = 7;
    const plan p = must_plan(self(), eps, mode_policy(mode::prefer_close));
    EXPECT_EQ(p.levels[0].weights, (std::vector<uint32_t>{1, 1, 7}));
}

TEST(LocalityLevelsTest, InternalTrafficPolicyLocalKeepsOnlySameNode)
{
    policy pol = mode_policy(mode::prefer_close);
    pol.same_node_only = true;
    const plan p = must_plan(self(), cluster(), pol);
    EXPECT_EQ(levels_of(p), (idx{{0}}));
    EXPECT_EQ(p.excluded, (std::vector<uint32_t>{1, 2, 3, 4, 5, 6}));

    // No endpoint on our node: no level at all (traffic is dropped, no failover).
    auto eps = cluster();
    eps.erase(eps.begin());
    const plan none = must_plan(self(), eps, pol);
    EXPECT_TRUE(none.levels.empty());
    EXPECT_EQ(none.excluded.size(), 6U);
}

TEST(LocalityLevelsTest, EndpointLabelsAreOverriddenByTopologyFields)
{
    // A stale region label on the endpoint loses to its locality field (Istio AugmentLabels);
    // with the field empty the label is used.
    auto eps = cluster();
    eps[3].endpoint_labels[label_region] = "r9";
    eps[4].locality.region = "";
    eps[4].endpoint_labels[label_region] = "r1";
    eps[4].locality.zone = "z1";
    const plan p = must_plan(self(), eps, mode_policy(mode::prefer_region));
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 2, 3, 4}, {5, 6}}));
}

policy dr_policy()
{
    policy p;
    p.distribution = mode::prefer_close; // overridden by the DestinationRule
    p.use_lb_setting = true;
    p.outlier_detection = true;
    return p;
}

TEST(LocalityLevelsTest, FailoverPriorityWithLabelsAndValues)
{
    policy pol = dr_policy();
    // Endpoints with version=v1 first, and among them our zone first.
    pol.setting.failover_priority = {"version=v1", label_zone};
    const plan p = must_plan(self(), cluster(), pol);
    // Tier = N - (labels matched before the first mismatch): v1+z1 -> 0, v1 -> 1, else 2.
    EXPECT_EQ(levels_of(p), (idx{{0, 2, 5}, {3, 6}, {1, 4}}));
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{0, 1, 2}));
}

TEST(LocalityLevelsTest, FailoverPriorityComparesWithOurOwnLabels)
{
    node n = self();
    n.extra_labels = {{"version", "v2"}};
    policy pol = dr_policy();
    pol.setting.failover_priority = {"version", label_network};
    const plan p = must_plan(n, cluster(), pol);
    // v2 on n1 -> 0 (1, 4); v2 elsewhere -> 1 (none); not v2 -> 2.
    EXPECT_EQ(levels_of(p), (idx{{1, 4}, {0, 2, 3, 5, 6}}));
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{0, 2}));
}

TEST(LocalityLevelsTest, FailoverPrioritySpecialKeys)
{
    policy pol = dr_policy();
    pol.setting.failover_priority = {label_network, label_region, label_zone, label_subzone,
                                     label_hostname};
    const plan same_node = must_plan(self(), cluster(), pol);
    const plan mode = must_plan(self(), cluster(), mode_policy(mode::prefer_same_node));
    EXPECT_EQ(levels_of(same_node), levels_of(mode));

    // topology.istio.io/cluster: our cluster first.
    auto eps = cluster();
    eps[6].cluster = "c1";
    eps[4].cluster = "c2";
    pol.setting.failover_priority = {label_cluster};
    const plan p = must_plan(self(), eps, pol);
    EXPECT_EQ(levels_of(p), (idx{{6}, {0, 1, 2, 3, 4, 5}}));
}

TEST(LocalityLevelsTest, FailoverPriorityNeedsOutlierDetection)
{
    policy pol = dr_policy();
    pol.outlier_detection = false;
    pol.setting.failover_priority = {"version=v1"};
    const plan p = must_plan(self(), cluster(), pol);
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 2, 3, 4, 5, 6}}));
}

TEST(LocalityLevelsTest, BadFailoverPriorityIsAnError)
{
    policy pol = dr_policy();
    pol.setting.failover_priority = {"version", "=v1"};
    auto r = build_plan(self(), cluster(), pol);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.err().where, "localityLbSetting.failoverPriority[1]");
    pol.setting.failover_priority = {"a=b=c"};
    EXPECT_FALSE(build_plan(self(), cluster(), pol).ok());
}

TEST(LocalityLevelsTest, DefaultDestinationRuleFailoverIsRegionZoneSubzone)
{
    // A DestinationRule with outlierDetection and an empty localityLbSetting: Istio's
    // default failover compares region/zone/subzone only (not the network).
    const plan p = must_plan(self(), cluster(), dr_policy());
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 5}, {2}, {3}, {4, 6}}));
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{0, 1, 2, 3}));
}

TEST(LocalityLevelsTest, DestinationRuleOverridesTrafficDistribution)
{
    policy pol = dr_policy();
    pol.setting.enabled = false; // localityLbSetting.enabled: false: no locality preference
    const plan p = must_plan(self(), cluster(), pol);
    EXPECT_EQ(levels_of(p), (idx{{0, 1, 2, 3, 4, 5, 6}}));
}

std::vector<endpoint> three_regions()
{
    return {
        ep("n1", "r1", "z1", "s1", "a"), // 0
        ep("n1", "r2", "z2", "s1", "b"), // 1
        ep("n1", "r3", "z3", "s1", "c"), // 2
        ep("n1", "r2", "z4", "s1", "d"), // 3
        ep("n1", "r3", "z5", "s1", "e"), // 4
    };
}

TEST(LocalityLevelsTest, FailoverFromToOrdersRegions)
{
    policy pol = dr_policy();
    pol.setting.failover = {{"r9", "r2"}, {"r1", "r3"}};
    const plan p = must_plan(self(), three_regions(), pol);
    // r1 fails over to r3 first, then to any other region (r2).
    EXPECT_EQ(levels_of(p), (idx{{0}, {2, 4}, {1, 3}}));
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{0, 3, 4}));

    // A rule for another region does not apply: all other regions share one level.
    pol.setting.failover = {{"r2", "r3"}};
    const plan q = must_plan(self(), three_regions(), pol);
    EXPECT_EQ(levels_of(q), (idx{{0}, {1, 2, 3, 4}}));
}

TEST(LocalityLevelsTest, FailoverPriorityCombinedWithFailover)
{
    auto eps = three_regions();
    eps[0].endpoint_labels = {{"tier", "gold"}};
    eps[1].endpoint_labels = {{"tier", "gold"}};
    eps[2].endpoint_labels = {{"tier", "gold"}};
    policy pol = dr_policy();
    pol.setting.failover_priority = {"tier=gold"};
    pol.setting.failover = {{"r1", "r3"}};
    const plan p = must_plan(self(), eps, pol);
    // gold first (fp tier 0), ordered by locality failover within; then the rest likewise.
    EXPECT_EQ(levels_of(p), (idx{{0}, {2}, {1}, {4}, {3}}));
    EXPECT_EQ(tiers_of(p), (std::vector<uint32_t>{0, 3, 4, 8, 9}));
}

std::vector<endpoint> distribute_cluster()
{
    return {
        ep("n1", "r1", "z1", "s1", "a"), // 0
        ep("n1", "r1", "z1", "s1", "b"), // 1
        ep("n1", "r1", "z2", "s1", "c"), // 2
        ep("n1", "r1", "z2", "s1", "d"), // 3
        ep("n1", "r2", "z3", "s1", "e"), // 4
        ep("n1", "r2", "z3", "s1", "f"), // 5
    };
}

TEST(LocalityLevelsTest, DistributeWeightsAndRemovesUnlistedLocalities)
{
    policy pol = dr_policy();
    pol.setting.distribute = {{"r2/*", {{"r2/z3", 100}}},
                              {"r1/z1/*", {{"r1/z1/*", 80}, {"r1/z2/*", 20}}}};
    const plan p = must_plan(self(), distribute_cluster(), pol);
    ASSERT_TRUE(p.locality_weighted);
    ASSERT_EQ(p.levels.size(), 1U);
    const auto& g = p.levels[0].groups;
    ASSERT_EQ(g.size(), 2U);
    EXPECT_EQ(g[0].locality, (where{"r1", "z1", "s1"}));
    EXPECT_EQ(g[0].weight, 80U);
    EXPECT_EQ(g[0].endpoints, (std::vector<uint32_t>{0, 1}));
    EXPECT_EQ(g[1].weight, 20U);
    EXPECT_EQ(g[1].endpoints, (std::vector<uint32_t>{2, 3}));
    EXPECT_EQ(p.excluded, (std::vector<uint32_t>{4, 5})); // r2 is not listed: removed
}

TEST(LocalityLevelsTest, DistributeWildcardSplitsOverMatchedLocalities)
{
    policy pol = dr_policy();
    pol.outlier_detection = false; // distribute applies with or without outlier detection
    // "*" is less specific than "r2/z3" and takes what is left (r1/z1 and r1/z2), split by
    // their original weights (2 endpoints each): ceil(30 * 2 / 4) = 15 each.
    pol.setting.distribute = {{"*", {{"*", 30}, {"r2/z3", 70}}}};
    const plan p = must_plan(self(), distribute_cluster(), pol);
    ASSERT_EQ(p.levels.size(), 1U);
    const auto& g = p.levels[0].groups;
    ASSERT_EQ(g.size(), 3U);
    EXPECT_EQ(g[0].weight, 15U);
    EXPECT_EQ(g[1].weight, 15U);
    EXPECT_EQ(g[2].weight, 70U);
    EXPECT_TRUE(p.excluded.empty());
}

TEST(LocalityLevelsTest, DistributeWithNoMatchingFromKeepsEndpointWeights)
{
    policy pol = dr_policy();
    pol.setting.distribute = {{"r7/*", {{"r1/*", 100}}}};
    auto eps = distribute_cluster();
    eps[4].weight = 5;
    const plan p = must_plan(self(), eps, pol);
    ASSERT_EQ(p.levels.size(), 1U);
    const auto& g = p.levels[0].groups;
    ASSERT_EQ(g.size(), 3U);
    EXPECT_EQ(g[0].weight, 2U);
    EXPECT_EQ(g[1].weight, 2U);
    EXPECT_EQ(g[2].weight, 6U);
    EXPECT_TRUE(p.excluded.empty());
}

TEST(LocalityLevelsTest, DistributeWeightAboveHundredIsAnError)
{
    policy pol = dr_policy();
    pol.setting.distribute = {{"*", {{"r1/*", 101}}}};
    auto r = build_plan(self(), distribute_cluster(), pol);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.err().where, "localityLbSetting.distribute[0].to[r1/*]");
}

TEST(LocalityLevelsTest, LocalityMatchWildcards)
{
    const where w{"us-east", "us-east-1a", "rack1"};
    EXPECT_TRUE(locality_matches(w, "*"));
    EXPECT_TRUE(locality_matches(w, "us-east"));
    EXPECT_TRUE(locality_matches(w, "us-east/*"));
    EXPECT_TRUE(locality_matches(w, "us-east/us-east-1a"));
    EXPECT_TRUE(locality_matches(w, "us-east/us-east-1a/rack1"));
    EXPECT_TRUE(locality_matches(w, "*/us-east-1a/*"));
    EXPECT_FALSE(locality_matches(w, "us-west/*"));
    EXPECT_FALSE(locality_matches(w, "us-east/us-east-1b"));
    EXPECT_FALSE(locality_matches(w, "us-east/us-east-1a/rack2"));
    EXPECT_FALSE(locality_matches(w, "us"));
}

TEST(LocalityLevelsTest, ModeLabels)
{
    EXPECT_TRUE(mode_labels(mode::any).empty());
    EXPECT_EQ(mode_labels(mode::prefer_close),
              (std::vector<std::string>{label_network, label_region, label_zone}));
    EXPECT_EQ(mode_labels(mode::prefer_same_node).size(), 5U);
}

} // namespace
} // namespace sluice::locality
