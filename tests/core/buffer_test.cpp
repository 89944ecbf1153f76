// SPDX-License-Identifier: BSD-2-Clause
#include <arpa/inet.h>
#include <doctest/doctest.h>

#include "core/buffer.hpp"

using mlvpn::core::Endpoint;

TEST_CASE("Endpoint::to_string") {
    Endpoint e;
    CHECK(e.to_string() == "-");
    e.addr.in4.sin_family = AF_INET;
    e.addr.in4.sin_port = htons(5080);
    inet_pton(AF_INET, "198.18.0.1", &e.addr.in4.sin_addr);
    e.len = sizeof(sockaddr_in);
    CHECK(e.to_string() == "198.18.0.1:5080");

    Endpoint m;
    m.addr.in6.sin6_family = AF_INET6;
    m.addr.in6.sin6_port = htons(1);
    inet_pton(AF_INET6, "::ffff:198.18.0.2", &m.addr.in6.sin6_addr);
    m.len = sizeof(sockaddr_in6);
    CHECK(m.to_string() == "198.18.0.2:1");
    inet_pton(AF_INET6, "2001:db8::1", &m.addr.in6.sin6_addr);
    CHECK(m.to_string() == "[2001:db8::1]:1");
    CHECK(!(m == e));
}
