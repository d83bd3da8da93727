#include "sluice/net/neigh.hh"

#include <atomic>
#include <cstring>

#include <rte_hash_crc.h>

namespace sluice::net {
namespace {

std::atomic<uint64_t> g_neigh_generation{0};

/// Address equality without the defaulted comparison's libc memcmp (hot path).
bool same_ip(const ip_addr& a, const ip_addr& b) noexcept
{
    uint64_t x[2];
    uint64_t y[2];
    std::memcpy(x, a.bytes.data(), 16);
    std::memcpy(y, b.bytes.data(), 16);
    return a.family == b.family && x[0] == y[0] && x[1] == y[1];
}

uint32_t neigh_hash(uint16_t port, const ip_addr& ip) noexcept
{
    const uint32_t h = rte_hash_crc_4byte(uint32_t{port} | (uint32_t{ip.family} << 16), 0x5eed);
    return rte_hash_crc(ip.bytes.data(), ip.family == 4 ? 4 : 16, h);
}

} // namespace

std::unique_ptr<neigh_table> neigh_table::build(std::span<const neighbour> neighbours)
{
    auto t = std::make_unique<neigh_table>();
    t->_generation = g_neigh_generation.fetch_add(1, std::memory_order_relaxed) + 1;
    size_t cap = 16;
    while (cap < neighbours.size() * 2) {
        cap <<= 1;
    }
    t->_slots.resize(cap);
    for (const auto& n : neighbours) {
        size_t i = neigh_hash(n.port, n.ip) & (cap - 1);
        while (t->_slots[i].used && !(t->_slots[i].n.port == n.port && t->_slots[i].n.ip == n.ip)) {
            i = (i + 1) & (cap - 1);
        }
        if (!t->_slots[i].used) {
            t->_count++;
        }
        t->_slots[i] = slot{n, true};
    }
    return t;
}

const mac_addr* neigh_table::lookup(uint16_t port, const ip_addr& ip) const noexcept
{
    const size_t mask = _slots.size() - 1;
    for (size_t i = neigh_hash(port, ip) & mask, probes = 0; probes < _slots.size();
         i = (i + 1) & mask, ++probes) {
        const auto& s = _slots[i];
        if (!s.used) {
            return nullptr;
        }
        if (s.n.port == port && same_ip(s.n.ip, ip)) {
            return &s.n.mac;
        }
    }
    return nullptr;
}

} // namespace sluice::net
