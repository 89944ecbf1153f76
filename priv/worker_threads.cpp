// SPDX-License-Identifier: BSD-2-Clause
#include "priv/worker_threads.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mlvpn::priv {

Result<std::unique_ptr<Mailbox>> Mailbox::make() {
    const int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return fail(fmt::format("eventfd: {}", std::strerror(errno)));
    return std::make_unique<Mailbox>(Fd(fd));
}

void Mailbox::give_back(core::Buffer* buffer) {
    const std::lock_guard lock(mutex_);
    returned_.push_back(buffer);
}

void Mailbox::post(Command command) {
    {
        const std::lock_guard lock(mutex_);
        commands_.push_back(std::move(command));
    }
    signal();
}

void Mailbox::wake() { signal(); }

void Mailbox::signal() {
    // One write until the owner has read it: the eventfd stays readable.
    if (signalled_.exchange(true, std::memory_order_seq_cst)) return;
    const uint64_t one = 1;
    // EAGAIN (the counter is full) cannot happen with one write pending;
    // nothing else can fail on an eventfd.
    (void)!::write(event_.get(), &one, sizeof one);
}

void Mailbox::drain(core::Io& io, bool woken) {
    if (woken) {
        // Read, then cleared, then the boxes looked at: what is posted after
        // the clear signals again, and a signal that lands between the read
        // and the clear only makes a spare wake-up (its post is taken below).
        // Cleared before the read instead, a post in between would be read
        // away with the flag left set: no later post would wake the owner.
        uint64_t count = 0;
        (void)!::read(event_.get(), &count, sizeof count);
        signalled_.store(false, std::memory_order_seq_cst);
    }
    {
        const std::lock_guard lock(mutex_);
        if (returned_.empty() && commands_.empty()) return;
        returned_out_.swap(returned_);
        commands_out_.swap(commands_);
    }
    for (core::Buffer* b : returned_out_) io.release(b);
    returned_out_.clear();
    for (auto& c : commands_out_) c();
    commands_out_.clear();
}

void ThreadIo::give_back(core::Buffer* buffer) {
    for (uint32_t t = 0; t < peers_.size(); ++t) {
        if (t == self_ || !peers_[t].loop->owns(buffer)) continue;
        peers_[t].mailbox->give_back(buffer);
        ++stats_.returned;
        return;
    }
    // No loop's: nothing can take it back, and handing it to ours would only
    // have the loop refuse it.
    ++stats_.unknown;
}

core::Buffer* ThreadIo::adopt(core::Buffer* buffer) {
    core::Buffer* copy = inner_->acquire();
    if (copy != nullptr && buffer->capacity == copy->capacity && buffer->offset <= buffer->capacity &&
        buffer->length <= buffer->capacity - buffer->offset) {
        copy->offset = buffer->offset;
        copy->length = buffer->length;
        copy->checksum_partial = buffer->checksum_partial;
        std::memcpy(copy->data + copy->offset, buffer->data + buffer->offset, buffer->length);
        ++stats_.copied;
    } else {
        if (copy != nullptr) inner_->release(copy);
        copy = nullptr;
        ++stats_.no_buffer;
    }
    give_back(buffer);
    return copy;
}

void ThreadIo::release(core::Buffer* buffer) {
    if (own(buffer))
        inner_->release(buffer);
    else
        give_back(buffer);
}

void ThreadIo::send(core::LinkIndex link, core::Buffer* buffer, const core::Endpoint* to) {
    if (!own(buffer)) buffer = adopt(buffer);
    if (buffer != nullptr) inner_->send(link, buffer, to);
}

void ThreadIo::write_tun(core::Buffer* buffer) {
    if (!own(buffer)) buffer = adopt(buffer);
    if (buffer != nullptr) inner_->write_tun(buffer);
}

void WorkerShared::stop() {
    running.store(false, std::memory_order_relaxed);
    for (const ThreadPeer& p : peers)
        if (p.mailbox != nullptr) p.mailbox->wake();
}

ThreadHandler::ThreadHandler(uint32_t index, core::Tunnel& tunnel, WorkerShared& shared, uring::Loop& loop,
                             Mailbox& mailbox, core::Logger& log)
    : index_(index),
      tunnel_(tunnel),
      shared_(shared),
      loop_(loop),
      mailbox_(mailbox),
      log_(log),
      io_(index, shared.peers),
      installed_(tunnel.link_count(), true) {}

void ThreadHandler::install(core::LinkIndex link, int fd, std::shared_ptr<void> old) {
    if (auto s = loop_.set_link_fd(link, fd); !s) {
        log_.error("worker thread {}: link {}: {}", index_, link, s.error().message);
        return;
    }
    retiring_.hold(link, std::move(old));
    if (installed_.size() <= link) installed_.resize(link + 1, false);
    installed_[link] = fd >= 0;
}

