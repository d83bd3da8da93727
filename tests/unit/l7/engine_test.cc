// The L7 engine in process, on loopback: real kernel sockets, real backends (threads that
// parse requests with the codec and say who answered), a reactor thread running the engine,
// and clients that are plain blocking sockets. Every port is ephemeral (STYLE T6); every
// wait is bounded.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sluice/compile/compile.hh"
#include "sluice/l7/engine.hh"
#include "sluice/l7/http1.hh"
#include "sluice/model/decode.hh"

#include "engine_harness.hh"

namespace sluice::l7 {
namespace {

using namespace std::chrono_literals;
using namespace sluice::l7::testing;

std::string get(std::string_view host, std::string_view path, std::string_view extra = {})
{
    std::string s = "GET ";
    s.append(path);
    s.append(" HTTP/1.1\r\nHost: ");
    s.append(host);
    s.append("\r\n");
    s.append(extra);
    s.append("\r\n");
    return s;
}

/// A backend: answers every request with 200, `x-backend: NAME` and a body listing what it
/// received ("NAME METHOD TARGET" then "name: value" lines, then "body-bytes: N"). Special
/// paths: /status/N answers N; /sleep/MS waits first; /ws upgrades and echoes bytes;
/// /flaky fails every other request with 503.
class backend {
public:
    explicit backend(std::string name, int delay_ms = 0)
        : _name(std::move(name)), _delay_ms(delay_ms)
    {
        _fd = listen_loopback(_port);
        _accept = std::thread([this] { accept_loop(); });
    }
    ~backend() { stop(); }
    void stop()
    {
        if (_stop.exchange(true)) {
            return;
        }
        shutdown(_fd, SHUT_RDWR);
        close(_fd);
        _accept.join();
        std::vector<std::thread> ts;
        {
            std::lock_guard<std::mutex> g(_mu);
            for (int c : _conns) {
                shutdown(c, SHUT_RDWR);
            }
            ts.swap(_threads);
        }
        for (auto& t : ts) {
            t.join();
        }
    }
    uint16_t port() const { return _port; }
    int connections() const { return _accepted.load(); }
    int requests() const { return _requests.load(); }
    std::string last_host()
    {
        std::lock_guard<std::mutex> g(_mu);
        return _last_host;
    }
    const std::string& name() const { return _name; }

private:
    void accept_loop()
    {
        while (!_stop.load()) {
            pollfd p{_fd, POLLIN, 0};
            if (poll(&p, 1, 50) <= 0) {
                continue;
            }
            const int c = accept4(_fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) {
                continue;
            }
            ++_accepted;
            std::lock_guard<std::mutex> g(_mu);
            _conns.push_back(c);
            _threads.emplace_back([this, c] { serve(c); });
        }
    }
    void serve(int c)
    {
        timeval tv{10, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        http1_parser p(http1_parser::kind::request);
        std::string buf;
        std::string out;
        size_t body_bytes = 0;
        char tmp[16384];
        bool open = true;
        while (open && !_stop.load()) {
            const ssize_t n = recv(c, tmp, sizeof(tmp), 0);
            if (n <= 0) {
                break;
            }
            buf.append(tmp, static_cast<size_t>(n));
            bool again = false;
            while (!buf.empty() || again) {
                again = false;
                const http1_event ev = p.parse(buf);
                if (ev.kind == http1_event_kind::headers) {
                    const http1_message& m = p.message();
                    out = _name + " " + std::string(m.method) + " " + std::string(m.target) + "\n";
                    for (const auto& h : m.headers) {
                        out += std::string(h.name) + ": " + std::string(h.value) + "\n";
                    }
                    _target = std::string(m.target);
                    _last_host = std::string(m.header("host"));
                    _upgrade = m.upgrade;
                    body_bytes = 0;
                    again = true;
                } else if (ev.kind == http1_event_kind::body) {
                    body_bytes += ev.data.size();
                    again = true;
                } else if (ev.kind == http1_event_kind::done) {
                    buf.erase(0, ev.consumed);
                    ++_requests;
                    out += "body-bytes: " + std::to_string(body_bytes) + "\n";
                    if (_upgrade && _target == "/ws") {
                        send_all(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n\r\n");
                        echo(c, buf);
                        open = false;
                        break;
                    }
                    respond(c, out);
                    continue;
                } else if (ev.kind == http1_event_kind::error) {
                    open = false;
                    break;
                }
                buf.erase(0, ev.consumed);
                if (ev.kind == http1_event_kind::need_more) {
                    break;
                }
            }
        }
        close(c);
    }
    void respond(int c, const std::string& body)
    {
        int status = 200;
        if (_delay_ms != 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(_delay_ms));
        }
        if (_target.rfind("/status/", 0) == 0) {
            status = std::atoi(_target.c_str() + 8);
        } else if (_target.rfind("/sleep/", 0) == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(_target.c_str() + 7)));
        } else if (_target == "/flaky" && (_flaky++ % 2) == 0) {
            status = 503;
        }
        std::string r = "HTTP/1.1 " + std::to_string(status) + " X\r\nx-backend: " + _name +
                        "\r\nx-remove-me: 1\r\ncontent-length: " + std::to_string(body.size()) +
                        "\r\n\r\n" + body;
        send_all(c, r);
    }
    static void echo(int c, std::string pending)
    {
        if (!pending.empty()) {
            send_all(c, pending);
        }
        char tmp[4096];
        for (;;) {
            const ssize_t n = recv(c, tmp, sizeof(tmp), 0);
            if (n <= 0) {
                return;
            }
            send_all(c, {tmp, static_cast<size_t>(n)});
        }
    }

