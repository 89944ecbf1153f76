// SPDX-License-Identifier: BSD-2-Clause
#include "core/handshake_limit.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

using namespace mlvpn::core;
using namespace std::chrono_literals;
using Verdict = HandshakeLimiter::Verdict;

namespace {

Endpoint v4(uint32_t host_order, uint16_t port = 5080) {
    Endpoint e;
    e.addr.in4.sin_family = AF_INET;
    e.addr.in4.sin_port = htons(port);
    e.addr.in4.sin_addr.s_addr = htonl(host_order);
    e.len = sizeof(sockaddr_in);
    return e;
}

Endpoint ip(const char* text, uint16_t port = 5080) {
    Endpoint e;
    if (inet_pton(AF_INET, text, &e.addr.in4.sin_addr) == 1) {
        e.addr.in4.sin_family = AF_INET;
        e.addr.in4.sin_port = htons(port);
        e.len = sizeof(sockaddr_in);
    } else {
        REQUIRE(inet_pton(AF_INET6, text, &e.addr.in6.sin6_addr) == 1);
        e.addr.in6.sin6_family = AF_INET6;
        e.addr.in6.sin6_port = htons(port);
        e.len = sizeof(sockaddr_in6);
    }
    return e;
}

// How many of `n` initiations from `from` at `now` are admitted.
uint32_t admitted(HandshakeLimiter& l, const Endpoint& from, Time now, uint32_t n) {
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n; ++i) ok += l.admit(from, now) == Verdict::Admit ? 1 : 0;
    return ok;
}

const Time kLimitStart = Time{} + 1000s;
const Duration kSourceInterval = 1s / limits::kInitiationsPerSecondPerSource;

}  // namespace

TEST_CASE("handshake limit: a token bucket holds its burst and refills at its rate") {
    const BucketRate rate = BucketRate::per_second(4, 3);  // one every 250 ms, up to 3
    TokenBucket b;
    CHECK(b.full(kLimitStart));
    CHECK(b.available(kLimitStart, rate) == 3);
    CHECK(b.take(kLimitStart, rate));
    CHECK(b.take(kLimitStart, rate));
    CHECK(b.take(kLimitStart, rate));
    CHECK_FALSE(b.can_take(kLimitStart, rate));
    CHECK_FALSE(b.take(kLimitStart, rate));
    CHECK(b.available(kLimitStart, rate) == 0);
    // A refusal costs nothing: one interval later exactly one token is back.
    CHECK_FALSE(b.take(kLimitStart + 249ms, rate));
    CHECK(b.take(kLimitStart + 250ms, rate));
    CHECK_FALSE(b.take(kLimitStart + 250ms, rate));
    // Never more than the burst, however long it rests.
    CHECK(b.full(kLimitStart + 1000ms));
    CHECK(b.available(kLimitStart + 1h, rate) == 3);
    int n = 0;
    while (b.take(kLimitStart + 1h, rate)) ++n;
    CHECK(n == 3);
    // Half-way through an interval: no partial token.
    CHECK(b.available(kLimitStart + 1h + 125ms, rate) == 0);
    CHECK(b.available(kLimitStart + 1h + 250ms, rate) == 1);
}

TEST_CASE("handshake limit: one source gets its burst, then its rate") {
    HandshakeLimiter l;
    const Endpoint a = v4(0xC6120001);
    CHECK(admitted(l, a, kLimitStart, 1000) == limits::kInitiationBurstPerSource);
    CHECK(l.admit(a, kLimitStart) == Verdict::SourceLimited);
    // Over ten seconds at 100 a second: the rate, not what was sent.
    uint32_t ok = 0;
    for (int i = 1; i <= 1000; ++i) ok += admitted(l, a, kLimitStart + i * 10ms, 1);
    CHECK(ok == 10 * limits::kInitiationsPerSecondPerSource);
    // Rested long enough to be full: the whole burst again.
    CHECK(admitted(l, a, kLimitStart + 20s + kSourceInterval * limits::kInitiationBurstPerSource, 1000) ==
          limits::kInitiationBurstPerSource);
}

TEST_CASE("handshake limit: sources are limited apart; the port does not make a new source") {
    HandshakeLimiter l;
    const Endpoint a = v4(0xC6120001, 1000);
    const Endpoint a_other_port = v4(0xC6120001, 2000);
    const Endpoint b = v4(0xC6120002, 1000);
    CHECK(admitted(l, a, kLimitStart, 1000) == limits::kInitiationBurstPerSource);
    CHECK(l.admit(a_other_port, kLimitStart) == Verdict::SourceLimited);
    // A source over its own limit took nothing from the global bucket: the
    // next source has its whole burst.
    CHECK(admitted(l, b, kLimitStart, 1000) == limits::kInitiationBurstPerSource);
}

