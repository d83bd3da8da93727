// TLS for the L7 engine (lib/l7/tls): ClientHello SNI extraction over real and damaged
// hellos, server contexts (SNI choice, wildcards, MUTUAL, versions, ciphers, errors), client
// contexts (CA, SAN, insecureSkipVerify) and the non-blocking stream over socketpairs.
// Certificates are generated at test time with the OpenSSL API into a mkdtemp directory.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sluice/l7/tls.hh"

using namespace sluice;
using namespace sluice::l7;
using server_mode = snapshot::server_tls::mode_t;
using client_mode = snapshot::tls_policy::mode_t;

namespace {

// ------------------------------------------------------------------------ certificates

struct key_deleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct x509_deleter {
    void operator()(X509* x) const { X509_free(x); }
};
using key_ptr = std::unique_ptr<EVP_PKEY, key_deleter>;
using x509_ptr = std::unique_ptr<X509, x509_deleter>;

struct identity {
    key_ptr key;
    x509_ptr cert;
};

void add_ext(X509* x, X509V3_CTX* v3, int nid, const std::string& value)
{
    X509_EXTENSION* ex = X509V3_EXT_conf_nid(nullptr, v3, nid, value.c_str());
    ASSERT_NE(ex, nullptr) << value;
    X509_add_ext(x, ex, -1);
    X509_EXTENSION_free(ex);
}

/// A P-256 certificate for `cn`; self-signed CA when `issuer` is null. `sans` is an
/// OpenSSL config list ("DNS:a,URI:b").
identity make_identity(const std::string& cn, const std::string& sans, const identity* issuer,
                       bool ca, long serial)
{
    identity id;
    id.key.reset(EVP_EC_gen("P-256"));
    id.cert.reset(X509_new());
    X509* x = id.cert.get();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, id.key.get());
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer->cert.get()) : name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer != nullptr ? issuer->cert.get() : x, x, nullptr, nullptr, 0);
    if (ca) {
        add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(x, &v3, NID_subject_key_identifier, "hash");
    } else {
        add_ext(x, &v3, NID_basic_constraints, "CA:FALSE");
        add_ext(x, &v3, NID_key_usage, "critical,digitalSignature");
        add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth");
    }
    if (!sans.empty()) {
        add_ext(x, &v3, NID_subject_alt_name, sans);
    }
    X509_sign(x, issuer != nullptr ? issuer->key.get() : id.key.get(), EVP_sha256());
    return id;
}

void write_pem(const std::string& path, const identity& id, bool key)
{
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr) << path;
    if (key) {
        PEM_write_PrivateKey(f, id.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    } else {
        PEM_write_X509(f, id.cert.get());
    }
    std::fclose(f);
}

/// Files shared by every test of the file, made once.
struct pki {
    std::string dir;
    std::string ca, other_ca;            // CA certificates
    std::string a_cert, a_key;           // www.example.com, *.shop.example.com
    std::string b_cert, b_key;           // api.example.org
    std::string client_cert, client_key; // URI spiffe SAN, signed by ca
    std::string path(const char* name) const { return dir + "/" + name; }
};

pki* g_pki = nullptr;

class tls_env : public ::testing::Environment {
public:
    void SetUp() override
    {
        char tmpl[] = "/tmp/sluice-tls-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        auto p = std::make_unique<pki>();
        p->dir = tmpl;
        const identity ca = make_identity("sluice test CA", "", nullptr, true, 1);
        const identity other = make_identity("other CA", "", nullptr, true, 2);
        const identity a = make_identity(
            "www.example.com", "DNS:www.example.com,DNS:*.shop.example.com", &ca, false, 3);
        const identity b = make_identity("api.example.org", "DNS:api.example.org", &ca, false, 4);
        const identity c = make_identity(
            "client", "URI:spiffe://cluster.local/ns/default/sa/client", &ca, false, 5);
        p->ca = p->path("ca.pem");
        p->other_ca = p->path("other-ca.pem");
        p->a_cert = p->path("a.pem");
        p->a_key = p->path("a.key");
        p->b_cert = p->path("b.pem");
        p->b_key = p->path("b.key");
        p->client_cert = p->path("client.pem");
        p->client_key = p->path("client.key");
        write_pem(p->ca, ca, false);
        write_pem(p->other_ca, other, false);
        write_pem(p->a_cert, a, false);
        write_pem(p->a_key, a, true);
        write_pem(p->b_cert, b, false);
        write_pem(p->b_key, b, true);
        write_pem(p->client_cert, c, false);
        write_pem(p->client_key, c, true);
        g_pki = p.release();
    }
    void TearDown() override
    {
        if (g_pki != nullptr) {
            std::error_code ec;
            std::filesystem::remove_all(g_pki->dir, ec);
            delete g_pki;
            g_pki = nullptr;
        }
    }
};

