// SPDX-License-Identifier: BSD-2-Clause
#include "priv/channel.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mlvpn::priv {

namespace {

// Larger than any message: a bigger datagram is a protocol violation that
// MSG_TRUNC reveals.
constexpr size_t kMaxMessage = 1024;
static_assert(sizeof(msg::Log) < kMaxMessage && sizeof(msg::Link) < kMaxMessage);

}  // namespace

Result<std::pair<Channel, Channel>> Channel::pair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
        return fail(fmt::format("socketpair: {}", std::strerror(errno)));
    }
    return std::pair<Channel, Channel>{Channel(Fd(fds[0])), Channel(Fd(fds[1]))};
}

Status Channel::send(std::span<const std::byte> message, int pass, bool dont_wait) {
    iovec iov{const_cast<std::byte*>(message.data()), message.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (pass >= 0) {
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &pass, sizeof(int));
    }
    for (;;) {
        const ssize_t n = sendmsg(fd_.get(), &mh, MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0));
        if (n == static_cast<ssize_t>(message.size())) return {};
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(fmt::format("send to {}: {}", "channel", std::strerror(errno)));
        return fail("send to channel: short write");
    }
}

Result<Channel::Received> Channel::receive(bool dont_wait) {
    Received r;
    r.bytes.resize(kMaxMessage);
    iovec iov{r.bytes.data(), r.bytes.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    // Room for more than one descriptor, so that extra ones are seen (and
    // closed) rather than silently cut off.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = recvmsg(fd_.get(), &mh, MSG_CMSG_CLOEXEC | (dont_wait ? MSG_DONTWAIT : 0));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && dont_wait && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        r.bytes.clear();
        r.again = true;
        return r;
    }
    if (n < 0) return fail(fmt::format("receive from channel: {}", std::strerror(errno)));

    std::vector<Fd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
        }
    }
    if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) return fail("channel: message truncated");
    if (fds.size() > 1) return fail("channel: more than one descriptor in a message");
    if (!fds.empty()) r.fd = std::move(fds.front());
    r.bytes.resize(static_cast<size_t>(n));
    return r;
}

}  // namespace mlvpn::priv
