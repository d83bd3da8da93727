#include "sluice/l7/lb.hh"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "sluice/base/hash.hh"

namespace sluice::l7 {

namespace {

__extension__ using u128 = unsigned __int128;

// In-set draws must not correlate with the level/group choice the selector derives from the
// same random value (it mixes with its own seed), nor with each other.
constexpr uint64_t pick_seed = 0x9fb21c651e98df25ULL;
constexpr uint64_t second_draw_seed = 0xd6e8feb86659fd93ULL;

// EDF deadlines are fixed point: one unit of "time" (1/weight of a weight-1 endpoint) is
// 2^40, so a step is exact to 2^-8 even for a weight of 2^32 and to 2^-20 for realistic ones.
constexpr uint64_t edf_unit = uint64_t{1} << 40;
// Rebase the schedule (subtract the earliest deadline) before anything can overflow.
constexpr uint64_t edf_rebase_at = uint64_t{1} << 62;

// Uniform in [0, n) from 64 random bits (multiply-shift, no divide; Lemire).
inline uint64_t scale64(uint64_t x, uint64_t n) noexcept
{
    return static_cast<uint64_t>((static_cast<u128>(x) * n) >> 64);
}
// Uniform in [0, n) from 32 random bits; bias n / 2^32, negligible for endpoint counts.
inline uint32_t scale32(uint32_t x, uint32_t n) noexcept
{
    return static_cast<uint32_t>((uint64_t{x} * n) >> 32);
}

// ------------------------------------------------------------------------ xxHash64

constexpr uint64_t xxh_p1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t xxh_p2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t xxh_p3 = 0x165667B19E3779F9ULL;
constexpr uint64_t xxh_p4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t xxh_p5 = 0x27D4EB2F165667C5ULL;

constexpr uint64_t rotl64(uint64_t x, int r) noexcept
{
    return (x << r) | (x >> (64 - r));
}

// Little-endian loads whatever the host order (the hash must be the same everywhere).
inline uint64_t load64(const unsigned char* p) noexcept
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) {
        v = (v << 8) | p[i];
    }
    return v;
}
inline uint64_t load32(const unsigned char* p) noexcept
{
    return uint64_t{p[0]} | (uint64_t{p[1]} << 8) | (uint64_t{p[2]} << 16) | (uint64_t{p[3]} << 24);
}

constexpr uint64_t xxh_round(uint64_t acc, uint64_t input) noexcept
{
    acc += input * xxh_p2;
    acc = rotl64(acc, 31);
    return acc * xxh_p1;
}

constexpr uint64_t xxh_merge(uint64_t acc, uint64_t val) noexcept
{
    acc ^= xxh_round(0, val);
    return acc * xxh_p1 + xxh_p4;
}

uint64_t xxh64(std::string_view s, uint64_t seed) noexcept
{
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const unsigned char* const end = p + s.size();
    uint64_t h = 0;
    if (s.size() >= 32) {
        uint64_t v1 = seed + xxh_p1 + xxh_p2;
        uint64_t v2 = seed + xxh_p2;
        uint64_t v3 = seed;
        uint64_t v4 = seed - xxh_p1;
        const unsigned char* const limit = end - 32;
        do {
            v1 = xxh_round(v1, load64(p));
            v2 = xxh_round(v2, load64(p + 8));
            v3 = xxh_round(v3, load64(p + 16));
            v4 = xxh_round(v4, load64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + xxh_p5;
    }
    h += s.size();
    while (end - p >= 8) {
        h ^= xxh_round(0, load64(p));
        h = rotl64(h, 27) * xxh_p1 + xxh_p4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= load32(p) * xxh_p1;
        h = rotl64(h, 23) * xxh_p2 + xxh_p3;
        p += 4;
    }
    while (p < end) {
        h ^= *p * xxh_p5;
        h = rotl64(h, 11) * xxh_p1;
        ++p;
    }
    h ^= h >> 33;
    h *= xxh_p2;
    h ^= h >> 29;
    h *= xxh_p3;
    h ^= h >> 32;
    return h;
}

size_t decimal_digits(uint64_t v) noexcept
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        ++n;
    }
    return n;
}

