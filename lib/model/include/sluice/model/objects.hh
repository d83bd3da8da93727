#pragma once
/// @file
/// The mesh policy model: Istio and Kubernetes objects as users keep them in YAML, decoded
/// into plain values with every default of ../shared/docs/ISTIO.md §1 applied. Hosts are
/// stored resolved to FQDNs (`reviews` in `prod` -> `reviews.prod.svc.cluster.local`).
///
/// Control plane only (config thread, sluicectl, compile): the data path never includes
/// this header (DESIGN.md §4). Values, no behaviour: decode.hh builds them, validate.hh
/// checks them, lib/compile turns them into a snapshot.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice::model {

using duration = std::chrono::nanoseconds;
using labels = std::map<std::string, std::string>;

/// Where an object came from, for messages: kind, namespace/name, file and line.
struct object_meta {
    std::string api_version;
    std::string kind;
    std::string name;
    std::string ns = "default"; ///< metadata.namespace, "default" when absent
    labels labels_;
    std::map<std::string, std::string> annotations;
    std::string file; ///< "-" for stdin, "" when built in code
    int line = 0;     ///< first line of the object in `file` (1-based; 0 unknown)

    /// "VirtualService prod/api".
    [[nodiscard]] std::string id() const { return kind + " " + ns + "/" + name; }
};

// ---------------------------------------------------------------- shared pieces

/// StringMatch: exactly one of exact|prefix|regex, or `any` for `{}` (header present).
struct string_match {
    enum class kind : uint8_t { any, exact, prefix, regex };
    kind how = kind::any;
    std::string value;

    auto operator<=>(const string_match&) const = default;
};

/// Destination{host, subset, port.number}. `host` is resolved to an FQDN.
struct destination {
    std::string host;
    std::string subset;
    std::optional<uint32_t> port;

    auto operator<=>(const destination&) const = default;
};

/// Headers{request|response}{set, add, remove}; set/add keep YAML order.
struct header_ops {
    std::vector<std::pair<std::string, std::string>> set;
    std::vector<std::pair<std::string, std::string>> add;
    std::vector<std::string> remove;
};
struct headers_policy {
    header_ops request;
    header_ops response;
};

/// HTTPRouteDestination / RouteDestination. weight: absent means unset (a lone destination
/// takes all traffic; ISTIO.md §1).
struct route_destination {
    destination dest;
    std::optional<int32_t> weight;
    headers_policy headers; ///< HTTP only
};

// ---------------------------------------------------------------- VirtualService

struct http_match {
    std::string name;
    std::optional<string_match> uri;
    std::optional<string_match> scheme;
    std::optional<string_match> method;
    std::optional<string_match> authority;
    std::map<std::string, string_match> headers; ///< keys lower-cased
    std::map<std::string, string_match> query_params;
    std::map<std::string, string_match> without_headers; ///< keys lower-cased
    std::optional<uint32_t> port;
    labels source_labels;
    std::vector<std::string> gateways;
    bool ignore_uri_case = false;
    std::string source_namespace;
    std::string stat_prefix;
};

struct http_redirect {
    enum class derive : uint8_t { unset, from_protocol_default, from_request_port };
    std::string uri;
    std::optional<std::string> prefix_rewrite; ///< new in 2026: replaces the matched prefix
    std::string authority;
    std::optional<uint32_t> port;
    derive derive_port = derive::unset;
    std::string scheme;
    uint32_t redirect_code = 301;
};

struct http_direct_response {
    uint32_t status = 0;
    std::optional<std::string> body; ///< body.string, or body.bytes base64-decoded
};

struct delegate_ref {
    std::string name;
    std::string ns; ///< defaults to the VirtualService's namespace
};

struct regex_rewrite {
    std::string match;
    std::string rewrite;
};

struct http_rewrite {
    std::string uri;
    std::string authority;
    std::optional<regex_rewrite> uri_regex_rewrite;
};

struct http_retry {
    uint32_t attempts = 0;
    std::optional<duration> per_try_timeout; ///< default: the route timeout
    std::string retry_on;
    bool retry_remote_localities = false;
    std::optional<bool> retry_ignore_previous_hosts; ///< default true
    std::optional<duration> backoff;                 ///< default 25 ms
};

