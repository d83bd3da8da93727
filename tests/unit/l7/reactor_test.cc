// l7::timer_wheel and l7::reactor: the hashed timer wheel driven by a fake clock
// (advance(now) directly, and through a reactor whose clock_source reads a variable), and
// the edge-triggered epoll reactor over non-blocking pipes (STYLE T6: fake clock, no
// sleeps; the only real waits are epoll_wait bounds of a few milliseconds).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "sluice/l7/reactor.hh"

namespace sluice::l7 {
namespace {

constexpr nanos ms = ns_per_ms;
constexpr nanos us = 1'000;

// A timer with a record of its firings. `clock` points at the "now" of the advance() in
// progress, so the callback can record when it fired; `order` collects ids in firing
// order; `then` runs after recording (to re-arm, cancel others, ...).
struct probe {
    timer t;
    int id = 0;
    int fires = 0;
    nanos fired_at = 0;
    const nanos* clock = nullptr;
    std::vector<int>* order = nullptr;
    std::function<void(probe&)> then;
    timer_wheel* wheel = nullptr; // set by arm(): cancels on destruction if still armed

    explicit probe(int i = 0, const nanos* c = nullptr, std::vector<int>* o = nullptr)
        : t(&probe::fire, this), id(i), clock(c), order(o)
    {
    }
    ~probe()
    {
        // A failing test may leave a probe armed in a wheel that outlives it.
        if (wheel != nullptr && t.armed()) {
            wheel->cancel(t);
        }
    }
    probe(const probe&) = delete;
    probe& operator=(const probe&) = delete;

