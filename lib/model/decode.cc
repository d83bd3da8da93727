// Decoding Istio and Kubernetes objects from YAML/JSON into the model (decode.hh).
//
// JSON is converted into a YAML::Node tree first so one decoder serves both. yaml-cpp and
// nlohmann-json throw; every call into them stays inside this file's try blocks (STYLE C1).

#include "sluice/model/decode.hh"
#include "sluice/base/ascii.hh"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice::model {

// ---------------------------------------------------------------- small public helpers

std::string diagnostic::to_string() const
{
    std::string out;
    switch (level) {
    case severity::error:
        out = "error";
        break;
    case severity::warning:
        out = "warning";
        break;
    case severity::note:
        out = "note";
        break;
    }
    out += ":";
    if (!file.empty()) {
        out += " " + file;
        if (line > 0) {
            out += ":" + std::to_string(line);
        }
        out += ":";
    }
    if (!object.empty()) {
        out += " " + object + ":";
    }
    if (!field.empty()) {
        out += " " + field + ":";
    }
    out += " " + message;
    return out;
}

bool decoded::has_errors() const
{
    return std::any_of(diagnostics.begin(), diagnostics.end(),
                       [](const diagnostic& d) { return d.level == severity::error; });
}

namespace {

bool is_ip_literal(std::string_view s)
{
    if (s.empty()) {
        return false;
    }
    if (s.find(':') != std::string_view::npos) {
        return std::all_of(s.begin(), s.end(), [](char c) {
            return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        });
    }
    int dots = 0;
    for (char c : s) {
        if (c == '.') {
            ++dots;
        } else if (!std::isdigit(static_cast<unsigned char>(c))) {
            return false;
        }
    }
    return dots == 3;
}

} // namespace

std::string resolve_host(std::string_view host, std::string_view ns, const options& opts)
{
    std::string out(host);
    // Istio ResolveShortnameToFQDN (pilot/pkg/model/config.go): "*", IPs and anything with a
    // dot are taken as written; only a dotless name gets ".<ns>.svc.<domain>".
    if (out.empty() || out == "*" || out.find('.') != std::string::npos || is_ip_literal(out)) {
        return out;
    }
    out += ".";
    out += ns;
    out += ".svc.";
    out += opts.cluster_domain;
    return out;
}

result<duration> parse_duration(std::string_view text)
{
    // Go's time.ParseDuration (which Istio's YAML decoding accepts), except that negative
    // durations are refused: no Istio field means anything by one.
    const std::string orig(text);
    std::string_view s = text;
    if (s.empty()) {
        return err("invalid duration \"\": empty");
    }
    if (s.front() == '-') {
        return err("invalid duration \"" + orig + "\": must not be negative");
    }
    if (s.front() == '+') {
        s.remove_prefix(1);
    }
    if (s == "0") {
        return duration{0};
    }
    if (s.empty()) {
        return err("invalid duration \"" + orig + "\"");
    }
    uint64_t total = 0;
    constexpr uint64_t max_ns = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    while (!s.empty()) {
        uint64_t v = 0;
        bool pre = false;
        bool overflow = false;
        while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
            pre = true;
            const uint64_t d = static_cast<uint64_t>(s.front() - '0');
            if (v > (max_ns - d) / 10) {
                overflow = true;
            } else {
                v = v * 10 + d;
            }
            s.remove_prefix(1);
        }
        if (overflow) {
            return err("invalid duration \"" + orig + "\": overflow");
        }
        uint64_t frac = 0;
        double scale = 1;
        bool post = false;
        if (!s.empty() && s.front() == '.') {
            s.remove_prefix(1);
            while (!s.empty() && s.front() >= '0' && s.front() <= '9') {
                post = true;
                if (frac <= (max_ns - 9) / 10) {
                    frac = frac * 10 + static_cast<uint64_t>(s.front() - '0');
                    scale *= 10;
                }
                s.remove_prefix(1);
            }
        }
        // As Go: "1.s" and ".5s" are valid, ".s" is not.
        if (!pre && !post) {
            return err("invalid duration \"" + orig + "\": expected a number");
        }
        size_t ulen = 0;
        while (ulen < s.size() && s[ulen] != '.' && (s[ulen] < '0' || s[ulen] > '9')) {
            ++ulen;
        }
        const std::string_view unit = s.substr(0, ulen);
        s.remove_prefix(ulen);
        uint64_t mult = 0;
        if (unit == "ns") {
            mult = 1;
        } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
            mult = 1000;
        } else if (unit == "ms") {
            mult = 1000 * 1000;
        } else if (unit == "s") {
            mult = 1000ULL * 1000 * 1000;
        } else if (unit == "m") {
            mult = 60ULL * 1000 * 1000 * 1000;
        } else if (unit == "h") {
            mult = 3600ULL * 1000 * 1000 * 1000;
        } else if (unit.empty()) {
            return err("invalid duration \"" + orig + "\": missing unit (ns, us, ms, s, m, h)");
        } else {
            return err("invalid duration \"" + orig + "\": unknown unit \"" + std::string(unit) +
                       "\"");
        }
        if (v > max_ns / mult) {
            return err("invalid duration \"" + orig + "\": overflow");
        }
        v *= mult;
        if (frac > 0) {
            v += static_cast<uint64_t>(static_cast<double>(frac) *
                                       (static_cast<double>(mult) / scale));
            if (v > max_ns) {
                return err("invalid duration \"" + orig + "\": overflow");
            }
        }
        total += v;
        if (total > max_ns) {
            return err("invalid duration \"" + orig + "\": overflow");
        }
    }
    return duration{static_cast<int64_t>(total)};
}

namespace {

using node = YAML::Node;

bool present(const node& n)
{
    return n.IsDefined() && !n.IsNull();
}

std::string node_kind(const node& n)
{
    if (n.IsMap()) {
        return "a map";
    }
    if (n.IsSequence()) {
        return "a list";
    }
    if (n.IsScalar()) {
        return "\"" + n.Scalar() + "\"";
    }
    return "null";
}

std::string at(const std::string& path, const std::string& key)
{
    return path.empty() ? key : path + "." + key;
}

std::string idx(const std::string& path, size_t i)
{
    return path + "[" + std::to_string(i) + "]";
}

/// Per-object decoding state: where diagnostics go and how to name the object.
struct ctx {
    decoded& out;
    std::string file;
    int line_offset = 0; ///< 0-based line where the current YAML document chunk starts
    std::string object;
    int object_line = 0;
    bool strict = true; ///< unknown fields are errors (Istio kinds)
    options opts;
    std::string ns;
    bool failed = false;

    int line_of(const node& n) const
    {
        const YAML::Mark m = n.Mark();
        if (m.is_null() || m.line < 0) {
            return object_line;
        }
        return m.line + line_offset + 1;
    }

    void add(severity s, const std::string& field, std::string msg, int line)
    {
        if (s == severity::error) {
            failed = true;
        }
        out.diagnostics.push_back(diagnostic{s, object, field, std::move(msg), file, line});
    }

    void error(const node& n, const std::string& field, std::string msg)
    {
        add(severity::error, field, std::move(msg), line_of(n));
    }
    void warning(const node& n, const std::string& field, std::string msg)
    {
        add(severity::warning, field, std::move(msg), line_of(n));
    }
};

/// A map being decoded: remembers which keys were read so the rest are reported as unknown.
class fields {
public:
    fields(ctx& c, const node& n, std::string path) : _c(c), _n(n), _path(std::move(path))
    {
        _ok = n.IsMap();
        if (!_ok && present(n)) {
            _c.error(n, _path, "expected a map, got " + node_kind(n));
        }
    }
    fields(const fields&) = delete;
    fields& operator=(const fields&) = delete;
    ~fields()
    {
        if (!_ok || !_c.strict) {
            return;
        }
        for (const auto& kv : _n) {
            const std::string key = kv.first.Scalar();
            if (_seen.count(key) == 0) {
                _c.error(kv.first, at(_path, key), "unknown field \"" + key + "\"");
            }
        }
    }

