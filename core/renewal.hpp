// SPDX-License-Identifier: BSD-2-Clause
// SocketRenewal: when a client link should get a fresh socket from [priv].
//
// A client link's socket is bound to the source address the route to the
// server had when [priv] made it, and sends to the address `remotehost` had
// then (it is not connected, docs/privsep.md, but it might as well be).
// When the host's address changes (DHCP, a 4G reconnect) or the server's
// name points elsewhere, the socket keeps sending from, or to, an address
// that no longer works, and nothing the protocol does on that socket brings
// the link back. A fresh socket (re-resolved, re-bound) does.
//
// The link asks for one when
//   - initiations have gone unanswered for timing::kRenewAfterUnanswered,
//   - sends keep failing for want of a route (unreachable()) for
//     timing::kRenewAfterUnreachable: IPv4 says exactly this (ENETUNREACH)
//     when a socket's bound source address has left the host, or
//   - a send failed with an error that says the socket's own address is gone
//     (mark_address_lost()),
// but never more often than the backoff allows: it starts at
// timing::kRenewBackoffMin, doubles with each request up to
// timing::kRenewBackoffMax, and starts over once a handshake completes. A
// server that is simply down thus costs one socket (and one name
// resolution) a minute per link after the first few.
//
// Sans-IO: time is the caller's; the Tunnel asks, the worker does the asking.
#pragma once

#include <optional>

#include "core/clock.hpp"

namespace mlvpn::core {

namespace timing {
// Initiations go out every kHandshakeRetry (1 s) and are replaced after
// kHandshakeLifetime (5 s): a link with none answered for a whole lifetime
// (five tries, a fresh ephemeral key among them) is not losing the odd
// packet. Shorter would renew on a lossy path that only needs another try;
// longer would leave a moved host without the link for longer. (A silent
// peer is noticed after kRehandshakeAfterSilence, 3 s, so a link whose
// packets silently go nowhere asks for a socket about 8 s after its last
// packet; sooner when its sends fail, see below.)
inline constexpr Duration kRenewAfterUnanswered = std::chrono::seconds(5);
// Sends refused for want of a route this long after the first refusal:
// two initiation retries (kHandshakeRetry, 1 s) that could not even leave.
// A passing routing hiccup is over by then; a socket whose source address
// has gone never recovers, and waiting for the unanswered rule would cost
// it 8 s instead of 2.
inline constexpr Duration kRenewAfterUnreachable = std::chrono::seconds(2);
// Between two requests for the same link: at least the first, doubling up
// to the second while no handshake completes.
inline constexpr Duration kRenewBackoffMin = std::chrono::seconds(5);
inline constexpr Duration kRenewBackoffMax = std::chrono::seconds(60);
}  // namespace timing

class SocketRenewal {
public:
    // An initiation went out: starts the unanswered clock unless it runs
    // (initiations go out every second while wanted; after a longer pause,
    // e.g. the link was administratively down, the clock starts afresh).
    void initiation_sent(Time now);
    // A handshake completed: the socket works. The clock stops and the
    // backoff starts over (the next request may come at once when due).
    void handshake_completed();
    // A send failed in a way that means the socket's address is gone: a
    // fresh socket is due as soon as the backoff allows.
    void mark_address_lost(Time now) {
        address_lost_ = true;
        last_error_ = now;
    }
    bool address_lost() const { return address_lost_; }
    // A send failed for want of a route (ENETUNREACH, EHOSTUNREACH,
    // ENETDOWN). Once such failures span kRenewAfterUnreachable with no
    // handshake between, a fresh socket is due as soon as the backoff allows.
    void unreachable(Time now);
    bool unreachable_persists() const;

    // The link is up and its last authentic packet came at `last_rx`: send
    // errors before that are over (the route came back), and count no more.
    void heard(Time last_rx);

    // Whether a fresh socket should be asked for at `now`. On a link that is
    // up (`up`) only send errors count: unanswered rekeys on a link that
    // carries traffic are no sign of a dead socket.
    bool due(Time now, bool up) const;
    // When due() may next turn true with nothing else happening (kNever if
    // it cannot), for the caller's timer.
    Time next_check(bool up) const;
    // The caller asked at `now`: the next request waits for the backoff,
    // which doubles.
    void requested(Time now);
    // A fresh socket is in place: what was seen on the old one no longer
    // counts (the backoff stays until a handshake completes).
    void renewed();

    // The wait after the next request; no request before not_before().
    Duration backoff() const { return backoff_; }
    Time not_before() const { return not_before_; }

private:
    std::optional<Time> unanswered_since_;  // first initiation since the last handshake or socket
    Time last_initiation_{};
    std::optional<Time> unreachable_since_;  // first refused send since the last handshake or socket
    Time last_unreachable_{};
    Time last_error_{};  // the last send error of either kind
    bool address_lost_ = false;
    Time not_before_{};  // no request before this
    Duration backoff_ = timing::kRenewBackoffMin;
};

}  // namespace mlvpn::core
