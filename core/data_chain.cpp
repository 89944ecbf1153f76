// SPDX-License-Identifier: BSD-2-Clause
#include "core/data_chain.hpp"

#include <limits>

namespace mlvpn::core {

namespace {
// Further apart than this, two numbers of one space belong to different runs
// of the sender (it restarted, and started at random): no conclusion.
constexpr uint64_t kSameRun = uint64_t{1} << 20;
}  // namespace

uint16_t ChainOut::next(uint8_t space, uint64_t seq) {
    if (space >= wire::kCounterSpaces) return 0;
    uint16_t chain = 0;
    if (has_[space] && seq > last_[space] && seq - last_[space] <= std::numeric_limits<uint16_t>::max()) {
        chain = static_cast<uint16_t>(seq - last_[space]);
    }
    last_[space] = seq;
    has_[space] = true;
    return chain;
}

std::optional<uint64_t> ChainIn::received(uint8_t space, uint64_t seq, uint16_t chain, Time now) {
    if (space >= wire::kCounterSpaces) return std::nullopt;
    const bool had = has_[space];
    const uint64_t last = last_[space];
    if (had && seq <= last && last - seq < kSameRun) {
        // Sent before one that came earlier on this link: the path reorders.
        ++out_of_order_;
        distrust_until_ = now + kDistrust;
        return std::nullopt;
    }
    last_[space] = seq;
    has_[space] = true;
    if (chain == 0 || chain > seq || !trusted(now)) return std::nullopt;
    const uint64_t previous = seq - chain;
    // The one before it on the link came (or, from another run, says
    // nothing): nothing lost in between.
    if (had && (previous <= last || previous - last >= kSameRun)) return std::nullopt;
    return previous;
}

}  // namespace mlvpn::core
