#!/usr/bin/env bash
# Leak check of the Rust code: the core crate's tests (unit and golden) and the
# fuzz targets' seed-corpus replay, under valgrind memcheck (default) or
# LeakSanitizer. Exits non-zero on a leak (or a memcheck error).
#
#   scripts/leak_check.sh              # valgrind --leak-check=full
#   scripts/leak_check.sh lsan         # -Zsanitizer=leak (RUSTC_BOOTSTRAP=1)
#   scripts/leak_check.sh self-test    # a program that leaks must fail the check
#
# Definitely and indirectly lost blocks count as leaks; "possibly lost" and
# "still reachable" do not (process-lifetime statics such as the test harness's
# thread pool). HS_LEAK_REPLAY=DIR also replays DIR/{parser,engine}/ (e.g. the
# corpus a long fuzz run grew: fuzz/.work/corpus). Builds go to target/leak-check.
set -euo pipefail

cd "$(dirname "$0")/.."
MODE="${1:-valgrind}"
export CARGO_TARGET_DIR="$PWD/target/leak-check"
HOST="$(rustc -vV | sed -n 's/^host: //p')"
LOGS="$CARGO_TARGET_DIR/logs"
mkdir -p "$LOGS"

# The golden tests need the real vocabulary (as `make vocab` provides it).
if [[ -z "${TIKTOKEN_ENCODINGS_BASE:-}" ]]; then
    if [[ ! -f .cache/tiktoken/o200k_base.tiktoken ]]; then
        make vocab >/dev/null
    fi
    export TIKTOKEN_ENCODINGS_BASE="$PWD/.cache/tiktoken"
fi
if [[ -n "${HS_LEAK_REPLAY:-}" ]]; then
    export HS_FUZZ_REPLAY="$(cd "$HS_LEAK_REPLAY" && pwd)"
fi

VALGRIND=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=97 --num-callers=30)

# Test executables of `cargo test --no-run` for one manifest (extra cargo args after it).
test_binaries() {
    local manifest="$1"
    shift
    cargo test --manifest-path "$manifest" --no-run --message-format=json "$@" 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])'
}

status=0
summary=()

run_one() { # name, command...
    local name="$1" log="$LOGS/$1.log"
    shift
    local start rc=0
    start=$(date +%s)
    "$@" >"$log" 2>&1 || rc=$?
    local secs=$(($(date +%s) - start))
    local leaks
    leaks=$(grep -E "definitely lost:|indirectly lost:|SUMMARY: LeakSanitizer|ERROR SUMMARY:" "$log" |
        sed 's/^==[0-9]*== *//' | tr '\n' ';' || true)
    if [[ "$rc" == 0 ]]; then
        summary+=("ok     ${secs}s  $name  ${leaks:-no leak report (clean)}")
    else
        summary+=("FAILED ${secs}s  $name (exit $rc)  $leaks  -> $log")
        status=1
    fi
}

case "$MODE" in
valgrind)
    VALGRIND_NOTE=", no memcheck error"
    command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
    echo "== building the tests (debug, $CARGO_TARGET_DIR)"
    cargo test -p harmony-stream-core --no-run --quiet
    cargo test --manifest-path fuzz/Cargo.toml --test seeds --no-run --quiet
    mapfile -t core_bins < <(test_binaries Cargo.toml -p harmony-stream-core)
    mapfile -t fuzz_bins < <(test_binaries fuzz/Cargo.toml --test seeds)
    for bin in "${core_bins[@]}" "${fuzz_bins[@]}"; do
        name="$(basename "$bin" | sed 's/-[0-9a-f]*$//')"
        echo "== valgrind: $name"
        run_one "$name" "${VALGRIND[@]}" "$bin" --test-threads=2
    done
    ;;
lsan)
    echo "== building the tests with -Zsanitizer=leak ($HOST)"
    export RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=leak ${RUSTFLAGS:-}"
    export LSAN_OPTIONS="exitcode=23:${LSAN_OPTIONS:-}"
    # --target keeps build scripts and proc macros out of the sanitizer.
    cargo test -p harmony-stream-core --target "$HOST" --no-run --quiet
    cargo test --manifest-path fuzz/Cargo.toml --test seeds --target "$HOST" --no-run --quiet
    mapfile -t core_bins < <(test_binaries Cargo.toml -p harmony-stream-core --target "$HOST")
    mapfile -t fuzz_bins < <(test_binaries fuzz/Cargo.toml --test seeds --target "$HOST")
    for bin in "${core_bins[@]}" "${fuzz_bins[@]}"; do
        name="$(basename "$bin" | sed 's/-[0-9a-f]*$//')"
        echo "== lsan: $name"
        run_one "$name" "$bin"
    done
    ;;
self-test)
    # The check must fail on a real leak, with either tool.
    dir="$CARGO_TARGET_DIR/self-test"
    mkdir -p "$dir"
    printf '%s\n' 'fn main() { let v = vec![7u8; 4096]; std::mem::forget(v); println!("leaked"); }' >"$dir/leak.rs"
    rustc -g -o "$dir/leak" "$dir/leak.rs"
    RUSTC_BOOTSTRAP=1 rustc -g -Zsanitizer=leak --target "$HOST" -o "$dir/leak-lsan" "$dir/leak.rs"
    failed_as_expected=1
    if "${VALGRIND[@]}" "$dir/leak" >"$LOGS/self-test-valgrind.log" 2>&1; then
        echo "valgrind did NOT report the planted leak"; failed_as_expected=0
    else
        echo "valgrind reports the planted leak: $(grep -o 'definitely lost: .*' "$LOGS/self-test-valgrind.log")"
    fi
    if LSAN_OPTIONS=exitcode=23 "$dir/leak-lsan" >"$LOGS/self-test-lsan.log" 2>&1; then
        echo "LeakSanitizer did NOT report the planted leak"; failed_as_expected=0
    else
        echo "LeakSanitizer reports the planted leak: $(grep -o 'SUMMARY: .*' "$LOGS/self-test-lsan.log")"
    fi
    [[ "$failed_as_expected" == 1 ]] || exit 1
    exit 0
    ;;
*)
    echo "usage: $0 [valgrind|lsan|self-test]" >&2
    exit 2
    ;;
esac

echo
printf '%s\n' "${summary[@]}"
if [[ "$status" != 0 ]]; then
    echo "leak check FAILED (logs in $LOGS)"
else
    echo "leak check passed ($MODE): no definite or indirect leak${VALGRIND_NOTE:-}"
fi
exit "$status"
