#include "sluice/config/appliance.hh"

#include <algorithm>
#include <charconv>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <sstream>

#include <libconfig.h++>

namespace sluice::config {
namespace {

using libconfig::Setting;

/// Walks the libconfig tree, collecting every problem instead of stopping at the first.
class checker {
public:
    checker(std::string file, std::vector<diagnostic>& errors)
        : _file(std::move(file)), _errors(errors)
    {
    }

    void error(const Setting& s, const std::string& path, std::string msg)
    {
        _errors.push_back(diagnostic{_file, s.getSourceLine(), path, std::move(msg)});
    }

    /// Reports settings of `group` not in `allowed` (typos must not pass silently).
    void check_keys(const Setting& group, const std::string& path,
                    std::initializer_list<std::string_view> allowed)
    {
        for (int i = 0; i < group.getLength(); ++i) {
            const Setting& s = group[i];
            const char* name = s.getName();
            if (name == nullptr) {
                continue;
            }
            if (std::find(allowed.begin(), allowed.end(), std::string_view(name)) ==
                allowed.end()) {
                std::string known;
                for (auto a : allowed) {
                    known += known.empty() ? "" : ", ";
                    known += a;
                }
                error(s, join(path, name), "unknown setting (known here: " + known + ")");
            }
        }
    }

    static std::string join(const std::string& path, std::string_view key)
    {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }

    /// A group member that must be a group (absent: nullptr without error unless required).
    const Setting* group(const Setting& parent, const std::string& path, const char* key,
                         bool required = false)
    {
        if (!parent.exists(key)) {
            if (required) {
                error(parent, join(path, key), "missing (required group)");
            }
            return nullptr;
        }
        const Setting& s = parent[key];
        if (!s.isGroup()) {
            error(s, join(path, key), "must be a group { ... }");
            return nullptr;
        }
        return &s;
    }

    /// A list `( {...}, ... )` or array `[ ... ]` member.
    const Setting* seq(const Setting& parent, const std::string& path, const char* key,
                       bool required = false)
    {
        if (!parent.exists(key)) {
            if (required) {
                error(parent, join(path, key), "missing (required)");
            }
            return nullptr;
        }
        const Setting& s = parent[key];
        if (!s.isList() && !s.isArray()) {
            error(s, join(path, key), "must be a list ( ... ) or an array [ ... ]");
            return nullptr;
        }
        return &s;
    }

    bool string(const Setting& parent, const std::string& path, const char* key, std::string& out,
                bool required = false)
    {
        if (!parent.exists(key)) {
            if (required) {
                error(parent, join(path, key), "missing (required)");
            }
            return false;
        }
        const Setting& s = parent[key];
        if (s.getType() != Setting::TypeString) {
            error(s, join(path, key), "must be a string");
            return false;
        }
        out = s.c_str();
        return true;
    }

    template <typename T>
    bool integer(const Setting& parent, const std::string& path, const char* key, T& out,
                 long long lo, long long hi)
    {
        if (!parent.exists(key)) {
            return false;
        }
        const Setting& s = parent[key];
        if (s.getType() != Setting::TypeInt && s.getType() != Setting::TypeInt64) {
            error(s, join(path, key), "must be an integer");
            return false;
        }
        const long long v =
            s.getType() == Setting::TypeInt64 ? static_cast<long long>(s) : static_cast<int>(s);
        if (v < lo || v > hi) {
            error(s, join(path, key),
                  "value " + std::to_string(v) + " is out of range " + std::to_string(lo) + ".." +
                      std::to_string(hi));
            return false;
        }
        out = static_cast<T>(v);
        return true;
    }

    /// Elements of a string list/array.
    std::vector<std::pair<std::string, const Setting*>> strings(const Setting& list,
                                                                const std::string& path)
    {
        std::vector<std::pair<std::string, const Setting*>> out;
        for (int i = 0; i < list.getLength(); ++i) {
            const Setting& e = list[i];
            if (e.getType() != Setting::TypeString) {
                error(e, path + "[" + std::to_string(i) + "]", "must be a string");
                continue;
            }
            out.emplace_back(e.c_str(), &e);
        }
        return out;
    }

