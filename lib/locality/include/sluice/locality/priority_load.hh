#pragma once
/// @file
/// Health-dependent traffic split over the levels of a plan (levels.hh), exactly as Envoy
/// computes it (ISTIO.md §2 "Priorities", "Panic threshold", "distribute"):
///   health(P) = min(100, 140 * healthy(P) / total(P))       (integer, overprovisioning 1.4)
///   normalized = min(100, sum of health(P))
///   load(P)   = min(100 - load(P0..P-1), health(P) * 100 / normalized); remainder to the
///               first level with health > 0
/// A level is in panic when normalized < 100 and its raw healthy share is below the panic
/// threshold; a level in panic uses all its endpoints. When every level is in panic, load
/// follows endpoint counts. With `distribute`, a level's locality group is chosen by its
/// weight times min(1, 1.4 * healthy / total).
///
/// compute() is control side (allocates; run by the slow path on every health change, the
/// result published like any snapshot). choose() is the per-new-flow data-path call: O(levels
/// + groups), noexcept, no allocation; a computed selector is immutable and may be read by
/// any number of lcores.

#include <cstdint>
#include <span>
#include <vector>

#include "sluice/base/result.hh"
#include "sluice/locality/levels.hh"

namespace sluice::locality {

/// Passive/active health of one endpoint.
enum class health : uint8_t {
    healthy = 0,
    unhealthy = 1, ///< failed health checks or ejected by outlier detection
};

/// Envoy's (and Istio's) overprovisioning factor, in percent.
inline constexpr uint32_t overprovisioning_factor = 140;
/// Envoy's default healthy_panic_threshold. Istio sets minHealthPercent (default 0, i.e. no
/// panic) instead when the DestinationRule has outlierDetection.
inline constexpr uint32_t envoy_default_panic_threshold = 50;

/// choose() result's `group` when the whole level is meant (no distribute, or panic).
inline constexpr uint16_t all_groups = 0xffff;

/// Where a new flow goes: the level, optionally a locality group in it, and whether to pick
/// among all endpoints (panic) or only the healthy ones. The caller then hashes into that set
/// (Maglev over the set's endpoints).
struct choice {
    uint16_t level = 0;          ///< index into plan::levels
    uint16_t group = all_groups; ///< index into level::groups, or all_groups
    bool panic = false;          ///< use every endpoint of the set, healthy or not
    bool ok = false;             ///< false: nothing usable ("no healthy upstream": 503/drop)
};

/// The traffic split for one plan under one health state.
class selector {
public:
    /// A selector with no level: choose() is never ok.
    selector() = default;

    /// Computes the split. `endpoint_health` is indexed like the endpoints given to
    /// build_plan() (excluded endpoints are ignored). `panic_threshold_percent` is Envoy's
    /// healthy_panic_threshold (0 disables panic; values above 100 count as 100). Errors: a
    /// health span of the wrong size, or more levels/groups than a choice can name.
    [[nodiscard]] static result<selector> compute(const plan& p,
                                                  std::span<const health> endpoint_health,
                                                  uint32_t panic_threshold_percent);

    /// The choice for a new flow with hash `hash` (deterministic: same hash, same choice).
    /// Hot path: noexcept, no allocation, O(levels + groups).
    [[nodiscard]] choice choose(uint64_t hash) const noexcept;

    /// Percent of traffic per level (sums to 100 when there is a level).
    [[nodiscard]] std::span<const uint8_t> load() const noexcept { return _load; }
    /// Overprovisioned health score per level, 0..100.
    [[nodiscard]] std::span<const uint8_t> health_score() const noexcept { return _health; }
    /// True if `level` uses all its endpoints.
    [[nodiscard]] bool in_panic(size_t level) const noexcept { return _levels[level].panic; }
    /// True if every level is in panic (load then follows endpoint counts).
    [[nodiscard]] bool total_panic() const noexcept { return _total_panic; }
    /// Fraction (0..1) of a level's non-panic traffic that goes to locality `group`.
    [[nodiscard]] double group_share(size_t level, size_t group) const noexcept;

private:
    struct level_state {
        uint8_t cumulative = 0; ///< sum of load of levels 0..this
        bool panic = false;
        bool usable = false; ///< has an endpoint to use (healthy, or any when in panic)
        uint16_t group_begin = 0;
        uint16_t group_count = 0; ///< 0: no group to pick (not locality weighted)
    };

    // All fields: written once by compute(), then read-only (fastpath: ro, ctl: ro).
    std::vector<level_state> _levels;
    std::vector<uint64_t> _group_cumulative; ///< per group, cumulative share scaled to 2^32
    std::vector<uint8_t> _load;
    std::vector<uint8_t> _health;
    bool _total_panic = false;
};

} // namespace sluice::locality
