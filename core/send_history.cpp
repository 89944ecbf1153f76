// SPDX-License-Identifier: BSD-2-Clause
#include "core/send_history.hpp"

#include <algorithm>
#include <cstring>

#include "core/clock.hpp"

namespace mlvpn::core {

void SendHistory::resize(uint32_t mtu, bool enabled) {
    mtu_ = mtu;
    head_ = 0;
    slots_ = enabled && mtu > 0 ? std::max(kMinSlots, kBudget / mtu) : 0;
    entries_ = slots_ > 0 ? std::make_unique<Entry[]>(slots_) : nullptr;
    // Not value-initialised: a slot's bytes are read only once written.
    bytes_ = slots_ > 0 ? std::make_unique_for_overwrite<std::byte[]>(slots_ * mtu_) : nullptr;
}

void SendHistory::record(uint64_t seq, uint8_t space, LinkIndex link, uint32_t ts,
                         std::span<const std::byte> packet, bool checksum_partial) {
    if (slots_ == 0) return;
    Entry& e = entries_[head_];
    if (packet.size() > mtu_) {
        e.valid = false;  // the slot's older packet is overwritten all the same: order is kept
    } else {
        e = Entry{seq, ts, static_cast<uint32_t>(packet.size()), link, space, checksum_partial, true};
        std::memcpy(&bytes_[head_ * mtu_], packet.data(), packet.size());
    }
    head_ = (head_ + 1) % slots_;
}

void SendHistory::take(LinkIndex link, uint32_t after_ts, uint32_t not_before_ts,
                       const std::function<void(uint64_t, uint8_t, std::span<const std::byte>, bool)>& fn) {
    for (size_t k = 0; k < slots_; ++k) {
        const size_t i = (head_ + k) % slots_;
        Entry& e = entries_[i];
        if (!e.valid || e.link != link || ms32_diff(e.ts, after_ts) <= 0 || ms32_diff(e.ts, not_before_ts) < 0) continue;
        e.valid = false;
        fn(e.seq, e.space, std::span<const std::byte>(&bytes_[i * mtu_], e.length), e.checksum_partial);
    }
}

}  // namespace mlvpn::core
