// SPDX-License-Identifier: BSD-2-Clause
#include "core/status.hpp"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

namespace mlvpn::core {

namespace {

double ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string state_name(const Link& l) {
    if (l.state == LinkState::Up && l.admin == LinkAdmin::Backup) return "fallback";
    if (l.state == LinkState::Up && l.quality != LinkQuality::Good) return to_string(l.quality);
    return to_string(l.state);
}

}  // namespace

Status snapshot(const Tunnel& tunnel, const StatusMeta& meta, const Clock& clock) {
    Status s;
    s.meta = meta;
    const Time now = clock.now();
    s.now_unix = clock.wall_ns() / 1'000'000'000ULL;
    const auto& settings = tunnel.settings();
    s.mode = settings.mode == Mode::Server ? "server" : "client";
    s.tuntap = settings.tuntap == TunType::Tap ? "tap" : "tun";
    s.mtu = settings.mtu;
    s.tunnel = tunnel.stats();
    s.reorder = tunnel.reorder().stats();
    s.reorder_held = tunnel.reorder().held();
    s.reorder_wait_ms = tunnel.reorder().capacity() > 0 ? ms(tunnel.reorder().max_wait()) : 0;
    s.reorder_capacity = tunnel.reorder().capacity();
    s.reorder_capacity_max = s.reorder_capacity > 0 ? tunnel.reorder().limit() : 0;
    s.reorder_adaptive = s.reorder_capacity_max > ReorderSizer::kFloor;  // else it stays at its cap
    s.reorder_spaces = tunnel.reorder().in_use();

    double total_weight = 0;
    for (LinkIndex i = 0; i < tunnel.link_count(); ++i) {
        const Link& l = tunnel.link(i);
        if (l.admin == LinkAdmin::Up && !l.removed) total_weight += Tunnel::link_rate(l);
    }
    for (LinkIndex i = 0; i < tunnel.link_count(); ++i) {
        const Link& l = tunnel.link(i);
        if (l.removed) continue;
        LinkStatus ls;
        ls.name = l.settings.name;
        ls.state = state_name(l);
        ls.reason = l.reason;
        ls.admin = to_string(l.admin);
        ls.local = i < meta.local.size() ? meta.local[i] : "";
        ls.peer = !l.peer.empty() ? l.peer.to_string() : (i < meta.remote.size() ? meta.remote[i] : "-");
        ls.has_rtt = l.has_rtt;
        ls.rtt_ms = l.has_rtt ? ms(l.srtt) : 0;
        ls.rttvar_ms = l.has_rtt ? ms(l.rttvar) : 0;
        ls.bandwidth = l.settings.bandwidth;
        ls.weight = l.admin == LinkAdmin::Up && total_weight > 0 ? Tunnel::link_rate(l) / total_weight : 0;
        ls.estimated_rate = l.delivery.rate();
        ls.effective_rate = Tunnel::link_rate(l);
        ls.timeout_s = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(l.settings.timeout).count());
        ls.loss_pct = l.tx_loss / 100.0;
        ls.rx_loss_pct = l.rx_loss.loss() / 100.0;
        ls.tx_rate = l.tx_rate;
        ls.rx_rate = l.rx_rate;
        if (l.last_rx != Time{}) {
            ls.last_packet_age_s = std::chrono::duration<double>(now - l.last_rx).count();
            ls.last_packet_unix = s.now_unix - static_cast<uint64_t>(ls.last_packet_age_s);
        }
        ls.stats = l.stats;
        ls.stats.rx_out_of_order = l.chain_in.out_of_order();
        s.links.push_back(std::move(ls));
    }
    return s;
}

