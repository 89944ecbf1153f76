// SPDX-License-Identifier: BSD-2-Clause
// FdGroup: the worker's side of a descriptor group (priv/messages.hpp): the
// TUN device's queues, or a link's sockets, one per worker thread. The
// message that carries member 0 begins the group; the others must follow as
// the group's next members, each once, in order, each with its descriptor.
// Anything else is priv breaking the protocol, and the caller gives up.
#pragma once

#include <cstdint>
#include <vector>

#include "priv/fd.hpp"

namespace mlvpn::priv {

class FdGroup {
public:
    // `owner`'s group (a link index; 0 for the TUN device) of `size`
    // members, 1..msg::kMaxWorkers, member 0 `first` (which must be open).
    FdGroup(uint32_t owner, uint32_t size, Fd first);

    // Member `member` of `owner`'s group. false, and the group unchanged,
    // unless it is the next member of this group and `fd` is open.
    bool add(uint32_t owner, uint32_t member, Fd fd);

    // false when the group cannot be completed (a bad size, member 0
    // missing): every add() then fails.
    bool valid() const { return size_ != 0; }
    bool complete() const { return valid() && fds_.size() == size_; }
    uint32_t owner() const { return owner_; }
    // The members, by thread; only once complete() (empty otherwise).
    std::vector<Fd> take();

private:
    uint32_t owner_;
    uint32_t size_;
    std::vector<Fd> fds_;
};

}  // namespace mlvpn::priv
