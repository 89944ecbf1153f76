// SPDX-License-Identifier: BSD-2-Clause
// Fuzz target: datagrams on the links of an established tunnel.
//
// Every input runs against a fresh client/server pair with a session up on
// both links, built deterministically (the same keys and indexes every time).
// The input is a list of chunks (harness.hpp: link, source, clock step, then
// the datagram), each given to the server and then to the client. The server
// has a reorder buffer, and the client seals its data in clear mode, so both
// delivery paths and both seal modes are reached. run_datagrams() checks that
// nothing reaches a TUN device unless it is a byte-exact copy of a packet the
// peer sealed (each at most once), that nothing unauthenticated is answered,
// and that every buffer comes back.
//
// The seeds are packets captured from an identical pair that went on to seal
// data and keepalives (see capture()).
#include <cstdint>

#include "tests/fuzz/harness.hpp"

using namespace mlvpn;
using namespace std::chrono_literals;
using fuzz::Bytes;

namespace {

fuzz::PeersOptions options() {
    fuzz::PeersOptions o;
    o.links = 2;
    o.server_reorder = 8;
    o.client_cleartext = true;
    return o;
}

// A packet the TUN device could hand over: version nibble 4 or 6, a body
// that tells packets apart.
Bytes ip_packet(size_t size, uint8_t version, uint8_t tag) {
    Bytes p(size, std::byte{tag});
    p[0] = std::byte(static_cast<uint8_t>(version << 4 | 5));
    return p;
}

struct Captured {
    size_t link = 0;
    Bytes datagram;
};

struct Capture {
    fuzz::Authentic client, server;  // everything each side sealed
    std::vector<Captured> client_data, server_data, client_keepalives, server_keepalives;
    Captured far_ahead;  // client data sealed beyond the server's replay window
    std::vector<Captured> client_spaces;  // client data in counter spaces 1..3
};

std::vector<Captured> captured(const std::vector<fuzz::PoolIo::Sent>& sent) {
    std::vector<Captured> out;
    for (const auto& s : sent) out.push_back({s.link, s.bytes});
    return out;
}

// Establishes a pair, then lets each side seal what the seeds are made of,
// without delivering any of it.
Capture capture() {
    fuzz::use_deterministic_random();
    fuzz::Peers p(options());
    FUZZ_CHECK(p.establish(), "the capture pair did not come up");
    Capture c;
    // Sizes: a lone version byte, a minimal IPv4 header, a small IPv6
    // packet, and the largest the tunnel carries (TunnelSettings::mtu).
    std::vector<Bytes> up, down;
    uint8_t tag = 0x10;
    for (size_t size : {1, 20, 60, 1400}) up.push_back(ip_packet(size, size == 60 ? 6 : 4, tag++));
    for (size_t size : {20, 60, 1400}) down.push_back(ip_packet(size, size == 60 ? 6 : 4, tag++));
    c.client_data = captured(p.seal(true, up));
    c.server_data = captured(p.seal(false, down));

    // Both sides owe a keepalive on every link. With the data above never
    // delivered, nothing acknowledged it either: every link is taken out by
    // then, and the keepalives are its probes.
    p.tick(1500ms);
    c.client_keepalives = captured(p.take_sent(true));
    c.server_keepalives = captured(p.take_sent(false));
    // Delivered and acknowledged (an ack waits kAckInterval after the probe
    // its side just sent), the probes bring the links back.
    for (const auto& k : c.client_keepalives) p.give(false, k.link, k.datagram);
    for (const auto& k : c.server_keepalives) p.give(true, k.link, k.datagram);
    p.tick(core::timing::kAckInterval);
    p.deliver();
    FUZZ_CHECK(p.tunnel(true).usable_links() == p.tunnel(true).link_count() &&
                   p.tunnel(false).usable_links() == p.tunnel(false).link_count(),
               "the capture pair did not take its links back");

    // Far ahead: over 8192 counters on each link (the replay window), so
    // the server's window slides over every block at once.
    for (int i = 0; i < 2 * 8300; ++i) p.seal(true, {ip_packet(1, 4, 0x01)});
    const auto far = p.seal(true, {ip_packet(40, 4, 0x7f)});
    c.far_ahead = {far[0].link, far[0].bytes};
    // Counter spaces (docs/protocol.md): each counts from 0 on its own.
    for (uint8_t space = 1; space < 4; ++space) {
        for (auto& s : captured(p.seal(true, {ip_packet(40, 4, static_cast<uint8_t>(0x30 + space))}, space))) {
            c.client_spaces.push_back(s);
        }
    }

    c.client = p.client_io.history;
    c.server = p.server_io.history;
    p.drain();

    // The seeds mean something only if a fresh pair is the capture's again:
    // its server must take the captured packet.
    fuzz::Peers q(options());
    FUZZ_CHECK(q.establish(), "the second pair did not come up");
    q.give(false, c.client_data[0].link, c.client_data[0].datagram);
    FUZZ_CHECK(q.server_io.tun.size() == 1 && q.server_io.tun[0] == up[0],
               "a fresh pair refuses the captured packet: the harness is not deterministic");
    q.drain();
    return c;
}

const Capture& world() {
    static const Capture c = capture();
    return c;
}

std::vector<uint8_t> one(const Captured& c, unsigned clock_exponent = 0, bool stranger = false) {
    return fuzz::chunk(c.link, c.datagram, clock_exponent, stranger);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Capture& w = world();
    fuzz::Peers p(options());
    FUZZ_CHECK(p.establish(), "the pair did not come up");
    fuzz::run_datagrams(p, w.client, w.server, std::span<const uint8_t>(data, size));
    return 0;
}

std::vector<fuzz::Seed> fuzz::seeds() {
    const Capture& w = world();
    std::vector<Seed> out;
    auto add = [&](std::string name, std::vector<std::vector<uint8_t>> chunks) {
        out.push_back({std::move(name), join(chunks)});
    };
    for (size_t i = 0; i < w.client_data.size(); ++i) {
        add(fmt::format("client-data-{}", i), {one(w.client_data[i])});
    }
    for (size_t i = 0; i < w.server_data.size(); ++i) {
        add(fmt::format("server-data-{}", i), {one(w.server_data[i])});
    }
    for (const auto& k : w.client_keepalives) add(fmt::format("client-keepalive-link{}", k.link), {one(k)});
    for (const auto& k : w.server_keepalives) add(fmt::format("server-keepalive-link{}", k.link), {one(k)});

    std::vector<std::vector<uint8_t>> all, reversed;
    for (const auto& d : w.client_data) all.push_back(one(d));
    reversed.assign(all.rbegin(), all.rend());
    add("client-data-in-order", all);
    // Out of order: the server's reorder buffer holds them until the first
    // one comes...
    add("client-data-reversed", reversed);
    // ... or until the gap is given up (the last chunk moves the clock on
    // 512 ms and carries no datagram).
    add("client-data-gap", {all[3], all[2], all[1], fuzz::chunk(0, {}, 10)});
    add("client-data-replayed", {one(w.client_data[1]), one(w.client_data[1]), one(w.client_data[0])});
    add("both-ways", {one(w.client_data[0]), one(w.server_data[0]), one(w.client_keepalives[0]),
                      one(w.server_keepalives[1])});
    // The client's address changes (NAT rebinding): the server follows it.
    add("client-roams", {one(w.client_data[0], 0, true), one(w.client_data[1])});
    // 2^18 ms later the session is past kRejectAfter: refused.
    add("session-expired", {one(w.client_data[0], 19)});
    std::vector<std::vector<uint8_t>> spaces;
    for (const auto& d : w.client_spaces) spaces.push_back(one(d));
    add("client-data-spaces", spaces);
    // Space 2's packet replayed; then one relabelled to the highest space
    // the wire can name (byte 6's top bits): another nonce, refused by its tag.
    add("client-data-spaces-replayed", {one(w.client_spaces[1]), one(w.client_spaces[1]), one(w.client_spaces[0])});
    Captured over = w.client_spaces[2];
    over.datagram[core::wire::kWireSpaceByte] |= std::byte{0xfc};
    add("client-data-space-relabelled", {one(over), one(w.client_spaces[2])});
    for (const auto& d : w.client_data) {
        if (d.link == w.far_ahead.link) {
            add("far-ahead-then-old", {one(w.far_ahead), one(d)});  // the window has moved past it
            break;
        }
    }
    return out;
}
