// SPDX-License-Identifier: BSD-2-Clause
// Result<T>: the return type of everything that can fail outside the data path.
// Errors carry a human-readable message that is already in the form the user
// should see ("file:line: message", "socket: Address in use", ...).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace mlvpn {

struct Error {
    std::string message;
};

template <class T>
using Result = tl::expected<T, Error>;

// Status is a Result with no value: `return {};` on success.
using Status = Result<void>;

inline tl::unexpected<Error> fail(std::string message) {
    return tl::unexpected<Error>(Error{std::move(message)});
}

// fail() with `what`, ": " and errno's text: call it right after the system
// call that failed, before anything else can change errno.
inline tl::unexpected<Error> fail_errno(const std::string& what) {
    return fail(what + ": " + std::strerror(errno));
}

}  // namespace mlvpn
