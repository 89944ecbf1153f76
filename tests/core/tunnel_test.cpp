// SPDX-License-Identifier: BSD-2-Clause
// Two whole Tunnels against each other, in one process, on a fake clock.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/status.hpp"
#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;
using namespace std::chrono_literals;

TEST_CASE("tunnel: the handshake brings every link up on both sides") {
    Pair p(3);
    REQUIRE(p.establish());
    for (LinkIndex i = 0; i < 3; ++i) {
        CHECK(p.client->link(i).state == LinkState::Up);
        CHECK(p.server->link(i).state == LinkState::Up);
        CHECK(p.server->link(i).peer == p.client_addr[i]);
        CHECK(p.client->link(i).stats.handshakes_completed == 1);
    }
    auto events = p.client->take_events();
    // Down -> Handshaking -> Up per link.
    CHECK(std::count_if(events.begin(), events.end(), [](auto& e) { return e.state == LinkState::Up; }) == 3);
    CHECK(p.client->take_events().empty());
    check_no_leak(p);
}

TEST_CASE("tunnel: packets cross intact both ways, spread over every link") {
    Pair p(3);
    REQUIRE(p.establish());
    const auto up = packets(300, 1000);
    p.send_from(true, up);
    REQUIRE(p.server_io.tun.size() == 300);
    for (size_t i = 0; i < up.size(); ++i) CHECK(p.server_io.tun[i] == up[i]);
    for (LinkIndex i = 0; i < 3; ++i) CHECK(p.server->link(i).stats.rx_data == 100);

    const auto down = packets(90, 1400, 0x40);
    p.send_from(false, down);
    REQUIRE(p.client_io.tun.size() == 90);
    for (size_t i = 0; i < down.size(); ++i) CHECK(p.client_io.tun[i] == down[i]);
    for (LinkIndex i = 0; i < 3; ++i) CHECK(p.client->link(i).stats.rx_data == 30);
    check_no_leak(p);
}

TEST_CASE("tunnel: bandwidth_upload weighs the bytes") {
    Pair p(2, 1, 1, [](TunnelSettings& c, TunnelSettings&) {
        c.links[0].bandwidth = 3000;
        c.links[1].bandwidth = 1000;
    });
    REQUIRE(p.establish());
    p.send_from(true, packets(400, 500));
    const auto a = p.server->link(0).stats.rx_data;
    const auto b = p.server->link(1).stats.rx_data;
    CHECK(a == 300);
    CHECK(b == 100);
}

TEST_CASE("tunnel: a wrong key gives no session and the server sends nothing back") {
    Pair p(2, 1, 2);
    CHECK_FALSE(p.establish(40));
    CHECK(p.server_io.sent.empty());
    CHECK(p.server->link(0).stats.drop_auth > 0);
    CHECK(p.server->link(0).stats.tx_packets == 0);
    CHECK(p.server->link(1).stats.tx_packets == 0);
    CHECK(p.client->usable_links() == 0);
    // Nothing the client sends reaches the server's TUN.
    p.send_from(true, packets(5, 100));
    CHECK(p.server_io.tun.empty());
    check_no_leak(p);
}

TEST_CASE("tunnel: replayed data is dropped and counted, and does not move the peer") {
    Pair p(1);
    REQUIRE(p.establish());
    std::vector<std::vector<std::byte>> captured;
    p.filter = [&](bool up, LinkIndex, const std::vector<std::byte>& d) {
        if (up && is_data(d)) captured.push_back(d);
        return true;
    };
    p.send_from(true, packets(3, 200));
    REQUIRE(p.server_io.tun.size() == 3);
    REQUIRE(captured.size() == 3);
    const auto before = p.server->link(0).stats.drop_replay;
    const Endpoint attacker = endpoint("203.0.113.9", 9999);
    for (auto& c : captured) {
        Datagram d{p.server_io.make(c, 0), attacker};
        p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
    }
    CHECK(p.server_io.tun.size() == 3);
    CHECK(p.server->link(0).stats.drop_replay == before + 3);
    CHECK(p.server->link(0).peer == p.client_addr[0]);
    CHECK(p.server_io.sent.empty());

    // Much later (10 s of keepalives on): still refused.
    p.filter = {};
    p.tick(100ms, 100);
    for (auto& c : captured) {
        Datagram d{p.server_io.make(c, 0), p.client_addr[0]};
        p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
    }
    CHECK(p.server_io.tun.size() == 3);
    check_no_leak(p);
}

TEST_CASE("tunnel: a duplicate initiation gets the same answer until the session is used; then nothing") {
    Pair p(1);
    std::vector<std::byte> init;
    std::vector<std::vector<std::byte>> responses;
    p.filter = [&](bool up, LinkIndex, const std::vector<std::byte>& d) {
        if (up && d[0] == std::byte(1) && init.empty()) init = d;
        if (!up && d[0] == std::byte(2)) {
            responses.push_back(d);
            return false;  // the response is lost
        }
        return true;
    };
    p.tick();
    REQUIRE(!init.empty());
    REQUIRE(responses.size() == 1);
    // The client resends the very same initiation; the server answers alike.
    p.tick(1s);
    REQUIRE(responses.size() == 2);
    CHECK(responses[0] == responses[1]);
    // A copy of it from another address gets nothing: no reflection.
    {
        const auto replays = p.server->link(0).stats.drop_replay;
        Datagram d{p.server_io.make(init, 0), endpoint("198.51.100.7", 9999)};
        p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
        CHECK(p.server_io.sent.empty());
        CHECK(p.server->link(0).stats.drop_replay == replays + 1);
    }
    p.filter = {};
    REQUIRE(p.establish());
    // Once the session is confirmed, a replay of the initiation gets nothing.
    const auto sent_before = p.server->link(0).stats.tx_packets;
    Datagram d{p.server_io.make(init, 0), p.client_addr[0]};
    p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
    CHECK(p.server_io.sent.empty());
    CHECK(p.server->link(0).stats.tx_packets == sent_before);
    CHECK(p.server->link(0).stats.drop_replay >= 1);
    check_no_leak(p);
}