    static void fire(timer& /*t*/, void* ctx)
    {
        auto* p = static_cast<probe*>(ctx);
        ++p->fires;
        if (p->clock != nullptr) {
            p->fired_at = *p->clock;
        }
        if (p->order != nullptr) {
            p->order->push_back(p->id);
        }
        if (p->then) {
            p->then(*p);
        }
    }
};

void arm(timer_wheel& w, probe& p, nanos deadline)
{
    p.wheel = &w;
    w.arm(p.t, deadline);
}

void arm(reactor& r, probe& p, nanos delay)
{
    p.wheel = &r.timers();
    r.arm(p.t, delay);
}

// Calls advance(now) with `now` visible to the probes' `clock`.
struct driver {
    timer_wheel& wheel;
    nanos now;
    size_t advance(nanos to)
    {
        now = to;
        return wheel.advance(to);
    }
};

// ============================================================================ TimerWheel

TEST(TimerWheel, FiresNoEarlierThanDeadlineAndWithinOneTick)
{
    timer_wheel wheel(0);
    driver d{wheel, 0};
    // Deadlines on tick boundaries, just after and just before them.
    const std::vector<nanos> deadlines = {1 * ms,       1 * ms + 1, 2 * ms - 1, 5 * ms + 500 * us,
                                          7 * ms,       9 * ms + 1, 10 * ms,    33 * ms + 999 * us,
                                          63 * ms + 17, 64 * ms};
    std::vector<std::unique_ptr<probe>> probes;
    for (size_t i = 0; i < deadlines.size(); ++i) {
        probes.push_back(std::make_unique<probe>(static_cast<int>(i), &d.now));
        arm(wheel, *probes.back(), deadlines[i]);
        EXPECT_TRUE(probes.back()->t.armed());
        EXPECT_EQ(probes.back()->t.deadline(), deadlines[i]);
    }
    // Step by exactly one tick, at an offset inside the tick.
    for (nanos now = 300 * us; now < 80 * ms; now += ms) {
        d.advance(now);
    }
    for (size_t i = 0; i < deadlines.size(); ++i) {
        const probe& p = *probes[i];
        EXPECT_EQ(p.fires, 1) << "deadline " << deadlines[i];
        EXPECT_FALSE(p.t.armed());
        EXPECT_GE(p.fired_at, deadlines[i]);
        EXPECT_LT(p.fired_at - deadlines[i], ms) << "deadline " << deadlines[i];
    }
    EXPECT_EQ(wheel.size(), 0U);
}

TEST(TimerWheel, FiresAtTheFirstAdvancePastItsDeadline)
{
    // Step by a quarter tick: each timer fires at the first advance whose now >= deadline.
    timer_wheel wheel(0);
    driver d{wheel, 0};
    std::vector<std::unique_ptr<probe>> probes;
    for (nanos dl = 100 * us; dl < 20 * ms; dl += 370 * us) {
        probes.push_back(std::make_unique<probe>(0, &d.now));
        arm(wheel, *probes.back(), dl);
    }
    for (nanos now = 0; now <= 21 * ms; now += 250 * us) {
        d.advance(now);
    }
    for (const auto& p : probes) {
        const nanos dl = p->t.deadline();
        EXPECT_EQ(p->fires, 1);
        EXPECT_GE(p->fired_at, dl);
        EXPECT_LT(p->fired_at - dl, 250 * us) << "deadline " << dl;
    }
}

TEST(TimerWheel, NothingFiresBeforeItsDeadline)
{
    timer_wheel wheel(0);
    probe p;
    arm(wheel, p, 10 * ms);
    EXPECT_EQ(wheel.advance(0), 0U);
    EXPECT_EQ(wheel.advance(9 * ms), 0U);
    EXPECT_EQ(wheel.advance(10 * ms - 1), 0U);
    EXPECT_EQ(p.fires, 0);
    EXPECT_TRUE(p.t.armed());
    EXPECT_EQ(wheel.advance(10 * ms), 1U);
    EXPECT_EQ(p.fires, 1);
    EXPECT_EQ(wheel.advance(11 * ms), 0U);
    EXPECT_EQ(p.fires, 1);
}

TEST(TimerWheel, AdvanceBackwardsFiresNothing)
{
    timer_wheel wheel(50 * ms);
    probe p;
    arm(wheel, p, 60 * ms);
    EXPECT_EQ(wheel.advance(55 * ms), 0U);
    EXPECT_EQ(wheel.advance(10 * ms), 0U); // a clock going backwards is ignored
    EXPECT_EQ(p.fires, 0);
    EXPECT_EQ(wheel.advance(60 * ms), 1U);
    EXPECT_EQ(p.fires, 1);
}

TEST(TimerWheel, SameTickFiresInArmingOrder)
{
    timer_wheel wheel(0);
    std::vector<int> order;
    std::vector<std::unique_ptr<probe>> probes;
    // All in tick 7, armed with deadlines in decreasing order within the tick.
    const std::array<nanos, 5> deadlines = {7 * ms + 900 * us, 7 * ms + 500 * us, 7 * ms + 501 * us,
                                            7 * ms, 7 * ms + 100 * us};
    for (size_t i = 0; i < deadlines.size(); ++i) {
        probes.push_back(std::make_unique<probe>(static_cast<int>(i), nullptr, &order));
        arm(wheel, *probes.back(), deadlines[i]);
    }
    EXPECT_EQ(wheel.advance(8 * ms), 5U);
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(TimerWheel, TicksPassedInOneAdvanceFireInTickOrder)
{
    timer_wheel wheel(0);
    std::vector<int> order;
    probe a(0, nullptr, &order);
    probe b(1, nullptr, &order);
    probe c(2, nullptr, &order);
    arm(wheel, c, 9 * ms);
    arm(wheel, b, 5 * ms);
    arm(wheel, a, 2 * ms);
    EXPECT_EQ(wheel.advance(10 * ms), 3U);
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST(TimerWheel, RearmMovesTimer)
{
    timer_wheel wheel(0);
    probe p;
    arm(wheel, p, 5 * ms);
    arm(wheel, p, 20 * ms); // later
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_EQ(p.t.deadline(), 20 * ms);
    EXPECT_EQ(wheel.advance(10 * ms), 0U);
    EXPECT_EQ(p.fires, 0);
    arm(wheel, p, 12 * ms); // earlier again
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_EQ(wheel.advance(11 * ms), 0U);
    EXPECT_EQ(wheel.advance(12 * ms), 1U);
    EXPECT_EQ(p.fires, 1);
    EXPECT_EQ(wheel.advance(30 * ms), 0U);
    EXPECT_EQ(p.fires, 1);
    EXPECT_EQ(wheel.size(), 0U);
}

TEST(TimerWheel, RearmWithinSameSlotKeepsOneEntry)
{
    timer_wheel wheel(0, ms, 8);
    probe p;
    arm(wheel, p, 3 * ms);
    arm(wheel, p, 3 * ms);
    arm(wheel, p, 11 * ms); // same slot, next revolution
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_EQ(wheel.advance(4 * ms), 0U);
    EXPECT_EQ(wheel.advance(11 * ms), 1U);
    EXPECT_EQ(p.fires, 1);
}

TEST(TimerWheel, CancelPreventsFiring)
{
    timer_wheel wheel(0);
    probe a;
    probe b;
    arm(wheel, a, 5 * ms);
    arm(wheel, b, 5 * ms);
    EXPECT_EQ(wheel.size(), 2U);
    wheel.cancel(a.t);
    EXPECT_FALSE(a.t.armed());
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_EQ(wheel.advance(100 * ms), 1U);
    EXPECT_EQ(a.fires, 0);
    EXPECT_EQ(b.fires, 1);
}

TEST(TimerWheel, CancellingAnUnarmedTimerIsHarmless)
{
    timer_wheel wheel(0);
    probe never;
    probe other;
    arm(wheel, other, 3 * ms);
    wheel.cancel(never.t); // never armed
    EXPECT_EQ(wheel.size(), 1U);
    probe once;
    arm(wheel, once, 1 * ms);
    wheel.cancel(once.t);
    wheel.cancel(once.t); // twice
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_EQ(wheel.advance(2 * ms), 0U);
    probe fired;
    arm(wheel, fired, 2 * ms);
    EXPECT_EQ(wheel.advance(2 * ms), 1U);
    wheel.cancel(fired.t); // after firing
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_TRUE(other.t.armed());
    EXPECT_EQ(wheel.advance(3 * ms), 1U);
    EXPECT_EQ(other.fires, 1);
    EXPECT_EQ(wheel.size(), 0U);
}

TEST(TimerWheel, TimerWithoutCallbackFiresSilently)
{
    timer t;
    timer_wheel wheel(0);
    wheel.arm(t, ms);
    EXPECT_EQ(wheel.advance(ms), 1U);
    EXPECT_FALSE(t.armed());
}

TEST(TimerWheel, PeriodicTimerRearmsItself)
{
    timer_wheel wheel(0);
    driver d{wheel, 0};
    probe p(0, &d.now);
    std::vector<nanos> times;
    p.then = [&](probe& self) {
        EXPECT_FALSE(self.t.armed()); // a fired timer is already disarmed
        times.push_back(self.fired_at);
        arm(wheel, self, self.t.deadline() + 10 * ms);
    };
    arm(wheel, p, 10 * ms);
    for (nanos now = 0; now <= 100 * ms; now += ms) {
        d.advance(now);
    }
    EXPECT_EQ(p.fires, 10);
    std::vector<nanos> want;
    for (nanos t = 10 * ms; t <= 100 * ms; t += 10 * ms) {
        want.push_back(t);
    }
    EXPECT_EQ(times, want);
    EXPECT_TRUE(p.t.armed());
    EXPECT_EQ(p.t.deadline(), 110 * ms);
    EXPECT_EQ(wheel.size(), 1U);
}

TEST(TimerWheel, PeriodicTimerWithPeriodOfASlotRevolution)
{
    // Period = slots * tick: every re-arm lands in the slot being processed.
    timer_wheel wheel(0, ms, 8);
    driver d{wheel, 0};
    probe p(0, &d.now);
    p.then = [&](probe& self) { arm(wheel, self, self.t.deadline() + 8 * ms); };
    arm(wheel, p, 8 * ms);
    for (nanos now = 0; now <= 80 * ms; now += 500 * us) {
        d.advance(now);
        EXPECT_EQ(p.fires, static_cast<int>(now / (8 * ms))) << now;
    }
}

TEST(TimerWheel, CallbackCancellingAnotherDueTimerPreventsIt)
{
    timer_wheel wheel(0);
    std::vector<int> order;
    probe a(0, nullptr, &order);
    probe b(1, nullptr, &order);
    probe c(2, nullptr, &order);
    a.then = [&](probe&) { wheel.cancel(b.t); };
    arm(wheel, a, 1 * ms);
    arm(wheel, b, 2 * ms); // due in the same advance as a, after it
    arm(wheel, c, 2 * ms);
    EXPECT_EQ(wheel.advance(5 * ms), 2U);
    EXPECT_EQ(order, (std::vector<int>{0, 2}));
    EXPECT_EQ(b.fires, 0);
    EXPECT_FALSE(b.t.armed());
    EXPECT_EQ(wheel.size(), 0U);
    EXPECT_EQ(wheel.advance(10 * ms), 0U);
    EXPECT_EQ(b.fires, 0);
}

TEST(TimerWheel, CallbackRearmingAnotherDueTimerPostponesIt)
{
    timer_wheel wheel(0);
    probe a;
    probe b;
    a.then = [&](probe&) { arm(wheel, b, 20 * ms); };
    arm(wheel, a, 1 * ms);
    arm(wheel, b, 2 * ms);
    EXPECT_EQ(wheel.advance(5 * ms), 1U);
    EXPECT_EQ(b.fires, 0);
    EXPECT_TRUE(b.t.armed());
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_EQ(wheel.advance(19 * ms), 0U);
    EXPECT_EQ(wheel.advance(20 * ms), 1U);
    EXPECT_EQ(b.fires, 1);
}

TEST(TimerWheel, CallbackCancellingAnAlreadyFiredTimerIsHarmless)
{
    timer_wheel wheel(0);
    probe a;
    probe b;
    b.then = [&](probe&) { wheel.cancel(a.t); };
    arm(wheel, a, 1 * ms);
    arm(wheel, b, 2 * ms);
    EXPECT_EQ(wheel.advance(3 * ms), 2U);
    EXPECT_EQ(a.fires, 1);
    EXPECT_EQ(b.fires, 1);
    EXPECT_EQ(wheel.size(), 0U);
}

TEST(TimerWheel, TimerArmedForNowFromACallbackFiresAtTheNextAdvance)
{
    // Documented behaviour: advance() collects the due timers before running callbacks, so a
    // timer a callback arms for "now" (or the past) fires at the next advance(), even one at
    // the same now; never recursively inside the current one.
    timer_wheel wheel(0);
    probe now_timer;
    probe past_timer;
    probe a;
    a.then = [&](probe&) {
        arm(wheel, now_timer, 5 * ms);
        arm(wheel, past_timer, 1 * ms);
    };
    arm(wheel, a, 5 * ms);
    EXPECT_EQ(wheel.advance(5 * ms), 1U);
    EXPECT_EQ(now_timer.fires, 0);
    EXPECT_EQ(past_timer.fires, 0);
    EXPECT_TRUE(now_timer.t.armed());
    EXPECT_EQ(wheel.next_deadline(), 1 * ms);
    EXPECT_EQ(wheel.advance(5 * ms), 2U); // same now
    EXPECT_EQ(now_timer.fires, 1);
    EXPECT_EQ(past_timer.fires, 1);
}

TEST(TimerWheel, SelfRearmForNowDoesNotLoop)
{
    timer_wheel wheel(0);
    probe p;
    p.then = [&](probe& self) { arm(wheel, self, 0); };
    arm(wheel, p, 0);
    EXPECT_EQ(wheel.advance(ms), 1U);
    EXPECT_EQ(wheel.advance(ms), 1U);
    EXPECT_EQ(wheel.advance(2 * ms), 1U);
    EXPECT_EQ(p.fires, 3);
}

TEST(TimerWheel, DeadlinesBeyondOneRevolutionFireOnTime)
{
    constexpr uint32_t slots = 8;
    timer_wheel wheel(0, ms, slots);
    driver d{wheel, 0};
    // Same slot (3) in revolutions 0..3, plus exactly one and two revolutions, plus a
    // sub-tick offset far out.
    const std::vector<nanos> deadlines = {3 * ms, 11 * ms, 19 * ms, 27 * ms,
                                          8 * ms, 16 * ms, 64 * ms, 43 * ms + 250 * us};
    std::vector<std::unique_ptr<probe>> probes;
    for (nanos dl : deadlines) {
        probes.push_back(std::make_unique<probe>(0, &d.now));
        arm(wheel, *probes.back(), dl);
    }
    for (nanos now = 0; now <= 70 * ms; now += 250 * us) {
        d.advance(now);
        for (size_t i = 0; i < deadlines.size(); ++i) {
            ASSERT_EQ(probes[i]->fires, now >= deadlines[i] ? 1 : 0)
                << "deadline " << deadlines[i] << " at " << now;
        }
    }
}

TEST(TimerWheel, DeadlineBeyondOneRevolutionSurvivesCoarseSteps)
{
    // Advancing by more than a revolution at a time still fires it exactly when passed.
    timer_wheel wheel(0, ms, 8);
    probe p;
    arm(wheel, p, 100 * ms + 1);
    EXPECT_EQ(wheel.advance(20 * ms), 0U);
    EXPECT_EQ(wheel.advance(45 * ms), 0U);
    EXPECT_EQ(wheel.advance(99 * ms), 0U);
    EXPECT_EQ(wheel.advance(100 * ms), 0U);
    EXPECT_EQ(wheel.advance(100 * ms + 1), 1U);
    EXPECT_EQ(p.fires, 1);
}

TEST(TimerWheel, HugeTimeJumpFiresEverythingDueExactlyOnce)
{
    constexpr nanos hour = 3600ULL * 1'000 * ms;
    timer_wheel wheel(0, ms, 64);
    driver d{wheel, 0};
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<nanos> dist(0, 10 * hour);
    std::vector<std::unique_ptr<probe>> probes;
    for (int i = 0; i < 2000; ++i) {
        probes.push_back(std::make_unique<probe>(i, &d.now));
        arm(wheel, *probes.back(), dist(rng));
    }
    // A few right at the jump's boundary.
    probes.push_back(std::make_unique<probe>(-1, &d.now));
    arm(wheel, *probes.back(), 3 * hour);
    probes.push_back(std::make_unique<probe>(-2, &d.now));
    arm(wheel, *probes.back(), 3 * hour + 1);
    const size_t due = static_cast<size_t>(std::count_if(
        probes.begin(), probes.end(), [](const auto& p) { return p->t.deadline() <= 3 * hour; }));

    EXPECT_EQ(d.advance(3 * hour), due);
    for (const auto& p : probes) {
        ASSERT_EQ(p->fires, p->t.deadline() <= 3 * hour ? 1 : 0) << p->t.deadline();
        ASSERT_EQ(p->t.armed(), p->t.deadline() > 3 * hour);
    }
    EXPECT_EQ(wheel.size(), probes.size() - due);
    EXPECT_EQ(d.advance(3 * hour), 0U); // nothing twice
    EXPECT_EQ(d.advance(20 * hour), probes.size() - due);
    for (const auto& p : probes) {
        ASSERT_EQ(p->fires, 1);
    }
    EXPECT_EQ(wheel.size(), 0U);
    EXPECT_EQ(wheel.next_deadline(), UINT64_MAX);
}

TEST(TimerWheel, HugeTimeJumpThenTimersStillWork)
{
    constexpr nanos hour = 3600ULL * 1'000 * ms;
    timer_wheel wheel(0, ms, 16);
    probe keep; // keeps the wheel non-empty across the jump
    arm(wheel, keep, 100 * hour);
    EXPECT_EQ(wheel.advance(5 * hour + 300 * us), 0U);
    probe p;
    arm(wheel, p, 5 * hour + 3 * ms);
    EXPECT_EQ(wheel.next_deadline(), 5 * hour + 3 * ms);
    EXPECT_EQ(wheel.advance(5 * hour + 2 * ms), 0U);
    EXPECT_EQ(wheel.advance(5 * hour + 3 * ms), 1U);
    EXPECT_EQ(p.fires, 1);
    EXPECT_EQ(keep.fires, 0);
}

TEST(TimerWheel, PastDeadlinesFireAtTheNextAdvance)
{
    timer_wheel wheel(0);
    EXPECT_EQ(wheel.advance(100 * ms), 0U);
    probe a;
    probe b;
    probe c;
    arm(wheel, a, 50 * ms);
    arm(wheel, b, 0);
    arm(wheel, c, 100 * ms); // exactly now
    EXPECT_EQ(wheel.size(), 3U);
    EXPECT_EQ(wheel.next_deadline(), 0U);
    EXPECT_EQ(wheel.advance(100 * ms), 3U); // same now: they are due
    EXPECT_EQ(a.fires + b.fires + c.fires, 3);

    // Past deadlines far more than a revolution back.
    timer_wheel small(0, ms, 8);
    EXPECT_EQ(small.advance(1000 * ms), 0U);
    probe d;
    arm(small, d, 3 * ms);
    EXPECT_EQ(small.advance(1000 * ms + 500 * us), 1U);
    EXPECT_EQ(d.fires, 1);
}

TEST(TimerWheel, PastDeadlineOnAFreshWheel)
{
    timer_wheel wheel(50 * ms + 500 * us);
    probe p;
    arm(wheel, p, 10 * ms);
    EXPECT_EQ(wheel.advance(50 * ms + 500 * us), 1U);
    EXPECT_EQ(p.fires, 1);
}

// The known subtle case: after advance(1.5 ms) the current tick (1) has been processed in
// part; a timer armed for 1.7 ms hashes into that same tick's slot and must still be found
// by the next advance past 1.7 ms, not a revolution later.
TEST(TimerWheel, SubTickDeadlineInTheCurrentTick)
{
    timer_wheel wheel(0);
    driver d{wheel, 0};
    EXPECT_EQ(d.advance(1500 * us), 0U);
    probe p(0, &d.now);
    arm(wheel, p, 1700 * us);
    EXPECT_EQ(wheel.next_deadline(), 1700 * us);
    EXPECT_EQ(d.advance(1600 * us), 0U);
    EXPECT_EQ(p.fires, 0);
    EXPECT_EQ(d.advance(1800 * us), 1U);
    EXPECT_EQ(p.fires, 1);
    EXPECT_EQ(p.fired_at, 1800 * us);
}

TEST(TimerWheel, SubTickDeadlineFiresExactlyAtItsDeadline)
{
    timer_wheel wheel(0);
    EXPECT_EQ(wheel.advance(1500 * us), 0U);
    probe p;
    arm(wheel, p, 1700 * us);
    EXPECT_EQ(wheel.advance(1700 * us - 1), 0U);
    EXPECT_EQ(wheel.advance(1700 * us), 1U);
    EXPECT_EQ(p.fires, 1);
}

TEST(TimerWheel, SubTickDeadlineFiresWhenTheNextAdvanceCrossesTicks)
{
    for (const nanos next : {2 * ms, 2500 * us, 3 * ms, 9 * ms, 4096 * ms + 1, 100'000 * ms}) {
        timer_wheel wheel(0, ms, 8);
        EXPECT_EQ(wheel.advance(1500 * us), 0U);
        probe p;
        arm(wheel, p, 1700 * us);
        EXPECT_EQ(wheel.advance(next), 1U) << next;
        EXPECT_EQ(p.fires, 1) << next;
        EXPECT_EQ(wheel.size(), 0U);
    }
}

TEST(TimerWheel, SubTickDeadlineOnAFreshWheel)
{
    timer_wheel wheel(1500 * us); // created mid-tick
    probe p;
    arm(wheel, p, 1700 * us);
    EXPECT_EQ(wheel.advance(1600 * us), 0U);
    EXPECT_EQ(wheel.advance(1700 * us), 1U);
    EXPECT_EQ(p.fires, 1);
}

TEST(TimerWheel, SubTickDeadlineArmedFromACallback)
{
    timer_wheel wheel(0);
    probe later;
    probe a;
    a.then = [&](probe&) { arm(wheel, later, 1700 * us); };
    arm(wheel, a, 1200 * us);
    EXPECT_EQ(wheel.advance(1500 * us), 1U);
    EXPECT_EQ(later.fires, 0);
    EXPECT_EQ(wheel.advance(1600 * us), 0U);
    EXPECT_EQ(wheel.advance(1700 * us), 1U);
    EXPECT_EQ(later.fires, 1);
}

TEST(TimerWheel, SubTickDeadlineLeftBehindByTheSameTickFiring)
{
    // Two timers in tick 1; advance(1.5) fires one and must keep the other.
    timer_wheel wheel(0);
    probe early;
    probe late;
    arm(wheel, early, 1200 * us);
    arm(wheel, late, 1800 * us);
    EXPECT_EQ(wheel.advance(1500 * us), 1U);
    EXPECT_EQ(early.fires, 1);
    EXPECT_TRUE(late.t.armed());
    EXPECT_EQ(wheel.next_deadline(), 1800 * us);
    EXPECT_EQ(wheel.advance(1900 * us), 1U);
    EXPECT_EQ(late.fires, 1);
}

TEST(TimerWheel, SizeAndNextDeadline)
{
    timer_wheel wheel(0);
    EXPECT_EQ(wheel.size(), 0U);
    EXPECT_EQ(wheel.next_deadline(), UINT64_MAX);
    probe a;
    probe b;
    probe c;
    probe far;
    arm(wheel, a, 5 * ms + 7);
    EXPECT_EQ(wheel.size(), 1U);
    EXPECT_EQ(wheel.next_deadline(), 5 * ms + 7);
    arm(wheel, b, 3 * ms);
    EXPECT_EQ(wheel.next_deadline(), 3 * ms);
    arm(wheel, c, 3 * ms + 500 * us); // same tick as b, later
    EXPECT_EQ(wheel.next_deadline(), 3 * ms);
    arm(wheel, far, 100 * ms);
    EXPECT_EQ(wheel.size(), 4U);
    wheel.cancel(b.t);
    EXPECT_EQ(wheel.size(), 3U);
    EXPECT_EQ(wheel.next_deadline(), 3 * ms + 500 * us);
    wheel.cancel(c.t);
    wheel.cancel(a.t);
    EXPECT_EQ(wheel.size(), 1U);
    // 100 ms is beyond the default 64-slot scan window.
    EXPECT_EQ(wheel.next_deadline(), UINT64_MAX);
    EXPECT_EQ(wheel.next_deadline(128), 100 * ms);
    EXPECT_EQ(wheel.next_deadline(100), UINT64_MAX); // tick 100 is just outside [0, 100)
    EXPECT_EQ(wheel.next_deadline(101), 100 * ms);
    EXPECT_EQ(wheel.next_deadline(0), UINT64_MAX);
    // The window moves with advance().
    EXPECT_EQ(wheel.advance(40 * ms), 0U);
    EXPECT_EQ(wheel.next_deadline(), 100 * ms);
    EXPECT_EQ(wheel.advance(100 * ms), 1U);
    EXPECT_EQ(wheel.size(), 0U);
    EXPECT_EQ(wheel.next_deadline(), UINT64_MAX);
}

TEST(TimerWheel, NextDeadlineIgnoresLaterRevolutionsInTheSameSlot)
{
    timer_wheel wheel(0, ms, 8);
    probe later_rev;
    probe sooner;
    arm(wheel, later_rev, 9 * ms); // slot 1, revolution 1
    arm(wheel, sooner, 4 * ms);    // slot 4
    EXPECT_EQ(wheel.next_deadline(), 4 * ms);
    EXPECT_EQ(wheel.next_deadline(4), UINT64_MAX);
    wheel.cancel(sooner.t);
    // A window larger than the wheel is clamped to one revolution: tick 9 is outside [0, 8).
    EXPECT_EQ(wheel.next_deadline(1000), UINT64_MAX);
    EXPECT_EQ(wheel.advance(2 * ms), 0U);
    EXPECT_EQ(wheel.next_deadline(), 9 * ms); // now within [2, 10)
}

TEST(TimerWheel, DestroyingTheWheelDisarmsItsTimers)
{
    probe a;
    probe b;
    probe c;
    probe d;
    {
        auto wheel = std::make_unique<timer_wheel>(0, ms, 16);
        arm(*wheel, a, 1 * ms);
        arm(*wheel, b, 1 * ms);  // same slot as a
        arm(*wheel, c, 17 * ms); // same slot, next revolution
        arm(*wheel, d, 9 * ms);
        EXPECT_TRUE(a.t.armed() && b.t.armed() && c.t.armed() && d.t.armed());
        wheel.reset();
    }
    EXPECT_FALSE(a.t.armed());
    EXPECT_FALSE(b.t.armed());
    EXPECT_FALSE(c.t.armed());
    EXPECT_FALSE(d.t.armed());
    EXPECT_EQ(a.fires + b.fires + c.fires + d.fires, 0);
    // The timers are reusable with another wheel.
    timer_wheel other(0);
    arm(other, a, 1 * ms);
    arm(other, c, 2 * ms);
    other.cancel(b.t); // disarmed: harmless
    EXPECT_EQ(other.size(), 2U);
    EXPECT_EQ(other.advance(2 * ms), 2U);
    EXPECT_EQ(a.fires, 1);
    EXPECT_EQ(c.fires, 1);
}

TEST(TimerWheel, NonDefaultTickAndNonZeroEpoch)
{
    constexpr nanos tick = 10 * ms;
    constexpr nanos epoch = 1'700'000'000ULL * 1'000 * ms + 3 * ms; // wall-clock-like
    timer_wheel wheel(epoch, tick, 32);
    driver d{wheel, epoch};
    probe p(0, &d.now);
    arm(wheel, p, epoch + 25 * ms);
    for (nanos now = epoch; now < epoch + 100 * ms; now += 4 * ms) {
        d.advance(now);
    }
    EXPECT_EQ(p.fires, 1);
    EXPECT_GE(p.fired_at, epoch + 25 * ms);
    EXPECT_LT(p.fired_at, epoch + 25 * ms + 4 * ms);
}

// 10,000 timers with deadlines over many revolutions (and some in the past), random
// cancels and re-arms (some from callbacks), advancing in random steps from sub-tick to
// several revolutions. Every timer not cancelled fires exactly once, never before its
// deadline and at the first advance that passes it (so at most one step late); size() and
// next_deadline() agree with a model.
TEST(TimerWheel, RandomizedAgainstAModel)
{
    constexpr nanos tick = ms;
    constexpr uint32_t slots = 256;
    constexpr nanos rev = slots * tick;
    constexpr size_t n = 10'000;
    constexpr nanos start = 123'456'789'012ULL;
    std::mt19937_64 rng(20240611);

    struct rec {
        timer t;
        nanos deadline = 0;
        uint64_t armed_epoch = 0; // advances completed when last armed
        bool cancelled = false;
        int fires = 0;
    };
    struct ctx {
        timer_wheel* wheel;
        std::vector<rec>* recs;
        std::mt19937_64* rng;
        nanos now;
        nanos prev_now;
        uint64_t epoch; // advances started
        uint64_t failures = 0;
        size_t armed = 0;
    };
    std::vector<rec> recs(n); // before the wheel, which disarms them when destroyed
    timer_wheel wheel(start, tick, slots);
    ctx c{&wheel, &recs, &rng, start, start, 0};

    const auto on_fire = [](timer& t, void* p) {
        auto* x = static_cast<ctx*>(p);
        rec& r = *reinterpret_cast<rec*>(&t); // t is the first member of rec
        --x->armed;
        ++r.fires;
        // Never early, and at the first advance past the deadline (or the first advance
        // after arming, for a deadline already passed when armed).
        if (r.fires != 1 || r.cancelled || x->now < r.deadline ||
            (r.armed_epoch + 1 < x->epoch && x->prev_now >= r.deadline)) {
            ++x->failures;
        }
        // One timer in 16 cancels a random other one in the same advance.
        if ((*x->rng)() % 16 == 0) {
            rec& o = (*x->recs)[(*x->rng)() % x->recs->size()];
            if (o.t.armed()) {
                x->wheel->cancel(o.t);
                o.cancelled = true;
                --x->armed;
            }
        }
    };
    static_assert(std::is_standard_layout_v<rec>);

    std::uniform_int_distribution<nanos> horizon(0, 40 * rev);
    for (rec& r : recs) {
        r.t.set(on_fire, &c);
        // 5% in the past (up to two revolutions back), the rest up to 40 revolutions out.
        r.deadline = rng() % 20 == 0 ? start - rng() % (2 * rev) : start + horizon(rng);
        wheel.arm(r.t, r.deadline);
        ++c.armed;
    }
    ASSERT_EQ(wheel.size(), n);

    size_t total_fired = 0;
    const nanos end = start + 45 * rev;
    while (c.now < end) {
        // Random step: mostly sub-tick to a few ticks, sometimes up to 3 revolutions.
        nanos step = 0;
        switch (rng() % 10) {
        case 0:
            step = 0;
            break;
        case 1:
        case 2:
        case 3:
        case 4:
            step = rng() % tick;
            break;
        case 5:
        case 6:
        case 7:
            step = rng() % (8 * tick);
            break;
        case 8:
            step = rng() % (64 * tick);
            break;
        default:
            step = rng() % (3 * rev);
            break;
        }
        c.prev_now = c.now;
        c.now += step;
        ++c.epoch;
        total_fired += wheel.advance(c.now);
        ASSERT_EQ(c.failures, 0U) << "advance " << c.epoch << " to " << c.now;
        ASSERT_EQ(wheel.size(), c.armed);

        // Random cancels and re-arms between advances.
        for (int k = 0; k < 8; ++k) {
            rec& r = recs[rng() % n];
            if (!r.t.armed()) {
                continue;
            }
            if (rng() % 2 == 0) {
                wheel.cancel(r.t);
                r.cancelled = true;
                --c.armed;
            } else {
                // Re-arm: somewhere from a tick in the past to 5 revolutions ahead.
                r.deadline = c.now - std::min<nanos>(c.now, tick) + rng() % (5 * rev);
                r.armed_epoch = c.epoch;
                wheel.arm(r.t, r.deadline);
            }
        }
        ASSERT_EQ(wheel.size(), c.armed);

        // next_deadline(): the earliest armed deadline, or UINT64_MAX when that is beyond
        // the 64-tick window from the current tick.
        nanos earliest = UINT64_MAX;
        for (const rec& r : recs) {
            if (r.t.armed()) {
                earliest = std::min(earliest, r.deadline);
            }
        }
        const nanos got = wheel.next_deadline();
        if (got != UINT64_MAX) {
            ASSERT_EQ(got, earliest);
        } else if (earliest != UINT64_MAX) {
            ASSERT_GE(earliest / tick, c.now / tick + 64);
        }
    }
    // Past every deadline: everything left fires.
    c.prev_now = c.now;
    c.now += 50 * rev;
    ++c.epoch;
    total_fired += wheel.advance(c.now);
    EXPECT_EQ(c.failures, 0U);
    EXPECT_EQ(wheel.size(), 0U);

    size_t fired = 0;
    size_t cancelled = 0;
    for (const rec& r : recs) {
        EXPECT_FALSE(r.t.armed());
        if (r.cancelled) {
            ++cancelled;
            ASSERT_EQ(r.fires, 0);
        } else {
            ASSERT_EQ(r.fires, 1);
            ++fired;
        }
    }
    EXPECT_EQ(fired, total_fired);
    EXPECT_EQ(fired + cancelled, n);
    EXPECT_GT(cancelled, 0U);
    EXPECT_GT(fired, n / 2);
}

// ============================================================================ Reactor

// A clock the test controls: `now`, plus `step` added on every read (to model time passing
// inside the reactor's wait).
struct fake_clock {
    nanos now = 0;
    nanos step = 0;
    int reads = 0;

    static nanos read(void* ctx)
    {
        auto* c = static_cast<fake_clock*>(ctx);
        c->now += c->step;
        ++c->reads;
        return c->now;
    }
    clock_source source() { return clock_source{&fake_clock::read, this}; }
};

std::unique_ptr<reactor> make_reactor(fake_clock& clock)
{
    auto r = reactor::create(clock.source());
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.err().to_string());
    return r.ok() ? std::move(r).value() : nullptr;
}

struct nb_pipe {
    int rd = -1;
    int wr = -1;
    nb_pipe()
    {
        std::array<int, 2> fds{};
        EXPECT_EQ(pipe2(fds.data(), O_NONBLOCK | O_CLOEXEC), 0);
        rd = fds[0];
        wr = fds[1];
    }
    ~nb_pipe()
    {
        if (rd >= 0) {
            close(rd);
        }
        if (wr >= 0) {
            close(wr);
        }
    }
    nb_pipe(const nb_pipe&) = delete;
    nb_pipe& operator=(const nb_pipe&) = delete;
    void send(const char* s = "x") const { ASSERT_GT(write(wr, s, strlen(s)), 0); }
};

// Drains its fd on EPOLLIN (edge-triggered), records events and the reactor's now().
struct recorder final : io_handler {
    int fd = -1;
    reactor* r = nullptr;
    std::vector<uint32_t> events;
    std::vector<nanos> nows;
    size_t bytes = 0;
    std::function<void()> then;

    recorder(int f, reactor* re) : fd(f), r(re) {}
    void on_io(uint32_t ev) noexcept override
    {
        events.push_back(ev);
        if (r != nullptr) {
            nows.push_back(r->now());
        }
        if ((ev & EPOLLIN) != 0) {
            std::array<char, 256> buf{};
            for (;;) {
                const ssize_t got = read(fd, buf.data(), buf.size());
                if (got <= 0) {
                    break;
                }
                bytes += static_cast<size_t>(got);
            }
        }
        if (then) {
            then();
        }
    }
};

struct end_marker final : deferred {
    std::function<void()> fn;
    int runs = 0;
    void on_deferred() noexcept override
    {
        ++runs;
        if (fn) {
            fn();
        }
    }
};

TEST(Reactor, CreateReadsTheClockAndArmsRelativeToNow)
{
    fake_clock clock{.now = 42 * ms};
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    EXPECT_GE(r->fd(), 0);
    EXPECT_EQ(r->now(), 42 * ms);
    probe p;
    arm(*r, p, 5 * ms);
    EXPECT_EQ(p.t.deadline(), 47 * ms);
    EXPECT_EQ(r->timers().size(), 1U);
    r->cancel(p.t);
    EXPECT_EQ(r->timers().size(), 0U);
    clock.now = 50 * ms;
    EXPECT_EQ(r->now(), 42 * ms); // cached
    EXPECT_EQ(r->refresh_now(), 50 * ms);
    EXPECT_EQ(r->now(), 50 * ms);
}

TEST(Reactor, DefaultClockIsMonotonic)
{
    auto created = reactor::create();
    ASSERT_TRUE(created.ok());
    auto& r = *created;
    const nanos a = r->now();
    const nanos b = r->refresh_now();
    EXPECT_GT(a, 0U);
    EXPECT_GE(b, a);
}

TEST(Reactor, TimersFireOnTheFakeClock)
{
    fake_clock clock{.now = 1000 * ms};
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    std::vector<nanos> fired_at;
    const std::array<nanos, 4> delays = {0, 3 * ms, 3 * ms + 200 * us, 10 * ms};
    std::vector<std::unique_ptr<probe>> probes;
    for (nanos dl : delays) {
        probes.push_back(std::make_unique<probe>());
        probes.back()->then = [&](probe&) { fired_at.push_back(r->now()); };
        arm(*r, *probes.back(), dl);
    }
    for (int i = 0; i < 50; ++i) {
        if (i > 0) {
            clock.now += 250 * us;
        }
        r->poll(0);
        EXPECT_EQ(r->now(), clock.now);
        for (size_t k = 0; k < delays.size(); ++k) {
            ASSERT_EQ(probes[k]->fires, clock.now >= 1000 * ms + delays[k] ? 1 : 0)
                << "delay " << delays[k] << " at " << clock.now;
        }
    }
    ASSERT_EQ(fired_at.size(), delays.size());
    for (size_t k = 0; k < delays.size(); ++k) {
        EXPECT_GE(fired_at[k], 1000 * ms + delays[k]);
        EXPECT_LT(fired_at[k], 1000 * ms + delays[k] + 250 * us);
    }
}

TEST(Reactor, PollReturnsEventsPlusTimers)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    nb_pipe p;
    recorder h(p.rd, r.get());
    ASSERT_TRUE(r->add(p.rd, &h, EPOLLIN).ok());
    probe a;
    probe b;
    arm(*r, a, ms);
    arm(*r, b, 2 * ms);
    p.send();
    clock.now = 2 * ms;
    EXPECT_EQ(r->poll(0), 3U);
    EXPECT_EQ(r->poll(0), 0U);
}

TEST(Reactor, PipeReadableDispatchesEpollin)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    nb_pipe p;
    recorder h(p.rd, r.get());
    ASSERT_TRUE(r->add(p.rd, &h, EPOLLIN | EPOLLRDHUP).ok());
    EXPECT_EQ(r->poll(0), 0U);
    EXPECT_TRUE(h.events.empty());
    p.send("hello");
    EXPECT_EQ(r->poll(0), 1U);
    ASSERT_EQ(h.events.size(), 1U);
    EXPECT_NE(h.events[0] & EPOLLIN, 0U);
    EXPECT_EQ(h.bytes, 5U);
    // Edge-triggered and drained: no more events until new data.
    EXPECT_EQ(r->poll(0), 0U);
    p.send("ab");
    EXPECT_EQ(r->poll(0), 1U);
    EXPECT_EQ(h.bytes, 7U);
    // The writer closing is a hang-up.
    close(p.wr);
    p.wr = -1;
    EXPECT_EQ(r->poll(0), 1U);
    ASSERT_EQ(h.events.size(), 3U);
    EXPECT_NE(h.events[2] & (EPOLLHUP | EPOLLRDHUP), 0U);
    r->remove(p.rd);
}

TEST(Reactor, SocketpairWritableAndReadable)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    std::array<int, 2> sv{};
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv.data()), 0);
    recorder a(sv[0], r.get());
    recorder b(sv[1], r.get());
    ASSERT_TRUE(r->add(sv[0], &a, EPOLLIN | EPOLLOUT).ok());
    ASSERT_TRUE(r->add(sv[1], &b, EPOLLIN).ok());
    EXPECT_EQ(r->poll(0), 1U); // a is writable
    ASSERT_EQ(a.events.size(), 1U);
    EXPECT_NE(a.events[0] & EPOLLOUT, 0U);
    ASSERT_EQ(write(sv[0], "ping", 4), 4);
    EXPECT_EQ(r->poll(0), 1U);
    ASSERT_EQ(b.events.size(), 1U);
    EXPECT_NE(b.events[0] & EPOLLIN, 0U);
    EXPECT_EQ(b.bytes, 4U);
    r->remove(sv[0]);
    r->remove(sv[1]);
    close(sv[0]);
    close(sv[1]);
}

