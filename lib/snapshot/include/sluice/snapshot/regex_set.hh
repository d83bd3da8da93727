#pragma once
/// @file
/// The regular expressions of one route table, compiled once into a single Hyperscan
/// block-mode database (DESIGN.md §3), with RE2 as the fallback for patterns Hyperscan
/// rejects or cannot match with RE2's meaning.
///
/// Semantics are Istio's: RE2 syntax, full match (the pattern must match the whole input).
/// Each pattern is compiled as `^(?:PATTERN)\z` with HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY
/// in byte mode. A pattern goes to RE2 instead when it holds a non-ASCII byte or a Unicode
/// class (`\p`, `\P`, `\C`: RE2 works on UTF-8 code points, Hyperscan's byte mode on bytes,
/// and Hyperscan's UTF-8 mode has undefined behaviour on invalid UTF-8 input, which request
/// paths may hold), or when Hyperscan refuses it at compile time. fallback_count() says how
/// many; the RE2 path may lock (RE2's DFA cache) and allocate, Hyperscan's never does.
///
/// Every pattern reads one *input* (the path, the authority, one header, ...), numbered by the
/// caller. At match time a request scans each input it needs once against the whole
/// database; the callback keeps the hits for the patterns of that input in the scratch.
///
/// Thread contract: a built set is immutable and shared by every thread; each thread owns a
/// regex_scratch (Hyperscan scratch space + hit bits), prepared once per snapshot.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/base/result.hh"

struct hs_database;
struct hs_scratch;
namespace re2 {
class RE2;
}

namespace sluice::snapshot {

class regex_scratch;

/// One pattern as written (RE2 syntax, no anchors added) and the input it reads.
struct regex_pattern {
    std::string source;
    uint16_t input = 0;
};

/// The compiled patterns of one route table.
class regex_set {
public:
    regex_set();
    ~regex_set();
    regex_set(regex_set&&) noexcept;
    regex_set& operator=(regex_set&&) noexcept;
    regex_set(const regex_set&) = delete;
    regex_set& operator=(const regex_set&) = delete;

    /// Compiles `patterns` (ids are their positions). Errors: a pattern that neither
    /// Hyperscan nor RE2 accepts (its position and RE2's message). Control side: allocates.
    [[nodiscard]] static result<regex_set> build(std::vector<regex_pattern> patterns,
                                                 uint16_t input_count);

    /// Full match of pattern `id` against `text`, `text` being the value of the pattern's
    /// input for the current request (the caller passes the same text for one input within a
    /// request). Scans `text` through the database the first time an input is asked for in a
    /// request (see regex_scratch::begin_request()). Hot path: no allocation on the Hyperscan
    /// path.
    [[nodiscard]] bool matches(uint32_t id, std::string_view text,
                               regex_scratch& scratch) const noexcept;

    [[nodiscard]] size_t size() const noexcept { return _patterns.size(); }
    [[nodiscard]] uint16_t input_count() const noexcept { return _input_count; }
    /// Patterns matched by RE2 because Hyperscan could not take them.
    [[nodiscard]] size_t fallback_count() const noexcept { return _fallback_count; }
    /// True if pattern `id` is matched by RE2.
    [[nodiscard]] bool is_fallback(uint32_t id) const noexcept { return _re2[id] != nullptr; }
    [[nodiscard]] const regex_pattern& pattern(uint32_t id) const noexcept { return _patterns[id]; }
    /// The Hyperscan database, or nullptr when every pattern is a fallback (or none exist).
    [[nodiscard]] const hs_database* database() const noexcept { return _db; }

private:
    friend class regex_scratch;

    // All fields: written once by build(), then read-only (l7: ro, ctl: ro).
    hs_database* _db = nullptr;
    std::vector<regex_pattern> _patterns;
    std::vector<std::unique_ptr<re2::RE2>> _re2; ///< per pattern; non-null for fallbacks
    size_t _fallback_count = 0;
    uint16_t _input_count = 0;
};

/// Per-thread match state: Hyperscan scratch space big enough for every database it was
/// prepared for, and per-request hit bits. Not shareable between threads.
class regex_scratch {
public:
    regex_scratch();
    ~regex_scratch();
    regex_scratch(const regex_scratch&) = delete;
    regex_scratch& operator=(const regex_scratch&) = delete;

    /// Grows the scratch to serve `set` (hs_alloc_scratch on an existing scratch only grows
    /// it). Control side / once per snapshot per thread: allocates.
    [[nodiscard]] result<void> prepare(const regex_set& set);

    /// Forgets the hits of the previous request. Hot path: no allocation once the scratch
    /// has served a set as large as `set` (prepare() makes sure of it); otherwise the bit
    /// arrays grow once. A scratch Hyperscan finds too small is grown on first use.
    void begin_request(const regex_set& set) noexcept;

private:
    friend class regex_set;

    hs_scratch* _hs = nullptr;
    std::vector<uint64_t> _hits;   ///< bit per pattern id of the current set
    std::vector<uint8_t> _scanned; ///< per input: scanned in this request
};

} // namespace sluice::snapshot
