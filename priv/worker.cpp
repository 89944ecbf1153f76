// SPDX-License-Identifier: BSD-2-Clause
#include "priv/worker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/status.hpp"
#include "core/tunnel.hpp"
#include "core/wire.hpp"
#include "priv/control_server.hpp"
#include "priv/fd_group.hpp"
#include "priv/lockdown.hpp"
#include "priv/log_sink.hpp"
#include "priv/tun.hpp"
#include "priv/worker_threads.hpp"
#include "uring/loop.hpp"
#include "uring/system_clock.hpp"

namespace mlvpn::priv {

namespace {

// The worker's logs go to priv, which owns syslog/journal (the worker's
// chroot has no /dev/log). Never blocks: a line that does not fit is lost.
class ChannelSink final : public core::LogSink {
public:
    explicit ChannelSink(Channel& channel) : channel_(channel) {}
    void write(core::Level level, std::string_view message) override {
        msg::Log m;
        m.level = static_cast<uint8_t>(level);
        const size_t n = std::min(message.size(), msg::kLogTextSize);
        std::memcpy(m.text, message.data(), n);
        m.length = static_cast<uint16_t>(n);
        (void)channel_.send(m, -1, true);
    }

private:
    Channel& channel_;
};

// Moves the channel to descriptor 3 and closes everything else the worker
// inherited from priv (TUN, sockets, syslog): it gets only what it asks for.
Status isolate_descriptors(Channel& channel, bool keep_stderr) {
    Fd fd = channel.take();
    if (fd.get() != 3) {
        if (dup3(fd.get(), 3, O_CLOEXEC) < 0) return fail(fmt::format("dup3: {}", std::strerror(errno)));
        fd.reset();
        fd = Fd(3);
    }
    channel = Channel(std::move(fd));
    const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) return fail(fmt::format("/dev/null: {}", std::strerror(errno)));
    dup2(null, 0);
    dup2(null, 1);
    if (!keep_stderr) dup2(null, 2);
    if (null > 3) close(null);
    if (close_range(4, ~0U, 0) != 0) return fail(fmt::format("close_range: {}", std::strerror(errno)));
    return {};
}

template <class Answer, class Request>
Result<std::pair<Answer, Fd>> ask(Channel& channel, const Request& request) {
    if (auto s = channel.send(request); !s) return tl::unexpected(s.error());
    auto r = channel.receive();
    if (!r) return tl::unexpected(r.error());
    if (r->bytes.empty()) return fail("priv closed the channel");
    auto decoded = msg::decode(r->bytes);
    if (!decoded || !std::holds_alternative<Answer>(*decoded)) return fail("unexpected answer from priv");
    return std::pair<Answer, Fd>{std::get<Answer>(*decoded), std::move(r->fd)};
}

// An address in the first bytes of a sockaddr_in6 (checked by decode());
// empty for length 0.
core::Endpoint endpoint(const sockaddr_in6& addr, uint32_t len) {
    core::Endpoint e;
    std::memcpy(&e.addr, &addr, len);
    e.len = len;
    return e;
}

// Who a follower of a group belongs to, and which member it is.
uint32_t group_owner(const msg::TunQueue&) { return 0; }
uint32_t group_member(const msg::TunQueue& m) { return m.queue; }
uint32_t group_owner(const msg::LinkSocket& m) { return m.index; }
uint32_t group_member(const msg::LinkSocket& m) { return m.thread; }

core::LinkSettings to_link_settings(const msg::Link& l) {
    core::LinkSettings ls;
    ls.name = std::string(msg::get_string(l.name));
    ls.connected = l.connected == 1;
    ls.fallback_only = l.fallback_only == 1;
    ls.timeout = std::chrono::milliseconds(l.timeout_ms);
    ls.bandwidth = l.bandwidth;
    ls.loss_tolerence_pct = l.loss_tolerence_pct;
    ls.latency_tolerence_ms = l.latency_tolerence_ms;
    if (l.has_allowed_peer == 1) ls.allowed_peer = endpoint(l.allowed_peer, l.allowed_peer_len);
    ls.remote = endpoint(l.peer, l.peer_len);
    return ls;
}

// The rest of a group whose member 0 came with `first` (priv/messages.hpp):
// `size - 1` messages M, each the next member. Anything else is an error.
template <class M>
Result<std::vector<Fd>> receive_group(Channel& channel, uint32_t owner, uint32_t size, Fd first) {
    FdGroup group(owner, size, std::move(first));
    if (!group.valid()) return fail("priv sent a group without its first descriptor");
    while (!group.complete()) {
        auto r = channel.receive();
        if (!r) return tl::unexpected(r.error());
        auto decoded = r->bytes.empty() ? std::nullopt : msg::decode(r->bytes);
        const M* m = decoded ? std::get_if<M>(&*decoded) : nullptr;
        if (m == nullptr || !group.add(group_owner(*m), group_member(*m), std::move(r->fd)))
            return fail("priv sent a descriptor group out of order");
    }
    return group.take();
}

struct Setup {
    core::TunnelSettings settings;
    core::SecretKey psk;
    core::StatusMeta meta;
    std::string ifname;
    uint32_t workers = 1;
    std::vector<Fd> tun;  // by queue
    TunOffload offload = TunOffload::None;
    bool udp_offload = false;
    std::vector<std::vector<Fd>> sockets;  // by link, then thread
    std::vector<bool> fixed_port;  // by link: msg::Link::fixed_port
    std::vector<ControlServer::Listener> controls;
};

Result<Setup> fetch_setup(Channel& channel) {
    Setup s;
    auto config = ask<msg::Config>(channel, msg::GetConfig{});
    if (!config) return tl::unexpected(config.error());
    const msg::Config& c = config->first;
    s.settings.mode = c.mode == 1 ? core::Mode::Server : core::Mode::Client;
    s.settings.tuntap = c.tuntap == 1 ? core::TunType::Tap : core::TunType::Tun;
    s.settings.cleartext_data = c.cleartext_data == 1;
    s.udp_offload = c.udp_offload == 1;
    s.meta.udp_offload = s.udp_offload;
    s.settings.mtu = c.mtu;
    s.settings.reorder_buffer_size = c.reorder_buffer_size;
    s.workers = c.workers;
    s.meta.name = std::string(msg::get_string(c.name));
    s.meta.version = MLVPN_VERSION;
    s.meta.pid = c.priv_pid;
    s.meta.worker_pid = getpid();
    s.meta.started_unix = c.started_unix;
    s.meta.last_reload_unix = c.started_unix;
    std::memcpy(s.psk.data(), c.psk, sizeof c.psk);
    sodium_memzero(const_cast<uint8_t*>(c.psk), sizeof c.psk);

    for (uint32_t i = 0; i < c.link_count; ++i) {
        msg::GetLink req;
        req.index = i;
        auto link = ask<msg::Link>(channel, req);
        if (!link) return tl::unexpected(link.error());
        const msg::Link& l = link->first;
        if (l.index != i) return fail("priv answered for the wrong link");
        s.settings.links.push_back(to_link_settings(l));
        s.fixed_port.push_back(l.fixed_port == 1);
        s.meta.local.emplace_back(msg::get_string(l.local));
        s.meta.remote.emplace_back(msg::get_string(l.remote));
    }

    auto tun = ask<msg::Tun>(channel, msg::OpenTun{});
    if (!tun) return tl::unexpected(tun.error());
    if (tun->first.error != 0 || !tun->second) {
        return fail(fmt::format("priv could not give the tunnel device: {}", std::strerror(tun->first.error)));
    }
    s.ifname = std::string(msg::get_string(tun->first.ifname));
    s.meta.device = s.ifname;
    auto queues = receive_group<msg::TunQueue>(channel, 0, s.workers, std::move(tun->second));
    if (!queues) return tl::unexpected(queues.error());
    s.tun = std::move(*queues);
    s.offload = static_cast<TunOffload>(tun->first.offload);  // 0..2, checked by decode()
    s.meta.offload = to_string(s.offload);

    for (uint32_t i = 0; i < c.link_count; ++i) {
        msg::OpenLink req;
        req.index = i;
        auto sock = ask<msg::LinkSocket>(channel, req);
        if (!sock) return tl::unexpected(sock.error());
        if (sock->first.error != 0 || !sock->second || sock->first.index != i || sock->first.thread != 0) {
            return fail(fmt::format("priv could not give the socket of link {}: {}", s.settings.links[i].name,
                                    std::strerror(sock->first.error)));
        }
        auto group = receive_group<msg::LinkSocket>(channel, i, s.workers, std::move(sock->second));
        if (!group) return tl::unexpected(group.error());
        s.sockets.push_back(std::move(*group));
    }
    for (uint32_t i = 0; i < c.control_count; ++i) {
        msg::OpenControl req;
        req.index = i;
        auto ctl = ask<msg::ControlListener>(channel, req);
        if (!ctl) return tl::unexpected(ctl.error());
        if (!ctl->second) return fail("priv sent no control socket");
        s.controls.push_back(ControlServer::Listener{std::move(ctl->second), ctl->first.privileged == 1});
    }
    return s;
}

Result<Fd> make_signalfd() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return fail("sigprocmask failed");
    sigdelset(&set, SIGPIPE);  // blocked, never wanted
    const int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) return fail(fmt::format("signalfd: {}", std::strerror(errno)));
    return Fd(fd);
}

