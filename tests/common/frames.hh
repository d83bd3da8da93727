#pragma once
// Frame builders for tests, fuzz seeds and benchmarks: well-formed Ethernet/IPv4/IPv6
// frames with correct lengths and checksums, which tests then break on purpose.

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace sluice::test {

using bytes = std::vector<uint8_t>;

inline constexpr uint8_t mac_a[6] = {0x02, 0, 0, 0, 0, 0x0a};
inline constexpr uint8_t mac_b[6] = {0x02, 0, 0, 0, 0, 0x0b};

inline void put16(bytes& b, size_t off, uint16_t v)
{
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
}

inline uint16_t csum(const uint8_t* p, size_t n, uint32_t sum = 0)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        sum += (uint32_t{p[i]} << 8) | p[i + 1];
    }
    if (n & 1) {
        sum += uint32_t{p[n - 1]} << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<uint16_t>(~sum);
}

inline bytes eth(uint16_t ether_type, const bytes& payload,
                 std::initializer_list<uint16_t> vlans = {})
{
    bytes b(mac_b, mac_b + 6);
    b.insert(b.end(), mac_a, mac_a + 6);
    for (uint16_t vid : vlans) {
        b.push_back(0x81);
        b.push_back(0x00);
        b.push_back(static_cast<uint8_t>(vid >> 8));
        b.push_back(static_cast<uint8_t>(vid));
    }
    b.push_back(static_cast<uint8_t>(ether_type >> 8));
    b.push_back(static_cast<uint8_t>(ether_type));
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

/// IPv4 header (no options unless `options` is given) + L4 bytes.
inline bytes ipv4(uint8_t proto, const bytes& l4, uint32_t src = 0xc6120002,
                  uint32_t dst = 0xc6120001, const bytes& options = {}, uint16_t frag = 0)
{
    const size_t ihl = 20 + options.size();
    bytes b(ihl, 0);
    b[0] = static_cast<uint8_t>(0x40 | (ihl / 4));
    put16(b, 2, static_cast<uint16_t>(ihl + l4.size()));
    put16(b, 4, 0x1234);
    put16(b, 6, frag);
    b[8] = 64;
    b[9] = proto;
    for (int i = 0; i < 4; ++i) {
        b[12 + i] = static_cast<uint8_t>(src >> (24 - 8 * i));
        b[16 + i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
    }
    for (size_t i = 0; i < options.size(); ++i) {
        b[20 + i] = options[i];
    }
    put16(b, 10, csum(b.data(), ihl));
    b.insert(b.end(), l4.begin(), l4.end());
    return b;
}

inline bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t payload = 0)
{
    bytes b(20 + payload, 0);
    put16(b, 0, sport);
    put16(b, 2, dport);
    b[12] = 0x50;
    b[13] = flags;
    put16(b, 14, 65535);
    return b;
}

inline bytes udp(uint16_t sport, uint16_t dport, size_t payload = 0)
{
    bytes b(8 + payload, 0);
    put16(b, 0, sport);
    put16(b, 2, dport);
    put16(b, 4, static_cast<uint16_t>(8 + payload));
    return b;
}

inline bytes icmp_echo(uint16_t id, uint16_t seq, size_t payload = 56)
{
    bytes b(8 + payload, 0xab);
    b[0] = 8;
    b[1] = 0;
    b[2] = b[3] = 0;
    put16(b, 4, id);
    put16(b, 6, seq);
    put16(b, 2, csum(b.data(), b.size()));
    return b;
}

/// IPv6 header with optional extension headers `ext` (already encoded, first next-header
/// given by `first_nh`) followed by L4 bytes whose protocol is `proto`.
inline bytes ipv6(uint8_t proto, const bytes& l4, const bytes& ext = {}, uint8_t first_nh = 0xff)
{
    bytes b(40, 0);
    b[0] = 0x60;
    put16(b, 4, static_cast<uint16_t>(ext.size() + l4.size()));
    b[6] = ext.empty() ? proto : first_nh;
    b[7] = 64;
    b[8] = 0x20;
    b[9] = 0x01;
    b[23] = 2;
    b[24] = 0x20;
    b[25] = 0x01;
    b[39] = 1;
    b.insert(b.end(), ext.begin(), ext.end());
    b.insert(b.end(), l4.begin(), l4.end());
    return b;
}

inline bytes arp_request(uint32_t sender = 0xc6120002, uint32_t target = 0xc6120001)
{
    bytes b(28, 0);
    put16(b, 0, 1);      // Ethernet
    put16(b, 2, 0x0800); // IPv4
    b[4] = 6;
    b[5] = 4;
    put16(b, 6, 1); // request
    for (int i = 0; i < 6; ++i) {
        b[8 + i] = mac_a[i];
    }
    for (int i = 0; i < 4; ++i) {
        b[14 + i] = static_cast<uint8_t>(sender >> (24 - 8 * i));
        b[24 + i] = static_cast<uint8_t>(target >> (24 - 8 * i));
    }
    return b;
}

} // namespace sluice::test
