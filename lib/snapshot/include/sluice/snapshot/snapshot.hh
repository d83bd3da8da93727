#pragma once
/// @file
/// The snapshot: the immutable, compiled data-plane view of the whole mesh policy
/// (DESIGN.md §3). lib/compile builds it from the model; the data path (fastpath, l7) and
/// `sluicectl route check` only read it. It holds:
/// - listeners: Gateway servers (port, protocol, bind, hosts, TLS) and Service/ServiceEntry
///   VIP ports, each marked L7 (HTTP, HTTPS, TLS by SNI) or L4 (TCP by port);
/// - HTTP route tables per (gateway, port) -- "mesh" has one port-agnostic table -- with
///   virtual hosts (exact, `*.suffix`, `*`), routes in first-match order (delegation
///   resolved), actions, and one Hyperscan database per table (regex_set.hh);
/// - TCP and TLS route tables per (gateway, port);
/// - clusters per host x subset x port ("outbound|PORT|SUBSET|HOST"), with endpoints, the
///   effective policy (DestinationRule -> subset -> portLevelSettings), the locality plan and
///   Maglev tables per priority level; a route naming an unknown host, subset or port gets a
///   *missing* cluster, which the runtime answers with 503 NC.
///
/// Plain data; immutable once compile() returns it (fastpath: ro, l7: ro, ctl: builds). Every
/// container is sorted by a stable key, so two compiles of one config are identical
/// (describe() prints it all, in order). Lookups here are cheap and allocation-free unless
/// they say otherwise. Published by pointer swap, freed after an RCU grace period (STYLE P1).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/locality/levels.hh"
#include "sluice/maglev/maglev.hh"
#include "sluice/net/addr.hh"
#include "sluice/snapshot/regex_set.hh"

namespace sluice::snapshot {

using duration = std::chrono::nanoseconds;
using labels = std::map<std::string, std::string, std::less<>>;

/// "No such index" in every index field of the snapshot.
inline constexpr uint32_t no_index = 0xffffffffU;

// ------------------------------------------------------------------------ listeners

/// Gateway server / service port protocols (Istio names, upper-cased in the model).
enum class protocol : uint8_t { http, https, grpc, grpc_web, http2, mongo, tcp, tls, udp, unknown };

/// How a listener treats its connections.
enum class listener_kind : uint8_t {
    http,            ///< L7: HTTP routes (HTTP, HTTP2, GRPC, GRPC-WEB, and HTTPS terminated)
    tls_passthrough, ///< L7 by SNI: TLS routes (HTTPS/TLS with PASSTHROUGH/AUTO_PASSTHROUGH)
    tls_terminate,   ///< TLS terminated, then TCP routes (TLS with SIMPLE/MUTUAL/...)
    tcp,             ///< L4: TCP routes by port (TCP, MONGO, and any unknown protocol)
};

[[nodiscard]] bool is_l7(listener_kind k) noexcept;

/// ServerTLSSettings, as the L7 engine needs them.
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
    std::vector<std::string> subject_alt_names;
    std::vector<std::string> verify_certificate_spki;
    std::vector<std::string> verify_certificate_hash;
    version min_protocol_version = version::tls_1_2; ///< TLS_AUTO means TLSV1_2
    version max_protocol_version = version::tls_auto;
    std::vector<std::string> cipher_suites;
};

/// A Gateway server host "ns/dnsName" split: `ns` is `*` (any), or a namespace (`.` was
/// resolved to the gateway's own namespace at compile time).
struct server_host {
    std::string ns = "*";
    std::string host;
};

/// One Gateway server.
struct gateway_server {
    std::string gateway; ///< "ns/name"
    std::string name;
    uint32_t port = 0;
    protocol proto = protocol::unknown;
    listener_kind kind = listener_kind::tcp;
    std::string bind; ///< empty: every appliance address
    std::vector<server_host> hosts;
    std::optional<server_tls> tls;
};

