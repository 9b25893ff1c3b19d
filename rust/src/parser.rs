//! The streaming Harmony parser: one token in, at most one content delta out.
//!
//! Strict mode behaves like openai-harmony 0.0.8's `StreamableParser` with
//! `strict=True`: same messages, same per-token deltas, an error at the same
//! token. Lenient mode (the default for serving) behaves like its
//! `strict=False` mode wherever that one succeeds, except for three fixes
//! ([`RecoveryKind::ConstrainAsRecipient`], [`RecoveryKind::ChannelNormalized`],
//! [`RecoveryKind::RepeatedStart`]) and one rule that keeps text it would drop
//! ([`RecoveryKind::TextInHeader`]); where openai-harmony raises, lenient mode
//! recovers and records a [`Recovery`].
//!
//! The state carries what it holds (as openai-harmony's `StreamState` does): the
//! header tokens and the role inside a header, the header, text and undecodable
//! bytes inside content; [`Parser::state`] gives the plain [`StreamState`].
//!
//! Cost per token is constant: content is appended to one `String`, header
//! tokens are decoded once at `<|message|>`, nothing is re-encoded.

use std::sync::Arc;

use crate::error::{Error, ParseErrorKind, Result};
use crate::header::{fix_quirks, parse_lenient, parse_strict, split_unterminated, KNOWN_CHANNELS};
use crate::message::{EndToken, Header, Message, Recovery, RecoveryKind, Role};
use crate::vocab::{special, Vocab};

const REPLACEMENT: &str = "\u{FFFD}";

/// How many recoveries a parser keeps with their details; beyond that it only
/// counts them (a stream of quirks must not grow memory without bound).
pub const MAX_RECOVERY_DETAILS: usize = 100;

/// Where the parser is in the message grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Waiting for `<|start|>`.
    ExpectStart,
    /// Inside a header, waiting for `<|message|>`.
    Header,
    /// Inside message content, waiting for a stop token.
    Content,
}

impl StreamState {
    /// `"ExpectStart"`, `"Header"` or `"Content"` (openai-harmony's names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpectStart => "ExpectStart",
            Self::Header => "Header",
            Self::Content => "Content",
        }
    }
}

/// What one token did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// A header was completed: a new message's content starts.
    pub header_done: bool,
    /// Content text was added; read it with [`Parser::last_content_delta`].
    pub delta: bool,
    /// A message was completed and appended to [`Parser::messages`].
    pub message_done: bool,
}

/// Why a header ended without `<|message|>` (lenient mode).
#[derive(Clone, Copy)]
enum HeaderCut {
    Stop(u32),
    Start,
    Eos,
}

/// Whether header text with no special token is the start of a header (a
/// recipient `to=…` or a role word, or nothing but whitespace) rather than text.
fn looks_like_header(text: &str) -> bool {
    let t = text.trim_start();
    let first = t.split_whitespace().next().unwrap_or("");
    t.trim_end().is_empty()
        || t.starts_with("to=")
        || "to=".starts_with(t.trim_end())
        || Role::parse(first).is_some()
}

fn end_token(token: u32) -> Option<EndToken> {
    match token {
        special::END => Some(EndToken::End),
        special::CALL => Some(EndToken::Call),
        special::RETURN => Some(EndToken::Return),
        _ => None,
    }
}

/// Where the parser is, with what it holds there.
#[derive(Debug, Clone)]
enum State {
    /// Waiting for `<|start|>`.
    ExpectStart,
    /// Inside a header, waiting for `<|message|>`.
    Header(HeaderState),
    /// Inside message content, waiting for a stop token.
    Content(ContentState),
}

/// A header being read.
#[derive(Debug, Clone)]
struct HeaderState {
    /// Its tokens, decoded once at `<|message|>` (or when it is cut).
    tokens: Vec<u32>,
    /// Lenient mode assumed the `<|start|>` (a token came where one was expected).
    implicit: bool,
    /// The role already known: from the prompt, or the assumed `<|start|>`.
    role: Option<Role>,
}

impl HeaderState {
    fn new(implicit: bool, role: Option<Role>) -> Self {
        Self {
            tokens: Vec::new(),
            implicit,
            role,
        }
    }
}

