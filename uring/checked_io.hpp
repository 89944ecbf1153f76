// SPDX-License-Identifier: BSD-2-Clause
// CheckedIo: the core::Io both event loops give their Handler, with every
// buffer the handler hands back checked before the loop acts on it.
//
// A handler may hand back only what it owns: a buffer of the loop's pool that
// is out of the pool and not already handed back (queued, or lent to the
// kernel). send() also wants an existing link, bytes within the slot and a
// destination that fits core::Endpoint; write_tun() wants bytes within the
// slot and a TUN device. Whatever fails a check is counted in
// LoopStats::rejected and dropped, never reused: a buffer that is the
// handler's goes back to the pool, anything else is left alone; a send or TUN
// write refused for its bytes or its destination is also reported to the
// handler as EINVAL. So a buggy handler costs packets, never a slot.
//
// The loop supplies what differs: which slots it holds (taken()) and how it
// queues what passed (queue_send(), queue_tun_write()).
//
// Internal to uring/: a loop derives from it privately and passes itself as
// the handler's core::Io.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/buffer.hpp"
#include "core/io.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/loop.hpp"

namespace mlvpn::uring {

class CheckedIo : public core::Io {
public:
    CheckedIo(const CheckedIo&) = delete;
    CheckedIo& operator=(const CheckedIo&) = delete;

    // core::Io. acquire() counts LoopStats::pool_empty when the pool is out.
    core::Buffer* acquire() final;
    void release(core::Buffer* buffer) final;
    void send(core::LinkIndex link, core::Buffer* buffer, const core::Endpoint* to) final;
    void write_tun(core::Buffer* buffer) final;

protected:
    // `pool` and `stats` are the loop's and must outlive this; they are only
    // bound here, so a loop may pass members it has yet to construct. `links`
    // is the number of links, `has_tun` whether there is a TUN device.
    CheckedIo(BufferPool& pool, LoopStats& stats, size_t links, bool has_tun);
    ~CheckedIo() override = default;

    // Whether slot `index`, out of the pool, is the loop's: queued for output
    // or lent to the kernel. Such a buffer is not the handler's to hand back.
    virtual bool taken(uint32_t index) const = 0;

    // Queues a send that passed the checks: `buffer` is slot `index`, link
    // exists, to is nullptr (connected socket) or fits. Returns 0, or an errno
    // when it cannot be queued: the buffer then goes back to the pool and the
    // handler hears of the errno through on_send_error.
    virtual int queue_send(core::LinkIndex link, uint32_t index, const core::Buffer& buffer,
                           const core::Endpoint* to) = 0;
    // Likewise for a TUN write (there is a TUN device); on_tun_write_error.
    virtual int queue_tun_write(uint32_t index, const core::Buffer& buffer) = 0;

    // Tell the handler, while run() has one, of a send or TUN write that
    // failed: for errors the kernel reports after queueing.
    void send_failed(core::LinkIndex link, int error);
    void tun_write_failed(int error);

    Handler* handler_ = nullptr;  // set by the loop's run() while it runs

private:
    int64_t handler_slot(core::Buffer* buffer);

    BufferPool& buffers_;
    LoopStats& counters_;
    const size_t link_count_;
    const bool has_tun_;
};

}  // namespace mlvpn::uring
