//! harmony-stream core: the gpt-oss Harmony format, parsed as it streams.
//!
//! * [`vocab`]: token id → bytes for `o200k_harmony`, loaded and hash-checked.
//! * [`header`]: the header grammar (role, channel, recipient, content type).
//! * [`parser`]: the streaming state machine, UTF-8 safe, strict or lenient.
//! * [`message`]: what the parser produces.
//! * [`error`]: the crate's one error type.
//!
//! No Python here: the PyO3 binding lives in `binding/`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
mod header;
pub mod message;
pub mod parser;
pub mod vocab;

pub use error::{Error, ParseErrorKind, Result};
pub use message::{EndToken, Header, Message, Recovery, RecoveryKind, Role};
pub use parser::{Parser, Step, StreamState};
pub use vocab::Vocab;
