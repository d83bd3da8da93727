#pragma once
/// @file
/// A QSBR (quiescent-state-based reclamation) domain over rte_rcu_qsbr (STYLE P2).
///
/// Readers are the worker lcores: each registers a small reader id once, reports
/// quiescent() once per loop iteration (it holds no reference to published state across
/// that point), and goes offline() before idling so writers need not wait for it.
/// Writers take a token with start() after unpublishing an object and may free it once
/// check(token) is true. Works without the EAL (tests), and needs no hugepages.

#include <chrono>
#include <cstdint>
#include <memory>

#include <rte_rcu_qsbr.h>

#include "sluice/base/result.hh"

namespace sluice::rcu {

class qsbr_domain {
public:
    /// Creates a domain for reader ids 0 .. max_readers-1.
    static result<std::unique_ptr<qsbr_domain>> create(unsigned max_readers);
    ~qsbr_domain();
    qsbr_domain(const qsbr_domain&) = delete;
    qsbr_domain& operator=(const qsbr_domain&) = delete;

    /// Registers a reader and puts it online. Control path.
    result<void> register_reader(unsigned id);
    /// Takes a reader offline and unregisters it. Control path.
    void unregister_reader(unsigned id) noexcept;

    /// Reader: reports a quiescent state. Hot path (a store and a load).
    void quiescent(unsigned id) noexcept { rte_rcu_qsbr_quiescent(_v, id); }
    /// Reader: stops being waited for (before idling).
    void offline(unsigned id) noexcept { rte_rcu_qsbr_thread_offline(_v, id); }
    /// Reader: is waited for again (after idling, before touching published state).
    void online(unsigned id) noexcept { rte_rcu_qsbr_thread_online(_v, id); }

    /// Writer: starts a grace period; returns its token.
    uint64_t start() noexcept { return rte_rcu_qsbr_start(_v); }
    /// Writer: true when every online reader has passed a quiescent state since `token`.
    bool check(uint64_t token) noexcept { return rte_rcu_qsbr_check(_v, token, false) == 1; }
    /// Writer: polls check() until it holds or `timeout` passes; false on timeout.
    bool wait(uint64_t token, std::chrono::milliseconds timeout) noexcept;

    [[nodiscard]] unsigned max_readers() const noexcept { return _max; }

private:
    qsbr_domain() = default;
    rte_rcu_qsbr* _v = nullptr;
    unsigned _max = 0;
};

} // namespace sluice::rcu
