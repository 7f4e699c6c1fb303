#!/usr/bin/env bash
# scripts/hot-functions.sh — regenerate bench/hot-functions.txt, the order in
# which build.rs asks the linker to place the functions that one plain send
# runs (issue 14 point 15: a send faults in a few contiguous pages of code,
# not most of the binary). Run it after large changes, then rebuild:
#     cargo build --profile dist && bash scripts/hot-functions.sh && cargo build --profile dist
# Needs valgrind (apt-get install valgrind). It runs target/dist/vsendmail
# (built with symbols: the dist profile keeps them) under callgrind for one
# `-odi` send and one `-odq` submission to bench/sink.rs on loopback, and
# writes every function of the binary that ran, in the order callgrind first
# met them. Names are the ELF symbols of this build; entries a later build
# lacks are ignored by the linker, so a stale list only costs pages.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/dist/vsendmail
OUT=$ROOT/bench/hot-functions.txt
command -v valgrind >/dev/null || { echo "hot-functions: needs valgrind" >&2; exit 69; }
[ -x "$BIN" ] || { echo "hot-functions: build first: cargo build --profile dist" >&2; exit 66; }
W=$(mktemp -d)
trap 'kill "${SINK:-}" 2>/dev/null || true; rm -rf "$W"' EXIT
rustc --edition 2024 -C opt-level=2 -o "$W/sink" "$ROOT/bench/sink.rs"
"$W/sink" >"$W/port" 2>/dev/null &
SINK=$!
for _ in $(seq 1 300); do [ -s "$W/port" ] && break; sleep 0.01; done
PORT=$(head -1 "$W/port")
mkdir -p "$W/spool"; : >"$W/aliases"
echo "root hot@bench.example 127.0.0.2 helo=bench.example" >"$W/virtusers"
cat >"$W/c.conf" <<C
hostname  = "bench.example"
virtusers = "$W/virtusers"
aliases   = "$W/aliases"
spool     = "$W/spool"
relay     = "smtp://127.0.0.1:$PORT"
C
printf 'From: <hot@bench.example>\r\nSubject: hot\r\n\r\nbody\r\n' >"$W/msg"
for mode in -odi -odq; do
    valgrind -q --tool=callgrind --demangle=no --dump-instr=no \
        --callgrind-out-file="$W/cg.$mode" \
        "$BIN" -C "$W/c.conf" "$mode" -i r1@dest.example r2@dest.example <"$W/msg" >/dev/null 2>&1 || true
done
# Callgrind compresses names: "ob=(N) path" / "fn=(N) name" the first time
# (also in cob=/cfn= lines), "ob=(N)" / "fn=(N)" after. Keep the functions
# with costs ("fn=") in the binary's own object ("ob=").
awk -v bin="$(readlink -f "$BIN")" '
    function split_id(v) { ID = v; sub(/\).*/, ")", ID); NM = v; sub(/^\([0-9]+\) ?/, "", NM) }
    FNR == 1 { delete obn; delete fnn; cur = "" }
    /^c?ob=/ { v = $0; sub(/^c?ob=/, "", v); split_id(v); if (NM != "") obn[ID] = NM
               if ($0 ~ /^ob=/) cur = obn[ID]; next }
    /^c?fn=/ { v = $0; sub(/^c?fn=/, "", v); split_id(v); if (NM != "") fnn[ID] = NM
               if ($0 ~ /^fn=/ && cur == bin && !(fnn[ID] in seen)) { seen[fnn[ID]] = 1; print fnn[ID] } }
' "$W"/cg.* >"$OUT.new"
[ -s "$OUT.new" ] || { echo "hot-functions: callgrind found nothing" >&2; exit 70; }
mv "$OUT.new" "$OUT"
echo "hot-functions: $(wc -l <"$OUT") functions in $OUT"
