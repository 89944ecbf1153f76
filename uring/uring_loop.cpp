// SPDX-License-Identifier: BSD-2-Clause
// UringLoop: the worker's data path on one io_uring.
//
// Why it is shaped this way:
// - Every read owns a pool slot while it is in flight. The msghdr, iovec and
//   address storage a request lends to the kernel live in that slot's SlotOp,
//   in an array that never moves, so nothing changes under the kernel's feet.
//   The same SlotOp serves the slot's send later: a slot is in at most one
//   request at a time.
// - Reads go out in rounds, at most one round per fd at a time: n-1 reads
//   that never wait (RWF_NOWAIT, MSG_DONTWAIT: EAGAIN when nothing is
//   queued) and one plain read last. The kernel issues a round's SQEs in
//   order within one io_uring_enter, so the non-waiting reads drain what is
//   queued and only the last read can be left waiting; the next round goes
//   out once it has completed. A fd therefore never has two reads waiting.
//   That matters: `batch` plain reads waiting on one fd are all woken by each
//   packet (they poll the same wait queue); the losers re-poll and, after
//   enough lost races, io_uring hands them to io-wq worker threads that read
//   concurrently with the ring, reordering packets (seen in tests, with an
//   iou-wrk thread appearing) and burning CPU on every wakeup.
// - The round size adapts. A link socket's receive says whether more was
//   queued behind it (IORING_CQE_F_SOCK_NONEMPTY, 5.19): if any in a round
//   did, the next round is `batch`, otherwise a single waiting receive, so
//   sparse traffic never pays for receives failing with EAGAIN (nor the turns
//   their completions cost: idle latency). The TUN device says nothing of the
//   kind (nor does a kernel before 5.19): after a round where every read
//   brought a packet, `batch`; after one where only the waiting read did, and
//   the loop had slept for it (kSlept), a single waiting read again: sparse
//   traffic; otherwise twice what the round brought in (at least 1). A burst
//   gets full rounds from its second turn on. One turn delivers at most `batch`
//   packets per fd, so every per-turn vector has a fixed bound. With the pool
//   empty, rounds shrink or wait until buffers come back.
// - Everything a turn queues (re-armed reads, sends, TUN writes, polls) goes
//   to the kernel in the next turn's submit_and_wait: one io_uring_enter per
//   turn. The SQ holds more than a turn of a few links queues (kSqEntries),
//   so get_sqe() rarely has to submit early, and the CQ has room for a request
//   on every slot plus every poll, all in flight, so completions cannot
//   overflow.
// - Sends never wait for socket buffer space (MSG_DONTWAIT): a full socket
//   fails the send with EAGAIN, reported through on_send_error, as in the
//   epoll loop. A send parked on a full socket would be retried in whatever
//   order the wakeups come (measured: reversed), reordering the link's
//   packets, and would hold its slot meanwhile. TUN writes need no such flag:
//   the device takes or drops each packet at once. (RWF_NOWAIT would also
//   fail every write with EOPNOTSUPP on a kernel whose TUN lacks nowait.)
// - Watch fds use one-shot POLL_ADD, re-armed after the handler ran. That is
//   level-triggered like the epoll loop: a handler that reads only part of
//   what is queued is called again. Multishot poll fires only on new wakeups.
// - Teardown cancels every request and reaps them before the ring and the
//   pool go away, since the kernel uses a slot until its request completes.
//
// - With a vnet_hdr TUN device (LoopConfig::tun_vnet_hdr) a TUN read is a
//   READV into its slot and a 64 KB overflow buffer of its own (TunReader),
//   so a round is also limited by the overflow buffers (`batch`) and by the
//   slots a round of super-packets would need. TUN writes are not queued as
//   the handler makes them but held (Op::tun_queued) until the end of the
//   turn, when TunWriter coalesces them; a super-packet in a spare buffer
//   goes out as Op::tun_write_spare with the spare's index.
//
// - With UDP offload (LoopConfig::udp_offload) sends are not queued as the
//   handler makes them but held (Op::send_queued) until the end of the
//   turn, when each link's are cut into runs (core::UdpRun): a run of two or
//   more goes out as one SENDMSG with a UDP_SEGMENT control message, its
//   msghdr and iovec in a SendRecord (Op::send_run with the record's index),
//   a lone datagram as before from its slot. A run the kernel refuses
//   (gso_refused) comes back to the front of the link's queue and goes out
//   one by one in the next flush; the link sends singly from then on. A
//   receive is a RECVMSG into its slot and a 64 KB overflow buffer of its
//   own (LinkReader), so a round is also limited by the overflow buffers.
//
// What both loops do alike is not here: the checks on what the handler hands
// back (checked_io), a turn's input batches (turn_batches), the configuration
// and read-error rules (loop_common), the TUN offload (tun_offload).
//
// Multishot recvmsg/read with a provided-buffer ring is the next step for
// speed (RESEARCH.md). It fits this shape: arm_read() would arm one multishot
// request per fd and keep the buffer ring stocked from the pool instead of
// lending a slot per request, and finish_read() would find the slot from the
// CQE's buffer id instead of the user_data.
#include <linux/fs.h>  // RWF_NOWAIT
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "uring/buffer_pool.hpp"
#include "uring/checked_io.hpp"
#include "uring/link_offload.hpp"
#include "uring/loop.hpp"
#include "uring/loop_common.hpp"
#include "uring/ring.hpp"
#include "uring/tun_offload.hpp"
#include "uring/turn_batches.hpp"

