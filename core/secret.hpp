// SPDX-License-Identifier: BSD-2-Clause
// Secret<N>: N bytes of key material in libsodium's guarded, locked memory
// (sodium_malloc), wiped and freed on destruction. Move-only.
#pragma once

#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <utility>

namespace mlvpn::core {

template <size_t N>
class Secret {
public:
    Secret() : bytes_(static_cast<uint8_t*>(sodium_malloc(N))) {
        if (bytes_ == nullptr) throw std::bad_alloc();
        sodium_memzero(bytes_, N);
    }
    explicit Secret(std::span<const uint8_t, N> from) : Secret() {
        std::copy(from.begin(), from.end(), bytes_);
    }
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;
    Secret(Secret&& o) noexcept : bytes_(std::exchange(o.bytes_, nullptr)) {}
    Secret& operator=(Secret&& o) noexcept {
        if (this != &o) {
            if (bytes_ != nullptr) sodium_free(bytes_);
            bytes_ = std::exchange(o.bytes_, nullptr);
        }
        return *this;
    }
    ~Secret() {
        if (bytes_ != nullptr) sodium_free(bytes_);  // wipes first
    }

    uint8_t* data() { return bytes_; }
    const uint8_t* data() const { return bytes_; }
    static constexpr size_t size() { return N; }
    std::span<uint8_t, N> span() { return std::span<uint8_t, N>(bytes_, N); }
    std::span<const uint8_t, N> span() const { return std::span<const uint8_t, N>(bytes_, N); }
    bool valid() const { return bytes_ != nullptr; }

    Secret clone() const {
        Secret copy;
        std::copy(bytes_, bytes_ + N, copy.bytes_);
        return copy;
    }

private:
    uint8_t* bytes_;
};

using SecretKey = Secret<32>;

}  // namespace mlvpn::core
