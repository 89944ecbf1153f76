// SPDX-License-Identifier: BSD-2-Clause
// The seam between the sans-IO protocol core and the I/O loop that drives it.
//
// core calls these to queue work; nothing happens until the loop submits the
// batch at the end of its turn (one io_uring_enter or one sendmmsg per link).
// Every Buffer handed to send()/write_tun()/release() changes owner: core must
// not touch it afterwards.
#pragma once

#include <cstdint>

#include "core/buffer.hpp"

namespace mlvpn::core {

using LinkIndex = uint32_t;

class Io {
public:
    virtual ~Io() = default;
    // A free buffer with offset = kHeadroom and length 0, or nullptr when the
    // pool is exhausted (the caller drops what it wanted to send and counts it).
    virtual Buffer* acquire() = 0;
    // Gives a buffer back without sending it.
    virtual void release(Buffer* buffer) = 0;
    // Queues buffer->bytes() as one datagram on `link`'s socket. `to` is the
    // destination; nullptr means the socket is connected. The loop copies *to.
    virtual void send(LinkIndex link, Buffer* buffer, const Endpoint* to) = 0;
    // Queues buffer->bytes() as one packet to the TUN/TAP device.
    virtual void write_tun(Buffer* buffer) = 0;
};

}  // namespace mlvpn::core
