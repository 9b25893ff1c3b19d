//! The one error type of the core crate.
//!
//! Every fallible operation returns [`Error`]; the Python binding converts it
//! to Python exceptions in one place (`binding/src/errors.rs`).

use std::fmt;

/// What went wrong while parsing a Harmony token stream.
///
/// The kinds mirror the places where `openai-harmony`'s `StreamableParser`
/// raises, so strict mode fails exactly where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A token other than `<|start|>` arrived while a message start was expected.
    UnexpectedToken,
    /// End of stream while a message header was still open.
    UnexpectedEos,
    /// The header bytes are not valid UTF-8.
    HeaderNotUtf8,
    /// `<|channel|>` followed by no channel name.
    EmptyChannel,
    /// The header has no role and the parser was given none.
    MissingRole,
    /// The header names a role that does not exist and carries no recipient.
    UnknownRole,
    /// Words left over in the header after role, channel, recipient and content type.
    TrailingHeaderText,
}

impl ParseErrorKind {
    /// A stable snake_case name, used by the Python exception's `kind` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnexpectedToken => "unexpected_token",
            Self::UnexpectedEos => "unexpected_eos",
            Self::HeaderNotUtf8 => "header_not_utf8",
            Self::EmptyChannel => "empty_channel",
            Self::MissingRole => "missing_role",
            Self::UnknownRole => "unknown_role",
            Self::TrailingHeaderText => "trailing_header_text",
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error of the core crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A token id that the vocabulary does not define. The message is the one
    /// every layer shows (the CLI and the server prefix where it was); the
    /// position is in `index`.
    #[error(
        "token id {token} is not in the o200k_harmony vocabulary ({})",
        valid_ids(*.n_regular)
    )]
    InvalidToken {
        /// Position of the token in the stream (0-based, counting accepted tokens).
        index: usize,
        /// The offending id.
        token: i64,
        /// Number of ordinary (non-special) tokens in the loaded vocabulary.
        n_regular: u32,
    },

    /// Malformed Harmony where the parser cannot (strict mode) recover.
    #[error("{message} (token index {index})")]
    Parse {
        /// Position of the token that triggered the error; for end of stream,
        /// the number of tokens seen.
        index: usize,
        /// Which rule was broken.
        kind: ParseErrorKind,
        /// Human-readable explanation.
        message: String,
    },

    /// No vocabulary file could be found.
    #[error(
        "the o200k_base.tiktoken vocabulary was not found (looked in: {tried}).{note} \
         Set TIKTOKEN_ENCODINGS_BASE to a directory holding o200k_base.tiktoken, or put the \
         file in $TIKTOKEN_RS_CACHE_DIR as fb374d419588a4632f3f557e76b4b70aebbca790, or pass \
         an explicit path. Expected SHA-256: {expected_sha256}"
    )]
    VocabNotFound {
        /// Every place looked at, in order.
        tried: String,
        /// Empty, or a sentence (with a leading space) on why the search stopped there.
        note: String,
        /// The hash the file must have.
        expected_sha256: &'static str,
    },

    /// A vocabulary file whose SHA-256 is not the expected one.
    #[error("vocabulary {source_name} has SHA-256 {actual}, expected {expected}")]
    VocabHashMismatch {
        /// File path or description of where the bytes came from.
        source_name: String,
        /// The hash required.
        expected: String,
        /// The hash found.
        actual: String,
    },

    /// The vocabulary bytes are not a tiktoken BPE file.
    #[error("vocabulary {source_name} is malformed at line {line}: {reason}")]
    VocabFormat {
        /// File path or description.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A call the response stream's state does not allow (e.g. `feed` after `finish`).
    #[error("{0}")]
    StreamState(String),

    /// A request setting the engine cannot use (unknown tool type, missing field...).
    #[error("{0}")]
    InvalidRequest(String),

    /// The vocabulary cannot encode text (it lacks a single byte, or repeats a token).
    #[error("this vocabulary cannot encode text: {0}")]
    VocabCannotEncode(String),

    /// The vocabulary file could not be read.
    #[error("could not read vocabulary {path}: {reason}")]
    VocabIo {
        /// The path tried.
        path: String,
        /// The operating system's message.
        reason: String,
    },
}

/// The ids a vocabulary with `n_regular` ordinary tokens defines, in words (for
/// error messages): `valid ids are 0 to 199997 and 199998 to 201088`.
pub fn valid_ids(n_regular: u32) -> String {
    let special = format!(
        "{} to {}",
        crate::vocab::FIRST_SPECIAL,
        crate::vocab::LAST_SPECIAL
    );
    match n_regular.checked_sub(1) {
        Some(last) => format!("valid ids are 0 to {last} and {special}"),
        None => format!("valid ids are {special}"),
    }
}

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
