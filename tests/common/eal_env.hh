#pragma once
// EAL set-up for the fast and pkt tiers: --no-huge, no PCI, no shared config, so the
// tests need neither hugepages nor root, and never touch a NIC (STYLE T2).

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

namespace sluice::test {

/// Initialises the EAL once for the whole test program (from main).
inline bool init_eal(const char* prog)
{
    std::vector<std::string> args = {
        prog, "--no-huge", "--no-pci",       "--no-shconf", "-m",         "256",
        "-l", "0",         "--no-telemetry", "--log-level", "lib.*:error"};
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    return rte_eal_init(static_cast<int>(argv.size()), argv.data()) >= 0;
}

/// A port whose RX reads `rx` and whose TX writes `tx`: tests put frames in and read
/// frames out of real DPDK rings through the real ethdev API.
struct ring_port {
    rte_ring* rx = nullptr;
    rte_ring* tx = nullptr;
    uint16_t port = 0;

    bool create(const std::string& name)
    {
        rx = rte_ring_create((name + "_rx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        tx = rte_ring_create((name + "_tx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (rx == nullptr || tx == nullptr) {
            return false;
        }
        const int p = rte_eth_from_rings(name.c_str(), &rx, 1, &tx, 1, 0);
        if (p < 0) {
            return false;
        }
        port = static_cast<uint16_t>(p);
        return true;
    }
};

/// Copies bytes into a new mbuf from `mp`.
inline rte_mbuf* to_mbuf(rte_mempool* mp, const std::vector<uint8_t>& bytes)
{
    rte_mbuf* m = rte_pktmbuf_alloc(mp);
    if (m == nullptr) {
        return nullptr;
    }
    char* d = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
    if (d == nullptr && !bytes.empty()) {
        rte_pktmbuf_free(m);
        return nullptr;
    }
    if (!bytes.empty()) {
        std::memcpy(d, bytes.data(), bytes.size());
    }
    return m;
}

inline std::vector<uint8_t> from_mbuf(const rte_mbuf* m)
{
    std::vector<uint8_t> out(rte_pktmbuf_pkt_len(m));
    const void* p = rte_pktmbuf_read(m, 0, static_cast<uint32_t>(out.size()), out.data());
    if (p != nullptr && p != out.data()) {
        std::memcpy(out.data(), p, out.size());
    }
    return out;
}

} // namespace sluice::test
