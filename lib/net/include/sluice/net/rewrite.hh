#pragma once
/// @file
/// Header rewriting for the L4 fast path: one's-complement checksum helpers (RFC 1071, RFC
/// 1624), full-NAT address/port rewrites with incremental checksum updates, TCP MSS clamping,
/// IPIP and GUE (variant 1: IP directly over UDP) outer headers, and the translation of ICMP
/// errors that quote a NATed packet.
///
/// Pure and allocation-free: every function works on plain byte buffers (tests and fuzzers feed
/// arrays; workers feed mbuf data). All addresses and ports are passed in network byte order
/// as they sit in the packet (`const uint8_t*` of 4 or 16 bytes; ports as `uint16_t` holding
/// the two wire bytes, i.e. read with memcpy). `family` is 4 or 6. Checksums are the RFC 1071
/// one's-complement sum over the 16-bit big-endian words of the bytes, stored in the packet
/// big-endian. Incremental updates (RFC 1624 eqn. 3) leave exactly the bytes a full recompute
/// would, provided the checksum was right before; a wrong one stays wrong (it is not repaired).
/// Hot path: every function is noexcept, allocation-free, with no syscall and no libc memcpy
/// of variable size; they live in rewrite.cc (not inline) until a measurement says otherwise.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sluice::net {

// ------------------------------------------------------------------------ checksums

/// Folds a 32-bit one's-complement sum to 16 bits (not inverted).
[[nodiscard]] uint16_t csum_fold(uint32_t sum) noexcept;

/// One's-complement sum of `len` bytes (16-bit big-endian words, an odd last byte padded with
/// zero), added to `sum`; not folded, not inverted.
[[nodiscard]] uint32_t csum_partial(const uint8_t* p, size_t len, uint32_t sum = 0) noexcept;

/// RFC 1624 eqn. 3: the checksum `csum` after the 16-bit field `old_v` became `new_v`.
/// Documented in big-endian values (the number the two wire bytes spell, p[0] << 8 | p[1]),
/// with the result to be stored the same way. One's-complement arithmetic commutes with byte
/// swapping, so the function is correct in either representation as long as all three
/// arguments and the result use the same one: it is equally right on values loaded and stored
/// with memcpy (e.g. the ports of `nat_tuple` with a checksum read by memcpy). Never mix them.
/// The field must sit at an even offset of the checksummed data; a field at an odd offset
/// contributes its bytes swapped (pass both values byte-swapped). Like a full recompute, the
/// result is never 0xffff unless the old checksum was (eqn. 3 avoids the -0 of eqn. 2).
[[nodiscard]] uint16_t csum_replace16(uint16_t csum, uint16_t old_v, uint16_t new_v) noexcept;

/// Same for a field of `len` bytes (len even: 2, 4 or 16; at an even offset of the checksummed
/// data) changing from the bytes `old_b` to the bytes `new_b`. `csum` and the result are
/// big-endian values (as read with p[0] << 8 | p[1], not with memcpy).
[[nodiscard]] uint16_t csum_replace(uint16_t csum, const uint8_t* old_b, const uint8_t* new_b,
                                    size_t len) noexcept;

/// Computes and stores the IPv4 header checksum of the header at `ip` (IHL from the header).
void ipv4_set_checksum(uint8_t* ip) noexcept;

/// Computes and stores the TCP, UDP or ICMPv6 checksum of the L4 segment at `l4` (`l4_len`
/// bytes, header and payload) with the pseudo-header of `src`/`dst` (4 bytes for IPv4, 16 for
/// IPv6, per `family`). ICMP (v4) has no pseudo-header: `src`/`dst` are ignored for proto 1.
/// A UDP checksum that computes to 0 is stored as 0xffff. Other protocols, or a segment too
/// short to hold its checksum field, are left unchanged.
void l4_set_checksum(uint8_t family, uint8_t proto, const uint8_t* src, const uint8_t* dst,
                     uint8_t* l4, size_t l4_len) noexcept;

/// True when the checksum of the L4 segment verifies (tests and cold paths only). A UDP
/// checksum of 0 ("none") verifies over IPv4, not over IPv6 (RFC 8200 §8.1).
[[nodiscard]] bool l4_checksum_ok(uint8_t family, uint8_t proto, const uint8_t* src,
                                  const uint8_t* dst, const uint8_t* l4, size_t l4_len) noexcept;

