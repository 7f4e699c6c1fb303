#!/usr/bin/env bash
# dist/build-deb.sh — build the Debian packages of vsendmail as a packager
# does, with `dpkg-buildpackage -us -uc` (the native source package, then the
# binary package), then lint them with dist/lint-deb.sh (lintian: fails on
# errors, shows warnings) unless --no-lint is given.
#
# dpkg-buildpackage writes its results into the parent directory of the tree
# it runs in, so it runs in a copy of this tree (the files git knows, or the
# whole tree without target/ outside git) under target/deb-build/; the results
# are copied to target/deb/ (or $DEB_DESTDIR): .deb, .dsc, .tar.xz,
# .buildinfo, .changes. Nothing is written next to this tree. The copy keeps
# the files' times and builds with this tree's cargo target directory, so
# only the vsendmail crate itself is compiled again, and nothing when it did
# not change since the last package build.
#
# Run as root (Rules-Requires-Root: binary-targets; or have fakeroot). Needs
# dpkg-dev and debhelper (scripts/install-test-deps.sh), lintian for the lint,
# and the Rust toolchain on PATH (rustup; see debian/control). Several builds
# at once are serialised. Prints the path of the .deb last.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LINT=1
case "${1:-}" in
--no-lint) LINT=0 ;;
"") ;;
*) echo "usage: dist/build-deb.sh [--no-lint]" >&2; exit 64 ;;
esac
DEST=${DEB_DESTDIR:-$ROOT/target/deb}
for c in dpkg-buildpackage dh cargo; do
    command -v "$c" >/dev/null || { echo "build-deb: $c is missing (scripts/install-test-deps.sh installs dpkg-dev and debhelper; cargo comes from rustup)" >&2; exit 69; }
done
mkdir -p "$DEST" target

exec 9>"$ROOT/target/.build-deb.lock"
flock 9

version=$(dpkg-parsechangelog -S Version)
source=$(dpkg-parsechangelog -S Source)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
upstream=${version%%-*}
BUILD=$ROOT/target/deb-build
TREE=$BUILD/$source-$upstream
rm -rf "$BUILD"
mkdir -p "$TREE"

# The copy: what git tracks plus untracked files it does not ignore (so work
# in progress is packaged as it is), with their times.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf - | tar -xf - -C "$TREE"
else
    tar --exclude=./target --exclude=./fuzz/target --exclude=./.git -cf - . | tar -xf - -C "$TREE"
fi

export CARGO_TARGET_DIR=$ROOT/target
log=$BUILD/dpkg-buildpackage.log
if ! (cd "$TREE" && dpkg-buildpackage -us -uc) >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "build-deb: dpkg-buildpackage failed (whole log: $log)" >&2
    exit 1
fi

base=${source}_${version}
for f in "$base.dsc" "$base.tar.xz" "${base}_${arch}.deb" "${base}_${arch}.buildinfo" "${base}_${arch}.changes"; do
    [ -f "$BUILD/$f" ] || { echo "build-deb: dpkg-buildpackage did not make $f (log: $log)" >&2; exit 1; }
    cp -f "$BUILD/$f" "$DEST/"
done
changes=$DEST/${base}_${arch}.changes
deb=$DEST/${base}_${arch}.deb

if [ "$LINT" = 1 ]; then
    bash "$ROOT/dist/lint-deb.sh" "$changes" >&2
fi
echo "$deb"