    [[nodiscard]] bool ok() const { return _ok; }
    node operator[](const char* key)
    {
        _seen.insert(key);
        if (!_ok) {
            return node(YAML::NodeType::Undefined);
        }
        const node& n = _n;
        return n[key];
    }
    [[nodiscard]] std::string path(const char* key) const { return at(_path, key); }
    [[nodiscard]] const std::string& path() const { return _path; }
    [[nodiscard]] bool has(const char* key) { return present((*this)[key]); }

private:
    ctx& _c;
    node _n;
    std::string _path;
    std::set<std::string> _seen;
    bool _ok = false;
};

// ---------------------------------------------------------------- scalars

bool scalar_or_error(ctx& c, const node& n, const std::string& path, const char* what)
{
    if (!present(n)) {
        return false;
    }
    if (!n.IsScalar()) {
        c.error(n, path, std::string("expected ") + what + ", got " + node_kind(n));
        return false;
    }
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, std::string& out)
{
    if (!scalar_or_error(c, n, path, "a string")) {
        return false;
    }
    out = n.Scalar();
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, std::optional<std::string>& out)
{
    std::string v;
    if (!get(c, n, path, v)) {
        return false;
    }
    out = std::move(v);
    return true;
}

bool parse_int(const std::string& s, int64_t& out)
{
    const char* b = s.data();
    const char* e = s.data() + s.size();
    if (b != e && *b == '+') {
        ++b;
    }
    const auto r = std::from_chars(b, e, out);
    return b != e && r.ec == std::errc() && r.ptr == e;
}

bool get_int(ctx& c, const node& n, const std::string& path, int64_t lo, int64_t hi, int64_t& out)
{
    if (!scalar_or_error(c, n, path, "an integer")) {
        return false;
    }
    int64_t v = 0;
    if (!parse_int(n.Scalar(), v)) {
        c.error(n, path, "expected an integer, got \"" + n.Scalar() + "\"");
        return false;
    }
    if (v < lo || v > hi) {
        c.error(n, path,
                "integer " + n.Scalar() + " out of range [" + std::to_string(lo) + ", " +
                    std::to_string(hi) + "]");
        return false;
    }
    out = v;
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, uint32_t& out)
{
    int64_t v = 0;
    if (!get_int(c, n, path, 0, UINT32_MAX, v)) {
        return false;
    }
    out = static_cast<uint32_t>(v);
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, std::optional<uint32_t>& out)
{
    uint32_t v = 0;
    if (!get(c, n, path, v)) {
        return false;
    }
    out = v;
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, uint64_t& out)
{
    int64_t v = 0;
    if (!get_int(c, n, path, 0, std::numeric_limits<int64_t>::max(), v)) {
        return false;
    }
    out = static_cast<uint64_t>(v);
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, std::optional<int32_t>& out)
{
    int64_t v = 0;
    if (!get_int(c, n, path, INT32_MIN, INT32_MAX, v)) {
        return false;
    }
    out = static_cast<int32_t>(v);
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, double& out)
{
    if (!scalar_or_error(c, n, path, "a number")) {
        return false;
    }
    const std::string& s = n.Scalar();
    const char* b = s.data();
    const char* e = s.data() + s.size();
    if (b != e && *b == '+') {
        ++b;
    }
    double v = 0;
    const auto r = std::from_chars(b, e, v);
    if (b == e || r.ec != std::errc() || r.ptr != e || !std::isfinite(v)) {
        c.error(n, path, "expected a number, got \"" + s + "\"");
        return false;
    }
    out = v;
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, bool& out)
{
    if (!scalar_or_error(c, n, path, "a boolean")) {
        return false;
    }
    const std::string& s = n.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") {
        out = true;
        return true;
    }
    if (s == "false" || s == "False" || s == "FALSE") {
        out = false;
        return true;
    }
    c.error(n, path, "expected a boolean, got \"" + s + "\"");
    return false;
}

bool get(ctx& c, const node& n, const std::string& path, std::optional<bool>& out)
{
    bool v = false;
    if (!get(c, n, path, v)) {
        return false;
    }
    out = v;
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, duration& out)
{
    if (!scalar_or_error(c, n, path, "a duration")) {
        return false;
    }
    auto d = parse_duration(n.Scalar());
    if (!d) {
        c.error(n, path, d.err().message);
        return false;
    }
    out = *d;
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, std::optional<duration>& out)
{
    duration d{};
    if (!get(c, n, path, d)) {
        return false;
    }
    out = d;
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, std::vector<std::string>& out)
{
    if (!present(n)) {
        return false;
    }
    if (!n.IsSequence()) {
        c.error(n, path, "expected a list, got " + node_kind(n));
        return false;
    }
    out.clear();
    for (size_t i = 0; i < n.size(); ++i) {
        std::string v;
        if (get(c, n[i], idx(path, i), v)) {
            out.push_back(std::move(v));
        }
    }
    return true;
}

bool get(ctx& c, const node& n, const std::string& path, std::map<std::string, std::string>& out)
{
    if (!present(n)) {
        return false;
    }
    if (!n.IsMap()) {
        c.error(n, path, "expected a map, got " + node_kind(n));
        return false;
    }
    out.clear();
    for (const auto& kv : n) {
        const std::string key = kv.first.Scalar();
        std::string v;
        if (!present(kv.second)) {
            out[key] = "";
        } else if (get(c, kv.second, at(path, key), v)) {
            out[key] = std::move(v);
        }
    }
    return true;
}

template <typename E>
bool get_enum(ctx& c, const node& n, const std::string& path,
              std::initializer_list<std::pair<const char*, E>> values, E& out)
{
    std::string s;
    if (!get(c, n, path, s)) {
        return false;
    }
    for (const auto& [name, v] : values) {
        if (s == name) {
            out = v;
            return true;
        }
    }
    std::string list;
    for (const auto& [name, v] : values) {
        list += list.empty() ? "" : ", ";
        list += name;
    }
    c.error(n, path, "unknown value \"" + s + "\"; expected one of " + list);
    return false;
}

/// Calls fn(item, path) for each element of a list field.
template <typename F>
void each(ctx& c, const node& n, const std::string& path, F&& fn)
{
    if (!present(n)) {
        return;
    }
    if (!n.IsSequence()) {
        c.error(n, path, "expected a list, got " + node_kind(n));
        return;
    }
    for (size_t i = 0; i < n.size(); ++i) {
        fn(n[i], idx(path, i));
    }
}

// ---------------------------------------------------------------- shared pieces

std::string resolve_gateway(const std::string& g, const std::string& ns)
{
    // Istio resolveGatewayName: "mesh" stays, "ns/name" stays, "name" is in the VS's
    // namespace, the legacy "name.ns.svc.cluster.local" becomes "ns/name".
    if (g == "mesh" || g.find('/') != std::string::npos) {
        return g;
    }
    const auto dot = g.find('.');
    if (dot == std::string::npos) {
        return ns + "/" + g;
    }
    const auto dot2 = g.find('.', dot + 1);
    return g.substr(dot + 1, dot2 == std::string::npos ? std::string::npos : dot2 - dot - 1) + "/" +
           g.substr(0, dot);
}

void get_gateways(ctx& c, const node& n, const std::string& path, std::vector<std::string>& out)
{
    if (get(c, n, path, out)) {
        for (auto& g : out) {
            g = resolve_gateway(g, c.ns);
        }
    }
}

bool decode_string_match(ctx& c, const node& n, const std::string& path, string_match& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return false;
    }
    int set = 0;
    out = string_match{};
    const std::pair<const char*, string_match::kind> keys[] = {
        {"exact", string_match::kind::exact},
        {"prefix", string_match::kind::prefix},
        {"regex", string_match::kind::regex},
    };
    for (const auto& [key, how] : keys) {
        const node v = f[key];
        if (!v.IsDefined()) {
            continue;
        }
        ++set;
        out.how = how;
        if (present(v)) {
            get(c, v, f.path(key), out.value);
        }
    }
    if (set > 1) {
        c.error(n, path, "only one of exact, prefix or regex may be set");
    }
    return true;
}

void decode_match_map(ctx& c, const node& n, const std::string& path, bool lower_keys,
                      std::map<std::string, string_match>& out)
{
    if (!present(n)) {
        return;
    }
    if (!n.IsMap()) {
        c.error(n, path, "expected a map, got " + node_kind(n));
        return;
    }
    for (const auto& kv : n) {
        const std::string key = kv.first.Scalar();
        string_match m;
        if (present(kv.second)) {
            decode_string_match(c, kv.second, at(path, key), m);
        }
        out[lower_keys ? to_lower(key) : key] = m;
    }
}

void decode_destination(ctx& c, const node& n, const std::string& path, destination& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    if (get(c, f["host"], f.path("host"), out.host)) {
        out.host = resolve_host(out.host, c.ns, c.opts);
    }
    get(c, f["subset"], f.path("subset"), out.subset);
    const node p = f["port"];
    if (present(p)) {
        fields pf(c, p, f.path("port"));
        get(c, pf["number"], pf.path("number"), out.port);
    }
}

void decode_header_ops(ctx& c, const node& n, const std::string& path, header_ops& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    for (const char* key : {"set", "add"}) {
        const node m = f[key];
        auto& dst = std::string_view(key) == "set" ? out.set : out.add;
        if (!present(m)) {
            continue;
        }
        if (!m.IsMap()) {
            c.error(m, f.path(key), "expected a map, got " + node_kind(m));
            continue;
        }
        for (const auto& kv : m) {
            std::string v;
            const std::string k = kv.first.Scalar();
            if (!present(kv.second) || get(c, kv.second, at(f.path(key), k), v)) {
                dst.emplace_back(k, v);
            }
        }
    }
    get(c, f["remove"], f.path("remove"), out.remove);
}

