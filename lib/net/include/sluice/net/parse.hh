#pragma once
/// @file
/// Frame validation and header location for the data path: L2 (Ethernet, up to two VLAN
/// tags), L3 (IPv4, IPv6 with extension headers, ARP) and the fixed part of L4 (TCP, UDP,
/// ICMP). Bounds are checked against the bytes actually present; nothing is read past them.
///
/// Hot path: inline, no allocation, no exception, no syscall. Pure: works on any byte
/// buffer (tests and fuzzers feed it arrays; workers feed it mbuf data).

#include <cstdint>

namespace sluice::net {

/// Why a frame is malformed. `none` means the frame is well formed as far as parsed.
/// The data path maps each value to a drop reason of the stats module's list.
enum class malformed : uint8_t {
    none = 0,
    runt,            ///< shorter than an Ethernet header
    vlan_truncated,  ///< VLAN tag cut short
    arp_truncated,   ///< ARP body shorter than 28 bytes (Ethernet/IPv4 ARP)
    ipv4_truncated,  ///< IPv4 header shorter than 20 bytes or than its IHL
    ipv4_bad_header, ///< version not 4, IHL < 5
    ipv4_bad_length, ///< total length below the header or beyond the frame
    ipv6_truncated,  ///< IPv6 fixed or extension header cut short
    ipv6_bad_header, ///< version not 6
    ipv6_bad_length, ///< payload length beyond the frame
    l4_truncated,    ///< TCP/UDP/ICMP header cut short
};

inline constexpr uint16_t ether_type_ipv4 = 0x0800;
inline constexpr uint16_t ether_type_arp = 0x0806;
inline constexpr uint16_t ether_type_ipv6 = 0x86dd;
inline constexpr uint16_t ether_type_vlan = 0x8100;
inline constexpr uint16_t ether_type_qinq = 0x88a8;

inline constexpr uint8_t ip_proto_icmp = 1;
inline constexpr uint8_t ip_proto_tcp = 6;
inline constexpr uint8_t ip_proto_udp = 17;
inline constexpr uint8_t ip_proto_icmpv6 = 58;

/// Where the headers of a parsed frame are. Offsets are from the start of the frame.
struct frame_info {
    uint16_t ether_type = 0; ///< inner EtherType after VLAN tags
    uint8_t l2_len = 0;      ///< Ethernet header plus VLAN tags
    uint8_t ip_proto = 0;    ///< L4 protocol for IPv4/IPv6 (after extension headers)
    uint16_t l3_len = 0;     ///< IP header length including IPv4 options / IPv6 ext headers
    uint16_t l4_off = 0;     ///< 0 when there is no L4 header to look at (non-first fragment)
    uint32_t ip_total = 0;   ///< IP packet length as its header says (header + payload)
    bool fragment = false;   ///< an IPv4 fragment or an IPv6 packet with a fragment header
    bool ip_options = false; ///< IPv4 options present (IHL > 5)
    uint16_t frag_hdr = 0;   ///< IPv6: offset of the fragment header from L3 (0: none)
};

namespace detail {
inline uint16_t rd16(const uint8_t* p) noexcept
{
    return static_cast<uint16_t>((uint16_t{p[0]} << 8) | p[1]);
}

inline malformed check_l4(const uint8_t* l4, uint32_t avail, uint8_t proto) noexcept
{
    switch (proto) {
    case ip_proto_tcp:
        if (avail < 20 || uint32_t{static_cast<uint32_t>(l4[12] >> 4) * 4u} < 20 ||
            uint32_t{static_cast<uint32_t>(l4[12] >> 4) * 4u} > avail) {
            return malformed::l4_truncated;
        }
        return malformed::none;
    case ip_proto_udp:
    case ip_proto_icmp:
    case ip_proto_icmpv6:
        return avail < 8 ? malformed::l4_truncated : malformed::none;
    default:
        return malformed::none;
    }
}
} // namespace detail

/// Validates a frame and locates its headers in `out` (overwritten whole). `len` bytes at `p` are
/// contiguous (headers are read only there); `frame_len` is the whole frame's length, which may be
/// larger for a multi-segment mbuf (0: same as len). IP length fields are checked against
/// `frame_len`. Unknown EtherTypes and IP protocols are well formed: they go to the kernel.
inline malformed parse_frame(const uint8_t* p, uint32_t len, frame_info& out,
                             uint32_t frame_len = 0) noexcept
{
    out = frame_info{}; // every field describes this frame, whatever `out` held before
    if (frame_len < len) {
        frame_len = len;
    }
    if (len < 14) {
        return malformed::runt;
    }
    uint32_t off = 12;
    uint16_t et = detail::rd16(p + off);
    off += 2;
    for (int tags = 0; (et == ether_type_vlan || et == ether_type_qinq) && tags < 2; ++tags) {
        if (len < off + 4) {
            return malformed::vlan_truncated;
        }
        et = detail::rd16(p + off + 2);
        off += 4;
    }
    out.ether_type = et;
    out.l2_len = static_cast<uint8_t>(off);
    const uint8_t* l3 = p + off;
    const uint32_t avail = len - off;       // contiguous bytes from L3 on
    const uint32_t frame = frame_len - off; // all bytes from L3 on

    if (et == ether_type_ipv4) {
        if (avail < 20) {
            return malformed::ipv4_truncated;
        }
        const uint32_t ihl = (l3[0] & 0x0fu) * 4u;
        if ((l3[0] >> 4) != 4 || ihl < 20) {
            return malformed::ipv4_bad_header;
        }
        if (ihl > avail) {
            return malformed::ipv4_truncated;
        }
        const uint32_t total = detail::rd16(l3 + 2);
        if (total < ihl || total > frame) {
            return malformed::ipv4_bad_length;
        }
        const uint16_t frag = detail::rd16(l3 + 6);
        out.ip_proto = l3[9];
        out.l3_len = static_cast<uint16_t>(ihl);
        out.ip_total = total;
        out.ip_options = ihl > 20;
        out.fragment = (frag & 0x3fffu) != 0; // MF or a non-zero offset
        if ((frag & 0x1fffu) != 0) {
            out.l4_off = 0; // non-first fragment: no L4 header here
            return malformed::none;
        }
        out.l4_off = static_cast<uint16_t>(off + ihl);
        if (out.fragment) {
            return malformed::none; // a first fragment may legitimately split the L4 header
        }
        return detail::check_l4(l3 + ihl, (total < avail ? total : avail) - ihl, out.ip_proto);
    }

    if (et == ether_type_ipv6) {
        if (avail < 40) {
            return malformed::ipv6_truncated;
        }
        if ((l3[0] >> 4) != 6) {
            return malformed::ipv6_bad_header;
        }
        const uint32_t total = 40u + detail::rd16(l3 + 4);
        if (total > frame) {
            return malformed::ipv6_bad_length;
        }
        const uint32_t hdr_end = total < avail ? total : avail; // extension headers end here
        uint8_t nh = l3[6];
        uint32_t hoff = 40;
        // Walk at most 8 extension headers; a deeper chain is left to the kernel as is.
        for (int i = 0; i < 8; ++i) {
            if (nh == 0 || nh == 43 || nh == 60 || nh == 51) {
                // hop-by-hop, routing, destination options (8-octet units), AH (4-octet units)
                if (hoff + 8 > hdr_end) {
                    return malformed::ipv6_truncated;
                }
                const uint32_t hlen = nh == 51 ? (uint32_t{l3[hoff + 1]} + 2u) * 4u
                                               : (uint32_t{l3[hoff + 1]} + 1u) * 8u;
                if (hoff + hlen > hdr_end) {
                    return malformed::ipv6_truncated;
                }
                nh = l3[hoff];
                hoff += hlen;
                continue;
            }
            if (nh == 44) { // fragment header
                if (hoff + 8 > hdr_end) {
                    return malformed::ipv6_truncated;
                }
                out.fragment = true;
                out.frag_hdr = static_cast<uint16_t>(hoff);
                const bool later = (detail::rd16(l3 + hoff + 2) & 0xfff8u) != 0;
                nh = l3[hoff];
                hoff += 8;
                if (later) {
                    out.ip_proto = nh;
                    out.l3_len = static_cast<uint16_t>(hoff);
                    out.ip_total = total;
                    out.l4_off = 0;
                    return malformed::none;
                }
                continue;
            }
            break;
        }
        out.ip_proto = nh;
        out.l3_len = static_cast<uint16_t>(hoff);
        out.ip_total = total;
        out.l4_off = static_cast<uint16_t>(off + hoff);
        if (out.fragment) {
            return malformed::none;
        }
        return detail::check_l4(l3 + hoff, hdr_end - hoff, nh);
    }

    if (et == ether_type_arp) {
        return avail < 28 ? malformed::arp_truncated : malformed::none;
    }
    return malformed::none;
}

} // namespace sluice::net
