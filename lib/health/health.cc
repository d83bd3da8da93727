#include "sluice/health/health.hh"

#include <algorithm>
#include <limits>
#include <utility>

#include "sluice/base/hash.hh"

namespace sluice::health {

namespace {

using namespace std::chrono_literals;

/// Istio's validation floor for interval and baseEjectionTime; also keeps divisions defined.
constexpr duration min_period = 1ms;
/// Envoy's default consecutive_local_origin_failure (what Istio's "unset" becomes).
constexpr uint32_t default_local_origin = 5;
/// Envoy's default max_ejection_percent (what Istio's 0 becomes).
constexpr uint32_t default_max_ejection_percent = 10;

// Times are non-negative spans added to steady-clock readings; saturate rather than wrap so a
// huge max_ejection_time reads as "forever" instead of as the past.
duration sat_add(duration a, duration b) noexcept
{
    if (b > duration::zero() && a > duration::max() - b) {
        return duration::max();
    }
    return a + b;
}

duration sat_mul(duration d, uint32_t n) noexcept
{
    if (n != 0 && d.count() > std::numeric_limits<duration::rep>::max() / n) {
        return duration::max();
    }
    return d * n;
}

void sat_inc(uint32_t& v) noexcept
{
    if (v != std::numeric_limits<uint32_t>::max()) {
        ++v;
    }
}

} // namespace

detector::rules detector::make_rules(const outlier_config& c)
{
    rules r;
    r.consecutive_5xx = c.consecutive_5xx_errors;
    r.consecutive_gateway = c.consecutive_gateway_errors.value_or(0);
    r.split = c.split_external_local_origin_errors;
    r.consecutive_local_origin = c.consecutive_local_origin_failures != 0
                                     ? c.consecutive_local_origin_failures
                                     : default_local_origin;
    r.max_ejection_percent = c.max_ejection_percent == 0
                                 ? default_max_ejection_percent
                                 : std::min<uint32_t>(c.max_ejection_percent, 100);
    r.interval = std::max(c.interval, min_period);
    r.base = std::max(c.base_ejection_time, min_period);
    r.cap = std::max(r.base, c.max_ejection_time);
    return r;
}

duration detector::ejection_end(const cluster_state& c, const endpoint_state& e)
{
    return sat_add(e.ejected_at, std::min(sat_mul(c.r.base, e.multiplier), c.r.cap));
}

detector::endpoint_state* detector::find(cluster_state& c, uint64_t id)
{
    return const_cast<endpoint_state*>(find(std::as_const(c), id));
}

const detector::endpoint_state* detector::find(const cluster_state& c, uint64_t id)
{
    const auto it =
        std::lower_bound(c.endpoints.begin(), c.endpoints.end(), id,
                         [](const endpoint_state& e, uint64_t key) { return e.id < key; });
    return it != c.endpoints.end() && it->id == id ? &*it : nullptr;
}

duration detector::observe(duration now)
{
    _now = std::max(_now, now);
    return _now;
}

void detector::uneject(cluster_state& c, endpoint_state& e, duration at)
{
    e.ejected = false;
    e.was_unejected = true;
    e.unejected_at = at;
    // Envoy resets every streak on re-admission so that a counter left just under its
    // threshold does not eject again on the first error.
    e.c5xx = 0;
    e.cgateway = 0;
    e.clocal = 0;
    --c.st.ejections_active;
    ++_generation;
}

bool detector::advance(cluster_state& c, duration now)
{
    const duration iv = c.r.interval;
    // The last boundary at or before now; anchor <= now because anchors are set from
    // observed times.
    const duration last = c.anchor + ((now - c.anchor) / iv) * iv;
    bool changed = false;
    for (endpoint_state& e : c.endpoints) {
        if (e.ejected) {
            const duration end = ejection_end(c, e);
            if (end > now) {
                continue;
            }
            uneject(c, e, end);
            changed = true;
        }
        if (e.multiplier == 0 || !e.was_unejected || last <= c.boundary_done) {
            continue;
        }
        // Closed form of "at each boundary b in (boundary_done, last], decrement if
        // b - unejected_at >= interval": count the boundaries in that range at or after
        // unejected_at + interval. Equivalent to ticking at every boundary, but O(1) however
        // long the gap since the last call.
        const duration due = sat_add(e.unejected_at, iv);
        duration first = c.boundary_done + iv;
        if (due > first) {
            if (due == duration::max()) {
                continue;
            }
            first = c.anchor + ((due - c.anchor) / iv) * iv; // round up to a boundary
            if (first < due) {
                first += iv;
            }
        }
        if (first > last) {
            continue;
        }
        const auto n = static_cast<uint64_t>((last - first) / iv) + 1;
        e.multiplier -= static_cast<uint32_t>(std::min<uint64_t>(e.multiplier, n));
    }
    c.boundary_done = std::max(c.boundary_done, last);
    return changed;
}

bool detector::try_eject(cluster_state& c, endpoint_state& e, ejection_kind k, duration now)
{
    ++c.st.ejections_detected_total;
    // ISTIO.md: eject only while ejected/total < max%, counted before this ejection, so one
    // ejection is always possible. Integer form of ejected * 100 / total < pct.
    const uint64_t total = c.endpoints.size();
    if (static_cast<uint64_t>(c.st.ejections_active) * 100 >=
        static_cast<uint64_t>(c.r.max_ejection_percent) * total) {
        ++c.st.ejections_overflow;
        return false;
    }
    e.ejected = true;
    e.ejected_at = now;
    e.last_kind = k;
    // Envoy: the multiplier stops growing once it is one step past the cap.
    if (sat_mul(c.r.base, e.multiplier) < sat_add(c.r.cap, c.r.base)) {
        sat_inc(e.multiplier);
    }
    ++c.st.ejections_active;
    ++c.st.ejections_enforced_total;
    switch (k) {
    case ejection_kind::consecutive_5xx:
        ++c.st.ejections_enforced_consecutive_5xx;
        break;
    case ejection_kind::consecutive_gateway_failure:
        ++c.st.ejections_enforced_consecutive_gateway_failure;
        break;
    case ejection_kind::consecutive_local_origin_failure:
        ++c.st.ejections_enforced_consecutive_local_origin_failure;
        break;
    case ejection_kind::none:
        break;
    }
    ++_generation;
    return true;
}

void detector::configure(std::vector<cluster_config> clusters, duration now)
{
    now = observe(now);
    // Whatever fell due before the change is judged by the rules that were in force.
    tick(now);

    size_t active_before = 0;
    for (const auto& [name, c] : _clusters) {
        active_before += c.st.ejections_active;
    }

    cluster_map next;
    for (cluster_config& cc : clusters) {
        cluster_state ns;
        ns.r = make_rules(cc.outlier);
        std::sort(cc.endpoints.begin(), cc.endpoints.end());
        cc.endpoints.erase(std::unique(cc.endpoints.begin(), cc.endpoints.end()),
                           cc.endpoints.end());
        ns.endpoints.reserve(cc.endpoints.size());

        const auto old = _clusters.find(cc.name);
        if (old == _clusters.end()) {
            ns.anchor = now;
            ns.boundary_done = now;
            for (const uint64_t id : cc.endpoints) {
                ns.endpoints.push_back(endpoint_state{.id = id});
            }
        } else {
            // Copied, not moved: a duplicate name later in the list must see the same old
            // state (the last entry wins).
            const cluster_state& oc = old->second;
            if (oc.r.interval == ns.r.interval) {
                ns.anchor = oc.anchor;
                ns.boundary_done = oc.boundary_done;
            } else {
                ns.anchor = now;
                ns.boundary_done = now;
            }
            ns.st = oc.st;
            ns.st.ejections_active = 0;
            // Both lists ascend: one merge pass keeps survivors and adds newcomers.
            auto it = oc.endpoints.begin();
            for (const uint64_t id : cc.endpoints) {
                while (it != oc.endpoints.end() && it->id < id) {
                    ++it;
                }
                if (it != oc.endpoints.end() && it->id == id) {
                    ns.endpoints.push_back(*it);
                    if (it->ejected) {
                        ++ns.st.ejections_active;
                    }
                } else {
                    ns.endpoints.push_back(endpoint_state{.id = id});
                }
            }
        }
        next.insert_or_assign(std::move(cc.name), std::move(ns));
    }

    size_t active_after = 0;
    for (const auto& [name, c] : next) {
        active_after += c.st.ejections_active;
    }
    _clusters = std::move(next);
    if (active_after != active_before) {
        ++_generation; // an ejected endpoint (or its whole cluster) was dropped
    }
}

bool detector::report(std::string_view cluster, uint64_t id, outcome o, duration now)
{
    now = observe(now);
    const auto cit = _clusters.find(cluster);
    if (cit == _clusters.end()) {
        ++_unknown_reports;
        return false;
    }
    cluster_state& c = cit->second;
    endpoint_state* e = find(c, id);
    if (e == nullptr) {
        ++_unknown_reports;
        return false;
    }
    bool changed = advance(c, now);

    const bool split = c.r.split;
    switch (o) {
    case outcome::success:
        e->c5xx = 0;
        e->cgateway = 0;
        e->clocal = 0;
        break;
    case outcome::connect_failure:
    case outcome::local_origin_failure:
        if (split) {
            sat_inc(e->clocal);
        } else {
            // Envoy maps these to 503/504: gateway errors, hence also 5xx.
            sat_inc(e->c5xx);
            sat_inc(e->cgateway);
        }
        break;
    case outcome::http_5xx:
        sat_inc(e->c5xx);
        e->cgateway = 0;
        e->clocal = 0;
        break;
    case outcome::http_gateway_error:
        sat_inc(e->c5xx);
        sat_inc(e->cgateway);
        e->clocal = 0;
        break;
    }

    // Envoy's order: the gateway check runs before the 5xx check for the same response. Once
    // one ejects, the others are no-ops and their counters are left alone (Envoy returns early
    // for an ejected host); an attempt, enforced or refused, resets its own counter.
    struct check {
        ejection_kind kind;
        uint32_t threshold;
        uint32_t* counter;
    };
    const check checks[] = {
        {ejection_kind::consecutive_gateway_failure, c.r.consecutive_gateway, &e->cgateway},
        {ejection_kind::consecutive_5xx, c.r.consecutive_5xx, &e->c5xx},
        {ejection_kind::consecutive_local_origin_failure, split ? c.r.consecutive_local_origin : 0,
         &e->clocal},
    };
    for (const check& k : checks) {
        if (e->ejected) {
            break;
        }
        if (k.threshold == 0 || *k.counter < k.threshold) {
            continue;
        }
        changed |= try_eject(c, *e, k.kind, now);
        *k.counter = 0;
    }
    return changed;
}

bool detector::tick(duration now)
{
    now = observe(now);
    bool changed = false;
    for (auto& [name, c] : _clusters) {
        changed |= advance(c, now);
    }
    return changed;
}

duration detector::next_deadline() const
{
    duration next = duration::max();
    for (const auto& [name, c] : _clusters) {
        if (c.st.ejections_active == 0) {
            continue;
        }
        for (const endpoint_state& e : c.endpoints) {
            if (e.ejected) {
                next = std::min(next, ejection_end(c, e));
            }
        }
    }
    return next;
}

std::vector<uint64_t> detector::ejected(std::string_view cluster) const
{
    std::vector<uint64_t> out;
    const auto it = _clusters.find(cluster);
    if (it == _clusters.end()) {
        return out;
    }
    out.reserve(it->second.st.ejections_active);
    for (const endpoint_state& e : it->second.endpoints) {
        if (e.ejected) {
            out.push_back(e.id);
        }
    }
    return out;
}

size_t detector::ejections_active(std::string_view cluster) const
{
    const auto it = _clusters.find(cluster);
    return it == _clusters.end() ? 0 : it->second.st.ejections_active;
}

uint64_t detector::ejections_total(std::string_view cluster) const
{
    const auto it = _clusters.find(cluster);
    return it == _clusters.end() ? 0 : it->second.st.ejections_enforced_total;
}

std::optional<cluster_stats> detector::stats(std::string_view cluster) const
{
    const auto it = _clusters.find(cluster);
    if (it == _clusters.end()) {
        return std::nullopt;
    }
    return it->second.st;
}

std::optional<endpoint_status> detector::status(std::string_view cluster, uint64_t id) const
{
    const auto it = _clusters.find(cluster);
    if (it == _clusters.end()) {
        return std::nullopt;
    }
    const endpoint_state* e = find(it->second, id);
    if (e == nullptr) {
        return std::nullopt;
    }
    endpoint_status s;
    s.ejected = e->ejected;
    s.multiplier = e->multiplier;
    s.ejected_at = e->ejected_at;
    s.ejected_until = e->ejected ? ejection_end(it->second, *e) : duration{};
    s.last_kind = e->last_kind;
    s.consecutive_5xx = e->c5xx;
    s.consecutive_gateway = e->cgateway;
    s.consecutive_local_origin = e->clocal;
    return s;
}

std::vector<std::string> detector::clusters() const
{
    std::vector<std::string> out;
    out.reserve(_clusters.size());
    for (const auto& [name, c] : _clusters) {
        out.push_back(name);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// table

table::table()
{
    compute_version();
}

table table::build(const detector& d, std::span<const uint64_t> active_check_failed)
{
    table t;
    for (const auto& [name, c] : d._clusters) {
        if (c.st.ejections_active == 0) {
            continue;
        }
        cluster_entry ce{.name = name, .ejected = {}};
        ce.ejected.reserve(c.st.ejections_active);
        for (const auto& e : c.endpoints) {
            if (e.ejected) {
                ce.ejected.push_back(e.id);
            }
        }
        t._clusters.push_back(std::move(ce)); // std::map order: ascending by name
    }
    t._active_failed.assign(active_check_failed.begin(), active_check_failed.end());
    std::sort(t._active_failed.begin(), t._active_failed.end());
    t._active_failed.erase(std::unique(t._active_failed.begin(), t._active_failed.end()),
                           t._active_failed.end());
    t.compute_version();
    return t;
}

reason table::lookup(std::string_view cluster, uint64_t id) const noexcept
{
    if (std::binary_search(_active_failed.begin(), _active_failed.end(), id)) {
        return reason::active_check_failed;
    }
    const auto it = std::lower_bound(_clusters.begin(), _clusters.end(), cluster,
                                     [](const cluster_entry& c, std::string_view key) {
                                         return std::string_view(c.name) < key;
                                     });
    if (it == _clusters.end() || std::string_view(it->name) != cluster) {
        return reason::healthy;
    }
    return std::binary_search(it->ejected.begin(), it->ejected.end(), id) ? reason::outlier_ejected
                                                                          : reason::healthy;
}

size_t table::ejected_count() const noexcept
{
    size_t n = 0;
    for (const cluster_entry& c : _clusters) {
        n += c.ejected.size();
    }
    return n;
}

void table::compute_version() noexcept
{
    // Fixed constants and a fixed order (clusters by name, ids ascending): the same content
    // hashes the same on every run and every appliance. Lengths and a section tag go in before
    // each list so that no two different contents serialise to the same word stream.
    uint64_t h = 0x736c75696365484cULL; // "sluiceHL"
    const auto mix = [&h](uint64_t v) { h = fmix64(h ^ fmix64(v + 0x9e3779b97f4a7c15ULL)); };
    mix(_clusters.size());
    for (const cluster_entry& c : _clusters) {
        mix(c.name.size());
        for (const char ch : c.name) {
            mix(static_cast<unsigned char>(ch));
        }
        mix(c.ejected.size());
        for (const uint64_t id : c.ejected) {
            mix(id);
        }
    }
    mix(0xac7e5ULL);
    mix(_active_failed.size());
    for (const uint64_t id : _active_failed) {
        mix(id);
    }
    _version = h;
}

} // namespace sluice::health
