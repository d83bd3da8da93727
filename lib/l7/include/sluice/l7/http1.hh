#pragma once
/// @file
/// Strict, incremental HTTP/1.1 codec (RFC 9110/9112) for the L7 engine on the slow-path
/// lcore: a request/response parser that resumes where it stopped, streams bodies as views,
/// and rejects request-smuggling shapes with a named reason; plus a writer that serializes
/// start lines, headers and Content-Length or chunked framing into a caller buffer.
///
/// Thread contract: a parser or writer belongs to one connection on one thread; nothing is
/// shared. Hot-path contract: all parse/write functions are noexcept and allocate nothing;
/// a parser object holds fixed-capacity header slots and is reused across messages.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "sluice/base/ascii.hh"

namespace sluice::l7 {

/// Every way a message can be rejected: X(name, status, description). The status is what
/// a server answers to a bad request (a proxy answers 502 for a bad upstream response).
#define SLUICE_HTTP1_ERRORS(X)                                                                     \
    X(none, 0, "no error")                                                                         \
    X(request_line_too_long, 414, "request line longer than the limit")                            \
    X(headers_too_large, 431, "header block larger than the limit")                                \
    X(too_many_headers, 431, "more header fields than the limit")                                  \
    X(bad_method, 400, "method is not a token")                                                    \
    X(bad_target, 400, "malformed request-target")                                                 \
    X(bad_version, 400, "malformed HTTP-version")                                                  \
    X(unsupported_version, 505, "HTTP version other than 1.0 or 1.1")                              \
    X(bad_status_line, 400, "malformed status line")                                               \
    X(bare_lf, 400, "line ending is LF without CR")                                                \
    X(bare_cr, 400, "CR not followed by LF")                                                       \
    X(control_char, 400, "NUL or control character in start line or header")                       \
    X(obs_fold, 400, "obsolete header line folding")                                               \
    X(bad_header_name, 400, "header field name is not a token")                                    \
    X(space_before_colon, 400, "whitespace between header name and colon")                         \
    X(cl_and_te, 400, "both Content-Length and Transfer-Encoding")                                 \
    X(conflicting_content_length, 400, "duplicate Content-Length with differing values")           \
    X(bad_content_length, 400, "Content-Length is not a decimal number in range")                  \
    X(bad_transfer_encoding, 400, "Transfer-Encoding other than a final chunked")                  \
    X(bad_chunk_size, 400, "chunk size missing or not hexadecimal")                                \
    X(chunk_size_overflow, 400, "chunk size too large")                                            \
    X(bad_chunk_extension, 400, "chunk extension malformed or too long")                           \
    X(bad_chunk_terminator, 400, "chunk data not followed by CRLF")                                \
    X(missing_host, 400, "HTTP/1.1 request without Host")                                          \
    X(multiple_host, 400, "more than one Host header")                                             \
    X(bad_host, 400, "Host value is not a valid authority")                                        \
    X(host_mismatch, 400, "absolute-form authority disagrees with Host")                           \
    X(truncated, 400, "connection closed inside a message")

/// Why a message was rejected (one named reason per shape).
enum class http1_error : uint8_t {
#define SLUICE_X(name, status, desc) name,
    SLUICE_HTTP1_ERRORS(SLUICE_X)
#undef SLUICE_X
};

/// Short name of an error ("cl_and_te"), for logs and counters.
std::string_view http1_error_name(http1_error e) noexcept;
/// The status code a server answers for the error (400, 414, 431, 505; 0 for none).
uint16_t http1_error_status(http1_error e) noexcept;
/// Canonical reason phrase for a status code ("Not Found"); "Unknown" when unassigned.
std::string_view reason_phrase(uint16_t status) noexcept;

/// Configurable limits; defaults are the (8 KiB line, 60 KiB block, 100 fields).
struct http1_limits {
    uint32_t max_request_line = 8192;      ///< start line bytes, CRLF excluded -> 414
    uint32_t max_header_bytes = 60 * 1024; ///< header (or trailer) block bytes -> 431
    uint16_t max_headers = 100;            ///< header fields (clamped to the slot capacity)
    uint16_t max_chunk_line = 4096;        ///< chunk-size line incl. extensions
};

/// Header slots held by one parser (the upper bound of http1_limits::max_headers).
inline constexpr uint16_t http1_header_capacity = 128;

/// One header field; views point into the caller's buffer, value has OWS trimmed.
struct http1_header {
    std::string_view name;
    std::string_view value;
};

/// Form of a request-target (RFC 9112 §3.2).
enum class target_form : uint8_t { origin, absolute, authority, asterisk };

/// How the body of a message is delimited.
enum class body_framing : uint8_t { none, content_length, chunked, until_close };

// ASCII case-insensitive equality (header names, tokens), from base.
using sluice::iequals;

/// A parsed message head. All views point into the buffer given to the parse() call that
/// returned http1_event_kind::headers; they stay valid while the caller keeps those bytes.
struct http1_message {
    std::string_view method;    ///< request: method token
    std::string_view target;    ///< request: the request-target as sent
    std::string_view scheme;    ///< request, absolute-form: "http"
    std::string_view authority; ///< absolute-form/authority-form authority, else Host
    std::string_view path;      ///< origin/absolute-form path (without query)
    std::string_view query;     ///< text after '?', without the '?'
    std::string_view reason;    ///< response: reason phrase
    std::span<const http1_header> headers;
    uint64_t content_length = 0; ///< valid when framing == content_length
    uint16_t status = 0;         ///< response: status code
    uint8_t version_minor = 1;   ///< 0 for HTTP/1.0, 1 for HTTP/1.1
    target_form form = target_form::origin;
    body_framing framing = body_framing::none;
    bool chunked = false;         ///< body uses chunked transfer coding
    bool keep_alive = true;       ///< connection may carry another message after this one
    bool upgrade = false;         ///< request: Connection: upgrade + Upgrade; response: 101
    bool connect = false;         ///< request: CONNECT; response: 2xx answer to CONNECT
    bool expect_continue = false; ///< request: Expect: 100-continue
    bool informational = false;   ///< response: 1xx other than 101 (a final one follows)

