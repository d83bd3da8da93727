// Gateway servers and VirtualServices to route tables: gateway binding, virtual hosts,
// delegation (one level), match blocks, actions, and one regex set per table.
#include <re2/re2.h>

#include <algorithm>
#include <tuple>

#include "detail.hh"
#include "sluice/snapshot/host_match.hh"
#include "sluice/base/ascii.hh"

namespace sluice::compile::detail {

namespace {

using snapshot::no_index;

std::string resolve_gateway(const std::string& g, const std::string& ns)
{
    if (g == "mesh" || g.find('/') != std::string::npos) {
        return g;
    }
    return ns + "/" + g;
}

bool bound_to(const model::virtual_service& vs, const std::string& gateway)
{
    if (vs.gateways.empty()) {
        return gateway == "mesh";
    }
    return std::any_of(vs.gateways.begin(), vs.gateways.end(), [&](const std::string& g) {
        return resolve_gateway(g, vs.meta.ns) == gateway;
    });
}

bool labels_subset(const model::labels& want, const locality::labels& have)
{
    return std::all_of(want.begin(), want.end(), [&have](const auto& kv) {
        const auto it = have.find(kv.first);
        return it != have.end() && it->second == kv.second;
    });
}

// Istio's sourceMatchHTTP for a gateway proxy: match-level gateways decide alone; otherwise
// sourceLabels must be labels of the appliance and sourceNamespace its namespace.
bool block_applies(const std::vector<std::string>& gateways, const model::labels& source_labels,
                   const std::string& source_ns, const std::string& vs_ns,
                   const std::string& gateway, const options& opts)
{
    if (!gateways.empty()) {
        return std::any_of(gateways.begin(), gateways.end(), [&](const std::string& g) {
            return resolve_gateway(g, vs_ns) == gateway;
        });
    }
    if (!labels_subset(source_labels, opts.proxy_labels)) {
        return false;
    }
    return source_ns.empty() || source_ns == opts.proxy_namespace;
}

// ------------------------------------------------------------------ delegation (Istio's
// mergeHTTPRoute / mergeHTTPMatchRequests / hasConflict)

std::string_view get(const std::optional<model::string_match>& m, model::string_match::kind k)
{
    return m && m->how == k ? std::string_view{m->value} : std::string_view{};
}

bool string_match_conflict(const std::optional<model::string_match>& root,
                           const std::optional<model::string_match>& leaf)
{
    using K = model::string_match::kind;
    if (!root || !leaf) {
        return false;
    }
    const bool root_any = !get(root, K::regex).empty() || !get(root, K::prefix).empty() ||
                          !get(root, K::exact).empty();
    const bool leaf_any = !get(leaf, K::regex).empty() || !get(leaf, K::prefix).empty() ||
                          !get(leaf, K::exact).empty();
    if (!get(root, K::regex).empty() && leaf_any) {
        return true;
    }
    if (!get(leaf, K::regex).empty() && root_any) {
        return true;
    }
    if (const std::string_view exact = get(root, K::exact); !exact.empty()) {
        if (!get(leaf, K::prefix).empty() || get(leaf, K::exact) != exact) {
            return true;
        }
    }
    if (const std::string_view prefix = get(root, K::prefix); !prefix.empty()) {
        const std::string_view lp = get(leaf, K::prefix);
        const std::string_view le = get(leaf, K::exact);
        if ((!lp.empty() && !lp.starts_with(prefix)) || (!le.empty() && !le.starts_with(prefix))) {
            return true;
        }
    }
    return false;
}

std::optional<model::string_match> lookup(const std::map<std::string, model::string_match>& m,
                                          const std::string& k)
{
    const auto it = m.find(k);
    return it == m.end() ? std::nullopt : std::optional{it->second};
}

bool has_conflict(const model::http_match& root, const model::http_match& leaf)
{
    if (string_match_conflict(root.uri, leaf.uri) ||
        string_match_conflict(root.scheme, leaf.scheme) ||
        string_match_conflict(root.method, leaf.method) ||
        string_match_conflict(root.authority, leaf.authority)) {
        return true;
    }
    for (const auto& [k, v] : leaf.headers) {
        if (string_match_conflict(lookup(root.headers, k), v)) {
            return true;
        }
    }
    for (const auto& [k, v] : leaf.without_headers) {
        if (string_match_conflict(lookup(root.without_headers, k), v)) {
            return true;
        }
    }
    for (const auto& [k, v] : leaf.query_params) {
        if (string_match_conflict(lookup(root.query_params, k), v)) {
            return true;
        }
    }
    if (root.ignore_uri_case != leaf.ignore_uri_case) {
        return true;
    }
    if (root.port && leaf.port && *root.port != *leaf.port) {
        return true;
    }
    if (!root.source_namespace.empty() && leaf.source_namespace != root.source_namespace) {
        return true;
    }
    for (const auto& [k, v] : leaf.source_labels) {
        const auto it = root.source_labels.find(k);
        if (it != root.source_labels.end() && it->second != v) {
            return true;
        }
    }
    if (!root.gateways.empty() && !leaf.gateways.empty()) {
        for (const std::string& g : leaf.gateways) {
            if (std::find(root.gateways.begin(), root.gateways.end(), g) == root.gateways.end()) {
                return true;
            }
        }
    }
    return false;
}

model::http_match merge_match(const model::http_match& root, const model::http_match& leaf)
{
    model::http_match out = leaf;
    if (out.name.empty()) {
        out.name = root.name;
    } else if (!root.name.empty()) {
        out.name = root.name + "-" + out.name;
    }
    for (auto [o, r] :
         {std::pair{&out.uri, &root.uri}, std::pair{&out.scheme, &root.scheme},
          std::pair{&out.method, &root.method}, std::pair{&out.authority, &root.authority}}) {
        if (!*o) {
            *o = *r;
        }
    }
    for (auto [o, r] : {std::pair{&out.headers, &root.headers},
                        std::pair{&out.without_headers, &root.without_headers},
                        std::pair{&out.query_params, &root.query_params}}) {
        for (const auto& [k, v] : *r) {
            o->emplace(k, v); // the delegate's own entry wins
        }
    }
    if (!out.port) {
        out.port = root.port;
    }
    for (const auto& [k, v] : root.source_labels) {
        out.source_labels.emplace(k, v);
    }
    if (out.source_namespace.empty()) {
        out.source_namespace = root.source_namespace;
    }
    if (out.gateways.empty()) {
        out.gateways = root.gateways;
    }
    if (out.stat_prefix.empty()) {
        out.stat_prefix = root.stat_prefix;
    }
    return out;
}

std::optional<std::vector<model::http_match>>
merge_matches(const std::vector<model::http_match>& root,
              const std::vector<model::http_match>& leaf)
{
    if (root.empty()) {
        return leaf;
    }
    if (leaf.empty()) {
        return root;
    }
    std::vector<model::http_match> out;
    for (const model::http_match& sub : leaf) {
        bool found = false;
        for (const model::http_match& r : root) {
            if (has_conflict(r, sub)) {
                continue;
            }
            out.push_back(merge_match(r, sub));
            found = true;
        }
        if (!found) {
            return std::nullopt;
        }
    }
    if (out.empty()) {
        return std::nullopt;
    }
    return out;
}

bool headers_empty(const model::headers_policy& h)
{
    return h.request.set.empty() && h.request.add.empty() && h.request.remove.empty() &&
           h.response.set.empty() && h.response.add.empty() && h.response.remove.empty();
}

std::optional<model::http_route> merge_route(const model::http_route& root, model::http_route d)
{
    auto merged = merge_matches(root.match, d.match);
    if (!merged) {
        return std::nullopt;
    }
    d.match = std::move(*merged);
    if (d.name.empty()) {
        d.name = root.name;
    } else if (!root.name.empty()) {
        d.name = root.name + "-" + d.name;
    }
    if (!d.rewrite) {
        d.rewrite = root.rewrite;
    }
    if (!d.direct_response) {
        d.direct_response = root.direct_response;
    }
    if (!d.timeout) {
        d.timeout = root.timeout;
    }
    if (!d.retries) {
        d.retries = root.retries;
    }
    if (!d.fault) {
        d.fault = root.fault;
    }
    if (!d.mirror) {
        d.mirror = root.mirror;
    }
    if (!d.mirror_percentage) {
        d.mirror_percentage = root.mirror_percentage;
    }
    if (!d.cors) {
        d.cors = root.cors;
    }
    if (d.mirrors.empty()) {
        d.mirrors = root.mirrors;
    }
    if (headers_empty(d.headers)) {
        d.headers = root.headers;
    }
    return d;
}

// ------------------------------------------------------------------ one table

snapshot::header_ops to_ops(const model::header_ops& h)
{
    return {h.set, h.add, h.remove};
}

snapshot::headers_policy to_headers(const model::headers_policy& h)
{
    return {to_ops(h.request), to_ops(h.response)};
}

bool all_digits(std::string_view s)
{
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string trim(std::string_view s)
{
    while (!s.empty() && s.front() == ' ') {
        s.remove_prefix(1);
    }
    while (!s.empty() && s.back() == ' ') {
        s.remove_suffix(1);
    }
    return std::string(s);
}

struct table_builder {
    state& s;
    std::string gateway;
    uint32_t port = 0; ///< 0: mesh
    bool l4 = false;   ///< TCP table: its clusters need Maglev
    std::vector<snapshot::route_action> actions;
    std::map<std::string, uint16_t> inputs;
    std::vector<std::string> input_names;
    std::vector<snapshot::regex_pattern> patterns;
    std::map<std::pair<std::string, uint16_t>, uint32_t> pattern_ids;

    uint16_t input(const std::string& name)
    {
        const auto [it, fresh] = inputs.emplace(name, static_cast<uint16_t>(input_names.size()));
        if (fresh) {
            input_names.push_back(name);
        }
        return it->second;
    }

    snapshot::string_matcher matcher(const model::string_match& m, const std::string& in,
                                     bool ignore_case = false)
    {
        snapshot::string_matcher out;
        out.how = static_cast<snapshot::string_matcher::kind>(m.how);
        out.value = m.value;
        if (m.how == model::string_match::kind::regex) {
            const uint16_t id = input(in);
            const auto [it, fresh] =
                pattern_ids.emplace(std::pair{m.value, id}, static_cast<uint32_t>(patterns.size()));
            if (fresh) {
                patterns.push_back({m.value, id});
            }
            out.regex = it->second;
        } else if (ignore_case && (m.how == model::string_match::kind::exact ||
                                   m.how == model::string_match::kind::prefix)) {
            out.ignore_case = true;
            out.value = to_lower(out.value);
        }
        return out;
    }

    snapshot::match_block block(const model::http_match& m)
    {
        snapshot::match_block b;
        b.name = m.name;
        if (m.uri) {
            b.uri = matcher(*m.uri, ":path", m.ignore_uri_case);
        }
        if (m.scheme) {
            b.scheme = matcher(*m.scheme, ":scheme");
        }
        if (m.method) {
            b.method = matcher(*m.method, ":method");
        }
        if (m.authority) {
            b.authority = matcher(*m.authority, ":authority");
        }
        for (const auto& [k, v] : m.headers) {
            const std::string name = to_lower(k);
            if (name == "uri" || name == "scheme" || name == "method" || name == "authority") {
                continue; // ISTIO.md: these keys are ignored in `headers`
            }
            b.headers.push_back({name, matcher(v, "header:" + name)});
        }
        for (const auto& [k, v] : m.without_headers) {
            const std::string name = to_lower(k);
            b.without_headers.push_back({name, matcher(v, "header:" + name)});
        }
        for (const auto& [k, v] : m.query_params) {
            b.query_params.push_back({k, matcher(v, "query:" + k)});
        }
        b.port = m.port.value_or(0);
        return b;
    }

    snapshot::weighted_destination dest(const model::destination& d)
    {
        snapshot::weighted_destination out;
        out.host = d.host;
        out.subset = d.subset;
        out.port = d.port.value_or(0);
        const auto svc = s.services.find(d.host);
        if (d.port) {
            out.cluster = s.ensure_cluster(d.host, d.subset, *d.port);
        } else if (svc != s.services.end() && svc->second.ports.size() == 1) {
            out.cluster = s.ensure_cluster(d.host, d.subset, svc->second.ports.front().number);
        } else if (port != 0) {
            out.cluster = s.ensure_cluster(d.host, d.subset, port);
        } else {
            if (svc != s.services.end()) {
                for (const svc_port& p : svc->second.ports) {
                    out.cluster_by_port.emplace_back(p.number,
                                                     s.ensure_cluster(d.host, d.subset, p.number));
                }
            }
            out.fallback_cluster = s.ensure_cluster(d.host, d.subset, 0);
        }
        if (l4) {
            if (out.cluster != no_index) {
                s.needs_maglev.insert(out.cluster);
            }
            for (const auto& [p, c] : out.cluster_by_port) {
                s.needs_maglev.insert(c);
            }
        }
        return out;
    }

    uint64_t destinations(const std::vector<model::route_destination>& in,
                          std::vector<snapshot::weighted_destination>& out)
    {
        uint64_t total = 0;
        for (const model::route_destination& rd : in) {
            snapshot::weighted_destination d = dest(rd.dest);
            // A lone destination gets everything; otherwise an unset weight is 0.
            d.weight = in.size() == 1 ? 100U : static_cast<uint32_t>(rd.weight.value_or(0));
            d.headers = to_headers(rd.headers);
            total += d.weight;
            out.push_back(std::move(d));
        }
        return total;
    }

    bool consistent_hash(const std::vector<snapshot::weighted_destination>& ds) const
    {
        for (const snapshot::weighted_destination& d : ds) {
            const uint32_t c = d.cluster != no_index       ? d.cluster
                               : d.cluster_by_port.empty() ? no_index
                                                           : d.cluster_by_port.front().second;
            if (c != no_index && s.snap.clusters[c].policy.lb.hash) {
                return true;
            }
        }
        return false;
    }

    result<uint32_t> action(const model::http_route& r, const std::string& where)
    {
        snapshot::route_action a;
        if (r.redirect) {
            a.kind = snapshot::route_action::kind_t::redirect;
            const model::http_redirect& m = *r.redirect;
            a.redirect.uri = m.uri;
            a.redirect.prefix_rewrite = m.prefix_rewrite;
            a.redirect.authority = m.authority;
            a.redirect.port = m.port.value_or(0);
            a.redirect.derive_port = static_cast<snapshot::redirect_action::derive>(m.derive_port);
            a.redirect.scheme = m.scheme;
            a.redirect.code = m.redirect_code == 0 ? 301 : m.redirect_code;
        } else if (r.direct_response) {
            a.kind = snapshot::route_action::kind_t::direct_response;
            a.direct_response.status = r.direct_response->status;
            a.direct_response.body = r.direct_response->body;
        }
        a.total_weight = destinations(r.route, a.destinations);
        if (r.rewrite) {
            snapshot::rewrite_action rw;
            rw.uri = r.rewrite->uri;
            rw.authority = r.rewrite->authority;
            if (r.rewrite->uri_regex_rewrite) {
                rw.regex_match = r.rewrite->uri_regex_rewrite->match;
                rw.regex_substitution = r.rewrite->uri_regex_rewrite->rewrite;
                RE2::Options o;
                o.set_log_errors(false);
                auto re = std::make_shared<const RE2>(rw.regex_match, o);
                if (!re->ok()) {
                    return err("invalid regex: " + re->error(), where + ".rewrite.uriRegexRewrite");
                }
                rw.regex = std::move(re);
            }
            a.rewrite = std::move(rw);
        }
        if (r.timeout && r.timeout->count() > 0) {
            a.timeout = *r.timeout;
        }
        const bool hash = consistent_hash(a.destinations);
        if (r.retries) {
            const model::http_retry& in = *r.retries;
            snapshot::retry_policy& rp = a.retries;
            rp.is_default = false;
            rp.attempts = in.attempts;
            if (!in.retry_on.empty()) {
                std::vector<std::string> tokens;
                std::string_view rest = in.retry_on;
                while (!rest.empty()) {
                    const size_t comma = rest.find(',');
                    const std::string tok = trim(rest.substr(0, comma));
                    if (all_digits(tok)) {
                        rp.retriable_status_codes.push_back(static_cast<uint32_t>(std::stoul(tok)));
                    } else if (!tok.empty()) {
                        tokens.push_back(tok);
                    }
                    rest = comma == std::string_view::npos ? std::string_view{}
                                                           : rest.substr(comma + 1);
                }
                if (!rp.retriable_status_codes.empty() &&
                    std::find(tokens.begin(), tokens.end(), "retriable-status-codes") ==
                        tokens.end()) {
                    tokens.push_back("retriable-status-codes");
                }
                rp.retry_on.clear();
                for (const std::string& t : tokens) {
                    rp.retry_on += (rp.retry_on.empty() ? "" : ",") + t;
                }
            }
            if (rp.attempts == 0) {
                rp.retry_on.clear();
            }
            rp.per_try_timeout = in.per_try_timeout;
            rp.retry_remote_localities = in.retry_remote_localities;
            rp.retry_ignore_previous_hosts = in.retry_ignore_previous_hosts.value_or(true) && !hash;
            rp.backoff = in.backoff.value_or(std::chrono::milliseconds(25));
        } else {
            a.retries.retry_ignore_previous_hosts = !hash;
        }
        if (r.fault) {
            snapshot::fault_action f;
            if (r.fault->delay) {
                f.delay = snapshot::fault_action::delay_t{
                    r.fault->delay->fixed_delay.value_or(snapshot::duration{}),
                    r.fault->delay->percentage.value_or(0)};
            }
            if (r.fault->abort) {
                f.abort = snapshot::fault_action::abort_t{r.fault->abort->http_status.value_or(0),
                                                          r.fault->abort->grpc_status.value_or(""),
                                                          r.fault->abort->percentage.value_or(0)};
            }
            a.fault = f;
            // HTTPRoute.fault: "timeouts or retries will not be enabled when faults are".
            a.retries.attempts = 0;
            a.retries.retry_on.clear();
            a.timeout.reset();
        }
        if (r.mirror) {
            a.mirrors.push_back({dest(*r.mirror), r.mirror_percentage.value_or(100)});
        }
        for (const model::mirror_policy& m : r.mirrors) {
            a.mirrors.push_back({dest(m.dest), m.percentage.value_or(100)});
        }
        if (r.cors) {
            snapshot::cors_action c;
            for (const model::string_match& o : r.cors->allow_origins) {
                snapshot::string_matcher sm;
                sm.how = static_cast<snapshot::string_matcher::kind>(o.how);
                sm.value = o.value;
                std::shared_ptr<const RE2> re;
                if (sm.how == snapshot::string_matcher::kind::regex) {
                    RE2::Options ro;
                    ro.set_log_errors(false);
                    re = std::make_shared<const RE2>(sm.value, ro);
                    if (!re->ok()) {
                        return err("invalid regex: " + re->error(),
                                   where + ".corsPolicy.allowOrigins");
                    }
                }
                c.allow_origins.push_back(std::move(sm));
                c.origin_regex.push_back(std::move(re));
            }
            c.allow_methods = r.cors->allow_methods;
            c.allow_headers = r.cors->allow_headers;
            c.expose_headers = r.cors->expose_headers;
            c.max_age = r.cors->max_age;
            c.allow_credentials = r.cors->allow_credentials;
            if (!r.cors->unmatched_preflights.empty()) {
                c.unmatched_preflights = r.cors->unmatched_preflights;
            }
            a.cors = std::move(c);
        }
        a.headers = to_headers(r.headers);
        actions.push_back(std::move(a));
        return static_cast<uint32_t>(actions.size() - 1);
    }

    // The entries of one (possibly delegate-merged) route, one per applicable match block.
    result<void> emit(const model::http_route& r, const std::string& vs_ns,
                      snapshot::route_entry proto, const std::string& where,
                      std::vector<snapshot::route_entry>& out)
    {
        std::vector<const model::http_match*> blocks;
        for (const model::http_match& m : r.match) {
            if (block_applies(m.gateways, m.source_labels, m.source_namespace, vs_ns, gateway,
                              s.opts)) {
                blocks.push_back(&m);
            }
        }
        if (!r.match.empty() && blocks.empty()) {
            return ok(); // no block can match here: Istio emits nothing for the route
        }
        auto a = action(r, where);
        if (!a.ok()) {
            return a.err();
        }
        proto.action = *a;
        proto.name = r.name;
        if (r.match.empty()) {
            out.push_back(std::move(proto));
            return ok();
        }
        for (const model::http_match* m : blocks) {
            snapshot::route_entry e = proto;
            e.match = block(*m);
            out.push_back(std::move(e));
        }
        return ok();
    }

    result<std::vector<snapshot::route_entry>> vs_entries(
        uint32_t vi, const model::virtual_service& vs,
        const std::map<std::string, std::pair<uint32_t, const model::virtual_service*>>& by_name)
    {
        std::vector<snapshot::route_entry> out;
        for (size_t i = 0; i < vs.http.size(); ++i) {
            const model::http_route& r = vs.http[i];
            const std::string where = vs.meta.id() + ": spec.http[" + std::to_string(i) + "]";
            snapshot::route_entry proto;
            proto.vs = vi;
            proto.http_index = static_cast<uint32_t>(i);
            if (!r.delegate) {
                if (auto e = emit(r, vs.meta.ns, proto, where, out); !e.ok()) {
                    return e.err();
                }
                continue;
            }
            const std::string dns = r.delegate->ns.empty() ? vs.meta.ns : r.delegate->ns;
            const auto it = by_name.find(dns + "/" + r.delegate->name);
            if (it == by_name.end()) {
                s.note(where + ".delegate: VirtualService " + dns + "/" + r.delegate->name +
                       " not found: route dropped");
                continue;
            }
            const auto [di, dvs] = it->second;
            if (!dvs->hosts.empty()) {
                s.note(where + ".delegate: " + dvs->meta.id() +
                       " has hosts, so it cannot be a delegate: route dropped");
                continue;
            }
            for (size_t j = 0; j < dvs->http.size(); ++j) {
                const std::string dwhere =
                    dvs->meta.id() + ": spec.http[" + std::to_string(j) + "]";
                if (dvs->http[j].delegate) {
                    s.note(dwhere + ".delegate: delegation is one level only: route dropped");
                    continue;
                }
                auto merged = merge_route(r, dvs->http[j]);
                if (!merged) {
                    s.note(dwhere + ": its match conflicts with " + where + ": route dropped");
                    continue;
                }
                snapshot::route_entry p = proto;
                p.delegate_vs = di;
                p.delegate_http_index = static_cast<uint32_t>(j);
                if (auto e = emit(*merged, vs.meta.ns, p, dwhere, out); !e.ok()) {
                    return e.err();
                }
            }
        }
        return out;
    }

    result<void> finish(snapshot::route_table& t)
    {
        t.gateway = gateway;
        t.port = port;
        t.actions = std::move(actions);
        std::sort(t.vhosts.begin(), t.vhosts.end(),
                  [](const snapshot::virtual_host& a, const snapshot::virtual_host& b) {
                      return a.domain < b.domain;
                  });
        for (size_t i = 0; i < t.vhosts.size(); ++i) {
            const std::string& d = t.vhosts[i].domain;
            if (d == "*") {
                t.catch_all = static_cast<uint32_t>(i);
            } else if (d.starts_with("*.")) {
                t.suffixes.push_back(static_cast<uint32_t>(i));
            } else {
                t.exact.push_back(static_cast<uint32_t>(i));
            }
        }
        const size_t n = patterns.size();
        auto rs = snapshot::regex_set::build(std::move(patterns),
                                             static_cast<uint16_t>(input_names.size()));
        if (!rs.ok()) {
            return err(rs.err().to_string(), "route table " + gateway + ":" + std::to_string(port));
        }
        t.regexes = std::move(rs).value();
        t.regex_inputs = std::move(input_names);
        s.snap.regex_count += n;
        s.snap.regex_fallback_count += t.regexes.fallback_count();
        return ok();
    }
};

snapshot::listener_kind server_kind(const model::server& srv)
{
    using K = snapshot::listener_kind;
    const snapshot::protocol p = parse_protocol(srv.port.protocol);
    const bool passthrough =
        srv.tls && (srv.tls->mode == model::server_tls::mode_t::passthrough ||
                    srv.tls->mode == model::server_tls::mode_t::auto_passthrough);
    switch (p) {
    case snapshot::protocol::http:
    case snapshot::protocol::http2:
    case snapshot::protocol::grpc:
    case snapshot::protocol::grpc_web:
        return K::http;
    case snapshot::protocol::https:
        return passthrough ? K::tls_passthrough : K::http;
    case snapshot::protocol::tls:
        return passthrough ? K::tls_passthrough : K::tls_terminate;
    default:
        return K::tcp;
    }
}

snapshot::server_tls to_server_tls(const model::server_tls& t)
{
    snapshot::server_tls o;
    o.https_redirect = t.https_redirect;
    o.mode = static_cast<snapshot::server_tls::mode_t>(t.mode);
    o.server_certificate = t.server_certificate;
    o.private_key = t.private_key;
    o.ca_certificates = t.ca_certificates;
    o.ca_crl = t.ca_crl;
    o.credential_name = t.credential_name;
    o.credential_names = t.credential_names;
    o.subject_alt_names = t.subject_alt_names;
    o.verify_certificate_spki = t.verify_certificate_spki;
    o.verify_certificate_hash = t.verify_certificate_hash;
    o.min_protocol_version =
        t.min_protocol_version == model::server_tls::version::tls_auto
            ? snapshot::server_tls::version::tls_1_2
            : static_cast<snapshot::server_tls::version>(t.min_protocol_version);
    o.max_protocol_version = static_cast<snapshot::server_tls::version>(t.max_protocol_version);
    o.cipher_suites = t.cipher_suites;
    return o;
}

result<std::vector<net::prefix>> subnets(const std::vector<std::string>& in,
                                         const std::string& where)
{
    std::vector<net::prefix> out;
    for (const std::string& sn : in) {
        if (auto p = net::prefix::parse(sn); p.ok()) {
            out.push_back(*p);
            continue;
        }
        auto a = net::ip_addr::parse(sn);
        if (!a.ok()) {
            return err("'" + sn + "' is neither a CIDR nor an address", where);
        }
        out.push_back(net::prefix{*a, static_cast<uint8_t>(a->bits())});
    }
    return out;
}

using vs_list = std::vector<const model::virtual_service*>;
using vs_by_name = std::map<std::string, std::pair<uint32_t, const model::virtual_service*>>;

// Do a VS's hosts meet the hosts of these servers (namespace part honoured)?
bool hosts_meet(const model::virtual_service& vs, const std::vector<uint32_t>& servers,
                const snapshot::snapshot& snap)
{
    for (const std::string& h : vs.hosts) {
        for (const uint32_t si : servers) {
            for (const snapshot::server_host& sh : snap.servers[si].hosts) {
                if ((sh.ns == "*" || sh.ns == vs.meta.ns) &&
                    snapshot::hosts_intersect(h, sh.host)) {
                    return true;
                }
            }
        }
    }
    return false;
}

result<void> build_http_table(state& s, const vs_list& vss, const vs_by_name& by_name,
                              const std::string& gateway, uint32_t port,
                              const std::vector<uint32_t>& servers)
{
    table_builder b{s, gateway, port};
    snapshot::route_table t;
    struct acc {
        std::vector<std::vector<snapshot::route_entry>> sets;
        uint32_t vs = no_index;
        bool https_redirect = false;
    };
    std::map<std::string, acc> domains;
    for (uint32_t vi = 0; vi < vss.size(); ++vi) {
        const model::virtual_service& vs = *vss[vi];
        if (vs.hosts.empty() || !bound_to(vs, gateway)) {
            continue;
        }
        std::map<std::string, bool> mine; // domain -> https redirect
        if (gateway == "mesh") {
            for (const std::string& h : vs.hosts) {
                mine.emplace(to_lower(h), false);
            }
        } else {
            for (const std::string& h : vs.hosts) {
                for (const uint32_t si : servers) {
                    const snapshot::gateway_server& srv = s.snap.servers[si];
                    for (const snapshot::server_host& sh : srv.hosts) {
                        if ((sh.ns != "*" && sh.ns != vs.meta.ns) ||
                            !snapshot::hosts_intersect(h, sh.host)) {
                            continue;
                        }
                        // The more specific of the two names the virtual host (Istio's
                        // pickMatchingGatewayHosts).
                        const std::string d =
                            to_lower(snapshot::host_subset_of(h, sh.host) ? h : sh.host);
                        mine[d] = mine[d] || (srv.tls && srv.tls->https_redirect);
                    }
                }
            }
        }
        if (mine.empty()) {
            continue;
        }
        auto entries = b.vs_entries(vi, vs, by_name);
        if (!entries.ok()) {
            return entries.err();
        }
        for (const auto& [d, https] : mine) {
            acc& a = domains[d];
            if (gateway == "mesh" && a.vs != no_index) {
                s.note(vs.meta.id() + ": host " + d + " already claimed in the mesh by " +
                       s.snap.virtual_services[a.vs] + ": ignored");
                continue;
            }
            if (a.vs == no_index) {
                a.vs = vi;
            }
            a.https_redirect = a.https_redirect || https;
            a.sets.push_back(*entries);
        }
    }
    for (auto& [d, a] : domains) {
        snapshot::virtual_host vh;
        vh.domain = d;
        vh.vs = a.vs;
        vh.https_redirect = a.https_redirect;
        for (auto& set : a.sets) {
            for (auto& e : set) {
                vh.routes.push_back(std::move(e));
            }
        }
        if (a.sets.size() > 1) {
            // Istio's CombineVHostRoutes: catch-all routes of every VS go last.
            std::stable_partition(
                vh.routes.begin(), vh.routes.end(),
                [](const snapshot::route_entry& e) { return !e.match.catch_all(); });
        }
        t.vhosts.push_back(std::move(vh));
    }
    if (auto r = b.finish(t); !r.ok()) {
        return r;
    }
    s.snap.http.push_back(std::move(t));
    return ok();
}

result<void> build_l4_table(state& s, const vs_list& vss, const std::string& gateway, uint32_t port,
                            const std::vector<uint32_t>& servers, bool tls)
{
    table_builder b{s, gateway, port, !tls};
    snapshot::l4_table t;
    t.gateway = gateway;
    t.port = port;
    for (uint32_t vi = 0; vi < vss.size(); ++vi) {
        const model::virtual_service& vs = *vss[vi];
        if (vs.hosts.empty() || !bound_to(vs, gateway)) {
            continue;
        }
        if (gateway != "mesh" && !hosts_meet(vs, servers, s.snap)) {
            continue;
        }
        const size_t n = tls ? vs.tls.size() : vs.tcp.size();
        for (size_t ri = 0; ri < n; ++ri) {
            const std::string where =
                vs.meta.id() + (tls ? ": spec.tls[" : ": spec.tcp[") + std::to_string(ri) + "]";
            const auto& dests = tls ? vs.tls[ri].route : vs.tcp[ri].route;
            struct cond {
                const std::vector<std::string>* subnets;
                std::optional<uint32_t> port;
                const std::vector<std::string>* sni;
            };
            std::vector<cond> conds;
            static const std::vector<std::string> none;
            if (tls) {
                for (const model::tls_match& m : vs.tls[ri].match) {
                    if (block_applies(m.gateways, m.source_labels, m.source_namespace, vs.meta.ns,
                                      gateway, s.opts)) {
                        conds.push_back({&m.destination_subnets, m.port, &m.sni_hosts});
                    }
                }
                if (vs.tls[ri].match.empty()) {
                    conds.push_back({&none, std::nullopt, &none});
                }
            } else {
                for (const model::l4_match& m : vs.tcp[ri].match) {
                    if (block_applies(m.gateways, m.source_labels, m.source_namespace, vs.meta.ns,
                                      gateway, s.opts)) {
                        conds.push_back({&m.destination_subnets, m.port, &none});
                    }
                }
                if (vs.tcp[ri].match.empty()) {
                    conds.push_back({&none, std::nullopt, &none});
                }
            }
            for (const cond& c : conds) {
                if (port != 0 && c.port && *c.port != port) {
                    continue;
                }
                snapshot::l4_route r;
                auto sn = subnets(*c.subnets, where);
                if (!sn.ok()) {
                    return sn.err();
                }
                r.destination_subnets = std::move(sn).value();
                r.port = c.port.value_or(0);
                for (const std::string& h : *c.sni) {
                    bool ok_host = gateway == "mesh";
                    for (const uint32_t si : servers) {
                        for (const snapshot::server_host& sh : s.snap.servers[si].hosts) {
                            ok_host = ok_host || ((sh.ns == "*" || sh.ns == vs.meta.ns) &&
                                                  snapshot::hosts_intersect(h, sh.host));
                        }
                    }
                    if (ok_host) {
                        r.sni_hosts.push_back(to_lower(h));
                    }
                }
                if (tls && !c.sni->empty() && r.sni_hosts.empty()) {
                    continue; // no SNI host of the route is served on this port
                }
                r.total_weight = b.destinations(dests, r.destinations);
                r.vs = vi;
                r.route_index = static_cast<uint32_t>(ri);
                t.routes.push_back(std::move(r));
            }
        }
    }
    (tls ? s.snap.tls : s.snap.tcp).push_back(std::move(t));
    return ok();
}

} // namespace

result<void> build_routes(state& s)
{
    // VirtualServices in namespace/name order; their index is their position.
    vs_list vss;
    for (const model::virtual_service& vs : s.mesh.virtual_services) {
        vss.push_back(&vs);
    }
    std::sort(vss.begin(), vss.end(), [](const auto* a, const auto* b) {
        return std::tie(a->meta.ns, a->meta.name) < std::tie(b->meta.ns, b->meta.name);
    });
    vs_by_name by_name;
    for (uint32_t i = 0; i < vss.size(); ++i) {
        const std::string id = vss[i]->meta.ns + "/" + vss[i]->meta.name;
        s.snap.virtual_services.push_back(id);
        by_name.emplace(id, std::pair{i, vss[i]});
    }

    // Gateway servers, grouped by (gateway, port) per kind.
    std::vector<const model::gateway*> gws;
    for (const model::gateway& g : s.mesh.gateways) {
        gws.push_back(&g);
    }
    std::sort(gws.begin(), gws.end(), [](const auto* a, const auto* b) {
        return std::tie(a->meta.ns, a->meta.name) < std::tie(b->meta.ns, b->meta.name);
    });
    using key = std::pair<std::string, uint32_t>;
    std::map<key, std::vector<uint32_t>> http_ports, tls_ports, tcp_ports;
    for (const model::gateway* g : gws) {
        const std::string gname = g->meta.ns + "/" + g->meta.name;
        for (const model::server& srv : g->servers) {
            snapshot::gateway_server out;
            out.gateway = gname;
            out.name = srv.name;
            out.port = srv.port.number;
            out.proto = parse_protocol(srv.port.protocol);
            out.kind = server_kind(srv);
            out.bind = srv.bind;
            for (const std::string& h : srv.hosts) {
                snapshot::server_host sh;
                const size_t slash = h.find('/');
                if (slash == std::string::npos) {
                    sh.host = to_lower(h);
                } else {
                    sh.ns = h.substr(0, slash);
                    if (sh.ns == ".") {
                        sh.ns = g->meta.ns;
                    }
                    sh.host = to_lower(h.substr(slash + 1));
                }
                out.hosts.push_back(std::move(sh));
            }
            if (srv.tls) {
                out.tls = to_server_tls(*srv.tls);
            }
            const auto idx = static_cast<uint32_t>(s.snap.servers.size());
            switch (out.kind) {
            case snapshot::listener_kind::http:
                http_ports[{gname, out.port}].push_back(idx);
                break;
            case snapshot::listener_kind::tls_passthrough:
                tls_ports[{gname, out.port}].push_back(idx);
                break;
            case snapshot::listener_kind::tls_terminate:
            case snapshot::listener_kind::tcp:
                tcp_ports[{gname, out.port}].push_back(idx);
                break;
            }
            s.snap.servers.push_back(std::move(out));
        }
    }

    // "mesh" sorts before "ns/name" only by accident of ASCII; tables are sorted below.
    if (auto r = build_http_table(s, vss, by_name, "mesh", 0, {}); !r.ok()) {
        return r;
    }
    for (const auto& [k, servers] : http_ports) {
        if (auto r = build_http_table(s, vss, by_name, k.first, k.second, servers); !r.ok()) {
            return r;
        }
    }
    for (const bool tls : {false, true}) {
        if (auto r = build_l4_table(s, vss, "mesh", 0, {}, tls); !r.ok()) {
            return r;
        }
        for (const auto& [k, servers] : tls ? tls_ports : tcp_ports) {
            if (auto r = build_l4_table(s, vss, k.first, k.second, servers, tls); !r.ok()) {
                return r;
            }
        }
    }
    auto by_key = [](const auto& a, const auto& b) {
        return std::tie(a.gateway, a.port) < std::tie(b.gateway, b.port);
    };
    std::sort(s.snap.http.begin(), s.snap.http.end(), by_key);
    std::sort(s.snap.tcp.begin(), s.snap.tcp.end(), by_key);
    std::sort(s.snap.tls.begin(), s.snap.tls.end(), by_key);
    return ok();
}

} // namespace sluice::compile::detail