TEST(Reactor, ModifyChangesTheHandler)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    nb_pipe p;
    recorder h1(p.rd, r.get());
    recorder h2(p.rd, r.get());
    ASSERT_TRUE(r->add(p.rd, &h1, EPOLLIN).ok());
    p.send();
    EXPECT_EQ(r->poll(0), 1U);
    EXPECT_EQ(h1.events.size(), 1U);
    ASSERT_TRUE(r->modify(p.rd, &h2, EPOLLIN).ok());
    p.send();
    EXPECT_EQ(r->poll(0), 1U);
    EXPECT_EQ(h1.events.size(), 1U);
    ASSERT_EQ(h2.events.size(), 1U);
    EXPECT_NE(h2.events[0] & EPOLLIN, 0U);
    EXPECT_EQ(h2.bytes, 1U);
    // Modify the interest set to nothing readable: no event for new data.
    ASSERT_TRUE(r->modify(p.rd, &h2, 0).ok());
    p.send();
    EXPECT_EQ(r->poll(0), 0U);
    // Back to EPOLLIN: MOD re-evaluates readiness, so the pending byte is reported.
    ASSERT_TRUE(r->modify(p.rd, &h1, EPOLLIN).ok());
    EXPECT_EQ(r->poll(0), 1U);
    EXPECT_EQ(h1.events.size(), 2U);
    EXPECT_EQ(h2.events.size(), 1U);
}

