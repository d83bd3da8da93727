#pragma once
/// @file
/// Active health checks (seed 002: "an instance answering 503 to its health check leaves the
/// pool at once"), configured per service by the `sluice.io/health-check` annotation
/// (snapshot::health_check_spec) and run on the slow path's reactor without blocking it: every
/// probe is a non-blocking kernel socket with a timeout timer.
///
/// Semantics (Envoy's HTTP and TCP health checkers where ISTIO.md is silent):
/// - one prober per (endpoint, spec): an endpoint in several clusters of one service (its
///   subsets, its ports with the same address and port) is probed once;
/// - tcp: success when the connection is established; http: `GET <path>` with the service
///   host as Host and `Connection: close`, success on a 2xx answer;
/// - a prober starts healthy and probes at once (then every `interval`, measured from the end
///   of the previous probe); `unhealthy_threshold` consecutive failures (a connect failure, a
///   timeout, a bad or non-2xx answer) make it unhealthy, except that an HTTP 503 does so
///   immediately; `healthy_threshold` consecutive successes make it healthy again;
/// - probers of endpoints that stay in the config keep their state across configs.
///
/// Thread contract: apply() and the probes run on the reactor's thread; failed() and version()
/// may be called from any thread (the failed set is copied under a mutex when it changes).

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sluice/l7/reactor.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::l7 {

class prober;

class active_checker {
public:
    explicit active_checker(reactor& r);
    ~active_checker();
    active_checker(const active_checker&) = delete;
    active_checker& operator=(const active_checker&) = delete;

    /// Probes every endpoint (with an IP address) of every cluster that has a health check.
    void apply(const snapshot::snapshot& snap);
    /// Stops every probe (before the reactor goes away).
    void stop() noexcept;

    /// Stable ids of the endpoints whose checks currently fail, ascending. Any thread.
    [[nodiscard]] std::vector<uint64_t> failed() const;
    /// Bumped whenever failed() changes. Any thread.
    [[nodiscard]] uint64_t version() const noexcept
    {
        return _version.load(std::memory_order_acquire);
    }
    /// Probers running (tests, stats).
    [[nodiscard]] size_t probers() const noexcept { return _probers.size(); }
    /// Probes finished (tests, stats).
    [[nodiscard]] uint64_t probes() const noexcept
    {
        return _probes.load(std::memory_order_relaxed);
    }

private:
    friend class prober;
    void changed();

    reactor& _r;
    std::map<std::string, std::unique_ptr<prober>> _probers; // key: id|spec
    mutable std::mutex _mu;
    std::vector<uint64_t> _failed; // guarded by _mu
    std::atomic<uint64_t> _version{0};
    std::atomic<uint64_t> _probes{0};
};

} // namespace sluice::l7
