// The L4 stage: conntrack, backend choice, full-NAT / IPIP / GUE, next hop. See l4_stage.hh.
#include "sluice/fastpath/l4_stage.hh"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_hash_crc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "sluice/base/hash.hh"
#include "sluice/fastpath/l4_active.hh"
#include "sluice/fastpath/stages.hh"
#include "sluice/fastpath/worker.hh"
#include "sluice/net/fib.hh"
#include "sluice/net/neigh.hh"
#include "sluice/net/rewrite.hh"
#include "sluice/rcu/published.hh"

namespace sluice::fastpath {
namespace {

using conntrack::direction;
using conntrack::flow_key;
using stats::drop;
using stats::l4_event;

constexpr uint8_t proto_tcp = net::ip_proto_tcp;
constexpr uint8_t proto_udp = net::ip_proto_udp;
constexpr uint8_t proto_icmp = net::ip_proto_icmp;
constexpr uint8_t proto_icmp6 = net::ip_proto_icmpv6;
constexpr uint16_t ether_ipv4_be = RTE_BE16(0x0800);
constexpr uint16_t ether_ipv6_be = RTE_BE16(0x86dd);
constexpr uint32_t snat_probe_limit = 32;
constexpr uint64_t age_sweep_seconds = 2; // each conntrack table swept once per this
constexpr uint64_t age_min_batch = 32;    // entries: below this, wait for the next loop
constexpr uint64_t age_max_batch = 4096;  // entries visited at most per loop

uint16_t ld16(const uint8_t* p) noexcept
{
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

l4_decision dropped(drop r) noexcept
{
    return {l4_verdict::drop, 0, r};
}

/// The parsed packet as the stage sees it.
/// What forwarded a packet (filled for first fragments, so the later ones can follow).
struct frag_note {
    uint8_t kind = 0; ///< 0 nothing, 1 full-NAT, 2 encapsulated
    forwarding fwd = forwarding::fullnat;
    l4_endpoint ep;
    uint64_t hash = 0;
};

struct pkt {
    rte_mbuf* m;
    uint8_t* frame;
    uint8_t* l3;
    uint8_t* l4; ///< null for a later fragment
    const net::frame_info* fi;
    uint8_t family;
    uint8_t proto;
    frag_note* note;  ///< non-null for a first fragment
    uint16_t in_port; ///< index of the port it arrived on
};

constexpr uint64_t frag_lifetime_seconds = 5;

template <typename F>
auto& table_of(l4_lcore& l) noexcept
{
    if constexpr (F::family == 4) {
        return l.ct4;
    } else {
        return l.ct6;
    }
}

template <typename F>
const uint8_t* src_of(const pkt& p) noexcept
{
    return F::family == 4 ? p.l3 + 12 : p.l3 + 8;
}
template <typename F>
const uint8_t* dst_of(const pkt& p) noexcept
{
    return F::family == 4 ? p.l3 + 16 : p.l3 + 24;
}

flow_key make_key(uint8_t family, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                  uint16_t dport, uint8_t proto) noexcept
{
    flow_key k;
    const unsigned len = family == 4 ? 4 : 16;
    std::memcpy(k.src.data(), src, len);
    std::memcpy(k.dst.data(), dst, len);
    k.sport = sport;
    k.dport = dport;
    k.proto = proto;
    k.family = family;
    return k;
}

/// Reports a connect outcome of endpoint `id` to the control thread. Failures always; a
/// success only to clear a failure this worker reported (healthy endpoints cost nothing).
void send_signal(l4_lcore& l, uint64_t id, uint8_t outcome) noexcept
{
    auto& slot = l.failed[id & (l.failed.size() - 1)];
    if (outcome == signal_success) {
        if (slot != id) {
            return; // nothing to clear: no ring traffic for healthy endpoints
        }
        slot = 0;
    } else {
        slot = id;
    }
    if (l.signals == nullptr) {
        return;
    }
    health_signal s;
    s.endpoint_id = id;
    s.outcome = outcome;
    if (rte_ring_sp_enqueue_elem(l.signals, &s, sizeof(s)) == 0 && l.counters != nullptr) {
        l.counters->count(l4_event::health_signals);
    }
}

uint32_t& active_slot(l4_lcore& l, uint64_t id) noexcept
{
    return l.active[l4_active_slot(id)]; // the control thread reads it the same way
}

/// Counts a new TCP flow as an open connection of its endpoint.
template <typename E>
void track(l4_lcore& l, E& e) noexcept
{
    // Relaxed atomic stores (plain movs): the control thread reads the slot (l4_active.hh).
    std::atomic_ref<uint32_t> n(active_slot(l, e.endpoint_id));
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    e.flags |= conntrack::entry_flag_counted;
}

/// Uncounts a flow that closed (or is going away).
template <typename E>
void untrack(l4_lcore& l, E& e) noexcept
{
    if ((e.flags & conntrack::entry_flag_counted) != 0) {
        std::atomic_ref<uint32_t> n(active_slot(l, e.endpoint_id));
        const uint32_t v = n.load(std::memory_order_relaxed);
        n.store(v != 0 ? v - 1 : 0, std::memory_order_relaxed);
        e.flags = static_cast<uint8_t>(e.flags & ~conntrack::entry_flag_counted);
    }
}

/// After a TCP state change: a closed connection no longer counts.
template <typename E>
void untrack_if_closed(l4_lcore& l, E& e) noexcept
{
    if (e.st == conntrack::state::tcp_closed || e.st == conntrack::state::tcp_closing) {
        untrack(l, e);
    }
}

/// True when cluster `c` has used this lcore's share of maxConnections.
bool over_limit(l4_lcore& l, const l4_cluster& c) noexcept
{
    if (c.max_conns_per_lcore == 0) {
        return false;
    }
    uint64_t open = 0;
    for (const l4_endpoint& ep : c.endpoints) {
        open += active_slot(l, ep.id);
    }
    return open >= c.max_conns_per_lcore;
}

// The conntrack expiry hook: a TCP flow that dies before any SYN-ACK is a connect failure.
template <typename E>
void on_expiry(void* ctx, const E& ce) noexcept
{
    auto* l = static_cast<l4_lcore*>(ctx);
    untrack(*l, const_cast<E&>(ce)); // the entry is being freed; its counted bit with it
    const E& e = ce;
    if (e.st == conntrack::state::tcp_syn_sent && (e.flags & conntrack::entry_flag_report) != 0 &&
        (e.flags & conntrack::entry_flag_single_key) == 0) {
        send_signal(*l, e.endpoint_id, signal_connect_failure);
    }
}

void request_resolve(l4_lcore& l, stats::lcore_counters& c, uint16_t port, const net::ip_addr& a,
                     uint64_t now) noexcept
{
    uint64_t key = fmix64(uint64_t{port} << 8 | a.family);
    uint64_t w0;
    uint64_t w1;
    std::memcpy(&w0, a.bytes.data(), 8);
    std::memcpy(&w1, a.bytes.data() + 8, 8);
    key = fmix64(key ^ w0) ^ fmix64(w1 + 1);
    auto& slot = l.resolved[key & (l.resolved.size() - 1)];
    if (slot.first == key && now - slot.second < l.tsc_hz / 10) {
        return; // asked within the last 100 ms
    }
    slot = {key, now};
    if (l.resolve == nullptr) {
        return;
    }
    resolve_request r;
    r.port = port;
    r.family = a.family;
    r.addr = a.bytes;
    if (rte_ring_sp_enqueue_elem(l.resolve, &r, sizeof(r)) == 0) {
        c.count(l4_event::resolve_requests);
    }
}

/// The next-hop cache slot of an IPv4 destination (its 4 bytes as loaded): a multiplicative
/// hash, the top bits of the product (they depend on every bit of the address; the low bits
/// would not see its last byte).
inline uint32_t nexthop_slot_v4(uint32_t dst) noexcept
{
    static_assert(std::tuple_size_v<decltype(l4_lcore::nexthops)> == 512);
    return static_cast<uint32_t>((uint64_t{dst} * 0x9e3779b97f4a7c15ULL) >> 55);
}

/// The next-hop cache's entry for IPv4 `dst` (its 4 bytes as loaded) when it was filled in
/// the current epoch (`epoch`, l4_lcore::hop_epoch as the caller loaded it: same route and
/// neighbour tables), else nullptr. Reads only (fill_hop_v4 fills the fast path's view).
inline const nexthop_entry* cached_hop_v4(const l4_lcore& l, uint32_t dst, uint32_t epoch) noexcept
{
    const nexthop_entry& ce = l.nexthops[nexthop_slot_v4(dst) & (l.nexthops.size() - 1)];
    return ce.key4 == (dst | (1ULL << 32)) && ce.epoch == epoch ? &ce : nullptr;
}

/// True when next_hop() filled cache entry `ce` for the destination of `family` whose address
/// bytes are `w` (IPv4: the low half of w[0], the rest 0) from these tables.
inline bool hop_filled(const nexthop_entry& ce, const uint64_t (&w)[2], uint8_t family,
                       const net::fwd_table& fib, const net::neigh_table& neigh) noexcept
{
    uint64_t cw[2];
    std::memcpy(cw, ce.dst.data(), 16);
    return cw[0] == w[0] && cw[1] == w[1] && ce.family == family &&
           ce.fib_generation == fib.generation() && ce.neigh_generation == neigh.generation();
}

/// The next hop toward `dst`: egress port index and destination MAC. Returns a drop reason
/// (drop::count when resolved).
drop next_hop(l4_lcore& l, stats::lcore_counters& c, uint8_t family, const uint8_t* dst,
              uint64_t now, uint16_t& port, const net::mac_addr*& mac) noexcept
{
    const net::fwd_table* fib = l.burst_fib; // loaded once per burst by l4_stage
    const net::neigh_table* neigh = l.burst_neigh;
    if (fib == nullptr || neigh == nullptr) {
        return drop::l4_no_route;
    }
    uint64_t w[2] = {0, 0};
    uint32_t slot;
    if (family == 4) {
        uint32_t a;
        std::memcpy(&a, dst, 4);
        w[0] = a;
        slot = nexthop_slot_v4(a);
    } else {
        std::memcpy(w, dst, 16);
        slot = rte_hash_crc_8byte(w[1], rte_hash_crc_8byte(w[0], 6));
    }
    nexthop_entry& ce = l.nexthops[slot & (l.nexthops.size() - 1)];
    if (hop_filled(ce, w, family, *fib, *neigh)) {
        port = ce.port;
        mac = &ce.mac;
        return drop::count;
    }
    net::ip_addr a;
    a.family = family;
    std::memcpy(a.bytes.data(), dst, family == 4 ? 4 : 16);
    const net::nexthop* nh = fib->lookup(a);
    if (nh == nullptr || nh->kind != net::route_kind::unicast) {
        return drop::l4_no_route;
    }
    const net::ip_addr& via = nh->gateway.is_set() ? nh->gateway : a;
    const net::mac_addr* m = neigh->lookup(nh->port, via);
    if (m == nullptr) {
        request_resolve(l, c, nh->port, via, now);
        return drop::l4_no_neighbour;
    }
    ce.family = family;
    std::memcpy(ce.dst.data(), w, 16);
    ce.key4 = 0; // the fast path's view: filled by fill_hop_v4
    ce.fib_generation = fib->generation();
    ce.neigh_generation = neigh->generation();
    ce.mac = *m;
    ce.port = nh->port;
    port = ce.port;
    mac = &ce.mac;
    return drop::count;
}

/// Leaves exactly a 14-byte Ethernet header before L3 (VLAN tags of the input dropped) and
/// writes it. `l2_len` is the current L2 length.
void write_l2(rte_mbuf* m, uint8_t l2_len, const port_ctx& out, const net::mac_addr& dst,
              uint16_t ether_be) noexcept
{
    if (l2_len > 14) {
        rte_pktmbuf_adj(m, static_cast<uint16_t>(l2_len - 14));
    }
    auto* eth = rte_pktmbuf_mtod(m, uint8_t*);
    std::memcpy(eth, dst.bytes.data(), 6);
    std::memcpy(eth + 6, out.mac.data(), 6);
    std::memcpy(eth + 12, &ether_be, 2);
}

bool own_snat(const worker_ctx& w, uint8_t family, const uint8_t* dst) noexcept
{
    for (const port_ctx& p : w.ports) {
        if (family == 4) {
            for (unsigned i = 0; i < p.snat4_count; ++i) {
                if (std::memcmp(p.snat4[i].data(), dst, 4) == 0) {
                    return true;
                }
            }
        } else {
            for (unsigned i = 0; i < p.snat6_count; ++i) {
                if (std::memcmp(p.snat6[i].data(), dst, 16) == 0) {
                    return true;
                }
            }
        }
    }
    return false;
}

const uint8_t* pick_snat(const port_ctx& p, uint8_t family, uint64_t h) noexcept
{
    if (family == 4) {
        return p.snat4_count == 0 ? nullptr : p.snat4[(h >> 40) % p.snat4_count].data();
    }
    return p.snat6_count == 0 ? nullptr : p.snat6[(h >> 40) % p.snat6_count].data();
}

/// The worker that owns SNAT port `port_be`, or -1 when the port is no SNAT port.
int owner_of(const l4_lcore& l, uint16_t port_be) noexcept
{
    const uint16_t p = rte_be_to_cpu_16(port_be);
    if (p < snat_port_base) {
        return -1;
    }
    const unsigned o = (p - snat_port_base) / l.port_span;
    return o < l.workers ? static_cast<int>(o) : -1;
}

uint16_t mss_limit(uint16_t mtu, uint8_t family, size_t encap) noexcept
{
    const size_t hdrs = (family == 4 ? 40u : 60u) + encap;
    return mtu > hdrs ? static_cast<uint16_t>(mtu - hdrs) : 0;
}

void clamp(const pkt& p, stats::lcore_counters& c, uint16_t limit) noexcept
{
    if (p.proto != proto_tcp || p.l4 == nullptr || (p.l4[13] & conntrack::tcp_syn) == 0 ||
        limit == 0) {
        return;
    }
    // Within the header as present: a first fragment may stop short of its data offset.
    size_t hdr = static_cast<size_t>(p.l4[12] >> 4) * 4u;
    const size_t have = rte_pktmbuf_data_len(p.m) - (p.l4 - p.frame);
    const size_t ip_have = p.fi->ip_total - p.fi->l3_len;
    hdr = hdr < have ? hdr : have;
    hdr = hdr < ip_have ? hdr : ip_have;
    if (net::tcp_clamp_mss(p.l4, hdr, limit)) {
        c.count(l4_event::mss_clamped);
    }
}

/// A packet too big for its egress port (`next_mtu`: the largest IP packet that fits there,
/// encapsulation deducted) becomes, in place, the ICMP error that tells its sender (path MTU
/// discovery, RFC 1191 / RFC 8201): "fragmentation needed" (IPv4 with DF) or "packet too
/// big" (IPv6), from the packet's destination (the VIP, or the SNAT address for a backend's
/// reply), quoting its IP header and 8 bytes, sent back by the port it came in by. It is
/// smaller than the packet it answers (no amplification). IPv4 without DF, or with options or
/// extension headers, is dropped as l4_too_big: the appliance does not fragment.
/// Its decision is {tx, in port, reason l4_too_big}: callers tell it from a forwarded packet
/// by the reason (answered(), below). Never about an ICMP error (RFC 1122 3.2.2), never with
/// an MTU below the family's minimum (68, 1280: the sender could not use it), and at most
/// icmp_rate per second per lcore with bursts of icmp_burst (RFC 1812 4.3.2.8, RFC 4443
/// 2.4(f): the sources may be spoofed); otherwise the packet is dropped as l4_too_big.
constexpr uint32_t icmp_rate = 1000;
constexpr uint32_t icmp_burst = 100;

bool icmp_allowed(l4_lcore& l) noexcept
{
    const uint64_t now = rte_rdtsc();
    if (l.tsc_hz != 0) {
        const uint64_t add = (now - l.icmp_refilled) * icmp_rate / l.tsc_hz;
        if (add != 0) {
            l.icmp_tokens = static_cast<uint32_t>(
                l.icmp_tokens + add > icmp_burst ? icmp_burst : l.icmp_tokens + add);
            l.icmp_refilled = now;
        }
    }
    if (l.icmp_tokens == 0) {
        return false;
    }
    --l.icmp_tokens;
    return true;
}

[[gnu::cold]] l4_decision answer_too_big(const worker_ctx& w, rte_mbuf* m, uint8_t l2_len,
                                         uint8_t* l3, uint8_t family, uint16_t l3_len,
                                         uint16_t in_port, uint32_t next_mtu) noexcept
{
    const unsigned ip_len = family == 4 ? 20u : 40u;
    const bool df = family == 6 || (l3[6] & 0x40) != 0;
    const uint8_t proto = family == 4 ? l3[9] : l3[6];
    if (!df || l3_len != ip_len || proto == proto_icmp || proto == proto_icmp6 ||
        next_mtu < (family == 4 ? 68u : 1280u) || w.l4 == nullptr || !icmp_allowed(*w.l4)) {
        return dropped(drop::l4_too_big);
    }
    // Back by the port the packet arrived on: the mbuf says (a reply redirected from another
    // worker was processed as if it came in by the first port).
    for (const port_ctx& pc : w.ports) {
        if (pc.nic == m->port) {
            in_port = pc.index;
            break;
        }
    }
    if (in_port >= w.ports.size()) {
        return dropped(drop::l4_too_big);
    }
    const unsigned quote = ip_len + 8;
    const unsigned msg = 8 + quote;
    uint8_t q[48];
    std::memcpy(q, l3, family == 4 ? 28 : 48);
    uint8_t* eth = l3 - l2_len;
    uint8_t mac[6];
    std::memcpy(mac, eth + 6, 6);
    std::memcpy(eth, mac, 6);
    std::memcpy(eth + 6, w.ports[in_port].mac.data(), 6);
    const unsigned alen = family == 4 ? 4 : 16;
    uint8_t* src = l3 + (family == 4 ? 12 : 8);
    uint8_t* dst = src + alen;
    std::memcpy(src, q + (family == 4 ? 16 : 24), alen); // from the packet's destination
    std::memcpy(dst, q + (family == 4 ? 12 : 8), alen);  // to its source
    uint8_t* icmp = l3 + ip_len;
    std::memset(icmp, 0, 8);
    if (family == 4) {
        l3[0] = 0x45;
        l3[1] = 0;
        l3[2] = static_cast<uint8_t>((ip_len + msg) >> 8);
        l3[3] = static_cast<uint8_t>(ip_len + msg);
        std::memset(l3 + 4, 0, 4); // ID 0, no DF: an ICMP error is never fragmented anyway
        l3[8] = 64;
        l3[9] = proto_icmp;
        icmp[0] = 3; // destination unreachable
        icmp[1] = 4; // fragmentation needed and DF set
        const uint32_t mtu = next_mtu > 0xffff ? 0xffff : next_mtu;
        icmp[6] = static_cast<uint8_t>(mtu >> 8);
        icmp[7] = static_cast<uint8_t>(mtu);
    } else {
        l3[0] = 0x60;
        l3[1] = 0;
        l3[2] = 0;
        l3[3] = 0;
        l3[4] = static_cast<uint8_t>(msg >> 8);
        l3[5] = static_cast<uint8_t>(msg);
        l3[6] = proto_icmp6;
        l3[7] = 64;
        icmp[0] = 2; // packet too big
        icmp[4] = static_cast<uint8_t>(next_mtu >> 24);
        icmp[5] = static_cast<uint8_t>(next_mtu >> 16);
        icmp[6] = static_cast<uint8_t>(next_mtu >> 8);
        icmp[7] = static_cast<uint8_t>(next_mtu);
    }
    std::memcpy(icmp + 8, q, family == 4 ? 28 : 48);
    if (family == 4) {
        net::ipv4_set_checksum(l3);
    }
    net::l4_set_checksum(family, family == 4 ? proto_icmp : proto_icmp6, src, dst, icmp, msg);
    const uint32_t keep = l2_len + ip_len + msg;
    if (rte_pktmbuf_pkt_len(m) > keep) {
        rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_pkt_len(m) - keep));
    }
    w.counters->count(l4_event::icmp_too_big);
    return {l4_verdict::tx, in_port, drop::l4_too_big};
}

/// True when `d` sends the packet back as an ICMP answer rather than forwarding it.
constexpr bool answered(const l4_decision& d) noexcept
{
    return d.v == l4_verdict::tx && d.reason != drop::count;
}

/// Full-NAT rewrite of `p` to `t`, then L2 toward `t.dst`.
template <typename F>
l4_decision nat_out(const worker_ctx& w, const pkt& p, const net::nat_tuple& t, uint64_t now,
                    bool syn_side) noexcept
{
    l4_lcore& l = *w.l4;
    auto& c = *w.counters;
    uint16_t port = 0;
    const net::mac_addr* mac = nullptr;
    if (const drop d = next_hop(l, c, F::family, t.dst, now, port, mac); d != drop::count) {
        return dropped(d);
    }
    if (port >= w.ports.size()) {
        return dropped(drop::l4_no_route);
    }
    const port_ctx& out = w.ports[port];
    if (p.fi->ip_total > out.mtu) {
        return answer_too_big(w, p.m, p.fi->l2_len, p.l3, F::family, p.fi->l3_len, p.in_port,
                              out.mtu);
    }
    const bool ok = F::family == 4 ? net::nat_rewrite_v4(p.l3, p.l4, p.proto, t, true)
                                   : net::nat_rewrite_v6(p.l3, p.l4, p.proto, t, true);
    if (!ok) {
        return dropped(drop::l4_ttl_exceeded);
    }
    if (syn_side) {
        clamp(p, c, mss_limit(out.mtu, F::family, 0));
    }
    write_l2(p.m, p.fi->l2_len, out, *mac, F::family == 4 ? ether_ipv4_be : ether_ipv6_be);
    if (p.note != nullptr) {
        p.note->kind = 1;
    }
    return {l4_verdict::tx, port, drop::count};
}

/// IPIP / GUE toward endpoint `ep`: the inner packet unchanged but for the MSS of a SYN.
l4_decision encap_out(const worker_ctx& w, const pkt& p, forwarding fwd, const l4_endpoint& ep,
                      uint64_t hash, uint64_t now) noexcept
{
    l4_lcore& l = *w.l4;
    auto& c = *w.counters;
    uint16_t port = 0;
    const net::mac_addr* mac = nullptr;
    if (const drop d = next_hop(l, c, ep.family, ep.addr.data(), now, port, mac);
        d != drop::count) {
        return dropped(d);
    }
    if (port >= w.ports.size()) {
        return dropped(drop::l4_no_route);
    }
    const port_ctx& out = w.ports[port];
    const uint8_t* src = pick_snat(out, ep.family, hash);
    if (src == nullptr) {
        return dropped(drop::l4_no_snat);
    }
    const size_t outer = fwd == forwarding::gue
                             ? (ep.family == 4 ? net::gue4_len : net::gue6_len)
                             : (ep.family == 4 ? net::ipip4_len : net::ipip6_len);
    clamp(p, c, mss_limit(out.mtu, p.family, outer));
    const uint32_t inner_len = p.fi->ip_total;
    if (inner_len + outer > out.mtu) {
        return answer_too_big(w, p.m, p.fi->l2_len, p.l3, p.family, p.fi->l3_len, p.in_port,
                              out.mtu > outer ? static_cast<uint32_t>(out.mtu - outer) : 0);
    }
    rte_mbuf* m = p.m;
    const uint32_t keep = p.fi->l2_len + inner_len;
    if (rte_pktmbuf_pkt_len(m) > keep) {
        rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_pkt_len(m) - keep));
    }
    const uint8_t tos =
        p.family == 4 ? p.l3[1] : static_cast<uint8_t>(((p.l3[0] & 0x0f) << 4) | (p.l3[1] >> 4));
    rte_pktmbuf_adj(m, p.fi->l2_len);
    auto* o = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, static_cast<uint16_t>(14 + outer)));
    if (o == nullptr) {
        return dropped(drop::l4_no_headroom);
    }
    const uint8_t inner_family = p.family;
    const auto len = static_cast<uint16_t>(inner_len);
    const uint8_t ttl = l.settings != nullptr ? l.settings->encap_ttl : 64;
    const auto flow_label = static_cast<uint32_t>(hash & 0xfffff);
    if (fwd == forwarding::gue) {
        const uint16_t sport = rte_cpu_to_be_16(static_cast<uint16_t>(0xc000 | (hash & 0x3fff)));
        const uint16_t dport = l.settings != nullptr && l.settings->gue_port != 0
                                   ? l.settings->gue_port
                                   : rte_cpu_to_be_16(net::gue_default_port);
        if (ep.family == 4) {
            net::write_gue4(o + 14, src, ep.addr.data(), sport, dport, len, ttl, tos);
        } else {
            net::write_gue6(o + 14, src, ep.addr.data(), sport, dport, len, ttl, tos, flow_label);
        }
    } else if (ep.family == 4) {
        net::write_ipip4(o + 14, src, ep.addr.data(), inner_family, len, ttl, tos);
    } else {
        net::write_ipip6(o + 14, src, ep.addr.data(), inner_family, len, ttl, tos, flow_label);
    }
    write_l2(m, 14, out, *mac, ep.family == 4 ? ether_ipv4_be : ether_ipv6_be);
    c.count(l4_event::encapsulated);
    if (p.note != nullptr) {
        p.note->kind = 2;
        p.note->fwd = fwd;
        p.note->ep = ep;
        p.note->hash = hash;
    }
    return {l4_verdict::tx, port, drop::count};
}