    std::string _name;
    int _delay_ms = 0;
    int _fd = -1;
    uint16_t _port = 0;
    std::atomic<bool> _stop{false};
    std::atomic<int> _accepted{0};
    std::atomic<int> _requests{0};
    std::atomic<int> _flaky{0};
    std::string _target; // per connection in practice: tests use one at a time
    std::string _last_host;
    bool _upgrade = false;
    std::thread _accept;
    std::mutex _mu;
    std::vector<int> _conns;
    std::vector<std::thread> _threads;
};

/// A ServiceEntry NAME at host NAME.test with static endpoints on loopback ports.
std::string service(const std::string& host, const std::vector<const backend*>& bs,
                    const std::string& extra_labels = {})
{
    std::string y =
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: " + host +
        "\n  namespace: default\nspec:\n  hosts: [" + host +
        "]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - number: "
        "80\n    name: http\n    protocol: HTTP\n  endpoints:\n";
    for (const backend* b : bs) {
        y += "  - address: 127.0.0.1\n    ports: {http: " + std::to_string(b->port()) +
             "}\n    labels: {version: " + b->name() + extra_labels + "}\n";
    }
    return y + "---\n";
}

const char* gateway_yaml = R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
)";

std::string backend_of(const response& r)
{
    auto it = r.headers.find("x-backend");
    return it == r.headers.end() ? std::string() : it->second;
}

TEST(L7RetryBackoff, FullyJitteredExponentialCappedAtTenTimesBase)
{
    const nanos base = 25 * ns_per_ms;
    std::mt19937_64 rng(7);
    for (uint32_t retry = 1; retry <= 8; ++retry) {
        const nanos cap = std::min<nanos>(base << (retry - 1), 10 * base);
        nanos lo = UINT64_MAX;
        nanos hi = 0;
        double sum = 0;
        for (int i = 0; i < 20000; ++i) {
            const nanos w = retry_backoff(base, retry, rng());
            ASSERT_LE(w, cap);
            lo = std::min(lo, w);
            hi = std::max(hi, w);
            sum += static_cast<double>(w);
        }
        // Uniform over [0, cap]: the extremes are reached and the mean is cap / 2.
        EXPECT_LT(lo, cap / 50) << retry;
        EXPECT_GT(hi, cap - cap / 50) << retry;
        EXPECT_NEAR(sum / 20000 / static_cast<double>(cap), 0.5, 0.02) << retry;
    }
    // 25 ms, 50, 100, 200, then 250 ms from the fifth retry on.
    EXPECT_EQ(retry_backoff(base, 5, UINT64_MAX - 1) <= 250 * ns_per_ms, true);
    EXPECT_EQ(retry_backoff(0, 3, 12345), 0U);
}

