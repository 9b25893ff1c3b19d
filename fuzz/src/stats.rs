//! Execution and token counters, printed once when the fuzzing process exits.
//!
//! libFuzzer reports executions itself; the token counts are ours. The line
//! `hs-fuzz: target=T execs=N input_tokens=N parsed_tokens=N` goes to stderr
//! at exit (libFuzzer exits through `exit()` at `-max_total_time` and `-runs`),
//! and `scripts/fuzz.sh` reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static EXECS: AtomicU64 = AtomicU64::new(0);
static INPUT_TOKENS: AtomicU64 = AtomicU64::new(0);
static PARSED_TOKENS: AtomicU64 = AtomicU64::new(0);
static TARGET: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
static REGISTER: Once = Once::new();

extern "C" {
    fn atexit(cb: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn report() {
    eprintln!(
        "hs-fuzz: target={} execs={} input_tokens={} parsed_tokens={}",
        TARGET.get().copied().unwrap_or("?"),
        EXECS.load(Ordering::Relaxed),
        INPUT_TOKENS.load(Ordering::Relaxed),
        PARSED_TOKENS.load(Ordering::Relaxed),
    );
}

/// Counts one execution: `input_tokens` decoded from the input, `parsed_tokens`
/// consumed by parsers or streams in all the runs made of it.
pub fn record(target: &'static str, input_tokens: u64, parsed_tokens: u64) {
    REGISTER.call_once(|| {
        let _ = TARGET.set(target);
        // SAFETY: `report` is a plain `extern "C" fn()` that only reads atomics
        // and writes to stderr, which is valid at process exit.
        unsafe {
            atexit(report);
        }
    });
    EXECS.fetch_add(1, Ordering::Relaxed);
    INPUT_TOKENS.fetch_add(input_tokens, Ordering::Relaxed);
    PARSED_TOKENS.fetch_add(parsed_tokens, Ordering::Relaxed);
}
