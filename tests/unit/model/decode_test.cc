#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "sluice/model/decode.hh"

namespace sluice::model {
namespace {

using namespace std::chrono_literals;

std::string dump(const decoded& d)
{
    std::string out;
    for (const auto& x : d.diagnostics) {
        out += x.to_string() + "\n";
    }
    return out;
}

/// "Object: field: message" for every diagnostic at `level`.
std::vector<std::string> lines(const std::vector<diagnostic>& ds, severity level)
{
    std::vector<std::string> out;
    for (const auto& d : ds) {
        if (d.level == level) {
            out.push_back(d.object + ": " + d.field + ": " + d.message);
        }
    }
    return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s)
{
    return std::find(v.begin(), v.end(), s) != v.end();
}

decoded ok_decode(const std::string& text)
{
    auto d = decode(text, "test.yaml");
    EXPECT_FALSE(d.has_errors()) << dump(d);
    return d;
}

// ---------------------------------------------------------------- defaults of every object

TEST(ModelDefaults, VirtualService)
{
    const auto d = ok_decode(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    redirect: {}
    directResponse: {status: 200}
    retries: {}
    fault: {delay: {fixedDelay: 1s}, abort: {httpStatus: 500}}
    corsPolicy: {}
    mirror: {host: shadow}
  tcp:
  - route:
    - destination: {host: db}
)");
    ASSERT_EQ(d.objects.virtual_services.size(), 1U);
    const auto& vs = d.objects.virtual_services[0];
    EXPECT_EQ(vs.meta.ns, "default");
    EXPECT_EQ(vs.meta.kind, "VirtualService");
    EXPECT_EQ(vs.meta.api_version, "networking.istio.io/v1");
    EXPECT_EQ(vs.hosts, std::vector<std::string>{"reviews.default.svc.cluster.local"});
    EXPECT_TRUE(vs.gateways.empty()); // means mesh
    EXPECT_TRUE(vs.export_to.empty());
    const auto& r = vs.http.at(0);
    EXPECT_TRUE(r.match.empty());
    EXPECT_FALSE(r.route.at(0).weight.has_value());
    EXPECT_EQ(r.route.at(0).dest.host, "reviews.default.svc.cluster.local");
    EXPECT_FALSE(r.route.at(0).dest.port.has_value());
    EXPECT_EQ(r.redirect->redirect_code, 301U);
    EXPECT_EQ(r.redirect->derive_port, http_redirect::derive::unset);
    EXPECT_FALSE(r.redirect->prefix_rewrite.has_value());
    EXPECT_FALSE(r.direct_response->body.has_value());
    EXPECT_FALSE(r.timeout.has_value()); // no timeout
    EXPECT_EQ(r.retries->attempts, 0U);
    EXPECT_FALSE(r.retries->per_try_timeout.has_value());
    EXPECT_FALSE(r.retries->retry_ignore_previous_hosts.has_value()); // default true
    EXPECT_FALSE(r.retries->backoff.has_value());                     // default 25 ms
    EXPECT_FALSE(r.retries->retry_remote_localities);
    EXPECT_FALSE(r.fault->delay->percentage.has_value()); // nothing delayed
    EXPECT_FALSE(r.fault->abort->percentage.has_value()); // nothing aborted
    EXPECT_EQ(r.mirror->host, "shadow.default.svc.cluster.local");
    EXPECT_FALSE(r.mirror_percentage.has_value()); // 100%
    EXPECT_TRUE(r.cors->unmatched_preflights.empty());
    EXPECT_FALSE(r.cors->allow_credentials.has_value());
    EXPECT_EQ(vs.tcp.at(0).route.at(0).dest.host, "db.default.svc.cluster.local");
}

TEST(ModelDefaults, HttpMatchRequest)
{
    const auto d = ok_decode(R"(apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: api, namespace: prod}
spec:
  hosts: [api.example.com]
  gateways: [edge, other/gw, mesh]
  http:
  - match:
    - headers: {X-User: {exact: jason}, Present: {}}
      withoutHeaders: {X-Debug: {prefix: "1"}}
      queryParams: {Bare: {exact: ""}}
      uri: {regex: "/v[0-9]+"}
      gateways: [edge]
    route: [{destination: {host: api}}]
)");
    const auto& vs = d.objects.virtual_services.at(0);
    EXPECT_EQ(vs.gateways, (std::vector<std::string>{"prod/edge", "other/gw", "mesh"}));
    const auto& m = vs.http.at(0).match.at(0);
    EXPECT_EQ(m.headers.at("x-user").how, string_match::kind::exact);
    EXPECT_EQ(m.headers.at("x-user").value, "jason");
    EXPECT_EQ(m.headers.at("present").how, string_match::kind::any);
    EXPECT_EQ(m.without_headers.at("x-debug").how, string_match::kind::prefix);
    EXPECT_EQ(m.query_params.at("Bare").how, string_match::kind::exact); // keys keep case
    EXPECT_EQ(m.query_params.at("Bare").value, "");
    EXPECT_EQ(m.uri->how, string_match::kind::regex);
    EXPECT_FALSE(m.ignore_uri_case);
    EXPECT_FALSE(m.port.has_value());
    EXPECT_EQ(m.gateways, std::vector<std::string>{"prod/edge"});
}

TEST(ModelDefaults, DestinationRule)
{
    const auto d = ok_decode(R"(apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: r, namespace: prod}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
      localityLbSetting: {}
      warmup: {duration: 10s}
    connectionPool: {tcp: {}, http: {}}
    outlierDetection: {}
    tls: {}
    tunnel: {targetHost: proxy.example.com, targetPort: 8080}
    retryBudget: {}
  subsets:
  - name: v1
    labels: {version: v1}
)");
    const auto& dr = d.objects.destination_rules.at(0);
    EXPECT_EQ(dr.host, "reviews.prod.svc.cluster.local");
    const auto& tp = *dr.policy;
    EXPECT_EQ(tp.lb->simple, load_balancer::simple_lb::unspecified); // LEAST_REQUEST
    EXPECT_EQ(tp.lb->hash->by, consistent_hash::key::header);
    EXPECT_EQ(tp.lb->hash->algo, consistent_hash::algorithm::ring_hash);
    EXPECT_EQ(tp.lb->hash->minimum_ring_size, 1024U);
    EXPECT_EQ(tp.lb->hash->maglev_table_size, 65537U);
    EXPECT_FALSE(tp.lb->locality->enabled.has_value()); // mesh default true
    EXPECT_EQ(tp.lb->warmup->window, 10s);
    EXPECT_EQ(tp.lb->warmup->minimum_percent, 10);
    EXPECT_EQ(tp.lb->warmup->aggression, 1.0);
    EXPECT_EQ(tp.pool->tcp->max_connections, UINT32_MAX);
    EXPECT_EQ(tp.pool->tcp->connect_timeout, 10s);
    EXPECT_EQ(tp.pool->tcp->idle_timeout, 1h);
    EXPECT_EQ(tp.pool->http->http1_max_pending_requests, UINT32_MAX);
    EXPECT_EQ(tp.pool->http->http2_max_requests, UINT32_MAX);
    EXPECT_EQ(tp.pool->http->max_requests_per_connection, 0U);
    EXPECT_EQ(tp.pool->http->max_retries, UINT32_MAX);
    EXPECT_EQ(tp.pool->http->idle_timeout, 1h);
    EXPECT_EQ(tp.pool->http->max_concurrent_streams, 2147483647U);
    EXPECT_EQ(tp.outlier->consecutive_5xx_errors, 5U);
    EXPECT_FALSE(tp.outlier->consecutive_gateway_errors.has_value());
    EXPECT_FALSE(tp.outlier->split_external_local_origin_errors);
    EXPECT_EQ(tp.outlier->consecutive_local_origin_failures, 5U);
    EXPECT_EQ(tp.outlier->interval, 10s);
    EXPECT_EQ(tp.outlier->base_ejection_time, 30s);
    EXPECT_EQ(tp.outlier->max_ejection_percent, 10U);
    EXPECT_EQ(tp.outlier->min_health_percent, 0U);
    EXPECT_EQ(tp.tls->mode, client_tls::mode_t::disable);
    EXPECT_EQ(tp.tunnel->protocol, "CONNECT");
    EXPECT_EQ(tp.budget->percent, 20);
    EXPECT_EQ(tp.budget->min_retry_concurrency, 3U);
    EXPECT_EQ(dr.subsets.at(0).match_labels.at("version"), "v1");
    EXPECT_FALSE(dr.subsets.at(0).policy.has_value());
}

TEST(ModelDefaults, Gateway)
{
    const auto d = ok_decode(R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: https}
    hosts: ["prod/*.example.com"]
    tls: {mode: SIMPLE, credentialName: cert}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
)");
    const auto& g = d.objects.gateways.at(0);
    EXPECT_EQ(g.selector.at("istio"), "ingressgateway");
    EXPECT_EQ(g.servers.at(0).port.protocol, "HTTPS"); // upper-cased
    EXPECT_EQ(g.servers.at(0).hosts.at(0), "prod/*.example.com");
    EXPECT_EQ(g.servers.at(0).tls->min_protocol_version, server_tls::version::tls_auto);
    EXPECT_FALSE(g.servers.at(0).tls->https_redirect);
    EXPECT_EQ(g.servers.at(1).tls->mode, server_tls::mode_t::passthrough);
    EXPECT_TRUE(g.servers.at(1).tls->https_redirect);
}

TEST(ModelDefaults, ServiceEntryAndWorkloadEntry)
{
    const auto d = ok_decode(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  endpoints: [{address: 1.2.3.4}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm1, namespace: prod}
spec:
  address: 10.0.0.7
  ports: {http: 8080}
  locality: us-east1/us-east1-b/rack1
)");
    const auto& se = d.objects.service_entries.at(0);
    EXPECT_EQ(se.location, service_entry::location_t::mesh_external);
    EXPECT_EQ(se.resolution, service_entry::resolution_t::none);
    EXPECT_EQ(se.hosts.at(0), "api.example.com");
    EXPECT_EQ(se.endpoints.at(0).weight, 0U); // unset, treated as 1
    const auto& we = d.objects.workload_entries.at(0);
    EXPECT_EQ(we.spec.address, "10.0.0.7");
    EXPECT_EQ(we.spec.ports.at("http"), 8080U);
    EXPECT_EQ(we.spec.locality, "us-east1/us-east1-b/rack1");
    EXPECT_EQ(we.spec.weight, 0U);
}

TEST(ModelDefaults, ServiceAndEndpointSlice)
{
    const auto d = ok_decode(R"(apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: prod
  annotations: {networking.istio.io/traffic-distribution: PreferRegion}
spec:
  ports: [{port: 9080, name: http}]
  selector: {app: reviews}
  somethingSluiceIgnores: true
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc
  namespace: prod
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
endpoints:
- addresses: [10.1.0.5]
  zone: us-east1-b
  nodeName: node-1
- addresses: [10.1.0.6]
  conditions: {ready: false}
ports: [{port: 9080, name: http}]
)");
    const auto& svc = d.objects.services.at(0);
    EXPECT_EQ(svc.type, "ClusterIP");
    EXPECT_EQ(svc.ports.at(0).protocol, "TCP");
    EXPECT_TRUE(svc.ports.at(0).target_port.empty()); // means `port`
    EXPECT_TRUE(svc.traffic_distribution.empty());
    EXPECT_TRUE(svc.internal_traffic_policy.empty()); // Cluster
    EXPECT_EQ(svc.meta.annotations.at("networking.istio.io/traffic-distribution"), "PreferRegion");
    const auto& es = d.objects.endpoint_slices.at(0);
    EXPECT_EQ(es.service_name, "reviews");
    EXPECT_TRUE(es.endpoints.at(0).ready); // absent conditions.ready means ready
    EXPECT_FALSE(es.endpoints.at(1).ready);
    EXPECT_EQ(es.endpoints.at(0).zone, "us-east1-b");
    EXPECT_EQ(es.endpoints.at(0).node_name, "node-1");
    EXPECT_EQ(es.ports.at(0).protocol, "TCP");
}

// ---------------------------------------------------------------- decoding details

TEST(DecodeFields, WeightAbsentVersusZero)
{
    const auto d = ok_decode(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  http:
  - route:
    - destination: {host: a, subset: v1}
      weight: 0
    - destination: {host: a, subset: v2}
)");
    const auto& r = d.objects.virtual_services.at(0).http.at(0).route;
    ASSERT_TRUE(r.at(0).weight.has_value());
    EXPECT_EQ(*r.at(0).weight, 0);
    EXPECT_FALSE(r.at(1).weight.has_value());
}

TEST(DecodeFields, BodyBytesPercentagesDelegateAndDurations)
{
    const auto d = ok_decode(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: prod}
spec:
  hosts: [a]
  http:
  - directResponse: {status: 503, body: {bytes: aGVsbG8gd29ybGQ=}}
  - delegate: {name: child}
  - route: [{destination: {host: a}}]
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 300ms, retryOn: "5xx,503"}
    fault:
      delay: {fixedDelay: 2h45m, percent: 7}
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.5}}
    mirrorPercentage: {value: 12.5}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child, namespace: prod}