TEST(Reactor, RemoveStopsEvents)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    nb_pipe p;
    recorder h(p.rd, r.get());
    ASSERT_TRUE(r->add(p.rd, &h, EPOLLIN).ok());
    p.send();
    EXPECT_EQ(r->poll(0), 1U);
    r->remove(p.rd);
    p.send();
    EXPECT_EQ(r->poll(0), 0U);
    EXPECT_EQ(h.events.size(), 1U);
    r->remove(p.rd); // twice: harmless
    // It can be added again (the pending byte is reported).
    ASSERT_TRUE(r->add(p.rd, &h, EPOLLIN).ok());
    EXPECT_EQ(r->poll(0), 1U);
    EXPECT_EQ(h.events.size(), 2U);
}

TEST(Reactor, RegistrationErrors)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    nb_pipe p;
    recorder h(p.rd, r.get());
    EXPECT_FALSE(r->add(-1, &h, EPOLLIN).ok());
    EXPECT_FALSE(r->modify(p.rd, &h, EPOLLIN).ok()); // not registered
    ASSERT_TRUE(r->add(p.rd, &h, EPOLLIN).ok());
    const auto dup = r->add(p.rd, &h, EPOLLIN);
    ASSERT_FALSE(dup.ok());
    EXPECT_NE(dup.err().message.find("epoll_ctl"), std::string::npos);
    r->remove(-1); // harmless
}

