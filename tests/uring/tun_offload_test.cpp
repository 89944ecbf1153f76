// SPDX-License-Identifier: BSD-2-Clause
// TunReader and TunWriter on their own (a read or a turn's writes played by
// hand), then both loops with a vnet_hdr "device": a SOCK_SEQPACKET
// socketpair carries [virtio_net_hdr | packet] messages as a TUN device
// opened with IFF_VNET_HDR would, and a handler echoes what it reads back to
// the device, so a super-packet must come back as a super-packet that splits
// into the very packets that went in.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/checksum_partial.hpp"
#include "core/gro.hpp"
#include "core/gso.hpp"
#include "core/virtio_net.hpp"
#include "core/wire.hpp"
#include "priv/fd.hpp"
#include "tests/core/offload_packets.hpp"
#include "tests/uring/test_support.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/loop.hpp"
#include "uring/system_clock.hpp"
#include "uring/tun_offload.hpp"
#include "uring/turn_batches.hpp"

using namespace std::chrono_literals;
using namespace mlvpn;
using core::Buffer;
using core::VirtioNetHdr;
using test::Bytes;
using test::Spec;
using uring::BufferPool;
using uring::LoopStats;
using uring::TunReader;
using uring::TunWriter;
using uring::TurnBatches;

namespace {

using uring::test::kHeadroom;
using uring::test::kSlot;
constexpr size_t kHdr = VirtioNetHdr::kSize;

// A run of TCP segments of one flow, as the peer's kernel sent them: `count`
// of `size` payload bytes (the last `last` bytes), PSH on the last.
std::vector<Bytes> tcp_run(Spec s, size_t count, size_t size, size_t last) {
    std::vector<Bytes> out;
    for (size_t i = 0; i < count; ++i) {
        Spec e = s;
        const size_t n = i + 1 == count ? last : size;
        if (i + 1 == count) e.flags = 0x18;
        out.push_back(test::make_packet(e, test::pattern(n, static_cast<uint8_t>(i))));
        s.seq += static_cast<uint32_t>(n);
        s.id++;
    }
    return out;
}

// [virtio_net_hdr | super-packet] of `packets`, as the local kernel would
// hand it over: made by core::Gro, which the core tests check against
// gso_split byte for byte.
Bytes super_packet(const std::vector<Bytes>& packets) {
    std::deque<Bytes> store;
    std::deque<Buffer> buffers;
    std::vector<Buffer*> ptrs;
    for (const auto& p : packets) {
        Bytes& s = store.emplace_back(16 + p.size() + 70000);
        std::copy(p.begin(), p.end(), s.begin() + 16);
        Buffer& b = buffers.emplace_back(Buffer{s.data(), static_cast<uint32_t>(s.size()), 16,
                                                static_cast<uint32_t>(p.size()), 0});
        ptrs.push_back(&b);
    }
    core::Gro gro(core::GroOptions{.udp = true});
    const auto n = gro.coalesce(ptrs);
    REQUIRE(n);
    REQUIRE(*n == 1);
    const auto bytes = ptrs[0]->bytes();
    return Bytes(bytes.begin(), bytes.end());
}

// [header | packet] for one packet.
Bytes with_header(const VirtioNetHdr& h, const Bytes& packet) {
    Bytes out(kHdr + packet.size());
    h.encode(out);
    std::copy(packet.begin(), packet.end(), out.begin() + kHdr);
    return out;
}

// What the kernel makes of one write to the device: the packets it splits into.
std::vector<Bytes> split(std::span<const std::byte> message) {
    REQUIRE(message.size() > kHdr);
    const auto h = VirtioNetHdr::decode(message);
    REQUIRE(h);
    std::vector<Bytes> storage(core::kMaxGsoSegments, Bytes(65536));
    std::vector<std::span<std::byte>> spans(storage.begin(), storage.end());
    std::vector<size_t> sizes(core::kMaxGsoSegments);
    const auto n = core::gso_split(*h, message.subspan(kHdr), spans, sizes);
    REQUIRE_MESSAGE(n, core::to_string(n.error()));
    std::vector<Bytes> out;
    for (size_t i = 0; i < *n; ++i)
        out.emplace_back(storage[i].begin(), storage[i].begin() + static_cast<long>(sizes[i]));
    return out;
}

// A UDP packet whose checksum the kernel left to the device: the field holds
// the pseudo-header sum, and the header says where to finish it.
std::pair<Bytes, VirtioNetHdr> partial_udp(size_t payload) {
    Spec s;
    s.udp = true;
    Bytes p = test::make_packet(s, test::pattern(payload, 9));
    test::wr16(p, 26, test::ref_fold(test::ref_pseudo(p, 17)));
    VirtioNetHdr h;
    h.flags = VirtioNetHdr::kNeedsCsum;
    h.csum_start = 20;
    h.csum_offset = 6;
    return {p, h};
}

// `packets` with the checksum of each one flagged in `partial` finished; every
// one must be flagged (`all`) or none.
std::vector<Bytes> finished(std::vector<Bytes> packets, const std::vector<bool>& partial, bool all) {
    REQUIRE(packets.size() == partial.size());
    for (size_t i = 0; i < packets.size(); ++i) {
        CHECK(partial[i] == all);
        if (partial[i]) CHECK(core::finish_partial_checksum(packets[i]));
    }
    return packets;
}

// Records what the batches deliver, then hands every buffer back.
struct Recorder : uring::Handler {
    std::vector<Bytes> packets;
    std::vector<Buffer*> buffers;
    std::vector<bool> partial;  // each packet's checksum_partial
    void on_tun(std::span<Buffer*> got, core::Io& io) override {
        for (Buffer* b : got) {
            CHECK(b->offset == kHeadroom);
            packets.emplace_back(b->bytes().begin(), b->bytes().end());
            buffers.push_back(b);
            partial.push_back(b->checksum_partial);
            io.release(b);
        }
    }
    void on_datagrams(core::LinkIndex, std::span<core::Datagram>, core::Io&) override {}
    void on_send_error(core::LinkIndex, int) override {}
    void on_tun_write_error(int) override {}
    core::Time on_timer(core::Io&) override { return core::kNever; }
    void on_readable(int, core::Io&) override {}
    bool running() const override { return true; }
};

struct PoolIo : core::Io {
    BufferPool& pool;
    explicit PoolIo(BufferPool& p) : pool(p) {}
    Buffer* acquire() override { return pool.acquire(); }
    void release(Buffer* b) override { CHECK(pool.release(b)); }
    void send(core::LinkIndex, Buffer* b, const core::Endpoint*) override { release(b); }
    void write_tun(Buffer* b) override { release(b); }
};

// A pool, the batches and a reader with one overflow buffer; read() plays
// the kernel filling the two iovecs of one readv.
struct ReadBench {
    BufferPool pool;
    LoopStats stats;
    TurnBatches batches;
    TunReader reader;
    Recorder rec;

