// Packet header parsing (net::parse_frame), the first stage of every packet.
// Reports ns/op and allocs/op (must be 0) for the common frame shapes.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "alloc_counter.hh"
#include "sluice/net/parse.hh"

namespace {

std::vector<uint8_t> tcp4_frame()
{
    std::vector<uint8_t> f(14 + 20 + 20, 0);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16] = 0;
    f[17] = 40;
    f[23] = 6;
    f[14 + 20 + 12] = 0x50;
    return f;
}

std::vector<uint8_t> udp6_frame_with_ext()
{
    std::vector<uint8_t> f(14 + 40 + 8 + 8, 0);
    f[12] = 0x86;
    f[13] = 0xdd;
    f[14] = 0x60;
    f[14 + 5] = 16; // payload: 8 (hop-by-hop) + 8 (UDP)
    f[14 + 6] = 0;  // hop-by-hop
    f[14 + 40] = 17;
    return f;
}

void run(benchmark::State& state, const std::vector<uint8_t>& f)
{
    sluice::net::frame_info info;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        auto r = sluice::net::parse_frame(f.data(), static_cast<uint32_t>(f.size()), info);
        benchmark::DoNotOptimize(r);
        benchmark::DoNotOptimize(info);
    }
    state.counters["allocs_per_op"] =
        benchmark::Counter(static_cast<double>(sluice::perf::alloc_count() - a0) /
                           static_cast<double>(state.iterations()));
}

void BM_parse_tcp4(benchmark::State& state)
{
    run(state, tcp4_frame());
}
void BM_parse_udp6_ext(benchmark::State& state)
{
    run(state, udp6_frame_with_ext());
}
void BM_parse_runt(benchmark::State& state)
{
    run(state, std::vector<uint8_t>(10, 0));
}

} // namespace

BENCHMARK(BM_parse_tcp4);
BENCHMARK(BM_parse_udp6_ext);
BENCHMARK(BM_parse_runt);
BENCHMARK_MAIN();
