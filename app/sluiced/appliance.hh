#pragma once
// The running appliance: everything sluiced brings up, and its shutdown. Only wiring.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <vector>

#include "sluice/config/appliance.hh"
#include "sluice/ctl/api.hh"
#include "sluice/ctl/store.hh"
#include "sluice/snapshot/snapshot.hh"
#include "sluice/fastpath/l4_stage.hh"
#include "sluice/fastpath/l4_view.hh"
#include "sluice/fastpath/worker.hh"
#include "sluice/health/health.hh"
#include "sluice/l7/engine.hh"
#include "sluice/l7/reactor.hh"
#include "sluice/glue/flow_steering.hh"
#include "sluice/glue/netlink_mirror.hh"
#include "sluice/net/fib.hh"
#include "sluice/net/neigh.hh"
#include "sluice/rcu/published.hh"
#include "sluice/rcu/qsbr.hh"
#include "sluice/stats/counters.hh"

struct rte_mempool;
struct rte_ring;

namespace sluice::app {

class appliance {
public:
    explicit appliance(config::appliance_config cfg);
    ~appliance();

    /// Brings up ports, exception interfaces, kernel config, rings, RCU and the netlink
    /// mirror. The EAL must be initialised. On error, what was brought up is torn down.
    result<void> bring_up();
    /// Launches the worker and slow-path lcores.
    result<void> launch();
    /// Loads the mesh config (the last persisted generation, else mesh.files), publishes
    /// its snapshot, and opens the REST config port.
    result<void> start_config();
    /// Housekeeping on the main thread: frees snapshots whose grace period ended, feeds the
    /// workers' passive health signals to the outlier detector (republishing the L4 view when
    /// the ejected set changes), and asks the kernel to resolve neighbours the workers miss.
    void tick();
    /// Sleeps up to `most`, less when the L7 engine has health reports to feed (tick() then).
    void wait(std::chrono::milliseconds most);
    /// Stops the lcores, closes every port (TAP interfaces disappear).
    void shut_down() noexcept;

    /// Prints counters per port, drops by reason, and per-lcore loop counts to stdout.
    void print_stats() const;

private:
    struct port_rt {
        uint16_t nic = 0;
        uint16_t exc = 0;
        bool nic_up = false;
        bool exc_up = false;
        glue::steering_status steering; ///< how full-NAT replies reach their owner worker
    };
    static int worker_main(void* arg);
    static int slowpath_main(void* arg);
    void close_all() noexcept;
    void publish_snapshot(std::unique_ptr<snapshot::snapshot> snap, uint64_t generation);
    /// Builds and publishes the L4 view from the current snapshot and health (with _snap_mu
    /// held). `reconfigure`: the snapshot changed, so the detector's clusters do too.
    void rebuild_l4(bool reconfigure);
    void process_health();
    void process_resolves();
    /// Hands the current snapshot and health table to the L7 engine (with _snap_mu held).
    void push_l7();
    void wake();
    /// Installs local routes for the L7 listeners' addresses the box does not own.
    void sync_local_vips();
    result<void> create_l4();
    ctl::api_hooks make_hooks();
    bool ready() const;

    config::appliance_config _cfg;
    std::vector<port_rt> _ports;
    std::vector<fastpath::port_ctx> _ctx;
    std::vector<fastpath::worker_ctx> _workers;
    std::vector<rte_ring*> _rings;
    std::vector<rte_mempool*> _pools;
    std::unique_ptr<rcu::qsbr_domain> _qsbr;
    std::unique_ptr<rcu::published<net::fwd_table>> _fib;
    std::unique_ptr<rcu::published<net::neigh_table>> _neigh;
    std::unique_ptr<glue::netlink_mirror> _mirror;
    std::unique_ptr<stats::registry> _stats;
    // The compiled mesh config, shared by reference count: the control plane (REST threads)
    // reads the current one under _snap_mu; the L7 engine holds the one each request started
    // with. Workers never read it (they read the L4 view, published with RCU), so the
    // snapshot itself needs no grace period: it is freed with its last reference.
    struct snapshot_ref {
        std::shared_ptr<const snapshot::snapshot> current;
        [[nodiscard]] const snapshot::snapshot* load() const noexcept { return current.get(); }
    };
    std::unique_ptr<snapshot_ref> _snap;
    mutable std::mutex _snap_mu;
    uint64_t _snap_generation = 0; // guarded by _snap_mu
    // The L4 fast path: per-worker state and rings, the published view, and the health
    // source of truth (detector + table), all guarded by _snap_mu on the control side.
    std::vector<std::unique_ptr<fastpath::l4_lcore>> _l4;
    std::unique_ptr<rcu::published<fastpath::l4_view>> _l4view;
    fastpath::l4_settings _l4_settings;
    uint16_t _snat_span = 0; ///< SNAT ports per worker (l4_lcore::port_span, the rules' ranges)
    fastpath::forwarding _l4_default = fastpath::forwarding::fullnat;
    health::detector _detector;                                     // guarded by _snap_mu
    health::table _health;                                          // guarded by _snap_mu
    std::map<uint64_t, std::vector<std::string>> _outlier_clusters; // endpoint id -> clusters
    std::vector<rte_ring*> _signal_rings;
    std::vector<rte_ring*> _resolve_rings;
    // Endpoints on a port's subnet whose neighbour the kernel is asked to resolve before the
    // first packet needs it (guarded by _snap_mu); each is asked once per process.
    std::deque<std::pair<uint16_t, net::ip_addr>> _prime;
    std::set<std::pair<uint16_t, net::ip_addr>> _primed;
    // The L7 engine: created here, run by the slow-path lcore; configs reach it through
    // the slot (the lcore applies them between reactor polls).
    std::unique_ptr<l7::reactor> _reactor;
    std::unique_ptr<l7::engine> _engine;
    l7::config_slot _l7_slot;
    l7::health_sink _l7_health; // engine -> outlier detector
    std::mutex _wake_mu;
    std::condition_variable _wake_cv;
    bool _wake = false;                         // guarded by _wake_mu
    std::vector<l7::health_report> _l7_reports; // drained each tick (capacity kept)
    std::vector<uint64_t> _active_failed; // endpoints failing active checks (guarded by _snap_mu)
    uint64_t _active_version = 0;
    std::set<net::ip_addr> _local_vips; // local routes installed for L7 VIPs (_snap_mu)
    std::unique_ptr<ctl::config_store> _store;
    std::unique_ptr<ctl::api> _api;
    std::unique_ptr<ctl::rest_server> _rest;
    std::atomic<bool> _loaded{false};
    std::atomic<bool> _stop{false};
    bool _launched = false;
};

} // namespace sluice::app
