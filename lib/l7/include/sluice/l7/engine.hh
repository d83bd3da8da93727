#pragma once
/// @file
/// The L7 engine (DESIGN.md §1-2): an HTTP/1.1 reverse proxy that enforces the snapshot's
/// VirtualService routes and DestinationRule policies on the slow-path core. It listens on
/// kernel sockets (the kernel terminated TCP on the L7 VIPs behind the exception path),
/// parses each request with the strict codec (http1.hh), routes it with the shared matcher
/// (snapshot/route_match.hh, the one `sluicectl route check` uses), balances it over the
/// cluster's healthy endpoints (lb.hh: locality levels, then the DestinationRule balancer)
/// and proxies it over pooled keep-alive kernel connections.
///
/// Thread contract: an engine and its reactor belong to one thread; apply() is called on
/// that thread too (sluiced hands configs over with config_slot). In-flight requests hold
/// the config they started with (a reference count per request: slow path), so a new
/// config never changes a request in progress and the old one is freed with its last
/// request. Hot-path contract: in steady state (keep-alive, routes without rewrites) a
/// request allocates nothing: connection, stream and buffer objects are pooled and keep
/// their capacity (perf/l7_vs_peers.sh measures it).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "sluice/base/result.hh"
#include "sluice/health/health.hh"
#include "sluice/l7/reactor.hh"
#include "sluice/net/addr.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::l7 {

/// What the engine runs: a compiled snapshot and the health table of that moment.
struct engine_config {
    std::shared_ptr<const snapshot::snapshot> snap;
    std::shared_ptr<const health::table> health; ///< null: every endpoint healthy
    uint64_t generation = 0;
};

/// A single-slot handoff of configs from the config thread to the engine thread: put()
/// replaces the pending config; the engine's take() is one acquire load when nothing
/// changed (called once per loop).
class config_slot {
public:
    void put(std::shared_ptr<const engine_config> c);
    /// The config put since the last take(), or null.
    std::shared_ptr<const engine_config> take();

private:
    std::mutex _mu;
    std::shared_ptr<const engine_config> _pending; // guarded by _mu
    std::atomic<bool> _changed{false};
};

/// One passive health observation of an upstream request (ISTIO.md outlierDetection): which
/// endpoint of which cluster (an index into the snapshot of `generation`), and what happened.
struct health_report {
    uint64_t generation = 0;
    uint32_t cluster = 0;
    uint64_t endpoint = 0; ///< the endpoint's stable id
    health::outcome what = health::outcome::success;
};

/// Reports from the engine thread to the thread that owns the outlier detector. push() takes
/// a mutex (slow path: once per upstream response of a cluster with outlierDetection);
/// drain() swaps the queue out. Bounded: beyond `capacity` reports are dropped and counted.
class health_sink {
public:
    explicit health_sink(size_t capacity = 65536) : _capacity(capacity) {}
    /// Called (on the engine thread) when a report lands in an empty queue, so the owner of
    /// the detector can drain it at once instead of at its next tick. Set before the engine
    /// runs; it must not block.
    void set_notify(std::function<void()> n) { _notify = std::move(n); }
    void push(const health_report& r);
    /// Moves every queued report to `out` (cleared first).
    void drain(std::vector<health_report>& out);
    [[nodiscard]] uint64_t dropped() const noexcept
    {
        return _dropped.load(std::memory_order_relaxed);
    }

private:
    std::function<void()> _notify;
    std::mutex _mu;
    std::vector<health_report> _q; // guarded by _mu
    size_t _capacity;
    std::atomic<uint64_t> _dropped{0};
};

/// Appliance-level settings (the `l7` section of the appliance config).
struct engine_settings {
    /// Access log: a file path, "-" for stderr, "" for none. One line per request.
    std::string access_log;
    /// Where passive health observations go (clusters with outlierDetection); null: nowhere.
    health_sink* health = nullptr;
    /// Sources whose x-envoy-* request headers are trusted (kept); others have them removed.
    std::vector<net::prefix> trusted_sources;
    /// Listen on this address instead of the listener's own (tests and the harness: loopback).
    std::string bind_override;
    /// Listener port -> port to bind (0: ephemeral); ports not in the map bind as themselves.
    std::vector<std::pair<uint32_t, uint16_t>> port_override;
    /// Bind listener addresses that are not (yet) local (IP_FREEBIND).
    bool freebind = true;
    uint32_t max_downstream_connections = 100000;
    /// Downstream connection idle timeout (Envoy HCM idle_timeout).
    nanos downstream_idle_timeout = 3600ULL * 1'000'000'000ULL;
    /// How long a client may take to send a complete request head.
    nanos request_headers_timeout = 60ULL * 1'000'000'000ULL;
    /// Flush the access log at least this often.
    nanos access_log_flush = 100 * ns_per_ms;
};