void decode_headers(ctx& c, const node& n, const std::string& path, headers_policy& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    if (f.has("request")) {
        decode_header_ops(c, f["request"], f.path("request"), out.request);
    }
    if (f.has("response")) {
        decode_header_ops(c, f["response"], f.path("response"), out.response);
    }
}

void decode_percentage(ctx& c, const node& n, const std::string& path, std::optional<double>& out)
{
    fields f(c, n, path);
    if (f.ok()) {
        double v = 0;
        if (f["value"].IsDefined()) {
            if (present(f["value"]) && get(c, f["value"], f.path("value"), v)) {
                out = v;
            } else if (!present(f["value"])) {
                out = 0.0;
            }
        } else {
            out = 0.0; // `percentage: {}` is 0%
        }
    }
}

void decode_route_destination(ctx& c, const node& n, const std::string& path, bool http,
                              route_destination& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    if (f.has("destination")) {
        decode_destination(c, f["destination"], f.path("destination"), out.dest);
    }
    get(c, f["weight"], f.path("weight"), out.weight);
    if (http && f.has("headers")) {
        decode_headers(c, f["headers"], f.path("headers"), out.headers);
    }
}

// ---------------------------------------------------------------- VirtualService

void decode_http_match(ctx& c, const node& n, const std::string& path, http_match& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    get(c, f["name"], f.path("name"), out.name);
    for (auto [key, dst] :
         {std::pair{"uri", &out.uri}, std::pair{"scheme", &out.scheme},
          std::pair{"method", &out.method}, std::pair{"authority", &out.authority}}) {
        if (f.has(key)) {
            string_match m;
            if (decode_string_match(c, f[key], f.path(key), m)) {
                *dst = m;
            }
        }
    }
    decode_match_map(c, f["headers"], f.path("headers"), true, out.headers);
    decode_match_map(c, f["queryParams"], f.path("queryParams"), false, out.query_params);
    decode_match_map(c, f["withoutHeaders"], f.path("withoutHeaders"), true, out.without_headers);
    get(c, f["port"], f.path("port"), out.port);
    get(c, f["sourceLabels"], f.path("sourceLabels"), out.source_labels);
    get_gateways(c, f["gateways"], f.path("gateways"), out.gateways);
    get(c, f["ignoreUriCase"], f.path("ignoreUriCase"), out.ignore_uri_case);
    get(c, f["sourceNamespace"], f.path("sourceNamespace"), out.source_namespace);
    get(c, f["statPrefix"], f.path("statPrefix"), out.stat_prefix);
}

bool base64_decode(const std::string& in, std::string& out)
{
    static const std::string chars =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.clear();
    uint32_t buf = 0;
    int bits = 0;
    size_t pad = 0;
    for (char ch : in) {
        if (ch == '\n' || ch == '\r' || ch == ' ') {
            continue;
        }
        if (ch == '=') {
            ++pad;
            continue;
        }
        if (pad > 0) {
            return false;
        }
        char c = ch == '-' ? '+' : ch == '_' ? '/' : ch; // URL-safe alphabet too
        const auto pos = chars.find(c);
        if (pos == std::string::npos) {
            return false;
        }
        buf = (buf << 6) | static_cast<uint32_t>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buf >> bits) & 0xff));
        }
    }
    return pad <= 2;
}

void decode_http_route(ctx& c, const node& n, const std::string& path, http_route& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    get(c, f["name"], f.path("name"), out.name);
    each(c, f["match"], f.path("match"), [&](const node& m, const std::string& p) {
        out.match.emplace_back();
        decode_http_match(c, m, p, out.match.back());
    });
    each(c, f["route"], f.path("route"), [&](const node& m, const std::string& p) {
        out.route.emplace_back();
        decode_route_destination(c, m, p, true, out.route.back());
    });
    if (f.has("redirect")) {
        fields r(c, f["redirect"], f.path("redirect"));
        if (r.ok()) {
            http_redirect rd;
            get(c, r["uri"], r.path("uri"), rd.uri);
            get(c, r["prefixRewrite"], r.path("prefixRewrite"), rd.prefix_rewrite);
            get(c, r["authority"], r.path("authority"), rd.authority);
            get(c, r["port"], r.path("port"), rd.port);
            get_enum(c, r["derivePort"], r.path("derivePort"),
                     {{"FROM_PROTOCOL_DEFAULT", http_redirect::derive::from_protocol_default},
                      {"FROM_REQUEST_PORT", http_redirect::derive::from_request_port}},
                     rd.derive_port);
            get(c, r["scheme"], r.path("scheme"), rd.scheme);
            get(c, r["redirectCode"], r.path("redirectCode"), rd.redirect_code);
            out.redirect = rd;
        }
    }
    if (f.has("directResponse")) {
        fields d(c, f["directResponse"], f.path("directResponse"));
        if (d.ok()) {
            http_direct_response dr;
            get(c, d["status"], d.path("status"), dr.status);
            if (d.has("body")) {
                fields b(c, d["body"], d.path("body"));
                std::string s;
                if (get(c, b["string"], b.path("string"), s)) {
                    dr.body = s;
                }
                if (get(c, b["bytes"], b.path("bytes"), s)) {
                    std::string raw;
                    if (!base64_decode(s, raw)) {
                        c.error(b["bytes"], b.path("bytes"), "invalid base64");
                    } else {
                        if (dr.body) {
                            c.error(d["body"], d.path("body"),
                                    "only one of string or bytes may be set");
                        }
                        dr.body = raw;
                    }
                }
            }
            out.direct_response = dr;
        }
    }
    if (f.has("delegate")) {
        fields d(c, f["delegate"], f.path("delegate"));
        if (d.ok()) {
            delegate_ref dl;
            get(c, d["name"], d.path("name"), dl.name);
            get(c, d["namespace"], d.path("namespace"), dl.ns);
            if (dl.ns.empty()) {
                dl.ns = c.ns;
            }
            out.delegate = dl;
        }
    }
    if (f.has("rewrite")) {
        fields r(c, f["rewrite"], f.path("rewrite"));
        if (r.ok()) {
            http_rewrite rw;
            get(c, r["uri"], r.path("uri"), rw.uri);
            get(c, r["authority"], r.path("authority"), rw.authority);
            if (r.has("uriRegexRewrite")) {
                fields x(c, r["uriRegexRewrite"], r.path("uriRegexRewrite"));
                regex_rewrite rr;
                get(c, x["match"], x.path("match"), rr.match);
                get(c, x["rewrite"], x.path("rewrite"), rr.rewrite);
                rw.uri_regex_rewrite = rr;
            }
            out.rewrite = rw;
        }
    }
    get(c, f["timeout"], f.path("timeout"), out.timeout);
    if (f.has("retries")) {
        fields r(c, f["retries"], f.path("retries"));
        if (r.ok()) {
            http_retry rt;
            int64_t attempts = 0;
            if (get_int(c, r["attempts"], r.path("attempts"), 0, INT32_MAX, attempts)) {
                rt.attempts = static_cast<uint32_t>(attempts);
            }
            get(c, r["perTryTimeout"], r.path("perTryTimeout"), rt.per_try_timeout);
            get(c, r["retryOn"], r.path("retryOn"), rt.retry_on);
            get(c, r["retryRemoteLocalities"], r.path("retryRemoteLocalities"),
                rt.retry_remote_localities);
            get(c, r["retryIgnorePreviousHosts"], r.path("retryIgnorePreviousHosts"),
                rt.retry_ignore_previous_hosts);
            get(c, r["backoff"], r.path("backoff"), rt.backoff);
            out.retries = rt;
        }
    }
    if (f.has("fault")) {
        fields fl(c, f["fault"], f.path("fault"));
        if (fl.ok()) {
            http_fault ft;
            if (fl.has("delay")) {
                fields d(c, fl["delay"], fl.path("delay"));
                fault_delay fd;
                get(c, d["fixedDelay"], d.path("fixedDelay"), fd.fixed_delay);
                if (d.has("exponentialDelay")) {
                    c.error(d["exponentialDelay"], d.path("exponentialDelay"),
                            "exponentialDelay is not supported");
                }
                if (d.has("percentage")) {
                    decode_percentage(c, d["percentage"], d.path("percentage"), fd.percentage);
                }
                int64_t pct = 0;
                if (get_int(c, d["percent"], d.path("percent"), INT32_MIN, INT32_MAX, pct) &&
                    !fd.percentage) {
                    fd.percentage = static_cast<double>(pct); // deprecated integer percent
                }
                ft.delay = fd;
            }
            if (fl.has("abort")) {
                fields a(c, fl["abort"], fl.path("abort"));
                fault_abort fa;
                int64_t status = 0;
                if (get_int(c, a["httpStatus"], a.path("httpStatus"), INT32_MIN, INT32_MAX,
                            status)) {
                    fa.http_status = static_cast<uint32_t>(std::max<int64_t>(status, 0));
                }
                get(c, a["grpcStatus"], a.path("grpcStatus"), fa.grpc_status);
                if (a.has("http2Error")) {
                    c.error(a["http2Error"], a.path("http2Error"),
                            "HTTP/2 abort fault injection is not supported");
                }
                if (a.has("percentage")) {
                    decode_percentage(c, a["percentage"], a.path("percentage"), fa.percentage);
                }
                int64_t pct = 0;
                if (get_int(c, a["percent"], a.path("percent"), INT32_MIN, INT32_MAX, pct) &&
                    !fa.percentage) {
                    fa.percentage = static_cast<double>(pct);
                }
                ft.abort = fa;
            }
            out.fault = ft;
        }
    }
    if (f.has("mirror")) {
        destination d;
        decode_destination(c, f["mirror"], f.path("mirror"), d);
        out.mirror = d;
    }
    if (f.has("mirrorPercentage")) {
        decode_percentage(c, f["mirrorPercentage"], f.path("mirrorPercentage"),
                          out.mirror_percentage);
    }
    int64_t mirror_percent = 0;
    if (get_int(c, f["mirrorPercent"], f.path("mirrorPercent"), INT32_MIN, INT32_MAX,
                mirror_percent)) {
        c.warning(f["mirrorPercent"], f.path("mirrorPercent"),
                  "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead");
        if (!out.mirror_percentage) {
            out.mirror_percentage = static_cast<double>(mirror_percent);
        }
    }
    each(c, f["mirrors"], f.path("mirrors"), [&](const node& m, const std::string& p) {
        fields mf(c, m, p);
        mirror_policy mp;
        if (mf.has("destination")) {
            decode_destination(c, mf["destination"], mf.path("destination"), mp.dest);
        }
        if (mf.has("percentage")) {
            decode_percentage(c, mf["percentage"], mf.path("percentage"), mp.percentage);
        }
        out.mirrors.push_back(mp);
    });
    if (f.has("corsPolicy")) {
        fields cp(c, f["corsPolicy"], f.path("corsPolicy"));
        if (cp.ok()) {
            cors_policy cors;
            each(c, cp["allowOrigins"], cp.path("allowOrigins"),
                 [&](const node& m, const std::string& p) {
                     string_match sm;
                     if (decode_string_match(c, m, p, sm)) {
                         cors.allow_origins.push_back(sm);
                     }
                 });
            std::vector<std::string> legacy;
            if (get(c, cp["allowOrigin"], cp.path("allowOrigin"), legacy)) {
                for (auto& o : legacy) {
                    cors.allow_origins.push_back({string_match::kind::exact, o});
                }
            }
            get(c, cp["allowMethods"], cp.path("allowMethods"), cors.allow_methods);
            get(c, cp["allowHeaders"], cp.path("allowHeaders"), cors.allow_headers);
            get(c, cp["exposeHeaders"], cp.path("exposeHeaders"), cors.expose_headers);
            get(c, cp["maxAge"], cp.path("maxAge"), cors.max_age);
            get(c, cp["allowCredentials"], cp.path("allowCredentials"), cors.allow_credentials);
            get(c, cp["unmatchedPreflights"], cp.path("unmatchedPreflights"),
                cors.unmatched_preflights);
            out.cors = cors;
        }
    }
    if (f.has("headers")) {
        decode_headers(c, f["headers"], f.path("headers"), out.headers);
    }
}

