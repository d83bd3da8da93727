#include "sluice/locality/levels.hh"

#include <algorithm>
#include <optional>

namespace sluice::locality {

namespace {

// failoverPriority levels per entry, like Istio's applyLocalityFailover packs them: a failover
// level (0..4) is combined as fp_level * 5 + failover_level before compaction.
constexpr uint32_t failover_tiers = 5;

struct fp_entry {
    std::string key;
    std::optional<std::string> value; ///< `key=value`: compare endpoints against this value
};

// A topology field overrides a label of the same key when it is set (Istio's AugmentLabels).
std::string_view special_or_label(std::string_view key, const where& loc,
                                  const std::string& network, const std::string& node_name,
                                  const std::string& cluster, const labels& l)
{
    const std::string* v = nullptr;
    if (key == label_network) {
        v = &network;
    } else if (key == label_region) {
        v = &loc.region;
    } else if (key == label_zone) {
        v = &loc.zone;
    } else if (key == label_subzone) {
        v = &loc.subzone;
    } else if (key == label_hostname) {
        v = &node_name;
    } else if (key == label_cluster) {
        v = &cluster;
    }
    if (v != nullptr && !v->empty()) {
        return *v;
    }
    const auto it = l.find(key);
    return it == l.end() ? std::string_view{} : std::string_view{it->second};
}

std::string_view value_of(const node& n, std::string_view key)
{
    return special_or_label(key, n.locality, n.network, n.node_name, n.cluster, n.extra_labels);
}

std::string_view value_of(const endpoint& e, std::string_view key)
{
    return special_or_label(key, e.locality, e.network, e.node_name, e.cluster, e.endpoint_labels);
}

// Istio applies failoverPriority only when the proxy has labels (applyFailoverPriorities).
bool node_has_labels(const node& n)
{
    return !n.extra_labels.empty() || !n.locality.region.empty() || !n.locality.zone.empty() ||
           !n.locality.subzone.empty() || !n.network.empty() || !n.node_name.empty() ||
           !n.cluster.empty();
}

result<std::vector<fp_entry>> parse_failover_priority(const std::vector<std::string>& list,
                                                      const std::string& where_prefix)
{
    std::vector<fp_entry> out;
    out.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string& s = list[i];
        const std::string where = where_prefix + "[" + std::to_string(i) + "]";
        const size_t eq = s.find('=');
        fp_entry e;
        if (eq == std::string::npos) {
            e.key = s;
        } else {
            if (s.find('=', eq + 1) != std::string::npos) {
                return err("'" + s + "': more than one '='", where);
            }
            e.key = s.substr(0, eq);
            e.value = s.substr(eq + 1);
        }
        if (e.key.empty()) {
            return err("'" + s + "': empty label key", where);
        }
        out.push_back(std::move(e));
    }
    return out;
}

// Istio's applyFailoverPriorityPerLocality: matching the first k of N labels gives N - k.
uint32_t failover_priority_tier(const node& self, const endpoint& ep,
                                const std::vector<fp_entry>& fp)
{
    const auto n = static_cast<uint32_t>(fp.size());
    for (uint32_t j = 0; j < n; ++j) {
        const std::string_view mine =
            fp[j].value ? std::string_view{*fp[j].value} : value_of(self, fp[j].key);
        if (mine != value_of(ep, fp[j].key)) {
            return n - j;
        }
    }
    return 0;
}

// Istio's LbPriority plus the `failover` rule (applyLocalityFailover): 0 same
// region/zone/subzone, 1 same region/zone, 2 same region, 3 other region, 4 other region that
// is not the `to` of the first rule whose `from` is our region.
uint32_t locality_failover_tier(const node& self, const endpoint& ep,
                                const std::vector<failover_rule>& failover)
{
    const where& a = self.locality;
    const where& b = ep.locality;
    if (a.region == b.region) {
        if (a.zone == b.zone) {
            return a.subzone == b.subzone ? 0 : 1;
        }
        return 2;
    }
    for (const failover_rule& r : failover) {
        if (r.from == a.region) {
            return b.region == r.to ? 3 : 4;
        }
    }
    return 3;
}

// How specific a distribute pattern is: its non-wildcard parts. More specific `to` patterns
// claim localities first (Istio iterates a Go map here, i.e. in random order).
int specificity(std::string_view pattern)
{
    int n = 0;
    size_t start = 0;
    for (int part = 0; part < 3; ++part) {
        if (start > pattern.size()) {
            break;
        }
        const size_t slash = pattern.find('/', start);
        const std::string_view p =
            pattern.substr(start, slash == std::string_view::npos ? pattern.npos : slash - start);
        if (!p.empty() && p != "*") {
            ++n;
        }
        if (slash == std::string_view::npos) {
            break;
        }
        start = slash + 1;
    }
    return n;
}

} // namespace