class WorkerHandler final : public uring::Handler {
public:
    WorkerHandler(core::Tunnel& tunnel, WorkerShared& shared, Mailbox& mailbox, Channel& channel, int signal_fd,
                  core::Logger& log, ProcTitle& title, core::StatusMeta meta, const core::Clock& clock,
                  bool natural_title)
        : tunnel_(tunnel),
          shared_(shared),
          mailbox_(mailbox),
          io_(0, shared.peers),
          channel_(channel),
          signal_fd_(signal_fd),
          log_(log),
          title_(title),
          meta_(std::move(meta)),
          clock_(clock),
          natural_title_(natural_title) {
        update_title();
    }

    void set_control(ControlServer* control) { control_ = control; }
    // `threads`: the handlers of threads 1..N-1 (index t-1), to which a
    // reload's or renewal's sockets are posted.
    void set_loop(uring::Loop* loop, std::vector<std::vector<Fd>>* sockets, std::vector<bool> fixed_port,
                  uint32_t workers, std::vector<ThreadHandler*> threads) {
        loop_ = loop;
        sockets_ = sockets;
        fixed_port_ = std::move(fixed_port);
        workers_ = workers;
        threads_ = std::move(threads);
    }
    void set_backend(const char* backend) { meta_.backend = backend; }

