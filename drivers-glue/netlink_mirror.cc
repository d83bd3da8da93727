#include "sluice/glue/netlink_mirror.hh"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include <rte_cycles.h>

#include "sluice/glue/log.hh"

namespace sluice::glue {
namespace {

net::ip_addr addr_from(const rtattr* a, uint8_t family)
{
    net::ip_addr ip;
    const size_t want = family == AF_INET ? 4 : 16;
    if (RTA_PAYLOAD(a) < want) {
        return ip;
    }
    ip.family = family == AF_INET ? 4 : 6;
    std::memcpy(ip.bytes.data(), RTA_DATA(a), want);
    return ip;
}

uint32_t u32_from(const rtattr* a)
{
    uint32_t v = 0;
    if (RTA_PAYLOAD(a) >= sizeof(v)) {
        std::memcpy(&v, RTA_DATA(a), sizeof(v));
    }
    return v;
}

} // namespace

unsigned mirror_state::apply(std::span<const uint8_t> buf)
{
    unsigned changed = 0;
    int left = static_cast<int>(buf.size());
    for (auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
        changed += apply(h) ? 1 : 0;
    }
    return changed;
}

bool mirror_state::apply(const nlmsghdr* h)
{
    switch (h->nlmsg_type) {
    case RTM_NEWROUTE:
    case RTM_DELROUTE:
        return apply_route(h);
    case RTM_NEWNEIGH:
    case RTM_DELNEIGH:
        return apply_neigh(h);
    default:
        return false;
    }
}

bool mirror_state::apply_route(const nlmsghdr* h)
{
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) {
        return false;
    }
    const auto* rt = static_cast<const rtmsg*>(NLMSG_DATA(h));
    if (rt->rtm_family != AF_INET && rt->rtm_family != AF_INET6) {
        return false;
    }
    uint32_t table = rt->rtm_table;
    net::route r;
    r.dst.addr.family = rt->rtm_family == AF_INET ? 4 : 6;
    r.dst.len = rt->rtm_dst_len;
    uint32_t oif = 0;
    int len = static_cast<int>(RTM_PAYLOAD(h));
    for (auto* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        switch (a->rta_type) {
        case RTA_DST:
            r.dst.addr = addr_from(a, rt->rtm_family);
            break;
        case RTA_GATEWAY:
            r.gateway = addr_from(a, rt->rtm_family);
            break;
        case RTA_OIF:
            oif = u32_from(a);
            break;
        case RTA_PRIORITY:
            r.metric = u32_from(a);
            break;
        case RTA_TABLE:
            table = u32_from(a);
            break;
        case RTA_MULTIPATH: {
            // ECMP: the fast path mirrors the first next hop. TODO(sluice): all hops.
            if (RTA_PAYLOAD(a) >= sizeof(rtnexthop)) {
                const auto* nh = static_cast<const rtnexthop*>(RTA_DATA(a));
                oif = static_cast<uint32_t>(nh->rtnh_ifindex);
                // rtnh_len is untrusted: never walk past the attribute that holds it.
                const int avail = static_cast<int>(RTA_PAYLOAD(a));
                int nlen = std::min<int>(nh->rtnh_len, avail) - static_cast<int>(sizeof(rtnexthop));
                for (auto* na = RTNH_DATA(nh); RTA_OK(na, nlen); na = RTA_NEXT(na, nlen)) {
                    if (na->rta_type == RTA_GATEWAY) {
                        r.gateway = addr_from(na, rt->rtm_family);
                    }
                }
            }
            break;
        }
        default:
            break;
        }
    }
    if (!r.dst.addr.is_set()) {
        return false; // a malformed attribute
    }
    if (table != RT_TABLE_MAIN && table != RT_TABLE_LOCAL) {
        return false;
    }
    switch (rt->rtm_type) {
    case RTN_UNICAST:
        r.kind = net::route_kind::unicast;
        break;
    case RTN_LOCAL:
        r.kind = net::route_kind::local;
        break;
    case RTN_BLACKHOLE:
        r.kind = net::route_kind::blackhole;
        break;
    case RTN_UNREACHABLE:
    case RTN_PROHIBIT:
        r.kind = net::route_kind::unreachable;
        break;
    default:
        return false; // broadcast, multicast, anycast: the kernel's business
    }
    const auto port = _ports.find(oif);
    if (port == _ports.end()) {
        return false; // not an exception interface
    }
    r.port = port->second;
    r.dst = r.dst.network();
    const route_key key{static_cast<uint8_t>(table), r.dst, r.metric};
    if (h->nlmsg_type == RTM_DELROUTE) {
        const bool erased = _routes.erase(key) > 0;
        _routes_dirty = _routes_dirty || erased;
        return erased;
    }
    auto [it, fresh] = _routes.try_emplace(key, r);
    if (!fresh && it->second == r) {
        return false;
    }
    it->second = r;
    _routes_dirty = true;
    return true;
}

