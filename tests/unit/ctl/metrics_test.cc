#include <gtest/gtest.h>

#include <cmath>

#include "sluice/ctl/appliance_metrics.hh"
#include "sluice/ctl/metrics.hh"

namespace sluice::ctl {
namespace {

TEST(Metrics, ExpositionParsesBack)
{
    exposition e;
    e.family("istio_requests_total", "counter", "Requests handled");
    e.sample(
        "istio_requests_total",
        {{"reporter", "source"}, {"response_code", "200"}, {"destination_service", "a\"b\\c\nd"}},
        42);
    e.family("sluice_port_rx_packets_total", "counter", "Packets received");
    e.sample("sluice_port_rx_packets_total", {{"port", "wan"}}, 1e15 + 1);
    e.family("istio_request_duration_milliseconds", "histogram", "Request duration");
    e.histogram("istio_request_duration_milliseconds", {{"response_code", "200"}},
                {{1, 2}, {5, 7}, {10.5, 9}}, 55.25, 10);
    const std::string& t = e.text();
    EXPECT_NE(t.find("# TYPE istio_requests_total counter\n"), std::string::npos);
    EXPECT_NE(t.find("destination_service=\"a\\\"b\\\\c\\nd\""), std::string::npos) << t;
    auto p = parse_exposition(t);
    ASSERT_TRUE(p.ok()) << p.err().to_string();
    EXPECT_EQ(p->types.at("istio_request_duration_milliseconds"), "histogram");
    EXPECT_EQ(p->find("istio_requests_total", {{"destination_service", "a\"b\\c\nd"}}), 42.0);
    EXPECT_EQ(p->find("sluice_port_rx_packets_total", {{"port", "wan"}}), 1e15 + 1);
    EXPECT_EQ(p->find("istio_request_duration_milliseconds_bucket", {{"le", "10.5"}}), 9.0);
    EXPECT_EQ(p->find("istio_request_duration_milliseconds_bucket", {{"le", "+Inf"}}), 10.0);
    EXPECT_EQ(p->find("istio_request_duration_milliseconds_sum"), 55.25);
    EXPECT_EQ(p->find("istio_request_duration_milliseconds_count"), 10.0);
    EXPECT_FALSE(p->find("istio_requests_total", {{"reporter", "destination"}}).has_value());
}

TEST(Metrics, ParserRejectsGarbageWithTheLine)
{
    auto a = parse_exposition("ok 1\nbroken{x=\"1\" 2\n");
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.err().where, "line 2");
    EXPECT_FALSE(parse_exposition("x notanumber\n").ok());
    EXPECT_FALSE(parse_exposition("{a=\"b\"} 1\n").ok());
    auto b = parse_exposition("x +Inf 1700000000000\n");
    ASSERT_TRUE(b.ok());
    EXPECT_TRUE(std::isinf(b->samples[0].value));
}

TEST(Metrics, FlowRulesPerPort)
{
    appliance_view v;
    v.port_names = {"wan", "lan"};
    v.port_flow_rules = {0, 20};
    auto p = parse_exposition(render_metrics(v));
    ASSERT_TRUE(p.ok()) << p.err().to_string();
    EXPECT_EQ(p->types.at("sluice_port_flow_rules"), "gauge");
    EXPECT_EQ(p->find("sluice_port_flow_rules", {{"port", "wan"}}), 0.0);
    EXPECT_EQ(p->find("sluice_port_flow_rules", {{"port", "lan"}}), 20.0);
}

} // namespace
} // namespace sluice::ctl
