// The L4 stage: conntrack, backend choice, full-NAT / IPIP / GUE, next hop. See l4_stage.hh.
#include "sluice/fastpath/l4_stage.hh"

#include <cstring>

#include <rte_byteorder.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "sluice/base/hash.hh"
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

constexpr uint8_t proto_tcp = 6;
constexpr uint8_t proto_udp = 17;
constexpr uint8_t proto_icmp = 1;
constexpr uint8_t proto_icmp6 = 58;
constexpr uint16_t ether_ipv4_be = RTE_BE16(0x0800);
constexpr uint16_t ether_ipv6_be = RTE_BE16(0x86dd);
constexpr uint32_t snat_probe_limit = 32;
constexpr uint32_t age_budget = 256; // entries visited per loop by l4_housekeeping

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
struct pkt {
    rte_mbuf* m;
    uint8_t* frame;
    uint8_t* l3;
    uint8_t* l4;
    const net::frame_info* fi;
    uint8_t family;
    uint8_t proto;
};

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

void send_signal(l4_lcore& l, stats::lcore_counters& c, uint64_t id, uint8_t outcome) noexcept
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
    if (rte_ring_sp_enqueue_elem(l.signals, &s, sizeof(s)) == 0) {
        c.count(l4_event::health_signals);
    }
}

