#pragma once
/// @file
/// IP addresses, prefixes (CIDRs) and MAC addresses: value types with strict parsers.
/// Pure (no EAL); used by the config parser, the netlink mirror and the FIB builder.

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/base/result.hh"

struct sockaddr_storage;

namespace sluice::net {

/// An IPv4 or IPv6 address; IPv4 uses the first 4 bytes of `bytes`, in network order.
struct ip_addr {
    uint8_t family = 0; ///< 4 or 6; 0 means "unset".
    std::array<uint8_t, 16> bytes{};

    static ip_addr v4(uint32_t host_order) noexcept;
    static ip_addr v6(const uint8_t (&b)[16]) noexcept;
    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text; nothing else (no ports, no zones).
    static result<ip_addr> parse(std::string_view text);

    [[nodiscard]] bool is_v4() const noexcept { return family == 4; }
    [[nodiscard]] bool is_v6() const noexcept { return family == 6; }
    [[nodiscard]] bool is_set() const noexcept { return family != 0; }
    [[nodiscard]] unsigned bits() const noexcept { return family == 4 ? 32 : 128; }
    /// IPv4 address in host byte order (only for is_v4()).
    [[nodiscard]] uint32_t v4_host() const noexcept;
    [[nodiscard]] std::string to_string() const;

    auto operator<=>(const ip_addr&) const = default;
};

/// An address with a prefix length, as written in CIDR notation. Host bits are kept (an
/// interface address "198.18.0.1/24" stays that); network() clears them.
struct prefix {
    ip_addr addr;
    uint8_t len = 0;

    /// Parses "ADDR/LEN". Errors name the text and what is wrong with it.
    static result<prefix> parse(std::string_view text);

    [[nodiscard]] prefix network() const noexcept;
    [[nodiscard]] bool contains(const ip_addr& a) const noexcept;
    [[nodiscard]] std::string to_string() const;

    auto operator<=>(const prefix&) const = default;
};

/// An Ethernet MAC address.
struct mac_addr {
    std::array<uint8_t, 6> bytes{};

    /// Parses "aa:bb:cc:dd:ee:ff".
    static result<mac_addr> parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] bool is_zero() const noexcept;

    auto operator<=>(const mac_addr&) const = default;
};

/// Fills `out` with the socket address of `a`:`port` (AF_INET or AF_INET6); returns its
/// length, 0 when `a` is unset. No allocation.
unsigned to_sockaddr(const ip_addr& a, uint16_t port, ::sockaddr_storage& out) noexcept;
/// The IP address of a socket address; an IPv4-mapped IPv6 address (a dual-stack socket's
/// IPv4 peer) becomes the IPv4 address. Unset for other families. No allocation.
ip_addr from_sockaddr(const ::sockaddr_storage& ss) noexcept;

} // namespace sluice::net
