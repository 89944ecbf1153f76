// SPDX-License-Identifier: BSD-2-Clause
// The TUN device's offloads, as both event loops use them when the device was
// opened with IFF_VNET_HDR (LoopConfig::tun_vnet_hdr, docs/fastpath.md).
//
// TunReader: every read brings a virtio_net_hdr and a packet of up to 64 KB,
// which it turns into MTU-sized packets in pool slots at kHeadroom, where the
// handler wants them. A read is laid out over two buffers (readv): a pool
// slot, so that an ordinary packet lands exactly where it would without the
// header and costs no copy, and a 64 KB "overflow" buffer for the rest of a
// super-packet, which is then split (core::gso_split) into fresh slots.
//
// TunWriter: what the handler writes in one turn is coalesced (core::Gro)
// before it goes to the device, every write with its header. Packets sit in
// MTU-sized slots without tailroom, so a run that merges moves into one of a
// few 64 KB spare buffers and grows there; unmerged packets are written from
// their slots behind a zero header.
//
// Both take only what the pool can give and count what they cannot do in
// LoopStats; nothing here is fatal. Internal to uring/.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/buffer.hpp"
#include "core/gro.hpp"
#include "core/gso.hpp"
#include "core/result.hpp"
#include "core/virtio_net.hpp"
#include "core/wire.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/loop.hpp"
#include "uring/turn_batches.hpp"

namespace mlvpn::uring {

// The largest read from a vnet_hdr TUN device: the header and a 64 KB packet.
inline constexpr uint32_t kTunReadMax = static_cast<uint32_t>(core::VirtioNetHdr::kSize) + 65535;
// Size of one overflow or spare buffer: kTunReadMax after a BufferPool
// slot's kHeadroom (spares are used from there), in whole cache lines.
inline constexpr uint32_t kTunBigBuffer = (static_cast<uint32_t>(core::wire::kHeadroom) + kTunReadMax + 63) / 64 * 64;
// GRO spares per writer: each holds one super-packet until its write is done.
inline constexpr uint32_t kTunWriteSpares = 16;

class TunReader {
public:
    // `overflows` big buffers (kTunBigBuffer each), so that many reads can be
    // in flight at once. `pool`, `stats` and `batches` are the loop's and must
    // outlive the reader.
    static Result<TunReader> create(BufferPool& pool, LoopStats& stats, TurnBatches& batches, uint32_t overflows);

    // An overflow buffer for one read, or nullptr when all are in use.
    core::Buffer* acquire_overflow() { return overflows_.acquire(); }
    void release_overflow(core::Buffer* overflow) { overflows_.release(overflow); }
    uint32_t overflows_available() const { return overflows_.available(); }

    // The two iovecs of a read into pool slot `slot` (the pool's own,
    // fresh from acquire) and `overflow`: the header and the start of the
    // packet go into the slot so that the packet starts at kHeadroom; what
    // does not fit, into the overflow buffer.
    void prepare(const core::Buffer& slot, const core::Buffer& overflow, iovec (&iov)[2]) const;

    // A read prepared so returned `bytes` (> 0). Takes `slot`: its packets go
    // to the batches, or the slot back to the pool. `overflow` stays the
    // caller's to release. Counts in stats: tun_super_reads, tun_bad_reads,
    // tun_split_no_buffer (and pool_empty), and through the batches
    // tun_reads (one per packet).
    void complete(core::Buffer* slot, core::Buffer* overflow, uint32_t bytes);

    // Reads a pool of `available` free slots may take without running dry
    // when each read is a full super-packet (at least 1 while any is free).
    uint32_t reads_for(uint32_t available) const;

    // For a ring that could not be drained: keep the overflow memory mapped.
    void leak() { overflows_.leak(); }

private:
    TunReader(BufferPool& pool, LoopStats& stats, TurnBatches& batches, BufferPool overflows);
    void split(const core::VirtioNetHdr& hdr, std::span<const std::byte> packet, core::Buffer* slot);

    BufferPool& pool_;
    LoopStats& stats_;
    TurnBatches& batches_;
    BufferPool overflows_;
    uint32_t segments_per_read_;  // of a 64 KB super-packet at the slots' size, for reads_for()
    std::vector<core::Buffer*> out_;  // kMaxGsoSegments each, allocated once
    std::vector<std::span<std::byte>> spans_;
    std::vector<size_t> sizes_;
};

class TunWriter {
public:
    // One write to make: `length` bytes at `data`, the header included. It
    // comes from pool slot `index`, or from spare `index` when `spare`.
    struct Write {
        const std::byte* data = nullptr;
        uint32_t length = 0;
        bool spare = false;
        uint32_t index = 0;
    };

    // `udp`: the device took USO, so UDP runs merge too. `pool` and `stats`
    // are the loop's and must outlive the writer.
    static Result<TunWriter> create(BufferPool& pool, LoopStats& stats, bool udp);

    // Queues pool slot `index`, whose packet is buffer's [offset, offset +
    // length) (checked to lie within the slot). 0, or EINVAL when there are
    // fewer than 10 bytes before the packet for its header: the caller then
    // frees the slot. The slot is the caller's to hold until coalesce().
    int add(uint32_t index, const core::Buffer& buffer);
    bool empty() const { return pending_.empty(); }
    size_t pending() const { return pending_.size(); }

    // Coalesces what was queued, in order, and empties the queue. Returns the
    // writes to make, valid until the next call; absorbed() then lists the
    // pool slots whose packets went into a write of another slot or a spare:
    // the caller frees those at once, and each written slot or spare once
    // its write is done (a spare with done_spare()). Counted in stats:
    // tun_super_writes, tun_merged.
    std::span<const Write> coalesce();
    std::span<const uint32_t> absorbed() const { return absorbed_; }
    // Spare `index`'s write is done (or was never made).
    void done_spare(uint32_t index);
    // Whether spare `index` is out with a write (a completion's check).
    bool spare_out(uint32_t index);
    uint32_t spares_out() const { return spares_.slot_count() - spares_.available(); }

    // Forgets what was queued and returns the slots (for a turn that ends in
    // a fatal error): the caller frees them.
    std::vector<uint32_t> clear();
    // For a ring that could not be drained: keep the spares mapped.
    void leak() { spares_.leak(); }

private:
    TunWriter(BufferPool& pool, LoopStats& stats, BufferPool spares, bool udp);
    void coalesce_chunk(std::span<core::Buffer*> chunk);

    BufferPool& pool_;
    LoopStats& stats_;
    BufferPool spares_;
    core::Gro gro_;
    std::vector<core::Buffer> pending_;  // copies: what the handler left in the slot's Buffer may change
    std::vector<core::Buffer*> chunk_;
    std::vector<core::Buffer*> spare_chunk_;
    std::vector<Write> writes_;
    std::vector<uint32_t> absorbed_;
};

// Creates both for a loop: `overflows` is how many reads the loop may have
// in flight, `udp` whether the device took USO (UDP runs are coalesced too).
// On failure neither is set.
Status enable_tun_offload(std::optional<TunReader>& reader, std::optional<TunWriter>& writer, BufferPool& pool,
                          LoopStats& stats, TurnBatches& batches, uint32_t overflows, bool udp);

}  // namespace mlvpn::uring
