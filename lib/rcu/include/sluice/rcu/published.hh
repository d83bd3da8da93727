#pragma once
/// @file
/// `published<T>`: one immutable object that readers (worker lcores) load once per burst
/// and one writer replaces wholesale (STYLE P1-P3). Replacing is a release-store of the
/// new pointer; the old object is retired with a QSBR token and freed only after every
/// reader has passed a quiescent state.
///
/// Thread contract: load() from any registered reader; publish*/reclaim() from exactly
/// one writer thread per published<T>.

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <utility>

#include "sluice/base/result.hh"
#include "sluice/rcu/qsbr.hh"

namespace sluice::rcu {

template <typename T>
class published {
public:
    explicit published(qsbr_domain& domain) : _domain(domain) {}
    ~published()
    {
        // The owner guarantees no reader remains (lcores stopped) when this is destroyed.
        delete _current.load(std::memory_order_relaxed);
    }
    published(const published&) = delete;
    published& operator=(const published&) = delete;

    /// Reader: the current object or nullptr. Acquire pairs with the writer's release so
    /// the object's contents are visible once its pointer is.
    [[nodiscard]] const T* load() const noexcept
    {
        return _current.load(std::memory_order_acquire);
    }

    /// Writer: publishes `next` and retires the previous object for deferred free.
    void publish(std::unique_ptr<T> next)
    {
        // Release: the reader that sees the new pointer sees the fully built object.
        T* old = _current.exchange(next.release(), std::memory_order_acq_rel);
        if (old != nullptr) {
            _retired.emplace_back(_domain.start(), std::unique_ptr<T>(old));
        }
    }

    /// Writer: publishes and waits for the grace period of the previous object. On timeout
    /// the new object stays published, the old one stays retired (freed by a later
    /// reclaim()), and an error tells the caller a reader is stuck.
    result<void> publish_sync(std::unique_ptr<T> next, std::chrono::milliseconds timeout)
    {
        publish(std::move(next));
        if (!_retired.empty() && !_domain.wait(_retired.back().first, timeout)) {
            return err("RCU grace period did not end within " + std::to_string(timeout.count()) +
                       " ms: a reader lcore is stuck; the previous object is kept");
        }
        reclaim();
        return ok();
    }

    /// Writer: frees retired objects whose grace period has ended; returns how many.
    size_t reclaim()
    {
        size_t freed = 0;
        while (!_retired.empty() && _domain.check(_retired.front().first)) {
            _retired.pop_front();
            ++freed;
        }
        return freed;
    }

    /// Objects retired but not yet freed.
    [[nodiscard]] size_t retired() const noexcept { return _retired.size(); }

private:
    qsbr_domain& _domain;
    std::atomic<T*> _current{nullptr};                            // fastpath: ro (load), writer: rw
    std::deque<std::pair<uint64_t, std::unique_ptr<T>>> _retired; // writer only
};

} // namespace sluice::rcu
