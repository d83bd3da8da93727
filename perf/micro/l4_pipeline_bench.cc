// The worker pipeline over ring ports (STYLE B2): time per packet of worker_poll() (RX burst,
// classify, the L4 stage, TX) for established full-NAT UDP flows to 16 backends, with the
// flows' conntrack entries in place, at 64k and 1M flows; plus the harness alone (building
// the frames, ring enqueue/dequeue, mbuf alloc/free) to subtract. No NIC and no PMD copy: the
// difference is sluice's own cost per packet. allocs_per_op must be 0.
//
// Runs the EAL with --no-huge --no-pci (like the fast tests); needs no root.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "alloc_counter.hh"
#include "sluice/compile/compile.hh"
#include "sluice/fastpath/l4_stage.hh"
#include "sluice/fastpath/l4_view.hh"
#include "sluice/fastpath/worker.hh"
#include "sluice/glue/port.hh"
#include "sluice/model/decode.hh"
#include "sluice/net/fib.hh"
#include "sluice/net/neigh.hh"
#include "sluice/net/rewrite.hh"
#include "sluice/rcu/published.hh"
#include "sluice/rcu/qsbr.hh"

namespace {

using namespace sluice;

constexpr unsigned backends = 16;
constexpr uint16_t burst = 32;

struct ring_port {
    rte_ring* rx = nullptr;
    rte_ring* tx = nullptr;
    uint16_t port = 0;
};

ring_port make_port(const std::string& name)
{
    ring_port p;
    p.rx = rte_ring_create((name + "_rx").c_str(), 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    p.tx = rte_ring_create((name + "_tx").c_str(), 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
    p.port = static_cast<uint16_t>(rte_eth_from_rings(name.c_str(), &p.rx, 1, &p.tx, 1, 0));
    return p;
}

std::string mesh_yaml()
{
    std::string y = "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: l4}\n"
                    "spec:\n  clusterIP: 198.18.10.1\n  ports:\n"
                    "  - {name: udp-echo, port: 7001, protocol: UDP}\n---\n"
                    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n"
                    "  name: echo\n  namespace: l4\n  labels: {kubernetes.io/service-name: echo}\n"
                    "addressType: IPv4\nports:\n- {name: udp-echo, port: 7001, protocol: UDP}\n"
                    "endpoints:\n";
    for (unsigned i = 0; i < backends; ++i) {
        y += "- {addresses: [198.19.1." + std::to_string(10 + i) +
             "], zone: zone-a, conditions: {ready: true}}\n";
    }
    return y;
}

/// A 60-byte UDP frame from client 198.18.(128 + i / 65536 ...) port to the VIP.
void build_frame(uint8_t* f, uint32_t flow)
{
    static const uint8_t dst_mac[6] = {0x02, 0, 0, 0, 1, 0};
    static const uint8_t src_mac[6] = {0x02, 0, 0, 0, 0, 0xc1};
    std::memset(f, 0, 60);
    std::memcpy(f, dst_mac, 6);
    std::memcpy(f + 6, src_mac, 6);
    f[12] = 0x08;
    uint8_t* ip = f + 14;
    ip[0] = 0x45;
    ip[3] = 20 + 8 + 18;
    ip[8] = 64;
    ip[9] = 17;
    // Clients 198.18.128.0/17 (port = low bits of the flow), VIP 198.18.10.1.
    const uint32_t client = 0xc6128000u | ((flow >> 10) & 0x7fff);
    const uint16_t sport = static_cast<uint16_t>(10000 + (flow & 1023));
    const uint8_t src[4] = {static_cast<uint8_t>(client >> 24), static_cast<uint8_t>(client >> 16),
                            static_cast<uint8_t>(client >> 8), static_cast<uint8_t>(client)};
    const uint8_t dst[4] = {198, 18, 10, 1};
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, dst, 4);
    net::ipv4_set_checksum(ip);
    uint8_t* udp = ip + 20;
    udp[0] = static_cast<uint8_t>(sport >> 8);
    udp[1] = static_cast<uint8_t>(sport);
    udp[2] = 7001 >> 8;
    udp[3] = 7001 & 0xff;
    udp[5] = 8 + 18;
    net::l4_set_checksum(4, 17, src, dst, udp, 26);
}

struct pipeline {
    rte_mempool* pool = nullptr;
    ring_port wan;
    ring_port lan;
    rte_ring* punt = nullptr;
    rte_ring* inject = nullptr;
    std::unique_ptr<stats::registry> counters = std::make_unique<stats::registry>();
    std::unique_ptr<rcu::qsbr_domain> qsbr;
    std::unique_ptr<rcu::published<net::fwd_table>> fib;
    std::unique_ptr<rcu::published<net::neigh_table>> neigh;
    std::unique_ptr<rcu::published<fastpath::l4_view>> view;
    std::unique_ptr<fastpath::l4_lcore> l4;
    fastpath::l4_settings settings;
    std::vector<fastpath::port_ctx> ports;
    fastpath::worker_ctx w;
    std::atomic<bool> stop{false};
    snapshot::snapshot snap;

    bool init(uint32_t capacity)
    {
        pool = *glue::create_pool(0, 16383, "bench_pool");
        wan = make_port("bwan");
        lan = make_port("blan");
        for (auto* p : {&wan, &lan}) {
            if (!glue::configure_and_start(p->port, "p", 1, 1, 1024, 1024, 1500, pool).ok()) {
                return false;
            }
        }
        qsbr = rcu::qsbr_domain::create(1).value();
        (void)qsbr->register_reader(0);
        fib = std::make_unique<rcu::published<net::fwd_table>>(*qsbr);
        neigh = std::make_unique<rcu::published<net::neigh_table>>(*qsbr);
        view = std::make_unique<rcu::published<fastpath::l4_view>>(*qsbr);
        std::vector<net::route> routes = {
            {*net::prefix::parse("198.18.0.0/16"), {}, 0, net::route_kind::unicast, 0},
            {*net::prefix::parse("198.19.1.0/24"), {}, 1, net::route_kind::unicast, 0},
        };
        fib->publish(net::fwd_table::build(routes, 0).value());
        std::vector<net::neighbour> nb;
        for (unsigned i = 0; i < backends; ++i) {
            nb.push_back({1, net::ip_addr::v4(0xc613010au + i),
                          net::mac_addr{{0x02, 0, 0x19, 1, 1, static_cast<uint8_t>(10 + i)}}});
        }
        neigh->publish(net::neigh_table::build(nb));
        auto d = model::decode(mesh_yaml(), "bench.yaml");
        compile::node_locality node;
        node.locality = {"region-1", "zone-a", ""};
        auto s = compile::compile(d.objects, node, {});
        if (!s.ok()) {
            return false;
        }
        snap = std::move(*s);
        fastpath::l4_view_input in;
        in.snap = &snap;
        in.tsc_hz = rte_get_tsc_hz();
        view->publish(fastpath::build_l4_view(in).value());
        conntrack::timeout_seconds to;
        l4 = fastpath::l4_lcore::create(capacity, to, rte_get_tsc_hz(), 42).value();
        l4->view = view.get();
        l4->fib = fib.get();
        l4->neigh = neigh.get();
        l4->settings = &settings;
        ports.resize(2);
        for (uint16_t i = 0; i < 2; ++i) {
            auto& c = ports[i];
            c.nic = i == 0 ? wan.port : lan.port;
            c.exc = c.nic;
            c.index = i;
            c.mac = {0x02, 0, 0, 0, static_cast<uint8_t>(i + 1), 0};
            c.punt[0] = punt =
                rte_ring_create(i == 0 ? "bp0" : "bp1", 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        }
        ports[1].snat4_count = 8;
        for (uint8_t i = 0; i < 8; ++i) {
            ports[1].snat4[i] = {198, 19, 255, static_cast<uint8_t>(1 + i)};
        }
        inject = rte_ring_create("binj", 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        ports[0].inject[0] = ports[1].inject[0] = inject;
        w.queue = 0;
        w.ports = ports;
        w.l4 = l4.get();
        w.counters = &counters->lcore(1);
        l4->counters = w.counters;
        w.qsbr = qsbr.get();
        w.stop = &stop;
        return true;
    }

    /// Builds `n` frames of flows first.. into mbufs and puts them on the wan RX ring.
    unsigned feed(uint32_t first, uint32_t flows, uint16_t n)
    {
        rte_mbuf* m[burst];
        if (rte_pktmbuf_alloc_bulk(pool, m, n) != 0) {
            return 0;
        }
        for (uint16_t i = 0; i < n; ++i) {
            auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m[i], 60));
            build_frame(d, (first + i) % flows);
        }
        return rte_ring_sp_enqueue_burst(wan.rx, reinterpret_cast<void**>(m), n, nullptr);
    }

    /// Frees what the pipeline sent on any port (and anything punted).
    unsigned drain()
    {
        rte_mbuf* m[64];
        unsigned total = 0;
        for (rte_ring* r : {lan.tx, wan.tx, ports[0].punt[0], ports[1].punt[0]}) {
            unsigned n;
            while ((n = rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(m), 64, nullptr)) >
                   0) {
                rte_pktmbuf_free_bulk(m, n);
                total += n;
            }
        }
        return total;
    }
};

pipeline* g_pipe = nullptr;

void BM_established_udp(benchmark::State& state)
{
    const auto flows = static_cast<uint32_t>(state.range(0));
    pipeline& p = *g_pipe;
    // Create the flows once (each first packet is a new flow), then measure hits.
    for (uint32_t f = 0; f < flows; f += burst) {
        p.feed(f, flows, burst);
        fastpath::worker_poll(p.w);
        p.drain();
    }
    uint32_t next = 0;
    uint64_t sent = 0;
    const auto before = p.counters->sum();
    const uint64_t allocs = perf::alloc_count();
    for (auto _ : state) {
        p.feed(next, flows, burst);
        next = (next + burst) % flows;
        fastpath::worker_poll(p.w);
        sent += p.drain();
    }
    const auto after = p.counters->sum();
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * burst);
    state.counters["allocs_per_op"] =
        static_cast<double>(perf::alloc_count() - allocs) / static_cast<double>(state.iterations());
    state.counters["new_flows"] = static_cast<double>(after.event(stats::l4_event::new_flows) -
                                                      before.event(stats::l4_event::new_flows));
    state.counters["drops"] = static_cast<double>(after.total_drops() - before.total_drops());
    state.counters["forwarded_ratio"] =
        static_cast<double>(sent) / static_cast<double>(state.iterations() * burst);
}
BENCHMARK(BM_established_udp)->Arg(65536)->Arg(1 << 20)->Unit(benchmark::kNanosecond);
// Fixed iteration counts, for instruction counts under callgrind: the difference between the
// two runs is 10,000 bursts of established packets, whatever the set-up cost
// (`valgrind --tool=callgrind ... --benchmark_filter=fixed/2000` then `.../12000`).
BENCHMARK(BM_established_udp)->Name("fixed/2000")->Arg(65536)->Iterations(2000);
BENCHMARK(BM_established_udp)->Name("fixed/12000")->Arg(65536)->Iterations(12000);

// The harness alone: frames built, enqueued, dequeued and freed, no worker_poll.
void BM_harness_only(benchmark::State& state)
{
    pipeline& p = *g_pipe;
    uint32_t next = 0;
    for (auto _ : state) {
        p.feed(next, 65536, burst);
        next = (next + burst) % 65536;
        rte_mbuf* m[burst];
        const unsigned n =
            rte_ring_sc_dequeue_burst(p.wan.rx, reinterpret_cast<void**>(m), burst, nullptr);
        rte_pktmbuf_free_bulk(m, n);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * burst);
}
BENCHMARK(BM_harness_only)->Unit(benchmark::kNanosecond);

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string> args = {
        argv[0], "--no-huge", "--no-pci",       "--no-shconf", "-m",         "1024",
        "-l",    "0",         "--no-telemetry", "--log-level", "lib.*:error"};
    std::vector<char*> eal;
    for (auto& a : args) {
        eal.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(eal.size()), eal.data()) < 0) {
        return 1;
    }
    pipeline p;
    if (!p.init(1u << 21)) {
        return 1;
    }
    g_pipe = &p;
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
