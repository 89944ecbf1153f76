// SPDX-License-Identifier: BSD-2-Clause
// BufferPool: the fixed set of packet slots behind core::Io::acquire/release.
//
// One anonymous mapping of slot_count x slot_size bytes, cut into slots, each
// described by a core::Buffer. Nothing grows at run time: when every slot is
// out, acquire() returns nullptr and the caller drops or waits.
//
// A slot is either in the pool or out. The pool identifies a Buffer by its
// address in its own table, never by the fields a user can write (data,
// capacity, index), so a buggy handler cannot make it free a foreign pointer,
// free a slot twice or corrupt the free list: release() refuses such buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/buffer.hpp"
#include "core/result.hpp"

namespace mlvpn::uring {

class BufferPool {
public:
    // slot_size must exceed core::wire::kHeadroom; the whole region is limited
    // to kMaxBytes. The pages are faulted in at once (no page fault on the
    // data path), unless `populate` is false: for big buffers mostly unused,
    // whose memory should cost only once it is written.
    static constexpr size_t kMaxBytes = size_t{1} << 30;
    static Result<BufferPool> create(uint32_t slot_size, uint32_t slot_count, bool populate = true);

    BufferPool(BufferPool&& other) noexcept;
    BufferPool& operator=(BufferPool&& other) noexcept;
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;
    ~BufferPool();

    // A slot with offset = kHeadroom and length 0, or nullptr when all are out.
    core::Buffer* acquire();
    // Puts an out buffer back. false (and nothing changes) when `buffer` is
    // not one of this pool's buffers or is already in the pool.
    bool release(core::Buffer* buffer);

    // Whether `buffer` is one of this pool's, out or not. Reads only what
    // create() set, so any thread may ask.
    bool owns(const core::Buffer* buffer) const;
    // The slot number of `buffer` if it is one of ours and out, else -1.
    int64_t out_index(const core::Buffer* buffer) const;
    // Start of slot `index`, from the pool's own bookkeeping.
    std::byte* slot_data(uint32_t index) const { return base_ + size_t{index} * slot_size_; }
    core::Buffer* slot(uint32_t index) { return &buffers_[index]; }

    uint32_t slot_size() const { return slot_size_; }
    uint32_t slot_count() const { return static_cast<uint32_t>(buffers_.size()); }
    uint32_t available() const { return static_cast<uint32_t>(free_.size()); }

    // Forgets the mapping without unmapping it. For a ring that could not be
    // drained at teardown: the kernel may still write into a slot, so the
    // memory must stay mapped (and unused) until the process exits.
    void leak() { base_ = nullptr; }

private:
    BufferPool() = default;
    void unmap();

    std::byte* base_ = nullptr;
    size_t bytes_ = 0;
    uint32_t slot_size_ = 0;
    std::vector<core::Buffer> buffers_;
    std::vector<uint32_t> free_;  // a stack: recently used slots are warm in cache
    std::vector<bool> out_;
};

}  // namespace mlvpn::uring
