// lib/conntrack: both directions, both families, TCP states and timeouts on a fake TSC, aging
// within a budget, the flood guard, pinned endpoints, bulk == single, and a randomized model
// test against std::unordered_map.
#include "sluice/conntrack/conntrack.hh"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <unordered_map>
#include <vector>

namespace {

using namespace sluice::conntrack;

constexpr uint64_t hz = 1000; // fake TSC: 1000 ticks per second

params make_params(uint32_t capacity, uint16_t pool = 64)
{
    params p;
    p.capacity = capacity;
    p.address_pool = pool;
    p.to = timeouts::from_seconds(timeout_seconds{}, hz);
    return p;
}

template <typename F>
table<F> make_table(uint32_t capacity, uint16_t pool = 64)
{
    auto r = table<F>::create(make_params(capacity, pool));
    EXPECT_TRUE(r.ok());
    return std::move(r).value();
}

flow_key k4(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint8_t proto = proto_tcp)
{
    flow_key k;
    k.family = 4;
    k.proto = proto;
    k.sport = sport;
    k.dport = dport;
    for (int i = 0; i < 4; ++i) {
        k.src[i] = static_cast<uint8_t>(src >> (24 - 8 * i));
        k.dst[i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
    }
    return k;
}

flow_key k6(uint64_t src, uint16_t sport, uint64_t dst, uint16_t dport, uint8_t proto = proto_tcp)
{
    flow_key k;
    k.family = 6;
    k.proto = proto;
    k.sport = sport;
    k.dport = dport;
    k.src[0] = 0x20;
    k.src[1] = 0x01;
    k.dst[0] = 0x20;
    k.dst[1] = 0x01;
    std::memcpy(k.src.data() + 8, &src, 8);
    std::memcpy(k.dst.data() + 8, &dst, 8);
    return k;
}

constexpr uint32_t client = 0xc6120001;  // 198.18.0.1
constexpr uint32_t vip = 0xc6120101;     // 198.18.1.1
constexpr uint32_t backend = 0xc6120201; // 198.18.2.1
constexpr uint32_t snat = 0xc6120301;    // 198.18.3.1

TEST(ConntrackTest, EntriesAreOneCacheLine)
{
    EXPECT_EQ(sizeof(entry_v4), 64u);
    EXPECT_EQ(sizeof(entry_v6), 64u);
    EXPECT_EQ(alignof(entry_v4), 64u);
}

TEST(ConntrackTest, CreateRejectsBadParams)
{
    EXPECT_FALSE(table_v4::create(make_params(0)).ok());
    EXPECT_FALSE(table_v6::create(make_params(16, 0)).ok());
}

TEST(ConntrackTest, InsertAndLookupBothDirectionsV4)
{
    auto t = make_table<v4>(1024);
    const flow_key fwd = k4(client, 40000, vip, 80);
    const flow_key rev = k4(backend, 8080, snat, 1025);
    EXPECT_EQ(t.lookup(fwd, 0).e, nullptr);
    entry_v4* e = t.insert(fwd, rev, 77, 0);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.capacity(), 1024u);

    auto m = t.lookup(fwd, 1);
    EXPECT_EQ(m.e, e);
    EXPECT_EQ(m.dir, direction::forward);
    m = t.lookup(rev, 1);
    EXPECT_EQ(m.e, e);
    EXPECT_EQ(m.dir, direction::reverse);
    EXPECT_EQ(e->endpoint_id, 77u);
    EXPECT_EQ(t.forward_key(*e), fwd);
    EXPECT_EQ(t.reverse_key(*e), rev);

    // Near misses: other port, swapped direction, other proto.
    EXPECT_EQ(t.lookup(k4(client, 40001, vip, 80), 1).e, nullptr);
    EXPECT_EQ(t.lookup(k4(vip, 80, client, 40000), 1).e, nullptr);
    EXPECT_EQ(t.lookup(k4(client, 40000, vip, 80, proto_udp), 1).e, nullptr);

    t.remove(*e);
    EXPECT_EQ(t.lookup(fwd, 2).e, nullptr);
    EXPECT_EQ(t.lookup(rev, 2).e, nullptr);
    EXPECT_EQ(t.size(), 0u);
    const counters& c = t.stats();
    EXPECT_EQ(c.inserts, 1u);
    EXPECT_EQ(c.removed, 1u);
    EXPECT_EQ(c.hits, 2u);
    EXPECT_EQ(c.entries, 0u);
}

TEST(ConntrackTest, PrefetchExpiredOtherTellsProbableNewFlows)
{
    // The burst step before new flows: false while a live entry holds the key, true when the
    // key is absent, its entry expired (whose other bucket it starts loading) or removed.
    auto t = make_table<v4>(4096);
    const flow_key fwd = k4(0xc6120001, 40000, 0xc6120a01, 80, proto_udp);
    const flow_key rev = k4(0xc6130101, 8080, 0xc613ff01, 1024, proto_udp);
    auto* e = t.insert(fwd, rev, 7, 0);
    ASSERT_NE(e, nullptr);
    const uint64_t live = 1;
    const uint64_t later = 1000 * hz; // beyond every default timeout
    EXPECT_FALSE(t.prefetch_expired_other(t.prefetch_bucket(fwd), live));
    EXPECT_FALSE(t.prefetch_expired_other(t.prefetch_bucket(rev), live));
    EXPECT_TRUE(t.prefetch_expired_other(t.prefetch_bucket(fwd), later));
    EXPECT_TRUE(t.prefetch_expired_other(t.prefetch_bucket(rev), later));
    EXPECT_TRUE(t.prefetch_expired_other(
        t.prefetch_bucket(k4(0xc6120002, 40000, 0xc6120a01, 80, proto_udp)), live));
    EXPECT_EQ(t.size(), 1u) << "a hint: nothing reclaimed";
    EXPECT_NE(t.lookup(fwd, live).e, nullptr);
    t.remove(*e);
    EXPECT_TRUE(t.prefetch_expired_other(t.prefetch_bucket(fwd), live));
}

TEST(ConntrackTest, RawIpv4LookupFindsWhatTheKeyedLookupFinds)
{
    // The fast path's raw-word lookup: same hash, same entries, same direction, same misses.
    auto t = make_table<v4>(4096);
    uint32_t other_hint = 0; // a valid reference of another key: a wrong hint
    auto raw = [&](const flow_key& k, uint64_t now) {
        uint64_t a = 0;
        uint32_t p = 0;
        std::memcpy(&a, k.src.data(), 4);
        std::memcpy(reinterpret_cast<uint8_t*>(&a) + 4, k.dst.data(), 4);
        std::memcpy(&p, &k.sport, 2);
        std::memcpy(reinterpret_cast<uint8_t*>(&p) + 2, &k.dport, 2);
        const uint64_t pp = p | (uint64_t{k.proto} << 32);
        const uint64_t h = t.hash_raw(a, pp);
        t.prefetch_bucket_hashed(h);
        const uint32_t hint = t.prefetch_candidate(h);
        const auto with_hint = t.lookup_raw(a, pp, h, hint, now);
        EXPECT_EQ(with_hint.e, t.lookup_raw(a, pp, h, 0, now).e) << "hint or scan";
        EXPECT_EQ(with_hint.e, t.lookup_raw(a, pp, h, other_hint, now).e) << "a wrong hint";
        if (hint != 0) {
            other_hint = hint;
        }
        return with_hint;
    };
    for (uint32_t i = 0; i < 3000; ++i) {
        const uint8_t proto = i % 2 == 0 ? proto_tcp : proto_udp;
        ASSERT_NE(t.insert(k4(client + i, static_cast<uint16_t>(1000 + i), vip, 80, proto),
                           k4(backend + i % 16, 8080, snat, static_cast<uint16_t>(1024 + i), proto),
                           i, 0),
                  nullptr);
    }
    for (uint32_t i = 0; i < 3000; ++i) {
        const uint8_t proto = i % 2 == 0 ? proto_tcp : proto_udp;
        const flow_key fwd = k4(client + i, static_cast<uint16_t>(1000 + i), vip, 80, proto);
        const flow_key rev =
            k4(backend + i % 16, 8080, snat, static_cast<uint16_t>(1024 + i), proto);
        const auto a = t.lookup(fwd, 1);
        const auto b = raw(fwd, 1);
        ASSERT_NE(a.e, nullptr);
        EXPECT_EQ(a.e, b.e);
        EXPECT_EQ(b.dir, direction::forward);
        const auto c = raw(rev, 1);
        EXPECT_EQ(c.e, a.e);
        EXPECT_EQ(c.dir, direction::reverse);
        // Near misses: other proto, swapped ends, other port.
        EXPECT_EQ(raw(k4(client + i, static_cast<uint16_t>(1000 + i), vip, 80,
                         proto == proto_tcp ? proto_udp : proto_tcp),
                      1)
                      .e,
                  nullptr);
        EXPECT_EQ(raw(k4(vip, 80, client + i, static_cast<uint16_t>(1000 + i), proto), 1).e,
                  nullptr);
        EXPECT_EQ(raw(k4(client + i, static_cast<uint16_t>(1001 + i), vip, 81, proto), 1).e,
                  nullptr);
    }
    // Expired entries are reclaimed by the raw lookup as by the keyed one.
    const flow_key k = k4(client, 1000, vip, 80, proto_tcp);
    EXPECT_EQ(raw(k, UINT64_MAX / 2).e, nullptr);
    EXPECT_EQ(t.lookup(k, 1).e, nullptr);
    EXPECT_EQ(t.index_errors_for_test(), 0u);
}

TEST(ConntrackTest, InsertAndLookupBothDirectionsV6SharesPooledAddresses)
{
    auto t = make_table<v6>(1024, 4);
    const flow_key f1 = k6(1, 40000, 100, 443);
    const flow_key r1 = k6(200, 8443, 300, 1025);
    const flow_key f2 = k6(2, 40000, 100, 443);   // same VIP
    const flow_key r2 = k6(201, 8443, 300, 1026); // same SNAT address
    entry_v6* e1 = t.insert(f1, r1, 1, 0);
    entry_v6* e2 = t.insert(f2, r2, 2, 0);
    ASSERT_NE(e1, nullptr);
    ASSERT_NE(e2, nullptr);
    EXPECT_EQ(e1->vip_ref, e2->vip_ref);
    EXPECT_EQ(e1->snat_ref, e2->snat_ref);
    EXPECT_EQ(t.lookup(f1, 0).e, e1);
    EXPECT_EQ(t.lookup(r1, 0).e, e1);
    EXPECT_EQ(t.lookup(r1, 0).dir, direction::reverse);
    EXPECT_EQ(t.lookup(f2, 0).e, e2);
    EXPECT_EQ(t.lookup(r2, 0).e, e2);
    EXPECT_EQ(t.forward_key(*e1), f1);
    EXPECT_EQ(t.reverse_key(*e2), r2);
    t.remove(*e1);
    EXPECT_EQ(t.lookup(f1, 0).e, nullptr);
    EXPECT_EQ(t.lookup(f2, 0).e, e2); // the pooled VIP is still referenced
    EXPECT_EQ(t.lookup(r2, 0).e, e2);
    // An IPv4 key never matches an IPv6 table entry with the same low bytes.
    flow_key wrong = f2;
    wrong.family = 4;
    EXPECT_EQ(t.lookup(wrong, 0).e, nullptr);
}

TEST(ConntrackTest, V6AddressPoolFullFailsAndCounts)
{
    auto t = make_table<v6>(1024, 3);
    ASSERT_NE(t.insert(k6(1, 1, 100, 1), k6(2, 1, 300, 1), 1, 0), nullptr); // 2 addresses
    // A new VIP and a new SNAT address would need 4 pool slots.
    EXPECT_EQ(t.insert(k6(1, 2, 101, 1), k6(2, 2, 301, 1), 1, 0), nullptr);
    EXPECT_EQ(t.stats().insert_failures_addr, 1u);
    EXPECT_EQ(t.size(), 1u);
    // A new VIP with the known SNAT address fits.
    ASSERT_NE(t.insert(k6(1, 3, 101, 1), k6(2, 3, 300, 1), 1, 0), nullptr);
    // Freed addresses are reused.
    auto m = t.lookup(k6(1, 1, 100, 1), 0);
    ASSERT_NE(m.e, nullptr);
    t.remove(*m.e);
    EXPECT_NE(t.insert(k6(1, 4, 102, 1), k6(2, 4, 300, 1), 1, 0), nullptr);
}

TEST(ConntrackTest, TcpStatesAndTheirTimeouts)
{
    auto t = make_table<v4>(64);
    const flow_key fwd = k4(client, 40000, vip, 80);
    const flow_key rev = k4(backend, 8080, snat, 1025);
    uint64_t now = 1000;
    entry_v4* e = t.insert(fwd, rev, 1, now);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->st, state::tcp_syn_sent);
    EXPECT_EQ(e->expires, now + 10 * hz);

