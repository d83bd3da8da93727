// sluiced: the appliance daemon. Reads the appliance config, brings up the EAL, ports and
// exception interfaces, and runs the lcores until SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <rte_eal.h>
#include <rte_errno.h>

#include "appliance.hh"
#include "sluice/config/appliance.hh"

namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_dump{false};

void on_signal(int sig)
{
    if (sig == SIGUSR1) {
        g_dump.store(true);
    } else {
        g_signal.store(sig);
    }
}

void usage(FILE* f)
{
    std::fprintf(f, "usage: sluiced [-c FILE] [--check]\n"
                    "\n"
                    "sluice appliance daemon: a DPDK load balancer enforcing the Istio\n"
                    "traffic-management model.\n"
                    "\n"
                    "  -c, --config FILE  appliance config (default /etc/sluice/sluice.conf)\n"
                    "      --check        validate the config and exit (0: valid, 2: errors)\n"
                    "  -V, --version      print the version and exit\n"
                    "  -h, --help         print this help and exit\n"
                    "\n"
                    "Signals: SIGINT/SIGTERM stop cleanly; SIGUSR1 prints counters.\n"
                    "Exit status: 0 clean stop, 1 bring-up failure, 2 config or usage error.\n");
}

} // namespace

int main(int argc, char** argv)
{
    std::string path = "/etc/sluice/sluice.conf";
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        }
        if (a == "-V" || a == "--version") {
            std::printf("sluiced %s\n", SLUICE_VERSION);
            return 0;
        }
        if (a == "--check") {
            check_only = true;
        } else if ((a == "-c" || a == "--config") && i + 1 < argc) {
            path = argv[++i];
        } else if (a.rfind("--config=", 0) == 0) {
            path = a.substr(9);
        } else {
            std::fprintf(stderr, "sluiced: unknown argument \"%s\"\n", a.c_str());
            usage(stderr);
            return 2;
        }
    }

    // Everything is validated before the EAL or any NIC is touched.
    auto loaded = sluice::config::load(path);
    if (!loaded.errors.empty()) {
        for (const auto& e : loaded.errors) {
            std::fprintf(stderr, "%s\n", e.to_string().c_str());
        }
        std::fprintf(stderr, "sluiced: %zu error(s) in %s; nothing was started\n",
                     loaded.errors.size(), path.c_str());
        return 2;
    }
    if (check_only) {
        std::printf("%s: ok\n", path.c_str());
        return 0;
    }
    auto cfg = std::move(*loaded.config);

    std::vector<std::string> eal_strs{"sluiced"};
    eal_strs.insert(eal_strs.end(), cfg.eal_args.begin(), cfg.eal_args.end());
    std::vector<char*> eal_argv;
    for (auto& s : eal_strs) {
        eal_argv.push_back(s.data());
    }
    eal_argv.push_back(nullptr);
    if (rte_eal_init(static_cast<int>(eal_strs.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "sluiced: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
        return 1;
    }

    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGUSR1, &sa, nullptr);

    int rc = 0;
    {
        sluice::app::appliance box(std::move(cfg));
        if (auto r = box.bring_up(); !r) {
            std::fprintf(stderr, "sluiced: bring-up failed: %s\n", r.err().message.c_str());
            rc = 1;
        } else if (auto l = box.launch(); !l) {
            std::fprintf(stderr, "sluiced: %s\n", l.err().message.c_str());
            rc = 1;
        } else if (auto c = box.start_config(); !c) {
            std::fprintf(stderr, "sluiced: %s\n", c.err().message.c_str());
            box.shut_down();
            rc = 1;
        } else {
            std::printf("sluiced: ready\n");
            std::fflush(stdout);
            while (g_signal.load() == 0) {
                if (g_dump.exchange(false)) {
                    box.print_stats();
                }
                box.tick();
                box.wait(std::chrono::milliseconds(10));
            }
            std::printf("sluiced: signal %d, stopping\n", g_signal.load());
            box.shut_down();
            box.print_stats();
        }
    }
    rte_eal_cleanup();
    return rc;
}
