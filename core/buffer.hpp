// SPDX-License-Identifier: BSD-2-Clause
// Packet buffers and endpoints: the currency between core and the I/O loop.
//
// A Buffer is a view of one fixed-size slot owned by the I/O loop. Packets are
// read from the TUN device at `kHeadroom` so that core can seal them in place:
// it writes the inner header, the tag and the outer header into the headroom,
// moving `offset` back (to wire::kDatagramOffset), and never copies the
// payload. Datagrams from a link are received at wire::kDatagramOffset and
// opened in place, leaving the inner payload at offset kHeadroom.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace mlvpn::core {

struct Buffer {
    std::byte* data = nullptr;  // start of the slot
    uint32_t capacity = 0;      // size of the slot
    uint32_t offset = 0;        // first valid byte
    uint32_t length = 0;        // number of valid bytes
    uint32_t index = 0;         // the I/O loop's slot number
    // The IP packet's TCP or UDP checksum is partial (the field holds the
    // pseudo-header sum; core/checksum_partial.hpp): set by the TUN reader
    // and by a Data packet's flag, reset by whoever puts a new packet here.
    bool checksum_partial = false;

    std::span<std::byte> bytes() { return {data + offset, length}; }
    std::span<const std::byte> bytes() const { return {data + offset, length}; }
};

// An IPv4 or IPv6 socket address, small enough to copy per datagram.
struct Endpoint {
    union {
        sockaddr sa;
        sockaddr_in in4;
        sockaddr_in6 in6;
    } addr{};
    socklen_t len = 0;  // 0 = no address

    bool empty() const { return len == 0; }
    bool operator==(const Endpoint& o) const {
        return len == o.len && std::memcmp(&addr, &o.addr, len) == 0;
    }
    // "192.0.2.1:5080", "[2001:db8::1]:5080", or "-" when empty.
    std::string to_string() const;
};

// A datagram received on a link socket.
struct Datagram {
    Buffer* buffer = nullptr;
    Endpoint from;
};

}  // namespace mlvpn::core
