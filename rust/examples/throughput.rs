//! Rust-only throughput of the parser and the event engine on a long message,
//! for profiling (`cargo run --release --example throughput`). Needs the vocab
//! (TIKTOKEN_ENCODINGS_BASE). Benches with baselines live in `benches/`.

use std::sync::Arc;
use std::time::Instant;

use harmony_stream_core::{FinishReason, Parser, ResponseConfig, ResponseStream, Role, Vocab};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vocab = Arc::new(Vocab::load_default()?);
    // `<|channel|>analysis<|message|>` + ~n ordinary tokens + `<|end|>`, then a final answer.
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let mut toks = vec![200_005, 35_644, 200_008];
    toks.extend((0..n).map(|i| [976u32, 8065, 19_361, 68_347, 65_613, 1072, 290, 29_082][i % 8]));
    toks.push(200_007);
    let rounds = 5;
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let mut p = Parser::new(Arc::clone(&vocab), Some(Role::Assistant), false);
        let t = Instant::now();
        for &tok in &toks {
            p.process(tok)?;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("parser: {:.1} ns/token", best / toks.len() as f64 * 1e9);
    let mut best = f64::MAX;
    let mut bytes = 0;
    for _ in 0..rounds {
        let mut s = ResponseStream::new(
            Arc::clone(&vocab),
            ResponseConfig {
                id_seed: Some(1),
                ..Default::default()
            },
        );
        let mut sse = String::new();
        let t = Instant::now();
        for &tok in &toks {
            sse.clear();
            s.feed(&[tok], None, &mut sse)?;
            bytes += sse.len();
        }
        s.finish(FinishReason::Stop, &mut sse)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "engine + SSE, one feed per token: {:.1} ns/token ({} bytes)",
        best / toks.len() as f64 * 1e9,
        bytes / rounds
    );
    Ok(())
}