/// Something the appliance listens on: the Gateway servers sharing a (bind, port), or one
/// Service/ServiceEntry VIP port.
struct listener {
    enum class origin_t : uint8_t { gateway, service_vip };
    origin_t origin = origin_t::gateway;
    std::string address; ///< gateway: bind (empty: any); VIP: the address as written
    uint32_t port = 0;
    protocol proto = protocol::unknown;
    listener_kind kind = listener_kind::tcp;
    std::vector<uint32_t> servers; ///< gateway: indices into snapshot::servers
    std::string host;              ///< VIP: the service host
    uint32_t cluster = no_index;   ///< VIP: the service's cluster for this port
    /// VIP: the `sluice.io/forwarding` annotation ("fullnat", "ipip", "gue"; validated by the
    /// model), empty for the appliance default.
    std::string forwarding;
};

// ------------------------------------------------------------------------ HTTP routes

/// StringMatch, compiled. `any` is `{}` (header/query present).
struct string_matcher {
    enum class kind : uint8_t { any, exact, prefix, regex };
    kind how = kind::any;
    bool ignore_case = false;  ///< ignoreUriCase (uri exact/prefix only): `value` is lower-case
    std::string value;         ///< the literal, or the regex source
    uint32_t regex = no_index; ///< regex: pattern id in the table's regex_set
};

/// A header or query parameter condition; header names are lower-case.
struct named_condition {
    std::string name;
    string_matcher match;
};

/// One HTTPMatchRequest: every condition present must hold (AND). Gateways, sourceLabels and
/// sourceNamespace were decided at compile time (a block that cannot apply at this table is
/// not in it).
struct match_block {
    std::string name;
    std::optional<string_matcher> uri; ///< prefix: on the whole :path; exact/regex: without query
    std::optional<string_matcher> scheme;
    std::optional<string_matcher> method;
    std::optional<string_matcher> authority;
    std::vector<named_condition> headers;
    std::vector<named_condition> without_headers; ///< excludes when present and matching
    std::vector<named_condition> query_params;
    uint32_t port = 0; ///< 0: any

    /// No condition at all, or only `uri: prefix "/"` (Istio's isCatchAllRoute).
    [[nodiscard]] bool catch_all() const noexcept;
};

struct header_ops {
    std::vector<std::pair<std::string, std::string>> set;
    std::vector<std::pair<std::string, std::string>> add;
    std::vector<std::string> remove;
};
struct headers_policy {
    header_ops request;
    header_ops response;
};

/// A route destination with its resolved cluster.
struct weighted_destination {
    std::string host;
    std::string subset;
    uint32_t port = 0;   ///< as written; 0 when the route did not say
    uint32_t weight = 0; ///< effective: a lone destination gets 100, an unset weight is 0
    /// The cluster when it does not depend on the listener port (port written, single-port
    /// service, or a gateway table whose port is known); else no_index.
    uint32_t cluster = no_index;
    /// Port not written on a multi-port service in the mesh table: service port -> cluster.
    std::vector<std::pair<uint32_t, uint32_t>> cluster_by_port;
    /// The missing-cluster marker used when no port above applies.
    uint32_t fallback_cluster = no_index;
    headers_policy headers;
};

struct redirect_action {
    enum class derive : uint8_t { unset, from_protocol_default, from_request_port };
    std::string uri;
    std::optional<std::string> prefix_rewrite;
    std::string authority;
    uint32_t port = 0; ///< 0: unset
    derive derive_port = derive::unset;
    std::string scheme;
    uint32_t code = 301;
};

struct direct_response_action {
    uint32_t status = 0;
    std::optional<std::string> body;
};

struct rewrite_action {
    std::string uri;       ///< empty: keep the path
    std::string authority; ///< empty: keep the authority
    /// uriRegexRewrite: every match of `regex_match` in the path (without query) replaced by
    /// `regex_substitution` (RE2 GlobalReplace, `\1` refers to a group).
    std::string regex_match;
    std::string regex_substitution;
    std::shared_ptr<const re2::RE2> regex; ///< compiled regex_match; null when unset
};

/// The retry policy in force (Istio's default when the route sets none: ISTIO.md §1).
struct retry_policy {
    uint32_t attempts = 2;                   ///< retries (not counting the first try); 0: disabled
    std::optional<duration> per_try_timeout; ///< unset: the route timeout
    std::string retry_on = "connect-failure,refused-stream,unavailable,cancelled,"
                           "retriable-status-codes";
    std::vector<uint32_t> retriable_status_codes; ///< bare integers of retryOn
    bool retry_remote_localities = false;
    bool retry_ignore_previous_hosts = true;
    uint32_t host_selection_retry_max_attempts = 5;
    duration backoff = std::chrono::milliseconds(25);
    bool is_default = true; ///< the route set no `retries`
};