TEST(Reactor, DeferRunsAfterTheBatch)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    nb_pipe p1;
    nb_pipe p2;
    nb_pipe p3;
    recorder h1(p1.rd, r.get());
    recorder h2(p2.rd, r.get());
    recorder h3(p3.rd, r.get());
    int dispatched = 0;
    std::vector<int> seen_by_deferred;
    end_marker d;
    d.fn = [&] { seen_by_deferred.push_back(dispatched); };
    bool deferred_once = false;
    const auto count_and_defer = [&] {
        ++dispatched;
        EXPECT_EQ(d.runs, 0); // never before the batch is over
        if (!deferred_once) {
            deferred_once = true;
            r->defer(&d); // from whichever handler the kernel reports first
        }
    };
    h1.then = count_and_defer;
    h2.then = count_and_defer;
    h3.then = count_and_defer;
    ASSERT_TRUE(r->add(p1.rd, &h1, EPOLLIN).ok());
    ASSERT_TRUE(r->add(p2.rd, &h2, EPOLLIN).ok());
    ASSERT_TRUE(r->add(p3.rd, &h3, EPOLLIN).ok());
    p1.send();
    p2.send();
    p3.send();
    EXPECT_EQ(r->poll(0), 3U);
    EXPECT_EQ(d.runs, 1);
    EXPECT_EQ(seen_by_deferred, (std::vector<int>{3}));
    EXPECT_EQ(r->poll(0), 0U);
    EXPECT_EQ(d.runs, 1); // once
}

