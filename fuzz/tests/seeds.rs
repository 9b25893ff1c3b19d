//! Replays the seed corpus through the fuzz targets' checks, without libFuzzer
//! (stable toolchain, and what `scripts/leak_check.sh` runs under valgrind).
//! `HS_FUZZ_REPLAY=DIR` replays the `parser/` and `engine/` folders of DIR too
//! (e.g. a corpus grown by a long run: `fuzz/.work/corpus`).

use std::fs;
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

fn dirs(target: &str) -> Vec<PathBuf> {
    let mut out = vec![Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)];
    if let Some(extra) = std::env::var_os("HS_FUZZ_REPLAY") {
        out.push(PathBuf::from(extra).join(target));
    }
    out
}

fn replay(target: &str, run: fn(&[u8]) -> (u64, u64)) -> (usize, u64) {
    let (mut n, mut tokens) = (0, 0);
    for dir in dirs(target) {
        for path in inputs(&dir) {
            let data = fs::read(&path).expect("read input");
            let (t, _) = run(&data);
            n += 1;
            tokens += t;
        }
    }
    eprintln!("{target}: {n} inputs, {tokens} tokens replayed");
    (n, tokens)
}

#[test]
fn parser_seeds_keep_the_invariants() {
    let (n, tokens) = replay("parser", harmony_stream_fuzz::parser::run);
    assert!(n >= 5 && tokens > 50, "the parser seed corpus is missing");
}

#[test]
fn engine_seeds_keep_the_invariants() {
    let (n, tokens) = replay("engine", harmony_stream_fuzz::engine::run);
    assert!(n >= 5 && tokens > 50, "the engine seed corpus is missing");
}

#[test]
fn edge_inputs_keep_the_invariants() {
    // Empty, one byte of each opcode class, and every control opcode alone.
    let mut cases: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0, 0]];
    for b in 0..=255u8 {
        cases.push(vec![0, 0, b]);
        cases.push(vec![0xff, 0xff, b, 0xff, 0xff]);
    }
    for c in &cases {
        harmony_stream_fuzz::parser::run(c);
        harmony_stream_fuzz::engine::run(c);
    }
}
