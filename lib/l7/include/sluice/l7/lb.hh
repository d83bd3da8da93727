#pragma once
/// @file
/// The L7 load balancer: which endpoint of a cluster serves one HTTP request, per the
/// DestinationRule `loadBalancer` in force (ISTIO.md §1 "loadBalancer"), exactly as Envoy does
/// it for Istio where that is possible without Envoy's per-host mutable state.
///
/// Two steps per request, as in Envoy:
///  1. Locality: `locality::selector::choose()` picks the priority level (and the locality
///     group under `distribute`) from the request's consistent hash, else from its random draw;
///     the level is either healthy-only or, in panic, uses all its endpoints.
///  2. Endpoint: within that candidate set, by the cluster's algorithm:
///     - LEAST_REQUEST (Istio's default; also LEAST_CONN, a deprecated alias): Envoy's power
///       of two choices. Equal weights: two random candidates *with replacement* (Envoy's
///       N_CHOICES, choice_count 2), the one with fewer active requests wins, ties go to the
///       first draw. Unequal weights: Envoy runs an EDF schedule over weight / (active + 1);
///       we use a stateless approximation: two *weighted*-random candidates, the one with the
///       smaller active / weight wins (ties: the first), which is exactly weighted random
///       when idle, as Envoy's schedule is.
///     - ROUND_ROBIN: equal weights rotate exactly (a cursor per candidate set); unequal
///       weights use an earliest-deadline-first schedule (deadline += 1/weight, FIFO on ties),
///       as Envoy's EdfScheduler: exact proportions, spread evenly.
///     - RANDOM: weighted random (Envoy's RandomLoadBalancer ignores endpoint weights; sluice
///       honours them, as every other policy here does).
///     - PASSTHROUGH: pick() returns passthrough_index; the engine forwards to the request's
///       original destination (Envoy's ORIGINAL_DST cluster).
///     - consistentHash (takes precedence over `simple`, as in Istio): ring hash (ketama, as
///       Envoy's RingHashLoadBalancer: entries `address:port_N` hashed with xxHash64, the
///       lightest endpoint getting its share of `minimumRingSize`, at most 8M entries; the
///       entry count per endpoint is fixed from the whole cluster, so a health change moves
///       only the keys of the endpoints that changed) or Maglev (`maglev::table` of
///       `tableSize` over endpoint ids, weights honoured). A request without the key (nullopt
///       hash) is looked up with its random draw instead, as Envoy does: a weighted random
///       pick. The same hash also chooses the priority level, as in Envoy.
///
/// Endpoint weights are honoured everywhere; weight 0 is never chosen. Endpoints with
/// `ready == false` are never chosen, not even in panic (Istio does not send not-ready
/// endpoints to Envoy; compile() already leaves them out of every level). DNS-named endpoints
/// are candidates like any other (the engine resolves them).
///
/// Thread contract: a cluster_lb is built on the slow path on every config or health change
/// (allocates) and then used by one thread only -- the L7 engine's. pick() is noexcept and
/// allocation-free, but ROUND_ROBIN advances a cursor / EDF schedule kept in `mutable`
/// members, so concurrent pick() calls on one object are a data race; copies are independent.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/base/result.hh"
#include "sluice/health/health.hh"
#include "sluice/locality/priority_load.hh"
#include "sluice/maglev/maglev.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::l7 {

/// pick(): nothing usable (no healthy upstream, missing cluster): the engine answers 503 UH.
inline constexpr uint32_t no_endpoint_index = 0xffffffffU;
/// pick() for a PASSTHROUGH cluster: forward to the request's original destination.
inline constexpr uint32_t passthrough_index = 0xfffffffeU;
/// Envoy's default (and sluice's cap of) ring_hash_lb_config.maximum_ring_size.
inline constexpr uint64_t max_ring_size = 8ULL * 1024 * 1024;
/// Envoy's default minimum_ring_size, used when the policy says 0 (Istio: unset).
inline constexpr uint64_t default_min_ring_size = 1024;

/// Per-request inputs to pick().
struct lb_request {
    /// lb_hash_key() of the consistent-hash key when the cluster has a hash policy and the
    /// request carried the key (or a cookie was generated); else nullopt.
    std::optional<uint64_t> hash;
    /// A fresh 64-bit random draw from the engine's RNG for this pick (a retry draws again).
    uint64_t random = 0;
    /// Priority levels to avoid (bit i: level i), for retries with retryRemoteLocalities
    /// (Envoy's previous_priorities): when the selector picks an excluded level, the first
    /// later level not excluded with a usable endpoint is used instead (the chosen one when
    /// there is none).
    uint64_t exclude_levels = 0;
};

