// SPDX-License-Identifier: BSD-2-Clause
#include "tests/fuzz/harness.hpp"

#include <arpa/inet.h>
#include <malloc.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/wire.hpp"

// ---- Key memory -------------------------------------------------------------

// core keeps every key in sodium_malloc memory (core/secret.hpp): guard
// pages, mprotect and mlock, about ten system calls per key, and a Tunnel
// pair makes dozens of keys per input — most of the time of a run. Here the
// executable's definitions take the place of libsodium's (symbol
// interposition): plain heap memory, which AddressSanitizer watches more
// closely than guard pages do (overflows by one byte, use after free, leaks),
// wiped on free as libsodium does. Only core calls these; libsodium's own
// code never hands us memory from its allocator to free.
extern "C" void* sodium_malloc(const size_t size) {
    void* p = std::malloc(size == 0 ? 1 : size);
    if (p != nullptr) std::memset(p, 0xdb, size);  // garbage, as sodium_malloc's is
    return p;
}

extern "C" void sodium_free(void* p) {
    if (p == nullptr) return;
    sodium_memzero(p, malloc_usable_size(p));
    std::free(p);
}

namespace mlvpn::fuzz {

using namespace std::chrono_literals;

void check_failed(const char* expr, const char* file, int line, const std::string& why) {
    std::fprintf(stderr, "%s:%d: fuzz check failed: %s: %s\n", file, line, expr, why.c_str());
    std::fflush(stderr);
    std::abort();
}

// ---- Determinism ------------------------------------------------------------

namespace {

// libsodium's random source is process-wide, so its replacement is too.
struct RandomStream {
    std::array<uint8_t, randombytes_SEEDBYTES> key{};
    uint64_t calls = 0;
};
RandomStream g_stream;

// Each request gets its own block of the stream: the key with the call
// number folded in, through randombytes_buf_deterministic (ChaCha20).
void stream_buf(void* out, size_t size) {
    auto key = g_stream.key;
    const uint64_t n = g_stream.calls++;
    for (size_t i = 0; i < sizeof n; ++i) key[i] ^= static_cast<uint8_t>(n >> (8 * i));
    randombytes_buf_deterministic(out, size, key.data());
}
uint32_t stream_random() {
    uint32_t v = 0;
    stream_buf(&v, sizeof v);
    return v;
}
const char* stream_name() { return "mlvpn-fuzz-deterministic"; }
void stream_stir() {}
int stream_close() { return 0; }

randombytes_implementation g_implementation = {
    stream_name, stream_random, stream_stir, nullptr /* uniform: libsodium derives it */, stream_buf, stream_close,
};

}  // namespace

void use_deterministic_random() {
    static const bool done = [] {
        reset_random(0);
        if (randombytes_set_implementation(&g_implementation) != 0 || sodium_init() < 0) {
            std::fprintf(stderr, "libsodium failed to initialise\n");
            std::abort();
        }
        return true;
    }();
    (void)done;
}

void reset_random(uint64_t seed) {
    g_stream.key.fill(0x6d);  // 'm'
    for (size_t i = 0; i < sizeof seed; ++i) g_stream.key[8 + i] = static_cast<uint8_t>(seed >> (8 * i));
    g_stream.calls = 0;
}

bool tracing() {
    static const bool on = [] {
        const char* v = std::getenv("MLVPN_FUZZ_TRACE");
        return v != nullptr && *v != '\0' && *v != '0';
    }();
    return on;
}

// ---- Framing ----------------------------------------------------------------

std::vector<std::span<const uint8_t>> split(std::span<const uint8_t> input) {
    std::vector<std::span<const uint8_t>> out;
    const auto* sep = reinterpret_cast<const uint8_t*>(kSeparator.data());
    auto rest = input;
    for (;;) {
        const auto it = std::search(rest.begin(), rest.end(), sep, sep + kSeparator.size());
        const auto n = static_cast<size_t>(it - rest.begin());
        out.push_back(rest.first(n));
        if (it == rest.end()) break;
        rest = rest.subspan(n + kSeparator.size());
    }
    return out;
}

std::vector<uint8_t> join(const std::vector<std::vector<uint8_t>>& chunks) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i < chunks.size(); ++i) {
        if (i > 0) out.insert(out.end(), kSeparator.begin(), kSeparator.end());
        const auto& c = chunks[i];
        FUZZ_CHECK(std::search(c.begin(), c.end(), kSeparator.begin(), kSeparator.end()) == c.end(),
                   "chunk {} contains the separator; a seed must not", i);
        out.insert(out.end(), c.begin(), c.end());
    }
    return out;
}

