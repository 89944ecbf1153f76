// SPDX-License-Identifier: BSD-2-Clause
// mlvpnctl: the control tool. (Filled in as the control socket grows.)
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
    if (argc > 1 && (std::strcmp(argv[1], "-V") == 0 || std::strcmp(argv[1], "--version") == 0)) {
        std::printf("mlvpnctl %s\n", MLVPN_VERSION);
        return 0;
    }
    std::fprintf(stderr, "usage: mlvpnctl [-V]\n");
    return 2;
}
