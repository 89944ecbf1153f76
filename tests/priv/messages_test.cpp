// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <vector>

#include "priv/channel.hpp"
#include "priv/fd_group.hpp"
#include "priv/messages.hpp"

using namespace mlvpn;
using namespace mlvpn::priv;

namespace {

template <class M>
std::vector<std::byte> encoded(const M& m) {
    auto b = msg::bytes_of(m);
    return {b.begin(), b.end()};
}

// `m` with `field` set to each of `good` decodes, the value kept; with each
// of `bad` it does not.
template <class M, class F>
void check_field(M m, F M::*field, std::type_identity_t<std::initializer_list<F>> good,
                 std::type_identity_t<std::initializer_list<F>> bad) {
    for (F value : good) {
        m.*field = value;
        auto d = msg::decode(encoded(m));
        REQUIRE(d);
        CHECK(std::get<M>(*d).*field == value);
    }
    for (F value : bad) {
        m.*field = value;
        CHECK_FALSE(msg::decode(encoded(m)));
    }
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
    // And how many worker threads there are, 1..64.
    CHECK(c.workers == 1);
    check_field(c, &msg::Config::workers, {1, 2, 64}, {0, 65, 255});
    c.reserved = 1;
    CHECK_FALSE(msg::decode(encoded(c)));
}

TEST_CASE("messages: the members of a descriptor group") {
    // TunQueue: queues 1..63 (queue 0 comes with Tun).
    CHECK(static_cast<int>(msg::Type::TunQueue) % 2 == 1);  // pushed by priv
    check_field(msg::TunQueue{}, &msg::TunQueue::queue, {1u, 2u, msg::kMaxWorkers - 1},
                {0u, msg::kMaxWorkers, ~0u});

    // LinkSocket: a thread below 64; thread 0 may say it has no socket,
    // a further thread always has one.
    msg::LinkSocket ls;
    ls.index = 3;
    check_field(ls, &msg::LinkSocket::thread, {0u, 1u, msg::kMaxWorkers - 1}, {msg::kMaxWorkers, ~0u});
    ls.error = EADDRINUSE;
    CHECK(msg::decode(encoded(ls)));
    ls.thread = 1;
    CHECK_FALSE(msg::decode(encoded(ls)));
}

TEST_CASE("messages: a client link carries its server's address, a server link none") {
    msg::Link l;
    l.index = 0;
    l.timeout_ms = 1000;
    msg::set_string(l.name, "dsl1");
    l.connected = 1;
    CHECK_FALSE(msg::decode(encoded(l)));  // a client link without its server
    auto* in4 = reinterpret_cast<sockaddr_in*>(&l.peer);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(5080);
    l.peer_len = sizeof(sockaddr_in);
    CHECK(msg::decode(encoded(l)));
    l.peer_len = sizeof(sockaddr_in6);  // the wrong length for the family
    CHECK_FALSE(msg::decode(encoded(l)));
    l.peer.sin6_family = AF_INET6;
    CHECK(msg::decode(encoded(l)));
    l.peer.sin6_family = AF_UNIX;
    CHECK_FALSE(msg::decode(encoded(l)));

    l.connected = 0;  // a server link: nothing there at all
    l.peer = sockaddr_in6{};
    l.peer_len = 0;
    CHECK(msg::decode(encoded(l)));
    l.peer.sin6_port = 1;
    CHECK_FALSE(msg::decode(encoded(l)));
    l.peer.sin6_port = 0;
    l.fixed_port = 1;
    CHECK(msg::decode(encoded(l)));
    l.fixed_port = 2;
    CHECK_FALSE(msg::decode(encoded(l)));
}

TEST_CASE("FdGroup: members in order, each once, each with a descriptor") {
    const auto fd = [] { return Fd(open("/dev/null", O_RDONLY | O_CLOEXEC)); };

    FdGroup one(2, 1, fd());
    CHECK(one.valid());
    CHECK(one.complete());
    CHECK(one.take().size() == 1);
    CHECK_FALSE(one.add(2, 1, fd()));  // nothing beyond the size

    FdGroup group(5, 3, fd());
    CHECK_FALSE(group.complete());
    CHECK(group.take().empty());          // not before it is complete
    CHECK_FALSE(group.add(5, 2, fd()));   // out of order
    CHECK_FALSE(group.add(5, 0, fd()));   // member 0 again
    CHECK_FALSE(group.add(4, 1, fd()));   // another link's
    CHECK_FALSE(group.add(5, 1, Fd()));   // without a descriptor
    CHECK(group.add(5, 1, fd()));
    CHECK_FALSE(group.add(5, 1, fd()));   // twice
    CHECK(group.add(5, 2, fd()));
    CHECK(group.complete());
    CHECK_FALSE(group.add(5, 3, fd()));
    const auto fds = group.take();
    REQUIRE(fds.size() == 3);
    for (const auto& f : fds) CHECK(f);

    // Groups that can never be completed.
    const auto never = [&](FdGroup bad) {
        CHECK_FALSE(bad.valid());
        CHECK_FALSE(bad.complete());
        CHECK_FALSE(bad.add(0, 1, fd()));
        CHECK(bad.take().empty());
    };
    never(FdGroup(0, 0, fd()));
    never(FdGroup(0, msg::kMaxWorkers + 1, fd()));
    never(FdGroup(0, 2, Fd()));
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
