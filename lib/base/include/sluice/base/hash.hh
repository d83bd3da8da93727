#pragma once
/// @file
/// Small, fixed hash functions shared by modules whose results must be identical on every
/// appliance and every version (Maglev tables, locality choices). Never change their
/// constants: tables built by two versions would disagree and move flows.

#include <cstdint>

namespace sluice {

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche. Hot-path safe.
constexpr uint64_t fmix64(uint64_t k) noexcept
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

} // namespace sluice
