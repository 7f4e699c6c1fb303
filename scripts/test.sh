#!/usr/bin/env bash
# scripts/test.sh — what `make test` runs: install the test dependencies, then
# rustfmt, clippy, every Rust test (unit + integration, release build) and the
# callers' compat suite (compat/run.sh, when present); all steps run even when
# one fails, then a summary. Exit status: 0 only if every step passed.
# Must run as root (the tests create throwaway users and run Postfix).
#   TEST_ARGS="name_filter"   passed to `cargo test` (e.g. TEST_ARGS=support)
#   SKIP_LINT=1               skip fmt and clippy
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 70
CARGO=${CARGO:-cargo}

if [ "$(id -u)" -ne 0 ]; then
    echo "make test: must run as root (the tests create Unix users and run Postfix): sudo make test" >&2
    exit 77
fi

summary=()
failed=0

step() {
    local name=$1
    shift
    echo
    echo "==> $name: $*"
    local t0=$SECONDS
    "$@"
    local rc=$?
    local dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        summary+=("  ok    $name (${dt}s)")
    else
        summary+=("  FAIL  $name (exit $rc, ${dt}s)")
        failed=1
    fi
    return 0
}

step "test dependencies" bash scripts/install-test-deps.sh
if [ -z "${SKIP_LINT:-}" ]; then
    step "rustfmt" "$CARGO" fmt --all -- --check
    step "clippy" "$CARGO" clippy --all-targets -- -D warnings
fi
# shellcheck disable=SC2086  # TEST_ARGS is a word list on purpose
step "cargo test" "$CARGO" test --release --no-fail-fast -- ${TEST_ARGS:-}
if [ -x compat/run.sh ] || [ -f compat/run.sh ]; then
    step "compat suite" bash compat/run.sh
fi

# Postfix instances of a test process that died without unwinding (normally
# each test stops its own): stop those whose owner process is gone, by their
# master's pid file.
for pidfile in /tmp/vs-postfix-*/queue/pid/master.pid; do
    [ -e "$pidfile" ] || continue
    dir=${pidfile%/queue/pid/master.pid}
    owner=$(cat "$dir/owner.pid" 2>/dev/null || true)
    if [ -n "$owner" ] && kill -0 "$owner" 2>/dev/null; then
        continue
    fi
    pid=$(tr -d ' ' < "$pidfile")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "stopping a leftover test Postfix ($dir, pid $pid)"
        /usr/sbin/postfix -c "$dir/conf" stop >/dev/null 2>&1 || true
    fi
done

echo
echo "==> make test summary"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "make test: FAILED"
    exit 1
fi
echo "make test: all steps passed"
