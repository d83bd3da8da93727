#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "sluice/ctl/persist.hh"
#include "sluice/ctl/store.hh"

namespace sluice::ctl {
namespace {

const char* k_vs = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: prod
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: prod
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: prod}
)";

const char* k_bad_weight = R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: prod}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: 150
)";

class Store : public ::testing::Test {
protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/sluice-store.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(_dir); }

    publisher counting()
    {
        publisher p;
        p.prepare = [this](const model::mesh& m, uint64_t gen) -> result<std::shared_ptr<void>> {
            if (fail_compile) {
                return err("no room for this many clusters");
            }
            last_prepared = gen;
            last_vs_count = m.virtual_services.size();
            return std::shared_ptr<void>(std::make_shared<uint64_t>(gen));
        };
        p.activate = [this](std::shared_ptr<void> s) {
            activated.push_back(*std::static_pointer_cast<uint64_t>(s));
        };
        return p;
    }

    std::string _dir;
    bool fail_compile = false;
    uint64_t last_prepared = 0;
    size_t last_vs_count = 0;
    std::vector<uint64_t> activated;
};

TEST_F(Store, ApplyCreatesAGenerationAndPersistsIt)
{
    config_store s(_dir, {}, counting());
    auto o = s.apply(k_vs, false, std::nullopt);
    ASSERT_EQ(o.status, 200) << o.to_json().dump();
    EXPECT_EQ(o.generation, 1u);
    EXPECT_EQ(o.applied, (std::vector<std::string>{"VirtualService prod/reviews",
                                                   "DestinationRule prod/reviews"}));
    ASSERT_EQ(o.skipped.size(), 1u);
    EXPECT_NE(o.skipped[0].find("Deployment prod/reviews-v1"), std::string::npos);
    EXPECT_EQ(activated, std::vector<uint64_t>{1});
    EXPECT_EQ(s.size(), 2u);
    auto state = read_state(_dir, "mesh.json");
    ASSERT_TRUE(state.ok() && state->has_value());
    auto j = nlohmann::json::parse(**state);
    EXPECT_EQ(j["generation"], 1);
    EXPECT_EQ(j["objects"].size(), 2u);
    const auto listed = s.list(std::string("VirtualService"), std::nullopt, std::nullopt);
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_EQ(listed[0]["spec"]["hosts"][0], "reviews") << "stored as applied, not resolved";
}

TEST_F(Store, InvalidApplyChangesNothing)
{
    config_store s(_dir, {}, counting());
    ASSERT_EQ(s.apply(k_vs, false, std::nullopt).status, 200);
    auto o = s.apply(k_bad_weight, false, std::nullopt);
    EXPECT_EQ(o.status, 400);
    ASSERT_FALSE(o.errors.empty());
    const auto body = o.to_json().dump();
    EXPECT_NE(body.find("spec.http[0].route[0].weight"), std::string::npos) << body;
    EXPECT_NE(body.find("must be between 0 and 100"), std::string::npos) << body;
    EXPECT_EQ(s.generation(), 1u);
    EXPECT_EQ(activated.size(), 1u);
    auto j = nlohmann::json::parse(**read_state(_dir, "mesh.json"));
    EXPECT_EQ(j["generation"], 1);
    EXPECT_EQ(s.list(std::string("VirtualService"), std::nullopt,
                     std::nullopt)[0]["spec"]["http"][0]["route"][0]["destination"]["subset"],
              "v1");
}

TEST_F(Store, SyntaxErrorsAndGarbageAre400)
{
    config_store s(_dir, {}, counting());
    auto a = s.apply("kind: [unclosed\n", false, std::nullopt);
    EXPECT_EQ(a.status, 400);
    EXPECT_NE(a.to_json().dump().find("line"), std::string::npos);
    EXPECT_EQ(s.apply("{\"kind\": ", false, std::nullopt).status, 400);
    EXPECT_EQ(s.generation(), 0u);
}

TEST_F(Store, CompileFailureRefusesTheCandidate)
{
    config_store s(_dir, {}, counting());
    fail_compile = true;
    auto o = s.apply(k_vs, false, std::nullopt);
    EXPECT_EQ(o.status, 400);
    EXPECT_NE(o.to_json().dump().find("no room"), std::string::npos);
    EXPECT_EQ(s.generation(), 0u);
    EXPECT_TRUE(activated.empty());
    EXPECT_FALSE(read_state(_dir, "mesh.json")->has_value());
}