spec:
  http: [{route: [{destination: {host: a}}]}]
)");
    const auto& h = d.objects.virtual_services.at(0).http;
    EXPECT_EQ(*h.at(0).direct_response->body, "hello world");
    EXPECT_EQ(h.at(1).delegate->ns, "prod");
    EXPECT_EQ(h.at(1).delegate->name, "child");
    EXPECT_EQ(*h.at(2).timeout, 1500ms);
    EXPECT_EQ(h.at(2).retries->attempts, 3U);
    EXPECT_EQ(*h.at(2).retries->per_try_timeout, 300ms);
    EXPECT_EQ(*h.at(2).fault->delay->fixed_delay, 2h + 45min);
    EXPECT_EQ(*h.at(2).fault->delay->percentage, 7.0); // deprecated integer percent
    EXPECT_EQ(*h.at(2).fault->abort->percentage, 0.5);
    EXPECT_EQ(*h.at(2).fault->abort->grpc_status, "UNAVAILABLE");
    EXPECT_EQ(*h.at(2).mirror_percentage, 12.5);
}

TEST(DecodeFields, TypeErrorsNameTheFieldPath)
{
    const auto d = decode(R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: prod}
spec:
  hosts: api
  http:
  - route:
    - destination: {host: api}
      weight: heavy
    timeout: 5
    retries: {attempts: -1}
)",
                          "t.yaml");
    const auto e = lines(d.diagnostics, severity::error);
    EXPECT_TRUE(contains(e, "VirtualService prod/api: spec.hosts: expected a list, got \"api\""))
        << dump(d);
    EXPECT_TRUE(contains(e, "VirtualService prod/api: spec.http[0].route[0].weight: expected an "
                            "integer, got \"heavy\""))
        << dump(d);
    EXPECT_TRUE(contains(e, "VirtualService prod/api: spec.http[0].timeout: invalid duration "
                            "\"5\": missing unit (ns, us, ms, s, m, h)"))
        << dump(d);
    EXPECT_TRUE(contains(e, "VirtualService prod/api: spec.http[0].retries.attempts: integer -1 "
                            "out of range [0, 2147483647]"))
        << dump(d);
    // The line of the bad weight (1-based).
    for (const auto& x : d.diagnostics) {
        if (x.field == "spec.http[0].route[0].weight") {
            EXPECT_EQ(x.line, 9);
            EXPECT_EQ(x.file, "t.yaml");
        }
    }
}

