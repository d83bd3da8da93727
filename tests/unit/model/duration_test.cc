#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "sluice/model/decode.hh"

namespace sluice::model {
namespace {

using namespace std::chrono_literals;

TEST(DurationParse, AcceptsGoSyntax)
{
    const struct {
        const char* text;
        duration want;
    } cases[] = {
        {"1.5s", 1500ms},
        {"300ms", 300ms},
        {"2h45m", 2h + 45min},
        {"1h", 1h},
        {"10us", 10us},
        {"10\xC2\xB5s", 10us}, // U+00B5 micro sign
        {"10\xCE\xBCs", 10us}, // U+03BC greek mu
        {"5ns", 5ns},
        {"0s", 0s},
        {"0", 0s},   // Go accepts a bare zero
        {"1.s", 1s}, // Go accepts a trailing dot
        {".5s", 500ms},
        {"+3s", 3s},
        {"1m30.5s", 90500ms},
        {"0.001s", 1ms},
        {"2562047h", std::chrono::hours(2562047)},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        const auto d = parse_duration(c.text);
        ASSERT_TRUE(d.ok()) << d.err().to_string();
        EXPECT_EQ(d->count(), c.want.count());
    }
}

TEST(DurationParse, RejectsMalformed)
{
    const struct {
        const char* text;
        const char* message;
    } cases[] = {
        {"", "invalid duration \"\": empty"},
        {"5", "invalid duration \"5\": missing unit (ns, us, ms, s, m, h)"},
        {"-1s", "invalid duration \"-1s\": must not be negative"},
        {"1d", "invalid duration \"1d\": unknown unit \"d\""},
        {".s", "invalid duration \".s\": expected a number"},
        {"s", "invalid duration \"s\": expected a number"},
        {"1s2", "invalid duration \"1s2\": missing unit (ns, us, ms, s, m, h)"},
        {"2562048h", "invalid duration \"2562048h\": overflow"},
        {"99999999999999999999s", "invalid duration \"99999999999999999999s\": overflow"},
        {"abc", "invalid duration \"abc\": expected a number"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.text);
        const auto d = parse_duration(c.text);
        ASSERT_FALSE(d.ok());
        EXPECT_EQ(d.err().message, c.message);
    }
}

TEST(HostResolve, ShortNamesResolveInNamespace)
{
    EXPECT_EQ(resolve_host("reviews", "prod"), "reviews.prod.svc.cluster.local");
    options o;
    o.cluster_domain = "corp.internal";
    EXPECT_EQ(resolve_host("reviews", "prod", o), "reviews.prod.svc.corp.internal");
    // Like Istio's ResolveShortnameToFQDN, a name with a dot is taken as written.
    EXPECT_EQ(resolve_host("reviews.prod", "default"), "reviews.prod");
    EXPECT_EQ(resolve_host("www.example.com", "prod"), "www.example.com");
    EXPECT_EQ(resolve_host("reviews.prod.svc.cluster.local", "x"),
              "reviews.prod.svc.cluster.local");
    EXPECT_EQ(resolve_host("*.example.com", "prod"), "*.example.com");
    EXPECT_EQ(resolve_host("*", "prod"), "*");
    EXPECT_EQ(resolve_host("10.0.0.1", "prod"), "10.0.0.1");
    EXPECT_EQ(resolve_host("2001:db8::1", "prod"), "2001:db8::1");
}

} // namespace
} // namespace sluice::model
