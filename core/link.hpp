// SPDX-License-Identifier: BSD-2-Clause
// One link of the tunnel as the protocol sees it: settings, state, sessions,
// timers and counters. Owned and driven by Tunnel; read by status output.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "core/buffer.hpp"
#include "core/clock.hpp"
#include "core/data_chain.hpp"
#include "core/delivery_rate.hpp"
#include "core/liveness.hpp"
#include "core/loss.hpp"
#include "core/noise.hpp"
#include "core/one_way_queue.hpp"
#include "core/renewal.hpp"
#include "core/session.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

struct LinkSettings {
    std::string name;
    // Client links send to a fixed server; server links learn their peer.
    bool connected = false;
    // A client link's server. Its socket is not connected (it is one of a
    // group, docs/privsep.md): datagrams go there, and what comes from any
    // other address is dropped (drops.peer), as the kernel did for a
    // connected socket. Empty: the socket is connected (the tests' FakeIo).
    Endpoint remote;
    // Server side: when set, only handshakes from this address are answered
    // (port 0 = any port). From `remotehost`/`remoteport` on a server link.
    std::optional<Endpoint> allowed_peer;
    Duration timeout = std::chrono::seconds(60);
    uint64_t bandwidth = 0;  // bytes/s, 0 = not given
    bool fallback_only = false;
    uint32_t loss_tolerence_pct = 100;
    uint32_t latency_tolerence_ms = 1000;
};

enum class LinkState : uint8_t {
    Down,         // no usable session (server: waiting for the client)
    Handshaking,  // client: initiation in flight
    Up,           // authenticated traffic within the timeout
};
const char* to_string(LinkState state);

// What the operator wants of a link (mlvpnctl link NAME up|down|backup);
// starts as Backup for fallback_only links, Up for the others.
enum class LinkAdmin : uint8_t {
    Up,      // a primary link: carries data whenever it is up
    Backup,  // carries data only while no primary link is up
    Down,    // taken out: nothing is sent on it, everything received is dropped
};
const char* to_string(LinkAdmin admin);

// How an up link performs against its loss_tolerence/latency_tolerence: a
// degraded one carries data only while no good one is up.
enum class LinkQuality : uint8_t {
    Good,
    Lossy,  // the peer reports more loss than loss_tolerence
    Slow,   // the round trip exceeds latency_tolerence
};
const char* to_string(LinkQuality quality);

struct LinkStats {
    uint64_t tx_packets = 0, tx_bytes = 0;  // datagrams sent (all kinds), bytes on the wire
    uint64_t rx_packets = 0, rx_bytes = 0;  // authenticated datagrams received
    uint64_t tx_data = 0, rx_data = 0;      // tunnelled packets carried
    uint64_t drop_auth = 0;         // failed authentication (wrong key, forged, corrupted)
    uint64_t drop_replay = 0;       // replayed or too old for the window
    uint64_t drop_malformed = 0;    // bad length, type, flags, counter space, or inner header
    uint64_t drop_no_session = 0;   // unknown receiver index or expired session
    uint64_t drop_peer = 0;         // server: initiation from an address that is not allowed;
                                    // client: anything not from the server
    uint64_t drop_admin = 0;        // received while the link is administratively down
    uint64_t drop_ratelimit = 0;    // initiation over the handshake rate limit (core/handshake_limit.hpp)
    uint64_t send_errors = 0;       // the kernel refused a send
    uint64_t handshakes_sent = 0, handshakes_received = 0;
    uint64_t handshakes_completed = 0;
    uint64_t ups = 0, downs = 0;    // state transitions
    uint64_t unanswered = 0;        // times taken out because the peer stopped acknowledging
    uint64_t acks_sent = 0;
    uint64_t resent = 0;            // data it was sent but not acknowledged, sent again on another link
    uint64_t rx_out_of_order = 0;   // the peer's data that came after data sent later (core/data_chain.hpp)
    uint64_t socket_renewals = 0;   // fresh sockets from [priv] (core/renewal.hpp)
};

struct PendingHandshake {  // the initiator's handshake in flight
    noise::Handshake handshake;
    uint32_t local_index = 0;
    std::array<std::byte, wire::kInitSize> message{};
    Time started{};
    Time last_sent{};
    bool spaces = false;  // it offered counter spaces (wire::kInitFlagSpaces)
};

