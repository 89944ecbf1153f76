// SPDX-License-Identifier: BSD-2-Clause
// The worker's event loop: one interface, two implementations.
//
// UringLoop drives the TUN device, every link socket and the worker's few
// other descriptors through one io_uring, with all the SQEs of a loop turn
// submitted by a single io_uring_enter. EpollLoop is the fallback for kernels
// where io_uring is unavailable (EPERM/ENOSYS from io_uring_setup, e.g.
// kernel.io_uring_disabled=2, or ENOMEM: no locked memory left for the ring);
// it batches with recvmmsg/sendmmsg.
//
// A loop turn: wait for completions (or the next timer deadline) -> hand the
// TUN packets and each link's datagrams to the Handler as batches -> run due
// timers -> re-arm reads -> submit everything queued through core::Io.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/buffer.hpp"
#include "core/clock.hpp"
#include "core/io.hpp"
#include "core/result.hpp"

namespace mlvpn::uring {

// Links a loop can ever hold (live reloads add links up to this).
inline constexpr uint32_t kMaxLinks = 64;

// What the loop drives. All Buffers passed in become the handler's: it must
// hand each one back through io (send, write_tun or release).
class Handler {
public:
    virtual ~Handler() = default;
    // Packets read from the TUN/TAP device, at offset kHeadroom.
    virtual void on_tun(std::span<core::Buffer*> packets, core::Io& io) = 0;
    // Datagrams received on link `link`, at offset core::wire::kDatagramOffset.
    virtual void on_datagrams(core::LinkIndex link, std::span<core::Datagram> datagrams,
                              core::Io& io) = 0;
    // A send on `link` failed with errno `error` (after the buffer was
    // released by the loop). For counters and logging only.
    virtual void on_send_error(core::LinkIndex link, int error) = 0;
    // A TUN write failed with errno `error`.
    virtual void on_tun_write_error(int error) = 0;
    // The kernel refused a UDP_SEGMENT send on `link` with errno `error`
    // (LoopConfig::udp_offload): the loop sends that link's datagrams one
    // per send from now on (until its socket is replaced) and has resent the
    // run's datagrams so. Called once per socket, for the log.
    virtual void on_gso_refused(core::LinkIndex /*link*/, int /*error*/) {}
    // Runs the timers that are due; returns the next deadline (core::kNever
    // for none). Called every turn after the batches.
    virtual core::Time on_timer(core::Io& io) = 0;
    // One of LoopConfig::watch_fds is readable (or hung up).
    virtual void on_readable(int fd, core::Io& io) = 0;
    // false ends run().
    virtual bool running() const = 0;
};

struct LoopConfig {
    int tun_fd = -1;
    // The TUN device was opened with IFF_VNET_HDR (priv/tun.hpp): every read
    // brings a virtio_net_hdr and maybe a super-packet of up to 64 KB, which
    // the loop splits into packets for the handler (each in its own slot, at
    // kHeadroom, as without it); every write carries the header, and what
    // the handler writes in a turn is coalesced first (uring/tun_offload.hpp).
    // The handler sees no difference, except that a TUN write needs 10
    // bytes before its packet (EINVAL otherwise). Costs 64 KB per TUN read
    // in flight (`batch` of them; one for epoll) and kTunWriteSpares x 64 KB.
    bool tun_vnet_hdr = false;
    // The device took USO as well: UDP runs are coalesced too.
    bool tun_uso = false;
    // UDP segmentation offload on the link sockets (docs/fastpath.md, "The
    // link side"): a turn's datagrams for one link and destination go out
    // in runs of equal size, one sendmsg with a UDP_SEGMENT control message
    // each; and every receive has room for a UDP_GRO receive of up to 64 KB
    // (for sockets [priv] set UDP_GRO on), which the loop splits back into
    // one datagram per slot. The handler sees no difference. Costs a 64 KB
    // buffer per receive that may be in flight (io_uring: `batch` +
    // kMaxLinks, shared by the links; epoll: `batch`), mapped but touched
    // only by coalesced receives, and on io_uring 360 KB of send records.
    bool udp_offload = false;
    std::vector<int> link_fds;  // index = core::LinkIndex
    std::vector<int> watch_fds;  // priv channel, signalfd, ...: readability only
    uint32_t slot_size = 2048;  // bytes per buffer: kHeadroom + largest payload
    uint32_t slot_count = 1024;  // buffers in the pool
    uint32_t batch = 32;  // reads armed per fd per turn (io_uring), datagrams per recvmmsg (epoll)
};

// Counters for the worker's status and benchmarks. Monotonic except the two
// gauges at the end.
struct LoopStats {
    uint64_t turns = 0;       // loop turns (one wait each)
    uint64_t submits = 0;     // io_uring_enter calls that submitted work; epoll:
                              // sendmmsg/write calls
    uint64_t sqes = 0;        // SQEs submitted; epoll: messages handed to those calls
    uint64_t tun_reads = 0;   // packets read from the TUN device (segments of super-packets each)
    uint64_t datagrams = 0;   // datagrams received on links (truncated ones excluded)
    uint64_t pool_empty = 0;  // times a buffer was wanted and the pool had none
    uint64_t truncated = 0;   // datagrams dropped because they did not fit a slot
    uint64_t read_errors = 0; // transient read/recv errors (ICMP errors, ENOBUFS, ...)
    uint64_t rejected = 0;    // buffers the handler handed back wrongly (not its own,
                              // twice, bad link or bounds): ignored or dropped
    // LoopConfig::tun_vnet_hdr only:
    uint64_t tun_super_reads = 0;      // reads that brought a super-packet (GSO)
    uint64_t tun_bad_reads = 0;        // reads dropped: header or super-packet refused (core::GsoError)
    uint64_t tun_split_no_buffer = 0;  // reads dropped: too few free slots for their segments
    uint64_t tun_super_writes = 0;     // super-packets written (GRO)
    uint64_t tun_merged = 0;           // packets written as part of another's super-packet
    // LoopConfig::udp_offload only:
    uint64_t gso_sends = 0;       // sends that carried a run of datagrams (UDP_SEGMENT)
    uint64_t gso_segments = 0;    // datagrams those sends carried
    uint64_t gso_refused = 0;     // links (sockets) whose kernel refused UDP_SEGMENT: sent singly since
    uint64_t gro_receives = 0;    // receives that brought several coalesced datagrams (UDP_GRO)
    uint64_t gro_segments = 0;    // datagrams those receives brought
    uint64_t gro_dropped = 0;     // receives dropped: malformed (core::UdpGroError, control message)
    uint64_t gro_no_buffer = 0;   // datagrams of coalesced receives dropped: no free slot
    uint32_t slots_free = 0;  // gauge: buffers in the pool
    uint32_t slots_held = 0;  // gauge: buffers out with the handler

