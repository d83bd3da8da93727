#pragma once
/// @file
/// The REST port's bearer token: read from `api.token_file`, or created there (mode 0600,
/// 256 random bits, hex) on first start. Compared in constant time.

#include <string>
#include <string_view>

#include "sluice/base/result.hh"

namespace sluice::ctl {

/// Reads the token (surrounding whitespace trimmed), creating the file when it is missing.
/// An existing file readable by group or others is refused: the token guards the box.
result<std::string> load_or_create_token(const std::string& path);

/// Constant-time equality (time depends on the lengths only).
bool token_equal(std::string_view a, std::string_view b) noexcept;

/// The token of an "Authorization: Bearer <token>" header value; empty when not a bearer.
std::string_view bearer_token(std::string_view authorization) noexcept;

} // namespace sluice::ctl
