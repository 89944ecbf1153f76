// SPDX-License-Identifier: BSD-2-Clause
// A sliding replay window over 64-bit counters (RFC 6479 style: a ring of
// 64-bit blocks, so sliding forward clears whole blocks, never bit by bit).
//
// Use: reject early with fresh() before spending a MAC on a packet, then
// accept() only after the tag verified — an unauthenticated packet must never
// move the window.
#pragma once

#include <array>
#include <cstdint>

namespace mlvpn::core {

class ReplayWindow {
public:
    // Counters more than kSize - 64 behind the highest seen are refused, which
    // leaves room for links whose delays differ by thousands of packets.
    static constexpr uint64_t kBlocks = 128;
    static constexpr uint64_t kSize = kBlocks * 64;  // 8192 bits
    static constexpr uint64_t kWindow = kSize - 64;  // usable depth

    // true if `counter` is not known to be a replay or too old.
    bool fresh(uint64_t counter) const;
    // Marks `counter` seen; false (and no change) if it was a replay or too old.
    bool accept(uint64_t counter);
    // The highest counter accepted so far (0 before the first).
    uint64_t highest() const { return highest_; }

private:
    std::array<uint64_t, kBlocks> bits_{};
    uint64_t highest_ = 0;
    bool any_ = false;
};

}  // namespace mlvpn::core
