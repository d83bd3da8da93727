// Fuzz target: the HTTP/1.1 parser (requests and responses) never reads out of bounds, its
// views stay inside the input, and feeding the input in random-sized chunks gives exactly
// the same events as feeding it at once (resumption is exact).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sluice/l7/http1.hh"

using namespace sluice::l7;

namespace {

bool inside(std::string_view v, std::string_view buf)
{
    return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

/// Feeds `in` in pieces whose sizes come from `seed` (0: all at once); returns the trace.
std::string run(http1_parser::kind k, const std::vector<uint8_t>& in, uint32_t seed)
{
    http1_parser p(k);
    p.set_request_method(in.size() % 3 == 0 ? "HEAD" : "GET");
    // Heap buffer reallocated on every feed so ASan catches reads of stale or unfed bytes.
    std::vector<char> buf;
    std::string out;
    size_t fed = 0;
    uint32_t x = seed | 1;
    while (true) {
        while (true) {
            const std::string_view view(buf.data(), buf.size());
            const http1_event ev = p.parse(view);
            if (ev.consumed > view.size()) {
                std::abort();
            }
            if (ev.kind == http1_event_kind::headers) {
                const auto& m = p.message();
                for (const auto& h : m.headers) {
                    if (!inside(h.name, view) || !inside(h.value, view) || h.name.empty()) {
                        std::abort();
                    }
                }
                out += "H" + std::to_string(m.headers.size()) + std::string(m.method) + "|" +
                       std::string(m.target) + "|" + std::to_string(m.status) +
                       std::to_string(static_cast<int>(m.framing)) + ";";
            } else if (ev.kind == http1_event_kind::body) {
                if (!inside(ev.data, view)) {
                    std::abort();
                }
                out.append(ev.data);
            } else if (ev.kind == http1_event_kind::done) {
                out += "|D;";
            } else if (ev.kind == http1_event_kind::error) {
                return out + "E" + std::string(http1_error_name(ev.error));
            }
            buf.erase(buf.begin(), buf.begin() + ev.consumed);
            if (ev.kind == http1_event_kind::need_more) {
                break;
            }
        }
        if (fed == in.size()) {
            break;
        }
        size_t take = in.size() - fed;
        if (seed != 0) {
            x = x * 1103515245u + 12345u;
            take = std::min<size_t>(take, 1 + (x >> 16) % 13);
        }
        std::vector<char> grown(buf.size() + take);
        std::copy(buf.begin(), buf.end(), grown.begin());
        std::copy(in.begin() + static_cast<long>(fed), in.begin() + static_cast<long>(fed + take),
                  grown.begin() + static_cast<long>(buf.size()));
        buf.swap(grown);
        fed += take;
    }
    const http1_event ev = p.finish();
    out += ev.kind == http1_event_kind::done    ? "|EOF"
           : ev.kind == http1_event_kind::error ? "E" + std::string(http1_error_name(ev.error))
                                                : "";
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::vector<uint8_t> in(data, data + size);
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size; ++i) {
        seed = (seed ^ data[i]) * 16777619u;
    }
    for (const auto k : {http1_parser::kind::request, http1_parser::kind::response}) {
        const std::string one = run(k, in, 0);
        const std::string a = run(k, in, seed | 2);
        const std::string b = run(k, in, (seed >> 7) | 2);
        if (a != one || b != one) {
            std::fprintf(stderr, "chunked feeding differs (kind %d)\none-shot: %s\nchunked:  %s\n",
                         static_cast<int>(k), one.c_str(), (a != one ? a : b).c_str());
            std::fwrite(data, 1, size, stderr);
            std::abort();
        }
    }
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds()
{
    const char* seeds[] = {
        "GET /a?b HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        "GET http://h/x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nok\r\n0\r\n\r\n",
        "HTTP/1.0 200 OK\r\n\r\nuntil close",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
    };
    std::vector<std::vector<uint8_t>> out;
    for (const char* s : seeds) {
        const std::string_view v(s);
        out.emplace_back(v.begin(), v.end());
    }
    return out;
}
