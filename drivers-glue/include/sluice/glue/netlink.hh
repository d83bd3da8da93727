#pragma once
/// @file
/// A minimal rtnetlink toolkit: a message builder (pure, used by tests to forge kernel
/// messages) and a socket for requests with acks, dumps and multicast events.

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <vector>

#include "sluice/base/result.hh"

namespace sluice::glue {

/// Builds one netlink message: header, a fixed family struct, then attributes.
class nl_msg {
public:
    nl_msg(uint16_t type, uint16_t flags, const void* body, size_t body_len)
    {
        _buf.resize(NLMSG_SPACE(body_len));
        auto* h = hdr();
        h->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(body_len));
        h->nlmsg_type = type;
        h->nlmsg_flags = flags;
        std::memcpy(NLMSG_DATA(h), body, body_len);
    }

    nl_msg& attr(uint16_t type, const void* data, size_t len)
    {
        const size_t off = NLMSG_ALIGN(hdr()->nlmsg_len);
        _buf.resize(off + RTA_SPACE(len));
        auto* rta = reinterpret_cast<rtattr*>(_buf.data() + off);
        rta->rta_type = type;
        rta->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
        std::memcpy(RTA_DATA(rta), data, len);
        hdr()->nlmsg_len = static_cast<uint32_t>(off + RTA_LENGTH(len));
        return *this;
    }
    nl_msg& attr_u32(uint16_t type, uint32_t v) { return attr(type, &v, sizeof(v)); }

    nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(_buf.data()); }
    [[nodiscard]] std::span<const uint8_t> bytes() const
    {
        return {_buf.data(),
                NLMSG_ALIGN(reinterpret_cast<const nlmsghdr*>(_buf.data())->nlmsg_len)};
    }

private:
    std::vector<uint8_t> _buf;
};

/// A NETLINK_ROUTE socket.
class nl_socket {
public:
    /// Opens a socket; `groups` are RTMGRP_* multicast groups to listen to (0: none).
    static result<nl_socket> open(uint32_t groups, bool nonblocking);
    nl_socket(nl_socket&& o) noexcept : _fd(o._fd), _seq(o._seq) { o._fd = -1; }
    nl_socket& operator=(nl_socket&&) = delete;
    ~nl_socket();

    /// Sends a request with NLM_F_ACK and waits for its ack; the kernel's error on failure.
    result<void> request(nl_msg& m);
    /// Sends a dump request and passes every reply message to `fn` until NLMSG_DONE.
    result<void> dump(nl_msg& m, const std::function<void(const nlmsghdr*)>& fn);
    /// Reads whatever is queued without blocking; -1 with errno set on error, 0 when
    /// nothing is queued, else the bytes read into buf.
    long receive(std::span<uint8_t> buf);

    [[nodiscard]] int fd() const noexcept { return _fd; }

private:
    explicit nl_socket(int fd) : _fd(fd) {}
    int _fd = -1;
    uint32_t _seq = 1;
};

} // namespace sluice::glue
