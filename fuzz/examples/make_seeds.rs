//! Writes the seed corpus (`fuzz/corpus/{parser,engine}/`): small inputs that
//! spell the Harmony shapes and quirks of docs/architecture.md (Lenient
//! parsing) and the call orders of its Event contract, so the fuzzer starts
//! from real structure. Run from `fuzz/`:
//! `cargo run --example make_seeds`.

use std::fs;
use std::path::Path;

use harmony_stream_fuzz::input::WORDS;

/// Builds one input from readable pieces.
#[derive(Default)]
struct Seed(Vec<u8>);

impl Seed {
    fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    /// A word token (must be in `WORDS`).
    fn w(self, word: &str) -> Self {
        self.wb(word.as_bytes())
    }
    /// A word token given by its bytes (for the split UTF-8 words).
    fn wb(mut self, word: &[u8]) -> Self {
        let i = WORDS
            .iter()
            .position(|x| *x == word)
            .unwrap_or_else(|| panic!("{word:?} is not a fuzz word"));
        self.0.push(i as u8);
        self
    }
    /// Single-byte tokens spelling `text`.
    fn t(mut self, text: &str) -> Self {
        for b in text.bytes() {
            self.0.extend_from_slice(&[0x80, b]);
        }
        self
    }
    fn start(self) -> Self {
        self.raw(&[0x40])
    }
    fn channel(self) -> Self {
        self.raw(&[0x41])
    }
    fn message(self) -> Self {
        self.raw(&[0x42])
    }
    fn end(self) -> Self {
        self.raw(&[0x43])
    }
    fn call(self) -> Self {
        self.raw(&[0x44])
    }
    fn ret(self) -> Self {
        self.raw(&[0x45])
    }
    fn constrain(self) -> Self {
        self.raw(&[0x46])
    }
    fn ctl(mut self, c: u8) -> Self {
        self.0.push(0xe0 + c);
        self
    }
    /// `<|channel|>{channel}<|message|>{body}` with the body in single bytes.
    fn msg(self, channel: &str, body: &str) -> Self {
        self.channel().w(channel).message().t(body)
    }
    fn next_turn(self) -> Self {
        self.start().w("assistant")
    }
    /// A length-prefixed string argument (tool output, error message).
    fn s(mut self, text: &str) -> Self {
        self.0.push(text.len() as u8);
        self.0.extend_from_slice(text.as_bytes());
        self
    }
}

fn write(dir: &Path, name: &str, seed: Seed) {
    fs::write(dir.join(name), seed.0).expect("write seed");
}

fn parser_seeds(dir: &Path) {
    let s = Seed::default;
    write(
        dir,
        "reasoning_then_final",
        s().raw(&[0])
            .msg("analysis", "Think.")
            .end()
            .next_turn()
            .msg("final", "Hi!")
            .ret(),
    );
    write(
        dir,
        "function_call_constrain",
        s().raw(&[0])
            .channel()
            .w("commentary")
            .w(" to=")
            .w("functions.get_weather")
            .w(" ")
            .constrain()
            .w("json")
            .message()
            .w("{\"location\":\"Paris\"}")
            .call(),
    );
    write(
        dir,
        "quirks",
        s().raw(&[0])
            .start()
            .start()
            .w("assistant")
            .channel()
            .w("commentary?")
            .message()
            .t("a")
            .end()
            .ret()
            .t("stray")
            .end()
            .channel()
            .w("final")
            .w(" ")
            .constrain()
            .w("json")
            .message()
            .t("{}")
            .end()
            .next_turn()
            .channel()
            .t("fi"),
    );
    write(
        dir,
        "utf8_splits",
        s().raw(&[0])
            .channel()
            .w("final")
            .message()
            .w("é")
            .wb(b"\xf0\x9f")
            .wb(b"\x8c\xb8")
            .wb(b"\xe2\x82")
            .wb(b"\xac")
            .wb(b"\xff")
            .t("ab")
            .wb(b"\xc3")
            .end(),
    );
    write(
        dir,
        "invalid_ids_and_chunks",
        s().raw(&[0])
            .channel()
            .raw(&[0xc0, 0xff, 0xff, 0xff, 0x7f])
            .w("analysis")
            .ctl(0)
            .message()
            .raw(&[0xd1, 0xd5, 0xd6])
            .t("x")
            .ctl(0)
            .end(),
    );
    write(
        dir,
        "no_role_header",
        s().raw(&[1])
            .start()
            .w("user")
            .message()
            .t("hi")
            .end()
            .start()
            .w("assistant")
            .w(" to=")
            .w("python")
            .channel()
            .w("analysis")
            .message()
            .w("print(1)\n")
            .call()
            .ctl(0x10)
            .start()
            .t("robot")
            .message(),
    );
}