bool locality_matches(const where& loc, std::string_view pattern)
{
    std::string_view parts[3];
    size_t start = 0;
    for (int i = 0; i < 3; ++i) {
        const size_t slash = i < 2 ? pattern.find('/', start) : std::string_view::npos;
        if (slash == std::string_view::npos) {
            parts[i] = pattern.substr(start);
            break;
        }
        parts[i] = pattern.substr(start, slash - start);
        start = slash + 1;
    }
    // As Istio's LocalityMatch: the region must be given (or `*`); zone and subzone may be
    // omitted.
    const bool region = parts[0] == "*" || parts[0] == loc.region;
    const bool zone = parts[1].empty() || parts[1] == "*" || parts[1] == loc.zone;
    const bool subzone = parts[2].empty() || parts[2] == "*" || parts[2] == loc.subzone;
    return region && zone && subzone;
}

std::vector<std::string> mode_labels(mode m)
{
    switch (m) {
    case mode::any:
        return {};
    case mode::prefer_close:
        return {label_network, label_region, label_zone};
    case mode::prefer_network:
        return {label_network};
    case mode::prefer_region:
        return {label_network, label_region};
    case mode::prefer_same_node:
        return {label_network, label_region, label_zone, label_subzone, label_hostname};
    }
    return {};
}

