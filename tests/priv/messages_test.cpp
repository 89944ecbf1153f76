// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "priv/channel.hpp"
#include "priv/messages.hpp"

using namespace mlvpn;
using namespace mlvpn::priv;

namespace {

template <class M>
std::vector<std::byte> encoded(const M& m) {
    auto b = msg::bytes_of(m);
    return {b.begin(), b.end()};
}

}  // namespace

TEST_CASE("messages: every type round-trips") {
    msg::Config c;
    c.mtu = 1424;
    c.link_count = 3;
    c.log_level = 5;
    c.priv_pid = 1;
    msg::set_string(c.name, "tun0");
    auto d = msg::decode(encoded(c));
    REQUIRE(d);
    REQUIRE(std::holds_alternative<msg::Config>(*d));
    CHECK(std::get<msg::Config>(*d).mtu == 1424);
    CHECK(msg::get_string(std::get<msg::Config>(*d).name) == "tun0");

    msg::Link l;
    l.index = 2;
    l.timeout_ms = 30000;
    msg::set_string(l.name, "dsl1");
    CHECK(msg::decode(encoded(l)));
    CHECK(msg::decode(encoded(msg::GetConfig{})));
    CHECK(msg::decode(encoded(msg::OpenTun{})));
    msg::Ready r;
    r.backend = 1;
    CHECK(msg::decode(encoded(r)));
    msg::LinkState s;
    s.up = 1;
    CHECK(msg::decode(encoded(s)));
    msg::Log lg;
    lg.level = 4;
    lg.length = 3;
    CHECK(msg::decode(encoded(lg)));
}

TEST_CASE("messages: wrong sizes, unknown types and bad fields are refused") {
    msg::LinkState s;
    s.up = 1;
    auto bytes = encoded(s);
    // Every truncation and one byte too many.
    for (size_t n = 0; n < bytes.size(); ++n) {
        CHECK_FALSE(msg::decode(std::span<const std::byte>(bytes.data(), n)));
    }
    auto longer = bytes;
    longer.push_back(std::byte{0});
    CHECK_FALSE(msg::decode(longer));
    // Every type value with this body: only the types of this size (and
    // whose fields happen to be in range) decode.
    for (int t = 0; t < 65536; t += 1) {
        auto b = bytes;
        const uint16_t type = static_cast<uint16_t>(t);
        std::memcpy(b.data(), &type, 2);
        const bool ok = msg::decode(b).has_value();
        CHECK(ok == (t == static_cast<int>(msg::Type::LinkState) ||
                     t == static_cast<int>(msg::Type::LinkSocket) ||
                     t == static_cast<int>(msg::Type::ControlListener)));
    }
    auto bad = s;
    bad.up = 2;
    CHECK_FALSE(msg::decode(encoded(bad)));
    bad = s;
    bad.index = msg::kMaxLinks;
    CHECK_FALSE(msg::decode(encoded(bad)));
    bad = s;
    bad.h.reserved = 1;
    CHECK_FALSE(msg::decode(encoded(bad)));

    msg::Link l;
    l.timeout_ms = 1000;
    std::memset(l.name, 'a', sizeof l.name);  // not terminated
    CHECK_FALSE(msg::decode(encoded(l)));
    msg::set_string(l.name, "");
    CHECK_FALSE(msg::decode(encoded(l)));  // empty name

    msg::Log lg;
    lg.level = 4;
    lg.length = msg::kLogTextSize + 1;
    CHECK_FALSE(msg::decode(encoded(lg)));
    lg.length = 1;
    lg.level = 9;
    CHECK_FALSE(msg::decode(encoded(lg)));

    msg::Config c;  // link_count 0, mtu 0
    CHECK_FALSE(msg::decode(encoded(c)));
}

TEST_CASE("messages: Tun says which offloads the device has, and nothing else") {
    msg::Tun t;
    msg::set_string(t.ifname, "mlvpn0");
    for (uint8_t offload : {0, 1, 2}) {
        t.offload = offload;
        auto d = msg::decode(encoded(t));
        REQUIRE(d);
        REQUIRE(std::holds_alternative<msg::Tun>(*d));
        CHECK(std::get<msg::Tun>(*d).offload == offload);
    }
    t.offload = 3;  // no such TunOffload
    CHECK_FALSE(msg::decode(encoded(t)));
    t.offload = 1;
    t.reserved[2] = 1;
    CHECK_FALSE(msg::decode(encoded(t)));
}

TEST_CASE("messages: Config says whether the links have UDP offload, 0 or 1") {
    msg::Config c;
    c.mtu = 1424;
    c.link_count = 1;
    c.log_level = 5;
    c.priv_pid = 1;
    for (uint8_t on : {0, 1}) {
        c.udp_offload = on;
        auto d = msg::decode(encoded(c));
        REQUIRE(d);
        CHECK(std::get<msg::Config>(*d).udp_offload == on);
    }
    c.udp_offload = 2;
    CHECK_FALSE(msg::decode(encoded(c)));
    c.udp_offload = 1;
    c.reserved[1] = 1;
    CHECK_FALSE(msg::decode(encoded(c)));
}

TEST_CASE("channel: messages keep their boundaries and carry one descriptor") {
    auto pair = Channel::pair();
    REQUIRE(pair);
    auto& [a, b] = *pair;
    msg::OpenLink req;
    req.index = 1;
    REQUIRE(a.send(req));
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    msg::LinkSocket ans;
    ans.index = 1;
    REQUIRE(b.send(ans, fds[1]));
    close(fds[1]);

    auto got_req = b.receive();
    REQUIRE(got_req);
    CHECK(got_req->bytes.size() == sizeof req);
    CHECK(!got_req->fd);
    auto got_ans = a.receive();
    REQUIRE(got_ans);
    REQUIRE(got_ans->fd);
    CHECK((fcntl(got_ans->fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
    // The passed descriptor is the pipe's write end.
    CHECK(write(got_ans->fd.get(), "x", 1) == 1);
    char c = 0;
    CHECK(read(fds[0], &c, 1) == 1);
    close(fds[0]);

    // An oversized datagram is refused as truncated.
    std::vector<std::byte> big(4096);
    REQUIRE(a.send(std::span<const std::byte>(big)));
    CHECK_FALSE(b.receive());
}

TEST_CASE("channel: end of file when the other side closes") {
    auto pair = Channel::pair();
    REQUIRE(pair);
    { Channel gone = std::move(pair->second); }
    auto r = pair->first.receive();
    REQUIRE(r);
    CHECK(r->bytes.empty());
}
