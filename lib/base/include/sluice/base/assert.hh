#pragma once
/// @file
/// Assertions (STYLE C3, after Envoy):
/// - SLUICE_ASSERT(cond): debug builds only; compiled out in release.
/// - SLUICE_RELEASE_ASSERT(cond, msg): always checked; logs and aborts.
/// - SLUICE_BUG(msg): a should-not-happen that release builds survive: logs and counts
///   (sluice::bug_count()), debug builds abort.

#include <atomic>
#include <cstdint>

namespace sluice {

[[noreturn, gnu::cold]] void assert_fail(const char* expr, const char* msg, const char* file,
                                         int line) noexcept;
[[gnu::cold]] void bug_report(const char* msg, const char* file, int line) noexcept;
/// How many SLUICE_BUG()s fired since start (exported as a metric by ctl).
uint64_t bug_count() noexcept;

} // namespace sluice

#define SLUICE_RELEASE_ASSERT(cond, msg)                                                           \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0)) {                                                        \
            ::sluice::assert_fail(#cond, msg, __FILE__, __LINE__);                                 \
        }                                                                                          \
    } while (0)

#ifdef NDEBUG
#define SLUICE_ASSERT(cond)                                                                        \
    do {                                                                                           \
        (void)sizeof(cond);                                                                        \
    } while (0)
#else
#define SLUICE_ASSERT(cond) SLUICE_RELEASE_ASSERT(cond, "")
#endif

#define SLUICE_BUG(msg) ::sluice::bug_report(msg, __FILE__, __LINE__)