Bytes to_bytes(std::span<const uint8_t> s) {
    Bytes b(s.size());
    if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
    return b;
}

std::vector<uint8_t> to_u8(std::span<const std::byte> s) {
    std::vector<uint8_t> v(s.size());
    if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
    return v;
}

// ---- PoolIo -----------------------------------------------------------------

void Authentic::merge(const Authentic& o) {
    data.insert(o.data.begin(), o.data.end());
    other.insert(o.other.begin(), o.other.end());
}

PoolIo::PoolIo(size_t slots, uint32_t slot_size)
    : slot_size_(slot_size), storage_(slots * slot_size), buffers_(slots), out_(slots, false) {
    for (size_t i = 0; i < slots; ++i) {
        buffers_[i] = core::Buffer{storage_.data() + i * slot_size, slot_size, 0, 0, static_cast<uint32_t>(i)};
        free_.push_back(&buffers_[i]);
    }
}

core::Buffer* PoolIo::acquire() {
    if (free_.empty()) return nullptr;
    core::Buffer* b = free_.back();
    free_.pop_back();
    out_[b->index] = true;
    b->offset = core::wire::kHeadroom;
    b->length = 0;
    b->checksum_partial = false;
    return b;
}

void PoolIo::give_back(core::Buffer* b, const char* how) {
    FUZZ_CHECK(b != nullptr, "{}: a null buffer", how);
    FUZZ_CHECK(b->index < buffers_.size() && b == &buffers_[b->index], "{}: a buffer that is not from this pool",
               how);
    FUZZ_CHECK(out_[b->index], "{}: buffer {} was already given back (double release)", how, b->index);
    out_[b->index] = false;
    free_.push_back(b);
}

void PoolIo::check_view(const core::Buffer* b, const char* how) const {
    FUZZ_CHECK(b->capacity == slot_size_ && uint64_t{b->offset} + b->length <= b->capacity,
               "{}: view [{}, +{}) leaves its {}-byte slot", how, b->offset, b->length, b->capacity);
}

void PoolIo::release(core::Buffer* b) { give_back(b, "release"); }

namespace {

// Handshake messages any pair of this process sent. The random stream starts
// over with every pair (reset_random), so every pair's client makes the same
// initiations, and a response an earlier pair's server made to one of them is
// as genuine here as a replay of this pair's own: made with the PSK, for this
// very ephemeral key. The fuzzer learns such bytes (from comparisons) and
// feeds them to a later pair; the client rightly takes them. Bounded, as the
// fuzzer can make only so many distinct genuine messages.
std::set<Bytes>& handshakes_ever_sent() {
    static std::set<Bytes> sent;
    return sent;
}
constexpr size_t kHandshakesKept = size_t{1} << 16;

}  // namespace

bool sent_by_any_pair(const Bytes& d) { return handshakes_ever_sent().count(d) != 0; }

void PoolIo::send(core::LinkIndex link, core::Buffer* b, const core::Endpoint* to) {
    FUZZ_CHECK(b != nullptr, "send: a null buffer");
    check_view(b, "send");
    const auto bytes = b->bytes();
    Bytes copy(bytes.begin(), bytes.end());
    history.other.insert(copy);
    const auto type = copy.empty() ? 0 : std::to_integer<int>(copy[0]);
    if ((type == 1 || type == 2) && handshakes_ever_sent().size() < kHandshakesKept) {
        handshakes_ever_sent().insert(copy);
    }
    sent.push_back(Sent{link, std::move(copy), to ? *to : core::Endpoint{}});
    give_back(b, "send");
}

void PoolIo::write_tun(core::Buffer* b) {
    FUZZ_CHECK(b != nullptr, "write_tun: a null buffer");
    check_view(b, "write_tun");
    const auto bytes = b->bytes();
    tun.emplace_back(bytes.begin(), bytes.end());
    give_back(b, "write_tun");
}

