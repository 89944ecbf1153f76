// SPDX-License-Identifier: BSD-2-Clause
// The worker process: forked by [priv], sandboxed at once, then it asks priv
// for its configuration and descriptors and runs the data path until told to
// stop (SIGTERM) or until priv goes away.
#pragma once

#include <string>
#include <vector>

#include "core/log.hpp"
#include "priv/channel.hpp"
#include "priv/proctitle.hpp"
#include "priv/sandbox.hpp"

namespace mlvpn::priv {

struct WorkerParams {
    Identity identity;
    std::string chroot_dir;
    bool debug = false;  // log to the inherited stderr instead of through priv
    bool natural_title = false;
    core::Level log_level = core::Level::Notice;
    std::vector<std::string> debug_tokens;
    int priv_pid = 0;
};

// Runs in the child after fork(); returns the process exit status.
int worker_main(Channel channel, const WorkerParams& params, ProcTitle& title);

}  // namespace mlvpn::priv
