// SPDX-License-Identifier: BSD-2-Clause
#include "core/replay.hpp"

#include <algorithm>

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

ReplaySpaces::ReplaySpaces(unsigned spaces) : spaces_(spaces < 1 ? 1 : std::min(spaces, wire::kCounterSpaces)) {}

const ReplayWindow* ReplaySpaces::window(uint8_t space) const {
    if (space >= spaces_) return nullptr;
    return space == 0 ? &first_ : others_[space - 1].get();
}

bool ReplaySpaces::fresh(uint64_t counter) const {
    const uint8_t space = wire::counter_space(counter);
    if (space >= spaces_) return false;
    // A space never seen: anything in it is new.
    const ReplayWindow* w = window(space);
    return w == nullptr || w->fresh(wire::counter_number(counter));
}

uint64_t ReplaySpaces::extend(uint64_t wire_counter) const {
    const uint8_t space = wire::counter_space(wire_counter);
    const ReplayWindow* w = window(space);
    const uint64_t reference = w != nullptr && w->any() ? w->highest() : 0;
    return wire::counter_make(space, wire::extend_number(wire::counter_number(wire_counter), reference));
}

bool ReplaySpaces::accept(uint64_t counter) {
    const uint8_t space = wire::counter_space(counter);
    if (space >= spaces_) return false;
    if (space == 0) return first_.accept(wire::counter_number(counter));
    // Made here, after the tag verified: at most spaces_ - 1 of them, each
    // once per session (about 1 KiB).
    auto& w = others_[space - 1];
    if (!w) w = std::make_unique<ReplayWindow>();
    return w->accept(wire::counter_number(counter));
}

unsigned ReplaySpaces::windows() const {
    unsigned n = first_.any() ? 1 : 0;
    for (const auto& w : others_) n += w ? 1 : 0;
    return n;
}

}  // namespace mlvpn::core