    /// First value of the header named `name` (case-insensitive); empty if absent.
    std::string_view header(std::string_view name) const noexcept;
    /// Whether a header named `name` is present.
    bool has_header(std::string_view name) const noexcept;
    /// Number of headers named `name`.
    size_t count(std::string_view name) const noexcept;
    /// Whether the comma-separated list in header `name` holds token `tok` (any case).
    bool header_has_token(std::string_view name, std::string_view tok) const noexcept;
};

/// What a parse() call produced.
enum class http1_event_kind : uint8_t {
    need_more, ///< feed more bytes (consumed may be > 0 for body framing bytes)
    headers,   ///< message() is complete; body events (if any) follow
    body,      ///< `data` is a piece of body, a view into the input
    done,      ///< the message is complete; the next call starts the next message
    error,     ///< `error` says why; the parser stays failed until reset()
};

/// Result of parse()/finish(): drop `consumed` bytes from the front of the input.
struct http1_event {
    http1_event_kind kind = http1_event_kind::need_more;
    http1_error error = http1_error::none;
    uint32_t consumed = 0;
    std::string_view data;
};

/// Incremental parser for one direction of one connection.
///
/// Calling contract: while a head is incomplete, parse() returns need_more with consumed 0
/// and the next call must pass the same bytes again (the buffer may move) followed by new
/// ones: the parser remembers how far it scanned, so a resumed call costs only the new
/// bytes. After the head, consumed bytes are gone and each call passes what follows.
/// Pipelined messages: after done, the rest of the input is the next message.
/// Tunnels: after a request with `connect`/`upgrade` the caller decides (on the upstream's
/// answer) whether to stop parsing and splice bytes; a response with `upgrade` or
/// `connect` ends the HTTP exchange on that connection.
class http1_parser {
public:
    enum class kind : uint8_t { request, response };

    explicit http1_parser(kind k, const http1_limits& limits = {}) noexcept;

