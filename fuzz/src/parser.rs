//! The parser target: one token stream, parsed four ways, checked at every token.
//!
//! Input: a flags byte (bits 0-1: the parser's role: assistant, none, user,
//! tool), then opcodes ([`crate::input::Decoder::op`]); control opcodes
//! `0x00..=0x0f` split the stream into `process_many` chunks, `0x10..=0x1f`
//! are an end of stream (`process_eos`) after which parsing goes on.
//!
//! Checked:
//! * every error leaves the parser as it was; an undefined id always raises
//!   `InvalidToken` (and only such ids do); lenient mode never raises anything else;
//! * a token reports a delta exactly when `last_content_delta` is some non-empty
//!   text; the deltas of a message spell its content so far, and a prefix of its
//!   final content (an undecodable tail is added at its end);
//! * `process_many` over chunks (skipping what one-by-one skipped) ends in the
//!   same messages, recoveries and state as one token at a time;
//! * strict mode: no recoveries; where strict mode raised nothing and lenient
//!   mode recovered nothing, both gave the same deltas and messages.

use harmony_stream_core::{Error, Header, Message, Parser, Recovery, Role, StreamState};

use crate::input::{expected_valid, vocab, Decoder, Op};

/// One element of the decoded stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Token(u32),
    Boundary,
    Eos,
}

/// What a run left behind, for the comparisons between runs.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    recoveries: Vec<Recovery>,
    state: StreamState,
    tokens_processed: usize,
    content: String,
    header: Option<Header>,
    role: Option<Role>,
}

impl Outcome {
    fn of(p: &Parser) -> Self {
        Self {
            messages: p.messages().to_vec(),
            recoveries: p.recoveries().to_vec(),
            state: p.state(),
            tokens_processed: p.tokens_processed(),
            content: p.current_content().to_string(),
            header: p.current_header().cloned(),
            role: p.current_role(),
        }
    }
}

/// A cheap picture of the parser, taken before every call.
#[derive(Debug, PartialEq)]
struct Snap {
    state: StreamState,
    tokens_processed: usize,
    n_messages: usize,
    last_message: Option<(usize, harmony_stream_core::EndToken)>,
    n_recoveries: usize,
    content_len: usize,
    header: Option<Header>,
    role: Option<Role>,
}

impl Snap {
    fn of(p: &Parser) -> Self {
        Self {
            state: p.state(),
            tokens_processed: p.tokens_processed(),
            n_messages: p.messages().len(),
            last_message: p.messages().last().map(|m| (m.content.len(), m.end)),
            n_recoveries: p.recoveries().len(),
            content_len: p.current_content().len(),
            header: p.current_header().cloned(),
            role: p.current_role(),
        }
    }
}

/// One token at a time, every call checked. Returns the per-token deltas,
/// whether a parse error (not an invalid id) happened, and the outcome.
fn one_by_one(
    items: &[Item],
    role: Option<Role>,
    strict: bool,
) -> (Vec<Option<String>>, bool, Outcome) {
    let mut p = Parser::new(vocab(), role, strict);
    let mut deltas = Vec::with_capacity(items.len());
    let mut acc = String::new();
    let mut parse_error = false;
    for &item in items {
        let before = Snap::of(&p);
        let result = match item {
            Item::Boundary => continue,
            Item::Token(t) => p.process(t),
            Item::Eos => p.process_eos(),
        };
        let step = match result {
            Err(e) => {
                assert_eq!(Snap::of(&p), before, "an error changed the parser: {e}");
                match (&e, item) {
                    (Error::InvalidToken { token, index, .. }, Item::Token(t)) => {
                        assert!(!expected_valid(t), "valid id {t} rejected: {e}");
                        assert_eq!(*token, i64::from(t));
                        assert_eq!(*index, p.tokens_processed());
                    }
                    (Error::Parse { index, .. }, _) => {
                        assert!(strict, "lenient mode raised a parse error: {e}");
                        assert_eq!(*index, p.tokens_processed());
                        if let Item::Token(t) = item {
                            assert!(expected_valid(t), "undefined id {t} not InvalidToken: {e}");
                        }
                        parse_error = true;
                    }
                    _ => panic!("unexpected error {e:?} for {item:?}"),
                }
                if let Item::Token(_) = item {
                    deltas.push(None);
                }
                continue;
            }
            Ok(step) => step,
        };
        if let Item::Token(t) = item {
            assert!(expected_valid(t), "undefined id {t} accepted");
            assert_eq!(p.tokens_processed(), before.tokens_processed + 1);
        } else {
            assert_eq!(p.tokens_processed(), before.tokens_processed);
            assert_ne!(
                p.state(),
                StreamState::Content,
                "still in content after eos"
            );
        }
        if strict {
            assert!(p.recoveries().is_empty(), "strict mode recorded a recovery");
        }
        assert!(
            p.recoveries().len() >= before.n_recoveries,
            "recoveries shrank"
        );
        if step.header_done {
            assert_eq!(p.state(), StreamState::Content);
            assert_eq!(p.current_content(), "");
            acc.clear();
        }
        let delta = p.last_content_delta().map(str::to_string);
        match (&delta, step.delta) {
            (Some(d), true) => {
                assert!(!d.is_empty(), "empty delta reported");
                assert_eq!(p.state(), StreamState::Content);
                acc.push_str(d);
            }
            (None, false) => {}
            _ => panic!("step.delta={} but last_content_delta={delta:?}", step.delta),
        }
        if p.state() == StreamState::Content && !step.message_done {
            assert_eq!(p.current_content(), acc, "deltas do not spell the content");
        }
        if step.message_done {
            assert_eq!(
                p.messages().len(),
                before.n_messages + 1,
                "message_done without a message"
            );
            if before.state == StreamState::Content {
                let m = p.messages().last().expect("a message");
                assert!(
                    m.content.starts_with(&acc),
                    "message content {:?} does not start with its deltas {acc:?}",
                    m.content
                );
            }
            acc.clear();
        } else {
            assert_eq!(
                p.messages().len(),
                before.n_messages,
                "a message appeared silently"
            );
        }
        if let Item::Token(_) = item {
            deltas.push(delta);
        }
    }
    (deltas, parse_error, Outcome::of(&p))
}