namespace mlvpn::uring {
namespace {

using core::Buffer;
using core::LinkIndex;

constexpr unsigned kMaxEntries = 32768;  // IORING_MAX_ENTRIES
// The SQ: a turn's requests, more than a full turn of every fd of a few links
// queues (`batch` reads per fd, their sends and TUN writes). A bigger turn
// submits early (Ring::get_sqe). 64 KiB of SQEs, where one per slot would be
// 512 KiB of locked memory per thread (ring.hpp, priv/sandbox.hpp).
constexpr unsigned kSqEntries = 1024;
// How long teardown waits for cancelled requests. Measured on the real
// monotonic clock: the injected one may be a FakeClock that never moves.
constexpr std::chrono::seconds kTeardownWait{2};
// A wait longer than this slept: what it returned had not been there yet.
constexpr std::chrono::microseconds kSlept{30};

enum class Op : uint8_t {
    idle, tun_read, recv, send, tun_write, poll, cancel, tun_queued, tun_write_spare, send_queued, send_run
};

// Records for UDP_SEGMENT sends in flight. A turn sends at most a run per
// TUN super-packet or two (`batch` of them) per link; with none free, runs go
// out one datagram per send, which is correct, only slower.
constexpr uint32_t kGsoSendRecords = 256;

// user_data: the operation in the high half, the slot or watch index below.
constexpr uint64_t pack(Op op, uint32_t index) {
    return (uint64_t{static_cast<uint8_t>(op)} << 32) | index;
}
constexpr Op op_of(uint64_t user_data) { return static_cast<Op>(user_data >> 32); }
constexpr uint32_t index_of(uint64_t user_data) { return static_cast<uint32_t>(user_data); }

// What the ring is doing with one slot.
struct SlotOp {
    msghdr msg{};
    iovec iov[2]{};  // [1]: a vnet_hdr TUN read's overflow buffer
    core::Buffer* overflow = nullptr;  // a vnet_hdr TUN read's, from TunReader
    core::Endpoint name;  // recv: the source address; send: a copy of `to`
    UdpControl control;  // recv with LoopConfig::udp_offload: the UDP_GRO control message
    Op op = Op::idle;
    bool nowait = false;  // a read that fails with EAGAIN rather than wait
    LinkIndex link = 0;
    uint32_t generation = 0;  // recv, send, send_run: the link's socket it went to (ReadFd::generation)
};

// The TUN device or a link socket, read in rounds.
struct ReadFd {
    unsigned file = 0;       // fixed-file index
    uint32_t in_flight = 0;  // reads of the current round not yet reaped
    uint32_t issued = 0;     // size of the current round
    uint32_t got = 0;        // packets the current round brought in
    uint32_t round = 1;      // size of the next round
    // A link's receive in this round said more was queued behind it
    // (IORING_CQE_F_SOCK_NONEMPTY, Linux 5.19).
    bool more = false;
    // RWF_NOWAIT on a TUN device that does not support it (older kernels)
    // fails with EOPNOTSUPP; rounds are then single plain reads.
    bool nowait = true;
    bool open = true;  // a link whose socket was taken away (set_link_fd -1) is not read
    bool gso = true;   // UDP_SEGMENT not refused on this link's socket (LoopConfig::udp_offload)
    uint32_t generation = 0;  // a link: counts its sockets (set_link_fd), for link_quiet()
};

// A send the handler queued on a link, held for the end of the turn
// (LoopConfig::udp_offload).
struct QueuedSend {
    uint32_t index;     // pool slot
    uint32_t offset;    // the datagram in the slot, as the handler left it
    uint32_t length;
    core::Endpoint to;  // empty: connected socket
};

// One UDP_SEGMENT send in flight: what the kernel is lent, and the slots.
struct SendRecord {
    msghdr msg{};
    iovec iov[core::kMaxUdpSegments]{};
    uint32_t slots[core::kMaxUdpSegments]{};
    UdpControl control;
    core::Endpoint to;
    LinkIndex link = 0;
    uint32_t count = 0;  // 0: free
};

class UringLoop final : public Loop, private CheckedIo {
public:
    UringLoop(const LoopConfig& config, const core::Clock& clock, BufferPool pool, std::unique_ptr<Ring> ring)
        : CheckedIo(pool_, stats_, kMaxLinks, config.tun_fd >= 0),
          clock_(clock),
          batch_(config.batch),
          watch_fds_(config.watch_fds),
          pool_(std::move(pool)),
          ring_(std::move(ring)),
          slots_(std::make_unique<SlotOp[]>(pool_.slot_count())),
          poll_armed_(config.watch_fds.size(), false),
          batches_(pool_, stats_, batch_, kMaxLinks, config.watch_fds.size(),
                   config.tun_vnet_hdr ? size_t{batch_} * core::kMaxGsoSegments : 0) {
        // Registered files: the TUN device, the watched fds, then kMaxLinks
        // slots for links (empty ones -1), so a reload can fill them.
        unsigned file = 0;
        if (config.tun_fd >= 0) tun_ = ReadFd{.file = file++, .round = batch_};
        watch_base_ = file;
        link_base_ = watch_base_ + static_cast<unsigned>(config.watch_fds.size());
        for (size_t i = 0; i < config.link_fds.size(); ++i)
            links_.push_back(ReadFd{.file = link_base_ + static_cast<unsigned>(i), .round = batch_});
        update_gauges();
    }

    ~UringLoop() override { teardown(); }

    // The TUN offload's reader and writer (LoopConfig::tun_vnet_hdr): once,
    // before run().
    Status enable_tun_offload(bool udp);
    // UDP offload on the links (LoopConfig::udp_offload): once, before run().
    Status enable_udp_offload();

    Status run(Handler& handler) override;
    const char* name() const override { return "io_uring"; }
    const LoopStats& stats() const override { return stats_; }
    Status set_link_fd(LinkIndex link, int fd) override;
    bool link_quiet(LinkIndex link) const override;
    bool owns(const core::Buffer* buffer) const override { return pool_.owns(buffer); }

private:
    // CheckedIo
    bool taken(uint32_t index) const override { return slots_[index].op != Op::idle; }
    int queue_send(LinkIndex link, uint32_t index, const Buffer& buffer, const core::Endpoint* to) override;
    int queue_tun_write(uint32_t index, const Buffer& buffer) override;

