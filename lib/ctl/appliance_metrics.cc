#include "sluice/ctl/appliance_metrics.hh"

#include "sluice/ctl/metrics.hh"

namespace sluice::ctl {
namespace {

// Istio's standard labels (istio.io "Istio Standard Metrics"), in its order.
constexpr const char* istio_labels =
    "reporter, source_workload, source_workload_namespace, source_principal, source_app, "
    "source_version, source_cluster, destination_workload, destination_workload_namespace, "
    "destination_principal, destination_app, destination_version, destination_service, "
    "destination_service_name, destination_service_namespace, destination_cluster, "
    "request_protocol, response_code, grpc_response_status, response_flags, "
    "connection_security_policy";

} // namespace

std::string render_metrics(const appliance_view& v)
{
    exposition e;
    const auto t = v.counters != nullptr ? v.counters->sum() : stats::totals{};
    const std::string istio_help = std::string(" Labels: ") + istio_labels + ".";

    e.family("istio_requests_total", "counter", "Requests handled by the L7 engine." + istio_help);
    e.family("istio_request_duration_milliseconds", "histogram",
             "Request duration in milliseconds." + istio_help);
    e.family("istio_tcp_connections_opened_total", "counter",
             "TCP connections opened (L4 and L7)." + istio_help);
    e.family("istio_tcp_connections_closed_total", "counter",
             "TCP connections closed (L4 and L7)." + istio_help);
    e.family("istio_tcp_sent_bytes_total", "counter",
             "Bytes sent to clients on TCP connections." + istio_help);
    e.family("istio_tcp_received_bytes_total", "counter",
             "Bytes received from clients on TCP connections." + istio_help);
    e.family(
        "envoy_cluster_upstream_rq_total", "counter",
        "Upstream requests per cluster. Label envoy_cluster_name=\"outbound|PORT|SUBSET|HOST\".");
    e.family("envoy_cluster_upstream_cx_active", "gauge",
             "Active upstream connections per cluster (envoy_cluster_name).");
    e.family("envoy_cluster_outlier_detection_ejections_active", "gauge",
             "Endpoints currently ejected by outlier detection per cluster (envoy_cluster_name).");

    e.family("sluice_port_packets_total", "counter",
             "Packets per NIC port and direction (rx: from the wire, tx: to the wire).");
    for (size_t i = 0; i < v.port_names.size() && i < stats::max_ports; ++i) {
        e.sample("sluice_port_packets_total", {{"port", v.port_names[i]}, {"direction", "rx"}},
                 static_cast<double>(t.port[i].rx_packets));
        e.sample("sluice_port_packets_total", {{"port", v.port_names[i]}, {"direction", "tx"}},
                 static_cast<double>(t.port[i].tx_packets));
    }
    e.family("sluice_port_bytes_total", "counter", "Bytes per NIC port and direction.");
    for (size_t i = 0; i < v.port_names.size() && i < stats::max_ports; ++i) {
        e.sample("sluice_port_bytes_total", {{"port", v.port_names[i]}, {"direction", "rx"}},
                 static_cast<double>(t.port[i].rx_bytes));
        e.sample("sluice_port_bytes_total", {{"port", v.port_names[i]}, {"direction", "tx"}},
                 static_cast<double>(t.port[i].tx_bytes));
    }
    e.family("sluice_exception_packets_total", "counter",
             "Packets through each port's exception interface (to_kernel, from_kernel).");
    for (size_t i = 0; i < v.port_names.size() && i < stats::max_ports; ++i) {
        e.sample("sluice_exception_packets_total",
                 {{"port", v.port_names[i]}, {"direction", "to_kernel"}},
                 static_cast<double>(t.port[i].to_kernel));
        e.sample("sluice_exception_packets_total",
                 {{"port", v.port_names[i]}, {"direction", "from_kernel"}},
                 static_cast<double>(t.port[i].from_kernel));
    }
    e.family("sluice_drops_total", "counter", "Packets dropped by the data path, by reason.");
    for (size_t d = 0; d < stats::drop_count; ++d) {
        e.sample("sluice_drops_total",
                 {{"reason", std::string(stats::drop_name(static_cast<stats::drop>(d)))}},
                 static_cast<double>(t.drops[d]));
    }
    // A port whose NIC refused the steering rules runs degraded (every reply RSS puts on
    // another worker costs a ring hop): operators alert on 0 where they expect rules.
    e.family("sluice_port_flow_rules", "gauge",
             "rte_flow rules steering full-NAT replies to their worker per NIC port (0: "
             "software redirection).");
    for (size_t i = 0; i < v.port_flow_rules.size() && i < v.port_names.size(); ++i) {
        e.sample("sluice_port_flow_rules", {{"port", v.port_names[i]}},
                 static_cast<double>(v.port_flow_rules[i]));
    }
    e.family("sluice_conntrack_entries", "gauge", "Connection-tracking entries per worker lcore.");
    e.family("sluice_snapshot_generation", "gauge", "Generation of the published mesh config.");
    e.sample("sluice_snapshot_generation", {}, static_cast<double>(v.generation));
    e.family("sluice_config_objects", "gauge", "Mesh objects in the published generation.");
    e.sample("sluice_config_objects", {}, static_cast<double>(v.objects));
    e.family("sluice_lcore_loops_total", "counter",
             "Poll-loop iterations per lcore (idle: no work).");
    if (v.counters != nullptr) {
        for (const auto& [id, role] : v.lcores) {
            const auto& c = v.counters->lcore(id);
            const std::string l = std::to_string(id);
            e.sample("sluice_lcore_loops_total", {{"lcore", l}, {"role", role}, {"state", "busy"}},
                     static_cast<double>(c.loops.get() - c.idle_loops.get()));
            e.sample("sluice_lcore_loops_total", {{"lcore", l}, {"role", role}, {"state", "idle"}},
                     static_cast<double>(c.idle_loops.get()));
        }
    }
    return e.text();
}

nlohmann::json render_stats(const appliance_view& v)
{
    nlohmann::json j;
    const auto t = v.counters != nullptr ? v.counters->sum() : stats::totals{};
    auto ports = nlohmann::json::array();
    for (size_t i = 0; i < v.port_names.size() && i < stats::max_ports; ++i) {
        const auto& p = t.port[i];
        ports.push_back({{"name", v.port_names[i]},
                         {"rx_packets", p.rx_packets},
                         {"rx_bytes", p.rx_bytes},
                         {"tx_packets", p.tx_packets},
                         {"tx_bytes", p.tx_bytes},
                         {"to_kernel", p.to_kernel},
                         {"from_kernel", p.from_kernel}});
    }
    j["ports"] = ports;
    auto drops = nlohmann::json::object();
    for (size_t d = 0; d < stats::drop_count; ++d) {
        drops[std::string(stats::drop_name(static_cast<stats::drop>(d)))] = t.drops[d];
    }
    j["drops"] = drops;
    auto lcores = nlohmann::json::array();
    if (v.counters != nullptr) {
        for (const auto& [id, role] : v.lcores) {
            const auto s = v.counters->sum_lcore(id);
            uint64_t rx = 0;
            uint64_t tx = 0;
            for (const auto& p : s.port) {
                rx += p.rx_packets;
                tx += p.tx_packets;
            }
            const auto& c = v.counters->lcore(id);
            lcores.push_back({{"lcore", id},
                              {"role", role},
                              {"rx_packets", rx},
                              {"tx_packets", tx},
                              {"drops", s.total_drops()},
                              {"loops", c.loops.get()},
                              {"idle_loops", c.idle_loops.get()}});
        }
    }
    j["lcores"] = lcores;
    j["conntrack"] = {{"entries", 0}};
    return j;
}

} // namespace sluice::ctl
