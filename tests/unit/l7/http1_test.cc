// The strict HTTP/1.1 codec (lib/l7/http1): framing, limits, smuggling shapes, chunked
// resumption and the writer round trip. Pure: no EAL, no sockets.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "sluice/l7/http1.hh"

using namespace sluice::l7;
using kind = http1_parser::kind;
using ev_kind = http1_event_kind;

namespace {

std::string describe(const http1_message& m)
{
    std::string s = "H{";
    s += std::string(m.method) + "|" + std::string(m.target) + "|" + std::string(m.path) + "|" +
         std::string(m.query) + "|" + std::string(m.authority) + "|" + std::to_string(m.status) +
         "|" + std::string(m.reason) + "|1." + std::to_string(m.version_minor) + "|";
    s += std::to_string(static_cast<int>(m.framing)) + "|" + std::to_string(m.content_length);
    s += m.keep_alive ? "|ka" : "|close";
    s += m.upgrade ? "|up" : "";
    s += m.connect ? "|connect" : "";
    s += m.expect_continue ? "|100c" : "";
    s += m.informational ? "|1xx" : "";
    for (const auto& h : m.headers) {
        s += "|" + std::string(h.name) + "=" + std::string(h.value);
    }
    return s + "}";
}

/// Feeds `input` to a parser in pieces of `chunk` bytes (0: random sizes from `seed`) like a
/// connection would, then signals EOF, and returns the event trace.
std::string trace(kind k, std::string_view input, size_t chunk, std::string_view method = "GET",
                  uint32_t seed = 1, const http1_limits& limits = {})
{
    http1_parser p(k, limits);
    p.set_request_method(method);
    std::mt19937 rng(seed);
    std::string buf;
    std::string out;
    std::string body;
    size_t fed = 0;
    auto flush = [&] {
        if (!body.empty()) {
            out += "B[" + body + "]";
            body.clear();
        }
    };
    while (true) {
        while (true) {
            const http1_event ev = p.parse(buf);
            if (ev.kind == ev_kind::headers) {
                flush();
                out += describe(p.message());
            } else if (ev.kind == ev_kind::body) {
                body.append(ev.data);
            } else if (ev.kind == ev_kind::done) {
                flush();
                out += "D;";
            } else if (ev.kind == ev_kind::error) {
                flush();
                return out + "E:" + std::string(http1_error_name(ev.error));
            }
            buf.erase(0, ev.consumed);
            if (ev.kind == ev_kind::need_more) {
                break;
            }
        }
        if (fed == input.size()) {
            break;
        }
        const size_t take = std::min(chunk != 0 ? chunk : 1 + rng() % 17, input.size() - fed);
        buf.append(input.substr(fed, take));
        fed += take;
    }
    const http1_event ev = p.finish();
    flush();
    if (ev.kind == ev_kind::done) {
        out += "D(eof);";
    } else if (ev.kind == ev_kind::error) {
        out += "E:" + std::string(http1_error_name(ev.error));
    }
    return out;
}

/// The error a one-shot parse of a request ends with (none when it parses).
http1_error request_error(std::string_view input, const http1_limits& limits = {})
{
    http1_parser p(kind::request, limits);
    std::string_view in = input;
    for (int k = 0; k < 100; ++k) {
        const http1_event ev = p.parse(in);
        if (ev.kind == ev_kind::error) {
            return ev.error;
        }
        if (ev.kind == ev_kind::need_more && ev.consumed == 0) {
            return http1_error::none;
        }
        in.remove_prefix(ev.consumed);
    }
    return http1_error::none;
}

const http1_message* parse_head(http1_parser& p, std::string_view in)
{
    const http1_event ev = p.parse(in);
    return ev.kind == ev_kind::headers ? &p.message() : nullptr;
}

} // namespace

