// SPDX-License-Identifier: BSD-2-Clause
// Creating the TUN/TAP device: TUNSETIFF on /dev/net/tun (netlink cannot).
// The device lives as long as its descriptor: closing the last copy removes it.
//
// A TUN device may be opened with IFF_VNET_HDR and given offloads with
// TUNSETOFFLOAD (docs/fastpath.md): the kernel then hands over TCP (and, with
// USO, UDP) super-packets of up to 64 KB behind a 10-byte virtio_net_hdr and
// takes them the same way, so one read or write moves dozens of packets.
//
// The device is always multi-queue (IFF_MULTI_QUEUE), even with one queue, so
// that it never changes kind between versions: each worker thread reads and
// writes its own queue. The kernel keeps a flow on one queue and sends a
// flow's packets to the queue its reverse packets were last written on
// (docs/fastpath.md, "Queues and threads").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

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

// Queues a device may have: one per worker thread, as many as the counter
// spaces a tunnel has (core/wire.hpp).
inline constexpr uint32_t kMaxTunQueues = 64;

struct TunDevice {
    // One descriptor per queue, O_RDWR | O_CLOEXEC, non-blocking; never
    // empty. The device lives while any of them is open.
    std::vector<Fd> queues;
    std::string name;  // as the kernel named it
    int ifindex = 0;
    TunOffload offload = TunOffload::None;
};

// Creates `name` (IFF_TUN or IFF_TAP, IFF_NO_PI, IFF_MULTI_QUEUE) with
// `queues` queues (1..kMaxTunQueues). Fails with a clear message if the name
// is taken by any interface (IFF_TUN_EXCL on queue 0: a device that exists
// is never attached to) or /dev/net/tun is missing. Queues 1.. attach to the
// device queue 0 made, with the same flags but IFF_TUN_EXCL; the kernel takes
// the device's flags from queue 0 and ignores theirs.
//
// With `offload` (TUN only; a TAP device never gets it) the device is opened
// with IFF_VNET_HDR and the most the kernel accepts of TCP+UDP, then TCP
// offloads (TUNSETOFFLOAD is per device: set once, on queue 0); if it
// refuses both, the device is made again without IFF_VNET_HDR, as without
// `offload`. TunDevice::offload says which.
Result<TunDevice> create_tun(std::string_view name, core::TunType type, bool offload = false,
                             uint32_t queues = 1);

}  // namespace mlvpn::priv
