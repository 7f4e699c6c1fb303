#!/usr/bin/env bash
# bench/run.sh — `make bench`: vsendmail side by side with msmtp and a bare
# floor client, same loopback receiver, same message, source bound to
# 127.0.0.2 in all. Reports medians, ratios and whether each target of the
# issues is met, as information: the exit code says only whether the bench
# itself could run, never whether a target was met.
#
# Pieces: bench/sink.rs (the receiver; counts connections and messages),
# bench/driver.rs (runs commands with stdin from a file and times them, no
# shell in between), bench/floor.rs (the floor client), bench/dns.rs (the
# DNS of section 8, with the AD bit). sink, driver and dns are std-only and
# built with plain rustc into target/bench-tools. BENCH_SKIP_STS=1 skips
# section 8 (MTA-STS + TLSA against the plain MX path).
#
# Sizes can be shrunk for a quick look (e.g. BENCH_QUICK=1 make bench);
# the defaults keep a full run under about 10 minutes on 2 cores:
#   BENCH_RUNS (200)    rounds of the per-message comparison
#   BENCH_PAR_N (400)   sends per tool for the 8-process throughput
#   BENCH_QUEUE_N (10000) messages queued and flushed by -q (twice: to the
#                         bench's receiver, then to Postfix's smtp-sink)
#   BENCH_AUDIT_N (1000000) generated audit records for --who
# BENCH_SKIP_BUILD=1 uses the binaries as they are; BENCH_BIN and BENCH_FLOOR
# point at other builds, BENCH_SMTP_SINK at another smtp-sink (default
# /usr/sbin/smtp-sink, from the postfix package). BENCH_RESULTS: where the
# Markdown report goes (default bench/results.md).
# Output: a table on stdout and bench/results.md (for the README).
# Everything listens and connects on loopback only; every process started
# here is stopped on exit, and the temporary directory is removed.

set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 70
BIN=${BENCH_BIN:-$ROOT/target/dist/vsendmail}
FLOOR=${BENCH_FLOOR:-$ROOT/target/release/examples/bench_floor}
TOOLS=$ROOT/target/bench-tools
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results.md}

if [ -n "${BENCH_QUICK:-}" ]; then
    RUNS=${BENCH_RUNS:-30}; PAR_N=${BENCH_PAR_N:-80}
    QUEUE_N=${BENCH_QUEUE_N:-500}; AUDIT_N=${BENCH_AUDIT_N:-100000}
else
    RUNS=${BENCH_RUNS:-200}; PAR_N=${BENCH_PAR_N:-400}
    QUEUE_N=${BENCH_QUEUE_N:-10000}; AUDIT_N=${BENCH_AUDIT_N:-1000000}
fi
WARMUP=10
SRC=127.0.0.2
SENDER=bench@bench.example
RCPTS="r1@dest.example r2@dest.example"

W=$(mktemp -d "${TMPDIR:-/tmp}/vsbench.XXXXXX") || exit 73
chmod 755 "$W"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
    rm -rf "$W"
    [ -n "${SHM:-}" ] && rm -rf "$SHM"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }
NOTES=()
note() { NOTES+=("$*"); say "note: $*"; }

# calc EXPR: floating point via awk, 3 decimals ("n/a" if an operand is missing).
calc() {
    case "$1" in *n/a*|*nan*|*NaN*) echo n/a; return ;; esac
    awk "BEGIN { x = $1; printf \"%.3f\", x }" 2>/dev/null || echo n/a
}
# field LINE KEY: value of key=value in a driver output line.
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

# Driver output: successful runs of an rr, median and failures per command.
total_ok() { field "$(grep '^total ' "$1")" ok; }
med() { local l; l=$(grep "^result name=$2 " "$1"); [ -n "$l" ] && field "$l" median || echo n/a; }
fails() { local l; l=$(grep "^result name=$2 " "$1"); [ -n "$l" ] && field "$l" fails || echo 0; }

# bg_run OUTFILE CMD...: runs CMD in its own process group (so cleanup can stop
# it and its children at once) and waits for it; returns its exit code.
bg_run() {
    local out=$1; shift
    setsid -w "$@" >"$out" 2>>"$W/bench.stderr" &
    local p=$!
    PIDS+=("$p")
    wait "$p"
    local rc=$?
    local keep=() q
    for q in "${PIDS[@]}"; do [ "$q" != "$p" ] && keep+=("$q"); done
    PIDS=("${keep[@]}")
    return $rc
}

# ---------------------------------------------------------------- table
ROWS=()   # "section|what|value|target|verdict"
row() { ROWS+=("$1|$2|$3|${4:-}|${5:-}"); }
# verdict VALUE OP LIMIT: "met" / "NOT met" / "n/a".
verdict() {
    case "$1$3" in *n/a*|"") echo n/a; return ;; esac
    if awk "BEGIN { exit !($1 $2 $3) }"; then echo met; else echo "NOT met"; fi
}

# ---------------------------------------------------------------- prerequisites
need_pkg() { # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing $2 ..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1; }
    fi
    command -v "$1" >/dev/null 2>&1
}
HAVE_MSMTP=1; need_pkg msmtp msmtp || { HAVE_MSMTP=0; note "msmtp not available: its columns are skipped"; }
HAVE_TIME=1; need_pkg /usr/bin/time time || { HAVE_TIME=0; note "/usr/bin/time not available: RSS figures are skipped"; }
command -v openssl >/dev/null || need_pkg openssl openssl || note "openssl not available: DKIM keys cannot be made"

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "building (cargo build --profile dist: the shipped binary; --release --examples: the floor) ..."
if [ -z "${BENCH_SKIP_BUILD:-}" ] && ! { cargo build --profile dist --bins -q && cargo build --release --examples -q; } 2>"$W/build.log"; then
    cat "$W/build.log" >&2
    say "bench: the release build failed"
    exit 70
fi
mkdir -p "$TOOLS"
for t in sink driver dns; do
    if [ ! -x "$TOOLS/$t" ] || [ "bench/$t.rs" -nt "$TOOLS/$t" ]; then
        rustc --edition 2024 -C opt-level=3 -o "$TOOLS/$t" "bench/$t.rs" || { say "bench: cannot build bench/$t.rs"; exit 70; }
    fi
done
DRIVER=$TOOLS/driver

