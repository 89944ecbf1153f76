#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# Builds the Debian package of this tree:
#
#   packaging/build-deb.sh [OUTDIR]          default OUTDIR: build/deb
#
# The packaging lives in packaging/debian, not at the top of the tree, so the
# tree is copied (the files git tracks or would track: no build directories)
# to a temporary directory with packaging/debian as debian/, and built there
# with `dpkg-buildpackage -us -uc -b`. The .deb files, .buildinfo and .changes
# land in OUTDIR; the last line printed is the path of the .deb.
#
# Build dependencies: tools/install-deps.sh installs them.
# DEB_BUILD_OPTIONS=nocheck skips building and running the unit tests.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$REPO/build/deb}
JOBS=${JOBS:-$(nproc)}

for tool in dpkg-buildpackage dh fakeroot; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "build-deb.sh: $tool is missing; run tools/install-deps.sh (as root)" >&2
        exit 1
    fi
done

version=$(dpkg-parsechangelog -l "$REPO/packaging/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/mlvpn-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/mlvpn-$version
mkdir "$src"

# Copy what makes the source: git's view of the tree when there is one
# (tracked files and new ones not ignored), else everything but build output.
cd "$REPO"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf - | tar -xf - -C "$src"
else
    tar --exclude='./build*' --exclude='./obj-*' --exclude='./debian' -cf - . | tar -xf - -C "$src"
fi
rm -rf "$src/debian"
cp -a "$REPO/packaging/debian" "$src/debian"

echo "build-deb.sh: building mlvpn $version in $src"
(cd "$src" && dpkg-buildpackage -us -uc -b -j"$JOBS")

mkdir -p "$OUT"
shopt -s nullglob
built=("$work"/*.deb "$work"/*.ddeb "$work"/*.buildinfo "$work"/*.changes)
cp "${built[@]}" "$OUT/"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
echo "build-deb.sh: wrote ${built[*]##*/} to $OUT"
echo "$OUT/mlvpn_${version}_${arch}.deb"
