#include "sluice/ctl/metrics.hh"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace sluice::ctl {
namespace {

std::string format_value(double v)
{
    if (std::isnan(v)) {
        return "NaN";
    }
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    char buf[64];
    if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15) {
        std::snprintf(buf, sizeof(buf), "%.0f", v);
    } else {
        std::snprintf(buf, sizeof(buf), "%.17g", v);
    }
    return buf;
}

void append_labels(std::string& out, const label_list& labels)
{
    if (labels.empty()) {
        return;
    }
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) {
            out += ',';
        }
        first = false;
        out += k;
        out += "=\"";
        out += escape_label_value(v);
        out += '"';
    }
    out += '}';
}

} // namespace

std::string escape_label_value(std::string_view v)
{
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

void exposition::family(std::string_view name, std::string_view type, std::string_view help)
{
    _out += "# HELP ";
    _out += name;
    _out += ' ';
    for (char c : help) { // HELP escapes backslash and newline
        if (c == '\\') {
            _out += "\\\\";
        } else if (c == '\n') {
            _out += "\\n";
        } else {
            _out += c;
        }
    }
    _out += "\n# TYPE ";
    _out += name;
    _out += ' ';
    _out += type;
    _out += '\n';
}

void exposition::sample(std::string_view name, const label_list& labels, double value)
{
    _out += name;
    append_labels(_out, labels);
    _out += ' ';
    _out += format_value(value);
    _out += '\n';
}

void exposition::histogram(std::string_view name, const label_list& labels,
                           const std::vector<std::pair<double, uint64_t>>& buckets, double sum,
                           uint64_t count)
{
    const std::string bucket = std::string(name) + "_bucket";
    for (const auto& [le, n] : buckets) {
        auto l = labels;
        l.emplace_back("le", format_value(le));
        sample(bucket, l, static_cast<double>(n));
    }
    auto l = labels;
    l.emplace_back("le", "+Inf");
    sample(bucket, l, static_cast<double>(count));
    sample(std::string(name) + "_sum", labels, sum);
    sample(std::string(name) + "_count", labels, static_cast<double>(count));
}

std::optional<double> parsed_exposition::find(std::string_view name,
                                              const std::map<std::string, std::string>& match) const
{
    for (const auto& s : samples) {
        if (s.name != name) {
            continue;
        }
        bool all = true;
        for (const auto& [k, v] : match) {
            const auto it = s.labels.find(k);
            if (it == s.labels.end() || it->second != v) {
                all = false;
                break;
            }
        }
        if (all) {
            return s.value;
        }
    }
    return std::nullopt;
}

result<parsed_exposition> parse_exposition(std::string_view text)
{
    parsed_exposition out;
    int lineno = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        ++lineno;
        const std::string where = "line " + std::to_string(lineno);
        if (line.empty()) {
            continue;
        }
        if (line.front() == '#') {
            if (line.substr(0, 7) == "# TYPE ") {
                auto rest = line.substr(7);
                const auto sp = rest.find(' ');
                if (sp == std::string_view::npos) {
                    return err("TYPE without a type", where);
                }
                out.types[std::string(rest.substr(0, sp))] = std::string(rest.substr(sp + 1));
            }
            continue;
        }
        parsed_sample s;
        size_t i = 0;
        while (i < line.size() && line[i] != '{' && line[i] != ' ') {
            ++i;
        }
        s.name = std::string(line.substr(0, i));
        if (s.name.empty()) {
            return err("sample without a name", where);
        }
        if (i < line.size() && line[i] == '{') {
            ++i;
            while (i < line.size() && line[i] != '}') {
                const auto eq = line.find('=', i);
                if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
                    return err("malformed label", where);
                }
                std::string key(line.substr(i, eq - i));
                std::string val;
                size_t j = eq + 2;
                for (; j < line.size() && line[j] != '"'; ++j) {
                    if (line[j] == '\\' && j + 1 < line.size()) {
                        ++j;
                        val += line[j] == 'n' ? '\n' : line[j];
                    } else {
                        val += line[j];
                    }
                }
                if (j >= line.size()) {
                    return err("unterminated label value", where);
                }
                s.labels[key] = val;
                i = j + 1;
                if (i < line.size() && line[i] == ',') {
                    ++i;
                }
            }
            if (i >= line.size()) {
                return err("unterminated label set", where);
            }
            ++i; // '}'
        }
        while (i < line.size() && line[i] == ' ') {
            ++i;
        }
        auto value = line.substr(i);
        const auto sp = value.find(' '); // an optional timestamp follows
        value = value.substr(0, sp);
        if (value == "+Inf") {
            s.value = INFINITY;
        } else if (value == "-Inf") {
            s.value = -INFINITY;
        } else if (value == "NaN") {
            s.value = NAN;
        } else {
            const std::string v(value);
            char* end = nullptr;
            s.value = std::strtod(v.c_str(), &end);
            if (v.empty() || end != v.c_str() + v.size()) {
                return err("bad value \"" + v + "\"", where);
            }
        }
        out.samples.push_back(std::move(s));
    }
    return out;
}

} // namespace sluice::ctl
