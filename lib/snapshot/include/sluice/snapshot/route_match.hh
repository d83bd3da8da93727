#pragma once
/// @file
/// Route matching: the one function that decides where an HTTP request goes, used by
/// `sluicectl route check` and by the L7 engine, so the two can never disagree (issue 3).
///
/// Semantics (ISTIO.md §2, Envoy's router):
/// - The table is chosen by (gateway, port); "mesh" has one port-agnostic table. No table:
///   404 (no_listener). The virtual host is chosen by the authority's host: exact domain,
///   then the longest `*.suffix`, then `*`. None: 404 (no_virtual_host, Istio's blackhole).
/// - Routes are tried in order; the first whose match block holds wins. Within a block every
///   condition must hold. None: 404 NR (no_route).
/// - `uri` prefix compares against the whole :path (query included, a plain string prefix:
///   `/v2` matches `/v2example`); exact and regex compare against the path without its query
///   (Envoy `path` / `safe_regex`). ignoreUriCase applies to exact and prefix. Regexes are
///   full matches. Headers are looked up case-insensitively by name (first occurrence);
///   `{}` means present. A withoutHeaders entry excludes the request when that header is
///   present and matches (an absent header never excludes). Query parameters: first
///   occurrence, no percent-decoding; a bare `?key` has the value "" (so `exact: ""` matches
///   it, and `{}` matches any value).
/// - A virtual host of a server with `tls.httpsRedirect` answers 301 to https first.
/// - Outcomes: forward (weighted destinations), redirect (status = code), direct response,
///   fault_abort (an abort fault at 100%, status = httpStatus; a grpcStatus abort or a lower
///   percentage is left to the runtime: the outcome stays forward).
///
/// Thread/hot-path contract: match_route() is noexcept, reads only the snapshot and the
/// request, and allocates nothing on the Hyperscan path (the scratch holds the hit bits;
/// RE2 fallbacks may allocate inside RE2). The decision points into the snapshot and the
/// request: keep both alive while using it. apply_rewrite() and redirect_location() build
/// strings and so allocate: call them only for the outcome that needs them.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "sluice/snapshot/regex_set.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::snapshot {

/// One request header; names compare case-insensitively.
struct header {
    std::string_view name;
    std::string_view value;
};

/// The parts of a request routing looks at (views into the caller's buffers).
struct request {
    std::string_view authority;
    std::string_view path = "/"; ///< with query
    std::string_view method = "GET";
    std::string_view scheme = "http";
    uint32_t port = 80;
    std::string_view gateway = "mesh"; ///< "ns/name" or "mesh"
    std::span<const header> headers;
};

enum class outcome : uint8_t {
    forward,         ///< status 0: send to the destinations
    redirect,        ///< status = redirect code
    https_redirect,  ///< status 301: the server requires TLS
    direct_response, ///< status = directResponse.status
    fault_abort,     ///< status = abort httpStatus (percentage 100)
    no_route,        ///< 404 NR: the host is claimed but no route matches
    no_virtual_host, ///< 404: no VirtualService claims the host on this gateway port
    no_listener,     ///< 404: no HTTP table for this gateway and port
};

[[nodiscard]] const char* to_string(outcome o) noexcept;

/// What routing decided. Pointers are into the snapshot (null when not applicable).
struct decision {
    outcome what = outcome::no_listener;
    uint32_t status = 404; ///< HTTP status the appliance answers itself; 0 for forward
    const route_table* table = nullptr;
    const virtual_host* vhost = nullptr;
    const route_entry* entry = nullptr;
    const route_action* action = nullptr;
    std::string_view virtual_service; ///< "ns/name" of the matched (root) VS
    /// The matched route: position in the root VS's `http` (entry->http_index).
    uint32_t route_index = no_index;
    /// Length of the :path prefix the route matched (prefix matches; for prefix rewrites).
    uint32_t matched_prefix_len = 0;
};

/// Decides where `req` goes. See the file comment for the semantics and the contract.
[[nodiscard]] decision match_route(const snapshot& snap, const request& req,
                                   regex_scratch& scratch) noexcept;

/// The path and authority after `rewrite` (uri: replaces the matched prefix for a prefix
/// match -- no uri condition counts as prefix "/" -- or the whole path for exact/regex;
/// authority; uriRegexRewrite on the path without query). Unchanged parts are copied.
/// Control side / L7 slow path: allocates.
struct rewritten {
    std::string path;
    std::string authority;
};
[[nodiscard]] rewritten apply_rewrite(const decision& d, const request& req);

/// The full Location of a redirect or https_redirect decision, computed as Envoy does:
/// scheme (redirect scheme, else the request's), host (redirect authority, else the
/// request's), port (port, or derivePort FROM_REQUEST_PORT; FROM_PROTOCOL_DEFAULT drops it;
/// a scheme change drops the old scheme's default port), path (uri replaces the path and
/// keeps the query unless it has one; prefixRewrite replaces the matched prefix). Allocates.
[[nodiscard]] std::string redirect_location(const decision& d, const request& req);

/// The first query parameter `name` of `path` (the :path with its query; case-sensitive,
/// not decoded; a bare `key` is ""), or nullopt. The matcher's own rule, for the L7 engine's
/// consistent-hash keys. No allocation.
[[nodiscard]] std::optional<std::string_view> query_value(std::string_view path,
                                                          std::string_view name) noexcept;

/// Whether `origin` is one of the CORS policy's allowOrigins (exact, prefix, or a full RE2
/// match of the compiled regex). No allocation.
[[nodiscard]] bool cors_origin_allowed(const cors_action& c, std::string_view origin) noexcept;

/// The TCP/TLS route of a connection. `sni` is empty for TCP. Hot path: no allocation.
struct l4_decision {
    const l4_route* route = nullptr; ///< null: no route (the connection is closed)
    std::string_view virtual_service;
};
[[nodiscard]] l4_decision match_tcp(const snapshot& snap, std::string_view gateway, uint32_t port,
                                    const net::ip_addr& destination) noexcept;
[[nodiscard]] l4_decision match_tls(const snapshot& snap, std::string_view gateway, uint32_t port,
                                    std::string_view sni, const net::ip_addr& destination) noexcept;

} // namespace sluice::snapshot