TEST(DecodeFields, UnknownFieldsAreErrorsForIstioKindsOnly)
{
    const auto d = decode(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: prod}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN, bogus: 1}
---
apiVersion: v1
kind: Service
metadata: {name: s}
spec:
  ports: [{port: 80}]
  sessionAffinity: None
status: {loadBalancer: {}}
)",
                          "t.yaml");
    const auto e = lines(d.diagnostics, severity::error);
    ASSERT_EQ(e.size(), 1U) << dump(d);
    EXPECT_EQ(e[0], "DestinationRule prod/r: spec.trafficPolicy.loadBalancer.bogus: unknown field "
                    "\"bogus\"");
    EXPECT_EQ(d.diagnostics[0].line, 7);
}

TEST(DecodeFields, UnknownEnumValue)
{
    const auto d = decode(R"(apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se, namespace: prod}
spec:
  hosts: [a.example.com]
  resolution: SOMETIMES
)",
                          "t.yaml");
    const auto e = lines(d.diagnostics, severity::error);
    EXPECT_TRUE(contains(e, "ServiceEntry prod/se: spec.resolution: unknown value \"SOMETIMES\"; "
                            "expected one of NONE, STATIC, DNS, DNS_ROUND_ROBIN, DYNAMIC_DNS"))
        << dump(d);
}

