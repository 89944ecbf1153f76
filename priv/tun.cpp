// SPDX-License-Identifier: BSD-2-Clause
#include "priv/tun.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

// Bookworm's <linux/if_tun.h> predates USO (Linux 6.2).
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

namespace mlvpn::priv {
namespace {

constexpr const char* kCloneDevice = "/dev/net/tun";
constexpr unsigned kTcpOffloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
constexpr unsigned kUdpOffloads = TUN_F_USO4 | TUN_F_USO6;

// The kernel's rules for interface names (dev_valid_name), checked here so
// the user sees which rule was broken rather than "Invalid argument".
// An empty name is allowed: the kernel then picks tunN / tapN.
std::string check_name(std::string_view name) {
    if (name.size() >= IFNAMSIZ)
        return fmt::format("name longer than {} characters", IFNAMSIZ - 1);
    if (name == "." || name == "..") return "invalid name";
    for (char c : name) {
        if (c == '\0' || c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)))
            return "name contains a character not allowed in interface names";
    }
    return {};
}

std::string open_error(int err) {
    std::string text = fmt::format("open {}: {}", kCloneDevice, std::strerror(err));
    // ENOENT: no device node; ENODEV/ENXIO: a node but no driver behind it.
    if (err == ENOENT || err == ENODEV || err == ENXIO)
        text += " (load the tun module: modprobe tun)";
    else if (err == EACCES || err == EPERM)
        text += " (creating a TUN/TAP device needs root or CAP_NET_ADMIN)";
    return text;
}

std::string setiff_error(int err) {
    switch (err) {
    case EBUSY:
        return "device name in use (an interface with this name already exists)";
    case EPERM:
        return "Operation not permitted (creating a TUN/TAP device needs CAP_NET_ADMIN)";
    case EINVAL:
        return "Invalid argument (the kernel rejected the interface name)";
    default:
        return std::strerror(err);
    }
}

// Opens /dev/net/tun and attaches it to the device `name`: queue 0 makes
// it (`exclusive`), the others join it. Returns the name the kernel gave, or
// the message for the user.
tl::expected<std::string, std::string> attach_queue(Fd& fd, std::string_view name, core::TunType type,
                                                    bool vnet_hdr, bool exclusive) {
    fd = Fd(::open(kCloneDevice, O_RDWR | O_CLOEXEC | O_NONBLOCK));
    if (!fd) return tl::unexpected(open_error(errno));

    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), name.size());  // checked < IFNAMSIZ
    // IFF_TUN_EXCL: never attach to an existing device. Without it TUNSETIFF
    // would take over a persistent TUN/TAP of that name, which [priv] did not
    // create and whose lifetime it does not control; with it every existing
    // interface of that name, of any kind, is EBUSY. The further queues must
    // attach to the device queue 0 made, so they go without it; their other
    // flags are ignored (the device has them from queue 0) except
    // IFF_MULTI_QUEUE, which must match (EINVAL), but an honest reader
    // should see the same flags on every queue.
    ifr.ifr_flags = static_cast<short>((type == core::TunType::Tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI |
                                       IFF_MULTI_QUEUE | (exclusive ? IFF_TUN_EXCL : 0) |
                                       (vnet_hdr ? IFF_VNET_HDR : 0));
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) return tl::unexpected(setiff_error(errno));
    return std::string(ifr.ifr_name, strnlen(ifr.ifr_name, sizeof ifr.ifr_name));
}

// Queue 0 only: it creates the device. On failure, the message for the user.
tl::expected<TunDevice, std::string> attach(std::string_view name, core::TunType type, bool vnet_hdr) {
    TunDevice device;
    device.queues.resize(1);
    auto taken = attach_queue(device.queues[0], name, type, vnet_hdr, true);
    if (!taken) return tl::unexpected(taken.error());
    device.name = std::move(*taken);
    return device;
}

// Queues 1..count-1 of the device queue 0 made; the kernel must confirm
// each joined `device` as the same multi-queue device.
tl::expected<void, std::string> attach_more(TunDevice& device, core::TunType type, bool vnet_hdr, uint32_t count) {
    device.queues.resize(count);
    for (uint32_t q = 1; q < count; ++q) {
        auto joined = attach_queue(device.queues[q], device.name, type, vnet_hdr, false);
        if (!joined) return tl::unexpected(fmt::format("queue {}: {}", q, joined.error()));
        if (*joined != device.name)
            return tl::unexpected(fmt::format("queue {} attached to {}, not {}", q, *joined, device.name));
    }
    ifreq ifr{};
    if (::ioctl(device.queues.back().get(), TUNGETIFF, &ifr) < 0)
        return tl::unexpected(fmt::format("TUNGETIFF: {}", std::strerror(errno)));
    if ((ifr.ifr_flags & IFF_MULTI_QUEUE) == 0)
        return tl::unexpected(std::string("the kernel did not make a multi-queue device"));
    return {};
}

}  // namespace

const char* to_string(TunOffload offload) {
    switch (offload) {
        case TunOffload::None: return "off";
        case TunOffload::Tcp: return "tcp";
        case TunOffload::TcpUdp: return "tcp,udp";
    }
    return "?";
}

Result<TunDevice> create_tun(std::string_view name, core::TunType type, bool offload, uint32_t queues) {
    const char* kind = type == core::TunType::Tap ? "tap" : "tun";
    const auto error = [&](const std::string& text) {
        return fail(fmt::format("{} {}: {}", kind, name.empty() ? "(any name)" : name, text));
    };
    if (std::string bad = check_name(name); !bad.empty()) return error(bad);
    if (queues < 1 || queues > kMaxTunQueues)
        return error(fmt::format("{} queues asked for (1 to {})", queues, kMaxTunQueues));

    // TAP frames carry no virtio_net_hdr here: the offloads are for IP.
    const bool vnet_hdr = offload && type == core::TunType::Tun;
    auto device = attach(name, type, vnet_hdr);
    if (!device) return error(device.error());
    if (vnet_hdr) {
        // TUNSETOFFLOAD takes the flags as its argument, not a pointer. The
        // kernel refuses flags it does not know (EINVAL): USO before 6.2.
        const int fd = device->queues[0].get();
        if (::ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(kTcpOffloads | kUdpOffloads)) == 0) {
            device->offload = TunOffload::TcpUdp;
        } else if (::ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(kTcpOffloads)) == 0) {
            device->offload = TunOffload::Tcp;
        } else {
            // A header on every packet and nothing gained: make the device
            // again, plain. Closing the only descriptor removes it; the
            // kernel's choice of name (for an empty `name`) is kept.
            const std::string taken = device->name;
            device->queues.clear();
            device = attach(taken, type, false);
            if (!device) return error(device.error());
        }
    }
    if (auto more = attach_more(*device, type, device->offload != TunOffload::None, queues); !more)
        return error(more.error());

    const unsigned ifindex = if_nametoindex(device->name.c_str());
    if (ifindex == 0) return error(fmt::format("created {} but cannot find its index: {}",
                                               device->name, std::strerror(errno)));
    device->ifindex = static_cast<int>(ifindex);
    return std::move(*device);
}

}  // namespace mlvpn::priv