// ------------------------------------------------------------------------ full-NAT

/// New addresses and ports for a packet (network byte order, see the file comment). Both
/// addresses are required. They may point into the packet being rewritten (e.g. swapped
/// source and destination): they are copied before anything is written.
struct nat_tuple {
    const uint8_t* src = nullptr; ///< 4 or 16 bytes
    const uint8_t* dst = nullptr;
    uint16_t sport = 0;
    uint16_t dport = 0;
};

/// Rewrites an IPv4 TCP or UDP packet in place: source and destination addresses and ports
/// become `t`; the IPv4 header checksum and the L4 checksum are updated incrementally (a UDP
/// checksum of zero stays zero: "no checksum"). `ip` is the IPv4 header, `l4` the TCP (at
/// least 20 bytes present) or UDP (at least 8) header. With `dec_ttl`, the TTL is decremented
/// (checksum updated too); a TTL of 0 or 1 then returns false and changes nothing. `proto`
/// other than 6 (TCP) or 17 (UDP) also returns false and changes nothing.
bool nat_rewrite_v4(uint8_t* ip, uint8_t* l4, uint8_t proto, const nat_tuple& t,
                    bool dec_ttl) noexcept;

/// The checksum changes of one direction of a full-NAT flow, computed once per flow for the
/// fast path (native one's-complement sums, folded): `ip` for the IPv4 header (addresses and
/// the TTL decrement), `l4` for the TCP/UDP checksum (pseudo-header addresses and ports).
struct nat_v4_delta {
    uint16_t ip = 0;
    uint16_t l4 = 0;
};

/// The delta of rewriting addresses `old_addrs` to `addrs` and ports `old_ports` to `ports`
/// with a TTL decrement. Raw words: `addrs` the 8 bytes of source then destination address,
/// `ports` the 4 bytes of source then destination port, each as a memcpy of them loads.
nat_v4_delta nat_v4_delta_of(uint64_t old_addrs, uint32_t old_ports, uint64_t addrs,
                             uint32_t ports) noexcept;

/// The delta of the opposite rewrite (`addrs` back to `old_addrs`, `ports` back to
/// `old_ports`, the TTL decremented again) from the delta `d` of the forward one, as
/// nat_v4_delta_of(addrs, ports, old_addrs, old_ports) would give it: the negated address and
/// port change (~), and for the IPv4 header the TTL decrement added twice (once to take it
/// out of the negation, once for the reply's own). A flow stores one delta, not two.
constexpr nat_v4_delta nat_v4_delta_reverse(nat_v4_delta d) noexcept
{
    // A TTL decrement changes the (TTL, protocol) word as loaded (little-endian: TTL the low
    // byte) by -1: 0xfffe in ones' complement; twice, 0x1fffc, folds to 0xfffd.
    static_assert(std::endian::native == std::endian::little, "the TTL change as loaded");
    uint32_t ip = static_cast<uint16_t>(~d.ip) + 0xfffdu;
    ip = (ip & 0xffffu) + (ip >> 16);
    // nat_v4_delta_of's folds never give 0 (a zero change is 0xffff): neither does this.
    const auto l4 = static_cast<uint16_t>(~d.l4);
    return {static_cast<uint16_t>(ip), l4 == 0 ? uint16_t{0xffff} : l4};
}

/// nat_rewrite_v4 with `dec_ttl` (20-byte header) for a packet whose addresses and ports are
/// those `d` was computed from: the same bytes, with the checksum arithmetic done once per
/// flow instead of per packet. The caller has checked the protocol (TCP or UDP) and the TTL (above
/// 1).
inline void nat_rewrite_v4_delta(uint8_t* ip, uint8_t* l4, uint8_t proto, uint64_t addrs,
                                 uint32_t ports, nat_v4_delta d) noexcept
{
    // RFC 1624 eqn. 3, HC' = ~(~HC + delta), the ones' complement sum with its end-around
    // carry (an add and an add-with-carry): ~HC + delta <= 0x1fffe, so one fold is exact, and
    // the sum is zero only when both are (as in apply_diff, so the results are identical).
    auto patch = [](uint8_t* at, uint16_t delta, bool udp) noexcept {
        uint16_t c;
        std::memcpy(&c, at, 2);
        if (udp && c == 0) {
            return; // no checksum stays none
        }
        uint16_t s;
        const bool carry = __builtin_add_overflow(static_cast<uint16_t>(~c), delta, &s);
        c = static_cast<uint16_t>(~static_cast<uint16_t>(s + carry));
        if (udp && c == 0) {
            c = 0xffff; // 0 means "no checksum" (RFC 768)
        }
        std::memcpy(at, &c, 2);
    };
    --ip[8];
    std::memcpy(ip + 12, &addrs, 8);
    patch(ip + 10, d.ip, false);
    std::memcpy(l4, &ports, 4);
    if (proto == 17) {
        patch(l4 + 6, d.l4, true);
    } else {
        patch(l4 + 16, d.l4, false);
    }
}

