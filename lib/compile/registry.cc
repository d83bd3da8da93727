// The service registry (hosts, ports, endpoints, traffic distribution) and the clusters with
// their effective policy.
#include <algorithm>
#include <tuple>

#include "detail.hh"
#include "sluice/maglev/maglev.hh"
#include "sluice/model/decode.hh"
#include "sluice/snapshot/host_match.hh"
#include "sluice/base/ascii.hh"

namespace sluice::compile {

locality::mode parse_traffic_distribution(std::string_view v) noexcept
{
    if (v == "PreferClose" || v == "PreferSameZone") {
        return locality::mode::prefer_close;
    }
    if (v == "PreferNetwork") {
        return locality::mode::prefer_network;
    }
    if (v == "PreferRegion") {
        return locality::mode::prefer_region;
    }
    if (v == "PreferSameNode") {
        return locality::mode::prefer_same_node;
    }
    return locality::mode::any;
}

namespace detail {

namespace {

constexpr const char* annotation_distribution = "networking.istio.io/traffic-distribution";
constexpr const char* annotation_forwarding = "sluice.io/forwarding";
constexpr const char* annotation_health_check = model::health_check_annotation_key;

template <typename T>
std::vector<const T*> sorted(const std::vector<T>& v)
{
    std::vector<const T*> out;
    out.reserve(v.size());
    for (const T& x : v) {
        out.push_back(&x);
    }
    std::sort(out.begin(), out.end(), [](const T* a, const T* b) {
        return std::tie(a->meta.ns, a->meta.name) < std::tie(b->meta.ns, b->meta.name);
    });
    return out;
}

std::string upper(std::string s)
{
    for (char& c : s) {
        if (c >= 'a' && c <= 'z') {
            c = static_cast<char>(c - 'a' + 'A');
        }
    }
    return s;
}

// Istio's protocol selection for Kubernetes ports: appProtocol, else the name prefix
// ("http-web", "grpc"), else the L4 protocol.
std::string k8s_port_protocol(const model::k8s_service_port& p)
{
    std::string ap = to_lower(p.app_protocol);
    if (ap == "kubernetes.io/h2c") {
        return "HTTP2";
    }
    if (!ap.empty()) {
        return upper(ap);
    }
    const std::string n = to_lower(p.name);
    for (const char* pre : {"http2", "https", "http", "grpc-web", "grpc", "tls", "mongo", "tcp"}) {
        const std::string_view ps{pre};
        if (n == ps ||
            (n.size() > ps.size() && n.compare(0, ps.size(), ps) == 0 && n[ps.size()] == '-')) {
            return upper(std::string(ps));
        }
    }
    return upper(p.protocol.empty() ? std::string("TCP") : p.protocol);
}

bool labels_subset(const model::labels& want, const model::labels& have)
{
    return std::all_of(want.begin(), want.end(), [&have](const auto& kv) {
        const auto it = have.find(kv.first);
        return it != have.end() && it->second == kv.second;
    });
}

bool labels_subset(const model::labels& want, const snapshot::labels& have)
{
    return std::all_of(want.begin(), want.end(), [&have](const auto& kv) {
        const auto it = have.find(kv.first);
        return it != have.end() && it->second == kv.second;
    });
}

std::string label_or(const model::labels& l, const char* key, const std::string& fallback)
{
    const auto it = l.find(key);
    return it == l.end() || it->second.empty() ? fallback : it->second;
}

void add_port(service_info& si, svc_port p)
{
    const auto it = std::find_if(si.ports.begin(), si.ports.end(),
                                 [&p](const svc_port& q) { return q.number == p.number; });
    if (it == si.ports.end()) {
        si.ports.push_back(std::move(p));
        std::sort(si.ports.begin(), si.ports.end(),
                  [](const svc_port& a, const svc_port& b) { return a.number < b.number; });
    }
}

// A WorkloadEntry-shaped endpoint (ServiceEntry endpoint or WorkloadEntry).
src_endpoint from_workload(const model::workload_spec& w, const std::string& origin,
                           const std::vector<model::service_port>& ports, const state& s)
{
    src_endpoint out;
    snapshot::endpoint& e = out.ep;
    e.address = w.address;
    for (const auto& [k, v] : w.labels_) {
        e.endpoint_labels.emplace(k, v);
    }
    // "region/zone/subzone" first, the topology labels for what it leaves unset.
    std::string parts[3];
    {
        size_t start = 0;
        for (int i = 0; i < 3 && start <= w.locality.size() && !w.locality.empty(); ++i) {
            const size_t slash = w.locality.find('/', start);
            parts[i] = w.locality.substr(start, slash == std::string::npos ? std::string::npos
                                                                           : slash - start);
            if (slash == std::string::npos) {
                break;
            }
            start = slash + 1;
        }
    }
    e.locality.region =
        !parts[0].empty() ? parts[0] : label_or(w.labels_, locality::label_region, "");
    e.locality.zone = !parts[1].empty() ? parts[1] : label_or(w.labels_, locality::label_zone, "");
    e.locality.subzone =
        !parts[2].empty() ? parts[2] : label_or(w.labels_, locality::label_subzone, "");
    e.network = !w.network.empty() ? w.network
                                   : label_or(w.labels_, locality::label_network, s.node.network);
    e.node_name = label_or(w.labels_, locality::label_hostname, "");
    e.k8s_cluster = label_or(w.labels_, locality::label_cluster, "");
    e.weight = w.weight == 0 ? 1 : w.weight;
    e.origin = origin;
    for (const model::service_port& p : ports) {
        const auto it = w.ports.find(p.name);
        out.port_by_service_port[p.number] =
            it != w.ports.end() ? it->second : (p.target_port != 0 ? p.target_port : p.number);
    }
    return out;
}

void set_mode(service_info& si, int rank, const std::string& value, const std::string& source)
{
    if (rank > si.mode_rank) {
        si.mode_rank = rank;
        si.mode = parse_traffic_distribution(value);
        si.mode_source = source + " " + value;
    }
}

} // namespace

snapshot::protocol parse_protocol(const std::string& p)
{
    const std::string u = upper(p);
    using snapshot::protocol;
    if (u == "HTTP") {
        return protocol::http;
    }
    if (u == "HTTPS") {
        return protocol::https;
    }
    if (u == "GRPC") {
        return protocol::grpc;
    }
    if (u == "GRPC-WEB") {
        return protocol::grpc_web;
    }
    if (u == "HTTP2" || u == "H2C") {
        return protocol::http2;
    }
    if (u == "MONGO") {
        return protocol::mongo;
    }
    if (u == "TCP") {
        return protocol::tcp;
    }
    if (u == "TLS") {
        return protocol::tls;
    }
    if (u == "UDP") {
        return protocol::udp;
    }
    return protocol::unknown;
}

result<void> build_registry(state& s)
{
    const std::string& domain = s.opts.cluster_domain;
    // EndpointSlices by (namespace, kubernetes.io/service-name), in sorted order.
    std::map<std::pair<std::string_view, std::string_view>,
             std::vector<const model::endpoint_slice*>>
        slices_of;
    for (const model::endpoint_slice* sl : sorted(s.mesh.endpoint_slices)) {
        slices_of[{sl->meta.ns, sl->service_name}].push_back(sl);
    }
    static const std::vector<const model::endpoint_slice*> no_slices;

    for (const model::k8s_service* svc : sorted(s.mesh.services)) {
        if (svc->type == "ExternalName") {
            s.note("Service " + svc->meta.ns + "/" + svc->meta.name +
                   ": type ExternalName is not load balanced by sluice");
            continue;
        }
        const std::string host = svc->meta.name + "." + svc->meta.ns + ".svc." + domain;
        service_info& si = s.services[host];
        si.host = host;
        for (const model::k8s_service_port& p : svc->ports) {
            const std::string proto = k8s_port_protocol(p);
            add_port(si, {p.port, p.name, proto, parse_protocol(proto)});
        }
        for (const std::string* ip : {&svc->cluster_ip, &svc->load_balancer_ip}) {
            if (!ip->empty() && *ip != "None") {
                si.vips.push_back(*ip);
            }
        }
        for (const std::string& ip : svc->cluster_ips) {
            if (ip != "None") {
                si.vips.push_back(ip);
            }
        }
        si.vips.insert(si.vips.end(), svc->external_ips.begin(), svc->external_ips.end());
        si.itp_local = si.itp_local || svc->internal_traffic_policy == "Local";
        const std::string id = "Service " + svc->meta.ns + "/" + svc->meta.name;
        if (!svc->traffic_distribution.empty()) {
            set_mode(si, 3, svc->traffic_distribution, id + " spec.trafficDistribution");
        }
        if (const auto it = svc->meta.annotations.find(annotation_distribution);
            it != svc->meta.annotations.end()) {
            set_mode(si, 2, it->second, id + " annotation");
        }
        if (const auto it = svc->meta.annotations.find(annotation_forwarding);
            it != svc->meta.annotations.end()) {
            si.forwarding = it->second;
        }
        if (const auto it = svc->meta.annotations.find(annotation_health_check);
            it != svc->meta.annotations.end()) {
            si.health_check = it->second;
            si.health_check_source = id;
        }
        if (si.mode_rank == 0 && label_or(svc->meta.labels_, "gateway.istio.io/managed", "") ==
                                     "istio.io-mesh-controller") {
            si.mode = locality::mode::prefer_close;
            si.mode_source = "default (PreferClose toward a waypoint)";
        }

        const auto found = slices_of.find({svc->meta.ns, svc->meta.name});
        for (const model::endpoint_slice* sl :
             found == slices_of.end() ? no_slices : found->second) {
            // Service port -> endpoint port, by port name (a lone unnamed pair also maps).
            std::map<uint32_t, uint32_t> ports;
            for (const model::k8s_service_port& sp : svc->ports) {
                for (const model::endpoint_slice_port& ep : sl->ports) {
                    if (ep.name == sp.name) {
                        ports[sp.port] = ep.port;
                    }
                }
                if (ports.count(sp.port) == 0 && svc->ports.size() == 1 && sl->ports.size() == 1) {
                    ports[sp.port] = sl->ports[0].port;
                }
            }
            const std::string region =
                label_or(sl->meta.labels_, locality::label_region,
                         s.opts.k8s_region.empty() ? s.node.locality.region : s.opts.k8s_region);
            const std::string network =
                label_or(sl->meta.labels_, locality::label_network,
                         s.opts.k8s_network.empty() ? s.node.network : s.opts.k8s_network);
            for (const model::endpoint_slice_endpoint& e : sl->endpoints) {
                if (e.addresses.empty()) {
                    continue;
                }
                src_endpoint se;
                se.port_by_service_port = ports;
                snapshot::endpoint& ep = se.ep;
                ep.address = e.addresses.front();
                for (const auto& [k, v] : sl->meta.labels_) {
                    if (k != "kubernetes.io/service-name" &&
                        k != "endpointslice.kubernetes.io/managed-by") {
                        ep.endpoint_labels.emplace(k, v);
                    }
                }
                ep.locality.region = region;
                ep.locality.zone =
                    !e.zone.empty() ? e.zone : label_or(sl->meta.labels_, locality::label_zone, "");
                ep.locality.subzone = label_or(sl->meta.labels_, locality::label_subzone, "");
                ep.network = network;
                ep.node_name = e.node_name;
                ep.k8s_cluster = label_or(sl->meta.labels_, locality::label_cluster, "");
                ep.endpoint_labels[locality::label_region] = region;
                if (!ep.locality.zone.empty()) {
                    ep.endpoint_labels[locality::label_zone] = ep.locality.zone;
                }
                if (!ep.node_name.empty()) {
                    ep.endpoint_labels[locality::label_hostname] = ep.node_name;
                }
                ep.ready = e.ready;
                ep.origin = "EndpointSlice " + sl->meta.ns + "/" + sl->meta.name;
                si.endpoints.push_back(std::move(se));
            }
        }
    }

    const auto workloads = sorted(s.mesh.workload_entries);
    for (const model::service_entry* se : sorted(s.mesh.service_entries)) {
        const std::string id = "ServiceEntry " + se->meta.ns + "/" + se->meta.name;
        std::vector<src_endpoint> eps;
        for (size_t i = 0; i < se->endpoints.size(); ++i) {
            eps.push_back(from_workload(
                se->endpoints[i], id + " endpoints[" + std::to_string(i) + "]", se->ports, s));
        }
        if (!se->workload_selector.empty()) {
            for (const model::workload_entry* we : workloads) {
                if (we->meta.ns == se->meta.ns &&
                    labels_subset(se->workload_selector, we->spec.labels_)) {
                    eps.push_back(from_workload(
                        we->spec, "WorkloadEntry " + we->meta.ns + "/" + we->meta.name, se->ports,
                        s));
                }
            }
        }
        const bool dns = se->resolution == model::service_entry::resolution_t::dns ||
                         se->resolution == model::service_entry::resolution_t::dns_round_robin ||
                         se->resolution == model::service_entry::resolution_t::dynamic_dns;
        for (const std::string& host : se->hosts) {
            service_info& si = s.services[host];
            si.host = host;
            for (const model::service_port& p : se->ports) {
                add_port(si, {p.number, p.name, upper(p.protocol), parse_protocol(p.protocol)});
            }
            si.vips.insert(si.vips.end(), se->addresses.begin(), se->addresses.end());
            si.dns = si.dns || dns;
            if (const auto it = se->meta.annotations.find(annotation_distribution);
                it != se->meta.annotations.end()) {
                set_mode(si, 1, it->second, id + " annotation");
            }
            if (const auto it = se->meta.annotations.find(annotation_forwarding);
                it != se->meta.annotations.end() && si.forwarding.empty()) {
                si.forwarding = it->second;
            }
            if (const auto it = se->meta.annotations.find(annotation_health_check);
                it != se->meta.annotations.end() && !si.health_check) {
                si.health_check = it->second;
                si.health_check_source = id;
            }
            if (eps.empty() && dns && host.find('*') == std::string::npos) {
                // DNS resolution without endpoints: the host itself is the endpoint.
                src_endpoint e;
                e.ep.address = host;
                e.ep.network = s.node.network;
                e.ep.origin = id + " (DNS)";
                for (const model::service_port& p : se->ports) {
                    e.port_by_service_port[p.number] =
                        p.target_port != 0 ? p.target_port : p.number;
                }
                si.endpoints.push_back(std::move(e));
            }
            si.endpoints.insert(si.endpoints.end(), eps.begin(), eps.end());
        }
    }

    for (auto& [host, si] : s.services) {
        std::sort(si.vips.begin(), si.vips.end());
        si.vips.erase(std::unique(si.vips.begin(), si.vips.end()), si.vips.end());
    }

    for (const model::destination_rule* dr : sorted(s.mesh.destination_rules)) {
        if (!dr->workload_selector.empty() &&
            !labels_subset(dr->workload_selector, s.opts.proxy_labels)) {
            continue; // the rule is for other workloads, not this appliance
        }
        s.rules.push_back(dr);
        if (dr->host.find('*') != std::string::npos) {
            s.wildcard_rules.push_back(dr);
        } else {
            s.exact_rules.emplace(dr->host, dr); // keeps the first in namespace/name order
        }
    }
    return ok();
}

const model::destination_rule* state::rule_for(const std::string& host) const
{
    if (const auto it = exact_rules.find(host); it != exact_rules.end()) {
        return it->second; // exact beats any wildcard; the first in namespace/name order
    }
    const model::destination_rule* best = nullptr;
    for (const model::destination_rule* dr : wildcard_rules) {
        if (snapshot::host_matches(dr->host, host) &&
            (best == nullptr || dr->host.size() > best->host.size())) {
            best = dr;
        }
    }
    return best;
}

namespace {

// ------------------------------------------------------------------ policy inheritance

// The six fields of a TrafficPolicy that inherit (Istio's MergeTrafficPolicy).
struct merged_policy {
    std::optional<model::load_balancer> lb;
    std::optional<model::connection_pool> pool;
    std::optional<model::outlier_detection> outlier;
    std::optional<model::client_tls> tls;
    std::optional<model::tunnel_settings> tunnel;
    std::optional<std::string> proxy_protocol;
    std::optional<model::retry_budget> budget;
};

// portLevelSettings do not inherit: an omitted field takes the default (ISTIO.md §1).
void apply_port_level(merged_policy& m, const model::traffic_policy& p, uint32_t port)
{
    for (const model::port_traffic_policy& pl : p.port_level) {
        if (pl.port == port) {
            m.lb = pl.lb;
            m.pool = pl.pool;
            m.outlier = pl.outlier;
            m.tls = pl.tls;
            return;
        }
    }
}

void override_with(merged_policy& m, const model::traffic_policy& p)
{
    if (p.lb) {
        m.lb = p.lb;
    }
    if (p.pool) {
        m.pool = p.pool;
    }
    if (p.outlier) {
        m.outlier = p.outlier;
    }
    if (p.tls) {
        m.tls = p.tls;
    }
    if (p.tunnel) {
        m.tunnel = p.tunnel;
    }
    if (p.proxy_protocol_version) {
        m.proxy_protocol = p.proxy_protocol_version;
    }
    if (p.budget) {
        m.budget = p.budget;
    }
}

merged_policy merge(const model::destination_rule* dr, const model::subset* sub, uint32_t port)
{
    merged_policy m;
    if (dr != nullptr && dr->policy) {
        override_with(m, *dr->policy);
        apply_port_level(m, *dr->policy, port);
    }
    if (sub != nullptr && sub->policy) {
        override_with(m, *sub->policy);
        apply_port_level(m, *sub->policy, port);
    }
    return m;
}

snapshot::cluster_policy to_snapshot(const merged_policy& m)
{
    snapshot::cluster_policy p;
    if (m.lb) {
        using S = model::load_balancer::simple_lb;
        using T = snapshot::lb_policy::simple_t;
        switch (m.lb->simple) {
        case S::unspecified:
        case S::least_request:
            p.lb.simple = T::least_request;
            break;
        case S::round_robin:
            p.lb.simple = T::round_robin;
            break;
        case S::random:
            p.lb.simple = T::random;
            break;
        case S::passthrough:
            p.lb.simple = T::passthrough;
            break;
        case S::least_conn:
            p.lb.simple = T::least_conn;
            break;
        }
        if (m.lb->hash) {
            const model::consistent_hash& h = *m.lb->hash;
            snapshot::hash_policy hp;
            hp.key = static_cast<snapshot::hash_policy::key_t>(h.by);
            hp.header_name = h.header_name;
            hp.query_param = h.query_param;
            hp.cookie_name = h.cookie.name;
            hp.cookie_path = h.cookie.path;
            hp.cookie_ttl = h.cookie.ttl;
            hp.algorithm = h.algo == model::consistent_hash::algorithm::maglev
                               ? snapshot::hash_policy::algorithm_t::maglev
                               : snapshot::hash_policy::algorithm_t::ring_hash;
            hp.minimum_ring_size = h.minimum_ring_size;
            hp.maglev_table_size = h.maglev_table_size;
            p.lb.hash = hp;
        }
        p.lb.locality_setting = m.lb->locality.has_value();
        if (m.lb->warmup) {
            p.lb.warmup = m.lb->warmup->window;
            p.lb.warmup_minimum_percent = m.lb->warmup->minimum_percent;
            p.lb.warmup_aggression = m.lb->warmup->aggression;
        }
    }
    if (m.pool && m.pool->tcp) {
        const model::tcp_pool& t = *m.pool->tcp;
        p.tcp.max_connections = t.max_connections;
        p.tcp.connect_timeout = t.connect_timeout;
        if (t.keepalive) {
            p.tcp.keepalive_probes = t.keepalive->probes;
            p.tcp.keepalive_time = t.keepalive->time;
            p.tcp.keepalive_interval = t.keepalive->interval;
        }
        p.tcp.max_connection_duration = t.max_connection_duration;
        p.tcp.idle_timeout = t.idle_timeout;
    }
    if (m.pool && m.pool->http) {
        const model::http_pool& h = *m.pool->http;
        p.http.http1_max_pending_requests = h.http1_max_pending_requests;
        p.http.http2_max_requests = h.http2_max_requests;
        p.http.max_requests_per_connection = h.max_requests_per_connection;
        p.http.max_retries = h.max_retries;
        p.http.idle_timeout = h.idle_timeout;
        if (!h.h2_upgrade_policy.empty()) {
            p.http.h2_upgrade_policy = h.h2_upgrade_policy;
        }
        p.http.use_client_protocol = h.use_client_protocol;
        p.http.max_concurrent_streams = h.max_concurrent_streams;
    }
    if (m.outlier) {
        const model::outlier_detection& o = *m.outlier;
        snapshot::outlier_policy op;
        op.consecutive_5xx_errors = o.consecutive_5xx_errors;
        op.consecutive_gateway_errors = o.consecutive_gateway_errors;
        op.split_external_local_origin_errors = o.split_external_local_origin_errors;
        op.consecutive_local_origin_failures = o.consecutive_local_origin_failures;
        op.interval = o.interval;
        op.base_ejection_time = o.base_ejection_time;
        op.max_ejection_percent = o.max_ejection_percent;
        op.min_health_percent = o.min_health_percent;
        op.http_error_codes = o.http_error_codes;
        p.outlier = op;
        p.panic_threshold = o.min_health_percent; // Istio's applyOutlierDetection
    }
    if (m.tls) {
        const model::client_tls& t = *m.tls;
        p.tls.mode = static_cast<snapshot::tls_policy::mode_t>(t.mode);
        p.tls.client_certificate = t.client_certificate;
        p.tls.private_key = t.private_key;
        p.tls.ca_certificates = t.ca_certificates;
        p.tls.credential_name = t.credential_name;
        p.tls.subject_alt_names = t.subject_alt_names;
        p.tls.sni = t.sni;
        p.tls.insecure_skip_verify = t.insecure_skip_verify;
        p.tls.ca_crl = t.ca_crl;
    }
    if (m.tunnel) {
        p.tunnel_protocol = m.tunnel->protocol;
        p.tunnel_target_host = m.tunnel->target_host;
        p.tunnel_target_port = m.tunnel->target_port;
    }
    p.proxy_protocol_version = m.proxy_protocol;
    if (m.budget) {
        p.retry_budget_percent = m.budget->percent;
        p.retry_budget_min_concurrency = m.budget->min_retry_concurrency;
    }
    return p;
}

const model::subset* find_subset(const model::destination_rule* dr, const std::string& name)
{
    if (dr == nullptr) {
        return nullptr;
    }
    for (const model::subset& sub : dr->subsets) {
        if (sub.name == name) {
            return &sub;
        }
    }
    return nullptr;
}

locality::lb_setting to_lb_setting(const model::locality_lb_setting& l)
{
    locality::lb_setting out;
    out.enabled = l.enabled.value_or(true);
    out.failover_priority = l.failover_priority;
    for (const auto& f : l.failover) {
        out.failover.push_back({f.from, f.to});
    }
    for (const auto& d : l.distribute) {
        out.distribute.push_back({d.from, d.to});
    }
    return out;
}

// The host's sluice.io/health-check, parsed again (validate() reported a bad one at apply
// time; one that reaches compile anyway is left out with a note rather than failing the
// whole snapshot).
std::optional<snapshot::health_check_spec> health_check_of(state& s, const service_info& si)
{
    if (!si.health_check) {
        return std::nullopt;
    }
    auto hc = model::parse_health_check(*si.health_check);
    if (!hc) {
        s.note(si.health_check_source + ": metadata.annotations[sluice.io/health-check]: " +
               hc.err().message + ": no active health check for " + si.host);
        return std::nullopt;
    }
    snapshot::health_check_spec out;
    out.kind = hc->kind == model::health_check_annotation::kind_t::http
                   ? snapshot::health_check_spec::kind_t::http
                   : snapshot::health_check_spec::kind_t::tcp;
    out.path = hc->path;
    out.interval = hc->interval;
    out.timeout = hc->timeout;
    out.unhealthy_threshold = hc->unhealthy_threshold;
    out.healthy_threshold = hc->healthy_threshold;
    return out;
}

// A cluster with endpoints and policy; plan and Maglev come in finalize_clusters().
snapshot::cluster make_cluster(const state& s, const service_info& si,
                               const model::destination_rule* dr, const model::subset* sub,
                               const svc_port& port,
                               const std::optional<snapshot::health_check_spec>& health_check)
{
    snapshot::cluster c;
    c.host = si.host;
    c.subset = sub != nullptr ? sub->name : "";
    c.port = port.number;
    c.name = snapshot::cluster_name(c.port, c.subset, c.host);
    c.proto = port.proto;
    c.dns = si.dns;
    std::set<uint64_t> seen;
    for (const src_endpoint& se : si.endpoints) {
        const auto pit = se.port_by_service_port.find(port.number);
        if (pit == se.port_by_service_port.end()) {
            continue;
        }
        if (sub != nullptr && !labels_subset(sub->match_labels, se.ep.endpoint_labels)) {
            continue;
        }
        snapshot::endpoint e = se.ep;
        e.port = pit->second;
        e.id = maglev::stable_key(e.network + "|" + e.address + ":" + std::to_string(e.port));
        if (!seen.insert(e.id).second) {
            continue; // the same backend from a second source: the first one stays
        }
        c.endpoints.push_back(std::move(e));
    }
    std::sort(c.endpoints.begin(), c.endpoints.end(),
              [](const snapshot::endpoint& a, const snapshot::endpoint& b) { return a.id < b.id; });

    const merged_policy m = merge(dr, sub, port.number);
    c.policy = to_snapshot(m);
    c.health_check = health_check; // the host's: every port and subset probes alike
    c.locality_policy.same_node_only = si.itp_local;
    if (dr != nullptr) {
        c.policy.source = "DestinationRule " + dr->meta.ns + "/" + dr->meta.name;
        c.locality_policy.use_lb_setting = true;
        if (m.lb && m.lb->locality) {
            c.locality_policy.setting = to_lb_setting(*m.lb->locality);
        }
        c.locality_policy.outlier_detection = m.outlier.has_value();
        c.distribution_source = c.policy.source + " (overrides traffic distribution)";
    } else {
        c.locality_policy.distribution = si.mode;
        c.distribution_source = si.mode_source;
    }
    (void)s;
    return c;
}

} // namespace

uint32_t state::ensure_cluster(const std::string& host, const std::string& subset, uint32_t port)
{
    const std::string name = snapshot::cluster_name(port, subset, host);
    if (const auto it = cluster_by_name.find(name); it != cluster_by_name.end()) {
        return it->second;
    }
    snapshot::cluster c;
    c.name = name;
    c.host = host;
    c.subset = subset;
    c.port = port;
    c.missing = true;
    const auto sit = services.find(host);
    if (sit == services.end()) {
        c.missing_reason = "no Service or ServiceEntry defines host " + host;
    } else if (port == 0) {
        c.missing_reason = "no port given and the request port is not a port of " + host;
    } else if (std::none_of(sit->second.ports.begin(), sit->second.ports.end(),
                            [port](const svc_port& p) { return p.number == port; })) {
        c.missing_reason = "port " + std::to_string(port) + " is not a port of " + host;
    } else {
        c.missing_reason = "subset " + subset + " is not defined by a DestinationRule for " + host;
    }
    const auto idx = static_cast<uint32_t>(snap.clusters.size());
    snap.clusters.push_back(std::move(c));
    cluster_rule.push_back(nullptr);
    cluster_by_name.emplace(name, idx);
    return idx;
}

result<void> build_service_clusters(state& s)
{
    for (const auto& [host, si] : s.services) {
        if (host.find('*') != std::string::npos) {
            continue; // a wildcard ServiceEntry host has no cluster of its own
        }
        const model::destination_rule* dr = s.rule_for(host);
        const std::optional<snapshot::health_check_spec> health_check = health_check_of(s, si);
        for (const svc_port& port : si.ports) {
            std::vector<const model::subset*> subsets{nullptr};
            if (dr != nullptr) {
                for (const model::subset& sub : dr->subsets) {
                    subsets.push_back(&sub);
                }
            }
            for (const model::subset* sub : subsets) {
                if (sub != nullptr && find_subset(dr, sub->name) != sub) {
                    continue; // a repeated subset name: the first definition stays
                }
                snapshot::cluster c = make_cluster(s, si, dr, sub, port, health_check);
                const auto idx = static_cast<uint32_t>(s.snap.clusters.size());
                s.cluster_by_name.emplace(c.name, idx);
                s.snap.clusters.push_back(std::move(c));
                s.cluster_rule.push_back(dr);
            }
        }
    }
    return ok();
}

} // namespace detail
} // namespace sluice::compile
