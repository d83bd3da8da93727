#include "sluice/l7/health_check.hh"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "sluice/l7/http1.hh"
#include "sluice/net/addr.hh"

namespace sluice::l7 {

namespace {

nanos to_nanos(snapshot::duration d)
{
    return d.count() <= 0 ? 0 : static_cast<nanos>(d.count());
}

std::string spec_key(uint64_t id, const snapshot::health_check_spec& h, const std::string& host)
{
    return std::to_string(id) + "|" +
           (h.kind == snapshot::health_check_spec::kind_t::http ? "http" : "tcp") + "|" + h.path +
           "|" + host + "|" + std::to_string(h.interval.count()) + "|" +
           std::to_string(h.timeout.count()) + "|" + std::to_string(h.unhealthy_threshold) + "|" +
           std::to_string(h.healthy_threshold);
}

} // namespace

/// One endpoint's probe loop.
class prober final : public io_handler {
public:
    prober(active_checker& owner, uint64_t id, const sockaddr_storage& addr, socklen_t len,
           snapshot::health_check_spec spec, std::string host)
        : _owner(owner), _id(id), _addr(addr), _len(len), _spec(std::move(spec)),
          _host(std::move(host))
    {
        _interval_timer.set([](timer&, void* c) { static_cast<prober*>(c)->start(); }, this);
        _timeout_timer.set([](timer&, void* c) { static_cast<prober*>(c)->finish(false, false); },
                           this);
        _request = "GET " + _spec.path + " HTTP/1.1\r\nHost: " + _host +
                   "\r\nUser-Agent: sluice-health-check\r\nConnection: close\r\n\r\n";
    }
    ~prober() { stop(); }

