// SPDX-License-Identifier: BSD-2-Clause
#include "uring/loop_common.hpp"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mlvpn::uring {

Status check_config(const LoopConfig& config) {
    if (config.batch == 0 || config.batch > kMaxBatch)
        return fail(fmt::format("event loop: batch {} is outside 1..{}", config.batch, kMaxBatch));
    if (config.link_fds.size() > kMaxLinks)
        return fail(fmt::format("event loop: {} links, at most {}", config.link_fds.size(), kMaxLinks));
    for (size_t i = 0; i < config.link_fds.size(); ++i)
        if (config.link_fds[i] < 0) return fail(fmt::format("event loop: link {} has no socket", i));
    for (int fd : config.watch_fds)
        if (fd < 0) return fail(fmt::format("event loop: bad watch fd {}", fd));
    return {};
}

// Everything not listed is read again: a UDP socket reports each ICMP error
// (ECONNREFUSED, EHOSTUNREACH, EMSGSIZE, ...) once, ENOBUFS/ENOMEM pass, and a
// TUN packet larger than the slot fails its read with EFAULT and is gone.
bool is_fatal_read_error(int error) {
    switch (error) {
        case EBADF:
        case EBADFD:  // TUN: the queue was detached from its device
        case ENOTSOCK:
        case EINVAL:
        case EIO:
        case ENXIO:
        case ENODEV:
            return true;
        default:
            return false;
    }
}

std::optional<Error> fatal_read_error(std::string_view loop, std::optional<core::LinkIndex> link,
                                      int error) {
    if (!is_fatal_read_error(error)) return std::nullopt;
    if (link) return Error{fmt::format("{}: receive on link {}: {}", loop, *link, strerror(error))};
    return Error{fmt::format("{}: read from the TUN device: {}", loop, strerror(error))};
}

}  // namespace mlvpn::uring