TEST(Reactor, DeferredEndRunsBeforeTimersAndMayDeferMore)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    std::vector<std::string> log;
    nb_pipe p;
    recorder h(p.rd, r.get());
    end_marker second;
    end_marker first;
    end_marker from_timer;
    second.fn = [&] { log.emplace_back("second"); };
    first.fn = [&] {
        log.emplace_back("first");
        r->defer(&second); // a closing stream ending its peer
    };
    from_timer.fn = [&] { log.emplace_back("from_timer"); };
    h.then = [&] {
        log.emplace_back("io");
        r->defer(&first);
    };
    probe t;
    t.then = [&](probe&) {
        log.emplace_back("timer");
        r->defer(&from_timer);
    };
    ASSERT_TRUE(r->add(p.rd, &h, EPOLLIN).ok());
    arm(*r, t, 0);
    p.send();
    EXPECT_EQ(r->poll(0), 2U);
    EXPECT_EQ(log, (std::vector<std::string>{"io", "first", "second", "timer", "from_timer"}));
}

TEST(Reactor, PendingDeferredMakesPollNotWait)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    end_marker d;
    r->defer(&d);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(r->poll(-1), 0U); // would block forever without the deferred end
    const auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(d.runs, 1);
    EXPECT_LT(waited, std::chrono::seconds(5));
}

