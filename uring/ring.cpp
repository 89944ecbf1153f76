// SPDX-License-Identifier: BSD-2-Clause
#include "uring/ring.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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
        params.flags = options.flags | optional | (options.start_disabled ? IORING_SETUP_R_DISABLED : 0u);
        if (options.cq_entries != 0) {
            params.flags |= IORING_SETUP_CQSIZE;
            params.cq_entries = options.cq_entries;
        }
        const int r = io_uring_queue_init_params(options.entries, &ring->ring_, &params);
        if (r == 0) {
            ring->features_ = params.features;
            ring->initialized_ = true;
            ring->disabled_ = options.start_disabled;
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
        if (r == -EINVAL && options.start_disabled)
            return fail(fmt::format("io_uring_setup: {} (a ring that can be restricted needs Linux 5.10)",
                                    strerror(-r)));
        if (r == -ENOMEM) {
            // The kernel charges a ring's memory to its user's locked memory,
            // summed over every process of that user.
            rlimit rl{};
            getrlimit(RLIMIT_MEMLOCK, &rl);
            return fail(fmt::format("io_uring_setup: {} ({} SQ entries; the rings of every process of this user "
                                    "count against RLIMIT_MEMLOCK, {} here; raise it, e.g. LimitMEMLOCK= in a "
                                    "systemd unit)",
                                    strerror(-r), options.entries,
                                    rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited")
                                                                 : fmt::format("{} KiB", rl.rlim_cur / 1024)));
        }
        return fail(fmt::format("io_uring_setup: {}", strerror(-r)));
    }
    // From here on the destructor owns the ring.

    // Saves the kernel an fdget/fdput per io_uring_enter (5.18+); the ring
    // works the same without it.
    ring->ring_fd_registered_ = io_uring_register_ring_fd(&ring->ring_) == 1;
    ring->probe_.reset(io_uring_get_probe_ring(&ring->ring_));
    return ring;
}

Ring::~Ring() {
    if (initialized_) io_uring_queue_exit(&ring_);
}

bool Ring::supports(int opcode) const {
    return probe_ != nullptr && io_uring_opcode_supported(probe_.get(), opcode);
}

namespace {

// liburing 2.3 declares io_uring_register_restrictions() and
// io_uring_enable_rings() but its shared library does not export them (2.4
// does), so these registrations go to the kernel directly.
int register_raw(int ring_fd, unsigned op, const void* arg, unsigned nr) {
    const long r = syscall(__NR_io_uring_register, ring_fd, op, arg, nr);
    return r < 0 ? -errno : static_cast<int>(r);
}

bool listed(const std::vector<uint8_t>& list, unsigned value) {
    return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

// Why restrict a ring: io_uring carries out its operations inside the kernel,
// out of seccomp's sight, so a process whose filter forbids openat() could
// still queue IORING_OP_OPENAT. Restrictions belong to the ring and io_uring
// checks them on every SQE and every registration, whoever submits; the
// process's seccomp filter can then leave io_uring_enter (and the listed
// registrations) open without reopening that door, and deny io_uring_setup so
// that no unrestricted ring can be made.
Status Ring::restrict_and_enable(const RingRestrictions& allowed) {
    if (!disabled_) return fail("io_uring: only a ring created disabled can be restricted, and only once");
    if (pending() != 0) return fail("io_uring: SQEs were prepared before the ring was restricted");
    std::vector<io_uring_restriction> list;
    auto add = [&list](unsigned kind, unsigned value) {
        io_uring_restriction r{};
        r.opcode = static_cast<uint16_t>(kind);
        // register_op, sqe_op and sqe_flags share one byte.
        r.sqe_op = static_cast<uint8_t>(value);
        list.push_back(r);
    };
    std::vector<uint8_t> sqe_ops = allowed.sqe_ops;
    // Without EXT_ARG, liburing's timed wait queues an IORING_OP_TIMEOUT.
    if ((features_ & IORING_FEAT_EXT_ARG) == 0 && !listed(sqe_ops, IORING_OP_TIMEOUT))
        sqe_ops.push_back(IORING_OP_TIMEOUT);
    std::vector<uint8_t> register_ops = allowed.register_ops;
    // io_uring_queue_exit() unregisters a registered ring fd.
    if (ring_fd_registered_ && !listed(register_ops, IORING_UNREGISTER_RING_FDS))
        register_ops.push_back(IORING_UNREGISTER_RING_FDS);
    for (uint8_t op : sqe_ops) add(IORING_RESTRICTION_SQE_OP, op);
    for (uint8_t op : register_ops) add(IORING_RESTRICTION_REGISTER_OP, op);
    add(IORING_RESTRICTION_SQE_FLAGS_ALLOWED, allowed.sqe_flags);

    if (int r = register_raw(ring_.ring_fd, IORING_REGISTER_RESTRICTIONS, list.data(),
                             static_cast<unsigned>(list.size()));
        r < 0)
        return fail(fmt::format("io_uring: restricting the ring: {}", strerror(-r)));
    if (int r = register_raw(ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0); r < 0)
        return fail(fmt::format("io_uring: enabling the ring: {}", strerror(-r)));
    disabled_ = false;

    // Verify rather than trust: a registration and an SQE outside the list
    // must both be refused.
    if (!listed(register_ops, IORING_REGISTER_PROBE)) {
        io_uring_probe probe{};  // no room for ops: harmless if it went through
        if (register_raw(ring_.ring_fd, IORING_REGISTER_PROBE, &probe, 0) != -EACCES)
            return fail("io_uring: the ring's restrictions are not in force (a registration was not refused)");
    }
    if (!listed(sqe_ops, IORING_OP_NOP)) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) return fail("io_uring: no SQE to check the restrictions with");
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, 0);
        if (int r = io_uring_submit_and_wait(&ring_, 1); r < 0)
            return fail(fmt::format("io_uring: checking the restrictions: {}", strerror(-r)));
        int res = 0;
        unsigned seen = 0;
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            res = cqe->res;
            ++seen;
        }
        io_uring_cq_advance(&ring_, seen);
        if (seen != 1 || res != -EACCES)
            return fail("io_uring: the ring's restrictions are not in force (an SQE outside them was not refused)");
    }
    return {};
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
    if (error == EBADFD && disabled_)
        return fmt::format("io_uring_enter: {} (the ring is still disabled: restrict_and_enable() first)",
                           strerror(error));
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
