// SPDX-License-Identifier: BSD-2-Clause
// The link sockets' UDP offload helpers (uring/link_offload.hpp): the
// control messages, LinkReader on receives played by hand, and the kernel
// facts the loops lean on, on real loopback sockets: a UDP_SEGMENT send from
// an iovec of separate buffers comes out as exactly those datagrams, and a
// UDP_GRO receive of such a send is split back into them.
// The loops themselves are tested with UDP offload in loop_test.cpp.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/wire.hpp"
#include "priv/fd.hpp"
#include "tests/uring/test_support.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/link_offload.hpp"
#include "uring/turn_batches.hpp"

using namespace mlvpn;
using core::Buffer;
using core::Datagram;
using uring::BufferPool;
using uring::LinkReader;
using uring::LoopStats;
using uring::TurnBatches;
using uring::UdpControl;

namespace {

using mlvpn::uring::test::kSlot;
using mlvpn::uring::test::loopback_udp_socket;


using Bytes = std::vector<uint8_t>;

Bytes pattern(size_t n, uint8_t seed) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(seed * 131 + i * 7);
    return b;
}

// Collects what TurnBatches delivers: the bytes and source of each datagram,
// each buffer checked to sit at offset 0 and handed back to the pool.
struct Collector : uring::Handler {
    explicit Collector(BufferPool& p) : pool(p) {}
    BufferPool& pool;
    std::vector<Bytes> got;
    std::vector<core::Endpoint> from;
    void on_tun(std::span<Buffer*>, core::Io&) override {}
    void on_datagrams(core::LinkIndex, std::span<Datagram> datagrams, core::Io&) override {
        for (Datagram& d : datagrams) {
            CHECK(d.buffer->offset == core::wire::kDatagramOffset);
            const auto* p = reinterpret_cast<const uint8_t*>(d.buffer->data + d.buffer->offset);
            got.emplace_back(p, p + d.buffer->length);
            from.push_back(d.from);
            CHECK(pool.release(d.buffer));
        }
    }
    void on_send_error(core::LinkIndex, int) override {}
    void on_tun_write_error(int) override {}
    core::Time on_timer(core::Io&) override { return core::kNever; }
    void on_readable(int, core::Io&) override {}
    bool running() const override { return true; }
};

struct NullIo : core::Io {
    Buffer* acquire() override { return nullptr; }
    void release(Buffer*) override {}
    void send(core::LinkIndex, Buffer*, const core::Endpoint*) override {}
    void write_tun(Buffer*) override {}
};

// A pool, batches and a reader, as a loop holds them.
struct Rig {
    LoopStats stats;
    BufferPool pool = std::move(*BufferPool::create(kSlot, 256));
    TurnBatches batches{pool, stats, 32, 2, 0};
    LinkReader reader = std::move(*LinkReader::create(pool, stats, batches, 2));
    Collector collector{pool};
    NullIo io;

    // Plays a receive of `payload` (as the kernel would lay it out over the
    // slot and the overflow buffer) with a UDP_GRO size of `segment` (0:
    // no control message) and `flags`, then delivers.
    void receive(const Bytes& payload, int segment, int flags = 0, bool bad_cmsg = false) {
        Buffer* slot = pool.acquire();
        REQUIRE(slot != nullptr);
        Buffer* overflow = reader.acquire_overflow();
        REQUIRE(overflow != nullptr);
        msghdr msg;
        iovec iov[2];
        core::Endpoint name;
        UdpControl control;
        reader.prepare(*slot, *overflow, msg, iov, name, control);
        REQUIRE(iov[0].iov_base == slot->data + core::wire::kDatagramOffset);
        REQUIRE(iov[0].iov_len == kSlot - core::wire::kDatagramOffset);
        REQUIRE(iov[0].iov_len + iov[1].iov_len == uring::kUdpReceiveMax);
        // Scatter as readv would.
        size_t done = 0;
        for (const iovec& v : iov) {
            const size_t n = std::min(v.iov_len, payload.size() - done);
            std::memcpy(v.iov_base, payload.data() + done, n);
            done += n;
        }
        REQUIRE(done == payload.size());
        sockaddr_in from{};
        from.sin_family = AF_INET;
        from.sin_port = htons(4242);
        from.sin_addr.s_addr = htonl(0x7f000001);
        std::memcpy(&name.addr, &from, sizeof from);
        msg.msg_namelen = sizeof from;
        msg.msg_flags = flags;
        if (segment != 0) {
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_GRO;
            c->cmsg_len = bad_cmsg ? CMSG_LEN(2) : CMSG_LEN(sizeof(int));
            std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
            msg.msg_controllen = CMSG_SPACE(sizeof(int));
        } else {
            msg.msg_controllen = 0;
        }
        reader.complete(0, slot, overflow, static_cast<uint32_t>(payload.size()), msg);
        reader.release_overflow(overflow);
        batches.deliver(collector, io);
    }
};

