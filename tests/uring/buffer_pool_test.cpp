// SPDX-License-Identifier: BSD-2-Clause
#include <doctest/doctest.h>

#include <set>
#include <vector>

#include "core/wire.hpp"
#include "uring/buffer_pool.hpp"

using mlvpn::core::Buffer;
using mlvpn::uring::BufferPool;

TEST_CASE("BufferPool: sizes are checked") {
    CHECK(!BufferPool::create(static_cast<uint32_t>(mlvpn::core::wire::kHeadroom), 4));
    CHECK(!BufferPool::create(2048, 0));
    CHECK(!BufferPool::create(UINT32_MAX, UINT32_MAX));
    CHECK(BufferPool::create(static_cast<uint32_t>(mlvpn::core::wire::kHeadroom) + 1, 1));
}

TEST_CASE("BufferPool: acquire hands out every slot once, then nullptr") {
    auto pool = BufferPool::create(256, 8);
    REQUIRE(pool);
    CHECK(pool->available() == 8);
    std::set<std::byte*> seen;
    std::vector<Buffer*> out;
    for (int i = 0; i < 8; ++i) {
        Buffer* b = pool->acquire();
        REQUIRE(b != nullptr);
        CHECK(b->offset == mlvpn::core::wire::kHeadroom);
        CHECK(b->length == 0);
        CHECK(b->capacity == 256);
        CHECK(b->data == pool->slot_data(b->index));
        CHECK(pool->out_index(b) == b->index);
        // Slots do not overlap.
        CHECK(seen.insert(b->data).second);
        b->data[255] = std::byte{0xAB};  // the whole slot is writable
        out.push_back(b);
    }
    CHECK(pool->available() == 0);
    CHECK(pool->acquire() == nullptr);
    for (Buffer* b : out) CHECK(pool->release(b));
    CHECK(pool->available() == 8);
}

TEST_CASE("BufferPool: release refuses double, foreign and forged buffers") {
    auto pool = BufferPool::create(256, 4);
    REQUIRE(pool);
    Buffer* b = pool->acquire();
    REQUIRE(b != nullptr);
    CHECK(pool->release(b));
    CHECK(!pool->release(b));  // twice
    CHECK(pool->available() == 4);

    Buffer foreign;
    CHECK(!pool->release(&foreign));
    CHECK(!pool->release(nullptr));
    // A pointer into the middle of the table is not a buffer.
    Buffer* c = pool->acquire();
    auto* bytes = reinterpret_cast<std::byte*>(c);
    CHECK(!pool->release(reinterpret_cast<Buffer*>(bytes + 1)));
    CHECK(pool->available() == 3);

    // Scribbled fields neither fool release() nor survive the next acquire().
    c->index = 3;
    c->data = nullptr;
    c->offset = 9999;
    c->length = 12;
    CHECK(pool->release(c));
    Buffer* d = pool->acquire();
    REQUIRE(d == c);
    CHECK(d->data == pool->slot_data(pool->out_index(d)));
    CHECK(d->index == pool->out_index(d));
    CHECK(d->offset == mlvpn::core::wire::kHeadroom);
    CHECK(d->length == 0);
}

TEST_CASE("BufferPool: moves keep the slots") {
    auto pool = BufferPool::create(128, 2);
    REQUIRE(pool);
    Buffer* b = pool->acquire();
    BufferPool moved = std::move(*pool);
    CHECK(moved.available() == 1);
    CHECK(moved.release(b));
    CHECK(moved.available() == 2);
}
