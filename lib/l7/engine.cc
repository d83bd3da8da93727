#include "sluice/l7/engine.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <netdb.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <condition_variable>
#include <deque>
#include <map>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "sluice/base/hash.hh"
#include "sluice/base/log.hh"
#include "sluice/l7/http1.hh"
#include "sluice/l7/health_check.hh"
#include "sluice/l7/lb.hh"
#include "sluice/l7/tls.hh"
#include "sluice/snapshot/host_match.hh"
#include "sluice/snapshot/route_match.hh"

SLUICE_LOG_TYPE_DEFINE(l7);
SLUICE_LOG_TYPE_DECLARE(l7);

namespace sluice::l7 {

namespace {

using namespace std::string_view_literals;
using snapshot::no_index;

constexpr size_t read_chunk = 16 * 1024;
/// How long a closing connection may take to accept its last bytes.
constexpr nanos drain_timeout = 10ULL * 1'000'000'000ULL;
/// Mirror copies in flight at once; more are not sent (counted as failed).
constexpr size_t max_mirrors_in_flight = 1024;
/// A read asks for at least this much room (the buffer grows only when it lacks it).
constexpr size_t min_read = 2048;
/// A request head may be up to 8 KiB of line plus 60 KiB of headers (http1_limits).
constexpr size_t max_in_buffer = 96 * 1024;
/// Pause the producer when this much waits to be written to a socket.
constexpr size_t high_watermark = 256 * 1024;
/// Requests whose head and body fit in this many bytes can be sent again (retries).
constexpr size_t replay_limit = 64 * 1024;

/// A byte buffer that keeps its capacity (pooled objects reuse it: no allocation per
/// request in steady state).
struct buffer {
    std::vector<char> data;
    size_t start = 0;
    size_t end = 0;

    [[nodiscard]] size_t size() const noexcept { return end - start; }
    [[nodiscard]] bool empty() const noexcept { return end == start; }
    [[nodiscard]] std::string_view view() const noexcept
    {
        return {data.data() + start, end - start};
    }
    void clear() noexcept { start = end = 0; }
    void consume(size_t n) noexcept
    {
        start += n;
        if (start == end) {
            start = end = 0;
        }
    }
    /// Makes room for `n` more bytes at the end (compacting first, then growing).
    char* reserve(size_t n)
    {
        if (data.size() - end >= n) {
            return data.data() + end;
        }
        if (start > 0) {
            std::memmove(data.data(), data.data() + start, end - start);
            end -= start;
            start = 0;
        }
        if (data.size() - end < n) {
            data.resize(std::max(data.size() * 2, end + n));
        }
        return data.data() + end;
    }
    void commit(size_t n) noexcept { end += n; }
    void append(std::string_view s)
    {
        char* p = reserve(s.size());
        std::memcpy(p, s.data(), s.size());
        end += s.size();
    }
    void append_uint(uint64_t v, int base = 10)
    {
        char tmp[24];
        auto r = std::to_chars(tmp, tmp + sizeof(tmp), v, base);
        append({tmp, static_cast<size_t>(r.ptr - tmp)});
    }
    void header(std::string_view name, std::string_view value)
    {
        char* p = reserve(name.size() + value.size() + 4);
        std::memcpy(p, name.data(), name.size());
        p += name.size();
        *p++ = ':';
        *p++ = ' ';
        std::memcpy(p, value.data(), value.size());
        p += value.size();
        *p++ = '\r';
        *p++ = '\n';
        end += name.size() + value.size() + 4;
    }
};

uint64_t splitmix(uint64_t& s) noexcept
{
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

bool set_nonblock_opts(int fd) noexcept
{
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return true;
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) and the framing fields the proxy rewrites.
bool hop_by_hop(std::string_view name) noexcept
{
    switch (name.size()) {
    case 2:
        return iequals(name, "te"sv);
    case 7:
        return iequals(name, "trailer"sv) || iequals(name, "upgrade"sv);
    case 10:
        return iequals(name, "connection"sv) || iequals(name, "keep-alive"sv);
    case 14:
        return iequals(name, "content-length"sv);
    case 16:
        return iequals(name, "proxy-connection"sv);
    case 17:
        return iequals(name, "transfer-encoding"sv);
    default:
        return false;
    }
}

/// True when `name` appears as a token of any Connection header (fields it names are
/// hop-by-hop too).
bool named_by_connection(const http1_message& m, std::string_view name) noexcept
{
    for (const http1_header& h : m.headers) {
        if (!iequals(h.name, "connection"sv)) {
            continue;
        }
        std::string_view v = h.value;
        while (!v.empty()) {
            const size_t comma = v.find(',');
            std::string_view tok = v.substr(0, comma);
            while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) {
                tok.remove_prefix(1);
            }
            while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) {
                tok.remove_suffix(1);
            }
            if (iequals(tok, name)) {
                return true;
            }
            if (comma == std::string_view::npos) {
                break;
            }
            v.remove_prefix(comma + 1);
        }
    }
    return false;
}

bool in_list(const std::vector<std::string>& names, std::string_view name) noexcept
{
    for (const std::string& n : names) {
        if (iequals(n, name)) {
            return true;
        }
    }
    return false;
}

bool in_set(const std::vector<std::pair<std::string, std::string>>& ops,
            std::string_view name) noexcept
{
    for (const auto& [n, v] : ops) {
        if (iequals(n, name)) {
            return true;
        }
    }
    return false;
}

/// Value of cookie `name` in the request's Cookie headers.
std::optional<std::string_view> cookie_value(const http1_message& m, std::string_view name) noexcept
{
    for (const http1_header& h : m.headers) {
        if (!iequals(h.name, "cookie"sv)) {
            continue;
        }
        std::string_view v = h.value;
        while (!v.empty()) {
            const size_t semi = v.find(';');
            std::string_view kv = v.substr(0, semi);
            while (!kv.empty() && kv.front() == ' ') {
                kv.remove_prefix(1);
            }
            const size_t eq = kv.find('=');
            if (eq != std::string_view::npos && kv.substr(0, eq) == name) {
                std::string_view val = kv.substr(eq + 1);
                if (val.size() >= 2 && val.front() == '"' && val.back() == '"') {
                    val = val.substr(1, val.size() - 2);
                }
                return val;
            }
            if (semi == std::string_view::npos) {
                break;
            }
            v.remove_prefix(semi + 1);
        }
    }
    return std::nullopt;
}

/// recv() over a plain or TLS socket: > 0 bytes, 0 at the peer's end, -1 with errno
/// (EAGAIN: the next readiness event retries; anything else: the connection failed).
ssize_t io_recv(int fd, tls_stream& t, char* p, size_t n) noexcept
{
    if (!t.valid()) {
        return recv(fd, p, n, 0);
    }
    const tls_io r = t.read({p, n});
    if (r.bytes > 0) {
        return static_cast<ssize_t>(r.bytes);
    }
    if (r.closed) {
        return 0;
    }
    errno = r.failed() ? ECONNRESET : EAGAIN;
    return -1;
}

/// send() over a plain or TLS socket; same results as io_recv. A TLS write that wants the
/// socket is retried with the same bytes (the caller keeps them buffered).
ssize_t io_send(int fd, tls_stream& t, const char* p, size_t n) noexcept
{
    if (!t.valid()) {
        return send(fd, p, n, MSG_NOSIGNAL);
    }
    const tls_io r = t.write({p, n});
    if (r.bytes > 0) {
        return static_cast<ssize_t>(r.bytes);
    }
    errno = r.failed() || r.closed ? EPIPE : EAGAIN;
    return -1;
}

} // namespace

nanos retry_backoff(nanos base, uint32_t retry, uint64_t random) noexcept
{
    if (base == 0) {
        return 0;
    }
    const uint32_t n = retry == 0 ? 0 : retry - 1;
    const nanos cap = std::min(base << std::min<uint32_t>(n, 10), base * 10);
    return random % (cap + 1);
}

// ------------------------------------------------------------------------ config_slot

void config_slot::put(std::shared_ptr<const engine_config> c)
{
    std::lock_guard<std::mutex> g(_mu);
    _pending = std::move(c);
    _changed.store(true, std::memory_order_release);
}

std::shared_ptr<const engine_config> config_slot::take()
{
    // Acquire pairs with put()'s release: a true flag means _pending is the new config.
    if (!_changed.load(std::memory_order_acquire)) {
        return nullptr;
    }
    std::lock_guard<std::mutex> g(_mu);
    _changed.store(false, std::memory_order_relaxed);
    return std::move(_pending);
}

// ------------------------------------------------------------------------ health_sink

