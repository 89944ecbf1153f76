// SPDX-License-Identifier: BSD-2-Clause
// A Ring as the worker makes it, for the tests of uring/ring.*.
#pragma once

#include <doctest/doctest.h>

#include <cerrno>
#include <memory>

#include "uring/ring.hpp"

namespace mlvpn::uring::test {

// nullptr (and a message) when this machine refuses io_uring.
inline std::unique_ptr<Ring> make_ring(unsigned entries, bool start_disabled = false, unsigned cq_entries = 0) {
    RingOptions options;
    options.entries = entries;
    options.cq_entries = cq_entries;
    options.optional_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                             IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
    options.start_disabled = start_disabled;
    int setup_errno = 0;
    auto ring = Ring::create(options, &setup_errno);
    if (!ring) {
        MESSAGE("io_uring unavailable: " << ring.error().message);
        CHECK((setup_errno == EPERM || setup_errno == ENOSYS || setup_errno == EACCES));
        return nullptr;
    }
    return std::move(*ring);
}

}  // namespace mlvpn::uring::test
