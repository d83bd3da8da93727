#include "sluice/glue/flow_steering.hh"

#include <netinet/in.h>

#include <cstdio>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_errno.h>

#include "sluice/fastpath/l4_stage.hh"
#include "sluice/glue/log.hh"

namespace sluice::glue {

std::vector<port_block> port_blocks(uint16_t lo, uint16_t hi)
{
    std::vector<port_block> out;
    // 32-bit arithmetic: the range may end at 65535, where a 16-bit cursor would wrap.
    uint32_t cur = lo;
    const uint32_t end = static_cast<uint32_t>(hi) + 1;
    while (cur < end) {
        // The largest block that starts at `cur` (aligned to its size) and ends by `hi`.
        uint32_t size = cur == 0 ? 65536u : (cur & (~cur + 1));
        while (cur + size > end) {
            size >>= 1;
        }
        out.push_back({static_cast<uint16_t>(cur), static_cast<uint16_t>(65536u - size)});
        cur += size;
    }
    return out;
}

port_range snat_port_range(uint16_t worker, uint16_t span) noexcept
{
    const uint32_t lo = fastpath::snat_port_base + static_cast<uint32_t>(worker) * span;
    return {static_cast<uint16_t>(lo), static_cast<uint16_t>(lo + span - 1)};
}

size_t steering_blocks(uint16_t workers, uint16_t span)
{
    size_t n = 0;
    for (uint16_t w = 0; w < workers; ++w) {
        const port_range r = snat_port_range(w, span);
        n += port_blocks(r.lo, r.hi).size();
    }
    return n;
}

uint16_t snat_port_span(uint16_t workers, bool steering)
{
    const uint32_t full = (65536u - fastpath::snat_port_base) / (workers == 0 ? 1 : workers);
    if (!steering || workers <= 1) {
        return static_cast<uint16_t>(full);
    }
    // Fewer ports per worker for fewer rules, bounded to a loss of 1/16. Counting is cheap
    // (at most 64512/16 spans of a few workers' decompositions, once at start).
    const uint32_t floor_span = full - full / 16;
    uint32_t best = full;
    size_t best_blocks = steering_blocks(workers, static_cast<uint16_t>(full));
    for (uint32_t s = full - 1; s >= floor_span && s > 0; --s) {
        const size_t b = steering_blocks(workers, static_cast<uint16_t>(s));
        if (b < best_blocks) {
            best = s;
            best_blocks = b;
        }
    }
    return static_cast<uint16_t>(best);
}

flow_rule& flow_rule::operator=(const flow_rule& o)
{
    if (this != &o) {
        attr = o.attr;
        ip4_spec = o.ip4_spec;
        ip4_mask = o.ip4_mask;
        ip6_spec = o.ip6_spec;
        ip6_mask = o.ip6_mask;
        tcp_spec = o.tcp_spec;
        tcp_mask = o.tcp_mask;
        udp_spec = o.udp_spec;
        udp_mask = o.udp_mask;
        queue = o.queue;
        pattern = o.pattern;
        actions = o.actions;
        dst = o.dst;
        proto = o.proto;
        block = o.block;
        queue_index = o.queue_index;
        link(); // the copied arrays still point into `o`
    }
    return *this;
}

void flow_rule::link() noexcept
{
    pattern[0] = {RTE_FLOW_ITEM_TYPE_ETH, nullptr, nullptr, nullptr}; // any Ethernet frame
    if (dst.is_v4()) {
        pattern[1] = {RTE_FLOW_ITEM_TYPE_IPV4, &ip4_spec, nullptr, &ip4_mask};
    } else {
        pattern[1] = {RTE_FLOW_ITEM_TYPE_IPV6, &ip6_spec, nullptr, &ip6_mask};
    }
    if (proto == IPPROTO_TCP) {
        pattern[2] = {RTE_FLOW_ITEM_TYPE_TCP, &tcp_spec, nullptr, &tcp_mask};
    } else {
        pattern[2] = {RTE_FLOW_ITEM_TYPE_UDP, &udp_spec, nullptr, &udp_mask};
    }
    pattern[3] = {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr};
    actions[0] = {RTE_FLOW_ACTION_TYPE_QUEUE, &queue};
    actions[1] = {RTE_FLOW_ACTION_TYPE_END, nullptr};
}

std::string flow_rule::to_string() const
{
    char ports[32];
    std::snprintf(ports, sizeof(ports), "0x%04x/0x%04x", block.value, block.mask);
    return dst.to_string() + (proto == IPPROTO_TCP ? " tcp" : " udp") + " dst " + ports +
           " -> queue " + std::to_string(queue_index);
}

flow_rule build_rule(const net::ip_addr& snat, uint8_t proto, port_block block, uint16_t queue)
{
    flow_rule r;
    r.dst = snat;
    r.proto = proto;
    r.block = block;
    r.queue_index = queue;
    r.attr.ingress = 1; // group 0, priority 0: the rules never overlap, so order is moot
    if (snat.is_v4()) {
        std::memcpy(&r.ip4_spec.hdr.dst_addr, snat.bytes.data(), 4); // network order already
        r.ip4_mask.hdr.dst_addr = UINT32_MAX;
    } else {
        std::memcpy(r.ip6_spec.hdr.dst_addr, snat.bytes.data(), 16);
        std::memset(r.ip6_mask.hdr.dst_addr, 0xff, 16);
    }
    const rte_be16_t v = rte_cpu_to_be_16(block.value);
    const rte_be16_t m = rte_cpu_to_be_16(block.mask);
    if (proto == IPPROTO_TCP) {
        r.tcp_spec.hdr.dst_port = v;
        r.tcp_mask.hdr.dst_port = m;
    } else {
        r.udp_spec.hdr.dst_port = v;
        r.udp_mask.hdr.dst_port = m;
    }
    r.queue.index = queue;
    r.link();
    return r;
}

std::vector<flow_rule> plan_steering(std::span<const net::ip_addr> snat, uint16_t workers,
                                     uint16_t span)
{
    std::vector<std::vector<port_block>> blocks(workers);
    for (uint16_t w = 0; w < workers; ++w) {
        const port_range r = snat_port_range(w, span);
        blocks[w] = port_blocks(r.lo, r.hi);
    }
    std::vector<flow_rule> out;
    for (const net::ip_addr& a : snat) {
        for (const uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}}) {
            for (uint16_t w = 0; w < workers; ++w) {
                for (const port_block& b : blocks[w]) {
                    out.push_back(build_rule(a, proto, b, w));
                }
            }
        }
    }
    return out;
}

