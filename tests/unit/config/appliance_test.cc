#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "sluice/config/appliance.hh"

namespace sluice::config {
namespace {

const std::string k_base = R"(node = { name = "n1"; region = "r1"; zone = "z1"; };
eal = { args = [ "--no-huge", "-l", "0-3" ]; };
lcores = { workers = [ 1, 2 ]; slowpath = 3; };
ports = (
  { name = "wan"; device = "net_ring0"; addresses = [ "198.18.0.1/24" ]; },
  { name = "lan"; device = "net_ring1"; addresses = [ "198.19.1.1/24", "2001:db8::1/64" ];
    snat = [ "198.19.255.1" ]; }
);
routes = ( { prefix = "198.19.64.0/18"; via = "198.19.1.254"; port = "lan"; } );
)";

load_result parse_text(const std::string& text)
{
    return parse(text, "test.conf");
}

std::vector<std::string> messages(const load_result& r)
{
    std::vector<std::string> out;
    for (const auto& e : r.errors) {
        out.push_back(e.to_string());
    }
    return out;
}

bool has(const load_result& r, const std::string& text)
{
    const auto m = messages(r);
    return std::any_of(m.begin(), m.end(),
                       [&](const std::string& s) { return s.find(text) != std::string::npos; });
}

std::string dump(const load_result& r)
{
    std::string s;
    for (const auto& m : messages(r)) {
        s += m + "\n";
    }
    return s;
}

TEST(ApplianceConfig, ShippedDefaultConfigIsValid)
{
    auto r = load(std::string(SLUICE_SOURCE_DIR) + "/conf/sluice.conf");
    ASSERT_TRUE(r.errors.empty()) << dump(r);
    const auto& c = *r.config;
    EXPECT_EQ(c.ports.size(), 2u);
    EXPECT_EQ(c.ports[0].name, "wan");
    EXPECT_EQ(c.lcores.workers, std::vector<unsigned>{1});
    EXPECT_EQ(c.lcores.slowpath, 2u);
    EXPECT_EQ(c.exception.kind, exception_kind::tap);
    EXPECT_EQ(c.api.port, 9180);
    EXPECT_EQ(c.mesh.cluster_domain, "cluster.local");
}

TEST(ApplianceConfig, ParsesAndDefaults)
{
    auto r = parse_text(k_base);
    ASSERT_TRUE(r.errors.empty()) << dump(r);
    const auto& c = *r.config;
    EXPECT_EQ(c.node.zone, "z1");
    EXPECT_EQ(c.eal_args.size(), 3u);
    ASSERT_EQ(c.ports.size(), 2u);
    EXPECT_EQ(c.ports[1].queues, 2) << "queues default to the number of workers";
    EXPECT_EQ(c.ports[1].rx_desc, 1024);
    EXPECT_EQ(c.ports[1].mtu, 1500);
    ASSERT_EQ(c.ports[1].addresses.size(), 2u);
    EXPECT_EQ(c.ports[1].addresses[1].to_string(), "2001:db8::1/64");
    EXPECT_EQ(c.ports[1].snat[0].to_string(), "198.19.255.1");
    ASSERT_EQ(c.routes.size(), 1u);
    EXPECT_EQ(c.routes[0].via.to_string(), "198.19.1.254");
    EXPECT_EQ(c.conntrack.capacity, 1u << 20);
    EXPECT_EQ(c.conntrack.timeouts.tcp_established, 900u);
    EXPECT_EQ(c.state_dir, "/var/lib/sluice");
    EXPECT_EQ(c.api.address.to_string(), "127.0.0.1");
}

TEST(ApplianceConfig, BadCidrNamesFileLineSettingAndValue)
{
    std::string t = k_base;
    t.replace(t.find("\"198.18.0.1/24\""), 15, "\"198.18.0.1/33\"");
    auto r = parse_text(t);
    ASSERT_FALSE(r.config);
    ASSERT_EQ(r.errors.size(), 1u) << dump(r);
    EXPECT_EQ(r.errors[0].to_string(),
              "test.conf:5: ports[0].addresses[0]: invalid CIDR \"198.18.0.1/33\": prefix "
              "length 33 exceeds 32 for IPv4");
}

TEST(ApplianceConfig, UnknownLcoreIsRefused)
{
    std::string t = k_base;
    t.replace(t.find("workers = [ 1, 2 ]"), 18, "workers = [ 1, 7 ]");
    auto r = parse_text(t);
    ASSERT_FALSE(r.config);
    EXPECT_TRUE(has(r, "test.conf:3: lcores.workers[1]: unknown lcore 7: not enabled by eal.args"))
        << dump(r);
}

TEST(ApplianceConfig, MainLcoreCannotBeAWorker)
{
    std::string t = k_base;
    t.replace(t.find("workers = [ 1, 2 ]"), 18, "workers = [ 0, 2 ]");
    auto r = parse_text(t);
    EXPECT_TRUE(has(r, "lcores.workers[0]: lcore 0 is the EAL main lcore")) << dump(r);
}

TEST(ApplianceConfig, DuplicatePortNameAndMissingDevice)
{
    std::string t = k_base;
    t.replace(t.find("name = \"lan\"; device = \"net_ring1\";"), 35, "name = \"wan\";");
    auto r = parse_text(t);
    ASSERT_FALSE(r.config);
    EXPECT_TRUE(has(r, "test.conf:6: ports[1].name: duplicate port name \"wan\" (also ports[0])"))
        << dump(r);
    EXPECT_TRUE(has(r, "ports[1].device: missing device")) << dump(r);
}

TEST(ApplianceConfig, EveryErrorIsReportedNotJustTheFirst)
{
    const std::string t = R"(lcores = { workers = [ 1 ]; slowpath = 1; };
ports = ( { name = "this-name-is-far-too-long"; device = "net_null0"; queues = 3;
            addresses = [ "10.0.0.300/8", "fe80::1/200" ]; mtu = 20; } );
exception = { kind = "kni"; };
api = { listen = "localhost"; };
state_dir = "relative/dir";
conntrack = { capacity = 5; timeouts = { tcp_syn = 0; bogus = 1; }; };
routes = ( { prefix = "198.19.1.1/24"; port = "nope"; } );
)";
    auto r = parse_text(t);
    ASSERT_FALSE(r.config);
    EXPECT_TRUE(has(r, "test.conf:1: lcores.slowpath: lcore 1 is also a worker")) << dump(r);
    EXPECT_TRUE(has(r, "ports[0].name: \"this-name-is-far-too-long\" is not a valid interface"));
    EXPECT_TRUE(has(r, "ports[0].queues: 3 queues but 1 worker lcores"));
    EXPECT_TRUE(has(r, "ports[0].addresses[0]: invalid CIDR \"10.0.0.300/8\""));
    EXPECT_TRUE(has(r, "ports[0].addresses[1]: invalid CIDR \"fe80::1/200\""));
    EXPECT_TRUE(has(r, "ports[0].mtu: value 20 is out of range 68..9600"));
    EXPECT_TRUE(has(r, "test.conf:4: exception.kind: \"kni\" is not one of"));
    EXPECT_TRUE(has(r, "api.listen: \"localhost\" is not ADDRESS:PORT"));
    EXPECT_TRUE(has(r, "state_dir: \"relative/dir\" must be an absolute path"));
    EXPECT_TRUE(has(r, "conntrack.capacity: value 5 is out of range"));
    EXPECT_TRUE(has(r, "conntrack.timeouts.tcp_syn: value 0 is out of range"));
    EXPECT_TRUE(has(r, "conntrack.timeouts.bogus: unknown setting"));
    EXPECT_TRUE(has(r, "routes[0].prefix: \"198.19.1.1/24\" has host bits set; did you mean "
                       "\"198.19.1.0/24\"?"));
    EXPECT_TRUE(has(r, "routes[0].port: no port named \"nope\""));
    EXPECT_GE(r.errors.size(), 14u) << dump(r);
}