result<plan> build_plan(const node& self, std::span<const endpoint> endpoints, const policy& pol)
{
    const auto n = static_cast<uint32_t>(endpoints.size());
    plan out;
    out.level_of.assign(n, no_level);

    // 1. Which endpoints take part at all.
    std::vector<bool> in(n, false);
    for (uint32_t i = 0; i < n; ++i) {
        const endpoint& ep = endpoints[i];
        bool keep = ep.weight > 0;
        if (pol.same_node_only) {
            keep = keep && !self.node_name.empty() && ep.node_name == self.node_name;
        }
        in[i] = keep;
    }

    // 2. The tier of every endpoint (before compaction), and distribute weights.
    std::vector<uint32_t> tier(n, 0);
    const lb_setting& s = pol.setting;
    std::vector<fp_entry> fp;
    bool use_fp = false;
    bool use_failover = false;
    std::vector<uint32_t> group_weight_of; // per endpoint: its locality's weight (distribute)

    if (pol.same_node_only) {
        // internalTrafficPolicy: Local: the node filter is the whole policy; no failover.
    } else if (!pol.use_lb_setting) {
        const std::vector<std::string> keys = mode_labels(pol.distribution);
        auto parsed = parse_failover_priority(keys, "trafficDistribution");
        if (!parsed) {
            return parsed.err();
        }
        fp = std::move(*parsed);
        use_fp = !fp.empty() && node_has_labels(self);
    } else if (!s.enabled) {
        // enabled: false turns locality load balancing off: one level, no weights.
    } else if (!s.distribute.empty()) {
        for (size_t d = 0; d < s.distribute.size(); ++d) {
            for (size_t t = 0; t < s.distribute[d].to.size(); ++t) {
                if (s.distribute[d].to[t].second > 100) {
                    return err("weight " + std::to_string(s.distribute[d].to[t].second) +
                                   " is above 100",
                               "localityLbSetting.distribute[" + std::to_string(d) + "].to[" +
                                   s.distribute[d].to[t].first + "]");
                }
            }
        }
        out.locality_weighted = true;
        // Envoy's locality weight defaults to the sum of its endpoint weights (Istio's EDS).
        std::map<where, uint64_t> original;
        for (uint32_t i = 0; i < n; ++i) {
            if (in[i]) {
                original[endpoints[i].locality] += endpoints[i].weight;
            }
        }
        std::map<where, uint32_t> weight;
        for (const auto& [loc, w] : original) {
            weight[loc] = static_cast<uint32_t>(std::min<uint64_t>(w, UINT32_MAX));
        }
        // The first rule whose `from` matches us applies (Istio's applyLocalityWeights).
        const distribute_rule* rule = nullptr;
        for (const distribute_rule& r : s.distribute) {
            if (locality_matches(self.locality, r.from)) {
                rule = &r;
                break;
            }
        }
        if (rule != nullptr) {
            std::vector<size_t> order(rule->to.size());
            for (size_t t = 0; t < order.size(); ++t) {
                order[t] = t;
            }
            std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
                return specificity(rule->to[a].first) > specificity(rule->to[b].first);
            });
            std::map<where, bool> claimed;
            for (const size_t t : order) {
                const auto& [pattern, w] = rule->to[t];
                // Each `to` weight is split over the localities it matches, in proportion to
                // their original weights, rounded up (Istio: math.Ceil).
                uint64_t total = 0;
                std::vector<where> matched;
                for (const auto& [loc, ow] : original) {
                    if (!claimed.contains(loc) && locality_matches(loc, pattern)) {
                        matched.push_back(loc);
                        total += ow;
                    }
                }
                for (const where& loc : matched) {
                    claimed[loc] = true;
                    weight[loc] =
                        total == 0 ? 0
                                   : static_cast<uint32_t>((original[loc] * w + total - 1) / total);
                }
            }
            // Localities no `to` matched lose their endpoints.
            for (uint32_t i = 0; i < n; ++i) {
                if (in[i] && !claimed.contains(endpoints[i].locality)) {
                    in[i] = false;
                }
            }
        }
        group_weight_of.assign(n, 0);
        for (uint32_t i = 0; i < n; ++i) {
            if (in[i]) {
                group_weight_of[i] = weight[endpoints[i].locality];
            }
        }
    } else if (pol.outlier_detection) {
        if (!s.failover_priority.empty()) {
            auto parsed =
                parse_failover_priority(s.failover_priority, "localityLbSetting.failoverPriority");
            if (!parsed) {
                return parsed.err();
            }
            fp = std::move(*parsed);
            use_fp = node_has_labels(self);
            use_failover = !s.failover.empty();
        } else {
            use_failover = true; // default locality failover, with `failover` rules if any
        }
    }

    for (uint32_t i = 0; i < n; ++i) {
        if (!in[i]) {
            continue;
        }
        uint32_t t = 0;
        if (use_fp) {
            t = failover_priority_tier(self, endpoints[i], fp);
        }
        if (use_failover) {
            t = t * failover_tiers + locality_failover_tier(self, endpoints[i], s.failover);
        }
        tier[i] = t;
    }

    // 3. Compact: levels are the distinct tiers in order, without gaps (Envoy requires it).
    std::vector<uint32_t> tiers;
    for (uint32_t i = 0; i < n; ++i) {
        if (in[i]) {
            tiers.push_back(tier[i]);
        }
    }
    std::sort(tiers.begin(), tiers.end());
    tiers.erase(std::unique(tiers.begin(), tiers.end()), tiers.end());
    out.levels.resize(tiers.size());
    for (size_t l = 0; l < tiers.size(); ++l) {
        out.levels[l].tier = tiers[l];
    }
    for (uint32_t i = 0; i < n; ++i) {
        if (!in[i]) {
            out.excluded.push_back(i);
            continue;
        }
        const auto l = static_cast<uint32_t>(std::lower_bound(tiers.begin(), tiers.end(), tier[i]) -
                                             tiers.begin());
        out.level_of[i] = l;
        out.levels[l].endpoints.push_back(i);
        out.levels[l].weights.push_back(endpoints[i].weight);
    }

    // 4. Locality groups inside each level (distribute only), ordered by locality.
    if (out.locality_weighted) {
        for (level& lv : out.levels) {
            std::map<where, size_t> index;
            for (const uint32_t i : lv.endpoints) {
                index.emplace(endpoints[i].locality, 0);
            }
            for (auto& [loc, idx] : index) {
                idx = lv.groups.size();
                lv.groups.push_back({loc, 0, {}});
            }
            for (const uint32_t i : lv.endpoints) {
                locality_group& g = lv.groups[index[endpoints[i].locality]];
                g.weight = group_weight_of[i];
                g.endpoints.push_back(i);
            }
        }
    }
    return out;
}

} // namespace sluice::locality
