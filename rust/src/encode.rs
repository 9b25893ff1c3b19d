//! Text → `o200k_base` tokens (ordinary text only: no special token is
//! recognised in it), with the `tiktoken-rs` crate's `CoreBPE`.
//!
//! The encoder is built from the ranks of the [`Vocab`] already loaded (and
//! hash-checked), never from a vocabulary bundled with the crate, and with the
//! `o200k_base` split pattern. [`Vocab::encode`] builds it on its first call.

use std::fmt;

use tiktoken_rs::CoreBPE;

use crate::error::{Error, Result};
use crate::vocab::Vocab;

/// The regex that splits text into pieces before byte-pair merging (`o200k_base`).
pub use tiktoken_rs::O200K_BASE_PAT_STR as O200K_PATTERN;

/// A byte-pair encoder over a vocabulary's ordinary tokens.
pub struct Encoder {
    bpe: CoreBPE,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Encoder(o200k_base pattern)")
    }
}

impl Encoder {
    /// Builds the encoder from the vocabulary's ordinary tokens (id = rank).
    ///
    /// Byte-pair encoding needs every single byte as a token and every token
    /// once; a vocabulary without them (a reduced test vocabulary, a file read
    /// without its hash check) cannot encode and is refused here.
    pub fn new(vocab: &Vocab) -> Result<Self> {
        let n = vocab.n_regular();
        let mut ranks = Vec::with_capacity(n as usize);
        for id in 0..n {
            if let Some(bytes) = vocab.token_bytes(id) {
                ranks.push((bytes.to_vec(), id));
            }
        }
        let count = ranks.len();
        let encoder: std::collections::HashMap<Vec<u8>, u32, _> = ranks.into_iter().collect();
        if encoder.len() != count {
            return Err(Error::VocabCannotEncode(
                "some token's bytes occur under two ids".into(),
            ));
        }
        if let Some(b) = (0u8..=255).find(|b| !encoder.contains_key([*b].as_slice())) {
            return Err(Error::VocabCannotEncode(format!(
                "it has no token for the single byte 0x{b:02x}"
            )));
        }
        let bpe = CoreBPE::new(encoder, Default::default(), O200K_PATTERN)
            .map_err(|e| Error::VocabCannotEncode(format!("the split pattern: {e}")))?;
        Ok(Self { bpe })
    }

    /// The tokens of `text`, read as ordinary text (`<|start|>` is five tokens, not one).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_vocab_encodes_each_byte() {
        let v = crate::test_util::vocab();
        let ids = v.encode("a<|start|>é").unwrap();
        assert_eq!(v.decode_bytes(&ids).unwrap(), "a<|start|>é".as_bytes());
        assert_eq!(ids, crate::test_util::text("a<|start|>é"));
    }

    #[test]
    fn vocab_without_every_byte_cannot_encode() {
        let v = Vocab::from_regular_tokens([b"a".as_slice(), b"b"]).unwrap();
        let err = v.encode("ab").unwrap_err();
        assert!(matches!(err, Error::VocabCannotEncode(_)), "{err}");
        assert!(err.to_string().contains("0x00"), "{err}");
    }
}
