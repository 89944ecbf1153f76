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
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "core/wire.hpp"
#include "priv/fd.hpp"
#include "uring/buffer_pool.hpp"
#include "uring/loop.hpp"

namespace mlvpn::uring {
namespace {

using core::Buffer;
using core::Datagram;
using core::LinkIndex;

constexpr uint32_t kHeadroom = static_cast<uint32_t>(core::wire::kHeadroom);
constexpr uint32_t kMaxBatch = 1024;
constexpr size_t kMaxMmsg = 1024;  // UIO_MAXIOV: the most sendmmsg takes at once
// Hard (non-EAGAIN) send errors tolerated per link and flush before the rest
// of the queue is dropped: a one-shot ICMP error costs one datagram, a
// firewall that rejects everything does not cost a syscall per datagram.
constexpr int kMaxHardSendErrors = 4;

enum class Source : uint8_t { tun, link, watch };

constexpr uint64_t pack(Source s, uint32_t index) {
    return (uint64_t{static_cast<uint8_t>(s)} << 32) | index;
}

// See uring_loop.cpp: errors that make re-reading pointless.
bool is_fatal_read_error(int error) {
    switch (error) {
        case EBADF:
        case EBADFD:
        case ENOTSOCK:
        case EINVAL:
        case EIO:
        case ENXIO:
        case ENODEV:
            return true;
        default:
            return false;
    }
}

struct PendingSend {
    uint32_t index;
    core::Endpoint to;  // empty: connected socket
};

class EpollLoop final : public Loop, private core::Io {
public:
    EpollLoop(const LoopConfig& config, const core::Clock& clock, BufferPool pool, Fd epoll)
        : clock_(clock),
          batch_(config.batch),
          tun_fd_(config.tun_fd),
          link_fds_(config.link_fds),
          watch_fds_(config.watch_fds),
          pool_(std::move(pool)),
          epoll_(std::move(epoll)),
          queued_(pool_.slot_count(), false) {
        const uint32_t slots = pool_.slot_count();
        events_.resize(1 + link_fds_.size() + watch_fds_.size());
        tun_batch_.reserve(batch_);
        link_batches_.resize(link_fds_.size());
        for (auto& b : link_batches_) b.reserve(batch_);
        readable_.reserve(watch_fds_.size());
        rx_msgs_.resize(batch_);
        rx_iovs_.resize(batch_);
        rx_names_.resize(batch_);
        rx_slots_.resize(batch_);
        sends_.resize(link_fds_.size());
        for (auto& q : sends_) q.reserve(slots);
        tun_writes_.reserve(slots);
        tx_msgs_.resize(slots);
        tx_iovs_.resize(slots);
        update_gauges();
    }

    Status run(Handler& handler) override;
    const char* name() const override { return "epoll"; }
    const LoopStats& stats() const override { return stats_; }

private:
    // core::Io
    Buffer* acquire() override;
    void release(Buffer* buffer) override;
    void send(LinkIndex link, Buffer* buffer, const core::Endpoint* to) override;
    void write_tun(Buffer* buffer) override;

    int64_t handler_slot(Buffer* buffer);
    void read_tun();
    void receive(LinkIndex link);
    void read_failed(const char* what, std::optional<LinkIndex> link, int error);
    void deliver(Handler& handler);
    void flush();
    void flush_link(LinkIndex link);
    void flush_tun();
    void drop_sends(LinkIndex link, size_t from, int error);
    void done_sending(uint32_t index);
    Status set_inputs(bool on);
    void drop_batches();
    void update_gauges();

    const core::Clock& clock_;
    const uint32_t batch_;
    const int tun_fd_;
    const std::vector<int> link_fds_;
    const std::vector<int> watch_fds_;
    BufferPool pool_;
    Fd epoll_;
    bool inputs_on_ = true;
    std::vector<epoll_event> events_;

    std::vector<Buffer*> tun_batch_;
    std::vector<std::vector<Datagram>> link_batches_;
    std::vector<int> readable_;
    std::vector<mmsghdr> rx_msgs_;
    std::vector<iovec> rx_iovs_;
    std::vector<core::Endpoint> rx_names_;
    std::vector<Buffer*> rx_slots_;

    // Output of the turn; every entry holds a distinct slot, so the queues
    // are bounded by the pool.
    std::vector<bool> queued_;
    std::vector<std::vector<PendingSend>> sends_;
    std::vector<uint32_t> tun_writes_;
    std::vector<mmsghdr> tx_msgs_;
    std::vector<iovec> tx_iovs_;