    /// Lcore ids of an integer list/array.
    std::vector<unsigned> uints(const Setting& list, const std::string& path)
    {
        std::vector<unsigned> out;
        for (int i = 0; i < list.getLength(); ++i) {
            const Setting& e = list[i];
            if (e.getType() != Setting::TypeInt || static_cast<int>(e) < 0) {
                error(e, path + "[" + std::to_string(i) + "]", "must be a non-negative integer");
                continue;
            }
            out.push_back(static_cast<unsigned>(static_cast<int>(e)));
        }
        return out;
    }

private:
    std::string _file;
    std::vector<diagnostic>& _errors;
};

bool valid_ifname(const std::string& n)
{
    if (n.empty() || n.size() > 15) {
        return false;
    }
    return std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

bool valid_dns_name(const std::string& n)
{
    if (n.empty() || n.size() > 253 || n.front() == '.' || n.back() == '.' ||
        n.find("..") != std::string::npos) {
        return false;
    }
    return std::all_of(n.begin(), n.end(), [](char c) {
        return std::islower(static_cast<unsigned char>(c)) ||
               std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    });
}

result<std::pair<net::ip_addr, uint16_t>> parse_host_port(const std::string& s)
{
    std::string host;
    std::string port;
    if (!s.empty() && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') {
            return err("\"" + s + "\" is not ADDRESS:PORT ([v6]:port for IPv6)");
        }
        host = s.substr(1, close - 1);
        port = s.substr(close + 2);
    } else {
        const auto colon = s.rfind(':');
        if (colon == std::string::npos || s.find(':') != colon) {
            return err("\"" + s + "\" is not ADDRESS:PORT ([v6]:port for IPv6)");
        }
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
    }
    auto a = net::ip_addr::parse(host);
    if (!a) {
        return err("\"" + s + "\": " + a.err().message);
    }
    unsigned p = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc{} || ptr != port.data() + port.size() || p == 0 ||
        p > 65535) {
        return err("\"" + s + "\": port must be 1..65535");
    }
    return std::make_pair(*a, static_cast<uint16_t>(p));
}

void check_node(checker& c, const Setting& root, appliance_config& cfg)
{
    const Setting* g = c.group(root, "", "node");
    if (g == nullptr) {
        return;
    }
    c.check_keys(*g, "node", {"name", "region", "zone", "subzone", "network"});
    c.string(*g, "node", "name", cfg.node.name);
    c.string(*g, "node", "region", cfg.node.region);
    c.string(*g, "node", "zone", cfg.node.zone);
    c.string(*g, "node", "subzone", cfg.node.subzone);
    c.string(*g, "node", "network", cfg.node.network);
    if (cfg.node.subzone.size() > 0 && cfg.node.zone.empty()) {
        c.error(*g, "node.subzone", "a subzone needs a zone");
    }
    if (cfg.node.zone.size() > 0 && cfg.node.region.empty()) {
        c.error(*g, "node.zone", "a zone needs a region");
    }
}

void check_lcores(checker& c, const Setting& root, appliance_config& cfg,
                  const std::optional<eal_lcores>& eal, const Setting* eal_setting)
{
    const Setting* g = c.group(root, "", "lcores", true);
    if (g == nullptr) {
        return;
    }
    c.check_keys(*g, "lcores", {"workers", "slowpath", "idle_sleep_us"});
    if (const Setting* w = c.seq(*g, "lcores", "workers", true)) {
        cfg.lcores.workers = c.uints(*w, "lcores.workers");
        if (w->getLength() == 0) {
            c.error(*w, "lcores.workers", "needs at least one worker lcore");
        }
        std::set<unsigned> seen;
        for (size_t i = 0; i < cfg.lcores.workers.size(); ++i) {
            const unsigned l = cfg.lcores.workers[i];
            const std::string p = "lcores.workers[" + std::to_string(i) + "]";
            if (l >= RTE_MAX_LCORE) {
                c.error((*w)[static_cast<int>(i)], p,
                        "lcore " + std::to_string(l) + " is beyond RTE_MAX_LCORE (" +
                            std::to_string(RTE_MAX_LCORE) + ")");
            } else if (!seen.insert(l).second) {
                c.error((*w)[static_cast<int>(i)], p,
                        "lcore " + std::to_string(l) + " listed twice");
            } else if (eal && eal->enabled.count(l) == 0) {
                c.error((*w)[static_cast<int>(i)], p,
                        "unknown lcore " + std::to_string(l) +
                            ": not enabled by eal.args (-l/--lcores/-c)");
            } else if (eal && eal->main == l) {
                c.error((*w)[static_cast<int>(i)], p,
                        "lcore " + std::to_string(l) +
                            " is the EAL main lcore, which runs the config thread");
            }
        }
    }
    if (!g->exists("slowpath")) {
        c.error(*g, "lcores.slowpath", "missing (required)");
    } else if (c.integer(*g, "lcores", "slowpath", cfg.lcores.slowpath, 0, RTE_MAX_LCORE - 1)) {
        const unsigned l = cfg.lcores.slowpath;
        const Setting& s = (*g)["slowpath"];
        if (std::find(cfg.lcores.workers.begin(), cfg.lcores.workers.end(), l) !=
            cfg.lcores.workers.end()) {
            c.error(s, "lcores.slowpath", "lcore " + std::to_string(l) + " is also a worker");
        } else if (eal && eal->enabled.count(l) == 0) {
            c.error(s, "lcores.slowpath",
                    "unknown lcore " + std::to_string(l) +
                        ": not enabled by eal.args (-l/--lcores/-c)");
        } else if (eal && eal->main == l) {
            c.error(s, "lcores.slowpath",
                    "lcore " + std::to_string(l) +
                        " is the EAL main lcore, which runs the config thread");
        }
    }
    c.integer(*g, "lcores", "idle_sleep_us", cfg.lcores.idle_sleep_us, 0, 100000);
    (void)eal_setting;
}

/// What makes `a` unusable as a host address on one of port `p`'s subnets ("the broadcast
/// address of 198.19.1.0/24"), or "" when nothing does. IPv4: the network and broadcast
/// addresses of subnets up to /30; IPv6: the subnet-router anycast address (RFC 4291 2.6.1)
/// of subnets up to /126.
std::string special_on_subnet(const port_conf& p, const net::ip_addr& a)
{
    for (const net::prefix& pa : p.addresses) {
        if (pa.addr.family != a.family || !pa.contains(a) ||
            static_cast<unsigned>(pa.len) + 2 > a.bits()) {
            continue;
        }
        const net::prefix net = pa.network();
        if (net.addr == a) {
            return std::string(a.is_v4() ? "the network address"
                                         : "the subnet-router anycast address") +
                   " of " + net.to_string() + " (port " + p.name + ")";
        }
        if (a.is_v4()) {
            net::ip_addr bcast = net.addr;
            for (unsigned bit = pa.len; bit < 32; ++bit) {
                bcast.bytes[bit / 8] |= static_cast<uint8_t>(0x80U >> (bit % 8));
            }
            if (bcast == a) {
                return "the broadcast address of " + net.to_string() + " (port " + p.name + ")";
            }
        }
    }
    return {};
}

void check_ports(checker& c, const Setting& root, appliance_config& cfg)
{
    const Setting* list = c.seq(root, "", "ports", true);
    if (list == nullptr) {
        return;
    }
    if (list->getLength() == 0) {
        c.error(*list, "ports", "needs at least one port");
    }
    if (static_cast<size_t>(list->getLength()) > max_ports) {
        c.error(*list, "ports", "at most " + std::to_string(max_ports) + " ports");
    }
    std::map<std::string, std::string> names;
    std::map<std::string, std::string> devices;
    std::map<net::ip_addr, std::string> addrs;
    const auto nworkers = static_cast<uint16_t>(cfg.lcores.workers.size());
    for (int i = 0; i < list->getLength(); ++i) {
        const Setting& ps = (*list)[i];
        const std::string path = "ports[" + std::to_string(i) + "]";
        if (!ps.isGroup()) {
            c.error(ps, path, "must be a group { name = ...; device = ...; }");
            continue;
        }
        c.check_keys(
            ps, path,
            {"name", "device", "queues", "rx_desc", "tx_desc", "mtu", "addresses", "snat"});
        port_conf p;
        p.line = ps.getSourceLine();
        if (c.string(ps, path, "name", p.name, true)) {
            if (!valid_ifname(p.name)) {
                c.error(ps["name"], path + ".name",
                        "\"" + p.name +
                            "\" is not a valid interface name (1-15 of [A-Za-z0-9_.-]); it names "
                            "the port's exception interface");
            } else if (auto [it, fresh] = names.emplace(p.name, path); !fresh) {
                c.error(ps["name"], path + ".name",
                        "duplicate port name \"" + p.name + "\" (also " + it->second + ")");
            }
        }
        if (!ps.exists("device")) {
            c.error(ps, path + ".device", "missing device (a PCI address or a vdev string)");
        } else if (c.string(ps, path, "device", p.device)) {
            if (p.device.empty()) {
                c.error(ps["device"], path + ".device", "must not be empty");
            } else if (auto [it, fresh] = devices.emplace(p.device, path); !fresh) {
                c.error(ps["device"], path + ".device",
                        "duplicate device \"" + p.device + "\" (also " + it->second + ")");
            }
        }
        p.queues = nworkers;
        if (c.integer(ps, path, "queues", p.queues, 1, 128) && nworkers > 0 &&
            p.queues != nworkers) {
            c.error(ps["queues"], path + ".queues",
                    std::to_string(p.queues) + " queues but " + std::to_string(nworkers) +
                        " worker lcores: each worker polls one RX queue of every port");
        }
        c.integer(ps, path, "rx_desc", p.rx_desc, 64, 32768);
        c.integer(ps, path, "tx_desc", p.tx_desc, 64, 32768);
        c.integer(ps, path, "mtu", p.mtu, 68, 9600);
        bool has_v6 = false;
        if (const Setting* al = c.seq(ps, path, "addresses")) {
            for (auto& [text, s] : c.strings(*al, path + ".addresses")) {
                const std::string ap = path + ".addresses[" + std::to_string(s->getIndex()) + "]";
                auto pr = net::prefix::parse(text);
                if (!pr) {
                    c.error(*s, ap, pr.err().message);
                    continue;
                }
                has_v6 = has_v6 || pr->addr.is_v6();
                if (auto [it, fresh] = addrs.emplace(pr->addr, ap); !fresh) {
                    c.error(*s, ap,
                            "address " + pr->addr.to_string() + " is already on " + it->second);
                    continue;
                }
                p.addresses.push_back(*pr);
            }
        }
        if (has_v6 && p.mtu < 1280) {
            c.error(ps, path + ".mtu", "IPv6 addresses need an MTU of at least 1280");
        }
        if (const Setting* sl = c.seq(ps, path, "snat")) {
            unsigned n4 = 0;
            unsigned n6 = 0;
            for (auto& [text, s] : c.strings(*sl, path + ".snat")) {
                const std::string sp = path + ".snat[" + std::to_string(s->getIndex()) + "]";
                auto a = net::ip_addr::parse(text);
                if (!a) {
                    c.error(*s, sp, "invalid SNAT address: " + a.err().message);
                    continue;
                }
                // The workers consume all TCP/UDP to an SNAT address: it cannot also be an
                // address the kernel serves (SSH, BGP, the REST port would stop working).
                if (auto [it, fresh] = addrs.emplace(*a, sp); !fresh) {
                    c.error(*s, sp,
                            "SNAT address " + a->to_string() + " is already used by " + it->second +
                                "; SNAT addresses must be used for nothing else");
                    continue;
                }
                // The SNAT addresses become host addresses of the port's kernel interface (so
                // the kernel answers ARP/ND for them): an on-link one must be a unicast host
                // address of its subnet, not the subnet's own address or its broadcast.
                if (const std::string what = special_on_subnet(p, *a); !what.empty()) {
                    c.error(*s, sp, "SNAT address " + a->to_string() + " is " + what);
                    continue;
                }
                if (++(a->is_v4() ? n4 : n6) > snat_per_family) {
                    c.error(*s, sp,
                            "more than " + std::to_string(snat_per_family) + " IPv" +
                                (a->is_v4() ? "4" : "6") + " SNAT addresses on one port");
                    continue;
                }
                p.snat.push_back(*a);
            }
        }
        cfg.ports.push_back(std::move(p));
    }
}

void check_routes(checker& c, const Setting& root, appliance_config& cfg)
{
    const Setting* list = c.seq(root, "", "routes");
    if (list == nullptr) {
        return;
    }
    for (int i = 0; i < list->getLength(); ++i) {
        const Setting& rs = (*list)[i];
        const std::string path = "routes[" + std::to_string(i) + "]";
        if (!rs.isGroup()) {
            c.error(rs, path, "must be a group { prefix = ...; via = ...; port = ...; }");
            continue;
        }
        c.check_keys(rs, path, {"prefix", "via", "port"});
        route_conf r;
        bool good = true;
        std::string text;
        if (c.string(rs, path, "prefix", text, true)) {
            auto p = net::prefix::parse(text);
            if (!p) {
                c.error(rs["prefix"], path + ".prefix", p.err().message);
                good = false;
            } else if (p->network() != *p) {
                c.error(rs["prefix"], path + ".prefix",
                        "\"" + text + "\" has host bits set; did you mean \"" +
                            p->network().to_string() + "\"?");
                good = false;
            } else {
                r.prefix = *p;
            }
        } else {
            good = false;
        }
        const port_conf* port = nullptr;
        if (c.string(rs, path, "port", r.port, true)) {
            port = cfg.find_port(r.port);
            if (port == nullptr) {
                c.error(rs["port"], path + ".port", "no port named \"" + r.port + "\"");
                good = false;
            }
        } else {
            good = false;
        }
        if (c.string(rs, path, "via", text)) {
            auto a = net::ip_addr::parse(text);
            if (!a) {
                c.error(rs["via"], path + ".via", a.err().message);
                good = false;
            } else {
                r.via = *a;
                if (good && r.via.family != r.prefix.addr.family) {
                    c.error(rs["via"], path + ".via",
                            "gateway " + r.via.to_string() + " is IPv" +
                                std::to_string(r.via.family) + " but the prefix is IPv" +
                                std::to_string(r.prefix.addr.family));
                } else if (good && port != nullptr &&
                           std::none_of(
                               port->addresses.begin(), port->addresses.end(),
                               [&](const net::prefix& pa) { return pa.contains(r.via); })) {
                    c.error(rs["via"], path + ".via",
                            "gateway " + r.via.to_string() + " is not on any subnet of port \"" +
                                port->name + "\"");
                }
            }
        }
        if (good) {
            cfg.routes.push_back(r);
        }
    }
}

void check_misc(checker& c, const Setting& root, appliance_config& cfg,
                const std::filesystem::path& dir)
{
    if (const Setting* g = c.group(root, "", "exception")) {
        c.check_keys(*g, "exception", {"kind", "vhost_path"});
        std::string kind;
        if (c.string(*g, "exception", "kind", kind)) {
            if (kind == "tap") {
                cfg.exception.kind = exception_kind::tap;
            } else if (kind == "virtio-user") {
                cfg.exception.kind = exception_kind::virtio_user;
            } else {
                c.error((*g)["kind"], "exception.kind",
                        "\"" + kind + "\" is not one of \"tap\", \"virtio-user\"");
            }
        }
        c.string(*g, "exception", "vhost_path", cfg.exception.vhost_path);
    }
    if (const Setting* g = c.group(root, "", "conntrack")) {
        c.check_keys(*g, "conntrack", {"capacity", "timeouts"});
        c.integer(*g, "conntrack", "capacity", cfg.conntrack.capacity, 1024, 1ll << 28);
        if (const Setting* t = c.group(*g, "conntrack", "timeouts")) {
            const std::string p = "conntrack.timeouts";
            c.check_keys(*t, p,
                         {"tcp_syn", "tcp_established", "tcp_fin", "tcp_closed", "udp", "icmp"});
            auto& to = cfg.conntrack.timeouts;
            constexpr long long week = 7 * 86400;
            c.integer(*t, p, "tcp_syn", to.tcp_syn, 1, week);
            c.integer(*t, p, "tcp_established", to.tcp_established, 1, week);
            c.integer(*t, p, "tcp_fin", to.tcp_fin, 1, week);
            c.integer(*t, p, "tcp_closed", to.tcp_closed, 1, week);
            c.integer(*t, p, "udp", to.udp, 1, week);
            c.integer(*t, p, "icmp", to.icmp, 1, week);
        }
    }
    if (const Setting* g = c.group(root, "", "mempool")) {
        c.check_keys(*g, "mempool", {"mbufs"});
        c.integer(*g, "mempool", "mbufs", cfg.mempool.mbufs, 0, 1ll << 26);
    }
    if (const Setting* g = c.group(root, "", "l4")) {
        c.check_keys(*g, "l4", {"forwarding", "gue_port", "encap_ttl", "flow_steering"});
        std::string fwd;
        if (c.string(*g, "l4", "forwarding", fwd)) {
            if (fwd == "fullnat" || fwd == "ipip" || fwd == "gue") {
                cfg.l4.forwarding = fwd;
            } else {
                c.error((*g)["forwarding"], "l4.forwarding",
                        "\"" + fwd + "\" is not one of \"fullnat\", \"ipip\", \"gue\"");
            }
        }
        c.integer(*g, "l4", "gue_port", cfg.l4.gue_port, 1, 65535);
        c.integer(*g, "l4", "encap_ttl", cfg.l4.encap_ttl, 1, 255);
        std::string steering;
        if (c.string(*g, "l4", "flow_steering", steering)) {
            if (steering == "auto") {
                cfg.l4.flow_steering = flow_steering_mode::automatic;
            } else if (steering == "off") {
                cfg.l4.flow_steering = flow_steering_mode::off;
            } else {
                c.error((*g)["flow_steering"], "l4.flow_steering",
                        "\"" + steering + "\" is not one of \"auto\", \"off\"");
            }
        }
    }
    if (const Setting* g = c.group(root, "", "l7")) {
        c.check_keys(*g, "l7", {"access_log", "trusted_sources", "max_connections"});
        c.string(*g, "l7", "access_log", cfg.l7.access_log);
        if (!cfg.l7.access_log.empty() && cfg.l7.access_log != "-") {
            std::filesystem::path fp(cfg.l7.access_log);
            cfg.l7.access_log =
                fp.is_absolute() ? cfg.l7.access_log : (dir / fp).lexically_normal().string();
        }
        if (const Setting* ts = c.seq(*g, "l7", "trusted_sources")) {
            for (auto& [t, st] : c.strings(*ts, "l7.trusted_sources")) {
                const std::string path =
                    "l7.trusted_sources[" + std::to_string(st->getIndex()) + "]";
                auto p = net::prefix::parse(t);
                if (!p) {
                    c.error(*st, path, p.err().message);
                } else {
                    cfg.l7.trusted_sources.push_back(p->network());
                }
            }
        }
        c.integer(*g, "l7", "max_connections", cfg.l7.max_connections, 1, 10000000);
    }
    if (const Setting* g = c.group(root, "", "api")) {
        c.check_keys(*g, "api", {"listen", "token_file"});
        if (c.string(*g, "api", "listen", cfg.api.listen)) {
            auto hp = parse_host_port(cfg.api.listen);
            if (!hp) {
                c.error((*g)["listen"], "api.listen", hp.err().message);
            } else {
                cfg.api.address = hp->first;
                cfg.api.port = hp->second;
            }
        }
        c.string(*g, "api", "token_file", cfg.api.token_file);
    }
    if (!cfg.api.address.is_set()) {
        cfg.api.address = net::ip_addr::v4(0x7f000001);
    }
    if (c.string(root, "", "state_dir", cfg.state_dir)) {
        if (cfg.state_dir.empty() || cfg.state_dir.front() != '/') {
            c.error(root["state_dir"], "state_dir",
                    "\"" + cfg.state_dir + "\" must be an absolute path");
        }
    }
    if (const Setting* g = c.group(root, "", "mesh")) {
        c.check_keys(*g, "mesh", {"files", "cluster_domain"});
        if (const Setting* fl = c.seq(*g, "mesh", "files")) {
            for (auto& [f, s] : c.strings(*fl, "mesh.files")) {
                if (f.empty()) {
                    c.error(*s, "mesh.files[" + std::to_string(s->getIndex()) + "]",
                            "must not be empty");
                    continue;
                }
                std::filesystem::path fp(f);
                cfg.mesh.files.push_back(fp.is_absolute() ? f
                                                          : (dir / fp).lexically_normal().string());
            }
        }
        if (c.string(*g, "mesh", "cluster_domain", cfg.mesh.cluster_domain) &&
            !valid_dns_name(cfg.mesh.cluster_domain)) {
            c.error((*g)["cluster_domain"], "mesh.cluster_domain",
                    "\"" + cfg.mesh.cluster_domain + "\" is not a DNS name");
        }
    }
}

load_result check(libconfig::Config& lc, const std::string& name)
{
    load_result out;
    appliance_config cfg;
    cfg.path = name;
    checker c(name, out.errors);
    const Setting& root = lc.getRoot();
    c.check_keys(root, "",
                 {"node", "eal", "lcores", "ports", "routes", "exception", "conntrack", "mempool",
                  "l4", "l7", "api", "state_dir", "mesh"});
    check_node(c, root, cfg);

    std::optional<eal_lcores> eal;
    const Setting* eal_setting = nullptr;
    if (const Setting* g = c.group(root, "", "eal")) {
        c.check_keys(*g, "eal", {"args"});
        if (const Setting* a = c.seq(*g, "eal", "args")) {
            eal_setting = a;
            for (auto& [s, _] : c.strings(*a, "eal.args")) {
                cfg.eal_args.push_back(s);
            }
            auto parsed = parse_eal_lcores(cfg.eal_args);
            if (!parsed) {
                c.error(*a, "eal.args", parsed.err().message);
            } else {
                eal = *parsed;
            }
        }
    }
    check_lcores(c, root, cfg, eal, eal_setting);
    check_ports(c, root, cfg);
    check_routes(c, root, cfg);
    check_misc(c, root, cfg, std::filesystem::path(name).parent_path());
    if (out.errors.empty()) {
        out.config = std::move(cfg);
    }
    return out;
}

load_result from_parse_error(const libconfig::ParseException& e, const std::string& name)
{
    load_result out;
    out.errors.push_back(diagnostic{name, static_cast<unsigned>(e.getLine()), "",
                                    std::string("syntax error: ") + e.getError()});
    return out;
}

} // namespace