namespace {

std::string refusal(const char* what, size_t i, size_t n, const flow_rule& r, int rc,
                    const rte_flow_error& e)
{
    std::string s = std::string(what) + " refused rule " + std::to_string(i + 1) + " of " +
                    std::to_string(n) + " (" + r.to_string() + "): ";
    const char* why = rte_strerror(rc < 0 ? -rc : rc);
    if (e.message != nullptr && std::strcmp(e.message, why) != 0) {
        s += std::string(e.message) + " (" + why + ")"; // the driver's words, then errno's
    } else {
        s += why;
    }
    return s;
}

} // namespace

steering_status install_steering(uint16_t port, std::span<const flow_rule> rules)
{
    steering_status st;
    // Validate everything before creating anything: the common refusal (no rte_flow, or no
    // port masks) then leaves the NIC untouched.
    for (size_t i = 0; i < rules.size(); ++i) {
        rte_flow_error e{};
        const int rc = rte_flow_validate(port, &rules[i].attr, rules[i].pattern.data(),
                                         rules[i].actions.data(), &e);
        if (rc != 0) {
            st.reason = refusal("rte_flow_validate", i, rules.size(), rules[i], rc, e);
            return st;
        }
    }
    // A valid rule can still fail to be created (rule memory full): then undo, all or none.
    std::vector<rte_flow*> created;
    created.reserve(rules.size());
    for (size_t i = 0; i < rules.size(); ++i) {
        rte_flow_error e{};
        rte_flow* f = rte_flow_create(port, &rules[i].attr, rules[i].pattern.data(),
                                      rules[i].actions.data(), &e);
        if (f == nullptr) {
            st.reason = refusal("rte_flow_create", i, rules.size(), rules[i], -rte_errno, e);
            bool undone = true;
            for (rte_flow* c : created) {
                rte_flow_error de{};
                undone = rte_flow_destroy(port, c, &de) == 0 && undone;
            }
            if (!undone) {
                rte_flow_error fe{};
                if (rte_flow_flush(port, &fe) != 0) {
                    SLUICE_LOG(WARNING, glue,
                               "port %u: could not remove the steering rules created before "
                               "the refusal: %s",
                               port, fe.message != nullptr ? fe.message : "unknown error");
                }
            }
            return st;
        }
        created.push_back(f);
    }
    st.active = true;
    st.rules = created.size();
    return st;
}

steering_status setup_steering(uint16_t port, const steering_request& req)
{
    steering_status st;
    if (!req.enabled) {
        st.reason = "l4.flow_steering = \"off\"";
    } else if (req.queues <= 1) {
        st.reason = "one RX queue: every reply is already on its owner's queue";
    } else if (req.snat.empty()) {
        st.reason = "no SNAT addresses";
    } else {
        return install_steering(port, plan_steering(req.snat, req.queues, req.span));
    }
    return st;
}

void remove_steering(uint16_t port) noexcept
{
    rte_flow_error e{};
    if (const int rc = rte_flow_flush(port, &e); rc != 0) {
        SLUICE_LOG(WARNING, glue, "port %u: rte_flow_flush: %s", port,
                   e.message != nullptr ? e.message : rte_strerror(-rc));
    }
}

} // namespace sluice::glue
