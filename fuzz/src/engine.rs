//! The event engine target: arbitrary calls on a `ResponseStream`, every event checked.
//!
//! Input: two config bytes (logprobs, tools, an `mcp_list_tools` listing,
//! response id, usage numbers, the closing finish reason), then opcodes
//! ([`crate::input::Decoder::op`]). Tokens collect into a step; control opcodes:
//!
//! | control | call |
//! |---|---|
//! | `0..=7` | `feed(step)`; with logprobs for `4..=7` (valid, wrong length, not a log probability, unknown top id) |
//! | `8..=15` | `tool_output(output, error)` with strings from the input |
//! | `16..=21` | `finish(stop / length / error(message))` |
//! | `22..=23` | `start()` |
//! | `24..=27` | the step fed one token per call |
//! | `28..=31` | `feed([])` |
//!
//! The stream is finished at the end if the input did not finish it. A second
//! stream with the SSE sink gets the same calls; its text must equal the first
//! stream's events written as SSE.
//!
//! Checked at every call: an error emits nothing and changes nothing, and is the
//! error the call deserved (finished stream, undefined id, bad logprobs, no call
//! waiting); sequence numbers continue without a gap. Checked on the whole stream:
//! every event is one line of valid JSON whose `type` and `sequence_number` match;
//! `response.created`, `response.in_progress` first; exactly one terminal event,
//! last; items never overlap, follow their lifecycle (docs/architecture.md, Event
//! contract), and every `output_item.added` has its `output_item.done` (same id
//! and index); deltas add up to the done text, which is the part's and the done
//! item's text; the final response's `output` is the done items (equal JSON),
//! `response_json()` equals the terminal event's response, and usage counts the
//! accepted tokens. Conservation of text: the lenient parser over each completion
//! (the accepted tokens between accepted `tool_output` calls) gives the items, one
//! per message, each with its message's content.

use std::collections::HashSet;

use harmony_stream_core::{
    Error, Event, FinishReason, Message, Parser, ResponseConfig, ResponseStream, Role, TokenLogprob,
    Tool,
};
use serde_json::Value;

use crate::input::{expected_valid, vocab, Decoder, Op, FIRST_WORD, WORDS};

const MCP_LISTING: &str = r#"[{"name":"search_issues","input_schema":{"type":"object"}}]"#;

fn config(d: &mut Decoder<'_>) -> (ResponseConfig, FinishReason) {
    let a = d.byte();
    let b = d.byte();
    let all_tools = |container_id: Option<String>| {
        vec![
            Tool::Function {
                name: "get_weather".into(),
            },
            Tool::Mcp {
                server_label: "github".into(),
            },
            Tool::WebSearch,
            Tool::CodeInterpreter { container_id },
        ]
    };
    let tools = match (a >> 1) & 3 {
        0 => vec![Tool::Mcp {
            server_label: "github".into(),
        }],
        1 => all_tools(None),
        2 => Vec::new(),
        _ => all_tools(Some("cntr_fuzz".into())),
    };
    let has_mcp = tools.iter().any(|t| matches!(t, Tool::Mcp { .. }));
    let cfg = ResponseConfig {
        response_id: (a & 0x10 != 0).then(|| "resp_fuzz\"\n".to_string()),
        model: "gpt-oss-120b".into(),
        created_at: 1_700_000_000,
        max_output_tokens: (a & 0x20 != 0).then_some(4096),
        logprobs: a & 1 != 0,
        input_tokens: u64::from(b) * 7,
        cached_tokens: u64::from(b) * 3,
        tools,
        tools_json: "[]".into(),
        mcp_listings: if a & 8 != 0 && has_mcp {
            vec![("github".into(), MCP_LISTING.into())]
        } else {
            Vec::new()
        },
        id_seed: Some(u64::from(b) + 1),
        // Echoed request settings: one replacing a default, one added after them.
        settings: if b & 1 != 0 {
            vec![
                ("temperature".into(), "0.5".into()),
                ("metadata".into(), "{\"k\":\"v\\n\"}".into()),
            ]
        } else {
            Vec::new()
        },
        keep_messages: b & 2 != 0,
    };
    let end = match a >> 6 {
        0 | 1 => FinishReason::Stop,
        2 => FinishReason::Length,
        _ => FinishReason::Error("cut \"short\"\n".into()),
    };
    (cfg, end)
}

