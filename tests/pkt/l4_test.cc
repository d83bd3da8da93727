// Golden packets for the L4 fast path (STYLE T3), through the real worker pipeline on ring
// ports: classify -> l4_stage -> dispatch, stepped with worker_poll()/slowpath_poll() as the
// lcores run them. Two NIC ports: "wan" (index 0) faces the client, "lan" (index 1) faces the
// backends and holds the SNAT addresses. The L4 view is built from a mesh decoded from YAML
// and compiled, exactly as the appliance does; routes and neighbours are published through
// RCU. Each case states {description, input frame, verdict, expected output frame}; every
// expected frame is built from scratch here (checksums by full recompute), compared byte for
// byte, and its checksums verified again; the counters that moved are checked exhaustively
// (every drop reason and every L4 event, not only the expected ones).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <array>
#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include <rte_ring_elem.h>

#include "eal_env.hh"
#include "frames.hh"
#include "sluice/compile/compile.hh"
#include "sluice/fastpath/l4_active.hh"
#include "sluice/fastpath/l4_stage.hh"
#include "sluice/fastpath/l4_view.hh"
#include "sluice/fastpath/worker.hh"
#include "sluice/glue/port.hh"
#include "sluice/model/decode.hh"
#include "sluice/net/fib.hh"
#include "sluice/net/neigh.hh"
#include "sluice/net/rewrite.hh"
#include "sluice/rcu/published.hh"
#include "sluice/rcu/qsbr.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice {
namespace {

using namespace sluice::test;
using conntrack::state;
using stats::drop;
using stats::l4_event;

// ------------------------------------------------------------------------ addresses

constexpr uint8_t tcp_p = 6;
constexpr uint8_t udp_p = 17;
constexpr uint8_t icmp_p = 1;

constexpr uint8_t fin = 0x01;
constexpr uint8_t syn = 0x02;
constexpr uint8_t rst = 0x04;
constexpr uint8_t psh = 0x08;
constexpr uint8_t ack = 0x10;

net::ip_addr ip(const char* s)
{
    auto a = net::ip_addr::parse(s);
    if (!a.ok()) {
        std::abort(); // a typo in this file's constants
    }
    return *a;
}

net::mac_addr mac(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    return net::mac_addr{{0x02, 0x00, a, b, c, d}};
}

const net::ip_addr client = ip("198.18.0.2");
const net::ip_addr client2 = ip("198.18.0.3");
const net::ip_addr vip = ip("198.18.10.1");         // echo: tcp 7000, udp 7001 (full-NAT)
const net::ip_addr vip_ipip = ip("198.18.10.2");    // echo-ipip: tcp 7100
const net::ip_addr vip_gue = ip("198.18.10.3");     // echo-gue: tcp 7200
const net::ip_addr vip_idle = ip("198.18.10.4");    // idle: tcp 7300, only endpoint not ready
const net::ip_addr vip_far = ip("198.18.10.5");     // faraway: tcp 7400, endpoint unresolved
const net::ip_addr vip_lost = ip("198.18.10.6");    // lost: tcp 7500, endpoint not routed
const net::ip_addr vip_mixed = ip("198.18.10.7");   // mixed: tcp 7600, IPv6 endpoint
const net::ip_addr vip_limited = ip("198.18.10.8"); // limited: tcp 7700, maxConnections 2
const net::ip_addr limited_backend = ip("198.19.1.40");
const net::ip_addr snat = ip("198.19.0.1");        // the lan port's SNAT address
const net::ip_addr far_backend = ip("198.19.9.9"); // routed on lan, no neighbour
const net::ip_addr client6 = ip("2001:db8::2");
const net::ip_addr vip6 = ip("2001:db8:10::1");
const net::ip_addr snat6 = ip("2001:db8:1::1");

const net::mac_addr wan_mac = mac(0, 0, 1, 0);
const net::mac_addr lan_mac = mac(0, 0, 2, 0);
const net::mac_addr client_mac = mac(0, 0, 0, 0xc1);
const net::mac_addr client2_mac = mac(0, 0, 0, 0xc2);
const net::mac_addr client6_mac = mac(0, 0, 0, 0xc6);

/// Every backend has its own MAC: 02:00:19:<family>:<last two address bytes>.
net::mac_addr backend_mac(const net::ip_addr& a)
{
    const unsigned n = a.family == 4 ? 4 : 16;
    return mac(0x19, a.family, a.bytes[n - 2], a.bytes[n - 1]);
}

const std::vector<std::string> zone_a = {"198.19.1.10", "198.19.1.11", "198.19.1.12"};
const std::vector<std::string> zone_b = {"198.19.2.10", "198.19.2.11"};
const std::vector<std::string> extra_a = {"198.19.1.13", "198.19.1.14", "198.19.1.15",
                                          "198.19.1.16", "198.19.1.17", "198.19.1.18"};
const char* const ipip_backend = "198.19.1.20";
const char* const gue_backend = "198.19.1.21";
const std::vector<std::string> backends6 = {"2001:db8:1::10", "2001:db8:1::11"};

uint16_t be(uint16_t v)
{
    return rte_cpu_to_be_16(v);
}

uint16_t rd16(const bytes& b, size_t off)
{
    return static_cast<uint16_t>((uint16_t{b[off]} << 8) | b[off + 1]);
}

net::ip_addr rd_ip(const bytes& b, size_t off, uint8_t family)
{
    net::ip_addr a;
    a.family = family;
    std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(off), family == 4 ? 4 : 16,
                a.bytes.begin());
    return a;
}

// ------------------------------------------------------------------------ frame builders
// Local (not in frames.hh): they take addresses, TTLs and MACs and always write valid
// checksums, computed by full recompute with frames.hh's csum(), independent of the
// incremental code under test.

bytes ether(const net::mac_addr& dst, const net::mac_addr& src, uint16_t type, const bytes& l3)
{
    bytes b(dst.bytes.begin(), dst.bytes.end());
    b.insert(b.end(), src.bytes.begin(), src.bytes.end());
    b.push_back(static_cast<uint8_t>(type >> 8));
    b.push_back(static_cast<uint8_t>(type));
    b.insert(b.end(), l3.begin(), l3.end());
    return b;
}

uint32_t pseudo_sum(const net::ip_addr& s, const net::ip_addr& d, uint8_t proto, size_t len)
{
    uint32_t sum = 0;
    const unsigned n = s.family == 4 ? 4 : 16;
    for (unsigned i = 0; i < n; i += 2) {
        sum += (uint32_t{s.bytes[i]} << 8) | s.bytes[i + 1];
        sum += (uint32_t{d.bytes[i]} << 8) | d.bytes[i + 1];
    }
    return sum + proto + static_cast<uint32_t>(len);
}

/// Stores the L4 checksum of a TCP/UDP/ICMP/ICMPv6 segment (full recompute).
void set_l4_csum(bytes& l4, uint8_t proto, const net::ip_addr& s, const net::ip_addr& d)
{
    size_t off = 0;
    uint32_t sum = 0;
    switch (proto) {
    case 6:
        off = 16;
        sum = pseudo_sum(s, d, proto, l4.size());
        break;
    case 17:
        off = 6;
        sum = pseudo_sum(s, d, proto, l4.size());
        break;
    case 58:
        off = 2;
        sum = pseudo_sum(s, d, proto, l4.size());
        break;
    case 1:
        off = 2;
        break;
    default:
        return;
    }
    if (l4.size() < off + 2) {
        return;
    }
    put16(l4, off, 0);
    uint16_t c = csum(l4.data(), l4.size(), sum);
    if (proto == 17 && c == 0) {
        c = 0xffff;
    }
    put16(l4, off, c);
}

struct v4opt {
    uint8_t ttl = 64;
    uint16_t frag = 0; ///< flags + offset field
    uint16_t id = 0x1234;
    uint8_t tos = 0;
    bool l4_csum = true;
};

bytes ip4(uint8_t proto, bytes l4, const net::ip_addr& s, const net::ip_addr& d, v4opt o = {})
{
    if (o.l4_csum) {
        set_l4_csum(l4, proto, s, d);
    }
    bytes b(20, 0);
    b[0] = 0x45;
    b[1] = o.tos;
    put16(b, 2, static_cast<uint16_t>(20 + l4.size()));
    put16(b, 4, o.id);
    put16(b, 6, o.frag);
    b[8] = o.ttl;
    b[9] = proto;
    std::copy_n(s.bytes.begin(), 4, b.begin() + 12);
    std::copy_n(d.bytes.begin(), 4, b.begin() + 16);
    put16(b, 10, csum(b.data(), 20));
    b.insert(b.end(), l4.begin(), l4.end());
    return b;
}

bytes ip6(uint8_t proto, bytes l4, const net::ip_addr& s, const net::ip_addr& d, uint8_t hlim = 64)
{
    set_l4_csum(l4, proto, s, d);
    bytes b(40, 0);
    b[0] = 0x60;
    put16(b, 4, static_cast<uint16_t>(l4.size()));
    b[6] = proto;
    b[7] = hlim;
    std::copy_n(s.bytes.begin(), 16, b.begin() + 8);
    std::copy_n(d.bytes.begin(), 16, b.begin() + 24);
    b.insert(b.end(), l4.begin(), l4.end());
    return b;
}

/// A TCP segment (checksum left for ip4/ip6), with an MSS option when `mss` is non-zero.
bytes tcpseg(uint16_t sport, uint16_t dport, uint8_t flags, uint32_t seq = 1000, uint32_t ackn = 0,
             size_t payload = 0, uint16_t mss = 0)
{
    const size_t hl = mss != 0 ? 24 : 20;
    bytes b(hl + payload, 0);
    put16(b, 0, sport);
    put16(b, 2, dport);
    put16(b, 4, static_cast<uint16_t>(seq >> 16));
    put16(b, 6, static_cast<uint16_t>(seq));
    put16(b, 8, static_cast<uint16_t>(ackn >> 16));
    put16(b, 10, static_cast<uint16_t>(ackn));
    b[12] = static_cast<uint8_t>((hl / 4) << 4);
    b[13] = flags;
    put16(b, 14, 64240);
    if (mss != 0) {
        b[20] = 2;
        b[21] = 4;
        put16(b, 22, mss);
    }
    for (size_t i = 0; i < payload; ++i) {
        b[hl + i] = static_cast<uint8_t>(i * 7 + 1);
    }
    return b;
}

bytes udpdgram(uint16_t sport, uint16_t dport, size_t payload = 0)
{
    bytes b(8 + payload, 0);
    put16(b, 0, sport);
    put16(b, 2, dport);
    put16(b, 4, static_cast<uint16_t>(8 + payload));
    for (size_t i = 0; i < payload; ++i) {
        b[8 + i] = static_cast<uint8_t>(0x30 + i);
    }
    return b;
}

/// ICMPv4 error `type`/`code` with `word` in bytes 4..7 (e.g. the next-hop MTU), quoting
/// `quote` (checksum computed by ip4()).
bytes icmp_err(uint8_t type, uint8_t code, uint32_t word, const bytes& quote)
{
    bytes b(8, 0);
    b[0] = type;
    b[1] = code;
    put16(b, 4, static_cast<uint16_t>(word >> 16));
    put16(b, 6, static_cast<uint16_t>(word));
    b.insert(b.end(), quote.begin(), quote.end());
    return b;
}

// Frames as they arrive at the appliance.
bytes from_client(const bytes& ip_pkt, const net::mac_addr& src = client_mac)
{
    return ether(wan_mac, src, 0x0800, ip_pkt);
}
bytes from_backend(const net::ip_addr& b, const bytes& ip_pkt)
{
    return ether(lan_mac, backend_mac(b), b.family == 4 ? 0x0800 : 0x86dd, ip_pkt);
}
// Frames as they must leave it.
bytes to_backend(const net::ip_addr& b, const bytes& ip_pkt)
{
    return ether(backend_mac(b), lan_mac, b.family == 4 ? 0x0800 : 0x86dd, ip_pkt);
}
bytes to_client(const bytes& ip_pkt, const net::mac_addr& dst = client_mac)
{
    return ether(dst, wan_mac, 0x0800, ip_pkt);
}

/// The frame with an 802.1Q tag (VLAN `vid`) inserted after the MAC addresses.
bytes tagged(const bytes& f, uint16_t vid)
{
    bytes b(f.begin(), f.begin() + 12);
    b.push_back(0x81);
    b.push_back(0x00);
    b.push_back(static_cast<uint8_t>(vid >> 8));
    b.push_back(static_cast<uint8_t>(vid));
    b.insert(b.end(), f.begin() + 12, f.end());
    return b;
}

/// Verifies every checksum of an Ethernet frame carrying IPv4 or IPv6 (TCP, UDP, ICMP, and
/// one level of IPIP/GUE encapsulation), recomputing them independently.
void expect_checksums(const bytes& f, size_t l3 = 14)
{
    ASSERT_GE(f.size(), l3 + 20);
    const uint8_t ver = f[l3] >> 4;
    if (ver == 4) {
        const size_t ihl = (f[l3] & 0x0f) * 4u;
        const size_t total = rd16(f, l3 + 2);
        ASSERT_GE(f.size(), l3 + total);
        EXPECT_EQ(csum(f.data() + l3, ihl), 0) << "IPv4 header checksum";
        const uint8_t proto = f[l3 + 9];
        const uint8_t* l4 = f.data() + l3 + ihl;
        const size_t l4_len = total - ihl;
        if (proto == tcp_p || proto == udp_p) {
            EXPECT_TRUE(
                net::l4_checksum_ok(4, proto, f.data() + l3 + 12, f.data() + l3 + 16, l4, l4_len))
                << "L4 checksum (proto " << int{proto} << ")";
            if (proto == udp_p && l4_len >= 8) {
                const uint16_t c = rd16(f, l3 + ihl + 6);
                if (c != 0) {
                    EXPECT_EQ(
                        csum(l4, l4_len,
                             pseudo_sum(rd_ip(f, l3 + 12, 4), rd_ip(f, l3 + 16, 4), proto, l4_len)),
                        0);
                }
                if (rd16(f, l3 + ihl + 2) == net::gue_default_port) {
                    expect_checksums(f, l3 + ihl + 8); // the GUE inner packet
                }
            } else if (proto == tcp_p) {
                EXPECT_EQ(
                    csum(l4, l4_len,
                         pseudo_sum(rd_ip(f, l3 + 12, 4), rd_ip(f, l3 + 16, 4), proto, l4_len)),
                    0);
            }
        } else if (proto == icmp_p) {
            EXPECT_EQ(csum(l4, l4_len), 0) << "ICMP checksum";
            if (l4_len >= 28 && (l4[0] == 3 || l4[0] == 11)) {
                EXPECT_EQ(csum(l4 + 8, (l4[8] & 0x0f) * 4u), 0) << "quoted IPv4 header checksum";
            }
        } else if (proto == 4 || proto == 41) {
            expect_checksums(f, l3 + ihl); // IPIP inner packet
        }
    } else {
        ASSERT_EQ(ver, 6);
        const size_t plen = rd16(f, l3 + 4);
        ASSERT_GE(f.size(), l3 + 40 + plen);
        const uint8_t proto = f[l3 + 6];
        if (proto == tcp_p || proto == udp_p || proto == 58) {
            EXPECT_TRUE(net::l4_checksum_ok(6, proto, f.data() + l3 + 8, f.data() + l3 + 24,
                                            f.data() + l3 + 40, plen));
            EXPECT_EQ(csum(f.data() + l3 + 40, plen,
                           pseudo_sum(rd_ip(f, l3 + 8, 6), rd_ip(f, l3 + 24, 6), proto, plen)),
                      0);
        }
    }
}

