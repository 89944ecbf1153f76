// SPDX-License-Identifier: BSD-2-Clause
// EpollLoop: the fallback data path for kernels without a usable io_uring.
//
// Same contract and turn as UringLoop, with readiness instead of completions:
// - Level-triggered epoll. Per readiness and turn, up to `batch` read()s from
//   the TUN device (it has no mmsg) and one recvmmsg of `batch` per link, so
//   a busy fd cannot starve the others and what is left is reported again.
// - Sends are queued per link and flushed at the end of the turn with
//   sendmmsg, TUN writes with one write() each: the handler's whole turn of
//   output costs one syscall per link (plus one per TUN packet).
// - When the pool is empty the input fds are taken out of the interest set
//   (events = 0) until buffers come back; level-triggered readiness would
//   otherwise wake the loop in a busy spin it could do nothing about.
// - Link sockets are read and written with MSG_DONTWAIT; the TUN fd is set to
//   O_NONBLOCK, as read() takes no flags.
// - With a vnet_hdr TUN device (LoopConfig::tun_vnet_hdr) each TUN read is a
//   readv into a slot and the one overflow buffer (reads are synchronous, so
//   one is enough), split by TunReader; TUN writes are coalesced by TunWriter
//   when the turn's output is flushed.
// - With UDP offload (LoopConfig::udp_offload) each link's queue is cut into
//   runs (core::UdpRun) when it is flushed: one sendmmsg entry per run, with
//   an iovec entry per datagram and, for two or more, a UDP_SEGMENT control
//   message. A run the kernel refuses (gso_refused) is sent again, with the
//   rest of the queue, one datagram per entry, and the link sends singly from
//   then on. Each recvmmsg entry gets its slot and a 64 KB overflow buffer
//   (`batch` of them: receives are synchronous), split by LinkReader.
// What both loops do alike is not here: the checks on what the handler hands
// back (checked_io), a turn's input batches (turn_batches), the configuration
// and read-error rules (loop_common).
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "priv/fd.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/checked_io.hpp"
#include "uring/link_offload.hpp"
#include "uring/loop.hpp"
#include "uring/loop_common.hpp"
#include "uring/tun_offload.hpp"
#include "uring/turn_batches.hpp"

namespace mlvpn::uring {
namespace {

using core::Buffer;
using core::LinkIndex;

constexpr size_t kMaxMmsg = 1024;  // UIO_MAXIOV: the most sendmmsg takes at once
// Hard (non-EAGAIN) send errors tolerated per link and flush before the rest
// of the queue is dropped: a one-shot ICMP error costs one datagram, a
// firewall that rejects everything does not cost a syscall per datagram.
constexpr int kMaxHardSendErrors = 4;

enum class Source : uint8_t { tun, link, watch };

constexpr uint64_t pack(Source s, uint32_t index) {
    return (uint64_t{static_cast<uint8_t>(s)} << 32) | index;
}

struct PendingSend {
    uint32_t index;
    core::Endpoint to;  // empty: connected socket
};

// One sendmmsg entry of a link's flush: `count` datagrams of the queue from
// `first`, a UDP_SEGMENT run when count > 1.
struct TxEntry {
    uint32_t first;
    uint32_t count;
};

class EpollLoop final : public Loop, private CheckedIo {
public:
    EpollLoop(const LoopConfig& config, const core::Clock& clock, BufferPool pool, Fd epoll)
        : CheckedIo(pool_, stats_, kMaxLinks, config.tun_fd >= 0),
          clock_(clock),
          batch_(config.batch),
          tun_fd_(config.tun_fd),
          link_fds_(config.link_fds),
          watch_fds_(config.watch_fds),
          pool_(std::move(pool)),
          epoll_(std::move(epoll)),
          batches_(pool_, stats_, batch_, kMaxLinks, watch_fds_.size(),
                   config.tun_vnet_hdr ? size_t{batch_} * core::kMaxGsoSegments : 0),
          queued_(pool_.slot_count(), false) {
        const uint32_t slots = pool_.slot_count();
        events_.resize(1 + kMaxLinks + watch_fds_.size());
        rx_msgs_.resize(batch_);
        rx_iovs_.resize(batch_);
        rx_iovs2_.resize(batch_);
        rx_names_.resize(batch_);
        rx_slots_.resize(batch_);
        sends_.resize(kMaxLinks);
        for (auto& q : sends_) q.reserve(slots);
        tun_writes_.reserve(slots);
        tx_msgs_.resize(slots);
        tx_iovs_.resize(slots);
        update_gauges();
    }