    explicit ReadBench(uint32_t slots = 256)
        : pool(*BufferPool::create(kSlot, slots)),
          batches(pool, stats, 32, 0, 0, 32 * core::kMaxGsoSegments),
          reader(*TunReader::create(pool, stats, batches, 1)) {}

    // Returns the slot the read went into.
    Buffer* read(const Bytes& message) {
        Buffer* slot = pool.acquire();
        REQUIRE(slot != nullptr);
        Buffer* overflow = reader.acquire_overflow();
        REQUIRE(overflow != nullptr);
        iovec iov[2];
        reader.prepare(*slot, *overflow, iov);
        size_t at = 0;
        for (const iovec& v : iov) {
            const size_t n = std::min(v.iov_len, message.size() - at);
            std::memcpy(v.iov_base, message.data() + at, n);
            at += n;
        }
        REQUIRE(at == message.size());
        reader.complete(slot, overflow, static_cast<uint32_t>(message.size()));
        reader.release_overflow(overflow);
        return slot;
    }
    void deliver() {
        PoolIo io(pool);
        batches.deliver(rec, io);
    }
};

}  // namespace

TEST_CASE("tun reader: an ordinary packet stays in its slot, its checksum left partial for the peer") {
    ReadBench t;
    const auto [p, h] = partial_udp(300);
    CHECK_FALSE(test::l4_checksum_ok(p, 17));
    Buffer* slot = t.read(with_header(h, p));
    t.deliver();
    REQUIRE(t.rec.packets.size() == 1);
    CHECK(t.rec.buffers[0] == slot);  // no copy
    CHECK(t.rec.packets[0] == p);     // untouched
    CHECK(t.rec.partial[0]);
    Bytes finished = p;
    REQUIRE(core::finish_partial_checksum(finished));
    CHECK(test::l4_checksum_ok(finished, 17));
    CHECK(t.stats.tun_reads == 1);
    CHECK(t.stats.tun_super_reads == 0);
    CHECK(t.pool.available() == t.pool.slot_count());

    SUBCASE("one whose checksum is not where a peer would look is finished in place") {
        // UDP-Lite (136) is not one of the layouts a peer takes partial:
        // the reader finishes it where the header says, as a device would.
        Bytes lite = p;
        lite[9] = std::byte{136};
        t.read(with_header(h, lite));
        t.rec.packets.clear();
        t.rec.partial.clear();
        t.deliver();
        REQUIRE(t.rec.packets.size() == 1);
        CHECK_FALSE(t.rec.partial[0]);
        const Bytes& got = t.rec.packets[0];
        CHECK(got != lite);
        Bytes want = lite;
        want[26] = got[26];
        want[27] = got[27];
        CHECK(got == want);  // only the checksum changed
        CHECK(test::l4_checksum_ok(got, 17));  // over the pseudo-header sum the field held
    }

    SUBCASE("a packet without NEEDS_CSUM goes as it is, not partial") {
        Bytes full = finished;
        t.read(with_header(VirtioNetHdr{}, full));
        t.rec.packets.clear();
        t.rec.partial.clear();
        t.deliver();
        REQUIRE(t.rec.packets.size() == 1);
        CHECK(t.rec.packets[0] == full);
        CHECK_FALSE(t.rec.partial[0]);
    }
}