void decode_l4_match_common(ctx& c, fields& f, std::vector<std::string>& subnets,
                            std::optional<uint32_t>& port, labels& source_labels,
                            std::vector<std::string>& gateways, std::string& source_ns)
{
    get(c, f["destinationSubnets"], f.path("destinationSubnets"), subnets);
    get(c, f["port"], f.path("port"), port);
    get(c, f["sourceLabels"], f.path("sourceLabels"), source_labels);
    get_gateways(c, f["gateways"], f.path("gateways"), gateways);
    get(c, f["sourceNamespace"], f.path("sourceNamespace"), source_ns);
}

void decode_virtual_service(ctx& c, const node& spec, virtual_service& vs)
{
    fields f(c, spec, "spec");
    if (!f.ok()) {
        return;
    }
    if (get(c, f["hosts"], f.path("hosts"), vs.hosts)) {
        for (auto& h : vs.hosts) {
            h = resolve_host(h, c.ns, c.opts);
        }
    }
    get_gateways(c, f["gateways"], f.path("gateways"), vs.gateways);
    get(c, f["exportTo"], f.path("exportTo"), vs.export_to);
    each(c, f["http"], f.path("http"), [&](const node& n, const std::string& p) {
        vs.http.emplace_back();
        decode_http_route(c, n, p, vs.http.back());
    });
    each(c, f["tcp"], f.path("tcp"), [&](const node& n, const std::string& p) {
        fields r(c, n, p);
        tcp_route route;
        each(c, r["match"], r.path("match"), [&](const node& m, const std::string& mp) {
            fields mf(c, m, mp);
            l4_match lm;
            decode_l4_match_common(c, mf, lm.destination_subnets, lm.port, lm.source_labels,
                                   lm.gateways, lm.source_namespace);
            route.match.push_back(lm);
        });
        each(c, r["route"], r.path("route"), [&](const node& m, const std::string& mp) {
            route.route.emplace_back();
            decode_route_destination(c, m, mp, false, route.route.back());
        });
        vs.tcp.push_back(route);
    });
    each(c, f["tls"], f.path("tls"), [&](const node& n, const std::string& p) {
        fields r(c, n, p);
        tls_route route;
        each(c, r["match"], r.path("match"), [&](const node& m, const std::string& mp) {
            fields mf(c, m, mp);
            tls_match tm;
            get(c, mf["sniHosts"], mf.path("sniHosts"), tm.sni_hosts);
            decode_l4_match_common(c, mf, tm.destination_subnets, tm.port, tm.source_labels,
                                   tm.gateways, tm.source_namespace);
            route.match.push_back(tm);
        });
        each(c, r["route"], r.path("route"), [&](const node& m, const std::string& mp) {
            route.route.emplace_back();
            decode_route_destination(c, m, mp, false, route.route.back());
        });
        vs.tls.push_back(route);
    });
}

// ---------------------------------------------------------------- DestinationRule

