// SPDX-License-Identifier: BSD-2-Clause
// UDP segmentation offload on the link sockets, as both event loops use it
// when LoopConfig::udp_offload is set (docs/fastpath.md, "The link side").
//
// Sending (UDP_SEGMENT): a run of equal-size datagrams (core::UdpRun) goes
// out as one sendmsg whose iovec has one entry per datagram, each in its own
// pool slot. The kernel copies a send's payload out of the iovec into its
// own buffers anyway and cuts it every `segment` bytes, whatever the iovec's
// boundaries, so the datagrams need not be contiguous: no copy on our side
// and no extra buffers (udp_send_msg below). The helpers here build that
// msghdr and say which errors mean "no GSO here".
//
// Receiving (UDP_GRO, set by [priv] on the socket): one receive may bring up
// to 64 KB of datagrams the kernel coalesced, with the segment size in a
// UDP_GRO control message. LinkReader lays a receive over a pool slot (so an
// ordinary datagram lands at kDatagramOffset of its slot, as without GRO,
// and costs no copy) and a 64 KB "overflow" buffer for the rest, then copies
// the second and later datagrams of a coalesced receive into fresh slots,
// one each, at the same offset, where the handler wants them.
//
// Internal to uring/.
#pragma once

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include "core/buffer.hpp"
#include "core/io.hpp"
#include "core/result.hpp"
#include "core/udp_offload.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/loop.hpp"
#include "uring/turn_batches.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace mlvpn::uring {

// The largest UDP payload one receive can bring (a coalesced one included).
inline constexpr uint32_t kUdpReceiveMax = 65535;
// The most datagrams one coalesced receive is split into: the kernel's GRO
// stops at 64 (UDP_GRO_CNT_MAX); a local sender's GSO packet delivered whole
// over loopback may have 128 (UDP_MAX_SEGMENTS on 6.9+).
inline constexpr uint32_t kMaxGroSegments = 128;
// What receives are paced for: the most datagrams the kernel's GRO
// coalesces into one receive (UDP_GRO_CNT_MAX).
inline constexpr uint32_t kPacedGroSegments = 64;

// Room for one UDP_SEGMENT (a uint16_t) or UDP_GRO (an int) control message.
struct UdpControl {
    alignas(cmsghdr) std::byte bytes[CMSG_SPACE(sizeof(int))];
};

// Points `msg` (its name and iovec already set) at `control`, holding a
// UDP_SEGMENT control message for `segment`.
void set_udp_segment(msghdr& msg, UdpControl& control, uint16_t segment);

// The segment size of a UDP_GRO control message in what recvmsg returned in
// `msg`: 0 when there is none (an ordinary datagram), -1 when the control
// data is malformed or was truncated (MSG_CTRUNC).
int64_t udp_gro_segment(const msghdr& msg);

// Whether a UDP_SEGMENT send that failed with `error` says the socket cannot
// do GSO, so that the same datagrams sent one by one would go: EIO (the
// device has no checksum offload, or IPsec is in the way), EINVAL (the
// segment plus headers exceed the route's MTU, a kernel without
// UDP_SEGMENT), ENOPROTOOPT, EOPNOTSUPP.
bool gso_refused(int error);

class LinkReader {
public:
    // `overflows` buffers of 64 KB, so that many receives can be in flight
    // at once (anonymous memory: a page costs only once a coalesced receive
    // has written to it). `pool`, `stats` and `batches` are the loop's and
    // must outlive the reader.
    static Result<LinkReader> create(BufferPool& pool, LoopStats& stats, TurnBatches& batches, uint32_t overflows);

    core::Buffer* acquire_overflow() { return overflows_.acquire(); }
    void release_overflow(core::Buffer* overflow) { overflows_.release(overflow); }
    uint32_t overflows_available() const { return overflows_.available(); }
    uint32_t overflow_count() const { return overflows_.slot_count(); }

    // Sets up `msg` for a receive into pool slot `slot` (the pool's own,
    // fresh from acquire) and `overflow`: the slot from kDatagramOffset on,
    // then the rest of 64 KB at the same distance into the overflow buffer; the source
    // address in `name`, the control data in `control`.
    void prepare(const core::Buffer& slot, const core::Buffer& overflow, msghdr& msg, iovec (&iov)[2],
                 core::Endpoint& name, UdpControl& control) const;

    // A receive on `link` prepared so returned `bytes` (>= 0), with `msg` as
    // the kernel left it. Takes `slot`: its datagrams go to the batches (the
    // first stays in `slot`), or the slot back to the pool. `overflow` stays
    // the caller's to release. Counts in stats: gro_receives, gro_segments,
    // gro_dropped, gro_no_buffer, truncated (a datagram larger than a slot),
    // and through the batches datagrams (one per datagram).
    void complete(core::LinkIndex link, core::Buffer* slot, core::Buffer* overflow, uint32_t bytes,
                  const msghdr& msg);

    // Receives a pool of `available` free slots may take without running
    // dry when each brings as many datagrams as GRO coalesces (kPacedGroSegments;
    // at least 1 while any slot is free).
    uint32_t receives_for(uint32_t available) const;

    // For a ring that could not be drained: keep the overflow memory mapped.
    void leak() { overflows_.leak(); }

private:
    LinkReader(BufferPool& pool, LoopStats& stats, TurnBatches& batches, BufferPool overflows);
    // What a receive puts in its slot: from kDatagramOffset to the end.
    uint32_t slot_room() const;

    BufferPool& pool_;
    LoopStats& stats_;
    TurnBatches& batches_;
    BufferPool overflows_;
    uint32_t segments_per_receive_;  // slots a receive may need, for receives_for()
};

}  // namespace mlvpn::uring