TEST_CASE("tun reader: a super-packet is split into fresh slots, the read's own first") {
    ReadBench t;
    Spec s;
    s.tcp_options = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};  // NOP NOP timestamps
    const auto packets = tcp_run(s, 45, 1388, 700);  // about 62 KB: most of it in the overflow buffer
    Buffer* slot = t.read(super_packet(packets));
    t.deliver();
    // Each segment's checksum is left partial, for the peer's kernel to
    // finish: finished, they are the packets the kernel would have made.
    CHECK(t.rec.packets != packets);
    CHECK(finished(t.rec.packets, t.rec.partial, true) == packets);
    REQUIRE(!t.rec.buffers.empty());
    CHECK(t.rec.buffers[0] == slot);
    CHECK(t.stats.tun_reads == packets.size());
    CHECK(t.stats.tun_super_reads == 1);
    CHECK(t.stats.tun_bad_reads == 0);
    CHECK(t.pool.available() == t.pool.slot_count());

    SUBCASE("without NEEDS_CSUM, the segments' checksums are finished") {
        Bytes m = super_packet(packets);
        m[0] = std::byte{VirtioNetHdr::kDataValid};  // the header's flags
        t.read(m);
        t.rec.packets.clear();
        t.rec.partial.clear();
        t.deliver();
        CHECK(finished(t.rec.packets, t.rec.partial, false) == packets);
    }

    SUBCASE("IPv6, and UDP (USO)") {
        Spec v6 = s;
        v6.v6 = true;
        const auto tcp6 = tcp_run(v6, 10, 1000, 10);
        t.read(super_packet(tcp6));
        Spec u;
        u.udp = true;
        std::vector<Bytes> udp;
        for (size_t i = 0; i < 5; ++i) {
            udp.push_back(test::make_packet(u, test::pattern(i + 1 < 5 ? 1200 : 3, static_cast<uint8_t>(i))));
            u.id++;
        }
        t.read(super_packet(udp));
        t.rec.packets.clear();
        t.rec.partial.clear();
        t.deliver();
        std::vector<Bytes> want = tcp6;
        want.insert(want.end(), udp.begin(), udp.end());
        CHECK(finished(t.rec.packets, t.rec.partial, true) == want);
        CHECK(t.stats.tun_super_reads == 3);
    }
}