/// How a cluster_lb picks inside a candidate set.
enum class lb_algorithm : uint8_t {
    none,          ///< default-constructed or missing cluster: never picks
    least_request, ///< LEAST_REQUEST, LEAST_CONN
    round_robin,
    random,
    passthrough,
    ring_hash,
    maglev,
};

/// "least_request", "round_robin", ... (for describe() and diagnostics).
[[nodiscard]] std::string_view lb_algorithm_name(lb_algorithm a) noexcept;

/// The balancer of one cluster under one health state.
class cluster_lb {
public:
    /// Picks nothing (no_endpoint_index).
    cluster_lb() = default;

    /// Builds the balancer of `c`. `unhealthy[i]` is true when c.endpoints[i] is ejected by
    /// outlier detection or failed active checks; an empty span means all healthy, any other
    /// size than c.endpoints.size() is an error. `seed` offsets the round-robin cursors (so
    /// that rebuilding on every health change does not favour the first endpoint); 0 is fine
    /// in tests. A missing cluster builds fine and picks nothing. Errors: the selector or a
    /// Maglev table cannot be built (too many levels, Maglev table smaller than the set...).
    /// Slow path: allocates (Maglev tables, hash rings).
    [[nodiscard]] static result<cluster_lb>
    build(const snapshot::cluster& c, std::span<const bool> unhealthy, uint64_t seed = 0);
    /// build() with health from the published health table (lookup by c.name and endpoint id).
    [[nodiscard]] static result<cluster_lb> build(const snapshot::cluster& c,
                                                  const health::table& h, uint64_t seed = 0);

    /// The endpoint for one request: an index into c.endpoints, passthrough_index, or
    /// no_endpoint_index. `active` is the engine's count of outstanding requests per endpoint,
    /// indexed like c.endpoints (LEAST_REQUEST only; missing entries count as 0). Same hash
    /// and same health: same endpoint. Per request: noexcept, no allocation, O(log n) at
    /// worst. Not thread-safe (ROUND_ROBIN state): see the file comment.
    [[nodiscard]] uint32_t pick(const lb_request& r,
                                std::span<const uint32_t> active = {}) const noexcept;

    /// True when the cluster has a consistent-hash policy (the engine computes the key).
    [[nodiscard]] bool consistent() const noexcept
    {
        return _algorithm == lb_algorithm::ring_hash || _algorithm == lb_algorithm::maglev;
    }
    /// The algorithm in force.
    [[nodiscard]] lb_algorithm algorithm() const noexcept { return _algorithm; }
    /// The `simple` policy as configured (LEAST_CONN stays least_conn here).
    [[nodiscard]] snapshot::lb_policy::simple_t simple() const noexcept { return _simple; }
    /// The locality split in force (load per level, panic).
    [[nodiscard]] const locality::selector& selector() const noexcept { return _selector; }
    /// Distinct candidate sets built (identical sets are shared).
    [[nodiscard]] size_t set_count() const noexcept { return _sets.size(); }
    /// The candidate endpoint indices of `level` (healthy, or all usable when `panic`), or of
    /// locality `group` in it when group != all_groups. Empty when none. Tests, diagnostics.
    [[nodiscard]] std::span<const uint32_t> candidates(size_t level, uint16_t group,
                                                       bool panic) const noexcept;

    /// One line per level and set: algorithm, load, panic, members. Control side: allocates.
    [[nodiscard]] std::string describe() const;

private:
    static constexpr uint32_t no_set = 0xffffffffU;

