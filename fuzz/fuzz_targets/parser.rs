//! Fuzz target: the Harmony parser (strict and lenient, token by token and in chunks).
//! The input format and the invariants are in `src/parser.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (input_tokens, parsed) = harmony_stream_fuzz::parser::run(data);
    harmony_stream_fuzz::stats::record("parser", input_tokens, parsed);
});