[[maybe_unused]] auto* const g_env = ::testing::AddGlobalTestEnvironment(new tls_env);

// ------------------------------------------------------------------------ helpers

snapshot::gateway_server make_server(const std::string& name, std::vector<std::string> hosts,
                                     const std::string& cert, const std::string& key,
                                     server_mode mode = server_mode::simple,
                                     snapshot::listener_kind kind = snapshot::listener_kind::http)
{
    snapshot::gateway_server s;
    s.gateway = "ns/gw";
    s.name = name;
    s.port = 443;
    s.proto = snapshot::protocol::https;
    s.kind = kind;
    for (auto& h : hosts) {
        s.hosts.push_back({"*", std::move(h)});
    }
    s.tls.emplace();
    s.tls->mode = mode;
    s.tls->server_certificate = cert;
    s.tls->private_key = key;
    if (mode == server_mode::mutual) {
        s.tls->ca_certificates = g_pki->ca;
    }
    return s;
}

snapshot::gateway_server server_a()
{
    return make_server("web", {"www.example.com", "*.shop.example.com"}, g_pki->a_cert,
                       g_pki->a_key);
}

snapshot::gateway_server server_b()
{
    return make_server("api", {"api.example.org"}, g_pki->b_cert, g_pki->b_key, server_mode::simple,
                       snapshot::listener_kind::tls_terminate);
}

server_tls_context build_server(const std::vector<snapshot::gateway_server>& servers)
{
    std::vector<const snapshot::gateway_server*> ptrs;
    for (const auto& s : servers) {
        ptrs.push_back(&s);
    }
    auto r = server_tls_context::build(ptrs);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    return std::move(r).value();
}

result<server_tls_context> try_build(const std::vector<snapshot::gateway_server>& servers)
{
    std::vector<const snapshot::gateway_server*> ptrs;
    for (const auto& s : servers) {
        ptrs.push_back(&s);
    }
    return server_tls_context::build(ptrs);
}

snapshot::tls_policy simple_policy(std::vector<std::string> sans = {}, std::string sni = {})
{
    snapshot::tls_policy p;
    p.mode = client_mode::simple;
    p.ca_certificates = g_pki->ca;
    p.subject_alt_names = std::move(sans);
    p.sni = std::move(sni);
    return p;
}

client_tls_context build_client(const snapshot::tls_policy& p)
{
    auto r = client_tls_context::build(p, "outbound|443||www.example.com");
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    return std::move(r).value();
}

/// A non-blocking AF_UNIX stream pair, closed on destruction.
struct sock_pair {
    int client = -1;
    int server = -1;
    sock_pair()
    {
        int fds[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
        client = fds[0];
        server = fds[1];
    }
    ~sock_pair()
    {
        close_client();
        if (server >= 0) {
            close(server);
        }
    }
    void close_client()
    {
        if (client >= 0) {
            close(client);
            client = -1;
        }
    }
};

struct hs_outcome {
    tls_io client;
    tls_io server;
    [[nodiscard]] bool ok() const
    {
        return !client.failed() && !server.failed() && client.want == tls_want::none &&
               server.want == tls_want::none && !client.closed && !server.closed;
    }
};

bool settled(const tls_io& io)
{
    return io.failed() || io.closed || io.want == tls_want::none;
}

/// Alternates handshake() calls until both sides finished or failed (bounded).
hs_outcome drive(tls_stream& c, tls_stream& s)
{
    hs_outcome o;
    o.client.want = tls_want::read;
    o.server.want = tls_want::read;
    for (int i = 0; i < 50 && !(settled(o.client) && settled(o.server)); ++i) {
        if (!settled(o.client)) {
            o.client = c.handshake();
        }
        if (!settled(o.server)) {
            o.server = s.handshake();
        }
    }
    return o;
}

/// Reads until `n` bytes arrived, the stream closed or failed (bounded); last io in `last`.
std::string read_n(tls_stream& s, size_t n, tls_io* last = nullptr)
{
    std::string out;
    char buf[4096];
    tls_io io;
    for (int i = 0; i < 100 && out.size() < n; ++i) {
        io = s.read(buf);
        out.append(buf, io.bytes);
        if (io.failed() || io.closed) {
            break;
        }
    }
    if (last != nullptr) {
        *last = io;
    }
    return out;
}

/// One client/server connection over a socketpair.
struct conn {
    sock_pair fds;
    tls_stream client;
    tls_stream server;
    hs_outcome hs;