/// A valid logprob value from one input byte (<= 0 or -inf; odd numbers too).
fn logprob_value(b: u8) -> f64 {
    match b {
        0 => f64::NEG_INFINITY,
        1 => -0.0,
        2 => -5e-324,
        3 => -1e300,
        4 => -0.25,
        _ => -f64::from(b) / 16.0,
    }
}

/// Logprobs for a step, by mode: 4 valid, 5 wrong length, 6 not a log probability
/// (NaN, +inf or a positive number), 7 unknown top id.
fn logprobs(d: &mut Decoder<'_>, n: usize, mode: u8) -> (Vec<TokenLogprob>, bool) {
    let mut out: Vec<TokenLogprob> = (0..n)
        .map(|_| {
            let lp = logprob_value(d.byte());
            let k = usize::from(d.byte() % 3);
            let top = (0..k)
                .map(|j| (FIRST_WORD + j as u32, logprob_value(d.byte())))
                .collect();
            TokenLogprob { logprob: lp, top }
        })
        .collect();
    let valid = match mode {
        5 => {
            out.push(TokenLogprob {
                logprob: -1.0,
                top: Vec::new(),
            });
            false
        }
        6 if n > 0 => {
            let bad = match d.byte() % 4 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => 5e-324,
                _ => 0.25,
            };
            let i = usize::from(d.byte()) % n;
            match out[i].top.first_mut() {
                Some(t) if d.byte() & 1 == 0 => t.1 = bad,
                _ => out[i].logprob = bad,
            }
            false
        }
        7 if n > 0 => {
            let i = usize::from(d.byte()) % n;
            out[i].top.push((FIRST_WORD + WORDS.len() as u32, -1.0));
            false
        }
        _ => true,
    };
    (out, valid)
}

/// One call on the stream.
#[derive(Debug)]
enum Call {
    Start,
    Feed(Vec<u32>, Option<(Vec<TokenLogprob>, bool)>),
    ToolOutput(Option<String>, Option<String>),
    Finish(FinishReason),
}

/// What must not change when a call fails.
#[derive(Debug, PartialEq)]
struct Observed {
    response: String,
    finished: bool,
    awaiting: bool,
    tokens: usize,
    state: harmony_stream_core::StreamState,
    content_len: usize,
    n_messages: usize,
}

impl Observed {
    fn of(s: &ResponseStream) -> Self {
        Self {
            response: s.response_json(),
            finished: s.is_finished(),
            awaiting: s.awaiting_tool_output(),
            tokens: s.parser().tokens_processed(),
            state: s.parser().state(),
            content_len: s.parser().current_content().len(),
            n_messages: s.parser().messages().len(),
        }
    }
}

struct Harness {
    stream: ResponseStream,
    mirror: ResponseStream,
    events: Vec<Event>,
    started: bool,
    /// A function call completed last and no tool output answered it yet.
    function_waiting: bool,
    accepted_tokens: u64,
    logprobs: bool,
    /// The accepted tokens, cut into completions at every accepted `tool_output`.
    completions: Vec<Vec<u32>>,
    /// `take_messages()` after every call (`ResponseConfig::keep_messages`).
    kept: Vec<Message>,
}

