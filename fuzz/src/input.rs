//! The fuzz vocabulary and the decoder from input bytes to tokens and calls.
//!
//! Token ids in the toy vocabulary:
//!
//! | ids | bytes |
//! |---|---|
//! | `0..=255` | the single byte of that value |
//! | `256..256 + WORDS.len()` | [`WORDS`]: header words, recipients, JSON, split UTF-8 |
//! | up to `199_997` | undefined (a gap: invalid ids) |
//! | `199_998..=201_088` | the Harmony special tokens (always in a vocabulary) |
//! | `201_089..` | undefined |
//!
//! Input bytes are read as opcodes; see [`Decoder::token`] for the token ops.

use std::sync::{Arc, OnceLock};

use harmony_stream_core::vocab::special;
use harmony_stream_core::Vocab;

/// Multi-byte tokens: what makes Harmony headers reachable in a few input bytes.
pub const WORDS: &[&[u8]] = &[
    b"assistant",
    b"analysis",
    b"commentary",
    b"final",
    b" to=",
    b"to=",
    b"functions.get_weather",
    b"functions.",
    b"github.search_issues",
    b"github",
    b"mcp.fetch",
    b"python",
    b"browser.search",
    b"browser.open",
    b"browser.find",
    b"container.exec",
    b"json",
    b" json",
    b" ",
    b"commentary?",
    b"final.",
    b"analysis:",
    b"user",
    b"system",
    b"developer",
    b"tool",
    b"{\"query\":\"rust fuzz\"}",
    b"{\"url\":\"https://example.com\"}",
    b"{\"pattern\":\"x\",\"url\":\"https://e.org\"}",
    b"{\"id\":3}",
    b"{\"location\":\"Paris\"}",
    b"print(1)\n",
    "é".as_bytes(),
    "🌸".as_bytes(),
    b"\xf0\x9f",
    b"\x8c\xb8",
    b"\xe2\x82",
    b"\xac",
    b"\xff",
    b"\xc3",
    b"\"",
    b"\\",
    b"\n",
    "\u{2028}".as_bytes(),
    b"\0",
    b"\x1b[0m",
    b"Hello, world!",
    b"<|start|>",
    b"<|message|>",
    b"<|channel|>",
    b"<|constrain|>",
    b"\r\n\r\n",
    b"data: x\n\n",
];

/// Id of the first word token.
pub const FIRST_WORD: u32 = 256;

/// Special tokens the decoder picks from; the grammar's seven appear more often.
const SPECIALS: &[u32] = &[
    special::START,
    special::CHANNEL,
    special::MESSAGE,
    special::END,
    special::CALL,
    special::RETURN,
    special::CONSTRAIN,
    special::START,
    special::CHANNEL,
    special::MESSAGE,
    special::END,
    special::CALL,
    special::RETURN,
    special::CONSTRAIN,
    special::START_OF_TEXT,
    special::END_OF_TEXT,
    200_000,
    200_001,
    200_004,
    200_009,
    200_010,
    200_011,
    200_013,
    200_018,
    201_087,
    201_088,
];

/// The toy vocabulary (built once per process).
pub fn vocab() -> Arc<Vocab> {
    static VOCAB: OnceLock<Arc<Vocab>> = OnceLock::new();
    Arc::clone(VOCAB.get_or_init(|| {
        let singles = (0u8..=255).map(|b| vec![b]);
        let words = WORDS.iter().map(|w| w.to_vec());
        Arc::new(Vocab::from_regular_tokens(singles.chain(words)).expect("toy vocabulary"))
    }))
}

/// Whether an id is defined, computed without asking the vocabulary.
pub fn expected_valid(id: u32) -> bool {
    id < FIRST_WORD + WORDS.len() as u32 || (199_998..=201_088).contains(&id)
}

/// What one opcode of the input means.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A token for the current step.
    Token(u32),
    /// An opcode in `0xe0..=0xff`: the targets give these their own meaning
    /// (step boundaries, tool results, finish); `arg` is the opcode's low 5 bits.
    Control(u8),
}

/// Reads input bytes as opcodes and arguments; running out of bytes reads zeros.
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over the fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// Whether all bytes were read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }

    /// A string of up to 255 bytes (length byte, then bytes, lossily decoded),
    /// or with the length byte `0xff`, a long repetitive string (up to 16 KiB).
    pub fn string(&mut self) -> String {
        let len = self.byte();
        if len == 0xff {
            let reps = usize::from(self.byte()) * 256 + 1;
            let unit = String::from_utf8_lossy(self.bytes(4)).into_owned();
            return unit.repeat(reps.min(4_096));
        }
        String::from_utf8_lossy(self.bytes(usize::from(len))).into_owned()
    }

    /// The next opcode, `None` at the end of the input.
    ///
    /// | opcode | meaning |
    /// |---|---|
    /// | `0x00..=0x3f` | a word token ([`WORDS`], index modulo their number) |
    /// | `0x40..=0x7f` | a special or reserved token (grammar tokens most often) |
    /// | `0x80..=0xbf` | a single-byte token: the next byte is its value |
    /// | `0xc0..=0xcf` | any id: the next 4 bytes (little endian); mostly invalid |
    /// | `0xd0..=0xdf` | an id at a vocabulary boundary (valid or just outside) |
    /// | `0xe0..=0xff` | [`Op::Control`] with the low 5 bits |
    pub fn op(&mut self) -> Option<Op> {
        if self.is_empty() {
            return None;
        }
        let b = self.byte();
        let n_words = WORDS.len() as u32;
        Some(match b {
            0x00..=0x3f => Op::Token(FIRST_WORD + u32::from(b) % n_words),
            0x40..=0x7f => Op::Token(SPECIALS[usize::from(b - 0x40) % SPECIALS.len()]),
            0x80..=0xbf => Op::Token(u32::from(self.byte())),
            0xc0..=0xcf => {
                let raw = self.bytes(4);
                let mut le = [0u8; 4];
                le[..raw.len()].copy_from_slice(raw);
                Op::Token(u32::from_le_bytes(le))
            }
            0xd0..=0xdf => {
                let edges = [
                    FIRST_WORD + n_words - 1,
                    FIRST_WORD + n_words,
                    199_997,
                    199_998,
                    201_088,
                    201_089,
                    u32::MAX,
                    i32::MAX as u32,
                    200_000 + u32::from(self.byte()) * 4,
                ];
                Op::Token(edges[usize::from(b - 0xd0) % edges.len()])
            }
            0xe0..=0xff => Op::Control(b - 0xe0),
        })
    }
}
