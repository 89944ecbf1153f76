// SPDX-License-Identifier: BSD-2-Clause
// The reorder buffer's capacity between two whole Tunnels: it follows the
// traffic (core/reorder_sizer.hpp) below reorder_buffer_size and half the
// buffer pool, and a reload's new cap applies without losing packets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;
using namespace std::chrono_literals;

namespace {

// An IPv4 packet carrying `n` in its body.
std::vector<std::byte> numbered(uint32_t n) {
    auto p = ip_packet(200, 0);
    std::memcpy(p.data() + 20, &n, sizeof n);
    return p;
}

uint32_t number_of(const std::vector<std::byte>& p) {
    uint32_t n = 0;
    std::memcpy(&n, p.data() + 20, sizeof n);
    return n;
}

struct Late {
    Time due;
    LinkIndex link;
    std::vector<std::byte> bytes;
};

// Client to server, every other data packet arrives `skew` late: the links'
// delays differ by that much, whichever link the scheduler picks.
struct Skew {
    Pair& p;
    Duration skew;
    std::deque<Late> late;
    bool odd = false;

    Skew(Pair& pair, Duration d) : p(pair), skew(d) {
        p.filter = [this](bool up, LinkIndex link, const std::vector<std::byte>& bytes) {
            if (!up || !is_data(bytes)) return true;
            odd = !odd;
            if (!odd) return true;
            late.push_back({p.clock.now() + skew, link, bytes});
            return false;
        };
    }
    ~Skew() { p.filter = {}; }
    void release(bool all = false) {
        while (!late.empty() && (all || late.front().due <= p.clock.now())) {
            Datagram d{p.server_io.make(late.front().bytes, 0), p.client_addr[late.front().link]};
            p.server->on_datagrams(late.front().link, std::span<Datagram>(&d, 1), p.server_io);
            late.pop_front();
        }
        p.dropped.clear();
    }
};

// 90 packets a millisecond (1 Gbit/s of 1400-byte packets) for `ms`,
// every other one `skew` late. Returns the largest capacity seen.
size_t stream(Pair& p, Skew& s, uint32_t& n, int ms) {
    size_t largest = 0;
    for (int i = 0; i < ms; ++i) {
        std::vector<std::vector<std::byte>> batch;
        for (int k = 0; k < 90; ++k) batch.push_back(numbered(n++));
        p.send_from(true, batch);
        s.release();
        p.tick(1ms);
        largest = std::max(largest, p.server->reorder().capacity());
    }
    return largest;
}

}  // namespace

TEST_CASE("tunnel: with fast skewed links the adaptive reorder buffer grows instead of pushing packets out") {
    // reorder_buffer_size absent reaches the worker as kReorderCapacityMax;
    // 1024 is the fixed size that used to be the default.
    for (uint32_t configured : {1024u, kReorderCapacityMax}) {
        CAPTURE(configured);
        Pair p(2, 1, 1, [configured](TunnelSettings&, TunnelSettings& s) {
            s.reorder_buffer_size = configured;
            s.pool_slots = 4096;  // the worker's, for 2 KB buffers
        });
        REQUIRE(p.establish());
        start_sequences(p);
        const ReorderSpaces& r = p.server->reorder();  // the peer seals in space 0 only
        CHECK(r.capacity() == ReorderSizer::kFloor);
        CHECK(r.limit() == std::min<size_t>(configured, 2048));
        uint32_t n = 0;
        size_t largest = 0;
        {
            Skew skew(p, 20ms);
            // The wait learns the 20 ms of skew from the first stragglers.
            largest = stream(p, skew, n, 100);
            const auto overflows_before = r.stats().overflows;
            const size_t delivered_before = p.server_io.tun.size();
            largest = std::max(largest, stream(p, skew, n, 300));
            skew.release(true);
            p.tick(1s);
            REQUIRE(p.server_io.tun.size() == n);
            // Once the wait fits the skew, everything comes out in order.
            bool in_order = true;
            for (size_t i = delivered_before + 1; i < p.server_io.tun.size(); ++i) {
                in_order = in_order && number_of(p.server_io.tun[i]) == number_of(p.server_io.tun[i - 1]) + 1;
            }
            if (configured == 1024) {
                CHECK(largest == 1024);
                CHECK(r.stats().overflows > overflows_before);  // 1800 packets across the gap do not fit
                CHECK_FALSE(in_order);
            } else {
                CHECK(largest == 2048);  // needed more; the pool allows half its 4096 buffers
                CHECK(r.stats().overflows == 0);
                CHECK(in_order);
            }
        }
        // The traffic stops: back to the floor after the hold.
        p.tick(100ms, static_cast<int>((ReorderSizer::kShrinkHold + 1s) / 100ms));
        CHECK(r.capacity() == ReorderSizer::kFloor);
        check_no_leak(p);
    }
}

