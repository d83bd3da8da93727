#pragma once
/// @file
/// `compile(model, node locality) -> snapshot` (DESIGN.md §3-4, STYLE C4): pure and
/// deterministic. Same input, whatever the order of its objects, gives an identical snapshot
/// (every container is sorted by a stable key: namespace/name, host, cluster name, endpoint
/// id). No EAL, no I/O. Control side only (config thread, sluicectl): allocates freely.
///
/// Decisions where ISTIO.md is silent (also in the report that introduced this file):
/// - Endpoints: ServiceEntry `endpoints`, WorkloadEntries a ServiceEntry's `workloadSelector`
///   picks in its namespace, and EndpointSlices (`kubernetes.io/service-name`) of a Service.
///   A host defined by both a Service and a ServiceEntry gets the union of ports and
///   endpoints. Endpoints are deduplicated by id (network|address:port), first source wins.
/// - EndpointSlices carry only `zone` and `nodeName`: the region comes from the slice label
///   topology.kubernetes.io/region, else options::k8s_region, else the appliance's region
///   (one Kubernetes cluster lives in one region); the network from the slice label
///   topology.istio.io/network, else options::k8s_network, else the appliance's network.
///   Endpoint labels are the slice's labels plus the topology labels, so DestinationRule
///   subsets select slices (pod labels are not in a slice).
/// - WorkloadEntry / ServiceEntry endpoints: `locality` and `network` fields, else the
///   topology labels; an unset network is the appliance's network (a single-network mesh).
///   Weight 0 means 1. A not-ready EndpointSlice endpoint is kept, with `ready = false`, and
///   is in no priority level and no Maglev table.
/// - Traffic distribution: Service `spec.trafficDistribution` > Service annotation
///   `networking.istio.io/traffic-distribution` > ServiceEntry annotation > the default
///   (PreferNetwork toward backends; PreferClose toward a waypoint, i.e. a Service labelled
///   gateway.istio.io/managed=istio.io-mesh-controller). An unknown value means Any.
///   Any DestinationRule for the host (not only one with localityLbSetting) replaces traffic
///   distribution with its own locality behaviour (ISTIO.md "sluice's contract", seed 000).
/// - DestinationRule choice: the exact host first, else the most specific wildcard; among
///   equals the first by namespace/name. A rule whose
///   workloadSelector does not select the appliance (options::proxy_labels) is ignored.
/// - sourceLabels / sourceNamespace are evaluated at compile time against the appliance's
///   own labels (options::proxy_labels, none by default) and namespace
///   (options::proxy_namespace), as Istio's sourceMatchHTTP does for a gateway proxy: a
///   match block with sourceLabels the appliance lacks is dropped, so it never matches; a
///   block that lists `gateways` ignores sourceLabels. A route whose every block is dropped
///   is dropped.
/// - Several VirtualServices claiming one host on a gateway are merged in namespace/name
///   order with catch-all routes moved last (Istio's CombineVHostRoutes; creation time is
///   not in the model). In the mesh table the first one wins and the others are noted.
/// - A fault on a route disables its retries and timeout (HTTPRoute.fault proto comment).
///   A `timeout` of 0 means none.
/// - A destination without a port: the service's only port, else the gateway listener's
///   port; in the port-agnostic mesh table, the request's port among the service's ports.
/// - Several destinations with unset weights: weight 0 each; an all-zero sum gives no share.
/// - Maglev tables (per priority level, and per locality group under `distribute`) are built
///   for clusters that need consistent hashing: a consistentHash load balancer (ringHash is
///   served by Maglev too, table size 65537), a destination of a TCP route, a TCP VIP port,
///   or every cluster with options::maglev_all_clusters. Building 64 Ki slots for every L7
///   cluster would cost 128 KiB each and dominate compile time at 16k services.

#include <string>
#include <string_view>

#include "sluice/base/result.hh"
#include "sluice/locality/levels.hh"
#include "sluice/model/objects.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::compile {

/// The appliance's own identity and locality (the Istio "proxy").
using node_locality = locality::node;

struct options {
    std::string cluster_domain = "cluster.local";
    /// The appliance's workload labels, for sourceLabels and DR workloadSelector.
    locality::labels proxy_labels;
    /// The appliance's namespace, for sourceNamespace.
    std::string proxy_namespace = "istio-system";
    /// Region / network of EndpointSlice endpoints without the label; empty: the node's.
    std::string k8s_region;
    std::string k8s_network;
    /// Build Maglev tables for every cluster, not only those that need consistent hashing.
    bool maglev_all_clusters = false;
};

/// Compiles the whole model. Errors (with the object and field) only for input the model's
/// validation should have refused: a regex neither Hyperscan nor RE2 takes, a Maglev table
/// size that is not a prime in range, an invalid localityLbSetting. Dangling references
/// (hosts, subsets, delegates) are not errors: they become missing-cluster markers (503 NC)
/// or dropped routes, listed in snapshot::notes.
[[nodiscard]] result<snapshot::snapshot> compile(const model::mesh& mesh, const node_locality& node,
                                                 const options& opts = {});

/// A traffic-distribution value ("PreferClose", "PreferSameZone", "PreferNetwork",
/// "PreferRegion", "PreferSameNode", "Any"); anything else is Any (Istio's rule).
[[nodiscard]] locality::mode parse_traffic_distribution(std::string_view value) noexcept;

} // namespace sluice::compile
