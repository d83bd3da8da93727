// rte_flow steering of full-NAT replies: the port-block decomposition, the per-worker span,
// the rule structs, and the all-or-nothing installation against a scripted fake NIC.
//
// The fake: this test binary links with -Wl,--wrap=rte_flow_{validate,create,destroy,flush}
// (STYLE T4), so glue's calls land in the __wrap_ functions below, which record them and
// refuse where a test says so. No EAL, no port.
#include <gtest/gtest.h>

#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <rte_byteorder.h>
#include <rte_errno.h>

#include "sluice/fastpath/l4_stage.hh"
#include "sluice/glue/flow_steering.hh"

namespace {

struct fake_nic {
    int refuse_validate_at = -1; ///< index of the validate call that fails (-1: none)
    int refuse_create_at = -1;
    int destroy_fails = 0; ///< destroy calls that fail before one succeeds
    int validates = 0;
    int creates = 0;
    std::vector<uintptr_t> live;      ///< created and not destroyed
    std::vector<uintptr_t> destroyed; ///< in order
    std::vector<uint16_t> queues;     ///< queue index of every rule created
    int flushes = 0;
};
fake_nic g_nic;

} // namespace

extern "C" {
int __wrap_rte_flow_validate(uint16_t, const rte_flow_attr*, const rte_flow_item[],
                             const rte_flow_action[], rte_flow_error* e)
{
    if (g_nic.validates++ == g_nic.refuse_validate_at) {
        e->message = "port masks not supported";
        e->type = RTE_FLOW_ERROR_TYPE_ITEM_MASK;
        return -ENOTSUP;
    }
    return 0;
}

rte_flow* __wrap_rte_flow_create(uint16_t, const rte_flow_attr*, const rte_flow_item[],
                                 const rte_flow_action actions[], rte_flow_error* e)
{
    if (g_nic.creates++ == g_nic.refuse_create_at) {
        e->message = "no room for more rules";
        rte_errno = ENOSPC;
        return nullptr;
    }
    const auto* q = static_cast<const rte_flow_action_queue*>(actions[0].conf);
    g_nic.queues.push_back(q->index);
    const uintptr_t id = 0x1000 + static_cast<uintptr_t>(g_nic.creates);
    g_nic.live.push_back(id);
    return reinterpret_cast<rte_flow*>(id);
}

int __wrap_rte_flow_destroy(uint16_t, rte_flow* f, rte_flow_error*)
{
    if (g_nic.destroy_fails > 0) {
        --g_nic.destroy_fails;
        return -EIO;
    }
    const auto id = reinterpret_cast<uintptr_t>(f);
    g_nic.destroyed.push_back(id);
    g_nic.live.erase(std::remove(g_nic.live.begin(), g_nic.live.end(), id), g_nic.live.end());
    return 0;
}

int __wrap_rte_flow_flush(uint16_t, rte_flow_error*)
{
    ++g_nic.flushes;
    g_nic.live.clear();
    return 0;
}
}

namespace sluice::glue {
namespace {

// Every port of [lo, hi] in exactly one block, and none outside: aligned prefix blocks that,
// in order, start at lo, follow each other without gap or overlap, and end at hi.
void expect_exact_cover(uint16_t lo, uint16_t hi, const std::vector<port_block>& blocks)
{
    ASSERT_FALSE(blocks.empty());
    uint32_t next = lo;
    for (const auto& b : blocks) {
        // Its mask is a prefix (ones, then zeros) and its value has no bit under the zeros.
        const uint32_t inv = static_cast<uint16_t>(~b.mask);
        EXPECT_EQ(inv & (inv + 1), 0u) << std::hex << b.mask;
        EXPECT_EQ(b.value & inv, 0u) << std::hex << b.value << "/" << b.mask;
        EXPECT_EQ(b.first(), next) << "gap or overlap before block " << b.value;
        next = uint32_t{b.last()} + 1;
    }
    EXPECT_EQ(next, uint32_t{hi} + 1);
}

// The fewest aligned blocks covering [lo, hi], by another method: dynamic programming over
// the range (a cover of [lo, end] is a cover of [lo, first) plus one block [first, end]).
size_t min_blocks_reference(uint32_t lo, uint32_t hi)
{
    std::vector<size_t> best(hi - lo + 2, SIZE_MAX); // best[i]: cover of [lo, lo + i)
    best[0] = 0;
    for (uint32_t end = lo; end <= hi; ++end) {
        for (uint32_t size = 1; size <= end + 1; size <<= 1) {
            const uint32_t first = end + 1 - size;
            if (first < lo) {
                break;
            }
            if (first % size == 0 && best[first - lo] != SIZE_MAX) {
                best[end - lo + 1] = std::min(best[end - lo + 1], best[first - lo] + 1);
            }
        }
    }
    return best[hi - lo + 1];
}

TEST(PortBlocks, OnePort)
{
    const auto b = port_blocks(1024, 1024);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0], (port_block{1024, 0xffff}));
    EXPECT_EQ(port_blocks(65535, 65535), (std::vector<port_block>{{65535, 0xffff}}));
    EXPECT_EQ(port_blocks(0, 0), (std::vector<port_block>{{0, 0xffff}}));
}

