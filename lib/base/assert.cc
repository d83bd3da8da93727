#include "sluice/base/assert.hh"

#include <cstdio>
#include <cstdlib>

namespace sluice {
namespace {
std::atomic<uint64_t> g_bugs{0};
} // namespace

void assert_fail(const char* expr, const char* msg, const char* file, int line) noexcept
{
    std::fprintf(stderr, "sluice: assertion failed at %s:%d: %s %s\n", file, line, expr, msg);
    std::abort();
}

void bug_report(const char* msg, const char* file, int line) noexcept
{
    // Relaxed: a statistic, ordered with nothing.
    g_bugs.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "sluice: BUG at %s:%d: %s\n", file, line, msg);
#ifndef NDEBUG
    std::abort();
#endif
}

uint64_t bug_count() noexcept
{
    return g_bugs.load(std::memory_order_relaxed);
}

} // namespace sluice
