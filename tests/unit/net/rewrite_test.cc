#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cstring>
#include <random>

#include "frames.hh"
#include "sluice/net/rewrite.hh"

// Every expectation is checked against an independent reference: the packet is rebuilt from
// scratch with the new fields and its checksums are recomputed with frames.hh's byte-wise
// `csum` over an explicitly built pseudo-header. Incremental updates must give those exact
// bytes, not just "a valid checksum".

namespace sluice::net {
namespace {

using namespace sluice::test;

using addr4 = std::array<uint8_t, 4>;
using addr6 = std::array<uint8_t, 16>;

constexpr uint8_t tcp_p = 6;
constexpr uint8_t udp_p = 17;

// ------------------------------------------------------------------------ reference

uint16_t rd16(const uint8_t* p)
{
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

void wr16(uint8_t* p, uint16_t v)
{
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

/// A port as nat_tuple wants it: the two wire bytes in a uint16_t.
uint16_t wire(uint16_t host)
{
    const uint8_t b[2] = {static_cast<uint8_t>(host >> 8), static_cast<uint8_t>(host)};
    uint16_t v;
    std::memcpy(&v, b, 2);
    return v;
}

addr4 a4(uint32_t v)
{
    return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
            static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

addr6 a6(uint16_t first, uint16_t last)
{
    addr6 a{};
    wr16(a.data(), first);
    wr16(a.data() + 14, last);
    return a;
}

size_t csum_off(uint8_t proto)
{
    return proto == tcp_p ? 16 : proto == udp_p ? 6 : 2;
}

/// The L4 checksum of `l4` (its checksum field taken as zero), not mapped 0 -> 0xffff.
uint16_t ref_l4_raw(uint8_t family, uint8_t proto, const uint8_t* src, const uint8_t* dst,
                    const uint8_t* l4, size_t len)
{
    bytes b;
    if (proto != 1) {
        const size_t alen = family == 4 ? 4 : 16;
        b.insert(b.end(), src, src + alen);
        b.insert(b.end(), dst, dst + alen);
        if (family == 4) {
            b.insert(b.end(),
                     {0, proto, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
        } else {
            b.insert(b.end(),
                     {static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16),
                      static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0, proto});
        }
    }
    const size_t at = b.size();
    b.insert(b.end(), l4, l4 + len);
    b[at + csum_off(proto)] = 0;
    b[at + csum_off(proto) + 1] = 0;
    return csum(b.data(), b.size());
}

uint16_t ref_l4(uint8_t family, uint8_t proto, const uint8_t* src, const uint8_t* dst,
                const uint8_t* l4, size_t len)
{
    const uint16_t c = ref_l4_raw(family, proto, src, dst, l4, len);
    return proto == udp_p && c == 0 ? 0xffff : c;
}

/// Reference IPv4 header checksum.
uint16_t ref_ip4(const uint8_t* ip)
{
    const size_t ihl = (ip[0] & 0x0fu) * 4u;
    bytes h(ip, ip + ihl);
    h[10] = h[11] = 0;
    return csum(h.data(), ihl);
}

/// Recomputes (by reference) the header and L4 checksums of the IPv4 packet at `ip`, of which
/// `len` bytes are present. The L4 checksum only when the whole segment is present; a UDP
/// checksum of zero stays zero when `keep_udp_zero`.
void fix4(uint8_t* ip, size_t len, bool keep_udp_zero = true)
{
    wr16(ip + 10, ref_ip4(ip));
    const size_t ihl = (ip[0] & 0x0fu) * 4u;
    const size_t total = rd16(ip + 2);
    const uint8_t proto = ip[9];
    if (total > len || (proto != tcp_p && proto != udp_p && proto != 1)) {
        return;
    }
    uint8_t* l4 = ip + ihl;
    const size_t off = csum_off(proto);
    if (proto == udp_p && keep_udp_zero && rd16(l4 + off) == 0) {
        return;
    }
    wr16(l4 + off, ref_l4(4, proto, ip + 12, ip + 16, l4, total - ihl));
}

void fix4(bytes& p, bool keep_udp_zero = true)
{
    fix4(p.data(), p.size(), keep_udp_zero);
}

/// IPv6 without extension headers (or `l4_at` past them).
void fix6(uint8_t* ip, size_t len, size_t l4_at = 40, bool keep_udp_zero = true)
{
    const size_t total = 40u + rd16(ip + 4);
    if (total > len) {
        return;
    }
    // The L4 protocol: the next header of the last extension header before l4_at.
    uint8_t nh = ip[6];
    size_t off = 40;
    while (off < l4_at) {
        const size_t hlen = nh == 44   ? 8
                            : nh == 51 ? (ip[off + 1] + 2u) * 4u
                                       : (ip[off + 1] + 1u) * 8u;
        nh = ip[off];
        off += hlen;
    }
    uint8_t* l4 = ip + l4_at;
    const size_t off_c = csum_off(nh);
    if (nh == udp_p && keep_udp_zero && rd16(l4 + off_c) == 0) {
        return;
    }
    wr16(l4 + off_c, ref_l4(6, nh, ip + 8, ip + 24, l4, total - l4_at));
}

void fix6(bytes& p, size_t l4_at = 40, bool keep_udp_zero = true)
{
    fix6(p.data(), p.size(), l4_at, keep_udp_zero);
}

void set_addrs6(uint8_t* ip, const addr6& s, const addr6& d)
{
    std::memcpy(ip + 8, s.data(), 16);
    std::memcpy(ip + 24, d.data(), 16);
}

bytes random_bytes(std::mt19937& rng, size_t n)
{
    bytes b(n);
    for (auto& x : b) {
        x = static_cast<uint8_t>(rng());
    }
    return b;
}

/// Values biased towards the one's-complement corners.
uint16_t corner16(std::mt19937& rng)
{
    switch (rng() % 6) {
    case 0:
        return 0;
    case 1:
        return 0xffff;
    case 2:
        return 0xfffe;
    case 3:
        return 1;
    default:
        return static_cast<uint16_t>(rng());
    }
}

bytes with_payload(bytes l4, const bytes& payload, size_t hdr)
{
    std::copy(payload.begin(), payload.end(), l4.begin() + static_cast<std::ptrdiff_t>(hdr));
    return l4;
}

// ------------------------------------------------------------------------ checksums

TEST(RewriteCsum, FoldCorners)
{
    EXPECT_EQ(csum_fold(0), 0);
    EXPECT_EQ(csum_fold(0xffff), 0xffff);
    EXPECT_EQ(csum_fold(0x10000), 1);
    EXPECT_EQ(csum_fold(0x1fffe), 0xffff);
    EXPECT_EQ(csum_fold(0xffffffffu), 0xffff);
    EXPECT_EQ(csum_fold(0x12345678u), 0x68ac);
}

TEST(RewriteCsum, PartialMatchesReference)
{
    std::mt19937 rng(1);
    for (int iter = 0; iter < 2000; ++iter) {
        const size_t n = rng() % 130;
        const bytes b = random_bytes(rng, n);
        const uint32_t seed = rng() % 0x1000000u;
        ASSERT_EQ(static_cast<uint16_t>(~csum_fold(csum_partial(b.data(), n, seed))),
                  csum(b.data(), n, seed))
            << "n=" << n;
        // Chained over an even split equals one pass (odd tail padded only at the end).
        const size_t k = n == 0 ? 0 : (rng() % n) & ~size_t{1};
        const uint32_t chained = csum_partial(b.data() + k, n - k, csum_partial(b.data(), k));
        ASSERT_EQ(csum_fold(chained), csum_fold(csum_partial(b.data(), n))) << n << " " << k;
    }
    const uint8_t odd[3] = {0x12, 0x34, 0x56};
    EXPECT_EQ(csum_fold(csum_partial(odd, 3)), 0x1234 + 0x5600);
    EXPECT_EQ(csum_partial(odd, 0, 77), 77u);
    // A large incoming sum carries around instead of overflowing.
    EXPECT_EQ(csum_fold(csum_partial(odd, 3, 0xffffffffu)), csum_fold(0x1234 + 0x5600 + 0xffff));
}

TEST(RewriteCsum, Rfc1624NegativeZeroCorner)
{
    // Words {0x1234, 0x0000}: HC = ~0x1234. Changing the second word to 0xedcb makes the sum
    // 0xffff, whose checksum a full recompute gives as 0x0000. Eqn. 2 would give 0xffff.
    uint8_t d[4] = {0x12, 0x34, 0x00, 0x00};
    const uint16_t hc = csum(d, 4);
    ASSERT_EQ(hc, 0xedcb);
    d[2] = 0xed;
    d[3] = 0xcb;
    ASSERT_EQ(csum(d, 4), 0x0000);
    EXPECT_EQ(csum_replace16(hc, 0x0000, 0xedcb), 0x0000);
    const uint8_t o[2] = {0, 0};
    EXPECT_EQ(csum_replace(hc, o, d + 2, 2), 0x0000);
    // RFC 1624 §4 example: HC 0xdd2f, a word 0x5555 -> 0x3285 gives 0x0000.
    EXPECT_EQ(csum_replace16(0xdd2f, 0x5555, 0x3285), 0x0000);
}

TEST(RewriteCsum, ReplaceMatchesRecomputeRandomized)
{
    std::mt19937 rng(2);
    for (int iter = 0; iter < 10000; ++iter) {
        const size_t words = 2 + rng() % 40;
        bytes b(words * 2);
        for (size_t w = 0; w < words; ++w) {
            wr16(b.data() + 2 * w, corner16(rng));
        }
        b[0] = 0x45; // never all zero: a real header or segment is not (HC 0xffff is unused)
        const uint16_t hc = csum(b.data(), b.size());

        // A 16-bit field, in both representations.
        const size_t w = 1 + rng() % (words - 1);
        const uint16_t old_v = rd16(b.data() + 2 * w);
        const uint16_t new_v = corner16(rng);
        bytes c = b;
        wr16(c.data() + 2 * w, new_v);
        const uint16_t full = csum(c.data(), c.size());
        ASSERT_EQ(csum_replace16(hc, old_v, new_v), full) << iter;
        ASSERT_EQ(csum_replace16(__builtin_bswap16(hc), __builtin_bswap16(old_v),
                                 __builtin_bswap16(new_v)),
                  __builtin_bswap16(full))
            << iter;

        // A 4- or 16-byte field at an even offset.
        const size_t len = (rng() & 1) != 0 ? 4 : 16;
        if (b.size() < 2 + len) {
            continue;
        }
        const size_t at = 2 + 2 * (rng() % ((b.size() - 2 - len) / 2 + 1));
        bytes d = b;
        bytes nb(len);
        for (size_t i = 0; i < len; i += 2) {
            wr16(nb.data() + i, corner16(rng));
        }
        std::copy(nb.begin(), nb.end(), d.begin() + static_cast<std::ptrdiff_t>(at));
        ASSERT_EQ(csum_replace(hc, b.data() + at, nb.data(), len), csum(d.data(), d.size()))
            << iter << " len " << len << " at " << at;
    }
}

TEST(RewriteCsum, Ipv4HeaderWithOptions)
{
    auto p = ipv4(udp_p, udp(1, 2, 4), 0x0a000001, 0x0a000002, {0x94, 0x04, 0, 0, 1, 1, 1, 0});
    const uint16_t want = rd16(p.data() + 10);
    p[10] = 0x55;
    p[11] = 0xaa;
    ipv4_set_checksum(p.data());
    EXPECT_EQ(rd16(p.data() + 10), want);
    EXPECT_EQ(csum(p.data(), 28), 0);
}

TEST(RewriteCsum, L4SetAndVerifyAllProtocols)
{
    std::mt19937 rng(3);
    const addr4 s4 = a4(0xc0000201), d4 = a4(0xc6336402);
    const addr6 s6 = a6(0x2001, 7), d6 = a6(0xfd00, 9);
    struct c {
        uint8_t family, proto;
        bytes l4;
    };
    const bytes payload = random_bytes(rng, 33);
    const c cases[] = {
        {4, tcp_p, with_payload(tcp(1000, 80, 0x18, 33), payload, 20)},
        {4, udp_p, with_payload(udp(53, 5353, 33), payload, 8)},
        {4, 1, icmp_echo(7, 9, 33)},
        {6, tcp_p, with_payload(tcp(1000, 443, 0x10, 33), payload, 20)},
        {6, udp_p, with_payload(udp(53, 5353, 33), payload, 8)},
        {6, 58, with_payload(icmp_echo(7, 9, 33), payload, 8)},
    };
    for (const auto& k : cases) {
        const uint8_t* s = k.family == 4 ? s4.data() : s6.data();
        const uint8_t* d = k.family == 4 ? d4.data() : d6.data();
        bytes l4 = k.l4;
        if (k.proto == 58) {
            l4[0] = 128;
        }
        l4_set_checksum(k.family, k.proto, s, d, l4.data(), l4.size());
        const size_t off = csum_off(k.proto);
        EXPECT_EQ(rd16(l4.data() + off), ref_l4(k.family, k.proto, s, d, l4.data(), l4.size()))
            << int{k.family} << "/" << int{k.proto};
        EXPECT_TRUE(l4_checksum_ok(k.family, k.proto, s, d, l4.data(), l4.size()));
        // Every single-bit error is caught, in the payload and in the pseudo-header.
        for (size_t bit = 0; bit < l4.size() * 8; bit += 13) {
            bytes bad = l4;
            bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
            EXPECT_FALSE(l4_checksum_ok(k.family, k.proto, s, d, bad.data(), bad.size()));
        }
        if (k.proto != 1) { // a different pseudo-header
            EXPECT_FALSE(l4_checksum_ok(k.family, k.proto, s, s, l4.data(), l4.size()));
        }
    }
    // ICMP (v4) ignores the pseudo-header and accepts null addresses.
    bytes e = icmp_echo(1, 2, 10);
    const uint16_t want = rd16(e.data() + 2);
    e[2] = e[3] = 0x77;
    l4_set_checksum(4, 1, nullptr, nullptr, e.data(), e.size());
    EXPECT_EQ(rd16(e.data() + 2), want);
}

TEST(RewriteCsum, UdpZeroMeansNoneAndComputedZeroIsFfff)
{
    const addr4 s = a4(0x0a000001), d = a4(0x0a000002);
    bytes u = udp(1234, 53, 2);
    EXPECT_TRUE(l4_checksum_ok(4, udp_p, s.data(), d.data(), u.data(), u.size()));
    const addr6 s6 = a6(0x2001, 1), d6 = a6(0x2001, 2);
    EXPECT_FALSE(l4_checksum_ok(6, udp_p, s6.data(), d6.data(), u.data(), u.size()));
    // Make the sum 0xffff: the payload word is the complement of the rest.
    const uint16_t raw = ref_l4_raw(4, udp_p, s.data(), d.data(), u.data(), u.size());
    wr16(u.data() + 8, raw);
    ASSERT_EQ(ref_l4_raw(4, udp_p, s.data(), d.data(), u.data(), u.size()), 0);
    l4_set_checksum(4, udp_p, s.data(), d.data(), u.data(), u.size());
    EXPECT_EQ(rd16(u.data() + 6), 0xffff);
    EXPECT_TRUE(l4_checksum_ok(4, udp_p, s.data(), d.data(), u.data(), u.size()));
    // TCP keeps a computed 0 as 0.
    bytes t = tcp(1, 2, 0x10, 2);
    wr16(t.data() + 20, ref_l4_raw(4, tcp_p, s.data(), d.data(), t.data(), t.size()));
    l4_set_checksum(4, tcp_p, s.data(), d.data(), t.data(), t.size());
    EXPECT_EQ(rd16(t.data() + 16), 0);
    EXPECT_TRUE(l4_checksum_ok(4, tcp_p, s.data(), d.data(), t.data(), t.size()));
}

TEST(RewriteCsum, ShortSegmentsAndOtherProtocolsUntouched)
{
    const addr4 s = a4(1), d = a4(2);
    bytes t(17, 0x11);
    l4_set_checksum(4, tcp_p, s.data(), d.data(), t.data(), t.size());
    EXPECT_EQ(t, bytes(17, 0x11));
    EXPECT_FALSE(l4_checksum_ok(4, tcp_p, s.data(), d.data(), t.data(), t.size()));
    bytes g(40, 0x22);
    l4_set_checksum(4, 47, s.data(), d.data(), g.data(), g.size());
    EXPECT_EQ(g, bytes(40, 0x22));
}

// ------------------------------------------------------------------------ full-NAT

/// An IPv4 TCP/UDP packet with correct checksums.
bytes pkt4(uint8_t proto, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
           const bytes& payload, uint8_t ttl = 64, uint8_t flags = 0x18)
{
    bytes l4 = proto == tcp_p ? tcp(sport, dport, flags, payload.size())
                              : udp(sport, dport, payload.size());
    l4 = with_payload(l4, payload, proto == tcp_p ? 20 : 8);
    bytes p = ipv4(proto, l4, src, dst);
    p[8] = ttl;
    fix4(p, false);
    return p;
}

bytes pkt6(uint8_t proto, const addr6& src, const addr6& dst, uint16_t sport, uint16_t dport,
           const bytes& payload, uint8_t hop = 64)
{
    bytes l4 = proto == tcp_p ? tcp(sport, dport, 0x18, payload.size())
                              : udp(sport, dport, payload.size());
    l4 = with_payload(l4, payload, proto == tcp_p ? 20 : 8);
    bytes p = ipv6(proto, l4);
    p[7] = hop;
    set_addrs6(p.data(), src, dst);
    fix6(p, 40, false);
    return p;
}

/// A random IPv4 TCP or UDP packet for the delta-form tests: random addresses and ports, up
/// to 39 payload bytes, TTL `ttl`; with `corner_l4`, an L4 checksum from corner16 (0, 0xffff
/// and their neighbours; a UDP 0 means no checksum).
bytes random_nat_pkt4(std::mt19937& rng, uint8_t proto, uint8_t ttl, bool corner_l4)
{
    const uint32_t src = rng();
    const uint32_t dst = rng();
    const auto sp = static_cast<uint16_t>(rng());
    const auto dp = static_cast<uint16_t>(rng());
    bytes p = pkt4(proto, src, dst, sp, dp, random_bytes(rng, rng() % 40), ttl);
    if (corner_l4) {
        wr16(p.data() + 20 + (proto == tcp_p ? 16 : 6), corner16(rng));
    }
    return p;
}

TEST(RewriteNat, DeltaFormMatchesNatRewriteV4Randomized)
{
    // The fast path's nat_rewrite_v4_delta against nat_rewrite_v4 (with TTL decrement) on
    // random TCP and UDP packets, corner checksums and a UDP checksum of 0 included.
    std::mt19937 rng(7);
    for (int i = 0; i < 20000; ++i) {
        const uint8_t proto = i % 2 == 0 ? tcp_p : udp_p;
        bytes p = random_nat_pkt4(rng, proto, static_cast<uint8_t>(rng() % 256), i % 7 == 0);
        bytes q = p;
        const addr4 ns = a4(rng());
        const addr4 nd = a4(rng());
        const uint16_t sp = static_cast<uint16_t>(rng());
        const uint16_t dp = static_cast<uint16_t>(rng());
        const bool ok =
            nat_rewrite_v4(p.data(), p.data() + 20, proto, {ns.data(), nd.data(), sp, dp}, true);
        uint64_t addrs;
        uint32_t ports;
        std::memcpy(&addrs, ns.data(), 4);
        std::memcpy(reinterpret_cast<uint8_t*>(&addrs) + 4, nd.data(), 4);
        std::memcpy(&ports, &sp, 2);
        std::memcpy(reinterpret_cast<uint8_t*>(&ports) + 2, &dp, 2);
        if (ok) {
            // The per-flow delta form gives the same bytes.
            uint64_t old_a;
            uint32_t old_p;
            std::memcpy(&old_a, q.data() + 12, 8);
            std::memcpy(&old_p, q.data() + 20, 4);
            nat_rewrite_v4_delta(q.data(), q.data() + 20, proto, addrs, ports,
                                 nat_v4_delta_of(old_a, old_p, addrs, ports));
            ASSERT_EQ(p, q) << "packet " << i;
        }
    }
}

TEST(RewriteNat, ReverseDeltaMatchesTheReverseRewriteRandomized)
{
    // nat_v4_delta_reverse (what the fast path applies to a reply from the flow's one stored
    // delta) gives the same bytes as the reply's own delta, on random TCP and UDP packets with
    // corner checksums (0, 0xffff and their neighbours), a UDP checksum of 0 included.
    std::mt19937 rng(11);
    for (int i = 0; i < 20000; ++i) {
        const uint8_t proto = i % 2 == 0 ? tcp_p : udp_p;
        bytes q = random_nat_pkt4(rng, proto, static_cast<uint8_t>(2 + rng() % 254), i % 5 == 0);
        if (i % 11 == 0) {
            wr16(q.data() + 10, corner16(rng));
        }
        // The reply carries the rewritten tuple (new_*); its rewrite restores the old one.
        uint64_t new_a;
        uint32_t new_p;
        std::memcpy(&new_a, q.data() + 12, 8);
        std::memcpy(&new_p, q.data() + 20, 4);
        const uint64_t old_a = (uint64_t{rng()} << 32) | rng();
        const uint32_t old_p = rng();
        bytes r = q;
        const nat_v4_delta fwd = nat_v4_delta_of(old_a, old_p, new_a, new_p);
        const nat_v4_delta rev = nat_v4_delta_of(new_a, new_p, old_a, old_p);
        ASSERT_EQ(nat_v4_delta_reverse(fwd).ip, rev.ip) << "packet " << i;
        ASSERT_EQ(nat_v4_delta_reverse(fwd).l4, rev.l4) << "packet " << i;
        nat_rewrite_v4_delta(q.data(), q.data() + 20, proto, old_a, old_p,
                             nat_v4_delta_of(new_a, new_p, old_a, old_p));
        nat_rewrite_v4_delta(r.data(), r.data() + 20, proto, old_a, old_p,
                             nat_v4_delta_reverse(fwd));
        ASSERT_EQ(q, r) << "packet " << i;
    }
    // A rewrite whose L4 change nets to zero (addresses and ports swapped: the same sums),
    // the one case where the negation needs its zero written as nat_v4_delta_of writes it.
    for (int i = 0; i < 1000; ++i) {
        const uint64_t x = rng();
        const uint64_t y = rng();
        const uint32_t p = rng();
        const nat_v4_delta fwd = nat_v4_delta_of(x | y << 32, p, y | x << 32, std::rotl(p, 16));
        const nat_v4_delta rev = nat_v4_delta_of(y | x << 32, std::rotl(p, 16), x | y << 32, p);
        EXPECT_EQ(fwd.l4, 0xffff);
        EXPECT_EQ(nat_v4_delta_reverse(fwd).ip, rev.ip) << i;
        EXPECT_EQ(nat_v4_delta_reverse(fwd).l4, rev.l4) << i;
    }
    // Every forward delta, against the definition (the ones' complement values agree).
    for (uint32_t ip = 0; ip <= 0xffff; ++ip) {
        const auto r = nat_v4_delta_reverse({static_cast<uint16_t>(ip), static_cast<uint16_t>(ip)});
        // r + fwd = twice the TTL change (0xfffd) and ~fwd + fwd = 0 (mod 0xffff).
        EXPECT_EQ((r.ip + ip) % 0xffff, 0xfffdu % 0xffff) << ip;
        EXPECT_EQ((r.l4 + ip) % 0xffff, 0u) << ip;
    }
}

TEST(RewriteNat, Tcp4ExactBytes)
{
    const bytes payload = {'h', 'e', 'l', 'l', 'o', '!', '\n'};
    bytes p = pkt4(tcp_p, 0xcb007107, 0xc000020a, 51000, 80, payload);
    ASSERT_TRUE(l4_checksum_ok(4, tcp_p, p.data() + 12, p.data() + 16, p.data() + 20, 27));
    const addr4 ns = a4(0x0a000001), nd = a4(0x0a000009);
    const nat_tuple t{ns.data(), nd.data(), wire(40001), wire(8080)};
    ASSERT_TRUE(nat_rewrite_v4(p.data(), p.data() + 20, tcp_p, t, true));
    const bytes want = pkt4(tcp_p, 0x0a000001, 0x0a000009, 40001, 8080, payload, 63);
    EXPECT_EQ(p, want);
    EXPECT_EQ(csum(p.data(), 20), 0);
    EXPECT_TRUE(l4_checksum_ok(4, tcp_p, p.data() + 12, p.data() + 16, p.data() + 20, 27));
}

TEST(RewriteNat, Udp4ExactBytesWithoutTtl)
{
    const bytes payload = {1, 2, 3};
    bytes p = pkt4(udp_p, 0xcb007107, 0xc000020a, 5353, 53, payload, 1);
    const addr4 ns = a4(0xc6120001), nd = a4(0xc6120002);
    const nat_tuple t{ns.data(), nd.data(), wire(1), wire(65535)};
    ASSERT_TRUE(nat_rewrite_v4(p.data(), p.data() + 20, udp_p, t, false)); // TTL 1 kept
    EXPECT_EQ(p, pkt4(udp_p, 0xc6120001, 0xc6120002, 1, 65535, payload, 1));
}

TEST(RewriteNat, Udp4ZeroChecksumStaysZero)
{
    bytes p = pkt4(udp_p, 0x0a000001, 0x0a000002, 1000, 53, {9, 9, 9, 9});
    p[26] = p[27] = 0;
    const addr4 ns = a4(0x0b000001), nd = a4(0x0b000002);
    ASSERT_TRUE(nat_rewrite_v4(p.data(), p.data() + 20, udp_p, {ns.data(), nd.data(), 7, 8}, true));
    EXPECT_EQ(p[26], 0);
    EXPECT_EQ(p[27], 0);
    EXPECT_EQ(csum(p.data(), 20), 0);
    EXPECT_EQ(p[8], 63);
}

TEST(RewriteNat, UdpChecksumComputingToZeroIsStoredAsFfff)
{
    // The rewritten packet's UDP sum is 0xffff (checksum 0): it must go out as 0xffff.
    const addr4 ns = a4(0x0a000001), nd = a4(0x0a000002);
    bytes want = pkt4(udp_p, 0x0a000001, 0x0a000002, 40000, 53, {0, 0});
    wr16(want.data() + 28, ref_l4_raw(4, udp_p, ns.data(), nd.data(), want.data() + 20, 10));
    fix4(want, false);
    ASSERT_EQ(rd16(want.data() + 26), 0xffff);
    bytes p = pkt4(udp_p, 0xcb007107, 0xc000020a, 51000, 5353, {want[28], want[29]});
    ASSERT_NE(rd16(p.data() + 26), 0xffff);
    ASSERT_TRUE(nat_rewrite_v4(p.data(), p.data() + 20, udp_p,
                               {ns.data(), nd.data(), wire(40000), wire(53)}, false));
    EXPECT_EQ(p, want);

    // Same over IPv6.
    const addr6 s6 = a6(0x2001, 0x10), d6 = a6(0x2001, 0x20);
    bytes w6 = pkt6(udp_p, s6, d6, 40000, 53, {0, 0});
    wr16(w6.data() + 48, ref_l4_raw(6, udp_p, s6.data(), d6.data(), w6.data() + 40, 10));
    fix6(w6, 40, false);
    ASSERT_EQ(rd16(w6.data() + 46), 0xffff);
    bytes p6 = pkt6(udp_p, a6(0xfd00, 1), a6(0xfd00, 2), 9, 9, {w6[48], w6[49]});
    ASSERT_TRUE(nat_rewrite_v6(p6.data(), p6.data() + 40, udp_p,
                               {s6.data(), d6.data(), wire(40000), wire(53)}, false));
    EXPECT_EQ(p6, w6);
}

TEST(RewriteNat, TtlOneOrZeroRefused)
{
    const addr4 ns = a4(0x0b000001), nd = a4(0x0b000002);
    const nat_tuple t{ns.data(), nd.data(), wire(1), wire(2)};
    for (uint8_t ttl : {uint8_t{0}, uint8_t{1}}) {
        const bytes orig = pkt4(tcp_p, 0x0a000001, 0x0a000002, 1000, 80, {}, ttl);
        bytes p = orig;
        EXPECT_FALSE(nat_rewrite_v4(p.data(), p.data() + 20, tcp_p, t, true));
        EXPECT_EQ(p, orig) << "unchanged";
    }
    bytes p = pkt4(tcp_p, 0x0a000001, 0x0a000002, 1000, 80, {}, 2);
    ASSERT_TRUE(nat_rewrite_v4(p.data(), p.data() + 20, tcp_p, t, true));
    EXPECT_EQ(p[8], 1);
    EXPECT_EQ(p, pkt4(tcp_p, 0x0b000001, 0x0b000002, 1, 2, {}, 1));

    const addr6 s6 = a6(0x2001, 3), d6 = a6(0x2001, 4);
    for (uint8_t hop : {uint8_t{0}, uint8_t{1}}) {
        const bytes orig6 = pkt6(udp_p, a6(0x2001, 1), a6(0x2001, 2), 1, 2, {5}, hop);
        bytes q = orig6;
        EXPECT_FALSE(
            nat_rewrite_v6(q.data(), q.data() + 40, udp_p, {s6.data(), d6.data(), 3, 4}, true));
        EXPECT_EQ(q, orig6);
    }
    bytes q = pkt6(udp_p, a6(0x2001, 1), a6(0x2001, 2), 1, 2, {5}, 2);
    ASSERT_TRUE(nat_rewrite_v6(q.data(), q.data() + 40, udp_p,
                               {s6.data(), d6.data(), wire(3), wire(4)}, true));
    EXPECT_EQ(q, pkt6(udp_p, s6, d6, 3, 4, {5}, 1));
}

TEST(RewriteNat, OtherProtocolsRefused)
{
    const bytes orig = ipv4(1, icmp_echo(1, 1));
    bytes p = orig;
    const addr4 ns = a4(1), nd = a4(2);
    EXPECT_FALSE(nat_rewrite_v4(p.data(), p.data() + 20, 1, {ns.data(), nd.data(), 0, 0}, false));
    EXPECT_EQ(p, orig);
}

TEST(RewriteNat, ReflectionThroughPointersIntoThePacket)
{
    // Swap source and destination with the tuple pointing at the packet's own addresses.
    bytes p = pkt4(tcp_p, 0x0a000001, 0x0a000002, 1000, 2000, {1, 2, 3, 4, 5}, 64, 0x12);
    const nat_tuple t{p.data() + 16, p.data() + 12, wire(2000), wire(1000)};
    ASSERT_TRUE(nat_rewrite_v4(p.data(), p.data() + 20, tcp_p, t, false));
    EXPECT_EQ(p, pkt4(tcp_p, 0x0a000002, 0x0a000001, 2000, 1000, {1, 2, 3, 4, 5}, 64, 0x12));

    bytes q = pkt6(udp_p, a6(0x2001, 1), a6(0xfd00, 2), 1000, 2000, {7, 7});
    const nat_tuple t6{q.data() + 24, q.data() + 8, wire(2000), wire(1000)};
    ASSERT_TRUE(nat_rewrite_v6(q.data(), q.data() + 40, udp_p, t6, false));
    EXPECT_EQ(q, pkt6(udp_p, a6(0xfd00, 2), a6(0x2001, 1), 2000, 1000, {7, 7}));
}

TEST(RewriteNat, IncrementalEqualsRecomputeRandomized4)
{
    std::mt19937 rng(4);
    for (int iter = 0; iter < 10000; ++iter) {
        const uint8_t proto = (rng() & 1) != 0 ? tcp_p : udp_p;
        const bytes payload = random_bytes(rng, rng() % 64);
        const uint8_t ttl = static_cast<uint8_t>(2 + rng() % 254);
        const bool dec = (rng() & 1) != 0;
        const uint32_t ns = rng(), nd = rng();
        const uint16_t sp = corner16(rng), dp = corner16(rng);
        bytes p = pkt4(proto, rng(), rng(), corner16(rng), corner16(rng), payload, ttl);
        bytes want = pkt4(proto, ns, nd, sp, dp, payload, dec ? ttl - 1 : ttl);
        if (proto == udp_p && rng() % 8 == 0) {
            p[26] = p[27] = 0;
            want[26] = want[27] = 0;
        }
        const addr4 s = a4(ns), d = a4(nd);
        ASSERT_TRUE(nat_rewrite_v4(p.data(), p.data() + 20, proto,
                                   {s.data(), d.data(), wire(sp), wire(dp)}, dec));
        ASSERT_EQ(p, want) << "iteration " << iter;
        ASSERT_TRUE(
            l4_checksum_ok(4, proto, p.data() + 12, p.data() + 16, p.data() + 20, p.size() - 20));
    }
}

TEST(RewriteNat, IncrementalEqualsRecomputeRandomized6)
{
    std::mt19937 rng(6);
    auto rnd6 = [&] {
        addr6 a;
        for (auto& x : a) {
            x = static_cast<uint8_t>(rng() % 4 == 0 ? (rng() % 2 ? 0xff : 0) : rng());
        }
        return a;
    };
    for (int iter = 0; iter < 10000; ++iter) {
        const uint8_t proto = (rng() & 1) != 0 ? tcp_p : udp_p;
        const bytes payload = random_bytes(rng, rng() % 64);
        const uint8_t hop = static_cast<uint8_t>(2 + rng() % 254);
        const bool dec = (rng() & 1) != 0;
        const addr6 ns = rnd6(), nd = rnd6();
        const uint16_t sp = corner16(rng), dp = corner16(rng);
        bytes p = pkt6(proto, rnd6(), rnd6(), corner16(rng), corner16(rng), payload, hop);
        const bytes want = pkt6(proto, ns, nd, sp, dp, payload, dec ? hop - 1 : hop);
        ASSERT_TRUE(nat_rewrite_v6(p.data(), p.data() + 40, proto,
                                   {ns.data(), nd.data(), wire(sp), wire(dp)}, dec));
        ASSERT_EQ(p, want) << "iteration " << iter;
        ASSERT_TRUE(
            l4_checksum_ok(6, proto, p.data() + 8, p.data() + 24, p.data() + 40, p.size() - 40));
    }
}

// ------------------------------------------------------------------------ MSS clamping

/// An IPv4 TCP packet whose header carries `opts` (padded by the caller to 4 bytes).
bytes syn4(const bytes& opts, uint8_t flags = 0x02, size_t payload = 0)
{
    bytes t = tcp(40000, 443, flags, payload);
    t.insert(t.begin() + 20, opts.begin(), opts.end());
    t[12] = static_cast<uint8_t>(((20 + opts.size()) / 4) << 4);
    for (size_t i = 0; i < payload; ++i) {
        t[20 + opts.size() + i] = static_cast<uint8_t>(i * 7);
    }
    bytes p = ipv4(tcp_p, t, 0x0a000001, 0x0a000002);
    fix4(p);
    return p;
}

bool clamp(bytes& p, uint16_t max_mss)
{
    return tcp_clamp_mss(p.data() + 20, (p[32] >> 4) * 4u, max_mss);
}

TEST(RewriteMss, ClampsOnlyOption)
{
    bytes p = syn4({2, 4, 0x05, 0xb4}, 0x02, 10); // MSS 1460
    EXPECT_TRUE(clamp(p, 1400));
    EXPECT_EQ(p, syn4({2, 4, 0x05, 0x78}, 0x02, 10));
    EXPECT_FALSE(clamp(p, 1400)) << "already at the limit";
    EXPECT_FALSE(clamp(p, 1500));
    EXPECT_EQ(p, syn4({2, 4, 0x05, 0x78}, 0x02, 10));
}

TEST(RewriteMss, LinuxSynLayoutAndSynAck)
{
    const bytes ts = {8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0};
    auto opts = [&](uint8_t hi, uint8_t lo) {
        bytes o = {2, 4, hi, lo, 4, 2};
        o.insert(o.end(), ts.begin(), ts.end());
        o.insert(o.end(), {1, 3, 3, 7});
        return o;
    };
    bytes p = syn4(opts(0x23, 0x28)); // 9000
    EXPECT_TRUE(clamp(p, 1360));
    EXPECT_EQ(p, syn4(opts(0x05, 0x50)));
    bytes sa = syn4(opts(0x05, 0xb4), 0x12);
    EXPECT_TRUE(clamp(sa, 1200));
    EXPECT_EQ(sa, syn4(opts(0x04, 0xb0), 0x12));
}

TEST(RewriteMss, NopPaddedOddOffset)
{
    // The MSS value sits at an odd offset of the segment: its bytes weigh swapped.
    bytes p = syn4({1, 2, 4, 0x23, 0x28, 1, 1, 1}, 0x02, 3);
    EXPECT_TRUE(clamp(p, 1460));
    EXPECT_EQ(p, syn4({1, 2, 4, 0x05, 0xb4, 1, 1, 1}, 0x02, 3));
    EXPECT_TRUE(
        l4_checksum_ok(4, tcp_p, p.data() + 12, p.data() + 16, p.data() + 20, p.size() - 20));
    bytes q = syn4({1, 1, 1, 2, 4, 0xff, 0x01, 0}, 0x02, 0);
    EXPECT_TRUE(clamp(q, 0x0102));
    EXPECT_EQ(q, syn4({1, 1, 1, 2, 4, 0x01, 0x02, 0}, 0x02, 0));
}

TEST(RewriteMss, TimestampsBeforeMss)
{
    bytes p = syn4({1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 0x05, 0xdc});
    EXPECT_TRUE(clamp(p, 1220));
    EXPECT_EQ(p, syn4({1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 0x04, 0xc4}));
}

TEST(RewriteMss, LeftAlone)
{
    struct c {
        const char* what;
        bytes opts;
        uint8_t flags;
    };
    const c cases[] = {
        {"no MSS", {1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}, 0x02},
        {"no options", {}, 0x02},
        {"not SYN", {2, 4, 0x05, 0xb4}, 0x10},
        {"FIN|ACK", {2, 4, 0x05, 0xb4}, 0x11},
        {"end of list first", {0, 0, 0, 0, 2, 4, 0x05, 0xb4}, 0x02},
        {"zero length", {3, 0, 1, 1, 2, 4, 0x05, 0xb4}, 0x02},
        {"length one", {3, 1, 1, 1, 2, 4, 0x05, 0xb4}, 0x02},
        {"overrun", {8, 40, 0, 0, 2, 4, 0x05, 0xb4}, 0x02},
        {"MSS length 3", {2, 3, 0x05, 0xb4}, 0x02},
        {"MSS length 6", {2, 6, 0x05, 0xb4, 0, 0, 0, 0}, 0x02},
        {"MSS cut by header end", {1, 1, 1, 2}, 0x02},
        {"kind without length", {1, 1, 1, 4}, 0x02},
    };
    for (const auto& k : cases) {
        const bytes orig = syn4(k.opts, k.flags, 4);
        bytes p = orig;
        EXPECT_FALSE(clamp(p, 536)) << k.what;
        EXPECT_EQ(p, orig) << k.what;
    }
    // hdr_len shorter than the data offset bounds the walk.
    bytes p = syn4({2, 4, 0x05, 0xb4});
    const bytes orig = p;
    EXPECT_FALSE(tcp_clamp_mss(p.data() + 20, 20, 536));
    EXPECT_FALSE(tcp_clamp_mss(p.data() + 20, 23, 536));
    EXPECT_FALSE(tcp_clamp_mss(p.data() + 20, 12, 536));
    EXPECT_EQ(p, orig);
}

TEST(RewriteMss, RandomLayouts)
{
    std::mt19937 rng(5);
    for (int iter = 0; iter < 3000; ++iter) {
        bytes before;
        const int n_opts = static_cast<int>(rng() % 4);
        for (int i = 0; i < n_opts; ++i) {
            switch (rng() % 4) {
            case 0:
                before.push_back(1);
                break;
            case 1:
                before.insert(before.end(), {4, 2});
                break;
            case 2:
                before.insert(before.end(), {3, 3, static_cast<uint8_t>(rng() % 15)});
                break;
            default: {
                before.insert(before.end(), {8, 10});
                const bytes r = random_bytes(rng, 8);
                before.insert(before.end(), r.begin(), r.end());
            }
            }
        }
        const uint16_t mss = corner16(rng);
        const uint16_t max = corner16(rng);
        auto layout = [&](uint16_t v) {
            bytes o = before;
            o.insert(o.end(), {2, 4, static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)});
            while (o.size() % 4 != 0) {
                o.push_back(1);
            }
            return o;
        };
        const size_t payload = rng() % 9;
        bytes p = syn4(layout(mss), 0x02, payload);
        if (p.size() - 20 > 60 + payload) {
            continue; // more options than a TCP header holds
        }
        const bool lowered = clamp(p, max);
        ASSERT_EQ(lowered, mss > max) << iter;
        ASSERT_EQ(p, syn4(layout(lowered ? max : mss), 0x02, payload)) << iter;
        ASSERT_TRUE(
            l4_checksum_ok(4, tcp_p, p.data() + 12, p.data() + 16, p.data() + 20, p.size() - 20));
    }
}

// ------------------------------------------------------------------------ encapsulation

TEST(RewriteEncap, Ipip4ExactBytes)
{
    const addr4 s = a4(0x0a000001), d = a4(0x0a000064);
    for (uint8_t fam : {uint8_t{4}, uint8_t{6}}) {
        uint8_t out[ipip4_len + 2];
        out[20] = out[21] = 0xee;
        write_ipip4(out, s.data(), d.data(), fam, 1480, 63, 0xb8);
        bytes want = {0x45, 0xb8, 0x05, 0xdc, 0x00,
                      0x00, 0x40, 0x00, 63,   static_cast<uint8_t>(fam == 4 ? 4 : 41),
                      0,    0,    10,   0,    0,
                      1,    10,   0,    0,    100};
        wr16(want.data() + 10, csum(want.data(), 20));
        EXPECT_EQ(bytes(out, out + 20), want) << int{fam};
        EXPECT_EQ(csum(out, 20), 0);
        EXPECT_EQ(out[20], 0xee) << "writes 20 bytes only";
    }
    // Known value: 45 00 00 54 0000 4000 4004 CS c0a8 0001 c0a8 00c7 -> CS = 0xb88d.
    uint8_t out[ipip4_len];
    const addr4 s2 = a4(0xc0a80001), d2 = a4(0xc0a800c7);
    write_ipip4(out, s2.data(), d2.data(), 4, 64, 64, 0);
    EXPECT_EQ(rd16(out + 10), 0xb88d);
}

TEST(RewriteEncap, Ipip6ExactBytes)
{
    const addr6 s = a6(0x2001, 1), d = a6(0x2001, 0x64);
    for (uint8_t fam : {uint8_t{4}, uint8_t{6}}) {
        uint8_t out[ipip6_len];
        write_ipip6(out, s.data(), d.data(), fam, 1400, 17, 0xb8, 0xfff12345u);
        bytes want = {0x6b, 0x81, 0x23, 0x45, 0x05, 0x78, static_cast<uint8_t>(fam == 4 ? 4 : 41),
                      17};
        want.insert(want.end(), s.begin(), s.end());
        want.insert(want.end(), d.begin(), d.end());
        EXPECT_EQ(bytes(out, out + ipip6_len), want) << int{fam};
    }
}

TEST(RewriteEncap, Gue4ExactBytes)
{
    const addr4 s = a4(0xc6120001), d = a4(0xc6120002);
    uint8_t out[gue4_len];
    write_gue4(out, s.data(), d.data(), wire(0xbeef), wire(gue_default_port), 1000, 64, 0x10);
    bytes want = {0x45, 0x10, 0x04, 0x04, 0, 0, 0x40, 0,    64,   17,   0,    0,    198, 18,
                  0,    1,    198,  18,   0, 2, 0xbe, 0xef, 0x17, 0xc0, 0x03, 0xf0, 0,   0};
    wr16(want.data() + 10, csum(want.data(), 20));
    EXPECT_EQ(bytes(out, out + gue4_len), want);
    EXPECT_EQ(csum(out, 20), 0);
}

TEST(RewriteEncap, Gue6ChecksumCoversTheInnerPacket)
{
    std::mt19937 rng(7);
    const addr6 s = a6(0x2001, 0xa), d = a6(0x2001, 0xb);
    for (int iter = 0; iter < 200; ++iter) {
        const bytes inner = pkt4(tcp_p, rng(), rng(), 1, 2, random_bytes(rng, rng() % 100));
        bytes buf(gue6_len + inner.size() + 1, 0xee);
        std::copy(inner.begin(), inner.end(), buf.begin() + gue6_len);
        const auto ilen = static_cast<uint16_t>(inner.size());
        write_gue6(buf.data(), s.data(), d.data(), wire(0x1234), wire(gue_default_port), ilen, 64,
                   0, 0xabcde);
        bytes want = {0x60, 0x0a, 0xbc, 0xde, 0, 0, 17, 64};
        wr16(want.data() + 4, static_cast<uint16_t>(8 + ilen));
        want.insert(want.end(), s.begin(), s.end());
        want.insert(want.end(), d.begin(), d.end());
        want.insert(want.end(), {0x12, 0x34, 0x17, 0xc0, 0, 0, 0, 0});
        wr16(want.data() + 44, static_cast<uint16_t>(8 + ilen));
        want.insert(want.end(), inner.begin(), inner.end());
        wr16(want.data() + 46, ref_l4(6, udp_p, s.data(), d.data(), want.data() + 40, 8 + ilen));
        ASSERT_EQ(bytes(buf.begin(), buf.end() - 1), want);
        ASSERT_EQ(buf.back(), 0xee);
        ASSERT_TRUE(l4_checksum_ok(6, udp_p, s.data(), d.data(), buf.data() + 40, 8u + ilen));
    }
    // An inner packet that makes the sum 0xffff: the checksum goes out as 0xffff, never 0.
    bytes buf(gue6_len + 4, 0);
    write_gue6(buf.data(), s.data(), d.data(), wire(1), wire(2), 4, 64, 0, 0);
    wr16(buf.data() + 48, ref_l4_raw(6, udp_p, s.data(), d.data(), buf.data() + 40, 12));
    write_gue6(buf.data(), s.data(), d.data(), wire(1), wire(2), 4, 64, 0, 0);
    EXPECT_EQ(rd16(buf.data() + 46), 0xffff);
    EXPECT_TRUE(l4_checksum_ok(6, udp_p, s.data(), d.data(), buf.data() + 40, 12));
}

// ------------------------------------------------------------------------ ICMP errors

/// An ICMPv4 error message quoting `quote`.
bytes icmp4_err(uint8_t type, uint8_t code, const bytes& quote)
{
    bytes m = {type, code, 0, 0, 0, 0, 0, 0};
    m.insert(m.end(), quote.begin(), quote.end());
    wr16(m.data() + 2, csum(m.data(), m.size()));
    return m;
}

/// An ICMPv6 error; the checksum is set later, when the outer addresses are known.
bytes icmp6_err(uint8_t type, uint8_t code, const bytes& quote)
{
    bytes m = {type, code, 0, 0, 0, 0, 0x05, 0x00};
    m.insert(m.end(), quote.begin(), quote.end());
    return m;
}

/// Outer IPv6 around an ICMPv6 message, checksum computed.
bytes outer6(const addr6& s, const addr6& d, const bytes& icmp, uint8_t hop = 64)
{
    bytes p = ipv6(58, icmp);
    p[7] = hop;
    set_addrs6(p.data(), s, d);
    wr16(p.data() + 42, ref_l4(6, 58, s.data(), d.data(), p.data() + 40, icmp.size()));
    return p;
}

bytes outer4(uint32_t s, uint32_t d, const bytes& icmp, uint8_t ttl = 64)
{
    bytes p = ipv4(1, icmp, s, d);
    p[8] = ttl;
    fix4(p);
    return p;
}

TEST(RewriteIcmp, Quote4WithIpOptions)
{
    bytes inner = ipv4(udp_p, udp(40001, 5353, 12), 0x0a000001, 0x0a000009, {0x94, 4, 0, 0});
    fix4(inner, false);
    const bytes m = icmp4_err(3, 3, inner);
    icmp_quote q;
    ASSERT_TRUE(icmp4_error_quote(m.data(), m.size(), q));
    EXPECT_EQ(q.ip_off, 8);
    EXPECT_EQ(q.l4_off, 8 + 24);
    EXPECT_EQ(q.len, inner.size());
    EXPECT_EQ(q.proto, udp_p);

    // Exactly the IP header and 8 bytes of L4 is enough; one byte less is not.
    const bytes min_quote(inner.begin(), inner.begin() + 24 + 8);
    ASSERT_TRUE(icmp4_error_quote(icmp4_err(11, 0, min_quote).data(), 8 + 32, q));
    EXPECT_EQ(q.len, 32);
    const bytes short_quote(inner.begin(), inner.begin() + 24 + 7);
    EXPECT_FALSE(icmp4_error_quote(icmp4_err(11, 0, short_quote).data(), 8 + 31, q));
    // Options make the header longer than the bytes present.
    bytes cut(inner.begin(), inner.begin() + 36);
    cut[0] = 0x4f; // IHL 60
    EXPECT_FALSE(icmp4_error_quote(icmp4_err(3, 1, cut).data(), 8 + 36, q));
    const bytes hdr_only(inner.begin(), inner.begin() + 19);
    EXPECT_FALSE(icmp4_error_quote(icmp4_err(3, 1, hdr_only).data(), 8 + 19, q));
}

TEST(RewriteIcmp, Quote4TypesAndFragments)
{
    bytes inner = pkt4(tcp_p, 0x0a000001, 0x0a000002, 1000, 80, {});
    icmp_quote q;
    for (uint8_t type : {3, 4, 5, 11, 12}) {
        const bytes m = icmp4_err(type, 0, inner);
        EXPECT_TRUE(icmp4_error_quote(m.data(), m.size(), q)) << int{type};
        EXPECT_EQ(q.l4_off, 28);
        EXPECT_EQ(q.proto, tcp_p);
    }
    for (uint8_t type : {0, 8, 13, 14, 1, 2}) {
        const bytes m = icmp4_err(type, 0, inner);
        EXPECT_FALSE(icmp4_error_quote(m.data(), m.size(), q)) << int{type};
    }
    const bytes echo = icmp_echo(1, 2, 60);
    EXPECT_FALSE(icmp4_error_quote(echo.data(), echo.size(), q));

    bytes first = ipv4(tcp_p, tcp(1, 2, 2), 1, 2, {}, 0x2000); // MF, offset 0
    EXPECT_TRUE(icmp4_error_quote(icmp4_err(3, 4, first).data(), 8 + first.size(), q));
    bytes later = ipv4(tcp_p, tcp(1, 2, 2), 1, 2, {}, 0x2003); // offset 24
    EXPECT_FALSE(icmp4_error_quote(icmp4_err(3, 4, later).data(), 8 + later.size(), q));
    bytes v6 = inner;
    v6[0] = 0x65;
    EXPECT_FALSE(icmp4_error_quote(icmp4_err(3, 4, v6).data(), 8 + v6.size(), q));
    EXPECT_FALSE(icmp4_error_quote(icmp4_err(3, 4, inner).data(), 7, q));
}

TEST(RewriteIcmp, Quote6WithExtensionHeaders)
{
    icmp_quote q;
    // Hop-by-hop (8 bytes, a PadN) then UDP.
    const bytes hbh = {udp_p, 0, 1, 4, 0, 0, 0, 0};
    const bytes inner = ipv6(udp_p, udp(40001, 53, 4), hbh, 0);
    bytes m = icmp6_err(1, 4, inner);
    ASSERT_TRUE(icmp6_error_quote(m.data(), m.size(), q));
    EXPECT_EQ(q.ip_off, 8);
    EXPECT_EQ(q.l4_off, 8 + 48);
    EXPECT_EQ(q.len, inner.size());
    EXPECT_EQ(q.proto, udp_p);

    // Destination options (16 bytes) then AH (12 bytes: length field 1) then TCP.
    bytes ext = {51, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    ext.insert(ext.end(), {tcp_p, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1});
    const bytes inner2 = ipv6(tcp_p, tcp(1, 2, 0x02), ext, 60);
    m = icmp6_err(3, 0, inner2);
    ASSERT_TRUE(icmp6_error_quote(m.data(), m.size(), q));
    EXPECT_EQ(q.l4_off, 8 + 40 + 16 + 12);
    EXPECT_EQ(q.proto, tcp_p);
    // Cut inside the AH, and with 7 bytes of L4.
    EXPECT_FALSE(icmp6_error_quote(m.data(), 8 + 40 + 16 + 7, q));
    EXPECT_FALSE(icmp6_error_quote(m.data(), 8 + 40 + 16 + 12 + 7, q));
    EXPECT_TRUE(icmp6_error_quote(m.data(), 8 + 40 + 16 + 12 + 8, q));
    EXPECT_EQ(q.len, 40 + 16 + 12 + 8);

    // Fragment header: the first fragment is fine, a later one has no L4 header.
    const bytes frag0 = {udp_p, 0, 0x00, 0x01, 0, 0, 0, 7}; // offset 0, M
    m = icmp6_err(2, 0, ipv6(udp_p, udp(1, 2), frag0, 44));
    ASSERT_TRUE(icmp6_error_quote(m.data(), m.size(), q));
    EXPECT_EQ(q.l4_off, 8 + 48);
    const bytes frag1 = {udp_p, 0, 0x00, 0xb9, 0, 0, 0, 7}; // offset 23
    m = icmp6_err(2, 0, ipv6(udp_p, udp(1, 2), frag1, 44));
    EXPECT_FALSE(icmp6_error_quote(m.data(), m.size(), q));
}

TEST(RewriteIcmp, Quote6Rejections)
{
    icmp_quote q;
    const bytes inner = ipv6(udp_p, udp(1, 2, 8));
    for (uint8_t type : {1, 2, 3, 4}) {
        const bytes m = icmp6_err(type, 0, inner);
        EXPECT_TRUE(icmp6_error_quote(m.data(), m.size(), q)) << int{type};
        EXPECT_EQ(q.l4_off, 48);
    }
    for (uint8_t type : {0, 5, 127, 128, 129, 135}) {
        const bytes m = icmp6_err(type, 0, inner);
        EXPECT_FALSE(icmp6_error_quote(m.data(), m.size(), q)) << int{type};
    }
    bytes m = icmp6_err(1, 0, inner);
    EXPECT_FALSE(icmp6_error_quote(m.data(), 8 + 40 + 7, q)) << "7 bytes of L4";
    EXPECT_FALSE(icmp6_error_quote(m.data(), 8 + 39, q)) << "IPv6 header cut";
    m[8] = 0x45;
    EXPECT_FALSE(icmp6_error_quote(m.data(), m.size(), q)) << "version 4";
    // An extension header chain deeper than 8 is not followed.
    bytes ext;
    for (int i = 0; i < 9; ++i) {
        ext.insert(ext.end(), {static_cast<uint8_t>(i == 8 ? udp_p : 60), 0, 1, 4, 0, 0, 0, 0});
    }
    m = icmp6_err(1, 0, ipv6(udp_p, udp(1, 2), ext, 60));
    EXPECT_FALSE(icmp6_error_quote(m.data(), m.size(), q));
    ext.resize(8 * 8);
    ext[7 * 8] = udp_p;
    m = icmp6_err(1, 0, ipv6(udp_p, udp(1, 2), ext, 60));
    EXPECT_TRUE(icmp6_error_quote(m.data(), m.size(), q));
    EXPECT_EQ(q.l4_off, 8 + 40 + 64);
}

/// Full-NAT ICMPv4 scenario: client C:51000 -> VIP V:53 was sent as SNAT S:40001 ->
/// backend B:5353; router R returns an error to S quoting that packet; the LB translates it
/// into an error from V to C quoting C:51000 -> V:53.
struct v4_case {
    uint32_t c = 0xcb007107, v = 0xc000020a, s = 0x0a000001, b = 0x0a000009, r = 0x0a0000fe;
};

TEST(RewriteIcmp, Translate4UdpFullQuote)
{
    const v4_case k;
    const bytes payload = {'q', 'u', 'e', 'r', 'y', 0, 1};
    bytes sent = pkt4(udp_p, k.s, k.b, 40001, 5353, payload, 63);
    bytes p = outer4(k.r, k.s, icmp4_err(3, 3, sent), 64);

    icmp_quote q;
    ASSERT_TRUE(icmp4_error_quote(p.data() + 20, p.size() - 20, q));
    const addr4 v = a4(k.v), c = a4(k.c);
    const nat_tuple inner{c.data(), v.data(), wire(51000), wire(53)};
    ASSERT_TRUE(icmp4_error_translate(p.data(), p.data() + 20, p.size() - 20, q, v.data(), c.data(),
                                      inner, true));

    const bytes quoted = pkt4(udp_p, k.c, k.v, 51000, 53, payload, 63);
    const bytes want = outer4(k.v, k.c, icmp4_err(3, 3, quoted), 63);
    EXPECT_EQ(p, want);
    // Every checksum verifies on its own.
    EXPECT_EQ(csum(p.data(), 20), 0);
    EXPECT_EQ(csum(p.data() + 20, p.size() - 20), 0);
    EXPECT_EQ(csum(p.data() + 28, 20), 0);
    EXPECT_TRUE(
        l4_checksum_ok(4, udp_p, p.data() + 40, p.data() + 44, p.data() + 48, 8 + payload.size()));
    EXPECT_TRUE(l4_checksum_ok(4, 1, nullptr, nullptr, p.data() + 20, p.size() - 20));
}

TEST(RewriteIcmp, Translate4UdpZeroChecksumAndOptions)
{
    const v4_case k;
    bytes sent = ipv4(udp_p, udp(40001, 5353, 5), k.s, k.b, {1, 1, 1, 0});
    fix4(sent); // UDP checksum 0 kept
    bytes p = outer4(k.r, k.s, icmp4_err(11, 0, sent));
    icmp_quote q;
    ASSERT_TRUE(icmp4_error_quote(p.data() + 20, p.size() - 20, q));
    ASSERT_EQ(q.l4_off, 8 + 24);
    const addr4 v = a4(k.v), c = a4(k.c);
    ASSERT_TRUE(icmp4_error_translate(p.data(), p.data() + 20, p.size() - 20, q, v.data(), c.data(),
                                      {c.data(), v.data(), wire(51000), wire(53)}, false));
    bytes quoted = ipv4(udp_p, udp(51000, 53, 5), k.c, k.v, {1, 1, 1, 0});
    fix4(quoted);
    EXPECT_EQ(p, outer4(k.v, k.c, icmp4_err(11, 0, quoted)));
    EXPECT_EQ(rd16(p.data() + 28 + 24 + 6), 0) << "no checksum stays no checksum";
}

TEST(RewriteIcmp, Translate4TcpQuotes)
{
    const v4_case k;
    std::mt19937 rng(8);
    const bytes payload = random_bytes(rng, 40);
    const bytes sent = pkt4(tcp_p, k.s, k.b, 40001, 8443, payload, 61, 0x10);
    const bytes quoted = pkt4(tcp_p, k.c, k.v, 51000, 443, payload, 61, 0x10);
    const addr4 v = a4(k.v), c = a4(k.c);
    const nat_tuple inner{c.data(), v.data(), wire(51000), wire(443)};

    // Whole segment, 18 bytes of TCP (checksum field included) and 8 bytes of TCP.
    for (size_t l4_quoted : {size_t{20} + payload.size(), size_t{18}, size_t{8}}) {
        const bytes sq(sent.begin(), sent.begin() + 20 + static_cast<std::ptrdiff_t>(l4_quoted));
        bytes p = outer4(k.r, k.s, icmp4_err(3, 4, sq));
        const size_t icmp_len = p.size() - 20;
        p.insert(p.end(), {0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee,
                           0xee, 0xee});
        icmp_quote q;
        ASSERT_TRUE(icmp4_error_quote(p.data() + 20, icmp_len, q));
        ASSERT_TRUE(icmp4_error_translate(p.data(), p.data() + 20, icmp_len, q, v.data(), c.data(),
                                          inner, true));
        // The expected quote: the rewritten packet cut as much; its TCP checksum is the one
        // of the whole rewritten segment when it is quoted, else the untouched original.
        const bytes wq(quoted.begin(),
                       quoted.begin() + 20 + static_cast<std::ptrdiff_t>(l4_quoted));
        bytes want = outer4(k.v, k.c, icmp4_err(3, 4, wq), 63);
        want.insert(want.end(), 14, 0xee);
        EXPECT_EQ(p, want) << l4_quoted;
        EXPECT_EQ(csum(p.data() + 20, icmp_len), 0) << l4_quoted;
        EXPECT_EQ(csum(p.data() + 28, 20), 0) << l4_quoted;
        if (l4_quoted >= 18) {
            EXPECT_EQ(rd16(p.data() + 48 + 16), rd16(quoted.data() + 36)) << l4_quoted;
        }
        if (l4_quoted == 20 + payload.size()) {
            EXPECT_TRUE(
                l4_checksum_ok(4, tcp_p, p.data() + 40, p.data() + 44, p.data() + 48, l4_quoted));
        }
    }
}

TEST(RewriteIcmp, Translate4TcpEightBytesLeavesChecksumAlone)
{
    // With 8 bytes of TCP quoted, bytes 16..17 of the TCP header are not in the message: the
    // translation must not write there even though the buffer continues.
    const v4_case k;
    const bytes sent = pkt4(tcp_p, k.s, k.b, 40001, 8443, {}, 64, 0x02);
    const bytes sq(sent.begin(), sent.begin() + 28);
    bytes p = outer4(k.r, k.s, icmp4_err(3, 1, sq));
    const size_t icmp_len = p.size() - 20;
    p.insert(p.end(), sent.begin() + 28, sent.end()); // the rest of the TCP header as canary
    const bytes canary(sent.begin() + 28, sent.end());
    icmp_quote q;
    ASSERT_TRUE(icmp4_error_quote(p.data() + 20, icmp_len, q));
    const addr4 v = a4(k.v), c = a4(k.c);
    ASSERT_TRUE(icmp4_error_translate(p.data(), p.data() + 20, icmp_len, q, v.data(), c.data(),
                                      {c.data(), v.data(), wire(51000), wire(443)}, false));
    EXPECT_EQ(bytes(p.begin() + 20 + static_cast<std::ptrdiff_t>(icmp_len), p.end()), canary);
    EXPECT_EQ(csum(p.data() + 20, icmp_len), 0);
    EXPECT_EQ(rd16(p.data() + 48), 51000);
    EXPECT_EQ(rd16(p.data() + 50), 443);
}

TEST(RewriteIcmp, Translate4Refusals)
{
    const v4_case k;
    const addr4 v = a4(k.v), c = a4(k.c);
    const nat_tuple inner{c.data(), v.data(), wire(51000), wire(53)};
    icmp_quote q;

    const bytes sent = pkt4(udp_p, k.s, k.b, 40001, 5353, {1});
    for (uint8_t ttl : {uint8_t{0}, uint8_t{1}}) {
        const bytes orig = outer4(k.r, k.s, icmp4_err(3, 3, sent), ttl);
        bytes p = orig;
        ASSERT_TRUE(icmp4_error_quote(p.data() + 20, p.size() - 20, q));
        EXPECT_FALSE(icmp4_error_translate(p.data(), p.data() + 20, p.size() - 20, q, v.data(),
                                           c.data(), inner, true));
        EXPECT_EQ(p, orig);
    }
    bytes p = outer4(k.r, k.s, icmp4_err(3, 3, sent), 1);
    ASSERT_TRUE(icmp4_error_quote(p.data() + 20, p.size() - 20, q));
    EXPECT_TRUE(icmp4_error_translate(p.data(), p.data() + 20, p.size() - 20, q, v.data(), c.data(),
                                      inner, false));
    EXPECT_EQ(p[8], 1);

    // A quoted ICMP echo (no ports) is recognised but not translated.
    const bytes echo = ipv4(1, icmp_echo(5, 6, 8), k.s, k.b);
    const bytes orig = outer4(k.r, k.s, icmp4_err(3, 1, echo));
    p = orig;
    ASSERT_TRUE(icmp4_error_quote(p.data() + 20, p.size() - 20, q));
    EXPECT_EQ(q.proto, 1);
    EXPECT_FALSE(icmp4_error_translate(p.data(), p.data() + 20, p.size() - 20, q, v.data(),
                                       c.data(), inner, false));
    EXPECT_EQ(p, orig);
    // A quote that does not fit the message length.
    p = outer4(k.r, k.s, icmp4_err(3, 3, sent));
    ASSERT_TRUE(icmp4_error_quote(p.data() + 20, p.size() - 20, q));
    EXPECT_FALSE(icmp4_error_translate(p.data(), p.data() + 20, 8 + 20 + 7, q, v.data(), c.data(),
                                       inner, false));
}

TEST(RewriteIcmp, Translate6TcpWithExtensionHeader)
{
    const addr6 c = a6(0x2001, 0xc), v = a6(0x2001, 0x5), s = a6(0xfd00, 1), b = a6(0xfd00, 9),
                r = a6(0xfd00, 0xfe);
    const bytes payload = {9, 8, 7, 6, 5, 4, 3, 2, 1};
    const bytes dstopt = {tcp_p, 0, 1, 4, 0, 0, 0, 0};
    auto quoted_pkt = [&](const addr6& src, const addr6& dst, uint16_t sp, uint16_t dp) {
        bytes t = with_payload(tcp(sp, dp, 0x18, payload.size()), payload, 20);
        bytes p = ipv6(tcp_p, t, dstopt, 60);
        p[7] = 61;
        set_addrs6(p.data(), src, dst);
        fix6(p, 48, false);
        return p;
    };
    const bytes sent = quoted_pkt(s, b, 40001, 8443);
    ASSERT_TRUE(l4_checksum_ok(6, tcp_p, sent.data() + 8, sent.data() + 24, sent.data() + 48, 29));
    bytes p = outer6(r, s, icmp6_err(1, 4, sent), 64);
    icmp_quote q;
    ASSERT_TRUE(icmp6_error_quote(p.data() + 40, p.size() - 40, q));
    ASSERT_EQ(q.l4_off, 8 + 48);
    ASSERT_TRUE(icmp6_error_translate(p.data(), p.data() + 40, p.size() - 40, q, v.data(), c.data(),
                                      {c.data(), v.data(), wire(51000), wire(443)}, true));
    const bytes want = outer6(v, c, icmp6_err(1, 4, quoted_pkt(c, v, 51000, 443)), 63);
    EXPECT_EQ(p, want);
    EXPECT_TRUE(l4_checksum_ok(6, 58, v.data(), c.data(), p.data() + 40, p.size() - 40))
        << "ICMPv6 checksum over the new outer addresses";
    EXPECT_TRUE(
        l4_checksum_ok(6, tcp_p, p.data() + 48 + 8, p.data() + 48 + 24, p.data() + 48 + 48, 29));
}

TEST(RewriteIcmp, Translate6UdpAndRefusals)
{
    const addr6 c = a6(0x2001, 0xc), v = a6(0x2001, 0x5), s = a6(0xfd00, 1), b = a6(0xfd00, 9),
                r = a6(0xfd00, 0xfe);
    const bytes sent = pkt6(udp_p, s, b, 40001, 5353, {1, 2, 3}, 60);
    const nat_tuple inner{c.data(), v.data(), wire(51000), wire(53)};
    icmp_quote q;

    // Packet too big with a quote cut after 8 bytes of UDP (checksum inside: updated).
    const bytes cut(sent.begin(), sent.begin() + 48);
    bytes p = outer6(r, s, icmp6_err(2, 0, cut), 5);
    ASSERT_TRUE(icmp6_error_quote(p.data() + 40, p.size() - 40, q));
    ASSERT_TRUE(icmp6_error_translate(p.data(), p.data() + 40, p.size() - 40, q, v.data(), c.data(),
                                      inner, true));
    const bytes full = pkt6(udp_p, c, v, 51000, 53, {1, 2, 3}, 60);
    EXPECT_EQ(p, outer6(v, c, icmp6_err(2, 0, bytes(full.begin(), full.begin() + 48)), 4));

    for (uint8_t hop : {uint8_t{0}, uint8_t{1}}) {
        const bytes orig = outer6(r, s, icmp6_err(1, 4, sent), hop);
        bytes x = orig;
        ASSERT_TRUE(icmp6_error_quote(x.data() + 40, x.size() - 40, q));
        EXPECT_FALSE(icmp6_error_translate(x.data(), x.data() + 40, x.size() - 40, q, v.data(),
                                           c.data(), inner, true));
        EXPECT_EQ(x, orig);
    }
    bytes echo = ipv6(58, icmp_echo(1, 2, 8));
    echo[40] = 128;
    const bytes orig = outer6(r, s, icmp6_err(1, 4, echo));
    bytes x = orig;
    ASSERT_TRUE(icmp6_error_quote(x.data() + 40, x.size() - 40, q));
    EXPECT_EQ(q.proto, 58);
    EXPECT_FALSE(icmp6_error_translate(x.data(), x.data() + 40, x.size() - 40, q, v.data(),
                                       c.data(), inner, false));
    EXPECT_EQ(x, orig);
}

} // namespace
} // namespace sluice::net
