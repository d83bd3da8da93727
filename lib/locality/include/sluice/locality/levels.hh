#pragma once
/// @file
/// Locality priority levels: from a cluster's endpoints, the appliance's own locality and a
/// policy (a traffic-distribution mode, or a DestinationRule `localityLbSetting`), compute the
/// ordered priority levels P0 (closest) .. Pn, exactly as Istio hands them to Envoy
/// (ISTIO.md §1 "Traffic distribution", §2 "Priorities" and "distribute").
///
/// Pure and deterministic; control side only (allocates, may be slow): `compile` calls it once
/// per cluster and stores the result in the snapshot. The health-dependent part (spillover,
/// panic) is in priority_load.hh and runs again on every health change.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/base/result.hh"

namespace sluice::locality {

/// The special failoverPriority / topology label keys (ISTIO.md §1 localityLbSetting).
inline constexpr const char* label_network = "topology.istio.io/network";
inline constexpr const char* label_cluster = "topology.istio.io/cluster";
inline constexpr const char* label_region = "topology.kubernetes.io/region";
inline constexpr const char* label_zone = "topology.kubernetes.io/zone";
inline constexpr const char* label_subzone = "topology.istio.io/subzone";
inline constexpr const char* label_hostname = "kubernetes.io/hostname";

using labels = std::map<std::string, std::string, std::less<>>;

/// Istio locality "region/zone/subzone". An empty part is unknown; two unknowns compare equal
/// (as in Istio).
struct where {
    std::string region;
    std::string zone;
    std::string subzone;

    friend bool operator==(const where&, const where&) = default;
    friend auto operator<=>(const where&, const where&) = default;
};

/// The appliance (the "proxy" in Istio's terms): its configured node identity.
struct node {
    where locality;
    std::string network;
    std::string node_name; ///< Kubernetes node name / hostname
    std::string cluster;   ///< topology.istio.io/cluster, may be empty
    labels extra_labels;   ///< other proxy labels failoverPriority may name
};

/// One endpoint of a cluster.
struct endpoint {
    where locality;
    std::string network;
    std::string node_name;
    std::string cluster;
    labels endpoint_labels;
    uint32_t weight = 1; ///< 0 = never chosen (excluded from every level)
};

/// Traffic-distribution modes (ISTIO.md table; seeds 000/003).
enum class mode : uint8_t {
    any,              ///< one level: all endpoints
    prefer_close,     ///< network -> region -> zone (4 levels)
    prefer_network,   ///< network (2 levels); the default toward backends
    prefer_region,    ///< network -> region (3 levels)
    prefer_same_node, ///< network -> region -> zone -> subzone -> node (6 levels)
};
/// Kubernetes' newer name for PreferClose.
inline constexpr mode prefer_same_zone = mode::prefer_close;

/// `localityLbSetting.failover[]`: when the appliance is in region `from`, cross-region
/// failover goes to region `to` first and to any other region last.
struct failover_rule {
    std::string from;
    std::string to;
};

/// `localityLbSetting.distribute[]`: for clients matching `from` ("region/zone/subzone",
/// parts may be `*` or omitted), send `weight` (of 100) to the endpoints matching each `to`
/// pattern; localities matched by no `to` get nothing.
struct distribute_rule {
    std::string from;
    std::vector<std::pair<std::string, uint32_t>> to;
};

/// A DestinationRule's `trafficPolicy.loadBalancer.localityLbSetting`.
struct lb_setting {
    bool enabled = true; ///< false: no locality behaviour at all (one level, no weights)
    std::vector<std::string> failover_priority; ///< label keys or `key=value`
    std::vector<failover_rule> failover;
    std::vector<distribute_rule> distribute;
};

/// What decides the levels of one cluster. A DestinationRule overrides traffic distribution
/// for its host (ISTIO.md §1): the compiler sets `use_lb_setting` then.
struct policy {
    /// Traffic distribution in force when `use_lb_setting` is false. Modes always produce
    /// their levels (failover is forced, as in Istio), with or without outlier detection.
    mode distribution = mode::prefer_network;
    /// Use `lb_setting` (a DestinationRule applies) instead of `distribution`.
    bool use_lb_setting = false;
    lb_setting setting;
    /// The DestinationRule sets outlierDetection. Without it `failover`/`failoverPriority`
    /// produce no levels (Envoy could never detect a failure); `distribute` still applies.
    bool outlier_detection = false;
    /// Service `internalTrafficPolicy: Local`: only endpoints on the appliance's node, no
    /// failover; no match leaves no endpoint (traffic is dropped).
    bool same_node_only = false;
};

/// Endpoints of one locality inside a level, with their locality weight (`distribute`).
struct locality_group {
    where locality;
    uint32_t weight = 0;             ///< Envoy load_balancing_weight of this locality
    std::vector<uint32_t> endpoints; ///< input indices, ascending
};

/// One priority level.
struct level {
    /// The level before empty levels were removed (e.g. PreferClose: 0 same zone, 1 same
    /// region, 2 same network, 3 cross-network). For diagnostics and `route check`.
    uint32_t tier = 0;
    std::vector<uint32_t> endpoints; ///< input indices, ascending
    std::vector<uint32_t> weights;   ///< endpoint weights, parallel to `endpoints`
    /// Locality groups, only when plan::locality_weighted (else empty).
    std::vector<locality_group> groups;
};

/// The levels of one cluster. Compact: level i exists only if it has an endpoint.
struct plan {
    std::vector<level> levels;
    /// `distribute` applies: pick a locality group (by weight and health) before an endpoint.
    bool locality_weighted = false;
    /// Per input endpoint: its level, or no_level when excluded.
    std::vector<uint32_t> level_of;
    /// Input indices in no level (weight 0, same_node_only mismatch, unmatched distribute).
    std::vector<uint32_t> excluded;
};

inline constexpr uint32_t no_level = 0xffffffffU;

/// Computes the levels. Errors name the offending field (e.g. an empty failoverPriority key,
/// a distribute weight above 100). Deterministic: same inputs, same plan.
[[nodiscard]] result<plan> build_plan(const node& self, std::span<const endpoint> endpoints,
                                      const policy& pol);

/// Istio's `util.LocalityMatch`: does `loc` match the pattern "region/zone/subzone"? A part
/// that is `*` or missing matches anything; "*" matches everything.
[[nodiscard]] bool locality_matches(const where& loc, std::string_view pattern);

/// The failoverPriority label list a traffic-distribution mode stands for (empty for `any`).
[[nodiscard]] std::vector<std::string> mode_labels(mode m);

} // namespace sluice::locality