# ---------------------------------------------------------------- the receiver
"$TOOLS/sink" --expect-src "$SRC" >"$W/sink.port" 2>"$W/sink.stderr" &
SINK_PID=$!
PIDS+=("$SINK_PID")
for _ in $(seq 1 500); do
    [ -s "$W/sink.port" ] && break
    kill -0 "$SINK_PID" 2>/dev/null || break
    sleep 0.01
done
PORT=$(head -1 "$W/sink.port")
[ -n "$PORT" ] || { say "bench: the receiver did not start"; exit 70; }

sink_stat() { "$DRIVER" stat "$PORT" "$@"; }
# check_phase LABEL EXPECTED_MSGS: the receiver must have seen exactly that
# many messages since the last reset, all from the bound source address.
LAST_STAT=""
check_phase() {
    LAST_STAT=$(sink_stat)
    local msgs foreign
    msgs=$(field "$LAST_STAT" msgs); foreign=$(field "$LAST_STAT" foreign)
    [ "$msgs" = "$2" ] || note "$1: the receiver got $msgs messages, expected $2 ($LAST_STAT)"
    [ "$foreign" = 0 ] || note "$1: $foreign connections did NOT come from $SRC"
    sink_stat reset >/dev/null
}

# ---------------------------------------------------------------- messages
# mkmsg FILE SIZE: a complete message (the headers an application writes),
# CRLF line ends, exactly SIZE bytes.
mkmsg() {
    local f=$1 size=$2
    printf '%s\r\n' \
        "From: Bench <$SENDER>" \
        "To: r1@dest.example, r2@dest.example" \
        "Subject: bench message" \
        "Date: Sat, 28 Nov 2026 12:00:00 +0000" \
        "Message-ID: <bench.$size@bench.example>" \
        "MIME-Version: 1.0" \
        "Content-Type: text/plain; charset=us-ascii" \
        "" >"$f"
    local have; have=$(stat_size "$f")
    local rest=$((size - have))
    # body: 76 characters + CRLF per line, the last line cut to fit.
    yes 'The quick brown fox jumps over the lazy dog; 0123456789 abcdefghijklmnopqrs'$'\r' |
        head -c $((rest - 2)) >>"$f"
    printf '\r\n' >>"$f"
}
stat_size() { wc -c <"$1" | tr -d ' '; }
MSG=$W/msg-1k;  mkmsg "$MSG" 1024
MSG1M=$W/msg-1m; mkmsg "$MSG1M" $((1024 * 1024))
MSG50M=$W/msg-50m; mkmsg "$MSG50M" 50000000   # 50 MB (decimal)

# ---------------------------------------------------------------- vsendmail setup
# conf_file NAME SPOOL VIRTUSERS [EXTRA_LINES [RELAY_PORT]]: a vsendmail
# config relaying to the receiver (or to another one on RELAY_PORT).
conf_file() {
    local f=$W/$1.conf
    mkdir -p "$2"
    {
        echo "hostname  = \"bench.example\""
        echo "virtusers = \"$3\""
        echo "aliases   = \"$W/aliases\""
        echo "spool     = \"$2\""
        echo "relay     = \"smtp://127.0.0.1:${5:-$PORT}\""
        [ -n "${4:-}" ] && printf '%s\n' "$4"
    } >"$f"
    chmod 644 "$f"
    echo "$f"
}
: >"$W/aliases"
printf '%s\n' \
    "# bench identities" \
    "root     $SENDER   $SRC   helo=bench.example" \
    "*        @bench.example   -" >"$W/virtusers"
CONF=$(conf_file base "$W/spool" "$W/virtusers")
VS="$BIN -C $CONF -i $RCPTS"
MS="msmtp --host=127.0.0.1 --port=$PORT --from=$SENDER --source-ip=$SRC --tls=off --auth=off --domain=bench.example $RCPTS"
FL="$FLOOR $SRC $PORT $SENDER $RCPTS"

# one_shot LABEL CONF_CMD...: one send; ok if exit 0 and the receiver got it.
one_shot() {
    local label=$1; shift
    sink_stat reset >/dev/null
    local rc=0
    "$@" <"$MSG" >/dev/null 2>"$W/oneshot.stderr" || rc=$?
    local st; st=$(sink_stat); sink_stat reset >/dev/null
    if [ "$rc" = 0 ] && [ "$(field "$st" msgs)" = 1 ]; then return 0; fi
    note "$label: one-shot send failed (exit $rc, receiver: $st): $(head -c 300 "$W/oneshot.stderr" | tr '\n' ' ')"
    return 1
}
VS_OK=0; one_shot vsendmail $VS && VS_OK=1
one_shot floor $FL || { say "bench: the floor client cannot send"; exit 70; }
[ "$HAVE_MSMTP" = 1 ] && { one_shot msmtp $MS || HAVE_MSMTP=0; }
[ "$VS_OK" = 1 ] || note "vsendmail does not deliver yet: its figures are n/a"

say "receiver on 127.0.0.1:$PORT; work dir $W"

