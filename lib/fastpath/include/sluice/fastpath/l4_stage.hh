#pragma once
/// @file
/// The L4 stage of a worker lcore (DESIGN.md §1): after classify, packets to an L4 listener
/// (VIP:port:proto of the published l4_view) and replies to the SNAT addresses are handled
/// here, run to completion: conntrack lookup (or, for a new flow, locality level -> Maglev
/// over the level's healthy endpoints -> SNAT port), rewrite (full-NAT with incremental
/// checksums, or IPIP/GUE encapsulation), next hop from the mirrored FIB and neighbour table,
/// and a verdict to transmit on an egress port. Everything else keeps its exception verdict.
///
/// Per-lcore state (`l4_lcore`) is owned by its worker: conntrack tables, the SNAT port
/// cursor, rings out of the lcore. No lock, allocation, syscall or log per packet (STYLE H4).
///
/// maxConnections: each lcore admits a cluster's share (maxConnections / workers, rounded up)
/// of open TCP connections, counted per endpoint from SYN to close (RST, both FINs) or expiry;
/// a SYN over the share is answered with a RST from the VIP and counted (l4 event overflow).
///
/// Fragments: the first fragment of a datagram (it has the ports) goes through the stage like
/// any packet, and how it was forwarded is remembered per (source, destination, protocol, ID)
/// for 5 s; later fragments follow it (full-NAT: addresses rewritten, the L4 checksum in the
/// first fragment already covers the datagram; encap: same endpoint). A later fragment that
/// arrives before its first, or on another lcore, is dropped and counted (l4_fragment).
///
/// SNAT ports and lcores: worker w of W owns SNAT ports [1024 + w*S, 1024 + (w+1)*S) with
/// S = port_span on every SNAT address, so the owner of a reply is known from its destination
/// port alone. S is 64512 / W, or up to 1/16 less with `l4.flow_steering = "auto"` (even when
/// the NIC then refuses the rules) so that the ranges split into few (value, mask) blocks
/// (glue::snat_port_span); ports above W*S are never used.
/// A reply that RSS delivered to another lcore is handed to its owner through a software ring
/// (the vdev path, and the safety net on NICs, where rte_flow rules on the ranges steer
/// replies to their owner's queue: glue/flow_steering.hh).

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "sluice/conntrack/conntrack.hh"
#include "sluice/fastpath/l4_view.hh"
#include "sluice/net/addr.hh"
#include "sluice/stats/counters.hh"

struct rte_mbuf;
struct rte_ring;

namespace sluice::net {
class fwd_table;
class neigh_table;
} // namespace sluice::net
namespace sluice::rcu {
template <typename T>
class published;
}

