#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# shellcheck disable=SC2119 # helpers take optional arguments, not the script's
# A reload refuses every file it would refuse at start: owned by someone else,
# writable by the group, a symbolic link, a FIFO, a directory, a file larger
# than 1 MiB, a syntax error. Each refusal is reported by mlvpnctl (exit 1 and
# the reason) and in the log, and the tunnel keeps its old configuration.
#
# Each bad file (where it can hold text) is a valid configuration that drops
# dsl2, so a reload that wrongly accepted it would show as a lost link.
# reload_test.sh already covers an unknown key, mode 0644 and SIGHUP with a
# broken file; here SIGHUP meets the FIFO, the one case that could hang priv.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

MLVPNCTL_BIN=${MLVPNCTL_BIN:-$REPO_DIR/build/tools/mlvpnctl}
[[ -x $MLVPNCTL_BIN ]] || fail "mlvpnctl not found at '$MLVPNCTL_BIN'"
# Bounded: a daemon stuck in a reload must fail the test, not hang it.
ctl_c() { timeout 20 "$MLVPNCTL_BIN" -s "$CLIENT_SOCK" "$@"; }

# The number of links in the client's status.
link_count() {
    ctl_c show --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["tunnels"]))'
}

# Everything that must hold after a refused reload: both workers are the
# same processes, the client still has both links, both up, and the tunnel
# carries pings.
check_unchanged() {
    local what=$1 n
    pid_alive "$CLIENT_WORKER" || fail "$what: the client worker died"
    pid_alive "$SERVER_WORKER" || fail "$what: the server worker died"
    n=$(link_count) || fail "$what: mlvpnctl show failed afterwards"
    [[ $n -eq 2 ]] || fail "$what: the client has $n link(s) after the refused reload (want 2)"
    ctl_c show | grep -qE '^dsl2 +up ' || fail "$what: dsl2 is not up after the refused reload"
    check_ping "$NS_C" "$SERVER_TUN_IP" 3
    ok "$what: still 2 links, the same worker, the tunnel works"
}

# Runs `mlvpnctl reload` on the bad file in place; it must exit 1 with a
# message matching PATTERN, and the client log must hold the same refusal.
expect_refused() {
    local what=$1 pattern=$2 rc=0 out before
    before=$(count_in "$CLIENT_LOG" "reload \([^)]*\) failed: .*$pattern")
    out=$(ctl_c reload 2>&1) || rc=$?
    [[ $rc -ne 124 ]] || fail "$what: mlvpnctl reload did not return within 20 s"
    [[ $rc -eq 1 ]] || fail "$what: mlvpnctl reload exit status $rc (want 1); output: $out"
    grep -qE -- "$pattern" <<<"$out" || fail "$what: message '$out' does not match '$pattern'"
    wait_for_count "$CLIENT_LOG" "reload \([^)]*\) failed: .*$pattern" $((before + 1)) 5
    ok "$what: refused, exit 1: $out"
    check_unchanged "$what"
}

# Puts the good file back (the path may now be a link, FIFO or directory).
restore() {
    rm -rf -- "$CLIENT_CONF"
    cp "$TMP_DIR/client.good" "$CLIENT_CONF"
    chown root:root "$CLIENT_CONF"
    chmod 0600 "$CLIENT_CONF"
}

say "two links up"
setup_links 2
write_configs
start_daemons
wait_links_up
cp "$CLIENT_CONF" "$TMP_DIR/client.good"
# A valid configuration without dsl2: accepted, it would remove a link.
sed -e '/^\[dsl2\]/,$d' "$CLIENT_CONF" >"$TMP_DIR/client.smaller"
if ! grep -q '^\[dsl1\]' "$TMP_DIR/client.smaller" || grep -q '^\[dsl2\]' "$TMP_DIR/client.smaller"; then
    fail "could not derive the one-link configuration"
fi
n=$(link_count)
[[ $n -eq 2 ]] || fail "the client reports $n links at start (want 2)"
ok "the client reports 2 links"

