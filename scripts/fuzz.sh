#!/usr/bin/env bash
# scripts/fuzz.sh — `make fuzz`: run every cargo-fuzz target in fuzz/ for a
# bounded time and fail if any of them finds a crash (a panic is a crash).
#
#   FUZZ_TIME=60 bash scripts/fuzz.sh           each target 60 s (CI uses 60)
#   FUZZ_TIME=10 bash scripts/fuzz.sh intake    one target, 10 s
#
# Environment:
#   FUZZ_TIME       seconds per target (default 30)
#   FUZZ_SANITIZER  none (default) or address (needs a nightly toolchain's
#                   sanitizer runtime); the product is safe Rust almost
#                   everywhere, and what we hunt for is panics
#   FUZZ_JOBS       cargo build jobs (default: cargo's)
#
# Toolchain: cargo-fuzz passes -Z flags to rustc. On a nightly toolchain they
# just work; on stable (the machine's only toolchain) this script sets
# RUSTC_BOOTSTRAP=1, which lets the stable compiler accept them. cargo-fuzz
# itself is installed from crates.io when missing.
#
# Corpora: fuzz/corpus/TARGET holds the small committed seeds (read only
# here); what a run discovers goes to target/fuzz/corpus/TARGET (kept
# between runs, never committed). Crashes go to target/fuzz/artifacts/TARGET/
# and are printed with the command that reproduces them.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
FUZZ_TIME=${FUZZ_TIME:-30}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
tdir="$root/target/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    cargo install --locked cargo-fuzz
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

build=(cargo fuzz build --sanitizer "$FUZZ_SANITIZER" --target-dir "$tdir")
[ -n "${FUZZ_JOBS:-}" ] && build+=(--jobs "$FUZZ_JOBS")
echo "fuzz: building ${targets[*]} ($(rustc --version); sanitizer $FUZZ_SANITIZER)"
(cd fuzz && "${build[@]}")

# The intake target writes spool drafts under $TMPDIR: keep them in a
# directory of our own and remove it at the end.
scratch=$(mktemp -d /tmp/vsendmail-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$tdir/corpus/$t" "$tdir/artifacts/$t"
    echo "fuzz: $t for ${FUZZ_TIME}s"
    if (cd fuzz && TMPDIR="$scratch" cargo fuzz run --sanitizer "$FUZZ_SANITIZER" --target-dir "$tdir" \
        "$t" "$tdir/corpus/$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_TIME" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$tdir/artifacts/$t/") >"$tdir/$t.log" 2>&1; then
        grep -E '^Done [0-9]+ runs' "$tdir/$t.log" | sed "s/^/fuzz: $t: /" || true
    else
        failed+=("$t")
        echo "fuzz: $t FAILED; the end of its log ($tdir/$t.log):"
        tail -40 "$tdir/$t.log" | sed 's/^/    /'
        for a in "$tdir/artifacts/$t"/*; do
            [ -e "$a" ] || continue
            echo "    reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $FUZZ_SANITIZER --target-dir $tdir $t $a)"
        done
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets found a crash: ${failed[*]}"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${FUZZ_TIME}s each without a crash"
