// SPDX-License-Identifier: BSD-2-Clause
#include "priv/link_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "core/wire.hpp"
#include "tests/netns.hpp"
#include "tests/priv/test_support.hpp"

using mlvpn::test::contains;
using mlvpn::core::Endpoint;
using mlvpn::priv::LinkSocket;
using mlvpn::priv::LinkSocketSpec;
using mlvpn::priv::open_link_socket;
using mlvpn::test::NetnsGuard;
using mlvpn::test::run;
using mlvpn::test::run_in_child;

namespace {

Endpoint endpoint(const char* host, uint16_t port) {
    Endpoint e;
    if (std::strchr(host, ':')) {
        e.addr.in6.sin6_family = AF_INET6;
        e.addr.in6.sin6_port = htons(port);
        REQUIRE(inet_pton(AF_INET6, host, &e.addr.in6.sin6_addr) == 1);
        e.len = sizeof(sockaddr_in6);
    } else {
        e.addr.in4.sin_family = AF_INET;
        e.addr.in4.sin_port = htons(port);
        REQUIRE(inet_pton(AF_INET, host, &e.addr.in4.sin_addr) == 1);
        e.len = sizeof(sockaddr_in);
    }
    return e;
}

uint16_t port_of(const Endpoint& e) {
    return ntohs(e.addr.sa.sa_family == AF_INET6 ? e.addr.in6.sin6_port : e.addr.in4.sin_port);
}

LinkSocketSpec spec(const char* name, Endpoint bind, Endpoint remote = {}) {
    LinkSocketSpec s;
    s.name = name;
    s.bind = bind;
    s.remote = remote;
    return s;
}

int int_option(int fd, int level, int option) {
    int value = -1;
    socklen_t len = sizeof value;
    REQUIRE(getsockopt(fd, level, option, &value, &len) == 0);
    return value;
}

// Sends on `fd` to `dest` and returns the sender address `to` saw.
Endpoint send_and_receive(int fd, const Endpoint& dest, const LinkSocket& to) {
    REQUIRE(sendto(fd, "hello", 5, 0, &dest.addr.sa, dest.len) == 5);
    pollfd pfd{to.fds[0].get(), POLLIN, 0};
    REQUIRE(poll(&pfd, 1, 2000) == 1);
    char buf[16];
    Endpoint sender;
    socklen_t len = sizeof sender.addr;
    REQUIRE(recvfrom(to.fds[0].get(), buf, sizeof buf, 0, &sender.addr.sa, &len) == 5);
    sender.len = len;
    CHECK(std::memcmp(buf, "hello", 5) == 0);
    return sender;
}

// Sends on `from` (a client: to its remote) and returns the sender address
// `to` saw.
Endpoint send_and_receive(const LinkSocket& from, const LinkSocket& to) {
    return send_and_receive(from.fds[0].get(), from.remote, to);
}

}  // namespace

TEST_CASE("open_link_socket: bind and connect, IPv4 and IPv6") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    for (const char* host : {"127.0.0.1", "::1"}) {
        CAPTURE(std::string(host));
        auto server = open_link_socket(spec("server", endpoint(host, 0)));
        REQUIRE_MESSAGE(server, server.error().message);
        CHECK(server->remote.empty());
        CHECK(port_of(server->local) != 0);
        CHECK(server->local.addr.sa.sa_family == (std::strchr(host, ':') ? AF_INET6 : AF_INET));

        auto client = open_link_socket(spec("client", endpoint(host, 0), server->local));
        REQUIRE_MESSAGE(client, client.error().message);
        CHECK(client->remote == server->local);
        CHECK(port_of(client->local) != 0);
        CHECK(send_and_receive(*client, *server) == client->local);
        // The server's answer comes from exactly the address the client
        // keeps: the worker drops anything else (core/link.hpp, from_peer).
        CHECK(send_and_receive(server->fds[0].get(), client->local, *client) == client->remote);

        REQUIRE(client->fds.size() == 1);
        const int fd = client->fds[0].get();
        CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
        CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
        CHECK(int_option(fd, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM);
        CHECK(int_option(fd, SOL_SOCKET, SO_REUSEADDR) == 0);
        CHECK(int_option(fd, SOL_SOCKET, SO_REUSEPORT) == 1);
        CHECK(int_option(fd, SOL_SOCKET, SO_MARK) == 0);
        // Bound, not connected: a group of connected sockets would not spread.
        Endpoint peer;
        socklen_t len = sizeof peer.addr;
        CHECK(getpeername(fd, &peer.addr.sa, &len) == -1);
        CHECK(errno == ENOTCONN);
    }
}

