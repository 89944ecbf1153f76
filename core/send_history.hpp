// SPDX-License-Identifier: BSD-2-Clause
// SendHistory: the data packets sent lately, kept in clear so that those a
// failing link swallowed can be sent again on another one.
//
// Sealing happens in place, so once a packet is on its way its plaintext is
// gone; the history keeps a copy of each one (its data sequence and the
// counter space that sequence is of, the link it went on, its timestamp, its
// bytes) in a ring of fixed slots. The newest
// packets overwrite the oldest: what the ring holds is the last
// `slots` packets, which at the rates a resend can help with spans more
// than the time a failure takes to show (Tunnel decides when, and what).
// Memory is slots * (mtu + a few bytes), allocated once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "core/io.hpp"

namespace mlvpn::core {

class SendHistory {
public:
    // How many bytes of packets the ring holds at most (its slots are mtu
    // bytes each), and never fewer than kMinSlots slots.
    static constexpr size_t kBudget = size_t{4} << 20;
    static constexpr size_t kMinSlots = 256;

    // An empty history (records nothing) until resize().
    SendHistory() = default;
    // Drops what it holds; sized for packets of up to `mtu` bytes, or
    // nothing at all when `enabled` is false.
    void resize(uint32_t mtu, bool enabled);

    bool enabled() const { return slots_ > 0; }
    size_t slots() const { return slots_; }

    // Packet `seq` of counter space `space`'s data sequence, `packet.size()`
    // <= mtu bytes, went out on `link` with timestamp `ts` (ms32), its
    // transport checksum partial or not (Buffer::checksum_partial). Longer
    // packets are not kept.
    void record(uint64_t seq, uint8_t space, LinkIndex link, uint32_t ts, std::span<const std::byte> packet,
                bool checksum_partial = false);

    // Calls `fn(seq, space, bytes, checksum_partial)` for each packet kept that went out on `link`
    // with a timestamp after `after_ts` and not before `not_before_ts`
    // (wrapping milliseconds), oldest first, and forgets each one (a packet
    // is taken back at most once).
    void take(LinkIndex link, uint32_t after_ts, uint32_t not_before_ts,
              const std::function<void(uint64_t, uint8_t, std::span<const std::byte>, bool)>& fn);

private:
    struct Entry {
        uint64_t seq = 0;
        uint32_t ts = 0;
        uint32_t length = 0;
        LinkIndex link = 0;
        uint8_t space = 0;
        bool checksum_partial = false;
        bool valid = false;
    };
    std::unique_ptr<Entry[]> entries_;
    std::unique_ptr<std::byte[]> bytes_;  // slots_ * mtu_
    size_t slots_ = 0;
    uint32_t mtu_ = 0;
    size_t head_ = 0;  // the next slot written: the oldest entry
};

}  // namespace mlvpn::core