void health_sink::push(const health_report& r)
{
    bool was_empty = false;
    {
        std::lock_guard<std::mutex> g(_mu);
        if (_q.size() >= _capacity) {
            _dropped.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        was_empty = _q.empty();
        _q.push_back(r);
    }
    if (was_empty && _notify) {
        _notify();
    }
}

void health_sink::drain(std::vector<health_report>& out)
{
    out.clear();
    std::lock_guard<std::mutex> g(_mu);
    out.swap(_q);
}

// ------------------------------------------------------------------------ runtime objects

struct up_conn;
struct down_conn;

/// One backend address: its idle keep-alive connections. Shared by every cluster (and
/// config) that names the address; lives as long as the engine.
struct host_rt {
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    bool usable = false; ///< an address is known (an IP literal, or a resolved DNS name)
    std::string name;    ///< "ip:port" (or "dns-name:port") for logs
    std::vector<up_conn*> idle;
    // DNS-named endpoints (ServiceEntry resolution DNS): resolved off the reactor thread,
    // refreshed when used after dns_refresh; requests wait for the first answer.
    bool dns = false;
    bool resolving = false;
    std::string dns_name;
    uint16_t port = 0;
    nanos resolved_at = 0;
    std::vector<down_conn*> waiting;
};

/// How long a resolved DNS endpoint is used before it is resolved again (Envoy's
/// dns_refresh_rate is 5 s; a name is re-resolved only when traffic uses it).
constexpr nanos dns_refresh = 30ULL * 1'000'000'000ULL;

/// getaddrinfo() on a thread of its own (it blocks); answers come back through an eventfd
/// the reactor watches. IPv4 answers are preferred (the first one is used).
class dns_resolver final : public io_handler {
public:
    struct answer {
        std::string name;
        sockaddr_storage addr{};
        socklen_t len = 0; ///< 0: the name did not resolve
    };
    using deliver_fn = void (*)(void* ctx, const answer& a);

    dns_resolver(reactor& r, deliver_fn fn, void* ctx) : _r(r), _fn(fn), _ctx(ctx) {}
    ~dns_resolver() { stop(); }

    void request(const std::string& name)
    {
        if (_efd < 0) {
            _efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (_efd < 0 || !_r.add(_efd, this, EPOLLIN).ok()) {
                answer a;
                a.name = name;
                _fn(_ctx, a);
                return;
            }
            _thread = std::thread([this] { run(); });
        }
        {
            std::lock_guard<std::mutex> g(_mu);
            _todo.push_back(name);
        }
        _cv.notify_one();
    }
    void stop()
    {
        if (_efd < 0) {
            return;
        }
        {
            std::lock_guard<std::mutex> g(_mu);
            _stop = true;
        }
        _cv.notify_one();
        _thread.join();
        _r.remove(_efd);
        close(_efd);
        _efd = -1;
    }
    void on_io(uint32_t /*events*/) noexcept override
    {
        uint64_t n = 0;
        (void)!read(_efd, &n, sizeof(n));
        std::vector<answer> done;
        {
            std::lock_guard<std::mutex> g(_mu);
            done.swap(_done);
        }
        for (const answer& a : done) {
            _fn(_ctx, a);
        }
    }

private:
    void run()
    {
        for (;;) {
            std::string name;
            {
                std::unique_lock<std::mutex> g(_mu);
                _cv.wait(g, [this] { return _stop || !_todo.empty(); });
                if (_stop) {
                    return;
                }
                name = std::move(_todo.front());
                _todo.pop_front();
            }
            answer a;
            a.name = name;
            addrinfo hints{};
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            addrinfo* res = nullptr;
            if (getaddrinfo(name.c_str(), nullptr, &hints, &res) == 0) {
                const addrinfo* pick = nullptr;
                for (const addrinfo* i = res; i != nullptr; i = i->ai_next) {
                    if (pick == nullptr ||
                        (i->ai_family == AF_INET && pick->ai_family != AF_INET)) {
                        pick = i;
                    }
                }
                if (pick != nullptr && pick->ai_addrlen <= sizeof(a.addr)) {
                    std::memcpy(&a.addr, pick->ai_addr, pick->ai_addrlen);
                    a.len = pick->ai_addrlen;
                }
                freeaddrinfo(res);
            }
            {
                std::lock_guard<std::mutex> g(_mu);
                _done.push_back(std::move(a));
            }
            const uint64_t one = 1;
            (void)!write(_efd, &one, sizeof(one));
        }
    }

    reactor& _r;
    deliver_fn _fn;
    void* _ctx;
    int _efd = -1;
    std::thread _thread;
    std::mutex _mu;
    std::condition_variable _cv;
    std::deque<std::string> _todo; // guarded by _mu
    std::vector<answer> _done;     // guarded by _mu
    bool _stop = false;            // guarded by _mu
};

/// One endpoint's gauges in one cluster (Envoy's per-host upstream_cx_active and
/// upstream_rq_active), for `GET /v1/endpoints`. Written by the engine thread alone, read by
/// any thread (engine::endpoint_stats).
struct endpoint_gauges {
    std::atomic<uint32_t> cx_active{0}; // upstream connections open (or opening)
    std::atomic<uint32_t> rq_active{0}; // requests assigned to it (as cluster_rt::active)
};

/// `g += delta` by its only writer, the engine thread: a relaxed load and store, not a
/// read-modify-write (no locked instruction on the request path); readers see either value.
inline void gauge_add(std::atomic<uint32_t>& g, int32_t delta) noexcept
{
    g.store(g.load(std::memory_order_relaxed) + static_cast<uint32_t>(delta),
            std::memory_order_relaxed);
}

/// What a cluster keeps across configs (by name): its circuit-breaker counters, the
/// requests waiting for a connection, and its keep-alive pools (Envoy's pools are per
/// cluster and host). Engine thread only, except the atomics, which metrics read.
struct cluster_state {
    std::string name;
    // Limits from the current config (DestinationRule connectionPool; Istio's defaults are
    // effectively unlimited).
    uint32_t max_connections = UINT32_MAX;
    uint32_t max_pending = UINT32_MAX;
    uint32_t max_requests = UINT32_MAX;
    uint32_t max_retries = UINT32_MAX;
    uint32_t cx = 0;                   // upstream connections open (or opening)
    std::atomic<uint32_t> cx_gauge{0}; // cx, for metrics
    uint32_t rq_active = 0;            // requests between routing and their end
    uint32_t retries_active = 0;       // requests with a retry in progress
    std::deque<down_conn*> pending;
    std::map<host_rt*, std::vector<up_conn*>> idle;
    std::atomic<uint64_t> rq_total{0};
    std::atomic<uint64_t> rq_pending_overflow{0};
    std::atomic<uint64_t> rq_overflow{0};
    std::atomic<uint64_t> retry_overflow{0};
    std::atomic<uint64_t> cx_total{0};
    /// Per endpoint id (snapshot::endpoint::id), for every endpoint a config gave the
    /// cluster. Entries are made by apply() under engine_impl::_clusters_mu (readers hold it
    /// too) and never removed: configs still running hold pointers to them, and an id that
    /// comes back finds its gauges. Node-based: an entry never moves.
    std::map<uint64_t, endpoint_gauges> endpoints;
};

/// A cluster under one config: its balancer, outstanding requests per endpoint and hosts.
struct cluster_rt {
    cluster_state* st = nullptr;
    std::vector<std::vector<up_conn*>*> idle; ///< per endpoint: its pool in `st`
    const snapshot::cluster* c = nullptr;
    cluster_lb lb;
    std::vector<uint32_t> active;
    std::vector<endpoint_gauges*> gauges; ///< per endpoint: its gauges in `st`
    std::vector<host_rt*> hosts;
    /// DestinationRule tls (origination); null: plain text.
    std::shared_ptr<const client_tls_context> tls;
    bool tls_error = false; ///< the policy's TLS could not be set up: connects fail (503 UF)
    bool outlier = false;   ///< outlierDetection: report every outcome to the health sink
    uint32_t index = 0;     ///< in the snapshot's clusters
    std::string sni;        ///< the SNI to send: tls.sni, else the service host
    nanos connect_timeout = 10ULL * 1'000'000'000ULL;
    nanos idle_timeout = 3600ULL * 1'000'000'000ULL;
    uint32_t max_requests_per_connection = 0;
};

/// Retry conditions of one route, parsed once per config.
struct retry_rules {
    uint32_t attempts = 0;
    bool connect_failure = false;
    bool reset = false;
    bool on_5xx = false;
    bool gateway_error = false;
    bool retriable_4xx = false;
    bool refused_stream = false;
    bool status_codes = false;
    std::vector<uint32_t> codes;
    nanos per_try_timeout = 0;
    nanos backoff = 25 * ns_per_ms;
    bool remote_localities = false; // retryRemoteLocalities
};

/// A config as the engine runs it. Requests hold it by reference count.
struct config_rt {
    std::shared_ptr<const engine_config> cfg;
    std::vector<cluster_rt> clusters; ///< parallel to snap->clusters
    std::unordered_map<const snapshot::route_action*, retry_rules> retries;
};

retry_rules parse_retry(const snapshot::retry_policy& p)
{
    retry_rules r;
    r.attempts = p.attempts;
    std::string_view v = p.retry_on;
    while (!v.empty()) {
        const size_t comma = v.find(',');
        std::string_view t = v.substr(0, comma);
        while (!t.empty() && t.front() == ' ') {
            t.remove_prefix(1);
        }
        while (!t.empty() && t.back() == ' ') {
            t.remove_suffix(1);
        }
        if (t == "connect-failure") {
            r.connect_failure = true;
        } else if (t == "reset") {
            r.reset = true;
        } else if (t == "5xx") {
            r.on_5xx = true;
        } else if (t == "gateway-error") {
            r.gateway_error = true;
        } else if (t == "retriable-4xx") {
            r.retriable_4xx = true;
        } else if (t == "refused-stream") {
            r.refused_stream = true;
        } else if (t == "retriable-status-codes") {
            r.status_codes = true;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        v.remove_prefix(comma + 1);
    }
    r.codes = p.retriable_status_codes;
    r.status_codes = r.status_codes || !r.codes.empty(); // bare codes imply the token
    if (p.per_try_timeout) {
        r.per_try_timeout = static_cast<nanos>(p.per_try_timeout->count());
    }
    r.backoff = static_cast<nanos>(p.backoff.count());
    r.remote_localities = p.retry_remote_localities;
    return r;
}

/// What one listener serves, refreshed on every apply.
struct listener_info {
    snapshot::listener_kind kind = snapshot::listener_kind::http;
    uint32_t port = 0;
    bool vip = false;
    /// (gateway, host patterns) per server, in server order; "mesh" for a VIP.
    std::vector<std::pair<std::string, std::vector<std::string>>> servers;
    /// The gateway when one serves the whole listener (the common case).
    std::string single_gateway;
    /// TLS termination (HTTPS, or TLS servers in front of TCP routes); null: plain text.
    std::shared_ptr<const server_tls_context> tls;
};

class engine_impl;

struct listener_rt final : io_handler {
    engine_impl* eng = nullptr;
    int fd = -1;
    timer retry; // accept again after EMFILE
    std::string address;
    uint32_t port = 0;
    uint16_t bound = 0;
    std::shared_ptr<const listener_info> info;
    void on_io(uint32_t events) noexcept override;
};

/// Response flags (Envoy's short codes), one bit each.
enum rflag : uint32_t {
    rf_nr = 1U << 0,  // no route
    rf_uh = 1U << 1,  // no healthy upstream
    rf_uf = 1U << 2,  // upstream connection failure
    rf_uc = 1U << 3,  // upstream connection termination
    rf_ut = 1U << 4,  // upstream request timeout
    rf_urx = 1U << 5, // retries exhausted
    rf_nc = 1U << 6,  // no cluster
    rf_dc = 1U << 7,  // downstream connection termination
    rf_dpe = 1U << 8, // downstream protocol error
    rf_upe = 1U << 9, // upstream protocol error
    rf_uo = 1U << 10, // upstream overflow
    rf_di = 1U << 11, // delay injected
    rf_fi = 1U << 12, // fault injected
    rf_drl = 1U << 13,
};

struct stream {
    std::shared_ptr<config_rt> cfg; // keeps the snapshot alive while the request runs
    snapshot::decision dec;
    uint32_t listener_port = 0;
    cluster_rt* crt = nullptr;
    uint32_t ep = no_index;
    host_rt* host = nullptr;
    up_conn* up = nullptr;
    const snapshot::weighted_destination* dest = nullptr;
    const retry_rules* retry = nullptr;
    uint32_t attempts = 0;
    uint32_t tried[4] = {no_index, no_index, no_index, no_index};

    buffer req;          // upstream-bound bytes: head, then body
    size_t req_sent = 0; // bytes of req written to the current upstream connection
    bool req_replayable = true;
    bool req_done = false; // the downstream request is complete
    bool req_chunked = false;
    bool req_head_only = false; // HEAD
    bool upgrade = false;       // Upgrade or CONNECT requested
    bool tunnel = false;        // bytes now flow both ways unparsed
    bool local = false;         // answered by the appliance (no upstream)
    bool discard_body = false;
    bool resp_started = false;
    bool resp_done = false;
    bool resp_chunked = false; // re-chunking a close-delimited response
    bool close_after = false;  // close the downstream connection after this response
    bool active_counted = false;
    bool tcp_proxy = false; // a TCP/TLS route: the connection is one tunnel, no HTTP
    bool pending = false;   // waiting in the cluster's queue for a connection
    bool rq_counted = false;
    bool retry_counted = false;
    bool reused = false;        // the current attempt runs on a pooled connection
    bool dns_wait = false;      // waiting in s.host->waiting for the name to resolve
    bool stale_retried = false; // a stale pooled connection was replaced once
    uint16_t fault_abort = 0;   // after an injected delay: answer this status instead
    uint8_t nmirrors = 0;
    uint32_t mirrors[2] = {no_index, no_index}; // mirror clusters drawn for this request
    nanos fault_delay = 0;
    uint8_t version_minor = 1;
    uint16_t status = 0;
    uint32_t flags = 0;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    nanos start = 0;
    timer route_timer;
    timer retry_timer;
    timer try_timer;              // perTryTimeout of the current attempt
    uint32_t retries_allowed = 0; // the route's attempts, or x-envoy-max-retries (trusted)
    std::optional<uint64_t> hash;
    std::string set_cookie; // a generated hash cookie to set on the response

    // Request facts for the access log (capacity kept across requests).
    std::string method;
    std::string path;
    std::string authority;
    std::string xff;
    std::string user_agent;
    std::string request_id;
    std::string origin; // CORS: the request's Origin
    std::string start_time;
};

struct down_conn final : io_handler, deferred {
    engine_impl* eng = nullptr;
    int fd = -1;
    bool closed = false;
    bool closing = false; // close once `out` is written
    bool read_eof = false;
    bool read_blocked = false;
    bool hup = false; // the last event carried a hang-up: read until 0
    bool processing = false;
    bool trusted = false;
    std::shared_ptr<const listener_info> info;
    net::ip_addr peer;
    char peer_text[INET6_ADDRSTRLEN + 1] = {};
    bool https = false;
    bool handshaking = false;
    tls_stream tls;
    std::string_view sni_gateway; // HTTPS: the gateway of the server the SNI chose
    net::ip_addr local;           // TCP/TLS listeners: the address the client reached
    buffer in;
    buffer out;
    http1_parser parser{http1_parser::kind::request};
    stream st;
    bool has_stream = false;
    timer idle_timer;
    up_conn* tunnel_peer = nullptr;

    void on_io(uint32_t events) noexcept override;
    void on_deferred() noexcept override;
};

/// A fire-and-forget copy of a request to a mirror cluster: connect, send, read the answer
/// to its end and drop it. Nothing it does reaches the primary exchange.
struct mirror_conn final : io_handler, deferred {
    engine_impl* eng = nullptr;
    int fd = -1;
    bool closed = true;
    bool connecting = false;
    buffer out;
    buffer in;
    http1_parser parser{http1_parser::kind::response};
    timer deadline;

    void on_io(uint32_t events) noexcept override;
    void on_deferred() noexcept override;
};

struct up_conn final : io_handler, deferred {
    engine_impl* eng = nullptr;
    int fd = -1;
    host_rt* host = nullptr;
    cluster_state* cs = nullptr;           // the cluster whose pool and limits it counts in
    endpoint_gauges* gauges = nullptr;     // the endpoint it counts in (cx_active)
    std::vector<up_conn*>* pool = nullptr; // its idle list in `cs`
    down_conn* owner = nullptr;            // the downstream connection whose stream uses it
    bool closed = false;
    bool connecting = false;
    bool in_pool = false;
    bool read_blocked = false;
    bool hup = false; // the last event carried a hang-up: read until 0
    bool tunnel = false;
    bool handshaking = false;
    tls_stream tls;
    uint32_t requests = 0;
    buffer in;
    http1_parser parser{http1_parser::kind::response};
    timer connect_timer;
    timer idle_timer;

    void on_io(uint32_t events) noexcept override;
    void on_deferred() noexcept override;
};

// ------------------------------------------------------------------------ engine_impl

class engine_impl {
public:
    engine_impl(reactor& r, engine_settings s) : _r(r), _s(std::move(s)), _checker(r)
    {
        _rng = static_cast<uint64_t>(r.now()) ^ 0x5eed5eed5eedULL ^
               (static_cast<uint64_t>(getpid()) << 32);
        _log_timer.set(
            [](timer&, void* ctx) {
                auto* e = static_cast<engine_impl*>(ctx);
                e->flush_log();
                e->_r.arm(e->_log_timer, e->_s.access_log_flush);
            },
            this);
    }
    ~engine_impl() { shut_down(); }

    result<void> open_log();
    result<void> apply(std::shared_ptr<const engine_config> cfg);
    void shut_down() noexcept;
    uint16_t bound_port(uint32_t port) const noexcept
    {
        for (const auto& l : _listeners) {
            if (l->port == port) {
                return l->bound;
            }
        }
        return 0;
    }
    void flush_log() noexcept;

    // Listener and connections.
    void accept_ready(listener_rt& l) noexcept;
    void down_read(down_conn& d) noexcept;
    void down_process(down_conn& d) noexcept;
    void down_flush(down_conn& d) noexcept;
    void down_close(down_conn& d) noexcept;
    void down_write(down_conn& d, std::string_view s);
    stream& begin_stream(down_conn& d) noexcept;
    void on_request_head(down_conn& d) noexcept;
    void on_request_body(down_conn& d, std::string_view data) noexcept;
    void on_request_done(down_conn& d) noexcept;
    void local_reply(down_conn& d, uint16_t status, std::string_view body, uint32_t flags,
                     std::string_view location = {}, bool overloaded = false) noexcept;
    void direct_reply(down_conn& d, uint16_t status, std::string_view body) noexcept;
    void cors_preflight(down_conn& d, const snapshot::cors_action& c) noexcept;
    void finish_stream(down_conn& d) noexcept;
    void start_upstream(down_conn& d) noexcept;
    void upstream_failed(down_conn& d, uint32_t flag, bool connect_failure) noexcept;
    void schedule_retry(down_conn& d) noexcept;
    /// Whether the cluster's maxRetries leaves room for another retry of `s` (a stream
    /// already retrying holds its slot); counts the overflow when it does not.
    bool retry_budget(stream& s) noexcept
    {
        if (s.retry_counted || s.crt == nullptr ||
            s.crt->st->retries_active < s.crt->st->max_retries) {
            return true;
        }
        s.crt->st->retry_overflow.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    /// An independent draw that is true `percent` percent of the time (faults, mirrors).
    bool draw_percent(double percent) noexcept
    {
        return percent >= 100.0 ||
               (percent > 0.0 && static_cast<double>(rand() % 1000000) < percent * 10000.0);
    }
    bool pick_host(down_conn& d) noexcept;

    up_conn* connect_to(host_rt* h, const cluster_rt& c, endpoint_gauges* g) noexcept;
    /// The stream's endpoint counts it as an outstanding request (least-request balancing,
    /// and the endpoint's rq_active gauge) until uncount_active().
    void count_active(stream& s) noexcept
    {
        if (!s.active_counted && s.crt != nullptr && s.ep < s.crt->active.size()) {
            ++s.crt->active[s.ep];
            gauge_add(s.crt->gauges[s.ep]->rq_active, 1);
            s.active_counted = true;
        }
    }
    void uncount_active(stream& s) noexcept
    {
        if (s.active_counted && s.crt != nullptr && s.ep < s.crt->active.size()) {
            --s.crt->active[s.ep];
            gauge_add(s.crt->gauges[s.ep]->rq_active, -1);
        }
        s.active_counted = false;
    }
    void connect_for(down_conn& d) noexcept;
    void on_resolved(const dns_resolver::answer& a) noexcept;
    void dispatch_pending(cluster_state& cs) noexcept;
    void release_counts(stream& s) noexcept;
    void overflow(down_conn& d) noexcept;
    void up_ready(up_conn& u, down_conn& d) noexcept;
    void up_flush(up_conn& u) noexcept;
    void up_read(up_conn& u) noexcept;
    void up_process(up_conn& u, down_conn& d) noexcept;
    void up_close(up_conn& u) noexcept;
    void up_release(up_conn& u, down_conn& d, bool reusable) noexcept;
    void on_response_head(up_conn& u, down_conn& d) noexcept;
    void tunnel_pump(down_conn& d, up_conn& u) noexcept;
    bool down_handshake(down_conn& d) noexcept;
    void tcp_route(down_conn& d) noexcept;
    void start_tcp_upstream(down_conn& d, const snapshot::l4_route& route) noexcept;

    void log_request(const down_conn& d) noexcept;
    /// The wall-clock second for the access log, formatted once per second.
    std::string_view log_time() noexcept
    {
        const time_t t = std::time(nullptr);
        if (t != _log_sec) {
            _log_sec = t;
            struct tm tmv {};
            gmtime_r(&t, &tmv);
            _log_sec_len =
                std::strftime(_log_sec_text, sizeof(_log_sec_text), "%Y-%m-%dT%H:%M:%SZ", &tmv);
        }
        return {_log_sec_text, _log_sec_len};
    }
    void start_mirror(const stream& s, uint32_t cluster) noexcept;
    void mirror_close(mirror_conn& m) noexcept;
    void report(const stream& s, health::outcome o) noexcept
    {
        if (s.crt != nullptr && s.crt->outlier && s.ep < s.crt->c->endpoints.size()) {
            _s.health->push(
                {s.cfg->cfg->generation, s.crt->index, s.crt->c->endpoints[s.ep].id, o});
        }
    }
    uint64_t rand() noexcept { return splitmix(_rng); }
    void gen_request_id(std::string& out);
    bool trusted(const net::ip_addr& a) const noexcept
    {
        for (const net::prefix& p : _s.trusted_sources) {
            if (p.contains(a)) {
                return true;
            }
        }
        return false;
    }

    down_conn* alloc_down();
    up_conn* alloc_up();
    host_rt* host_for(const snapshot::endpoint& e);

    reactor& _r;
    engine_settings _s;
    engine_stats _stats;
    std::shared_ptr<config_rt> _cfg;
    std::vector<std::unique_ptr<listener_rt>> _listeners;
    std::map<std::string, std::unique_ptr<host_rt>, std::less<>> _hosts;
    std::map<std::string, std::unique_ptr<cluster_state>, std::less<>> _clusters;
    mutable std::mutex _clusters_mu; // guards _clusters' shape (metrics read it)
    std::vector<std::unique_ptr<down_conn>> _down_all;
    std::vector<down_conn*> _down_free;
    std::vector<std::unique_ptr<up_conn>> _up_all;
    std::vector<std::unique_ptr<mirror_conn>> _mirror_all;
    std::vector<mirror_conn*> _mirror_free;
    std::vector<up_conn*> _up_free;
    size_t _down_active = 0;
    size_t _up_active = 0;
    uint64_t _rng = 0;
    snapshot::regex_scratch _scratch;
    std::vector<snapshot::header> _hdrs; // route-match view of a request's headers
    buffer _head;                        // response heads being written
    int _log_fd = -1;
    time_t _log_sec = 0;
    char _log_sec_text[40] = {};
    size_t _log_sec_len = 0;
    bool _log_close = false;
    buffer _log;
    timer _log_timer;
    bool _down = false;
    active_checker _checker;
    dns_resolver _resolver{_r,
                           [](void* ctx, const dns_resolver::answer& a) {
                               static_cast<engine_impl*>(ctx)->on_resolved(a);
                           },
                           this};
};

// ------------------------------------------------------------------------ apply

namespace {

result<int> open_listener(const std::string& address, uint16_t port, bool freebind, uint16_t& bound)
{
    net::ip_addr a;
    if (address.empty()) {
        a.family = 6; // "::" dual stack
    } else if (auto p = net::ip_addr::parse(address); p.ok()) {
        a = *p;
    } else {
        return err("listener address " + address + " is not an IP address");
    }
    int fd = socket(a.is_v4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && address.empty()) {
        a.family = 4;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        return err(std::string("socket: ") + std::strerror(errno));
    }
    const int one = 1;
    const int zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    // A VIP listener and a Gateway server without `bind` may share a port: both sockets set
    // SO_REUSEPORT so the kernel lets them coexist and hands each connection to the most
    // specific one (the VIP's), which then routes with its own table.
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (freebind) {
        setsockopt(fd, a.is_v4() ? IPPROTO_IP : IPPROTO_IPV6,
                   a.is_v4() ? IP_FREEBIND : IPV6_FREEBIND, &one, sizeof(one));
    }
    sockaddr_storage ss{};
    const socklen_t len = net::to_sockaddr(a, port, ss);
    if (a.is_v6() && address.empty()) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 4096) != 0) {
        const int e = errno;
        close(fd);
        return err("bind " + (address.empty() ? std::string("*") : address) + ":" +
                   std::to_string(port) + ": " + std::strerror(e));
    }
    sockaddr_storage got{};
    socklen_t glen = sizeof(got);
    getsockname(fd, reinterpret_cast<sockaddr*>(&got), &glen);
    bound = ntohs(got.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&got)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&got)->sin6_port);
    return fd;
}

} // namespace

