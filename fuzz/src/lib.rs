//! Fuzz harness for harmony-stream-core: how fuzz input bytes become token
//! streams and calls, and the invariants every run must keep.
//!
//! * [`input`]: the toy vocabulary and the byte → token / call decoder.
//! * [`parser`]: the parser target's checks ([`parser::run`]).
//! * [`engine`]: the event engine target's checks ([`engine::run`]).
//! * [`stats`]: execution and token counters, printed when the fuzzer exits.
//!
//! A broken invariant panics (libFuzzer records the input as a crash). The
//! same functions replay the committed seed corpus in `cargo test`.

pub mod engine;
pub mod input;
pub mod parser;
pub mod stats;
