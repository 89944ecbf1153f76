// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "uring/buffer_pool.hpp"
#include "uring/checked_io.hpp"

using namespace mlvpn::core;
using namespace mlvpn::uring;

namespace {

struct Errors : Handler {
    std::vector<std::pair<LinkIndex, int>> send_errors;
    std::vector<int> tun_write_errors;
    void on_tun(std::span<Buffer*>, Io&) override {}
    void on_datagrams(LinkIndex, std::span<Datagram>, Io&) override {}
    void on_send_error(LinkIndex link, int error) override { send_errors.emplace_back(link, error); }
    void on_tun_write_error(int error) override { tun_write_errors.push_back(error); }
    Time on_timer(Io&) override { return mlvpn::core::kNever; }
    void on_readable(int, Io&) override {}
    bool running() const override { return true; }
};

// A loop that queues by marking the slot taken, or fails with queue_error.
class FakeLoop final : private CheckedIo {
public:
    FakeLoop(size_t links, bool has_tun, Handler& handler)
        : CheckedIo(pool_, stats_, links, has_tun), pool_(std::move(*BufferPool::create(512, 4))) {
        handler_ = &handler;
    }
    Io& io() { return *this; }

    LoopStats stats_;
    BufferPool pool_;
    std::vector<bool> queued_ = std::vector<bool>(4, false);
    std::vector<uint32_t> sends, tun_writes;
    Endpoint last_to;
    int queue_error = 0;

private:
    bool taken(uint32_t index) const override { return queued_[index]; }
    int queue_send(LinkIndex, uint32_t index, const Buffer&, const Endpoint* to) override {
        if (queue_error != 0) return queue_error;
        queued_[index] = true;
        sends.push_back(index);
        last_to = to != nullptr ? *to : Endpoint{};
        return 0;
    }
    int queue_tun_write(uint32_t index, const Buffer&) override {
        if (queue_error != 0) return queue_error;
        queued_[index] = true;
        tun_writes.push_back(index);
        return 0;
    }
};

}  // namespace

TEST_CASE("CheckedIo: acquire counts an empty pool") {
    Errors h;
    FakeLoop loop(1, true, h);
    std::vector<Buffer*> all;
    while (Buffer* b = loop.io().acquire()) all.push_back(b);
    CHECK(all.size() == 4);
    CHECK(loop.stats_.pool_empty == 1);
    for (Buffer* b : all) loop.io().release(b);
    CHECK(loop.pool_.available() == 4);
    CHECK(loop.stats_.rejected == 0);
}

TEST_CASE("CheckedIo: good sends and TUN writes reach the loop with their slot") {
    Errors h;
    FakeLoop loop(2, true, h);
    Buffer* a = loop.io().acquire();
    Buffer* b = loop.io().acquire();
    a->length = 100;
    Endpoint to;
    to.len = sizeof(to.addr.in4);
    to.addr.in4.sin_family = AF_INET;
    loop.io().send(1, a, &to);
    loop.io().write_tun(b);
    CHECK(loop.sends == std::vector<uint32_t>{a->index});
    CHECK(loop.last_to == to);
    CHECK(loop.tun_writes == std::vector<uint32_t>{b->index});
    CHECK(loop.stats_.rejected == 0);
    CHECK(h.send_errors.empty());
    CHECK(h.tun_write_errors.empty());
}

TEST_CASE("CheckedIo: what is not the handler's is refused and left alone") {
    Errors h;
    FakeLoop loop(1, true, h);
    Buffer* b = loop.io().acquire();
    loop.io().send(0, b, nullptr);  // now the loop's
    loop.io().release(b);
    loop.io().send(0, b, nullptr);
    loop.io().write_tun(b);
    Buffer foreign;
    loop.io().release(&foreign);
    loop.io().send(0, &foreign, nullptr);
    Buffer* c = loop.io().acquire();
    loop.io().release(c);
    loop.io().release(c);  // twice
    CHECK(loop.stats_.rejected == 6);
    CHECK(loop.sends.size() == 1);
    CHECK(loop.tun_writes.empty());
    CHECK(loop.pool_.available() == 3);  // b stays with the loop
    CHECK(h.send_errors.empty());
}

TEST_CASE("CheckedIo: bad link, bounds or destination drop the buffer back into the pool") {
    Errors h;
    FakeLoop loop(2, true, h);
    loop.io().send(2, loop.io().acquire(), nullptr);  // no such link: not reported
    CHECK(h.send_errors.empty());

    Buffer* big = loop.io().acquire();
    big->length = 512;  // past the slot end at offset kHeadroom
    loop.io().send(1, big, nullptr);
    Buffer* wrap = loop.io().acquire();
    wrap->offset = UINT32_MAX;  // offset + length wraps in 32 bits
    wrap->length = 2;
    loop.io().write_tun(wrap);
    Endpoint to;
    to.len = sizeof(to.addr) + 1;
    loop.io().send(0, loop.io().acquire(), &to);

    CHECK(loop.stats_.rejected == 4);
    CHECK(loop.sends.empty());
    CHECK(loop.tun_writes.empty());
    CHECK(loop.pool_.available() == 4);
    CHECK(h.send_errors == std::vector<std::pair<LinkIndex, int>>{{1, EINVAL}, {0, EINVAL}});
    CHECK(h.tun_write_errors == std::vector<int>{EINVAL});
}

TEST_CASE("CheckedIo: no TUN device and a loop that cannot queue are reported, not rejected") {
    Errors h;
    FakeLoop loop(1, false, h);
    loop.io().write_tun(loop.io().acquire());
    loop.queue_error = EAGAIN;
    loop.io().send(0, loop.io().acquire(), nullptr);
    CHECK(loop.stats_.rejected == 0);
    CHECK(loop.pool_.available() == 4);
    CHECK(h.tun_write_errors == std::vector<int>{EBADF});
    CHECK(h.send_errors == std::vector<std::pair<LinkIndex, int>>{{0, EAGAIN}});
}
