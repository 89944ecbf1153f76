#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Installs what building and testing mlvpn needs on Debian 12 (bookworm), and
# creates the system user the worker runs as. Idempotent and quiet when all is
# there already: apt-get runs only for missing packages.
set -eu

PACKAGES="
    cmake g++ make pkg-config
    liburing-dev libsodium-dev libssl-dev libnl-3-dev libnl-route-3-dev libcap-ng-dev libseccomp-dev
    doctest-dev libexpected-dev libfmt-dev nlohmann-json3-dev libsystemd-dev
    debhelper dpkg-dev fakeroot lintian man-db
    iproute2 iperf3 iputils-ping nftables tcpdump procps passwd curl python3 ethtool
    clang libclang-rt-14-dev
"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (it installs packages and creates the 'mlvpn' user)" >&2
    exit 1
fi
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    # shellcheck disable=SC2086 # one word per package
    echo "install-deps.sh: needs a Debian-based system (apt-get, dpkg-query); install by hand:" $PACKAGES >&2
    exit 1
fi

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing="$missing $p"
done

if [ -n "$missing" ]; then
    echo "install-deps.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # iperf3 asks whether to start a daemon at boot; say no without asking.
    echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The worker's default user (mlvpn -u USER overrides it).
if ! id -u mlvpn >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mlvpn
    echo "install-deps.sh: created the system user 'mlvpn'"
fi
