// SPDX-License-Identifier: BSD-2-Clause
#include "priv/worker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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
    WorkerHandler(core::Tunnel& tunnel, Channel& channel, int signal_fd, core::Logger& log, ProcTitle& title,
                  core::StatusMeta meta, const core::Clock& clock, bool natural_title)
        : tunnel_(tunnel),
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
    void set_loop(uring::Loop* loop, std::vector<std::vector<Fd>>* sockets, std::vector<bool> fixed_port,
                  uint32_t workers) {
        loop_ = loop;
        sockets_ = sockets;
        fixed_port_ = std::move(fixed_port);
        workers_ = workers;
    }
    void set_backend(const char* backend) { meta_.backend = backend; }

    // The loop's TUN offload counters, for status (they live in the loop).
    core::StatusMeta status_meta() const {
        core::StatusMeta m = meta_;
        if (loop_ != nullptr) {
            const uring::LoopStats& st = loop_->stats();
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

    void on_tun(std::span<core::Buffer*> packets, core::Io& io) override { tunnel_.on_tun_packets(packets, io); }
    void on_datagrams(core::LinkIndex link, std::span<core::Datagram> datagrams, core::Io& io) override {
        tunnel_.on_datagrams(link, datagrams, io);
    }
    void on_send_error(core::LinkIndex link, int error) override {
        // A link whose socket was closed for a renewal (ask_renewal()) sends
        // into nothing until the fresh one comes: not the link's error.
        if (error == EBADF && link < sockets_->size() && (*sockets_)[link].empty()) return;
        tunnel_.on_send_error(link, error);
    }
    void on_tun_write_error(int error) override { tunnel_.on_tun_write_error(error); }
    void on_gso_refused(core::LinkIndex link, int error) override {
        const std::string name = link < tunnel_.link_count() ? tunnel_.link(link).settings.name : std::to_string(link);
        log_.warn("link {}: the kernel refuses UDP segmentation offload ({}{}); sending one datagram per call on "
                  "this socket",
                  name, std::strerror(error), error == EIO ? ": no checksum offload on the outgoing device" : "");
    }

    core::Time on_timer(core::Io& io) override {
        core::Time next = tunnel_.on_timer(io);
        if (control_ != nullptr) next = std::min(next, control_->on_timer());
        for (const core::LinkIndex i : tunnel_.take_socket_renewals()) ask_renewal(i);
        auto events = tunnel_.take_events();
        if (!events.empty()) {
            for (const auto& e : events) report(e);
            update_title();
        }
        return next;
    }

    void on_readable(int fd, core::Io& io) override {
        if (control_ != nullptr && fd == control_->fd()) {
            control_->on_ready();
            return;
        }
        if (fd == signal_fd_) {
            signalfd_siginfo si{};
            while (read(signal_fd_, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                    log_.info("worker: signal {}, stopping", si.ssi_signo);
                    running_ = false;
                }
                if (si.ssi_signo == SIGUSR1) log_stats();
                // SIGHUP is priv's business (reload); the rest are ignored.
            }
            return;
        }
        for (int i = 0; i < 256 && running_; ++i) {
            auto r = channel_.receive(true);
            if (r && r->again) return;
            if (!r || r->bytes.empty()) {
                // priv is gone: a worker must never outlive it.
                running_ = false;
                return;
            }
            auto m = msg::decode(r->bytes);
            if (!m || !from_priv(*m, std::move(r->fd), io)) {
                log_.error("worker: unexpected message from priv; stopping");
                running_ = false;
            }
        }
    }

    bool running() const override { return running_; }

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
                s = loop_->set_link_fd(i, fd[0].get());
                if (s && !tunnel_.add_link(i, settings)) s = fail(fmt::format("link index {} is in use", i));
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
                s = loop_->set_link_fd(i, -1);
                tunnel_.remove_link(i);
                break;
            }
            if (!s) {
                log_.error("worker: reload of link {}: {}", settings.name, s.error().message);
                ok = false;
                continue;
            }
            if (sockets_->size() <= i) sockets_->resize(i + 1);
            if (fixed_port_.size() <= i) fixed_port_.resize(i + 1);
            if (u.op == msg::LinkUpdate::Add) (*sockets_)[i] = std::move(fd);
            if (u.op == msg::LinkUpdate::Remove) (*sockets_)[i].clear();
            fixed_port_[i] = u.link.fixed_port == 1;
            set_addresses(i, u.link.local, u.link.remote);
        }
        meta_.last_reload_unix = b.reload_unix;
        for (const auto& e : tunnel_.take_events()) report(e);
        update_title();
        return ok;
    }

    // Link i's sockets are now `fds`, in the loop (this thread's: socket 0)
    // and here (the old ones are closed): a reload's Replace and a renewal
    // alike.
    Status install_socket(core::LinkIndex i, std::vector<Fd> fds) {
        if (auto s = loop_->set_link_fd(i, fds[0].get()); !s) return s;
        if (sockets_->size() <= i) sockets_->resize(i + 1);
        (*sockets_)[i] = std::move(fds);
        return {};
    }

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
        // priv binds the fresh group where this one is, when the port is
        // configured: it must be free (priv/link_socket.hpp). The link is
        // dead anyway; it sends into nothing until the fresh one comes.
        if (i < fixed_port_.size() && fixed_port_[i] && i < sockets_->size() && !(*sockets_)[i].empty()) {
            if (auto s = loop_->set_link_fd(i, -1); !s) {
                log_.error("worker: link {}: closing the socket: {}", tunnel_.link(i).settings.name, s.error().message);
            } else {
                (*sockets_)[i].clear();
            }
        }
        msg::RenewLink r;
        r.index = i;
        if (auto s = channel_.send(r); !s) {
            log_.error("worker: cannot reach priv: {}", s.error().message);
            running_ = false;
            return;
        }
        renewing_[i] = true;
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
            const uring::LoopStats& st = loop_->stats();
            log_.notice("device offload {}: super-packets read {} written {} (merged {}), reads dropped bad {} "
                        "no-buffer {}",
                        meta_.offload, st.tun_super_reads, st.tun_super_writes, st.tun_merged, st.tun_bad_reads,
                        st.tun_split_no_buffer);
        }
        if (loop_ != nullptr && meta_.udp_offload) {
            const uring::LoopStats& st = loop_->stats();
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
            running_ = false;
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
    std::optional<PendingReload> reload_;
    std::optional<PendingGroup> group_;
    std::vector<bool> renewing_;  // a RenewLink is waiting for its answer
    bool running_ = true;
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

    // The threads come with issue #6's next step: until then a worker that
    // was given more queues and sockets than it reads would lose what the
    // kernel steers to the others.
    if (setup->workers != 1) {
        log.error("worker: priv gave descriptors for {} threads; this worker runs one", setup->workers);
        return 1;
    }
    uring::LoopConfig lc;
    lc.tun_fd = setup->tun[0].get();
    lc.tun_vnet_hdr = setup->offload != TunOffload::None;
    lc.tun_uso = setup->offload == TunOffload::TcpUdp;
    lc.udp_offload = setup->udp_offload;
    for (const auto& s : setup->sockets) lc.link_fds.push_back(s[0].get());
    lc.watch_fds = {channel.fd(), signals->get()};
    lc.slot_size = slot_size_for(setup->settings.mtu);
    lc.slot_count = lc.slot_size <= 4096 ? 4096 : std::max<uint32_t>(256, (32u << 20) / lc.slot_size);
    lc.batch = 32;
    // The reorder buffer holds pool buffers: it must know how many there are.
    setup->settings.pool_slots = lc.slot_count;
    core::Tunnel tunnel(std::move(setup->settings), std::move(setup->psk), clock, log);
    WorkerHandler handler(tunnel, channel, signals->get(), log, title, setup->meta, clock, params.natural_title);
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
        lc.watch_fds.push_back(control->fd());
    }
    uring::UringUnavailable why;
    auto loop = uring::make_uring_loop(lc, clock, &why);
    if (!loop && why.unavailable) {
        log.warn("io_uring is not available ({}); using epoll", loop.error().message);
        loop = uring::make_epoll_loop(lc, clock);
    }
    if (!loop) {
        log.error("worker: {}", loop.error().message);
        return 1;
    }
    // The last layers (rlimits, Landlock, seccomp) before any packet.
    const bool on_uring = std::string_view((*loop)->name()) == "io_uring";
    if (auto s = lock_down_worker(on_uring ? LoopBackend::io_uring : LoopBackend::epoll, log); !s) {
        log.error("worker: {}", s.error().message);
        return 1;
    }

    handler.set_backend((*loop)->name());
    handler.set_loop(loop->get(), &setup->sockets, setup->fixed_port, setup->workers);
    msg::Ready ready;
    ready.backend = std::string_view((*loop)->name()) == "io_uring" ? 1 : 2;
    if (auto s = channel.send(ready); !s) {
        log.error("worker: {}", s.error().message);
        return 1;
    }
    log.notice("worker running as {} on {} (offload {}, udp offload {}) with {} link(s), {} backend",
               params.identity.name, setup->ifname, to_string(setup->offload), lc.udp_offload ? "on" : "off",
               tunnel.link_count(), (*loop)->name());
    if (auto s = (*loop)->run(handler); !s) {
        log.error("worker: {}", s.error().message);
        return 1;
    }
    return 0;
}

}  // namespace mlvpn::priv