TEST_CASE("open_link_socket: without a bind address the remote picks the family") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    auto server = open_link_socket(spec("server", endpoint("::1", 0)));
    REQUIRE(server);
    auto client = open_link_socket(spec("client", Endpoint{}, server->local));
    REQUIRE_MESSAGE(client, client.error().message);
    CHECK(client->local.addr.sa.sa_family == AF_INET6);
    CHECK(client->local.to_string().rfind("[::1]:", 0) == 0);
    CHECK(send_and_receive(*client, *server) == client->local);
}

TEST_CASE("open_link_socket: [::] is dual-stack") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    // The namespace's default says IPv6 only; the socket must override it.
    REQUIRE(run("sysctl -q -w net.ipv6.bindv6only=1") == 0);
    auto server = open_link_socket(spec("server", endpoint("::", 0)));
    REQUIRE_MESSAGE(server, server.error().message);
    CHECK(int_option(server->fds[0].get(), IPPROTO_IPV6, IPV6_V6ONLY) == 0);
    const uint16_t port = port_of(server->local);

    // An IPv4 client reaches it; the server sees an IPv4-mapped sender.
    auto v4 = open_link_socket(spec("v4", endpoint("127.0.0.1", 0), endpoint("127.0.0.1", port)));
    REQUIRE_MESSAGE(v4, v4.error().message);
    const Endpoint sender = send_and_receive(*v4, *server);
    CHECK(sender.addr.sa.sa_family == AF_INET6);
    CHECK(sender.to_string() == v4->local.to_string());

    // An IPv6 socket on [::] reaches an IPv4 remote through the mapping,
    // and keeps the peer as it will see senders: IPv4-mapped.
    auto peer = open_link_socket(spec("peer", endpoint("127.0.0.1", 0)));
    REQUIRE(peer);
    auto mapped = open_link_socket(spec("mapped", endpoint("::", 0), peer->local));
    REQUIRE_MESSAGE(mapped, mapped.error().message);
    CHECK(mapped->remote.addr.sa.sa_family == AF_INET6);
    CHECK(mapped->remote.to_string() == peer->local.to_string());
    CHECK(send_and_receive(*mapped, *peer).to_string() == mapped->local.to_string());
    const Endpoint mapped_v4 = endpoint("127.0.0.1", port_of(mapped->local));
    CHECK(send_and_receive(peer->fds[0].get(), mapped_v4, *mapped) == mapped->remote);
}

TEST_CASE("open_link_socket: family mismatches") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    auto v6_to_v4 = open_link_socket(spec("dsl1", endpoint("::1", 0), endpoint("127.0.0.1", 5080)));
    REQUIRE(!v6_to_v4);
    CHECK(v6_to_v4.error().message ==
          "link dsl1: remote 127.0.0.1:5080 is IPv4 but the bind address [::1]:0 is IPv6 "
          "(only [::] serves both)");
    auto v4_to_v6 = open_link_socket(spec("dsl1", endpoint("127.0.0.1", 0), endpoint("::1", 5080)));
    REQUIRE(!v4_to_v6);
    CHECK(v4_to_v6.error().message ==
          "link dsl1: remote [::1]:5080 is IPv6 but the bind address 127.0.0.1:0 is IPv4");
}

