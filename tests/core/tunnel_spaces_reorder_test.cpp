// SPDX-License-Identifier: BSD-2-Clause
// Order per counter space between two whole Tunnels: the sender numbers its
// data in one sequence per space it seals in, the receiver restores order
// per space of the peer (core/reorder_spaces.hpp), and a resent packet keeps
// its space and its number.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>

#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;
using namespace std::chrono_literals;

namespace {

// An IPv4 packet saying which space it was sent in and its index there.
std::vector<std::byte> space_packet(uint8_t space, uint32_t n) {
    auto p = ip_packet(120, 0);
    p[20] = std::byte{space};
    std::memcpy(p.data() + 21, &n, sizeof n);
    return p;
}

std::pair<uint8_t, uint32_t> space_packet_id(const std::vector<std::byte>& p) {
    uint32_t n = 0;
    std::memcpy(&n, p.data() + 21, sizeof n);
    return {std::to_integer<uint8_t>(p[20]), n};
}

bool wire_resent(const std::vector<std::byte>& d) { return (std::to_integer<uint8_t>(d[1]) & wire::kFlagResent) != 0; }

// Client to server, link 1 is `delay` slower than link 0 (everything on
// it, control packets too).
struct SlowLink1 {
    struct Held {
        Time due;
        std::vector<std::byte> bytes;
    };
    Pair& p;
    Duration delay;
    std::deque<Held> held;