    conn(const client_tls_context& cc, const server_tls_context& sc,
         std::string_view sni_override = {})
        : client(cc.new_ssl(fds.client, sni_override)), server(sc.new_ssl(fds.server))
    {
        hs = drive(client, server);
    }
    conn(SSL* raw_client, const server_tls_context& sc)
        : client(raw_client), server(sc.new_ssl(fds.server))
    {
        SSL_set_fd(raw_client, fds.client);
        SSL_set_connect_state(raw_client);
        hs = drive(client, server);
    }
    [[nodiscard]] int selected() const
    {
        return server_tls_context::selected_server(server.native_handle());
    }
};

// ------------------------------------------------------------------------ ClientHello

/// The first flight of a real OpenSSL client (TLS 1.2-1.3 hello, ALPN, key shares).
std::vector<uint8_t> real_client_hello(const char* sni)
{
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(ctx);
    SSL_set_bio(ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    if (sni != nullptr) {
        SSL_set_tlsext_host_name(ssl, sni);
    }
    static constexpr unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_set_alpn_protos(ssl, alpn, sizeof(alpn));
    EXPECT_EQ(SSL_connect(ssl), -1);
    char* p = nullptr;
    const long n = BIO_get_mem_data(SSL_get_wbio(ssl), &p);
    std::vector<uint8_t> out(p, p + n);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return out;
}

sni_result parse(const std::vector<uint8_t>& v)
{
    return parse_client_hello(std::span<const uint8_t>(v.data(), v.size()));
}

/// Offsets inside a ClientHello, found by walking it (the test's own reader).
struct hello_layout {
    size_t session_id_len = 0; ///< offset of the legacy_session_id length byte
    size_t ext_total = 0;      ///< offset of the extensions length
    size_t sni_ext_len = 0;    ///< offset of the server_name extension's length
    size_t sni_list_len = 0;   ///< offset of the ServerNameList length
    size_t sni_name_len = 0;   ///< offset of the host_name length
};

hello_layout layout(const std::vector<uint8_t>& v)
{
    hello_layout l;
    size_t i = 5 + 4 + 2 + 32;
    l.session_id_len = i;
    i += 1 + v[i];
    i += 2 + ((size_t{v[i]} << 8) | v[i + 1]);
    i += 1 + v[i];
    l.ext_total = i;
    i += 2;
    while (i + 4 <= v.size()) {
        const size_t type = (size_t{v[i]} << 8) | v[i + 1];
        const size_t len = (size_t{v[i + 2]} << 8) | v[i + 3];
        if (type == 0) {
            l.sni_ext_len = i + 2;
            l.sni_list_len = i + 4;
            l.sni_name_len = i + 7;
            break;
        }
        i += 4 + len;
    }
    return l;
}

void bump16(std::vector<uint8_t>& v, size_t off, int delta)
{
    const int x = ((v[off] << 8) | v[off + 1]) + delta;
    v[off] = static_cast<uint8_t>(x >> 8);
    v[off + 1] = static_cast<uint8_t>(x);
}

TEST(TlsClientHello, RealHelloYieldsSni)
{
    const auto hello = real_client_hello("www.Example.com");
    ASSERT_GT(hello.size(), 100U);
    const auto r = parse(hello);
    EXPECT_EQ(r.status, sni_status::ok);
    EXPECT_TRUE(r.has_sni);
    EXPECT_EQ(r.sni, "www.Example.com"); // as sent: the engine lower-cases
    // The view points into the input.
    EXPECT_GE(reinterpret_cast<const uint8_t*>(r.sni.data()), hello.data());
    EXPECT_LE(reinterpret_cast<const uint8_t*>(r.sni.data() + r.sni.size()),
              hello.data() + hello.size());
}

TEST(TlsClientHello, NoSni)
{
    const auto r = parse(real_client_hello(nullptr));
    EXPECT_EQ(r.status, sni_status::ok);
    EXPECT_FALSE(r.has_sni);
    EXPECT_TRUE(r.sni.empty());
}

TEST(TlsClientHello, EveryTruncatedPrefixNeedsMore)
{
    const auto hello = real_client_hello("www.example.com");
    for (size_t n = 0; n < hello.size(); ++n) {
        const auto r = parse_client_hello(std::span<const uint8_t>(hello.data(), n));
        ASSERT_EQ(r.status, sni_status::need_more) << "prefix " << n;
    }
    // Bytes after the first record (e.g. early data) are ignored.
    auto more = hello;
    more.insert(more.end(), {23, 3, 3, 0, 1, 0});
    EXPECT_EQ(parse(more).status, sni_status::ok);
}

TEST(TlsClientHello, NotTls)
{
    const std::string http = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_EQ(parse({http.begin(), http.end()}).status, sni_status::not_tls);
    EXPECT_EQ(parse({0x80, 0x2e, 0x01, 0x00, 0x02}).status, sni_status::not_tls); // SSLv2
    EXPECT_EQ(parse({0x16, 0x02}).status, sni_status::not_tls);
    EXPECT_EQ(parse({0x17, 0x03, 0x03, 0x00, 0x10}).status, sni_status::not_tls);
    EXPECT_EQ(parse({0x16}).status, sni_status::need_more); // could still be TLS
    EXPECT_EQ(parse({}).status, sni_status::need_more);
}

TEST(TlsClientHello, CorruptedLengthsAreMalformed)
{
    const auto hello = real_client_hello("www.example.com");
    const auto l = layout(hello);
    ASSERT_NE(l.sni_ext_len, 0U);
    auto expect_malformed = [&](const char* what, auto&& mutate) {
        auto v = hello;
        mutate(v);
        const auto r = parse(v);
        EXPECT_EQ(r.status, sni_status::malformed) << what;
        EXPECT_FALSE(r.has_sni) << what;
    };
    expect_malformed("record > 16 KiB", [](auto& v) {
        v[3] = 0x40;
        v[4] = 0x01;
    });
    expect_malformed("empty record", [](auto& v) {
        v[3] = 0;
        v[4] = 0;
    });
    expect_malformed("handshake not ClientHello", [](auto& v) { v[5] = 2; });
    expect_malformed("handshake longer than the record", [](auto& v) { v[8] += 1; });
    expect_malformed("session id > 32", [&](auto& v) { v[l.session_id_len] = 33; });
    expect_malformed("extensions length +1", [&](auto& v) { bump16(v, l.ext_total, 1); });
    expect_malformed("extensions length -1", [&](auto& v) { bump16(v, l.ext_total, -1); });
    expect_malformed("sni ext length +1", [&](auto& v) { bump16(v, l.sni_ext_len, 1); });
    expect_malformed("sni list length -1", [&](auto& v) { bump16(v, l.sni_list_len, -1); });
    expect_malformed("sni name length +1", [&](auto& v) { bump16(v, l.sni_name_len, 1); });
    expect_malformed("sni name length 0", [&](auto& v) {
        const size_t name_len = (size_t{v[l.sni_name_len]} << 8) | v[l.sni_name_len + 1];
        v[l.sni_name_len] = 0;
        v[l.sni_name_len + 1] = 0;
        // Keep the list and extension lengths consistent: only the name is empty.
        bump16(v, l.sni_list_len, -static_cast<int>(name_len));
        bump16(v, l.sni_ext_len, -static_cast<int>(name_len));
        bump16(v, l.ext_total, -static_cast<int>(name_len));
        bump16(v, 6 + 1, -static_cast<int>(name_len));
        bump16(v, 3, -static_cast<int>(name_len));
        v.erase(v.begin() + static_cast<long>(l.sni_name_len + 2),
                v.begin() + static_cast<long>(l.sni_name_len + 2 + name_len));
    });
    expect_malformed("NUL in host name", [&](auto& v) { v[l.sni_name_len + 3] = 0; });
}

TEST(TlsClientHello, RandomDamageNeverReadsOutOfBounds)
{
    const auto hello = real_client_hello("www.example.com");
    std::mt19937 rng(7);
    for (int i = 0; i < 20000; ++i) {
        auto v = hello;
        const int flips = 1 + static_cast<int>(rng() % 3);
        for (int f = 0; f < flips; ++f) {
            v[rng() % v.size()] = static_cast<uint8_t>(rng());
        }
        v.resize(rng() % 4 == 0 ? rng() % v.size() : v.size());
        const auto r = parse(v);
        if (r.status == sni_status::ok && r.has_sni) {
            ASSERT_GE(reinterpret_cast<const uint8_t*>(r.sni.data()), v.data());
            ASSERT_LE(reinterpret_cast<const uint8_t*>(r.sni.data() + r.sni.size()),
                      v.data() + v.size());
            ASSERT_FALSE(r.sni.empty());
        }
    }
}

// ------------------------------------------------------------------------ server side

TEST(TlsServer, SimpleTerminationRoundTripAndCleanShutdown)
{
    const auto sc = build_server({server_a()});
    const auto cc = build_client(simple_policy({"www.example.com"}, "www.example.com"));
    conn c(cc, sc);
    ASSERT_TRUE(c.hs.ok()) << c.hs.client.error << " / " << c.hs.server.error;
    EXPECT_TRUE(c.client.handshake_done());
    EXPECT_TRUE(c.server.handshake_done());
    EXPECT_TRUE(c.client.peer_verified());
    EXPECT_FALSE(c.server.peer_has_certificate());
    EXPECT_EQ(c.client.alpn(), "http/1.1");
    EXPECT_EQ(c.server.alpn(), "http/1.1");
    EXPECT_EQ(c.server.version(), "TLSv1.3");
    EXPECT_FALSE(c.server.cipher().empty());
    EXPECT_EQ(c.server.server_name(), "www.example.com");
    EXPECT_EQ(c.selected(), 0);

    // Small messages both ways.
    const std::string ping = "GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n";
    auto w = c.client.write(std::span<const char>(ping.data(), ping.size()));
    EXPECT_EQ(w.bytes, ping.size());
    EXPECT_FALSE(w.failed());
    EXPECT_EQ(read_n(c.server, ping.size()), ping);
    const std::string pong = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    w = c.server.write(std::span<const char>(pong.data(), pong.size()));
    EXPECT_EQ(w.bytes, pong.size());
    EXPECT_EQ(read_n(c.client, pong.size()), pong);

    // Nothing more buffered: a read asks to wait for readability.
    char buf[64];
    const auto idle = c.server.read(buf);
    EXPECT_EQ(idle.bytes, 0U);
    EXPECT_EQ(idle.want, tls_want::read);

    // Clean close: close_notify from the client, then from the server.
    const auto sd = c.client.shutdown();
    EXPECT_FALSE(sd.failed());
    EXPECT_EQ(sd.want, tls_want::none);
    tls_io last;
    EXPECT_EQ(read_n(c.server, 1, &last), "");
    EXPECT_TRUE(last.closed);
    EXPECT_FALSE(last.truncated);
    EXPECT_FALSE(last.failed());
    EXPECT_TRUE(c.server.shutdown().closed); // both close_notify seen
    EXPECT_EQ(read_n(c.client, 1, &last), "");
    EXPECT_TRUE(last.closed);
    EXPECT_FALSE(last.truncated);
}

TEST(TlsServer, BulkTransferHonoursWantWrite)
{
    const auto sc = build_server({server_a()});
    const auto cc = build_client(simple_policy({}, "www.example.com"));
    conn c(cc, sc);
    ASSERT_TRUE(c.hs.ok());
    std::string payload(1 << 20, '\0');
    for (size_t i = 0; i < payload.size(); ++i) {
        payload[i] = static_cast<char>('a' + i % 26);
    }
    std::string got;
    size_t sent = 0;
    bool saw_want_write = false;
    std::vector<char> buf(16384);
    for (int i = 0; i < 10000 && got.size() < payload.size(); ++i) {
        if (sent < payload.size()) {
            const auto w = c.client.write(std::span<const char>(payload).subspan(sent));
            ASSERT_FALSE(w.failed()) << w.error;
            sent += w.bytes;
            saw_want_write |= w.want == tls_want::write;
        }
        const auto r = c.server.read(buf);
        ASSERT_FALSE(r.failed()) << r.error;
        got.append(buf.data(), r.bytes);
    }
    EXPECT_TRUE(saw_want_write); // 1 MiB does not fit the socket buffer
    EXPECT_EQ(got.size(), payload.size());
    EXPECT_TRUE(got == payload);
}

TEST(TlsServer, EofWithoutCloseNotifyIsTruncated)
{
    const auto sc = build_server({server_a()});
    const auto cc = build_client(simple_policy());
    conn c(cc, sc);
    ASSERT_TRUE(c.hs.ok());
    c.fds.close_client();
    tls_io last;
    EXPECT_EQ(read_n(c.server, 1, &last), "");
    EXPECT_TRUE(last.closed);
    EXPECT_TRUE(last.truncated);
    EXPECT_FALSE(last.failed());
    EXPECT_FALSE(c.server.shutdown().failed()); // a no-op after the fatal EOF
}

TEST(TlsServer, SniChoosesTheSecondServer)
{
    const auto sc = build_server({server_a(), server_b()});
    const auto cc = build_client(simple_policy({"api.example.org"}, "api.example.org"));
    conn c(cc, sc);
    ASSERT_TRUE(c.hs.ok()) << c.hs.client.error << " / " << c.hs.server.error;
    EXPECT_EQ(c.selected(), 1);
    EXPECT_TRUE(c.client.peer_verified()); // B's certificate, or the SAN check fails
    EXPECT_TRUE(c.server.alpn().empty());  // TLS-terminated TCP: no http/1.1
    EXPECT_TRUE(c.client.alpn().empty());

    // The per-connection override beats the policy's SNI.
    const auto cc2 = build_client(simple_policy({"www.example.com"}, "api.example.org"));
    conn c2(cc2, sc, "www.example.com");
    ASSERT_TRUE(c2.hs.ok());
    EXPECT_EQ(c2.selected(), 0);
    EXPECT_EQ(c2.client.server_name(), "www.example.com");
}

TEST(TlsServer, NoSniOrUnknownSniUsesTheFirstServer)
{
    const auto sc = build_server({server_b(), server_a()});
    const auto cc = build_client(simple_policy({"api.example.org"}));
    conn c(cc, sc);
    ASSERT_TRUE(c.hs.ok()) << c.hs.client.error;
    EXPECT_EQ(c.selected(), 0);
    EXPECT_TRUE(c.server.server_name().empty());
    conn d(cc, sc, "nobody.example.net");
    ASSERT_TRUE(d.hs.ok()) << d.hs.client.error;
    EXPECT_EQ(d.selected(), 0);
}

TEST(TlsServer, WildcardHosts)
{
    const auto sc = build_server({server_b(), server_a()});
    // "*.shop.example.com" matches one or more labels, case-insensitively.
    for (const char* sni : {"x.shop.example.com", "a.b.SHOP.example.com"}) {
        const auto cc = build_client(simple_policy({"www.example.com"}));
        conn c(cc, sc, sni);
        ASSERT_TRUE(c.hs.ok()) << sni << ": " << c.hs.client.error;
        EXPECT_EQ(c.selected(), 1) << sni;
    }
    // ...but not the bare suffix.
    const auto cc = build_client(simple_policy({"api.example.org"}));
    conn bare(cc, sc, "shop.example.com");
    ASSERT_TRUE(bare.hs.ok());
    EXPECT_EQ(bare.selected(), 0);

    // Exact beats wildcard regardless of order; `*` catches the rest.
    auto wild = make_server("wild", {"*.example.com"}, g_pki->b_cert, g_pki->b_key);
    auto exact = make_server("exact", {"www.example.com"}, g_pki->a_cert, g_pki->a_key);
    auto any = make_server("any", {"*"}, g_pki->a_cert, g_pki->a_key);
    const auto sc2 = build_server({wild, exact, any});
    const auto insecure = [] {
        snapshot::tls_policy p;
        p.mode = client_mode::simple;
        p.insecure_skip_verify = true;
        return p;
    }();
    const auto ic = build_client(insecure);
    EXPECT_EQ(conn(ic, sc2, "www.example.com").selected(), 1);
    EXPECT_EQ(conn(ic, sc2, "api.example.com").selected(), 0);
    EXPECT_EQ(conn(ic, sc2, "elsewhere.test").selected(), 2);
}

TEST(TlsServer, MutualRequiresAClientCertificate)
{
    auto s = server_a();
    s.tls->mode = server_mode::mutual;
    s.tls->ca_certificates = g_pki->ca;
    const auto sc = build_server({s});

    // No client certificate: the server refuses; in TLS 1.3 the client learns on read.
    const auto plain = build_client(simple_policy());
    conn no_cert(plain, sc);
    EXPECT_TRUE(no_cert.hs.server.failed());
    tls_io last;
    read_n(no_cert.client, 1, &last);
    EXPECT_TRUE(no_cert.hs.client.failed() || last.failed());

    // With the CA-signed client certificate.
    auto mp = simple_policy({"www.example.com"});
    mp.mode = client_mode::mutual;
    mp.client_certificate = g_pki->client_cert;
    mp.private_key = g_pki->client_key;
    const auto mutual = build_client(mp);
    conn ok(mutual, sc);
    ASSERT_TRUE(ok.hs.ok()) << ok.hs.client.error << " / " << ok.hs.server.error;
    EXPECT_TRUE(ok.server.peer_verified());
    const std::string hi = "hi";
    EXPECT_EQ(ok.client.write(std::span<const char>(hi.data(), hi.size())).bytes, 2U);
    EXPECT_EQ(read_n(ok.server, 2), "hi");
}

TEST(TlsServer, MutualChecksClientSubjectAltNames)
{
    auto mp = simple_policy();
    mp.mode = client_mode::mutual;
    mp.client_certificate = g_pki->client_cert;
    mp.private_key = g_pki->client_key;
    const auto mutual = build_client(mp);

    auto s = server_a();
    s.tls->mode = server_mode::mutual;
    s.tls->ca_certificates = g_pki->ca;
    s.tls->subject_alt_names = {"spiffe://cluster.local/ns/default/sa/client"};
    const auto good = build_server({s});
    conn c(mutual, good);
    EXPECT_TRUE(c.hs.ok()) << c.hs.server.error;

    s.tls->subject_alt_names = {"spiffe://cluster.local/ns/default/sa/other"};
    const auto bad = build_server({s});
    conn d(mutual, bad);
    EXPECT_TRUE(d.hs.server.failed());
    EXPECT_EQ(d.server.verify_error(), "hostname mismatch");
}

TEST(TlsServer, MutualOnlyForTheServerSniSelects)
{
    auto m = server_b();
    m.tls->mode = server_mode::mutual;
    m.tls->ca_certificates = g_pki->ca;
    const auto sc = build_server({server_a(), m});
    const auto plain = build_client(simple_policy());
    conn open(plain, sc, "www.example.com");
    EXPECT_TRUE(open.hs.ok());
    conn guarded(plain, sc, "api.example.org");
    EXPECT_TRUE(guarded.hs.server.failed()); // the switched context's verify mode applies
}

TEST(TlsServer, MinVersionRefusesOlderClients)
{
    auto s = server_a();
    s.tls->min_protocol_version = snapshot::server_tls::version::tls_1_3;
    const auto sc = build_server({s});
    SSL_CTX* old = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION);
    conn c(SSL_new(old), sc);
    SSL_CTX_free(old); // the SSL holds its own reference
    EXPECT_TRUE(c.hs.server.failed());
    EXPECT_NE(c.hs.server.error.find("protocol"), std::string_view::npos) << c.hs.server.error;
    EXPECT_TRUE(c.hs.client.failed());

    // The same client completes against a TLS_AUTO (1.2..1.3) server, in TLS 1.2.
    const auto sc12 = build_server({server_a()});
    SSL_CTX* old2 = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(old2, TLS1_2_VERSION);
    conn d(SSL_new(old2), sc12);
    SSL_CTX_free(old2);
    ASSERT_TRUE(d.hs.ok()) << d.hs.server.error;
    EXPECT_EQ(d.server.version(), "TLSv1.2");
}

TEST(TlsServer, CipherSuites)
{
    auto s = server_a();
    s.tls->cipher_suites = {"ECDHE-ECDSA-AES128-GCM-SHA256", "NOT-A-CIPHER"};
    auto r = try_build({s});
    ASSERT_FALSE(r.ok());
    const std::string e = r.err().to_string();
    EXPECT_NE(e.find("gateway ns/gw server web"), std::string::npos) << e;
    EXPECT_NE(e.find("tls.cipherSuites"), std::string::npos) << e;
    EXPECT_NE(e.find("NOT-A-CIPHER"), std::string::npos) << e;

    s.tls->cipher_suites = {"TLS_NOT_A_SUITE"};
    EXPECT_FALSE(try_build({s}).ok());

    // A valid 1.2 list applies (the old client negotiates it).
    s.tls->cipher_suites = {"ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_AES_256_GCM_SHA384"};
    const auto sc = build_server({s});
    SSL_CTX* old = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION);
    conn c(SSL_new(old), sc);
    SSL_CTX_free(old);
    ASSERT_TRUE(c.hs.ok()) << c.hs.server.error;
    EXPECT_EQ(c.server.cipher(), "ECDHE-ECDSA-AES256-GCM-SHA384");
}

