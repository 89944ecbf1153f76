// SPDX-License-Identifier: BSD-2-Clause
// FakeIo and Pair: two Tunnels joined by in-memory links, so the whole
// protocol runs in one process with a FakeClock (like wireguard-go's tuntest).
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/io.hpp"
#include "core/log.hpp"
#include "core/tunnel.hpp"
#include "core/wire.hpp"

namespace mlvpn::test {

using namespace mlvpn::core;

struct Sent {
    LinkIndex link;
    std::vector<std::byte> bytes;
    Endpoint to;  // empty for a connected socket
};

class FakeIo final : public Io {
public:
    explicit FakeIo(size_t slots = 4096, uint32_t slot_size = 2048) : slot_size_(slot_size) {
        storage_.resize(slots * slot_size);
        buffers_.resize(slots);
        for (size_t i = 0; i < slots; ++i) {
            buffers_[i] = Buffer{storage_.data() + i * slot_size, slot_size, 0, 0, static_cast<uint32_t>(i)};
            free_.push_back(&buffers_[i]);
        }
    }
    Buffer* acquire() override {
        if (free_.empty()) return nullptr;
        Buffer* b = free_.back();
        free_.pop_back();
        b->offset = wire::kHeadroom;
        b->length = 0;
        b->checksum_partial = false;
        return b;
    }
    void release(Buffer* b) override { free_.push_back(b); }
    void send(LinkIndex link, Buffer* b, const Endpoint* to) override {
        auto bytes = b->bytes();
        sent.push_back(Sent{link, {bytes.begin(), bytes.end()}, to ? *to : Endpoint{}});
        release(b);
    }
    void write_tun(Buffer* b) override {
        auto bytes = b->bytes();
        tun.emplace_back(bytes.begin(), bytes.end());
        tun_partial.push_back(b->checksum_partial);
        release(b);
    }
    // A buffer holding `bytes` at `offset`.
    Buffer* make(std::span<const std::byte> bytes, uint32_t offset) {
        Buffer* b = acquire();
        REQUIRE(b != nullptr);
        b->offset = offset;
        b->length = static_cast<uint32_t>(bytes.size());
        // An empty span may have a null data(): memcpy must not see it (UBSan).
        if (!bytes.empty()) std::memcpy(b->data + offset, bytes.data(), bytes.size());
        return b;
    }
    size_t free_buffers() const { return free_.size(); }
    size_t total_buffers() const { return buffers_.size(); }

    std::vector<Sent> sent;
    std::vector<std::vector<std::byte>> tun;
    std::vector<bool> tun_partial;  // each write_tun buffer's checksum_partial

private:
    uint32_t slot_size_;
    std::vector<std::byte> storage_;
    std::vector<Buffer> buffers_;
    std::vector<Buffer*> free_;
};

class CaptureSink final : public LogSink {
public:
    void write(Level, std::string_view m) override { lines.emplace_back(m); }
    std::vector<std::string> lines;
};

inline Endpoint endpoint(const char* ip, uint16_t port) {
    Endpoint e;
    e.addr.in4.sin_family = AF_INET;
    e.addr.in4.sin_port = htons(port);
    inet_pton(AF_INET, ip, &e.addr.in4.sin_addr);
    e.len = sizeof(sockaddr_in);
    return e;
}

// An IPv4 packet of `size` bytes with a recognisable body.
inline std::vector<std::byte> ip_packet(size_t size, uint8_t tag) {
    std::vector<std::byte> p(size, std::byte{tag});
    p[0] = std::byte{0x45};
    return p;
}

inline SecretKey key_of(uint8_t fill) {
    SecretKey k;
    std::memset(k.data(), fill, k.size());
    return k;
}

// A client and a server Tunnel with `links` links between them. Link i of the
// client talks to link i of the server. Datagrams are delivered by deliver().
struct Pair {
    FakeClock clock;
    CaptureSink sink;
    Logger log{sink, Level::Debug};
    FakeIo client_io, server_io;
    std::unique_ptr<Tunnel> client, server;
    Time client_due_{}, server_due_{};  // what each side's on_timer last asked for
    std::vector<Endpoint> client_addr;  // the client's source address per link
    // The server's address per link, when the client's links know it
    // (LinkSettings::remote: an unconnected socket); empty: connected.
    std::vector<Endpoint> server_addr;
    // Return false to drop a datagram in flight (client_to_server, link, bytes).
    std::function<bool(bool, LinkIndex, const std::vector<std::byte>&)> filter;
    std::vector<Sent> dropped;

