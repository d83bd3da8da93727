#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "sluice/rcu/published.hh"

namespace sluice::rcu {
namespace {

std::atomic<int> g_live{0};

struct object {
    explicit object(uint64_t v) : value(v) { g_live.fetch_add(1); }
    ~object()
    {
        magic = 0xdead;
        g_live.fetch_sub(1);
    }
    uint64_t value;
    uint64_t magic = 0x5a5a;
};

std::unique_ptr<qsbr_domain> make_domain(unsigned readers)
{
    auto d = qsbr_domain::create(readers);
    EXPECT_TRUE(d.ok());
    return std::move(*d);
}

TEST(Published, RetiredObjectWaitsForEveryOnlineReader)
{
    g_live = 0;
    auto d = make_domain(2);
    ASSERT_TRUE(d->register_reader(0).ok());
    ASSERT_TRUE(d->register_reader(1).ok());
    {
        published<object> p(*d);
        EXPECT_EQ(p.load(), nullptr);
        p.publish(std::make_unique<object>(1));
        const object* seen = p.load(); // reader 0 holds this across the next publish
        p.publish(std::make_unique<object>(2));
        EXPECT_EQ(p.load()->value, 2u);
        EXPECT_EQ(p.retired(), 1u);
        EXPECT_EQ(p.reclaim(), 0u) << "no reader has passed a quiescent state yet";
        EXPECT_EQ(seen->magic, 0x5a5au);
        d->quiescent(0);
        EXPECT_EQ(p.reclaim(), 0u) << "reader 1 is still online and has not quiesced";
        d->quiescent(1);
        EXPECT_EQ(p.reclaim(), 1u);
        EXPECT_EQ(g_live.load(), 1);
    }
    EXPECT_EQ(g_live.load(), 0);
}

TEST(Published, OfflineReadersAreNotWaitedFor)
{
    auto d = make_domain(2);
    ASSERT_TRUE(d->register_reader(0).ok());
    ASSERT_TRUE(d->register_reader(1).ok());
    d->offline(1);
    published<object> p(*d);
    p.publish(std::make_unique<object>(1));
    p.publish(std::make_unique<object>(2));
    d->quiescent(0);
    EXPECT_EQ(p.reclaim(), 1u);
}

TEST(Published, PublishSyncFailsWhenAReaderIsStuck)
{
    auto d = make_domain(1);
    ASSERT_TRUE(d->register_reader(0).ok());
    published<object> p(*d);
    p.publish(std::make_unique<object>(1));
    auto r = p.publish_sync(std::make_unique<object>(2), std::chrono::milliseconds(20));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.err().message.find("grace period"), std::string::npos);
    EXPECT_EQ(p.load()->value, 2u) << "the new object stays published";
    EXPECT_EQ(p.retired(), 1u) << "the old one is kept, not freed under a reader";
    d->quiescent(0);
    EXPECT_EQ(p.reclaim(), 1u);
}

TEST(Published, ConcurrentReaderNeverSeesAFreedObject)
{
    g_live = 0;
    auto d = make_domain(1);
    ASSERT_TRUE(d->register_reader(0).ok());
    published<object> p(*d);
    p.publish(std::make_unique<object>(0));
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> bad{0};
    std::atomic<uint64_t> reads{0};
    std::thread reader([&] {
        uint64_t last = 0;
        while (!stop.load(std::memory_order_acquire)) {
            const object* o = p.load();
            if (o->magic != 0x5a5a || o->value < last) {
                bad.fetch_add(1);
            }
            last = o->value;
            reads.fetch_add(1, std::memory_order_relaxed);
            d->quiescent(0);
        }
        d->offline(0);
    });
    // Let the reader start before publishing (bounded wait).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (reads.load() == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::yield();
    }
    constexpr uint64_t n = 20000;
    for (uint64_t i = 1; i <= n; ++i) {
        p.publish(std::make_unique<object>(i));
        p.reclaim();
    }
    stop.store(true, std::memory_order_release);
    reader.join();
    p.reclaim();
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_GT(reads.load(), 0u);
    EXPECT_EQ(p.retired(), 0u);
    EXPECT_EQ(g_live.load(), 1) << "every retired object was freed exactly once";
}

TEST(QsbrDomain, RejectsBadReaderIds)
{
    EXPECT_FALSE(qsbr_domain::create(0).ok());
    auto d = make_domain(2);
    EXPECT_FALSE(d->register_reader(2).ok());
}

} // namespace
} // namespace sluice::rcu