TEST(TlsServer, ConfigErrorsNameTheServerAndTheFile)
{
    auto s = server_a();
    s.tls->server_certificate = g_pki->dir + "/missing.pem";
    auto r = try_build({server_b(), s});
    ASSERT_FALSE(r.ok());
    std::string e = r.err().to_string();
    EXPECT_EQ(e.rfind("gateway ns/gw server web: tls.serverCertificate: cannot read " + g_pki->dir +
                          "/missing.pem: No such file or directory",
                      0),
              0U)
        << e;

    s = server_a();
    s.tls->private_key = g_pki->b_key;
    r = try_build({s});
    ASSERT_FALSE(r.ok());
    e = r.err().to_string();
    EXPECT_NE(e.find("tls.privateKey"), std::string::npos) << e;
    EXPECT_NE(e.find("does not match"), std::string::npos) << e;

    s = server_a();
    s.tls->mode = server_mode::mutual;
    s.tls->ca_certificates.clear();
    r = try_build({s});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().to_string().find("tls.caCertificates: required"), std::string::npos);

    s = server_a();
    s.tls->min_protocol_version = snapshot::server_tls::version::tls_1_3;
    s.tls->max_protocol_version = snapshot::server_tls::version::tls_1_2;
    EXPECT_FALSE(try_build({s}).ok());

    s = server_a();
    s.tls->credential_name = "my-secret";
    EXPECT_FALSE(try_build({s}).ok());

    s = server_a();
    s.tls->mode = server_mode::istio_mutual;
    EXPECT_FALSE(try_build({s}).ok());
}

