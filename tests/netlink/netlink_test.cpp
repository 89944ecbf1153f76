// SPDX-License-Identifier: BSD-2-Clause
// Netlink against the real kernel, each case in a private network namespace.
#include "netlink/netlink.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cstring>
#include <string>

#include <doctest/doctest.h>

#include "priv/fd.hpp"
#include "tests/netns.hpp"

using mlvpn::Fd;
using mlvpn::core::IpAddress;
using mlvpn::core::IpPrefix;
using mlvpn::netlink::Netlink;
using mlvpn::test::NetnsGuard;
using mlvpn::test::output_of;
using mlvpn::test::run;

namespace {

IpAddress address(const char* text) {
    IpAddress a;
    a.family = std::strchr(text, ':') ? AF_INET6 : AF_INET;
    REQUIRE(inet_pton(a.family, text, a.bytes.data()) == 1);
    a.text = text;
    return a;
}

IpPrefix prefix(const char* text) {
    std::string s(text);
    const auto slash = s.find('/');
    REQUIRE(slash != std::string::npos);
    IpPrefix p;
    p.address = address(s.substr(0, slash).c_str());
    p.prefix_len = static_cast<uint8_t>(std::stoi(s.substr(slash + 1)));
    p.text = s;
    return p;
}

// A TUN device made here rather than with priv::create_tun, which lives in
// another library; attached, so it has carrier like the daemon's.
struct TestTun {
    Fd fd;
    std::string name;
    int ifindex = 0;
};

TestTun make_tun(const char* name) {
    TestTun tun;
    tun.fd.reset(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    REQUIRE(tun.fd);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    REQUIRE(::ioctl(tun.fd.get(), TUNSETIFF, &ifr) == 0);
    tun.name = ifr.ifr_name;
    tun.ifindex = static_cast<int>(if_nametoindex(tun.name.c_str()));
    REQUIRE(tun.ifindex > 0);
    return tun;
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

std::string ip(const std::string& args) { return output_of("ip " + args + " 2>&1"); }

}  // namespace

TEST_CASE("netlink: link MTU and up/down on a TUN device") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    TestTun tun = make_tun("nltest0");
    auto nl = Netlink::open();
    REQUIRE_MESSAGE(nl, nl.error().message);

    REQUIRE(nl->set_mtu(tun.ifindex, 1424));
    auto mtu = nl->mtu(tun.ifindex);
    REQUIRE(mtu);
    CHECK(*mtu == 1424);
    CHECK(contains(ip("-o link show dev nltest0"), "mtu 1424"));

    REQUIRE(nl->set_up(tun.ifindex, true));
    CHECK(contains(ip("-o link show dev nltest0"), ",UP"));
    REQUIRE(nl->set_up(tun.ifindex, false));
    CHECK(!contains(ip("-o link show dev nltest0"), ",UP"));
    // The MTU survived the flag changes: rtnl_link_change sent only the flag.
    CHECK(*nl->mtu(tun.ifindex) == 1424);
}

TEST_CASE("netlink: link errors name the operation and the kernel's reason") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    TestTun tun = make_tun("nltest0");
    auto nl = Netlink::open();
    REQUIRE(nl);

    auto missing = nl->set_mtu(9999, 1424);
    REQUIRE(!missing);
    CHECK(missing.error().message == "netlink: set mtu 1424 on ifindex 9999: No such device");
    CHECK(!nl->mtu(9999));
    CHECK(!nl->set_up(9999, true));

    auto zero = nl->set_mtu(0, 1424);
    REQUIRE(!zero);
    CHECK(contains(zero.error().message, "invalid interface index"));

    auto tiny = nl->set_mtu(tun.ifindex, 20);  // below the IPv4 minimum of 68
    REQUIRE(!tiny);
    CHECK(contains(tiny.error().message,
                   "netlink: set mtu 20 on ifindex " + std::to_string(tun.ifindex) + ": "));
    CHECK(contains(tiny.error().message, "Invalid argument"));
    CHECK(*nl->mtu(tun.ifindex) == 1500);
}

