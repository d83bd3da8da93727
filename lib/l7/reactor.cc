#include "sluice/l7/reactor.hh"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "sluice/base/assert.hh"

namespace sluice::l7 {

namespace {

nanos monotonic_now(void* /*ctx*/)
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<nanos>(ts.tv_sec) * 1'000'000'000ULL + static_cast<nanos>(ts.tv_nsec);
}

} // namespace

nanos clock_source::now() const noexcept
{
    return read != nullptr ? read(ctx) : monotonic_now(nullptr);
}

// ------------------------------------------------------------------------ timer_wheel

timer_wheel::timer_wheel(nanos now, nanos tick, uint32_t slots)
    : _slots(new slot_head[slots]), _mask(slots - 1), _tick(tick == 0 ? 1 : tick),
      _current(now / (tick == 0 ? 1 : tick))
{
    SLUICE_ASSERT(slots != 0 && (slots & (slots - 1)) == 0);
    for (uint32_t i = 0; i < slots; ++i) {
        _slots[i].head._next = &_slots[i].head;
        _slots[i].head._prev = &_slots[i].head;
    }
}

timer_wheel::~timer_wheel()
{
    // Leave no armed timer pointing into freed slots: owners may outlive the wheel.
    for (uint32_t i = 0; i <= _mask; ++i) {
        timer* head = &_slots[i].head;
        while (head->_next != head) {
            timer* t = head->_next;
            head->_next = t->_next;
            t->_next = nullptr;
            t->_prev = nullptr;
        }
    }
}

void timer_wheel::arm(timer& t, nanos deadline) noexcept
{
    if (t.armed()) {
        cancel(t);
    }
    uint64_t tick = tick_of(deadline);
    if (tick < _current) {
        tick = _current; // already due: the next advance() sees it
    }
    timer* head = &_slots[tick & _mask].head;
    t._deadline = deadline;
    // Append: timers of one tick fire in arming order.
    t._prev = head->_prev;
    t._next = head;
    head->_prev->_next = &t;
    head->_prev = &t;
    ++_count;
}

void timer_wheel::cancel(timer& t) noexcept
{
    if (!t.armed()) {
        return;
    }
    t._prev->_next = t._next;
    t._next->_prev = t._prev;
    t._next = nullptr;
    t._prev = nullptr;
    --_count;
}

size_t timer_wheel::advance(nanos now) noexcept
{
    const uint64_t target = tick_of(now);
    if (target < _current || _count == 0) {
        _current = target > _current ? target : _current;
        return 0;
    }
    // Move every due timer of the slots passed to a local list first: callbacks may arm
    // timers into those very slots (or cancel ones on the local list, which unlinks them).
    timer due;
    due._next = &due;
    due._prev = &due;
    const uint64_t span = target - _current + 1;
    const uint64_t n = span > uint64_t{_mask} + 1 ? uint64_t{_mask} + 1 : span;
    for (uint64_t i = 0; i < n; ++i) {
        timer* head = &_slots[(_current + i) & _mask].head;
        for (timer* t = head->_next; t != head;) {
            timer* next = t->_next;
            if (t->_deadline <= now) {
                t->_prev->_next = t->_next;
                t->_next->_prev = t->_prev;
                t->_prev = due._prev;
                t->_next = &due;
                due._prev->_next = t;
                due._prev = t;
            }
            t = next;
        }
    }
    // The current tick stays current: a timer armed later for the rest of this tick goes
    // into its slot, which the next advance() scans again.
    _current = target;
    size_t fired = 0;
    while (due._next != &due) {
        timer* t = due._next;
        due._next = t->_next;
        t->_next->_prev = &due;
        t->_next = nullptr;
        t->_prev = nullptr;
        --_count;
        ++fired;
        if (t->_cb != nullptr) {
            t->_cb(*t, t->_ctx);
        }
    }
    return fired;
}

