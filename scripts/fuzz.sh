#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ (parser, engine) for SECONDS each and
# prints, per target: executions, tokens, wall time and whether it crashed.
#
#   scripts/fuzz.sh 30                # CI: 30 s per target, one after the other
#   scripts/fuzz.sh 3600 engine       # a long local run of one target
#   HS_FUZZ_PARALLEL=1 scripts/fuzz.sh 3600   # all targets at once (one core each)
#
# Exits non-zero if a target crashed (a panic: broken invariant, or a sanitizer
# report), timed out on one input or ran out of memory; the input that did it
# is in fuzz/artifacts/<target>/ (replay it with `cargo fuzz run -O TARGET FILE`
# or, without libFuzzer, `cargo run --manifest-path fuzz/Cargo.toml --example show
# -- TARGET FILE`). The committed seeds are fuzz/corpus/<target>/ (read only here);
# what a run discovers goes to fuzz/.work/corpus/<target>/ (not committed).
#
# Installs cargo-fuzz (crates.io) if missing. The toolchain is stable; cargo-fuzz
# needs nightly flags, enabled with RUSTC_BOOTSTRAP=1.
#
# Settings (environment): HS_FUZZ_SANITIZER (address | none | leak; default
# address), HS_FUZZ_TIMEOUT (seconds per input, default 10), HS_FUZZ_MAX_LEN
# (bytes per input, default 8192), HS_FUZZ_PARALLEL (1: run targets at once).
set -euo pipefail

cd "$(dirname "$0")/.."
SECS="${1:-30}"
shift || true
if [[ $# -gt 0 ]]; then TARGETS=("$@"); else TARGETS=(parser engine); fi
SANITIZER="${HS_FUZZ_SANITIZER:-address}"
TIMEOUT="${HS_FUZZ_TIMEOUT:-10}"
MAX_LEN="${HS_FUZZ_MAX_LEN:-8192}"
WORK=fuzz/.work
export RUSTC_BOOTSTRAP=1

if ! [[ "$SECS" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

echo "== $(cargo fuzz --version), $(rustc --version), sanitizer=$SANITIZER"
# The seeds must pass the checks before fuzzing starts from them (stable, no libFuzzer).
cargo test --quiet --release --manifest-path fuzz/Cargo.toml
cargo fuzz build -O -s "$SANITIZER" >/dev/null

run_target() {
    local t="$1" log="$WORK/$1.log"
    mkdir -p "$WORK/corpus/$t"
    local start end rc=0
    start=$(date +%s)
    cargo fuzz run -O -s "$SANITIZER" "$t" "$WORK/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECS" -timeout="$TIMEOUT" -max_len="$MAX_LEN" \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    echo "$rc $((end - start))" >"$WORK/$t.result"
}

mkdir -p "$WORK"
pids=()
for t in "${TARGETS[@]}"; do
    echo "== fuzzing $t for ${SECS}s (log: $WORK/$t.log)"
    if [[ "${HS_FUZZ_PARALLEL:-0}" == 1 ]]; then
        run_target "$t" &
        pids+=($!)
    else
        run_target "$t"
    fi
done
for p in "${pids[@]}"; do wait "$p"; done

failed=0
printf '\n%-8s %12s %10s %14s %14s %8s  %s\n' target executions exec/s input_tokens parsed_tokens seconds result
for t in "${TARGETS[@]}"; do
    log="$WORK/$t.log"
    read -r rc secs <"$WORK/$t.result"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    line=$(grep -o 'hs-fuzz: .*' "$log" | tail -n 1 || true)
    itok=$(sed -n 's/.*input_tokens=\([0-9]*\).*/\1/p' <<<"$line")
    ptok=$(sed -n 's/.*parsed_tokens=\([0-9]*\).*/\1/p' <<<"$line")
    if [[ "$rc" == 0 ]]; then result=ok; else result="FAILED (exit $rc)"; failed=1; fi
    printf '%-8s %12s %10s %14s %14s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" \
        "${itok:-?}" "${ptok:-?}" "$secs" "$result"
done
if [[ "$failed" != 0 ]]; then
    for t in "${TARGETS[@]}"; do
        read -r rc _ <"$WORK/$t.result"
        [[ "$rc" == 0 ]] && continue
        echo
        echo "== $t failed; the end of $WORK/$t.log:"
        grep -v '^#[0-9]' "$WORK/$t.log" | tail -n 60
        ls -1 "fuzz/artifacts/$t/" 2>/dev/null | sed "s|^|   fuzz/artifacts/$t/|"
    done
    exit 1
fi