    void start(io_uring_sqe* sqe, Op op, uint32_t index);
    // A slot's request goes to link `link`'s current socket (link_quiet()).
    void on_link(SlotOp& s, LinkIndex link) const {
        s.link = link;
        s.generation = links_[link].generation;
    }
    void finish(uint32_t index);
    bool arm_read(ReadFd& fd, std::optional<LinkIndex> link, bool nowait);
    void arm_round(ReadFd& fd, std::optional<LinkIndex> link);
    void arm_reads();
    void arm_polls();
    void complete(const io_uring_cqe& cqe);
    void finish_read(uint32_t index, int res, bool more);
    void finish_write(uint32_t index, int res);
    void finish_poll(uint32_t index, int res);
    void finish_spare_write(uint32_t index, int res);
    void flush_tun_writes();
    void flush_sends();
    void flush_link(LinkIndex link);
    int send_single(LinkIndex link, const QueuedSend& q);
    bool send_run(LinkIndex link, std::span<const QueuedSend> run, uint32_t segment);
    void finish_run(uint32_t record, int res);
    void drop_queued_sends();
    void read_failed(std::optional<LinkIndex> link, int error);
    void update_gauges();
    void teardown();

    const core::Clock& clock_;
    const uint32_t batch_;
    const std::vector<int> watch_fds_;
    LoopStats stats_;
    BufferPool pool_;
    std::unique_ptr<Ring> ring_;  // torn down in teardown(), before pool_
    std::unique_ptr<SlotOp[]> slots_;
    std::optional<ReadFd> tun_;
    std::vector<ReadFd> links_;
    unsigned watch_base_ = 0;
    unsigned link_base_ = 0;
    std::vector<bool> poll_armed_;
    uint32_t kernel_slots_ = 0;  // slots lent to requests in flight
    uint32_t polls_armed_ = 0;
    uint32_t arm_start_ = 0;  // rotates which fd gets buffers first
    // The last wait slept: what completed had to be waited for (sparse
    // traffic), rather than being there already.
    bool waited_ = false;
    TurnBatches batches_;  // one turn's harvest; uses pool_ and stats_
    std::optional<TunReader> reader_;  // a vnet_hdr TUN device only
    std::optional<TunWriter> writer_;
    uint32_t spare_writes_ = 0;  // Op::tun_write_spare in flight
    // LoopConfig::udp_offload only:
    std::optional<LinkReader> link_reader_;
    std::vector<std::vector<QueuedSend>> sends_;  // per link, this turn's, in order
    std::unique_ptr<SendRecord[]> records_;
    std::vector<uint32_t> free_records_;
    std::optional<Error> fatal_;

public:
    // The kernel flags a receive with more queued behind it
    // (IORING_CQE_F_SOCK_NONEMPTY); set once, before run().
    bool socket_nonempty = false;
};

// --- output (CheckedIo) ---------------------------------------------------

int UringLoop::queue_send(LinkIndex link, uint32_t index, const Buffer& buffer, const core::Endpoint* to) {
    if (link >= links_.size() || !links_[link].open) return EBADF;
    if (records_) {
        // Cut into runs with the rest of the turn's, in flush_sends().
        QueuedSend q{index, buffer.offset, buffer.length, {}};
        if (to != nullptr) q.to = *to;
        if (sends_.size() <= link) sends_.resize(link + 1);
        sends_[link].push_back(q);
        slots_[index].op = Op::send_queued;
        return 0;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) return EAGAIN;
    SlotOp& s = slots_[index];
    s.iov[0] = {pool_.slot_data(index) + buffer.offset, buffer.length};
    s.msg = {};
    s.msg.msg_iov = s.iov;
    s.msg.msg_iovlen = 1;
    if (to != nullptr && !to->empty()) {
        s.name = *to;
        s.msg.msg_name = &s.name.addr;
        s.msg.msg_namelen = to->len;
    }
    on_link(s, link);
    // MSG_DONTWAIT: a full socket buffer fails the send with EAGAIN (see the
    // top of the file) instead of parking it.
    io_uring_prep_sendmsg(sqe, static_cast<int>(links_[link].file), &s.msg, MSG_DONTWAIT);
    start(sqe, Op::send, index);
    return 0;
}

int UringLoop::queue_tun_write(uint32_t index, const Buffer& buffer) {
    if (writer_) {
        // Coalesced with the rest of the turn's, in flush_tun_writes().
        if (const int error = writer_->add(index, buffer); error != 0) return error;
        slots_[index].op = Op::tun_queued;
        return 0;
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) return EAGAIN;
    // A device without offloads takes only finished checksums.
    if (buffer.checksum_partial) finish_partial_checksum(pool_, index, buffer);
    io_uring_prep_write(sqe, static_cast<int>(tun_->file), pool_.slot_data(index) + buffer.offset, buffer.length, 0);
    start(sqe, Op::tun_write, index);
    return 0;
}

// --- requests -------------------------------------------------------------

void UringLoop::start(io_uring_sqe* sqe, Op op, uint32_t index) {
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, pack(op, index));
    slots_[index].op = op;
    ++kernel_slots_;
}

void UringLoop::finish(uint32_t index) {
    slots_[index].op = Op::idle;
    --kernel_slots_;
}

// Arms one read on the TUN device (no link) or a link socket. false when
// there is no buffer or no SQE.
bool UringLoop::arm_read(ReadFd& fd, std::optional<LinkIndex> link, bool nowait) {
    Buffer* b = pool_.acquire();
    if (b == nullptr) return false;
    // A vnet_hdr TUN read also needs an overflow buffer; taken before the
    // SQE, which could not be given back.
    Buffer* overflow = nullptr;
    if (!link && reader_) {
        overflow = reader_->acquire_overflow();
        if (overflow == nullptr) {
            pool_.release(b);
            return false;
        }
    }
    // A receive with UDP offload needs room for a coalesced 64 KB.
    Buffer* link_overflow = nullptr;
    if (link && link_reader_) {
        link_overflow = link_reader_->acquire_overflow();
        if (link_overflow == nullptr) {
            pool_.release(b);
            return false;
        }
    }
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) {
        if (overflow != nullptr) reader_->release_overflow(overflow);
        if (link_overflow != nullptr) link_reader_->release_overflow(link_overflow);
        pool_.release(b);
        return false;
    }
    const uint32_t index = b->index;  // fresh from acquire(): the pool's own
    SlotOp& s = slots_[index];
    s.overflow = overflow;
    if (overflow != nullptr) {
        reader_->prepare(*b, *overflow, s.iov);
        io_uring_prep_readv(sqe, static_cast<int>(fd.file), s.iov, 2, 0);
        if (nowait) sqe->rw_flags = RWF_NOWAIT;
        start(sqe, Op::tun_read, index);
    } else if (!link) {
        // TUN packets go in after the headroom, where core seals them in place.
        // The device has no file position: offset 0.
        io_uring_prep_read(sqe, static_cast<int>(fd.file), pool_.slot_data(index) + kHeadroom,
                           pool_.slot_size() - kHeadroom, 0);
        if (nowait) sqe->rw_flags = RWF_NOWAIT;
        start(sqe, Op::tun_read, index);
    } else if (link_overflow != nullptr) {
        link_reader_->prepare(*b, *link_overflow, s.msg, s.iov, s.name, s.control);
        s.overflow = link_overflow;
        on_link(s, *link);
        io_uring_prep_recvmsg(sqe, static_cast<int>(fd.file), &s.msg, nowait ? MSG_DONTWAIT : 0);
        start(sqe, Op::recv, index);
    } else {
        s.iov[0] = {pool_.slot_data(index) + kDatagramOffset, pool_.slot_size() - kDatagramOffset};
        s.name = {};
        s.msg = {};
        s.msg.msg_name = &s.name.addr;
        s.msg.msg_namelen = sizeof(s.name.addr);
        s.msg.msg_iov = s.iov;
        s.msg.msg_iovlen = 1;
        on_link(s, *link);
        io_uring_prep_recvmsg(sqe, static_cast<int>(fd.file), &s.msg, nowait ? MSG_DONTWAIT : 0);
        start(sqe, Op::recv, index);
    }
    s.nowait = nowait;
    ++fd.in_flight;
    return true;
}

