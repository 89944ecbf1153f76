// SPDX-License-Identifier: BSD-2-Clause
// A link's UDP sockets, made by [priv]: created, options set (some need
// CAP_NET_ADMIN: SO_MARK, SO_RCVBUFFORCE) and bound before they are handed to
// the worker.
//
// A link has one socket per worker thread, all bound to the same address and
// port with SO_REUSEPORT: one group (docs/privsep.md, "Link sockets"). A
// classic-BPF program on the group gives each Data or Control datagram to
// the socket of its counter space (the top 6 bits of payload byte 6,
// core/wire.hpp) modulo the group's size, and everything else (handshakes,
// junk) to socket 0. None is
// connect()ed, not even a client's: the kernel gives a datagram to a
// connected socket of a group before asking the program, so the group would
// not spread. A client's worker sends to LinkSocket::remote and drops what
// comes from elsewhere, as the kernel did for a connected socket.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/buffer.hpp"
#include "core/config.hpp"
#include "core/result.hpp"
#include "priv/fd.hpp"

namespace mlvpn::priv {

// Sockets a link may have: one per worker thread, as many as the counter
// spaces a tunnel has (core/wire.hpp).
inline constexpr uint32_t kMaxGroupSockets = 64;

struct LinkSocketSpec {
    std::string name;            // link name, for messages
    // Local address and port (port 0 = any). Empty: the any address of the
    // remote's family.
    core::Endpoint bind;
    core::Endpoint remote;       // the server, on a client; empty on a server
    uint32_t sockets = 1;        // the group's size, 1..kMaxGroupSockets
    std::string bindinterface;   // SO_BINDTODEVICE when not empty
    uint32_t fwmark = 0;         // SO_MARK when not 0
    int buffer_bytes = 4 << 20;  // SO_RCVBUFFORCE/SO_SNDBUFFORCE
    // UDP_GRO (Linux 5.0): the kernel may hand the worker several datagrams
    // of one flow in one receive (docs/fastpath.md, "The link side"). A
    // kernel without it is no error: LinkSocket::gro says.
    bool udp_gro = false;
};

struct LinkSocket {
    // The group: fds[t] is worker thread t's. SOCK_DGRAM | SOCK_NONBLOCK |
    // SOCK_CLOEXEC, SO_REUSEPORT, every option of the spec on each.
    std::vector<Fd> fds;
    // Where the group is bound. On a client without a bind address, the
    // source address the route to the remote chose (as connect() would
    // have), so that the link still notices when that address goes.
    core::Endpoint local;
    // The server, in the form recvmsg() reports senders in (IPv4-mapped on
    // an IPv6 socket); empty on a server.
    core::Endpoint remote;
    // Largest IP datagram the link carries: IP_MTU/IPV6_MTU of the route to
    // the remote, else the MTU of the interface owning the bound address,
    // else 1500.
    uint32_t path_mtu = 1500;
    bool gro = false;  // UDP_GRO is on (on every socket of the group)
};

// First a probe socket without SO_REUSEPORT, with the same options, is bound
// to the address (and, on a client, connected to the remote, which finds
// the source address, the path MTU and an unreachable network); a port
// already taken, by a plain socket or another group, fails here as it
// always did, instead of joining that group silently. The probe is closed,
// and the group bound to what it found (an ephemeral port: the one the
// probe got). An IPv6 socket bound to the any address accepts IPv4 too
// (IPV6_V6ONLY = 0). Messages name the link: "link dsl1: bind
// 0.0.0.0:5080: Address already in use".
Result<LinkSocket> open_link_socket(const LinkSocketSpec& spec);

}  // namespace mlvpn::priv
