// SPDX-License-Identifier: BSD-2-Clause
// Handshake abuse against a whole server Tunnel: floods of initiations, forged
// or replayed, from one source or from very many (core/handshake_limit.hpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "core/handshake_limit.hpp"
#include "core/status.hpp"
#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;
using namespace std::chrono_literals;

namespace {

// 72 bytes shaped like an initiation (type, zeros), the rest noise: what a
// scanner or a flood without the key sends.
std::vector<std::byte> garbage_initiation(uint32_t n) {
    std::vector<std::byte> m(wire::kInitSize);
    m[0] = std::byte(static_cast<uint8_t>(wire::Type::HandshakeInit));
    uint32_t x = n * 2654435761u + 12345u;
    for (size_t i = 4; i < m.size(); ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        m[i] = std::byte(static_cast<uint8_t>(x));
    }
    return m;
}

// A forged source, distinct for every n (100.64.0.0/10 and up).
Endpoint forged(uint32_t n) {
    Endpoint e = endpoint("100.64.0.0", static_cast<uint16_t>(1024 + n % 60000));
    e.addr.in4.sin_addr.s_addr = htonl(0x64400000u + n);
    return e;
}

// Gives the server `count` datagrams on `link`, the i-th from `from(i)`.
template <class Bytes, class From>
void flood(Pair& p, LinkIndex link, uint32_t first, uint32_t count, Bytes bytes, From from) {
    for (uint32_t i = first; i < first + count; ++i) {
        Datagram d{p.server_io.make(bytes(i), 0), from(i)};
        p.server->on_datagrams(link, std::span<Datagram>(&d, 1), p.server_io);
    }
}

size_t warnings(const Pair& p) {
    return static_cast<size_t>(std::count_if(p.sink.lines.begin(), p.sink.lines.end(), [](const std::string& l) {
        return l.find("rate limit, dropped") != std::string::npos;
    }));
}

}  // namespace

TEST_CASE("abuse: 100k forged initiations cost at most the global budget in crypto, get no reply, "
          "and the client establishes once they stop") {
    Pair p(2);
    constexpr uint32_t kFlood = 100'000;
    flood(p, 0, 0, kFlood, garbage_initiation, forged);
    const auto& st = p.server->link(0).stats;
    CHECK(p.server_io.sent.empty());
    CHECK(st.tx_packets == 0);
    // Only what the limiter admitted reached read_message_1 (and failed it).
    CHECK(st.drop_auth == limits::kInitiationBurstGlobal);
    CHECK(st.drop_ratelimit == kFlood - limits::kInitiationBurstGlobal);
    CHECK(st.drop_auth + st.drop_ratelimit == kFlood);
    // One warning for the lot, not one per datagram.
    CHECK(warnings(p) == 1);

    // The client's first initiations meet the empty global bucket; its retry
    // a second later gets in.
    REQUIRE(p.establish(30));
    CHECK(p.client->usable_links() == 2);
    CHECK(p.server->usable_links() == 2);
    check_no_leak(p);
}

