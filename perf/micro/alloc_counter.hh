#pragma once
/// @file
/// Counts heap allocations of the whole benchmark program (global operator new is
/// replaced in alloc_counter.cc), so a benchmark can report allocations per operation:
/// a hot-path benchmark that allocates is a bug (STYLE H4, BENCHMARKS.md).

#include <cstdint>

namespace sluice::perf {

/// Heap allocations (operator new and malloc through it) since program start.
uint64_t alloc_count() noexcept;

} // namespace sluice::perf
