#!/usr/bin/env bash
# dist/lint-deb.sh — lint vsendmail's Debian packages with lintian: the
# .changes file given (the source package, the binary package and the
# buildinfo that dist/build-deb.sh made). Prints every tag lintian shows
# (errors and warnings; the overrides in debian/*lintian-overrides say why a
# tag is accepted) and exits 1 when there is an error, else 0.
#   dist/lint-deb.sh target/deb/vsendmail_VERSION_ARCH.changes
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: dist/lint-deb.sh FILE.changes" >&2; exit 64; }
changes=$1
[ -f "$changes" ] || { echo "lint-deb: no such file: $changes" >&2; exit 66; }
command -v lintian >/dev/null || { echo "lint-deb: lintian is missing (apt-get install lintian; scripts/install-test-deps.sh installs it)" >&2; exit 69; }

out=$(lintian --fail-on error --tag-display-limit 0 "$changes" 2>&1) && rc=0 || rc=$?
errors=$(printf '%s\n' "$out" | grep -c '^E: ' || true)
warnings=$(printf '%s\n' "$out" | grep -c '^W: ' || true)
[ -n "$out" ] && printf '%s\n' "$out"
echo "lintian: $errors errors, $warnings warnings ($(basename "$changes"))"
if [ "$rc" -ne 0 ] || [ "$errors" -ne 0 ]; then
    echo "lint-deb: lintian found errors in $(basename "$changes")" >&2
    exit 1
fi