TEST(L7Engine, RoutesByHeaderAndAnswers404ForUnclaimedHosts)
{
    backend v1("v1");
    backend v2("v2");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1, &v2}) + R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc.test
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: [svc.example.com]
  gateways: [gw]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: svc.test, subset: v2}}]
  - route: [{destination: {host: svc.test, subset: v1}}]
)";
    harness h(yaml);
    ASSERT_NE(h.port(), 0);
    for (int i = 0; i < 5; ++i) {
        const response a = request(h.port(), get("svc.example.com", "/a"));
        EXPECT_EQ(a.status, 200);
        EXPECT_EQ(backend_of(a), "v1");
        const response b = request(h.port(), get("svc.example.com", "/a", "end-user: jason\r\n"));
        EXPECT_EQ(b.status, 200);
        EXPECT_EQ(backend_of(b), "v2");
    }
    const response nf = request(h.port(), get("other.example.com", "/"));
    EXPECT_EQ(nf.status, 404);
    EXPECT_GE(h.stats().no_route.load(), 1U);
}

TEST(L7Engine, WeightsSplitTraffic)
{
    backend v1("v1");
    backend v2("v2");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1, &v2}) + R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc.test
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - {destination: {host: svc.test, subset: v1}, weight: 80}
    - {destination: {host: svc.test, subset: v2}, weight: 20}
)";
    harness h(yaml);
    const int fd = connect_loopback(h.port());
    ASSERT_GE(fd, 0);
    std::string rest;
    int n1 = 0;
    const int total = 2000;
    for (int i = 0; i < total; ++i) {
        ASSERT_TRUE(send_all(fd, get("x", "/")));
        const response r = read_response(fd, rest);
        ASSERT_EQ(r.status, 200);
        n1 += backend_of(r) == "v1" ? 1 : 0;
    }
    close(fd);
    // 80/20 within +-3 points (the binomial sd at 2000 requests is 0.9 points).
    EXPECT_NEAR(100.0 * n1 / total, 80.0, 3.0);
    // Keep-alive both ways: one client connection, and each backend saw one connection.
    EXPECT_EQ(v1.connections(), 1);
    EXPECT_EQ(v2.connections(), 1);
}

TEST(L7Engine, PipelinedRequestsAnswerInOrder)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const int fd = connect_loopback(h.port());
    ASSERT_TRUE(send_all(fd, get("x", "/one") + get("x", "/two") + get("x", "/three")));
    std::string rest;
    for (const char* p : {"/one", "/two", "/three"}) {
        const response r = read_response(fd, rest);
        ASSERT_EQ(r.status, 200);
        EXPECT_NE(r.body.find(std::string("GET ") + p + "\n"), std::string::npos) << r.body;
    }
    close(fd);
}

