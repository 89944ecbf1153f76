#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds everything (libraries, daemon, tools, tests) with AddressSanitizer
# and UndefinedBehaviorSanitizer (MLVPN_SANITIZE=ON, g++) and runs the whole
# ctest suite: unit tests, fuzz corpus replays, and the integration tests,
# which then run the sanitized daemon. Run as root (the integration tests
# need it):
#
#   sudo tests/run_sanitizers.sh
#
# Environment: SANITIZE_BUILD_DIR (default build-asan at the top of the
# tree). Extra arguments go to ctest (e.g. -L unit). Exits with ctest's
# status. See docs/testing.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${SANITIZE_BUILD_DIR:-$REPO/build-asan}
JOBS=$(nproc)
((JOBS > 2)) && JOBS=2

if [[ $(id -u) -ne 0 ]]; then
    echo "run_sanitizers.sh: run as root: the integration tests create network namespaces and TUN devices" >&2
    exit 1
fi

step() { printf '\n=== %s\n' "$*"; }
t0=$SECONDS

# -O1 -g1, as ASan's authors advise: fast enough to run the integration
# tests' traffic, line tables for the reports, and four times quicker to
# build than -O2 -g (UBSan's checks weigh on the optimiser). Without NDEBUG,
# so assertions run too. A unity build (each target's sources compiled a few
# at a time as one file): 260 s instead of 375 s on two cores, as the headers
# (libsodium, fmt, doctest, the standard library) are parsed once per batch.
# The normal build (tests/run_all.sh) compiles every file on its own, so a
# file that leans on another's includes still fails there.
step "configure and build ($BUILD, MLVPN_SANITIZE=ON, -O1, unity, -j$JOBS)"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DMLVPN_SANITIZE=ON -DCMAKE_UNITY_BUILD=ON >/dev/null
cmake --build "$BUILD" -j"$JOBS"
t_build=$SECONDS

# Every report is fatal: ASan halts by default, UBSan because of
# -fno-sanitize-recover, and the processes exit with status 1.
#
# Leaks. LeakSanitizer runs at exit (an atexit handler). It stops the
# process's threads with a ptrace-attached helper that lists them from
# /proc/PID/task. That works in the unit tests, the fuzz replays and in
# [priv] (root, not chrooted): a leak there fails the test, and the
# integration tests see it too, as they require [priv] to exit with status 0
# after SIGTERM. It cannot work in the worker: chrooted to an empty
# directory it has no /proc, and LeakSanitizer then stops with "Can't open
# /proc/PID/task for reading ... LeakSanitizer has encountered a fatal
# error" and exit status 1 (tried by hand: chroot, NO_NEW_PRIVS, a non-root
# uid and not-dumpable each in turn; only the missing /proc breaks it). The
# worker never gets there: it is a forked child that leaves with _exit(),
# which runs no atexit handler — so leaks stay on where they can work.
#
# The worker's seccomp filter. The sanitizer runtimes make system calls of
# their own in the worker, which its allow-list (priv/seccomp.cpp) does not
# have: ASan calls sigaltstack() before every noreturn call (_exit, abort, a
# throw); a report checks whether stderr is a terminal (ioctl TCGETS; hence
# color=never), takes a lock (futex) and looks for the program's symbols
# (readlink, open, fstat); UBSan's vptr check opens a pipe (pipe2; the check
# is off in MLVPN_SANITIZE builds). Each of them kills the worker with
# SIGSYS. A build with MLVPN_SANITIZE defines MLVPN_SANITIZE=1 so that the
# filter can allow them there; see docs/testing.md. In the chroot, reports
# are unsymbolised "(mlvpn+0x...)": `addr2line -Cfe build-asan/priv/mlvpn
# 0x...` reads them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-color=never:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-report_objects=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-color=never:print_stacktrace=1:halt_on_error=1}

step "tests (ASAN_OPTIONS=$ASAN_OPTIONS)"
rc=0
# Left to the normal build: the sandbox self-test (it expects open/ioctl to
# kill the worker, which a sanitizer build's filter allows, above); the
# package test (it builds its own, unsanitized package); the flood test
# (its criteria are rates and CPU, which ASan's slowdown makes meaningless);
# the benchmark's smoke test, the 200 restarts of the nonce test and the
# minute of link flapping (long runs of what the other tests exercise in
# seconds, and the unit tests run the same state machine under ASan: CI has
# 30 minutes for everything); the rebind test on a fixed port (the rebind
# test's paths again, with one more close before the request); the replay
# test and the rebind test, a minute and half a minute of CI's 30 (their
# datagrams take the receive path the transport fuzz replays and the unit
# tests run under the sanitizers; the rebind requests are priv's, whose
# messages the priv_channel fuzz replays cover).
SKIP='^integration_(sandbox|package|flood|bench_smoke|aggregation|nonce_reuse|link_flap|rebind_fixed_port|replay|rebind)_test$'
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" -E "$SKIP" "$@" || rc=$?
t_tests=$SECONDS

step "done: ctest exit status $rc"
printf 'time: build %ds, tests %ds, total %ds\n' $((t_build - t0)) $((t_tests - t_build)) $((t_tests - t0))
exit "$rc"