// ------------------------------------------------------------------------ the mesh

struct mesh_spec {
    std::vector<std::string> zone_a = sluice::zone_a; ///< echo's endpoints in zone-a
};

std::string slice_yaml(const std::string& name, const std::string& svc, const std::string& zone,
                       const std::vector<std::string>& addrs, const std::string& ports,
                       bool ready = true, const char* type = "IPv4")
{
    std::string y = "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
                    "  name: " +
                    name + "\n  namespace: l4\n  labels:\n    kubernetes.io/service-name: " + svc +
                    "\n    topology.kubernetes.io/region: region-1\n"
                    "    topology.istio.io/network: network-1\naddressType: " +
                    type + "\nports: " + ports + "\nendpoints:\n";
    for (const auto& a : addrs) {
        y += "- {addresses: [\"" + a + "\"], zone: " + zone +
             ", conditions: {ready: " + (ready ? "true" : "false") + "}}\n";
    }
    return y;
}

std::string service_yaml(const std::string& name, const std::string& cluster_ip,
                         const std::string& ports, const std::string& extra = "")
{
    return "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: " + name +
           "\n  namespace: l4\n" + extra + "spec:\n  clusterIP: \"" + cluster_ip +
           "\"\n  ports: " + ports + "\n";
}

std::string mesh_yaml(const mesh_spec& m)
{
    const std::string echo_ports =
        "[{name: tcp-echo, port: 7000, protocol: TCP}, {name: udp-echo, port: 7001, protocol: "
        "UDP}]";
    const std::string echo_ep_ports =
        "[{name: tcp-echo, port: 8000, protocol: TCP}, {name: udp-echo, port: 8001, protocol: "
        "UDP}]";
    std::string y;
    // echo: full-NAT (the default), PreferClose from region-1/zone-a: zone-a is level 0.
    y += "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: l4}\nspec:\n"
         "  clusterIP: 198.18.10.1\n  trafficDistribution: PreferClose\n  ports: " +
         echo_ports + "\n";
    y += slice_yaml("echo-zone-a", "echo", "zone-a", m.zone_a, echo_ep_ports);
    y += slice_yaml("echo-zone-b", "echo", "zone-b", zone_b, echo_ep_ports);
    // Outlier detection: echo's connect outcomes are reported as health signals.
    y += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: "
         "echo, namespace: l4}\nspec:\n  host: echo.l4.svc.cluster.local\n  trafficPolicy: "
         "{outlierDetection: {consecutive5xxErrors: 5}}\n";
    y += service_yaml("echo-ipip", "198.18.10.2", "[{name: tcp-ipip, port: 7100, protocol: TCP}]",
                      "  annotations: {sluice.io/forwarding: ipip}\n");
    y += slice_yaml("echo-ipip", "echo-ipip", "zone-a", {ipip_backend},
                    "[{name: tcp-ipip, port: 7100, protocol: TCP}]");
    y += service_yaml("echo-gue", "198.18.10.3", "[{name: tcp-gue, port: 7200, protocol: TCP}]",
                      "  annotations: {sluice.io/forwarding: gue}\n");
    y += slice_yaml("echo-gue", "echo-gue", "zone-a", {gue_backend},
                    "[{name: tcp-gue, port: 7200, protocol: TCP}]");
    y += service_yaml("idle", "198.18.10.4", "[{name: tcp-idle, port: 7300, protocol: TCP}]");
    y += slice_yaml("idle", "idle", "zone-a", {"198.19.1.30"},
                    "[{name: tcp-idle, port: 8300, protocol: TCP}]", false);
    y += service_yaml("faraway", "198.18.10.5", "[{name: tcp-far, port: 7400, protocol: TCP}]");
    y += slice_yaml("faraway", "faraway", "zone-a", {"198.19.9.9"},
                    "[{name: tcp-far, port: 8400, protocol: TCP}]");
    y += service_yaml("lost", "198.18.10.6", "[{name: tcp-lost, port: 7500, protocol: TCP}]");
    y += slice_yaml("lost", "lost", "zone-a", {"198.18.200.1"},
                    "[{name: tcp-lost, port: 8500, protocol: TCP}]");
    y += service_yaml("mixed", "198.18.10.7", "[{name: tcp-mixed, port: 7600, protocol: TCP}]");
    y += slice_yaml("mixed", "mixed", "zone-a", {"2001:db8:1::10"},
                    "[{name: tcp-mixed, port: 8600, protocol: TCP}]", true, "IPv6");
    y += service_yaml("limited", "198.18.10.8", "[{name: tcp-lim, port: 7700, protocol: TCP}]");
    y += slice_yaml("limited", "limited", "zone-a", {"198.19.1.40"},
                    "[{name: tcp-lim, port: 8700, protocol: TCP}]");
    y += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: "
         "limited, namespace: l4}\nspec:\n  host: limited.l4.svc.cluster.local\n  "
         "trafficPolicy: {connectionPool: {tcp: {maxConnections: 2}}}\n";
    y += service_yaml("mixed-dsr", "198.18.10.9",
                      "[{name: tcp-mixed-dsr, port: 7800, protocol: TCP}]",
                      "  annotations: {sluice.io/forwarding: ipip}\n");
    y += slice_yaml("mixed-dsr", "mixed-dsr", "zone-a", {"2001:db8:1::10"},
                    "[{name: tcp-mixed-dsr, port: 8800, protocol: TCP}]", true, "IPv6");
    y += service_yaml("echo6", "2001:db8:10::1", "[{name: tcp-echo, port: 7000, protocol: TCP}]",
                      "");
    y += slice_yaml("echo6", "echo6", "zone-a", backends6,
                    "[{name: tcp-echo, port: 8000, protocol: TCP}]", true, "IPv6");
    return y;
}

// ------------------------------------------------------------------------ the fixture

struct outputs {
    std::vector<bytes> wan;    ///< transmitted on the wan NIC
    std::vector<bytes> lan;    ///< transmitted on the lan NIC
    std::vector<bytes> kernel; ///< to either exception port
};

/// Counters that must move (every other drop reason and L4 event must stay put).
struct moved {
    std::map<drop, uint64_t> drops;
    std::map<l4_event, uint64_t> events;
};

