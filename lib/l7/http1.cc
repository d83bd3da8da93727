// HTTP/1.1 codec. The head is scanned byte by byte (with tight inner loops for names,
// values and targets) so that every decision depends only on the bytes before it: feeding
// a message in any chunking gives the same events and the same error at the same byte.
#include "sluice/l7/http1.hh"

#include <algorithm>
#include <cstring>

namespace sluice::l7 {

namespace {

enum : uint8_t {
    // head states (request and status line, header fields)
    s_start,
    s_start_lf,
    s_method,
    s_target,
    s_version,
    s_reqline_lf,
    s_resp_version,
    s_status_code,
    s_reason,
    s_status_lf,
    s_header_start,
    s_name,
    s_value,
    s_header_lf,
    s_headers_end_lf,
    // body states
    s_body_first,
    s_done_pending = s_body_first,
    s_body_length,
    s_until_close,
    s_chunk_size,
    s_chunk_ext_ws,
    s_chunk_ext,
    s_chunk_size_lf,
    s_chunk_data,
    s_chunk_data_cr,
    s_chunk_data_lf,
    s_trailer_start,
    s_trailer_name,
    s_trailer_value,
    s_trailer_lf,
    s_trailer_end_lf,
    s_error,
};

enum : uint8_t { c_tchar = 1, c_value = 2, c_target = 4, c_ctl = 8, c_hex = 16 };

constexpr std::array<uint8_t, 256> make_classes()
{
    std::array<uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        uint8_t v = 0;
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool digit = c >= '0' && c <= '9';
        if (alpha || digit) {
            v |= c_tchar;
        }
        for (const char* s = "!#$%&'*+-.^_`|~"; *s != 0; ++s) {
            if (c == *s) {
                v |= c_tchar;
            }
        }
        if (c == '\t' || (c >= 0x20 && c <= 0x7e) || c >= 0x80) {
            v |= c_value;
        }
        if (c >= 0x21 && c <= 0x7e && c != '#') {
            v |= c_target;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            v |= c_ctl;
        }
        if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
            v |= c_hex;
        }
        t[static_cast<size_t>(c)] = v;
    }
    return t;
}

constexpr std::array<uint8_t, 256> classes = make_classes();

inline bool is(uint8_t c, uint8_t cls) noexcept
{
    return (classes[c] & cls) != 0;
}

inline int hex_value(uint8_t c) noexcept
{
    if (c <= '9') {
        return c - '0';
    }
    return (c | 0x20) - 'a' + 10;
}

