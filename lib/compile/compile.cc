// compile(): the passes in order, then listeners, locality plans, Maglev tables and the final
// sort of clusters by name.
#include "sluice/compile/compile.hh"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "detail.hh"

namespace sluice::compile {

namespace detail {

namespace {

snapshot::listener_kind kind_of(snapshot::protocol p)
{
    using P = snapshot::protocol;
    switch (p) {
    case P::http:
    case P::http2:
    case P::grpc:
    case P::grpc_web:
        return snapshot::listener_kind::http;
    case P::https:
    case P::tls:
        return snapshot::listener_kind::tls_passthrough;
    default:
        return snapshot::listener_kind::tcp;
    }
}

void remap(uint32_t& idx, const std::vector<uint32_t>& to)
{
    if (idx != snapshot::no_index) {
        idx = to[idx];
    }
}

void remap(snapshot::weighted_destination& d, const std::vector<uint32_t>& to)
{
    remap(d.cluster, to);
    remap(d.fallback_cluster, to);
    for (auto& [port, c] : d.cluster_by_port) {
        remap(c, to);
    }
}

} // namespace

void build_listeners(state& s)
{
    std::map<std::pair<std::string, uint32_t>, std::vector<uint32_t>> by_bind;
    for (uint32_t i = 0; i < s.snap.servers.size(); ++i) {
        by_bind[{s.snap.servers[i].bind, s.snap.servers[i].port}].push_back(i);
    }
    for (const auto& [k, servers] : by_bind) {
        snapshot::listener l;
        l.origin = snapshot::listener::origin_t::gateway;
        l.address = k.first;
        l.port = k.second;
        l.proto = s.snap.servers[servers.front()].proto;
        l.kind = s.snap.servers[servers.front()].kind;
        l.servers = servers;
        s.snap.listeners.push_back(std::move(l));
    }
    for (const auto& [host, si] : s.services) {
        for (const std::string& vip : si.vips) {
            for (const svc_port& p : si.ports) {
                snapshot::listener l;
                l.origin = snapshot::listener::origin_t::service_vip;
                l.address = vip;
                l.port = p.number;
                l.proto = p.proto;
                l.kind = kind_of(p.proto);
                l.host = host;
                l.forwarding = si.forwarding;
                const auto it = s.cluster_by_name.find(snapshot::cluster_name(p.number, "", host));
                l.cluster = it == s.cluster_by_name.end() ? snapshot::no_index : it->second;
                if (l.kind == snapshot::listener_kind::tcp && l.cluster != snapshot::no_index) {
                    s.needs_maglev.insert(l.cluster); // the L4 fast path hashes into it
                }
                s.snap.listeners.push_back(std::move(l));
            }
        }
    }
    std::sort(s.snap.listeners.begin(), s.snap.listeners.end(),
              [](const snapshot::listener& a, const snapshot::listener& b) {
                  return std::tie(a.origin, a.address, a.port, a.host) <
                         std::tie(b.origin, b.address, b.port, b.host);
              });
}

result<void> finalize_clusters(state& s)
{
    for (uint32_t ci = 0; ci < s.snap.clusters.size(); ++ci) {
        snapshot::cluster& c = s.snap.clusters[ci];
        if (c.missing) {
            continue;
        }
        std::vector<locality::endpoint> eps;
        eps.reserve(c.endpoints.size());
        for (const snapshot::endpoint& e : c.endpoints) {
            locality::endpoint le;
            le.locality = e.locality;
            le.network = e.network;
            le.node_name = e.node_name;
            le.cluster = e.k8s_cluster;
            le.endpoint_labels = e.endpoint_labels;
            le.weight = e.ready ? e.weight : 0; // not ready: in no level
            eps.push_back(std::move(le));
        }
        auto plan = locality::build_plan(s.node, eps, c.locality_policy);
        if (!plan.ok()) {
            return err(
                plan.err().message,
                (c.policy.source.empty() ? c.name : c.policy.source) +
                    ": spec.trafficPolicy.loadBalancer.localityLbSetting: " + plan.err().where);
        }
        c.plan = std::move(plan).value();

        const bool hash = c.policy.lb.hash.has_value();
        if (!hash && !s.opts.maglev_all_clusters && s.needs_maglev.count(ci) == 0) {
            continue;
        }
        const uint32_t size =
            hash && c.policy.lb.hash->algorithm == snapshot::hash_policy::algorithm_t::maglev
                ? c.policy.lb.hash->maglev_table_size
                : maglev::default_table_size;
        auto build = [&](const std::vector<uint32_t>& members) -> result<maglev::table> {
            std::vector<maglev::endpoint> me;
            me.reserve(members.size());
            for (const uint32_t i : members) {
                me.push_back({c.endpoints[i].id, c.endpoints[i].ready ? c.endpoints[i].weight : 0});
            }
            auto t = maglev::table::build(me, size);
            if (!t.ok()) {
                return err(t.err().message,
                           (c.policy.source.empty() ? c.name : c.policy.source) +
                               ": spec.trafficPolicy.loadBalancer.consistentHash.maglev");
            }
            return t;
        };
        for (const locality::level& lv : c.plan.levels) {
            snapshot::level_tables lt;
            auto all = build(lv.endpoints);
            if (!all.ok()) {
                return all.err();
            }
            lt.all = std::move(all).value();
            if (c.plan.locality_weighted) {
                for (const locality::locality_group& g : lv.groups) {
                    auto gt = build(g.endpoints);
                    if (!gt.ok()) {
                        return gt.err();
                    }
                    lt.groups.push_back(std::move(gt).value());
                }
            }
            c.maglev.push_back(std::move(lt));
        }
    }

    // Sort by name and renumber every reference.
    std::vector<uint32_t> order(s.snap.clusters.size());
    std::iota(order.begin(), order.end(), 0U);
    std::sort(order.begin(), order.end(), [&s](uint32_t a, uint32_t b) {
        return s.snap.clusters[a].name < s.snap.clusters[b].name;
    });
    std::vector<uint32_t> to(order.size());
    std::vector<snapshot::cluster> sorted;
    sorted.reserve(order.size());
    for (uint32_t i = 0; i < order.size(); ++i) {
        to[order[i]] = i;
        sorted.push_back(std::move(s.snap.clusters[order[i]]));
    }
    s.snap.clusters = std::move(sorted);
    for (snapshot::route_table& t : s.snap.http) {
        for (snapshot::route_action& a : t.actions) {
            for (snapshot::weighted_destination& d : a.destinations) {
                remap(d, to);
            }
            for (snapshot::mirror_action& m : a.mirrors) {
                remap(m.dest, to);
            }
        }
    }
    for (auto* tables : {&s.snap.tcp, &s.snap.tls}) {
        for (snapshot::l4_table& t : *tables) {
            for (snapshot::l4_route& r : t.routes) {
                for (snapshot::weighted_destination& d : r.destinations) {
                    remap(d, to);
                }
            }
        }
    }
    for (snapshot::listener& l : s.snap.listeners) {
        remap(l.cluster, to);
    }
    return ok();
}

} // namespace detail

result<snapshot::snapshot> compile(const model::mesh& mesh, const node_locality& node,
                                   const options& opts)
{
    detail::state s{mesh, node, opts, {}, {}, {}, {}, {}, {}, {}, {}};
    if (auto r = detail::build_registry(s); !r.ok()) {
        return r.err();
    }
    if (auto r = detail::build_service_clusters(s); !r.ok()) {
        return r.err();
    }
    if (auto r = detail::build_routes(s); !r.ok()) {
        return r.err();
    }
    detail::build_listeners(s);
    if (auto r = detail::finalize_clusters(s); !r.ok()) {
        return r.err();
    }
    return std::move(s.snap);
}

} // namespace sluice::compile