/// Answers a client's SYN with a RST from the VIP, on the port it came in by (cold path: a
/// refused connection). The SYN's mbuf becomes the RST.
template <typename F>
l4_decision answer_rst(const worker_ctx& w, const pkt& p) noexcept
{
    constexpr unsigned ip_len = F::family == 4 ? 20u : 40u;
    if (p.fi->l3_len != ip_len || p.in_port >= w.ports.size()) {
        return dropped(drop::l4_no_backend); // options or extension headers: just drop
    }
    uint8_t* eth = p.l3 - p.fi->l2_len;
    uint8_t mac[6];
    std::memcpy(mac, eth + 6, 6);
    std::memcpy(eth, mac, 6);
    std::memcpy(eth + 6, w.ports[p.in_port].mac.data(), 6);
    uint8_t* ip = p.l3;
    uint8_t* tcp = p.l4;
    const uint32_t seg = p.fi->ip_total - p.fi->l3_len - (tcp[12] >> 4) * 4u;
    uint32_t seq;
    std::memcpy(&seq, tcp + 4, 4);
    const uint32_t ack = rte_cpu_to_be_32(rte_be_to_cpu_32(seq) + 1 + seg);
    uint8_t a[16];
    const unsigned alen = F::addr_len;
    uint8_t* src = F::family == 4 ? ip + 12 : ip + 8;
    uint8_t* dst = src + alen;
    std::memcpy(a, src, alen);
    std::memcpy(src, dst, alen);
    std::memcpy(dst, a, alen);
    uint16_t port;
    std::memcpy(&port, tcp, 2);
    std::memcpy(tcp, tcp + 2, 2);
    std::memcpy(tcp + 2, &port, 2);
    std::memset(tcp + 4, 0, 4); // seq 0 (RFC 9293: the RST answers a SYN)
    std::memcpy(tcp + 8, &ack, 4);
    tcp[12] = 5 << 4;
    tcp[13] = conntrack::tcp_rst | conntrack::tcp_ack;
    std::memset(tcp + 14, 0, 6); // window, checksum, urgent pointer
    if constexpr (F::family == 4) {
        ip[1] = 0;
        ip[2] = 0;
        ip[3] = 40;
        std::memset(ip + 4, 0, 4);
        ip[8] = 64;
        net::ipv4_set_checksum(ip);
    } else {
        ip[4] = 0;
        ip[5] = 20;
        ip[6] = proto_tcp;
        ip[7] = 64;
    }
    net::l4_set_checksum(F::family, proto_tcp, src, dst, tcp, 20);
    const uint32_t keep = p.fi->l2_len + ip_len + 20;
    if (rte_pktmbuf_pkt_len(p.m) > keep) {
        rte_pktmbuf_trim(p.m, static_cast<uint16_t>(rte_pktmbuf_pkt_len(p.m) - keep));
    }
    w.counters->count(l4_event::overflow);
    return {l4_verdict::tx, p.in_port, drop::count};
}