TEST(L7Engine, RewritesRedirectsDirectResponsesAndHeaders)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: backend.internal}
    route: [{destination: {host: svc.test}}]
  - match: [{uri: {exact: /moved}}]
    redirect: {uri: /here, authority: new.example.com, redirectCode: 308}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - headers:
      request:
        set: {x-set: yes}
        add: {x-added: one}
        remove: [x-drop]
      response:
        set: {x-resp: set}
        remove: [x-remove-me]
    route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const response rw = request(h.port(), get("www.example.com", "/old/page?q=1"));
    EXPECT_EQ(rw.status, 200);
    EXPECT_NE(rw.body.find("GET /new/page?q=1\n"), std::string::npos) << rw.body;
    EXPECT_NE(rw.body.find("host: backend.internal\n"), std::string::npos) << rw.body;

    const response rd = request(h.port(), get("www.example.com", "/moved"));
    EXPECT_EQ(rd.status, 308);
    EXPECT_EQ(rd.headers.at("location"), "http://new.example.com/here");

    const response dr = request(h.port(), get("www.example.com", "/teapot"));
    EXPECT_EQ(dr.status, 418);
    EXPECT_EQ(dr.body, "short and stout");

    const response hd = request(h.port(), get("www.example.com", "/h",
                                              "x-drop: 1\r\nx-envoy-force-trace: 1\r\n"
                                              "x-forwarded-for: 203.0.113.9\r\n"));
    EXPECT_EQ(hd.status, 200);
    EXPECT_NE(hd.body.find("x-set: yes\n"), std::string::npos) << hd.body;
    EXPECT_NE(hd.body.find("x-added: one\n"), std::string::npos);
    EXPECT_EQ(hd.body.find("x-drop"), std::string::npos);
    EXPECT_EQ(hd.body.find("x-envoy-force-trace"), std::string::npos);
    // An untrusted client's x-forwarded-for is replaced by its address.
    EXPECT_NE(hd.body.find("x-forwarded-for: 127.0.0.1\n"), std::string::npos) << hd.body;
    EXPECT_NE(hd.body.find("x-forwarded-proto: http\n"), std::string::npos);
    EXPECT_NE(hd.body.find("x-request-id: "), std::string::npos);
    EXPECT_EQ(hd.headers.at("x-resp"), "set");
    EXPECT_EQ(hd.headers.count("x-remove-me"), 0U);
}

TEST(L7Engine, BodiesStreamChunkedAndContentLength)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    std::string big(300000, 'x');
    const response cl = request(h.port(), "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                              std::to_string(big.size()) + "\r\n\r\n" + big);
    EXPECT_EQ(cl.status, 200);
    EXPECT_NE(cl.body.find("body-bytes: 300000\n"), std::string::npos);
    std::string chunked = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 10; ++i) {
        chunked += "3e8\r\n" + std::string(1000, 'y') + "\r\n";
    }
    chunked += "0\r\n\r\n";
    const response ch = request(h.port(), chunked);
    EXPECT_EQ(ch.status, 200);
    EXPECT_NE(ch.body.find("body-bytes: 10000\n"), std::string::npos) << ch.body;
    EXPECT_NE(ch.body.find("transfer-encoding: chunked\n"), std::string::npos);
}

TEST(L7Engine, SmugglingShapesAnswer400AndNeverReachTheBackend)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const std::string bad[] = {
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        "\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\nHost: x\n\n",
        "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
    };
    for (const std::string& b : bad) {
        const response r = request(h.port(), b);
        EXPECT_EQ(r.status, 400) << b;
        EXPECT_EQ(r.headers.count("connection") ? r.headers.at("connection") : "", "close") << b;
    }
    const response big = request(h.port(), get("x", "/" + std::string(9000, 'a')));
    EXPECT_EQ(big.status, 414);
    EXPECT_EQ(v1.requests(), 0);
    EXPECT_GE(h.stats().downstream_rq_bad.load(), 6U);
}

