#include "sluice/glue/port.hh"

#include <cstring>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "sluice/glue/log.hh"

namespace sluice::glue {

result<rte_mempool*> create_pool(int socket, unsigned mbufs, const std::string& name)
{
    rte_mempool* mp =
        rte_pktmbuf_pool_create(name.c_str(), mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
    if (mp == nullptr) {
        return err("cannot create mbuf pool " + name + " (" + std::to_string(mbufs) +
                   " mbufs on socket " + std::to_string(socket) + "): " + rte_strerror(rte_errno));
    }
    return mp;
}

result<uint16_t> probe(const std::string& devargs)
{
    const int rc = rte_dev_probe(devargs.c_str());
    if (rc < 0) {
        return err("cannot probe device \"" + devargs + "\": " + rte_strerror(-rc));
    }
    // The ethdev name is the device name: the part before the first comma.
    const std::string name = devargs.substr(0, devargs.find(','));
    uint16_t port = 0;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &port) != 0) {
        return err("device \"" + devargs + "\" probed but no ethdev port is named \"" + name +
                   "\"");
    }
    return port;
}

result<void> configure_and_start(uint16_t port, const std::string& name, uint16_t rx_queues,
                                 uint16_t tx_queues, uint16_t rx_desc, uint16_t tx_desc,
                                 uint16_t mtu, rte_mempool* pool)
{
    rte_eth_dev_info info{};
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) {
        return err("port " + name + ": cannot read device info: " + rte_strerror(-rc));
    }
    if (rx_queues > info.max_rx_queues || tx_queues > info.max_tx_queues) {
        return err("port " + name + ": needs " + std::to_string(rx_queues) + " RX and " +
                   std::to_string(tx_queues) + " TX queues, device " + info.driver_name + " has " +
                   std::to_string(info.max_rx_queues) + " and " +
                   std::to_string(info.max_tx_queues) +
                   " (for net_af_packet, set qpairs= in the device string)");
    }
    rte_eth_conf conf{};
    if (rx_queues > 1) {
        const uint64_t want = RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
        const uint64_t have = want & info.flow_type_rss_offloads;
        if (have != 0) {
            conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = have;
            conf.rx_adv_conf.rss_conf.rss_key = nullptr; // the driver's default key
        } else {
            SLUICE_LOG(WARNING, glue,
                       "port %s: driver %s offers no RSS; it spreads %u queues its own way",
                       name.c_str(), info.driver_name, rx_queues);
        }
    }
    rc = rte_eth_dev_configure(port, rx_queues, tx_queues, &conf);
    if (rc != 0) {
        return err("port " + name + ": configure failed: " + rte_strerror(-rc));
    }
    uint16_t nrx = rx_desc;
    uint16_t ntx = tx_desc;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
    if (rc != 0) {
        return err("port " + name + ": descriptor counts rejected: " + rte_strerror(-rc));
    }
    if (mtu != 0 && mtu != 1500) {
        rc = rte_eth_dev_set_mtu(port, mtu);
        if (rc != 0) {
            return err("port " + name + ": cannot set MTU " + std::to_string(mtu) + ": " +
                       rte_strerror(-rc));
        }
    }
    const int socket = rte_eth_dev_socket_id(port);
    for (uint16_t q = 0; q < rx_queues; ++q) {
        rc = rte_eth_rx_queue_setup(port, q, nrx, socket < 0 ? SOCKET_ID_ANY : socket, nullptr,
                                    pool);
        if (rc != 0) {
            return err("port " + name + ": RX queue " + std::to_string(q) +
                       " setup failed: " + rte_strerror(-rc));
        }
    }
    for (uint16_t q = 0; q < tx_queues; ++q) {
        rc = rte_eth_tx_queue_setup(port, q, ntx, socket < 0 ? SOCKET_ID_ANY : socket, nullptr);
        if (rc != 0) {
            return err("port " + name + ": TX queue " + std::to_string(q) +
                       " setup failed: " + rte_strerror(-rc));
        }
    }
    rc = rte_eth_dev_start(port);
    if (rc != 0) {
        return err("port " + name + ": start failed: " + rte_strerror(-rc));
    }
    // Promiscuous so traffic to VIPs (MACs other than ours after failover) still arrives;
    // not every vdev supports it, which is fine.
    if (rte_eth_promiscuous_enable(port) != 0) {
        SLUICE_LOG(DEBUG, glue, "port %s: promiscuous mode not supported", name.c_str());
    }
    return ok();
}

std::string exception_devargs(const config::exception_conf& e, unsigned index,
                              const std::string& ifname, const net::mac_addr& mac)
{
    if (e.kind == config::exception_kind::virtio_user) {
        return "virtio_user" + std::to_string(index) + ",path=" + e.vhost_path +
               ",iface=" + ifname + ",mac=" + mac.to_string() + ",queues=1,queue_size=1024";
    }
    return "net_tap" + std::to_string(index) + ",iface=" + ifname + ",mac=" + mac.to_string();
}

net::mac_addr port_mac(uint16_t port)
{
    rte_ether_addr a{};
    rte_eth_macaddr_get(port, &a);
    net::mac_addr m;
    std::memcpy(m.bytes.data(), a.addr_bytes, 6);
    return m;
}

std::string link_state(uint16_t port)
{
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(port, &link) != 0) {
        return "unknown";
    }
    if (link.link_status == RTE_ETH_LINK_DOWN) {
        return "down";
    }
    std::string s = "up";
    if (link.link_speed != RTE_ETH_SPEED_NUM_NONE && link.link_speed != RTE_ETH_SPEED_NUM_UNKNOWN) {
        s += " " + std::to_string(link.link_speed) + " Mbps";
    }
    s += link.link_duplex == RTE_ETH_LINK_FULL_DUPLEX ? " full-duplex" : " half-duplex";
    return s;
}

void close_port(uint16_t port) noexcept
{
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
}

} // namespace sluice::glue
