//! The Responses event engine: Harmony tokens in, Responses streaming events out.
//!
//! One [`ResponseStream`] per response: the state machine. It owns a lenient
//! [`Parser`], routes each message ([`crate::router`]) to an item
//! ([`crate::item`]), gives every item its whole lifecycle (also with no delta),
//! holds the server-run call that waits for its output, numbers events, and keeps
//! the done items so the final `Response` is exactly what was streamed. Events
//! are written as JSON ([`crate::wire`]) once, when they are made;
//! `sequence_number` is appended at write time so callers may renumber.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::item::{IdGen, Item, Kind, Outcome, Status};
use crate::json::{key, next_str_member, push_u64, str_member};
use crate::message::{Header, Message, Role};
use crate::parser::{Parser, Step, StreamState};
use crate::router::{route_with_tools, BrowserAction, Tool};
use crate::vocab::Vocab;
use crate::wire;

pub use crate::item::TokenLogprob;

/// One streaming event: its `type` and its other members as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event type, e.g. `response.output_text.delta`.
    pub kind: &'static str,
    /// Sequence number given by the engine (callers may renumber).
    pub sequence_number: u64,
    body: String,
}

impl Event {
    /// Appends the event's JSON with the given sequence number.
    pub fn write_json(&self, sequence_number: u64, out: &mut String) {
        wire::write_event(out, self.kind, sequence_number, &self.body, false);
    }

    /// The event's JSON with its own sequence number.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(self.sequence_number, &mut s);
        s
    }

    /// Appends `event: TYPE\ndata: JSON\n\n`.
    pub fn write_sse(&self, sequence_number: u64, out: &mut String) {
        wire::write_event(out, self.kind, sequence_number, &self.body, true);
    }
}

/// Where the engine puts events: a `Vec<Event>` keeps them as objects, a
/// `String` receives them as SSE text directly (no per-event allocation).
pub trait EventSink {
    /// Receives one event: its type, sequence number and JSON members.
    fn event(&mut self, kind: &'static str, sequence_number: u64, body: &str);
}

impl EventSink for Vec<Event> {
    #[inline]
    fn event(&mut self, kind: &'static str, sequence_number: u64, body: &str) {
        self.push(Event {
            kind,
            sequence_number,
            body: body.to_string(),
        });
    }
}

impl EventSink for String {
    #[inline]
    fn event(&mut self, kind: &'static str, sequence_number: u64, body: &str) {
        wire::write_event(self, kind, sequence_number, body, true);
    }
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model stopped: `response.completed`.
    Stop,
    /// Max output tokens: `response.incomplete`, the open item closes `incomplete`.
    Length,
    /// Aborted or failed: `response.failed` with this message.
    Error(String),
}

impl FinishReason {
    /// The finish reasons a caller names (`abort` and `error` both fail the
    /// response). The one list: the binding, transcripts and the plugin read it.
    pub const NAMES: [&'static str; 4] = ["stop", "length", "abort", "error"];

    /// The reason `name` names; `abort`/`error` carry `message`, or a default one.
    pub fn from_name(name: &str, message: Option<&str>) -> Option<Self> {
        let failed = |default: &str| Self::Error(message.unwrap_or(default).to_string());
        match name {
            "stop" => Some(Self::Stop),
            "length" => Some(Self::Length),
            "abort" => Some(failed("the request was aborted")),
            "error" => Some(failed("the engine failed")),
            _ => None,
        }
    }
}

/// Everything about the request the engine needs.
#[derive(Debug, Clone, Default)]
pub struct ResponseConfig {
    /// `resp_...`; made up when `None`.
    pub response_id: Option<String>,
    /// Model name echoed in the response.
    pub model: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Echoed in the response.
    pub max_output_tokens: Option<u64>,
    /// Whether output text deltas carry logprobs.
    pub logprobs: bool,
    /// Prompt tokens, for usage.
    pub input_tokens: u64,
    /// Cached prompt tokens, for usage.
    pub cached_tokens: u64,
    /// The request's tools (for routing and container ids).
    pub tools: Vec<Tool>,
    /// The request's tools as a JSON array, echoed in `Response.tools`.
    pub tools_json: String,
    /// `(server_label, tools JSON array)` per MCP server whose tool list is known:
    /// each becomes an `mcp_list_tools` item at the start.
    pub mcp_listings: Vec<(String, String)>,
    /// Seed for item ids (tests); random when `None`.
    pub id_seed: Option<u64>,
    /// Request settings echoed in the response, as `(key, JSON value)` members
    /// (`temperature`, `tool_choice`, `text`, ...). Each replaces the default of
    /// a key of [`SETTING_DEFAULTS`] or is written after them; a key of
    /// [`ENGINE_KEYS`] is the engine's own and must not be given (the binding
    /// refuses it).
    pub settings: Vec<(String, String)>,
    /// Keep a copy of each completed message for [`ResponseStream::take_messages`]:
    /// for a server whose own loop reads the model's messages (a tool loop, the
    /// next turn's prompt), so the tokens are parsed once. Off by default: the
    /// engine otherwise holds the text once, in its items.
    pub keep_messages: bool,
}

/// The request settings every response carries, with the value written when
/// [`ResponseConfig::settings`] does not give one.
pub const SETTING_DEFAULTS: [(&str, &str); 6] = [
    ("parallel_tool_calls", "true"),
    ("tool_choice", "\"auto\""),
    ("instructions", "null"),
    ("metadata", "{}"),
    ("temperature", "null"),
    ("top_p", "null"),
];

/// The members of the response object the engine writes itself (not settings).
pub const ENGINE_KEYS: [&str; 11] = [
    "id",
    "object",
    "created_at",
    "model",
    "status",
    "output",
    "tools",
    "error",
    "incomplete_details",
    "max_output_tokens",
    "usage",
];

/// The kind of a server-run call ([`PendingCall`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// An `mcp_call`: run it on the MCP server `server_label`.
    Mcp,
    /// A `code_interpreter_call` (the `python` tool).
    CodeInterpreter,
    /// A `web_search_call` (the `browser` tool).
    WebSearch,
}

impl CallKind {
    /// `"mcp"`, `"code_interpreter"` or `"web_search"` (the tool types).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mcp => "mcp",
            Self::CodeInterpreter => "code_interpreter",
            Self::WebSearch => "web_search",
        }
    }
}

