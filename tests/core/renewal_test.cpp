// SPDX-License-Identifier: BSD-2-Clause
// When a client link asks for a fresh socket (core/renewal.hpp), and what a
// fresh one does: the rule on its own, then two whole Tunnels on a fake clock.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>

#include <nlohmann/json.hpp>

#include "core/renewal.hpp"
#include "core/status.hpp"
#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;
using namespace std::chrono_literals;

namespace {

Time first_check() { return Time{} + 100s; }

// Ticks of 100 ms until the client asks for a fresh socket for `link`, at
// most `limit`; returns how long that took (or limit + 1 tick).
Duration until_renewal(Pair& p, LinkIndex link, Duration limit) {
    const Time start = p.clock.now();
    while (p.clock.now() - start <= limit) {
        p.tick(100ms);
        const auto r = p.client->take_socket_renewals();
        if (std::find(r.begin(), r.end(), link) != r.end()) return p.clock.now() - start;
    }
    return limit + 100ms;
}

bool is_init(const std::vector<std::byte>& d) {
    return !d.empty() && d[0] == std::byte(static_cast<uint8_t>(wire::Type::HandshakeInit));
}

}  // namespace

TEST_CASE("renewal: due once initiations go unanswered for kRenewAfterUnanswered") {
    SocketRenewal r;
    const Time t = first_check();
    CHECK_FALSE(r.due(t, false));
    CHECK(r.next_check(false) == kNever);
    for (int i = 0; i < 5; ++i) r.initiation_sent(t + std::chrono::seconds(i));
    CHECK_FALSE(r.due(t + 4900ms, false));
    CHECK(r.next_check(false) == t + timing::kRenewAfterUnanswered);
    CHECK(r.due(t + timing::kRenewAfterUnanswered, false));
    // Not on a link that is up: unanswered rekeys there are no dead socket.
    CHECK_FALSE(r.due(t + 10s, true));
    CHECK(r.next_check(true) == kNever);
}

TEST_CASE("renewal: the backoff doubles from 5 s to 60 s and starts over after a handshake") {
    SocketRenewal r;
    Time t = first_check();
    r.initiation_sent(t);
    t += timing::kRenewAfterUnanswered;
    std::vector<Duration> gaps;
    for (int i = 0; i < 7; ++i) {
        REQUIRE(r.due(t, false));
        r.requested(t);
        r.renewed();
        // The fresh socket's initiations go unanswered too.
        const Time asked = t;
        while (!r.due(t, false)) {
            r.initiation_sent(t);
            t += 1s;
        }
        gaps.push_back(t - asked);
    }
    CHECK(gaps == std::vector<Duration>{5s, 10s, 20s, 40s, 60s, 60s, 60s});
    CHECK(r.backoff() == timing::kRenewBackoffMax);

    r.handshake_completed();
    CHECK(r.backoff() == timing::kRenewBackoffMin);
    CHECK_FALSE(r.due(t, false));
    CHECK(r.next_check(false) == kNever);
}

TEST_CASE("renewal: a lost address is due at once, but not before the backoff allows") {
    SocketRenewal r;
    const Time t = first_check();
    r.mark_address_lost(t);
    CHECK(r.due(t, true));  // also on a link still marked up
    CHECK(r.next_check(true) <= t);
    r.requested(t);
    CHECK_FALSE(r.due(t + 1s, true));
    // The fresh socket fails as well: the next request waits for the backoff.
    r.renewed();
    r.mark_address_lost(t);
    CHECK_FALSE(r.due(t + 4s, false));
    CHECK(r.next_check(false) == t + timing::kRenewBackoffMin);
    CHECK(r.due(t + timing::kRenewBackoffMin, false));
}

TEST_CASE("renewal: sends refused for want of a route, once it persists for kRenewAfterUnreachable") {
    SocketRenewal r;
    const Time t = first_check();
    r.unreachable(t);
    r.unreachable(t + 1s);
    CHECK_FALSE(r.due(t + 1s, false));
    CHECK_FALSE(r.unreachable_persists());
    r.unreachable(t + timing::kRenewAfterUnreachable);
    CHECK(r.unreachable_persists());
    CHECK(r.due(t + timing::kRenewAfterUnreachable, true));  // whatever the state
    // A handshake in between: the network came back; a new episode starts.
    r.handshake_completed();
    CHECK_FALSE(r.due(t + 3s, false));
    r.unreachable(t + 3s);
    CHECK_FALSE(r.due(t + 3s, false));
    // Two refusals a minute apart are two episodes, not one that persists.
    r.unreachable(t + 63s);
    CHECK_FALSE(r.unreachable_persists());
}

