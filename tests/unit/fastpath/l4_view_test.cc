// build_l4_view(): listeners from a compiled mesh, locality levels under health, Maglev over
// healthy endpoints, determinism across compiles and endpoint order, cluster sharing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "sluice/compile/compile.hh"
#include "sluice/fastpath/l4_view.hh"
#include "sluice/model/decode.hh"

namespace sluice {
namespace {

using fastpath::l4_view;

std::string slice(const std::string& name, const std::string& zone, const std::string& region,
                  const std::vector<std::string>& addrs)
{
    std::string s = "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
                    "  name: " +
                    name +
                    "\n  namespace: l4\n  labels:\n"
                    "    kubernetes.io/service-name: echo\n"
                    "    topology.kubernetes.io/region: " +
                    region +
                    "\n"
                    "addressType: IPv4\nports:\n- {name: tcp, port: 7000, protocol: TCP}\n"
                    "- {name: udp, port: 7001, protocol: UDP}\nendpoints:\n";
    for (const auto& a : addrs) {
        s += "- {addresses: [" + a + "], zone: " + zone + ", conditions: {ready: true}}\n";
    }
    return s;
}

std::string mesh_text(bool reverse = false, const std::string& extra = "")
{
    std::string s = "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: l4}\n"
                    "spec:\n  clusterIP: 198.18.10.1\n  trafficDistribution: PreferClose\n"
                    "  ports:\n  - {name: tcp, port: 7000, protocol: TCP}\n"
                    "  - {name: udp, port: 7001, protocol: UDP}\n";
    std::vector<std::string> parts = {
        slice("a", "zone-a", "region-1", {"198.19.1.10", "198.19.1.11", "198.19.1.12"}),
        slice("b", "zone-b", "region-1", {"198.19.2.10", "198.19.2.11"}),
        slice("c", "zone-c", "region-2", {"198.19.3.10"}),
    };
    if (reverse) {
        std::reverse(parts.begin(), parts.end());
    }
    for (const auto& p : parts) {
        s += p;
    }
    return s + extra;
}

const std::string outlier_dr = R"(---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: l4}
spec:
  host: echo.l4.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 4s, maxEjectionPercent: 100}
)";

snapshot::snapshot compile_text(const std::string& text)
{
    auto d = model::decode(text, "test.yaml");
    EXPECT_FALSE(d.has_errors());
    compile::node_locality node;
    node.locality = {"region-1", "zone-a", ""};
    node.network = "";
    auto s = compile::compile(d.objects, node, {});
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.err().to_string());
    return std::move(s).value();
}

std::unique_ptr<l4_view> view_of(const snapshot::snapshot& s,
                                 const std::set<std::string>& down = {},
                                 const l4_view* prev = nullptr)
{
    fastpath::l4_view_input in;
    in.snap = &s;
    in.previous = prev;
    in.tsc_hz = 1000000000;
    std::map<uint64_t, std::string> addr_of;
    for (const auto& c : s.clusters) {
        for (const auto& e : c.endpoints) {
            addr_of[e.id] = e.address;
        }
    }
    in.unhealthy = [down, addr_of](std::string_view, uint64_t id) {
        const auto it = addr_of.find(id);
        return it != addr_of.end() && down.count(it->second) != 0;
    };
    auto v = fastpath::build_l4_view(in);
    EXPECT_TRUE(v.ok());
    return std::move(v).value();
}

std::array<uint8_t, 4> ip4(uint32_t a)
{
    return {uint8_t(a >> 24), uint8_t(a >> 16), uint8_t(a >> 8), uint8_t(a)};
}

uint16_t be(uint16_t p)
{
    return uint16_t((p >> 8) | (p << 8));
}

