// SPDX-License-Identifier: BSD-2-Clause
// mlvpn: the daemon's entry point. Starts as [priv] and forks the worker.
#include <cstdio>

int main() {
    std::printf("mlvpn %s\n", MLVPN_VERSION);
    return 0;
}
