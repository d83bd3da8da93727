#pragma once
/// @file
/// Port bring-up: probing a device (PCI VF or vdev string), configuring its queues (RSS
/// when there is more than one), starting it, and creating its exception port (TAP or
/// virtio-user) that carries the NIC's MAC into the kernel. Control path (start-up).

#include <cstdint>
#include <string>

#include "sluice/base/result.hh"
#include "sluice/config/appliance.hh"
#include "sluice/net/addr.hh"

struct rte_mempool;

namespace sluice::glue {

/// Creates the packet buffer pool of a NUMA socket, sized for every descriptor and ring
/// that can hold mbufs at once plus per-lcore caches.
result<rte_mempool*> create_pool(int socket, unsigned mbufs, const std::string& name);

/// Probes a device string and returns its DPDK port id. PCI addresses must be bound to
/// vfio-pci / uio; vdev strings create the device.
result<uint16_t> probe(const std::string& devargs);

/// Configures `port` with `rx_queues` RX and `tx_queues` TX queues, RSS over IP/TCP/UDP when
/// rx_queues > 1 (limited to what the device supports), the MTU, promiscuous mode, and
/// starts it.
result<void> configure_and_start(uint16_t port, const std::string& name, uint16_t rx_queues,
                                 uint16_t tx_queues, uint16_t rx_desc, uint16_t tx_desc,
                                 uint16_t mtu, rte_mempool* pool);

/// The device string of an exception port for a NIC port: a TAP PMD or a virtio-user port
/// on vhost-net, named like the NIC port and carrying its MAC.
std::string exception_devargs(const config::exception_conf& e, unsigned index,
                              const std::string& ifname, const net::mac_addr& mac);

net::mac_addr port_mac(uint16_t port);

/// "up 10000 Mbps full-duplex" or "down".
std::string link_state(uint16_t port);

/// Stops and closes a port (a TAP port's kernel interface goes with it).
void close_port(uint16_t port) noexcept;

} // namespace sluice::glue
