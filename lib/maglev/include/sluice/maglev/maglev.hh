#pragma once
/// @file
/// Maglev consistent hashing (Eisenbud et al., NSDI'16) with integer endpoint weights.
///
/// Build (control side, pure, no EAL): `table::build()` sorts the endpoints by their stable
/// key, derives each one's permutation from the key with fixed seeds, and fills the table in
/// weighted turns (an endpoint of weight w takes a turn every max_weight / w rounds, as in
/// Envoy's MaglevTable). The same endpoint set therefore yields a byte-identical table on every
/// appliance, whatever order the caller listed the endpoints in (DESIGN.md §3).
///
/// Lookup (data path): `lookup()` is O(1), noexcept, allocation-free and lock-free; a built
/// table is immutable and may be read by any number of lcores at once. A table change is a new
/// table published by pointer swap (STYLE P3), never an in-place edit.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "sluice/base/result.hh"

namespace sluice::maglev {

/// Istio's default `consistentHash.maglev.tableSize`.
inline constexpr uint32_t default_table_size = 65537;
/// Smallest accepted table size: below 101 slots the spread cannot reach 1% granularity.
inline constexpr uint32_t min_table_size = 101;
/// Largest accepted table size (largest prime below 2^24; 32 MiB of build state at most).
inline constexpr uint32_t max_table_size = 16777213;
/// Most endpoints one table can hold: slots are 16-bit, and 0xffff means "no endpoint".
inline constexpr uint32_t max_endpoints = 65535;
/// What lookup() returns when the table has no endpoint with a non-zero weight.
inline constexpr uint32_t no_endpoint = 0xffff;

/// One backend as the builder sees it.
struct endpoint {
    uint64_t key = 0;    ///< stable identity (e.g. stable_key("10.0.0.1:80")); must be unique
    uint32_t weight = 1; ///< relative share; 0 = no slots (draining)
};

/// A stable 64-bit key from a string (FNV-1a then a 64-bit finalizer; fixed, never seeded per
/// process), for callers whose endpoint identity is a name or an address string.
[[nodiscard]] uint64_t stable_key(std::string_view s) noexcept;

/// True if `n` is prime (trial division; control side only).
[[nodiscard]] bool is_prime(uint32_t n) noexcept;

/// An immutable Maglev lookup table.
///
/// Endpoints are addressed by their *rank*: their position after sorting by key. lookup()
/// returns a rank; key_at()/input_index() translate it for the caller. Ranks (not input
/// positions) are stored so that the table bytes do not depend on input order.
class table {
public:
    /// An empty table: every lookup returns no_endpoint.
    table();

    /// Builds a table of `table_size` slots over `endpoints`. Errors: table_size not prime or
    /// outside [min_table_size, max_table_size]; more than max_endpoints endpoints; duplicate
    /// keys; fewer slots than endpoints with a non-zero weight. No endpoint (or all weights 0)
    /// is not an error: the table is empty. Allocates; control side only.
    [[nodiscard]] static result<table> build(std::span<const endpoint> endpoints,
                                             uint32_t table_size = default_table_size);

    /// The rank of the endpoint for `hash` (slot hash % size()), or no_endpoint when the table
    /// is empty. Hot path: O(1), noexcept, no allocation, no branch on the table contents.
    [[nodiscard]] uint32_t lookup(uint32_t hash) const noexcept { return _slots[fastmod(hash)]; }

    /// lookup() for a 64-bit hash: folds it to 32 bits (high ^ low) first.
    [[nodiscard]] uint32_t lookup64(uint64_t hash) const noexcept
    {
        return lookup(static_cast<uint32_t>(hash ^ (hash >> 32)));
    }

    /// Number of slots (the prime M), or 0 for an empty table.
    [[nodiscard]] uint32_t size() const noexcept { return _empty ? 0 : _size; }
    /// True when no endpoint owns a slot.
    [[nodiscard]] bool empty() const noexcept { return _empty; }
    /// All slots, each a rank or no_endpoint. Deterministic: compare these to compare tables.
    [[nodiscard]] std::span<const uint16_t> slots() const noexcept { return _slots; }
    /// Number of endpoints given to build() (including weight 0).
    [[nodiscard]] uint32_t endpoint_count() const noexcept
    {
        return static_cast<uint32_t>(_keys.size());
    }
    /// The key of the endpoint at `rank` (rank < endpoint_count()).
    [[nodiscard]] uint64_t key_at(uint32_t rank) const noexcept { return _keys[rank]; }
    /// Where the endpoint at `rank` was in the span given to build().
    [[nodiscard]] uint32_t input_index(uint32_t rank) const noexcept { return _input_index[rank]; }
    /// Slots owned by each rank (control side: counts over the whole table).
    [[nodiscard]] std::vector<uint32_t> slot_counts() const;

private:
    /// hash % _size without a divide (Lemire, Kaser, Kurz 2019: exact for 32-bit operands).
    [[nodiscard]] uint32_t fastmod(uint32_t a) const noexcept
    {
        __extension__ using u128 = unsigned __int128;
        const uint64_t low = _fastmod_m * a;
        return static_cast<uint32_t>((static_cast<u128>(low) * _size) >> 64);
    }

    // All fields: written once by build(), then read-only (fastpath: ro, ctl: ro).
    uint64_t _fastmod_m = 0; ///< UINT64_MAX / _size + 1 (0 when _size is 1)
    uint32_t _size = 1;      ///< slots; 1 (one no_endpoint slot) when empty
    bool _empty = true;
    std::vector<uint16_t> _slots;       ///< rank per slot
    std::vector<uint64_t> _keys;        ///< key per rank, ascending
    std::vector<uint32_t> _input_index; ///< input position per rank
};

/// How many slots map to a different endpoint *key* in `after` than in `before` (the churn a
/// change causes). Tables of different sizes count every slot. Control side / tests.
[[nodiscard]] uint32_t slots_moved(const table& before, const table& after);

} // namespace sluice::maglev