/// The IPv6 counterpart: addresses, ports, hop limit; the L4 checksum updated incrementally
/// (IPv6 has no header checksum). A UDP checksum of zero (invalid over IPv6 except for
/// tunnels, RFC 6935) is left zero as over IPv4, not turned into a wrong non-zero one.
bool nat_rewrite_v6(uint8_t* ip, uint8_t* l4, uint8_t proto, const nat_tuple& t,
                    bool dec_ttl) noexcept;

/// Rewrites only the addresses of an IPv4 packet (a later fragment: no L4 header; the L4
/// checksum, in the first fragment, covers the whole datagram), updating the header checksum
/// and, with `dec_ttl`, the TTL (false and no change when it would reach 0).
bool ip_rewrite_v4(uint8_t* ip, const uint8_t* src, const uint8_t* dst, bool dec_ttl) noexcept;

/// The IPv6 counterpart (addresses and hop limit).
bool ip_rewrite_v6(uint8_t* ip, const uint8_t* src, const uint8_t* dst, bool dec_ttl) noexcept;

/// Clamps the MSS option of a TCP segment with SYN set to at most `max_mss`, updating the TCP
/// checksum incrementally. `tcp` is the TCP header, `hdr_len` its length from the data offset
/// (options are walked within it; malformed options are left alone). Returns true if the MSS
/// was lowered. Segments without SYN or without an MSS option are not changed. Only the first
/// MSS option counts (kind 2 with a length other than 4 is malformed); an MSS at an odd offset
/// is handled (its bytes weigh swapped in the checksum).
bool tcp_clamp_mss(uint8_t* tcp, size_t hdr_len, uint16_t max_mss) noexcept;

// ------------------------------------------------------------------------ encapsulation

/// Outer header sizes.
inline constexpr size_t ipip4_len = 20;    ///< outer IPv4
inline constexpr size_t ipip6_len = 40;    ///< outer IPv6
inline constexpr size_t gue4_len = 20 + 8; ///< outer IPv4 + UDP
inline constexpr size_t gue6_len = 40 + 8; ///< outer IPv6 + UDP
inline constexpr uint16_t gue_default_port = 6080;

/// Writes an outer IPv4 header at `out` (20 bytes) for IP-in-IP: protocol 4 (IPIP) when the
/// inner packet is IPv4, 41 when it is IPv6 (`inner_family`); total length 20 + inner_len;
/// TTL `ttl`; DSCP/ECN `tos`; DF set; ID 0; checksum computed. `inner_family` is 4 or 6 (any
/// value but 6 means IPv4); inner_len at most 65535 - 20.
void write_ipip4(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint8_t inner_family,
                 uint16_t inner_len, uint8_t ttl, uint8_t tos) noexcept;

/// Writes an outer IPv6 header at `out` (40 bytes): next header 4 or 41 per `inner_family`,
/// payload length inner_len, hop limit `hop_limit`, traffic class `tclass`, flow label
/// `flow_label` (low 20 bits; lets routers and backends spread flows; higher bits ignored).
void write_ipip6(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint8_t inner_family,
                 uint16_t inner_len, uint8_t hop_limit, uint8_t tclass,
                 uint32_t flow_label) noexcept;

/// Writes outer IPv4 + UDP (28 bytes) for GUE variant 1 (the inner IP packet directly after
/// the UDP header; accepted by Linux `ip fou add port P gue` and by Katran's decap): UDP source
/// port `sport` (flow entropy, network order), destination `dport` (network order), UDP
/// checksum 0 (allowed over IPv4), UDP length 8 + inner_len, IPv4 as write_ipip4 but with
/// protocol 17 and total length 28 + inner_len (inner_len at most 65535 - 28).
void write_gue4(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                uint16_t dport, uint16_t inner_len, uint8_t ttl, uint8_t tos) noexcept;