namespace sluice::fastpath {

struct port_ctx;
struct worker_ctx;
struct verdicts;

inline constexpr unsigned max_snat = 8;
inline constexpr uint16_t snat_port_base = 1024;

/// A passive health signal from a worker (ring element; 16 bytes).
struct health_signal {
    uint64_t endpoint_id = 0;
    uint8_t outcome = 0; ///< 0 success, 1 connect failure (RST to SYN, or no SYN-ACK in time)
    uint8_t pad[7] = {};
};
inline constexpr uint8_t signal_success = 0;
inline constexpr uint8_t signal_connect_failure = 1;

/// A neighbour resolution request (ring element; 20 bytes).
struct resolve_request {
    uint16_t port = 0; ///< port index
    uint8_t family = 0;
    uint8_t pad = 0;
    std::array<uint8_t, 16> addr{};
};

/// Settings every worker shares (from the appliance config). // fastpath: ro
struct l4_settings {
    uint16_t gue_port = 0x0000; ///< network order
    uint8_t encap_ttl = 64;
};

/// How the datagram of a first fragment was forwarded, so that its later fragments (which
/// carry no ports) follow it: looked up by (source, destination, protocol, IP ID).
struct frag_entry {
    std::array<uint8_t, 16> src{}; ///< the datagram's original addresses
    std::array<uint8_t, 16> dst{};
    std::array<uint8_t, 16> new_src{}; ///< full-NAT: the rewritten addresses
    std::array<uint8_t, 16> new_dst{}; ///< full-NAT: rewritten; encap: the endpoint
    uint64_t hash = 0;                 ///< encap: the flow hash (outer entropy)
    uint64_t expires = 0;              ///< TSC
    uint32_t id = 0;                   ///< IPv4 ID or IPv6 fragment identification
    uint8_t proto = 0;
    uint8_t family = 0;
    uint8_t kind = 0; ///< 0 empty, 1 full-NAT, 2 encapsulated
    forwarding fwd = forwarding::fullnat;
    uint8_t ep_family = 0;
};

/// A remembered next hop: destination -> egress port and MAC, valid for one pair of route and
/// neighbour tables (their generations).
struct alignas(32) nexthop_entry {
    /// The fast path's view of an IPv4 entry (its first 32 bytes, one cache line), valid
    /// while `key4` is its destination (4 bytes as loaded) | 1 << 32 (0: none) and `epoch` is
    /// l4_lcore::hop_epoch: `l2` the frame's destination MAC then the egress port's own,
    /// `mtu` the egress port's, `port` (also next_hop()'s) checked < the worker's ports.
    uint64_t key4 = 0;
    uint32_t epoch = 0;
    uint16_t mtu = 0;
    uint16_t port = 0;
    std::array<uint8_t, 12> l2{};
    std::array<uint8_t, 16> dst{};
    uint64_t fib_generation = 0;
    uint64_t neigh_generation = 0;
    net::mac_addr mac;
    uint8_t family = 0;
};
static_assert(offsetof(nexthop_entry, l2) + 12 <= 32 && sizeof(nexthop_entry) % 32 == 0,
              "the fast path's view of a next hop is never split across cache lines");

inline constexpr uint16_t fast_burst_max = 32; ///< = burst_size (worker.hh)

/// A burst between the fast path's first pass (header checks, hashes, bucket prefetches) and
/// the rest. Workers pipeline bursts: the first pass of a new burst runs before the rest of
/// the previous one, so the previous burst's buckets load while its successor is received (a
/// PMD's receive loop waits on memory too, and leaves the miss slots idle). Holds no pointer
/// into RCU-published data (it may cross a quiescent state), only the mbufs and raw keys.
struct fast_burst {
    rte_mbuf* pkts[fast_burst_max];
    uint16_t n = 0;        ///< packets
    uint16_t in_port = 0;  ///< index of the port they arrived on
    uint8_t k = 0;         ///< candidates for the fast path (first pass)
    int tx_port = -1;      ///< after the rest: every packet leaves by this port (-1: not so)
    uint64_t rx_bytes = 0; ///< the burst's length as received (summed by l4_fast_begin)
    uint8_t at[fast_burst_max];
    uint8_t* ip[fast_burst_max];
    uint64_t addrs[fast_burst_max];
    uint64_t ports[fast_burst_max];
    uint64_t hash[fast_burst_max];
};

/// One worker's L4 state. Owned and written only by its lcore once launched.
struct l4_lcore {
    conntrack::table_v4 ct4;
    conntrack::table_v6 ct6;
    uint16_t worker = 0;        ///< this worker's index
    uint16_t workers = 1;       ///< number of workers (SNAT port ranges)
    uint16_t port_span = 64512; ///< SNAT ports per worker (glue::snat_port_span)
    uint16_t port_cursor = 0;   ///< next SNAT port offset to try
    const rcu::published<l4_view>* view = nullptr;
    const rcu::published<net::fwd_table>* fib = nullptr;
    const rcu::published<net::neigh_table>* neigh = nullptr;
    const l4_settings* settings = nullptr;
    /// The tables loaded for the burst being processed (set by l4_stage, never kept across
    /// bursts: the worker passes a quiescent state between them).
    const net::fwd_table* burst_fib = nullptr;
    const net::neigh_table* burst_neigh = nullptr;
    uint64_t burst_fib_gen = UINT64_MAX; ///< their generations (fast path; MAX: no table)
    uint64_t burst_neigh_gen = UINT64_MAX;
    /// What the fast path caches per flow entry and in `nexthops` is valid while its epoch is
    /// this one: next hops (toward the client in the entry: replies to many clients would miss
    /// the `nexthops` cache) and that the flow's listener exists. It moves on each time the
    /// route table, the neighbour table or the view changes (the generations last seen below).
    uint32_t hop_epoch = 1;
    uint64_t hop_fib_gen = 0;
    uint64_t hop_neigh_gen = 0;
    uint64_t hop_view_gen = 0;
    /// Listeners the fast path found in the published view (direct-mapped by VIP, port and
    /// protocol; valid for one view generation): an established flow's packet is only taken
    /// while its listener exists, as the full stage requires. Each flow asks once per epoch
    /// and direction (entry_v4::fwd_epoch, client_hop_epoch), flows of one VIP share an answer.
    struct listener_memo {
        uint64_t key = 0; ///< VIP | port << 32 | protocol << 48 | 1 << 56 (0: empty)
        uint64_t generation = 0;
    };
    std::array<listener_memo, 64> listeners{};
    /// ICMP errors the lcore may still send now (path MTU answers; refilled with time).
    uint32_t icmp_tokens = 0;
    uint64_t icmp_refilled = 0;                ///< TSC of the last refill
    stats::lcore_counters* counters = nullptr; ///< the worker's (for the conntrack expiry hook)
    rte_ring* signals = nullptr;               ///< to the control thread (SP/SC)
    rte_ring* resolve = nullptr;               ///< to the control thread (SP/SC)
    std::array<rte_ring*, 64> redirect_out{};  ///< [w]: replies owned by worker w (SP/SC)
    std::array<rte_ring*, 64> redirect_in{};   ///< [w]: replies from worker w (SP/SC)
    uint64_t tsc_hz = 0;
    uint64_t last_age = 0; ///< TSC of the last aging batch
    /// Off: every packet takes classify and the full stage (tests compare the two paths).
    bool fast_path = true;
    /// The worker's burst pipeline (see fast_burst): `bursts[pending]` waits for its rest.
    std::array<fast_burst, 2> bursts{};
    int pending = -1;        ///< index of the waiting burst, -1: none
    uint64_t fast_taken = 0; ///< packets l4_fast_path decided (forwarded, answered or dropped)
    /// Endpoints with a failure reported and no success since (direct-mapped by id): a
    /// success is signalled only for them, so a healthy flood of SYN-ACKs costs no ring
    /// traffic.
    std::array<uint64_t, 1024> failed{};
    /// Recently requested neighbours (direct-mapped): at most one request per 100 ms each.
    std::array<std::pair<uint64_t, uint64_t>, 256> resolved{};
    /// Open TCP connections per endpoint (direct-mapped by endpoint id; ids that share a slot
    /// share a count): a cluster's count is the sum over its endpoints, for maxConnections.
    /// Shared: the control thread reads it through l4_active.hh (relaxed loads, STYLE P5).
    std::array<uint32_t, 4096> active{};
    /// Next hops of recent destinations (direct-mapped): most packets skip the route and
    /// neighbour lookups. Entries die with the tables they were read from.
    std::array<nexthop_entry, 512> nexthops{};
    /// Datagrams whose first fragment passed (direct-mapped; entries live 5 s).
    std::array<frag_entry, 1024> frags{};