TEST_CASE("netlink: addresses") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    TestTun tun = make_tun("nltest0");
    auto nl = Netlink::open();
    REQUIRE(nl);
    REQUIRE(nl->set_up(tun.ifindex, true));

    auto v4 = nl->add_address(tun.ifindex, prefix("10.42.43.1/30"));
    REQUIRE_MESSAGE(v4, v4.error().message);
    auto v6 = nl->add_address(tun.ifindex, prefix("2001:db8:42::1/64"));
    REQUIRE_MESSAGE(v6, v6.error().message);
    auto p2p = nl->add_address(tun.ifindex, prefix("10.42.44.1/30"), address("10.42.44.2"));
    REQUIRE_MESSAGE(p2p, p2p.error().message);

    const std::string shown = ip("-o addr show dev nltest0");
    CHECK(contains(shown, "inet 10.42.43.1/30"));
    CHECK(contains(shown, "inet6 2001:db8:42::1/64"));
    CHECK(contains(shown, "inet 10.42.44.1 peer 10.42.44.2/30"));

    CHECK(*nl->interface_with_address(address("10.42.43.1")) == tun.ifindex);
    CHECK(*nl->interface_with_address(address("2001:db8:42::1")) == tun.ifindex);
    CHECK(*nl->interface_with_address(address("10.42.44.1")) == tun.ifindex);
    CHECK(*nl->interface_with_address(address("127.0.0.1")) == static_cast<int>(if_nametoindex("lo")));
    // The peer is not an address of ours, nor is another host of the subnet.
    CHECK(*nl->interface_with_address(address("10.42.44.2")) == 0);
    CHECK(*nl->interface_with_address(address("10.42.43.2")) == 0);
    CHECK(!nl->interface_with_address(IpAddress{}));

    auto again = nl->add_address(tun.ifindex, prefix("10.42.43.1/30"));
    REQUIRE(!again);
    // The kernel's extended ack may follow: "File exists (ipv4: Address already assigned)".
    CHECK(again.error().message.rfind("netlink: add address 10.42.43.1/30 on ifindex " +
                                          std::to_string(tun.ifindex) + ": File exists",
                                      0) == 0);

    REQUIRE(nl->delete_address(tun.ifindex, prefix("10.42.43.1/30")));
    REQUIRE(nl->delete_address(tun.ifindex, prefix("2001:db8:42::1/64")));
    const std::string after = ip("-o addr show dev nltest0");
    CHECK(!contains(after, "10.42.43.1"));
    CHECK(!contains(after, "2001:db8:42::1"));
    CHECK(contains(after, "10.42.44.1 peer"));
    CHECK(*nl->interface_with_address(address("10.42.43.1")) == 0);
    auto gone = nl->delete_address(tun.ifindex, prefix("10.42.43.1/30"));
    REQUIRE(!gone);
    CHECK(contains(gone.error().message, "netlink: delete address 10.42.43.1/30"));
}

TEST_CASE("netlink: address errors") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    TestTun tun = make_tun("nltest0");
    auto nl = Netlink::open();
    REQUIRE(nl);

    auto missing = nl->add_address(9999, prefix("10.42.43.1/30"));
    REQUIRE(!missing);
    CHECK(contains(missing.error().message, "netlink: add address 10.42.43.1/30 on ifindex 9999: "));

    auto no_family = nl->add_address(tun.ifindex, IpPrefix{});
    REQUIRE(!no_family);
    CHECK(contains(no_family.error().message, "not an IPv4 or IPv6 address"));

    IpPrefix too_long = prefix("10.42.43.1/30");
    too_long.prefix_len = 33;
    auto bad_len = nl->add_address(tun.ifindex, too_long);
    REQUIRE(!bad_len);
    CHECK(contains(bad_len.error().message, "prefix length 33 is too long"));

    auto v6_peer = nl->add_address(tun.ifindex, prefix("2001:db8::1/64"), address("2001:db8::2"));
    REQUIRE(!v6_peer);
    CHECK(contains(v6_peer.error().message, "IPv4 only"));
    auto mixed_peer = nl->add_address(tun.ifindex, prefix("10.0.0.1/30"), address("2001:db8::2"));
    CHECK(!mixed_peer);

    CHECK(ip("-o addr show dev nltest0").find("inet") == std::string::npos);
}

