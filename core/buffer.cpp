// SPDX-License-Identifier: BSD-2-Clause
#include "core/buffer.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace mlvpn::core {

std::string Endpoint::to_string() const {
    char text[INET6_ADDRSTRLEN] = {};
    if (len != 0 && addr.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &addr.in4.sin_addr, text, sizeof text);
        return fmt::format("{}:{}", text, ntohs(addr.in4.sin_port));
    }
    if (len != 0 && addr.sa.sa_family == AF_INET6) {
        // Show IPv4-mapped peers of a dual-stack socket as plain IPv4.
        if (IN6_IS_ADDR_V4MAPPED(&addr.in6.sin6_addr)) {
            inet_ntop(AF_INET, &addr.in6.sin6_addr.s6_addr[12], text, sizeof text);
            return fmt::format("{}:{}", text, ntohs(addr.in6.sin6_port));
        }
        inet_ntop(AF_INET6, &addr.in6.sin6_addr, text, sizeof text);
        return fmt::format("[{}]:{}", text, ntohs(addr.in6.sin6_port));
    }
    return "-";
}

}  // namespace mlvpn::core