TEST_CASE("handshake limit: a newcomer never takes the entry of a source in use") {
    HandshakeLimiter l;
    const Endpoint a = v4(0xC6120001);
    // Sources that fall in a's set of the table.
    std::vector<Endpoint> same_set;
    for (uint32_t i = 0; same_set.size() < limits::kSourceTableWays; ++i) {
        const Endpoint e = v4(0x0A000000 + i);
        if (l.set_index(e) == l.set_index(a)) same_set.push_back(e);
    }
    const Endpoint newcomer = same_set.back();
    same_set.pop_back();
    // a and seven others fill the set, each having used its bucket.
    CHECK(admitted(l, a, kLimitStart, 1000) == limits::kInitiationBurstPerSource);
    for (const auto& e : same_set) CHECK(admitted(l, e, kLimitStart, 1) == 1);
    // The newcomer finds no room: only the global bucket holds it, and what
    // is left of it (the others took 64 + 7 tokens) is all it gets.
    const uint32_t left = limits::kInitiationBurstGlobal - limits::kInitiationBurstPerSource - 7;
    CHECK(admitted(l, newcomer, kLimitStart, 1000) == left);
    // a's entry is still a's: an empty bucket, not a fresh one.
    CHECK(admitted(l, a, kLimitStart + 1s, 1000) == limits::kInitiationsPerSecondPerSource);
}

TEST_CASE("handshake limit: IPv6 sources are grouped by /64; v4-mapped is IPv4") {
    HandshakeLimiter l;
    const Endpoint a1 = ip("2001:db8:1:2::1");
    const Endpoint a2 = ip("2001:db8:1:2:ffff:ffff:ffff:fffe");
    const Endpoint b = ip("2001:db8:1:3::1");
    CHECK(source_key(a1) == source_key(a2));
    CHECK_FALSE(source_key(a1) == source_key(b));
    CHECK(admitted(l, a1, kLimitStart, 1000) == limits::kInitiationBurstPerSource);
    CHECK(l.admit(a2, kLimitStart) == Verdict::SourceLimited);
    CHECK(l.admit(b, kLimitStart) == Verdict::Admit);

    const Endpoint v4a = ip("192.0.2.7");
    const Endpoint mapped = ip("::ffff:192.0.2.7");
    const Endpoint v4b = ip("192.0.2.8");
    CHECK(source_key(v4a) == source_key(mapped));
    CHECK_FALSE(source_key(v4a) == source_key(v4b));
    CHECK(admitted(l, v4a, kLimitStart, 1000) == limits::kInitiationBurstPerSource);
    CHECK(l.admit(mapped, kLimitStart) == Verdict::SourceLimited);
    // IPv4 addresses are told apart to the last bit.
    CHECK(l.admit(v4b, kLimitStart) == Verdict::Admit);
}

TEST_CASE("handshake limit: the global bucket caps every untrusted source together") {
    HandshakeLimiter l;
    uint32_t ok = 0;
    for (uint32_t i = 0; i < 10 * limits::kInitiationBurstGlobal; ++i) ok += admitted(l, v4(0x0A000000 + i), kLimitStart, 1);
    CHECK(ok == limits::kInitiationBurstGlobal);
    CHECK(l.admit(v4(0x0B000001), kLimitStart) == Verdict::GlobalLimited);
    // It refills at its rate, whoever asks.
    ok = 0;
    for (uint32_t i = 0; i < 1000; ++i) ok += admitted(l, v4(0x0C000000 + i), kLimitStart + 1s, 1);
    CHECK(ok == limits::kInitiationsPerSecondGlobal);
}