TEST(DecodeStream, MultiDocumentYamlWithLines)
{
    const auto d = ok_decode(R"(# leading comment
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g1}
spec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}
---
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: g2}
spec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}
...
)");
    ASSERT_EQ(d.objects.gateways.size(), 2U);
    EXPECT_EQ(d.objects.gateways[0].meta.line, 2);
    EXPECT_EQ(d.objects.gateways[1].meta.line, 8);
    EXPECT_EQ(d.objects.gateways[1].meta.file, "test.yaml");
}

TEST(DecodeStream, KindList)
{
    const auto d = ok_decode(R"(apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: a, namespace: x}
  spec: {host: a}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d}
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: b, namespace: x}
  spec: {host: b}
)");
    ASSERT_EQ(d.objects.destination_rules.size(), 2U);
    EXPECT_EQ(d.objects.destination_rules[1].host, "b.x.svc.cluster.local");
    EXPECT_EQ(d.objects.destination_rules[1].meta.line, 11);
    ASSERT_EQ(d.diagnostics.size(), 1U);
    EXPECT_EQ(d.diagnostics[0].to_string(),
              "note: test.yaml:8: Deployment default/d: skipped: sluice does not use apps/v1 "
              "Deployment");
}

TEST(DecodeStream, Json)
{
    const auto d = ok_decode(R"(
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
   "metadata": {"name": "api", "namespace": "prod"},
   "spec": {"hosts": ["api"], "http": [{"route": [
      {"destination": {"host": "api", "port": {"number": 8080}}, "weight": 100}]}]}},
  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
]})");
    ASSERT_EQ(d.objects.virtual_services.size(), 1U);
    const auto& r = d.objects.virtual_services[0].http.at(0).route.at(0);
    EXPECT_EQ(r.dest.host, "api.prod.svc.cluster.local");
    EXPECT_EQ(*r.dest.port, 8080U);
    EXPECT_EQ(*r.weight, 100);
    EXPECT_EQ(d.diagnostics.size(), 1U);
}

