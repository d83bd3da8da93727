#pragma once
// Internal to lib/compile: the state compile() threads through its passes.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "sluice/compile/compile.hh"

namespace sluice::compile::detail {

struct svc_port {
    uint32_t number = 0;
    std::string name;
    std::string protocol; ///< as written (upper-cased Istio names, or k8s protocol/appProtocol)
    snapshot::protocol proto = snapshot::protocol::tcp;
};

/// An endpoint before it joins a cluster: its port per service port number.
struct src_endpoint {
    snapshot::endpoint ep;
    std::map<uint32_t, uint32_t> port_by_service_port;
};

/// One host of the registry: the union of the Service and ServiceEntries defining it.
struct service_info {
    std::string host;
    std::vector<svc_port> ports; ///< by number, unique
    std::vector<src_endpoint> endpoints;
    std::vector<std::string> vips;
    bool dns = false;
    bool itp_local = false;
    locality::mode mode = locality::mode::prefer_network;
    std::string mode_source = "default (PreferNetwork toward backends)";
    int mode_rank = 0;      ///< 3 Service field, 2 Service annotation, 1 ServiceEntry annotation
    std::string forwarding; ///< sluice.io/forwarding (Service over ServiceEntry); empty: default
    /// sluice.io/health-check as written (Service over ServiceEntry); unset: no active checks.
    std::optional<std::string> health_check;
    std::string health_check_source; ///< "Service ns/name" the annotation came from
};

struct state {
    const model::mesh& mesh;
    const node_locality& node;
    const options& opts;

    std::map<std::string, service_info> services;
    std::vector<const model::destination_rule*> rules; ///< applicable, by namespace/name
    /// rule_for() indexes: the first applicable rule per exact host, and the wildcard rules
    /// (so finding a host's rule is not a scan of every rule: compile stays near-linear).
    std::unordered_map<std::string, const model::destination_rule*> exact_rules;
    std::vector<const model::destination_rule*> wildcard_rules;
    snapshot::snapshot snap;
    std::map<std::string, uint32_t> cluster_by_name; ///< index into snap.clusters (unsorted)
    std::set<uint32_t> needs_maglev;
    /// Per cluster (unsorted index): the DestinationRule that applies, or null.
    std::vector<const model::destination_rule*> cluster_rule;

    /// The DestinationRule for `host` (exact first, then the most specific wildcard).
    [[nodiscard]] const model::destination_rule* rule_for(const std::string& host) const;
    /// The cluster host x subset x port, created as a missing marker when nothing defines it.
    uint32_t ensure_cluster(const std::string& host, const std::string& subset, uint32_t port);
    void note(std::string n) { snap.notes.push_back(std::move(n)); }
};

snapshot::protocol parse_protocol(const std::string& p);

result<void> build_registry(state& s);
result<void> build_service_clusters(state& s);
result<void> build_routes(state& s);
void build_listeners(state& s);
result<void> finalize_clusters(state& s);

} // namespace sluice::compile::detail
