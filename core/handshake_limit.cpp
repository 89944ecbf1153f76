// SPDX-License-Identifier: BSD-2-Clause
#include "core/handshake_limit.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace mlvpn::core {

namespace {

constexpr BucketRate kSourceRate =
    BucketRate::per_second(limits::kInitiationsPerSecondPerSource, limits::kInitiationBurstPerSource);
constexpr BucketRate kGlobalRate =
    BucketRate::per_second(limits::kInitiationsPerSecondGlobal, limits::kInitiationBurstGlobal);
constexpr size_t kSets = limits::kSourceTableSize / limits::kSourceTableWays;

static_assert(crypto_shorthash_KEYBYTES == 16 && crypto_shorthash_BYTES == 8);

// Labels the table key derived from the pre-shared key: a key for nothing else.
constexpr char kHashKeyLabel[] = "mlvpn v3 initiation source table";

}  // namespace

// The bucket is full at full_at; each token taken pushes that one interval
// later. A token is there while full_at is at most burst-1 intervals ahead
// of now (taking it leaves it at most burst intervals ahead).
bool TokenBucket::can_take(Time now, BucketRate rate) const {
    const Time next = std::max(full_at_, now) + rate.interval;
    return next - now <= rate.interval * rate.burst;
}

bool TokenBucket::take(Time now, BucketRate rate) {
    if (!can_take(now, rate)) return false;
    full_at_ = std::max(full_at_, now) + rate.interval;
    return true;
}

uint32_t TokenBucket::available(Time now, BucketRate rate) const {
    if (full_at_ <= now) return rate.burst;
    const auto missing = (full_at_ - now + rate.interval - Duration{1}) / rate.interval;  // rounded up
    return missing >= rate.burst ? 0 : rate.burst - static_cast<uint32_t>(missing);
}

SourceKey source_key(const Endpoint& from) {
    SourceKey k;
    if (from.len >= sizeof(sockaddr_in) && from.addr.sa.sa_family == AF_INET) {
        k.family = 4;
        std::memcpy(k.prefix.data(), &from.addr.in4.sin_addr, 4);
    } else if (from.len >= sizeof(sockaddr_in6) && from.addr.sa.sa_family == AF_INET6) {
        const uint8_t* a = from.addr.in6.sin6_addr.s6_addr;
        static constexpr uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(a, kV4Mapped, sizeof kV4Mapped) == 0) {
            // The same IPv4 client as seen on a dual-stack socket.
            k.family = 4;
            std::memcpy(k.prefix.data(), a + 12, 4);
        } else {
            k.family = 6;
            std::memcpy(k.prefix.data(), a, 8);
        }
    }
    return k;
}

void HandshakeLimiter::set_hash_key(std::span<const uint8_t, 32> secret) {
    crypto_generichash(hash_key_.data(), hash_key_.size(), reinterpret_cast<const uint8_t*>(kHashKeyLabel),
                       sizeof kHashKeyLabel - 1, secret.data(), secret.size());
    keyed_ = true;
    // Entries placed under another key would no longer be found: start over
    // (this happens once, before the first initiation, in practice).
    for (auto& e : table_) e = Entry{};
}

size_t HandshakeLimiter::set_of(const SourceKey& key) const {
    uint8_t in[1 + 8];
    in[0] = key.family;
    std::memcpy(in + 1, key.prefix.data(), key.prefix.size());
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, in, sizeof in, hash_key_.data());
    uint64_t h = 0;
    std::memcpy(&h, out, sizeof h);
    return static_cast<size_t>(h % kSets);
}

HandshakeLimiter::Entry* HandshakeLimiter::find(const SourceKey& key, size_t set) {
    return const_cast<Entry*>(std::as_const(*this).find(key, set));
}

const HandshakeLimiter::Entry* HandshakeLimiter::find(const SourceKey& key, size_t set) const {
    if (table_.empty()) return nullptr;
    const Entry* ways = &table_[set * limits::kSourceTableWays];
    for (size_t i = 0; i < limits::kSourceTableWays; ++i) {
        if (ways[i].used && ways[i].key == key) return &ways[i];
    }
    return nullptr;
}

// An entry is worth keeping while its bucket is not full (the source used
// it lately) or its source is trusted; any other may be given to a new
// source — a full bucket is exactly what a new entry starts with. When the
// set holds none such, a new source gets no entry: the global bucket is then
// all that limits it. Only trust() takes a live entry, the one nearest to
// full, and never a trusted one.
HandshakeLimiter::Entry* HandshakeLimiter::place(const SourceKey& key, size_t set, Time now, bool for_trust) {
    Entry* ways = &table_[set * limits::kSourceTableWays];
    Entry* victim = nullptr;
    for (size_t i = 0; i < limits::kSourceTableWays; ++i) {
        Entry& e = ways[i];
        if (!e.used) {
            victim = &e;
            break;
        }
        if (e.trusted_until > now) continue;
        if (e.bucket.full(now)) {
            victim = &e;
            break;
        }
        if (for_trust && (victim == nullptr || e.bucket.available(now, kSourceRate) >
                                                   victim->bucket.available(now, kSourceRate))) {
            victim = &e;
        }
    }
    if (victim == nullptr) return nullptr;
    *victim = Entry{key, true, TokenBucket{}, Time{}};
    return victim;
}

HandshakeLimiter::Verdict HandshakeLimiter::admit(const Endpoint& from, Time now) {
    if (table_.empty()) table_.resize(limits::kSourceTableSize);
    const SourceKey key = source_key(from);
    const size_t set = set_of(key);
    Entry* e = find(key, set);
    if (e == nullptr) e = place(key, set, now, false);
    const bool trusted = e != nullptr && e->trusted_until > now;
    // Check both buckets before taking from either: a datagram refused by
    // one must cost the other nothing.
    if (e != nullptr && !e->bucket.can_take(now, kSourceRate)) return Verdict::SourceLimited;
    if (!trusted && !global_.can_take(now, kGlobalRate)) return Verdict::GlobalLimited;
    if (e != nullptr) e->bucket.take(now, kSourceRate);
    if (!trusted) global_.take(now, kGlobalRate);
    return Verdict::Admit;
}

void HandshakeLimiter::trust(const Endpoint& from, Time now) {
    if (table_.empty()) table_.resize(limits::kSourceTableSize);
    const SourceKey key = source_key(from);
    const size_t set = set_of(key);
    Entry* e = find(key, set);
    if (e == nullptr) e = place(key, set, now, true);
    // nullptr: every entry of the set is trusted, which takes more trusted
    // sources than a client has links; this one stays untrusted.
    if (e != nullptr) e->trusted_until = now + limits::kSourceTrust;
}

bool HandshakeLimiter::trusted(const Endpoint& from, Time now) const {
    const SourceKey key = source_key(from);
    const Entry* e = find(key, set_of(key));
    return e != nullptr && e->trusted_until > now;
}

size_t HandshakeLimiter::tracked() const {
    return static_cast<size_t>(std::count_if(table_.begin(), table_.end(), [](const Entry& e) { return e.used; }));
}

}  // namespace mlvpn::core
