// SPDX-License-Identifier: BSD-2-Clause
#include "priv/control_server.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mlvpn::priv {

namespace control = core::control;

namespace {
// epoll data: listeners by index with this bit set, clients by their fd.
constexpr uint64_t kListenerTag = uint64_t{1} << 40;
}  // namespace

Result<ControlServer> ControlServer::make(std::vector<Listener> listeners, Answer answer, const core::Clock& clock,
                                          core::Logger& log) {
    Fd ep(epoll_create1(EPOLL_CLOEXEC));
    if (!ep) return fail(fmt::format("epoll_create1: {}", std::strerror(errno)));
    for (size_t i = 0; i < listeners.size(); ++i) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = kListenerTag | i;
        if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, listeners[i].fd.get(), &ev) != 0) {
            return fail(fmt::format("epoll_ctl: {}", std::strerror(errno)));
        }
    }
    return ControlServer(std::move(ep), std::move(listeners), std::move(answer), clock, log);
}

ControlServer::ControlServer(Fd epoll, std::vector<Listener> listeners, Answer answer, const core::Clock& clock,
                             core::Logger& log)
    : epoll_(std::move(epoll)), listeners_(std::move(listeners)), answer_(std::move(answer)), clock_(&clock), log_(&log) {}

void ControlServer::on_ready() {
    epoll_event events[32];
    const int n = epoll_wait(epoll_.get(), events, 32, 0);
    for (int i = 0; i < n; ++i) {
        const uint64_t tag = events[i].data.u64;
        if ((tag & kListenerTag) != 0) {
            accept_from(listeners_[tag & ~kListenerTag]);
        } else {
            on_client(static_cast<int>(tag), events[i].events);
        }
    }
}

void ControlServer::accept_from(const Listener& l) {
    for (;;) {
        Fd fd(accept4(l.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
                log_->warn("control: accept: {}", std::strerror(errno));
            }
            return;
        }
        if (clients_.size() >= kMaxClients) {
            // Best effort, never blocking: a short, well-formed refusal.
            const std::string busy = control::error_json("too many control clients; try again");
            (void)!::send(fd.get(), busy.data(), busy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            continue;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.u64 = static_cast<uint64_t>(fd.get());
        if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) continue;
        Client c;
        c.privileged = l.privileged;
        c.deadline = clock_->now() + kClientTimeout;
        const int key = fd.get();
        c.fd = std::move(fd);
        clients_.emplace(key, std::move(c));
    }
}

void ControlServer::on_client(int fd, uint32_t events) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = it->second;
    bool close = false;
    if (!c.answering && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) read_request(c, close);
    if (!close && c.waiting && (events & (EPOLLHUP | EPOLLERR)) != 0) close = true;  // gone while waiting
    if (!close && c.answering && !c.waiting && (events & (EPOLLOUT | EPOLLIN | EPOLLRDHUP)) != 0) write_answer(c, close);
    if (!close && (events & EPOLLERR) != 0) close = true;
    if (close) drop(fd);
}

void ControlServer::read_request(Client& c, bool& close) {
    char buf[2048];
    bool eof = false;
    for (;;) {
        const ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
        if (n > 0) {
            // Keep one byte past the limit: enough for parse_request to refuse.
            const size_t room = control::kMaxRequest + 1 - c.in.size();
            c.in.append(buf, std::min(static_cast<size_t>(n), room));
            if (c.in.size() > control::kMaxRequest) break;
            continue;
        }
        if (n == 0) eof = true;
        else if (errno == EINTR) continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            close = true;
            return;
        }
        break;
    }
    auto request = control::parse_request(c.in, c.privileged);
    // A client that closed its side after a line without "\n" still asked.
    if (!request && eof && !c.in.empty()) request = control::parse_request(c.in + "\n", c.privileged);
    if (!request) {
        if (eof) close = true;
        return;
    }
    start_answer(c, *request);
    if (!c.waiting) write_answer(c, close);
}

void ControlServer::start_answer(Client& c, const control::Request& request) {
    c.answering = true;
    if (request.kind == control::Kind::Error) {
        c.out = control::error_response(request);
    } else if (auto a = answer_(request)) {
        c.out = std::move(*a);
    } else {
        // Later: a reload can take a moment (a new key is derived).
        c.waiting = true;
        c.request = request;
        c.deadline = clock_->now() + kWaitTimeout;
        // Nothing to read or write meanwhile; a client that half-closed (as
        // mlvpnctl does after its request) still waits for the answer. Only
        // EPOLLHUP/EPOLLERR, always reported, mean it is gone.
        epoll_event ev{};
        ev.events = 0;
        ev.data.u64 = static_cast<uint64_t>(c.fd.get());
        epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
        return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = static_cast<uint64_t>(c.fd.get());
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
}

void ControlServer::answer_waiting(const std::function<std::string(const control::Request&)>& reply) {
    std::vector<int> done;
    for (auto& [fd, c] : clients_) {
        if (!c.waiting) continue;
        c.waiting = false;
        c.out = reply(c.request);
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.u64 = static_cast<uint64_t>(fd);
        epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
        bool close = false;
        write_answer(c, close);
        if (close) done.push_back(fd);
    }
    for (int fd : done) drop(fd);
}

void ControlServer::write_answer(Client& c, bool& close) {
    while (c.sent < c.out.size()) {
        const ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c.sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // wait for EPOLLOUT
        close = true;
        return;
    }
    close = true;  // one request per connection
}

void ControlServer::drop(int fd) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    clients_.erase(fd);
}

core::Time ControlServer::on_timer() {
    const core::Time now = clock_->now();
    core::Time next = core::kNever;
    std::vector<int> late;
    for (const auto& [fd, c] : clients_) {
        if (now >= c.deadline) late.push_back(fd);
        else next = std::min(next, c.deadline);
    }
    for (int fd : late) drop(fd);
    return next;
}

}  // namespace mlvpn::priv
