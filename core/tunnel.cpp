// SPDX-License-Identifier: BSD-2-Clause
// The transport half of Tunnel: sealing, opening, scheduling, timers.
#include "core/tunnel.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <sodium.h>

#include "core/seal.hpp"
#include "core/wire.hpp"

namespace mlvpn::core {

namespace {

std::vector<uint64_t> bandwidths(const std::vector<LinkSettings>& links) {
    std::vector<uint64_t> b;
    for (const auto& l : links) b.push_back(l.bandwidth);
    return b;
}

bool expired(const Session& s, Time now) {
    return now - s.created >= timing::kRejectAfter || s.send.most() >= timing::kRejectAfterMessages;
}

}  // namespace

const char* to_string(LinkState state) {
    switch (state) {
    case LinkState::Down: return "down";
    case LinkState::Handshaking: return "handshaking";
    case LinkState::Up: return "up";
    }
    return "?";
}

const char* to_string(LinkQuality quality) {
    switch (quality) {
    case LinkQuality::Good: return "good";
    case LinkQuality::Lossy: return "lossy";
    case LinkQuality::Slow: return "slow";
    }
    return "?";
}

const char* to_string(LinkAdmin admin) {
    switch (admin) {
    case LinkAdmin::Up: return "up";
    case LinkAdmin::Backup: return "backup";
    case LinkAdmin::Down: return "down";
    }
    return "?";
}

Tunnel::Tunnel(TunnelSettings settings, SecretKey psk, const Clock& clock, Logger& log)
    : settings_(std::move(settings)),
      psk_(std::move(psk)),
      clock_(clock),
      log_(log),
      scheduler_(bandwidths(settings_.links)),
      usable_scratch_(std::make_unique<bool[]>(settings_.links.size())),
      path_scratch_(std::make_unique<PathEstimate[]>(settings_.links.size())),
      reorder_(reorder_ceiling(settings_), timing::kReorderWaitDefault) {
    links_.resize(settings_.links.size());
    const Time now = clock_.now();
    for (size_t i = 0; i < links_.size(); ++i) {
        links_[i].settings = settings_.links[i];
        links_[i].delivery.set_hint(static_cast<double>(settings_.links[i].bandwidth));
        links_[i].admin = settings_.links[i].fallback_only ? LinkAdmin::Backup : LinkAdmin::Up;
        links_[i].state_since = now;
        links_[i].next_handshake = now;
    }
    randombytes_buf(data_seq_.data(), sizeof data_seq_);
    // Below 2^46: the wire carries 48 bits (wire::kDataSeqBits); the
    // receiver extends them, so even passing 2^48 changes nothing.
    for (auto& seq : data_seq_) seq >>= 64 - (wire::kDataSeqBits - 2);
    size_history();
}

bool Tunnel::usable(const Link& link, Time now) const {
    return link.state == LinkState::Up && link.admin != LinkAdmin::Down && link.current && link.current->confirmed &&
           !expired(*link.current, now) && (link.settings.connected || !link.peer.empty());
}

size_t Tunnel::usable_links() const {
    const Time now = clock_.now();
    return static_cast<size_t>(std::count_if(links_.begin(), links_.end(),
                                             [&](const Link& l) { return usable(l, now); }));
}

std::vector<LinkEvent> Tunnel::take_events() { return std::exchange(events_, {}); }

void Tunnel::set_admin(LinkIndex index, LinkAdmin admin) {
    if (index >= links_.size() || links_[index].removed) return;
    Link& link = links_[index];
    if (link.admin == admin) return;
    log_.notice("link {}: administratively {} (was {})", link.settings.name, to_string(admin), to_string(link.admin));
    link.admin = admin;
    const Time now = clock_.now();
    if (admin == LinkAdmin::Down) {
        set_state(index, LinkState::Down, now, "administratively down");
        link.pending.reset();
    } else if (link.state == LinkState::Down) {
        link.reason = settings_.mode == Mode::Client ? "handshaking" : "waiting for the peer";
        link.next_handshake = now;
    }
}

void Tunnel::set_psk(SecretKey psk) {
    psk_ = std::move(psk);
    const Time now = clock_.now();
    for (auto& link : links_) {
        // An initiation under the old key would only be refused.
        link.pending.reset();
        link.next_handshake = now;
        link.cached.valid = false;
        link.rekey_now = settings_.mode == Mode::Client && !link.removed;
    }
    log_.notice("new pre-shared key: {}", settings_.mode == Mode::Client
                                              ? "handshaking again on every link"
                                              : "used for the client's next handshakes");
}

void Tunnel::set_general(bool cleartext_data, uint32_t mtu, uint32_t reorder_buffer_size, Io& io) {
    settings_.cleartext_data = cleartext_data;
    if (mtu != settings_.mtu) {
        settings_.mtu = mtu;
        history_.resize(mtu, history_.enabled());
    }
    if (reorder_buffer_size != settings_.reorder_buffer_size) {
        settings_.reorder_buffer_size = reorder_buffer_size;
        reorder_.set_ceiling(reorder_ceiling(settings_), deliverable_);
        deliver(io);
    }
}

size_t Tunnel::reorder_ceiling(const TunnelSettings& settings) {
    size_t ceiling = std::min<size_t>(settings.reorder_buffer_size, kReorderCapacityMax);
    // Each packet held keeps one of the pool's buffers until its gap fills
    // or is given up (up to kReorderWaitMax). The other half is for the
    // receive path: a round of reads in flight per link socket and for the
    // TUN device (LoopConfig::batch each, their GRO or super-packet
    // segments split into more), the turn's sends and device writes, and,
    // when a gap fills, the device writes of everything that was held. With
    // the buffer allowed the whole pool a skewed link could leave no buffer
    // to read the packet that fills the gap (until the wait gives it up);
    // with half, a turn's reads (a few hundred buffers with a few links)
    // always find theirs. At the worker's usual 4096 buffers of 2 KB that
    // is 2048 packets: 1 Gbit/s of 1400-byte packets across 20 ms of skew.
    // A bigger pool would allow more, at 2 KB of resident memory a packet.
    if (settings.pool_slots > 0 && ceiling > 0) {
        ceiling = std::min<size_t>(ceiling, std::max<uint32_t>(1, settings.pool_slots / 2));
    }
    return ceiling;
}

bool Tunnel::add_link(LinkIndex index, LinkSettings settings) {
    if (!can_add_link(index)) return false;
    const Time now = clock_.now();
    Link fresh;
    fresh.settings = std::move(settings);
    fresh.delivery.set_hint(static_cast<double>(fresh.settings.bandwidth));
    fresh.admin = fresh.settings.fallback_only ? LinkAdmin::Backup : LinkAdmin::Up;
    fresh.state_since = now;
    fresh.next_handshake = now;
    if (index == links_.size()) {
        links_.push_back(std::move(fresh));
        settings_.links.push_back(links_.back().settings);
        usable_scratch_ = std::make_unique<bool[]>(links_.size());
        path_scratch_ = std::make_unique<PathEstimate[]>(links_.size());
    } else {
        links_[index] = std::move(fresh);
        settings_.links[index] = links_[index].settings;
    }
    rebuild_scheduler();
    log_.notice("link {} added", links_[index].settings.name);
    return true;
}

void Tunnel::update_link(LinkIndex index, LinkSettings settings) {
    if (index >= links_.size() || links_[index].removed) return;
    Link& link = links_[index];
    if (settings.fallback_only != link.settings.fallback_only && link.admin != LinkAdmin::Down) {
        link.admin = settings.fallback_only ? LinkAdmin::Backup : LinkAdmin::Up;
    }
    link.settings = std::move(settings);
    settings_.links[index] = link.settings;
    link.delivery.set_hint(static_cast<double>(link.settings.bandwidth));
    rebuild_scheduler();
}

void Tunnel::reset_link(LinkIndex index) {
    if (index >= links_.size() || links_[index].removed) return;
    Link& link = links_[index];
    const Time now = clock_.now();
    set_state(index, LinkState::Down, now, "new socket");
    link.current.reset();
    link.previous.reset();
    link.next.reset();
    link.pending.reset();
    link.cached.valid = false;
    link.peer = Endpoint{};
    link.has_rtt = false;
    link.has_min_rtt = false;  // perhaps another path now
    link.send_queue.reset();
    link.delivery = DeliveryRate{};
    link.delivery.set_hint(static_cast<double>(link.settings.bandwidth));
    link.peer_ts = 0;
    link.liveness.reset();
    link.ack_owed = false;
    link.data_owed_since = kNever;
    link.rx_loss.reset();
    link.tx_loss = 0;
    link.quality = LinkQuality::Good;
    link.next_handshake = now;
    link.renewal.renewed();
}

void Tunnel::remove_link(LinkIndex index) {
    if (index >= links_.size() || links_[index].removed) return;
    set_state(index, LinkState::Down, clock_.now(), "removed");
    Link& link = links_[index];
    log_.notice("link {} removed", link.settings.name);
    link.removed = true;
    link.admin = LinkAdmin::Down;
    link.current.reset();
    link.previous.reset();
    link.next.reset();
    link.pending.reset();
    link.cached.valid = false;
    rebuild_scheduler();
}

void Tunnel::rebuild_scheduler() {
    std::vector<uint64_t> b;
    for (const auto& l : links_) b.push_back(l.removed ? 0 : l.settings.bandwidth);
    scheduler_ = Scheduler(b);
    size_history();
}

void Tunnel::set_state(LinkIndex index, LinkState state, Time now, const char* reason) {
    Link& link = links_[index];
    link.reason = reason;
    if (link.state == state) return;
    const bool was_up = link.state == LinkState::Up;
    link.quality = LinkQuality::Good;  // judged afresh once up again
    link.quality_since = now;
    link.state = state;
    link.state_since = now;
    if (state == LinkState::Up) {
        ++link.stats.ups;
        link.liveness.forget_waiting();
        // What was measured before the outage (a loaded queue, often) is not
        // the path now; a stale RTT would keep the scheduler off the link for
        // seconds. The next packets measure it afresh; its minimum (the
        // path's own delay) is kept.
        link.has_rtt = false;
        // Nor is what was sent into the outage a measure of its rate (the
        // estimate itself is kept: the path is likely the same).
        link.delivery.restart();
    }
    if (was_up) ++link.stats.downs;
    if (state == LinkState::Up) {
        log_.notice("link {} is up{}", link.settings.name,
                    link.settings.connected ? std::string() : fmt::format(" (peer {})", link.peer.to_string()));
    } else if (was_up) {
        // "down" whatever comes next, so that one pattern finds every failure.
        log_.notice("link {} is down{}", link.settings.name,
                    state == LinkState::Handshaking ? " (handshaking again)" : "");
    }
    events_.push_back(LinkEvent{index, state});
}

PathEstimate Tunnel::path_estimate(const Link& link, Time now) {
    PathEstimate path;
    // The path's own delay, even just after an outage: a link back up is no
    // nearer than it was (counting it as near drew a burst onto it, which
    // queued there and then kept it out).
    if (link.has_min_rtt) path.delay = link.min_rtt / 2;
    // The queueing its round trips show, of which only the part in our
    // direction (core/one_way_queue.hpp: a link loaded by the peer's traffic
    // is not one our packets wait on), drained since: a queue empties in
    // real time when nothing is added (what is added, the scheduler counts).
    // A link given nothing for a while measures its RTT only from keepalives,
    // once a second: without this, the queue it had when it last carried data
    // would keep it out of use for seconds.
    if (link.has_rtt && link.srtt > link.min_rtt) {
        Duration queued = link.srtt - link.min_rtt;
        if (link.send_queue.valid()) queued = std::min(queued, link.send_queue.queueing());
        const Duration aged = now > link.rtt_at ? now - link.rtt_at : Duration{};
        if (queued > aged) path.queueing = queued - aged;
    }
    return path;
}

double Tunnel::link_rate(const Link& link) { return link.delivery.current(); }

double Tunnel::path_rate(const Link& link, Time now, size_t phase, bool queues) {
    // What the link has been seen to deliver (its bandwidth_upload until
    // samples show less), at times more to find out whether it can carry more
    // (DeliveryRate::pace), never more than its bandwidth_upload. At that
    // figure, 0: the scheduler's configured weight, the same figure, which it
    // keeps to, whereas a measured rate is only a floor to it while the link
    // does not queue (Scheduler::kUnqueuedGain), which would drive the link
    // beyond its cap.
    //
    // Never more than it delivers while our packets queue on it: it is then
    // sent all it can carry, so what it delivers measures it (and raises the
    // estimate if it is faster), and driving it faster only lengthens its
    // queue. A quarter second at 1.25x is 62 ms of queue on any link; on
    // 100/40/10 Mbit/s with 50 ms queues (three-mixed) those probes
    // overflowed the 40 Mbit/s link 70-110 times a second and TCP
    // retransmitted 0.7-1.1 % of its segments; without them, none
    // overflowed, and the tunnel carried 117-119 Mbit/s instead of 111-113.
    const double pace = queues ? link.delivery.current() : link.delivery.pace(now, phase);
    const double hint = link.delivery.hint();
    return hint > 0 && pace >= hint ? 0 : pace;
}

void Tunnel::watch_hint(LinkIndex index, Time now) {
    Link& link = links_[index];
    const double hint = link.delivery.hint();
    if (hint <= 0 || link.state != LinkState::Up) {
        link.short_of_hint_since = Time{};
        return;
    }
    const double rate = link_rate(link);
    const auto mbit = [](double bytes_per_s) { return bytes_per_s * 8 / 1e6; };
    if (rate < hint * timing::kShortOfHint) {
        if (link.short_of_hint_since == Time{}) link.short_of_hint_since = now;
        if (!link.short_of_hint_logged && now - link.short_of_hint_since >= timing::kShortOfHintFor) {
            log_.notice("link {}: delivers {:.1f} Mbit/s, less than its bandwidth_upload ({:.1f} Mbit/s); "
                        "driven at what it delivers",
                        link.settings.name, mbit(rate), mbit(hint));
            link.short_of_hint_logged = true;
        }
        return;
    }
    link.short_of_hint_since = Time{};
    // Hysteresis: a link probing just around the threshold logs once.
    if (link.short_of_hint_logged && rate >= hint * timing::kBackToHint) {
        log_.notice("link {}: delivers its bandwidth_upload ({:.1f} Mbit/s) again", link.settings.name, mbit(hint));
        link.short_of_hint_logged = false;
    }
}

uint32_t Tunnel::echo_for(const Link& link, Time now) const {
    if (link.peer_ts == 0) return 0;
    // The peer's timestamp plus the time we held it: the peer subtracts this
    // from its clock and gets the round trip without our processing delay.
    const auto held = std::chrono::duration_cast<std::chrono::milliseconds>(now - link.peer_ts_at).count();
    if (held > 10'000) return 0;  // too stale to mean anything
    const uint32_t echo = link.peer_ts + static_cast<uint32_t>(held);
    return echo == 0 ? 1 : echo;
}

void Tunnel::update_rtt(Link& link, uint32_t ts, uint32_t echo, Time now) {
    if (echo == 0) return;
    const uint32_t sample_ms = ms32(now) - echo;
    if (sample_ms > 60'000) return;  // wrapped or bogus
    // A packet of ours sent before the link's last change of state (a probe
    // held in a queue through an outage, say) measures the outage, not the
    // path: once up, the link would look seconds away, and slow.
    if (link.state_since != Time{} && ms32_diff(echo, ms32(link.state_since)) < 0) return;
    const Duration sample = std::chrono::milliseconds(sample_ms);
    if (!link.has_min_rtt || sample <= link.min_rtt || now - link.min_rtt_at >= timing::kMinRttWindow) {
        link.min_rtt = sample;
        link.min_rtt_at = now;
        link.has_min_rtt = true;
    }
    link.rtt_at = now;
    link.send_queue.sample(ts, echo, now);
    if (!link.has_rtt) {
        link.srtt = sample;
        link.rttvar = sample / 2;
        link.has_rtt = true;
    } else {
        // RFC 6298 smoothing.
        const Duration err = sample > link.srtt ? sample - link.srtt : link.srtt - sample;
        link.rttvar = (link.rttvar * 3 + err) / 4;
        link.srtt = (link.srtt * 7 + sample) / 8;
    }
}

void Tunnel::seal_and_send(LinkIndex index, Session& s, wire::Type type, Buffer* b, Io& io, Time now,
                           uint8_t flags, uint8_t space) {
    Link& link = links_[index];
    // b->bytes() is [inner header | payload]; the header and tag go in front.
    b->offset -= wire::kTransportHeaderSize + wire::kTagSize;
    b->length += wire::kTransportHeaderSize + wire::kTagSize;
    wire::TransportHeader h;
    h.type = type;
    h.flags = flags;
    if (type == wire::Type::Data && settings_.cleartext_data) h.flags |= wire::kFlagCleartext;
    h.link_id = s.link_id;
    h.receiver_index = s.remote_index;
    // A peer that did not negotiate spaces refuses any but 0 (and no peer
    // takes one beyond the cap: a caller's bug must not overrun the counters).
    h.counter = s.send.next(s.spaces && space < wire::kCounterSpaces ? space : 0);
    auto bytes = b->bytes();
    wire::encode(h, bytes.first<wire::kTransportHeaderSize>());
    ++link.stats.tx_packets;
    link.stats.tx_bytes += b->length;
    link.last_tx = now;
    if (seal_queue_ != nullptr) {
        seal_queue_->add(s.send_key, s.serial, index, b, destination(link), h);
        return;
    }
    seal(s.send_key, h, bytes);
    io.send(index, b, destination(link));
}

void Tunnel::send_control(LinkIndex index, wire::ControlKind kind, Io& io, Time now) {
    Link& link = links_[index];
    if (!link.current || expired(*link.current, now)) return;
    Buffer* b = io.acquire();
    if (b == nullptr) {
        ++stats_.drop_no_buffer;
        return;
    }
    b->offset = wire::kDatagramOffset + wire::kTransportHeaderSize + wire::kTagSize;
    b->length = wire::kInnerHeaderSize + wire::kControlBodySize;
    wire::ControlInner inner{kind, ms32(now), echo_for(link, now), link.peer_ts, link.rx_loss.loss()};
    wire::encode(inner, b->bytes().first<wire::kInnerHeaderSize>());
    wire::encode_control_body(static_cast<uint32_t>(link.stats.rx_bytes),
                              b->bytes().subspan(wire::kInnerHeaderSize).first<wire::kControlBodySize>());
    seal_and_send(index, *link.current, wire::Type::Control, b, io, now);
    // Whatever we owed the peer, this carries it (rx_ts).
    link.ack_owed = false;
    link.data_owed_since = kNever;
    link.last_control_tx = now;
    link.delivery.sent(inner.ts, now, link.stats.tx_bytes, false);
    if (kind == wire::ControlKind::Ack) {
        ++link.stats.acks_sent;
    } else {
        link.last_elicit_tx = now;
        link.liveness.sent(inner.ts, now);
    }
}

void Tunnel::prepare_links(Time now, std::optional<LinkIndex> except) {
    // Which links may carry data: the usable primary links in good shape;
    // when there are none, the lossy or slow ones; when there are none of
    // those either, the fallback_only ones.
    const size_t n = links_.size();
    bool any_good = false, any_primary = false;
    for (size_t i = 0; i < n; ++i) {
        const Link& l = links_[i];
        usable_scratch_[i] = usable(l, now) && i != except;
        path_scratch_[i] = path_estimate(l, now);
        path_scratch_[i].rate = path_rate(l, now, i, Scheduler::queues(path_scratch_[i]));
        path_scratch_[i].cap = l.delivery.hint();
        path_scratch_[i].measured = l.delivery.rate() > 0;
        const bool primary = usable_scratch_[i] && l.admin == LinkAdmin::Up;
        any_primary |= primary;
        any_good |= primary && l.quality == LinkQuality::Good;
    }
    if (any_primary) {
        for (size_t i = 0; i < n; ++i) {
            const Link& l = links_[i];
            if (l.admin == LinkAdmin::Backup || (any_good && l.quality != LinkQuality::Good)) usable_scratch_[i] = false;
        }
    }
    // Links whose acknowledgements are overdue wait while another is fine.
    bool any_fresh = false;
    for (size_t i = 0; i < n; ++i) any_fresh |= usable_scratch_[i] && !stalled(links_[i], now);
    if (any_fresh) {
        for (size_t i = 0; i < n; ++i) {
            if (usable_scratch_[i] && stalled(links_[i], now)) usable_scratch_[i] = false;
        }
    }
}

uint8_t Tunnel::sealing_space(const Link& link, uint8_t space) {
    return link.current->spaces && space < wire::kCounterSpaces ? space : 0;
}

void Tunnel::send_data(LinkIndex index, uint64_t seq, Buffer* b, Io& io, Time now, bool resent, uint8_t space) {
    Link& link = links_[index];
    b->offset -= wire::kInnerHeaderSize;
    b->length += wire::kInnerHeaderSize;
    // A resent copy is in no chain: the peer takes its chain for the link's
    // order, and this one was numbered for another link.
    const uint16_t chain = resent ? 0 : link.chain_out.next(space, seq);
    wire::DataInner inner{seq, chain, ms32(now), echo_for(link, now)};
    wire::encode(inner, b->bytes().first<wire::kInnerHeaderSize>());
    ++link.stats.tx_data;
    // The flag goes in the header, which the tag covers.
    const uint8_t flags = (resent ? wire::kFlagResent : 0) | (b->checksum_partial ? wire::kFlagChecksumPartial : 0);
    seal_and_send(index, *link.current, wire::Type::Data, b, io, now, flags, space);
    link.last_elicit_tx = now;
    link.liveness.sent(inner.ts, now);
    link.delivery.sent(inner.ts, now, link.stats.tx_bytes, scheduler_.busy(index));
}

void Tunnel::on_tun_packets(std::span<Buffer*> packets, Io& io, uint8_t space) {
    const Time now = clock_.now();
    prepare_links(now);
    const size_t n = links_.size();
    const std::span<const bool> usable_now(usable_scratch_.get(), n);
    const std::span<const PathEstimate> path_now(path_scratch_.get(), n);
    const uint32_t ts = ms32(now);

    for (Buffer* b : packets) {
        ++stats_.tun_rx;
        if (b->length == 0) {
            io.release(b);
            continue;
        }
        if (b->length > settings_.mtu || b->offset < wire::kHeadroom) {
            ++stats_.drop_oversize;
            io.release(b);
            continue;
        }
        // Charged as the link carries it: with our overhead and the UDP/IPv4
        // headers (IPv6 adds 20 more; the queueing seen in RTTs covers it).
        const auto link_index = scheduler_.pick(usable_now, b->length + wire::kOverhead + 28, now, path_now);
        if (!link_index) {
            ++stats_.drop_no_link;
            io.release(b);
            continue;
        }
        const auto index = static_cast<LinkIndex>(*link_index);
        // Numbered in the space it is sealed in: a link to a peer without
        // spaces takes space 0's next number, which is all that peer orders.
        const uint8_t sealed = sealing_space(links_[index], space);
        const uint64_t seq = data_seq_[sealed]++;
        history_.record(seq, sealed, index, ts, b->bytes(), b->checksum_partial);
        send_data(index, seq, b, io, now, false, sealed);
    }
}

void Tunnel::resend_unconfirmed(LinkIndex index, Io& io, Time now) {
    if (!history_.enabled()) return;
    prepare_links(now, index);
    const size_t n = links_.size();
    // Only onto a link that is fine: when they all stall at once (our own
    // side is overloaded, say), resending would only add to it.
    for (size_t i = 0; i < n; ++i) usable_scratch_[i] = usable_scratch_[i] && !stalled(links_[i], now);
    if (std::none_of(usable_scratch_.get(), usable_scratch_.get() + n, [](bool u) { return u; })) return;
    const std::span<const bool> usable_now(usable_scratch_.get(), n);
    const std::span<const PathEstimate> path_now(path_scratch_.get(), n);
    Link& failing = links_[index];
    // Everything after the newest timestamp the peer confirmed on the link;
    // with none confirmed yet, everything within the horizon.
    const uint32_t horizon = ms32(now - timing::kResendHorizon);
    const uint32_t after = failing.liveness.newest_confirmed().value_or(horizon - 1);
    history_.take(index, after, horizon, [&](uint64_t seq, uint8_t space, std::span<const std::byte> packet,
                                             bool checksum_partial) {
        const auto to = scheduler_.pick(usable_now, packet.size() + wire::kOverhead + 28, now, path_now);
        // In its own space again, with its own number, so that the peer's
        // buffer for that space fills the gap or knows the copy. A link whose
        // session did not negotiate spaces cannot carry it there (in space 0
        // it would be a number of another sequence): it is not sent again.
        if (to && sealing_space(links_[*to], space) != space) return;
        Buffer* b = to ? io.acquire() : nullptr;
        if (b == nullptr) {
            if (to) ++stats_.drop_no_buffer;
            return;
        }
        std::memcpy(b->data + b->offset, packet.data(), packet.size());
        b->length = static_cast<uint32_t>(packet.size());
        b->checksum_partial = checksum_partial;
        ++failing.stats.resent;
        send_data(static_cast<LinkIndex>(*to), seq, b, io, now, true, space);
    });
}

void Tunnel::size_history() {
    const auto live = std::count_if(links_.begin(), links_.end(), [](const Link& l) { return !l.removed; });
    const bool want = live > 1;
    if (want != history_.enabled()) history_.resize(settings_.mtu, want);
}

void Tunnel::plan_open(LinkIndex index, std::span<const Datagram> datagrams, OpenBatch& batch) const {
    batch.begin(datagrams.size());
    if (index >= links_.size() || links_[index].admin == LinkAdmin::Down) return;
    const Link& link = links_[index];
    const Time now = clock_.now();
    // The checks on_datagrams() and on_transport() make before opening, in
    // the same order; a datagram failing one is left for them to count.
    for (size_t i = 0; i < datagrams.size(); ++i) {
        const Datagram& d = datagrams[i];
        if (d.buffer->length == 0 || !from_peer(link, d.from)) continue;
        const Admission a = admit_transport(link, d.buffer->bytes(), now);
        if (a.verdict == Admit::ok) batch.plan(i, a.session->receive_key, a.session->serial, a.header);
    }
}

void Tunnel::on_datagrams(LinkIndex index, std::span<Datagram> datagrams, Io& io, const OpenBatch* opened) {
    const Time now = clock_.now();
    for (size_t i = 0; i < datagrams.size(); ++i) {
        Datagram& d = datagrams[i];
        if (index >= links_.size() || d.buffer->length == 0) {
            if (index < links_.size()) ++links_[index].stats.drop_malformed;
            io.release(d.buffer);
            continue;
        }
        if (links_[index].admin == LinkAdmin::Down) {
            ++links_[index].stats.drop_admin;
            io.release(d.buffer);
            continue;
        }
        if (!from_peer(links_[index], d.from)) {
            ++links_[index].stats.drop_peer;
            io.release(d.buffer);
            continue;
        }
        switch (std::to_integer<uint8_t>(d.buffer->bytes()[0])) {
        case static_cast<uint8_t>(wire::Type::HandshakeInit):
            on_initiation(index, d, io, now);
            break;
        case static_cast<uint8_t>(wire::Type::HandshakeResponse):
            on_response(index, d, io, now);
            break;
        case static_cast<uint8_t>(wire::Type::Data):
        case static_cast<uint8_t>(wire::Type::Control):
            on_transport(index, d, io, now, opened, i);
            break;
        default:
            ++links_[index].stats.drop_malformed;
            io.release(d.buffer);
        }
    }
}

const Session* Tunnel::find_session(const Link& link, uint32_t receiver_index) {
    for (const auto* s : {&link.current, &link.next, &link.previous}) {
        if (*s && (*s)->local_index == receiver_index) return &**s;
    }
    return nullptr;
}

Tunnel::Admission Tunnel::admit_transport(const Link& link, std::span<const std::byte> packet, Time now) {
    Admission a;
    const auto header = wire::decode_transport(packet);
    if (!header) return a;  // malformed
    a.header = *header;
    a.session = find_session(link, header->receiver_index);
    if (a.session == nullptr || now - a.session->created >= timing::kRejectAfter) {
        a.verdict = Admit::no_session;
        return a;
    }
    // Cheap checks first; the window itself moves only after the tag verifies.
    // A space the session does not allow (any but 0 without negotiation,
    // none beyond wire::kCounterSpaces) is malformed, not a replay.
    if (!a.session->replay.in_range(header->counter)) return a;
    // What does not travel: the session's link id and the counter's upper
    // bits. A wrong guess changes the nonce, and the tag fails.
    a.header.link_id = a.session->link_id;
    a.header.counter = a.session->replay.extend(header->counter);
    a.verdict = a.session->replay.fresh(a.header.counter) ? Admit::ok : Admit::replay;
    return a;
}

Session* Tunnel::find_session(Link& link, uint32_t receiver_index) {
    return const_cast<Session*>(find_session(std::as_const(link), receiver_index));
}

void Tunnel::on_transport(LinkIndex index, Datagram& d, Io& io, Time now, const OpenBatch* opened, size_t i) {
    Link& link = links_[index];
    Buffer* b = d.buffer;
    const Admission a = admit_transport(link, b->bytes(), now);
    switch (a.verdict) {
    case Admit::ok:
        break;
    case Admit::malformed:
        ++link.stats.drop_malformed;
        io.release(b);
        return;
    case Admit::no_session:
        ++link.stats.drop_no_session;
        io.release(b);
        return;
    case Admit::replay:
        ++link.stats.drop_replay;
        io.release(b);
        return;
    }
    const auto& header = a.header;
    // The link is ours to change (not const here): so is its session.
    Session* s = const_cast<Session*>(a.session);
    // Opened outside the lock if planned (core/open_batch.hpp), else here.
    // A result for another session than this one (it went, and a new one
    // drew its index) is no use: the bytes may be decrypted already.
    bool authentic;
    switch (opened != nullptr ? opened->outcome(i) : OpenBatch::Outcome::unplanned) {
    case OpenBatch::Outcome::opened:
    case OpenBatch::Outcome::failed:
        // The same session, and the counter as extended then (it cannot
        // differ within a batch; the window must take what the tag covered).
        if (opened->serial(i) != s->serial || opened->counter(i) != header.counter) {
            ++link.stats.drop_no_session;
            io.release(b);
            return;
        }
        authentic = opened->outcome(i) == OpenBatch::Outcome::opened;
        break;
    default:
        authentic = open(s->receive_key, header, b->bytes());
    }
    if (!authentic) {
        ++link.stats.drop_auth;
        if (auto n = auth_log_limit_.allow(now)) {
            log_.warn("link {}: packet from {} failed authentication; {} such", link.settings.name,
                      d.from.to_string(), *n);
        }
        io.release(b);
        return;
    }
    if (!s->replay.accept(header.counter)) {
        ++link.stats.drop_malformed;
        io.release(b);
        return;
    }

    // Authentic and fresh: now it may change state.
    if (link.next && s == &*link.next) {
        // The initiator used the new session: it has the keys. Promote it.
        if (link.current) link.previous = std::move(link.current);
        link.current = std::move(link.next);
        link.next.reset();
        link.cached.valid = false;  // a replay of its initiation now gets nothing
        link.liveness.reset();      // it answered our response: it hears us
        s = &*link.current;
        s->confirmed = true;
        ++link.stats.handshakes_completed;
    }
    if (!link.settings.connected && !(link.peer == d.from)) {
        if (!link.peer.empty()) {
            log_.info("link {}: peer moved from {} to {}", link.settings.name, link.peer.to_string(),
                      d.from.to_string());
        }
        link.peer = d.from;
    }
    link.last_rx = now;
    ++link.stats.rx_packets;
    link.stats.rx_bytes += b->length;
    link.rx_loss.received(s->local_index, header.counter, now);

    auto inner_bytes = b->bytes().subspan(wire::kTransportHeaderSize + wire::kTagSize);
    const auto inner = inner_bytes.first<wire::kInnerHeaderSize>();
    std::optional<wire::ControlInner> control;
    if (header.type == wire::Type::Control) {
        control = wire::decode_control_inner(inner);
        // What the peer has heard of us: after a failure, the proof that it
        // hears us again.
        if (control && control->rx_ts != 0 && link.liveness.acknowledged(control->rx_ts)) {
            log_.notice("link {}: acknowledged again", link.settings.name);
        }
    }
    // Authentic traffic brings the link up, except one taken out because the
    // peer stopped hearing us: packets from the peer say nothing about the
    // other direction (a one-way cut), only an acknowledgement does.
    if (s == &*link.current && link.state != LinkState::Up && !link.liveness.probing()) {
        set_state(index, LinkState::Up, now, "traffic");
    }

    if (header.type == wire::Type::Control) {
        if (!control) {
            ++link.stats.drop_malformed;
        } else {
            link.peer_ts = control->ts;
            link.peer_ts_at = now;
            update_rtt(link, control->ts, control->echo, now);
            link.tx_loss = control->loss;
            if (control->rx_ts != 0) {
                link.delivery.acknowledged(control->rx_ts, now, control->loss / 10000.0,
                                           wire::decode_control_body(inner_bytes.subspan(wire::kInnerHeaderSize)));
            }
            if (control->kind == wire::ControlKind::Keepalive) {
                link.ack_owed = true;
                link.data_owed_since = kNever;  // a probe is answered at once
            }
        }
        io.release(b);
        return;
    }

    const auto data = wire::decode_data_inner(inner);
    link.peer_ts = data.ts;
    link.peer_ts_at = now;
    if (!link.ack_owed) link.data_owed_since = now;
    link.ack_owed = true;
    update_rtt(link, data.ts, data.echo, now);
    b->offset += wire::kOverhead;
    b->length -= wire::kOverhead;
    // On a TUN device only IPv4 and IPv6 make sense; the peer is
    // authenticated, but a bug there must not feed junk to our kernel.
    const auto version = b->length > 0 ? std::to_integer<uint8_t>(b->bytes()[0]) >> 4 : 0;
    if (b->length == 0 || (settings_.tuntap == TunType::Tun && version != 4 && version != 6)) {
        ++stats_.drop_tun_malformed;
        io.release(b);
        return;
    }
    ++link.stats.rx_data;
    // Finished by the kernel, or by the loop for a device without offloads
    // (core/checksum_partial.hpp). A TAP device's frames are not IP packets:
    // no peer of ours sends them so.
    b->checksum_partial =
        (header.flags & wire::kFlagChecksumPartial) != 0 && settings_.tuntap == TunType::Tun;
    const bool resent = (header.flags & wire::kFlagResent) != 0;
    // In order within the peer's space (the session allowed the space, and
    // the counter carrying it is authentic): each space is its own sequence.
    const uint8_t space = wire::counter_space(header.counter);
    const uint64_t seq = reorder_.extend(space, data.seq);
    if (!reorder_.push(space, seq, b, now, deliverable_, resent)) io.release(b);  // a copy we have delivered
    // The one sent before it on this link did not come: it will not, and
    // what waits for it need not (core/data_chain.hpp).
    if (!resent) {
        if (const auto lost = link.chain_in.received(space, seq, data.chain, now)) {
            reorder_.lost(space, *lost, deliverable_);
        }
    }
    deliver(io);
}

void Tunnel::deliver(Io& io) {
    for (Buffer* b : deliverable_) {
        ++stats_.tun_tx;
        io.write_tun(b);
    }
    deliverable_.clear();
}

void Tunnel::flush(Io& io) {
    reorder_.flush(deliverable_);
    for (Buffer* b : deliverable_) io.release(b);
    deliverable_.clear();
}

void Tunnel::judge_quality(LinkIndex index, Time now) {
    Link& link = links_[index];
    const LinkSettings& ls = link.settings;
    const uint32_t loss_limit = ls.loss_tolerence_pct * (LossMeter::kScale / 100);  // 1/10000
    const bool may_judge_loss = ls.loss_tolerence_pct < 100;
    const auto rtt_ms = std::chrono::duration_cast<std::chrono::milliseconds>(link.srtt).count();
    const bool too_lossy = may_judge_loss && link.tx_loss > loss_limit;
    const bool too_slow = link.has_rtt && ls.latency_tolerence_ms > 0 && rtt_ms > ls.latency_tolerence_ms;
    if (link.quality == LinkQuality::Good) {
        if (!too_lossy && !too_slow) return;
        link.quality = too_lossy ? LinkQuality::Lossy : LinkQuality::Slow;
        link.quality_since = now;
        link.next_probe = now;
        link.reason = too_lossy ? "loss above loss_tolerence" : "rtt above latency_tolerence";
        log_.notice("link {} is {}: {}", ls.name, to_string(link.quality),
                    too_lossy ? fmt::format("{:.1f}% loss > {}%", link.tx_loss / 100.0, ls.loss_tolerence_pct)
                              : fmt::format("rtt {} ms > {} ms", rtt_ms, ls.latency_tolerence_ms));
        return;
    }
    if (now - link.quality_since < timing::kQualityHold) return;
    const bool loss_ok = !may_judge_loss || link.tx_loss <= loss_limit / 2;
    const bool rtt_ok = !link.has_rtt || ls.latency_tolerence_ms == 0 || rtt_ms * 10 <= ls.latency_tolerence_ms * 8;
    if (loss_ok && rtt_ok) {
        log_.notice("link {} is no longer {} (loss {:.1f}%, rtt {} ms)", ls.name, to_string(link.quality),
                    link.tx_loss / 100.0, rtt_ms);
        link.quality = LinkQuality::Good;
        link.quality_since = now;
        link.reason = "recovered";
    } else if (link.quality == LinkQuality::Slow && !loss_ok) {
        link.quality = LinkQuality::Lossy;
        link.reason = "loss above loss_tolerence";
    } else if (link.quality == LinkQuality::Lossy && loss_ok && !rtt_ok) {
        link.quality = LinkQuality::Slow;
        link.reason = "rtt above latency_tolerence";
    }
}

Duration Tunnel::unanswered_limit(const Link& link) const {
    Duration limit = timing::kUnansweredMax;
    if (link.has_rtt) {
        limit = std::clamp(2 * link.srtt + 4 * link.rttvar + timing::kAckInterval, timing::kUnansweredMin,
                           timing::kUnansweredMax);
    }
    return std::min(limit, link.settings.timeout);
}

std::optional<Time> Tunnel::stalled_at(const Link& link) const {
    const auto since = link.liveness.unconfirmed_since();
    if (!link.has_rtt || !since) return std::nullopt;
    return *since + std::max(timing::kStallMin, link.srtt + 4 * link.rttvar + timing::kStallMargin);
}

bool Tunnel::stalled(const Link& link, Time now) const {
    const auto at = stalled_at(link);
    return link.state == LinkState::Up && at && now >= *at;
}

Duration Tunnel::reorder_wait(Time now) const {
    Duration wait{};
    bool any = false;
    for (const auto& l : links_) {
        if (l.state != LinkState::Up || !l.has_rtt) continue;
        wait = std::max(wait, l.srtt / 2 + 2 * l.rttvar);
        any = true;
    }
    if (!any) wait = timing::kReorderWaitDefault;
    // What the packets really had to wait lately (queues that differ from
    // link to link included, which the RTTs show only smoothed), with room
    // to grow.
    const Duration skew = reorder_.measured_skew(now);
    if (skew > Duration{}) wait = std::max(wait, skew + skew / 4 + timing::kReorderSkewMargin);
    return std::clamp(wait, timing::kReorderWaitMin, timing::kReorderWaitMax);
}

Time Tunnel::link_timers(LinkIndex index, Io& io, Time now) {
    Link& link = links_[index];
    Time next = kNever;

    // Sessions past their lifetime are dropped; nothing may use them.
    if (link.previous && expired(*link.previous, now)) link.previous.reset();
    if (link.next && now - link.next->created >= timing::kRejectAfter) link.next.reset();
    if (link.current && expired(*link.current, now)) link.current.reset();
    if (link.admin == LinkAdmin::Down) return kNever;  // taken out: no timers, nothing sent

    // Link timeout: no authenticated packet for `timeout`.
    if (link.state == LinkState::Up) {
        const Time dead_at = link.last_rx + link.settings.timeout;
        if (now >= dead_at || !link.current) {
            log_.notice("link {}: nothing received for {} ms", link.settings.name,
                        std::chrono::duration_cast<std::chrono::milliseconds>(now - link.last_rx).count());
            set_state(index, settings_.mode == Mode::Client ? LinkState::Handshaking : LinkState::Down, now,
                      "timeout");
        } else {
            next = std::min(next, dead_at);
        }
    }
    // Traffic the peer does not acknowledge: out of the aggregate within a
    // fraction of a second, long before the timeout, then probed.
    if (link.state == LinkState::Up) {
        if (const auto since = link.liveness.unconfirmed_since()) {
            const Duration limit = unanswered_limit(link);
            if (now - *since >= limit) {
                log_.notice("link {}: nothing acknowledged for {} ms; out of the aggregate until it is",
                            link.settings.name,
                            std::chrono::duration_cast<std::chrono::milliseconds>(now - *since).count());
                ++link.stats.unanswered;
                resend_unconfirmed(index, io, now);
                link.liveness.start_probing(ms32(now));
                link.next_probe = now;
                set_state(index, LinkState::Down, now, "no acknowledgement");
            } else {
                next = std::min(next, *since + limit);
                // The pause before it (stalled()) starts with a probe, and
                // with what the link was sent since its last acknowledgement
                // sent again elsewhere.
                if (const auto at = stalled_at(link); at && *at > now) next = std::min(next, *at);
            }
        }
    }
    if (link.state == LinkState::Up && stalled(link, now)) {
        if (!link.resent_stall) resend_unconfirmed(index, io, now);
        link.resent_stall = true;
    } else {
        link.resent_stall = false;
    }

    if (settings_.mode == Mode::Client) {
        // The initiator keeps a session alive: handshake when there is none,
        // when it is old, or when the peer has gone quiet.
        const bool want = link.rekey_now || !link.current || now - link.current->created >= timing::kRekeyAfter ||
                          link.current->send.most() >= timing::kRekeyAfterMessages ||
                          now - link.last_rx >= timing::kRehandshakeAfterSilence;
        if (want) {
            if (now >= link.next_handshake) {
                const bool fresh = !link.pending || now - link.pending->started >= timing::kHandshakeLifetime;
                send_initiation(index, io, now, fresh);
                link.next_handshake = now + timing::kHandshakeRetry;
            }
            next = std::min(next, link.next_handshake);
        } else {
            link.pending.reset();
            next = std::min(next, std::min(link.current->created + timing::kRekeyAfter,
                                           link.last_rx + timing::kRehandshakeAfterSilence));
        }
        next = std::min(next, renewal_timer(index, now));
    }

    if (link.state == LinkState::Up) judge_quality(index, now);
    // Throughput over about a second, whatever the state.
    if (now - link.rate_window_start >= timing::kRateWindow) {
        const double secs = std::chrono::duration<double>(now - link.rate_window_start).count();
        if (link.rate_window_start != Time{} && secs > 0) {
            link.tx_rate = static_cast<double>(link.stats.tx_bytes - link.rate_tx_bytes) / secs;
            link.rx_rate = static_cast<double>(link.stats.rx_bytes - link.rate_rx_bytes) / secs;
        }
        link.rate_window_start = now;
        link.rate_tx_bytes = link.stats.tx_bytes;
        link.rate_rx_bytes = link.stats.rx_bytes;
        watch_hint(index, now);
    }
    next = std::min(next, link.rate_window_start + timing::kRateWindow);

    // Keepalives on every link with a session, from both sides; probes, more
    // often, on a link the peer stopped acknowledging; acknowledgements of
    // what the peer sent, at most every kAckInterval.
    if (link.current && link.current->confirmed && (link.settings.connected || !link.peer.empty())) {
        // A link out for its quality gets them as often, to keep measuring
        // it, and so does one paused for overdue acknowledgements: if it
        // works, the probe's acknowledgement ends the pause within a round trip.
        const bool probing = link.liveness.probing() || link.quality != LinkQuality::Good || stalled(link, now);
        const Time due = probing ? link.next_probe : link.last_elicit_tx + timing::kKeepalive;
        if (now >= due) {
            send_control(index, wire::ControlKind::Keepalive, io, now);
            link.next_probe = now + timing::kProbeInterval;
            next = std::min(next, probing ? link.next_probe : now + timing::kKeepalive);
        } else {
            next = std::min(next, due);
        }
        if (link.ack_owed) {
            Time ack_due = link.last_control_tx + timing::kAckInterval;
            if (link.data_owed_since != kNever) ack_due = std::max(ack_due, link.data_owed_since + timing::kAckDelay);
            if (now >= ack_due) {
                send_control(index, wire::ControlKind::Ack, io, now);
            } else {
                next = std::min(next, ack_due);
            }
        }
    }
    return next;
}

Time Tunnel::on_timer(Io& io, SpaceOwner owner) {
    const Time now = clock_.now();
    Time next = kNever;
    for (LinkIndex i = 0; i < links_.size(); ++i) next = std::min(next, link_timers(i, io, now));
    // One wait for every space; each sizes its room and gives up its gaps.
    next = std::min(next, reorder_.on_timer(reorder_wait(now), now, deliverable_, owner));
    deliver(io);
    return next;
}

void Tunnel::on_send_error(LinkIndex link, int error) {
    if (link >= links_.size()) return;
    ++links_[link].stats.send_errors;
    renewal_on_send_error(link, error);
    // The local stack says this link has no way out (its interface went down
    // or lost its route): stop using it now rather than after the timeout.
    // The next authentic packet on it brings it back.
    if ((error == ENETUNREACH || error == ENETDOWN || error == EHOSTUNREACH) &&
        links_[link].state == LinkState::Up) {
        log_.notice("link {}: {}", links_[link].settings.name, std::strerror(error));
        set_state(link, settings_.mode == Mode::Client ? LinkState::Handshaking : LinkState::Down, clock_.now(),
                  "unreachable");
    }
    if (auto n = send_error_limit_.allow(clock_.now())) {
        log_.warn("link {}: send failed: {}; {} such", links_[link].settings.name, std::strerror(error), *n);
    }
}

void Tunnel::on_tun_write_error(int error) {
    ++stats_.tun_write_errors;
    if (auto n = send_error_limit_.allow(clock_.now())) {
        log_.warn("write to the tunnel device failed: {}; {} such", std::strerror(error), *n);
    }
}

}  // namespace mlvpn::core
