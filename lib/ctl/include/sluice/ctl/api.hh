#pragma once
/// @file
/// The REST config port (DESIGN.md §2, §6): routes, bearer-token auth, body limits, and the
/// handlers over the config store. `api::handle` is pure request -> response (tests call it
/// directly); `rest_server` puts it on a socket with cpp-httplib, on its own threads.
///
/// Endpoints: POST /v1/apply[?dryRun=true] (If-Match), POST /v1/delete,
/// DELETE /v1/objects/{kind}/{ns}/{name}, GET /v1/objects[/{kind}[/{ns}[/{name}]]],
/// GET /v1/status, GET /v1/stats, GET /v1/endpoints?host=H[&subset=S], GET /metrics,
/// GET /healthz (no auth), GET /readyz.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/base/result.hh"
#include "sluice/ctl/store.hh"
#include "sluice/net/addr.hh"

namespace sluice::ctl {

inline constexpr size_t max_body_bytes = 8u << 20; ///< 8 MiB; larger bodies answer 413

struct http_request {
    std::string method;
    std::string path;
    std::map<std::string, std::string> query;
    std::map<std::string, std::string> headers; ///< names lower-cased
    std::string body;
};

struct http_response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};

/// What the API reads from the running appliance; each may be left empty.
struct api_hooks {
    std::function<nlohmann::json()> status; ///< ports, lcores, snapshot
    std::function<nlohmann::json()> stats;  ///< counters
    std::function<std::string()> metrics;   ///< Prometheus text
    std::function<bool()> ready;            ///< ports up, snapshot published
    /// {host, subset, endpoints: [{cluster, address, port, labels, locality, network, node,
    /// priority, weight, health, active_connections, active_requests, l4_connections,
    /// l7_connections, origin}]}. l4_connections: open TCP connections through the L4
    /// workers, per endpoint id (network|address:port, so one count across the clusters
    /// naming it) in a 4096-slot direct-mapped table, ids sharing a slot sharing a count;
    /// l7_connections / active_requests: the L7 engine's upstream connections and
    /// outstanding requests for this cluster; active_connections = l4 + l7. A moment's view.
    std::function<result<nlohmann::json>(const std::string& host, const std::string& subset)>
        endpoints;
};

class api {
public:
    api(config_store& store, api_hooks hooks, std::string token);

    /// Routes one request: auth, method and path checks, then the handler.
    http_response handle(const http_request& req) const;

private:
    http_response apply(const http_request& req, bool remove) const;
    http_response objects(const http_request& req, const std::vector<std::string>& parts) const;

    config_store& _store;
    api_hooks _hooks;
    std::string _token;
};

/// Serves an api over HTTP on its own threads until stop().
class rest_server {
public:
    rest_server();
    ~rest_server();
    rest_server(const rest_server&) = delete;
    rest_server& operator=(const rest_server&) = delete;

    /// Binds `address`:`port` (port 0: any free port) and starts serving.
    result<void> start(const api& a, const net::ip_addr& address, uint16_t port);
    /// The bound port (after start).
    [[nodiscard]] uint16_t port() const noexcept { return _port; }
    void stop();

private:
    struct impl;
    std::unique_ptr<impl> _impl;
    std::thread _thread;
    uint16_t _port = 0;
};

} // namespace sluice::ctl
