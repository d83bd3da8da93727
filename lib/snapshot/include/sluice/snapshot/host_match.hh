#pragma once
/// @file
/// Host names as Istio and Envoy match them (ISTIO.md §1 Gateway, §2 Routing):
/// - `*` matches every host;
/// - `*.example.com` matches any deeper subdomain (`a.example.com`, `a.b.example.com`) but not
///   `example.com` itself;
/// - anything else matches only itself, ASCII case-insensitively;
/// - an authority `host:port` (or `[v6]:port`) is matched by its host part.
///
/// Pure, noexcept, allocation-free: safe on the data path and on the control side.

#include <cstdint>
#include <string_view>

#include "sluice/base/ascii.hh"

namespace sluice::snapshot {

// The ASCII case helpers live in base (shared with the HTTP codec).
using sluice::icompare;
using sluice::iequals;
using sluice::istarts_with;

/// The host part of an HTTP authority: strips a trailing `:digits` port and the brackets of
/// an IPv6 literal (`[::1]:80` -> `::1`). No allocation: returns a view into `authority`.
[[nodiscard]] std::string_view authority_host(std::string_view authority) noexcept;

/// True if `pattern` (exact, `*.suffix` or `*`) matches the concrete host `host`.
[[nodiscard]] bool host_matches(std::string_view pattern, std::string_view host) noexcept;

/// Istio's host.Name.Matches between two patterns (either may be a wildcard): true when
/// one covers the other.
[[nodiscard]] bool hosts_intersect(std::string_view a, std::string_view b) noexcept;

/// Istio's host.Name.SubsetOf: true when every host `a` matches is also matched by `b`.
[[nodiscard]] bool host_subset_of(std::string_view a, std::string_view b) noexcept;

} // namespace sluice::snapshot