TEST_CASE("tunnel: the reorder buffer never holds more than half the buffer pool, nor more than configured") {
    struct Case {
        uint32_t configured, pool;
        size_t limit;
    };
    for (Case c : {Case{kReorderCapacityMax, 1000, 500}, Case{kReorderCapacityMax, 0, kReorderCapacityMax},
                   Case{300, 4096, 300}, Case{64, 4096, 64}, Case{0, 4096, 0}}) {
        CAPTURE(c.configured);
        CAPTURE(c.pool);
        Pair p(2, 1, 1, [c](TunnelSettings&, TunnelSettings& s) {
            s.reorder_buffer_size = c.configured;
            s.pool_slots = c.pool;
        });
        CHECK(p.server->reorder().limit() == c.limit);
        CHECK(p.server->reorder().capacity() == std::min<size_t>(c.limit, ReorderSizer::kFloor));
    }
}

TEST_CASE("tunnel: a reload's smaller reorder_buffer_size keeps what still fits and hands the rest over in order") {
    Pair p(2, 1, 1, [](TunnelSettings&, TunnelSettings& s) { s.reorder_buffer_size = kReorderCapacityMax; });
    REQUIRE(p.establish());
    start_sequences(p);
    drop_link_of_first_data_up(p);  // the first and its link's others are late
    std::vector<std::vector<std::byte>> sent;
    for (uint32_t i = 0; i < 100; ++i) sent.push_back(numbered(i));
    p.send_from(true, sent);
    p.filter = {};
    auto late = std::exchange(p.dropped, {});
    const size_t held = 100 - late.size();
    REQUIRE(held >= 10);  // half, as the links take turns
    REQUIRE(p.server->reorder().held() == held);
    // Still room for them all: nothing moves.
    p.server->set_general(false, 1400, 128, p.server_io);
    CHECK(p.server->reorder().held() == held);
    CHECK(p.server->reorder().limit() == 128);
    CHECK(p.server_io.tun.empty());
    // No longer: handed over, in order.
    p.server->set_general(false, 1400, 50, p.server_io);
    CHECK(p.server->reorder().held() == 0);
    CHECK(p.server->reorder().capacity() == 50);
    REQUIRE(p.server_io.tun.size() == held);
    for (size_t i = 1; i < held; ++i) CHECK(number_of(p.server_io.tun[i]) > number_of(p.server_io.tun[i - 1]));
    // Off, and on again.
    p.server->set_general(false, 1400, 0, p.server_io);
    CHECK(p.server->reorder().capacity() == 0);
    p.server->set_general(false, 1400, kReorderCapacityMax, p.server_io);
    CHECK(p.server->reorder().capacity() == ReorderSizer::kFloor);
    CHECK(p.server->reorder().limit() == kReorderCapacityMax);
    for (auto& m : late) {
        Datagram d{p.server_io.make(m.bytes, 0), p.client_addr[m.link]};
        p.server->on_datagrams(m.link, std::span<Datagram>(&d, 1), p.server_io);
    }
    CHECK(p.server_io.tun.size() == 100);
    check_no_leak(p);
}
