#include "sluice/glue/kernel.hh"

#include <fcntl.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <linux/if_addr.h>
#include <linux/neighbour.h>

#include "sluice/glue/netlink.hh"

namespace sluice::glue {

result<nl_socket> nl_socket::open(uint32_t groups, bool nonblocking)
{
    const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0),
                            NETLINK_ROUTE);
    if (fd < 0) {
        return err(std::string("netlink socket: ") + std::strerror(errno));
    }
    sockaddr_nl sa{};
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = groups;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
        const int e = errno;
        ::close(fd);
        return err(std::string("netlink bind: ") + std::strerror(e));
    }
    int rcvbuf = 4 << 20; // survive bursts of route/neighbour events
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    return nl_socket(fd);
}

nl_socket::~nl_socket()
{
    if (_fd >= 0) {
        ::close(_fd);
    }
}

long nl_socket::receive(std::span<uint8_t> buf)
{
    const ssize_t n = ::recv(_fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    return n;
}

result<void> nl_socket::request(nl_msg& m)
{
    m.hdr()->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    m.hdr()->nlmsg_seq = ++_seq;
    const auto b = m.bytes();
    if (::send(_fd, b.data(), b.size(), 0) < 0) {
        return err(std::string("netlink send: ") + std::strerror(errno));
    }
    alignas(nlmsghdr) uint8_t buf[8192];
    for (;;) {
        const ssize_t n = ::recv(_fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return err(std::string("netlink recv: ") + std::strerror(errno));
        }
        int left = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != _seq || h->nlmsg_type != NLMSG_ERROR) {
                continue;
            }
            const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
            if (e->error != 0) {
                return err(std::strerror(-e->error));
            }
            return ok();
        }
    }
}

result<void> nl_socket::dump(nl_msg& m, const std::function<void(const nlmsghdr*)>& fn)
{
    m.hdr()->nlmsg_flags |= NLM_F_REQUEST | NLM_F_DUMP;
    m.hdr()->nlmsg_seq = ++_seq;
    const auto b = m.bytes();
    if (::send(_fd, b.data(), b.size(), 0) < 0) {
        return err(std::string("netlink send: ") + std::strerror(errno));
    }
    alignas(nlmsghdr) static thread_local uint8_t buf[1 << 16];
    for (;;) {
        const ssize_t n = ::recv(_fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue; // nonblocking sockets spin briefly until the dump arrives
            }
            return err(std::string("netlink recv: ") + std::strerror(errno));
        }
        int left = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, left);
             h = NLMSG_NEXT(h, left)) {
            if (h->nlmsg_seq != _seq) {
                fn(h); // a multicast event interleaved with the dump: still news
                continue;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                return ok();
            }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
                return err(std::string("netlink dump: ") + std::strerror(-e->error));
            }
            fn(h);
        }
    }
}

result<unsigned> ifindex(const std::string& name)
{
    const unsigned i = if_nametoindex(name.c_str());
    if (i == 0) {
        return err("no kernel interface named \"" + name + "\"");
    }
    return i;
}

result<void> skip_ipv6_dad(const std::string& name)
{
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
        return err("interface name \"" + name + "\" cannot name a sysctl");
    }
    const std::string path = "/proc/sys/net/ipv6/conf/" + name + "/accept_dad";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return ok(); // no IPv6 on this interface (or in this kernel): nothing to detect
        }
        return err("interface " + name + ": cannot turn IPv6 DAD off: " + path + ": " +
                   std::strerror(errno));
    }
    const ssize_t n = ::write(fd, "0\n", 2);
    const int e = errno;
    ::close(fd);
    if (n != 2) {
        return err("interface " + name + ": cannot turn IPv6 DAD off: " + path + ": " +
                   std::strerror(e));
    }
    return ok();
}

result<void> configure_interface(const std::string& name, uint16_t mtu,
                                 const std::vector<net::prefix>& addresses)
{
    auto idx = ifindex(name);
    if (!idx) {
        return idx.err();
    }
    auto sock = nl_socket::open(0, false);
    if (!sock) {
        return sock.err();
    }
    ifinfomsg ifi{};
    ifi.ifi_family = AF_UNSPEC;
    ifi.ifi_index = static_cast<int>(*idx);
    ifi.ifi_flags = IFF_UP;
    ifi.ifi_change = IFF_UP;
    nl_msg link(RTM_NEWLINK, 0, &ifi, sizeof(ifi));
    link.attr_u32(IFLA_MTU, mtu);
    if (auto r = sock->request(link); !r) {
        return err("interface " + name + ": cannot set MTU " + std::to_string(mtu) +
                   " and bring it up: " + r.err().message);
    }
    for (const auto& a : addresses) {
        ifaddrmsg ifa{};
        ifa.ifa_family = a.addr.is_v4() ? AF_INET : AF_INET6;
        ifa.ifa_prefixlen = a.len;
        ifa.ifa_scope = RT_SCOPE_UNIVERSE;
        ifa.ifa_index = *idx;
        nl_msg m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof(ifa));
        const size_t alen = a.addr.is_v4() ? 4 : 16;
        m.attr(IFA_LOCAL, a.addr.bytes.data(), alen);
        m.attr(IFA_ADDRESS, a.addr.bytes.data(), alen);
        if (a.addr.is_v6()) {
            m.attr_u32(IFA_FLAGS, IFA_F_NODAD); // the box owns it; no need to wait for DAD
        }
        if (auto r = sock->request(m); !r) {
            return err("interface " + name + ": cannot add address " + a.to_string() + ": " +
                       r.err().message);
        }
    }
    return ok();
}

