// The per-table regex set: Hyperscan full-match semantics, per-input scans, and the RE2
// fallback for what Hyperscan cannot take with RE2's meaning.
#include <gtest/gtest.h>

#include "sluice/snapshot/regex_set.hh"

namespace sluice::snapshot {
namespace {

regex_set must_build(std::vector<regex_pattern> p, uint16_t inputs)
{
    auto r = regex_set::build(std::move(p), inputs);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    return r.ok() ? std::move(r).value() : regex_set{};
}

TEST(SnapshotRegex, FullMatchSemanticsOnHyperscan)
{
    regex_set s = must_build({{"/users/[0-9]+", 0}, {".*", 0}, {"(?i)get|head", 1}}, 2);
    EXPECT_EQ(s.fallback_count(), 0U);
    ASSERT_NE(s.database(), nullptr);
    regex_scratch sc;
    ASSERT_TRUE(sc.prepare(s).ok());
    auto m = [&](uint32_t id, std::string_view text) {
        sc.begin_request(s);
        return s.matches(id, text, sc);
    };
    EXPECT_TRUE(m(0, "/users/42"));
    EXPECT_FALSE(m(0, "/users/42/x")); // anchored at the end
    EXPECT_FALSE(m(0, "x/users/42"));  // and at the start
    EXPECT_FALSE(m(0, "/users/42\n")); // `$`-before-newline is not a full match
    EXPECT_TRUE(m(1, ""));             // patterns that match empty still match empty
    EXPECT_TRUE(m(2, "HEAD"));
    EXPECT_FALSE(m(2, "GETS"));
}

TEST(SnapshotRegex, OneScanPerInputServesEveryPatternOfThatInput)
{
    // Pattern 1 would match the path too, but it reads input 1 (a header).
    regex_set s = must_build({{"/a.*", 0}, {"/a.*", 1}, {"/ab", 0}}, 2);
    regex_scratch sc;
    sc.begin_request(s); // not prepared: grows on first use
    EXPECT_TRUE(s.matches(0, "/ab", sc));
    EXPECT_TRUE(s.matches(2, "/ab", sc));
    EXPECT_FALSE(s.matches(1, "zzz", sc));
    sc.begin_request(s); // the next request forgets the hits
    EXPECT_FALSE(s.matches(2, "/ac", sc));
    EXPECT_TRUE(s.matches(1, "/a", sc));
}

TEST(SnapshotRegex, UnicodeAndRefusedPatternsFallBackToRe2)
{
    // \p{L}: a code point class (RE2 semantics need UTF-8). `é` is non-ASCII. `\C` is any
    // byte. RE2's ungreedy flag (?U) is valid RE2 that Hyperscan refuses to compile.
    regex_set s = must_build({{"/\\p{L}+", 0}, {"/café", 0}, {"/ok", 0}, {"(?U)[a-z]+x", 1}}, 2);
    EXPECT_EQ(s.fallback_count(), 3U);
    EXPECT_TRUE(s.is_fallback(0));
    EXPECT_TRUE(s.is_fallback(1));
    EXPECT_FALSE(s.is_fallback(2));
    EXPECT_TRUE(s.is_fallback(3));
    regex_scratch sc;
    ASSERT_TRUE(sc.prepare(s).ok());
    sc.begin_request(s);
    EXPECT_TRUE(s.matches(0, "/żółw", sc)); // one code point per letter under RE2
    EXPECT_FALSE(s.matches(0, "/x1", sc));
    EXPECT_TRUE(s.matches(1, "/café", sc));
    EXPECT_TRUE(s.matches(2, "/ok", sc));
    EXPECT_TRUE(s.matches(3, "abcx", sc));
    EXPECT_FALSE(s.matches(3, "abc", sc));
}

TEST(SnapshotRegex, InvalidRe2IsAnError)
{
    auto r = regex_set::build({{"(unclosed", 0}}, 1);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().message.find("invalid regex"), std::string::npos);
    auto back = regex_set::build({{"(a)\\1", 0}}, 1); // backreferences are not RE2
    EXPECT_FALSE(back.ok());
}

} // namespace
} // namespace sluice::snapshot