/// The new addresses and ports of a packet of IPv4 full-NAT flow `e` (raw words, as
/// nat_rewrite_v4_delta takes them): the other key's, swapped. Forward -> (SNAT, backend),
/// reply -> (VIP, client); `dst` is the new destination address. See entry_v4's layout.
struct v4_words {
    uint64_t addrs;
    uint32_t ports;
    uint32_t dst;
};
// always_inline (STYLE H7): one call per packet in the fast path's loops; inline, the
// loop keeps its registers (out of line, callgrind counts the call and the spills).
[[gnu::always_inline]] inline v4_words rewrite_words(const conntrack::entry_v4& e,
                                                     bool fwd) noexcept
{
    // The other key's address word and port word, halves swapped: one load and one rotate each.
    const auto* eb = reinterpret_cast<const uint8_t*>(&e);
    uint64_t a;
    uint32_t p;
    std::memcpy(&a, eb + (fwd ? 8 : 0), 8);
    std::memcpy(&p, eb + (fwd ? 20 : 16), 4);
    static_assert(std::endian::native == std::endian::little, "dst: the word's low half");
    return {std::rotl(a, 32), std::rotl(p, 16), static_cast<uint32_t>(a)};
}

/// Stores a new IPv4 full-NAT flow's checksum changes for the fast path (a forward packet's;
/// a reply's are nat_v4_delta_reverse of them).
void set_nat_csum(conntrack::entry_v4& e) noexcept
{
    uint64_t old_a;
    uint32_t old_p;
    std::memcpy(&old_a, &e, 8);
    std::memcpy(&old_p, reinterpret_cast<const uint8_t*>(&e) + 16, 4);
    const v4_words nw = rewrite_words(e, true);
    const net::nat_v4_delta d = net::nat_v4_delta_of(old_a, old_p, nw.addrs, nw.ports);
    e.nat_csum[0] = d.ip;
    e.nat_csum[1] = d.l4;
    e.client_hop_epoch = 0; // a reused entry: its previous flow's tags are not this one's
    e.fwd_epoch = 0;
    e.flags |= conntrack::entry_flag_nat_csum;
}

