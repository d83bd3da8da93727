#pragma once
/// @file
/// Per-lcore connection tracking for full-NAT (DESIGN.md §3, STYLE H3/H5/H9).
///
/// One `table<F>` per worker lcore and address family (F = `v4` or `v6`, STYLE H6). A flow has
/// two keys: forward (client -> VIP) and reverse (backend -> SNAT). Both reach the same entry in
/// O(1) through one index of 64-byte buckets, each 8 slots of {16-bit signature, 32-bit entry
/// reference + direction} and an overflow count. A key lives in its first bucket, else in its
/// second (the first's overflow count says so, so lookups read one bucket while it is 0), else
/// one resident moves to its own other bucket (one cuckoo step; the two buckets of a key are
/// each other's alternate given its signature, as in rte_hash). The index keeps at most 3/4 of
/// its slots in use (1/2 for power-of-two capacities).
///
/// Memory per flow: the entry is 64 bytes (one cache line, both families: IPv6 entries keep the
/// VIP and SNAT addresses as 16-bit references into a small per-table refcounted pool), plus
/// 4 bytes of free list, plus the index: 2 slots of 8 bytes / load, 21 to 43 bytes. Reported
/// exactly by bytes_per_entry() (100 bytes at a power-of-two capacity).
///
/// Entries are taken from the free list in order (a young table fills its array from the
/// front), so flows created together sit together. Tried and dropped: 4 KiB pages of 16
/// buckets and 48 entries, a flow's entry in its forward key's bucket page (one page walk per
/// lookup instead of two). The L4 benchmark replays its flows in creation order, so their
/// entries are read sequentially (hardware-prefetched, one TLB miss per 64 flows); page-local
/// entries made them random, and established flows fell from 13.5 to 9.2 Mpps.
///
/// Lookup hashes the key (folded 128-bit multiplies, seeded), reads the first bucket, compares
/// signatures, then reads one entry and compares the full key: a hit costs two cache lines, a
/// miss one (rarely two). lookup_bulk overlaps those misses across a burst (H3).
///
/// Thread contract: a table belongs to one lcore; nothing is shared, locked or atomic. `create`
/// allocates everything once (control path, may fail with an error); every other member is
/// hot-path safe: no allocation, exception, lock, syscall or log. Time is the TSC, passed in.
///
/// Drain: an entry keeps its endpoint id and backend address; the table never consults the
/// snapshot, so flows to endpoints removed from the config continue until they close or expire.
///
/// Flood guard (H9, Katran): when no entry or slot is free after reclaiming expired entries,
/// `insert` returns nullptr and counts it; the caller then picks the backend by Maglev alone.

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "sluice/base/hash.hh"
#include "sluice/base/result.hh"

namespace sluice::conntrack {

/// Address family tags (template parameters, STYLE H6).
struct v4 {
    static constexpr uint8_t family = 4;
    static constexpr unsigned addr_len = 4;
};
struct v6 {
    static constexpr uint8_t family = 6;
    static constexpr unsigned addr_len = 16;
};

/// A 5-tuple as seen in a packet. Addresses in network order; IPv4 uses the first 4 bytes.
/// Ports are opaque to the table (use one byte order consistently; ICMP puts its id in sport
/// and 0 in dport). Bytes past the family's address length must be zero.
struct flow_key {
    std::array<uint8_t, 16> src{};
    std::array<uint8_t, 16> dst{};
    uint16_t sport = 0;
    uint16_t dport = 0;
    uint8_t proto = 0;  ///< IPPROTO_*
    uint8_t family = 0; ///< 4 or 6