struct fault_action {
    struct delay_t {
        duration fixed_delay{};
        double percentage = 0; ///< unset in the model: 0 (nothing is delayed)
    };
    struct abort_t {
        uint32_t http_status = 0;
        std::string grpc_status;
        double percentage = 0; ///< unset in the model: 0 (nothing is aborted)
    };
    std::optional<delay_t> delay;
    std::optional<abort_t> abort;
};

struct mirror_action {
    weighted_destination dest; ///< weight unused
    double percentage = 100;
};

struct cors_action {
    std::vector<string_matcher> allow_origins; ///< regex origins keep `value` as source
    /// Per allow_origins entry: the compiled regex (RE2, full match), null for exact/prefix.
    std::vector<std::shared_ptr<const re2::RE2>> origin_regex;
    std::vector<std::string> allow_methods;
    std::vector<std::string> allow_headers;
    std::vector<std::string> expose_headers;
    std::optional<duration> max_age;
    std::optional<bool> allow_credentials;
    std::string unmatched_preflights = "FORWARD";
};

/// What a matched route does.
struct route_action {
    enum class kind_t : uint8_t { forward, redirect, direct_response };
    kind_t kind = kind_t::forward;
    std::vector<weighted_destination> destinations;
    uint64_t total_weight = 0;
    redirect_action redirect;
    direct_response_action direct_response;
    std::optional<rewrite_action> rewrite;
    std::optional<duration> timeout; ///< unset: no timeout (Istio emits 0)
    retry_policy retries;
    std::optional<fault_action> fault;
    std::vector<mirror_action> mirrors;
    std::optional<cors_action> cors;
    headers_policy headers;

    /// Share of destination `i` (weight / sum); 0 when the sum is 0.
    [[nodiscard]] double share(size_t i) const noexcept;
};

/// One Envoy-style route: one match block of one VirtualService HTTP route (a route with N
/// match blocks becomes N entries, in order, as Istio emits them).
struct route_entry {
    match_block match;
    uint32_t action = no_index;       ///< index into route_table::actions
    uint32_t vs = no_index;           ///< index into snapshot::virtual_services (the root VS)
    uint32_t http_index = 0;          ///< position in the root VS's `http`
    uint32_t delegate_vs = no_index;  ///< delegated: the delegate VS
    uint32_t delegate_http_index = 0; ///< delegated: position in the delegate's `http`
    std::string name;                 ///< route name (root-delegate names joined by '-')
};

struct virtual_host {
    std::string domain; ///< lower-case: exact, "*.suffix" or "*"
    std::vector<route_entry> routes;
    uint32_t vs = no_index;      ///< the first VirtualService that claimed the host
    bool https_redirect = false; ///< its server has tls.httpsRedirect: 301 to https
};

/// The HTTP routes of one gateway port (or of `mesh`).
struct route_table {
    std::string gateway; ///< "ns/name" or "mesh"
    uint32_t port = 0;   ///< 0 for mesh (port-agnostic)
    std::vector<virtual_host> vhosts;
    std::vector<uint32_t> exact;    ///< vhost indices of exact domains, by domain
    std::vector<uint32_t> suffixes; ///< vhost indices of `*.x` domains, by the suffix `.x`
    uint32_t catch_all = no_index;  ///< the `*` vhost
    std::vector<route_action> actions;
    regex_set regexes;
    std::vector<std::string> regex_inputs; ///< per input id: ":path", "header:x", ...
};

// ------------------------------------------------------------------------ TCP / TLS routes

struct l4_route {
    std::vector<net::prefix> destination_subnets; ///< empty: any
    uint32_t port = 0;                            ///< 0: any
    std::vector<std::string> sni_hosts;           ///< TLS only; lower-case, may be wildcards
    std::vector<weighted_destination> destinations;
    uint64_t total_weight = 0;
    uint32_t vs = no_index;
    uint32_t route_index = 0; ///< position in the VS's `tcp` / `tls`
};

struct l4_table {
    std::string gateway; ///< "ns/name" or "mesh"
    uint32_t port = 0;   ///< 0 for mesh
    std::vector<l4_route> routes;
};

// ------------------------------------------------------------------------ clusters

