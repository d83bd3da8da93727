// Route matching (lib/snapshot route_match.hh) over 1, 100 and 10,000 routes with exact,
// prefix and regex mixes (BENCHMARKS.md). Each benchmark asks for the *last* route of the
// table (the worst case of first-match order) and reports allocs_per_op, which must be 0 on
// the Hyperscan path (STYLE H4). Arg 0: routes; arg 1: mix (0 prefix, 1 exact, 2 regex,
// 3 a third of each).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "alloc_counter.hh"
#include "sluice/compile/compile.hh"
#include "sluice/snapshot/route_match.hh"

namespace {

using namespace sluice;

model::string_match matcher(int mix, int i)
{
    const int kind = mix == 3 ? i % 3 : mix;
    const std::string base = "/svc" + std::to_string(i);
    switch (kind) {
    case 0:
        return {model::string_match::kind::prefix, base + "/"};
    case 1:
        return {model::string_match::kind::exact, base + "/item"};
    default:
        return {model::string_match::kind::regex, base + "/[a-z]+(/[0-9]+)?"};
    }
}

snapshot::snapshot build(int routes, int mix)
{
    model::mesh m;
    model::k8s_service svc;
    svc.meta.kind = "Service";
    svc.meta.ns = "prod";
    svc.meta.name = "backend";
    svc.ports.push_back({"http", "TCP", "", 8080, "", 0});
    m.services.push_back(svc);
    model::gateway g;
    g.meta.kind = "Gateway";
    g.meta.ns = "istio-system";
    g.meta.name = "edge";
    model::server s;
    s.port.number = 80;
    s.port.protocol = "HTTP";
    s.hosts = {"*/*"};
    g.servers.push_back(s);
    m.gateways.push_back(g);
    model::virtual_service v;
    v.meta.kind = "VirtualService";
    v.meta.ns = "prod";
    v.meta.name = "api";
    v.hosts = {"api.example.com"};
    v.gateways = {"istio-system/edge"};
    for (int i = 0; i < routes; ++i) {
        model::http_route r;
        model::http_match mt;
        mt.uri = matcher(mix, i);
        r.match.push_back(mt);
        model::route_destination d;
        d.dest.host = "backend.prod.svc.cluster.local";
        r.route.push_back(d);
        v.http.push_back(r);
    }
    m.virtual_services.push_back(v);
    auto r = compile::compile(m, compile::node_locality{});
    if (!r.ok()) {
        std::abort();
    }
    return std::move(r).value();
}

void BM_route_match(benchmark::State& state)
{
    const int routes = static_cast<int>(state.range(0));
    const int mix = static_cast<int>(state.range(1));
    const snapshot::snapshot snap = build(routes, mix);
    const int last = routes - 1;
    const int kind = mix == 3 ? last % 3 : mix;
    const std::string path = "/svc" + std::to_string(last) + (kind == 2 ? "/abc/42" : "/item");
    const snapshot::header hdrs[] = {{"user-agent", "bench"}, {"accept", "*/*"}};
    snapshot::request req;
    req.authority = "api.example.com";
    req.path = path;
    req.gateway = "istio-system/edge";
    req.headers = hdrs;
    snapshot::regex_scratch scratch;
    if (!scratch.prepare(snap.http.front().regexes).ok()) {
        std::abort();
    }
    for (const auto& t : snap.http) {
        if (!scratch.prepare(t.regexes).ok()) {
            std::abort();
        }
    }
    // Warm up (and check the answer) outside the timed loop.
    const snapshot::decision d0 = snapshot::match_route(snap, req, scratch);
    if (d0.what != snapshot::outcome::forward || d0.route_index != static_cast<uint32_t>(last)) {
        state.SkipWithError("wrong route");
        return;
    }
    const uint64_t a0 = perf::alloc_count();
    for (auto _ : state) {
        snapshot::decision d = snapshot::match_route(snap, req, scratch);
        benchmark::DoNotOptimize(d);
    }
    state.counters["allocs_per_op"] = benchmark::Counter(
        static_cast<double>(perf::alloc_count() - a0) / static_cast<double>(state.iterations()));
    state.counters["routes"] = routes;
    state.counters["regex_fallbacks"] = static_cast<double>(snap.regex_fallback_count);
}

BENCHMARK(BM_route_match)
    ->ArgsProduct({{1, 100, 10000}, {0, 1, 2, 3}})
    ->ArgNames({"routes", "mix"});

} // namespace

BENCHMARK_MAIN();