# ---------------------------------------------------------------- 1. per message
say "1. per-message wall time, $RUNS rounds ..."
CMDS=("floor=$FL")
[ "$VS_OK" = 1 ] && CMDS+=("vsendmail=$VS")
# Diagnostic, not a target: the same send with the spool on tmpfs shows how
# much of the time is the spool's fsync work.
SHM=""
if [ "$VS_OK" = 1 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    SHM=$(mktemp -d /dev/shm/vsbench.XXXXXX)
    CONF_SHM=$(conf_file tmpfs "$SHM/spool" "$W/virtusers")
    CMDS+=("vs_tmpfs=$BIN -C $CONF_SHM -i $RCPTS")
fi
[ "$HAVE_MSMTP" = 1 ] && CMDS+=("msmtp=$MS")
bg_run "$W/rr1.out" "$DRIVER" rr --runs "$RUNS" --warmup "$WARMUP" --input "$MSG" \
    --stderr "$W/runs.stderr" "${CMDS[@]}"
check_phase "per-message" "$(total_ok "$W/rr1.out")"
M_FL=$(med "$W/rr1.out" floor); M_VS=$(med "$W/rr1.out" vsendmail); M_MS=$(med "$W/rr1.out" msmtp)
for n in floor vsendmail msmtp; do
    f=$(fails "$W/rr1.out" $n); [ "$f" != 0 ] && note "per-message: $n failed $f times"
done
row "1 per message (1 KB, 2 rcpt)" "floor median ms" "$M_FL"
row "1 per message (1 KB, 2 rcpt)" "vsendmail median ms" "$M_VS"
row "1 per message (1 KB, 2 rcpt)" "msmtp median ms" "$M_MS"
R=$(calc "$M_VS / $M_FL"); row "1 per message (1 KB, 2 rcpt)" "vsendmail / floor" "$R" "<= 1.5" "$(verdict "$R" '<=' 1.5)"
R=$(calc "$M_VS / $M_MS"); row "1 per message (1 KB, 2 rcpt)" "vsendmail / msmtp" "$R" "about 0.1" "$(verdict "$R" '<=' 0.1)"
R=$(calc "$M_MS / $M_FL"); row "1 per message (1 KB, 2 rcpt)" "msmtp / floor" "$R" "" ""
if [ -n "$SHM" ]; then
    M_SHM=$(med "$W/rr1.out" vs_tmpfs)
    row "1 per message (1 KB, 2 rcpt)" "diagnostic: vsendmail, spool on tmpfs, ms" "$M_SHM" "" ""
    row "1 per message (1 KB, 2 rcpt)" "diagnostic: tmpfs spool / floor" "$(calc "$M_SHM / $M_FL")" "" ""
    rm -rf "$SHM"; SHM=""
fi

# ---------------------------------------------------------------- 2. throughput
say "2. throughput, 8 processes, $PAR_N sends each ..."
par_rate() { # par_rate NAME CMD
    bg_run "$W/par.$1" "$DRIVER" par --n "$PAR_N" --procs 8 --input "$MSG" --stderr "$W/runs.stderr" "$2"
    local l; l=$(grep '^par ' "$W/par.$1")
    local f; f=$(field "$l" fails); [ "${f:-0}" != 0 ] && note "throughput: $1 failed $f of $PAR_N"
    check_phase "throughput $1" $((PAR_N - ${f:-0}))
    field "$l" rate
}
T_VS=n/a; T_MS=n/a
T_FL=$(par_rate floor "$FL")
[ "$VS_OK" = 1 ] && T_VS=$(par_rate vsendmail "$VS")
[ "$HAVE_MSMTP" = 1 ] && T_MS=$(par_rate msmtp "$MS")
row "2 throughput, 8 processes" "floor msgs/s" "$T_FL"
row "2 throughput, 8 processes" "vsendmail msgs/s" "$T_VS"
row "2 throughput, 8 processes" "msmtp msgs/s" "$T_MS"
R=$(calc "$T_VS / $T_MS"); row "2 throughput, 8 processes" "vsendmail / msmtp" "$R" ">= 4" "$(verdict "$R" '>=' 4)"
R=$(calc "$T_VS / $T_FL"); row "2 throughput, 8 processes" "vsendmail / floor" "$R" "" ""

# ---------------------------------------------------------------- 3. peak RSS
# rss_median INPUT CMD...: median over 5 runs of the peak RSS in KB.
rss_median() {
    local input=$1; shift
    local i v vals=()
    for i in 1 2 3 4 5; do
        /usr/bin/time -f %M -o "$W/rss" "$@" <"$input" >/dev/null 2>>"$W/runs.stderr" || { echo n/a; return; }
        v=$(tail -1 "$W/rss"); vals+=("$v")
    done
    printf '%s\n' "${vals[@]}" | sort -n | sed -n 3p
}
if [ "$HAVE_TIME" = 1 ]; then
    say "3. peak RSS ..."
    sink_stat reset >/dev/null
    R_FL=$(rss_median "$MSG" $FL); R_VS=n/a; R_MS=n/a
    [ "$VS_OK" = 1 ] && R_VS=$(rss_median "$MSG" $VS)
    [ "$HAVE_MSMTP" = 1 ] && R_MS=$(rss_median "$MSG" $MS)
    sink_stat reset >/dev/null
    row "3 peak RSS, one send" "floor KB" "$R_FL"
    row "3 peak RSS, one send" "vsendmail KB" "$R_VS"
    row "3 peak RSS, one send" "msmtp KB" "$R_MS"
    R=$(calc "$R_VS / $R_MS"); row "3 peak RSS, one send" "vsendmail / msmtp" "$R" "<= 0.5" "$(verdict "$R" '<=' 0.5)"
fi

# ---------------------------------------------------------------- 4. 50 MB message
if [ "$HAVE_TIME" = 1 ] && [ "$VS_OK" = 1 ]; then
    say "4. 50 MB message ..."
    sink_stat reset >/dev/null
    if /usr/bin/time -f '%e %M' -o "$W/big.time" $VS <"$MSG50M" >/dev/null 2>"$W/big.stderr"; then
        read -r BIG_S BIG_KB < <(tail -1 "$W/big.time")
        check_phase "50 MB" 1
        BIG_BYTES=$(field "$LAST_STAT" bytes)
        row "4 50 MB message (50,000,000 bytes)" "vsendmail peak RSS KB" "$BIG_KB" "< 10240" "$(verdict "$BIG_KB" '<' 10240)"
        row "4 50 MB message (50,000,000 bytes)" "vsendmail wall s" "$BIG_S"
        row "4 50 MB message (50,000,000 bytes)" "bytes at the receiver" "$BIG_BYTES" "" ""
    else
        note "50 MB: vsendmail failed: $(head -c 300 "$W/big.stderr" | tr '\n' ' ')"
        row "4 50 MB message (50,000,000 bytes)" "vsendmail peak RSS KB" n/a "< 10240" n/a
    fi
fi

# ---------------------------------------------------------------- 5. big virtusers
if [ "$VS_OK" = 1 ]; then
    say "5. virtusers of 100,000 lines ..."
    awk -v src="$SRC" -v sender="$SENDER" 'BEGIN {
        print "# 100,000 identities, the invoking user (root) near the end"
        for (i = 1; i <= 99990; i++) printf "u%06d\tu%06d@bench.example\t%s\thelo=bench.example\n", i, i, src
        printf "root\t%s\t%s\thelo=bench.example\n", sender, src
        for (i = 99991; i <= 99998; i++) printf "u%06d\tu%06d@bench.example\t%s\n", i, i, src
    }' >"$W/virtusers.100k"
    CONF100K=$(conf_file v100k "$W/spool" "$W/virtusers.100k")
    if one_shot "virtusers 100k" $BIN -C "$CONF100K" -i $RCPTS; then
        bg_run "$W/rr5.out" "$DRIVER" rr --runs "$RUNS" --warmup "$WARMUP" --input "$MSG" \
            --stderr "$W/runs.stderr" "small=$VS" "big=$BIN -C $CONF100K -i $RCPTS"
        sink_stat reset >/dev/null
        D=$(field "$(grep '^paired name=big ' "$W/rr5.out")" median_diff)
        row "5 virtusers 100,000 lines" "3-line file median ms" "$(med "$W/rr5.out" small)"
        row "5 virtusers 100,000 lines" "100,000-line file, no index, median ms" "$(med "$W/rr5.out" big)"
        row "5 virtusers 100,000 lines" "added ms per run, no index (diagnostic)" "$D"
        # As installed: `newaliases` (-bi) checks the table and writes its index.
        $BIN -C "$CONF100K" -bi >/dev/null 2>&1 || note "-bi on the 100,000-line table failed"
        bg_run "$W/rr5i.out" "$DRIVER" rr --runs "$RUNS" --warmup "$WARMUP" --input "$MSG" \
            --stderr "$W/runs.stderr" "small=$VS" "big=$BIN -C $CONF100K -i $RCPTS"
        sink_stat reset >/dev/null
        DI=$(field "$(grep '^paired name=big ' "$W/rr5i.out")" median_diff)
        row "5 virtusers 100,000 lines" "100,000-line file, indexed by -bi, median ms" "$(med "$W/rr5i.out" big)"
        row "5 virtusers 100,000 lines" "added ms per run, indexed (paired median)" "$DI" "< 1" "$(verdict "$DI" '<' 1)"
    else
        row "5 virtusers 100,000 lines" "added ms per run" n/a "< 1" n/a
    fi
