#pragma once
// Small builders of model objects for the compile and route-match tests: the tests build the
// model in C++ (not through decode()) so they exercise compile alone.

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sluice/compile/compile.hh"
#include "sluice/snapshot/route_match.hh"

namespace sluice::testing {

using model::string_match;

inline string_match exact(std::string v)
{
    return {string_match::kind::exact, std::move(v)};
}
inline string_match prefix(std::string v)
{
    return {string_match::kind::prefix, std::move(v)};
}
inline string_match regex(std::string v)
{
    return {string_match::kind::regex, std::move(v)};
}
inline string_match present()
{
    return {string_match::kind::any, ""};
}

inline model::object_meta meta(std::string kind, std::string ns, std::string name)
{
    model::object_meta m;
    m.kind = std::move(kind);
    m.ns = std::move(ns);
    m.name = std::move(name);
    return m;
}

inline model::server server(uint32_t port, std::vector<std::string> hosts,
                            std::string protocol = "HTTP")
{
    model::server s;
    s.port.number = port;
    s.port.protocol = std::move(protocol);
    s.port.name = "p" + std::to_string(port);
    s.hosts = std::move(hosts);
    return s;
}

inline model::gateway gateway(std::string ns, std::string name, std::vector<model::server> srv)
{
    model::gateway g;
    g.meta = meta("Gateway", std::move(ns), std::move(name));
    g.servers = std::move(srv);
    return g;
}

inline model::route_destination to(std::string host, std::string subset = "",
                                   std::optional<uint32_t> port = std::nullopt,
                                   std::optional<int32_t> weight = std::nullopt)
{
    model::route_destination d;
    d.dest.host = std::move(host);
    d.dest.subset = std::move(subset);
    d.dest.port = port;
    d.weight = weight;
    return d;
}

inline model::http_route http(std::vector<model::http_match> match,
                              std::vector<model::route_destination> route, std::string name = "")
{
    model::http_route r;
    r.name = std::move(name);
    r.match = std::move(match);
    r.route = std::move(route);
    return r;
}

inline model::http_match uri(string_match m)
{
    model::http_match x;
    x.uri = std::move(m);
    return x;
}

inline model::virtual_service vs(std::string ns, std::string name, std::vector<std::string> hosts,
                                 std::vector<std::string> gateways,
                                 std::vector<model::http_route> routes)
{
    model::virtual_service v;
    v.meta = meta("VirtualService", std::move(ns), std::move(name));
    v.hosts = std::move(hosts);
    v.gateways = std::move(gateways);
    v.http = std::move(routes);
    return v;
}

/// A Kubernetes Service with named ports ({name, port}).
inline model::k8s_service service(std::string ns, std::string name,
                                  std::vector<std::pair<std::string, uint32_t>> ports)
{
    model::k8s_service s;
    s.meta = meta("Service", std::move(ns), std::move(name));
    for (auto& [n, p] : ports) {
        model::k8s_service_port sp;
        sp.name = n;
        sp.port = p;
        s.ports.push_back(sp);
    }
    return s;
}

struct slice_ep {
    std::string address;
    std::string zone;
    std::string node;
    bool ready = true;
};

inline model::endpoint_slice slice(std::string ns, std::string name, std::string svc,
                                   std::vector<slice_ep> eps,
                                   std::vector<std::pair<std::string, uint32_t>> ports,
                                   model::labels labels = {})
{
    model::endpoint_slice s;
    s.meta = meta("EndpointSlice", std::move(ns), std::move(name));
    s.meta.labels_ = std::move(labels);
    s.service_name = std::move(svc);
    for (auto& e : eps) {
        model::endpoint_slice_endpoint x;
        x.addresses = {e.address};
        x.zone = e.zone;
        x.node_name = e.node;
        x.ready = e.ready;
        s.endpoints.push_back(x);
    }
    for (auto& [n, p] : ports) {
        model::endpoint_slice_port sp;
        sp.name = n;
        sp.port = p;
        s.ports.push_back(sp);
    }
    return s;
}

inline model::workload_spec workload(std::string address, model::labels labels = {},
                                     std::string locality = "", std::string network = "")
{
    model::workload_spec w;
    w.address = std::move(address);
    w.labels_ = std::move(labels);
    w.locality = std::move(locality);
    w.network = std::move(network);
    return w;
}

inline model::service_entry service_entry(std::string ns, std::string name,
                                          std::vector<std::string> hosts,
                                          std::vector<model::service_port> ports,
                                          std::vector<model::workload_spec> endpoints = {})
{
    model::service_entry s;
    s.meta = meta("ServiceEntry", std::move(ns), std::move(name));
    s.hosts = std::move(hosts);
    s.ports = std::move(ports);
    s.endpoints = std::move(endpoints);
    s.resolution = model::service_entry::resolution_t::static_;
    s.location = model::service_entry::location_t::mesh_internal;
    return s;
}

inline model::service_port se_port(uint32_t number, std::string name, std::string protocol,
                                   uint32_t target = 0)
{
    return {number, std::move(protocol), std::move(name), target};
}

inline model::subset subset(std::string name, model::labels labels)
{
    model::subset s;
    s.name = std::move(name);
    s.match_labels = std::move(labels);
    return s;
}

inline model::destination_rule rule(std::string ns, std::string name, std::string host,
                                    std::vector<model::subset> subsets = {})
{
    model::destination_rule d;
    d.meta = meta("DestinationRule", std::move(ns), std::move(name));
    d.host = std::move(host);
    d.subsets = std::move(subsets);
    return d;
}

inline compile::node_locality appliance()
{
    compile::node_locality n;
    n.locality = {"r1", "z1", "s1"};
    n.network = "n1";
    n.node_name = "node-a";
    return n;
}

inline snapshot::snapshot must_compile(const model::mesh& m,
                                       const compile::node_locality& n = appliance(),
                                       const compile::options& o = {})
{
    auto r = compile::compile(m, n, o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    return r.ok() ? std::move(r).value() : snapshot::snapshot{};
}

/// A request with owned storage, for tests.
struct req {
    std::string authority;
    std::string path = "/";
    std::string method = "GET";
    std::string scheme = "http";
    uint32_t port = 80;
    std::string gateway = "mesh";
    std::vector<std::pair<std::string, std::string>> headers = {};

    std::vector<snapshot::header> views = {};
    snapshot::request view()
    {
        views.clear();
        for (auto& [k, v] : headers) {
            views.push_back({k, v});
        }
        snapshot::request r;
        r.authority = authority;
        r.path = path;
        r.method = method;
        r.scheme = scheme;
        r.port = port;
        r.gateway = gateway;
        r.headers = views;
        return r;
    }
};

/// The decision for `r` (its views stay valid while `r` lives).
inline snapshot::decision decide(const snapshot::snapshot& s, req& r)
{
    static thread_local snapshot::regex_scratch scratch;
    const snapshot::request v = r.view();
    return snapshot::match_route(s, v, scratch);
}

/// The cluster name the decision's destination `i` goes to, for the request's port.
inline std::string cluster_of(const snapshot::snapshot& s, const snapshot::decision& d,
                              uint32_t port, size_t i = 0)
{
    if (d.action == nullptr || i >= d.action->destinations.size()) {
        return "";
    }
    const uint32_t c = snapshot::destination_cluster(d.action->destinations[i], port);
    return c == snapshot::no_index ? "" : s.clusters[c].name;
}

} // namespace sluice::testing
