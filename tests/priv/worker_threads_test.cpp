// SPDX-License-Identifier: BSD-2-Clause
#include "priv/worker_threads.hpp"

#include <doctest/doctest.h>
#include <poll.h>
#include <sched.h>

#include <cstring>
#include <thread>
#include <vector>

#include "priv/setup.hpp"
#include "uring/buffer_pool.hpp"

using namespace mlvpn;
using namespace mlvpn::priv;

namespace {

// A loop that is only a pool: what ThreadIo and Mailbox ask of one.
class PoolLoop final : public uring::Loop {
public:
    PoolLoop() : pool_(std::move(*uring::BufferPool::create(256, 8))) {}
    Status run(uring::Handler&) override { return {}; }
    const char* name() const override { return "pool"; }
    const uring::LoopStats& stats() const override { return stats_; }
    Status set_link_fd(core::LinkIndex, int) override { return {}; }
    bool link_quiet(core::LinkIndex) const override { return true; }
    bool owns(const core::Buffer* b) const override { return pool_.owns(b); }
    uring::BufferPool& pool() { return pool_; }

private:
    uring::BufferPool pool_;
    uring::LoopStats stats_;
};

// The loop's Io: what reached it, and its pool.
class PoolIo final : public core::Io {
public:
    explicit PoolIo(PoolLoop& loop) : loop_(loop) {}
    core::Buffer* acquire() override { return loop_.pool().acquire(); }
    void release(core::Buffer* b) override {
        if (loop_.pool().release(b))
            ++released;
        else
            ++refused;
    }
    void send(core::LinkIndex link, core::Buffer* b, const core::Endpoint*) override {
        CHECK(loop_.owns(b));
        sent.emplace_back(link, std::string(reinterpret_cast<const char*>(b->data + b->offset), b->length));
        loop_.pool().release(b);
    }
    void write_tun(core::Buffer* b) override {
        CHECK(loop_.owns(b));
        written.emplace_back(reinterpret_cast<const char*>(b->data + b->offset), b->length);
        CHECK(b->offset == 20);
        loop_.pool().release(b);
    }

    int released = 0;
    int refused = 0;
    std::vector<std::pair<core::LinkIndex, std::string>> sent;
    std::vector<std::string> written;

private:
    PoolLoop& loop_;
};

core::Buffer* fill(core::Buffer* b, const char* text) {
    b->offset = 20;
    b->length = static_cast<uint32_t>(std::strlen(text));
    std::memcpy(b->data + b->offset, text, b->length);
    return b;
}

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

struct TwoThreads {
    PoolLoop loops[2];
    std::unique_ptr<Mailbox> boxes[2] = {std::move(*Mailbox::make()), std::move(*Mailbox::make())};
    std::vector<ThreadPeer> peers{{&loops[0], boxes[0].get()}, {&loops[1], boxes[1].get()}};
    PoolIo io0{loops[0]}, io1{loops[1]};
};

}  // namespace

TEST_CASE("ThreadIo passes its own buffers straight to its loop") {
    TwoThreads t;
    ThreadIo io(0, t.peers);
    io.bind(t.io0);
    io.send(3, fill(io.acquire(), "mine"), nullptr);
    io.write_tun(fill(io.acquire(), "also"));
    io.release(io.acquire());
    CHECK(t.io0.sent == std::vector<std::pair<core::LinkIndex, std::string>>{{3, "mine"}});
    CHECK(t.io0.written == std::vector<std::string>{"also"});
    CHECK(t.io0.released == 1);
    CHECK(io.stats().copied == 0);
    CHECK(t.loops[0].pool().available() == 8);
}

TEST_CASE("A foreign buffer is sent as a copy and goes back to its owner through its mailbox") {
    TwoThreads t;
    ThreadIo io1(1, t.peers);
    io1.bind(t.io1);
    // Thread 0 received these; thread 1 meets them (a reorder timeout).
    core::Buffer* a = fill(t.loops[0].pool().acquire(), "packet a");
    core::Buffer* b = fill(t.loops[0].pool().acquire(), "packet b");
    core::Buffer* c = t.loops[0].pool().acquire();
    io1.write_tun(a);
    io1.send(2, b, nullptr);
    io1.release(c);
    CHECK(t.io1.written == std::vector<std::string>{"packet a"});
    CHECK(t.io1.sent == std::vector<std::pair<core::LinkIndex, std::string>>{{2, "packet b"}});
    CHECK(io1.stats().copied == 2);
    CHECK(io1.stats().returned == 3);
    // Thread 1's copies went back to its pool (the fake loop sends at once);
    // thread 0's three are in its mailbox, not yet in its pool, and no
    // wake-up was spent on them.
    CHECK(t.loops[1].pool().available() == 8);
    CHECK(t.loops[0].pool().available() == 5);
    CHECK_FALSE(readable(t.boxes[0]->fd()));
    t.boxes[0]->drain(t.io0, false);
    CHECK(t.io0.released == 3);
    CHECK(t.io0.refused == 0);
    CHECK(t.loops[0].pool().available() == 8);
}