host_rt* engine_impl::host_for(const snapshot::endpoint& e)
{
    std::string key = e.address + "|" + std::to_string(e.port);
    auto it = _hosts.find(key);
    if (it != _hosts.end()) {
        return it->second.get();
    }
    auto h = std::make_unique<host_rt>();
    if (auto a = net::ip_addr::parse(e.address); a.ok()) {
        h->usable = true;
        h->addr_len = net::to_sockaddr(*a, static_cast<uint16_t>(e.port), h->addr);
        h->name = (a->is_v4() ? e.address : "[" + e.address + "]") + ":" + std::to_string(e.port);
    } else {
        // A DNS name (ServiceEntry resolution DNS): resolved when a request first needs it.
        h->dns = true;
        h->dns_name = e.address;
        h->port = static_cast<uint16_t>(e.port);
        h->name = e.address + ":" + std::to_string(e.port);
    }
    host_rt* raw = h.get();
    _hosts.emplace(std::move(key), std::move(h));
    return raw;
}

result<void> engine_impl::open_log()
{
    if (_s.access_log.empty()) {
        return ok();
    }
    if (_s.access_log == "-") {
        _log_fd = STDERR_FILENO;
    } else {
        _log_fd = open(_s.access_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (_log_fd < 0) {
            return err("access log " + _s.access_log + ": " + std::strerror(errno));
        }
        _log_close = true;
    }
    _log.data.resize(64 * 1024);
    _r.arm(_log_timer, _s.access_log_flush);
    return ok();
}

result<void> engine_impl::apply(std::shared_ptr<const engine_config> cfg)
{
    if (_down) {
        return ok();
    }
    if (!cfg || !cfg->snap) {
        return err("l7: no snapshot");
    }
    const snapshot::snapshot& snap = *cfg->snap;
    // The same snapshot with a new health table (an ejection, an active check): only the
    // balancers change; listeners, TLS contexts and probers stay as they are.
    const bool same_snap = _cfg && _cfg->cfg->snap == cfg->snap;
    auto rt = std::make_shared<config_rt>();
    rt->cfg = cfg;
    rt->clusters.resize(snap.clusters.size());
    std::vector<bool> unhealthy;
    for (size_t i = 0; i < snap.clusters.size(); ++i) {
        const snapshot::cluster& c = snap.clusters[i];
        cluster_rt& cr = rt->clusters[i];
        cr.c = &c;
        cr.index = static_cast<uint32_t>(i);
        cr.outlier = c.policy.outlier.has_value() && _s.health != nullptr;
        cr.active.assign(c.endpoints.size(), 0);
        cr.hosts.reserve(c.endpoints.size());
        unhealthy.assign(c.endpoints.size(), false);
        for (size_t k = 0; k < c.endpoints.size(); ++k) {
            cr.hosts.push_back(host_for(c.endpoints[k]));
            if (cfg->health &&
                cfg->health->lookup(c.name, c.endpoints[k].id) != health::reason::healthy) {
                unhealthy[k] = true;
            }
        }
        cr.connect_timeout = static_cast<nanos>(c.policy.tcp.connect_timeout.count());
        cr.idle_timeout = static_cast<nanos>(
            std::min(c.policy.http.idle_timeout, c.policy.tcp.idle_timeout).count());
        cr.max_requests_per_connection = c.policy.http.max_requests_per_connection;
        {
            std::lock_guard<std::mutex> g(_clusters_mu);
            auto& slot = _clusters[c.name];
            if (!slot) {
                slot = std::make_unique<cluster_state>();
                slot->name = c.name;
            }
            cr.st = slot.get();
            cr.gauges.reserve(c.endpoints.size());
            for (const snapshot::endpoint& e : c.endpoints) {
                cr.gauges.push_back(&slot->endpoints[e.id]);
            }
        }
        cr.st->max_connections = c.policy.tcp.max_connections;
        cr.st->max_pending = c.policy.http.http1_max_pending_requests;
        cr.st->max_requests = c.policy.http.http2_max_requests;
        cr.st->max_retries = c.policy.http.max_retries;
        cr.idle.reserve(cr.hosts.size());
        for (host_rt* h : cr.hosts) {
            cr.idle.push_back(&cr.st->idle[h]);
        }
        if (same_snap && i < _cfg->clusters.size()) {
            // A health-only change: the TLS contexts stay (no certificate file is read).
            cr.tls = _cfg->clusters[i].tls;
            cr.tls_error = _cfg->clusters[i].tls_error;
            cr.sni = _cfg->clusters[i].sni;
        } else if (c.policy.tls.mode != snapshot::tls_policy::mode_t::disable && !c.missing) {
            auto ct = client_tls_context::build(c.policy.tls, c.name);
            if (!ct) {
                SLUICE_LOG(WARNING, l7, "%s", ct.err().message.c_str());
                cr.tls_error = true;
            } else {
                cr.tls = std::make_shared<const client_tls_context>(std::move(*ct));
            }
            cr.sni = c.policy.tls.sni.empty() ? c.host : c.policy.tls.sni;
        }
        if (!c.missing) {
            std::unique_ptr<bool[]> b(new bool[unhealthy.size() + 1]);
            for (size_t k = 0; k < unhealthy.size(); ++k) {
                b[k] = unhealthy[k];
            }
            auto lb = cluster_lb::build(c, std::span<const bool>(b.get(), unhealthy.size()));
            if (!lb.ok()) {
                SLUICE_LOG(WARNING, l7, "cluster %s: %s", c.name.c_str(), lb.err().message.c_str());
            } else {
                cr.lb = std::move(*lb);
            }
        }
    }
    for (const snapshot::route_table& t : snap.http) {
        for (const snapshot::route_action& a : t.actions) {
            rt->retries.emplace(&a, parse_retry(a.retries));
        }
    }
    if (same_snap) {
        _cfg = std::move(rt);
        return ok();
    }

    // Listeners: keep the sockets of (address, port) pairs that stay, open new ones, close
    // dropped ones (their connections finish on their own).
    std::string errors;
    std::vector<std::unique_ptr<listener_rt>> next;
    for (const snapshot::listener& l : snap.listeners) {
        if (!snapshot::is_l7(l.kind)) {
            continue;
        }
        auto info = std::make_shared<listener_info>();
        info->kind = l.kind;
        info->port = l.port;
        info->vip = l.origin == snapshot::listener::origin_t::service_vip;
        if (info->vip) {
            info->servers.push_back({"mesh", {}});
            info->single_gateway = "mesh";
        } else {
            for (uint32_t si : l.servers) {
                const snapshot::gateway_server& s = snap.servers[si];
                std::vector<std::string> hosts;
                for (const snapshot::server_host& h : s.hosts) {
                    hosts.push_back(h.host);
                }
                info->servers.push_back({s.gateway, std::move(hosts)});
            }
            std::vector<const snapshot::gateway_server*> tls_servers;
            bool terminates = false;
            for (uint32_t si : l.servers) {
                const snapshot::gateway_server& s = snap.servers[si];
                tls_servers.push_back(&s);
                terminates = terminates ||
                             (s.tls && s.tls->mode != snapshot::server_tls::mode_t::passthrough &&
                              s.tls->mode != snapshot::server_tls::mode_t::auto_passthrough);
            }
            if (terminates && l.kind != snapshot::listener_kind::tls_passthrough) {
                auto ctx = server_tls_context::build(tls_servers);
                if (!ctx) {
                    errors += (errors.empty() ? "" : "; ") + ctx.err().message;
                    _stats.listener_errors.fetch_add(1, std::memory_order_relaxed);
                    // A listener that runs keeps its last good certificates (a rotation in
                    // progress must not close it).
                    const std::string addr =
                        _s.bind_override.empty() ? l.address : _s.bind_override;
                    for (auto& old : _listeners) {
                        if (old && old->address == addr && old->port == l.port) {
                            next.push_back(std::move(old));
                            break;
                        }
                    }
                    continue;
                }
                if (!ctx->empty()) {
                    info->tls = std::make_shared<const server_tls_context>(std::move(*ctx));
                }
            }
            bool one = !info->servers.empty();
            for (const auto& s : info->servers) {
                one = one && s.first == info->servers.front().first;
            }
            if (one) {
                info->single_gateway = info->servers.front().first;
            }
        }
        const std::string address = _s.bind_override.empty() ? l.address : _s.bind_override;
        std::unique_ptr<listener_rt> lr;
        for (auto& old : _listeners) {
            if (old && old->address == address && old->port == l.port) {
                lr = std::move(old);
                break;
            }
        }
        if (!lr) {
            for (auto& n : next) {
                if (n->address == address && n->port == l.port) {
                    // Two snapshot listeners on one socket (an override folded them).
                    goto next_listener;
                }
            }
            {
                uint16_t want = static_cast<uint16_t>(l.port);
                for (const auto& [from, to] : _s.port_override) {
                    if (from == l.port) {
                        want = to;
                    }
                }
                uint16_t bound = 0;
                auto fd = open_listener(address, want, _s.freebind, bound);
                if (!fd.ok()) {
                    errors += (errors.empty() ? "" : "; ") + fd.err().message;
                    _stats.listener_errors.fetch_add(1, std::memory_order_relaxed);
                    continue;
                }
                lr = std::make_unique<listener_rt>();
                lr->eng = this;
                lr->retry.set(
                    [](timer&, void* c) {
                        auto* l = static_cast<listener_rt*>(c);
                        l->eng->accept_ready(*l);
                    },
                    lr.get());
                lr->fd = *fd;
                lr->address = address;
                lr->port = l.port;
                lr->bound = bound;
                if (auto r = _r.add(lr->fd, lr.get(), EPOLLIN); !r.ok()) {
                    close(lr->fd);
                    errors += (errors.empty() ? "" : "; ") + r.err().message;
                    continue;
                }
                SLUICE_LOG(INFO, l7, "listening on %s:%u (port %u)",
                           address.empty() ? "*" : address.c_str(), bound, l.port);
            }
        }
        lr->info = std::move(info);
        next.push_back(std::move(lr));
    next_listener:;
    }
    for (auto& old : _listeners) {
        if (old) {
            _r.cancel(old->retry);
            _r.remove(old->fd);
            close(old->fd);
            SLUICE_LOG(INFO, l7, "closed listener %s:%u", old->address.c_str(), old->port);
        }
    }
    _listeners = std::move(next);
    _checker.apply(snap);
    _cfg = std::move(rt);
    if (!errors.empty()) {
        return err(errors);
    }
    return ok();
}

void engine_impl::shut_down() noexcept
{
    if (_down) {
        return;
    }
    _down = true;
    for (auto& l : _listeners) {
        _r.cancel(l->retry);
        _r.remove(l->fd);
        close(l->fd);
    }
    _listeners.clear();
    _checker.stop();
    _resolver.stop();
    // Nothing waits any more: closing the connections below must not start new ones.
    {
        std::lock_guard<std::mutex> g(_clusters_mu);
        for (auto& [name, cs] : _clusters) {
            cs->pending.clear();
        }
    }
    for (auto& [key, h] : _hosts) {
        h->waiting.clear();
    }
    for (auto& d : _down_all) {
        if (!d->closed && d->fd >= 0) {
            down_close(*d);
        }
    }
    for (auto& u : _up_all) {
        if (!u->closed && u->fd >= 0) {
            up_close(*u);
        }
    }
    for (auto& m : _mirror_all) {
        mirror_close(*m);
    }
    // Closed connections return to the pools through the reactor's deferred list: run it
    // while this engine still exists (the reactor may outlive it).
    _r.drain_deferred();
    _r.cancel(_log_timer);
    flush_log();
    if (_log_close && _log_fd >= 0) {
        close(_log_fd);
    }
    _log_fd = -1;
}

// ------------------------------------------------------------------------ pools

down_conn* engine_impl::alloc_down()
{
    if (!_down_free.empty()) {
        down_conn* d = _down_free.back();
        _down_free.pop_back();
        return d;
    }
    auto d = std::make_unique<down_conn>();
    d->eng = this;
    // Small to start (memory per idle connection); buffers grow to what traffic needs and
    // keep it (pooled objects: no allocation per request in steady state).
    d->in.data.resize(8192);
    for (std::string* s :
         {&d->st.method, &d->st.path, &d->st.authority, &d->st.request_id, &d->st.start_time}) {
        s->reserve(64);
    }
    d->idle_timer.set(
        [](timer&, void* ctx) {
            auto* dc = static_cast<down_conn*>(ctx);
            dc->eng->down_close(*dc);
        },
        d.get());
    d->st.route_timer.set(
        [](timer&, void* ctx) {
            auto* dc = static_cast<down_conn*>(ctx);
            engine_impl* e = dc->eng;
            e->_stats.upstream_rq_timeout.fetch_add(1, std::memory_order_relaxed);
            if (dc->st.up != nullptr && !dc->st.resp_started) {
                e->report(dc->st, health::outcome::local_origin_failure);
            }
            if (dc->st.up != nullptr) {
                up_conn* u = dc->st.up;
                dc->st.up = nullptr;
                u->owner = nullptr;
                e->up_close(*u);
            }
            if (!dc->st.resp_started) {
                dc->st.close_after = dc->st.close_after || !dc->st.req_done;
                e->local_reply(*dc, 504, "upstream request timeout", rf_ut);
            } else {
                dc->st.flags |= rf_ut;
                e->down_close(*dc);
            }
        },
        d.get());
    d->st.try_timer.set(
        [](timer&, void* ctx) {
            auto* dc = static_cast<down_conn*>(ctx);
            engine_impl* e = dc->eng;
            stream& st = dc->st;
            if (st.up == nullptr || st.resp_started) {
                return;
            }
            // perTryTimeout: this attempt is abandoned; the route timeout still runs.
            e->_stats.upstream_rq_per_try_timeout.fetch_add(1, std::memory_order_relaxed);
            e->report(st, health::outcome::local_origin_failure);
            up_conn* u = st.up;
            st.up = nullptr;
            u->owner = nullptr;
            e->up_close(*u);
            const retry_rules* r = st.retry;
            if (r != nullptr && (r->on_5xx || r->gateway_error || r->reset) &&
                st.attempts <= st.retries_allowed && st.req_replayable && st.req_done &&
                e->retry_budget(st)) {
                e->schedule_retry(*dc);
                return;
            }
            st.local = true;
            st.close_after = st.close_after || !st.req_done;
            e->local_reply(*dc, 504, "upstream request timeout",
                           rf_ut | (st.attempts > 1 ? static_cast<uint32_t>(rf_urx) : 0U));
        },
        d.get());
    d->st.retry_timer.set(
        [](timer&, void* ctx) {
            auto* dc = static_cast<down_conn*>(ctx);
            if (dc->st.fault_abort != 0) {
                dc->st.local = true;
                dc->eng->local_reply(*dc, dc->st.fault_abort, "fault filter abort", rf_fi);
                return;
            }
            dc->eng->start_upstream(*dc);
        },
        d.get());
    down_conn* raw = d.get();
    _down_all.push_back(std::move(d));
    return raw;
}

up_conn* engine_impl::alloc_up()
{
    if (!_up_free.empty()) {
        up_conn* u = _up_free.back();
        _up_free.pop_back();
        return u;
    }
    auto u = std::make_unique<up_conn>();
    u->eng = this;
    u->in.data.resize(8192);
    u->connect_timer.set(
        [](timer&, void* ctx) {
            auto* uc = static_cast<up_conn*>(ctx);
            engine_impl* e = uc->eng;
            e->_stats.upstream_cx_connect_timeout.fetch_add(1, std::memory_order_relaxed);
            down_conn* d = uc->owner;
            uc->owner = nullptr;
            if (d != nullptr) {
                d->st.up = nullptr;
            }
            e->up_close(*uc);
            if (d != nullptr) {
                e->upstream_failed(*d, rf_uf, true);
            }
        },
        u.get());
    u->idle_timer.set(
        [](timer&, void* ctx) {
            auto* uc = static_cast<up_conn*>(ctx);
            uc->eng->up_close(*uc);
        },
        u.get());
    up_conn* raw = u.get();
    _up_all.push_back(std::move(u));
    return raw;
}

void down_conn::on_deferred() noexcept
{
    // The batch that closed this connection is over: the object can be reused.
    eng->_down_free.push_back(this);
}

void up_conn::on_deferred() noexcept
{
    eng->_up_free.push_back(this);
}

// ------------------------------------------------------------------------ downstream

void listener_rt::on_io(uint32_t /*events*/) noexcept
{
    eng->accept_ready(*this);
}

void engine_impl::accept_ready(listener_rt& l) noexcept
{
    // Edge-triggered: accept until EAGAIN, or no new edge comes for the queued ones.
    for (;;) {
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        const int fd =
            accept4(l.fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                // Out of descriptors: the queued connections wait; try again shortly.
                _stats.listener_errors.fetch_add(1, std::memory_order_relaxed);
                _r.arm(l.retry, 10 * ns_per_ms);
            }
            return;
        }
        if (_down_active >= _s.max_downstream_connections) {
            _stats.downstream_cx_overflow.fetch_add(1, std::memory_order_relaxed);
            close(fd);
            continue;
        }
        set_nonblock_opts(fd);
        down_conn* d = alloc_down();
        d->fd = fd;
        d->closed = false;
        d->closing = false;
        d->read_eof = false;
        d->read_blocked = false;
        d->hup = false;
        d->processing = false;
        d->has_stream = false;
        d->tunnel_peer = nullptr;
        d->in.clear();
        d->out.clear();
        d->parser.reset();
        d->info = l.info;
        d->peer = net::from_sockaddr(ss);
        inet_ntop(d->peer.is_v4() ? AF_INET : AF_INET6, d->peer.bytes.data(), d->peer_text,
                  sizeof(d->peer_text));
        d->trusted = trusted(d->peer);
        d->https = false;
        d->handshaking = false;
        d->sni_gateway = {};
        d->local = {};
        if (l.info->kind != snapshot::listener_kind::http) {
            sockaddr_storage ls{};
            socklen_t llen = sizeof(ls);
            if (getsockname(fd, reinterpret_cast<sockaddr*>(&ls), &llen) == 0) {
                d->local = net::from_sockaddr(ls);
            }
        }
        if (l.info->tls) {
            SSL* ssl = l.info->tls->new_ssl(fd);
            if (ssl == nullptr) {
                _stats.downstream_tls_error.fetch_add(1, std::memory_order_relaxed);
                close(fd);
                d->fd = -1;
                d->closed = true;
                _r.defer(d);
                continue;
            }
            d->tls = tls_stream(ssl);
            d->https = true;
            d->handshaking = true;
        }
        if (!_r.add(fd, d, EPOLLIN | EPOLLOUT | EPOLLRDHUP).ok()) {
            close(fd);
            d->fd = -1;
            d->closed = true;
            d->tls = tls_stream();
            d->handshaking = false;
            _r.defer(d);
            continue;
        }
        ++_down_active;
        _stats.downstream_cx_total.fetch_add(1, std::memory_order_relaxed);
        _stats.downstream_cx_active.fetch_add(1, std::memory_order_relaxed);
        _r.arm(d->idle_timer, _s.request_headers_timeout);
        down_read(*d);
    }
}