    bool operator==(const flow_key&) const = default;
};

inline constexpr uint8_t proto_icmp = 1;
inline constexpr uint8_t proto_tcp = 6;
inline constexpr uint8_t proto_udp = 17;
inline constexpr uint8_t proto_icmpv6 = 58;

/// Which key of a flow matched.
enum class direction : uint8_t { forward = 0, reverse = 1 };

/// TCP state, plus the pseudo-states of other protocols. `free` marks an unused entry.
enum class state : uint8_t {
    free = 0,
    tcp_syn_sent, ///< SYN seen from the client
    tcp_syn_recv, ///< SYN-ACK seen from the backend
    tcp_established,
    tcp_fin_wait, ///< FIN seen in one direction
    tcp_closing,  ///< FIN seen in both directions
    tcp_closed,   ///< RST seen
    udp,
    icmp,
    other,
};

/// TCP flag bits as in the header.
inline constexpr uint8_t tcp_fin = 0x01;
inline constexpr uint8_t tcp_syn = 0x02;
inline constexpr uint8_t tcp_rst = 0x04;
inline constexpr uint8_t tcp_ack = 0x10;

/// Timeouts in seconds (mirrors config::conntrack_conf::timeouts; conntrack may not include
/// lib/config, so the wiring code copies the fields).
struct timeout_seconds {
    uint32_t tcp_syn = 10;
    uint32_t tcp_established = 900;
    uint32_t tcp_fin = 120;
    uint32_t tcp_closed = 10;
    uint32_t udp = 300;
    uint32_t icmp = 30;
};

/// Timeouts in TSC ticks, indexed by `state`.
struct timeouts {
    std::array<uint64_t, 10> by_state{};

