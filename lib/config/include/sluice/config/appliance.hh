#pragma once
/// @file
/// The appliance config (`conf/sluice.conf`, libconfig syntax): how the box is built —
/// node locality, EAL arguments, lcore roles, ports, kernel routes, the exception path,
/// conntrack sizing, the REST listener, the state directory and mesh files to load.
///
/// load() reads and validates everything before anything is touched, and reports every
/// problem it finds as `FILE:LINE: setting: message`. Pure: no EAL, no NIC, no syscall but
/// the file read. Control path only.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/net/addr.hh"

namespace sluice::config {

/// Ports a config may declare (each has an exception interface and counters).
inline constexpr size_t max_ports = 16;
/// SNAT addresses a port may have, per address family (the workers' fixed tables).
inline constexpr unsigned snat_per_family = 8;

struct node_conf {
    std::string name;
    std::string region;
    std::string zone;
    std::string subzone;
    std::string network;
};

struct lcore_conf {
    std::vector<unsigned> workers; ///< one per RX queue of every port
    unsigned slowpath = 0;         ///< exception I/O, netlink mirror, the L7 engine
    uint32_t idle_sleep_us = 0;    ///< sleep this long after empty polls (0: pure polling)
};

struct port_conf {
    std::string name;   ///< also the name of its exception (kernel) interface
    std::string device; ///< PCI address or vdev string
    uint16_t queues = 0;
    uint16_t rx_desc = 1024;
    uint16_t tx_desc = 1024;
    uint16_t mtu = 1500;
    std::vector<net::prefix> addresses; ///< installed on the exception interface
    std::vector<net::ip_addr> snat;     ///< full-NAT source addresses (L4 issue)
    unsigned line = 0;

    /// True when `device` is a PCI address (DDDD:BB:DD.F or BB:DD.F).
    [[nodiscard]] bool is_pci() const;
};

struct route_conf {
    net::prefix prefix; ///< network form
    net::ip_addr via;   ///< unset: on-link
    std::string port;
};

enum class exception_kind { tap, virtio_user };

struct exception_conf {
    exception_kind kind = exception_kind::tap;
    std::string vhost_path = "/dev/vhost-net";
};

struct conntrack_conf {
    uint32_t capacity = 1u << 20; ///< entries per worker lcore
    struct {
        uint32_t tcp_syn = 10;
        uint32_t tcp_established = 900;
        uint32_t tcp_fin = 120;
        uint32_t tcp_closed = 10;
        uint32_t udp = 300;
        uint32_t icmp = 30;
    } timeouts; ///< seconds
};

/// The packet buffer pool (one per NUMA socket of the ports).
struct mempool_conf {
    uint32_t mbufs = 0; ///< at least this many per socket; 0: sized from ports and rings
};

/// How full-NAT replies reach the worker that owns their flow on multi-queue ports.
enum class flow_steering_mode : uint8_t {
    automatic, ///< "auto": rte_flow rules where the NIC takes them, else software rings
    off,       ///< "off": software rings only (no rule is ever installed)
};

/// The L4 fast path's defaults.
struct l4_conf {
    std::string forwarding = "fullnat"; ///< for services without sluice.io/forwarding
    uint16_t gue_port = 6080;           ///< GUE destination port on the backends
    uint8_t encap_ttl = 64;             ///< outer TTL / hop limit of IPIP and GUE
    flow_steering_mode flow_steering = flow_steering_mode::automatic;
};

/// The L7 engine (the slow-path lcore's HTTP proxy).
struct l7_conf {
    std::string access_log;                   ///< file, "-" for stderr, "" for none
    std::vector<net::prefix> trusted_sources; ///< x-envoy-* and x-forwarded-for kept from these
    uint32_t max_connections = 100000;        ///< downstream connections at once
};

struct api_conf {
    std::string listen = "127.0.0.1:9180";
    net::ip_addr address; ///< parsed from listen
    uint16_t port = 9180;
    std::string token_file;
};

struct mesh_conf {
    std::vector<std::string> files; ///< resolved against the config file's directory
    std::string cluster_domain = "cluster.local";
};

struct appliance_config {
    std::string path;
    node_conf node;
    std::vector<std::string> eal_args;
    lcore_conf lcores;
    std::vector<port_conf> ports;
    std::vector<route_conf> routes;
    exception_conf exception;
    conntrack_conf conntrack;
    mempool_conf mempool;
    l4_conf l4;
    l7_conf l7;
    api_conf api;
    std::string state_dir = "/var/lib/sluice";
    mesh_conf mesh;

    [[nodiscard]] const port_conf* find_port(std::string_view name) const;
};

/// One problem found in a config file.
struct diagnostic {
    std::string file;
    unsigned line = 0;
    std::string setting; ///< path like "ports[1].addresses[0]"; empty for syntax errors
    std::string message;

    /// "FILE:LINE: setting: message".
    [[nodiscard]] std::string to_string() const;
};

struct load_result {
    std::optional<appliance_config> config; ///< set only when errors is empty
    std::vector<diagnostic> errors;
};

/// Reads and validates a config file.
load_result load(const std::string& path);
/// Validates config text; `name` stands for the file name in diagnostics.
load_result parse(const std::string& text, const std::string& name);

/// The lcores that EAL arguments enable (-l, --lcores, -c) and the main lcore; nullopt when
/// the arguments do not say (EAL would then use every CPU).
struct eal_lcores {
    std::set<unsigned> enabled;
    unsigned main = 0;
};
result<std::optional<eal_lcores>> parse_eal_lcores(const std::vector<std::string>& args);

} // namespace sluice::config