class L4 : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        if (s_pool != nullptr) {
            return; // --gtest_repeat: the pool and the ports live for the whole program
        }
        auto p = glue::create_pool(0, 4095, "l4_pool");
        ASSERT_TRUE(p.ok()) << p.err().message;
        s_pool = *p;
        ASSERT_TRUE(s_wan.create("l4_wan"));
        ASSERT_TRUE(s_lan.create("l4_lan"));
        ASSERT_TRUE(s_wan_exc.create("l4_wexc"));
        ASSERT_TRUE(s_lan_exc.create("l4_lexc"));
        for (const auto& [port, name] :
             {std::pair{&s_wan, "wan"}, std::pair{&s_lan, "lan"}, std::pair{&s_wan_exc, "wexc"},
              std::pair{&s_lan_exc, "lexc"}}) {
            ASSERT_TRUE(
                glue::configure_and_start(port->port, name, 1, 1, 256, 256, 1500, s_pool).ok());
        }
    }

    void SetUp() override
    {
        _counters = std::make_unique<stats::registry>();
        auto q = rcu::qsbr_domain::create(1);
        ASSERT_TRUE(q.ok());
        _qsbr = std::move(*q);
        ASSERT_TRUE(_qsbr->register_reader(0).ok());
        _fib = std::make_unique<rcu::published<net::fwd_table>>(*_qsbr);
        _neigh = std::make_unique<rcu::published<net::neigh_table>>(*_qsbr);
        _view = std::make_unique<rcu::published<fastpath::l4_view>>(*_qsbr);

        publish_routes();
        publish_neighbours();

        _ports[0].nic = s_wan.port;
        _ports[0].exc = s_wan_exc.port;
        _ports[0].index = 0;
        _ports[0].mac = wan_mac.bytes;
        _ports[1].nic = s_lan.port;
        _ports[1].exc = s_lan_exc.port;
        _ports[1].index = 1;
        _ports[1].mac = lan_mac.bytes;
        _ports[1].snat4_count = 1;
        std::copy_n(snat.bytes.begin(), 4, _ports[1].snat4[0].begin());
        _ports[1].snat6_count = 1;
        _ports[1].snat6[0] = snat6.bytes;
        for (unsigned i = 0; i < 2; ++i) {
            const std::string n = std::to_string(i);
            _punt[i] =
                rte_ring_create(("l4_punt" + n).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
            _inject[i] =
                rte_ring_create(("l4_inject" + n).c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
            ASSERT_TRUE(_punt[i] != nullptr && _inject[i] != nullptr);
            _ports[i].punt[0] = _punt[i];
            _ports[i].inject[0] = _inject[i];
        }

        conntrack::timeout_seconds to;
        auto l = fastpath::l4_lcore::create(4096, to, rte_get_tsc_hz(), 0x1234);
        ASSERT_TRUE(l.ok()) << l.err().message;
        _l4 = std::move(*l);
        _l4->worker = 0;
        _l4->workers = 1;
        _l4->port_span = 64512;
        _l4->view = _view.get();
        _l4->fib = _fib.get();
        _l4->neigh = _neigh.get();
        _l4->settings = &_settings;
        _l4->signals = rte_ring_create_elem("l4_sig", sizeof(fastpath::health_signal), 1024, 0,
                                            RING_F_SP_ENQ | RING_F_SC_DEQ);
        _l4->resolve = rte_ring_create_elem("l4_res", sizeof(fastpath::resolve_request), 1024, 0,
                                            RING_F_SP_ENQ | RING_F_SC_DEQ);
        ASSERT_TRUE(_l4->signals != nullptr && _l4->resolve != nullptr);

        _worker.queue = 0;
        _worker.reader_id = 0;
        _worker.ports = std::span<const fastpath::port_ctx>(_ports.data(), _ports.size());
        _worker.l4 = _l4.get();
        _worker.counters = &_counters->lcore(1);
        _l4->counters = _worker.counters;
        _worker.qsbr = _qsbr.get();
        _worker.stop = &_stop;
        _slow.ports = _worker.ports;
        _slow.workers = 1;
        _slow.counters = &_counters->lcore(2);

        publish_view(mesh_spec{});
    }

    void TearDown() override
    {
        // Nothing may be left behind: every output was consumed by the test.
        const auto left = collect();
        EXPECT_TRUE(left.wan.empty() && left.lan.empty() && left.kernel.empty())
            << "unexpected frames left: wan " << left.wan.size() << ", lan " << left.lan.size()
            << ", kernel " << left.kernel.size();
        for (rte_ring* r : {_punt[0], _punt[1], _inject[0], _inject[1], s_wan.rx, s_lan.rx,
                            s_wan_exc.rx, s_lan_exc.rx, _redirect}) {
            if (r == nullptr) {
                continue;
            }
            void* m = nullptr;
            while (rte_ring_dequeue(r, &m) == 0) {
                ADD_FAILURE() << "mbuf left on a ring";
                rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
            }
        }
        // STYLE T3 passive check: every mbuf was freed or delivered.
        EXPECT_EQ(rte_mempool_in_use_count(s_pool), 0u) << "an mbuf leaked";
        for (rte_ring* r : {_punt[0], _punt[1], _inject[0], _inject[1], _redirect}) {
            rte_ring_free(r);
        }
        if (_l4) {
            rte_ring_free(_l4->signals);
            rte_ring_free(_l4->resolve);
        }
        _l4.reset();
        _view.reset();
        _neigh.reset();
        _fib.reset();
        _snaps.clear();
    }

    // ---- configuration

    /// Routes: the client subnets on wan, the backends on lan (connected), or on port index
    /// `backend_port`.
    void publish_routes(uint16_t backend_port = 1)
    {
        std::vector<net::route> routes;
        for (const auto& [p, port] :
             {std::pair{"198.18.0.0/24", uint16_t{0}}, std::pair{"198.19.0.0/16", backend_port},
              std::pair{"2001:db8::/64", uint16_t{0}},
              std::pair{"2001:db8:1::/64", backend_port}}) {
            auto pf = net::prefix::parse(p);
            ASSERT_TRUE(pf.ok());
            routes.push_back({pf->network(), {}, port, net::route_kind::unicast, 0});
        }
        auto fib = net::fwd_table::build(routes, static_cast<int>(rte_socket_id()));
        ASSERT_TRUE(fib.ok()) << fib.err().message;
        _fib->publish(std::move(*fib));
    }

    void publish_neighbours(bool with_far = false, const net::mac_addr& client_as = client_mac)
    {
        std::vector<net::neighbour> n;
        n.push_back({0, client, client_as});
        n.push_back({0, client2, client2_mac});
        n.push_back({0, client6, client6_mac});
        std::vector<std::string> all = zone_a;
        all.insert(all.end(), zone_b.begin(), zone_b.end());
        all.insert(all.end(), extra_a.begin(), extra_a.end());
        all.insert(all.end(), backends6.begin(), backends6.end());
        all.push_back(ipip_backend);
        all.push_back(gue_backend);
        all.push_back("198.19.1.40"); // limited
        for (const auto& a : all) {
            n.push_back({1, ip(a.c_str()), backend_mac(ip(a.c_str()))});
        }
        if (with_far) {
            n.push_back({1, far_backend, backend_mac(far_backend)});
        }
        _neigh->publish(net::neigh_table::build(n));
    }

    std::unique_ptr<fastpath::l4_view> build_view(const mesh_spec& spec)
    {
        const std::string yaml = mesh_yaml(spec);
        auto d = model::decode(yaml, "l4_test.yaml");
        std::string diags;
        for (const auto& x : d.diagnostics) {
            diags += x.to_string() + "\n";
        }
        EXPECT_FALSE(d.has_errors()) << diags << yaml;
        for (const auto& x : model::validate(d.objects)) {
            EXPECT_NE(x.level, model::severity::error) << x.to_string();
        }
        compile::node_locality node;
        node.locality = {"region-1", "zone-a", ""};
        node.network = "network-1";
        auto s = compile::compile(d.objects, node);
        EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.err().message);
        if (!s.ok()) {
            return nullptr;
        }
        _snaps.push_back(std::make_unique<snapshot::snapshot>(std::move(*s)));
        fastpath::l4_view_input in;
        in.snap = _snaps.back().get();
        in.tsc_hz = rte_get_tsc_hz();
        in.previous = _view->load();
        auto v = fastpath::build_l4_view(in);
        EXPECT_TRUE(v.ok()) << (v.ok() ? "" : v.err().message);
        return v.ok() ? std::move(*v) : nullptr;
    }

    void publish_view(const mesh_spec& spec)
    {
        auto v = build_view(spec);
        ASSERT_NE(v, nullptr);
        _view->publish(std::move(v));
    }

    [[nodiscard]] const fastpath::l4_view& view() const { return *_view->load(); }

    /// What the published view picks for a new flow (the deterministic Maglev choice).
    const fastpath::l4_endpoint* pick(const fastpath::l4_view& v, const net::ip_addr& src,
                                      const net::ip_addr& dst, uint16_t sport, uint16_t dport,
                                      uint8_t proto) const
    {
        const fastpath::l4_service* s = v.find(dst.family, dst.bytes.data(), proto, be(dport));
        EXPECT_NE(s, nullptr);
        if (s == nullptr) {
            return nullptr;
        }
        const uint64_t h = fastpath::flow_hash(dst.family, src.bytes.data(), dst.bytes.data(),
                                               be(sport), be(dport), proto);
        const fastpath::l4_cluster* c = nullptr;
        return v.choose(*s, dst.bytes.data(), h, &c);
    }

    static net::ip_addr addr_of(const fastpath::l4_endpoint& e)
    {
        net::ip_addr a;
        a.family = e.family;
        a.bytes = e.addr;
        return a;
    }

    // ---- traffic

    void step()
    {
        for (int i = 0; i < 8; ++i) {
            fastpath::worker_poll(_worker);
            fastpath::slowpath_poll(_slow);
        }
    }

    static std::vector<bytes> drain(rte_ring* r)
    {
        std::vector<bytes> out;
        void* m = nullptr;
        while (rte_ring_dequeue(r, &m) == 0) {
            out.push_back(from_mbuf(static_cast<rte_mbuf*>(m)));
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
        return out;
    }

    outputs collect()
    {
        outputs o;
        o.wan = drain(s_wan.tx);
        o.lan = drain(s_lan.tx);
        o.kernel = drain(s_wan_exc.tx);
        for (auto& f : drain(s_lan_exc.tx)) {
            o.kernel.push_back(std::move(f));
        }
        return o;
    }

    /// Receives `frames` on port `port` (0 wan, 1 lan) in one burst and returns what left.
    outputs send(unsigned port, const std::vector<bytes>& frames)
    {
        rte_ring* rx = port == 0 ? s_wan.rx : s_lan.rx;
        for (const auto& f : frames) {
            rte_mbuf* m = to_mbuf(s_pool, f);
            EXPECT_NE(m, nullptr);
            if (m != nullptr) {
                EXPECT_EQ(rte_ring_enqueue(rx, m), 0);
            }
        }
        step();
        return collect();
    }
    outputs send(unsigned port, const bytes& frame)
    {
        return send(port, std::vector<bytes>{frame});
    }

    /// Establishes a UDP flow from `client` port `cport` to VIP:7001 with one datagram of 10
    /// payload bytes (sent, and forwarded to the backend Maglev picks): `b` is that backend,
    /// `dgram` the client's frame. Call under ASSERT_NO_FATAL_FAILURE.
    void establish_udp(uint16_t cport, net::ip_addr& b, bytes& dgram)
    {
        const auto* ep = pick(view(), client, vip, cport, 7001, udp_p);
        ASSERT_NE(ep, nullptr);
        b = addr_of(*ep);
        dgram = from_client(ip4(udp_p, udpdgram(cport, 7001, 10), client, vip));
        ASSERT_EQ(send(0, dgram).lan.size(), 1u);
    }

    [[nodiscard]] stats::totals totals() const { return _counters->sum(); }

    static void expect_moved(const stats::totals& before, const stats::totals& after,
                             const moved& m)
    {
        for (size_t i = 0; i < stats::drop_count; ++i) {
            const auto d = static_cast<drop>(i);
            const auto it = m.drops.find(d);
            EXPECT_EQ(after.drops[i] - before.drops[i], it == m.drops.end() ? 0u : it->second)
                << "drop reason " << stats::drop_name(d);
        }
        for (size_t i = 0; i < stats::l4_event_count; ++i) {
            const auto e = static_cast<l4_event>(i);
            const auto it = m.events.find(e);
            EXPECT_EQ(after.l4[i] - before.l4[i], it == m.events.end() ? 0u : it->second)
                << "L4 event " << stats::l4_event_name(e);
        }
    }

    /// One golden packet: sends `in` on `port`, expects exactly `out_frame` on `out_port`
    /// (0 wan, 1 lan; -1: dropped, 2: to the kernel unchanged) and exactly `m` moved.
    void golden(const char* description, unsigned port, const bytes& in, int out_port,
                const bytes& out_frame, const moved& m)
    {
        SCOPED_TRACE(description);
        const auto before = totals();
        const auto o = send(port, in);
        expect_moved(before, totals(), m);
        const std::vector<bytes> none;
        EXPECT_EQ(o.wan, out_port == 0 ? std::vector<bytes>{out_frame} : none) << "wan output";
        EXPECT_EQ(o.lan, out_port == 1 ? std::vector<bytes>{out_frame} : none) << "lan output";
        EXPECT_EQ(o.kernel, out_port == 2 ? std::vector<bytes>{in} : none) << "kernel output";
        if (out_port == 0 || out_port == 1) {
            expect_checksums(out_frame);
            for (const auto& f : out_port == 0 ? o.wan : o.lan) {
                expect_checksums(f);
            }
        }
    }

    conntrack::flow_key key4(const net::ip_addr& s, const net::ip_addr& d, uint16_t sport,
                             uint16_t dport, uint8_t proto) const
    {
        conntrack::flow_key k;
        const unsigned n = s.family == 4 ? 4 : 16;
        std::copy_n(s.bytes.begin(), n, k.src.begin());
        std::copy_n(d.bytes.begin(), n, k.dst.begin());
        k.sport = be(sport);
        k.dport = be(dport);
        k.proto = proto;
        k.family = s.family;
        return k;
    }

    /// The state of the IPv4 flow client:cport -> VIP:vport (state::free when absent).
    state flow_state(const net::ip_addr& c, uint16_t cport, const net::ip_addr& v, uint16_t vport,
                     uint8_t proto = tcp_p)
    {
        const auto m = _l4->ct4.lookup(key4(c, v, cport, vport, proto), rte_rdtsc());
        return m.e == nullptr ? state::free : m.e->st;
    }

    std::vector<fastpath::health_signal> signals()
    {
        std::vector<fastpath::health_signal> out;
        fastpath::health_signal s;
        while (rte_ring_sc_dequeue_elem(_l4->signals, &s, sizeof(s)) == 0) {
            out.push_back(s);
        }
        return out;
    }

    std::vector<fastpath::resolve_request> resolves()
    {
        std::vector<fastpath::resolve_request> out;
        fastpath::resolve_request r;
        while (rte_ring_sc_dequeue_elem(_l4->resolve, &r, sizeof(r)) == 0) {
            out.push_back(r);
        }
        return out;
    }

    /// Opens a full-NAT TCP flow client:cport -> VIP:7000 (SYN out, SYN-ACK back, ACK out);
    /// returns the backend and checks the SNAT port.
    net::ip_addr open_flow(uint16_t cport, uint16_t snat_port)
    {
        const auto* ep = pick(view(), client, vip, cport, 7000, tcp_p);
        EXPECT_NE(ep, nullptr);
        if (ep == nullptr) {
            return {};
        }
        const net::ip_addr b = addr_of(*ep);
        auto o = send(0, from_client(ip4(tcp_p, tcpseg(cport, 7000, syn, 100), client, vip)));
        EXPECT_EQ(o.lan,
                  std::vector<bytes>{to_backend(
                      b, ip4(tcp_p, tcpseg(snat_port, 8000, syn, 100), snat, b, {.ttl = 63}))});
        o = send(
            1, from_backend(b, ip4(tcp_p, tcpseg(8000, snat_port, syn | ack, 500, 101), b, snat)));
        EXPECT_EQ(o.wan,
                  std::vector<bytes>{to_client(ip4(tcp_p, tcpseg(7000, cport, syn | ack, 500, 101),
                                                   vip, client, {.ttl = 63}))});
        o = send(0, from_client(ip4(tcp_p, tcpseg(cport, 7000, ack, 101, 501), client, vip)));
        EXPECT_EQ(o.lan.size(), 1u);
        EXPECT_EQ(flow_state(client, cport, vip, 7000), state::tcp_established);
        return b;
    }

    static inline rte_mempool* s_pool = nullptr;
    static inline ring_port s_wan;
    static inline ring_port s_lan;
    static inline ring_port s_wan_exc;
    static inline ring_port s_lan_exc;

    std::unique_ptr<stats::registry> _counters;
    std::unique_ptr<rcu::qsbr_domain> _qsbr;
    std::unique_ptr<rcu::published<net::fwd_table>> _fib;
    std::unique_ptr<rcu::published<net::neigh_table>> _neigh;
    std::unique_ptr<rcu::published<fastpath::l4_view>> _view;
    std::vector<std::unique_ptr<snapshot::snapshot>> _snaps;
    std::unique_ptr<fastpath::l4_lcore> _l4;
    fastpath::l4_settings _settings;
    std::array<fastpath::port_ctx, 2> _ports{};
    std::array<rte_ring*, 2> _punt{};
    std::array<rte_ring*, 2> _inject{};
    rte_ring* _redirect = nullptr; ///< redirect_out[0] when this worker plays worker 1 of 2
    fastpath::worker_ctx _worker;
    fastpath::slowpath_ctx _slow;
    std::atomic<bool> _stop{false};
};

bool is_one_of(const std::vector<std::string>& set, const net::ip_addr& a)
{
    return std::find(set.begin(), set.end(), a.to_string()) != set.end();
}

// ------------------------------------------------------------------------ 1-3: TCP full-NAT

TEST_F(L4, TcpSynIsFullNatedToAZoneLocalBackendOnTheLanPort)
{
    const auto* ep = pick(view(), client, vip, 40000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    EXPECT_TRUE(is_one_of(zone_a, b)) << b.to_string() << ": level 0 of PreferClose is zone-a";
    EXPECT_EQ(rte_be_to_cpu_16(ep->port), 8000) << "the endpoint port of tcp-echo";

    golden("SYN client:40000 -> VIP:7000", 0,
           from_client(ip4(tcp_p, tcpseg(40000, 7000, syn, 100), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, syn, 100), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
    EXPECT_EQ(flow_state(client, 40000, vip, 7000), state::tcp_syn_sent);
    EXPECT_EQ(_l4->ct4.size(), 1u);
    EXPECT_EQ(totals().port[1].tx_packets, 1u);
    EXPECT_EQ(totals().port[0].rx_packets, 1u);
}

TEST_F(L4, SynAckFromTheBackendGoesBackToTheClientFromTheVip)
{
    const auto* ep = pick(view(), client, vip, 40001, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    golden("SYN", 0, from_client(ip4(tcp_p, tcpseg(40001, 7000, syn, 100), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, syn, 100), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
    golden(
        "SYN-ACK backend:8000 -> SNAT:1024", 1,
        from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, syn | ack, 7777, 101), b, snat)), 0,
        to_client(ip4(tcp_p, tcpseg(7000, 40001, syn | ack, 7777, 101), vip, client, {.ttl = 63})),
        {{}, {{l4_event::reply_hits, 1}}});
    EXPECT_EQ(flow_state(client, 40001, vip, 7000), state::tcp_syn_recv);
    EXPECT_TRUE(signals().empty()) << "a healthy SYN-ACK costs no ring traffic";
    EXPECT_EQ(totals().port[0].tx_packets, 1u);
}

TEST_F(L4, RetransmittedSynAckDataFinAndRstFollowTheFlow)
{
    const auto* ep = pick(view(), client, vip, 40002, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    const auto syn_out =
        to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, syn, 100), snat, b, {.ttl = 63}));
    golden("SYN", 0, from_client(ip4(tcp_p, tcpseg(40002, 7000, syn, 100), client, vip)), 1,
           syn_out, {{}, {{l4_event::new_flows, 1}}});
    golden("SYN retransmitted: same backend, same SNAT port", 0,
           from_client(ip4(tcp_p, tcpseg(40002, 7000, syn, 100), client, vip)), 1, syn_out,
           {{}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(_l4->ct4.size(), 1u);
    EXPECT_EQ(flow_state(client, 40002, vip, 7000), state::tcp_syn_sent);
    golden(
        "SYN-ACK", 1, from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, syn | ack, 500, 101), b, snat)),
        0,
        to_client(ip4(tcp_p, tcpseg(7000, 40002, syn | ack, 500, 101), vip, client, {.ttl = 63})),
        {{}, {{l4_event::reply_hits, 1}}});
    golden("ACK", 0, from_client(ip4(tcp_p, tcpseg(40002, 7000, ack, 101, 501), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, ack, 101, 501), snat, b, {.ttl = 63})),
           {{}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(flow_state(client, 40002, vip, 7000), state::tcp_established);
    golden("data client -> backend (300 bytes)", 0,
           from_client(ip4(tcp_p, tcpseg(40002, 7000, psh | ack, 101, 501, 300), client, vip,
                           {.ttl = 17, .id = 0xbeef, .tos = 0x28})),
           1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, psh | ack, 101, 501, 300), snat, b,
                             {.ttl = 16, .id = 0xbeef, .tos = 0x28})),
           {{}, {{l4_event::flow_hits, 1}}});
    golden("data backend -> client (1000 bytes)", 1,
           from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, psh | ack, 501, 401, 1000), b, snat)), 0,
           to_client(ip4(tcp_p, tcpseg(7000, 40002, psh | ack, 501, 401, 1000), vip, client,
                         {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}}});
    golden(
        "FIN from the client", 0,
        from_client(ip4(tcp_p, tcpseg(40002, 7000, fin | ack, 401, 1501), client, vip)), 1,
        to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, fin | ack, 401, 1501), snat, b, {.ttl = 63})),
        {{}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(flow_state(client, 40002, vip, 7000), state::tcp_fin_wait);
    golden(
        "FIN from the backend", 1,
        from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, fin | ack, 1501, 402), b, snat)), 0,
        to_client(ip4(tcp_p, tcpseg(7000, 40002, fin | ack, 1501, 402), vip, client, {.ttl = 63})),
        {{}, {{l4_event::reply_hits, 1}}});
    EXPECT_EQ(flow_state(client, 40002, vip, 7000), state::tcp_closing);
    golden("last ACK", 0, from_client(ip4(tcp_p, tcpseg(40002, 7000, ack, 402, 1502), client, vip)),
           1, to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, ack, 402, 1502), snat, b, {.ttl = 63})),
           {{}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(flow_state(client, 40002, vip, 7000), state::tcp_closing);

    // A second flow closed by a client RST, a third by a backend RST.
    const net::ip_addr b2 = open_flow(40003, 1025);
    golden(
        "RST from the client", 0,
        from_client(ip4(tcp_p, tcpseg(40003, 7000, rst | ack, 101, 501), client, vip)), 1,
        to_backend(b2, ip4(tcp_p, tcpseg(1025, 8000, rst | ack, 101, 501), snat, b2, {.ttl = 63})),
        {{}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(flow_state(client, 40003, vip, 7000), state::tcp_closed);
    const net::ip_addr b3 = open_flow(40004, 1026);
    golden(
        "RST from the backend", 1,
        from_backend(b3, ip4(tcp_p, tcpseg(8000, 1026, rst | ack, 501, 101), b3, snat)), 0,
        to_client(ip4(tcp_p, tcpseg(7000, 40004, rst | ack, 501, 101), vip, client, {.ttl = 63})),
        {{}, {{l4_event::reply_hits, 1}}});
    EXPECT_EQ(flow_state(client, 40004, vip, 7000), state::tcp_closed);
    EXPECT_EQ(_l4->ct4.size(), 3u);
    EXPECT_TRUE(signals().empty()) << "a RST after the handshake is no connect failure";
}

TEST_F(L4, NewFlowsSpreadOverZoneAOnlyAndTakeConsecutiveSnatPorts)
{
    // Spread (STYLE T3): 600 flows, Maglev over the three zone-a endpoints (equal weights):
    // each gets 200 +- 60 (about 4.3 sigma); zone-b (level 1) gets nothing while zone-a is
    // healthy.
    std::map<std::string, unsigned> per_backend;
    std::set<uint16_t> snat_ports;
    const auto before = totals();
    for (unsigned batch = 0; batch < 600 / 30; ++batch) {
        std::vector<bytes> in;
        for (unsigned i = 0; i < 30; ++i) {
            const auto sport = static_cast<uint16_t>(20000 + batch * 30 + i);
            in.push_back(from_client(ip4(tcp_p, tcpseg(sport, 7000, syn, 1), client, vip)));
        }
        const auto o = send(0, in);
        ASSERT_EQ(o.lan.size(), 30u);
        for (unsigned i = 0; i < 30; ++i) {
            const bytes& f = o.lan[i];
            const auto sport = static_cast<uint16_t>(20000 + batch * 30 + i);
            const net::ip_addr dst = rd_ip(f, 30, 4);
            const auto* ep = pick(view(), client, vip, sport, 7000, tcp_p);
            ASSERT_NE(ep, nullptr);
            EXPECT_EQ(dst, addr_of(*ep)) << "the packet goes where the view chooses";
            EXPECT_EQ(rd16(f, 34), 1024 + batch * 30 + i) << "burst order = SNAT port order";
            snat_ports.insert(rd16(f, 34));
            ++per_backend[dst.to_string()];
            expect_checksums(f);
        }
    }
    expect_moved(before, totals(), {{}, {{l4_event::new_flows, 600}}});
    EXPECT_EQ(snat_ports.size(), 600u);
    EXPECT_EQ(per_backend.size(), 3u);
    for (const auto& a : zone_a) {
        EXPECT_GE(per_backend[a], 140u) << a;
        EXPECT_LE(per_backend[a], 260u) << a;
    }
    EXPECT_EQ(_l4->ct4.size(), 600u);
}

// ------------------------------------------------------------------------ 4: UDP

TEST_F(L4, UdpFlowBothWays)
{
    const auto* ep = pick(view(), client, vip, 5353, 7001, udp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    EXPECT_TRUE(is_one_of(zone_a, b));
    EXPECT_EQ(rte_be_to_cpu_16(ep->port), 8001);
    const auto out1 = to_backend(b, ip4(udp_p, udpdgram(1024, 8001, 64), snat, b, {.ttl = 63}));
    golden("UDP client:5353 -> VIP:7001", 0,
           from_client(ip4(udp_p, udpdgram(5353, 7001, 64), client, vip)), 1, out1,
           {{}, {{l4_event::new_flows, 1}}});
    EXPECT_EQ(flow_state(client, 5353, vip, 7001, udp_p), state::udp);
    golden("UDP reply backend:8001 -> SNAT:1024", 1,
           from_backend(b, ip4(udp_p, udpdgram(8001, 1024, 200), b, snat)), 0,
           to_client(ip4(udp_p, udpdgram(7001, 5353, 200), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}}});
    golden("second datagram of the flow", 0,
           from_client(ip4(udp_p, udpdgram(5353, 7001, 64), client, vip)), 1, out1,
           {{}, {{l4_event::flow_hits, 1}}});

    // A datagram without checksum (0, allowed over IPv4) keeps none.
    bytes nocsum = udpdgram(5354, 7001, 10);
    const auto* ep2 = pick(view(), client, vip, 5354, 7001, udp_p);
    ASSERT_NE(ep2, nullptr);
    const net::ip_addr b2 = addr_of(*ep2);
    bytes expect = udpdgram(1025, 8001, 10);
    golden("UDP checksum 0 stays 0", 0,
           from_client(ip4(udp_p, nocsum, client, vip, {.l4_csum = false})), 1,
           to_backend(b2, ip4(udp_p, expect, snat, b2, {.ttl = 63, .l4_csum = false})),
           {{}, {{l4_event::new_flows, 1}}});
    EXPECT_EQ(_l4->ct4.size(), 2u);
}

TEST_F(L4, RepliesFollowTheClientsNeighbourWhenItChanges)
{
    net::ip_addr b;
    bytes dgram;
    ASSERT_NO_FATAL_FAILURE(establish_udp(5600, b, dgram));
    const bytes reply = from_backend(b, ip4(udp_p, udpdgram(8001, 1024, 30), b, snat));
    const bytes back = ip4(udp_p, udpdgram(7001, 5600, 30), vip, client, {.ttl = 63});
    golden("reply: the next hop is looked up and kept in the flow", 1, reply, 0, to_client(back),
           {{}, {{l4_event::reply_hits, 1}}});
    golden("reply: the flow's own next hop", 1, reply, 0, to_client(back),
           {{}, {{l4_event::reply_hits, 1}}});
    // The client's MAC changes (a new neighbour table): the flow's cached hop is stale.
    const net::mac_addr moved_mac = mac(0, 0, 0, 0xcc);
    publish_neighbours(false, moved_mac);
    golden("reply after the neighbour changed", 1, reply, 0, to_client(back, moved_mac),
           {{}, {{l4_event::reply_hits, 1}}});
    publish_neighbours();
    golden("and back", 1, reply, 0, to_client(back), {{}, {{l4_event::reply_hits, 1}}});
}

TEST_F(L4, AnEstablishedFlowStopsWhenItsVipLeavesTheConfig)
{
    net::ip_addr b;
    bytes dgram;
    ASSERT_NO_FATAL_FAILURE(establish_udp(5700, b, dgram));
    const uint64_t fast_before = _l4->fast_taken;
    golden("established: the fast path", 0, dgram, 1,
           to_backend(b, ip4(udp_p, udpdgram(1024, 8001, 10), snat, b, {.ttl = 63})),
           {{}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(_l4->fast_taken, fast_before + 1);
    // The Service is deleted: its packets are no longer L4's (the kernel's, as any packet to
    // an address without a listener), established or not, exactly as in the full stage.
    const bytes answer = from_backend(b, ip4(udp_p, udpdgram(8001, 1024, 10), b, snat));
    golden("a reply while it is in the config: the fast path", 1, answer, 0,
           to_client(ip4(udp_p, udpdgram(7001, 5700, 10), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}}});
    EXPECT_EQ(_l4->fast_taken, fast_before + 2);
    const uint64_t expires =
        _l4->ct4.lookup(key4(client, vip, 5700, 7001, udp_p), rte_rdtsc()).e->expires;
    _view->publish(fastpath::build_l4_view(fastpath::l4_view_input{}).value());
    golden("the VIP left the config", 0, dgram, 2, {}, {});
    // Replies stop too (a UDP server push would otherwise refresh the flow for ever): dropped
    // by their own reason (the flow is tracked, its listener is gone), and the flow is left
    // to time out.
    golden("a reply after the VIP left the config", 1, answer, -1, {},
           {{{drop::l4_no_listener, 1}}, {}});
    EXPECT_EQ(_l4->fast_taken, fast_before + 2);
    const auto m = _l4->ct4.lookup(key4(client, vip, 5700, 7001, udp_p), rte_rdtsc());
    ASSERT_NE(m.e, nullptr);
    EXPECT_EQ(m.e->expires, expires) << "not refreshed";
}

TEST_F(L4, AnEstablishedFlowRoutedToAPortTheWorkerLacksIsDroppedUntilTheRouteIsBack)
{
    net::ip_addr b;
    bytes dgram;
    ASSERT_NO_FATAL_FAILURE(establish_udp(5710, b, dgram));
    const bytes out = to_backend(b, ip4(udp_p, udpdgram(1024, 8001, 10), snat, b, {.ttl = 63}));
    const uint64_t fast_before = _l4->fast_taken;
    golden("established: the fast path", 0, dgram, 1, out, {{}, {{l4_event::flow_hits, 1}}});
    // The backends' route now names port 7 (with a neighbour there): not one of the worker's
    // two ports, so no next hop, in the fast path as in the full stage.
    publish_routes(7);
    const std::vector<net::neighbour> moved{{0, client, client_mac}, {7, b, backend_mac(b)}};
    _neigh->publish(net::neigh_table::build(moved));
    golden("routed to a port the worker lacks", 0, dgram, -1, {},
           {{{drop::l4_no_route, 1}}, {{l4_event::flow_hits, 1}}});
    golden("again (nothing cached)", 0, dgram, -1, {},
           {{{drop::l4_no_route, 1}}, {{l4_event::flow_hits, 1}}});
    publish_routes(1);
    publish_neighbours();
    golden("the route is back", 0, dgram, 1, out, {{}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(_l4->fast_taken, fast_before + 4);
}

// ------------------------------------------------------------------------ 5: IPv6

TEST_F(L4, Ipv6SynIsFullNatedWithHopLimitDecremented)
{
    const auto* ep = pick(view(), client6, vip6, 41000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    ASSERT_EQ(ep->family, 6);
    const net::ip_addr b = addr_of(*ep);
    EXPECT_TRUE(is_one_of(backends6, b)) << b.to_string();
    const auto before = totals();
    auto o = send(0, ether(wan_mac, client6_mac, 0x86dd,
                           ip6(tcp_p, tcpseg(41000, 7000, syn, 9), client6, vip6, 64)));
    expect_moved(before, totals(), {{}, {{l4_event::new_flows, 1}}});
    const bytes expected = to_backend(b, ip6(tcp_p, tcpseg(1024, 8000, syn, 9), snat6, b, 63));
    EXPECT_EQ(o.lan, std::vector<bytes>{expected});
    EXPECT_TRUE(o.wan.empty() && o.kernel.empty());
    expect_checksums(expected);
    for (const auto& f : o.lan) {
        expect_checksums(f);
    }
    EXPECT_EQ(_l4->ct6.size(), 1u);

    const auto before2 = totals();
    o = send(1, from_backend(b, ip6(tcp_p, tcpseg(8000, 1024, syn | ack, 77, 10), b, snat6)));
    expect_moved(before2, totals(), {{}, {{l4_event::reply_hits, 1}}});
    const bytes back = ether(client6_mac, wan_mac, 0x86dd,
                             ip6(tcp_p, tcpseg(7000, 41000, syn | ack, 77, 10), vip6, client6, 63));
    EXPECT_EQ(o.wan, std::vector<bytes>{back});
    for (const auto& f : o.wan) {
        expect_checksums(f);
    }

    // Packet Too Big from the backend, quoting what it got (SNAT6:1024 -> backend:8000):
    // the client gets it from the VIP, quoting client:41000 -> VIP:7000.
    const bytes sent = ip6(tcp_p, tcpseg(1024, 8000, syn, 9), snat6, b, 63);
    const bytes quoted = ip6(tcp_p, tcpseg(41000, 7000, syn, 9), client6, vip6, 63);
    const auto before3 = totals();
    o = send(1, from_backend(b, ip6(58, icmp_err(2, 0, 1280, sent), b, snat6)));
    expect_moved(before3, totals(), {{}, {{l4_event::icmp_translated, 1}}});
    const bytes ptb = ether(client6_mac, wan_mac, 0x86dd,
                            ip6(58, icmp_err(2, 0, 1280, quoted), vip6, client6, 63));
    EXPECT_EQ(o.wan, std::vector<bytes>{ptb});
    EXPECT_TRUE(o.lan.empty() && o.kernel.empty());
    expect_checksums(ptb);
    for (const auto& f : o.wan) {
        expect_checksums(f);
    }
}

// ------------------------------------------------------------------------ 6: IPIP and GUE

TEST_F(L4, IpipCarriesTheClientPacketUnchanged)
{
    const net::ip_addr b = ip(ipip_backend);
    const bytes inner = ip4(tcp_p, tcpseg(42000, 7100, syn, 5), client, vip_ipip, {.tos = 0x10});
    bytes outer = ip4(4, inner, snat, b, {.ttl = 64, .frag = 0x4000, .id = 0, .tos = 0x10});
    golden("IPIP SYN without MSS", 0, from_client(inner), 1, to_backend(b, outer),
           {{}, {{l4_event::new_flows, 1}, {l4_event::encapsulated, 1}}});
    const bytes data = ip4(tcp_p, tcpseg(42000, 7100, psh | ack, 6, 1, 200), client, vip_ipip);
    golden("IPIP data of the flow", 0, from_client(data), 1,
           to_backend(b, ip4(4, data, snat, b, {.ttl = 64, .frag = 0x4000, .id = 0})),
           {{}, {{l4_event::flow_hits, 1}, {l4_event::encapsulated, 1}}});
    EXPECT_EQ(flow_state(client, 42000, vip_ipip, 7100), state::tcp_established);

    // A SYN whose MSS does not fit the lan MTU with 20 bytes of outer header: 1500 - 40 - 20.
    const bytes big = ip4(tcp_p, tcpseg(42001, 7100, syn, 5, 0, 0, 1460), client, vip_ipip);
    const bytes clamped = ip4(tcp_p, tcpseg(42001, 7100, syn, 5, 0, 0, 1440), client, vip_ipip);
    golden(
        "IPIP SYN with MSS 1460 is clamped to 1440", 0, from_client(big), 1,
        to_backend(b, ip4(4, clamped, snat, b, {.ttl = 64, .frag = 0x4000, .id = 0})),
        {{}, {{l4_event::new_flows, 1}, {l4_event::encapsulated, 1}, {l4_event::mss_clamped, 1}}});
    const bytes small = ip4(tcp_p, tcpseg(42002, 7100, syn, 5, 0, 0, 1200), client, vip_ipip);
    golden("IPIP SYN with MSS 1200 is unchanged", 0, from_client(small), 1,
           to_backend(b, ip4(4, small, snat, b, {.ttl = 64, .frag = 0x4000, .id = 0})),
           {{}, {{l4_event::new_flows, 1}, {l4_event::encapsulated, 1}}});

    // Too big for the lan MTU once encapsulated: 1490 + 20 > 1500.
    const bytes huge =
        ip4(tcp_p, tcpseg(42000, 7100, psh | ack, 7, 1, 1490 - 40), client, vip_ipip);
    golden("IPIP packet over the MTU", 0, from_client(huge), -1, {},
           {{{drop::l4_too_big, 1}}, {{l4_event::flow_hits, 1}}});
}

TEST_F(L4, GueCarriesTheClientPacketOverUdp6080)
{
    const net::ip_addr b = ip(gue_backend);
    const bytes inner = ip4(tcp_p, tcpseg(43000, 7200, syn, 5), client, vip_gue);
    const uint64_t h = fastpath::flow_hash(4, client.bytes.data(), vip_gue.bytes.data(), be(43000),
                                           be(7200), tcp_p);
    bytes udp(8, 0);
    put16(udp, 0, static_cast<uint16_t>(0xc000 | (h & 0x3fff)));
    put16(udp, 2, 6080);
    put16(udp, 4, static_cast<uint16_t>(8 + inner.size()));
    udp.insert(udp.end(), inner.begin(), inner.end()); // UDP checksum 0 (allowed over IPv4)
    const bytes outer =
        ip4(udp_p, udp, snat, b, {.ttl = 64, .frag = 0x4000, .id = 0, .l4_csum = false});
    golden("GUE SYN", 0, from_client(inner), 1, to_backend(b, outer),
           {{}, {{l4_event::new_flows, 1}, {l4_event::encapsulated, 1}}});

    // The configured GUE port replaces 6080.
    _settings.gue_port = be(5555);
    const bytes ack_in = ip4(tcp_p, tcpseg(43000, 7200, ack, 6, 1), client, vip_gue);
    put16(udp, 2, 5555);
    udp.resize(8);
    put16(udp, 4, static_cast<uint16_t>(8 + ack_in.size()));
    udp.insert(udp.end(), ack_in.begin(), ack_in.end());
    golden("GUE on the configured port", 0, from_client(ack_in), 1,
           to_backend(
               b, ip4(udp_p, udp, snat, b, {.ttl = 64, .frag = 0x4000, .id = 0, .l4_csum = false})),
           {{}, {{l4_event::flow_hits, 1}, {l4_event::encapsulated, 1}}});
}

// ------------------------------------------------------------------------ 7: ICMP errors

TEST_F(L4, FragmentationNeededFromTheBackendIsTranslatedForTheClient)
{
    const net::ip_addr b = open_flow(44000, 1024);
    // The data packet as the backend received it (TTL 63), quoted whole (TCP header
    // included, so its checksum is in the quote too).
    const bytes sent = ip4(tcp_p, tcpseg(1024, 8000, psh | ack, 101, 501), snat, b, {.ttl = 63});
    const bytes err_in = ip4(icmp_p, icmp_err(3, 4, 1400, sent), b, snat);
    // What the client must get: an error from the VIP quoting its own packet client -> VIP.
    const bytes quoted =
        ip4(tcp_p, tcpseg(44000, 7000, psh | ack, 101, 501), client, vip, {.ttl = 63});
    const bytes err_out = ip4(icmp_p, icmp_err(3, 4, 1400, quoted), vip, client, {.ttl = 63});
    golden("ICMP frag needed, backend -> SNAT, quoting SNAT:1024 -> backend:8000", 1,
           from_backend(b, err_in), 0, to_client(err_out), {{}, {{l4_event::icmp_translated, 1}}});

    // A quote of only 8 bytes of TCP (RFC 792 minimum): the ports change, the cut checksum
    // field is not there to update.
    bytes sent8(sent.begin(), sent.begin() + 28);
    bytes quoted8(quoted.begin(), quoted.begin() + 28);
    golden("ICMP error with an 8-byte L4 quote", 1,
           from_backend(b, ip4(icmp_p, icmp_err(3, 4, 1400, sent8), b, snat)), 0,
           to_client(ip4(icmp_p, icmp_err(3, 4, 1400, quoted8), vip, client, {.ttl = 63})),
           {{}, {{l4_event::icmp_translated, 1}}});

    // An error about no flow is dropped; an echo to the SNAT address is the kernel's.
    const bytes other = ip4(tcp_p, tcpseg(1999, 8000, ack, 1, 1), snat, b, {.ttl = 63});
    golden("ICMP error about no flow", 1,
           from_backend(b, ip4(icmp_p, icmp_err(3, 4, 1400, other), b, snat)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});
    golden("ICMP echo to the SNAT address", 1,
           from_backend(b, ip4(icmp_p, icmp_echo(1, 1), b, snat)), 2, {}, {});
}

TEST_F(L4, IcmpErrorsFromTheClientSideAreTranslatedForTheBackend)
{
    const net::ip_addr b = open_flow(44100, 1024);
    // The reply as the client received it (VIP:7000 -> client:44100, TTL 63), quoted in a
    // "fragmentation needed" from a router on the client's side (client2's address).
    const bytes sent =
        ip4(tcp_p, tcpseg(7000, 44100, psh | ack, 501, 101), vip, client, {.ttl = 63});
    const bytes err_in = ip4(icmp_p, icmp_err(3, 4, 1300, sent), client2, vip);
    // What the backend must get: an error from the SNAT address quoting what it sent.
    const bytes quoted = ip4(tcp_p, tcpseg(8000, 1024, psh | ack, 501, 101), b, snat, {.ttl = 63});
    const bytes err_out = ip4(icmp_p, icmp_err(3, 4, 1300, quoted), snat, b, {.ttl = 63});
    golden("ICMP frag needed to the VIP, quoting VIP:7000 -> client:44100", 0,
           from_client(err_in, client2_mac), 1, to_backend(b, err_out),
           {{}, {{l4_event::icmp_translated, 1}}});
    // About no flow: the kernel's (it may be about its own traffic on that address).
    const bytes other = ip4(tcp_p, tcpseg(7000, 44999, ack, 1, 1), vip, client, {.ttl = 63});
    golden("ICMP error to the VIP about no flow", 0,
           from_client(ip4(icmp_p, icmp_err(3, 3, 0, other), client, vip)), 2, {}, {});

    // DSR: the error goes to the backend encapsulated, as the flow's packets do.
    const net::ip_addr d = ip(ipip_backend);
    ASSERT_EQ(
        send(0, from_client(ip4(tcp_p, tcpseg(42500, 7100, syn, 5), client, vip_ipip))).lan.size(),
        1u);
    const bytes dsr_sent =
        ip4(tcp_p, tcpseg(7100, 42500, syn | ack, 9, 6), vip_ipip, client, {.ttl = 63});
    const bytes dsr_err = ip4(icmp_p, icmp_err(3, 4, 1300, dsr_sent), client2, vip_ipip);
    golden("ICMP error about a DSR flow: encapsulated to its backend", 0,
           from_client(dsr_err, client2_mac), 1,
           to_backend(d, ip4(4, dsr_err, snat, d, {.ttl = 64, .frag = 0x4000, .id = 0})),
           {{}, {{l4_event::icmp_translated, 1}, {l4_event::encapsulated, 1}}});
}

TEST_F(L4, ClientSideIcmpErrorsGoRoundTheWorkers)
{
    // This worker plays worker 1 of 2 (SNAT ports from 33280), with worker 0's rings both ways.
    // RSS gives an ICMP error to a worker by its addresses, a flow's packets by their ports
    // too: an error about no flow of the worker that received it goes round the others.
    _redirect = rte_ring_create("l4_redirect", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(_redirect, nullptr);
    struct ring_guard {
        rte_ring* r;
        ~ring_guard() { rte_ring_free(r); }
    };
    rte_ring* in = rte_ring_create("l4_redirect_in", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(in, nullptr);
    const ring_guard in_guard{in};
    rte_ring* to2 = rte_ring_create("l4_redirect_2", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(to2, nullptr);
    const ring_guard to2_guard{to2};
    _l4->worker = 1;
    _l4->workers = 2;
    _l4->port_span = 32256;
    _l4->redirect_out[0] = _redirect;
    _l4->redirect_in[0] = in;
    const net::ip_addr b = open_flow(44100, 33280);
    const bytes sent =
        ip4(tcp_p, tcpseg(7000, 44100, psh | ack, 501, 101), vip, client, {.ttl = 63});
    const bytes err_in =
        from_client(ip4(icmp_p, icmp_err(3, 4, 1300, sent), client2, vip), client2_mac);
    const bytes quoted = ip4(tcp_p, tcpseg(8000, 33280, psh | ack, 501, 101), b, snat, {.ttl = 63});
    const bytes err_out =
        to_backend(b, ip4(icmp_p, icmp_err(3, 4, 1300, quoted), snat, b, {.ttl = 63}));
    golden("an error about this worker's flow, from the NIC: translated here", 0, err_in, 1,
           err_out, {{}, {{l4_event::icmp_translated, 1}}});

    const bytes other = ip4(tcp_p, tcpseg(7000, 44999, ack, 1, 1), vip, client, {.ttl = 63});
    const bytes err_other = from_client(ip4(icmp_p, icmp_err(3, 3, 0, other), client, vip));
    golden("an error about no flow of this worker, from the NIC: handed to worker 0", 0, err_other,
           -1, {}, {{}, {{l4_event::redirected_out, 1}}});
    void* handed = nullptr;
    ASSERT_EQ(rte_ring_dequeue(_redirect, &handed), 0);
    EXPECT_EQ(from_mbuf(static_cast<rte_mbuf*>(handed)), err_other);
    EXPECT_EQ(static_cast<rte_mbuf*>(handed)->hash.usr, 1u) << "names the worker it came in by";
    rte_pktmbuf_free(static_cast<rte_mbuf*>(handed));

    // From worker 0, which received them and found no flow: as they would come in its ring.
    auto from_worker0 = [&](const bytes& f, uint16_t arrived_on) {
        rte_mbuf* m = to_mbuf(s_pool, f);
        ASSERT_NE(m, nullptr);
        m->hash.usr = 0;
        m->port = arrived_on;
        ASSERT_EQ(rte_ring_enqueue(in, m), 0);
    };
    auto before = totals();
    from_worker0(err_in, s_wan.port);
    step();
    auto o = collect();
    EXPECT_EQ(o.lan, std::vector<bytes>{err_out}) << "this worker's flow: translated";
    EXPECT_TRUE(o.wan.empty() && o.kernel.empty());
    expect_moved(before, totals(),
                 {{}, {{l4_event::redirected_in, 1}, {l4_event::icmp_translated, 1}}});

    before = totals();
    from_worker0(err_other, s_lan.port);
    step();
    EXPECT_TRUE(drain(_redirect).empty()) << "the round is complete: never back to worker 0";
    EXPECT_TRUE(drain(s_wan_exc.tx).empty());
    EXPECT_EQ(drain(s_lan_exc.tx), std::vector<bytes>{err_other})
        << "to the kernel, by the exception port of the port it arrived on";
    expect_moved(before, totals(), {{}, {{l4_event::redirected_in, 1}}});

    // An error quoting a port without an L4 listener (the kernel's own traffic, or spoofed)
    // goes to the kernel at once, not round the workers.
    const bytes nolisten = ip4(tcp_p, tcpseg(9999, 44999, ack, 1, 1), vip, client, {.ttl = 63});
    golden("an error about no L4 listener: to the kernel", 0,
           from_client(ip4(icmp_p, icmp_err(3, 3, 0, nolisten), client, vip)), 2, {}, {});

    // Three workers, this one in the middle: from worker 0, not ours, on to worker 2 with
    // worker 0 still named as where it came in.
    _l4->workers = 3;
    _l4->port_span = 21504;
    _l4->redirect_out[2] = to2;
    before = totals();
    from_worker0(err_other, s_wan.port);
    step();
    void* passed = nullptr;
    ASSERT_EQ(rte_ring_dequeue(to2, &passed), 0);
    EXPECT_EQ(from_mbuf(static_cast<rte_mbuf*>(passed)), err_other);
    EXPECT_EQ(static_cast<rte_mbuf*>(passed)->hash.usr, 0u);
    rte_pktmbuf_free(static_cast<rte_mbuf*>(passed));
    EXPECT_TRUE(drain(_redirect).empty() && drain(s_wan_exc.tx).empty());
    expect_moved(before, totals(),
                 {{}, {{l4_event::redirected_in, 1}, {l4_event::redirected_out, 1}}});

    _l4->redirect_in[0] = nullptr;
    _l4->redirect_out[2] = nullptr;
}

// ------------------------------------------------------------------------ 8: drops

TEST_F(L4, AckWithoutFlowToTheVipIsDropped)
{
    golden("ACK to the VIP, no flow", 0,
           from_client(ip4(tcp_p, tcpseg(45000, 7000, ack, 1, 1), client, vip)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});
    golden("SYN-ACK to the VIP, no flow", 0,
           from_client(ip4(tcp_p, tcpseg(45000, 7000, syn | ack, 1, 1), client, vip)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});
    EXPECT_EQ(_l4->ct4.size(), 0u);
}

TEST_F(L4, ReplyToAnSnatPortWithoutFlowIsDropped)
{
    const net::ip_addr b = ip(zone_a[0].c_str());
    golden("backend -> SNAT:2000, no flow", 1,
           from_backend(b, ip4(tcp_p, tcpseg(8000, 2000, syn | ack, 1, 1), b, snat)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});
    golden("UDP backend -> SNAT:1024, no flow", 1,
           from_backend(b, ip4(udp_p, udpdgram(8001, 1024, 4), b, snat)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});

    // A live SNAT port answers only its backend's address and port.
    const net::ip_addr owner = open_flow(40100, 1024);
    const net::ip_addr other =
        ip(owner == ip(zone_a[0].c_str()) ? zone_a[1].c_str() : zone_a[0].c_str());
    golden("another backend -> the live SNAT:1024", 1,
           from_backend(other, ip4(tcp_p, tcpseg(8000, 1024, ack, 1, 1), other, snat)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});
    golden("the backend from another port -> the live SNAT:1024", 1,
           from_backend(owner, ip4(tcp_p, tcpseg(8001, 1024, ack, 1, 1), owner, snat)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});
    golden("UDP to the live TCP SNAT:1024", 1,
           from_backend(owner, ip4(udp_p, udpdgram(8000, 1024, 4), owner, snat)), -1, {},
           {{{drop::l4_no_flow, 1}}, {}});
}

TEST_F(L4, UnresolvedBackendIsDroppedAndResolutionRequested)
{
    golden("SYN to a service whose backend has no neighbour entry", 0,
           from_client(ip4(tcp_p, tcpseg(46000, 7400, syn, 1), client, vip_far)), -1, {},
           {{{drop::l4_no_neighbour, 1}}, {{l4_event::resolve_requests, 1}}});
    const auto r = resolves();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].port, 1) << "the lan port";
    EXPECT_EQ(r[0].family, 4);
    EXPECT_EQ(r[0].addr, far_backend.bytes);
    EXPECT_EQ(_l4->ct4.size(), 0u) << "no flow for a packet that was not sent";

    // The stage reads the TSC itself (no fake clock): the "at most one request per 100 ms"
    // rule is asserted only when the retransmission really came within 100 ms.
    const uint64_t t0 = rte_rdtsc();
    const auto before = totals();
    const auto o = send(0, from_client(ip4(tcp_p, tcpseg(46000, 7400, syn, 1), client, vip_far)));
    const bool within = rte_rdtsc() - t0 < rte_get_tsc_hz() / 10;
    EXPECT_TRUE(o.wan.empty() && o.lan.empty() && o.kernel.empty());
    EXPECT_EQ(totals().drop(drop::l4_no_neighbour) - before.drop(drop::l4_no_neighbour), 1u);
    if (within) {
        EXPECT_TRUE(resolves().empty()) << "a retransmission within 100 ms asks no more";
    } else {
        (void)resolves();
    }

    // Once the kernel resolved it, the next SYN goes out.
    publish_neighbours(true);
    golden("after resolution", 0,
           from_client(ip4(tcp_p, tcpseg(46000, 7400, syn, 1), client, vip_far)), 1,
           to_backend(far_backend,
                      ip4(tcp_p, tcpseg(1024, 8400, syn, 1), snat, far_backend, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
}

TEST_F(L4, TtlOneIsDroppedWithoutCreatingAFlow)
{
    // On an established flow: dropped, the flow stays.
    open_flow(47002, 1024);
    golden("data with TTL 1 on a flow", 0,
           from_client(ip4(tcp_p, tcpseg(47002, 7000, ack, 101, 501, 10), client, vip, {.ttl = 1})),
           -1, {}, {{{drop::l4_ttl_exceeded, 1}}, {{l4_event::flow_hits, 1}}});
    EXPECT_EQ(flow_state(client, 47002, vip, 7000), state::tcp_established);
    ASSERT_EQ(_l4->ct4.size(), 1u);

    // A new flow whose first packet cannot be forwarded must leave no state behind: no
    // conntrack entry (it would hold an SNAT port and, dying in syn_sent, report a connect
    // failure of a backend that never saw the SYN), and no new_flows count.
    golden("SYN with TTL 1", 0,
           from_client(ip4(tcp_p, tcpseg(47000, 7000, syn, 1), client, vip, {.ttl = 1})), -1, {},
           {{{drop::l4_ttl_exceeded, 1}}, {}});
    EXPECT_EQ(flow_state(client, 47000, vip, 7000), state::free)
        << "a SYN that never reached the backend opens no flow";
    golden("UDP with TTL 0", 0,
           from_client(ip4(udp_p, udpdgram(47001, 7001, 4), client, vip, {.ttl = 0})), -1, {},
           {{{drop::l4_ttl_exceeded, 1}}, {}});
    EXPECT_EQ(flow_state(client, 47001, vip, 7001, udp_p), state::free);
    EXPECT_EQ(_l4->ct4.size(), 1u) << "only the established flow";
    // Whatever state the drops left, none of it may later report the backend as failing.
    (void)_l4->ct4.age(rte_rdtsc() + 3600 * rte_get_tsc_hz(), 4096);
    EXPECT_TRUE(signals().empty()) << "a connect failure for a SYN the backend never got";
}

TEST_F(L4, FragmentsFollowTheirFirstFragment)
{
    // One UDP datagram of 8 + 100 bytes to the VIP, in two fragments: 56 bytes, then 52.
    bytes whole = udpdgram(48000, 7001, 100);
    set_l4_csum(whole, udp_p, client, vip);
    const bytes part1(whole.begin(), whole.begin() + 56);
    const bytes part2(whole.begin() + 56, whole.end());
    const auto* ep = pick(view(), client, vip, 48000, 7001, udp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    // What the backend must get: the NATed datagram, fragmented the same way.
    bytes nat = udpdgram(1024, 8001, 100);
    set_l4_csum(nat, udp_p, snat, b);
    const bytes nat1(nat.begin(), nat.begin() + 56);
    const bytes nat2(nat.begin() + 56, nat.end());

    auto before = totals();
    auto o = send(0, from_client(ip4(udp_p, part1, client, vip,
                                     {.frag = 0x2000, .id = 0x4242, .l4_csum = false})));
    ASSERT_EQ(o.lan.size(), 1u) << "the first fragment is NATed like any first packet";
    EXPECT_EQ(o.lan[0],
              to_backend(b, ip4(udp_p, nat1, snat, b,
                                {.ttl = 63, .frag = 0x2000, .id = 0x4242, .l4_csum = false})));
    expect_moved(before, totals(), {{}, {{l4_event::new_flows, 1}}});

    before = totals();
    o = send(0, from_client(ip4(udp_p, part2, client, vip,
                                {.frag = 0x0007, .id = 0x4242, .l4_csum = false})));
    ASSERT_EQ(o.lan.size(), 1u) << "the later fragment follows its first";
    EXPECT_EQ(o.lan[0],
              to_backend(b, ip4(udp_p, nat2, snat, b,
                                {.ttl = 63, .frag = 0x0007, .id = 0x4242, .l4_csum = false})));
    expect_moved(before, totals(), {});
    // Reassembled, the datagram's UDP checksum verifies with the new addresses.
    EXPECT_TRUE(
        net::l4_checksum_ok(4, udp_p, snat.bytes.data(), b.bytes.data(), nat.data(), nat.size()));

    // A later fragment whose first never came through here: to the VIP address it goes to
    // the kernel (which may hold its first fragment); to an SNAT address it can only be a
    // lost full-NAT reply, so it is dropped.
    golden("later fragment of an unknown datagram to the VIP", 0,
           from_client(ip4(udp_p, bytes(64, 1), client, vip,
                           {.frag = 0x0008, .id = 0x7777, .l4_csum = false})),
           2, {}, {});
    golden("later fragment of an unknown datagram to the SNAT address", 1,
           from_backend(b, ip4(udp_p, bytes(64, 1), b, snat,
                               {.frag = 0x0008, .id = 0x7778, .l4_csum = false})),
           -1, {}, {{{drop::l4_fragment, 1}}, {}});
    // A first fragment cut inside its TCP header: no ports to act on.
    golden("first TCP fragment too short for the TCP header", 0,
           from_client(ip4(tcp_p, bytes(12, 0), client, vip, {.frag = 0x2000, .l4_csum = false})),
           -1, {}, {{{drop::l4_fragment, 1}}, {}});
    // Later fragments to an address that is no VIP and no SNAT address are the kernel's.
    golden("later fragment to the box", 0,
           from_client(ip4(udp_p, bytes(64, 1), client, net::ip_addr::v4(0xc6120001),
                           {.frag = 0x0008, .l4_csum = false})),
           2, {}, {});
    EXPECT_EQ(_l4->ct4.size(), 1u);
}

TEST_F(L4, ServiceWithoutReadyEndpointHasNoBackend)
{
    golden("SYN to a service whose only endpoint is not ready", 0,
           from_client(ip4(tcp_p, tcpseg(49000, 7300, syn, 1), client, vip_idle)), -1, {},
           {{{drop::l4_no_backend, 1}}, {}});
    EXPECT_EQ(_l4->ct4.size(), 0u);
}

TEST_F(L4, TrafficNotForL4GoesToTheKernel)
{
    golden("TCP to a VIP port that is no listener", 0,
           from_client(ip4(tcp_p, tcpseg(50000, 22, syn, 1), client, vip)), 2, {}, {});
    golden("ARP from the backend side", 1, ether(lan_mac, backend_mac(snat), 0x0806, arp_request()),
           2, {}, {});
}

// ------------------------------------------------------------------------ 9: snapshot swap

TEST_F(L4, EstablishedFlowKeepsItsBackendAcrossSnapshots)
{
    // Find a client port whose new flow Maglev sends elsewhere once zone-a grows.
    auto grown = build_view(mesh_spec{[] {
        auto a = zone_a;
        a.insert(a.end(), extra_a.begin(), extra_a.end());
        return a;
    }()});
    ASSERT_NE(grown, nullptr);
    uint16_t cport = 0;
    for (uint16_t p = 51000; p < 51200 && cport == 0; ++p) {
        const auto* now = pick(view(), client, vip, p, 7000, tcp_p);
        const auto* later = pick(*grown, client, vip, p, 7000, tcp_p);
        ASSERT_TRUE(now != nullptr && later != nullptr);
        if (addr_of(*now) != addr_of(*later)) {
            cport = p;
        }
    }
    ASSERT_NE(cport, 0) << "no 5-tuple moves with 6 more endpoints: Maglev is not spreading";
    const net::ip_addr old_b = open_flow(cport, 1024);
    const net::ip_addr new_b = addr_of(*pick(*grown, client, vip, cport, 7000, tcp_p));
    ASSERT_NE(old_b, new_b);

    _view->publish(std::move(grown));
    golden("data after the swap: still the old backend", 0,
           from_client(ip4(tcp_p, tcpseg(cport, 7000, psh | ack, 101, 501, 50), client, vip)), 1,
           to_backend(old_b, ip4(tcp_p, tcpseg(1024, 8000, psh | ack, 101, 501, 50), snat, old_b,
                                 {.ttl = 63})),
           {{}, {{l4_event::flow_hits, 1}}});
    // The same 5-tuple from another client port goes where the new view says.
    const auto* fresh = pick(view(), client2, vip, cport, 7000, tcp_p);
    ASSERT_NE(fresh, nullptr);
    const net::ip_addr fb = addr_of(*fresh);
    golden("a new flow follows the new view", 0,
           from_client(ip4(tcp_p, tcpseg(cport, 7000, syn, 1), client2, vip), client2_mac), 1,
           to_backend(fb, ip4(tcp_p, tcpseg(1025, 8000, syn, 1), snat, fb, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});

    // The old backend leaves the config entirely: the flow drains to it.
    mesh_spec gone;
    gone.zone_a.clear();
    for (const auto& a : zone_a) {
        if (a != old_b.to_string()) {
            gone.zone_a.push_back(a);
        }
    }
    gone.zone_a.insert(gone.zone_a.end(), extra_a.begin(), extra_a.end());
    publish_view(gone);
    const auto* ends = view().find_cluster("outbound|7000||echo.l4.svc.cluster.local");
    ASSERT_NE(ends, nullptr);
    for (const auto& e : ends->endpoints) {
        EXPECT_NE(addr_of(e), old_b) << "the old backend is out of the config";
    }
    golden("data after removal: drains to the old backend", 0,
           from_client(ip4(tcp_p, tcpseg(cport, 7000, psh | ack, 151, 501, 20), client, vip)), 1,
           to_backend(old_b, ip4(tcp_p, tcpseg(1024, 8000, psh | ack, 151, 501, 20), snat, old_b,
                                 {.ttl = 63})),
           {{}, {{l4_event::flow_hits, 1}}});
    golden("its replies still come back", 1,
           from_backend(old_b, ip4(tcp_p, tcpseg(8000, 1024, ack, 501, 171), old_b, snat)), 0,
           to_client(ip4(tcp_p, tcpseg(7000, cport, ack, 501, 171), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}}});
}

// ------------------------------------------------------------------------ 10: health signals

TEST_F(L4, RstAnsweringTheSynIsAConnectFailure)
{
    const auto* ep = pick(view(), client, vip, 52000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    const uint64_t id = ep->id;
    ASSERT_NE(id, 0u);
    golden("SYN", 0, from_client(ip4(tcp_p, tcpseg(52000, 7000, syn, 1), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, syn, 1), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
    golden("RST+ACK from the backend (port closed)", 1,
           from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, rst | ack, 0, 2), b, snat)), 0,
           to_client(ip4(tcp_p, tcpseg(7000, 52000, rst | ack, 0, 2), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}, {l4_event::health_signals, 1}}});
    auto s = signals();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].endpoint_id, id);
    EXPECT_EQ(s[0].outcome, fastpath::signal_connect_failure);
    EXPECT_EQ(flow_state(client, 52000, vip, 7000), state::tcp_closed);

    // The client tries again on the same 5-tuple: a new connection is a new flow, chosen
    // again (same hash, same view: the same backend) with the next SNAT port; this time the
    // backend answers, and the endpoint that failed is reported healthy again (once).
    golden("SYN again on the closed 5-tuple", 0,
           from_client(ip4(tcp_p, tcpseg(52000, 7000, syn, 1), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1025, 8000, syn, 1), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
    EXPECT_EQ(flow_state(client, 52000, vip, 7000), state::tcp_syn_sent);
    EXPECT_EQ(_l4->ct4.size(), 1u) << "the finished flow was replaced, not duplicated";
    golden("SYN-ACK", 1, from_backend(b, ip4(tcp_p, tcpseg(8000, 1025, syn | ack, 9, 2), b, snat)),
           0, to_client(ip4(tcp_p, tcpseg(7000, 52000, syn | ack, 9, 2), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}, {l4_event::health_signals, 1}}});
    s = signals();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].endpoint_id, id);
    EXPECT_EQ(s[0].outcome, fastpath::signal_success);

    // Another healthy handshake on the same endpoint sends nothing.
    uint16_t p2 = 52001;
    while (addr_of(*pick(view(), client, vip, p2, 7000, tcp_p)) != b) {
        ++p2;
    }
    open_flow(p2, 1026);
    EXPECT_TRUE(signals().empty());
}

TEST_F(L4, UnroutableBackendMissingSnatAndMixedFamiliesAreDropped)
{
    golden("no route to the backend", 0,
           from_client(ip4(tcp_p, tcpseg(58000, 7500, syn, 1), client, vip_lost)), -1, {},
           {{{drop::l4_no_route, 1}}, {}});
    golden("IPv4 VIP with an IPv6 endpoint (full-NAT)", 0,
           from_client(ip4(tcp_p, tcpseg(58000, 7600, syn, 1), client, vip_mixed)), -1, {},
           {{{drop::l4_family_mismatch, 1}}, {}});
    _ports[1].snat6_count = 0;
    golden(
        "no IPv6 SNAT address on the egress port", 0,
        ether(wan_mac, client6_mac, 0x86dd, ip6(tcp_p, tcpseg(58001, 7000, syn, 1), client6, vip6)),
        -1, {}, {{{drop::l4_no_snat, 1}}, {}});
    EXPECT_EQ(_l4->ct4.size(), 0u);
    EXPECT_EQ(_l4->ct6.size(), 0u);
}

TEST_F(L4, VlanTaggedClientFrameLeavesUntagged)
{
    const auto* ep = pick(view(), client, vip, 55000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    golden("802.1Q-tagged SYN", 0,
           tagged(from_client(ip4(tcp_p, tcpseg(55000, 7000, syn, 3), client, vip)), 42), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, syn, 3), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
    golden("802.1Q-tagged SYN-ACK", 1,
           tagged(from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, syn | ack, 9, 4), b, snat)), 7), 0,
           to_client(ip4(tcp_p, tcpseg(7000, 55000, syn | ack, 9, 4), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}}});
}

TEST_F(L4, FullNatClampsTheMssToTheEgressMtu)
{
    _ports[1].mtu = 1400; // lan: MSS at most 1400 - 40
    const auto* ep = pick(view(), client, vip, 56000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    golden("SYN with MSS 1460 toward a 1400-byte MTU", 0,
           from_client(ip4(tcp_p, tcpseg(56000, 7000, syn, 3, 0, 0, 1460), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, syn, 3, 0, 0, 1360), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}, {l4_event::mss_clamped, 1}}});
    golden("SYN-ACK with MSS 1460 toward the 1500-byte wan: unchanged", 1,
           from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, syn | ack, 9, 4, 0, 1460), b, snat)), 0,
           to_client(
               ip4(tcp_p, tcpseg(7000, 56000, syn | ack, 9, 4, 0, 1460), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}}});
    const auto* ep2 = pick(view(), client, vip, 56001, 7000, tcp_p);
    ASSERT_NE(ep2, nullptr);
    const net::ip_addr b2 = addr_of(*ep2);
    golden(
        "SYN with MSS 1300: unchanged", 0,
        from_client(ip4(tcp_p, tcpseg(56001, 7000, syn, 3, 0, 0, 1300), client, vip)), 1,
        to_backend(b2, ip4(tcp_p, tcpseg(1025, 8000, syn, 3, 0, 0, 1300), snat, b2, {.ttl = 63})),
        {{}, {{l4_event::new_flows, 1}}});
}

