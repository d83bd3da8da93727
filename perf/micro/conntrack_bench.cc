// Connection tracking (lib/conntrack): bulk lookup hit/miss on tables far larger than the
// caches (1M and 4M flows), single lookup, insert+remove churn and the aging sweep (STYLE B1).
// Every hot loop must report allocs_per_op = 0; bytes_per_entry is the whole table's memory
// (entries, index, free list) divided by its capacity.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <utility>

#include "alloc_counter.hh"
#include "sluice/conntrack/conntrack.hh"

namespace {

using namespace sluice::conntrack;

constexpr size_t burst = 32;
constexpr uint64_t tsc_hz = 2'000'000'000;

void put32(uint8_t* p, uint32_t v)
{
    for (int i = 0; i < 4; ++i) {
        p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
    }
}

// Flow i's keys, computed (not stored) so reading them costs no cache miss of its own.
template <typename F>
flow_key key(uint32_t i, bool reverse, bool miss = false)
{
    flow_key k;
    k.family = F::family;
    k.proto = proto_tcp;
    const unsigned off = F::family == 6 ? 12 : 0;
    if (F::family == 6) {
        k.src[0] = k.dst[0] = 0x20;
        k.src[1] = k.dst[1] = 0x01;
    }
    if (!reverse) {
        put32(k.src.data() + off, 0x0a000000u | (i >> 6));
        put32(k.dst.data() + off, 0xc6120100u | (i & 15));
        k.sport = static_cast<uint16_t>(10000 + (i & 63));
        k.dport = miss ? 81 : 80;
    } else {
        put32(k.src.data() + off, 0x0c000000u | (i & 0xffff));
        put32(k.dst.data() + off, 0xc6120300u | (i >> 16));
        k.sport = 8080;
        k.dport = static_cast<uint16_t>(1024 + ((i >> 8) & 0xff) + (miss ? 40000 : 0));
    }
    return k;
}

template <typename F>
struct filled {
    table<F> t;
    uint32_t flows = 0;
};

// Tables are built once per (family, capacity) and shared by the benchmarks that read them.
template <typename F>
filled<F>& full_table(uint32_t capacity)
{
    static std::map<uint32_t, std::unique_ptr<filled<F>>> cache;
    auto& slot = cache[capacity];
    if (!slot) {
        params p;
        p.capacity = capacity;
        p.to = timeouts::from_seconds(timeout_seconds{}, tsc_hz);
        auto r = table<F>::create(p);
        if (!r.ok()) {
            std::abort();
        }
        slot = std::make_unique<filled<F>>(filled<F>{std::move(r).value(), 0});
        for (uint32_t i = 0; i < capacity; ++i) {
            if (slot->t.insert(key<F>(i, false), key<F>(i, true), i, 0) != nullptr) {
                ++slot->flows;
            }
        }
    }
    return *slot;
}

void common_counters(benchmark::State& state, double bytes_per_entry, uint64_t a0,
                     double ops_per_iter)
{
    // Read the counter before the first counters[] insert (a std::map node allocation).
    const uint64_t allocs = sluice::perf::alloc_count() - a0;
    state.counters["allocs_per_op"] =
        static_cast<double>(allocs) / (static_cast<double>(state.iterations()) * ops_per_iter);
    state.counters["bytes_per_entry"] = bytes_per_entry;
    // Seconds per operation (shown as ns): one op is one key, insert or visited slot.
    state.counters["time_per_op"] = benchmark::Counter(
        ops_per_iter, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// Args: capacity, hit (1) or miss (0). One iteration is a burst of 32 keys in an order that
// walks the whole table (odd multiplier modulo a power of two: a permutation).
template <typename F>
void BM_lookup_bulk(benchmark::State& state)
{
    const auto capacity = static_cast<uint32_t>(state.range(0));
    const bool hit = state.range(1) != 0;
    filled<F>& f = full_table<F>(capacity);
    flow_key keys[burst];
    match<F> out[burst];
    uint32_t n = 0;
    uint64_t found = 0;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        for (size_t i = 0; i < burst; ++i) {
            const uint32_t flow = (n++ * 2654435761u) & (capacity - 1);
            keys[i] = key<F>(flow, (flow & 1) != 0, !hit);
        }
        f.t.lookup_bulk(keys, out, 1);
        for (size_t i = 0; i < burst; ++i) {
            found += out[i].e != nullptr ? 1 : 0;
        }
    }
    benchmark::DoNotOptimize(found);
    common_counters(state, f.t.bytes_per_entry(), a0, burst);
    state.counters["hit_ratio"] = static_cast<double>(found) / (state.iterations() * burst);
    state.counters["fill"] = static_cast<double>(f.flows) / capacity;
}

template <typename F>
void BM_lookup_single(benchmark::State& state)
{
    const auto capacity = static_cast<uint32_t>(state.range(0));
    filled<F>& f = full_table<F>(capacity);
    uint32_t n = 0;
    uint64_t found = 0;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        const uint32_t flow = (n++ * 2654435761u) & (capacity - 1);
        found += f.t.lookup(key<F>(flow, false), 1).e != nullptr ? 1 : 0;
    }
    benchmark::DoNotOptimize(found);
    common_counters(state, f.t.bytes_per_entry(), a0, 1);
}

// Steady churn at half occupancy: each iteration inserts a new flow and removes the oldest one
// (a SYN-flood-shaped workload with the table never full).
template <typename F>
void BM_insert_remove(benchmark::State& state)
{
    const auto capacity = static_cast<uint32_t>(state.range(0));
    params p;
    p.capacity = capacity;
    p.to = timeouts::from_seconds(timeout_seconds{}, tsc_hz);
    auto r = table<F>::create(p);
    if (!r.ok()) {
        std::abort();
    }
    table<F> t = std::move(r).value();
    const uint32_t live = capacity / 2;
    auto ring = std::make_unique<typename table<F>::entry*[]>(live);
    uint32_t next = 0;
    for (; next < live; ++next) {
        ring[next] = t.insert(key<F>(next, false), key<F>(next, true), next, 0);
    }
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        const uint32_t slot = next % live;
        if (ring[slot] != nullptr) {
            t.remove(*ring[slot]);
        }
        const uint32_t flow = next & ((1u << 24) - 1);
        ring[slot] = t.insert(key<F>(flow, false), key<F>(flow, true), flow, 0);
        ++next;
    }
    common_counters(state, t.bytes_per_entry(), a0, 1);
    state.counters["insert_failures"] = static_cast<double>(t.stats().insert_failures_full);
}