TEST(DecodeStream, JsonSyntaxError)
{
    const auto d = decode("{\"kind\": \n \"List\",, }", "x.json");
    ASSERT_TRUE(d.has_errors());
    EXPECT_EQ(d.diagnostics[0].line, 2);
    EXPECT_EQ(d.diagnostics[0].message.rfind("JSON syntax error: ", 0), 0U);
}

TEST(DecodeStream, YamlSyntaxErrorHasLineAndOtherDocumentsSurvive)
{
    const auto d = decode(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b
spec: {host: b}
)",
                          "bad.yaml");
    ASSERT_TRUE(d.has_errors());
    ASSERT_EQ(d.objects.destination_rules.size(), 1U);
    const auto& e = d.diagnostics.at(0);
    EXPECT_EQ(e.level, severity::error);
    EXPECT_EQ(e.file, "bad.yaml");
    EXPECT_EQ(e.line, 9);
    EXPECT_EQ(e.message.rfind("YAML syntax error: ", 0), 0U) << e.message;
}

TEST(DecodeStream, SkippedKindsAreNotesNotErrors)
{
    const auto d = decode(R"(apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: k8s-gw}
spec: {gatewayClassName: istio}
)",
                          "t.yaml");
    EXPECT_FALSE(d.has_errors());
    ASSERT_EQ(d.diagnostics.size(), 3U);
    for (const auto& x : d.diagnostics) {
        EXPECT_EQ(x.level, severity::note);
    }
    EXPECT_TRUE(d.objects.gateways.empty());
    EXPECT_EQ(d.diagnostics[1].to_string(),
              "note: t.yaml:6: Sidecar default/default: skipped: sluice does not use "
              "networking.istio.io/v1 Sidecar");
}

