// SPDX-License-Identifier: BSD-2-Clause
// Counter spaces (wire::kInitFlagSpaces) between two whole Tunnels: data
// sealed in several spaces under one session, replay and loss per space,
// and a peer that does not negotiate them.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <utility>

#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;
using namespace std::chrono_literals;

namespace {

// The counter as the wire has it: the space and the number's low bits (the
// tests' numbers are small).
uint64_t counter_of(const std::vector<std::byte>& d) { return wire::decode_transport(d)->counter; }

struct Captured {
    LinkIndex link;
    std::vector<std::byte> bytes;
};

// Records every data datagram one way, and lets it through.
void capture_data(Pair& p, bool up, std::vector<Captured>& out) {
    p.filter = [&out, up](bool client_to_server, LinkIndex link, const std::vector<std::byte>& d) {
        if (client_to_server == up && is_data(d)) out.push_back({link, d});
        return true;
    };
}

// Gives the server (up) or the client a datagram as if from its peer.
void inject(Pair& p, bool to_server, const Captured& c) {
    FakeIo& io = to_server ? p.server_io : p.client_io;
    Datagram d{io.make(c.bytes, 0), to_server ? p.client_addr[c.link] : Endpoint{}};
    (to_server ? p.server : p.client)->on_datagrams(c.link, std::span<Datagram>(&d, 1), io);
}

}  // namespace

TEST_CASE("spaces: data sealed in spaces 0..3 arrives once each, both ways; each space counts from 0") {
    Pair p(2);
    REQUIRE(p.establish());
    for (LinkIndex i = 0; i < 2; ++i) {
        REQUIRE(p.client->link(i).current->spaces);
        REQUIRE(p.server->link(i).current->spaces);
    }
    for (bool up : {true, false}) {
        CAPTURE(up);
        std::vector<Captured> wire_data;
        capture_data(p, up, wire_data);
        std::vector<std::vector<std::byte>> sent;
        FakeIo& rx = up ? p.server_io : p.client_io;
        rx.tun.clear();
        // Interleaved over a few seconds, so that the loss meter closes
        // periods with every space in them.
        uint8_t tag = 0;
        for (int round = 0; round < 20; ++round) {
            for (uint8_t space = 0; space < 4; ++space) {
                auto batch = packets(10, 300, tag);
                tag = static_cast<uint8_t>(tag + 10);
                p.send_from(up, batch, space);
                sent.insert(sent.end(), batch.begin(), batch.end());
            }
            p.tick(100ms);
        }
        REQUIRE(rx.tun.size() == sent.size());
        CHECK(rx.tun == sent);  // each once, in order

        // On the wire: the space byte, and per (link, space) the numbers
        // 0, 1, 2, ... (spaces above 0 carry data only).
        std::map<std::pair<LinkIndex, uint8_t>, std::vector<uint64_t>> numbers;
        for (const auto& c : wire_data) {
            numbers[{c.link, wire::counter_space(counter_of(c.bytes))}].push_back(
                wire::counter_number(counter_of(c.bytes)));
        }
        std::set<uint8_t> spaces;
        for (const auto& [key, list] : numbers) {
            spaces.insert(key.second);
            if (key.second == 0) continue;
            for (size_t i = 0; i < list.size(); ++i) CHECK(list[i] == i);
        }
        CHECK(spaces == std::set<uint8_t>{0, 1, 2, 3});

        Tunnel& receiver = up ? *p.server : *p.client;
        for (LinkIndex i = 0; i < 2; ++i) {
            const Link& l = receiver.link(i);
            CHECK(l.current->replay.windows() == 4);
            CHECK(l.stats.drop_replay == 0);
            CHECK(l.stats.drop_malformed == 0);
            // Nothing lost: the spaces' numbers are not gaps of one another.
            CHECK(l.rx_loss.loss() == 0);
        }
        p.filter = {};
    }
    check_no_leak(p);
}

TEST_CASE("spaces: a replay in any space is refused, and the space byte is authenticated") {
    Pair p(1);
    REQUIRE(p.establish());
    std::vector<Captured> wire_data;
    capture_data(p, true, wire_data);
    for (uint8_t space = 0; space < 4; ++space) p.send_from(true, packets(3, 200, space * 16), space);
    p.filter = {};
    REQUIRE(p.server_io.tun.size() == 12);
    REQUIRE(wire_data.size() == 12);
    const Link& l = p.server->link(0);
    const auto replays = l.stats.drop_replay;
    for (const auto& c : wire_data) inject(p, true, c);
    CHECK(l.stats.drop_replay == replays + 12);
    CHECK(p.server_io.tun.size() == 12);

    // The same packet relabelled to another space is a new nonce: it fails
    // authentication, and an unauthenticated packet makes no window.
    const auto auth = l.stats.drop_auth;
    Captured moved = wire_data[4];  // space 1
    REQUIRE(wire::counter_space(counter_of(moved.bytes)) == 1);
    set_wire_space(moved.bytes, 7);
    inject(p, true, moved);
    CHECK(l.stats.drop_auth == auth + 1);
    CHECK(l.current->replay.windows() == 4);
    CHECK(p.server_io.tun.size() == 12);

    // Later (keepalives on, windows moved on in space 0): still refused.
    p.tick(100ms, 30);
    for (const auto& c : wire_data) inject(p, true, c);
    CHECK(l.stats.drop_replay == replays + 24);
    CHECK(p.server_io.tun.size() == 12);
    check_no_leak(p);
}