fn engine_seeds(dir: &Path) {
    let s = Seed::default;
    // Config byte a: bit 0 logprobs, bits 1-2 tools (1: all four), bit 3 listing,
    // bit 4 response id, bit 5 max_output_tokens, bits 6-7 closing reason.
    write(
        dir,
        "reasoning_final_stop",
        s().raw(&[0x02, 5])
            .msg("analysis", "Let me think.")
            .end()
            .ctl(0)
            .next_turn()
            .msg("final", "Hello")
            .ctl(24)
            .ret()
            .ctl(0)
            .ctl(16),
    );
    write(
        dir,
        "mcp_call_then_answer",
        s().raw(&[0x0a, 1])
            .channel()
            .w("commentary")
            .w(" to=")
            .w("github.search_issues")
            .message()
            .w("{\"query\":\"rust fuzz\"}")
            .call()
            .ctl(0)
            .ctl(9)
            .s("[{\"title\":\"ok\"}]")
            .msg("final", "Found it.")
            .ret()
            .ctl(0)
            .ctl(16),
    );
    write(
        dir,
        "python_browser_function",
        s().raw(&[0x02, 2])
            .channel()
            .w("analysis")
            .w(" to=")
            .w("python")
            .message()
            .w("print(1)\n")
            .call()
            .ctl(0)
            .ctl(10)
            .s("Traceback")
            .channel()
            .w("analysis")
            .w(" to=")
            .w("browser.search")
            .message()
            .w("{\"query\":\"rust fuzz\"}")
            .call()
            .ctl(0)
            .ctl(9)
            .s("results")
            .channel()
            .w("analysis")
            .w(" to=")
            .w("browser.open")
            .message()
            .w("{\"url\":\"https://example.com\"}")
            .call()
            .ctl(0)
            .ctl(9)
            .s("page")
            .channel()
            .w("analysis")
            .w(" to=")
            .w("browser.find")
            .message()
            .w("{\"pattern\":\"x\",\"url\":\"https://e.org\"}")
            .call()
            .ctl(0)
            .ctl(8)
            .channel()
            .w("commentary")
            .w(" to=")
            .w("functions.get_weather")
            .message()
            .w("{\"location\":\"Paris\"}")
            .call()
            .ctl(0)
            .ctl(9)
            .s("{\"temp\":20}")
            .msg("final", "20C")
            .ret()
            .ctl(0)
            .ctl(16),
    );
    write(
        dir,
        "length_cut_with_logprobs",
        s().raw(&[0x83, 3])
            .msg("final", "cut")
            .w("é")
            .ctl(4)
            .raw(&[40, 1, 20, 50, 0, 60, 2, 10, 30, 0, 9, 9, 2, 1, 1, 70, 0])
            .wb(b"\xf0\x9f")
            .ctl(17),
    );
    write(
        dir,
        "hostile_calls",
        // tool_output before anything, start twice, an undefined id, logprobs of
        // the wrong length (4 tokens: lp byte and 0 alternatives each), valid ones,
        // an empty step, then finish(error) and calls after it.
        s().raw(&[0x03, 9])
            .ctl(8)
            .ctl(22)
            .ctl(22)
            .raw(&[0xc0, 0, 0, 0, 0x80])
            .ctl(0)
            .msg("final", "x")
            .ctl(5)
            .raw(&[10, 0, 10, 0, 10, 0, 10, 0])
            .msg("final", "y")
            .ctl(4)
            .raw(&[0, 1, 20, 2, 0, 30, 3, 0])
            .ctl(28)
            .ctl(18)
            .s("boom \"quoted\"\n")
            .ctl(0)
            .ctl(16),
    );
    write(
        dir,
        "skipped_calls_and_stray",
        s().raw(&[0x02, 4])
            .channel()
            .w("commentary")
            .w(" to=")
            .w("mcp.fetch")
            .message()
            .w("{\"id\":3}")
            .call()
            .next_turn()
            .msg("commentary", "preamble")
            .end()
            .t("stray text")
            .end()
            .ret()
            .channel()
            .w("analysis")
            .w(" to=")
            .w("python")
            .message()
            .t("1+1")
            .call()
            .ctl(0)
            .ctl(16),
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, make) in [
        ("parser", parser_seeds as fn(&Path)),
        ("engine", engine_seeds as fn(&Path)),
    ] {
        let dir = root.join(name);
        fs::create_dir_all(&dir).expect("corpus dir");
        make(&dir);
    }
    println!("seeds written to {}", root.display());
}
