// SPDX-License-Identifier: BSD-2-Clause
// The data chain: every data packet names the one sent before it on the same
// link in the same counter space (as a distance back in the data sequence,
// wire::DataInner::chain), so that the receiver knows a packet lost on a
// link as soon as the next one sent on that link arrives, instead of holding
// everything behind the gap for the reorder wait (core/reorder.hpp).
//
// A link delivers its packets in the order they were sent: a packet the
// chain names that has not come when the one naming it does was lost. A link
// that does not keep the order (a path that reorders) shows it: a packet
// arrives whose number is below one that came before it on the same link and
// space. The receiver then stops drawing conclusions from that link for
// ChainIn::kDistrust, and gaps on it wait as before.
//
// ChainOut is the sender's half (one per link), ChainIn the receiver's (one
// per link). Copies resent after a link failed are not part of any chain:
// they carry 0 (no previous) and change nothing.
#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <optional>

#include "core/clock.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

class ChainOut {
public:
    // Data packet `seq` of space `space` goes out on this link (not a resent
    // copy): what its chain field says, 0 when the previous one is unknown
    // (the first in the space) or further back than the field holds.
    uint16_t next(uint8_t space, uint64_t seq);

private:
    std::array<uint64_t, wire::kCounterSpaces> last_{};
    std::bitset<wire::kCounterSpaces> has_;
};

class ChainIn {
public:
    // After a packet came out of order on the link, no conclusions from it
    // for this long: far longer than any reorder wait, so that a path that
    // reorders now and then is not taken for one that loses.
    static constexpr Duration kDistrust = std::chrono::seconds(10);

    // Data packet `seq` (the full data sequence, as the receiver's reorder
    // buffer extends it) of peer space `space` arrived on this link with
    // chain field `chain` (not a resent copy). Returns the data sequence of
    // the packet sent before it on the link that should have come before it
    // and has not: lost, unless it is on its way by another link as a
    // resent copy. nullopt when nothing is known lost.
    std::optional<uint64_t> received(uint8_t space, uint64_t seq, uint16_t chain, Time now);

    // Packets that came on the link after one sent later than them.
    uint64_t out_of_order() const { return out_of_order_; }
    bool trusted(Time now) const { return now >= distrust_until_; }

private:
    std::array<uint64_t, wire::kCounterSpaces> last_{};
    std::bitset<wire::kCounterSpaces> has_;
    Time distrust_until_{};
    uint64_t out_of_order_ = 0;
};

}  // namespace mlvpn::core
