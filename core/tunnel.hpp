// SPDX-License-Identifier: BSD-2-Clause
// Tunnel: the whole protocol of one mlvpn endpoint, sans I/O.
//
// It turns batches of packets from the TUN device into sealed datagrams on
// the links, and batches of datagrams from the links into packets for the
// TUN device; it runs the per-link handshakes, keepalives and timeouts. The
// caller (the worker's event loop, or a test) owns the buffers, the sockets
// and the clock, and hands them in: see core/io.hpp.
//
// Nothing received is trusted until it authenticates: a datagram that fails
// gets no answer, changes no state, and costs no Diffie-Hellman.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/buffer.hpp"
#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/handshake_limit.hpp"
#include "core/io.hpp"
#include "core/link.hpp"
#include "core/log.hpp"
#include "core/reorder.hpp"
#include "core/reorder_spaces.hpp"
#include "core/scheduler.hpp"
#include "core/open_batch.hpp"
#include "core/seal_queue.hpp"
#include "core/secret.hpp"
#include "core/send_history.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

// Protocol timing. Each is a named constant with its reason; docs/protocol.md
// lists them too.
namespace timing {
// How long a packet may wait for the ones before it: about the one-way delay
// difference the links can have (half the largest RTT) plus their jitter,
// within these bounds; the default before any RTT is known.
inline constexpr Duration kReorderWaitMin = std::chrono::milliseconds(5);
inline constexpr Duration kReorderWaitMax = std::chrono::milliseconds(500);
inline constexpr Duration kReorderWaitDefault = std::chrono::milliseconds(50);
// ...and never shorter than the largest wait packets have needed lately
// (Reorder::measured_skew) plus a quarter plus this: the RTTs show the links'
// delays smoothed, while one link's queue can run tens of milliseconds ahead
// of another's; a gap given up too soon hands TCP reordering it takes for loss.
inline constexpr Duration kReorderSkewMargin = std::chrono::milliseconds(2);
// A link that carried nothing for this long sends a keepalive, so that both
// sides keep seeing authenticated packets and NAT bindings stay open.
inline constexpr Duration kKeepalive = std::chrono::seconds(1);
// The initiator resends its initiation this often until it gets an answer.
inline constexpr Duration kHandshakeRetry = std::chrono::seconds(1);
// ...and replaces it with a fresh one (new ephemeral key) after this long.
inline constexpr Duration kHandshakeLifetime = std::chrono::seconds(5);
// With keepalives every second, this much silence on an established link
// means the peer lost the session (e.g. it restarted): handshake again now
// rather than after the whole link timeout.
inline constexpr Duration kRehandshakeAfterSilence = std::chrono::seconds(3);
// Sessions are replaced this often (initiator side) and refused after the
// second figure, so that one set of keys never protects much traffic.
inline constexpr Duration kRekeyAfter = std::chrono::seconds(120);
inline constexpr Duration kRejectAfter = std::chrono::seconds(180);
// The same by packets, per counter space (SendCounters::most()): WireGuard's
// 2^60 and 2^64 - 1 - 2^13 scaled to the 56 bits a space counts in. No
// number beyond the second is used, so it never reaches the space byte,
// with room for the replay window; the time limit comes long before either.
inline constexpr uint64_t kRekeyAfterMessages = uint64_t{1} << 52;
inline constexpr uint64_t kRejectAfterMessages = wire::kCounterNumberMask - (uint64_t{1} << 13);
static_assert(kRejectAfterMessages <= wire::kCounterNumberMask && kRekeyAfterMessages < kRejectAfterMessages);
// Data and keepalives are acknowledged (an Ack carrying rx_ts) at most this
// often per link: fast enough that a missing acknowledgement stands out
// within a few tens of milliseconds, rare enough to cost nothing (at most 50
// small packets a second per link).
inline constexpr Duration kAckInterval = std::chrono::milliseconds(20);
// An acknowledgement owed for data waits at least this long after the data
// came, so that an answer the data brings at once (a ping's reply through a
// local host, a TCP ACK) leaves first: the peer then wakes for the answer,
// not for our acknowledgement ahead of it (one more turn, or one more wake-up
// of its worker, on the answer's way). Small against every timer that reads
// acknowledgements (kAckInterval, kStallMargin); a keepalive's is not held.
inline constexpr Duration kAckDelay = std::chrono::microseconds(250);
// A link whose traffic has gone unacknowledged for twice its smoothed RTT
// plus four deviations plus kAckInterval is taken out of the aggregate, but
// never sooner than the minimum (queueing spikes on a loaded link must not
// look like a failure) and never later than the maximum (failover well under
// a second), nor later than the link's own timeout.
inline constexpr Duration kUnansweredMin = std::chrono::milliseconds(300);
inline constexpr Duration kUnansweredMax = std::chrono::milliseconds(900);
// Before that, a link whose oldest unacknowledged packet is older than its
// smoothed RTT plus four deviations plus kStallMargin (kStallMin at least)
// gets no new data while another link is fine: it has most likely just
// failed, and whatever it is sent until it is taken out would be lost (a
// TCP stall). It stays up; the next acknowledgement ends the pause.
inline constexpr Duration kStallMin = std::chrono::milliseconds(60);
inline constexpr Duration kStallMargin = std::chrono::milliseconds(40);
// Such a link is probed this often; it is back as soon as the peer
// acknowledges a probe, i.e. hears us again.
inline constexpr Duration kProbeInterval = std::chrono::milliseconds(100);
// A link stays lossy or slow for at least this long, and leaves only below
// half its loss_tolerence or 80 % of its latency_tolerence: hysteresis, so
// that a link near its threshold does not flap in and out of the aggregate.
inline constexpr Duration kQualityHold = std::chrono::seconds(2);
// The smallest round trip of the last this-long is a link's base delay (its
// path without our queue in it), which the scheduler adds to its queue; a
// longer window would miss a route change, a shorter one would let a busy
// stretch pass its queueing off as path delay.
inline constexpr Duration kMinRttWindow = std::chrono::seconds(10);
// What a failing link was sent and the peer has not acknowledged is sent
// again on another link (core/send_history.hpp) when the link stalls or is
// taken out, but only what went out within this long: anything older has
// been given up by the peer's reorder buffer and retransmitted by TCP.
inline constexpr Duration kResendHorizon = std::chrono::milliseconds(500);
// Per-link throughput for status is measured over windows this long.
inline constexpr Duration kRateWindow = std::chrono::seconds(1);
// A link found delivering less than kShortOfHint of its bandwidth_upload for
// kShortOfHintFor is logged (once, with both figures: an operator's figure
// that is wrong, or a link that has become slower); once it delivers
// kBackToHint of it again, that is logged too, and the watch starts over.
inline constexpr double kShortOfHint = 0.8;
inline constexpr Duration kShortOfHintFor = std::chrono::seconds(10);
inline constexpr double kBackToHint = 0.9;
}  // namespace timing