    t.update_tcp(*e, tcp_syn | tcp_ack, direction::reverse, now);
    EXPECT_EQ(e->st, state::tcp_syn_recv);
    EXPECT_EQ(e->expires, now + 10 * hz);
    // A SYN-ACK from the client side does not advance.
    t.update_tcp(*e, tcp_ack, direction::reverse, now);
    EXPECT_EQ(e->st, state::tcp_syn_recv);
    t.update_tcp(*e, tcp_ack, direction::forward, now);
    EXPECT_EQ(e->st, state::tcp_established);
    EXPECT_EQ(e->expires, now + 900 * hz);

    // Still alive just before the established timeout, refreshed by traffic.
    now += 899 * hz;
    ASSERT_EQ(t.lookup(fwd, now).e, e);
    t.update_tcp(*e, tcp_ack, direction::forward, now);
    EXPECT_EQ(e->expires, now + 900 * hz);

    t.update_tcp(*e, tcp_fin | tcp_ack, direction::forward, now);
    EXPECT_EQ(e->st, state::tcp_fin_wait);
    EXPECT_EQ(e->expires, now + 120 * hz);
    t.update_tcp(*e, tcp_ack, direction::reverse, now);
    EXPECT_EQ(e->st, state::tcp_fin_wait);
    t.update_tcp(*e, tcp_fin | tcp_ack, direction::reverse, now);
    EXPECT_EQ(e->st, state::tcp_closing);
    EXPECT_EQ(e->expires, now + 10 * hz);

