#pragma once
/// @file
/// TLS for the L7 engine (OpenSSL 3): ClientHello SNI extraction for PASSTHROUGH routing,
/// server contexts that terminate Gateway SIMPLE/MUTUAL servers (certificate chosen by SNI),
/// client contexts that originate TLS per DestinationRule `trafficPolicy.tls`, and a
/// non-blocking TLS stream for the engine's edge-triggered epoll reactor.
///
/// Thread contract: contexts are built on the control side (they allocate, read files and
/// return result<>), then used read-only by the one L7 thread. A tls_stream belongs to one
/// connection on that thread. OpenSSL's error queue is per thread; the stream clears it
/// before each call and leaves it empty after.
///
/// Hot-path contract: parse_client_hello() is noexcept and allocation-free. Context
/// new_ssl() and tls_stream calls are noexcept and allocate nothing themselves (OpenSSL
/// allocates per connection and per record buffer).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include <openssl/types.h>

#include "sluice/base/result.hh"
#include "sluice/snapshot/snapshot.hh"

namespace sluice::l7 {

// ------------------------------------------------------------------------ ClientHello

/// Largest TLS record a ClientHello may arrive in: 5-byte header + 2^14 bytes (RFC 8446
/// §5.1). A record announcing more is malformed, so the engine never buffers more than this
/// before deciding.
inline constexpr size_t client_hello_max_bytes = 5 + 16384;

enum class sni_status : uint8_t {
    need_more, ///< a prefix of a plausible ClientHello: read more (at most client_hello_max_bytes)
    ok,        ///< a complete ClientHello; `has_sni`/`sni` say what it named
    not_tls,   ///< the first bytes are not a TLS handshake record (plain text, SSLv2, ...)
    malformed, ///< a TLS handshake record that is not a well-formed ClientHello
};

struct sni_result {
    sni_status status = sni_status::need_more;
    bool has_sni = false;
    /// The first host_name of the server_name extension, as sent (not lower-cased, no trailing
    /// dot removed): a view into the parsed bytes. Non-empty and NUL-free when has_sni.
    std::string_view sni;
};

/// Finds the SNI in the ClientHello at the start of `data` (the bytes a client sent first).
///
/// Only the first TLS record is read: the ClientHello message must lie in it whole (a
/// ClientHello fragmented over several records is `malformed`; real clients send up to a
/// few KiB in one record). `need_more` until the whole first record is present. Every
/// length is checked against its container; duplicate server_name extensions, an empty or
/// NUL-bearing host_name and extensions that do not fill the message exactly are malformed.
/// Bytes after the first record are ignored. noexcept, no allocation, hot-path safe.
[[nodiscard]] sni_result parse_client_hello(std::span<const uint8_t> data) noexcept;

// ------------------------------------------------------------------------ streams

/// What a non-blocking operation needs before it can make progress.
enum class tls_want : uint8_t {
    none,  ///< nothing: the operation finished (or, for read/write, may be called again)
    read,  ///< retry the same operation when the fd is readable
    write, ///< retry the same operation when the fd is writable
};

/// Result of one tls_stream operation. Look at `bytes` first (data read or written before the
/// call stopped), then `closed`/`error`, then `want`.
struct tls_io {
    size_t bytes = 0;
    tls_want want = tls_want::none;
    /// The peer closed: close_notify received, or EOF (then `truncated` is set: EOF without
    /// close_notify; harmless when the application protocol frames its own end).
    bool closed = false;
    bool truncated = false;
    /// Empty when the call succeeded; else a short static reason for logs (OpenSSL's reason
    /// string, e.g. "certificate verify failed", or strerror's). The stream is then dead.
    std::string_view error;