    // Every thread's loop counters, summed (under the lock).
    uring::LoopStats loop_stats() const {
        uring::LoopStats sum = loop_ != nullptr ? loop_->stats() : uring::LoopStats{};
        for (size_t t = 1; t < shared_.loop_stats.size(); ++t) sum += shared_.loop_stats[t];
        return sum;
    }

    // The loops' TUN offload counters, for status (they live in the loops).
    // Under the lock.
    core::StatusMeta status_meta() const {
        core::StatusMeta m = meta_;
        m.workers = workers_;
        m.cross_thread_copies = io_.stats().copied;
        for (size_t t = 1; t < shared_.cross_stats.size(); ++t) m.cross_thread_copies += shared_.cross_stats[t].copied;
        if (loop_ != nullptr) {
            const uring::LoopStats st = loop_stats();
            m.offload_stats = {st.tun_super_reads, st.tun_bad_reads, st.tun_split_no_buffer, st.tun_super_writes,
                               st.tun_merged};
            m.udp_offload_stats = {st.gso_sends,    st.gso_segments, st.gso_refused,  st.gro_receives,
                                   st.gro_segments, st.gro_dropped,  st.gro_no_buffer};
        }
        return m;
    }

    // The answer to one control request (the protocol layer made sure it is
    // well-formed and allowed on the socket it came from).
    std::optional<std::string> answer(const core::control::Request& r) {
        namespace control = core::control;
        const std::lock_guard lock(shared_.tunnel);
        switch (r.kind) {
        case control::Kind::Status:
            return control::response(r, 200, "application/json",
                                     core::to_json(core::snapshot(tunnel_, status_meta(), clock_)));
        case control::Kind::Metrics:
            return control::response(r, 200, "text/plain; version=0.0.4; charset=utf-8",
                                     core::to_prometheus(core::snapshot(tunnel_, status_meta(), clock_)));
        case control::Kind::Link: {
            for (core::LinkIndex i = 0; i < tunnel_.link_count(); ++i) {
                if (tunnel_.link(i).removed || tunnel_.link(i).settings.name != r.link) continue;
                tunnel_.set_admin(i, r.admin);
                for (const auto& e : tunnel_.take_events()) report(e);
                update_title();
                return control::response(
                    r, 200, "application/json",
                    nlohmann::json{{"ok", true}, {"message", fmt::format("link {} is now {}", r.link, core::to_string(r.admin))}}.dump() + "\n");
            }
            control::Request e = r;
            e.http_status = 404;
            e.error = fmt::format("no link named '{}'", r.link);
            return control::error_response(e);
        }
        case control::Kind::Reload: {
            if (auto sent = channel_.send(msg::Reload{}); !sent) {
                control::Request e = r;
                e.http_status = 503;
                e.error = "cannot reach the privileged process";
                return control::error_response(e);
            }
            return std::nullopt;  // answered when priv sends ReloadResult
        }
        case control::Kind::Error:
            break;
        }
        return control::error_response(r);
    }

    // The packet paths seal after the lock (core/seal_queue.hpp).
    void on_tun(std::span<core::Buffer*> packets, core::Io& io) override {
        {
            const TunnelCall call(shared_, tunnel_, io_, io, seals_);
            tunnel_.on_tun_packets(packets, io_);
        }
        seals_.flush(io_);
    }
    void on_datagrams(core::LinkIndex link, std::span<core::Datagram> datagrams, core::Io& io) override {
        open_unlocked(shared_, tunnel_, opens_, link, datagrams);
        {
            const TunnelCall call(shared_, tunnel_, io_, io, seals_);
            tunnel_.on_datagrams(link, datagrams, io_, &opens_);
        }
        seals_.flush(io_);
    }
    void on_send_error(core::LinkIndex link, int error) override {
        const std::lock_guard lock(shared_.tunnel);
        // A link whose socket was closed for a renewal (ask_renewal()) sends
        // into nothing until the fresh one comes: not the link's error.
        if (error == EBADF && link < sockets_->size() && (*sockets_)[link].empty()) return;
        tunnel_.on_send_error(link, error);
    }
    void on_tun_write_error(int error) override {
        const std::lock_guard lock(shared_.tunnel);
        tunnel_.on_tun_write_error(error);
    }
    void on_gso_refused(core::LinkIndex link, int error) override {
        std::unique_lock lock(shared_.tunnel);
        const std::string name = link < tunnel_.link_count() ? tunnel_.link(link).settings.name : std::to_string(link);
        lock.unlock();
        log_.warn("link {}: the kernel refuses UDP segmentation offload ({}{}); sending one datagram per call on "
                  "this socket",
                  name, std::strerror(error), error == EIO ? ": no checksum offload on the outgoing device" : "");
    }