// A round: the non-waiting reads first, the one that may wait last (see the
// top of the file). Shrinks to the buffers there are.
void UringLoop::arm_round(ReadFd& fd, std::optional<LinkIndex> link) {
    uint32_t n = fd.nowait ? fd.round : 1;
    if (pool_.available() < n) {
        ++stats_.pool_empty;
        n = pool_.available();
    }
    if (!link && reader_) {
        // No more super-packets than the pool has slots to split them into,
        // and one overflow buffer each (every read gets one: see arm_read).
        const uint32_t fit = reader_->reads_for(pool_.available());
        if (fit < n) ++stats_.pool_empty;
        n = std::min({n, fit, reader_->overflows_available()});
    }
    if (link && link_reader_) {
        // Likewise for coalesced receives, and no link takes more than its
        // share of the overflow buffers (every link's waiting receive holds one).
        const uint32_t fit = link_reader_->receives_for(pool_.available());
        if (fit < n) ++stats_.pool_empty;
        uint32_t open = 0;
        for (const ReadFd& l : links_) open += l.open ? 1 : 0;
        const uint32_t share = std::max(1u, link_reader_->overflow_count() / std::max(open, 1u));
        n = std::min({n, fit, share, link_reader_->overflows_available()});
    }
    fd.issued = 0;
    for (uint32_t i = 0; i < n; ++i) {
        if (!arm_read(fd, link, i + 1 < n)) return;  // the ring fails; the next wait says why
        ++fd.issued;
    }
}

void UringLoop::arm_reads() {
    const uint32_t nfds = static_cast<uint32_t>(links_.size()) + (tun_ ? 1 : 0);
    if (nfds == 0) return;
    // Start at a different fd each turn so that a nearly empty pool is not
    // always given to the same one.
    for (uint32_t k = 0; k < nfds; ++k) {
        const uint32_t i = (arm_start_ + k) % nfds;
        if (tun_ && i == 0) {
            if (tun_->in_flight == 0) arm_round(*tun_, std::nullopt);
        } else {
            const LinkIndex link = tun_ ? i - 1 : i;
            if (links_[link].open && links_[link].in_flight == 0) arm_round(links_[link], link);
        }
    }
    arm_start_ = (arm_start_ + 1) % nfds;
}

void UringLoop::arm_polls() {
    for (uint32_t i = 0; i < watch_fds_.size(); ++i) {
        if (poll_armed_[i]) continue;
        io_uring_sqe* sqe = ring_->get_sqe();
        if (sqe == nullptr) return;  // the ring is failing; the next wait says why
        io_uring_prep_poll_add(sqe, static_cast<int>(watch_base_ + i), POLLIN);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, pack(Op::poll, i));
        poll_armed_[i] = true;
        ++polls_armed_;
    }
}

// --- completions ----------------------------------------------------------

void UringLoop::complete(const io_uring_cqe& cqe) {
    const Op op = op_of(cqe.user_data);
    const uint32_t index = index_of(cqe.user_data);
    switch (op) {
        case Op::tun_read:
        case Op::recv:
        case Op::send:
        case Op::tun_write:
            // Only completions of requests we started carry these.
            if (index >= pool_.slot_count() || slots_[index].op != op) return;
            if (op == Op::tun_read || op == Op::recv)
                finish_read(index, cqe.res, (cqe.flags & IORING_CQE_F_SOCK_NONEMPTY) != 0);
            else
                finish_write(index, cqe.res);
            return;
        case Op::poll:
            if (index < poll_armed_.size() && poll_armed_[index]) finish_poll(index, cqe.res);
            return;
        case Op::tun_write_spare:
            if (writer_ && writer_->spare_out(index)) finish_spare_write(index, cqe.res);
            return;
        case Op::send_run:
            if (records_ && index < kGsoSendRecords && records_[index].count > 0) finish_run(index, cqe.res);
            return;
        case Op::idle:
        case Op::cancel:
        case Op::tun_queued:  // never submitted
        case Op::send_queued:
            return;
    }
}