TEST_CASE("renewal: send errors are forgotten once the link is up and hears its peer after them") {
    SocketRenewal r;
    const Time t = first_check();
    r.unreachable(t);
    r.unreachable(t + 2s);
    r.heard(t + 1s);  // before the last error: still counts
    CHECK(r.due(t + 2s, true));
    r.heard(t + 2500ms);  // the route came back
    CHECK_FALSE(r.due(t + 3s, true));
    r.mark_address_lost(t + 4s);
    r.heard(t + 3500ms);
    CHECK(r.due(t + 4s, true));
    r.heard(t + 4100ms);
    CHECK_FALSE(r.due(t + 5s, true));
}

TEST_CASE("renewal: a pause in the initiations starts the clock afresh") {
    SocketRenewal r;
    const Time t = first_check();
    r.initiation_sent(t);
    r.initiation_sent(t + 1s);
    // e.g. the link was administratively down for a minute.
    r.initiation_sent(t + 61s);
    CHECK_FALSE(r.due(t + 62s, false));
    CHECK(r.next_check(false) == t + 61s + timing::kRenewAfterUnanswered);
}

TEST_CASE("tunnel renewal: a link whose server stops answering asks for a fresh socket, with backoff") {
    Pair p(2);
    REQUIRE(p.establish());
    CHECK(p.client->take_socket_renewals().empty());
    // Link 0 loses everything, both ways; link 1 keeps working.
    p.filter = [](bool, LinkIndex link, const std::vector<std::byte>&) { return link != 0; };

    // Silence for kRehandshakeAfterSilence (3 s) starts the initiations; five
    // seconds of them unanswered make the request: about 8 s.
    const Duration first = until_renewal(p, 0, 15s);
    CHECK(first >= timing::kRehandshakeAfterSilence + timing::kRenewAfterUnanswered - 1s);
    CHECK(first <= timing::kRehandshakeAfterSilence + timing::kRenewAfterUnanswered + 500ms);
    CHECK(p.client->link(1).state == LinkState::Up);
    CHECK(p.client->link(0).state != LinkState::Up);

    // No socket comes (priv refused): the next request after 5 s, then 10 s.
    CHECK(until_renewal(p, 0, 10s) == 5s);
    CHECK(until_renewal(p, 0, 15s) == 10s);
    // Only link 0 ever asked; and the server never does.
    p.tick(100ms, 50);
    for (LinkIndex l : p.client->take_socket_renewals()) CHECK(l == 0);
    CHECK(p.server->take_socket_renewals().empty());
    CHECK(p.client->link(0).stats.socket_renewals == 0);  // asked, never given
}

TEST_CASE("tunnel renewal: a send error that means the address is gone asks at once") {
    Pair p(2);
    REQUIRE(p.establish());
    // An unreachable network may pass by itself: no request for one refusal.
    p.client->on_send_error(0, ENETUNREACH);
    p.tick(100ms);
    CHECK(p.client->take_socket_renewals().empty());

    p.client->on_send_error(1, EINVAL);
    p.tick(10ms);
    CHECK(p.client->take_socket_renewals() == std::vector<LinkIndex>{1});
    // Again and again: nothing more until the backoff allows.
    p.client->on_send_error(1, EADDRNOTAVAIL);
    p.tick(100ms, 10);
    CHECK(p.client->take_socket_renewals().empty());

    // A server link's socket is not connected: it has no address to lose.
    p.server->on_send_error(0, EADDRNOTAVAIL);
    p.tick(100ms, 60);
    CHECK(p.server->take_socket_renewals().empty());
}

