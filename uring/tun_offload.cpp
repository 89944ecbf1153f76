// SPDX-License-Identifier: BSD-2-Clause
#include "uring/tun_offload.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/checksum_partial.hpp"
#include "uring/loop_common.hpp"

namespace mlvpn::uring {

using core::Buffer;
using core::VirtioNetHdr;

namespace {

constexpr uint32_t kHdr = static_cast<uint32_t>(VirtioNetHdr::kSize);

}  // namespace

// --- reading --------------------------------------------------------------

Result<TunReader> TunReader::create(BufferPool& pool, LoopStats& stats, TurnBatches& batches, uint32_t overflows) {
    auto big = BufferPool::create(kTunBigBuffer, std::max(overflows, 1u));
    if (!big) return fail("TUN read buffers: " + big.error().message);
    return TunReader(pool, stats, batches, std::move(*big));
}

TunReader::TunReader(BufferPool& pool, LoopStats& stats, TurnBatches& batches, BufferPool overflows)
    : pool_(pool),
      stats_(stats),
      batches_(batches),
      overflows_(std::move(overflows)),
      out_(core::kMaxGsoSegments),
      spans_(core::kMaxGsoSegments),
      sizes_(core::kMaxGsoSegments) {
    // TCP/IP headers take 40 to 120 bytes of every segment; 60 is typical
    // with timestamps. An estimate: it only paces reads (reads_for).
    const uint32_t payload = pool_.slot_size() - kHeadroom;
    segments_per_read_ = std::clamp<uint32_t>(65535 / (std::max(payload, 61u) - 60) + 1, 1,
                                              static_cast<uint32_t>(core::kMaxGsoSegments));
}

void TunReader::prepare(const Buffer& slot, const Buffer& overflow, iovec (&iov)[2]) const {
    // The header just before kHeadroom, so that the packet starts there.
    const uint32_t first = slot.capacity - kHeadroom + kHdr;
    iov[0] = {slot.data + kHeadroom - kHdr, first};
    // The rest at the same distance into the overflow buffer: copying the
    // slot's part in front of it makes a super-packet contiguous.
    iov[1] = {overflow.data + first, first < kTunReadMax ? kTunReadMax - first : 0};
}

uint32_t TunReader::reads_for(uint32_t available) const {
    if (available == 0) return 0;
    return std::max(1u, available / segments_per_read_);
}

void TunReader::complete(Buffer* slot, Buffer* overflow, uint32_t bytes) {
    const uint32_t first = pool_.slot_size() - kHeadroom + kHdr;
    std::byte* at = pool_.slot_data(slot->index) + kHeadroom - kHdr;
    if (bytes < kHdr || bytes > kTunReadMax) {
        ++stats_.tun_bad_reads;
        pool_.release(slot);
        return;
    }
    const VirtioNetHdr hdr = *VirtioNetHdr::decode({at, kHdr});
    if (bytes == kHdr) {  // a header and no packet: carries nothing
        pool_.release(slot);
        return;
    }
    if (bytes <= first && hdr.gso_type == VirtioNetHdr::kGsoNone) {
        // One packet, already where the handler wants it. A checksum the
        // kernel left to the device goes as it is, for the peer's kernel to
        // finish (core/checksum_partial.hpp), where its place is the usual
        // one; otherwise it is finished here, in place.
        const std::span<std::byte> packet{at + kHdr, bytes - kHdr};
        if (core::can_leave_partial(hdr, packet)) {
            batches_.add_tun(slot, bytes - kHdr, true);
            return;
        }
        if (!core::complete_checksum(hdr, packet)) {
            ++stats_.tun_bad_reads;
            pool_.release(slot);
            return;
        }
        batches_.add_tun(slot, bytes - kHdr);
        return;
    }
    // A super-packet (or a packet larger than a slot, which the split will
    // refuse): its start to the front of the overflow buffer, where the rest
    // already follows.
    std::byte* whole = overflow->data;
    std::memcpy(whole, at, std::min(bytes, first));
    if (hdr.gso_type != VirtioNetHdr::kGsoNone) ++stats_.tun_super_reads;
    split(hdr, {whole + kHdr, bytes - kHdr}, slot);
}

// Splits `packet` into `slot` and as many more slots as it needs. The pool
// is asked only for what the packet can need: a super-packet of n bytes has
// at most n / gso_size + 1 segments.
void TunReader::split(const VirtioNetHdr& hdr, std::span<const std::byte> packet, Buffer* slot) {
    size_t want = 1;
    if (hdr.gso_type != VirtioNetHdr::kGsoNone && hdr.gso_size > 0)
        want = std::min(core::kMaxGsoSegments, packet.size() / hdr.gso_size + 1);
    out_[0] = slot;
    size_t got = 1;
    while (got < want) {
        Buffer* b = pool_.acquire();
        if (b == nullptr) {
            ++stats_.pool_empty;
            break;
        }
        out_[got++] = b;
    }
    for (size_t i = 0; i < got; ++i)
        spans_[i] = {pool_.slot_data(out_[i]->index) + kHeadroom, pool_.slot_size() - kHeadroom};
    // Segments of a super-packet whose checksum the kernel left to the
    // device leave theirs partial too (gso_split checked where it is).
    const bool partial = hdr.gso_type != VirtioNetHdr::kGsoNone && (hdr.flags & VirtioNetHdr::kNeedsCsum) != 0;
    const auto n = core::gso_split(hdr, packet, std::span(spans_).first(got), sizes_, core::kMaxGsoSegments, partial);
    if (!n) {
        if (n.error() == core::GsoError::OutputTooSmall && got < want)
            ++stats_.tun_split_no_buffer;
        else
            ++stats_.tun_bad_reads;
        for (size_t i = 0; i < got; ++i) pool_.release(out_[i]);
        return;
    }
    for (size_t i = 0; i < *n; ++i) batches_.add_tun(out_[i], static_cast<uint32_t>(sizes_[i]), partial);
    for (size_t i = *n; i < got; ++i) pool_.release(out_[i]);
}

// --- writing --------------------------------------------------------------

Result<TunWriter> TunWriter::create(BufferPool& pool, LoopStats& stats, bool udp) {
    auto spares = BufferPool::create(kTunBigBuffer, kTunWriteSpares);
    if (!spares) return fail("TUN write buffers: " + spares.error().message);
    return TunWriter(pool, stats, std::move(*spares), udp);
}

TunWriter::TunWriter(BufferPool& pool, LoopStats& stats, BufferPool spares, bool udp)
    : pool_(pool), stats_(stats), spares_(std::move(spares)), gro_(core::GroOptions{.udp = udp}) {
    // Every queued packet holds a distinct slot: the pool bounds them all.
    pending_.reserve(pool_.slot_count());
    writes_.reserve(pool_.slot_count());
    absorbed_.reserve(pool_.slot_count());
    chunk_.reserve(core::GroOptions{}.max_batch);
    spare_chunk_.reserve(kTunWriteSpares);
}

int TunWriter::add(uint32_t index, const Buffer& buffer) {
    if (buffer.offset < kHdr) return EINVAL;
    // From the pool's own bookkeeping, the handler's offset and length.
    pending_.push_back(
        Buffer{pool_.slot_data(index), pool_.slot_size(), buffer.offset, buffer.length, index, buffer.checksum_partial});
    return 0;
}

std::span<const TunWriter::Write> TunWriter::coalesce() {
    writes_.clear();
    absorbed_.clear();
    const size_t max_batch = core::GroOptions{}.max_batch;
    for (size_t i = 0; i < pending_.size(); i += max_batch) {
        chunk_.clear();
        for (size_t j = i; j < std::min(pending_.size(), i + max_batch); ++j) chunk_.push_back(&pending_[j]);
        coalesce_chunk(chunk_);
    }
    pending_.clear();
    return writes_;
}

void TunWriter::coalesce_chunk(std::span<Buffer*> chunk) {
    // A spare per run that merges, and a run needs two packets.
    spare_chunk_.clear();
    while (spare_chunk_.size() < chunk.size() / 2) {
        Buffer* s = spares_.acquire();
        if (s == nullptr) break;
        spare_chunk_.push_back(s);
    }
    const core::GroStats before = gro_.stats();
    const auto r = gro_.coalesce(chunk, spare_chunk_);
    if (!r) {
        // Not reachable (add() checked the headroom, chunks fit the table),
        // but every packet must still go out, behind a zero header.
        for (Buffer* s : spare_chunk_) spares_.release(s);
        for (Buffer* b : chunk) {
            b->offset -= kHdr;
            b->length += kHdr;
            VirtioNetHdr{}.encode(b->bytes());
            writes_.push_back({b->data + b->offset, b->length, false, b->index});
        }
        return;
    }
    for (size_t i = 0; i < r->count; ++i) {
        const Buffer* b = chunk[i];
        const int64_t spare = spares_.out_index(b);
        writes_.push_back({b->data + b->offset, b->length, spare >= 0,
                           spare >= 0 ? static_cast<uint32_t>(spare) : b->index});
    }
    // Merged into another packet, or moved into a spare: queued slots alike.
    for (size_t i = r->count; i < chunk.size(); ++i) absorbed_.push_back(chunk[i]->index);
    for (size_t i = 0; i < r->spares_used; ++i) absorbed_.push_back(spare_chunk_[i]->index);
    for (size_t i = r->spares_used; i < spare_chunk_.size(); ++i) spares_.release(spare_chunk_[i]);
    stats_.tun_super_writes += gro_.stats().super_packets - before.super_packets;
    stats_.tun_merged += gro_.stats().merged - before.merged;
}

void TunWriter::done_spare(uint32_t index) {
    if (index < spares_.slot_count()) spares_.release(spares_.slot(index));
}

bool TunWriter::spare_out(uint32_t index) {
    return index < spares_.slot_count() && spares_.out_index(spares_.slot(index)) >= 0;
}

std::vector<uint32_t> TunWriter::clear() {
    std::vector<uint32_t> slots;
    for (const Buffer& b : pending_) slots.push_back(b.index);
    pending_.clear();
    return slots;
}

Status enable_tun_offload(std::optional<TunReader>& reader, std::optional<TunWriter>& writer, BufferPool& pool,
                          LoopStats& stats, TurnBatches& batches, uint32_t overflows, bool udp) {
    auto r = TunReader::create(pool, stats, batches, overflows);
    if (!r) return tl::unexpected(r.error());
    auto w = TunWriter::create(pool, stats, udp);
    if (!w) return tl::unexpected(w.error());
    reader.emplace(std::move(*r));
    writer.emplace(std::move(*w));
    return {};
}

}  // namespace mlvpn::uring
