#include "sluice/l7/tls.hh"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "sluice/base/ascii.hh"

namespace sluice::l7 {

namespace {

// ------------------------------------------------------------------------ ClientHello

/// Bounds-checked big-endian reader over untrusted bytes. Every accessor fails (returns
/// false) rather than read past the end.
class cursor {
public:
    cursor() noexcept = default;
    cursor(const uint8_t* p, size_t n) noexcept : _p(p), _n(n) {}

    [[nodiscard]] size_t size() const noexcept { return _n; }
    [[nodiscard]] bool empty() const noexcept { return _n == 0; }
    [[nodiscard]] const uint8_t* data() const noexcept { return _p; }

    bool u8(uint32_t& v) noexcept
    {
        if (_n < 1) {
            return false;
        }
        v = _p[0];
        advance(1);
        return true;
    }
    bool u16(uint32_t& v) noexcept
    {
        if (_n < 2) {
            return false;
        }
        v = (uint32_t{_p[0]} << 8) | _p[1];
        advance(2);
        return true;
    }
    bool u24(uint32_t& v) noexcept
    {
        if (_n < 3) {
            return false;
        }
        v = (uint32_t{_p[0]} << 16) | (uint32_t{_p[1]} << 8) | _p[2];
        advance(3);
        return true;
    }
    bool skip(size_t len) noexcept
    {
        if (_n < len) {
            return false;
        }
        advance(len);
        return true;
    }
    /// Splits the next `len` bytes off into `sub`.
    bool take(size_t len, cursor& sub) noexcept
    {
        if (_n < len) {
            return false;
        }
        sub = cursor(_p, len);
        advance(len);
        return true;
    }

private:
    void advance(size_t len) noexcept
    {
        _p += len;
        _n -= len;
    }

    const uint8_t* _p = nullptr;
    size_t _n = 0;
};

constexpr uint8_t record_handshake = 22;
constexpr uint8_t handshake_client_hello = 1;
constexpr uint32_t ext_server_name = 0;
constexpr uint32_t name_type_host = 0;
constexpr size_t record_header = 5;
constexpr size_t record_max = 16384;

/// The server_name extension body (RFC 6066 §3): a ServerNameList filling it exactly, at
/// least one entry, at most one host_name, which is non-empty and NUL-free.
bool parse_server_name_ext(cursor ext, bool& has, std::string_view& sni) noexcept
{
    uint32_t list_len = 0;
    if (!ext.u16(list_len) || list_len != ext.size() || list_len == 0) {
        return false;
    }
    while (!ext.empty()) {
        uint32_t type = 0;
        uint32_t len = 0;
        cursor name;
        if (!ext.u8(type) || !ext.u16(len) || !ext.take(len, name)) {
            return false;
        }
        if (type != name_type_host) {
            continue;
        }
        if (has || len == 0 || std::memchr(name.data(), 0, len) != nullptr) {
            return false;
        }
        has = true;
        sni = std::string_view(reinterpret_cast<const char*>(name.data()), len);
    }
    return true;
}

bool parse_hello_body(cursor body, sni_result& out) noexcept
{
    uint32_t version = 0;
    uint32_t len = 0;
    if (!body.u16(version) || (version >> 8) != 3 || !body.skip(32)) {
        return false;
    }
    if (!body.u8(len) || len > 32 || !body.skip(len)) { // legacy_session_id
        return false;
    }
    if (!body.u16(len) || len < 2 || len % 2 != 0 || !body.skip(len)) { // cipher_suites
        return false;
    }
    if (!body.u8(len) || len < 1 || !body.skip(len)) { // legacy_compression_methods
        return false;
    }
    if (body.empty()) {
        return true; // no extensions (SSLv3-style hello): no SNI
    }
    if (!body.u16(len) || len != body.size()) {
        return false;
    }
    bool seen = false;
    while (!body.empty()) {
        uint32_t type = 0;
        cursor ext;
        if (!body.u16(type) || !body.u16(len) || !body.take(len, ext)) {
            return false;
        }
        if (type == ext_server_name) {
            if (seen || !parse_server_name_ext(ext, out.has_sni, out.sni)) {
                return false;
            }
            seen = true;
        }
    }
    return true;
}

// ------------------------------------------------------------------------ OpenSSL plumbing

/// A socket BIO that sends with MSG_NOSIGNAL (a peer reset must not raise SIGPIPE in the
/// appliance) and never owns the fd. EOF sets BIO_FLAGS_IN_EOF like OpenSSL's socket BIO so
/// the record layer reports SSL_R_UNEXPECTED_EOF_WHILE_READING rather than a bare syscall
/// error.
int fd_of(BIO* b) noexcept
{
    return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b)));
}

int bio_write_ex(BIO* b, const char* buf, size_t len, size_t* written) noexcept
{
    BIO_clear_retry_flags(b);
    for (;;) {
        const ssize_t n = ::send(fd_of(b), buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *written = static_cast<size_t>(n);
            return 1;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            BIO_set_retry_write(b);
        }
        return 0;
    }
}