std::string to_json(const Status& s) {
    using nlohmann::json;
    json links = json::array();
    for (const auto& l : s.links) {
        const auto& st = l.stats;
        links.push_back({
            // mlvpn 2.3's fields
            {"name", l.name},
            {"mode", s.mode},
            {"bindaddr", l.local},
            {"destaddr", l.peer},
            {"status", l.state == "up" || l.state == "fallback" || l.state == "lossy" || l.state == "slow"
                           ? "connected"
                       : l.state == "handshaking"               ? "waiting peer"
                                                                 : "disconnected"},
            {"sentpackets", st.tx_packets},
            {"recvpackets", st.rx_packets},
            {"sentbytes", st.tx_bytes},
            {"recvbytes", st.rx_bytes},
            {"bandwidth", l.bandwidth},
            {"srtt", l.has_rtt ? static_cast<uint64_t>(l.rtt_ms + 0.5) : 0},
            {"loss", static_cast<uint64_t>(l.loss_pct + 0.5)},
            {"disconnects", st.downs},
            {"last_packet", l.last_packet_unix},
            {"timeout", l.timeout_s},
            // and the rest
            {"state", l.state},
            {"reason", l.reason},
            {"admin", l.admin},
            {"peer", l.peer},
            {"rtt_ms", l.has_rtt ? json(l.rtt_ms) : json(nullptr)},
            {"rttvar_ms", l.has_rtt ? json(l.rttvar_ms) : json(nullptr)},
            {"loss_pct", l.loss_pct},
            {"rx_loss_pct", l.rx_loss_pct},
            {"tx_rate_bps", static_cast<uint64_t>(l.tx_rate * 8 + 0.5)},
            {"rx_rate_bps", static_cast<uint64_t>(l.rx_rate * 8 + 0.5)},
            {"estimated_rate_bps", l.estimated_rate > 0 ? json(static_cast<uint64_t>(l.estimated_rate * 8 + 0.5))
                                                         : json(nullptr)},
            {"configured_rate_bps", l.bandwidth > 0 ? json(l.bandwidth * 8) : json(nullptr)},
            {"effective_rate_bps", static_cast<uint64_t>(l.effective_rate * 8 + 0.5)},
            {"weight", l.weight},
            {"last_packet_age_s", l.last_packet_age_s >= 0 ? json(l.last_packet_age_s) : json(nullptr)},
            {"data_sent", st.tx_data},
            {"data_received", st.rx_data},
            {"handshakes", {{"sent", st.handshakes_sent},
                            {"received", st.handshakes_received},
                            {"completed", st.handshakes_completed}}},
            {"drops", {{"auth", st.drop_auth},
                       {"replay", st.drop_replay},
                       {"malformed", st.drop_malformed},
                       {"no_session", st.drop_no_session},
                       {"peer", st.drop_peer},
                       {"admin", st.drop_admin},
                       {"ratelimit", st.drop_ratelimit}}},
            {"send_errors", st.send_errors},
            {"unanswered", st.unanswered},
            {"resent", st.resent},
            {"data_out_of_order", st.rx_out_of_order},
            {"socket_renewals", st.socket_renewals},
            {"acks_sent", st.acks_sent},
            {"ups", st.ups},
        });
    }
    const auto& t = s.tunnel;
    const auto& o = s.meta.offload_stats;
    const auto& u = s.meta.udp_offload_stats;
    json doc = {
        {"name", s.meta.name},
        {"version", s.meta.version},
        {"pid", s.meta.pid},
        {"worker_pid", s.meta.worker_pid},
        {"uptime", s.now_unix >= s.meta.started_unix ? s.now_unix - s.meta.started_unix : 0},
        {"started", s.meta.started_unix},
        {"last_reload", s.meta.last_reload_unix},
        {"mode", s.mode},
        {"backend", s.meta.backend},
        {"workers", {{"threads", s.meta.workers}, {"cross_thread_copies", s.meta.cross_thread_copies}}},
        {"tuntap", {{"type", s.tuntap}, {"name", s.meta.device}, {"mtu", s.mtu}, {"offload", s.meta.offload}}},
        {"device", {{"read", t.tun_rx},
                    {"written", t.tun_tx},
                    {"drops", {{"no_link", t.drop_no_link},
                               {"oversize", t.drop_oversize},
                               {"queue_full", t.drop_no_buffer},
                               {"malformed", t.drop_tun_malformed}}},
                    {"write_errors", t.tun_write_errors},
                    {"offload", {{"super_packets_read", o.super_reads},
                                 {"super_packets_written", o.super_writes},
                                 {"merged", o.merged},
                                 {"dropped_reads", {{"malformed", o.bad_reads}, {"no_buffer", o.no_buffer_reads}}}}}}},
        {"link_offload", {{"enabled", s.meta.udp_offload},
                          {"gso_sends", u.gso_sends},
                          {"gso_segments", u.gso_segments},
                          {"gso_refused", u.gso_refused},
                          {"gro_receives", u.gro_receives},
                          {"gro_segments", u.gro_segments},
                          {"dropped", {{"malformed", u.gro_dropped}, {"no_buffer", u.gro_no_buffer}}}}},
        {"reorder", {{"held", s.reorder_held},
                     {"wait_ms", s.reorder_wait_ms},
                     {"capacity", s.reorder_capacity},
                     {"capacity_max", s.reorder_capacity_max},
                     {"adaptive", s.reorder_adaptive},
                     {"spaces", s.reorder_spaces},
                     {"resizes", s.reorder.resizes},
                     {"in_order", s.reorder.in_order},
                     {"reordered", s.reorder.reordered},
                     {"late", s.reorder.late},
                     {"gaps_skipped", s.reorder.gaps_skipped},
                     {"gaps_lost", s.reorder.gaps_lost},
                     {"overflows", s.reorder.overflows},
                     {"duplicates", s.reorder.duplicates}}},
        {"tunnels", links},
    };
    return doc.dump(2) + "\n";
}