bool mirror_state::apply_neigh(const nlmsghdr* h)
{
    if (h->nlmsg_len < NLMSG_LENGTH(sizeof(ndmsg))) {
        return false;
    }
    const auto* nd = static_cast<const ndmsg*>(NLMSG_DATA(h));
    if (nd->ndm_family != AF_INET && nd->ndm_family != AF_INET6) {
        return false;
    }
    const auto port = _ports.find(static_cast<unsigned>(nd->ndm_ifindex));
    if (port == _ports.end()) {
        return false;
    }
    net::ip_addr ip;
    net::mac_addr mac;
    bool has_mac = false;
    int len = static_cast<int>(NLMSG_PAYLOAD(h, sizeof(ndmsg)));
    for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const uint8_t*>(nd) +
                                                   NLMSG_ALIGN(sizeof(ndmsg)));
         RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == NDA_DST) {
            ip = addr_from(a, nd->ndm_family);
        } else if (a->rta_type == NDA_LLADDR && RTA_PAYLOAD(a) == 6) {
            std::memcpy(mac.bytes.data(), RTA_DATA(a), 6);
            has_mac = true;
        }
    }
    if (!ip.is_set()) {
        return false;
    }
    const auto key = std::make_pair(port->second, ip);
    constexpr uint16_t usable =
        NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
    if (h->nlmsg_type == RTM_DELNEIGH || (nd->ndm_state & usable) == 0 || !has_mac) {
        const bool erased = _neigh.erase(key) > 0;
        _neigh_dirty = _neigh_dirty || erased;
        return erased;
    }
    auto [it, fresh] = _neigh.try_emplace(key, mac);
    if (!fresh && it->second == mac) {
        return false;
    }
    it->second = mac;
    _neigh_dirty = true;
    return true;
}

void mirror_state::clear()
{
    _routes_dirty = _routes_dirty || !_routes.empty();
    _neigh_dirty = _neigh_dirty || !_neigh.empty();
    _routes.clear();
    _neigh.clear();
}

std::vector<net::route> mirror_state::routes() const
{
    std::vector<net::route> out;
    out.reserve(_routes.size());
    for (const auto& [k, r] : _routes) {
        out.push_back(r);
    }
    return out;
}

std::vector<net::neighbour> mirror_state::neighbours() const
{
    std::vector<net::neighbour> out;
    out.reserve(_neigh.size());
    for (const auto& [k, mac] : _neigh) {
        out.push_back(net::neighbour{k.first, k.second, mac});
    }
    return out;
}

result<std::unique_ptr<netlink_mirror>>
netlink_mirror::create(std::map<unsigned, uint16_t> ports, rcu::published<net::fwd_table>& routes,
                       rcu::published<net::neigh_table>& neighbours, int socket_id)
{
    auto s = nl_socket::open(RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_NEIGH, true);
    if (!s) {
        return s.err();
    }
    return std::unique_ptr<netlink_mirror>(
        new netlink_mirror(std::move(*s), std::move(ports), routes, neighbours, socket_id));
}

result<void> netlink_mirror::sync()
{
    _state.clear();
    auto on_msg = [this](const nlmsghdr* h) { _state.apply(h); };
    rtmsg rt{};
    rt.rtm_family = AF_UNSPEC;
    nl_msg routes(RTM_GETROUTE, 0, &rt, sizeof(rt));
    if (auto r = _sock.dump(routes, on_msg); !r) {
        return err("route dump: " + r.err().message);
    }
    ndmsg nd{};
    nd.ndm_family = AF_UNSPEC;
    nl_msg neigh(RTM_GETNEIGH, 0, &nd, sizeof(nd));
    if (auto r = _sock.dump(neigh, on_msg); !r) {
        return err("neighbour dump: " + r.err().message);
    }
    _resync = false;
    return rebuild(true) ? ok() : err("cannot build the route table");
}

bool netlink_mirror::rebuild(bool force)
{
    bool published = false;
    uint64_t now = rte_rdtsc();
    if (force || (_state.neighbours_dirty() && _neigh_pacer.ready(now))) {
        const auto neigh = _state.neighbours();
        _neigh_out.publish(net::neigh_table::build(neigh));
        ++_neigh_tables;
        published = true;
        const uint64_t end = rte_rdtsc();
        _neigh_pacer.built(now, end);
        now = end;
        _state.clear_neighbours_dirty();
    }
    if (force || (_state.routes_dirty() && _route_pacer.ready(now))) {
        const auto routes = _state.routes();
        auto t = net::fwd_table::build(routes, _socket_id);
        _route_pacer.built(now, rte_rdtsc());
        _state.clear_routes_dirty();
        if (!t) {
            // Keep the previous table and try again on the next change.
            SLUICE_LOG(ERR, glue, "route table rebuild failed: %s", t.err().message.c_str());
            return published;
        }
        _routes_out.publish(std::move(*t));
        ++_route_tables;
        published = true;
        SLUICE_LOG(DEBUG, glue, "route table %lu: %zu routes",
                   static_cast<unsigned long>(_route_tables), routes.size());
    }
    return published;
}

uint64_t netlink_mirror::publish_due() const noexcept
{
    uint64_t due = UINT64_MAX;
    if (_state.neighbours_dirty()) {
        due = std::min(due, _neigh_pacer.next());
    }
    if (_state.routes_dirty()) {
        due = std::min(due, _route_pacer.next());
    }
    return due;
}

bool netlink_mirror::poll()
{
    _routes_out.reclaim();
    _neigh_out.reclaim();
    alignas(nlmsghdr) static thread_local uint8_t buf[1 << 16];
    // Bounded: at most 64 reads per poll so the slow path keeps moving packets; backlog()
    // tells the caller to come back (an edge-triggered epoll would not say so again).
    _backlog = true;
    for (int i = 0; i < 64; ++i) {
        const long n = _sock.receive(buf);
        if (n == 0) {
            _backlog = false;
            break;
        }
        if (n < 0) {
            if (errno == ENOBUFS) {
                // The kernel dropped events: our view is stale; start over.
                SLUICE_LOG(WARNING, glue, "netlink overrun: resynchronising routes and neighbours");
                _resync = true;
                continue;
            }
            _backlog = false;
            break;
        }
        _state.apply(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
    }
    if (_resync) {
        if (auto r = sync(); !r) {
            SLUICE_LOG(ERR, glue, "netlink resync failed: %s", r.err().message.c_str());
        }
        return true;
    }
    if (!_state.dirty()) {
        return false;
    }
    return rebuild(false);
}

} // namespace sluice::glue
