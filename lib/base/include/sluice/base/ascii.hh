#pragma once
/// @file
/// ASCII case helpers shared by the HTTP codec, the route matcher, the model and the CLI
/// (header names, hosts, kinds are ASCII-case-insensitive). The string_view functions are
/// hot-path safe: noexcept, no allocation; to_lower() allocates (control path only).

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice {

constexpr char ascii_lower(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept
{
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (ascii_lower(a[i]) != ascii_lower(b[i])) {
            return false;
        }
    }
    return true;
}

/// `a` starts with `p`, ignoring ASCII case.
constexpr bool istarts_with(std::string_view a, std::string_view p) noexcept
{
    return a.size() >= p.size() && iequals(a.substr(0, p.size()), p);
}

/// Three-way ASCII case-insensitive comparison (<0, 0, >0).
constexpr int icompare(std::string_view a, std::string_view b) noexcept
{
    const size_t n = a.size() < b.size() ? a.size() : b.size();
    for (size_t i = 0; i < n; ++i) {
        const auto ca = static_cast<unsigned char>(ascii_lower(a[i]));
        const auto cb = static_cast<unsigned char>(ascii_lower(b[i]));
        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
    }
    return a.size() == b.size() ? 0 : (a.size() < b.size() ? -1 : 1);
}

/// A lower-cased copy. Allocates: control path only.
inline std::string to_lower(std::string_view s)
{
    std::string out(s);
    for (auto& c : out) {
        c = ascii_lower(c);
    }
    return out;
}

} // namespace sluice
