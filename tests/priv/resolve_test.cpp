// SPDX-License-Identifier: BSD-2-Clause
#include "priv/resolve.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <string>

#include <doctest/doctest.h>

#include "tests/netns.hpp"

using mlvpn::core::Endpoint;
using mlvpn::priv::resolve;
using mlvpn::test::NetnsGuard;

namespace {

bool is_loopback(const Endpoint& e) {
    if (e.addr.sa.sa_family == AF_INET) return ntohl(e.addr.in4.sin_addr.s_addr) >> 24 == 127;
    return e.addr.sa.sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&e.addr.in6.sin6_addr);
}

}  // namespace

TEST_CASE("resolve: numeric addresses") {
    auto v4 = resolve("192.0.2.1", 5080, AF_UNSPEC, false);
    REQUIRE_MESSAGE(v4, v4.error().message);
    REQUIRE(v4->size() == 1);
    CHECK((*v4)[0].to_string() == "192.0.2.1:5080");
    CHECK((*v4)[0].len == sizeof(sockaddr_in));

    auto v6 = resolve("2001:db8::1", 5080, AF_INET6, false);
    REQUIRE_MESSAGE(v6, v6.error().message);
    REQUIRE(v6->size() == 1);
    CHECK((*v6)[0].to_string() == "[2001:db8::1]:5080");
    CHECK((*v6)[0].len == sizeof(sockaddr_in6));

    auto port0 = resolve("::1", 0, AF_UNSPEC, true);
    REQUIRE(port0);
    CHECK((*port0)[0].to_string() == "[::1]:0");

    auto wrong = resolve("192.0.2.1", 5080, AF_INET6, false);
    REQUIRE(!wrong);
    CHECK(wrong.error().message == "resolve 192.0.2.1: Address family for hostname not supported");
}

TEST_CASE("resolve: the any address for an empty passive host") {
    auto both = resolve("", 5080, AF_UNSPEC, true);
    REQUIRE_MESSAGE(both, both.error().message);
    REQUIRE(both->size() == 2);
    CHECK((*both)[0].to_string() == "[::]:5080");  // dual-stack first
    CHECK((*both)[1].to_string() == "0.0.0.0:5080");

    auto v4 = resolve("", 5080, AF_INET, true);
    REQUIRE(v4);
    REQUIRE(v4->size() == 1);
    CHECK((*v4)[0].to_string() == "0.0.0.0:5080");

    auto active = resolve("", 5080, AF_UNSPEC, false);
    REQUIRE(!active);
    CHECK(active.error().message == "resolve (any address): empty host name");
}

TEST_CASE("resolve: localhost, in a namespace holding only lo") {
    // The namespace also keeps any DNS query from leaving the machine. Only
    // lo has addresses there: AI_ADDRCONFIG would make this fail.
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    auto local = resolve("localhost", 5080, AF_UNSPEC, false);
    REQUIRE_MESSAGE(local, local.error().message);
    REQUIRE(!local->empty());
    for (const Endpoint& e : *local) {
        CAPTURE(e.to_string());
        CHECK(is_loopback(e));
        CHECK(std::count(local->begin(), local->end(), e) == 1);  // no duplicates
    }
    auto v4 = resolve("127.0.0.1", 5080, AF_INET, false);
    CHECK_MESSAGE(v4, v4.error().message);
}

TEST_CASE("resolve: bad names and arguments") {
    MLVPN_TEST_NEEDS_ROOT();
    NetnsGuard ns;  // no route out: the lookup fails at once, and stays here
    REQUIRE_MESSAGE(ns.ok(), ns.error());
    auto unknown = resolve("nonexistent.invalid", 5080, AF_UNSPEC, false);
    REQUIRE(!unknown);
    CHECK(unknown.error().message.rfind("resolve nonexistent.invalid: ", 0) == 0);
    MESSAGE(unknown.error().message);

    auto nul = resolve(std::string_view("a\0b", 3), 5080, AF_UNSPEC, false);
    REQUIRE(!nul);
    CHECK(nul.error().message.find("NUL byte") != std::string::npos);

    auto family = resolve("192.0.2.1", 5080, AF_UNIX, false);
    REQUIRE(!family);
    CHECK(family.error().message == "resolve 192.0.2.1: unsupported address family 1");
}