int bio_read_ex(BIO* b, char* buf, size_t len, size_t* got) noexcept
{
    BIO_clear_retry_flags(b);
    for (;;) {
        const ssize_t n = ::recv(fd_of(b), buf, len, 0);
        if (n > 0) {
            *got = static_cast<size_t>(n);
            return 1;
        }
        if (n == 0) {
            if (len > 0) {
                BIO_set_flags(b, BIO_FLAGS_IN_EOF);
            }
            *got = 0;
            return 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            BIO_set_retry_read(b);
        }
        return 0;
    }
}

long bio_ctrl(BIO* b, int cmd, long num, void* ptr) noexcept
{
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    case BIO_C_GET_FD:
        if (ptr != nullptr) {
            *static_cast<int*>(ptr) = fd_of(b);
        }
        return fd_of(b);
    default:
        return 0;
    }
}

int bio_create(BIO* b) noexcept
{
    BIO_set_init(b, 0);
    return 1;
}

int bio_destroy(BIO* b) noexcept
{
    (void)b; // the fd belongs to the engine
    return 1;
}

BIO_METHOD* socket_method() noexcept
{
    // Created once and kept for the process lifetime (magic static: thread-safe).
    static BIO_METHOD* const m = [] {
        BIO_METHOD* bm = BIO_meth_new(
            BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "sluice socket");
        if (bm != nullptr) {
            BIO_meth_set_write_ex(bm, bio_write_ex);
            BIO_meth_set_read_ex(bm, bio_read_ex);
            BIO_meth_set_ctrl(bm, bio_ctrl);
            BIO_meth_set_create(bm, bio_create);
            BIO_meth_set_destroy(bm, bio_destroy);
        }
        return bm;
    }();
    return m;
}

/// Binds `ssl` to `fd` with the MSG_NOSIGNAL BIO; frees `ssl` and returns nullptr on failure.
SSL* attach_fd(SSL* ssl, int fd) noexcept
{
    if (ssl == nullptr) {
        return nullptr;
    }
    BIO_METHOD* m = socket_method();
    BIO* b = m != nullptr ? BIO_new(m) : nullptr;
    if (b == nullptr) {
        SSL_free(ssl);
        return nullptr;
    }
    BIO_set_data(b, reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
    BIO_set_init(b, 1);
    SSL_set_bio(ssl, b, b); // one reference, consumed by ssl
    return ssl;
}

/// What a verify callback and the SNI switch need from one SSL_CTX. Owned by the SSL_CTX
/// through ex_data (freed with it), so connections still holding the SSL_CTX after the
/// engine dropped the context keep valid callback arguments.
struct ctx_data {
    int index = -1;                    ///< server: position in build()'s span
    int min_version = TLS1_2_VERSION;  ///< applied on an SNI switch
    int max_version = TLS1_3_VERSION;  ///<
    int verify_mode = SSL_VERIFY_NONE; ///<
    std::string cipher_list;           ///< TLS <= 1.2, applied on an SNI switch
    std::string ciphersuites;          ///< TLS 1.3, applied on an SNI switch
    std::vector<std::string> sans;     ///< required peer SANs (one must match)
    std::string sni;                   ///< client: the policy's SNI
};

struct host_pattern {
    enum class kind_t : uint8_t { exact, wildcard, any };
    kind_t kind = kind_t::exact;
    std::string text; ///< exact: the host; wildcard: the suffix with its dot (".example.com")
    size_t entry = 0; ///< into selector::entries
};

/// The SNI table of one server context, owned by its default SSL_CTX (ex_data). Holds a
/// reference on every other server's SSL_CTX: default ctx -> selector -> others, no cycle.
struct selector {
    struct entry {
        SSL_CTX* ctx = nullptr; ///< owned reference, except entry 0 (the default itself)
        ctx_data* data = nullptr;
    };
    std::vector<entry> entries; ///< entry 0 is the default (first terminating) server
    std::vector<host_pattern> hosts;

    selector() = default;
    selector(const selector&) = delete;
    selector& operator=(const selector&) = delete;
    ~selector()
    {
        for (size_t i = 1; i < entries.size(); ++i) {
            SSL_CTX_free(entries[i].ctx);
        }
    }

    /// Exact beats the longest wildcard suffix beats `*`; otherwise the default (0).
    [[nodiscard]] size_t select(std::string_view sni) const noexcept
    {
        if (!sni.empty() && sni.back() == '.') {
            sni.remove_suffix(1);
        }
        if (sni.empty()) {
            return 0;
        }
        size_t best = 0;
        size_t best_len = 0;
        bool found = false;
        for (const auto& h : hosts) {
            switch (h.kind) {
            case host_pattern::kind_t::exact:
                if (iequals(sni, h.text)) {
                    return h.entry;
                }
                break;
            case host_pattern::kind_t::wildcard:
                if (sni.size() > h.text.size() &&
                    iequals(sni.substr(sni.size() - h.text.size()), h.text) &&
                    (!found || h.text.size() + 1 > best_len)) {
                    best = h.entry;
                    best_len = h.text.size() + 1;
                    found = true;
                }
                break;
            case host_pattern::kind_t::any:
                if (!found) {
                    best = h.entry;
                    best_len = 0;
                    found = true;
                }
                break;
            }
        }
        return best;
    }
};

template <typename T>
void free_ex(void* parent, void* ptr, CRYPTO_EX_DATA* ad, int idx, long argl, void* argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    delete static_cast<T*>(ptr);
}

int ctx_data_index() noexcept
{
    static const int idx =
        SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_ex<ctx_data>);
    return idx;
}

