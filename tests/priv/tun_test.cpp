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

#include <linux/if_tun.h>
#include <seccomp.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "tests/netns.hpp"
#include "tests/priv/test_support.hpp"

using mlvpn::test::contains;
using mlvpn::core::TunType;
using mlvpn::priv::create_tun;
using mlvpn::priv::TunDevice;
using mlvpn::priv::TunOffload;
using mlvpn::test::NetnsGuard;
using mlvpn::test::output_of;
using mlvpn::test::run;
using mlvpn::test::run_in_child;

namespace {

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
    // The kernel puts the flow on one queue of its choosing: read whichever.
    std::vector<pollfd> fds;
    for (const auto& q : tun.queues) fds.push_back(pollfd{q.get(), POLLIN, 0});
    for (int tries = 0; tries < 50 && n < 0; ++tries) {  // skip IPv6 noise, if any
        REQUIRE(poll(fds.data(), fds.size(), 1000) >= 1);
        for (const pollfd& p : fds) {
            if (n >= 0 || (p.revents & POLLIN) == 0) continue;
            n = read(p.fd, buf, sizeof buf);
            if (n > static_cast<ssize_t>(header) && (buf[header] >> 4) != 4) n = -1;
        }
    }
    return n;
}

// The flags TUNGETIFF reports on one queue.
int queue_flags(const mlvpn::Fd& queue) {
    ifreq ifr{};
    if (ioctl(queue.get(), TUNGETIFF, &ifr) < 0) return -1;
    return ifr.ifr_flags;
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
    CHECK((fcntl(tun->queues[0].get(), F_GETFL) & O_NONBLOCK) != 0);
    CHECK((fcntl(tun->queues[0].get(), F_GETFD) & FD_CLOEXEC) != 0);
    const std::string details = output_of("ip -d link show dev mlvpntest0");
    CHECK(contains(details, "tun type tun"));
    CHECK(contains(details, "link/none"));

    // Non-blocking: nothing to read yet.
    char empty[16];
    CHECK(read(tun->queues[0].get(), empty, sizeof empty) == -1);
    CHECK(errno == EAGAIN);

    // A datagram routed into the device arrives as a bare IPv4 packet: no
    // 4-byte tun_pi header in front of it (IFF_NO_PI).
    unsigned char buf[2048];
    REQUIRE(route_datagram_through(*tun, "mlvpntest0", buf, 0) == 20 + 8 + 4);
    CHECK(buf[0] == 0x45);
    CHECK(buf[9] == IPPROTO_UDP);

    // The device lives as long as its descriptor.
    tun->queues.clear();
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

TEST_CASE("create_tun: a multi-queue device, one descriptor per queue") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());

    // One queue is a multi-queue device too: it never changes kind.
    auto one = create_tun("mlvpntest1", TunType::Tun);
    REQUIRE_MESSAGE(one, one.error().message);
    REQUIRE(one->queues.size() == 1);
    CHECK((queue_flags(one->queues[0]) & IFF_MULTI_QUEUE) != 0);

    auto tun = create_tun("mlvpntest0", TunType::Tun, true, 4);
    REQUIRE_MESSAGE(tun, tun.error().message);
    REQUIRE(tun->queues.size() == 4);
    REQUIRE(tun->offload != TunOffload::None);
    for (const auto& q : tun->queues) {
        CHECK((fcntl(q.get(), F_GETFL) & O_NONBLOCK) != 0);
        CHECK((fcntl(q.get(), F_GETFD) & FD_CLOEXEC) != 0);
        // Every queue reads and writes with the header queue 0 asked for.
        const int flags = queue_flags(q);
        CHECK((flags & IFF_MULTI_QUEUE) != 0);
        CHECK((flags & IFF_VNET_HDR) != 0);
        CHECK((flags & IFF_NO_PI) != 0);
    }
    CHECK(contains(output_of("ip -d link show dev mlvpntest0"), "numqueues 4"));
    CHECK(contains(output_of("ethtool -k mlvpntest0"), "tcp-segmentation-offload: on"));
    unsigned char buf[2048];
    REQUIRE(route_datagram_through(*tun, "mlvpntest0", buf, 10) == 10 + 20 + 8 + 4);
    CHECK(buf[10] == 0x45);

    // IFF_TUN_EXCL on queue 0: a second device of that name is refused,
    // whatever its queue count, and the first keeps its queues.
    for (uint32_t queues : {1u, 4u}) {
        auto second = create_tun("mlvpntest0", TunType::Tun, true, queues);
        REQUIRE(!second);
        CHECK(contains(second.error().message, "tun mlvpntest0: device name in use"));
    }
    CHECK(contains(output_of("ip -d link show dev mlvpntest0"), "numqueues 4"));

    // The device lives while any queue is open.
    tun->queues.erase(tun->queues.begin());
    CHECK(if_nametoindex("mlvpntest0") != 0);
    tun->queues.clear();
    CHECK(if_nametoindex("mlvpntest0") == 0);

    for (uint32_t queues : {0u, mlvpn::priv::kMaxTunQueues + 1}) {
        auto wrong = create_tun("mlvpntest2", TunType::Tun, false, queues);
        REQUIRE(!wrong);
        CHECK(contains(wrong.error().message, "queues asked for"));
    }
}

TEST_CASE("create_tun: a kernel that refuses offloads gets a plain device, every queue plain") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    // A child whose TUNSETOFFLOAD fails with EINVAL, as on a kernel without
    // the offloads.
    const std::string result = run_in_child([] {
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (ctx == nullptr ||
            seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EINVAL), SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TUNSETOFFLOAD)) != 0 ||
            seccomp_load(ctx) != 0)
            return std::string("seccomp failed");
        seccomp_release(ctx);
        auto tun = create_tun("mlvpntest0", TunType::Tun, true, 4);
        if (!tun) return tun.error().message;
        if (tun->offload != TunOffload::None) return std::string("offloads on");
        if (tun->queues.size() != 4) return fmt::format("{} queues", tun->queues.size());
        for (const auto& q : tun->queues) {
            const int flags = queue_flags(q);
            if ((flags & IFF_VNET_HDR) != 0 || (flags & IFF_MULTI_QUEUE) == 0)
                return fmt::format("queue flags {:#x}", flags);
        }
        if (!contains(output_of("ip -d link show dev mlvpntest0"), "numqueues 4")) return std::string("not 4 queues");
        return std::string("plain");
    });
    CHECK(result == "plain");
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