void UringLoop::finish_read(uint32_t index, int res, bool more) {
    SlotOp& s = slots_[index];
    const bool is_tun = s.op == Op::tun_read;
    finish(index);
    Buffer* b = pool_.slot(index);
    std::optional<LinkIndex> link;
    if (!is_tun) link = s.link;
    ReadFd& fd = is_tun ? *tun_ : links_[s.link];
    const bool data = is_tun ? res > 0 : res >= 0;
    if (data) ++fd.got;
    if (more) fd.more = true;
    if (--fd.in_flight == 0) {
        // Round over: size the next one after this one's yield. A socket
        // says whether more is queued: without that, one waiting receive,
        // and no receive fails with EAGAIN at a low packet rate.
        if (is_tun && fd.got <= 1 && waited_)
            fd.round = 1;  // at most the waiting read's packet, which came after a wait: sparse traffic
        else if (is_tun || !socket_nonempty)
            fd.round = fd.got == fd.issued ? batch_ : std::clamp(2 * fd.got, 1u, batch_);
        else
            fd.round = fd.more ? batch_ : 1;
        fd.got = 0;
        fd.more = false;
    }

    if (s.overflow != nullptr && !is_tun) {
        // A receive with UDP offload: with data, the reader takes the slot.
        if (data) link_reader_->complete(s.link, b, s.overflow, static_cast<uint32_t>(res), s.msg);
        link_reader_->release_overflow(s.overflow);
        s.overflow = nullptr;
        if (data) return;
    } else if (s.overflow != nullptr) {
        // A vnet_hdr TUN read: with data, the reader takes the slot.
        if (data) reader_->complete(b, s.overflow, static_cast<uint32_t>(res));
        reader_->release_overflow(s.overflow);
        s.overflow = nullptr;
        if (data) return;
    } else if (data && is_tun) {
        batches_.add_tun(b, static_cast<uint32_t>(res));
        return;
    }
    if (data) {
        batches_.add_datagram(s.link, b, static_cast<uint32_t>(res), s.msg);
        return;
    }
    pool_.release(b);
    // Nothing queued for a non-waiting read; a zero-byte TUN read carries
    // nothing; a cancelled read was ours.
    if ((s.nowait && res == -EAGAIN) || res == 0 || res == -ECANCELED) return;
    if (s.nowait && is_tun && res == -EOPNOTSUPP) {
        fd.nowait = false;
        return;
    }
    read_failed(link, -res);
}

// A transient error is counted and the fd read again; the first fatal one
// ends run().
void UringLoop::read_failed(std::optional<LinkIndex> link, int error) {
    std::optional<Error> fatal = fatal_read_error("io_uring", link, error);
    if (!fatal)
        ++stats_.read_errors;
    else if (!fatal_)
        fatal_ = std::move(fatal);
}

void UringLoop::finish_write(uint32_t index, int res) {
    const SlotOp& s = slots_[index];
    const bool is_send = s.op == Op::send;
    const LinkIndex link = s.link;
    finish(index);
    pool_.release(pool_.slot(index));
    if (res >= 0) return;
    if (is_send)
        send_failed(link, -res);
    else
        tun_write_failed(-res);
}

void UringLoop::finish_spare_write(uint32_t index, int res) {
    writer_->done_spare(index);
    --spare_writes_;
    if (res < 0) tun_write_failed(-res);
}

// The turn's TUN writes, coalesced: one SQE per write; the slots whose
// packets were merged into another's go back to the pool now.
void UringLoop::flush_tun_writes() {
    if (!writer_ || writer_->empty()) return;
    const auto writes = writer_->coalesce();
    for (uint32_t index : writer_->absorbed()) {
        slots_[index].op = Op::idle;
        pool_.release(pool_.slot(index));
    }
    for (const TunWriter::Write& w : writes) {
        io_uring_sqe* sqe = ring_->get_sqe();
        if (sqe == nullptr) {
            // The ring is failing (the next wait says why): the packet is lost.
            if (w.spare) {
                writer_->done_spare(w.index);
            } else {
                slots_[w.index].op = Op::idle;
                pool_.release(pool_.slot(w.index));
            }
            tun_write_failed(EAGAIN);
            continue;
        }
        io_uring_prep_write(sqe, static_cast<int>(tun_->file), w.data, w.length, 0);
        if (w.spare) {
            sqe->flags |= IOSQE_FIXED_FILE;
            io_uring_sqe_set_data64(sqe, pack(Op::tun_write_spare, w.index));
            ++spare_writes_;
        } else {
            start(sqe, Op::tun_write, w.index);
        }
    }
}

// --- UDP offload: a turn's sends in runs -----------------------------------

void UringLoop::flush_sends() {
    for (LinkIndex link = 0; link < sends_.size(); ++link)
        if (!sends_[link].empty()) flush_link(link);
}

