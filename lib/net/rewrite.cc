#include "sluice/net/rewrite.hh"

#include <bit>
#include <cstring>

namespace sluice::net {
namespace {

// Internally every sum is kept in "native" form: 16-bit words loaded with memcpy, as they sit
// in memory. One's-complement addition commutes with byte swapping (RFC 1071 §2(B)), so a
// checksum computed on native words is the byte swap of the big-endian one and can be stored
// back with memcpy: no swap on the per-packet paths. Only the functions whose contract is in
// big-endian values (csum_partial, csum_replace) convert at their edge.

constexpr uint8_t proto_icmp = 1;
constexpr uint8_t proto_tcp = 6;
constexpr uint8_t proto_udp = 17;
constexpr uint8_t proto_icmpv6 = 58;

uint16_t ld16(const uint8_t* p) noexcept
{
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

void st16(uint8_t* p, uint16_t v) noexcept
{
    std::memcpy(p, &v, 2);
}

uint32_t ld32(const uint8_t* p) noexcept
{
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

/// Big-endian value <-> native word (an involution).
uint16_t be_native(uint16_t v) noexcept
{
    if constexpr (std::endian::native == std::endian::little) {
        return __builtin_bswap16(v);
    } else {
        return v;
    }
}

uint16_t rd_be16(const uint8_t* p) noexcept
{
    return static_cast<uint16_t>((uint16_t{p[0]} << 8) | p[1]);
}

void wr_be16(uint8_t* p, uint16_t v) noexcept
{
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

/// Folds with end-around carry. Zero only when `s` is zero, which keeps RFC 1624 eqn. 3 exact.
uint16_t fold64(uint64_t s) noexcept
{
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffu) + (s >> 16);
    s = (s & 0xffffu) + (s >> 16);
    s = (s & 0xffffu) + (s >> 16);
    return static_cast<uint16_t>(s);
}

/// Native one's-complement sum of `len` bytes; an odd last byte is padded with zero.
uint64_t sum_native(const uint8_t* p, size_t len) noexcept
{
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        acc += ld32(p + i);
    }
    if (i + 2 <= len) {
        acc += ld16(p + i);
        i += 2;
    }
    if (i < len) {
        const uint8_t last[2] = {p[i], 0};
        acc += ld16(last);
    }
    return acc;
}

/// Adds ~old + new over a field of `len` bytes (even offset; odd tail padded) to `acc`.
uint64_t diff_native(uint64_t acc, const uint8_t* o, const uint8_t* n, size_t len) noexcept
{
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        acc += uint64_t{static_cast<uint32_t>(~ld32(o + i))} + ld32(n + i);
    }
    if (i + 2 <= len) {
        acc += uint64_t{static_cast<uint16_t>(~ld16(o + i))} + ld16(n + i);
        i += 2;
    }
    if (i < len) {
        const uint8_t ob[2] = {o[i], 0};
        const uint8_t nb[2] = {n[i], 0};
        acc += uint64_t{static_cast<uint16_t>(~ld16(ob))} + ld16(nb);
    }
    return acc;
}

uint64_t diff16(uint64_t acc, uint16_t old_v, uint16_t new_v) noexcept
{
    return acc + static_cast<uint16_t>(~old_v) + new_v;
}

/// RFC 1624 eqn. 3 on a native checksum: HC' = ~(~HC + sum(~m + m')).
uint16_t apply_diff(uint16_t csum, uint64_t diff) noexcept
{
    return static_cast<uint16_t>(~fold64(diff + static_cast<uint16_t>(~csum)));
}

/// Updates the checksum stored at `p` (native) by `diff`.
void patch_csum(uint8_t* p, uint64_t diff) noexcept
{
    st16(p, apply_diff(ld16(p), diff));
}

/// Same for a UDP checksum: zero ("none") stays zero, a result of zero is sent as 0xffff.
void patch_udp_csum(uint8_t* p, uint64_t diff) noexcept
{
    const uint16_t c = ld16(p);
    if (c == 0) {
        return;
    }
    const uint16_t n = apply_diff(c, diff);
    st16(p, n == 0 ? uint16_t{0xffff} : n);
}

/// Offset of the checksum field of an L4 header, or 0 for protocols without one we handle.
size_t l4_csum_off(uint8_t proto) noexcept
{
    switch (proto) {
    case proto_tcp:
        return 16;
    case proto_udp:
        return 6;
    case proto_icmp:
    case proto_icmpv6:
        return 2;
    default:
        return 0;
    }
}

/// Native sum of the pseudo-header (RFC 768/793 for IPv4, RFC 8200 §8.1 for IPv6).
uint64_t pseudo_native(uint8_t family, uint8_t proto, const uint8_t* src, const uint8_t* dst,
                       size_t l4_len) noexcept
{
    const size_t alen = family == 4 ? 4 : 16;
    uint64_t acc = sum_native(src, alen) + sum_native(dst, alen);
    const uint8_t tail[8] = {
        static_cast<uint8_t>(l4_len >> 24),
        static_cast<uint8_t>(l4_len >> 16),
        static_cast<uint8_t>(l4_len >> 8),
        static_cast<uint8_t>(l4_len),
        0,
        0,
        0,
        proto,
    };
    return acc + sum_native(tail, sizeof tail);
}

/// Sum of a whole L4 segment as a receiver verifies it (checksum field included).
uint64_t l4_sum_native(uint8_t family, uint8_t proto, const uint8_t* src, const uint8_t* dst,
                       const uint8_t* l4, size_t l4_len) noexcept
{
    uint64_t acc = proto == proto_icmp ? 0 : pseudo_native(family, proto, src, dst, l4_len);
    return acc + sum_native(l4, l4_len);
}

/// Decrements the IPv4 TTL, the first byte of the 16-bit word at `word` (TTL, protocol), and
/// adds that word's change to `acc`.
uint64_t dec_ttl_diff(uint8_t* word, uint64_t acc) noexcept
{
    const uint16_t old_w = ld16(word);
    --word[0];
    return diff16(acc, old_w, ld16(word));
}

/// Rewrites the ports of a TCP/UDP header, returning the diff for its checksum.
uint64_t rewrite_ports(uint8_t* l4, uint16_t sport, uint16_t dport, uint64_t acc) noexcept
{
    acc = diff16(acc, ld16(l4), sport);
    acc = diff16(acc, ld16(l4 + 2), dport);
    st16(l4, sport);
    st16(l4 + 2, dport);
    return acc;
}

/// Rewrites the addresses at `src_at`/`dst_at` (`alen` bytes each) from `t`, returning the
/// diff. `t`'s addresses are copied first: they may point into the packet (a reflection).
uint64_t rewrite_addrs(uint8_t* src_at, uint8_t* dst_at, const uint8_t* new_src,
                       const uint8_t* new_dst, size_t alen, uint64_t acc) noexcept
{
    uint8_t s[16];
    uint8_t d[16];
    if (alen == 4) {
        std::memcpy(s, new_src, 4);
        std::memcpy(d, new_dst, 4);
    } else {
        std::memcpy(s, new_src, 16);
        std::memcpy(d, new_dst, 16);
    }
    acc = diff_native(acc, src_at, s, alen);
    acc = diff_native(acc, dst_at, d, alen);
    if (alen == 4) {
        std::memcpy(src_at, s, 4);
        std::memcpy(dst_at, d, 4);
    } else {
        std::memcpy(src_at, s, 16);
        std::memcpy(dst_at, d, 16);
    }
    return acc;
}

/// Applies the port and checksum part of a NAT to a TCP or UDP header whose pseudo-header
/// changed by `addr_diff`. `avail`: bytes of the L4 header present (the TCP checksum is left
/// alone when it is not among them).
void rewrite_l4(uint8_t* l4, size_t avail, uint8_t proto, uint16_t sport, uint16_t dport,
                uint64_t addr_diff) noexcept
{
    const uint64_t diff = rewrite_ports(l4, sport, dport, addr_diff);
    if (proto == proto_udp) {
        patch_udp_csum(l4 + 6, diff);
    } else if (avail >= 18) {
        patch_csum(l4 + 16, diff);
    }
}

void write_ipv4_hdr(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint8_t proto,
                    uint16_t total, uint8_t ttl, uint8_t tos) noexcept
{
    out[0] = 0x45;
    out[1] = tos;
    wr_be16(out + 2, total);
    out[4] = 0; // ID 0: DF is set and the packet is atomic (RFC 6864)
    out[5] = 0;
    out[6] = 0x40; // DF
    out[7] = 0;
    out[8] = ttl;
    out[9] = proto;
    out[10] = 0;
    out[11] = 0;
    std::memcpy(out + 12, src, 4);
    std::memcpy(out + 16, dst, 4);
    st16(out + 10, static_cast<uint16_t>(~fold64(sum_native(out, 20))));
}

void write_ipv6_hdr(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint8_t nh,
                    uint16_t payload, uint8_t hop_limit, uint8_t tclass,
                    uint32_t flow_label) noexcept
{
    out[0] = static_cast<uint8_t>(0x60 | (tclass >> 4));
    out[1] = static_cast<uint8_t>((tclass << 4) | ((flow_label >> 16) & 0x0f));
    out[2] = static_cast<uint8_t>(flow_label >> 8);
    out[3] = static_cast<uint8_t>(flow_label);
    wr_be16(out + 4, payload);
    out[6] = nh;
    out[7] = hop_limit;
    std::memcpy(out + 8, src, 16);
    std::memcpy(out + 24, dst, 16);
}

uint8_t ipip_proto(uint8_t inner_family) noexcept
{
    return inner_family == 6 ? 41 : 4;
}

void write_udp_hdr(uint8_t* out, uint16_t sport, uint16_t dport, uint16_t len) noexcept
{
    st16(out, sport);
    st16(out + 2, dport);
    wr_be16(out + 4, len);
    out[6] = 0;
    out[7] = 0;
}

bool ipv6_ext_header(uint8_t nh) noexcept
{
    return nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 44;
}

} // namespace

// ------------------------------------------------------------------------ checksums

uint16_t csum_fold(uint32_t sum) noexcept
{
    return fold64(sum);
}

uint32_t csum_partial(const uint8_t* p, size_t len, uint32_t sum) noexcept
{
    const uint16_t be = be_native(fold64(sum_native(p, len)));
    const uint32_t r = sum + be;
    return r < be ? r + 1 : r; // end-around carry: 2^32 = 1 (mod 0xffff)
}

uint16_t csum_replace16(uint16_t csum, uint16_t old_v, uint16_t new_v) noexcept
{
    // Byte-order independent: all three in one representation, the result in that one too.
    return apply_diff(csum, diff16(0, old_v, new_v));
}

uint16_t csum_replace(uint16_t csum, const uint8_t* old_b, const uint8_t* new_b,
                      size_t len) noexcept
{
    return be_native(apply_diff(be_native(csum), diff_native(0, old_b, new_b, len)));
}

void ipv4_set_checksum(uint8_t* ip) noexcept
{
    const size_t ihl = (ip[0] & 0x0fu) * 4u;
    ip[10] = 0;
    ip[11] = 0;
    st16(ip + 10, static_cast<uint16_t>(~fold64(sum_native(ip, ihl))));
}

void l4_set_checksum(uint8_t family, uint8_t proto, const uint8_t* src, const uint8_t* dst,
                     uint8_t* l4, size_t l4_len) noexcept
{
    const size_t off = l4_csum_off(proto);
    if (off == 0 || l4_len < off + 2) {
        return;
    }
    l4[off] = 0;
    l4[off + 1] = 0;
    uint16_t c = static_cast<uint16_t>(~fold64(l4_sum_native(family, proto, src, dst, l4, l4_len)));
    if (proto == proto_udp && c == 0) {
        c = 0xffff; // 0 means "no checksum" (RFC 768)
    }
    st16(l4 + off, c);
}

bool l4_checksum_ok(uint8_t family, uint8_t proto, const uint8_t* src, const uint8_t* dst,
                    const uint8_t* l4, size_t l4_len) noexcept
{
    const size_t off = l4_csum_off(proto);
    if (off == 0 || l4_len < off + 2) {
        return false;
    }
    if (proto == proto_udp && family == 4 && ld16(l4 + off) == 0) {
        return true; // no checksum; IPv6 forbids that (RFC 8200 §8.1)
    }
    return fold64(l4_sum_native(family, proto, src, dst, l4, l4_len)) == 0xffff;
}

// ------------------------------------------------------------------------ full-NAT

bool nat_rewrite_v4(uint8_t* ip, uint8_t* l4, uint8_t proto, const nat_tuple& t,
                    bool dec_ttl) noexcept
{
    if (proto != proto_tcp && proto != proto_udp) {
        return false;
    }
    uint64_t ip_diff = 0;
    if (dec_ttl) {
        if (ip[8] <= 1) {
            return false;
        }
        ip_diff = dec_ttl_diff(ip + 8, ip_diff);
    }
    const uint64_t addr_diff = rewrite_addrs(ip + 12, ip + 16, t.src, t.dst, 4, 0);
    patch_csum(ip + 10, ip_diff + addr_diff);
    rewrite_l4(l4, 20, proto, t.sport, t.dport, addr_diff);
    return true;
}

nat_v4_delta nat_v4_delta_of(uint64_t old_addrs, uint32_t old_ports, uint64_t addrs,
                             uint32_t ports) noexcept
{
    const uint64_t addr_diff = uint64_t{static_cast<uint32_t>(~old_addrs)} +
                               static_cast<uint32_t>(addrs) +
                               uint64_t{static_cast<uint32_t>(~(old_addrs >> 32))} + (addrs >> 32);
    uint8_t ttl_word[2] = {2, 0}; // a TTL decrement changes the (TTL, protocol) word alike
    const uint64_t ttl_diff = dec_ttl_diff(ttl_word, 0);
    nat_v4_delta d;
    d.ip = fold64(addr_diff + ttl_diff);
    d.l4 = fold64(addr_diff + uint64_t{static_cast<uint32_t>(~old_ports)} + ports);
    return d;
}

bool nat_rewrite_v6(uint8_t* ip, uint8_t* l4, uint8_t proto, const nat_tuple& t,
                    bool dec_ttl) noexcept
{
    if (proto != proto_tcp && proto != proto_udp) {
        return false;
    }
    if (dec_ttl) {
        if (ip[7] <= 1) {
            return false;
        }
        --ip[7];
    }
    const uint64_t addr_diff = rewrite_addrs(ip + 8, ip + 24, t.src, t.dst, 16, 0);
    rewrite_l4(l4, 20, proto, t.sport, t.dport, addr_diff);
    return true;
}

bool ip_rewrite_v4(uint8_t* ip, const uint8_t* src, const uint8_t* dst, bool dec_ttl) noexcept
{
    uint64_t ip_diff = 0;
    if (dec_ttl) {
        if (ip[8] <= 1) {
            return false;
        }
        ip_diff = dec_ttl_diff(ip + 8, ip_diff);
    }
    const uint64_t addr_diff = rewrite_addrs(ip + 12, ip + 16, src, dst, 4, 0);
    patch_csum(ip + 10, ip_diff + addr_diff);
    return true;
}

bool ip_rewrite_v6(uint8_t* ip, const uint8_t* src, const uint8_t* dst, bool dec_ttl) noexcept
{
    if (dec_ttl) {
        if (ip[7] <= 1) {
            return false;
        }
        --ip[7];
    }
    (void)rewrite_addrs(ip + 8, ip + 24, src, dst, 16, 0);
    return true;
}

bool tcp_clamp_mss(uint8_t* tcp, size_t hdr_len, uint16_t max_mss) noexcept
{
    if (hdr_len < 20 || (tcp[13] & 0x02) == 0) {
        return false;
    }
    const size_t doff = (tcp[12] >> 4) * 4u;
    const size_t end = doff < hdr_len ? doff : hdr_len;
    size_t i = 20;
    while (i < end) {
        const uint8_t kind = tcp[i];
        if (kind == 0) { // end of option list
            return false;
        }
        if (kind == 1) { // NOP
            ++i;
            continue;
        }
        if (i + 1 >= end) {
            return false;
        }
        const size_t olen = tcp[i + 1];
        if (olen < 2 || i + olen > end) {
            return false; // malformed: leave the segment alone
        }
        if (kind == 2) {
            if (olen != 4) {
                return false;
            }
            const uint16_t old_mss = rd_be16(tcp + i + 2);
            if (old_mss <= max_mss) {
                return false;
            }
            wr_be16(tcp + i + 2, max_mss);
            // Options need not be 16-bit aligned: a field at an odd offset straddles two
            // checksum words, where its bytes weigh swapped.
            const bool odd = ((i + 2) & 1) != 0;
            const uint16_t o = odd ? __builtin_bswap16(old_mss) : old_mss;
            const uint16_t n = odd ? __builtin_bswap16(max_mss) : max_mss;
            wr_be16(tcp + 16, csum_replace16(rd_be16(tcp + 16), o, n));
            return true;
        }
        i += olen;
    }
    return false;
}

// ------------------------------------------------------------------------ encapsulation

void write_ipip4(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint8_t inner_family,
                 uint16_t inner_len, uint8_t ttl, uint8_t tos) noexcept
{
    write_ipv4_hdr(out, src, dst, ipip_proto(inner_family),
                   static_cast<uint16_t>(ipip4_len + inner_len), ttl, tos);
}

void write_ipip6(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint8_t inner_family,
                 uint16_t inner_len, uint8_t hop_limit, uint8_t tclass,
                 uint32_t flow_label) noexcept
{
    write_ipv6_hdr(out, src, dst, ipip_proto(inner_family), inner_len, hop_limit, tclass,
                   flow_label);
}

void write_gue4(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                uint16_t dport, uint16_t inner_len, uint8_t ttl, uint8_t tos) noexcept
{
    write_ipv4_hdr(out, src, dst, proto_udp, static_cast<uint16_t>(gue4_len + inner_len), ttl, tos);
    write_udp_hdr(out + 20, sport, dport, static_cast<uint16_t>(8 + inner_len));
}

void write_gue6(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                uint16_t dport, uint16_t inner_len, uint8_t hop_limit, uint8_t tclass,
                uint32_t flow_label) noexcept
{
    const auto udp_len = static_cast<uint16_t>(8 + inner_len);
    write_ipv6_hdr(out, src, dst, proto_udp, udp_len, hop_limit, tclass, flow_label);
    write_udp_hdr(out + 40, sport, dport, udp_len);
    l4_set_checksum(6, proto_udp, out + 8, out + 24, out + 40, udp_len);
}

// ------------------------------------------------------------------------ ICMP errors

bool icmp4_error_quote(const uint8_t* icmp, size_t len, icmp_quote& q) noexcept
{
    if (len < 8 + 20 + 8 || len > 0xffff) {
        return false;
    }
    const uint8_t type = icmp[0];
    if (type != 3 && type != 4 && type != 5 && type != 11 && type != 12) {
        return false;
    }
    const uint8_t* qip = icmp + 8;
    const size_t ihl = (qip[0] & 0x0fu) * 4u;
    if ((qip[0] >> 4) != 4 || ihl < 20 || 8 + ihl + 8 > len) {
        return false;
    }
    if ((rd_be16(qip + 6) & 0x1fffu) != 0) {
        return false; // a later fragment: no L4 header quoted
    }
    q.ip_off = 8;
    q.l4_off = static_cast<uint16_t>(8 + ihl);
    q.len = static_cast<uint16_t>(len - 8);
    q.proto = qip[9];
    return true;
}

bool icmp6_error_quote(const uint8_t* icmp, size_t len, icmp_quote& q) noexcept
{
    if (len < 8 + 40 + 8 || len > 0xffff) {
        return false;
    }
    if (icmp[0] < 1 || icmp[0] > 4) {
        return false;
    }
    const uint8_t* qip = icmp + 8;
    if ((qip[0] >> 4) != 6) {
        return false;
    }
    const size_t avail = len - 8;
    uint8_t nh = qip[6];
    size_t off = 40;
    // As parse.hh: at most 8 extension headers; a deeper chain is not translated.
    for (int i = 0; i < 8 && ipv6_ext_header(nh); ++i) {
        if (off + 8 > avail) {
            return false;
        }
        size_t hlen = 8;
        if (nh == 44) {
            if ((rd_be16(qip + off + 2) & 0xfff8u) != 0) {
                return false; // a later fragment: no L4 header quoted
            }
        } else if (nh == 51) {
            hlen = (size_t{qip[off + 1]} + 2u) * 4u;
        } else {
            hlen = (size_t{qip[off + 1]} + 1u) * 8u;
        }
        nh = qip[off];
        off += hlen;
    }
    if (ipv6_ext_header(nh) || off + 8 > avail) {
        return false;
    }
    q.ip_off = 8;
    q.l4_off = static_cast<uint16_t>(8 + off);
    q.len = static_cast<uint16_t>(avail);
    q.proto = nh;
    return true;
}

bool icmp4_error_translate(uint8_t* ip, uint8_t* icmp, size_t icmp_len, const icmp_quote& q,
                           const uint8_t* outer_src, const uint8_t* outer_dst,
                           const nat_tuple& inner, bool dec_ttl) noexcept
{
    if ((q.proto != proto_tcp && q.proto != proto_udp) || q.ip_off < 8 ||
        size_t{q.l4_off} < size_t{q.ip_off} + 20 || size_t{q.l4_off} + 8 > icmp_len) {
        return false;
    }
    if (dec_ttl && ip[8] <= 1) {
        return false;
    }
    // Outer addresses first into locals: they, or the inner ones, may point into the packet.
    uint8_t osrc[4];
    uint8_t odst[4];
    std::memcpy(osrc, outer_src, 4);
    std::memcpy(odst, outer_dst, 4);

    uint8_t* qip = icmp + q.ip_off;
    const uint64_t addr_diff = rewrite_addrs(qip + 12, qip + 16, inner.src, inner.dst, 4, 0);
    patch_csum(qip + 10, addr_diff);
    rewrite_l4(icmp + q.l4_off, icmp_len - q.l4_off, q.proto, inner.sport, inner.dport, addr_diff);

    if (dec_ttl) {
        --ip[8];
    }
    std::memcpy(ip + 12, osrc, 4);
    std::memcpy(ip + 16, odst, 4);
    ipv4_set_checksum(ip);
    l4_set_checksum(4, proto_icmp, nullptr, nullptr, icmp, icmp_len);
    return true;
}

bool icmp6_error_translate(uint8_t* ip, uint8_t* icmp, size_t icmp_len, const icmp_quote& q,
                           const uint8_t* outer_src, const uint8_t* outer_dst,
                           const nat_tuple& inner, bool dec_ttl) noexcept
{
    if ((q.proto != proto_tcp && q.proto != proto_udp) || q.ip_off < 8 ||
        size_t{q.l4_off} < size_t{q.ip_off} + 40 || size_t{q.l4_off} + 8 > icmp_len) {
        return false;
    }
    if (dec_ttl && ip[7] <= 1) {
        return false;
    }
    uint8_t osrc[16];
    uint8_t odst[16];
    std::memcpy(osrc, outer_src, 16);
    std::memcpy(odst, outer_dst, 16);

    uint8_t* qip = icmp + q.ip_off;
    const uint64_t addr_diff = rewrite_addrs(qip + 8, qip + 24, inner.src, inner.dst, 16, 0);
    rewrite_l4(icmp + q.l4_off, icmp_len - q.l4_off, q.proto, inner.sport, inner.dport, addr_diff);

    if (dec_ttl) {
        --ip[7];
    }
    std::memcpy(ip + 8, osrc, 16);
    std::memcpy(ip + 24, odst, 16);
    l4_set_checksum(6, proto_icmpv6, ip + 8, ip + 24, icmp, icmp_len);
    return true;
}

} // namespace sluice::net