/// A packet to an L4 listener (client side).
template <typename F>
l4_decision forward(const worker_ctx& w, const l4_view& view, const l4_service& svc, const pkt& p,
                    const flow_key& fk, uint64_t ct_hash, uint64_t now) noexcept
{
    l4_lcore& l = *w.l4;
    auto& c = *w.counters;
    auto& ct = table_of<F>(l);
    const uint8_t* src = src_of<F>(p);
    const uint8_t* dst = dst_of<F>(p);
    const uint16_t sport = fk.sport;
    const uint16_t dport = fk.dport;
    const uint8_t flags = p.proto == proto_tcp ? p.l4[13] : 0;
    const bool syn_only = (flags & (conntrack::tcp_syn | conntrack::tcp_ack)) == conntrack::tcp_syn;

    auto m = ct.lookup_hashed(fk, ct_hash, now);
    if (m.e != nullptr && m.dir == direction::forward && syn_only &&
        (m.e->st == conntrack::state::tcp_closed || m.e->st == conntrack::state::tcp_closing ||
         ((m.e->flags & conntrack::entry_flag_single_key) != 0 &&
          m.e->st == conntrack::state::tcp_fin_wait))) {
        // A new connection on the 5-tuple of a finished one: choose again (its endpoint may
        // be ejected or gone), as for any new flow.
        untrack(l, *m.e);
        ct.remove(*m.e);
        m = {};
    }
    if (m.e != nullptr && m.dir == direction::forward) {
        auto& e = *m.e;
        c.count(l4_event::flow_hits);
        const bool single = (e.flags & conntrack::entry_flag_single_key) != 0;
        if (p.proto == proto_tcp) {
            if (single) {
                ct.update_tcp_forward_only(e, flags, now);
            } else if (!(syn_only && e.st == conntrack::state::tcp_syn_sent)) {
                ct.update_tcp(e, flags, direction::forward, now); // (a SYN retransmit keeps
                                                                  // the connect deadline)
            }
            untrack_if_closed(l, e);
            if (single && e.st == conntrack::state::tcp_fin_wait) {
                untrack(l, e); // DSR: the client's FIN is all the appliance sees of a close
            }
        } else {
            ct.touch(e, now);
        }
        if (single) {
            l4_endpoint ep;
            std::memcpy(ep.addr.data(), e.backend_addr.data(), F::addr_len);
            ep.family = F::family;
            ep.port = e.backend_port;
            ep.id = e.endpoint_id;
            const uint64_t h = flow_hash(F::family, src, dst, sport, dport, p.proto);
            // DSR flows keep their backend; the encapsulation follows the current service.
            return encap_out(w, p, svc.fwd == forwarding::fullnat ? forwarding::ipip : svc.fwd, ep,
                             h, now);
        }
        net::nat_tuple t{ct.snat_addr(e), e.backend_addr.data(), e.snat_port, e.backend_port};
        return nat_out<F>(w, p, t, now, true);
    }

    // A new flow.
    const uint64_t h = flow_hash(F::family, src, dst, sport, dport, p.proto);
    const l4_cluster* cl = nullptr;
    const l4_endpoint* ep = view.choose(svc, dst, h, &cl);
    if (ep == nullptr) {
        return dropped(drop::l4_no_backend);
    }
    if (p.proto == proto_tcp && syn_only && cl != nullptr && over_limit(l, *cl)) {
        return answer_rst<F>(w, p);
    }
    if (svc.fwd != forwarding::fullnat) {
        if (ep->family != F::family) {
            // The flow entry keeps the endpoint in the packet's family: a DSR flow between
            // families would lose its address. Refused like full-NAT's (README).
            return dropped(drop::l4_family_mismatch);
        }
        // Tracked only once the packet is on its way (a drop leaves no flow behind).
        const l4_decision d = encap_out(w, p, svc.fwd, *ep, h, now);
        if (d.v != l4_verdict::tx || answered(d)) {
            return d; // dropped, or answered with an ICMP error: no flow
        }
        auto* e = ct.insert_single(fk, ep->addr.data(), ep->port, ep->id, now);
        if (e == nullptr) {
            c.count(l4_event::stateless); // flood guard (H9): Maglev alone keeps it consistent
        } else {
            c.count(l4_event::new_flows);
            if (p.proto == proto_tcp) {
                ct.update_tcp_forward_only(*e, flags, now);
                track(l, *e);
            }
        }
        return d;
    }
    if (p.proto == proto_tcp && !syn_only) {
        return dropped(drop::l4_no_flow); // full-NAT cannot pick up a flow mid-stream
    }
    if ((F::family == 4 ? p.l3[8] : p.l3[7]) <= 1) {
        return dropped(drop::l4_ttl_exceeded); // before any state is created for it
    }
    if (ep->family != F::family) {
        return dropped(drop::l4_family_mismatch);
    }
    uint16_t port = 0;
    const net::mac_addr* mac = nullptr;
    if (const drop d = next_hop(l, c, F::family, ep->addr.data(), now, port, mac);
        d != drop::count) {
        return dropped(d);
    }
    if (port >= w.ports.size()) {
        return dropped(drop::l4_no_route);
    }
    const uint8_t* snat = pick_snat(w.ports[port], F::family, h);
    if (snat == nullptr) {
        return dropped(drop::l4_no_snat);
    }
    flow_key rk = make_key(F::family, ep->addr.data(), snat, ep->port, 0, p.proto);
    bool found = false;
    for (uint32_t i = 0; i < snat_probe_limit && !found; ++i) {
        const uint16_t off = l.port_cursor;
        l.port_cursor = static_cast<uint16_t>(off + 1 >= l.port_span ? 0 : off + 1);
        rk.dport =
            rte_cpu_to_be_16(static_cast<uint16_t>(snat_port_base + l.worker * l.port_span + off));
        found = ct.lookup(rk, now).e == nullptr;
    }
    if (!found) {
        return dropped(drop::l4_snat_exhausted);
    }
    auto* e = ct.insert(fk, rk, ep->id, now);
    if (e == nullptr) {
        return dropped(drop::l4_conntrack_full);
    }
    if constexpr (F::family == 4) {
        set_nat_csum(*e);
    }
    c.count(l4_event::new_flows);
    if (p.proto == proto_tcp) {
        track(l, *e);
        if (cl != nullptr && cl->outlier_detection) {
            e->flags |= conntrack::entry_flag_report; // connect outcomes feed the detector
        }
        if (cl != nullptr && cl->connect_timeout_ticks != 0) {
            e->expires = now + cl->connect_timeout_ticks; // no SYN-ACK by then: failure
        }
    }
    net::nat_tuple t{rk.dst.data(), rk.src.data(), rk.dport, rk.sport};
    return nat_out<F>(w, p, t, now, true);
}

/// A packet to an SNAT address: the backend side of a full-NAT flow.
template <typename F>
l4_decision reply(const worker_ctx& w, const l4_view* view, const pkt& p, uint16_t sport,
                  uint16_t dport, uint64_t ct_hash, uint64_t now, bool redirected) noexcept
{
    l4_lcore& l = *w.l4;
    auto& c = *w.counters;
    const int owner = owner_of(l, dport);
    if (owner < 0) {
        return dropped(drop::l4_no_flow);
    }
    if (owner != l.worker) {
        if (redirected) {
            return dropped(drop::l4_no_flow); // never bounce twice
        }
        return {l4_verdict::redirect, static_cast<uint16_t>(owner), drop::count};
    }
    auto& ct = table_of<F>(l);
    const flow_key rk = make_key(F::family, src_of<F>(p), dst_of<F>(p), sport, dport, p.proto);
    if (ct_hash == 0) {
        ct_hash = ct.prefetch_bucket(rk);
    }
    auto m = ct.lookup_hashed(rk, ct_hash, now);
    if (m.e == nullptr || m.dir != direction::reverse) {
        return dropped(drop::l4_no_flow);
    }
    auto& e = *m.e;
    if (view == nullptr || view->find(F::family, ct.vip_addr(e), e.proto, e.vip_port) == nullptr) {
        // Its VIP left the config: the client's packets already go to the kernel; the flow
        // is not refreshed and times out (a UDP server push would otherwise never end).
        return dropped(drop::l4_no_listener);
    }
    c.count(l4_event::reply_hits);
    if (p.proto == proto_tcp) {
        const uint8_t flags = p.l4[13];
        if (e.st == conntrack::state::tcp_syn_sent &&
            (e.flags & conntrack::entry_flag_report) != 0) {
            if ((flags & conntrack::tcp_rst) != 0) {
                send_signal(l, e.endpoint_id, signal_connect_failure);
            } else if ((flags & (conntrack::tcp_syn | conntrack::tcp_ack)) ==
                       (conntrack::tcp_syn | conntrack::tcp_ack)) {
                send_signal(l, e.endpoint_id, signal_success);
            }
        }
        ct.update_tcp(e, flags, direction::reverse, now);
        untrack_if_closed(l, e);
    } else {
        ct.touch(e, now);
    }
    net::nat_tuple t{ct.vip_addr(e), e.client_addr.data(), e.vip_port, e.client_port};
    return nat_out<F>(w, p, t, now, true);
}

/// Sends ICMP error `p` on, translated: its quote becomes `quoted` (the packet the receiver
/// sent), and it comes from quoted's destination to quoted's source (icmp_reply: from the
/// VIP to the client; icmp_client: from the SNAT address to the backend).
template <typename F>
l4_decision send_translated(const worker_ctx& w, const pkt& p, uint8_t* icmp, size_t icmp_len,
                            const net::icmp_quote& q, const flow_key& quoted, uint64_t now) noexcept
{
    auto& c = *w.counters;
    uint16_t port = 0;
    const net::mac_addr* mac = nullptr;
    if (const drop d = next_hop(*w.l4, c, F::family, quoted.src.data(), now, port, mac);
        d != drop::count) {
        return dropped(d);
    }
    if (port >= w.ports.size()) {
        return dropped(drop::l4_no_route);
    }
    const net::nat_tuple inner{quoted.src.data(), quoted.dst.data(), quoted.sport, quoted.dport};
    const bool ok = F::family == 4
                        ? net::icmp4_error_translate(p.l3, icmp, icmp_len, q, quoted.dst.data(),
                                                     quoted.src.data(), inner, true)
                        : net::icmp6_error_translate(p.l3, icmp, icmp_len, q, quoted.dst.data(),
                                                     quoted.src.data(), inner, true);
    if (!ok) {
        return dropped(drop::l4_ttl_exceeded);
    }
    c.count(l4_event::icmp_translated);
    write_l2(p.m, p.fi->l2_len, w.ports[port], *mac,
             F::family == 4 ? ether_ipv4_be : ether_ipv6_be);
    return {l4_verdict::tx, port, drop::count};
}

/// True, with `q` filled, when `p` is a whole (unfragmented) ICMP error quoting a TCP or UDP
/// packet: the only ICMP the L4 stage translates (anything else is the kernel's).
template <typename F>
bool error_quote(const pkt& p, net::icmp_quote& q) noexcept
{
    if (p.fi->l4_off == 0 || p.fi->fragment) {
        return false;
    }
    const size_t icmp_len = p.fi->ip_total - p.fi->l3_len;
    const bool is_error = F::family == 4 ? net::icmp4_error_quote(p.l4, icmp_len, q)
                                         : net::icmp6_error_quote(p.l4, icmp_len, q);
    return is_error && (q.proto == proto_tcp || q.proto == proto_udp);
}

