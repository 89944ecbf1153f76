// SPDX-License-Identifier: BSD-2-Clause
#include "core/liveness.hpp"

#include <algorithm>

namespace mlvpn::core {

void Liveness::sent(uint32_t ts, Time now) {
    last_sent_ts_ = ts;
    const Mark* newest = count_ > 0 ? &marks_[(head_ + kMarks - 1) % kMarks] : nullptr;
    if (newest == nullptr || now - newest->at >= kMarkSpacing) {
        marks_[head_] = Mark{ts, now};
        head_ = (head_ + 1) % kMarks;
        count_ = std::min(count_ + 1, kMarks);
    }
    if (!waiting_) {
        waiting_ = true;
        waiting_since_ = now;
    }
}

bool Liveness::acknowledged(uint32_t rx_ts) {
    if (has_rx_ts_ && ms32_diff(rx_ts, newest_rx_ts_) <= 0) return false;  // nothing new
    newest_rx_ts_ = rx_ts;
    has_rx_ts_ = true;

    if (waiting_) {
        if (ms32_diff(last_sent_ts_, rx_ts) <= 0) {
            waiting_ = false;  // everything sent is confirmed
        } else {
            // The oldest packet still unconfirmed is the first one sent after
            // rx_ts: the oldest mark after it (less than kMarkSpacing late),
            // or, when those sends left no mark, the time of rx_ts itself
            // counted from the newest mark (no later than the truth).
            const Mark& newest = marks_[(head_ + kMarks - 1) % kMarks];
            Time since = newest.at + std::chrono::milliseconds(std::max(0, ms32_diff(rx_ts, newest.ts)));
            for (size_t k = count_; k > 0; --k) {
                const Mark& m = marks_[(head_ + kMarks - k) % kMarks];
                if (ms32_diff(m.ts, rx_ts) > 0) {
                    since = m.at;
                    break;
                }
            }
            waiting_since_ = std::max(waiting_since_, since);
        }
    }
    if (probing_ && ms32_diff(rx_ts, probe_ts_) >= 0) {
        probing_ = false;
        return true;
    }
    return false;
}

std::optional<Time> Liveness::unconfirmed_since() const {
    if (!waiting_) return std::nullopt;
    return waiting_since_;
}

void Liveness::start_probing(uint32_t ts) {
    probing_ = true;
    probe_ts_ = ts;
    waiting_ = false;
}

void Liveness::reset() { *this = Liveness{}; }

}  // namespace mlvpn::core
