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
#include <memory>

#include "core/wire.hpp"

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
    // Whether anything was accepted.
    bool any() const { return any_; }

private:
    std::array<uint64_t, kBlocks> bits_{};
    uint64_t highest_ = 0;
    bool any_ = false;
};

// The replay windows of one session's receive direction: one per counter
// space the peer seals in (wire::counter_space), each over the numbers of
// that space. Spaces are independent senders, each counting from 0, so one
// window over whole counters would take every space but the highest for
// packets too old.
//
// Space 0's window is always there; the others are made on the first
// authentic packet of their space, so a session costs one window per space
// the peer really uses, and never more than `spaces`.
class ReplaySpaces {
public:
    // `spaces`: 1 for a session that did not negotiate spaces (only space 0
    // is valid), up to wire::kCounterSpaces.
    explicit ReplaySpaces(unsigned spaces = 1);

    // How many spaces the peer may use; a counter whose space is not below
    // this is malformed (check it before fresh()).
    unsigned spaces() const { return spaces_; }
    bool in_range(uint64_t counter) const { return wire::counter_space(counter) < spaces_; }
    // The whole counter of `wire_counter` (its space and the number's low
    // wire::kWireNumberBits bits, as decoded): the number nearest the
    // highest accepted in its space (0 before any). in_range() must hold.
    uint64_t extend(uint64_t wire_counter) const;
    // As ReplayWindow, in the counter's space; in_range() must hold. fresh()
    // never makes a window: an unauthenticated packet must cost no memory.
    bool fresh(uint64_t counter) const;
    bool accept(uint64_t counter);
    // Windows in use (space 0's counts once it has accepted anything).
    unsigned windows() const;

private:
    // The window of `space`: nullptr beyond spaces_ or before its first
    // authentic packet.
    const ReplayWindow* window(uint8_t space) const;

    unsigned spaces_;
    ReplayWindow first_;  // space 0: the only one of a single-space peer
    std::array<std::unique_ptr<ReplayWindow>, wire::kCounterSpaces - 1> others_;  // spaces 1..
};

}  // namespace mlvpn::core