/// An ICMP error to an SNAT address about a full-NAT flow: translated back to the client.
template <typename F>
l4_decision icmp_reply(const worker_ctx& w, const pkt& p, uint64_t now, bool redirected) noexcept
{
    l4_lcore& l = *w.l4;
    net::icmp_quote q;
    if (!error_quote<F>(p, q)) {
        return {}; // echo and the like: the kernel's
    }
    uint8_t* icmp = p.l4;
    const size_t icmp_len = p.fi->ip_total - p.fi->l3_len;
    const uint8_t* qip = icmp + q.ip_off;
    const uint8_t* ql4 = icmp + q.l4_off;
    const uint8_t* qsrc = F::family == 4 ? qip + 12 : qip + 8;
    const uint8_t* qdst = F::family == 4 ? qip + 16 : qip + 24;
    const uint16_t qsport = ld16(ql4);
    const uint16_t qdport = ld16(ql4 + 2);
    const int owner = owner_of(l, qsport);
    if (owner < 0) {
        return {};
    }
    if (owner != l.worker) {
        if (redirected) {
            return dropped(drop::l4_no_flow);
        }
        return {l4_verdict::redirect, static_cast<uint16_t>(owner), drop::count};
    }
    auto& ct = table_of<F>(l);
    // The quote is what we sent the backend (SNAT -> backend): its reverse is the flow's
    // backend-side key.
    const flow_key rk = make_key(F::family, qdst, qsrc, qdport, qsport, q.proto);
    auto m = ct.lookup(rk, now);
    if (m.e == nullptr || m.dir != direction::reverse) {
        return dropped(drop::l4_no_flow);
    }
    // The quote becomes what the client sent (client -> VIP); the error comes from the VIP.
    return send_translated<F>(w, p, icmp, icmp_len, q, ct.forward_key(*m.e), now);
}

/// A client-side ICMP error about no flow of this worker. With several workers the flow may
/// be another's: RSS spreads a flow's packets by their ports, an ICMP error by its addresses
/// only, so nothing says whose it is. It goes round the workers through their redirect rings
/// (the mbuf's hash.usr names the worker that received it), each looking it up once; back at
/// the first, it goes to the kernel (it may be about the kernel's own traffic). Cold path.
[[gnu::cold]] l4_decision icmp_round(const worker_ctx& w, const pkt& p, bool redirected) noexcept
{
    const l4_lcore& l = *w.l4;
    if (l.workers < 2) {
        return {};
    }
    uint32_t origin = l.worker;
    if (redirected) {
        origin = p.m->hash.usr;
    } else {
        p.m->hash.usr = origin; // replaces the RSS hash, which nothing reads after RX
    }
    const auto next = static_cast<uint16_t>((l.worker + 1) % l.workers);
    if (origin >= l.workers || next == origin || l.redirect_out[next] == nullptr) {
        return {};
    }
    return {l4_verdict::redirect, next, drop::count};
}

/// An ICMP error from the client side to a VIP, about a packet the appliance sent from the
/// VIP (a full-NAT reply, or a DSR backend's packet): the client's host or a router on its
/// path says the port is closed, the packet too big, the TTL exceeded. Full-NAT: translated
/// for the backend, from the SNAT address, quoting what the backend sent (SNAT:port <-
/// backend). DSR: encapsulated to the backend as it is (the backend owns the VIP). An error
/// about no flow of this worker goes to the kernel (it may be about the kernel's own
/// traffic, such as an L7 VIP's), after the other workers had their turn (icmp_round).
template <typename F>
l4_decision icmp_client(const worker_ctx& w, const l4_view& view, const pkt& p, uint64_t now,
                        bool redirected) noexcept
{
    l4_lcore& l = *w.l4;
    auto& c = *w.counters;
    net::icmp_quote q;
    if (!error_quote<F>(p, q)) {
        return {};
    }
    uint8_t* icmp = p.l4;
    const size_t icmp_len = p.fi->ip_total - p.fi->l3_len;
    const uint8_t* qip = icmp + q.ip_off;
    const uint8_t* ql4 = icmp + q.l4_off;
    const uint8_t* qsrc = F::family == 4 ? qip + 12 : qip + 8;
    const uint8_t* qdst = F::family == 4 ? qip + 16 : qip + 24;
    // The quote is what left the VIP for the client: its reverse is the flow's forward key.
    auto& ct = table_of<F>(l);
    const flow_key fk = make_key(F::family, qdst, qsrc, ld16(ql4 + 2), ld16(ql4), q.proto);
    auto m = ct.lookup(fk, now);
    if (m.e == nullptr || m.dir != direction::forward) {
        // Round the other workers only when the quote is about one of our L4 listeners (an
        // error about the kernel's own traffic, or a spoofed one, goes straight to it).
        const bool ours = view.find(F::family, qsrc, q.proto, ld16(ql4)) != nullptr;
        return ours ? icmp_round(w, p, redirected) : l4_decision{};
    }
    const auto& e = *m.e;
    if ((e.flags & conntrack::entry_flag_single_key) != 0) {
        l4_endpoint ep;
        std::memcpy(ep.addr.data(), e.backend_addr.data(), F::addr_len);
        ep.family = F::family;
        ep.port = e.backend_port;
        ep.id = e.endpoint_id;
        const uint64_t h =
            flow_hash(F::family, fk.src.data(), fk.dst.data(), fk.sport, fk.dport, fk.proto);
        // The encapsulation the service uses now (as for the flow's own packets).
        const l4_service* svc = view.find(F::family, fk.dst.data(), fk.proto, fk.dport);
        const forwarding fwd =
            svc == nullptr || svc->fwd == forwarding::fullnat ? forwarding::ipip : svc->fwd;
        const l4_decision d = encap_out(w, p, fwd, ep, h, now);
        if (d.v == l4_verdict::tx && !answered(d)) {
            c.count(l4_event::icmp_translated);
        }
        return d;
    }
    // The quote becomes what the backend sent (backend -> SNAT); the error comes from SNAT.
    return send_translated<F>(w, p, icmp, icmp_len, q, ct.reverse_key(e), now);
}

/// The fragment identification of an IPv4 packet, or of the fragment header of an IPv6 one
/// (parse_frame found it while walking the extension headers).
template <typename F>
bool frag_id(const pkt& p, uint32_t& id) noexcept
{
    if constexpr (F::family == 4) {
        id = ld16(p.l3 + 4);
        return true;
    } else {
        if (p.fi->frag_hdr == 0) {
            return false;
        }
        std::memcpy(&id, p.l3 + p.fi->frag_hdr + 4, 4);
        return true;
    }
}

template <typename F>
frag_entry& frag_slot(l4_lcore& l, const uint8_t* src, const uint8_t* dst, uint32_t id,
                      uint8_t proto) noexcept
{
    uint64_t a;
    uint64_t b;
    std::memcpy(&a, src + (F::family == 4 ? 0 : 8), 8);
    std::memcpy(&b, dst + (F::family == 4 ? 0 : 8), 8);
    if constexpr (F::family == 4) {
        a &= 0xffffffffULL; // only 4 address bytes
        b &= 0xffffffffULL;
    }
    const uint64_t h = fmix64(a ^ fmix64(b ^ (uint64_t{id} << 8 | proto)));
    return l.frags[h & (l.frags.size() - 1)];
}

/// Remembers how a first fragment was forwarded (`orig_*`: its addresses before rewriting).
template <typename F>
void frag_remember(l4_lcore& l, const pkt& p, const frag_note& n, const uint8_t* orig_src,
                   const uint8_t* orig_dst, uint32_t id, uint64_t now) noexcept
{
    frag_entry& f = frag_slot<F>(l, orig_src, orig_dst, id, p.proto);
    f = frag_entry{};
    std::memcpy(f.src.data(), orig_src, F::addr_len);
    std::memcpy(f.dst.data(), orig_dst, F::addr_len);
    f.id = id;
    f.proto = p.proto;
    f.family = F::family;
    f.kind = n.kind;
    f.expires = now + frag_lifetime_seconds * l.tsc_hz;
    if (n.kind == 1) {
        // The rewritten packet: same family, L2 rebuilt to 14 bytes.
        const uint8_t* ip = rte_pktmbuf_mtod(p.m, const uint8_t*) + 14;
        std::memcpy(f.new_src.data(), F::family == 4 ? ip + 12 : ip + 8, F::addr_len);
        std::memcpy(f.new_dst.data(), F::family == 4 ? ip + 16 : ip + 24, F::addr_len);
    } else {
        f.fwd = n.fwd;
        f.ep_family = n.ep.family;
        f.new_dst = n.ep.addr;
        f.hash = n.hash;
    }
}

/// A later fragment: follows its first fragment, or is dropped.
template <typename F>
l4_decision later_fragment(const worker_ctx& w, const l4_view* view, const pkt& p,
                           uint64_t now) noexcept
{
    l4_lcore& l = *w.l4;
    const uint8_t* src = src_of<F>(p);
    const uint8_t* dst = dst_of<F>(p);
    uint32_t id = 0;
    if (!frag_id<F>(p, id)) {
        return {};
    }
    frag_entry& f = frag_slot<F>(l, src, dst, id, p.proto);
    const bool hit = f.kind != 0 && f.family == F::family && f.id == id && f.proto == p.proto &&
                     now < f.expires && std::memcmp(f.src.data(), src, F::addr_len) == 0 &&
                     std::memcmp(f.dst.data(), dst, F::addr_len) == 0;
    if (!hit) {
        // To an SNAT address only a full-NAT reply can be meant: drop. Anything else goes to
        // the kernel, which may hold the first fragment (a VIP or box address on a port that
        // is no L4 listener) and reassembles, or drops, as it does for any datagram.
        (void)view;
        return own_snat(w, F::family, dst) ? dropped(drop::l4_fragment) : l4_decision{};
    }
    if (f.kind == 2) {
        l4_endpoint ep;
        ep.addr = f.new_dst;
        ep.family = f.ep_family;
        return encap_out(w, p, f.fwd, ep, f.hash, now);
    }
    auto& c = *w.counters;
    uint16_t port = 0;
    const net::mac_addr* mac = nullptr;
    if (const drop d = next_hop(l, c, F::family, f.new_dst.data(), now, port, mac);
        d != drop::count) {
        return dropped(d);
    }
    if (port >= w.ports.size()) {
        return dropped(drop::l4_no_route);
    }
    const bool ok = F::family == 4
                        ? net::ip_rewrite_v4(p.l3, f.new_src.data(), f.new_dst.data(), true)
                        : net::ip_rewrite_v6(p.l3, f.new_src.data(), f.new_dst.data(), true);
    if (!ok) {
        return dropped(drop::l4_ttl_exceeded);
    }
    write_l2(p.m, p.fi->l2_len, w.ports[port], *mac,
             F::family == 4 ? ether_ipv4_be : ether_ipv6_be);
    return {l4_verdict::tx, port, drop::count};
}