TEST(L7Engine, UpstreamFailuresAnswer503WithTheirReason)
{
    backend v1("v1");
    const uint16_t dead_port = v1.port();
    v1.stop(); // connection refused from now on
    const std::string yaml = std::string(gateway_yaml) + service("dead.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: empty, namespace: default}
spec:
  hosts: [empty.test]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /dead}}]
    route: [{destination: {host: dead.test}}]
  - match: [{uri: {prefix: /empty}}]
    route: [{destination: {host: empty.test}}]
  - route: [{destination: {host: nowhere.test}}]
)";
    (void)dead_port;
    harness h(yaml);
    const response uf = request(h.port(), get("x", "/dead"));
    EXPECT_EQ(uf.status, 503);
    EXPECT_NE(uf.body.find("connection failure"), std::string::npos) << uf.body;
    EXPECT_GE(h.stats().upstream_rq_retry.load(), 1U); // the default policy retried once
    const response uh = request(h.port(), get("x", "/empty"));
    EXPECT_EQ(uh.status, 503);
    EXPECT_EQ(uh.body, "no healthy upstream");
    const response nc = request(h.port(), get("x", "/other"));
    EXPECT_EQ(nc.status, 503);
    EXPECT_GE(h.stats().no_cluster.load(), 1U);
}

TEST(L7Engine, ConsistentHashByHeaderIsSticky)
{
    backend a("a");
    backend b("b");
    backend c("c");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&a, &b, &c}) + R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc.test
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    std::map<std::string, int> users_per_backend;
    for (int u = 0; u < 30; ++u) {
        const std::string hdr = "x-user: user-" + std::to_string(u) + "\r\n";
        const std::string first = backend_of(request(h.port(), get("x", "/", hdr)));
        ASSERT_FALSE(first.empty());
        for (int i = 0; i < 5; ++i) {
            EXPECT_EQ(backend_of(request(h.port(), get("x", "/", hdr))), first);
        }
        ++users_per_backend[first];
    }
    EXPECT_GE(users_per_backend.size(), 2U); // 30 users do not all land on one backend
}

TEST(L7Engine, WebSocketUpgradeTunnelsBytes)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const int fd = connect_loopback(h.port());
    ASSERT_TRUE(send_all(fd, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                             "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
    std::string got;
    char tmp[4096];
    while (got.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        ASSERT_GT(n, 0);
        got.append(tmp, static_cast<size_t>(n));
    }
    EXPECT_EQ(got.rfind("HTTP/1.1 101", 0), 0U) << got;
    got.erase(0, got.find("\r\n\r\n") + 4);
    ASSERT_TRUE(send_all(fd, "ping-through-the-tunnel"));
    while (got.size() < 23) {
        const ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        ASSERT_GT(n, 0);
        got.append(tmp, static_cast<size_t>(n));
    }
    EXPECT_EQ(got, "ping-through-the-tunnel");
    close(fd);
    EXPECT_EQ(h.stats().tunnels.load(), 1U);
}

TEST(L7Engine, RouteTimeoutAnswers504)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - timeout: 0.2s
    route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const auto t0 = std::chrono::steady_clock::now();
    const response r = request(h.port(), get("x", "/sleep/1000"));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    EXPECT_EQ(r.status, 504);
    EXPECT_LT(ms, 900);
    EXPECT_EQ(h.stats().upstream_rq_timeout.load(), 1U);
}

TEST(L7Engine, RetriesOn5xxHideAFlakyBackend)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - retries: {attempts: 3, retryOn: 5xx}
    route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(request(h.port(), get("x", "/flaky")).status, 200);
    }
    EXPECT_EQ(v1.requests(), 20); // every other attempt failed and was retried
}

TEST(L7Engine, FaultInjectionAbortsAndDelaysByPercentage)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 555, percentage: {value: 50}}}
    route: [{destination: {host: svc.test}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 0.3s, percentage: {value: 100}}}
    route: [{destination: {host: svc.test}}]
  - match: [{uri: {prefix: /slow}}]
    timeout: 0.1s
    fault: {delay: {fixedDelay: 0.4s, percentage: {value: 100}}}
    route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const int fd = connect_loopback(h.port());
    std::string rest;
    int aborted = 0;
    const int total = 400;
    for (int i = 0; i < total; ++i) {
        ASSERT_TRUE(send_all(fd, get("x", "/abort")));
        const response r = read_response(fd, rest);
        ASSERT_TRUE(r.status == 555 || r.status == 200) << r.status;
        aborted += r.status == 555 ? 1 : 0;
    }
    close(fd);
    // 50% of 400: the binomial sd is 10; allow 4 sd.
    EXPECT_NEAR(aborted, 200, 40);
    const auto t0 = std::chrono::steady_clock::now();
    const response d = request(h.port(), get("x", "/delay"));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    EXPECT_EQ(d.status, 200);
    EXPECT_GE(ms, 300);
    // Istio: "timeouts or retries will not be enabled when faults are" -- the route's
    // timeout is dropped at compile time, so the delayed request still succeeds.
    const auto t1 = std::chrono::steady_clock::now();
    EXPECT_EQ(request(h.port(), get("x", "/slow")).status, 200);
    EXPECT_GE(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1)
            .count(),
        400);
}