    // Expires after tcp_closed: the lookup reclaims it.
    now += 10 * hz;
    EXPECT_EQ(t.lookup(rev, now).e, e);
    now += 1;
    EXPECT_EQ(t.lookup(rev, now).e, nullptr);
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(t.stats().expired, 1u);
}

TEST(ConntrackTest, RstClosesAndANewSynReopensOnTheSameBackend)
{
    auto t = make_table<v4>(64);
    const flow_key fwd = k4(client, 40000, vip, 80);
    const flow_key rev = k4(backend, 8080, snat, 1025);
    entry_v4* e = t.insert(fwd, rev, 9, 0);
    ASSERT_NE(e, nullptr);
    t.update_tcp(*e, tcp_syn | tcp_ack, direction::reverse, 0);
    t.update_tcp(*e, tcp_ack, direction::forward, 0);
    ASSERT_EQ(e->st, state::tcp_established);
    t.update_tcp(*e, tcp_rst, direction::reverse, 5);
    EXPECT_EQ(e->st, state::tcp_closed);
    EXPECT_EQ(e->expires, 5 + 10 * hz);
    // Late FINs/ACKs do not revive a closed flow.
    t.update_tcp(*e, tcp_fin | tcp_ack, direction::forward, 6);
    EXPECT_EQ(e->st, state::tcp_closed);
    t.update_tcp(*e, tcp_syn, direction::forward, 7);
    EXPECT_EQ(e->st, state::tcp_syn_sent);
    EXPECT_EQ(e->fin_dirs, 0);
    EXPECT_EQ(e->endpoint_id, 9u);
}

