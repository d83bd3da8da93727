// sluice-l7d: the L7 engine (lib/l7) as a standalone process, for perf/l7_vs_peers.sh. It
// decodes, validates and compiles a mesh (node locality region-1/zone-a, as the engine's
// unit tests do), then runs one reactor and one engine on the main thread, pinned to one
// CPU, until SIGTERM/SIGINT: the same engine sluiced runs on its slow-path lcore, without
// the EAL, the fast path or the exception path in front of it (the kernel's loopback
// terminates TCP, as sluiced's exception interfaces do).
//
// Differences from sluiced, stated so a figure from here is read for what it is: the
// reactor blocks in epoll_wait (sluiced's slow-path lcore polls it with timeout 0 between
// its DPDK bursts), as HAProxy's and nginx's event loops do; the health table is null
// (every endpoint healthy); the config is applied once.
//
// Output (stdout, line-buffered):
//   sluice-l7d: listening port=<listener> bound=<port>     one per L7 listener
//   sluice-l7d: ready
//   sluice-l7d: stats requests=<downstream_rq_total> allocs=<n> allocs_per_request=<x>
//     upstream_cx_total=<n> ...                             on SIGUSR1 and at exit
// `allocs` counts global operator new calls (perf/micro/alloc_counter.cc replaces it) from
// the first request on: the figure excludes start-up (decode, compile, apply) but includes
// the first connections' set-up. For the steady state, take two SIGUSR1 reports around a
// window and divide the deltas (perf/l7_vs_peers.sh does).

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../micro/alloc_counter.hh"
#include "sluice/compile/compile.hh"
#include "sluice/l7/engine.hh"
#include "sluice/l7/reactor.hh"
#include "sluice/model/decode.hh"

namespace {

using namespace sluice;

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_dump = 0;

void on_signal(int sig)
{
    if (sig == SIGUSR1) {
        g_dump = 1;
    } else {
        g_stop = 1;
    }
}

void usage(FILE* f)
{
    std::fprintf(f,
                 "usage: sluice-l7d --mesh FILE.yaml [--mesh FILE ...] [--bind ADDR]\n"
                 "                  [--port-map LISTENER:PORT ...] [--cpu N] [--access-log PATH]\n"
                 "\n"
                 "Runs sluice's L7 engine alone (a benchmark harness, not the appliance).\n"
                 "\n"
                 "  --mesh FILE          Istio/Kubernetes YAML (repeatable; merged in order)\n"
                 "  --bind ADDR          listen on ADDR instead of the listeners' addresses\n"
                 "                       (default 127.0.0.1)\n"
                 "  --port-map L:P       bind listener port L on port P (0: ephemeral)\n"
                 "  --cpu N              pin the process to CPU N\n"
                 "  --access-log PATH    access log file ('-': stderr; default none)\n"
                 "\n"
                 "SIGTERM/SIGINT: stop, print the stats line, exit 0. SIGUSR1: print it now.\n");
}

bool read_file(const std::string& path, std::string& out)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
}