TEST_CASE("abuse: one source flooding is held to its own bucket and does not lock anyone out") {
    Pair p(2);
    const Endpoint attacker = endpoint("203.0.113.9", 4444);
    flood(p, 0, 0, 10'000, garbage_initiation, [&](uint32_t) { return attacker; });
    CHECK(p.server->link(0).stats.drop_auth == limits::kInitiationBurstPerSource);
    CHECK(p.server->link(0).stats.drop_ratelimit == 10'000 - limits::kInitiationBurstPerSource);
    // The global bucket still has room: the client is answered at once.
    p.tick();
    CHECK(p.client->usable_links() == 2);
    CHECK(p.client->link(0).stats.handshakes_sent == 1);
    CHECK(p.client->link(1).stats.handshakes_sent == 1);
    check_no_leak(p);
}

TEST_CASE("abuse: a captured initiation replayed from many sources gets one reply, no larger than itself") {
    Pair p(1);
    p.client_due_ = p.client->on_timer(p.client_io);
    REQUIRE(p.client_io.sent.size() == 1);
    const std::vector<std::byte> init = p.client_io.sent[0].bytes;
    REQUIRE(init.size() == wire::kInitSize);

    // The attacker races the genuine datagram from 10k forged sources.
    flood(p, 0, 0, 10'000, [&](uint32_t) { return init; }, forged);
    size_t replies = 0;
    for (const auto& s : p.server_io.sent) {
        CHECK(s.bytes.size() <= init.size());
        CHECK(s.bytes.size() == wire::kResponseSize);
        ++replies;
    }
    // One fresh handshake (a Diffie-Hellman) answered to the first source;
    // the cached answer goes only there, so the other copies that got past
    // the rate limits are dropped as replays: nothing is reflected.
    CHECK(p.server->link(0).stats.handshakes_received == replies);
    CHECK(replies == 1);
    CHECK(p.server->link(0).stats.drop_ratelimit == 10'000 - limits::kInitiationBurstGlobal);
    CHECK(p.server->link(0).stats.drop_replay == limits::kInitiationBurstGlobal - 1);

    // And from one other source, however often: its own burst gets past the
    // limits (a second later, when the global bucket has refilled), and no
    // answer.
    p.server_io.sent.clear();
    p.clock.advance(1s);
    const auto limited = p.server->link(0).stats.drop_ratelimit;
    flood(p, 0, 0, 10'000, [&](uint32_t) { return init; }, [](uint32_t) { return endpoint("203.0.113.9", 1); });
    CHECK(p.server_io.sent.empty());
    CHECK(p.server->link(0).stats.drop_ratelimit == limited + 10'000 - limits::kInitiationBurstPerSource);
    p.server_io.sent.clear();

    // The genuine client: its resends of that initiation come from another
    // address than the racer's and get nothing, so it starts over with a
    // fresh one (kHandshakeLifetime) and completes. An attacker on the path
    // could as well have dropped the original: a delay, no more.
    p.client_io.sent.clear();
    REQUIRE(p.establish(static_cast<int>(timing::kHandshakeLifetime / 100ms) + 30));
    CHECK(p.server->link(0).peer == p.client_addr[0]);
    check_no_leak(p);
}

TEST_CASE("abuse: an established client rekeys through a flood from forged sources (its source is trusted)") {
    Pair p(2);
    REQUIRE(p.establish());
    const auto completed0 = p.client->link(0).stats.handshakes_completed;
    const auto completed1 = p.client->link(1).stats.handshakes_completed;
    // 1000 forged initiations a second, four times the global rate, on both
    // links, for longer than a rekey interval; and, the worst case, enough
    // right before each of the client's initiations to empty the global
    // bucket. Every reply must go to the client: Pair::deliver requires it.
    uint32_t n = 0;
    p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>& d) {
        if (up && d[0] == std::byte(static_cast<uint8_t>(wire::Type::HandshakeInit))) {
            flood(p, link, n, 2 * limits::kInitiationBurstGlobal, garbage_initiation, forged);
            n += 2 * limits::kInitiationBurstGlobal;
        }
        return true;
    };
    const int ticks = static_cast<int>((timing::kRekeyAfter + 10s) / 100ms);
    for (int t = 0; t < ticks; ++t) {
        flood(p, static_cast<LinkIndex>(t % 2), n, 100, garbage_initiation, forged);
        n += 100;
        p.tick(100ms);
    }
    p.filter = {};
    CHECK(p.server->link(0).stats.drop_ratelimit + p.server->link(1).stats.drop_ratelimit > n / 2);
    CHECK(p.client->link(0).stats.handshakes_completed > completed0);
    CHECK(p.client->link(1).stats.handshakes_completed > completed1);
    CHECK(p.client->usable_links() == 2);
    CHECK(p.server->usable_links() == 2);
    // Data still crosses.
    p.send_from(true, {ip_packet(300, 1), ip_packet(300, 2)});
    CHECK(p.server_io.tun.size() == 2);
    // A warning per interval, not per datagram.
    CHECK(warnings(p) <= static_cast<size_t>(ticks / 50 + 2));
    CHECK(warnings(p) >= 2);
    check_no_leak(p);
}

TEST_CASE("abuse: a client that never handshook competes with a forged flood (known weakness); "
          "allowed_peer shields it") {
    SUBCASE("without allowed_peer: out while the flood lasts (worst case), in a retry after it ends") {
        // Each of the client's initiations gets in only if a token came free
        // since the flood's last datagram (about global rate / flood rate:
        // docs/security.md). Here, the worst case: the flood empties the
        // global bucket right before each of them.
        Pair p(1);
        uint32_t n = 0;
        p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>& d) {
            if (up && d[0] == std::byte(static_cast<uint8_t>(wire::Type::HandshakeInit))) {
                flood(p, link, n, 2 * limits::kInitiationBurstGlobal, garbage_initiation, forged);
                n += 2 * limits::kInitiationBurstGlobal;
            }
            return true;
        };
        p.tick(100ms, 50);  // 5 s: five attempts
        CHECK(p.client->link(0).stats.handshakes_sent >= 5);
        CHECK(p.client->usable_links() == 0);
        CHECK(p.server->link(0).stats.handshakes_received == 0);
        p.filter = {};
        REQUIRE(p.establish(15));
    }
    SUBCASE("with allowed_peer: the forged sources never reach the limiter") {
        Pair p(1, 1, 1, [](TunnelSettings&, TunnelSettings& s) {
            s.links[0].allowed_peer = endpoint("198.18.0.1", 0);
        });
        uint32_t n = 0;
        bool up = false;
        for (int t = 0; t < 20 && !up; ++t) {
            flood(p, 0, n, 1000, garbage_initiation, forged);
            n += 1000;
            p.tick(100ms);
            up = p.client->usable_links() == 1 && p.server->usable_links() == 1;
        }
        CHECK(up);
        CHECK(p.server->link(0).stats.drop_ratelimit == 0);
        CHECK(p.server->link(0).stats.drop_peer >= 1000);
    }
}

TEST_CASE("abuse: the rate-limit drops show in status JSON and metrics") {
    Pair p(1);
    flood(p, 0, 0, 1000, garbage_initiation, forged);
    const auto dropped = p.server->link(0).stats.drop_ratelimit;
    REQUIRE(dropped == 1000 - limits::kInitiationBurstGlobal);
    const mlvpn::core::Status s = snapshot(*p.server, StatusMeta{}, p.clock);
    const std::string json = to_json(s);
    CHECK(json.find(fmt::format("\"ratelimit\": {}", dropped)) != std::string::npos);
    const std::string metrics = to_prometheus(s);
    CHECK(metrics.find(fmt::format("mlvpn_link_dropped_packets_total{{tunnel=\"\",link=\"link0\",reason=\"ratelimit\"}} {}",
                                   dropped)) != std::string::npos);
}