    Handler* handler_ = nullptr;
    std::optional<Error> fatal_;
    LoopStats stats_;
};

// --- core::Io -------------------------------------------------------------

Buffer* EpollLoop::acquire() {
    Buffer* b = pool_.acquire();
    if (b == nullptr) ++stats_.pool_empty;
    return b;
}

int64_t EpollLoop::handler_slot(Buffer* buffer) {
    const int64_t index = pool_.out_index(buffer);
    if (index < 0 || queued_[static_cast<size_t>(index)]) {
        ++stats_.rejected;
        return -1;
    }
    return index;
}

void EpollLoop::release(Buffer* buffer) {
    if (handler_slot(buffer) >= 0) pool_.release(buffer);
}

void EpollLoop::send(LinkIndex link, Buffer* buffer, const core::Endpoint* to) {
    const int64_t index = handler_slot(buffer);
    if (index < 0) return;
    if (link >= link_fds_.size()) {
        ++stats_.rejected;
        pool_.release(buffer);
        return;
    }
    if (uint64_t{buffer->offset} + buffer->length > pool_.slot_size() ||
        (to != nullptr && to->len > sizeof(to->addr))) {
        ++stats_.rejected;
        pool_.release(buffer);
        if (handler_ != nullptr) handler_->on_send_error(link, EINVAL);
        return;
    }
    PendingSend p{static_cast<uint32_t>(index), {}};
    if (to != nullptr) p.to = *to;
    queued_[static_cast<size_t>(index)] = true;
    sends_[link].push_back(p);
}

void EpollLoop::write_tun(Buffer* buffer) {
    const int64_t index = handler_slot(buffer);
    if (index < 0) return;
    int error = 0;
    if (tun_fd_ < 0) {
        error = EBADF;
    } else if (uint64_t{buffer->offset} + buffer->length > pool_.slot_size()) {
        ++stats_.rejected;
        error = EINVAL;
    }
    if (error != 0) {
        pool_.release(buffer);
        if (handler_ != nullptr) handler_->on_tun_write_error(error);
        return;
    }
    queued_[static_cast<size_t>(index)] = true;
    tun_writes_.push_back(static_cast<uint32_t>(index));
}

// --- input ----------------------------------------------------------------

void EpollLoop::read_tun() {
    for (uint32_t k = 0; k < batch_; ++k) {
        Buffer* b = pool_.acquire();
        if (b == nullptr) {
            ++stats_.pool_empty;
            return;
        }
        const ssize_t n = ::read(tun_fd_, pool_.slot_data(b->index) + kHeadroom, pool_.slot_size() - kHeadroom);
        if (n > 0) {
            b->length = static_cast<uint32_t>(n);
            tun_batch_.push_back(b);
            ++stats_.tun_reads;
            continue;
        }
        const int error = errno;
        pool_.release(b);
        if (n == 0 || error == EINTR) continue;  // a zero-byte read carries nothing
        if (error == EAGAIN || error == EWOULDBLOCK) return;
        read_failed("read from the TUN device", std::nullopt, error);
        if (fatal_) return;
    }
}

void EpollLoop::receive(LinkIndex link) {
    uint32_t count = 0;
    while (count < batch_) {
        Buffer* b = pool_.acquire();
        if (b == nullptr) {
            ++stats_.pool_empty;
            break;
        }
        rx_slots_[count] = b;
        rx_iovs_[count] = {pool_.slot_data(b->index), pool_.slot_size()};
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
        Buffer* b = rx_slots_[k];
        const msghdr& h = rx_msgs_[k].msg_hdr;
        // A datagram larger than the slot: never pass on a truncated one.
        if ((h.msg_flags & MSG_TRUNC) != 0) {
            ++stats_.truncated;
            pool_.release(b);
            continue;
        }
        b->offset = 0;
        b->length = rx_msgs_[k].msg_len;
        Datagram d{b, {}};
        if (h.msg_namelen <= sizeof(d.from.addr)) {
            d.from = rx_names_[k];
            d.from.len = h.msg_namelen;
        }
        link_batches_[link].push_back(d);
        ++stats_.datagrams;
    }
    for (uint32_t k = got; k < count; ++k) pool_.release(rx_slots_[k]);
    if (n < 0 && error != EAGAIN && error != EWOULDBLOCK && error != EINTR) read_failed("receive", link, error);
}

void EpollLoop::read_failed(const char* what, std::optional<LinkIndex> link, int error) {
    if (!is_fatal_read_error(error)) {
        ++stats_.read_errors;
        return;
    }
    if (fatal_) return;
    if (link)
        fatal_ = Error{fmt::format("epoll loop: {} on link {}: {}", what, *link, strerror(error))};
    else
        fatal_ = Error{fmt::format("epoll loop: {}: {}", what, strerror(error))};
}

// --- output ---------------------------------------------------------------

void EpollLoop::done_sending(uint32_t index) {
    queued_[index] = false;
    pool_.release(pool_.slot(index));
}

void EpollLoop::drop_sends(LinkIndex link, size_t from, int error) {
    for (size_t i = from; i < sends_[link].size(); ++i) {
        done_sending(sends_[link][i].index);
        if (handler_ != nullptr) handler_->on_send_error(link, error);
    }
}

void EpollLoop::flush_link(LinkIndex link) {
    auto& queue = sends_[link];
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

    size_t i = 0;
    bool retried = false;  // one retry of the rest after a short or EAGAIN send
    int hard_errors = 0;
    while (i < queue.size()) {
        const size_t chunk = std::min(queue.size() - i, kMaxMmsg);
        const int n = sendmmsg(link_fds_[link], tx_msgs_.data() + i, static_cast<unsigned>(chunk), MSG_DONTWAIT);
        const int error = errno;
        ++stats_.submits;
        if (n > 0) {
            stats_.sqes += static_cast<uint64_t>(n);
            for (size_t k = i; k < i + static_cast<size_t>(n); ++k) done_sending(queue[k].index);
            i += static_cast<size_t>(n);
            if (static_cast<size_t>(n) == chunk) continue;
            // Short: the socket buffer filled up, or the next datagram failed
            // (sendmmsg loses that error; the retry will report it).
            if (retried) {
                drop_sends(link, i, EAGAIN);
                break;
            }
            retried = true;
            continue;
        }
        if (n == 0 || error == EAGAIN || error == EWOULDBLOCK || error == EINTR) {
            if (retried) {
                drop_sends(link, i, EAGAIN);
                break;
            }
            retried = true;
            continue;
        }
        // The datagram at i failed on its own (EMSGSIZE, ECONNREFUSED from an
        // earlier ICMP error, EPERM from a firewall, ...): report and go on.
        done_sending(queue[i].index);
        if (handler_ != nullptr) handler_->on_send_error(link, error);
        ++i;
        if (++hard_errors >= kMaxHardSendErrors) {
            drop_sends(link, i, error);
            break;
        }
    }
    queue.clear();
}

void EpollLoop::flush_tun() {
    for (uint32_t index : tun_writes_) {
        const Buffer* b = pool_.slot(index);
        const std::byte* data = pool_.slot_data(index) + b->offset;
        ssize_t n = ::write(tun_fd_, data, b->length);
        if (n < 0 && errno == EINTR) n = ::write(tun_fd_, data, b->length);
        const int error = errno;
        ++stats_.submits;
        ++stats_.sqes;
        done_sending(index);
        if (n < 0 && handler_ != nullptr) handler_->on_tun_write_error(error);
    }
    tun_writes_.clear();
}

void EpollLoop::flush() {
    for (LinkIndex link = 0; link < sends_.size(); ++link)
        if (!sends_[link].empty()) flush_link(link);
    if (!tun_writes_.empty()) flush_tun();
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
        if (auto ok = modify(link_fds_[i], pack(Source::link, i)); !ok) return ok;
    inputs_on_ = on;
    return {};
}

void EpollLoop::deliver(Handler& handler) {
    if (!tun_batch_.empty()) {
        handler.on_tun(tun_batch_, *this);
        tun_batch_.clear();
    }
    for (LinkIndex link = 0; link < link_batches_.size(); ++link) {
        auto& batch = link_batches_[link];
        if (batch.empty()) continue;
        handler.on_datagrams(link, batch, *this);
        batch.clear();
    }
    for (int fd : readable_) handler.on_readable(fd, *this);
    readable_.clear();
}

void EpollLoop::drop_batches() {
    for (Buffer* b : tun_batch_) pool_.release(b);
    tun_batch_.clear();
    for (auto& batch : link_batches_) {
        for (Datagram& d : batch) pool_.release(d.buffer);
        batch.clear();
    }
    readable_.clear();
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
    struct Detach {
        EpollLoop* loop;
        ~Detach() {
            loop->handler_ = nullptr;
            loop->update_gauges();
        }
    } detach{this};

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
                    readable_.push_back(watch_fds_[index]);
                    break;
            }
        }
        if (fatal_) {
            drop_batches();
            return tl::unexpected(*fatal_);
        }
        deliver(handler);
        deadline = handler.on_timer(*this);
        flush();
        update_gauges();
    }
    return {};
}

Status validate(const LoopConfig& config) {
    if (config.batch == 0 || config.batch > kMaxBatch)
        return fail(fmt::format("event loop: batch {} is outside 1..{}", config.batch, kMaxBatch));
    for (size_t i = 0; i < config.link_fds.size(); ++i)
        if (config.link_fds[i] < 0) return fail(fmt::format("event loop: link {} has no socket", i));
    for (int fd : config.watch_fds)
        if (fd < 0) return fail(fmt::format("event loop: bad watch fd {}", fd));
    return {};
}

}  // namespace

Result<std::unique_ptr<Loop>> make_epoll_loop(const LoopConfig& config, const core::Clock& clock) {
    if (auto ok = validate(config); !ok) return tl::unexpected(ok.error());
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

    return std::make_unique<EpollLoop>(config, clock, std::move(*pool), std::move(epoll));
}

}  // namespace mlvpn::uring
