// SPDX-License-Identifier: BSD-2-Clause
// The process title seen in ps(1) and top(1): "mlvpn: NAME [priv]" for the
// privileged process, "mlvpn: NAME @dsl1 !dsl2" for the worker.
//
// Linux has no setproctitle(3). The classic trick (sendmail, PostgreSQL,
// OpenSSH's bsd-setproctitle.c) is used: /proc/PID/cmdline shows the memory
// where the kernel put argv and, right after it, the environment strings; the
// environment is copied to the heap and that whole area rewritten. The short
// name (/proc/PID/comm, 15 bytes) is set with prctl(PR_SET_NAME).
#pragma once

#include <cstddef>
#include <string_view>

namespace mlvpn::priv {

class ProcTitle {
public:
    // `argc` and `argv` are main()'s. Construct once, early in main(), before
    // any thread starts and before anything keeps pointers into environ
    // (getenv results): the environment is moved to the heap here, together
    // with program_invocation_name, and stays there for the life of the
    // process. set() overwrites the strings argv points to, so parse the
    // arguments (or copy them) before the first set().
    ProcTitle(int argc, char** argv);
    ProcTitle(const ProcTitle&) = delete;
    ProcTitle& operator=(const ProcTitle&) = delete;

    // Shows `title`, cut to capacity() bytes, as the whole command line. Also
    // sets the thread's short name to its first 15 bytes.
    void set(std::string_view title);

    // How many bytes of title the argv/environment area holds (0 when argv
    // could not be used; then only the short name changes).
    std::size_t capacity() const { return size_; }

private:
    char* area_ = nullptr;  // argv[0]
    std::size_t size_ = 0;  // bytes usable, the final NUL not counted
};

}  // namespace mlvpn::priv
