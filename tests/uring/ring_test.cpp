// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "tests/uring/make_ring.hpp"
#include "uring/ring.hpp"

using mlvpn::uring::Ring;
using mlvpn::uring::RingOptions;
using mlvpn::uring::test::make_ring;

TEST_CASE("Ring: NOPs are submitted in one enter and reaped") {
    auto ring = make_ring(64);
    if (!ring) return;
    CHECK(ring->supports(IORING_OP_NOP));
    CHECK(ring->supports(IORING_OP_RECVMSG));
    CHECK(!ring->supports(255));  // beyond any kernel's last opcode
    for (uint64_t i = 0; i < 10; ++i) {
        io_uring_sqe* sqe = ring->get_sqe();
        REQUIRE(sqe != nullptr);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, i);
    }
    CHECK(ring->pending() == 10);
    auto r = ring->submit_and_wait(std::chrono::seconds(1));
    REQUIRE(r);
    CHECK(*r == 10);
    CHECK(ring->pending() == 0);
    CHECK(ring->submit_calls() == 1);
    CHECK(ring->submitted() == 10);
    uint64_t expect = 0;
    unsigned n = ring->for_each_completion([&](const io_uring_cqe& cqe) {
        CHECK(cqe.user_data == expect++);
        CHECK(cqe.res == 0);
    });
    CHECK(n == 10);
    CHECK(ring->for_each_completion([](const io_uring_cqe&) { FAIL("no more completions"); }) == 0);
}

TEST_CASE("Ring: get_sqe submits when the SQ is full") {
    auto ring = make_ring(4);
    if (!ring) return;
    REQUIRE(ring->sq_entries() == 4);
    for (int i = 0; i < 10; ++i) {
        io_uring_sqe* sqe = ring->get_sqe();
        REQUIRE(sqe != nullptr);
        io_uring_prep_nop(sqe);
    }
    REQUIRE(ring->submit_and_wait(std::chrono::seconds(1)));
    CHECK(ring->submitted() == 10);
    CHECK(ring->submit_calls() == 3);  // 4 + 4 on the way, the last 2 here
    unsigned total = 0;
    for (int tries = 0; total < 10 && tries < 10; ++tries) {
        total += ring->for_each_completion([](const io_uring_cqe&) {});
        if (total < 10) REQUIRE(ring->submit_and_wait(std::chrono::milliseconds(100)));
    }
    CHECK(total == 10);
}

TEST_CASE("Ring: submit_and_wait returns after the timeout with nothing to do") {
    auto ring = make_ring(8);
    if (!ring) return;
    const auto start = std::chrono::steady_clock::now();
    auto r = ring->submit_and_wait(std::chrono::milliseconds(30));
    const auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE(r);
    CHECK(*r == 0);
    CHECK(elapsed >= std::chrono::milliseconds(29));
    CHECK(elapsed < std::chrono::milliseconds(500));
    // A deadline in the past does not wait.
    const auto again = std::chrono::steady_clock::now();
    REQUIRE(ring->submit_and_wait(std::chrono::milliseconds(-5)));
    CHECK(std::chrono::steady_clock::now() - again < std::chrono::milliseconds(20));
}

TEST_CASE("Ring: fixed files") {
    auto ring = make_ring(8);
    if (!ring) return;
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    const int files[] = {sv[0]};
    REQUIRE(ring->register_files(files));
    REQUIRE(write(sv[1], "ping", 4) == 4);
    char buf[16] = {};
    io_uring_sqe* sqe = ring->get_sqe();
    io_uring_prep_read(sqe, 0, buf, sizeof(buf), 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, 7);
    REQUIRE(ring->submit_and_wait(std::chrono::seconds(1)));
    int res = -1;
    ring->for_each_completion([&](const io_uring_cqe& cqe) {
        CHECK(cqe.user_data == 7);
        res = cqe.res;
    });
    CHECK(res == 4);
    CHECK(std::memcmp(buf, "ping", 4) == 0);
    close(sv[0]);
    close(sv[1]);
}

TEST_CASE("Ring: setup flags the kernel rejects are dropped only when optional") {
    RingOptions options;
    options.entries = 8;
    constexpr unsigned kUnknown = 1u << 31;  // no kernel knows this one: EINVAL
    options.optional_flags = kUnknown | IORING_SETUP_SINGLE_ISSUER;
    int setup_errno = -1;
    auto ring = Ring::create(options, &setup_errno);
    if (!ring && (setup_errno == EPERM || setup_errno == ENOSYS || setup_errno == EACCES)) return;
    REQUIRE(ring);
    CHECK(setup_errno == 0);
    CHECK(((*ring)->flags() & kUnknown) == 0);

    options.flags = kUnknown;
    auto refused = Ring::create(options, &setup_errno);
    CHECK(!refused);
    CHECK(setup_errno == EINVAL);
    CHECK(refused.error().message.find("io_uring_setup") != std::string::npos);
}

TEST_CASE("Ring: a SINGLE_ISSUER ring refuses other threads with a clear error") {
    auto ring = make_ring(8);
    if (!ring || (ring->flags() & IORING_SETUP_SINGLE_ISSUER) == 0) return;
    io_uring_prep_nop(ring->get_sqe());
    std::string error;
    std::thread([&] {
        auto r = ring->submit_and_wait(std::chrono::milliseconds(10));
        if (!r) error = r.error().message;
    }).join();
    INFO("error: " << error);
    CHECK(error.find("other than the one that created it") != std::string::npos);
    // The owner still can.
    REQUIRE(ring->submit_and_wait(std::chrono::seconds(1)));
    CHECK(ring->for_each_completion([](const io_uring_cqe&) {}) == 1);
}