TEST(ConntrackTest, UdpAndIcmpTimeouts)
{
    auto t = make_table<v4>(64);
    const flow_key fu = k4(client, 5353, vip, 53, proto_udp);
    const flow_key ru = k4(backend, 53, snat, 2000, proto_udp);
    entry_v4* u = t.insert(fu, ru, 1, 0);
    ASSERT_NE(u, nullptr);
    EXPECT_EQ(u->st, state::udp);
    EXPECT_EQ(u->expires, 300 * hz);
    t.touch(*u, 100 * hz);
    EXPECT_EQ(t.lookup(ru, 400 * hz).e, u);
    EXPECT_EQ(t.lookup(ru, 400 * hz + 1).e, nullptr);

    const flow_key fi = k4(client, 7, vip, 0, proto_icmp);
    const flow_key ri = k4(backend, 7, snat, 0, proto_icmp);
    entry_v4* i = t.insert(fi, ri, 1, 0);
    ASSERT_NE(i, nullptr);
    EXPECT_EQ(i->st, state::icmp);
    EXPECT_EQ(i->expires, 30 * hz);
}

template <typename F>
void single_key_flows()
{
    auto t = make_table<F>(64);
    const auto fwd = F::family == 4 ? k4(client, 40000, vip, 80) : k6(1, 40000, 2, 80);
    const auto be = F::family == 4 ? k4(backend, 8080, snat, 0) : k6(3, 8080, 4, 0);
    auto* e = t.insert_single(fwd, be.src.data(), be.sport, 77, 0);
    ASSERT_NE(e, nullptr);
    EXPECT_NE(e->flags & entry_flag_single_key, 0);
    EXPECT_EQ(t.lookup(fwd, 0).e, e);
    EXPECT_EQ(std::memcmp(e->backend_addr.data(), be.src.data(), F::addr_len), 0);
    EXPECT_EQ(e->backend_port, 8080);
    EXPECT_EQ(e->endpoint_id, 77u);
    EXPECT_EQ(t.index_errors_for_test(), 0u) << "one index slot, not two";
    // Only the client's side is seen: SYN, then an ACK makes it established; FIN half-closes.
    EXPECT_EQ(e->st, state::tcp_syn_sent);
    t.update_tcp_forward_only(*e, tcp_ack, 1);
    EXPECT_EQ(e->st, state::tcp_established);
    t.update_tcp_forward_only(*e, tcp_fin | tcp_ack, 2);
    EXPECT_EQ(e->st, state::tcp_fin_wait);
    t.update_tcp_forward_only(*e, tcp_rst, 3);
    EXPECT_EQ(e->st, state::tcp_closed);
    t.remove(*e);
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(t.index_errors_for_test(), 0u);
}

