// SPDX-License-Identifier: BSD-2-Clause
// What the worker's threads share besides the Tunnel, and how they hand each
// other what is not theirs (docs/fastpath.md, "Worker threads").
//
// Each thread runs its own loop (uring/loop.hpp): its own ring, buffer pool,
// TUN queue and socket of every link. They share one core::Tunnel, which a
// thread calls only while it holds `WorkerShared::tunnel`. A buffer belongs
// to the loop whose pool it came from, and only that loop may take it back;
// but a thread may meet another's buffer: the Tunnel hands out whatever its
// reorder buffers hold when a change of room (a new space in use, a reload)
// releases them, and those may have been received by another thread (each
// thread runs only its own spaces' reorder timers). ThreadIo, the Io a thread
// gives the Tunnel, makes this invisible to both: a foreign buffer to send or
// write is copied into one of the thread's own, and goes back to its owner
// through that thread's Mailbox, which also carries the commands one thread
// gives another's loop (a reload's new sockets) and wake-ups.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "core/buffer.hpp"
#include "core/io.hpp"
#include "core/log.hpp"
#include "core/result.hpp"
#include "core/tunnel.hpp"
#include "priv/fd.hpp"
#include "uring/loop.hpp"

namespace mlvpn::priv {

// A thread's inbox. Any thread may post; only the owner drains, in its loop
// (fd() is one of its watch_fds). Posting never blocks for long: a mutex held
// only to push or swap a vector, and one eventfd write when the box was empty.
class Mailbox {
public:
    using Command = std::function<void()>;

    static Result<std::unique_ptr<Mailbox>> make();
    explicit Mailbox(Fd event) : event_(std::move(event)) {}
    Mailbox(const Mailbox&) = delete;  // posted to by address
    Mailbox& operator=(const Mailbox&) = delete;

    int fd() const { return event_.get(); }
    // A buffer of the owner's loop, back from another thread. No wake-up:
    // the owner takes it at its next turn, and an owner that has nothing to
    // do needs no buffers.
    void give_back(core::Buffer* buffer);
    // Runs `command` in the owner's thread at its next turn, woken for it.
    void post(Command command);
    // Makes the owner run a turn soon (with nothing posted: its handler's
    // timers look at what changed).
    void wake();
    // Owner only: hands the returned buffers back to `io` (its loop's) and
    // runs the commands, in the order posted. Reads the eventfd when `woken`.
    void drain(core::Io& io, bool woken);

private:
    void signal();

    Fd event_;
    std::mutex mutex_;
    std::vector<core::Buffer*> returned_;
    std::vector<Command> commands_;
    std::atomic<bool> signalled_{false};
    // The owner's, swapped with the above under the mutex.
    std::vector<core::Buffer*> returned_out_;
    std::vector<Command> commands_out_;
};

// A worker thread as the others see it: whose buffers are whose, and where
// to send them back.
struct ThreadPeer {
    const uring::Loop* loop = nullptr;
    Mailbox* mailbox = nullptr;
};

// Counters of the buffers that crossed threads, for the status.
struct CrossStats {
    uint64_t copied = 0;     // foreign buffers sent or written as a copy
    uint64_t returned = 0;   // foreign buffers given back to their owner
    uint64_t no_buffer = 0;  // foreign buffers dropped: no own buffer to copy into
    uint64_t unknown = 0;    // buffers no thread owns (a bug): dropped
};

// The Io a thread gives the Tunnel: its loop's, with every foreign buffer
// copied or given back (see above). Used under the Tunnel's lock, by its
// thread only.
class ThreadIo final : public core::Io {
public:
    // `peers`: every thread's, including this one's at `self`.
    ThreadIo(uint32_t self, std::span<const ThreadPeer> peers) : self_(self), peers_(peers) {}

    // The loop's Io for this turn (uring::Handler gets it with each call).
    void bind(core::Io& inner) { inner_ = &inner; }