void decode_load_balancer(ctx& c, const node& n, const std::string& path, load_balancer& lb)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    using sl = load_balancer::simple_lb;
    get_enum(c, f["simple"], f.path("simple"),
             {{"UNSPECIFIED", sl::unspecified},
              {"LEAST_REQUEST", sl::least_request},
              {"ROUND_ROBIN", sl::round_robin},
              {"RANDOM", sl::random},
              {"PASSTHROUGH", sl::passthrough},
              {"LEAST_CONN", sl::least_conn}},
             lb.simple);
    if (f.has("consistentHash")) {
        if (f.has("simple")) {
            c.error(n, path, "only one of simple or consistentHash may be set");
        }
        fields h(c, f["consistentHash"], f.path("consistentHash"));
        if (h.ok()) {
            consistent_hash ch;
            int keys = 0;
            if (get(c, h["httpHeaderName"], h.path("httpHeaderName"), ch.header_name)) {
                ch.by = consistent_hash::key::header;
                ++keys;
            }
            if (h.has("httpCookie")) {
                fields ck(c, h["httpCookie"], h.path("httpCookie"));
                get(c, ck["name"], ck.path("name"), ch.cookie.name);
                get(c, ck["path"], ck.path("path"), ch.cookie.path);
                get(c, ck["ttl"], ck.path("ttl"), ch.cookie.ttl);
                each(c, ck["attributes"], ck.path("attributes"),
                     [&](const node& a, const std::string& p) {
                         fields af(c, a, p);
                         std::string k;
                         std::string v;
                         get(c, af["name"], af.path("name"), k);
                         get(c, af["value"], af.path("value"), v);
                         ch.cookie.attributes.emplace_back(k, v);
                     });
                ch.by = consistent_hash::key::cookie;
                ++keys;
            }
            bool src = false;
            if (get(c, h["useSourceIp"], h.path("useSourceIp"), src) && src) {
                ch.by = consistent_hash::key::source_ip;
                ++keys;
            }
            if (get(c, h["httpQueryParameterName"], h.path("httpQueryParameterName"),
                    ch.query_param)) {
                ch.by = consistent_hash::key::query_param;
                ++keys;
            }
            if (keys > 1) {
                c.error(f["consistentHash"], f.path("consistentHash"),
                        "only one of httpHeaderName, httpCookie, useSourceIp or "
                        "httpQueryParameterName may be set");
            }
            int algos = 0;
            if (h.has("ringHash")) {
                fields r(c, h["ringHash"], h.path("ringHash"));
                get(c, r["minimumRingSize"], r.path("minimumRingSize"), ch.minimum_ring_size);
                ch.algo = consistent_hash::algorithm::ring_hash;
                ++algos;
            }
            if (h.has("maglev")) {
                fields m(c, h["maglev"], h.path("maglev"));
                ch.maglev_table_size = 0; // "tableSize must be set for maglev" unless given
                get(c, m["tableSize"], m.path("tableSize"), ch.maglev_table_size);
                ch.algo = consistent_hash::algorithm::maglev;
                ++algos;
            }
            if (h.has("minimumRingSize")) {
                get(c, h["minimumRingSize"], h.path("minimumRingSize"), ch.minimum_ring_size);
                c.warning(h["minimumRingSize"], h.path("minimumRingSize"),
                          "consistent hash minimumRingSize is deprecated, use ringHash instead");
                ++algos;
            }
            if (algos > 1) {
                c.error(f["consistentHash"], f.path("consistentHash"),
                        "only one of minimumRingSize, ringHash or maglev may be set");
            }
            lb.hash = ch;
        }
    }
    if (f.has("localityLbSetting")) {
        fields l(c, f["localityLbSetting"], f.path("localityLbSetting"));
        if (l.ok()) {
            locality_lb_setting ls;
            each(c, l["distribute"], l.path("distribute"),
                 [&](const node& d, const std::string& p) {
                     fields df(c, d, p);
                     locality_lb_setting::distribute_rule r;
                     get(c, df["from"], df.path("from"), r.from);
                     const node to = df["to"];
                     if (present(to) && !to.IsMap()) {
                         c.error(to, df.path("to"), "expected a map, got " + node_kind(to));
                     } else if (present(to)) {
                         for (const auto& kv : to) {
                             const std::string k = kv.first.Scalar();
                             uint32_t w = 0;
                             get(c, kv.second, at(df.path("to"), k), w);
                             r.to.emplace_back(k, w);
                         }
                     }
                     ls.distribute.push_back(r);
                 });
            each(c, l["failover"], l.path("failover"), [&](const node& d, const std::string& p) {
                fields df(c, d, p);
                locality_lb_setting::failover_rule r;
                get(c, df["from"], df.path("from"), r.from);
                get(c, df["to"], df.path("to"), r.to);
                ls.failover.push_back(r);
            });
            get(c, l["failoverPriority"], l.path("failoverPriority"), ls.failover_priority);
            get(c, l["enabled"], l.path("enabled"), ls.enabled);
            lb.locality = ls;
        }
    }
    if (f.has("warmup")) {
        fields w(c, f["warmup"], f.path("warmup"));
        warmup_policy wp;
        get(c, w["duration"], w.path("duration"), wp.window);
        get(c, w["minimumPercent"], w.path("minimumPercent"), wp.minimum_percent);
        get(c, w["aggression"], w.path("aggression"), wp.aggression);
        lb.warmup = wp;
    }
    if (f.has("warmupDurationSecs")) {
        warmup_policy wp = lb.warmup.value_or(warmup_policy{});
        if (get(c, f["warmupDurationSecs"], f.path("warmupDurationSecs"), wp.window) &&
            !f.has("warmup")) {
            lb.warmup = wp;
        }
    }
    // zoneAwareLbSetting (new 2026-07) is accepted; sluice derives zone awareness from
    // localityLbSetting and traffic distribution, so nothing is stored.
    (void)f["zoneAwareLbSetting"];
}

void decode_pool(ctx& c, const node& n, const std::string& path, connection_pool& out)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    if (f.has("tcp")) {
        fields t(c, f["tcp"], f.path("tcp"));
        tcp_pool tp;
        get(c, t["maxConnections"], t.path("maxConnections"), tp.max_connections);
        get(c, t["connectTimeout"], t.path("connectTimeout"), tp.connect_timeout);
        if (t.has("tcpKeepalive")) {
            fields k(c, t["tcpKeepalive"], t.path("tcpKeepalive"));
            tcp_keepalive ka;
            get(c, k["probes"], k.path("probes"), ka.probes);
            get(c, k["time"], k.path("time"), ka.time);
            get(c, k["interval"], k.path("interval"), ka.interval);
            tp.keepalive = ka;
        }
        get(c, t["maxConnectionDuration"], t.path("maxConnectionDuration"),
            tp.max_connection_duration);
        get(c, t["idleTimeout"], t.path("idleTimeout"), tp.idle_timeout);
        out.tcp = tp;
    }
    if (f.has("http")) {
        fields h(c, f["http"], f.path("http"));
        http_pool hp;
        get(c, h["http1MaxPendingRequests"], h.path("http1MaxPendingRequests"),
            hp.http1_max_pending_requests);
        get(c, h["http2MaxRequests"], h.path("http2MaxRequests"), hp.http2_max_requests);
        get(c, h["maxRequestsPerConnection"], h.path("maxRequestsPerConnection"),
            hp.max_requests_per_connection);
        get(c, h["maxRetries"], h.path("maxRetries"), hp.max_retries);
        get(c, h["idleTimeout"], h.path("idleTimeout"), hp.idle_timeout);
        std::string up;
        if (get_enum(c, h["h2UpgradePolicy"], h.path("h2UpgradePolicy"),
                     {{"DEFAULT", std::string("DEFAULT")},
                      {"DO_NOT_UPGRADE", std::string("DO_NOT_UPGRADE")},
                      {"UPGRADE", std::string("UPGRADE")}},
                     up)) {
            hp.h2_upgrade_policy = up;
        }
        get(c, h["useClientProtocol"], h.path("useClientProtocol"), hp.use_client_protocol);
        get(c, h["maxConcurrentStreams"], h.path("maxConcurrentStreams"),
            hp.max_concurrent_streams);
        if (h.has("http2KeepAlive")) {
            fields k(c, h["http2KeepAlive"], h.path("http2KeepAlive"));
            http_pool::keepalive ka;
            get(c, k["interval"], k.path("interval"), ka.interval);
            get(c, k["timeout"], k.path("timeout"), ka.timeout);
            hp.http2_keepalive = ka;
        }
        out.http = hp;
    }
}

void decode_outlier(ctx& c, const node& n, const std::string& path, outlier_detection& o)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    get(c, f["consecutive5xxErrors"], f.path("consecutive5xxErrors"), o.consecutive_5xx_errors);
    get(c, f["consecutiveGatewayErrors"], f.path("consecutiveGatewayErrors"),
        o.consecutive_gateway_errors);
    get(c, f["splitExternalLocalOriginErrors"], f.path("splitExternalLocalOriginErrors"),
        o.split_external_local_origin_errors);
    uint32_t local = 0;
    if (get(c, f["consecutiveLocalOriginFailures"], f.path("consecutiveLocalOriginFailures"),
            local)) {
        o.consecutive_local_origin_failures = local;
        // validateOutlierDetection: only meaningful with split=true. Decided here because the
        // model cannot tell an explicit value from its default.
        if (local > 0 && !o.split_external_local_origin_errors) {
            c.error(f["consecutiveLocalOriginFailures"], f.path("consecutiveLocalOriginFailures"),
                    "outlier detection consecutive local origin failures is specified, but "
                    "split external local origin errors is set to false");
        }
    }
    get(c, f["interval"], f.path("interval"), o.interval);
    get(c, f["baseEjectionTime"], f.path("baseEjectionTime"), o.base_ejection_time);
    int64_t pct = 0;
    // Percent fields are decoded wide so validate() can report them as out of range.
    if (get_int(c, f["maxEjectionPercent"], f.path("maxEjectionPercent"), INT32_MIN, INT32_MAX,
                pct)) {
        o.max_ejection_percent = static_cast<uint32_t>(pct);
    }
    if (get_int(c, f["minHealthPercent"], f.path("minHealthPercent"), INT32_MIN, INT32_MAX, pct)) {
        o.min_health_percent = static_cast<uint32_t>(pct);
    }
    each(c, f["outlierDetectionHttpErrorCodes"], f.path("outlierDetectionHttpErrorCodes"),
         [&](const node& v, const std::string& p) {
             uint32_t code = 0;
             if (get(c, v, p, code)) {
                 o.http_error_codes.push_back(code);
             }
         });
    if (f.has("consecutiveErrors")) {
        uint32_t ce = 0;
        get(c, f["consecutiveErrors"], f.path("consecutiveErrors"), ce);
        c.warning(f["consecutiveErrors"], f.path("consecutiveErrors"),
                  "outlier detection consecutive errors is deprecated, use "
                  "consecutiveGatewayErrors or consecutive5xxErrors instead");
    }
}