TEST(Http1Request, SimpleGet)
{
    http1_parser p(kind::request);
    const std::string in = "GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nX-A:  v a \t\r\n"
                           "Empty:\r\n\r\n";
    const http1_event ev = p.parse(in);
    ASSERT_EQ(ev.kind, ev_kind::headers);
    EXPECT_EQ(ev.consumed, in.size());
    const auto& m = p.message();
    EXPECT_EQ(m.method, "GET");
    EXPECT_EQ(m.target, "/a/b?x=1&y");
    EXPECT_EQ(m.path, "/a/b");
    EXPECT_EQ(m.query, "x=1&y");
    EXPECT_EQ(m.authority, "example.com");
    EXPECT_EQ(m.form, target_form::origin);
    EXPECT_EQ(m.version_minor, 1);
    EXPECT_TRUE(m.keep_alive);
    EXPECT_EQ(m.framing, body_framing::none);
    ASSERT_EQ(m.headers.size(), 3u);
    EXPECT_EQ(m.header("x-a"), "v a");
    EXPECT_EQ(m.header("HOST"), "example.com");
    EXPECT_TRUE(m.has_header("empty"));
    EXPECT_EQ(m.header("empty"), "");
    EXPECT_EQ(m.count("host"), 1u);
    EXPECT_FALSE(m.has_header("missing"));
    EXPECT_EQ(p.parse({}).kind, ev_kind::done);
}

