#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# The Debian package: builds it with packaging/build-deb.sh, checks it with
# lintian, installs it on this machine, checks what it put where (binaries,
# systemd units, sysusers/tmpfiles entries, man pages, examples, the mlvpn
# user, the directories), runs the installed mlvpn on a shipped example, and
# purges it again, checking that it leaves nothing behind.
#
#   MLVPN_SKIP_PACKAGE_TEST=1   skip (exit 77): the package build takes minutes
#   MLVPN_DEB=path/to.deb       test this .deb instead of building one
#
# Needs root and a Debian 12 machine on which no mlvpn package and no
# /usr/sbin/mlvpn are installed (otherwise it skips rather than replace them).
# The package is purged by an EXIT trap however the test ends.
set -euo pipefail

say() { printf '== %s\n' "$*"; }
ok() { printf 'ok: %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
skip() {
    printf 'SKIP: %s\n' "$*"
    exit 77
}

[[ ${MLVPN_SKIP_PACKAGE_TEST:-0} == 1 ]] && skip "MLVPN_SKIP_PACKAGE_TEST=1"
[[ $(id -u) -eq 0 ]] || fail "the package test installs a package: run it as root"
if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then skip "not a Debian system (no dpkg/apt-get)"; fi

REPO=$(cd "$(dirname "$0")/../.." && pwd)
status=$(dpkg-query -W -f '${db:Status-Status}' mlvpn 2>/dev/null || true)
[[ -z $status || $status == not-installed || $status == config-files ]] ||
    skip "a package mlvpn is installed already ($status); not replacing it"
for f in /usr/sbin/mlvpn /usr/bin/mlvpnctl; do
    [[ ! -e $f ]] || skip "$f exists (installed by hand?); not overwriting it"
done

# What purge may remove must not be there already.
etc_existed=0
[[ -e /etc/mlvpn ]] && etc_existed=1

t0=$SECONDS
TMP=$(mktemp -d /tmp/mlvpn-pkgtest.XXXXXX)
installed=0
cleanup() {
    local rc=$?
    if [[ $installed == 1 ]]; then
        echo "== purging the package (cleanup)"
        DEBIAN_FRONTEND=noninteractive dpkg --purge mlvpn >/dev/null 2>&1 || echo "warning: dpkg --purge mlvpn failed" >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
say "building the package"
if [[ -n ${MLVPN_DEB:-} ]]; then
    deb=$(readlink -f "$MLVPN_DEB")
    [[ -f $deb ]] || fail "MLVPN_DEB=$MLVPN_DEB: no such file"
else
    "$REPO/tools/install-deps.sh"
    # The unit tests run in tests/run_all.sh already.
    DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}" "$REPO/packaging/build-deb.sh" "$TMP/out" >"$TMP/build.log" 2>&1 ||
        { tail -n 40 "$TMP/build.log" >&2; fail "packaging/build-deb.sh failed (log above)"; }
    deb=$(tail -n 1 "$TMP/build.log")
    [[ -f $deb ]] || fail "build-deb.sh did not name a .deb: $deb"
fi
version=$(dpkg-deb -f "$deb" Version)
ok "built $(basename "$deb") in $((SECONDS - t0)) s"

say "lintian"
t1=$SECONDS
lintian --fail-on error,warning "$deb" >"$TMP/lintian.log" 2>&1 ||
    { cat "$TMP/lintian.log" >&2; fail "lintian reports errors or warnings"; }
ok "lintian: no errors or warnings ($((SECONDS - t1)) s)"

# ---------------------------------------------------------------------------
say "installing $(basename "$deb")"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" >"$TMP/install.log" 2>&1 ||
    { cat "$TMP/install.log" >&2; fail "apt-get install failed"; }
[[ $(dpkg-query -W -f '${db:Status-Status}' mlvpn) == installed ]] || fail "dpkg does not list mlvpn as installed"
ok "installed mlvpn $version"

say "files"
for f in /usr/sbin/mlvpn /usr/bin/mlvpnctl; do
    [[ -x $f ]] || fail "$f is missing or not executable"
done
ok "binaries: /usr/sbin/mlvpn, /usr/bin/mlvpnctl"
for f in /lib/systemd/system/mlvpn@.service /lib/systemd/system/mlvpn.target \
    /usr/lib/sysusers.d/mlvpn.conf /usr/lib/tmpfiles.d/mlvpn.conf \
    /usr/share/doc/mlvpn/copyright /usr/share/doc/mlvpn/examples/client.conf \
    /usr/share/doc/mlvpn/examples/server.conf /usr/share/doc/mlvpn/examples/mlvpn_updown.sh; do
    [[ -f $f ]] || fail "$f is missing"
done
ok "units, sysusers.d, tmpfiles.d, copyright and examples are in place"
grep -qx 'ExecStart=/usr/sbin/mlvpn -c /etc/mlvpn/%i.conf -n %i' /lib/systemd/system/mlvpn@.service ||
    fail "mlvpn@.service does not start /usr/sbin/mlvpn: $(grep ExecStart= /lib/systemd/system/mlvpn@.service)"
ok "mlvpn@.service runs /usr/sbin/mlvpn -c /etc/mlvpn/%i.conf -n %i"
[[ -L /etc/systemd/system/multi-user.target.wants/mlvpn.target ]] ||
    fail "mlvpn.target is not enabled (no multi-user.target.wants/mlvpn.target)"
if compgen -G '/etc/systemd/system/*.wants/mlvpn@*' >/dev/null; then
    fail "an mlvpn@ instance was enabled by the package: $(echo /etc/systemd/system/*.wants/mlvpn@*)"
fi
ok "mlvpn.target is enabled, no instance is"

if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /lib/systemd/system/mlvpn@.service /lib/systemd/system/mlvpn.target >"$TMP/verify.log" 2>&1 ||
        { cat "$TMP/verify.log" >&2; fail "systemd-analyze verify failed"; }
    [[ ! -s $TMP/verify.log ]] || { cat "$TMP/verify.log" >&2; fail "systemd-analyze verify complains"; }
    ok "systemd-analyze verify: units are clean"
    exposure=$(systemd-analyze security --offline=true /lib/systemd/system/mlvpn@.service 2>/dev/null |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    [[ -n $exposure ]] || fail "systemd-analyze security gave no exposure level"
    awk -v e="$exposure" 'BEGIN { exit !(e <= 3.0) }' || fail "systemd-analyze security: exposure $exposure (want <= 3.0)"
    ok "systemd-analyze security: exposure $exposure"
fi

for page in /usr/share/man/man8/mlvpn.8.gz /usr/share/man/man8/mlvpnctl.8.gz /usr/share/man/man5/mlvpn.conf.5.gz; do
    [[ -f $page ]] || fail "$page is missing"
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)
    [[ -z $warnings ]] || fail "$page: groff warnings: $warnings"
    text=$(MANWIDTH=80 man -l "$page" 2>/dev/null)
    if ! grep -q '^NAME' <<<"$text" || ! grep -q '^SEE ALSO' <<<"$text"; then fail "$page does not render as a man page"; fi
done
grep -q 'PRIVILEGE SEPARATION' <<<"$(man -l /usr/share/man/man8/mlvpn.8.gz 2>/dev/null)" || fail "mlvpn(8) lacks its sections"
grep -q 'latency_tolerence' <<<"$(man -l /usr/share/man/man5/mlvpn.conf.5.gz 2>/dev/null)" || fail "mlvpn.conf(5) lacks keys"
ok "man pages mlvpn(8), mlvpnctl(8), mlvpn.conf(5) render without warnings"

say "user and directories"
IFS=: read -r _ _ uid _ _ _ shell < <(getent passwd mlvpn) || fail "no user mlvpn after install"
((uid > 0 && uid < 1000)) || fail "mlvpn has uid $uid: not a system user"
[[ $shell == */nologin || $shell == /bin/false ]] || fail "mlvpn has the login shell $shell"
ok "user mlvpn: system uid $uid, shell $shell"
[[ $(stat -c '%U %a' /etc/mlvpn) == "root 700" ]] || fail "/etc/mlvpn is $(stat -c '%U %a' /etc/mlvpn) (want root 700)"
ok "/etc/mlvpn: root, 0700"
if command -v systemd-tmpfiles >/dev/null; then
    [[ $(stat -c '%U %a' /run/mlvpn) == "root 755" ]] || fail "/run/mlvpn is $(stat -c '%U %a' /run/mlvpn) (want root 755)"
    ok "/run/mlvpn: root, 0755"
fi

say "the installed binaries"
out=$(/usr/sbin/mlvpn -V)
[[ $out == "mlvpn ${version%%-*}" ]] || fail "mlvpn -V says '$out' (package version $version)"
ok "mlvpn -V: $out"
out=$(/usr/bin/mlvpnctl -V)
[[ $out == "mlvpnctl ${version%%-*}" ]] || fail "mlvpnctl -V says '$out'"
ok "mlvpnctl -V: $out"
for example in client server; do
    install -m 0600 -o root -g root "/usr/share/doc/mlvpn/examples/$example.conf" "$TMP/$example.conf"
    out=$(/usr/sbin/mlvpn -t -c "$TMP/$example.conf" 2>&1) || fail "mlvpn -t on the $example example: $out"
    [[ $out == "configuration OK" ]] || fail "mlvpn -t on the $example example printed: $out"
done
ok "mlvpn -t -c <0600 copy of each example>: configuration OK"
chmod 0644 "$TMP/client.conf"
if out=$(/usr/sbin/mlvpn -t -c "$TMP/client.conf" 2>&1); then fail "mlvpn -t accepted a file of mode 0644"; fi
grep -q 'chmod 600' <<<"$out" || fail "mode 0644: unexpected message: $out"
ok "mlvpn -t refuses the same file with mode 0644: $out"
sh -n /usr/share/doc/mlvpn/examples/mlvpn_updown.sh || fail "the example hook is not valid sh"
ok "the example hook parses"

# ---------------------------------------------------------------------------
say "purging"
DEBIAN_FRONTEND=noninteractive dpkg --purge mlvpn >"$TMP/purge.log" 2>&1 || { cat "$TMP/purge.log" >&2; fail "dpkg --purge failed"; }
installed=0
for f in /usr/sbin/mlvpn /usr/bin/mlvpnctl /lib/systemd/system/mlvpn@.service /lib/systemd/system/mlvpn.target \
    /etc/systemd/system/multi-user.target.wants/mlvpn.target /usr/share/doc/mlvpn; do
    [[ ! -e $f && ! -L $f ]] || fail "$f is still there after purge"
done
ok "purge removed the files and the mlvpn.target link"
if [[ $etc_existed == 0 ]]; then
    [[ ! -e /etc/mlvpn ]] || fail "/etc/mlvpn (empty, made by the package) is still there after purge"
    ok "purge removed the empty /etc/mlvpn"
fi

printf 'package test: done in %d s\n' $((SECONDS - t0))