// Envoy's host hash key: Address::Instance::asString(), "1.2.3.4:80" or "[::1]:80".
std::string host_key(const snapshot::endpoint& e)
{
    const bool v6 = e.address.find(':') != std::string::npos;
    std::string k = v6 ? "[" + e.address + "]" : e.address;
    return k + ":" + std::to_string(e.port);
}

} // namespace

std::string_view lb_algorithm_name(lb_algorithm a) noexcept
{
    switch (a) {
    case lb_algorithm::none:
        return "none";
    case lb_algorithm::least_request:
        return "least_request";
    case lb_algorithm::round_robin:
        return "round_robin";
    case lb_algorithm::random:
        return "random";
    case lb_algorithm::passthrough:
        return "passthrough";
    case lb_algorithm::ring_hash:
        return "ring_hash";
    case lb_algorithm::maglev:
        return "maglev";
    }
    return "?";
}

// ------------------------------------------------------------------------ build

struct cluster_lb::builder {
    const snapshot::cluster& c;
    cluster_lb& lb;
    uint64_t seed = 0;
    std::vector<bool> usable;  ///< ready and weight > 0: may ever be chosen
    std::vector<bool> healthy; ///< usable and not unhealthy
    std::map<std::vector<uint32_t>, uint32_t> by_members;
    double ring_scale = 0; ///< ring_hash: entries for the whole cluster
    double ring_total = 1; ///< ring_hash: sum of usable weights

    // The set of `indices` (a level's or group's endpoints) that are usable (and healthy when
    // `healthy_only`), shared with an identical set built before. no_set when empty.
    result<uint32_t> make_set(const std::vector<uint32_t>& indices, bool healthy_only)
    {
        std::vector<uint32_t> members;
        for (const uint32_t i : indices) {
            if (i >= c.endpoints.size()) {
                return err("plan names endpoint " + std::to_string(i) + " of " +
                               std::to_string(c.endpoints.size()),
                           c.name);
            }
            if (healthy_only ? healthy[i] : usable[i]) {
                members.push_back(i);
            }
        }
        if (members.empty()) {
            return no_set;
        }
        std::sort(members.begin(), members.end());
        members.erase(std::unique(members.begin(), members.end()), members.end());
        if (const auto it = by_members.find(members); it != by_members.end()) {
            return it->second;
        }

        cand_set s;
        s.begin = static_cast<uint32_t>(lb._members.size());
        s.count = static_cast<uint32_t>(members.size());
        const uint32_t w0 = c.endpoints[members[0]].weight;
        for (uint32_t k = 0; k < s.count; ++k) {
            const uint32_t w = c.endpoints[members[k]].weight;
            s.equal_weights = s.equal_weights && w == w0;
            s.total_weight += w;
            lb._members.push_back(members[k]);
            lb._weights.push_back(w);
            lb._cumulative.push_back(s.total_weight);
            const uint64_t step = edf_unit / w;
            lb._edf_step.push_back(step);
            // Envoy's EdfScheduler starts every entry at deadline 1/weight, FIFO on ties.
            lb._edf.push_back({step, k, k});
        }
        s.edf_seq = s.count;
        s.rr_cursor = seed % s.count;
        std::make_heap(lb._edf.begin() + s.begin, lb._edf.end(), later);

        if (lb._algorithm == lb_algorithm::ring_hash) {
            build_ring(s, members);
        } else if (lb._algorithm == lb_algorithm::maglev) {
            std::vector<maglev::endpoint> me;
            me.reserve(members.size());
            for (const uint32_t i : members) {
                me.push_back({c.endpoints[i].id, c.endpoints[i].weight});
            }
            auto t = maglev::table::build(me, c.policy.lb.hash->maglev_table_size);
            if (!t.ok()) {
                return err(t.err().message, c.name);
            }
            s.table = static_cast<uint32_t>(lb._tables.size());
            lb._tables.push_back(std::move(*t));
        }

        const auto idx = static_cast<uint32_t>(lb._sets.size());
        lb._sets.push_back(s);
        by_members.emplace(std::move(members), idx);
        return idx;
    }

