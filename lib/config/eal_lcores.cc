// Parses the lcore options of EAL arguments so the config can be checked before the EAL
// runs (a config error must not touch the EAL). Mirrors DPDK's own -l/--lcores/-c syntax.
#include <charconv>
#include <cctype>

#include <rte_config.h>

#include "sluice/config/appliance.hh"

namespace sluice::config {
namespace {

bool parse_uint(std::string_view s, unsigned& out)
{
    if (s.empty()) {
        return false;
    }
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size();
}

// "a", "a-b", or a comma list of those; inserts into `out`.
bool parse_list(std::string_view s, std::set<unsigned>& out)
{
    while (!s.empty()) {
        const auto comma = s.find(',');
        const auto item = s.substr(0, comma);
        const auto dash = item.find('-');
        unsigned a = 0;
        unsigned b = 0;
        if (dash == std::string_view::npos) {
            if (!parse_uint(item, a)) {
                return false;
            }
            b = a;
        } else if (!parse_uint(item.substr(0, dash), a) || !parse_uint(item.substr(dash + 1), b) ||
                   b < a) {
            return false;
        }
        if (b >= RTE_MAX_LCORE) {
            return false;
        }
        for (unsigned i = a; i <= b; ++i) {
            out.insert(i);
        }
        s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    }
    return true;
}

// --lcores: elements "L[@C]" separated by commas at depth 0; L and C are a number, a range
// or a parenthesised list.
bool parse_lcores_map(std::string_view s, std::set<unsigned>& out)
{
    size_t i = 0;
    while (i < s.size()) {
        // the lcore part
        std::string_view lc;
        if (s[i] == '(') {
            const auto close = s.find(')', i);
            if (close == std::string_view::npos) {
                return false;
            }
            lc = s.substr(i + 1, close - i - 1);
            i = close + 1;
        } else {
            size_t j = i;
            while (j < s.size() && s[j] != '@' && s[j] != ',') {
                ++j;
            }
            lc = s.substr(i, j - i);
            i = j;
        }
        if (!parse_list(lc, out)) {
            return false;
        }
        if (i < s.size() && s[i] == '@') { // skip the CPU part
            ++i;
            int depth = 0;
            while (i < s.size() && (depth > 0 || s[i] != ',')) {
                depth += s[i] == '(' ? 1 : (s[i] == ')' ? -1 : 0);
                ++i;
            }
        }
        if (i < s.size()) {
            if (s[i] != ',') {
                return false;
            }
            ++i;
        }
    }
    return true;
}

} // namespace

result<std::optional<eal_lcores>> parse_eal_lcores(const std::vector<std::string>& args)
{
    std::optional<eal_lcores> r;
    std::optional<unsigned> main;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value_of = [&](std::string_view opt, std::string& v) -> bool {
            if (a == opt) {
                if (i + 1 >= args.size()) {
                    return false;
                }
                v = args[++i];
                return true;
            }
            if (opt.size() == 2 && a.size() > 2 && a.compare(0, 2, opt) == 0) {
                v = a.substr(2); // -l0-3
                return true;
            }
            if (opt.size() > 2 && a.size() > opt.size() + 1 && a.compare(0, opt.size(), opt) == 0 &&
                a[opt.size()] == '=') {
                v = a.substr(opt.size() + 1); // --lcores=...
                return true;
            }
            return false;
        };
        std::string v;
        if (value_of("-l", v)) {
            r.emplace();
            if (!parse_list(v, r->enabled)) {
                return err("EAL option -l \"" + v + "\" is not a valid lcore list");
            }
        } else if (value_of("--lcores", v)) {
            r.emplace();
            if (!parse_lcores_map(v, r->enabled)) {
                return err("EAL option --lcores \"" + v + "\" is not a valid lcore map");
            }
        } else if (value_of("-c", v)) {
            r.emplace();
            std::string_view hex = v;
            if (hex.size() > 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) {
                hex.remove_prefix(2);
            }
            unsigned bit = 0;
            for (auto it = hex.rbegin(); it != hex.rend(); ++it, bit += 4) {
                if (!std::isxdigit(static_cast<unsigned char>(*it))) {
                    return err("EAL option -c \"" + v + "\" is not a hex mask");
                }
                const unsigned nib = std::isdigit(static_cast<unsigned char>(*it))
                                         ? unsigned(*it - '0')
                                         : unsigned(std::tolower(*it) - 'a' + 10);
                for (unsigned b = 0; b < 4; ++b) {
                    if ((nib & (1u << b)) != 0) {
                        if (bit + b >= RTE_MAX_LCORE) {
                            return err("EAL option -c \"" + v + "\" names lcores beyond " +
                                       std::to_string(RTE_MAX_LCORE - 1));
                        }
                        r->enabled.insert(bit + b);
                    }
                }
            }
        } else if (value_of("--main-lcore", v)) {
            unsigned m = 0;
            if (!parse_uint(v, m)) {
                return err("EAL option --main-lcore \"" + v + "\" is not a number");
            }
            main = m;
        }
    }
    if (r) {
        if (r->enabled.empty()) {
            return err("EAL arguments enable no lcore");
        }
        r->main = main.value_or(*r->enabled.begin());
    }
    return r;
}

} // namespace sluice::config