TEST_CASE("tunnel: an initiation copied from one link to another is a replay there, and that link stays up") {
    Pair p(2);
    REQUIRE(p.establish());
    // Later, link 0 handshakes again (as after a reload resets it): its
    // initiation is newer than any link 1 has sent.
    p.tick(2s);
    std::vector<std::byte> init0;
    p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>& d) {
        if (up && link == 0 && d[0] == std::byte(1) && init0.empty()) init0 = d;
        return true;
    };
    p.client->reset_link(0);
    REQUIRE(p.establish());
    REQUIRE(!init0.empty());
    p.filter = {};
    // Sent to the server's other link, from that link's own peer address:
    // authentic, and newer than anything link 1 accepted, but not new for
    // the client link that made it.
    const auto replays_before = p.server->link(1).stats.drop_replay;
    const auto sent_before = p.server->link(1).stats.tx_packets;
    Datagram d{p.server_io.make(init0, 1), p.client_addr[1]};
    p.server->on_datagrams(1, std::span<Datagram>(&d, 1), p.server_io);
    CHECK(p.server_io.sent.empty());
    CHECK(p.server->link(1).stats.drop_replay == replays_before + 1);
    CHECK(p.server->link(1).stats.tx_packets == sent_before);
    // Link 1 still carries traffic with the session it had.
    const auto rx_before = p.server->link(1).stats.rx_data;
    p.send_from(true, packets(8, 200));
    CHECK(p.server_io.tun.size() == 8);
    CHECK(p.server->link(1).stats.rx_data == rx_before + 4);
    check_no_leak(p);
}

TEST_CASE("tunnel: malformed and tampered datagrams are dropped without a reply") {
    Pair p(1);
    REQUIRE(p.establish());
    std::vector<std::byte> sample;
    p.filter = [&](bool up, LinkIndex, const std::vector<std::byte>& d) {
        if (up && is_data(d) && sample.empty()) sample = d;
        return true;
    };
    p.send_from(true, packets(1, 120));
    REQUIRE(!sample.empty());
    p.filter = {};
    const size_t tun_before = p.server_io.tun.size();
    auto inject = [&](std::vector<std::byte> bytes) {
        Datagram d{p.server_io.make(bytes, 0), p.client_addr[0]};
        p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
    };
    for (size_t len = 0; len < sample.size(); ++len) {
        inject(std::vector<std::byte>(sample.begin(), sample.begin() + static_cast<long>(len)));
    }
    for (size_t i = 0; i < sample.size(); ++i) {
        auto f = sample;
        f[i] ^= std::byte{0x01};
        inject(f);
    }
    for (int type = 0; type < 256; ++type) {
        auto f = sample;
        f[0] = std::byte(type);
        inject(f);
    }
    CHECK(p.server_io.tun.size() == tun_before);
    CHECK(p.server_io.sent.empty());
    CHECK(p.server->link(0).peer == p.client_addr[0]);
    check_no_leak(p);
}

TEST_CASE("tunnel: a dead link goes down, traffic moves to the others, and it comes back") {
    Pair p(2);
    REQUIRE(p.establish());
    bool cut = true;
    p.filter = [&](bool, LinkIndex link, const std::vector<std::byte>&) { return !(cut && link == 1); };
    p.tick(500ms, 22);  // 11 s > the 10 s timeout
    CHECK(p.client->link(1).state != LinkState::Up);
    CHECK(p.server->link(1).state == LinkState::Down);
    CHECK(p.client->link(0).state == LinkState::Up);
    const auto rx1 = p.server->link(1).stats.rx_data;
    p.send_from(true, packets(50, 300));
    CHECK(p.server_io.tun.size() == 50);
    CHECK(p.server->link(1).stats.rx_data == rx1);

    cut = false;
    REQUIRE(p.establish());
    p.send_from(true, packets(50, 300));
    CHECK(p.server->link(1).stats.rx_data > rx1);
    check_no_leak(p);
}