    // Envoy's RingHashLoadBalancer::Ring: scale the normalized weights so that the lightest
    // endpoint gets ceil(min_ring_size * its share) entries (at most max_ring_size in all) and
    // hash "address:port_N". Unlike Envoy, the scale comes from every usable endpoint of the
    // cluster (set once, in build()) and each endpoint's entry count from its own weight only,
    // so an endpoint's entries do not depend on which others are healthy: a health change
    // moves only the keys of the endpoints that changed (Envoy rescales per healthy set).
    void build_ring(cand_set& s, const std::vector<uint32_t>& members)
    {
        std::vector<std::pair<uint64_t, uint32_t>> ring;
        for (const uint32_t i : members) {
            const std::string prefix = host_key(c.endpoints[i]) + "_";
            const double share = ring_scale * c.endpoints[i].weight / ring_total;
            const uint64_t entries = std::max<uint64_t>(1, std::llround(share));
            for (uint64_t n = 0; n < entries; ++n) {
                ring.emplace_back(lb_hash_key(prefix + std::to_string(n)), i);
            }
        }
        // Envoy sorts by hash only; ties (same address in two networks) go to the lower index
        // here so that the ring is deterministic.
        std::sort(ring.begin(), ring.end());
        s.ring_begin = static_cast<uint32_t>(lb._ring_hash.size());
        s.ring_count = static_cast<uint32_t>(ring.size());
        for (const auto& [h, i] : ring) {
            lb._ring_hash.push_back(h);
            lb._ring_endpoint.push_back(i);
        }
    }

    result<set_pair> make_pair(const std::vector<uint32_t>& indices)
    {
        auto h = make_set(indices, true);
        if (!h.ok()) {
            return h.err();
        }
        auto a = make_set(indices, false);
        if (!a.ok()) {
            return a.err();
        }
        return set_pair{*h, *a};
    }

    static bool later(const edf_entry& a, const edf_entry& b) noexcept
    {
        return a.deadline != b.deadline ? a.deadline > b.deadline : a.seq > b.seq;
    }
};

result<cluster_lb> cluster_lb::build(const snapshot::cluster& c, std::span<const bool> unhealthy,
                                     uint64_t seed)
{
    cluster_lb lb;
    if (c.missing) {
        return lb;
    }
    const size_t n = c.endpoints.size();
    if (!unhealthy.empty() && unhealthy.size() != n) {
        return err("health of " + std::to_string(unhealthy.size()) + " endpoints given for " +
                       std::to_string(n),
                   c.name);
    }
    const snapshot::lb_policy& pol = c.policy.lb;
    lb._simple = pol.simple;
    if (pol.hash) {
        lb._algorithm = pol.hash->algorithm == snapshot::hash_policy::algorithm_t::maglev
                            ? lb_algorithm::maglev
                            : lb_algorithm::ring_hash;
    } else {
        switch (pol.simple) {
        case snapshot::lb_policy::simple_t::least_request:
        case snapshot::lb_policy::simple_t::least_conn:
            lb._algorithm = lb_algorithm::least_request;
            break;
        case snapshot::lb_policy::simple_t::round_robin:
            lb._algorithm = lb_algorithm::round_robin;
            break;
        case snapshot::lb_policy::simple_t::random:
            lb._algorithm = lb_algorithm::random;
            break;
        case snapshot::lb_policy::simple_t::passthrough:
            lb._algorithm = lb_algorithm::passthrough;
            return lb; // ORIGINAL_DST: no endpoint set, no locality
        }
    }

    builder b{c, lb, seed, {}, {}, {}, 0, 1};
    b.usable.assign(n, false);
    b.healthy.assign(n, false);
    std::vector<locality::health> health(n, locality::health::healthy);
    for (size_t i = 0; i < n; ++i) {
        const snapshot::endpoint& e = c.endpoints[i];
        b.usable[i] = e.ready && e.weight > 0;
        const bool bad = (!unhealthy.empty() && unhealthy[i]) || !e.ready;
        b.healthy[i] = b.usable[i] && !bad;
        health[i] = bad ? locality::health::unhealthy : locality::health::healthy;
    }
    if (lb._algorithm == lb_algorithm::ring_hash) {
        uint64_t min_ring = pol.hash->minimum_ring_size;
        min_ring = min_ring == 0 ? default_min_ring_size : std::min(min_ring, max_ring_size);
        double total = 0;
        uint32_t min_weight = UINT32_MAX;
        for (size_t i = 0; i < n; ++i) {
            if (b.usable[i]) {
                total += c.endpoints[i].weight;
                min_weight = std::min(min_weight, c.endpoints[i].weight);
            }
        }
        if (total > 0) {
            const double min_norm = min_weight / total;
            b.ring_total = total;
            b.ring_scale = std::min(std::ceil(min_norm * static_cast<double>(min_ring)) / min_norm,
                                    static_cast<double>(max_ring_size));
        }
    }
    auto sel = locality::selector::compute(c.plan, health, c.policy.panic_threshold);
    if (!sel.ok()) {
        return err(sel.err().message, c.name);
    }
    lb._selector = std::move(*sel);

    for (const locality::level& lv : c.plan.levels) {
        auto p = b.make_pair(lv.endpoints);
        if (!p.ok()) {
            return p.err();
        }
        lb._level_sets.push_back(*p);
        lb._group_begin.push_back(static_cast<uint32_t>(lb._group_sets.size()));
        if (c.plan.locality_weighted) {
            for (const locality::locality_group& g : lv.groups) {
                auto gp = b.make_pair(g.endpoints);
                if (!gp.ok()) {
                    return gp.err();
                }
                lb._group_sets.push_back(*gp);
            }
        }
    }
    lb._group_begin.push_back(static_cast<uint32_t>(lb._group_sets.size()));
    return lb;
}