bool port_conf::is_pci() const
{
    // DDDD:BB:DD.F or BB:DD.F, hex digits.
    auto hex = [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)) != 0; };
    auto match = [&](std::string_view s, std::string_view shape) {
        if (s.size() != shape.size()) {
            return false;
        }
        for (size_t i = 0; i < s.size(); ++i) {
            if (shape[i] == 'h' ? !hex(s[i]) : s[i] != shape[i]) {
                return false;
            }
        }
        return true;
    };
    return match(device, "hhhh:hh:hh.h") || match(device, "hh:hh.h");
}

const port_conf* appliance_config::find_port(std::string_view name) const
{
    for (const auto& p : ports) {
        if (p.name == name) {
            return &p;
        }
    }
    return nullptr;
}

std::string diagnostic::to_string() const
{
    std::string s = file + ":" + std::to_string(line) + ": ";
    if (!setting.empty()) {
        s += setting + ": ";
    }
    return s + message;
}

load_result load(const std::string& path)
{
    std::ifstream in(path);
    if (!in) {
        load_result out;
        out.errors.push_back(diagnostic{path, 0, "", "cannot read the file"});
        return out;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return parse(ss.str(), path);
}

load_result parse(const std::string& text, const std::string& name)
{
    libconfig::Config lc;
    try {
        lc.readString(text);
    } catch (const libconfig::ParseException& e) {
        return from_parse_error(e, name);
    }
    try {
        return check(lc, name);
    } catch (const libconfig::ConfigException& e) {
        // The checker tests types before converting; this is a bug, not a user error.
        load_result out;
        out.errors.push_back(diagnostic{name, 0, "", std::string("internal: ") + e.what()});
        return out;
    }
}

} // namespace sluice::config