    void start() noexcept
    {
        _fd = socket(_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (_fd < 0) {
            finish(false, false);
            return;
        }
        if (connect(_fd, reinterpret_cast<const sockaddr*>(&_addr), _len) != 0 &&
            errno != EINPROGRESS) {
            finish(false, false);
            return;
        }
        _connecting = true;
        _sent = 0;
        _in.clear();
        _parser.reset();
        if (!_owner._r.add(_fd, this, EPOLLIN | EPOLLOUT | EPOLLRDHUP).ok()) {
            finish(false, false);
            return;
        }
        _owner._r.arm(_timeout_timer, to_nanos(_spec.timeout));
    }

    void stop() noexcept
    {
        _owner._r.cancel(_interval_timer);
        _owner._r.cancel(_timeout_timer);
        close_fd();
    }

    [[nodiscard]] bool healthy() const noexcept { return _healthy; }
    [[nodiscard]] uint64_t id() const noexcept { return _id; }

    void on_io(uint32_t events) noexcept override
    {
        if (_fd < 0) {
            return;
        }
        if (_connecting) {
            int soerr = 0;
            socklen_t l = sizeof(soerr);
            getsockopt(_fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
            if (soerr != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
                finish(false, false);
                return;
            }
            if ((events & EPOLLOUT) == 0) {
                return;
            }
            _connecting = false;
            if (_spec.kind == snapshot::health_check_spec::kind_t::tcp) {
                finish(true, false);
                return;
            }
        }
        while (_sent < _request.size()) {
            const ssize_t n =
                send(_fd, _request.data() + _sent, _request.size() - _sent, MSG_NOSIGNAL);
            if (n > 0) {
                _sent += static_cast<size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                return;
            }
            finish(false, false);
            return;
        }
        char buf[4096];
        for (;;) {
            const ssize_t n = recv(_fd, buf, sizeof(buf), 0);
            if (n > 0) {
                // Only the status line and head matter; keep at most 16 KiB.
                if (_in.size() + static_cast<size_t>(n) > 16384) {
                    finish(false, false);
                    return;
                }
                _in.append(buf, static_cast<size_t>(n));
                const http1_event ev = _parser.parse(_in);
                if (ev.kind == http1_event_kind::headers) {
                    const uint16_t st = _parser.message().status;
                    if (_parser.message().informational) {
                        _in.erase(0, ev.consumed);
                        continue;
                    }
                    finish(st >= 200 && st < 300, st == 503);
                    return;
                }
                if (ev.kind == http1_event_kind::error) {
                    finish(false, false);
                    return;
                }
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                return;
            }
            finish(false, false); // closed before an answer
            return;
        }
    }

    /// One probe ended: update the counters, schedule the next.
    void finish(bool ok, bool immediate) noexcept
    {
        _owner._r.cancel(_timeout_timer);
        close_fd();
        _owner._probes.fetch_add(1, std::memory_order_relaxed);
        const bool was = _healthy;
        if (ok) {
            _fails = 0;
            if (!_healthy && ++_successes >= std::max<uint32_t>(1, _spec.healthy_threshold)) {
                _healthy = true;
            }
        } else {
            _successes = 0;
            if (_healthy &&
                (immediate || ++_fails >= std::max<uint32_t>(1, _spec.unhealthy_threshold))) {
                _healthy = false;
            }
        }
        if (was != _healthy) {
            _owner.changed();
        }
        _owner._r.arm(_interval_timer, to_nanos(_spec.interval));
    }

private:
    void close_fd() noexcept
    {
        if (_fd >= 0) {
            _owner._r.remove(_fd);
            close(_fd);
            _fd = -1;
        }
        _connecting = false;
    }

    active_checker& _owner;
    uint64_t _id;
    sockaddr_storage _addr;
    socklen_t _len;
    snapshot::health_check_spec _spec;
    std::string _host;
    std::string _request;
    std::string _in;
    http1_parser _parser{http1_parser::kind::response};
    timer _interval_timer;
    timer _timeout_timer;
    int _fd = -1;
    bool _connecting = false;
    bool _healthy = true;
    uint32_t _fails = 0;
    uint32_t _successes = 0;
    size_t _sent = 0;
};

active_checker::active_checker(reactor& r) : _r(r) {}

active_checker::~active_checker()
{
    stop();
}

void active_checker::stop() noexcept
{
    for (auto& [k, p] : _probers) {
        p->stop();
    }
    _probers.clear();
}

void active_checker::apply(const snapshot::snapshot& snap)
{
    std::map<std::string, std::unique_ptr<prober>> next;
    for (const snapshot::cluster& c : snap.clusters) {
        if (!c.health_check || c.missing) {
            continue;
        }
        for (const snapshot::endpoint& e : c.endpoints) {
            auto a = net::ip_addr::parse(e.address);
            if (!a.ok() || e.port == 0 || e.port > 65535) {
                continue; // DNS-named endpoints are not probed (TODO(l7): resolver)
            }
            std::string key = spec_key(e.id, *c.health_check, c.host);
            if (next.count(key) != 0) {
                continue;
            }
            if (auto it = _probers.find(key); it != _probers.end()) {
                next.emplace(key, std::move(it->second));
                _probers.erase(it);
                continue;
            }
            sockaddr_storage ss{};
            const socklen_t len = net::to_sockaddr(*a, static_cast<uint16_t>(e.port), ss);
            auto p = std::make_unique<prober>(*this, e.id, ss, len, *c.health_check, c.host);
            prober* raw = p.get();
            next.emplace(std::move(key), std::move(p));
            raw->start();
        }
    }
    for (auto& [k, p] : _probers) {
        p->stop();
    }
    _probers = std::move(next);
    changed(); // dropped probers may have been failing
}

void active_checker::changed()
{
    std::vector<uint64_t> f;
    for (const auto& [k, p] : _probers) {
        if (!p->healthy()) {
            f.push_back(p->id());
        }
    }
    std::sort(f.begin(), f.end());
    f.erase(std::unique(f.begin(), f.end()), f.end());
    std::lock_guard<std::mutex> g(_mu);
    if (f != _failed) {
        _failed = std::move(f);
        // Release: a reader that sees the new version finds the new set under the mutex.
        _version.fetch_add(1, std::memory_order_release);
    }
}

std::vector<uint64_t> active_checker::failed() const
{
    std::lock_guard<std::mutex> g(_mu);
    return _failed;
}

} // namespace sluice::l7
