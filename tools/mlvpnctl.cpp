// SPDX-License-Identifier: BSD-2-Clause
// mlvpnctl: talks to a running mlvpn over its control socket.
//
//   mlvpnctl [-s SOCKET | -c CONFIG | -n NAME] show [LINK] [--json]
//   mlvpnctl [...] metrics
//   mlvpnctl [...] link LINK up|down|backup
//   mlvpnctl [...] reload
//
// Exit status: 0 done; 1 the daemon refused (unknown link, bad request...);
// 2 usage; 3 no daemon to talk to (no socket, connection refused, timeout).
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/config.hpp"

namespace {

using nlohmann::json;

constexpr const char* kRunDir = "/run/mlvpn";
constexpr int kTimeoutMs = 5000;
constexpr int kReloadTimeoutMs = 30000;  // a reload may derive a new key

struct Failure {
    int status;
    std::string message;
};

std::string usage() {
    return "usage: mlvpnctl [-s SOCKET | -c CONFIG | -n NAME] COMMAND\n"
           "\n"
           "commands:\n"
           "  show [LINK] [--json]       the tunnel and its links (a table, or the daemon's JSON)\n"
           "  metrics                    Prometheus text exposition\n"
           "  link LINK up|down|backup   use a link normally, take it out, or keep it as fallback\n"
           "  reload                     re-read the configuration (like SIGHUP)\n"
           "\n"
           "  -s SOCKET   the control socket\n"
           "  -c CONFIG   find the socket from the daemon's configuration file\n"
           "  -n NAME     the socket of the tunnel named NAME (/run/mlvpn/NAME.sock)\n"
           "  without these: the only socket in /run/mlvpn\n"
           "\n"
           "exit status: 0 done, 1 refused by the daemon, 2 usage, 3 no daemon to talk to\n";
}

std::string base_name(const std::string& path) {
    std::string b = path.substr(path.find_last_of('/') + 1);
    if (const auto dot = b.find_last_of('.'); dot != std::string::npos && dot > 0) b.resize(dot);
    return b;
}

std::string socket_from_config(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Failure{3, fmt::format("{}: {}", path, std::strerror(errno))};
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    close(fd);
    auto config = mlvpn::core::parse_config(text, path);
    if (!config) throw Failure{2, config.error().message};
    if (!config->control_unix_path.empty()) return config->control_unix_path;
    return fmt::format("{}/{}.sock", kRunDir, base_name(path));
}

std::string only_socket() {
    std::vector<std::string> found;
    if (DIR* d = opendir(kRunDir)) {
        while (const dirent* e = readdir(d)) {
            const std::string name = e->d_name;
            if (name.size() > 5 && name.compare(name.size() - 5, 5, ".sock") == 0) found.push_back(name);
        }
        closedir(d);
    }
    if (found.size() == 1) return fmt::format("{}/{}", kRunDir, found[0]);
    if (found.empty()) throw Failure{3, fmt::format("no control socket in {}: is mlvpn running? (or give -s SOCKET)", kRunDir)};
    std::string list;
    for (const auto& f : found) list += " " + f;
    throw Failure{2, fmt::format("several tunnels run ({}); choose one with -n NAME or -s SOCKET", list.substr(1))};
}

// Sends one request line and returns everything the daemon answers.
std::string ask(const std::string& socket_path, const std::string& request, int timeout_ms = kTimeoutMs) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) throw Failure{2, "socket path too long"};
    std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw Failure{3, fmt::format("socket: {}", std::strerror(errno))};
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        close(fd);
        throw Failure{3, fmt::format("{}: {}{}", socket_path, std::strerror(err),
                                     err == ENOENT || err == ECONNREFUSED ? " (is mlvpn running?)" : "")};
    }
    const std::string line = request + "\n";
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        close(fd);
        throw Failure{3, fmt::format("{}: write: {}", socket_path, std::strerror(errno))};
    }
    shutdown(fd, SHUT_WR);
    std::string answer;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        const int r = poll(&p, 1, timeout_ms);
        if (r == 0) {
            close(fd);
            throw Failure{3, fmt::format("{}: no answer within {} s", socket_path, timeout_ms / 1000)};
        }
        char buf[16384];
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        answer.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return answer;
}

json parse_answer(const std::string& answer) {
    json doc = json::parse(answer, nullptr, false);
    if (doc.is_discarded()) throw Failure{1, "the daemon's answer is not JSON"};
    if (doc.is_object() && doc.contains("error")) throw Failure{1, doc["error"].get<std::string>()};
    return doc;
}

std::string human_bytes(double b) {
    const char* units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) {
        b /= 1000;
        ++u;
    }
    return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

std::string duration(uint64_t s) {
    if (s < 60) return fmt::format("{}s", s);
    if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, (s / 60) % 60);
    return fmt::format("{}d{:02}h", s / 86400, (s / 3600) % 24);
}

// The rate the scheduler counts on for a link, Mbit/s; with its
// bandwidth_upload after a slash when it is found slower than that.
std::string rate_column(const json& l) {
    if (!l.contains("effective_rate_bps") || !l["effective_rate_bps"].is_number()) return "-";
    const double rate = l["effective_rate_bps"].get<double>() / 1e6;
    if (l.contains("configured_rate_bps") && l["configured_rate_bps"].is_number()) {
        const double configured = l["configured_rate_bps"].get<double>() / 1e6;
        if (rate < configured * 0.99) return fmt::format("{:.1f}/{:.4g}M", rate, configured);
    }
    return fmt::format("{:.1f}M", rate);
}