/// Feeds one chunk with `process_many`: an undefined id fails the whole chunk
/// (nothing consumed), then the chunk goes in without those ids; a strict parse
/// error skips its token, as one-by-one parsing does.
fn feed_chunk(p: &mut Parser, toks: &mut Vec<u32>, strict: bool) {
    let n0 = p.tokens_processed();
    if let Err(e) = p.validate(toks) {
        assert!(matches!(e, Error::InvalidToken { .. }), "{e:?}");
        let r = p.process_many(toks);
        assert!(matches!(r, Err(Error::InvalidToken { .. })), "{r:?}");
        assert_eq!(
            p.tokens_processed(),
            n0,
            "process_many consumed with a bad id"
        );
        toks.retain(|&t| expected_valid(t));
    }
    let mut rest: &[u32] = toks;
    while !rest.is_empty() {
        let n = p.tokens_processed();
        match p.process_many(rest) {
            Ok(()) => break,
            Err(Error::Parse { .. }) if strict => {
                rest = &rest[p.tokens_processed() - n + 1..];
            }
            Err(e) => panic!("process_many: {e:?}"),
        }
    }
    toks.clear();
}

/// The same stream through `process_many`, chunk by chunk.
fn chunked(items: &[Item], role: Option<Role>, strict: bool) -> Outcome {
    let mut p = Parser::new(vocab(), role, strict);
    let mut chunk: Vec<u32> = Vec::new();
    for &item in items {
        match item {
            Item::Token(t) => chunk.push(t),
            Item::Boundary => feed_chunk(&mut p, &mut chunk, strict),
            Item::Eos => {
                feed_chunk(&mut p, &mut chunk, strict);
                let _ = p.process_eos();
            }
        }
    }
    feed_chunk(&mut p, &mut chunk, strict);
    Outcome::of(&p)
}

/// Runs the parser target on one input; returns (input tokens, parsed tokens).
pub fn run(data: &[u8]) -> (u64, u64) {
    let mut d = Decoder::new(data);
    let role = match d.byte() & 3 {
        0 => Some(Role::Assistant),
        1 => None,
        2 => Some(Role::User),
        _ => Some(Role::Tool),
    };
    let mut items = Vec::new();
    while let Some(op) = d.op() {
        items.push(match op {
            Op::Token(t) => Item::Token(t),
            Op::Control(c) if c < 0x10 => Item::Boundary,
            Op::Control(_) => Item::Eos,
        });
    }
    items.push(Item::Eos);
    let n_tokens = items.iter().filter(|i| matches!(i, Item::Token(_))).count() as u64;
    let mut parsed = 0u64;
    let mut outcomes = Vec::new();
    for strict in [true, false] {
        let (deltas, parse_error, outcome) = one_by_one(&items, role, strict);
        let many = chunked(&items, role, strict);
        assert_eq!(
            many, outcome,
            "process_many differs from process (strict={strict})"
        );
        parsed += 2 * outcome.tokens_processed as u64;
        outcomes.push((deltas, parse_error, outcome));
    }
    let (lenient, strict) = (&outcomes[1], &outcomes[0]);
    if !strict.1 && lenient.2.recoveries.is_empty() {
        assert_eq!(
            lenient.0, strict.0,
            "strict and lenient deltas differ without a recovery"
        );
        assert_eq!(
            lenient.2.messages, strict.2.messages,
            "strict and lenient messages differ without a recovery"
        );
    }
    (n_tokens, parsed)
}