    core::Time on_timer(core::Io& io) override {
        mailbox_.drain(io, false);
        if (loop_ != nullptr) retiring_.release_quiet(*loop_);
        core::Time next;
        std::vector<core::LinkIndex> renewals;
        std::vector<core::LinkEvent> events;
        {
            const TunnelCall call(shared_, tunnel_, io_, io, seals_);
            next = tunnel_.on_timer(io_, core::SpaceOwner{0, workers_});
            renewals = tunnel_.take_socket_renewals();
            events = tunnel_.take_events();
            if (!events.empty()) update_title();
        }
        seals_.flush(io_);
        // What goes to priv goes after the lock: a priv slow to read would
        // otherwise hold up every thread's packets, not only this one's.
        for (const core::LinkIndex i : renewals) ask_renewal(i);
        for (const auto& e : events) report(e);
        if (control_ != nullptr) next = std::min(next, control_->on_timer());
        return next;
    }

    void on_readable(int fd, core::Io& io) override {
        if (control_ != nullptr && fd == control_->fd()) {
            control_->on_ready();  // answer() takes the lock
            return;
        }
        if (fd == mailbox_.fd()) {
            // Woken: another thread left news in the Tunnel, which on_timer()
            // takes this turn, or stopped.
            mailbox_.drain(io, true);
            return;
        }
        if (fd == signal_fd_) {
            signalfd_siginfo si{};
            while (read(signal_fd_, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                    log_.info("worker: signal {}, stopping", si.ssi_signo);
                    stop();
                }
                if (si.ssi_signo == SIGUSR1) {
                    const std::lock_guard lock(shared_.tunnel);
                    log_stats();
                }
                // SIGHUP is priv's business (reload); the rest are ignored.
            }
            return;
        }
        const std::lock_guard lock(shared_.tunnel);
        io_.bind(io);
        for (int i = 0; i < 256 && running(); ++i) {
            auto r = channel_.receive(true);
            if (r && r->again) return;
            if (!r || r->bytes.empty()) {
                // priv is gone: a worker must never outlive it.
                stop();
                return;
            }
            auto m = msg::decode(r->bytes);
            if (!m || !from_priv(*m, std::move(r->fd), io_)) {
                log_.error("worker: unexpected message from priv; stopping");
                stop();
            }
        }
    }

    bool running() const override { return shared_.running.load(std::memory_order_relaxed); }
    void stop() { shared_.stop(); }

private:
    // A message priv pushed: a reload, or the outcome of one. false: not one
    // priv may send now.
    bool from_priv(const msg::Any& m, Fd fd, core::Io& io) {
        if (group_) {
            // The rest of a group, and nothing else, until it is complete.
            const auto* more = std::get_if<msg::LinkSocket>(&m);
            if (more == nullptr || !group_->fds.add(more->index, more->thread, std::move(fd))) return false;
            return group_->fds.complete() ? group_done() : true;
        }
        if (const auto* begin = std::get_if<msg::ReloadBegin>(&m)) {
            if (reload_) return false;
            reload_.emplace(PendingReload{*begin, {}});
            return !fd;
        }
        if (const auto* update = std::get_if<msg::LinkUpdate>(&m)) {
            if (!reload_) return false;
            const bool needs_fd = update->op == msg::LinkUpdate::Add || update->op == msg::LinkUpdate::Replace;
            if (needs_fd != static_cast<bool>(fd)) return false;
            if (!needs_fd) {
                reload_->updates.emplace_back(*update, std::vector<Fd>{});
                return true;
            }
            return begin_group(update->link.index, std::move(fd), *update);
        }
        if (std::holds_alternative<msg::ReloadEnd>(m)) {
            if (!reload_ || fd) return false;
            msg::ReloadDone done;
            done.ok = apply_reload(io) ? 1 : 0;
            reload_.reset();
            if (auto s = channel_.send(done); !s) return false;
            return true;
        }
        if (const auto* renewed = std::get_if<msg::LinkRenewed>(&m)) {
            const core::LinkIndex i = renewed->index;
            if (i >= renewing_.size() || !renewing_[i] || (renewed->error == 0) != static_cast<bool>(fd)) return false;
            if (renewed->error != 0) return on_renewed(*renewed, {});
            return begin_group(i, std::move(fd), *renewed);
        }
        if (const auto* result = std::get_if<msg::ReloadResult>(&m)) {
            if (fd) return false;
            const std::string text(result->text, result->length);
            if (control_ != nullptr) {
                control_->answer_waiting([&](const core::control::Request& r) {
                    namespace control = core::control;
                    if (result->ok == 1) {
                        return control::response(r, 200, "application/json",
                                                 nlohmann::json{{"ok", true}, {"message", text}}.dump() + "\n");
                    }
                    control::Request e = r;
                    e.http_status = 409;
                    e.error = text;
                    return control::error_response(e);
                });
            }
            return true;
        }
        return false;
    }