    // The TUN offload's reader and writer (LoopConfig::tun_vnet_hdr): once,
    // before run().
    Status enable_tun_offload(bool udp);
    // UDP offload on the links (LoopConfig::udp_offload): once, before run().
    Status enable_udp_offload();

    Status run(Handler& handler) override;
    const char* name() const override { return "epoll"; }
    const LoopStats& stats() const override { return stats_; }
    Status set_link_fd(LinkIndex link, int fd) override;
    bool link_quiet(LinkIndex /*link*/) const override { return true; }
    bool owns(const core::Buffer* buffer) const override { return pool_.owns(buffer); }

private:
    // CheckedIo
    bool taken(uint32_t index) const override { return queued_[index]; }
    int queue_send(LinkIndex link, uint32_t index, const Buffer& buffer, const core::Endpoint* to) override;
    int queue_tun_write(uint32_t index, const Buffer& buffer) override;

    void read_tun();
    void receive(LinkIndex link);
    void read_failed(std::optional<LinkIndex> link, int error);
    void flush();
    void flush_link(LinkIndex link);
    size_t build_entries(LinkIndex link, size_t from, bool gso);
    void flush_tun();
    void done_sending(uint32_t index);
    Status set_inputs(bool on);
    void update_gauges();

    const core::Clock& clock_;
    const uint32_t batch_;
    const int tun_fd_;
    std::vector<int> link_fds_;  // -1: a link without a socket (set_link_fd)
    const std::vector<int> watch_fds_;
    LoopStats stats_;
    BufferPool pool_;
    Fd epoll_;
    bool inputs_on_ = true;
    std::vector<epoll_event> events_;

    TurnBatches batches_;  // one turn's harvest; uses pool_ and stats_
    std::optional<TunReader> reader_;  // a vnet_hdr TUN device only
    std::optional<TunWriter> writer_;
    std::vector<mmsghdr> rx_msgs_;
    std::vector<iovec> rx_iovs_;
    struct IovPair {
        iovec iov[2];
    };
    std::vector<IovPair> rx_iovs2_;  // udp_offload: per entry, the slot and the overflow buffer
    std::vector<core::Endpoint> rx_names_;
    std::vector<Buffer*> rx_slots_;

    // Output of the turn; every entry holds a distinct slot, so the queues
    // are bounded by the pool.
    std::vector<bool> queued_;
    std::vector<std::vector<PendingSend>> sends_;
    std::vector<uint32_t> tun_writes_;
    std::vector<mmsghdr> tx_msgs_;
    std::vector<iovec> tx_iovs_;
    // LoopConfig::udp_offload only:
    std::optional<LinkReader> link_reader_;
    std::vector<Buffer*> rx_overflows_;
    std::vector<UdpControl> rx_controls_;
    std::vector<TxEntry> tx_entries_;
    std::vector<UdpControl> tx_controls_;
    std::vector<bool> gso_;  // per link: UDP_SEGMENT not refused on its socket

