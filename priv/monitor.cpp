// SPDX-License-Identifier: BSD-2-Clause
#include "priv/monitor.hpp"

#include "core/reorder.hpp"
#include <sodium.h>

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>


namespace mlvpn::priv {

namespace {

// How long a stopping worker gets before SIGKILL.
constexpr auto kWorkerStopGrace = std::chrono::seconds(3);
// How long hooks for the final transitions may run at exit.
constexpr auto kExitHookLimit = std::chrono::seconds(10);

// `first` with socket 0 of link `index`'s group attached (none when the
// group is empty), then one LinkSocket(index, t) per further socket: how
// priv hands over a group (priv/messages.hpp).
template <class M>
Status send_with_group(Channel& channel, const M& first, const std::vector<Fd>& fds, uint32_t index) {
    if (auto s = channel.send(first, fds.empty() ? -1 : fds[0].get()); !s) return s;
    for (uint32_t t = 1; t < fds.size(); ++t) {
        msg::LinkSocket more;
        more.index = index;
        more.thread = t;
        if (auto s = channel.send(more, fds[t].get()); !s) return s;
    }
    return {};
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    return "stopped";
}

}  // namespace

Monitor::Monitor(MonitorParams params, Channel channel, pid_t worker, int signal_fd,
                 std::unique_ptr<HookRunner>& hooks, core::Logger& log, const core::Clock& clock)
    : p_(std::move(params)),
      channel_(std::move(channel)),
      worker_(worker),
      signal_fd_(signal_fd),
      hooks_(hooks),
      log_(log),
      clock_(clock),
      policy_(p_.config.links.size(), p_.controls.size(), p_.config.mode == core::Mode::Client),
      frame_capacity_(p_.resources.frame_mtu) {
    for (uint32_t i = 0; i < p_.config.links.size(); ++i) {
        slots_.of_config.push_back(i);
        slots_.names.push_back(p_.config.links[i].name);
    }
}

bool Monitor::violation(const std::string& what) {
    log_.error("worker broke the protocol ({}); stopping", what);
    exit_status_ = 1;
    if (worker_alive_) kill(worker_, SIGKILL);
    return false;
}

bool Monitor::dispatch(const msg::Any& any, bool has_fd) {
    const bool had_up = policy_.any_link_up();
    if (auto why = policy_.admit(any, has_fd)) return violation(*why);
    const size_t links = p_.config.links.size();

    if (const auto* m = std::get_if<msg::Log>(&any)) {
        // The sinks escape control characters; the text is the worker's, untrusted.
        log_.write(static_cast<core::Level>(m->level), std::string_view(m->text, m->length));
        return true;
    }
    Status sent;
    if (std::holds_alternative<msg::GetConfig>(any)) {
        msg::Config c;
        c.mode = p_.config.mode == core::Mode::Server ? 1 : 0;
        c.tuntap = p_.config.tuntap == core::TunType::Tap ? 1 : 0;
        c.cleartext_data = p_.config.cleartext_data ? 1 : 0;
        c.debug_stderr = p_.worker_debug ? 1 : 0;
        c.mtu = p_.resources.frame_mtu;
        c.link_count = static_cast<uint32_t>(links);
        c.reorder_buffer_size = p_.config.reorder_buffer_size.value_or(core::kReorderCapacityMax);
        c.control_count = static_cast<uint32_t>(p_.controls.size());
        c.priv_pid = getpid();
        c.started_unix = p_.started_unix;
        c.log_level = static_cast<uint8_t>(p_.worker_log_level);
        c.udp_offload = p_.config.udp_offload ? 1 : 0;
        c.workers = static_cast<uint8_t>(p_.resources.workers);
        msg::set_string(c.name, p_.name);
        std::memcpy(c.psk, p_.psk.data(), sizeof c.psk);
        sent = channel_.send(c);
        sodium_memzero(c.psk, sizeof c.psk);
    } else if (const auto* get_link = std::get_if<msg::GetLink>(&any)) {
        const uint32_t i = get_link->index;
        sent = channel_.send(link_message(i, p_.config, p_.config.links[i], p_.resources.sockets[i],
                                          p_.resources.allowed_peers[i]));
    } else if (std::holds_alternative<msg::OpenTun>(any)) {
        msg::Tun t;
        msg::set_string(t.ifname, p_.resources.tun.name);
        t.offload = static_cast<uint8_t>(p_.resources.tun.offload);
        const auto& queues = p_.resources.tun.queues;
        sent = channel_.send(t, queues.empty() ? -1 : queues[0].get());
        for (uint32_t q = 1; sent && q < queues.size(); ++q) {
            msg::TunQueue more;
            more.queue = q;
            sent = channel_.send(more, queues[q].get());
        }
    } else if (const auto* open_link = std::get_if<msg::OpenLink>(&any)) {
        msg::LinkSocket ls;
        ls.index = open_link->index;
        sent = send_with_group(channel_, ls, p_.resources.sockets[ls.index].fds, ls.index);
        // priv has no use for data sockets: the worker holds the only copies.
        p_.resources.sockets[ls.index].fds.clear();
    } else if (const auto* open_control = std::get_if<msg::OpenControl>(&any)) {
        msg::ControlListener cl;
        cl.index = open_control->index;
        cl.privileged = p_.controls[open_control->index].privileged ? 1 : 0;
        sent = channel_.send(cl, p_.controls[open_control->index].fd.get());
        p_.controls[open_control->index].fd.reset();  // the worker serves it
    } else if (std::holds_alternative<msg::Reload>(any)) {
        reload("mlvpnctl reload");
    } else if (const auto* done = std::get_if<msg::ReloadDone>(&any)) {
        finish_reload(done->ok == 1);
    } else if (const auto* ready = std::get_if<msg::Ready>(&any)) {
        log_.info("worker ready ({})", ready->backend == 1 ? "io_uring" : "epoll");
        notify(&SystemdNotifier::ready);
        notify_status();
    } else if (const auto* state = std::get_if<msg::LinkState>(&any)) {
        run_link_hooks(state->index, state->up == 1, had_up);
        notify_status();
    } else if (const auto* renew = std::get_if<msg::RenewLink>(&any)) {
        sent = renew_link(renew->index);
    }
    return sent ? true : violation(sent.error().message);
}

// A client link's fresh socket, made exactly as at start (the name
// re-resolved: the server may have moved; bindhost, bindport, fwmark,
// bindinterface as configured), for a link the policy says exists.
Status Monitor::renew_link(uint32_t index) {
    msg::LinkRenewed answer;
    answer.index = index;
    const std::string& name = slots_.names[index];
    if (const auto refused = policy_.renewal_refusal(index, clock_.now())) {
        log_.info("link {}: fresh socket refused: {}", name,
                  *refused == EBUSY ? "a reload is under way" : "asked again too soon");
        answer.error = *refused;
        return channel_.send(answer);
    }
    const auto config_index = std::find(slots_.of_config.begin(), slots_.of_config.end(), index);
    if (config_index == slots_.of_config.end()) {
        // The policy knows the link; the slots do not: a bug here, not the worker's.
        log_.error("link index {}: not in the configuration; no fresh socket", index);
        answer.error = EINVAL;
        return channel_.send(answer);
    }
    const core::LinkConfig& l = p_.config.links[static_cast<size_t>(config_index - slots_.of_config.begin())];
    auto sock = open_configured_link(p_.config, l, p_.resources.workers, log_);
    if (!sock) {
        log_.warn("link {}: no fresh socket: {}", name, sock.error().message);
        answer.error = EADDRNOTAVAIL;
        return channel_.send(answer);
    }
    // The device MTU stays as it is (changing it is a reload's business): a
    // narrower path now is worth a warning, as at start.
    const uint32_t carries = payload_mtu(sock->path_mtu, sock->local.addr.sa.sa_family);
    const uint32_t frame = p_.config.tuntap == core::TunType::Tap ? kTapFrameOverhead : 0;
    if (carries < p_.resources.device_mtu + frame) {
        log_.warn("link {}: the new path carries {} bytes, less than the device MTU {}; larger packets will not cross it",
                  name, carries, p_.resources.device_mtu);
    }
    log_.notice("link {}: fresh socket for the worker, {} -> {}", name, sock->local.to_string(),
                sock->remote.to_string());
    msg::set_string(answer.local, sock->local.to_string());
    msg::set_string(answer.remote, sock->remote.to_string());
    std::memcpy(&answer.peer, &sock->remote.addr, sock->remote.len);
    answer.peer_len = sock->remote.len;
    Status sent = send_with_group(channel_, answer, sock->fds, index);
    // As with OpenLink: the worker holds the only copies.
    sock->fds.clear();
    if (p_.resources.sockets.size() <= index) p_.resources.sockets.resize(index + 1);
    p_.resources.sockets[index] = std::move(*sock);
    return sent;
}

void Monitor::notify(Status (SystemdNotifier::*what)()) {
    if (p_.notifier == nullptr) return;
    if (auto s = (p_.notifier->*what)(); !s) log_.warn("systemd notification: {}", s.error().message);
}

// STATUS= for `systemctl status`: how many links are up, and which are not.
void Monitor::notify_status() {
    if (p_.notifier == nullptr || !p_.notifier->enabled()) return;
    size_t up = 0, total = 0;
    std::string down;
    for (size_t i = 0; i < slots_.names.size(); ++i) {
        if (slots_.names[i].empty()) continue;
        ++total;
        if (policy_.link_up(i)) {
            ++up;
        } else {
            down += (down.empty() ? "" : ", ") + slots_.names[i];
        }
    }
    const std::string text = fmt::format("{} of {} links up{}", up, total, down.empty() ? "" : "; down: " + down);
    if (auto s = p_.notifier->status(text); !s) log_.warn("systemd notification: {}", s.error().message);
}

void Monitor::hook(std::vector<std::string> args) {
    if (hooks_ != nullptr && !p_.config.statuscommand.empty()) hooks_->enqueue(std::move(args));
}

void Monitor::run_link_hooks(uint32_t index, bool up, bool any_before) {
    const auto& dev = p_.resources.tun.name;
    const auto& link = slots_.names[index];
    // As mlvpn 2.3: the tunnel is up while at least one link is.
    if (up) {
        if (!any_before) hook(hook_args(dev, HookEvent::TuntapUp));
        hook(hook_args(dev, HookEvent::RtunUp, link));
    } else {
        hook(hook_args(dev, HookEvent::RtunDown, link));
        if (!policy_.any_link_up()) hook(hook_args(dev, HookEvent::TuntapDown));
    }
}

void Monitor::run_down_hooks() {
    // The links that were up go down with us: their rtun_down, then tuntap_down.
    const auto& dev = p_.resources.tun.name;
    bool any = false;
    for (size_t i = 0; i < slots_.names.size(); ++i) {
        if (!policy_.link_up(i)) continue;
        hook(hook_args(dev, HookEvent::RtunDown, slots_.names[i]));
        any = true;
    }
    if (any) hook(hook_args(dev, HookEvent::TuntapDown));
    if (hooks_ != nullptr && !hooks_->idle() && !hooks_->drain(kExitHookLimit, clock_)) {
        log_.warn("hooks still running at exit were stopped");
    }
}

bool Monitor::handle_message() {
    auto r = channel_.receive(true);
    if (r && r->again) return true;
    if (!r) return violation(r.error().message);
    if (r->bytes.empty()) {
        // The worker closed its end: it is exiting (or was killed).
        reap_worker(true);
        return false;
    }
    auto decoded = msg::decode(r->bytes);
    if (!decoded) return violation(fmt::format("malformed message of {} bytes", r->bytes.size()));
    return dispatch(*decoded, static_cast<bool>(r->fd));
}

void Monitor::reap_worker(bool wait) {
    if (!worker_alive_) return;
    int status = 0;
    const pid_t got = waitpid(worker_, &status, wait ? 0 : WNOHANG);
    if (got != worker_) return;
    worker_alive_ = false;
    worker_status_ = status;
    if (stopping_) {
        log_.info("worker {}", describe_status(status));
    } else {
        log_.error("worker {}; shutting down", describe_status(status));
        exit_status_ = 1;
    }
}

void Monitor::stop_worker() {
    if (!worker_alive_) return;
    kill(worker_, SIGTERM);
    const auto deadline = clock_.now() + kWorkerStopGrace;
    while (worker_alive_ && clock_.now() < deadline) {
        reap_worker(false);
        if (worker_alive_) usleep(20'000);
    }
    if (worker_alive_) {
        log_.warn("worker did not stop within {} s; killing it", kWorkerStopGrace.count());
        kill(worker_, SIGKILL);
        reap_worker(true);
    }
}

void Monitor::reload_result(bool ok, const std::string& text) {
    msg::ReloadResult r;
    r.ok = ok ? 1 : 0;
    const size_t n = std::min(text.size(), msg::kLogTextSize);
    std::memcpy(r.text, text.data(), n);
    r.length = static_cast<uint16_t>(n);
    (void)channel_.send(r);
}

void Monitor::reload(const char* why) {
    if (!policy_.running() || policy_.reload_pending()) {
        const std::string text = policy_.running() ? "a reload is already under way" : "the worker is still starting";
        log_.warn("reload ({}): {}", why, text);
        reload_result(false, text);
        return;
    }
    log_.notice("reload ({}): reading {}", why, p_.config_path);
    notify(&SystemdNotifier::reloading);
    auto prepared = prepare_reload(p_.config_path,
                                   RunningState{p_.config, p_.resources, slots_, p_.psk, frame_capacity_}, log_);
    if (!prepared) {
        log_.error("reload ({}) failed: {}; still running with the previous configuration", why,
                   prepared.error().message);
        reload_result(false, prepared.error().message);
        notify(&SystemdNotifier::ready);
        return;
    }
    msg::ReloadBegin b;
    b.cleartext_data = prepared->next.cleartext_data ? 1 : 0;
    b.mtu = prepared->frame_mtu;
    b.reorder_buffer_size = prepared->next.reorder_buffer_size.value_or(core::kReorderCapacityMax);
    b.link_slots = static_cast<uint32_t>(prepared->slots.names.size());
    b.reload_unix = clock_.wall_ns() / 1'000'000'000ULL;
    if (prepared->key) {
        b.has_key = 1;
        std::memcpy(b.psk, prepared->key->data(), sizeof b.psk);
    }
    Status sent = channel_.send(b);
    sodium_memzero(b.psk, sizeof b.psk);
    static const std::vector<Fd> kNoSockets;
    for (const auto& u : prepared->updates) {
        if (!sent) break;
        const std::vector<Fd>* fds = &kNoSockets;
        const bool with_fd = u.op == msg::LinkUpdate::Add || u.op == msg::LinkUpdate::Replace;
        for (const auto& [index, sock] : prepared->sockets) {
            if (with_fd && index == u.link.index) fds = &sock.fds;
        }
        sent = send_with_group(channel_, u, *fds, u.link.index);
    }
    if (sent) sent = channel_.send(msg::ReloadEnd{});
    if (!sent) {
        violation(fmt::format("reload: cannot reach the worker: {}", sent.error().message));
        return;
    }
    policy_.expect_reload_done(prepared->slots.names.size());
    pending_.emplace(PendingReload{std::move(*prepared), why});
}

void Monitor::finish_reload(bool worker_ok) {
    if (!pending_) return;
    PreparedReload& r = pending_->prepared;
    const std::string why = pending_->why;
    // The running configuration is now the new one, whatever the worker
    // managed: the next reload compares against it.
    for (auto& [index, sock] : r.sockets) {
        if (p_.resources.sockets.size() <= index) p_.resources.sockets.resize(index + 1);
        sock.fds.clear();  // the worker holds them now
        p_.resources.sockets[index] = std::move(sock);
    }
    for (auto& [index, allowed] : r.allowed) {
        if (p_.resources.allowed_peers.size() <= index) p_.resources.allowed_peers.resize(index + 1);
        p_.resources.allowed_peers[index] = allowed;
    }
    for (size_t i = 0; i < r.slots.names.size(); ++i) {
        if (r.slots.names[i].empty()) {
            policy_.link_removed(i);
        } else {
            policy_.link_added(i);
        }
    }
    if (r.key) p_.psk = std::move(*r.key);
    p_.resources.device_mtu = r.device_mtu;
    p_.resources.frame_mtu = r.frame_mtu;
    slots_ = std::move(r.slots);
    const bool hooks_changed = r.plan.hooks_changed;
    const std::string summary = r.plan.summary();
    sodium_memzero(p_.config.password.data(), p_.config.password.size());
    p_.config = std::move(r.next);
    sodium_memzero(p_.config.password.data(), p_.config.password.size());
    if (hooks_changed && !p_.config.statuscommand.empty()) {
        auto env = hook_environment(p_.config, p_.resources.tun.name, p_.resources.device_mtu);
        if (hooks_ == nullptr) {
            hooks_ = std::make_unique<HookRunner>(p_.config.statuscommand, std::move(env), log_);
        } else {
            hooks_->reconfigure(p_.config.statuscommand, std::move(env));
        }
    }
    pending_.reset();
    notify(&SystemdNotifier::ready);
    notify_status();
    if (worker_ok) {
        log_.notice("reload ({}): {}", why, summary);
        reload_result(true, summary);
    } else {
        log_.error("reload ({}): the worker could not apply all of it (see above): {}", why, summary);
        reload_result(false, "the worker could not apply all of it; see the log");
    }
}

void Monitor::on_signal() {
    signalfd_siginfo si{};
    while (read(signal_fd_, &si, sizeof si) == sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            log_.notice("signal {} ({}): stopping", si.ssi_signo, strsignal(static_cast<int>(si.ssi_signo)));
            notify(&SystemdNotifier::stopping);
            stopping_ = true;
            done_ = true;
            break;
        case SIGHUP:
            reload("SIGHUP");
            break;
        case SIGUSR1:
            // The figures live in the worker: it logs them.
            if (worker_alive_) kill(worker_, SIGUSR1);
            break;
        case SIGCHLD:
            reap_worker(false);
            if (!worker_alive_) done_ = true;
            break;
        default:
            log_.info("signal {} ({}) ignored", si.ssi_signo, strsignal(static_cast<int>(si.ssi_signo)));
            break;
        }
    }
}

int Monitor::run() {
    while (!done_) {
        std::vector<pollfd> fds = {{channel_.fd(), POLLIN, 0}, {signal_fd_, POLLIN, 0}};
        std::vector<int> hook_fds = hooks_ != nullptr ? hooks_->fds() : std::vector<int>{};
        for (int fd : hook_fds) fds.push_back({fd, POLLIN, 0});
        int timeout = -1;
        if (hooks_ != nullptr && hooks_->deadline() != core::kNever) {
            const auto left = hooks_->deadline() - clock_.now();
            timeout = static_cast<int>(std::max<int64_t>(
                0, std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1));
        }
        const int n = poll(fds.data(), fds.size(), timeout);
        if (n < 0 && errno != EINTR) {
            log_.error("poll: {}", std::strerror(errno));
            exit_status_ = 1;
            break;
        }
        if (fds[1].revents != 0) on_signal();
        if (!done_ && fds[0].revents != 0) {
            if (!handle_message()) done_ = true;
        }
        if (hooks_ != nullptr) hooks_->service(clock_.now());
    }
    stopping_ = true;
    stop_worker();
    run_down_hooks();
    return exit_status_;
}

}  // namespace mlvpn::priv
