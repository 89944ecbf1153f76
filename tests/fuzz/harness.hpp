// SPDX-License-Identifier: BSD-2-Clause
// The fuzz targets' shared harness: checks that abort with a reason, a
// deterministic random source, the input framing, a pool-backed fake Io, and
// a client/server pair of Tunnels driven on a FakeClock.
//
// Key memory: harness.cpp gives core plain heap memory for its keys in
// place of libsodium's guarded pages (see there why).
//
// Doctest-free on purpose: the same code runs under libFuzzer (clang,
// -fsanitize=fuzzer) and in the plain replay binaries (g++, replay_main.cpp).
//
// Input framing, shared by every target that takes several messages: the
// input is a list of chunks separated by kSeparator. A raw input without the
// separator is one chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "core/buffer.hpp"
#include "core/clock.hpp"
#include "core/io.hpp"
#include "core/log.hpp"
#include "core/tunnel.hpp"

namespace mlvpn::fuzz {

// ---- Checks -----------------------------------------------------------------

// Prints "FILE:LINE: fuzz check failed: EXPR: WHY" and aborts, which libFuzzer
// turns into a crash with a reproducer and the replay binary into a failure.
[[noreturn]] void check_failed(const char* expr, const char* file, int line, const std::string& why);

#define FUZZ_CHECK(cond, ...)                                                                       \
    do {                                                                                            \
        if (!(cond)) ::mlvpn::fuzz::check_failed(#cond, __FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
    } while (0)

// MLVPN_FUZZ_TRACE=1 in the environment: the targets say on stderr what
// became of each message, to check that a new seed does what it is meant to.
bool tracing();

// ---- Determinism ------------------------------------------------------------

// Replaces libsodium's random source with a ChaCha20 stream (randombytes_set_
// implementation) and initialises libsodium. Handshakes then pick the same
// ephemeral keys and session indexes every time, so packets captured from
// one Tunnel pair authenticate against another built the same way: that is
// what makes the committed seeds meaningful. Idempotent; process-wide,
// because libsodium's random source is. Fuzzing only — never in the daemon.
void use_deterministic_random();
// Restarts the stream from `seed`.
void reset_random(uint64_t seed);

// ---- Framing ----------------------------------------------------------------

inline constexpr std::string_view kSeparator = "--next--";

std::vector<std::span<const uint8_t>> split(std::span<const uint8_t> input);
std::vector<uint8_t> join(const std::vector<std::vector<uint8_t>>& chunks);

using Bytes = std::vector<std::byte>;
Bytes to_bytes(std::span<const uint8_t> s);
std::vector<uint8_t> to_u8(std::span<const std::byte> s);

// ---- Seeds ------------------------------------------------------------------

struct Seed {
    std::string name;  // the file name in tests/fuzz/corpus/TARGET/
    std::vector<uint8_t> bytes;
};

// Defined by each target: the seeds it generates for its committed corpus
// (fuzz_TARGET_replay --write-seeds DIR). May be empty for targets whose
// seeds are hand-written files.
std::vector<Seed> seeds();

// Optional, defined by targets that have one: checks of their types rather
// than of an input (a failure there would stop every input from being
// fuzzed). Run with the seed check (fuzz_seeds_TARGET); the replay binary's
// weak default does nothing.
void self_check();

// ---- A fake Io over a fixed pool ----------------------------------------------

// What one side sent, and so what its peer may legitimately accept.
struct Authentic {
    std::map<Bytes, Bytes> data;  // a sealed Data datagram -> the packet inside
    std::set<Bytes> other;        // handshake messages, keepalives
    bool contains(const Bytes& d) const { return data.count(d) != 0 || other.count(d) != 0; }
    void merge(const Authentic& o);
};

// Whether any PoolIo of this process ever sent handshake message `d`.
bool sent_by_any_pair(const Bytes& d);

// Every buffer comes from one pool and must come back exactly once (released,
// sent or written): a double return, a foreign buffer, or a view that leaves
// its slot fails a check at once; leaks show in free_buffers().
class PoolIo final : public core::Io {
public:
    struct Sent {
        core::LinkIndex link = 0;
        Bytes bytes;
        core::Endpoint to;  // empty for a connected socket
    };

    explicit PoolIo(size_t slots = 64, uint32_t slot_size = 2048);

    core::Buffer* acquire() override;
    void release(core::Buffer* b) override;
    void send(core::LinkIndex link, core::Buffer* b, const core::Endpoint* to) override;
    void write_tun(core::Buffer* b) override;

    // A buffer holding `bytes` (truncated to the slot, as a receive would) at
    // `offset`; nullptr when the pool is empty.
    core::Buffer* make(std::span<const std::byte> bytes, uint32_t offset);
    size_t free_buffers() const { return free_.size(); }
    size_t total_buffers() const { return buffers_.size(); }
    uint32_t slot_size() const { return slot_size_; }

    std::vector<Sent> sent;  // not yet delivered or taken
    std::vector<Bytes> tun;  // every packet written to the device
    Authentic history;       // every datagram ever sent (Data mapped by Peers::seal)

private:
    void give_back(core::Buffer* b, const char* how);
    void check_view(const core::Buffer* b, const char* how) const;

    uint32_t slot_size_;
    std::vector<std::byte> storage_;
    std::vector<core::Buffer> buffers_;
    std::vector<bool> out_;  // per slot: handed to core, not yet back
    std::vector<core::Buffer*> free_;
};

class NullSink final : public core::LogSink {
public:
    void write(core::Level, std::string_view) override {}
};

// ---- Two Tunnels ------------------------------------------------------------

struct PeersOptions {
    size_t links = 2;
    uint32_t server_reorder = 0;     // the server's reorder buffer, in packets
    bool client_cleartext = false;   // the client seals its data in clear mode
    bool restrict_last_link = true;  // the server's last link answers only the client's address
    uint64_t random_seed = 1;
};

// A client and a server Tunnel, link i of one talking to link i of the other,
// in a state that depends only on the options and what was done to them: the
// constructor restarts the deterministic random stream (use_deterministic_
// random() must have run).
class Peers {
public:
    explicit Peers(const PeersOptions& options);
    Peers(const Peers&) = delete;
    Peers& operator=(const Peers&) = delete;

    // Advances the clock and runs both sides' timers; what they send stays in
    // their io's `sent`.
    void tick(core::Duration step);
    // Hands everything sent so far to the other side, until quiet.
    void deliver();
    // Ticks and delivers until every link is up on both sides.
    bool establish();
    // One side reads `packets` from its TUN and seals them; the datagrams
    // are returned (and recorded as its Data), not delivered. Sealed in
    // counter space `space` where the session allows it.
    std::vector<PoolIo::Sent> seal(bool client, const std::vector<Bytes>& packets, uint8_t space = 0);
    // Takes what one side sent and nobody delivered.
    std::vector<PoolIo::Sent> take_sent(bool client);
    // Gives one side a datagram on `link` from its peer's address; returns
    // what that side sent meanwhile.
    std::vector<PoolIo::Sent> give(bool to_client, size_t link, const Bytes& datagram);
    // Hands back what the reorder buffers hold and checks that every buffer
    // is back in its pool.
    void drain();

    PoolIo& io(bool client) { return client ? client_io : server_io; }
    core::Tunnel& tunnel(bool client) { return client ? *client_ : *server_; }
    // Where a datagram from the other side comes from, on `link`.
    const core::Endpoint& peer_address(bool client, size_t link) const;

    const PeersOptions options;
    core::FakeClock clock;
    NullSink sink;
    core::Logger log{sink, core::Level::Debug};
    PoolIo client_io, server_io;
    std::vector<core::Endpoint> client_addr;  // the client's source address per link
    std::vector<core::Endpoint> server_addr;  // the server's address per link
    core::Endpoint stranger;                  // somebody else on the internet

private:
    std::unique_ptr<core::Tunnel> client_, server_;
};

// ---- Feeding datagrams to a pair ---------------------------------------------

// One chunk for run_datagrams():
//   byte 0: bits 0-1 link (modulo the link count)
//           bit 2    the server sees it come from `stranger`, not the client
//           bits 3-7 v: if v > 0, first advance the clock by 2^(v-1) ms and
//                    run both sides' timers
//   rest:   the datagram, given to the server and then to the client.
std::vector<uint8_t> chunk(size_t link, std::span<const std::byte> datagram, unsigned clock_exponent = 0,
                           bool from_stranger = false);

// Runs an input (chunks as above) against `p` and checks, after every step:
//  - a side writes to its TUN only packets its peer sealed, each at most
//    once, byte for byte, and only after it was given a byte-exact copy of
//    that datagram;
//  - a side sends nothing in answer to a datagram its peer did not produce,
//    at most one datagram in answer to one that it did, never more bytes than
//    it received, and (the server) only to where it came from;
//  - every buffer comes back to its pool (drain() at the end).
// What each side sent is known from its io's history, plus `also_client` /
// `also_server`: datagrams sealed by an identical pair that went further
// (the captured seeds).
void run_datagrams(Peers& p, const Authentic& also_client, const Authentic& also_server,
                   std::span<const uint8_t> input);

}  // namespace mlvpn::fuzz
