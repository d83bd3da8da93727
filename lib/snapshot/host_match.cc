#include "sluice/snapshot/host_match.hh"

namespace sluice::snapshot {

std::string_view authority_host(std::string_view authority) noexcept
{
    if (!authority.empty() && authority.front() == '[') {
        const size_t close = authority.find(']');
        return close == std::string_view::npos ? authority : authority.substr(1, close - 1);
    }
    const size_t colon = authority.rfind(':');
    if (colon == std::string_view::npos || authority.find(':') != colon) {
        return authority; // no port, or a bare IPv6 literal
    }
    for (size_t i = colon + 1; i < authority.size(); ++i) {
        if (authority[i] < '0' || authority[i] > '9') {
            return authority;
        }
    }
    return authority.substr(0, colon);
}

bool host_matches(std::string_view pattern, std::string_view host) noexcept
{
    if (pattern == "*") {
        return true;
    }
    if (pattern.size() >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        const std::string_view suffix = pattern.substr(1); // ".example.com"
        return host.size() > suffix.size() &&
               iequals(host.substr(host.size() - suffix.size()), suffix);
    }
    return iequals(pattern, host);
}

namespace {

bool is_wild(std::string_view h) noexcept
{
    return !h.empty() && h[0] == '*';
}

} // namespace

bool hosts_intersect(std::string_view a, std::string_view b) noexcept
{
    if (is_wild(a) && is_wild(b)) {
        // Two wildcards intersect when one suffix ends the other ("*" has suffix "").
        const std::string_view sa = a.substr(1);
        const std::string_view sb = b.substr(1);
        const std::string_view shorter = sa.size() < sb.size() ? sa : sb;
        const std::string_view longer = sa.size() < sb.size() ? sb : sa;
        return iequals(longer.substr(longer.size() - shorter.size()), shorter);
    }
    if (is_wild(a)) {
        return host_matches(a, b);
    }
    if (is_wild(b)) {
        return host_matches(b, a);
    }
    return iequals(a, b);
}

bool host_subset_of(std::string_view a, std::string_view b) noexcept
{
    if (b == "*") {
        return true;
    }
    if (is_wild(b)) {
        if (is_wild(a)) {
            if (a == "*") {
                return false;
            }
            const std::string_view sa = a.substr(1);
            const std::string_view sb = b.substr(1);
            return sa.size() >= sb.size() && iequals(sa.substr(sa.size() - sb.size()), sb);
        }
        return host_matches(b, a);
    }
    return !is_wild(a) && iequals(a, b);
}

} // namespace sluice::snapshot