TEST_CASE("A foreign buffer with no own buffer to copy into is dropped, and still goes home") {
    TwoThreads t;
    ThreadIo io1(1, t.peers);
    io1.bind(t.io1);
    std::vector<core::Buffer*> taken;
    while (core::Buffer* b = t.loops[1].pool().acquire()) taken.push_back(b);
    io1.write_tun(fill(t.loops[0].pool().acquire(), "x"));
    CHECK(t.io1.written.empty());
    CHECK(io1.stats().no_buffer == 1);
    t.boxes[0]->drain(t.io0, false);
    CHECK(t.loops[0].pool().available() == 8);
}

TEST_CASE("A buffer no thread owns is counted and left alone") {
    TwoThreads t;
    ThreadIo io0(0, t.peers);
    io0.bind(t.io0);
    core::Buffer stray;
    io0.release(&stray);
    CHECK(io0.stats().unknown == 1);
    CHECK(t.io0.refused == 0);
}

TEST_CASE("Mailbox commands run in the order posted, once, and wake the owner") {
    auto box = std::move(*Mailbox::make());
    PoolLoop loop;
    PoolIo io(loop);
    std::vector<int> ran;
    CHECK_FALSE(readable(box->fd()));
    box->post([&] { ran.push_back(1); });
    box->post([&] { ran.push_back(2); });
    CHECK(readable(box->fd()));
    box->drain(io, true);
    CHECK(ran == std::vector<int>{1, 2});
    CHECK_FALSE(readable(box->fd()));
    box->drain(io, false);
    CHECK(ran.size() == 2);
    // Woken after the drain: signals again.
    box->wake();
    CHECK(readable(box->fd()));
}

TEST_CASE("Mailbox takes buffers back from many threads at once") {
    TwoThreads t;
    auto& pool = t.loops[0].pool();
    std::vector<core::Buffer*> out;
    while (core::Buffer* b = pool.acquire()) out.push_back(b);
    std::vector<std::thread> givers;
    for (size_t i = 0; i < out.size(); ++i) givers.emplace_back([&, i] { t.boxes[0]->give_back(out[i]); });
    for (auto& g : givers) g.join();
    t.boxes[0]->drain(t.io0, false);
    CHECK(pool.available() == 8);
}

TEST_CASE("WorkerThreads: threads wait for go(), and end() lets them out when they never started") {
    SUBCASE("go") {
        WorkerThreads threads(3);
        std::atomic<int> ran{0};
        for (uint32_t t = 1; t < 3; ++t)
            threads.start(t, [&](WorkerThreads::Slot& slot) {
                if (!slot.made({})) return;
                ++ran;
                slot.wait_end();
            });
        REQUIRE(threads.wait_made());
        CHECK(ran == 0);
        threads.go();
        threads.end();
        CHECK(ran == 2);
    }
    SUBCASE("a thread that cannot make its loop") {
        WorkerThreads threads(3);
        std::atomic<int> ran{0};
        threads.start(1, [&](WorkerThreads::Slot& slot) { slot.made(fail("no ring")); });
        threads.start(2, [&](WorkerThreads::Slot& slot) {
            if (slot.made({})) ++ran;
        });
        auto made = threads.wait_made();
        REQUIRE_FALSE(made);
        CHECK(made.error().message == "no ring");
        threads.end();
        CHECK(ran == 0);
    }
}

TEST_CASE("worker_threads: the configured number, or one per CPU the daemon may use") {
    core::Config c;
    c.workers = 3;
    CHECK(worker_threads(c) == 3);
    c.workers = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(worker_threads(c) == std::min<uint32_t>(static_cast<uint32_t>(CPU_COUNT(&set)), core::kMaxWorkerThreads));
    // Narrowed to one CPU (as systemd's CPUAffinity= would): one thread.
    std::thread([&] {
        cpu_set_t one;
        CPU_ZERO(&one);
        for (int i = 0; i < CPU_SETSIZE; ++i)
            if (CPU_ISSET(i, &set)) {
                CPU_SET(i, &one);
                break;
            }
        REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
        CHECK(worker_threads(c) == 1);
    }).join();
}

TEST_CASE("Mailbox: commands posted from other threads while the owner drains all run, in each poster's order") {
    auto box = std::move(*Mailbox::make());
    PoolLoop loop;
    PoolIo io(loop);
    constexpr int kPerPoster = 2000;
    std::vector<int> last(2, -1);
    bool ordered = true;
    int ran = 0;
    std::vector<std::thread> posters;
    for (int p = 0; p < 2; ++p)
        posters.emplace_back([&, p] {
            for (int i = 0; i < kPerPoster; ++i)
                box->post([&, p, i] {
                    ordered = ordered && i == last[p] + 1;
                    last[p] = i;
                    ++ran;
                });
        });
    // The owner sleeps until woken, as a loop does: a lost wake-up leaves
    // commands waiting (the poll below then times out with some not run).
    bool stuck = false;
    while (ran < 2 * kPerPoster) {
        pollfd pfd{box->fd(), POLLIN, 0};
        if (poll(&pfd, 1, 2000) != 1) {
            stuck = true;
            break;
        }
        box->drain(io, true);
    }
    for (auto& t : posters) t.join();
    CHECK_FALSE(stuck);
    CHECK(ran == 2 * kPerPoster);
    CHECK(ordered);
}
