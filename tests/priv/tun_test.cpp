// SPDX-License-Identifier: BSD-2-Clause
#include "priv/tun.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>

#include <doctest/doctest.h>

#include "tests/netns.hpp"

using mlvpn::core::TunType;
using mlvpn::priv::create_tun;
using mlvpn::priv::TunDevice;
using mlvpn::priv::TunOffload;
using mlvpn::test::NetnsGuard;
using mlvpn::test::output_of;
using mlvpn::test::run;
using mlvpn::test::run_in_child;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

// Addresses the device 10.77.0.1/24, brings it up, sends a 4-byte UDP
// datagram to 10.77.0.2 through it and reads back into `buf` the first IPv4
// packet, which comes behind `header` bytes. Returns the read's length (-1
// when none came).
ssize_t route_datagram_through(const TunDevice& tun, const char* name, unsigned char (&buf)[2048], size_t header) {
    REQUIRE(run(std::string("ip addr add 10.77.0.1/24 dev ") + name + " && ip link set " + name + " up") == 0);
    mlvpn::Fd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(udp);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    inet_pton(AF_INET, "10.77.0.2", &to.sin_addr);
    REQUIRE(sendto(udp.get(), "ping", 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == 4);
    ssize_t n = -1;
    for (int tries = 0; tries < 50 && n < 0; ++tries) {  // skip IPv6 noise, if any
        pollfd pfd{tun.fd.get(), POLLIN, 0};
        REQUIRE(poll(&pfd, 1, 1000) == 1);
        n = read(tun.fd.get(), buf, sizeof buf);
        if (n > static_cast<ssize_t>(header) && (buf[header] >> 4) != 4) n = -1;
    }
    return n;
}

}  // namespace

TEST_CASE("create_tun: a TUN device, without packet information") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    auto tun = create_tun("mlvpntest0", TunType::Tun);
    REQUIRE_MESSAGE(tun, tun.error().message);
    CHECK(tun->name == "mlvpntest0");
    CHECK(tun->ifindex == static_cast<int>(if_nametoindex("mlvpntest0")));
    CHECK((fcntl(tun->fd.get(), F_GETFL) & O_NONBLOCK) != 0);
    CHECK((fcntl(tun->fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
    const std::string details = output_of("ip -d link show dev mlvpntest0");
    CHECK(contains(details, "tun type tun"));
    CHECK(contains(details, "link/none"));

    // Non-blocking: nothing to read yet.
    char empty[16];
    CHECK(read(tun->fd.get(), empty, sizeof empty) == -1);
    CHECK(errno == EAGAIN);

    // A datagram routed into the device arrives as a bare IPv4 packet: no
    // 4-byte tun_pi header in front of it (IFF_NO_PI).
    unsigned char buf[2048];
    REQUIRE(route_datagram_through(*tun, "mlvpntest0", buf, 0) == 20 + 8 + 4);
    CHECK(buf[0] == 0x45);
    CHECK(buf[9] == IPPROTO_UDP);

    // The device lives as long as its descriptor.
    tun->fd.reset();
    CHECK(if_nametoindex("mlvpntest0") == 0);
}

TEST_CASE("create_tun: offloads on a TUN device: a virtio_net_hdr on every packet") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    auto plain = create_tun("mlvpntest1", TunType::Tun);
    REQUIRE_MESSAGE(plain, plain.error().message);
    CHECK(plain->offload == TunOffload::None);
    CHECK(contains(output_of("ethtool -k mlvpntest1"), "tcp-segmentation-offload: off"));

    auto tun = create_tun("mlvpntest0", TunType::Tun, true);
    REQUIRE_MESSAGE(tun, tun.error().message);
    // USO needs Linux 6.2; TCP offloads any kernel this code runs on.
    REQUIRE(tun->offload != TunOffload::None);
    const std::string features = output_of("ethtool -k mlvpntest0");
    CHECK(contains(features, "tx-checksumming: on"));
    CHECK(contains(features, "tcp-segmentation-offload: on"));
    if (tun->offload == TunOffload::TcpUdp) CHECK(contains(features, "tx-udp-segmentation: on"));
    CHECK(std::string(to_string(tun->offload)) == (tun->offload == TunOffload::TcpUdp ? "tcp,udp" : "tcp"));

    // A datagram routed into the device comes behind a 10-byte header.
    unsigned char buf[2048];
    REQUIRE(route_datagram_through(*tun, "mlvpntest0", buf, 10) == 10 + 20 + 8 + 4);
    CHECK(buf[1] == 0);  // GSO_NONE
    CHECK(buf[10] == 0x45);
    CHECK(buf[10 + 9] == IPPROTO_UDP);

    // TAP frames never get one, whatever is asked.
    auto tap = create_tun("mlvpntap0", TunType::Tap, true);
    REQUIRE_MESSAGE(tap, tap.error().message);
    CHECK(tap->offload == TunOffload::None);
    CHECK(contains(output_of("ethtool -k mlvpntap0"), "tcp-segmentation-offload: off"));
}

TEST_CASE("create_tun: a TAP device") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    auto tap = create_tun("mlvpntap0", TunType::Tap);
    REQUIRE_MESSAGE(tap, tap.error().message);
    CHECK(tap->name == "mlvpntap0");
    CHECK(tap->ifindex == static_cast<int>(if_nametoindex("mlvpntap0")));
    const std::string details = output_of("ip -d link show dev mlvpntap0");
    CHECK(contains(details, "tun type tap"));
    CHECK(contains(details, "link/ether"));
}

