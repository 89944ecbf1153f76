// SPDX-License-Identifier: BSD-2-Clause
// What `mlvpnctl show`, GET /status and GET /metrics report: a snapshot of a
// Tunnel taken at one instant, and its two renderings.
//
// The JSON keeps mlvpn 2.3's field names where they exist ("tunnels",
// "sentbytes", "srtt", "status", ...), so scripts written for 2.3 keep
// working, and adds the rest. The metrics follow Prometheus conventions:
// prefix mlvpn_, base units (seconds, bytes), _total on counters, labels
// tunnel and link.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/link.hpp"
#include "core/reorder.hpp"
#include "core/tunnel.hpp"

namespace mlvpn::core {

// What the Tunnel does not know: filled in by the worker.
// The TUN device's offload counters (uring::LoopStats, docs/fastpath.md).
struct OffloadStats {
    uint64_t super_reads = 0;        // super-packets read (and split)
    uint64_t bad_reads = 0;          // reads dropped: a header or super-packet the split refused
    uint64_t no_buffer_reads = 0;    // reads dropped: no buffers for their segments
    uint64_t super_writes = 0;       // super-packets written (coalesced)
    uint64_t merged = 0;             // packets written inside another's super-packet
};

// The link sockets' UDP offload counters (uring::LoopStats, docs/fastpath.md).
struct UdpOffloadStats {
    uint64_t gso_sends = 0;      // sends that carried a run of datagrams (UDP_SEGMENT)
    uint64_t gso_segments = 0;   // datagrams those sends carried
    uint64_t gso_refused = 0;    // sockets whose kernel refused UDP_SEGMENT (sent singly since)
    uint64_t gro_receives = 0;   // receives that brought several datagrams (UDP_GRO)
    uint64_t gro_segments = 0;   // datagrams those receives brought
    uint64_t gro_dropped = 0;    // receives dropped as malformed
    uint64_t gro_no_buffer = 0;  // datagrams of coalesced receives dropped: no free buffer
};

struct StatusMeta {
    std::string name;       // tunnel name (-n)
    std::string version;
    int pid = 0;            // [priv]'s, the daemon's main pid
    int worker_pid = 0;
    uint64_t started_unix = 0;      // wall clock seconds
    uint64_t last_reload_unix = 0;  // = started when never reloaded
    std::string device;     // interface name
    std::string backend;    // "io_uring" or "epoll"
    std::string offload = "off";  // TUN offloads: "off", "tcp", "tcp,udp" (priv::TunOffload)
    OffloadStats offload_stats;
    bool udp_offload = false;  // LoopConfig::udp_offload (config udp_offload)
    UdpOffloadStats udp_offload_stats;
    uint32_t workers = 1;  // worker threads (config workers)
    uint64_t cross_thread_copies = 0;  // packets one thread handed out for another (priv/worker_threads.hpp)
    std::vector<std::string> local;  // per link: bound address
    std::vector<std::string> remote;  // per link: configured remote (client), or ""
};

struct LinkStatus {
    std::string name;
    std::string state;    // down | handshaking | up | lossy | slow | fallback
    std::string reason;   // why (timeout, administratively down, handshake, ...)
    std::string admin;    // up | backup | down
    std::string local;    // bound address
    std::string peer;     // where packets go, or "-" when unknown
    bool has_rtt = false;
    double rtt_ms = 0;
    double rttvar_ms = 0;
    uint64_t bandwidth = 0;  // bandwidth_upload, bytes/s
    double weight = 0;       // its rate's share among primary links, 0..1
    uint32_t timeout_s = 0;
    double last_packet_age_s = -1;  // since the last authentic packet; -1 never
    uint64_t last_packet_unix = 0;
    double loss_pct = 0;     // of what we send, as the peer reports it
    double rx_loss_pct = 0;  // of what the peer sends us, as we measure it
    double tx_rate = 0, rx_rate = 0;  // bytes/s on the wire, over the last second
    double estimated_rate = 0;        // bytes/s the link delivers (core/delivery_rate.hpp); 0 unknown
    double effective_rate = 0;        // bytes/s the scheduler counts on (Tunnel::link_rate)
    LinkStats stats;
};

struct Status {
    StatusMeta meta;
    uint64_t now_unix = 0;
    std::string mode;    // client | server
    std::string tuntap;  // tun | tap
    uint32_t mtu = 0;
    TunnelStats tunnel;
    // The reorder figures are over the peer's counter spaces (one buffer
    // each, core/reorder_spaces.hpp): counters and held summed.
    ReorderStats reorder;
    size_t reorder_held = 0;
    double reorder_wait_ms = 0;
    size_t reorder_capacity = 0;      // room now, packets (0: off)
    size_t reorder_capacity_max = 0;  // the most it may grow to
    bool reorder_adaptive = false;    // the capacity follows the traffic (room to grow or shrink)
    size_t reorder_spaces = 0;        // peer counter spaces with a buffer in use (data within 10 s)
    std::vector<LinkStatus> links;
};

Status snapshot(const Tunnel& tunnel, const StatusMeta& meta, const Clock& clock);
std::string to_json(const Status& status);
std::string to_prometheus(const Status& status);
// A Prometheus label value with \, " and newline escaped.
std::string prometheus_label(std::string_view value);

}  // namespace mlvpn::core