TEST_CASE("handshake limit: 100k distinct sources never grow the table, and a trusted source still gets in") {
    HandshakeLimiter l;
    const std::array<uint8_t, 32> secret{1, 2, 3};
    l.set_hash_key(secret);
    const Endpoint genuine = ip("198.18.0.1");
    REQUIRE(l.admit(genuine, kLimitStart) == Verdict::Admit);
    l.trust(genuine, kLimitStart);
    CHECK(l.trusted(genuine, kLimitStart));

    // All at once: only what is left of the global burst is admitted (the
    // genuine source took one token before it was trusted).
    uint32_t ok = 0;
    for (uint32_t i = 0; i < 100'000; ++i) ok += admitted(l, v4(0x64000000 + i), kLimitStart, 1);
    CHECK(ok == limits::kInitiationBurstGlobal - 1);
    CHECK(l.tracked() <= limits::kSourceTableSize);
    CHECK(l.admit(genuine, kLimitStart) == Verdict::Admit);

    // And spread over 10 s, as a spray from forged sources would come (10k a
    // second, 40 times the global rate), IPv6 this time.
    ok = 0;
    Time last{};
    for (uint32_t i = 0; i < 100'000; ++i) {
        Endpoint e = ip("2001:db8::1");
        std::memcpy(&e.addr.in6.sin6_addr.s6_addr[4], &i, sizeof i);
        last = kLimitStart + 1s + i * 100us;
        ok += admitted(l, e, last, 1);
    }
    CHECK(l.tracked() <= limits::kSourceTableSize);
    CHECK(ok <= limits::kInitiationBurstGlobal + 10 * limits::kInitiationsPerSecondGlobal + 1);
    CHECK(ok >= 10 * limits::kInitiationsPerSecondGlobal - 1);
    // An untrusted newcomer competes with the spray for the global bucket
    // (docs/security.md): at the spray's last datagram, there is nothing left.
    CHECK(l.admit(ip("198.18.0.2"), last) == Verdict::GlobalLimited);
    // The trusted source went through the whole spray on its own bucket.
    CHECK(l.trusted(genuine, last));
    CHECK(admitted(l, genuine, last, 1000) == limits::kInitiationBurstPerSource);
}

TEST_CASE("handshake limit: trust exempts from the global bucket, not from the source's own, and expires") {
    HandshakeLimiter l;
    const Endpoint a = v4(0xC6120001);
    l.trust(a, kLimitStart);
    // Empty the global bucket.
    for (uint32_t i = 0; i < limits::kInitiationBurstGlobal; ++i) admitted(l, v4(0x0A000000 + i), kLimitStart, 1);
    REQUIRE(l.admit(v4(0x0B000001), kLimitStart) == Verdict::GlobalLimited);
    CHECK(admitted(l, a, kLimitStart, 1000) == limits::kInitiationBurstPerSource);
    CHECK(l.admit(a, kLimitStart) == Verdict::SourceLimited);
    // After kSourceTrust, the source is like any other.
    const Time later = kLimitStart + limits::kSourceTrust;
    CHECK_FALSE(l.trusted(a, later));
    for (uint32_t i = 0; i < limits::kInitiationBurstGlobal; ++i) admitted(l, v4(0x0A100000 + i), later, 1);
    CHECK(l.admit(a, later) == Verdict::GlobalLimited);
}

TEST_CASE("handshake limit: a source with no room in the table is held by the global bucket alone") {
    HandshakeLimiter l;
    // Only entries in use are kept from newcomers; trusted ones are, so fill
    // the table with those (an attacker cannot: trust takes the key).
    for (uint32_t i = 0; i < 100'000; ++i) l.trust(v4(0x0A000000 + i), kLimitStart);
    CHECK(l.tracked() == limits::kSourceTableSize);
    // A newcomer gets no entry: no per-source bucket, only the global one.
    const Endpoint newcomer = v4(0xC6120009);
    CHECK_FALSE(l.trusted(newcomer, kLimitStart));
    CHECK(admitted(l, newcomer, kLimitStart, 1000) == limits::kInitiationBurstGlobal);
    CHECK(l.admit(newcomer, kLimitStart) == Verdict::GlobalLimited);
    CHECK(l.tracked() == limits::kSourceTableSize);
    // Once trust runs out the entries are free again.
    const Time later = kLimitStart + limits::kSourceTrust + 1s;
    CHECK(admitted(l, newcomer, later, 1000) == limits::kInitiationBurstPerSource);
}

TEST_CASE("handshake limit: the drop warning comes once per interval, with the count") {
    HandshakeLimiter l;
    auto first = l.log_allowed(kLimitStart);
    REQUIRE(first);
    CHECK(*first == 1);
    CHECK_FALSE(l.log_allowed(kLimitStart + 1s));
    CHECK_FALSE(l.log_allowed(kLimitStart + 2s));
    auto next = l.log_allowed(kLimitStart + 6s);
    REQUIRE(next);
    CHECK(*next == 3);
}
