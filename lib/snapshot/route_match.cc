#include "sluice/snapshot/route_match.hh"

#include <re2/re2.h>

#include <algorithm>
#include <optional>

#include "sluice/snapshot/host_match.hh"

namespace sluice::snapshot {

const char* to_string(outcome o) noexcept
{
    switch (o) {
    case outcome::forward:
        return "forward";
    case outcome::redirect:
        return "redirect";
    case outcome::https_redirect:
        return "https_redirect";
    case outcome::direct_response:
        return "direct_response";
    case outcome::fault_abort:
        return "fault_abort";
    case outcome::no_route:
        return "no_route";
    case outcome::no_virtual_host:
        return "no_virtual_host";
    case outcome::no_listener:
        return "no_listener";
    }
    return "?";
}

namespace {

std::string_view path_only(std::string_view p) noexcept
{
    const size_t q = p.find('?');
    return q == std::string_view::npos ? p : p.substr(0, q);
}

std::string_view query_part(std::string_view p) noexcept
{
    const size_t q = p.find('?');
    return q == std::string_view::npos ? std::string_view{} : p.substr(q);
}

// The first header named `name` (lower-case); pseudo-headers map to the request fields.
std::optional<std::string_view> header_value(const request& req, std::string_view name) noexcept
{
    if (!name.empty() && name[0] == ':') {
        if (name == ":authority") {
            return req.authority;
        }
        if (name == ":path") {
            return req.path;
        }
        if (name == ":method") {
            return req.method;
        }
        if (name == ":scheme") {
            return req.scheme;
        }
    }
    for (const header& h : req.headers) {
        if (iequals(h.name, name)) {
            return h.value;
        }
    }
    return std::nullopt;
}

} // namespace

std::optional<std::string_view> query_value(std::string_view path, std::string_view name) noexcept
{
    std::string_view q = query_part(path);
    if (q.empty()) {
        return std::nullopt;
    }
    q.remove_prefix(1);
    const size_t hash = q.find('#');
    if (hash != std::string_view::npos) {
        q = q.substr(0, hash);
    }
    while (!q.empty()) {
        const size_t amp = q.find('&');
        const std::string_view param = q.substr(0, amp);
        const size_t eq = param.find('=');
        if (param.substr(0, eq) == name) {
            return eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
        }
        if (amp == std::string_view::npos) {
            break;
        }
        q.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

bool cors_origin_allowed(const cors_action& c, std::string_view origin) noexcept
{
    for (size_t i = 0; i < c.allow_origins.size(); ++i) {
        const string_matcher& m = c.allow_origins[i];
        switch (m.how) {
        case string_matcher::kind::any:
            return true;
        case string_matcher::kind::exact:
            if (m.ignore_case ? iequals(m.value, origin) : m.value == origin) {
                return true;
            }
            break;
        case string_matcher::kind::prefix:
            if (m.ignore_case ? istarts_with(origin, m.value) : origin.starts_with(m.value)) {
                return true;
            }
            break;
        case string_matcher::kind::regex:
            if (i < c.origin_regex.size() && c.origin_regex[i] &&
                re2::RE2::FullMatch(re2::StringPiece(origin.data(), origin.size()),
                                    *c.origin_regex[i])) {
                return true;
            }
            break;
        }
    }
    return false;
}

namespace {

struct evaluator {
    const route_table& table;
    const request& req;
    regex_scratch& scratch;
    std::string_view path_no_query; ///< computed once per request, not once per route

    bool str(const string_matcher& m, std::string_view text) const noexcept
    {
        switch (m.how) {
        case string_matcher::kind::any:
            return true;
        case string_matcher::kind::exact:
            return m.ignore_case ? iequals(text, m.value) : text == m.value;
        case string_matcher::kind::prefix:
            return m.ignore_case ? istarts_with(text, m.value) : text.starts_with(m.value);
        case string_matcher::kind::regex:
            return table.regexes.matches(m.regex, text, scratch);
        }
        return false;
    }

    // Returns the matched prefix length through `prefix_len` (prefix matches only).
    bool block(const match_block& m, uint32_t& prefix_len) const noexcept
    {
        if (m.port != 0 && m.port != req.port) {
            return false;
        }
        prefix_len = 0;
        if (m.uri) {
            if (m.uri->how == string_matcher::kind::prefix) {
                if (!str(*m.uri, req.path)) {
                    return false;
                }
                prefix_len = static_cast<uint32_t>(m.uri->value.size());
            } else if (m.uri->how == string_matcher::kind::any) {
                prefix_len = req.path.starts_with('/') ? 1 : 0;
            } else if (!str(*m.uri, path_no_query)) {
                return false;
            }
        } else {
            prefix_len = req.path.starts_with('/') ? 1 : 0; // Envoy's implicit prefix "/"
        }
        if (m.scheme && !str(*m.scheme, req.scheme)) {
            return false;
        }
        if (m.method && !str(*m.method, req.method)) {
            return false;
        }
        if (m.authority && !str(*m.authority, req.authority)) {
            return false;
        }
        for (const named_condition& h : m.headers) {
            const auto v = header_value(req, h.name);
            if (!v || !str(h.match, *v)) {
                return false;
            }
        }
        for (const named_condition& q : m.query_params) {
            const auto v = query_value(req.path, q.name);
            if (!v || !str(q.match, *v)) {
                return false;
            }
        }
        for (const named_condition& h : m.without_headers) {
            const auto v = header_value(req, h.name);
            if (v && str(h.match, *v)) {
                return false;
            }
        }
        return true;
    }
};

const virtual_host* find_vhost(const route_table& t, std::string_view host) noexcept
{
    {
        const auto it = std::lower_bound(
            t.exact.begin(), t.exact.end(), host,
            [&t](uint32_t i, std::string_view h) { return icompare(t.vhosts[i].domain, h) < 0; });
        if (it != t.exact.end() && icompare(t.vhosts[*it].domain, host) == 0) {
            return &t.vhosts[*it];
        }
    }
    // The leftmost dot gives the longest suffix: the most specific wildcard wins.
    for (size_t pos = host.find('.', 1); pos != std::string_view::npos;
         pos = host.find('.', pos + 1)) {
        const std::string_view suffix = host.substr(pos);
        const auto it = std::lower_bound(
            t.suffixes.begin(), t.suffixes.end(), suffix, [&t](uint32_t i, std::string_view s) {
                return icompare(std::string_view{t.vhosts[i].domain}.substr(1), s) < 0;
            });
        if (it != t.suffixes.end() &&
            icompare(std::string_view{t.vhosts[*it].domain}.substr(1), suffix) == 0) {
            return &t.vhosts[*it];
        }
    }
    return t.catch_all == no_index ? nullptr : &t.vhosts[t.catch_all];
}

// host[:port] without its port; IPv6 literals keep their brackets.
std::string_view strip_port(std::string_view authority) noexcept
{
    const size_t colon = authority.rfind(':');
    if (colon == std::string_view::npos) {
        return authority;
    }
    if (authority.front() == '[') {
        const size_t close = authority.find(']');
        return close != std::string_view::npos && colon > close ? authority.substr(0, colon)
                                                                : authority;
    }
    return authority.find(':') == colon ? authority.substr(0, colon) : authority;
}

std::string_view port_of(std::string_view authority) noexcept
{
    const std::string_view h = strip_port(authority);
    return h.size() == authority.size() ? std::string_view{} : authority.substr(h.size() + 1);
}

} // namespace

decision match_route(const snapshot& snap, const request& req, regex_scratch& scratch) noexcept
{
    decision d;
    const route_table* t = snap.find_http(req.gateway, req.port);
    if (t == nullptr) {
        return d; // no_listener
    }
    d.table = t;
    d.what = outcome::no_virtual_host;
    const virtual_host* vh = find_vhost(*t, authority_host(req.authority));
    if (vh == nullptr) {
        return d;
    }
    d.vhost = vh;
    if (vh->vs != no_index) {
        d.virtual_service = snap.virtual_services[vh->vs];
    }
    if (vh->https_redirect && !iequals(req.scheme, "https")) {
        d.what = outcome::https_redirect;
        d.status = 301;
        return d;
    }
    if (t->regexes.size() > 0) {
        scratch.begin_request(t->regexes);
    }
    const evaluator ev{*t, req, scratch, path_only(req.path)};
    for (const route_entry& e : vh->routes) {
        uint32_t prefix_len = 0;
        if (!ev.block(e.match, prefix_len)) {
            continue;
        }
        d.entry = &e;
        d.action = &t->actions[e.action];
        d.virtual_service = snap.virtual_services[e.vs];
        d.route_index = e.http_index;
        d.matched_prefix_len = prefix_len;
        switch (d.action->kind) {
        case route_action::kind_t::redirect:
            d.what = outcome::redirect;
            d.status = d.action->redirect.code;
            return d;
        case route_action::kind_t::direct_response:
            d.what = outcome::direct_response;
            d.status = d.action->direct_response.status;
            return d;
        case route_action::kind_t::forward:
            break;
        }
        const auto& f = d.action->fault;
        if (f && f->abort && f->abort->http_status != 0 && f->abort->percentage >= 100.0) {
            d.what = outcome::fault_abort;
            d.status = f->abort->http_status;
            return d;
        }
        d.what = outcome::forward;
        d.status = 0;
        return d;
    }
    d.what = outcome::no_route;
    d.status = 404;
    return d;
}

rewritten apply_rewrite(const decision& d, const request& req)
{
    rewritten out{std::string(req.path), std::string(req.authority)};
    if (d.action == nullptr || !d.action->rewrite || d.entry == nullptr) {
        return out;
    }
    const rewrite_action& rw = *d.action->rewrite;
    if (!rw.uri.empty()) {
        const auto& m = d.entry->match.uri;
        if (!m || m->how == string_matcher::kind::prefix || m->how == string_matcher::kind::any) {
            const size_t len = std::min<size_t>(d.matched_prefix_len, req.path.size());
            out.path = rw.uri + std::string(req.path.substr(len));
        } else {
            out.path = rw.uri + std::string(query_part(req.path));
        }
    } else if (rw.regex != nullptr) {
        std::string p(path_only(req.path));
        RE2::GlobalReplace(&p, *rw.regex, rw.regex_substitution);
        out.path = p + std::string(query_part(req.path));
    }
    if (!rw.authority.empty()) {
        out.authority = rw.authority;
    }
    return out;
}

std::string redirect_location(const decision& d, const request& req)
{
    if (d.what == outcome::https_redirect) {
        return "https://" + std::string(req.authority) + std::string(req.path);
    }
    if (d.action == nullptr) {
        return {};
    }
    const redirect_action& r = d.action->redirect;
    const std::string_view scheme = r.scheme.empty() ? req.scheme : std::string_view{r.scheme};
    std::string_view authority =
        r.authority.empty() ? req.authority : std::string_view{r.authority};
    std::string host;
    if (r.port != 0) {
        host = std::string(strip_port(authority)) + ":" + std::to_string(r.port);
    } else if (r.derive_port == redirect_action::derive::from_request_port) {
        host = std::string(strip_port(authority)) + ":" + std::to_string(req.port);
    } else if (r.derive_port == redirect_action::derive::from_protocol_default) {
        host = std::string(strip_port(authority));
    } else {
        host = std::string(authority);
        const std::string_view p = port_of(authority);
        if (!iequals(scheme, req.scheme) && ((iequals(req.scheme, "http") && p == "80") ||
                                             (iequals(req.scheme, "https") && p == "443"))) {
            host = std::string(strip_port(authority)); // Envoy drops the old default port
        }
    }
    std::string path;
    if (!r.uri.empty()) {
        path = r.uri;
        if (r.uri.find('?') == std::string::npos) {
            path += query_part(req.path);
        }
    } else if (r.prefix_rewrite) {
        size_t len = d.matched_prefix_len;
        const auto& m = d.entry != nullptr ? d.entry->match.uri : std::nullopt;
        if (m && (m->how == string_matcher::kind::exact || m->how == string_matcher::kind::regex)) {
            len = path_only(req.path).size();
        }
        path = *r.prefix_rewrite + std::string(req.path.substr(std::min(len, req.path.size())));
    } else {
        path = std::string(req.path);
    }
    return std::string(scheme) + "://" + host + path;
}

namespace {

bool subnet_ok(const l4_route& r, const net::ip_addr& dst) noexcept
{
    if (r.destination_subnets.empty()) {
        return true;
    }
    return std::any_of(r.destination_subnets.begin(), r.destination_subnets.end(),
                       [&dst](const net::prefix& p) { return p.contains(dst); });
}

} // namespace

l4_decision match_tcp(const snapshot& snap, std::string_view gateway, uint32_t port,
                      const net::ip_addr& destination) noexcept
{
    l4_decision d;
    const l4_table* t = snap.find_tcp(gateway, port);
    if (t == nullptr) {
        return d;
    }
    for (const l4_route& r : t->routes) {
        if ((r.port != 0 && r.port != port) || !subnet_ok(r, destination)) {
            continue;
        }
        d.route = &r;
        d.virtual_service = snap.virtual_services[r.vs];
        return d;
    }
    return d;
}

l4_decision match_tls(const snapshot& snap, std::string_view gateway, uint32_t port,
                      std::string_view sni, const net::ip_addr& destination) noexcept
{
    l4_decision d;
    const l4_table* t = snap.find_tls(gateway, port);
    if (t == nullptr) {
        return d;
    }
    for (const l4_route& r : t->routes) {
        if ((r.port != 0 && r.port != port) || !subnet_ok(r, destination)) {
            continue;
        }
        const bool sni_ok =
            r.sni_hosts.empty() ||
            std::any_of(r.sni_hosts.begin(), r.sni_hosts.end(),
                        [sni](const std::string& h) { return host_matches(h, sni); });
        if (!sni_ok) {
            continue;
        }
        d.route = &r;
        d.virtual_service = snap.virtual_services[r.vs];
        return d;
    }
    return d;
}

} // namespace sluice::snapshot
