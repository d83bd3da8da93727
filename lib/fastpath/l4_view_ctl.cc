// Control side of the L4 view: build_l4_view() and the view's lookups. The builder allocates
// and builds Maglev tables; the lookups (find, choose) are hot-path safe.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>

#include <rte_byteorder.h>
#include <rte_hash_crc.h>

#include "sluice/base/hash.hh"
#include "sluice/base/time.hh"
#include "sluice/fastpath/l4_view.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::fastpath {
namespace {

constexpr uint64_t dest_salt = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t level_salt = 0xc2b2ae3d27d4eb4fULL;

uint64_t mix(uint64_t h, uint64_t v) noexcept
{
    return fmix64(h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

uint64_t mix_str(uint64_t h, std::string_view s) noexcept
{
    return mix(h, maglev::stable_key(s));
}

uint64_t load64(const uint8_t* p) noexcept
{
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

// The listener index's hash: CRC32-C (one instruction per word). It only places listeners in
// this process's table, so it need not be stable across versions or appliances.
uint64_t key_hash(uint8_t family, const uint8_t* addr, uint8_t proto, uint16_t port) noexcept
{
    const uint32_t k = (uint32_t{family} << 24) | (uint32_t{proto} << 16) | port;
    if (family == 4) {
        uint32_t a;
        std::memcpy(&a, addr, 4);
        return rte_hash_crc_4byte(a, k);
    }
    return rte_hash_crc_8byte(load64(addr + 8), rte_hash_crc_8byte(load64(addr), k));
}

} // namespace

result<forwarding> parse_forwarding(std::string_view s)
{
    if (s == "fullnat") {
        return forwarding::fullnat;
    }
    if (s == "ipip") {
        return forwarding::ipip;
    }
    if (s == "gue") {
        return forwarding::gue;
    }
    return err("unknown forwarding \"" + std::string(s) + "\"; expected fullnat, ipip or gue");
}

std::string_view forwarding_name(forwarding f) noexcept
{
    switch (f) {
    case forwarding::fullnat:
        return "fullnat";
    case forwarding::ipip:
        return "ipip";
    case forwarding::gue:
        return "gue";
    }
    return "?";
}

uint64_t flow_hash(uint8_t family, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                   uint16_t dport, uint8_t proto) noexcept
{
    uint64_t h = fmix64((uint64_t{sport} << 32) | (uint64_t{dport} << 16) | proto);
    if (family == 4) {
        uint32_t s;
        uint32_t d;
        std::memcpy(&s, src, 4);
        std::memcpy(&d, dst, 4);
        return fmix64(h ^ ((uint64_t{s} << 32) | d));
    }
    h = fmix64(h ^ load64(src));
    h = fmix64(h ^ load64(src + 8));
    h = fmix64(h ^ load64(dst));
    return fmix64(h ^ load64(dst + 8));
}

uint32_t l4_cluster::choose(uint64_t h) const noexcept
{
    const locality::choice ch = selector.choose(fmix64(h ^ level_salt));
    if (!ch.ok || ch.level >= levels.size()) {
        return l4_none;
    }
    const l4_level& lv = levels[ch.level];
    const l4_ring* r = nullptr;
    if (ch.group != locality::all_groups && ch.group < lv.groups_all.size()) {
        const auto& healthy = lv.groups_healthy[ch.group];
        r = ch.panic || !healthy ? lv.groups_all[ch.group].get() : healthy.get();
    } else {
        r = ch.panic || !lv.healthy ? lv.all.get() : lv.healthy.get();
    }
    return r == nullptr ? l4_none : r->pick(h);
}

const l4_service* l4_view::find(uint8_t family, const uint8_t* addr, uint8_t proto,
                                uint16_t port) const noexcept
{
    if (_slots.empty()) {
        return nullptr;
    }
    for (uint64_t i = key_hash(family, addr, proto, port) & _mask;; i = (i + 1) & _mask) {
        const uint32_t s = _slots[i];
        if (s == 0) {
            return nullptr;
        }
        const l4_service& v = _services[s - 1];
        if (v.port == port && v.proto == proto && v.family == family &&
            (family == 4 ? std::memcmp(v.addr.data(), addr, 4) == 0
                         : std::memcmp(v.addr.data(), addr, 16) == 0)) {
            return &v; // (constant sizes: the compares are inlined, no libc call)
        }
    }
}

const l4_endpoint* l4_view::choose(const l4_service& s, const uint8_t* dst, uint64_t hash,
                                   const l4_cluster** cluster) const noexcept
{
    *cluster = nullptr;
    for (const l4_route& r : s.routes) {
        if (!r.subnets.empty()) {
            net::ip_addr a;
            a.family = s.family;
            std::memcpy(a.bytes.data(), dst, s.family == 4 ? 4 : 16);
            bool in = false;
            for (const net::prefix& p : r.subnets) {
                in = in || p.contains(a);
            }
            if (!in) {
                continue;
            }
        }
        if (r.total == 0) {
            return nullptr;
        }
        const auto x = static_cast<uint32_t>(fmix64(hash ^ dest_salt) % r.total);
        uint32_t ci = l4_none;
        for (const l4_dest& d : r.dests) {
            if (x < d.cumulative) {
                ci = d.cluster;
                break;
            }
        }
        if (ci == l4_none) {
            return nullptr;
        }
        const l4_cluster& c = *_clusters[ci];
        *cluster = &c;
        if (c.missing) {
            return nullptr;
        }
        const uint32_t e = c.choose(hash);
        return e == l4_none ? nullptr : &c.endpoints[e];
    }
    return nullptr;
}

bool l4_view::has_vip_address(uint8_t family, const uint8_t* addr) const noexcept
{
    std::array<uint8_t, 17> k{};
    k[0] = family;
    std::memcpy(k.data() + 1, addr, family == 4 ? 4 : 16);
    return std::binary_search(_vip_addrs.begin(), _vip_addrs.end(), k);
}

const l4_cluster* l4_view::find_cluster(std::string_view name) const noexcept
{
    const auto it = std::lower_bound(
        _clusters.begin(), _clusters.end(), name,
        [](const std::shared_ptr<const l4_cluster>& c, std::string_view n) { return c->name < n; });
    return it != _clusters.end() && (*it)->name == name ? it->get() : nullptr;
}

// ------------------------------------------------------------------------ the builder

struct l4_view_builder {
    const l4_view_input& in;
    const snapshot::snapshot& snap;
    l4_view& out;
    std::map<uint32_t, uint32_t> cluster_of; ///< snapshot cluster -> view cluster

    uint32_t use_cluster(uint32_t sc)
    {
        if (sc == snapshot::no_index || sc >= snap.clusters.size()) {
            return l4_none;
        }
        const auto [it, fresh] = cluster_of.emplace(sc, static_cast<uint32_t>(cluster_of.size()));
        return it->second;
    }

    static result<std::shared_ptr<const l4_ring>> ring(const snapshot::cluster& c,
                                                       const std::vector<uint32_t>& members,
                                                       const std::vector<uint32_t>& weights,
                                                       const std::vector<uint8_t>* healthy,
                                                       const std::vector<bool>& usable)
    {
        std::vector<maglev::endpoint> me;
        std::vector<uint32_t> idx;
        for (size_t k = 0; k < members.size(); ++k) {
            const uint32_t i = members[k];
            if (!usable[i] || (healthy != nullptr && (*healthy)[i] == 0)) {
                continue;
            }
            me.push_back({c.endpoints[i].id, k < weights.size() ? weights[k] : 1});
            idx.push_back(i);
        }
        const uint32_t size = c.policy.lb.hash && c.policy.lb.hash->algorithm ==
                                                      snapshot::hash_policy::algorithm_t::maglev
                                  ? c.policy.lb.hash->maglev_table_size
                                  : maglev::default_table_size;
        auto t = maglev::table::build(me, size);
        if (!t.ok()) {
            return err(t.err().message, c.name);
        }
        auto r = std::make_shared<l4_ring>();
        r->table = std::move(*t);
        r->endpoint_of_rank.resize(r->table.endpoint_count());
        for (uint32_t rank = 0; rank < r->table.endpoint_count(); ++rank) {
            r->endpoint_of_rank[rank] = idx[r->table.input_index(rank)];
        }
        return std::shared_ptr<const l4_ring>(std::move(r));
    }

    result<std::shared_ptr<const l4_cluster>> build_cluster(const snapshot::cluster& c)
    {
        std::vector<uint8_t> healthy(c.endpoints.size(), 1);
        std::vector<bool> usable(c.endpoints.size(), false);
        uint64_t digest = mix_str(0, c.name);
        digest = mix(digest, c.missing ? 1 : 0);
        digest = mix(digest, c.policy.panic_threshold);
        digest = mix(digest, c.policy.outlier ? 1 : 0);
        digest = mix(digest, static_cast<uint64_t>(c.policy.tcp.connect_timeout.count()));
        digest = mix(digest, (uint64_t{c.policy.tcp.max_connections} << 16) | in.workers);
        digest = mix(digest, c.plan.levels.size());
        digest = mix(digest, c.plan.locality_weighted ? 1 : 0);
        for (size_t i = 0; i < c.endpoints.size(); ++i) {
            const snapshot::endpoint& e = c.endpoints[i];
            const bool bad = in.unhealthy && in.unhealthy(c.name, e.id);
            healthy[i] = bad ? 0 : 1;
            digest = mix(digest, e.id);
            digest = mix_str(digest, e.address);
            digest = mix(digest, (uint64_t{e.port} << 33) | (uint64_t{e.weight} << 2) |
                                     (e.ready ? 2u : 0u) | (bad ? 1u : 0u));
            digest = mix(digest, i < c.plan.level_of.size() ? c.plan.level_of[i] : l4_none);
        }
        if (c.policy.lb.hash) {
            digest = mix(digest, (uint64_t{c.policy.lb.hash->maglev_table_size} << 8) |
                                     static_cast<uint64_t>(c.policy.lb.hash->algorithm));
        }
        for (const locality::level& lv : c.plan.levels) {
            digest = mix(digest, lv.groups.size());
            for (const locality::locality_group& g : lv.groups) {
                digest = mix(digest, g.weight);
                for (const uint32_t i : g.endpoints) {
                    digest = mix(digest, i);
                }
            }
        }
        if (in.previous != nullptr) {
            if (const l4_cluster* p = in.previous->find_cluster(c.name);
                p != nullptr && p->digest == digest) {
                for (const auto& sp : in.previous->_clusters) {
                    if (sp.get() == p) {
                        return sp;
                    }
                }
            }
        }

        auto lc = std::make_shared<l4_cluster>();
        lc->name = c.name;
        lc->digest = digest;
        lc->missing = c.missing;
        lc->outlier_detection = c.policy.outlier.has_value();
        lc->connect_timeout_ticks =
            us_to_tsc(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                c.policy.tcp.connect_timeout)
                                                .count()),
                      in.tsc_hz);
        if (c.policy.tcp.max_connections != UINT32_MAX && in.workers > 0) {
            lc->max_conns_per_lcore =
                std::max<uint32_t>(1, (c.policy.tcp.max_connections + in.workers - 1) / in.workers);
        }
        lc->endpoints.resize(c.endpoints.size());
        std::vector<locality::health> health(c.endpoints.size(), locality::health::healthy);
        for (size_t i = 0; i < c.endpoints.size(); ++i) {
            const snapshot::endpoint& e = c.endpoints[i];
            l4_endpoint& le = lc->endpoints[i];
            le.id = e.id;
            le.port = rte_cpu_to_be_16(static_cast<uint16_t>(e.port));
            if (auto a = net::ip_addr::parse(e.address); a.ok()) {
                le.family = a->family;
                le.addr = a->bytes;
                usable[i] = true; // DNS-named endpoints have no address for the L4 path
            }
            if (healthy[i] == 0 || !usable[i]) {
                health[i] = locality::health::unhealthy;
                healthy[i] = 0;
                lc->unhealthy += usable[i] ? 1 : 0;
            }
        }
        if (c.missing) {
            return std::shared_ptr<const l4_cluster>(std::move(lc));
        }
        auto sel = locality::selector::compute(c.plan, health, c.policy.panic_threshold);
        if (!sel.ok()) {
            return err(sel.err().message, c.name);
        }
        lc->selector = std::move(*sel);
        for (const locality::level& lv : c.plan.levels) {
            l4_level out_level;
            bool all_healthy = true;
            for (const uint32_t i : lv.endpoints) {
                all_healthy = all_healthy && healthy[i] != 0;
            }
            auto all = ring(c, lv.endpoints, lv.weights, nullptr, usable);
            if (!all.ok()) {
                return all.err();
            }
            out_level.all = std::move(*all);
            if (!all_healthy) {
                auto h = ring(c, lv.endpoints, lv.weights, &healthy, usable);
                if (!h.ok()) {
                    return h.err();
                }
                out_level.healthy = std::move(*h);
            }
            if (c.plan.locality_weighted) {
                for (const locality::locality_group& g : lv.groups) {
                    std::vector<uint32_t> w;
                    for (const uint32_t i : g.endpoints) {
                        w.push_back(c.endpoints[i].weight);
                    }
                    auto ga = ring(c, g.endpoints, w, nullptr, usable);
                    if (!ga.ok()) {
                        return ga.err();
                    }
                    out_level.groups_all.push_back(std::move(*ga));
                    if (all_healthy) {
                        out_level.groups_healthy.emplace_back();
                        continue;
                    }
                    auto gh = ring(c, g.endpoints, w, &healthy, usable);
                    if (!gh.ok()) {
                        return gh.err();
                    }
                    out_level.groups_healthy.push_back(std::move(*gh));
                }
            }
            lc->levels.push_back(std::move(out_level));
        }
        return std::shared_ptr<const l4_cluster>(std::move(lc));
    }

    l4_route route_of(const std::vector<snapshot::weighted_destination>& dests,
                      uint32_t listener_port)
    {
        l4_route r;
        for (const snapshot::weighted_destination& d : dests) {
            if (d.weight == 0) {
                continue;
            }
            r.total += d.weight;
            r.dests.push_back(
                {use_cluster(snapshot::destination_cluster(d, listener_port)), r.total});
        }
        return r;
    }

    void add_service(l4_service s) { out._services.push_back(std::move(s)); }

    result<void> run()
    {
        for (const snapshot::listener& l : snap.listeners) {
            if (l.kind != snapshot::listener_kind::tcp || l.port == 0 || l.port > 65535) {
                continue;
            }
            const uint8_t proto = l.proto == snapshot::protocol::udp ? 17 : 6;
            if (l.origin == snapshot::listener::origin_t::service_vip) {
                auto a = net::ip_addr::parse(l.address);
                if (!a.ok()) {
                    continue; // a CIDR or a name: not a VIP the fast path can own
                }
                l4_service s;
                s.addr = a->bytes;
                s.family = a->family;
                s.port = rte_cpu_to_be_16(static_cast<uint16_t>(l.port));
                s.proto = proto;
                s.fwd = in.default_forwarding;
                if (!l.forwarding.empty()) {
                    auto f = parse_forwarding(l.forwarding);
                    if (!f.ok()) {
                        return err(f.err().message, "VIP " + l.address + ":" +
                                                        std::to_string(l.port) + " (" + l.host +
                                                        ")");
                    }
                    s.fwd = *f;
                }
                s.name = "VIP " + l.host + ":" + std::to_string(l.port);
                l4_route r;
                r.total = 1;
                r.dests.push_back({use_cluster(l.cluster), 1});
                s.routes.push_back(std::move(r));
                add_service(std::move(s));
                continue;
            }
            if (l.servers.empty() || proto != 6) {
                continue;
            }
            const snapshot::gateway_server& gs = snap.servers[l.servers.front()];
            const snapshot::l4_table* t = snap.find_tcp(gs.gateway, l.port);
            std::vector<l4_route> routes;
            if (t != nullptr) {
                for (const snapshot::l4_route& tr : t->routes) {
                    if (tr.port != 0 && tr.port != l.port) {
                        continue;
                    }
                    l4_route r = route_of(tr.destinations, l.port);
                    r.subnets = tr.destination_subnets;
                    routes.push_back(std::move(r));
                }
            }
            std::vector<net::ip_addr> addrs;
            if (l.address.empty() || l.address == "0.0.0.0" || l.address == "::") {
                addrs = in.local_addresses;
            } else if (auto a = net::ip_addr::parse(l.address); a.ok()) {
                addrs.push_back(*a);
            }
            for (const net::ip_addr& a : addrs) {
                l4_service s;
                s.addr = a.bytes;
                s.family = a.family;
                s.port = rte_cpu_to_be_16(static_cast<uint16_t>(l.port));
                s.proto = 6;
                s.fwd = in.default_forwarding;
                s.routes = routes;
                s.name = "gateway " + gs.gateway + ":" + std::to_string(l.port);
                add_service(std::move(s));
            }
        }

        // Clusters, in name order (the snapshot's order), re-indexed.
        std::vector<uint32_t> used;
        for (const auto& [sc, vc] : cluster_of) {
            used.push_back(sc);
        }
        std::vector<uint32_t> remap(cluster_of.size());
        for (uint32_t k = 0; k < used.size(); ++k) {
            remap[cluster_of[used[k]]] = k;
            auto c = build_cluster(snap.clusters[used[k]]);
            if (!c.ok()) {
                return c.err();
            }
            out._clusters.push_back(std::move(*c));
        }
        for (l4_service& s : out._services) {
            for (l4_route& r : s.routes) {
                for (l4_dest& d : r.dests) {
                    d.cluster = d.cluster == l4_none ? l4_none : remap[d.cluster];
                }
            }
        }

        for (const l4_service& sv : out._services) {
            std::array<uint8_t, 17> k{};
            k[0] = sv.family;
            std::memcpy(k.data() + 1, sv.addr.data(), sv.family == 4 ? 4 : 16);
            out._vip_addrs.push_back(k);
        }
        std::sort(out._vip_addrs.begin(), out._vip_addrs.end());
        out._vip_addrs.erase(std::unique(out._vip_addrs.begin(), out._vip_addrs.end()),
                             out._vip_addrs.end());

        // The listener index: open addressing at most half full. A (VIP, port, proto) given
        // twice keeps the first (listeners are sorted, so the choice is stable).
        size_t n = 16;
        while (n < 2 * out._services.size()) {
            n <<= 1;
        }
        out._slots.assign(n, 0);
        out._mask = n - 1;
        for (uint32_t i = 0; i < out._services.size(); ++i) {
            const l4_service& s = out._services[i];
            if (out.find(s.family, s.addr.data(), s.proto, s.port) != nullptr) {
                continue;
            }
            uint64_t k = key_hash(s.family, s.addr.data(), s.proto, s.port) & out._mask;
            while (out._slots[k] != 0) {
                k = (k + 1) & out._mask;
            }
            out._slots[k] = i + 1;
        }
        return ok();
    }
};

result<std::unique_ptr<l4_view>> build_l4_view(const l4_view_input& in)
{
    static std::atomic<uint64_t> generations{0};
    auto v = std::make_unique<l4_view>();
    v->_generation = generations.fetch_add(1, std::memory_order_relaxed) + 1;
    if (in.snap == nullptr) {
        return v;
    }
    l4_view_builder b{in, *in.snap, *v, {}};
    if (auto r = b.run(); !r.ok()) {
        return r.err();
    }
    return v;
}

} // namespace sluice::fastpath