TEST(PortBlocks, AlignedPowerOfTwoIsOneBlock)
{
    EXPECT_EQ(port_blocks(1024, 2047), (std::vector<port_block>{{1024, 0xfc00}}));
    EXPECT_EQ(port_blocks(32768, 65535), (std::vector<port_block>{{32768, 0x8000}}));
    EXPECT_EQ(port_blocks(0, 65535), (std::vector<port_block>{{0, 0x0000}}));
}

TEST(PortBlocks, UpToTheTopPortDoesNotWrap)
{
    // One worker: every SNAT port, 1024..65535 (the last block ends at 65535).
    const auto b = port_blocks(1024, 65535);
    EXPECT_EQ(b, (std::vector<port_block>{{1024, 0xfc00},
                                          {2048, 0xf800},
                                          {4096, 0xf000},
                                          {8192, 0xe000},
                                          {16384, 0xc000},
                                          {32768, 0x8000}}));
    expect_exact_cover(1024, 65535, b);
    expect_exact_cover(65534, 65535, port_blocks(65534, 65535));
    expect_exact_cover(1, 65535, port_blocks(1, 65535));
    EXPECT_EQ(port_blocks(1, 65535).size(), 16u);
}

TEST(PortBlocks, SpanNotAPowerOfTwo)
{
    // Two workers over 64512 ports (32256 each, as with flow_steering = "off").
    const auto w0 = port_blocks(1024, 33279);
    expect_exact_cover(1024, 33279, w0);
    EXPECT_EQ(w0.size(), 6u);
    EXPECT_EQ(w0.back(), (port_block{32768, 0xfe00})); // 32768..33279
    const auto w1 = port_blocks(33280, 65535);
    expect_exact_cover(33280, 65535, w1);
    EXPECT_EQ(w1.size(), 6u);
    EXPECT_EQ(w1.front(), (port_block{33280, 0xfe00}));
    // The worst case: every bit but the top contributes a block on each side.
    EXPECT_EQ(port_blocks(1, 65534).size(), 30u);
    expect_exact_cover(1, 65534, port_blocks(1, 65534));
}

TEST(PortBlocks, ExactAndMinimalOverManyRanges)
{
    // Deterministic sample: small ranges everywhere, and the SNAT partitions of 1..64 workers.
    std::vector<std::pair<uint16_t, uint16_t>> ranges;
    for (uint32_t lo = 0; lo < 300; lo += 7) {
        for (uint32_t len = 1; len < 200; len += 13) {
            ranges.emplace_back(lo, lo + len - 1);
        }
    }
    for (uint16_t w = 1; w <= 64; ++w) {
        for (const bool steering : {false, true}) {
            const uint16_t span = snat_port_span(w, steering);
            for (uint16_t i = 0; i < w; ++i) {
                const auto r = snat_port_range(i, span);
                ranges.emplace_back(r.lo, r.hi);
            }
        }
    }
    ranges.emplace_back(12345, 54321);
    for (const auto& [lo, hi] : ranges) {
        const auto b = port_blocks(lo, hi);
        SCOPED_TRACE(std::to_string(lo) + ".." + std::to_string(hi));
        expect_exact_cover(lo, hi, b);
        EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
        if (hi - lo < 4096) { // the reference is quadratic-ish; the bound suffices above
            EXPECT_EQ(b.size(), min_blocks_reference(lo, hi));
        }
        EXPECT_LE(b.size(), 30u);
    }
}

