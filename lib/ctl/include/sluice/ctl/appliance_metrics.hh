#pragma once
/// @file
/// The appliance's metric families for GET /metrics and its counters for GET /v1/stats.
/// Names follow what users' dashboards expect: Istio's standard metrics (istio_*),
/// Envoy's cluster metrics (envoy_cluster_*), and sluice_* for the appliance's own. Families
/// whose data later parts of the appliance produce are declared now, so their names and
/// labels are fixed; they hold no samples until then.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/stats/counters.hh"

namespace sluice::ctl {

struct appliance_view {
    std::vector<std::string> port_names; ///< index = counters port index
    std::vector<size_t> port_flow_rules; ///< rte_flow steering rules per port (0: software)
    std::vector<std::pair<unsigned, std::string>> lcores; ///< lcore id, role
    const stats::registry* counters = nullptr;
    uint64_t generation = 0;
    size_t objects = 0;
};

/// Prometheus text exposition of everything the appliance counts.
std::string render_metrics(const appliance_view& v);

/// The same counters as JSON: per port, per lcore, drops by reason.
nlohmann::json render_stats(const appliance_view& v);

} // namespace sluice::ctl
