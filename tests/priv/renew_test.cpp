// SPDX-License-Identifier: BSD-2-Clause
// RenewLink / LinkRenewed: the messages' exact decoding, and what priv's
// policy allows — which requests are violations (fatal), which are refused
// (answered with an error), and its own rate limit.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/renewal.hpp"
#include "priv/messages.hpp"
#include "priv/policy.hpp"

using namespace mlvpn::priv;
using namespace std::chrono_literals;
using mlvpn::core::Time;

namespace {

msg::RenewLink renew(uint32_t i) {
    msg::RenewLink m;
    m.index = i;
    return m;
}

// A policy in the running phase, as after a whole setup.
RequestPolicy running(uint32_t links, bool client) {
    RequestPolicy p(links, 0, client);
    REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
    for (uint32_t i = 0; i < links; ++i) {
        msg::GetLink g;
        g.index = i;
        REQUIRE_FALSE(p.admit(g, false));
        msg::OpenLink o;
        o.index = i;
        REQUIRE_FALSE(p.admit(o, false));
    }
    REQUIRE_FALSE(p.admit(msg::OpenTun{}, false));
    msg::Ready r;
    r.backend = 1;
    REQUIRE_FALSE(p.admit(r, false));
    REQUIRE(p.running());
    return p;
}

template <class M>
std::vector<std::byte> datagram(const M& m) {
    auto b = msg::bytes_of(m);
    return {b.begin(), b.end()};
}

const Time kT0 = Time{} + 1000s;

}  // namespace

TEST_CASE("renew messages: request even, answer odd, decoded exactly") {
    CHECK(static_cast<int>(msg::Type::RenewLink) % 2 == 0);
    CHECK(static_cast<int>(msg::Type::LinkRenewed) % 2 == 1);

    const auto r = msg::decode(datagram(renew(3)));
    REQUIRE(r);
    REQUIRE(std::holds_alternative<msg::RenewLink>(*r));
    CHECK(std::get<msg::RenewLink>(*r).index == 3);
    CHECK_FALSE(msg::decode(datagram(renew(msg::kMaxLinks))));
    auto longer = datagram(renew(1));
    longer.push_back(std::byte{0});
    CHECK_FALSE(msg::decode(longer));

    msg::LinkRenewed a;
    a.index = 1;
    msg::set_string(a.local, "198.18.1.3:40000");
    msg::set_string(a.remote, "198.18.1.2:5080");
    // The server's address comes with the socket: it is not connected.
    CHECK_FALSE(msg::decode(datagram(a)));
    a.peer.sin6_family = AF_INET;
    a.peer_len = sizeof(sockaddr_in);
    const auto d = msg::decode(datagram(a));
    REQUIRE(d);
    REQUIRE(std::holds_alternative<msg::LinkRenewed>(*d));
    CHECK(msg::get_string(std::get<msg::LinkRenewed>(*d).local) == "198.18.1.3:40000");

    msg::LinkRenewed bad = a;
    bad.error = EAGAIN;  // no socket, so no address either
    CHECK_FALSE(msg::decode(datagram(bad)));
    bad.peer = sockaddr_in6{};
    bad.peer_len = 0;
    CHECK(msg::decode(datagram(bad)));
    bad = a;
    bad.error = -1;
    CHECK_FALSE(msg::decode(datagram(bad)));
    bad = a;
    std::memset(bad.remote, 'x', sizeof bad.remote);  // unterminated
    CHECK_FALSE(msg::decode(datagram(bad)));
    bad = a;
    bad.index = msg::kMaxLinks;
    CHECK_FALSE(msg::decode(datagram(bad)));
}

TEST_CASE("renew policy: allowed for a client link that exists, once running") {
    auto p = running(2, true);
    CHECK_FALSE(p.admit(renew(0), false));
    CHECK_FALSE(p.admit(renew(1), false));
    CHECK(p.running());
}

TEST_CASE("renew policy: what a correct worker never asks is a violation") {
    SUBCASE("during setup") {
        RequestPolicy p(2, 0, true);
        REQUIRE_FALSE(p.admit(msg::GetConfig{}, false));
        const auto why = p.admit(renew(0), false);
        REQUIRE(why);
        CHECK(*why == "request not allowed during setup");
        CHECK_FALSE(p.running());
    }
    SUBCASE("on a server: its sockets are not connected") {
        auto p = running(2, false);
        const auto why = p.admit(renew(0), false);
        REQUIRE(why);
        CHECK(*why == "socket renewal asked on a server");
    }
    SUBCASE("a link index beyond the links") {
        auto p = running(2, true);
        const auto why = p.admit(renew(2), false);
        REQUIRE(why);
        CHECK(*why == "socket renewal of link 2, which does not exist");
        // The first violation is final.
        CHECK(p.admit(renew(0), false));
    }
    SUBCASE("a link a reload removed") {
        auto p = running(2, true);
        p.expect_reload_done(2);
        REQUIRE_FALSE(p.admit(msg::ReloadDone{}, false));
        p.link_removed(1);
        CHECK(p.admit(renew(1), false));
    }
    SUBCASE("with a descriptor") {
        auto p = running(2, true);
        CHECK(p.admit(renew(0), true));
    }
}

TEST_CASE("renew policy: a link given back by a later reload may be renewed again") {
    auto p = running(2, true);
    p.expect_reload_done(3);  // adds link 2
    REQUIRE_FALSE(p.admit(msg::ReloadDone{}, false));
    p.link_removed(1);
    p.link_added(2);
    CHECK_FALSE(p.admit(renew(2), false));
    p.expect_reload_done(3);  // gives index 1 to a new link
    REQUIRE_FALSE(p.admit(msg::ReloadDone{}, false));
    p.link_added(1);
    CHECK_FALSE(p.admit(renew(1), false));
}

TEST_CASE("renew policy: refused, not fatal, during a reload and more often than kRenewInterval") {
    auto p = running(2, true);
    CHECK_FALSE(p.renewal_refusal(0, kT0));
    // Too soon for link 0, whatever the worker says; link 1 is on its own.
    CHECK(p.renewal_refusal(0, kT0 + 1s) == EAGAIN);
    CHECK(p.renewal_refusal(0, kT0 + kRenewInterval - 1ms) == EAGAIN);
    CHECK_FALSE(p.renewal_refusal(1, kT0 + 1s));
    // A refused request does not move the window.
    CHECK_FALSE(p.renewal_refusal(0, kT0 + kRenewInterval));
    CHECK(p.renewal_refusal(0, kT0 + kRenewInterval + 1s) == EAGAIN);
    CHECK(p.running());

    // A request that crossed a reload: the link may be another after it.
    p.expect_reload_done(2);
    CHECK(p.renewal_refusal(1, kT0 + 60s) == EBUSY);
    REQUIRE_FALSE(p.admit(msg::ReloadDone{}, false));
    CHECK_FALSE(p.renewal_refusal(1, kT0 + 60s));
}

TEST_CASE("renew policy: priv's limit is below the worker's smallest backoff") {
    // A worker that keeps to core/renewal.hpp never meets it.
    CHECK(kRenewInterval < mlvpn::core::timing::kRenewBackoffMin);
}