/// One backend of a cluster.
struct endpoint {
    uint64_t id = 0;     ///< stable: maglev::stable_key("network|address:port"); conntrack pins it
    std::string address; ///< IP, or a DNS name for DNS-resolved ServiceEntries
    uint32_t port = 0;
    labels endpoint_labels;
    locality::where locality;
    std::string network;
    std::string node_name;
    std::string k8s_cluster; ///< topology.istio.io/cluster
    uint32_t weight = 1;
    bool ready = true;  ///< false: kept for visibility, never chosen
    std::string origin; ///< "WorkloadEntry ns/name", "EndpointSlice ns/name", ...
};

struct hash_policy {
    enum class key_t : uint8_t { none, header, cookie, source_ip, query_param };
    enum class algorithm_t : uint8_t { ring_hash, maglev };
    key_t key = key_t::none;
    std::string header_name;
    std::string query_param;
    std::string cookie_name;
    std::string cookie_path;
    std::optional<duration> cookie_ttl;
    algorithm_t algorithm = algorithm_t::ring_hash;
    uint64_t minimum_ring_size = 1024;
    uint32_t maglev_table_size = maglev::default_table_size;
};

struct lb_policy {
    enum class simple_t : uint8_t {
        least_request, ///< also UNSPECIFIED (Istio's default)
        round_robin,
        random,
        passthrough,
        least_conn,
    };
    simple_t simple = simple_t::least_request;
    std::optional<hash_policy> hash;
    bool locality_setting = false; ///< the policy set localityLbSetting
    std::optional<duration> warmup;
    double warmup_minimum_percent = 10;
    double warmup_aggression = 1.0;
};

struct tcp_pool_policy {
    uint32_t max_connections = UINT32_MAX;
    duration connect_timeout = std::chrono::seconds(10);
    std::optional<uint32_t> keepalive_probes;
    std::optional<duration> keepalive_time;
    std::optional<duration> keepalive_interval;
    std::optional<duration> max_connection_duration;
    duration idle_timeout = std::chrono::hours(1);
};

struct http_pool_policy {
    uint32_t http1_max_pending_requests = UINT32_MAX;
    uint32_t http2_max_requests = UINT32_MAX;
    uint32_t max_requests_per_connection = 0; ///< 0: unlimited
    uint32_t max_retries = UINT32_MAX;
    duration idle_timeout = std::chrono::hours(1);
    std::string h2_upgrade_policy = "DEFAULT";
    bool use_client_protocol = false;
    uint32_t max_concurrent_streams = 2147483647;
};

struct outlier_policy {
    uint32_t consecutive_5xx_errors = 5;
    std::optional<uint32_t> consecutive_gateway_errors;
    bool split_external_local_origin_errors = false;
    uint32_t consecutive_local_origin_failures = 5;
    duration interval = std::chrono::seconds(10);
    duration base_ejection_time = std::chrono::seconds(30);
    uint32_t max_ejection_percent = 10;
    uint32_t min_health_percent = 0;
    std::vector<uint32_t> http_error_codes;
};

struct tls_policy {
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

/// The policy in force for one cluster, after inheritance (ISTIO.md §1 TrafficPolicy).
struct cluster_policy {
    lb_policy lb;
    tcp_pool_policy tcp;
    http_pool_policy http;
    std::optional<outlier_policy> outlier; ///< unset: no outlier detection
    tls_policy tls;
    std::optional<std::string> tunnel_protocol; ///< tunnel (TCP/TLS only)
    std::string tunnel_target_host;
    uint32_t tunnel_target_port = 0;
    std::optional<std::string> proxy_protocol_version;
    std::optional<double> retry_budget_percent;
    uint32_t retry_budget_min_concurrency = 3;
    /// Envoy healthy_panic_threshold: minHealthPercent with outlierDetection, else 50.
    uint32_t panic_threshold = 50;
    std::string source; ///< "DestinationRule ns/name", "" when no rule applies
};

/// An active health check (the `sluice.io/health-check` annotation on the Service or
/// ServiceEntry): the slow path probes every endpoint of the cluster.
struct health_check_spec {
    enum class kind_t : uint8_t { tcp, http };
    kind_t kind = kind_t::tcp;
    std::string path = "/"; ///< http: the request path (GET, Host = the service host)
    duration interval = std::chrono::seconds(5);
    duration timeout = std::chrono::seconds(1);
    uint32_t unhealthy_threshold = 3; ///< consecutive failures before unhealthy (a 503: at once)
    uint32_t healthy_threshold = 2;   ///< consecutive successes before healthy again