    [[nodiscard]] bool failed() const noexcept { return !error.empty(); }
};

/// One TLS connection over a non-blocking socket. Owns the SSL* (freed by the destructor),
/// not the fd (the engine closes it after the stream is gone or shut down).
///
/// Edge-triggered epoll contract: an operation that returns `want` read/write made all the
/// progress it could; the engine retries the *same* operation when the last call's want
/// event fires (a read may want write during a TLS 1.3 key update, a write may want read).
/// read() and write() loop internally until the buffer is full/empty or OpenSSL would block,
/// so `want == none` after them means "call again when you have room/data", never "wait for
/// an event": records already decrypted into OpenSSL's buffer (SSL_pending) raise no epoll
/// event, and read() returning a full buffer with want none is exactly that case.
///
/// OpenSSL's retry rule for writes: after write() returned want write with `bytes < size`,
/// the next write() must offer at least the remaining `data[bytes..]` with the same content
/// (the buffer may move; SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set).
class tls_stream {
public:
    tls_stream() noexcept = default;
    /// Adopts `ssl` (already bound to its fd, e.g. by a context's new_ssl()).
    explicit tls_stream(SSL* ssl) noexcept : _ssl(ssl) {}
    tls_stream(tls_stream&& o) noexcept;
    tls_stream& operator=(tls_stream&& o) noexcept;
    tls_stream(const tls_stream&) = delete;
    tls_stream& operator=(const tls_stream&) = delete;
    ~tls_stream();

    [[nodiscard]] bool valid() const noexcept { return _ssl != nullptr; }

    /// Drives the handshake. Done when `want == none` and not failed (handshake_done()).
    /// Failures surface on the side that detects them; the other side sees the alert on its
    /// next call. In TLS 1.3 the client finishes before the server has checked the client
    /// certificate, so a rejected client certificate reaches the client from read().
    tls_io handshake() noexcept;
    /// Decrypts into `buf` until it is full, the socket would block, or the peer closed.
    tls_io read(std::span<char> buf) noexcept;
    /// Encrypts and sends `data` until all of it is sent or the socket would block.
    tls_io write(std::span<const char> data) noexcept;
    /// Sends close_notify (does not wait for the peer's). `want == write` until it is
    /// flushed (call it again only then); `closed` when the peer's close_notify had already
    /// arrived. A no-op before the handshake finished and after a failure or EOF (OpenSSL
    /// forbids shutdown then).
    tls_io shutdown() noexcept;

    [[nodiscard]] bool handshake_done() const noexcept;
    /// A peer certificate was presented and verified (chain, and SANs when configured).
    [[nodiscard]] bool peer_verified() const noexcept;
    /// Whether the peer presented a certificate at all.
    [[nodiscard]] bool peer_has_certificate() const noexcept;
    /// X509 verification result as text ("ok", "certificate has expired", ...).
    [[nodiscard]] std::string_view verify_error() const noexcept;
    /// Negotiated ALPN protocol ("http/1.1"); empty when none.
    [[nodiscard]] std::string_view alpn() const noexcept;
    /// Negotiated version ("TLSv1.3"); empty before the handshake.
    [[nodiscard]] std::string_view version() const noexcept;
    /// Negotiated cipher suite name; empty before the handshake.
    [[nodiscard]] std::string_view cipher() const noexcept;
    /// Server side: the SNI the client sent; client side: the SNI this side sent.
    [[nodiscard]] std::string_view server_name() const noexcept;
    [[nodiscard]] SSL* native_handle() const noexcept { return _ssl; }

private:
    tls_io fail(int ret, size_t bytes) noexcept;