// The link's queue, in order, cut into runs for one destination each.
void UringLoop::flush_link(LinkIndex link) {
    auto& queue = sends_[link];
    const bool open = link < links_.size() && links_[link].open;
    const bool gso = open && links_[link].gso;
    size_t i = 0;
    while (i < queue.size()) {
        if (!open) {
            // The socket was taken away (set_link_fd -1) since they were queued.
            slots_[queue[i].index].op = Op::idle;
            pool_.release(pool_.slot(queue[i].index));
            send_failed(link, EBADF);
            ++i;
            continue;
        }
        size_t n = 1;
        core::UdpRun run;
        run.add(queue[i].length);
        while (gso && i + n < queue.size() && queue[i + n].to == queue[i].to && run.fits(queue[i + n].length)) {
            run.add(queue[i + n].length);
            ++n;
        }
        if (n == 1 || !send_run(link, std::span(queue).subspan(i, n), run.segment())) {
            for (size_t k = i; k < i + n; ++k) {
                if (const int error = send_single(link, queue[k]); error != 0) {
                    slots_[queue[k].index].op = Op::idle;
                    pool_.release(pool_.slot(queue[k].index));
                    send_failed(link, error);
                }
            }
        }
        i += n;
    }
    queue.clear();
}

// One datagram from its slot, as without UDP offload. 0 or an errno.
int UringLoop::send_single(LinkIndex link, const QueuedSend& q) {
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) return EAGAIN;
    SlotOp& s = slots_[q.index];
    s.iov[0] = {pool_.slot_data(q.index) + q.offset, q.length};
    s.msg = {};
    s.msg.msg_iov = s.iov;
    s.msg.msg_iovlen = 1;
    if (!q.to.empty()) {
        s.name = q.to;
        s.msg.msg_name = &s.name.addr;
        s.msg.msg_namelen = q.to.len;
    }
    on_link(s, link);
    io_uring_prep_sendmsg(sqe, static_cast<int>(links_[link].file), &s.msg, MSG_DONTWAIT);
    start(sqe, Op::send, q.index);
    return 0;
}

// A run of two or more as one UDP_SEGMENT send. false when no record or
// SQE is free: the caller sends them singly.
bool UringLoop::send_run(LinkIndex link, std::span<const QueuedSend> run, uint32_t segment) {
    if (free_records_.empty()) return false;
    io_uring_sqe* sqe = ring_->get_sqe();
    if (sqe == nullptr) return false;
    const uint32_t r = free_records_.back();
    free_records_.pop_back();
    SendRecord& rec = records_[r];
    rec.link = link;
    rec.count = static_cast<uint32_t>(run.size());
    for (size_t k = 0; k < run.size(); ++k) {
        // The kernel cuts the payload every `segment` bytes, not at the
        // iovec's boundaries: the slots need not be adjacent.
        rec.iov[k] = {pool_.slot_data(run[k].index) + run[k].offset, run[k].length};
        rec.slots[k] = run[k].index;
        slots_[run[k].index].op = Op::send_run;
        on_link(slots_[run[k].index], link);
        ++kernel_slots_;
    }
    rec.msg = {};
    rec.msg.msg_iov = rec.iov;
    rec.msg.msg_iovlen = run.size();
    rec.to = run[0].to;
    if (!rec.to.empty()) {
        rec.msg.msg_name = &rec.to.addr;
        rec.msg.msg_namelen = rec.to.len;
    }
    set_udp_segment(rec.msg, rec.control, static_cast<uint16_t>(segment));
    io_uring_prep_sendmsg(sqe, static_cast<int>(links_[link].file), &rec.msg, MSG_DONTWAIT);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, pack(Op::send_run, r));
    return true;
}

void UringLoop::finish_run(uint32_t record, int res) {
    SendRecord& rec = records_[record];
    const LinkIndex link = rec.link;
    const uint32_t count = rec.count;
    rec.count = 0;
    free_records_.push_back(record);
    kernel_slots_ -= count;
    if (res >= 0) {
        ++stats_.gso_sends;
        stats_.gso_segments += count;
        for (uint32_t k = 0; k < count; ++k) {
            slots_[rec.slots[k]].op = Op::idle;
            pool_.release(pool_.slot(rec.slots[k]));
        }
        return;
    }
    const int error = -res;
    if (gso_refused(error) && link < links_.size() && links_[link].open) {
        // The datagrams go again one by one, ahead of anything queued since
        // (completions are reaped before the handler runs); the link sends
        // singly from now on. Later runs of the same flush fail alike and
        // come back behind these, in order.
        if (links_[link].gso) {
            links_[link].gso = false;
            ++stats_.gso_refused;
            if (handler_ != nullptr) handler_->on_gso_refused(link, error);
        }
        if (sends_.size() <= link) sends_.resize(link + 1);
        auto& queue = sends_[link];
        for (uint32_t k = 0; k < count; ++k) {
            const uint32_t index = rec.slots[k];
            const auto& iov = rec.iov[k];
            const auto offset = static_cast<uint32_t>(static_cast<std::byte*>(iov.iov_base) - pool_.slot_data(index));
            queue.push_back(QueuedSend{index, offset, static_cast<uint32_t>(iov.iov_len), rec.to});
            slots_[index].op = Op::send_queued;
        }
        return;
    }
    for (uint32_t k = 0; k < count; ++k) {
        slots_[rec.slots[k]].op = Op::idle;
        pool_.release(pool_.slot(rec.slots[k]));
        send_failed(link, error);
    }
}

// Sends held for a flush that will not come (teardown).
void UringLoop::drop_queued_sends() {
    for (auto& queue : sends_) {
        for (const QueuedSend& q : queue) {
            slots_[q.index].op = Op::idle;
            pool_.release(pool_.slot(q.index));
        }
        queue.clear();
    }
}

void UringLoop::finish_poll(uint32_t index, int res) {
    poll_armed_[index] = false;
    --polls_armed_;
    if (res >= 0) {
        batches_.add_readable(watch_fds_[index]);
        return;
    }
    if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) return;
    if (!fatal_)
        fatal_ = Error{fmt::format("io_uring: poll on fd {}: {}", watch_fds_[index], strerror(-res))};
}

// --- reconfiguration ------------------------------------------------------