TEST(ConntrackTest, SingleKeyFlowsV4)
{
    single_key_flows<v4>();
}
TEST(ConntrackTest, SingleKeyFlowsV6)
{
    single_key_flows<v6>();
}

struct hook_log {
    std::vector<std::pair<uint64_t, state>> seen;
};

TEST(ConntrackTest, ExpiryHookSeesEveryExpiredEntryWithItsState)
{
    auto t = make_table<v4>(64);
    hook_log log;
    t.set_expiry_hook(
        [](void* ctx, const entry_v4& e) noexcept {
            static_cast<hook_log*>(ctx)->seen.emplace_back(e.endpoint_id, e.st);
        },
        &log);
    // Flow 1 never gets a SYN-ACK; flow 2 is established; flow 3 is removed by hand.
    ASSERT_NE(t.insert(k4(client, 1, vip, 80), k4(backend, 80, snat, 1), 1, 0), nullptr);
    auto* e2 = t.insert(k4(client, 2, vip, 80), k4(backend, 80, snat, 2), 2, 0);
    ASSERT_NE(e2, nullptr);
    t.update_tcp(*e2, tcp_syn | tcp_ack, direction::reverse, 0);
    t.update_tcp(*e2, tcp_ack, direction::forward, 0);
    auto* e3 = t.insert(k4(client, 3, vip, 80), k4(backend, 80, snat, 3), 3, 0);
    ASSERT_NE(e3, nullptr);
    t.remove(*e3);
    EXPECT_TRUE(log.seen.empty()) << "remove() is not an expiry";
    const uint64_t later = 3600 * hz;
    EXPECT_EQ(t.age(later, 64), 2u);
    ASSERT_EQ(log.seen.size(), 2u);
    std::sort(log.seen.begin(), log.seen.end());
    EXPECT_EQ(log.seen[0], std::make_pair(uint64_t{1}, state::tcp_syn_sent));
    EXPECT_EQ(log.seen[1], std::make_pair(uint64_t{2}, state::tcp_established));
    EXPECT_EQ(t.stats().syn_expired, 1u);
}

TEST(ConntrackTest, AgeReclaimsExpiredEntriesWithinTheBudget)
{
    auto t = make_table<v4>(256);
    for (uint16_t i = 0; i < 200; ++i) {
        ASSERT_NE(t.insert(k4(client, i, vip, 80, proto_udp), k4(backend, 80, snat, i, proto_udp),
                           1, i < 100 ? 0 : 1000 * hz),
                  nullptr);
    }
    const uint64_t now = 301 * hz; // the first 100 have expired, the rest have not
    uint32_t total = 0;
    for (int call = 0; call < 256 / 16; ++call) {
        const uint32_t n = t.age(now, 16);
        EXPECT_LE(n, 16u);
        total += n;
    }
    EXPECT_EQ(total, 100u);
    EXPECT_EQ(t.size(), 100u);
    EXPECT_EQ(t.stats().expired, 100u);
    EXPECT_EQ(t.lookup(k4(client, 0, vip, 80, proto_udp), now).e, nullptr);
    EXPECT_NE(t.lookup(k4(client, 150, vip, 80, proto_udp), now).e, nullptr);
    EXPECT_NE(t.lookup(k4(backend, 80, snat, 150, proto_udp), now).e, nullptr);
    // A sweep of a young table reclaims nothing.
    EXPECT_EQ(t.age(now, 1000), 0u);
}

TEST(ConntrackTest, FullTableFailsInsertAndCounts)
{
    auto t = make_table<v4>(100);
    uint32_t ok = 0;
    for (uint16_t i = 0; i < 150; ++i) {
        if (t.insert(k4(client, i, vip, 80), k4(backend, 80, snat, i), 1, 0) != nullptr) {
            ++ok;
        }
    }
    EXPECT_EQ(ok, 100u);
    EXPECT_EQ(t.size(), t.capacity());
    EXPECT_EQ(t.stats().insert_failures_full, 50u);
    EXPECT_EQ(t.stats().entries, 100u);
    // Every flow inserted is still found in both directions.
    for (uint16_t i = 0; i < 100; ++i) {
        EXPECT_NE(t.lookup(k4(client, i, vip, 80), 0).e, nullptr);
        EXPECT_NE(t.lookup(k4(backend, 80, snat, i), 0).e, nullptr);
    }
    // Removing one makes room for exactly one.
    t.remove(*t.lookup(k4(client, 3, vip, 80), 0).e);
    EXPECT_NE(t.insert(k4(client, 500, vip, 80), k4(backend, 80, snat, 500), 1, 0), nullptr);
    EXPECT_EQ(t.insert(k4(client, 501, vip, 80), k4(backend, 80, snat, 501), 1, 0), nullptr);
}

