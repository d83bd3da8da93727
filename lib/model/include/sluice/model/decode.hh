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

/// A short host resolved in a namespace: "reviews" in "prod" ->
/// "reviews.prod.svc.cluster.local". As Istio's ResolveShortnameToFQDN does, only a name
/// without a dot is short: "reviews.prod", "example.com", IP addresses and wildcards
/// ("*.example.com", "*") are returned unchanged (a two-label name is as likely an external
/// host as a Kubernetes `svc.ns`).
std::string resolve_host(std::string_view host, std::string_view ns, const options& opts = {});

} // namespace sluice::model
