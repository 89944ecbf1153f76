#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The benchmark harness (tools/mlvpn-bench) and its link emulator: the
# emulator's model tests pass; a bad scenario is refused with its file and
# place; a short run of a shipped scenario writes a result with per-link,
# per-second samples, the links-alone baseline with the efficiency and
# retransmission figures, and a plot, and leaves nothing behind; SIGTERM in
# the middle of a run still cleans up. Checks behaviour only, never speed.
source "$(dirname "$0")/lib.sh"

BENCH="$REPO_DIR/tools/mlvpn-bench"
BUILD_DIR=$(cd "$(dirname "$MLVPN_BIN")/.." && pwd)
LINKEMU="$BUILD_DIR/tools/mlvpn-linkemu"
MODEL_TESTS="$BUILD_DIR/tools/mlvpn-linkemu-tests"
OUT="$TMP_DIR/bench"

command -v python3 >/dev/null || fail "python3 is missing (apt-get install python3)"
[[ -x $LINKEMU ]] || fail "no $LINKEMU: build the mlvpn-linkemu target"
[[ -x $MODEL_TESTS ]] || fail "no $MODEL_TESTS: build the mlvpn-linkemu-tests target"

our_namespaces() { ip netns list | awk '{print $1}' | grep -E "^mlvb-$1-[cms]$" || true; }

say "the emulator's model and configuration"
"$MODEL_TESTS" >"$TMP_DIR/model.log" 2>&1 || { cat "$TMP_DIR/model.log" >&2; fail "mlvpn-linkemu-tests failed"; }
ok "mlvpn-linkemu-tests: $(grep -o '[0-9]* passed' "$TMP_DIR/model.log" | head -n 1)"

say "a bad scenario is refused"
printf '{"links": [{"name": "a", "rate_mbit": 10, "loss_pct": 120}]}\n' >"$TMP_DIR/bad.json"
rc=0
out=$("$BENCH" "$TMP_DIR/bad.json" --mlvpn "$MLVPN_BIN" --out "$OUT" 2>&1) || rc=$?
[[ $rc -eq 1 ]] || fail "bad scenario: exit $rc, want 1 ($out)"
grep -q 'bad.json.links\[0\].loss_pct: 120 is out of range' <<<"$out" || fail "bad scenario: unclear message: $out"
ok "bad scenario refused: ${out##*error: }"

say "a 5 s run of two-50-equal, TCP, one stream, after 2 s of each link alone"
ns_before=$(our_namespaces '[0-9]+' | sort)
rc=0
timeout 180 "$BENCH" two-50-equal --test tcp-1 --duration 5 --baseline-duration 2 --mlvpn "$MLVPN_BIN" --out "$OUT" \
    >"$TMP_DIR/bench.log" 2>&1 || rc=$?
EXTRA_LOGS+=("$TMP_DIR/bench.log")
[[ $rc -eq 0 ]] || fail "mlvpn-bench exited with $rc"
RESULT="$OUT/two-50-equal/result.json"
[[ -s $RESULT ]] || fail "no $RESULT"
grep -q '^<svg' "$OUT/two-50-equal/plot.svg" || fail "no plot.svg"
grep -cE '\[mlvpn tcp-1\] +[0-9]+s ' "$TMP_DIR/bench.log" | grep -qx 5 || fail "not one progress line per second"
grep -cE '\[links alone 1 stream up\] dsl[12] +[0-9]+s ' "$TMP_DIR/bench.log" | grep -qx 4 \
    || fail "no progress lines for the links alone"
ok "result.json, plot.svg and one progress line per second"