TEST_CASE("open_link_socket: a port in use is an error, not shared") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    auto first = open_link_socket(spec("dsl0", endpoint("127.0.0.1", 0)));
    REQUIRE(first);
    const uint16_t port = port_of(first->local);
    auto second = open_link_socket(spec("dsl1", endpoint("127.0.0.1", port)));
    REQUIRE(!second);
    CHECK(second.error().message ==
          "link dsl1: bind 127.0.0.1:" + std::to_string(port) + ": Address already in use");
    // [::] covers 127.0.0.1 too.
    auto any = open_link_socket(spec("dsl2", endpoint("::", port)));
    REQUIRE(!any);
    CHECK(contains(any.error().message, "link dsl2: bind [::]:" + std::to_string(port)));

    auto not_local = open_link_socket(spec("dsl3", endpoint("198.18.0.1", 5080)));
    REQUIRE(!not_local);
    CHECK(not_local.error().message ==
          "link dsl3: bind 198.18.0.1:5080: Cannot assign requested address");
}

TEST_CASE("open_link_socket: path MTU") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    // lnk0 (10.1.0.1/24, 2001:db8:1::1/64, MTU 1400) <-> lnk1, plus a route
    // with its own, smaller MTU.
    REQUIRE(run("ip link add lnk0 mtu 1400 type veth peer name lnk1 mtu 1400 && "
                "ip addr add 10.1.0.1/24 dev lnk0 && "
                "ip -6 addr add 2001:db8:1::1/64 dev lnk0 nodad && "
                "ip link set lnk0 up && ip link set lnk1 up && "
                "ip route add 10.9.0.0/24 dev lnk0 mtu 1300") == 0);

    struct Case {
        const char* name;
        Endpoint bind;
        Endpoint remote;
        uint32_t mtu;
    } cases[] = {
        {"connected v4", endpoint("10.1.0.1", 0), endpoint("10.1.0.2", 5080), 1400},
        {"connected v6", endpoint("2001:db8:1::1", 0), endpoint("2001:db8:1::2", 5080), 1400},
        {"route mtu", endpoint("0.0.0.0", 0), endpoint("10.9.0.5", 5080), 1300},
        {"v6 socket, v4 peer", endpoint("::", 0), endpoint("10.1.0.2", 5080), 1400},
        {"bound v4 address", endpoint("10.1.0.1", 0), Endpoint{}, 1400},
        {"bound v6 address", endpoint("2001:db8:1::1", 0), Endpoint{}, 1400},
        {"bound v4-mapped", endpoint("::ffff:10.1.0.1", 0), Endpoint{}, 1400},
        {"bound any", endpoint("0.0.0.0", 0), Endpoint{}, 1500},
        {"bound any v6", endpoint("::", 0), Endpoint{}, 1500},
    };
    for (const Case& c : cases) {
        CAPTURE(std::string(c.name));
        auto link = open_link_socket(spec(c.name, c.bind, c.remote));
        REQUIRE_MESSAGE(link, link.error().message);
        CHECK(link->path_mtu == c.mtu);
    }

    // The loopback route follows lo's MTU.
    REQUIRE(run("ip link set lo mtu 1450") == 0);
    auto lo = open_link_socket(spec("lo", endpoint("127.0.0.1", 0), endpoint("127.0.0.1", 5080)));
    REQUIRE(lo);
    CHECK(lo->path_mtu == 1450);

    // bindinterface decides for a socket bound to the any address.
    LinkSocketSpec bound = spec("wan", endpoint("0.0.0.0", 0));
    bound.bindinterface = "lnk0";
    auto on_device = open_link_socket(bound);
    REQUIRE_MESSAGE(on_device, on_device.error().message);
    CHECK(on_device->path_mtu == 1400);
}