result<cluster_lb> cluster_lb::build(const snapshot::cluster& c, const health::table& h,
                                     uint64_t seed)
{
    const size_t n = c.endpoints.size();
    const auto bad = std::make_unique<bool[]>(n);
    for (size_t i = 0; i < n; ++i) {
        bad[i] = h.lookup(c.name, c.endpoints[i].id) != health::reason::healthy;
    }
    return build(c, std::span<const bool>(bad.get(), n), seed);
}

// ------------------------------------------------------------------------ pick

uint32_t cluster_lb::pick(const lb_request& r, std::span<const uint32_t> active) const noexcept
{
    if (_algorithm == lb_algorithm::none) {
        return no_endpoint_index;
    }
    if (_algorithm == lb_algorithm::passthrough) {
        return passthrough_index;
    }
    // Envoy chooses the priority from the request hash for consistent-hash balancers (random
    // when there is none), and from a random draw for the others.
    const locality::choice ch =
        _selector.choose(consistent() ? r.hash.value_or(r.random) : r.random);
    if (!ch.ok || ch.level >= _level_sets.size()) {
        return no_endpoint_index;
    }
    if (r.exclude_levels != 0 && ch.level < 64 && (r.exclude_levels >> ch.level & 1U) != 0) {
        // retryRemoteLocalities: the next level that was not tried, healthy endpoints first.
        for (size_t l = 0; l < _level_sets.size() && l < 64; ++l) {
            if ((r.exclude_levels >> l & 1U) != 0) {
                continue;
            }
            const uint32_t alt =
                _level_sets[l].healthy != no_set ? _level_sets[l].healthy : _level_sets[l].all;
            if (alt != no_set) {
                return pick_in(alt, r, active);
            }
        }
    }
    set_pair p = _level_sets[ch.level];
    if (ch.group != locality::all_groups) {
        const uint32_t g = _group_begin[ch.level] + ch.group;
        if (g >= _group_begin[ch.level + 1U]) {
            return no_endpoint_index;
        }
        p = _group_sets[g];
    }
    const uint32_t si = ch.panic ? p.all : p.healthy;
    if (si == no_set) {
        return no_endpoint_index;
    }
    return pick_in(si, r, active);
}

