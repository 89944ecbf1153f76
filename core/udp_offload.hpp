// SPDX-License-Identifier: BSD-2-Clause
// UDP segmentation offload on the link sockets, the arithmetic only
// (docs/fastpath.md, "The link side"): which queued datagrams one send may
// carry as a UDP_SEGMENT ("GSO") run, and how a UDP_GRO receive falls apart
// into the datagrams it coalesced. Sans-IO: the event loops do the sendmsg,
// the recvmsg and the copying.
#pragma once

#include <cstddef>
#include <cstdint>

#include <tl/expected.hpp>

namespace mlvpn::core {

// What the kernel accepts in one UDP_SEGMENT send. 64 segments: the limit of
// Linux before 6.9 (UDP_MAX_SEGMENTS, 128 since). 65507 bytes: the largest
// UDP payload of an IPv4 datagram without options (65535 - 20 - 8), which
// the kernel checks against the whole run before it cuts it; IPv6 allows 20
// more, not worth a second limit.
inline constexpr uint32_t kMaxUdpSegments = 64;
inline constexpr uint32_t kMaxUdpRunBytes = 65507;

// A run of datagrams that one send carries: every datagram but the last has
// exactly `segment` bytes, the last at most that many. The kernel cuts the
// run back into exactly these datagrams, every `segment` bytes.
//
// Built front to back: start with an empty run, and for each datagram of the
// queue (same link, same destination: the caller's check) ask fits(); if it
// does, add() it, otherwise the run is complete and the datagram starts the
// next one. A run of one datagram is sent as a plain datagram.
class UdpRun {
public:
    // Whether a datagram of `length` bytes may join: the run is empty, or it
    // has room (segments and bytes), the datagram is not empty, is no longer
    // than the segment size, and no shorter datagram ended the run already.
    bool fits(uint32_t length) const {
        if (count_ == 0) return true;
        return !closed_ && length > 0 && length <= segment_ && count_ < kMaxUdpSegments &&
               bytes_ + length <= kMaxUdpRunBytes;
    }
    // Adds a datagram that fits().
    void add(uint32_t length) {
        if (count_ == 0) {
            segment_ = length;
            // A datagram that alone is at the limit, or empty, takes no company.
            closed_ = length == 0 || length >= kMaxUdpRunBytes;
        } else if (length < segment_) {
            closed_ = true;
        }
        ++count_;
        bytes_ += length;
    }

    uint32_t count() const { return count_; }      // datagrams
    uint32_t segment() const { return segment_; }  // the UDP_SEGMENT value when count() > 1
    uint32_t bytes() const { return bytes_; }      // the send's payload

private:
    uint32_t count_ = 0;
    uint32_t segment_ = 0;
    uint32_t bytes_ = 0;
    bool closed_ = false;
};

enum class UdpGroError {
    NoSegmentSize,    // more than one datagram's worth of bytes and no UDP_GRO size
    SegmentTooLarge,  // a segment would not fit a buffer (larger than max_datagram)
    TooManySegments,  // more segments than max_segments
};
const char* to_string(UdpGroError e);

// The number of datagrams in a receive of `bytes` bytes whose UDP_GRO
// control message said `segment` (0: there was none, so one datagram): datagram
// i is bytes [i * segment, min((i + 1) * segment, bytes)). `max_datagram` is
// the largest datagram the caller can hold (without GRO larger ones are
// truncated, so none may come through GRO either); `max_segments` the most it
// will split one receive into. An empty receive is one empty datagram.
tl::expected<uint32_t, UdpGroError> udp_gro_count(uint32_t bytes, uint32_t segment, uint32_t max_datagram,
                                                  uint32_t max_segments);

}  // namespace mlvpn::core
