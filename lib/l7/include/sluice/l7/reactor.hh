#pragma once
/// @file
/// The L7 engine's event loop: an edge-triggered epoll reactor with a hashed timer wheel,
/// owned by one thread (the slow-path lcore in sluiced; the test or benchmark thread in the
/// in-process harness).
///
/// Thread contract: everything here belongs to the thread that calls poll(); nothing is
/// thread-safe. Hot-path contract: arming, cancelling and firing timers and dispatching
/// events allocate nothing (timers are intrusive; the event array is fixed). Time comes from
/// a clock the owner chooses (CLOCK_MONOTONIC, or a fake one in tests: STYLE T6), read once
/// per poll() and cached, so every callback of one iteration sees the same now().

#include <sys/epoll.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "sluice/base/result.hh"

namespace sluice::l7 {

/// Nanoseconds on the reactor's clock (any epoch).
using nanos = uint64_t;

inline constexpr nanos ns_per_ms = 1'000'000;

/// A timer embedded in its owner. The callback runs from poll() (or advance()) on the owner
/// thread; it may re-arm or cancel any timer, including itself, and may destroy its owner
/// only after cancelling every timer the owner holds (a fired timer is already disarmed).
class timer {
public:
    using callback = void (*)(timer& t, void* ctx);

    timer() = default;
    timer(callback cb, void* ctx) noexcept : _cb(cb), _ctx(ctx) {}
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;

    void set(callback cb, void* ctx) noexcept
    {
        _cb = cb;
        _ctx = ctx;
    }
    [[nodiscard]] bool armed() const noexcept { return _prev != nullptr; }
    [[nodiscard]] nanos deadline() const noexcept { return _deadline; }

private:
    friend class timer_wheel;
    timer* _next = nullptr;
    timer* _prev = nullptr; // non-null while armed (the slot head counts as a timer)
    nanos _deadline = 0;
    callback _cb = nullptr;
    void* _ctx = nullptr;
};

/// A hashed timing wheel (Varghese & Lauck, scheme 6): `slots` lists of timers hashed by
/// deadline tick; a timer further out than one revolution stays in its slot and is skipped
/// until its round comes. Arm and cancel are O(1); advancing costs the timers in the slots
/// passed. Timers fire no earlier than their deadline and at most one tick late (plus the
/// caller's polling delay). Timers due at the same tick fire in arming order.
class timer_wheel {
public:
    /// `now`: the clock at creation; `tick`: resolution (1 ms by default); `slots`: a power
    /// of two.
    explicit timer_wheel(nanos now, nanos tick = ns_per_ms, uint32_t slots = 4096);
    ~timer_wheel();
    timer_wheel(const timer_wheel&) = delete;
    timer_wheel& operator=(const timer_wheel&) = delete;

    /// Arms (or re-arms) `t` to fire at `deadline` (a deadline in the past fires at the next
    /// advance()).
    void arm(timer& t, nanos deadline) noexcept;
    /// Disarms `t`; harmless when it is not armed.
    void cancel(timer& t) noexcept;
    /// Fires every timer whose deadline is <= now; returns how many fired.
    size_t advance(nanos now) noexcept;
    /// Timers armed.
    [[nodiscard]] size_t size() const noexcept { return _count; }
    /// The earliest deadline of an armed timer, scanning at most `max_slots` slots ahead;
    /// UINT64_MAX when none is found that close (the caller then polls again later).
    [[nodiscard]] nanos next_deadline(uint32_t max_slots = 64) const noexcept;

private:
    struct slot_head {
        timer head; // circular list sentinel
    };
    [[nodiscard]] uint64_t tick_of(nanos t) const noexcept { return t / _tick; }

    std::unique_ptr<slot_head[]> _slots;
    uint32_t _mask;
    nanos _tick;
    uint64_t _current; // the next tick to process
    size_t _count = 0;
};

/// Receives readiness events for a file descriptor.
class io_handler {
public:
    /// `events`: EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP/EPOLLRDHUP bits. Edge-triggered: read or
    /// write until EAGAIN before returning, or arrange to come back (a timer, a defer).
    virtual void on_io(uint32_t events) noexcept = 0;

protected:
    ~io_handler() = default;
};

/// An object whose end the reactor defers until the current dispatch batch is over, so a
/// handler closed by another handler's callback never receives an event after its end.
class deferred {
public:
    /// Runs after the batch; the object may free or recycle itself here.
    virtual void on_deferred() noexcept = 0;

protected:
    ~deferred() = default;
};

/// The clock a reactor reads: CLOCK_MONOTONIC by default.
struct clock_source {
    nanos (*read)(void* ctx) = nullptr;
    void* ctx = nullptr;
    [[nodiscard]] nanos now() const noexcept;
};

class reactor {
public:
    /// Creates the epoll instance. Errors: epoll_create1 failure.
    static result<std::unique_ptr<reactor>> create(clock_source clock = {});
    ~reactor();
    reactor(const reactor&) = delete;
    reactor& operator=(const reactor&) = delete;

    /// Registers `fd` (edge-triggered; `events` from EPOLLIN/EPOLLOUT/EPOLLRDHUP).
    result<void> add(int fd, io_handler* h, uint32_t events) noexcept;
    /// Changes the interest set or the handler of a registered fd.
    result<void> modify(int fd, io_handler* h, uint32_t events) noexcept;
    /// Unregisters `fd` (before closing it, so a recycled fd number is never confused).
    void remove(int fd) noexcept;

    /// One iteration: waits up to `timeout_ms` (0: do not wait; -1: until an event; bounded
    /// by the next timer), dispatches the events, runs deferred ends, then due timers.
    /// Returns events dispatched plus timers fired.
    size_t poll(int timeout_ms) noexcept;

    /// The clock read at the start of the current (or last) poll().
    [[nodiscard]] nanos now() const noexcept { return _now; }
    /// Reads the clock again (for code that runs outside poll()).
    nanos refresh_now() noexcept;
    [[nodiscard]] timer_wheel& timers() noexcept { return _timers; }
    void arm(timer& t, nanos delay) noexcept { _timers.arm(t, _now + delay); }
    void cancel(timer& t) noexcept { _timers.cancel(t); }

    /// Queues `d->on_deferred()` for after the current batch (or the next poll()).
    void defer(deferred* d);
    /// Runs the queued deferred ends now (outside poll(): before their owners go away).
    void drain_deferred() noexcept { run_deferred(); }

    [[nodiscard]] int fd() const noexcept { return _epfd; }

private:
    reactor(int epfd, clock_source clock);
    void run_deferred() noexcept;

    static constexpr int max_events = 256;
    int _epfd;
    clock_source _clock;
    nanos _now;
    timer_wheel _timers;
    std::vector<deferred*> _deferred;
    std::vector<deferred*> _running;
    std::array<epoll_event, max_events> _events{};
};

} // namespace sluice::l7