    std::optional<Error> fatal_;
};

// --- input ----------------------------------------------------------------

Status EpollLoop::enable_tun_offload(bool udp) {
    // Reads are synchronous: one overflow buffer is enough.
    return uring::enable_tun_offload(reader_, writer_, pool_, stats_, batches_, 1, udp);
}

Status EpollLoop::enable_udp_offload() {
    auto reader = LinkReader::create(pool_, stats_, batches_, batch_);
    if (!reader) return tl::unexpected(reader.error());
    link_reader_.emplace(std::move(*reader));
    rx_overflows_.resize(batch_);
    rx_controls_.resize(batch_);
    const uint32_t slots = pool_.slot_count();
    tx_entries_.reserve(slots);
    tx_controls_.resize(slots);
    gso_.assign(kMaxLinks, true);
    return {};
}

void EpollLoop::read_tun() {
    // With offload, no more reads than the pool has slots for their
    // segments (at least one).
    const uint32_t reads = reader_ ? std::min(batch_, reader_->reads_for(pool_.available())) : batch_;
    for (uint32_t k = 0; k < reads; ++k) {
        Buffer* b = pool_.acquire();
        if (b == nullptr) {
            ++stats_.pool_empty;
            return;
        }
        ssize_t n;
        Buffer* overflow = nullptr;
        if (reader_) {
            // The one there is: reads are synchronous, so it is always back.
            overflow = reader_->acquire_overflow();
            if (overflow == nullptr) {
                pool_.release(b);
                return;
            }
            iovec iov[2];
            reader_->prepare(*b, *overflow, iov);
            n = ::readv(tun_fd_, iov, 2);
        } else {
            n = ::read(tun_fd_, pool_.slot_data(b->index) + kHeadroom, pool_.slot_size() - kHeadroom);
        }
        const int error = errno;
        if (overflow != nullptr) {
            if (n > 0) reader_->complete(b, overflow, static_cast<uint32_t>(n));
            reader_->release_overflow(overflow);
            if (n > 0) continue;
        } else if (n > 0) {
            batches_.add_tun(b, static_cast<uint32_t>(n));
            continue;
        }
        pool_.release(b);
        if (n == 0 || error == EINTR) continue;  // a zero-byte read carries nothing
        if (error == EAGAIN || error == EWOULDBLOCK) return;
        read_failed(std::nullopt, error);
        if (fatal_) return;
    }
}

void EpollLoop::receive(LinkIndex link) {
    uint32_t count = 0;
    // With UDP offload, no more receives than the pool has slots for when
    // each brings 64 KB of coalesced datagrams (at least one).
    const uint32_t want = link_reader_ ? std::min(batch_, link_reader_->receives_for(pool_.available())) : batch_;
    while (count < want) {
        Buffer* b = pool_.acquire();
        if (b == nullptr) {
            ++stats_.pool_empty;
            break;
        }
        rx_slots_[count] = b;
        if (link_reader_) {
            // As many overflow buffers as entries: always all back here.
            Buffer* overflow = link_reader_->acquire_overflow();
            if (overflow == nullptr) {
                pool_.release(b);
                break;
            }
            rx_overflows_[count] = overflow;
            link_reader_->prepare(*b, *overflow, rx_msgs_[count].msg_hdr, rx_iovs2_[count].iov, rx_names_[count],
                                  rx_controls_[count]);
            rx_msgs_[count].msg_len = 0;
            ++count;
            continue;
        }
        rx_iovs_[count] = {pool_.slot_data(b->index) + kDatagramOffset, pool_.slot_size() - kDatagramOffset};
        rx_names_[count] = {};
        msghdr& h = rx_msgs_[count].msg_hdr;
        h = {};
        h.msg_name = &rx_names_[count].addr;
        h.msg_namelen = sizeof(rx_names_[count].addr);
        h.msg_iov = &rx_iovs_[count];
        h.msg_iovlen = 1;
        rx_msgs_[count].msg_len = 0;
        ++count;
    }
    if (count == 0) return;

    const int n = recvmmsg(link_fds_[link], rx_msgs_.data(), count, MSG_DONTWAIT, nullptr);
    const int error = errno;
    const uint32_t got = n > 0 ? static_cast<uint32_t>(n) : 0;
    for (uint32_t k = 0; k < got; ++k) {
        if (link_reader_)
            link_reader_->complete(link, rx_slots_[k], rx_overflows_[k], rx_msgs_[k].msg_len, rx_msgs_[k].msg_hdr);
        else
            batches_.add_datagram(link, rx_slots_[k], rx_msgs_[k].msg_len, rx_msgs_[k].msg_hdr);
    }
    for (uint32_t k = got; k < count; ++k) pool_.release(rx_slots_[k]);
    if (link_reader_)
        for (uint32_t k = 0; k < count; ++k) link_reader_->release_overflow(rx_overflows_[k]);
    if (n < 0 && error != EAGAIN && error != EWOULDBLOCK && error != EINTR) read_failed(link, error);
}

// A transient error is counted and the fd read again; the first fatal one
// ends run().
void EpollLoop::read_failed(std::optional<LinkIndex> link, int error) {
    std::optional<Error> fatal = fatal_read_error("epoll loop", link, error);
    if (!fatal)
        ++stats_.read_errors;
    else if (!fatal_)
        fatal_ = std::move(fatal);
}

// --- output ---------------------------------------------------------------

// CheckedIo: what the handler hands over waits for the end of the turn.
int EpollLoop::queue_send(LinkIndex link, uint32_t index, const Buffer&, const core::Endpoint* to) {
    if (link >= link_fds_.size() || link_fds_[link] < 0) return EBADF;
    PendingSend p{index, {}};
    if (to != nullptr) p.to = *to;
    queued_[index] = true;
    sends_[link].push_back(p);
    return 0;
}

int EpollLoop::queue_tun_write(uint32_t index, const Buffer& buffer) {
    if (writer_) {
        if (const int error = writer_->add(index, buffer); error != 0) return error;
    } else {
        // A device without offloads takes only finished checksums.
        if (buffer.checksum_partial) finish_partial_checksum(pool_, index, buffer);
        tun_writes_.push_back(index);
    }
    queued_[index] = true;
    return 0;
}

void EpollLoop::done_sending(uint32_t index) {
    queued_[index] = false;
    pool_.release(pool_.slot(index));
}

// Lays out the queue of `link` from `from` on as sendmmsg entries, in
// tx_msgs_ (entry e) and tx_iovs_ (datagram i of the queue): one datagram
// per entry, or runs for one destination each when `gso`. Returns the
// number of entries; tx_entries_ says which datagrams each carries.
size_t EpollLoop::build_entries(LinkIndex link, size_t from, bool gso) {
    const auto& queue = sends_[link];
    for (size_t i = from; i < queue.size(); ++i) {
        const Buffer* b = pool_.slot(queue[i].index);
        tx_iovs_[i] = {pool_.slot_data(queue[i].index) + b->offset, b->length};
    }
    tx_entries_.clear();
    size_t i = from;
    while (i < queue.size()) {
        uint32_t n = 1;
        core::UdpRun run;
        run.add(static_cast<uint32_t>(tx_iovs_[i].iov_len));
        while (gso && i + n < queue.size() && queue[i + n].to == queue[i].to &&
               run.fits(static_cast<uint32_t>(tx_iovs_[i + n].iov_len))) {
            run.add(static_cast<uint32_t>(tx_iovs_[i + n].iov_len));
            ++n;
        }
        const size_t e = tx_entries_.size();
        tx_entries_.push_back({static_cast<uint32_t>(i), n});
        msghdr& h = tx_msgs_[e].msg_hdr;
        h = {};
        // The kernel cuts a run's payload every `segment` bytes, not at the
        // iovec's boundaries: the slots need not be adjacent.
        h.msg_iov = &tx_iovs_[i];
        h.msg_iovlen = n;
        if (!queue[i].to.empty()) {
            h.msg_name = const_cast<sockaddr*>(&queue[i].to.addr.sa);
            h.msg_namelen = queue[i].to.len;
        }
        if (n > 1) set_udp_segment(h, tx_controls_[e], static_cast<uint16_t>(run.segment()));
        i += n;
    }
    return tx_entries_.size();
}

void EpollLoop::flush_link(LinkIndex link) {
    auto& queue = sends_[link];
    if (!link_reader_) {
        // Without UDP offload: one entry per datagram, entry i = datagram i.
        for (size_t i = 0; i < queue.size(); ++i) {
            const PendingSend& p = queue[i];
            const Buffer* b = pool_.slot(p.index);
            tx_iovs_[i] = {pool_.slot_data(p.index) + b->offset, b->length};
            msghdr& h = tx_msgs_[i].msg_hdr;
            h = {};
            h.msg_iov = &tx_iovs_[i];
            h.msg_iovlen = 1;
            if (!p.to.empty()) {
                h.msg_name = const_cast<sockaddr*>(&p.to.addr.sa);
                h.msg_namelen = p.to.len;
            }
        }
    }
    size_t entries = link_reader_ ? build_entries(link, 0, gso_[link]) : queue.size();
    // Entry e's datagrams: [first(e), first(e) + count(e)) of the queue.
    const auto first = [&](size_t e) -> size_t { return link_reader_ ? tx_entries_[e].first : e; };
    const auto count = [&](size_t e) -> size_t { return link_reader_ ? tx_entries_[e].count : 1; };
    const auto done = [&](size_t e, int error) {
        for (size_t k = first(e); k < first(e) + count(e); ++k) {
            done_sending(queue[k].index);
            if (error != 0) send_failed(link, error);
        }
    };
    const auto drop_from = [&](size_t e, int error) {
        for (; e < entries; ++e) done(e, error);
    };

    size_t e = 0;
    bool retried = false;  // one retry of the rest after a short or EAGAIN send
    int hard_errors = 0;
    while (e < entries) {
        const size_t chunk = std::min(entries - e, kMaxMmsg);
        const int n = sendmmsg(link_fds_[link], tx_msgs_.data() + e, static_cast<unsigned>(chunk), MSG_DONTWAIT);
        const int error = errno;
        ++stats_.submits;
        if (n > 0) {
            stats_.sqes += static_cast<uint64_t>(n);
            for (size_t k = e; k < e + static_cast<size_t>(n); ++k) {
                if (count(k) > 1) {
                    ++stats_.gso_sends;
                    stats_.gso_segments += count(k);
                }
                done(k, 0);
            }
            e += static_cast<size_t>(n);
            if (static_cast<size_t>(n) == chunk) continue;
            // Short: the socket buffer filled up, or the next entry failed
            // (sendmmsg loses that error; the retry will report it).
        } else if (n < 0 && count(e) > 1 && gso_refused(error)) {
            // The kernel cannot do UDP_SEGMENT here: the rest of the queue
            // again, one datagram per entry, and so from now on.
            gso_[link] = false;
            ++stats_.gso_refused;
            if (handler_ != nullptr) handler_->on_gso_refused(link, error);
            entries = build_entries(link, first(e), false);
            e = 0;
            continue;
        } else if (n < 0 && error != EAGAIN && error != EWOULDBLOCK && error != EINTR) {
            // The entry at e failed on its own (EMSGSIZE, ECONNREFUSED from
            // an earlier ICMP error, EPERM from a firewall, ...): report and go on.
            done(e, error);
            ++e;
            if (++hard_errors >= kMaxHardSendErrors) {
                drop_from(e, error);
                break;
            }
            continue;
        }
        // Short, or nothing went (a full socket buffer, a signal): retry the
        // rest once, then drop it in order.
        if (retried) {
            drop_from(e, EAGAIN);
            break;
        }
        retried = true;
    }
    queue.clear();
}

// Writes what one TUN write wants, retrying once on EINTR.
ssize_t write_tun_once(int fd, const std::byte* data, size_t length) {
    ssize_t n = ::write(fd, data, length);
    if (n < 0 && errno == EINTR) n = ::write(fd, data, length);
    return n;
}

void EpollLoop::flush_tun() {
    if (writer_) {
        const auto writes = writer_->coalesce();
        for (uint32_t index : writer_->absorbed()) done_sending(index);
        for (const TunWriter::Write& w : writes) {
            const ssize_t n = write_tun_once(tun_fd_, w.data, w.length);
            const int error = errno;
            ++stats_.submits;
            ++stats_.sqes;
            if (w.spare)
                writer_->done_spare(w.index);
            else
                done_sending(w.index);
            if (n < 0) tun_write_failed(error);
        }
        return;
    }
    for (uint32_t index : tun_writes_) {
        const Buffer* b = pool_.slot(index);
        const ssize_t n = write_tun_once(tun_fd_, pool_.slot_data(index) + b->offset, b->length);
        const int error = errno;
        ++stats_.submits;
        ++stats_.sqes;
        done_sending(index);
        if (n < 0) tun_write_failed(error);
    }
    tun_writes_.clear();
}

void EpollLoop::flush() {
    for (LinkIndex link = 0; link < sends_.size(); ++link)
        if (!sends_[link].empty()) flush_link(link);
    if (!tun_writes_.empty() || (writer_ && !writer_->empty())) flush_tun();
}

// --- the turn -------------------------------------------------------------

Status EpollLoop::set_inputs(bool on) {
    if (on == inputs_on_) return {};
    auto modify = [&](int fd, uint64_t data) -> Status {
        epoll_event ev{};
        ev.events = on ? uint32_t{EPOLLIN} : 0u;
        ev.data.u64 = data;
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0)
            return fail(fmt::format("epoll loop: epoll_ctl fd {}: {}", fd, strerror(errno)));
        return {};
    };
    if (tun_fd_ >= 0)
        if (auto ok = modify(tun_fd_, pack(Source::tun, 0)); !ok) return ok;
    for (uint32_t i = 0; i < link_fds_.size(); ++i)
        if (link_fds_[i] >= 0)
            if (auto ok = modify(link_fds_[i], pack(Source::link, i)); !ok) return ok;
    inputs_on_ = on;
    return {};
}

Status EpollLoop::set_link_fd(LinkIndex link, int fd) {
    if (link > link_fds_.size() || link >= kMaxLinks) {
        return fail(fmt::format("epoll loop: link {} cannot be set (there are {})", link, link_fds_.size()));
    }
    if (link == link_fds_.size()) link_fds_.push_back(-1);
    if (!gso_.empty()) gso_[link] = true;  // a new socket may take UDP_SEGMENT
    if (link_fds_[link] >= 0) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, link_fds_[link], nullptr);
    link_fds_[link] = fd;
    if (fd < 0) return {};
    epoll_event ev{};
    ev.events = inputs_on_ ? uint32_t{EPOLLIN} : 0u;
    ev.data.u64 = pack(Source::link, link);
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
        link_fds_[link] = -1;
        return fail(fmt::format("epoll loop: epoll_ctl fd {}: {}", fd, strerror(errno)));
    }
    return {};
}

