// SPDX-License-Identifier: BSD-2-Clause
#include "uring/buffer_pool.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "core/wire.hpp"

namespace mlvpn::uring {

Result<BufferPool> BufferPool::create(uint32_t slot_size, uint32_t slot_count, bool populate) {
    if (slot_size <= core::wire::kHeadroom)
        return fail(fmt::format("buffer pool: slot size {} must exceed the {}-byte headroom", slot_size,
                                core::wire::kHeadroom));
    if (slot_count == 0) return fail("buffer pool: slot count must be at least 1");
    const size_t bytes = size_t{slot_size} * slot_count;
    if (bytes > kMaxBytes)
        return fail(fmt::format("buffer pool: {} slots of {} bytes exceed {} MiB", slot_count, slot_size,
                                kMaxBytes >> 20));

    // MAP_POPULATE: fault the pages in now rather than on the data path.
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0);
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) return fail(fmt::format("buffer pool: mmap {} bytes: {}", bytes, strerror(errno)));

    BufferPool pool;
    pool.base_ = static_cast<std::byte*>(p);
    pool.bytes_ = bytes;
    pool.slot_size_ = slot_size;
    pool.buffers_.resize(slot_count);
    pool.out_.assign(slot_count, false);
    pool.free_.reserve(slot_count);
    // Pushed in reverse so that acquire() hands out slot 0 first.
    for (uint32_t i = slot_count; i-- > 0;) pool.free_.push_back(i);
    return pool;
}

BufferPool::BufferPool(BufferPool&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      slot_size_(other.slot_size_),
      buffers_(std::move(other.buffers_)),
      free_(std::move(other.free_)),
      out_(std::move(other.out_)) {}

BufferPool& BufferPool::operator=(BufferPool&& other) noexcept {
    if (this != &other) {
        unmap();
        base_ = std::exchange(other.base_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
        slot_size_ = other.slot_size_;
        buffers_ = std::move(other.buffers_);
        free_ = std::move(other.free_);
        out_ = std::move(other.out_);
    }
    return *this;
}

BufferPool::~BufferPool() { unmap(); }

void BufferPool::unmap() {
    if (base_ != nullptr) munmap(base_, bytes_);
    base_ = nullptr;
}

core::Buffer* BufferPool::acquire() {
    if (free_.empty()) return nullptr;
    const uint32_t index = free_.back();
    free_.pop_back();
    out_[index] = true;
    // Every field is rewritten: the previous user may have scribbled on them.
    core::Buffer& b = buffers_[index];
    b.data = slot_data(index);
    b.capacity = slot_size_;
    b.offset = static_cast<uint32_t>(core::wire::kHeadroom);
    b.length = 0;
    b.index = index;
    b.checksum_partial = false;
    return &b;
}

bool BufferPool::owns(const core::Buffer* buffer) const {
    if (buffers_.empty()) return false;
    const auto first = reinterpret_cast<uintptr_t>(buffers_.data());
    const auto p = reinterpret_cast<uintptr_t>(buffer);
    return p >= first && (p - first) % sizeof(core::Buffer) == 0 && (p - first) / sizeof(core::Buffer) < buffers_.size();
}

int64_t BufferPool::out_index(const core::Buffer* buffer) const {
    if (buffers_.empty()) return -1;
    // Compare as integers: relational operators on pointers into different
    // objects are unspecified.
    const auto first = reinterpret_cast<uintptr_t>(buffers_.data());
    const auto p = reinterpret_cast<uintptr_t>(buffer);
    if (p < first || (p - first) % sizeof(core::Buffer) != 0) return -1;
    const uintptr_t index = (p - first) / sizeof(core::Buffer);
    if (index >= buffers_.size() || !out_[index]) return -1;
    return static_cast<int64_t>(index);
}

bool BufferPool::release(core::Buffer* buffer) {
    const int64_t index = out_index(buffer);
    if (index < 0) return false;
    out_[static_cast<size_t>(index)] = false;
    free_.push_back(static_cast<uint32_t>(index));
    return true;
}

}  // namespace mlvpn::uring
