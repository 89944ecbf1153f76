#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds mlvpn and runs every test: the unit tests and the integration tests
# (two real daemons in network namespaces); then, if they all passed, the same
# suite under ASan and UBSan (tests/run_sanitizers.sh) and each fuzz target
# for a minute (tests/run_fuzz.sh). Run as root from anywhere:
#
#   sudo ./tests/run_all.sh
#
# Installs missing build and test packages first (Debian 12). The build goes
# to build/ at the top of the tree (BUILD_DIR overrides it; the sanitizer and
# fuzz builds go to build-asan/ and build-fuzz/). Exits with the status of the
# first stage that failed.
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

# One unity file per target, as the sanitizer build: on two cores 234 s
# against 329 s for the whole tree, which CI's 30 minutes need.
step "configure and build ($BUILD, RelWithDebInfo, unity, -j$JOBS)"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_UNITY_BUILD=ON
cmake --build "$BUILD" -j"$JOBS"
t_build=$SECONDS

step "tests"
rc=0
# Unit tests run in parallel; the integration tests are RUN_SERIAL.
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" || rc=$?
t_tests=$SECONDS

# Sanitizers and fuzzing (docs/testing.md), on a clean run only.
t_asan=$t_tests
t_fuzz=$t_tests
if [[ $rc -eq 0 ]]; then
    "$REPO/tests/run_sanitizers.sh" || rc=$?
    t_asan=$SECONDS
    t_fuzz=$t_asan
fi
if [[ $rc -eq 0 ]]; then
    "$REPO/tests/run_fuzz.sh" || rc=$?
    t_fuzz=$SECONDS
fi

step "done: exit status $rc"
printf 'time: dependencies %ds, build %ds, tests %ds, sanitizers %ds, fuzzing %ds, total %ds\n' \
    $((t_deps - t0)) $((t_build - t_deps)) $((t_tests - t_build)) $((t_asan - t_tests)) $((t_fuzz - t_asan)) \
    $((t_fuzz - t0))
exit "$rc"
