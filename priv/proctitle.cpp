// SPDX-License-Identifier: BSD-2-Clause
#include "priv/proctitle.hpp"

#include <errno.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace mlvpn::priv {
namespace {

// Copies the environment to the heap and points environ at the copy, so the
// strings the kernel placed after argv can be overwritten. The copies are
// never freed: like the original environment they live until exit, and
// getenv() results may point into them. Returns false (changing nothing) when
// memory runs out.
bool move_environ_to_heap(std::size_t count) {
    char** copy = static_cast<char**>(std::calloc(count + 1, sizeof(char*)));
    if (copy == nullptr) return false;
    for (std::size_t i = 0; i < count; ++i) {
        copy[i] = ::strdup(environ[i]);
        if (copy[i] == nullptr) {
            for (std::size_t j = 0; j < i; ++j) std::free(copy[j]);
            std::free(copy);
            return false;
        }
    }
    environ = copy;
    return true;
}

}  // namespace

ProcTitle::ProcTitle(int argc, char** argv) {
    if (argc <= 0 || argv == nullptr || argv[0] == nullptr) return;

    // The area is argv[0] and every string that follows it without a gap:
    // the other arguments, then the environment strings. `last` is the NUL
    // that ends the last string of it.
    char* last = argv[0] + std::strlen(argv[0]);
    for (int i = 1; i < argc && argv[i] != nullptr && argv[i] == last + 1; ++i)
        last = argv[i] + std::strlen(argv[i]);

    std::size_t env_count = 0;
    while (environ != nullptr && environ[env_count] != nullptr) ++env_count;
    char* args_last = last;
    for (std::size_t i = 0; i < env_count && environ[i] == last + 1; ++i)
        last = environ[i] + std::strlen(environ[i]);

    // getenv() and error messages (program_invocation_name, used by err(3)
    // and glibc's own diagnostics) must not read from the area once set()
    // has rewritten it.
    if (last != args_last && !move_environ_to_heap(env_count)) last = args_last;
    char* name = ::strdup(argv[0]);
    if (name == nullptr) return;
    const char* slash = std::strrchr(name, '/');
    program_invocation_name = name;
    program_invocation_short_name = slash ? const_cast<char*>(slash + 1) : name;

    area_ = argv[0];
    size_ = static_cast<std::size_t>(last - argv[0]);
}

void ProcTitle::set(std::string_view title) {
    if (size_ > 0) {
        // Pad with NULs, not spaces. While the title fits in the original
        // argv strings the kernel shows exactly those, padding included;
        // once it runs into the environment strings (the NUL that ended argv
        // is gone), the kernel shows up to the first NUL. Either way ps(1)
        // sees the title alone.
        std::size_t n = std::min(title.size(), size_);
        std::memcpy(area_, title.data(), n);
        std::memset(area_ + n, '\0', size_ - n);
    }
    char comm[16] = {};
    std::memcpy(comm, title.data(), std::min(title.size(), sizeof comm - 1));
    ::prctl(PR_SET_NAME, comm, 0, 0, 0);
}

}  // namespace mlvpn::priv