impl Harness {
    fn call(&mut self, call: &Call) {
        let before = Observed::of(&self.stream);
        let mut ev: Vec<Event> = Vec::new();
        let mut sse = String::new();
        let (r, r2) = match call {
            Call::Start => (self.stream.start(&mut ev), self.mirror.start(&mut sse)),
            Call::Feed(t, lp) => {
                let lp = lp.as_ref().map(|(v, _)| v.as_slice());
                (
                    self.stream.feed(t, lp, &mut ev),
                    self.mirror.feed(t, lp, &mut sse),
                )
            }
            Call::ToolOutput(o, e) => (
                self.stream.tool_output(o.as_deref(), e.as_deref(), &mut ev),
                self.mirror
                    .tool_output(o.as_deref(), e.as_deref(), &mut sse),
            ),
            Call::Finish(reason) => (
                self.stream.finish(reason.clone(), &mut ev),
                self.mirror.finish(reason.clone(), &mut sse),
            ),
        };
        if debug() {
            let mut shown = format!("{call:?}");
            shown.truncate(300);
            eprintln!("call {shown} -> {r:?}, {} events", ev.len());
        }
        assert_eq!(r, r2, "the SSE sink and the event sink disagree");
        let kept = self.stream.take_messages();
        assert_eq!(
            kept,
            self.mirror.take_messages(),
            "the SSE sink and the event sink kept different messages"
        );
        self.kept.extend(kept);
        let mut expected_sse = String::new();
        for e in &ev {
            e.write_sse(e.sequence_number, &mut expected_sse);
        }
        assert_eq!(
            sse, expected_sse,
            "SSE text differs from the events written as SSE"
        );
        self.check_result(call, &before, &r);
        match r {
            Err(e) => {
                assert!(ev.is_empty(), "{e} but events were emitted");
                assert_eq!(
                    Observed::of(&self.stream),
                    before,
                    "{e} but the stream changed"
                );
            }
            Ok(()) => {
                for (i, e) in ev.iter().enumerate() {
                    assert_eq!(
                        e.sequence_number,
                        (self.events.len() + i) as u64,
                        "sequence number gap"
                    );
                }
                for e in &ev {
                    match e.kind {
                        "response.output_item.added" => self.function_waiting = false,
                        "response.output_item.done" => {
                            let v = parse(e);
                            self.function_waiting = v["item"]["type"] == "function_call"
                                && v["item"]["status"] == "completed";
                        }
                        _ => {}
                    }
                }
                match call {
                    Call::Feed(t, _) => {
                        self.accepted_tokens += t.len() as u64;
                        if let Some(last) = self.completions.last_mut() {
                            last.extend_from_slice(t);
                        }
                        self.started = true;
                        // A new message has begun (for a browser call its item is
                        // announced only when the call ends): the function call no
                        // longer ends the turn.
                        if self.stream.parser().state() == harmony_stream_core::StreamState::Content
                        {
                            self.function_waiting = false;
                        }
                    }
                    Call::ToolOutput(..) => {
                        self.completions.push(Vec::new());
                        self.function_waiting = false;
                        assert!(!self.stream.awaiting_tool_output());
                    }
                    Call::Start | Call::Finish(_) => self.started = true,
                }
                if matches!(call, Call::Finish(_)) {
                    assert!(self.stream.is_finished());
                    assert_eq!(
                        ev.last().map(|e| e.kind.starts_with("response.")),
                        Some(true)
                    );
                }
                self.events.extend(ev);
            }
        }
    }

    /// Whether the call got the error it deserved, or none.
    fn check_result(&self, call: &Call, before: &Observed, r: &Result<(), Error>) {
        if before.finished {
            assert!(
                matches!(r, Err(Error::StreamState(_))),
                "call after finish: {r:?}"
            );
            return;
        }
        match call {
            Call::Start if self.started => {
                assert!(
                    matches!(r, Err(Error::StreamState(_))),
                    "start twice: {r:?}"
                );
            }
            Call::Feed(toks, lp) => {
                if let Some(&bad) = toks.iter().find(|&&t| !expected_valid(t)) {
                    match r {
                        Err(Error::InvalidToken { token, .. }) => {
                            assert_eq!(*token, i64::from(bad));
                        }
                        _ => panic!("undefined id {bad}: {r:?}"),
                    }
                } else if let Some((_, false)) = lp {
                    assert!(
                        matches!(r, Err(Error::InvalidRequest(_))),
                        "bad logprobs: {r:?}"
                    );
                } else {
                    assert!(r.is_ok(), "valid feed failed: {r:?}");
                }
            }
            Call::ToolOutput(..) => {
                let expected = before.awaiting || self.function_waiting;
                match r {
                    Ok(()) => assert!(expected, "tool_output accepted with nothing waiting"),
                    Err(Error::StreamState(_)) => {
                        assert!(!expected, "tool_output refused while a call waits")
                    }
                    Err(e) => panic!("tool_output: {e:?}"),
                }
            }
            Call::Start | Call::Finish(_) => assert!(r.is_ok(), "{r:?}"),
        }
    }
}

