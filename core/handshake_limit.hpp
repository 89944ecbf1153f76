// SPDX-License-Identifier: BSD-2-Clause
// HandshakeLimiter: how many initiations the responder looks at — per source
// address and in all — before it spends any cryptography on them.
//
// Every initiation the responder reads costs it a few hashes, an HKDF and an
// AEAD open (no Diffie-Hellman: NNpsk0's first message needs none), and an
// initiation that repeats one it answered earns a 60-byte reply. Anyone can
// send initiations, from any source address they can forge, so both are
// bounded here, in constant time and constant memory per datagram:
//
//  - a token bucket per source (an IPv4 address, or the /64 of an IPv6
//    one), in a fixed table of limits::kSourceTableSize entries that never
//    grows, whatever an attacker sends from however many addresses;
//  - one global token bucket for every source that has not proved itself.
//
// A source proves itself by a fresh, authentic initiation (trust()): it needs
// the pre-shared key (an on-path attacker relaying a fresh initiation from
// its own address before the genuine copy arrives earns that one source, no
// more). For limits::kSourceTrust
// afterwards, the source is held to its own bucket only, not to the global
// one, and its table entry is never given to another source. That is what
// keeps a client that is already established able to rekey while a flood
// from forged sources empties the global bucket. A client that has never
// completed a handshake from its address (first start, new address, the
// server restarted) competes with such a flood for the global bucket:
// docs/security.md says what that means.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/buffer.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"

namespace mlvpn::core {

// The limits, each with its reason; docs/security.md lists them too.
namespace limits {
// The most links a tunnel has (core/config.cpp refuses more), so the most
// initiations one genuine client has in flight at once: one per link.
inline constexpr uint32_t kMaxPeerLinks = 64;
// Per source: a client sends at most one initiation per link per second
// (timing::kHandshakeRetry), and usually each link from its own address.
// Eight a second lets a source carrying eight links retry every one of them
// unhindered; more links behind one address come back within
// kMaxPeerLinks / 8 = 8 s of an outage that used up the burst.
inline constexpr uint32_t kInitiationsPerSecondPerSource = 8;
// ...and a client whose every link shares one address (one NAT, one host
// with many ports) starts, restarts or rekeys them all at the same moment:
// the burst holds one initiation per link. Refilled in 8 s, far within the
// 120 s between rekeys (timing::kRekeyAfter).
inline constexpr uint32_t kInitiationBurstPerSource = kMaxPeerLinks;
// In all, for sources that have not proved themselves: a server has one
// client, which never sends more than one initiation per link per second
// (64 a second); four times that leaves room for it plus strays, and bounds
// what forged initiations can cost: reading one (hashes, HKDF, AEAD open)
// takes about 20 us on a small server, so at most about 5 ms of CPU a
// second, where a flood at line rate would take every core there is.
inline constexpr uint32_t kInitiationsPerSecondGlobal = 4 * kMaxPeerLinks;
inline constexpr uint32_t kInitiationBurstGlobal = 4 * kMaxPeerLinks;
// How long a fresh, authentic initiation exempts its source from the global
// bucket: as long as a session it made may be used (timing::kRejectAfter,
// 180 s), which covers the client's next rekey (after 120 s, retried for
// 5 s); each rekey renews it. tunnel_handshake.cpp checks this against the
// timers.
inline constexpr Duration kSourceTrust = std::chrono::seconds(180);
// Sources tracked at once: 64 times the most a genuine client uses, in 8-way
// sets (a lookup reads at most 8 entries). About 128 KiB, allocated when the
// first initiation arrives, never more.
inline constexpr size_t kSourceTableSize = 4096;
inline constexpr size_t kSourceTableWays = 8;

static_assert(kInitiationBurstPerSource >= kMaxPeerLinks, "one client must be able to start every link at once");
static_assert(kInitiationsPerSecondGlobal >= kMaxPeerLinks && kInitiationBurstGlobal >= kMaxPeerLinks,
              "the global bucket must never be what limits one genuine client");
static_assert(kSourceTableSize % kSourceTableWays == 0 && kSourceTableSize >= 64 * kMaxPeerLinks);
}  // namespace limits

// One token every `interval`, at most `burst` held.
struct BucketRate {
    Duration interval;
    uint32_t burst;