    SSL* _ssl = nullptr;
    bool _fatal = false; ///< an SSL_ERROR_SSL/SYSCALL happened: no shutdown allowed
};

// ------------------------------------------------------------------------ contexts

/// Terminates TLS for the Gateway servers sharing one listener (bind, port).
///
/// Servers with `tls.mode` SIMPLE, MUTUAL or OPTIONAL_MUTUAL terminate; PASSTHROUGH,
/// AUTO_PASSTHROUGH and servers without tls are skipped (the engine routes those by SNI
/// with parse_client_hello()); ISTIO_MUTUAL, credentialName(s) and SPKI/hash pinning are
/// refused with an error (sluice has no mesh identity or secret store, and silently not
/// verifying would be worse). Per server: `serverCertificate` (PEM chain) + `privateKey`
/// (must match), MUTUAL/OPTIONAL_MUTUAL `caCertificates` (+ `caCrl`, + `subjectAltNames`
/// checked against the client certificate), versions (TLS_AUTO: min 1.2, max 1.3),
/// `cipherSuites` (TLS <= 1.2 OpenSSL names; TLS 1.3 "TLS_*" names set the 1.3 suites; each
/// name must be known), ALPN "http/1.1" when the server is an HTTP(S) listener (none for
/// TLS-terminated TCP). No session resumption (no tickets, no cache): a resumed session
/// could otherwise cross servers with different client-certificate policies.
///
/// Server choice happens in OpenSSL's ClientHello callback, before version negotiation, so
/// the chosen server's versions, ciphers and client-certificate mode apply: an exact host
/// match wins, then the longest `*.suffix` wildcard (matching one or more labels, as Istio),
/// then `*`; no SNI or no match selects the first terminating server.
class server_tls_context {
public:
    /// Builds the contexts. Errors say "gateway NS/NAME server NAME: tls.FIELD: ...".
    /// `servers` need not outlive the context; selected_server() indexes this span.
    static result<server_tls_context>
    build(std::span<const snapshot::gateway_server* const> servers);

    server_tls_context(server_tls_context&&) noexcept;
    server_tls_context& operator=(server_tls_context&&) noexcept;
    ~server_tls_context();

    /// No server of the span terminates TLS (all PASSTHROUGH): new_ssl() returns nullptr.
    [[nodiscard]] bool empty() const noexcept;
    /// A server-mode SSL bound to the accepted non-blocking `fd` (MSG_NOSIGNAL socket BIO, no
    /// SIGPIPE); nullptr when empty() or out of memory. Wrap it in a tls_stream.
    [[nodiscard]] SSL* new_ssl(int fd) const noexcept;
    /// Index (into build()'s span) of the server chosen for `ssl` by SNI: valid once the
    /// ClientHello was processed (after handshake() progressed past reading it), before that
    /// the default (first terminating) server. -1 for an SSL not made by a server context.
    [[nodiscard]] static int selected_server(const SSL* ssl) noexcept;

private:
    struct impl;
    explicit server_tls_context(std::unique_ptr<impl> i) noexcept;
    std::unique_ptr<impl> _impl;
};

/// Originates TLS to one cluster's endpoints per DestinationRule `trafficPolicy.tls`.
///
/// SIMPLE and MUTUAL (`clientCertificate` + `privateKey` required) are supported; DISABLE
/// and ISTIO_MUTUAL (no mesh identity) and `credentialName` are errors. Verification: with
/// `insecureSkipVerify`, none (no chain, no SAN check); else the chain against
/// `caCertificates` (+ `caCrl`), or the system trust store when no CA is given, and when
/// `subjectAltNames` is set, the leaf must carry one of them as a DNS (wildcard certificate
/// names match one label), URI, IP or email SAN. Without subjectAltNames the name is not
/// checked (as Istio without auto-SAN validation). SNI: the `sni` field, or the per-connection
/// override given to new_ssl(); none otherwise (Istio's auto-SNI from the request host is
/// the engine's choice to pass). TLS 1.2..1.3; ALPN "http/1.1" when `offer_http1`.
class client_tls_context {
public:
    /// Errors say "cluster NAME: tls.FIELD: ...".
    static result<client_tls_context> build(const snapshot::tls_policy& policy,
                                            std::string_view cluster_name, bool offer_http1 = true);

    client_tls_context(client_tls_context&&) noexcept;
    client_tls_context& operator=(client_tls_context&&) noexcept;
    ~client_tls_context();

    /// A client-mode SSL bound to the connected non-blocking `fd`, sending `sni_override` if
    /// non-empty, else the policy's sni, else none (names over 255 bytes are not sent).
    /// nullptr when out of memory. Wrap it in a tls_stream.
    [[nodiscard]] SSL* new_ssl(int fd, std::string_view sni_override = {}) const noexcept;

private:
    struct impl;
    explicit client_tls_context(std::unique_ptr<impl> i) noexcept;
    std::unique_ptr<impl> _impl;
};

} // namespace sluice::l7