/// Counters (Envoy's names where one exists). Owned by the engine thread; other threads
/// read them racily (monotonic counters of 64-bit words: torn reads are impossible on x86).
struct engine_stats {
    std::atomic<uint64_t> downstream_cx_total{0};
    std::atomic<uint64_t> downstream_cx_active{0};
    std::atomic<uint64_t> downstream_cx_overflow{0};
    std::atomic<uint64_t> downstream_rq_total{0};
    std::atomic<uint64_t> downstream_rq_1xx{0};
    std::atomic<uint64_t> downstream_rq_2xx{0};
    std::atomic<uint64_t> downstream_rq_3xx{0};
    std::atomic<uint64_t> downstream_rq_4xx{0};
    std::atomic<uint64_t> downstream_rq_5xx{0};
    std::atomic<uint64_t> downstream_rq_rx_reset{0};
    std::atomic<uint64_t> downstream_rq_bad{0};    ///< rejected by the codec (400/414/431/505)
    std::atomic<uint64_t> downstream_tls_error{0}; ///< handshakes that failed
    std::atomic<uint64_t> upstream_tls_error{0};
    std::atomic<uint64_t> tcp_no_route{0}; ///< TCP/TLS connections no route claimed (closed)
    std::atomic<uint64_t> upstream_cx_total{0};
    std::atomic<uint64_t> upstream_cx_active{0};
    std::atomic<uint64_t> upstream_cx_connect_fail{0};
    std::atomic<uint64_t> upstream_cx_connect_timeout{0};
    std::atomic<uint64_t> upstream_cx_reused{0};
    std::atomic<uint64_t> upstream_rq_total{0};
    std::atomic<uint64_t> upstream_rq_retry{0};
    std::atomic<uint64_t> upstream_rq_timeout{0};
    std::atomic<uint64_t> upstream_rq_per_try_timeout{0};
    std::atomic<uint64_t> upstream_rq_stale_retry{0}; ///< resent after a stale pooled connection
    std::atomic<uint64_t> upstream_rq_overflow{0};    ///< 503 UO: a connectionPool limit
    std::atomic<uint64_t> upstream_resp_bad{0};
    std::atomic<uint64_t> no_route{0};
    std::atomic<uint64_t> no_healthy_upstream{0};
    std::atomic<uint64_t> no_cluster{0};
    std::atomic<uint64_t> tunnels{0};
    std::atomic<uint64_t> mirror_total{0};  ///< copies sent to mirror clusters
    std::atomic<uint64_t> mirror_failed{0}; ///< copies that could not be delivered
    std::atomic<uint64_t> dns_failures{0};  ///< DNS endpoints whose name did not resolve
    std::atomic<uint64_t> listener_errors{0};
};

/// The wait before retry number `retry` (1 for the first): Envoy's fully jittered exponential
/// backoff, uniform in [0, base x 2^(retry-1)] capped at 10 x base (25 ms and 250 ms with
/// Istio's default `backoff`). `random` is a uniform 64-bit draw. Pure.
[[nodiscard]] nanos retry_backoff(nanos base, uint32_t retry, uint64_t random) noexcept;

/// Per-cluster counters (Envoy's cluster stats), kept across configs by cluster name.
struct cluster_counters {
    uint64_t rq_total = 0;            ///< upstream_rq_total
    uint64_t cx_total = 0;            ///< upstream_cx_total
    uint64_t cx_active = 0;           ///< upstream_cx_active
    uint64_t rq_pending_overflow = 0; ///< upstream_rq_pending_overflow (503 UO)
    uint64_t rq_overflow = 0;         ///< concurrent-request limit overflow (503 UO)
    uint64_t retry_overflow = 0;      ///< upstream_rq_retry_overflow
};

/// One endpoint's gauges in one cluster (Envoy's per-host upstream_cx_active and
/// upstream_rq_active).
struct endpoint_counters {
    uint64_t cx_active = 0; ///< upstream connections the cluster has open (or opening) to it
    uint64_t rq_active = 0; ///< requests (and TCP-route connections) assigned to it, from the
                            ///< pick to their end or a retry elsewhere
};

class engine_impl;

class engine {
public:
    /// Creates an engine on `r` (which must outlive it). Errors: the access log cannot be
    /// opened.
    static result<std::unique_ptr<engine>> create(reactor& r, engine_settings settings);
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    /// Runs `cfg` from now on: opens the L7 listeners it adds, closes those it drops (their
    /// open connections finish), rebuilds the balancers. Errors list the listeners that
    /// could not be opened (the others run).
    result<void> apply(std::shared_ptr<const engine_config> cfg);
    /// Stops accepting and closes every connection.
    void shut_down() noexcept;

    /// The port actually bound for the listener on `address`:`port` (0 when none): with a
    /// port_override of 0 the kernel chose it.
    [[nodiscard]] uint16_t bound_port(uint32_t port) const noexcept;
    [[nodiscard]] const engine_stats& stats() const noexcept;
    /// The counters of cluster `name` ("outbound|80||host"); nullopt when the engine never
    /// ran it. Any thread (takes a mutex; reads atomics).
    [[nodiscard]] std::optional<cluster_counters> cluster_stats(std::string_view name) const;
    /// The gauges of endpoint `endpoint_id` (snapshot::endpoint::id) in cluster `cluster`;
    /// nullopt when no config the engine ran gave the cluster that endpoint. Any thread:
    /// takes the mutex cluster_stats() takes (the map's shape), then relaxed loads of
    /// 32-bit gauges that only the engine thread writes (a moment's view, for monitoring).
    /// The engine thread pays a relaxed load and store per update, no lock.
    [[nodiscard]] std::optional<endpoint_counters> endpoint_stats(std::string_view cluster,
                                                                  uint64_t endpoint_id) const;
    /// Active health checks (health_check.hh): endpoint ids failing them, and a version that
    /// changes with that set. Any thread.
    [[nodiscard]] uint64_t active_check_version() const noexcept;
    [[nodiscard]] std::vector<uint64_t> active_check_failed() const;
    /// Outstanding requests and open connections (tests, shutdown).
    [[nodiscard]] size_t active_streams() const noexcept;
    /// Writes buffered access-log lines now.
    void flush_access_log() noexcept;

private:
    explicit engine(std::unique_ptr<engine_impl> impl);
    std::unique_ptr<engine_impl> _impl;
};

} // namespace sluice::l7