void connect_pair(int a, int b) {
    for (auto [from, to] : {std::pair{a, b}, std::pair{b, a}}) {
        sockaddr_in addr{};
        socklen_t len = sizeof addr;
        REQUIRE(getsockname(to, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        REQUIRE(connect(from, reinterpret_cast<sockaddr*>(&addr), len) == 0);
    }
}

}  // namespace

TEST_CASE("link offload: UDP_SEGMENT and UDP_GRO control messages") {
    msghdr msg{};
    UdpControl control;
    uring::set_udp_segment(msg, control, 1400);
    const cmsghdr* c = CMSG_FIRSTHDR(&msg);
    REQUIRE(c != nullptr);
    CHECK(c->cmsg_level == SOL_UDP);
    CHECK(c->cmsg_type == UDP_SEGMENT);
    uint16_t v = 0;
    std::memcpy(&v, CMSG_DATA(c), sizeof v);
    CHECK(v == 1400);

    // What a receive brings: no control data, a UDP_GRO size, garbage.
    msghdr in{};
    CHECK(uring::udp_gro_segment(in) == 0);
    UdpControl rx;
    in.msg_control = rx.bytes;
    in.msg_controllen = 0;
    CHECK(uring::udp_gro_segment(in) == 0);
    in.msg_controllen = CMSG_SPACE(sizeof(int));
    cmsghdr* g = CMSG_FIRSTHDR(&in);
    g->cmsg_level = SOL_UDP;
    g->cmsg_type = UDP_GRO;
    g->cmsg_len = CMSG_LEN(sizeof(int));
    int size = 1200;
    std::memcpy(CMSG_DATA(g), &size, sizeof size);
    CHECK(uring::udp_gro_segment(in) == 1200);
    size = 0;
    std::memcpy(CMSG_DATA(g), &size, sizeof size);
    CHECK(uring::udp_gro_segment(in) == -1);
    size = -5;
    std::memcpy(CMSG_DATA(g), &size, sizeof size);
    CHECK(uring::udp_gro_segment(in) == -1);
    size = 1200;
    std::memcpy(CMSG_DATA(g), &size, sizeof size);
    g->cmsg_len = CMSG_LEN(1);
    CHECK(uring::udp_gro_segment(in) == -1);
    g->cmsg_len = CMSG_LEN(sizeof(int));
    in.msg_flags = MSG_CTRUNC;
    CHECK(uring::udp_gro_segment(in) == -1);
    in.msg_flags = 0;
    g->cmsg_type = UDP_SEGMENT;  // another option: not ours to read
    CHECK(uring::udp_gro_segment(in) == 0);

    CHECK(uring::gso_refused(EIO));
    CHECK(uring::gso_refused(EINVAL));
    CHECK(uring::gso_refused(ENOPROTOOPT));
    CHECK_FALSE(uring::gso_refused(EAGAIN));
    CHECK_FALSE(uring::gso_refused(ECONNREFUSED));
    CHECK_FALSE(uring::gso_refused(EMSGSIZE));
}

TEST_CASE("link offload: LinkReader passes an ordinary datagram on uncopied") {
    Rig rig;
    const Bytes d = pattern(1000, 1);
    rig.receive(d, 0);
    REQUIRE(rig.collector.got.size() == 1);
    CHECK(rig.collector.got[0] == d);
    CHECK(rig.collector.from[0].len == sizeof(sockaddr_in));
    CHECK(rig.stats.datagrams == 1);
    CHECK(rig.stats.gro_receives == 0);
    // A UDP_GRO size with a single segment's worth is one datagram too.
    rig.receive(pattern(1400, 2), 1400);
    CHECK(rig.collector.got.size() == 2);
    CHECK(rig.stats.gro_receives == 0);
    CHECK(rig.pool.available() == rig.pool.slot_count());
}

TEST_CASE("link offload: LinkReader splits a coalesced receive into one slot per datagram") {
    Rig rig;
    // 1530: the largest a slot takes after kDatagramOffset.
    constexpr auto kRoom = kSlot - static_cast<uint32_t>(core::wire::kDatagramOffset);
    for (const uint32_t segment : {1400u, kRoom, 1000u, 100u}) {
        INFO("segment " << segment);
        rig.collector.got.clear();
        std::vector<Bytes> parts;
        Bytes whole;
        const uint32_t count = std::min(40u, uring::kUdpReceiveMax / segment);
        for (uint32_t i = 0; i < count; ++i) {
            parts.push_back(pattern(i + 1 == count ? segment / 3 : segment, static_cast<uint8_t>(i)));
            whole.insert(whole.end(), parts.back().begin(), parts.back().end());
        }
        const uint64_t before = rig.stats.gro_segments;
        rig.receive(whole, static_cast<int>(segment));
        CHECK(rig.collector.got == parts);
        CHECK(rig.stats.gro_segments - before == count);
        for (const auto& f : rig.collector.from) CHECK(f.len == sizeof(sockaddr_in));
    }
    CHECK(rig.stats.gro_receives == 4);
    CHECK(rig.stats.gro_dropped == 0);
    CHECK(rig.pool.available() == rig.pool.slot_count());
    CHECK(rig.reader.overflows_available() == 2);
}

TEST_CASE("link offload: LinkReader drops what it cannot split, and counts it") {
    Rig rig;
    // Larger than a slot and no segment size: as if truncated.
    rig.receive(pattern(3000, 1), 0);
    CHECK(rig.stats.truncated == 1);
    rig.receive(pattern(1000, 1), 0, MSG_TRUNC);
    CHECK(rig.stats.truncated == 2);
    // A segment larger than a slot, a malformed or truncated control message.
    rig.receive(pattern(4000, 1), 2000);
    rig.receive(pattern(3000, 1), 1000, 0, true);
    rig.receive(pattern(3000, 1), 1000, MSG_CTRUNC);
    // More segments than kMaxGroSegments.
    rig.receive(pattern(1000, 1), 5);
    CHECK(rig.stats.gro_dropped == 4);
    CHECK(rig.collector.got.empty());
    CHECK(rig.stats.datagrams == 0);
    CHECK(rig.pool.available() == rig.pool.slot_count());
}

TEST_CASE("link offload: LinkReader with too few slots keeps what fits and counts the rest") {
    Rig rig;
    std::vector<Buffer*> taken;
    while (rig.pool.available() > 4) taken.push_back(rig.pool.acquire());
    // The receive's own slot plus 3 more: 4 of the 10 datagrams.
    Bytes whole;
    for (int i = 0; i < 10; ++i) {
        const Bytes p = pattern(1000, static_cast<uint8_t>(i));
        whole.insert(whole.end(), p.begin(), p.end());
    }
    rig.receive(whole, 1000);
    REQUIRE(rig.collector.got.size() == 4);
    for (int i = 0; i < 4; ++i) CHECK(rig.collector.got[i] == pattern(1000, static_cast<uint8_t>(i)));
    CHECK(rig.stats.gro_no_buffer == 6);
    for (Buffer* b : taken) rig.pool.release(b);
    CHECK(rig.pool.available() == rig.pool.slot_count());
    CHECK(rig.reader.receives_for(0) == 0);
    CHECK(rig.reader.receives_for(1) == 1);
    CHECK(rig.reader.receives_for(256) >= 2);
}

TEST_CASE("link offload: the kernel cuts a UDP_SEGMENT send of separate buffers at the segment size") {
    Fd a = loopback_udp_socket(), b = loopback_udp_socket();
    connect_pair(a.get(), b.get());
    // Three full datagrams and a short one, each in its own buffer, not adjacent.
    std::vector<Bytes> parts = {pattern(1200, 1), pattern(1200, 2), pattern(1200, 3), pattern(500, 4)};
    std::vector<iovec> iov;
    for (auto& p : parts) iov.push_back({p.data(), p.size()});
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    UdpControl control;
    uring::set_udp_segment(msg, control, 1200);
    const ssize_t sent = sendmsg(a.get(), &msg, 0);
    if (sent < 0 && uring::gso_refused(errno)) {
        MESSAGE("UDP_SEGMENT refused here (" << strerror(errno) << "), skipped");
        return;
    }
    REQUIRE(sent == 4100);
    Bytes buf(65536);
    for (const auto& p : parts) {
        pollfd pfd{b.get(), POLLIN, 0};
        REQUIRE(poll(&pfd, 1, 2000) == 1);
        const ssize_t n = recv(b.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        REQUIRE(n == static_cast<ssize_t>(p.size()));
        CHECK(Bytes(buf.begin(), buf.begin() + n) == p);
    }
}

TEST_CASE("link offload: a UDP_GRO receive of a segmented send splits back into its datagrams") {
    Fd a = loopback_udp_socket(), b = loopback_udp_socket();
    connect_pair(a.get(), b.get());
    const int on = 1;
    if (setsockopt(b.get(), SOL_UDP, UDP_GRO, &on, sizeof on) != 0) {
        MESSAGE("UDP_GRO refused here, skipped");
        return;
    }
    std::vector<Bytes> parts;
    for (int i = 0; i < 20; ++i) parts.push_back(pattern(i == 19 ? 77 : 1300, static_cast<uint8_t>(i)));
    std::vector<iovec> iov;
    for (auto& p : parts) iov.push_back({p.data(), p.size()});
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    UdpControl control;
    uring::set_udp_segment(msg, control, 1300);
    if (sendmsg(a.get(), &msg, 0) < 0 && uring::gso_refused(errno)) {
        MESSAGE("UDP_SEGMENT refused here, skipped");
        return;
    }

    Rig rig;
    size_t received = 0;
    uint64_t receives = 0;
    while (received < parts.size()) {
        pollfd pfd{b.get(), POLLIN, 0};
        REQUIRE(poll(&pfd, 1, 2000) == 1);
        Buffer* slot = rig.pool.acquire();
        Buffer* overflow = rig.reader.acquire_overflow();
        msghdr rx;
        iovec riov[2];
        core::Endpoint name;
        UdpControl rc;
        rig.reader.prepare(*slot, *overflow, rx, riov, name, rc);
        const ssize_t n = recvmsg(b.get(), &rx, MSG_DONTWAIT);
        REQUIRE(n > 0);
        ++receives;
        rig.reader.complete(0, slot, overflow, static_cast<uint32_t>(n), rx);
        rig.reader.release_overflow(overflow);
        rig.batches.deliver(rig.collector, rig.io);
        received = rig.collector.got.size();
    }
    CHECK(rig.collector.got == parts);
    // Loopback hands the segmented send up whole: one receive.
    CHECK(receives == 1);
    CHECK(rig.stats.gro_receives == 1);
    CHECK(rig.stats.gro_segments == 20);
    CHECK(rig.pool.available() == rig.pool.slot_count());
}
