// SPDX-License-Identifier: BSD-2-Clause
#include "core/reorder_sizer.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace mlvpn::core {

size_t ReorderSizer::need(double rate, Duration wait, size_t floor, size_t ceiling) {
    const double packets = rate * std::chrono::duration<double>(wait).count() * kHeadroom;
    // Beyond the ceiling (or not a number: a rate from a clock gone wrong)
    // the ceiling it is; the comparison keeps the conversion defined.
    if (!(packets < static_cast<double>(ceiling))) return ceiling;
    const size_t rounded = std::bit_ceil(static_cast<size_t>(std::ceil(std::max(packets, 1.0))));
    return std::clamp(rounded, floor, ceiling);
}

size_t ReorderSizer::want(size_t capacity, Duration max_wait, Time now) {
    if (!started_ || now < window_start_) {
        started_ = true;
        window_start_ = now;
        window_received_ = received_;
    } else if (now - window_start_ >= kWindow) {
        const double secs = std::chrono::duration<double>(now - window_start_).count();
        rate_ = static_cast<double>(received_ - window_received_) / secs;
        window_start_ = now;
        window_received_ = received_;
    }
    // A ceiling lowered under the capacity (a reload, or a smaller limit)
    // applies at once; so does a floor above it.
    if (capacity > ceiling_) return ceiling_;
    const size_t wanted = need(rate_, max_wait, floor(), ceiling_);
    if (wanted > capacity) {
        shrink_since_.reset();
        return wanted;
    }
    if (wanted * 4 > capacity) {
        shrink_since_.reset();
        return capacity;
    }
    if (!shrink_since_) shrink_since_ = now;
    return now - *shrink_since_ >= kShrinkHold ? wanted : capacity;
}

}  // namespace mlvpn::core