TEST_F(L4, SnatPortsComeFromTheWorkersRangeAndOtherRangesAreRedirected)
{
    // This worker plays worker 1 of 2: its SNAT ports are [1024 + 32256, 65536).
    _redirect = rte_ring_create("l4_redirect", 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    ASSERT_NE(_redirect, nullptr);
    _l4->worker = 1;
    _l4->workers = 2;
    _l4->port_span = 32256;
    _l4->redirect_out[0] = _redirect;
    const auto* ep = pick(view(), client, vip, 54000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    golden("SYN: the first port of worker 1", 0,
           from_client(ip4(tcp_p, tcpseg(54000, 7000, syn, 1), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(33280, 8000, syn, 1), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
    golden("SYN-ACK to SNAT:33280", 1,
           from_backend(b, ip4(tcp_p, tcpseg(8000, 33280, syn | ack, 5, 2), b, snat)), 0,
           to_client(ip4(tcp_p, tcpseg(7000, 54000, syn | ack, 5, 2), vip, client, {.ttl = 63})),
           {{}, {{l4_event::reply_hits, 1}}});
    const bytes theirs = from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, ack, 5, 2), b, snat));
    golden("a reply to SNAT:1024 is worker 0's: handed over unchanged", 1, theirs, -1, {},
           {{}, {{l4_event::redirected_out, 1}}});
    EXPECT_EQ(drain(_redirect), std::vector<bytes>{theirs});
    const bytes quote = ip4(tcp_p, tcpseg(1030, 8000, ack, 1, 1), snat, b, {.ttl = 63});
    const bytes err = from_backend(b, ip4(icmp_p, icmp_err(3, 4, 1400, quote), b, snat));
    golden("an ICMP error quoting SNAT:1030 is worker 0's too", 1, err, -1, {},
           {{}, {{l4_event::redirected_out, 1}}});
    EXPECT_EQ(drain(_redirect), std::vector<bytes>{err});
}

TEST_F(L4, SynWithoutAnswerExpiresAsConnectFailure)
{
    const auto* ep = pick(view(), client, vip, 53000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    const uint64_t id = ep->id;
    golden("SYN the backend never answers", 0,
           from_client(ip4(tcp_p, tcpseg(53000, 7000, syn, 1), client, vip)), 1,
           to_backend(b, ip4(tcp_p, tcpseg(1024, 8000, syn, 1), snat, b, {.ttl = 63})),
           {{}, {{l4_event::new_flows, 1}}});
    open_flow(53001, 1025); // an established flow: its expiry is no failure
    ASSERT_EQ(_l4->ct4.size(), 2u);
    // The table takes the time as an argument: age it an hour ahead (past connectTimeout,
    // 10 s by default, and every other timeout) instead of waiting.
    const auto before = totals();
    EXPECT_EQ(_l4->ct4.age(rte_rdtsc() + 3600 * rte_get_tsc_hz(), 4096), 2u);
    EXPECT_EQ(_l4->ct4.size(), 0u);
    EXPECT_EQ(_l4->ct4.stats().syn_expired, 1u);
    const auto s = signals();
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].endpoint_id, id);
    EXPECT_EQ(s[0].outcome, fastpath::signal_connect_failure);
    // Every signal put on the ring is counted, as the RST-to-SYN one is.
    expect_moved(before, totals(), {{}, {{l4_event::health_signals, 1}}});
}

TEST_F(L4, MaxConnectionsRefusesTheNextSynWithRst)
{
    const auto b = limited_backend;
    auto syn_to = [&](uint16_t sport) {
        return from_client(ip4(tcp_p, tcpseg(sport, 7700, syn, 5000), client, vip_limited));
    };
    for (uint16_t sp : {51000, 51001}) {
        const auto o = send(0, syn_to(sp));
        ASSERT_EQ(o.lan.size(), 1u) << "connection from port " << sp << " is admitted";
    }
    // The third open connection is over maxConnections (2, one worker): a RST from the VIP,
    // acknowledging the SYN, goes back to the client on the port it came from.
    bytes rst_seg = tcpseg(7700, 51002, rst | ack, 0, 5001);
    put16(rst_seg, 14, 0); // window 0
    golden("SYN over maxConnections", 0, syn_to(51002), 0,
           to_client(ip4(tcp_p, rst_seg, vip_limited, client, {.id = 0})),
           {{}, {{l4_event::overflow, 1}}});
    EXPECT_EQ(_l4->ct4.size(), 2u) << "the refused SYN left no state";
    // The backend resets the first connection: it no longer counts, a new one is admitted.
    const auto o =
        send(1, from_backend(b, ip4(tcp_p, tcpseg(8700, 1024, rst | ack, 1, 5001), b, snat)));
    ASSERT_EQ(o.wan.size(), 1u);
    EXPECT_TRUE(signals().empty())
        << "a RST answering a SYN is reported only for clusters with outlier detection";
    const auto o2 = send(0, syn_to(51003));
    EXPECT_EQ(o2.lan.size(), 1u) << "admitted once a connection closed";
    EXPECT_EQ(o2.wan.size(), 0u);
}

TEST_F(L4, OpenTcpConnectionsPerEndpointAreWhatTheControlThreadReads)
{
    // /v1/endpoints reads the workers' counts through l4_active_connections(): the same
    // slots l4_stage counts in, from the SYN to RST, both FINs or expiry.
    const auto* ep = pick(view(), client, vip, 54000, 7000, tcp_p);
    ASSERT_NE(ep, nullptr);
    const uint64_t id = ep->id;
    std::vector<uint16_t> same; // other client ports Maglev sends to the same endpoint
    for (uint16_t p = 54001; p < 54400 && same.size() < 2; ++p) {
        const auto* e = pick(view(), client, vip, p, 7000, tcp_p);
        if (e != nullptr && e->id == id) {
            same.push_back(p);
        }
    }
    ASSERT_EQ(same.size(), 2u);
    const uint16_t second = same[0];
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 0u);
    const net::ip_addr b = open_flow(54000, 1024);
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 1u);
    ASSERT_EQ(open_flow(second, 1025), b);
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 2u);
    // The backend resets the first connection.
    ASSERT_EQ(send(1, from_backend(b, ip4(tcp_p, tcpseg(8000, 1024, rst | ack, 501, 101), b, snat)))
                  .wan.size(),
              1u);
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 1u);
    // The second one closes with a FIN each way.
    ASSERT_EQ(
        send(0, from_client(ip4(tcp_p, tcpseg(second, 7000, fin | ack, 101, 501), client, vip)))
            .lan.size(),
        1u);
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 1u) << "half-closed still counts";
    ASSERT_EQ(send(1, from_backend(b, ip4(tcp_p, tcpseg(8000, 1025, fin | ack, 501, 102), b, snat)))
                  .wan.size(),
              1u);
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 0u);
    // A SYN that is never answered counts until its entry expires.
    ASSERT_EQ(
        send(0, from_client(ip4(tcp_p, tcpseg(same[1], 7000, syn, 900), client, vip))).lan.size(),
        1u);
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 1u);
    _l4->ct4.age(rte_rdtsc() + 3600 * rte_get_tsc_hz(), 4096);
    EXPECT_EQ(fastpath::l4_active_connections(*_l4, id), 0u);
}