struct fault_delay {
    std::optional<duration> fixed_delay;
    std::optional<double> percentage; ///< percentage.value; unset: nothing is delayed
};
struct fault_abort {
    std::optional<uint32_t> http_status;
    std::optional<std::string> grpc_status;
    std::optional<double> percentage; ///< unset: nothing is aborted
};
struct http_fault {
    std::optional<fault_delay> delay;
    std::optional<fault_abort> abort;
};

struct mirror_policy {
    destination dest;
    std::optional<double> percentage; ///< unset: 100%
};

struct cors_policy {
    std::vector<string_match> allow_origins;
    std::vector<std::string> allow_methods;
    std::vector<std::string> allow_headers;
    std::vector<std::string> expose_headers;
    std::optional<duration> max_age;
    std::optional<bool> allow_credentials;
    std::string unmatched_preflights; ///< FORWARD (default) | IGNORE
};

struct http_route {
    std::string name;
    std::vector<http_match> match; ///< ORed; empty matches everything
    std::vector<route_destination> route;
    std::optional<http_redirect> redirect;
    std::optional<http_direct_response> direct_response;
    std::optional<delegate_ref> delegate;
    std::optional<http_rewrite> rewrite;
    std::optional<duration> timeout;   ///< unset: no timeout
    std::optional<http_retry> retries; ///< unset: Istio's default policy (ISTIO.md §1)
    std::optional<http_fault> fault;
    std::optional<destination> mirror;
    std::optional<double> mirror_percentage;
    std::vector<mirror_policy> mirrors;
    std::optional<cors_policy> cors;
    headers_policy headers;
};

struct l4_match {
    std::vector<std::string> destination_subnets; ///< CIDRs or addresses, as written
    std::optional<uint32_t> port;
    labels source_labels;
    std::vector<std::string> gateways;
    std::string source_namespace;
};

struct tls_match {
    std::vector<std::string> sni_hosts;
    std::vector<std::string> destination_subnets;
    std::optional<uint32_t> port;
    labels source_labels;
    std::vector<std::string> gateways;
    std::string source_namespace;
};

struct tcp_route {
    std::vector<l4_match> match;
    std::vector<route_destination> route;
};

struct tls_route {
    std::vector<tls_match> match;
    std::vector<route_destination> route;
};

struct virtual_service {
    object_meta meta;
    std::vector<std::string> hosts;    ///< resolved; may hold wildcards
    std::vector<std::string> gateways; ///< "ns/name" or "mesh"; empty means ["mesh"]
    std::vector<http_route> http;
    std::vector<tls_route> tls;
    std::vector<tcp_route> tcp;
    std::vector<std::string> export_to;
};

// ---------------------------------------------------------------- DestinationRule

struct consistent_hash {
    enum class key : uint8_t { none, header, cookie, source_ip, query_param };
    enum class algorithm : uint8_t { ring_hash, maglev };
    key by = key::none;
    std::string header_name;
    std::string query_param;
    struct cookie_spec {
        std::string name;
        std::string path;
        std::optional<duration> ttl;
        std::vector<std::pair<std::string, std::string>> attributes; ///< attributes[]{name,value}
    } cookie;
    algorithm algo = algorithm::ring_hash;
    uint64_t minimum_ring_size = 1024;
    uint32_t maglev_table_size = 65537;
};

struct locality_lb_setting {
    struct distribute_rule {
        std::string from;
        std::vector<std::pair<std::string, uint32_t>> to;
    };
    struct failover_rule {
        std::string from;
        std::string to;
    };
    std::vector<distribute_rule> distribute;
    std::vector<failover_rule> failover;
    std::vector<std::string> failover_priority;
    std::optional<bool> enabled; ///< mesh default: true
};

struct warmup_policy {
    duration window{};
    double minimum_percent = 10;
    double aggression = 1.0;
};

struct load_balancer {
    enum class simple_lb : uint8_t {
        unspecified, ///< means LEAST_REQUEST (Istio's default)
        least_request,
        round_robin,
        random,
        passthrough,
        least_conn,
    };
    simple_lb simple = simple_lb::unspecified;
    std::optional<consistent_hash> hash;
    std::optional<locality_lb_setting> locality;
    std::optional<warmup_policy> warmup;
};

