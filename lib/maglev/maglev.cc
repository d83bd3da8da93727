#include "sluice/maglev/maglev.hh"

#include "sluice/base/hash.hh"

#include <algorithm>
#include <limits>
#include <string>

namespace sluice::maglev {

namespace {

// Fixed seeds: changing either one changes every table in the fleet (and so moves flows when
// appliances of two versions sit behind one ECMP group). Do not change them.
constexpr uint64_t offset_seed = 0x9e3779b97f4a7c15ULL;
constexpr uint64_t skip_seed = 0xc2b2ae3d27d4eb4fULL;

struct ranked {
    uint64_t key;
    uint32_t weight;
    uint32_t input;
};

// Per-endpoint fill state. `next_turn` is in units of weight: the endpoint takes its next
// turn in the first round r with r * weight >= next_turn (integer form of Envoy's
// target_weight_, so no floating point can make two builds differ).
struct filler {
    uint64_t next_turn;
    uint32_t weight;
    uint32_t pos;
    uint32_t skip;
    uint16_t rank;
};

} // namespace

uint64_t stable_key(std::string_view s) noexcept
{
    uint64_t h = 0xcbf29ce484222325ULL; // FNV-1a 64 offset basis
    for (const char c : s) {
        h ^= static_cast<uint8_t>(c);
        h *= 0x100000001b3ULL;
    }
    return fmix64(h);
}

bool is_prime(uint32_t n) noexcept
{
    if (n < 2) {
        return false;
    }
    if (n % 2 == 0) {
        return n == 2;
    }
    for (uint32_t d = 3; static_cast<uint64_t>(d) * d <= n; d += 2) {
        if (n % d == 0) {
            return false;
        }
    }
    return true;
}

table::table() : _slots(1, static_cast<uint16_t>(no_endpoint)) {}

result<table> table::build(std::span<const endpoint> endpoints, uint32_t table_size)
{
    const std::string where = "maglev.tableSize";
    if (table_size < min_table_size || table_size > max_table_size) {
        return err("table size " + std::to_string(table_size) + " is outside [" +
                       std::to_string(min_table_size) + ", " + std::to_string(max_table_size) + "]",
                   where);
    }
    if (!is_prime(table_size)) {
        return err("table size " + std::to_string(table_size) +
                       " is not prime (Maglev needs a prime, e.g. 65537 or 655373)",
                   where);
    }
    if (endpoints.size() > max_endpoints) {
        return err("too many endpoints: " + std::to_string(endpoints.size()) + " (at most " +
                   std::to_string(max_endpoints) + ")");
    }

    std::vector<ranked> eps;
    eps.reserve(endpoints.size());
    for (uint32_t i = 0; i < endpoints.size(); ++i) {
        eps.push_back({endpoints[i].key, endpoints[i].weight, i});
    }
    std::sort(eps.begin(), eps.end(),
              [](const ranked& a, const ranked& b) { return a.key < b.key; });
    for (size_t i = 1; i < eps.size(); ++i) {
        if (eps[i].key == eps[i - 1].key) {
            return err("duplicate endpoint key " + std::to_string(eps[i].key) + " (inputs " +
                       std::to_string(eps[i - 1].input) + " and " + std::to_string(eps[i].input) +
                       ")");
        }
    }

    table t;
    t._keys.reserve(eps.size());
    t._input_index.reserve(eps.size());
    std::vector<filler> fill;
    uint32_t max_weight = 0;
    for (size_t r = 0; r < eps.size(); ++r) {
        t._keys.push_back(eps[r].key);
        t._input_index.push_back(eps[r].input);
        if (eps[r].weight == 0) {
            continue;
        }
        const uint64_t h1 = fmix64(eps[r].key ^ offset_seed);
        const uint64_t h2 = fmix64(eps[r].key ^ skip_seed);
        fill.push_back({0, eps[r].weight, static_cast<uint32_t>(h1 % table_size),
                        static_cast<uint32_t>(h2 % (table_size - 1) + 1),
                        static_cast<uint16_t>(r)});
        max_weight = std::max(max_weight, eps[r].weight);
    }
    if (fill.empty()) {
        return t; // no endpoint with a weight: the empty table
    }
    if (fill.size() > table_size) {
        return err(std::to_string(fill.size()) + " weighted endpoints do not fit in " +
                       std::to_string(table_size) + " slots (use a prime at least 100x larger)",
                   where);
    }

    t._size = table_size;
    t._empty = false;
    t._fastmod_m = std::numeric_limits<uint64_t>::max() / table_size + 1;
    t._slots.assign(table_size, static_cast<uint16_t>(no_endpoint));
    uint16_t* const slots = t._slots.data();

    // Weighted Maglev fill: in round r an endpoint takes a turn when r * weight has reached
    // its next_turn, which then grows by max_weight. An endpoint of the largest weight takes
    // a turn every round, one of a third of it every third round. Each turn claims the next
    // free slot of the endpoint's permutation (offset + j * skip) mod M.
    uint32_t filled = 0;
    for (uint64_t round = 0; filled < table_size; ++round) {
        for (filler& f : fill) {
            if (round * f.weight < f.next_turn) {
                continue;
            }
            f.next_turn += max_weight;
            while (slots[f.pos] != no_endpoint) {
                f.pos += f.skip;
                if (f.pos >= table_size) {
                    f.pos -= table_size;
                }
            }
            slots[f.pos] = f.rank;
            f.pos += f.skip;
            if (f.pos >= table_size) {
                f.pos -= table_size;
            }
            if (++filled == table_size) {
                break;
            }
        }
    }
    return t;
}

std::vector<uint32_t> table::slot_counts() const
{
    std::vector<uint32_t> counts(_keys.size(), 0);
    for (const uint16_t s : _slots) {
        if (s != no_endpoint) {
            ++counts[s];
        }
    }
    return counts;
}

uint32_t slots_moved(const table& before, const table& after)
{
    const auto a = before.slots();
    const auto b = after.slots();
    if (a.size() != b.size()) {
        return static_cast<uint32_t>(std::max(a.size(), b.size()));
    }
    uint32_t moved = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const bool a_none = a[i] == no_endpoint;
        const bool b_none = b[i] == no_endpoint;
        if (a_none != b_none || (!a_none && before.key_at(a[i]) != after.key_at(b[i]))) {
            ++moved;
        }
    }
    return moved;
}

} // namespace sluice::maglev
