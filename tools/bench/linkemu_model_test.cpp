// SPDX-License-Identifier: BSD-2-Clause
// Tests of the link emulator's model and configuration: deterministic, no I/O.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "tools/bench/linkemu_config.hpp"
#include "tools/bench/linkemu_model.hpp"

using namespace mlvpn::bench;

namespace {
Params rate_only(double mbit) {
    Params p;
    p.rate_bps = mbit * 1e6;
    return p;
}
}  // namespace

TEST_CASE("the serializer spaces frames exactly at the rate") {
    Direction d(rate_only(100), 1);
    // 1250 bytes at 100 Mbit/s take 100 µs; all arrive at once.
    Nanos last = 0;
    for (int i = 0; i < 10; ++i) {
        const Decision x = d.admit(1250, 0);
        REQUIRE(x.verdict == Verdict::Pass);
        CHECK(x.deliver_at == (i + 1) * 100 * kMicro);
        last = x.deliver_at;
    }
    // After an idle gap a frame goes out at once (no credit saved up).
    const Decision y = d.admit(1250, last + kSecond);
    CHECK(y.deliver_at == last + kSecond + 100 * kMicro);
}

TEST_CASE("a long run keeps the rate without drift from rounding") {
    Direction d(rate_only(7), 1);  // 1514 * 8 / 7e6 s is not a whole number of ns
    Nanos at = 0;
    constexpr int kFrames = 100000;
    for (int i = 0; i < kFrames; ++i) {
        // Offered just fast enough to keep the queue busy, never full.
        const Decision x = d.admit(1514, static_cast<Nanos>(i) * 1730 * kMicro);
        REQUIRE(x.verdict == Verdict::Pass);
        at = x.deliver_at;
    }
    const double expect = kFrames * 1514 * 8 / 7e6 * 1e9;
    CHECK(static_cast<double>(at) == doctest::Approx(expect).epsilon(1e-9));
}

TEST_CASE("delay adds to the serialization time, and the queue is drop-tail") {
    Params p = rate_only(10);
    p.delay = 20 * kMilli;
    p.queue = 10 * kMilli;  // 12500 bytes at 10 Mbit/s
    Direction d(p, 1);
    int passed = 0, dropped = 0;
    for (int i = 0; i < 20; ++i) {
        const Decision x = d.admit(1000, 0);
        if (x.verdict == Verdict::Pass) {
            ++passed;
            CHECK(x.deliver_at == passed * 800 * kMicro + 20 * kMilli);
        } else {
            CHECK(x.verdict == Verdict::QueueFull);
            ++dropped;
        }
    }
    CHECK(passed == 12);
    CHECK(dropped == 8);
    CHECK(d.stats().drop_queue == 8);
    // Once the queue has drained, frames are taken again.
    CHECK(d.admit(1000, 20 * kMilli).verdict == Verdict::Pass);
}

TEST_CASE("the queue of a slow link still takes a burst of full frames") {
    Params p = rate_only(1);
    p.queue = 1 * kMilli;
    CHECK(p.queue_bytes() >= 4 * 1514);
}

TEST_CASE("random loss is near its probability and reproducible by seed") {
    Params p;
    p.loss = 0.01;
    Direction a(p, 42), b(p, 42);
    int lost = 0;
    for (int i = 0; i < 200000; ++i) {
        const Verdict va = a.admit(100, i).verdict;
        CHECK(va == b.admit(100, i).verdict);
        lost += va == Verdict::Loss;
    }
    CHECK(lost > 1800);
    CHECK(lost < 2200);
}

TEST_CASE("Gilbert-Elliott loss comes in bursts of the expected length") {
    Params p;
    p.ge_p = 0.01;  // mean good run 100 frames
    p.ge_r = 0.25;  // mean bad run 4 frames, all lost
    Direction d(p, 7);
    int lost = 0, bursts = 0;
    bool prev_lost = false;
    constexpr int kFrames = 400000;
    for (int i = 0; i < kFrames; ++i) {
        const bool l = d.admit(100, i).verdict == Verdict::BurstLoss;
        lost += l;
        bursts += l && !prev_lost;
        prev_lost = l;
    }
    // Stationary share of the bad state: p / (p + r) = 0.0385.
    CHECK(static_cast<double>(lost) / kFrames == doctest::Approx(0.01 / 0.26).epsilon(0.1));
    CHECK(static_cast<double>(lost) / bursts == doctest::Approx(4.0).epsilon(0.1));
}

