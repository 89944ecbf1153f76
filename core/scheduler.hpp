// SPDX-License-Identifier: BSD-2-Clause
// Byte-weighted round robin over the usable links.
//
// Each link has a weight (its share of the bytes: bandwidth_upload when given)
// and a virtual clock that advances by bytes/weight when it carries a packet;
// the next packet goes to the usable link whose clock is lowest. Over any
// stretch of traffic, link i carries weight_i / sum(weights) of the bytes,
// whatever the packet sizes (mlvpn 2.3 counted packets, which starves links
// of big packets and floods links of small ones).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace mlvpn::core {

class Scheduler {
public:
    // `bandwidths` in bytes/s, 0 = not given. Links without a figure get the
    // mean of the given ones (all equal when none is given).
    explicit Scheduler(std::span<const uint64_t> bandwidths);

    // Picks the link for a packet of `bytes` among those with usable[i] true,
    // and charges it. nullopt when none is usable.
    std::optional<size_t> pick(std::span<const bool> usable, size_t bytes);

    double weight(size_t link) const { return weight_[link]; }
    size_t size() const { return weight_.size(); }

private:
    std::vector<double> weight_;
    std::vector<double> vtime_;
    std::vector<bool> was_usable_;
};

}  // namespace mlvpn::core
