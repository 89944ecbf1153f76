// SPDX-License-Identifier: BSD-2-Clause
// A ring created disabled and restricted: what the kernel still accepts and
// what it refuses (the worker's defence against io_uring bypassing seccomp);
// and a ring sized as the worker's, its SQ smaller than its CQ.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "tests/uring/make_ring.hpp"
#include "uring/ring.hpp"

using mlvpn::uring::Ring;
using mlvpn::uring::RingOptions;
using mlvpn::uring::RingRestrictions;

namespace {

std::unique_ptr<Ring> make_disabled_ring() { return mlvpn::uring::test::make_ring(16, true); }

RingRestrictions read_only() {
    RingRestrictions r;
    r.sqe_ops = {IORING_OP_READ, IORING_OP_ASYNC_CANCEL};
    r.sqe_flags = IOSQE_FIXED_FILE;
    r.register_ops = {IORING_REGISTER_FILES_UPDATE};
    return r;
}

// Submits what is queued and returns the result of the completion with
// `user_data`, or nullopt when none came within a second.
std::optional<int> result_of(Ring& ring, uint64_t user_data) {
    std::optional<int> res;
    for (int i = 0; i < 10 && !res; ++i) {
        REQUIRE(ring.submit_and_wait(std::chrono::milliseconds(100)));
        ring.for_each_completion([&](const io_uring_cqe& cqe) {
            if (cqe.user_data == user_data) res = cqe.res;
        });
    }
    return res;
}

int raw_register(int ring_fd, unsigned op, void* arg, unsigned nr) {
    const long r = syscall(__NR_io_uring_register, ring_fd, op, arg, nr);
    return r < 0 ? -errno : static_cast<int>(r);
}

// The descriptor of the one ring this process has open.
int find_ring_fd() {
    for (int fd = 3; fd < 1024; ++fd) {
        if (fcntl(fd, F_GETFD) < 0) continue;
        char path[64];
        char target[64] = {};
        std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (readlink(path, target, sizeof target - 1) > 0 && std::string(target) == "anon_inode:[io_uring]")
            return fd;
    }
    return -1;
}

}  // namespace

TEST_CASE("Ring: a disabled ring registers but takes no submission until enabled") {
    auto ring = make_disabled_ring();
    if (!ring) return;
    CHECK(!ring->enabled());
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    CHECK(ring->register_files(std::span<const int>(fds, 1)));
    io_uring_sqe* sqe = ring->get_sqe();
    REQUIRE(sqe != nullptr);
    io_uring_prep_nop(sqe);
    auto r = ring->submit();
    REQUIRE(!r);
    CHECK(r.error().message.find("still disabled") != std::string::npos);
    // What was prepared before is refused by restrict_and_enable too.
    auto e = ring->restrict_and_enable(read_only());
    REQUIRE(!e);
    CHECK(e.error().message.find("prepared before") != std::string::npos);
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE("Ring: a restricted ring runs its opcodes and refuses every other one") {
    auto ring = make_disabled_ring();
    if (!ring) return;
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    REQUIRE(ring->register_files(std::span<const int>(fds, 2)));
    REQUIRE(ring->restrict_and_enable(read_only()));
    CHECK(ring->enabled());

    SUBCASE("an allowed opcode on a fixed file works") {
        REQUIRE(write(fds[1], "hello", 5) == 5);
        char buf[8] = {};
        io_uring_sqe* sqe = ring->get_sqe();
        io_uring_prep_read(sqe, 0, buf, sizeof buf, 0);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, 1);
        CHECK(result_of(*ring, 1) == 5);
        CHECK(std::memcmp(buf, "hello", 5) == 0);
    }
    SUBCASE("OPENAT is refused: the kernel does not open the file") {
        io_uring_sqe* sqe = ring->get_sqe();
        io_uring_prep_openat(sqe, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
        io_uring_sqe_set_data64(sqe, 2);
        CHECK(result_of(*ring, 2) == -EACCES);
    }
    SUBCASE("WRITE, not in the list, is refused") {
        io_uring_sqe* sqe = ring->get_sqe();
        io_uring_prep_write(sqe, 1, "x", 1, 0);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, 3);
        CHECK(result_of(*ring, 3) == -EACCES);
    }
    SUBCASE("a flag outside the allowed ones is refused (IOSQE_ASYNC)") {
        char buf[8];
        io_uring_sqe* sqe = ring->get_sqe();
        io_uring_prep_read(sqe, 0, buf, sizeof buf, 0);
        sqe->flags |= IOSQE_FIXED_FILE | IOSQE_ASYNC;
        io_uring_sqe_set_data64(sqe, 4);
        CHECK(result_of(*ring, 4) == -EACCES);
    }
    SUBCASE("FILES_UPDATE, in the list, still works; other registrations do not") {
        CHECK(ring->update_file(1, fds[0]));
        const int ring_fd = find_ring_fd();
        REQUIRE(ring_fd >= 0);
        io_uring_probe probe{};
        CHECK(raw_register(ring_fd, IORING_REGISTER_PROBE, &probe, 0) == -EACCES);
        CHECK(raw_register(ring_fd, IORING_REGISTER_FILES, fds, 2) == -EACCES);
        CHECK(raw_register(ring_fd, IORING_REGISTER_RESTRICTIONS, nullptr, 0) == -EACCES);
    }
    SUBCASE("restrictions are set once") {
        auto again = ring->restrict_and_enable(read_only());
        REQUIRE(!again);
        CHECK(again.error().message.find("only once") != std::string::npos);
    }
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE("Ring: a ring not created disabled cannot be restricted") {
    RingOptions options;
    options.entries = 8;
    auto ring = Ring::create(options);
    if (!ring) return;  // no io_uring here
    CHECK(!(*ring)->restrict_and_enable(read_only()));
}

TEST_CASE("Ring: more requests than the SQ holds go in early, and the CQ sized apart takes every completion") {
    // As the worker's rings: a small SQ (uring_loop.cpp's kSqEntries) and a CQ
    // with room for every request in flight.
    auto ring = mlvpn::uring::test::make_ring(8, false, 64);
    if (!ring) return;
    CHECK(ring->sq_entries() == 8);
    constexpr uint64_t kRequests = 40;
    for (uint64_t i = 0; i < kRequests; ++i) {
        io_uring_sqe* sqe = ring->get_sqe();
        REQUIRE(sqe != nullptr);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, i + 1);
    }
    std::vector<bool> seen(kRequests + 1, false);
    size_t got = 0;
    for (int i = 0; i < 10 && got < kRequests; ++i) {
        REQUIRE(ring->submit_and_wait(std::chrono::milliseconds(100)));
        ring->for_each_completion([&](const io_uring_cqe& cqe) {
            REQUIRE(cqe.user_data >= 1);
            REQUIRE(cqe.user_data <= kRequests);
            CHECK_FALSE(seen[cqe.user_data]);
            seen[cqe.user_data] = true;
            CHECK(cqe.res == 0);
            ++got;
        });
    }
    CHECK(got == kRequests);
}