fi

# ---------------------------------------------------------------- 6. queue flush
if [ "$VS_OK" = 1 ]; then
    say "6. queue flush: queueing $QUEUE_N messages with -odq ..."
    CONFQ=$(conf_file queue "$W/qspool" "$W/virtusers")
    VSQ="$BIN -C $CONFQ -odq -i $RCPTS"
    # Detect -odq / -q: one queued message must not reach the receiver until -q.
    sink_stat reset >/dev/null
    Q_OK=0
    if $VSQ <"$MSG" >/dev/null 2>"$W/q.stderr" && [ "$(field "$(sink_stat)" msgs)" = 0 ] &&
        $BIN -C "$CONFQ" -q >/dev/null 2>>"$W/q.stderr" && [ "$(field "$(sink_stat)" msgs)" = 1 ]; then
        Q_OK=1
    else
        note "queue: -odq then -q did not deliver exactly one message (not there yet?): $(head -c 300 "$W/q.stderr" | tr '\n' ' ')"
    fi
    sink_stat reset >/dev/null
    if [ "$Q_OK" = 1 ]; then
        bg_run "$W/parq.out" "$DRIVER" par --n "$QUEUE_N" --procs 2 --input "$MSG" --stderr "$W/runs.stderr" "$VSQ"
        QL=$(grep '^par ' "$W/parq.out")
        QF=$(field "$QL" fails); [ "${QF:-0}" != 0 ] && note "queue: $QF of $QUEUE_N -odq submissions failed"
        check_phase "queueing with -odq" 0
        # mailq's total line tells a message lost at submission from one lost by -q.
        Q_BEFORE=$($BIN -C "$CONFQ" -bp 2>/dev/null | tail -1)
        say "6. queue flush: vsendmail -q ..."
        bg_run "$W/flush.out" "$DRIVER" rr --runs 1 --warmup 0 --timeout 900 --stderr "$W/runs.stderr" "flush=$BIN -C $CONFQ -q"
        FLUSH_MS=$(med "$W/flush.out" flush)
        [ "$(fails "$W/flush.out" flush)" != 0 ] && note "queue: vsendmail -q exited non-zero"
        QUEUED=$((QUEUE_N - ${QF:-0}))
        check_phase "queue flush" "$QUEUED"
        Q_CONNS=$(field "$LAST_STAT" conns); Q_MAX=$(field "$LAST_STAT" max_per_conn)
        Q_LEFT=$($BIN -C "$CONFQ" -bp 2>/dev/null | tail -1)
        FLUSH_RATE=$(calc "$QUEUED / ($FLUSH_MS / 1000)")
        SEQ_RATE=$(calc "1000 / $M_VS")
        row "6 queue flush ($QUEUED msgs)" "-odq submissions/s (2 processes)" "$(field "$QL" rate)"
        row "6 queue flush ($QUEUED msgs)" "mailq before the flush" "$Q_BEFORE" "" ""
        row "6 queue flush ($QUEUED msgs)" "-q wall s" "$(calc "$FLUSH_MS / 1000")"
        row "6 queue flush ($QUEUED msgs)" "-q msgs/s" "$FLUSH_RATE" ">= 2000" "$(verdict "$FLUSH_RATE" '>=' 2000)"
        row "6 queue flush ($QUEUED msgs)" "receiver connections" "$Q_CONNS" "< msgs (reuse)" "$(verdict "$Q_CONNS" '<' "$QUEUED")"
        row "6 queue flush ($QUEUED msgs)" "most messages on one connection" "$Q_MAX" "" ""
        row "6 queue flush ($QUEUED msgs)" "-q / one process each (from 1)" "$(calc "$FLUSH_RATE / $SEQ_RATE")" "" ""
        row "6 queue flush ($QUEUED msgs)" "-q / 8 processes (from 2)" "$(calc "$FLUSH_RATE / $T_VS")" "" ""
        row "6 queue flush ($QUEUED msgs)" "mailq after the flush" "$Q_LEFT" "" ""
    else
        row "6 queue flush" "-q msgs/s" n/a ">= 2000" n/a
    fi
fi

