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

namespace mlvpn::priv {
namespace {

constexpr const char* kCloneDevice = "/dev/net/tun";

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

}  // namespace

Result<TunDevice> create_tun(std::string_view name, core::TunType type) {
    const char* kind = type == core::TunType::Tap ? "tap" : "tun";
    const auto error = [&](const std::string& text) {
        return fail(fmt::format("{} {}: {}", kind, name.empty() ? "(any name)" : name, text));
    };
    if (std::string bad = check_name(name); !bad.empty()) return error(bad);

    Fd fd(::open(kCloneDevice, O_RDWR | O_CLOEXEC | O_NONBLOCK));
    if (!fd) return error(open_error(errno));

    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), name.size());  // checked < IFNAMSIZ
    // IFF_TUN_EXCL: never attach to an existing device. Without it TUNSETIFF
    // would take over a persistent TUN/TAP of that name, which [priv] did not
    // create and whose lifetime it does not control; with it every existing
    // interface of that name, of any kind, is EBUSY.
    ifr.ifr_flags = static_cast<short>((type == core::TunType::Tap ? IFF_TAP : IFF_TUN) |
                                       IFF_NO_PI | IFF_TUN_EXCL);
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) return error(setiff_error(errno));

    TunDevice device;
    device.name.assign(ifr.ifr_name, strnlen(ifr.ifr_name, sizeof ifr.ifr_name));
    const unsigned ifindex = if_nametoindex(device.name.c_str());
    if (ifindex == 0) return error(fmt::format("created {} but cannot find its index: {}",
                                               device.name, std::strerror(errno)));
    device.ifindex = static_cast<int>(ifindex);
    device.fd = std::move(fd);
    return device;
}

}  // namespace mlvpn::priv