/// What classification found out about a packet with ports (and the pipelined passes keep).
struct pre {
    const l4_service* svc;
    flow_key key;   ///< the packet's conntrack key (kind 1; set only then)
    uint64_t hash;  ///< conntrack hash of the packet's key (kind 1 and 2)
    uint8_t kind;   ///< see the kind_* constants
    uint8_t family; ///< 4 or 6 (0: not L4's)
};
constexpr uint8_t kind_generic = 0;   ///< ICMP, fragments, other protocols: handle()
constexpr uint8_t kind_listener = 1;  ///< to an L4 listener (svc, key, hash)
constexpr uint8_t kind_reply = 2;     ///< to an SNAT port this worker owns (hash)
constexpr uint8_t kind_reply_far = 3; ///< to an SNAT address, not this worker's port
constexpr uint8_t kind_none = 4;      ///< not the L4 path's: to the kernel

/// Starts loading the bucket of the reverse key that forward() will probe first for a new
/// IPv4 full-NAT flow (`nth` new flows of the burst before it): the same endpoint choice,
/// SNAT address and port cursor, the egress port from the next-hop cache only. A hint: a
/// wrong guess (the flow exists, an earlier probe collided) costs one useless prefetch.
void prefetch_new_reverse_v4(const worker_ctx& w, const l4_view& view, const pre& r,
                             unsigned nth) noexcept
{
    l4_lcore& l = *w.l4;
    const flow_key& fk = r.key;
    const uint64_t h = flow_hash(4, fk.src.data(), fk.dst.data(), fk.sport, fk.dport, fk.proto);
    const l4_cluster* cl = nullptr;
    const l4_endpoint* ep = view.choose(*r.svc, fk.dst.data(), h, &cl);
    if (ep == nullptr || ep->family != 4 || l.burst_fib == nullptr || l.burst_neigh == nullptr) {
        return;
    }
    uint32_t a;
    std::memcpy(&a, ep->addr.data(), 4);
    // The cache entry as next_hop() filled it for this burst's tables (the fast path's view of
    // it, cached_hop_v4, is filled only by established packets, which a SYN flood has none of).
    const nexthop_entry& ce = l.nexthops[nexthop_slot_v4(a) & (l.nexthops.size() - 1)];
    const uint64_t dw[2] = {a, 0};
    if (!hop_filled(ce, dw, 4, *l.burst_fib, *l.burst_neigh) || ce.port >= w.ports.size()) {
        return;
    }
    const uint8_t* snat = pick_snat(w.ports[ce.port], 4, h);
    if (snat == nullptr || l.port_span == 0) {
        return;
    }
    const auto off = static_cast<uint16_t>((l.port_cursor + nth) % l.port_span);
    const auto port = static_cast<uint16_t>(snat_port_base + l.worker * l.port_span + off);
    (void)l.ct4.prefetch_bucket(
        make_key(4, ep->addr.data(), snat, ep->port, rte_cpu_to_be_16(port), fk.proto));
}

/// Classifies a TCP/UDP packet whose ports are present: its listener or SNAT owner; for the
/// two kinds that will look conntrack up, hashes the key and starts loading its bucket.
// always_inline (STYLE H7, measured): out of line, the packet view is spilled to the stack
// for the call; callgrind counts ~40 more instructions per established packet.
template <typename F>
[[gnu::always_inline]] inline void classify_ports(const worker_ctx& w, const l4_view* view,
                                                  const pkt& p, pre& r) noexcept
{
    const uint8_t* dst = dst_of<F>(p);
    const uint16_t sport = ld16(p.l4);
    const uint16_t dport = ld16(p.l4 + 2);
    auto& ct = table_of<F>(*w.l4);
    if (view != nullptr) {
        if (const l4_service* s = view->find(F::family, dst, p.proto, dport); s != nullptr) {
            r.svc = s;
            r.kind = kind_listener;
            r.key = make_key(F::family, src_of<F>(p), dst, sport, dport, p.proto);
            r.hash = ct.prefetch_bucket(r.key);
            return;
        }
    }
    if (!own_snat(w, F::family, dst)) {
        r.kind = kind_none;
    } else if (owner_of(*w.l4, dport) == w.l4->worker) {
        r.kind = kind_reply;
        r.hash = ct.prefetch_bucket(make_key(F::family, src_of<F>(p), dst, sport, dport, p.proto));
    } else {
        r.kind = kind_reply_far; // reply() redirects it, or drops it (no SNAT port)
        r.hash = 0;
    }
}

/// The decision for a packet classify_ports() classified.
template <typename F>
[[gnu::always_inline]] inline l4_decision ports_decision(const worker_ctx& w, const l4_view* view,
                                                         const pkt& p, const pre& r, uint64_t now,
                                                         bool redirected) noexcept
{
    switch (r.kind) {
    case kind_listener:
        return forward<F>(w, *view, *r.svc, p, r.key, r.hash, now);
    case kind_reply:
    case kind_reply_far: // hash 0: reply() redirects or drops before any lookup
        return reply<F>(w, view, p, ld16(p.l4), ld16(p.l4 + 2), r.hash, now, redirected);
    default:
        return {};
    }
}

template <typename F>
l4_decision handle(const worker_ctx& w, const l4_view* view, pkt& p, uint64_t now,
                   bool redirected) noexcept
{
    const uint8_t* dst = dst_of<F>(p);
    if (p.proto == proto_tcp || p.proto == proto_udp) {
        if (p.fi->l4_off == 0) {
            return later_fragment<F>(w, view, p, now);
        }
        if (!p.fi->fragment) {
            return {}; // classified in pass 1 already (see first_pass): not reached
        }
        pre r;
        r.kind = kind_generic;
        // A first fragment: its L4 header must be whole (parse_frame lets it be cut).
        const uint32_t have = p.fi->ip_total - p.fi->l3_len;
        const uint32_t data = rte_pktmbuf_data_len(p.m) - p.fi->l4_off;
        const uint32_t need = p.proto == proto_tcp ? 20u : 8u;
        uint32_t id = 0;
        if (have < need || data < need || !frag_id<F>(p, id)) {
            const bool ours = own_snat(w, F::family, dst) ||
                              (view != nullptr && view->has_vip_address(F::family, dst));
            return ours ? dropped(drop::l4_fragment) : l4_decision{};
        }
        std::array<uint8_t, 16> osrc{};
        std::array<uint8_t, 16> odst{};
        std::memcpy(osrc.data(), src_of<F>(p), F::addr_len);
        std::memcpy(odst.data(), dst, F::addr_len);
        frag_note note;
        p.note = &note;
        classify_ports<F>(w, view, p, r);
        const l4_decision d = ports_decision<F>(w, view, p, r, now, redirected);
        if (d.v == l4_verdict::tx && note.kind != 0) {
            frag_remember<F>(*w.l4, p, note, osrc.data(), odst.data(), id, now);
        }
        return d;
    }
    if ((p.proto == proto_icmp && F::family == 4) || (p.proto == proto_icmp6 && F::family == 6)) {
        if (own_snat(w, F::family, dst)) {
            return icmp_reply<F>(w, p, now, redirected);
        }
        if (view != nullptr && view->has_vip_address(F::family, dst)) {
            return icmp_client<F>(w, *view, p, now, redirected);
        }
    }
    return {};
}

} // namespace

result<std::unique_ptr<l4_lcore>> l4_lcore::create(uint32_t capacity,
                                                   const conntrack::timeout_seconds& to,
                                                   uint64_t tsc_hz, uint64_t seed)
{
    conntrack::params p;
    p.capacity = capacity;
    p.seed = seed;
    p.to = conntrack::timeouts::from_seconds(to, tsc_hz);
    auto t4 = conntrack::table_v4::create(p);
    if (!t4.ok()) {
        return t4.err();
    }
    auto t6 = conntrack::table_v6::create(p);
    if (!t6.ok()) {
        return t6.err();
    }
    // Control path (bring-up): allocated once per worker, about 500 KB of per-lcore state.
    auto l = std::make_unique<l4_lcore>(std::move(*t4), std::move(*t6));
    l->tsc_hz = tsc_hz;
    l->ct4.set_expiry_hook(&on_expiry<conntrack::entry_v4>, l.get());
    l->ct6.set_expiry_hook(&on_expiry<conntrack::entry_v6>, l.get());
    return l;
}

namespace {

pkt make_pkt(rte_mbuf* m, const net::frame_info& fi, uint16_t in_port) noexcept
{
    pkt p;
    p.m = m;
    p.frame = rte_pktmbuf_mtod(m, uint8_t*);
    p.l3 = p.frame + fi.l2_len;
    p.l4 = fi.l4_off != 0 ? p.frame + fi.l4_off : nullptr;
    p.fi = &fi;
    p.proto = fi.ip_proto;
    p.note = nullptr;
    p.in_port = in_port;
    p.family = fi.ether_type == net::ether_type_ipv4 ? 4 : 6;
    return p;
}

/// Pass 1 for one packet: TCP/UDP with whole ports is classified now (bucket prefetch
/// started); the rest takes the generic path in pass 3.
template <typename F>
void first_pass(const worker_ctx& w, const l4_view* view, const pkt& p, pre& r) noexcept
{
    if ((p.proto == proto_tcp || p.proto == proto_udp) && p.l4 != nullptr && !p.fi->fragment) {
        classify_ports<F>(w, view, p, r);
    }
}

template <typename F>
l4_decision last_pass(const worker_ctx& w, const l4_view* view, pkt& p, const pre& r, uint64_t now,
                      bool redirected) noexcept
{
    if (r.kind == kind_generic) {
        return handle<F>(w, view, p, now, redirected);
    }
    return ports_decision<F>(w, view, p, r, now, redirected);
}

} // namespace