// The aging sweep over a full table of live flows: the per-loop cost a worker pays.
template <typename F>
void BM_age_sweep(benchmark::State& state)
{
    const auto capacity = static_cast<uint32_t>(state.range(0));
    constexpr uint32_t budget = 256;
    filled<F>& f = full_table<F>(capacity);
    uint64_t reclaimed = 0;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        reclaimed += f.t.age(1, budget);
    }
    benchmark::DoNotOptimize(reclaimed);
    common_counters(state, f.t.bytes_per_entry(), a0, budget);
}

void hit_miss(benchmark::internal::Benchmark* b)
{
    for (const int64_t cap : {1 << 20, 1 << 22}) {
        b->Args({cap, 1});
        b->Args({cap, 0});
    }
}

void caps(benchmark::internal::Benchmark* b)
{
    b->Arg(1 << 20);
    b->Arg(1 << 22);
}

} // namespace

BENCHMARK(BM_lookup_bulk<v4>)->Apply(hit_miss);
BENCHMARK(BM_lookup_bulk<v6>)->Args({1 << 20, 1})->Args({1 << 20, 0});
BENCHMARK(BM_lookup_single<v4>)->Apply(caps);
BENCHMARK(BM_insert_remove<v4>)->Apply(caps);
BENCHMARK(BM_insert_remove<v6>)->Arg(1 << 20);
BENCHMARK(BM_age_sweep<v4>)->Apply(caps);
BENCHMARK_MAIN();
