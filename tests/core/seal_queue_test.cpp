// SPDX-License-Identifier: BSD-2-Clause
// SealQueue: sealing and sending after the Tunnel's lock, and a Tunnel that
// leaves them to one.
#include <doctest/doctest.h>
#include <sodium.h>

#include <cstring>
#include <vector>

#include "core/seal.hpp"
#include "core/seal_queue.hpp"
#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;

namespace {

// The header of the packets below.
wire::TransportHeader header(uint64_t counter) { return {wire::Type::Data, 0, 1, 0x01020304, counter}; }

// A transport packet with its header written, in a buffer of `io`, with a
// body of `tag` bytes.
Buffer* unsealed(FakeIo& io, uint64_t counter, uint8_t tag) {
    std::vector<std::byte> p(wire::kOverhead + 64, std::byte{tag});
    wire::encode(header(counter), std::span<std::byte, wire::kTransportHeaderSize>(p.data(), wire::kTransportHeaderSize));
    return io.make(p, 0);
}

bool body_is(std::span<const std::byte> p, uint8_t tag) {
    for (size_t i = wire::kTransportHeaderSize + wire::kTagSize; i < p.size(); ++i)
        if (p[i] != std::byte{tag}) return false;
    return true;
}

}  // namespace

TEST_CASE("seal queue: sealed at the flush under each packet's own key, sent in the order added") {
    FakeIo io;
    SealQueue q;
    // More keys than the queue has room for: the packets of the keys beyond
    // are sealed when added, and still leave in their place.
    const size_t n = SealQueue::kKeys + 4;
    std::vector<SecretKey> keys;
    for (size_t i = 0; i < n; ++i) {
        keys.emplace_back();
        randombytes_buf(keys.back().data(), keys.back().size());
    }
    std::vector<Buffer*> added;
    for (size_t round = 0; round < 2; ++round) {
        for (size_t i = 0; i < n; ++i) {
            Buffer* b = unsealed(io, round * n + i, static_cast<uint8_t>(i));
            added.push_back(b);
            q.add(keys[i], i + 1, static_cast<LinkIndex>(i), b, nullptr, header(round * n + i));
        }
    }
    CHECK(io.sent.empty());
    CHECK(q.size() == 2 * n);
    for (size_t k = 0; k < added.size(); ++k) {
        const size_t i = k % n;
        CAPTURE(k);
        // Keys with a slot wait; the others were sealed at once.
        CHECK(body_is(added[k]->bytes(), static_cast<uint8_t>(i)) == (i < SealQueue::kKeys));
    }
    q.flush(io);
    CHECK(q.empty());
    REQUIRE(io.sent.size() == 2 * n);
    for (size_t k = 0; k < io.sent.size(); ++k) {
        const size_t i = k % n;
        CAPTURE(k);
        CHECK(io.sent[k].link == i);
        auto bytes = io.sent[k].bytes;
        CHECK_FALSE(body_is(bytes, static_cast<uint8_t>(i)));  // encrypted
        REQUIRE(open(keys[i], header(k), bytes));
        CHECK(body_is(bytes, static_cast<uint8_t>(i)));
        CHECK(wire::decode_transport(bytes)->counter == k);
    }
    // The next flush starts with empty key slots.
    Buffer* b = unsealed(io, 99, 7);
    q.add(keys[n - 1], n, 0, b, nullptr, header(99));
    CHECK(body_is(b->bytes(), 7));  // a slot again
    q.flush(io);
    auto last = io.sent.back().bytes;
    CHECK(open(keys[n - 1], header(99), last));
}

TEST_CASE("seal queue: one session's packets of other links, types and flags, interleaved, all open") {
    // A slot keeps the subkey of the last header prefix only; each change of
    // link, type or flag must derive it afresh.
    FakeIo io;
    SealQueue q;
    SecretKey key;
    randombytes_buf(key.data(), key.size());
    struct Kind {
        wire::Type type;
        uint8_t flags;
        uint16_t link;
    };
    const Kind kinds[] = {{wire::Type::Data, 0, 1},
                          {wire::Type::Data, 0, 2},
                          {wire::Type::Control, 0, 1},
                          {wire::Type::Data, wire::kFlagResent, 1},
                          {wire::Type::Data, 0, 1}};
    uint64_t counter = 0;
    std::vector<wire::TransportHeader> headers;
    for (int round = 0; round < 3; ++round) {
        for (const Kind& k : kinds) {
            std::vector<std::byte> p(wire::kOverhead + 64, std::byte{9});
            const wire::TransportHeader h{k.type, k.flags, k.link, 0x01020304, counter++};
            headers.push_back(h);
            wire::encode(h, std::span<std::byte, wire::kTransportHeaderSize>(p.data(), wire::kTransportHeaderSize));
            q.add(key, 1, 0, io.make(p, 0), nullptr, h);
        }
    }
    q.flush(io);
    REQUIRE(io.sent.size() == 15);
    for (size_t i = 0; i < io.sent.size(); ++i) {
        auto bytes = io.sent[i].bytes;
        CHECK(open(key, headers[i], bytes));
        CHECK(body_is(bytes, 9));
        // Another link's nonce does not open it (the link id does not travel).
        if (headers[i].link_id == 1) {
            auto other = headers[i];
            other.link_id = 2;
            auto copy = io.sent[i].bytes;
            CHECK_FALSE(open(key, other, copy));
        }
    }
}

TEST_CASE("seal queue: a Tunnel that leaves sealing to it sends nothing until the flush; the peer opens all") {
    Pair p(2);
    REQUIRE(p.establish());
    SealQueue q;
    p.client_io.sent.clear();
    auto batch = packets(60, 400);
    std::vector<Buffer*> bufs;
    for (auto& x : batch) bufs.push_back(p.client_io.make(x, wire::kHeadroom));
    p.client->set_seal_queue(&q);
    p.client->on_tun_packets(bufs, p.client_io, 1);
    p.client->set_seal_queue(nullptr);
    CHECK(p.client_io.sent.empty());
    CHECK(q.size() == batch.size());
    // Counted already, as sent: the scheduler and the statistics do not wait.
    uint64_t tx = 0;
    for (LinkIndex i = 0; i < 2; ++i) tx += p.client->link(i).stats.tx_data;
    CHECK(tx == batch.size());
    q.flush(p.client_io);
    CHECK(p.client_io.sent.size() == batch.size());
    p.server_io.tun.clear();
    p.deliver();
    CHECK(p.server_io.tun == batch);
    // Without the queue, as before.
    p.send_from(true, batch, 1);
    CHECK(p.server_io.tun.size() == 2 * batch.size());
}
