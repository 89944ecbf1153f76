// SPDX-License-Identifier: BSD-2-Clause
// Name resolution, done by [priv] only (the worker has no resolver in its
// chroot and names links by index, never by host name).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "core/buffer.hpp"
#include "core/result.hpp"

namespace mlvpn::priv {

// Resolves `host` (a name or a numeric address) for UDP. `family` is AF_UNSPEC,
// AF_INET or AF_INET6. `passive` resolves an empty host to the any address
// (for bind). Errors: "resolve dsl.example.net: Name or service not known".
Result<std::vector<core::Endpoint>> resolve(std::string_view host, uint16_t port, int family,
                                            bool passive);

}  // namespace mlvpn::priv
