// SPDX-License-Identifier: BSD-2-Clause
// The control socket's protocol, sans I/O: what a client asked, and the bytes
// of the answer.
//
// Two ways to ask, on either socket:
//   - a line:  "status", "metrics", "link NAME up|down|backup", "reload"
//     (the Unix socket; mlvpnctl uses this), answered with the bare body;
//   - HTTP/1.x: "GET /status", "GET /metrics" (what mlvpn 2.3 served, and
//     what Prometheus scrapes), answered with a status line and headers.
// Commands that change something (link, reload) are refused on the TCP
// socket: its only protection is the address it listens on. Every answer to
// a bad request is well-formed: a JSON {"error": ...}, with an HTTP status
// when the request was HTTP.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/link.hpp"

namespace mlvpn::core::control {

// Requests larger than this are refused (the longest valid one is a line of
// a few dozen bytes, or an HTTP request with its headers).
inline constexpr size_t kMaxRequest = 8192;

enum class Kind { Status, Metrics, Link, Reload, Error };

struct Request {
    Kind kind = Kind::Error;
    bool http = false;
    bool head = false;     // an HTTP HEAD: the headers of the GET answer, no body
    std::string link;      // Kind::Link
    LinkAdmin admin = LinkAdmin::Up;
    int http_status = 400;  // Kind::Error
    std::string error;      // Kind::Error
};

// Looks at what a client sent so far. nullopt: not complete yet (and not too
// long) — read more. `privileged` is false on the TCP socket.
std::optional<Request> parse_request(std::string_view received, bool privileged);

// The bytes to send back for a request, given the body (JSON or metrics
// text) computed for it. A HEAD request gets the headers only, with the
// Content-Length the body would have (RFC 9110, 9.3.2).
std::string response(const Request& request, int http_status, std::string_view content_type,
                     std::string_view body);
std::string error_response(const Request& request);
// {"error": "..."} with the text escaped.
std::string error_json(std::string_view message);

}  // namespace mlvpn::core::control
