#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds the libFuzzer targets of tests/fuzz with clang (MLVPN_FUZZ=ON: ASan,
# UBSan and coverage everywhere) and runs each for a bounded time, starting
# from the committed corpus. Fails on any crash, sanitizer report, leak,
# timeout or out-of-memory, and prints the reproducer.
#
#   tests/run_fuzz.sh                     every target, 60 s each
#   FUZZ_SECONDS=600 tests/run_fuzz.sh transport handshake
#
# Environment: FUZZ_SECONDS (default 60) per target; FUZZ_BUILD_DIR (default
# build-fuzz at the top of the tree). New inputs the fuzzer finds go to
# FUZZ_BUILD_DIR/corpus/TARGET, never into the committed corpus; crashes to
# FUZZ_BUILD_DIR/artifacts/TARGET/. See docs/testing.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$REPO/build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=$(nproc)
((JOBS > 2)) && JOBS=2
ALL_TARGETS=(transport handshake config priv_channel seal_roundtrip offload)
TARGETS=("$@")
((${#TARGETS[@]} > 0)) || TARGETS=("${ALL_TARGETS[@]}")

[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || { echo "run_fuzz.sh: FUZZ_SECONDS must be a positive number" >&2; exit 2; }
for t in "${TARGETS[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "run_fuzz.sh: unknown target '$t' (${ALL_TARGETS[*]})" >&2; exit 2; }
done
for tool in clang clang++; do
    command -v "$tool" >/dev/null || { echo "run_fuzz.sh: $tool is missing (tools/install-deps.sh installs it)" >&2; exit 1; }
done

step() { printf '\n=== %s\n' "$*"; }
t0=$SECONDS

# -O1 -g1 as in run_sanitizers.sh; without NDEBUG.
step "configure and build ($BUILD, clang, MLVPN_FUZZ=ON, -O1, -j$JOBS)"
CC=clang CXX=clang++ cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DMLVPN_FUZZ=ON >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target fuzzers
t_build=$SECONDS

# libFuzzer sets its own ASan defaults; UBSan stops at the first report
# (-fno-sanitize-recover) and should show where.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "${TARGETS[@]}"; do
    step "fuzz_$t for ${SECONDS_EACH}s"
    work="$BUILD/corpus/$t"
    artifacts="$BUILD/artifacts/$t"
    log="$BUILD/fuzz-$t.log"
    mkdir -p "$work" "$artifacts"
    rm -f "$artifacts"/*
    dict=()
    case $t in
    transport | handshake | priv_channel) dict=(-dict="$REPO/tests/fuzz/frames.dict") ;;
    config) dict=(-dict="$REPO/tests/fuzz/config.dict") ;;
    esac
    rc=0
    # The first directory receives what the fuzzer finds; the committed
    # corpus is only read.
    "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=8192 -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
        "$work" "$REPO/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::new_units_added' "$log" || true
    shopt -s nullglob
    found=("$artifacts"/*)
    shopt -u nullglob
    if [[ $rc -ne 0 || ${#found[@]} -gt 0 ]]; then
        failed+=("$t")
        echo "FAIL: fuzz_$t exited with status $rc"
        echo "----- $log (last 60 lines)"
        tail -n 60 "$log"
        for a in "${found[@]}"; do
            echo "----- reproducer: $a ($(stat -c %s "$a") bytes)"
            od -A d -t x1z -v "$a" | head -n 16
            echo "reproduce: $BUILD/tests/fuzz/fuzz_$t $a"
            echo "       or: MLVPN_FUZZ_TRACE=1 build/tests/fuzz/fuzz_${t}_replay $a   (g++ build, no libFuzzer)"
        done
    else
        echo "ok: fuzz_$t"
    fi
done
t_run=$SECONDS

step "done"
printf 'time: build %ds, fuzzing %ds (%d targets, %ds each), total %ds\n' \
    $((t_build - t0)) $((t_run - t_build)) ${#TARGETS[@]} "$SECONDS_EACH" $((t_run - t0))
if ((${#failed[@]} > 0)); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "every target ran ${SECONDS_EACH}s without a finding"