void decode_client_tls(ctx& c, const node& n, const std::string& path, client_tls& t)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    using m = client_tls::mode_t;
    get_enum(c, f["mode"], f.path("mode"),
             {{"DISABLE", m::disable},
              {"SIMPLE", m::simple},
              {"MUTUAL", m::mutual},
              {"ISTIO_MUTUAL", m::istio_mutual}},
             t.mode);
    get(c, f["clientCertificate"], f.path("clientCertificate"), t.client_certificate);
    get(c, f["privateKey"], f.path("privateKey"), t.private_key);
    get(c, f["caCertificates"], f.path("caCertificates"), t.ca_certificates);
    get(c, f["credentialName"], f.path("credentialName"), t.credential_name);
    get(c, f["subjectAltNames"], f.path("subjectAltNames"), t.subject_alt_names);
    get(c, f["sni"], f.path("sni"), t.sni);
    get(c, f["insecureSkipVerify"], f.path("insecureSkipVerify"), t.insecure_skip_verify);
    get(c, f["caCrl"], f.path("caCrl"), t.ca_crl);
}

void decode_traffic_policy(ctx& c, const node& n, const std::string& path, traffic_policy& tp)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    if (f.has("loadBalancer")) {
        load_balancer lb;
        decode_load_balancer(c, f["loadBalancer"], f.path("loadBalancer"), lb);
        tp.lb = lb;
    }
    if (f.has("connectionPool")) {
        connection_pool p;
        decode_pool(c, f["connectionPool"], f.path("connectionPool"), p);
        tp.pool = p;
    }
    if (f.has("outlierDetection")) {
        outlier_detection o;
        decode_outlier(c, f["outlierDetection"], f.path("outlierDetection"), o);
        tp.outlier = o;
    }
    if (f.has("tls")) {
        client_tls t;
        decode_client_tls(c, f["tls"], f.path("tls"), t);
        tp.tls = t;
    }
    each(c, f["portLevelSettings"], f.path("portLevelSettings"),
         [&](const node& pn, const std::string& p) {
             fields pf(c, pn, p);
             port_traffic_policy pl;
             if (pf.has("port")) {
                 fields port(c, pf["port"], pf.path("port"));
                 get(c, port["number"], port.path("number"), pl.port);
             }
             if (pf.has("loadBalancer")) {
                 load_balancer lb;
                 decode_load_balancer(c, pf["loadBalancer"], pf.path("loadBalancer"), lb);
                 pl.lb = lb;
             }
             if (pf.has("connectionPool")) {
                 connection_pool cp;
                 decode_pool(c, pf["connectionPool"], pf.path("connectionPool"), cp);
                 pl.pool = cp;
             }
             if (pf.has("outlierDetection")) {
                 outlier_detection o;
                 decode_outlier(c, pf["outlierDetection"], pf.path("outlierDetection"), o);
                 pl.outlier = o;
             }
             if (pf.has("tls")) {
                 client_tls t;
                 decode_client_tls(c, pf["tls"], pf.path("tls"), t);
                 pl.tls = t;
             }
             tp.port_level.push_back(pl);
         });
    if (f.has("tunnel")) {
        fields t(c, f["tunnel"], f.path("tunnel"));
        tunnel_settings ts;
        get(c, t["protocol"], t.path("protocol"), ts.protocol);
        get(c, t["targetHost"], t.path("targetHost"), ts.target_host);
        get(c, t["targetPort"], t.path("targetPort"), ts.target_port);
        tp.tunnel = ts;
    }
    if (f.has("proxyProtocol")) {
        fields pp(c, f["proxyProtocol"], f.path("proxyProtocol"));
        std::string v = "V1";
        get_enum(c, pp["version"], pp.path("version"),
                 {{"V1", std::string("V1")}, {"V2", std::string("V2")}}, v);
        tp.proxy_protocol_version = v;
    }
    if (f.has("retryBudget")) {
        fields rb(c, f["retryBudget"], f.path("retryBudget"));
        retry_budget b;
        get(c, rb["percent"], rb.path("percent"), b.percent);
        get(c, rb["minRetryConcurrency"], rb.path("minRetryConcurrency"), b.min_retry_concurrency);
        get(c, rb["budgetInterval"], rb.path("budgetInterval"), b.budget_interval);
        tp.budget = b;
    }
}

void decode_selector(ctx& c, const node& n, const std::string& path, const char* key, labels& out,
                     bool& set)
{
    fields f(c, n, path);
    if (f.ok()) {
        set = true;
        get(c, f[key], f.path(key), out);
    }
}

void decode_destination_rule(ctx& c, const node& spec, destination_rule& dr)
{
    fields f(c, spec, "spec");
    if (!f.ok()) {
        return;
    }
    if (get(c, f["host"], f.path("host"), dr.host)) {
        dr.host = resolve_host(dr.host, c.ns, c.opts);
    }
    if (f.has("trafficPolicy")) {
        traffic_policy tp;
        decode_traffic_policy(c, f["trafficPolicy"], f.path("trafficPolicy"), tp);
        dr.policy = tp;
    }
    each(c, f["subsets"], f.path("subsets"), [&](const node& n, const std::string& p) {
        fields sf(c, n, p);
        subset s;
        get(c, sf["name"], sf.path("name"), s.name);
        get(c, sf["labels"], sf.path("labels"), s.match_labels);
        if (sf.has("trafficPolicy")) {
            traffic_policy tp;
            decode_traffic_policy(c, sf["trafficPolicy"], sf.path("trafficPolicy"), tp);
            s.policy = tp;
        }
        dr.subsets.push_back(s);
    });
    get(c, f["exportTo"], f.path("exportTo"), dr.export_to);
    bool set = false;
    if (f.has("workloadSelector")) {
        decode_selector(c, f["workloadSelector"], f.path("workloadSelector"), "matchLabels",
                        dr.workload_selector, set);
    }
}

// ---------------------------------------------------------------- Gateway

void decode_server_tls(ctx& c, const node& n, const std::string& path, server_tls& t)
{
    fields f(c, n, path);
    if (!f.ok()) {
        return;
    }
    get(c, f["httpsRedirect"], f.path("httpsRedirect"), t.https_redirect);
    using m = server_tls::mode_t;
    get_enum(c, f["mode"], f.path("mode"),
             {{"PASSTHROUGH", m::passthrough},
              {"SIMPLE", m::simple},
              {"MUTUAL", m::mutual},
              {"AUTO_PASSTHROUGH", m::auto_passthrough},
              {"ISTIO_MUTUAL", m::istio_mutual},
              {"OPTIONAL_MUTUAL", m::optional_mutual}},
             t.mode);
    get(c, f["serverCertificate"], f.path("serverCertificate"), t.server_certificate);
    get(c, f["privateKey"], f.path("privateKey"), t.private_key);
    get(c, f["caCertificates"], f.path("caCertificates"), t.ca_certificates);
    get(c, f["caCrl"], f.path("caCrl"), t.ca_crl);
    get(c, f["credentialName"], f.path("credentialName"), t.credential_name);
    get(c, f["credentialNames"], f.path("credentialNames"), t.credential_names);
    each(c, f["tlsCertificates"], f.path("tlsCertificates"),
         [&](const node& cn, const std::string& p) {
             fields cf(c, cn, p);
             server_tls::certificate cert;
             get(c, cf["serverCertificate"], cf.path("serverCertificate"), cert.server_certificate);
             get(c, cf["privateKey"], cf.path("privateKey"), cert.private_key);
             get(c, cf["caCertificates"], cf.path("caCertificates"), cert.ca_certificates);
             t.tls_certificates.push_back(cert);
         });
    get(c, f["subjectAltNames"], f.path("subjectAltNames"), t.subject_alt_names);
    get(c, f["verifyCertificateSpki"], f.path("verifyCertificateSpki"), t.verify_certificate_spki);
    get(c, f["verifyCertificateHash"], f.path("verifyCertificateHash"), t.verify_certificate_hash);
    using v = server_tls::version;
    for (auto [key, dst] : {std::pair{"minProtocolVersion", &t.min_protocol_version},
                            std::pair{"maxProtocolVersion", &t.max_protocol_version}}) {
        get_enum(c, f[key], f.path(key),
                 {{"TLS_AUTO", v::tls_auto},
                  {"TLSV1_0", v::tls_1_0},
                  {"TLSV1_1", v::tls_1_1},
                  {"TLSV1_2", v::tls_1_2},
                  {"TLSV1_3", v::tls_1_3}},
                 *dst);
    }
    get(c, f["cipherSuites"], f.path("cipherSuites"), t.cipher_suites);
}

void decode_gateway(ctx& c, const node& spec, gateway& gw)
{
    fields f(c, spec, "spec");
    if (!f.ok()) {
        return;
    }
    get(c, f["selector"], f.path("selector"), gw.selector);
    each(c, f["servers"], f.path("servers"), [&](const node& n, const std::string& p) {
        fields sf(c, n, p);
        server s;
        if (sf.has("port")) {
            fields pf(c, sf["port"], sf.path("port"));
            get(c, pf["number"], pf.path("number"), s.port.number);
            if (get(c, pf["protocol"], pf.path("protocol"), s.port.protocol)) {
                std::transform(
                    s.port.protocol.begin(), s.port.protocol.end(), s.port.protocol.begin(),
                    [](unsigned char ch) { return static_cast<char>(std::toupper(ch)); });
            }
            get(c, pf["name"], pf.path("name"), s.port.name);
            get(c, pf["targetPort"], pf.path("targetPort"), s.port.target_port);
        }
        get(c, sf["bind"], sf.path("bind"), s.bind);
        get(c, sf["hosts"], sf.path("hosts"), s.hosts);
        if (sf.has("tls")) {
            server_tls t;
            decode_server_tls(c, sf["tls"], sf.path("tls"), t);
            s.tls = t;
        }
        get(c, sf["name"], sf.path("name"), s.name);
        std::string unused;
        get(c, sf["defaultEndpoint"], sf.path("defaultEndpoint"), unused);
        gw.servers.push_back(s);
    });
}