    core::Buffer* acquire() override { return inner_->acquire(); }
    void release(core::Buffer* buffer) override;
    void send(core::LinkIndex link, core::Buffer* buffer, const core::Endpoint* to) override;
    void write_tun(core::Buffer* buffer) override;

    const CrossStats& stats() const { return stats_; }

private:
    bool own(const core::Buffer* buffer) const { return peers_[self_].loop->owns(buffer); }
    // A copy of foreign `buffer` in one of ours (same offset and bytes), or
    // nullptr; either way `buffer` goes back to its owner.
    core::Buffer* adopt(core::Buffer* buffer);
    void give_back(core::Buffer* buffer);

    uint32_t self_;
    std::span<const ThreadPeer> peers_;
    core::Io* inner_ = nullptr;
    CrossStats stats_;
};

// What every thread of a worker reaches.
struct WorkerShared {
    // Held for every call into the Tunnel, and for what is marked below.
    // Recursive: a loop reports a send that fails at once (a link without a
    // socket) from inside the Tunnel's call, in the same thread, and the
    // handler's on_send_error takes the lock too.
    std::recursive_mutex tunnel;
    std::atomic<bool> running{true};
    // By thread; filled before any thread runs its loop, fixed after.
    std::vector<ThreadPeer> peers;
    // Under `tunnel`: each thread's loop counters and cross-thread counters,
    // as of its last turn (thread 0 reads them for the status).
    std::vector<uring::LoopStats> loop_stats;
    std::vector<CrossStats> cross_stats;

    // Every thread leaves its loop at its next turn (woken for it).
    void stop();
};

// A handler's packet or timer call into the Tunnel, for its scope: the lock
// held, the thread's ThreadIo bound to the loop's Io of this call, and
// sealing and sending left to `seals` (core/seal_queue.hpp), which the
// thread flushes once the scope has ended and the lock is free.
class TunnelCall {
public:
    TunnelCall(WorkerShared& shared, core::Tunnel& tunnel, ThreadIo& thread_io, core::Io& io, core::SealQueue& seals)
        : lock_(shared.tunnel), tunnel_(tunnel) {
        thread_io.bind(io);
        tunnel.set_seal_queue(&seals);
    }
    ~TunnelCall() { tunnel_.set_seal_queue(nullptr); }  // before the lock goes
    TunnelCall(const TunnelCall&) = delete;
    TunnelCall& operator=(const TunnelCall&) = delete;

private:
    std::lock_guard<std::recursive_mutex> lock_;
    core::Tunnel& tunnel_;
};

// A link's datagrams opened outside the lock (core/open_batch.hpp): planned
// in `batch` while the lock is held, then opened without it. The caller then
// hands them to Tunnel::on_datagrams with `batch`, under the lock again.
void open_unlocked(WorkerShared& shared, core::Tunnel& tunnel, core::OpenBatch& batch, core::LinkIndex link,
                   std::span<core::Datagram> datagrams);

// A link's previous sockets, held by each thread until its loop has no
// request left on them (uring::Loop::link_quiet): an io_uring request keeps
// the socket open, bound to its port, after its descriptor is closed, and a
// fresh socket on a configured port must find the port free. Checked at
// every turn (release_quiet(), from on_timer); the cancelled requests'
// completions end the turn that would otherwise sleep.
class RetiringSockets {
public:
    void hold(core::LinkIndex link, std::shared_ptr<void> old) {
        if (old) held_.push_back({link, std::move(old)});
    }
    void release_quiet(const uring::Loop& loop) {
        std::erase_if(held_, [&](const Held& h) { return loop.link_quiet(h.link); });
    }

private:
    struct Held {
        core::LinkIndex link;
        std::shared_ptr<void> old;
    };
    std::vector<Held> held_;
};

// The handler of threads 1..N-1: the packets of their TUN queue and of their
// socket of each link, and the Tunnel's timers, all under the lock. Thread 0
// (priv/worker.cpp) does the same and everything else: priv's channel,
// signals, control clients, reloads.
class ThreadHandler final : public uring::Handler {
public:
    // `index` is also the counter space the thread seals data in.
    ThreadHandler(uint32_t index, core::Tunnel& tunnel, WorkerShared& shared, uring::Loop& loop, Mailbox& mailbox,
                  core::Logger& log);

