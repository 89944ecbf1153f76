// SPDX-License-Identifier: BSD-2-Clause
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <utility>
#include <vector>

#include "core/wire.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/turn_batches.hpp"

using namespace mlvpn::core;
using namespace mlvpn::uring;

namespace {

// Records the calls in order and hands every buffer back.
struct Recorder : Handler {
    std::vector<std::string> calls;
    std::vector<Endpoint> sources;
    void on_tun(std::span<Buffer*> packets, Io& io) override {
        calls.push_back("tun " + std::to_string(packets.size()));
        for (Buffer* b : packets) {
            CHECK(b->offset == mlvpn::core::wire::kHeadroom);
            io.release(b);
        }
    }
    void on_datagrams(LinkIndex link, std::span<Datagram> datagrams, Io& io) override {
        calls.push_back("link " + std::to_string(link) + " " + std::to_string(datagrams.size()));
        for (Datagram& d : datagrams) {
            CHECK(d.buffer->offset == mlvpn::core::wire::kDatagramOffset);
            sources.push_back(d.from);
            io.release(d.buffer);
        }
    }
    void on_send_error(LinkIndex, int) override {}
    void on_tun_write_error(int) override {}
    Time on_timer(Io&) override { return mlvpn::core::kNever; }
    void on_readable(int fd, Io&) override { calls.push_back("fd " + std::to_string(fd)); }
    bool running() const override { return true; }
};

// A core::Io that puts buffers straight back in the pool.
struct PoolIo : Io {
    BufferPool& pool;
    explicit PoolIo(BufferPool& p) : pool(p) {}
    Buffer* acquire() override { return pool.acquire(); }
    void release(Buffer* b) override { CHECK(pool.release(b)); }
    void send(LinkIndex, Buffer* b, const Endpoint*) override { release(b); }
    void write_tun(Buffer* b) override { release(b); }
};

// The msghdr a recvmsg from 192.0.2.7:4000 into `name` would leave.
msghdr received_from(sockaddr_in& name, int flags = 0) {
    name = {};
    name.sin_family = AF_INET;
    name.sin_port = htons(4000);
    REQUIRE(inet_pton(AF_INET, "192.0.2.7", &name.sin_addr) == 1);
    msghdr h{};
    h.msg_name = &name;
    h.msg_namelen = sizeof(name);
    h.msg_flags = flags;
    return h;
}

BufferPool make_pool() {
    auto pool = BufferPool::create(512, 8);
    REQUIRE(pool);
    return std::move(*pool);
}

// Batches for 4 packets per fd, 3 links and 2 watch fds over an 8-slot pool,
// and what to deliver them to.
struct Turn {
    BufferPool pool = make_pool();
    LoopStats stats;
    TurnBatches batches{pool, stats, 4, 3, 2};
    Recorder handler;
    PoolIo io{pool};
    sockaddr_in name{};
};

}  // namespace

TEST_CASE("TurnBatches: delivers TUN packets, then each link's datagrams, then readable fds") {
    Turn t;
    t.batches.add_readable(9);
    t.batches.add_datagram(2, t.pool.acquire(), 10, received_from(t.name));
    t.batches.add_tun(t.pool.acquire(), 100);
    t.batches.add_datagram(0, t.pool.acquire(), 20, received_from(t.name));
    t.batches.add_tun(t.pool.acquire(), 60);
    CHECK(t.stats.tun_reads == 2);
    CHECK(t.stats.datagrams == 2);
    CHECK(t.pool.available() == 4);

    t.batches.deliver(t.handler, t.io);
    // Empty batches (link 1) are not passed on.
    CHECK(t.handler.calls == std::vector<std::string>{"tun 2", "link 0 1", "link 2 1", "fd 9"});
    REQUIRE(t.handler.sources.size() == 2);
    CHECK(t.handler.sources[0].to_string() == "192.0.2.7:4000");
    CHECK(t.pool.available() == 8);

    // Delivered batches are empty: the next turn starts from nothing.
    t.handler.calls.clear();
    t.batches.deliver(t.handler, t.io);
    CHECK(t.handler.calls.empty());
}

TEST_CASE("TurnBatches: a truncated datagram is dropped, never delivered") {
    Turn t;
    t.batches.add_datagram(0, t.pool.acquire(), 512, received_from(t.name, MSG_TRUNC));
    CHECK(t.stats.truncated == 1);
    CHECK(t.stats.datagrams == 0);
    CHECK(t.pool.available() == 8);  // back at once
    t.batches.deliver(t.handler, t.io);
    CHECK(t.handler.calls.empty());
}

TEST_CASE("TurnBatches: a source address too long for an Endpoint is left empty") {
    Turn t;
    msghdr h = received_from(t.name);
    h.msg_namelen = sizeof(Endpoint::addr) + 1;
    Buffer* b = t.pool.acquire();
    t.batches.add_datagram(0, b, 30, h);
    t.batches.deliver(t.handler, t.io);
    REQUIRE(t.handler.sources.size() == 1);
    CHECK(t.handler.sources[0].empty());
    CHECK(b->length == 30);
}

TEST_CASE("TurnBatches: drop gives every buffer back and forgets the readable fds") {
    Turn t;
    t.batches.add_tun(t.pool.acquire(), 40);
    t.batches.add_datagram(1, t.pool.acquire(), 40, received_from(t.name));
    t.batches.add_readable(5);
    CHECK(t.pool.available() == 6);
    t.batches.drop();
    CHECK(t.pool.available() == 8);
    t.batches.deliver(t.handler, t.io);
    CHECK(t.handler.calls.empty());
}
