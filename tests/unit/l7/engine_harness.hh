#pragma once
// The L7 engine's in-process test harness, shared by the engine test files: blocking client
// sockets on loopback, a response reader built on the codec, and a reactor thread running an
// engine on a mesh given as YAML (ephemeral ports, STYLE T6; every wait bounded).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "sluice/compile/compile.hh"
#include "sluice/l7/engine.hh"
#include "sluice/l7/http1.hh"
#include "sluice/model/decode.hh"

namespace sluice::l7::testing {

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

inline int64_t ms_since(clk::time_point t0)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(clk::now() - t0).count();
}

inline int listen_loopback(uint16_t& port)
{
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 512) != 0) {
        close(fd);
        return -1;
    }
    socklen_t len = sizeof(a);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    return fd;
}

/// A blocking client socket with 5 s send/receive timeouts; `rcvbuf` > 0 pins SO_RCVBUF
/// (before connect: no autotuning).
inline int connect_loopback(uint16_t port, int rcvbuf = 0)
{
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

inline bool send_all(int fd, std::string_view s)
{
    while (!s.empty()) {
        const ssize_t n = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
        if (n <= 0) {
            return false;
        }
        s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

struct response {
    int status = 0;                             ///< 0: no complete response; -1: parse error
    std::map<std::string, std::string> headers; ///< lower-case names; last value wins
    std::string body;
    bool closed = false;
    int informational = 0; ///< 1xx responses skipped before this one
};

/// Reads one response from `fd` (buffering what follows in `rest`).
inline response read_response(int fd, std::string& rest, std::string_view method = "GET")
{
    response r;
    http1_parser p(http1_parser::kind::response);
    p.set_request_method(method);
    std::string buf = std::move(rest);
    rest.clear();
    char tmp[65536];
    for (int rounds = 0; rounds < 100000; ++rounds) {
        bool progressed = true;
        bool again = true;
        while (progressed && (!buf.empty() || again)) {
            progressed = false;
            again = false;
            const http1_event ev = p.parse(buf);
            if (ev.kind == http1_event_kind::headers) {
                r.status = p.message().status;
                r.headers.clear();
                for (const auto& h : p.message().headers) {
                    std::string n(h.name);
                    for (char& c : n) {
                        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                    }
                    r.headers[n] = std::string(h.value);
                }
            } else if (ev.kind == http1_event_kind::body) {
                r.body.append(ev.data);
            } else if (ev.kind == http1_event_kind::done) {
                buf.erase(0, ev.consumed);
                if (p.message().informational) {
                    ++r.informational;
                    progressed = true;
                    continue;
                }
                rest = std::move(buf);
                return r;
            } else if (ev.kind == http1_event_kind::error) {
                r.status = -1;
                return r;
            }
            buf.erase(0, ev.consumed);
            progressed = ev.consumed > 0 || ev.kind == http1_event_kind::headers;
            again = ev.kind == http1_event_kind::headers || ev.kind == http1_event_kind::body;
            if (ev.kind == http1_event_kind::need_more) {
                break;
            }
        }
        const ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0) {
            const http1_event ev = p.finish();
            r.closed = true;
            if (ev.kind != http1_event_kind::done) {
                r.status = 0;
            }
            return r;
        }
        buf.append(tmp, static_cast<size_t>(n));
    }
    return r;
}

inline response request(uint16_t port, const std::string& raw, std::string_view method = "GET")
{
    const int fd = connect_loopback(port);
    if (fd < 0) {
        return {};
    }
    send_all(fd, raw);
    std::string rest;
    response r = read_response(fd, rest, method);
    close(fd);
    return r;
}

/// A clock the test moves by hand (the reactor reads it once per poll).
struct fake_time {
    std::atomic<nanos> now{1'000'000'000};
    static nanos read(void* c) { return static_cast<fake_time*>(c)->now.load(); }
};

/// A reactor thread running an engine on loopback with the given mesh YAML (listener ports
/// 8080, 8443 and 9090 bind ephemeral ports; port() is 8080's). L7_TEST_LOG=1 prints the
/// access log.
class harness {
public:
    explicit harness(const std::string& yaml, engine_settings s = {}, clock_source clock = {})
    {
        s.bind_override = "127.0.0.1";
        if (getenv("L7_TEST_LOG") != nullptr) {
            s.access_log = "-";
        }
        s.port_override = {{8080, 0}, {8443, 0}, {9090, 0}};
        auto d = model::decode(yaml, "test.yaml");
        for (const auto& diag : d.diagnostics) {
            EXPECT_NE(diag.level, model::severity::error) << diag.to_string();
        }
        locality::node node;
        node.locality.region = "region-1";
        node.locality.zone = "zone-a";
        auto snap = compile::compile(d.objects, node);
        EXPECT_TRUE(snap.ok()) << (snap.ok() ? "" : snap.err().message);
        auto cfg = std::make_shared<engine_config>();
        cfg->snap = std::make_shared<snapshot::snapshot>(std::move(*snap));
        _snap = cfg->snap;
        _slot.put(cfg);
        std::atomic<bool> ready{false};
        _thread = std::thread([this, s, clock, &ready] {
            auto r = reactor::create(clock);
            auto e = engine::create(**r, s);
            _engine = e->get();
            while (!_stop.load()) {
                if (auto c = _slot.take()) {
                    auto res = (*e)->apply(std::move(c));
                    EXPECT_TRUE(res.ok()) << (res.ok() ? "" : res.err().message);
                    _port.store((*e)->bound_port(8080));
                    ready.store(true);
                }
                (*r)->poll(5);
            }
            (*e)->shut_down();
            for (int i = 0; i < 10; ++i) {
                (*r)->poll(0);
            }
            _engine = nullptr;
        });
        for (int i = 0; i < 500 && !ready.load(); ++i) {
            std::this_thread::sleep_for(2ms);
        }
    }
    ~harness()
    {
        _stop.store(true);
        _thread.join();
    }
    uint16_t port() const { return _port.load(); }
    const engine_stats& stats() const { return _engine->stats(); }
    /// The compiled snapshot the engine runs, and the engine (its thread-safe readers).
    const snapshot::snapshot& snap() const { return *_snap; }
    const engine& eng() const { return *_engine; }
    /// Waits (bounded) until no downstream connection is open.
    bool settle(int timeout_ms = 2000) const
    {
        const auto t0 = clk::now();
        while (stats().downstream_cx_active.load() != 0) {
            if (ms_since(t0) > timeout_ms) {
                return false;
            }
            std::this_thread::sleep_for(2ms);
        }
        return true;
    }

private:
    config_slot _slot;
    std::shared_ptr<const snapshot::snapshot> _snap;
    std::atomic<bool> _stop{false};
    std::atomic<uint16_t> _port{0};
    engine* _engine = nullptr;
    std::thread _thread;
};

} // namespace sluice::l7::testing