    // Applies what priv pushed, all at once (nothing runs in between).
    bool apply_reload(core::Io& io) {
        const msg::ReloadBegin& b = reload_->begin;
        bool ok = true;
        if (b.has_key == 1) {
            core::SecretKey key;
            std::memcpy(key.data(), b.psk, key.size());
            sodium_memzero(const_cast<uint8_t*>(b.psk), sizeof b.psk);
            tunnel_.set_psk(std::move(key));
        }
        tunnel_.set_general(b.cleartext_data == 1, b.mtu, b.reorder_buffer_size, io);
        for (auto& [u, fd] : reload_->updates) {
            const core::LinkIndex i = u.link.index;
            auto settings = to_link_settings(u.link);
            Status s;
            switch (u.op) {
            case msg::LinkUpdate::Add:
                // Checked before the sockets go to the loops, which would
                // otherwise keep sockets for a link that is not there.
                if (!tunnel_.can_add_link(i)) {
                    s = fail(fmt::format("link index {} is in use", i));
                    break;
                }
                s = install_socket(i, std::move(fd));
                if (s) (void)tunnel_.add_link(i, settings);
                break;
            case msg::LinkUpdate::Replace:
                s = install_socket(i, std::move(fd));
                tunnel_.update_link(i, settings);
                tunnel_.reset_link(i);
                break;
            case msg::LinkUpdate::Update:
                tunnel_.update_link(i, settings);
                break;
            case msg::LinkUpdate::Remove:
                s = install_socket(i, {});
                tunnel_.remove_link(i);
                break;
            }
            if (!s) {
                log_.error("worker: reload of link {}: {}", settings.name, s.error().message);
                ok = false;
                continue;
            }
            if (fixed_port_.size() <= i) fixed_port_.resize(i + 1);
            fixed_port_[i] = u.link.fixed_port == 1;
            set_addresses(i, u.link.local, u.link.remote);
        }
        meta_.last_reload_unix = b.reload_unix;
        for (const auto& e : tunnel_.take_events()) report(e);
        update_title();
        return ok;
    }

    // Link i's sockets are now `fds` (one per thread; empty: none), in every
    // thread's loop (socket t in thread t's) and here: a reload's Add,
    // Replace and Remove, a renewal, and a renewal's closing alike. The old
    // ones close once no loop uses them: every thread has taken its own out
    // and has no request left on them (RetiringSockets, in each thread's
    // loop); then `closed` runs, in the thread that closed them.
    Status install_socket(core::LinkIndex i, std::vector<Fd> fds, std::function<void()> closed = {}) {
        if (!fds.empty() && fds.size() != workers_) return fail("a socket group of the wrong size");
        if (auto s = loop_->set_link_fd(i, fds.empty() ? -1 : fds[0].get()); !s) return s;
        if (sockets_->size() <= i) sockets_->resize(i + 1);
        auto old = std::make_shared<Retired>(std::move((*sockets_)[i]), std::move(closed));
        (*sockets_)[i] = std::move(fds);
        for (size_t t = 1; t < workers_; ++t) {
            const int fd = (*sockets_)[i].empty() ? -1 : (*sockets_)[i][t].get();
            ThreadHandler* h = threads_[t - 1];
            shared_.peers[t].mailbox->post([h, i, fd, old] { h->install(i, fd, old); });
        }
        // This loop's requests on them hold them too (RetiringSockets).
        retiring_.hold(i, std::move(old));
        return {};
    }

    // A link's old sockets, closed when the last thread is done with them
    // (the last command holding them is dropped), and then `closed` (in that
    // thread: it may only post).
    struct Retired {
        Retired(std::vector<Fd> f, std::function<void()> c) : fds(std::move(f)), closed(std::move(c)) {}
        Retired(const Retired&) = delete;
        Retired& operator=(const Retired&) = delete;
        ~Retired() {
            fds.clear();
            if (closed) closed();
        }
        std::vector<Fd> fds;
        std::function<void()> closed;
    };

    // A message that carries member 0 of link i's socket group; the others
    // follow (priv/messages.hpp), and then `then` is applied.
    bool begin_group(core::LinkIndex i, Fd first, std::variant<msg::LinkUpdate, msg::LinkRenewed> then) {
        group_.emplace(PendingGroup{FdGroup(i, workers_, std::move(first)), then});
        if (!group_->fds.valid()) return false;
        return group_->fds.complete() ? group_done() : true;
    }

    bool group_done() {
        PendingGroup done = std::move(*group_);
        group_.reset();
        std::vector<Fd> fds = done.fds.take();
        if (const auto* update = std::get_if<msg::LinkUpdate>(&done.then)) {
            reload_->updates.emplace_back(*update, std::move(fds));
            return true;
        }
        return on_renewed(std::get<msg::LinkRenewed>(done.then), std::move(fds));
    }