    /// One candidate set: endpoints (ascending c.endpoints indices) with non-zero weight.
    struct cand_set {
        uint32_t begin = 0;        ///< into _members, _weights, _cumulative, _edf
        uint32_t count = 0;        ///< > 0
        bool equal_weights = true; ///< every member has the same weight
        uint64_t total_weight = 0; ///< sum of member weights
        uint32_t ring_begin = 0;   ///< ring_hash: into _ring_hash, _ring_endpoint
        uint32_t ring_count = 0;   ///< ring_hash: entries
        uint32_t table = no_set;   ///< maglev: index into _tables
        uint64_t rr_cursor = 0;    ///< round_robin, equal weights (mutable state)
        uint64_t edf_seq = 0;      ///< round_robin, weighted: next FIFO sequence (mutable)
    };
    /// The sets a level (or a locality group) uses, healthy-only and in panic.
    struct set_pair {
        uint32_t healthy = no_set;
        uint32_t all = no_set;
    };
    /// Round-robin EDF schedule entry (a binary min-heap per set, in _edf).
    struct edf_entry {
        uint64_t deadline = 0; ///< fixed point, 2^40 per unit of 1/weight
        uint64_t seq = 0;      ///< FIFO among equal deadlines
        uint32_t pos = 0;      ///< member position within the set
    };

    struct builder;

    [[nodiscard]] uint32_t pick_in(uint32_t si, const lb_request& r,
                                   std::span<const uint32_t> active) const noexcept;
    [[nodiscard]] uint32_t weighted_draw(const cand_set& s, uint64_t x) const noexcept;
    [[nodiscard]] uint32_t ring_lookup(const cand_set& s, uint64_t h) const noexcept;
    [[nodiscard]] uint32_t round_robin(uint32_t si) const noexcept;

    // All fields: written by build(), then read-only, except the round-robin state
    // (_sets[].rr_cursor, _sets[].edf_seq, _edf), written by pick() on the engine thread.
    lb_algorithm _algorithm = lb_algorithm::none;
    snapshot::lb_policy::simple_t _simple = snapshot::lb_policy::simple_t::least_request;
    locality::selector _selector;
    std::vector<set_pair> _level_sets;  ///< per plan level
    std::vector<uint32_t> _group_begin; ///< per level, then a sentinel: into _group_sets
    std::vector<set_pair> _group_sets;  ///< per (level, group), groups of a level contiguous
    mutable std::vector<cand_set> _sets;
    std::vector<uint32_t> _members;       ///< endpoint indices, per set
    std::vector<uint32_t> _weights;       ///< parallel to _members
    std::vector<uint64_t> _cumulative;    ///< inclusive running weight sums within each set
    std::vector<uint64_t> _edf_step;      ///< parallel to _members: 2^40 / weight
    mutable std::vector<edf_entry> _edf;  ///< per set: a heap of `count` entries
    std::vector<uint64_t> _ring_hash;     ///< per ring, ascending
    std::vector<uint32_t> _ring_endpoint; ///< parallel to _ring_hash: endpoint index
    std::vector<maglev::table> _tables;   ///< maglev: per set
};

/// The hash of a consistent-hash key value (header value, cookie value, query parameter, or
/// source address text): xxHash64 with seed 0, the function Envoy uses (HashUtil::xxHash64).
/// Stable across processes, versions and appliances. Allocation-free.
[[nodiscard]] uint64_t lb_hash_key(std::string_view value) noexcept;

/// Length of a generated httpCookie value.
inline constexpr size_t cookie_value_size = 16;

/// The value of a generated httpCookie (Istio `consistentHash.httpCookie` with a `ttl`, when
/// the request has no such cookie): 16 lower-case hex digits of a fixed mix of `seed`, the
/// shape Envoy gives it (Hex::uint64ToHex). The engine passes a random draw (or a hash of the
/// connection's addresses, as Envoy does), hashes the value with lb_hash_key() to pick, and
/// sends it back with format_set_cookie(). Allocation-free.
[[nodiscard]] std::array<char, cookie_value_size> cookie_value(uint64_t seed) noexcept;

/// Bytes format_set_cookie() writes for these arguments.
[[nodiscard]] size_t set_cookie_size(std::string_view name, std::string_view value,
                                     std::string_view path, uint64_t max_age_seconds) noexcept;

/// Writes a Set-Cookie header value as Envoy's makeSetCookieValue() does:
/// `name="value"; Max-Age=N; Path=/p; HttpOnly` -- `Max-Age` omitted when 0 (a session
/// cookie), `Path` omitted when empty. Returns the bytes written, or 0 (nothing usable
/// written) when `out` is smaller than set_cookie_size(). Allocation-free.
[[nodiscard]] size_t format_set_cookie(std::span<char> out, std::string_view name,
                                       std::string_view value, std::string_view path,
                                       uint64_t max_age_seconds) noexcept;

} // namespace sluice::l7