TEST(ConntrackTest, FullTableReclaimsExpiredOnInsert)
{
    auto t = make_table<v4>(1);
    ASSERT_NE(t.insert(k4(client, 1, vip, 80), k4(backend, 80, snat, 1), 1, 0), nullptr);
    EXPECT_EQ(t.insert(k4(client, 2, vip, 80), k4(backend, 80, snat, 2), 1, 5 * hz), nullptr);
    // After the SYN timeout the old entry is evicted to make room (it shares the one bucket).
    EXPECT_NE(t.insert(k4(client, 2, vip, 80), k4(backend, 80, snat, 2), 1, 11 * hz), nullptr);
    EXPECT_EQ(t.stats().evicted, 1u);
    EXPECT_EQ(t.size(), 1u);
}

TEST(ConntrackTest, EndpointsArePinnedAcrossSnapshots)
{
    // The caller's endpoint list changes (a new snapshot without endpoint 42); the table keeps
    // the flow's endpoint id and backend address until the flow closes or expires.
    auto t = make_table<v4>(64);
    std::vector<uint64_t> snapshot_endpoints = {41, 42, 43};
    entry_v4* e = t.insert(k4(client, 1, vip, 80), k4(backend, 8080, snat, 9), 42, 0);
    ASSERT_NE(e, nullptr);
    t.update_tcp(*e, tcp_syn | tcp_ack, direction::reverse, 0);
    t.update_tcp(*e, tcp_ack, direction::forward, 0);
    snapshot_endpoints = {41, 43};
    for (uint64_t now = 0; now < 5000 * hz; now += 100 * hz) {
        auto m = t.lookup(k4(client, 1, vip, 80), now);
        ASSERT_EQ(m.e, e);
        EXPECT_EQ(m.e->endpoint_id, 42u);
        EXPECT_EQ(t.reverse_key(*m.e).src, k4(backend, 0, 0, 0).src);
        t.update_tcp(*m.e, tcp_ack, direction::forward, now);
    }
}

// Keys that differ only in the last bytes of their addresses (where 10.0.x.y and 2001::x:y
// vary) and in ports that depend on those bytes must still spread over the buckets: the table
// fills to capacity without an index overflow.
// 2^16 flows use half of the index slots; 3 x 2^14 flows use 3/4, the most the sizing allows.
template <typename F>
void structured_keys_fill(uint32_t n)
{
    auto t = make_table<F>(n);
    std::vector<flow_key> fwds;
    for (uint32_t i = 0; i < n; ++i) {
        flow_key f;
        flow_key r;
        f.family = r.family = F::family;
        f.proto = r.proto = proto_tcp;
        const unsigned last = F::addr_len - 1;
        f.src[last] = static_cast<uint8_t>(i);
        f.src[last - 1] = static_cast<uint8_t>(i >> 8);
        f.dst[last] = static_cast<uint8_t>(i & 15);
        f.sport = static_cast<uint16_t>(i >> 8);
        f.dport = 80;
        r.src[last] = static_cast<uint8_t>(i);
        r.src[last - 1] = static_cast<uint8_t>(i >> 12);
        r.dst[last] = static_cast<uint8_t>(i >> 12);
        r.sport = 8080;
        r.dport = static_cast<uint16_t>(1024 + ((i >> 8) & 15));
        ASSERT_NE(t.insert(f, r, i, 0), nullptr) << i;
        fwds.push_back(f);
    }
    EXPECT_EQ(t.size(), n);
    EXPECT_EQ(t.stats().insert_failures_full, 0u);
    EXPECT_EQ(t.index_errors_for_test(), 0u);
    // Removing every other flow keeps the overflow counts exact.
    for (uint32_t i = 0; i < n; i += 2) {
        const auto m = t.lookup(fwds[i], 0);
        ASSERT_NE(m.e, nullptr);
        t.remove(*m.e);
    }
    EXPECT_EQ(t.size(), n / 2);
    EXPECT_EQ(t.index_errors_for_test(), 0u);
    for (uint32_t i = 1; i < n; i += 2) {
        EXPECT_NE(t.lookup(fwds[i], 0).e, nullptr);
    }
}

TEST(ConntrackTest, StructuredKeysFillTheTableV4)
{
    structured_keys_fill<v4>(1u << 16);
    structured_keys_fill<v4>(3u << 14);
}

TEST(ConntrackTest, StructuredKeysFillTheTableV6)
{
    structured_keys_fill<v6>(1u << 16);
    structured_keys_fill<v6>(3u << 14);
}

