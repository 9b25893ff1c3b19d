//! harmony-stream core: the gpt-oss Harmony format, parsed as it streams.
//!
//! * [`vocab`]: token id → bytes for `o200k_harmony`, loaded and hash-checked.
//! * [`encode`]: text → tokens (byte-pair encoding with `tiktoken-rs`).
//! * [`header`]: the header grammar (role, channel, recipient, content type).
//! * [`parser`]: the streaming state machine, UTF-8 safe, strict or lenient.
//! * [`message`]: what the parser produces.
//! * [`router`]: which Responses item a message becomes.
//! * [`events`]: the Responses event engine (the state machine: item lifecycles,
//!   the call waiting for its output, the final response).
//! * `item`: an output item, its kind with the kind's data, its status.
//! * `wire`: the JSON of events, items and parts (pure writers over an item).
//! * [`json`]: the JSON primitives those writers use.
//! * [`error`]: the crate's one error type.
//!
//! No Python here: the PyO3 binding lives in `binding/`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod encode;
pub mod error;
pub mod events;
mod header;
mod item;
pub mod json;
pub mod message;
pub mod parser;
pub mod router;
pub mod vocab;
mod wire;

pub use error::{Error, ParseErrorKind, Result};
pub use events::{
    CallKind, Event, FinishReason, PendingCall, ResponseConfig, ResponseStream, TokenLogprob,
    ENGINE_KEYS, SETTING_DEFAULTS,
};
pub use header::KNOWN_CHANNELS;
pub use message::{EndToken, Header, Message, Recovery, RecoveryKind, Role};
pub use parser::{Parser, Step, StreamState};
pub use router::{route, route_with_tools, BrowserAction, Route, Tool, ToolType, TOOL_TYPES};
pub use vocab::Vocab;

/// Helpers for the unit tests: a byte vocabulary and text as byte tokens.
#[cfg(test)]
pub(crate) mod test_util {
    use std::sync::Arc;

    use crate::vocab::Vocab;

    /// A vocabulary of the 256 single bytes (id = byte value) plus the specials.
    pub(crate) fn vocab() -> Arc<Vocab> {
        Arc::new(Vocab::from_regular_tokens((0u8..=255).map(|b| [b])).unwrap())
    }

    /// `s` as one token per byte (with [`vocab`]).
    pub(crate) fn text(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    /// One message after its `<|start|>` and role: `<|channel|>header<|message|>body`
    /// and the stop token `stop` (with [`vocab`]).
    pub(crate) fn msg(header: &str, body: &str, stop: u32) -> Vec<u32> {
        let mut v = vec![crate::vocab::special::CHANNEL];
        v.extend(text(header));
        v.push(crate::vocab::special::MESSAGE);
        v.extend(text(body));
        v.push(stop);
        v
    }
}