    /// Converts seconds at `tsc_hz`. tcp_closing uses tcp_closed; `other` uses udp.
    static timeouts from_seconds(const timeout_seconds& s, uint64_t tsc_hz) noexcept;
};

/// IPv4 flow entry: one cache line. Addresses in network order.
struct alignas(64) entry_v4 {
    std::array<uint8_t, 4> client_addr;  ///< forward src
    std::array<uint8_t, 4> vip_addr;     ///< forward dst
    std::array<uint8_t, 4> backend_addr; ///< reverse src: pinned, survives snapshots
    std::array<uint8_t, 4> snat_addr;    ///< reverse dst
    uint16_t client_port;
    uint16_t vip_port;
    uint16_t backend_port;
    uint16_t snat_port;
    uint64_t endpoint_id; ///< stable id from the snapshot (never looked up by the table)
    uint64_t expires;     ///< TSC
    uint8_t proto;
    state st;
    uint8_t fin_dirs; ///< bit per direction that sent a FIN
    uint8_t flags;    ///< entry_flag_* bits
    /// The caller's precomputed full-NAT checksum changes of a forward packet (conntrack only
    /// stores them; valid when entry_flag_nat_csum is set): [0] IPv4 header, [1] L4 checksum
    /// (a reply's follow from them).
    uint16_t nat_csum[2];
    /// The caller's tag of the forward direction (conntrack only stores it): the caller's
    /// epoch in which it last checked what it caches per epoch (0: never).
    uint32_t fwd_epoch;
    /// The caller's cached next hop toward the client (conntrack only stores it): MAC and
    /// port index, valid while `client_hop_epoch` is the caller's current epoch (0: none).
    std::array<uint8_t, 6> client_hop_mac;
    uint8_t client_hop_port;
    uint8_t reserved;
    uint32_t client_hop_epoch;
};

/// IPv6 flow entry: one cache line; VIP and SNAT addresses live in the table's address pool.
struct alignas(64) entry_v6 {
    std::array<uint8_t, 16> client_addr;
    std::array<uint8_t, 16> backend_addr;
    uint16_t client_port;
    uint16_t vip_port;
    uint16_t backend_port;
    uint16_t snat_port;
    uint64_t endpoint_id;
    uint64_t expires;
    uint16_t vip_ref;  ///< address pool reference
    uint16_t snat_ref; ///< address pool reference
    uint8_t proto;
    state st;
    uint8_t fin_dirs;
    uint8_t flags; ///< entry_flag_* bits
};

/// The flow has only its forward key (direct server return: replies never cross the
/// appliance); `backend_addr`/`backend_port` still say where it goes, `snat_*` are unused.
inline constexpr uint8_t entry_flag_single_key = 0x01;
/// The caller counts the flow as an open connection (conntrack only stores the bit).
inline constexpr uint8_t entry_flag_counted = 0x02;
/// The caller reports the flow's connect outcome as a health signal (its cluster has outlier
/// detection); conntrack only stores the bit.
inline constexpr uint8_t entry_flag_report = 0x04;

/// The caller stored entry_v4::nat_csum (conntrack only stores the bit).
inline constexpr uint8_t entry_flag_nat_csum = 0x08;

static_assert(sizeof(entry_v4) == 64, "an IPv4 conntrack entry is one cache line");
static_assert(sizeof(entry_v6) == 64, "an IPv6 conntrack entry is one cache line");
// table<v4>::lookup_raw and the fast path's rewrite read the keys as words: forward addresses
// at 0, reverse addresses at 8, forward ports at 16, reverse ports at 20.
static_assert(offsetof(entry_v4, client_addr) == 0 && offsetof(entry_v4, vip_addr) == 4 &&
                  offsetof(entry_v4, backend_addr) == 8 && offsetof(entry_v4, snat_addr) == 12 &&
                  offsetof(entry_v4, client_port) == 16 && offsetof(entry_v4, vip_port) == 18 &&
                  offsetof(entry_v4, backend_port) == 20 && offsetof(entry_v4, snat_port) == 22,
              "entry_v4 key layout");

template <typename F>
struct entry_of;
template <>
struct entry_of<v4> {
    using type = entry_v4;
};
template <>
struct entry_of<v6> {
    using type = entry_v6;
};

/// Per-table counters: plain integers, written only by the owning lcore (H5); readers sum.
struct counters {
    uint64_t lookups = 0;
    uint64_t hits = 0;
    uint64_t inserts = 0;
    uint64_t insert_failures_full = 0; ///< flood guard (H9): no entry or index slot free
    uint64_t insert_failures_addr = 0; ///< IPv6 address pool full (VIP/SNAT addresses)
    uint64_t expired = 0;              ///< reclaimed after their timeout by lookup() or age()
    uint64_t evicted = 0;              ///< expired entries reclaimed by insert() to make room
    uint64_t removed = 0;              ///< remove() calls
    uint64_t syn_expired = 0;          ///< of expired: still in tcp_syn_sent (no SYN-ACK seen)
    uint64_t entries = 0;              ///< live entries now
};

/// Construction parameters (control path).
struct params {
    uint32_t capacity = 1u << 20;      ///< flows (entries); at most 2^29
    uint16_t address_pool = 4096;      ///< IPv6 only: distinct VIP + SNAT addresses in use
    uint64_t seed = 0x5eed5eed5eedULL; ///< hash seed (per appliance; keep secret from clients)
    timeouts to;                       ///< per-state timeouts in TSC ticks
};

/// A lookup result: the entry (nullptr on a miss) and which of its keys matched.
template <typename F>
struct match {
    typename entry_of<F>::type* e = nullptr;
    direction dir = direction::forward;
};

/// The per-lcore flow table. Move-only. All members but `create` are noexcept and hot-path
/// safe; none may be called from another lcore.
template <typename F>
class table {
public:
    using entry = typename entry_of<F>::type;
    /// Largest burst for lookup_bulk (longer spans are processed in chunks).
    static constexpr size_t max_burst = 32;

    /// Allocates the entry array, the index and the free list (control path).
    static result<table> create(const params& p);

    table(table&&) noexcept;
    table& operator=(table&&) noexcept;
    ~table();

    /// Finds the flow of `k`. An expired entry is reclaimed and reported as a miss.
    match<F> lookup(const flow_key& k, uint64_t now) noexcept;

    /// Looks up a burst: hashes every key and prefetches its buckets, then scans signatures
    /// and prefetches the candidate entries, then verifies (H3). `out.size() >= keys.size()`.
    void lookup_bulk(std::span<const flow_key> keys, std::span<match<F>> out,
                     uint64_t now) noexcept;

