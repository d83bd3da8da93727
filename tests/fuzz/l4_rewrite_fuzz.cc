// Fuzz target: the L4 rewrites on whatever parse_frame accepts. Full-NAT rewrites, MSS
// clamping, ICMP error quote parsing and translation, IP-only rewrites of fragments never read
// or write outside the packet, and a rewrite of a packet whose L4 checksum was right leaves it
// right.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "frames.hh"
#include "sluice/net/parse.hh"
#include "sluice/net/rewrite.hh"

using namespace sluice;

namespace {

const uint8_t new_src[16] = {198, 19, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const uint8_t new_dst[16] = {198, 19, 1, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::vector<uint8_t> buf(data, data + size);
    net::frame_info fi;
    if (net::parse_frame(buf.data(), static_cast<uint32_t>(buf.size()), fi) !=
            net::malformed::none ||
        (fi.ether_type != 0x0800 && fi.ether_type != 0x86dd)) {
        return 0;
    }
    // Work on an exact-size copy of the IP packet so ASan sees any overrun.
    std::vector<uint8_t> ip(buf.begin() + fi.l2_len, buf.begin() + fi.l2_len + fi.ip_total);
    const uint8_t family = fi.ether_type == 0x0800 ? 4 : 6;
    const uint8_t* src = ip.data() + (family == 4 ? 12 : 8);
    const uint8_t* dst = ip.data() + (family == 4 ? 16 : 24);
    if (fi.l4_off == 0) {
        if (family == 4) {
            net::ip_rewrite_v4(ip.data(), new_src, new_dst, true);
        } else {
            net::ip_rewrite_v6(ip.data(), new_src, new_dst, true);
        }
        return 0;
    }
    uint8_t* l4 = ip.data() + fi.l3_len;
    const size_t l4_len = fi.ip_total - fi.l3_len;
    if ((fi.ip_proto == 6 && l4_len >= 20) || (fi.ip_proto == 17 && l4_len >= 8)) {
        const bool ok_before =
            !fi.fragment && net::l4_checksum_ok(family, fi.ip_proto, src, dst, l4, l4_len);
        if (fi.ip_proto == 6) {
            net::tcp_clamp_mss(l4, std::min<size_t>(l4_len, (l4[12] >> 4) * 4u), 536);
        }
        const bool ok_mid =
            !fi.fragment && net::l4_checksum_ok(family, fi.ip_proto, src, dst, l4, l4_len);
        if (ok_before && !ok_mid) {
            std::abort(); // the MSS clamp broke a good checksum
        }
        net::nat_tuple t{new_src, new_dst, 0x1234, 0x5678};
        const bool done = family == 4 ? net::nat_rewrite_v4(ip.data(), l4, fi.ip_proto, t, true)
                                      : net::nat_rewrite_v6(ip.data(), l4, fi.ip_proto, t, true);
        if (done && ok_mid && !net::l4_checksum_ok(family, fi.ip_proto, src, dst, l4, l4_len)) {
            std::abort(); // the incremental update disagrees with a recomputation
        }
        return 0;
    }
    if ((family == 4 && fi.ip_proto == 1) || (family == 6 && fi.ip_proto == 58)) {
        net::icmp_quote q;
        const bool err = family == 4 ? net::icmp4_error_quote(l4, l4_len, q)
                                     : net::icmp6_error_quote(l4, l4_len, q);
        if (!err) {
            return 0;
        }
        if (q.l4_off + 8u > l4_len || q.ip_off >= q.l4_off) {
            std::abort(); // the quote must lie inside the message
        }
        net::nat_tuple inner{new_src, new_dst, 0x1111, 0x2222};
        if (family == 4) {
            net::icmp4_error_translate(ip.data(), l4, l4_len, q, new_dst, new_src, inner, true);
        } else {
            net::icmp6_error_translate(ip.data(), l4, l4_len, q, new_dst, new_src, inner, true);
        }
    }
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds()
{
    using namespace sluice::test;
    bytes quote = ipv4(17, udp(1024, 8001, 8), 0xc613ff01, 0xc613010a);
    bytes icmp(8, 0);
    icmp[0] = 3;
    icmp[1] = 4;
    icmp.insert(icmp.end(), quote.begin(), quote.end());
    return {
        eth(0x0800, ipv4(6, tcp(40000, 7000, 2))),
        eth(0x0800, ipv4(17, udp(40000, 7001, 12))),
        eth(0x0800, ipv4(1, icmp)),
        eth(0x86dd, ipv6(6, tcp(1, 2, 0x12))),
        eth(0x0800, ipv4(17, bytes(64, 1), 1, 2, {}, 0x0008)),
    };
}