TEST_CASE("netlink: routes with and without a gateway") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    TestTun tun = make_tun("nltest0");
    auto nl = Netlink::open();
    REQUIRE(nl);
    REQUIRE(nl->set_up(tun.ifindex, true));
    REQUIRE(nl->add_address(tun.ifindex, prefix("10.42.43.1/30")));

    const IpAddress gw4 = address("10.200.0.1");  // covered by no address: needs onlink
    const IpAddress gw6 = address("2001:db8:ff::1");
    struct Case {
        const char* destination;
        const IpAddress* gateway;
        const char* shown;
    } cases[] = {
        {"10.99.0.0/16", nullptr, "10.99.0.0/16 dev nltest0"},
        {"192.0.2.0/24", &gw4, "192.0.2.0/24 via 10.200.0.1 dev nltest0"},
        {"0.0.0.0/1", &gw4, "0.0.0.0/1 via 10.200.0.1 dev nltest0"},
        {"2001:db8:99::/48", nullptr, "2001:db8:99::/48 dev nltest0"},
        {"2001:db8:98::/48", &gw6, "2001:db8:98::/48 via 2001:db8:ff::1 dev nltest0"},
    };
    for (const Case& c : cases) {
        CAPTURE(std::string(c.destination));
        const IpPrefix dst = prefix(c.destination);
        auto added = nl->add_route(tun.ifindex, dst, c.gateway);
        REQUIRE_MESSAGE(added, added.error().message);
        const std::string family = dst.address.family == AF_INET6 ? "-6" : "-4";
        const std::string shown = ip(family + " route show " + c.destination);
        CHECK(contains(shown, c.shown));
        if (c.gateway) CHECK(contains(shown, "onlink"));
        // Adding the identical route again is not an error.
        auto twice = nl->add_route(tun.ifindex, dst, c.gateway);
        CHECK_MESSAGE(twice, twice.error().message);
    }

    // The kernel's own prefix route for the interface address counts as the same.
    CHECK(nl->add_route(tun.ifindex, prefix("10.42.43.0/30"), nullptr));

    // A route to the same destination, but another way, is refused, not replaced.
    const IpAddress other = address("10.200.0.2");
    auto different = nl->add_route(tun.ifindex, prefix("192.0.2.0/24"), &other);
    REQUIRE(!different);
    CHECK(different.error().message ==
          "netlink: add route 192.0.2.0/24 via 10.200.0.2 on ifindex " + std::to_string(tun.ifindex) +
              ": a different route to 192.0.2.0/24 already exists");
    CHECK(contains(ip("-4 route show 192.0.2.0/24"), "via 10.200.0.1"));
    auto no_gateway = nl->add_route(tun.ifindex, prefix("192.0.2.0/24"), nullptr);
    CHECK(!no_gateway);

    for (const Case& c : cases) {
        CAPTURE(std::string(c.destination));
        auto deleted = nl->delete_route(tun.ifindex, prefix(c.destination), c.gateway);
        CHECK_MESSAGE(deleted, deleted.error().message);
        const std::string family = prefix(c.destination).address.family == AF_INET6 ? "-6" : "-4";
        CHECK(ip(family + " route show " + c.destination).empty());
    }
    auto gone = nl->delete_route(tun.ifindex, prefix("10.99.0.0/16"), nullptr);
    REQUIRE(!gone);
    CHECK(gone.error().message == "netlink: delete route 10.99.0.0/16 on ifindex " +
                                      std::to_string(tun.ifindex) + ": no such route");
}

TEST_CASE("netlink: route errors") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    TestTun tun = make_tun("nltest0");
    auto nl = Netlink::open();
    REQUIRE(nl);

    // Down: the kernel's errno and its explanation, not libnl's "Unspecific failure".
    auto down = nl->add_route(tun.ifindex, prefix("10.99.0.0/16"), nullptr);
    REQUIRE(!down);
    CHECK(contains(down.error().message, "netlink: add route 10.99.0.0/16 on ifindex "));
    CHECK(contains(down.error().message, "Network is down"));
    MESSAGE(down.error().message);

    REQUIRE(nl->set_up(tun.ifindex, true));
    auto missing = nl->add_route(9999, prefix("10.99.0.0/16"), nullptr);
    REQUIRE(!missing);
    CHECK(contains(missing.error().message, "on ifindex 9999: "));

    const IpAddress gw6 = address("2001:db8::1");
    auto mixed = nl->add_route(tun.ifindex, prefix("10.99.0.0/16"), &gw6);
    REQUIRE(!mixed);
    CHECK(contains(mixed.error().message, "different address families"));
    CHECK(!nl->delete_route(tun.ifindex, prefix("10.99.0.0/16"), &gw6));

    auto no_family = nl->add_route(tun.ifindex, IpPrefix{}, nullptr);
    REQUIRE(!no_family);
    CHECK(contains(no_family.error().message, "not an IPv4 or IPv6 address"));

    // IPv4 host bits under the prefix: the kernel refuses and says why.
    auto host_bits = nl->add_route(tun.ifindex, prefix("10.99.0.1/16"), nullptr);
    REQUIRE(!host_bits);
    CHECK(contains(host_bits.error().message, "Invalid argument"));
    MESSAGE(host_bits.error().message);

    CHECK(ip("-4 route show dev nltest0").empty());
}

TEST_CASE("netlink: a moved Netlink keeps working") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    TestTun tun = make_tun("nltest0");
    auto opened = Netlink::open();
    REQUIRE(opened);
    Netlink nl = std::move(*opened);
    Netlink other = std::move(nl);
    CHECK(other.set_mtu(tun.ifindex, 1400));
    auto missing = other.set_mtu(9999, 1400);
    REQUIRE(!missing);
    CHECK(contains(missing.error().message, "No such device"));
}