    friend bool operator==(const health_check_spec&, const health_check_spec&) = default;
};

/// Maglev tables of one priority level (over the level's endpoints, in level order).
struct level_tables {
    maglev::table all;
    std::vector<maglev::table> groups; ///< per locality group when the plan is weighted
};

/// One cluster: host x subset x port.
struct cluster {
    std::string name; ///< "outbound|PORT|SUBSET|HOST"
    std::string host;
    std::string subset;
    uint32_t port = 0;
    protocol proto = protocol::unknown;
    /// The route names something no object defines: the runtime answers 503 NC.
    bool missing = false;
    std::string missing_reason;
    bool dns = false;                ///< endpoints are DNS names (ServiceEntry resolution DNS*)
    std::vector<endpoint> endpoints; ///< sorted by id
    cluster_policy policy;
    std::optional<health_check_spec> health_check; ///< unset: no active checks
    locality::policy locality_policy;              ///< what the plan was built from
    std::string distribution_source;               ///< "Service spec.trafficDistribution", ...
    locality::plan plan;
    /// Per plan level; empty when the cluster needs no consistent hashing (see compile.hh).
    std::vector<level_tables> maglev;
};

// ------------------------------------------------------------------------ the snapshot

struct snapshot {
    std::vector<gateway_server> servers;       ///< by gateway, then position
    std::vector<listener> listeners;           ///< by (origin, address, port)
    std::vector<route_table> http;             ///< by (gateway, port)
    std::vector<l4_table> tcp;                 ///< by (gateway, port)
    std::vector<l4_table> tls;                 ///< by (gateway, port)
    std::vector<cluster> clusters;             ///< by name
    std::vector<std::string> virtual_services; ///< "ns/name", sorted
    std::vector<std::string> notes;            ///< compile notes (dropped routes, conflicts)
    size_t regex_count = 0;                    ///< patterns over all tables
    size_t regex_fallback_count = 0;           ///< of which RE2 matches (Hyperscan refused)

    snapshot() = default;
    snapshot(snapshot&&) noexcept = default;
    snapshot& operator=(snapshot&&) noexcept = default;
    snapshot(const snapshot&) = delete;
    snapshot& operator=(const snapshot&) = delete;

    /// Binary search by name; nullptr when absent. No allocation.
    [[nodiscard]] const cluster* find_cluster(std::string_view name) const noexcept;
    /// Index of the cluster, or no_index.
    [[nodiscard]] uint32_t cluster_index(std::string_view name) const noexcept;
    /// The HTTP table of (gateway, port); mesh ignores `port`. nullptr when absent.
    [[nodiscard]] const route_table* find_http(std::string_view gateway,
                                               uint32_t port) const noexcept;
    [[nodiscard]] const l4_table* find_tcp(std::string_view gateway, uint32_t port) const noexcept;
    [[nodiscard]] const l4_table* find_tls(std::string_view gateway, uint32_t port) const noexcept;

    /// Every table and cluster, one line each, in order (Maglev slots as a digest). Two
    /// snapshots are identical iff their descriptions are. Control side: allocates.
    [[nodiscard]] std::string describe() const;
};

/// "outbound|PORT|SUBSET|HOST", as Envoy/Istio name clusters.
[[nodiscard]] std::string cluster_name(uint32_t port, std::string_view subset,
                                       std::string_view host);

/// The cluster of `d` for a request on `listener_port`: d.cluster, else the entry of
/// d.cluster_by_port for that port, else d.fallback_cluster. No allocation.
[[nodiscard]] uint32_t destination_cluster(const weighted_destination& d,
                                           uint32_t listener_port) noexcept;

/// The endpoint of cluster `c` for a new flow: Maglev over the level (and group) the locality
/// selector chose. Returns an index into c.endpoints, or no_index when the cluster has no
/// Maglev table or nothing is usable. Hot path: no allocation.
[[nodiscard]] uint32_t pick_endpoint(const cluster& c, uint16_t level, uint16_t group,
                                     uint64_t hash) noexcept;

} // namespace sluice::snapshot
