#include "sluice/stats/counters.hh"

namespace sluice::stats {
namespace {

constexpr std::string_view k_names[] = {
#define SLUICE_X(name, help) #name,
    SLUICE_DROP_REASONS(SLUICE_X)
#undef SLUICE_X
};
constexpr std::string_view k_help[] = {
#define SLUICE_X(name, help) help,
    SLUICE_DROP_REASONS(SLUICE_X)
#undef SLUICE_X
};
static_assert(std::size(k_names) == drop_count);
constexpr std::string_view k_l4_names[] = {
#define SLUICE_X(name, help) #name,
    SLUICE_L4_EVENTS(SLUICE_X)
#undef SLUICE_X
};
static_assert(std::size(k_l4_names) == l4_event_count);

void add_into(totals& t, const lcore_counters& c) noexcept
{
    for (size_t p = 0; p < max_ports; ++p) {
        const auto& s = c.port[p];
        auto& d = t.port[p];
        d.rx_packets += s.rx_packets.get();
        d.rx_bytes += s.rx_bytes.get();
        d.tx_packets += s.tx_packets.get();
        d.tx_bytes += s.tx_bytes.get();
        d.to_kernel += s.to_kernel.get();
        d.from_kernel += s.from_kernel.get();
    }
    for (size_t i = 0; i < drop_count; ++i) {
        t.drops[i] += c.drops[i].get();
    }
    for (size_t i = 0; i < l4_event_count; ++i) {
        t.l4[i] += c.l4[i].get();
    }
}

} // namespace

std::string_view drop_name(drop d) noexcept
{
    const auto i = static_cast<size_t>(d);
    return i < drop_count ? k_names[i] : "unknown";
}

std::string_view drop_help(drop d) noexcept
{
    const auto i = static_cast<size_t>(d);
    return i < drop_count ? k_help[i] : "";
}

std::string_view l4_event_name(l4_event e) noexcept
{
    const auto i = static_cast<size_t>(e);
    return i < l4_event_count ? k_l4_names[i] : "unknown";
}

uint64_t totals::total_drops() const noexcept
{
    uint64_t n = 0;
    for (auto v : drops) {
        n += v;
    }
    return n;
}

totals registry::sum_lcore(unsigned lcore) const noexcept
{
    totals t;
    add_into(t, _lcores[lcore]);
    return t;
}

totals registry::sum() const noexcept
{
    totals t;
    for (const auto& c : _lcores) {
        add_into(t, c);
    }
    return t;
}

} // namespace sluice::stats