// ---------------------------------------------------------------- ServiceEntry, WorkloadEntry

void decode_workload(ctx& c, fields& f, workload_spec& w)
{
    get(c, f["address"], f.path("address"), w.address);
    const node ports = f["ports"];
    if (present(ports)) {
        if (!ports.IsMap()) {
            c.error(ports, f.path("ports"), "expected a map, got " + node_kind(ports));
        } else {
            for (const auto& kv : ports) {
                const std::string k = kv.first.Scalar();
                uint32_t v = 0;
                if (get(c, kv.second, at(f.path("ports"), k), v)) {
                    w.ports[k] = v;
                }
            }
        }
    }
    get(c, f["labels"], f.path("labels"), w.labels_);
    get(c, f["network"], f.path("network"), w.network);
    get(c, f["locality"], f.path("locality"), w.locality);
    get(c, f["weight"], f.path("weight"), w.weight);
    get(c, f["serviceAccount"], f.path("serviceAccount"), w.service_account);
}

void decode_service_entry(ctx& c, const node& spec, service_entry& se)
{
    fields f(c, spec, "spec");
    if (!f.ok()) {
        return;
    }
    get(c, f["hosts"], f.path("hosts"), se.hosts);
    get(c, f["addresses"], f.path("addresses"), se.addresses);
    each(c, f["ports"], f.path("ports"), [&](const node& n, const std::string& p) {
        fields pf(c, n, p);
        service_port sp;
        get(c, pf["number"], pf.path("number"), sp.number);
        get(c, pf["protocol"], pf.path("protocol"), sp.protocol);
        get(c, pf["name"], pf.path("name"), sp.name);
        get(c, pf["targetPort"], pf.path("targetPort"), sp.target_port);
        se.ports.push_back(sp);
    });
    using l = service_entry::location_t;
    get_enum(c, f["location"], f.path("location"),
             {{"MESH_EXTERNAL", l::mesh_external}, {"MESH_INTERNAL", l::mesh_internal}},
             se.location);
    using r = service_entry::resolution_t;
    get_enum(c, f["resolution"], f.path("resolution"),
             {{"NONE", r::none},
              {"STATIC", r::static_},
              {"DNS", r::dns},
              {"DNS_ROUND_ROBIN", r::dns_round_robin},
              {"DYNAMIC_DNS", r::dynamic_dns}},
             se.resolution);
    each(c, f["endpoints"], f.path("endpoints"), [&](const node& n, const std::string& p) {
        fields ef(c, n, p);
        workload_spec w;
        decode_workload(c, ef, w);
        se.endpoints.push_back(w);
    });
    bool set = false;
    if (f.has("workloadSelector")) {
        decode_selector(c, f["workloadSelector"], f.path("workloadSelector"), "labels",
                        se.workload_selector, set);
    }
    get(c, f["exportTo"], f.path("exportTo"), se.export_to);
    get(c, f["subjectAltNames"], f.path("subjectAltNames"), se.subject_alt_names);
}

// ---------------------------------------------------------------- Kubernetes

void decode_k8s_service(ctx& c, const node& spec, k8s_service& svc)
{
    fields f(c, spec, "spec");
    if (!f.ok()) {
        return;
    }
    each(c, f["ports"], f.path("ports"), [&](const node& n, const std::string& p) {
        fields pf(c, n, p);
        k8s_service_port sp;
        get(c, pf["name"], pf.path("name"), sp.name);
        get(c, pf["protocol"], pf.path("protocol"), sp.protocol);
        get(c, pf["appProtocol"], pf.path("appProtocol"), sp.app_protocol);
        get(c, pf["port"], pf.path("port"), sp.port);
        get(c, pf["targetPort"], pf.path("targetPort"), sp.target_port);
        get(c, pf["nodePort"], pf.path("nodePort"), sp.node_port);
        svc.ports.push_back(sp);
    });
    get(c, f["selector"], f.path("selector"), svc.selector);
    get(c, f["type"], f.path("type"), svc.type);
    get(c, f["clusterIP"], f.path("clusterIP"), svc.cluster_ip);
    get(c, f["clusterIPs"], f.path("clusterIPs"), svc.cluster_ips);
    get(c, f["externalIPs"], f.path("externalIPs"), svc.external_ips);
    get(c, f["loadBalancerIP"], f.path("loadBalancerIP"), svc.load_balancer_ip);
    get(c, f["trafficDistribution"], f.path("trafficDistribution"), svc.traffic_distribution);
    get(c, f["internalTrafficPolicy"], f.path("internalTrafficPolicy"),
        svc.internal_traffic_policy);
}

void decode_endpoint_slice(ctx& c, const node& doc, endpoint_slice& es)
{
    fields f(c, doc, "");
    get(c, f["addressType"], f.path("addressType"), es.address_type);
    each(c, f["endpoints"], f.path("endpoints"), [&](const node& n, const std::string& p) {
        fields ef(c, n, p);
        endpoint_slice_endpoint e;
        get(c, ef["addresses"], ef.path("addresses"), e.addresses);
        if (ef.has("conditions")) {
            fields cf(c, ef["conditions"], ef.path("conditions"));
            get(c, cf["ready"], cf.path("ready"), e.ready);
            get(c, cf["serving"], cf.path("serving"), e.serving);
            get(c, cf["terminating"], cf.path("terminating"), e.terminating);
        }
        get(c, ef["zone"], ef.path("zone"), e.zone);
        get(c, ef["nodeName"], ef.path("nodeName"), e.node_name);
        get(c, ef["hostname"], ef.path("hostname"), e.hostname);
        es.endpoints.push_back(e);
    });
    each(c, f["ports"], f.path("ports"), [&](const node& n, const std::string& p) {
        fields pf(c, n, p);
        endpoint_slice_port sp;
        get(c, pf["name"], pf.path("name"), sp.name);
        get(c, pf["port"], pf.path("port"), sp.port);
        get(c, pf["protocol"], pf.path("protocol"), sp.protocol);
        get(c, pf["appProtocol"], pf.path("appProtocol"), sp.app_protocol);
        es.ports.push_back(sp);
    });
    const auto it = es.meta.labels_.find("kubernetes.io/service-name");
    if (it != es.meta.labels_.end()) {
        es.service_name = it->second;
    }
}

// ---------------------------------------------------------------- documents

enum class kind_t : uint8_t {
    gateway,
    virtual_service,
    destination_rule,
    service_entry,
    workload_entry,
    service,
    endpoint_slice,
    skip,
};

kind_t classify(const std::string& api_version, const std::string& kind)
{
    if (api_version == "networking.istio.io/v1" || api_version == "networking.istio.io/v1beta1" ||
        api_version == "networking.istio.io/v1alpha3") {
        if (kind == "Gateway") {
            return kind_t::gateway;
        }
        if (kind == "VirtualService") {
            return kind_t::virtual_service;
        }
        if (kind == "DestinationRule") {
            return kind_t::destination_rule;
        }
        if (kind == "ServiceEntry") {
            return kind_t::service_entry;
        }
        if (kind == "WorkloadEntry") {
            return kind_t::workload_entry;
        }
    }
    if (api_version == "v1" && kind == "Service") {
        return kind_t::service;
    }
    if (api_version == "discovery.k8s.io/v1" && kind == "EndpointSlice") {
        return kind_t::endpoint_slice;
    }
    return kind_t::skip;
}

/// The stream being decoded: objects in order, with kubectl-apply "last wins" on duplicates.
struct stream_state {
    decoded& out;
    std::map<std::string, std::pair<kind_t, size_t>> seen; ///< "Kind ns/name" -> slot
};

template <typename T>
void place(stream_state& st, ctx& c, kind_t k, std::vector<T>& list, T&& obj)
{
    const std::string id = obj.meta.id();
    const auto it = st.seen.find(id);
    if (it != st.seen.end()) {
        c.add(severity::warning, "",
              "duplicate object in this stream; the last one wins (as kubectl apply)",
              c.object_line);
        list[it->second.second] = std::move(obj);
        return;
    }
    st.seen.emplace(id, std::make_pair(k, list.size()));
    list.push_back(std::move(obj));
}

void decode_object(stream_state& st, ctx& c, const node& doc);