nanos timer_wheel::next_deadline(uint32_t max_slots) const noexcept
{
    if (_count == 0) {
        return UINT64_MAX;
    }
    const uint64_t n = max_slots > _mask + 1 ? uint64_t{_mask} + 1 : max_slots;
    const uint64_t limit = _current + n;
    nanos best = UINT64_MAX;
    for (uint64_t i = 0; i < n; ++i) {
        const timer* head = &_slots[(_current + i) & _mask].head;
        for (const timer* t = head->_next; t != head; t = t->_next) {
            if (tick_of(t->_deadline) < limit && t->_deadline < best) {
                best = t->_deadline;
            }
        }
        if (best != UINT64_MAX) {
            break; // later slots hold later ticks (within one revolution)
        }
    }
    return best;
}

// ------------------------------------------------------------------------ reactor

reactor::reactor(int epfd, clock_source clock)
    : _epfd(epfd), _clock(clock), _now(clock.now()), _timers(_now)
{
    _deferred.reserve(256);
    _running.reserve(256);
}

reactor::~reactor()
{
    run_deferred();
    if (_epfd >= 0) {
        close(_epfd);
    }
}

result<std::unique_ptr<reactor>> reactor::create(clock_source clock)
{
    const int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
        return err(std::string("epoll_create1: ") + std::strerror(errno));
    }
    return std::unique_ptr<reactor>(new reactor(fd, clock));
}

result<void> reactor::add(int fd, io_handler* h, uint32_t events) noexcept
{
    epoll_event ev{};
    ev.events = events | EPOLLET;
    ev.data.ptr = h;
    if (epoll_ctl(_epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return err(std::string("epoll_ctl(ADD): ") + std::strerror(errno));
    }
    return ok();
}

result<void> reactor::modify(int fd, io_handler* h, uint32_t events) noexcept
{
    epoll_event ev{};
    ev.events = events | EPOLLET;
    ev.data.ptr = h;
    if (epoll_ctl(_epfd, EPOLL_CTL_MOD, fd, &ev) != 0) {
        return err(std::string("epoll_ctl(MOD): ") + std::strerror(errno));
    }
    return ok();
}

void reactor::remove(int fd) noexcept
{
    epoll_ctl(_epfd, EPOLL_CTL_DEL, fd, nullptr);
}

nanos reactor::refresh_now() noexcept
{
    _now = _clock.now();
    return _now;
}

void reactor::defer(deferred* d)
{
    _deferred.push_back(d);
}

void reactor::run_deferred() noexcept
{
    // Deferred ends may defer more (a closing stream ending its peer): loop until quiet.
    while (!_deferred.empty()) {
        _running.swap(_deferred);
        for (deferred* d : _running) {
            d->on_deferred();
        }
        _running.clear();
    }
}

size_t reactor::poll(int timeout_ms) noexcept
{
    int wait = timeout_ms;
    if (wait != 0 && !_deferred.empty()) {
        wait = 0;
    }
    if (wait != 0 && _timers.size() != 0) {
        // Measure from the clock now, not from the last poll: time spent since then (handlers,
        // code outside the loop) must shorten the wait.
        const nanos current = _clock.now();
        _now = current > _now ? current : _now;
        const nanos next = _timers.next_deadline();
        nanos until = 64 * ns_per_ms; // nothing close: look again later
        if (next != UINT64_MAX) {
            until = next > _now ? next - _now : 0;
        }
        const int64_t ms = static_cast<int64_t>((until + ns_per_ms - 1) / ns_per_ms);
        if (wait < 0 || ms < wait) {
            wait = static_cast<int>(ms);
        }
    }
    const int n = epoll_wait(_epfd, _events.data(), max_events, wait);
    _now = _clock.now();
    size_t done = 0;
    for (int i = 0; i < n; ++i) {
        static_cast<io_handler*>(_events[static_cast<size_t>(i)].data.ptr)
            ->on_io(_events[static_cast<size_t>(i)].events);
        ++done;
    }
    run_deferred();
    done += _timers.advance(_now);
    run_deferred();
    return done;
}

} // namespace sluice::l7