    // For status: where link i's socket is bound and connected.
    template <size_t N>
    void set_addresses(core::LinkIndex i, const char (&local)[N], const char (&remote)[N]) {
        if (meta_.local.size() <= i) meta_.local.resize(i + 1);
        if (meta_.remote.size() <= i) meta_.remote.resize(i + 1);
        meta_.local[i] = msg::get_string(local);
        meta_.remote[i] = msg::get_string(remote);
    }

    // The Tunnel wants a fresh socket for link i (core/renewal.hpp). One
    // request per link at a time; the answer comes as LinkRenewed.
    void ask_renewal(core::LinkIndex i) {
        if (renewing_.size() <= i) renewing_.resize(i + 1, false);
        if (renewing_[i]) return;
        renewing_[i] = true;
        // priv binds the fresh group where this one is, when the port is
        // configured: it must be free (priv/link_socket.hpp), so the request
        // goes once every thread has closed its socket of the group. The
        // link is dead anyway; it sends into nothing until the fresh one
        // comes.
        if (i < fixed_port_.size() && fixed_port_[i] && i < sockets_->size() && !(*sockets_)[i].empty()) {
            Mailbox* self = &mailbox_;
            auto s = install_socket(i, {}, [this, self, i] { self->post([this, i] { send_renewal(i); }); });
            if (s) return;
            log_.error("worker: link {}: closing the socket: {}", tunnel_.link(i).settings.name, s.error().message);
        }
        send_renewal(i);
    }

    void send_renewal(core::LinkIndex i) {
        msg::RenewLink r;
        r.index = i;
        if (auto s = channel_.send(r); !s) {
            log_.error("worker: cannot reach priv: {}", s.error().message);
            stop();
        }
    }

    // priv's answer to ask_renewal(), with the fresh group unless an error
    // (from_priv() checked that it answers a question we asked).
    bool on_renewed(const msg::LinkRenewed& m, std::vector<Fd> fds) {
        const core::LinkIndex i = m.index;
        renewing_[i] = false;
        if (i >= tunnel_.link_count() || tunnel_.link(i).removed) return true;  // gone meanwhile: fd closes
        const auto& name = tunnel_.link(i).settings.name;
        if (m.error != 0) {
            // priv says why in its own log when it tried and failed; the
            // link asks again after its backoff.
            log_.info("link {}: no fresh socket this time ({}); asking again later", name,
                      m.error == EBUSY    ? "a reload is under way"
                      : m.error == EAGAIN ? "asked too soon"
                                          : "priv could not make one, see above");
            return true;
        }
        if (auto s = install_socket(i, std::move(fds)); !s) {
            log_.error("worker: link {}: fresh socket: {}", name, s.error().message);
            return true;
        }
        set_addresses(i, m.local, m.remote);
        log_.notice("link {}: fresh socket {} -> {}", name, msg::get_string(m.local), msg::get_string(m.remote));
        tunnel_.socket_renewed(i, endpoint(m.peer, m.peer_len));
        for (const auto& e : tunnel_.take_events()) report(e);
        update_title();
        return true;
    }

    struct PendingReload {
        msg::ReloadBegin begin;
        std::vector<std::pair<msg::LinkUpdate, std::vector<Fd>>> updates;
    };
    // A socket group priv is sending, and what it is for.
    struct PendingGroup {
        FdGroup fds;
        std::variant<msg::LinkUpdate, msg::LinkRenewed> then;
    };

    // SIGUSR1: one line per link and one for the device, to the log.
    void log_stats() {
        for (core::LinkIndex i = 0; i < tunnel_.link_count(); ++i) {
            const auto& l = tunnel_.link(i);
            if (l.removed) continue;
            const auto& st = l.stats;
            log_.notice("link {}: {} peer {} rtt {} ms, tx {} pkts {} bytes, rx {} pkts {} bytes, data tx {} rx {}, "
                        "drops auth {} replay {} malformed {} no-session {} peer {} admin {} ratelimit {}, "
                        "send errors {}",
                        l.settings.name, core::to_string(l.state),
                        l.settings.connected ? std::string("(connected)") : l.peer.to_string(),
                        l.has_rtt ? std::chrono::duration_cast<std::chrono::microseconds>(l.srtt).count() / 1000.0 : -1.0,
                        st.tx_packets, st.tx_bytes, st.rx_packets, st.rx_bytes, st.tx_data, st.rx_data,
                        st.drop_auth, st.drop_replay, st.drop_malformed, st.drop_no_session, st.drop_peer,
                        st.drop_admin, st.drop_ratelimit, st.send_errors);
        }
        const auto& t = tunnel_.stats();
        log_.notice("device: read {} written {}, drops no-link {} oversize {} no-buffer {}, write errors {}", t.tun_rx,
                    t.tun_tx, t.drop_no_link, t.drop_oversize, t.drop_no_buffer, t.tun_write_errors);
        if (loop_ != nullptr && meta_.offload != "off") {
            const uring::LoopStats st = loop_stats();
            log_.notice("device offload {}: super-packets read {} written {} (merged {}), reads dropped bad {} "
                        "no-buffer {}",
                        meta_.offload, st.tun_super_reads, st.tun_super_writes, st.tun_merged, st.tun_bad_reads,
                        st.tun_split_no_buffer);
        }
        if (loop_ != nullptr && meta_.udp_offload) {
            const uring::LoopStats st = loop_stats();
            log_.notice("link offload: gso sends {} segments {} refused {}, gro receives {} segments {}, dropped "
                        "malformed {} no-buffer {}",
                        st.gso_sends, st.gso_segments, st.gso_refused, st.gro_receives, st.gro_segments,
                        st.gro_dropped, st.gro_no_buffer);
        }
    }

