#pragma once
/// @file
/// Crash-safe persistence of small state files (the accepted mesh generation): a write is
/// temp file + fsync + rename + fsync of the directory, so after a crash at any moment the
/// file holds either the old or the new content, whole. Config thread only.

#include <optional>
#include <string>
#include <string_view>

#include "sluice/base/result.hh"

namespace sluice::ctl {

/// Atomically replaces `dir`/`name` with `content`. Creates `dir` (0700) when missing.
result<void> write_atomic(const std::string& dir, const std::string& name,
                          std::string_view content);

/// Reads `dir`/`name`; nullopt when it does not exist. Removes temp files a crash left
/// behind (they are never read: rename is the commit point).
result<std::optional<std::string>> read_state(const std::string& dir, const std::string& name);

} // namespace sluice::ctl