/// `HS_FUZZ_DEBUG=1`: print every event (to read what an input does).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("HS_FUZZ_DEBUG").is_some())
}

fn parse(e: &Event) -> Value {
    let json = e.to_json();
    assert!(
        !json.contains('\n') && !json.contains('\r'),
        "raw line break in event JSON (breaks SSE framing): {json}"
    );
    serde_json::from_str(&json).unwrap_or_else(|err| panic!("invalid JSON ({err}): {json}"))
}

/// Runs the engine target on one input; returns (input tokens, accepted tokens).
pub fn run(data: &[u8]) -> (u64, u64) {
    let mut d = Decoder::new(data);
    let (cfg, end) = config(&mut d);
    let v = vocab();
    let mut h = Harness {
        stream: ResponseStream::new(v.clone(), cfg.clone()),
        mirror: ResponseStream::new(v, cfg.clone()),
        events: Vec::new(),
        started: false,
        function_waiting: false,
        accepted_tokens: 0,
        logprobs: cfg.logprobs,
        completions: vec![Vec::new()],
        kept: Vec::new(),
    };
    let mut step: Vec<u32> = Vec::new();
    let mut n_tokens = 0u64;
    while let Some(op) = d.op() {
        let c = match op {
            Op::Token(t) => {
                n_tokens += 1;
                step.push(t);
                continue;
            }
            Op::Control(c) => c,
        };
        match c {
            0..=7 => {
                let toks = std::mem::take(&mut step);
                let lp = (c >= 4).then(|| logprobs(&mut d, toks.len(), c));
                h.call(&Call::Feed(toks, lp));
            }
            8..=15 => {
                let output = (c & 1 != 0).then(|| d.string());
                let error = (c & 2 != 0).then(|| d.string());
                h.call(&Call::ToolOutput(output, error));
            }
            16..=21 => {
                let reason = match (c - 16) % 3 {
                    0 => FinishReason::Stop,
                    1 => FinishReason::Length,
                    _ => FinishReason::Error(d.string()),
                };
                h.call(&Call::Finish(reason));
            }
            22..=23 => h.call(&Call::Start),
            24..=27 => {
                for t in std::mem::take(&mut step) {
                    h.call(&Call::Feed(vec![t], None));
                }
            }
            _ => h.call(&Call::Feed(Vec::new(), None)),
        }
    }
    if !step.is_empty() {
        let toks = std::mem::take(&mut step);
        h.call(&Call::Feed(toks, None));
    }
    if !h.stream.is_finished() {
        h.call(&Call::Finish(end));
    }
    // Every call after the end is refused.
    h.call(&Call::Feed(vec![u32::from(b'x')], None));
    h.call(&Call::ToolOutput(Some("late".into()), None));
    h.call(&Call::Finish(FinishReason::Stop));
    h.call(&Call::Start);
    if debug() {
        for e in &h.events {
            eprintln!("{}", e.to_json());
        }
    }
    check_stream(&h, &cfg);
    check_conservation(&h, cfg.keep_messages);
    (n_tokens, h.accepted_tokens)
}

