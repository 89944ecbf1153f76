// SPDX-License-Identifier: BSD-2-Clause
// Netlink: an rtnetlink socket (libnl-route) and the few link, address and
// route operations [priv] performs on the TUN/TAP device it created.
// TUN creation itself is not here: netlink cannot create TUN devices (see
// priv/tun.hpp).
#pragma once

#include <cstdint>
#include <memory>

#include "core/config.hpp"
#include "core/result.hpp"

struct nl_sock;

namespace mlvpn::netlink {

class Netlink {
public:
    // Opens and connects a NETLINK_ROUTE socket in the current namespace.
    static Result<Netlink> open();

    Netlink(Netlink&&) noexcept;
    Netlink& operator=(Netlink&&) noexcept;
    ~Netlink();

    Status set_mtu(int ifindex, uint32_t mtu);
    Status set_up(int ifindex, bool up);
    Result<uint32_t> mtu(int ifindex);
    // Adds `local` (address/prefix) to the interface. With `peer` (a TUN
    // point-to-point gateway), the address is installed as local peer peer/len.
    // An address the interface already has is an error ("File exists").
    Status add_address(int ifindex, const core::IpPrefix& local);
    // IPv4 only (libnl-route refuses IPv6 peers).
    Status add_address(int ifindex, const core::IpPrefix& local, const core::IpAddress& peer);
    Status delete_address(int ifindex, const core::IpPrefix& local);
    // Adds a route to `destination` through the interface, via `gateway` when
    // given (marked on-link so a TUN needs no covering prefix). An identical
    // route that already exists is not an error.
    Status add_route(int ifindex, const core::IpPrefix& destination,
                     const core::IpAddress* gateway);
    Status delete_route(int ifindex, const core::IpPrefix& destination,
                        const core::IpAddress* gateway);
    // The index of the interface that holds the local address, 0 if none.
    Result<int> interface_with_address(const core::IpAddress& address);

private:
    explicit Netlink(nl_sock* sock);
    struct Deleter {
        void operator()(nl_sock* s) const;
    };
    std::unique_ptr<nl_sock, Deleter> sock_;
};

}  // namespace mlvpn::netlink