void down_conn::on_io(uint32_t events) noexcept
{
    if (closed) {
        return;
    }
    if ((events & EPOLLOUT) != 0) {
        eng->down_flush(*this);
        if (closed) {
            return;
        }
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
        hup = hup || (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
        eng->down_read(*this);
    }
}

bool engine_impl::down_handshake(down_conn& d) noexcept
{
    const tls_io r = d.tls.handshake();
    if (r.failed() || r.closed) {
        _stats.downstream_tls_error.fetch_add(1, std::memory_order_relaxed);
        down_close(d);
        return false;
    }
    if (r.want != tls_want::none) {
        return false; // the next readiness event continues it
    }
    d.handshaking = false;
    const int si = server_tls_context::selected_server(d.tls.native_handle());
    if (d.info && si >= 0 && static_cast<size_t>(si) < d.info->servers.size()) {
        d.sni_gateway = d.info->servers[static_cast<size_t>(si)].first;
    }
    return true;
}

void engine_impl::down_read(down_conn& d) noexcept
{
    if (d.handshaking && !down_handshake(d)) {
        return;
    }
    if (d.tunnel_peer != nullptr) {
        tunnel_pump(d, *d.tunnel_peer); // it handles the client's half-close itself
        return;
    }
    while (!d.closed && !d.read_eof) {
        if (d.tunnel_peer != nullptr) {
            tunnel_pump(d, *d.tunnel_peer);
            return;
        }
        if (d.in.size() >= max_in_buffer) {
            d.read_blocked = true; // resumed when the parser consumes
            break;
        }
        char* p = d.in.reserve(min_read);
        const size_t space = d.in.data.size() - d.in.end;
        const ssize_t n = io_recv(d.fd, d.tls, p, space);
        if (n > 0) {
            d.in.commit(static_cast<size_t>(n));
            // A short read emptied the socket (see up_read): parse now, the next edge brings
            // more.
            if (static_cast<size_t>(n) < space && !d.tls.valid() && !d.hup) {
                break;
            }
            continue;
        }
        if (n == 0) {
            d.read_eof = true;
            break;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN) {
            d.read_eof = true;
            if (d.has_stream && !d.st.resp_done) {
                d.st.flags |= rf_dc;
            }
            down_close(d);
            return;
        }
        break;
    }
    if (d.closed) {
        return;
    }
    if (d.info && d.info->kind != snapshot::listener_kind::http) {
        if (!d.has_stream) {
            tcp_route(d);
        } else if (d.read_eof) {
            down_close(d); // the client left before the upstream answered
        }
        return;
    }
    if (d.read_eof && d.has_stream && d.st.req_done && !d.st.resp_done && !d.st.tunnel) {
        // The client closed while its request waits on the upstream: the exchange is
        // abandoned (DC) and the upstream connection released, as Envoy resets the stream.
        d.st.flags |= rf_dc;
        down_close(d);
        return;
    }
    down_process(d);
}

void engine_impl::down_process(down_conn& d) noexcept
{
    if (d.processing || d.closed) {
        return; // re-entered from a callback: the outer loop continues
    }
    d.processing = true;
    // After a head or a body piece the codec may have more to say with no new byte (the
    // end of a bodiless message): parse once more even when the buffer is empty.
    bool again = false;
    while (!d.closed && !d.closing) {
        if (d.has_stream && (d.st.req_done || d.st.tunnel)) {
            break; // one request at a time: the next waits for this response
        }
        if (d.has_stream && !d.st.local && d.st.req.size() - d.st.req_sent > high_watermark) {
            break; // the upstream is slower than the client: resumes on upstream write
        }
        if (d.in.empty() && !d.read_eof && !again) {
            break;
        }
        const bool use_finish = d.in.empty() && !again;
        again = false;
        http1_event ev = use_finish ? d.parser.finish() : d.parser.parse(d.in.view());
        if (use_finish && ev.kind == http1_event_kind::need_more) {
            // EOF between messages: nothing more will come.
            if (!d.has_stream) {
                d.processing = false;
                down_close(d);
                return;
            }
            break;
        }
        switch (ev.kind) {
        case http1_event_kind::need_more:
            d.in.consume(ev.consumed);
            if (d.read_eof && d.in.empty()) {
                again = false;
                continue; // finish() decides: complete, or truncated
            }
            if (d.read_eof) {
                // Cannot complete (finish() would have said): treat as truncated.
                ev = d.parser.finish();
                if (ev.kind == http1_event_kind::error && d.has_stream) {
                    d.st.flags |= rf_dc;
                    d.processing = false;
                    down_close(d);
                    return;
                }
                d.processing = false;
                down_close(d);
                return;
            }
            goto out;
        case http1_event_kind::headers:
            on_request_head(d);
            d.st.bytes_in = ev.consumed;
            d.in.consume(ev.consumed);
            again = true;
            break;
        case http1_event_kind::body:
            on_request_body(d, ev.data);
            d.st.bytes_in += ev.consumed;
            d.in.consume(ev.consumed);
            again = true;
            break;
        case http1_event_kind::done:
            d.in.consume(ev.consumed);
            on_request_done(d);
            break;
        case http1_event_kind::error: {
            if (ev.error == http1_error::truncated) {
                // The client closed inside a message: a downstream reset (DC), not a 400.
                if (d.has_stream) {
                    d.st.flags |= rf_dc;
                }
                d.processing = false;
                down_close(d);
                return;
            }
            _stats.downstream_rq_bad.fetch_add(1, std::memory_order_relaxed);
            const uint16_t status = http1_error_status(ev.error);
            if (d.has_stream && (d.st.resp_started || !d.st.local)) {
                // Inside a body being proxied: the exchange cannot be saved.
                if (d.st.up != nullptr) {
                    up_conn* u = d.st.up;
                    d.st.up = nullptr;
                    u->owner = nullptr;
                    up_close(*u);
                }
                d.st.flags |= rf_dpe;
                if (!d.st.resp_started) {
                    d.st.close_after = true;
                    d.st.req_done = true;
                    local_reply(d, status == 0 ? 400 : status, {}, rf_dpe);
                } else {
                    d.processing = false;
                    down_close(d);
                    return;
                }
            } else {
                if (!d.has_stream) {
                    d.has_stream = true;
                    stream& s = d.st;
                    s.start = _r.now();
                    s.method.assign(d.parser.message().method);
                    s.path.clear();
                    s.authority.clear();
                    s.xff.clear();
                    s.user_agent.clear();
                    s.request_id.clear();
                    s.flags = 0;
                    s.bytes_in = d.in.size();
                    s.bytes_out = 0;
                    s.resp_started = false;
                    s.resp_done = false;
                }
                d.st.req_done = true;
                d.st.close_after = true;
                local_reply(d, status == 0 ? 400 : status, {}, rf_dpe);
            }
            d.in.clear();
            d.processing = false;
            return;
        }
        }
    }
out:
    d.processing = false;
    if (d.read_blocked && !d.closed && d.in.size() < max_in_buffer) {
        d.read_blocked = false;
        down_read(d);
    }
}

void engine_impl::down_write(down_conn& d, std::string_view s)
{
    if (d.closed) {
        return;
    }
    // Buffered: whoever writes flushes once at the end of its batch, so a response head and
    // the body that arrived with it leave in one send (one segment, one wake-up).
    d.st.bytes_out += s.size();
    d.out.append(s);
}

void engine_impl::down_flush(down_conn& d) noexcept
{
    if (d.closed) {
        return;
    }
    while (!d.out.empty()) {
        const ssize_t n = io_send(d.fd, d.tls, d.out.view().data(), d.out.size());
        if (n > 0) {
            d.out.consume(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (d.has_stream) {
            d.st.flags |= rf_dc;
        }
        down_close(d);
        return;
    }
    if (d.closing) {
        down_close(d);
        return;
    }
    // Drained: a paused upstream may continue.
    if (d.has_stream && d.st.up != nullptr && d.st.up->read_blocked) {
        d.st.up->read_blocked = false;
        if (d.tunnel_peer != nullptr) {
            tunnel_pump(d, *d.tunnel_peer);
        } else {
            up_read(*d.st.up);
        }
    }
}

void engine_impl::down_close(down_conn& d) noexcept
{
    if (d.closed) {
        return;
    }
    d.closed = true;
    if (d.has_stream) {
        stream& s = d.st;
        _r.cancel(s.route_timer);
        _r.cancel(s.retry_timer);
        _r.cancel(s.try_timer);
        if (!s.resp_done) {
            _stats.downstream_rq_rx_reset.fetch_add(1, std::memory_order_relaxed);
            if (s.status == 0) {
                s.flags |= rf_dc;
            }
        }
        if (s.up != nullptr) {
            up_conn* u = s.up;
            s.up = nullptr;
            u->owner = nullptr;
            up_close(*u);
        }
        uncount_active(s);
        release_counts(s);
        if ((!s.resp_done || s.tcp_proxy) && s.method.size() > 0) {
            log_request(d);
        }
        s.crt = nullptr;
        s.host = nullptr;
        s.tcp_proxy = false;
        s.cfg.reset();
        d.has_stream = false;
    }
    d.tunnel_peer = nullptr;
    _r.cancel(d.idle_timer);
    _r.remove(d.fd);
    if (d.tls.valid()) {
        d.tls.shutdown(); // best effort close_notify; the socket closes regardless
        d.tls = tls_stream();
    }
    d.handshaking = false;
    close(d.fd);
    d.fd = -1;
    d.info.reset();
    --_down_active;
    _stats.downstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
    _r.defer(&d);
}

// ------------------------------------------------------------------------ requests

void engine_impl::gen_request_id(std::string& out)
{
    // A random (version 4) UUID.
    const uint64_t a = rand();
    const uint64_t b = rand();
    char buf[37];
    static const char hex[] = "0123456789abcdef";
    uint8_t bytes[16];
    std::memcpy(bytes, &a, 8);
    std::memcpy(bytes + 8, &b, 8);
    bytes[6] = static_cast<uint8_t>((bytes[6] & 0x0f) | 0x40);
    bytes[8] = static_cast<uint8_t>((bytes[8] & 0x3f) | 0x80);
    size_t o = 0;
    for (size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            buf[o++] = '-';
        }
        buf[o++] = hex[bytes[i] >> 4];
        buf[o++] = hex[bytes[i] & 0xf];
    }
    out.assign(buf, o);
}

namespace {

void write_header_ops(buffer& b, const snapshot::header_ops& ops)
{
    for (const auto& [n, v] : ops.set) {
        b.header(n, v);
    }
    for (const auto& [n, v] : ops.add) {
        b.header(n, v);
    }
}

bool removed_by(const snapshot::header_ops& ops, std::string_view name) noexcept
{
    return in_list(ops.remove, name) || in_set(ops.set, name);
}

} // namespace

stream& engine_impl::begin_stream(down_conn& d) noexcept
{
    // Every per-exchange field back to its start (streams are reused across requests).
    stream& s = d.st;
    d.has_stream = true;
    _r.cancel(d.idle_timer);
    s.cfg = _cfg;
    s.dec = {};
    s.crt = nullptr;
    s.ep = no_index;
    s.host = nullptr;
    s.up = nullptr;
    s.dest = nullptr;
    s.retry = nullptr;
    s.attempts = 0;
    s.fault_abort = 0;
    s.fault_delay = 0;
    s.retries_allowed = 0;
    s.nmirrors = 0;
    s.tcp_proxy = false;
    s.pending = false;
    s.rq_counted = false;
    s.retry_counted = false;
    s.reused = false;
    s.stale_retried = false;
    s.dns_wait = false;
    std::fill(std::begin(s.tried), std::end(s.tried), no_index);
    s.req.clear();
    s.req_sent = 0;
    s.req_replayable = true;
    s.req_done = false;
    s.req_chunked = false;
    s.req_head_only = false;
    s.upgrade = false;
    s.tunnel = false;
    s.local = false;
    s.discard_body = false;
    s.resp_started = false;
    s.resp_done = false;
    s.resp_chunked = false;
    s.close_after = false;
    s.active_counted = false;
    s.version_minor = 1;
    s.status = 0;
    s.flags = 0;
    s.bytes_in = 0;
    s.bytes_out = 0;
    s.start = _r.now();
    s.hash.reset();
    s.set_cookie.clear();
    s.listener_port = d.info ? d.info->port : 0;
    return s;
}

void engine_impl::on_request_head(down_conn& d) noexcept
{
    const http1_message& m = d.parser.message();
    stream& s = begin_stream(d);
    _stats.downstream_rq_total.fetch_add(1, std::memory_order_relaxed);
    s.req_chunked = m.chunked;
    s.req_head_only = m.method == "HEAD"sv;
    s.upgrade = m.upgrade || m.connect;
    s.close_after = !m.keep_alive;
    s.version_minor = m.version_minor;
    s.method.assign(m.method);
    s.path.assign(m.form == target_form::absolute ? m.path : m.target);
    if (m.form == target_form::absolute && !m.query.empty()) {
        s.path.push_back('?');
        s.path.append(m.query);
    }
    s.authority.assign(m.authority);
    s.xff.assign(m.header("x-forwarded-for"sv));
    s.user_agent.assign(m.header("user-agent"sv));
    s.origin.assign(m.header("origin"sv));
    std::string_view rid = m.header("x-request-id"sv);
    if (rid.empty() || !d.trusted) {
        // Envoy keeps an external x-request-id only when configured to: sluice keeps the
        // client's id only from trusted sources and generates one otherwise.
        if (rid.empty() || rid.size() > 128) {
            gen_request_id(s.request_id);
        } else {
            s.request_id.assign(rid);
        }
    } else {
        s.request_id.assign(rid);
    }
    if (_log_fd >= 0) {
        s.start_time.assign(log_time());
    }
    if (!s.cfg || d.info == nullptr) {
        s.local = true;
        local_reply(d, 404, {}, rf_nr);
        return;
    }

    // Route. The gateway: the listener's own, else the first server whose hosts claim the
    // authority (several gateways sharing one port).
    std::string_view gateway =
        d.sni_gateway.empty() ? std::string_view(d.info->single_gateway) : d.sni_gateway;
    if (gateway.empty()) {
        const std::string_view host = snapshot::authority_host(m.authority);
        for (const auto& [gw, hosts] : d.info->servers) {
            for (const std::string& h : hosts) {
                if (snapshot::host_matches(h, host)) {
                    gateway = gw;
                    break;
                }
            }
            if (!gateway.empty()) {
                break;
            }
        }
        if (gateway.empty() && !d.info->servers.empty()) {
            gateway = d.info->servers.front().first;
        }
    }
    _hdrs.clear();
    for (const http1_header& h : m.headers) {
        _hdrs.push_back({h.name, h.value});
    }
    snapshot::request rq;
    rq.authority = m.authority;
    rq.path = s.path;
    rq.method = m.method;
    rq.scheme = d.https ? "https"sv : "http"sv;
    rq.port = s.listener_port;
    rq.gateway = gateway;
    rq.headers = _hdrs;
    s.dec = snapshot::match_route(*s.cfg->cfg->snap, rq, _scratch);
    const snapshot::route_action* act = s.dec.action;

    switch (s.dec.what) {
    case snapshot::outcome::no_listener:
    case snapshot::outcome::no_virtual_host:
    case snapshot::outcome::no_route:
        _stats.no_route.fetch_add(1, std::memory_order_relaxed);
        s.local = true;
        local_reply(d, 404, {}, rf_nr);
        return;
    case snapshot::outcome::redirect:
    case snapshot::outcome::https_redirect: {
        // Allocates (a Location string): redirects are not the fast path.
        const std::string loc = snapshot::redirect_location(s.dec, rq);
        s.local = true;
        local_reply(d, static_cast<uint16_t>(s.dec.status), {}, 0, loc);
        return;
    }
    case snapshot::outcome::direct_response: {
        s.local = true;
        const auto& dr = act->direct_response;
        direct_reply(d, static_cast<uint16_t>(dr.status),
                     dr.body ? std::string_view(*dr.body) : std::string_view{});
        return;
    }
    case snapshot::outcome::fault_abort: // an abort at 100%: decided below with the delay
    case snapshot::outcome::forward:
        break;
    }

    // Mirrors: each drawn independently by its percentage; the copy leaves when the request
    // is complete (requests too large to keep whole are not mirrored).
    s.nmirrors = 0;
    for (const snapshot::mirror_action& mi : act->mirrors) {
        if (s.nmirrors >= 2) {
            break;
        }
        if (draw_percent(mi.percentage)) {
            s.mirrors[s.nmirrors++] = snapshot::destination_cluster(mi.dest, s.listener_port);
        }
    }

    // Faults (ISTIO.md: independent draws; a faulted request is never retried). An abort
    // comes after the delay when both apply, as in Envoy's fault filter.
    s.fault_delay = 0;
    if (act->fault) {
        const snapshot::fault_action& f = *act->fault;
        if (f.delay && draw_percent(f.delay->percentage)) {
            s.fault_delay = static_cast<nanos>(f.delay->fixed_delay.count());
            s.flags |= rf_di;
        }
        if (f.abort && f.abort->http_status != 0 && draw_percent(f.abort->percentage)) {
            s.fault_abort = static_cast<uint16_t>(f.abort->http_status);
        }
        if (s.fault_abort != 0 || s.fault_delay != 0) {
            s.retry = nullptr;
        }
        if (s.fault_abort != 0 && s.fault_delay == 0) {
            s.local = true;
            local_reply(d, s.fault_abort, "fault filter abort", rf_fi);
            return;
        }
    }

    // CORS preflight answered here when the origin is allowed.
    if (act->cors && m.method == "OPTIONS"sv && !s.origin.empty() &&
        m.has_header("access-control-request-method"sv)) {
        const bool allowed = snapshot::cors_origin_allowed(*act->cors, s.origin);
        if (allowed || act->cors->unmatched_preflights != "FORWARD") {
            s.local = true;
            if (allowed) {
                cors_preflight(d, *act->cors);
            } else {
                local_reply(d, 200, {}, 0);
            }
            return;
        }
    }

    // Destination: weighted choice, then its cluster.
    if (act->destinations.empty() || act->total_weight == 0) {
        s.local = true;
        _stats.no_cluster.fetch_add(1, std::memory_order_relaxed);
        local_reply(d, 503, {}, rf_nc);
        return;
    }
    uint64_t pickw = rand() % act->total_weight;
    for (const auto& dst : act->destinations) {
        if (pickw < dst.weight) {
            s.dest = &dst;
            break;
        }
        pickw -= dst.weight;
    }
    if (s.dest == nullptr) {
        s.dest = &act->destinations.back();
    }
    const uint32_t ci = snapshot::destination_cluster(*s.dest, s.listener_port);
    if (ci == no_index || ci >= s.cfg->clusters.size() || s.cfg->clusters[ci].c->missing) {
        s.local = true;
        _stats.no_cluster.fetch_add(1, std::memory_order_relaxed);
        local_reply(d, 503, {}, rf_nc);
        return;
    }
    s.crt = &s.cfg->clusters[ci];
    if (auto it = s.cfg->retries.find(act);
        it != s.cfg->retries.end() && s.fault_abort == 0 && s.fault_delay == 0) {
        s.retry = &it->second;
        s.retries_allowed = it->second.attempts;
    }
    // x-envoy-max-retries and x-envoy-upstream-rq-timeout-ms, from trusted sources only
    // (the headers of others were dropped above, as Envoy does for external clients).
    nanos timeout_override = 0;
    if (d.trusted) {
        uint64_t v = 0;
        const std::string_view mr = m.header("x-envoy-max-retries"sv);
        if (!mr.empty() && s.retry != nullptr &&
            std::from_chars(mr.data(), mr.data() + mr.size(), v).ec == std::errc{} && v < 100) {
            s.retries_allowed = static_cast<uint32_t>(v);
        }
        const std::string_view to = m.header("x-envoy-upstream-rq-timeout-ms"sv);
        if (!to.empty() && std::from_chars(to.data(), to.data() + to.size(), v).ec == std::errc{} &&
            v < 86400000ULL) {
            timeout_override = v * ns_per_ms;
        }
    }

    // Consistent-hash key.
    const snapshot::cluster& c = *s.crt->c;
    if (c.policy.lb.hash) {
        const snapshot::hash_policy& hp = *c.policy.lb.hash;
        switch (hp.key) {
        case snapshot::hash_policy::key_t::header: {
            const std::string_view v = m.header(hp.header_name);
            if (!v.empty() || m.has_header(hp.header_name)) {
                s.hash = lb_hash_key(v);
            }
            break;
        }
        case snapshot::hash_policy::key_t::cookie: {
            if (auto v = cookie_value(m, hp.cookie_name)) {
                s.hash = lb_hash_key(*v);
            } else if (hp.cookie_ttl) {
                const auto val = cookie_value(rand());
                const std::string_view v(val.data(), val.size());
                s.hash = lb_hash_key(v);
                char line[512];
                const size_t n = format_set_cookie(
                    line, hp.cookie_name, v, hp.cookie_path,
                    static_cast<uint64_t>(
                        std::chrono::duration_cast<std::chrono::seconds>(*hp.cookie_ttl).count()));
                s.set_cookie.assign(line, n);
            }
            break;
        }
        case snapshot::hash_policy::key_t::source_ip:
            s.hash = lb_hash_key(
                {reinterpret_cast<const char*>(d.peer.bytes.data()), d.peer.is_v4() ? 4U : 16U});
            break;
        case snapshot::hash_policy::key_t::query_param:
            if (auto v = snapshot::query_value(s.path, hp.query_param)) {
                s.hash = lb_hash_key(*v);
            }
            break;
        case snapshot::hash_policy::key_t::none:
            break;
        }
    }

    // The upstream request head, written once (kept for retries while it fits).
    std::optional<snapshot::rewritten> rw;
    if (act->rewrite) {
        rw = snapshot::apply_rewrite(s.dec, rq); // allocates: rewrites are configured
    }
    buffer& b = s.req;
    b.append(m.method);
    b.append(" "sv);
    if (m.form == target_form::authority || m.form == target_form::asterisk) {
        b.append(m.target);
    } else {
        b.append(rw ? std::string_view(rw->path) : std::string_view(s.path));
    }
    b.append(" HTTP/1.1\r\n"sv);
    // An HTTP/1.0 request may have no Host: the upstream gets the service's host name.
    b.header("host"sv, rw                    ? std::string_view(rw->authority)
                       : m.authority.empty() ? std::string_view(s.crt->c->host)
                                             : m.authority);
    const snapshot::header_ops& rops = act->headers.request;
    const snapshot::header_ops& dops = s.dest->headers.request;
    bool have_rid = false;
    for (const http1_header& h : m.headers) {
        const std::string_view n = h.name;
        if (hop_by_hop(n) || iequals(n, "host"sv) || iequals(n, "x-forwarded-for"sv) ||
            iequals(n, "x-forwarded-proto"sv)) {
            continue;
        }
        if (iequals(n, "x-request-id"sv)) {
            if (have_rid) {
                continue;
            }
            have_rid = true;
            b.header(n, s.request_id);
            continue;
        }
        if (!d.trusted && istarts_with(n, "x-envoy-"sv)) {
            continue; // x-envoy-* from external clients are dropped (Envoy's rule)
        }
        if (removed_by(rops, n) || removed_by(dops, n) || named_by_connection(m, n)) {
            continue;
        }
        b.header(n, h.value);
    }
    if (!have_rid) {
        b.header("x-request-id"sv, s.request_id);
    }
    // x-forwarded-for: the client's list (kept only from trusted sources, as Envoy with
    // use_remote_address and xff_num_trusted_hops 0) plus the client address.
    if (!s.xff.empty() && d.trusted) {
        char* p = b.reserve(s.xff.size() + sizeof(d.peer_text) + 24);
        (void)p;
        b.append("x-forwarded-for: "sv);
        b.append(s.xff);
        b.append(", "sv);
        b.append(d.peer_text);
        b.append("\r\n"sv);
    } else {
        b.header("x-forwarded-for"sv, d.peer_text);
    }
    b.header("x-forwarded-proto"sv, d.https ? "https"sv : "http"sv);
    write_header_ops(b, rops);
    write_header_ops(b, dops);
    if (s.upgrade && m.upgrade) {
        b.header("connection"sv, "upgrade"sv);
        b.header("upgrade"sv, m.header("upgrade"sv));
    }
    if (m.framing == body_framing::content_length) {
        b.append("content-length: "sv);
        b.append_uint(m.content_length);
        b.append("\r\n"sv);
    } else if (m.framing == body_framing::chunked) {
        b.append("transfer-encoding: chunked\r\n"sv);
    }
    b.append("\r\n"sv);

    if (timeout_override != 0) {
        _r.arm(s.route_timer, timeout_override);
    } else if (act->timeout && act->timeout->count() > 0) {
        _r.arm(s.route_timer, static_cast<nanos>(act->timeout->count()));
    }
    if (s.fault_delay != 0) {
        _r.arm(s.retry_timer, s.fault_delay); // the retry timer doubles as the fault delay
        return;
    }
    start_upstream(d);
}

void engine_impl::on_request_body(down_conn& d, std::string_view data) noexcept
{
    stream& s = d.st;
    if (!d.has_stream || s.local || s.discard_body) {
        return;
    }
    if (s.req_chunked) {
        if (data.empty()) {
            return;
        }
        char* p = s.req.reserve(data.size() + 24);
        (void)p;
        s.req.append_uint(data.size(), 16);
        s.req.append("\r\n"sv);
        s.req.append(data);
        s.req.append("\r\n"sv);
    } else {
        s.req.append(data);
    }
    if (s.req.size() > replay_limit) {
        s.req_replayable = false;
    }
    if (s.up != nullptr && !s.up->connecting) {
        up_flush(*s.up);
    }
}

void engine_impl::on_request_done(down_conn& d) noexcept
{
    stream& s = d.st;
    if (!d.has_stream) {
        return;
    }
    if (!s.local && s.req_chunked) {
        s.req.append("0\r\n\r\n"sv);
        if (s.up != nullptr && !s.up->connecting) {
            up_flush(*s.up);
        }
    }
    s.req_done = true;
    if (s.nmirrors != 0 && !s.local && s.req_replayable) {
        for (uint8_t i = 0; i < s.nmirrors; ++i) {
            start_mirror(s, s.mirrors[i]);
        }
    }
    s.nmirrors = 0;
    if (s.resp_done) {
        finish_stream(d);
    }
}

void engine_impl::start_mirror(const stream& s, uint32_t ci) noexcept
{
    if (ci == no_index || ci >= s.cfg->clusters.size() || s.cfg->clusters[ci].c->missing) {
        _stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    cluster_rt& c = s.cfg->clusters[ci];
    lb_request lr;
    lr.random = rand();
    const uint32_t ep = c.lb.pick(lr, c.active);
    if (ep >= c.hosts.size() || !c.hosts[ep]->usable || c.tls) {
        _stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
        return; // TODO(l7): mirrors to TLS-originating clusters
    }
    host_rt* h = c.hosts[ep];
    if (_mirror_all.size() - _mirror_free.size() >= max_mirrors_in_flight) {
        _stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
        return; // a slow mirror must not take every descriptor
    }
    const int fd =
        socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        _stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    set_nonblock_opts(fd);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&h->addr), h->addr_len) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        _stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    mirror_conn* m = nullptr;
    if (!_mirror_free.empty()) {
        m = _mirror_free.back();
        _mirror_free.pop_back();
    } else {
        auto o = std::make_unique<mirror_conn>();
        o->eng = this;
        o->deadline.set(
            [](timer&, void* ctx) {
                auto* mc = static_cast<mirror_conn*>(ctx);
                mc->eng->_stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
                mc->eng->mirror_close(*mc);
            },
            o.get());
        m = o.get();
        _mirror_all.push_back(std::move(o));
    }
    m->fd = fd;
    m->closed = false;
    m->connecting = true;
    m->in.clear();
    m->out.clear();
    m->parser.reset();
    m->parser.set_request_method(s.method);
    // The copy: the request as sent upstream, with the authority's host suffixed "-shadow"
    // (Envoy's rule; the port stays).
    const std::string_view req = s.req.view();
    const size_t line_end = req.find("\r\n");
    const size_t host_end =
        line_end == std::string_view::npos ? line_end : req.find("\r\n", line_end + 2);
    if (host_end == std::string_view::npos) {
        m->out.append(req);
    } else {
        const std::string_view host_line = req.substr(line_end + 2, host_end - line_end - 2);
        std::string_view value = host_line.substr(host_line.find(':') + 1);
        while (!value.empty() && value.front() == ' ') {
            value.remove_prefix(1);
        }
        const std::string_view host = snapshot::authority_host(value);
        const size_t brackets = !value.empty() && value.front() == '[' ? 2 : 0;
        const std::string_view port = value.substr(std::min(value.size(), host.size() + brackets));

        m->out.append(req.substr(0, line_end + 2));
        m->out.append("host: "sv);
        m->out.append(value.substr(0, value.size() - port.size()));
        m->out.append("-shadow"sv);
        m->out.append(port);
        m->out.append(req.substr(host_end));
    }
    if (!_r.add(fd, m, EPOLLIN | EPOLLOUT | EPOLLRDHUP).ok()) {
        close(fd);
        m->fd = -1;
        m->closed = true;
        _mirror_free.push_back(m);
        return;
    }
    _stats.mirror_total.fetch_add(1, std::memory_order_relaxed);
    _r.arm(m->deadline, 10ULL * 1'000'000'000ULL);
}

void mirror_conn::on_io(uint32_t events) noexcept
{
    if (closed) {
        return;
    }
    if (connecting) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
            eng->_stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
            eng->mirror_close(*this);
            return;
        }
        if ((events & EPOLLOUT) == 0) {
            return;
        }
        connecting = false;
    }
    while (!out.empty()) {
        const ssize_t n = send(fd, out.view().data(), out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            out.consume(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        eng->_stats.mirror_failed.fetch_add(1, std::memory_order_relaxed);
        eng->mirror_close(*this);
        return;
    }
    for (;;) {
        char* p = in.reserve(read_chunk);
        const ssize_t n = recv(fd, p, read_chunk, 0);
        if (n > 0) {
            in.commit(static_cast<size_t>(n));
            // Parse only to find the end of the answer; its bytes are dropped as they come.
            for (;;) {
                const http1_event ev = parser.parse(in.view());
                in.consume(ev.consumed);
                if (ev.kind == http1_event_kind::done && !parser.message().informational) {
                    eng->mirror_close(*this);
                    return;
                }
                if (ev.kind == http1_event_kind::error) {
                    eng->mirror_close(*this);
                    return;
                }
                if (ev.kind == http1_event_kind::need_more) {
                    break;
                }
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        eng->mirror_close(*this); // the mirror closed: its answer (if any) is over
        return;
    }
}

void mirror_conn::on_deferred() noexcept
{
    eng->_mirror_free.push_back(this);
}

void engine_impl::mirror_close(mirror_conn& m) noexcept
{
    if (m.closed) {
        return;
    }
    m.closed = true;
    _r.cancel(m.deadline);
    _r.remove(m.fd);
    close(m.fd);
    m.fd = -1;
    _r.defer(&m);
}

void engine_impl::local_reply(down_conn& d, uint16_t status, std::string_view body, uint32_t flags,
                              std::string_view location, bool overloaded) noexcept
{
    stream& s = d.st;
    s.status = status;
    s.flags |= flags;
    s.resp_started = true;
    if (!s.req_done) {
        s.discard_body = true;
    }
    char head[1024];
    http1_writer w({head, sizeof(head)});
    w.status_line(status);
    if (!location.empty() && location.size() < 700) {
        w.header("location"sv, location);
    }
    if (overloaded) {
        w.header("x-envoy-overloaded"sv, "true"sv);
    }
    if (!body.empty()) {
        w.header("content-type"sv, "text/plain"sv);
    }
    w.content_length(body.size());
    if (s.close_after) {
        w.header("connection"sv, "close"sv);
    }
    w.end_headers();
    down_write(d, w.view());
    if (!body.empty() && !s.req_head_only) {
        down_write(d, body);
    }
    s.resp_done = true;
    down_flush(d);
    if (d.closed) {
        return;
    }
    if (s.req_done) {
        finish_stream(d);
    }
}

void engine_impl::direct_reply(down_conn& d, uint16_t status, std::string_view body) noexcept
{
    stream& s = d.st;
    s.status = status;
    s.resp_started = true;
    if (!s.req_done) {
        s.discard_body = true;
    }
    buffer& b = _head;
    b.clear();
    b.append("HTTP/1.1 "sv);
    b.append_uint(status);
    b.append(" "sv);
    b.append(reason_phrase(status));
    b.append("\r\n"sv);
    if (s.dec.action != nullptr) {
        write_header_ops(b, s.dec.action->headers.response);
    }
    if (!body.empty()) {
        b.header("content-type"sv, "text/plain"sv);
    }
    b.append("content-length: "sv);
    b.append_uint(body.size());
    b.append("\r\n"sv);
    if (s.close_after) {
        b.header("connection"sv, "close"sv);
    }
    b.append("\r\n"sv);
    if (!s.req_head_only) {
        b.append(body);
    }
    down_write(d, b.view());
    b.clear();
    s.resp_done = true;
    down_flush(d);
    if (d.closed) {
        return;
    }
    if (s.req_done) {
        finish_stream(d);
    }
}

void engine_impl::cors_preflight(down_conn& d, const snapshot::cors_action& c) noexcept
{
    stream& s = d.st;
    s.status = 200;
    s.resp_started = true;
    if (!s.req_done) {
        s.discard_body = true;
    }
    buffer& b = _head;
    b.clear();
    b.append("HTTP/1.1 200 OK\r\n"sv);
    b.header("access-control-allow-origin"sv, s.origin);
    auto join = [&](std::string_view name, const std::vector<std::string>& v) {
        if (v.empty()) {
            return;
        }
        b.append(name);
        b.append(": "sv);
        for (size_t i = 0; i < v.size(); ++i) {
            if (i > 0) {
                b.append(","sv);
            }
            b.append(v[i]);
        }
        b.append("\r\n"sv);
    };
    join("access-control-allow-methods"sv, c.allow_methods);
    join("access-control-allow-headers"sv, c.allow_headers);
    if (c.max_age) {
        b.append("access-control-max-age: "sv);
        b.append_uint(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::seconds>(*c.max_age).count()));
        b.append("\r\n"sv);
    }
    if (c.allow_credentials && *c.allow_credentials) {
        b.header("access-control-allow-credentials"sv, "true"sv);
    }
    b.append("content-length: 0\r\n"sv);
    if (s.close_after) {
        b.header("connection"sv, "close"sv);
    }
    b.append("\r\n"sv);
    down_write(d, b.view());
    b.clear();
    s.resp_done = true;
    down_flush(d);
    if (d.closed) {
        return;
    }
    if (s.req_done) {
        finish_stream(d);
    }
}

void engine_impl::finish_stream(down_conn& d) noexcept
{
    stream& s = d.st;
    _r.cancel(s.route_timer);
    _r.cancel(s.retry_timer);
    _r.cancel(s.try_timer);
    switch (s.status / 100) {
    case 1:
        _stats.downstream_rq_1xx.fetch_add(1, std::memory_order_relaxed);
        break;
    case 2:
        _stats.downstream_rq_2xx.fetch_add(1, std::memory_order_relaxed);
        break;
    case 3:
        _stats.downstream_rq_3xx.fetch_add(1, std::memory_order_relaxed);
        break;
    case 4:
        _stats.downstream_rq_4xx.fetch_add(1, std::memory_order_relaxed);
        break;
    default:
        _stats.downstream_rq_5xx.fetch_add(1, std::memory_order_relaxed);
        break;
    }
    uncount_active(s);
    release_counts(s);
    log_request(d);
    s.crt = nullptr;
    s.host = nullptr;
    s.cfg.reset();
    s.req.clear();
    d.has_stream = false;
    if (s.close_after) {
        d.closing = true;
        if (d.out.empty()) {
            down_close(d);
        } else {
            _r.arm(d.idle_timer, drain_timeout); // a client that never reads is let go
        }
        return;
    }
    _r.arm(d.idle_timer, _s.downstream_idle_timeout);
    // Pipelined requests may already be buffered.
    if (!d.in.empty() || d.read_eof) {
        down_process(d);
    }
}

// ------------------------------------------------------------------------ TCP and TLS routes

void engine_impl::tcp_route(down_conn& d) noexcept
{
    // A TLS-passthrough listener routes by the ClientHello's SNI: wait until it is whole.
    std::string_view sni;
    char lower[256];
    const bool passthrough = d.info->kind == snapshot::listener_kind::tls_passthrough;
    if (passthrough) {
        const sni_result h =
            parse_client_hello({reinterpret_cast<const uint8_t*>(d.in.view().data()), d.in.size()});
        if (h.status == sni_status::need_more && !d.read_eof) {
            return;
        }
        if (h.status != sni_status::ok) {
            _stats.downstream_tls_error.fetch_add(1, std::memory_order_relaxed);
            down_close(d);
            return;
        }
        if (h.has_sni && h.sni.size() < sizeof(lower)) {
            for (size_t i = 0; i < h.sni.size(); ++i) {
                lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(h.sni[i])));
            }
            sni = {lower, h.sni.size()};
        }
    }
    stream& s = begin_stream(d);
    s.req_done = true;
    s.tcp_proxy = true;
    s.bytes_in = d.in.size();
    s.method.assign(passthrough ? "TLS"sv : "TCP"sv);
    s.path.assign(sni);
    s.authority.clear();
    s.xff.clear();
    s.user_agent.clear();
    s.request_id.clear();
    s.origin.clear();
    if (_log_fd >= 0) {
        s.start_time.assign(log_time());
    }
    if (!s.cfg) {
        down_close(d);
        return;
    }
    const snapshot::snapshot& snap = *s.cfg->cfg->snap;
    std::string_view gateway =
        d.sni_gateway.empty() ? std::string_view(d.info->single_gateway) : d.sni_gateway;
    if (gateway.empty() && !d.info->servers.empty()) {
        gateway = d.info->servers.front().first;
    }
    const snapshot::l4_decision dec =
        passthrough ? snapshot::match_tls(snap, gateway, d.info->port, sni, d.local)
                    : snapshot::match_tcp(snap, gateway, d.info->port, d.local);
    if (dec.route == nullptr || dec.route->destinations.empty() || dec.route->total_weight == 0) {
        _stats.tcp_no_route.fetch_add(1, std::memory_order_relaxed);
        s.flags |= rf_nr;
        down_close(d);
        return;
    }
    start_tcp_upstream(d, *dec.route);
}

void engine_impl::start_tcp_upstream(down_conn& d, const snapshot::l4_route& route) noexcept
{
    stream& s = d.st;
    uint64_t w = rand() % route.total_weight;
    for (const auto& dst : route.destinations) {
        if (w < dst.weight) {
            s.dest = &dst;
            break;
        }
        w -= dst.weight;
    }
    if (s.dest == nullptr) {
        s.dest = &route.destinations.back();
    }
    const uint32_t ci = snapshot::destination_cluster(*s.dest, d.info->port);
    if (ci == no_index || ci >= s.cfg->clusters.size() || s.cfg->clusters[ci].c->missing) {
        _stats.no_cluster.fetch_add(1, std::memory_order_relaxed);
        s.flags |= rf_nc;
        down_close(d);
        return;
    }
    s.crt = &s.cfg->clusters[ci];
    if (!pick_host(d)) {
        _stats.no_healthy_upstream.fetch_add(1, std::memory_order_relaxed);
        s.flags |= rf_uh;
        down_close(d);
        return;
    }
    ++s.attempts;
    count_active(s);
    connect_for(d); // resolves a DNS-named endpoint first; a failure closes the client
}

// ------------------------------------------------------------------------ upstream

bool engine_impl::pick_host(down_conn& d) noexcept
{
    stream& s = d.st;
    cluster_rt& c = *s.crt;
    for (uint32_t tries = 0; tries < 5; ++tries) {
        lb_request lr;
        lr.hash = s.hash;
        lr.random = rand();
        if (s.attempts > 0 && s.retry != nullptr && s.retry->remote_localities) {
            // retryRemoteLocalities: avoid the levels already tried.
            for (uint32_t t : s.tried) {
                if (t != no_index && t < c.c->plan.level_of.size() && c.c->plan.level_of[t] < 64) {
                    lr.exclude_levels |= uint64_t{1} << c.c->plan.level_of[t];
                }
            }
        }
        const uint32_t ep = c.lb.pick(lr, c.active);
        if (ep == no_endpoint_index || ep >= c.hosts.size()) {
            return false;
        }
        bool seen = false;
        for (uint32_t t : s.tried) {
            seen = seen || t == ep;
        }
        // retryIgnorePreviousHosts: avoid hosts already tried, when another exists.
        if (seen && s.attempts > 0 && !s.hash && tries + 1 < 5) {
            continue;
        }
        s.ep = ep;
        s.host = c.hosts[ep];
        return true;
    }
    return false;
}

void engine_impl::overflow(down_conn& d) noexcept
{
    stream& s = d.st;
    _stats.upstream_rq_overflow.fetch_add(1, std::memory_order_relaxed);
    s.local = true;
    s.close_after = s.close_after || !s.req_done;
    local_reply(d, 503,
                "upstream connect error or disconnect/reset before headers. reset reason: "
                "overflow"sv,
                rf_uo, {}, true);
}

void engine_impl::start_upstream(down_conn& d) noexcept
{
    stream& s = d.st;
    cluster_state& cs = *s.crt->st;
    if (!s.rq_counted) {
        // Concurrent requests (http2MaxRequests applies to every protocol, as in Envoy).
        if (cs.rq_active >= cs.max_requests) {
            cs.rq_overflow.fetch_add(1, std::memory_order_relaxed);
            overflow(d);
            return;
        }
        ++cs.rq_active;
        s.rq_counted = true;
        cs.rq_total.fetch_add(1, std::memory_order_relaxed);
    }
    if (!pick_host(d)) {
        _stats.no_healthy_upstream.fetch_add(1, std::memory_order_relaxed);
        s.local = true;
        local_reply(d, 503, "no healthy upstream", rf_uh);
        return;
    }
    if (s.attempts < 4) {
        s.tried[s.attempts] = s.ep;
    }
    ++s.attempts;
    count_active(s);
    _stats.upstream_rq_total.fetch_add(1, std::memory_order_relaxed);
    if (s.retry != nullptr && s.retry->per_try_timeout != 0) {
        _r.arm(s.try_timer, s.retry->per_try_timeout);
    }
    // A pooled connection first (most recently used: warm in the kernel and the server).
    std::vector<up_conn*>& idle = *s.crt->idle[s.ep];
    while (!idle.empty()) {
        up_conn* u = idle.back();
        idle.pop_back();
        u->in_pool = false;
        u->pool = nullptr;
        _r.cancel(u->idle_timer);
        if (u->closed) {
            continue;
        }
        if (u->hup) {
            up_close(*u);
            continue;
        }
        _stats.upstream_cx_reused.fetch_add(1, std::memory_order_relaxed);
        u->owner = &d;
        s.up = u;
        s.reused = true;
        up_ready(*u, d);
        return;
    }
    s.reused = false;
    if (cs.cx >= cs.max_connections) {
        // maxConnections reached: wait for a connection (http1MaxPendingRequests), or 503 UO.
        if (cs.pending.size() >= cs.max_pending) {
            cs.rq_pending_overflow.fetch_add(1, std::memory_order_relaxed);
            overflow(d);
            return;
        }
        cs.pending.push_back(&d);
        s.pending = true;
        return;
    }
    connect_for(d);
}

void engine_impl::connect_for(down_conn& d) noexcept
{
    stream& s = d.st;
    s.reused = false;
    host_rt* h = s.host;
    if (h->dns) {
        const bool stale = !h->usable || _r.now() - h->resolved_at > dns_refresh;
        if (stale && !h->resolving) {
            h->resolving = true;
            _resolver.request(h->dns_name);
        }
        if (!h->usable) {
            h->waiting.push_back(&d); // connects when the name resolves (or fails: 503 UF)
            s.dns_wait = true;
            return;
        }
    }
    up_conn* u =
        connect_to(s.host, *s.crt, s.ep < s.crt->gauges.size() ? s.crt->gauges[s.ep] : nullptr);
    if (u == nullptr) {
        upstream_failed(d, rf_uf, true);
        return;
    }
    u->owner = &d;
    s.up = u;
}

void engine_impl::on_resolved(const dns_resolver::answer& a) noexcept
{
    for (auto& [key, hp] : _hosts) {
        host_rt& h = *hp;
        if (!h.dns || h.dns_name != a.name) {
            continue;
        }
        h.resolving = false;
        if (a.len != 0) {
            h.addr = a.addr;
            h.addr_len = a.len;
            if (h.addr.ss_family == AF_INET) {
                reinterpret_cast<sockaddr_in*>(&h.addr)->sin_port = htons(h.port);
            } else {
                reinterpret_cast<sockaddr_in6*>(&h.addr)->sin6_port = htons(h.port);
            }
            h.usable = true;
            h.resolved_at = _r.now();
        } else if (!h.usable) {
            _stats.dns_failures.fetch_add(1, std::memory_order_relaxed);
        }
        // A failed refresh keeps the last good address (as Envoy keeps its hosts).
        std::vector<down_conn*> waiting;
        waiting.swap(h.waiting);
        for (down_conn* d : waiting) {
            if (d->closed || !d->has_stream || !d->st.dns_wait) {
                continue;
            }
            d->st.dns_wait = false;
            if (h.usable) {
                connect_for(*d);
            } else {
                upstream_failed(*d, rf_uf, true);
            }
        }
    }
}

void engine_impl::dispatch_pending(cluster_state& cs) noexcept
{
    if (_down) {
        return;
    }
    while (!cs.pending.empty() && cs.cx < cs.max_connections) {
        down_conn* d = cs.pending.front();
        cs.pending.pop_front();
        d->st.pending = false;
        if (d->closed || !d->has_stream) {
            continue;
        }
        // A connection to its host may have come back to the pool meanwhile.
        std::vector<up_conn*>& idle = *d->st.crt->idle[d->st.ep];
        if (!idle.empty()) {
            up_conn* u = idle.back();
            idle.pop_back();
            u->in_pool = false;
            u->pool = nullptr;
            _r.cancel(u->idle_timer);
            u->owner = d;
            d->st.up = u;
            d->st.reused = true;
            up_ready(*u, *d);
            continue;
        }
        connect_for(*d);
    }
}

void engine_impl::release_counts(stream& s) noexcept
{
    if (s.dns_wait && s.host != nullptr) {
        auto& w = s.host->waiting;
        w.erase(std::remove_if(w.begin(), w.end(), [&](down_conn* d) { return &d->st == &s; }),
                w.end());
        s.dns_wait = false;
    }
    if (s.crt == nullptr) {
        return;
    }
    cluster_state& cs = *s.crt->st;
    if (s.pending) {
        cs.pending.erase(std::remove_if(cs.pending.begin(), cs.pending.end(),
                                        [&](down_conn* d) { return &d->st == &s; }),
                         cs.pending.end());
        s.pending = false;
    }
    if (s.rq_counted) {
        --cs.rq_active;
        s.rq_counted = false;
    }
    if (s.retry_counted) {
        --cs.retries_active;
        s.retry_counted = false;
    }
}

up_conn* engine_impl::connect_to(host_rt* h, const cluster_rt& c, endpoint_gauges* g) noexcept
{
    if (!h->usable || c.tls_error) {
        return nullptr;
    }
    const int fd =
        socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) {
        return nullptr;
    }
    set_nonblock_opts(fd);
    _stats.upstream_cx_total.fetch_add(1, std::memory_order_relaxed);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&h->addr), h->addr_len) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        _stats.upstream_cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
        return nullptr;
    }
    up_conn* u = alloc_up();
    u->fd = fd;
    u->host = h;
    u->cs = nullptr; // counted in the cluster once registered (below)
    u->gauges = nullptr;
    u->owner = nullptr;
    u->closed = false;
    u->connecting = true;
    u->in_pool = false;
    u->read_blocked = false;
    u->hup = false;
    u->tunnel = false;
    u->requests = 0;
    u->in.clear();
    u->parser.reset();
    if (!_r.add(fd, u, EPOLLIN | EPOLLOUT | EPOLLRDHUP).ok()) {
        close(fd);
        u->fd = -1;
        u->closed = true;
        _r.defer(u);
        return nullptr;
    }
    ++_up_active;
    _stats.upstream_cx_active.fetch_add(1, std::memory_order_relaxed);
    u->cs = c.st;
    u->gauges = g;
    if (g != nullptr) {
        gauge_add(g->cx_active, 1);
    }
    ++c.st->cx;
    c.st->cx_gauge.store(c.st->cx, std::memory_order_relaxed);
    c.st->cx_total.fetch_add(1, std::memory_order_relaxed);
    _r.arm(u->connect_timer, c.connect_timeout);
    if (c.tls) {
        SSL* ssl = c.tls->new_ssl(fd, c.sni);
        if (ssl == nullptr) {
            up_close(*u);
            return nullptr;
        }
        u->tls = tls_stream(ssl);
        u->handshaking = true;
    }
    return u;
}