uint32_t cluster_lb::pick_in(uint32_t si, const lb_request& r,
                             std::span<const uint32_t> active) const noexcept
{
    const cand_set& s = _sets[si];
    const uint32_t* members = _members.data() + s.begin;
    if (_algorithm == lb_algorithm::ring_hash) {
        return ring_lookup(s, r.hash.value_or(r.random));
    }
    if (_algorithm == lb_algorithm::maglev) {
        const maglev::table& t = _tables[s.table];
        const uint32_t rank = t.lookup64(r.hash.value_or(r.random));
        return rank == maglev::no_endpoint ? no_endpoint_index : members[t.input_index(rank)];
    }
    if (s.count == 1) {
        return members[0];
    }
    const uint64_t x = fmix64(r.random ^ pick_seed);
    switch (_algorithm) {
    case lb_algorithm::random:
        return s.equal_weights ? members[scale64(x, s.count)] : _members[weighted_draw(s, x)];
    case lb_algorithm::round_robin:
        return round_robin(si);
    case lb_algorithm::least_request: {
        const auto load = [&](uint32_t e) noexcept -> uint64_t {
            return e < active.size() ? active[e] : 0;
        };
        if (s.equal_weights) {
            // Envoy N_CHOICES with choice_count 2: two draws with replacement; the second
            // replaces the first only when strictly less loaded.
            const uint32_t a = members[scale32(static_cast<uint32_t>(x), s.count)];
            const uint32_t b = members[scale32(static_cast<uint32_t>(x >> 32), s.count)];
            return load(b) < load(a) ? b : a;
        }
        // Stateless stand-in for Envoy's EDF over weight / (active + 1): two weighted draws,
        // the smaller active / weight wins, ties to the first. Idle, this is exactly weighted
        // random (as Envoy's schedule is); comparing (active + 1) / weight instead would send
        // nearly everything to the heaviest endpoint at low concurrency.
        const uint32_t pa = weighted_draw(s, x);
        const uint32_t pb = weighted_draw(s, fmix64(x ^ second_draw_seed));
        const u128 cost_a = static_cast<u128>(load(_members[pa])) * _weights[pb];
        const u128 cost_b = static_cast<u128>(load(_members[pb])) * _weights[pa];
        return cost_b < cost_a ? _members[pb] : _members[pa];
    }
    default:
        return no_endpoint_index;
    }
}

uint32_t cluster_lb::weighted_draw(const cand_set& s, uint64_t x) const noexcept
{
    const uint64_t target = scale64(x, s.total_weight);
    const uint64_t* first = _cumulative.data() + s.begin;
    const uint64_t* it = std::upper_bound(first, first + s.count, target);
    return s.begin + static_cast<uint32_t>(it - first);
}

uint32_t cluster_lb::ring_lookup(const cand_set& s, uint64_t h) const noexcept
{
    // Ketama: the first entry at or after h, wrapping to the first.
    const uint64_t* first = _ring_hash.data() + s.ring_begin;
    const uint64_t* last = first + s.ring_count;
    const uint64_t* it = std::lower_bound(first, last, h);
    const size_t k = it == last ? 0 : static_cast<size_t>(it - first);
    return _ring_endpoint[s.ring_begin + k];
}

uint32_t cluster_lb::round_robin(uint32_t si) const noexcept
{
    cand_set& s = _sets[si]; // mutable: the engine thread owns this balancer
    if (s.equal_weights) {
        const uint64_t k = s.rr_cursor % s.count;
        ++s.rr_cursor;
        return _members[s.begin + k];
    }
    edf_entry* const heap = _edf.data() + s.begin;
    edf_entry* const end = heap + s.count;
    std::pop_heap(heap, end, builder::later);
    edf_entry& e = end[-1];
    const uint32_t pos = e.pos;
    e.deadline += _edf_step[s.begin + pos];
    e.seq = s.edf_seq++;
    std::push_heap(heap, end, builder::later);
    if (heap[0].deadline >= edf_rebase_at) {
        const uint64_t base = heap[0].deadline;
        for (edf_entry* p = heap; p != end; ++p) {
            p->deadline -= base;
        }
    }
    return _members[s.begin + pos];
}

