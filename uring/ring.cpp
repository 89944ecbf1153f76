// SPDX-License-Identifier: BSD-2-Clause
#include "uring/ring.hpp"

#include <bit>
#include <cerrno>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace mlvpn::uring {

Result<std::unique_ptr<Ring>> Ring::create(const RingOptions& options, int* setup_errno) {
    if (setup_errno != nullptr) *setup_errno = 0;
    std::unique_ptr<Ring> ring(new Ring());
    unsigned optional = options.optional_flags & ~options.flags;
    for (;;) {
        io_uring_params params{};
        params.flags = options.flags | optional;
        const int r = io_uring_queue_init_params(options.entries, &ring->ring_, &params);
        if (r == 0) {
            ring->features_ = params.features;
            ring->initialized_ = true;
            ring->owner_ = pthread_self();
            break;
        }
        // An older kernel rejects setup flags it does not know with EINVAL.
        // Flags are numbered in the order they were added, so dropping the
        // highest first also drops DEFER_TASKRUN before the SINGLE_ISSUER it
        // depends on.
        if (r == -EINVAL && optional != 0) {
            optional &= ~std::bit_floor(optional);
            continue;
        }
        if (setup_errno != nullptr) *setup_errno = -r;
        return fail(fmt::format("io_uring_setup: {}", strerror(-r)));
    }
    // From here on the destructor owns the ring.

    // Saves the kernel an fdget/fdput per io_uring_enter (5.18+); the ring
    // works the same without it.
    (void)io_uring_register_ring_fd(&ring->ring_);
    ring->probe_.reset(io_uring_get_probe_ring(&ring->ring_));
    return ring;
}

Ring::~Ring() {
    if (initialized_) io_uring_queue_exit(&ring_);
}

bool Ring::supports(int opcode) const {
    return probe_ != nullptr && io_uring_opcode_supported(probe_.get(), opcode);
}

Status Ring::update_file(unsigned index, int fd) {
    const int r = io_uring_register_files_update(&ring_, index, &fd, 1);
    if (r < 0) return fail(fmt::format("io_uring_register_files_update: {}", strerror(-r)));
    return {};
}

Status Ring::register_files(std::span<const int> fds) {
    if (fds.empty()) return {};
    const int r = io_uring_register_files(&ring_, fds.data(), static_cast<unsigned>(fds.size()));
    if (r < 0) return fail(fmt::format("io_uring_register_files: {}", strerror(-r)));
    return {};
}

io_uring_sqe* Ring::get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe != nullptr) return sqe;
    // Full: make room. This costs an extra io_uring_enter, so the SQ is sized
    // to hold a whole turn's worth and this is the exception.
    if (!submit()) return nullptr;
    return io_uring_get_sqe(&ring_);
}

std::string Ring::enter_error(int error) const {
    // SINGLE_ISSUER/DEFER_TASKRUN refuse every thread but the creator's
    // (EEXIST), and the registered ring fd exists only in the creator's
    // table (EINVAL): say so rather than leave a puzzling errno.
    if (!pthread_equal(pthread_self(), owner_))
        return fmt::format(
            "io_uring_enter: {} (the ring is used from a thread other than the one that created it)",
            strerror(error));
    return fmt::format("io_uring_enter: {}", strerror(error));
}

unsigned Ring::account(unsigned before) {
    const unsigned after = io_uring_sq_ready(&ring_);
    const unsigned consumed = before > after ? before - after : 0;
    if (consumed > 0) {
        ++submit_calls_;
        submitted_ += consumed;
    }
    return consumed;
}

Result<unsigned> Ring::submit() {
    const unsigned before = io_uring_sq_ready(&ring_);
    if (before == 0) return 0u;
    const int r = io_uring_submit(&ring_);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) return fail(enter_error(-r));
    return account(before);
}

Result<unsigned> Ring::submit_and_wait(std::optional<core::Duration> timeout) {
    __kernel_timespec ts{};
    __kernel_timespec* tsp = nullptr;
    if (timeout) {
        const int64_t ns = timeout->count() > 0 ? timeout->count() : 0;
        ts.tv_sec = ns / 1'000'000'000;
        ts.tv_nsec = ns % 1'000'000'000;
        tsp = &ts;
    }
    const unsigned before = io_uring_sq_ready(&ring_);
    io_uring_cqe* cqe = nullptr;
    // liburing 2.3 returns the submit count, 0, or -errno; -ETIME is the
    // timeout expiring, -EINTR a signal, -EAGAIN/-EBUSY a transiently full
    // completion side: all of them just end the wait.
    const int r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, tsp, nullptr);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) return fail(enter_error(-r));
    return account(before);
}

}  // namespace mlvpn::uring
