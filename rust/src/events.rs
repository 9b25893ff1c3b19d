//! The Responses event engine: Harmony tokens in, Responses streaming events out.
//!
//! One [`ResponseStream`] per response. It owns a lenient [`Parser`], routes each
//! message ([`crate::router`]), gives every item its whole lifecycle (also with
//! no delta), numbers events, and keeps the done items so the final `Response`
//! is exactly what was streamed. Events are written as JSON once, when they are
//! made; `sequence_number` is appended at write time so callers may renumber.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::json::{key, push_f64, push_opt_str, push_str, push_u64};
use crate::message::{Header, Role};
use crate::parser::{Parser, StreamState};
use crate::router::{route_with_tools, BrowserAction, Route, Tool};
use crate::vocab::Vocab;

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
        write_event(out, self.kind, sequence_number, &self.body, false);
    }

    /// The event's JSON with its own sequence number.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(self.sequence_number, &mut s);
        s
    }

    /// Appends `event: TYPE\ndata: JSON\n\n`.
    pub fn write_sse(&self, sequence_number: u64, out: &mut String) {
        write_event(out, self.kind, sequence_number, &self.body, true);
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
        write_event(self, kind, sequence_number, body, true);
    }
}

/// Writes one event as JSON, or as an SSE block when `sse`.
#[inline]
fn write_event(out: &mut String, kind: &str, sequence_number: u64, body: &str, sse: bool) {
    out.reserve(body.len() + 2 * kind.len() + 48);
    if sse {
        out.push_str("event: ");
        out.push_str(kind);
        out.push_str("\ndata: ");
    }
    out.push_str("{\"type\":\"");
    out.push_str(kind);
    out.push('"');
    if !body.is_empty() {
        out.push(',');
        out.push_str(body);
    }
    out.push_str(",\"sequence_number\":");
    push_u64(out, sequence_number);
    out.push('}');
    if sse {
        out.push_str("\n\n");
    }
}

/// The log probability of one sampled token, with its top alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// Log probability of the sampled token.
    pub logprob: f64,
    /// `(token id, log probability)` of the top alternatives.
    pub top: Vec<(u32, f64)>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    New,
    Streaming,
    Finished,
}

#[derive(Debug, Clone)]
struct Item {
    route: Route,
    id: String,
    call_id: String,
    output_index: u64,
    /// The item's text: set from the parser's message when it completes.
    text: String,
    /// Bytes of text already sent as deltas.
    emitted: usize,
    logprobs: Vec<(u32, TokenLogprob)>,
    container_id: String,
    result: Option<Outcome>,
}