/// Writes outer IPv6 + UDP (48 bytes) for GUE variant 1. The UDP checksum is computed over the
/// pseudo-header, the UDP header and the `inner_len` bytes of the inner packet, which must
/// follow at out + 48 already (IPv6 forbids a zero UDP checksum by default); a sum of 0 is
/// stored as 0xffff. Payload length and UDP length are 8 + inner_len.
void write_gue6(uint8_t* out, const uint8_t* src, const uint8_t* dst, uint16_t sport,
                uint16_t dport, uint16_t inner_len, uint8_t hop_limit, uint8_t tclass,
                uint32_t flow_label) noexcept;

// ------------------------------------------------------------------------ ICMP errors

/// Where the packet quoted by an ICMP error sits, as offsets from the start of the ICMP
/// header.
struct icmp_quote {
    uint16_t ip_off = 0; ///< the quoted IP header (always 8)
    uint16_t l4_off = 0; ///< the quoted L4 header
    uint16_t len = 0;    ///< bytes of quote present (from ip_off to the end of the ICMP message)
    uint8_t proto = 0;   ///< the quoted packet's L4 protocol
};

/// Recognises an ICMPv4 error (types 3 destination unreachable, 4 source quench, 5 redirect,
/// 11 time exceeded, 12 parameter problem) whose quote holds a whole IPv4 header (IHL
/// honoured) and at least the first 8 bytes of its L4 header. `icmp`/`len`: the ICMP message.
/// Returns false for anything else (echo, short quotes, quoted fragments past the first, a
/// quoted version other than 4, an ICMP message longer than 65535). Any quoted protocol is
/// recognised and reported in `q.proto`; translation handles TCP and UDP only.
bool icmp4_error_quote(const uint8_t* icmp, size_t len, icmp_quote& q) noexcept;

/// The ICMPv6 counterpart: types 1 (unreachable), 2 (packet too big), 3 (time exceeded) and 4
/// (parameter problem); the quoted IPv6 header's extension headers are walked (as parse.hh
/// does: 0, 43, 60, 51, 44, at most 8) to reach the L4 header, which needs 8 bytes present.
/// A quoted fragment header with a non-zero offset, a chain deeper than 8 or cut short by the
/// quote returns false.
bool icmp6_error_quote(const uint8_t* icmp, size_t len, icmp_quote& q) noexcept;

/// Translates an ICMPv4 error in place: the outer IPv4 source/destination become `outer_src`/
/// `outer_dst` (header checksum recomputed, TTL decremented when `dec_ttl`; false and no change
/// if it would reach 0); the quoted packet's addresses and ports become `inner` (quoted IPv4
/// header checksum updated; the quoted L4 checksum updated incrementally when it lies inside
/// the quote: UDP always, TCP when 18 bytes are quoted); then the ICMP checksum is recomputed
/// over the whole message. `ip` is the outer IPv4 header; `icmp_len` the ICMP message length.
/// `q` comes from icmp4_error_quote on the same message. `inner` is in the quoted packet's
/// direction (its src becomes the quoted source). A UDP checksum of 0 in the quote stays 0.
/// Returns false and changes nothing when the quoted protocol is not TCP or UDP, or `q` does
/// not fit `icmp_len`. Pointer arguments may point into the packet (copied before writing).
bool icmp4_error_translate(uint8_t* ip, uint8_t* icmp, size_t icmp_len, const icmp_quote& q,
                           const uint8_t* outer_src, const uint8_t* outer_dst,
                           const nat_tuple& inner, bool dec_ttl) noexcept;

/// The ICMPv6 counterpart (hop limit instead of TTL, no header checksums; the ICMPv6 checksum
/// recomputed over the pseudo-header of the new outer addresses and the whole message).
bool icmp6_error_translate(uint8_t* ip, uint8_t* icmp, size_t icmp_len, const icmp_quote& q,
                           const uint8_t* outer_src, const uint8_t* outer_dst,
                           const nat_tuple& inner, bool dec_ttl) noexcept;

} // namespace sluice::net