TEST_CASE("spaces: every space the wire can name is one a peer that negotiated them may use") {
    // Six bits: 0..63, exactly wire::kCounterSpaces; nothing beyond the cap
    // can be written, so relabelling only ever makes another nonce.
    static_assert(wire::kCounterSpaces == 1u << (8 - wire::kWireSpaceShift));
    Pair p(1);
    REQUIRE(p.establish());
    std::vector<Captured> wire_data;
    capture_data(p, true, wire_data);
    p.send_from(true, packets(1, 200, 1), 2);
    p.filter = {};
    REQUIRE(wire_data.size() == 1);
    const Link& l = p.server->link(0);
    const auto malformed = l.stats.drop_malformed;
    const auto auth = l.stats.drop_auth;
    for (uint8_t space : {uint8_t{1}, uint8_t{wire::kCounterSpaces - 1}}) {
        Captured c = wire_data[0];
        set_wire_space(c.bytes, space);
        inject(p, true, c);
    }
    CHECK(l.stats.drop_malformed == malformed);
    CHECK(l.stats.drop_auth == auth + 2);  // another nonce: the tag fails
    CHECK(l.current->replay.windows() == 2);
    CHECK(p.server_io.tun.size() == 1);
    check_no_leak(p);
}

TEST_CASE("spaces: a client that does not offer them is answered, and both ends keep to space 0") {
    Pair p(2, 1, 1, [](TunnelSettings& c, TunnelSettings&) { c.counter_spaces = false; });
    REQUIRE(p.establish());
    for (LinkIndex i = 0; i < 2; ++i) {
        CHECK_FALSE(p.client->link(i).current->spaces);
        CHECK_FALSE(p.server->link(i).current->spaces);
    }
    for (bool up : {true, false}) {
        CAPTURE(up);
        std::vector<Captured> wire_data;
        capture_data(p, up, wire_data);
        FakeIo& rx = up ? p.server_io : p.client_io;
        rx.tun.clear();
        const auto batch = packets(40, 300, 0x20);
        p.send_from(up, batch, 3);  // asked for space 3
        p.filter = {};
        CHECK(rx.tun == batch);
        REQUIRE(wire_data.size() == 40);
        for (const auto& c : wire_data) CHECK(wire::counter_space(counter_of(c.bytes)) == 0);

        // The receiver takes nothing but space 0 from such a peer.
        Tunnel& receiver = up ? *p.server : *p.client;
        const Link& l = receiver.link(wire_data[0].link);
        const auto malformed = l.stats.drop_malformed;
        const auto auth = l.stats.drop_auth;
        Captured c = wire_data[0];
        set_wire_space(c.bytes, 1);
        inject(p, up, c);
        CHECK(l.stats.drop_malformed == malformed + 1);
        CHECK(l.stats.drop_auth == auth);
        CHECK(l.current->replay.windows() == 1);
    }
    check_no_leak(p);
}

TEST_CASE("spaces: a responder from before them does not answer an initiation that offers them") {
    // What an initiator meets when the server was not upgraded: no session
    // (docs/protocol.md: both ends are upgraded together).
    Pair p(1, 1, 1, [](TunnelSettings&, TunnelSettings& s) { s.counter_spaces = false; });
    CHECK_FALSE(p.establish(20));
    CHECK(p.server->link(0).stats.drop_malformed > 0);
    CHECK(p.server->link(0).stats.tx_packets == 0);
    CHECK(p.client->usable_links() == 0);
    check_no_leak(p);
}

TEST_CASE("spaces: a rekeyed session counts every space from 0 again") {
    Pair p(1);
    REQUIRE(p.establish());
    p.send_from(true, packets(5, 200, 1), 3);
    const uint32_t old_index = p.client->link(0).current->local_index;
    CHECK(p.client->link(0).current->send.sent(3) == 5);
    p.tick(1s, 125);  // past kRekeyAfter
    REQUIRE(p.client->link(0).current->local_index != old_index);
    CHECK(p.client->link(0).current->send.sent(3) == 0);
    std::vector<Captured> wire_data;
    capture_data(p, true, wire_data);
    p.send_from(true, packets(1, 200, 9), 3);
    p.filter = {};
    REQUIRE(wire_data.size() == 1);
    CHECK(counter_of(wire_data[0].bytes) == wire::counter_make(3, 0));
    CHECK(p.server_io.tun.size() == 6);
    check_no_leak(p);
}