/// The result a server-run call got.
#[derive(Debug, Clone)]
enum Outcome {
    Output(String),
    Error(String),
    /// No result ever came (the item closes `incomplete`).
    Missing,
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

/// splitmix64: ids that look random and never repeat within a stream.
#[derive(Debug, Clone)]
struct IdGen(u64);

impl IdGen {
    fn next(&mut self, prefix: &str) -> String {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        format!("{prefix}_{z:016x}{:08x}", (self.0 >> 32) as u32)
    }
}

fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A response being streamed.
#[derive(Debug, Clone)]
pub struct ResponseStream {
    cfg: ResponseConfig,
    vocab: Arc<Vocab>,
    parser: Parser,
    response_id: String,
    ids: IdGen,
    seq: u64,
    phase: Phase,
    next_index: u64,
    open: Option<Item>,
    pending: Option<Item>,
    function_waiting: bool,
    output: Vec<String>,
    output_tokens: u64,
    reasoning_tokens: u64,
    pending_logprobs: Vec<(u32, TokenLogprob)>,
    last_url: Option<String>,
    body: String,
    status: &'static str,
    error_message: Option<String>,
}

impl ResponseStream {
    /// A stream for one response; nothing is emitted until [`Self::start`] or [`Self::feed`].
    pub fn new(vocab: Arc<Vocab>, cfg: ResponseConfig) -> Self {
        let mut ids = IdGen(cfg.id_seed.unwrap_or_else(random_seed));
        let response_id = cfg.response_id.clone().unwrap_or_else(|| ids.next("resp"));
        Self {
            parser: Parser::new(Arc::clone(&vocab), Some(Role::Assistant), false),
            vocab,
            cfg,
            response_id,
            ids,
            seq: 0,
            phase: Phase::New,
            next_index: 0,
            open: None,
            pending: None,
            function_waiting: false,
            output: Vec::new(),
            output_tokens: 0,
            reasoning_tokens: 0,
            pending_logprobs: Vec::new(),
            last_url: None,
            body: String::with_capacity(256),
            status: "in_progress",
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

    /// The parser of the current turn (read-only).
    pub fn parser(&self) -> &Parser {
        &self.parser
    }

    #[inline]
    fn emit<S: EventSink>(&mut self, out: &mut S, kind: &'static str, body: impl AsRef<str>) {
        out.event(kind, self.seq, body.as_ref());
        self.seq += 1;
    }

    fn check_open(&self, what: &str) -> Result<()> {
        if self.phase == Phase::Finished {
            return Err(Error::StreamState(format!(
                "the response stream is finished: {what} after finish() is not allowed"
            )));
        }
        Ok(())
    }

    /// `response.created`, `response.in_progress`, then the `mcp_list_tools` items.
    pub fn start<S: EventSink>(&mut self, out: &mut S) -> Result<()> {
        self.check_open("start()")?;
        if self.phase != Phase::New {
            return Err(Error::StreamState("start() was already called".into()));
        }
        self.phase = Phase::Streaming;
        let resp = self.response_json();
        let mut body = String::with_capacity(resp.len() + 12);
        key(&mut body, "response");
        body.push_str(&resp);
        self.emit(out, "response.created", &body);
        self.emit(out, "response.in_progress", body);
        for (label, tools) in self.cfg.mcp_listings.clone() {
            let id = self.ids.next("mcpl");
            let index = self.next_index;
            self.next_index += 1;
            let item = |tools: &str| {
                let mut s = String::from("{");
                key(&mut s, "id");
                push_str(&mut s, &id);
                s.push_str(",\"type\":\"mcp_list_tools\",");
                key(&mut s, "server_label");
                push_str(&mut s, &label);
                s.push(',');
                key(&mut s, "tools");
                s.push_str(tools);
                s.push('}');
                s
            };
            let added = item("[]");
            self.emit(out, "response.output_item.added", item_event(index, &added));
            self.emit(
                out,
                "response.mcp_list_tools.in_progress",
                ref_event(&id, index),
            );
            self.emit(
                out,
                "response.mcp_list_tools.completed",
                ref_event(&id, index),
            );
            let done = item(&tools);
            self.emit(out, "response.output_item.done", item_event(index, &done));
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
                self.pending_logprobs.push((tok, lp[i].clone()));
            }
            let step = self.parser.process(tok)?;
            self.after_step(step, out, "completed");
        }
        Ok(())
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

    fn after_step<S: EventSink>(
        &mut self,
        step: crate::parser::Step,
        out: &mut S,
        status: &'static str,
    ) {
        if step.header_done {
            if let Some(h) = self.parser.current_header().cloned() {
                self.open_item(&h, out);
            }
        }
        if step.delta {
            let delta = self.parser.last_content_delta().unwrap_or_default();
            if let Some(item) = self.open.as_mut() {
                write_delta(
                    item,
                    delta,
                    &mut self.body,
                    &mut self.seq,
                    &mut self.pending_logprobs,
                    &self.vocab,
                    out,
                );
            }
        }
        if step.message_done {
            self.message_done(out, status);
        }
    }

    fn open_item<S: EventSink>(&mut self, header: &Header, out: &mut S) {
        if self.pending.is_some() {
            // The model went on without the tool result: that call gets none.
            self.fail_pending(
                out,
                ToolResult::Skipped("the model continued before the tool result arrived"),
            );
        }
        self.function_waiting = false;
        self.pending_logprobs.clear();
        let route = route_with_tools(header, &self.cfg.tools);
        let prefix = match &route {
            Route::Reasoning => "rs",
            Route::Message { .. } => "msg",
            Route::Function { .. } => "fc",
            Route::Mcp { .. } => "mcp",
            Route::CodeInterpreter => "ci",
            Route::WebSearch(_) => "ws",
        };
        let id = self.ids.next(prefix);
        let call_id = if matches!(route, Route::Function { .. }) {
            self.ids.next("call")
        } else {
            String::new()
        };
        let container_id = if matches!(route, Route::CodeInterpreter) {
            self.cfg
                .tools
                .iter()
                .find_map(|t| match t {
                    Tool::CodeInterpreter { container_id } => container_id.clone(),
                    _ => None,
                })
                .unwrap_or_else(|| self.ids.next("cntr"))
        } else {
            String::new()
        };
        let item = Item {
            route,
            id,
            call_id,
            output_index: self.next_index,
            text: String::new(),
            emitted: 0,
            logprobs: Vec::new(),
            container_id,
            result: None,
        };
        self.next_index += 1;
        let (idx, id) = (item.output_index, item.id.clone());
        match &item.route {
            Route::WebSearch(_) => {} // the action is known only at the end of the call
            route => {
                let added = self.item_json(&item, "in_progress", true);
                self.emit(out, "response.output_item.added", item_event(idx, &added));
                match route {
                    Route::Reasoning => self.emit(
                        out,
                        "response.content_part.added",
                        part_event(&id, idx, "{\"type\":\"reasoning_text\",\"text\":\"\"}"),
                    ),
                    Route::Message { .. } => self.emit(
                        out,
                        "response.content_part.added",
                        part_event(
                            &id,
                            idx,
                            "{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],\"logprobs\":[]}",
                        ),
                    ),
                    Route::Mcp { .. } => {
                        self.emit(out, "response.mcp_call.in_progress", ref_event(&id, idx))
                    }
                    Route::CodeInterpreter => self.emit(
                        out,
                        "response.code_interpreter_call.in_progress",
                        ref_event(&id, idx),
                    ),
                    _ => {}
                }
            }
        }
        self.open = Some(item);
    }

    fn message_done<S: EventSink>(&mut self, out: &mut S, status: &'static str) {
        let Some(msg) = self.parser.pop_message() else {
            return;
        };
        if self.open.is_none() {
            // A message the lenient parser built without a header (stray text).
            self.open_item(&msg.header, out);
        }
        if let Some(item) = self.open.as_mut() {
            // The deltas spelled a prefix of the content; an undecodable tail
            // (U+FFFD at end of stream) is sent as a last delta.
            if let Some(tail) = msg.content.get(item.emitted..).filter(|t| !t.is_empty()) {
                write_delta(
                    item,
                    tail,
                    &mut self.body,
                    &mut self.seq,
                    &mut self.pending_logprobs,
                    &self.vocab,
                    out,
                );
            }
        }
        let Some(mut item) = self.open.take() else {
            return;
        };
        item.text = msg.content;
        let (id, idx) = (item.id.clone(), item.output_index);
        match &item.route {
            Route::Reasoning | Route::Message { .. } => {
                let is_msg = matches!(item.route, Route::Message { .. });
                let mut body = String::from("\"content_index\":0,");
                key(&mut body, "item_id");
                push_str(&mut body, &id);
                if is_msg {
                    body.push(',');
                    key(&mut body, "logprobs");
                    write_logprobs(&self.vocab, &item.logprobs, false, &mut body);
                }
                body.push(',');
                key(&mut body, "output_index");
                push_u64(&mut body, idx);
                body.push(',');
                key(&mut body, "text");
                push_str(&mut body, &item.text);
                let kind = if is_msg {
                    "response.output_text.done"
                } else {
                    "response.reasoning_text.done"
                };
                self.emit(out, kind, body);
                let part = self.part_json(&item);
                self.emit(
                    out,
                    "response.content_part.done",
                    part_event(&id, idx, &part),
                );
                self.finish_item(item, status, out);
            }
            Route::Function { name } => {
                let body = text_done_body("arguments", &item.text, &id, idx, Some(name));
                self.emit(out, "response.function_call_arguments.done", body);
                self.finish_item(item, status, out);
                self.function_waiting = status == "completed";
            }
            Route::Mcp { .. } => {
                let body = text_done_body("arguments", &item.text, &id, idx, None);
                self.emit(out, "response.mcp_call_arguments.done", body);
                self.await_or_finish(item, status, out);
            }
            Route::CodeInterpreter => {
                let body = text_done_body("code", &item.text, &id, idx, None);
                self.emit(out, "response.code_interpreter_call_code.done", body);
                if status == "completed" {
                    self.emit(
                        out,
                        "response.code_interpreter_call.interpreting",
                        ref_event(&id, idx),
                    );
                }
                self.await_or_finish(item, status, out);
            }
            Route::WebSearch(_) => {
                let added = self.item_json(&item, "in_progress", true);
                self.emit(out, "response.output_item.added", item_event(idx, &added));
                self.emit(
                    out,
                    "response.web_search_call.in_progress",
                    ref_event(&id, idx),
                );
                if status == "completed" {
                    self.emit(
                        out,
                        "response.web_search_call.searching",
                        ref_event(&id, idx),
                    );
                }
                self.await_or_finish(item, status, out);
            }
        }
    }

    fn await_or_finish<S: EventSink>(&mut self, item: Item, status: &'static str, out: &mut S) {
        if status == "completed" {
            self.pending = Some(item);
        } else {
            self.finish_item(item, status, out);
        }
    }

    fn finish_item<S: EventSink>(&mut self, item: Item, status: &'static str, out: &mut S) {
        let done = self.item_json(&item, status, false);
        self.emit(
            out,
            "response.output_item.done",
            item_event(item.output_index, &done),
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
        self.after_step(step, out, "completed");
        if self.pending.is_some() {
            self.fail_pending(
                out,
                ToolResult::Skipped("a second call in the same completion was not run"),
            );
        }
        self.function_waiting = false;
        self.parser = Parser::new(Arc::clone(&self.vocab), Some(Role::Assistant), false);
        Ok(())
    }

    /// Closes a call that will never get its result.
    fn fail_pending<S: EventSink>(&mut self, out: &mut S, result: ToolResult<'static>) {
        self.complete_pending(result, out);
    }

    fn complete_pending<S: EventSink>(&mut self, result: ToolResult<'_>, out: &mut S) {
        let Some(mut item) = self.pending.take() else {
            return;
        };
        let (id, idx) = (item.id.clone(), item.output_index);
        let status = match (&item.route, &result) {
            (_, ToolResult::Missing) => "incomplete",
            (Route::CodeInterpreter | Route::WebSearch(_), ToolResult::Skipped(_)) => "incomplete",
            (Route::Mcp { .. }, ToolResult::Output(_)) => {
                self.emit(out, "response.mcp_call.completed", ref_event(&id, idx));
                "completed"
            }
            (Route::Mcp { .. }, _) => {
                self.emit(out, "response.mcp_call.failed", ref_event(&id, idx));
                "failed"
            }
            (Route::CodeInterpreter, ToolResult::Output(_)) => {
                self.emit(
                    out,
                    "response.code_interpreter_call.completed",
                    ref_event(&id, idx),
                );
                "completed"
            }
            (Route::WebSearch(_), ToolResult::Output(_)) => {
                self.emit(
                    out,
                    "response.web_search_call.completed",
                    ref_event(&id, idx),
                );
                "completed"
            }
            (Route::CodeInterpreter | Route::WebSearch(_), ToolResult::Error(_)) => "failed",
            _ => "incomplete",
        };
        item.result = Some(match result {
            ToolResult::Output(o) => Outcome::Output(o.to_string()),
            ToolResult::Error(e) => Outcome::Error(e.to_string()),
            ToolResult::Skipped(why) if matches!(item.route, Route::Mcp { .. }) => {
                Outcome::Error(why.to_string())
            }
            ToolResult::Skipped(_) | ToolResult::Missing => Outcome::Missing,
        });
        self.finish_item(item, status, out);
    }

    /// Ends the response: closes what is open and emits the terminal event.
    pub fn finish<S: EventSink>(&mut self, reason: FinishReason, out: &mut S) -> Result<()> {
        self.check_open("finish()")?;
        if self.phase == Phase::New {
            self.start(out)?;
        }
        let close_status = match reason {
            FinishReason::Stop => "completed",
            _ => "incomplete",
        };
        let step = self.parser.process_eos()?;
        self.after_step(step, out, close_status);
        if let Some(item) = self.open.take() {
            // Not reachable (end of stream closes the open message); closed safely anyway.
            self.finish_item(item, close_status, out);
        }
        if self.pending.is_some() {
            let result = match reason {
                FinishReason::Stop => {
                    ToolResult::Skipped("the response finished before the tool result arrived")
                }
                _ => ToolResult::Missing,
            };
            self.fail_pending(out, result);
        }
        self.function_waiting = false;
        let kind = match &reason {
            FinishReason::Stop => {
                self.status = "completed";
                "response.completed"
            }
            FinishReason::Length => {
                self.status = "incomplete";
                "response.incomplete"
            }
            FinishReason::Error(m) => {
                self.status = "failed";
                self.error_message = Some(m.clone());
                "response.failed"
            }
        };
        self.phase = Phase::Finished;
        let resp = self.response_json();
        let mut body = String::with_capacity(resp.len() + 12);
        key(&mut body, "response");
        body.push_str(&resp);
        self.emit(out, kind, body);
        Ok(())
    }

    /// The final `Response` JSON (also valid mid-stream, with the items done so far).
    pub fn response_json(&self) -> String {
        let mut s = String::with_capacity(256 + self.output.iter().map(String::len).sum::<usize>());
        s.push('{');
        key(&mut s, "id");
        push_str(&mut s, &self.response_id);
        s.push_str(",\"object\":\"response\",");
        key(&mut s, "created_at");
        s.push_str(&self.cfg.created_at.to_string());
        s.push(',');
        key(&mut s, "model");
        push_str(&mut s, &self.cfg.model);
        s.push(',');
        key(&mut s, "status");
        push_str(&mut s, self.status);
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
        s.push_str("],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",");
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
                key(&mut s, "message");
                push_str(&mut s, m);
                s.push('}');
            }
            None => s.push_str("null"),
        }
        s.push(',');
        key(&mut s, "incomplete_details");
        s.push_str(if self.status == "incomplete" {
            "{\"reason\":\"max_output_tokens\"}"
        } else {
            "null"
        });
        s.push_str(",\"instructions\":null,\"metadata\":{},\"temperature\":null,\"top_p\":null,");
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

    fn part_json(&self, item: &Item) -> String {
        let mut s = String::with_capacity(item.text.len() + 64);
        match item.route {
            Route::Reasoning => {
                s.push_str("{\"type\":\"reasoning_text\",");
                key(&mut s, "text");
                push_str(&mut s, &item.text);
                s.push('}');
            }
            _ => {
                s.push_str("{\"type\":\"output_text\",");
                key(&mut s, "text");
                push_str(&mut s, &item.text);
                s.push_str(",\"annotations\":[],");
                key(&mut s, "logprobs");
                write_logprobs(&self.vocab, &item.logprobs, true, &mut s);
                s.push('}');
            }
        }
        s
    }

    fn item_json(&mut self, item: &Item, status: &str, added: bool) -> String {
        let mut s = String::with_capacity(item.text.len() + 160);
        s.push('{');
        key(&mut s, "id");
        push_str(&mut s, &item.id);
        s.push(',');
        match &item.route {
            Route::Reasoning => {
                s.push_str("\"type\":\"reasoning\",\"summary\":[],\"content\":");
                if added {
                    s.push_str("[]");
                } else {
                    s.push('[');
                    s.push_str(&self.part_json(item));
                    s.push(']');
                }
            }
            Route::Message { phase } => {
                s.push_str("\"type\":\"message\",\"role\":\"assistant\",\"content\":");
                if added {
                    s.push_str("[]");
                } else {
                    s.push('[');
                    s.push_str(&self.part_json(item));
                    s.push(']');
                }
                if let Some(p) = phase {
                    s.push_str(",\"phase\":\"");
                    s.push_str(p);
                    s.push('"');
                }
            }
            Route::Function { name } => {
                s.push_str("\"type\":\"function_call\",");
                key(&mut s, "call_id");
                push_str(&mut s, &item.call_id);
                s.push(',');
                key(&mut s, "name");
                push_str(&mut s, name);
                s.push(',');
                key(&mut s, "arguments");
                push_str(&mut s, if added { "" } else { &item.text });
            }
            Route::Mcp { server_label, name } => {
                s.push_str("\"type\":\"mcp_call\",");
                key(&mut s, "server_label");
                push_str(&mut s, server_label);
                s.push(',');
                key(&mut s, "name");
                push_str(&mut s, name);
                s.push(',');
                key(&mut s, "arguments");
                push_str(&mut s, if added { "" } else { &item.text });
                if !added {
                    if let Some(Outcome::Output(o)) = &item.result {
                        s.push(',');
                        key(&mut s, "output");
                        push_str(&mut s, o);
                    } else if let Some(Outcome::Error(e)) = &item.result {
                        s.push_str(",\"error\":{\"type\":\"mcp_tool_execution_error\",\"content\":[{\"type\":\"text\",");
                        key(&mut s, "text");
                        push_str(&mut s, e);
                        s.push_str("}]}");
                    }
                }
            }
            Route::CodeInterpreter => {
                s.push_str("\"type\":\"code_interpreter_call\",");
                key(&mut s, "code");
                push_str(&mut s, if added { "" } else { &item.text });
                s.push(',');
                key(&mut s, "container_id");
                push_str(&mut s, &item.container_id);
                s.push(',');
                key(&mut s, "outputs");
                let logs = match &item.result {
                    Some(Outcome::Output(l) | Outcome::Error(l)) => Some(l.as_str()),
                    Some(Outcome::Missing) | None => None,
                };
                match (added, logs) {
                    (false, Some(l)) => {
                        s.push_str("[{\"type\":\"logs\",");
                        key(&mut s, "logs");
                        push_str(&mut s, l);
                        s.push_str("}]");
                    }
                    _ => s.push_str("[]"),
                }
            }
            Route::WebSearch(action) => {
                s.push_str("\"type\":\"web_search_call\",");
                key(&mut s, "action");
                let a = self.web_action(*action, &item.text);
                s.push_str(&a);
            }
        }
        s.push(',');
        key(&mut s, "status");
        push_str(&mut s, status);
        s.push('}');
        s
    }

    fn web_action(&mut self, action: BrowserAction, args: &str) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_str(args).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let mut s = String::new();
        match action {
            BrowserAction::Search => {
                s.push_str("{\"type\":\"search\"");
                if let Some(q) = field("query") {
                    s.push(',');
                    key(&mut s, "query");
                    push_str(&mut s, &q);
                }
                s.push('}');
            }
            BrowserAction::Open => {
                let url = field("url").or_else(|| field("id"));
                if url.is_some() {
                    self.last_url.clone_from(&url);
                }
                s.push_str("{\"type\":\"open_page\",");
                key(&mut s, "url");
                push_opt_str(&mut s, url.as_deref());
                s.push('}');
            }
            BrowserAction::Find => {
                s.push_str("{\"type\":\"find_in_page\",");
                key(&mut s, "pattern");
                push_str(&mut s, &field("pattern").unwrap_or_default());
                s.push(',');
                key(&mut s, "url");
                let url = field("url")
                    .or_else(|| self.last_url.clone())
                    .unwrap_or_default();
                push_str(&mut s, &url);
                s.push('}');
            }
        }
        s
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
        self.seq = events_sent;
        let envelope = |s: &Self| {
            let resp = s.response_json();
            let mut body = String::with_capacity(resp.len() + 12);
            key(&mut body, "response");
            body.push_str(&resp);
            body
        };
        if events_sent == 0 {
            self.output.clear();
            self.phase = Phase::Streaming;
            self.status = "in_progress";
            self.error_message = None;
            let body = envelope(self);
            self.emit(out, "response.created", &body);
            self.emit(out, "response.in_progress", body);
        }
        self.phase = Phase::Finished;
        self.status = "failed";
        self.error_message = Some(message.to_string());
        let body = envelope(self);
        self.emit(out, "response.failed", body);
    }
}

/// Writes one content delta event (the hot path: no allocation but the event's own).
#[allow(clippy::too_many_arguments)]
fn write_delta<S: EventSink>(
    item: &mut Item,
    delta: &str,
    body: &mut String,
    seq: &mut u64,
    pending: &mut Vec<(u32, TokenLogprob)>,
    vocab: &Vocab,
    out: &mut S,
) {
    item.emitted += delta.len();
    let kind = match item.route {
        Route::Reasoning => "response.reasoning_text.delta",
        Route::Message { .. } => "response.output_text.delta",
        Route::Function { .. } => "response.function_call_arguments.delta",
        Route::Mcp { .. } => "response.mcp_call_arguments.delta",
        Route::CodeInterpreter => "response.code_interpreter_call_code.delta",
        Route::WebSearch(_) => {
            pending.clear();
            return;
        }
    };
    body.clear();
    if matches!(item.route, Route::Reasoning | Route::Message { .. }) {
        body.push_str("\"content_index\":0,");
    }
    key(body, "delta");
    push_str(body, delta);
    body.push(',');
    key(body, "item_id");
    push_str(body, &item.id);
    if matches!(item.route, Route::Message { .. }) {
        body.push(',');
        key(body, "logprobs");
        write_logprobs(vocab, pending, false, body);
        item.logprobs.append(pending);
    }
    body.push(',');
    key(body, "output_index");
    push_u64(body, item.output_index);
    out.event(kind, *seq, body);
    *seq += 1;
    pending.clear();
}

fn token_text(vocab: &Vocab, token: u32) -> String {
    String::from_utf8_lossy(vocab.token_bytes(token).unwrap_or_default()).into_owned()
}

fn write_logprobs(vocab: &Vocab, lps: &[(u32, TokenLogprob)], with_bytes: bool, out: &mut String) {
    out.push('[');
    for (i, (tok, lp)) in lps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        write_token(vocab, *tok, with_bytes, out);
        out.push(',');
        key(out, "logprob");
        push_f64(out, lp.logprob);
        out.push(',');
        key(out, "top_logprobs");
        out.push('[');
        for (j, (t, l)) in lp.top.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push('{');
            write_token(vocab, *t, with_bytes, out);
            out.push(',');
            key(out, "logprob");
            push_f64(out, *l);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
}

fn write_token(vocab: &Vocab, tok: u32, with_bytes: bool, out: &mut String) {
    key(out, "token");
    push_str(out, &token_text(vocab, tok));
    if with_bytes {
        out.push(',');
        key(out, "bytes");
        out.push('[');
        for (i, b) in vocab
            .token_bytes(tok)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.push(',');
            }
            push_u64(out, u64::from(*b));
        }
        out.push(']');
    }
}

/// `{field}`, `item_id`, (`name`), `output_index`: the body of the `.done` event
/// of a function call's arguments, an MCP call's arguments or python code.
fn text_done_body(
    field: &str,
    text: &str,
    item_id: &str,
    output_index: u64,
    name: Option<&str>,
) -> String {
    let mut s = String::with_capacity(text.len() + 96);
    key(&mut s, field);
    push_str(&mut s, text);
    s.push(',');
    key(&mut s, "item_id");
    push_str(&mut s, item_id);
    if let Some(name) = name {
        s.push(',');
        key(&mut s, "name");
        push_str(&mut s, name);
    }
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, output_index);
    s
}

