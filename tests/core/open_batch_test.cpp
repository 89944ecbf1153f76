// SPDX-License-Identifier: BSD-2-Clause
// OpenBatch: received packets opened outside the Tunnel's lock, between
// Tunnel::plan_open() and Tunnel::on_datagrams(..., &batch).
#include <doctest/doctest.h>
#include <sodium.h>

#include <vector>

#include "core/open_batch.hpp"
#include "core/seal.hpp"
#include "tests/core/fake_io.hpp"

using namespace mlvpn::test;

namespace {

// What the client sent on `link`, as datagrams in the server's buffers.
std::vector<Datagram> arrivals(Pair& p, LinkIndex link) {
    std::vector<Datagram> out;
    for (const Sent& m : p.client_io.sent)
        if (m.link == link) out.push_back(Datagram{p.server_io.make(m.bytes, 0), p.client_addr[link]});
    return out;
}

// The client's packets of `batch`, sealed on both links and handed over.
std::vector<Datagram> sent_on(Pair& p, LinkIndex link, const std::vector<std::vector<std::byte>>& batch) {
    p.client_io.sent.clear();
    std::vector<Buffer*> bufs;
    for (const auto& x : batch) bufs.push_back(p.client_io.make(x, wire::kHeadroom));
    p.client->on_tun_packets(bufs, p.client_io);
    auto d = arrivals(p, link);
    p.client_io.sent.clear();
    return d;
}

}  // namespace

TEST_CASE("open batch: planned packets, opened outside, are delivered as without the batch") {
    Pair p(1);
    REQUIRE(p.establish());
    const auto batch = packets(40, 300);
    auto datagrams = sent_on(p, 0, batch);
    REQUIRE(datagrams.size() == batch.size());
    OpenBatch opens;
    p.server->plan_open(0, datagrams, opens);
    CHECK(opens.planned() == batch.size());
    for (size_t i = 0; i < datagrams.size(); ++i) CHECK(opens.outcome(i) == OpenBatch::Outcome::planned);
    opens.open(datagrams);
    for (size_t i = 0; i < datagrams.size(); ++i) CHECK(opens.outcome(i) == OpenBatch::Outcome::opened);
    p.server_io.tun.clear();
    p.server->on_datagrams(0, datagrams, p.server_io, &opens);
    CHECK(p.server_io.tun == batch);
    CHECK(p.server->link(0).stats.drop_auth == 0);
    CHECK(p.server_io.free_buffers() == p.server_io.total_buffers());  // every buffer back
}

TEST_CASE("open batch: a forged packet fails outside and is counted; the rest go through") {
    Pair p(1);
    REQUIRE(p.establish());
    const auto batch = packets(5, 200);
    auto datagrams = sent_on(p, 0, batch);
    REQUIRE(datagrams.size() == 5);
    auto bytes = datagrams[2].buffer->bytes();
    bytes[bytes.size() - 1] ^= std::byte{1};
    OpenBatch opens;
    p.server->plan_open(0, datagrams, opens);
    opens.open(datagrams);
    CHECK(opens.outcome(2) == OpenBatch::Outcome::failed);
    p.server_io.tun.clear();
    const uint64_t before = p.server->link(0).stats.drop_auth;
    p.server->on_datagrams(0, datagrams, p.server_io, &opens);
    CHECK(p.server->link(0).stats.drop_auth == before + 1);
    p.tick(std::chrono::seconds(1));  // in case the others wait for the gap
    REQUIRE(p.server_io.tun.size() == 4);
    CHECK(p.server_io.tun[1] == batch[1]);
    CHECK(p.server_io.tun[2] == batch[3]);
}

TEST_CASE("open batch: two copies of a packet both open outside; only one is taken") {
    Pair p(1);
    REQUIRE(p.establish());
    const auto batch = packets(3, 200);
    auto datagrams = sent_on(p, 0, batch);
    REQUIRE(datagrams.size() == 3);
    auto copy = datagrams[1].buffer->bytes();
    datagrams.insert(datagrams.begin() + 2,
                     Datagram{p.server_io.make(std::vector<std::byte>(copy.begin(), copy.end()), 0), p.client_addr[0]});
    OpenBatch opens;
    p.server->plan_open(0, datagrams, opens);
    CHECK(opens.planned() == 4);  // both fresh when planned
    opens.open(datagrams);
    p.server_io.tun.clear();
    const uint64_t before = p.server->link(0).stats.drop_replay;
    p.server->on_datagrams(0, datagrams, p.server_io, &opens);
    CHECK(p.server->link(0).stats.drop_replay == before + 1);
    CHECK(p.server_io.tun == batch);
}