TEST_F(L4, DsrBetweenFamiliesIsRefused)
{
    // An IPv4 VIP whose only endpoint is IPv6, forwarded by IPIP: the flow entry keeps the
    // endpoint in the packet's family, so such a flow is refused, as for full-NAT.
    golden("SYN to an IPv4 DSR VIP with an IPv6 endpoint", 0,
           from_client(ip4(tcp_p, tcpseg(43000, 7800, syn, 5), client, ip("198.18.10.9"))), -1, {},
           {{{drop::l4_family_mismatch, 1}}, {}});
    EXPECT_EQ(_l4->ct4.size(), 0u);
}

TEST_F(L4, DsrFinThenSynIsANewConnection)
{
    const net::ip_addr b = ip(ipip_backend);
    const bytes syn1 = ip4(tcp_p, tcpseg(42100, 7100, syn, 5), client, vip_ipip);
    ASSERT_EQ(send(0, from_client(syn1)).lan.size(), 1u);
    const bytes ack1 = ip4(tcp_p, tcpseg(42100, 7100, ack, 6, 1), client, vip_ipip);
    ASSERT_EQ(send(0, from_client(ack1)).lan.size(), 1u);
    EXPECT_EQ(flow_state(client, 42100, vip_ipip, 7100), state::tcp_established);
    const bytes fin1 = ip4(tcp_p, tcpseg(42100, 7100, fin | ack, 6, 1), client, vip_ipip);
    ASSERT_EQ(send(0, from_client(fin1)).lan.size(), 1u);
    EXPECT_EQ(flow_state(client, 42100, vip_ipip, 7100), state::tcp_fin_wait);
    // The client reuses the 5-tuple: a new connection, chosen and counted anew.
    const auto before = totals();
    const auto o = send(0, from_client(syn1));
    ASSERT_EQ(o.lan.size(), 1u);
    EXPECT_EQ(o.lan[0], to_backend(b, ip4(4, syn1, snat, b, {.ttl = 64, .frag = 0x4000, .id = 0})));
    expect_moved(before, totals(), {{}, {{l4_event::new_flows, 1}, {l4_event::encapsulated, 1}}});
    EXPECT_EQ(flow_state(client, 42100, vip_ipip, 7100), state::tcp_syn_sent);
}

