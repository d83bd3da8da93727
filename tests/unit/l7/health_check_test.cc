// Active health checks (lib/l7/health_check.hh) on a fake clock: a reactor the test drives
// by hand, real loopback servers whose /healthz answer the test sets, and the thresholds,
// the immediate 503, timeouts and intervals checked without sleeping through them.

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "sluice/l7/health_check.hh"
#include "sluice/l7/reactor.hh"

#include "engine_harness.hh"

namespace sluice::l7 {
namespace {

using namespace sluice::l7::testing;

/// A health endpoint: answers each connection's request with `status` (0: never answers).
class health_server {
public:
    health_server()
    {
        _fd = listen_loopback(_port);
        _thread = std::thread([this] { loop(); });
    }
    ~health_server()
    {
        _stop = true;
        shutdown(_fd, SHUT_RDWR);
        close(_fd);
        _thread.join();
        for (int c : _held) {
            close(c);
        }
    }
    uint16_t port() const { return _port; }
    std::atomic<int> status{200};
    std::atomic<int> requests{0};

private:
    void loop()
    {
        while (!_stop) {
            const int c = accept(_fd, nullptr, nullptr);
            if (c < 0) {
                continue;
            }
            timeval tv{2, 0};
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            char buf[4096];
            std::string req;
            while (req.find("\r\n\r\n") == std::string::npos) {
                const ssize_t n = recv(c, buf, sizeof(buf), 0);
                if (n <= 0) {
                    break;
                }
                req.append(buf, static_cast<size_t>(n));
            }
            ++requests;
            const int st = status.load();
            if (st == 0) {
                _held.push_back(c); // hang: never answer
                continue;
            }
            const std::string r =
                "HTTP/1.1 " + std::to_string(st) + " X\r\nContent-Length: 0\r\n\r\n";
            send_all(c, r);
            close(c);
        }
    }
    int _fd = -1;
    uint16_t _port = 0;
    std::atomic<bool> _stop{false};
    std::vector<int> _held;
    std::thread _thread;
};

snapshot::snapshot one_cluster(uint16_t port, snapshot::health_check_spec spec)
{
    snapshot::snapshot s;
    snapshot::cluster c;
    c.name = "outbound|80||svc.test";
    c.host = "svc.test";
    snapshot::endpoint e;
    e.id = 42;
    e.address = "127.0.0.1";
    e.port = port;
    c.endpoints.push_back(e);
    c.health_check = spec;
    s.clusters.push_back(std::move(c));
    return s;
}

/// The test's reactor and fake clock; run() polls until `done` or a bound.
struct rig {
    fake_time ft;
    std::unique_ptr<reactor> r = make();
    std::unique_ptr<reactor> make()
    {
        auto c = reactor::create({&fake_time::read, &ft});
        return std::move(*c);
    }
    template <typename Pred>
    bool run(Pred done)
    {
        for (int i = 0; i < 500; ++i) {
            r->poll(2);
            if (done()) {
                return true;
            }
        }
        return false;
    }
    void advance(nanos d)
    {
        ft.now += d;
        r->poll(0); // timers due now fire
    }
};

snapshot::health_check_spec http_spec()
{
    snapshot::health_check_spec h;
    h.kind = snapshot::health_check_spec::kind_t::http;
    h.path = "/healthz";
    h.interval = std::chrono::seconds(1);
    h.timeout = std::chrono::milliseconds(500);
    h.unhealthy_threshold = 2;
    h.healthy_threshold = 2;
    return h;
}

TEST(ActiveHealthCheck, A503FailsAtOnceAndRecoveryNeedsTheHealthyThreshold)
{
    health_server srv;
    rig g;
    active_checker chk(*g.r);
    const auto snap = one_cluster(srv.port(), http_spec());
    chk.apply(snap);
    ASSERT_EQ(chk.probers(), 1U);
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 1; })); // the first probe runs at once
    EXPECT_TRUE(chk.failed().empty());
    const uint64_t v0 = chk.version();

    srv.status = 503;
    g.advance(900'000'000); // 0.9 s: the interval has not passed, no probe
    g.r->poll(5);
    EXPECT_EQ(chk.probes(), 1U);
    g.advance(100'000'000); // 1 s: the next probe; a 503 ejects immediately
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 2; }));
    EXPECT_EQ(chk.failed(), std::vector<uint64_t>{42});
    EXPECT_GT(chk.version(), v0);

    srv.status = 200;
    g.advance(1'000'000'000);
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 3; }));
    EXPECT_EQ(chk.failed(), std::vector<uint64_t>{42}); // one success of the two needed
    g.advance(1'000'000'000);
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 4; }));
    EXPECT_TRUE(chk.failed().empty());
}

TEST(ActiveHealthCheck, OtherFailuresCountToTheUnhealthyThreshold)
{
    health_server srv;
    rig g;
    active_checker chk(*g.r);
    chk.apply(one_cluster(srv.port(), http_spec()));
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 1; }));
    srv.status = 500; // a failure, not the immediate kind
    g.advance(1'000'000'000);
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 2; }));
    EXPECT_TRUE(chk.failed().empty()); // one failure of two
    g.advance(1'000'000'000);
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 3; }));
    EXPECT_EQ(chk.failed(), std::vector<uint64_t>{42});
}

TEST(ActiveHealthCheck, ATimeoutIsAFailure)
{
    health_server srv;
    srv.status = 0; // accepts, never answers
    rig g;
    active_checker chk(*g.r);
    auto spec = http_spec();
    spec.unhealthy_threshold = 1;
    chk.apply(one_cluster(srv.port(), spec));
    ASSERT_TRUE(g.run([&] { return srv.requests.load() >= 1; }));
    EXPECT_EQ(chk.probes(), 0U); // waiting for the answer
    g.advance(499'000'000);      // just under the 500 ms timeout
    EXPECT_EQ(chk.probes(), 0U);
    g.advance(2'000'000); // past it
    EXPECT_EQ(chk.probes(), 1U);
    EXPECT_EQ(chk.failed(), std::vector<uint64_t>{42});
}

TEST(ActiveHealthCheck, TcpChecksConnectAndStateSurvivesAReapply)
{
    uint16_t closed_port = 0;
    const int lfd = listen_loopback(closed_port);
    close(lfd); // nothing listens there: connections are refused
    rig g;
    active_checker chk(*g.r);
    snapshot::health_check_spec tcp;
    tcp.kind = snapshot::health_check_spec::kind_t::tcp;
    tcp.interval = std::chrono::seconds(1);
    tcp.unhealthy_threshold = 1;
    const auto snap = one_cluster(closed_port, tcp);
    chk.apply(snap);
    ASSERT_TRUE(g.run([&] { return chk.probes() >= 1; }));
    EXPECT_EQ(chk.failed(), std::vector<uint64_t>{42});
    // The same endpoint and spec in a new config: the prober (and its state) stays.
    chk.apply(snap);
    EXPECT_EQ(chk.failed(), std::vector<uint64_t>{42});
    // A config without the check: the endpoint is no longer failing.
    snapshot::snapshot none = one_cluster(closed_port, tcp);
    none.clusters[0].health_check.reset();
    chk.apply(none);
    EXPECT_EQ(chk.probers(), 0U);
    EXPECT_TRUE(chk.failed().empty());
}

} // namespace
} // namespace sluice::l7