// The conntrack expiry hook: a TCP flow that dies before any SYN-ACK is a connect failure.
template <typename E>
void on_expiry(void* ctx, const E& e) noexcept
{
    auto* l = static_cast<l4_lcore*>(ctx);
    if (e.st == conntrack::state::tcp_syn_sent &&
        (e.flags & conntrack::entry_flag_single_key) == 0 && l->signals != nullptr) {
        auto& slot = l->failed[e.endpoint_id & (l->failed.size() - 1)];
        slot = e.endpoint_id;
        health_signal s;
        s.endpoint_id = e.endpoint_id;
        s.outcome = signal_connect_failure;
        if (rte_ring_sp_enqueue_elem(l->signals, &s, sizeof(s)) == 0 && l->counters != nullptr) {
            l->counters->count(l4_event::health_signals);
        }
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

/// The next hop toward `dst`: egress port index and destination MAC. Returns a drop reason
/// (drop::count when resolved).
drop next_hop(l4_lcore& l, stats::lcore_counters& c, uint8_t family, const uint8_t* dst,
              uint64_t now, uint16_t& port, const net::mac_addr*& mac) noexcept
{
    const net::fwd_table* fib = l.fib != nullptr ? l.fib->load() : nullptr;
    const net::neigh_table* neigh = l.neigh != nullptr ? l.neigh->load() : nullptr;
    if (fib == nullptr || neigh == nullptr) {
        return drop::l4_no_route;
    }
    net::ip_addr a;
    a.family = family;
    std::memcpy(a.bytes.data(), dst, family == 4 ? 4 : 16);
    const net::nexthop* nh = fib->lookup(a);
    if (nh == nullptr || nh->kind != net::route_kind::unicast) {
        return drop::l4_no_route;
    }
    const net::ip_addr& via = nh->gateway.is_set() ? nh->gateway : a;
    mac = neigh->lookup(nh->port, via);
    if (mac == nullptr) {
        request_resolve(l, c, nh->port, via, now);
        return drop::l4_no_neighbour;
    }
    port = nh->port;
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
    if (p.proto != proto_tcp || (p.l4[13] & conntrack::tcp_syn) == 0 || limit == 0) {
        return;
    }
    if (net::tcp_clamp_mss(p.l4, static_cast<size_t>(p.l4[12] >> 4) * 4u, limit)) {
        c.count(l4_event::mss_clamped);
    }
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
    const bool ok = F::family == 4 ? net::nat_rewrite_v4(p.l3, p.l4, p.proto, t, true)
                                   : net::nat_rewrite_v6(p.l3, p.l4, p.proto, t, true);
    if (!ok) {
        return dropped(drop::l4_ttl_exceeded);
    }
    if (syn_side) {
        clamp(p, c, mss_limit(out.mtu, F::family, 0));
    }
    write_l2(p.m, p.fi->l2_len, out, *mac, F::family == 4 ? ether_ipv4_be : ether_ipv6_be);
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
        return dropped(drop::l4_too_big);
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
    return {l4_verdict::tx, port, drop::count};
}

/// A packet to an L4 listener (client side).
template <typename F>
l4_decision forward(const worker_ctx& w, const l4_view& view, const l4_service& svc, const pkt& p,
                    uint16_t sport, uint16_t dport, uint64_t now) noexcept
{
    l4_lcore& l = *w.l4;
    auto& c = *w.counters;
    auto& ct = table_of<F>(l);
    const uint8_t* src = src_of<F>(p);
    const uint8_t* dst = dst_of<F>(p);
    const flow_key fk = make_key(F::family, src, dst, sport, dport, p.proto);
    const uint8_t flags = p.proto == proto_tcp ? p.l4[13] : 0;
    const bool syn_only = (flags & (conntrack::tcp_syn | conntrack::tcp_ack)) == conntrack::tcp_syn;

    auto m = ct.lookup(fk, now);
    if (m.e != nullptr && m.dir == direction::forward && syn_only &&
        (m.e->st == conntrack::state::tcp_closed || m.e->st == conntrack::state::tcp_closing)) {
        // A new connection on the 5-tuple of a finished one: choose again (its endpoint may
        // be ejected or gone), as for any new flow.
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
        const flow_key rk = ct.reverse_key(e);
        net::nat_tuple t{rk.dst.data(), rk.src.data(), rk.dport, rk.sport};
        return nat_out<F>(w, p, t, now, true);
    }

    // A new flow.
    const uint64_t h = flow_hash(F::family, src, dst, sport, dport, p.proto);
    const l4_cluster* cl = nullptr;
    const l4_endpoint* ep = view.choose(svc, dst, h, &cl);
    if (ep == nullptr) {
        return dropped(drop::l4_no_backend);
    }
    if (svc.fwd != forwarding::fullnat) {
        // Tracked only once the packet is on its way (a drop leaves no flow behind).
        const l4_decision d = encap_out(w, p, svc.fwd, *ep, h, now);
        if (d.v != l4_verdict::tx) {
            return d;
        }
        auto* e = ct.insert_single(fk, ep->addr.data(), ep->port, ep->id, now);
        if (e == nullptr) {
            c.count(l4_event::stateless); // flood guard (H9): Maglev alone keeps it consistent
        } else {
            c.count(l4_event::new_flows);
            if (p.proto == proto_tcp) {
                ct.update_tcp_forward_only(*e, flags, now);
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
    c.count(l4_event::new_flows);
    if (p.proto == proto_tcp && cl != nullptr && cl->connect_timeout_ticks != 0) {
        e->expires = now + cl->connect_timeout_ticks; // no SYN-ACK by then: connect failure
    }
    net::nat_tuple t{rk.dst.data(), rk.src.data(), rk.dport, rk.sport};
    return nat_out<F>(w, p, t, now, true);
}

/// A packet to an SNAT address: the backend side of a full-NAT flow.
template <typename F>
l4_decision reply(const worker_ctx& w, const pkt& p, uint16_t sport, uint16_t dport, uint64_t now,
                  bool redirected) noexcept
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
    auto m = ct.lookup(rk, now);
    if (m.e == nullptr || m.dir != direction::reverse) {
        return dropped(drop::l4_no_flow);
    }
    auto& e = *m.e;
    c.count(l4_event::reply_hits);
    if (p.proto == proto_tcp) {
        const uint8_t flags = p.l4[13];
        if (e.st == conntrack::state::tcp_syn_sent) {
            if ((flags & conntrack::tcp_rst) != 0) {
                send_signal(l, c, e.endpoint_id, signal_connect_failure);
            } else if ((flags & (conntrack::tcp_syn | conntrack::tcp_ack)) ==
                       (conntrack::tcp_syn | conntrack::tcp_ack)) {
                send_signal(l, c, e.endpoint_id, signal_success);
            }
        }
        ct.update_tcp(e, flags, direction::reverse, now);
    } else {
        ct.touch(e, now);
    }
    const flow_key fk = ct.forward_key(e);
    net::nat_tuple t{fk.dst.data(), fk.src.data(), fk.dport, fk.sport};
    return nat_out<F>(w, p, t, now, true);
}

/// An ICMP error to an SNAT address about a full-NAT flow: translated back to the client.
template <typename F>
l4_decision icmp_reply(const worker_ctx& w, const pkt& p, uint64_t now, bool redirected) noexcept
{
    l4_lcore& l = *w.l4;
    auto& c = *w.counters;
    if (p.fi->l4_off == 0 || p.fi->fragment) {
        return {};
    }
    uint8_t* icmp = p.l4;
    const size_t icmp_len = p.fi->ip_total - p.fi->l3_len;
    net::icmp_quote q;
    const bool is_error = F::family == 4 ? net::icmp4_error_quote(icmp, icmp_len, q)
                                         : net::icmp6_error_quote(icmp, icmp_len, q);
    if (!is_error || (q.proto != proto_tcp && q.proto != proto_udp)) {
        return {}; // echo and the like: the kernel's
    }
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
    const flow_key fk = ct.forward_key(*m.e);
    // The quote becomes what the client sent (client -> VIP); the error comes from the VIP.
    const net::nat_tuple inner{fk.src.data(), fk.dst.data(), fk.sport, fk.dport};
    uint16_t port = 0;
    const net::mac_addr* mac = nullptr;
    if (const drop d = next_hop(l, c, F::family, fk.src.data(), now, port, mac); d != drop::count) {
        return dropped(d);
    }
    if (port >= w.ports.size()) {
        return dropped(drop::l4_no_route);
    }
    const bool ok = F::family == 4
                        ? net::icmp4_error_translate(p.l3, icmp, icmp_len, q, fk.dst.data(),
                                                     fk.src.data(), inner, true)
                        : net::icmp6_error_translate(p.l3, icmp, icmp_len, q, fk.dst.data(),
                                                     fk.src.data(), inner, true);
    if (!ok) {
        return dropped(drop::l4_ttl_exceeded);
    }
    c.count(l4_event::icmp_translated);
    write_l2(p.m, p.fi->l2_len, w.ports[port], *mac,
             F::family == 4 ? ether_ipv4_be : ether_ipv6_be);
    return {l4_verdict::tx, port, drop::count};
}

template <typename F>
l4_decision handle(const worker_ctx& w, const l4_view* view, pkt& p, uint64_t now,
                   bool redirected) noexcept
{
    const uint8_t* dst = dst_of<F>(p);
    if (p.proto == proto_tcp || p.proto == proto_udp) {
        if (p.fi->l4_off == 0) {
            return {}; // a later fragment: no ports to match (see README: fragments)
        }
        const uint16_t sport = ld16(p.l4);
        const uint16_t dport = ld16(p.l4 + 2);
        if (view != nullptr) {
            if (const l4_service* s = view->find(F::family, dst, p.proto, dport); s != nullptr) {
                if (p.fi->fragment) {
                    return dropped(drop::l4_fragment);
                }
                return forward<F>(w, *view, *s, p, sport, dport, now);
            }
        }
        if (own_snat(w, F::family, dst)) {
            if (p.fi->fragment) {
                return dropped(drop::l4_fragment);
            }
            return reply<F>(w, p, sport, dport, now, redirected);
        }
        return {};
    }
    if ((p.proto == proto_icmp && F::family == 4) || (p.proto == proto_icmp6 && F::family == 6)) {
        if (own_snat(w, F::family, dst)) {
            return icmp_reply<F>(w, p, now, redirected);
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
    auto l = std::unique_ptr<l4_lcore>(new l4_lcore{std::move(*t4), std::move(*t6)});
    l->tsc_hz = tsc_hz;
    l->ct4.set_expiry_hook(&on_expiry<conntrack::entry_v4>, l.get());
    l->ct6.set_expiry_hook(&on_expiry<conntrack::entry_v6>, l.get());
    return l;
}

uint16_t l4_stage(const worker_ctx& w, const port_ctx& in, std::span<rte_mbuf* const> pkts,
                  const verdicts& v, std::span<l4_decision> out, bool redirected) noexcept
{
    (void)in;
    if (w.l4 == nullptr) {
        return 0;
    }
    const l4_view* view = w.l4->view != nullptr ? w.l4->view->load() : nullptr;
    const uint64_t now = rte_rdtsc();
    uint16_t taken = 0;
    for (size_t i = 0; i < pkts.size(); ++i) {
        out[i] = {};
        const net::frame_info& fi = v.info[i];
        if (v.next[i] != next_node::exception ||
            (fi.ether_type != net::ether_type_ipv4 && fi.ether_type != net::ether_type_ipv6)) {
            continue;
        }
        pkt p;
        p.m = pkts[i];
        p.frame = rte_pktmbuf_mtod(p.m, uint8_t*);
        p.l3 = p.frame + fi.l2_len;
        p.l4 = fi.l4_off != 0 ? p.frame + fi.l4_off : nullptr;
        p.fi = &fi;
        p.proto = fi.ip_proto;
        if (fi.ether_type == net::ether_type_ipv4) {
            p.family = 4;
            out[i] = handle<conntrack::v4>(w, view, p, now, redirected);
        } else {
            p.family = 6;
            out[i] = handle<conntrack::v6>(w, view, p, now, redirected);
        }
        taken += out[i].v != l4_verdict::pass ? 1 : 0;
    }
    return taken;
}

void l4_housekeeping(const worker_ctx& w, uint64_t now) noexcept
{
    if (w.l4 == nullptr) {
        return;
    }
    w.l4->ct4.age(now, age_budget);
    w.l4->ct6.age(now, age_budget);
}

} // namespace sluice::fastpath
