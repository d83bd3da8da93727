// Connection tracking: the index, the state machine and aging. See conntrack.hh for the
// layout; comments here say why.
#include "sluice/conntrack/conntrack.hh"

#include <sys/mman.h>

#include <bit>
#include <cstdlib>
#include <cstring>

#include "sluice/base/hash.hh"

namespace sluice::conntrack {

namespace {

// Every index slot stores `ref = ((entry index << 1) | direction) + 1`; 0 is empty. The top
// bit says the key sits in its second bucket.
constexpr uint32_t max_capacity = 1u << 29;
constexpr uint32_t secondary_bit = 1u << 31;
constexpr uint32_t ref_mask = secondary_bit - 1;
constexpr size_t huge_page = 2u << 20;

inline uint64_t load64(const uint8_t* p) noexcept
{
    uint64_t v;
    std::memcpy(&v, p, sizeof v); // constant size: compiled to one load, no libc call
    return v;
}

inline uint32_t load32(const uint8_t* p) noexcept
{
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline uint64_t rotl(uint64_t v, int r) noexcept
{
    return std::rotl(v, r);
}

inline bool expired(uint64_t expires, uint64_t now) noexcept
{
    return expires < now;
}

// Big tables are backed by transparent huge pages where the kernel allows it: the index and
// the entries are touched at random, so 4 KiB pages would add a TLB miss to each cache miss.
void* alloc_table_memory(size_t bytes) noexcept
{
    const size_t align = bytes >= huge_page ? huge_page : 64;
    const size_t rounded = (bytes + align - 1) / align * align;
    void* p = std::aligned_alloc(align, rounded);
    if (p != nullptr) {
        if (align == huge_page) {
            (void)madvise(p, rounded, MADV_HUGEPAGE); // construction only; best effort
        }
        std::memset(p, 0, rounded);
    }
    return p;
}

} // namespace

timeouts timeouts::from_seconds(const timeout_seconds& s, uint64_t tsc_hz) noexcept
{
    timeouts t;
    auto set = [&](state st, uint32_t sec) {
        t.by_state[static_cast<size_t>(st)] = static_cast<uint64_t>(sec) * tsc_hz;
    };
    set(state::tcp_syn_sent, s.tcp_syn);
    set(state::tcp_syn_recv, s.tcp_syn);
    set(state::tcp_established, s.tcp_established);
    set(state::tcp_fin_wait, s.tcp_fin);
    set(state::tcp_closing, s.tcp_closed);
    set(state::tcp_closed, s.tcp_closed);
    set(state::udp, s.udp);
    set(state::icmp, s.icmp);
    set(state::other, s.udp);
    return t;
}

// IPv6 VIP and SNAT addresses, interned with per-table reference counts so an entry holds a
// 16-bit reference instead of 32 bytes. Open addressing with linear probing and backward-shift
// deletion; the address storage never moves, so references stay valid.
template <typename F>
struct table<F>::pool {
    std::unique_ptr<std::array<uint8_t, 16>[]> addr;
    std::unique_ptr<uint32_t[]> refs;
    std::unique_ptr<uint16_t[]> index; // pool reference + 1; 0 is empty
    std::unique_ptr<uint16_t[]> free;
    uint32_t cap = 0;
    uint32_t free_top = 0;
    uint32_t imask = 0;

    uint32_t home(const std::array<uint8_t, 16>& a) const noexcept
    {
        return static_cast<uint32_t>(fmix64(load64(a.data()) ^ rotl(load64(a.data() + 8), 29))) &
               imask;
    }

    int32_t find(const std::array<uint8_t, 16>& a) const noexcept
    {
        for (uint32_t i = home(a);; i = (i + 1) & imask) {
            if (index[i] == 0) {
                return -1;
            }
            if (addr[index[i] - 1] == a) {
                return index[i] - 1;
            }
        }
    }

    int32_t acquire(const std::array<uint8_t, 16>& a) noexcept
    {
        const int32_t r = find(a);
        if (r >= 0) {
            ++refs[r];
            return r;
        }
        if (free_top == 0) {
            return -1;
        }
        const uint16_t n = free[--free_top];
        addr[n] = a;
        refs[n] = 1;
        uint32_t i = home(a);
        while (index[i] != 0) {
            i = (i + 1) & imask;
        }
        index[i] = static_cast<uint16_t>(n + 1);
        return n;
    }

