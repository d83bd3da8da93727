#include "sluice/snapshot/snapshot.hh"

#include <algorithm>
#include <sstream>

#include "sluice/base/hash.hh"

namespace sluice::snapshot {

bool is_l7(listener_kind k) noexcept
{
    return k == listener_kind::http || k == listener_kind::tls_passthrough;
}

bool match_block::catch_all() const noexcept
{
    const bool uri_all = !uri || (uri->how == string_matcher::kind::prefix && uri->value == "/" &&
                                  !uri->ignore_case);
    return uri_all && !scheme && !method && !authority && headers.empty() &&
           without_headers.empty() && query_params.empty() && port == 0;
}

double route_action::share(size_t i) const noexcept
{
    if (i >= destinations.size() || total_weight == 0) {
        return 0;
    }
    return static_cast<double>(destinations[i].weight) / static_cast<double>(total_weight);
}

std::string cluster_name(uint32_t port, std::string_view subset, std::string_view host)
{
    std::string s = "outbound|" + std::to_string(port) + "|";
    s.append(subset);
    s += '|';
    s.append(host);
    return s;
}

uint32_t destination_cluster(const weighted_destination& d, uint32_t listener_port) noexcept
{
    if (d.cluster != no_index) {
        return d.cluster;
    }
    for (const auto& [port, idx] : d.cluster_by_port) {
        if (port == listener_port) {
            return idx;
        }
    }
    return d.fallback_cluster;
}

uint32_t pick_endpoint(const cluster& c, uint16_t level, uint16_t group, uint64_t hash) noexcept
{
    if (level >= c.maglev.size() || level >= c.plan.levels.size()) {
        return no_index;
    }
    const level_tables& lt = c.maglev[level];
    const locality::level& lv = c.plan.levels[level];
    if (group < lt.groups.size() && group < lv.groups.size()) {
        const maglev::table& t = lt.groups[group];
        const uint32_t rank = t.lookup64(hash);
        if (rank == maglev::no_endpoint) {
            return no_index;
        }
        return lv.groups[group].endpoints[t.input_index(rank)];
    }
    const uint32_t rank = lt.all.lookup64(hash);
    if (rank == maglev::no_endpoint) {
        return no_index;
    }
    return lv.endpoints[lt.all.input_index(rank)];
}

const cluster* snapshot::find_cluster(std::string_view name) const noexcept
{
    const uint32_t i = cluster_index(name);
    return i == no_index ? nullptr : &clusters[i];
}

uint32_t snapshot::cluster_index(std::string_view name) const noexcept
{
    const auto it = std::lower_bound(
        clusters.begin(), clusters.end(), name,
        [](const cluster& c, std::string_view n) { return std::string_view{c.name} < n; });
    if (it == clusters.end() || it->name != name) {
        return no_index;
    }
    return static_cast<uint32_t>(it - clusters.begin());
}

namespace {

template <typename Table>
const Table* find_table(const std::vector<Table>& v, std::string_view gateway,
                        uint32_t port) noexcept
{
    if (gateway == "mesh") {
        port = 0;
    }
    const auto it =
        std::lower_bound(v.begin(), v.end(), std::pair{gateway, port},
                         [](const Table& t, const std::pair<std::string_view, uint32_t>& k) {
                             const int c = std::string_view{t.gateway}.compare(k.first);
                             return c < 0 || (c == 0 && t.port < k.second);
                         });
    if (it == v.end() || it->gateway != gateway || it->port != port) {
        return nullptr;
    }
    return &*it;
}

uint64_t slots_digest(const maglev::table& t)
{
    uint64_t h = t.size();
    for (const uint16_t s : t.slots()) {
        h = fmix64(h ^ s) + 0x9e3779b97f4a7c15ULL;
    }
    return h;
}

void describe_matcher(std::ostringstream& o, const char* what, const string_matcher& m)
{
    static constexpr const char* kinds[] = {"any", "exact", "prefix", "regex"};
    o << ' ' << what << '=' << kinds[static_cast<int>(m.how)] << ':' << m.value
      << (m.ignore_case ? "(i)" : "");
}

void describe_dest(std::ostringstream& o, const weighted_destination& d)
{
    o << " ->" << d.host << '|' << d.subset << '|' << d.port << " w" << d.weight << " c"
      << d.cluster << " fb" << d.fallback_cluster;
    for (const auto& [p, c] : d.cluster_by_port) {
        o << " p" << p << ":c" << c;
    }
}

} // namespace

const route_table* snapshot::find_http(std::string_view gateway, uint32_t port) const noexcept
{
    return find_table(http, gateway, port);
}

const l4_table* snapshot::find_tcp(std::string_view gateway, uint32_t port) const noexcept
{
    return find_table(tcp, gateway, port);
}

const l4_table* snapshot::find_tls(std::string_view gateway, uint32_t port) const noexcept
{
    return find_table(tls, gateway, port);
}

std::string snapshot::describe() const
{
    std::ostringstream o;
    for (const gateway_server& s : servers) {
        o << "server " << s.gateway << ' ' << s.name << ' ' << s.port << " kind"
          << static_cast<int>(s.kind) << " bind=" << s.bind;
        for (const server_host& h : s.hosts) {
            o << ' ' << h.ns << '/' << h.host;
        }
        o << '\n';
    }
    for (const listener& l : listeners) {
        o << "listener " << static_cast<int>(l.origin) << ' ' << l.address << ':' << l.port
          << " kind" << static_cast<int>(l.kind) << " host=" << l.host << " c" << l.cluster;
        if (!l.forwarding.empty()) {
            o << " fwd=" << l.forwarding;
        }
        for (const uint32_t s : l.servers) {
            o << " s" << s;
        }
        o << '\n';
    }
    for (const route_table& t : http) {
        o << "http " << t.gateway << ':' << t.port << " regex=" << t.regexes.size() << '/'
          << t.regexes.fallback_count() << '\n';
        for (const virtual_host& v : t.vhosts) {
            o << " vhost " << v.domain << " vs" << v.vs << (v.https_redirect ? " https" : "")
              << '\n';
            for (const route_entry& r : v.routes) {
                o << "  route " << r.name << " vs" << r.vs << '#' << r.http_index << " dvs"
                  << r.delegate_vs << '#' << r.delegate_http_index << " a" << r.action;
                const match_block& m = r.match;
                if (m.uri) {
                    describe_matcher(o, "uri", *m.uri);
                }
                if (m.scheme) {
                    describe_matcher(o, "scheme", *m.scheme);
                }
                if (m.method) {
                    describe_matcher(o, "method", *m.method);
                }
                if (m.authority) {
                    describe_matcher(o, "authority", *m.authority);
                }
                for (const named_condition& h : m.headers) {
                    describe_matcher(o, ("h:" + h.name).c_str(), h.match);
                }
                for (const named_condition& h : m.without_headers) {
                    describe_matcher(o, ("!h:" + h.name).c_str(), h.match);
                }
                for (const named_condition& q : m.query_params) {
                    describe_matcher(o, ("q:" + q.name).c_str(), q.match);
                }
                o << " port=" << m.port << '\n';
            }
        }
        for (size_t i = 0; i < t.actions.size(); ++i) {
            const route_action& a = t.actions[i];
            o << " action " << i << " kind" << static_cast<int>(a.kind) << " tw" << a.total_weight;
            for (const weighted_destination& d : a.destinations) {
                describe_dest(o, d);
            }
            o << " timeout=" << (a.timeout ? a.timeout->count() : -1)
              << " retries=" << a.retries.attempts << ':' << a.retries.retry_on
              << " redirect=" << a.redirect.code << a.redirect.uri << a.redirect.authority
              << " direct=" << a.direct_response.status << '\n';
        }
    }
    for (const auto* tables : {&tcp, &tls}) {
        for (const l4_table& t : *tables) {
            o << (tables == &tcp ? "tcp " : "tls ") << t.gateway << ':' << t.port << '\n';
            for (const l4_route& r : t.routes) {
                o << " route vs" << r.vs << '#' << r.route_index << " port=" << r.port;
                for (const net::prefix& p : r.destination_subnets) {
                    o << ' ' << p.to_string();
                }
                for (const std::string& s : r.sni_hosts) {
                    o << " sni=" << s;
                }
                for (const weighted_destination& d : r.destinations) {
                    describe_dest(o, d);
                }
                o << '\n';
            }
        }
    }
    for (const cluster& c : clusters) {
        o << "cluster " << c.name << (c.missing ? " MISSING " + c.missing_reason : "") << " lb"
          << static_cast<int>(c.policy.lb.simple)
          << " hash=" << (c.policy.lb.hash ? static_cast<int>(c.policy.lb.hash->key) : -1)
          << " outlier=" << (c.policy.outlier ? c.policy.outlier->consecutive_5xx_errors : 0)
          << " tls" << static_cast<int>(c.policy.tls.mode)
          << " maxconn=" << c.policy.tcp.max_connections << " panic=" << c.policy.panic_threshold
          << " dist=" << c.distribution_source;
        if (c.health_check) {
            const health_check_spec& hc = *c.health_check;
            o << " hc=" << (hc.kind == health_check_spec::kind_t::http ? "http:" + hc.path : "tcp")
              << ",interval=" << hc.interval.count() << "ns,timeout=" << hc.timeout.count()
              << "ns,unhealthy=" << hc.unhealthy_threshold << ",healthy=" << hc.healthy_threshold;
        }
        o << '\n';
        for (const endpoint& e : c.endpoints) {
            o << " ep " << e.id << ' ' << e.address << ':' << e.port << ' ' << e.network << ' '
              << e.locality.region << '/' << e.locality.zone << '/' << e.locality.subzone << ' '
              << e.node_name << " w" << e.weight << (e.ready ? "" : " notready");
            for (const auto& [k, v] : e.endpoint_labels) {
                o << ' ' << k << '=' << v;
            }
            o << '\n';
        }
        for (size_t l = 0; l < c.plan.levels.size(); ++l) {
            o << " level " << l << " tier" << c.plan.levels[l].tier << ':';
            for (const uint32_t e : c.plan.levels[l].endpoints) {
                o << ' ' << e;
            }
            if (l < c.maglev.size()) {
                o << " maglev=" << slots_digest(c.maglev[l].all);
                for (const maglev::table& g : c.maglev[l].groups) {
                    o << ',' << slots_digest(g);
                }
            }
            o << '\n';
        }
    }
    for (const std::string& n : notes) {
        o << "note " << n << '\n';
    }
    return o.str();
}

} // namespace sluice::snapshot