/// The content of a message being read.
#[derive(Debug, Clone)]
struct ContentState {
    header: Header,
    text: String,
    /// Bytes not yet decoded: `held[held_start..]` (a consumed prefix is
    /// skipped, not moved, so a long run of undecodable bytes costs the same per
    /// token at any length; the buffer is compacted when half of it is dead).
    held: Vec<u8>,
    held_start: usize,
}

impl ContentState {
    /// Appends a token's bytes: decoded text goes to `text` at once, undecodable
    /// bytes wait in `held`. True when the token was text on its own (the usual
    /// case: then it is a delta even if empty).
    #[inline]
    fn push(&mut self, bytes: &[u8]) -> bool {
        if self.held_start == self.held.len() {
            if let Ok(s) = std::str::from_utf8(bytes) {
                self.text.push_str(s);
                return true;
            }
        }
        self.held.extend_from_slice(bytes);
        // One pass per token over the held bytes, as openai-harmony does: the
        // valid prefix, then at most one U+FFFD for an invalid sequence; bytes
        // after that wait for the next token. `from_utf8` stops at the first
        // error, so a pass reads only what it consumes plus one sequence.
        let held = &self.held[self.held_start..];
        let consumed = match std::str::from_utf8(held) {
            Ok(s) => {
                self.text.push_str(s);
                held.len()
            }
            Err(e) => {
                let valid = e.valid_up_to();
                if let Ok(s) = std::str::from_utf8(&held[..valid]) {
                    self.text.push_str(s);
                }
                match e.error_len() {
                    Some(n) => {
                        self.text.push_str(REPLACEMENT);
                        valid + n
                    }
                    None => valid,
                }
            }
        };
        self.consume_held(consumed);
        false
    }

    /// Marks `n` held bytes as decoded; compacts when the dead prefix is the larger half.
    fn consume_held(&mut self, n: usize) {
        self.held_start += n;
        if self.held_start == self.held.len() {
            self.held.clear();
            self.held_start = 0;
        } else if self.held_start > self.held.len() / 2 {
            self.held.drain(..self.held_start);
            self.held_start = 0;
        }
    }

    /// The message's text, with the undecodable tail as U+FFFD.
    fn into_text(mut self) -> (Header, String) {
        if self.held_start < self.held.len() {
            let tail = String::from_utf8_lossy(&self.held[self.held_start..]);
            self.text.push_str(&tail);
        }
        (self.header, self.text)
    }
}