    static constexpr BucketRate per_second(uint32_t rate, uint32_t burst) {
        return {std::chrono::duration_cast<Duration>(std::chrono::seconds(1)) / rate, burst};
    }
};

// A token bucket kept as the time at which it will be full again (the
// "generic cell rate algorithm" form): one Time, integer arithmetic, and a
// full bucket — nothing worth remembering — is simply full_at <= now. It
// starts full.
class TokenBucket {
public:
    // Whether a token is there now.
    bool can_take(Time now, BucketRate rate) const;
    // Takes a token if there is one; returns whether it did.
    bool take(Time now, BucketRate rate);
    // Tokens there now (whole ones).
    uint32_t available(Time now, BucketRate rate) const;
    bool full(Time now) const { return full_at_ <= now; }

private:
    Time full_at_{};
};

// The part of a source address that gets a bucket of its own: an IPv4
// address (also as a dual-stack socket reports it, v4-mapped), or the /64 of
// an IPv6 address — the smallest prefix a site or a mobile subscriber gets,
// so one attacker does not get 2^64 buckets. Anything else (no address, an
// unknown family) shares one key.
struct SourceKey {
    uint8_t family = 0;  // 4, 6, or 0
    std::array<uint8_t, 8> prefix{};
    bool operator==(const SourceKey&) const = default;
};
SourceKey source_key(const Endpoint& from);

class HandshakeLimiter {
public:
    enum class Verdict : uint8_t {
        Admit,
        SourceLimited,  // the source's own bucket is empty
        GlobalLimited,  // the source has not proved itself and the global bucket is empty
    };

    // Keys the table's hash (SipHash) with a value derived from `secret` (the
    // pre-shared key: the derivation is one-way), so that nobody without it
    // can pick addresses that crowd one set of the table. Until this is
    // called the key is all zero: the limits hold all the same, only the
    // placement is predictable.
    void set_hash_key(std::span<const uint8_t, 32> secret);
    bool keyed() const { return keyed_; }

    // Whether to look at an initiation from `from` now. Admit takes a token
    // from the source's bucket (when it has an entry) and, unless the source
    // is trusted, from the global bucket; a refusal takes none, so a source
    // over its own limit does not drain the global bucket. A source with no
    // entry (its set is full of live ones) is held to the global bucket only.
    Verdict admit(const Endpoint& from, Time now);
    // `from` sent a fresh, authentic initiation: exempt it from the global
    // bucket for limits::kSourceTrust. Takes the entry of an untrusted source
    // if its set has no room (an authentic source outranks any other).
    void trust(const Endpoint& from, Time now);
    bool trusted(const Endpoint& from, Time now) const;

    // Table entries in use: at most limits::kSourceTableSize.
    size_t tracked() const;
    // The set of the table `from` falls in (for tests: sources that compete
    // for the same limits::kSourceTableWays entries).
    size_t set_index(const Endpoint& from) const { return set_of(source_key(from)); }

    // For the caller's warning about drops: one line per interval (see
    // RateLimit); nullopt when suppressed, else the drops it covers.
    std::optional<uint64_t> log_allowed(Time now) { return log_.allow(now); }

private:
    struct Entry {
        SourceKey key;
        bool used = false;
        TokenBucket bucket;
        Time trusted_until{};
    };

    size_t set_of(const SourceKey& key) const;
    Entry* find(const SourceKey& key, size_t set);
    const Entry* find(const SourceKey& key, size_t set) const;
    // A free or reusable entry of the set for `key`, or nullptr.
    Entry* place(const SourceKey& key, size_t set, Time now, bool for_trust);

    std::vector<Entry> table_;  // empty until the first initiation, then kSourceTableSize
    TokenBucket global_;
    std::array<uint8_t, 16> hash_key_{};
    bool keyed_ = false;
    RateLimit log_;
};

}  // namespace mlvpn::core