struct TunnelSettings {
    Mode mode = Mode::Client;
    TunType tuntap = TunType::Tun;
    bool cleartext_data = false;
    uint32_t mtu = 1400;  // largest packet accepted from the TUN/TAP device
    // The most packets held to restore the sender's order (the capacity
    // adapts below it, core/reorder_sizer.hpp); 0 = deliver as received.
    uint32_t reorder_buffer_size = 0;
    // Buffers in the caller's pool (uring::LoopConfig::slot_count), which
    // every packet held for reordering takes one of: the reorder buffer
    // holds at most half of them (reorder_ceiling()). 0: no such pool
    // (tests), reorder_buffer_size alone bounds it.
    uint32_t pool_slots = 0;
    // Offer counter spaces in our initiations and take them in a peer's
    // (wire::kInitFlagSpaces). false behaves as an implementation from
    // before the flag: it never offers it and refuses an initiation that
    // does. Only tests turn it off, to be such a peer.
    bool counter_spaces = true;
    std::vector<LinkSettings> links;
};

struct LinkEvent {
    LinkIndex link = 0;
    LinkState state = LinkState::Down;
};

struct TunnelStats {
    uint64_t tun_rx = 0;             // packets read from the device
    uint64_t tun_tx = 0;             // packets written to the device
    uint64_t drop_no_link = 0;       // no usable link for a packet
    uint64_t drop_oversize = 0;      // larger than the MTU the links carry
    uint64_t drop_no_buffer = 0;     // buffer pool exhausted
    uint64_t drop_tun_malformed = 0; // authenticated payload that is not a packet
    uint64_t tun_write_errors = 0;
};