TEST(L7Engine, CorsPreflightIsAnsweredAndResponsesCarryAllowOrigin)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - corsPolicy:
      allowOrigins: [{exact: "https://app.example.com"}, {regex: "https://[a-z]+\\.trusted\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const response pre =
        request(h.port(),
                "OPTIONS /api HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.com\r\n"
                "Access-Control-Request-Method: POST\r\n\r\n",
                "OPTIONS");
    EXPECT_EQ(pre.status, 200);
    EXPECT_EQ(pre.headers.at("access-control-allow-origin"), "https://app.example.com");
    EXPECT_EQ(pre.headers.at("access-control-allow-methods"), "GET,POST");
    EXPECT_EQ(pre.headers.at("access-control-max-age"), "86400");
    EXPECT_EQ(v1.requests(), 0); // answered at the appliance
    const response simple =
        request(h.port(), get("x", "/api", "Origin: https://app.example.com\r\n"));
    EXPECT_EQ(simple.status, 200);
    EXPECT_EQ(simple.headers.at("access-control-allow-origin"), "https://app.example.com");
    const response rx =
        request(h.port(), get("x", "/api", "Origin: https://shop.trusted.example\r\n"));
    EXPECT_EQ(rx.headers.at("access-control-allow-origin"), "https://shop.trusted.example");
    const response other = request(h.port(), get("x", "/api", "Origin: https://evil.example\r\n"));
    EXPECT_EQ(other.headers.count("access-control-allow-origin"), 0U);
}

TEST(L7Engine, CircuitBreakerAnswers503WithOverloadedHeader)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: default}
spec:
  host: svc.test
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    // Four clients at once against a slow backend: one request holds the only connection,
    // one waits (pending), the others overflow.
    std::vector<std::thread> clients;
    std::mutex mu;
    std::vector<response> got;
    for (int i = 0; i < 4; ++i) {
        clients.emplace_back([&] {
            response r = request(h.port(), get("x", "/sleep/300"));
            std::lock_guard<std::mutex> g(mu);
            got.push_back(std::move(r));
        });
    }
    for (auto& t : clients) {
        t.join();
    }
    int ok = 0;
    int overflowed = 0;
    for (const response& r : got) {
        if (r.status == 200) {
            ++ok;
        } else if (r.status == 503) {
            ++overflowed;
            EXPECT_EQ(r.headers.at("x-envoy-overloaded"), "true");
        }
    }
    EXPECT_EQ(ok + overflowed, 4);
    EXPECT_GE(ok, 2);         // the connection holder and the pending one
    EXPECT_GE(overflowed, 1); // at least one had no room
    EXPECT_EQ(h.stats().upstream_rq_overflow.load(), static_cast<uint64_t>(overflowed));
    EXPECT_LE(v1.connections(), 2); // one at a time (maxRequestsPerConnection 1: a new one)
}