    void report(const core::LinkEvent& e) {
        const bool up = e.state == core::LinkState::Up;
        if (up == reported_up(e.link)) return;
        set_reported_up(e.link, up);
        msg::LinkState m;
        m.index = e.link;
        m.up = up ? 1 : 0;
        if (auto s = channel_.send(m); !s) {
            log_.error("worker: cannot reach priv: {}", s.error().message);
            stop();
        }
    }
    bool reported_up(core::LinkIndex i) const { return i < up_.size() && up_[i]; }
    void set_reported_up(core::LinkIndex i, bool up) {
        if (up_.size() <= i) up_.resize(i + 1, false);
        up_[i] = up;
    }

    void update_title() {
        if (natural_title_) return;
        std::string t = "mlvpn: " + meta_.name;
        for (core::LinkIndex i = 0; i < tunnel_.link_count(); ++i) {
            const auto& l = tunnel_.link(i);
            if (l.removed) continue;
            t += l.state == core::LinkState::Up ? " @" : " !";
            t += l.settings.name;
        }
        title_.set(t);
    }

    core::Tunnel& tunnel_;
    WorkerShared& shared_;
    Mailbox& mailbox_;
    ThreadIo io_;  // thread 0's, bound to the loop's Io under the lock
    core::SealQueue seals_;
    core::OpenBatch opens_;
    Channel& channel_;
    int signal_fd_;
    core::Logger& log_;
    ProcTitle& title_;
    core::StatusMeta meta_;
    const core::Clock& clock_;
    bool natural_title_;
    ControlServer* control_ = nullptr;
    uring::Loop* loop_ = nullptr;
    std::vector<std::vector<Fd>>* sockets_ = nullptr;
    std::vector<bool> fixed_port_;  // by link: msg::Link::fixed_port
    uint32_t workers_ = 1;
    std::vector<ThreadHandler*> threads_;  // threads 1..N-1
    std::optional<PendingReload> reload_;
    std::optional<PendingGroup> group_;
    std::vector<bool> renewing_;  // a RenewLink is waiting for its answer
    RetiringSockets retiring_;    // this loop's hold on links' previous sockets
    std::vector<bool> up_;
};

uint32_t slot_size_for(uint32_t mtu) {
    const uint32_t need = static_cast<uint32_t>(core::wire::kHeadroom) + mtu;
    return (need + 63) / 64 * 64;
}

}  // namespace