    explicit Pair(size_t links, uint8_t client_key = 1, uint8_t server_key = 1,
                  std::function<void(TunnelSettings&, TunnelSettings&)> tweak = {}) {
        TunnelSettings c, s;
        c.mode = Mode::Client;
        s.mode = Mode::Server;
        for (size_t i = 0; i < links; ++i) {
            LinkSettings l;
            l.name = "link" + std::to_string(i);
            l.timeout = std::chrono::seconds(10);
            l.connected = true;
            c.links.push_back(l);
            l.connected = false;
            s.links.push_back(l);
            client_addr.push_back(endpoint("198.18.0.1", static_cast<uint16_t>(40000 + i)));
            server_addr.emplace_back();
        }
        if (tweak) tweak(c, s);
        client = std::make_unique<Tunnel>(c, key_of(client_key), clock, log);
        server = std::make_unique<Tunnel>(s, key_of(server_key), clock, log);
    }

    Endpoint server_of(LinkIndex link) const { return link < server_addr.size() ? server_addr[link] : Endpoint{}; }

    // Moves everything sent so far to the other side; returns how many moved.
    size_t deliver() {
        size_t moved = 0;
        for (int round = 0; round < 8; ++round) {
            auto from_client = std::exchange(client_io.sent, {});
            auto from_server = std::exchange(server_io.sent, {});
            if (from_client.empty() && from_server.empty()) break;
            for (auto& m : from_client) {
                if (filter && !filter(true, m.link, m.bytes)) {
                    dropped.push_back(m);
                    continue;
                }
                REQUIRE(m.to == server_of(m.link));  // the client sends where the server is
                Datagram d{server_io.make(m.bytes, 0), client_addr[m.link]};
                server->on_datagrams(m.link, std::span<Datagram>(&d, 1), server_io);
                ++moved;
            }
            for (auto& m : from_server) {
                if (filter && !filter(false, m.link, m.bytes)) {
                    dropped.push_back(m);
                    continue;
                }
                REQUIRE(m.to == client_addr[m.link]);  // the server answers where the client is
                Datagram d{client_io.make(m.bytes, 0), server_of(m.link)};
                client->on_datagrams(m.link, std::span<Datagram>(&d, 1), client_io);
                ++moved;
            }
        }
        return moved;
    }

    // Lets `step` of time pass, `times` over, as the worker's loop would:
    // each side's timers run when they said they were due (acknowledgements
    // go out within milliseconds, not at the end of the step), and after
    // anything is delivered. Delivery itself takes no time.
    void tick(Duration step = std::chrono::milliseconds(100), int times = 1) {
        for (int i = 0; i < times; ++i) {
            const Time target = clock.now() + step;
            for (int guard = 0; guard < 100'000; ++guard) {
                const Time next = std::min(client_due_, server_due_);
                if (next >= target) break;
                if (next > clock.now()) clock.advance(next - clock.now());
                run_timers();
            }
            clock.advance(target - clock.now());
            run_timers();
        }
    }

    // Both sides' timers, then delivery, until nothing more moves now.
    void run_timers() {
        for (int round = 0; round < 8; ++round) {
            client_due_ = client->on_timer(client_io);
            server_due_ = server->on_timer(server_io);
            if (deliver() == 0) break;
        }
    }

    // Runs timers until every link is up on both sides (or gives up).
    bool establish(int max_ticks = 50) {
        for (int i = 0; i < max_ticks; ++i) {
            tick();
            if (client->usable_links() == client->link_count() &&
                server->usable_links() == server->link_count()) {
                return true;
            }
        }
        return false;
    }

