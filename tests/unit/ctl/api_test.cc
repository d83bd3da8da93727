#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include <httplib.h>

#include "sluice/ctl/api.hh"
#include "sluice/ctl/metrics.hh"

namespace sluice::ctl {
namespace {

const std::string k_token = "0123456789abcdef0123456789abcdef";

const char* k_gw = R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
)";

class Api : public ::testing::Test {
protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/sluice-api.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
        publisher p;
        p.prepare = [](const model::mesh&, uint64_t) -> result<std::shared_ptr<void>> {
            return std::shared_ptr<void>();
        };
        p.activate = [](std::shared_ptr<void>) {};
        _store = std::make_unique<config_store>(_dir, model::options{}, p);
        api_hooks h;
        h.ready = [this] { return _ready; };
        h.metrics = [] {
            exposition e;
            e.family("sluice_snapshot_generation", "gauge", "Generation");
            e.sample("sluice_snapshot_generation", {}, 1);
            return e.text();
        };
        _api = std::make_unique<api>(*_store, h, k_token);
    }
    void TearDown() override { std::filesystem::remove_all(_dir); }

    http_response call(std::string method, std::string path, std::string body = {},
                       std::map<std::string, std::string> headers = {}, bool auth = true)
    {
        http_request r;
        r.method = std::move(method);
        const auto q = path.find('?');
        if (q != std::string::npos) {
            const std::string query = path.substr(q + 1);
            const auto eq = query.find('=');
            r.query[query.substr(0, eq)] = query.substr(eq + 1);
            path = path.substr(0, q);
        }
        r.path = path;
        r.body = std::move(body);
        r.headers = std::move(headers);
        if (auth) {
            r.headers["authorization"] = "Bearer " + k_token;
        }
        return _api->handle(r);
    }

    std::string _dir;
    bool _ready = true;
    std::unique_ptr<config_store> _store;
    std::unique_ptr<api> _api;
};

TEST_F(Api, AuthEverywhereButHealthz)
{
    EXPECT_EQ(call("GET", "/healthz", "", {}, false).status, 200);
    EXPECT_EQ(call("GET", "/v1/status", "", {}, false).status, 401);
    EXPECT_EQ(call("GET", "/metrics", "", {}, false).status, 401);
    EXPECT_EQ(call("GET", "/v1/status", "", {{"authorization", "Bearer wrong"}}, false).status,
              401);
    EXPECT_EQ(call("GET", "/v1/status", "", {{"authorization", "Basic " + k_token}}, false).status,
              401);
    EXPECT_EQ(call("GET", "/v1/status").status, 200);
}

TEST_F(Api, PathsMethodsAndLimits)
{
    EXPECT_EQ(call("GET", "/v2/nothing").status, 404);
    EXPECT_EQ(call("GET", "/v1/apply").status, 405);
    auto r = call("PUT", "/v1/status");
    EXPECT_EQ(r.status, 405);
    ASSERT_FALSE(r.headers.empty());
    EXPECT_EQ(r.headers[0].first, "Allow");
    EXPECT_EQ(call("POST", "/v1/apply", std::string(max_body_bytes + 1, 'x')).status, 413);
    EXPECT_EQ(call("POST", "/v1/apply", "a: b", {{"content-type", "image/png"}}).status, 415);
    EXPECT_EQ(call("GET", "/v1/objects/frobs").status, 404);
    EXPECT_EQ(call("GET", "/v1/endpoints").status, 400);
}

