// SPDX-License-Identifier: BSD-2-Clause
#include "uring/loop_common.hpp"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/checksum_partial.hpp"

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

void finish_partial_checksum(BufferPool& pool, uint32_t index, const core::Buffer& buffer) {
    if (buffer.offset > pool.slot_size() || buffer.length > pool.slot_size() - buffer.offset) return;
    (void)core::finish_partial_checksum({pool.slot_data(index) + buffer.offset, buffer.length});
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

LoopStats& LoopStats::operator+=(const LoopStats& o) {
    turns += o.turns;
    submits += o.submits;
    sqes += o.sqes;
    tun_reads += o.tun_reads;
    datagrams += o.datagrams;
    pool_empty += o.pool_empty;
    truncated += o.truncated;
    read_errors += o.read_errors;
    rejected += o.rejected;
    tun_super_reads += o.tun_super_reads;
    tun_bad_reads += o.tun_bad_reads;
    tun_split_no_buffer += o.tun_split_no_buffer;
    tun_super_writes += o.tun_super_writes;
    tun_merged += o.tun_merged;
    gso_sends += o.gso_sends;
    gso_segments += o.gso_segments;
    gso_refused += o.gso_refused;
    gro_receives += o.gro_receives;
    gro_segments += o.gro_segments;
    gro_dropped += o.gro_dropped;
    gro_no_buffer += o.gro_no_buffer;
    slots_free += o.slots_free;
    slots_held += o.slots_held;
    return *this;
}

}  // namespace mlvpn::uring