inline std::string_view trim_ows(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

/// Calls f(token) for each non-empty element of a comma-separated list.
template <typename F>
void for_each_token(std::string_view list, F&& f) noexcept
{
    while (!list.empty()) {
        const size_t comma = list.find(',');
        const std::string_view elem = trim_ows(list.substr(0, comma));
        if (!elem.empty()) {
            f(elem);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        list.remove_prefix(comma + 1);
    }
}

/// 1*DIGIT without sign or spaces, below 2^63.
bool parse_decimal(std::string_view s, uint64_t& out) noexcept
{
    if (s.empty() || s.size() > 19) {
        return false;
    }
    uint64_t v = 0;
    for (const char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > (UINT64_MAX >> 1)) {
        return false;
    }
    out = v;
    return true;
}

/// reg-name / IPv4 / IP-literal, optional ":" port (RFC 3986 authority without userinfo).
bool valid_authority(std::string_view a) noexcept
{
    if (a.empty()) {
        return false;
    }
    for (const char ch : a) {
        const auto c = static_cast<uint8_t>(ch);
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || std::strchr("-._~!$&'()*+,;=:[]%", ch) != nullptr;
        if (!ok || c == 0) {
            return false;
        }
    }
    return true;
}

/// Splits and checks a request-target; fills the target-derived fields of `m`.
http1_error parse_target(std::string_view t, http1_message& m) noexcept
{
    m.target = t;
    m.scheme = {};
    m.authority = {};
    m.query = {};
    if (m.method == "CONNECT") {
        // authority-form: host ":" port, nothing else.
        const size_t colon = t.rfind(':');
        if (!valid_authority(t) || colon == std::string_view::npos || colon == 0 ||
            colon + 1 == t.size() || t.find('@') != std::string_view::npos) {
            return http1_error::bad_target;
        }
        for (size_t i = colon + 1; i < t.size(); ++i) {
            if (t[i] < '0' || t[i] > '9') {
                return http1_error::bad_target;
            }
        }
        m.form = target_form::authority;
        m.authority = t;
        m.path = {};
        return http1_error::none;
    }
    if (t == "*") {
        if (m.method != "OPTIONS") {
            return http1_error::bad_target;
        }
        m.form = target_form::asterisk;
        m.path = t;
        return http1_error::none;
    }
    std::string_view rest = t;
    if (t.front() == '/') {
        m.form = target_form::origin;
    } else {
        const size_t sep = t.find("://");
        if (sep == std::string_view::npos || sep == 0) {
            return http1_error::bad_target;
        }
        const std::string_view scheme = t.substr(0, sep);
        if (!iequals(scheme, "http") && !iequals(scheme, "https")) {
            return http1_error::bad_target;
        }
        rest = t.substr(sep + 3);
        const size_t end = std::min(rest.find('/'), rest.find('?'));
        const std::string_view auth = rest.substr(0, end);
        if (!valid_authority(auth) || auth.find('@') != std::string_view::npos) {
            return http1_error::bad_target;
        }
        m.form = target_form::absolute;
        m.scheme = scheme;
        m.authority = auth;
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    }
    const size_t q = rest.find('?');
    if (q == std::string_view::npos) {
        m.path = rest;
    } else {
        m.path = rest.substr(0, q);
        m.query = rest.substr(q + 1);
    }
    if (m.path.empty()) {
        m.path = "/"; // absolute-form with an empty path means "/" (RFC 9112 §3.2.2)
    }
    return http1_error::none;
}

/// Checks "HTTP/d.d": none for 1.0/1.1 (sets minor), unsupported for other digits.
http1_error parse_version(std::string_view v, uint8_t& minor, http1_error malformed) noexcept
{
    if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9') {
        return malformed;
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
        return http1_error::unsupported_version;
    }
    minor = static_cast<uint8_t>(v[7] - '0');
    return http1_error::none;
}

} // namespace

std::string_view http1_error_name(http1_error e) noexcept
{
    switch (e) {
#define SLUICE_X(name, status, desc)                                                               \
    case http1_error::name:                                                                        \
        return #name;
        SLUICE_HTTP1_ERRORS(SLUICE_X)
#undef SLUICE_X
    }
    return "unknown";
}

uint16_t http1_error_status(http1_error e) noexcept
{
    switch (e) {
#define SLUICE_X(name, status, desc)                                                               \
    case http1_error::name:                                                                        \
        return status;
        SLUICE_HTTP1_ERRORS(SLUICE_X)
#undef SLUICE_X
    }
    return 400;
}

std::string_view reason_phrase(uint16_t status) noexcept
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

std::string_view http1_message::header(std::string_view name) const noexcept
{
    for (const auto& h : headers) {
        if (iequals(h.name, name)) {
            return h.value;
        }
    }
    return {};
}

bool http1_message::has_header(std::string_view name) const noexcept
{
    for (const auto& h : headers) {
        if (iequals(h.name, name)) {
            return true;
        }
    }
    return false;
}

size_t http1_message::count(std::string_view name) const noexcept
{
    size_t n = 0;
    for (const auto& h : headers) {
        n += iequals(h.name, name) ? 1 : 0;
    }
    return n;
}

bool http1_message::header_has_token(std::string_view name, std::string_view tok) const noexcept
{
    bool found = false;
    for (const auto& h : headers) {
        if (iequals(h.name, name)) {
            for_each_token(h.value, [&](std::string_view t) { found = found || iequals(t, tok); });
        }
    }
    return found;
}

http1_parser::http1_parser(kind k, const http1_limits& limits) noexcept : _limits(limits), _kind(k)
{
    _limits.max_headers = std::min(_limits.max_headers, http1_header_capacity);
    reset();
}

void http1_parser::reset() noexcept
{
    _state = s_start;
    _error = http1_error::none;
    start_message();
}

void http1_parser::set_request_method(std::string_view method) noexcept
{
    _head_request = method == "HEAD";
    _connect_request = method == "CONNECT";
}

void http1_parser::start_message() noexcept
{
    _msg = http1_message{};
    _nheaders = 0;
    _pos = 0;
    _line_start = 0;
    _block_start = 0;
    _remaining = 0;
    _line_len = 0;
}

