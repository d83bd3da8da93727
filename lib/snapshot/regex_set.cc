#include "sluice/snapshot/regex_set.hh"

#include <hs/hs.h>
#include <re2/re2.h>

#include <algorithm>
#include <utility>

namespace sluice::snapshot {

namespace {

// RE2 matches UTF-8 code points, Hyperscan's byte mode bytes: they agree on ASCII patterns
// only. Unicode classes (\p, \P) and \C (any byte) also need RE2.
bool hyperscan_can_take(const std::string& p)
{
    for (size_t i = 0; i < p.size(); ++i) {
        const auto c = static_cast<unsigned char>(p[i]);
        if (c >= 0x80) {
            return false;
        }
        if (c == '\\' && i + 1 < p.size()) {
            const char n = p[i + 1];
            if (n == 'p' || n == 'P' || n == 'C') {
                return false;
            }
            ++i;
        }
    }
    return true;
}

struct scan_ctx {
    const regex_pattern* patterns;
    uint64_t* hits;
    uint16_t input;
};

int on_match(unsigned int id, unsigned long long /*from*/, unsigned long long /*to*/,
             unsigned int /*flags*/, void* p) noexcept
{
    auto* ctx = static_cast<scan_ctx*>(p);
    if (ctx->patterns[id].input == ctx->input) {
        ctx->hits[id / 64] |= uint64_t{1} << (id % 64);
    }
    return 0; // keep scanning: other patterns of this input may match too
}

} // namespace

regex_set::regex_set() = default;

regex_set::~regex_set()
{
    if (_db != nullptr) {
        hs_free_database(_db);
    }
}

regex_set::regex_set(regex_set&& o) noexcept
    : _db(std::exchange(o._db, nullptr)), _patterns(std::move(o._patterns)),
      _re2(std::move(o._re2)), _fallback_count(o._fallback_count), _input_count(o._input_count)
{
}

regex_set& regex_set::operator=(regex_set&& o) noexcept
{
    if (this != &o) {
        if (_db != nullptr) {
            hs_free_database(_db);
        }
        _db = std::exchange(o._db, nullptr);
        _patterns = std::move(o._patterns);
        _re2 = std::move(o._re2);
        _fallback_count = o._fallback_count;
        _input_count = o._input_count;
    }
    return *this;
}

result<regex_set> regex_set::build(std::vector<regex_pattern> patterns, uint16_t input_count)
{
    regex_set s;
    s._patterns = std::move(patterns);
    s._input_count = input_count;
    s._re2.resize(s._patterns.size());

    // Every pattern must be valid RE2 (Istio's syntax) whichever engine matches it.
    std::vector<bool> use_hs(s._patterns.size(), false);
    for (size_t i = 0; i < s._patterns.size(); ++i) {
        RE2::Options o;
        o.set_log_errors(false);
        RE2 probe(s._patterns[i].source, o);
        if (!probe.ok()) {
            return err("invalid regex '" + s._patterns[i].source + "': " + probe.error(),
                       "pattern " + std::to_string(i));
        }
        use_hs[i] = hyperscan_can_take(s._patterns[i].source);
    }

    // hs_compile_multi names the first expression it refuses; move that one to RE2 and try
    // again (normally zero or a few rounds).
    for (;;) {
        std::vector<std::string> wrapped;
        std::vector<unsigned> ids;
        for (size_t i = 0; i < s._patterns.size(); ++i) {
            if (use_hs[i]) {
                wrapped.push_back("^(?:" + s._patterns[i].source + ")\\z");
                ids.push_back(static_cast<unsigned>(i));
            }
        }
        if (wrapped.empty()) {
            break;
        }
        std::vector<const char*> exprs;
        std::vector<unsigned> flags(wrapped.size(), HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY);
        exprs.reserve(wrapped.size());
        for (const std::string& w : wrapped) {
            exprs.push_back(w.c_str());
        }
        hs_database_t* db = nullptr;
        hs_compile_error_t* cerr = nullptr;
        const hs_error_t rc = hs_compile_multi(exprs.data(), flags.data(), ids.data(),
                                               static_cast<unsigned>(exprs.size()), HS_MODE_BLOCK,
                                               nullptr, &db, &cerr);
        if (rc == HS_SUCCESS) {
            s._db = db;
            break;
        }
        const int bad = cerr != nullptr ? cerr->expression : -1;
        const std::string msg = cerr != nullptr && cerr->message != nullptr ? cerr->message : "";
        hs_free_compile_error(cerr);
        if (bad < 0 || static_cast<size_t>(bad) >= ids.size()) {
            return err("hyperscan: " + msg, "regex database");
        }
        use_hs[ids[static_cast<size_t>(bad)]] = false;
    }

    for (size_t i = 0; i < s._patterns.size(); ++i) {
        if (!use_hs[i]) {
            RE2::Options o;
            o.set_log_errors(false);
            s._re2[i] = std::make_unique<RE2>(s._patterns[i].source, o);
            ++s._fallback_count;
        }
    }
    return s;
}

bool regex_set::matches(uint32_t id, std::string_view text, regex_scratch& scratch) const noexcept
{
    if (_re2[id] != nullptr) {
        return RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *_re2[id]);
    }
    const uint16_t input = _patterns[id].input;
    if (scratch._scanned.size() < _input_count ||
        scratch._hits.size() < (_patterns.size() + 63) / 64) {
        scratch.begin_request(*this); // not begun for this set: grows once
    }
    if (scratch._scanned[input] == 0) {
        scratch._scanned[input] = 1;
        scan_ctx ctx{_patterns.data(), scratch._hits.data(), input};
        hs_error_t rc = hs_scan(_db, text.data(), static_cast<unsigned>(text.size()), 0,
                                scratch._hs, on_match, &ctx);
        if (rc == HS_INVALID || rc == HS_SCRATCH_IN_USE || scratch._hs == nullptr) {
            // The scratch was never grown for this database: grow it once, then rescan.
            if (hs_alloc_scratch(_db, &scratch._hs) != HS_SUCCESS) {
                return false;
            }
            rc = hs_scan(_db, text.data(), static_cast<unsigned>(text.size()), 0, scratch._hs,
                         on_match, &ctx);
        }
        if (rc != HS_SUCCESS) {
            return false;
        }
    }
    return (scratch._hits[id / 64] >> (id % 64) & 1U) != 0;
}

regex_scratch::regex_scratch() = default;

regex_scratch::~regex_scratch()
{
    if (_hs != nullptr) {
        hs_free_scratch(_hs);
    }
}

result<void> regex_scratch::prepare(const regex_set& set)
{
    if (set._db != nullptr && hs_alloc_scratch(set._db, &_hs) != HS_SUCCESS) {
        return err("hs_alloc_scratch failed", "regex scratch");
    }
    const size_t words = (set.size() + 63) / 64;
    if (_hits.size() < words) {
        _hits.resize(words);
    }
    if (_scanned.size() < set.input_count()) {
        _scanned.resize(set.input_count());
    }
    return ok();
}

void regex_scratch::begin_request(const regex_set& set) noexcept
{
    const size_t words = (set.size() + 63) / 64;
    if (_hits.size() < words) {
        _hits.resize(words);
    }
    if (_scanned.size() < set.input_count()) {
        _scanned.resize(set.input_count());
    }
    std::fill(_hits.begin(), _hits.begin() + static_cast<std::ptrdiff_t>(words), 0);
    std::fill(_scanned.begin(), _scanned.begin() + set.input_count(), 0);
}

} // namespace sluice::snapshot