std::span<const uint32_t> cluster_lb::candidates(size_t level, uint16_t group,
                                                 bool panic) const noexcept
{
    if (level >= _level_sets.size()) {
        return {};
    }
    set_pair p = _level_sets[level];
    if (group != locality::all_groups) {
        const size_t g = _group_begin[level] + size_t{group};
        if (g >= _group_begin[level + 1]) {
            return {};
        }
        p = _group_sets[g];
    }
    const uint32_t si = panic ? p.all : p.healthy;
    if (si == no_set) {
        return {};
    }
    return std::span<const uint32_t>(_members).subspan(_sets[si].begin, _sets[si].count);
}

std::string cluster_lb::describe() const
{
    std::string out(lb_algorithm_name(_algorithm));
    const auto set_text = [&](uint32_t si) {
        if (si == no_set) {
            return std::string("{}");
        }
        const cand_set& s = _sets[si];
        std::string t = "{";
        for (uint32_t k = 0; k < s.count; ++k) {
            t += (k == 0 ? "" : ",") + std::to_string(_members[s.begin + k]);
            if (!s.equal_weights) {
                t += "*" + std::to_string(_weights[s.begin + k]);
            }
        }
        t += "}";
        if (s.ring_count != 0) {
            t += " ring " + std::to_string(s.ring_count);
        }
        if (s.table != no_set) {
            t += " maglev " + std::to_string(_tables[s.table].size());
        }
        return t;
    };
    out += " sets " + std::to_string(_sets.size()) + "\n";
    for (size_t l = 0; l < _level_sets.size(); ++l) {
        out += "  level " + std::to_string(l) + " load " + std::to_string(_selector.load()[l]) +
               "% health " + std::to_string(_selector.health_score()[l]) +
               (_selector.in_panic(l) ? " panic" : "") + ": healthy " +
               set_text(_level_sets[l].healthy) + " all " + set_text(_level_sets[l].all) + "\n";
        for (uint32_t g = _group_begin[l]; g < _group_begin[l + 1]; ++g) {
            out += "    group " + std::to_string(g - _group_begin[l]) + ": healthy " +
                   set_text(_group_sets[g].healthy) + " all " + set_text(_group_sets[g].all) + "\n";
        }
    }
    return out;
}

// ------------------------------------------------------------------------ keys, cookies

uint64_t lb_hash_key(std::string_view value) noexcept
{
    return xxh64(value, 0);
}

std::array<char, cookie_value_size> cookie_value(uint64_t seed) noexcept
{
    static constexpr char hex[] = "0123456789abcdef";
    uint64_t v = fmix64(seed);
    std::array<char, cookie_value_size> out{};
    for (size_t i = cookie_value_size; i-- > 0;) {
        out[i] = hex[v & 0xf];
        v >>= 4;
    }
    return out;
}

size_t set_cookie_size(std::string_view name, std::string_view value, std::string_view path,
                       uint64_t max_age_seconds) noexcept
{
    size_t n = name.size() + 3 + value.size(); // name="value"
    if (max_age_seconds != 0) {
        n += 10 + decimal_digits(max_age_seconds); // "; Max-Age=N"
    }
    if (!path.empty()) {
        n += 7 + path.size(); // "; Path=/p"
    }
    return n + 10; // "; HttpOnly"
}

size_t format_set_cookie(std::span<char> out, std::string_view name, std::string_view value,
                         std::string_view path, uint64_t max_age_seconds) noexcept
{
    const size_t need = set_cookie_size(name, value, path, max_age_seconds);
    if (out.size() < need) {
        return 0;
    }
    char* p = out.data();
    const auto put = [&p](std::string_view s) noexcept {
        for (const char ch : s) {
            *p++ = ch;
        }
    };
    put(name);
    put("=\"");
    put(value);
    put("\"");
    if (max_age_seconds != 0) {
        put("; Max-Age=");
        const size_t digits = decimal_digits(max_age_seconds);
        for (size_t i = digits; i-- > 0;) {
            p[i] = static_cast<char>('0' + max_age_seconds % 10);
            max_age_seconds /= 10;
        }
        p += digits;
    }
    if (!path.empty()) {
        put("; Path=");
        put(path);
    }
    put("; HttpOnly");
    return need;
}

} // namespace sluice::l7