    SlowLink1(Pair& pair, Duration d) : p(pair), delay(d) {
        p.filter = [this](bool up, LinkIndex link, const std::vector<std::byte>& bytes) {
            if (!up || link != 1) return true;
            held.push_back({p.clock.now() + delay, bytes});
            return false;
        };
    }
    ~SlowLink1() { p.filter = {}; }
    // Hands over what is due (everything with `all`).
    void release(bool all = false) {
        while (!held.empty() && (all || held.front().due <= p.clock.now())) {
            Datagram d{p.server_io.make(held.front().bytes, 0), p.client_addr[1]};
            p.server->on_datagrams(1, std::span<Datagram>(&d, 1), p.server_io);
            held.pop_front();
        }
        p.dropped.clear();
    }
    // Time passes in steps of 1 ms, link 1 delivering as it goes.
    void run(Duration d) {
        for (auto t = Duration{}; t < d; t += 1ms) {
            p.tick(1ms);
            release();
        }
    }
};

// The receiver learns where each space's sequence starts from its first
// packet there: one packet in each of `spaces`, on no particular link,
// before the test's traffic; the device is cleared of them.
void start_space_sequences(Pair& p, uint8_t spaces) {
    for (uint8_t q = 0; q < spaces; ++q) p.send_from(true, {space_packet(q, 0xffff'ffffu)}, q);
    p.server_io.tun.clear();
}

// What the server's device got, per space, in the order it got it.
std::map<uint8_t, std::vector<uint32_t>> delivered_by_space(const Pair& p) {
    std::map<uint8_t, std::vector<uint32_t>> got;
    for (const auto& t : p.server_io.tun) {
        const auto [space, n] = space_packet_id(t);
        got[space].push_back(n);
    }
    return got;
}

std::vector<uint32_t> count_up(uint32_t n) {
    std::vector<uint32_t> v(n);
    for (uint32_t i = 0; i < n; ++i) v[i] = i;
    return v;
}

void reorder_on(TunnelSettings& c, TunnelSettings& s) {
    c.reorder_buffer_size = kReorderCapacityMax;
    s.reorder_buffer_size = kReorderCapacityMax;
}

}  // namespace

TEST_CASE("spaces: batches in spaces 0..3 over two links of different delays arrive in order per space, once") {
    Pair p(2, 1, 1, reorder_on);
    REQUIRE(p.establish());
    start_space_sequences(p, 4);
    const auto before = p.server->reorder().stats();
    constexpr uint32_t kRounds = 40, kBatch = 8;
    {
        // 3 ms: within the shortest wait (timing::kReorderWaitMin), so that
        // every gap link 1 leaves is waited for.
        SlowLink1 slow(p, 3ms);
        for (uint32_t round = 0; round < kRounds; ++round) {
            for (uint8_t q = 0; q < 4; ++q) {
                std::vector<std::vector<std::byte>> batch;
                for (uint32_t k = 0; k < kBatch; ++k) batch.push_back(space_packet(q, round * kBatch + k));
                p.send_from(true, batch, q);
            }
            slow.run(1ms);
        }
        slow.run(20ms);
        slow.release(true);
    }
    p.tick(1s);
    // Both links carried data, so packets did arrive out of order.
    CHECK(p.client->link(0).stats.tx_data > 0);
    CHECK(p.client->link(1).stats.tx_data > 0);
    const auto got = delivered_by_space(p);
    REQUIRE(got.size() == 4);
    for (const auto& [space, list] : got) {
        CAPTURE(int{space});
        CHECK(list == count_up(kRounds * kBatch));  // all, once, in order
        const Reorder* r = p.server->reorder().space(space);
        REQUIRE(r != nullptr);
        CHECK(r->stats().late == 0);
        CHECK(r->stats().gaps_skipped == 0);
    }
    const auto after = p.server->reorder().stats();
    CHECK(after.reordered > before.reordered);  // the slow link's packets were waited for
    CHECK(after.duplicates == before.duplicates);
    CHECK(p.server->reorder().in_use() == 4);
    check_no_leak(p);
}

TEST_CASE("spaces: a packet lost in space 2 holds space 2 only; space 1's packets go out at once") {
    Pair p(2, 1, 1, reorder_on);
    REQUIRE(p.establish());
    start_space_sequences(p, 3);
    // The first data packet in space 2 goes missing for good, and so does
    // the rest of space 2 on its link (nothing there tells it was lost).
    drop_link_of_first_data_up(p, 2);
    std::vector<std::vector<std::byte>> two, one;
    for (uint32_t i = 0; i < 6; ++i) two.push_back(space_packet(2, i));
    for (uint32_t i = 0; i < 6; ++i) one.push_back(space_packet(1, i));
    p.send_from(true, two, 2);
    const size_t lost = p.dropped.size();
    REQUIRE(lost < 6);
    CHECK(p.server_io.tun.empty());  // they wait for the lost one
    CHECK(p.server->reorder().space(2)->held() == 6 - lost);
    p.send_from(true, one, 1);
    CHECK(p.server_io.tun == one);  // nothing to wait for in space 1
    CHECK(p.server->reorder().space(1)->held() == 0);
    CHECK(p.server->reorder().held() == 6 - lost);
    // The wait gives space 2's gaps up: the rest of it follows, in order.
    p.tick(std::chrono::duration_cast<Duration>(timing::kReorderWaitMax + 1ms));
    const auto got = delivered_by_space(p);
    CHECK(got.at(1) == count_up(6));
    CHECK(got.at(2).size() == 6 - lost);
    CHECK(std::is_sorted(got.at(2).begin(), got.at(2).end()));
    CHECK(got.at(2).front() > 0);
    CHECK(p.server->reorder().space(2)->stats().gaps_skipped == lost);
    CHECK(p.server->reorder().space(1)->stats().gaps_skipped == 0);
    check_no_leak(p);
}

TEST_CASE("spaces: what a failing link carried is resent in its own space, and known there") {
    for (const bool acks_lost : {true, false}) {
        // acks_lost: link 1 delivers, but the peer's acknowledgements on it
        // are lost, so the resent copies are duplicates. Otherwise link 1
        // swallows what it is sent, and the copies fill the gaps.
        CAPTURE(acks_lost);
        Pair p(2, 1, 1, reorder_on);
        REQUIRE(p.establish());
        for (int i = 0; i < 20; ++i) {  // steady traffic in space 0: RTTs, acknowledgements
            p.send_from(true, packets(10, 500));
            p.send_from(false, packets(10, 500, 0x60));
            p.tick(100ms);
        }
        start_space_sequences(p, 4);
        p.tick(100ms);  // acknowledged: only what follows is resent
        const auto dup_before = p.server->reorder().stats().duplicates;
        const Reorder* space0 = p.server->reorder().space(0);
        REQUIRE(space0 != nullptr);
        const auto space0_stats = space0->stats();
        std::vector<std::vector<std::byte>> resends;
        p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>& d) {
            if (up && is_data(d) && wire_resent(d)) resends.push_back(d);
            if (link != 1) return true;
            return acks_lost ? up : false;
        };
        // Spaces 1 and 3 take turns.
        uint32_t sent[4] = {};
        for (int round = 0; round < 8; ++round) {
            for (const uint8_t q : {uint8_t{1}, uint8_t{3}}) {
                std::vector<std::vector<std::byte>> batch;
                for (int k = 0; k < 2; ++k) batch.push_back(space_packet(q, sent[q]++));
                p.send_from(true, batch, q);
            }
            p.tick(10ms);
        }
        p.tick(10ms, 10);
        const auto resent = p.client->link(1).stats.resent;
        CHECK(resent > 0);
        REQUIRE(resends.size() == resent);
        for (const auto& d : resends) {
            const uint8_t q = wire_space(d);
            CHECK((q == 1 || q == 3));
        }
        // Every packet delivered, once.
        auto got = delivered_by_space(p);
        for (const uint8_t q : {uint8_t{1}, uint8_t{3}}) {
            CAPTURE(int{q});
            auto list = got[q];
            std::sort(list.begin(), list.end());
            CHECK(list == count_up(sent[q]));
        }
        const auto& r = p.server->reorder();
        if (acks_lost) {
            // Known in their own spaces as copies of what was delivered.
            CHECK(r.stats().duplicates - dup_before == resent);
            CHECK(r.space(1)->stats().duplicates + r.space(3)->stats().duplicates == resent);
        } else {
            CHECK(r.stats().duplicates == dup_before);
        }
        // Space 0 saw none of it: no copy, nothing late.
        CHECK(space0->stats().duplicates == space0_stats.duplicates);
        CHECK(space0->stats().late == space0_stats.late);
        check_no_leak(p);
    }
}

TEST_CASE("spaces: with a peer that does not take them, everything is one sequence in space 0, in order") {
    Pair p(2, 1, 1, [](TunnelSettings& c, TunnelSettings& s) {
        reorder_on(c, s);
        c.counter_spaces = false;
    });
    REQUIRE(p.establish());
    start_space_sequences(p, 1);
    std::vector<std::vector<std::byte>> sent;
    std::vector<uint8_t> spaces_on_wire;
    {
        SlowLink1 slow(p, 3ms);
        const auto held_filter = p.filter;
        p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>& d) {
            if (up && is_data(d)) spaces_on_wire.push_back(wire_space(d));
            return held_filter(up, link, d);
        };
        for (uint32_t round = 0; round < 20; ++round) {
            for (uint8_t q = 0; q < 4; ++q) {
                std::vector<std::vector<std::byte>> batch;
                for (uint32_t k = 0; k < 5; ++k) batch.push_back(space_packet(q, round * 5 + k));
                p.send_from(true, batch, q);  // asked for space q
                sent.insert(sent.end(), batch.begin(), batch.end());
            }
            slow.run(1ms);
        }
        slow.run(20ms);
        slow.release(true);
    }
    p.tick(1s);
    CHECK(p.client->link(1).stats.tx_data > 0);
    // One sequence: the order the packets were read in, whatever space they
    // asked for.
    CHECK(p.server_io.tun == sent);
    REQUIRE(spaces_on_wire.size() == sent.size());
    CHECK(std::all_of(spaces_on_wire.begin(), spaces_on_wire.end(), [](uint8_t q) { return q == 0; }));
    CHECK(p.server->reorder().in_use() == 1);
    CHECK(p.server->reorder().space(1) == nullptr);
    CHECK(p.server->reorder().space(0)->stats().reordered > 0);
    check_no_leak(p);
}