// Tiny tables put several keys in every bucket, so keys overflow to their second bucket and
// residents move to make room; after every operation the index must stay exact and every flow
// must stay reachable both ways.
TEST(ConntrackTest, CrowdedIndexStaysExact)
{
    for (const uint32_t cap : {2u, 8u, 16u}) {
        auto t = make_table<v4>(cap);
        std::mt19937 rng(cap);
        std::vector<std::pair<flow_key, flow_key>> live;
        uint32_t next = 0;
        for (int op = 0; op < 20000; ++op) {
            if (live.size() < cap && rng() % 2 == 0) {
                ++next;
                const flow_key f = k4(rng(), static_cast<uint16_t>(next), vip, 80);
                const flow_key r = k4(backend, 80, snat, static_cast<uint16_t>(next));
                if (t.insert(f, r, next, 0) != nullptr) {
                    live.emplace_back(f, r);
                }
            } else if (!live.empty()) {
                const size_t i = rng() % live.size();
                const auto m = t.lookup(live[i].second, 0);
                ASSERT_NE(m.e, nullptr);
                t.remove(*m.e);
                live[i] = live.back();
                live.pop_back();
            }
            ASSERT_EQ(t.index_errors_for_test(), 0u) << cap << " " << op;
            for (const auto& [f, r] : live) {
                const auto a = t.lookup(f, 0);
                ASSERT_NE(a.e, nullptr);
                ASSERT_EQ(a.e, t.lookup(r, 0).e);
            }
        }
        EXPECT_EQ(t.size(), live.size());
    }
}

template <typename F>
void bulk_equals_single(flow_key (*mk)(uint64_t, uint16_t, uint64_t, uint16_t, uint8_t))
{
    auto t = make_table<F>(4096);
    std::vector<flow_key> keys;
    for (uint16_t i = 0; i < 1000; ++i) {
        const flow_key f = mk(i, 1000 + i, 77, 80, proto_tcp);
        const flow_key r = mk(5, 80, 99, i, proto_tcp);
        if (i % 3 != 0) {
            ASSERT_NE(t.insert(f, r, i, 0), nullptr);
        }
        keys.push_back(f);
        keys.push_back(r);
        keys.push_back(mk(i, 1000 + i, 78, 80, proto_tcp)); // miss
    }
    std::vector<match<F>> bulk(keys.size());
    t.lookup_bulk(keys, bulk, 1);
    size_t hits = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
        const match<F> one = t.lookup(keys[i], 1);
        EXPECT_EQ(bulk[i].e, one.e) << i;
        EXPECT_EQ(bulk[i].dir, one.dir) << i;
        hits += one.e != nullptr ? 1 : 0;
    }
    EXPECT_EQ(hits, 2u * 666);
}

flow_key mk4(uint64_t s, uint16_t sp, uint64_t d, uint16_t dp, uint8_t proto)
{
    return k4(0x0a000000u + static_cast<uint32_t>(s), sp, 0x0b000000u + static_cast<uint32_t>(d),
              dp, proto);
}

flow_key mk6(uint64_t s, uint16_t sp, uint64_t d, uint16_t dp, uint8_t proto)
{
    return k6(s, sp, d, dp, proto);
}

TEST(ConntrackTest, BulkLookupEqualsSingleLookupsV4)
{
    bulk_equals_single<v4>(mk4);
}

TEST(ConntrackTest, BulkLookupEqualsSingleLookupsV6)
{
    bulk_equals_single<v6>(mk6);
}

struct key_hash {
    size_t operator()(const flow_key& k) const noexcept
    {
        uint64_t h = k.sport * 31u + k.dport * 131u + k.proto + k.family * 7u;
        for (int i = 0; i < 16; ++i) {
            h = h * 1099511628211ull ^ k.src[i];
            h = h * 1099511628211ull ^ k.dst[i];
        }
        return h;
    }
};

