// SPDX-License-Identifier: BSD-2-Clause
#include "core/replay.hpp"

namespace mlvpn::core {

bool ReplayWindow::fresh(uint64_t counter) const {
    if (!any_ || counter > highest_) return true;
    if (highest_ - counter >= kWindow) return false;
    const uint64_t block = (counter / 64) % kBlocks;
    return (bits_[block] & (uint64_t{1} << (counter % 64))) == 0;
}

bool ReplayWindow::accept(uint64_t counter) {
    if (!fresh(counter)) return false;
    if (!any_ || counter > highest_) {
        // Clear the blocks between the old top and the new one.
        const uint64_t old_block = any_ ? highest_ / 64 : 0;
        const uint64_t new_block = counter / 64;
        if (!any_ || new_block - old_block >= kBlocks) {
            bits_.fill(0);
        } else {
            for (uint64_t b = old_block + 1; b <= new_block; ++b) bits_[b % kBlocks] = 0;
        }
        highest_ = counter;
        any_ = true;
    }
    bits_[(counter / 64) % kBlocks] |= uint64_t{1} << (counter % 64);
    return true;
}

}  // namespace mlvpn::core