void up_conn::on_io(uint32_t events) noexcept
{
    if (closed) {
        return;
    }
    engine_impl* e = eng;
    if (connecting) {
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) {
            return;
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (!handshaking) {
            e->_r.cancel(connect_timer);
        }
        if (soerr != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
            e->_r.cancel(connect_timer);
            e->_stats.upstream_cx_connect_fail.fetch_add(1, std::memory_order_relaxed);
            down_conn* d = owner;
            owner = nullptr;
            if (d != nullptr) {
                d->st.up = nullptr;
            }
            e->up_close(*this);
            if (d != nullptr) {
                e->upstream_failed(*d, rf_uf, true);
            }
            return;
        }
        connecting = false;
        if (!handshaking && owner != nullptr) {
            e->up_ready(*this, *owner);
            return;
        }
    }
    if (handshaking) {
        // The connect timer keeps running: it bounds the TLS handshake too.
        const tls_io r = tls.handshake();
        if (r.failed() || r.closed) {
            e->_stats.upstream_tls_error.fetch_add(1, std::memory_order_relaxed);
            e->_r.cancel(connect_timer);
            down_conn* d = owner;
            owner = nullptr;
            if (d != nullptr) {
                d->st.up = nullptr;
            }
            e->up_close(*this);
            if (d != nullptr) {
                e->upstream_failed(*d, rf_uf, true);
            }
            return;
        }
        if (r.want != tls_want::none) {
            return;
        }
        handshaking = false;
        e->_r.cancel(connect_timer);
        if (owner != nullptr) {
            e->up_ready(*this, *owner);
        }
        return;
    }
    if (owner == nullptr) {
        // Idle in the pool: any readiness means the server closed it (or sent garbage).
        if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
            e->up_close(*this);
        }
        return;
    }
    if (tunnel) {
        e->tunnel_pump(*owner, *this);
        return;
    }
    if ((events & EPOLLOUT) != 0) {
        e->up_flush(*this);
        if (closed) {
            return;
        }
    }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
        hup = hup || (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
        e->up_read(*this);
    }
}