    // Sums another loop's (a worker's threads, for the status).
    LoopStats& operator+=(const LoopStats& o);
};

class Loop {
public:
    virtual ~Loop() = default;
    // Runs until handler.running() turns false or a fatal error (returned).
    virtual Status run(Handler& handler) = 0;
    virtual const char* name() const = 0;  // "io_uring" or "epoll"
    // Updated every turn; gauges are current after run() returns.
    virtual const LoopStats& stats() const = 0;
    // Gives link `link` a new socket (a reload): `link` is an existing link
    // or the next index (< kMaxLinks); fd -1 takes the link's socket away.
    // Reads still waiting on the old socket are cancelled (their buffers come
    // back to the pool); datagrams it already delivered stay delivered. The
    // loop does not own descriptors: the caller keeps `fd` open while the
    // loop uses it, and may close the old one as soon as this returns (the
    // socket itself stays open until link_quiet()).
    virtual Status set_link_fd(core::LinkIndex link, int fd) = 0;
    // Whether no request this loop started on a socket link `link` had
    // before its current one (set_link_fd) is still in flight. Until then the
    // kernel holds that socket open, bound to its port, even once the caller
    // has closed its descriptor: a fresh socket on the same port must wait
    // (priv/worker.cpp, ask_renewal). The epoll loop starts nothing: true.
    virtual bool link_quiet(core::LinkIndex link) const = 0;
    // Whether `buffer` is one of this loop's (its pool's), in or out. The
    // only member another thread may call while the loop runs: a worker
    // thread hands a buffer it got from another thread's loop back to that
    // one (priv/worker_threads.hpp).
    virtual bool owns(const core::Buffer* buffer) const = 0;
};

// Fails with `unavailable` set when the kernel refuses io_uring (or has no
// locked memory left for the ring), so the caller can fall back; other
// failures are real errors.
struct UringUnavailable {
    bool unavailable = false;
};
Result<std::unique_ptr<Loop>> make_uring_loop(const LoopConfig& config, const core::Clock& clock,
                                              UringUnavailable* why = nullptr);
Result<std::unique_ptr<Loop>> make_epoll_loop(const LoopConfig& config, const core::Clock& clock);

}  // namespace mlvpn::uring
