// Fuzz target: the netlink mirror's decoder survives any byte stream the kernel (or an
// attacker with CAP_NET_ADMIN) could hand it.
#include <sys/socket.h>

#include <cstdint>
#include <vector>

#include <linux/neighbour.h>

#include "sluice/glue/netlink_mirror.hh"

using namespace sluice;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // Exactly `size` bytes on the heap (new[] is suitably aligned for nlmsghdr).
    std::vector<uint8_t> exact(data, data + size);
    static glue::mirror_state* state = new glue::mirror_state({{1, 0}, {2, 1}});
    state->apply(std::span<const uint8_t>(exact.data(), exact.size()));
    if (state->routes().size() > 100000) {
        state->clear();
    }
    return 0;
}

std::vector<std::vector<uint8_t>> fuzz_seeds()
{
    std::vector<std::vector<uint8_t>> seeds;
    rtmsg rt{};
    rt.rtm_family = AF_INET;
    rt.rtm_dst_len = 24;
    rt.rtm_table = RT_TABLE_MAIN;
    rt.rtm_type = RTN_UNICAST;
    glue::nl_msg r(RTM_NEWROUTE, 0, &rt, sizeof(rt));
    const uint8_t dst[4] = {198, 19, 1, 0};
    const uint8_t gw[4] = {198, 19, 1, 254};
    r.attr(RTA_DST, dst, 4).attr(RTA_GATEWAY, gw, 4).attr_u32(RTA_OIF, 2);
    seeds.emplace_back(r.bytes().begin(), r.bytes().end());
    ndmsg nd{};
    nd.ndm_family = AF_INET;
    nd.ndm_ifindex = 1;
    nd.ndm_state = NUD_REACHABLE;
    glue::nl_msg n(RTM_NEWNEIGH, 0, &nd, sizeof(nd));
    const uint8_t mac[6] = {2, 0, 0, 0, 0, 1};
    n.attr(NDA_DST, dst, 4).attr(NDA_LLADDR, mac, 6);
    seeds.emplace_back(n.bytes().begin(), n.bytes().end());
    auto both = seeds[0];
    both.insert(both.end(), seeds[1].begin(), seeds[1].end());
    seeds.push_back(both);
    return seeds;
}
