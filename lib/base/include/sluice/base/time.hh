#pragma once
/// @file
/// Time on the data path is the TSC (never a syscall per packet). Conversions need the TSC
/// frequency, which rte_get_tsc_hz() knows after rte_eal_init(); pure code takes a `tsc_hz`.

#include <cstdint>

#include <rte_cycles.h>

namespace sluice {

/// Reads the TSC; cheap, not serialising.
inline uint64_t tsc_now() noexcept
{
    return rte_rdtsc();
}

/// Converts microseconds to TSC cycles at the given frequency.
constexpr uint64_t us_to_tsc(uint64_t us, uint64_t tsc_hz) noexcept
{
    return us * (tsc_hz / 1000000u) + (us * (tsc_hz % 1000000u)) / 1000000u;
}

} // namespace sluice
