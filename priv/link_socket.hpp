// SPDX-License-Identifier: BSD-2-Clause
// A link's UDP socket, made by [priv]: created, options set (some need
// CAP_NET_ADMIN: SO_MARK, SO_RCVBUFFORCE), bound, and on the client side
// connected to the peer, before it is handed to the worker.
#pragma once

#include <cstdint>
#include <string>

#include "core/buffer.hpp"
#include "core/config.hpp"
#include "core/result.hpp"
#include "priv/fd.hpp"

namespace mlvpn::priv {

struct LinkSocketSpec {
    std::string name;            // link name, for messages
    core::Endpoint bind;         // local address and port (port 0 = any)
    core::Endpoint remote;       // empty = unconnected (server side)
    std::string bindinterface;   // SO_BINDTODEVICE when not empty
    uint32_t fwmark = 0;         // SO_MARK when not 0
    int buffer_bytes = 4 << 20;  // SO_RCVBUFFORCE/SO_SNDBUFFORCE
    // UDP_GRO (Linux 5.0): the kernel may hand the worker several datagrams
    // of one flow in one receive (docs/fastpath.md, "The link side"). A
    // kernel without it is no error: LinkSocket::gro says.
    bool udp_gro = false;
};

struct LinkSocket {
    Fd fd;                  // SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC
    core::Endpoint local;   // getsockname() after bind
    core::Endpoint remote;  // as connected, or empty
    // Largest IP datagram the link carries: IP_MTU/IPV6_MTU of the connected
    // route, else the MTU of the interface owning the bound address, else 1500.
    uint32_t path_mtu = 1500;
    bool gro = false;  // UDP_GRO is on
};

// An IPv6 socket bound to the any address accepts IPv4 too (IPV6_V6ONLY = 0).
// Messages name the link: "link dsl1: bind 0.0.0.0:5080: Address already in use".
Result<LinkSocket> open_link_socket(const LinkSocketSpec& spec);

}  // namespace mlvpn::priv
