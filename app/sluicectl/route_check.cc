#include "route_check.hh"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iostream>
#include <optional>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "inputs.hh"
#include "sluice/compile/compile.hh"
#include "sluice/snapshot/route_match.hh"
#include "sluice/base/ascii.hh"

namespace sluice::ctl_cli {
namespace {

struct test_request {
    std::string authority;
    std::string path = "/";
    std::string method = "GET";
    std::string scheme = "http";
    uint32_t port = 80;
    std::string gateway = "mesh";
    std::vector<std::pair<std::string, std::string>> headers;
};

/// Everything route check reports about one request: the "actual" side of a test.
struct verdict {
    uint32_t status = 0;
    std::string outcome;
    std::string host;
    std::string subset;
    uint32_t port = 0;
    struct dest {
        std::string host;
        std::string subset;
        uint32_t weight = 0;
    };
    std::vector<dest> destinations;
    std::string path;
    std::string authority;
    std::string redirect;
    std::optional<std::string> body;
    std::optional<model::duration> timeout;
    uint32_t retry_attempts = 0;
    std::optional<model::duration> per_try_timeout;
    std::string retry_on;
    std::string virtual_service;
};

std::string fmt_duration(const std::optional<model::duration>& d)
{
    if (!d) {
        return "none";
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    if (ms % 1000 == 0) {
        return std::to_string(ms / 1000) + "s";
    }
    return std::to_string(ms) + "ms";
}

verdict evaluate(const snapshot::snapshot& snap, const test_request& t)
{
    static thread_local snapshot::regex_scratch scratch;
    std::vector<snapshot::header> hs;
    for (const auto& [k, v] : t.headers) {
        hs.push_back({k, v});
    }
    snapshot::request r;
    r.authority = t.authority;
    r.path = t.path;
    r.method = t.method;
    r.scheme = t.scheme;
    r.port = t.port;
    r.gateway = t.gateway;
    r.headers = hs;
    const auto d = snapshot::match_route(snap, r, scratch);
    verdict v;
    v.outcome = snapshot::to_string(d.what);
    v.status = d.status;
    v.virtual_service = std::string(d.virtual_service);
    v.path = t.path;
    v.authority = t.authority;
    if (d.action == nullptr) {
        return v;
    }
    const auto& a = *d.action;
    const auto rw = snapshot::apply_rewrite(d, r);
    v.path = rw.path;
    v.authority = rw.authority;
    v.timeout = a.timeout;
    v.retry_attempts = a.retries.attempts;
    v.per_try_timeout = a.retries.per_try_timeout;
    v.retry_on = a.retries.retry_on;
    for (const auto c : a.retries.retriable_status_codes) {
        v.retry_on += (v.retry_on.empty() ? "" : ",") + std::to_string(c);
    }
    if (d.what == snapshot::outcome::redirect || d.what == snapshot::outcome::https_redirect) {
        v.redirect = snapshot::redirect_location(d, r);
    }
    if (d.what == snapshot::outcome::direct_response) {
        v.body = a.direct_response.body;
    }
    if (d.what == snapshot::outcome::forward) {
        // The primary destination: the largest weight, the first on ties.
        const snapshot::weighted_destination* best = nullptr;
        for (const auto& wd : a.destinations) {
            v.destinations.push_back({wd.host, wd.subset, wd.weight});
            if (best == nullptr || wd.weight > best->weight) {
                best = &wd;
            }
        }
        v.status = 200;
        if (best != nullptr) {
            v.host = best->host;
            v.subset = best->subset;
            v.port = best->port;
            const uint32_t ci = snapshot::destination_cluster(*best, t.port);
            if (ci != snapshot::no_index && ci < snap.clusters.size()) {
                const auto& c = snap.clusters[ci];
                v.port = c.port;
                if (c.missing) {
                    v.status = 503; // NC: no cluster
                }
            }
        }
    }
    return v;
}

void print_verdict(const verdict& v, std::ostream& os)
{
    os << "  outcome: " << v.outcome << " (status " << v.status << ")\n";
    if (!v.virtual_service.empty()) {
        os << "  virtualService: " << v.virtual_service << "\n";
    }
    for (const auto& d : v.destinations) {
        os << "  destination: " << d.host << (d.subset.empty() ? "" : " subset " + d.subset)
           << " weight " << d.weight << "\n";
    }
    if (!v.host.empty()) {
        os << "  host: " << v.host << " subset: " << (v.subset.empty() ? "-" : v.subset)
           << " port: " << v.port << "\n";
    }
    os << "  path: " << v.path << "  authority: " << v.authority << "\n";
    if (!v.redirect.empty()) {
        os << "  redirect: " << v.redirect << "\n";
    }
    if (v.body) {
        os << "  body: " << *v.body << "\n";
    }
    os << "  timeout: " << fmt_duration(v.timeout) << "  retries: " << v.retry_attempts
       << " perTryTimeout: " << fmt_duration(v.per_try_timeout) << " retryOn: " << v.retry_on
       << "\n";
}

std::optional<test_request> parse_request_node(const YAML::Node& n, std::string& error)
{
    test_request t;
    if (!n || !n.IsMap()) {
        error = "request must be a map";
        return std::nullopt;
    }
    for (const auto& kv : n) {
        const auto key = kv.first.as<std::string>();
        if (key == "authority" || key == "host") {
            t.authority = kv.second.as<std::string>();
        } else if (key == "path") {
            t.path = kv.second.as<std::string>();
        } else if (key == "method") {
            t.method = kv.second.as<std::string>();
        } else if (key == "scheme") {
            t.scheme = kv.second.as<std::string>();
        } else if (key == "port") {
            t.port = kv.second.as<uint32_t>();
        } else if (key == "gateway") {
            t.gateway = kv.second.as<std::string>();
        } else if (key == "headers") {
            for (const auto& h : kv.second) {
                t.headers.emplace_back(to_lower(h.first.as<std::string>()),
                                       h.second.as<std::string>());
            }
        } else {
            error = "unknown request field \"" + key + "\"";
            return std::nullopt;
        }
    }
    return t;
}

/// Compares the `expect` fields present; appends "field: expected X, got Y" lines.
std::vector<std::string> compare(const YAML::Node& expect, const verdict& v)
{
    std::vector<std::string> bad;
    auto mismatch = [&](const std::string& field, const std::string& want, const std::string& got) {
        bad.push_back(field + ": expected " + want + ", got " + got);
    };
    for (const auto& kv : expect) {
        const auto key = kv.first.as<std::string>();
        const auto& val = kv.second;
        if (key == "status") {
            if (val.as<uint32_t>() != v.status) {
                mismatch(key, val.as<std::string>(), std::to_string(v.status));
            }
        } else if (key == "host") {
            if (val.as<std::string>() != v.host) {
                mismatch(key, val.as<std::string>(), v.host.empty() ? "(none)" : v.host);
            }
        } else if (key == "subset") {
            if (val.as<std::string>() != v.subset) {
                mismatch(key, val.as<std::string>(), v.subset.empty() ? "(none)" : v.subset);
            }
        } else if (key == "port") {
            if (val.as<uint32_t>() != v.port) {
                mismatch(key, val.as<std::string>(), std::to_string(v.port));
            }
        } else if (key == "path") {
            if (val.as<std::string>() != v.path) {
                mismatch(key, val.as<std::string>(), v.path);
            }
        } else if (key == "authority") {
            if (to_lower(val.as<std::string>()) != to_lower(v.authority)) {
                mismatch(key, val.as<std::string>(), v.authority);
            }
        } else if (key == "redirect") {
            if (val.as<std::string>() != v.redirect) {
                mismatch(key, val.as<std::string>(), v.redirect.empty() ? "(none)" : v.redirect);
            }
        } else if (key == "body") {
            if (!v.body || val.as<std::string>() != *v.body) {
                mismatch(key, val.as<std::string>(), v.body ? *v.body : "(none)");
            }
        } else if (key == "virtualService") {
            if (val.as<std::string>() != v.virtual_service) {
                mismatch(key, val.as<std::string>(),
                         v.virtual_service.empty() ? "(none)" : v.virtual_service);
            }
        } else if (key == "timeout") {
            const auto want = val.as<std::string>();
            std::optional<model::duration> w;
            if (want != "none") {
                auto p = model::parse_duration(want);
                if (!p) {
                    bad.push_back("timeout: " + p.err().message);
                    continue;
                }
                if (p->count() != 0) {
                    w = *p;
                }
            }
            if (w != v.timeout) {
                mismatch(key, want, fmt_duration(v.timeout));
            }
        } else if (key == "retries") {
            for (const auto& r : val) {
                const auto rk = r.first.as<std::string>();
                if (rk == "attempts") {
                    if (r.second.as<uint32_t>() != v.retry_attempts) {
                        mismatch("retries.attempts", r.second.as<std::string>(),
                                 std::to_string(v.retry_attempts));
                    }
                } else if (rk == "perTryTimeout") {
                    auto p = model::parse_duration(r.second.as<std::string>());
                    if (!p || std::optional<model::duration>(*p) != v.per_try_timeout) {
                        mismatch("retries.perTryTimeout", r.second.as<std::string>(),
                                 fmt_duration(v.per_try_timeout));
                    }
                } else if (rk == "retryOn") {
                    if (r.second.as<std::string>() != v.retry_on) {
                        mismatch("retries.retryOn", r.second.as<std::string>(), v.retry_on);
                    }
                } else {
                    bad.push_back("retries." + rk + ": unknown field");
                }
            }
        } else if (key == "destinations") {
            std::vector<verdict::dest> want;
            for (const auto& d : val) {
                verdict::dest x;
                x.host = d["host"] ? d["host"].as<std::string>() : "";
                x.subset = d["subset"] ? d["subset"].as<std::string>() : "";
                x.weight = d["weight"] ? d["weight"].as<uint32_t>() : 0;
                want.push_back(x);
            }
            auto key_of = [](const verdict::dest& d) {
                return d.host + "|" + d.subset + "|" + std::to_string(d.weight);
            };
            std::vector<std::string> a;
            std::vector<std::string> b;
            for (const auto& d : want) {
                a.push_back(key_of(d));
            }
            for (const auto& d : v.destinations) {
                b.push_back(key_of(d));
            }
            std::sort(a.begin(), a.end());
            std::sort(b.begin(), b.end());
            if (a != b) {
                std::string got;
                for (const auto& s : b) {
                    got += (got.empty() ? "" : " ") + s;
                }
                std::string exp;
                for (const auto& s : a) {
                    exp += (exp.empty() ? "" : " ") + s;
                }
                mismatch("destinations", "[" + exp + "]", "[" + got + "]");
            }
        } else {
            bad.push_back(key + ": unknown expect field");
        }
    }
    return bad;
}

/// 'GET http://host:port/path?q' -> request.
std::optional<test_request> parse_request_line(const std::string& line, std::string& error)
{
    std::istringstream in(line);
    std::string method;
    std::string url;
    in >> method >> url;
    if (url.empty()) { // a bare URL means GET
        url = method;
        method = "GET";
    }
    test_request t;
    t.method = method;
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string::npos) {
        error = "the request must look like 'GET http://host/path'";
        return std::nullopt;
    }
    t.scheme = to_lower(url.substr(0, scheme_end));
    const auto rest = url.substr(scheme_end + 3);
    const auto slash = rest.find('/');
    t.authority = rest.substr(0, slash);
    t.path = slash == std::string::npos ? "/" : rest.substr(slash);
    t.port = t.scheme == "https" ? 443 : 80;
    const auto colon = t.authority.rfind(':');
    if (colon != std::string::npos && t.authority.find(']') == std::string::npos) {
        t.port = static_cast<uint32_t>(std::stoul(t.authority.substr(colon + 1)));
    }
    return t;
}

} // namespace

int run_route_check(const route_check_args& args)
{
    model::options mopts;
    mopts.cluster_domain = args.cluster_domain;
    auto in = load_inputs(args.files, mopts);
    size_t errors = 0;
    for (const auto& d : in.diagnostics) {
        if (d.level == model::severity::error) {
            std::cerr << d.to_string() << "\n";
            ++errors;
        }
    }
    for (const auto& d : model::validate(in.objects, mopts)) {
        if (d.level == model::severity::error) {
            std::cerr << d.to_string() << "\n";
            ++errors;
        }
    }
    if (errors > 0) {
        std::cerr << "route check: the config has " << errors << " error(s)\n";
        return 1;
    }
    compile::options copts;
    copts.cluster_domain = args.cluster_domain;
    auto snap = compile::compile(in.objects, compile::node_locality{}, copts);
    if (!snap) {
        std::cerr << "route check: compile: " << snap.err().to_string() << "\n";
        return 1;
    }

    if (!args.request.empty()) {
        std::string error;
        auto t = parse_request_line(args.request, error);
        if (!t) {
            std::cerr << "route check: " << error << "\n";
            return 2;
        }
        t->gateway = args.gateway;
        if (args.port != 0) {
            t->port = args.port;
        }
        for (const auto& h : args.headers) {
            const auto colon = h.find(':');
            if (colon == std::string::npos) {
                std::cerr << "route check: header \"" << h << "\" is not 'name: value'\n";
                return 2;
            }
            std::string v = h.substr(colon + 1);
            v.erase(0, v.find_first_not_of(' '));
            t->headers.emplace_back(to_lower(h.substr(0, colon)), v);
        }
        std::cout << t->method << " " << t->scheme << "://" << t->authority << t->path
                  << " (gateway " << t->gateway << ", port " << t->port << ")\n";
        print_verdict(evaluate(*snap, *t), std::cout);
        return 0;
    }

    YAML::Node doc;
    try {
        doc = YAML::LoadFile(args.tests);
    } catch (const YAML::Exception& e) {
        std::cerr << args.tests << ":" << e.mark.line + 1 << ": " << e.msg << "\n";
        return 1;
    }
    if (!doc["tests"] || !doc["tests"].IsSequence()) {
        std::cerr << args.tests << ": needs a top-level `tests:` list\n";
        return 1;
    }
    size_t passed = 0;
    size_t failed = 0;
    for (const auto& tn : doc["tests"]) {
        const std::string name = tn["name"] ? tn["name"].as<std::string>() : "(unnamed)";
        std::string error;
        std::optional<test_request> t;
        try {
            t = parse_request_node(tn["request"], error);
        } catch (const YAML::Exception& e) {
            error = e.what();
        }
        if (!t) {
            std::cout << "FAIL: " << name << "\n  request: " << error << "\n";
            ++failed;
            continue;
        }
        const auto v = evaluate(*snap, *t);
        std::vector<std::string> bad;
        try {
            bad = compare(tn["expect"], v);
        } catch (const YAML::Exception& e) {
            bad.push_back(std::string("expect: ") + e.what());
        }
        if (bad.empty()) {
            std::cout << "PASS: " << name << "\n";
            ++passed;
        } else {
            std::cout << "FAIL: " << name << "\n";
            for (const auto& b : bad) {
                std::cout << "  " << b << "\n";
            }
            ++failed;
        }
    }
    std::cout << passed << " passed, " << failed << " failed\n";
    return failed == 0 ? 0 : 1;
}

} // namespace sluice::ctl_cli
