#include <gtest/gtest.h>

#include "frames.hh"
#include "sluice/net/parse.hh"

namespace sluice::net {
namespace {

using namespace sluice::test;

malformed parse(const bytes& f, frame_info& info, uint32_t frame_len = 0)
{
    return parse_frame(f.data(), static_cast<uint32_t>(f.size()), info, frame_len);
}

TEST(ParseFrame, WellFormedTcp4)
{
    frame_info info;
    const auto f = eth(0x0800, ipv4(6, tcp(40000, 80, 0x02)));
    ASSERT_EQ(parse(f, info), malformed::none);
    EXPECT_EQ(info.ether_type, 0x0800);
    EXPECT_EQ(info.l2_len, 14);
    EXPECT_EQ(info.ip_proto, 6);
    EXPECT_EQ(info.l3_len, 20);
    EXPECT_EQ(info.l4_off, 34);
    EXPECT_EQ(info.ip_total, 40u);
    EXPECT_FALSE(info.fragment);
}

TEST(ParseFrame, RuntAndVlan)
{
    frame_info info;
    EXPECT_EQ(parse(bytes(13, 0), info), malformed::runt);
    EXPECT_EQ(parse(bytes(), info), malformed::runt);
    auto tagged = eth(0x0800, ipv4(17, udp(1, 2)), {100, 200});
    ASSERT_EQ(parse(tagged, info), malformed::none);
    EXPECT_EQ(info.l2_len, 22);
    EXPECT_EQ(info.ip_proto, 17);
    auto cut = eth(0x8100, bytes{0x00});
    EXPECT_EQ(parse(cut, info), malformed::vlan_truncated);
}

TEST(ParseFrame, BrokenIpv4)
{
    frame_info info;
    auto good = eth(0x0800, ipv4(1, icmp_echo(1, 1)));
    auto short_hdr = bytes(good.begin(), good.begin() + 14 + 10);
    EXPECT_EQ(parse(short_hdr, info), malformed::ipv4_truncated);
    auto bad_ver = good;
    bad_ver[14] = 0x65;
    EXPECT_EQ(parse(bad_ver, info), malformed::ipv4_bad_header);
    auto bad_ihl = good;
    bad_ihl[14] = 0x44;
    EXPECT_EQ(parse(bad_ihl, info), malformed::ipv4_bad_header);
    auto long_ihl = good;
    long_ihl[14] = 0x4f; // 60-byte header in a 20-byte one followed by 64 bytes: still fits
    long_ihl.resize(14 + 40);
    put16(long_ihl, 16, 40);
    EXPECT_EQ(parse(long_ihl, info), malformed::ipv4_truncated);
    auto too_long = good;
    put16(too_long, 16, 2000);
    EXPECT_EQ(parse(too_long, info), malformed::ipv4_bad_length);
    auto below_hdr = good;
    put16(below_hdr, 16, 10);
    EXPECT_EQ(parse(below_hdr, info), malformed::ipv4_bad_length);
    // Ethernet padding after the IP packet is fine.
    auto padded = good;
    padded.resize(padded.size() + 10, 0);
    EXPECT_EQ(parse(padded, info), malformed::none);
}

TEST(ParseFrame, Ipv4OptionsFragmentsAndL4)
{
    frame_info info;
    auto opt = eth(0x0800, ipv4(6, tcp(1, 2, 0x10), 1, 2, bytes{1, 1, 1, 0}));
    ASSERT_EQ(parse(opt, info), malformed::none);
    EXPECT_TRUE(info.ip_options);
    EXPECT_EQ(info.l3_len, 24);
    EXPECT_EQ(info.l4_off, 14 + 24);

    auto later_frag = eth(0x0800, ipv4(6, bytes(8, 0), 1, 2, {}, 0x0010)); // offset 128
    ASSERT_EQ(parse(later_frag, info), malformed::none);
    EXPECT_TRUE(info.fragment);
    EXPECT_EQ(info.l4_off, 0);

    auto first_frag = eth(0x0800, ipv4(6, bytes(8, 0), 1, 2, {}, 0x2000)); // MF, 8 bytes of TCP
    ASSERT_EQ(parse(first_frag, info), malformed::none);
    EXPECT_TRUE(info.fragment);
    EXPECT_EQ(info.l4_off, 34);

    auto short_tcp = eth(0x0800, ipv4(6, bytes(12, 0)));
    EXPECT_EQ(parse(short_tcp, info), malformed::l4_truncated);
    auto bad_doff = tcp(1, 2, 0x10);
    bad_doff[12] = 0xf0; // 60-byte TCP header in 20 bytes
    EXPECT_EQ(parse(eth(0x0800, ipv4(6, bad_doff)), info), malformed::l4_truncated);
    EXPECT_EQ(parse(eth(0x0800, ipv4(17, bytes(4, 0))), info), malformed::l4_truncated);
    EXPECT_EQ(parse(eth(0x0800, ipv4(1, bytes(7, 0))), info), malformed::l4_truncated);
    // Unknown protocols are the kernel's business.
    EXPECT_EQ(parse(eth(0x0800, ipv4(47, bytes(3, 0))), info), malformed::none);
}

TEST(ParseFrame, Ipv6WithExtensionHeaders)
{
    frame_info info;
    ASSERT_EQ(parse(eth(0x86dd, ipv6(17, udp(53, 53))), info), malformed::none);
    EXPECT_EQ(info.ip_proto, 17);
    EXPECT_EQ(info.l4_off, 14 + 40);

    bytes hbh(8, 0);
    hbh[0] = 43; // next: routing
    bytes rh(16, 0);
    rh[0] = 6; // next: TCP
    rh[1] = 1; // 16 bytes
    bytes ext = hbh;
    ext.insert(ext.end(), rh.begin(), rh.end());
    ASSERT_EQ(parse(eth(0x86dd, ipv6(6, tcp(1, 2, 2), ext, 0)), info), malformed::none);
    EXPECT_EQ(info.ip_proto, 6);
    EXPECT_EQ(info.l3_len, 40 + 24);
    EXPECT_EQ(info.l4_off, 14 + 64);

    bytes frag(8, 0);
    frag[0] = 17;
    put16(frag, 2, 0x0100); // offset 32, a later fragment
    ASSERT_EQ(parse(eth(0x86dd, ipv6(17, bytes(16, 0), frag, 44)), info), malformed::none);
    EXPECT_TRUE(info.fragment);
    EXPECT_EQ(info.l4_off, 0);
    EXPECT_EQ(info.ip_proto, 17);
    EXPECT_EQ(info.frag_hdr, 40) << "the fragment header right after the fixed header";
    // Behind a hop-by-hop header, the fragment header is found where it is.
    bytes hbh8(8, 0);
    hbh8[0] = 44;
    bytes hbh_frag = hbh8;
    hbh_frag.insert(hbh_frag.end(), frag.begin(), frag.end());
    ASSERT_EQ(parse(eth(0x86dd, ipv6(17, bytes(16, 0), hbh_frag, 0)), info), malformed::none);
    EXPECT_EQ(info.frag_hdr, 48);
    ASSERT_EQ(parse(eth(0x86dd, ipv6(17, udp(1, 2))), info), malformed::none);
    EXPECT_EQ(info.frag_hdr, 0) << "no fragment header";

    bytes cut_ext(8, 0);
    cut_ext[1] = 3; // claims 32 bytes
    EXPECT_EQ(parse(eth(0x86dd, ipv6(6, bytes(), cut_ext, 0)), info), malformed::ipv6_truncated);
    auto f = eth(0x86dd, ipv6(17, udp(1, 2)));
    auto short6 = bytes(f.begin(), f.begin() + 14 + 30);
    EXPECT_EQ(parse(short6, info), malformed::ipv6_truncated);
    auto long6 = f;
    put16(long6, 14 + 4, 500);
    EXPECT_EQ(parse(long6, info), malformed::ipv6_bad_length);
    auto ver = f;
    ver[14] = 0x40;
    EXPECT_EQ(parse(ver, info), malformed::ipv6_bad_header);
}

TEST(ParseFrame, ArpAndOthers)
{
    frame_info info;
    EXPECT_EQ(parse(eth(0x0806, arp_request()), info), malformed::none);
    EXPECT_EQ(parse(eth(0x0806, bytes(20, 0)), info), malformed::arp_truncated);
    EXPECT_EQ(parse(eth(0x88cc, bytes(3, 0)), info), malformed::none); // LLDP: to the kernel
}

TEST(ParseFrame, MultiSegmentLengthsUseTheWholeFrame)
{
    frame_info info;
    auto f = eth(0x0800, ipv4(17, udp(1, 2, 1000)));
    // Only the headers are contiguous; the IP length is checked against the whole frame.
    EXPECT_EQ(parse_frame(f.data(), 64, info, static_cast<uint32_t>(f.size())), malformed::none);
    EXPECT_EQ(parse_frame(f.data(), 64, info, 500), malformed::ipv4_bad_length);
}

} // namespace
} // namespace sluice::net