struct tcp_keepalive {
    std::optional<uint32_t> probes;
    std::optional<duration> time;
    std::optional<duration> interval;
};

struct tcp_pool {
    uint32_t max_connections = UINT32_MAX;
    duration connect_timeout = std::chrono::seconds(10);
    std::optional<tcp_keepalive> keepalive;
    std::optional<duration> max_connection_duration;
    duration idle_timeout = std::chrono::hours(1);
};

struct http_pool {
    uint32_t http1_max_pending_requests = UINT32_MAX;
    uint32_t http2_max_requests = UINT32_MAX;
    uint32_t max_requests_per_connection = 0; ///< 0: unlimited
    uint32_t max_retries = UINT32_MAX;
    duration idle_timeout = std::chrono::hours(1);
    std::string h2_upgrade_policy; ///< DEFAULT | DO_NOT_UPGRADE | UPGRADE
    bool use_client_protocol = false;
    uint32_t max_concurrent_streams = 2147483647;
    struct keepalive {
        std::optional<duration> interval;
        std::optional<duration> timeout;
    };
    std::optional<keepalive> http2_keepalive; ///< http2KeepAlive{interval, timeout}
};

struct connection_pool {
    std::optional<tcp_pool> tcp;
    std::optional<http_pool> http;
};

struct outlier_detection {
    uint32_t consecutive_5xx_errors = 5; ///< 0 disables
    std::optional<uint32_t> consecutive_gateway_errors;
    bool split_external_local_origin_errors = false;
    uint32_t consecutive_local_origin_failures = 5;
    duration interval = std::chrono::seconds(10);
    duration base_ejection_time = std::chrono::seconds(30);
    uint32_t max_ejection_percent = 10;
    uint32_t min_health_percent = 0;
    std::vector<uint32_t> http_error_codes; ///< outlierDetectionHttpErrorCodes (new)
};

struct client_tls {
    enum class mode_t : uint8_t { disable, simple, mutual, istio_mutual };
    mode_t mode = mode_t::disable;
    std::string client_certificate;
    std::string private_key;
    std::string ca_certificates;
    std::string credential_name;
    std::vector<std::string> subject_alt_names;
    std::string sni;
    bool insecure_skip_verify = false;
    std::string ca_crl;
};

struct port_traffic_policy {
    uint32_t port = 0;
    std::optional<load_balancer> lb;
    std::optional<connection_pool> pool;
    std::optional<outlier_detection> outlier;
    std::optional<client_tls> tls;
};

struct tunnel_settings {
    std::string protocol = "CONNECT";
    std::string target_host;
    uint32_t target_port = 0;
};

struct retry_budget {
    double percent = 20;
    uint32_t min_retry_concurrency = 3;
    std::optional<duration> budget_interval;
};

struct traffic_policy {
    std::optional<load_balancer> lb;
    std::optional<connection_pool> pool;
    std::optional<outlier_detection> outlier;
    std::optional<client_tls> tls;
    std::vector<port_traffic_policy> port_level;
    std::optional<tunnel_settings> tunnel;
    std::optional<std::string> proxy_protocol_version; ///< V1 | V2
    std::optional<retry_budget> budget;
};

struct subset {
    std::string name;
    labels match_labels;
    std::optional<traffic_policy> policy;
};

struct destination_rule {
    object_meta meta;
    std::string host; ///< resolved
    std::optional<traffic_policy> policy;
    std::vector<subset> subsets;
    std::vector<std::string> export_to;
    labels workload_selector;
};

// ---------------------------------------------------------------- Gateway