struct CachedResponse {  // the responder's answer to the last initiation
    std::array<std::byte, wire::kInitSize> init{};
    std::array<std::byte, wire::kResponseSize> response{};
    bool valid = false;
};

struct Link {
    LinkSettings settings;
    LinkState state = LinkState::Down;
    LinkAdmin admin = LinkAdmin::Up;
    // Removed from the configuration by a reload: its index stays reserved
    // (indices never move), it behaves as administratively down, and it is
    // left out of status.
    bool removed = false;
    const char* reason = "starting";  // why the link is in its state (for status)
    Endpoint peer;  // where to send (server side); empty on client links (settings.remote)

    std::optional<Session> current;
    std::optional<Session> previous;  // kept for packets in flight after a rekey
    std::optional<Session> next;      // responder: not yet confirmed
    std::optional<PendingHandshake> pending;
    CachedResponse cached;
    uint64_t last_init_timestamp = 0;  // initiator: the last one sent (Tunnel keeps the responder's)
    Endpoint next_peer;                // responder: where the unconfirmed initiation came from

    Time last_rx{};    // last authenticated packet
    Time last_tx{};    // last packet sent
    Time next_handshake{};  // initiator: when to (re)send an initiation
    bool rekey_now = false;  // initiator: handshake although the session is fine (new key)
    SocketRenewal renewal;   // initiator: when to ask [priv] for a fresh socket
    Time state_since{};

    // RTT from the echo fields: the peer's last timestamp and when it came.
    uint32_t peer_ts = 0;
    Time peer_ts_at{};
    Duration srtt{};
    Duration rttvar{};
    bool has_rtt = false;
    Time rtt_at{};  // when the last sample came
    Duration min_rtt{};  // smallest sample within timing::kMinRttWindow
    Time min_rtt_at{};
    bool has_min_rtt = false;  // kept while the link is down: the path's delay
    // The part of the queueing in its round trips that lies in our sending
    // direction (the rest is the peer's traffic to us).
    OneWayQueue send_queue;

    // Acknowledgements: what of ours the peer hears, and what we owe it.
    Liveness liveness;
    bool ack_owed = false;  // received data or a keepalive since our last control packet
    // When data (not a keepalive) first made ack_owed true; kNever: a
    // keepalive did, or nothing is owed (timing::kAckDelay).
    Time data_owed_since = kNever;
    Time last_control_tx{};
    Time last_elicit_tx{};  // last data or keepalive sent (what the peer acknowledges)
    Time next_probe{};      // while liveness.probing(): the next probe
    bool resent_stall = false;  // what it held when it stalled has been resent

    // How fast the link delivers what we send, from the acknowledgements,
    // with bandwidth_upload as its hint and cap: the scheduler's rate for it.
    DeliveryRate delivery;
    // Since when it has delivered less than its bandwidth_upload
    // (timing::kShortOfHint; Time{} when it does not), and whether that
    // has been logged.
    Time short_of_hint_since{};
    bool short_of_hint_logged = false;

    // Loss: of what the peer sends us (measured), of what we send (as the
    // peer reports it), and what that makes of the link.
    LossMeter rx_loss;
    uint16_t tx_loss = 0;  // 1/10000
    LinkQuality quality = LinkQuality::Good;
    Time quality_since{};

    // The data chain (core/data_chain.hpp): per counter space, the data we
    // sent on it last, and the peer's data that came on it last.
    ChainOut chain_out;
    ChainIn chain_in;

    // Throughput, bytes/s on the wire, over the last whole window of about a
    // second (for status; the scheduler works from its own model).
    double tx_rate = 0, rx_rate = 0;
    Time rate_window_start{};
    uint64_t rate_tx_bytes = 0, rate_rx_bytes = 0;  // the counters when it started

    LinkStats stats;
};

// Where link's datagrams go: a client's server (nullptr when its socket is
// connected), a server's last authentic peer.
inline const Endpoint* destination(const Link& link) {
    if (!link.settings.connected) return &link.peer;
    return link.settings.remote.empty() ? nullptr : &link.settings.remote;
}

// Whether a datagram from `from` may be a peer's on `link`: on a client
// link, only the server's.
inline bool from_peer(const Link& link, const Endpoint& from) {
    return !link.settings.connected || link.settings.remote.empty() || from == link.settings.remote;
}

}  // namespace mlvpn::core
