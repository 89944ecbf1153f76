// SPDX-License-Identifier: BSD-2-Clause
// Ring: one io_uring instance behind a small RAII class (cf. Envoy's
// source/common/io/io_uring.h).
//
// Callers prepare SQEs from get_sqe() with liburing's io_uring_prep_*, then
// submit_and_wait() hands all of them to the kernel and waits for completions
// in one io_uring_enter; for_each_completion() reaps what is there. The
// destructor tears the ring down (io_uring_queue_exit); callers that lent
// memory to in-flight requests must reap them first.
//
// A ring created with IORING_SETUP_SINGLE_ISSUER belongs to the thread that
// created it: only that thread may submit, register or (DEFER_TASKRUN) wait.
#pragma once

#include <liburing.h>
#include <pthread.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"

namespace mlvpn::uring {

struct RingOptions {
    unsigned entries = 256;  // SQ size; the kernel rounds up to a power of two
    // CQ size (IORING_SETUP_CQSIZE, Linux 5.5); 0: the kernel's, twice the SQ.
    // The kernel charges both to the user's locked memory (RLIMIT_MEMLOCK):
    // an SQE takes 64 bytes, a CQE 16.
    unsigned cq_entries = 0;
    unsigned flags = 0;      // IORING_SETUP_* that must be accepted
    // IORING_SETUP_* wanted when the kernel knows them: dropped (highest bit
    // first, i.e. newest first) while io_uring_setup answers EINVAL.
    unsigned optional_flags = 0;
    // Creates the ring disabled (IORING_SETUP_R_DISABLED, Linux 5.10) so that
    // it can be restricted: registering works, submitting does not until
    // restrict_and_enable(). A kernel without it fails create() with EINVAL.
    bool start_disabled = false;
};

// What a restricted ring may do once enabled. The kernel enforces it on the
// ring itself, whoever uses it: an SQE with another opcode, or with a flag
// outside `sqe_flags`, completes with -EACCES; another io_uring_register
// operation fails with EACCES. It cannot be lifted.
struct RingRestrictions {
    std::vector<uint8_t> sqe_ops;       // IORING_OP_* allowed
    uint8_t sqe_flags = 0;              // IOSQE_* allowed (none is required)
    std::vector<uint8_t> register_ops;  // IORING_REGISTER_* allowed once enabled
};

class Ring {
public:
    // On failure, *setup_errno (when given) is the positive errno from
    // io_uring_setup, or 0 when setup succeeded and something later failed.
    static Result<std::unique_ptr<Ring>> create(const RingOptions& options, int* setup_errno = nullptr);

    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring();

    unsigned flags() const { return ring_.flags; }  // IORING_SETUP_* in effect
    unsigned features() const { return features_; }  // IORING_FEAT_*
    unsigned sq_entries() const { return ring_.sq.ring_entries; }
    // Whether the kernel implements `opcode` (IORING_OP_*), from
    // IORING_REGISTER_PROBE; false for every opcode on kernels without it.
    bool supports(int opcode) const;

    // Limits a ring created with start_disabled to `allowed`, then enables
    // it; once. Ring adds what it issues itself: IORING_OP_TIMEOUT where
    // liburing's timed wait needs one (no IORING_FEAT_EXT_ARG), and
    // IORING_UNREGISTER_RING_FDS for the destructor when the ring fd is
    // registered. Registrations the ring needs for good (files) belong
    // before this call. Fails if the kernel refuses, or if a check afterwards
    // finds something outside the list still accepted.
    Status restrict_and_enable(const RingRestrictions& allowed);
    bool enabled() const { return !disabled_; }

    // Registers `fds` as fixed files 0..n-1 (for IOSQE_FIXED_FILE).
    Status register_files(std::span<const int> fds);
    // Puts `fd` (or -1: empty) in registered slot `index`.
    Status update_file(unsigned index, int fd);

    // A zeroed SQE to prepare. When the SQ is full the queued SQEs are
    // submitted first (without waiting); nullptr only if that submit failed.
    io_uring_sqe* get_sqe();
    // SQEs prepared but not yet consumed by the kernel.
    unsigned pending() const { return io_uring_sq_ready(&ring_); }

    // Submits every pending SQE and waits, in one io_uring_enter, until at
    // least one completion is available or `timeout` has passed (nullopt:
    // no limit). Timeouts and signals are not errors. Returns the number of
    // SQEs the kernel consumed.
    Result<unsigned> submit_and_wait(std::optional<core::Duration> timeout);
    // Submits every pending SQE without waiting.
    Result<unsigned> submit();

    // Calls f(const io_uring_cqe&) for each available completion, then marks
    // them seen. f must not reap completions itself. Returns the count.
    template <class F>
    unsigned for_each_completion(F&& f) {
        unsigned head = 0;
        unsigned n = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            ++n;
            // liburing's own timeout SQE, used by submit_and_wait_timeout on
            // kernels without IORING_FEAT_EXT_ARG.
            if (cqe->user_data == LIBURING_UDATA_TIMEOUT) continue;
            f(*cqe);
        }
        io_uring_cq_advance(&ring_, n);
        return n;
    }

    // Counters: io_uring_enter calls that submitted something, SQEs consumed.
    uint64_t submit_calls() const { return submit_calls_; }
    uint64_t submitted() const { return submitted_; }

private:
    Ring() = default;
    unsigned account(unsigned before);
    std::string enter_error(int error) const;

    io_uring ring_{};
    bool initialized_ = false;
    bool disabled_ = false;  // created with R_DISABLED and not yet enabled
    bool ring_fd_registered_ = false;
    pthread_t owner_{};  // the thread that created the ring
    unsigned features_ = 0;
    std::unique_ptr<io_uring_probe, void (*)(io_uring_probe*)> probe_{nullptr, io_uring_free_probe};
    uint64_t submit_calls_ = 0;
    uint64_t submitted_ = 0;
};

}  // namespace mlvpn::uring