// ------------------------------------------------------------------------ 11: path MTU

/// The ICMPv4 "fragmentation needed" the appliance answers `orig` (an IPv4 packet) with:
/// from orig's destination to its source, quoting its header and 8 bytes.
bytes frag_needed(const bytes& orig, uint16_t mtu)
{
    bytes icmp(8, 0);
    icmp[0] = 3;
    icmp[1] = 4;
    put16(icmp, 6, mtu);
    icmp.insert(icmp.end(), orig.begin(), orig.begin() + 28);
    return ip4(icmp_p, icmp, rd_ip(orig, 16, 4), rd_ip(orig, 12, 4), {.ttl = 64, .id = 0});
}

TEST_F(L4, PacketsOverTheEgressMtuAreAnsweredWithFragmentationNeeded)
{
    _ports[1].mtu = 1200; // the lan side is narrower than the client side
    const auto* ep = pick(view(), client, vip, 5400, 7001, udp_p);
    ASSERT_NE(ep, nullptr);
    const net::ip_addr b = addr_of(*ep);
    const bytes big = ip4(udp_p, udpdgram(5400, 7001, 1300 - 28), client, vip, {.frag = 0x4000});
    golden("a new flow's first datagram over the lan MTU, DF set", 0, from_client(big), 0,
           to_client(frag_needed(big, 1200)),
           {{}, {{l4_event::new_flows, 1}, {l4_event::icmp_too_big, 1}}});
    // The flow exists: the next big one takes the fast path, with the same answer.
    const uint64_t fast_before = _l4->fast_taken;
    golden("an established flow's datagram over the lan MTU", 0, from_client(big), 0,
           to_client(frag_needed(big, 1200)),
           {{}, {{l4_event::flow_hits, 1}, {l4_event::icmp_too_big, 1}}});
    EXPECT_EQ(_l4->fast_taken, fast_before + 1);
    golden("without DF: dropped, the appliance does not fragment", 0,
           from_client(ip4(udp_p, udpdgram(5400, 7001, 1300 - 28), client, vip)), -1, {},
           {{{drop::l4_too_big, 1}}, {{l4_event::flow_hits, 1}}});
    golden(
        "a datagram that fits goes through", 0,
        from_client(ip4(udp_p, udpdgram(5400, 7001, 100), client, vip, {.frag = 0x4000})), 1,
        to_backend(b, ip4(udp_p, udpdgram(1024, 8001, 100), snat, b, {.ttl = 63, .frag = 0x4000})),
        {{}, {{l4_event::flow_hits, 1}}});

    // IPIP adds 20 bytes: a DF packet of 1190 bytes no longer fits 1200.
    const bytes inner = ip4(tcp_p, tcpseg(42000, 7100, syn, 5), client, vip_ipip, {.frag = 0x4000});
    ASSERT_EQ(send(0, from_client(inner)).lan.size(), 1u);
    const bytes huge = ip4(tcp_p, tcpseg(42000, 7100, psh | ack, 6, 1, 1190 - 40), client, vip_ipip,
                           {.frag = 0x4000});
    golden("IPIP: DF packet over the MTU once encapsulated", 0, from_client(huge), 0,
           to_client(frag_needed(huge, 1180)),
           {{}, {{l4_event::flow_hits, 1}, {l4_event::icmp_too_big, 1}}});
}