python3 - "$RESULT" <<'EOF' || fail "result.json lacks what it should have"
import json, sys
doc = json.load(open(sys.argv[1]))
assert "error" not in doc, doc.get("error")
(r,) = doc["results"]
assert r["system"] == "mlvpn" and r["test"] == "tcp-1", r["test"]
secs = r["seconds"]
assert len(secs) == 5, f"{len(secs)} seconds of samples, want 5"
for name in ("dsl1", "dsl2"):
    got = [s["links"][name]["up_delivered_mbit"] for s in secs]
    assert all(isinstance(v, (int, float)) for v in got), got
    # Behaviour, not speed: both links carried traffic.
    assert sum(got) > 0, f"{name} carried nothing: {got}"
    assert any(s["links"][name].get("client", {}).get("state") for s in secs), f"no daemon counters for {name}"
assert r["summary"]["goodput_mbit"] > 0, r["summary"]
assert r["rtt_samples"], "no RTT samples"
assert r["cpu_s"].get("client_worker") is not None, r["cpu_s"]
# Resident memory of both daemons' processes, from /proc: every one seen.
mem = r["summary"]["memory_kib"]
assert set(mem) == {"client_priv", "client_worker", "server_priv", "server_worker"}, mem
assert all(v > 0 for v in mem.values()) and r["summary"]["memory_total_kib"] == sum(mem.values()), mem
assert all(r["memory_kib"][k]["hwm"] >= v for k, v in mem.items()), r["memory_kib"]
assert set(r["emulator"]) == {"dsl1", "dsl2"}, r["emulator"]
# The sending TCP's window, watched through sock_diag in the client's
# namespace: seen in the seconds after the first, and a connection that
# carried data had a window of more than a few packets at some point.
watched = [s["sender"] for s in secs[1:] if "sender" in s]
assert len(watched) == len(secs) - 1, f"the sender's window missing in some seconds: {watched}"
assert all(1 <= w["cwnd_min"] <= w["cwnd_max"] for w in watched), watched
assert max(w["cwnd_max"] for w in watched) > 4, watched
# Each link alone, without the tunnel: a goodput per link, and the test's
# efficiency over their sum; the retransmitted share from the sender's counters.
alone = doc["links_alone"]["tcp-1"]
assert set(alone) == {"dsl1", "dsl2"} and all(v > 0 for v in alone.values()), alone
s = r["summary"]
assert abs(s["links_alone_mbit"] - sum(alone.values())) < 0.05, (s["links_alone_mbit"], alone)
assert abs(s["efficiency"] - s["goodput_mbit"] / s["links_alone_mbit"]) < 0.002, s
assert s["segments_sent"] > 0 and 0 <= s["retransmit_pct"] <= 100, s
print(f"counters from {doc['counters_source']}")
EOF
ok "per-link samples every second, daemon counters, RTT samples, CPU, memory, emulator counters, the sender's window"
# Only namespaces this run made: another bench may be running beside it.
left=$(comm -13 <(echo "$ns_before") <(our_namespaces '[0-9]+' | sort))
[[ -z $left ]] || fail "namespaces left behind: $left"
ok "no namespaces left"

say "SIGTERM in the middle of a run"
"$BENCH" two-50-equal --test tcp-1 --duration 30 --no-baseline --mlvpn "$MLVPN_BIN" --out "$OUT/term" \
    >"$TMP_DIR/bench-term.log" 2>&1 &
bench_pid=$!
_BG_PIDS+=("$bench_pid")
EXTRA_LOGS+=("$TMP_DIR/bench-term.log")
wait_for "$TMP_DIR/bench-term.log" '\[mlvpn tcp-1\] +2s ' 30
[[ -n $(our_namespaces "$bench_pid") ]] || fail "the run has no namespaces to clean up?"
kill -TERM "$bench_pid"
wait_exit "$bench_pid" 30 "mlvpn-bench (after SIGTERM)"
[[ $EXIT_STATUS -eq 130 ]] || fail "mlvpn-bench exited with $EXIT_STATUS after SIGTERM (want 130)"
[[ -z $(our_namespaces "$bench_pid") ]] || fail "namespaces left after SIGTERM: $(our_namespaces "$bench_pid")"
grep -q '"error"' "$OUT/term/two-50-equal/result.json" || fail "the interrupted run's result does not say so"
ok "stopped with status 130, namespaces removed, partial result marked with its error"
