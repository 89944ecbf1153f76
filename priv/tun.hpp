// SPDX-License-Identifier: BSD-2-Clause
// Creating the TUN/TAP device: TUNSETIFF on /dev/net/tun (netlink cannot).
// The device lives as long as its descriptor: closing the last copy removes it.
#pragma once

#include <string>
#include <string_view>

#include "core/config.hpp"
#include "core/result.hpp"
#include "priv/fd.hpp"

namespace mlvpn::priv {

struct TunDevice {
    Fd fd;             // O_RDWR | O_CLOEXEC, non-blocking
    std::string name;  // as the kernel named it
    int ifindex = 0;
};

// Creates `name` (IFF_TUN or IFF_TAP, IFF_NO_PI). Fails with a clear message
// if the name is taken by a device of another kind or /dev/net/tun is missing.
Result<TunDevice> create_tun(std::string_view name, core::TunType type);

}  // namespace mlvpn::priv
