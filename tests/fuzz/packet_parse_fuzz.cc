// Fuzz target: net::parse_frame never reads out of bounds and its offsets stay inside the
// frame when it says the frame is well formed.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "frames.hh"
#include "sluice/net/parse.hh"

using namespace sluice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // Copy into an exact-size heap buffer so ASan catches any read past the end.
    std::vector<uint8_t> buf(data, data + size);
    net::frame_info info;
    const auto r = net::parse_frame(buf.data(), static_cast<uint32_t>(buf.size()), info);
    if (r == net::malformed::none) {
        if (info.l2_len > size || info.l4_off > size) {
            std::abort();
        }
        if ((info.ether_type == 0x0800 || info.ether_type == 0x86dd) &&
            info.l2_len + info.ip_total > size) {
            std::abort();
        }
    }
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds()
{
    using namespace sluice::test;
    bytes hbh(8, 0);
    hbh[0] = 6;
    bytes frag(8, 0);
    frag[0] = 17;
    return {
        eth(0x0800, ipv4(6, tcp(1, 80, 2))),
        eth(0x0800, ipv4(17, udp(1, 53, 12)), {7, 8}),
        eth(0x0800, ipv4(1, icmp_echo(1, 2), 1, 2, bytes{1, 1, 1, 0})),
        eth(0x86dd, ipv6(6, tcp(1, 2, 0x10), hbh, 0)),
        eth(0x86dd, ipv6(17, udp(1, 2), frag, 44)),
        eth(0x0806, arp_request()),
    };
}
