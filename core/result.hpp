// SPDX-License-Identifier: BSD-2-Clause
// Result<T>: the return type of everything that can fail outside the data path.
// Errors carry a human-readable message that is already in the form the user
// should see ("file:line: message", "socket: Address in use", ...).
#pragma once

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

}  // namespace mlvpn