TEST_CASE("tunnel renewal: sends refused for want of a route for 2 s ask for a fresh socket") {
    // What IPv4 says when a connected socket's source address left the host
    // (and nothing reaches that address any more).
    Pair p(2);
    REQUIRE(p.establish());
    p.filter = [](bool, LinkIndex link, const std::vector<std::byte>&) { return link != 0; };
    const Time start = p.clock.now();
    p.client->on_send_error(0, ENETUNREACH);
    CHECK(p.client->link(0).state == LinkState::Handshaking);  // out at once, as before
    bool asked = false;
    while (!asked && p.clock.now() - start < 5s) {
        // Whatever the link sends is refused by the kernel.
        p.tick(100ms);
        p.client->on_send_error(0, ENETUNREACH);
        p.tick(0ms);  // the loop runs the timers after every batch
        const auto r = p.client->take_socket_renewals();
        asked = std::find(r.begin(), r.end(), LinkIndex{0}) != r.end();
    }
    CHECK(asked);
    CHECK(p.clock.now() - start >= timing::kRenewAfterUnreachable);
    CHECK(p.clock.now() - start <= timing::kRenewAfterUnreachable + 200ms);
    CHECK(p.client->link(1).state == LinkState::Up);
}

TEST_CASE("tunnel renewal: refused sends are forgotten while the link hears its peer after them") {
    // A route that is missing only for a moment, on a link that still
    // receives: its socket is fine.
    Pair p(1);
    REQUIRE(p.establish());
    p.client->on_send_error(0, ENETUNREACH);
    p.tick(100ms, 25);
    REQUIRE(p.client->link(0).state == LinkState::Up);  // back with the peer's next packets
    // 2.5 s after the first: were the two one episode, it would have lasted
    // long enough for a fresh socket.
    p.client->on_send_error(0, ENETUNREACH);
    p.tick(100ms, 50);
    CHECK(p.client->take_socket_renewals().empty());
    CHECK(p.client->link(0).state == LinkState::Up);
}

TEST_CASE("tunnel renewal: the fresh socket handshakes at once, the server follows, the backoff starts over") {
    Pair p(2);
    REQUIRE(p.establish());
    const Endpoint old_addr = p.client_addr[0];
    // The host's address on link 0 changes: the stale socket's sends fail.
    p.filter = [](bool up, LinkIndex link, const std::vector<std::byte>&) { return !(up && link == 0); };
    p.client->on_send_error(0, EINVAL);
    p.tick(10ms);
    REQUIRE(p.client->take_socket_renewals() == std::vector<LinkIndex>{0});

    // The worker installs the fresh socket, which sends from the new address.
    p.filter = {};
    p.client_addr[0] = endpoint("198.18.0.77", 41000);
    p.client_io.sent.clear();
    p.client->socket_renewed(0, {});
    CHECK(p.client->link(0).state == LinkState::Down);
    CHECK(p.client->link(0).stats.socket_renewals == 1);
    std::vector<Sent> first_out;
    p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>& d) {
        if (up && link == 0) first_out.push_back(Sent{link, d, {}});
        return true;
    };
    // The next turn of the loop: the initiation goes out with no wait.
    p.run_timers();
    REQUIRE(!first_out.empty());
    CHECK(is_init(first_out.front().bytes));
    p.tick(100ms, 3);
    CHECK(p.client->link(0).state == LinkState::Up);
    CHECK(p.server->link(0).state == LinkState::Up);
    CHECK(p.server->link(0).peer == p.client_addr[0]);
    CHECK_FALSE(p.server->link(0).peer == old_addr);
    CHECK(p.client->link(0).renewal.backoff() == timing::kRenewBackoffMin);

    // Traffic crosses on it again.
    std::vector<std::vector<std::byte>> packets;
    for (int i = 0; i < 40; ++i) packets.push_back(ip_packet(200, static_cast<uint8_t>(i)));
    const auto before = p.server->link(0).stats.rx_data;
    p.send_from(true, packets);
    CHECK(p.server->link(0).stats.rx_data > before);

    // status shows the count.
    StatusMeta meta;
    const auto json = nlohmann::json::parse(to_json(snapshot(*p.client, meta, p.clock)));
    CHECK(json["tunnels"][0]["socket_renewals"] == 1);
    CHECK(json["tunnels"][1]["socket_renewals"] == 0);
}

TEST_CASE("tunnel renewal: an administratively down link never asks") {
    Pair p(1);
    REQUIRE(p.establish());
    p.client->set_admin(0, LinkAdmin::Down);
    p.client->on_send_error(0, EINVAL);
    p.filter = [](bool, LinkIndex, const std::vector<std::byte>&) { return false; };
    p.tick(100ms, 200);
    CHECK(p.client->take_socket_renewals().empty());
}