TEST(TlsServer, PassthroughOnlyListenerIsEmpty)
{
    auto s = server_a();
    s.tls->mode = server_mode::passthrough;
    s.tls->server_certificate.clear();
    const auto sc = build_server({s});
    EXPECT_TRUE(sc.empty());
    EXPECT_EQ(sc.new_ssl(0), nullptr);
    EXPECT_EQ(server_tls_context::selected_server(nullptr), -1);
}

TEST(TlsServer, ConnectionsOutliveTheContext)
{
    // The engine may drop a context (new snapshot) while handshakes are in flight.
    const auto cc = build_client(simple_policy({"api.example.org"}));
    sock_pair fds;
    tls_stream client(cc.new_ssl(fds.client, "api.example.org"));
    tls_stream server;
    {
        const auto sc = build_server({server_a(), server_b()});
        server = tls_stream(sc.new_ssl(fds.server));
    }
    const auto hs = drive(client, server);
    ASSERT_TRUE(hs.ok()) << hs.client.error << " / " << hs.server.error;
    EXPECT_EQ(server_tls_context::selected_server(server.native_handle()), 1);
    EXPECT_EQ(server_tls_context::selected_server(client.native_handle()), -1);
}

// ------------------------------------------------------------------------ client side

TEST(TlsClient, SanMismatchFailsAndInsecureSkipVerifySucceeds)
{
    const auto sc = build_server({server_a()});
    const auto strict = build_client(simple_policy({"other.example.com"}));
    conn bad(strict, sc);
    EXPECT_TRUE(bad.hs.client.failed());
    EXPECT_EQ(bad.hs.client.error, "certificate verify failed");
    EXPECT_EQ(bad.client.verify_error(), "hostname mismatch");

    // The wildcard SAN covers one label only.
    const auto deep = build_client(simple_policy({"a.b.shop.example.com"}));
    EXPECT_TRUE(conn(deep, sc).hs.client.failed());
    const auto one = build_client(simple_policy({"nope.example.com", "x.shop.example.com"}));
    EXPECT_TRUE(conn(one, sc).hs.ok());

    // An untrusted CA fails the chain.
    auto p = simple_policy();
    p.ca_certificates = g_pki->other_ca;
    const auto untrusted = build_client(p);
    conn u(untrusted, sc);
    EXPECT_TRUE(u.hs.client.failed());

    // insecureSkipVerify: neither chain (wrong CA) nor SANs are checked.
    p.subject_alt_names = {"other.example.com"};
    p.insecure_skip_verify = true;
    const auto insecure = build_client(p);
    conn ok(insecure, sc);
    EXPECT_TRUE(ok.hs.ok()) << ok.hs.client.error;
    EXPECT_FALSE(ok.client.peer_verified());
}

TEST(TlsClient, BuildErrorsNameTheCluster)
{
    snapshot::tls_policy p;
    p.mode = client_mode::mutual;
    auto r = client_tls_context::build(p, "outbound|443||db");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.err().to_string(),
              "cluster outbound|443||db: tls.clientCertificate: required for mode MUTUAL");

    p = simple_policy();
    p.ca_certificates = g_pki->dir + "/nope.pem";
    r = client_tls_context::build(p, "c");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().to_string().find("cluster c: tls.caCertificates: cannot read"),
              std::string::npos)
        << r.err().to_string();

    p = {};
    EXPECT_FALSE(client_tls_context::build(p, "c").ok()); // DISABLE
    p.mode = client_mode::istio_mutual;
    EXPECT_FALSE(client_tls_context::build(p, "c").ok());

    // No CA and not insecure: the system trust store (which does not hold the test CA).
    p = {};
    p.mode = client_mode::simple;
    const auto system = build_client(p);
    const auto sc = build_server({server_a()});
    EXPECT_TRUE(conn(system, sc).hs.client.failed());
}

} // namespace