result<void> add_snat_addresses(const std::string& name, const std::vector<net::ip_addr>& snat)
{
    if (snat.empty()) {
        return ok();
    }
    auto idx = ifindex(name);
    if (!idx) {
        return idx.err();
    }
    auto sock = nl_socket::open(0, false);
    if (!sock) {
        return sock.err();
    }
    // Host addresses rather than proxy ARP/NDP entries: proxy entries are answered only with
    // forwarding on (and IPv6 proxy_ndp), which would turn the appliance's kernel into a
    // router; and a kernel that owns the address also answers the backends' unicast
    // reachability probes (NUD) and pings to it. What must not follow from owning them:
    // - the kernel choosing one as a source: IPv4 selects sources among addresses of scope
    //   link or wider (inet_select_addr), so scope host keeps them out, even on a port with no
    //   other IPv4 address; IPv6 avoids deprecated addresses (RFC 6724 rule 3), and a preferred
    //   lifetime of 0 deprecates them;
    // - routes: noprefixroute (IPv6 would add a /128 route, which the netlink mirror would
    //   copy into the fast path's table); only the local-table route that makes them local;
    // - the kernel answering their TCP/UDP: the workers take all of it before the exception
    //   path (l4_stage.cc, own_snat), so only ICMP echo, ARP and ND reach the kernel.
    for (const auto& a : snat) {
        ifaddrmsg ifa{};
        ifa.ifa_family = a.is_v4() ? AF_INET : AF_INET6;
        ifa.ifa_prefixlen = static_cast<uint8_t>(a.bits());
        ifa.ifa_scope = a.is_v4() ? RT_SCOPE_HOST : RT_SCOPE_UNIVERSE;
        ifa.ifa_index = *idx;
        nl_msg m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof(ifa));
        const size_t alen = a.is_v4() ? 4 : 16;
        m.attr(IFA_LOCAL, a.bytes.data(), alen);
        m.attr(IFA_ADDRESS, a.bytes.data(), alen);
        uint32_t flags = IFA_F_NOPREFIXROUTE;
        if (a.is_v6()) {
            flags |= IFA_F_NODAD;
            ifa_cacheinfo ci{};
            ci.ifa_prefered = 0;        // deprecated at once: never a source
            ci.ifa_valid = 0xffffffffU; // INFINITY_LIFE_TIME: never expires
            m.attr(IFA_CACHEINFO, &ci, sizeof(ci));
        }
        m.attr_u32(IFA_FLAGS, flags);
        if (auto r = sock->request(m); !r) {
            return err("interface " + name + ": cannot add SNAT address " + a.to_string() + ": " +
                       r.err().message);
        }
    }
    return ok();
}

result<void> install_route(const config::route_conf& r, const std::string& ifname)
{
    auto idx = ifindex(ifname);
    if (!idx) {
        return idx.err();
    }
    auto sock = nl_socket::open(0, false);
    if (!sock) {
        return sock.err();
    }
    rtmsg rt{};
    rt.rtm_family = r.prefix.addr.is_v4() ? AF_INET : AF_INET6;
    rt.rtm_dst_len = r.prefix.len;
    rt.rtm_table = RT_TABLE_MAIN;
    rt.rtm_protocol = RTPROT_STATIC;
    rt.rtm_scope = r.via.is_set() ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rt.rtm_type = RTN_UNICAST;
    nl_msg m(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof(rt));
    const size_t alen = r.prefix.addr.is_v4() ? 4 : 16;
    if (r.prefix.len > 0) {
        m.attr(RTA_DST, r.prefix.addr.bytes.data(), alen);
    }
    if (r.via.is_set()) {
        m.attr(RTA_GATEWAY, r.via.bytes.data(), alen);
    }
    m.attr_u32(RTA_OIF, *idx);
    if (auto res = sock->request(m); !res) {
        return err("route " + r.prefix.to_string() +
                   (r.via.is_set() ? " via " + r.via.to_string() : std::string()) + " dev " +
                   ifname + ": " + res.err().message);
    }
    return ok();
}