TEST_CASE("open batch: what plan_open leaves out is still judged, and opened, by on_datagrams") {
    Pair p(1);
    REQUIRE(p.establish());
    const auto batch = packets(4, 200);
    auto datagrams = sent_on(p, 0, batch);
    REQUIRE(datagrams.size() == 4);
    // Cut short: not planned, then malformed.
    datagrams[2].buffer->length = 10;
    // An unknown receiver index: not planned, then no session.
    wire::store_be32(&datagrams[3].buffer->bytes()[4], 0xdeadbeef);
    OpenBatch opens;
    p.server->plan_open(0, datagrams, opens);
    CHECK(opens.outcome(0) == OpenBatch::Outcome::planned);
    CHECK(opens.outcome(2) == OpenBatch::Outcome::unplanned);
    CHECK(opens.outcome(3) == OpenBatch::Outcome::unplanned);
    // Planned but not opened by the caller: on_datagrams opens them itself.
    p.server_io.tun.clear();
    const auto& st = p.server->link(0).stats;
    const uint64_t no_session = st.drop_no_session;
    const uint64_t malformed = st.drop_malformed;
    p.server->on_datagrams(0, datagrams, p.server_io, &opens);
    CHECK(st.drop_no_session == no_session + 1);
    CHECK(st.drop_malformed == malformed + 1);
    CHECK(p.server_io.tun == std::vector<std::vector<std::byte>>(batch.begin(), batch.begin() + 2));
}

TEST_CASE("open batch: the session gone between the plan and the taking: nothing delivered") {
    Pair p(1);
    REQUIRE(p.establish());
    auto datagrams = sent_on(p, 0, packets(3, 200));
    OpenBatch opens;
    p.server->plan_open(0, datagrams, opens);
    opens.open(datagrams);
    p.server->reset_link(0);  // as another thread might, in between
    p.server_io.tun.clear();
    const uint64_t before = p.server->link(0).stats.drop_no_session;
    p.server->on_datagrams(0, datagrams, p.server_io, &opens);
    CHECK(p.server_io.tun.empty());
    CHECK(p.server->link(0).stats.drop_no_session == before + 3);
}

TEST_CASE("open batch: keys beyond its room leave their packets unplanned; begin() starts afresh") {
    FakeIo io;
    OpenBatch opens;
    const size_t n = OpenBatch::kKeys + 2;
    std::vector<SecretKey> keys(n);
    std::vector<Datagram> datagrams;
    std::vector<wire::TransportHeader> headers;
    opens.begin(n);
    for (size_t i = 0; i < n; ++i) {
        randombytes_buf(keys[i].data(), keys[i].size());
        std::vector<std::byte> pkt(wire::kOverhead + 32, std::byte{static_cast<uint8_t>(i)});
        const wire::TransportHeader h{wire::Type::Data, 0, 1, 7, i};
        headers.push_back(h);
        wire::encode(h, std::span<std::byte, wire::kTransportHeaderSize>(pkt.data(), wire::kTransportHeaderSize));
        seal(keys[i], h, pkt);
        datagrams.push_back(Datagram{io.make(pkt, 0), {}});
        opens.plan(i, keys[i], 100 + i, h);
    }
    CHECK(opens.planned() == OpenBatch::kKeys);
    opens.open(datagrams);
    for (size_t i = 0; i < n; ++i) {
        CAPTURE(i);
        if (i < OpenBatch::kKeys) {
            CHECK(opens.outcome(i) == OpenBatch::Outcome::opened);
            CHECK(opens.serial(i) == 100 + i);
            CHECK(opens.counter(i) == i);
            CHECK(datagrams[i].buffer->bytes()[wire::kTransportHeaderSize + wire::kTagSize] ==
                  std::byte{static_cast<uint8_t>(i)});
        } else {
            CHECK(opens.outcome(i) == OpenBatch::Outcome::unplanned);
            CHECK(open(keys[i], headers[i], datagrams[i].buffer->bytes()));  // untouched
        }
    }
    opens.begin(2);
    CHECK(opens.planned() == 0);
    CHECK(opens.outcome(0) == OpenBatch::Outcome::unplanned);
    CHECK(opens.outcome(5) == OpenBatch::Outcome::unplanned);
}
