//! Runs one input file through a target's checks and prints the engine's events:
//! `HS_FUZZ_DEBUG=1 cargo run --example show -- engine fuzz/artifacts/engine/crash-…`.

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let path = args.next().expect("usage: show parser|engine FILE");
    let data = std::fs::read(&path).expect("read input");
    let (tokens, parsed) = match target.as_str() {
        "parser" => harmony_stream_fuzz::parser::run(&data),
        "engine" => harmony_stream_fuzz::engine::run(&data),
        other => panic!("unknown target {other:?}"),
    };
    println!("{target}: {tokens} input tokens, {parsed} parsed/accepted; invariants hold");
}
