// Route matching over compiled snapshots: every routing semantic of ISTIO.md §2 decided at
// compile time (first match, AND/OR, string prefixes, regex full match, ignoreUriCase,
// headers, queryParams, wildcard hosts, gateway binding, delegation, defaults, rewrites,
// redirects, faults).
#include <gtest/gtest.h>

#include "mesh_builder.hh"
#include "sluice/snapshot/host_match.hh"

namespace sluice::testing {
namespace {

using snapshot::outcome;
constexpr const char* reviews = "reviews.prod.svc.cluster.local";
constexpr const char* ratings = "ratings.prod.svc.cluster.local";

// A mesh with two services and one edge gateway serving *.example.com and api.test on 80.
model::mesh base_mesh()
{
    model::mesh m;
    m.services.push_back(service("prod", "reviews", {{"http", 9080}}));
    m.services.push_back(service("prod", "ratings", {{"http", 9080}, {"grpc", 9090}}));
    m.gateways.push_back(
        gateway("istio-system", "edge", {server(80, {"*/*.example.com", "*/api.test"})}));
    return m;
}

std::string host_of(const snapshot::decision& d, size_t i = 0)
{
    return d.action != nullptr && i < d.action->destinations.size() ? d.action->destinations[i].host
                                                                    : "";
}

TEST(RouteMatch, FirstMatchWins)
{
    model::mesh m = base_mesh();
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {http({uri(prefix("/a"))}, {to(reviews)}, "first"),
                                     http({uri(prefix("/a/b"))}, {to(ratings)}, "second"),
                                     http({}, {to(ratings)}, "rest")}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/a/b/c", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    ASSERT_EQ(d.what, outcome::forward);
    EXPECT_EQ(d.route_index, 0U); // the broader rule is first, so it wins
    EXPECT_EQ(host_of(d), reviews);
    EXPECT_EQ(d.virtual_service, "prod/api");
    r.path = "/zzz";
    d = decide(s, r);
    EXPECT_EQ(d.route_index, 2U);
}

TEST(RouteMatch, AndWithinBlockOrAcrossBlocks)
{
    model::mesh m = base_mesh();
    model::http_match both = uri(prefix("/x"));
    both.method = exact("POST");
    model::http_match other = uri(exact("/y"));
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {http({both, other}, {to(reviews)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/x1", .method = "POST", .gateway = "istio-system/edge"};
    EXPECT_EQ(decide(s, r).what, outcome::forward);
    r.method = "GET"; // first block fails on one condition (AND) ...
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
    r.path = "/y"; // ... the second block alone is enough (OR)
    EXPECT_EQ(decide(s, r).what, outcome::forward);
    EXPECT_EQ(decide(s, r).status, 0U);
}

TEST(RouteMatch, PrefixIsAPlainStringPrefix)
{
    model::mesh m = base_mesh();
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {http({uri(prefix("/v2"))}, {to(reviews)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/v2example", .gateway = "istio-system/edge"};
    EXPECT_EQ(decide(s, r).what, outcome::forward);
    r.path = "/v2/x?q=1";
    EXPECT_EQ(decide(s, r).what, outcome::forward);
    r.path = "/V2";
    const auto d = decide(s, r);
    EXPECT_EQ(d.what, outcome::no_route); // case-sensitive without ignoreUriCase
    EXPECT_EQ(d.status, 404U);
    EXPECT_EQ(d.virtual_service, "prod/api"); // 404 NR names the claiming VS
}

TEST(RouteMatch, ExactAndRegexIgnoreTheQueryAndRegexIsAFullMatch)
{
    model::mesh m = base_mesh();
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {http({uri(exact("/login"))}, {to(reviews)}),
                                     http({uri(regex("/users/[0-9]+"))}, {to(ratings)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/login?next=/", .gateway = "istio-system/edge"};
    EXPECT_EQ(decide(s, r).route_index, 0U);
    r.path = "/login/";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
    r.path = "/users/42?x=1";
    EXPECT_EQ(decide(s, r).route_index, 1U);
    r.path = "/users/42/extra"; // a partial match is not a match
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
    r.path = "/api/users/42";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
}

TEST(RouteMatch, IgnoreUriCaseForExactAndPrefix)
{
    model::mesh m = base_mesh();
    model::http_match a = uri(exact("/Login"));
    a.ignore_uri_case = true;
    model::http_match b = uri(prefix("/Static/"));
    b.ignore_uri_case = true;
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {http({a}, {to(reviews)}), http({b}, {to(ratings)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/LOGIN", .gateway = "istio-system/edge"};
    EXPECT_EQ(decide(s, r).route_index, 0U);
    r.path = "/static/app.js";
    EXPECT_EQ(decide(s, r).route_index, 1U);
    r.path = "/STATIC/app.js";
    EXPECT_EQ(decide(s, r).route_index, 1U);
    r.path = "/stat";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
}

TEST(RouteMatch, HeadersPresentExactAbsentAndWithoutHeaders)
{
    model::mesh m = base_mesh();
    model::http_match jason;
    jason.headers["end-user"] = exact("jason");
    model::http_match has_debug;
    has_debug.headers["x-debug"] = present();
    model::http_match not_canary;
    not_canary.without_headers["x-canary"] = exact("yes");
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"},
           {http({jason}, {to(reviews, "v2")}), http({has_debug}, {to(reviews, "v3")}),
            http({not_canary}, {to(reviews, "v1")}), http({}, {to(ratings)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .gateway = "istio-system/edge"};
    r.headers = {{"End-User", "jason"}}; // names are case-insensitive
    EXPECT_EQ(decide(s, r).route_index, 0U);
    r.headers = {{"end-user", "Jason"}}; // values are not
    EXPECT_EQ(decide(s, r).route_index, 2U);
    r.headers = {{"x-debug", ""}}; // `{}` means present, even empty
    EXPECT_EQ(decide(s, r).route_index, 1U);
    r.headers = {};
    EXPECT_EQ(decide(s, r).route_index, 2U); // absent header does not exclude
    r.headers = {{"x-canary", "yes"}};
    EXPECT_EQ(decide(s, r).route_index, 3U); // present and matching excludes
    r.headers = {{"x-canary", "no"}};
    EXPECT_EQ(decide(s, r).route_index, 2U);
}

TEST(RouteMatch, QueryParamsBareKeyExactEmptyAndRegex)
{
    model::mesh m = base_mesh();
    model::http_match bare;
    bare.query_params["debug"] = exact("");
    model::http_match num;
    num.query_params["page"] = regex("[0-9]+");
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {http({bare}, {to(reviews)}), http({num}, {to(ratings)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/p?debug", .gateway = "istio-system/edge"};
    EXPECT_EQ(decide(s, r).route_index, 0U);
    r.path = "/p?a=1&debug=";
    EXPECT_EQ(decide(s, r).route_index, 0U);
    r.path = "/p?debug=1";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
    r.path = "/p?page=12";
    EXPECT_EQ(decide(s, r).route_index, 1U);
    r.path = "/p?page=12a";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
    r.path = "/p";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
}

TEST(RouteMatch, MethodSchemeAuthorityAndPortConditions)
{
    model::mesh m = base_mesh();
    model::http_match c;
    c.method = regex("GET|HEAD");
    c.scheme = exact("https");
    c.authority = prefix("api.");
    c.port = 80;
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"}, {http({c}, {to(reviews)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test",
          .method = "HEAD",
          .scheme = "https",
          .gateway = "istio-system/edge"};
    EXPECT_EQ(decide(s, r).what, outcome::forward);
    r.method = "GETX";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
    r.method = "GET";
    r.scheme = "http";
    EXPECT_EQ(decide(s, r).what, outcome::no_route);
}

TEST(RouteMatch, WildcardHostsExactBeatsSuffixAndPortsAreIgnored)
{
    model::mesh m = base_mesh();
    m.gateways[0].servers[0].hosts = {"*/*"};
    m.virtual_services.push_back(
        vs("prod", "wild", {"*.example.com"}, {"istio-system/edge"}, {http({}, {to(reviews)})}));
    m.virtual_services.push_back(vs("prod", "deeper", {"*.eu.example.com"}, {"istio-system/edge"},
                                    {http({}, {to(reviews, "eu")})}));
    m.virtual_services.push_back(
        vs("prod", "exact", {"www.example.com"}, {"istio-system/edge"}, {http({}, {to(ratings)})}));
    m.virtual_services.push_back(
        vs("prod", "all", {"*"}, {"istio-system/edge"}, {http({}, {to(ratings, "all")})}));
    const auto s = must_compile(m);
    auto vs_for = [&](std::string authority) {
        req r{.authority = std::move(authority), .gateway = "istio-system/edge"};
        return std::string(decide(s, r).virtual_service);
    };
    EXPECT_EQ(vs_for("a.example.com"), "prod/wild");
    EXPECT_EQ(vs_for("a.b.example.com"), "prod/wild");
    EXPECT_EQ(vs_for("x.eu.example.com"), "prod/deeper"); // longest suffix wins
    EXPECT_EQ(vs_for("eu.example.com"), "prod/wild");
    EXPECT_EQ(vs_for("www.example.com"), "prod/exact");
    EXPECT_EQ(vs_for("WWW.Example.COM:8080"), "prod/exact");
    EXPECT_EQ(vs_for("example.com"), "prod/all"); // *.example.com does not match it
    EXPECT_EQ(vs_for("[::1]:80"), "prod/all");
}

TEST(RouteMatch, NoVirtualHostAndNoListener)
{
    model::mesh m = base_mesh();
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"}, {http({}, {to(reviews)})}));
    const auto s = must_compile(m);
    req r{.authority = "other.test", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    EXPECT_EQ(d.what, outcome::no_virtual_host);
    EXPECT_EQ(d.status, 404U);
    r.authority = "api.test";
    r.port = 8080; // the gateway has no server on 8080
    d = decide(s, r);
    EXPECT_EQ(d.what, outcome::no_listener);
    EXPECT_EQ(d.status, 404U);
    r.port = 80;
    r.gateway = "istio-system/other";
    EXPECT_EQ(decide(s, r).what, outcome::no_listener);
}

TEST(RouteMatch, GatewayBindingDefaultsToMeshAndHonoursServerNamespaces)
{
    model::mesh m = base_mesh();
    m.gateways.push_back(gateway("prod", "local", {server(80, {"./shop.test", "dev/dev.test"})}));
    // No gateways: mesh only.
    m.virtual_services.push_back(vs("prod", "internal", {reviews}, {}, {http({}, {to(reviews)})}));
    m.virtual_services.push_back(
        vs("prod", "shop", {"shop.test"}, {"local"}, {http({}, {to(ratings)})}));
    m.virtual_services.push_back(
        vs("prod", "devx", {"dev.test"}, {"prod/local"}, {http({}, {to(ratings)})}));
    m.virtual_services.push_back(
        vs("dev", "devy", {"dev.test"}, {"prod/local"}, {http({}, {to(reviews)})}));
    const auto s = must_compile(m);
    req r{.authority = "reviews.prod.svc.cluster.local:9080", .gateway = "mesh"};
    EXPECT_EQ(decide(s, r).virtual_service, "prod/internal");
    r.gateway = "istio-system/edge";
    EXPECT_EQ(decide(s, r).what, outcome::no_virtual_host);
    // "./shop.test" is the gateway's own namespace: a prod VS binds.
    req shop{.authority = "shop.test", .gateway = "prod/local"};
    EXPECT_EQ(decide(s, shop).virtual_service, "prod/shop");
    // "dev/dev.test" admits only VirtualServices of namespace dev.
    req dev{.authority = "dev.test", .gateway = "prod/local"};
    EXPECT_EQ(decide(s, dev).virtual_service, "dev/devy");
}

TEST(RouteMatch, MatchLevelGatewaysOverrideTheVirtualServiceGateways)
{
    model::mesh m = base_mesh();
    m.gateways.push_back(gateway("istio-system", "internal", {server(80, {"*/api.test"})}));
    model::http_match only_edge = uri(prefix("/"));
    only_edge.gateways = {"istio-system/edge"};
    model::http_match only_mesh = uri(prefix("/"));
    only_mesh.gateways = {"mesh"};
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge", "istio-system/internal", "mesh"},
           {http({only_edge}, {to(reviews)}), http({only_mesh}, {to(ratings)}),
            http({}, {to(ratings, "rest")})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .gateway = "istio-system/edge"};
    EXPECT_EQ(decide(s, r).route_index, 0U);
    r.gateway = "mesh";
    EXPECT_EQ(decide(s, r).route_index, 1U);
    r.gateway = "istio-system/internal";
    EXPECT_EQ(decide(s, r).route_index, 2U);
}

TEST(RouteMatch, SourceLabelsAreDecidedAgainstTheApplianceLabels)
{
    model::mesh m = base_mesh();
    model::http_match from_app = uri(prefix("/"));
    from_app.source_labels = {{"app", "frontend"}};
    model::http_match from_ns = uri(prefix("/"));
    from_ns.source_namespace = "istio-system";
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"},
           {http({from_app}, {to(reviews)}), http({from_ns}, {to(ratings)})}));
    req r{.authority = "api.test", .gateway = "istio-system/edge"};
    {
        const auto s = must_compile(m); // the appliance has no labels
        EXPECT_EQ(decide(s, r).route_index, 1U);
    }
    {
        compile::options o;
        o.proxy_labels = {{"app", "frontend"}, {"extra", "x"}};
        const auto s = must_compile(m, appliance(), o);
        EXPECT_EQ(decide(s, r).route_index, 0U);
    }
    {
        compile::options o;
        o.proxy_namespace = "edge";
        const auto s = must_compile(m, appliance(), o);
        EXPECT_EQ(decide(s, r).what, outcome::no_route); // every block was dropped
    }
}

TEST(RouteMatch, DelegationOneLevelMergesMatchesAndInheritsRootFields)
{
    model::mesh m = base_mesh();
    model::http_route root = http({uri(prefix("/reviews"))}, {}, "root");
    root.delegate = model::delegate_ref{"reviews-delegate", "prod"};
    root.timeout = std::chrono::seconds(3);
    model::http_route root2 = http({}, {to(ratings)}, "fallback");
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"}, {root, root2}));
    model::http_route d1 = http({uri(prefix("/reviews/v2"))}, {to(reviews, "v2")}, "v2");
    model::http_route d2 = http({uri(prefix("/other"))}, {to(reviews, "bad")}, "conflict");
    model::http_route d3 = http({}, {to(reviews, "v1")}, "rest");
    d3.timeout = std::chrono::seconds(1);
    model::http_route nested = http({}, {});
    nested.delegate = model::delegate_ref{"x", "prod"};
    m.virtual_services.push_back(vs("prod", "reviews-delegate", {}, {}, {d1, d2, nested, d3}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/reviews/v2/1", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    ASSERT_EQ(d.what, outcome::forward);
    EXPECT_EQ(d.virtual_service, "prod/api");
    EXPECT_EQ(d.route_index, 0U);
    EXPECT_EQ(d.entry->delegate_http_index, 0U);
    EXPECT_EQ(d.entry->name, "root-v2");
    EXPECT_EQ(d.action->destinations[0].subset, "v2");
    ASSERT_TRUE(d.action->timeout.has_value());
    EXPECT_EQ(*d.action->timeout, std::chrono::seconds(3)); // inherited from the root
    r.path = "/reviews/1"; // the delegate's catch-all, narrowed to the root's prefix
    d = decide(s, r);
    EXPECT_EQ(d.action->destinations[0].subset, "v1");
    EXPECT_EQ(*d.action->timeout, std::chrono::seconds(1)); // its own wins
    r.path = "/other"; // the conflicting delegate route was dropped, not widened
    d = decide(s, r);
    EXPECT_EQ(d.route_index, 1U);
    EXPECT_EQ(host_of(d), ratings);
    bool noted_conflict = false;
    bool noted_nested = false;
    for (const std::string& n : s.notes) {
        noted_conflict = noted_conflict || n.find("conflicts") != std::string::npos;
        noted_nested = noted_nested || n.find("one level") != std::string::npos;
    }
    EXPECT_TRUE(noted_conflict);
    EXPECT_TRUE(noted_nested);
}

TEST(RouteMatch, DefaultsNoTimeoutDefaultRetriesAndWeights)
{
    model::mesh m = base_mesh();
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"},
           {http({uri(prefix("/split"))},
                 {to(reviews, "", std::nullopt, 25), to(ratings, "", 9080, 75),
                  to(reviews, "v9", std::nullopt, 0)}),
            http({}, {to(reviews, "", std::nullopt, 30)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/split", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    ASSERT_EQ(d.what, outcome::forward);
    EXPECT_FALSE(d.action->timeout.has_value());
    const auto& rp = d.action->retries;
    EXPECT_TRUE(rp.is_default);
    EXPECT_EQ(rp.attempts, 2U);
    EXPECT_EQ(rp.retry_on,
              "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes");
    EXPECT_TRUE(rp.retriable_status_codes.empty());
    EXPECT_EQ(rp.host_selection_retry_max_attempts, 5U);
    EXPECT_TRUE(rp.retry_ignore_previous_hosts);
    EXPECT_FALSE(rp.per_try_timeout.has_value());
    EXPECT_DOUBLE_EQ(d.action->share(0), 0.25);
    EXPECT_DOUBLE_EQ(d.action->share(1), 0.75);
    EXPECT_DOUBLE_EQ(d.action->share(2), 0.0); // weight 0 gets none
    r.path = "/";
    d = decide(s, r);
    EXPECT_DOUBLE_EQ(d.action->share(0), 1.0); // a lone destination gets all
}

TEST(RouteMatch, ExplicitRetriesTranslateIntegersToRetriableStatusCodes)
{
    model::mesh m = base_mesh();
    model::http_route r1 = http({}, {to(reviews)});
    model::http_retry rt;
    rt.attempts = 3;
    rt.retry_on = "gateway-error, 503,connect-failure";
    rt.per_try_timeout = std::chrono::milliseconds(500);
    r1.retries = rt;
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"}, {r1}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .gateway = "istio-system/edge"};
    const auto d = decide(s, r);
    const auto& rp = d.action->retries;
    EXPECT_FALSE(rp.is_default);
    EXPECT_EQ(rp.attempts, 3U);
    EXPECT_EQ(rp.retry_on, "gateway-error,connect-failure,retriable-status-codes");
    EXPECT_EQ(rp.retriable_status_codes, std::vector<uint32_t>{503});
    EXPECT_EQ(*rp.per_try_timeout, std::chrono::milliseconds(500));
    EXPECT_EQ(rp.backoff, std::chrono::milliseconds(25));
}

TEST(RouteMatch, RedirectDefaultsTo301AndComputesTheLocation)
{
    model::mesh m = base_mesh();
    auto redirect = [](model::http_redirect rd, std::string p) {
        model::http_route r = http({uri(prefix(std::move(p)))}, {});
        r.redirect = std::move(rd);
        return r;
    };
    model::http_redirect a;
    a.uri = "/new";
    model::http_redirect b;
    b.scheme = "https";
    b.authority = "secure.test";
    b.redirect_code = 308;
    model::http_redirect c;
    c.prefix_rewrite = "/v2/";
    c.derive_port = model::http_redirect::derive::from_request_port;
    model::http_redirect dflt;
    dflt.scheme = "https";
    dflt.derive_port = model::http_redirect::derive::from_protocol_default;
    model::http_redirect port;
    port.port = 8443;
    port.scheme = "https";
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"},
           {redirect(a, "/old"), redirect(b, "/sec"), redirect(c, "/v1/"), redirect(dflt, "/dflt"),
            redirect(port, "/port"), redirect(model::http_redirect{}, "/same")}));
    const auto s = must_compile(m);
    req r{.authority = "api.test:80", .path = "/old/x?q=1", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    EXPECT_EQ(d.what, outcome::redirect);
    EXPECT_EQ(d.status, 301U);
    auto v = r.view();
    EXPECT_EQ(redirect_location(d, v), "http://api.test:80/new?q=1");
    r.path = "/sec/a";
    d = decide(s, r);
    EXPECT_EQ(d.status, 308U);
    v = r.view();
    EXPECT_EQ(redirect_location(d, v), "https://secure.test/sec/a");
    r.path = "/v1/items?page=2";
    d = decide(s, r);
    v = r.view();
    EXPECT_EQ(redirect_location(d, v), "http://api.test:80/v2/items?page=2");
    r.path = "/dflt";
    d = decide(s, r);
    v = r.view();
    EXPECT_EQ(redirect_location(d, v), "https://api.test/dflt");
    r.path = "/port";
    d = decide(s, r);
    v = r.view();
    EXPECT_EQ(redirect_location(d, v), "https://api.test:8443/port");
    r.authority = "api.test";
    r.path = "/same";
    d = decide(s, r);
    v = r.view();
    EXPECT_EQ(redirect_location(d, v), "http://api.test/same");
}

TEST(RouteMatch, HttpsRedirectServerAnswers301First)
{
    model::mesh m = base_mesh();
    m.gateways[0].servers[0].tls = model::server_tls{};
    m.gateways[0].servers[0].tls->https_redirect = true;
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"}, {http({}, {to(reviews)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/a?b", .gateway = "istio-system/edge"};
    const auto d = decide(s, r);
    EXPECT_EQ(d.what, outcome::https_redirect);
    EXPECT_EQ(d.status, 301U);
    const auto v = r.view();
    EXPECT_EQ(redirect_location(d, v), "https://api.test/a?b");
}

TEST(RouteMatch, RewritePrefixExactAuthorityAndRegex)
{
    model::mesh m = base_mesh();
    auto rw = [](model::http_match mt, std::string uri_, std::string auth,
                 std::optional<model::regex_rewrite> rr = std::nullopt) {
        model::http_route r = http({std::move(mt)}, {to(reviews)});
        r.rewrite = model::http_rewrite{std::move(uri_), std::move(auth), std::move(rr)};
        return r;
    };
    model::http_match hdr;
    hdr.headers["x-rw"] = exact("1");
    m.virtual_services.push_back(
        vs("prod", "api", {"api.test"}, {"istio-system/edge"},
           {rw(uri(prefix("/api/v1")), "/v2", "internal.test"),
            rw(uri(exact("/exact")), "/replaced", ""),
            rw(uri(regex("/re/.*")), "", "", model::regex_rewrite{"^/re/(.*)$", "/\\1/x"}),
            rw(hdr, "/hdr/", "")}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/api/v1/items?x=1", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    auto v = r.view();
    auto out = apply_rewrite(d, v);
    EXPECT_EQ(out.path, "/v2/items?x=1");
    EXPECT_EQ(out.authority, "internal.test");
    r.path = "/exact?q";
    d = decide(s, r);
    v = r.view();
    out = apply_rewrite(d, v);
    EXPECT_EQ(out.path, "/replaced?q");
    EXPECT_EQ(out.authority, "api.test");
    r.path = "/re/abc?z";
    d = decide(s, r);
    v = r.view();
    EXPECT_EQ(apply_rewrite(d, v).path, "/abc/x?z");
    r.path = "/foo";
    r.headers = {{"x-rw", "1"}};
    d = decide(s, r);
    v = r.view();
    EXPECT_EQ(apply_rewrite(d, v).path, "/hdr/foo"); // no uri match: implicit prefix "/"
}

TEST(RouteMatch, DirectResponseAndFaults)
{
    model::mesh m = base_mesh();
    model::http_route dr = http({uri(exact("/health"))}, {});
    dr.direct_response = model::http_direct_response{200, std::string("ok")};
    model::http_route abort_all = http({uri(prefix("/down"))}, {to(reviews)});
    abort_all.fault = model::http_fault{std::nullopt, model::fault_abort{503, std::nullopt, 100.0}};
    model::http_route abort_half = http({uri(prefix("/flaky"))}, {to(reviews)});
    abort_half.fault = model::http_fault{std::nullopt, model::fault_abort{500, std::nullopt, 50.0}};
    abort_half.timeout = std::chrono::seconds(2);
    model::http_route abort_unset = http({uri(prefix("/unset"))}, {to(reviews)});
    abort_unset.fault =
        model::http_fault{std::nullopt, model::fault_abort{500, std::nullopt, std::nullopt}};
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {dr, abort_all, abort_half, abort_unset}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/health", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    EXPECT_EQ(d.what, outcome::direct_response);
    EXPECT_EQ(d.status, 200U);
    EXPECT_EQ(*d.action->direct_response.body, "ok");
    r.path = "/down";
    d = decide(s, r);
    EXPECT_EQ(d.what, outcome::fault_abort);
    EXPECT_EQ(d.status, 503U);
    r.path = "/flaky";
    d = decide(s, r);
    EXPECT_EQ(d.what, outcome::forward);       // 50% is the runtime's to decide
    EXPECT_EQ(d.action->retries.attempts, 0U); // a fault disables retries and the timeout
    EXPECT_FALSE(d.action->timeout.has_value());
    r.path = "/unset";
    d = decide(s, r);
    EXPECT_EQ(d.what, outcome::forward);
    EXPECT_DOUBLE_EQ(d.action->fault->abort->percentage, 0.0); // unset: nothing is aborted
}

TEST(RouteMatch, MirrorsDefaultToOneHundredPercent)
{
    model::mesh m = base_mesh();
    model::http_route r1 = http({}, {to(reviews)});
    r1.mirror = model::destination{ratings, "", std::nullopt};
    r1.mirrors.push_back({model::destination{reviews, "v2", 9080}, 10.0});
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"}, {r1}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .gateway = "istio-system/edge"};
    const auto d = decide(s, r);
    ASSERT_EQ(d.action->mirrors.size(), 2U);
    EXPECT_DOUBLE_EQ(d.action->mirrors[0].percentage, 100.0);
    EXPECT_DOUBLE_EQ(d.action->mirrors[1].percentage, 10.0);
}

TEST(RouteMatch, SeveralVirtualServicesOnOneGatewayHostMergeWithCatchAllLast)
{
    model::mesh m = base_mesh();
    m.virtual_services.push_back(
        vs("prod", "a", {"api.test"}, {"istio-system/edge"}, {http({}, {to(reviews)}, "a-all")}));
    m.virtual_services.push_back(vs("prod", "b", {"api.test"}, {"istio-system/edge"},
                                    {http({uri(prefix("/b"))}, {to(ratings)}, "b-only")}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/b/1", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    EXPECT_EQ(d.virtual_service, "prod/b");
    r.path = "/c";
    d = decide(s, r);
    EXPECT_EQ(d.virtual_service, "prod/a");
}

TEST(RouteMatch, MissingSubsetHostOrPortIsANoClusterMarker)
{
    model::mesh m = base_mesh();
    m.destination_rules.push_back(rule("prod", "reviews", reviews, {subset("v1", {{"v", "1"}})}));
    m.virtual_services.push_back(vs("prod", "api", {"api.test"}, {"istio-system/edge"},
                                    {http({uri(prefix("/v1"))}, {to(reviews, "v1")}),
                                     http({uri(prefix("/v3"))}, {to(reviews, "v3")}),
                                     http({uri(prefix("/nohost"))}, {to("nohost.example")}),
                                     http({uri(prefix("/grpc"))}, {to(ratings)})}));
    const auto s = must_compile(m);
    req r{.authority = "api.test", .path = "/v1", .gateway = "istio-system/edge"};
    auto d = decide(s, r);
    EXPECT_EQ(cluster_of(s, d, 80), "outbound|9080|v1|reviews.prod.svc.cluster.local");
    EXPECT_FALSE(s.find_cluster(cluster_of(s, d, 80))->missing);
    r.path = "/v3";
    d = decide(s, r);
    ASSERT_EQ(d.what, outcome::forward);
    const auto* c = s.find_cluster(cluster_of(s, d, 80));
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->missing); // the runtime answers 503 NC
    EXPECT_NE(c->missing_reason.find("subset v3"), std::string::npos);
    r.path = "/nohost";
    d = decide(s, r);
    c = s.find_cluster(cluster_of(s, d, 80));
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->missing);
    // ratings has two ports and the route names none: the gateway listener port (80) is
    // not one of them.
    r.path = "/grpc";
    d = decide(s, r);
    EXPECT_EQ(cluster_of(s, d, 80), "outbound|80||ratings.prod.svc.cluster.local");
    EXPECT_TRUE(s.find_cluster(cluster_of(s, d, 80))->missing);
}

TEST(RouteMatch, MeshTableResolvesAnUnwrittenPortFromTheRequestPort)
{
    model::mesh m = base_mesh();
    m.virtual_services.push_back(
        vs("prod", "ratings", {ratings}, {"mesh"}, {http({}, {to(ratings)})}));
    const auto s = must_compile(m);
    req r{.authority = "ratings.prod.svc.cluster.local:9090", .port = 9090};
    auto d = decide(s, r);
    ASSERT_EQ(d.what, outcome::forward);
    EXPECT_EQ(cluster_of(s, d, 9090), "outbound|9090||ratings.prod.svc.cluster.local");
    EXPECT_EQ(cluster_of(s, d, 9080), "outbound|9080||ratings.prod.svc.cluster.local");
    EXPECT_TRUE(s.find_cluster(cluster_of(s, d, 1234))->missing);
}

TEST(RouteMatch, TcpAndTlsRoutes)
{
    model::mesh m = base_mesh();
    m.gateways.push_back(
        gateway("istio-system", "l4",
                {server(5432, {"*/db.test"}, "TCP"), server(443, {"*/*.secure.test"}, "TLS")}));
    m.gateways.back().servers[1].tls = model::server_tls{};
    model::virtual_service v =
        vs("prod", "db", {"db.test", "*.secure.test"}, {"istio-system/l4"}, {});
    model::tcp_route tr;
    model::l4_match lm;
    lm.destination_subnets = {"198.18.0.0/24"};
    tr.match = {lm};
    tr.route = {to(reviews, "", 9080)};
    v.tcp.push_back(tr);
    model::tls_route tl;
    model::tls_match tm;
    tm.sni_hosts = {"a.secure.test"};
    tl.match = {tm};
    tl.route = {to(ratings, "", 9090)};
    v.tls.push_back(tl);
    m.virtual_services.push_back(v);
    m.endpoint_slices.push_back(slice("prod", "reviews-1", "reviews",
                                      {{"10.0.0.1", "z1", "n"}, {"10.0.0.2", "z2", "n"}},
                                      {{"http", 9080}}));
    const auto s = must_compile(m);
    auto in = *net::ip_addr::parse("198.18.0.7");
    auto out = *net::ip_addr::parse("198.19.0.7");
    auto d = snapshot::match_tcp(s, "istio-system/l4", 5432, in);
    ASSERT_NE(d.route, nullptr);
    EXPECT_EQ(d.virtual_service, "prod/db");
    EXPECT_EQ(snapshot::match_tcp(s, "istio-system/l4", 5432, out).route, nullptr);
    auto t = snapshot::match_tls(s, "istio-system/l4", 443, "a.secure.test", out);
    ASSERT_NE(t.route, nullptr);
    EXPECT_EQ(t.route->destinations[0].host, ratings);
    EXPECT_EQ(snapshot::match_tls(s, "istio-system/l4", 443, "b.secure.test", out).route, nullptr);
    // The TCP destination's cluster gets Maglev tables (the L4 fast path hashes into it).
    const auto* c = s.find_cluster("outbound|9080||reviews.prod.svc.cluster.local");
    ASSERT_NE(c, nullptr);
    ASSERT_FALSE(c->plan.levels.empty());
    EXPECT_EQ(c->maglev.size(), c->plan.levels.size());
    EXPECT_EQ(c->maglev[0].all.size(), 65537U);
}

} // namespace
} // namespace sluice::testing