TEST(SnatPortSpan, WithoutSteeringEveryPortIsShared)
{
    EXPECT_EQ(snat_port_span(1, false), 64512);
    EXPECT_EQ(snat_port_span(2, false), 32256);
    EXPECT_EQ(snat_port_span(3, false), 21504);
    EXPECT_EQ(snat_port_span(1, true), 64512); // one worker: nothing to steer
}

TEST(SnatPortSpan, WithSteeringFewerBlocksForAtMostOneSixteenthOfThePorts)
{
    for (uint16_t w = 2; w <= 64; ++w) {
        const uint16_t full = snat_port_span(w, false);
        const uint16_t s = snat_port_span(w, true);
        SCOPED_TRACE("workers " + std::to_string(w));
        EXPECT_LE(s, full);
        EXPECT_GE(s, full - full / 16);
        EXPECT_LE(steering_blocks(w, s), steering_blocks(w, full));
        // The last worker's range stays inside the port space (owner_of() needs no wrap).
        EXPECT_LE(fastpath::snat_port_base + uint32_t{w} * s, 65536u);
    }
    // The cases the header promises.
    EXPECT_EQ(steering_blocks(2, snat_port_span(2, false)), 12u);
    EXPECT_EQ(steering_blocks(2, snat_port_span(2, true)), 10u);
    EXPECT_EQ(snat_port_span(2, true), 31744);
    EXPECT_EQ(steering_blocks(8, snat_port_span(8, false)), 48u);
    EXPECT_EQ(steering_blocks(8, snat_port_span(8, true)), 32u);
    EXPECT_EQ(steering_blocks(10, snat_port_span(10, false)), 128u);
    EXPECT_EQ(steering_blocks(10, snat_port_span(10, true)), 35u);
}

TEST(SnatPortSpan, RangesMatchTheOwnerPartition)
{
    // owner_of() in the L4 stage: (port - snat_port_base) / span, below `workers`.
    const uint16_t w = 3;
    const uint16_t span = snat_port_span(w, true);
    for (uint16_t i = 0; i < w; ++i) {
        const auto r = snat_port_range(i, span);
        EXPECT_EQ((r.lo - fastpath::snat_port_base) / span, i);
        EXPECT_EQ((r.hi - fastpath::snat_port_base) / span, i);
        if (i + 1 < w) {
            EXPECT_EQ(snat_port_range(i + 1, span).lo, r.hi + 1);
        }
    }
}

TEST(FlowRule, Ipv4Tcp)
{
    const auto a = *net::ip_addr::parse("198.19.255.1");
    const flow_rule r = build_rule(a, IPPROTO_TCP, {1024, 0xfc00}, 1);
    EXPECT_EQ(r.attr.ingress, 1u);
    EXPECT_EQ(r.attr.egress, 0u);
    EXPECT_EQ(r.attr.group, 0u);
    ASSERT_EQ(r.pattern[0].type, RTE_FLOW_ITEM_TYPE_ETH);
    EXPECT_EQ(r.pattern[0].spec, nullptr);
    EXPECT_EQ(r.pattern[0].mask, nullptr);
    ASSERT_EQ(r.pattern[1].type, RTE_FLOW_ITEM_TYPE_IPV4);
    const auto* ips = static_cast<const rte_flow_item_ipv4*>(r.pattern[1].spec);
    const auto* ipm = static_cast<const rte_flow_item_ipv4*>(r.pattern[1].mask);
    ASSERT_EQ(ips, &r.ip4_spec);
    EXPECT_EQ(ips->hdr.dst_addr, rte_cpu_to_be_32(0xc613ff01)); // 198.19.255.1
    EXPECT_EQ(ips->hdr.src_addr, 0u);
    EXPECT_EQ(ipm->hdr.dst_addr, 0xffffffffu);
    EXPECT_EQ(ipm->hdr.src_addr, 0u) << "the source is not matched";
    EXPECT_EQ(r.pattern[1].last, nullptr);
    ASSERT_EQ(r.pattern[2].type, RTE_FLOW_ITEM_TYPE_TCP);
    const auto* ts = static_cast<const rte_flow_item_tcp*>(r.pattern[2].spec);
    const auto* tm = static_cast<const rte_flow_item_tcp*>(r.pattern[2].mask);
    EXPECT_EQ(ts->hdr.dst_port, rte_cpu_to_be_16(1024));
    EXPECT_EQ(tm->hdr.dst_port, rte_cpu_to_be_16(0xfc00));
    EXPECT_EQ(tm->hdr.src_port, 0);
    EXPECT_EQ(r.pattern[2].last, nullptr) << "no `last` ranges: many NICs lack them";
    EXPECT_EQ(r.pattern[3].type, RTE_FLOW_ITEM_TYPE_END);
    ASSERT_EQ(r.actions[0].type, RTE_FLOW_ACTION_TYPE_QUEUE);
    EXPECT_EQ(static_cast<const rte_flow_action_queue*>(r.actions[0].conf)->index, 1);
    EXPECT_EQ(r.actions[1].type, RTE_FLOW_ACTION_TYPE_END);
    EXPECT_EQ(r.to_string(), "198.19.255.1 tcp dst 0x0400/0xfc00 -> queue 1");
}