say "owned by another user"
cp "$TMP_DIR/client.smaller" "$CLIENT_CONF"
chmod 0600 "$CLIENT_CONF"
chown nobody "$CLIENT_CONF"
expect_refused "owned by nobody" "owned by uid [0-9]+, must be owned by root"
restore

say "writable by the group"
cp "$TMP_DIR/client.smaller" "$CLIENT_CONF"
chmod 0620 "$CLIENT_CONF"
expect_refused "mode 0620" "mode 0620 lets group modify it.*chmod 600"
restore

say "a symbolic link to a good file"
cp "$TMP_DIR/client.smaller" "$TMP_DIR/client.target"
chmod 0600 "$TMP_DIR/client.target"
rm -f -- "$CLIENT_CONF"
ln -s "$TMP_DIR/client.target" "$CLIENT_CONF"
expect_refused "a symbolic link" "is a symbolic link; point -c at the real file"
restore

say "a directory"
rm -f -- "$CLIENT_CONF"
mkdir -m 0700 "$CLIENT_CONF"
expect_refused "a directory" "is a directory, not a regular file"
restore

say "more than 1 MiB"
# Valid text throughout: only the size is wrong.
{
    cat "$TMP_DIR/client.smaller"
    python3 -c 'import sys; sys.stdout.write(("#" + "x" * 1023 + "\n") * 1100)'
} >"$CLIENT_CONF"
chmod 0600 "$CLIENT_CONF"
size=$(stat -c %s "$CLIENT_CONF")
((size > 1048576)) || fail "the big file is only $size bytes"
expect_refused "a $size-byte file" "is $size bytes, more than the 1 MiB"
restore

say "a syntax error"
sed -e 's/^\[dsl1\]$/[dsl1/' "$TMP_DIR/client.smaller" >"$CLIENT_CONF"
chmod 0600 "$CLIENT_CONF"
line=$(grep -n '^\[dsl1$' "$CLIENT_CONF" | cut -d: -f1)
[[ -n $line ]] || fail "could not break the section header"
expect_refused "an unclosed section header" "$(basename "$CLIENT_CONF"):$line: "
restore

say "a FIFO, by mlvpnctl and by SIGHUP, with no writer"
rm -f -- "$CLIENT_CONF"
mkfifo -m 0600 "$CLIENT_CONF"
expect_refused "a FIFO (mlvpnctl)" "is a FIFO, not a regular file"
before=$(count_in "$CLIENT_LOG" "reload \(SIGHUP\) failed: .*is a FIFO")
kill -HUP "$CLIENT_PID"
wait_for_count "$CLIENT_LOG" "reload \(SIGHUP\) failed: .*is a FIFO, not a regular file" $((before + 1)) 5
ok "SIGHUP with a FIFO: refused in the log"
check_unchanged "a FIFO (SIGHUP)"

say "a FIFO with a writer waiting on it"
# A writer blocked in open() is released as soon as priv opens the FIFO; priv
# must still refuse it and not read what the writer sends.
bg_start timeout 30 sh -c "cat '$TMP_DIR/client.smaller' >'$CLIENT_CONF'"
sleep 0.2
expect_refused "a FIFO with a writer" "is a FIFO, not a regular file"
restore

say "the good file is accepted again (the refusals above were not a dead reload path)"
rc=0; out=$(ctl_c reload 2>&1) || rc=$?
[[ $rc -eq 0 ]] || fail "reload of the original file: exit $rc, '$out'"
ok "reload of the original file: $out"
cp "$TMP_DIR/client.smaller" "$CLIENT_CONF"
chmod 0600 "$CLIENT_CONF"
rc=0; out=$(ctl_c reload 2>&1) || rc=$?
[[ $rc -eq 0 ]] || fail "reload of the one-link file: exit $rc, '$out'"
n=$(link_count)
[[ $n -eq 1 ]] || fail "after a good reload without dsl2 the client still reports $n links"
ok "a good reload without dsl2 does remove it ($out), so the checks above could fail"
echo "PASS"
