// Host matching as Istio/Envoy do it (wildcards, ports, case) and the set relations the
// compiler uses for gateway binding.
#include <gtest/gtest.h>

#include "sluice/snapshot/host_match.hh"

namespace sluice::snapshot {
namespace {

TEST(SnapshotHost, WildcardMatchesDeeperSubdomainsOnly)
{
    EXPECT_TRUE(host_matches("*.example.com", "a.example.com"));
    EXPECT_TRUE(host_matches("*.example.com", "a.b.example.com"));
    EXPECT_FALSE(host_matches("*.example.com", "example.com"));
    EXPECT_FALSE(host_matches("*.example.com", "aexample.com"));
    EXPECT_TRUE(host_matches("*", "anything"));
    EXPECT_TRUE(host_matches("API.test", "api.TEST"));
    EXPECT_FALSE(host_matches("api.test", "api.test.evil"));
}

TEST(SnapshotHost, AuthorityHostStripsPorts)
{
    EXPECT_EQ(authority_host("api.test:8080"), "api.test");
    EXPECT_EQ(authority_host("api.test"), "api.test");
    EXPECT_EQ(authority_host("[::1]:80"), "::1");
    EXPECT_EQ(authority_host("::1"), "::1");
    EXPECT_EQ(authority_host("api.test:http"), "api.test:http");
}

TEST(SnapshotHost, IntersectionAndSubset)
{
    EXPECT_TRUE(hosts_intersect("*.example.com", "a.example.com"));
    EXPECT_TRUE(hosts_intersect("a.example.com", "*.example.com"));
    EXPECT_TRUE(hosts_intersect("*.a.example.com", "*.example.com"));
    EXPECT_TRUE(hosts_intersect("*", "x.y"));
    EXPECT_FALSE(hosts_intersect("*.example.com", "example.com"));
    EXPECT_FALSE(hosts_intersect("*.a.com", "*.b.com"));
    EXPECT_TRUE(host_subset_of("a.example.com", "*.example.com"));
    EXPECT_TRUE(host_subset_of("*.a.example.com", "*.example.com"));
    EXPECT_FALSE(host_subset_of("*.example.com", "a.example.com"));
    EXPECT_FALSE(host_subset_of("*", "*.example.com"));
    EXPECT_TRUE(host_subset_of("*.example.com", "*"));
}

TEST(SnapshotHost, CaseInsensitiveOrdering)
{
    EXPECT_EQ(icompare("ABC", "abc"), 0);
    EXPECT_LT(icompare("abc", "ABD"), 0);
    EXPECT_GT(icompare("abcd", "ABC"), 0);
    EXPECT_TRUE(istarts_with("/Static/x", "/static"));
}

} // namespace
} // namespace sluice::snapshot