    void release(uint16_t r) noexcept
    {
        if (--refs[r] != 0) {
            return;
        }
        uint32_t i = home(addr[r]);
        while (index[i] != r + 1) {
            i = (i + 1) & imask;
        }
        // Backward shift: pull later members of the probe run into the hole when their home
        // position does not lie cyclically in (hole, their position].
        for (uint32_t j = (i + 1) & imask; index[j] != 0; j = (j + 1) & imask) {
            const uint32_t k = home(addr[index[j] - 1]);
            const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays) {
                index[i] = index[j];
                i = j;
            }
        }
        index[i] = 0;
        free[free_top++] = r;
    }
};

template <typename F>
void table<F>::free_deleter::operator()(void* p) const noexcept
{
    std::free(p);
}

template <typename F>
table<F>::table(table&&) noexcept = default;
template <typename F>
table<F>& table<F>::operator=(table&&) noexcept = default;
template <typename F>
table<F>::~table() = default;

template <typename F>
result<table<F>> table<F>::create(const params& p)
{
    if (p.capacity == 0 || p.capacity > max_capacity) {
        return err("conntrack capacity must be between 1 and 2^30");
    }
    table t;
    t._capacity = p.capacity;
    t._seed = p.seed;
    t._k4[0] = p.seed ^ 0xa0761d6478bd642fULL;
    t._k4[1] = std::rotl(p.seed, 31) ^ 0xe7037ed1a0b428dbULL;
    t._to = p.to;
    // Two index slots per flow, at most 3/4 of all slots in use (half for a power-of-two
    // capacity): the first-fit / second-bucket / one-cuckoo-step placement stays far from
    // overflowing there (tests fill tables to capacity), and few keys leave their first bucket.
    const uint64_t slots = 2ull * p.capacity;
    const uint64_t nbuckets =
        std::bit_ceil((slots * 4 / 3 + slots_per_bucket - 1) / slots_per_bucket);
    t._mask = nbuckets - 1;
    t._entries.reset(static_cast<entry*>(alloc_table_memory(sizeof(entry) * p.capacity)));
    t._buckets.reset(static_cast<bucket*>(alloc_table_memory(sizeof(bucket) * nbuckets)));
    t._free.reset(static_cast<uint32_t*>(alloc_table_memory(sizeof(uint32_t) * p.capacity)));
    if (!t._entries || !t._buckets || !t._free) {
        return err("conntrack: out of memory for the flow table");
    }
    // Pop order = ascending index, so a young table fills its entry array from the front.
    for (uint32_t i = 0; i < p.capacity; ++i) {
        t._free[i] = p.capacity - 1 - i;
    }
    t._free_top = p.capacity;
    if constexpr (F::family == 6) {
        if (p.address_pool == 0 || p.address_pool == UINT16_MAX) {
            return err("conntrack: the IPv6 address pool must hold 1 to 65534 addresses");
        }
        auto pl = std::make_unique<pool>();
        pl->cap = p.address_pool;
        const uint32_t isize = std::bit_ceil(2u * p.address_pool);
        pl->imask = isize - 1;
        pl->addr = std::make_unique<std::array<uint8_t, 16>[]>(p.address_pool);
        pl->refs = std::make_unique<uint32_t[]>(p.address_pool);
        pl->index = std::make_unique<uint16_t[]>(isize);
        pl->free = std::make_unique<uint16_t[]>(p.address_pool);
        for (uint32_t i = 0; i < p.address_pool; ++i) {
            pl->free[i] = static_cast<uint16_t>(p.address_pool - 1 - i);
        }
        pl->free_top = p.address_pool;
        t._pool = std::move(pl);
    }
    return t;
}

template <typename F>
double table<F>::bytes_per_entry() const noexcept
{
    double bytes = static_cast<double>(sizeof(entry) + sizeof(uint32_t)) * _capacity +
                   static_cast<double>(sizeof(bucket)) * static_cast<double>(_mask + 1);
    if (_pool) {
        bytes += (16.0 + 4 + 2) * _pool->cap + 2.0 * (_pool->imask + 1);
    }
    return bytes / _capacity;
}

template <typename F>
uint64_t table<F>::hash(const flow_key& k) const noexcept
{
    // Folded 64x64->128 multiplies (wyhash's "mum"): unlike a plain multiply, they carry the
    // high bits of a word (where the last bytes of an address land) into the low bits that pick
    // the bucket. The seed keeps bucket choice private from clients.
    const uint64_t ports = k.sport | (uint64_t{k.dport} << 16) | (uint64_t{k.proto} << 32);
    if constexpr (F::family == 4) {
        return hash_raw(load32(k.src.data()) | (uint64_t{load32(k.dst.data())} << 32), ports);
    } else {
        const uint64_t s = mum(load64(k.src.data()) ^ _seed ^ 0xa0761d6478bd642fULL,
                               load64(k.src.data() + 8) ^ 0xe7037ed1a0b428dbULL);
        const uint64_t d = mum(load64(k.dst.data()) ^ rotl(_seed, 29) ^ 0x8ebc6af09c88c6e3ULL,
                               load64(k.dst.data() + 8) ^ 0x589965cc75374cc3ULL);
        return fmix64(mum(s ^ rotl(_seed, 43) ^ 0x1d8e4e27c47d124fULL, d ^ ports));
    }
}

namespace {

inline uint64_t bucket_1(uint64_t h, uint64_t mask) noexcept
{
    return h & mask;
}

// A key's two buckets are each other's alternate given its signature (as in rte_hash), so a
// slot can move to its other bucket without reading the entry.
inline uint64_t alternate(uint64_t bucket, uint16_t sig, uint64_t mask) noexcept
{
    return (bucket ^ (((uint64_t{sig} * 0x9e3779b97f4a7c15ULL) >> 40) | 1)) & mask;
}

inline uint16_t signature(uint64_t h) noexcept
{
    return static_cast<uint16_t>(h >> 48);
}

inline uint64_t bucket_2(uint64_t h, uint64_t mask) noexcept
{
    return alternate(bucket_1(h, mask), signature(h), mask);
}

inline uint32_t make_ref(uint32_t index, direction d) noexcept
{
    return ((index << 1) | static_cast<uint32_t>(d)) + 1;
}

} // namespace

template <typename F>
bool table<F>::verify(const entry& e, direction d, const flow_key& k) const noexcept
{
    if (e.st == state::free || e.proto != k.proto || k.family != F::family) {
        return false;
    }
    if constexpr (F::family == 4) {
        if (d == direction::forward) {
            return load32(k.src.data()) == load32(e.client_addr.data()) &&
                   load32(k.dst.data()) == load32(e.vip_addr.data()) && k.sport == e.client_port &&
                   k.dport == e.vip_port;
        }
        return load32(k.src.data()) == load32(e.backend_addr.data()) &&
               load32(k.dst.data()) == load32(e.snat_addr.data()) && k.sport == e.backend_port &&
               k.dport == e.snat_port;
    } else {
        if (d == direction::forward) {
            return k.sport == e.client_port && k.dport == e.vip_port && k.src == e.client_addr &&
                   k.dst == _pool->addr[e.vip_ref];
        }
        return k.sport == e.backend_port && k.dport == e.snat_port && k.src == e.backend_addr &&
               k.dst == _pool->addr[e.snat_ref];
    }
}

template <typename F>
match<F> table<F>::probe(const flow_key& k, uint64_t h) const noexcept
{
    const uint16_t sig = signature(h);
    const uint64_t b1 = bucket_1(h, _mask);
    const uint64_t b[2] = {b1, bucket_2(h, _mask)};
    const int probes = _buckets[b1].overflow != 0 ? 2 : 1;
    for (int j = 0; j < probes; ++j) {
        const bucket& bk = _buckets[b[j]];
        for (unsigned s = 0; s < slots_per_bucket; ++s) {
            if (bk.sig[s] == sig && bk.ref[s] != 0) {
                const uint32_t r = (bk.ref[s] & ref_mask) - 1;
                entry& e = _entries[r >> 1];
                const auto d = static_cast<direction>(r & 1);
                if (verify(e, d, k)) {
                    return {&e, d};
                }
            }
        }
    }
    return {};
}

template <typename F>
match<F> table<F>::lookup(const flow_key& k, uint64_t now) noexcept
{
    return finish(probe(k, hash(k)), now);
}

template <typename F>
uint64_t table<F>::prefetch_bucket(const flow_key& k) const noexcept
{
    const uint64_t h = hash(k);
    __builtin_prefetch(&_buckets[bucket_1(h, _mask)]);
    return h;
}

template <typename F>
match<F> table<F>::lookup_raw_scan(uint64_t addrs, uint64_t ports_proto, uint64_t h,
                                   uint64_t now) noexcept requires(F::family == 4)
{
    // probe() with the signature scan in one SIMD compare and verify() reduced to word
    // compares: an entry's forward key is its first 8 address bytes and the ports at offset
    // 16, its reverse key the next 8 bytes and the ports at offset 20 (entry_v4's layout).
    const uint16_t sig = signature(h);
    const uint64_t b1 = bucket_1(h, _mask);
    const auto proto = static_cast<uint8_t>(ports_proto >> 32);
    const auto ports = static_cast<uint32_t>(ports_proto);
    const bucket* bk = &_buckets[b1];
    for (int j = 0;; ++j) {
        for (uint32_t m = sig_matches(bk->sig, sig); m != 0; m &= m - 1) {
            const uint32_t ref = bk->ref[__builtin_ctz(m) >> 1];
            if (ref == 0) {
                continue;
            }
            const uint32_t r = (ref & ref_mask) - 1;
            entry& e = _entries[r >> 1];
            const unsigned d = r & 1;
            const auto* base = reinterpret_cast<const uint8_t*>(&e);
            const uint64_t ea = load32(base + 8 * d) | (uint64_t{load32(base + 8 * d + 4)} << 32);
            if (ea == addrs && load32(base + 16 + 4 * d) == ports && e.proto == proto &&
                e.st != state::free) {
                return finish({&e, static_cast<direction>(d)}, now);
            }
        }
        if (j == 1 || _buckets[b1].overflow == 0) {
            return finish({}, now);
        }
        bk = &_buckets[bucket_2(h, _mask)];
    }
}

template <typename F>
void table<F>::prefetch_entry(uint64_t h) const noexcept
{
    const bucket& b1 = _buckets[bucket_1(h, _mask)];
    for (uint32_t m = sig_matches(b1.sig, signature(h)); m != 0; m &= m - 1) {
        const uint32_t ref = b1.ref[__builtin_ctz(m) >> 1];
        if (ref != 0) {
            __builtin_prefetch(&_entries[((ref & ref_mask) - 1) >> 1]);
            return;
        }
    }
    if (b1.overflow != 0) {
        __builtin_prefetch(&_buckets[bucket_2(h, _mask)]);
    }
}

template <typename F>
bool table<F>::prefetch_expired_other(uint64_t h, uint64_t now) const noexcept
{
    const bucket& b1 = _buckets[bucket_1(h, _mask)];
    for (uint32_t m = sig_matches(b1.sig, signature(h)); m != 0; m &= m - 1) {
        const uint32_t ref = b1.ref[__builtin_ctz(m) >> 1];
        if (ref == 0) {
            continue;
        }
        const entry& e = _entries[((ref & ref_mask) - 1) >> 1];
        if (e.st == state::free || e.expires >= now) {
            return e.st == state::free;
        }
        if ((e.flags & entry_flag_single_key) == 0) {
            const bool fwd = (((ref & ref_mask) - 1) & 1) == 0;
            __builtin_prefetch(
                &_buckets[bucket_1(hash(fwd ? reverse_key(e) : forward_key(e)), _mask)]);
        }
        return true;
    }
    return true;
}

template <typename F>
void table<F>::prefetch(const flow_key& k) const noexcept
{
    __builtin_prefetch(&_buckets[bucket_1(hash(k), _mask)]);
}

template <typename F>
void table<F>::lookup_bulk(std::span<const flow_key> keys, std::span<match<F>> out,
                           uint64_t now) noexcept
{
    while (!keys.empty()) {
        const size_t n = keys.size() < max_burst ? keys.size() : max_burst;
        uint64_t h[max_burst];
        uint32_t cand[max_burst];
        // Stage 1: hash everything and start both bucket loads of every key.
        for (size_t i = 0; i < n; ++i) {
            h[i] = hash(keys[i]);
            __builtin_prefetch(&_buckets[bucket_1(h[i], _mask)]);
        }
        // Stage 2: scan the first bucket's signatures; start the load of the candidate entry,
        // or of the second bucket when keys overflowed from the first.
        constexpr uint32_t probe_both = UINT32_MAX;
        for (size_t i = 0; i < n; ++i) {
            const uint16_t sig = signature(h[i]);
            const bucket& b1 = _buckets[bucket_1(h[i], _mask)];
            uint32_t c = 0;
            for (unsigned s = 0; s < slots_per_bucket && c == 0; ++s) {
                c = b1.sig[s] == sig ? b1.ref[s] & ref_mask : 0;
            }
            if (c != 0) {
                __builtin_prefetch(&_entries[(c - 1) >> 1]);
            } else if (b1.overflow != 0) {
                c = probe_both;
                __builtin_prefetch(&_buckets[bucket_2(h[i], _mask)]);
            }
            cand[i] = c;
        }
        // Stage 3: verify; a signature collision (rare) or an overflowed bucket falls back to
        // the full probe.
        for (size_t i = 0; i < n; ++i) {
            match<F> m;
            if (cand[i] == probe_both) {
                m = probe(keys[i], h[i]);
            } else if (cand[i] != 0) {
                const uint32_t r = cand[i] - 1;
                entry& e = _entries[r >> 1];
                const auto d = static_cast<direction>(r & 1);
                m = verify(e, d, keys[i]) ? match<F>{&e, d} : probe(keys[i], h[i]);
            }
            out[i] = finish(m, now);
        }
        keys = keys.subspan(n);
        out = out.subspan(n);
    }
}

template <typename F>
bool table<F>::place(uint64_t h, uint32_t ref, uint64_t now) noexcept
{
    // First fit in the first bucket, else the second (counted in the first's overflow), else
    // move one resident of either bucket to its own alternate (one cuckoo step). Most keys stay
    // in their first bucket, so most lookups read one bucket and a miss usually costs one line.
    const uint16_t sig = signature(h);
    const uint64_t bi[2] = {bucket_1(h, _mask), bucket_2(h, _mask)};
    for (int attempt = 0; attempt < 2; ++attempt) {
        for (int j = 0; j < 2; ++j) {
            const int s = free_slot(bi[j]);
            if (s >= 0) {
                put(bi[j], s, sig, ref, j != 0 && bi[1] != bi[0]);
                return true;
            }
        }
        for (int j = 0; j < 2; ++j) {
            const int s = make_room(bi[j]);
            if (s >= 0) {
                put(bi[j], s, sig, ref, j != 0 && bi[1] != bi[0]);
                return true;
            }
        }
        if (attempt == 0 && reclaim_in(h, now) == 0) {
            return false;
        }
    }
    return false;
}

template <typename F>
int table<F>::free_slot(uint64_t b) const noexcept
{
    for (unsigned s = 0; s < slots_per_bucket; ++s) {
        if (_buckets[b].ref[s] == 0) {
            return static_cast<int>(s);
        }
    }
    return -1;
}

template <typename F>
void table<F>::put(uint64_t b, int s, uint16_t sig, uint32_t ref, bool secondary) noexcept
{
    _buckets[b].sig[s] = sig;
    _buckets[b].ref[s] = ref | (secondary ? secondary_bit : 0);
    if (secondary) {
        ++_buckets[alternate(b, sig, _mask)].overflow;
    }
}

template <typename F>
void table<F>::clear(uint64_t b, int s) noexcept
{
    if ((_buckets[b].ref[s] & secondary_bit) != 0) {
        --_buckets[alternate(b, _buckets[b].sig[s], _mask)].overflow;
    }
    _buckets[b].ref[s] = 0;
    _buckets[b].sig[s] = 0;
}

template <typename F>
int table<F>::make_room(uint64_t b) noexcept
{
    for (unsigned s = 0; s < slots_per_bucket; ++s) {
        const uint16_t sig = _buckets[b].sig[s];
        const uint64_t alt = alternate(b, sig, _mask);
        const int t = alt == b ? -1 : free_slot(alt);
        if (t >= 0) {
            const uint32_t ref = _buckets[b].ref[s];
            clear(b, static_cast<int>(s));
            put(alt, t, sig, ref & ref_mask, (ref & secondary_bit) == 0);
            return static_cast<int>(s);
        }
    }
    return -1;
}

template <typename F>
void table<F>::unplace(uint64_t h, uint32_t ref) noexcept
{
    for (const uint64_t b : {bucket_1(h, _mask), bucket_2(h, _mask)}) {
        for (unsigned s = 0; s < slots_per_bucket; ++s) {
            if ((_buckets[b].ref[s] & ref_mask) == ref) {
                clear(b, static_cast<int>(s));
                return;
            }
        }
    }
}

template <typename F>
uint32_t table<F>::reclaim_in(uint64_t h, uint64_t now) noexcept
{
    uint32_t n = 0;
    for (const uint64_t bi : {bucket_1(h, _mask), bucket_2(h, _mask)}) {
        bucket& b = _buckets[bi];
        for (unsigned s = 0; s < slots_per_bucket; ++s) {
            if (b.ref[s] == 0) {
                continue;
            }
            entry& e = _entries[((b.ref[s] & ref_mask) - 1) >> 1];
            if (expired(e.expires, now)) {
                expire(e);
                ++_c.evicted;
                ++n;
            }
        }
    }
    return n;
}

template <typename F>
const uint8_t* table<F>::vip_addr(const entry& e) const noexcept
{
    if constexpr (F::family == 4) {
        return e.vip_addr.data();
    } else {
        return _pool->addr[e.vip_ref].data();
    }
}

template <typename F>
const uint8_t* table<F>::snat_addr(const entry& e) const noexcept
{
    if constexpr (F::family == 4) {
        return e.snat_addr.data();
    } else {
        return _pool->addr[e.snat_ref].data();
    }
}

template <typename F>
flow_key table<F>::forward_key(const entry& e) const noexcept
{
    flow_key k;
    k.family = F::family;
    k.proto = e.proto;
    k.sport = e.client_port;
    k.dport = e.vip_port;
    std::memcpy(k.src.data(), e.client_addr.data(), F::addr_len);
    if constexpr (F::family == 4) {
        std::memcpy(k.dst.data(), e.vip_addr.data(), F::addr_len);
    } else {
        k.dst = _pool->addr[e.vip_ref];
    }
    return k;
}

template <typename F>
flow_key table<F>::reverse_key(const entry& e) const noexcept
{
    flow_key k;
    k.family = F::family;
    k.proto = e.proto;
    k.sport = e.backend_port;
    k.dport = e.snat_port;
    std::memcpy(k.src.data(), e.backend_addr.data(), F::addr_len);
    if constexpr (F::family == 4) {
        std::memcpy(k.dst.data(), e.snat_addr.data(), F::addr_len);
    } else {
        k.dst = _pool->addr[e.snat_ref];
    }
    return k;
}

template <typename F>
void table<F>::expire(entry& e) noexcept
{
    if (e.st == state::tcp_syn_sent) {
        ++_c.syn_expired;
    }
    if (_hook != nullptr) {
        _hook(_hook_ctx, e);
    }
    release(e);
}

template <typename F>
void table<F>::release(entry& e) noexcept
{
    const auto index = static_cast<uint32_t>(&e - _entries.get());
    unplace(hash(forward_key(e)), make_ref(index, direction::forward));
    if ((e.flags & entry_flag_single_key) == 0) {
        unplace(hash(reverse_key(e)), make_ref(index, direction::reverse));
    }
    if constexpr (F::family == 6) {
        _pool->release(e.vip_ref);
        _pool->release(e.snat_ref);
    }
    e.st = state::free;
    _free[_free_top++] = index;
    --_c.entries;
}

template <typename F>
typename table<F>::entry* table<F>::insert(const flow_key& fwd, const flow_key& rev,
                                           uint64_t endpoint_id, uint64_t now) noexcept
{
    return insert_impl(fwd, &rev, rev.src.data(), rev.sport, endpoint_id, now);
}

template <typename F>
typename table<F>::entry* table<F>::insert_single(const flow_key& fwd, const uint8_t* backend,
                                                  uint16_t backend_port, uint64_t endpoint_id,
                                                  uint64_t now) noexcept
{
    return insert_impl(fwd, nullptr, backend, backend_port, endpoint_id, now);
}

template <typename F>
typename table<F>::entry* table<F>::insert_impl(const flow_key& fwd, const flow_key* rev,
                                                const uint8_t* backend, uint16_t backend_port,
                                                uint64_t endpoint_id, uint64_t now) noexcept
{
    const uint64_t hf = hash(fwd);
    // A single-key flow keeps the VIP as its (unused) SNAT address: no extra pool entry.
    const std::array<uint8_t, 16>& snat = rev != nullptr ? rev->dst : fwd.dst;
    const uint64_t hr = rev != nullptr ? hash(*rev) : 0;
    if (_free_top == 0) {
        reclaim_in(hf, now);
        if (_free_top == 0) {
            ++_c.insert_failures_full;
            return nullptr;
        }
    }
    const uint32_t index = _free[_free_top - 1];
    entry& e = _entries[index];
    if constexpr (F::family == 6) {
        const int32_t vr = _pool->acquire(fwd.dst);
        const int32_t sr = vr < 0 ? -1 : _pool->acquire(snat);
        if (sr < 0) {
            if (vr >= 0) {
                _pool->release(static_cast<uint16_t>(vr));
            }
            ++_c.insert_failures_addr;
            return nullptr;
        }
        e.vip_ref = static_cast<uint16_t>(vr);
        e.snat_ref = static_cast<uint16_t>(sr);
    } else {
        std::memcpy(e.vip_addr.data(), fwd.dst.data(), 4);
        std::memcpy(e.snat_addr.data(), snat.data(), 4);
    }
    std::memcpy(e.client_addr.data(), fwd.src.data(), F::addr_len);
    std::memcpy(e.backend_addr.data(), backend, F::addr_len);
    e.client_port = fwd.sport;
    e.vip_port = fwd.dport;
    e.backend_port = backend_port;
    e.snat_port = rev != nullptr ? rev->dport : 0;
    e.endpoint_id = endpoint_id;
    e.proto = fwd.proto;
    e.fin_dirs = 0;
    e.flags = rev != nullptr ? 0 : entry_flag_single_key;
    switch (fwd.proto) {
    case proto_tcp:
        e.st = state::tcp_syn_sent;
        break;
    case proto_udp:
        e.st = state::udp;
        break;
    case proto_icmp:
    case proto_icmpv6:
        e.st = state::icmp;
        break;
    default:
        e.st = state::other;
        break;
    }
    e.expires = now + _to.by_state[idx(e.st)];
    // Claim the entry before placing: place() may reclaim expired entries, which pushes onto
    // the free stack.
    --_free_top;
    ++_c.entries;
    if (place(hf, make_ref(index, direction::forward), now)) {
        if (rev == nullptr || place(hr, make_ref(index, direction::reverse), now)) {
            ++_c.inserts;
            return &e;
        }
    }
    release(e); // unplace() of a slot never placed finds nothing
    ++_c.insert_failures_full;
    return nullptr;
}

template <typename F>
void table<F>::update_tcp(entry& e, uint8_t tcp_flags, direction dir, uint64_t now) noexcept
{
    const bool syn = (tcp_flags & tcp_syn) != 0;
    const bool ack = (tcp_flags & tcp_ack) != 0;
    if (syn && !ack && dir == direction::forward &&
        (e.st == state::tcp_closed || e.st == state::tcp_closing)) {
        // The client reuses the 5-tuple for another connection: keep the flow and its backend.
        e.st = state::tcp_syn_sent;
        e.fin_dirs = 0;
    } else if ((tcp_flags & tcp_rst) != 0) {
        e.st = state::tcp_closed;
    } else if (e.st != state::tcp_closed) {
        if ((tcp_flags & tcp_fin) != 0) {
            e.fin_dirs |= static_cast<uint8_t>(1u << static_cast<unsigned>(dir));
        }
        if (e.fin_dirs == 3) {
            e.st = state::tcp_closing;
        } else if (e.fin_dirs != 0) {
            e.st = state::tcp_fin_wait;
        } else if (e.st == state::tcp_syn_sent && dir == direction::reverse && syn && ack) {
            e.st = state::tcp_syn_recv;
        } else if (e.st == state::tcp_syn_recv && dir == direction::forward && ack && !syn) {
            e.st = state::tcp_established;
        }
    }
    e.expires = now + _to.by_state[idx(e.st)];
}

template <typename F>
void table<F>::update_tcp_forward_only(entry& e, uint8_t tcp_flags, uint64_t now) noexcept
{
    const bool syn = (tcp_flags & tcp_syn) != 0;
    if ((tcp_flags & tcp_rst) != 0) {
        e.st = state::tcp_closed;
    } else if (syn) {
        if (e.st == state::tcp_closed || e.st == state::tcp_closing) {
            e.st = state::tcp_syn_sent; // the 5-tuple is reused: keep the backend
            e.fin_dirs = 0;
        }
    } else if ((tcp_flags & tcp_fin) != 0) {
        e.fin_dirs |= 1u;
        e.st = state::tcp_fin_wait;
    } else if (e.st == state::tcp_syn_sent || e.st == state::tcp_syn_recv) {
        e.st = state::tcp_established; // the client ACKs: the backend answered
    }
    e.expires = now + _to.by_state[idx(e.st)];
}

template <typename F>
void table<F>::remove(entry& e) noexcept
{
    release(e);
    ++_c.removed;
}

template <typename F>
uint32_t table<F>::age(uint64_t now, uint32_t budget) noexcept
{
    uint32_t n = 0;
    if (_free_top == _capacity) {
        return 0; // empty: nothing to visit
    }
    const uint32_t visits = budget < _capacity ? budget : _capacity;
    for (uint32_t i = 0; i < visits; ++i) {
        entry& e = _entries[_age_pos];
        _age_pos = _age_pos + 1 == _capacity ? 0 : _age_pos + 1;
        if (e.st != state::free && expired(e.expires, now)) {
            expire(e);
            ++_c.expired;
            ++n;
        }
    }
    return n;
}

template <typename F>
uint64_t table<F>::index_errors_for_test() const
{
    const uint64_t nbuckets = _mask + 1;
    auto overflow = std::make_unique<uint32_t[]>(nbuckets);
    uint64_t errors = 0;
    uint64_t slots = 0;
    uint64_t single = 0;
    for (uint32_t i = 0; i < _capacity; ++i) {
        single += _entries[i].st != state::free && (_entries[i].flags & entry_flag_single_key) != 0
                      ? 1
                      : 0;
    }
    for (uint64_t b = 0; b < nbuckets; ++b) {
        for (unsigned s = 0; s < slots_per_bucket; ++s) {
            const uint32_t ref = _buckets[b].ref[s];
            if (ref == 0) {
                continue;
            }
            ++slots;
            const uint32_t r = (ref & ref_mask) - 1;
            const entry& e = _entries[r >> 1];
            if (e.st == state::free) {
                ++errors;
                continue;
            }
            const uint64_t h = hash((r & 1) != 0 ? reverse_key(e) : forward_key(e));
            const bool secondary = (ref & secondary_bit) != 0;
            errors += signature(h) != _buckets[b].sig[s] ? 1 : 0;
            errors += b != (secondary ? bucket_2(h, _mask) : bucket_1(h, _mask)) ? 1 : 0;
            if (secondary) {
                ++overflow[bucket_1(h, _mask)];
            }
        }
    }
    for (uint64_t b = 0; b < nbuckets; ++b) {
        errors += overflow[b] != _buckets[b].overflow ? 1 : 0;
    }
    errors += slots != 2ull * size() - single ? 1 : 0;
    errors += _c.entries != size() ? 1 : 0;
    return errors;
}

template class table<v4>;
template class table<v6>;

} // namespace sluice::conntrack