void decode_document(stream_state& st, ctx& c, const node& doc)
{
    if (!present(doc)) {
        return; // an empty document ("---" twice, or only comments)
    }
    c.object.clear();
    c.object_line = c.line_of(doc);
    if (!doc.IsMap()) {
        c.error(doc, "", "expected an object (a map), got " + node_kind(doc));
        return;
    }
    const node kind = doc["kind"];
    if (present(kind) && kind.IsScalar() && kind.Scalar() == "List") {
        each(c, doc["items"], "items", [&](const node& item, const std::string&) {
            c.object.clear();
            c.object_line = c.line_of(item);
            if (!item.IsMap()) {
                c.error(item, "", "expected an object (a map), got " + node_kind(item));
                return;
            }
            decode_object(st, c, item);
        });
        return;
    }
    decode_object(st, c, doc);
}

void decode_object(stream_state& st, ctx& c, const node& doc)
{
    object_meta meta;
    meta.file = c.file;
    meta.line = c.object_line;
    c.strict = false;
    c.failed = false;
    if (!get(c, doc["apiVersion"], "apiVersion", meta.api_version) || meta.api_version.empty()) {
        c.error(doc, "apiVersion", "is required");
        return;
    }
    if (!get(c, doc["kind"], "kind", meta.kind) || meta.kind.empty()) {
        c.error(doc, "kind", "is required");
        return;
    }
    const node md = doc["metadata"];
    if (present(md)) {
        if (!md.IsMap()) {
            c.error(md, "metadata", "expected a map, got " + node_kind(md));
            return;
        }
        get(c, md["name"], "metadata.name", meta.name);
        std::string ns;
        if (get(c, md["namespace"], "metadata.namespace", ns) && !ns.empty()) {
            meta.ns = ns;
        }
        get(c, md["labels"], "metadata.labels", meta.labels_);
        get(c, md["annotations"], "metadata.annotations", meta.annotations);
    }
    const kind_t k = classify(meta.api_version, meta.kind);
    c.object = meta.id();
    c.ns = meta.ns;
    if (k == kind_t::skip) {
        c.add(severity::note, "",
              "skipped: sluice does not use " + meta.api_version + " " + meta.kind, c.object_line);
        return;
    }
    if (meta.name.empty()) {
        c.error(doc, "metadata.name", "is required");
        return;
    }
    c.strict = k != kind_t::service && k != kind_t::endpoint_slice;
    const node spec = doc["spec"];
    switch (k) {
    case kind_t::virtual_service: {
        virtual_service o;
        o.meta = meta;
        decode_virtual_service(c, spec, o);
        place(st, c, k, st.out.objects.virtual_services, std::move(o));
        break;
    }
    case kind_t::destination_rule: {
        destination_rule o;
        o.meta = meta;
        decode_destination_rule(c, spec, o);
        place(st, c, k, st.out.objects.destination_rules, std::move(o));
        break;
    }
    case kind_t::gateway: {
        gateway o;
        o.meta = meta;
        decode_gateway(c, spec, o);
        place(st, c, k, st.out.objects.gateways, std::move(o));
        break;
    }
    case kind_t::service_entry: {
        service_entry o;
        o.meta = meta;
        decode_service_entry(c, spec, o);
        place(st, c, k, st.out.objects.service_entries, std::move(o));
        break;
    }
    case kind_t::workload_entry: {
        workload_entry o;
        o.meta = meta;
        fields f(c, spec, "spec");
        if (f.ok()) {
            decode_workload(c, f, o.spec);
        }
        place(st, c, k, st.out.objects.workload_entries, std::move(o));
        break;
    }
    case kind_t::service: {
        k8s_service o;
        o.meta = meta;
        decode_k8s_service(c, spec, o);
        place(st, c, k, st.out.objects.services, std::move(o));
        break;
    }
    case kind_t::endpoint_slice: {
        endpoint_slice o;
        o.meta = meta;
        decode_endpoint_slice(c, doc, o);
        place(st, c, k, st.out.objects.endpoint_slices, std::move(o));
        break;
    }
    case kind_t::skip:
        break;
    }
}

// ---------------------------------------------------------------- JSON

node from_json(const nlohmann::json& j)
{
    switch (j.type()) {
    case nlohmann::json::value_t::object: {
        node n(YAML::NodeType::Map);
        for (const auto& [k, v] : j.items()) {
            n[k] = from_json(v);
        }
        return n;
    }
    case nlohmann::json::value_t::array: {
        node n(YAML::NodeType::Sequence);
        for (const auto& v : j) {
            n.push_back(from_json(v));
        }
        return n;
    }
    case nlohmann::json::value_t::string:
        return node(j.get<std::string>());
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
        return node(YAML::NodeType::Null);
    default:
        return node(j.dump());
    }
}

/// Splits a YAML stream at its document markers ("---" / "..." at column 0) so a syntax
/// error in one document loses only that document. Returns {text, first line (0-based)}.
std::vector<std::pair<std::string, int>> split_documents(std::string_view text)
{
    std::vector<std::pair<std::string, int>> docs;
    std::string cur;
    int cur_start = 0;
    int line = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) {
            eol = text.size();
        }
        const std::string_view l = text.substr(pos, eol - pos);
        const bool marker = (l.substr(0, 3) == "---" || l.substr(0, 3) == "...") &&
                            (l.size() == 3 || l[3] == ' ' || l[3] == '\t' || l[3] == '\r');
        if (marker) {
            docs.emplace_back(std::move(cur), cur_start);
            cur.clear();
            // Content after "--- " on the same line belongs to the next document.
            cur_start = line;
            if (l.substr(0, 3) == "---" && l.size() > 4) {
                cur.append(std::string(3, ' '));
                cur.append(l.substr(3));
            }
            cur.push_back('\n');
        } else {
            cur.append(l);
            cur.push_back('\n');
        }
        ++line;
        pos = eol + 1;
    }
    docs.emplace_back(std::move(cur), cur_start);
    return docs;
}

} // namespace

decoded decode(std::string_view text, const std::string& file, const options& opts)
{
    decoded out;
    stream_state st{out, {}};
    ctx c{out, file, 0, {}, 0, true, opts, "default", false};
    size_t first = 0;
    while (first < text.size() && std::isspace(static_cast<unsigned char>(text[first]))) {
        ++first;
    }
    if (first < text.size() && (text[first] == '{' || text[first] == '[')) {
        try {
            const auto j = nlohmann::json::parse(text.begin(), text.end());
            decode_document(st, c, from_json(j));
        } catch (const nlohmann::json::parse_error& e) {
            // e.byte is the 1-based offset of the error; turn it into a line.
            const size_t upto = std::min(e.byte, text.size());
            const int line = 1 + static_cast<int>(std::count(
                                     text.begin(), text.begin() + static_cast<long>(upto), '\n'));
            out.diagnostics.push_back({severity::error, "", "",
                                       std::string("JSON syntax error: ") + e.what(), file, line});
        } catch (const std::exception& e) {
            out.diagnostics.push_back(
                {severity::error, "", "", std::string("cannot decode JSON: ") + e.what(), file, 0});
        }
        return out;
    }
    for (auto& [doc_text, start] : split_documents(text)) {
        c.line_offset = start;
        try {
            const node doc = YAML::Load(doc_text);
            decode_document(st, c, doc);
        } catch (const YAML::Exception& e) {
            const int line = e.mark.is_null() ? 0 : e.mark.line + start + 1;
            out.diagnostics.push_back(
                {severity::error, "", "", "YAML syntax error: " + e.msg, file, line});
        } catch (const std::exception& e) {
            out.diagnostics.push_back({severity::error, c.object, "",
                                       std::string("cannot decode: ") + e.what(), file,
                                       c.object_line});
        }
    }
    return out;
}

namespace {

template <typename T>
void merge_list(std::vector<T>& into, std::vector<T>&& from)
{
    // Indexed so merging many files stays linear (perf/compile_scale.sh).
    std::unordered_map<std::string, size_t> index;
    index.reserve(into.size() + from.size());
    for (size_t i = 0; i < into.size(); ++i) {
        index.emplace(into[i].meta.id(), i);
    }
    for (auto& o : from) {
        const auto [it, fresh] = index.emplace(o.meta.id(), into.size());
        if (fresh) {
            into.push_back(std::move(o));
        } else {
            into[it->second] = std::move(o);
        }
    }
}

} // namespace

void merge(mesh& into, mesh&& from)
{
    merge_list(into.gateways, std::move(from.gateways));
    merge_list(into.virtual_services, std::move(from.virtual_services));
    merge_list(into.destination_rules, std::move(from.destination_rules));
    merge_list(into.service_entries, std::move(from.service_entries));
    merge_list(into.workload_entries, std::move(from.workload_entries));
    merge_list(into.services, std::move(from.services));
    merge_list(into.endpoint_slices, std::move(from.endpoint_slices));
}

} // namespace sluice::model
