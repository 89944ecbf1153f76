#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds mlvpn and runs every test: the unit tests and the integration tests
# (two real daemons in network namespaces). Run as root from anywhere:
#
#   sudo ./tests/run_all.sh
#
# Installs missing build and test packages first (Debian 12). The build goes
# to build/ at the top of the tree (BUILD_DIR overrides it). Exits with
# ctest's status.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
JOBS=$(nproc)

if [[ $(id -u) -ne 0 ]]; then
    echo "run_all.sh: run as root (sudo ./tests/run_all.sh): the integration tests create network namespaces and TUN devices" >&2
    exit 1
fi

step() { printf '\n=== %s\n' "$*"; }
t0=$SECONDS

step "dependencies"
"$REPO/tools/install-deps.sh"
t_deps=$SECONDS

step "configure and build ($BUILD, RelWithDebInfo, -j$JOBS)"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" -j"$JOBS"
t_build=$SECONDS

step "tests"
rc=0
# Unit tests run in parallel; the integration tests are RUN_SERIAL.
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" || rc=$?
t_tests=$SECONDS

step "done: ctest exit status $rc"
printf 'time: dependencies %ds, build %ds, tests %ds, total %ds\n' \
    $((t_deps - t0)) $((t_build - t_deps)) $((t_tests - t_build)) $((t_tests - t0))
exit "$rc"
