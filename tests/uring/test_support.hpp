// SPDX-License-Identifier: BSD-2-Clause
// What the uring tests share: the buffer geometry the worker uses and a UDP
// socket on loopback.
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include "core/wire.hpp"
#include "priv/fd.hpp"

namespace mlvpn::uring::test {

inline constexpr uint32_t kHeadroom = static_cast<uint32_t>(core::wire::kHeadroom);
inline constexpr uint32_t kSlot = 1536;  // an MTU-1430 tunnel's slots, as the worker sizes them

// A UDP socket bound to an ephemeral port on 127.0.0.1, with a receive buffer
// of 1 MB: enough for a test's window of datagrams even if the reader is slow.
inline Fd loopback_udp_socket() {
    Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    int size = 1 << 20;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    return fd;
}

}  // namespace mlvpn::uring::test