TEST(FlowRule, Ipv6Udp)
{
    const auto a = *net::ip_addr::parse("2001:db8::5");
    const flow_rule r = build_rule(a, IPPROTO_UDP, {65535, 0xffff}, 0);
    ASSERT_EQ(r.pattern[1].type, RTE_FLOW_ITEM_TYPE_IPV6);
    const auto* ips = static_cast<const rte_flow_item_ipv6*>(r.pattern[1].spec);
    const auto* ipm = static_cast<const rte_flow_item_ipv6*>(r.pattern[1].mask);
    EXPECT_EQ(std::memcmp(ips->hdr.dst_addr, a.bytes.data(), 16), 0);
    for (int i = 0; i < 16; ++i) {
        EXPECT_EQ(ipm->hdr.dst_addr[i], 0xff);
        EXPECT_EQ(ipm->hdr.src_addr[i], 0);
    }
    EXPECT_EQ(ipm->hdr.proto, 0) << "the L4 item says the protocol";
    ASSERT_EQ(r.pattern[2].type, RTE_FLOW_ITEM_TYPE_UDP);
    const auto* us = static_cast<const rte_flow_item_udp*>(r.pattern[2].spec);
    const auto* um = static_cast<const rte_flow_item_udp*>(r.pattern[2].mask);
    EXPECT_EQ(us->hdr.dst_port, rte_cpu_to_be_16(65535));
    EXPECT_EQ(um->hdr.dst_port, 0xffff);
    EXPECT_EQ(static_cast<const rte_flow_action_queue*>(r.actions[0].conf)->index, 0);
}

TEST(FlowRule, CopiesPointIntoThemselves)
{
    const auto a = *net::ip_addr::parse("198.19.255.1");
    std::vector<flow_rule> v;
    v.push_back(build_rule(a, IPPROTO_UDP, {2048, 0xf800}, 3));
    v.reserve(100); // moves the rule: its pointers must follow
    const flow_rule& r = v[0];
    EXPECT_EQ(r.pattern[1].spec, &r.ip4_spec);
    EXPECT_EQ(r.pattern[1].mask, &r.ip4_mask);
    EXPECT_EQ(r.pattern[2].spec, &r.udp_spec);
    EXPECT_EQ(r.pattern[2].mask, &r.udp_mask);
    EXPECT_EQ(r.actions[0].conf, &r.queue);
}

TEST(PlanSteering, EveryAddressProtocolWorkerAndBlock)
{
    const std::vector<net::ip_addr> snat = {*net::ip_addr::parse("198.19.255.1"),
                                            *net::ip_addr::parse("2001:db8::5")};
    const uint16_t span = snat_port_span(2, true);
    const auto rules = plan_steering(snat, 2, span);
    // 2 addresses x {tcp, udp} x 10 blocks of two workers.
    ASSERT_EQ(rules.size(), 2u * 2u * 10u);
    // Per (address, protocol), the rules steer exactly each worker's ports to its queue.
    for (const auto& a : snat) {
        for (const uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}}) {
            std::vector<int> queue_of(65536, -1);
            for (const auto& r : rules) {
                if (r.dst != a || r.proto != proto) {
                    continue;
                }
                EXPECT_EQ(r.pattern[1].type,
                          a.is_v4() ? RTE_FLOW_ITEM_TYPE_IPV4 : RTE_FLOW_ITEM_TYPE_IPV6);
                EXPECT_EQ(r.pattern[2].type,
                          proto == IPPROTO_TCP ? RTE_FLOW_ITEM_TYPE_TCP : RTE_FLOW_ITEM_TYPE_UDP);
                for (uint32_t p = r.block.first(); p <= r.block.last(); ++p) {
                    EXPECT_EQ(queue_of[p], -1);
                    queue_of[p] = r.queue_index;
                }
            }
            for (uint32_t p = 0; p < 65536; ++p) {
                const int owner = p < fastpath::snat_port_base
                                      ? -1
                                      : static_cast<int>((p - fastpath::snat_port_base) / span);
                ASSERT_EQ(queue_of[p], owner < 2 ? owner : -1) << "port " << p;
            }
        }
    }
}

