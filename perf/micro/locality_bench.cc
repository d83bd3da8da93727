// Locality (lib/locality): plan building (compile time), selector computation (on every
// health change) and the per-new-flow choice (data path: allocs_per_op must be 0).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "alloc_counter.hh"
#include "sluice/locality/levels.hh"
#include "sluice/locality/priority_load.hh"

namespace {

using namespace sluice::locality;

node self()
{
    node n;
    n.locality = {"r1", "z1", "s1"};
    n.network = "n1";
    n.node_name = "node-0";
    return n;
}

// N endpoints over 2 networks, 2 regions, 3 zones, 4 subzones.
std::vector<endpoint> cluster(uint32_t n)
{
    std::vector<endpoint> eps(n);
    for (uint32_t i = 0; i < n; ++i) {
        eps[i].network = i % 5 == 4 ? "n2" : "n1";
        eps[i].locality = {i % 3 == 2 ? "r2" : "r1", "z" + std::to_string(1 + i % 3),
                           "s" + std::to_string(1 + i % 4)};
        eps[i].node_name = "node-" + std::to_string(i % 16);
        eps[i].endpoint_labels = {{"app", "reviews"}, {"version", i % 2 ? "v1" : "v2"}};
    }
    return eps;
}

plan plan_or_die(const std::vector<endpoint>& eps, const policy& pol)
{
    auto r = build_plan(self(), eps, pol);
    if (!r.ok()) {
        std::abort();
    }
    return std::move(r).value();
}

void set_allocs(benchmark::State& state, uint64_t a0)
{
    state.counters["allocs_per_op"] =
        benchmark::Counter(static_cast<double>(sluice::perf::alloc_count() - a0) /
                           static_cast<double>(state.iterations()));
}

// Health: every third endpoint down, so several levels share the load.
std::vector<health> some_down(size_t n)
{
    std::vector<health> h(n, health::healthy);
    for (size_t i = 0; i < n; i += 3) {
        h[i] = health::unhealthy;
    }
    return h;
}

void BM_locality_build_plan_prefer_close(benchmark::State& state)
{
    const auto eps = cluster(static_cast<uint32_t>(state.range(0)));
    policy pol;
    pol.distribution = mode::prefer_close;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        auto r = build_plan(self(), eps, pol);
        benchmark::DoNotOptimize(r);
    }
    set_allocs(state, a0);
}

void BM_locality_build_plan_failover_priority(benchmark::State& state)
{
    const auto eps = cluster(static_cast<uint32_t>(state.range(0)));
    policy pol;
    pol.use_lb_setting = true;
    pol.outlier_detection = true;
    pol.setting.failover_priority = {"version=v1", label_region, label_zone};
    pol.setting.failover = {{"r1", "r2"}};
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        auto r = build_plan(self(), eps, pol);
        benchmark::DoNotOptimize(r);
    }
    set_allocs(state, a0);
}

void BM_locality_compute_selector(benchmark::State& state)
{
    const auto eps = cluster(static_cast<uint32_t>(state.range(0)));
    policy pol;
    pol.distribution = mode::prefer_same_node;
    const plan p = plan_or_die(eps, pol);
    const auto h = some_down(eps.size());
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        auto s = selector::compute(p, h, envoy_default_panic_threshold);
        benchmark::DoNotOptimize(s);
    }
    set_allocs(state, a0);
    state.counters["levels"] = static_cast<double>(p.levels.size());
}

void run_choose(benchmark::State& state, const policy& pol)
{
    const auto eps = cluster(1000);
    const plan p = plan_or_die(eps, pol);
    auto s = selector::compute(p, some_down(eps.size()), 0);
    if (!s.ok()) {
        std::abort();
    }
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    uint64_t sum = 0;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        h += 0x9e3779b97f4a7c15ULL;
        const choice c = s->choose(h);
        sum += c.level + c.group;
    }
    benchmark::DoNotOptimize(sum);
    set_allocs(state, a0);
}

void BM_locality_choose_prefer_same_node(benchmark::State& state)
{
    policy pol;
    pol.distribution = mode::prefer_same_node; // 6 levels
    run_choose(state, pol);
}

void BM_locality_choose_distribute(benchmark::State& state)
{
    policy pol;
    pol.use_lb_setting = true;
    pol.setting.distribute = {{"r1/*", {{"r1/z1", 50}, {"r1/*", 30}, {"r2/*", 20}}}};
    run_choose(state, pol);
}

} // namespace

BENCHMARK(BM_locality_build_plan_prefer_close)->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_locality_build_plan_failover_priority)->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_locality_compute_selector)->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(BM_locality_choose_prefer_same_node);
BENCHMARK(BM_locality_choose_distribute);
BENCHMARK_MAIN();