void print_table(const json& doc, const std::string& only) {
    if (!only.empty()) {
        const auto& links = doc["tunnels"];
        const bool known = std::any_of(links.begin(), links.end(),
                                       [&](const json& l) { return l.value("name", "") == only; });
        if (!known) throw Failure{1, fmt::format("no link named '{}'", only)};
    }
    fmt::print("tunnel {} ({}, {} {} mtu {}, {}), up {}, pid {}\n", doc.value("name", "?"), doc.value("mode", "?"),
               doc["tuntap"].value("type", "?"), doc["tuntap"].value("name", "?"), doc["tuntap"].value("mtu", 0),
               doc.value("backend", "?"), duration(doc.value("uptime", 0ULL)), doc.value("pid", 0));
    fmt::print("{:<12} {:<11} {:<26} {:<24} {:>9} {:>6} {:>6} {:>13} {:>10} {:>10} {:>7}\n", "LINK", "STATE", "REASON",
               "PEER", "RTT", "LOSS", "WEIGHT", "RATE", "SENT", "RECEIVED", "DROPS");
    for (const auto& l : doc["tunnels"]) {
        const std::string name = l.value("name", "");
        if (!only.empty() && name != only) continue;
        uint64_t drops = 0;
        for (const auto& [reason, n] : l["drops"].items()) drops += n.get<uint64_t>();
        const std::string rtt = l["rtt_ms"].is_number() ? fmt::format("{:.2f} ms", l["rtt_ms"].get<double>()) : "-";
        const std::string state = l.value("state", "?") + (l.value("admin", "up") != "up" && l.value("state", "") != "fallback"
                                                               ? "/" + l.value("admin", "")
                                                               : "");
        fmt::print("{:<12} {:<11} {:<26} {:<24} {:>9} {:>5.1f}% {:>5.0f}% {:>13} {:>10} {:>10} {:>7}\n", name, state,
                   l.value("reason", ""), l.value("peer", "-"), rtt, l.value("loss_pct", 0.0),
                   100 * l.value("weight", 0.0), rate_column(l),
                   human_bytes(l.value("sentbytes", 0.0)), human_bytes(l.value("recvbytes", 0.0)), drops);
    }
}

int run(int argc, char** argv) {
    std::string socket_path, config_path, name;
    bool want_json = false;
    static const option long_options[] = {{"socket", required_argument, nullptr, 's'},
                                          {"config", required_argument, nullptr, 'c'},
                                          {"name", required_argument, nullptr, 'n'},
                                          {"json", no_argument, nullptr, 'j'},
                                          {"help", no_argument, nullptr, 'h'},
                                          {"version", no_argument, nullptr, 'V'},
                                          {nullptr, 0, nullptr, 0}};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+s:c:n:hV", long_options, nullptr)) != -1) {
        switch (c) {
        case 's': socket_path = optarg; break;
        case 'c': config_path = optarg; break;
        case 'n': name = optarg; break;
        case 'j': want_json = true; break;
        case 'h': fmt::print("{}", usage()); return 0;
        case 'V': fmt::print("mlvpnctl {}\n", MLVPN_VERSION); return 0;
        default: throw Failure{2, fmt::format("unknown option {}\n{}", argv[optind - 1], usage())};
        }
    }
    std::vector<std::string> args(argv + optind, argv + argc);
    std::erase_if(args, [&](const std::string& a) {
        if (a == "--json") want_json = true;
        return a == "--json";
    });
    if (args.empty()) throw Failure{2, usage()};
    if (!socket_path.empty() + !config_path.empty() + !name.empty() > 1) {
        throw Failure{2, "give only one of -s, -c, -n"};
    }
    if (!config_path.empty()) socket_path = socket_from_config(config_path);
    if (!name.empty()) socket_path = fmt::format("{}/{}.sock", kRunDir, name);

    const std::string& cmd = args[0];
    auto path = [&] { return socket_path.empty() ? only_socket() : socket_path; };
    if (cmd == "show" && args.size() <= 2) {
        const json doc = parse_answer(ask(path(), "status"));
        const std::string only = args.size() == 2 ? args[1] : "";
        if (want_json) {
            if (only.empty()) {
                fmt::print("{}\n", doc.dump(2));
            } else {
                for (const auto& l : doc["tunnels"]) {
                    if (l.value("name", "") == only) {
                        fmt::print("{}\n", l.dump(2));
                        return 0;
                    }
                }
                throw Failure{1, fmt::format("no link named '{}'", only)};
            }
        } else {
            print_table(doc, only);
        }
        return 0;
    }
    if (cmd == "metrics" && args.size() == 1) {
        const std::string answer = ask(path(), "metrics");
        if (!answer.empty() && answer[0] == '{') parse_answer(answer);  // an error object
        fmt::print("{}", answer);
        return 0;
    }
    if (cmd == "link" && args.size() == 3 && (args[2] == "up" || args[2] == "down" || args[2] == "backup")) {
        const json doc = parse_answer(ask(path(), fmt::format("link {} {}", args[1], args[2])));
        fmt::print("{}\n", doc.value("message", "ok"));
        return 0;
    }
    if (cmd == "reload" && args.size() == 1) {
        const json doc = parse_answer(ask(path(), "reload", kReloadTimeoutMs));
        fmt::print("{}\n", doc.value("message", "reload requested"));
        return 0;
    }
    throw Failure{2, fmt::format("bad command: {}\n{}", fmt::join(args, " "), usage())};
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const Failure& f) {
        fmt::print(stderr, "mlvpnctl: {}{}", f.message, f.message.ends_with('\n') ? "" : "\n");
        return f.status;
    } catch (const std::exception& e) {
        fmt::print(stderr, "mlvpnctl: {}\n", e.what());
        return 1;
    }
}