bool parse_u(const char* s, unsigned long max, unsigned long& v)
{
    char* end = nullptr;
    errno = 0;
    v = std::strtoul(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' && v <= max;
}

struct alloc_window {
    bool started = false;
    uint64_t base = 0; // alloc_count() when the first request was seen
};

void report(const l7::engine_stats& s, const alloc_window& w)
{
    const uint64_t rq = s.downstream_rq_total.load(std::memory_order_relaxed);
    const uint64_t allocs = w.started ? perf::alloc_count() - w.base : 0;
    std::printf("sluice-l7d: stats requests=%llu allocs=%llu allocs_per_request=%.4f "
                "upstream_cx_total=%llu upstream_cx_reused=%llu upstream_rq_total=%llu "
                "downstream_cx_total=%llu rq_2xx=%llu rq_4xx=%llu rq_5xx=%llu no_route=%llu "
                "rq_bad=%llu\n",
                static_cast<unsigned long long>(rq), static_cast<unsigned long long>(allocs),
                rq == 0 ? 0.0 : static_cast<double>(allocs) / static_cast<double>(rq),
                static_cast<unsigned long long>(s.upstream_cx_total.load()),
                static_cast<unsigned long long>(s.upstream_cx_reused.load()),
                static_cast<unsigned long long>(s.upstream_rq_total.load()),
                static_cast<unsigned long long>(s.downstream_cx_total.load()),
                static_cast<unsigned long long>(s.downstream_rq_2xx.load()),
                static_cast<unsigned long long>(s.downstream_rq_4xx.load()),
                static_cast<unsigned long long>(s.downstream_rq_5xx.load()),
                static_cast<unsigned long long>(s.no_route.load()),
                static_cast<unsigned long long>(s.downstream_rq_bad.load()));
    std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv)
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::vector<std::string> meshes;
    l7::engine_settings settings;
    settings.bind_override = "127.0.0.1";
    long cpu = -1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "sluice-l7d: %s needs a value (or is unknown)\n", a.c_str());
            usage(stderr);
            return 2;
        }
        const char* v = argv[++i];
        if (a == "--mesh") {
            meshes.emplace_back(v);
        } else if (a == "--bind") {
            settings.bind_override = v;
        } else if (a == "--access-log") {
            settings.access_log = v;
        } else if (a == "--cpu") {
            unsigned long n = 0;
            if (!parse_u(v, CPU_SETSIZE - 1, n)) {
                std::fprintf(stderr, "sluice-l7d: --cpu %s: not a CPU number\n", v);
                return 2;
            }
            cpu = static_cast<long>(n);
        } else if (a == "--port-map") {
            const std::string m = v;
            const auto colon = m.find(':');
            unsigned long from = 0;
            unsigned long to = 0;
            if (colon == std::string::npos || !parse_u(m.substr(0, colon).c_str(), 65535, from) ||
                !parse_u(m.substr(colon + 1).c_str(), 65535, to) || from == 0) {
                std::fprintf(stderr, "sluice-l7d: --port-map %s: want LISTENER:PORT\n", v);
                return 2;
            }
            settings.port_override.emplace_back(static_cast<uint32_t>(from),
                                                static_cast<uint16_t>(to));
        } else {
            std::fprintf(stderr, "sluice-l7d: unknown option %s\n", a.c_str());
            usage(stderr);
            return 2;
        }
    }
    if (meshes.empty()) {
        std::fprintf(stderr, "sluice-l7d: at least one --mesh FILE is needed\n");
        usage(stderr);
        return 2;
    }

    // Pin first: every thread created later (none today) inherits the mask.
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(static_cast<int>(cpu), &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0) {
            std::fprintf(stderr, "sluice-l7d: cannot pin to CPU %ld: %s\n", cpu,
                         std::strerror(errno));
            return 1;
        }
    }

    // Decode, validate, compile.
    model::mesh mesh;
    bool errors = false;
    for (const auto& path : meshes) {
        std::string text;
        if (!read_file(path, text)) {
            std::fprintf(stderr, "sluice-l7d: cannot read %s: %s\n", path.c_str(),
                         std::strerror(errno));
            return 1;
        }
        auto d = model::decode(text, path);
        for (const auto& diag : d.diagnostics) {
            if (diag.level != model::severity::note) {
                std::fprintf(stderr, "sluice-l7d: %s\n", diag.to_string().c_str());
            }
            errors = errors || diag.level == model::severity::error;
        }
        model::merge(mesh, std::move(d.objects));
    }
    for (const auto& diag : model::validate(mesh)) {
        if (diag.level != model::severity::note) {
            std::fprintf(stderr, "sluice-l7d: %s\n", diag.to_string().c_str());
        }
        errors = errors || diag.level == model::severity::error;
    }
    if (errors) {
        std::fprintf(stderr, "sluice-l7d: the mesh has errors\n");
        return 1;
    }
    compile::node_locality node;
    node.locality.region = "region-1";
    node.locality.zone = "zone-a";
    auto snap = compile::compile(mesh, node);
    if (!snap) {
        std::fprintf(stderr, "sluice-l7d: compile: %s\n", snap.err().message.c_str());
        return 1;
    }
    auto cfg = std::make_shared<l7::engine_config>();
    cfg->snap = std::make_shared<const snapshot::snapshot>(std::move(*snap));
    cfg->generation = 1;

    // The reactor and the engine.
    auto rx = l7::reactor::create();
    if (!rx) {
        std::fprintf(stderr, "sluice-l7d: reactor: %s\n", rx.err().message.c_str());
        return 1;
    }
    std::unique_ptr<l7::reactor> reactor = std::move(*rx);
    auto ex = l7::engine::create(*reactor, settings);
    if (!ex) {
        std::fprintf(stderr, "sluice-l7d: engine: %s\n", ex.err().message.c_str());
        return 1;
    }
    std::unique_ptr<l7::engine> engine = std::move(*ex);

    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig : {SIGTERM, SIGINT, SIGUSR1}) {
        sigaction(sig, &sa, nullptr);
    }
    std::signal(SIGPIPE, SIG_IGN);

    if (auto r = engine->apply(cfg); !r) {
        std::fprintf(stderr, "sluice-l7d: apply: %s\n", r.err().message.c_str());
        return 1;
    }
    std::vector<uint32_t> listening;
    for (const auto& l : cfg->snap->listeners) {
        const uint16_t b = engine->bound_port(l.port);
        if (b != 0 && std::find(listening.begin(), listening.end(), l.port) == listening.end()) {
            std::printf("sluice-l7d: listening port=%u bound=%u\n", l.port, b);
            listening.push_back(l.port);
        }
    }
    if (listening.empty()) {
        std::fprintf(stderr, "sluice-l7d: the mesh has no L7 listener\n");
        return 1;
    }
    std::printf("sluice-l7d: ready\n");

    const l7::engine_stats& stats = engine->stats();
    alloc_window w;
    while (g_stop == 0) {
        // Bounded wait: a signal that lands between the check and epoll_wait is seen within
        // 100 ms (a signal during epoll_wait interrupts it at once).
        reactor->poll(100);
        if (!w.started && stats.downstream_rq_total.load(std::memory_order_relaxed) != 0) {
            w.started = true;
            w.base = perf::alloc_count();
        }
        if (g_dump != 0) {
            g_dump = 0;
            report(stats, w);
        }
    }
    engine->shut_down();
    for (int i = 0; i < 10; ++i) {
        reactor->poll(0);
    }
    report(stats, w);
    return 0;
}
