// compile(): endpoints and their locality, policy inheritance (DR -> subset ->
// portLevelSettings), traffic-distribution levels for every mode, precedence, DR override,
// Maglev determinism over shuffled input, stable endpoint ids, listeners.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "mesh_builder.hh"
#include "sluice/locality/priority_load.hh"

namespace sluice::testing {
namespace {

constexpr const char* web = "web.prod.svc.cluster.local";

using level_sets = std::vector<std::set<std::string>>;

level_sets levels(const snapshot::cluster& c)
{
    level_sets out;
    for (const auto& l : c.plan.levels) {
        std::set<std::string> s;
        for (const uint32_t i : l.endpoints) {
            s.insert(c.endpoints[i].address);
        }
        out.push_back(s);
    }
    return out;
}

const snapshot::cluster& must_find(const snapshot::snapshot& s, const std::string& name)
{
    const auto* c = s.find_cluster(name);
    if (c == nullptr) {
        ADD_FAILURE() << "no cluster " << name;
        static const snapshot::cluster none;
        return none;
    }
    return *c;
}

// ---------------------------------------------------------------- policy inheritance

model::mesh policy_mesh()
{
    model::mesh m;
    m.services.push_back(service("prod", "reviews", {{"http", 9080}, {"grpc", 9090}}));
    model::destination_rule d =
        rule("prod", "reviews", "reviews.prod.svc.cluster.local",
             {subset("v2", {{"version", "v2"}}), subset("v3", {{"version", "v3"}})});
    model::traffic_policy top;
    top.lb = model::load_balancer{};
    top.lb->simple = model::load_balancer::simple_lb::round_robin;
    top.pool = model::connection_pool{model::tcp_pool{}, std::nullopt};
    top.pool->tcp->max_connections = 100;
    top.outlier = model::outlier_detection{};
    top.outlier->consecutive_5xx_errors = 7;
    top.tls = model::client_tls{};
    top.tls->mode = model::client_tls::mode_t::simple;
    model::port_traffic_policy pl;
    pl.port = 9080;
    pl.lb = model::load_balancer{};
    pl.lb->simple = model::load_balancer::simple_lb::random;
    top.port_level.push_back(pl);
    d.policy = top;
    model::traffic_policy v2;
    v2.lb = model::load_balancer{};
    v2.lb->simple = model::load_balancer::simple_lb::least_conn;
    d.subsets[0].policy = v2;
    model::traffic_policy v3;
    model::port_traffic_policy v3pl;
    v3pl.port = 9090;
    v3pl.pool = model::connection_pool{model::tcp_pool{}, std::nullopt};
    v3pl.pool->tcp->max_connections = 5;
    v3.port_level.push_back(v3pl);
    d.subsets[1].policy = v3;
    m.destination_rules.push_back(d);
    return m;
}

TEST(CompilePolicy, SubsetInheritsThenOverridesAndPortLevelTakesDefaults)
{
    const auto s = must_compile(policy_mesh());
    using lb = snapshot::lb_policy::simple_t;
    const auto& top = must_find(s, "outbound|9090||reviews.prod.svc.cluster.local").policy;
    EXPECT_EQ(top.lb.simple, lb::round_robin);
    EXPECT_EQ(top.tcp.max_connections, 100U);
    ASSERT_TRUE(top.outlier.has_value());
    EXPECT_EQ(top.outlier->consecutive_5xx_errors, 7U);
    EXPECT_EQ(top.outlier->interval, std::chrono::seconds(10));
    EXPECT_EQ(top.panic_threshold, 0U); // minHealthPercent with outlierDetection
    EXPECT_EQ(top.tls.mode, snapshot::tls_policy::mode_t::simple);
    EXPECT_EQ(top.source, "DestinationRule prod/reviews");

    // portLevelSettings 9080 sets only the load balancer: the rest is the default, not the
    // DR-level value.
    const auto& p9080 = must_find(s, "outbound|9080||reviews.prod.svc.cluster.local").policy;
    EXPECT_EQ(p9080.lb.simple, lb::random);
    EXPECT_EQ(p9080.tcp.max_connections, UINT32_MAX);
    EXPECT_EQ(p9080.tcp.connect_timeout, std::chrono::seconds(10));
    EXPECT_FALSE(p9080.outlier.has_value());
    EXPECT_EQ(p9080.panic_threshold, 50U); // Envoy's default without outlierDetection
    EXPECT_EQ(p9080.tls.mode, snapshot::tls_policy::mode_t::disable);

    // Subset v2 inherits the DR-level policy and overrides the load balancer.
    const auto& v2 = must_find(s, "outbound|9090|v2|reviews.prod.svc.cluster.local").policy;
    EXPECT_EQ(v2.lb.simple, lb::least_conn);
    EXPECT_EQ(v2.tcp.max_connections, 100U);
    ASSERT_TRUE(v2.outlier.has_value());
    EXPECT_EQ(v2.tls.mode, snapshot::tls_policy::mode_t::simple);
    const auto& v2p = must_find(s, "outbound|9080|v2|reviews.prod.svc.cluster.local").policy;
    EXPECT_EQ(v2p.lb.simple, lb::least_conn);
    EXPECT_EQ(v2p.tcp.max_connections, UINT32_MAX);
    EXPECT_FALSE(v2p.outlier.has_value());

    // Subset v3's own portLevelSettings for 9090 replace all four fields.
    const auto& v3 = must_find(s, "outbound|9090|v3|reviews.prod.svc.cluster.local").policy;
    EXPECT_EQ(v3.lb.simple, lb::least_request);
    EXPECT_EQ(v3.tcp.max_connections, 5U);
    EXPECT_FALSE(v3.outlier.has_value());
    EXPECT_EQ(v3.tls.mode, snapshot::tls_policy::mode_t::disable);
    const auto& v3p = must_find(s, "outbound|9080|v3|reviews.prod.svc.cluster.local").policy;
    EXPECT_EQ(v3p.lb.simple, lb::random);
    EXPECT_EQ(v3p.tcp.max_connections, UINT32_MAX);
}

TEST(CompilePolicy, NoRuleGivesIstioDefaults)
{
    model::mesh m;
    m.services.push_back(service("prod", "web", {{"http", 80}}));
    const auto s = must_compile(m);
    const auto& p = must_find(s, "outbound|80||web.prod.svc.cluster.local").policy;
    EXPECT_EQ(p.lb.simple, snapshot::lb_policy::simple_t::least_request);
    EXPECT_EQ(p.tcp.max_connections, UINT32_MAX);
    EXPECT_EQ(p.http.http2_max_requests, UINT32_MAX);
    EXPECT_EQ(p.http.max_retries, UINT32_MAX);
    EXPECT_EQ(p.http.idle_timeout, std::chrono::hours(1));
    EXPECT_FALSE(p.outlier.has_value());
    EXPECT_EQ(p.panic_threshold, 50U);
    EXPECT_TRUE(p.source.empty());
}

TEST(CompilePolicy, WorkloadSelectorOfARuleMustSelectTheAppliance)
{
    model::mesh m = policy_mesh();
    m.destination_rules[0].workload_selector = {{"app", "sidecar-only"}};
    const auto s = must_compile(m);
    EXPECT_TRUE(
        must_find(s, "outbound|9080||reviews.prod.svc.cluster.local").policy.source.empty());
    EXPECT_EQ(s.find_cluster("outbound|9080|v2|reviews.prod.svc.cluster.local"), nullptr);
}

// ---------------------------------------------------------------- endpoints

TEST(CompileEndpoints, ServiceEntryEndpointsAndSelectedWorkloadEntries)
{
    model::mesh m;
    auto se = service_entry("vm", "legacy", {"legacy.example"}, {se_port(80, "http", "HTTP", 8080)},
                            {workload("10.1.0.1", {{"app", "legacy"}}, "r1/z1/s1", "n1"),
                             workload("10.1.0.2", {}, "r2/z2")});
    se.endpoints[0].ports = {{"http", 9000}};
    se.workload_selector = {{"app", "legacy"}};
    m.service_entries.push_back(se);
    model::workload_entry we;
    we.meta = meta("WorkloadEntry", "vm", "we-1");
    we.spec = workload("10.1.0.3", {{"app", "legacy"}, {locality::label_zone, "zz"}}, "", "n3");
    we.spec.weight = 5;
    m.workload_entries.push_back(we);
    model::workload_entry other_ns = we;
    other_ns.meta.ns = "elsewhere";
    other_ns.spec.address = "10.1.0.4";
    m.workload_entries.push_back(other_ns);
    model::workload_entry other_labels = we;
    other_labels.meta.name = "we-2";
    other_labels.spec.address = "10.1.0.5";
    other_labels.spec.labels_ = {{"app", "other"}};
    m.workload_entries.push_back(other_labels);

    const auto s = must_compile(m);
    const auto& c = must_find(s, "outbound|80||legacy.example");
    ASSERT_EQ(c.endpoints.size(), 3U);
    std::map<std::string, const snapshot::endpoint*> by_addr;
    for (const auto& e : c.endpoints) {
        by_addr[e.address] = &e;
    }
    ASSERT_EQ(by_addr.count("10.1.0.1"), 1U);
    EXPECT_EQ(by_addr["10.1.0.1"]->port, 9000U); // the endpoint's named port
    EXPECT_EQ(by_addr["10.1.0.2"]->port, 8080U); // else the targetPort
    EXPECT_EQ(by_addr["10.1.0.2"]->locality.region, "r2");
    EXPECT_EQ(by_addr["10.1.0.2"]->locality.zone, "z2");
    EXPECT_EQ(by_addr["10.1.0.2"]->network, "n1"); // unset network: the appliance's
    ASSERT_EQ(by_addr.count("10.1.0.3"), 1U);
    EXPECT_EQ(by_addr["10.1.0.3"]->origin, "WorkloadEntry vm/we-1");
    EXPECT_EQ(by_addr["10.1.0.3"]->weight, 5U);
    EXPECT_EQ(by_addr["10.1.0.3"]->network, "n3");
    EXPECT_EQ(by_addr["10.1.0.3"]->locality.zone, "zz"); // from the topology label
    EXPECT_EQ(by_addr["10.1.0.1"]->weight, 1U);          // weight 0 means 1
    EXPECT_TRUE(std::is_sorted(c.endpoints.begin(), c.endpoints.end(),
                               [](const auto& a, const auto& b) { return a.id < b.id; }));
}

TEST(CompileEndpoints, EndpointSlicePortsByNameReadinessAndLocality)
{
    model::mesh m;
    m.services.push_back(service("prod", "web", {{"http", 80}, {"metrics", 9090}}));
    m.endpoint_slices.push_back(slice(
        "prod", "web-a", "web", {{"10.0.0.1", "z1", "node-a"}, {"10.0.0.2", "z2", "node-b", false}},
        {{"metrics", 19090}, {"http", 8080}}, {{"version", "v1"}}));
    m.endpoint_slices.push_back(
        slice("prod", "other", "not-web", {{"10.9.9.9", "z1", "n"}}, {{"http", 8080}}));
    const auto s = must_compile(m);
    const auto& c80 = must_find(s, "outbound|80||web.prod.svc.cluster.local");
    ASSERT_EQ(c80.endpoints.size(), 2U);
    for (const auto& e : c80.endpoints) {
        EXPECT_EQ(e.port, 8080U);
        EXPECT_EQ(e.locality.region, "r1"); // slices carry no region: the appliance's
        EXPECT_EQ(e.network, "n1");
        EXPECT_EQ(e.endpoint_labels.at("version"), "v1");
        EXPECT_EQ(e.ready, e.address == "10.0.0.1");
    }
    const auto& c9090 = must_find(s, "outbound|9090||web.prod.svc.cluster.local");
    ASSERT_EQ(c9090.endpoints.size(), 2U);
    EXPECT_EQ(c9090.endpoints[0].port, 19090U);
    // The not-ready endpoint is in no level.
    EXPECT_EQ(levels(c80), (level_sets{{"10.0.0.1"}}));
    EXPECT_EQ(c80.plan.excluded.size(), 1U);
}

// ---------------------------------------------------------------- locality levels

// Three zones of region r1 on network n1, one zone of region r2, and one endpoint on
// another network. The appliance is n1, r1/z1 (no subzone), node-a.
model::mesh three_zones()
{
    model::mesh m;
    m.services.push_back(service("prod", "web", {{"http", 80}}));
    m.endpoint_slices.push_back(slice("prod", "a", "web",
                                      {{"10.0.1.1", "z1", "node-a"}, {"10.0.1.2", "z1", "node-b"}},
                                      {{"http", 8080}}));
    m.endpoint_slices.push_back(
        slice("prod", "b", "web", {{"10.0.2.1", "z2", "node-c"}}, {{"http", 8080}}));
    m.endpoint_slices.push_back(slice("prod", "c", "web", {{"10.0.3.1", "z3", "node-d"}},
                                      {{"http", 8080}}, {{locality::label_region, "r2"}}));
    m.endpoint_slices.push_back(slice("prod", "d", "web", {{"10.0.4.1", "z1", "node-e"}},
                                      {{"http", 8080}}, {{locality::label_network, "n2"}}));
    return m;
}

compile::node_locality no_subzone()
{
    compile::node_locality n = appliance();
    n.locality.subzone = "";
    return n;
}

level_sets levels_with(model::mesh m)
{
    const auto s = must_compile(m, no_subzone());
    return levels(must_find(s, "outbound|80||web.prod.svc.cluster.local"));
}

TEST(CompileLocality, EveryTrafficDistributionMode)
{
    auto with_annotation = [](std::string v) {
        model::mesh m = three_zones();
        m.services[0].meta.annotations["networking.istio.io/traffic-distribution"] = v;
        return m;
    };
    // Default toward a backend: PreferNetwork.
    EXPECT_EQ(levels_with(three_zones()),
              (level_sets{{"10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.3.1"}, {"10.0.4.1"}}));
    model::mesh close = three_zones();
    close.services[0].traffic_distribution = "PreferClose";
    const level_sets close_levels{
        {"10.0.1.1", "10.0.1.2"}, {"10.0.2.1"}, {"10.0.3.1"}, {"10.0.4.1"}};
    EXPECT_EQ(levels_with(close), close_levels);
    EXPECT_EQ(levels_with(with_annotation("PreferSameZone")), close_levels);
    EXPECT_EQ(levels_with(with_annotation("PreferRegion")),
              (level_sets{{"10.0.1.1", "10.0.1.2", "10.0.2.1"}, {"10.0.3.1"}, {"10.0.4.1"}}));
    EXPECT_EQ(levels_with(with_annotation("PreferSameNode")),
              (level_sets{{"10.0.1.1"}, {"10.0.1.2"}, {"10.0.2.1"}, {"10.0.3.1"}, {"10.0.4.1"}}));
    const level_sets all{{"10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.3.1", "10.0.4.1"}};
    EXPECT_EQ(levels_with(with_annotation("Any")), all);
    EXPECT_EQ(levels_with(with_annotation("SomethingElse")), all); // unknown: Any
}

TEST(CompileLocality, PrecedenceFieldThenAnnotationThenServiceEntry)
{
    model::mesh m = three_zones();
    m.services[0].traffic_distribution = "PreferClose";
    m.services[0].meta.annotations["networking.istio.io/traffic-distribution"] = "Any";
    auto se = service_entry("prod", "web-se", {web}, {se_port(80, "http", "HTTP")});
    se.meta.annotations["networking.istio.io/traffic-distribution"] = "PreferRegion";
    m.service_entries.push_back(se);
    {
        const auto s = must_compile(m, no_subzone());
        const auto& c = must_find(s, "outbound|80||web.prod.svc.cluster.local");
        EXPECT_EQ(c.locality_policy.distribution, locality::mode::prefer_close);
        EXPECT_NE(c.distribution_source.find("spec.trafficDistribution"), std::string::npos);
    }
    m.services[0].traffic_distribution.clear();
    {
        const auto s = must_compile(m, no_subzone());
        const auto& c = must_find(s, "outbound|80||web.prod.svc.cluster.local");
        EXPECT_EQ(c.locality_policy.distribution, locality::mode::any);
    }
    m.services[0].meta.annotations.clear();
    {
        const auto s = must_compile(m, no_subzone());
        const auto& c = must_find(s, "outbound|80||web.prod.svc.cluster.local");
        EXPECT_EQ(c.locality_policy.distribution, locality::mode::prefer_region);
        EXPECT_NE(c.distribution_source.find("ServiceEntry prod/web-se"), std::string::npos);
    }
}

TEST(CompileLocality, InternalTrafficPolicyLocalKeepsOnlyTheNode)
{
    model::mesh m = three_zones();
    m.services[0].internal_traffic_policy = "Local";
    EXPECT_EQ(levels_with(m), (level_sets{{"10.0.1.1"}}));
    compile::node_locality elsewhere = no_subzone();
    elsewhere.node_name = "node-z";
    const auto s = must_compile(m, elsewhere);
    EXPECT_TRUE(must_find(s, "outbound|80||web.prod.svc.cluster.local").plan.levels.empty());
}

TEST(CompileLocality, DestinationRuleOverridesTrafficDistribution)
{
    model::mesh m = three_zones();
    m.services[0].traffic_distribution = "PreferClose";
    m.destination_rules.push_back(rule("prod", "web", web));
    // A rule without outlierDetection: no failover levels (Envoy could not detect failure).
    EXPECT_EQ(levels_with(m),
              (level_sets{{"10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.3.1", "10.0.4.1"}}));
    // With outlierDetection: Istio's locality failover (region/zone/subzone; not network).
    m.destination_rules[0].policy = model::traffic_policy{};
    m.destination_rules[0].policy->outlier = model::outlier_detection{};
    EXPECT_EQ(levels_with(m),
              (level_sets{{"10.0.1.1", "10.0.1.2", "10.0.4.1"}, {"10.0.2.1"}, {"10.0.3.1"}}));
    // failoverPriority on the network label.
    m.destination_rules[0].policy->lb = model::load_balancer{};
    m.destination_rules[0].policy->lb->locality = model::locality_lb_setting{};
    m.destination_rules[0].policy->lb->locality->failover_priority = {locality::label_network};
    EXPECT_EQ(levels_with(m),
              (level_sets{{"10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.3.1"}, {"10.0.4.1"}}));
    const auto s = must_compile(m, no_subzone());
    EXPECT_NE(must_find(s, "outbound|80||web.prod.svc.cluster.local")
                  .distribution_source.find("DestinationRule prod/web"),
              std::string::npos);
}

// ---------------------------------------------------------------- determinism, Maglev

model::mesh maglev_mesh(bool shuffled, bool drop_one = false)
{
    model::mesh m;
    std::vector<model::workload_spec> eps;
    for (int i = 0; i < 20; ++i) {
        if (drop_one && i == 7) {
            continue;
        }
        eps.push_back(workload("10.2.0." + std::to_string(i + 1), {{"v", i % 2 ? "a" : "b"}},
                               i < 10 ? "r1/z1/s1" : "r1/z2/s1"));
    }
    m.service_entries.push_back(
        service_entry("prod", "pool", {"pool.example"}, {se_port(443, "tls", "TLS")}, eps));
    m.service_entries.push_back(service_entry(
        "prod", "other", {"other.example"}, {se_port(80, "http", "HTTP")}, {workload("10.3.0.1")}));
    model::destination_rule d = rule("prod", "pool", "pool.example", {subset("a", {{"v", "a"}})});
    d.policy = model::traffic_policy{};
    d.policy->lb = model::load_balancer{};
    d.policy->lb->hash = model::consistent_hash{};
    d.policy->lb->hash->by = model::consistent_hash::key::source_ip;
    d.policy->lb->hash->algo = model::consistent_hash::algorithm::maglev;
    d.policy->lb->hash->maglev_table_size = 1031;
    d.policy->outlier = model::outlier_detection{};
    m.destination_rules.push_back(d);
    m.virtual_services.push_back(
        vs("prod", "a", {"other.example"}, {}, {http({}, {to("other.example")})}));
    m.virtual_services.push_back(vs("prod", "b", {"pool.example"}, {},
                                    {http({uri(regex("/x[0-9]+"))}, {to("pool.example", "a")})}));
    if (shuffled) {
        std::mt19937 rng(42);
        std::shuffle(m.service_entries[0].endpoints.begin(), m.service_entries[0].endpoints.end(),
                     rng);
        std::reverse(m.service_entries.begin(), m.service_entries.end());
        std::reverse(m.virtual_services.begin(), m.virtual_services.end());
    }
    return m;
}

TEST(CompileMaglev, DeterministicAcrossShuffledInput)
{
    const auto a = must_compile(maglev_mesh(false));
    const auto b = must_compile(maglev_mesh(true));
    EXPECT_EQ(a.describe(), b.describe());
    const auto& ca = must_find(a, "outbound|443||pool.example");
    const auto& cb = must_find(b, "outbound|443||pool.example");
    ASSERT_EQ(ca.plan.levels.size(), 2U); // outlierDetection: zone z1, then z2
    ASSERT_EQ(ca.maglev.size(), 2U);
    EXPECT_EQ(ca.maglev[0].all.size(), 1031U); // consistentHash.maglev.tableSize
    for (size_t l = 0; l < ca.maglev.size(); ++l) {
        const auto sa = ca.maglev[l].all.slots();
        const auto sb = cb.maglev[l].all.slots();
        EXPECT_TRUE(std::equal(sa.begin(), sa.end(), sb.begin(), sb.end()));
    }
    // The same hash picks the same backend in both.
    for (uint64_t h = 0; h < 1000; ++h) {
        const uint32_t ea = snapshot::pick_endpoint(ca, 0, locality::all_groups, h * 0x9e37);
        const uint32_t eb = snapshot::pick_endpoint(cb, 0, locality::all_groups, h * 0x9e37);
        ASSERT_NE(ea, snapshot::no_index);
        EXPECT_EQ(ca.endpoints[ea].id, cb.endpoints[eb].id);
        EXPECT_EQ(ca.endpoints[ea].locality.zone, "z1"); // level 0 is the appliance's zone
    }
    // A cluster that needs no consistent hashing gets no table.
    EXPECT_TRUE(must_find(a, "outbound|80||other.example").maglev.empty());
}

TEST(CompileMaglev, EndpointIdsAreStableAndRemovalMovesFewSlots)
{
    const auto a = must_compile(maglev_mesh(false));
    const auto b = must_compile(maglev_mesh(true, true));
    const auto& ca = must_find(a, "outbound|443||pool.example");
    const auto& cb = must_find(b, "outbound|443||pool.example");
    std::set<uint64_t> ids_b;
    for (const auto& e : cb.endpoints) {
        ids_b.insert(e.id);
    }
    size_t kept = 0;
    for (const auto& e : ca.endpoints) {
        kept += ids_b.count(e.id);
    }
    EXPECT_EQ(kept, 19U);
    // One of 10 endpoints of level 0 removed: about 1/10 of the slots move, not all.
    const uint32_t moved = maglev::slots_moved(ca.maglev[0].all, cb.maglev[0].all);
    EXPECT_GT(moved, 1031U / 20);
    EXPECT_LT(moved, 1031U / 5);
}

TEST(CompileMaglev, AllClustersOptionAndRegexCounts)
{
    compile::options o;
    o.maglev_all_clusters = true;
    const auto s = must_compile(maglev_mesh(false), appliance(), o);
    EXPECT_EQ(must_find(s, "outbound|80||other.example").maglev.size(), 1U);
    EXPECT_EQ(s.regex_count, 1U);
    EXPECT_EQ(s.regex_fallback_count, 0U);
}

// ---------------------------------------------------------------- listeners

TEST(CompileListeners, GatewayServersAndServiceVips)
{
    model::mesh m;
    auto svc = service("prod", "db", {{"http-api", 80}, {"tcp-pg", 5432}});
    svc.cluster_ip = "10.96.0.10";
    svc.external_ips = {"198.18.1.10"};
    m.services.push_back(svc);
    m.endpoint_slices.push_back(slice("prod", "db-1", "db", {{"10.0.0.1", "z1", "node-a"}},
                                      {{"http-api", 8080}, {"tcp-pg", 5432}}));
    auto g = gateway("istio-system", "edge",
                     {server(80, {"*/*"}), server(443, {"*/*"}, "HTTPS"),
                      server(8443, {"*/*"}, "TLS"), server(9000, {"*/*"}, "TCP")});
    g.servers[1].tls = model::server_tls{};
    g.servers[1].tls->mode = model::server_tls::mode_t::simple;
    g.servers[2].tls = model::server_tls{};
    m.gateways.push_back(g);
    const auto s = must_compile(m);
    using K = snapshot::listener_kind;
    std::map<uint32_t, K> gw;
    std::vector<const snapshot::listener*> vips;
    for (const auto& l : s.listeners) {
        if (l.origin == snapshot::listener::origin_t::gateway) {
            gw[l.port] = l.kind;
        } else {
            vips.push_back(&l);
        }
    }
    EXPECT_EQ(gw[80], K::http);
    EXPECT_EQ(gw[443], K::http); // HTTPS terminated: HTTP routes
    EXPECT_EQ(gw[8443], K::tls_passthrough);
    EXPECT_EQ(gw[9000], K::tcp);
    EXPECT_TRUE(snapshot::is_l7(gw[8443]));
    EXPECT_FALSE(snapshot::is_l7(gw[9000]));
    ASSERT_EQ(vips.size(), 4U); // 2 addresses x 2 ports
    for (const auto* l : vips) {
        ASSERT_NE(l->cluster, snapshot::no_index);
        const auto& c = s.clusters[l->cluster];
        EXPECT_EQ(c.port, l->port);
        EXPECT_EQ(l->kind, l->port == 80 ? K::http : K::tcp);
        EXPECT_EQ(c.maglev.empty(), l->port == 80); // only the L4 VIP's cluster hashes
    }
    // The gateway's TLS server carries its settings; TLS_AUTO means TLS 1.2.
    EXPECT_EQ(s.servers[1].tls->min_protocol_version, snapshot::server_tls::version::tls_1_2);
}

// ---------------------------------------------------------------- sluice.io/health-check

constexpr const char* health_check_key = "sluice.io/health-check";

/// The clusters compile made for `host` from its Service/ServiceEntry (not route markers).
std::vector<const snapshot::cluster*> clusters_of(const snapshot::snapshot& s,
                                                  const std::string& host)
{
    std::vector<const snapshot::cluster*> out;
    for (const auto& c : s.clusters) {
        if (c.host == host && !c.missing) {
            out.push_back(&c);
        }
    }
    return out;
}

TEST(CompileHealthCheck, ServiceAnnotationReachesEveryPortAndSubsetCluster)
{
    model::mesh m = policy_mesh(); // reviews: ports 9080, 9090; subsets v2, v3
    m.services[0].meta.annotations[health_check_key] =
        "http:/healthz,interval=2s,timeout=500ms,unhealthyThreshold=2,healthyThreshold=1";
    m.services.push_back(service("prod", "web", {{"http", 80}}));
    const auto s = must_compile(m);

    snapshot::health_check_spec want;
    want.kind = snapshot::health_check_spec::kind_t::http;
    want.path = "/healthz";
    want.interval = std::chrono::seconds(2);
    want.timeout = std::chrono::milliseconds(500);
    want.unhealthy_threshold = 2;
    want.healthy_threshold = 1;
    const auto reviews = clusters_of(s, "reviews.prod.svc.cluster.local");
    ASSERT_EQ(reviews.size(), 6U); // 2 ports x {no subset, v2, v3}
    std::set<std::string> subsets;
    for (const auto* c : reviews) {
        SCOPED_TRACE(c->name);
        subsets.insert(c->subset);
        ASSERT_TRUE(c->health_check.has_value());
        EXPECT_EQ(*c->health_check, want);
    }
    EXPECT_EQ(subsets, (std::set<std::string>{"", "v2", "v3"}));

    // No annotation: no active checks.
    EXPECT_FALSE(must_find(s, "outbound|80||web.prod.svc.cluster.local").health_check.has_value());
    EXPECT_TRUE(s.notes.empty());
}

TEST(CompileHealthCheck, ServiceEntryAnnotationTakesTheDefaults)
{
    model::mesh m;
    auto se = service_entry("vm", "legacy", {"a.example", "b.example"},
                            {se_port(80, "http", "HTTP"), se_port(8080, "admin", "HTTP")},
                            {workload("10.1.0.1")});
    se.meta.annotations[health_check_key] = "tcp";
    m.service_entries.push_back(se);
    m.destination_rules.push_back(rule("vm", "a", "a.example", {subset("v1", {{"v", "1"}})}));
    const auto s = must_compile(m);

    const snapshot::health_check_spec defaults; // tcp, 5s, 1s, 3, 2
    size_t n = 0;
    for (const char* host : {"a.example", "b.example"}) {
        for (const auto* c : clusters_of(s, host)) {
            SCOPED_TRACE(c->name);
            ++n;
            ASSERT_TRUE(c->health_check.has_value());
            EXPECT_EQ(*c->health_check, defaults);
            EXPECT_EQ(c->health_check->kind, snapshot::health_check_spec::kind_t::tcp);
            EXPECT_EQ(c->health_check->interval, std::chrono::seconds(5));
            EXPECT_EQ(c->health_check->timeout, std::chrono::seconds(1));
            EXPECT_EQ(c->health_check->unhealthy_threshold, 3U);
            EXPECT_EQ(c->health_check->healthy_threshold, 2U);
        }
    }
    EXPECT_EQ(n, 6U); // a.example: 2 ports x {no subset, v1}; b.example: 2 ports
}

TEST(CompileHealthCheck, ServiceWinsOverServiceEntry)
{
    model::mesh m;
    m.services.push_back(service("prod", "web", {{"http", 80}}));
    m.services[0].meta.annotations[health_check_key] = "http:/from-service";
    auto se = service_entry("prod", "web-se", {web}, {se_port(80, "http", "HTTP")});
    se.meta.annotations[health_check_key] = "http:/from-entry,interval=9s";
    m.service_entries.push_back(se);
    {
        const auto s = must_compile(m);
        const auto& c = must_find(s, "outbound|80||web.prod.svc.cluster.local");
        ASSERT_TRUE(c.health_check.has_value());
        EXPECT_EQ(c.health_check->path, "/from-service");
        EXPECT_EQ(c.health_check->interval, std::chrono::seconds(5));
    }
    // Without the Service's annotation the ServiceEntry's applies.
    m.services[0].meta.annotations.clear();
    {
        const auto s = must_compile(m);
        const auto& c = must_find(s, "outbound|80||web.prod.svc.cluster.local");
        ASSERT_TRUE(c.health_check.has_value());
        EXPECT_EQ(c.health_check->path, "/from-entry");
        EXPECT_EQ(c.health_check->interval, std::chrono::seconds(9));
    }
    // Neither: none.
    m.service_entries[0].meta.annotations.clear();
    {
        const auto s = must_compile(m);
        EXPECT_FALSE(
            must_find(s, "outbound|80||web.prod.svc.cluster.local").health_check.has_value());
    }
}

TEST(CompileHealthCheck, InvalidAnnotationIsLeftOutWithANote)
{
    // validate() refuses it at apply time; compile, given it anyway, still builds the rest.
    model::mesh m;
    m.services.push_back(service("prod", "web", {{"http", 80}}));
    m.services[0].meta.annotations[health_check_key] = "udp";
    const auto s = must_compile(m);
    EXPECT_FALSE(must_find(s, "outbound|80||web.prod.svc.cluster.local").health_check.has_value());
    ASSERT_EQ(s.notes.size(), 1U);
    EXPECT_EQ(s.notes[0],
              "Service prod/web: metadata.annotations[sluice.io/health-check]: unknown health "
              "check kind \"udp\"; expected \"tcp\" or \"http:<path>\": no active health check "
              "for web.prod.svc.cluster.local");
}

TEST(CompileHealthCheck, DescribeShowsTheHealthCheck)
{
    model::mesh m;
    m.services.push_back(service("prod", "web", {{"http", 80}}));
    const std::string none = must_compile(m).describe();
    EXPECT_EQ(none.find(" hc="), std::string::npos);
    m.services[0].meta.annotations[health_check_key] = "http:/healthz";
    const std::string two = must_compile(m).describe();
    EXPECT_NE(two.find(" hc=http:/healthz,interval=5000000000ns"), std::string::npos) << two;
    m.services[0].meta.annotations[health_check_key] = "http:/healthz,healthyThreshold=3";
    const std::string three = must_compile(m).describe();
    m.services[0].meta.annotations[health_check_key] = "tcp";
    const std::string tcp = must_compile(m).describe();
    EXPECT_NE(none, two);
    EXPECT_NE(two, three);
    EXPECT_NE(two, tcp);
}

} // namespace
} // namespace sluice::testing