/// The bytes of header tokens.
fn header_bytes(vocab: &Vocab, tokens: &[u32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(tokens.len() * 4);
    for &t in tokens {
        bytes.extend_from_slice(vocab.token_bytes(t).unwrap_or_default());
    }
    bytes
}

/// Streaming parser over completion tokens.
#[derive(Debug, Clone)]
pub struct Parser {
    vocab: Arc<Vocab>,
    strict: bool,
    default_role: Role,
    state: State,
    /// The text the last token added: a range of the content's text.
    last_delta: Option<(usize, usize)>,
    messages: Vec<Message>,
    recoveries: Vec<Recovery>,
    recovery_counts: [u64; RecoveryKind::COUNT],
    index: usize,
    last_closed_at: Option<usize>,
}

impl Parser {
    /// A parser for completion tokens. With `role` given (a prompt that ends in
    /// `<|start|>{role}`), it starts inside the header; without, it expects `<|start|>`.
    pub fn new(vocab: Arc<Vocab>, role: Option<Role>, strict: bool) -> Self {
        Self {
            vocab,
            strict,
            default_role: role.unwrap_or(Role::Assistant),
            state: match role {
                Some(_) => State::Header(HeaderState::new(false, role)),
                None => State::ExpectStart,
            },
            last_delta: None,
            messages: Vec::new(),
            recoveries: Vec::new(),
            recovery_counts: [0; RecoveryKind::COUNT],
            index: 0,
            last_closed_at: None,
        }
    }

    /// Checks that every id is in the vocabulary, without changing anything.
    pub fn validate(&self, tokens: &[u32]) -> Result<()> {
        for (i, &t) in tokens.iter().enumerate() {
            if !self.vocab.contains(t) {
                return Err(self.invalid_token(self.index + i, i64::from(t)));
            }
        }
        Ok(())
    }

    /// The error for token id `token`, outside the vocabulary, at token `index`.
    pub fn invalid_token(&self, index: usize, token: i64) -> Error {
        Error::InvalidToken {
            index,
            token,
            n_regular: self.vocab.n_regular(),
        }
    }

    /// Consumes one token. On error nothing changes and the token is not consumed.
    pub fn process(&mut self, token: u32) -> Result<Step> {
        if !self.vocab.contains(token) {
            return Err(self.invalid_token(self.index, i64::from(token)));
        }
        self.last_delta = None;
        let step = match &mut self.state {
            State::ExpectStart => self.on_expect_start(token)?,
            State::Header(_) => self.on_header(token)?,
            State::Content(c) => match end_token(token) {
                Some(end) => self.close_message(end),
                None => {
                    // The hot path: one text token.
                    let start = c.text.len();
                    let whole = c.push(self.vocab.token_bytes(token).unwrap_or_default());
                    let delta = whole || c.text.len() > start;
                    if delta {
                        self.last_delta = Some((start, c.text.len()));
                    }
                    Step {
                        delta,
                        ..Step::default()
                    }
                }
            },
        };
        self.index += 1;
        Ok(step)
    }

    /// Consumes tokens until the end or the first error (whose index says how
    /// many were consumed). Ids are all checked first: an unknown id consumes none.
    pub fn process_many(&mut self, tokens: &[u32]) -> Result<()> {
        self.validate(tokens)?;
        for &t in tokens {
            self.process(t)?;
        }
        Ok(())
    }

    /// End of stream: closes an open message (its undecodable tail becomes U+FFFD).
    /// Strict mode fails inside a header, as openai-harmony does.
    pub fn process_eos(&mut self) -> Result<Step> {
        let step = match self.state {
            State::ExpectStart => Step::default(),
            State::Header(_) if self.strict => {
                return Err(Error::Parse {
                    index: self.index,
                    kind: ParseErrorKind::UnexpectedEos,
                    message: "Unexpected EOS while waiting for message header to complete".into(),
                });
            }
            State::Header(_) => self.cut_header(HeaderCut::Eos),
            State::Content(_) => self.close_message(EndToken::Eos),
        };
        self.last_delta = None;
        Ok(step)
    }

    fn on_expect_start(&mut self, token: u32) -> Result<Step> {
        if token == special::START {
            self.state = State::Header(HeaderState::new(false, None));
            return Ok(Step::default());
        }
        if self.strict {
            return Err(Error::Parse {
                index: self.index,
                kind: ParseErrorKind::UnexpectedToken,
                message: format!(
                    "Unexpected token {token} while expecting start token {}",
                    special::START
                ),
            });
        }
        if let Some(end) = end_token(token) {
            let detail = self.absorb_stray_stop(end);
            self.recover(RecoveryKind::StrayStopToken, detail);
            return Ok(Step::default());
        }
        self.recover(
            RecoveryKind::MissingStart,
            format!(
                "token {token} where <|start|> was expected; assumed <|start|>{}",
                self.default_role.as_str()
            ),
        );
        self.state = State::Header(HeaderState::new(true, Some(self.default_role)));
        self.on_header(token)
    }

    /// A stop token right after a message ended in `<|end|>` upgrades that end.
    fn absorb_stray_stop(&mut self, end: EndToken) -> String {
        let follows_end = self.last_closed_at.is_some_and(|i| i + 1 == self.index);
        if let (true, EndToken::Call | EndToken::Return, Some(last)) =
            (follows_end, end, self.messages.last_mut())
        {
            if last.end == EndToken::End {
                last.end = end;
                self.last_closed_at = Some(self.index);
                return format!(
                    "<|{}|> right after <|end|>: taken as the end of the previous message",
                    end.as_str()
                );
            }
        }
        format!("<|{}|> outside a message ignored", end.as_str())
    }

    /// Takes the header being read out of the state (which becomes `ExpectStart`).
    fn take_header(&mut self) -> HeaderState {
        match std::mem::replace(&mut self.state, State::ExpectStart) {
            State::Header(h) => h,
            // Only called in the header state.
            other => {
                self.state = other;
                HeaderState::new(false, None)
            }
        }
    }

    fn on_header(&mut self, token: u32) -> Result<Step> {
        if token == special::MESSAGE {
            let h = self.take_header();
            let header = match self.finish_header(&h) {
                Ok(header) => header,
                Err(e) => {
                    self.state = State::Header(h);
                    return Err(e);
                }
            };
            self.state = State::Content(ContentState {
                header,
                text: String::new(),
                held: Vec::new(),
                held_start: 0,
            });
            return Ok(Step {
                header_done: true,
                ..Step::default()
            });
        }
        if !self.strict {
            if end_token(token).is_some() {
                return Ok(self.cut_header(HeaderCut::Stop(token)));
            }
            if token == special::START {
                return Ok(self.cut_header(HeaderCut::Start));
            }
        }
        if let State::Header(h) = &mut self.state {
            h.tokens.push(token);
        }
        Ok(Step::default())
    }

    fn header_text_lossy(&self, h: &HeaderState) -> String {
        String::from_utf8_lossy(&header_bytes(&self.vocab, &h.tokens)).into_owned()
    }

    /// Parses the header at `<|message|>` (only recoveries change, in lenient mode).
    fn finish_header(&mut self, h: &HeaderState) -> Result<Header> {
        let strict_err = |kind, message| Error::Parse {
            index: self.index,
            kind,
            message,
        };
        let text = match (
            String::from_utf8(header_bytes(&self.vocab, &h.tokens)),
            self.strict,
        ) {
            (Ok(t), _) => t,
            (Err(_), true) => {
                return Err(strict_err(
                    ParseErrorKind::HeaderNotUtf8,
                    "could not decode header: invalid UTF-8".into(),
                ))
            }
            (Err(_), false) => self.header_text_lossy(h),
        };
        let parsed = parse_strict(&text, h.role, true);
        let mut header = match (parsed, self.strict) {
            (Ok((h, None)), _) => h,
            (Ok((_, Some(rest))), true) => {
                return Err(strict_err(
                    ParseErrorKind::TrailingHeaderText,
                    format!("unexpected tokens remaining in message header: {rest:?}"),
                ))
            }
            (Err(e), true) => return Err(strict_err(e.kind, e.message)),
            (Ok((_, Some(_))), false) | (Err(_), false) => {
                let (header, junk) = parse_lenient(&text, h.role, self.default_role);
                self.recover(
                    RecoveryKind::MalformedHeader,
                    format!("header {text:?} parsed leniently; ignored: {junk:?}"),
                );
                header
            }
        };
        if !self.strict {
            self.apply_fixes(&mut header);
        }
        Ok(header)
    }

    fn apply_fixes(&mut self, header: &mut Header) {
        let fixes = fix_quirks(header);
        if let Some(ct) = fixes.constrain_as_recipient {
            self.recover(
                RecoveryKind::ConstrainAsRecipient,
                format!("{ct:?} taken as content type, not recipient"),
            );
        }
        if let Some((before, after)) = fixes.channel {
            self.recover(
                RecoveryKind::ChannelNormalized,
                format!("channel {before:?} read as {after:?}"),
            );
        }
    }

    /// Lenient mode: a header ended without `<|message|>`.
    fn cut_header(&mut self, cut: HeaderCut) -> Step {
        let h = self.take_header();
        let mut step = Step::default();
        let what = match cut {
            HeaderCut::Stop(t) => format!("<|{}|>", end_token(t).map_or("?", EndToken::as_str)),
            HeaderCut::Start => "<|start|>".to_string(),
            HeaderCut::Eos => "end of stream".to_string(),
        };
        if let HeaderCut::Start = cut {
            let detail = if h.tokens.is_empty() {
                "repeated <|start|> ignored".to_string()
            } else {
                "<|start|> inside a header: the header restarts".to_string()
            };
            self.recover(RecoveryKind::RepeatedStart, detail);
        }
        // The role stays known through a repeated `<|start|>` that cut nothing.
        let mut role = h.role;
        if h.tokens.is_empty() {
            match cut {
                HeaderCut::Start | HeaderCut::Eos => {}
                HeaderCut::Stop(_) => self.recover(
                    RecoveryKind::HeaderWithoutMessage,
                    format!("empty header closed by {what}"),
                ),
            }
        } else {
            let has_special = h.tokens.iter().any(|&t| self.vocab.is_special(t));
            let end = match cut {
                HeaderCut::Stop(t) => end_token(t).unwrap_or(EndToken::Eos),
                _ => EndToken::Eos,
            };
            if h.implicit && !has_special {
                // Plain text where a message start was expected: keep it verbatim.
                let text = self.header_text_lossy(&h);
                self.recover(
                    RecoveryKind::HeaderWithoutMessage,
                    format!("text outside a message kept as a message (closed by {what})"),
                );
                self.push_message(Header::new(self.default_role), text, end);
                step.message_done = true;
            } else if let (HeaderCut::Stop(_), Some(role)) = (cut, h.role) {
                // openai-harmony's non-strict rule: the words after role and
                // channel become the content.
                let text = self.header_text_lossy(&h);
                let (mut header, content) = match parse_strict(&text, Some(role), false) {
                    Ok((h, rest)) => (h, rest.unwrap_or_default()),
                    Err(_) => parse_lenient(&text, Some(role), self.default_role),
                };
                self.apply_fixes(&mut header);
                self.recover(
                    RecoveryKind::HeaderWithoutMessage,
                    format!("header {text:?} closed by {what}; its words became the content"),
                );
                self.push_message(header, content, end);
                step.message_done = true;
            } else if let Some(text) = h
                .role
                .filter(|_| !has_special)
                .map(|_| self.header_text_lossy(&h))
                .filter(|t| !looks_like_header(t))
            {
                // The first header of a completion (the prompt gave the role) holds
                // plain text and never reached a stop token: the model answered
                // without a header. Keep the text verbatim.
                self.recover(
                    RecoveryKind::TextInHeader,
                    format!("text with no header kept as a message (closed by {what})"),
                );
                self.push_message(Header::new(self.default_role), text, end);
                step.message_done = true;
            } else if let Some((header, content)) = self.split_cut_header(&h, cut) {
                self.recover(
                    RecoveryKind::TextInHeader,
                    format!(
                        "header closed by {what} before <|message|>: the text after its \
                         channel/recipient kept as the content"
                    ),
                );
                self.push_message(header, content, end);
                step.message_done = true;
            } else {
                let text = self.header_text_lossy(&h);
                self.recover(
                    RecoveryKind::HeaderWithoutMessage,
                    format!("partial header {text:?} dropped at {what}"),
                );
            }
            role = None;
        }
        self.state = match cut {
            HeaderCut::Start => {
                let mut tokens = h.tokens;
                tokens.clear();
                State::Header(HeaderState {
                    tokens,
                    implicit: false,
                    role,
                })
            }
            HeaderCut::Stop(_) | HeaderCut::Eos => State::ExpectStart,
        };
        step
    }

    /// A header cut before `<|message|>` whose text goes on after a recognised
    /// channel or recipient: that header, and the text after it as the content.
    /// Only for a header the model closed (a stop token or `<|start|>`): a header
    /// cut by the end of the stream may simply be unfinished, its last word a
    /// content type still to be followed by `<|message|>`.
    fn split_cut_header(&mut self, h: &HeaderState, cut: HeaderCut) -> Option<(Header, String)> {
        if let HeaderCut::Eos = cut {
            return None;
        }
        let text = self.header_text_lossy(h);
        let at = split_unterminated(&text, h.role)?;
        let head = &text[..at];
        let mut header = match parse_strict(head, h.role, true) {
            Ok((header, None)) => header,
            _ => parse_lenient(head, h.role, self.default_role).0,
        };
        let mut probe = header.clone();
        fix_quirks(&mut probe);
        let known_channel = probe
            .channel
            .as_deref()
            .is_some_and(|c| KNOWN_CHANNELS.contains(&c));
        let recipient = probe.recipient.as_deref().is_some_and(|r| !r.is_empty());
        let content = &text[at..];
        // `to=functions.f json`: one bare word after a recipient is its content type.
        let bare_word = !content.trim_end().contains(char::is_whitespace)
            && content
                .trim_end()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+/".contains(c));
        if !(known_channel || recipient) || (recipient && bare_word) {
            return None;
        }
        self.apply_fixes(&mut header);
        Some((header, content.to_string()))
    }

    fn close_message(&mut self, end: EndToken) -> Step {
        let State::Content(c) = std::mem::replace(&mut self.state, State::ExpectStart) else {
            return Step::default();
        };
        let (header, content) = c.into_text();
        self.push_message(header, content, end);
        Step {
            message_done: true,
            ..Step::default()
        }
    }

    fn push_message(&mut self, header: Header, content: String, end: EndToken) {
        self.messages.push(Message {
            header,
            content,
            end,
        });
        self.last_closed_at = Some(self.index);
    }

    fn recover(&mut self, kind: RecoveryKind, detail: String) {
        self.recovery_counts[kind.index()] += 1;
        if self.recoveries.len() < MAX_RECOVERY_DETAILS {
            self.recoveries.push(Recovery {
                token_index: self.index,
                kind,
                detail,
            });
        }
    }

    /// The content delta of the last token, if it added text.
    pub fn last_content_delta(&self) -> Option<&str> {
        let (a, b) = self.last_delta?;
        match &self.state {
            State::Content(c) => c.text.get(a..b),
            _ => None,
        }
    }

    /// All completed messages.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Removes and returns the last completed message (a consumer that keeps its
    /// own copy, like the event engine, uses this so text is not held twice).
    pub fn pop_message(&mut self) -> Option<Message> {
        self.messages.pop()
    }

    /// The first [`MAX_RECOVERY_DETAILS`] quirks recovered from, with their details
    /// (always empty in strict mode). [`Self::recovery_counts`] counts them all.
    pub fn recoveries(&self) -> &[Recovery] {
        &self.recoveries
    }

    /// How many recoveries of each kind happened, indexed by [`RecoveryKind::index`].
    pub fn recovery_counts(&self) -> [u64; RecoveryKind::COUNT] {
        self.recovery_counts
    }

    /// How many recoveries happened in all (at least `recoveries().len()`).
    pub fn recovery_total(&self) -> u64 {
        self.recovery_counts.iter().sum()
    }

    /// Where the parser is.
    pub fn state(&self) -> StreamState {
        match self.state {
            State::ExpectStart => StreamState::ExpectStart,
            State::Header(_) => StreamState::Header,
            State::Content(_) => StreamState::Content,
        }
    }

    /// Whether strict mode is on.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// Number of tokens consumed.
    pub fn tokens_processed(&self) -> usize {
        self.index
    }

    /// The vocabulary in use.
    pub fn vocab(&self) -> &Arc<Vocab> {
        &self.vocab
    }

    /// The header of the message being read (`None` outside content).
    pub fn current_header(&self) -> Option<&Header> {
        match &self.state {
            State::Content(c) => Some(&c.header),
            _ => None,
        }
    }

    /// Role of the current message, or the role expected for the next one.
    pub fn current_role(&self) -> Option<Role> {
        match &self.state {
            State::ExpectStart => None,
            State::Header(h) => h.role,
            State::Content(c) => Some(c.header.role),
        }
    }

    /// Text of the current message so far (empty outside content).
    pub fn current_content(&self) -> &str {
        match &self.state {
            State::Content(c) => &c.text,
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::special::{CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START};

    use crate::test_util::{msg, text, vocab};

    fn run(tokens: &[u32], strict: bool) -> (Parser, Vec<Option<String>>) {
        let mut p = Parser::new(vocab(), Some(Role::Assistant), strict);
        let mut deltas = Vec::new();
        for &t in tokens {
            p.process(t).unwrap();
            deltas.push(p.last_content_delta().map(str::to_string));
        }
        p.process_eos().unwrap();
        (p, deltas)
    }

    #[test]
    fn two_messages_with_header_after_start() {
        let mut toks = msg("analysis", "hmm", END);
        toks.push(START);
        toks.extend(text("assistant"));
        toks.extend(msg("final", "hi", RETURN));
        let (p, deltas) = run(&toks, true);
        let m = p.messages();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].header.channel.as_deref(), m[0].content.as_str()),
            (Some("analysis"), "hmm")
        );
        assert_eq!((m[1].end, m[1].content.as_str()), (EndToken::Return, "hi"));
        let joined: String = deltas.into_iter().flatten().collect();
        assert_eq!(joined, "hmmhi");
    }

    #[test]
    fn utf8_held_back_then_emitted_whole() {
        let mut toks = vec![CHANNEL];
        toks.extend(text("final"));
        toks.push(MESSAGE);
        toks.extend(text("é🌸"));
        toks.push(END);
        let (p, deltas) = run(&toks, true);
        let got: Vec<_> = deltas.iter().skip(7).take(6).cloned().collect();
        let want = [None, Some("é"), None, None, None, Some("🌸")];
        assert_eq!(got, want.map(|d| d.map(str::to_string)));
        assert_eq!(p.messages()[0].content, "é🌸");
    }

    #[test]
    fn invalid_bytes_become_one_replacement_per_token_pass() {
        // 0xff is invalid; "ab" after it in the same pass waits for the next token.
        let mut p = Parser::new(vocab(), Some(Role::Assistant), true);
        for t in [CHANNEL].into_iter().chain(text("final")).chain([MESSAGE]) {
            p.process(t).unwrap();
        }
        p.process(0xff).unwrap();
        assert_eq!(p.last_content_delta(), Some("\u{FFFD}"));
        p.process(0xf0).unwrap();
        assert_eq!(p.last_content_delta(), None);
        p.process(u32::from(b'x')).unwrap();
        assert_eq!(p.last_content_delta(), Some("\u{FFFD}"));
        p.process(END).unwrap();
        assert_eq!(p.messages()[0].content, "\u{FFFD}\u{FFFD}x");
    }

    #[test]
    fn truncated_sequence_at_end_is_replaced() {
        let mut toks = msg("final", "ok", END);
        toks.insert(toks.len() - 1, 0xe2);
        let (p, _) = run(&toks, true);
        assert_eq!(p.messages()[0].content, "ok\u{FFFD}");
    }

    #[test]
    fn strict_errors_leave_state_unchanged() {
        let mut p = Parser::new(vocab(), None, true);
        let err = p.process(CHANNEL).unwrap_err();
        assert!(matches!(
            err,
            Error::Parse {
                index: 0,
                kind: ParseErrorKind::UnexpectedToken,
                ..
            }
        ));
        assert_eq!(
            (p.state(), p.tokens_processed()),
            (StreamState::ExpectStart, 0)
        );
        assert!(matches!(
            p.process(300_000),
            Err(Error::InvalidToken { index: 0, .. })
        ));
        p.process(START).unwrap();
        for t in text("robot") {
            p.process(t).unwrap();
        }
        let err = p.process(MESSAGE).unwrap_err();
        assert!(matches!(
            err,
            Error::Parse {
                kind: ParseErrorKind::UnknownRole,
                index: 6,
                ..
            }
        ));
        assert_eq!(p.state(), StreamState::Header);
        assert!(matches!(
            p.process_eos(),
            Err(Error::Parse {
                kind: ParseErrorKind::UnexpectedEos,
                index: 6,
                ..
            })
        ));
    }

    #[test]
    fn strict_keeps_stop_tokens_in_a_header_like_openai_harmony() {
        let mut p = Parser::new(vocab(), Some(Role::Assistant), true);
        p.process(CHANNEL).unwrap();
        p.process(END).unwrap();
        assert_eq!(p.state(), StreamState::Header);
    }

    #[test]
    fn lenient_recoveries() {
        let kinds = |p: &Parser| p.recoveries().iter().map(|r| r.kind).collect::<Vec<_>>();
        // <|end|><|call|>: the call ends the previous message.
        let mut toks = msg("commentary to=functions.f", "{}", END);
        toks.push(CALL);
        let (p, _) = run(&toks, false);
        assert_eq!(p.messages()[0].end, EndToken::Call);
        assert_eq!(kinds(&p), [RecoveryKind::StrayStopToken]);
        // Missing <|start|>: implicit start with the parser's role.
        let mut toks = msg("analysis", "a", END);
        toks.extend(msg("final", "b", RETURN));
        let (p, _) = run(&toks, false);
        assert_eq!(p.messages()[1].header.channel.as_deref(), Some("final"));
        assert_eq!(kinds(&p), [RecoveryKind::MissingStart]);
        // Cut in a header: dropped, not turned into content.
        let mut toks = msg("analysis", "a", END);
        toks.push(START);
        toks.extend(text("assistant"));
        toks.push(CHANNEL);
        toks.extend(text("fi"));
        let (p, _) = run(&toks, false);
        assert_eq!(p.messages().len(), 1);
        assert_eq!(kinds(&p), [RecoveryKind::HeaderWithoutMessage]);
        // `final <|constrain|>json` is a content type.
        let mut toks = vec![CHANNEL];
        toks.extend(text("final "));
        toks.push(CONSTRAIN);
        toks.extend(text("json"));
        toks.push(MESSAGE);
        toks.extend(text("{}"));
        toks.push(RETURN);
        let (p, _) = run(&toks, false);
        let h = &p.messages()[0].header;
        assert_eq!(
            (h.recipient.as_deref(), h.content_type.as_deref()),
            (None, Some("<|constrain|>json"))
        );
        let (strict, _) = run(&toks, true);
        assert_eq!(
            strict.messages()[0].header.recipient.as_deref(),
            Some("<|constrain|>json")
        );
    }

    #[test]
    fn long_content_is_appended_not_redecoded() {
        // Content is appended, never re-decoded: a long message keeps one buffer
        // whose length equals the text, and deltas are slices of it.
        let mut p = Parser::new(vocab(), Some(Role::Assistant), false);
        for t in [CHANNEL].into_iter().chain(text("final")).chain([MESSAGE]) {
            p.process(t).unwrap();
        }
        for _ in 0..100_000 {
            p.process(u32::from(b'z')).unwrap();
            assert_eq!(p.last_content_delta(), Some("z"));
        }
        assert_eq!(p.current_content().len(), 100_000);
    }

    #[test]
    fn a_run_of_undecodable_bytes_costs_the_same_at_any_length() {
        // Lone continuation bytes, two per token: one U+FFFD per token pass, as
        // openai-harmony does, so the held bytes grow; they are never moved or
        // re-read, so the buffer is touched O(1) times per token.
        let v = Arc::new(
            Vocab::from_regular_tokens((0u8..=255).map(|b| vec![b]).chain([vec![0x80, 0x81]]))
                .unwrap(),
        );
        let pair = 256;
        let mut p = Parser::new(v, Some(Role::Assistant), false);
        for t in [CHANNEL].into_iter().chain(text("final")).chain([MESSAGE]) {
            p.process(t).unwrap();
        }
        let n = 50_000;
        for _ in 0..n {
            p.process(pair).unwrap();
            assert_eq!(p.last_content_delta(), Some("\u{FFFD}"));
        }
        // Compaction keeps at most twice the live bytes.
        let State::Content(c) = &p.state else {
            panic!("not in content");
        };
        assert_eq!(c.held.len() - c.held_start, n);
        assert!(c.held.len() <= 2 * n + 2);
        p.process(END).unwrap();
        assert_eq!(p.messages()[0].content.chars().count(), 2 * n);
    }

    #[test]
    fn recoveries_are_counted_all_and_kept_up_to_a_bound() {
        let mut p = Parser::new(vocab(), Some(Role::Assistant), false);
        for _ in 0..1000 {
            p.process(START).unwrap();
            p.process(u32::from(b'x')).unwrap();
        }
        p.process_eos().unwrap();
        assert_eq!(p.recoveries().len(), MAX_RECOVERY_DETAILS);
        assert!(p.recovery_total() >= 1000);
        let counts = p.recovery_counts();
        assert_eq!(counts.iter().sum::<u64>(), p.recovery_total());
        assert!(counts[RecoveryKind::RepeatedStart.index()] >= 999);
        for (i, k) in RecoveryKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