/// Conservation of text: the lenient parser run over each completion (the accepted
/// tokens between accepted `tool_output` calls) gives the response's items, one per
/// message and in order, each carrying its message's content (a browser call's
/// arguments become its action, which is not compared). A stream that keeps its
/// messages handed out exactly those messages, each once.
fn check_conservation(h: &Harness, keep_messages: bool) {
    let mut want: Vec<(String, String)> = Vec::new();
    let mut parsed: Vec<Message> = Vec::new();
    for tokens in &h.completions {
        let mut p = Parser::new(vocab(), Some(Role::Assistant), false);
        p.process_many(tokens).expect("accepted tokens parse");
        p.process_eos().expect("lenient end of stream");
        parsed.extend(p.messages().iter().cloned());
        want.extend(p.messages().iter().map(|m| {
            (
                m.header.recipient.clone().unwrap_or_default(),
                m.content.clone(),
            )
        }));
    }
    if keep_messages {
        // Header and content: a stray stop token may later change the end token
        // the parser notes for its last message, after the engine took it.
        let parts = |ms: &[Message]| -> Vec<(String, String)> {
            ms.iter()
                .map(|m| (format!("{:?}", m.header), m.content.clone()))
                .collect()
        };
        assert_eq!(
            parts(&h.kept),
            parts(&parsed),
            "the kept messages are not the parser's"
        );
    } else {
        assert!(h.kept.is_empty(), "messages kept without keep_messages");
    }
    let response: Value = serde_json::from_str(&h.stream.response_json()).expect("response JSON");
    let items: Vec<&Value> = response["output"]
        .as_array()
        .expect("output")
        .iter()
        .filter(|i| i["type"] != "mcp_list_tools")
        .collect();
    assert_eq!(
        items.len(),
        want.len(),
        "{} items for {} parsed messages: {want:?}",
        items.len(),
        want.len()
    );
    for (item, (recipient, content)) in items.iter().zip(&want) {
        let text = match str_of(item, "type") {
            "reasoning" | "message" => item["content"]
                .as_array()
                .expect("content")
                .iter()
                .map(|p| str_of(p, "text"))
                .collect::<String>(),
            "function_call" | "mcp_call" => str_of(item, "arguments").to_string(),
            "code_interpreter_call" => str_of(item, "code").to_string(),
            "web_search_call" => {
                assert!(
                    recipient.starts_with("browser."),
                    "{item} for {recipient:?}"
                );
                continue;
            }
            other => panic!("unexpected item type {other}"),
        };
        assert_eq!(&text, content, "item {item} lost text of {recipient:?}");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Added,
    Part,
    TextDone,
    PartDone,
    Args,
    ArgsDone,
    InProgress,
    Running,
    Listing,
    RanOk,
    RanFailed,
}

/// The item lifecycles of docs/architecture.md, Event contract: the state after
/// `event` (type without `response.`), `None` if the event may not come now.
fn transition(kind: &str, st: St, event: &str) -> Option<St> {
    use St::*;
    let (delta, done) = match kind {
        "reasoning" => ("reasoning_text.delta", "reasoning_text.done"),
        "message" => ("output_text.delta", "output_text.done"),
        "function_call" => (
            "function_call_arguments.delta",
            "function_call_arguments.done",
        ),
        "mcp_call" => ("mcp_call_arguments.delta", "mcp_call_arguments.done"),
        "code_interpreter_call" => (
            "code_interpreter_call_code.delta",
            "code_interpreter_call_code.done",
        ),
        _ => ("", ""),
    };
    match (kind, st) {
        ("reasoning" | "message", Added) if event == "content_part.added" => Some(Part),
        ("reasoning" | "message", Part) if event == delta => Some(Part),
        ("reasoning" | "message", Part) if event == done => Some(TextDone),
        ("reasoning" | "message", TextDone) if event == "content_part.done" => Some(PartDone),
        ("function_call", Added | Args) if event == delta => Some(Args),
        ("function_call", Added | Args) if event == done => Some(ArgsDone),
        ("mcp_call", Added) if event == "mcp_call.in_progress" => Some(Args),
        ("mcp_call", Args) if event == delta => Some(Args),
        ("mcp_call", Args) if event == done => Some(ArgsDone),
        ("mcp_call", ArgsDone) if event == "mcp_call.completed" => Some(RanOk),
        ("mcp_call", ArgsDone) if event == "mcp_call.failed" => Some(RanFailed),
        ("code_interpreter_call", Added) if event == "code_interpreter_call.in_progress" => {
            Some(Args)
        }
        ("code_interpreter_call", Args) if event == delta => Some(Args),
        ("code_interpreter_call", Args) if event == done => Some(ArgsDone),
        ("code_interpreter_call", ArgsDone) if event == "code_interpreter_call.interpreting" => {
            Some(Running)
        }
        ("code_interpreter_call", Running) if event == "code_interpreter_call.completed" => {
            Some(RanOk)
        }
        ("web_search_call", Added) if event == "web_search_call.in_progress" => Some(InProgress),
        ("web_search_call", InProgress) if event == "web_search_call.searching" => Some(Running),
        ("web_search_call", Running) if event == "web_search_call.completed" => Some(RanOk),
        ("mcp_list_tools", Added) if event == "mcp_list_tools.in_progress" => Some(Listing),
        ("mcp_list_tools", Listing) if event == "mcp_list_tools.completed" => Some(RanOk),
        ("mcp_list_tools", Listing) if event == "mcp_list_tools.failed" => Some(RanFailed),
        _ => None,
    }
}

/// The statuses an item may close with from a state, and whether closing
/// `incomplete` there means "cut off mid-message" (only the last item of a
/// response that did not complete may be cut).
fn done_status(kind: &str, st: St, status: Option<&str>) -> Option<bool> {
    use St::*;
    let cut = status == Some("incomplete");
    let ok = match (kind, st) {
        ("reasoning" | "message", PartDone) | ("function_call", ArgsDone) => {
            matches!(status, Some("completed" | "incomplete"))
        }
        ("mcp_call", ArgsDone)
        | ("code_interpreter_call", ArgsDone)
        | ("web_search_call", InProgress) => status == Some("incomplete"),
        ("mcp_call", RanOk) | ("code_interpreter_call" | "web_search_call", RanOk) => {
            return (status == Some("completed")).then_some(false);
        }
        ("mcp_call", RanFailed) => return (status == Some("failed")).then_some(false),
        ("code_interpreter_call" | "web_search_call", Running) => {
            return matches!(status, Some("incomplete" | "failed")).then_some(false);
        }
        ("mcp_list_tools", RanOk | RanFailed) => return status.is_none().then_some(false),
        _ => false,
    };
    ok.then_some(cut)
}

struct Open {
    kind: String,
    id: String,
    index: u64,
    added: Value,
    st: St,
    text: String,
    done_text: Option<String>,
    logprobs: Vec<Value>,
    part: Option<Value>,
}

const TERMINAL: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

fn id_prefix(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "reasoning" => "rs_",
        "message" => "msg_",
        "function_call" => "fc_",
        "mcp_call" => "mcp_",
        "code_interpreter_call" => "ci_",
        "web_search_call" => "ws_",
        "mcp_list_tools" => "mcpl_",
        _ => return None,
    })
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn check_stream(h: &Harness, cfg: &ResponseConfig) {
    let events = &h.events;
    let n = events.len();
    assert!(
        n >= 3,
        "a stream has created, in_progress and a terminal event"
    );
    let mut open: Option<Open> = None;
    let mut ids: HashSet<String> = HashSet::new();
    let mut added = 0u64;
    let mut done_items: Vec<Value> = Vec::new();
    let mut cut = false;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.sequence_number, i as u64, "sequence numbers 0, 1, 2, …");
        let v = parse(e);
        let fail = |msg: String| -> ! { panic!("event #{i} {}: {msg}\n{v}", e.kind) };
        if v["type"] != e.kind || v["sequence_number"] != i as u64 {
            fail("type or sequence_number in the JSON differ".into());
        }
        match (i, e.kind) {
            (0, "response.created") | (1, "response.in_progress") => {
                let r = &v["response"];
                if r["status"] != "in_progress" || r["output"] != Value::Array(Vec::new()) {
                    fail("created/in_progress: status in_progress, no output".into());
                }
                continue;
            }
            (0 | 1, _) => fail("the stream starts with created, in_progress".into()),
            (_, k) if TERMINAL.contains(&k) => {
                if i != n - 1 {
                    fail("a terminal event that is not the last".into());
                }
                continue;
            }
            (_, "response.created" | "response.in_progress") => {
                fail("created/in_progress again".into())
            }
            _ if i == n - 1 => fail("the last event is not terminal".into()),
            _ => {}
        }
        let short = e.kind.strip_prefix("response.").unwrap_or(e.kind);
        if short == "output_item.added" {
            if open.is_some() {
                fail("an item added while another is open".into());
            }
            if cut {
                fail("an item after an item cut off mid-message".into());
            }
            let item = &v["item"];
            let kind = str_of(item, "type").to_string();
            let id = str_of(item, "id").to_string();
            match id_prefix(&kind) {
                Some(p) if id.starts_with(p) => {}
                _ => fail(format!("unknown kind or bad id prefix: {kind} {id}")),
            }
            if !ids.insert(id.clone()) {
                fail(format!("item id {id} used twice"));
            }
            if v["output_index"] != added {
                fail(format!("output_index must be {added}"));
            }
            if kind != "mcp_list_tools" && item["status"] != "in_progress" {
                fail("an added item is in_progress".into());
            }
            match kind.as_str() {
                "reasoning" | "message" if item["content"] != Value::Array(Vec::new()) => {
                    fail("an added item has no content".into())
                }
                "function_call" | "mcp_call" if item["arguments"] != "" => {
                    fail("an added call has no arguments".into())
                }
                "code_interpreter_call" if item["code"] != "" => {
                    fail("an added call has no code".into())
                }
                "function_call" if !str_of(item, "call_id").starts_with("call_") => {
                    fail("call_id prefix".into())
                }
                _ => {}
            }
            added += 1;
            open = Some(Open {
                kind,
                id,
                index: added - 1,
                added: item.clone(),
                st: St::Added,
                text: String::new(),
                done_text: None,
                logprobs: Vec::new(),
                part: None,
            });
            continue;
        }
        let Some(o) = open.as_mut() else {
            fail("an item event with no item open".into())
        };
        if v["output_index"] != o.index {
            fail(format!("output_index must be {}", o.index));
        }
        if short == "output_item.done" {
            let item = &v["item"];
            if item["id"] != o.id.as_str() || item["type"] != o.kind.as_str() {
                fail("output_item.done for another item".into());
            }
            let Some(is_cut) = done_status(&o.kind, o.st, item["status"].as_str()) else {
                fail(format!(
                    "{} may not close from {:?} with this status",
                    o.kind, o.st
                ))
            };
            cut = is_cut;
            for key in [
                "role",
                "phase",
                "call_id",
                "name",
                "server_label",
                "container_id",
            ] {
                if item[key] != o.added[key] {
                    fail(format!("{key} changed between added and done"));
                }
            }
            match o.kind.as_str() {
                "reasoning" | "message" => {
                    let part = o.part.take().unwrap_or(Value::Null);
                    if item["content"] != Value::Array(vec![part]) {
                        fail("the done item's content is not its one closed part".into());
                    }
                }
                "function_call" | "mcp_call"
                    if item["arguments"].as_str() != o.done_text.as_deref() =>
                {
                    fail("the done item's arguments differ from the done event's".into());
                }
                "code_interpreter_call" if item["code"].as_str() != o.done_text.as_deref() => {
                    fail("the done item's code differs from the done event's".into());
                }
                _ => {}
            }
            if o.kind == "mcp_call" {
                let has_err = !item["error"].is_null();
                match item["status"].as_str() {
                    Some("completed") if has_err || !item["output"].is_string() => {
                        fail("a completed mcp_call has output and no error".into())
                    }
                    Some("failed") if !has_err => fail("a failed mcp_call has an error".into()),
                    _ => {}
                }
            }
            done_items.push(item.clone());
            open = None;
            continue;
        }
        if v.get("item_id").is_some_and(|x| x != o.id.as_str()) {
            fail(format!("item_id must be {}", o.id));
        }
        let Some(next) = transition(&o.kind, o.st, short) else {
            fail(format!("{} may not go from {:?} by {short}", o.kind, o.st))
        };
        o.st = next;
        let text_kind = matches!(o.kind.as_str(), "reasoning" | "message");
        let text_event = short.starts_with("content_part")
            || short.ends_with(".delta")
            || short.ends_with("_text.done");
        if text_kind && text_event && v["content_index"] != 0 {
            fail("content_index must be 0 (one part)".into());
        }
        if short.ends_with(".delta") {
            o.text.push_str(str_of(&v, "delta"));
            if o.kind == "message" {
                let lps = v["logprobs"].as_array().cloned().unwrap_or_default();
                if !h.logprobs && !lps.is_empty() {
                    fail("logprobs without logprobs=true".into());
                }
                o.logprobs.extend(lps);
            }
        } else if short.ends_with(".done") && !short.starts_with("content_part") {
            let key = match o.kind.as_str() {
                "reasoning" | "message" => "text",
                "code_interpreter_call" => "code",
                _ => "arguments",
            };
            let done = str_of(&v, key);
            if done != o.text {
                fail(format!("done {key} {done:?} != deltas {:?}", o.text));
            }
            o.done_text = Some(done.to_string());
            if o.kind == "message" && v["logprobs"] != Value::Array(o.logprobs.clone()) {
                fail("done logprobs != the deltas' logprobs".into());
            }
            if o.kind == "function_call" && v["name"] != o.added["name"] {
                fail("function_call_arguments.done name differs".into());
            }
        } else if short == "content_part.done" {
            let part = &v["part"];
            if part["text"].as_str() != o.done_text.as_deref() {
                fail("part text != done text".into());
            }
            if o.kind == "message" {
                let n_part = part["logprobs"].as_array().map_or(0, Vec::len);
                if n_part != o.logprobs.len() {
                    fail("part logprobs count != the deltas' logprobs".into());
                }
            }
            o.part = Some(part.clone());
        }
    }
    if open.is_some() {
        panic!("an item was added and never done");
    }
    let last = parse(&events[n - 1]);
    let resp = &last["response"];
    let status = match events[n - 1].kind {
        "response.completed" => "completed",
        "response.incomplete" => "incomplete",
        _ => "failed",
    };
    assert_eq!(resp["status"], status);
    assert!(
        !(cut && status == "completed"),
        "a completed response with an item cut off"
    );
    assert_eq!(resp["error"].is_null(), status != "failed");
    assert_eq!(resp["incomplete_details"].is_null(), status != "incomplete");
    assert_eq!(
        resp["output"],
        Value::Array(done_items),
        "the final output is not the done items"
    );
    let again: Value = serde_json::from_str(&h.stream.response_json()).expect("response JSON");
    assert_eq!(
        &again, resp,
        "response_json() differs from the terminal event's response"
    );
    let usage = &resp["usage"];
    assert_eq!(
        usage["output_tokens"], h.accepted_tokens,
        "usage.output_tokens"
    );
    assert_eq!(usage["input_tokens"], cfg.input_tokens);
    assert_eq!(usage["total_tokens"], cfg.input_tokens + h.accepted_tokens);
    let reasoning = usage["output_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .expect("reasoning_tokens");
    assert!(
        reasoning <= h.accepted_tokens,
        "reasoning_tokens > output_tokens"
    );
    check_numbers(resp);
}

/// Every number in the JSON is finite (logprobs: -inf is written as -9999.0).
fn check_numbers(v: &Value) {
    match v {
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "number {n}"),
        Value::Array(a) => a.iter().for_each(check_numbers),
        Value::Object(o) => o.values().for_each(check_numbers),
        _ => {}
    }
}
