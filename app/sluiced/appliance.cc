#include "appliance.hh"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "sluice/compile/compile.hh"
#include "sluice/ctl/appliance_metrics.hh"
#include "sluice/ctl/metrics.hh"
#include "sluice/ctl/token.hh"
#include "sluice/fastpath/l4_active.hh"
#include "sluice/glue/kernel.hh"
#include "sluice/glue/log.hh"
#include "sluice/glue/port.hh"

namespace sluice::app {
namespace {

health::duration steady_now()
{
    return std::chrono::duration_cast<health::duration>(
        std::chrono::steady_clock::now().time_since_epoch());
}

static_assert(config::max_ports <= stats::max_ports, "counters must cover every port");

constexpr unsigned ring_size = 1024;
// The netlink mirror is read as soon as its socket is readable (the reactor's epoll says so,
// in the epoll_wait the slow path makes every loop anyway: no extra syscall); this timer is
// only the safety net (RCU reclaim of old tables, a missed edge).
constexpr auto netlink_poll_interval_us = 10000;

/// Notes that the netlink mirror's socket became readable (edge-triggered: once per burst
/// of events; the loop then polls the mirror until it reports no backlog).
struct netlink_wakeup final : l7::io_handler {
    bool readable = true; // poll once at start: events may be queued already
    void on_io(uint32_t /*events*/) noexcept override { readable = true; }
};

struct slowpath_arg {
    fastpath::slowpath_ctx ctx;
    glue::netlink_mirror* mirror;
    const std::atomic<bool>* stop;
    uint32_t idle_sleep_us;
    l7::reactor* reactor;
    l7::engine* engine;
    l7::config_slot* l7_slot;
};

int socket_of_port(uint16_t port)
{
    const int s = rte_eth_dev_socket_id(port);
    return s < 0 ? 0 : s;
}

} // namespace

appliance::appliance(config::appliance_config cfg)
    : _cfg(std::move(cfg)), _stats(std::make_unique<stats::registry>())
{
}

appliance::~appliance()
{
    shut_down();
}

result<void> appliance::bring_up()
{
    const unsigned nworkers = static_cast<unsigned>(_cfg.lcores.workers.size());
    if (nworkers > fastpath::max_workers) {
        return err("at most " + std::to_string(fastpath::max_workers) + " worker lcores");
    }
    for (unsigned l : _cfg.lcores.workers) {
        if (!rte_lcore_is_enabled(l) || l == rte_get_main_lcore()) {
            return err("worker lcore " + std::to_string(l) + " is not an enabled worker lcore");
        }
    }
    if (!rte_lcore_is_enabled(_cfg.lcores.slowpath) ||
        _cfg.lcores.slowpath == rte_get_main_lcore()) {
        return err("slow-path lcore " + std::to_string(_cfg.lcores.slowpath) +
                   " is not an enabled worker lcore");
    }

    if (_cfg.exception.kind == config::exception_kind::virtio_user &&
        access(_cfg.exception.vhost_path.c_str(), R_OK | W_OK) != 0) {
        return err("exception.kind \"virtio-user\" needs " + _cfg.exception.vhost_path +
                   " (modprobe vhost-net), which is missing or not writable; or use kind = "
                   "\"tap\"");
    }
    // The SNAT port partition the workers use and the steering rules encode (owner_of()).
    const bool steering = _cfg.l4.flow_steering == config::flow_steering_mode::automatic;
    _snat_span = glue::snat_port_span(static_cast<uint16_t>(nworkers), steering);
    // Probe every NIC first: pools are per NUMA socket of the ports.
    _ports.resize(_cfg.ports.size());
    for (size_t i = 0; i < _cfg.ports.size(); ++i) {
        auto id = glue::probe(_cfg.ports[i].device);
        if (!id) {
            close_all();
            return err("port " + _cfg.ports[i].name + ": " + id.err().message);
        }
        _ports[i].nic = *id;
    }
    // Every mbuf that can sit somewhere at once: NIC descriptors, exception descriptors,
    // rings, and per-lcore caches, with room for bursts in flight.
    std::map<int, unsigned> need;
    for (size_t i = 0; i < _cfg.ports.size(); ++i) {
        const auto& p = _cfg.ports[i];
        need[socket_of_port(_ports[i].nic)] +=
            p.queues * (p.rx_desc + p.tx_desc) + 2 * 1024 + 2 * nworkers * ring_size;
    }
    std::map<int, rte_mempool*> pool_of;
    for (auto& [socket, n] : need) {
        unsigned mbufs = 1;
        const unsigned want = std::max<unsigned>(n + (nworkers + 2) * (256 + fastpath::burst_size),
                                                 _cfg.mempool.mbufs + 1);
        while (mbufs < want) {
            mbufs <<= 1;
        }
        auto mp = glue::create_pool(socket, mbufs - 1, "mbufs_s" + std::to_string(socket));
        if (!mp) {
            close_all();
            return mp.err();
        }
        _pools.push_back(*mp);
        pool_of[socket] = *mp;
        SLUICE_LOG(INFO, glue, "socket %d: %u mbufs", socket, mbufs - 1);
    }

    _ctx.resize(_cfg.ports.size());
    for (size_t i = 0; i < _cfg.ports.size(); ++i) {
        const auto& p = _cfg.ports[i];
        auto& rt = _ports[i];
        rte_mempool* mp = pool_of[socket_of_port(rt.nic)];
        if (auto r = glue::configure_and_start(rt.nic, p.name, p.queues, p.queues, p.rx_desc,
                                               p.tx_desc, p.mtu, mp);
            !r) {
            close_all();
            return r;
        }
        rt.nic_up = true;
        const auto mac = glue::port_mac(rt.nic);
        const auto devargs =
            glue::exception_devargs(_cfg.exception, static_cast<unsigned>(i), p.name, mac);
        auto exc = glue::probe(devargs);
        if (!exc) {
            close_all();
            return err("port " + p.name + ": exception interface: " + exc.err().message);
        }
        rt.exc = *exc;
        // Before the interface comes up (configure_and_start): its link-local address is
        // usable at once, so the kernel's neighbour solicitations leave from the start.
        if (auto r = glue::skip_ipv6_dad(p.name); !r) {
            SLUICE_LOG(WARNING, glue, "port %s: %s", p.name.c_str(), r.err().message.c_str());
        }
        if (auto r = glue::configure_and_start(rt.exc, p.name + " (exception)", 1, 1, 1024, 1024,
                                               p.mtu, mp);
            !r) {
            close_all();
            return r;
        }
        rt.exc_up = true;
        if (auto r = glue::configure_interface(p.name, p.mtu, p.addresses); !r) {
            close_all();
            return r;
        }
        // The kernel answers ARP/ND for the SNAT addresses (an SNAT address on the backends'
        // subnet works); it never uses them as a source (kernel.hh). Fixed at start, like
        // the config file they come from; they go away with the interface.
        if (auto r = glue::add_snat_addresses(p.name, p.snat); !r) {
            close_all();
            return r;
        }
        auto& c = _ctx[i];
        c.nic = rt.nic;
        c.exc = rt.exc;
        c.index = static_cast<uint16_t>(i);
        c.inject_worker = static_cast<uint16_t>(i % nworkers);
        c.mac = mac.bytes;
        c.mtu = p.mtu;
        for (const net::ip_addr& a : p.snat) {
            if (a.is_v4() && c.snat4_count < c.snat4.size()) {
                std::memcpy(c.snat4[c.snat4_count++].data(), a.bytes.data(), 4);
            } else if (a.is_v6() && c.snat6_count < c.snat6.size()) {
                c.snat6[c.snat6_count++] = a.bytes;
            }
        }
        // Replies to the SNAT ports straight to their owner's queue where the NIC can; the
        // software rings stay active either way (ICMP errors, unsteered packets).
        glue::steering_request sr;
        sr.enabled = steering;
        sr.queues = p.queues;
        sr.span = _snat_span;
        sr.snat = p.snat;
        rt.steering = glue::setup_steering(rt.nic, sr);
        if (rt.steering.active) {
            SLUICE_LOG(INFO, glue,
                       "port %s: flow steering rte_flow: %zu rules send replies to SNAT ports "
                       "%u-%u to their worker's queue",
                       p.name.c_str(), rt.steering.rules, fastpath::snat_port_base,
                       glue::snat_port_range(static_cast<uint16_t>(p.queues - 1), _snat_span).hi);
        } else if (steering && p.queues > 1 && !p.snat.empty()) {
            SLUICE_LOG(NOTICE, glue,
                       "port %s: flow steering software: replies reach their worker through "
                       "redirection rings; the NIC took no rules: %s",
                       p.name.c_str(), rt.steering.reason.c_str());
        } else {
            SLUICE_LOG(INFO, glue, "port %s: flow steering software (%s)", p.name.c_str(),
                       rt.steering.reason.c_str());
        }
        const int socket = socket_of_port(rt.nic);
        for (unsigned w = 0; w < nworkers; ++w) {
            for (int dir = 0; dir < 2; ++dir) {
                const std::string name = std::string(dir == 0 ? "punt" : "inj") + "_p" +
                                         std::to_string(i) + "_w" + std::to_string(w);
                rte_ring* r =
                    rte_ring_create(name.c_str(), ring_size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
                if (r == nullptr) {
                    close_all();
                    return err("cannot create ring " + name);
                }
                _rings.push_back(r);
                (dir == 0 ? c.punt : c.inject)[w] = r;
            }
        }
        SLUICE_LOG(INFO, glue, "port %s: device %s, MAC %s, %u queues, exception %s, link %s",
                   p.name.c_str(), p.device.c_str(), mac.to_string().c_str(), p.queues,
                   devargs.c_str(), glue::link_state(rt.nic).c_str());
    }
    for (const auto& r : _cfg.routes) {
        if (auto res = glue::install_route(r, r.port); !res) {
            close_all();
            return res;
        }
    }

    auto q = rcu::qsbr_domain::create(nworkers);
    if (!q) {
        close_all();
        return q.err();
    }
    _qsbr = std::move(*q);
    _fib = std::make_unique<rcu::published<net::fwd_table>>(*_qsbr);
    _neigh = std::make_unique<rcu::published<net::neigh_table>>(*_qsbr);
    std::map<unsigned, uint16_t> ifmap;
    for (size_t i = 0; i < _cfg.ports.size(); ++i) {
        auto idx = glue::ifindex(_cfg.ports[i].name);
        if (!idx) {
            close_all();
            return idx.err();
        }
        ifmap[*idx] = static_cast<uint16_t>(i);
    }
    auto m = glue::netlink_mirror::create(ifmap, *_fib, *_neigh, socket_of_port(_ports[0].nic));
    if (!m) {
        close_all();
        return m.err();
    }
    _mirror = std::move(*m);
    if (auto r = _mirror->sync(); !r) {
        close_all();
        return r;
    }
    if (auto r = create_l4(); !r) {
        close_all();
        return r;
    }
    return ok();
}

result<void> appliance::create_l4()
{
    const auto nworkers = static_cast<uint16_t>(_cfg.lcores.workers.size());
    auto fwd = fastpath::parse_forwarding(_cfg.l4.forwarding);
    if (!fwd) {
        return fwd.err();
    }
    _l4_default = *fwd;
    _l4_settings.gue_port = rte_cpu_to_be_16(_cfg.l4.gue_port);
    _l4_settings.encap_ttl = _cfg.l4.encap_ttl;
    _l4view = std::make_unique<rcu::published<fastpath::l4_view>>(*_qsbr);
    const int socket = socket_of_port(_ports[0].nic);
    conntrack::timeout_seconds to;
    to.tcp_syn = _cfg.conntrack.timeouts.tcp_syn;
    to.tcp_established = _cfg.conntrack.timeouts.tcp_established;
    to.tcp_fin = _cfg.conntrack.timeouts.tcp_fin;
    to.tcp_closed = _cfg.conntrack.timeouts.tcp_closed;
    to.udp = _cfg.conntrack.timeouts.udp;
    to.icmp = _cfg.conntrack.timeouts.icmp;
    // The conntrack hash seed: secret per process (clients must not aim at buckets); it does
    // not affect backend choice, which uses the fixed flow_hash.
    uint64_t seed = rte_rdtsc() ^ (static_cast<uint64_t>(getpid()) << 32);
    for (uint16_t w = 0; w < nworkers; ++w) {
        auto l =
            fastpath::l4_lcore::create(_cfg.conntrack.capacity, to, rte_get_tsc_hz(), seed + w);
        if (!l) {
            return err("conntrack for worker " + std::to_string(w) + ": " + l.err().message);
        }
        (*l)->worker = w;
        (*l)->workers = nworkers;
        (*l)->port_span = _snat_span;
        (*l)->view = _l4view.get();
        (*l)->fib = _fib.get();
        (*l)->neigh = _neigh.get();
        (*l)->settings = &_l4_settings;
        const std::string sig = "l4sig_w" + std::to_string(w);
        const std::string res = "l4res_w" + std::to_string(w);
        (*l)->signals = rte_ring_create_elem(sig.c_str(), sizeof(fastpath::health_signal), 4096,
                                             socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
        (*l)->resolve = rte_ring_create_elem(res.c_str(), sizeof(fastpath::resolve_request), 1024,
                                             socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
        if ((*l)->signals == nullptr || (*l)->resolve == nullptr) {
            return err("cannot create the L4 rings of worker " + std::to_string(w));
        }
        _signal_rings.push_back((*l)->signals);
        _resolve_rings.push_back((*l)->resolve);
        _l4.push_back(std::move(*l));
    }
    for (uint16_t a = 0; a < nworkers; ++a) {
        for (uint16_t b = 0; b < nworkers; ++b) {
            if (a == b) {
                continue;
            }
            const std::string name = "l4rd_" + std::to_string(a) + "_" + std::to_string(b);
            rte_ring* r =
                rte_ring_create(name.c_str(), ring_size, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
            if (r == nullptr) {
                return err("cannot create ring " + name);
            }
            _rings.push_back(r);
            _l4[a]->redirect_out[b] = r;
            _l4[b]->redirect_in[a] = r;
        }
    }
    SLUICE_LOG(INFO, glue,
               "L4: %u worker(s), conntrack %u flows each (%.0f bytes per flow), "
               "default forwarding %s",
               nworkers, _cfg.conntrack.capacity, _l4.empty() ? 0.0 : _l4[0]->ct4.bytes_per_entry(),
               _cfg.l4.forwarding.c_str());
    return ok();
}

int appliance::worker_main(void* arg)
{
    fastpath::worker_loop(*static_cast<const fastpath::worker_ctx*>(arg));
    return 0;
}

int appliance::slowpath_main(void* arg)
{
    auto* a = static_cast<slowpath_arg*>(arg);
    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t nl_interval = hz / (1000000 / netlink_poll_interval_us);
    uint64_t next_nl = 0;
    unsigned idle = 0;
    netlink_wakeup nl_wake;
    const bool nl_epoll = a->reactor->add(a->mirror->fd(), &nl_wake, EPOLLIN).ok();
    if (!nl_epoll) {
        SLUICE_LOG(WARNING, glue,
                   "netlink mirror: not in the reactor's epoll set; read every %d us only",
                   netlink_poll_interval_us);
    }
    while (!a->stop->load(std::memory_order_acquire)) {
        unsigned moved = fastpath::slowpath_poll(a->ctx);
        // The L7 engine shares the lcore: a new config between polls, then whatever the
        // kernel sockets have (never blocking: the exception rings need polling too).
        if (auto c = a->l7_slot->take()) {
            if (auto r = a->engine->apply(std::move(c)); !r) {
                SLUICE_LOG(WARNING, glue, "l7: %s", r.err().message.c_str());
            }
        }
        moved += static_cast<unsigned>(a->reactor->poll(0));
        a->ctx.counters->loops.add(1);
        const uint64_t now = rte_rdtsc();
        if (nl_wake.readable || now >= next_nl ||
            (a->mirror->deferred() && now >= a->mirror->publish_due())) {
            nl_wake.readable = false;
            if (a->mirror->poll()) {
                moved += 1; // a published table: keep the loop awake for what follows
            }
            nl_wake.readable = a->mirror->backlog();
            next_nl = now + nl_interval;
        }
        if (moved != 0) {
            idle = 0;
            continue;
        }
        a->ctx.counters->idle_loops.add(1);
        if (a->idle_sleep_us != 0 && ++idle >= 256) {
            rte_delay_us_sleep(a->idle_sleep_us);
        }
    }
    if (nl_epoll) {
        a->reactor->remove(a->mirror->fd());
    }
    delete a;
    return 0;
}

result<void> appliance::launch()
{
    const unsigned nworkers = static_cast<unsigned>(_cfg.lcores.workers.size());
    _workers.resize(nworkers);
    for (unsigned w = 0; w < nworkers; ++w) {
        if (auto r = _qsbr->register_reader(w); !r) {
            return r;
        }
        auto& wc = _workers[w];
        wc.queue = static_cast<uint16_t>(w);
        wc.reader_id = w;
        wc.ports = _ctx;
        wc.counters = &_stats->lcore(_cfg.lcores.workers[w]);
        wc.qsbr = _qsbr.get();
        wc.stop = &_stop;
        wc.idle_sleep_us = _cfg.lcores.idle_sleep_us;
        wc.l4 = w < _l4.size() ? _l4[w].get() : nullptr;
        if (wc.l4 != nullptr) {
            wc.l4->counters = wc.counters;
        }
    }
    for (unsigned w = 0; w < nworkers; ++w) {
        if (rte_eal_remote_launch(worker_main, &_workers[w], _cfg.lcores.workers[w]) != 0) {
            _stop.store(true, std::memory_order_release);
            rte_eal_mp_wait_lcore();
            return err("cannot launch worker lcore " + std::to_string(_cfg.lcores.workers[w]));
        }
    }
    auto rx = l7::reactor::create();
    if (!rx) {
        return err("l7: " + rx.err().message);
    }
    _reactor = std::move(*rx);
    l7::engine_settings ls;
    ls.access_log = _cfg.l7.access_log;
    ls.trusted_sources = _cfg.l7.trusted_sources;
    ls.max_downstream_connections = _cfg.l7.max_connections;
    ls.health = &_l7_health;
    // The engine's observations queue up; the first of a batch wakes the main thread, which
    // feeds the detector and publishes an ejection within about a millisecond (the slow-path
    // lcore never waits for the snapshot mutex).
    _l7_health.set_notify([this] { wake(); });
    auto eng = l7::engine::create(*_reactor, ls);
    if (!eng) {
        return err("l7: " + eng.err().message);
    }
    _engine = std::move(*eng);
    auto* sp = new slowpath_arg{
        fastpath::slowpath_ctx{_ctx, nworkers, &_stats->lcore(_cfg.lcores.slowpath)},
        _mirror.get(),
        &_stop,
        _cfg.lcores.idle_sleep_us,
        _reactor.get(),
        _engine.get(),
        &_l7_slot};
    if (rte_eal_remote_launch(slowpath_main, sp, _cfg.lcores.slowpath) != 0) {
        delete sp;
        _stop.store(true, std::memory_order_release);
        rte_eal_mp_wait_lcore();
        return err("cannot launch the slow-path lcore " + std::to_string(_cfg.lcores.slowpath));
    }
    _launched = true;
    return ok();
}

void appliance::close_all() noexcept
{
    for (auto& p : _ports) {
        if (p.exc_up) {
            glue::close_port(p.exc);
            p.exc_up = false;
        }
        if (p.nic_up) {
            if (p.steering.active) {
                glue::remove_steering(p.nic);
                p.steering = {};
            }
            glue::close_port(p.nic);
            p.nic_up = false;
        }
    }
    for (rte_ring* r : _rings) {
        void* m = nullptr;
        while (rte_ring_dequeue(r, &m) == 0) {
            rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
        }
        rte_ring_free(r);
    }
    _rings.clear();
    for (rte_ring* r : _signal_rings) {
        rte_ring_free(r);
    }
    _signal_rings.clear();
    for (rte_ring* r : _resolve_rings) {
        rte_ring_free(r);
    }
    _resolve_rings.clear();
}

void appliance::publish_snapshot(std::unique_ptr<snapshot::snapshot> snap, uint64_t generation)
{
    std::lock_guard lock(_snap_mu);
    _snap->current = std::shared_ptr<const snapshot::snapshot>(std::move(snap));
    _snap_generation = generation;
    rebuild_l4(true); // publishes the workers' L4 view with RCU (P1)
    sync_local_vips();
    push_l7();
}

void appliance::sync_local_vips()
{
    // L7 listeners on addresses the box does not have (HTTP Service VIPs, Gateway binds)
    // need the kernel to accept their TCP: a local route each, removed with the listener.
    std::set<net::ip_addr> want;
    for (const auto& l : _snap->current->listeners) {
        if (!snapshot::is_l7(l.kind) || l.address.empty()) {
            continue;
        }
        auto a = net::ip_addr::parse(l.address);
        if (!a) {
            continue;
        }
        bool own = false;
        for (const auto& p : _cfg.ports) {
            for (const auto& pa : p.addresses) {
                own = own || pa.addr == *a;
            }
        }
        if (!own) {
            want.insert(*a);
        }
    }
    for (const auto& a : want) {
        if (_local_vips.count(a) == 0) {
            if (auto r = glue::set_local_address(a, true); !r) {
                SLUICE_LOG(WARNING, glue, "l7: %s", r.err().message.c_str());
                continue;
            }
            _local_vips.insert(a);
        }
    }
    for (auto it = _local_vips.begin(); it != _local_vips.end();) {
        if (want.count(*it) == 0) {
            (void)glue::set_local_address(*it, false);
            it = _local_vips.erase(it);
        } else {
            ++it;
        }
    }
}

void appliance::wake()
{
    {
        std::lock_guard lock(_wake_mu);
        _wake = true;
    }
    _wake_cv.notify_one();
}

void appliance::wait(std::chrono::milliseconds most)
{
    std::unique_lock lock(_wake_mu);
    _wake_cv.wait_for(lock, most, [this] { return _wake; });
    _wake = false;
}

void appliance::push_l7()
{
    if (!_snap || !_snap->current) {
        return;
    }
    auto c = std::make_shared<l7::engine_config>();
    c->snap = _snap->current;
    c->health = std::make_shared<const health::table>(_health);
    c->generation = _snap_generation;
    _l7_slot.put(std::move(c));
}

void appliance::rebuild_l4(bool reconfigure)
{
    if (!_l4view) {
        return;
    }
    const snapshot::snapshot* s = _snap ? _snap->load() : nullptr;
    if (reconfigure) {
        // The detector follows the snapshot: clusters with outlierDetection and their
        // endpoints; surviving endpoints keep their state.
        std::vector<health::cluster_config> cc;
        _outlier_clusters.clear();
        if (s != nullptr) {
            for (const auto& c : s->clusters) {
                if (!c.policy.outlier || c.missing) {
                    continue;
                }
                const auto& o = *c.policy.outlier;
                health::cluster_config k;
                k.name = c.name;
                k.outlier.consecutive_5xx_errors = o.consecutive_5xx_errors;
                k.outlier.consecutive_gateway_errors = o.consecutive_gateway_errors;
                k.outlier.split_external_local_origin_errors = o.split_external_local_origin_errors;
                k.outlier.consecutive_local_origin_failures = o.consecutive_local_origin_failures;
                k.outlier.interval = o.interval;
                k.outlier.base_ejection_time = o.base_ejection_time;
                k.outlier.max_ejection_percent = o.max_ejection_percent;
                for (const auto& e : c.endpoints) {
                    k.endpoints.push_back(e.id);
                    _outlier_clusters[e.id].push_back(c.name);
                }
                cc.push_back(std::move(k));
            }
        }
        _detector.configure(std::move(cc), steady_now());
    }
    _health = health::table::build(_detector, _active_failed);
    fastpath::l4_view_input in;
    in.snap = s;
    in.default_forwarding = _l4_default;
    for (const auto& p : _cfg.ports) {
        for (const auto& a : p.addresses) {
            in.local_addresses.push_back(a.addr);
        }
    }
    const health::table& ht = _health;
    in.unhealthy = [&ht](std::string_view cluster, uint64_t id) {
        return ht.lookup(cluster, id) != health::reason::healthy;
    };
    in.previous = _l4view->load();
    in.tsc_hz = rte_get_tsc_hz();
    in.workers = static_cast<uint16_t>(_cfg.lcores.workers.size());
    auto v = fastpath::build_l4_view(in);
    if (!v) {
        // The snapshot was accepted (compile succeeded); an L4 table that cannot be built
        // keeps the previous view and says why.
        SLUICE_LOG(ERR, glue, "L4 view not rebuilt: %s", v.err().to_string().c_str());
        return;
    }
    if (reconfigure) {
        // New endpoints on a connected subnet: have the kernel resolve them now, so the first
        // packet of a flow toward them is not dropped for want of a neighbour.
        for (size_t i = 0; i < (*v)->cluster_count(); ++i) {
            for (const auto& e : (*v)->cluster(i).endpoints) {
                if (e.family == 0) {
                    continue;
                }
                net::ip_addr a;
                a.family = e.family;
                a.bytes = e.addr;
                for (size_t p = 0; p < _cfg.ports.size(); ++p) {
                    for (const auto& pre : _cfg.ports[p].addresses) {
                        const auto key = std::make_pair(static_cast<uint16_t>(p), a);
                        if (pre.contains(a) && _primed.insert(key).second) {
                            _prime.push_back(key);
                        }
                    }
                }
            }
        }
    } else {
        for (size_t i = 0; i < (*v)->cluster_count(); ++i) {
            const auto& c = (*v)->cluster(i);
            const auto* before =
                in.previous != nullptr ? in.previous->find_cluster(c.name) : nullptr;
            if (before != &c) {
                const auto load = c.selector.load();
                std::string levels;
                for (size_t l = 0; l < load.size(); ++l) {
                    levels += (l == 0 ? "" : "/") + std::to_string(load[l]);
                }
                SLUICE_LOG(INFO, glue,
                           "health: cluster %s: %u of %zu endpoints unhealthy; "
                           "level load %% %s",
                           c.name.c_str(), c.unhealthy, c.endpoints.size(), levels.c_str());
            }
        }
    }
    _l4view->publish(std::move(*v));
}

void appliance::process_health()
{
    const health::duration now = steady_now();
    bool changed = false;
    fastpath::health_signal sig[256];
    for (rte_ring* r : _signal_rings) {
        // Up to 4096 signals per ring per tick (the ring holds 4096): a flood of SYNs that
        // expire unanswered must not leave the ring full for the failures that matter.
        unsigned n = 0;
        for (int round = 0; round < 16 && (round == 0 || n == std::size(sig)); ++round) {
            n = rte_ring_sc_dequeue_burst_elem(r, sig, sizeof(sig[0]), std::size(sig), nullptr);
            for (unsigned i = 0; i < n; ++i) {
                const auto it = _outlier_clusters.find(sig[i].endpoint_id);
                if (it == _outlier_clusters.end()) {
                    continue;
                }
                const auto o = sig[i].outcome == fastpath::signal_success
                                   ? health::outcome::success
                                   : health::outcome::connect_failure;
                for (const std::string& c : it->second) {
                    changed = _detector.report(c, sig[i].endpoint_id, o, now) || changed;
                }
            }
        }
    }
    // The L7 engine's observations (5xx, gateway errors, connect and local-origin failures),
    // for the snapshot they were made against; reports about an older one are dropped.
    _l7_health.drain(_l7_reports);
    if (_snap && _snap->current) {
        for (const l7::health_report& r : _l7_reports) {
            if (r.generation != _snap_generation || r.cluster >= _snap->current->clusters.size()) {
                continue;
            }
            changed = _detector.report(_snap->current->clusters[r.cluster].name, r.endpoint, r.what,
                                       now) ||
                      changed;
        }
    }
    // Active health checks run on the slow-path lcore; their failing set joins the table.
    if (_engine && _engine->active_check_version() != _active_version) {
        _active_version = _engine->active_check_version();
        _active_failed = _engine->active_check_failed();
        changed = true;
    }
    changed = _detector.tick(now) || changed;
    if (changed) {
        rebuild_l4(false);
        push_l7();
    }
}

void appliance::process_resolves()
{
    std::vector<std::pair<uint16_t, net::ip_addr>> prime;
    {
        std::lock_guard lock(_snap_mu);
        while (!_prime.empty() && prime.size() < 64) { // bounded per tick
            prime.push_back(_prime.front());
            _prime.pop_front();
        }
    }
    for (const auto& [port, a] : prime) {
        if (auto idx = glue::ifindex(_cfg.ports[port].name); idx) {
            (void)glue::resolve_neighbour(*idx, a); // best effort: workers ask again on a miss
        }
    }
    fastpath::resolve_request req[32];
    for (rte_ring* r : _resolve_rings) {
        const unsigned n =
            rte_ring_sc_dequeue_burst_elem(r, req, sizeof(req[0]), std::size(req), nullptr);
        for (unsigned i = 0; i < n; ++i) {
            if (req[i].port >= _cfg.ports.size()) {
                continue;
            }
            auto idx = glue::ifindex(_cfg.ports[req[i].port].name);
            net::ip_addr a;
            a.family = req[i].family;
            a.bytes = req[i].addr;
            if (idx) {
                if (auto res = glue::resolve_neighbour(*idx, a); !res) {
                    SLUICE_LOG(WARNING, glue, "%s", res.err().message.c_str());
                }
            }
        }
    }
}

void appliance::tick()
{
    if (_snap) {
        std::lock_guard lock(_snap_mu);
        if (_l4view) {
            process_health();
            _l4view->reclaim();
        }
    }
    process_resolves();
}

bool appliance::ready() const
{
    if (!_loaded.load()) {
        return false;
    }
    for (const auto& p : _ports) {
        rte_eth_link link{};
        if (!p.nic_up || rte_eth_link_get_nowait(p.nic, &link) != 0 ||
            link.link_status != RTE_ETH_LINK_UP) {
            return false;
        }
    }
    return true;
}

ctl::api_hooks appliance::make_hooks()
{
    ctl::api_hooks h;
    auto view = [this] {
        ctl::appliance_view v;
        for (const auto& p : _cfg.ports) {
            v.port_names.push_back(p.name);
        }
        for (const auto& p : _ports) {
            v.port_flow_rules.push_back(p.steering.rules);
        }
        for (unsigned l : _cfg.lcores.workers) {
            v.lcores.emplace_back(l, "worker");
        }
        v.lcores.emplace_back(_cfg.lcores.slowpath, "slowpath");
        v.counters = _stats.get();
        v.generation = _store ? _store->generation() : 0;
        v.objects = _store ? _store->size() : 0;
        return v;
    };
    h.ready = [this] { return ready(); };
    h.stats = [view] { return ctl::render_stats(view()); };
    h.metrics = [this, view] {
        std::string text = ctl::render_metrics(view());
        // Per-cluster series exist (at zero) from the moment a cluster does.
        std::lock_guard lock(_snap_mu);
        if (const auto* s = _snap->load(); s != nullptr) {
            ctl::exposition e;
            for (const char* name :
                 {"envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_cx_active",
                  "envoy_cluster_upstream_cx_total", "envoy_cluster_upstream_rq_pending_overflow",
                  "envoy_cluster_upstream_rq_retry_overflow",
                  "envoy_cluster_outlier_detection_ejections_active"}) {
                const std::string_view n(name);
                for (const auto& c : s->clusters) {
                    double v = 0;
                    if (n == "envoy_cluster_outlier_detection_ejections_active") {
                        v = static_cast<double>(_detector.ejections_active(c.name));
                    } else if (auto cs = _engine ? _engine->cluster_stats(c.name) : std::nullopt) {
                        v = static_cast<double>(
                            n == "envoy_cluster_upstream_rq_total"    ? cs->rq_total
                            : n == "envoy_cluster_upstream_cx_active" ? cs->cx_active
                            : n == "envoy_cluster_upstream_cx_total"  ? cs->cx_total
                            : n == "envoy_cluster_upstream_rq_retry_overflow"
                                ? cs->retry_overflow
                                : cs->rq_pending_overflow + cs->rq_overflow);
                    }
                    e.sample(name, {{"envoy_cluster_name", c.name}}, v);
                }
            }
            text += e.text();
        }
        return text;
    };
    h.status = [this] {
        nlohmann::json j;
        j["node"] = {{"name", _cfg.node.name},
                     {"region", _cfg.node.region},
                     {"zone", _cfg.node.zone},
                     {"subzone", _cfg.node.subzone},
                     {"network", _cfg.node.network}};
        j["lcores"] = {{"workers", _cfg.lcores.workers}, {"slowpath", _cfg.lcores.slowpath}};
        auto ports = nlohmann::json::array();
        for (size_t i = 0; i < _cfg.ports.size(); ++i) {
            const auto& p = _cfg.ports[i];
            std::vector<std::string> addrs;
            for (const auto& a : p.addresses) {
                addrs.push_back(a.to_string());
            }
            ports.push_back({{"name", p.name},
                             {"device", p.device},
                             {"mac", i < _ports.size() ? glue::port_mac(_ports[i].nic).to_string()
                                                       : std::string()},
                             {"link", i < _ports.size() ? glue::link_state(_ports[i].nic)
                                                        : std::string("down")},
                             {"queues", p.queues},
                             {"addresses", addrs}});
            if (i < _ports.size()) { // how full-NAT replies reach their worker, and why
                const glue::steering_status& st = _ports[i].steering;
                ports.back()["flow_steering"] = st.mode();
                ports.back()["flow_rules"] = st.rules;
                ports.back()["flow_steering_reason"] = st.reason;
            }
        }
        j["ports"] = ports;
        std::lock_guard lock(_snap_mu);
        if (const auto* s = _snap->load(); s != nullptr) {
            size_t endpoints = 0;
            for (const auto& c : s->clusters) {
                endpoints += c.endpoints.size();
            }
            j["snapshot"] = {{"generation", _snap_generation},
                             {"listeners", s->listeners.size()},
                             {"route_tables", s->http.size() + s->tcp.size() + s->tls.size()},
                             {"clusters", s->clusters.size()},
                             {"endpoints", endpoints}};
        }
        j["ready"] = ready();
        return j;
    };
    h.endpoints = [this](const std::string& host,
                         const std::string& subset) -> result<nlohmann::json> {
        std::lock_guard lock(_snap_mu);
        const auto* s = _snap->load();
        auto out = nlohmann::json::array();
        if (s != nullptr) {
            for (const auto& c : s->clusters) {
                if (c.host != host || c.subset != subset) {
                    continue;
                }
                for (size_t i = 0; i < c.endpoints.size(); ++i) {
                    const auto& e = c.endpoints[i];
                    const uint32_t level =
                        i < c.plan.level_of.size() ? c.plan.level_of[i] : UINT32_MAX;
                    // L4: open TCP connections the workers count for this endpoint id (a
                    // racy read of their tables, fine for monitoring: l4_active.hh), per
                    // endpoint across clusters. L7: this cluster's gauges in the engine.
                    uint64_t l4_conns = 0;
                    for (const auto& l : _l4) {
                        l4_conns += fastpath::l4_active_connections(*l, e.id);
                    }
                    l7::endpoint_counters l7c;
                    if (_engine) {
                        l7c = _engine->endpoint_stats(c.name, e.id).value_or(l7c);
                    }
                    out.push_back(
                        {{"cluster", c.name},
                         {"address", e.address},
                         {"port", e.port},
                         {"labels", e.endpoint_labels},
                         {"locality",
                          e.locality.region + "/" + e.locality.zone + "/" + e.locality.subzone},
                         {"network", e.network},
                         {"node", e.node_name},
                         {"priority",
                          level == UINT32_MAX ? nlohmann::json(nullptr) : nlohmann::json(level)},
                         {"weight", e.weight},
                         {"health",
                          !e.ready ? "not ready"
                          : _health.lookup(c.name, e.id) == health::reason::outlier_ejected
                              ? "ejected"
                          : _health.lookup(c.name, e.id) == health::reason::active_check_failed
                              ? "failed health check"
                              : "healthy"},
                         {"active_connections", l4_conns + l7c.cx_active},
                         {"active_requests", l7c.rq_active},
                         {"l4_connections", l4_conns},
                         {"l7_connections", l7c.cx_active},
                         {"origin", e.origin}});
                }
            }
        }
        if (out.empty()) {
            return err("no endpoints for host " + host +
                       (subset.empty() ? std::string() : " subset " + subset) +
                       " in the published snapshot");
        }
        return nlohmann::json{{"host", host}, {"subset", subset}, {"endpoints", out}};
    };
    return h;
}

result<void> appliance::start_config()
{
    _snap = std::make_unique<snapshot_ref>();
    compile::node_locality node;
    node.locality = {_cfg.node.region, _cfg.node.zone, _cfg.node.subzone};
    node.network = _cfg.node.network;
    node.node_name = _cfg.node.name;
    compile::options copts;
    copts.cluster_domain = _cfg.mesh.cluster_domain;
    ctl::publisher pub;
    struct prepared_snapshot {
        uint64_t generation;
        snapshot::snapshot snap;
    };
    pub.prepare = [node, copts](const model::mesh& m,
                                uint64_t generation) -> result<std::shared_ptr<void>> {
        auto snap = compile::compile(m, node, copts);
        if (!snap) {
            return snap.err();
        }
        return std::shared_ptr<void>(
            std::make_shared<prepared_snapshot>(prepared_snapshot{generation, std::move(*snap)}));
    };
    // Runs inside the store's transaction (its lock held): must not call back into it.
    pub.activate = [this](std::shared_ptr<void> prepared) {
        auto p = std::static_pointer_cast<prepared_snapshot>(prepared);
        publish_snapshot(std::make_unique<snapshot::snapshot>(std::move(p->snap)), p->generation);
    };
    model::options mopts;
    mopts.cluster_domain = _cfg.mesh.cluster_domain;
    _store = std::make_unique<ctl::config_store>(_cfg.state_dir, mopts, pub);
    if (auto r = _store->load(_cfg.mesh.files); !r) {
        return err("mesh config: " + r.err().to_string());
    }
    const std::string token_file =
        _cfg.api.token_file.empty() ? _cfg.state_dir + "/api-token" : _cfg.api.token_file;
    auto token = ctl::load_or_create_token(token_file);
    if (!token) {
        return err("api token: " + token.err().to_string());
    }
    _api = std::make_unique<ctl::api>(*_store, make_hooks(), *token);
    _rest = std::make_unique<ctl::rest_server>();
    if (auto r = _rest->start(*_api, _cfg.api.address, _cfg.api.port); !r) {
        return r;
    }
    _loaded.store(true);
    SLUICE_LOG(INFO, glue, "config generation %lu (%zu objects); REST on %s, token in %s",
               static_cast<unsigned long>(_store->generation()), _store->size(),
               _cfg.api.listen.c_str(), token_file.c_str());
    return ok();
}

void appliance::shut_down() noexcept
{
    if (_rest) {
        _rest->stop();
        _rest.reset();
    }
    if (_launched) {
        // Release pairs with the lcores' acquire load of the flag.
        _stop.store(true, std::memory_order_release);
        rte_eal_mp_wait_lcore();
        _launched = false;
    }
    // The slow-path lcore has stopped: the engine may be closed from this thread.
    if (_engine) {
        _engine->shut_down();
        _engine.reset();
    }
    for (const auto& a : _local_vips) {
        (void)glue::set_local_address(a, false); // the kernel stops accepting for the VIPs
    }
    _local_vips.clear();
    _reactor.reset();
    _mirror.reset();
    _l4view.reset();
    _l4.clear();
    _fib.reset();
    _neigh.reset();
    _api.reset();
    _store.reset();
    _snap.reset();
    close_all();
}

void appliance::print_stats() const
{
    const auto t = _stats->sum();
    for (size_t i = 0; i < _cfg.ports.size(); ++i) {
        const auto& p = t.port[i];
        std::printf("stats: port=%s rx_packets=%" PRIu64 " rx_bytes=%" PRIu64 " tx_packets=%" PRIu64
                    " tx_bytes=%" PRIu64 " to_kernel=%" PRIu64 " from_kernel=%" PRIu64 "\n",
                    _cfg.ports[i].name.c_str(), p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes,
                    p.to_kernel, p.from_kernel);
    }
    std::printf("stats: drops total=%" PRIu64, t.total_drops());
    for (size_t d = 0; d < stats::drop_count; ++d) {
        std::printf(" %.*s=%" PRIu64, static_cast<int>(stats::drop_name(stats::drop(d)).size()),
                    stats::drop_name(stats::drop(d)).data(), t.drops[d]);
    }
    std::printf("\n");
    std::printf("stats: l4");
    for (size_t i = 0; i < stats::l4_event_count; ++i) {
        const auto n = stats::l4_event_name(stats::l4_event(i));
        std::printf(" %.*s=%" PRIu64, static_cast<int>(n.size()), n.data(), t.l4[i]);
    }
    uint64_t flows = 0;
    for (const auto& l : _l4) {
        flows += l->ct4.size() + l->ct6.size();
    }
    std::printf(" conntrack_entries=%" PRIu64 "\n", flows);
    if (_engine) {
        const l7::engine_stats& l = _engine->stats();
        auto v = [](const std::atomic<uint64_t>& x) { return x.load(std::memory_order_relaxed); };
        std::printf(
            "stats: l7 downstream_cx_total=%" PRIu64 " downstream_cx_active=%" PRIu64
            " downstream_rq_total=%" PRIu64 " rq_2xx=%" PRIu64 " rq_3xx=%" PRIu64 " rq_4xx=%" PRIu64
            " rq_5xx=%" PRIu64 " rq_bad=%" PRIu64 " upstream_cx_total=%" PRIu64
            " upstream_cx_active=%" PRIu64 " upstream_cx_connect_fail=%" PRIu64
            " upstream_rq_retry=%" PRIu64 " upstream_rq_timeout=%" PRIu64 " no_route=%" PRIu64
            " no_healthy_upstream=%" PRIu64 " tunnels=%" PRIu64 "\n",
            v(l.downstream_cx_total), v(l.downstream_cx_active), v(l.downstream_rq_total),
            v(l.downstream_rq_2xx), v(l.downstream_rq_3xx), v(l.downstream_rq_4xx),
            v(l.downstream_rq_5xx), v(l.downstream_rq_bad), v(l.upstream_cx_total),
            v(l.upstream_cx_active), v(l.upstream_cx_connect_fail), v(l.upstream_rq_retry),
            v(l.upstream_rq_timeout), v(l.no_route), v(l.no_healthy_upstream), v(l.tunnels));
    }
    auto lcore_line = [&](unsigned l, const char* role) {
        const auto& c = _stats->lcore(l);
        const auto s = _stats->sum_lcore(l);
        uint64_t rx = 0;
        uint64_t tx = 0;
        for (const auto& p : s.port) {
            rx += p.rx_packets;
            tx += p.tx_packets;
        }
        std::printf("stats: lcore=%u role=%s rx_packets=%" PRIu64 " tx_packets=%" PRIu64
                    " loops=%" PRIu64 " idle_loops=%" PRIu64 "\n",
                    l, role, rx, tx, c.loops.get(), c.idle_loops.get());
    };
    for (unsigned l : _cfg.lcores.workers) {
        lcore_line(l, "worker");
    }
    lcore_line(_cfg.lcores.slowpath, "slowpath");
    if (_mirror) {
        const auto* fib = _fib->load();
        const auto* neigh = _neigh->load();
        std::printf("stats: mirror route_tables=%" PRIu64 " neighbour_tables=%" PRIu64
                    " routes=%zu neighbours=%zu\n",
                    _mirror->route_tables_published(), _mirror->neighbour_tables_published(),
                    fib != nullptr ? fib->route_count() : 0, neigh != nullptr ? neigh->size() : 0);
    }
    std::fflush(stdout);
}

} // namespace sluice::app