TEST_F(Store, IfMatchAndDryRun)
{
    config_store s(_dir, {}, counting());
    ASSERT_EQ(s.apply(k_vs, false, 0).status, 200);
    auto stale = s.apply(k_vs, false, 0);
    EXPECT_EQ(stale.status, 409);
    EXPECT_EQ(stale.to_json()["generation"], 1);
    EXPECT_EQ(s.apply(k_vs, false, 1).status, 200);
    EXPECT_EQ(s.generation(), 2u);
    auto dry = s.apply(k_vs, true, std::nullopt);
    EXPECT_EQ(dry.status, 200);
    EXPECT_EQ(dry.generation, 2u) << "a dry run publishes nothing";
    EXPECT_EQ(last_prepared, 3u) << "but it compiled the candidate";
    EXPECT_EQ(activated, (std::vector<uint64_t>{1, 2}));
}

TEST_F(Store, JsonBodiesAndLists)
{
    config_store s(_dir, {}, counting());
    const char* json = R"({"apiVersion":"v1","kind":"List","items":[
      {"apiVersion":"networking.istio.io/v1","kind":"Gateway",
       "metadata":{"name":"edge","namespace":"istio-system"},
       "spec":{"servers":[{"port":{"number":80,"name":"http","protocol":"HTTP"},"hosts":["*"]}]}}]})";
    auto o = s.apply(json, false, std::nullopt);
    ASSERT_EQ(o.status, 200) << o.to_json().dump();
    EXPECT_EQ(o.applied, std::vector<std::string>{"Gateway istio-system/edge"});
    EXPECT_EQ(s.list(std::nullopt, std::string("istio-system"), std::string("edge")).size(), 1u);
}

TEST_F(Store, DeleteByKeyAndByBody)
{
    config_store s(_dir, {}, counting());
    ASSERT_EQ(s.apply(k_vs, false, std::nullopt).status, 200);
    auto missing = s.remove(object_key{"VirtualService", "prod", "nope"}, false, std::nullopt);
    EXPECT_EQ(missing.status, 404);
    auto one = s.remove(object_key{"VirtualService", "prod", "reviews"}, false, std::nullopt);
    ASSERT_EQ(one.status, 200);
    EXPECT_EQ(one.generation, 2u);
    EXPECT_EQ(s.size(), 1u);
    auto body = s.remove("kind: DestinationRule\nmetadata: {name: reviews, namespace: prod}\n",
                         false, std::nullopt);
    ASSERT_EQ(body.status, 200);
    EXPECT_EQ(body.applied, std::vector<std::string>{"DestinationRule prod/reviews"});
    EXPECT_EQ(s.size(), 0u);
    EXPECT_EQ(s.generation(), 3u);
}

TEST_F(Store, RestartLoadsTheLastGeneration)
{
    {
        config_store s(_dir, {}, counting());
        ASSERT_EQ(s.apply(k_vs, false, std::nullopt).status, 200);
        ASSERT_EQ(
            s.remove(object_key{"DestinationRule", "prod", "reviews"}, false, std::nullopt).status,
            200);
    }
    activated.clear();
    config_store again(_dir, {}, counting());
    ASSERT_TRUE(again.load({}).ok());
    EXPECT_EQ(again.generation(), 2u);
    EXPECT_EQ(again.size(), 1u);
    EXPECT_EQ(activated, std::vector<uint64_t>{2});
    EXPECT_EQ(last_vs_count, 1u);
}

TEST_F(Store, FirstStartLoadsMeshFilesAsGenerationOne)
{
    const std::string f = _dir + "/mesh.yaml";
    std::ofstream(f) << k_vs;
    config_store s(_dir + "/state", {}, counting());
    ASSERT_TRUE(s.load({f}).ok());
    EXPECT_EQ(s.generation(), 1u);
    EXPECT_EQ(s.size(), 2u);
    EXPECT_TRUE(read_state(_dir + "/state", "mesh.json")->has_value());
    // An invalid mesh file refuses to start.
    std::ofstream(f) << k_bad_weight;
    config_store bad(_dir + "/state2", {}, counting());
    auto r = bad.load({f});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().message.find("must be between 0 and 100"), std::string::npos);
}

TEST(Kinds, CanonicalNames)
{
    EXPECT_EQ(canonical_kind("vs"), "VirtualService");
    EXPECT_EQ(canonical_kind("VirtualServices"), "VirtualService");
    EXPECT_EQ(canonical_kind("dr"), "DestinationRule");
    EXPECT_EQ(canonical_kind("gw"), "Gateway");
    EXPECT_EQ(canonical_kind("se"), "ServiceEntry");
    EXPECT_EQ(canonical_kind("we"), "WorkloadEntry");
    EXPECT_EQ(canonical_kind("svc"), "Service");
    EXPECT_EQ(canonical_kind("endpointslices"), "EndpointSlice");
    EXPECT_FALSE(canonical_kind("deployments"));
}

} // namespace
} // namespace sluice::ctl