    /// Builds the conntrack tables (control side). Timeouts in seconds.
    static result<std::unique_ptr<l4_lcore>>
    create(uint32_t capacity, const conntrack::timeout_seconds& to, uint64_t tsc_hz, uint64_t seed);
};

/// Per-packet decision of the L4 stage.
enum class l4_verdict : uint8_t {
    pass,     ///< not L4's: keep the classify verdict (exception)
    tx,       ///< transmit on `port`
    drop,     ///< free, count `reason`
    redirect, ///< to worker `port` (the flow's owner)
};

struct l4_decision {
    l4_verdict v = l4_verdict::pass;
    uint16_t port = 0; ///< tx: port index; redirect: worker index
    stats::drop reason = stats::drop::count;
};

/// Runs the L4 stage over `pkts` received on port `in` (or redirected from another worker
/// when `redirected`). Fills `out[i]` for each packet; packets are rewritten in place.
/// Returns the number of packets L4 took (verdict other than pass).
uint16_t l4_stage(const worker_ctx& w, const port_ctx& in, std::span<rte_mbuf* const> pkts,
                  const verdicts& v, std::span<l4_decision> out, bool redirected) noexcept;

/// The established-flow fast path, run on every burst before classify: finishes the packets
/// of established full-NAT IPv4 flows, in either direction, with one fused pass of header
/// checks and raw-word keys instead of parse_frame, the listener lookup and flow_key building,
/// then the same conntrack update, next hop, rewrite and L2 as l4_stage (same decisions, same
/// counters). It takes: IPv4 without options or fragmentation, TTL above 1, UDP or TCP without
/// SYN, found in this lcore's IPv4 table as a two-key flow (a reply that still waits for its
/// SYN-ACK excepted). Fills `out[i]` for the packets it took and returns the bit mask (bit i:
/// packet i) of the others, which go through classify_stage and l4_stage as before.
/// A client's packet is taken only while its listener exists (checked once per flow and
/// direction per hop epoch), as in the full stage: a VIP removed from the config stops at once.
/// One difference in order: the fast path decides its packets before the full stage runs the
/// burst's others, so a slow packet that replaces a flow (a SYN reusing a closed 5-tuple) does
/// not affect a later packet of that 5-tuple in the same burst (it would need a round trip).
/// l4_fast_path is l4_fast_begin then l4_fast_finish; `b.pkts` and `b.n` set by the caller.
/// l4_fast_finish leaves `out` unwritten when it sets `b.tx_port` (every packet taken and
/// transmitted by that port: the caller sends the burst as it is); l4_fast_path fills it.
uint32_t l4_fast_path(const worker_ctx& w, uint16_t in_port, std::span<rte_mbuf* const> pkts,
                      std::span<l4_decision> out) noexcept;
void l4_fast_begin(const worker_ctx& w, fast_burst& b) noexcept;
uint32_t l4_fast_finish(const worker_ctx& w, fast_burst& b, std::span<l4_decision> out) noexcept;

/// Housekeeping once per loop: ages a budget of conntrack entries.
void l4_housekeeping(const worker_ctx& w, uint64_t now) noexcept;

} // namespace sluice::fastpath