int worker_main(Channel channel, const WorkerParams& params, ProcTitle& title) {
    // Die with priv, even if it is killed outright.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != params.priv_pid) return 1;

    uring::SystemClock clock;
    StderrSink stderr_sink(clock);
    if (auto s = isolate_descriptors(channel, params.debug); !s) {
        fmt::print(stderr, "mlvpn worker: {}\n", s.error().message);
        return 1;
    }
    ChannelSink channel_sink(channel);
    core::Logger log(params.debug ? static_cast<core::LogSink&>(stderr_sink) : channel_sink, params.log_level);
    for (const auto& t : params.debug_tokens) log.enable_token(t);

    if (auto s = enter_sandbox(params.identity, params.chroot_dir); !s) {
        log.error("worker: {}", s.error().message);
        return 1;
    }
    auto setup = fetch_setup(channel);
    if (!setup) {
        log.error("worker: {}", setup.error().message);
        return 1;
    }
    auto signals = make_signalfd();
    if (!signals) {
        log.error("worker: {}", signals.error().message);
        return 1;
    }

    const uint32_t workers = setup->workers;
    WorkerShared shared;
    std::vector<std::unique_ptr<Mailbox>> mailboxes;
    for (uint32_t t = 0; t < workers; ++t) {
        auto m = Mailbox::make();
        if (!m) {
            log.error("worker: {}", m.error().message);
            return 1;
        }
        mailboxes.push_back(std::move(*m));
    }
    shared.peers.resize(workers);
    for (uint32_t t = 0; t < workers; ++t) shared.peers[t].mailbox = mailboxes[t].get();
    shared.loop_stats.resize(workers);
    shared.cross_stats.resize(workers);

    uring::LoopConfig lc;
    lc.tun_fd = setup->tun[0].get();
    lc.tun_vnet_hdr = setup->offload != TunOffload::None;
    lc.tun_uso = setup->offload == TunOffload::TcpUdp;
    lc.udp_offload = setup->udp_offload;
    for (const auto& s : setup->sockets) lc.link_fds.push_back(s[0].get());
    lc.slot_size = slot_size_for(setup->settings.mtu);
    lc.slot_count = lc.slot_size <= 4096 ? 4096 : std::max<uint32_t>(256, (32u << 20) / lc.slot_size);
    lc.batch = 32;
    // The reorder buffer holds pool buffers: it must know how many there are
    // (each space's packets come to one thread, and so into one pool).
    setup->settings.pool_slots = lc.slot_count;
    core::Tunnel tunnel(std::move(setup->settings), std::move(setup->psk), clock, log);
    WorkerHandler handler(tunnel, shared, *mailboxes[0], channel, signals->get(), log, title, setup->meta, clock,
                          params.natural_title);
    std::optional<ControlServer> control;
    if (!setup->controls.empty()) {
        auto made = ControlServer::make(std::move(setup->controls),
                                        [&handler](const core::control::Request& r) { return handler.answer(r); },
                                        clock, log);
        if (!made) {
            log.error("worker: {}", made.error().message);
            return 1;
        }
        control.emplace(std::move(*made));
        handler.set_control(&*control);
    }
    // Thread 0's loop: everything the others have, and priv's channel,
    // signals, control clients.
    uring::LoopConfig lc0 = lc;
    lc0.watch_fds = {channel.fd(), signals->get(), mailboxes[0]->fd()};
    if (control) lc0.watch_fds.push_back(control->fd());
    uring::UringUnavailable why;
    auto loop = uring::make_uring_loop(lc0, clock, &why);
    if (!loop && why.unavailable) {
        log.warn("io_uring is not available ({}); using epoll", loop.error().message);
        loop = uring::make_epoll_loop(lc0, clock);
    }
    if (!loop) {
        log.error("worker: {}", loop.error().message);
        return 1;
    }
    shared.peers[0].loop = loop->get();
    const bool on_uring = std::string_view((*loop)->name()) == "io_uring";
    const LoopBackend backend = on_uring ? LoopBackend::io_uring : LoopBackend::epoll;

    // The last layers (Landlock, rlimits, seccomp) before any packet
    // (priv/lockdown.hpp): Landlock before the threads, which inherit it.
    auto landlock = lock_down_files();
    if (!landlock) {
        log.error("worker: {}", landlock.error().message);
        return 1;
    }

    // Threads 1..N-1: each makes its own loop (a ring serves the thread that
    // made it), says so, and waits for the word to start.
    WorkerThreads threads(workers);
    for (uint32_t t = 1; t < workers; ++t) {
        uring::LoopConfig lct = lc;
        lct.tun_fd = setup->tun[t].get();
        for (size_t i = 0; i < setup->sockets.size(); ++i) lct.link_fds[i] = setup->sockets[i][t].get();
        lct.watch_fds = {mailboxes[t]->fd()};
        threads.start(t, [&, t, lct](WorkerThreads::Slot& slot) {
            auto made = on_uring ? uring::make_uring_loop(lct, clock) : uring::make_epoll_loop(lct, clock);
            if (!made) {
                slot.made(fail(fmt::format("thread {}: {}", t, made.error().message)));
                return;
            }
            std::unique_ptr<uring::Loop> own = std::move(*made);
            shared.peers[t].loop = own.get();
            ThreadHandler h(t, tunnel, shared, *own, *mailboxes[t], log);
            slot.handler = &h;
            if (!slot.made({})) return;  // told not to start
            Status s = lock_down_calls(backend);
            if (s) s = own->run(h);
            if (!s) log.error("worker thread {}: {}", t, s.error().message);
            shared.stop();
            // The loop (its pool) stays until every thread is out of its
            // loop: another may still be giving a buffer back to it.
            slot.wait_end();
        });
    }
    if (auto made = threads.wait_made(); !made) {
        log.error("worker: {}", made.error().message);
        threads.end();
        return 1;
    }
    auto limits = lock_down_limits();
    Status locked = limits ? lock_down_calls(backend) : Status(tl::unexpected(limits.error()));
    if (!locked) {
        log.error("worker: {}", locked.error().message);
        threads.end();
        return 1;
    }
    log_lockdown(backend, *landlock, *limits, workers, log);

    handler.set_backend((*loop)->name());
    handler.set_loop(loop->get(), &setup->sockets, setup->fixed_port, workers, threads.handlers());
    threads.go();
    msg::Ready ready;
    ready.backend = on_uring ? 1 : 2;
    if (auto s = channel.send(ready); !s) {
        log.error("worker: {}", s.error().message);
        shared.stop();
        threads.end();
        return 1;
    }
    log.notice("worker running as {} on {} (offload {}, udp offload {}) with {} link(s), {} backend, {} thread{}",
               params.identity.name, setup->ifname, to_string(setup->offload), lc.udp_offload ? "on" : "off",
               tunnel.link_count(), (*loop)->name(), workers, workers == 1 ? "" : "s");
    const Status ran = (*loop)->run(handler);
    shared.stop();
    threads.end();
    if (!ran) {
        log.error("worker: {}", ran.error().message);
        return 1;
    }
    return 0;
}

}  // namespace mlvpn::priv
