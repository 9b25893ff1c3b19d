//! Fuzz target: the Responses event engine (feed / tool_output / finish in any order).
//! The input format and the invariants are in `src/engine.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (input_tokens, accepted) = harmony_stream_fuzz::engine::run(data);
    harmony_stream_fuzz::stats::record("engine", input_tokens, accepted);
});
