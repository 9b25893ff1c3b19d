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

/// Streaming parser over completion tokens.
#[derive(Debug, Clone)]
pub struct Parser {
    vocab: Arc<Vocab>,
    strict: bool,
    default_role: Role,
    next_role: Option<Role>,
    state: StreamState,
    header_tokens: Vec<u32>,
    header_implicit: bool,
    header: Header,
    content: String,
    /// Bytes not yet decoded: `pending[pending_start..]` (a consumed prefix is
    /// skipped, not moved, so a long run of undecodable bytes costs the same per
    /// token at any length; the buffer is compacted when half of it is dead).
    pending: Vec<u8>,
    pending_start: usize,
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
            next_role: role,
            state: if role.is_some() {
                StreamState::Header
            } else {
                StreamState::ExpectStart
            },
            header_tokens: Vec::new(),
            header_implicit: false,
            header: Header::new(role.unwrap_or(Role::Assistant)),
            content: String::new(),
            pending: Vec::new(),
            pending_start: 0,
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
        let step = match self.state {
            StreamState::ExpectStart => self.on_expect_start(token)?,
            StreamState::Header => self.on_header(token)?,
            StreamState::Content => self.on_content(token),
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
            StreamState::ExpectStart => Step::default(),
            StreamState::Header if self.strict => {
                return Err(Error::Parse {
                    index: self.index,
                    kind: ParseErrorKind::UnexpectedEos,
                    message: "Unexpected EOS while waiting for message header to complete".into(),
                });
            }
            StreamState::Header => self.cut_header(HeaderCut::Eos),
            StreamState::Content => self.close_message(EndToken::Eos),
        };
        self.last_delta = None;
        Ok(step)
    }

    fn on_expect_start(&mut self, token: u32) -> Result<Step> {
        if token == special::START {
            self.begin_header(false);
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
        self.begin_header(true);
        self.next_role = Some(self.default_role);
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

    fn begin_header(&mut self, implicit: bool) {
        self.state = StreamState::Header;
        self.header_tokens.clear();
        self.header_implicit = implicit;
    }

    fn on_header(&mut self, token: u32) -> Result<Step> {
        if token == special::MESSAGE {
            let header = self.finish_header()?;
            self.header = header;
            self.next_role = None;
            self.header_tokens.clear();
            self.content.clear();
            self.clear_pending();
            self.state = StreamState::Content;
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
        self.header_tokens.push(token);
        Ok(Step::default())
    }

    fn header_text_lossy(&self) -> String {
        let mut bytes = Vec::with_capacity(self.header_tokens.len() * 4);
        for &t in &self.header_tokens {
            bytes.extend_from_slice(self.vocab.token_bytes(t).unwrap_or_default());
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn header_text(&self) -> Option<String> {
        let mut bytes = Vec::with_capacity(self.header_tokens.len() * 4);
        for &t in &self.header_tokens {
            bytes.extend_from_slice(self.vocab.token_bytes(t).unwrap_or_default());
        }
        String::from_utf8(bytes).ok()
    }

    /// Parses the header at `<|message|>` without changing state.
    fn finish_header(&mut self) -> Result<Header> {
        let strict_err = |kind, message| Error::Parse {
            index: self.index,
            kind,
            message,
        };
        let text = match (self.header_text(), self.strict) {
            (Some(t), _) => t,
            (None, true) => {
                return Err(strict_err(
                    ParseErrorKind::HeaderNotUtf8,
                    "could not decode header: invalid UTF-8".into(),
                ))
            }
            (None, false) => self.header_text_lossy(),
        };
        let parsed = parse_strict(&text, self.next_role, true);
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
                let (h, junk) = parse_lenient(&text, self.next_role, self.default_role);
                self.recover(
                    RecoveryKind::MalformedHeader,
                    format!("header {text:?} parsed leniently; ignored: {junk:?}"),
                );
                h
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
        let mut step = Step::default();
        let what = match cut {
            HeaderCut::Stop(t) => format!("<|{}|>", end_token(t).map_or("?", EndToken::as_str)),
            HeaderCut::Start => "<|start|>".to_string(),
            HeaderCut::Eos => "end of stream".to_string(),
        };
        if let HeaderCut::Start = cut {
            let detail = if self.header_tokens.is_empty() {
                "repeated <|start|> ignored".to_string()
            } else {
                "<|start|> inside a header: the header restarts".to_string()
            };
            self.recover(RecoveryKind::RepeatedStart, detail);
        }
        if self.header_tokens.is_empty() {
            match cut {
                HeaderCut::Start | HeaderCut::Eos => {}
                HeaderCut::Stop(_) => self.recover(
                    RecoveryKind::HeaderWithoutMessage,
                    format!("empty header closed by {what}"),
                ),
            }
        } else {
            let has_special = self.header_tokens.iter().any(|&t| self.vocab.is_special(t));
            let end = match cut {
                HeaderCut::Stop(t) => end_token(t).unwrap_or(EndToken::Eos),
                _ => EndToken::Eos,
            };
            if self.header_implicit && !has_special {
                // Plain text where a message start was expected: keep it verbatim.
                let text = self.header_text_lossy();
                self.recover(
                    RecoveryKind::HeaderWithoutMessage,
                    format!("text outside a message kept as a message (closed by {what})"),
                );
                self.push_message(Header::new(self.default_role), text, end);
                step.message_done = true;
            } else if let (HeaderCut::Stop(_), Some(role)) = (cut, self.next_role) {
                // openai-harmony's non-strict rule: the words after role and
                // channel become the content.
                let text = self.header_text_lossy();
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
            } else if let Some(text) = self
                .next_role
                .filter(|_| !has_special)
                .map(|_| self.header_text_lossy())
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
            } else if let Some((header, content)) = self.split_cut_header(cut) {
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
                let text = self.header_text_lossy();
                self.recover(
                    RecoveryKind::HeaderWithoutMessage,
                    format!("partial header {text:?} dropped at {what}"),
                );
            }
            self.next_role = None;
        }
        self.header_tokens.clear();
        match cut {
            HeaderCut::Start => self.begin_header(false),
            HeaderCut::Stop(_) | HeaderCut::Eos => {
                self.state = StreamState::ExpectStart;
                self.next_role = None;
                self.header_implicit = false;
            }
        }
        step
    }

    /// A header cut before `<|message|>` whose text goes on after a recognised
    /// channel or recipient: that header, and the text after it as the content.
    /// Only for a header the model closed (a stop token or `<|start|>`): a header
    /// cut by the end of the stream may simply be unfinished, its last word a
    /// content type still to be followed by `<|message|>`.
    fn split_cut_header(&mut self, cut: HeaderCut) -> Option<(Header, String)> {
        if let HeaderCut::Eos = cut {
            return None;
        }
        let text = self.header_text_lossy();
        let at = split_unterminated(&text, self.next_role)?;
        let head = &text[..at];
        let mut header = match parse_strict(head, self.next_role, true) {
            Ok((h, None)) => h,
            _ => parse_lenient(head, self.next_role, self.default_role).0,
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

    fn on_content(&mut self, token: u32) -> Step {
        if let Some(end) = end_token(token) {
            return self.close_message(end);
        }
        let bytes = self.vocab.token_bytes(token).unwrap_or_default();
        let start = self.content.len();
        if self.pending_start == self.pending.len() {
            if let Ok(s) = std::str::from_utf8(bytes) {
                self.content.push_str(s);
                self.last_delta = Some((start, self.content.len()));
                return Step {
                    delta: true,
                    ..Step::default()
                };
            }
        }
        self.pending.extend_from_slice(bytes);
        // One pass per token over the held bytes, as openai-harmony does: the
        // valid prefix, then at most one U+FFFD for an invalid sequence; bytes
        // after that wait for the next token. `from_utf8` stops at the first
        // error, so a pass reads only what it consumes plus one sequence.
        let held = &self.pending[self.pending_start..];
        let consumed = match std::str::from_utf8(held) {
            Ok(s) => {
                self.content.push_str(s);
                held.len()
            }
            Err(e) => {
                let valid = e.valid_up_to();
                if let Ok(s) = std::str::from_utf8(&held[..valid]) {
                    self.content.push_str(s);
                }
                match e.error_len() {
                    Some(n) => {
                        self.content.push_str(REPLACEMENT);
                        valid + n
                    }
                    None => valid,
                }
            }
        };
        self.consume_pending(consumed);
        let delta = self.content.len() > start;
        if delta {
            self.last_delta = Some((start, self.content.len()));
        }
        Step {
            delta,
            ..Step::default()
        }
    }

    /// Marks `n` held bytes as decoded; compacts when the dead prefix is the larger half.
    fn consume_pending(&mut self, n: usize) {
        self.pending_start += n;
        if self.pending_start == self.pending.len() {
            self.clear_pending();
        } else if self.pending_start > self.pending.len() / 2 {
            self.pending.drain(..self.pending_start);
            self.pending_start = 0;
        }
    }

    fn clear_pending(&mut self) {
        self.pending.clear();
        self.pending_start = 0;
    }

    fn close_message(&mut self, end: EndToken) -> Step {
        if self.pending_start < self.pending.len() {
            let tail = String::from_utf8_lossy(&self.pending[self.pending_start..]).into_owned();
            self.content.push_str(&tail);
            self.clear_pending();
        }
        let header = std::mem::replace(&mut self.header, Header::new(self.default_role));
        let content = std::mem::take(&mut self.content);
        self.push_message(header, content, end);
        self.state = StreamState::ExpectStart;
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
        self.last_delta.and_then(|(a, b)| self.content.get(a..b))
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
        self.state
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
        (self.state == StreamState::Content).then_some(&self.header)
    }

    /// Role of the current message, or the role expected for the next one.
    pub fn current_role(&self) -> Option<Role> {
        match self.state {
            StreamState::Content => Some(self.header.role),
            _ => self.next_role,
        }
    }

    /// Text of the current message so far (empty outside content).
    pub fn current_content(&self) -> &str {
        match self.state {
            StreamState::Content => &self.content,
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::special::{CALL, CHANNEL, CONSTRAIN, END, MESSAGE, RETURN, START};

    /// A vocabulary of the 256 single bytes (id = byte value) plus the specials.
    fn vocab() -> Arc<Vocab> {
        Arc::new(Vocab::from_regular_tokens((0u8..=255).map(|b| [b])).unwrap())
    }

    fn text(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

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

    fn msg(channel: &str, body: &str, stop: u32) -> Vec<u32> {
        let mut v = vec![CHANNEL];
        v.extend(text(channel));
        v.push(MESSAGE);
        v.extend(text(body));
        v.push(stop);
        v
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
        assert_eq!(p.pending.len() - p.pending_start, n);
        assert!(p.pending.len() <= 2 * n + 2);
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