core::Buffer* PoolIo::make(std::span<const std::byte> bytes, uint32_t offset) {
    core::Buffer* b = acquire();
    if (b == nullptr) return nullptr;
    const size_t n = std::min<size_t>(bytes.size(), slot_size_ - offset);
    b->offset = offset;
    b->length = static_cast<uint32_t>(n);
    if (n > 0) std::memcpy(b->data + offset, bytes.data(), n);
    return b;
}

// ---- Peers --------------------------------------------------------------------

namespace {

core::Endpoint endpoint(const char* ip, uint16_t port) {
    core::Endpoint e;
    e.addr.in4.sin_family = AF_INET;
    e.addr.in4.sin_port = htons(port);
    inet_pton(AF_INET, ip, &e.addr.in4.sin_addr);
    e.len = sizeof(sockaddr_in);
    return e;
}

core::SecretKey test_psk() {
    core::SecretKey k;
    for (size_t i = 0; i < k.size(); ++i) k.data()[i] = static_cast<uint8_t>(0xa0 + i);
    return k;
}

}  // namespace

Peers::Peers(const PeersOptions& o) : options(o), stranger(endpoint("203.0.113.7", 4444)) {
    reset_random(o.random_seed);
    core::TunnelSettings c, s;
    c.mode = core::Mode::Client;
    s.mode = core::Mode::Server;
    c.cleartext_data = o.client_cleartext;
    s.reorder_buffer_size = o.server_reorder;
    for (size_t i = 0; i < o.links; ++i) {
        client_addr.push_back(endpoint("198.18.0.1", static_cast<uint16_t>(40000 + i)));
        server_addr.push_back(endpoint("198.18.0.2", static_cast<uint16_t>(5080 + i)));
        core::LinkSettings l;
        l.name = fmt::format("link{}", i);
        l.timeout = 10s;
        l.connected = true;
        c.links.push_back(l);
        l.connected = false;
        if (o.restrict_last_link && i + 1 == o.links) {
            core::Endpoint allowed = client_addr.back();
            allowed.addr.in4.sin_port = 0;  // any port
            l.allowed_peer = allowed;
        }
        s.links.push_back(l);
    }
    client_ = std::make_unique<core::Tunnel>(c, test_psk(), clock, log);
    server_ = std::make_unique<core::Tunnel>(s, test_psk(), clock, log);
}

const core::Endpoint& Peers::peer_address(bool client, size_t link) const {
    return client ? server_addr[link] : client_addr[link];
}

void Peers::tick(core::Duration step) {
    clock.advance(step);
    client_->on_timer(client_io);
    server_->on_timer(server_io);
}

void Peers::deliver() {
    for (int round = 0; round < 8; ++round) {
        auto from_client = std::exchange(client_io.sent, {});
        auto from_server = std::exchange(server_io.sent, {});
        if (from_client.empty() && from_server.empty()) return;
        for (const auto& [from, to_client] : {std::pair{&from_client, false}, std::pair{&from_server, true}}) {
            for (const auto& m : *from) {
                core::Buffer* b = io(to_client).make(m.bytes, 0);
                FUZZ_CHECK(b != nullptr, "deliver: buffer pool exhausted");
                core::Datagram d{b, peer_address(to_client, m.link)};
                tunnel(to_client).on_datagrams(m.link, std::span<core::Datagram>(&d, 1), io(to_client));
            }  // answers stay in `sent` for the next round
        }
    }
}

bool Peers::establish() {
    for (int i = 0; i < 50; ++i) {
        tick(100ms);
        deliver();
        if (client_->usable_links() == client_->link_count() && server_->usable_links() == server_->link_count()) {
            return true;
        }
    }
    return false;
}

std::vector<PoolIo::Sent> Peers::seal(bool client, const std::vector<Bytes>& packets, uint8_t space) {
    PoolIo& x = io(client);
    const size_t before = x.sent.size();
    std::vector<core::Buffer*> bufs;
    for (const auto& p : packets) {
        core::Buffer* b = x.make(p, core::wire::kHeadroom);
        FUZZ_CHECK(b != nullptr, "seal: buffer pool exhausted");
        bufs.push_back(b);
    }
    tunnel(client).on_tun_packets(bufs, x, space);
    FUZZ_CHECK(x.sent.size() - before == packets.size(), "seal: {} packets gave {} datagrams", packets.size(),
               x.sent.size() - before);
    std::vector<PoolIo::Sent> out(x.sent.begin() + static_cast<long>(before), x.sent.end());
    x.sent.resize(before);
    for (size_t i = 0; i < out.size(); ++i) {
        x.history.other.erase(out[i].bytes);
        x.history.data.emplace(out[i].bytes, packets[i]);
    }
    return out;
}

