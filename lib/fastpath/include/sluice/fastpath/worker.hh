#pragma once
/// @file
/// The worker lcore loop and the slow-path lcore's exception I/O.
///
/// Packet flow of this stage of the project (DESIGN.md §1):
///   NIC RX queue q --worker q--> classify --> punt ring (port, q) --slow path--> exception TX
///   exception RX --slow path--> inject ring (port, w) --worker w--> NIC TX queue w
/// The slow path owns the exception port (TAP PMD writes are syscalls; workers make none),
/// and each worker owns one RX and one TX queue of every NIC port, so nothing on the data
/// path is shared between lcores but single-producer/single-consumer rings.

#include <array>
#include <atomic>
#include <cstdint>
#include <span>

#include "sluice/stats/counters.hh"

struct rte_ring;

namespace sluice::rcu {
class qsbr_domain;
}

namespace sluice::fastpath {

inline constexpr unsigned max_workers = 64;
inline constexpr uint16_t burst_size = 32;

/// One NIC port and its exception port, as the lcores see it. Built at bring-up, then
/// read-only. // fastpath: ro, bring-up: rw
struct port_ctx {
    uint16_t nic = 0;                   ///< DPDK port id of the NIC (or vdev)
    uint16_t exc = 0;                   ///< DPDK port id of the exception port (TAP / virtio-user)
    uint16_t index = 0;                 ///< position in the config; selects counters
    uint16_t inject_worker = 0;         ///< the worker that transmits kernel frames
    rte_ring* punt[max_workers] = {};   ///< worker w -> slow path: frames for the kernel
    rte_ring* inject[max_workers] = {}; ///< slow path -> worker w: frames for the NIC
    std::array<uint8_t, 6> mac{};       ///< the port's MAC: source of frames L4 sends
    uint16_t mtu = 1500;
    uint8_t snat4_count = 0; ///< full-NAT source addresses of the port, per family
    uint8_t snat6_count = 0;
    std::array<std::array<uint8_t, 4>, 8> snat4{};
    std::array<std::array<uint8_t, 16>, 8> snat6{};
};

struct l4_lcore;

struct worker_ctx {
    uint16_t queue = 0;              ///< RX/TX queue of every port; also the worker's index
    unsigned reader_id = 0;          ///< QSBR reader id
    std::span<const port_ctx> ports; ///< every port, by index
    l4_lcore* l4 = nullptr;          ///< this worker's L4 state; null: no L4 fast path
    stats::lcore_counters* counters = nullptr;
    rcu::qsbr_domain* qsbr = nullptr;
    const std::atomic<bool>* stop = nullptr;
    uint32_t idle_sleep_us = 0; ///< 0: never sleep
};

struct slowpath_ctx {
    std::span<const port_ctx> ports;
    unsigned workers = 1;
    stats::lcore_counters* counters = nullptr;
};

/// Runs a worker until *stop is true. Per packet: no allocation, lock, syscall or log.
void worker_loop(const worker_ctx& w) noexcept;

/// One pass of worker q over its queues; returns the packets it handled. Used by
/// worker_loop and by tests that step the pipeline.
unsigned worker_poll(const worker_ctx& w) noexcept;

/// Finishes the burst the pipeline holds, if any (worker_poll finishes it by itself on the
/// next poll that receives nothing; worker_loop calls this before it returns).
void worker_flush(const worker_ctx& w) noexcept;

/// One pass of the slow path's exception I/O; returns the packets it moved.
unsigned slowpath_poll(const slowpath_ctx& s) noexcept;

} // namespace sluice::fastpath