int selector_index() noexcept
{
    static const int idx =
        SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_ex<selector>);
    return idx;
}

/// Per-SSL: the selected server's span index + 1 (0, i.e. null: not a server SSL).
int selected_index() noexcept
{
    static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return idx;
}

void set_selected(SSL* ssl, int index) noexcept
{
    SSL_set_ex_data(ssl, selected_index(), reinterpret_cast<void*>(intptr_t{index} + 1));
}

struct ctx_deleter {
    void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, ctx_deleter>;

/// The last OpenSSL error as "reason (lib)" text, and clears the queue. Control side.
std::string openssl_error()
{
    const unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (e == 0) {
        return "unknown OpenSSL error";
    }
    const char* reason = ERR_reason_error_string(e);
    std::string out = reason != nullptr ? reason : "error " + std::to_string(ERR_GET_REASON(e));
    return out;
}

/// Reads fail with errno text before OpenSSL's less telling "system lib" reason.
result<void> check_readable(const std::string& path, std::string_view field)
{
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) {
        return err(std::string(field) + ": cannot read " + path + ": " + std::strerror(errno));
    }
    std::fclose(f);
    return ok();
}

result<void> load_chain(SSL_CTX* ctx, const std::string& cert, std::string_view cert_field,
                        const std::string& key, std::string_view key_field)
{
    if (auto r = check_readable(cert, cert_field); !r) {
        return r;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
        return err(std::string(cert_field) + ": cannot load " + cert + ": " + openssl_error());
    }
    if (auto r = check_readable(key, key_field); !r) {
        return r;
    }
    // OpenSSL checks the key against the certificate already on load.
    const bool loaded = SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) == 1;
    const unsigned long e = ERR_peek_last_error();
    const bool mismatch =
        ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
    if (!loaded && !mismatch) {
        return err(std::string(key_field) + ": cannot load " + key + ": " + openssl_error());
    }
    if (!loaded || SSL_CTX_check_private_key(ctx) != 1) {
        return err(std::string(key_field) + ": " + key + " does not match " +
                   std::string(cert_field) + " " + cert + ": " + openssl_error());
    }
    return ok();
}

