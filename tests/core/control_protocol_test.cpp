// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "core/control_protocol.hpp"

using namespace mlvpn::core;
using namespace mlvpn::core::control;

TEST_CASE("control: line commands") {
    CHECK_FALSE(parse_request("stat", true));  // incomplete
    auto s = parse_request("status\n", true);
    REQUIRE(s);
    CHECK(s->kind == Kind::Status);
    CHECK_FALSE(s->http);
    CHECK(parse_request("metrics\r\n", true)->kind == Kind::Metrics);
    auto l = parse_request("link dsl1 backup\n", true);
    REQUIRE(l);
    CHECK(l->kind == Kind::Link);
    CHECK(l->link == "dsl1");
    CHECK(l->admin == LinkAdmin::Backup);
    CHECK(parse_request("reload\n", true)->kind == Kind::Reload);
}

TEST_CASE("control: bad and unprivileged requests get well-formed errors") {
    for (const char* req : {"frobnicate\n", "link\n", "link dsl1 sideways\n", "link dsl1 up now\n",
                            "status please\n", "\n"}) {
        CAPTURE(req);
        auto r = parse_request(req, true);
        REQUIRE(r);
        CHECK(r->kind == Kind::Error);
        auto doc = nlohmann::json::parse(error_response(*r));
        CHECK(doc.contains("error"));
    }
    auto r = parse_request("link dsl1 down\n", false);
    REQUIRE(r);
    CHECK(r->kind == Kind::Error);
    CHECK(r->http_status == 403);
    CHECK(parse_request(std::string(kMaxRequest, 'x'), true)->http_status == 413);
    auto binary = parse_request(std::string("\x01\xff\x7f\n", 4), true);
    REQUIRE(binary);
    CHECK(nlohmann::json::parse(error_response(*binary))["error"].get<std::string>().find("unknown") == 0);
}

TEST_CASE("control: HTTP") {
    CHECK_FALSE(parse_request("GET /status HTTP/1.1\r\nHost: x\r\n", true));
    auto s = parse_request("GET /status HTTP/1.1\r\nHost: x\r\n\r\n", false);
    REQUIRE(s);
    CHECK(s->kind == Kind::Status);
    CHECK(s->http);
    CHECK(parse_request("GET /metrics?x=1 HTTP/1.0\r\n\r\n", false)->kind == Kind::Metrics);
    CHECK(parse_request("GET /nope HTTP/1.1\r\n\r\n", false)->http_status == 404);
    CHECK(parse_request("POST /status HTTP/1.1\r\n\r\n", false)->http_status == 405);
    CHECK(parse_request("GET /status SPDY\r\n\r\n", false)->http_status == 400);

    const std::string ok = response(*s, 200, "application/json", "{}\n");
    CHECK(ok.starts_with("HTTP/1.1 200 OK\r\n"));
    CHECK(ok.find("Content-Length: 3\r\n") != std::string::npos);
    CHECK(ok.ends_with("\r\n\r\n{}\n"));
    const std::string nf = error_response(*parse_request("GET /x HTTP/1.1\r\n\r\n", false));
    CHECK(nf.starts_with("HTTP/1.1 404 Not Found\r\n"));
    CHECK(nf.find("{\"error\":") != std::string::npos);
}

TEST_CASE("control: HTTP HEAD gets the headers of GET and no body") {
    auto h = parse_request("HEAD /metrics HTTP/1.1\r\n\r\n", false);
    REQUIRE(h);
    CHECK(h->kind == Kind::Metrics);
    CHECK(h->head);
    const std::string head = response(*h, 200, "text/plain", "abc\n");
    CHECK(head.find("Content-Length: 4\r\n") != std::string::npos);
    CHECK(head.ends_with("\r\n\r\n"));
    const std::string nf = error_response(*parse_request("HEAD /x HTTP/1.1\r\n\r\n", false));
    CHECK(nf.starts_with("HTTP/1.1 404 Not Found\r\n"));
    CHECK(nf.ends_with("\r\n\r\n"));
    CHECK_FALSE(parse_request("GET /status HTTP/1.1\r\n\r\n", false)->head);
}