void EpollLoop::update_gauges() {
    stats_.slots_free = pool_.available();
    stats_.slots_held = pool_.slot_count() - pool_.available();
}

// Milliseconds epoll_wait may sleep, rounded up so a timer never fires early.
int wait_ms(core::Time deadline, core::Time now) {
    if (deadline == core::kNever) return -1;
    if (deadline <= now) return 0;
    const auto ns = (deadline - now).count();
    const auto ms = ns / 1'000'000 + (ns % 1'000'000 != 0 ? 1 : 0);
    return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

Status EpollLoop::run(Handler& handler) {
    handler_ = &handler;
    const OnExit detach([this] {
        handler_ = nullptr;
        update_gauges();
    });

    if (fatal_) return tl::unexpected(*fatal_);
    core::Time deadline = handler.on_timer(*this);
    flush();
    while (handler.running()) {
        if (auto ok = set_inputs(pool_.available() > 0); !ok) return ok;
        int n = epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()),
                           wait_ms(deadline, clock_.now()));
        if (n < 0) {
            if (errno != EINTR) return fail(fmt::format("epoll loop: epoll_wait: {}", strerror(errno)));
            n = 0;
        }
        ++stats_.turns;
        for (int k = 0; k < n && !fatal_; ++k) {
            const uint64_t data = events_[k].data.u64;
            const auto index = static_cast<uint32_t>(data);
            switch (static_cast<Source>(data >> 32)) {
                case Source::tun:
                    read_tun();
                    break;
                case Source::link:
                    receive(index);
                    break;
                case Source::watch:
                    batches_.add_readable(watch_fds_[index]);
                    break;
            }
        }
        if (fatal_) {
            batches_.drop();
            return tl::unexpected(*fatal_);
        }
        batches_.deliver(handler, *this);
        deadline = handler.on_timer(*this);
        flush();
        update_gauges();
    }
    return {};
}

}  // namespace