class Tunnel {
public:
    Tunnel(TunnelSettings settings, SecretKey psk, const Clock& clock, Logger& log);

    // Packets read from the device, each at offset wire::kHeadroom. Takes
    // every buffer. They are sealed in counter space `space` (below
    // wire::kCounterSpaces) on a link whose session negotiated spaces, in
    // space 0 on the others, and numbered in the data sequence of the space
    // they are sealed in (one per space: the peer restores order per space).
    // Space 0 also carries control packets. A packet sent again after a
    // link failed keeps its space and its number.
    //
    // One Tunnel seals every space, so the fallback to space 0 shares that
    // space's counter and sequence safely; a sender per space (issue #6)
    // must instead hand such packets to the one that owns space 0.
    void on_tun_packets(std::span<Buffer*> packets, Io& io, uint8_t space = 0);
    // Datagrams received on one link (the loops put them at
    // wire::kDatagramOffset). Takes every buffer.
    // With `opened`, the batch plan_open() planned for these datagrams and
    // opened since (core/open_batch.hpp): a result is taken where the
    // datagram's session is still the one planned; the rest are opened here.
    void on_datagrams(LinkIndex link, std::span<Datagram> datagrams, Io& io, const OpenBatch* opened = nullptr);
    // Plans in `batch` the datagrams on_datagrams() would open, each with its
    // session's receive key, so that the caller may open them without its
    // lock (core/open_batch.hpp). Changes nothing here.
    void plan_open(LinkIndex link, std::span<const Datagram> datagrams, OpenBatch& batch) const;
    // Runs due timers; returns the next deadline. `owner`: the reorder
    // buffers of only those of the peer's spaces (ReorderSpaces::on_timer);
    // every other timer runs whoever calls.
    Time on_timer(Io& io, SpaceOwner owner = {});

    void on_send_error(LinkIndex link, int error);
    void on_tun_write_error(int error);

    // Link state changes since the last call, in order.
    std::vector<LinkEvent> take_events();
    // Client links whose socket should be replaced (core/renewal.hpp), since
    // the last call, in order, each at most once per call. For each, the
    // caller asks [priv] for a fresh socket and, once it is in place, calls
    // socket_renewed(); when [priv] gives none, nothing: the link asks
    // again after its backoff.
    std::vector<LinkIndex> take_socket_renewals();
    // The link got a fresh socket because it asked: as reset_link() (the
    // link handshakes on it at the next on_timer()), and counted. It sends
    // to `remote` now (LinkSettings::remote: the server's name may have
    // been resolved to another address).
    void socket_renewed(LinkIndex link, const Endpoint& remote);
    // With a queue, transport packets (data and control) are left to it to
    // seal and send (core/seal_queue.hpp): the caller flushes it after the
    // calls it made with it set. nullptr (the default): sealed and queued on
    // the Io at once. Handshake messages are always sent at once.
    void set_seal_queue(SealQueue* queue) { seal_queue_ = queue; }
    // take_events() or take_socket_renewals() would give something.
    bool has_news() const { return !events_.empty() || !renewals_.empty(); }