    /// A lookup in three stages over a burst (H3, the VPP pattern): prefetch_bucket() for every
    /// key (hashes it, starts the load of its first bucket, returns the hash), then
    /// prefetch_entry() for every hash (scans the loaded bucket, starts the load of the
    /// candidate entry or of the second bucket), then lookup_hashed() per packet, which finds
    /// both in cache. Unlike lookup_bulk, the caller may insert and remove between lookups.
    uint64_t prefetch_bucket(const flow_key& k) const noexcept;
    void prefetch_entry(uint64_t h) const noexcept;
    /// A third step for bursts of new flows (a SYN flood reclaims an expired entry per
    /// packet): with the candidate entry loaded, when it has expired, starts loading the
    /// bucket of its other key, which reclaiming it will clear. A hint only (nothing is
    /// verified or changed); cheap when the entry is live. Returns false when a live
    /// candidate was found (the key is probably present), true otherwise (probably a new flow).
    bool prefetch_expired_other(uint64_t h, uint64_t now) const noexcept;
    match<F> lookup_hashed(const flow_key& k, uint64_t h, uint64_t now) noexcept
    {
        return finish(probe(k, h), now);
    }

    /// The same three stages for IPv4 keys taken straight from a packet's headers (the
    /// established-flow fast path; no flow_key is built). `addrs` holds the source address in
    /// its low 32 bits and the destination in its high 32 bits, each as loaded from memory
    /// (network order bytes); `ports_proto` holds the source port in bits 0-15 and the
    /// destination port in bits 16-31 (as loaded), the protocol in bits 32-39. Same hash and
    /// same flows as the flow_key members. IPv4 tables only.
    [[nodiscard]] uint64_t hash_raw(uint64_t addrs, uint64_t ports_proto) const noexcept
        requires(F::family == 4)
    {
        // A folded 64x64->128 multiply (wyhash's "mum", also its finalizer): the high half
        // carries every bit of both words (where the last bytes of an address land) into the
        // low bits that pick the bucket. The seed keeps bucket choice private from clients.
        return mum(addrs ^ _k4[0], ports_proto ^ _k4[1]);
    }
    void prefetch_bucket_hashed(uint64_t h) const noexcept
    {
        __builtin_prefetch(&_buckets[h & _mask]);
    }
    /// Reads the (loaded) first bucket of `h`, starts loading the entry its first matching
    /// signature names and returns that slot's reference as a hint for lookup_raw (0: none).
    [[nodiscard]] uint32_t prefetch_candidate(uint64_t h) const noexcept
    {
        const bucket& b = _buckets[h & _mask];
        for (uint32_t m = sig_matches(b.sig, static_cast<uint16_t>(h >> 48)); m != 0; m &= m - 1) {
            const uint32_t ref = b.ref[__builtin_ctz(m) >> 1];
            if (ref != 0) {
                __builtin_prefetch(&_entries[((ref & index_ref_mask) - 1) >> 1]);
                return ref;
            }
        }
        return 0;
    }
    /// The lookup: the hinted entry when it is the key's (one check, no scan), else the full
    /// probe of both buckets. `hint`: 0 or a reference prefetch_candidate returned (for any
    /// key: the entry is verified, and one freed since fails the check).
    match<F> lookup_raw(uint64_t addrs, uint64_t ports_proto, uint64_t h, uint32_t hint,
                        uint64_t now) noexcept requires(F::family == 4)
    {
        if (hint != 0) {
            const uint32_t r = (hint & index_ref_mask) - 1;
            entry& e = _entries[r >> 1];
            const unsigned d = r & 1;
            const auto* base = reinterpret_cast<const uint8_t*>(&e);
            uint64_t ea;
            uint32_t ep;
            __builtin_memcpy(&ea, base + 8 * d, 8);
            __builtin_memcpy(&ep, base + 16 + 4 * d, 4);
            if (ea == addrs && ep == static_cast<uint32_t>(ports_proto) &&
                e.proto == static_cast<uint8_t>(ports_proto >> 32) && e.st != state::free) {
                return finish({&e, static_cast<direction>(d)}, now);
            }
        }
        return lookup_raw_scan(addrs, ports_proto, h, now);
    }