TEST_CASE("tun reader: what it cannot split is dropped, counted, and costs no slot") {
    ReadBench t;
    Spec s;
    const auto packets = tcp_run(s, 20, 1000, 1000);
    Bytes message = super_packet(packets);

    SUBCASE("gso_type TCP on a UDP packet") {
        Spec u;
        u.udp = true;
        Bytes m = with_header({}, test::make_packet(u, test::pattern(5000)));
        m[1] = std::byte{VirtioNetHdr::kGsoTcpV4};
        m[4] = std::byte{0xe8};  // gso_size 1000
        m[5] = std::byte{0x03};
        t.read(m);
        CHECK(t.stats.tun_bad_reads == 1);
    }
    SUBCASE("a length field that disagrees with the read") {
        message[kHdr + 2] = std::byte{0x01};  // IPv4 total length
        t.read(message);
        CHECK(t.stats.tun_bad_reads == 1);
    }
    SUBCASE("segments larger than a slot (gso_size beyond the MTU)") {
        VirtioNetHdr h = *VirtioNetHdr::decode(message);
        h.gso_size = 4000;
        h.encode(message);
        t.read(message);
        CHECK(t.stats.tun_bad_reads == 1);
    }
    SUBCASE("a plain packet larger than a slot") {
        Spec u;
        u.udp = true;
        t.read(with_header({}, test::make_packet(u, test::pattern(3000))));
        CHECK(t.stats.tun_bad_reads == 1);
    }
    SUBCASE("a checksum position beyond the packet") {
        auto [p, h] = partial_udp(100);
        h.csum_offset = 200;
        t.read(with_header(h, p));
        CHECK(t.stats.tun_bad_reads == 1);
    }
    SUBCASE("shorter than the header") {
        Buffer* slot = t.pool.acquire();
        Buffer* overflow = t.reader.acquire_overflow();
        t.reader.complete(slot, overflow, 9);
        t.reader.release_overflow(overflow);
        CHECK(t.stats.tun_bad_reads == 1);
    }
    SUBCASE("a header and nothing else: not an error") {
        t.read(with_header({}, {}));
        CHECK(t.stats.tun_bad_reads == 0);
    }
    t.deliver();
    CHECK(t.rec.packets.empty());
    CHECK(t.stats.tun_reads == 0);
    CHECK(t.pool.available() == t.pool.slot_count());
}

TEST_CASE("tun reader: too few free slots drops the super-packet whole") {
    ReadBench t(8);
    Spec s;
    const auto packets = tcp_run(s, 20, 1000, 1000);
    t.read(super_packet(packets));
    t.deliver();
    CHECK(t.rec.packets.empty());
    CHECK(t.stats.tun_split_no_buffer == 1);
    CHECK(t.stats.pool_empty >= 1);
    CHECK(t.pool.available() == t.pool.slot_count());
    // Reads are paced to what the pool can split: at least one, and one per
    // 64 KB worth of MTU-sized slots.
    CHECK(t.reader.reads_for(0) == 0);
    CHECK(t.reader.reads_for(8) == 1);
    CHECK(t.reader.reads_for(1000) >= 10);
    CHECK(t.reader.reads_for(1000) <= 1000 / 45);
}

namespace {

// A pool and a writer; queue() puts a packet in a slot as the tunnel leaves
// a decrypted one: at kHeadroom, with no tailroom to speak of.
struct WriteBench {
    BufferPool pool;
    LoopStats stats;
    TunWriter writer;
    std::vector<uint32_t> queued;

    explicit WriteBench(bool udp = false) : pool(*BufferPool::create(kSlot, 512)), writer(*TunWriter::create(pool, stats, udp)) {}

    void queue(const Bytes& p) {
        Buffer* b = pool.acquire();
        REQUIRE(b != nullptr);
        REQUIRE(p.size() <= kSlot - kHeadroom);
        std::memcpy(b->data + b->offset, p.data(), p.size());
        b->length = static_cast<uint32_t>(p.size());
        REQUIRE(writer.add(b->index, *b) == 0);
        queued.push_back(b->index);
    }

    // Coalesces, "writes" (splitting each write as the kernel would), and
    // frees everything as a loop does. Returns the packets in write order.
    std::vector<Bytes> flush(size_t* writes = nullptr, size_t* from_spares = nullptr) {
        const auto ws = writer.coalesce();
        std::vector<uint32_t> freed(writer.absorbed().begin(), writer.absorbed().end());
        std::vector<Bytes> out;
        size_t spares = 0;
        for (const auto& w : ws) {
            for (auto& p : split({w.data, w.length})) out.push_back(std::move(p));
            if (w.spare) {
                ++spares;
                CHECK(writer.spare_out(w.index));
                writer.done_spare(w.index);
                CHECK_FALSE(writer.spare_out(w.index));
            } else {
                freed.push_back(w.index);
            }
        }
        // Every queued slot is either written or absorbed, exactly once.
        std::sort(freed.begin(), freed.end());
        std::sort(queued.begin(), queued.end());
        CHECK(freed == queued);
        for (uint32_t i : freed) CHECK(pool.release(pool.slot(i)));
        queued.clear();
        CHECK(writer.spares_out() == 0);
        CHECK(writer.empty());
        if (writes != nullptr) *writes = ws.size();
        if (from_spares != nullptr) *from_spares = spares;
        return out;
    }
};

}  // namespace

