// SPDX-License-Identifier: BSD-2-Clause
// TurnBatches: one loop turn's input, gathered while the loop reaps
// completions (io_uring) or readiness (epoll) and handed to the Handler in
// one go: the TUN packets, then each link's datagrams, then the readable
// watch fds.
//
// Internal to uring/, shared by both loops so that what reaches the handler,
// and in which order, cannot differ between them.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/buffer.hpp"
#include "core/io.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/loop.hpp"

namespace mlvpn::uring {

class TurnBatches {
public:
    // Room for `batch` datagrams from each of `links` links, `tun_packets`
    // packets from the TUN device (0: `batch`; more when reads are split
    // into segments), and each of `watch_fds` once, reserved up front: a loop
    // that takes no more per turn never allocates on the data path. `pool`
    // takes back the buffers the batches drop, `stats` counts what they take
    // and refuse; both must outlive the batches.
    TurnBatches(BufferPool& pool, LoopStats& stats, uint32_t batch, size_t links, size_t watch_fds,
                size_t tun_packets = 0);

    TurnBatches(const TurnBatches&) = delete;
    TurnBatches& operator=(const TurnBatches&) = delete;

    // Takes `buffer`, a pool slot the TUN device wrote `length` bytes into at
    // kHeadroom. Counted in stats.tun_reads.
    void add_tun(core::Buffer* buffer, uint32_t length, bool checksum_partial = false);

    // Takes `buffer`, a pool slot a recvmsg on `link` (< the links given at
    // construction) wrote `length` bytes into at kDatagramOffset, with `header` the
    // msghdr of that recvmsg: its msg_flags and msg_namelen as the kernel set
    // them, its msg_name the source address. A truncated datagram (MSG_TRUNC:
    // larger than the slot) is never passed on: its buffer goes back to the
    // pool, counted in stats.truncated; the others in stats.datagrams. An
    // address longer than core::Endpoint holds is left empty.
    void add_datagram(core::LinkIndex link, core::Buffer* buffer, uint32_t length, const msghdr& header);

    // Notes that watch fd `fd` is readable (or hung up).
    void add_readable(int fd) { readable_.push_back(fd); }

    // Hands the batches to `handler` (on_tun, on_datagrams per link with
    // datagrams, on_readable per fd, in that order; empty batches are not
    // passed), with `io` as the handler's core::Io, and empties them. The
    // buffers become the handler's.
    void deliver(Handler& handler, core::Io& io);

    // Gives every buffer still in the batches back to the pool and empties
    // them: for a turn that ends in a fatal error, and for teardown.
    void drop();

private:
    BufferPool& pool_;
    LoopStats& stats_;
    std::vector<core::Buffer*> tun_;
    std::vector<std::vector<core::Datagram>> links_;  // index = core::LinkIndex
    std::vector<int> readable_;
};

}  // namespace mlvpn::uring
