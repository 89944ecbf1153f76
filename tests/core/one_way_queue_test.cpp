// SPDX-License-Identifier: BSD-2-Clause
#include "core/one_way_queue.hpp"

#include <doctest/doctest.h>

#include <cstdint>

#include "core/link.hpp"
#include "core/tunnel.hpp"

using namespace mlvpn::core;
using namespace std::chrono_literals;

namespace {

// Two ends whose millisecond clocks differ by `offset`: what the peer stamps
// on a packet sent at `now`, echoing our packet sent at `our_sent` that
// reached it after `forward` (our direction's delay, queue included).
struct Path {
    uint32_t offset;
    Time start = Time{} + 1000s;

    uint32_t our_ts(Time t) const { return static_cast<uint32_t>((t - start) / 1ms) + 1; }
    uint32_t peer_ts(Time t) const { return our_ts(t) + offset; }
    // The peer received our packet of `our_sent` at our_sent + forward and
    // answers at `reply` (peer clock): echo = our ts + what it held it.
    std::pair<uint32_t, uint32_t> reply(Time our_sent, Duration forward, Time reply_at) const {
        const auto held = static_cast<uint32_t>((reply_at - (our_sent + forward)) / 1ms);
        return {peer_ts(reply_at), our_ts(our_sent) + held};
    }
};

}  // namespace

TEST_CASE("one-way queue: the queue our packets meet, whatever the clocks' offset") {
    for (uint32_t offset : {0u, 123456u, 0xfffff000u}) {  // the last one wraps
        Path p{offset};
        OneWayQueue q;
        CHECK_FALSE(q.valid());
        Time t = p.start;
        // An empty path, 5 ms each way: no queue.
        for (int i = 0; i < 200; ++i, t += 5ms) {
            const auto [ts, echo] = p.reply(t - 10ms, 5ms, t - 2ms);
            q.sample(ts, echo, t);
        }
        REQUIRE(q.valid());
        CHECK(q.queueing() == 0ms);
        // Now our packets wait 12 ms in a queue: seen within a few samples.
        for (int i = 0; i < 50; ++i, t += 5ms) {
            const auto [ts, echo] = p.reply(t - 30ms, 17ms, t - 2ms);
            q.sample(ts, echo, t);
        }
        CHECK(q.queueing() >= 11ms);
        CHECK(q.queueing() <= 12ms);
        CHECK(q.sampled_at() == t - 5ms);
    }
}

TEST_CASE("one-way queue: time the peer's packets take, or hold ours, is not our queue") {
    Path p{777};
    OneWayQueue q;
    Time t = p.start;
    for (int i = 0; i < 100; ++i, t += 5ms) {
        const auto [ts, echo] = p.reply(t - 10ms, 5ms, t - 5ms);
        q.sample(ts, echo, t);
    }
    // The way back is loaded (the peer's packets arrive 30 ms later than
    // they would), and the peer holds our timestamp up to 20 ms before
    // answering: our direction is as empty as before.
    for (int i = 0; i < 100; ++i, t += 5ms) {
        const Duration hold = std::chrono::milliseconds(i % 20);
        const auto [ts, echo] = p.reply(t - 40ms - hold, 5ms, t - 35ms);
        q.sample(ts, echo, t);
    }
    CHECK(q.queueing() == 0ms);
}

TEST_CASE("one-way queue: the base delay is the smallest of the last window only") {
    Path p{42};
    OneWayQueue q;
    Time t = p.start;
    for (int i = 0; i < 100; ++i, t += 5ms) {
        const auto [ts, echo] = p.reply(t - 10ms, 5ms, t - 1ms);
        q.sample(ts, echo, t);
    }
    // The path got 8 ms longer (a route change): it looks like a queue at
    // first, and like the path once the shorter samples are a window old.
    for (int i = 0; i < 20; ++i, t += 5ms) {
        const auto [ts, echo] = p.reply(t - 20ms, 13ms, t - 1ms);
        q.sample(ts, echo, t);
    }
    CHECK(q.queueing() >= 7ms);
    const Time until = t + OneWayQueue::kWindow + 1s;
    for (; t < until; t += 5ms) {
        const auto [ts, echo] = p.reply(t - 20ms, 13ms, t - 1ms);
        q.sample(ts, echo, t);
    }
    CHECK(q.queueing() == 0ms);
    // Samples without both timestamps say nothing.
    q.sample(0, 5, t);
    q.sample(5, 0, t);
    CHECK(q.sampled_at() == t - 5ms);
    q.reset();
    CHECK_FALSE(q.valid());
}

TEST_CASE("path estimate: only the queueing in our direction counts") {
    Path p{9};
    Link link;
    const Time now = p.start + 20s;
    link.has_rtt = true;
    link.has_min_rtt = true;
    link.min_rtt = 10ms;
    link.srtt = 25ms;  // 15 ms of queueing in the round trip...
    link.rtt_at = now;
    // ...none of it ours: the peer's traffic to us queues.
    for (Time t = now - 1s; t <= now; t += 5ms) {
        const auto [ts, echo] = p.reply(t - 30ms, 5ms, t - 20ms);
        link.send_queue.sample(ts, echo, t);
    }
    CHECK(Tunnel::path_estimate(link, now).delay == 5ms);
    CHECK(Tunnel::path_estimate(link, now).queueing == 0ms);
    // Ours: 15 ms, and drained in real time when nothing new is measured.
    for (Time t = now - 1s; t <= now; t += 5ms) {
        const auto [ts, echo] = p.reply(t - 25ms, 20ms, t - 2ms);
        link.send_queue.sample(ts, echo, t);
    }
    CHECK(Tunnel::path_estimate(link, now).queueing >= 14ms);
    CHECK(Tunnel::path_estimate(link, now).queueing <= 15ms);
    CHECK(Tunnel::path_estimate(link, now + 10ms).queueing <= 5ms);
    // Never more than the round trips show.
    link.srtt = 15ms;
    CHECK(Tunnel::path_estimate(link, now).queueing == 5ms);
    // Without a one-way measure, the round trips' queueing.
    link.send_queue.reset();
    CHECK(Tunnel::path_estimate(link, now).queueing == 5ms);
}