TEST_CASE("tun writer: a flow's run goes out as one super-packet from a spare") {
    WriteBench t;
    Spec a;
    Spec b = a;
    b.dport = 444;
    const auto ra = tcp_run(a, 30, 1300, 200);
    const auto rb = tcp_run(b, 3, 1000, 1000);
    Spec u;
    u.udp = true;
    u.dport = 53;
    std::vector<Bytes> all;
    for (const auto& p : ra) all.push_back(p);
    all.push_back(test::make_packet(u, test::pattern(100)));  // no USO: written as it came
    for (const auto& p : rb) all.push_back(p);
    for (const auto& p : all) t.queue(p);
    size_t writes = 0, spares = 0;
    const auto out = t.flush(&writes, &spares);
    CHECK(out == all);
    CHECK(writes == 3);
    CHECK(spares == 2);
    CHECK(t.stats.tun_super_writes == 2);
    CHECK(t.stats.tun_merged == ra.size() - 1 + rb.size() - 1);
    CHECK(t.pool.available() == t.pool.slot_count());
}

TEST_CASE("tun writer: more than one GRO batch, more runs than spares, and bad headroom") {
    WriteBench t;
    // 40 flows of 5 packets, interleaved: 200 packets, two GRO batches, and
    // more runs than the 16 spares.
    std::vector<Spec> flows(40);
    std::vector<std::vector<Bytes>> runs;
    for (size_t f = 0; f < flows.size(); ++f) {
        flows[f].sport = static_cast<uint16_t>(30000 + f);
        runs.push_back(tcp_run(flows[f], 5, 1000, 1000));
    }
    std::vector<Bytes> all;
    for (size_t i = 0; i < 5; ++i)
        for (const auto& r : runs) all.push_back(r[i]);
    for (const auto& p : all) t.queue(p);
    size_t writes = 0, spares = 0;
    const auto out = t.flush(&writes, &spares);
    // Per flow, the order is kept; as a whole, runs go out where they began.
    REQUIRE(out.size() == all.size());
    for (const auto& r : runs) {
        std::vector<Bytes> mine;
        for (const auto& p : out)
            if (std::find(r.begin(), r.end(), p) != r.end()) mine.push_back(p);
        CHECK(mine == r);
    }
    // The first batch takes all 16 spares; they are out with their writes
    // until those are done, so the second batch's runs go out as they came.
    CHECK(spares == uring::kTunWriteSpares);
    // The first batch (128) holds 4 packets of flows 0-7 and 3 of flows
    // 8-15, each run in a spare: 8 x 3 + 8 x 2 packets absorbed.
    CHECK(writes == all.size() - 40);

    // A packet without room for its header is refused, not queued.
    Buffer* b = t.pool.acquire();
    b->offset = VirtioNetHdr::kSize - 1;
    b->length = 20;
    CHECK(t.writer.add(b->index, *b) == EINVAL);
    CHECK(t.writer.empty());
    t.pool.release(b);
}

// --- both loops with a vnet_hdr device ----------------------------------------