    /// Hashes `k` and prefetches its two buckets, for a lookup a few packets later (H3).
    void prefetch(const flow_key& k) const noexcept;

    /// Adds a flow. `fwd` is client -> VIP, `rev` is backend -> SNAT (same proto); neither may be
    /// present (the caller looked them up; an SNAT port is free for a backend when its reverse
    /// key is absent). TCP starts in tcp_syn_sent. Returns nullptr, counted, when full (H9).
    entry* insert(const flow_key& fwd, const flow_key& rev, uint64_t endpoint_id,
                  uint64_t now) noexcept;

    /// Adds a single-key flow (direct server return): only `fwd` is indexed; the backend is
    /// `backend` (family's address length, network order) port `backend_port`. TCP starts in
    /// tcp_syn_sent; the caller moves it on with update_tcp_forward_only(). nullptr when full.
    entry* insert_single(const flow_key& fwd, const uint8_t* backend, uint16_t backend_port,
                         uint64_t endpoint_id, uint64_t now) noexcept;

    /// TCP tracking when only the client's side is seen (single-key flows): SYN opens,
    /// any later segment without SYN makes the flow established, FIN closes half, RST closes.
    void update_tcp_forward_only(entry& e, uint8_t tcp_flags, uint64_t now) noexcept;

    /// Called for every entry reclaimed because it expired (by lookup, insert or age), before
    /// it is freed: `st` tells the state it died in (tcp_syn_sent: the backend never answered
    /// the SYN). Plain function pointer (no virtual call, no allocation); nullptr disables.
    using expiry_hook = void (*)(void* ctx, const entry& e) noexcept;
    void set_expiry_hook(expiry_hook fn, void* ctx) noexcept
    {
        _hook = fn;
        _hook_ctx = ctx;
    }

    /// Advances the TCP state machine for a packet with `tcp_flags` seen in `dir`, and
    /// refreshes the expiry with the timeout of the resulting state.
    void update_tcp(entry& e, uint8_t tcp_flags, direction dir, uint64_t now) noexcept;

    /// Refreshes the expiry of a non-TCP flow (or a TCP flow in its current state).
    void touch(entry& e, uint64_t now) noexcept { e.expires = now + _to.by_state[idx(e.st)]; }

    /// Removes a flow (both keys). `e` must be live.
    void remove(entry& e) noexcept;

    /// Visits at most `budget` entries from where the last call stopped and reclaims the
    /// expired ones. Call once per worker loop. Returns the number reclaimed.
    uint32_t age(uint64_t now, uint32_t budget) noexcept;

    /// The VIP and SNAT addresses of a live entry, without building a key (hot path).
    [[nodiscard]] const uint8_t* vip_addr(const entry& e) const noexcept;
    [[nodiscard]] const uint8_t* snat_addr(const entry& e) const noexcept;

    /// The two keys of a live entry (for rewriting: forward is client -> VIP, reverse is
    /// backend -> SNAT).
    [[nodiscard]] flow_key forward_key(const entry& e) const noexcept;
    [[nodiscard]] flow_key reverse_key(const entry& e) const noexcept;

    [[nodiscard]] uint32_t size() const noexcept { return _capacity - _free_top; }
    [[nodiscard]] uint32_t capacity() const noexcept { return _capacity; }
    [[nodiscard]] const counters& stats() const noexcept { return _c; }
    /// Test-only: walks the whole index and returns how many invariants fail (a slot whose
    /// entry is free or whose key hashes elsewhere, an overflow count that disagrees, slots !=
    /// 2 x size). Allocates; never call on the data path.
    [[nodiscard]] uint64_t index_errors_for_test() const;
    /// Bytes of memory the table holds (entries, index, free list, pools) per entry of capacity.
    [[nodiscard]] double bytes_per_entry() const noexcept;

private:
    static constexpr unsigned slots_per_bucket = 8;
    static constexpr uint32_t index_ref_mask = 0x7fffffffu; ///< an index slot's reference bits
    /// One index bucket: 8 slots of {16-bit signature, 32-bit reference}.
    struct alignas(64) bucket {
        uint16_t sig[slots_per_bucket];
        uint32_t ref[slots_per_bucket];
        // Keys whose first bucket is this one but which live in their second bucket (this
        // one was full when they arrived). While it is 0, lookups read one bucket, not two.
        uint32_t overflow;
        uint8_t pad[12];
    };
    static_assert(sizeof(bucket) == 64);

