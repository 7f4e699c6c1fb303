#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: build vsendmail, start a loopback SMTP
# receiver (scripts/demo_sink.rs, the test suite's sink), give the invoking
# user (looked up by real uid) a virtual identity with its own source address
# 127.0.0.2 and HELO name, send one real message with `vsendmail -t`, and
# print what the receiver saw: peer address, HELO, envelope, header fields,
# and vsendmail's syslog line. Everything stays on loopback; the temporary
# directory and the receiver are removed/stopped at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}

# DEMO_BIN / DEMO_SINK: use these binaries instead of building (for testing the demo).
if [ -z "${DEMO_BIN:-}" ] || [ -z "${DEMO_SINK:-}" ]; then
    echo "==> building (release): vsendmail and the demo receiver"
    "$CARGO" build --release --quiet --bin vsendmail --example demo_sink
fi
BIN=${DEMO_BIN:-$ROOT/target/release/vsendmail}
SINK=${DEMO_SINK:-$ROOT/target/release/examples/demo_sink}

LOGIN=$(id -run)
TMP=$(mktemp -d /tmp/vsendmail-demo.XXXXXX)
chmod 755 "$TMP"
SINK_PID=
cleanup() {
    if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then kill "$SINK_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# The receiver: reports on its stdout when its stdin closes.
coproc DEMO_SINK { exec "$SINK" --syslog "$TMP/log.sock"; }
SINK_PID=$DEMO_SINK_PID
exec {SINK_IN}>&"${DEMO_SINK[1]}" {SINK_OUT}<&"${DEMO_SINK[0]}"
read -r -t 30 _ SINK_ADDR <&"$SINK_OUT" || { echo "demo: the receiver did not start" >&2; exit 1; }
echo "==> receiver listening on $SINK_ADDR"

mkdir -m 700 "$TMP/spool"
: > "$TMP/aliases"
cat > "$TMP/virtusers" <<VU
# login   sender                   source     options
$LOGIN    $LOGIN@demo.example      127.0.0.2  helo=mail.demo.example
VU
cat > "$TMP/vsendmail.conf" <<CONF
hostname      = "host.demo.example"
virtusers     = "$TMP/virtusers"
aliases       = "$TMP/aliases"
spool         = "$TMP/spool"
relay         = "smtp://$SINK_ADDR"
syslog_socket = "$TMP/log.sock"
CONF
echo "==> identity of '$LOGIN' (uid $(id -ru)) in $TMP/virtusers:"
grep -v '^#' "$TMP/virtusers" | sed 's/^/    /'

MESSAGE="To: Demo Receiver <someone@example.net>
Subject: vsendmail demo

Hello from $LOGIN, sent through vsendmail from its own source address.
"
echo "==> $BIN -C $TMP/vsendmail.conf -t   (message on stdin:)"
printf '%s' "$MESSAGE" | sed 's/^/    | /'
set +e
printf '%s' "$MESSAGE" | "$BIN" -C "$TMP/vsendmail.conf" -t
rc=$?
set -e
echo "==> vsendmail exited with $rc"

# Close the receiver's stdin: it prints its report and exits.
exec {SINK_IN}>&-
eval "exec ${DEMO_SINK[1]}>&-" 2>/dev/null || true
echo "==> what the receiver saw"
cat <&"$SINK_OUT"
wait "$SINK_PID" 2>/dev/null || true
SINK_PID=
if [ "$rc" -ne 0 ]; then
    echo "demo: vsendmail failed (exit $rc)" >&2
    exit "$rc"
fi