TEST_F(Api, ApplyGetDeleteRoundTrip)
{
    auto a = call("POST", "/v1/apply", k_gw, {{"content-type", "application/yaml"}});
    ASSERT_EQ(a.status, 200) << a.body;
    auto j = nlohmann::json::parse(a.body);
    EXPECT_EQ(j["generation"], 1);
    EXPECT_EQ(j["applied"][0], "Gateway istio-system/edge");
    auto g = call("GET", "/v1/objects/gw/istio-system/edge");
    ASSERT_EQ(g.status, 200);
    EXPECT_EQ(nlohmann::json::parse(g.body)["items"][0]["spec"]["servers"][0]["port"]["number"],
              80);
    EXPECT_EQ(call("GET", "/v1/objects/gateways/istio-system/other").status, 404);
    EXPECT_EQ(nlohmann::json::parse(call("GET", "/v1/objects").body)["items"].size(), 1u);
    auto stale = call("POST", "/v1/apply", k_gw, {{"if-match", "0"}});
    EXPECT_EQ(stale.status, 409);
    EXPECT_EQ(call("POST", "/v1/apply", k_gw, {{"if-match", "\"1\""}}).status, 200);
    EXPECT_EQ(call("POST", "/v1/apply", k_gw, {{"if-match", "one"}}).status, 400);
    auto dry = call("POST", "/v1/apply?dryRun=true", k_gw);
    EXPECT_EQ(dry.status, 200);
    EXPECT_EQ(nlohmann::json::parse(dry.body)["generation"], 2);
    auto d = call("DELETE", "/v1/objects/gateway/istio-system/edge");
    ASSERT_EQ(d.status, 200) << d.body;
    EXPECT_EQ(nlohmann::json::parse(d.body)["generation"], 3);
    EXPECT_EQ(call("DELETE", "/v1/objects/gateway/istio-system/edge").status, 404);
    auto st = nlohmann::json::parse(call("GET", "/v1/status").body);
    EXPECT_EQ(st["generation"], 3);
    EXPECT_EQ(st["objects"], 0);
}

TEST_F(Api, InvalidApplyIs400WithFieldPaths)
{
    const std::string bad = R"({"apiVersion":"networking.istio.io/v1","kind":"VirtualService",
      "metadata":{"name":"api","namespace":"prod"},
      "spec":{"hosts":["api.example.com"],"http":[{"route":[{"destination":{"host":"a"},"weight":101}]}]}})";
    auto r = call("POST", "/v1/apply", bad, {{"content-type", "application/json"}});
    ASSERT_EQ(r.status, 400);
    auto j = nlohmann::json::parse(r.body);
    ASSERT_FALSE(j["errors"].empty());
    EXPECT_EQ(j["errors"][0]["object"], "VirtualService prod/api");
    EXPECT_EQ(j["errors"][0]["field"], "spec.http[0].route[0].weight");
    EXPECT_EQ(j["errors"][0]["message"], "must be between 0 and 100");
    EXPECT_EQ(_store->generation(), 0u);
    EXPECT_EQ(call("POST", "/v1/apply", "{not json").status, 400);
}

TEST_F(Api, ReadyzAndMetrics)
{
    EXPECT_EQ(call("GET", "/readyz").status, 200);
    _ready = false;
    EXPECT_EQ(call("GET", "/readyz").status, 503);
    auto m = call("GET", "/metrics");
    EXPECT_EQ(m.status, 200);
    EXPECT_EQ(m.content_type, "text/plain; version=0.0.4");
    auto p = parse_exposition(m.body);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->find("sluice_snapshot_generation"), 1.0);
}

TEST_F(Api, OverARealSocket)
{
    rest_server srv;
    ASSERT_TRUE(srv.start(*_api, *net::ip_addr::parse("127.0.0.1"), 0).ok());
    ASSERT_NE(srv.port(), 0);
    httplib::Client c("127.0.0.1", srv.port());
    c.set_read_timeout(5, 0);
    auto h = c.Get("/healthz");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    auto unauth = c.Get("/v1/status");
    ASSERT_TRUE(unauth);
    EXPECT_EQ(unauth->status, 401);
    httplib::Headers auth = {{"Authorization", "Bearer " + k_token}};
    auto a = c.Post("/v1/apply", auth, k_gw, "application/yaml");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200) << a->body;
    auto big =
        c.Post("/v1/apply", auth, std::string(max_body_bytes + 100, ' '), "application/yaml");
    ASSERT_TRUE(big);
    EXPECT_EQ(big->status, 413);
    auto g = c.Get("/v1/objects/gw", auth);
    ASSERT_TRUE(g);
    EXPECT_EQ(g->status, 200);
    EXPECT_EQ(nlohmann::json::parse(g->body)["items"].size(), 1u);
    srv.stop();
}

} // namespace
} // namespace sluice::ctl