TEST(Reactor, DestructorRunsPendingDeferredEnds)
{
    fake_clock clock;
    end_marker d;
    {
        auto r = make_reactor(clock);
        ASSERT_NE(r, nullptr);
        r->defer(&d);
        EXPECT_EQ(d.runs, 0);
    }
    EXPECT_EQ(d.runs, 1);
}

// The fake clock moves 5 ms on every read, as if the wait took that long: poll() must wait
// only until the timer (5 ms) even with an infinite or long timeout, and fire it.
TEST(Reactor, PollWithATimerDueReturnsPromptly)
{
    for (const int timeout : {-1, 10'000}) {
        fake_clock clock;
        auto r = make_reactor(clock);
        ASSERT_NE(r, nullptr);
        clock.step = 5 * ms;
        probe p;
        arm(*r, p, 5 * ms);
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_EQ(r->poll(timeout), 1U) << timeout;
        const auto waited = std::chrono::steady_clock::now() - t0;
        EXPECT_EQ(p.fires, 1);
        EXPECT_LT(waited, std::chrono::seconds(2)) << timeout;
    }
}

TEST(Reactor, PollWithAnOverdueTimerFiresIt)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    probe p;
    arm(*r, p, 2 * ms);
    clock.now = 10 * ms;
    EXPECT_EQ(r->refresh_now(), 10 * ms);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(r->poll(10'000), 1U);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
    EXPECT_EQ(p.fires, 1);
}

TEST(Reactor, PollWithOnlyAFarTimerStillReturns)
{
    // A timer beyond next_deadline()'s window: poll(-1) wakes up (after at most ~64 ms of
    // real time) instead of blocking forever, and does not fire the timer early.
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    probe p;
    arm(*r, p, 3600'000 * ms);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(r->poll(-1), 0U);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    EXPECT_EQ(p.fires, 0);
    EXPECT_TRUE(p.t.armed());
}

TEST(Reactor, NowIsConstantWithinOnePoll)
{
    fake_clock clock{.now = 7 * ms, .step = 1 * ms}; // every read moves time
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    nb_pipe p1;
    nb_pipe p2;
    recorder h1(p1.rd, r.get());
    recorder h2(p2.rd, r.get());
    std::vector<nanos> nows;
    h2.then = [&] { nows.push_back(r->now()); };
    end_marker d;
    d.fn = [&] { nows.push_back(r->now()); };
    h1.then = [&] {
        nows.push_back(r->now());
        r->defer(&d);
    };
    probe t;
    t.then = [&](probe&) { nows.push_back(r->now()); };
    ASSERT_TRUE(r->add(p1.rd, &h1, EPOLLIN).ok());
    ASSERT_TRUE(r->add(p2.rd, &h2, EPOLLIN).ok());
    arm(*r, t, 0);
    p1.send();
    p2.send();
    const int reads_before = clock.reads;
    EXPECT_EQ(r->poll(0), 3U);
    EXPECT_EQ(clock.reads - reads_before, 1); // read once per poll
    ASSERT_EQ(nows.size(), 4U);
    for (nanos n : nows) {
        EXPECT_EQ(n, r->now());
    }
    EXPECT_EQ(r->now(), clock.now);
}

// poll() bounds its wait by the current clock, not the now() of the previous poll: a timer
// that became overdue while the caller worked between polls fires at once (a regression
// test: the first version waited (deadline - stale now), 60 ms here).
TEST(Reactor, PollWithAnOverdueTimerDoesNotWaitFromAStaleNow)
{
    fake_clock clock;
    auto r = make_reactor(clock);
    ASSERT_NE(r, nullptr);
    probe p;
    arm(*r, p, 60 * ms);
    clock.now = 110 * ms; // time passed outside poll(); the timer is overdue
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(r->poll(10'000), 1U);
    const auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(p.fires, 1);
    EXPECT_LT(waited, std::chrono::milliseconds(30));
}

} // namespace
} // namespace sluice::l7
