// SPDX-License-Identifier: BSD-2-Clause
#include "core/control_protocol.hpp"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

namespace mlvpn::core::control {

namespace {

Request bad(bool http, int status, std::string message) {
    Request r;
    r.kind = Kind::Error;
    r.http = http;
    r.http_status = status;
    r.error = std::move(message);
    return r;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    return s;
}

std::string_view next_word(std::string_view& s) {
    s = trim(s);
    const size_t end = s.find_first_of(" \t");
    const std::string_view word = s.substr(0, end);
    s = end == std::string_view::npos ? std::string_view{} : s.substr(end);
    return word;
}

std::string shown(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
}

const char* reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

Request parse_http(std::string_view head) {
    std::string_view line = head.substr(0, head.find('\n'));
    const std::string_view method = next_word(line);
    const std::string_view target = next_word(line);
    const std::string_view version = next_word(line);
    const bool is_head = method == "HEAD";
    const auto refuse = [is_head](int status, std::string message) {
        Request r = bad(true, status, std::move(message));
        r.head = is_head;
        return r;
    };
    if (!version.starts_with("HTTP/1.") || !trim(line).empty()) return refuse(400, "malformed request line");
    std::string_view path = target.substr(0, target.find('?'));
    if (path != "/status" && path != "/metrics") {
        return refuse(404, fmt::format("no such resource '{}'; try /status or /metrics", shown(target)));
    }
    if (method != "GET" && !is_head) return refuse(405, "only GET and HEAD are served");
    Request r;
    r.http = true;
    r.head = is_head;
    r.kind = path == "/status" ? Kind::Status : Kind::Metrics;
    return r;
}

Request parse_line(std::string_view line, bool privileged) {
    std::string_view rest = line;
    const std::string_view cmd = next_word(rest);
    if (cmd == "status" || cmd == "show") {
        Request r;
        r.kind = Kind::Status;
        return trim(rest).empty() ? r : bad(false, 400, "status takes no argument");
    }
    if (cmd == "metrics") {
        Request r;
        r.kind = Kind::Metrics;
        return trim(rest).empty() ? r : bad(false, 400, "metrics takes no argument");
    }
    if (cmd == "link" || cmd == "reload") {
        if (!privileged) return bad(false, 403, fmt::format("'{}' is only accepted on the Unix socket", cmd));
        Request r;
        if (cmd == "reload") {
            r.kind = Kind::Reload;
            return trim(rest).empty() ? r : bad(false, 400, "reload takes no argument");
        }
        r.kind = Kind::Link;
        r.link = std::string(next_word(rest));
        const std::string_view what = next_word(rest);
        if (r.link.empty() || !trim(rest).empty()) return bad(false, 400, "usage: link NAME up|down|backup");
        if (what == "up") r.admin = LinkAdmin::Up;
        else if (what == "down") r.admin = LinkAdmin::Down;
        else if (what == "backup") r.admin = LinkAdmin::Backup;
        else return bad(false, 400, "usage: link NAME up|down|backup");
        return r;
    }
    return bad(false, 400, fmt::format("unknown command '{}'; try status, metrics, link, reload", shown(cmd)));
}

}  // namespace

std::optional<Request> parse_request(std::string_view received, bool privileged) {
    const bool http = received.starts_with("GET ") || received.starts_with("HEAD ") ||
                      received.starts_with("POST ") || received.starts_with("PUT ") ||
                      received.starts_with("DELETE ");
    if (http) {
        const size_t end = received.find("\r\n\r\n");
        const size_t end_lf = received.find("\n\n");
        if (end == std::string_view::npos && end_lf == std::string_view::npos) {
            if (received.size() >= kMaxRequest) return bad(true, 413, "request too large");
            return std::nullopt;
        }
        return parse_http(received);
    }
    const size_t nl = received.find('\n');
    if (nl == std::string_view::npos) {
        if (received.size() >= kMaxRequest) return bad(false, 413, "request too large");
        return std::nullopt;
    }
    return parse_line(received.substr(0, nl), privileged);
}

std::string error_json(std::string_view message) {
    return nlohmann::json{{"error", std::string(message)}}.dump() + "\n";
}

std::string response(const Request& request, int http_status, std::string_view content_type,
                     std::string_view body) {
    if (!request.http) return std::string(body);
    return fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nServer: mlvpn\r\n\r\n{}",
        http_status, reason_phrase(http_status), content_type, body.size(), request.head ? "" : body);
}

std::string error_response(const Request& request) {
    return response(request, request.http_status, "application/json", error_json(request.error));
}

}  // namespace mlvpn::core::control