    // Run by this thread's loop (a command posted by thread 0): link `link`'s
    // socket is now `fd` (-1: none). A loop that refuses is logged. `old`
    // holds the link's previous sockets: it is let go once this loop has no
    // request left on them (Loop::link_quiet), so that they close only then.
    void install(core::LinkIndex link, int fd, std::shared_ptr<void> old = {});

    void on_tun(std::span<core::Buffer*> packets, core::Io& io) override;
    void on_datagrams(core::LinkIndex link, std::span<core::Datagram> datagrams, core::Io& io) override;
    void on_send_error(core::LinkIndex link, int error) override;
    void on_tun_write_error(int error) override;
    void on_gso_refused(core::LinkIndex link, int error) override;
    core::Time on_timer(core::Io& io) override;
    void on_readable(int fd, core::Io& io) override;
    bool running() const override { return shared_.running.load(std::memory_order_relaxed); }

private:
    // A TunnelCall that, on the way out and still under the lock, wakes
    // thread 0 if the Tunnel has news for it (link events, socket renewals).
    class Locked {
    public:
        Locked(ThreadHandler& h, core::Io& io) : h_(h), call_(h.shared_, h.tunnel_, h.io_, io, h.seals_) {}
        ~Locked() {
            if (h_.tunnel_.has_news()) h_.shared_.peers[0].mailbox->wake();
        }
        Locked(const Locked&) = delete;
        Locked& operator=(const Locked&) = delete;

    private:
        ThreadHandler& h_;
        TunnelCall call_;
    };

    uint32_t index_;
    core::Tunnel& tunnel_;
    WorkerShared& shared_;
    uring::Loop& loop_;
    Mailbox& mailbox_;
    core::Logger& log_;
    ThreadIo io_;
    core::SealQueue seals_;
    core::OpenBatch opens_;
    std::vector<bool> installed_;  // by link: this loop has a socket for it
    RetiringSockets retiring_;
};

// Threads 1..N-1 of a worker, started and ended in step with thread 0:
// each makes its loop and handler, reports, and waits for go() before its
// first packet; end() lets those that never started go, lets every thread
// free its loop once all are out of theirs, and joins them. Thread 0 calls
// end() once out of its own loop, whose end stops the others.
class WorkerThreads {
public:
    // What a thread's body sees of its start and end.
    class Slot {
    public:
        // The thread's loop is made (or not: `made` fails). true: go on and
        // run; false: return (told to end, or the loop failed).
        bool made(Status made);
        // After the thread's loop returned: waits until end() and until
        // every other thread is out of its loop too, so that this loop
        // outlives everyone's use of it (another may be giving it a buffer).
        void wait_end();
        ThreadHandler* handler = nullptr;  // set before made()

    private:
        friend class WorkerThreads;
        WorkerThreads* owner_ = nullptr;
    };

    explicit WorkerThreads(uint32_t workers);
    ~WorkerThreads() { end(); }
    WorkerThreads(const WorkerThreads&) = delete;
    WorkerThreads& operator=(const WorkerThreads&) = delete;

    // Starts thread t (1..workers-1) on `body`.
    void start(uint32_t t, std::function<void(Slot&)> body);
    // Once every started thread has reported: the first failure, if any.
    Status wait_made();
    // Their handlers, threads 1..N-1 in order (after wait_made() succeeded).
    std::vector<ThreadHandler*> handlers() const;
    void go();
    void end();

private:
    enum class Word { Pending, Go, End };

    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Slot> slots_;  // index t-1
    std::vector<std::thread> threads_;
    uint32_t reported_ = 0;
    size_t left_ = 0;  // threads out of their loops (or never in)
    std::optional<Error> error_;
    Word word_ = Word::Pending;
    bool ended_ = false;
};

}  // namespace mlvpn::priv