Status UringLoop::set_link_fd(LinkIndex link, int fd) {
    if (link > links_.size() || link >= kMaxLinks) {
        return fail(fmt::format("io_uring: link {} cannot be set (there are {})", link, links_.size()));
    }
    if (link == links_.size()) {
        links_.push_back(ReadFd{.file = link_base_ + link, .round = batch_, .open = false});
    }
    // In-flight requests keep the file they started with; from here on the
    // slot names the new socket.
    if (auto ok = ring_->update_file(links_[link].file, fd); !ok) return ok;
    ++links_[link].generation;
    // Reads parked on the old socket would wait for traffic that now goes
    // elsewhere: cancel them; the round re-arms on the new socket.
    for (uint32_t i = 0; i < pool_.slot_count(); ++i) {
        if (slots_[i].op != Op::recv || slots_[i].link != link) continue;
        io_uring_sqe* sqe = ring_->get_sqe();
        if (sqe == nullptr) break;
        io_uring_prep_cancel64(sqe, pack(Op::recv, i), 0);
        io_uring_sqe_set_data64(sqe, pack(Op::cancel, 0));
    }
    links_[link].open = fd >= 0;
    links_[link].gso = true;  // a new socket may take UDP_SEGMENT
    return {};
}

bool UringLoop::link_quiet(LinkIndex link) const {
    if (link >= links_.size()) return true;
    for (uint32_t i = 0; i < pool_.slot_count(); ++i) {
        const SlotOp& s = slots_[i];
        if ((s.op == Op::recv || s.op == Op::send || s.op == Op::send_run) && s.link == link &&
            s.generation != links_[link].generation) {
            return false;
        }
    }
    return true;
}

Status UringLoop::enable_tun_offload(bool udp) {
    // One overflow buffer per read a round may have in flight.
    return uring::enable_tun_offload(reader_, writer_, pool_, stats_, batches_, batch_, udp);
}

Status UringLoop::enable_udp_offload() {
    // A round's receives plus every link's waiting one.
    auto reader = LinkReader::create(pool_, stats_, batches_, batch_ + kMaxLinks);
    if (!reader) return tl::unexpected(reader.error());
    link_reader_.emplace(std::move(*reader));
    records_ = std::make_unique<SendRecord[]>(kGsoSendRecords);
    free_records_.reserve(kGsoSendRecords);
    for (uint32_t r = kGsoSendRecords; r-- > 0;) free_records_.push_back(r);
    sends_.resize(links_.size());
    return {};
}

// --- the turn -------------------------------------------------------------

void UringLoop::update_gauges() {
    stats_.submits = ring_->submit_calls();
    stats_.sqes = ring_->submitted();
    stats_.slots_free = pool_.available();
    stats_.slots_held = pool_.slot_count() - pool_.available() - kernel_slots_;
}

Status UringLoop::run(Handler& handler) {
    handler_ = &handler;
    const OnExit detach([this] {
        handler_ = nullptr;
        update_gauges();
    });

    if (fatal_) return tl::unexpected(*fatal_);
    core::Time deadline = handler.on_timer(*this);
    flush_sends();
    flush_tun_writes();
    arm_reads();
    arm_polls();
    while (handler.running()) {
        std::optional<core::Duration> timeout;
        if (deadline != core::kNever) timeout = deadline - clock_.now();
        // The monotonic clock, not the injected one (a FakeClock never moves).
        const auto before = std::chrono::steady_clock::now();
        if (auto r = ring_->submit_and_wait(timeout); !r) return tl::unexpected(r.error());
        waited_ = std::chrono::steady_clock::now() - before > kSlept;
        ++stats_.turns;
        ring_->for_each_completion([this](const io_uring_cqe& cqe) { complete(cqe); });
        if (fatal_) {
            batches_.drop();
            return tl::unexpected(*fatal_);
        }
        batches_.deliver(handler, *this);
        deadline = handler.on_timer(*this);
        flush_sends();
        flush_tun_writes();
        arm_reads();
        arm_polls();
        update_gauges();
    }
    // What the last turn queued (a goodbye, a reply to priv) still goes out.
    flush_sends();
    flush_tun_writes();
    if (auto r = ring_->submit(); !r) return tl::unexpected(r.error());
    return {};
}

// Cancels every request, then reaps until the kernel has let go of all slots:
// the pool must outlive the last request that touches it. Sends that could
// go out did so when they were submitted; only those waiting for socket
// buffer space are cancelled.
void UringLoop::teardown() {
    if (!ring_) return;
    batches_.drop();
    drop_queued_sends();
    if (writer_) {
        // Held for a flush that will not come (a fatal error ended the turn).
        for (uint32_t index : writer_->clear()) {
            slots_[index].op = Op::idle;
            pool_.release(pool_.slot(index));
        }
    }
    for (uint32_t i = 0; i < pool_.slot_count(); ++i) {
        const Op op = slots_[i].op;
        if (op == Op::idle || op == Op::send_run) continue;  // runs: by their record, below
        io_uring_sqe* sqe = ring_->get_sqe();
        if (sqe == nullptr) break;
        io_uring_prep_cancel64(sqe, pack(op, i), 0);
        io_uring_sqe_set_data64(sqe, pack(Op::cancel, 0));
    }
    for (uint32_t i = 0; i < poll_armed_.size(); ++i) {
        if (!poll_armed_[i]) continue;
        io_uring_sqe* sqe = ring_->get_sqe();
        if (sqe == nullptr) break;
        io_uring_prep_cancel64(sqe, pack(Op::poll, i), 0);
        io_uring_sqe_set_data64(sqe, pack(Op::cancel, 0));
    }
    for (uint32_t r = 0; records_ && r < kGsoSendRecords; ++r) {
        if (records_[r].count == 0) continue;
        io_uring_sqe* sqe = ring_->get_sqe();
        if (sqe == nullptr) break;
        io_uring_prep_cancel64(sqe, pack(Op::send_run, r), 0);
        io_uring_sqe_set_data64(sqe, pack(Op::cancel, 0));
    }
    // Spare writes are not cancelled: a TUN write never waits, so they are
    // complete already and only need reaping.
    const auto give_up = std::chrono::steady_clock::now() + kTeardownWait;
    while (kernel_slots_ + polls_armed_ + spare_writes_ > 0) {
        const core::Duration left = give_up - std::chrono::steady_clock::now();
        if (left <= core::Duration::zero()) break;
        if (!ring_->submit_and_wait(left)) break;
        ring_->for_each_completion([this](const io_uring_cqe& cqe) { complete(cqe); });
    }
    batches_.drop();  // reads that completed instead of being cancelled
    drop_queued_sends();  // runs refused while reaping
    // Requests the kernel still holds might write into their slots: keep the
    // memory mapped rather than risk it being reused.
    if (kernel_slots_ + spare_writes_ > 0) {
        pool_.leak();
        if (reader_) reader_->leak();
        if (writer_) writer_->leak();
        if (link_reader_) link_reader_->leak();
        (void)records_.release();  // what the kernel may still read
    }
    ring_.reset();
}

}  // namespace