TEST_CASE("create_tun: names the kernel chooses") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    auto pattern = create_tun("mlvpn%d", TunType::Tun);
    REQUIRE_MESSAGE(pattern, pattern.error().message);
    CHECK(pattern->name == "mlvpn0");
    auto any = create_tun("", TunType::Tap);
    REQUIRE_MESSAGE(any, any.error().message);
    CHECK(any->name == "tap0");
    CHECK(any->ifindex == static_cast<int>(if_nametoindex("tap0")));
    auto longest = create_tun("abcdefghijklmno", TunType::Tun);  // 15 characters
    REQUIRE_MESSAGE(longest, longest.error().message);
    CHECK(longest->name == "abcdefghijklmno");
}

TEST_CASE("create_tun: a name in use is a clear error, whatever holds it") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    REQUIRE(run("ip link add mlvpnveth0 type veth peer name mlvpnveth1") == 0);
    auto veth = create_tun("mlvpnveth0", TunType::Tun);
    REQUIRE(!veth);
    CHECK(veth.error().message ==
          "tun mlvpnveth0: device name in use (an interface with this name already exists)");
    CHECK(contains(output_of("ip -d link show dev mlvpnveth0"), "veth"));  // untouched

    auto first = create_tun("mlvpntest0", TunType::Tun);
    REQUIRE(first);
    auto second = create_tun("mlvpntest0", TunType::Tun);
    REQUIRE(!second);
    CHECK(contains(second.error().message, "tun mlvpntest0: device name in use"));
    auto other_kind = create_tun("mlvpntest0", TunType::Tap);
    REQUIRE(!other_kind);
    CHECK(contains(other_kind.error().message, "tap mlvpntest0: device name in use"));

    // A persistent device nobody holds is not taken over either.
    REQUIRE(run("ip tuntap add dev mlvpnpersist mode tun") == 0);
    auto persistent = create_tun("mlvpnpersist", TunType::Tun);
    REQUIRE(!persistent);
    CHECK(contains(persistent.error().message, "device name in use"));
}

TEST_CASE("create_tun: bad names") {
    // Checked before any system call: no root needed.
    auto too_long = create_tun("abcdefghijklmnop", TunType::Tun);  // 16 characters
    REQUIRE(!too_long);
    CHECK(too_long.error().message == "tun abcdefghijklmnop: name longer than 15 characters");
    const char* bad[] = {"a/b", "a:b", "a b", ".", ".."};
    for (const char* name : bad) {
        CAPTURE(std::string(name));
        auto result = create_tun(name, TunType::Tap);
        REQUIRE(!result);
        CHECK(contains(result.error().message, std::string("tap ") + name + ": "));
    }
    auto nul = create_tun(std::string_view("a\0b", 3), TunType::Tun);
    CHECK(!nul);
}

TEST_CASE("create_tun: without CAP_NET_ADMIN") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    const std::string message = run_in_child([] {
        if (!mlvpn::test::drop_net_admin()) return std::string("capset failed");
        auto tun = create_tun("mlvpntest0", TunType::Tun);
        return tun ? std::string("created") : tun.error().message;
    });
    CHECK(message ==
          "tun mlvpntest0: Operation not permitted (creating a TUN/TAP device needs CAP_NET_ADMIN)");
    CHECK(if_nametoindex("mlvpntest0") == 0);
}

TEST_CASE("create_tun: without /dev/net/tun") {
    MLVPN_TEST_NEEDS_ROOT();
    // Hide the device node behind an empty tmpfs, in a private mount
    // namespace of a child process: nothing outside it sees the change.
    const std::string message = run_in_child([] {
        if (unshare(CLONE_NEWNS) < 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) < 0 ||
            mount("tmpfs", "/dev/net", "tmpfs", 0, nullptr) < 0)
            return std::string("skip: ") + std::strerror(errno);
        auto tun = create_tun("mlvpntest0", TunType::Tun);
        return tun ? std::string("created") : tun.error().message;
    });
    if (message.rfind("skip: ", 0) == 0) {
        MESSAGE("skipped: cannot hide /dev/net/tun: " << message);
        return;
    }
    CHECK(message ==
          "tun mlvpntest0: open /dev/net/tun: No such file or directory (load the tun module: "
          "modprobe tun)");
}
