// SPDX-License-Identifier: BSD-2-Clause
// ControlServer: the worker's side of the control sockets. [priv] creates
// and binds the listening sockets; the worker, sandboxed, accepts clients and
// parses what they send (untrusted input belongs in the unprivileged process).
//
// The server keeps its own epoll set (listeners and clients) so that the
// data-path loop watches one descriptor for all of it. Everything is
// non-blocking and bounded: at most kMaxClients at once (more get
// {"error": "too many control clients; try again"} before they have sent
// anything, so without HTTP headers, and are closed), requests of at most control::kMaxRequest bytes, and
// kClientTimeout for a whole exchange. A slow client never holds the data path.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/control_protocol.hpp"
#include "core/log.hpp"
#include "core/result.hpp"
#include "priv/fd.hpp"

namespace mlvpn::priv {

class ControlServer {
public:
    static constexpr size_t kMaxClients = 16;
    static constexpr core::Duration kClientTimeout = std::chrono::seconds(5);
    // A request answered later (reload) may wait this long.
    static constexpr core::Duration kWaitTimeout = std::chrono::seconds(30);

    struct Listener {
        Fd fd;
        bool privileged = false;  // the Unix socket: may change things
    };
    // Computes the whole answer (bytes to send) for a complete request, or
    // nullopt to keep the client waiting until answer_waiting().
    using Answer = std::function<std::optional<std::string>(const core::control::Request&)>;

    static Result<ControlServer> make(std::vector<Listener> listeners, Answer answer, const core::Clock& clock,
                                      core::Logger& log);

    // Watch this for readability; then call on_ready().
    int fd() const { return epoll_.get(); }
    void on_ready();
    // Answers every client kept waiting, with reply(request).
    void answer_waiting(const std::function<std::string(const core::control::Request&)>& reply);
    // Closes clients past their time; returns the next deadline.
    core::Time on_timer();
    size_t clients() const { return clients_.size(); }

private:
    struct Client {
        Fd fd;
        bool privileged = false;
        std::string in;
        std::string out;
        size_t sent = 0;
        bool answering = false;
        bool waiting = false;  // the answer comes later (answer_waiting)
        core::control::Request request;
        core::Time deadline{};
    };

    ControlServer(Fd epoll, std::vector<Listener> listeners, Answer answer, const core::Clock& clock,
                  core::Logger& log);
    void accept_from(const Listener& l);
    void on_client(int fd, uint32_t events);
    void read_request(Client& c, bool& close);
    void start_answer(Client& c, const core::control::Request& request);
    void write_answer(Client& c, bool& close);
    void drop(int fd);

    Fd epoll_;
    std::vector<Listener> listeners_;
    Answer answer_;
    const core::Clock* clock_;
    core::Logger* log_;
    std::map<int, Client> clients_;
};

}  // namespace mlvpn::priv
