#include "sluice/locality/priority_load.hh"

#include "sluice/base/hash.hh"

#include <algorithm>
#include <string>

namespace sluice::locality {

namespace {

// Level and group choices must not correlate with the slot Maglev then picks from the same
// hash, so they use their own mix of it (MurmurHash3 fmix64 with a fixed seed).
constexpr uint64_t choice_seed = 0x2545f4914f6cdd1dULL;

// Envoy's distributeLoad(): each level takes its share of the normalized availability until
// the load runs out. Returns the load left over (from integer rounding).
uint32_t distribute_load(std::vector<uint8_t>& load, const std::vector<uint8_t>& health,
                         uint32_t total_load, uint32_t normalized)
{
    for (size_t i = 0; i < health.size(); ++i) {
        const uint32_t l = std::min<uint32_t>(total_load, health[i] * 100U / normalized);
        load[i] = static_cast<uint8_t>(l);
        total_load -= l;
    }
    return total_load;
}

} // namespace

result<selector> selector::compute(const plan& p, std::span<const health> endpoint_health,
                                   uint32_t panic_threshold_percent)
{
    if (endpoint_health.size() != p.level_of.size()) {
        return err("health of " + std::to_string(endpoint_health.size()) +
                   " endpoints given for a plan of " + std::to_string(p.level_of.size()));
    }
    const size_t nlevels = p.levels.size();
    if (nlevels > all_groups) {
        return err("too many priority levels: " + std::to_string(nlevels));
    }
    const uint32_t threshold = std::min<uint32_t>(100, panic_threshold_percent);

    selector s;
    s._levels.resize(nlevels);
    s._load.assign(nlevels, 0);
    s._health.assign(nlevels, 0);
    if (nlevels == 0) {
        return s;
    }

    std::vector<uint32_t> healthy(nlevels, 0);
    std::vector<uint32_t> total(nlevels, 0);
    uint32_t sum_health = 0;
    uint64_t all_hosts = 0;
    for (size_t l = 0; l < nlevels; ++l) {
        total[l] = static_cast<uint32_t>(p.levels[l].endpoints.size());
        for (const uint32_t e : p.levels[l].endpoints) {
            healthy[l] += endpoint_health[e] == health::healthy ? 1 : 0;
        }
        // Integer math, as Envoy: 140 * 2 / 4 = 70.
        const uint64_t score =
            total[l] == 0 ? 0 : uint64_t{overprovisioning_factor} * healthy[l] / total[l];
        s._health[l] = static_cast<uint8_t>(std::min<uint64_t>(100, score));
        sum_health += s._health[l];
        all_hosts += total[l];
    }
    const uint32_t normalized = std::min<uint32_t>(100, sum_health);

    if (normalized > 0) {
        const uint32_t left = distribute_load(s._load, s._health, 100, normalized);
        if (left != 0) {
            // Rounding leftovers go to the first level with any health (Envoy).
            for (size_t l = 0; l < nlevels; ++l) {
                if (s._health[l] > 0) {
                    s._load[l] = static_cast<uint8_t>(s._load[l] + left);
                    break;
                }
            }
        }
    }

    // Panic (Envoy recalculatePerPriorityPanic): none while the normalized availability is
    // 100; otherwise a level whose healthy share is below the threshold is in panic.
    if (threshold == 0 && normalized == 0) {
        // Panic disabled and nothing healthy: P0 nominally takes everything and finds no
        // healthy endpoint ("no healthy upstream").
        s._load[0] = 100;
    } else {
        bool all_panic = true;
        for (size_t l = 0; l < nlevels; ++l) {
            const bool panic =
                normalized < 100 && uint64_t{healthy[l]} * 100 < uint64_t{threshold} * total[l];
            s._levels[l].panic = panic;
            all_panic = all_panic && panic;
        }
        if (all_panic) {
            // Envoy recalculateLoadInTotalPanic: load follows endpoint counts, remainder to P0.
            s._total_panic = true;
            uint32_t left = 100;
            for (size_t l = 0; l < nlevels; ++l) {
                s._load[l] = static_cast<uint8_t>(100 * uint64_t{total[l]} / all_hosts);
                left -= s._load[l];
            }
            s._load[0] = static_cast<uint8_t>(s._load[0] + left);
        }
    }

    uint32_t cumulative = 0;
    for (size_t l = 0; l < nlevels; ++l) {
        level_state& ls = s._levels[l];
        cumulative += s._load[l];
        ls.cumulative = static_cast<uint8_t>(cumulative);
        ls.usable = ls.panic ? total[l] > 0 : healthy[l] > 0;
    }

    // Locality groups (distribute): effective weight = weight * min(1, 1.4 * healthy / total).
    if (p.locality_weighted) {
        for (size_t l = 0; l < nlevels; ++l) {
            const auto& groups = p.levels[l].groups;
            if (s._group_cumulative.size() + groups.size() >= all_groups) {
                return err("too many locality groups");
            }
            std::vector<double> eff(groups.size(), 0.0);
            double sum = 0.0;
            for (size_t g = 0; g < groups.size(); ++g) {
                uint32_t h = 0;
                for (const uint32_t e : groups[g].endpoints) {
                    h += endpoint_health[e] == health::healthy ? 1 : 0;
                }
                const double avail =
                    groups[g].endpoints.empty()
                        ? 0.0
                        : std::min(1.0, (overprovisioning_factor / 100.0) * h /
                                            static_cast<double>(groups[g].endpoints.size()));
                eff[g] = groups[g].weight * avail;
                sum += eff[g];
            }
            s._levels[l].group_begin = static_cast<uint16_t>(s._group_cumulative.size());
            if (sum <= 0.0) {
                continue; // no healthy locality: the level's (empty) healthy set is used
            }
            s._levels[l].group_count = static_cast<uint16_t>(groups.size());
            double acc = 0.0;
            for (size_t g = 0; g < groups.size(); ++g) {
                acc += eff[g];
                const double scaled = acc / sum * 4294967296.0;
                s._group_cumulative.push_back(
                    g + 1 == groups.size() ? (uint64_t{1} << 32) : static_cast<uint64_t>(scaled));
            }
        }
    }
    return s;
}

choice selector::choose(uint64_t hash) const noexcept
{
    choice c;
    const size_t n = _levels.size();
    if (n == 0) {
        return c;
    }
    const uint64_t m = fmix64(hash ^ choice_seed);
    // Uniform in [0, 100) from the high 32 bits (multiply-shift, no divide).
    const auto pct = static_cast<uint32_t>(((m >> 32) * 100) >> 32);
    size_t l = 0;
    while (l + 1 < n && pct >= _levels[l].cumulative) {
        ++l;
    }
    const level_state& ls = _levels[l];
    c.level = static_cast<uint16_t>(l);
    c.panic = ls.panic;
    c.ok = ls.usable;
    if (!ls.panic && ls.group_count > 0) {
        const uint64_t r = m & 0xffffffffULL;
        const uint64_t* cum = _group_cumulative.data() + ls.group_begin;
        uint16_t g = 0;
        while (g + 1 < ls.group_count && r >= cum[g]) {
            ++g;
        }
        c.group = g;
    }
    return c;
}

double selector::group_share(size_t level, size_t group) const noexcept
{
    const level_state& ls = _levels[level];
    if (group >= ls.group_count) {
        return 0.0;
    }
    const uint64_t* cum = _group_cumulative.data() + ls.group_begin;
    const uint64_t lo = group == 0 ? 0 : cum[group - 1];
    return static_cast<double>(cum[group] - lo) / 4294967296.0;
}

} // namespace sluice::locality
