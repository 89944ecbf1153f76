// SPDX-License-Identifier: BSD-2-Clause
// Creating the TUN/TAP device: TUNSETIFF on /dev/net/tun (netlink cannot).
// The device lives as long as its descriptor: closing the last copy removes it.
//
// A TUN device may be opened with IFF_VNET_HDR and given offloads with
// TUNSETOFFLOAD (docs/fastpath.md): the kernel then hands over TCP (and, with
// USO, UDP) super-packets of up to 64 KB behind a 10-byte virtio_net_hdr and
// takes them the same way, so one read or write moves dozens of packets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/config.hpp"
#include "core/result.hpp"
#include "priv/fd.hpp"

namespace mlvpn::priv {

// What a TUN device was given; the worker must read and write accordingly.
enum class TunOffload : uint8_t {
    None = 0,    // plain: one IP packet per read and write, no header
    Tcp = 1,     // IFF_VNET_HDR, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
    TcpUdp = 2,  // the same and TUN_F_USO4 | TUN_F_USO6 (Linux 6.2)
};
// "off", "tcp", "tcp,udp": for logs and status.
const char* to_string(TunOffload offload);

struct TunDevice {
    Fd fd;             // O_RDWR | O_CLOEXEC, non-blocking
    std::string name;  // as the kernel named it
    int ifindex = 0;
    TunOffload offload = TunOffload::None;
};

// Creates `name` (IFF_TUN or IFF_TAP, IFF_NO_PI). Fails with a clear message
// if the name is taken by a device of another kind or /dev/net/tun is missing.
//
// With `offload` (TUN only; a TAP device never gets it) the device is opened
// with IFF_VNET_HDR and the most the kernel accepts of TCP+UDP, then TCP
// offloads; if it refuses both, the device is made again without
// IFF_VNET_HDR, as without `offload`. TunDevice::offload says which.
Result<TunDevice> create_tun(std::string_view name, core::TunType type, bool offload = false);

}  // namespace mlvpn::priv