TEST(L7Engine, EndpointGaugesCountOutstandingRequestsAndOpenUpstreamConnections)
{
    backend v1("v1");
    backend v2("v2");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1, &v2}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const snapshot::cluster* c = nullptr;
    for (const auto& k : h.snap().clusters) {
        c = k.host == "svc.test" && k.subset.empty() ? &k : c;
    }
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(c->endpoints.size(), 2U);
    // endpoint id -> backend name, from the port
    std::map<uint64_t, std::string> name_of;
    for (const auto& e : c->endpoints) {
        name_of[e.id] = e.port == v1.port() ? "v1" : "v2";
    }
    auto gauges = [&](const std::string& name) {
        for (const auto& [id, n] : name_of) {
            if (n == name) {
                return h.eng().endpoint_stats(c->name, id).value_or(endpoint_counters{9999, 9999});
            }
        }
        return endpoint_counters{9999, 9999};
    };
    EXPECT_EQ(gauges("v1").rq_active, 0U);
    EXPECT_EQ(gauges("v1").cx_active, 0U);
    EXPECT_FALSE(h.eng().endpoint_stats(c->name, 12345).has_value());
    EXPECT_FALSE(
        h.eng().endpoint_stats("outbound|80||nothing.test", c->endpoints[0].id).has_value());
    // Four requests held by the backends (least request: two each), on four connections.
    std::vector<std::thread> clients;
    std::atomic<int> ok{0};
    for (int i = 0; i < 4; ++i) {
        clients.emplace_back(
            [&] { ok += request(h.port(), get("x", "/sleep/500")).status == 200; });
    }
    for (int i = 0; i < 400 && v1.requests() + v2.requests() < 4; ++i) {
        std::this_thread::sleep_for(2ms);
    }
    ASSERT_EQ(v1.requests() + v2.requests(), 4);
    const endpoint_counters a1 = gauges("v1");
    const endpoint_counters a2 = gauges("v2");
    EXPECT_EQ(a1.rq_active, static_cast<uint64_t>(v1.requests()));
    EXPECT_EQ(a2.rq_active, static_cast<uint64_t>(v2.requests()));
    EXPECT_EQ(a1.cx_active, static_cast<uint64_t>(v1.connections()));
    EXPECT_EQ(a2.cx_active, static_cast<uint64_t>(v2.connections()));
    EXPECT_EQ(a1.cx_active + a2.cx_active, h.eng().cluster_stats(c->name)->cx_active);
    for (auto& t : clients) {
        t.join();
    }
    EXPECT_EQ(ok.load(), 4);
    // Answered: no request outstanding; the connections stay open in the keep-alive pool.
    for (int i = 0; i < 200 && gauges("v1").rq_active + gauges("v2").rq_active != 0; ++i) {
        std::this_thread::sleep_for(2ms);
    }
    EXPECT_EQ(gauges("v1").rq_active + gauges("v2").rq_active, 0U);
    EXPECT_EQ(gauges("v1").cx_active, static_cast<uint64_t>(v1.connections()));
    // v1 goes away: its pooled connections close, and so does its gauge.
    v1.stop();
    for (int i = 0; i < 500 && gauges("v1").cx_active != 0; ++i) {
        std::this_thread::sleep_for(2ms);
    }
    EXPECT_EQ(gauges("v1").cx_active, 0U);
    EXPECT_EQ(gauges("v2").cx_active, static_cast<uint64_t>(v2.connections()));
}

TEST(L7Engine, MirrorsGetACopyWithShadowHostAndNeverDelayThePrimary)
{
    backend primary("primary");
    backend shadow("shadow", 400); // a slow mirror
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&primary}) +
                             service("mirror.test", {&shadow}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: svc.test}}]
    mirror: {host: mirror.test}
    mirrorPercentage: {value: 100}
)";
    harness h(yaml);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) {
        const response r = request(h.port(), get("www.example.com:8080", "/m"));
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(backend_of(r), "primary");
    }
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    EXPECT_LT(ms, 1000); // five primaries do not wait for a 400 ms mirror each
    for (int i = 0; i < 300 && shadow.requests() < 5; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(shadow.requests(), 5);
    EXPECT_EQ(shadow.last_host(), "www.example.com-shadow:8080");
    EXPECT_EQ(primary.requests(), 5);
}

