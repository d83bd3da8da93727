#pragma once
/// @file
/// rte_flow steering of full-NAT return traffic (control path, start-up and shutdown only).
///
/// Worker w owns the SNAT source ports [snat_port_base + w*span, snat_port_base + (w+1)*span)
/// on every SNAT address (owner_of() in the L4 stage reads the same partition), so a backend's
/// reply belongs to the worker named by its destination port. On a NIC with rte_flow, one
/// ingress rule per (SNAT address, TCP|UDP, worker, port block) sends the reply straight to
/// that worker's RX queue:
///
///     ETH / IPV4|IPV6 dst is SNAT / TCP|UDP dst spec V mask M / END -> QUEUE w / END
///
/// Ranges become (value, mask) blocks, like CIDR prefixes, because many NICs match L4 ports
/// only by spec/mask (no `last` ranges). Where the NIC refuses any rule (vdevs, which have no
/// rte_flow here), nothing stays installed and replies take the software path: the receiving
/// worker passes them to their owner over a ring. That path is always active, as the safety net:
/// ICMP errors about a flow (matched by the quoted port, which no rule can see) and replies
/// the NIC did not steer (e.g. non-first fragments, which carry no port) take it on every port.
///
/// The pure parts (port_blocks, the span choice, build_rule, plan_steering) need no EAL.

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <rte_flow.h>

#include "sluice/net/addr.hh"

namespace sluice::glue {

/// The L4 ports p with (p & mask) == value: an aligned power-of-two block, like a CIDR prefix.
struct port_block {
    uint16_t value = 0;
    uint16_t mask = 0;

    /// Number of ports in the block (1 to 65536).
    [[nodiscard]] uint32_t size() const noexcept { return 65536u - mask; }
    [[nodiscard]] uint16_t first() const noexcept { return value; }
    [[nodiscard]] uint16_t last() const noexcept
    {
        return static_cast<uint16_t>(value + size() - 1);
    }
    auto operator<=>(const port_block&) const = default;
};

/// The fewest aligned blocks that cover exactly the ports [lo, hi] (inclusive; lo <= hi), in
/// ascending order: the greedy CIDR decomposition, at most 30 blocks (2 per bit but the top).
std::vector<port_block> port_blocks(uint16_t lo, uint16_t hi);

/// An inclusive range of L4 ports.
struct port_range {
    uint16_t lo = 0;
    uint16_t hi = 0;
    auto operator<=>(const port_range&) const = default;
};

/// Worker `worker`'s SNAT ports for a per-worker `span` (the partition owner_of() reads).
port_range snat_port_range(uint16_t worker, uint16_t span) noexcept;

/// Rule blocks per (SNAT address, protocol) for `workers` workers with `span` ports each.
size_t steering_blocks(uint16_t workers, uint16_t span);

/// The SNAT ports each of `workers` workers owns (l4_lcore::port_span).
/// Without steering: every port above snat_port_base, shared equally (64512 / workers).
/// With steering: the span at most 1/16 smaller than that whose ranges decompose into the
/// fewest blocks (ties: the larger span), so that NICs need fewer rules: 2 workers 10 blocks
/// instead of 12, 8 workers 32 instead of 48, 10 workers 35 instead of 128. The ports above
/// the last worker's range are never allocated (owner_of() finds no owner for them).
uint16_t snat_port_span(uint16_t workers, bool steering);

/// One ingress rule, self-contained: the pattern and action arrays point into the object
/// itself (copying re-links them), so it can be handed to rte_flow_validate/create as is.
struct flow_rule {
    rte_flow_attr attr{};
    rte_flow_item_ipv4 ip4_spec{};
    rte_flow_item_ipv4 ip4_mask{};
    rte_flow_item_ipv6 ip6_spec{};
    rte_flow_item_ipv6 ip6_mask{};
    rte_flow_item_tcp tcp_spec{};
    rte_flow_item_tcp tcp_mask{};
    rte_flow_item_udp udp_spec{};
    rte_flow_item_udp udp_mask{};
    rte_flow_action_queue queue{};
    std::array<rte_flow_item, 4> pattern{};   ///< ETH / IPV4|IPV6 / TCP|UDP / END
    std::array<rte_flow_action, 2> actions{}; ///< QUEUE / END
    // What the rule says, for messages and tests.
    net::ip_addr dst;  ///< the SNAT address
    uint8_t proto = 0; ///< IPPROTO_TCP or IPPROTO_UDP
    port_block block;  ///< destination ports
    uint16_t queue_index = 0;

    flow_rule() = default;
    flow_rule(const flow_rule& o) { *this = o; }
    flow_rule& operator=(const flow_rule& o);

    /// "198.18.1.1 tcp dst 0x0400/0xfc00 -> queue 0".
    [[nodiscard]] std::string to_string() const;

private:
    friend flow_rule build_rule(const net::ip_addr&, uint8_t, port_block, uint16_t);
    void link() noexcept;
};

/// The rule steering (TCP or UDP, per `proto`) packets to `snat` whose destination port is in
/// `block` to RX queue `queue`.
flow_rule build_rule(const net::ip_addr& snat, uint8_t proto, port_block block, uint16_t queue);

/// Every rule of one port: for each SNAT address, TCP and UDP, each worker (= RX queue) and
/// each block of the worker's range.
std::vector<flow_rule> plan_steering(std::span<const net::ip_addr> snat, uint16_t workers,
                                     uint16_t span);

/// How a port's full-NAT replies reach their owner: by rte_flow rules (`active`), or by the
/// software rings alone, and why.
struct steering_status {
    bool active = false;
    size_t rules = 0;   ///< rules installed
    std::string reason; ///< why software (empty when active)

    /// "rte_flow" or "software" (the word /v1/status and the log use).
    [[nodiscard]] const char* mode() const noexcept { return active ? "rte_flow" : "software"; }
};

/// What a port's steering needs from the config.
struct steering_request {
    bool enabled = true;   ///< l4.flow_steering = "auto"
    uint16_t queues = 1;   ///< RX queues = workers
    uint16_t span = 64512; ///< l4_lcore::port_span
    std::span<const net::ip_addr> snat;
};

/// Validates every rule first (rte_flow_validate), then creates them all; when the NIC
/// refuses any, destroys those created and reports software with the refusal (which rule,
/// the driver's message). Never partial: all rules or none.
steering_status install_steering(uint16_t port, std::span<const flow_rule> rules);

/// Decides and installs a started port's steering: software when the config says off, the
/// port has one queue or no SNAT address; otherwise install_steering(plan_steering(...)).
steering_status setup_steering(uint16_t port, const steering_request& req);

/// Removes every rule of `port` (rte_flow_flush) before it stops; logs when the driver fails.
void remove_steering(uint16_t port) noexcept;

} // namespace sluice::glue
