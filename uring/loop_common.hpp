// SPDX-License-Identifier: BSD-2-Clause
// What the io_uring loop and the epoll loop decide the same way: which
// configurations they accept and which read errors end the loop.
//
// Internal to uring/: the loops' public face is uring/loop.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "core/io.hpp"
#include "core/result.hpp"
#include "core/wire.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/loop.hpp"

namespace mlvpn::uring {

// Where a TUN packet starts in its slot, as a slot-sized integer.
inline constexpr uint32_t kHeadroom = static_cast<uint32_t>(core::wire::kHeadroom);
inline constexpr uint32_t kDatagramOffset = static_cast<uint32_t>(core::wire::kDatagramOffset);
// The largest LoopConfig::batch either loop accepts.
inline constexpr uint32_t kMaxBatch = 1024;

// Checks what both loops need of a LoopConfig before they touch a
// descriptor: batch in 1..kMaxBatch, a socket (>= 0) for every link, no
// negative watch fd. tun_fd may be -1 (no device); slot_size and slot_count
// are BufferPool::create's to judge.
Status check_config(const LoopConfig& config);

// Finishes the partial transport checksum of the packet in pool slot `index`
// (its offset and length in `buffer`) in place, for a TUN device without
// offloads (core/checksum_partial.hpp). A layout it does not know is left as
// it is: the kernel drops such a packet for its checksum.
void finish_partial_checksum(BufferPool& pool, uint32_t index, const core::Buffer& buffer);

// Whether a failed read or receive with `error` (a positive errno) means the
// descriptor itself is unusable, so that reading it again would fail the same
// way forever. false for the transient ones, which cost one packet at most.
bool is_fatal_read_error(int error);

// The loop's fatal error for a failed read (`link` empty: the TUN device) or
// receive on `link`, or nullopt when `error` is transient (see
// is_fatal_read_error) and the caller should count it and read again.
// `loop` prefixes the message: "io_uring", "epoll loop".
std::optional<Error> fatal_read_error(std::string_view loop, std::optional<core::LinkIndex> link,
                                      int error);

// Calls f() when it goes out of scope: what run() must do on every way out
// (forget the handler, bring the gauges up to date).
template <class F>
class OnExit {
public:
    explicit OnExit(F f) : f_(std::move(f)) {}
    OnExit(const OnExit&) = delete;
    OnExit& operator=(const OnExit&) = delete;
    ~OnExit() { f_(); }

private:
    F f_;
};

}  // namespace mlvpn::uring