/// The server-run call waiting for [`ResponseStream::tool_output`]: what the
/// server needs to run it, without reading back the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCall<'a> {
    /// Which tool runs it.
    pub kind: CallKind,
    /// The item id (`mcp_…`, `ci_…`, `ws_…`).
    pub item_id: &'a str,
    /// The item's `output_index`.
    pub output_index: u64,
    /// The MCP tool name (`None` for the built-in tools).
    pub name: Option<&'a str>,
    /// The MCP server label (`None` for the built-in tools).
    pub server_label: Option<&'a str>,
    /// The MCP call's arguments, the python code, or the browser call's arguments,
    /// as the model wrote them.
    pub arguments: &'a str,
    /// The code interpreter's container id.
    pub container_id: Option<&'a str>,
    /// The browser call's action.
    pub browser_action: Option<BrowserAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Streaming,
    Finished,
}

/// What a built-in call's result was.
enum ToolResult<'a> {
    Output(&'a str),
    Error(&'a str),
    /// The call will never run (the model started another message, or the response
    /// finished normally): an MCP call fails with this reason, python/browser calls
    /// (which have no failed event) close `incomplete`.
    Skipped(&'static str),
    /// The response was cut (length, abort, error): the call closes `incomplete`.
    Missing,
}

fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Where events go out: the next sequence number, the body buffer reused by
/// deltas, and the logprobs of the tokens whose text is not sent yet.
#[derive(Debug, Clone)]
struct Emitter {
    vocab: Arc<Vocab>,
    seq: u64,
    body: String,
    logprobs: Vec<(u32, TokenLogprob)>,
}

impl Emitter {
    #[inline]
    fn emit<S: EventSink>(&mut self, out: &mut S, kind: &'static str, body: &str) {
        out.event(kind, self.seq, body);
        self.seq += 1;
    }

    /// Sends one content delta of `item` (the hot path: no allocation but the
    /// event's own); a message's delta carries (and its item keeps) the held logprobs.
    #[inline]
    fn delta<S: EventSink>(&mut self, item: &mut Item, delta: &str, out: &mut S) {
        item.emitted += delta.len();
        if let Some(kind) = item.kind.events().delta {
            self.body.clear();
            wire::delta_body(&mut self.body, item, delta, &self.logprobs, &self.vocab);
            if let Kind::Message { .. } = item.kind {
                item.logprobs.append(&mut self.logprobs);
            }
            out.event(kind, self.seq, &self.body);
            self.seq += 1;
        }
        self.logprobs.clear();
    }
}

/// A response being streamed.
#[derive(Debug, Clone)]
pub struct ResponseStream {
    cfg: ResponseConfig,
    vocab: Arc<Vocab>,
    parser: Parser,
    response_id: String,
    ids: IdGen,
    em: Emitter,
    phase: Phase,
    next_index: u64,
    /// The item whose message is being read.
    open: Option<Item>,
    /// The server-run call waiting for its output.
    pending: Option<Item>,
    /// A function call ended the turn: `tool_output` may answer it.
    function_waiting: bool,
    /// The JSON of the done items.
    output: Vec<String>,
    output_tokens: u64,
    reasoning_tokens: u64,
    /// See [`Self::analysis_or_call_tokens`].
    analysis_or_call_tokens: u64,
    /// The completed messages not yet taken (`ResponseConfig::keep_messages`).
    kept: Vec<Message>,
    /// The page the last browser `open` went to (the url of a later `find`).
    last_url: Option<String>,
    status: Status,
    error_message: Option<String>,
}

impl ResponseStream {
    /// A stream for one response; nothing is emitted until [`Self::start`] or [`Self::feed`].
    pub fn new(vocab: Arc<Vocab>, cfg: ResponseConfig) -> Self {
        let mut ids = IdGen(cfg.id_seed.unwrap_or_else(random_seed));
        let response_id = cfg.response_id.clone().unwrap_or_else(|| ids.next("resp"));
        Self {
            parser: Parser::new(Arc::clone(&vocab), Some(Role::Assistant), false),
            em: Emitter {
                vocab: Arc::clone(&vocab),
                seq: 0,
                body: String::with_capacity(256),
                logprobs: Vec::new(),
            },
            vocab,
            cfg,
            response_id,
            ids,
            phase: Phase::New,
            next_index: 0,
            open: None,
            pending: None,
            function_waiting: false,
            output: Vec::new(),
            output_tokens: 0,
            reasoning_tokens: 0,
            analysis_or_call_tokens: 0,
            kept: Vec::new(),
            last_url: None,
            status: Status::InProgress,
            error_message: None,
        }
    }

    /// The response id.
    pub fn response_id(&self) -> &str {
        &self.response_id
    }

    /// Whether a terminal event was emitted.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Whether a server-run call (MCP, python, browser) waits for [`Self::tool_output`].
    pub fn awaiting_tool_output(&self) -> bool {
        self.pending.is_some()
    }

    /// The server-run call (MCP, python, browser) waiting for [`Self::tool_output`],
    /// if any. A function call the client runs is not one: it ends the response.
    pub fn pending_call(&self) -> Option<PendingCall<'_>> {
        let item = self.pending.as_ref()?;
        let mut call = PendingCall {
            kind: CallKind::Mcp,
            item_id: &item.id,
            output_index: item.output_index,
            name: None,
            server_label: None,
            arguments: &item.text,
            container_id: None,
            browser_action: None,
        };
        match &item.kind {
            Kind::Mcp { server_label, name } => {
                call.name = Some(name);
                call.server_label = Some(server_label);
            }
            Kind::CodeInterpreter { container_id } => {
                call.kind = CallKind::CodeInterpreter;
                call.container_id = Some(container_id);
            }
            Kind::WebSearch(action) => {
                call.kind = CallKind::WebSearch;
                call.browser_action = Some(action.browser_action());
            }
            // Only server-run calls wait (`await_or_finish`).
            Kind::Reasoning | Kind::Message { .. } | Kind::Function { .. } => return None,
        }
        Some(call)
    }

    /// The parser of the current turn (read-only).
    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    #[inline]
    fn emit<S: EventSink>(&mut self, out: &mut S, kind: &'static str, body: impl AsRef<str>) {
        self.em.emit(out, kind, body.as_ref());
    }

    fn check_open(&self, what: &str) -> Result<()> {
        if self.phase == Phase::Finished {
            return Err(Error::StreamState(format!(
                "the response stream is finished: {what} after finish() is not allowed"
            )));
        }
        Ok(())
    }

    /// `{"response": …}`: the body of the response-level events.
    fn response_body(&self) -> String {
        let resp = self.response_json();
        let mut body = String::with_capacity(resp.len() + 12);
        key(&mut body, "response");
        body.push_str(&resp);
        body
    }

    /// `response.created`, `response.in_progress`, then the `mcp_list_tools` items.
    pub fn start<S: EventSink>(&mut self, out: &mut S) -> Result<()> {
        self.check_open("start()")?;
        if self.phase != Phase::New {
            return Err(Error::StreamState("start() was already called".into()));
        }
        self.phase = Phase::Streaming;
        let body = self.response_body();
        self.emit(out, "response.created", &body);
        self.emit(out, "response.in_progress", body);
        for (label, tools) in self.cfg.mcp_listings.clone() {
            let id = self.ids.next("mcpl");
            let index = self.next_index;
            self.next_index += 1;
            let added = wire::mcp_list_tools_json(&id, &label, "[]");
            self.emit(
                out,
                "response.output_item.added",
                wire::item_event(index, &added),
            );
            let r = wire::ref_event(&id, index);
            self.emit(out, "response.mcp_list_tools.in_progress", &r);
            self.emit(out, "response.mcp_list_tools.completed", r);
            let done = wire::mcp_list_tools_json(&id, &label, &tools);
            self.emit(
                out,
                "response.output_item.done",
                wire::item_event(index, &done),
            );
            self.output.push(done);
        }
        Ok(())
    }

    /// Checks, without changing anything, that [`Self::feed`] would accept these tokens.
    pub fn validate_feed(&self, tokens: &[u32]) -> Result<()> {
        self.check_open("feed()")?;
        self.parser.validate(tokens)
    }

    /// Feeds one engine step's tokens (and their logprobs, one per token).
    ///
    /// Ids are checked first: on an error nothing is consumed or emitted.
    pub fn feed<S: EventSink>(
        &mut self,
        tokens: &[u32],
        logprobs: Option<&[TokenLogprob]>,
        out: &mut S,
    ) -> Result<()> {
        self.check_open("feed()")?;
        self.parser.validate(tokens)?;
        if let Some(lp) = logprobs {
            self.validate_logprobs(tokens, lp)?;
        }
        if self.phase == Phase::New {
            self.start(out)?;
        }
        for (i, &tok) in tokens.iter().enumerate() {
            self.output_tokens += 1;
            if self.parser.state() == StreamState::Content
                && self.parser.current_header().is_some_and(|h| {
                    h.channel.as_deref() == Some("analysis") && h.recipient.is_none()
                })
            {
                self.reasoning_tokens += 1;
            }
            if let (true, Some(lp)) = (self.cfg.logprobs, logprobs) {
                self.em.logprobs.push((tok, lp[i].clone()));
            }
            let step = self.parser.process(tok)?;
            if tok < self.vocab.n_regular()
                && self
                    .parser
                    .current_header()
                    .is_some_and(|h| match h.channel.as_deref() {
                        Some("analysis") => true,
                        Some("commentary") => h.recipient.is_some(),
                        _ => false,
                    })
            {
                self.analysis_or_call_tokens += 1;
            }
            self.after_step(step, out, Status::Completed);
        }
        Ok(())
    }

    /// Regular (not special) tokens that, once read, left the parser inside a
    /// message on the `analysis` channel, or on `commentary` with a recipient (a
    /// tool call's arguments). This is how vLLM counts a gpt-oss response's
    /// `reasoning_tokens`; the engine's own usage counts only the analysis text.
    pub fn analysis_or_call_tokens(&self) -> u64 {
        self.analysis_or_call_tokens
    }

    /// The messages completed since the last call, in order, when the stream
    /// keeps them (`ResponseConfig::keep_messages`); else none. A message cut by
    /// `finish` is among them (the parser closed it at end of stream).
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.kept)
    }

    /// One entry per token, numbers that are log probabilities, known alternative ids.
    ///
    /// A log probability is a number <= 0 (`-inf` included: probability 0); NaN,
    /// a positive number and `+inf` are refused, for the sampled token and for
    /// every alternative.
    fn validate_logprobs(&self, tokens: &[u32], lps: &[TokenLogprob]) -> Result<()> {
        if lps.len() != tokens.len() {
            return Err(Error::InvalidRequest(format!(
                "{} logprobs for {} tokens: give one per token",
                lps.len(),
                tokens.len()
            )));
        }
        let bad_number = |where_: String, v: f64| {
            let mut shown = String::new();
            if !crate::json::push_finite_f64(&mut shown, v) {
                shown = if v.is_nan() { "NaN" } else { "+inf" }.to_string();
            }
            Error::InvalidRequest(format!(
                "{where_} is {shown}: a log probability is a number <= 0 or -inf"
            ))
        };
        // `!(v <= 0.0)` is true for NaN too.
        let is_logprob = |v: f64| v <= 0.0;
        for (i, lp) in lps.iter().enumerate() {
            if !is_logprob(lp.logprob) {
                return Err(bad_number(format!("logprobs[{i}]"), lp.logprob));
            }
            for (j, &(id, v)) in lp.top.iter().enumerate() {
                if !is_logprob(v) {
                    return Err(bad_number(
                        format!("logprobs[{i}] alternative {j} (token {id})"),
                        v,
                    ));
                }
                if !self.vocab.contains(id) {
                    return Err(Error::InvalidRequest(format!(
                        "logprobs[{i}] names alternative token id {id}, which is not in the vocabulary"
                    )));
                }
            }
        }
        Ok(())
    }

    /// What one parser step means for the items. `status`: how a message that
    /// completes here closes (`incomplete` when the response was cut).
    fn after_step<S: EventSink>(&mut self, step: Step, out: &mut S, status: Status) {
        if step.header_done {
            if let Some(h) = self.parser.current_header().cloned() {
                self.open_item(&h, out);
            }
        }
        if step.delta {
            let delta = self.parser.last_content_delta().unwrap_or_default();
            if let Some(item) = self.open.as_mut() {
                self.em.delta(item, delta, out);
            }
        }
        if step.message_done {
            self.message_done(out, status);
        }
    }

    /// A new item for a message whose header is complete: `output_item.added`,
    /// its content part or its `in_progress` event (a browser call: later).
    fn open_item<S: EventSink>(&mut self, header: &Header, out: &mut S) {
        if self.pending.is_some() {
            // The model went on without the tool result: that call gets none.
            self.complete_pending(
                ToolResult::Skipped("the model continued before the tool result arrived"),
                out,
            );
        }
        self.function_waiting = false;
        self.em.logprobs.clear();
        let route = route_with_tools(header, &self.cfg.tools);
        let item = Item::new(route, self.next_index, &mut self.ids, &self.cfg.tools);
        self.next_index += 1;
        if item.kind.added_at_header() {
            self.announce(&item, out);
        }
        self.open = Some(item);
    }

    /// `output_item.added`, then the empty content part or the call's `in_progress`.
    fn announce<S: EventSink>(&mut self, item: &Item, out: &mut S) {
        let (id, idx) = (&item.id, item.output_index);
        let added = wire::item_json(item, Status::InProgress, true, &self.vocab);
        self.emit(
            out,
            "response.output_item.added",
            wire::item_event(idx, &added),
        );
        if item.kind.has_part() {
            let part = wire::empty_part(&item.kind);
            self.emit(
                out,
                "response.content_part.added",
                wire::part_event(id, idx, part),
            );
        }
        if let Some(kind) = item.kind.events().in_progress {
            self.emit(out, kind, wire::ref_event(id, idx));
        }
    }

    /// The parser completed a message: the open item gets its text and its done
    /// events; a server-run call then waits for its output.
    fn message_done<S: EventSink>(&mut self, out: &mut S, status: Status) {
        let Some(msg) = self.parser.pop_message() else {
            return;
        };
        if self.cfg.keep_messages {
            self.kept.push(msg.clone());
        }
        if self.open.is_none() {
            // A message the lenient parser built without a header (stray text).
            self.open_item(&msg.header, out);
        }
        let Some(mut item) = self.open.take() else {
            return;
        };
        // The deltas spelled a prefix of the content; an undecodable tail
        // (U+FFFD at end of stream) is sent as a last delta.
        if let Some(tail) = msg.content.get(item.emitted..).filter(|t| !t.is_empty()) {
            self.em.delta(&mut item, tail, out);
        }
        item.text = msg.content;
        item.kind.resolve(&item.text, &mut self.last_url);
        let (id, idx) = (item.id.clone(), item.output_index);
        if !item.kind.added_at_header() {
            self.announce(&item, out);
        }
        if let Some(kind) = item.kind.events().text_done {
            self.emit(out, kind, wire::text_done_body(&item, &self.vocab));
        }
        if item.kind.has_part() {
            let part = wire::part_json(&item, &self.vocab);
            self.emit(
                out,
                "response.content_part.done",
                wire::part_event(&id, idx, &part),
            );
        }
        if !item.kind.is_server_run() {
            self.finish_item(&item, status, out);
            if let Kind::Function { .. } = item.kind {
                // The client runs it; it may send the result with `tool_output`.
                self.function_waiting = status == Status::Completed;
            }
        } else if status == Status::Completed {
            if let Some(kind) = item.kind.events().running {
                self.emit(out, kind, wire::ref_event(&id, idx));
            }
            self.pending = Some(item);
        } else {
            self.finish_item(&item, status, out);
        }
    }

    fn finish_item<S: EventSink>(&mut self, item: &Item, status: Status, out: &mut S) {
        let done = wire::item_json(item, status, false, &self.vocab);
        self.emit(
            out,
            "response.output_item.done",
            wire::item_event(item.output_index, &done),
        );
        self.output.push(done);
    }

    /// The result of the server-run call that ended the turn; the next tokens
    /// start a new completion (`<|start|>assistant` is in its prompt).
    pub fn tool_output<S: EventSink>(
        &mut self,
        output: Option<&str>,
        error: Option<&str>,
        out: &mut S,
    ) -> Result<()> {
        self.check_open("tool_output()")?;
        if self.pending.is_none() && !self.function_waiting {
            return Err(Error::StreamState(
                "tool_output() has no call to answer: no MCP, python, browser or function call \
                 is waiting for a result"
                    .into(),
            ));
        }
        let result = match (output, error) {
            (_, Some(e)) => ToolResult::Error(e),
            (Some(o), None) => ToolResult::Output(o),
            (None, None) => ToolResult::Output(""),
        };
        self.complete_pending(result, out);
        // Tokens the model wrote after the call in the same completion: this
        // completion ends here, so whatever its parser holds becomes items now
        // (after the answered call), before the next completion's parser starts.
        let step = self.parser.process_eos()?;
        self.after_step(step, out, Status::Completed);
        self.complete_pending(
            ToolResult::Skipped("a second call in the same completion was not run"),
            out,
        );
        self.function_waiting = false;
        self.parser = Parser::new(Arc::clone(&self.vocab), Some(Role::Assistant), false);
        Ok(())
    }

    /// Closes the waiting call, if any, with its result.
    fn complete_pending<S: EventSink>(&mut self, result: ToolResult<'_>, out: &mut S) {
        let Some(mut item) = self.pending.take() else {
            return;
        };
        let (id, idx) = (item.id.as_str(), item.output_index);
        let failed_event = item.kind.events().failed;
        let (status, event) = match result {
            ToolResult::Missing => (Status::Incomplete, None),
            ToolResult::Output(_) => (Status::Completed, item.kind.events().completed),
            ToolResult::Error(_) => (Status::Failed, failed_event),
            ToolResult::Skipped(_) if failed_event.is_some() => (Status::Failed, failed_event),
            ToolResult::Skipped(_) => (Status::Incomplete, None),
        };
        if let Some(kind) = event {
            let body = wire::ref_event(id, idx);
            self.emit(out, kind, body);
        }
        item.result = Some(match result {
            ToolResult::Output(o) => Outcome::Output(o.to_string()),
            ToolResult::Error(e) => Outcome::Error(e.to_string()),
            // A call that has a failed event says why it failed.
            ToolResult::Skipped(why) if failed_event.is_some() => Outcome::Error(why.to_string()),
            ToolResult::Skipped(_) | ToolResult::Missing => Outcome::Missing,
        });
        self.finish_item(&item, status, out);
    }

    /// Ends the response: closes what is open and emits the terminal event.
    pub fn finish<S: EventSink>(&mut self, reason: FinishReason, out: &mut S) -> Result<()> {
        self.check_open("finish()")?;
        if self.phase == Phase::New {
            self.start(out)?;
        }
        let close_status = match reason {
            FinishReason::Stop => Status::Completed,
            _ => Status::Incomplete,
        };
        // The end of the stream closes the open message, and with it the open item.
        let step = self.parser.process_eos()?;
        self.after_step(step, out, close_status);
        debug_assert!(self.open.is_none(), "end of stream left an item open");
        let result = match reason {
            FinishReason::Stop => {
                ToolResult::Skipped("the response finished before the tool result arrived")
            }
            _ => ToolResult::Missing,
        };
        self.complete_pending(result, out);
        self.function_waiting = false;
        let kind = match reason {
            FinishReason::Stop => {
                self.status = Status::Completed;
                "response.completed"
            }
            FinishReason::Length => {
                self.status = Status::Incomplete;
                "response.incomplete"
            }
            FinishReason::Error(m) => {
                self.status = Status::Failed;
                self.error_message = Some(m);
                "response.failed"
            }
        };
        self.phase = Phase::Finished;
        let body = self.response_body();
        self.emit(out, kind, body);
        Ok(())
    }

    /// The final `Response` JSON (also valid mid-stream, with the items done so far).
    pub fn response_json(&self) -> String {
        let mut s = String::with_capacity(256 + self.output.iter().map(String::len).sum::<usize>());
        s.push('{');
        str_member(&mut s, "id", &self.response_id);
        s.push_str(",\"object\":\"response\",");
        key(&mut s, "created_at");
        s.push_str(&self.cfg.created_at.to_string());
        next_str_member(&mut s, "model", &self.cfg.model);
        next_str_member(&mut s, "status", self.status.as_str());
        s.push(',');
        key(&mut s, "output");
        s.push('[');
        let show_items = self.phase == Phase::Finished;
        if show_items {
            for (i, item) in self.output.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(item);
            }
        }
        s.push_str("],");
        key(&mut s, "tools");
        s.push_str(if self.cfg.tools_json.is_empty() {
            "[]"
        } else {
            &self.cfg.tools_json
        });
        s.push(',');
        key(&mut s, "error");
        match &self.error_message {
            Some(m) => {
                s.push_str("{\"code\":\"server_error\",");
                str_member(&mut s, "message", m);
                s.push('}');
            }
            None => s.push_str("null"),
        }
        s.push(',');
        key(&mut s, "incomplete_details");
        s.push_str(if self.status == Status::Incomplete {
            "{\"reason\":\"max_output_tokens\"}"
        } else {
            "null"
        });
        s.push(',');
        self.push_settings(&mut s);
        key(&mut s, "max_output_tokens");
        match self.cfg.max_output_tokens {
            Some(m) => push_u64(&mut s, m),
            None => s.push_str("null"),
        }
        s.push(',');
        key(&mut s, "usage");
        if show_items {
            s.push_str("{\"input_tokens\":");
            push_u64(&mut s, self.cfg.input_tokens);
            s.push_str(",\"input_tokens_details\":{\"cached_tokens\":");
            push_u64(&mut s, self.cfg.cached_tokens);
            s.push_str(",\"cache_write_tokens\":0},\"output_tokens\":");
            push_u64(&mut s, self.output_tokens);
            s.push_str(",\"output_tokens_details\":{\"reasoning_tokens\":");
            push_u64(&mut s, self.reasoning_tokens);
            s.push_str("},\"total_tokens\":");
            push_u64(&mut s, self.cfg.input_tokens + self.output_tokens);
            s.push('}');
        } else {
            s.push_str("null");
        }
        s.push('}');
        s
    }

    /// The request settings, each followed by a comma: the defaults of
    /// [`SETTING_DEFAULTS`] (or the given values), then the other given ones.
    fn push_settings(&self, s: &mut String) {
        let given = |k: &str| self.cfg.settings.iter().find(|(g, _)| g == k);
        for (k, default) in SETTING_DEFAULTS {
            key(s, k);
            s.push_str(given(k).map_or(default, |(_, v)| v.as_str()));
            s.push(',');
        }
        for (k, v) in &self.cfg.settings {
            if !SETTING_DEFAULTS.iter().any(|(d, _)| d == k) {
                key(s, k);
                s.push_str(v);
                s.push(',');
            }
        }
    }

    /// Ends a response whose engine was interrupted by a panic (caught by the
    /// caller, e.g. the Python binding): `response.failed` with `message`, the
    /// terminal event a client still needs.
    ///
    /// A panic may have left any of the engine's state half-updated, and the events
    /// of the call that panicked never reached the client. So this reads nothing
    /// the interrupted call may have changed except what the caller vouches for:
    /// `events_sent` events were handed out (numbered `0..events_sent`), and
    /// `items_sent` of them were `output_item.done`, whose items are the first
    /// `items_sent` of the done list (which only ever grows by appending). The
    /// event is numbered `events_sent`; the response lists those items, with the
    /// request's settings (never changed after [`Self::new`]) and the usage
    /// counted so far. An item whose `output_item.added` was handed out without
    /// its `done` is not in the output. With `events_sent == 0` the client got
    /// nothing yet: `response.created` and `response.in_progress` come first.
    /// Afterwards the stream is finished.
    pub fn fail_after_panic<S: EventSink>(
        &mut self,
        events_sent: u64,
        items_sent: usize,
        message: &str,
        out: &mut S,
    ) {
        self.output.truncate(items_sent);
        self.open = None;
        self.pending = None;
        self.function_waiting = false;
        self.em.seq = events_sent;
        if events_sent == 0 {
            self.output.clear();
            self.phase = Phase::Streaming;
            self.status = Status::InProgress;
            self.error_message = None;
            let body = self.response_body();
            self.emit(out, "response.created", &body);
            self.emit(out, "response.in_progress", body);
        }
        self.phase = Phase::Finished;
        self.status = Status::Failed;
        self.error_message = Some(message.to_string());
        let body = self.response_body();
        self.emit(out, "response.failed", body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::special::{CALL, CHANNEL, END, RETURN, START};

    use crate::test_util::{msg, text, vocab};

    fn next_turn() -> Vec<u32> {
        let mut v = vec![START];
        v.extend(text("assistant"));
        v
    }

    fn stream() -> ResponseStream {
        ResponseStream::new(
            vocab(),
            ResponseConfig {
                model: "m".into(),
                id_seed: Some(7),
                tools: vec![Tool::Mcp {
                    server_label: "github".into(),
                }],
                tools_json: "[]".into(),
                ..ResponseConfig::default()
            },
        )
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for e in events {
            // Consecutive deltas count once: their number depends on tokenization.
            if e.kind.ends_with(".delta") && out.last() == Some(&e.kind) {
                continue;
            }
            out.push(e.kind);
        }
        out
    }

    #[test]
    fn settings_replace_defaults_and_add_members() {
        let plain = stream();
        let v: serde_json::Value = serde_json::from_str(&plain.response_json()).unwrap();
        for (k, d) in SETTING_DEFAULTS {
            assert_eq!(
                v[k],
                serde_json::from_str::<serde_json::Value>(d).unwrap(),
                "{k}"
            );
        }
        let given = vec![
            ("temperature".to_string(), "0.25".to_string()),
            ("tool_choice".to_string(), "\"none\"".to_string()),
            ("user".to_string(), "\"u1\"".to_string()),
        ];
        let s = ResponseStream::new(
            vocab(),
            ResponseConfig {
                settings: given.clone(),
                ..ResponseConfig::default()
            },
        );
        let v: serde_json::Value = serde_json::from_str(&s.response_json()).unwrap();
        for (k, json) in &given {
            assert_eq!(
                v[k],
                serde_json::from_str::<serde_json::Value>(json).unwrap(),
                "{k}"
            );
        }
        assert_eq!(v["top_p"], serde_json::Value::Null); // a default not given stays
        let keys = v.as_object().unwrap().len();
        assert_eq!(keys, ENGINE_KEYS.len() + SETTING_DEFAULTS.len() + 1); // one member each
    }

    /// `first`, then a new turn whose message is `second`, fed in one step
    /// and finished with `stop`.
    fn two_messages(first: Vec<u32>, second: &[u32]) -> (ResponseStream, Vec<Event>) {
        let mut s = stream();
        let mut ev = Vec::new();
        let mut toks = first;
        toks.extend(next_turn());
        toks.extend_from_slice(second);
        s.feed(&toks, None, &mut ev).unwrap();
        s.finish(FinishReason::Stop, &mut ev).unwrap();
        (s, ev)
    }

    #[test]
    fn reasoning_then_final_answer() {
        let (_, ev) = two_messages(msg("analysis", "think", END), &msg("final", "Hi!", RETURN));
        assert_eq!(
            kinds(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let seqs: Vec<u64> = ev.iter().map(|e| e.sequence_number).collect();
        assert_eq!(seqs, (0..ev.len() as u64).collect::<Vec<_>>());
        let last: serde_json::Value = serde_json::from_str(&ev.last().unwrap().to_json()).unwrap();
        let out = &last["response"]["output"];
        assert_eq!(out[0]["content"][0]["text"], "think");
        assert_eq!(out[1]["content"][0]["text"], "Hi!");
        assert_eq!(out[1]["phase"], "final_answer");
        // Reasoning tokens: the 5 content tokens of "think" and its <|end|>.
        assert_eq!(
            last["response"]["usage"]["output_tokens_details"]["reasoning_tokens"],
            6
        );
        let fed = msg("analysis", "think", END).len()
            + next_turn().len()
            + msg("final", "Hi!", RETURN).len();
        assert_eq!(last["response"]["usage"]["output_tokens"], fed);
    }

    #[test]
    fn empty_message_gets_its_whole_lifecycle() {
        let mut s = stream();
        let mut ev = Vec::new();
        s.feed(&msg("final", "", RETURN), None, &mut ev).unwrap();
        let k = kinds(&ev);
        assert!(k.contains(&"response.output_text.done"));
        assert!(!k.contains(&"response.output_text.delta"));
        assert_eq!(
            k.iter()
                .filter(|k| **k == "response.output_item.done")
                .count(),
            1
        );
    }

    #[test]
    fn mcp_call_waits_for_its_result() {
        let mut s = stream();
        let mut ev = Vec::new();
        s.feed(
            &msg("commentary to=github.search", "{}", CALL),
            None,
            &mut ev,
        )
        .unwrap();
        assert!(s.awaiting_tool_output());
        assert_eq!(ev.last().unwrap().kind, "response.mcp_call_arguments.done");
        let mut ev2 = Vec::new();
        s.tool_output(None, Some("boom"), &mut ev2).unwrap();
        assert_eq!(
            kinds(&ev2),
            ["response.mcp_call.failed", "response.output_item.done"]
        );
        let done: serde_json::Value = serde_json::from_str(&ev2[1].to_json()).unwrap();
        assert_eq!(done["item"]["status"], "failed");
        assert_eq!(done["item"]["error"]["content"][0]["text"], "boom");
        // No call waiting any more.
        assert!(matches!(
            s.tool_output(Some("x"), None, &mut ev2),
            Err(Error::StreamState(_))
        ));
    }

    #[test]
    fn pending_call_says_what_to_run() {
        let mut s = ResponseStream::new(
            vocab(),
            ResponseConfig {
                id_seed: Some(3),
                tools: vec![
                    Tool::Mcp {
                        server_label: "github".into(),
                    },
                    Tool::CodeInterpreter {
                        container_id: Some("cntr_1".into()),
                    },
                    Tool::Function { name: "f".into() },
                ],
                ..ResponseConfig::default()
            },
        );
        let mut ev = Vec::new();
        assert_eq!(s.pending_call(), None);
        s.feed(
            &msg("commentary to=github.search", "{\"q\":1}", CALL),
            None,
            &mut ev,
        )
        .unwrap();
        let added: serde_json::Value = serde_json::from_str(&ev[2].to_json()).unwrap();
        let call = s.pending_call().unwrap();
        assert_eq!(
            call,
            PendingCall {
                kind: CallKind::Mcp,
                item_id: added["item"]["id"].as_str().unwrap(),
                output_index: 0,
                name: Some("search"),
                server_label: Some("github"),
                arguments: "{\"q\":1}",
                container_id: None,
                browser_action: None,
            }
        );
        assert_eq!(call.kind.as_str(), "mcp");
        s.tool_output(Some("ok"), None, &mut ev).unwrap();
        assert_eq!(s.pending_call(), None);

        s.feed(&msg("analysis to=python", "print(1)", CALL), None, &mut ev)
            .unwrap();
        let call = s.pending_call().unwrap();
        assert_eq!(call.kind, CallKind::CodeInterpreter);
        assert_eq!((call.arguments, call.output_index), ("print(1)", 1));
        assert_eq!(call.container_id, Some("cntr_1"));
        assert_eq!((call.name, call.server_label), (None, None));
        s.tool_output(Some("1"), None, &mut ev).unwrap();

        s.feed(
            &msg("analysis to=browser.find", "{\"pattern\":\"x\"}", CALL),
            None,
            &mut ev,
        )
        .unwrap();
        let call = s.pending_call().unwrap();
        assert_eq!(call.kind, CallKind::WebSearch);
        assert_eq!(call.browser_action, Some(BrowserAction::Find));
        assert_eq!(call.arguments, "{\"pattern\":\"x\"}");
        s.tool_output(Some("found"), None, &mut ev).unwrap();

        // A function call is the client's: it waits for no server.
        s.feed(&msg("commentary to=functions.f", "{}", CALL), None, &mut ev)
            .unwrap();
        assert_eq!(s.pending_call(), None);
        // A call cut by the end of the response never waits.
        let toks = msg("commentary to=github.search", "{}", CALL);
        s.feed(&toks[..toks.len() - 1], None, &mut ev).unwrap();
        s.finish(FinishReason::Length, &mut ev).unwrap();
        assert_eq!(s.pending_call(), None);
    }

    #[test]
    fn length_closes_the_open_item_incomplete() {
        let mut s = stream();
        let mut ev = Vec::new();
        let toks = msg("final", "cut here", RETURN);
        s.feed(&toks[..toks.len() - 4], None, &mut ev).unwrap();
        s.finish(FinishReason::Length, &mut ev).unwrap();
        let last: serde_json::Value = serde_json::from_str(&ev.last().unwrap().to_json()).unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "cut h");
    }

    #[test]
    fn nothing_after_finish_and_bad_ids_emit_nothing() {
        let mut s = stream();
        let mut ev = Vec::new();
        assert!(matches!(
            s.feed(&[5, 999_999], None, &mut ev),
            Err(Error::InvalidToken { .. })
        ));
        assert!(ev.is_empty());
        s.finish(FinishReason::Error("x".into()), &mut ev).unwrap();
        let n = ev.len();
        assert!(matches!(
            s.feed(&[5], None, &mut ev),
            Err(Error::StreamState(_))
        ));
        assert!(matches!(
            s.finish(FinishReason::Stop, &mut ev),
            Err(Error::StreamState(_))
        ));
        assert_eq!(ev.len(), n);
        assert_eq!(ev.last().unwrap().kind, "response.failed");
    }

    /// The output items of a finished stream as `(type, text)`: the text a
    /// message, reasoning or call carries.
    fn items(s: &ResponseStream) -> Vec<(String, String)> {
        let r: serde_json::Value = serde_json::from_str(&s.response_json()).unwrap();
        r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let text = match i["type"].as_str().unwrap() {
                    "message" | "reasoning" => i["content"][0]["text"].as_str(),
                    _ => i["arguments"].as_str(),
                };
                (
                    i["type"].as_str().unwrap().to_string(),
                    text.unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn text_after_a_call_in_the_same_completion_survives_tool_output() {
        let mut s = stream();
        let mut ev = Vec::new();
        let mut toks = msg("commentary to=github.search", "{}", CALL);
        toks.extend(text("Hello there"));
        s.feed(&toks, None, &mut ev).unwrap();
        s.tool_output(Some("r"), None, &mut ev).unwrap();
        s.finish(FinishReason::Stop, &mut ev).unwrap();
        assert_eq!(
            items(&s),
            [
                ("mcp_call".to_string(), "{}".to_string()),
                ("message".to_string(), "Hello there".to_string())
            ]
        );
    }

    #[test]
    fn plain_text_without_header_or_stop_token_is_a_message() {
        let mut s = stream();
        let mut ev = Vec::new();
        s.feed(&text("Hello world"), None, &mut ev).unwrap();
        s.finish(FinishReason::Stop, &mut ev).unwrap();
        assert_eq!(
            items(&s),
            [("message".to_string(), "Hello world".to_string())]
        );
        // A cut recipient is a header, not text: nothing to show.
        let mut s = stream();
        s.feed(&text(" to=functions.get"), None, &mut ev).unwrap();
        s.finish(FinishReason::Length, &mut ev).unwrap();
        assert_eq!(items(&s), []);
    }

    #[test]
    fn answer_written_into_a_later_header_is_kept_without_markup() {
        let mut header = vec![CHANNEL];
        header.extend(text("final {\"answer\": \"hi\"}"));
        header.push(RETURN);
        let (s, _) = two_messages(msg("analysis", "x", END), &header);
        assert_eq!(
            items(&s),
            [
                ("reasoning".to_string(), "x".to_string()),
                ("message".to_string(), "{\"answer\": \"hi\"}".to_string())
            ]
        );
        let kinds = s
            .parser()
            .recoveries()
            .iter()
            .map(|r| r.kind)
            .collect::<Vec<_>>();
        assert_eq!(kinds, [crate::message::RecoveryKind::TextInHeader]);
    }
}