void ThreadHandler::on_tun(std::span<core::Buffer*> packets, core::Io& io) {
    {
        Locked held(*this, io);
        // In this thread's own counter space: its own nonces and data
        // sequence, and the peer's steering brings the peer's answers in
        // that space to its thread of the same number.
        tunnel_.on_tun_packets(packets, io_, static_cast<uint8_t>(index_));
    }
    seals_.flush(io_);
}

void open_unlocked(WorkerShared& shared, core::Tunnel& tunnel, core::OpenBatch& batch, core::LinkIndex link,
                   std::span<core::Datagram> datagrams) {
    {
        const std::lock_guard lock(shared.tunnel);
        tunnel.plan_open(link, datagrams, batch);
    }
    batch.open(datagrams);
}

void ThreadHandler::on_datagrams(core::LinkIndex link, std::span<core::Datagram> datagrams, core::Io& io) {
    open_unlocked(shared_, tunnel_, opens_, link, datagrams);
    {
        Locked held(*this, io);
        tunnel_.on_datagrams(link, datagrams, io_, &opens_);
    }
    seals_.flush(io_);
}

void ThreadHandler::on_send_error(core::LinkIndex link, int error) {
    // Sent while the link had no socket here: taken away by thread 0 for a
    // renewal, or not yet installed after a reload added it.
    if (error == EBADF && (link >= installed_.size() || !installed_[link])) return;
    const std::lock_guard lock(shared_.tunnel);
    tunnel_.on_send_error(link, error);
}

void ThreadHandler::on_tun_write_error(int error) {
    const std::lock_guard lock(shared_.tunnel);
    tunnel_.on_tun_write_error(error);
}

void ThreadHandler::on_gso_refused(core::LinkIndex link, int error) {
    std::string name;
    {
        const std::lock_guard lock(shared_.tunnel);
        name = link < tunnel_.link_count() ? tunnel_.link(link).settings.name : std::to_string(link);
    }
    log_.warn("link {}: the kernel refuses UDP segmentation offload on thread {}'s socket ({}); sending one "
              "datagram per call on it",
              name, index_, std::strerror(error));
}

core::Time ThreadHandler::on_timer(core::Io& io) {
    mailbox_.drain(io, false);
    retiring_.release_quiet(loop_);
    core::Time next;
    {
        Locked held(*this, io);
        shared_.loop_stats[index_] = loop_.stats();
        shared_.cross_stats[index_] = io_.stats();
        // The reorder timers of the peer's spaces that come to this thread:
        // a packet a gap releases goes out by this thread's queue, as its
        // flow's others do (another queue would move the flow, and its
        // answers, to another thread and counter space).
        next = tunnel_.on_timer(io_, core::SpaceOwner{index_, static_cast<uint32_t>(shared_.peers.size())});
    }
    seals_.flush(io_);
    return next;
}

void ThreadHandler::on_readable(int fd, core::Io& io) {
    if (fd == mailbox_.fd()) mailbox_.drain(io, true);
}

WorkerThreads::WorkerThreads(uint32_t workers) : slots_(workers > 1 ? workers - 1 : 0) {
    for (Slot& s : slots_) s.owner_ = this;
}

void WorkerThreads::start(uint32_t t, std::function<void(Slot&)> body) {
    Slot& slot = slots_.at(t - 1);
    threads_.emplace_back([&slot, body = std::move(body)] { body(slot); });
}

bool WorkerThreads::Slot::made(Status made) {
    std::unique_lock lock(owner_->mutex_);
    ++owner_->reported_;
    if (!made && !owner_->error_) owner_->error_ = made.error();
    owner_->changed_.notify_all();
    if (made) owner_->changed_.wait(lock, [this] { return owner_->word_ != Word::Pending; });
    if (made && owner_->word_ == Word::Go) return true;
    ++owner_->left_;  // never in its loop
    owner_->changed_.notify_all();
    return false;
}

void WorkerThreads::Slot::wait_end() {
    std::unique_lock lock(owner_->mutex_);
    ++owner_->left_;
    owner_->changed_.notify_all();
    owner_->changed_.wait(lock, [this] { return owner_->ended_ && owner_->left_ == owner_->threads_.size(); });
}

Status WorkerThreads::wait_made() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return reported_ == threads_.size(); });
    if (error_) return tl::unexpected(*error_);
    return {};
}

std::vector<ThreadHandler*> WorkerThreads::handlers() const {
    std::vector<ThreadHandler*> out;
    for (const Slot& s : slots_) out.push_back(s.handler);
    return out;
}

void WorkerThreads::go() {
    const std::lock_guard lock(mutex_);
    if (word_ == Word::Pending) word_ = Word::Go;
    changed_.notify_all();
}

void WorkerThreads::end() {
    {
        const std::lock_guard lock(mutex_);
        if (word_ == Word::Pending) word_ = Word::End;
        ended_ = true;
        changed_.notify_all();
    }
    for (std::thread& t : threads_)
        if (t.joinable()) t.join();
}

}  // namespace mlvpn::priv