TEST(L7Engine, PerTryTimeoutRetriesThenAnswers504)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - timeout: 5s
    retries: {attempts: 2, perTryTimeout: 0.1s, retryOn: 5xx}
    route: [{destination: {host: svc.test}}]
)";
    harness h(yaml);
    const auto t0 = std::chrono::steady_clock::now();
    const response r = request(h.port(), get("x", "/sleep/400"));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    EXPECT_EQ(r.status, 504);
    EXPECT_GE(ms, 300);  // three tries of 100 ms
    EXPECT_LT(ms, 1500); // not the 5 s route timeout, nor three full 400 ms answers
    EXPECT_EQ(h.stats().upstream_rq_per_try_timeout.load(), 3U);
    for (int i = 0; i < 200 && v1.requests() < 3; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(v1.requests(), 3);
}

TEST(L7Engine, EnvoyControlHeadersOnlyFromTrustedSources)
{
    const std::string routes = R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - retries: {attempts: 4, retryOn: 5xx}
    route: [{destination: {host: svc.test}}]
)";
    {
        backend v1("v1");
        harness h(std::string(gateway_yaml) + service("svc.test", {&v1}) + routes);
        // Untrusted: x-envoy-max-retries is removed, the route's 4 retries apply.
        EXPECT_EQ(request(h.port(), get("x", "/status/503", "x-envoy-max-retries: 1\r\n")).status,
                  503);
        EXPECT_EQ(v1.requests(), 5);
    }
    {
        backend v1("v1");
        engine_settings s;
        s.trusted_sources.push_back(*net::prefix::parse("127.0.0.0/8"));
        harness h(std::string(gateway_yaml) + service("svc.test", {&v1}) + routes, s);
        EXPECT_EQ(request(h.port(), get("x", "/status/503", "x-envoy-max-retries: 1\r\n")).status,
                  503);
        EXPECT_EQ(v1.requests(), 2);
        // x-envoy-upstream-rq-timeout-ms sets the route timeout.
        EXPECT_EQ(
            request(h.port(), get("x", "/sleep/600", "x-envoy-upstream-rq-timeout-ms: 100\r\n"))
                .status,
            504);
    }
}

TEST(L7Engine, RouteTimeoutFiresOnTheReactorClock)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + service("svc.test", {&v1}) + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - timeout: 2s
    route: [{destination: {host: svc.test}}]
)";
    fake_time ft;
    harness h(yaml, {}, clock_source{&fake_time::read, &ft});
    std::atomic<int> status{0};
    const auto t0 = std::chrono::steady_clock::now();
    std::thread client([&] { status = request(h.port(), get("x", "/sleep/800")).status; });
    for (int i = 0; i < 400 && v1.requests() == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(v1.requests(), 1); // the backend holds the request (800 ms of real time)
    ft.now += 1'900'000'000;     // 1.9 s of reactor time: not yet
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    EXPECT_EQ(status.load(), 0);
    ft.now += 200'000'000; // past 2 s: 504 at once, long before the backend answers
    client.join();
    EXPECT_EQ(status.load(), 504);
    EXPECT_LT(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count(),
        700);
}

TEST(L7Engine, DnsNamedEndpointsResolveOffTheReactor)
{
    backend v1("v1");
    const std::string yaml = std::string(gateway_yaml) + R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.test]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - address: localhost
    ports: {http: )" + std::to_string(v1.port()) +
                             R"(}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: ext.test}}]
)";
    harness h(yaml);
    // The first request waits for the name; the next ones use the cached address.
    for (int i = 0; i < 3; ++i) {
        const response r = request(h.port(), get("x", "/dns"));
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(backend_of(r), "v1");
    }
    // (A name that does not resolve is tested end to end, with the namespace's resolver
    // pointed at loopback: a unit test must not query the machine's DNS.)
}

} // namespace
} // namespace sluice::l7
