// SPDX-License-Identifier: BSD-2-Clause
// The handshake half of Tunnel: initiations, responses, session setup.
#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "core/tunnel.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

namespace {

// A source that handshook keeps its exemption from the global initiation
// limit across the client's next rekey, retries included.
static_assert(limits::kSourceTrust >= timing::kRekeyAfter + timing::kHandshakeLifetime);

// The prologue binds the initiation's cleartext fields (type, sender index)
// to the handshake hash, so they cannot be changed in flight.
std::array<uint8_t, sizeof wire::kPrologue - 1 + 8> prologue_for(const std::byte* init) {
    std::array<uint8_t, sizeof wire::kPrologue - 1 + 8> p{};
    std::memcpy(p.data(), wire::kPrologue, sizeof wire::kPrologue - 1);
    std::memcpy(p.data() + sizeof wire::kPrologue - 1, init, 8);
    return p;
}

std::span<uint8_t> u8(std::span<std::byte> s) {
    return {reinterpret_cast<uint8_t*>(s.data()), s.size()};
}
std::span<const uint8_t> u8(std::span<const std::byte> s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Port 0 in the allowed address means "any port".
bool peer_allowed(const std::optional<Endpoint>& allowed, const Endpoint& from) {
    if (!allowed) return true;
    const auto& a = *allowed;
    if (a.addr.sa.sa_family == AF_INET && from.addr.sa.sa_family == AF_INET) {
        return a.addr.in4.sin_addr.s_addr == from.addr.in4.sin_addr.s_addr &&
               (a.addr.in4.sin_port == 0 || a.addr.in4.sin_port == from.addr.in4.sin_port);
    }
    // Compare IPv6, and IPv4 against the v4-mapped form a dual-stack socket reports.
    in6_addr want{};
    in_port_t want_port = 0;
    if (a.addr.sa.sa_family == AF_INET) {
        want.s6_addr[10] = 0xff;
        want.s6_addr[11] = 0xff;
        std::memcpy(&want.s6_addr[12], &a.addr.in4.sin_addr, 4);
        want_port = a.addr.in4.sin_port;
    } else {
        want = a.addr.in6.sin6_addr;
        want_port = a.addr.in6.sin6_port;
    }
    if (from.addr.sa.sa_family != AF_INET6) return false;
    return std::memcmp(&want, &from.addr.in6.sin6_addr, sizeof want) == 0 &&
           (want_port == 0 || want_port == from.addr.in6.sin6_port);
}

}  // namespace

uint32_t Tunnel::new_index() {
    for (;;) {
        const uint32_t candidate = randombytes_random();
        if (candidate == 0) continue;
        bool taken = false;
        for (const auto& l : links_) {
            for (const auto* s : {&l.current, &l.previous, &l.next}) {
                if (*s && (*s)->local_index == candidate) taken = true;
            }
            if (l.pending && l.pending->local_index == candidate) taken = true;
        }
        if (!taken) return candidate;
    }
}

void Tunnel::send_initiation(LinkIndex index, Io& io, Time now, bool fresh) {
    Link& link = links_[index];
    Buffer* b = io.acquire();
    if (b == nullptr) {
        ++stats_.drop_no_buffer;
        return;
    }
    if (fresh || !link.pending) {
        const uint32_t local_index = new_index();
        std::array<std::byte, wire::kInitSize> m{};
        m[0] = std::byte(static_cast<uint8_t>(wire::Type::HandshakeInit));
        wire::store_be32(&m[4], local_index);
        auto hs = noise::Handshake::initiator(psk_, prologue_for(m.data()));
        std::array<std::byte, wire::kInitPayloadSize> payload{};
        wire::InitPayload ip;
        // Strictly growing even if the wall clock steps back, as the
        // responder refuses anything not newer than what it accepted.
        ip.timestamp_ns = std::max(clock_.wall_ns(), link.last_init_timestamp + 1);
        link.last_init_timestamp = ip.timestamp_ns;
        ip.link_id = static_cast<uint16_t>(index);
        ip.flags = settings_.cleartext_data ? wire::kInitFlagCleartext : 0;
        // Always offered, whatever our own number of senders: it says what
        // we take. No fallback without it: see docs/protocol.md.
        if (settings_.counter_spaces) ip.flags |= wire::kInitFlagSpaces;
        wire::encode(ip, payload);
        hs.write_message_1(u8(std::span<const std::byte>(payload)), u8(std::span<std::byte>(m).subspan(8)));
        link.pending.emplace(
            PendingHandshake{std::move(hs), local_index, m, now, now, settings_.counter_spaces});
    }
    link.pending->last_sent = now;
    b->offset = 0;
    b->length = wire::kInitSize;
    std::memcpy(b->data, link.pending->message.data(), wire::kInitSize);
    ++link.stats.handshakes_sent;
    link.renewal.initiation_sent(now);
    ++link.stats.tx_packets;
    link.stats.tx_bytes += b->length;
    link.last_tx = now;
    io.send(index, b, destination(link));
    if (link.state == LinkState::Down) set_state(index, LinkState::Handshaking, now, "no answer yet");
}

// Answers in the initiation's own buffer, to where it came from.
void Tunnel::send_response(LinkIndex index, Datagram& d, std::span<const std::byte, wire::kResponseSize> response,
                           Io& io, Time now) {
    Link& link = links_[index];
    std::memcpy(d.buffer->data, response.data(), response.size());
    d.buffer->offset = 0;
    d.buffer->length = wire::kResponseSize;
    ++link.stats.tx_packets;
    link.stats.tx_bytes += wire::kResponseSize;
    link.last_tx = now;
    io.send(index, d.buffer, &d.from);
}

void Tunnel::on_initiation(LinkIndex index, Datagram& d, Io& io, Time now) {
    Link& link = links_[index];
    const auto bytes = d.buffer->bytes();
    if (settings_.mode != Mode::Server || bytes.size() != wire::kInitSize ||
        bytes[1] != std::byte{0} || bytes[2] != std::byte{0} || bytes[3] != std::byte{0}) {
        ++link.stats.drop_malformed;
        io.release(d.buffer);
        return;
    }
    if (!peer_allowed(link.settings.allowed_peer, d.from)) {
        ++link.stats.drop_peer;
        io.release(d.buffer);
        return;
    }
    // Rate limits, per source and in all, before anything else costs us: a
    // duplicate below earns a reply, anything else an AEAD open (see
    // core/handshake_limit.hpp; the Diffie-Hellman comes only after the
    // initiation authenticated, in write_message_2).
    if (!initiation_limit_.keyed()) initiation_limit_.set_hash_key(psk_.span());
    if (const auto verdict = initiation_limit_.admit(d.from, now); verdict != HandshakeLimiter::Verdict::Admit) {
        ++link.stats.drop_ratelimit;
        if (auto n = initiation_limit_.log_allowed(now)) {
            log_.warn("link {}: initiation from {} over the {} rate limit, dropped; {} such", link.settings.name,
                      d.from.to_string(), verdict == HandshakeLimiter::Verdict::SourceLimited ? "per-source" : "global",
                      *n);
        }
        io.release(d.buffer);
        return;
    }
    // The same initiation again (our response was lost): the same answer,
    // with no new work, as long as the session it made is not yet in use.
    // Only to where the original came from: a copy sent from elsewhere
    // would make us reflect 60 bytes at an address of the sender's choice.
    if (link.cached.valid && std::memcmp(link.cached.init.data(), bytes.data(), wire::kInitSize) == 0) {
        if (!(d.from == link.next_peer)) {
            ++link.stats.drop_replay;
            io.release(d.buffer);
            return;
        }
        ++link.stats.handshakes_received;
        send_response(index, d, link.cached.response, io, now);
        return;
    }

    auto hs = noise::Handshake::responder(psk_, prologue_for(bytes.data()));
    std::array<uint8_t, wire::kInitPayloadSize> payload{};
    if (!hs.read_message_1(u8(bytes.subspan(8)), payload)) {
        ++link.stats.drop_auth;
        if (auto n = auth_log_limit_.allow(now)) {
            log_.warn("link {}: initiation from {} failed authentication (wrong password, or a peer of another "
                      "protocol version?); {} such",
                      link.settings.name, d.from.to_string(), *n);
        }
        io.release(d.buffer);
        return;
    }
    const auto ip = wire::decode_init_payload(
        std::span<const std::byte, wire::kInitPayloadSize>(reinterpret_cast<const std::byte*>(payload.data()),
                                                           payload.size()));
    // Without counter_spaces we are a responder from before the flag: it
    // refuses the flag as any unknown bit (the initiator gets no answer).
    const bool spaces = ip && (ip->flags & wire::kInitFlagSpaces) != 0;
    if (!ip || (spaces && !settings_.counter_spaces)) {
        ++link.stats.drop_malformed;
        io.release(d.buffer);
        return;
    }
    // An authentic but old initiation is a replay: no answer. The newest
    // timestamp is kept per initiator link: a copy of link A's initiation
    // sent to link B is as old there as it is on A.
    uint64_t& newest = peer_init_timestamps_[ip->link_id];
    if (ip->timestamp_ns <= newest) {
        ++link.stats.drop_replay;
        io.release(d.buffer);
        return;
    }
    ++link.stats.handshakes_received;

    Session s;
    s.serial = ++session_serial_;
    s.local_index = new_index();
    s.remote_index = wire::load_be32(&bytes[4]);
    s.link_id = ip->link_id;
    s.created = now;
    s.spaces = spaces;
    s.replay = ReplaySpaces(spaces ? wire::kCounterSpaces : 1);

    std::array<std::byte, wire::kResponseSize> response{};
    response[0] = std::byte(static_cast<uint8_t>(wire::Type::HandshakeResponse));
    wire::store_be32(&response[4], s.remote_index);
    std::array<std::byte, wire::kResponsePayloadSize> rp{};
    wire::store_be32(rp.data(), s.local_index);
    if (!hs.write_message_2(u8(std::span<const std::byte>(rp)), u8(std::span<std::byte>(response).subspan(8)))) {
        ++link.stats.drop_malformed;  // a low-order ephemeral key
        io.release(d.buffer);
        return;
    }
    auto keys = hs.split();
    s.send_key = std::move(keys.send);
    s.receive_key = std::move(keys.receive);
    s.confirmed = false;
    link.next.emplace(std::move(s));
    link.next_peer = d.from;
    newest = ip->timestamp_ns;
    std::memcpy(link.cached.init.data(), bytes.data(), wire::kInitSize);
    link.cached.response = response;
    link.cached.valid = true;
    // It holds the key and is fresh: its source rekeys even while forged
    // initiations use up the global budget.
    initiation_limit_.trust(d.from, now);
    log_.debug("protocol", "link {}: initiation from {}, answered", link.settings.name, d.from.to_string());

    send_response(index, d, response, io, now);
}

void Tunnel::on_response(LinkIndex index, Datagram& d, Io& io, Time now) {
    Link& link = links_[index];
    const auto bytes = d.buffer->bytes();
    if (settings_.mode != Mode::Client || bytes.size() != wire::kResponseSize ||
        bytes[1] != std::byte{0} || bytes[2] != std::byte{0} || bytes[3] != std::byte{0}) {
        ++link.stats.drop_malformed;
        io.release(d.buffer);
        return;
    }
    if (!link.pending || wire::load_be32(&bytes[4]) != link.pending->local_index) {
        ++link.stats.drop_no_session;
        io.release(d.buffer);
        return;
    }
    // Read with a copy of the handshake state: a forged response must not
    // spoil the real one that may still be on its way.
    std::array<uint8_t, wire::kResponsePayloadSize> payload{};
    auto hs = link.pending->handshake.clone();
    if (!hs.read_message_2(u8(bytes.subspan(8)), payload)) {
        ++link.stats.drop_auth;
        if (auto n = auth_log_limit_.allow(now)) {
            log_.warn("link {}: response failed authentication; {} such", link.settings.name, *n);
        }
        io.release(d.buffer);
        return;
    }
    io.release(d.buffer);
    ++link.stats.handshakes_completed;

    Session s;
    s.serial = ++session_serial_;
    s.local_index = link.pending->local_index;
    s.remote_index = wire::load_be32(reinterpret_cast<const std::byte*>(payload.data()));
    s.link_id = static_cast<uint16_t>(index);
    s.created = now;
    s.confirmed = true;
    // The responder answered an initiation that offered spaces: it knows the
    // flag (it refuses unknown ones), so it takes them as well.
    s.spaces = link.pending->spaces;
    s.replay = ReplaySpaces(s.spaces ? wire::kCounterSpaces : 1);
    auto keys = hs.split();
    s.send_key = std::move(keys.send);
    s.receive_key = std::move(keys.receive);
    link.pending.reset();
    link.rekey_now = false;
    link.renewal.handshake_completed();
    if (link.current) link.previous = std::move(link.current);
    link.current.emplace(std::move(s));
    link.last_rx = now;
    ++link.stats.rx_packets;
    link.stats.rx_bytes += wire::kResponseSize;
    log_.debug("protocol", "link {}: session established", link.settings.name);
    link.liveness.reset();  // it answered: it hears us
    set_state(index, LinkState::Up, now, "handshake");
    // Confirm the session to the responder right away: it may not send on
    // it before it has seen us use it.
    send_control(index, wire::ControlKind::Keepalive, io, now);
}

}  // namespace mlvpn::core
