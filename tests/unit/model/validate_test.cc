#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "sluice/model/decode.hh"

namespace sluice::model {
namespace {

std::string obj(const std::string& kind, const std::string& spec,
                const std::string& api = "networking.istio.io/v1", const std::string& name = "api",
                const std::string& meta_extra = "")
{
    return "apiVersion: " + api + "\nkind: " + kind + "\nmetadata:\n  name: " + name +
           "\n  namespace: prod\n" + meta_extra + "spec:\n" + spec;
}

std::string vs(const std::string& spec, const std::string& name = "api")
{
    return obj("VirtualService", spec, "networking.istio.io/v1", name);
}
std::string dr(const std::string& spec)
{
    return obj("DestinationRule", spec);
}
std::string gw(const std::string& spec)
{
    return obj("Gateway", spec);
}
std::string se(const std::string& spec, const std::string& meta_extra = "")
{
    return obj("ServiceEntry", spec, "networking.istio.io/v1", "api", meta_extra);
}

/// Decodes and validates; every finding as "level|Object: field: message".
std::vector<std::string> findings(const std::string& yaml)
{
    auto d = decode(yaml, "t.yaml");
    auto v = validate(d.objects);
    d.diagnostics.insert(d.diagnostics.end(), v.begin(), v.end());
    std::vector<std::string> out;
    for (const auto& x : d.diagnostics) {
        const char* lvl = x.level == severity::error     ? "error"
                          : x.level == severity::warning ? "warning"
                                                         : "note";
        out.push_back(std::string(lvl) + "|" + x.object + ": " + x.field + ": " + x.message);
    }
    return out;
}

std::string join(const std::vector<std::string>& v)
{
    std::string s;
    for (const auto& x : v) {
        s += "  " + x + "\n";
    }
    return s;
}

struct rule_case {
    const char* name;
    std::string yaml;
    std::string expected; ///< "VirtualService prod/api: spec...: message"
    severity level = severity::error;
};

void PrintTo(const rule_case& c, std::ostream* os)
{
    *os << c.name;
}

class ValidateRule : public testing::TestWithParam<rule_case> {};

TEST_P(ValidateRule, Reports)
{
    const auto& c = GetParam();
    const auto f = findings(c.yaml);
    const std::string want =
        std::string(c.level == severity::error ? "error" : "warning") + "|" + c.expected;
    EXPECT_NE(std::find(f.begin(), f.end(), want), f.end()) << "want: " << want << "\ngot:\n"
                                                            << join(f);
}

std::string repeat(const std::string& s, int n)
{
    std::string out;
    for (int i = 0; i < n; ++i) {
        out += s;
    }
    return out;
}

const std::string k_route = "[{route: [{destination: {host: api}}]}]";

std::vector<rule_case> virtual_service_cases()
{
    return {
        {"weight_range",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: api}, "
            "weight: 150}]}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].weight: must be between 0 and 100"},
        {"weight_negative",
         vs("  hosts: [api]\n  tcp: [{route: [{destination: {host: api}, "
            "weight: -1}]}]\n"),
         "VirtualService prod/api: spec.tcp[0].route[0].weight: must be between 0 and 100"},
        {"total_weight_zero",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: api, subset: a}, weight: 0}, "
            "{destination: {host: api, subset: b}}]}]\n"),
         "VirtualService prod/api: spec.http[0].route: total destination weight = 0"},
        {"hosts_required", vs("  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.hosts: at least one host is required (a VirtualService "
         "without hosts must be a delegate, and none delegates to it)"},
        {"delegate_no_gateways",
         vs("  hosts: [api]\n  http: [{delegate: {name: child}}]\n") + "---\n" +
             vs("  gateways: [edge]\n  http: " + k_route + "\n", "child"),
         "VirtualService prod/child: spec.gateways: delegate virtual service must have no "
         "gateways specified"},
        {"delegate_no_tcp",
         vs("  hosts: [api]\n  http: [{delegate: {name: child}}]\n") + "---\n" +
             vs("  tcp: " + k_route + "\n", "child"),
         "VirtualService prod/child: spec.tcp: delegate virtual service must have no tcp route "
         "specified"},
        {"delegate_no_tls",
         vs("  hosts: [api]\n  http: [{delegate: {name: child}}]\n") + "---\n" +
             vs("  tls: [{match: [{sniHosts: [a.com]}], route: [{destination: {host: a}}]}]\n",
                "child"),
         "VirtualService prod/child: spec.tls: delegate virtual service must have no tls route "
         "specified"},
        {"delegate_cannot_delegate",
         vs("  hosts: [api]\n  http: [{delegate: {name: child}}]\n") + "---\n" +
             vs("  http: [{delegate: {name: other}}]\n", "child"),
         "VirtualService prod/child: spec.http[0].delegate: delegate HTTP route cannot contain "
         "delegate"},
        {"delegating_regex",
         vs("  hosts: [api]\n  http: [{match: [{uri: {regex: /a.*}}], delegate: {name: api}}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].uri.regex: uri match does not support "
         "regex match for delegating"},
        {"one_action_at_most",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: api}}], delegate: {name: "
            "x}}]\n"),
         "VirtualService prod/api: spec.http[0]: only one of route, redirect, directResponse or "
         "delegate may be set"},
        {"one_action_required", vs("  hosts: [api]\n  http: [{match: [{uri: {prefix: /}}]}]\n"),
         "VirtualService prod/api: spec.http[0]: one of route, redirect, directResponse or "
         "delegate is required"},
        {"routes_required", vs("  hosts: [api]\n"),
         "VirtualService prod/api: spec: http, tcp or tls must be provided in virtual service"},
        {"mesh_wildcard_host", vs("  hosts: ['*']\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.hosts[0]: wildcard host * is not allowed for virtual "
         "services bound to the mesh gateway"},
        {"invalid_host", vs("  hosts: [bad_host.com]\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.hosts[0]: invalid host \"bad_host.com\""},
        {"duplicate_host", vs("  hosts: [a.com, a.com]\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.hosts[1]: duplicate hosts in virtual service: a.com"},
        {"gateway_name", vs("  hosts: [api]\n  gateways: [Bad_NS/edge]\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.gateways[0]: invalid value for namespace: \"Bad_NS\""},
        {"string_match_one_of",
         vs("  hosts: [api]\n  http: [{match: [{uri: {exact: /a, prefix: /b}}], route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].uri: only one of exact, prefix or regex "
         "may be set"},
        {"regex_syntax",
         vs("  hosts: [api]\n  http: [{match: [{headers: {x-id: {regex: '(a'}}}], route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].headers.x-id.regex: invalid RE2 regex: "
         "missing ): (a; Istio uses RE2 style regex-based match "
         "(https://github.com/google/re2/wiki/Syntax)"},
        {"regex_length",
         vs("  hosts: [api]\n  http: [{match: [{uri: {regex: '" + std::string(1025, 'a') +
            "'}}], route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].uri.regex: regex is too large, max "
         "length allowed is 1024"},
        {"regex_repetition",
         vs("  hosts: [api]\n  http: [{match: [{uri: {regex: '((a{100}){100}){100}'}}], route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].uri.regex: invalid RE2 regex: invalid "
         "repetition size: {100}; Istio uses RE2 style regex-based match "
         "(https://github.com/google/re2/wiki/Syntax)"},
        {"regex_memory",
         // Short enough for the 1024-character cap, too big a program for the memory cap.
         vs("  hosts: [api]\n  http: [{match: [{uri: {regex: '" + repeat("(\\pL){1000}", 60) +
            "'}}], route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].uri.regex: invalid RE2 regex: pattern "
         "too large - compile failed; Istio uses RE2 style regex-based match "
         "(https://github.com/google/re2/wiki/Syntax)"},
        {"header_name",
         vs("  hosts: [api]\n  http: [{match: [{headers: {'x id': {exact: a}}}], route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].headers.x id: header name x id is not "
         "a valid header name"},
        {"match_port",
         vs("  hosts: [api]\n  http: [{match: [{port: 70000}], route: [{destination: {host: "
            "api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].port: port number 70000 must be "
         "between 1 and 65535"},
        {"match_source_namespace",
         vs("  hosts: [api]\n  http: [{match: [{sourceNamespace: Bad.NS}], route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].match[0].sourceNamespace: sourceNamespace match "
         "Bad.NS is invalid"},
        {"destination_port",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: api, port: {number: 0}}}]}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].destination.port.number: port number 0 "
         "must be between 1 and 65535"},
        {"destination_host_required",
         vs("  hosts: [api]\n  http: [{route: [{destination: {subset: v1}}]}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].destination.host: destination host is "
         "required"},
        {"destination_host_star",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: '*'}}]}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].destination.host: invalid destination "
         "host *"},
        {"destination_subset_name",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: api, subset: V_1}}]}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].destination.subset: subset name is "
         "invalid: V_1"},
        {"abort_status",
         vs("  hosts: [api]\n  http: [{fault: {abort: {httpStatus: 600, percentage: {value: "
            "10}}}, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.abort.httpStatus: HTTP status 600 is not in "
         "range 200-599"},
        {"abort_percentage",
         vs("  hosts: [api]\n  http: [{fault: {abort: {httpStatus: 503, percentage: {value: "
            "150}}}, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.abort.percentage.value: must be between 0 "
         "and 100"},
        {"percentage_resolution",
         vs("  hosts: [api]\n  http: [{fault: {abort: {httpStatus: 503, percentage: {value: "
            "0.00001}}}, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.abort.percentage.value: percentage must "
         "be 0 or between 0.0001 and 100"},
        {"delay_percent_deprecated",
         vs("  hosts: [api]\n  http: [{fault: {delay: {fixedDelay: 1s, percent: 200}}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.delay.percentage.value: must be between 0 "
         "and 100"},
        {"delay_fixed_required",
         vs("  hosts: [api]\n  http: [{fault: {delay: {percentage: {value: 1}}}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.delay: fixedDelay is required"},
        {"delay_duration",
         vs("  hosts: [api]\n  http: [{fault: {delay: {fixedDelay: 100us}}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.delay.fixedDelay: duration must be at "
         "least 1ms"},
        {"fault_empty",
         vs("  hosts: [api]\n  http: [{fault: {}, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault: HTTP fault injection must have an abort "
         "and/or a delay"},
        {"abort_grpc_status",
         vs("  hosts: [api]\n  http: [{fault: {abort: {grpcStatus: NOPE}}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.abort.grpcStatus: gRPC status \"NOPE\" is "
         "not supported; use a name such as NOT_FOUND or UNAVAILABLE"},
        {"abort_one_status",
         vs("  hosts: [api]\n  http: [{fault: {abort: {grpcStatus: INTERNAL, httpStatus: 500}}, "
            "route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.abort: only one of httpStatus or "
         "grpcStatus may be set"},
        {"abort_no_status",
         vs("  hosts: [api]\n  http: [{fault: {abort: {percentage: {value: 1}}}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].fault.abort: abort configured, but error type "
         "not set",
         severity::warning},
        {"redirect_code",
         vs("  hosts: [api]\n  http: [{redirect: {uri: /x, redirectCode: 305}}]\n"),
         "VirtualService prod/api: spec.http[0].redirect.redirectCode: 305 is not a valid "
         "redirect code, must be one of 301, 302, 303, 307 or 308"},
        {"redirect_target", vs("  hosts: [api]\n  http: [{redirect: {redirectCode: 302}}]\n"),
         "VirtualService prod/api: spec.http[0].redirect: redirect must specify URI, authority, "
         "scheme, or port"},
        {"redirect_scheme", vs("  hosts: [api]\n  http: [{redirect: {scheme: ftp}}]\n"),
         "VirtualService prod/api: spec.http[0].redirect.scheme: invalid redirect scheme, must "
         "be \"http\" or \"https\""},
        {"redirect_uri_and_prefix",
         vs("  hosts: [api]\n  http: [{redirect: {uri: /a, prefixRewrite: /b}}]\n"),
         "VirtualService prod/api: spec.http[0].redirect: only one of uri or prefixRewrite may "
         "be set"},
        {"redirect_port_and_derive",
         vs("  hosts: [api]\n  http: [{redirect: {port: 8443, derivePort: FROM_REQUEST_PORT}}]\n"),
         "VirtualService prod/api: spec.http[0].redirect: only one of port or derivePort may be "
         "set"},
        {"redirect_port", vs("  hosts: [api]\n  http: [{redirect: {port: 70000}}]\n"),
         "VirtualService prod/api: spec.http[0].redirect.port: port number 70000 must be "
         "between 1 and 65535"},
        {"redirect_and_fault",
         vs("  hosts: [api]\n  http: [{redirect: {uri: /a}, fault: {abort: {httpStatus: "
            "500}}}]\n"),
         "VirtualService prod/api: spec.http[0]: HTTP route cannot contain both fault and "
         "redirect"},
        {"redirect_and_rewrite",
         vs("  hosts: [api]\n  http: [{redirect: {uri: /a}, rewrite: {uri: /b}}]\n"),
         "VirtualService prod/api: spec.http[0]: HTTP route rule cannot contain both rewrite "
         "and redirect"},
        {"direct_response_status",
         vs("  hosts: [api]\n  http: [{directResponse: {status: 700}}]\n"),
         "VirtualService prod/api: spec.http[0].directResponse.status: HTTP status 700 is not in "
         "range 200-599"},
        {"direct_response_body_size",
         vs("  hosts: [api]\n  http: [{directResponse: {status: 200, body: {string: '" +
            std::string(1024 * 1024 + 1, 'x') + "'}}}]\n"),
         "VirtualService prod/api: spec.http[0].directResponse.body: large direct_responses may "
         "impact control plane performance, must be less than 1MB"},
        {"timeout_min",
         vs("  hosts: [api]\n  http: [{timeout: 0s, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].timeout: duration must be at least 1ms"},
        {"timeout_precision",
         vs("  hosts: [api]\n  http: [{timeout: 1500us, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].timeout: only durations to ms precision are "
         "supported"},
        {"per_try_timeout",
         vs("  hosts: [api]\n  http: [{retries: {attempts: 2, perTryTimeout: 500us}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].retries.perTryTimeout: duration must be at "
         "least 1ms"},
        {"retries_disabled",
         vs("  hosts: [api]\n  http: [{retries: {attempts: 0, retryOn: 5xx}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].retries: http retry policy configured when "
         "attempts are set to 0 (disabled)"},
        {"retry_on",
         vs("  hosts: [api]\n  http: [{retries: {attempts: 2, retryOn: '5xx,bogus,503'}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].retries.retryOn: \"bogus\" is not a valid "
         "retryOn policy"},
        {"mirror_percentage",
         vs("  hosts: [api]\n  http: [{mirror: {host: api}, mirrorPercentage: {value: 101}, "
            "route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].mirrorPercentage.value: must be between 0 and "
         "100"},
        {"mirrors_percentage",
         vs("  hosts: [api]\n  http: [{mirrors: [{destination: {host: api}, percentage: {value: "
            "-1}}], route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].mirrors[0].percentage.value: must be between 0 "
         "and 100"},
        {"mirror_host",
         vs("  hosts: [api]\n  http: [{mirror: {subset: v1}, route: [{destination: {host: "
            "api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].mirror.host: destination host is required"},
        {"rewrite_one_uri",
         vs("  hosts: [api]\n  http: [{rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: "
            "b}}, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].rewrite: rewrite may only contain one of uri or "
         "uriRegexRewrite"},
        {"rewrite_empty",
         vs("  hosts: [api]\n  http: [{rewrite: {}, route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].rewrite: rewrite must specify at least one of "
         "uri, uriRegexRewrite, or authority"},
        {"rewrite_regex_pair",
         vs("  hosts: [api]\n  http: [{rewrite: {uriRegexRewrite: {match: a}}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].rewrite.uriRegexRewrite: uriRegexRewrite "
         "requires both rewrite and match fields to be specified"},
        {"rewrite_regex_syntax",
         vs("  hosts: [api]\n  http: [{rewrite: {uriRegexRewrite: {match: '[', rewrite: x}}, "
            "route: [{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].rewrite.uriRegexRewrite.match: invalid RE2 "
         "regex: missing ]: [; Istio uses RE2 style regex-based match "
         "(https://github.com/google/re2/wiki/Syntax)"},
        {"cors_method",
         vs("  hosts: [api]\n  http: [{corsPolicy: {allowMethods: [GET, FETCH]}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].corsPolicy.allowMethods[1]: \"FETCH\" is not a "
         "supported HTTP method"},
        {"cors_origin",
         vs("  hosts: [api]\n  http: [{corsPolicy: {allowOrigins: [{exact: ''}]}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].corsPolicy.allowOrigins[0]: '' is not a valid "
         "match type for CORS allow origins"},
        {"cors_header",
         vs("  hosts: [api]\n  http: [{corsPolicy: {allowHeaders: ['x y']}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].corsPolicy.allowHeaders[0]: header name x y is "
         "not a valid header name"},
        {"cors_max_age",
         vs("  hosts: [api]\n  http: [{corsPolicy: {maxAge: 1500ms}, route: [{destination: "
            "{host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].corsPolicy.maxAge: max_age duration is accurate "
         "only to seconds precision"},
        {"cors_unmatched_preflights",
         vs("  hosts: [api]\n  http: [{corsPolicy: {unmatchedPreflights: DROP}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].corsPolicy.unmatchedPreflights: unknown value "
         "\"DROP\"; expected FORWARD or IGNORE"},
        {"header_ops_host",
         vs("  hosts: [api]\n  http: [{headers: {response: {remove: [host]}}, route: "
            "[{destination: {host: api}}]}]\n"),
         "VirtualService prod/api: spec.http[0].headers.response.remove[0]: invalid header "
         "\"host\": cannot set Host header"},
        {"header_ops_pseudo",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: api}, headers: {request: "
            "{set: {':path': /x}}}}]}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].headers.request.set.:path: invalid "
         "header \":path\": header cannot have \":\" prefix"},
        {"tls_match_required",
         vs("  hosts: [a.com]\n  tls: [{route: [{destination: {host: a.com}}]}]\n"),
         "VirtualService prod/api: spec.tls[0].match: TLS route must have at least one match "
         "condition"},
        {"tls_sni_required",
         vs("  hosts: [a.com]\n  tls: [{match: [{port: 443}], route: [{destination: {host: "
            "a.com}}]}]\n"),
         "VirtualService prod/api: spec.tls[0].match[0].sniHosts: TLS match must have at least "
         "one SNI host"},
        {"tls_sni_within_hosts",
         vs("  hosts: ['*.a.com']\n  tls: [{match: [{sniHosts: [b.com]}], route: "
            "[{destination: {host: a.com}}]}]\n"),
         "VirtualService prod/api: spec.tls[0].match[0].sniHosts[0]: SNI host \"b.com\" is not a "
         "compatible subset of any of the virtual service hosts: [*.a.com]"},
        {"tls_route_required", vs("  hosts: [a.com]\n  tls: [{match: [{sniHosts: [a.com]}]}]\n"),
         "VirtualService prod/api: spec.tls[0].route: TLS route is required"},
        {"tcp_route_required", vs("  hosts: [a.com]\n  tcp: [{match: [{port: 5432}]}]\n"),
         "VirtualService prod/api: spec.tcp[0].route: TCP route is required"},
        {"tcp_subnet",
         vs("  hosts: [a.com]\n  tcp: [{match: [{destinationSubnets: [10.0.0.0/33]}], route: "
            "[{destination: {host: a.com}}]}]\n"),
         "VirtualService prod/api: spec.tcp[0].match[0].destinationSubnets[0]: \"10.0.0.0/33\" "
         "is not a valid IP address or CIDR"},
        {"export_to_value", vs("  hosts: [api]\n  exportTo: [Bad]\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.exportTo[0]: invalid exportTo value \"Bad\""},
        {"export_to_duplicate",
         vs("  hosts: [api]\n  exportTo: [., prod]\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.exportTo[1]: duplicate entries in exportTo for entry "
         "prod"},
        {"export_to_public",
         vs("  hosts: [api]\n  exportTo: ['*', other]\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.exportTo: cannot have both public (*) and non-public "
         "exportTo values for a resource"},
    };
}

std::vector<rule_case> destination_rule_cases()
{
    const std::string lb = "  host: api\n  trafficPolicy:\n    loadBalancer:\n";
    const std::string loc = lb + "      localityLbSetting:\n";
    return {
        {"host_required", dr("  subsets: [{name: v1}]\n"),
         "DestinationRule prod/api: spec.host: host is required"},
        {"host_syntax", dr("  host: bad_host.com\n"),
         "DestinationRule prod/api: spec.host: invalid host \"bad_host.com\""},
        {"policy_empty", dr("  host: api\n  trafficPolicy: {}\n"),
         "DestinationRule prod/api: spec.trafficPolicy: traffic policy must have at least one "
         "field"},
        {"tunnel_and_proxy_protocol",
         dr("  host: api\n  trafficPolicy: {tunnel: {targetHost: a.com, targetPort: 8080}, "
            "proxyProtocol: {version: V2}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy: tunnel and proxyProtocol must not be set "
         "together"},
        {"tunnel_protocol",
         dr("  host: api\n  trafficPolicy: {tunnel: {protocol: GET, targetHost: a.com, "
            "targetPort: 8080}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.tunnel.protocol: tunnel protocol must be "
         "\"CONNECT\" or \"POST\""},
        {"tunnel_target_host",
         dr("  host: api\n  trafficPolicy: {tunnel: {targetHost: 'no way', targetPort: 80}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.tunnel.targetHost: tunnel target host "
         "must be valid FQDN or IP address"},
        {"tunnel_target_port", dr("  host: api\n  trafficPolicy: {tunnel: {targetHost: a.com}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.tunnel.targetPort: port number 0 must be "
         "between 1 and 65535"},
        {"distribute_sum",
         dr(loc + "        distribute: [{from: us-east/*, to: {us-east/*: 60, us-west/*: "
                  "30}}]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: total locality "
         "weight 90 != 100"},
        {"distribute_weight",
         dr(loc + "        distribute: [{from: us-east/*, to: {us-east/*: 100, us-west/*: "
                  "0}}]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to.us-west/*: locality "
         "weight must be in range [1, 100]"},
        {"distribute_locality_wildcard",
         dr(loc + "        distribute: [{from: 'us-*/zone', to: {us-east: 100}}]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from: locality "
         "us-*/zone wildcard '*' number can not exceed 1 and must be in the end"},
        {"distribute_locality_empty",
         dr(loc + "        distribute: [{from: us-east//a, to: {us-east: 100}}]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from: locality "
         "us-east//a must not contain empty region/zone/subzone info"},
        {"distribute_and_failover",
         dr(loc + "        distribute: [{from: a, to: {a: 100}}]\n        failover: [{from: a, "
                  "to: b}]\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer.localityLbSetting: can not "
         "simultaneously specify 'distribute' and 'failover'"},
        {"failover_same_region", dr(loc + "        failover: [{from: us-east, to: us-east}]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover "
         "settings must specify different regions"},
        {"failover_region_only", dr(loc + "        failover: [{from: us-east/a, to: us-west}]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover "
         "only specify region"},
        {"failover_wildcard", dr(loc + "        failover: [{from: 'us-*', to: us-west}]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: locality lb failover "
         "region should not contain '*' wildcard"},
        {"failover_priority_topology",
         dr(loc + "        failover: [{from: us-east, to: us-west}]\n        failoverPriority: "
                  "[topology.kubernetes.io/region]\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]: can not "
         "simultaneously set 'failover' and topology label 'topology.kubernetes.io/region' in "
         "'failoverPriority'"},
        {"failover_priority_empty", dr(loc + "        failoverPriority: ['']\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]: label must not "
         "be empty"},
        {"failover_needs_outlier", dr(loc + "        failover: [{from: us-east, to: us-west}]\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer.localityLbSetting: outlier "
         "detection policy must be provided for failover",
         severity::warning},
        {"maglev_prime",
         dr(lb + "      consistentHash: {useSourceIp: true, maglev: {tableSize: 65536}}\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be a "
         "prime number for maglev"},
        {"maglev_max",
         dr(lb + "      consistentHash: {useSourceIp: true, maglev: {tableSize: 5000011}}\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be "
         "less than 5000011 for maglev"},
        {"maglev_set", dr(lb + "      consistentHash: {useSourceIp: true, maglev: {}}\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: tableSize must be set "
         "for maglev"},
        {"hash_key_required", dr(lb + "      consistentHash: {ringHash: {minimumRingSize: 64}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer.consistentHash: exactly one "
         "of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName must be set"},
        {"hash_key_one",
         dr(lb + "      consistentHash: {httpHeaderName: x, httpQueryParameterName: y}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer.consistentHash: only one of "
         "httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set"},
        {"hash_algorithm_one",
         dr(lb + "      consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}, "
                 "ringHash: {}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer.consistentHash: only one of "
         "minimumRingSize, ringHash or maglev may be set"},
        {"hash_cookie_name", dr(lb + "      consistentHash: {httpCookie: {ttl: 1s}}\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name: name required for "
         "httpCookie"},
        {"simple_and_hash",
         dr(lb + "      simple: RANDOM\n      consistentHash: {useSourceIp: true}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer: only one of simple or "
         "consistentHash may be set"},
        {"warmup_minimum_percent", dr(lb + "      warmup: {duration: 1s, minimumPercent: 150}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer.warmup.minimumPercent: must "
         "be between 0 and 100"},
        {"warmup_aggression", dr(lb + "      warmup: {duration: 1s, aggression: 0.5}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.loadBalancer.warmup.aggression: must be "
         "at least 1.0"},
        {"outlier_max_ejection",
         dr("  host: api\n  trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.outlierDetection.maxEjectionPercent: must "
         "be between 0 and 100"},
        {"outlier_min_health",
         dr("  host: api\n  trafficPolicy: {outlierDetection: {minHealthPercent: -1}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.outlierDetection.minHealthPercent: must "
         "be between 0 and 100"},
        {"outlier_interval",
         dr("  host: api\n  trafficPolicy: {outlierDetection: {interval: 0s}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.outlierDetection.interval: duration must "
         "be at least 1ms"},
        {"outlier_local_origin",
         dr("  host: api\n  trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: "
            "3}}\n"),
         "DestinationRule prod/api: "
         "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures: outlier detection "
         "consecutive local origin failures is specified, but split external local origin "
         "errors is set to false"},
        {"pool_empty", dr("  host: api\n  trafficPolicy: {connectionPool: {}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.connectionPool: connection pool must have "
         "at least one field"},
        {"pool_connect_timeout",
         dr("  host: api\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 100us}}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.connectionPool.tcp.connectTimeout: "
         "duration must be at least 1ms"},
        {"pool_upgrade_client_protocol",
         dr("  host: api\n  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, "
            "useClientProtocol: true}}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.connectionPool.http: use client protocol "
         "must not be true when h2UpgradePolicy is UPGRADE"},
        {"client_tls_mutual_cert",
         dr("  host: api\n  trafficPolicy: {tls: {mode: MUTUAL, privateKey: /k}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.tls.clientCertificate: client certificate "
         "required for mutual tls"},
        {"client_tls_mutual_key",
         dr("  host: api\n  trafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.tls.privateKey: private key required for "
         "mutual tls"},
        {"client_tls_credential",
         dr("  host: api\n  trafficPolicy: {tls: {mode: SIMPLE, credentialName: c, "
            "caCertificates: /ca}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.tls: cannot specify client certificates "
         "or CA certificate or CA CRL if credentialName is set"},
        {"port_level_port",
         dr("  host: api\n  trafficPolicy: {portLevelSettings: [{tls: {mode: SIMPLE}}]}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.portLevelSettings[0].port.number: port "
         "number 0 must be between 1 and 65535"},
        {"port_level_empty",
         dr("  host: api\n  trafficPolicy: {portLevelSettings: [{port: {number: 80}}]}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.portLevelSettings[0]: port traffic policy "
         "must have at least one field"},
        {"retry_budget_percent",
         dr("  host: api\n  trafficPolicy: {retryBudget: {percent: 150}}\n"),
         "DestinationRule prod/api: spec.trafficPolicy.retryBudget.percent: must be between 0 "
         "and 100"},
        {"subset_name_empty", dr("  host: api\n  subsets: [{labels: {a: b}}]\n"),
         "DestinationRule prod/api: spec.subsets[0].name: subset name cannot be empty"},
        {"subset_name_invalid", dr("  host: api\n  subsets: [{name: V1}]\n"),
         "DestinationRule prod/api: spec.subsets[0].name: subset name is invalid: V1"},
        {"subset_duplicate", dr("  host: api\n  subsets: [{name: v1}, {name: v1}]\n"),
         "DestinationRule prod/api: spec.subsets[1].name: duplicate subset names: v1"},
        {"subset_policy", dr("  host: api\n  subsets: [{name: v1, trafficPolicy: {}}]\n"),
         "DestinationRule prod/api: spec.subsets[0].trafficPolicy: traffic policy must have at "
         "least one field"},
    };
}

std::vector<rule_case> gateway_cases()
{
    const std::string http = "port: {number: 80, name: http, protocol: HTTP}";
    const std::string https = "port: {number: 443, name: https, protocol: HTTPS}";
    return {
        {"servers_required", gw("  selector: {istio: ingressgateway}\n"),
         "Gateway prod/api: spec.servers: gateway must have at least one server"},
        {"hosts_required", gw("  servers: [{" + http + "}]\n"),
         "Gateway prod/api: spec.servers[0].hosts: server config must contain at least one host"},
        {"port_number", gw("  servers: [{port: {name: http, protocol: HTTP}, hosts: ['*']}]\n"),
         "Gateway prod/api: spec.servers[0].port.number: port number 0 must be between 1 and "
         "65535"},
        {"port_protocol", gw("  servers: [{port: {number: 80, name: x}, hosts: ['*']}]\n"),
         "Gateway prod/api: spec.servers[0].port.protocol: invalid protocol \"\", supported "
         "protocols are HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP, TLS"},
        {"port_name", gw("  servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]\n"),
         "Gateway prod/api: spec.servers[0].port.name: port name must be set"},
        {"port_name_unique",
         gw("  servers: [{" + http +
            ", hosts: ['*']}, {port: {number: 81, name: http, protocol: "
            "HTTP}, hosts: ['*']}]\n"),
         "Gateway prod/api: spec.servers[1].port.name: port names in servers must be unique: "
         "duplicate name http"},
        {"target_port",
         gw("  servers: [{port: {number: 80, name: h, protocol: HTTP, targetPort: 8080}, hosts: "
            "['*']}]\n"),
         "Gateway prod/api: spec.servers[0].port.targetPort: targetPort has no impact on "
         "Gateways"},
        {"bind", gw("  servers: [{" + http + ", bind: nowhere, hosts: ['*']}]\n"),
         "Gateway prod/api: spec.servers[0].bind: nowhere is not a valid IP"},
        {"short_host", gw("  servers: [{" + http + ", hosts: [foo]}]\n"),
         "Gateway prod/api: spec.servers[0].hosts[0]: short names (non FQDN) are not allowed: "
         "\"foo\""},
        {"partial_wildcard", gw("  servers: [{" + http + ", hosts: ['prod/*foo.example.com']}]\n"),
         "Gateway prod/api: spec.servers[0].hosts[0]: partial wildcard \"*foo.example.com\" not "
         "allowed"},
        {"host_namespace", gw("  servers: [{" + http + ", hosts: ['Bad/a.example.com']}]\n"),
         "Gateway prod/api: spec.servers[0].hosts[0]: invalid namespace value \"Bad\" in "
         "\"Bad/a.example.com\""},
        {"https_needs_tls", gw("  servers: [{" + https + ", hosts: ['*']}]\n"),
         "Gateway prod/api: spec.servers[0].tls: server must have TLS settings for HTTPS/TLS "
         "protocols"},
        {"simple_needs_cert",
         gw("  servers: [{" + https + ", hosts: ['*'], tls: {mode: SIMPLE, privateKey: /k}}]\n"),
         "Gateway prod/api: spec.servers[0].tls.serverCertificate: SIMPLE TLS requires a server "
         "certificate"},
        {"simple_needs_key",
         gw("  servers: [{" + https +
            ", hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /c}}]\n"),
         "Gateway prod/api: spec.servers[0].tls.privateKey: SIMPLE TLS requires a private key"},
        {"mutual_needs_ca",
         gw("  servers: [{" + https +
            ", hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}}]\n"),
         "Gateway prod/api: spec.servers[0].tls.caCertificates: MUTUAL TLS requires a client CA "
         "bundle"},
        {"istio_mutual_no_credential",
         gw("  servers: [{" + https +
            ", hosts: ['*'], tls: {mode: ISTIO_MUTUAL, credentialName: c}}]\n"),
         "Gateway prod/api: spec.servers[0].tls.credentialName: ISTIO_MUTUAL TLS cannot have "
         "associated credentialName"},
        {"simple_no_crl",
         gw("  servers: [{" + https +
            ", hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCrl: "
            "/crl}}]\n"),
         "Gateway prod/api: spec.servers[0].tls.caCrl: CRL is not supported with SIMPLE TLS"},
        {"http_no_tls",
         gw("  servers: [{" + http + ", hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}}]\n"),
         "Gateway prod/api: spec.servers[0].tls: server cannot have TLS settings for plain text "
         "HTTP ports"},
        {"tcp_no_tls",
         gw("  servers: [{port: {number: 9000, name: tcp, protocol: TCP}, hosts: ['*'], tls: "
            "{httpsRedirect: true}}]\n"),
         "Gateway prod/api: spec.servers[0].tls: server cannot have TLS settings for non "
         "HTTPS/TLS ports"},
        {"https_redirect_http_only",
         gw("  servers: [{" + https +
            ", hosts: ['*'], tls: {httpsRedirect: true, mode: SIMPLE, credentialName: c}}]\n"),
         "Gateway prod/api: spec.servers[0].tls.httpsRedirect: tls.httpsRedirect should only be "
         "used with http servers",
         severity::warning},
    };
}

std::vector<rule_case> service_entry_cases()
{
    const std::string ports = "  ports: [{number: 443, name: https, protocol: TLS}]\n";
    std::string many = "  hosts: [";
    for (int i = 0; i < 257; ++i) {
        many += (i ? ", h" : "h") + std::to_string(i) + ".example.com";
    }
    many += "]\n";
    return {
        {"hosts_required", se(ports),
         "ServiceEntry prod/api: spec.hosts: service entry must have at least one host"},
        {"hosts_max", se(many + ports),
         "ServiceEntry prod/api: spec.hosts: service entry must have at most 256 hosts"},
        {"host_star", se("  hosts: ['*']\n" + ports),
         "ServiceEntry prod/api: spec.hosts[0]: invalid host *"},
        {"static_needs_endpoints",
         se("  hosts: [a.example.com]\n" + ports + "  resolution: STATIC\n"),
         "ServiceEntry prod/api: spec.endpoints: endpoints or workloadSelector must be provided "
         "for resolution type STATIC"},
        {"static_endpoint_ip",
         se("  hosts: [a.example.com]\n" + ports +
            "  resolution: STATIC\n  endpoints: [{address: b.example.com}]\n"),
         "ServiceEntry prod/api: spec.endpoints[0].address: endpoint address \"b.example.com\" is "
         "not a valid IP address"},
        {"dns_endpoint_address",
         se("  hosts: [a.example.com]\n" + ports +
            "  resolution: DNS\n  endpoints: [{address: 'not an address'}]\n"),
         "ServiceEntry prod/api: spec.endpoints[0].address: endpoint address \"not an address\" "
         "is not a valid FQDN or an IP address"},
        {"dns_fqdn_hosts", se("  hosts: ['*.example.com']\n" + ports + "  resolution: DNS\n"),
         "ServiceEntry prod/api: spec.hosts[0]: hosts must be FQDN if no endpoints are provided "
         "for resolution mode DNS"},
        {"dns_round_robin_one",
         se("  hosts: [a.example.com]\n" + ports +
            "  resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: b.com}, {address: c.com}]\n"),
         "ServiceEntry prod/api: spec.endpoints: there must only be 0 or 1 endpoint for "
         "resolution mode DNS_ROUND_ROBIN"},
        {"none_no_endpoints",
         se("  hosts: [a.example.com]\n" + ports + "  endpoints: [{address: 1.2.3.4}]\n"),
         "ServiceEntry prod/api: spec.endpoints: no endpoints should be provided for resolution "
         "type none"},
        {"selector_or_endpoints",
         se("  hosts: [a.example.com]\n" + ports +
            "  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n  endpoints: "
            "[{address: 1.2.3.4}]\n"),
         "ServiceEntry prod/api: spec: only one of WorkloadSelector or Endpoints is allowed in "
         "Service Entry"},
        {"endpoint_port_defined",
         se("  hosts: [a.example.com]\n" + ports +
            "  resolution: STATIC\n  endpoints: [{address: 1.2.3.4, ports: {http: 8080}}]\n"),
         "ServiceEntry prod/api: spec.endpoints[0].ports.http: endpoint port 8080 is not "
         "defined by the service entry"},
        {"port_range",
         se("  hosts: [a.example.com]\n  ports: [{number: 70000, name: p, protocol: TLS}]\n"),
         "ServiceEntry prod/api: spec.ports[0].number: port number 70000 must be between 1 and "
         "65535"},
        {"port_name_unique",
         se("  hosts: [a.example.com]\n  ports: [{number: 1, name: p, protocol: TLS}, {number: "
            "2, name: p, protocol: TLS}]\n"),
         "ServiceEntry prod/api: spec.ports[1].name: service entry port name \"p\" already "
         "defined"},
        {"port_number_unique",
         se("  hosts: [a.example.com]\n  ports: [{number: 1, name: p, protocol: TLS}, {number: "
            "1, name: q, protocol: TLS}]\n"),
         "ServiceEntry prod/api: spec.ports[1].number: service entry port 1 already defined"},
        {"port_protocol",
         se("  hosts: [a.example.com]\n  ports: [{number: 1, name: p, protocol: FTP}]\n"),
         "ServiceEntry prod/api: spec.ports[0].protocol: unsupported protocol: FTP"},
        {"cidr_resolution",
         se("  hosts: [a.example.com]\n" + ports +
            "  addresses: [10.0.0.0/8]\n  resolution: DNS\n"),
         "ServiceEntry prod/api: spec.addresses: CIDR addresses are allowed only for NONE/STATIC "
         "resolution types"},
        {"address_syntax", se("  hosts: [a.example.com]\n" + ports + "  addresses: [10.0.0]\n"),
         "ServiceEntry prod/api: spec.addresses[0]: \"10.0.0\" is not a valid IP address or CIDR"},
        {"multiple_hosts_tcp",
         se("  hosts: [a.example.com, b.example.com]\n  ports: [{number: 5432, name: pg, "
            "protocol: TCP}]\n  resolution: DNS\n"),
         "ServiceEntry prod/api: spec.ports: multiple hosts provided with non-HTTP, non-TLS "
         "ports"},
        {"traffic_distribution_annotation",
         se("  hosts: [a.example.com]\n" + ports,
            "  annotations: {networking.istio.io/traffic-distribution: PreferPlanet}\n"),
         "ServiceEntry prod/api: metadata.annotations[networking.istio.io/traffic-distribution]: "
         "unknown traffic distribution \"PreferPlanet\"; expected one of PreferClose, "
         "PreferSameZone, PreferNetwork, PreferRegion, PreferSameNode, Any"},
        {"health_check_annotation",
         se("  hosts: [a.example.com]\n" + ports,
            "  annotations: {sluice.io/health-check: 'udp,interval=2s'}\n"),
         "ServiceEntry prod/api: metadata.annotations[sluice.io/health-check]: unknown health "
         "check kind \"udp\"; expected \"tcp\" or \"http:<path>\""},
        {"export_to_none_alone",
         se("  hosts: [a.example.com]\n" + ports + "  exportTo: ['~', prod]\n"),
         "ServiceEntry prod/api: spec.exportTo: cannot export service entry to no one (~) and "
         "someone"},
    };
}

std::vector<rule_case> kubernetes_cases()
{
    const auto svc = [](const std::string& spec, const std::string& extra = "") {
        return obj("Service", spec, "v1", "api", extra);
    };
    return {
        {"service_traffic_distribution",
         svc("  ports: [{port: 80}]\n  trafficDistribution: PreferNetwork\n"),
         "Service prod/api: spec.trafficDistribution: unsupported value \"PreferNetwork\": must "
         "be PreferClose or PreferSameZone (the other modes are set with the "
         "networking.istio.io/traffic-distribution annotation)"},
        {"service_annotation",
         svc("  ports: [{port: 80}]\n",
             "  annotations: {networking.istio.io/traffic-distribution: preferclose}\n"),
         "Service prod/api: metadata.annotations[networking.istio.io/traffic-distribution]: "
         "unknown traffic distribution \"preferclose\"; expected one of PreferClose, "
         "PreferSameZone, PreferNetwork, PreferRegion, PreferSameNode, Any"},
        {"service_health_check_annotation",
         svc("  ports: [{port: 80}]\n",
             "  annotations: {sluice.io/health-check: 'http:/healthz,interval=1s,timeout=2s'}\n"),
         "Service prod/api: metadata.annotations[sluice.io/health-check]: health check timeout "
         "2s must not exceed the interval 1s; expected timeout <= interval"},
        {"service_internal_traffic_policy",
         svc("  ports: [{port: 80}]\n  internalTrafficPolicy: Node\n"),
         "Service prod/api: spec.internalTrafficPolicy: unsupported value \"Node\": must be "
         "Cluster or Local"},
        {"service_port", svc("  ports: [{port: 0}]\n"),
         "Service prod/api: spec.ports[0].port: port number 0 must be between 1 and 65535"},
        {"endpoint_slice_address_type",
         "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: api, "
         "namespace: prod}\naddressType: IPv5\n",
         "EndpointSlice prod/api: addressType: unsupported value \"IPv5\": must be IPv4, IPv6 or "
         "FQDN"},
        {"workload_entry_address", obj("WorkloadEntry", "  ports: {http: 80}\n"),
         "WorkloadEntry prod/api: spec.address: address is required"},
        {"workload_entry_address_syntax", obj("WorkloadEntry", "  address: 'a b'\n"),
         "WorkloadEntry prod/api: spec.address: endpoint address \"a b\" is not a valid FQDN or "
         "an IP address"},
        {"workload_entry_port", obj("WorkloadEntry", "  address: 1.2.3.4\n  ports: {http: 0}\n"),
         "WorkloadEntry prod/api: spec.ports.http: port number 0 must be between 1 and 65535"},
        {"workload_entry_locality",
         obj("WorkloadEntry", "  address: 1.2.3.4\n  locality: a/b/c/d\n"),
         "WorkloadEntry prod/api: spec.locality: locality \"a/b/c/d\" must be "
         "region/zone/subzone"},
    };
}

std::vector<rule_case> cross_object_cases()
{
    return {
        {"undefined_host",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: ratings}}]}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].destination.host: host "
         "\"ratings.prod.svc.cluster.local\" is not defined by any Service or ServiceEntry",
         severity::warning},
        {"undefined_subset",
         vs("  hosts: [api]\n  http: [{route: [{destination: {host: api, subset: v9}}]}]\n") +
             "---\n" + dr("  host: api\n  subsets: [{name: v1}]\n"),
         "VirtualService prod/api: spec.http[0].route[0].destination.subset: subset \"v9\" is not "
         "defined by any DestinationRule for host \"api.prod.svc.cluster.local\"",
         severity::warning},
        {"undefined_gateway",
         vs("  hosts: [api.example.com]\n  gateways: [edge]\n  http: " + k_route + "\n"),
         "VirtualService prod/api: spec.gateways[0]: gateway \"prod/edge\" is not defined by any "
         "Gateway",
         severity::warning},
        {"undefined_delegate",
         vs("  hosts: [api]\n  http: [{delegate: {name: gone, namespace: other}}]\n"),
         "VirtualService prod/api: spec.http[0].delegate: VirtualService \"other/gone\" is not "
         "defined",
         severity::warning},
    };
}

std::string case_name(const testing::TestParamInfo<rule_case>& info)
{
    return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(ValidateVirtualService, ValidateRule,
                         testing::ValuesIn(virtual_service_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(ValidateDestinationRule, ValidateRule,
                         testing::ValuesIn(destination_rule_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(ValidateGateway, ValidateRule, testing::ValuesIn(gateway_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(ValidateServiceEntry, ValidateRule,
                         testing::ValuesIn(service_entry_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(ValidateKubernetes, ValidateRule, testing::ValuesIn(kubernetes_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(ValidateCrossObject, ValidateRule, testing::ValuesIn(cross_object_cases()),
                         case_name);

TEST(ValidateClean, ValidMeshHasNoFindings)
{
    const std::string yaml = R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: prod}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["prod/api.example.com"]
    tls: {mode: SIMPLE, credentialName: api-cert}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: prod}
spec:
  hosts: [api.example.com]
  gateways: [edge]
  http:
  - match: [{uri: {regex: "/v[0-9]+/.*"}, headers: {end-user: {exact: jason}}}]
    route:
    - {destination: {host: reviews, subset: v2}, weight: 80}
    - {destination: {host: reviews, subset: v1}, weight: 20}
    timeout: 3s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "gateway-error,503"}
  - delegate: {name: rest}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: rest, namespace: prod}
spec:
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3}
    loadBalancer:
      consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}
      localityLbSetting:
        failover: [{from: us-east, to: us-west}]
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: prod
  annotations: {networking.istio.io/traffic-distribution: PreferSameNode}
spec:
  ports: [{port: 9080, name: http}]
  trafficDistribution: PreferClose
  internalTrafficPolicy: Local
)";
    const auto f = findings(yaml);
    EXPECT_TRUE(f.empty()) << join(f);
}

TEST(ValidateDiagnostics, CarryFileAndObjectLine)
{
    auto d = decode(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: prod}
spec: {host: b, subsets: [{name: B}]}
)",
                    "mesh.yaml");
    const auto v = validate(d.objects);
    ASSERT_EQ(v.size(), 1U);
    EXPECT_EQ(v[0].to_string(), "error: mesh.yaml:6: DestinationRule prod/b: spec.subsets[0].name: "
                                "subset name is invalid: B");
}

TEST(ValidateCrossObject, HostsOfServicesAndServiceEntriesAreDefined)
{
    const auto f = findings(
        vs("  hosts: [api]\n  http: [{route: [{destination: {host: api}}, {destination: {host: "
           "www.example.com}, weight: 1}, {destination: {host: a.wild.com}, weight: 1}]}]\n") +
        "---\n" + obj("Service", "  ports: [{port: 80}]\n", "v1") + "---\n" +
        se("  hosts: [www.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n") +
        "---\n" +
        obj("ServiceEntry",
            "  hosts: ['*.wild.com']\n  ports: [{number: 80, name: http, protocol: "
            "HTTP}]\n",
            "networking.istio.io/v1", "wild"));
    EXPECT_TRUE(f.empty()) << join(f);
}

// ---------------------------------------------------------------- sluice.io/health-check

TEST(ValidateHealthCheck, ParsesKindsAndOptions)
{
    using kind = health_check_annotation::kind_t;
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    {
        auto hc = parse_health_check("tcp");
        ASSERT_TRUE(hc) << hc.err().message;
        EXPECT_EQ(*hc, health_check_annotation{}); // the defaults: 5s, 1s, 3, 2
        EXPECT_EQ(hc->kind, kind::tcp);
        EXPECT_EQ(hc->interval, seconds(5));
        EXPECT_EQ(hc->timeout, seconds(1));
        EXPECT_EQ(hc->unhealthy_threshold, 3U);
        EXPECT_EQ(hc->healthy_threshold, 2U);
    }
    {
        auto hc = parse_health_check("http:/healthz");
        ASSERT_TRUE(hc) << hc.err().message;
        EXPECT_EQ(hc->kind, kind::http);
        EXPECT_EQ(hc->path, "/healthz");
        EXPECT_EQ(hc->interval, seconds(5));
        EXPECT_EQ(hc->timeout, seconds(1));
    }
    {
        auto hc = parse_health_check("http:/healthz,interval=2s,timeout=500ms,unhealthyThreshold=2,"
                                     "healthyThreshold=1");
        ASSERT_TRUE(hc) << hc.err().message;
        EXPECT_EQ(hc->kind, kind::http);
        EXPECT_EQ(hc->path, "/healthz");
        EXPECT_EQ(hc->interval, seconds(2));
        EXPECT_EQ(hc->timeout, milliseconds(500));
        EXPECT_EQ(hc->unhealthy_threshold, 2U);
        EXPECT_EQ(hc->healthy_threshold, 1U);
    }
    {
        // Options in any order; timeout may equal the interval; the extreme thresholds.
        auto hc = parse_health_check(
            "tcp,healthyThreshold=1000,timeout=1m,unhealthyThreshold=1,interval=1m");
        ASSERT_TRUE(hc) << hc.err().message;
        EXPECT_EQ(hc->kind, kind::tcp);
        EXPECT_EQ(hc->interval, std::chrono::minutes(1));
        EXPECT_EQ(hc->timeout, std::chrono::minutes(1));
        EXPECT_EQ(hc->unhealthy_threshold, 1U);
        EXPECT_EQ(hc->healthy_threshold, 1000U);
    }
    {
        // The root path, a query and percent-encoding; timeout = the default interval.
        auto hc = parse_health_check("http:/ready%2Cz?full=1&x=%20,timeout=5s");
        ASSERT_TRUE(hc) << hc.err().message;
        EXPECT_EQ(hc->path, "/ready%2Cz?full=1&x=%20");
        EXPECT_EQ(hc->timeout, seconds(5));
        auto root = parse_health_check("http:/");
        ASSERT_TRUE(root) << root.err().message;
        EXPECT_EQ(root->path, "/");
    }
    {
        auto hc = parse_health_check("tcp,interval=1.5s,timeout=250ms");
        ASSERT_TRUE(hc) << hc.err().message;
        EXPECT_EQ(hc->interval, milliseconds(1500));
        EXPECT_EQ(hc->timeout, milliseconds(250));
    }
}

struct health_check_error {
    const char* value;
    std::string message;
};

std::vector<health_check_error> health_check_errors()
{
    const std::string kinds = "; expected \"tcp\" or \"http:<path>\"";
    const std::string options = "expected interval=<duration>, timeout=<duration>, "
                                "unhealthyThreshold=<int> or healthyThreshold=<int>";
    const std::string names =
        "; expected one of interval, timeout, unhealthyThreshold, healthyThreshold";
    const std::string bad_path = " must not contain whitespace, control characters or "
                                 "non-ASCII bytes (percent-encode them)";
    const std::string threshold = " must be an integer from 1 to 1000";
    return {
        {"", "empty health check; expected \"tcp\" or \"http:<path>\", optionally followed by "
             "comma-separated key=value options, e.g. \"http:/healthz,interval=5s,timeout=1s\""},
        {"udp", "unknown health check kind \"udp\"" + kinds},
        {"TCP", "unknown health check kind \"TCP\"" + kinds},
        {"https:/healthz", "unknown health check kind \"https\"" + kinds},
        {",interval=1s", "unknown health check kind \"\"" + kinds},
        {"http", "health check kind http needs a path; expected \"http:<path>\", e.g. "
                 "\"http:/healthz\""},
        {"tcp:/x", "health check kind tcp takes no path (got \"tcp:/x\")" + kinds},
        {"http:", "health check path \"\" must start with '/', e.g. \"http:/healthz\""},
        {"http:healthz", "health check path \"healthz\" must start with '/', e.g. "
                         "\"http:/healthz\""},
        {"http:/a b", "health check path \"/a b\"" + bad_path},
        {"http:/a\tb", "health check path \"/a\\x09b\"" + bad_path},
        {"http:/a\x7f", "health check path \"/a\\x7f\"" + bad_path},
        {"http:/caf\xc3\xa9", "health check path \"/caf\\xc3\\xa9\"" + bad_path},
        {"http:/a,b", "health check option \"b\" is not key=value; " + options +
                          " (a path cannot contain ',': write %2C)"},
        {"tcp,=5s", "health check option \"=5s\" is not key=value; " + options +
                        " (a path cannot contain ',': write %2C)"},
        {"tcp,", "empty health check option (a stray ','); " + options},
        {"tcp,,interval=1s", "empty health check option (a stray ','); " + options},
        {"tcp, interval=2s",
         "health check option \" interval=2s\" must not contain whitespace or control "
         "characters"},
        {"tcp,port=80", "unknown health check option \"port\"" + names},
        {"tcp,Interval=2s", "unknown health check option \"Interval\"" + names},
        {"tcp,interval=2s,interval=2s",
         "health check option interval is given twice; expected each option at most once"},
        {"tcp,healthyThreshold=1,healthyThreshold=2",
         "health check option healthyThreshold is given twice; expected each option at most "
         "once"},
        {"tcp,interval=fast",
         "health check interval: invalid duration \"fast\": expected a number; expected a "
         "duration such as 5s or 500ms"},
        {"tcp,timeout=2",
         "health check timeout: invalid duration \"2\": missing unit (ns, us, ms, s, m, h); "
         "expected a duration such as 5s or 500ms"},
        {"tcp,interval=",
         "health check interval: invalid duration \"\": empty; expected a duration such as 5s "
         "or 500ms"},
        {"tcp,interval=-1s",
         "health check interval: invalid duration \"-1s\": must not be negative; expected a "
         "duration such as 5s or 500ms"},
        {"tcp,interval=0s", "health check interval \"0s\" must be greater than 0"},
        {"tcp,timeout=0", "health check timeout \"0\" must be greater than 0"},
        {"http:/healthz,interval=1s,timeout=2s",
         "health check timeout 2s must not exceed the interval 1s; expected timeout <= interval"},
        {"tcp,interval=500ms",
         "health check timeout 1s (the default) must not exceed the interval 500ms; expected "
         "timeout <= interval"},
        {"tcp,timeout=10s",
         "health check timeout 10s must not exceed the interval 5s (the default); expected "
         "timeout <= interval"},
        {"tcp,unhealthyThreshold=0", "health check unhealthyThreshold \"0\"" + threshold},
        {"tcp,healthyThreshold=1001", "health check healthyThreshold \"1001\"" + threshold},
        {"tcp,healthyThreshold=99999", "health check healthyThreshold \"99999\"" + threshold},
        {"tcp,healthyThreshold=", "health check healthyThreshold \"\"" + threshold},
        {"tcp,healthyThreshold=two", "health check healthyThreshold \"two\"" + threshold},
        {"tcp,healthyThreshold=-1", "health check healthyThreshold \"-1\"" + threshold},
        {"tcp,healthyThreshold=+1", "health check healthyThreshold \"+1\"" + threshold},
        {"tcp,healthyThreshold=1.0", "health check healthyThreshold \"1.0\"" + threshold},
    };
}

/// A Service and a ServiceEntry, both valid, both carrying `sluice.io/health-check: value`.
mesh health_check_mesh(const std::string& value)
{
    auto d = decode(obj("Service", "  ports: [{port: 80}]\n", "v1") + "---\n" +
                        se("  hosts: [a.example.com]\n  ports: [{number: 80, name: http, "
                           "protocol: HTTP}]\n"),
                    "t.yaml");
    EXPECT_FALSE(d.has_errors());
    d.objects.services.at(0).meta.annotations["sluice.io/health-check"] = value;
    d.objects.service_entries.at(0).meta.annotations["sluice.io/health-check"] = value;
    return d.objects;
}

std::vector<std::string> validate_findings(const mesh& m)
{
    std::vector<std::string> out;
    for (const auto& x : validate(m)) {
        out.push_back((x.level == severity::error ? "error|" : "other|") + x.object + ": " +
                      x.field + ": " + x.message);
    }
    return out;
}

TEST(ValidateHealthCheck, EachErrorSaysWhatIsWrongAndWhere)
{
    for (const auto& c : health_check_errors()) {
        SCOPED_TRACE(std::string("value \"") + c.value + "\"");
        auto hc = parse_health_check(c.value);
        ASSERT_FALSE(hc);
        EXPECT_EQ(hc.err().message, c.message);
        const std::vector<std::string> want = {
            "error|ServiceEntry prod/api: metadata.annotations[sluice.io/health-check]: " +
                c.message,
            "error|Service prod/api: metadata.annotations[sluice.io/health-check]: " + c.message,
        };
        const auto got = validate_findings(health_check_mesh(c.value));
        EXPECT_EQ(got, want) << join(got);
    }
}

TEST(ValidateHealthCheck, ValidAnnotationsHaveNoFindings)
{
    for (const char* v :
         {"tcp", "http:/", "http:/healthz", "tcp,timeout=5s",
          "http:/healthz,interval=2s,timeout=500ms,unhealthyThreshold=2,healthyThreshold=1"}) {
        SCOPED_TRACE(v);
        const auto got = validate_findings(health_check_mesh(v));
        EXPECT_TRUE(got.empty()) << join(got);
    }
    // Through decode, as a user writes it.
    const auto f = findings(obj(
        "Service", "  ports: [{port: 80}]\n", "v1", "api",
        "  annotations:\n    sluice.io/health-check: "
        "\"http:/healthz,interval=2s,timeout=500ms,unhealthyThreshold=2,healthyThreshold=1\"\n"));
    EXPECT_TRUE(f.empty()) << join(f);
}

} // namespace
} // namespace sluice::model
