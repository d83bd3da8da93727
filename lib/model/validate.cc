// Validation of the mesh model (decode.hh validate()).
//
// Per-object rules follow upstream Istio, pkg/config/validation/validation.go,
// virtualservice.go and agent/validation.go (istio/istio @86c9f01); messages keep upstream's
// wording where it has one, prefixed by the object and the field path as istioctl prints
// them. Cross-object references are warnings: objects arrive in any order, and at runtime a
// dangling reference answers 503.

#include <arpa/inet.h>
#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sluice/model/decode.hh"

namespace sluice::model {
namespace {

// ---------------------------------------------------------------- syntax helpers

bool is_dns_label(std::string_view s)
{
    // labels.IsDNS1123Label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters.
    if (s.empty() || s.size() > 63) {
        return false;
    }
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!alnum(s.front()) || !alnum(s.back())) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-'; });
}

bool is_dns_name(std::string_view s)
{
    if (s.empty() || s.size() > 255) {
        return false;
    }
    if (s.back() == '.') {
        s.remove_suffix(1); // a trailing dot is allowed ("istio.io.")
    }
    while (true) {
        const auto dot = s.find('.');
        if (!is_dns_label(s.substr(0, dot))) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        s.remove_prefix(dot + 1);
    }
}

/// agent.ValidateWildcardDomain: a DNS name whose first label may be "*" or "*foo".
bool is_wildcard_domain(std::string_view s)
{
    if (s.empty() || s.size() > 255) {
        return false;
    }
    const auto dot = s.find('.');
    std::string_view first = s.substr(0, dot);
    if (!first.empty() && first.front() == '*') {
        first.remove_prefix(1);
        if (!first.empty() && !is_dns_label(first)) {
            return false;
        }
    } else if (!is_dns_label(first)) {
        return false;
    }
    return dot == std::string_view::npos || is_dns_name(s.substr(dot + 1));
}

bool is_ip(const std::string& s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool is_cidr_or_ip(const std::string& s)
{
    const auto slash = s.find('/');
    if (slash == std::string::npos) {
        return is_ip(s);
    }
    const std::string addr = s.substr(0, slash);
    const std::string len = s.substr(slash + 1);
    if (len.empty() || len.size() > 3 ||
        !std::all_of(len.begin(), len.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return false;
    }
    unsigned char buf[16];
    const int bits = std::stoi(len);
    if (inet_pton(AF_INET, addr.c_str(), buf) == 1) {
        return bits <= 32;
    }
    return inet_pton(AF_INET6, addr.c_str(), buf) == 1 && bits <= 128;
}

bool valid_port(uint32_t p)
{
    return p >= 1 && p <= 65535;
}

bool is_prime(uint64_t x)
{
    // Envoy's (and Istio's copy of) isPrime.
    if (x != 0 && x < 4) {
        return true;
    }
    if ((x & 1) == 0) {
        return false;
    }
    for (uint64_t f = 3; f * f <= x; f += 2) {
        if (x % f == 0) {
            return false;
        }
    }
    return true;
}

/// "a" lies within "b" (host.Name SubsetOf): equal, or b is a wildcard covering a.
bool host_within(std::string_view a, std::string_view b)
{
    if (b == "*") {
        return true;
    }
    if (!b.empty() && b.front() == '*') {
        const std::string_view suffix = b.substr(1);
        if (!a.empty() && a.front() == '*') {
            a.remove_prefix(1);
        }
        return a.size() >= suffix.size() && a.substr(a.size() - suffix.size()) == suffix;
    }
    return a == b;
}

std::string upper(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}

bool known_protocol(const std::string& p)
{
    static const std::set<std::string> protocols = {
        "HTTP",  "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO",
        "REDIS", "MYSQL", "TCP",  "TLS",      "UDP",   "HTTP_PROXY",
    };
    return protocols.count(upper(p)) > 0;
}

bool is_http_protocol(const std::string& p)
{
    const std::string u = upper(p);
    return u == "HTTP" || u == "HTTP2" || u == "GRPC" || u == "GRPC-WEB" || u == "HTTP_PROXY";
}

bool is_tls_protocol(const std::string& p)
{
    const std::string u = upper(p);
    return u == "HTTPS" || u == "TLS";
}

constexpr size_t k_max_regex_length = 1024;      // Istio validateStringRegexp
constexpr int64_t k_regex_max_mem = 1024 * 1024; // RE2 program memory cap

std::string check_regex(const std::string& re)
{
    if (re.empty()) {
        return "regex string match should not be empty";
    }
    if (re.size() > k_max_regex_length) {
        return "regex is too large, max length allowed is 1024";
    }
    RE2::Options o;
    o.set_log_errors(false);
    o.set_max_mem(k_regex_max_mem);
    const RE2 compiled(re, o);
    if (!compiled.ok()) {
        return "invalid RE2 regex: " + compiled.error() +
               "; Istio uses RE2 style regex-based match "
               "(https://github.com/google/re2/wiki/Syntax)";
    }
    return {};
}

// ---------------------------------------------------------------- cross-object index

struct xref {
    std::unordered_set<std::string> hosts;   ///< Service FQDNs and ServiceEntry hosts
    std::vector<std::string> wildcard_hosts; ///< "*.example.com" ServiceEntry hosts
    std::unordered_map<std::string, std::unordered_set<std::string>> subsets; ///< by DR host
    std::vector<const destination_rule*> wildcard_rules;
    std::unordered_set<std::string> gateways; ///< "ns/name"
    std::unordered_set<std::string> virtual_services;
    std::unordered_set<std::string> delegated; ///< "ns/name" some VS delegates to

    [[nodiscard]] bool host_defined(const std::string& h) const
    {
        if (hosts.count(h) > 0) {
            return true;
        }
        return std::any_of(wildcard_hosts.begin(), wildcard_hosts.end(),
                           [&](const std::string& w) { return host_within(h, w); });
    }

    [[nodiscard]] bool subset_defined(const std::string& h, const std::string& s) const
    {
        const auto it = subsets.find(h);
        if (it != subsets.end() && it->second.count(s) > 0) {
            return true;
        }
        for (const auto* dr : wildcard_rules) {
            if (host_within(h, dr->host)) {
                for (const auto& sub : dr->subsets) {
                    if (sub.name == s) {
                        return true;
                    }
                }
            }
        }
        return false;
    }
};

xref build_xref(const mesh& m, const options& opts)
{
    xref x;
    for (const auto& svc : m.services) {
        x.hosts.insert(svc.meta.name + "." + svc.meta.ns + ".svc." + opts.cluster_domain);
    }
    for (const auto& se : m.service_entries) {
        for (const auto& h : se.hosts) {
            if (!h.empty() && h.front() == '*') {
                x.wildcard_hosts.push_back(h);
            } else {
                // Short ServiceEntry hosts resolve in the entry's namespace, as VS hosts do.
                x.hosts.insert(resolve_host(h, se.meta.ns, opts));
            }
        }
    }
    for (const auto& dr : m.destination_rules) {
        if (!dr.host.empty() && dr.host.front() == '*') {
            x.wildcard_rules.push_back(&dr);
            continue;
        }
        auto& set = x.subsets[dr.host];
        for (const auto& s : dr.subsets) {
            set.insert(s.name);
        }
    }
    for (const auto& g : m.gateways) {
        x.gateways.insert(g.meta.ns + "/" + g.meta.name);
    }
    for (const auto& vs : m.virtual_services) {
        x.virtual_services.insert(vs.meta.ns + "/" + vs.meta.name);
        for (const auto& r : vs.http) {
            if (r.delegate) {
                x.delegated.insert(r.delegate->ns + "/" + r.delegate->name);
            }
        }
    }
    return x;
}

// ---------------------------------------------------------------- reporting

std::string at(const std::string& path, const std::string& key)
{
    return path + "." + key;
}
std::string idx(const std::string& path, size_t i)
{
    return path + "[" + std::to_string(i) + "]";
}

class sink {
public:
    sink(std::vector<diagnostic>& out, const object_meta& m) : _out(out), _m(m), _id(m.id()) {}

    void error(const std::string& field, std::string msg)
    {
        _out.push_back({severity::error, _id, field, std::move(msg), _m.file, _m.line});
    }
    void warning(const std::string& field, std::string msg)
    {
        _out.push_back({severity::warning, _id, field, std::move(msg), _m.file, _m.line});
    }
    [[nodiscard]] const object_meta& meta() const { return _m; }

private:
    std::vector<diagnostic>& _out;
    const object_meta& _m;
    std::string _id;
};

void check_port(sink& s, const std::string& field, uint32_t port)
{
    if (!valid_port(port)) {
        s.error(field, "port number " + std::to_string(port) + " must be between 1 and 65535");
    }
}

void check_percent(sink& s, const std::string& field, double v)
{
    // validatePercentage also refuses (0, 0.0001): Envoy's fractional percent resolution.
    if (v < 0 || v > 100) {
        s.error(field, "must be between 0 and 100");
    } else if (v > 0 && v < 0.0001) {
        s.error(field, "percentage must be 0 or between 0.0001 and 100");
    }
}

void check_duration(sink& s, const std::string& field, duration d)
{
    // agent.ValidateDuration.
    if (d < std::chrono::milliseconds(1)) {
        s.error(field, "duration must be at least 1ms");
    } else if (d % std::chrono::milliseconds(1) != duration{0}) {
        s.error(field, "only durations to ms precision are supported");
    }
}

void check_export_to(sink& s, const std::vector<std::string>& export_to, bool service_entry)
{
    std::set<std::string> seen;
    for (size_t i = 0; i < export_to.size(); ++i) {
        const std::string& e = export_to[i];
        const std::string f = idx("spec.exportTo", i);
        const std::string key = e == "." ? s.meta().ns : e;
        if (!seen.insert(key).second) {
            s.error(f, "duplicate entries in exportTo for entry " + e);
            continue;
        }
        if (e != "." && e != "*" && !(service_entry && e == "~") && !is_dns_label(e)) {
            s.error(f, "invalid exportTo value \"" + e + "\"");
        }
    }
    if (seen.count("*") > 0 && export_to.size() > 1) {
        s.error("spec.exportTo",
                "cannot have both public (*) and non-public exportTo values for a resource");
    }
    if (seen.count("~") > 0 && export_to.size() > 1) {
        s.error("spec.exportTo", "cannot export service entry to no one (~) and someone");
    }
}

void check_gateway_names(sink& s, const std::string& path, const std::vector<std::string>& gws,
                         const xref& x)
{
    for (size_t i = 0; i < gws.size(); ++i) {
        const std::string& g = gws[i];
        if (g == "mesh") {
            continue;
        }
        const auto slash = g.find('/');
        const std::string ns = g.substr(0, slash);
        const std::string name = slash == std::string::npos ? "" : g.substr(slash + 1);
        if (ns.empty() || name.empty()) {
            s.error(idx(path, i), "config namespace and gateway name cannot be empty");
        } else if (!is_dns_label(ns)) {
            s.error(idx(path, i), "invalid value for namespace: \"" + ns + "\"");
        } else if (!is_dns_label(name)) {
            s.error(idx(path, i), "invalid value for gateway name: \"" + name + "\"");
        } else if (x.gateways.count(g) == 0) {
            s.warning(idx(path, i), "gateway \"" + g + "\" is not defined by any Gateway");
        }
    }
}

void check_string_match(sink& s, const std::string& field, const string_match& m)
{
    if (m.how == string_match::kind::regex) {
        const std::string e = check_regex(m.value);
        if (!e.empty()) {
            s.error(at(field, "regex"), e);
        }
    }
}

bool valid_header_name(const std::string& n)
{
    return !n.empty() && std::all_of(n.begin(), n.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
}

void check_header_ops(sink& s, const std::string& path, const header_ops& ops, bool request)
{
    auto check_name = [&](const std::string& field, const std::string& name, bool set) {
        if (name.empty()) {
            s.error(field, "header name cannot be empty");
            return;
        }
        const bool authority = name == ":authority" || upper(name) == "HOST";
        if (request && set && authority) {
            return; // authority rewrite through headers is allowed for requests
        }
        if (upper(name) == "HOST") {
            s.error(field, "invalid header \"" + name + "\": cannot set Host header");
        } else if (name.front() == ':') {
            s.error(field, "invalid header \"" + name + "\": header cannot have \":\" prefix");
        }
    };
    for (const auto& [k, v] : ops.set) {
        check_name(at(at(path, "set"), k), k, true);
    }
    for (const auto& [k, v] : ops.add) {
        check_name(at(at(path, "add"), k), k, true);
    }
    for (size_t i = 0; i < ops.remove.size(); ++i) {
        check_name(idx(at(path, "remove"), i), ops.remove[i], false);
    }
}

void check_headers(sink& s, const std::string& path, const headers_policy& h)
{
    check_header_ops(s, at(path, "request"), h.request, true);
    check_header_ops(s, at(path, "response"), h.response, false);
}

void check_destination(sink& s, const std::string& path, const destination& d, const xref& x)
{
    if (d.host.empty()) {
        s.error(at(path, "host"), "destination host is required");
    } else if (d.host == "*") {
        s.error(at(path, "host"), "invalid destination host *");
    } else if (!is_wildcard_domain(d.host) && !is_ip(d.host)) {
        s.error(at(path, "host"), "invalid destination host \"" + d.host + "\"");
    } else if (d.host.front() != '*' && !is_ip(d.host)) {
        if (!x.host_defined(d.host)) {
            s.warning(at(path, "host"),
                      "host \"" + d.host + "\" is not defined by any Service or ServiceEntry");
        }
        if (!d.subset.empty() && is_dns_label(d.subset) && !x.subset_defined(d.host, d.subset)) {
            s.warning(at(path, "subset"), "subset \"" + d.subset +
                                              "\" is not defined by any DestinationRule for "
                                              "host \"" +
                                              d.host + "\"");
        }
    }
    if (!d.subset.empty() && !is_dns_label(d.subset)) {
        s.error(at(path, "subset"), "subset name is invalid: " + d.subset);
    }
    if (d.port) {
        check_port(s, at(path, "port.number"), *d.port);
    }
}

void check_route_destinations(sink& s, const std::string& path,
                              const std::vector<route_destination>& dests, bool http, const xref& x)
{
    // Upstream (validateHTTPRouteDestinations / validateRouteDestinations) no longer requires
    // the weights to sum to 100: Envoy normalises them (share = weight / total). It refuses a
    // negative weight and, with more than one destination, a total of 0. The 0..100 range is
    // sluice's (issue 3): weights are written as percentages everywhere in Istio's docs.
    int64_t total = 0;
    for (size_t i = 0; i < dests.size(); ++i) {
        const std::string p = idx(path, i);
        check_destination(s, at(p, "destination"), dests[i].dest, x);
        if (dests[i].weight) {
            const int32_t w = *dests[i].weight;
            if (w < 0 || w > 100) {
                s.error(at(p, "weight"), "must be between 0 and 100");
            }
            total += w;
        }
        if (http) {
            check_headers(s, at(p, "headers"), dests[i].headers);
        }
    }
    if (dests.size() > 1 && total == 0) {
        s.error(path, "total destination weight = 0");
    }
}

// ---------------------------------------------------------------- VirtualService

const std::set<std::string>& retry_on_policies()
{
    static const std::set<std::string> p = {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    };
    return p;
}

bool valid_grpc_status(const std::string& s)
{
    static const std::set<std::string> names = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    return names.count(s) > 0;
}

void check_match(sink& s, const std::string& p, const http_match& m, bool delegating)
{
    const std::pair<const char*, const std::optional<string_match>*> single[] = {
        {"uri", &m.uri},
        {"scheme", &m.scheme},
        {"method", &m.method},
        {"authority", &m.authority},
    };
    for (const auto& [name, sm] : single) {
        if (!*sm) {
            continue;
        }
        check_string_match(s, at(p, name), **sm);
        if (delegating && (*sm)->how == string_match::kind::regex) {
            s.error(at(at(p, name), "regex"),
                    std::string(name) + " match does not support regex match for delegating");
        }
    }
    for (const auto& [map, name] :
         {std::pair{&m.headers, "headers"}, std::pair{&m.without_headers, "withoutHeaders"}}) {
        for (const auto& [k, v] : *map) {
            const std::string f = at(at(p, name), k);
            if (!valid_header_name(k)) {
                s.error(f, "header name " + k + " is not a valid header name");
            }
            check_string_match(s, f, v);
            if (delegating && v.how == string_match::kind::regex) {
                s.error(at(f, "regex"),
                        "header match " + k + " does not support regex match for delegating");
            }
        }
    }
    for (const auto& [k, v] : m.query_params) {
        const std::string f = at(at(p, "queryParams"), k);
        check_string_match(s, f, v);
        if (delegating && v.how == string_match::kind::regex) {
            s.error(at(f, "regex"),
                    "query param match " + k + " does not support regex match for delegating");
        }
    }
    if (m.port && *m.port > 65535) {
        check_port(s, at(p, "port"), *m.port);
    }
    if (!m.source_namespace.empty() && !is_dns_label(m.source_namespace)) {
        s.error(at(p, "sourceNamespace"),
                "sourceNamespace match " + m.source_namespace + " is invalid");
    }
}

void check_http_route(sink& s, const std::string& p, const http_route& r, bool in_delegate,
                      const xref& x)
{
    const int kinds = (r.route.empty() ? 0 : 1) + (r.redirect ? 1 : 0) +
                      (r.direct_response ? 1 : 0) + (r.delegate ? 1 : 0);
    if (kinds == 0) {
        s.error(p, "one of route, redirect, directResponse or delegate is required");
    } else if (kinds > 1) {
        s.error(p, "only one of route, redirect, directResponse or delegate may be set");
    }
    if (r.delegate && in_delegate) {
        s.error(at(p, "delegate"), "delegate HTTP route cannot contain delegate");
    }
    if (r.delegate) {
        if (r.delegate->name.empty()) {
            s.error(at(p, "delegate.name"), "delegate name is required");
        } else if (x.virtual_services.count(r.delegate->ns + "/" + r.delegate->name) == 0) {
            s.warning(at(p, "delegate"), "VirtualService \"" + r.delegate->ns + "/" +
                                             r.delegate->name + "\" is not defined");
        }
    }
    if (r.redirect && r.fault) {
        s.error(p, "HTTP route cannot contain both fault and redirect");
    }
    if (r.redirect && r.rewrite) {
        s.error(p, "HTTP route rule cannot contain both rewrite and redirect");
    }
    const bool delegating = in_delegate || r.delegate.has_value();
    for (size_t j = 0; j < r.match.size(); ++j) {
        check_match(s, idx(at(p, "match"), j), r.match[j], delegating);
        check_gateway_names(s, at(idx(at(p, "match"), j), "gateways"), r.match[j].gateways, x);
    }
    check_route_destinations(s, at(p, "route"), r.route, true, x);
    if (r.redirect) {
        const std::string rp = at(p, "redirect");
        const auto& rd = *r.redirect;
        if (rd.uri.empty() && rd.authority.empty() && !rd.port && rd.scheme.empty() &&
            !rd.prefix_rewrite && rd.derive_port == http_redirect::derive::unset) {
            s.error(rp, "redirect must specify URI, authority, scheme, or port");
        }
        if (!rd.uri.empty() && rd.prefix_rewrite) {
            s.error(rp, "only one of uri or prefixRewrite may be set");
        }
        if (rd.port && rd.derive_port != http_redirect::derive::unset) {
            s.error(rp, "only one of port or derivePort may be set");
        }
        // Envoy's RedirectResponseCode has exactly these five; upstream only checks 3xx.
        const uint32_t c = rd.redirect_code;
        if (c != 301 && c != 302 && c != 303 && c != 307 && c != 308) {
            s.error(at(rp, "redirectCode"),
                    std::to_string(c) + " is not a valid redirect code, must be one of 301, "
                                        "302, 303, 307 or 308");
        }
        if (!rd.scheme.empty() && rd.scheme != "http" && rd.scheme != "https") {
            s.error(at(rp, "scheme"), "invalid redirect scheme, must be \"http\" or \"https\"");
        }
        if (rd.port) {
            check_port(s, at(rp, "port"), *rd.port);
        }
    }
    if (r.direct_response) {
        const std::string dp = at(p, "directResponse");
        const auto& dr = *r.direct_response;
        if (dr.status < 200 || dr.status > 599) {
            s.error(at(dp, "status"),
                    "HTTP status " + std::to_string(dr.status) + " is not in range 200-599");
        }
        if (dr.body && dr.body->size() > 1024 * 1024) {
            s.error(at(dp, "body"), "large direct_responses may impact control plane "
                                    "performance, must be less than 1MB");
        } else if (dr.body && dr.body->size() > 100 * 1024) {
            s.warning(at(dp, "body"),
                      "large direct_responses may impact control plane performance");
        }
    }
    if (r.timeout) {
        check_duration(s, at(p, "timeout"), *r.timeout);
    }
    if (r.retries) {
        const std::string rp = at(p, "retries");
        const auto& rt = *r.retries;
        if (rt.attempts == 0 &&
            (rt.per_try_timeout || !rt.retry_on.empty() || rt.retry_remote_localities)) {
            s.error(rp, "http retry policy configured when attempts are set to 0 (disabled)");
        }
        if (rt.per_try_timeout) {
            check_duration(s, at(rp, "perTryTimeout"), *rt.per_try_timeout);
        }
        if (rt.backoff) {
            check_duration(s, at(rp, "backoff"), *rt.backoff);
        }
        size_t start = 0;
        while (!rt.retry_on.empty() && start <= rt.retry_on.size()) {
            auto comma = rt.retry_on.find(',', start);
            if (comma == std::string::npos) {
                comma = rt.retry_on.size();
            }
            const std::string tok = rt.retry_on.substr(start, comma - start);
            const bool code = !tok.empty() && tok.size() == 3 &&
                              std::all_of(tok.begin(), tok.end(),
                                          [](char ch) { return ch >= '0' && ch <= '9'; }) &&
                              tok[0] >= '1' && tok[0] <= '5';
            if (!code && retry_on_policies().count(tok) == 0) {
                s.error(at(rp, "retryOn"), "\"" + tok + "\" is not a valid retryOn policy");
            }
            start = comma + 1;
        }
    }
    if (r.fault) {
        const std::string fp = at(p, "fault");
        const auto& f = *r.fault;
        if (!f.abort && !f.delay) {
            s.error(fp, "HTTP fault injection must have an abort and/or a delay");
        }
        if (f.delay) {
            if (f.delay->percentage) {
                check_percent(s, at(fp, "delay.percentage.value"), *f.delay->percentage);
            }
            if (f.delay->fixed_delay) {
                check_duration(s, at(fp, "delay.fixedDelay"), *f.delay->fixed_delay);
            } else {
                s.error(at(fp, "delay"), "fixedDelay is required");
            }
        }
        if (f.abort) {
            if (f.abort->percentage) {
                check_percent(s, at(fp, "abort.percentage.value"), *f.abort->percentage);
            }
            if (f.abort->http_status && f.abort->grpc_status) {
                s.error(at(fp, "abort"), "only one of httpStatus or grpcStatus may be set");
            }
            if (f.abort->http_status &&
                (*f.abort->http_status < 200 || *f.abort->http_status > 599)) {
                s.error(at(fp, "abort.httpStatus"), "HTTP status " +
                                                        std::to_string(*f.abort->http_status) +
                                                        " is not in range 200-599");
            }
            if (f.abort->grpc_status && !valid_grpc_status(*f.abort->grpc_status)) {
                s.error(at(fp, "abort.grpcStatus"),
                        "gRPC status \"" + *f.abort->grpc_status +
                            "\" is not supported; use a name such as NOT_FOUND or UNAVAILABLE");
            }
            if (!f.abort->http_status && !f.abort->grpc_status) {
                s.warning(at(fp, "abort"), "abort configured, but error type not set");
            }
        }
    }
    if (r.mirror) {
        check_destination(s, at(p, "mirror"), *r.mirror, x);
    }
    if (r.mirror_percentage) {
        check_percent(s, at(p, "mirrorPercentage.value"), *r.mirror_percentage);
    }
    for (size_t k = 0; k < r.mirrors.size(); ++k) {
        const std::string mp = idx(at(p, "mirrors"), k);
        check_destination(s, at(mp, "destination"), r.mirrors[k].dest, x);
        if (r.mirrors[k].percentage) {
            check_percent(s, at(mp, "percentage.value"), *r.mirrors[k].percentage);
        }
    }
    if (r.rewrite) {
        const std::string rp = at(p, "rewrite");
        const auto& rw = *r.rewrite;
        if (!rw.uri.empty() && rw.uri_regex_rewrite) {
            s.error(rp, "rewrite may only contain one of uri or uriRegexRewrite");
        }
        if (rw.uri.empty() && !rw.uri_regex_rewrite && rw.authority.empty()) {
            s.error(rp, "rewrite must specify at least one of uri, uriRegexRewrite, or authority");
        }
        if (rw.uri_regex_rewrite) {
            const auto& rr = *rw.uri_regex_rewrite;
            if (rr.match.empty() || rr.rewrite.empty()) {
                s.error(at(rp, "uriRegexRewrite"),
                        "uriRegexRewrite requires both rewrite and match fields to be specified");
            } else {
                const std::string e = check_regex(rr.match);
                if (!e.empty()) {
                    s.error(at(rp, "uriRegexRewrite.match"), e);
                }
            }
        }
    }
    if (r.cors) {
        const std::string cp = at(p, "corsPolicy");
        static const std::set<std::string> methods = {
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"};
        for (size_t k = 0; k < r.cors->allow_origins.size(); ++k) {
            const auto& o = r.cors->allow_origins[k];
            const std::string op = idx(at(cp, "allowOrigins"), k);
            if (o.how == string_match::kind::any || o.value.empty()) {
                s.error(op, "'' is not a valid match type for CORS allow origins");
            } else {
                check_string_match(s, op, o);
            }
        }
        for (size_t k = 0; k < r.cors->allow_methods.size(); ++k) {
            if (methods.count(r.cors->allow_methods[k]) == 0) {
                s.error(idx(at(cp, "allowMethods"), k),
                        "\"" + r.cors->allow_methods[k] + "\" is not a supported HTTP method");
            }
        }
        for (const auto& [list, name] : {std::pair{&r.cors->allow_headers, "allowHeaders"},
                                         std::pair{&r.cors->expose_headers, "exposeHeaders"}}) {
            for (size_t k = 0; k < list->size(); ++k) {
                const std::string& h = (*list)[k];
                if (h != "*" && !valid_header_name(h)) {
                    s.error(idx(at(cp, name), k),
                            "header name " + h + " is not a valid header name");
                }
            }
        }
        if (r.cors->max_age) {
            check_duration(s, at(cp, "maxAge"), *r.cors->max_age);
            if (*r.cors->max_age % std::chrono::seconds(1) != duration{0}) {
                s.error(at(cp, "maxAge"), "max_age duration is accurate only to seconds precision");
            }
        }
        const auto& up = r.cors->unmatched_preflights;
        if (!up.empty() && up != "FORWARD" && up != "IGNORE" && up != "UNSPECIFIED") {
            s.error(at(cp, "unmatchedPreflights"),
                    "unknown value \"" + up + "\"; expected FORWARD or IGNORE");
        }
    }
    check_headers(s, at(p, "headers"), r.headers);
}

void check_l4_match(sink& s, const std::string& p, const std::vector<std::string>& subnets,
                    const std::optional<uint32_t>& port, const std::vector<std::string>& gws,
                    const xref& x)
{
    for (size_t k = 0; k < subnets.size(); ++k) {
        if (!is_cidr_or_ip(subnets[k])) {
            s.error(idx(at(p, "destinationSubnets"), k),
                    "\"" + subnets[k] + "\" is not a valid IP address or CIDR");
        }
    }
    if (port && *port > 65535) {
        check_port(s, at(p, "port"), *port);
    }
    check_gateway_names(s, at(p, "gateways"), gws, x);
}

void check_virtual_service(sink& s, const virtual_service& vs, const xref& x)
{
    const bool delegate = vs.hosts.empty();
    if (delegate) {
        // Istio takes a VS without hosts for a delegate. Without cross-object knowledge that
        // is all it can do; here the whole mesh is known, so an unreferenced one is an error.
        if (x.delegated.count(vs.meta.ns + "/" + vs.meta.name) == 0) {
            s.error("spec.hosts", "at least one host is required (a VirtualService without "
                                  "hosts must be a delegate, and none delegates to it)");
        }
        if (!vs.gateways.empty()) {
            s.error("spec.gateways", "delegate virtual service must have no gateways specified");
        }
        if (!vs.tls.empty()) {
            s.error("spec.tls", "delegate virtual service must have no tls route specified");
        }
        if (!vs.tcp.empty()) {
            s.error("spec.tcp", "delegate virtual service must have no tcp route specified");
        }
    }
    check_gateway_names(s, "spec.gateways", vs.gateways, x);
    const bool applies_to_mesh =
        vs.gateways.empty() ||
        std::find(vs.gateways.begin(), vs.gateways.end(), "mesh") != vs.gateways.end();
    std::set<std::string> seen;
    for (size_t i = 0; i < vs.hosts.size(); ++i) {
        const std::string& h = vs.hosts[i];
        const std::string f = idx("spec.hosts", i);
        if (h == "*" && applies_to_mesh) {
            s.error(f, "wildcard host * is not allowed for virtual services bound to the mesh "
                       "gateway");
        } else if (h != "*" && !is_wildcard_domain(h) && !is_ip(h)) {
            s.error(f, "invalid host \"" + h + "\"");
        }
        if (!seen.insert(h).second) {
            s.error(f, "duplicate hosts in virtual service: " + h);
        }
    }
    if (vs.http.empty() && vs.tcp.empty() && vs.tls.empty()) {
        s.error("spec", "http, tcp or tls must be provided in virtual service");
    }
    for (size_t i = 0; i < vs.http.size(); ++i) {
        check_http_route(s, idx("spec.http", i), vs.http[i], delegate, x);
    }
    for (size_t i = 0; i < vs.tls.size(); ++i) {
        const std::string p = idx("spec.tls", i);
        const auto& r = vs.tls[i];
        if (r.match.empty()) {
            s.error(at(p, "match"), "TLS route must have at least one match condition");
        }
        for (size_t j = 0; j < r.match.size(); ++j) {
            const std::string mp = idx(at(p, "match"), j);
            const auto& m = r.match[j];
            if (m.sni_hosts.empty()) {
                s.error(at(mp, "sniHosts"), "TLS match must have at least one SNI host");
            }
            for (size_t k = 0; k < m.sni_hosts.size(); ++k) {
                const std::string& sni = m.sni_hosts[k];
                const std::string sp = idx(at(mp, "sniHosts"), k);
                if (!is_wildcard_domain(sni) && sni != "*") {
                    s.error(sp, "invalid SNI host \"" + sni + "\"");
                    continue;
                }
                const bool within =
                    std::any_of(vs.hosts.begin(), vs.hosts.end(),
                                [&](const std::string& h) { return host_within(sni, h); });
                if (!within) {
                    std::string list;
                    for (const auto& h : vs.hosts) {
                        list += (list.empty() ? "" : ", ") + h;
                    }
                    s.error(sp, "SNI host \"" + sni +
                                    "\" is not a compatible subset of any of "
                                    "the virtual service hosts: [" +
                                    list + "]");
                }
            }
            check_l4_match(s, mp, m.destination_subnets, m.port, m.gateways, x);
        }
        if (r.route.empty()) {
            s.error(at(p, "route"), "TLS route is required");
        }
        check_route_destinations(s, at(p, "route"), r.route, false, x);
    }
    for (size_t i = 0; i < vs.tcp.size(); ++i) {
        const std::string p = idx("spec.tcp", i);
        const auto& r = vs.tcp[i];
        for (size_t j = 0; j < r.match.size(); ++j) {
            const auto& m = r.match[j];
            check_l4_match(s, idx(at(p, "match"), j), m.destination_subnets, m.port, m.gateways, x);
        }
        if (r.route.empty()) {
            s.error(at(p, "route"), "TCP route is required");
        }
        check_route_destinations(s, at(p, "route"), r.route, false, x);
    }
    check_export_to(s, vs.export_to, false);
}

// ---------------------------------------------------------------- DestinationRule

std::string check_locality(const std::string& l)
{
    const auto stars = std::count(l.begin(), l.end(), '*');
    if (stars > 1 || (stars == 1 && l.back() != '*')) {
        return "locality " + l + " wildcard '*' number can not exceed 1 and must be in the end";
    }
    size_t start = 0;
    int parts = 0;
    while (true) {
        const auto slash = l.find('/', start);
        ++parts;
        if ((slash == std::string::npos ? l.size() : slash) == start || parts > 3) {
            return "locality " + l + " must not contain empty region/zone/subzone info";
        }
        if (slash == std::string::npos) {
            return {};
        }
        start = slash + 1;
    }
}

void check_locality_lb(sink& s, const std::string& p, const locality_lb_setting& l,
                       bool has_outlier)
{
    // agent.ValidateLocalityLbSetting.
    if (!l.distribute.empty() && !l.failover.empty()) {
        s.error(p, "can not simultaneously specify 'distribute' and 'failover'");
        return;
    }
    if (!l.failover.empty()) {
        for (size_t i = 0; i < l.failover_priority.size(); ++i) {
            const std::string& lbl = l.failover_priority[i];
            if (lbl == "topology.kubernetes.io/region" || lbl == "topology.kubernetes.io/zone" ||
                lbl == "topology.istio.io/subzone") {
                s.error(idx(at(p, "failoverPriority"), i),
                        "can not simultaneously set 'failover' and topology label '" + lbl +
                            "' in 'failoverPriority'");
            }
        }
    }
    for (size_t i = 0; i < l.failover_priority.size(); ++i) {
        if (l.failover_priority[i].empty()) {
            s.error(idx(at(p, "failoverPriority"), i), "label must not be empty");
        }
    }
    for (size_t i = 0; i < l.distribute.size(); ++i) {
        const auto& d = l.distribute[i];
        const std::string dp = idx(at(p, "distribute"), i);
        std::string e = check_locality(d.from);
        if (!e.empty()) {
            s.error(at(dp, "from"), e);
        }
        uint64_t total = 0;
        bool ranged = true;
        for (const auto& [loc, w] : d.to) {
            if (w == 0 || w > 100) {
                s.error(at(at(dp, "to"), loc), "locality weight must be in range [1, 100]");
                ranged = false;
            }
            total += w;
            e = check_locality(loc);
            if (!e.empty()) {
                s.error(at(at(dp, "to"), loc), e);
            }
        }
        if (ranged && total != 100) {
            s.error(at(dp, "to"), "total locality weight " + std::to_string(total) + " != 100");
        }
    }
    if ((!l.failover.empty() || !l.failover_priority.empty()) && !has_outlier) {
        s.warning(p, "outlier detection policy must be provided for failover");
    }
    for (size_t i = 0; i < l.failover.size(); ++i) {
        const auto& f = l.failover[i];
        const std::string fp = idx(at(p, "failover"), i);
        if (f.from == f.to) {
            s.error(fp, "locality lb failover settings must specify different regions");
        }
        if (f.from.find('/') != std::string::npos || f.to.find('/') != std::string::npos) {
            s.error(fp, "locality lb failover only specify region");
        }
        if (f.from.find('*') != std::string::npos || f.to.find('*') != std::string::npos) {
            s.error(fp, "locality lb failover region should not contain '*' wildcard");
        }
    }
}

void check_load_balancer(sink& s, const std::string& p, const load_balancer& lb, bool has_outlier)
{
    if (lb.hash) {
        const std::string hp = at(p, "consistentHash");
        const auto& h = *lb.hash;
        if (h.by == consistent_hash::key::none) {
            s.error(hp, "exactly one of httpHeaderName, httpCookie, useSourceIp or "
                        "httpQueryParameterName must be set");
        }
        if (h.by == consistent_hash::key::cookie && h.cookie.name.empty()) {
            s.error(at(hp, "httpCookie.name"), "name required for httpCookie");
        }
        if (h.algo == consistent_hash::algorithm::maglev) {
            const std::string mp = at(hp, "maglev.tableSize");
            if (h.maglev_table_size == 0) {
                s.error(mp, "tableSize must be set for maglev");
            } else if (h.maglev_table_size >= 5000011) {
                s.error(mp, "tableSize must be less than 5000011 for maglev");
            } else if (!is_prime(h.maglev_table_size)) {
                s.error(mp, "tableSize must be a prime number for maglev");
            }
        }
    }
    if (lb.locality) {
        check_locality_lb(s, at(p, "localityLbSetting"), *lb.locality, has_outlier);
    }
    if (lb.warmup) {
        if (lb.warmup->window != duration{0}) {
            check_duration(s, at(p, "warmup.duration"), lb.warmup->window);
        }
        if (lb.warmup->minimum_percent < 0 || lb.warmup->minimum_percent > 100) {
            s.error(at(p, "warmup.minimumPercent"), "must be between 0 and 100");
        }
        if (lb.warmup->aggression < 1) {
            s.error(at(p, "warmup.aggression"), "must be at least 1.0");
        }
    }
}

void check_outlier(sink& s, const std::string& p, const outlier_detection& o)
{
    check_duration(s, at(p, "interval"), o.interval);
    check_duration(s, at(p, "baseEjectionTime"), o.base_ejection_time);
    if (o.max_ejection_percent > 100) {
        s.error(at(p, "maxEjectionPercent"), "must be between 0 and 100");
    }
    if (o.min_health_percent > 100) {
        s.error(at(p, "minHealthPercent"), "must be between 0 and 100");
    }
}

void check_pool(sink& s, const std::string& p, const connection_pool& c)
{
    if (!c.tcp && !c.http) {
        s.error(p, "connection pool must have at least one field");
    }
    if (c.tcp) {
        const std::string tp = at(p, "tcp");
        check_duration(s, at(tp, "connectTimeout"), c.tcp->connect_timeout);
        check_duration(s, at(tp, "idleTimeout"), c.tcp->idle_timeout);
        if (c.tcp->max_connection_duration) {
            check_duration(s, at(tp, "maxConnectionDuration"), *c.tcp->max_connection_duration);
        }
        if (c.tcp->keepalive && c.tcp->keepalive->time) {
            check_duration(s, at(tp, "tcpKeepalive.time"), *c.tcp->keepalive->time);
        }
        if (c.tcp->keepalive && c.tcp->keepalive->interval) {
            check_duration(s, at(tp, "tcpKeepalive.interval"), *c.tcp->keepalive->interval);
        }
    }
    if (c.http) {
        const std::string hp = at(p, "http");
        check_duration(s, at(hp, "idleTimeout"), c.http->idle_timeout);
        if (c.http->h2_upgrade_policy == "UPGRADE" && c.http->use_client_protocol) {
            s.error(hp, "use client protocol must not be true when h2UpgradePolicy is UPGRADE");
        }
    }
}

void check_client_tls(sink& s, const std::string& p, const client_tls& t)
{
    // agent.ValidateTLS.
    using m = client_tls::mode_t;
    if ((t.mode == m::simple || t.mode == m::mutual) && !t.credential_name.empty()) {
        if (!t.client_certificate.empty() || !t.ca_certificates.empty() || !t.private_key.empty() ||
            !t.ca_crl.empty()) {
            s.error(p, "cannot specify client certificates or CA certificate or CA CRL if "
                       "credentialName is set");
        }
        return;
    }
    if (t.mode == m::mutual) {
        if (t.client_certificate.empty()) {
            s.error(at(p, "clientCertificate"), "client certificate required for mutual tls");
        }
        if (t.private_key.empty()) {
            s.error(at(p, "privateKey"), "private key required for mutual tls");
        }
    }
}

void check_traffic_policy(sink& s, const std::string& p, const traffic_policy& tp)
{
    if (!tp.lb && !tp.pool && !tp.outlier && !tp.tls && tp.port_level.empty() && !tp.tunnel &&
        !tp.proxy_protocol_version && !tp.budget) {
        s.error(p, "traffic policy must have at least one field");
        return;
    }
    if (tp.tunnel && tp.proxy_protocol_version) {
        s.error(p, "tunnel and proxyProtocol must not be set together");
    }
    if (tp.outlier) {
        check_outlier(s, at(p, "outlierDetection"), *tp.outlier);
    }
    if (tp.pool) {
        check_pool(s, at(p, "connectionPool"), *tp.pool);
    }
    if (tp.lb) {
        check_load_balancer(s, at(p, "loadBalancer"), *tp.lb, tp.outlier.has_value());
    }
    if (tp.tls) {
        check_client_tls(s, at(p, "tls"), *tp.tls);
    }
    for (size_t i = 0; i < tp.port_level.size(); ++i) {
        const auto& pl = tp.port_level[i];
        const std::string pp = idx(at(p, "portLevelSettings"), i);
        check_port(s, at(pp, "port.number"), pl.port);
        if (!pl.lb && !pl.pool && !pl.outlier && !pl.tls) {
            s.error(pp, "port traffic policy must have at least one field");
            continue;
        }
        if (pl.outlier) {
            check_outlier(s, at(pp, "outlierDetection"), *pl.outlier);
        }
        if (pl.pool) {
            check_pool(s, at(pp, "connectionPool"), *pl.pool);
        }
        if (pl.lb) {
            check_load_balancer(s, at(pp, "loadBalancer"), *pl.lb, pl.outlier.has_value());
        }
        if (pl.tls) {
            check_client_tls(s, at(pp, "tls"), *pl.tls);
        }
    }
    if (tp.tunnel) {
        const std::string tn = at(p, "tunnel");
        if (tp.tunnel->protocol != "CONNECT" && tp.tunnel->protocol != "POST" &&
            !tp.tunnel->protocol.empty()) {
            s.error(at(tn, "protocol"), "tunnel protocol must be \"CONNECT\" or \"POST\"");
        }
        if (!is_dns_name(tp.tunnel->target_host) && !is_ip(tp.tunnel->target_host)) {
            s.error(at(tn, "targetHost"), "tunnel target host must be valid FQDN or IP address");
        }
        check_port(s, at(tn, "targetPort"), tp.tunnel->target_port);
    }
    if (tp.budget && (tp.budget->percent < 0 || tp.budget->percent > 100)) {
        s.error(at(p, "retryBudget.percent"), "must be between 0 and 100");
    }
    if (tp.budget && tp.budget->budget_interval) {
        check_duration(s, at(p, "retryBudget.budgetInterval"), *tp.budget->budget_interval);
    }
}

void check_destination_rule(sink& s, const destination_rule& dr)
{
    if (dr.host.empty()) {
        s.error("spec.host", "host is required");
    } else if (dr.host != "*" && !is_wildcard_domain(dr.host)) {
        s.error("spec.host", "invalid host \"" + dr.host + "\"");
    }
    if (dr.policy) {
        check_traffic_policy(s, "spec.trafficPolicy", *dr.policy);
    }
    std::set<std::string> names;
    for (size_t i = 0; i < dr.subsets.size(); ++i) {
        const auto& sub = dr.subsets[i];
        const std::string sp = idx("spec.subsets", i);
        if (sub.name.empty()) {
            s.error(at(sp, "name"), "subset name cannot be empty");
        } else if (!is_dns_label(sub.name)) {
            s.error(at(sp, "name"), "subset name is invalid: " + sub.name);
        }
        if (!sub.name.empty() && !names.insert(sub.name).second) {
            s.error(at(sp, "name"), "duplicate subset names: " + sub.name);
        }
        if (sub.policy) {
            check_traffic_policy(s, at(sp, "trafficPolicy"), *sub.policy);
        }
    }
    check_export_to(s, dr.export_to, false);
}

// ---------------------------------------------------------------- Gateway

void check_server_tls(sink& s, const std::string& p, const server_tls& t)
{
    // validateTLSOptions.
    using m = server_tls::mode_t;
    if (t.mode == m::istio_mutual) {
        if (!t.server_certificate.empty()) {
            s.error(at(p, "serverCertificate"),
                    "ISTIO_MUTUAL TLS cannot have associated server certificate");
        }
        if (!t.private_key.empty()) {
            s.error(at(p, "privateKey"), "ISTIO_MUTUAL TLS cannot have associated private key");
        }
        if (!t.ca_certificates.empty()) {
            s.error(at(p, "caCertificates"), "ISTIO_MUTUAL TLS cannot have associated CA bundle");
        }
        if (!t.credential_name.empty()) {
            s.error(at(p, "credentialName"),
                    "ISTIO_MUTUAL TLS cannot have associated credentialName");
        }
        return;
    }
    const bool remote =
        !t.credential_name.empty() || !t.credential_names.empty() || !t.tls_certificates.empty();
    if ((t.mode == m::passthrough || t.mode == m::auto_passthrough) &&
        (!t.ca_crl.empty() || !t.server_certificate.empty() || !t.private_key.empty() ||
         !t.ca_certificates.empty() || remote)) {
        s.warning(p, std::string(t.mode == m::passthrough ? "PASSTHROUGH" : "AUTO_PASSTHROUGH") +
                         " mode does not use certificates, they will be ignored");
    }
    if ((t.mode == m::simple || t.mode == m::mutual || t.mode == m::optional_mutual) && remote) {
        return; // credentials come from the secret (credentialName) or tlsCertificates
    }
    if (t.mode == m::simple) {
        if (t.server_certificate.empty()) {
            s.error(at(p, "serverCertificate"), "SIMPLE TLS requires a server certificate");
        }
        if (t.private_key.empty()) {
            s.error(at(p, "privateKey"), "SIMPLE TLS requires a private key");
        }
    } else if (t.mode == m::mutual || t.mode == m::optional_mutual) {
        if (t.server_certificate.empty()) {
            s.error(at(p, "serverCertificate"), "MUTUAL TLS requires a server certificate");
        }
        if (t.private_key.empty()) {
            s.error(at(p, "privateKey"), "MUTUAL TLS requires a private key");
        }
        if (t.ca_certificates.empty()) {
            s.error(at(p, "caCertificates"), "MUTUAL TLS requires a client CA bundle");
        }
    }
    if (!t.ca_crl.empty() && t.mode == m::simple) {
        s.error(at(p, "caCrl"), "CRL is not supported with SIMPLE TLS");
    }
}

void check_server_host(sink& s, const std::string& f, const std::string& h)
{
    // agent.ValidateNamespaceSlashWildcardHostname (gateway flavour).
    const auto slash = h.find('/');
    std::string dns = h;
    if (slash != std::string::npos) {
        const std::string ns = h.substr(0, slash);
        dns = h.substr(slash + 1);
        if (ns.empty() || dns.empty()) {
            s.error(f, "config namespace and hostname in \"" + h + "\" cannot be empty");
            return;
        }
        if (ns != "*" && ns != "." && ns != "~" && !is_dns_label(ns)) {
            s.error(f, "invalid namespace value \"" + ns + "\" in \"" + h + "\"");
        }
    }
    if (dns == "*") {
        return;
    }
    if (is_ip(dns)) {
        return;
    }
    if (dns.find('.') == std::string::npos) {
        s.error(f, "short names (non FQDN) are not allowed: \"" + dns + "\"");
    } else if (!is_wildcard_domain(dns)) {
        s.error(f, "invalid host \"" + dns + "\"");
    } else if (dns.find('*') != std::string::npos && dns.rfind("*.", 0) != 0) {
        s.error(f, "partial wildcard \"" + dns + "\" not allowed");
    }
}

void check_gateway(sink& s, const gateway& g)
{
    if (!is_dns_label(g.meta.name)) {
        s.error("metadata.name", "invalid gateway name: \"" + g.meta.name + "\"");
    }
    if (g.servers.empty()) {
        s.error("spec.servers", "gateway must have at least one server");
    }
    std::set<std::string> port_names;
    for (size_t i = 0; i < g.servers.size(); ++i) {
        const auto& sv = g.servers[i];
        const std::string p = idx("spec.servers", i);
        if (sv.hosts.empty()) {
            s.error(at(p, "hosts"), "server config must contain at least one host");
        }
        for (size_t k = 0; k < sv.hosts.size(); ++k) {
            check_server_host(s, idx(at(p, "hosts"), k), sv.hosts[k]);
        }
        const bool unix_bind = sv.bind.rfind("unix://", 0) == 0;
        const bool port_ok = known_protocol(sv.port.protocol);
        if (!port_ok) {
            s.error(at(p, "port.protocol"),
                    "invalid protocol \"" + sv.port.protocol +
                        "\", supported protocols are HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, "
                        "REDIS, MYSQL, TCP, TLS");
        }
        if (sv.port.number > 0 || !unix_bind) {
            check_port(s, at(p, "port.number"), sv.port.number);
        }
        if (sv.port.target_port > 0) {
            s.error(at(p, "port.targetPort"), "targetPort has no impact on Gateways");
        }
        if (sv.port.name.empty()) {
            s.error(at(p, "port.name"), "port name must be set");
        } else if (!port_names.insert(sv.port.name).second) {
            s.error(at(p, "port.name"),
                    "port names in servers must be unique: duplicate name " + sv.port.name);
        }
        if (!sv.bind.empty() && !unix_bind && !is_ip(sv.bind)) {
            s.error(at(p, "bind"), sv.bind + " is not a valid IP");
        }
        if (sv.tls) {
            check_server_tls(s, at(p, "tls"), *sv.tls);
        }
        if (port_ok) {
            const bool tls_port = is_tls_protocol(sv.port.protocol);
            const bool http_port = is_http_protocol(sv.port.protocol);
            if (tls_port && !sv.tls) {
                s.error(at(p, "tls"), "server must have TLS settings for HTTPS/TLS protocols");
            } else if (!tls_port && sv.tls) {
                const auto& t = *sv.tls;
                if (http_port) {
                    if (t.mode != server_tls::mode_t::passthrough || !t.ca_certificates.empty() ||
                        !t.private_key.empty() || !t.server_certificate.empty()) {
                        s.error(at(p, "tls"),
                                "server cannot have TLS settings for plain text HTTP ports");
                    }
                } else {
                    s.error(at(p, "tls"),
                            "server cannot have TLS settings for non HTTPS/TLS ports");
                }
            }
            // Upstream makes this a warning (ValidateGateway), so does sluice.
            if (!http_port && sv.tls && sv.tls->https_redirect) {
                s.warning(at(p, "tls.httpsRedirect"),
                          "tls.httpsRedirect should only be used with http servers");
            }
        }
    }
}

// ---------------------------------------------------------------- ServiceEntry, WorkloadEntry

void check_traffic_distribution_annotation(sink& s, const object_meta& m)
{
    const auto it = m.annotations.find("networking.istio.io/traffic-distribution");
    if (it == m.annotations.end()) {
        return;
    }
    static const std::set<std::string> modes = {"PreferClose",  "PreferSameZone", "PreferNetwork",
                                                "PreferRegion", "PreferSameNode", "Any"};
    if (modes.count(it->second) == 0) {
        s.error("metadata.annotations[networking.istio.io/traffic-distribution]",
                "unknown traffic distribution \"" + it->second +
                    "\"; expected one of PreferClose, PreferSameZone, PreferNetwork, "
                    "PreferRegion, PreferSameNode, Any");
    }
}

// sluice's own annotation: how the L4 fast path forwards to the service's endpoints.
void check_forwarding_annotation(sink& s, const object_meta& m)
{
    const auto it = m.annotations.find("sluice.io/forwarding");
    if (it == m.annotations.end()) {
        return;
    }
    if (it->second != "fullnat" && it->second != "ipip" && it->second != "gue") {
        s.error("metadata.annotations[sluice.io/forwarding]",
                "unknown forwarding \"" + it->second + "\"; expected one of fullnat, ipip, gue");
    }
}

// ---------------------------------------------------------------- sluice.io/health-check

/// `"text"` with '"', '\\' and bytes outside printable ASCII escaped, so a stray space or
/// control character shows in the message.
std::string quoted(std::string_view text)
{
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20 || c >= 0x7f) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

/// A duration as the shortest exact Go text: 5s, 500ms, 1500us, 7ns.
std::string duration_text(duration d)
{
    const auto ns = d.count();
    if (ns != 0 && ns % 1'000'000'000 == 0) {
        return std::to_string(ns / 1'000'000'000) + "s";
    }
    if (ns != 0 && ns % 1'000'000 == 0) {
        return std::to_string(ns / 1'000'000) + "ms";
    }
    if (ns != 0 && ns % 1'000 == 0) {
        return std::to_string(ns / 1'000) + "us";
    }
    return std::to_string(ns) + (ns == 0 ? "s" : "ns");
}

// sluice's own annotation: active health checks of the service's endpoints (the syntax is
// in decode.hh, parse_health_check()).
void check_health_check_annotation(sink& s, const object_meta& m)
{
    const auto it = m.annotations.find(health_check_annotation_key);
    if (it == m.annotations.end()) {
        return;
    }
    if (auto hc = parse_health_check(it->second); !hc) {
        s.error("metadata.annotations[sluice.io/health-check]", hc.err().message);
    }
}

void check_workload(sink& s, const std::string& p, const workload_spec& w, bool allow_fqdn,
                    const std::set<std::string>* service_ports)
{
    if (w.address.empty()) {
        if (w.network.empty()) {
            s.error(at(p, "address"), "address is required");
        } else {
            s.warning(at(p, "address"), "address is unset with network \"" + w.network + "\"");
        }
    } else if (w.address.rfind("unix://", 0) == 0) {
        if (w.address.size() <= 7 || (w.address[7] != '/' && w.address[7] != '@')) {
            s.error(at(p, "address"), w.address + " is not an absolute path to a file");
        }
    } else if (!is_ip(w.address)) {
        if (!allow_fqdn) {
            s.error(at(p, "address"),
                    "endpoint address \"" + w.address + "\" is not a valid IP address");
        } else if (!is_dns_name(w.address)) {
            s.error(at(p, "address"),
                    "endpoint address \"" + w.address + "\" is not a valid FQDN or an IP address");
        }
    }
    for (const auto& [name, port] : w.ports) {
        const std::string f = at(at(p, "ports"), name);
        if (!is_dns_label(name)) {
            s.error(f, "invalid port name: " + name);
        }
        check_port(s, f, port);
        if (service_ports != nullptr && service_ports->count(name) == 0) {
            s.error(f, "endpoint port " + std::to_string(port) +
                           " is not defined by the service entry");
        }
    }
    if (!w.locality.empty() && std::count(w.locality.begin(), w.locality.end(), '/') > 2) {
        s.error(at(p, "locality"), "locality \"" + w.locality + "\" must be region/zone/subzone");
    }
}

void check_service_entry(sink& s, const service_entry& se)
{
    using r = service_entry::resolution_t;
    check_traffic_distribution_annotation(s, se.meta);
    check_forwarding_annotation(s, se.meta);
    check_health_check_annotation(s, se.meta);
    if (!se.workload_selector.empty() && !se.endpoints.empty()) {
        s.error("spec", "only one of WorkloadSelector or Endpoints is allowed in Service Entry");
    }
    if (se.hosts.empty()) {
        s.error("spec.hosts", "service entry must have at least one host");
    } else if (se.hosts.size() > 256) {
        s.error("spec.hosts", "service entry must have at most 256 hosts");
    }
    for (size_t i = 0; i < se.hosts.size(); ++i) {
        const std::string& h = se.hosts[i];
        const std::string f = idx("spec.hosts", i);
        if (h == "*") {
            s.error(f, "invalid host *");
        } else if (!is_wildcard_domain(h)) {
            s.error(f, "invalid host \"" + h + "\"");
        } else if (h.find('*') != std::string::npos && h.rfind("*.", 0) != 0) {
            s.warning(f, "partial wildcard \"" + h + "\" not allowed");
        }
    }
    bool cidr = false;
    for (size_t i = 0; i < se.addresses.size(); ++i) {
        cidr = cidr || se.addresses[i].find('/') != std::string::npos;
        if (!is_cidr_or_ip(se.addresses[i])) {
            s.error(idx("spec.addresses", i),
                    "\"" + se.addresses[i] + "\" is not a valid IP address or CIDR");
        }
    }
    if (cidr && se.resolution != r::none && se.resolution != r::static_) {
        s.error("spec.addresses",
                "CIDR addresses are allowed only for NONE/STATIC resolution types");
    }
    std::set<std::string> names;
    std::set<uint32_t> numbers;
    for (size_t i = 0; i < se.ports.size(); ++i) {
        const auto& p = se.ports[i];
        const std::string pp = idx("spec.ports", i);
        if (!names.insert(p.name).second) {
            s.error(at(pp, "name"), "service entry port name \"" + p.name + "\" already defined");
        }
        if (!numbers.insert(p.number).second) {
            s.error(at(pp, "number"),
                    "service entry port " + std::to_string(p.number) + " already defined");
        }
        if (!is_dns_label(p.name)) {
            s.error(at(pp, "name"), "invalid port name: " + p.name);
        }
        if (!p.protocol.empty() && !known_protocol(p.protocol)) {
            s.error(at(pp, "protocol"), "unsupported protocol: " + p.protocol);
        }
        check_port(s, at(pp, "number"), p.number);
        if (p.target_port != 0) {
            check_port(s, at(pp, "targetPort"), p.target_port);
        }
    }
    switch (se.resolution) {
    case r::none:
        if (!se.endpoints.empty()) {
            s.error("spec.endpoints", "no endpoints should be provided for resolution type none");
        }
        break;
    case r::static_:
        // Not upstream (which accepts it and leaves the service without endpoints): sluice
        // would have nothing to send to, so say so at apply time (issue 3).
        if (se.endpoints.empty() && se.workload_selector.empty()) {
            s.error("spec.endpoints",
                    "endpoints or workloadSelector must be provided for resolution type STATIC");
        }
        for (size_t i = 0; i < se.endpoints.size(); ++i) {
            check_workload(s, idx("spec.endpoints", i), se.endpoints[i], false, &names);
        }
        break;
    case r::dns:
    case r::dns_round_robin:
    case r::dynamic_dns: {
        const std::string mode = se.resolution == r::dns               ? "DNS"
                                 : se.resolution == r::dns_round_robin ? "DNS_ROUND_ROBIN"
                                                                       : "DYNAMIC_DNS";
        if (se.endpoints.empty() && se.resolution != r::dynamic_dns) {
            for (size_t i = 0; i < se.hosts.size(); ++i) {
                if (!is_dns_name(se.hosts[i])) {
                    s.error(idx("spec.hosts", i),
                            "hosts must be FQDN if no endpoints are provided for resolution "
                            "mode " +
                                mode);
                }
            }
        }
        if (se.resolution == r::dns_round_robin && se.endpoints.size() > 1) {
            s.error("spec.endpoints",
                    "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN");
        }
        for (size_t i = 0; i < se.endpoints.size(); ++i) {
            check_workload(s, idx("spec.endpoints", i), se.endpoints[i], true, &names);
        }
        if (!se.workload_selector.empty()) {
            s.warning("spec.workloadSelector",
                      "workloadSelector should not be set when resolution mode is " + mode);
        }
        break;
    }
    }
    if (se.resolution != r::none && se.hosts.size() > 1) {
        for (const auto& p : se.ports) {
            if (!is_http_protocol(p.protocol) && !is_tls_protocol(p.protocol)) {
                s.error("spec.ports", "multiple hosts provided with non-HTTP, non-TLS ports");
                break;
            }
        }
    }
    check_export_to(s, se.export_to, true);
}

// ---------------------------------------------------------------- Kubernetes

void check_service(sink& s, const k8s_service& svc)
{
    const auto& td = svc.traffic_distribution;
    if (!td.empty() && td != "PreferClose" && td != "PreferSameZone") {
        s.error("spec.trafficDistribution",
                "unsupported value \"" + td +
                    "\": must be PreferClose or PreferSameZone (the other modes are set with "
                    "the networking.istio.io/traffic-distribution annotation)");
    }
    check_traffic_distribution_annotation(s, svc.meta);
    check_forwarding_annotation(s, svc.meta);
    check_health_check_annotation(s, svc.meta);
    const auto& itp = svc.internal_traffic_policy;
    if (!itp.empty() && itp != "Cluster" && itp != "Local") {
        s.error("spec.internalTrafficPolicy",
                "unsupported value \"" + itp + "\": must be Cluster or Local");
    }
    for (size_t i = 0; i < svc.ports.size(); ++i) {
        check_port(s, at(idx("spec.ports", i), "port"), svc.ports[i].port);
    }
}

void check_endpoint_slice(sink& s, const endpoint_slice& es)
{
    if (es.address_type != "IPv4" && es.address_type != "IPv6" && es.address_type != "FQDN") {
        s.error("addressType",
                "unsupported value \"" + es.address_type + "\": must be IPv4, IPv6 or FQDN");
    }
    for (size_t i = 0; i < es.ports.size(); ++i) {
        if (es.ports[i].port != 0) {
            check_port(s, at(idx("ports", i), "port"), es.ports[i].port);
        }
    }
}

} // namespace

std::vector<diagnostic> validate(const mesh& m, const options& opts)
{
    std::vector<diagnostic> out;
    const xref x = build_xref(m, opts);
    for (const auto& g : m.gateways) {
        sink s(out, g.meta);
        check_gateway(s, g);
    }
    for (const auto& vs : m.virtual_services) {
        sink s(out, vs.meta);
        check_virtual_service(s, vs, x);
    }
    for (const auto& dr : m.destination_rules) {
        sink s(out, dr.meta);
        check_destination_rule(s, dr);
    }
    for (const auto& se : m.service_entries) {
        sink s(out, se.meta);
        check_service_entry(s, se);
    }
    for (const auto& we : m.workload_entries) {
        sink s(out, we.meta);
        check_workload(s, "spec", we.spec, true, nullptr);
    }
    for (const auto& svc : m.services) {
        sink s(out, svc.meta);
        check_service(s, svc);
    }
    for (const auto& es : m.endpoint_slices) {
        sink s(out, es.meta);
        check_endpoint_slice(s, es);
    }
    return out;
}

result<health_check_annotation> parse_health_check(std::string_view text)
{
    // KIND[,key=value]... (decode.hh): the first item is the kind, the rest are options.
    constexpr const char* options_expected =
        "expected interval=<duration>, timeout=<duration>, unhealthyThreshold=<int> or "
        "healthyThreshold=<int>";
    health_check_annotation hc;
    if (text.empty()) {
        return err("empty health check; expected \"tcp\" or \"http:<path>\", optionally "
                   "followed by comma-separated key=value options, e.g. "
                   "\"http:/healthz,interval=5s,timeout=1s\"");
    }
    const auto comma = text.find(',');
    const std::string_view first = text.substr(0, comma);
    std::string_view rest = comma == std::string_view::npos ? "" : text.substr(comma + 1);
    const auto colon = first.find(':');
    const std::string_view kind = first.substr(0, colon);
    if (kind == "tcp") {
        if (colon != std::string_view::npos) {
            return err("health check kind tcp takes no path (got " + quoted(first) +
                       "); expected \"tcp\" or \"http:<path>\"");
        }
        hc.kind = health_check_annotation::kind_t::tcp;
    } else if (kind == "http") {
        if (colon == std::string_view::npos) {
            return err("health check kind http needs a path; expected \"http:<path>\", e.g. "
                       "\"http:/healthz\"");
        }
        const std::string_view path = first.substr(colon + 1);
        if (path.empty() || path.front() != '/') {
            return err("health check path " + quoted(path) +
                       " must start with '/', e.g. \"http:/healthz\"");
        }
        // The prober writes the path into the request line as is: printable ASCII only.
        if (std::any_of(path.begin(), path.end(), [](char ch) {
                const auto c = static_cast<unsigned char>(ch);
                return c <= 0x20 || c >= 0x7f;
            })) {
            return err("health check path " + quoted(path) +
                       " must not contain whitespace, control characters or non-ASCII bytes "
                       "(percent-encode them)");
        }
        hc.kind = health_check_annotation::kind_t::http;
        hc.path = std::string(path);
    } else {
        return err("unknown health check kind " + quoted(kind) +
                   "; expected \"tcp\" or \"http:<path>\"");
    }

    bool has_interval = false;
    bool has_timeout = false;
    std::set<std::string_view> seen;
    for (bool more = comma != std::string_view::npos; more;) {
        const auto next = rest.find(',');
        const std::string_view opt = rest.substr(0, next);
        more = next != std::string_view::npos;
        rest = more ? rest.substr(next + 1) : "";
        if (opt.empty()) {
            return err("empty health check option (a stray ','); " + std::string(options_expected));
        }
        if (std::any_of(opt.begin(), opt.end(), [](char ch) {
                const auto c = static_cast<unsigned char>(ch);
                return c <= 0x20 || c == 0x7f;
            })) {
            return err("health check option " + quoted(opt) +
                       " must not contain whitespace or control characters");
        }
        const auto eq = opt.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            return err("health check option " + quoted(opt) + " is not key=value; " +
                       options_expected + " (a path cannot contain ',': write %2C)");
        }
        const std::string_view key = opt.substr(0, eq);
        const std::string_view value = opt.substr(eq + 1);
        const bool is_duration = key == "interval" || key == "timeout";
        const bool is_threshold = key == "unhealthyThreshold" || key == "healthyThreshold";
        if (!is_duration && !is_threshold) {
            return err("unknown health check option " + quoted(key) +
                       "; expected one of interval, timeout, unhealthyThreshold, "
                       "healthyThreshold");
        }
        if (!seen.insert(key).second) {
            return err("health check option " + std::string(key) +
                       " is given twice; expected each option at most once");
        }
        if (is_duration) {
            auto d = parse_duration(value);
            if (!d) {
                return err("health check " + std::string(key) + ": " + d.err().message +
                           "; expected a duration such as 5s or 500ms");
            }
            if (d->count() <= 0) {
                return err("health check " + std::string(key) + " " + quoted(value) +
                           " must be greater than 0");
            }
            (key == "interval" ? hc.interval : hc.timeout) = *d;
            (key == "interval" ? has_interval : has_timeout) = true;
        } else {
            // Digits only ("+1", "1.0" and "0x10" are refused); four at most, so no overflow.
            uint32_t n = 0;
            if (value.size() <= 4 && std::all_of(value.begin(), value.end(),
                                                 [](char c) { return c >= '0' && c <= '9'; })) {
                for (const char c : value) {
                    n = n * 10 + static_cast<uint32_t>(c - '0');
                }
            }
            if (n < 1 || n > 1000) {
                return err("health check " + std::string(key) + " " + quoted(value) +
                           " must be an integer from 1 to 1000");
            }
            (key == "unhealthyThreshold" ? hc.unhealthy_threshold : hc.healthy_threshold) = n;
        }
    }
    if (hc.timeout > hc.interval) {
        return err("health check timeout " + duration_text(hc.timeout) +
                   (has_timeout ? "" : " (the default)") + " must not exceed the interval " +
                   duration_text(hc.interval) + (has_interval ? "" : " (the default)") +
                   "; expected timeout <= interval");
    }
    return hc;
}

} // namespace sluice::model
