#pragma once
/// @file
/// Prometheus text exposition (format 0.0.4): families with HELP/TYPE lines, samples with
/// escaped labels, histograms as _bucket/_sum/_count. A parser reads it back (tests, and
/// `sluicectl stats`). Config thread only.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/base/result.hh"

namespace sluice::ctl {

using label_list = std::vector<std::pair<std::string, std::string>>;

class exposition {
public:
    /// Starts a metric family; `type` is counter, gauge, histogram or untyped.
    void family(std::string_view name, std::string_view type, std::string_view help);
    /// One sample of the current family (or of `name` = family + suffix for histograms).
    void sample(std::string_view name, const label_list& labels, double value);
    /// A whole histogram: cumulative counts per upper bound (+Inf added), sum and count.
    void histogram(std::string_view name, const label_list& labels,
                   const std::vector<std::pair<double, uint64_t>>& buckets, double sum,
                   uint64_t count);

    [[nodiscard]] const std::string& text() const noexcept { return _out; }

private:
    std::string _out;
};

/// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);

struct parsed_sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
};

struct parsed_exposition {
    std::map<std::string, std::string> types; ///< family -> type
    std::vector<parsed_sample> samples;

    /// The value of the first sample with this name whose labels include `match`.
    [[nodiscard]] std::optional<double>
    find(std::string_view name, const std::map<std::string, std::string>& match = {}) const;
};

/// Parses text exposition; errors name the line.
result<parsed_exposition> parse_exposition(std::string_view text);

} // namespace sluice::ctl