TEST(ApplianceConfig, SyntaxErrorHasItsLine)
{
    auto r = parse_text("node = { name = \"x\"; };\nlcores = { workers = [ 1 ; };\n");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].line, 2u);
    EXPECT_NE(r.errors[0].to_string().find("test.conf:2: syntax error"), std::string::npos)
        << r.errors[0].to_string();
}

TEST(ApplianceConfig, UnknownTopLevelSettingIsATypo)
{
    auto r = parse_text(k_base + "port = ();\n");
    ASSERT_FALSE(r.config);
    EXPECT_TRUE(has(r, "test.conf:10: port: unknown setting")) << dump(r);
}

TEST(ApplianceConfig, RouteGatewayMustBeOnThePortsSubnet)
{
    std::string t = k_base;
    t.replace(t.find("198.19.1.254"), 12, "198.20.1.254");
    auto r = parse_text(t);
    EXPECT_TRUE(has(r, "routes[0].via: gateway 198.20.1.254 is not on any subnet of port \"lan\""))
        << dump(r);
    std::string t6 = k_base;
    t6.replace(t6.find("198.19.1.254"), 12, "2001:db8::fe");
    EXPECT_TRUE(
        has(parse_text(t6), "routes[0].via: gateway 2001:db8::fe is IPv6 but the prefix is IPv4"));
}