TEST_CASE("jitter keeps the order unless a frame is chosen to be reordered") {
    Params p;
    p.delay = 10 * kMilli;
    p.jitter = 5 * kMilli;
    Direction d(p, 3);
    Nanos prev = 0;
    for (int i = 0; i < 10000; ++i) {
        const Decision x = d.admit(100, i * 10 * kMicro);
        CHECK(x.deliver_at >= prev);
        CHECK(x.deliver_at >= i * 10 * kMicro + 5 * kMilli);
        CHECK(x.deliver_at <= i * 10 * kMicro + 15 * kMilli);
        prev = x.deliver_at;
    }

    Params r;
    r.delay = 1 * kMilli;
    r.reorder = 0.1;
    r.reorder_extra = 3 * kMilli;
    Direction e(r, 3);
    int overtaken = 0;
    Nanos last = 0;
    for (int i = 0; i < 10000; ++i) {
        const Decision x = e.admit(100, i * 100 * kMicro);
        if (x.deliver_at < last) ++overtaken;
        last = std::max(last, x.deliver_at);
    }
    CHECK(e.stats().reordered > 800);
    CHECK(e.stats().reordered < 1200);
    CHECK(overtaken > 0);
}

TEST_CASE("a cut drops arrivals and changes the epoch; restoring takes frames again") {
    Params p = rate_only(10);
    p.delay = 5 * kMilli;
    Direction d(p, 1);
    CHECK(d.admit(1000, 0).verdict == Verdict::Pass);
    const auto epoch = d.epoch();
    Params cut = p;
    cut.cut = true;
    d.set(cut, 1 * kMilli);
    CHECK(d.epoch() != epoch);
    CHECK(d.admit(1000, 2 * kMilli).verdict == Verdict::Outage);
    CHECK(d.backlog(2 * kMilli) == 0);
    d.set(p, 3 * kMilli);
    const Decision x = d.admit(1000, 4 * kMilli);
    CHECK(x.verdict == Verdict::Pass);
    CHECK(x.deliver_at == 4 * kMilli + 800 * kMicro + 5 * kMilli);
}

TEST_CASE("drop_next loses exactly the next frames put on the wire, once") {
    Params p = rate_only(10);  // 1000 bytes take 800 µs
    p.delay = 5 * kMilli;
    p.queue = 2 * kMilli;  // at least 4 full frames (kMinQueueBytes)
    Direction d(p, 1);
    CHECK(d.admit(1000, 0).verdict == Verdict::Pass);

    Params once = d.params();
    once.drop_next = 1;
    d.set(once, 1 * kMilli);
    // The requested loss took its time on the wire, like any loss: the next
    // frame leaves one frame time later than without it.
    CHECK(d.admit(1000, 1 * kMilli).verdict == Verdict::Requested);
    const Decision after = d.admit(1000, 1 * kMilli);
    CHECK(after.verdict == Verdict::Pass);
    CHECK(after.deliver_at == 1 * kMilli + 2 * 800 * kMicro + 5 * kMilli);
    CHECK(d.params().drop_next == 0);
    for (int i = 0; i < 100; ++i) CHECK(d.admit(1000, kSecond + i * kMilli).verdict == Verdict::Pass);
    CHECK(d.stats().drop_requested == 1);

    // Only frames that get onto the wire count: not those lost to a cut or
    // to a full queue.
    Params cut = d.params();
    cut.cut = true;
    cut.drop_next = 2;
    d.set(cut, 2 * kSecond);
    CHECK(d.admit(1000, 2 * kSecond).verdict == Verdict::Outage);
    Params restored = d.params();
    restored.cut = false;
    restored.drop_next = 0;
    d.set(restored, 3 * kSecond);
    for (int i = 0; i < 6; ++i) CHECK(d.admit(1000, 3 * kSecond).verdict == Verdict::Pass);  // 6000 bytes queued
    Params twice = d.params();
    twice.drop_next = 2;
    d.set(twice, 3 * kSecond);
    CHECK(d.admit(1000, 3 * kSecond).verdict == Verdict::QueueFull);
    CHECK(d.params().drop_next == 2);
    CHECK(d.admit(1000, 4 * kSecond).verdict == Verdict::Requested);
    CHECK(d.admit(1000, 4 * kSecond).verdict == Verdict::Requested);
    CHECK(d.admit(1000, 4 * kSecond).verdict == Verdict::Pass);
    CHECK(d.stats().drop_requested == 3);
    CHECK(d.stats().drop_outage == 1);
    CHECK(d.stats().drop_queue == 1);
    CHECK(d.params().drop_next == 0);

    // It draws nothing from the random stream: with random loss as well, the
    // frames after it see the same losses as without it.
    Params lossy;
    lossy.loss = 0.3;
    Direction a(lossy, 5), b(lossy, 5);
    Params lossy_once = lossy;
    lossy_once.drop_next = 1;
    b.set(lossy_once, 0);
    CHECK(b.admit(100, 0).verdict == Verdict::Requested);
    for (int i = 1; i < 1000; ++i) CHECK(a.admit(100, i).verdict == b.admit(100, i).verdict);
    CHECK(b.stats().drop_requested == 1);
}

