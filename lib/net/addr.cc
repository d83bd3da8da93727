#include "sluice/net/addr.hh"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>
#include <cstdio>
#include <cstring>

namespace sluice::net {

ip_addr ip_addr::v4(uint32_t host_order) noexcept
{
    ip_addr a;
    a.family = 4;
    a.bytes[0] = static_cast<uint8_t>(host_order >> 24);
    a.bytes[1] = static_cast<uint8_t>(host_order >> 16);
    a.bytes[2] = static_cast<uint8_t>(host_order >> 8);
    a.bytes[3] = static_cast<uint8_t>(host_order);
    return a;
}

ip_addr ip_addr::v6(const uint8_t (&b)[16]) noexcept
{
    ip_addr a;
    a.family = 6;
    std::memcpy(a.bytes.data(), b, 16);
    return a;
}

result<ip_addr> ip_addr::parse(std::string_view text)
{
    // inet_pton needs a NUL-terminated string; addresses are short.
    char buf[INET6_ADDRSTRLEN + 1];
    if (text.empty() || text.size() >= sizeof(buf)) {
        return err("\"" + std::string(text) + "\" is not an IPv4 or IPv6 address");
    }
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    ip_addr a;
    if (text.find(':') == std::string_view::npos) {
        if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
            a.family = 4;
            return a;
        }
    } else if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
        a.family = 6;
        return a;
    }
    return err("\"" + std::string(text) + "\" is not an IPv4 or IPv6 address");
}

uint32_t ip_addr::v4_host() const noexcept
{
    return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
           uint32_t{bytes[3]};
}

std::string ip_addr::to_string() const
{
    char buf[INET6_ADDRSTRLEN];
    if (family == 4) {
        inet_ntop(AF_INET, bytes.data(), buf, sizeof(buf));
    } else if (family == 6) {
        inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
    } else {
        return "<unset>";
    }
    return buf;
}

result<prefix> prefix::parse(std::string_view text)
{
    const std::string quoted = "\"" + std::string(text) + "\"";
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) {
        return err("invalid CIDR " + quoted + ": missing \"/length\"");
    }
    auto a = ip_addr::parse(text.substr(0, slash));
    if (!a) {
        return err("invalid CIDR " + quoted + ": " + a.err().message);
    }
    const auto len_text = text.substr(slash + 1);
    unsigned len = 0;
    const auto [ptr, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (len_text.empty() || ec != std::errc{} || ptr != len_text.data() + len_text.size() ||
        len_text.size() > 3) {
        return err("invalid CIDR " + quoted + ": prefix length \"" + std::string(len_text) +
                   "\" is not a number");
    }
    if (len > a->bits()) {
        return err("invalid CIDR " + quoted + ": prefix length " + std::to_string(len) +
                   " exceeds " + std::to_string(a->bits()) + " for IPv" +
                   std::to_string(a->family));
    }
    return prefix{*a, static_cast<uint8_t>(len)};
}

prefix prefix::network() const noexcept
{
    prefix p = *this;
    const unsigned nbytes = addr.bits() / 8;
    for (unsigned i = 0; i < nbytes; ++i) {
        const unsigned first_bit = i * 8;
        if (first_bit >= len) {
            p.addr.bytes[i] = 0;
        } else if (first_bit + 8 > len) {
            p.addr.bytes[i] &= static_cast<uint8_t>(0xff00u >> (len - first_bit));
        }
    }
    return p;
}

bool prefix::contains(const ip_addr& a) const noexcept
{
    if (a.family != addr.family) {
        return false;
    }
    prefix other{a, len};
    return other.network().addr == network().addr;
}

std::string prefix::to_string() const
{
    return addr.to_string() + "/" + std::to_string(len);
}

result<mac_addr> mac_addr::parse(std::string_view text)
{
    mac_addr m;
    unsigned v[6];
    char tail;
    const std::string s(text);
    if (std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
                    &v[5], &tail) != 6 ||
        s.size() != 17) {
        return err("\"" + s + "\" is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    for (int i = 0; i < 6; ++i) {
        m.bytes[i] = static_cast<uint8_t>(v[i]);
    }
    return m;
}

std::string mac_addr::to_string() const
{
    char buf[18];
    std::snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2],
                  bytes[3], bytes[4], bytes[5]);
    return buf;
}

bool mac_addr::is_zero() const noexcept
{
    for (auto b : bytes) {
        if (b != 0) {
            return false;
        }
    }
    return true;
}

unsigned to_sockaddr(const ip_addr& a, uint16_t port, ::sockaddr_storage& out) noexcept
{
    out = {};
    if (a.is_v4()) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&out);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        std::memcpy(&s4->sin_addr, a.bytes.data(), 4);
        return sizeof(sockaddr_in);
    }
    if (a.is_v6()) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&out);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        std::memcpy(&s6->sin6_addr, a.bytes.data(), 16);
        return sizeof(sockaddr_in6);
    }
    return 0;
}

ip_addr from_sockaddr(const ::sockaddr_storage& ss) noexcept
{
    ip_addr a;
    if (ss.ss_family == AF_INET) {
        a.family = 4;
        std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            a.family = 4;
            std::memcpy(a.bytes.data(), s6->sin6_addr.s6_addr + 12, 4);
        } else {
            a.family = 6;
            std::memcpy(a.bytes.data(), &s6->sin6_addr, 16);
        }
    }
    return a;
}

} // namespace sluice::net