struct server_tls {
    enum class mode_t : uint8_t {
        passthrough,
        simple,
        mutual,
        auto_passthrough,
        istio_mutual,
        optional_mutual,
    };
    enum class version : uint8_t { tls_auto, tls_1_0, tls_1_1, tls_1_2, tls_1_3 };
    bool https_redirect = false;
    mode_t mode = mode_t::passthrough;
    std::string server_certificate;
    std::string private_key;
    std::string ca_certificates;
    std::string ca_crl;
    std::string credential_name;
    std::vector<std::string> credential_names;
    struct certificate {
        std::string server_certificate;
        std::string private_key;
        std::string ca_certificates;
    };
    std::vector<certificate> tls_certificates; ///< tlsCertificates[] (new)
    std::vector<std::string> subject_alt_names;
    std::vector<std::string> verify_certificate_spki;
    std::vector<std::string> verify_certificate_hash;
    version min_protocol_version = version::tls_auto; ///< auto means TLSV1_2
    version max_protocol_version = version::tls_auto;
    std::vector<std::string> cipher_suites;
};

struct server_port {
    uint32_t number = 0;
    std::string protocol; ///< upper-cased: HTTP|HTTPS|GRPC|GRPC-WEB|HTTP2|MONGO|TCP|TLS
    std::string name;
    uint32_t target_port = 0;
};

struct server {
    server_port port;
    std::string bind;
    std::vector<std::string> hosts; ///< "ns/dnsName" kept as written; "*/" implied
    std::optional<server_tls> tls;
    std::string name;
};

struct gateway {
    object_meta meta;
    std::vector<server> servers;
    labels selector;
};

// ---------------------------------------------------------------- ServiceEntry, WorkloadEntry

struct workload_spec {
    std::string address;
    std::map<std::string, uint32_t> ports;
    labels labels_;
    std::string network;
    std::string locality; ///< "region/zone/subzone"
    uint32_t weight = 0;  ///< 0: unset (treated as 1)
    std::string service_account;
};

struct service_port {
    uint32_t number = 0;
    std::string protocol;
    std::string name;
    uint32_t target_port = 0;
};

struct service_entry {
    enum class location_t : uint8_t { mesh_external, mesh_internal };
    enum class resolution_t : uint8_t { none, static_, dns, dns_round_robin, dynamic_dns };
    object_meta meta;
    std::vector<std::string> hosts;
    std::vector<std::string> addresses;
    std::vector<service_port> ports;
    location_t location = location_t::mesh_external;
    resolution_t resolution = resolution_t::none;
    std::vector<workload_spec> endpoints;
    labels workload_selector;
    std::vector<std::string> export_to;
    std::vector<std::string> subject_alt_names;
};

struct workload_entry {
    object_meta meta;
    workload_spec spec;
};

// ---------------------------------------------------------------- Kubernetes

struct k8s_service_port {
    std::string name;
    std::string protocol = "TCP";
    std::string app_protocol;
    uint32_t port = 0;
    std::string target_port; ///< number or name, as written; empty means `port`
    uint32_t node_port = 0;
};

struct k8s_service {
    object_meta meta;
    std::vector<k8s_service_port> ports;
    labels selector;
    std::string type = "ClusterIP";
    std::string cluster_ip;
    std::vector<std::string> cluster_ips;
    std::vector<std::string> external_ips;
    std::string load_balancer_ip;
    std::string traffic_distribution;    ///< spec.trafficDistribution
    std::string internal_traffic_policy; ///< Cluster (default) | Local
};

struct endpoint_slice_endpoint {
    std::vector<std::string> addresses;
    bool ready = true; ///< conditions.ready; absent means ready
    std::optional<bool> serving;
    std::optional<bool> terminating;
    std::string zone;
    std::string node_name;
    std::string hostname;
};

struct endpoint_slice_port {
    std::string name;
    uint32_t port = 0;
    std::string protocol = "TCP";
    std::string app_protocol;
};

struct endpoint_slice {
    object_meta meta;
    std::string address_type = "IPv4";
    std::vector<endpoint_slice_endpoint> endpoints;
    std::vector<endpoint_slice_port> ports;
    std::string service_name; ///< label kubernetes.io/service-name
};

// ---------------------------------------------------------------- the whole model

/// Everything a config holds. Objects are unique by kind/namespace/name.
struct mesh {
    std::vector<gateway> gateways;
    std::vector<virtual_service> virtual_services;
    std::vector<destination_rule> destination_rules;
    std::vector<service_entry> service_entries;
    std::vector<workload_entry> workload_entries;
    std::vector<k8s_service> services;
    std::vector<endpoint_slice> endpoint_slices;
};

} // namespace sluice::model