TEST(ApplianceConfig, DuplicateAddressAcrossPorts)
{
    std::string t = k_base;
    t.replace(t.find("\"198.19.1.1/24\""), 15, "\"198.18.0.1/16\"");
    auto r = parse_text(t);
    EXPECT_TRUE(
        has(r, "ports[1].addresses[0]: address 198.18.0.1 is already on ports[0].addresses[0]"))
        << dump(r);
}

TEST(ApplianceConfig, TypeErrorsAreReported)
{
    std::string t = k_base;
    t.replace(t.find("device = \"net_ring0\";"), 21, "device = 5; mtu = \"big\";");
    auto r = parse_text(t);
    EXPECT_TRUE(has(r, "ports[0].device: must be a string")) << dump(r);
    EXPECT_TRUE(has(r, "ports[0].mtu: must be an integer")) << dump(r);
}

TEST(ApplianceConfig, MissingFile)
{
    auto r = load("/nonexistent/sluice.conf");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(), "/nonexistent/sluice.conf:0: cannot read the file");
}

TEST(ApplianceConfig, PciDeviceDetection)
{
    port_conf p;
    p.device = "0000:3b:02.0";
    EXPECT_TRUE(p.is_pci());
    p.device = "3b:02.1";
    EXPECT_TRUE(p.is_pci());
    p.device = "net_af_packet0,iface=eth0";
    EXPECT_FALSE(p.is_pci());
}

TEST(ApplianceConfig, MeshFilesResolveAgainstTheConfigDirectory)
{
    auto r = parse(k_base + "mesh = { files = [ \"mesh/a.yaml\", \"/abs/b.yaml\" ]; "
                            "cluster_domain = \"corp.local\"; };\n",
                   "/etc/sluice/sluice.conf");
    ASSERT_TRUE(r.config) << dump(r);
    EXPECT_EQ(r.config->mesh.files[0], "/etc/sluice/mesh/a.yaml");
    EXPECT_EQ(r.config->mesh.files[1], "/abs/b.yaml");
    EXPECT_EQ(r.config->mesh.cluster_domain, "corp.local");
    auto bad = parse_text(k_base + "mesh = { cluster_domain = \"Bad_Domain\"; };\n");
    EXPECT_TRUE(has(bad, "mesh.cluster_domain: \"Bad_Domain\" is not a DNS name"));
}