std::vector<PoolIo::Sent> Peers::take_sent(bool client) { return std::exchange(io(client).sent, {}); }

std::vector<PoolIo::Sent> Peers::give(bool to_client, size_t link, const Bytes& datagram) {
    core::Buffer* b = io(to_client).make(datagram, 0);
    FUZZ_CHECK(b != nullptr, "give: buffer pool exhausted");
    core::Datagram d{b, peer_address(to_client, link)};
    tunnel(to_client).on_datagrams(static_cast<core::LinkIndex>(link), std::span<core::Datagram>(&d, 1),
                                   io(to_client));
    return take_sent(to_client);
}

void Peers::drain() {
    for (bool c : {true, false}) {
        tunnel(c).flush(io(c));
        FUZZ_CHECK(io(c).free_buffers() == io(c).total_buffers(), "{}: {} of {} buffers never came back",
                   c ? "client" : "server", io(c).total_buffers() - io(c).free_buffers(), io(c).total_buffers());
    }
}

// ---- run_datagrams ------------------------------------------------------------

std::vector<uint8_t> chunk(size_t link, std::span<const std::byte> datagram, unsigned clock_exponent,
                           bool from_stranger) {
    std::vector<uint8_t> c;
    c.push_back(static_cast<uint8_t>((link & 3) | (from_stranger ? 4 : 0) | ((clock_exponent & 31) << 3)));
    const auto u = to_u8(datagram);
    c.insert(c.end(), u.begin(), u.end());
    return c;
}

namespace {

// One side as run_datagrams sees it.
struct Side {
    bool client;
    const char* name;
    const PoolIo* peer_io;          // the peer's history: what it really sent
    const Authentic* peer_also;     // ... and what an identical peer sealed
    std::set<Bytes> given;          // the peer's Data datagrams given so far
    std::vector<Bytes> may_write;   // packets it may still write, each once
    size_t tun_checked = 0;