TEST(DecodeStream, DuplicateObjectWarnsAndLastWins)
{
    const auto d = decode(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: first}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: second}
)",
                          "t.yaml");
    ASSERT_EQ(d.objects.destination_rules.size(), 1U);
    EXPECT_EQ(d.objects.destination_rules[0].host, "second.default.svc.cluster.local");
    const auto w = lines(d.diagnostics, severity::warning);
    ASSERT_EQ(w.size(), 1U);
    EXPECT_EQ(w[0], "DestinationRule default/a: : duplicate object in this stream; the last one "
                    "wins (as kubectl apply)");
}

TEST(DecodeStream, ClusterDomainOption)
{
    options o;
    o.cluster_domain = "corp";
    const auto d = decode(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: n}
spec: {host: svc}
)",
                          "t.yaml", o);
    EXPECT_EQ(d.objects.destination_rules.at(0).host, "svc.n.svc.corp");
}

TEST(ModelMerge, ReplacesByKindNamespaceName)
{
    auto a = ok_decode(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: x}
spec: {host: one}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, namespace: x}
spec: {host: two}
)");
    auto b = ok_decode(R"(apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: x}
spec: {host: three}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: y}
spec: {host: four}
)");
    mesh m = std::move(a.objects);
    merge(m, std::move(b.objects));
    ASSERT_EQ(m.destination_rules.size(), 3U);
    EXPECT_EQ(m.destination_rules[0].host, "three.x.svc.cluster.local");
    EXPECT_EQ(m.destination_rules[1].host, "two.x.svc.cluster.local");
    EXPECT_EQ(m.destination_rules[2].host, "four.y.svc.cluster.local");
}

TEST(ModelDiagnostic, ToString)
{
    diagnostic d{severity::error,
                 "VirtualService prod/api",
                 "spec.http[0].route[0].weight",
                 "must be between 0 and 100",
                 "mesh.yaml",
                 12};
    EXPECT_EQ(d.to_string(), "error: mesh.yaml:12: VirtualService prod/api: "
                             "spec.http[0].route[0].weight: must be between 0 and 100");
    d.line = 0;
    d.level = severity::warning;
    EXPECT_EQ(d.to_string(), "warning: mesh.yaml: VirtualService prod/api: "
                             "spec.http[0].route[0].weight: must be between 0 and 100");
    d.file.clear();
    d.field.clear();
    d.level = severity::note;
    EXPECT_EQ(d.to_string(), "note: VirtualService prod/api: must be between 0 and 100");
    d.object.clear();
    EXPECT_EQ(d.to_string(), "note: must be between 0 and 100");
}

} // namespace
} // namespace sluice::model
