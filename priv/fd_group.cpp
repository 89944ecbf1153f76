// SPDX-License-Identifier: BSD-2-Clause
#include "priv/fd_group.hpp"

#include <utility>

#include "priv/messages.hpp"

namespace mlvpn::priv {

FdGroup::FdGroup(uint32_t owner, uint32_t size, Fd first) : owner_(owner), size_(size) {
    // A group that cannot be completed never is: add() refuses every member.
    if (size_ < 1 || size_ > msg::kMaxWorkers || !first) {
        size_ = 0;
        return;
    }
    fds_.push_back(std::move(first));
}

bool FdGroup::add(uint32_t owner, uint32_t member, Fd fd) {
    if (!valid() || complete() || owner != owner_ || member != fds_.size() || !fd) return false;
    fds_.push_back(std::move(fd));
    return true;
}

std::vector<Fd> FdGroup::take() {
    if (!complete()) return {};
    return std::move(fds_);
}

}  // namespace mlvpn::priv