// 1M random operations (lookup-then-insert, lookup, remove, age, time passing) against a model
// that knows when each flow expires. Expired flows may or may not still be in the table but must
// never be found.
template <typename F>
void model_test(flow_key (*mk)(uint64_t, uint16_t, uint64_t, uint16_t, uint8_t))
{
    constexpr uint32_t capacity = 1u << 15;
    params p = make_params(capacity, 64);
    p.to.by_state[static_cast<size_t>(state::udp)] = 600000;
    p.to.by_state[static_cast<size_t>(state::tcp_syn_sent)] = 400000;
    auto r = table<F>::create(p);
    ASSERT_TRUE(r.ok());
    table<F> t = std::move(r).value();

    struct flow {
        flow_key fwd;
        flow_key rev;
        uint64_t id;
        uint64_t expires;
    };
    std::unordered_map<flow_key, uint64_t, key_hash> by_key; // key -> flow id
    std::unordered_map<uint64_t, flow> flows;
    std::vector<uint64_t> ids;
    std::mt19937_64 rng(20261122);
    uint64_t now = 0;
    uint64_t next_id = 1;
    uint64_t inserted = 0;
    uint64_t failed = 0;

    auto forget = [&](uint64_t id) {
        const flow& f = flows.at(id);
        by_key.erase(f.fwd);
        by_key.erase(f.rev);
        flows.erase(id);
    };
    auto random_key = [&](bool reverse) {
        const uint8_t proto = (rng() & 1) != 0 ? proto_udp : proto_tcp;
        if (reverse) {
            return mk(rng() % 4, 8080, 9, static_cast<uint16_t>(rng() % 40000), proto);
        }
        return mk(rng() % 3000, static_cast<uint16_t>(rng() % 30), 1 + rng() % 3, 80, proto);
    };
    // Looks a key up in both; returns the table's entry.
    // The burst steps first (hints only: the model then checks they changed nothing).
    auto check = [&](const flow_key& k) -> typename table<F>::entry* {
        const uint64_t h = t.prefetch_bucket(k);
        t.prefetch_entry(h);
        t.prefetch_expired_other(h, now);
        const match<F> m = t.lookup(k, now);
        const auto it = by_key.find(k);
        if (it == by_key.end()) {
            EXPECT_EQ(m.e, nullptr);
            return m.e;
        }
        const flow& f = flows.at(it->second);
        if (f.expires < now) {
            EXPECT_EQ(m.e, nullptr);
            forget(it->second);
            return nullptr;
        }
        EXPECT_NE(m.e, nullptr);
        if (m.e != nullptr) {
            EXPECT_EQ(m.e->endpoint_id, f.id);
            EXPECT_EQ(m.dir, k == f.fwd ? direction::forward : direction::reverse);
        }
        return m.e;
    };

    for (int op = 0; op < 1000000; ++op) {
        now += rng() % 8;
        const unsigned what = rng() % 100;
        if (what < 40) {
            // A new packet: lookup, insert on a miss (the reverse key is a fresh SNAT port).
            const flow_key fwd = random_key(false);
            if (check(fwd) != nullptr) {
                continue;
            }
            flow_key rev = random_key(true);
            rev.proto = fwd.proto;
            if (check(rev) != nullptr) {
                continue;
            }
            const uint64_t id = next_id++;
            auto* e = t.insert(fwd, rev, id, now);
            if (e == nullptr) {
                ++failed;
                continue;
            }
            ++inserted;
            flows[id] = flow{fwd, rev, id, e->expires};
            EXPECT_EQ(e->expires, now + (fwd.proto == proto_udp ? 600000u : 400000u));
            by_key[fwd] = id;
            by_key[rev] = id;
            ids.push_back(id);
        } else if (what < 75) {
            check(random_key(rng() % 4 == 0));
        } else if (what < 90 && !ids.empty()) {
            // Traffic on a known flow refreshes it; sometimes it ends.
            const size_t pick = rng() % ids.size();
            const uint64_t id = ids[pick];
            if (flows.count(id) == 0) {
                ids[pick] = ids.back();
                ids.pop_back();
                continue;
            }
            const flow f = flows.at(id);
            auto* e = check((rng() & 1) != 0 ? f.fwd : f.rev);
            if (e == nullptr) {
                continue;
            }
            if (rng() % 8 == 0) {
                t.remove(*e);
                forget(id);
            } else {
                t.touch(*e, now);
                flows.at(id).expires = e->expires;
            }
        } else {
            t.age(now, 64);
        }
        EXPECT_LE(t.size(), capacity);
        if (op % 100000 == 0) {
            ASSERT_EQ(t.index_errors_for_test(), 0u) << op;
        }
    }
    EXPECT_EQ(t.index_errors_for_test(), 0u);
    // Every live flow of the model is in the table, both ways; nothing else is.
    size_t live = 0;
    for (const auto& [id, f] : flows) {
        if (f.expires >= now) {
            ++live;
            const match<F> a = t.lookup(f.fwd, now);
            const match<F> b = t.lookup(f.rev, now);
            ASSERT_NE(a.e, nullptr);
            EXPECT_EQ(a.e, b.e);
            EXPECT_EQ(a.e->endpoint_id, id);
        }
    }
    for (uint32_t i = 0; i < 4 * capacity; i += 64) {
        t.age(now, 64);
    }
    EXPECT_EQ(t.size(), live);
    EXPECT_EQ(t.stats().entries, live);
    EXPECT_GT(inserted, 100000u);
    EXPECT_GT(failed, 0u); // the flood guard was exercised
    EXPECT_GT(t.stats().evicted + t.stats().expired, 0u);
}

TEST(ConntrackModel, RandomizedAgainstUnorderedMapV4)
{
    model_test<v4>(mk4);
}

TEST(ConntrackModel, RandomizedAgainstUnorderedMapV6)
{
    model_test<v6>(mk6);
}

} // namespace
