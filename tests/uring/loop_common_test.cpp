// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "uring/loop_common.hpp"

using mlvpn::uring::check_config;
using mlvpn::uring::fatal_read_error;
using mlvpn::uring::is_fatal_read_error;
using mlvpn::uring::kMaxBatch;
using mlvpn::uring::LoopConfig;

TEST_CASE("check_config: batch range, link sockets and watch fds") {
    LoopConfig c;
    c.link_fds = {3, 4};
    c.watch_fds = {5};
    CHECK(check_config(c));
    c.tun_fd = -1;  // no device is fine
    CHECK(check_config(c));

    c.batch = 0;
    auto bad = check_config(c);
    REQUIRE(!bad);
    CHECK(bad.error().message == "event loop: batch 0 is outside 1..1024");
    c.batch = kMaxBatch;
    CHECK(check_config(c));
    c.batch = kMaxBatch + 1;
    CHECK(!check_config(c));
    c.batch = 1;

    c.link_fds = {3, -1};
    bad = check_config(c);
    REQUIRE(!bad);
    CHECK(bad.error().message == "event loop: link 1 has no socket");
    c.link_fds = {3};

    c.watch_fds = {5, -2};
    bad = check_config(c);
    REQUIRE(!bad);
    CHECK(bad.error().message == "event loop: bad watch fd -2");
}

TEST_CASE("is_fatal_read_error: a dead descriptor is fatal, a lost packet is not") {
    for (int e : {EBADF, EBADFD, ENOTSOCK, EINVAL, EIO, ENXIO, ENODEV}) {
        INFO(strerror(e));
        CHECK(is_fatal_read_error(e));
    }
    for (int e : {ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EMSGSIZE, ENOBUFS, ENOMEM, EFAULT, EAGAIN, EINTR}) {
        INFO(strerror(e));
        CHECK(!is_fatal_read_error(e));
    }
}

TEST_CASE("fatal_read_error: names the loop, the TUN device or the link, and the errno") {
    CHECK(!fatal_read_error("io_uring", std::nullopt, ECONNREFUSED));
    CHECK(!fatal_read_error("epoll loop", 2, ENOBUFS));

    auto tun = fatal_read_error("io_uring", std::nullopt, EBADFD);
    REQUIRE(tun);
    CHECK(tun->message == std::string("io_uring: read from the TUN device: ") + strerror(EBADFD));
    auto link = fatal_read_error("epoll loop", 2, ENOTSOCK);
    REQUIRE(link);
    CHECK(link->message == std::string("epoll loop: receive on link 2: ") + strerror(ENOTSOCK));
}
