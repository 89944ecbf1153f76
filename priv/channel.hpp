// SPDX-License-Identifier: BSD-2-Clause
// Channel: one end of the priv <-> worker SOCK_SEQPACKET socketpair. Sends and
// receives whole messages, with at most one file descriptor (SCM_RIGHTS).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "priv/fd.hpp"
#include "priv/messages.hpp"

namespace mlvpn::priv {

class Channel {
public:
    // A connected pair (SOCK_SEQPACKET | SOCK_CLOEXEC).
    static Result<std::pair<Channel, Channel>> pair();
    explicit Channel(Fd fd) : fd_(std::move(fd)) {}

    int fd() const { return fd_.get(); }
    // Gives up the descriptor (e.g. to move it to a fixed number).
    Fd take() { return std::move(fd_); }

    // Sends one message, with `pass` attached when valid. Blocks unless
    // `dont_wait`; EAGAIN then comes back as an error.
    Status send(std::span<const std::byte> message, int pass = -1, bool dont_wait = false);
    template <class M>
    Status send(const M& m, int pass = -1, bool dont_wait = false) {
        return send(msg::bytes_of(m), pass, dont_wait);
    }

    struct Received {
        std::vector<std::byte> bytes;  // empty = the other end closed (or `again`)
        Fd fd;                         // attached descriptor, if any
        bool again = false;            // dont_wait and nothing was there
    };
    // Receives one message. Fails on truncation (a message larger than the
    // largest struct), on more than one descriptor, or on a socket error.
    Result<Received> receive(bool dont_wait = false);

private:
    Fd fd_;
};

}  // namespace mlvpn::priv