fn item_event(output_index: u64, item: &str) -> String {
    let mut s = String::with_capacity(item.len() + 32);
    key(&mut s, "item");
    s.push_str(item);
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, output_index);
    s
}

fn ref_event(item_id: &str, output_index: u64) -> String {
    let mut s = String::with_capacity(64);
    key(&mut s, "item_id");
    push_str(&mut s, item_id);
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, output_index);
    s
}

fn part_event(item_id: &str, output_index: u64, part: &str) -> String {
    let mut s = String::with_capacity(part.len() + 80);
    s.push_str("\"content_index\":0,");
    key(&mut s, "item_id");
    push_str(&mut s, item_id);
    s.push(',');
    key(&mut s, "output_index");
    push_u64(&mut s, output_index);
    s.push(',');
    key(&mut s, "part");
    s.push_str(part);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::special::{CALL, CHANNEL, END, MESSAGE, RETURN, START};

    fn vocab() -> Arc<Vocab> {
        Arc::new(Vocab::from_regular_tokens((0u8..=255).map(|b| [b])).unwrap())
    }

    fn text(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    fn msg(header: &str, body: &str, stop: u32) -> Vec<u32> {
        let mut v = vec![CHANNEL];
        v.extend(text(header));
        v.push(MESSAGE);
        v.extend(text(body));
        v.push(stop);
        v
    }

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
    fn reasoning_then_final_answer() {
        let mut s = stream();
        let mut ev = Vec::new();
        let mut toks = msg("analysis", "think", END);
        toks.extend(next_turn());
        toks.extend(msg("final", "Hi!", RETURN));
        s.feed(&toks, None, &mut ev).unwrap();
        s.finish(FinishReason::Stop, &mut ev).unwrap();
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
        assert_eq!(last["response"]["usage"]["output_tokens"], toks.len());
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
        let mut s = stream();
        let mut ev = Vec::new();
        let mut toks = msg("analysis", "x", END);
        toks.extend(next_turn());
        toks.push(CHANNEL);
        toks.extend(text("final {\"answer\": \"hi\"}"));
        toks.push(RETURN);
        s.feed(&toks, None, &mut ev).unwrap();
        s.finish(FinishReason::Stop, &mut ev).unwrap();
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