TEST_CASE("open_link_socket: SO_MARK, SO_BINDTODEVICE and buffers") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    REQUIRE(run("ip link add lnk0 type veth peer name lnk1 && ip addr add 10.1.0.1/24 dev lnk0 && "
                "ip link set lnk0 up && ip link set lnk1 up") == 0);

    LinkSocketSpec s = spec("dsl1", endpoint("0.0.0.0", 0));
    s.fwmark = 0x2a;
    s.bindinterface = "lnk0";
    s.buffer_bytes = 1 << 20;
    s.sockets = 3;
    auto link = open_link_socket(s);
    REQUIRE_MESSAGE(link, link.error().message);
    REQUIRE(link->fds.size() == 3);
    for (const auto& socket : link->fds) {  // every socket of the group
        const int fd = socket.get();
        CHECK(int_option(fd, SOL_SOCKET, SO_MARK) == 0x2a);
        char device[IFNAMSIZ] = {};
        socklen_t len = sizeof device;
        REQUIRE(getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device, &len) == 0);
        CHECK(std::string(device) == "lnk0");
        // The kernel doubles the value for its bookkeeping; FORCE passes rmem_max.
        CHECK(int_option(fd, SOL_SOCKET, SO_RCVBUF) == 2 << 20);
        CHECK(int_option(fd, SOL_SOCKET, SO_SNDBUF) == 2 << 20);
    }

    // Bound to lnk0, it cannot use an address of another interface.
    LinkSocketSpec wrong = spec("dsl1", endpoint("127.0.0.1", 0), endpoint("127.0.0.1", 5080));
    wrong.bindinterface = "lnk0";
    CHECK(!open_link_socket(wrong));

    LinkSocketSpec missing = spec("dsl1", endpoint("0.0.0.0", 0));
    missing.bindinterface = "nosuch0";
    auto no_device = open_link_socket(missing);
    REQUIRE(!no_device);
    CHECK(no_device.error().message == "link dsl1: SO_BINDTODEVICE nosuch0: No such device");

    missing.bindinterface = "abcdefghijklmnop";
    auto too_long = open_link_socket(missing);
    REQUIRE(!too_long);
    CHECK(contains(too_long.error().message, "name longer than 15 characters"));
}

TEST_CASE("open_link_socket: without CAP_NET_ADMIN") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    // Buffers fall back to the unforced options, capped by rmem_max/wmem_max...
    const std::string buffers = run_in_child([] {
        if (!mlvpn::test::drop_net_admin()) return std::string("capset failed");
        LinkSocketSpec s = spec("dsl1", endpoint("127.0.0.1", 0));
        s.buffer_bytes = 64 << 20;
        auto link = open_link_socket(s);
        if (!link) return link.error().message;
        int value = 0;
        socklen_t len = sizeof value;
        getsockopt(link->fds[0].get(), SOL_SOCKET, SO_RCVBUF, &value, &len);
        return value > 0 && value < (128 << 20) ? std::string("ok") : std::to_string(value);
    });
    CHECK(buffers == "ok");
    // ...but a mark cannot be had without privilege.
    const std::string mark = run_in_child([] {
        if (!mlvpn::test::drop_net_admin()) return std::string("capset failed");
        LinkSocketSpec s = spec("dsl1", endpoint("127.0.0.1", 0));
        s.fwmark = 0x2a;
        auto link = open_link_socket(s);
        return link ? std::string("marked") : link.error().message;
    });
    CHECK(mark == "link dsl1: SO_MARK 0x2a: Operation not permitted");
}

TEST_CASE("open_link_socket: bad specs") {
    // Rejected before any socket exists: no root needed.
    auto nothing = open_link_socket(spec("dsl1", Endpoint{}));
    REQUIRE(!nothing);
    CHECK(nothing.error().message == "link dsl1: neither a bind address nor a remote address");

    Endpoint truncated = endpoint("127.0.0.1", 0);
    truncated.len = 4;
    CHECK(!open_link_socket(spec("dsl1", truncated)));
    Endpoint unix_family = endpoint("127.0.0.1", 0);
    unix_family.addr.sa.sa_family = AF_UNIX;
    CHECK(!open_link_socket(spec("dsl1", endpoint("127.0.0.1", 0), unix_family)));

    for (uint32_t sockets : {0u, mlvpn::priv::kMaxGroupSockets + 1}) {
        LinkSocketSpec group = spec("dsl1", endpoint("127.0.0.1", 0));
        group.sockets = sockets;
        auto refused = open_link_socket(group);
        REQUIRE(!refused);
        CHECK(contains(refused.error().message, "sockets asked for (1 to 64)"));
    }

    LinkSocketSpec negative = spec("dsl1", endpoint("127.0.0.1", 0));
    negative.buffer_bytes = -1;
    auto bad_buffer = open_link_socket(negative);
    REQUIRE(!bad_buffer);
    CHECK(bad_buffer.error().message == "link dsl1: negative buffer size -1");
}