# ---------------------------------------------------------------- 6b. flush to smtp-sink
# The same flush against an independent receiver, Postfix's smtp-sink (package
# postfix; the figure other MTAs are usually measured with): it accepts and
# discards, announces PIPELINING, and counts the messages (-c: "mesg=N").
SMTP_SINK=${BENCH_SMTP_SINK:-/usr/sbin/smtp-sink}
# ss_count: the last message count smtp-sink printed.
ss_count() { tr '\r' '\n' <"$W/smtp-sink.out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1; }
if [ "$VS_OK" = 1 ] && [ "${Q_OK:-0}" = 1 ] && [ ! -x "$SMTP_SINK" ]; then
    note "6b: $SMTP_SINK not found (package postfix; scripts/install-test-deps.sh installs it unconfigured): skipped"
    row "6b queue flush to Postfix smtp-sink" "-q msgs/s" n/a ">= 2000" skipped
elif [ "$VS_OK" = 1 ] && [ "${Q_OK:-0}" = 1 ]; then
    say "6b. queue flush to Postfix's smtp-sink: queueing $QUEUE_N messages with -odq ..."
    SS_USER=(); [ "$(id -u)" = 0 ] && SS_USER=(-u nobody)   # required when run as root
    SS_PORT=""
    for _ in 1 2 3 4 5; do
        p=$((20000 + RANDOM % 40000))
        setsid "$SMTP_SINK" -c "${SS_USER[@]}" "127.0.0.1:$p" 256 >"$W/smtp-sink.out" 2>"$W/smtp-sink.stderr" &
        SS_PID=$!
        PIDS+=("$SS_PID")
        for _ in $(seq 1 100); do
            kill -0 "$SS_PID" 2>/dev/null || break
            if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then SS_PORT=$p; break; fi
            sleep 0.02
        done
        [ -n "$SS_PORT" ] && break
    done
    if [ -z "$SS_PORT" ]; then
        note "6b: smtp-sink did not start: $(head -c 300 "$W/smtp-sink.stderr" | tr '\n' ' ')"
        row "6b queue flush to Postfix smtp-sink" "-q msgs/s" n/a ">= 2000" n/a
    else
        CONFS=$(conf_file smtp-sink "$W/sspool" "$W/virtusers" "" "$SS_PORT")
        bg_run "$W/parss.out" "$DRIVER" par --n "$QUEUE_N" --procs 2 --input "$MSG" --stderr "$W/runs.stderr" \
            "$BIN -C $CONFS -odq -i $RCPTS"
        SF=$(field "$(grep '^par ' "$W/parss.out")" fails)
        [ "${SF:-0}" != 0 ] && note "6b: $SF of $QUEUE_N -odq submissions failed"
        SS_QUEUED=$((QUEUE_N - ${SF:-0}))
        SS_BEFORE=$(ss_count); SS_BEFORE=${SS_BEFORE:-0}
        [ "$SS_BEFORE" = 0 ] || note "6b: smtp-sink got $SS_BEFORE messages before the flush (-odq sent some?)"
        say "6b. queue flush to smtp-sink: vsendmail -q ..."
        bg_run "$W/flushss.out" "$DRIVER" rr --runs 1 --warmup 0 --timeout 900 --stderr "$W/runs.stderr" \
            "flush=$BIN -C $CONFS -q"
        SS_MS=$(med "$W/flushss.out" flush)
        [ "$(fails "$W/flushss.out" flush)" != 0 ] && note "6b: vsendmail -q exited non-zero"
        sleep 0.2   # smtp-sink prints its counters as sessions end
        SS_GOT=$(ss_count)
        [ "${SS_GOT:-0}" = "$SS_QUEUED" ] || note "6b: smtp-sink counted ${SS_GOT:-0} messages, expected $SS_QUEUED"
        SS_LEFT=$($BIN -C "$CONFS" -bp 2>/dev/null | tail -1)
        SS_RATE=$(calc "$SS_QUEUED / ($SS_MS / 1000)")
        row "6b queue flush to Postfix smtp-sink ($SS_QUEUED msgs)" "-q wall s" "$(calc "$SS_MS / 1000")"
        row "6b queue flush to Postfix smtp-sink ($SS_QUEUED msgs)" "-q msgs/s" "$SS_RATE" ">= 2000" "$(verdict "$SS_RATE" '>=' 2000)"
        row "6b queue flush to Postfix smtp-sink ($SS_QUEUED msgs)" "messages smtp-sink counted" "${SS_GOT:-n/a}" "" ""
        row "6b queue flush to Postfix smtp-sink ($SS_QUEUED msgs)" "-q to smtp-sink / -q to bench/sink.rs" "$(calc "$SS_RATE / ${FLUSH_RATE:-n/a}")" "" ""
        row "6b queue flush to Postfix smtp-sink ($SS_QUEUED msgs)" "mailq after the flush" "$SS_LEFT" "" ""
    fi
fi

# ---------------------------------------------------------------- 7. later features
# 7a. audit + rate. The audit trail cannot be switched off (DESIGN.md), so
# its cost is inside every vsendmail figure; the rate check is measured paired
# (rate set vs. no rate) for a non-root user (root is never limited).
AUDIT_TEMPLATE=""
if [ "$VS_OK" = 1 ]; then
    AUDIT_TEMPLATE=$(find "$W/spool/audit" -name '*.jsonl' ! -name 'log-*' -type f 2>/dev/null | sort | tail -1)
    if [ -n "$AUDIT_TEMPLATE" ]; then
        row "7a audit trail" "records written in this run" "$(cat "$W"/spool/audit/[0-9]*.jsonl | wc -l)" "" ""
        row "7a audit trail" "per-message cost ms" "in every figure" "< 0.1" "n/a (no off switch)"
    else
        note "7a audit: no audit record under <spool>/audit after the sends (feature not there yet)"
        row "7a audit trail" "per-message cost ms" n/a "< 0.1" "skipped"
    fi

    say "7a. rate check, paired on/off (user nobody) ..."
    NUID=$(id -u nobody 2>/dev/null); NGID=$(id -g nobody 2>/dev/null)
    printf '%s\n' "nobody   $SENDER   $SRC   helo=bench.example" >"$W/virtusers.nobody"
    chmod 644 "$W/virtusers.nobody"
    mkdir -p "$W/nspool"; chown "$NUID:$NGID" "$W/nspool" 2>/dev/null
    CONF_OFF=$(conf_file rate-off "$W/nspool" "$W/virtusers.nobody")
    CONF_ON=$(conf_file rate-on "$W/nspool" "$W/virtusers.nobody" 'rate      = "1000000/h"')
    # Detect the feature: under rate=1/h with over_rate=refuse the second
    # message must be refused (75); then time with a limit never reached.
    mkdir -p "$W/nspool-probe"; chown "$NUID:$NGID" "$W/nspool-probe" 2>/dev/null
    CONF_PROBE=$(conf_file rate-probe "$W/nspool-probe" "$W/virtusers.nobody" 'rate      = "1/h"
over_rate = "refuse"')
    sink_stat reset >/dev/null
    RATE_OK=0
    if [ -n "$NUID" ] && "$DRIVER" rr --runs 1 --warmup 0 --uid "$NUID" --gid "$NGID" --input "$MSG" \
            --stderr "$W/rate.stderr" "first=$BIN -C $CONF_PROBE -i $RCPTS" >"$W/rate1.out" &&
        [ "$(fails "$W/rate1.out" first)" = 0 ] && [ "$(field "$(sink_stat)" msgs)" = 1 ]; then
        "$DRIVER" rr --runs 1 --warmup 0 --uid "$NUID" --gid "$NGID" --input "$MSG" \
            --stderr "$W/rate.stderr" "second=$BIN -C $CONF_PROBE -i $RCPTS" >"$W/rate2.out"
        if [ "$(fails "$W/rate2.out" second)" = 1 ] && [ "$(field "$(sink_stat)" msgs)" = 1 ]; then
            RATE_OK=1
        else
            note "7a rate: a second message under rate=1/h, over_rate=refuse was not refused (rate limits not there yet)"
        fi
    else
        note "7a rate: a send as user nobody failed: $(head -c 300 "$W/rate.stderr" 2>/dev/null | tr '\n' ' ')"
    fi
    [ "$RATE_OK" = 1 ] || row "7a rate check" "per-message cost ms" n/a "< 0.1" "skipped"
    sink_stat reset >/dev/null
    if [ "$RATE_OK" = 1 ]; then
        bg_run "$W/rr7a.out" "$DRIVER" rr --runs "$RUNS" --warmup "$WARMUP" --uid "$NUID" --gid "$NGID" \
            --input "$MSG" --stderr "$W/runs.stderr" "off=$BIN -C $CONF_OFF -i $RCPTS" "on=$BIN -C $CONF_ON -i $RCPTS"
        sink_stat reset >/dev/null
        D=$(field "$(grep '^paired name=on ' "$W/rr7a.out")" median_diff)
        row "7a rate check (user nobody)" "rate off median ms" "$(med "$W/rr7a.out" off)"
        row "7a rate check (user nobody)" "rate on median ms" "$(med "$W/rr7a.out" on)"
        row "7a rate check (user nobody)" "added ms per message (paired)" "$D" "< 0.1" "$(verdict "$D" '<' 0.1)"
    fi
fi

# 7b. --who over generated audit records.
if [ "$VS_OK" = 1 ]; then
    WHO_RC=0; $BIN -C "$CONF" --who "$SRC" >/dev/null 2>"$W/who.stderr" || WHO_RC=$?
    if [ -z "$AUDIT_TEMPLATE" ] || { [ "$WHO_RC" != 0 ] && [ "$WHO_RC" != 1 ]; }; then
        if [ -z "$AUDIT_TEMPLATE" ]; then note "7b --who: skipped (no audit record to copy)"
        else note "7b --who: not there yet (exit $WHO_RC: $(head -c 200 "$W/who.stderr" | tr '\n' ' '))"; fi
        row "7b --who" "query time ms" n/a "well under 1000" "skipped"
    else
        say "7b. --who over $AUDIT_N generated records ..."
        mkdir -p "$W/audit-big"
        END=$(date -u +%F)
        head -1 "$AUDIT_TEMPLATE" >"$W/audit.template"
        if "$DRIVER" gen-audit --template "$W/audit.template" --out "$W/audit-big" --records "$AUDIT_N" \
                --days 90 --end "$END" >"$W/gen.out" 2>>"$W/bench.stderr"; then
            NEEDLE=$(grep '^needle ' "$W/gen.out")
            N_SRC=$(field "$NEEDLE" src); N_TIME=$(field "$NEEDLE" time); N_MID=$(field "$NEEDLE" message_id)
            # N_TIME is YYYY-MM-DDTHH:MM, UTC
            CONFW=$(conf_file who "$W/spool" "$W/virtusers" "audit_dir = \"$W/audit-big\"")
            bg_run "$W/rr7b.out" "$DRIVER" rr --runs 5 --warmup 1 --timeout 120 --stderr "$W/runs.stderr" \
                "addr_port_time=$BIN -C $CONFW --who $N_SRC $N_TIME" "message_id=$BIN -C $CONFW --who $N_MID"
            for q in addr_port_time message_id; do
                f=$(fails "$W/rr7b.out" $q); [ "$f" != 0 ] && note "7b --who $q: $f runs exited non-zero (no match?)"
                v=$(med "$W/rr7b.out" $q)
                row "7b --who over $AUDIT_N records" "$q query ms" "$v" "< 1000" "$(verdict "$v" '<' 1000)"
            done
            row "7b --who over $AUDIT_N records" "trail size MB" "$(du -sm "$W/audit-big" | cut -f1)" "" ""
        else
            note "7b --who: could not generate records from the template $(head -c 200 "$W/audit.template")"
        fi
        rm -rf "$W/audit-big"
    fi
fi

# 7c. DKIM: RSA-2048 and Ed25519 paired against unsigned, 1 KB and 1 MB; 50 MB RSS.
if [ "$VS_OK" = 1 ] && command -v openssl >/dev/null; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/rsa.pem" 2>/dev/null
    openssl genpkey -algorithm ED25519 -out "$W/ed.pem" 2>/dev/null
    chmod 600 "$W/rsa.pem" "$W/ed.pem"
    for k in rsa ed; do
        printf '%s\n' "root     $SENDER   $SRC   helo=bench.example dkim=bench:$W/$k.pem" >"$W/virtusers.$k"
    done
    CONF_RSA=$(conf_file dkim-rsa "$W/spool" "$W/virtusers.rsa")
    CONF_ED=$(conf_file dkim-ed "$W/spool" "$W/virtusers.ed")
    sink_stat reset >/dev/null
    DKIM_OK=0
    if $BIN -C "$CONF_RSA" -i $RCPTS <"$MSG" >/dev/null 2>"$W/dkim.stderr" &&
        $BIN -C "$CONF_ED" -i $RCPTS <"$MSG" >/dev/null 2>>"$W/dkim.stderr" &&
        [ "$(field "$(sink_stat)" dkim)" = 2 ]; then
        DKIM_OK=1
    else
        note "7c DKIM: signed sends did not arrive signed (not there yet?): $(sink_stat) $(head -c 300 "$W/dkim.stderr" | tr '\n' ' ')"
        row "7c DKIM" "signing cost ms" n/a "" "skipped"
    fi
    sink_stat reset >/dev/null
    if [ "$DKIM_OK" = 1 ]; then
        say "7c. DKIM signing, paired against unsigned ..."
        for sz in 1k 1m; do
            input=$MSG; runs=$RUNS; [ $sz = 1m ] && { input=$MSG1M; runs=$((RUNS / 4)); }
            bg_run "$W/rr7c.$sz" "$DRIVER" rr --runs "$runs" --warmup 3 --input "$input" --stderr "$W/runs.stderr" \
                "unsigned=$VS" "rsa2048=$BIN -C $CONF_RSA -i $RCPTS" "ed25519=$BIN -C $CONF_ED -i $RCPTS"
            check_phase "DKIM $sz" "$(total_ok "$W/rr7c.$sz")"
            row "7c DKIM, $sz message" "unsigned median ms" "$(med "$W/rr7c.$sz" unsigned)"
            D=$(field "$(grep '^paired name=rsa2048 ' "$W/rr7c.$sz")" median_diff)
            if [ $sz = 1k ]; then row "7c DKIM, $sz message" "RSA-2048 added ms" "$D" "< 2" "$(verdict "$D" '<' 2)"
            else row "7c DKIM, $sz message" "RSA-2048 added ms" "$D"; fi
            D=$(field "$(grep '^paired name=ed25519 ' "$W/rr7c.$sz")" median_diff)
            if [ $sz = 1k ]; then row "7c DKIM, $sz message" "Ed25519 added ms" "$D" "< 0.2" "$(verdict "$D" '<' 0.2)"
            else row "7c DKIM, $sz message" "Ed25519 added ms" "$D"; fi
        done
        if [ "$HAVE_TIME" = 1 ]; then
            for k in rsa ed; do
                c=$CONF_RSA; [ $k = ed ] && c=$CONF_ED
                if /usr/bin/time -f '%e %M' -o "$W/big.time" $BIN -C "$c" -i $RCPTS <"$MSG50M" >/dev/null 2>"$W/big.stderr"; then
                    read -r s kb < <(tail -1 "$W/big.time")
                    check_phase "50 MB signed $k" 1
                    [ "$(field "$LAST_STAT" dkim)" = 1 ] || note "50 MB $k: the message arrived unsigned"
                    row "7c DKIM, 50 MB message" "$k signed peak RSS KB" "$kb" "< 10240" "$(verdict "$kb" '<' 10240)"
                    row "7c DKIM, 50 MB message" "$k signed wall s" "$s"
                else
                    note "50 MB signed $k failed: $(head -c 300 "$W/big.stderr" | tr '\n' ' ')"
                fi
            done
        fi
    fi
fi

# 7d. Abuse desk (issue 15). Attribution and the per-recipient log records
# cannot be switched off, so their cost is in every figure above; the breaker
# check is paired ([breaker] on vs. off) for a non-root user (root is never
# counted). Then --stats and --log --user over generated log records.
if [ "$VS_OK" = 1 ] && [ "${RATE_OK:-0}" = 1 ]; then
    say "7d. breaker check, paired on/off (user nobody) ..."
    CONF_BRK=$(conf_file breaker-on "$W/nspool" "$W/virtusers.nobody" '[breaker]
distinct_rcpts = "1000000/h"
failures = "100%/1000000"
unknown_users = "1000000/h"')
    sink_stat reset >/dev/null
    bg_run "$W/rr7d.out" "$DRIVER" rr --runs "$RUNS" --warmup "$WARMUP" --uid "$NUID" --gid "$NGID" \
        --input "$MSG" --stderr "$W/runs.stderr" "off=$BIN -C $CONF_OFF -i $RCPTS" "on=$BIN -C $CONF_BRK -i $RCPTS"
    sink_stat reset >/dev/null
    D=$(field "$(grep '^paired name=on ' "$W/rr7d.out")" median_diff)
    row "7d abuse desk (user nobody)" "breaker off median ms" "$(med "$W/rr7d.out" off)"
    row "7d abuse desk (user nobody)" "breaker on median ms" "$(med "$W/rr7d.out" on)"
    row "7d abuse desk (user nobody)" "breaker added ms per message (paired)" "$D" "< 0.2" "$(verdict "$D" '<' 0.2)"
    LOG_TEMPLATE=$(find "$W/nspool/audit" -name 'log-*.jsonl' -type f 2>/dev/null | sort | tail -1)
    if [ -n "$LOG_TEMPLATE" ]; then
        say "7d. --stats and --log --user over $AUDIT_N generated log records ..."
        mkdir -p "$W/log-big"
        head -1 "$LOG_TEMPLATE" >"$W/log.template"
        if "$DRIVER" gen-log --template "$W/log.template" --out "$W/log-big" --records "$AUDIT_N" \
                --days 90 --users 100 --end "$(date -u +%F)" >"$W/genlog.out" 2>>"$W/bench.stderr"; then
            CONFL=$(conf_file logq "$W/spool" "$W/virtusers" "audit_dir = \"$W/log-big\"")
            # The first --stats writes the finished days' summaries: timed alone.
            bg_run "$W/rr7d.cold" "$DRIVER" rr --runs 1 --warmup 0 --timeout 120 --stderr "$W/runs.stderr" \
                "stats_90d_cold=$BIN -C $CONFL --stats --since 90d"
            v=$(med "$W/rr7d.cold" stats_90d_cold)
            row "7d over $AUDIT_N log records" "stats_90d_cold ms (writes the summaries)" "$v" "< 1000" "$(verdict "$v" '<' 1000)"
            bg_run "$W/rr7d.q" "$DRIVER" rr --runs 5 --warmup 1 --timeout 120 --stderr "$W/runs.stderr" \
                "stats_90d=$BIN -C $CONFL --stats --since 90d" "stats_24h=$BIN -C $CONFL --stats" \
                "log_user=$BIN -C $CONFL --log --user bench7"
            for q in stats_90d stats_24h log_user; do
                v=$(med "$W/rr7d.q" $q)
                row "7d over $AUDIT_N log records" "$q ms" "$v" "< 1000" "$(verdict "$v" '<' 1000)"
            done
            row "7d over $AUDIT_N log records" "log size MB" "$(du -sm "$W/log-big" | cut -f1)" "" ""
        else
            note "7d: could not generate log records from $(head -c 200 "$W/log.template")"
        fi
        rm -rf "$W/log-big"
    else
        note "7d: no per-recipient log record to copy"
    fi
fi

# ---------------------------------------------------------------- 8. MTA-STS + TLSA
# Direct delivery (MX, from bench/dns.rs) to the receiver: the plain path
# (mta_sts = false, dnssec = "off") against the same send with a cached
# MTA-STS policy (mode testing; its TXT id is asked each time) and a TLSA
# lookup at _25._tcp.MX with the AD bit (dnssec = "trust-ad"; no records).
if [ "$VS_OK" = 1 ] && [ -z "${BENCH_SKIP_STS:-}" ]; then
    say "8. MTA-STS policy (cached) and TLSA lookup against the plain MX path, $RUNS rounds ..."
    "$TOOLS/dns" >"$W/dns.port" 2>/dev/null &
    PIDS+=("$!")
    for _ in $(seq 1 500); do [ -s "$W/dns.port" ] && break; sleep 0.01; done
    DPORT=$(head -1 "$W/dns.port")
    mx_conf() { # mx_conf NAME EXTRA: direct delivery, no relay
        local f=$W/$1.conf
        mkdir -p "$W/$1-spool"
        {
            echo "hostname  = \"bench.example\""
            echo "virtusers = \"$W/virtusers\""
            echo "aliases   = \"$W/aliases\""
            echo "spool     = \"$W/$1-spool\""
            echo "dns       = [\"127.0.0.1:$DPORT\"]"
            echo "mx_port   = $PORT"
            printf '%s\n' "$2"
        } >"$f"
        chmod 644 "$f"
        echo "$f"
    }
    C_PLAIN=$(mx_conf mxplain $'mta_sts = false\ndnssec = "off"')
    C_STS=$(mx_conf mxsts $'mta_sts = true\ndnssec = "trust-ad"')
    mkdir -p "$W/mxsts-spool/mta-sts"
    printf 'bench1 %s\nversion: STSv1\nmode: testing\nmx: mx.dest.example\nmax_age: 86400\n' "$(date +%s)" \
        >"$W/mxsts-spool/mta-sts/dest.example"
    if one_shot "mx plain" $BIN -C "$C_PLAIN" -i $RCPTS && one_shot "mx sts+tlsa" $BIN -C "$C_STS" -i $RCPTS; then
        bg_run "$W/rr8.out" "$DRIVER" rr --runs "$RUNS" --warmup "$WARMUP" --input "$MSG" \
            --stderr "$W/runs8.stderr" "mxplain=$BIN -C $C_PLAIN -i $RCPTS" "mxsts=$BIN -C $C_STS -i $RCPTS"
        check_phase "MTA-STS + TLSA" "$(total_ok "$W/rr8.out")"
        M_P=$(med "$W/rr8.out" mxplain); M_S=$(med "$W/rr8.out" mxsts)
        row "8 MTA-STS (cached) + TLSA, direct" "plain MX path median ms" "$M_P"
        row "8 MTA-STS (cached) + TLSA, direct" "with policy + TLSA median ms" "$M_S"
        D=$(calc "$M_S - $M_P")
        row "8 MTA-STS (cached) + TLSA, direct" "added ms per message" "$D" "< 0.5" "$(verdict "$D" '<' 0.5)"
    fi
fi

# ---------------------------------------------------------------- report
[ -s "$W/runs.stderr" ] && note "stderr of the timed runs (first lines): $(sort "$W/runs.stderr" | uniq -c | sort -rn | head -3 | tr '\n' ' ' | head -c 400)"

DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //')
FS=$(df -T "$W" 2>/dev/null | awk 'NR==2 {print $2}')
VER=$($BIN --version 2>/dev/null | head -1)
MSMTP_VER=$(msmtp --version 2>/dev/null | head -1)
HEAD="date: $DATE; nproc: $(nproc); cpu: ${CPU:-?}; kernel: $(uname -r); spool fs: ${FS:-?}; load average at start: $LOAD0, at end: $LOAD1 (other work on the machine makes the figures noisy)"
SETUP="1 KB message ($(stat_size "$MSG") bytes), 2 recipients, source bound to $SRC, receiver bench/sink.rs on 127.0.0.1 (counts connections). $RUNS rounds (round robin, medians); ${PAR_N} sends with 8 processes; ${QUEUE_N} queued for -q. vsendmail: ${VER:-?}; ${MSMTP_VER:-msmtp absent}."

{
    echo
    echo "vsendmail benchmark — $HEAD"
    echo "$SETUP"
    echo
    printf '%-36s %-44s %14s  %-16s %s\n' "section" "measure" "value" "target" "verdict"
    printf '%s\n' "$(printf '%.0s-' $(seq 1 122))"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r s w v t m <<<"$r"
        printf '%-36s %-44s %14s  %-16s %s\n' "$s" "$w" "$v" "$t" "$m"
    done
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        echo "notes:"
        printf '  - %s\n' "${NOTES[@]}"
    fi
    echo
    echo "(targets are information; this script never fails on them)"
}

{
    echo "# vsendmail benchmark results"
    echo
    echo "$HEAD"
    echo
    echo "$SETUP"
    echo
    echo "Produced by \`make bench\` (bench/run.sh). Targets come from the issues; they are"
    echo "reported, not enforced."
    echo
    echo "| section | measure | value | target | verdict |"
    echo "|---|---|---:|---|---|"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r s w v t m <<<"$r"
        echo "| $s | $w | $v | $t | $m |"
    done
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        echo "Notes:"
        echo
        for n in "${NOTES[@]}"; do echo "- ${n//|/\\|}"; done
    fi
} >"$RESULTS"
say "written: $RESULTS"
exit 0