uint16_t l4_stage(const worker_ctx& w, const port_ctx& in, std::span<rte_mbuf* const> pkts,
                  const verdicts& v, std::span<l4_decision> out, bool redirected) noexcept
{
    if (w.l4 == nullptr) {
        return 0;
    }
    const l4_view* view = w.l4->view != nullptr ? w.l4->view->load() : nullptr;
    // The route and neighbour tables too, once per burst (P1).
    w.l4->burst_fib = w.l4->fib != nullptr ? w.l4->fib->load() : nullptr;
    w.l4->burst_neigh = w.l4->neigh != nullptr ? w.l4->neigh->load() : nullptr;
    const uint64_t now = rte_rdtsc();
    const size_t n = pkts.size() < burst_size ? pkts.size() : burst_size;
    pre r[burst_size]; // filled field by field: no per-burst zeroing of the keys
    // Pass 1: listener lookup, conntrack hash, bucket prefetch (H3).
    for (size_t i = 0; i < n; ++i) {
        out[i] = {};
        r[i].kind = kind_generic;
        r[i].family = 0;
        const net::frame_info& fi = v.info[i];
        if (v.next[i] != next_node::exception ||
            (fi.ether_type != net::ether_type_ipv4 && fi.ether_type != net::ether_type_ipv6)) {
            continue;
        }
        if (!rte_pktmbuf_is_contiguous(pkts[i])) {
            continue; // multi-segment (scattered RX): the stage only rewrites contiguous data
        }
        const pkt p = make_pkt(pkts[i], fi, in.index);
        r[i].family = p.family;
        if (p.family == 4) {
            first_pass<conntrack::v4>(w, view, p, r[i]);
        } else {
            first_pass<conntrack::v6>(w, view, p, r[i]);
        }
    }
    // Pass 2: with the buckets loaded, start loading the candidate entries.
    for (size_t i = 0; i < n; ++i) {
        if (r[i].kind == kind_listener || r[i].kind == kind_reply) {
            if (r[i].family == 4) {
                w.l4->ct4.prefetch_entry(r[i].hash);
            } else {
                w.l4->ct6.prefetch_entry(r[i].hash);
            }
        }
    }
    // Pass 2b: with the entries loaded, an expired one's other bucket (reclaiming it clears
    // that bucket's slot), and for a probable new IPv4 full-NAT flow the bucket of the reverse
    // key its SNAT port probe will look up first. In a SYN flood each was one cold bucket per
    // packet, waited for in turn.
    unsigned new_flows = 0; // predicted so far: each moves the SNAT port cursor by one
    for (size_t i = 0; i < n; ++i) {
        if (r[i].kind != kind_listener) {
            continue;
        }
        if (r[i].family != 4) {
            w.l4->ct6.prefetch_expired_other(r[i].hash, now);
            continue;
        }
        if (w.l4->ct4.prefetch_expired_other(r[i].hash, now) && view != nullptr &&
            r[i].svc->fwd == forwarding::fullnat) {
            const pkt p = make_pkt(pkts[i], v.info[i], in.index);
            if (p.proto != proto_tcp ||
                (p.l4[13] & (conntrack::tcp_syn | conntrack::tcp_ack)) == conntrack::tcp_syn) {
                prefetch_new_reverse_v4(w, *view, r[i], new_flows++);
            }
        }
    }
    // Pass 3: decide, run to completion.
    uint16_t taken = 0;
    for (size_t i = 0; i < n; ++i) {
        if (r[i].family == 0) {
            continue;
        }
        pkt p = make_pkt(pkts[i], v.info[i], in.index);
        out[i] = r[i].family == 4 ? last_pass<conntrack::v4>(w, view, p, r[i], now, redirected)
                                  : last_pass<conntrack::v6>(w, view, p, r[i], now, redirected);
        taken += out[i].v != l4_verdict::pass ? 1 : 0;
    }
    return taken;
}

namespace {

/// True when `m` is a frame the fast path may take: contiguous, Ethernet without VLAN tags,
/// IPv4 with a 20-byte header, not a fragment, TTL above 1, TCP without SYN or UDP, lengths
/// consistent with the frame and the whole L4 header present. Everything parse_frame would
/// call malformed fails here too (the test is stricter), so such frames keep their reasons.
// always_inline (STYLE H7): one call per packet in the fast path's loops; inline, the
// loop keeps its registers (out of line, callgrind counts the call and the spills).
[[gnu::always_inline]] inline uint8_t* fast_eligible(rte_mbuf* m) noexcept
{
    if (!rte_pktmbuf_is_contiguous(m)) {
        return nullptr;
    }
    auto* f = rte_pktmbuf_mtod(m, uint8_t*);
    const uint32_t len = rte_pktmbuf_data_len(m);
    if (len < 14 + 20 + 8 || ld16(f + 12) != ether_ipv4_be) {
        return nullptr;
    }
    uint8_t* ip = f + 14;
    if (ip[0] != 0x45 || (ld16(ip + 6) & RTE_BE16(0x3fff)) != 0 || ip[8] <= 1) {
        return nullptr;
    }
    const uint32_t total = rte_be_to_cpu_16(ld16(ip + 2));
    if (total > len - 14) {
        return nullptr;
    }
    if (ip[9] == proto_udp) {
        return total >= 20 + 8 ? ip : nullptr;
    }
    if (ip[9] != proto_tcp || total < 20 + 20) {
        return nullptr;
    }
    const uint8_t* tcp = ip + 20;
    const uint32_t doff = static_cast<uint32_t>(tcp[12] >> 4) * 4u;
    return doff >= 20 && doff <= total - 20 && (tcp[13] & conntrack::tcp_syn) == 0 ? ip : nullptr;
}

/// The next hop of IPv4 destination `dst` (its 4 bytes as loaded) by next_hop(), then the
/// fast path's view of its cache entry filled (see nexthop_entry): that entry, or nullptr with
/// the packet's drop decision in `miss` (an egress port the worker does not have:
/// l4_no_route). Cold: once per destination and epoch.
[[gnu::cold]] [[gnu::noinline]] const nexthop_entry* fill_hop_v4(const worker_ctx& w, l4_lcore& l,
                                                                 stats::lcore_counters& c,
                                                                 uint32_t dst, uint64_t now,
                                                                 l4_decision& miss) noexcept
{
    uint8_t a[4];
    std::memcpy(a, &dst, 4);
    uint16_t port = 0;
    const net::mac_addr* mac = nullptr;
    if (const drop d = next_hop(l, c, 4, a, now, port, mac); d != drop::count) {
        miss = dropped(d);
        return nullptr;
    }
    if (port >= w.ports.size()) {
        miss = dropped(drop::l4_no_route);
        return nullptr;
    }
    nexthop_entry& ce = l.nexthops[nexthop_slot_v4(dst) & (l.nexthops.size() - 1)];
    const port_ctx& out = w.ports[port];
    std::memcpy(ce.l2.data(), mac->bytes.data(), 6); // (mac is ce.mac: next_hop's entry)
    std::memcpy(ce.l2.data() + 6, out.mac.data(), 6);
    ce.mtu = out.mtu;
    ce.key4 = dst | (1ULL << 32);
    // This burst's tables are the current epoch's (the fast path loaded them).
    ce.epoch = l.hop_epoch;
    return &ce;
}

/// The next hop of IPv4 destination `dst` (its 4 bytes as loaded) from the per-lcore cache,
/// else fill_hop_v4() (`miss`: as there). Same answers as next_hop(), and the egress port is one
/// of the worker's. `epoch` is l.hop_epoch as the caller loaded it for the burst.
// always_inline (STYLE H7): one call per packet in the fast path's loops; inline, the
// loop keeps its registers (out of line, callgrind counts the call and the spills).
[[gnu::always_inline]] inline const nexthop_entry*
fast_hop_v4(const worker_ctx& w, l4_lcore& l, stats::lcore_counters& c, uint32_t dst,
            uint32_t epoch, uint64_t now, l4_decision& miss) noexcept
{
    if (const nexthop_entry* ce = cached_hop_v4(l, dst, epoch)) [[likely]] {
        return ce;
    }
    return fill_hop_v4(w, l, c, dst, now, miss);
}

/// True when the published `view` has a listener for a flow's VIP, port and protocol, given
/// as a client packet's raw key words (a reply passes its flow's forward key words):
/// remembered per view generation, so a flow's check (once per epoch and direction) costs a
/// multiply and two compares, not view->find().
// always_inline (STYLE H7): one call per packet in the fast path's loops; inline, the
// loop keeps its registers (out of line, callgrind counts the call and the spills).
[[gnu::always_inline]] inline bool listener_exists(l4_lcore& l, const l4_view* view, uint64_t addrs,
                                                   uint64_t ports_proto) noexcept
{
    if (view == nullptr) {
        return false;
    }
    // (VIP, port, protocol) in one word: ports_proto >> 16 is the destination port and the
    // protocol above it (nothing higher); bit 56 tells a key from an empty slot.
    const uint64_t key = (addrs >> 32) | ((ports_proto >> 16) << 32) | (1ULL << 56);
    auto& memo = l.listeners[(key * 0x9e3779b97f4a7c15ULL) >> 58];
    static_assert(std::tuple_size_v<decltype(l4_lcore::listeners)> == 64);
    if (memo.key == key && memo.generation == view->generation()) {
        return true;
    }
    const auto dst = static_cast<uint32_t>(addrs >> 32);
    const auto dport = static_cast<uint16_t>(ports_proto >> 16);
    const auto proto = static_cast<uint8_t>(ports_proto >> 32);
    uint8_t a[4];
    std::memcpy(a, &dst, 4);
    if (view->find(4, a, proto, dport) == nullptr) {
        return false;
    }
    memo.key = key;
    memo.generation = view->generation();
    return true;
}

} // namespace

void l4_fast_begin(const worker_ctx& w, fast_burst& b) noexcept
{
    static_assert(fast_burst_max == burst_size);
    b.k = 0;
    uint64_t bytes = 0;
    if (w.l4 == nullptr || !w.l4->fast_path) {
        for (uint16_t i = 0; i < b.n; ++i) {
            bytes += rte_pktmbuf_pkt_len(b.pkts[i]);
        }
        b.rx_bytes = bytes;
        return;
    }
    const auto& ct = w.l4->ct4;
    // Pass 1: the header checks, the raw key and its hash; start loading the bucket (H3).
    unsigned k = 0;
    for (uint16_t i = 0; i < b.n; ++i) {
        bytes += rte_pktmbuf_pkt_len(b.pkts[i]);
        uint8_t* h = fast_eligible(b.pkts[i]);
        if (h == nullptr) {
            continue;
        }
        uint32_t a0;
        uint32_t a1;
        uint32_t pp;
        std::memcpy(&a0, h + 12, 4);
        std::memcpy(&a1, h + 16, 4);
        std::memcpy(&pp, h + 20, 4);
        b.ip[k] = h;
        b.addrs[k] = a0 | (uint64_t{a1} << 32);
        b.ports[k] = pp | (uint64_t{h[9]} << 32);
        b.hash[k] = ct.hash_raw(b.addrs[k], b.ports[k]);
        ct.prefetch_bucket_hashed(b.hash[k]);
        b.at[k] = static_cast<uint8_t>(i);
        ++k;
    }
    b.k = static_cast<uint8_t>(k);
    b.rx_bytes = bytes;
}

