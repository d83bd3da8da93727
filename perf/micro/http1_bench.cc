// HTTP/1.1 codec (lib/l7/http1): ns/request, MB/s and allocs/op (must be 0) for a typical
// 400-byte GET with 8 headers, a POST with Content-Length and a chunked POST, plus the
// writer answering an error.
#include <benchmark/benchmark.h>

#include <string>

#include "alloc_counter.hh"
#include "sluice/l7/http1.hh"

namespace {

using namespace sluice::l7;

std::string typical_get()
{
    std::string s = "GET /api/v1/catalog/items?category=books&page=2&sort=price HTTP/1.1\r\n"
                    "Host: shop.example.com\r\n"
                    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101\r\n"
                    "Accept: application/json, text/plain, */*\r\n"
                    "Accept-Language: en-US,en;q=0.5\r\n"
                    "Accept-Encoding: gzip, deflate, br\r\n"
                    "Connection: keep-alive\r\n"
                    "Cookie: session=8f14e45fceea167a5a36dedd4bea2543\r\n";
    s += "X-Request-Id: ";
    s += std::string(400 - s.size() - 4 - 2, 'a');
    s += "\r\n\r\n";
    return s;
}

std::string post_cl()
{
    return "POST /api/v1/orders HTTP/1.1\r\nHost: shop.example.com\r\n"
           "Content-Type: application/json\r\nContent-Length: 64\r\n\r\n" +
           std::string(64, 'x');
}

std::string post_chunked()
{
    std::string s = "POST /upload HTTP/1.1\r\nHost: shop.example.com\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n";
    for (int k = 0; k < 4; ++k) {
        s += "40;ext=v\r\n" + std::string(64, 'y') + "\r\n";
    }
    return s + "0\r\nTrailer: t\r\n\r\n";
}

void run(benchmark::State& state, const std::string& msg)
{
    http1_parser p(http1_parser::kind::request);
    uint64_t body = 0;
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        std::string_view in = msg;
        while (true) {
            const http1_event ev = p.parse(in);
            in.remove_prefix(ev.consumed);
            if (ev.kind == http1_event_kind::body) {
                body += ev.data.size();
            } else if (ev.kind == http1_event_kind::done || ev.kind == http1_event_kind::error) {
                break;
            }
        }
        benchmark::DoNotOptimize(p.message());
    }
    benchmark::DoNotOptimize(body);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * msg.size()));
    state.counters["allocs_per_op"] =
        benchmark::Counter(static_cast<double>(sluice::perf::alloc_count() - a0) /
                           static_cast<double>(state.iterations()));
}

void BM_http1_get_400b_8hdr(benchmark::State& state)
{
    run(state, typical_get());
}
void BM_http1_post_content_length(benchmark::State& state)
{
    run(state, post_cl());
}
void BM_http1_post_chunked(benchmark::State& state)
{
    run(state, post_chunked());
}
void BM_http1_write_error(benchmark::State& state)
{
    char buf[256];
    const uint64_t a0 = sluice::perf::alloc_count();
    for (auto _ : state) {
        benchmark::DoNotOptimize(write_error_response(buf, 400));
        benchmark::ClobberMemory();
    }
    state.counters["allocs_per_op"] =
        benchmark::Counter(static_cast<double>(sluice::perf::alloc_count() - a0) /
                           static_cast<double>(state.iterations()));
}

} // namespace

BENCHMARK(BM_http1_get_400b_8hdr);
BENCHMARK(BM_http1_post_content_length);
BENCHMARK(BM_http1_post_chunked);
BENCHMARK(BM_http1_write_error);
BENCHMARK_MAIN();