    // Sends packets into one side's TUN path, sealed in counter space
    // `space` where the session allows it, and delivers them; `partial`:
    // as the TUN reader marks a packet whose checksum it left partial.
    void send_from(bool from_client, const std::vector<std::vector<std::byte>>& packets, uint8_t space = 0,
                   bool partial = false) {
        FakeIo& io = from_client ? client_io : server_io;
        std::vector<Buffer*> bufs;
        for (auto& p : packets) {
            bufs.push_back(io.make(p, wire::kHeadroom));
            bufs.back()->checksum_partial = partial;
        }
        (from_client ? client : server)->on_tun_packets(bufs, io, space);
        deliver();
    }
};

// `count` IP packets of `size` bytes, tagged tag, tag+1, ...
inline std::vector<std::vector<std::byte>> packets(size_t count, size_t size, uint8_t tag = 0x11) {
    std::vector<std::vector<std::byte>> out;
    for (size_t i = 0; i < count; ++i) out.push_back(ip_packet(size, static_cast<uint8_t>(tag + i)));
    return out;
}

// Whether a datagram on the wire is a transport packet of `type` (type byte
// and a whole header); is_data and is_control for the two kinds.
inline bool is_type(const std::vector<std::byte>& d, wire::Type type) {
    return d.size() >= 16 && d[0] == std::byte(static_cast<uint8_t>(type));
}
inline bool is_data(const std::vector<std::byte>& d) { return is_type(d, wire::Type::Data); }
inline bool is_control(const std::vector<std::byte>& d) { return is_type(d, wire::Type::Control); }

// A transport datagram's counter space, as the wire has it (the top bits of
// byte wire::kWireSpaceByte), and the same datagram relabelled to another.
inline uint8_t wire_space(const std::vector<std::byte>& d) {
    return static_cast<uint8_t>(std::to_integer<unsigned>(d[wire::kWireSpaceByte]) >> wire::kWireSpaceShift);
}
inline void set_wire_space(std::vector<std::byte>& d, uint8_t space) {
    const unsigned low = std::to_integer<unsigned>(d[wire::kWireSpaceByte]) & ((1u << wire::kWireSpaceShift) - 1);
    d[wire::kWireSpaceByte] = std::byte(static_cast<uint8_t>(space << wire::kWireSpaceShift | low));
}

// The receiver learns where the sender's data sequence starts (at random)
// from its first packet: one packet each way, so that what a test sends next
// is not the first; the devices are cleared of them.
inline void start_sequences(Pair& p) {
    p.send_from(true, packets(1, 100, 0x01));
    p.send_from(false, packets(1, 100, 0x01));
    p.server_io.tun.clear();
    p.client_io.tun.clear();
}

// The first data packet from the client to the server goes missing (the
// filter keeps it in p.dropped); the rest pass.
inline void drop_first_data_up(Pair& p) {
    p.filter = [first = true](bool up, LinkIndex, const std::vector<std::byte>& d) mutable {
        if (up && is_data(d) && first) {
            first = false;
            return false;
        }
        return true;
    };
}

// The first data packet from the client to the server goes missing, and so
// does every later one on the same link (the filter keeps them in p.dropped,
// in order): a link gone quiet, so that no later packet on it tells the
// receiver the first was lost (core/data_chain.hpp), and the gap waits.
// `space`: only data of that counter space (any: -1).
inline void drop_link_of_first_data_up(Pair& p, int space = -1) {
    p.filter = [space, link = std::optional<LinkIndex>()](bool up, LinkIndex l,
                                                          const std::vector<std::byte>& d) mutable {
        if (!up || !is_data(d) || (space >= 0 && wire_space(d) != space)) return true;
        if (!link) link = l;
        return l != *link;
    };
}

// Every buffer is back in both ends' pools.
inline void check_no_leak(Pair& p) {
    CHECK(p.client_io.free_buffers() == p.client_io.total_buffers());
    CHECK(p.server_io.free_buffers() == p.server_io.total_buffers());
}

}  // namespace mlvpn::test
