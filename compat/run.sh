#!/usr/bin/env bash
# compat/run.sh — what `make compat` runs (and `make test`): the callers'
# compat suite. As root: builds the release binary if it is missing, builds
# compat/lettre-caller (its own cargo project, target dir target/compat-lettre),
# then runs compat/callers.py, which runs each real caller against vsendmail
# and prints one `ok`/`FAIL` line per test and `N passed, M failed`.
# Exit status: 0 only if every test passed.
#
#   compat/run.sh [NAME...]     only the tests whose name contains NAME
#   COMPAT_KEEP=1               keep the temp dir (/tmp/vsc-compat-*)
#   DEB=path.deb                test this package instead of building one
# The callers themselves come from Debian packages: scripts/install-test-deps.sh.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 70
CARGO=${CARGO:-cargo}

if [ "$(id -u)" -ne 0 ]; then
    echo "compat: must run as root (throwaway users, mount namespaces): sudo make compat" >&2
    exit 77
fi

missing=()
for c in php git-send-email mutt bsd-mailx s-nail cron dh dpkg-buildpackage lintian setpriv unshare nsenter useradd /usr/bin/python3 /usr/bin/git; do
    case $c in
    git-send-email) [ -x /usr/lib/git-core/git-send-email ] || missing+=(git-email) ;;
    cron) [ -x /usr/sbin/cron ] || missing+=(cron) ;;
    *) command -v "$c" >/dev/null || missing+=("$c") ;;
    esac
done
if [ "${#missing[@]}" -ne 0 ]; then
    echo "compat: missing ${missing[*]}: run scripts/install-test-deps.sh (as root)" >&2
    exit 69
fi

BIN=${VSENDMAIL_BIN:-$ROOT/target/release/vsendmail}
if [ ! -x "$BIN" ]; then
    echo "==> compat: building the release binary"
    "$CARGO" build --release --quiet || exit 70
fi

echo "==> compat: building compat/lettre-caller (target/compat-lettre)"
LETTRE_TARGET=$ROOT/target/compat-lettre
if ! "$CARGO" build --release --quiet --manifest-path compat/lettre-caller/Cargo.toml \
    --target-dir "$LETTRE_TARGET"; then
    echo "compat: building compat/lettre-caller failed (its test will fail)" >&2
fi

export VSENDMAIL_BIN=$BIN LETTRE_CALLER=$LETTRE_TARGET/release/lettre-caller
# The suite must end by itself within its budget (~10 minutes).
exec timeout --kill-after=30 900 /usr/bin/python3 -u compat/callers.py "$@"