class InstallSteering : public ::testing::Test {
protected:
    void SetUp() override { g_nic = {}; }
    std::vector<net::ip_addr> snat = {*net::ip_addr::parse("198.19.255.1")};
};

TEST_F(InstallSteering, AllRulesCreated)
{
    steering_request req;
    req.queues = 2;
    req.span = snat_port_span(2, true);
    req.snat = snat;
    const auto st = setup_steering(0, req);
    EXPECT_TRUE(st.active);
    EXPECT_STREQ(st.mode(), "rte_flow");
    EXPECT_EQ(st.rules, 20u); // 1 address x 2 protocols x 10 blocks
    EXPECT_EQ(g_nic.validates, 20);
    EXPECT_EQ(g_nic.live.size(), 20u);
    EXPECT_TRUE(st.reason.empty());
    EXPECT_EQ(std::count(g_nic.queues.begin(), g_nic.queues.end(), 0), 10);
    EXPECT_EQ(std::count(g_nic.queues.begin(), g_nic.queues.end(), 1), 10);
    remove_steering(0);
    EXPECT_EQ(g_nic.flushes, 1);
    EXPECT_TRUE(g_nic.live.empty());
}

TEST_F(InstallSteering, RefusedValidationCreatesNothing)
{
    g_nic.refuse_validate_at = 7;
    const auto rules = plan_steering(snat, 2, snat_port_span(2, true));
    const auto st = install_steering(0, rules);
    EXPECT_FALSE(st.active);
    EXPECT_STREQ(st.mode(), "software");
    EXPECT_EQ(st.rules, 0u);
    EXPECT_EQ(g_nic.creates, 0);
    EXPECT_EQ(st.reason, "rte_flow_validate refused rule 8 of 20 (" + rules[7].to_string() +
                             "): port masks not supported (" + rte_strerror(ENOTSUP) + ")");
}

TEST_F(InstallSteering, RefusedCreationUndoesWhatWasCreated)
{
    g_nic.refuse_create_at = 5;
    const auto rules = plan_steering(snat, 2, snat_port_span(2, true));
    const auto st = install_steering(0, rules);
    EXPECT_FALSE(st.active);
    EXPECT_EQ(g_nic.validates, 20);
    EXPECT_EQ(g_nic.destroyed.size(), 5u);
    EXPECT_TRUE(g_nic.live.empty()) << "all rules or none";
    EXPECT_EQ(g_nic.flushes, 0);
    EXPECT_NE(st.reason.find("rte_flow_create refused rule 6 of 20"), std::string::npos)
        << st.reason;
    EXPECT_NE(st.reason.find("no room for more rules"), std::string::npos) << st.reason;
}

TEST_F(InstallSteering, FailedUndoFallsBackToFlush)
{
    g_nic.refuse_create_at = 3;
    g_nic.destroy_fails = 1;
    const auto st = install_steering(0, plan_steering(snat, 2, snat_port_span(2, true)));
    EXPECT_FALSE(st.active);
    EXPECT_EQ(g_nic.flushes, 1);
    EXPECT_TRUE(g_nic.live.empty());
}

TEST_F(InstallSteering, SoftwareWithoutAskingTheNic)
{
    steering_request req;
    req.queues = 2;
    req.span = snat_port_span(2, false);
    req.snat = snat;
    req.enabled = false;
    auto st = setup_steering(0, req);
    EXPECT_STREQ(st.mode(), "software");
    EXPECT_EQ(st.reason, "l4.flow_steering = \"off\"");
    req.enabled = true;
    req.queues = 1;
    st = setup_steering(0, req);
    EXPECT_STREQ(st.mode(), "software");
    EXPECT_NE(st.reason.find("one RX queue"), std::string::npos);
    req.queues = 2;
    req.snat = {};
    st = setup_steering(0, req);
    EXPECT_EQ(st.reason, "no SNAT addresses");
    EXPECT_EQ(g_nic.validates + g_nic.creates + g_nic.flushes, 0) << "the NIC was not asked";
}

} // namespace
} // namespace sluice::glue
