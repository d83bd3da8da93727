#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "sluice/net/addr.hh"

namespace sluice::net {
namespace {

TEST(IpAddr, ParsesV4AndV6)
{
    auto a = ip_addr::parse("198.18.0.1");
    ASSERT_TRUE(a.ok());
    EXPECT_TRUE(a->is_v4());
    EXPECT_EQ(a->v4_host(), 0xc6120001u);
    EXPECT_EQ(a->to_string(), "198.18.0.1");
    auto b = ip_addr::parse("2001:db8::1");
    ASSERT_TRUE(b.ok());
    EXPECT_TRUE(b->is_v6());
    EXPECT_EQ(b->to_string(), "2001:db8::1");
    EXPECT_EQ(ip_addr::v4(0xc6120001u), *a);
}

TEST(IpAddr, RejectsGarbage)
{
    for (const char* bad : {"", "198.18.0", "198.18.0.256", "198.18.0.1.2", "01.2.3.4", "::g",
                            "1.2.3.4:80", "fe80::1%eth0", " 1.2.3.4"}) {
        EXPECT_FALSE(ip_addr::parse(bad).ok()) << bad;
    }
}

TEST(Prefix, ParsesCidrAndKeepsHostBits)
{
    auto p = prefix::parse("198.18.0.1/24");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->len, 24);
    EXPECT_EQ(p->to_string(), "198.18.0.1/24");
    EXPECT_EQ(p->network().to_string(), "198.18.0.0/24");
    EXPECT_TRUE(p->contains(*ip_addr::parse("198.18.0.200")));
    EXPECT_FALSE(p->contains(*ip_addr::parse("198.18.1.1")));
    EXPECT_FALSE(p->contains(*ip_addr::parse("::1")));
    auto v6 = prefix::parse("2001:db8:1:2::5/61");
    ASSERT_TRUE(v6.ok());
    EXPECT_EQ(v6->network().to_string(), "2001:db8:1::/61");
    EXPECT_EQ(prefix::parse("0.0.0.0/0")->network().to_string(), "0.0.0.0/0");
    EXPECT_EQ(prefix::parse("198.19.7.255/21")->network().to_string(), "198.19.0.0/21");
}

TEST(Prefix, ErrorsSayWhatIsWrong)
{
    auto a = prefix::parse("198.18.0.1/33");
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.err().message,
              "invalid CIDR \"198.18.0.1/33\": prefix length 33 exceeds 32 for IPv4");
    auto b = prefix::parse("198.18.0.1");
    ASSERT_FALSE(b.ok());
    EXPECT_NE(b.err().message.find("missing \"/length\""), std::string::npos);
    auto c = prefix::parse("198.18.0.x/24");
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.err().message.find("not an IPv4 or IPv6 address"), std::string::npos);
    EXPECT_FALSE(prefix::parse("::1/129").ok());
    EXPECT_FALSE(prefix::parse("1.2.3.4/").ok());
    EXPECT_FALSE(prefix::parse("1.2.3.4/2x").ok());
    EXPECT_FALSE(prefix::parse("1.2.3.4/-1").ok());
}

TEST(MacAddr, ParsesAndPrints)
{
    auto m = mac_addr::parse("02:00:5e:10:00:aB");
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->to_string(), "02:00:5e:10:00:ab");
    EXPECT_FALSE(mac_addr::parse("02:00:5e:10:00").ok());
    EXPECT_FALSE(mac_addr::parse("02:00:5e:10:00:ab:cd").ok());
    EXPECT_TRUE(mac_addr{}.is_zero());
}

} // namespace
} // namespace sluice::net

namespace sluice::net {
namespace {

TEST(SockAddr, RoundTripsBothFamiliesAndUnmapsV4MappedV6)
{
    ::sockaddr_storage ss{};
    const auto v4 = *ip_addr::parse("198.18.0.7");
    EXPECT_EQ(to_sockaddr(v4, 8080, ss), sizeof(sockaddr_in));
    EXPECT_EQ(ss.ss_family, AF_INET);
    EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port), 8080);
    EXPECT_EQ(from_sockaddr(ss), v4);
    const auto v6 = *ip_addr::parse("2001:db8::5");
    EXPECT_EQ(to_sockaddr(v6, 443, ss), sizeof(sockaddr_in6));
    EXPECT_EQ(from_sockaddr(ss), v6);
    // A dual-stack socket's IPv4 peer arrives as ::ffff:a.b.c.d.
    EXPECT_EQ(to_sockaddr(*ip_addr::parse("::ffff:198.18.0.9"), 1, ss), sizeof(sockaddr_in6));
    EXPECT_EQ(from_sockaddr(ss), *ip_addr::parse("198.18.0.9"));
    EXPECT_EQ(to_sockaddr(ip_addr{}, 1, ss), 0U);
    EXPECT_FALSE(from_sockaddr(ss).is_set());
}

} // namespace
} // namespace sluice::net