uint32_t l4_fast_path(const worker_ctx& w, uint16_t in_port, std::span<rte_mbuf* const> pkts,
                      std::span<l4_decision> out) noexcept
{
    fast_burst b;
    b.in_port = in_port;
    b.n = static_cast<uint16_t>(pkts.size() < burst_size ? pkts.size() : burst_size);
    std::copy_n(pkts.begin(), b.n, b.pkts);
    l4_fast_begin(w, b);
    const uint32_t slow = l4_fast_finish(w, b, out);
    if (b.tx_port >= 0) {
        std::fill_n(out.begin(), b.n,
                    l4_decision{l4_verdict::tx, static_cast<uint16_t>(b.tx_port), drop::count});
    }
    return slow;
}

uint32_t l4_fast_finish(const worker_ctx& w, fast_burst& b, std::span<l4_decision> out) noexcept
{
    const uint16_t n = b.n;
    uint32_t slow = n == 32 ? UINT32_MAX : (1u << n) - 1;
    const unsigned k = b.k;
    b.tx_port = -1;
    uint32_t ports_or = 0; // of the tx ports
    uint32_t ports_and = UINT32_MAX;
    if (k == 0) {
        return slow;
    }
    l4_lcore& l = *w.l4;
    auto& ct = l.ct4;
    uint8_t* const* ip = b.ip;
    const uint64_t* addrs = b.addrs;
    const uint64_t* ports = b.ports;
    const uint64_t* hash = b.hash;
    const uint8_t* at = b.at;
    // Pass 2: with the buckets loaded, start loading the candidate entries.
    uint32_t hint[burst_size];
    for (unsigned j = 0; j < k; ++j) {
        hint[j] = ct.prefetch_candidate(hash[j]);
    }
    l.burst_fib = l.fib != nullptr ? l.fib->load() : nullptr; // P1: once per burst
    l.burst_neigh = l.neigh != nullptr ? l.neigh->load() : nullptr;
    l.burst_fib_gen = l.burst_fib != nullptr ? l.burst_fib->generation() : UINT64_MAX;
    l.burst_neigh_gen = l.burst_neigh != nullptr ? l.burst_neigh->generation() : UINT64_MAX;
    const l4_view* view = l.view != nullptr ? l.view->load() : nullptr;
    const uint64_t view_gen = view != nullptr ? view->generation() : UINT64_MAX;
    if (l.burst_fib_gen != l.hop_fib_gen || l.burst_neigh_gen != l.hop_neigh_gen ||
        view_gen != l.hop_view_gen) [[unlikely]] {
        // A table changed: every next hop cached and every listener check tagged is stale.
        l.hop_fib_gen = l.burst_fib_gen;
        l.hop_neigh_gen = l.burst_neigh_gen;
        l.hop_view_gen = view_gen;
        if (++l.hop_epoch == 0) [[unlikely]] {
            // Wrapped: an entry left since the last time the epoch had its value would look
            // valid again. Next hops are forgotten (flows tagged then are long gone: their
            // timeouts are far shorter than 2^32 table changes).
            l.hop_epoch = 1;
            for (auto& ce : l.nexthops) {
                ce.key4 = 0;
            }
        }
    }
    const uint32_t epoch = l.hop_epoch;
    static_assert(stats::max_ports <= 256, "entry_v4::client_hop_port and tx_of are one byte");
    auto& c = *w.counters;
    const uint64_t now = rte_rdtsc();
    uint32_t sent = 0;          // bit j: candidate j was transmitted (by port tx_of[j])
    uint32_t answered_bits = 0; // bit j: candidate j was dropped or answered here instead
    uint32_t reply_hits = 0;    // of both, replies
    uint8_t tx_of[burst_size];
    // Pass 3: established full-NAT flows in either direction, run to completion.
    for (unsigned j = 0; j < k; ++j) {
        const auto m = ct.lookup_raw(addrs[j], ports[j], hash[j], hint[j], now);
        conntrack::entry_v4* e = m.e;
        if (e == nullptr ||
            (e->flags & (conntrack::entry_flag_single_key | conntrack::entry_flag_nat_csum)) !=
                conntrack::entry_flag_nat_csum) {
            continue; // a new flow, or DSR: the full stage
        }
        const bool fwd = m.dir == direction::forward;
        const auto proto = static_cast<uint8_t>(ports[j] >> 32);
        // The flow's listener must exist (its VIP may have left the config: then the full
        // stage gives a client's packet to the kernel and drops a reply). Checked once per
        // epoch per direction: the entry's tag says it was (toward the client, the cached next
        // hop's epoch, set only after this check).
        if (fwd && e->fwd_epoch != epoch) {
            if (!listener_exists(l, view, addrs[j], ports[j])) {
                continue;
            }
            e->fwd_epoch = epoch;
        }
        const bool hop_cached = !fwd && e->client_hop_epoch == epoch;
        if (!fwd && !hop_cached) {
            // A reply: the flow's forward key words (client, VIP, their ports) name the VIP.
            uint64_t fa;
            uint32_t fp;
            std::memcpy(&fa, e, 8);
            std::memcpy(&fp, reinterpret_cast<const uint8_t*>(e) + 16, 4);
            if (!listener_exists(l, view, fa, fp | (uint64_t{proto} << 32))) {
                continue;
            }
        }
        uint8_t* l4 = ip[j] + 20;
        if (proto == proto_tcp) {
            if (!fwd && e->st == conntrack::state::tcp_syn_sent) {
                continue; // the backend's answer to a SYN: a connect outcome (reply())
            }
            ct.update_tcp(*e, l4[13], m.dir, now);
            untrack_if_closed(l, *e);
        } else {
            ct.touch(*e, now);
        }
        reply_hits += fwd ? 0 : 1;
        const v4_words nw = rewrite_words(*e, fwd);
        uint16_t port;
        const uint8_t* dmac;
        const uint8_t* smac;
        uint16_t mtu;
        if (hop_cached) {
            port = e->client_hop_port; // toward the client: the flow's own cached next hop
            dmac = e->client_hop_mac.data();
            const port_ctx& op = w.ports[port]; // checked when cached
            smac = op.mac.data();
            mtu = op.mtu;
        } else {
            const nexthop_entry* hop = fast_hop_v4(w, l, c, nw.dst, epoch, now, out[at[j]]);
            if (hop == nullptr) [[unlikely]] {
                answered_bits |= 1u << j;
                continue;
            }
            port = hop->port;
            dmac = hop->l2.data();
            smac = dmac + 6;
            mtu = hop->mtu;
            if (!fwd) {
                std::memcpy(e->client_hop_mac.data(), dmac, 6);
                e->client_hop_port = static_cast<uint8_t>(port);
                e->client_hop_epoch = epoch;
            }
        }
        if (const uint16_t total = rte_be_to_cpu_16(ld16(ip[j] + 2)); total > mtu) [[unlikely]] {
            out[at[j]] = answer_too_big(w, b.pkts[at[j]], 14, ip[j], 4, 20, b.in_port, mtu);
            answered_bits |= 1u << j;
            continue;
        }
        const net::nat_v4_delta fd{e->nat_csum[0], e->nat_csum[1]};
        net::nat_rewrite_v4_delta(ip[j], l4, proto, nw.addrs, nw.ports,
                                  fwd ? fd : net::nat_v4_delta_reverse(fd));
        uint8_t* eth = ip[j] - 14;
        std::memcpy(eth, dmac, 6);
        std::memcpy(eth + 6, smac, 6);
        // The decision is written only when the burst does not leave as a whole (below).
        tx_of[j] = static_cast<uint8_t>(port);
        sent |= 1u << j;
        ports_or |= port; // all one port when the or and the and agree
        ports_and &= port;
    }
    const uint32_t taken = sent | answered_bits; // bit j: candidate j was decided here
    // The common case: the whole burst leaves by one port (dispatch is one tx burst).
    // The packets taken leave the slow mask: all of them at once when every packet of the
    // burst was a candidate (then candidate j is packet j) and taken.
    if (k == n && taken == slow) {
        slow = 0;
    } else {
        for (uint32_t bits = taken; bits != 0; bits &= bits - 1) {
            slow &= ~(1u << at[__builtin_ctz(bits)]);
        }
    }
    b.tx_port =
        slow == 0 && answered_bits == 0 && ports_or == ports_and ? static_cast<int>(ports_or) : -1;
    if (b.tx_port < 0) {
        for (uint32_t bits = sent; bits != 0; bits &= bits - 1) {
            const auto j = static_cast<unsigned>(__builtin_ctz(bits));
            out[at[j]] = {l4_verdict::tx, tx_of[j], drop::count};
        }
    }
    const auto hits = static_cast<uint32_t>(__builtin_popcount(taken));
    l.fast_taken += hits;
    if (hits != reply_hits) {
        c.count(l4_event::flow_hits, hits - reply_hits);
    }
    if (reply_hits != 0) {
        c.count(l4_event::reply_hits, reply_hits);
    }
    return slow;
}

void l4_housekeeping(const worker_ctx& w, uint64_t now) noexcept
{
    l4_lcore* l = w.l4;
    if (l == nullptr) {
        return;
    }
    // Aging paced by time, not by loops: each table is swept once per age_sweep_seconds
    // whatever the packet rate (expired entries are also reclaimed by lookups and inserts).
    // A busy worker then visits a few entries per burst instead of a fixed budget per loop.
    if (l->last_age == 0 || now < l->last_age) {
        l->last_age = now;
        return;
    }
    const uint64_t elapsed = now - l->last_age;
    const uint64_t per_sweep = age_sweep_seconds * l->tsc_hz;
    const uint64_t budget = per_sweep == 0 ? 0 : elapsed * l->ct4.capacity() / per_sweep;
    if (budget < age_min_batch) {
        return;
    }
    const auto b = static_cast<uint32_t>(budget < age_max_batch ? budget : age_max_batch);
    l->ct4.age(now, b);
    l->ct6.age(now, b);
    l->last_age = now;
}

} // namespace sluice::fastpath