// --- construction ---------------------------------------------------------

Result<std::unique_ptr<Loop>> make_uring_loop(const LoopConfig& config, const core::Clock& clock,
                                              UringUnavailable* why) {
    if (why != nullptr) why->unavailable = false;
    if (auto ok = check_config(config); !ok) return tl::unexpected(ok.error());
    auto pool = BufferPool::create(config.slot_size, config.slot_count);
    if (!pool) return tl::unexpected(pool.error());

    // Room for a request on every slot, a poll per watch fd, a write per
    // TUN spare buffer and slack (a run's send takes one SQE for several slots).
    const size_t wanted = size_t{config.slot_count} + config.watch_fds.size() + kTunWriteSpares + 8;
    RingOptions options;
    options.cq_entries = std::bit_ceil(static_cast<unsigned>(std::min<size_t>(wanted, kMaxEntries)));
    options.entries = std::min(options.cq_entries, kSqEntries);
    // SINGLE_ISSUER and DEFER_TASKRUN (6.1): completions are posted only when
    // this thread waits, in a batch, with no interrupts; COOP_TASKRUN (5.19)
    // for kernels without DEFER_TASKRUN; SUBMIT_ALL (5.18): a bad SQE does
    // not hold back the rest of the batch.
    options.optional_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                             IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
    // Disabled until it is restricted to what the loop issues (below).
    options.start_disabled = true;
    int setup_errno = 0;
    auto ring = Ring::create(options, &setup_errno);
    if (!ring) {
        // EINVAL: no IORING_SETUP_R_DISABLED (before 5.10). A ring that cannot
        // be restricted would let a compromised worker around its seccomp
        // filter: the epoll loop is used instead. ENOMEM: the ring does not
        // fit the user's locked memory (ring.cpp says so), as in a container
        // whose hard RLIMIT_MEMLOCK is 64 KiB: the epoll loop needs none.
        if (why != nullptr)
            why->unavailable = setup_errno == EPERM || setup_errno == ENOSYS || setup_errno == EACCES ||
                               setup_errno == EINVAL || setup_errno == ENOMEM;
        return tl::unexpected(ring.error());
    }
    // Every opcode the loop issues, and the only ones its ring accepts:
    // READV only for a vnet_hdr TUN device.
    struct Needed {
        int op;
        const char* name;
    };
    std::vector<Needed> needed = {
        {IORING_OP_READ, "READ"},         {IORING_OP_WRITE, "WRITE"},
        {IORING_OP_RECVMSG, "RECVMSG"},   {IORING_OP_SENDMSG, "SENDMSG"},
        {IORING_OP_POLL_ADD, "POLL_ADD"}, {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
    };
    const bool offload = config.tun_fd >= 0 && config.tun_vnet_hdr;
    if (offload) needed.push_back({IORING_OP_READV, "READV"});
    for (const auto& need : needed) {
        if (!(*ring)->supports(need.op)) {
            // Too old to be useful (before 5.6): the epoll loop will do.
            if (why != nullptr) why->unavailable = true;
            return fail(fmt::format("io_uring: the kernel does not support IORING_OP_{}", need.name));
        }
    }

    // The order UringLoop expects: TUN, watched fds, then kMaxLinks link slots.
    std::vector<int> files;
    if (config.tun_fd >= 0) files.push_back(config.tun_fd);
    files.insert(files.end(), config.watch_fds.begin(), config.watch_fds.end());
    files.insert(files.end(), config.link_fds.begin(), config.link_fds.end());
    files.resize(files.size() + (kMaxLinks - config.link_fds.size()), -1);
    if (auto ok = (*ring)->register_files(files); !ok) return tl::unexpected(ok.error());

    // IORING_CQE_F_SOCK_NONEMPTY came with Linux 5.19, as did IORING_OP_SOCKET,
    // which the probe shows (the flag itself cannot be probed).
    const bool socket_nonempty = (*ring)->supports(IORING_OP_SOCKET);

    // From here on the ring accepts only the opcodes in `needed`, on fixed files or
    // none, and FILES_UPDATE (set_link_fd) as its one registration.
    RingRestrictions allowed;
    for (const auto& need : needed) allowed.sqe_ops.push_back(static_cast<uint8_t>(need.op));
    allowed.sqe_flags = IOSQE_FIXED_FILE;
    allowed.register_ops = {IORING_REGISTER_FILES_UPDATE};
    if (auto ok = (*ring)->restrict_and_enable(allowed); !ok) return tl::unexpected(ok.error());

    auto loop = std::make_unique<UringLoop>(config, clock, std::move(*pool), std::move(*ring));
    loop->socket_nonempty = socket_nonempty;
    if (offload)
        if (auto ok = loop->enable_tun_offload(config.tun_uso); !ok) return tl::unexpected(ok.error());
    if (config.udp_offload)
        if (auto ok = loop->enable_udp_offload(); !ok) return tl::unexpected(ok.error());
    return loop;
}

}  // namespace mlvpn::uring