namespace {

// Runs `seconds` of steady traffic (both ways, 20 packets per 100 ms) and
// returns the time at which `pred` first held, if it did.
template <class Pred>
std::optional<Duration> steady_traffic_until(Pair& p, Duration limit, Pred pred) {
    const Time start = p.clock.now();
    while (p.clock.now() - start < limit) {
        p.send_from(true, packets(10, 500));
        p.send_from(false, packets(10, 500, 0x60));
        p.tick(100ms);
        if (pred()) return p.clock.now() - start;
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("tunnel: a link cut in one direction only is taken out on both sides in under a second") {
    for (const bool cut_up : {true, false}) {
        CAPTURE(cut_up);
        Pair p(2);
        REQUIRE(p.establish());
        p.tick(100ms, 20);
        // Only client->server (or server->client) packets on link 1 are lost;
        // the other direction still carries the peer's packets, so "nothing
        // received" alone would never notice on one of the sides.
        p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>&) { return !(link == 1 && up == cut_up); };
        const auto detected = steady_traffic_until(p, 3s, [&] {
            return p.client->link(1).state != LinkState::Up && p.server->link(1).state != LinkState::Up;
        });
        REQUIRE(detected);
        CHECK(*detected < 1500ms);  // both sides, within one keepalive period plus the limit
        CHECK(std::string(p.client->link(1).reason) == "no acknowledgement");
        CHECK(std::string(p.server->link(1).reason) == "no acknowledgement");
        CHECK(p.client->link(1).stats.unanswered == 1);
        // Packets from the peer keep arriving on the broken link; they do not
        // bring it back.
        p.tick(100ms, 50);
        CHECK(p.client->link(1).state != LinkState::Up);
        CHECK(p.server->link(1).state != LinkState::Up);
        // Meanwhile everything goes over link 0, none lost.
        p.client_io.tun.clear();
        p.server_io.tun.clear();
        p.send_from(true, packets(50, 500));
        p.send_from(false, packets(50, 500, 0x60));
        CHECK(p.server_io.tun.size() == 50);
        CHECK(p.client_io.tun.size() == 50);

        // Restored: both sides take it back within a few probes.
        p.filter = {};
        const auto back = steady_traffic_until(p, 3s, [&] {
            return p.client->link(1).state == LinkState::Up && p.server->link(1).state == LinkState::Up;
        });
        REQUIRE(back);
        CHECK(*back <= 500ms);
        // And it carries data again, both ways.
        const auto c1 = p.client->link(1).stats.tx_data, s1 = p.server->link(1).stats.tx_data;
        steady_traffic_until(p, 1s, [] { return false; });
        CHECK(p.client->link(1).stats.tx_data > c1);
        CHECK(p.server->link(1).stats.tx_data > s1);
        check_no_leak(p);
    }
}

TEST_CASE("tunnel: a link whose acknowledgements are overdue gets no new data until a probe is acknowledged") {
    Pair p(2);
    REQUIRE(p.establish());
    steady_traffic_until(p, 2s, [] { return false; });
    bool cut = true;
    p.filter = [&](bool, LinkIndex link, const std::vector<std::byte>&) { return !(cut && link == 1); };
    const auto rounds = [&](int count) {
        for (int i = 0; i < count; ++i) {
            p.send_from(true, packets(4, 500));
            p.tick(10ms);
        }
    };
    // The pause starts kStallMin after the first unacknowledged packet here
    // (the fake links have no delay), long before the link would be taken
    // out (kUnansweredMin).
    rounds(8);
    const auto paused_at = p.client->link(1).stats.tx_data;
    const auto tun_before = p.server_io.tun.size();
    rounds(6);
    CHECK(p.client->link(1).stats.tx_data == paused_at);
    CHECK(p.client->link(1).state == LinkState::Up);
    CHECK(p.server_io.tun.size() == tun_before + 6 * 4);  // link 0 carried everything, nothing lost
    // Back before it is taken out: a probe is acknowledged, and it carries
    // data again without ever having gone down.
    cut = false;
    rounds(15);
    CHECK(p.client->link(1).stats.tx_data > paused_at);
    CHECK(p.client->link(1).stats.unanswered == 0);
    CHECK(p.client->link(1).state == LinkState::Up);
    check_no_leak(p);
}

// Client to server, `rounds` times four 500-byte packets 10 ms apart; returns them.
std::vector<std::vector<std::byte>> send_rounds(Pair& p, int rounds) {
    std::vector<std::vector<std::byte>> sent;
    for (int i = 0; i < rounds; ++i) {
        const auto round = packets(4, 500, static_cast<uint8_t>(0x20 + 4 * i));
        sent.insert(sent.end(), round.begin(), round.end());
        p.send_from(true, round);
        p.tick(10ms);
    }
    return sent;
}

TEST_CASE("tunnel: what a failing link swallowed is sent again on another link and delivered once") {
    for (uint32_t reorder : {0u, 64u}) {
        CAPTURE(reorder);
        Pair p(2, 1, 1, [reorder](TunnelSettings&, TunnelSettings& s) { s.reorder_buffer_size = reorder; });
        REQUIRE(p.establish());
        steady_traffic_until(p, 2s, [] { return false; });
        const auto tun_before = p.server_io.tun.size();
        p.filter = [&](bool, LinkIndex link, const std::vector<std::byte>&) { return link != 1; };
        auto sent = send_rounds(p, 8);
        // Link 1 stalled: what it was sent since its last acknowledgement went
        // again on link 0. Every packet arrives, once.
        p.tick(10ms, 10);
        CHECK(p.client->link(1).stats.resent > 0);
        REQUIRE(p.server_io.tun.size() == tun_before + sent.size());
        std::vector<std::vector<std::byte>> got(p.server_io.tun.begin() + static_cast<long>(tun_before),
                                                p.server_io.tun.end());
        // Not in order: the resent ones come after the receiver gave up
        // waiting for them (kReorderWaitMin here), and go out as late.
        std::sort(got.begin(), got.end());
        std::sort(sent.begin(), sent.end());
        CHECK(got == sent);
        // Nothing more: a resent packet is not resent again when the link is taken out.
        const auto resent = p.client->link(1).stats.resent;
        p.tick(100ms, 20);
        CHECK(p.client->link(1).state == LinkState::Down);
        CHECK(p.client->link(1).stats.resent == resent);
        CHECK(p.server_io.tun.size() == tun_before + sent.size());
        check_no_leak(p);
    }
}

TEST_CASE("tunnel: a partial checksum crosses flagged, its resent copy too, and a tap device ignores the flag") {
    Pair p(2);
    REQUIRE(p.establish());
    std::vector<bool> flagged;  // each data packet on the wire, client to server
    p.filter = [&](bool up, LinkIndex, const std::vector<std::byte>& d) {
        if (up && is_data(d)) flagged.push_back((std::to_integer<uint8_t>(d[1]) & wire::kFlagChecksumPartial) != 0);
        return true;
    };
    p.send_from(true, packets(4, 500), 0, true);
    p.send_from(true, packets(4, 500, 0x40), 0, false);
    REQUIRE(flagged.size() == 8);
    CHECK(flagged == std::vector<bool>{true, true, true, true, false, false, false, false});
    REQUIRE(p.server_io.tun_partial.size() == 8);
    CHECK(p.server_io.tun_partial == flagged);

    SUBCASE("what a failing link swallowed goes again with its flag") {
        steady_traffic_until(p, 2s, [] { return false; });
        const size_t before = p.server_io.tun.size();
        p.filter = [&](bool, LinkIndex link, const std::vector<std::byte>&) { return link != 1; };
        for (int i = 0; i < 8; ++i) {
            p.send_from(true, packets(4, 500, static_cast<uint8_t>(0x60 + 4 * i)), 0, true);
            p.tick(10ms);
        }
        p.tick(10ms, 10);
        CHECK(p.client->link(1).stats.resent > 0);
        REQUIRE(p.server_io.tun.size() == before + 32);
        for (size_t i = before; i < p.server_io.tun.size(); ++i) CHECK(p.server_io.tun_partial[i]);
    }
}

TEST_CASE("tunnel: a tap device takes no partial checksum from the peer") {
    Pair p(1, 1, 1, [](TunnelSettings& c, TunnelSettings& s) {
        c.tuntap = TunType::Tap;
        s.tuntap = TunType::Tap;
    });
    REQUIRE(p.establish());
    p.send_from(true, packets(2, 500), 0, true);
    REQUIRE(p.server_io.tun_partial.size() == 2);
    CHECK_FALSE(p.server_io.tun_partial[0]);
    CHECK_FALSE(p.server_io.tun_partial[1]);
}

TEST_CASE("tunnel: copies of packets that did arrive, resent because their acknowledgements were lost, are refused") {
    for (uint32_t reorder : {0u, 64u}) {
        CAPTURE(reorder);
        Pair p(2, 1, 1, [reorder](TunnelSettings&, TunnelSettings& s) { s.reorder_buffer_size = reorder; });
        REQUIRE(p.establish());
        steady_traffic_until(p, 2s, [] { return false; });
        const auto tun_before = p.server_io.tun.size();
        // Link 1 works client to server, but its acknowledgements are lost.
        p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>&) { return up || link != 1; };
        send_rounds(p, 8);
        p.tick(10ms, 10);
        CHECK(p.client->link(1).stats.resent > 0);
        CHECK(p.server->reorder().stats().duplicates == p.client->link(1).stats.resent);
        CHECK(p.server_io.tun.size() == tun_before + 32);
        check_no_leak(p);
    }
}

TEST_CASE("tunnel: a link losing more than loss_tolerence is left out while it does, and comes back") {
    Pair p(2, 1, 1, [](TunnelSettings& c, TunnelSettings&) {
        for (auto& l : c.links) l.loss_tolerence_pct = 10;
    });
    REQUIRE(p.establish());
    // One in three client->server packets on link 1 lost.
    int n = 0;
    p.filter = [&](bool up, LinkIndex link, const std::vector<std::byte>&) {
        return !(up && link == 1 && ++n % 3 == 0);
    };
    const auto lossy = steady_traffic_until(p, 10s, [&] { return p.client->link(1).quality == LinkQuality::Lossy; });
    REQUIRE(lossy);
    CHECK(p.client->link(1).state == LinkState::Up);  // still up: only left out
    CHECK(std::string(p.client->link(1).reason) == "loss above loss_tolerence");
    CHECK(p.client->link(1).tx_loss > 1000);
    // While it is lossy, data goes to link 0 only.
    const auto tx1 = p.client->link(1).stats.tx_data;
    p.send_from(true, packets(40, 300));
    CHECK(p.client->link(1).stats.tx_data == tx1);
    // The server, whose packets on link 1 get through, keeps using it.
    CHECK(p.server->link(1).quality == LinkQuality::Good);
    // Loss gone: back within the hold time plus a few measurements.
    p.filter = {};
    const auto good = steady_traffic_until(p, 20s, [&] { return p.client->link(1).quality == LinkQuality::Good; });
    REQUIRE(good);
    CHECK(*good >= timing::kQualityHold);
    check_no_leak(p);
}

TEST_CASE("tunnel: when every link is lossy, they still carry the traffic") {
    Pair p(2, 1, 1, [](TunnelSettings& c, TunnelSettings&) {
        for (auto& l : c.links) l.loss_tolerence_pct = 5;
    });
    REQUIRE(p.establish());
    int n = 0;
    p.filter = [&](bool up, LinkIndex, const std::vector<std::byte>&) { return !(up && ++n % 4 == 0); };
    REQUIRE(steady_traffic_until(p, 10s, [&] {
        return p.client->link(0).quality == LinkQuality::Lossy && p.client->link(1).quality == LinkQuality::Lossy;
    }));
    const auto tx0 = p.client->link(0).stats.tx_data, tx1 = p.client->link(1).stats.tx_data;
    steady_traffic_until(p, 1s, [] { return false; });
    CHECK(p.client->link(0).stats.tx_data > tx0);
    CHECK(p.client->link(1).stats.tx_data > tx1);
}

TEST_CASE("tunnel: a link back after its interface went down is not taken out again for what it missed") {
    Pair p(2);
    REQUIRE(p.establish());
    // The local stack refuses to send on link 1 (interface down): out at
    // once. For four seconds nothing crosses it, its keepalives included.
    p.client->on_send_error(1, ENETDOWN);
    REQUIRE(p.client->link(1).state != LinkState::Up);
    p.filter = [](bool, LinkIndex link, const std::vector<std::byte>&) { return link != 1; };
    p.tick(100ms, 40);
    // Back: the first packets bring it up, and it stays up; the keepalives
    // that went unanswered while it was down do not count against it.
    p.filter = {};
    REQUIRE(steady_traffic_until(p, 5s, [&] { return p.client->link(1).state == LinkState::Up; }));
    steady_traffic_until(p, 2s, [] { return false; });
    CHECK(p.client->link(1).state == LinkState::Up);
    CHECK(p.client->link(1).stats.unanswered == 0);
    check_no_leak(p);
}

TEST_CASE("tunnel: healthy links are never taken out for missing acknowledgements") {
    Pair p(3);
    REQUIRE(p.establish());
    // Idle for five minutes (keepalives only), then busy for a minute.
    p.tick(100ms, 3000);
    steady_traffic_until(p, 60s, [] { return false; });
    for (LinkIndex i = 0; i < 3; ++i) {
        CHECK(p.client->link(i).stats.unanswered == 0);
        CHECK(p.server->link(i).stats.unanswered == 0);
        CHECK(p.client->link(i).state == LinkState::Up);
    }
    // Throughput for status: 10 packets of 500 bytes (548 on the wire) per
    // 100 ms each way, over three links (spread as the scheduler sees fit),
    // plus acks and keepalives on each.
    double total = 0;
    for (LinkIndex i = 0; i < 3; ++i) {
        total += p.client->link(i).tx_rate;
        CHECK(p.client->link(i).tx_rate > 400);  // acks and keepalives at least
        CHECK(p.server->link(i).rx_rate == doctest::Approx(p.client->link(i).tx_rate).epsilon(0.1));
    }
    CHECK(total > 54'800);
    CHECK(total < 3 * 22'000);
    // Acknowledgements stay rare: at most one per kAckInterval per link.
    CHECK(p.server->link(0).stats.acks_sent <= 60s / timing::kAckInterval + 300s / timing::kKeepalive);
    check_no_leak(p);
}

TEST_CASE("tunnel: fallback_only links carry data only when the others are down") {
    Pair p(2, 1, 1, [](TunnelSettings& c, TunnelSettings& s) {
        c.links[1].fallback_only = true;
        s.links[1].fallback_only = true;
    });
    REQUIRE(p.establish());
    p.send_from(true, packets(20, 300));
    CHECK(p.server->link(0).stats.rx_data == 20);
    CHECK(p.server->link(1).stats.rx_data == 0);
    p.filter = [](bool, LinkIndex link, const std::vector<std::byte>&) { return link != 0; };
    p.tick(500ms, 22);
    p.send_from(true, packets(20, 300));
    // The 20 new packets, and perhaps copies of the first 20, resent because
    // link 0 died before it was acknowledged for them: delivered only once.
    CHECK(p.server->link(1).stats.rx_data == 20 + p.client->link(0).stats.resent);
    CHECK(p.server_io.tun.size() == 40);
}

TEST_CASE("tunnel: oversize packets are dropped and counted, never truncated") {
    Pair p(1, 1, 1, [](TunnelSettings& c, TunnelSettings&) { c.mtu = 1000; });
    REQUIRE(p.establish());
    p.send_from(true, {ip_packet(1001, 1), ip_packet(1000, 2)});
    CHECK(p.client->stats().drop_oversize == 1);
    REQUIRE(p.server_io.tun.size() == 1);
    CHECK(p.server_io.tun[0].size() == 1000);
    check_no_leak(p);
}

TEST_CASE("tunnel: rekey keeps the tunnel up, old packets in flight still open") {
    Pair p(1);
    REQUIRE(p.establish());
    const uint32_t first = p.client->link(0).current->local_index;
    std::vector<std::vector<std::byte>> held;
    p.filter = [&](bool up, LinkIndex, const std::vector<std::byte>& d) {
        if (up && is_data(d)) {
            held.push_back(d);
            return false;
        }
        return true;
    };
    p.send_from(true, packets(2, 100));
    p.filter = {};
    p.tick(1s, 125);  // past the 120 s rekey
    CHECK(p.client->link(0).current->local_index != first);
    CHECK(p.client->link(0).stats.handshakes_completed >= 2);
    CHECK(p.client->usable_links() == 1);
    for (auto& h : held) {
        Datagram d{p.server_io.make(h, 0), p.client_addr[0]};
        p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
    }
    CHECK(p.server_io.tun.size() == 2);
    p.send_from(true, packets(5, 100));
    CHECK(p.server_io.tun.size() == 7);
}

TEST_CASE("tunnel: after a server restart the client handshakes again within seconds") {
    Pair p(1);
    REQUIRE(p.establish());
    TunnelSettings s = p.server->settings();
    p.server = std::make_unique<Tunnel>(s, key_of(1), p.clock, p.log);
    p.tick(500ms, 10);  // 5 s
    CHECK(p.server->link(0).state == LinkState::Up);
    p.send_from(true, packets(3, 100));
    CHECK(p.server_io.tun.size() == 3);
}

TEST_CASE("tunnel: the server follows the client to a new address only on authentic packets") {
    Pair p(1);
    REQUIRE(p.establish());
    p.client_addr[0] = endpoint("198.18.0.77", 41000);  // the client's NAT rebinds
    p.send_from(true, packets(1, 100));
    CHECK(p.server->link(0).peer == p.client_addr[0]);
    p.send_from(false, packets(1, 100));
    CHECK(p.client_io.tun.size() == 1);
}

TEST_CASE("tunnel: a client link whose socket is not connected sends to its server and hears only it") {
    const Endpoint server = endpoint("198.18.0.2", 5080);
    Pair p(2, 1, 1, [&](TunnelSettings& c, TunnelSettings&) {
        for (auto& l : c.links) l.remote = server;
    });
    p.server_addr.assign(2, server);  // deliver() checks every send goes there
    REQUIRE(p.establish());
    start_sequences(p);

    // A genuine datagram of the server's, delivered from elsewhere: dropped
    // before anything looks at it, and counted; from the server, taken.
    p.filter = [](bool up, LinkIndex, const std::vector<std::byte>& d) { return up || !is_data(d); };
    p.send_from(false, packets(1, 100));
    REQUIRE(p.dropped.size() == 1);
    const auto& bytes = p.dropped[0].bytes;
    const LinkIndex link = p.dropped[0].link;
    const auto rx_before = p.client->link(link).stats.rx_packets;
    for (const Endpoint& from : {endpoint("198.18.0.2", 5081), endpoint("198.18.0.3", 5080), Endpoint{}}) {
        Datagram d{p.client_io.make(bytes, 0), from};
        p.client->on_datagrams(link, std::span<Datagram>(&d, 1), p.client_io);
    }
    CHECK(p.client->link(link).stats.drop_peer == 3);
    CHECK(p.client->link(link).stats.rx_packets == rx_before);
    CHECK(p.client_io.tun.empty());
    Datagram d{p.client_io.make(bytes, 0), server};
    p.client->on_datagrams(link, std::span<Datagram>(&d, 1), p.client_io);
    CHECK(p.client->link(link).stats.rx_packets == rx_before + 1);
    CHECK(p.client_io.tun.size() == 1);

    // A fresh socket may send to another address (the name re-resolved).
    const Endpoint moved = endpoint("198.18.0.9", 5080);
    p.client->socket_renewed(0, moved);
    CHECK(p.client->link(0).settings.remote == moved);
}

TEST_CASE("tunnel: cleartext_data leaves the payload readable but authenticated") {
    Pair p(1, 1, 1, [](TunnelSettings& c, TunnelSettings&) { c.cleartext_data = true; });
    REQUIRE(p.establish());
    std::vector<std::byte> seen;
    p.filter = [&](bool up, LinkIndex, const std::vector<std::byte>& d) {
        if (up && is_data(d)) seen = d;
        return true;
    };
    const auto pkt = ip_packet(64, 0x5a);
    p.send_from(true, {pkt});
    REQUIRE(seen.size() == pkt.size() + wire::kOverhead);
    CHECK(std::memcmp(seen.data() + wire::kOverhead, pkt.data(), pkt.size()) == 0);
    CHECK(p.server_io.tun.size() == 1);
    auto forged = seen;
    forged.back() ^= std::byte{1};
    forged[15] ^= std::byte{0x7f};  // a fresh counter, so only the tag can refuse it
    Datagram d{p.server_io.make(forged, 0), p.client_addr[0]};
    p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
    CHECK(p.server_io.tun.size() == 1);
}

TEST_CASE("tunnel: keepalives measure the round trip") {
    Pair p(1);
    REQUIRE(p.establish());
    p.tick(100ms, 50);
    CHECK(p.client->link(0).has_rtt);
    CHECK(p.server->link(0).has_rtt);
}

TEST_CASE("tunnel: reorder_buffer_size restores the sender's order across links") {
    for (uint32_t size : {0u, 64u}) {
        CAPTURE(size);
        Pair p(2, 1, 1, [size](TunnelSettings&, TunnelSettings& s) { s.reorder_buffer_size = size; });
        REQUIRE(p.establish());
        start_sequences(p);
        // Link 0 is slow: its datagrams arrive after link 1's.
        p.filter = [](bool up, LinkIndex link, const std::vector<std::byte>& d) {
            return !(up && link == 0 && is_data(d));
        };
        const auto sent = packets(20, 300);
        p.send_from(true, sent);
        p.filter = {};
        auto late = std::exchange(p.dropped, {});
        for (auto& m : late) {
            Datagram d{p.server_io.make(m.bytes, 0), p.client_addr[m.link]};
            p.server->on_datagrams(m.link, std::span<Datagram>(&d, 1), p.server_io);
        }
        REQUIRE(p.server_io.tun.size() == 20);
        const bool in_order = p.server_io.tun == sent;
        CHECK(in_order == (size != 0));
        check_no_leak(p);
    }
}

TEST_CASE("tunnel: a packet lost on one link holds the others only for the bounded wait") {
    Pair p(2, 1, 1, [](TunnelSettings&, TunnelSettings& s) { s.reorder_buffer_size = 64; });
    REQUIRE(p.establish());
    start_sequences(p);
    drop_link_of_first_data_up(p);  // lost for good, and nothing more on its link tells
    p.send_from(true, packets(10, 300));
    const size_t lost = p.dropped.size();
    REQUIRE(lost < 10);
    CHECK(p.server_io.tun.empty());  // all wait for the first
    CHECK(p.server->reorder().held() == 10 - lost);
    p.tick(std::chrono::milliseconds(timing::kReorderWaitMax.count() / 1'000'000 + 1));
    CHECK(p.server_io.tun.size() == 10 - lost);
    CHECK(p.server->reorder().stats().gaps_skipped == lost);
    CHECK(p.server->reorder().stats().gaps_lost == 0);
    check_no_leak(p);
}

TEST_CASE("tunnel: a packet lost on a link that carries on is given up when the next one on it comes") {
    Pair p(2, 1, 1, [](TunnelSettings&, TunnelSettings& s) { s.reorder_buffer_size = 64; });
    REQUIRE(p.establish());
    start_sequences(p);
    drop_first_data_up(p);  // lost for good
    std::optional<LinkIndex> link;
    auto filter = p.filter;
    p.filter = [&](bool up, LinkIndex l, const std::vector<std::byte>& d) {
        if (up && is_data(d) && !link) link = l;
        return filter(up, l, d);
    };
    const auto sent = packets(10, 300);
    p.send_from(true, sent);
    REQUIRE(link);
    // The link that lost it carried more: no wait at all.
    REQUIRE(p.client->link(*link).stats.tx_data > 2);  // the sequences' first, the lost one, more
    CHECK(p.server->reorder().held() == 0);
    CHECK(p.server_io.tun == std::vector<std::vector<std::byte>>(sent.begin() + 1, sent.end()));
    CHECK(p.server->reorder().stats().gaps_skipped == 1);
    CHECK(p.server->reorder().stats().gaps_lost == 1);
    CHECK(p.server->link(*link).chain_in.out_of_order() == 0);
    check_no_leak(p);
}

TEST_CASE("tunnel: a link taken down by the operator carries nothing and comes back when set up") {
    Pair p(2);
    REQUIRE(p.establish());
    p.client->set_admin(1, LinkAdmin::Down);
    CHECK(p.client->link(1).state == LinkState::Down);
    CHECK(std::string(p.client->link(1).reason) == "administratively down");
    const auto tx_before = p.client->link(1).stats.tx_packets;
    p.send_from(true, packets(20, 300));
    p.tick(500ms, 6);  // keepalive time passes: still nothing on link 1
    CHECK(p.client->link(1).stats.tx_packets == tx_before);
    CHECK(p.server->link(0).stats.rx_data == 20 + 0);
    // What the server sends on it is dropped, not delivered, and so not
    // acknowledged: the server soon takes it out and uses the other link.
    CHECK(p.client->link(1).stats.drop_admin > 0);
    CHECK(p.server->link(1).state == LinkState::Down);
    CHECK(std::string(p.server->link(1).reason) == "no acknowledgement");
    p.send_from(false, packets(10, 300));
    CHECK(p.client_io.tun.size() == 10);
    CHECK(p.client->link(1).stats.rx_data == 0);

    p.client->set_admin(1, LinkAdmin::Up);
    REQUIRE(p.establish());
    const auto rx1 = p.server->link(1).stats.rx_data;
    p.send_from(true, packets(20, 300));
    CHECK(p.server->link(1).stats.rx_data > rx1);
    check_no_leak(p);
}

TEST_CASE("tunnel: backup at run time behaves like fallback_only") {
    Pair p(2);
    REQUIRE(p.establish());
    p.client->set_admin(1, LinkAdmin::Backup);
    p.send_from(true, packets(20, 300));
    CHECK(p.server->link(1).stats.rx_data == 0);
    p.client->set_admin(0, LinkAdmin::Down);
    p.send_from(true, packets(20, 300));
    CHECK(p.server->link(1).stats.rx_data == 20);
}

TEST_CASE("tunnel: a new key handshakes again without losing a packet, even before the peer has it") {
    Pair p(2);
    REQUIRE(p.establish());
    const uint32_t old_index = p.client->link(0).current->local_index;
    p.client->set_psk(key_of(7));  // the client reloads first: the server refuses the new handshakes
    p.tick(500ms, 4);
    CHECK(p.client->link(0).current->local_index == old_index);
    CHECK(p.server->link(0).stats.drop_auth > 0);
    p.send_from(true, packets(10, 200));
    CHECK(p.server_io.tun.size() == 10);  // the old sessions still carry everything

    p.server->set_psk(key_of(7));  // now the server has it too
    p.tick(500ms, 4);
    CHECK(p.client->link(0).current->local_index != old_index);
    CHECK(p.client->usable_links() == 2);
    p.send_from(true, packets(10, 200));
    p.send_from(false, packets(10, 200));
    CHECK(p.server_io.tun.size() == 20);
    CHECK(p.client_io.tun.size() == 10);
    check_no_leak(p);
}

TEST_CASE("tunnel: links added, updated, reset and removed at run time") {
    Pair p(1);
    REQUIRE(p.establish());
    LinkSettings l;
    l.name = "new";
    l.timeout = std::chrono::seconds(10);
    l.connected = true;
    CHECK_FALSE(p.client->add_link(0, l));  // in use
    CHECK_FALSE(p.client->add_link(5, l));  // not next
    REQUIRE(p.client->add_link(1, l));
    l.connected = false;
    REQUIRE(p.server->add_link(1, l));
    p.client_addr.push_back(endpoint("198.18.0.9", 40009));
    REQUIRE(p.establish());
    p.send_from(true, packets(20, 300));
    CHECK(p.server->link(1).stats.rx_data == 10);

    // New weights: all of it to the new link.
    auto u = p.client->link(1).settings;
    u.bandwidth = 1'000'000;
    p.client->update_link(1, u);
    auto u0 = p.client->link(0).settings;
    u0.bandwidth = 1;
    p.client->update_link(0, u0);
    p.send_from(true, packets(20, 300));
    CHECK(p.server->link(1).stats.rx_data >= 29);

    // A new socket: the link starts over and comes back.
    p.client->reset_link(1);
    CHECK(p.client->link(1).state == LinkState::Down);
    REQUIRE(p.establish());

    // Removed: never used again, gone from status, its index kept.
    p.client->remove_link(1);
    p.server->remove_link(1);
    CHECK(p.client->link(1).removed);
    CHECK(p.client->usable_links() == 1);
    const auto before = p.server->link(1).stats.rx_packets;
    p.send_from(true, packets(10, 300));
    p.tick(500ms, 4);
    CHECK(p.server->link(1).stats.rx_packets == before);
    CHECK(p.server_io.tun.size() == 50);
    CHECK(snapshot(*p.client, StatusMeta{}, p.clock).links.size() == 1);
    // A removed link's index can be used again.
    l.name = "again";
    l.connected = true;
    CHECK(p.client->add_link(1, l));
    CHECK_FALSE(p.client->link(1).removed);
    check_no_leak(p);
}

TEST_CASE("tunnel: the reorder buffer can be resized live; what it holds is delivered") {
    Pair p(2, 1, 1, [](TunnelSettings&, TunnelSettings& s) { s.reorder_buffer_size = 64; });
    REQUIRE(p.establish());
    start_sequences(p);
    drop_link_of_first_data_up(p);
    p.send_from(true, packets(5, 100));
    const size_t lost = p.dropped.size();
    REQUIRE(lost < 5);
    CHECK(p.server->reorder().held() == 5 - lost);
    p.server->set_general(false, 1400, 0, p.server_io);
    CHECK(p.server_io.tun.size() == 5 - lost);
    CHECK(p.server->reorder().held() == 0);
    p.filter = {};
    p.send_from(true, packets(5, 100));
    CHECK(p.server_io.tun.size() == 10 - lost);
    check_no_leak(p);
}

TEST_CASE("tunnel: an ack owed for data waits kAckDelay, so that an answer the data brings goes first") {
    Pair p(1);
    REQUIRE(p.establish());
    p.tick(std::chrono::seconds(2));  // past kAckInterval since any control packet
    auto controls = [](const std::vector<Sent>& sent) {
        return std::count_if(sent.begin(), sent.end(), [](const Sent& m) { return is_control(m.bytes); });
    };
    const uint64_t acks = p.server->link(0).stats.acks_sent;
    p.client_io.sent.clear();
    std::vector<Buffer*> bufs{p.client_io.make(ip_packet(200, 1), wire::kHeadroom)};
    p.client->on_tun_packets(bufs, p.client_io);
    REQUIRE(p.client_io.sent.size() == 1);
    Datagram d{p.server_io.make(p.client_io.sent[0].bytes, 0), p.client_addr[0]};
    p.client_io.sent.clear();
    p.server_io.sent.clear();
    p.server->on_datagrams(0, std::span<Datagram>(&d, 1), p.server_io);
    REQUIRE(p.server_io.tun.size() >= 1);
    // The turn that wrote the packet to the device: no ack yet, and the
    // timer asks to be called back for it.
    const Time due = p.server->on_timer(p.server_io);
    CHECK(controls(p.server_io.sent) == 0);
    CHECK(due <= p.clock.now() + timing::kAckDelay);
    // The answer goes out meanwhile; the ack after kAckDelay.
    p.clock.advance(timing::kAckDelay);
    p.server->on_timer(p.server_io);
    CHECK(controls(p.server_io.sent) == 1);
    CHECK(p.server->link(0).stats.acks_sent == acks + 1);
}