TEST(ApplianceConfig, SnatAddressesAreForNothingElseAndAtMostEightPerFamily)
{
    std::string t = k_base;
    t.replace(t.find("\"198.19.255.1\""), 14, "\"198.18.0.1\"");
    EXPECT_TRUE(has(parse_text(t), "ports[1].snat[0]: SNAT address 198.18.0.1 is already used by "
                                   "ports[0].addresses[0]"));
    std::string many = k_base;
    std::string list;
    for (int i = 1; i <= 9; ++i) {
        list += std::string(i == 1 ? "" : ", ") + "\"198.19.255." + std::to_string(i) + "\"";
    }
    many.replace(many.find("\"198.19.255.1\""), 14, list);
    EXPECT_TRUE(has(parse_text(many), "ports[1].snat[8]: more than 8 IPv4 SNAT addresses on one "
                                      "port"));
}

// SNAT addresses become host addresses of the port's kernel interface (ARP/ND for on-link
// ones): a subnet's own address or broadcast cannot be one; any other host of it can.
TEST(ApplianceConfig, OnLinkSnatAddressesMustBeHostAddressesOfTheSubnet)
{
    const auto with_snat = [](const std::string& list) {
        std::string t = k_base;
        t.replace(t.find("\"198.19.255.1\""), 14, list);
        return t;
    };
    auto onlink = parse_text(with_snat("\"198.19.1.100\", \"2001:db8::100\""));
    ASSERT_TRUE(onlink.errors.empty()) << dump(onlink);
    EXPECT_EQ(onlink.config->ports[1].snat.size(), 2U);
    EXPECT_TRUE(has(parse_text(with_snat("\"198.19.1.255\"")),
                    "ports[1].snat[0]: SNAT address 198.19.1.255 is the broadcast address of "
                    "198.19.1.0/24 (port lan)"));
    EXPECT_TRUE(has(parse_text(with_snat("\"198.19.1.0\"")),
                    "ports[1].snat[0]: SNAT address 198.19.1.0 is the network address of "
                    "198.19.1.0/24 (port lan)"));
    EXPECT_TRUE(has(parse_text(with_snat("\"198.19.1.7\", \"2001:db8::\"")),
                    "ports[1].snat[1]: SNAT address 2001:db8:: is the subnet-router anycast "
                    "address of 2001:db8::/64 (port lan)"));
}

TEST(ApplianceConfig, FlowSteeringDefaultsToAutoAndTakesOff)
{
    auto d = parse_text(k_base);
    ASSERT_TRUE(d.errors.empty()) << dump(d);
    EXPECT_EQ(d.config->l4.flow_steering, flow_steering_mode::automatic);
    auto a = parse_text(k_base + "l4 = { flow_steering = \"auto\"; };\n");
    ASSERT_TRUE(a.errors.empty()) << dump(a);
    EXPECT_EQ(a.config->l4.flow_steering, flow_steering_mode::automatic);
    auto off = parse_text(k_base + "l4 = { flow_steering = \"off\"; };\n");
    ASSERT_TRUE(off.errors.empty()) << dump(off);
    EXPECT_EQ(off.config->l4.flow_steering, flow_steering_mode::off);
}

TEST(ApplianceConfig, BadFlowSteeringNamesFileLineAndValue)
{
    // k_base has 9 lines: the l4 group opens on line 10, the bad value is on line 12.
    auto r = parse_text(k_base + "l4 = {\n  forwarding = \"fullnat\";\n  flow_steering = "
                                 "\"on\";\n};\n");
    ASSERT_FALSE(r.config);
    ASSERT_EQ(r.errors.size(), 1u) << dump(r);
    EXPECT_EQ(r.errors[0].to_string(),
              "test.conf:12: l4.flow_steering: \"on\" is not one of \"auto\", \"off\"");
    auto t = parse_text(k_base + "l4 = { flow_steering = true; };\n");
    EXPECT_TRUE(has(t, "l4.flow_steering: must be a string")) << dump(t);
}

} // namespace
} // namespace sluice::config