TEST_CASE("settings are checked with their ranges") {
    Params p;
    std::string error;
    CHECK(apply_setting(p, "rate_mbit", "12.5", error));
    CHECK(p.rate_bps == 12.5e6);
    CHECK(apply_setting(p, "delay_ms", "0.25", error));
    CHECK(p.delay == 250 * kMicro);
    CHECK(apply_setting(p, "cut", "true", error));
    CHECK(p.cut);
    CHECK_FALSE(apply_setting(p, "loss_pct", "101", error));
    CHECK(error.find("out of range") != std::string::npos);
    CHECK_FALSE(apply_setting(p, "loss_pct", "1x", error));
    CHECK_FALSE(apply_setting(p, "lose_pct", "1", error));
    CHECK(error.find("unknown setting") != std::string::npos);
    CHECK_FALSE(apply_setting(p, "cut", "maybe", error));
    CHECK(apply_setting(p, "drop_next", "3", error));
    CHECK(p.drop_next == 3);
    CHECK(params_json(p)["drop_next"] == 3);
    CHECK_FALSE(apply_setting(p, "drop_next", "1.5", error));
    CHECK(error.find("whole number") != std::string::npos);
    CHECK_FALSE(apply_setting(p, "drop_next", "-1", error));
    CHECK(error.find("out of range") != std::string::npos);
    CHECK_FALSE(apply_setting(p, "drop_next", "x", error));
    CHECK(p.drop_next == 3);
}

TEST_CASE("the configuration file is parsed and checked") {
    EmuConfig c;
    std::string error;
    const char* good = R"({"seed": 9, "links": [
        {"name": "a", "client_if": "mc-1", "server_if": "ms-1", "up": {"rate_mbit": 50, "delay_ms": 5},
         "down": {"loss_pct": 1}},
        {"name": "b", "client_if": "mc-2", "server_if": "ms-2"}],
      "timeline": [{"t": 7, "link": "b", "set": {"cut": false}}, {"t": 5, "link": "a", "dir": "up", "set": {"cut": true}},
                   {"t": 6, "link": "a", "dir": "down", "set": {"drop_next": 1}}]})";
    REQUIRE(parse_emu_config(good, c, error));
    CHECK(c.seed == 9);
    REQUIRE(c.links.size() == 2);
    CHECK(c.links[0].params[0].rate_bps == 50e6);
    CHECK(c.links[0].params[1].loss == doctest::Approx(0.01));
    REQUIRE(c.timeline.size() == 3);
    CHECK(c.timeline[0].t == 5);  // sorted
    CHECK(c.timeline[0].up);
    CHECK_FALSE(c.timeline[0].down);
    CHECK(c.timeline[1].t == 6);
    CHECK_FALSE(c.timeline[1].up);
    CHECK(c.timeline[1].down);
    REQUIRE(c.timeline[1].changes.size() == 1);
    CHECK(c.timeline[1].changes[0] == std::pair<std::string, std::string>{"drop_next", "1"});
    CHECK(c.timeline[2].link == 1);
    CHECK(c.timeline[2].up);
    CHECK(c.timeline[2].down);

    const struct {
        const char* text;
        const char* message;
    } bad[] = {
        {"[", "not valid JSON"},
        {R"({"links": []})", "non-empty array"},
        {R"({"links": [{"name": "a", "client_if": "x"}]})", "'server_if'"},
        {R"({"links": [{"name": "a", "client_if": "x", "server_if": "x"}]})", "used twice"},
        {R"({"links": [{"name": "a", "client_if": "x", "server_if": "y", "up": {"loss_pct": 200}}]})",
         "links[0].up: loss_pct: 200 is out of range"},
        {R"({"links": [{"name": "a", "client_if": "x", "server_if": "y"}], "timeline": [{"t": 1, "link": "z", "set": {"cut": true}}]})",
         "no link named 'z'"},
        {R"({"links": [{"name": "a", "client_if": "x", "server_if": "y"}], "timeline": [{"t": 1, "link": "a", "set": {"rate": 1}}]})",
         "unknown setting 'rate'"},
        {R"({"links": [{"name": "a", "client_if": "x", "server_if": "y"}], "extra": 1})", "unknown key 'extra'"},
        {R"({"links": [{"name": "a", "client_if": "x", "server_if": "y"}], "timeline": [{"t": 1, "link": "a", "set": {"drop_next": 0.5}}]})",
         "drop_next: '0.5' is not a whole number"},
    };
    for (const auto& b : bad) {
        CAPTURE(b.text);
        EmuConfig unused;
        CHECK_FALSE(parse_emu_config(b.text, unused, error));
        CHECK(error.find(b.message) != std::string::npos);
    }
}
