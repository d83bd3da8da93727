#include "sluice/net/fib.hh"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>

#include <rte_errno.h>
#include <rte_fib.h>
#include <rte_fib6.h>

namespace sluice::net {
namespace {

std::atomic<uint32_t> g_fib_seq{0};

} // namespace

result<std::unique_ptr<fwd_table>> fwd_table::build(std::span<const route> routes, int socket_id)
{
    std::unique_ptr<fwd_table> t(new fwd_table());
    t->_nexthops.push_back(nexthop{}); // id 0: no route

    // Best (lowest metric) route per destination, and one next hop id per distinct hop.
    std::map<prefix, const route*> best;
    for (const auto& r : routes) {
        auto [it, fresh] = best.emplace(r.dst.network(), &r);
        if (!fresh && r.metric < it->second->metric) {
            it->second = &r;
        }
    }
    size_t n4 = 0;
    size_t n6 = 0;
    for (const auto& [p, r] : best) {
        (p.addr.is_v4() ? n4 : n6)++;
    }

    const uint32_t seq = g_fib_seq.fetch_add(1, std::memory_order_relaxed);
    t->_generation = uint64_t{seq} + 1;
    char name[32];
    std::snprintf(name, sizeof(name), "sl_fib4_%u", seq);
    rte_fib_conf c4{};
    c4.type = RTE_FIB_DIR24_8;
    c4.default_nh = 0;
    c4.max_routes = static_cast<int>(std::max<size_t>(1024, n4 * 2));
    c4.dir24_8.nh_sz = RTE_FIB_DIR24_8_2B;
    c4.dir24_8.num_tbl8 = 1u << 10;
    t->_fib4 = rte_fib_create(name, socket_id, &c4);
    if (t->_fib4 == nullptr) {
        return err(std::string("rte_fib_create: ") + rte_strerror(rte_errno));
    }
    std::snprintf(name, sizeof(name), "sl_fib6_%u", seq);
    rte_fib6_conf c6{};
    c6.type = RTE_FIB6_TRIE;
    c6.default_nh = 0;
    c6.max_routes = static_cast<int>(std::max<size_t>(1024, n6 * 2));
    c6.trie.nh_sz = RTE_FIB6_TRIE_2B;
    c6.trie.num_tbl8 = 1u << 12;
    t->_fib6 = rte_fib6_create(name, socket_id, &c6);
    if (t->_fib6 == nullptr) {
        return err(std::string("rte_fib6_create: ") + rte_strerror(rte_errno));
    }

    constexpr size_t max_nh = (1u << 15) - 1; // 2-byte next hops keep one bit for tbl8
    for (const auto& [p, r] : best) {
        if (t->_nexthops.size() >= max_nh) {
            return err("more than " + std::to_string(max_nh) + " routes");
        }
        const auto id = static_cast<uint64_t>(t->_nexthops.size());
        t->_nexthops.push_back(nexthop{r->port, r->kind, r->gateway});
        int rc = 0;
        if (p.addr.is_v4()) {
            rc = rte_fib_add(t->_fib4, p.addr.v4_host(), p.len, id);
        } else {
            rc = rte_fib6_add(t->_fib6, p.addr.bytes.data(), p.len, id);
        }
        if (rc < 0) {
            return err("cannot add route " + p.to_string() + ": " + rte_strerror(-rc));
        }
        t->_routes++;
    }

    return t;
}

fwd_table::~fwd_table()
{
    rte_fib_free(_fib4);
    rte_fib6_free(_fib6);
}

const nexthop* fwd_table::lookup4(uint32_t dst_host) const noexcept
{
    uint64_t nh = 0;
    rte_fib_lookup_bulk(_fib4, &dst_host, &nh, 1);
    return nh == 0 ? nullptr : &_nexthops[nh];
}

const nexthop* fwd_table::lookup(const ip_addr& dst) const noexcept
{
    if (dst.is_v4()) {
        return lookup4(dst.v4_host());
    }
    if (!dst.is_v6()) {
        return nullptr;
    }
    uint8_t ip[1][16];
    std::copy(dst.bytes.begin(), dst.bytes.end(), ip[0]);
    uint64_t nh = 0;
    rte_fib6_lookup_bulk(_fib6, ip, &nh, 1);
    return nh == 0 ? nullptr : &_nexthops[nh];
}

} // namespace sluice::net
