#!/usr/bin/env bash
# dist/build-deb.sh — build the Debian package vsendmail_VERSION_ARCH.deb
# from debian/ with debhelper, into target/deb/ (or $DEB_DESTDIR). Run as root
# (debian/rules sets ownership) from anywhere; needs debhelper (see
# scripts/install-test-deps.sh) and cargo. Prints the path of the .deb last.
# Several builds at once are serialised (debian/vsendmail is one staging dir).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export DEB_DESTDIR=${DEB_DESTDIR:-$ROOT/target/deb}
mkdir -p "$DEB_DESTDIR" target
command -v dh >/dev/null || { echo "build-deb: debhelper is missing (apt-get install debhelper)" >&2; exit 69; }

exec 9>"$ROOT/target/.build-deb.lock"
flock 9

version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb="$DEB_DESTDIR/vsendmail_${version}_${arch}.deb"
rm -f "$deb"
# Not dpkg-buildpackage: it writes into the parent directory and checks
# build dependencies that a rustup toolchain does not satisfy as packages.
debian/rules clean >/dev/null
debian/rules binary
debian/rules clean >/dev/null
test -f "$deb"
echo "$deb"