TEST_CASE("link socket: UDP_GRO only when asked for") {
    auto plain = open_link_socket(spec("plain", endpoint("127.0.0.1", 0)));
    REQUIRE(plain);
    CHECK_FALSE(plain->gro);
    CHECK(int_option(plain->fds[0].get(), SOL_UDP, UDP_GRO) == 0);
    LinkSocketSpec s = spec("gro", endpoint("127.0.0.1", 0));
    s.udp_gro = true;
    s.sockets = 2;
    auto gro = open_link_socket(s);
    REQUIRE(gro);
    CHECK(gro->gro);  // Linux 5.0 and later
    for (const auto& fd : gro->fds) CHECK(int_option(fd.get(), SOL_UDP, UDP_GRO) == 1);
}

namespace {

// A transport header's first bytes: the type, then the counter's space in
// the top bits of byte wire::kWireSpaceByte (core/wire.hpp).
std::string datagram(uint8_t type, uint8_t space, size_t size = 32) {
    std::string d(size, '\0');
    d[0] = static_cast<char>(type);
    if (size > mlvpn::core::wire::kWireSpaceByte)
        d[mlvpn::core::wire::kWireSpaceByte] = static_cast<char>(space << mlvpn::core::wire::kWireSpaceShift | 0x3);
    return d;
}

// Which socket of the group got the one datagram sent since: -1 if none,
// -2 if more than one.
int receiver(const LinkSocket& group) {
    std::vector<pollfd> fds;
    for (const auto& fd : group.fds) fds.push_back(pollfd{fd.get(), POLLIN, 0});
    if (poll(fds.data(), fds.size(), 2000) <= 0) return -1;
    int got = -1;
    for (size_t i = 0; i < fds.size(); ++i) {
        char buf[64];
        while (recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT) >= 0) got = got == -1 ? static_cast<int>(i) : -2;
    }
    return got;
}

}  // namespace

TEST_CASE("link socket group: one port, datagrams steered by their counter space") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    REQUIRE(run("ip link set lo up") == 0);

    for (const char* host : {"127.0.0.1", "::"}) {
        CAPTURE(std::string(host));
        LinkSocketSpec s = spec("server", endpoint(host, 0));
        s.sockets = 4;
        auto group = open_link_socket(s);
        REQUIRE_MESSAGE(group, group.error().message);
        REQUIRE(group->fds.size() == 4);
        // An ephemeral port, the same for every socket.
        const uint16_t port = port_of(group->local);
        CHECK(port != 0);
        for (const auto& fd : group->fds) {
            Endpoint local;
            socklen_t len = sizeof local.addr;
            REQUIRE(getsockname(fd.get(), &local.addr.sa, &len) == 0);
            local.len = len;
            CHECK(local == group->local);
            CHECK(int_option(fd.get(), SOL_SOCKET, SO_REUSEPORT) == 1);
        }

        // One sender, one source port: the kernel's hash alone would give
        // every datagram to one socket. (IPv4 on the [::] group too.)
        mlvpn::Fd sender(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        REQUIRE(sender);
        const Endpoint to = endpoint("127.0.0.1", port);
        const auto steer = [&](const std::string& d) {
            REQUIRE(sendto(sender.get(), d.data(), d.size(), 0, &to.addr.sa, to.len) == static_cast<ssize_t>(d.size()));
            return receiver(*group);
        };
        for (uint8_t space = 0; space < 9; ++space) {
            CAPTURE(int(space));
            CHECK(steer(datagram(3, space)) == space % 4);  // Data
            CHECK(steer(datagram(4, space)) == space % 4);  // Control
        }
        CHECK(steer(datagram(4, 63)) == 3);
        // Handshakes, junk and datagrams too short to have a space: socket 0.
        CHECK(steer(datagram(1, 3)) == 0);
        CHECK(steer(datagram(2, 3)) == 0);
        CHECK(steer(datagram(7, 3)) == 0);
        CHECK(steer(datagram(3, 3, mlvpn::core::wire::kWireSpaceByte)) == 0);
        CHECK(steer(datagram(3, 3, 1)) == 0);
    }
}

