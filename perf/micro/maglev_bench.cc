// Maglev (lib/maglev): table build time, lookup ns/op, balance and churn (STYLE B1, B3).
// Build and lookup are timed apart; balance and churn are counters. Lookups must report
// allocs_per_op = 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "alloc_counter.hh"
#include "sluice/maglev/maglev.hh"

namespace {

using sluice::maglev::endpoint;
using sluice::maglev::table;

std::vector<endpoint> make_endpoints(uint32_t n)
{
    std::vector<endpoint> eps;
    eps.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
        eps.push_back({sluice::maglev::stable_key("10.1." + std::to_string(i / 256) + "." +
                                                  std::to_string(i % 256) + ":8080"),
                       1});
    }
    return eps;
}

table build_or_die(const std::vector<endpoint>& eps, uint32_t size)
{
    auto r = table::build(eps, size);
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

// Balance of a table: stddev of slot shares relative to the mean, and max/min.
void set_balance(benchmark::State& state, const table& t)
{
    const auto counts = t.slot_counts();
    double mean = 0;
    for (const uint32_t c : counts) {
        mean += c;
    }
    mean /= static_cast<double>(counts.size());
    double var = 0;
    for (const uint32_t c : counts) {
        var += (c - mean) * (c - mean);
    }
    const auto [mn, mx] = std::minmax_element(counts.begin(), counts.end());
    state.counters["stddev_share_pct"] = 100.0 * std::sqrt(var / counts.size()) / mean;
    state.counters["max_over_min"] = static_cast<double>(*mx) / *mn;
}

// Args: table size, endpoints.
void BM_maglev_build(benchmark::State& state)
{
    const auto size = static_cast<uint32_t>(state.range(0));
    const auto eps = make_endpoints(static_cast<uint32_t>(state.range(1)));
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        auto r = table::build(eps, size);
        benchmark::DoNotOptimize(r);
    }
    set_allocs(state, a0);
    set_balance(state, build_or_die(eps, size));
}

void BM_maglev_lookup(benchmark::State& state)
{
    const auto size = static_cast<uint32_t>(state.range(0));
    const table t = build_or_die(make_endpoints(static_cast<uint32_t>(state.range(1))), size);
    // A Weyl sequence walks the whole table in a cache-unfriendly order (the stride is far
    // from a multiple of any cache line), like hashes of many distinct flows would.
    uint32_t h = 0;
    uint64_t sum = 0;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        h += 0x9e3779b9U;
        sum += t.lookup(h);
    }
    benchmark::DoNotOptimize(sum);
    set_allocs(state, a0);
}

// Churn: rebuild after one endpoint of N leaves; counters give the slots that moved as a
// multiple of the ideal M/N, and as a percentage of the table.
void BM_maglev_churn(benchmark::State& state)
{
    const auto size = static_cast<uint32_t>(state.range(0));
    const auto n = static_cast<uint32_t>(state.range(1));
    auto eps = make_endpoints(n);
    const table before = build_or_die(eps, size);
    eps.erase(eps.begin() + n / 2);
    for (auto _ : state) {
        auto r = table::build(eps, size);
        benchmark::DoNotOptimize(r);
    }
    const uint32_t moved = sluice::maglev::slots_moved(before, build_or_die(eps, size));
    state.counters["moved_over_ideal"] = moved / (static_cast<double>(size) / n);
    state.counters["moved_pct"] = 100.0 * moved / size;
}

void sizes(benchmark::internal::Benchmark* b)
{
    for (const int64_t m : {65537, 655373}) {
        for (const int64_t n : {10, 100, 1000}) {
            b->Args({m, n});
        }
    }
}

} // namespace

BENCHMARK(BM_maglev_build)->Apply(sizes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_maglev_lookup)->Apply(sizes);
BENCHMARK(BM_maglev_churn)->Apply(sizes)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