TEST_F(L4, Ipv6PacketsOverTheEgressMtuAreAnsweredWithPacketTooBig)
{
    _ports[1].mtu = 1280;
    ASSERT_EQ(send(0, ether(wan_mac, client6_mac, 0x86dd,
                            ip6(tcp_p, tcpseg(41500, 7000, syn, 9), client6, vip6)))
                  .lan.size(),
              1u);
    const bytes big = ip6(tcp_p, tcpseg(41500, 7000, psh | ack, 10, 1, 1300 - 60), client6, vip6);
    bytes icmp(8, 0);
    icmp[0] = 2;
    put16(icmp, 6, 1280);
    icmp.insert(icmp.end(), big.begin(), big.begin() + 48);
    const bytes ptb = ip6(58, icmp, vip6, client6, 64);
    golden("IPv6 segment over the lan MTU", 0, ether(wan_mac, client6_mac, 0x86dd, big), 0,
           ether(client6_mac, wan_mac, 0x86dd, ptb),
           {{}, {{l4_event::flow_hits, 1}, {l4_event::icmp_too_big, 1}}});
}

// ------------------------------------------------------------------------ 12: the fast path

/// `ip_pkt` (IPv4) with 4 bytes of NOP options: IHL 6.
bytes with_options(bytes ip_pkt)
{
    const uint8_t nops[4] = {1, 1, 1, 1};
    ip_pkt.insert(ip_pkt.begin() + 20, nops, nops + 4);
    ip_pkt[0] = 0x46;
    put16(ip_pkt, 2, static_cast<uint16_t>(rd16(ip_pkt, 2) + 4));
    put16(ip_pkt, 10, 0);
    put16(ip_pkt, 10, csum(ip_pkt.data(), 24));
    return ip_pkt;
}