    /// Parse from `in` (see the calling contract above).
    http1_event parse(std::string_view in) noexcept;
    /// The peer closed: done for a read-until-close body, need_more (consumed 0) between
    /// messages, error truncated inside one.
    http1_event finish() noexcept;
    /// Response parser: the method of the request this response answers (HEAD and CONNECT
    /// change the framing). Kept until changed.
    void set_request_method(std::string_view method) noexcept;
    /// Forget everything (after an error or to reuse the object for another connection).
    void reset() noexcept;

    const http1_message& message() const noexcept { return _msg; }
    http1_error error() const noexcept { return _error; }

private:
    struct slot {
        uint32_t name_off;
        uint32_t name_len;
        uint32_t value_off;
        uint32_t value_len;
    };

    http1_event parse_head(std::string_view in) noexcept;
    http1_event parse_body(std::string_view in) noexcept;
    http1_event finish_head(std::string_view in) noexcept;
    http1_error check_request_line(std::string_view in) noexcept;
    http1_error check_status_line(std::string_view in) noexcept;
    http1_error apply_headers() noexcept;
    http1_event fail(http1_error e) noexcept;
    void start_message() noexcept;

    http1_message _msg;
    http1_limits _limits;
    kind _kind;
    uint8_t _state = 0;
    http1_error _error = http1_error::none;
    bool _head_request = false;    // response parser: answering HEAD
    bool _connect_request = false; // response parser: answering CONNECT
    bool _value_started = false;
    uint16_t _nheaders = 0;
    uint32_t _pos = 0;        // head: bytes of the message already scanned
    uint32_t _line_start = 0; // head: offset of the current line
    uint32_t _block_start = 0;
    uint32_t _mark1 = 0; // head: start-line field ends / header name end
    uint32_t _mark2 = 0;
    uint32_t _sl_start = 0; // head: start line offset and method end, kept past the line
    uint32_t _sl_mid = 0;
    uint32_t _mark3 = 0; // head: end of the start line (its CR)
    uint32_t _value_off = 0;
    uint32_t _value_end = 0;
    uint32_t _line_len = 0; // body: chunk line / trailer bytes so far
    uint64_t _remaining = 0;
    std::array<slot, http1_header_capacity> _slots;
    std::array<http1_header, http1_header_capacity> _headers;
};

/// Serializes one message head and body framing into a caller buffer. Every call returns
/// false (and the writer stays failed) once the buffer is too small; nothing is written
/// past `buf`. Allocation-free.
class http1_writer {
public:
    explicit http1_writer(std::span<char> buf) noexcept : _buf(buf) {}

    /// "HTTP/1.<minor> <status> <reason>\r\n"; reason defaults to reason_phrase(status).
    bool status_line(uint16_t status, std::string_view reason = {}, uint8_t minor = 1) noexcept;
    /// "<method> <target> HTTP/1.<minor>\r\n".
    bool request_line(std::string_view method, std::string_view target, uint8_t minor = 1) noexcept;
    /// "<name>: <value>\r\n" (the caller passes valid tokens and field values).
    bool header(std::string_view name, std::string_view value) noexcept;
    /// "Content-Length: <n>\r\n".
    bool content_length(uint64_t n) noexcept;
    /// "Transfer-Encoding: chunked\r\n".
    bool chunked() noexcept;
    /// The empty line ending the head.
    bool end_headers() noexcept;
    /// Raw body bytes (Content-Length framing).
    bool body(std::string_view data) noexcept;
    /// One chunk "<hex>\r\n<data>\r\n" (empty data writes nothing: use last_chunk()).
    bool chunk(std::string_view data) noexcept;
    /// "0\r\n\r\n" (no trailers).
    bool last_chunk() noexcept;

    size_t size() const noexcept { return _len; }
    bool ok() const noexcept { return !_overflow; }
    std::string_view view() const noexcept { return {_buf.data(), _len}; }

private:
    bool put(std::string_view s) noexcept;
    bool put_uint(uint64_t v, unsigned base) noexcept;

    std::span<char> _buf;
    size_t _len = 0;
    bool _overflow = false;
};

/// Writes a complete error response ("HTTP/1.1 400 Bad Request", Content-Length: 0,
/// Connection: close) into `buf`; returns its size, or 0 when `buf` is too small.
size_t write_error_response(std::span<char> buf, uint16_t status) noexcept;

} // namespace sluice::l7