namespace {

// Echoes every TUN packet back to the device; counts what it sees.
struct Echo : uring::Handler {
    uring::SystemClock clock;
    core::Time hard_deadline = clock.now() + 10s;
    std::atomic<bool> stop{false};
    std::atomic<size_t> seen{0};
    std::atomic<int> write_errors{0};
    void on_tun(std::span<Buffer*> packets, core::Io& io) override {
        for (Buffer* b : packets) {
            CHECK(b->offset == kHeadroom);
            ++seen;
            io.write_tun(b);
        }
    }
    void on_datagrams(core::LinkIndex, std::span<core::Datagram> d, core::Io& io) override {
        for (auto& x : d) io.release(x.buffer);
    }
    void on_send_error(core::LinkIndex, int) override {}
    void on_tun_write_error(int) override { ++write_errors; }
    core::Time on_timer(core::Io&) override { return std::min(clock.now() + 20ms, hard_deadline); }
    void on_readable(int, core::Io&) override {}
    bool running() const override { return !stop && clock.now() < hard_deadline; }
};

// The next message from the device's far end, within two seconds.
Bytes next_message(int fd) {
    pollfd pfd{fd, POLLIN, 0};
    REQUIRE(poll(&pfd, 1, 2000) == 1);
    Bytes buf(70000);
    const ssize_t n = read(fd, buf.data(), buf.size());
    REQUIRE(n > 0);
    buf.resize(static_cast<size_t>(n));
    return buf;
}

template <bool kUring>
void echo_through_loop() {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    Fd device(sv[0]), far(sv[1]);
    // Room for several 64 KB messages in flight.
    int size = 4 << 20;
    setsockopt(far.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(device.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);

    uring::LoopConfig config;
    config.tun_fd = device.get();
    config.tun_vnet_hdr = true;
    config.tun_uso = true;
    config.slot_size = kSlot;
    config.slot_count = 1024;
    config.batch = 32;

    Echo echo;
    std::atomic<bool> ready{false}, unavailable{false};
    std::string error;
    LoopStats stats;
    std::thread loop_thread([&] {
        uring::SystemClock clock;
        uring::UringUnavailable why;
        auto loop = kUring ? uring::make_uring_loop(config, clock, &why) : uring::make_epoll_loop(config, clock);
        if (!loop) {
            error = loop.error().message;
            unavailable = why.unavailable;
            ready = true;
            return;
        }
        ready = true;
        if (auto s = (*loop)->run(echo); !s) error = s.error().message;
        stats = (*loop)->stats();
    });
    while (!ready) std::this_thread::sleep_for(1ms);
    if (!error.empty()) {
        loop_thread.join();
        if (unavailable) {
            MESSAGE("io_uring unavailable here, skipped: " << error);
            return;
        }
        FAIL(error);
    }

    Spec s;
    s.tcp_options = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};
    const auto tcp = tcp_run(s, 46, 1360, 1000);
    Spec u;
    u.udp = true;
    u.v6 = true;
    std::vector<Bytes> udp;
    for (size_t i = 0; i < 10; ++i) {
        udp.push_back(test::make_packet(u, test::pattern(1200, static_cast<uint8_t>(i))));
        u.id++;
    }
    const auto [partial, partial_hdr] = partial_udp(500);

    // A TCP super-packet comes back as one.
    const Bytes m1 = super_packet(tcp);
    REQUIRE(write(far.get(), m1.data(), m1.size()) == static_cast<ssize_t>(m1.size()));
    Bytes back = next_message(far.get());
    CHECK(VirtioNetHdr::decode(back)->gso_type == VirtioNetHdr::kGsoTcpV4);
    CHECK(split(back) == tcp);

    // So does a UDP one (the device took USO).
    const Bytes m2 = super_packet(udp);
    REQUIRE(write(far.get(), m2.data(), m2.size()) == static_cast<ssize_t>(m2.size()));
    back = next_message(far.get());
    CHECK(VirtioNetHdr::decode(back)->gso_type == VirtioNetHdr::kGsoUdpL4);
    CHECK(split(back) == udp);

    // An ordinary packet comes back alone, its checksum still partial,
    // behind a header that says where to finish it.
    const Bytes m3 = with_header(partial_hdr, partial);
    REQUIRE(write(far.get(), m3.data(), m3.size()) == static_cast<ssize_t>(m3.size()));
    back = next_message(far.get());
    REQUIRE(back.size() == kHdr + partial.size());
    CHECK(*VirtioNetHdr::decode(back) == partial_hdr);
    CHECK(Bytes(back.begin() + kHdr, back.end()) == partial);

    // A bad one is dropped and counted; the loop goes on.
    Bytes bad = m1;
    bad[kHdr + 2] = std::byte{0x02};
    REQUIRE(write(far.get(), bad.data(), bad.size()) == static_cast<ssize_t>(bad.size()));
    REQUIRE(write(far.get(), m3.data(), m3.size()) == static_cast<ssize_t>(m3.size()));
    back = next_message(far.get());
    CHECK(back.size() == kHdr + partial.size());

    echo.stop = true;
    loop_thread.join();
    CHECK(error.empty());
    CHECK(echo.write_errors == 0);
    CHECK(echo.seen == tcp.size() + udp.size() + 2);
    CHECK(stats.tun_reads == tcp.size() + udp.size() + 2);
    CHECK(stats.tun_super_reads == 3);  // the bad one included: it was a super-packet
    CHECK(stats.tun_bad_reads == 1);
    CHECK(stats.tun_super_writes == 2);
    CHECK(stats.tun_merged == tcp.size() - 1 + udp.size() - 1);
    CHECK(stats.slots_held == 0);
}

}  // namespace

TEST_CASE("io_uring loop with a vnet_hdr device: super-packets in, split, coalesced, out") {
    echo_through_loop<true>();
}

TEST_CASE("epoll loop with a vnet_hdr device: super-packets in, split, coalesced, out") {
    echo_through_loop<false>();
}