    size_t link_count() const { return links_.size(); }
    const Link& link(LinkIndex i) const { return links_[i]; }
    const TunnelStats& stats() const { return stats_; }
    // The receiver's order: a buffer per counter space of the peer, and
    // their sums (core/reorder_spaces.hpp).
    const ReorderSpaces& reorder() const { return reorder_; }
    const Scheduler& scheduler() const { return scheduler_; }
    // Hands back every packet still held for reordering (at shutdown).
    void flush(Io& io);
    const TunnelSettings& settings() const { return settings_; }
    // Links that are up and may carry data now.
    size_t usable_links() const;
    // The rate the scheduler counts on for a link, bytes/s: what the link has
    // been seen to deliver (core/delivery_rate.hpp), never more than its
    // bandwidth_upload; before the first sample, bandwidth_upload when given,
    // else DeliveryRate::kInitialRate. It drives the link at this, at times
    // more to probe (DeliveryRate::pace).
    static double link_rate(const Link& link);
    // What the scheduler counts on for a link's delays (core/scheduler.hpp).
    static PathEstimate path_estimate(const Link& link, Time now);
    // The rate it is given for the link at `now` (PathEstimate::rate): the
    // link's DeliveryRate::pace, or 0 (its configured weight) when that is
    // its bandwidth_upload. `phase` is its index (DeliveryRate::gain).
    // `queues`: our packets queue on it (PathEstimate::queueing of
    // Scheduler::kBusy or more); it is then driven at what it delivers
    // (DeliveryRate::current), never faster.
    static double path_rate(const Link& link, Time now, size_t phase, bool queues);
    // Changes what the operator wants of a link (takes effect at once).
    void set_admin(LinkIndex link, LinkAdmin admin);

    // Live reconfiguration (a reload). None of these loses a packet that a
    // link still able to carry it could carry.
    //
    // A new pre-shared key: the initiator handshakes again on every link at
    // once; the sessions in use stay until the new ones replace them, so a
    // peer that has not reloaded yet keeps the tunnel up meanwhile.
    void set_psk(SecretKey psk);
    // Settings that are not per link. A reorder buffer turned off, or
    // capped below the room what it holds needs, hands what it holds to the
    // device.
    void set_general(bool cleartext_data, uint32_t mtu, uint32_t reorder_buffer_size, Io& io);
    // A new link at `index`: link_count() (appended) or a removed link's
    // index. Returns false (and changes nothing) for any other index.
    bool add_link(LinkIndex index, LinkSettings settings);
    // Whether add_link(index, ...) would take it.
    bool can_add_link(LinkIndex index) const {
        return index == links_.size() || (index < links_.size() && links_[index].removed);
    }
    // New settings for a link that keeps its socket and sessions.
    void update_link(LinkIndex link, LinkSettings settings);
    // The link's socket was replaced: sessions, peer and state start over.
    void reset_link(LinkIndex link);
    // Gone from the configuration: never used again (see Link::removed).
    void remove_link(LinkIndex link);

private:
    // Handshake (tunnel_handshake.cpp)
    void send_initiation(LinkIndex index, Io& io, Time now, bool fresh);
    void on_initiation(LinkIndex index, Datagram& d, Io& io, Time now);
    void on_response(LinkIndex index, Datagram& d, Io& io, Time now);
    void send_response(LinkIndex index, Datagram& d, std::span<const std::byte, wire::kResponseSize> response,
                       Io& io, Time now);
    uint32_t new_index();