void engine_impl::up_ready(up_conn& u, down_conn& d) noexcept
{
    if (d.st.tcp_proxy) {
        // A TCP/TLS route: the connection becomes one tunnel (the ClientHello, or whatever
        // the client sent already, goes first).
        _stats.tunnels.fetch_add(1, std::memory_order_relaxed);
        d.st.tunnel = true;
        d.st.resp_started = true;
        u.tunnel = true;
        d.tunnel_peer = &u;
        tunnel_pump(d, u);
        return;
    }
    ++u.requests;
    u.parser.reset();
    u.parser.set_request_method(d.st.method);
    d.st.req_sent = 0;
    // Send only: the response is read on the connection's next EPOLLIN (a pooled
    // connection had no pending bytes, a new one has just connected), so it is never handled
    // in the middle of parsing the request that caused it.
    up_flush(u);
}

void engine_impl::up_flush(up_conn& u) noexcept
{
    down_conn* d = u.owner;
    if (d == nullptr || u.connecting || u.closed) {
        return;
    }
    stream& s = d->st;
    while (s.req_sent < s.req.size()) {
        const std::string_view pending = s.req.view().substr(s.req_sent);
        const ssize_t n = io_send(u.fd, u.tls, pending.data(), pending.size());
        if (n > 0) {
            s.req_sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        // The upstream went away while we were sending: reset before a response.
        d->st.up = nullptr;
        u.owner = nullptr;
        up_close(u);
        upstream_failed(*d, rf_uc, false);
        return;
    }
    // Bytes already on the wire are dropped unless the request may be sent again.
    if (!s.req_replayable && s.req_sent > 0) {
        s.req.consume(s.req_sent);
        s.req_sent = 0;
    }
    if (!d->closed && !s.req_done && !d->processing && !d->in.empty()) {
        down_process(*d); // the body was paused on the high watermark
    }
}

void engine_impl::up_read(up_conn& u) noexcept
{
    while (!u.closed && u.owner != nullptr) {
        down_conn& d = *u.owner;
        if (d.out.size() > high_watermark) {
            u.read_blocked = true; // resumed by down_flush
            return;
        }
        char* p = u.in.reserve(min_read);
        const size_t space = u.in.data.size() - u.in.end;
        const ssize_t n = io_recv(u.fd, u.tls, p, space);
        if (n > 0) {
            u.in.commit(static_cast<size_t>(n));
            up_process(u, d);
            down_flush(d);
            // A short read emptied the socket: the next edge brings more (TLS may hold
            // decrypted bytes, and a seen hang-up needs the read that returns 0).
            if (static_cast<size_t>(n) < space && !u.tls.valid() && !u.hup) {
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
        // EOF or error.
        const http1_event ev = u.parser.finish();
        down_conn* owner = u.owner;
        stream& s = owner->st;
        if (ev.kind == http1_event_kind::done && s.resp_started) {
            // A close-delimited body ended.
            if (s.resp_chunked) {
                down_write(*owner, "0\r\n\r\n"sv);
                down_flush(*owner);
            } else {
                s.close_after = true;
            }
            s.up = nullptr;
            u.owner = nullptr;
            up_close(u);
            s.resp_done = true;
            if (s.req_done) {
                finish_stream(*owner);
            } else {
                s.close_after = true;
                s.discard_body = true;
            }
            return;
        }
        s.up = nullptr;
        u.owner = nullptr;
        up_close(u);
        if (!s.resp_started) {
            upstream_failed(*owner, rf_uc, false);
        } else {
            s.flags |= rf_uc;
            down_close(*owner);
        }
        return;
    }
}

void engine_impl::up_process(up_conn& u, down_conn& d) noexcept
{
    stream& s = d.st;
    bool again = false; // see down_process: a bodiless message ends without new bytes
    while (!u.closed && u.owner == &d && (!u.in.empty() || again)) {
        again = false;
        const http1_event ev = u.parser.parse(u.in.view());
        switch (ev.kind) {
        case http1_event_kind::need_more:
            u.in.consume(ev.consumed);
            return;
        case http1_event_kind::headers:
            on_response_head(u, d);
            if (u.closed || u.owner != &d) {
                return;
            }
            u.in.consume(ev.consumed);
            if (s.tunnel) {
                tunnel_pump(d, u); // bytes after the 101 head already belong to the tunnel
                return;
            }
            again = true;
            break;
        case http1_event_kind::body:
            if (s.resp_chunked) {
                char hdr[24];
                auto r = std::to_chars(hdr, hdr + 20, ev.data.size(), 16);
                *r.ptr++ = '\r';
                *r.ptr++ = '\n';
                down_write(d, {hdr, static_cast<size_t>(r.ptr - hdr)});
                down_write(d, ev.data);
                down_write(d, "\r\n"sv);
            } else {
                down_write(d, ev.data);
            }
            u.in.consume(ev.consumed);
            if (d.closed) {
                return;
            }
            again = true;
            break;
        case http1_event_kind::done: {
            u.in.consume(ev.consumed);
            if (u.parser.message().informational) {
                again = true;
                break; // a 1xx was relayed; the final response follows
            }
            if (s.resp_chunked) {
                down_write(d, "0\r\n\r\n"sv);
            }
            const bool reusable = u.parser.message().keep_alive && s.req_done &&
                                  s.req_sent >= s.req.size() && u.in.empty();
            s.resp_done = true;
            s.up = nullptr;
            up_release(u, d, reusable);
            if (!s.req_done) {
                // The upstream answered before the request ended: nothing more of it is
                // needed; the client connection closes once the answer is written.
                s.req_done = true;
                s.close_after = true;
                d.in.clear();
            }
            finish_stream(d);
            return;
        }
        case http1_event_kind::error:
            _stats.upstream_resp_bad.fetch_add(1, std::memory_order_relaxed);
            s.up = nullptr;
            u.owner = nullptr;
            up_close(u);
            if (!s.resp_started) {
                s.close_after = s.close_after || !s.req_done;
                local_reply(d, 502, "upstream protocol error", rf_upe);
            } else {
                s.flags |= rf_upe;
                down_close(d);
            }
            return;
        }
    }
}

void engine_impl::on_response_head(up_conn& u, down_conn& d) noexcept
{
    const http1_message& m = u.parser.message();
    stream& s = d.st;
    if (!m.informational) {
        report(s, m.status == 502 || m.status == 503 || m.status == 504
                      ? health::outcome::http_gateway_error
                      : (m.status >= 500 ? health::outcome::http_5xx : health::outcome::success));
    }

    // Retry on the response status before anything reaches the client.
    _r.cancel(s.try_timer);
    if (!m.informational && s.retry != nullptr && s.attempts > s.retries_allowed &&
        s.attempts > 1 && m.status >= 500) {
        s.flags |= rf_urx; // the retries are spent: this answer goes to the client
    }
    if (!m.informational && s.retry != nullptr && s.attempts <= s.retries_allowed &&
        s.req_replayable && s.req_done && m.status >= 400) {
        const retry_rules& r = *s.retry;
        bool again = (r.on_5xx && m.status >= 500) ||
                     (r.gateway_error && (m.status == 502 || m.status == 503 || m.status == 504)) ||
                     (r.retriable_4xx && m.status == 409);
        if (!again && r.status_codes) {
            for (uint32_t c : r.codes) {
                again = again || c == m.status;
            }
        }
        // maxRetries spent: the response goes to the client as it is.
        if (again && retry_budget(s)) {
            s.up = nullptr;
            u.owner = nullptr;
            up_close(u); // the rest of this response is not wanted
            schedule_retry(d);
            return;
        }
    }

    const bool informational = m.informational;
    if (!informational) {
        s.status = m.status;
        s.resp_started = true;
    }
    const snapshot::header_ops* rops =
        s.dec.action != nullptr ? &s.dec.action->headers.response : nullptr;
    const snapshot::header_ops* dops = s.dest != nullptr ? &s.dest->headers.response : nullptr;
    buffer& b = _head;
    b.clear();
    b.append("HTTP/1.1 "sv);
    b.append_uint(m.status);
    b.append(" "sv);
    b.append(m.reason.empty() ? reason_phrase(m.status) : m.reason);
    b.append("\r\n"sv);
    const bool switching = m.status == 101 || (m.connect && s.upgrade);
    if (!informational && !switching && !s.req_done) {
        // The upstream answers before the request ended (413, 401...): the connection's state
        // is unknown after this exchange, so it closes once the answer is out (Envoy).
        s.close_after = true;
    }
    for (const http1_header& h : m.headers) {
        const std::string_view n = h.name;
        if (hop_by_hop(n)) {
            // Keep Content-Length where no body follows (HEAD, 304): it describes the
            // resource. Keep Upgrade on a 101.
            if (iequals(n, "content-length"sv) && m.framing == body_framing::none &&
                !informational) {
                b.header(n, h.value);
            } else if (switching && iequals(n, "upgrade"sv)) {
                b.header(n, h.value);
            }
            continue;
        }
        if ((rops != nullptr && removed_by(*rops, n)) ||
            (dops != nullptr && removed_by(*dops, n)) || named_by_connection(m, n)) {
            continue;
        }
        b.header(n, h.value);
    }
    if (!informational) {
        if (rops != nullptr) {
            write_header_ops(b, *rops);
        }
        if (dops != nullptr) {
            write_header_ops(b, *dops);
        }
        if (!s.set_cookie.empty()) {
            b.header("set-cookie"sv, s.set_cookie);
        }
        if (!s.origin.empty() && s.dec.action != nullptr && s.dec.action->cors) {
            const snapshot::cors_action& c = *s.dec.action->cors;
            if (snapshot::cors_origin_allowed(c, s.origin)) {
                b.header("access-control-allow-origin"sv, s.origin);
                if (c.allow_credentials && *c.allow_credentials) {
                    b.header("access-control-allow-credentials"sv, "true"sv);
                }
                if (!c.expose_headers.empty()) {
                    b.append("access-control-expose-headers: "sv);
                    for (size_t i = 0; i < c.expose_headers.size(); ++i) {
                        b.append(i > 0 ? ","sv : ""sv);
                        b.append(c.expose_headers[i]);
                    }
                    b.append("\r\n"sv);
                }
            }
        }
    }
    if (switching) {
        if (m.status == 101) {
            b.header("connection"sv, "upgrade"sv);
        }
    } else if (!informational) {
        s.resp_chunked = false;
        if (m.framing == body_framing::content_length) {
            b.append("content-length: "sv);
            b.append_uint(m.content_length);
            b.append("\r\n"sv);
        } else if (m.framing == body_framing::chunked || m.framing == body_framing::until_close) {
            // Chunked to an HTTP/1.1 client (re-chunking a close-delimited body keeps the
            // connection); an HTTP/1.0 client cannot take chunks (RFC 9112 §6.1): raw bytes,
            // then close.
            if (s.version_minor >= 1) {
                b.append("transfer-encoding: chunked\r\n"sv);
                s.resp_chunked = true;
            } else {
                s.close_after = true;
            }
        }
        if (s.close_after) {
            b.header("connection"sv, "close"sv);
        } else if (s.version_minor == 0) {
            b.header("connection"sv, "keep-alive"sv);
        }
    }
    b.append("\r\n"sv);
    down_write(d, b.view());
    b.clear();
    if (switching && !d.closed) {
        // The exchange becomes a byte tunnel both ways (WebSocket, CONNECT); up_process
        // starts pumping once the head's bytes are consumed.
        _stats.tunnels.fetch_add(1, std::memory_order_relaxed);
        s.tunnel = true;
        u.tunnel = true;
        d.tunnel_peer = &u;
        _r.cancel(s.route_timer);
    }
}

void engine_impl::tunnel_pump(down_conn& d, up_conn& u) noexcept
{
    // Edge-triggered: each direction runs until its source would block (EAGAIN), its sink
    // would block (then the sink's EPOLLOUT resumes it), or its source ended.
    // Client -> upstream.
    while (!d.closed && !u.closed) {
        if (!d.in.empty()) {
            const ssize_t n = io_send(u.fd, u.tls, d.in.view().data(), d.in.size());
            if (n > 0) {
                d.in.consume(static_cast<size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                break; // upstream EPOLLOUT resumes
            }
            d.read_eof = true;
            d.in.clear();
            break;
        }
        if (d.read_eof) {
            break;
        }
        char* p = d.in.reserve(read_chunk);
        const ssize_t n = io_recv(d.fd, d.tls, p, read_chunk);
        if (n > 0) {
            d.in.commit(static_cast<size_t>(n));
            d.st.bytes_in += static_cast<uint64_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        d.read_eof = true; // the client finished sending: pass the half-close on
        if (u.tls.valid()) {
            u.tls.shutdown();
        } else {
            shutdown(u.fd, SHUT_WR);
        }
        break;
    }
    // Upstream -> client.
    if (!u.in.empty() && !d.closed) {
        down_write(d, u.in.view());
        u.in.clear();
        down_flush(d);
    }
    char tmp[read_chunk];
    while (!d.closed && !u.closed) {
        if (d.out.size() > high_watermark) {
            u.read_blocked = true; // down_flush resumes
            return;
        }
        const ssize_t n = io_recv(u.fd, u.tls, tmp, sizeof(tmp));
        if (n > 0) {
            down_write(d, {tmp, static_cast<size_t>(n)});
            down_flush(d);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        // The upstream ended the tunnel: flush what is buffered, then close the client.
        d.st.resp_done = true;
        d.st.up = nullptr;
        u.owner = nullptr;
        d.tunnel_peer = nullptr;
        up_close(u);
        d.closing = true;
        if (d.out.empty()) {
            down_close(d);
        }
        return;
    }
}

void engine_impl::upstream_failed(down_conn& d, uint32_t flag, bool connect_failure) noexcept
{
    stream& s = d.st;
    if (d.closed) {
        return;
    }
    if (!connect_failure && s.reused && !s.stale_retried && !s.resp_started && s.req_replayable &&
        !s.tcp_proxy) {
        // A pooled connection the server closed just as the request went out (its FIN
        // crossed the request): nothing reached the application, so the request is sent once
        // more on a fresh connection, outside the retry policy (Envoy's reset-before-request;
        // nginx does the same for keep-alive connections). Not a health signal.
        s.stale_retried = true;
        s.req_sent = 0;
        uncount_active(s);
        --s.attempts;
        _stats.upstream_rq_stale_retry.fetch_add(1, std::memory_order_relaxed);
        start_upstream(d);
        return;
    }
    report(s, connect_failure ? health::outcome::connect_failure
                              : health::outcome::local_origin_failure);
    if (s.tcp_proxy) {
        s.flags |= flag;
        down_close(d); // a TCP proxy has no way to say why: the client sees the close
        return;
    }
    const retry_rules* r = s.retry;
    const bool retriable =
        r != nullptr && s.attempts <= s.retries_allowed && s.req_replayable &&
        ((connect_failure && (r->connect_failure || r->on_5xx || r->gateway_error)) ||
         (!connect_failure && (r->reset || r->on_5xx)));
    if (retriable && (s.req_done || connect_failure) && retry_budget(s)) {
        schedule_retry(d);
        return;
    }
    if (r != nullptr && s.attempts > 1) {
        flag |= rf_urx;
    }
    s.local = true;
    s.close_after = s.close_after || !s.req_done;
    local_reply(d, 503,
                flag & rf_uf ? "upstream connect error or disconnect/reset before headers. "
                               "reset reason: connection failure"sv
                             : "upstream connect error or disconnect/reset before headers. "
                               "reset reason: connection termination"sv,
                flag);
}

void engine_impl::schedule_retry(down_conn& d) noexcept
{
    stream& s = d.st;
    _stats.upstream_rq_retry.fetch_add(1, std::memory_order_relaxed);
    _r.cancel(s.try_timer);
    if (!s.retry_counted) {
        ++s.crt->st->retries_active;
        s.retry_counted = true;
    }
    uncount_active(s);
    s.req_sent = 0;
    const nanos base =
        s.retry != nullptr && s.retry->backoff != 0 ? s.retry->backoff : 25 * ns_per_ms;
    _r.arm(s.retry_timer, retry_backoff(base, s.attempts, rand()));
}

void engine_impl::up_release(up_conn& u, down_conn& d, bool reusable) noexcept
{
    (void)d;
    u.owner = nullptr;
    const cluster_rt* c = d.st.crt;
    // A hang-up that came with the response (the FIN read with it or flagged by epoll) would
    // never be reported again: such a connection is closed, not pooled.
    if (!reusable || u.closed || u.hup || c == nullptr ||
        (c->max_requests_per_connection != 0 && u.requests >= c->max_requests_per_connection)) {
        up_close(u);
        return;
    }
    cluster_state& cs = *u.cs;
    // A request waiting for a connection to this host takes it at once.
    for (auto it = cs.pending.begin(); it != cs.pending.end(); ++it) {
        down_conn* w = *it;
        if (w->closed || !w->has_stream || w->st.host != u.host) {
            continue;
        }
        cs.pending.erase(it);
        w->st.pending = false;
        u.owner = w;
        w->st.up = &u;
        w->st.reused = true;
        up_ready(u, *w);
        return;
    }
    u.in_pool = true;
    u.pool = &cs.idle[u.host];
    u.pool->push_back(&u);
    _r.arm(u.idle_timer, c->idle_timeout);
    // A request waiting for another host needs a connection slot: free this one.
    if (!cs.pending.empty()) {
        up_close(u);
    }
}

void engine_impl::up_close(up_conn& u) noexcept
{
    if (u.closed) {
        return;
    }
    u.closed = true;
    _r.cancel(u.connect_timer);
    _r.cancel(u.idle_timer);
    if (u.in_pool && u.pool != nullptr) {
        auto& idle = *u.pool;
        idle.erase(std::remove(idle.begin(), idle.end(), &u), idle.end());
    }
    u.in_pool = false;
    u.pool = nullptr;
    _r.remove(u.fd);
    if (u.tls.valid()) {
        u.tls.shutdown();
        u.tls = tls_stream();
    }
    u.handshaking = false;
    close(u.fd);
    u.fd = -1;
    u.owner = nullptr;
    --_up_active;
    _stats.upstream_cx_active.fetch_sub(1, std::memory_order_relaxed);
    _r.defer(&u);
    if (u.gauges != nullptr) {
        gauge_add(u.gauges->cx_active, -1);
        u.gauges = nullptr;
    }
    if (u.cs != nullptr) {
        cluster_state* cs = u.cs;
        u.cs = nullptr;
        --cs->cx;
        cs->cx_gauge.store(cs->cx, std::memory_order_relaxed);
        if (!cs->pending.empty()) {
            dispatch_pending(*cs); // a slot opened
        }
    }
}

// ------------------------------------------------------------------------ access log

void engine_impl::log_request(const down_conn& d) noexcept
{
    if (_log_fd < 0) {
        return;
    }
    const stream& s = d.st;
    // Envoy's default format: [%START_TIME%] "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%"
    // %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    // "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"
    // "%UPSTREAM_HOST%"
    buffer& b = _log;
    auto q = [&](std::string_view v) {
        b.append("\""sv);
        b.append(v.empty() ? "-"sv : v);
        b.append("\" "sv);
    };
    b.append("["sv);
    b.append(s.start_time);
    b.append("] \""sv);
    b.append(s.method);
    b.append(" "sv);
    b.append(s.path.size() > 1024 ? std::string_view(s.path).substr(0, 1024) : s.path);
    b.append(s.version_minor == 0 ? " HTTP/1.0\" "sv : " HTTP/1.1\" "sv);
    b.append_uint(s.status);
    b.append(" "sv);
    static const std::pair<uint32_t, std::string_view> names[] = {
        {rf_nr, "NR"},   {rf_uh, "UH"}, {rf_uf, "UF"}, {rf_uc, "UC"},   {rf_ut, "UT"},
        {rf_urx, "URX"}, {rf_nc, "NC"}, {rf_dc, "DC"}, {rf_dpe, "DPE"}, {rf_upe, "UPE"},
        {rf_uo, "UO"},   {rf_di, "DI"}, {rf_fi, "FI"},
    };
    bool any = false;
    for (const auto& [bit, name] : names) {
        if ((s.flags & bit) != 0) {
            b.append(any ? ","sv : ""sv);
            b.append(name);
            any = true;
        }
    }
    b.append(any ? " "sv : "- "sv);
    b.append_uint(s.bytes_in);
    b.append(" "sv);
    b.append_uint(s.bytes_out);
    b.append(" "sv);
    b.append_uint((_r.now() - s.start) / ns_per_ms);
    b.append(" "sv);
    q(s.xff);
    q(s.user_agent);
    q(s.request_id);
    q(s.authority);
    b.append("\""sv);
    b.append(s.host != nullptr ? std::string_view(s.host->name) : "-"sv);
    b.append("\"\n"sv);
    if (b.size() > 48 * 1024) {
        flush_log();
    }
}

void engine_impl::flush_log() noexcept
{
    if (_log_fd < 0) {
        return;
    }
    while (!_log.empty()) {
        const ssize_t n = write(_log_fd, _log.view().data(), _log.size());
        if (n > 0) {
            _log.consume(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        _log.clear(); // a full disk drops log lines, never requests
        break;
    }
}

// ------------------------------------------------------------------------ engine

engine::engine(std::unique_ptr<engine_impl> impl) : _impl(std::move(impl)) {}
engine::~engine() = default;

result<std::unique_ptr<engine>> engine::create(reactor& r, engine_settings settings)
{
    auto impl = std::make_unique<engine_impl>(r, std::move(settings));
    if (auto o = impl->open_log(); !o.ok()) {
        return err(o.err().message);
    }
    return std::unique_ptr<engine>(new engine(std::move(impl)));
}

result<void> engine::apply(std::shared_ptr<const engine_config> cfg)
{
    return _impl->apply(std::move(cfg));
}

void engine::shut_down() noexcept
{
    _impl->shut_down();
}

uint16_t engine::bound_port(uint32_t port) const noexcept
{
    return _impl->bound_port(port);
}

const engine_stats& engine::stats() const noexcept
{
    return _impl->_stats;
}

std::optional<cluster_counters> engine::cluster_stats(std::string_view name) const
{
    std::lock_guard<std::mutex> g(_impl->_clusters_mu);
    auto it = _impl->_clusters.find(name);
    if (it == _impl->_clusters.end()) {
        return std::nullopt;
    }
    const cluster_state& c = *it->second;
    cluster_counters out;
    out.rq_total = c.rq_total.load(std::memory_order_relaxed);
    out.cx_total = c.cx_total.load(std::memory_order_relaxed);
    out.cx_active = c.cx_gauge.load(std::memory_order_relaxed);
    out.rq_pending_overflow = c.rq_pending_overflow.load(std::memory_order_relaxed);
    out.rq_overflow = c.rq_overflow.load(std::memory_order_relaxed);
    out.retry_overflow = c.retry_overflow.load(std::memory_order_relaxed);
    return out;
}

std::optional<endpoint_counters> engine::endpoint_stats(std::string_view cluster,
                                                        uint64_t endpoint_id) const
{
    std::lock_guard<std::mutex> g(_impl->_clusters_mu);
    auto it = _impl->_clusters.find(cluster);
    if (it == _impl->_clusters.end()) {
        return std::nullopt;
    }
    auto e = it->second->endpoints.find(endpoint_id);
    if (e == it->second->endpoints.end()) {
        return std::nullopt;
    }
    endpoint_counters out;
    out.cx_active = e->second.cx_active.load(std::memory_order_relaxed);
    out.rq_active = e->second.rq_active.load(std::memory_order_relaxed);
    return out;
}

uint64_t engine::active_check_version() const noexcept
{
    return _impl->_checker.version();
}

std::vector<uint64_t> engine::active_check_failed() const
{
    return _impl->_checker.failed();
}

size_t engine::active_streams() const noexcept
{
    return _impl->_down_active + _impl->_up_active;
}

void engine::flush_access_log() noexcept
{
    _impl->flush_log();
}

} // namespace sluice::l7