result<void> set_local_address(const net::ip_addr& ip, bool present)
{
    auto lo = ifindex("lo");
    if (!lo) {
        return lo.err();
    }
    auto sock = nl_socket::open(0, false);
    if (!sock) {
        return sock.err();
    }
    rtmsg rt{};
    rt.rtm_family = ip.is_v4() ? AF_INET : AF_INET6;
    rt.rtm_dst_len = static_cast<uint8_t>(ip.bits());
    rt.rtm_table = RT_TABLE_LOCAL;
    rt.rtm_protocol = RTPROT_STATIC;
    rt.rtm_scope = RT_SCOPE_HOST;
    rt.rtm_type = RTN_LOCAL;
    nl_msg m(present ? RTM_NEWROUTE : RTM_DELROUTE, present ? NLM_F_CREATE | NLM_F_REPLACE : 0, &rt,
             sizeof(rt));
    m.attr(RTA_DST, ip.bytes.data(), ip.is_v4() ? 4 : 16);
    m.attr_u32(RTA_OIF, *lo);
    if (auto res = sock->request(m); !res) {
        return err(std::string(present ? "add" : "delete") + " local route " + ip.to_string() +
                   ": " + res.err().message);
    }
    return ok();
}

namespace {

/// The NUD state of neighbour `ip` on `ifindex`, or -1 when the kernel has none (a dump of
/// the family's table, filtered here: control path, rare).
int neighbour_state(nl_socket& sock, unsigned ifindex, const net::ip_addr& ip)
{
    ndmsg q{};
    q.ndm_family = ip.is_v4() ? AF_INET : AF_INET6;
    nl_msg m(RTM_GETNEIGH, 0, &q, sizeof(q));
    const size_t alen = ip.is_v4() ? 4 : 16;
    int state = -1;
    (void)sock.dump(m, [&](const nlmsghdr* h) {
        if (h->nlmsg_type != RTM_NEWNEIGH) {
            return;
        }
        const auto* nd = static_cast<const ndmsg*>(NLMSG_DATA(h));
        if (nd->ndm_ifindex != static_cast<int>(ifindex)) {
            return;
        }
        int len = static_cast<int>(NLMSG_PAYLOAD(h, sizeof(ndmsg)));
        for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const uint8_t*>(nd) +
                                                       NLMSG_ALIGN(sizeof(ndmsg)));
             RTA_OK(a, len); a = RTA_NEXT(a, len)) {
            if (a->rta_type == NDA_DST && RTA_PAYLOAD(a) == alen &&
                std::memcmp(RTA_DATA(a), ip.bytes.data(), alen) == 0) {
                state = nd->ndm_state;
            }
        }
    });
    return state;
}

result<void> neigh_use(nl_socket& sock, unsigned ifindex, const net::ip_addr& ip, uint16_t flags)
{
    ndmsg nd{};
    nd.ndm_family = ip.is_v4() ? AF_INET : AF_INET6;
    nd.ndm_ifindex = static_cast<int>(ifindex);
    nd.ndm_state = NUD_NONE;
    nd.ndm_flags = NTF_USE;
    nl_msg m(RTM_NEWNEIGH, flags, &nd, sizeof(nd));
    m.attr(NDA_DST, ip.bytes.data(), ip.is_v4() ? 4 : 16);
    return sock.request(m);
}

} // namespace

result<void> resolve_neighbour(unsigned ifindex, const net::ip_addr& ip)
{
    auto sock = nl_socket::open(0, false);
    if (!sock) {
        return sock.err();
    }
    // Create-only first: on this kernel NTF_USE on an existing entry can reset it, a static
    // (permanent) one included. An entry that exists is probed again only when it FAILED (or
    // is NONE): otherwise it is valid, or being resolved already.
    auto r = neigh_use(*sock, ifindex, ip, NLM_F_CREATE | NLM_F_EXCL);
    if (r.ok()) {
        return ok();
    }
    if (r.err().message.find("exists") == std::string::npos) {
        return err("resolve neighbour " + ip.to_string() + ": " + r.err().message);
    }
    const int state = neighbour_state(*sock, ifindex, ip);
    if (state >= 0 && (state & (NUD_FAILED | NUD_NONE)) == state) {
        if (auto u = neigh_use(*sock, ifindex, ip, NLM_F_CREATE); !u) {
            return err("resolve neighbour " + ip.to_string() + ": " + u.err().message);
        }
    }
    return ok();
}

} // namespace sluice::glue