std::string prometheus_label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string to_prometheus(const Status& s) {
    std::string out;
    const std::string tunnel = prometheus_label(s.meta.name);
    auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
        out += fmt::format("# HELP mlvpn_{} {}\n# TYPE mlvpn_{} {}\n", name, help, name, type);
    };
    auto sample = [&](std::string_view name, std::string_view labels, auto value) {
        out += fmt::format("mlvpn_{}{{tunnel=\"{}\"{}}} {}\n", name, tunnel, labels, value);
    };
    auto per_link = [&](std::string_view name, std::string_view type, std::string_view help, auto get) {
        family(name, type, help);
        for (const auto& l : s.links) sample(name, fmt::format(",link=\"{}\"", prometheus_label(l.name)), get(l));
    };

    family("info", "gauge", "Constant 1, with the version and the I/O backend as labels.");
    sample("info", fmt::format(",version=\"{}\",backend=\"{}\",mode=\"{}\"", prometheus_label(s.meta.version),
                               prometheus_label(s.meta.backend), s.mode),
           1);
    family("start_time_seconds", "gauge", "When the daemon started, seconds since the Unix epoch.");
    sample("start_time_seconds", "", s.meta.started_unix);
    family("last_reload_time_seconds", "gauge", "When the configuration was last (re)loaded.");
    sample("last_reload_time_seconds", "", s.meta.last_reload_unix);

    family("link_state", "gauge", "1 for the state each link is in, 0 for the others.");
    for (const auto& l : s.links) {
        for (const char* st : {"down", "handshaking", "up", "lossy", "slow", "fallback"}) {
            sample("link_state", fmt::format(",link=\"{}\",state=\"{}\"", prometheus_label(l.name), st),
                   l.state == st ? 1 : 0);
        }
    }
    per_link("link_up", "gauge", "1 when the link is up (up, lossy, slow or fallback).", [](const LinkStatus& l) {
        return l.state == "up" || l.state == "fallback" || l.state == "lossy" || l.state == "slow" ? 1 : 0;
    });
    per_link("link_loss_ratio", "gauge", "Loss of what this side sends on the link, as the peer measures it.",
             [](const LinkStatus& l) { return l.loss_pct / 100; });
    per_link("link_send_rate_bytes", "gauge", "Bytes per second sent on the link, over the last second.",
             [](const LinkStatus& l) { return l.tx_rate; });
    per_link("link_estimated_rate_bytes", "gauge",
             "Bytes per second the link has been seen to deliver (0 before the first measurement).",
             [](const LinkStatus& l) { return l.estimated_rate; });
    per_link("link_effective_rate_bytes", "gauge",
             "Bytes per second the scheduler counts on for the link: the estimate, capped by bandwidth_upload.",
             [](const LinkStatus& l) { return l.effective_rate; });
    per_link("link_configured_rate_bytes", "gauge", "The link's bandwidth_upload, bytes per second (0 when not given).",
             [](const LinkStatus& l) { return l.bandwidth; });
    per_link("link_receive_rate_bytes", "gauge", "Bytes per second received on the link, over the last second.",
             [](const LinkStatus& l) { return l.rx_rate; });
    per_link("link_receive_loss_ratio", "gauge", "Loss of what the peer sends on the link, as measured here.",
             [](const LinkStatus& l) { return l.rx_loss_pct / 100; });
    per_link("link_unanswered_total", "counter", "Times the link was taken out because the peer stopped acknowledging.",
             [](const LinkStatus& l) { return l.stats.unanswered; });
    per_link("link_resent_packets_total", "counter",
             "Packets sent on the link, not acknowledged when it failed, and sent again on another link.",
             [](const LinkStatus& l) { return l.stats.resent; });
    per_link("link_sent_bytes_total", "counter", "Bytes sent on the link (UDP payload).",
             [](const LinkStatus& l) { return l.stats.tx_bytes; });
    per_link("link_received_bytes_total", "counter", "Authentic bytes received on the link (UDP payload).",
             [](const LinkStatus& l) { return l.stats.rx_bytes; });
    per_link("link_sent_packets_total", "counter", "Datagrams sent on the link.",
             [](const LinkStatus& l) { return l.stats.tx_packets; });
    per_link("link_received_packets_total", "counter", "Authentic datagrams received on the link.",
             [](const LinkStatus& l) { return l.stats.rx_packets; });
    per_link("link_rtt_seconds", "gauge", "Smoothed round-trip time (NaN before the first sample).",
             [](const LinkStatus& l) { return l.has_rtt ? fmt::format("{}", l.rtt_ms / 1000) : std::string("NaN"); });
    per_link("link_rtt_variation_seconds", "gauge", "Round-trip time variation.",
             [](const LinkStatus& l) { return l.has_rtt ? fmt::format("{}", l.rttvar_ms / 1000) : std::string("NaN"); });
    per_link("link_weight_ratio", "gauge", "Share of the bytes the scheduler gives the link.",
             [](const LinkStatus& l) { return l.weight; });
    per_link("link_disconnects_total", "counter", "Times the link went down.",
             [](const LinkStatus& l) { return l.stats.downs; });
    per_link("link_socket_renewals_total", "counter",
             "Fresh sockets the client link got from [priv] after its address or route changed.",
             [](const LinkStatus& l) { return l.stats.socket_renewals; });
    per_link("link_send_errors_total", "counter", "Sends the kernel refused.",
             [](const LinkStatus& l) { return l.stats.send_errors; });
    family("link_dropped_packets_total", "counter", "Datagrams dropped on receipt, by reason.");
    for (const auto& l : s.links) {
        const auto& st = l.stats;
        const std::pair<const char*, uint64_t> reasons[] = {
            {"auth", st.drop_auth},       {"replay", st.drop_replay}, {"malformed", st.drop_malformed},
            {"no_session", st.drop_no_session}, {"peer", st.drop_peer}, {"admin", st.drop_admin},
            {"ratelimit", st.drop_ratelimit}};
        for (const auto& [reason, n] : reasons) {
            sample("link_dropped_packets_total",
                   fmt::format(",link=\"{}\",reason=\"{}\"", prometheus_label(l.name), reason), n);
        }
    }
    family("device_packets_total", "counter", "Packets read from and written to the tunnel device.");
    sample("device_packets_total", ",direction=\"read\"", s.tunnel.tun_rx);
    sample("device_packets_total", ",direction=\"written\"", s.tunnel.tun_tx);
    family("device_dropped_packets_total", "counter", "Packets from the device that were not sent, by reason.");
    sample("device_dropped_packets_total", ",reason=\"no_link\"", s.tunnel.drop_no_link);
    sample("device_dropped_packets_total", ",reason=\"oversize\"", s.tunnel.drop_oversize);
    sample("device_dropped_packets_total", ",reason=\"queue_full\"", s.tunnel.drop_no_buffer);
    family("device_write_dropped_packets_total", "counter",
           "Authentic packets from the peer not written to the device, by reason (malformed: not an IP packet).");
    sample("device_write_dropped_packets_total", ",reason=\"malformed\"", s.tunnel.drop_tun_malformed);
    family("device_write_errors_total", "counter", "Writes to the device that failed.");
    sample("device_write_errors_total", "", s.tunnel.tun_write_errors);
    family("worker_threads", "gauge", "Worker threads, each with its own TUN queue and socket per link.");
    sample("worker_threads", "", s.meta.workers);
    family("cross_thread_copies_total", "counter",
           "Packets a worker thread sent or wrote for another (copied into its own buffer; a reload's change of room).");
    sample("cross_thread_copies_total", "", s.meta.cross_thread_copies);
    family("device_offload_info", "gauge", "Constant 1, with the TUN offloads in use as a label (off, tcp, tcp,udp).");
    sample("device_offload_info", fmt::format(",offload=\"{}\"", prometheus_label(s.meta.offload)), 1);
    family("device_super_packets_total", "counter", "TUN offload: super-packets read (and split) and written (coalesced).");
    sample("device_super_packets_total", ",direction=\"read\"", s.meta.offload_stats.super_reads);
    sample("device_super_packets_total", ",direction=\"written\"", s.meta.offload_stats.super_writes);
    family("device_merged_packets_total", "counter", "TUN offload: packets written inside another's super-packet.");
    sample("device_merged_packets_total", "", s.meta.offload_stats.merged);
    family("device_offload_dropped_reads_total", "counter",
           "TUN offload: reads dropped, by reason (malformed: the split refused it; no_buffer: no room for its segments).");
    sample("device_offload_dropped_reads_total", ",reason=\"malformed\"", s.meta.offload_stats.bad_reads);
    sample("device_offload_dropped_reads_total", ",reason=\"no_buffer\"", s.meta.offload_stats.no_buffer_reads);
    const auto& u = s.meta.udp_offload_stats;
    family("link_offload_info", "gauge", "Constant 1, with UDP segmentation offload on the link sockets as a label (on, off).");
    sample("link_offload_info", fmt::format(",offload=\"{}\"", s.meta.udp_offload ? "on" : "off"), 1);
    family("link_offload_calls_total", "counter",
           "UDP offload: sends that carried several datagrams (gso) and receives that brought several (gro).");
    sample("link_offload_calls_total", ",direction=\"gso\"", u.gso_sends);
    sample("link_offload_calls_total", ",direction=\"gro\"", u.gro_receives);
    family("link_offload_segments_total", "counter", "UDP offload: datagrams carried by those sends and receives.");
    sample("link_offload_segments_total", ",direction=\"gso\"", u.gso_segments);
    sample("link_offload_segments_total", ",direction=\"gro\"", u.gro_segments);
    family("link_offload_refused_total", "counter",
           "UDP offload: link sockets whose kernel refused UDP_SEGMENT (they send one datagram per call since).");
    sample("link_offload_refused_total", "", u.gso_refused);
    family("link_offload_dropped_total", "counter",
           "UDP offload: received datagrams dropped, by reason (malformed: receives; no_buffer: datagrams).");
    sample("link_offload_dropped_total", ",reason=\"malformed\"", u.gro_dropped);
    sample("link_offload_dropped_total", ",reason=\"no_buffer\"", u.gro_no_buffer);
    family("reorder_packets_total", "counter", "Received packets by what the reorder buffer did with them.");
    sample("reorder_packets_total", ",outcome=\"in_order\"", s.reorder.in_order);
    sample("reorder_packets_total", ",outcome=\"reordered\"", s.reorder.reordered);
    sample("reorder_packets_total", ",outcome=\"late\"", s.reorder.late);
    sample("reorder_packets_total", ",outcome=\"duplicate\"", s.reorder.duplicates);
    sample("reorder_packets_total", ",outcome=\"overflow\"", s.reorder.overflows);
    family("reorder_held_packets", "gauge", "Packets held in the reorder buffer, waiting for the ones before them.");
    sample("reorder_held_packets", "", s.reorder_held);
    family("reorder_gaps_skipped_total", "counter", "Sequence numbers given up on (lost, or later than the wait).");
    sample("reorder_gaps_skipped_total", "", s.reorder.gaps_skipped);
    family("reorder_gaps_lost_total", "counter",
           "Sequence numbers given up on without waiting: lost on their link, which delivered a later one.");
    sample("reorder_gaps_lost_total", "", s.reorder.gaps_lost);
    family("reorder_wait_seconds", "gauge", "How long an early packet may wait for the ones before it.");
    sample("reorder_wait_seconds", "", s.reorder_wait_ms / 1000);
    family("reorder_capacity_packets", "gauge",
           "Room in the reorder buffer (packets), by limit (now: adapted to the traffic; max: the most it may grow to).");
    sample("reorder_capacity_packets", ",limit=\"now\"", s.reorder_capacity);
    sample("reorder_capacity_packets", ",limit=\"max\"", s.reorder_capacity_max);
    family("reorder_resizes_total", "counter", "Reorder buffer capacity changes that kept the packets held.");
    sample("reorder_resizes_total", "", s.reorder.resizes);
    family("reorder_spaces", "gauge", "The peer's counter spaces with a reorder buffer in use (each its own order).");
    sample("reorder_spaces", "", s.reorder_spaces);
    return out;
}

}  // namespace mlvpn::core