// Backend address for a flow from 198.18.0.2:sport to the TCP VIP; "" when none.
std::string pick(const l4_view& v, uint16_t sport)
{
    const auto vip = ip4(0xc6120a01);
    const auto cl = ip4(0xc6120002);
    const auto* s = v.find(4, vip.data(), 6, be(7000));
    if (s == nullptr) {
        return "no-service";
    }
    const uint64_t h = fastpath::flow_hash(4, cl.data(), vip.data(), be(sport), be(7000), 6);
    const fastpath::l4_cluster* c = nullptr;
    const auto* e = v.choose(*s, vip.data(), h, &c);
    if (e == nullptr) {
        return "";
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", e->addr[0], e->addr[1], e->addr[2], e->addr[3]);
    return buf;
}

TEST(L4View, ListenersForTcpAndUdpVipPorts)
{
    const auto s = compile_text(mesh_text());
    const auto v = view_of(s);
    const auto vip = ip4(0xc6120a01);
    EXPECT_NE(v->find(4, vip.data(), 6, be(7000)), nullptr);
    EXPECT_NE(v->find(4, vip.data(), 17, be(7001)), nullptr);
    EXPECT_EQ(v->find(4, vip.data(), 17, be(7000)), nullptr) << "protocol is part of the key";
    EXPECT_EQ(v->find(4, vip.data(), 6, be(7002)), nullptr);
    const auto other = ip4(0xc6120a02);
    EXPECT_EQ(v->find(4, other.data(), 6, be(7000)), nullptr);
}

TEST(L4View, PreferCloseKeepsFlowsInZoneAndSpreadsByMaglev)
{
    const auto s = compile_text(mesh_text());
    const auto v = view_of(s);
    std::map<std::string, int> n;
    for (uint16_t p = 10000; p < 13000; ++p) {
        ++n[pick(*v, p)];
    }
    ASSERT_EQ(n.size(), 3u);
    for (const char* a : {"198.19.1.10", "198.19.1.11", "198.19.1.12"}) {
        EXPECT_NEAR(n[a], 1000, 150) << a;
    }
}

TEST(L4View, UnhealthyEndpointsGetNoNewFlowsAndTheLevelFailsOver)
{
    const auto s = compile_text(mesh_text(false, outlier_dr));
    const auto healthy = view_of(s);
    const auto one_down = view_of(s, {"198.19.1.10"});
    std::map<std::string, int> n;
    int moved = 0;
    for (uint16_t p = 10000; p < 13000; ++p) {
        const auto a = pick(*healthy, p);
        const auto b = pick(*one_down, p);
        ++n[b];
        if (a != "198.19.1.10") {
            moved += a != b ? 1 : 0; // Maglev: flows of healthy endpoints mostly stay
        }
    }
    EXPECT_EQ(n.count("198.19.1.10"), 0u);
    EXPECT_LT(moved, 300);
    // Two of three healthy: 140 * 2/3 = 93% stays in zone-a, 7% spills to zone-b.
    EXPECT_NEAR(n["198.19.2.10"] + n["198.19.2.11"], 210, 90);

    const auto zone_down = view_of(s, {"198.19.1.10", "198.19.1.11", "198.19.1.12"});
    n.clear();
    for (uint16_t p = 10000; p < 11000; ++p) {
        ++n[pick(*zone_down, p)];
    }
    EXPECT_EQ(n["198.19.2.10"] + n["198.19.2.11"], 1000) << "zone-b (same region) takes all";

    const auto all_down = view_of(s, {"198.19.1.10", "198.19.1.11", "198.19.1.12", "198.19.2.10",
                                      "198.19.2.11", "198.19.3.10"});
    EXPECT_EQ(pick(*all_down, 10000), "") << "nothing healthy and no panic (minHealthPercent 0)";
}

TEST(L4View, SameConfigSameChoicesWhateverTheOrder)
{
    const auto s1 = compile_text(mesh_text(false));
    const auto s2 = compile_text(mesh_text(true));
    const auto v1 = view_of(s1);
    const auto v2 = view_of(s2);
    for (uint16_t p = 1024; p < 11024; ++p) {
        ASSERT_EQ(pick(*v1, p), pick(*v2, p)) << p;
    }
}

TEST(L4View, UnchangedClustersAreSharedBetweenViews)
{
    const auto s = compile_text(mesh_text());
    const auto v1 = view_of(s);
    const auto v2 = view_of(s, {}, v1.get());
    ASSERT_GT(v1->cluster_count(), 0u);
    for (size_t i = 0; i < v1->cluster_count(); ++i) {
        EXPECT_EQ(&v1->cluster(i), &v2->cluster(i)) << "same config and health: reused";
    }
    const auto v3 = view_of(s, {"198.19.1.10"}, v2.get());
    const auto* c2 = v2->find_cluster("outbound|7000||echo.l4.svc.cluster.local");
    const auto* c3 = v3->find_cluster("outbound|7000||echo.l4.svc.cluster.local");
    ASSERT_NE(c2, nullptr);
    ASSERT_NE(c3, nullptr);
    EXPECT_NE(c2, c3) << "health changed: rebuilt";
    EXPECT_EQ(c3->unhealthy, 1u);
}

TEST(L4View, ForwardingAnnotation)
{
    std::string m = mesh_text();
    m.replace(m.find("metadata: {name: echo, namespace: l4}"),
              std::string("metadata: {name: echo, namespace: l4}").size(),
              "metadata: {name: echo, namespace: l4, annotations: {sluice.io/forwarding: gue}}");
    const auto s = compile_text(m);
    const auto v = view_of(s);
    const auto vip = ip4(0xc6120a01);
    const auto* svc = v->find(4, vip.data(), 6, be(7000));
    ASSERT_NE(svc, nullptr);
    EXPECT_EQ(svc->fwd, fastpath::forwarding::gue);
}

} // namespace
} // namespace sluice