/// What one run of the randomized traffic script produced.
struct script_run {
    std::vector<std::vector<bytes>> wan, lan, kernel; ///< per burst
    std::vector<uint64_t> drops, events;
    uint64_t fast = 0;
    uint32_t packets = 0;
};

class L4FastPath : public L4 {
protected:
    struct flow {
        bool tcp = true;
        bool client2 = false;
        uint16_t cport = 0;
        unsigned stage = 0; ///< TCP: 0 SYN, 1 SYN-ACK, 2 ACK, 3.. data, then FINs; UDP: any
        bool mapped = false;
        net::ip_addr backend;
        uint16_t bport = 0;
        uint16_t sport = 0; ///< the SNAT port
    };

    /// A frame of `f` for the current stage (client or backend side), mutated at random now
    /// and then into something the fast path must leave to the full stage.
    std::pair<unsigned, bytes> next_frame(flow& f, std::mt19937& rng)
    {
        const net::ip_addr& c = f.client2 ? client2 : client;
        const net::mac_addr& cm = f.client2 ? client2_mac : client_mac;
        const uint16_t vport = f.tcp ? 7000 : 7001;
        const uint8_t proto = f.tcp ? tcp_p : udp_p;
        bool from_b = false;
        bytes l4;
        const unsigned st = f.stage;
        if (f.tcp) {
            if (st == 0 || !f.mapped) {
                l4 = tcpseg(f.cport, vport, syn, 100);
                f.stage = 0;
            } else if (st == 1) {
                from_b = true;
                l4 = tcpseg(f.bport, f.sport, syn | ack, 500, 101);
            } else if (st < 9) {
                from_b = st % 2 == 0 && st > 2;
                l4 = from_b ? tcpseg(f.bport, f.sport, psh | ack, 501, 101 + st, st * 10)
                            : tcpseg(f.cport, vport, psh | ack, 101 + st, 501, st * 10);
            } else if (st == 9) {
                l4 = tcpseg(f.cport, vport, fin | ack, 200, 501);
            } else {
                from_b = true;
                l4 = tcpseg(f.bport, f.sport, fin | ack, 501, 201);
            }
        } else {
            from_b = f.mapped && st % 3 == 2;
            l4 = from_b ? udpdgram(f.bport, f.sport, 20 + st) : udpdgram(f.cport, vport, 10 + st);
        }
        v4opt o;
        const unsigned mutate = rng() % 20;
        if (mutate == 0) {
            o.ttl = 1;
        } else if (mutate == 1) {
            o.frag = 0x2000; // MF: a first fragment
        } else if (mutate == 2 && f.tcp && st > 2) {
            l4[13] = rst | ack;
        }
        bytes ipp = from_b ? ip4(proto, l4, f.backend, snat, o) : ip4(proto, l4, c, vip, o);
        if (mutate == 3) {
            ipp = with_options(ipp);
        } else if (mutate == 4) {
            put16(ipp, 2, static_cast<uint16_t>(ipp.size() + 8)); // longer than the frame
        } else if (mutate == 6) {
            ipp.resize(20 + 4); // the L4 header cut short, the IPv4 length agreeing
            put16(ipp, 2, 24);
            put16(ipp, 10, 0);
            put16(ipp, 10, csum(ipp.data(), 20));
        }
        bytes frame = from_b ? from_backend(f.backend, ipp) : from_client(ipp, cm);
        if (mutate == 5) {
            frame = tagged(frame, 7);
        }
        return {from_b ? 1u : 0u, frame};
    }

    script_run run(bool fast, uint32_t seed)
    {
        _l4->fast_path = fast;
        std::mt19937 rng(seed);
        std::vector<flow> flows(200);
        for (size_t i = 0; i < flows.size(); ++i) {
            flows[i].tcp = i % 3 != 0;
            flows[i].client2 = i % 2 == 0;
            flows[i].cport = static_cast<uint16_t>(20000 + i * 7);
        }
        script_run r;
        for (int burst = 0; burst < 300; ++burst) {
            // One burst per port side, up to 32 frames, each from a distinct flow (TCP) or
            // one to three datagrams of a UDP flow; plus a frame for the kernel now and then.
            std::vector<bytes> in[2];
            std::set<size_t> used;
            const unsigned want = 1 + rng() % 32;
            for (unsigned k = 0; k < want && in[0].size() + in[1].size() < 32; ++k) {
                const size_t i = rng() % flows.size();
                if (!used.insert(i).second) {
                    continue;
                }
                flow& f = flows[i];
                const unsigned copies = f.tcp ? 1 : 1 + rng() % 3;
                for (unsigned j = 0; j < copies; ++j) {
                    auto [port, frame] = next_frame(f, rng);
                    in[port].push_back(std::move(frame));
                }
                f.stage = f.tcp ? (f.stage + 1) % 11 : f.stage + 1;
            }
            if (rng() % 8 == 0) {
                in[0].push_back(from_client(ip4(tcp_p, tcpseg(40000, 22, syn, 1), client, vip)));
            }
            for (unsigned port = 0; port < 2; ++port) {
                if (in[port].empty()) {
                    continue;
                }
                r.packets += static_cast<uint32_t>(in[port].size());
                const auto o = send(port, in[port]);
                r.wan.push_back(o.wan);
                r.lan.push_back(o.lan);
                r.kernel.push_back(o.kernel);
            }
            // Learn where each client flow went (the "backend" answers to that).
            for (auto& f : flows) {
                const auto m = _l4->ct4.lookup(key4(f.client2 ? client2 : client, vip, f.cport,
                                                    f.tcp ? 7000 : 7001, f.tcp ? tcp_p : udp_p),
                                               rte_rdtsc());
                f.mapped = m.e != nullptr;
                if (f.mapped) {
                    f.backend = net::ip_addr::v4(rte_be_to_cpu_32([&] {
                        uint32_t a;
                        std::memcpy(&a, m.e->backend_addr.data(), 4);
                        return a;
                    }()));
                    f.bport = rte_be_to_cpu_16(m.e->backend_port);
                    f.sport = rte_be_to_cpu_16(m.e->snat_port);
                }
            }
        }
        const auto t = totals();
        r.drops.assign(t.drops.begin(), t.drops.end());
        r.events.assign(t.l4.begin(), t.l4.end());
        r.fast = _l4->fast_taken;
        return r;
    }
};

TEST_F(L4FastPath, DecidesEveryPacketExactlyAsTheFullStage)
{
    for (const uint32_t seed : {1u, 2u, 3u}) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        const script_run fast = run(true, seed);
        TearDown();
        SetUp();
        const script_run full = run(false, seed);
        TearDown();
        SetUp();
        ASSERT_EQ(fast.wan.size(), full.wan.size());
        for (size_t i = 0; i < fast.wan.size(); ++i) {
            ASSERT_EQ(fast.wan[i], full.wan[i]) << "wan output of burst " << i;
            ASSERT_EQ(fast.lan[i], full.lan[i]) << "lan output of burst " << i;
            ASSERT_EQ(fast.kernel[i], full.kernel[i]) << "kernel output of burst " << i;
            for (const auto& f : fast.wan[i]) {
                expect_checksums(f);
            }
            for (const auto& f : fast.lan[i]) {
                expect_checksums(f);
            }
        }
        for (size_t i = 0; i < stats::drop_count; ++i) {
            EXPECT_EQ(fast.drops[i], full.drops[i]) << stats::drop_name(static_cast<drop>(i));
        }
        for (size_t i = 0; i < stats::l4_event_count; ++i) {
            EXPECT_EQ(fast.events[i], full.events[i])
                << stats::l4_event_name(static_cast<l4_event>(i));
        }
        EXPECT_EQ(full.fast, 0u);
        // Most packets belong to established flows: the fast path must have taken them.
        EXPECT_GT(fast.fast, fast.packets / 3) << fast.fast << " of " << fast.packets;
        // The mix exercised what the full stage alone handles.
        EXPECT_GT(fast.drops[static_cast<size_t>(drop::l4_ttl_exceeded)], 0u);
        EXPECT_GT(fast.drops[static_cast<size_t>(drop::l4_truncated)], 0u);
        EXPECT_GT(fast.drops[static_cast<size_t>(drop::ipv4_bad_length)], 0u);
        EXPECT_GT(fast.events[static_cast<size_t>(l4_event::reply_hits)], 100u);
        EXPECT_GT(fast.events[static_cast<size_t>(l4_event::new_flows)], 100u);
    }
}

} // namespace
} // namespace sluice
