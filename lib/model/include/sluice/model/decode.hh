#pragma once
/// @file
/// Decoding and validating the mesh policy model.
///
/// decode(): one YAML or JSON text (a multi-document stream, or `kind: List` with `items`)
/// into model objects, with ISTIO.md defaults and hosts resolved to FQDNs. Kinds sluice does
/// not use (Deployment, PeerAuthentication, Sidecar, ...) are skipped with a note, never an
/// error: users apply whole kubectl streams.
///
/// validate(): Istio's rules per object (errors) and cross-object references (warnings:
/// objects arrive in any order; at runtime such a route answers 503).
///
/// Control plane only. Pure: no EAL, no I/O but what the caller hands in.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/base/result.hh"
#include "sluice/model/objects.hh"

namespace sluice::model {

enum class severity : uint8_t { error, warning, note };

/// One finding, in istioctl's manner: which object, which field path, what is wrong.
struct diagnostic {
    severity level = severity::error;
    std::string object;  ///< "VirtualService prod/api"; empty for a file-level problem
    std::string field;   ///< "spec.http[0].route[0].weight"; empty when about the object
    std::string message; ///< "must be between 0 and 100"
    std::string file;    ///< may be empty (objects built in code)
    int line = 0;        ///< 1-based; 0 unknown

    /// "error: FILE:LINE: VirtualService prod/api: spec.http[0].route[0].weight: must be
    /// between 0 and 100" (parts that are empty are left out).
    [[nodiscard]] std::string to_string() const;
};

struct options {
    std::string cluster_domain = "cluster.local";
};

struct decoded {
    mesh objects;
    std::vector<diagnostic> diagnostics; ///< decode errors (syntax, types), notes (skipped)
    [[nodiscard]] bool has_errors() const;
};

/// Decodes a YAML or JSON stream. `file` names the source in diagnostics ("-" for stdin).
decoded decode(std::string_view text, const std::string& file, const options& opts = {});

/// Adds `from` into `into`; an object with the same kind/namespace/name replaces the old one.
void merge(mesh& into, mesh&& from);

/// Checks every object; errors for rule violations, warnings for dangling references.
std::vector<diagnostic> validate(const mesh& m, const options& opts = {});

/// Protobuf/Go duration text: "1.5s", "300ms", "2h45m", "1us", "10ns", "0s".
result<duration> parse_duration(std::string_view text);

/// The `sluice.io/health-check` annotation of a Service or ServiceEntry: an active health
/// check of the service's endpoints (compile turns it into snapshot::health_check_spec; the
/// defaults are the same).
struct health_check_annotation {
    enum class kind_t : uint8_t { tcp, http };
    kind_t kind = kind_t::tcp;
    std::string path = "/"; ///< http only: the request path
    duration interval = std::chrono::seconds(5);
    duration timeout = std::chrono::seconds(1);
    uint32_t unhealthy_threshold = 3;
    uint32_t healthy_threshold = 2;

    friend bool operator==(const health_check_annotation&,
                           const health_check_annotation&) = default;
};

/// The annotation key health_check_annotation is read from.
inline constexpr const char* health_check_annotation_key = "sluice.io/health-check";

/// Parses a `sluice.io/health-check` value:
///
///     KIND[,OPTION]...
///     KIND   = "tcp" | "http:" PATH
///     OPTION = "interval=" DURATION | "timeout=" DURATION
///            | "unhealthyThreshold=" INT | "healthyThreshold=" INT
///
/// e.g. "tcp", "http:/healthz,interval=2s,timeout=500ms,unhealthyThreshold=2,healthyThreshold=1".
/// PATH starts with '/' and is printable ASCII without ',' (no whitespace, control or non-ASCII
/// byte: percent-encode them); DURATION is parse_duration() text; interval and timeout are > 0
/// with timeout <= interval; INT is decimal digits, 1..1000; an option appears at most once;
/// names are case-sensitive and no whitespace is allowed anywhere. Omitted options take the
/// defaults (interval 5s, timeout 1s, unhealthyThreshold 3, healthyThreshold 2). The error
/// says what is wrong and what is expected (the caller adds the field path).
result<health_check_annotation> parse_health_check(std::string_view text);

/// A short host resolved in a namespace: "reviews" in "prod" ->
/// "reviews.prod.svc.cluster.local". As Istio's ResolveShortnameToFQDN does, only a name
/// without a dot is short: "reviews.prod", "example.com", IP addresses and wildcards
/// ("*.example.com", "*") are returned unchanged (a two-label name is as likely an external
/// host as a Kubernetes `svc.ns`).
std::string resolve_host(std::string_view host, std::string_view ns, const options& opts = {});

} // namespace sluice::model
