// SPDX-License-Identifier: BSD-2-Clause
#include "priv/resolve.hpp"

#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include <fmt/format.h>

namespace mlvpn::priv {

// Flags, and why:
// - AI_NUMERICSERV: the port is a number; never consult /etc/services.
// - AI_PASSIVE only for bind addresses, so that an empty host means "any".
// - No AI_ADDRCONFIG. It filters by the families configured *now*, ignoring
//   loopback: a daemon started before a WAN link has its addresses would lose
//   that family for good, and glibc then even fails numeric addresses
//   ("192.0.2.1" with AF_INET on a host with only IPv6 is EAI_NONAME), as it
//   does "localhost" in a namespace holding only lo. The caller chooses the
//   family from the link's bind address, which is the filter that matters,
//   and an unreachable address fails at connect() with a clear error.
Result<std::vector<core::Endpoint>> resolve(std::string_view host, uint16_t port, int family,
                                            bool passive) {
    const auto error = [&](const std::string& text) {
        return fail(fmt::format("resolve {}: {}", host.empty() ? "(any address)" : host, text));
    };
    if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6)
        return error(fmt::format("unsupported address family {}", family));
    if (host.find('\0') != std::string_view::npos) return error("host name contains a NUL byte");
    if (host.empty() && !passive) return error("empty host name");

    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = IPPROTO_UDP;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    const std::string node(host);
    const std::string service = std::to_string(port);

    addrinfo* raw = nullptr;
    const int rc = getaddrinfo(node.empty() ? nullptr : node.c_str(), service.c_str(), &hints, &raw);
    if (rc == EAI_SYSTEM) return error(std::strerror(errno));
    if (rc != 0) return error(gai_strerror(rc));
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(raw, freeaddrinfo);

    // getaddrinfo returns one entry per /etc/hosts line and per DNS record,
    // so the same address can come back twice; keep the first, in order.
    std::vector<core::Endpoint> endpoints;
    for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(core::Endpoint::addr))
            continue;
        core::Endpoint e;
        std::memcpy(&e.addr, ai->ai_addr, ai->ai_addrlen);
        e.len = ai->ai_addrlen;
        if (std::find(endpoints.begin(), endpoints.end(), e) == endpoints.end())
            endpoints.push_back(e);
    }
    // For "any address" put [::] first whatever the sort order: one
    // dual-stack socket there serves both families.
    if (host.empty()) {
        std::stable_partition(endpoints.begin(), endpoints.end(), [](const core::Endpoint& e) {
            return e.addr.sa.sa_family == AF_INET6;
        });
    }
    if (endpoints.empty()) return error("no IPv4 or IPv6 address");
    return endpoints;
}

}  // namespace mlvpn::priv