    /// Bit 2s set when slot s of the 8 signatures at `sigs` equals `sig` (SSE2: one compare);
    /// iterate with slot = ctz(m) / 2, m &= m - 1.
    static uint32_t sig_matches(const uint16_t* sigs, uint16_t sig) noexcept
    {
#if defined(__SSE2__)
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sigs));
        return static_cast<uint32_t>(
                   _mm_movemask_epi8(_mm_cmpeq_epi16(v, _mm_set1_epi16(static_cast<short>(sig))))) &
               0x5555u;
#else
        uint32_t m = 0;
        for (unsigned s = 0; s < slots_per_bucket; ++s) {
            m |= sigs[s] == sig ? 1u << (2 * s) : 0;
        }
        return m;
#endif
    }
    static uint64_t mum(uint64_t a, uint64_t b) noexcept
    {
        const unsigned __int128 p = static_cast<unsigned __int128>(a) * b;
        return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
    }

    struct pool;
    struct free_deleter {
        void operator()(void* p) const noexcept;
    };

    table() = default;
    static constexpr size_t idx(state s) noexcept
    {
        return static_cast<size_t>(s);
    }

    uint64_t hash(const flow_key& k) const noexcept;
    bool verify(const entry& e, direction d, const flow_key& k) const noexcept;
    match<F> probe(const flow_key& k, uint64_t h) const noexcept;
    match<F> lookup_raw_scan(uint64_t addrs, uint64_t ports_proto, uint64_t h,
                             uint64_t now) noexcept requires(F::family == 4);
    match<F> finish(match<F> m, uint64_t now) noexcept
    {
        ++_c.lookups;
        if (m.e == nullptr) {
            return m;
        }
        if (m.e->expires < now) [[unlikely]] {
            expire(*m.e);
            ++_c.expired;
            return {};
        }
        ++_c.hits;
        return m;
    }
    bool place(uint64_t h, uint32_t ref, uint64_t now) noexcept;
    void unplace(uint64_t h, uint32_t ref) noexcept;
    int free_slot(uint64_t b) const noexcept;
    void put(uint64_t b, int s, uint16_t sig, uint32_t ref, bool secondary) noexcept;
    void clear(uint64_t b, int s) noexcept;
    int make_room(uint64_t b) noexcept;
    uint32_t reclaim_in(uint64_t h, uint64_t now) noexcept;
    void release(entry& e) noexcept;
    void expire(entry& e) noexcept;
    entry* insert_impl(const flow_key& fwd, const flow_key* rev, const uint8_t* backend,
                       uint16_t backend_port, uint64_t endpoint_id, uint64_t now) noexcept;

    std::unique_ptr<entry[], free_deleter> _entries;
    std::unique_ptr<bucket[], free_deleter> _buckets;
    std::unique_ptr<uint32_t[], free_deleter> _free; ///< stack of free entry indices
    std::unique_ptr<pool> _pool;                     ///< IPv6 only
    uint64_t _mask = 0;                              ///< buckets - 1
    uint64_t _seed = 0;
    /// hash_raw's keys, from the seed: seed ^ 0xa0761d6478bd642f, rotl(seed, 31) ^
    /// 0xe7037ed1a0b428db (set by create).
    std::array<uint64_t, 2> _k4{};
    uint32_t _capacity = 0;
    uint32_t _free_top = 0; ///< number of free indices on the stack
    uint32_t _age_pos = 0;
    timeouts _to;
    counters _c;
    expiry_hook _hook = nullptr;
    void* _hook_ctx = nullptr;
};

using table_v4 = table<v4>;
using table_v6 = table<v6>;

extern template class table<v4>;
extern template class table<v6>;

} // namespace sluice::conntrack