TEST(Http1Request, TargetForms)
{
    http1_parser p(kind::request);
    auto* m =
        parse_head(p, "GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->form, target_form::absolute);
    EXPECT_EQ(m->scheme, "http");
    EXPECT_EQ(m->authority, "Example.com:8080");
    EXPECT_EQ(m->path, "/p");
    EXPECT_EQ(m->query, "q");
    p.reset();
    m = parse_head(p, "GET http://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->path, "/");
    p.reset();
    m = parse_head(p, "CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->form, target_form::authority);
    EXPECT_EQ(m->authority, "db.example:5432");
    EXPECT_TRUE(m->connect);
    p.reset();
    m = parse_head(p, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->form, target_form::asterisk);
    EXPECT_EQ(request_error("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), http1_error::bad_target);
    EXPECT_EQ(request_error("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"), http1_error::bad_target);
    EXPECT_EQ(request_error("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n"), http1_error::bad_target);
    EXPECT_EQ(request_error("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), http1_error::bad_target);
    EXPECT_EQ(request_error("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
              http1_error::bad_target);
    EXPECT_EQ(request_error("GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n"), http1_error::bad_target);
    EXPECT_EQ(request_error("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), http1_error::bad_target);
}

struct bad_case {
    const char* name;
    std::string input;
    http1_error error;
};

TEST(Http1Request, SmugglingShapesRejected)
{
    const std::string h = "Host: h\r\n";
    const std::vector<bad_case> cases = {
        {"cl+te",
         "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
         http1_error::cl_and_te},
        {"te+cl",
         "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         http1_error::cl_and_te},
        {"cl differ", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3\r\nContent-Length: 4\r\n\r\n",
         http1_error::conflicting_content_length},
        {"cl list", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3, 3\r\n\r\n",
         http1_error::bad_content_length},
        {"cl plus", "POST / HTTP/1.1\r\n" + h + "Content-Length: +3\r\n\r\n",
         http1_error::bad_content_length},
        {"cl neg", "POST / HTTP/1.1\r\n" + h + "Content-Length: -1\r\n\r\n",
         http1_error::bad_content_length},
        {"cl alpha", "POST / HTTP/1.1\r\n" + h + "Content-Length: 3a\r\n\r\n",
         http1_error::bad_content_length},
        {"cl empty", "POST / HTTP/1.1\r\n" + h + "Content-Length:\r\n\r\n",
         http1_error::bad_content_length},
        {"cl overflow", "POST / HTTP/1.1\r\n" + h + "Content-Length: 99999999999999999999\r\n\r\n",
         http1_error::bad_content_length},
        {"cl 2^63", "POST / HTTP/1.1\r\n" + h + "Content-Length: 9223372036854775808\r\n\r\n",
         http1_error::bad_content_length},
        {"te chunked,gzip", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked, gzip\r\n\r\n",
         http1_error::bad_transfer_encoding},
        {"te gzip,chunked", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: gzip, chunked\r\n\r\n",
         http1_error::bad_transfer_encoding},
        {"te identity", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: identity\r\n\r\n",
         http1_error::bad_transfer_encoding},
        {"te unknown", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: xchunked\r\n\r\n",
         http1_error::bad_transfer_encoding},
        {"te twice",
         "POST / HTTP/1.1\r\n" + h +
             "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         http1_error::bad_transfer_encoding},
        {"te empty", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: \r\n\r\n",
         http1_error::bad_transfer_encoding},
        {"te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
         http1_error::bad_transfer_encoding},
        {"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n", http1_error::obs_fold},
        {"obs-fold tab", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n\tb\r\n\r\n", http1_error::obs_fold},
        {"ws first line", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", http1_error::obs_fold},
        {"bare lf header", "GET / HTTP/1.1\r\nHost: h\n\r\n", http1_error::bare_lf},
        {"bare lf reqline", "GET / HTTP/1.1\nHost: h\r\n\r\n", http1_error::bare_lf},
        {"bare lf end", "GET / HTTP/1.1\r\nHost: h\r\n\n", http1_error::bare_lf},
        {"bare cr", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", http1_error::bare_cr},
        {"cr not lf", "GET / HTTP/1.1\rX", http1_error::bare_cr},
        {"nul in value", std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 36),
         http1_error::control_char},
        {"nul in target", std::string("GET /a\0 HTTP/1.1\r\nHost: h\r\n\r\n", 30),
         http1_error::control_char},
        {"ctl in method", "G\x01T / HTTP/1.1\r\nHost: h\r\n\r\n", http1_error::control_char},
        {"del in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",
         http1_error::control_char},
        {"ctl in name", "GET / HTTP/1.1\r\nHost: h\r\nX\x02Y: a\r\n\r\n",
         http1_error::control_char},
        {"name not token", "GET / HTTP/1.1\r\nHost: h\r\nX(Y): a\r\n\r\n",
         http1_error::bad_header_name},
        {"empty name", "GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n", http1_error::bad_header_name},
        {"no colon", "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", http1_error::bad_header_name},
        {"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A : a\r\n\r\n",
         http1_error::space_before_colon},
        {"tab before colon", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 1\r\n\r\n",
         http1_error::space_before_colon},
        {"absolute vs host", "GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n",
         http1_error::host_mismatch},
        {"missing host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", http1_error::missing_host},
        {"multiple host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
         http1_error::multiple_host},
        {"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", http1_error::bad_host},
        {"bad method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", http1_error::bad_method},
        {"bad version", "GET / HTTP/1.x\r\nHost: h\r\n\r\n", http1_error::bad_version},
        {"lower version", "GET / http/1.1\r\nHost: h\r\n\r\n", http1_error::bad_version},
        {"http/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", http1_error::unsupported_version},
        {"chunk junk", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
         http1_error::bad_chunk_size},
        {"chunk empty size", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n\r\n",
         http1_error::bad_chunk_size},
        {"chunk overflow",
         "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
         http1_error::chunk_size_overflow},
        {"chunk bare lf", "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\nabc",
         http1_error::bare_lf},
        {"chunk no crlf",
         "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
         http1_error::bad_chunk_terminator},
        {"chunk ext ctl",
         "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3;a=\x01\r\nabc\r\n",
         http1_error::bad_chunk_extension},
        {"chunk ws junk",
         "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n",
         http1_error::bad_chunk_extension},
        {"trailer fold",
         "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n",
         http1_error::obs_fold},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(http1_error_name(request_error(c.input)), http1_error_name(c.error)) << c.name;
        EXPECT_EQ(http1_error_status(c.error),
                  c.error == http1_error::unsupported_version ? 505 : 400)
            << c.name;
        // The same error, at the same point, when the bytes trickle in.
        EXPECT_EQ(trace(kind::request, c.input, 1), trace(kind::request, c.input, c.input.size()))
            << c.name;
    }
}

TEST(Http1Request, IdenticalDuplicateContentLengthCollapses)
{
    http1_parser p(kind::request);
    auto* m = parse_head(p, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                            "content-length: 3\r\n\r\nabc");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->framing, body_framing::content_length);
    EXPECT_EQ(m->content_length, 3u);
}

TEST(Http1Request, LimitsAnswer414And431)
{
    const std::string ok_line = "GET /" + std::string(8192 - 14, 'a') + " HTTP/1.1";
    ASSERT_EQ(ok_line.size(), 8192u);
    EXPECT_EQ(request_error(ok_line + "\r\nHost: h\r\n\r\n"), http1_error::none);
    const std::string long_line = "GET /" + std::string(8192 - 13, 'a') + " HTTP/1.1";
    EXPECT_EQ(request_error(long_line + "\r\nHost: h\r\n\r\n"), http1_error::request_line_too_long);
    // Detected before the line ends (a slow client cannot hold more than the limit).
    EXPECT_EQ(request_error("GET /" + std::string(9000, 'a')), http1_error::request_line_too_long);
    EXPECT_EQ(http1_error_status(http1_error::request_line_too_long), 414);

    std::string big = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int k = 0; k < 70; ++k) {
        big += "X-" + std::to_string(k) + ": " + std::string(1000, 'v') + "\r\n";
    }
    EXPECT_EQ(request_error(big + "\r\n"), http1_error::headers_too_large);
    EXPECT_EQ(request_error(big), http1_error::headers_too_large);
    EXPECT_EQ(http1_error_status(http1_error::headers_too_large), 431);

    std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int k = 0; k < 99; ++k) {
        many += "X-" + std::to_string(k) + ": v\r\n";
    }
    EXPECT_EQ(request_error(many + "\r\n"), http1_error::none); // exactly 100
    EXPECT_EQ(request_error(many + "Y: z\r\n\r\n"), http1_error::too_many_headers);
    EXPECT_EQ(http1_error_status(http1_error::too_many_headers), 431);

    http1_limits small;
    small.max_request_line = 20;
    small.max_header_bytes = 30;
    small.max_headers = 2;
    EXPECT_EQ(request_error("GET /0123456789abcdef HTTP/1.1\r\n", small),
              http1_error::request_line_too_long);
    EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: h\r\nA: b\r\nC: d\r\n\r\n", small),
              http1_error::too_many_headers);
    EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: h\r\nA: 0123456789012345\r\n\r\n", small),
              http1_error::headers_too_large);
    EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n", small), http1_error::none);
}

TEST(Http1Framing, ContentLengthBody)
{
    const std::string in = "POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    EXPECT_EQ(trace(kind::request, in, 0),
              "H{POST|/u|/u||h|0||1.1|1|11|ka|Host=h|Content-Length=11}B[hello world]D;");
    EXPECT_EQ(trace(kind::request, in, 1), trace(kind::request, in, in.size()));
    // Truncated body: EOF inside the message.
    EXPECT_EQ(trace(kind::request, in.substr(0, in.size() - 2), 3),
              "H{POST|/u|/u||h|0||1.1|1|11|ka|Host=h|Content-Length=11}B[hello wor]E:truncated");
    // Content-Length: 0 means no body.
    EXPECT_EQ(trace(kind::request, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 5),
              "H{POST|/|/||h|0||1.1|0|0|ka|Host=h|Content-Length=0}D;");
}

TEST(Http1Framing, ChunkedWithExtensionsAndTrailers)
{
    const std::string in = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
                           "5;name=value;q=\"x y\"\r\nhello\r\n"
                           "1A \t;ext\r\n" +
                           std::string(26, 'z') +
                           "\r\n"
                           "000\r\nTrailer-A: 1\r\nTrailer-B:  2\r\n\r\n";
    const std::string expect = "H{POST|/|/||h|0||1.1|2|0|ka|Host=h|Transfer-Encoding=Chunked}"
                               "B[hello" +
                               std::string(26, 'z') + "]D;";
    EXPECT_EQ(trace(kind::request, in, in.size()), expect);
    EXPECT_EQ(trace(kind::request, in, 1), expect);
    for (uint32_t seed = 1; seed < 20; ++seed) {
        EXPECT_EQ(trace(kind::request, in, 0, "GET", seed), expect);
    }
    http1_parser p(kind::request);
    auto* m = parse_head(p, in);
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->chunked);
    EXPECT_EQ(m->framing, body_framing::chunked);
}

TEST(Http1Pipelining, ThreeRequestsInOneBuffer)
{
    const std::string in = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                           "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                           "POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "2\r\nxy\r\n0\r\n\r\n";
    http1_parser p(kind::request);
    std::string_view rest = in;
    std::vector<std::string> paths;
    std::string bodies;
    int done = 0;
    while (true) {
        const http1_event ev = p.parse(rest);
        ASSERT_NE(ev.kind, ev_kind::error);
        if (ev.kind == ev_kind::headers) {
            paths.emplace_back(p.message().path);
        } else if (ev.kind == ev_kind::body) {
            bodies.append(ev.data);
        } else if (ev.kind == ev_kind::done) {
            ++done;
        }
        rest.remove_prefix(ev.consumed);
        if (ev.kind == ev_kind::need_more) {
            break;
        }
    }
    EXPECT_EQ(done, 3);
    EXPECT_EQ(paths, (std::vector<std::string>{"/1", "/2", "/3"}));
    EXPECT_EQ(bodies, "abcxy");
    EXPECT_TRUE(rest.empty());
    EXPECT_EQ(trace(kind::request, in, 1), trace(kind::request, in, in.size()));
}

TEST(Http1Semantics, ExpectUpgradeConnectAndKeepAlive)
{
    http1_parser p(kind::request);
    auto* m = parse_head(p, "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
                            "Content-Length: 5\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->expect_continue);
    p.reset();
    m = parse_head(p, "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->upgrade);
    EXPECT_EQ(m->header("upgrade"), "websocket");
    EXPECT_TRUE(m->header_has_token("connection", "upgrade"));
    p.reset();
    m = parse_head(p, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_FALSE(m->upgrade); // Upgrade without Connection: upgrade is not an upgrade
    p.reset();
    m = parse_head(p, "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->connect);
    EXPECT_EQ(m->framing, body_framing::none);

    struct ka_case {
        const char* in;
        bool keep_alive;
    };
    const ka_case kas[] = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n", false},
    };
    for (const auto& k : kas) {
        p.reset();
        m = parse_head(p, k.in);
        ASSERT_NE(m, nullptr) << k.in;
        EXPECT_EQ(m->keep_alive, k.keep_alive) << k.in;
    }
    // HTTP/1.0: Host optional, Expect ignored.
    p.reset();
    m = parse_head(p, "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->version_minor, 0);
    EXPECT_FALSE(m->expect_continue);
}

TEST(Http1Response, Framing)
{
    // HEAD: Content-Length describes the GET answer; no body follows.
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 1, "HEAD"),
              "H{|||||200|OK|1.1|0|5|ka|Content-Length=5}D;");
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 204 No Content\r\n\r\n", 1),
              "H{|||||204|No Content|1.1|0|0|ka}D;");
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 2),
              "H{|||||304|Not Modified|1.1|0|9|ka|Content-Length=9}D;");
    // 1xx then the final response on the same connection.
    EXPECT_EQ(trace(kind::response,
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                    "Content-Length: 2\r\n\r\nok",
                    3),
              "H{|||||100|Continue|1.1|0|0|ka|1xx}D;"
              "H{|||||200|OK|1.1|1|2|ka|Content-Length=2}B[ok]D;");
    // Read until close.
    EXPECT_EQ(trace(kind::response, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nsome body", 4),
              "H{|||||200|OK|1.0|3|0|close|Server=x}B[some body]D(eof);");
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", 1),
              "H{|||||200|OK|1.1|3|0|close|Transfer-Encoding=gzip}B[zz]D(eof);");
    // Chunked response.
    EXPECT_EQ(trace(kind::response,
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n",
                    1),
              "H{|||||200|OK|1.1|2|0|ka|Transfer-Encoding=chunked}B[abc]D;");
    // 101 and 2xx to CONNECT end the HTTP exchange.
    EXPECT_EQ(trace(kind::response,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n\r\n",
                    1),
              "H{|||||101|Switching Protocols|1.1|0|0|ka|up|Upgrade=websocket|"
              "Connection=Upgrade}D;");
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 200 Connection Established\r\n\r\n", 1, "CONNECT"),
              "H{|||||200|Connection Established|1.1|0|0|ka|connect}D;");
    // Empty reason phrase, with and without the trailing space.
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", 1),
              "H{|||||404||1.1|0|0|ka|Content-Length=0}D;");
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 1),
              "H{|||||404||1.1|0|0|ka|Content-Length=0}D;");
    // Malformed status lines and framing.
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 20 OK\r\n\r\n", 1), "E:bad_status_line");
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 2000 OK\r\n\r\n", 1), "E:bad_status_line");
    EXPECT_EQ(trace(kind::response, "HTTX/1.1 200 OK\r\n\r\n", 1), "E:bad_status_line");
    EXPECT_EQ(trace(kind::response,
                    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n",
                    1),
              "E:cl_and_te");
    EXPECT_EQ(trace(kind::response, "HTTP/1.1 200 O\x01K\r\n\r\n", 1), "E:control_char");
}

TEST(Http1Chunking, ByteByByteMatchesOneShot)
{
    const std::vector<std::string> corpus = {
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /x?y HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /z HTTP/1.0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbodyGET / HTTP/1.1\r\nHost: "
        "h\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nwiki\r\n"
        "5\r\npedia\r\n0\r\nX: y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\nX: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
        "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX:" + std::string(70000, 'a') + "\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab",
        "GARBAGE",
    };
    for (const auto& in : corpus) {
        const std::string one = trace(kind::request, in, in.size());
        EXPECT_EQ(trace(kind::request, in, 1), one) << in.substr(0, 80);
        for (uint32_t seed = 1; seed < 8; ++seed) {
            EXPECT_EQ(trace(kind::request, in, 0, "GET", seed), one) << in.substr(0, 80);
        }
    }
    EXPECT_EQ(trace(kind::request, corpus[1], 1), "H{GET|/|/||h|0||1.1|0|0|ka|Host=h}D;");
}

TEST(Http1Writer, RoundTripsThroughTheParser)
{
    char buf[512];
    http1_writer w(buf);
    EXPECT_TRUE(w.request_line("POST", "/api?x=1"));
    EXPECT_TRUE(w.header("Host", "svc.example"));
    EXPECT_TRUE(w.content_length(5));
    EXPECT_TRUE(w.end_headers());
    EXPECT_TRUE(w.body("hello"));
    EXPECT_EQ(trace(kind::request, w.view(), 1),
              "H{POST|/api?x=1|/api|x=1|svc.example|0||1.1|1|5|ka|Host=svc.example|"
              "Content-Length=5}B[hello]D;");

    http1_writer r(buf);
    r.status_line(200);
    r.chunked();
    r.end_headers();
    r.chunk(std::string(300, 'q'));
    r.chunk("");
    r.chunk("end");
    EXPECT_TRUE(r.last_chunk());
    EXPECT_EQ(trace(kind::response, r.view(), 7),
              "H{|||||200|OK|1.1|2|0|ka|Transfer-Encoding=chunked}B[" + std::string(300, 'q') +
                  "end]D;");

    const size_t n = write_error_response(buf, 400);
    EXPECT_EQ(std::string_view(buf, n),
              "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(trace(kind::response, std::string_view(buf, n), 1),
              "H{|||||400|Bad Request|1.1|0|0|close|Content-Length=0|Connection=close}D;");

    char tiny[10];
    http1_writer t(tiny);
    EXPECT_FALSE(t.status_line(431));
    EXPECT_FALSE(t.ok());
    EXPECT_LE(t.size(), sizeof(tiny));
    EXPECT_EQ(write_error_response(tiny, 414), 0u);
}

TEST(Http1Reason, PhrasesAndErrorNames)
{
    EXPECT_EQ(reason_phrase(200), "OK");
    EXPECT_EQ(reason_phrase(404), "Not Found");
    EXPECT_EQ(reason_phrase(414), "URI Too Long");
    EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
    EXPECT_EQ(reason_phrase(599), "Unknown");
    EXPECT_EQ(http1_error_name(http1_error::cl_and_te), "cl_and_te");
    EXPECT_EQ(http1_error_status(http1_error::none), 0);
    EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
}

TEST(Http1Parser, ReusedAcrossMessagesWithoutGrowth)
{
    http1_parser p(kind::request);
    const std::string in = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    for (int k = 0; k < 1000; ++k) {
        ASSERT_EQ(p.parse(in).kind, ev_kind::headers);
        ASSERT_EQ(p.parse({}).kind, ev_kind::done);
    }
    EXPECT_EQ(p.message().headers.size(), 1u);
    // A failed parser stays failed until reset.
    EXPECT_EQ(p.parse("BAD\x01").kind, ev_kind::error);
    EXPECT_EQ(p.parse(in).kind, ev_kind::error);
    p.reset();
    EXPECT_EQ(p.parse(in).kind, ev_kind::headers);
}