// --- construction ---------------------------------------------------------

Result<std::unique_ptr<Loop>> make_epoll_loop(const LoopConfig& config, const core::Clock& clock) {
    if (auto ok = check_config(config); !ok) return tl::unexpected(ok.error());
    auto pool = BufferPool::create(config.slot_size, config.slot_count);
    if (!pool) return tl::unexpected(pool.error());

    Fd epoll(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) return fail(fmt::format("epoll loop: epoll_create1: {}", strerror(errno)));
    auto add = [&](int fd, uint64_t data) -> Status {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = data;
        if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
            return fail(fmt::format("epoll loop: epoll_ctl fd {}: {}", fd, strerror(errno)));
        return {};
    };
    if (config.tun_fd >= 0) {
        const int flags = fcntl(config.tun_fd, F_GETFL);
        if (flags < 0 || fcntl(config.tun_fd, F_SETFL, flags | O_NONBLOCK) < 0)
            return fail(fmt::format("epoll loop: O_NONBLOCK on the TUN fd: {}", strerror(errno)));
        if (auto ok = add(config.tun_fd, pack(Source::tun, 0)); !ok) return tl::unexpected(ok.error());
    }
    for (uint32_t i = 0; i < config.link_fds.size(); ++i)
        if (auto ok = add(config.link_fds[i], pack(Source::link, i)); !ok) return tl::unexpected(ok.error());
    for (uint32_t i = 0; i < config.watch_fds.size(); ++i)
        if (auto ok = add(config.watch_fds[i], pack(Source::watch, i)); !ok) return tl::unexpected(ok.error());

    auto loop = std::make_unique<EpollLoop>(config, clock, std::move(*pool), std::move(epoll));
    if (config.tun_fd >= 0 && config.tun_vnet_hdr)
        if (auto ok = loop->enable_tun_offload(config.tun_uso); !ok) return tl::unexpected(ok.error());
    if (config.udp_offload)
        if (auto ok = loop->enable_udp_offload(); !ok) return tl::unexpected(ok.error());
    return loop;
}

}  // namespace mlvpn::uring