http1_event http1_parser::fail(http1_error e) noexcept
{
    _state = s_error;
    _error = e;
    return {http1_event_kind::error, e, 0, {}};
}

http1_event http1_parser::parse(std::string_view in) noexcept
{
    if (_state == s_error) {
        return {http1_event_kind::error, _error, 0, {}};
    }
    if (_state < s_body_first) {
        if (_state == s_start && _pos == 0 && !in.empty()) {
            start_message();
        }
        return parse_head(in);
    }
    return parse_body(in);
}

http1_event http1_parser::finish() noexcept
{
    switch (_state) {
    case s_error:
        return {http1_event_kind::error, _error, 0, {}};
    case s_until_close:
    case s_done_pending:
        _state = s_start;
        _pos = 0;
        return {http1_event_kind::done, http1_error::none, 0, {}};
    case s_start:
    case s_start_lf:
        return {};
    default:
        return fail(http1_error::truncated);
    }
}

http1_event http1_parser::parse_head(std::string_view in) noexcept
{
    const auto* p = reinterpret_cast<const uint8_t*>(in.data());
    const uint32_t n = static_cast<uint32_t>(std::min<size_t>(in.size(), UINT32_MAX - 1));
    if (n < _pos) {
        return {}; // contract: the caller must resend the bytes already passed
    }
    const uint32_t max_line = _limits.max_request_line;
    uint32_t i = _pos;
    while (i < n) {
        const uint8_t c = p[i];
        if (_state >= s_header_start) {
            if (i - _block_start >= _limits.max_header_bytes) {
                return fail(http1_error::headers_too_large);
            }
        } else if (_state >= s_method && i - _line_start >= max_line && c != '\r' &&
                   _state != s_reqline_lf && _state != s_status_lf) {
            return fail(http1_error::request_line_too_long);
        }
        switch (_state) {
        case s_start:
            if (c == '\r') {
                _state = s_start_lf;
                ++i;
                break;
            }
            if (c == '\n') {
                return fail(http1_error::bare_lf);
            }
            if (i >= max_line) {
                return fail(http1_error::request_line_too_long);
            }
            _line_start = i;
            _state = _kind == kind::request ? s_method : s_resp_version;
            break;
        case s_start_lf:
            if (c != '\n') {
                return fail(http1_error::bare_cr);
            }
            _state = s_start;
            ++i;
            break;
        case s_method:
            if (is(c, c_tchar)) {
                ++i;
            } else if (c == ' ' && i > _line_start) {
                _mark1 = i++;
                _state = s_target;
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else if (is(c, c_ctl)) {
                return fail(http1_error::control_char);
            } else {
                return fail(http1_error::bad_method);
            }
            break;
        case s_target: {
            const uint32_t lim = std::min(n, _line_start + max_line);
            while (i < lim && is(p[i], c_target)) {
                ++i;
            }
            if (i == n) {
                break;
            }
            const uint8_t d = p[i];
            if (is(d, c_target)) {
                return fail(http1_error::request_line_too_long); // stopped by the limit
            }
            if (d == ' ' && i > _mark1 + 1) {
                _mark2 = i++;
                _state = s_version;
            } else if (d == '\n') {
                return fail(http1_error::bare_lf);
            } else if (is(d, c_ctl)) {
                return fail(http1_error::control_char);
            } else {
                return fail(http1_error::bad_target);
            }
            break;
        }
        case s_version:
            if (c == '\r') {
                _mark3 = i++;
                _state = s_reqline_lf;
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else if (is(c, c_ctl)) {
                return fail(http1_error::control_char);
            } else if (c == ' ' || c >= 0x80) {
                return fail(http1_error::bad_version);
            } else {
                ++i;
            }
            break;
        case s_reqline_lf: {
            if (c != '\n') {
                return fail(http1_error::bare_cr);
            }
            _sl_start = _line_start;
            _sl_mid = _mark1;
            const http1_error e = check_request_line(in);
            if (e != http1_error::none) {
                return fail(e);
            }
            _block_start = ++i;
            _state = s_header_start;
            break;
        }
        case s_resp_version:
            if (c == ' ') {
                const http1_error e =
                    parse_version(in.substr(_line_start, i - _line_start), _msg.version_minor,
                                  http1_error::bad_status_line);
                if (e != http1_error::none) {
                    return fail(e);
                }
                _mark1 = ++i;
                _state = s_status_code;
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else if (is(c, c_ctl)) {
                return fail(http1_error::control_char);
            } else if (i - _line_start >= 8) {
                return fail(http1_error::bad_status_line);
            } else {
                ++i;
            }
            break;
        case s_status_code:
            if (c >= '0' && c <= '9' && i - _mark1 < 3) {
                _msg.status = static_cast<uint16_t>(_msg.status * 10 + (c - '0'));
                ++i;
            } else if ((c == ' ' || c == '\r') && i - _mark1 == 3 && _msg.status >= 100) {
                _mark2 = c == ' ' ? i + 1 : i;
                _state = s_reason;
                if (c == ' ') {
                    ++i;
                }
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else {
                return fail(http1_error::bad_status_line);
            }
            break;
        case s_reason:
            if (c == '\r') {
                _mark3 = i++;
                _state = s_status_lf;
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else if (is(c, c_ctl)) {
                return fail(http1_error::control_char);
            } else {
                ++i;
            }
            break;
        case s_status_lf:
            if (c != '\n') {
                return fail(http1_error::bare_cr);
            }
            _block_start = ++i;
            _state = s_header_start;
            break;
        case s_header_start:
            _line_start = i;
            if (c == '\r') {
                _state = s_headers_end_lf;
                ++i;
            } else if (is(c, c_tchar)) {
                _state = s_name;
                ++i;
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else if (c == ' ' || c == '\t') {
                return fail(http1_error::obs_fold);
            } else if (is(c, c_ctl)) {
                return fail(http1_error::control_char);
            } else {
                return fail(http1_error::bad_header_name);
            }
            break;
        case s_name: {
            const uint32_t lim = std::min(n, _block_start + _limits.max_header_bytes);
            while (i < lim && is(p[i], c_tchar)) {
                ++i;
            }
            if (i == lim) {
                break;
            }
            const uint8_t d = p[i];
            if (d == ':') {
                _mark1 = i++;
                _value_off = i;
                _value_end = i;
                _value_started = false;
                _state = s_value;
            } else if (d == ' ' || d == '\t') {
                return fail(http1_error::space_before_colon);
            } else if (d == '\n') {
                return fail(http1_error::bare_lf);
            } else if (is(d, c_ctl) && d != '\r') {
                return fail(http1_error::control_char);
            } else {
                return fail(http1_error::bad_header_name);
            }
            break;
        }
        case s_value: {
            const uint32_t lim = std::min(n, _block_start + _limits.max_header_bytes);
            while (i < lim && is(p[i], c_value)) {
                if (p[i] != ' ' && p[i] != '\t') {
                    if (!_value_started) {
                        _value_started = true;
                        _value_off = i;
                    }
                    _value_end = i + 1;
                }
                ++i;
            }
            if (i == lim) {
                break;
            }
            const uint8_t d = p[i];
            if (d == '\r') {
                _state = s_header_lf;
                ++i;
            } else if (d == '\n') {
                return fail(http1_error::bare_lf);
            } else {
                return fail(http1_error::control_char);
            }
            break;
        }
        case s_header_lf:
            if (c != '\n') {
                return fail(http1_error::bare_cr);
            }
            if (_nheaders >= _limits.max_headers) {
                return fail(http1_error::too_many_headers);
            }
            if (!_value_started) {
                _value_off = _value_end = _mark1 + 1;
            }
            _slots[_nheaders++] = {_line_start, _mark1 - _line_start, _value_off,
                                   _value_end - _value_off};
            _state = s_header_start;
            ++i;
            break;
        case s_headers_end_lf:
            if (c != '\n') {
                return fail(http1_error::bare_cr);
            }
            _pos = i + 1;
            return finish_head(in);
        default:
            return fail(http1_error::truncated);
        }
    }
    _pos = i;
    return {};
}

http1_error http1_parser::check_request_line(std::string_view in) noexcept
{
    _msg.method = in.substr(_sl_start, _sl_mid - _sl_start);
    const http1_error e = parse_version(in.substr(_mark2 + 1, _mark3 - _mark2 - 1),
                                        _msg.version_minor, http1_error::bad_version);
    if (e != http1_error::none) {
        return e;
    }
    return parse_target(in.substr(_sl_mid + 1, _mark2 - _sl_mid - 1), _msg);
}

http1_event http1_parser::finish_head(std::string_view in) noexcept
{
    for (uint16_t k = 0; k < _nheaders; ++k) {
        const slot& s = _slots[k];
        _headers[k] = {in.substr(s.name_off, s.name_len), in.substr(s.value_off, s.value_len)};
    }
    _msg.headers = std::span<const http1_header>(_headers.data(), _nheaders);
    if (_kind == kind::request) {
        // Rebuild the start-line views over this call's buffer (the caller may have moved it).
        (void)check_request_line(in);
    } else {
        _msg.reason = in.substr(_mark2, _mark3 - _mark2);
    }
    const http1_error e = apply_headers();
    if (e != http1_error::none) {
        return fail(e);
    }
    const uint32_t consumed = _pos;
    _pos = 0;
    switch (_msg.framing) {
    case body_framing::none:
        _state = s_done_pending;
        break;
    case body_framing::content_length:
        _remaining = _msg.content_length;
        _state = s_body_length;
        break;
    case body_framing::chunked:
        _remaining = 0;
        _mark1 = 0;
        _line_len = 0;
        _state = s_chunk_size;
        break;
    case body_framing::until_close:
        _state = s_until_close;
        break;
    }
    return {http1_event_kind::headers, http1_error::none, consumed, {}};
}

http1_error http1_parser::apply_headers() noexcept
{
    http1_message& m = _msg;
    bool have_cl = false;
    bool have_te = false;
    bool te_chunked_last = false;
    bool te_chunked_early = false;
    uint32_t te_tokens = 0;
    bool conn_close = false;
    bool conn_keep_alive = false;
    bool conn_upgrade = false;
    bool have_upgrade = false;
    std::string_view host;
    uint32_t hosts = 0;
    for (const http1_header& h : m.headers) {
        switch (h.name.size()) {
        case 4:
            if (iequals(h.name, "host")) {
                if (++hosts > 1) {
                    return http1_error::multiple_host;
                }
                host = h.value;
            }
            break;
        case 6:
            if (iequals(h.name, "expect") && iequals(h.value, "100-continue")) {
                m.expect_continue = true;
            }
            break;
        case 7:
            if (iequals(h.name, "upgrade")) {
                have_upgrade = true;
            }
            break;
        case 10:
            if (iequals(h.name, "connection")) {
                for_each_token(h.value, [&](std::string_view t) {
                    conn_close = conn_close || iequals(t, "close");
                    conn_keep_alive = conn_keep_alive || iequals(t, "keep-alive");
                    conn_upgrade = conn_upgrade || iequals(t, "upgrade");
                });
            }
            break;
        case 14:
            if (iequals(h.name, "content-length")) {
                uint64_t v = 0;
                if (!parse_decimal(h.value, v)) {
                    return http1_error::bad_content_length;
                }
                if (have_cl && v != m.content_length) {
                    return http1_error::conflicting_content_length;
                }
                have_cl = true;
                m.content_length = v;
            }
            break;
        case 17:
            if (iequals(h.name, "transfer-encoding")) {
                have_te = true;
                for_each_token(h.value, [&](std::string_view t) {
                    ++te_tokens;
                    te_chunked_early = te_chunked_early || te_chunked_last;
                    te_chunked_last = iequals(t, "chunked");
                });
            }
            break;
        default:
            break;
        }
    }
    if (have_cl && have_te) {
        return http1_error::cl_and_te;
    }
    if (have_te && (te_tokens == 0 || te_chunked_early)) {
        return http1_error::bad_transfer_encoding;
    }
    if (m.version_minor == 1) {
        m.keep_alive = !conn_close;
    } else {
        m.keep_alive = conn_keep_alive && !conn_close;
    }
    if (_kind == kind::request) {
        // Requests: exactly one coding, chunked; none at all in HTTP/1.0 (RFC 9112 §6.1).
        if (have_te && (te_tokens != 1 || !te_chunked_last || m.version_minor == 0)) {
            return http1_error::bad_transfer_encoding;
        }
        if (hosts == 0 && m.version_minor == 1) {
            return http1_error::missing_host;
        }
        if (hosts == 1 && !valid_authority(host)) {
            return http1_error::bad_host;
        }
        if (m.form == target_form::absolute) {
            if (hosts == 1 && !iequals(host, m.authority)) {
                return http1_error::host_mismatch;
            }
        } else if (m.form != target_form::authority) {
            m.authority = host;
        }
        m.connect = m.form == target_form::authority;
        m.upgrade = conn_upgrade && have_upgrade;
        m.expect_continue = m.expect_continue && m.version_minor == 1;
        if (have_te) {
            m.chunked = true;
            m.framing = body_framing::chunked;
        } else if (have_cl && m.content_length > 0) {
            m.framing = body_framing::content_length;
        }
        return http1_error::none;
    }
    // Responses (RFC 9112 §6.3).
    m.expect_continue = false;
    const uint16_t st = m.status;
    if (st < 200) {
        m.upgrade = st == 101;
        m.informational = st != 101;
        m.content_length = 0;
        return http1_error::none;
    }
    if (_connect_request && st < 300) {
        m.connect = true;
        m.content_length = 0;
        return http1_error::none;
    }
    if (_head_request || st == 204 || st == 304) {
        return http1_error::none; // no body; Content-Length describes the GET answer
    }
    if (have_te) {
        if (te_chunked_last) {
            m.chunked = true;
            m.framing = body_framing::chunked;
        } else {
            m.framing = body_framing::until_close;
            m.keep_alive = false;
        }
    } else if (have_cl) {
        m.framing = m.content_length > 0 ? body_framing::content_length : body_framing::none;
    } else {
        m.framing = body_framing::until_close;
        m.keep_alive = false;
    }
    return http1_error::none;
}

http1_event http1_parser::parse_body(std::string_view in) noexcept
{
    const auto* p = reinterpret_cast<const uint8_t*>(in.data());
    const uint32_t n = static_cast<uint32_t>(std::min<size_t>(in.size(), UINT32_MAX - 1));
    uint32_t i = 0;
    while (true) {
        if (_state == s_done_pending) {
            _state = s_start;
            _pos = 0;
            return {http1_event_kind::done, http1_error::none, i, {}};
        }
        if (i == n) {
            return {http1_event_kind::need_more, http1_error::none, i, {}};
        }
        const uint8_t c = p[i];
        switch (_state) {
        case s_body_length:
        case s_chunk_data: {
            const auto take = static_cast<uint32_t>(std::min<uint64_t>(_remaining, n - i));
            _remaining -= take;
            const std::string_view data = in.substr(i, take);
            i += take;
            if (_remaining == 0) {
                _state = _state == s_body_length ? s_done_pending : s_chunk_data_cr;
            }
            return {http1_event_kind::body, http1_error::none, i, data};
        }
        case s_until_close:
            return {http1_event_kind::body, http1_error::none, n, in.substr(i, n - i)};
        case s_chunk_size:
            if (++_line_len > _limits.max_chunk_line) {
                return fail(http1_error::bad_chunk_extension);
            }
            if (is(c, c_hex)) {
                if (_remaining >= (uint64_t{1} << 59)) {
                    return fail(http1_error::chunk_size_overflow);
                }
                _remaining = (_remaining << 4) | static_cast<uint64_t>(hex_value(c));
                _mark1 = 1;
            } else if (_mark1 == 0) {
                return fail(c == '\n' ? http1_error::bare_lf : http1_error::bad_chunk_size);
            } else if (c == ';') {
                _state = s_chunk_ext;
            } else if (c == ' ' || c == '\t') {
                _state = s_chunk_ext_ws;
            } else if (c == '\r') {
                _state = s_chunk_size_lf;
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else {
                return fail(http1_error::bad_chunk_size);
            }
            ++i;
            break;
        case s_chunk_ext_ws:
        case s_chunk_ext:
            if (++_line_len > _limits.max_chunk_line) {
                return fail(http1_error::bad_chunk_extension);
            }
            if (c == '\r') {
                _state = s_chunk_size_lf;
            } else if (c == '\n') {
                return fail(http1_error::bare_lf);
            } else if (is(c, c_ctl)) {
                return fail(http1_error::bad_chunk_extension);
            } else if (_state == s_chunk_ext_ws) {
                // BWS may only precede a ';' (RFC 9112 §7.1.1).
                if (c == ';') {
                    _state = s_chunk_ext;
                } else if (c != ' ' && c != '\t') {
                    return fail(http1_error::bad_chunk_extension);
                }
            }
            ++i;
            break;
        case s_chunk_size_lf:
            if (c != '\n') {
                return fail(http1_error::bare_cr);
            }
            ++i;
            _line_len = 0;
            _state = _remaining == 0 ? s_trailer_start : s_chunk_data;
            break;
        case s_chunk_data_cr:
            if (c != '\r') {
                return fail(http1_error::bad_chunk_terminator);
            }
            _state = s_chunk_data_lf;
            ++i;
            break;
        case s_chunk_data_lf:
            if (c != '\n') {
                return fail(http1_error::bad_chunk_terminator);
            }
            _state = s_chunk_size;
            _mark1 = 0;
            _line_len = 0;
            ++i;
            break;
        default: // trailer section: validated like header fields, not kept
            if (++_line_len > _limits.max_header_bytes) {
                return fail(http1_error::headers_too_large);
            }
            switch (_state) {
            case s_trailer_start:
                if (c == '\r') {
                    _state = s_trailer_end_lf;
                } else if (is(c, c_tchar)) {
                    _state = s_trailer_name;
                } else if (c == '\n') {
                    return fail(http1_error::bare_lf);
                } else if (c == ' ' || c == '\t') {
                    return fail(http1_error::obs_fold);
                } else if (is(c, c_ctl)) {
                    return fail(http1_error::control_char);
                } else {
                    return fail(http1_error::bad_header_name);
                }
                break;
            case s_trailer_name:
                if (c == ':') {
                    _state = s_trailer_value;
                } else if (c == ' ' || c == '\t') {
                    return fail(http1_error::space_before_colon);
                } else if (c == '\n') {
                    return fail(http1_error::bare_lf);
                } else if (is(c, c_ctl) && c != '\r') {
                    return fail(http1_error::control_char);
                } else if (!is(c, c_tchar)) {
                    return fail(http1_error::bad_header_name);
                }
                break;
            case s_trailer_value:
                if (c == '\r') {
                    _state = s_trailer_lf;
                } else if (c == '\n') {
                    return fail(http1_error::bare_lf);
                } else if (!is(c, c_value)) {
                    return fail(http1_error::control_char);
                }
                break;
            case s_trailer_lf:
                if (c != '\n') {
                    return fail(http1_error::bare_cr);
                }
                _state = s_trailer_start;
                break;
            case s_trailer_end_lf:
                if (c != '\n') {
                    return fail(http1_error::bare_cr);
                }
                _state = s_done_pending;
                break;
            default:
                return fail(http1_error::truncated);
            }
            ++i;
            break;
        }
    }
}

bool http1_writer::put(std::string_view s) noexcept
{
    if (_overflow || _buf.size() - _len < s.size()) {
        _overflow = true;
        return false;
    }
    std::memcpy(_buf.data() + _len, s.data(), s.size());
    _len += s.size();
    return true;
}

bool http1_writer::put_uint(uint64_t v, unsigned base) noexcept
{
    char tmp[24];
    size_t k = sizeof(tmp);
    do {
        tmp[--k] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0);
    return put({tmp + k, sizeof(tmp) - k});
}

bool http1_writer::status_line(uint16_t status, std::string_view reason, uint8_t minor) noexcept
{
    put(minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
    put_uint(status, 10);
    put(" ");
    put(reason.empty() ? reason_phrase(status) : reason);
    return put("\r\n");
}

bool http1_writer::request_line(std::string_view method, std::string_view target,
                                uint8_t minor) noexcept
{
    put(method);
    put(" ");
    put(target);
    return put(minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
}

bool http1_writer::header(std::string_view name, std::string_view value) noexcept
{
    put(name);
    put(": ");
    put(value);
    return put("\r\n");
}

bool http1_writer::content_length(uint64_t n) noexcept
{
    put("Content-Length: ");
    put_uint(n, 10);
    return put("\r\n");
}

bool http1_writer::chunked() noexcept
{
    return put("Transfer-Encoding: chunked\r\n");
}

bool http1_writer::end_headers() noexcept
{
    return put("\r\n");
}

bool http1_writer::body(std::string_view data) noexcept
{
    return put(data);
}

bool http1_writer::chunk(std::string_view data) noexcept
{
    if (data.empty()) {
        return ok();
    }
    put_uint(data.size(), 16);
    put("\r\n");
    put(data);
    return put("\r\n");
}

bool http1_writer::last_chunk() noexcept
{
    return put("0\r\n\r\n");
}

size_t write_error_response(std::span<char> buf, uint16_t status) noexcept
{
    http1_writer w(buf);
    w.status_line(status);
    w.content_length(0);
    w.header("Connection", "close");
    return w.end_headers() ? w.size() : 0;
}

} // namespace sluice::l7