    // Transport (tunnel.cpp)
    // `opened`, `i`: on_datagrams()'s batch, if any, and d's place in it.
    void on_transport(LinkIndex index, Datagram& d, Io& io, Time now, const OpenBatch* opened, size_t i);
    // What a transport packet on `link` must pass before it is opened, in
    // order, for on_transport() (which counts each failure) and plan_open().
    enum class Admit : uint8_t { ok, malformed, no_session, replay };
    struct Admission {
        Admit verdict = Admit::malformed;
        wire::TransportHeader header{};  // when decoded
        const Session* session = nullptr;  // when found and live
    };
    static Admission admit_transport(const Link& link, std::span<const std::byte> packet, Time now);
    Session* find_session(Link& link, uint32_t receiver_index);
    static const Session* find_session(const Link& link, uint32_t receiver_index);
    bool usable(const Link& link, Time now) const;
    void send_control(LinkIndex index, wire::ControlKind kind, Io& io, Time now);
    // Fills usable_scratch_ and path_scratch_: which links may carry data
    // now, and what the scheduler counts on for each. `except` is left out.
    void prepare_links(Time now, std::optional<LinkIndex> except = std::nullopt);
    // Seals IP packet `b` (at kHeadroom) as data packet `seq` on `index`.
    // `space`: the counter space it is sealed in, whose sequence `seq` is
    // in (sealing_space()).
    void send_data(LinkIndex index, uint64_t seq, Buffer* b, Io& io, Time now, bool resent, uint8_t space);
    // The space a packet asked for `space` is sealed in on a link: `space`
    // when the link's session negotiated spaces, else 0. The link must be
    // usable.
    static uint8_t sealing_space(const Link& link, uint8_t space);
    // Sends again, on other links, what `index` was sent lately and the peer
    // has not acknowledged (timing::kResendHorizon).
    void resend_unconfirmed(LinkIndex index, Io& io, Time now);
    // Whether the history is worth keeping: more than one link to resend on.
    void size_history();
    // Seals [headroom | inner | payload] already in `b` and queues it, in
    // counter space `space` if the session negotiated spaces, else in 0.
    void seal_and_send(LinkIndex index, Session& s, wire::Type type, Buffer* b, Io& io, Time now,
                       uint8_t flags = 0, uint8_t space = 0);
    void set_state(LinkIndex index, LinkState state, Time now, const char* reason);
    // A packet of the peer with timestamp `ts` echoing `echo` arrived at `now`.
    void update_rtt(Link& link, uint32_t ts, uint32_t echo, Time now);
    uint32_t echo_for(const Link& link, Time now) const;
    Time link_timers(LinkIndex index, Io& io, Time now);
    void deliver(Io& io);
    void rebuild_scheduler();
    // When an up link's acknowledgements become overdue (timing::kStallMin),
    // if anything is unacknowledged; and whether they are now.
    std::optional<Time> stalled_at(const Link& link) const;
    bool stalled(const Link& link, Time now) const;
    // How long an early packet may wait for the ones before it.
    Duration reorder_wait(Time now) const;
    // The most the reorder buffer may ever have room for (0: off).
    static size_t reorder_ceiling(const TunnelSettings& settings);
    // How long a link's traffic may go unacknowledged before it is taken out.
    Duration unanswered_limit(const Link& link) const;
    // Lossy or slow against the link's tolerances, with hysteresis.
    void judge_quality(LinkIndex index, Time now);
    // Logs a link found slower than its bandwidth_upload for a while
    // (timing::kShortOfHint), and when it no longer is.
    void watch_hint(LinkIndex index, Time now);
    // Socket renewal (tunnel_renewal.cpp): asks when due; returns when to
    // look again.
    Time renewal_timer(LinkIndex index, Time now);
    // A send error that means a client socket's address is gone.
    void renewal_on_send_error(LinkIndex index, int error);

    TunnelSettings settings_;
    SecretKey psk_;
    const Clock& clock_;
    Logger& log_;
    std::vector<Link> links_;
    // Responder: the newest initiation timestamp accepted from each of the
    // initiator's links (its link_id, authenticated in the payload). Keyed
    // by the sender's link, not by the link it arrives on, so that an
    // initiation captured on one link and replayed to another is still a
    // replay there and cannot push that link's own handshakes aside.
    std::unordered_map<uint16_t, uint64_t> peer_init_timestamps_;
    Scheduler scheduler_;
    std::unique_ptr<bool[]> usable_scratch_;  // per link, rebuilt per batch
    std::unique_ptr<PathEstimate[]> path_scratch_;  // per link: delays for the scheduler
    std::vector<LinkEvent> events_;
    std::vector<LinkIndex> renewals_;  // asked for since take_socket_renewals()
    ReorderSpaces reorder_;  // per peer space, within reorder_ceiling() together
    std::vector<Buffer*> deliverable_;  // scratch: packets leaving the reorder buffer
    // The next data sequence number per counter space we seal in. Each
    // starts at random (below 2^46; the low 48 bits travel and the receiver
    // extends them, Reorder::extend): a peer that restarts is then far from
    // where it was in every space, and the receiver follows it at once
    // (Reorder) rather than taking its packets for ones delivered already.
    std::array<uint64_t, wire::kCounterSpaces> data_seq_{};
    SendHistory history_;
    TunnelStats stats_;
    // Responder: initiations looked at, per source and in all, before any
    // cryptography (core/handshake_limit.hpp).
    HandshakeLimiter initiation_limit_;
    RateLimit auth_log_limit_;
    RateLimit send_error_limit_;
    SealQueue* seal_queue_ = nullptr;  // set_seal_queue()
    uint64_t session_serial_ = 0;      // the last Session::serial given
};

}  // namespace mlvpn::core