    bool authentic(const Bytes& d) const {
        return peer_io->history.contains(d) || peer_also->contains(d) || sent_by_any_pair(d);
    }
    const Bytes* data_inside(const Bytes& d) const {
        if (auto it = peer_io->history.data.find(d); it != peer_io->history.data.end()) return &it->second;
        if (auto it = peer_also->data.find(d); it != peer_also->data.end()) return &it->second;
        return nullptr;
    }
};

void check_tun(Peers& p, Side& s, const char* when) {
    const PoolIo& io = p.io(s.client);
    for (; s.tun_checked < io.tun.size(); ++s.tun_checked) {
        const Bytes& w = io.tun[s.tun_checked];
        const auto it = std::find(s.may_write.begin(), s.may_write.end(), w);
        FUZZ_CHECK(it != s.may_write.end(),
                   "the {} wrote a {}-byte packet to its TUN {} that its peer did not seal, or wrote one twice",
                   s.name, w.size(), when);
        s.may_write.erase(it);
    }
    FUZZ_CHECK(p.tunnel(s.client).stats().tun_tx == io.tun.size(), "the {} counts {} TUN writes but made {}",
               s.name, p.tunnel(s.client).stats().tun_tx, io.tun.size());
}

std::string outcome(const core::LinkStats& a, const core::LinkStats& b) {
    std::string out;
    auto note = [&](const char* what, uint64_t before, uint64_t after) {
        if (after != before) out += fmt::format(" {}+{}", what, after - before);
    };
    note("rx", a.rx_packets, b.rx_packets);
    note("data", a.rx_data, b.rx_data);
    note("handshake", a.handshakes_received, b.handshakes_received);
    note("completed", a.handshakes_completed, b.handshakes_completed);
    note("auth", a.drop_auth, b.drop_auth);
    note("replay", a.drop_replay, b.drop_replay);
    note("malformed", a.drop_malformed, b.drop_malformed);
    note("no-session", a.drop_no_session, b.drop_no_session);
    note("peer", a.drop_peer, b.drop_peer);
    return out.empty() ? " nothing counted" : out;
}

void feed(Peers& p, Side& s, size_t link, const Bytes& d, const core::Endpoint& from) {
    PoolIo& io = p.io(s.client);
    const core::LinkStats stats_before = p.tunnel(s.client).link(static_cast<core::LinkIndex>(link)).stats;
    const size_t tun_before = io.tun.size();
    if (const Bytes* inside = s.data_inside(d); inside != nullptr && s.given.insert(d).second) {
        s.may_write.push_back(*inside);
    }
    const size_t sent_before = io.sent.size();
    core::Buffer* b = io.make(d, 0);
    FUZZ_CHECK(b != nullptr, "the {} holds every buffer of its pool ({})", s.name, io.total_buffers());
    core::Datagram dg{b, from};
    p.tunnel(s.client).on_datagrams(static_cast<core::LinkIndex>(link), std::span<core::Datagram>(&dg, 1), io);

    const size_t answers = io.sent.size() - sent_before;
    if (answers > 0) {
        FUZZ_CHECK(s.authentic(d), "the {} answered a {}-byte datagram (type {}) that its peer never sent", s.name,
                   d.size(), d.empty() ? -1 : std::to_integer<int>(d[0]));
        FUZZ_CHECK(answers == 1, "the {} sent {} datagrams in answer to one", s.name, answers);
        const auto& a = io.sent.back();
        FUZZ_CHECK(a.bytes.size() <= d.size(), "the {} answered {} bytes with {}", s.name, d.size(), a.bytes.size());
        FUZZ_CHECK(s.client || a.to == from, "the server answered somewhere else than where the datagram came from");
    }
    if (tracing()) {
        std::fprintf(stderr, "  %s link %zu, %zu bytes from %s:%s; sent %zu, wrote %zu\n", s.name, link, d.size(),
                     from.to_string().c_str(),
                     outcome(stats_before, p.tunnel(s.client).link(static_cast<core::LinkIndex>(link)).stats).c_str(),
                     answers, io.tun.size() - tun_before);
    }
    check_tun(p, s, "after a datagram");
}

}  // namespace

void run_datagrams(Peers& p, const Authentic& also_client, const Authentic& also_server,
                   std::span<const uint8_t> input) {
    Side server{false, "server", &p.client_io, &also_client, {}, {}, 0};
    Side client{true, "client", &p.server_io, &also_server, {}, {}, 0};
    server.tun_checked = p.server_io.tun.size();
    client.tun_checked = p.client_io.tun.size();
    const size_t links = p.tunnel(true).link_count();

    for (const auto c : split(input)) {
        if (c.empty()) continue;
        const uint8_t control = c[0];
        const size_t link = (control & 3u) % links;
        const bool from_stranger = (control & 4u) != 0;
        if (const unsigned v = control >> 3; v > 0) {
            const size_t sent[2] = {p.server_io.sent.size(), p.client_io.sent.size()};
            const size_t wrote[2] = {p.server_io.tun.size(), p.client_io.tun.size()};
            p.tick(std::chrono::milliseconds(int64_t{1} << (v - 1)));
            if (tracing()) {
                std::fprintf(stderr, "  timers after %lld ms: server sent %zu, wrote %zu; client sent %zu, wrote %zu\n",
                             static_cast<long long>(int64_t{1} << (v - 1)), p.server_io.sent.size() - sent[0],
                             p.server_io.tun.size() - wrote[0], p.client_io.sent.size() - sent[1],
                             p.client_io.tun.size() - wrote[1]);
            }
            // Timers may flush the reorder buffer; what they send stays
            // undelivered (the input is the network) but is authentic.
            check_tun(p, server, "on a timer");
            check_tun(p, client, "on a timer");
        }
        const Bytes d = to_bytes(c.subspan(1));
        feed(p, server, link, d, from_stranger ? p.stranger : p.client_addr[link]);
        feed(p, client, link, d, p.server_addr[link]);
    }
    p.drain();
}

}  // namespace mlvpn::fuzz
