#pragma once
/// @file
/// The one health table: passive outlier detection (Istio `outlierDetection`, Envoy semantics)
/// plus active-check state, reduced to one immutable per-(cluster, endpoint) view.
///
/// Every health signal lands here: connect failures the L4 workers see (relayed to the slow
/// path over rte_rings, DESIGN.md §2), and later the L7 engine's 5xx, gateway errors and
/// local-origin failures, and the active health checks. The slow path owns one `detector`,
/// feeds it, and publishes a `table` built from it whenever `detector::generation()` (or the
/// active-check set) changes; the data path only ever reads published tables.
///
/// Thread contract: `detector` has one owner thread (the slow-path lcore) and is not
/// thread-safe; nothing in it is hot path (it allocates). A built `table` is immutable: any
/// number of threads may call `table::lookup()` concurrently, which is noexcept and
/// allocation-free. Time is always passed in (a steady clock's reading, any epoch), so all of
/// this runs, and is tested, with a fake clock; no EAL, no DPDK.
///
/// Semantics (ISTIO.md "Outlier detection", then Envoy's outlier detector where ISTIO.md is
/// silent). Every choice that is ours rather than Envoy's is marked "sluice:".
/// - Consecutive counters per endpoint: 5xx, gateway errors (502/503/504) and, with
///   `split_external_local_origin_errors`, local-origin failures. An ejection is attempted
///   when a counter reaches its threshold (the Nth consecutive error, not the (N-1)th). See
///   `outcome` for which outcome moves which counter.
/// - An attempt ejects only if (currently ejected / endpoints in the cluster) is below
///   `max_ejection_percent`, counted *before* this ejection, so one ejection is always
///   possible (ISTIO.md). Whether it ejects or is refused ("overflow"), the counter that fired
///   is reset, so the next attempt needs a fresh run of N errors (Envoy).
/// - Ejection time = base_ejection_time x multiplier, capped at max(base, max_ejection_time).
///   The multiplier grows by one per ejection while multiplier x base < cap + base (Envoy's
///   rule: it saturates one step past the cap), and shrinks by one at every interval boundary
///   that finds the endpoint not ejected and un-ejected for at least one whole interval.
/// - sluice: an endpoint is re-admitted exactly when its ejection time has passed
///   (ejected_at + time <= now), not at the next interval sweep as in Envoy; `next_deadline()`
///   says when that is. Interval boundaries need no timely call: any later call applies every
///   boundary that passed, in order, exactly as if tick() had run at each one.
/// - On re-admission all consecutive counters reset (Envoy). While ejected an endpoint still
///   counts outcomes (panic routing may still send it traffic) but cannot be ejected again,
///   and no outcome re-admits it early.
/// - Events at the same instant are applied as: expiries, then the interval boundary, then
///   the report being made.
/// - Only outlier ejections count toward max_ejection_percent; active-check failures do not.
/// - `minHealthPercent` (the panic threshold) is not applied here: the table says which
///   endpoints are unhealthy; the load balancer (locality) decides whether to panic and use
///   them anyway (ISTIO.md "Ejected hosts are still used in panic").

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::health {

using duration = std::chrono::nanoseconds;

/// What an upstream interaction with one endpoint ended in. One outcome per interaction: an L7
/// request that connected and then got a 503 is one `http_gateway_error`, not a connect success
/// followed by an error.
///
/// | outcome              | split = false (default)     | split = true                    |
/// |----------------------|-----------------------------|---------------------------------|
/// | success              | resets all streaks          | resets all streaks              |
/// | connect_failure      | +5xx, +gateway (as a 503)   | +local-origin                   |
/// | local_origin_failure | +5xx, +gateway (as 503/504) | +local-origin                   |
/// | http_5xx             | +5xx, resets gateway        | +5xx, resets gateway, local     |
/// | http_gateway_error   | +5xx, +gateway              | +5xx, +gateway, resets local    |
///
/// Without the split, Envoy maps a connect failure to 503 and a timeout to 504, both gateway
/// errors, so local-origin failures feed both external counters (ISTIO.md: "resets and
/// timeouts count as 5xx"). With the split, any HTTP response proves the connection worked,
/// which resets the local-origin streak (Envoy reports LocalOriginConnectSuccess first).
enum class outcome : uint8_t {
    success,              ///< L4: SYN-ACK seen / L7: a non-error response (local and external)
    connect_failure,      ///< local origin: connect refused (RST to SYN), connect timeout
    local_origin_failure, ///< local origin: reset, timeout after connect
    http_5xx,             ///< external: 5xx other than the gateway errors
    http_gateway_error,   ///< external: 502, 503, 504
};

/// Istio `OutlierDetection` with Istio's defaults (ISTIO.md §1), field values as Istio takes
/// them from the YAML. Zeros are read the way Istio translates them for Envoy
/// (`applyOutlierDetection` only sets a field when it is non-zero):
/// - `consecutive_5xx_errors` 0 and `consecutive_gateway_errors` unset/0 disable that check;
/// - `consecutive_local_origin_failures` 0 means Envoy's default, 5 (used only with the split);
/// - `max_ejection_percent` 0 means Envoy's default, 10; above 100 means 100.
/// `interval` and `base_ejection_time` below 1 ms (which Istio's validation rejects) are
/// raised to 1 ms. `max_ejection_time` is Envoy's (Istio does not expose it).
struct outlier_config {
    uint32_t consecutive_5xx_errors = 5;                ///< 0 disables
    std::optional<uint32_t> consecutive_gateway_errors; ///< unset/0 disables
    bool split_external_local_origin_errors = false;
    uint32_t consecutive_local_origin_failures = 5; ///< only with the split; 0 = 5
    duration interval = std::chrono::seconds(10);
    duration base_ejection_time = std::chrono::seconds(30);
    uint32_t max_ejection_percent = 10; ///< 0 = 10; > 100 = 100
    duration max_ejection_time = std::chrono::seconds(300);
};

/// One cluster under outlier detection (a snapshot cluster: host x subset x port).
struct cluster_config {
    std::string name;
    outlier_config outlier;
    std::vector<uint64_t> endpoints; ///< stable endpoint ids; any order, duplicates ignored
};

/// Which consecutive counter caused an ejection attempt.
enum class ejection_kind : uint8_t {
    none,
    consecutive_5xx,
    consecutive_gateway_failure,
    consecutive_local_origin_failure,
};

/// One endpoint's detector state (CLI, debugging, tests).
struct endpoint_status {
    bool ejected = false;
    uint32_t multiplier = 0;  ///< ejection-time multiplier ("ejections in a row")
    duration ejected_at{};    ///< last ejection (valid once ejected)
    duration ejected_until{}; ///< re-admission time while ejected
    ejection_kind last_kind = ejection_kind::none; ///< cause of the last enforced ejection
    uint32_t consecutive_5xx = 0;
    uint32_t consecutive_gateway = 0;
    uint32_t consecutive_local_origin = 0;
};

/// Per-cluster counters, named after Envoy's `outlier_detection.*` stats.
struct cluster_stats {
    size_t ejections_active = 0;           ///< gauge
    uint64_t ejections_enforced_total = 0; ///< ejections_enforced_total
    uint64_t ejections_enforced_consecutive_5xx = 0;
    uint64_t ejections_enforced_consecutive_gateway_failure = 0;
    uint64_t ejections_enforced_consecutive_local_origin_failure = 0;
    uint64_t ejections_detected_total = 0; ///< attempts (enforced + overflow)
    uint64_t ejections_overflow = 0;       ///< attempts refused by max_ejection_percent
};

class table;

/// The outlier detector of every cluster. One owner thread; not hot path (see @file).
///
/// Calls that take `now` first bring the state up to `now` (expiries and interval boundaries,
/// in time order), then act. Time never runs backwards here: a `now` earlier than one already
/// seen is taken as the latest one seen. The const queries report the state as of the last
/// call that took a `now`.
class detector {
public:
    /// Replaces the set of clusters under outlier detection (called on every new snapshot).
    /// First brings all clusters up to `now` under their old settings; then endpoints that
    /// stay (same cluster name, same id) keep their counters, multiplier and ejection, and
    /// gone endpoints and clusters are forgotten (with their stats). New settings apply from
    /// now on, including to current ejections (a shorter base time may make an ejection due
    /// at once: the next tick() re-admits it, next_deadline() says so). A cluster whose
    /// interval changes restarts its interval boundaries at `now`. A lower threshold fires on
    /// the next error of an endpoint already at or past it. Duplicate cluster names: the last
    /// entry wins. Does not eject; dropping an ejected endpoint bumps generation().
    void configure(std::vector<cluster_config> clusters, duration now);

    /// Records one outcome for endpoint `id` in cluster `cluster`; an unknown cluster or
    /// endpoint is ignored and counted (unknown_reports()). Returns true if the ejected set
    /// changed, either by this report's ejection or by re-admissions that fell due by `now`.
    bool report(std::string_view cluster, uint64_t id, outcome o, duration now);

    /// Advances time to `now`: re-admits endpoints whose ejection time has passed and applies
    /// every interval boundary that passed (multiplier decrements). Returns true if the ejected
    /// set changed.
    bool tick(duration now);

    /// When tick() must next be called to re-admit on time: the earliest ejection end over all
    /// clusters, duration::max() when nothing is ejected. Interval boundaries need no call.
    [[nodiscard]] duration next_deadline() const;

    /// Ejected endpoint ids of a cluster, ascending (empty for an unknown cluster).
    [[nodiscard]] std::vector<uint64_t> ejected(std::string_view cluster) const;
    /// How many endpoints of a cluster are ejected now (0 for an unknown cluster).
    [[nodiscard]] size_t ejections_active(std::string_view cluster) const;
    /// Ejections enforced since the cluster appeared
    /// (envoy_cluster_outlier_detection_ejections_enforced_total).
    [[nodiscard]] uint64_t ejections_total(std::string_view cluster) const;
    /// All counters of a cluster; nullopt for an unknown cluster.
    [[nodiscard]] std::optional<cluster_stats> stats(std::string_view cluster) const;
    /// One endpoint's state; nullopt for an unknown cluster or endpoint.
    [[nodiscard]] std::optional<endpoint_status> status(std::string_view cluster,
                                                        uint64_t id) const;
    /// Names of the clusters under detection, ascending.
    [[nodiscard]] std::vector<std::string> clusters() const;

    /// Reports dropped because their cluster or endpoint is not configured.
    [[nodiscard]] uint64_t unknown_reports() const noexcept { return _unknown_reports; }
    /// Bumped on every change of any cluster's ejected set: rebuild the table when it moves.
    [[nodiscard]] uint64_t generation() const noexcept { return _generation; }

private:
    friend class table;

    /// outlier_config with Istio's zero-means-default rules applied (see outlier_config).
    struct rules {
        uint32_t consecutive_5xx = 5;          ///< 0: disabled
        uint32_t consecutive_gateway = 0;      ///< 0: disabled
        uint32_t consecutive_local_origin = 5; ///< used only when split
        bool split = false;
        uint32_t max_ejection_percent = 10; ///< 0..100
        duration interval{};
        duration base{};
        duration cap{}; ///< max(base, max_ejection_time)
    };

    struct endpoint_state {
        uint64_t id = 0;
        uint32_t c5xx = 0;
        uint32_t cgateway = 0;
        uint32_t clocal = 0;
        uint32_t multiplier = 0;
        bool ejected = false;
        bool was_unejected = false; ///< unejected_at is meaningful
        ejection_kind last_kind = ejection_kind::none;
        duration ejected_at{};
        duration unejected_at{};
    };

    struct cluster_state {
        rules r;
        std::vector<endpoint_state> endpoints; ///< ascending by id
        duration anchor{};        ///< interval boundaries are anchor + k * interval, k >= 1
        duration boundary_done{}; ///< last boundary applied (anchor when none yet)
        cluster_stats st;
    };

    using cluster_map = std::map<std::string, cluster_state, std::less<>>;

    static rules make_rules(const outlier_config& c);
    [[nodiscard]] static duration ejection_end(const cluster_state& c, const endpoint_state& e);
    static endpoint_state* find(cluster_state& c, uint64_t id);
    static const endpoint_state* find(const cluster_state& c, uint64_t id);

    duration observe(duration now);
    bool advance(cluster_state& c, duration now);
    bool try_eject(cluster_state& c, endpoint_state& e, ejection_kind k, duration now);
    void uneject(cluster_state& c, endpoint_state& e, duration at);

    cluster_map _clusters;
    duration _now = duration::min(); ///< latest time seen
    uint64_t _unknown_reports = 0;
    uint64_t _generation = 0;
};

/// Why an endpoint is not usable.
enum class reason : uint8_t { healthy = 0, outlier_ejected = 1, active_check_failed = 2 };

/// The published, immutable health view: per (cluster name, endpoint id) whether the endpoint
/// is usable, and why not. Built on the slow path, published by pointer (STYLE P1); lookups
/// are safe from any number of threads.
class table {
public:
    /// An empty table: everything is healthy. Its version() equals that of a table built from
    /// a detector with no ejection and no active-check failure.
    table();

    /// Builds from the detector's ejected sets plus active-check failures: endpoint ids that
    /// failed active checks, unhealthy in every cluster (including clusters the detector does
    /// not know). Expected sorted; any order and duplicates are accepted. Allocates.
    [[nodiscard]] static table build(const detector& d,
                                     std::span<const uint64_t> active_check_failed);

    /// Why `id` in `cluster` is not usable, or healthy (also when unknown). A failed active
    /// check wins over an outlier ejection (it does not depend on traffic). Allocation-free,
    /// O(log clusters + log ids), safe from any thread.
    [[nodiscard]] reason lookup(std::string_view cluster, uint64_t id) const noexcept;

    /// A 64-bit content hash (fixed function, never seeded): equal content gives an equal
    /// version, so a publisher can skip publishing a table equal to the live one; any content
    /// change changes it except with probability ~2^-64. Not ordered: compare for equality.
    [[nodiscard]] uint64_t version() const noexcept { return _version; }

    /// Number of (cluster, endpoint) outlier ejections in the table.
    [[nodiscard]] size_t ejected_count() const noexcept;
    /// The active-check failures, ascending and unique.
    [[nodiscard]] std::span<const uint64_t> active_check_failed() const noexcept
    {
        return _active_failed;
    }

private:
    struct cluster_entry {
        std::string name;
        std::vector<uint64_t> ejected; ///< ascending
    };

    void compute_version() noexcept;

    // All fields: written once by build(), then read-only (fastpath: ro, ctl: ro).
    std::vector<cluster_entry> _clusters; ///< ascending by name; only clusters with ejections
    std::vector<uint64_t> _active_failed; ///< ascending, unique
    uint64_t _version = 0;
};

} // namespace sluice::health
