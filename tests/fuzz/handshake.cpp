// SPDX-License-Identifier: BSD-2-Clause
// Fuzz target: handshake messages.
//
// Every input runs against a fresh server (no session yet) and a client whose
// initiations are in flight on both links, built deterministically. Each
// chunk's datagram (harness.hpp) reaches the server as a would-be initiation
// and then the client as a would-be response. run_datagrams() checks that
// neither ever answers a datagram the other side did not produce — the
// responder must not reply to, or spend a Diffie-Hellman on, anything that
// does not authenticate with the PSK — that answers are never larger than
// what they answer, and that nothing reaches a TUN device.
//
// The server's last link only answers the client's address (allowed_peer),
// so the `stranger` bit reaches that check too.
//
// The seeds are the client's initiations, the server's responses and the
// client's confirming keepalives, captured from an identical pair (capture()).
#include <cstdint>

#include "tests/fuzz/harness.hpp"

using namespace mlvpn;
using namespace std::chrono_literals;
using fuzz::Bytes;

namespace {

fuzz::PeersOptions options() {
    fuzz::PeersOptions o;
    o.links = 2;
    o.restrict_last_link = true;
    return o;
}

// A pair with the client's first initiations sent and not delivered.
void start(fuzz::Peers& p) {
    p.tick(0ns);
    const auto inits = p.take_sent(true);
    FUZZ_CHECK(inits.size() == p.options.links, "the client sent {} initiations", inits.size());
}

struct Capture {
    fuzz::Authentic client, server;
    std::vector<fuzz::PoolIo::Sent> inits, responses, keepalives, fresh_inits;
};

Capture capture() {
    fuzz::use_deterministic_random();
    Capture c;
    {
        fuzz::Peers p(options());
        p.tick(0ns);
        c.inits = p.take_sent(true);
        for (const auto& i : c.inits) {
            auto r = p.give(false, i.link, i.bytes);
            FUZZ_CHECK(r.size() == 1, "the server did not answer the capture's initiation");
            c.responses.push_back(r[0]);
        }
        for (const auto& r : c.responses) {
            auto k = p.give(true, r.link, r.bytes);
            FUZZ_CHECK(k.size() == 1, "the client did not confirm the capture's session");
            c.keepalives.push_back(k[0]);
        }
        p.drain();
        c.client = p.client_io.history;
        c.server = p.server_io.history;
    }
    {
        // Unanswered for kHandshakeLifetime: the client starts over with a
        // new ephemeral key and a newer timestamp.
        fuzz::Peers p(options());
        p.tick(0ns);
        for (int i = 0; i < 5; ++i) {
            p.tick(1s);
            c.fresh_inits = p.take_sent(true);
        }
        FUZZ_CHECK(c.fresh_inits.size() == p.options.links, "no fresh initiations");
        FUZZ_CHECK(c.fresh_inits[0].bytes != c.inits[0].bytes, "the fresh initiation is the old one");
        p.drain();
        c.client.merge(p.client_io.history);
        c.server.merge(p.server_io.history);
    }
    {
        // The seeds mean something only if a fresh pair is the capture's
        // again: its client must take the captured response.
        fuzz::Peers p(options());
        start(p);
        const auto& r = c.responses[0];
        FUZZ_CHECK(p.give(true, r.link, r.bytes).size() == 1,
                   "a fresh pair refuses the captured response: the harness is not deterministic");
        p.drain();
    }
    return c;
}

const Capture& world() {
    static const Capture c = capture();
    return c;
}

std::vector<uint8_t> one(const fuzz::PoolIo::Sent& m, unsigned clock_exponent = 0, bool stranger = false,
                         std::optional<size_t> link = std::nullopt) {
    return fuzz::chunk(link.value_or(m.link), m.bytes, clock_exponent, stranger);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Capture& w = world();
    fuzz::Peers p(options());
    start(p);
    fuzz::run_datagrams(p, w.client, w.server, std::span<const uint8_t>(data, size));
    return 0;
}

std::vector<fuzz::Seed> fuzz::seeds() {
    const Capture& w = world();
    std::vector<Seed> out;
    auto add = [&](std::string name, std::vector<std::vector<uint8_t>> chunks) {
        out.push_back({std::move(name), join(chunks)});
    };
    const auto &i0 = w.inits[0], &i1 = w.inits[1];
    const auto &r0 = w.responses[0], &r1 = w.responses[1];
    const auto& k0 = w.keepalives[0];
    add("init-link0", {one(i0)});
    add("init-link1", {one(i1)});
    add("init-link0-from-stranger", {one(i0, 0, true)});  // answered, to the stranger
    add("init-link1-from-stranger", {one(i1, 0, true)});  // not an allowed peer
    add("init-on-wrong-link", {one(i0, 0, false, 1)});
    add("response-link0", {one(r0)});
    add("response-link1", {one(r1)});
    add("response-on-wrong-link", {one(r0, 0, false, 1)});
    // 2^13 ms later the client has started over: the old answer is useless.
    add("response-too-late", {one(r0, 14)});
    add("init-twice", {one(i0), one(i0)});  // the same answer again
    add("init-then-keepalive", {one(i0), one(k0)});
    add("init-keepalive-init", {one(i0), one(k0), one(i0)});  // a replay once confirmed: no answer
    add("fresh-init", {one(w.fresh_inits[0])});
    add("fresh-then-old-init", {one(w.fresh_inits[0]), one(i0)});  // older timestamp: no answer
    add("whole-handshake", {one(i0), one(r0), one(k0), one(i1), one(r1), one(w.keepalives[1])});
    return out;
}