TEST_CASE("link socket group: a port taken by a plain socket or another group is refused") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    mlvpn::Fd plain(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(plain);
    Endpoint taken = endpoint("127.0.0.1", 0);
    REQUIRE(bind(plain.get(), &taken.addr.sa, taken.len) == 0);
    socklen_t len = sizeof taken.addr;
    REQUIRE(getsockname(plain.get(), &taken.addr.sa, &len) == 0);
    const uint16_t port = port_of(taken);
    LinkSocketSpec s = spec("dsl1", endpoint("127.0.0.1", port));
    s.sockets = 4;
    auto over_plain = open_link_socket(s);
    REQUIRE(!over_plain);
    CHECK(over_plain.error().message ==
          "link dsl1: bind 127.0.0.1:" + std::to_string(port) + ": Address already in use");

    // A group (every socket SO_REUSEPORT, the same user) would take a new
    // socket with SO_REUSEPORT in silently; the probe has none.
    LinkSocketSpec first_spec = spec("dsl2", endpoint("127.0.0.1", 0));
    first_spec.sockets = 2;
    auto first = open_link_socket(first_spec);
    REQUIRE_MESSAGE(first, first.error().message);
    const uint16_t group_port = port_of(first->local);
    for (uint32_t sockets : {1u, 2u}) {
        LinkSocketSpec second = spec("dsl3", endpoint("127.0.0.1", group_port));
        second.sockets = sockets;
        auto refused = open_link_socket(second);
        REQUIRE(!refused);
        CHECK(refused.error().message ==
              "link dsl3: bind 127.0.0.1:" + std::to_string(group_port) + ": Address already in use");
        // And the any address covers it too.
        auto any = open_link_socket(spec("dsl4", endpoint("::", group_port)));
        REQUIRE(!any);
        CHECK(contains(any.error().message, "Address already in use"));
    }
    // Once the group is closed the port is free again.
    first->fds.clear();
    LinkSocketSpec again = spec("dsl3", endpoint("127.0.0.1", group_port));
    again.sockets = 2;
    auto reopened = open_link_socket(again);
    REQUIRE_MESSAGE(reopened, reopened.error().message);
    CHECK(port_of(reopened->local) == group_port);
}

TEST_CASE("link socket group: a client's group, bound where the route says and not connected") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    REQUIRE(run("ip link add lnk0 type veth peer name lnk1 && ip addr add 10.1.0.1/24 dev lnk0 && "
                "ip link set lnk0 up && ip link set lnk1 up") == 0);

    // No bind address: the any address of the remote's family, and the
    // source address the route to it picks (10.1.0.1), as connect() did.
    LinkSocketSpec s = spec("dsl1", Endpoint{}, endpoint("10.1.0.2", 5080));
    s.sockets = 3;
    auto client = open_link_socket(s);
    REQUIRE_MESSAGE(client, client.error().message);
    CHECK(client->local.to_string().rfind("10.1.0.1:", 0) == 0);
    CHECK(client->remote == endpoint("10.1.0.2", 5080));
    for (const auto& fd : client->fds) {
        Endpoint peer;
        socklen_t len = sizeof peer.addr;
        CHECK(getpeername(fd.get(), &peer.addr.sa, &len) == -1);
    }
    // The configured port, when there is one.
    s.bind = endpoint("0.0.0.0", 40123);
    auto fixed = open_link_socket(s);
    REQUIRE_MESSAGE(fixed, fixed.error().message);
    CHECK(fixed->local.to_string() == "10.1.0.1:40123");
    // No route to the remote: the probe's connect() says so, as before.
    auto unreachable = open_link_socket(spec("dsl2", Endpoint{}, endpoint("192.0.2.1", 5080)));
    REQUIRE(!unreachable);
    CHECK(unreachable.error().message == "link dsl2: connect 192.0.2.1:5080: Network is unreachable");
}