result<void> load_ca(SSL_CTX* ctx, const std::string& ca, std::string_view field,
                     bool client_ca_list)
{
    if (auto r = check_readable(ca, field); !r) {
        return r;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) {
        return err(std::string(field) + ": cannot load " + ca + ": " + openssl_error());
    }
    if (client_ca_list) {
        // The CA names a MUTUAL server lists in its CertificateRequest.
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
        if (names == nullptr) {
            return err(std::string(field) + ": no CA certificate in " + ca + ": " +
                       openssl_error());
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    return ok();
}

result<void> load_crl(SSL_CTX* ctx, const std::string& crl, std::string_view field)
{
    if (auto r = check_readable(crl, field); !r) {
        return r;
    }
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (lookup == nullptr || X509_load_crl_file(lookup, crl.c_str(), X509_FILETYPE_PEM) <= 0) {
        return err(std::string(field) + ": cannot load " + crl + ": " + openssl_error());
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    return ok();
}

/// DNS name match per RFC 6125 as Envoy does for SAN lists: exact (any case), or a
/// certificate name `*.suffix` matching exactly one label.
bool dns_matches(std::string_view cert_name, std::string_view want) noexcept
{
    if (iequals(cert_name, want)) {
        return true;
    }
    if (cert_name.size() < 3 || cert_name.substr(0, 2) != "*.") {
        return false;
    }
    const std::string_view suffix = cert_name.substr(1); // ".example.com"
    if (want.size() <= suffix.size() ||
        !iequals(want.substr(want.size() - suffix.size()), suffix)) {
        return false;
    }
    const std::string_view label = want.substr(0, want.size() - suffix.size());
    return label.find('.') == std::string_view::npos;
}

/// Whether the leaf carries one of `want` as a DNS, URI, email or IP SAN.
bool leaf_matches(X509* cert, const std::vector<std::string>& want) noexcept
{
    auto* names =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (names == nullptr) {
        return false;
    }
    bool match = false;
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && !match; ++i) {
        const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
        const ASN1_STRING* s = nullptr;
        char ip[INET6_ADDRSTRLEN] = {};
        switch (g->type) {
        case GEN_DNS:
        case GEN_URI:
        case GEN_EMAIL:
            s = g->d.ia5;
            break;
        case GEN_IPADD:
            s = g->d.iPAddress;
            if (s != nullptr && ASN1_STRING_length(s) == 4) {
                inet_ntop(AF_INET, ASN1_STRING_get0_data(s), ip, sizeof(ip));
            } else if (s != nullptr && ASN1_STRING_length(s) == 16) {
                inet_ntop(AF_INET6, ASN1_STRING_get0_data(s), ip, sizeof(ip));
            }
            break;
        default:
            break;
        }
        if (s == nullptr) {
            continue;
        }
        const std::string_view v =
            g->type == GEN_IPADD
                ? std::string_view(ip)
                : std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                   static_cast<size_t>(ASN1_STRING_length(s)));
        if (v.empty()) {
            continue;
        }
        for (const auto& w : want) {
            if (g->type == GEN_DNS ? dns_matches(v, w) : v == w) {
                match = true;
                break;
            }
        }
    }
    GENERAL_NAMES_free(names);
    return match;
}

/// Replaces X509_verify_cert for contexts with subjectAltNames: the chain first, then the
/// leaf's SANs. Mismatch is reported as X509_V_ERR_HOSTNAME_MISMATCH (verify_error()).
int verify_with_sans(X509_STORE_CTX* st, void* arg)
{
    const auto* data = static_cast<const ctx_data*>(arg);
    if (X509_verify_cert(st) != 1) {
        return 0;
    }
    X509* leaf = X509_STORE_CTX_get0_cert(st);
    if (leaf == nullptr || !leaf_matches(leaf, data->sans)) {
        X509_STORE_CTX_set_error(st, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

/// Settings every sluice context shares.
ctx_ptr new_ctx(bool server)
{
    ctx_ptr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
    if (!ctx) {
        return ctx;
    }
    // No renegotiation (a CPU-exhaustion and injection vector; TLS 1.3 has none).
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    // Partial writes + moving buffers: the engine's write() loop resumes from an offset in
    // a buffer that may have been compacted. Release buffers: idle keep-alive connections
    // do not hold 2 x 16 KiB each.
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

/// Hands `data` to `ctx` (freed with it). Fails only when OpenSSL cannot allocate.
ctx_data* attach_data(SSL_CTX* ctx, std::unique_ptr<ctx_data> data)
{
    ctx_data* raw = data.get();
    if (SSL_CTX_set_ex_data(ctx, ctx_data_index(), raw) != 1) {
        return nullptr;
    }
    (void)data.release();
    return raw;
}

int openssl_version(snapshot::server_tls::version v, bool is_max)
{
    using V = snapshot::server_tls::version;
    switch (v) {
    case V::tls_1_0:
        return TLS1_VERSION;
    case V::tls_1_1:
        return TLS1_1_VERSION;
    case V::tls_1_2:
        return TLS1_2_VERSION;
    case V::tls_1_3:
        return TLS1_3_VERSION;
    case V::tls_auto:
        break;
    }
    return is_max ? TLS1_3_VERSION : TLS1_2_VERSION;
}

/// TLS 1.3 suites OpenSSL 3 knows (SSL_CTX_set_ciphersuites silently skips unknown names,
/// so they are checked here).
bool is_tls13_suite(std::string_view name) noexcept
{
    return name == "TLS_AES_128_GCM_SHA256" || name == "TLS_AES_256_GCM_SHA384" ||
           name == "TLS_CHACHA20_POLY1305_SHA256" || name == "TLS_AES_128_CCM_SHA256" ||
           name == "TLS_AES_128_CCM_8_SHA256";
}

/// Validates each cipherSuites name on its own (a joined list passes if any one name is
/// known) and applies the lists to `ctx`; fills data->cipher_list/ciphersuites.
result<void> apply_ciphers(SSL_CTX* ctx, const std::vector<std::string>& names, ctx_data& data)
{
    std::string tls12;
    std::string tls13;
    for (const auto& name : names) {
        const bool separator = name.find_first_of(":, ") != std::string::npos;
        if (name.rfind("TLS_", 0) == 0) {
            if (separator || !is_tls13_suite(name)) {
                return err("tls.cipherSuites: unknown cipher suite \"" + name + "\"");
            }
            tls13 += (tls13.empty() ? "" : ":") + name;
            continue;
        }
        if (separator || name.empty() || SSL_CTX_set_cipher_list(ctx, name.c_str()) != 1) {
            ERR_clear_error();
            return err("tls.cipherSuites: unknown cipher suite \"" + name + "\"");
        }
        tls12 += (tls12.empty() ? "" : ":") + name;
    }
    data.cipher_list = tls12.empty() ? OSSL_default_cipher_list() : tls12;
    data.ciphersuites = tls13.empty() ? OSSL_default_ciphersuites() : tls13;
    if (SSL_CTX_set_cipher_list(ctx, data.cipher_list.c_str()) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, data.ciphersuites.c_str()) != 1) {
        return err("tls.cipherSuites: " + openssl_error());
    }
    return ok();
}

// ------------------------------------------------------------------------ server callbacks

/// Selects "http/1.1" when the client offers it; otherwise no ALPN (the client decides).
int alpn_http1(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void* arg)
{
    (void)ssl;
    (void)arg;
    static constexpr std::string_view h1 = "http/1.1";
    unsigned int i = 0;
    while (i < inlen) {
        const unsigned int len = in[i];
        if (len == 0 || len > inlen - i - 1) {
            break;
        }
        if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == h1) {
            *out = in + i + 1;
            *outlen = static_cast<unsigned char>(len);
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/// Runs first in ClientHello processing, before version negotiation and cipher choice, so
/// the chosen server's versions, ciphers and verify mode apply (a servername callback runs
/// too late for those: SSL_set_SSL_CTX swaps only the certificate).
int on_client_hello(SSL* ssl, int* alert, void* arg)
{
    const auto* sel = static_cast<const selector*>(arg);
    std::string_view sni;
    const unsigned char* ext = nullptr;
    size_t ext_len = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1) {
        bool has = false;
        if (!parse_server_name_ext(cursor(ext, ext_len), has, sni)) {
            *alert = SSL_AD_DECODE_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
    }
    const size_t e = sel->select(sni);
    const selector::entry& chosen = sel->entries[e];
    set_selected(ssl, chosen.data->index);
    if (e == 0) {
        return SSL_CLIENT_HELLO_SUCCESS; // SSL_new already applied the default's settings
    }
    const ctx_data& d = *chosen.data;
    if (SSL_set_SSL_CTX(ssl, chosen.ctx) == nullptr ||
        SSL_set_min_proto_version(ssl, d.min_version) != 1 ||
        SSL_set_max_proto_version(ssl, d.max_version) != 1 ||
        SSL_set_cipher_list(ssl, d.cipher_list.c_str()) != 1 ||
        SSL_set_ciphersuites(ssl, d.ciphersuites.c_str()) != 1) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    SSL_set_verify(ssl, d.verify_mode, nullptr);
    // SSL_new copied the default server's CA names; a MUTUAL server lists its own.
    STACK_OF(X509_NAME)* names = SSL_CTX_get_client_CA_list(chosen.ctx);
    SSL_set_client_CA_list(ssl, names != nullptr ? SSL_dup_CA_list(names) : nullptr);
    return SSL_CLIENT_HELLO_SUCCESS;
}

std::string server_where(const snapshot::gateway_server& s, size_t i)
{
    return "gateway " + s.gateway + " server " +
           (s.name.empty() ? "#" + std::to_string(i) : s.name);
}

std::string_view mode_name(snapshot::server_tls::mode_t m)
{
    using M = snapshot::server_tls::mode_t;
    switch (m) {
    case M::passthrough:
        return "PASSTHROUGH";
    case M::simple:
        return "SIMPLE";
    case M::mutual:
        return "MUTUAL";
    case M::auto_passthrough:
        return "AUTO_PASSTHROUGH";
    case M::istio_mutual:
        return "ISTIO_MUTUAL";
    case M::optional_mutual:
        return "OPTIONAL_MUTUAL";
    }
    return "?";
}

/// One terminating server's SSL_CTX, its ctx_data attached.
result<ctx_ptr> build_server_ctx(const snapshot::gateway_server& s, int index)
{
    using M = snapshot::server_tls::mode_t;
    const snapshot::server_tls& t = *s.tls;
    if (t.mode == M::istio_mutual) {
        return err("tls.mode: ISTIO_MUTUAL is not supported (sluice has no mesh identity)");
    }
    if (!t.credential_name.empty() || !t.credential_names.empty()) {
        return err("tls.credentialName: not supported (no secret store); set "
                   "serverCertificate and privateKey files");
    }
    if (!t.verify_certificate_spki.empty() || !t.verify_certificate_hash.empty()) {
        return err("tls.verifyCertificateSpki/verifyCertificateHash: not supported");
    }
    if (t.server_certificate.empty()) {
        return err("tls.serverCertificate: required for mode " + std::string(mode_name(t.mode)));
    }
    if (t.private_key.empty()) {
        return err("tls.privateKey: required for mode " + std::string(mode_name(t.mode)));
    }
    const bool verify = t.mode == M::mutual || t.mode == M::optional_mutual;
    if (verify && t.ca_certificates.empty()) {
        return err("tls.caCertificates: required for mode " + std::string(mode_name(t.mode)));
    }
    auto data = std::make_unique<ctx_data>();
    data->index = index;
    data->min_version = openssl_version(t.min_protocol_version, false);
    data->max_version = openssl_version(t.max_protocol_version, true);
    if (data->min_version > data->max_version) {
        return err("tls.minProtocolVersion: greater than tls.maxProtocolVersion");
    }
    ctx_ptr ctx = new_ctx(true);
    if (!ctx) {
        return err("cannot create an SSL_CTX: " + openssl_error());
    }
    if (SSL_CTX_set_min_proto_version(ctx.get(), data->min_version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx.get(), data->max_version) != 1) {
        return err("tls.minProtocolVersion: " + openssl_error());
    }
    if (auto r = apply_ciphers(ctx.get(), t.cipher_suites, *data); !r) {
        return r.err();
    }
    if (auto r = load_chain(ctx.get(), t.server_certificate, "tls.serverCertificate", t.private_key,
                            "tls.privateKey");
        !r) {
        return r.err();
    }
    // No resumption: no stateless tickets (1.2 and 1.3) and no session cache.
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    const std::string sid = s.gateway + "/" + s.name + "#" + std::to_string(index);
    SSL_CTX_set_session_id_context(
        ctx.get(), reinterpret_cast<const unsigned char*>(sid.data()),
        static_cast<unsigned int>(std::min<size_t>(sid.size(), SSL_MAX_SID_CTX_LENGTH)));
    if (verify) {
        if (auto r = load_ca(ctx.get(), t.ca_certificates, "tls.caCertificates", true); !r) {
            return r.err();
        }
        if (!t.ca_crl.empty()) {
            if (auto r = load_crl(ctx.get(), t.ca_crl, "tls.caCrl"); !r) {
                return r.err();
            }
        }
        data->verify_mode =
            SSL_VERIFY_PEER | (t.mode == M::mutual ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
        data->sans = t.subject_alt_names;
        SSL_CTX_set_verify(ctx.get(), data->verify_mode, nullptr);
    } else {
        data->verify_mode = SSL_VERIFY_NONE;
    }
    if (s.kind == snapshot::listener_kind::http) {
        SSL_CTX_set_alpn_select_cb(ctx.get(), alpn_http1, nullptr);
    }
    ctx_data* d = attach_data(ctx.get(), std::move(data));
    if (d == nullptr) {
        return err("cannot attach context data: " + openssl_error());
    }
    if (!d->sans.empty()) {
        SSL_CTX_set_cert_verify_callback(ctx.get(), verify_with_sans, d);
    }
    return ctx;
}

tls_io io_error(std::string_view why) noexcept
{
    tls_io io;
    io.error = why;
    return io;
}

tls_io io_bytes(size_t n) noexcept
{
    tls_io io;
    io.bytes = n;
    return io;
}

tls_io io_closed() noexcept
{
    tls_io io;
    io.closed = true;
    return io;
}

} // namespace

// ------------------------------------------------------------------------ ClientHello

sni_result parse_client_hello(std::span<const uint8_t> data) noexcept
{
    sni_result out;
    const size_t n = data.size();
    if (n == 0) {
        return out;
    }
    // Decide "not TLS" from the first bytes, before waiting for more.
    if (data[0] != record_handshake || (n >= 2 && data[1] != 3)) {
        out.status = sni_status::not_tls;
        return out;
    }
    if (n < record_header) {
        return out;
    }
    const size_t rec_len = (size_t{data[3]} << 8) | data[4];
    if (rec_len == 0 || rec_len > record_max) {
        out.status = sni_status::malformed;
        return out;
    }
    // Check the handshake header as soon as it is here: a huge or non-ClientHello message
    // is refused without buffering the rest of the record.
    if (n > record_header && data[record_header] != handshake_client_hello) {
        out.status = sni_status::malformed;
        return out;
    }
    if (n >= record_header + 4) {
        const size_t hs_len = (size_t{data[6]} << 16) | (size_t{data[7]} << 8) | data[8];
        if (hs_len + 4 > rec_len) {
            out.status = sni_status::malformed; // fragmented over records: unsupported
            return out;
        }
    }
    if (n < record_header + rec_len) {
        return out;
    }
    cursor rec(data.data() + record_header, rec_len);
    uint32_t type = 0;
    uint32_t len = 0;
    cursor body;
    if (!rec.u8(type) || !rec.u24(len) || !rec.take(len, body) || !parse_hello_body(body, out)) {
        out.status = sni_status::malformed;
        out.has_sni = false;
        out.sni = {};
        return out;
    }
    out.status = sni_status::ok;
    return out;
}

// ------------------------------------------------------------------------ tls_stream

tls_stream::tls_stream(tls_stream&& o) noexcept
    : _ssl(std::exchange(o._ssl, nullptr)), _fatal(std::exchange(o._fatal, false))
{
}

tls_stream& tls_stream::operator=(tls_stream&& o) noexcept
{
    if (this != &o) {
        SSL_free(_ssl);
        _ssl = std::exchange(o._ssl, nullptr);
        _fatal = std::exchange(o._fatal, false);
    }
    return *this;
}

tls_stream::~tls_stream()
{
    SSL_free(_ssl);
}

tls_io tls_stream::fail(int ret, size_t bytes) noexcept
{
    const int saved_errno = errno;
    tls_io io;
    io.bytes = bytes;
    switch (SSL_get_error(_ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        io.want = tls_want::read;
        break;
    case SSL_ERROR_WANT_WRITE:
        io.want = tls_want::write;
        break;
    case SSL_ERROR_ZERO_RETURN:
        io.closed = true;
        break;
    case SSL_ERROR_SYSCALL:
        _fatal = true;
        if (const unsigned long e = ERR_peek_last_error(); e != 0) {
            const char* r = ERR_reason_error_string(e);
            io.error = r != nullptr ? r : "TLS error";
        } else if (saved_errno == 0) {
            io.closed = true;
            io.truncated = true;
        } else {
            const char* r = strerrordesc_np(saved_errno);
            io.error = r != nullptr ? r : "socket error";
        }
        break;
    case SSL_ERROR_SSL: {
        _fatal = true;
        const unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            io.closed = true;
            io.truncated = true;
        } else {
            const char* r = e != 0 ? ERR_reason_error_string(e) : nullptr;
            io.error = r != nullptr ? r : "TLS error";
        }
        break;
    }
    default:
        _fatal = true;
        io.error = "unexpected OpenSSL retry";
        break;
    }
    ERR_clear_error();
    return io;
}

tls_io tls_stream::handshake() noexcept
{
    if (_ssl == nullptr) {
        return io_error("no TLS session");
    }
    ERR_clear_error();
    const int r = SSL_do_handshake(_ssl);
    if (r == 1) {
        return {};
    }
    return fail(r, 0);
}

tls_io tls_stream::read(std::span<char> buf) noexcept
{
    if (_ssl == nullptr) {
        return io_error("no TLS session");
    }
    size_t total = 0;
    while (total < buf.size()) {
        size_t got = 0;
        ERR_clear_error();
        const int r = SSL_read_ex(_ssl, buf.data() + total, buf.size() - total, &got);
        if (r != 1) {
            return fail(r, total);
        }
        total += got;
    }
    return io_bytes(total);
}

tls_io tls_stream::write(std::span<const char> data) noexcept
{
    if (_ssl == nullptr) {
        return io_error("no TLS session");
    }
    size_t total = 0;
    while (total < data.size()) {
        size_t sent = 0;
        ERR_clear_error();
        const int r = SSL_write_ex(_ssl, data.data() + total, data.size() - total, &sent);
        if (r != 1) {
            return fail(r, total);
        }
        total += sent;
    }
    return io_bytes(total);
}

tls_io tls_stream::shutdown() noexcept
{
    // OpenSSL forbids SSL_shutdown after a fatal error and fails it during the handshake.
    if (_ssl == nullptr || _fatal || SSL_is_init_finished(_ssl) != 1) {
        return {};
    }
    ERR_clear_error();
    const int r = SSL_shutdown(_ssl);
    if (r == 1) {
        return io_closed();
    }
    if (r == 0) {
        return {}; // close_notify sent; the peer's is not awaited
    }
    return fail(r, 0);
}

bool tls_stream::handshake_done() const noexcept
{
    return _ssl != nullptr && SSL_is_init_finished(_ssl) == 1;
}

bool tls_stream::peer_has_certificate() const noexcept
{
    return _ssl != nullptr && SSL_get0_peer_certificate(_ssl) != nullptr;
}

bool tls_stream::peer_verified() const noexcept
{
    return peer_has_certificate() && SSL_get_verify_result(_ssl) == X509_V_OK;
}

std::string_view tls_stream::verify_error() const noexcept
{
    if (_ssl == nullptr) {
        return {};
    }
    return X509_verify_cert_error_string(SSL_get_verify_result(_ssl));
}

std::string_view tls_stream::alpn() const noexcept
{
    if (_ssl == nullptr) {
        return {};
    }
    const unsigned char* p = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(_ssl, &p, &len);
    return p == nullptr ? std::string_view{}
                        : std::string_view(reinterpret_cast<const char*>(p), len);
}

std::string_view tls_stream::version() const noexcept
{
    if (!handshake_done()) {
        return {};
    }
    return SSL_get_version(_ssl);
}

std::string_view tls_stream::cipher() const noexcept
{
    const SSL_CIPHER* c = _ssl != nullptr ? SSL_get_current_cipher(_ssl) : nullptr;
    return c == nullptr ? std::string_view{} : SSL_CIPHER_get_name(c);
}

std::string_view tls_stream::server_name() const noexcept
{
    const char* s = _ssl != nullptr ? SSL_get_servername(_ssl, TLSEXT_NAMETYPE_host_name) : nullptr;
    return s == nullptr ? std::string_view{} : s;
}

// ------------------------------------------------------------------------ server context

struct server_tls_context::impl {
    ctx_ptr front; ///< the default server's SSL_CTX; owns the selector and, through it, the rest
};

server_tls_context::server_tls_context(std::unique_ptr<impl> i) noexcept : _impl(std::move(i)) {}
server_tls_context::server_tls_context(server_tls_context&&) noexcept = default;
server_tls_context& server_tls_context::operator=(server_tls_context&&) noexcept = default;
server_tls_context::~server_tls_context() = default;

result<server_tls_context>
server_tls_context::build(std::span<const snapshot::gateway_server* const> servers)
{
    using M = snapshot::server_tls::mode_t;
    auto sel = std::make_unique<selector>();
    std::vector<ctx_ptr> ctxs;
    for (size_t i = 0; i < servers.size(); ++i) {
        const snapshot::gateway_server& s = *servers[i];
        if (!s.tls || s.tls->mode == M::passthrough || s.tls->mode == M::auto_passthrough) {
            continue;
        }
        auto ctx = build_server_ctx(s, static_cast<int>(i));
        if (!ctx) {
            return err(ctx.err().message, server_where(s, i));
        }
        const size_t e = ctxs.size();
        auto* data = static_cast<ctx_data*>(SSL_CTX_get_ex_data(ctx->get(), ctx_data_index()));
        sel->entries.push_back({ctx->get(), data});
        ctxs.push_back(std::move(*ctx));
        for (const auto& h : s.hosts) {
            host_pattern p;
            p.entry = e;
            if (h.host == "*") {
                p.kind = host_pattern::kind_t::any;
            } else if (h.host.rfind("*.", 0) == 0) {
                p.kind = host_pattern::kind_t::wildcard;
                p.text = to_lower(std::string_view(h.host).substr(1));
            } else {
                p.kind = host_pattern::kind_t::exact;
                p.text = to_lower(h.host);
                if (!p.text.empty() && p.text.back() == '.') {
                    p.text.pop_back();
                }
            }
            sel->hosts.push_back(std::move(p));
        }
    }
    auto im = std::make_unique<impl>();
    if (ctxs.empty()) {
        return server_tls_context(std::move(im));
    }
    // The selector holds the non-default contexts' references; the front holds the selector.
    im->front = std::move(ctxs[0]);
    selector* raw = sel.get();
    if (SSL_CTX_set_ex_data(im->front.get(), selector_index(), raw) != 1) {
        return err("cannot attach the SNI table: " + openssl_error());
    }
    (void)sel.release();
    for (size_t i = 1; i < ctxs.size(); ++i) {
        (void)ctxs[i].release();
    }
    SSL_CTX_set_client_hello_cb(im->front.get(), on_client_hello, raw);
    return server_tls_context(std::move(im));
}

bool server_tls_context::empty() const noexcept
{
    return !_impl || !_impl->front;
}

SSL* server_tls_context::new_ssl(int fd) const noexcept
{
    if (empty()) {
        return nullptr;
    }
    SSL* ssl = attach_fd(SSL_new(_impl->front.get()), fd);
    if (ssl == nullptr) {
        return nullptr;
    }
    const auto* data =
        static_cast<const ctx_data*>(SSL_CTX_get_ex_data(_impl->front.get(), ctx_data_index()));
    set_selected(ssl, data->index);
    SSL_set_accept_state(ssl);
    return ssl;
}

int server_tls_context::selected_server(const SSL* ssl) noexcept
{
    if (ssl == nullptr) {
        return -1;
    }
    const auto v = reinterpret_cast<intptr_t>(SSL_get_ex_data(ssl, selected_index()));
    return static_cast<int>(v) - 1;
}

// ------------------------------------------------------------------------ client context

struct client_tls_context::impl {
    ctx_ptr ctx;
    const ctx_data* data = nullptr; ///< owned by ctx
};

client_tls_context::client_tls_context(std::unique_ptr<impl> i) noexcept : _impl(std::move(i)) {}
client_tls_context::client_tls_context(client_tls_context&&) noexcept = default;
client_tls_context& client_tls_context::operator=(client_tls_context&&) noexcept = default;
client_tls_context::~client_tls_context() = default;

result<client_tls_context> client_tls_context::build(const snapshot::tls_policy& policy,
                                                     std::string_view cluster_name,
                                                     bool offer_http1)
{
    using M = snapshot::tls_policy::mode_t;
    const std::string where = "cluster " + std::string(cluster_name);
    switch (policy.mode) {
    case M::disable:
        return err("tls.mode: DISABLE originates no TLS", where);
    case M::istio_mutual:
        return err("tls.mode: ISTIO_MUTUAL is not supported (sluice has no mesh identity)", where);
    case M::simple:
    case M::mutual:
        break;
    }
    if (!policy.credential_name.empty()) {
        return err("tls.credentialName: not supported (no secret store); set "
                   "clientCertificate and privateKey files",
                   where);
    }
    ctx_ptr ctx = new_ctx(false);
    if (!ctx) {
        return err("cannot create an SSL_CTX: " + openssl_error(), where);
    }
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
    if (policy.mode == M::mutual) {
        if (policy.client_certificate.empty()) {
            return err("tls.clientCertificate: required for mode MUTUAL", where);
        }
        if (policy.private_key.empty()) {
            return err("tls.privateKey: required for mode MUTUAL", where);
        }
        if (auto r = load_chain(ctx.get(), policy.client_certificate, "tls.clientCertificate",
                                policy.private_key, "tls.privateKey");
            !r) {
            return err(r.err().message, where);
        }
    }
    auto data = std::make_unique<ctx_data>();
    data->sni = policy.sni;
    if (policy.insecure_skip_verify) {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
    } else {
        if (!policy.ca_certificates.empty()) {
            if (auto r = load_ca(ctx.get(), policy.ca_certificates, "tls.caCertificates", false);
                !r) {
                return err(r.err().message, where);
            }
        } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
            return err("tls.caCertificates: cannot load the system trust store: " + openssl_error(),
                       where);
        }
        if (!policy.ca_crl.empty()) {
            if (auto r = load_crl(ctx.get(), policy.ca_crl, "tls.caCrl"); !r) {
                return err(r.err().message, where);
            }
        }
        data->sans = policy.subject_alt_names;
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    }
    // SSL_CTX_set_alpn_protos returns 0 on success.
    static constexpr unsigned char h1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    if (offer_http1 && SSL_CTX_set_alpn_protos(ctx.get(), h1, sizeof(h1)) != 0) {
        return err("cannot set ALPN: " + openssl_error(), where);
    }
    ctx_data* d = attach_data(ctx.get(), std::move(data));
    if (d == nullptr) {
        return err("cannot attach context data: " + openssl_error(), where);
    }
    if (!d->sans.empty()) {
        SSL_CTX_set_cert_verify_callback(ctx.get(), verify_with_sans, d);
    }
    auto im = std::make_unique<impl>();
    im->ctx = std::move(ctx);
    im->data = d;
    return client_tls_context(std::move(im));
}

SSL* client_tls_context::new_ssl(int fd, std::string_view sni_override) const noexcept
{
    if (!_impl || !_impl->ctx) {
        return nullptr;
    }
    SSL* ssl = attach_fd(SSL_new(_impl->ctx.get()), fd);
    if (ssl == nullptr) {
        return nullptr;
    }
    SSL_set_connect_state(ssl);
    const std::string_view sni = !sni_override.empty() ? sni_override : _impl->data->sni;
    if (!sni.empty() && sni.size() <= 255) {
        char name[256];
        std::memcpy(name, sni.data(), sni.size());
        name[sni.size()] = '\0';
        if (SSL_set_tlsext_host_name(ssl, name) != 1) {
            ERR_clear_error();
        }
    }
    return ssl;
}

} // namespace sluice::l7
