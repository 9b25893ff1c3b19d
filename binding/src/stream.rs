//! `ResponseStream` (the Responses event engine of one response), the
//! `ResponseEvent`s it emits, and `feed_batch` (one engine step for many streams).
//!
//! What each call handed out (events, finished items) is tallied here, so that
//! after a Rust panic `finish("error")` can still end the response with
//! `response.failed` numbered after it; the lock and the panic guard are `guard.rs`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};

use harmony_stream_core as core;
use harmony_stream_core::events::EventSink;
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::convert::{
    extract_tokens, int_arg, opt_text, parse_logprobs, text_arg, Given, LazyModule, JSON, TIME,
};
use crate::errors::{self, invalid_request as invalid, IntoPyResult};
use crate::guard::{self, catching, poisoned_error, Exclusive, InUse};
use crate::parser::Message;
use crate::tools::{parse_mcp_lists, parse_settings, parse_tools};
use crate::vocab::Vocab;

/// `harmony_stream._openai`: conversion to openai-python's types (optional).
static OPENAI: LazyModule = LazyModule::new("harmony_stream._openai");
/// `harmony_stream._loop`: the serving loop around a stream (`stream`, `astream`).
static LOOP: LazyModule = LazyModule::new("harmony_stream._loop");

/// One Responses streaming event.
///
/// `type`, a settable `sequence_number`, and the pydantic-style
/// `model_dump_json` / `model_dump` that servers such as vLLM call.
///
/// Frozen (no borrow flag): any thread may read it or set `sequence_number`.
#[pyclass(frozen, module = "harmony_stream._native", name = "ResponseEvent")]
pub(crate) struct ResponseEvent {
    event: core::Event,
    sequence_number: AtomicU64,
}

impl ResponseEvent {
    fn seq(&self) -> u64 {
        self.sequence_number.load(Ordering::Relaxed)
    }

    fn json(&self) -> String {
        let mut s = String::new();
        self.event.write_json(self.seq(), &mut s);
        s
    }
}

#[pymethods]
impl ResponseEvent {
    /// The event's sequence number (vLLM renumbers events; set it freely).
    #[getter]
    fn get_sequence_number(&self) -> u64 {
        self.seq()
    }

    #[setter]
    fn set_sequence_number(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = int_arg(py, value, "sequence_number", false, 0, u64::MAX.into())?;
        self.sequence_number.store(n as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The event type, e.g. `"response.output_text.delta"`.
    #[getter(r#type)]
    fn kind(&self) -> &'static str {
        self.event.kind
    }

    /// `event: TYPE\ndata: JSON\n\n` as bytes.
    fn to_sse<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut s = String::new();
        self.event.write_sse(self.seq(), &mut s);
        PyBytes::new(py, s.as_bytes())
    }

    /// The event as JSON (compact unless `indent` is given).
    #[pyo3(signature = (*, indent=None, by_alias=true))]
    fn model_dump_json(
        &self,
        py: Python<'_>,
        indent: Option<i64>,
        by_alias: bool,
    ) -> PyResult<String> {
        let _ = by_alias; // the JSON uses the wire names already
        let s = self.json();
        match indent {
            None => Ok(s),
            Some(n) => {
                let json = JSON.get(py)?;
                let obj = json.call_method1("loads", (s,))?;
                let kw = PyDict::new(py);
                kw.set_item("indent", n)?;
                kw.set_item("ensure_ascii", false)?;
                json.call_method("dumps", (obj,), Some(&kw))?.extract()
            }
        }
    }

    /// The event as a dict.
    #[pyo3(signature = (**_kwargs))]
    fn model_dump<'py>(
        &self,
        py: Python<'py>,
        _kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        JSON.get(py)?.call_method1("loads", (self.json(),))
    }

    /// The event as openai-python's `ResponseStreamEvent` (needs `openai`).
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let data = self.model_dump(py, None)?;
        OPENAI.get(py)?.call_method1("to_openai_event", (data,))
    }

    /// openai-python's attribute reads (`event.delta`, `.item`, `.output_index`...):
    /// every field the event's openai-python type declares, read as that type
    /// reads it (`harmony_stream._openai.event_attribute`). Called only for names
    /// the class itself lacks, so events nobody inspects cost nothing more; a
    /// plain field (a string or an integer) is read from the JSON without pydantic.
    fn __getattr__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        if name.starts_with('_') {
            return Err(PyAttributeError::new_err(format!(
                "'ResponseEvent' object has no attribute '{name}'"
            )));
        }
        OPENAI
            .get(py)?
            .call_method1("event_attribute", (self.event.kind, self.json(), name))
    }

    fn __repr__(&self) -> String {
        let json = self.json();
        let shown: String = json.chars().take(200).collect();
        let more = if shown.len() < json.len() { "…" } else { "" };
        format!("ResponseEvent({shown}{more})")
    }
}
/// Token counts are written as JSON numbers: up to 2**53 - 1, the largest
/// integer every JSON reader (JavaScript's included) holds exactly.
pub(crate) const MAX_COUNT: i128 = (1 << 53) - 1;

/// What a stream's caller was given: events (numbered 0, 1, 2… by the engine),
/// how many of them were `output_item.done`, and whether one was terminal.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    events: u64,
    items_done: usize,
    terminal: bool,
}

impl Tally {
    fn add(&mut self, other: Self) {
        self.events += other.events;
        self.items_done += other.items_done;
        self.terminal |= other.terminal;
    }
}

/// A sink that counts what passes through it into `tally`.
struct Counted<'a, S> {
    sink: &'a mut S,
    tally: Tally,
}

impl<'a, S> Counted<'a, S> {
    fn new(sink: &'a mut S) -> Self {
        Self {
            sink,
            tally: Tally::default(),
        }
    }
}

impl<S: EventSink> EventSink for Counted<'_, S> {
    #[inline]
    fn event(&mut self, kind: &'static str, sequence_number: u64, body: &str) {
        self.tally.events += 1;
        match kind {
            "response.output_item.done" => self.tally.items_done += 1,
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.tally.terminal = true;
            }
            _ => {}
        }
        self.sink.event(kind, sequence_number, body);
    }
}

/// A stream's engine and what its caller was given.
struct Engine {
    inner: core::ResponseStream,
    /// Set when a Rust panic was caught: the engine's state cannot be trusted.
    poisoned: bool,
    /// What calls that returned normally handed out (a call that raised hands out nothing).
    sent: Tally,
    /// After a panic: the response of the `response.failed` event sent then.
    failed_response: Option<String>,
}

/// Collects events as objects (`Vec<Event>`) or as SSE text (`String`).
trait Sink: EventSink + Default + Send {}
impl<S: EventSink + Default + Send> Sink for S {}

impl Engine {
    /// Runs `f` on the engine (without the GIL when `detach`); a Rust panic poisons
    /// the engine and becomes `InternalError`. Counts what a call that returns hands out.
    ///
    /// [`guard::run`] spelled out with the tally: the per-token path, where the
    /// generic form costs ~30 instructions a call (measured with callgrind).
    fn call<S, F>(&mut self, py: Python<'_>, detach: bool, f: F) -> PyResult<S>
    where
        S: Sink,
        F: FnOnce(&mut core::ResponseStream, &mut Counted<'_, S>) -> core::Result<()> + Send,
    {
        if self.poisoned {
            return Err(poisoned_error(py, "stream"));
        }
        let mut out = S::default();
        let inner = &mut self.inner;
        let work = || {
            let mut counted = Counted::new(&mut out);
            catching(|| f(inner, &mut counted)).map(|r| r.map(|()| counted.tally))
        };
        let result = if detach { py.detach(work) } else { work() };
        match result {
            Ok(Ok(tally)) => {
                self.sent.add(tally);
                Ok(out)
            }
            Ok(Err(e)) => Err(errors::to_pyerr(py, e)),
            Err(msg) => Err(guard::panicked(py, &mut self.poisoned, msg)),
        }
    }

    /// `finish("error" | "abort")` on a poisoned engine: `response.failed`, numbered
    /// after the last event handed out, with the items whose `output_item.done` was.
    fn end_after_panic<S: Sink>(
        &mut self,
        py: Python<'_>,
        reason: &str,
        message: Option<&str>,
    ) -> PyResult<S> {
        if self.sent.terminal || !matches!(reason, "error" | "abort") {
            return Err(errors::internal(
                py,
                "this stream hit an internal error earlier and cannot be used; \
                 finish(\"error\") (once) still ends it with response.failed"
                    .into(),
            ));
        }
        let text = match message {
            Some(m) => format!("an internal error in harmony-stream cut the response short: {m}"),
            None => "an internal error in harmony-stream cut the response short".to_string(),
        };
        let mut out = S::default();
        let sent = self.sent;
        let inner = &mut self.inner;
        let result = {
            let mut counted = Counted::new(&mut out);
            catching(|| {
                inner.fail_after_panic(sent.events, sent.items_done, &text, &mut counted);
                Ok(inner.response_json())
            })
            .map(|r| r.map(|json| (json, counted.tally)))
        };
        match result {
            Ok(Ok((json, tally))) => {
                self.sent.add(tally);
                self.failed_response = Some(json);
                Ok(out)
            }
            Ok(Err(e)) => Err(errors::to_pyerr(py, e)),
            Err(msg) => Err(errors::internal(
                py,
                format!("could not end the response after an earlier internal error: {msg}"),
            )),
        }
    }
}

/// The Responses event engine for one response.
///
/// Frozen with a lock inside: a call that finds another call running on the
/// stream (another thread, or a callback from inside a call) raises
/// `StreamInUseError` at once, never waits.
#[pyclass(frozen, module = "harmony_stream._native", name = "ResponseStream")]
pub(crate) struct ResponseStream {
    engine: Exclusive<Engine>,
    /// Never changes: readable while a call runs.
    response_id: String,
}

impl InUse for Engine {
    const IN_USE: &'static str =
        "this ResponseStream is in use by another thread: a stream accepts one call at a time";
}

/// The events as a list of `ResponseEvent`s, built in place (no vector in between).
fn to_events(py: Python<'_>, events: Vec<core::Event>) -> PyResult<Py<PyList>> {
    PyList::new(
        py,
        events.into_iter().map(|e| ResponseEvent {
            sequence_number: AtomicU64::new(e.sequence_number),
            event: e,
        }),
    )
    .map(Bound::unbind)
}

fn sse_bytes(py: Python<'_>, sse: &str) -> Py<PyBytes> {
    PyBytes::new(py, sse.as_bytes()).unbind()
}

impl ResponseStream {
    fn run_feed<S: Sink>(
        &self,
        py: Python<'_>,
        token_ids: &Bound<'_, PyAny>,
        logprobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<S> {
        let mut e = self.engine.lock(py)?;
        if e.poisoned {
            return Err(poisoned_error(py, "stream"));
        }
        let parser = e.inner.parser();
        let ids = extract_tokens(py, token_ids, parser.tokens_processed(), parser.vocab())?;
        let lps = logprobs
            .map(|l| parse_logprobs(py, l, parser.vocab()))
            .transpose()?;
        // Long steps run without the GIL.
        e.call(py, ids.len() >= 256, |inner, out| {
            inner.feed(&ids, lps.as_deref(), out)
        })
    }

    /// `finish(reason, message)`, the arguments as Python gave them.
    fn run_finish<S: Sink>(
        &self,
        py: Python<'_>,
        reason: Given<'_>,
        message: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<S> {
        let reason = match &reason {
            Given::Absent => Cow::Borrowed("stop"),
            Given::Value(r) => text_arg(py, r, "reason", false)?,
        };
        let message = opt_text(py, message, "message")?.map(|m| m.into_owned());
        let Some(parsed) = core::FinishReason::from_name(&reason, message.as_deref()) else {
            return Err(invalid(
                py,
                format!(
                    "unknown finish reason {reason:?}: expected {}",
                    core::FinishReason::NAMES.join(", ")
                ),
            ));
        };
        let mut e = self.engine.lock(py)?;
        if e.poisoned {
            return e.end_after_panic(py, &reason, message.as_deref());
        }
        e.call(py, false, |inner, out| inner.finish(parsed, out))
    }

    /// `tool_output(output, error)`, the arguments as Python gave them.
    fn run_tool_output<S: Sink>(
        &self,
        py: Python<'_>,
        output: Option<&Bound<'_, PyAny>>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<S> {
        let (output, error) = (
            opt_text(py, output, "output")?,
            opt_text(py, error, "error")?,
        );
        let (output, error) = (output.as_deref(), error.as_deref());
        self.engine.lock(py)?.call(py, false, |inner, out| {
            inner.tool_output(output, error, out)
        })
    }

    fn run_start<S: Sink>(&self, py: Python<'_>) -> PyResult<S> {
        self.engine
            .lock(py)?
            .call(py, false, |inner, out| inner.start(out))
    }
}

/// One engine step for many streams in one call: `steps[i]` are the new tokens
/// of `streams[i]`. Returns each stream's SSE bytes. Every stream and id is
/// checked first (an error consumes nothing); the work runs without the GIL.
#[pyfunction]
pub(crate) fn feed_batch(
    py: Python<'_>,
    streams: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyAny>,
) -> PyResult<Vec<Py<PyBytes>>> {
    let mut cells: Vec<Bound<'_, ResponseStream>> = Vec::new();
    for (i, s) in streams.try_iter()?.enumerate() {
        let s = s?;
        let cell = s
            .cast::<ResponseStream>()
            .map_err(|_| PyTypeError::new_err(format!("streams[{i}] is not a ResponseStream")))?;
        if let Some(j) = cells.iter().position(|c| c.is(cell)) {
            return Err(errors::to_pyerr(
                py,
                core::Error::StreamState(format!(
                    "streams[{i}] is streams[{j}]: a stream may not appear twice in a batch"
                )),
            ));
        }
        cells.push(cell.clone());
    }
    let mut guards: Vec<MutexGuard<'_, Engine>> = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let engine = &cell.get().engine;
        let guard = engine
            .try_lock()
            .ok_or_else(|| errors::in_use(py, format!("streams[{i}]: {}", Engine::IN_USE)))?;
        guards.push(guard);
    }
    let mut ids: Vec<Vec<u32>> = Vec::with_capacity(guards.len());
    for (i, step) in steps.try_iter()?.enumerate() {
        let g = guards
            .get(i)
            .ok_or_else(|| invalid(py, format!("{} steps for {} streams", i + 1, guards.len())))?;
        let parser = g.inner.parser();
        ids.push(extract_tokens(
            py,
            &step?,
            parser.tokens_processed(),
            parser.vocab(),
        )?);
    }
    if ids.len() != guards.len() {
        return Err(invalid(
            py,
            format!("{} steps for {} streams", ids.len(), guards.len()),
        ));
    }
    for (i, (g, step)) in guards.iter().zip(&ids).enumerate() {
        if g.poisoned {
            return Err(errors::internal(
                py,
                format!("streams[{i}] hit an internal error earlier and cannot be used"),
            ));
        }
        // The core's check, for every stream before any is fed.
        g.inner.validate_feed(step).py_err(py)?;
    }
    let mut engines: Vec<&mut core::ResponseStream> =
        guards.iter_mut().map(|g| &mut g.inner).collect();
    // All streams write into one buffer; each gets its slice as bytes.
    let mut buf = String::with_capacity(ids.iter().map(|s| s.len() * 200 + 64).sum());
    type Outcome = Result<core::Result<(usize, usize, Tally)>, String>;
    let outs: Vec<Outcome> = py.detach(|| {
        engines
            .iter_mut()
            .zip(&ids)
            .map(|(engine, step)| {
                let start = buf.len();
                let mut counted = Counted::new(&mut buf);
                let r = catching(|| engine.feed(step, None, &mut counted));
                let tally = counted.tally;
                r.map(|r| r.map(|()| (start, buf.len(), tally)))
            })
            .collect()
    });
    let mut first_err = None;
    for r in &outs {
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert_with(|| errors::to_pyerr(py, e.clone()));
            }
            Err(msg) => {
                first_err.get_or_insert_with(|| errors::internal(py, msg.clone()));
            }
        }
    }
    if let Some(e) = first_err {
        // No stream's events of this step reach the caller: a stream that went on
        // has lost them, so every stream of the batch is poisoned (each can still
        // end with finish("error"), numbered after what its caller got).
        if outs.iter().any(Result::is_err) {
            for g in &mut guards {
                g.poisoned = true;
            }
        }
        return Err(e);
    }
    let mut result = Vec::with_capacity(outs.len());
    for (g, r) in guards.iter_mut().zip(outs) {
        if let Ok(Ok((a, b, tally))) = r {
            g.sent.add(tally);
            result.push(sse_bytes(py, buf.get(a..b).unwrap_or_default()));
        }
    }
    Ok(result)
}

#[pymethods]
impl ResponseStream {
    #[new]
    #[pyo3(signature = (
        vocab, *, tools=None, model=Given::Absent, response_id=None,
        max_output_tokens=None, logprobs=false, input_tokens=Given::Absent,
        cached_tokens=Given::Absent, created_at=None, mcp_tool_lists=None, id_seed=None,
        settings=None, keep_messages=false
    ), text_signature = "(vocab, *, tools=None, model='gpt-oss-120b', response_id=None, \
        max_output_tokens=None, logprobs=False, input_tokens=0, cached_tokens=0, created_at=None, \
        mcp_tool_lists=None, id_seed=None, settings=None, keep_messages=False)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        vocab: &Vocab,
        tools: Option<&Bound<'_, PyAny>>,
        model: Given<'_>,
        response_id: Option<&Bound<'_, PyAny>>,
        max_output_tokens: Option<&Bound<'_, PyAny>>,
        logprobs: bool,
        input_tokens: Given<'_>,
        cached_tokens: Given<'_>,
        created_at: Option<&Bound<'_, PyAny>>,
        mcp_tool_lists: Option<&Bound<'_, PyAny>>,
        id_seed: Option<&Bound<'_, PyAny>>,
        settings: Option<&Bound<'_, PyAny>>,
        keep_messages: bool,
    ) -> PyResult<Self> {
        let count = |v: Given<'_>, name: &str| -> PyResult<u64> {
            match v {
                Given::Absent => Ok(0),
                Given::Value(v) => Ok(int_arg(py, &v, name, false, 0, MAX_COUNT)? as u64),
            }
        };
        let max_output_tokens = max_output_tokens
            .map(|v| int_arg(py, v, "max_output_tokens", true, 0, MAX_COUNT).map(|n| n as u64))
            .transpose()?;
        let input_tokens = count(input_tokens, "input_tokens")?;
        let cached_tokens = count(cached_tokens, "cached_tokens")?;
        if cached_tokens > input_tokens {
            return Err(invalid(
                py,
                format!(
                    "cached_tokens ({cached_tokens}) must not be more than input_tokens \
                     ({input_tokens})"
                ),
            ));
        }
        let id_seed = id_seed
            .map(|v| int_arg(py, v, "id_seed", true, 0, u64::MAX.into()).map(|n| n as u64))
            .transpose()?;
        let created_at = match created_at {
            Some(c) => int_arg(py, c, "created_at", true, i64::MIN.into(), i64::MAX.into())? as i64,
            None => TIME.get(py)?.call_method0("time")?.extract::<f64>()? as i64,
        };
        let (tools, tools_json) = match tools {
            Some(t) => parse_tools(py, t)?,
            None => (Vec::new(), "[]".to_string()),
        };
        let mcp_listings = match mcp_tool_lists {
            Some(lists) => parse_mcp_lists(py, lists, &tools)?,
            None => Vec::new(),
        };
        let settings = match settings {
            Some(s) => parse_settings(py, s)?,
            None => Vec::new(),
        };
        let model = match &model {
            Given::Absent => "gpt-oss-120b".to_string(),
            Given::Value(m) => text_arg(py, m, "model", false)?.into_owned(),
        };
        let response_id = opt_text(py, response_id, "response_id")?.map(|r| r.into_owned());
        let cfg = core::ResponseConfig {
            response_id,
            model,
            created_at,
            max_output_tokens,
            logprobs,
            input_tokens,
            cached_tokens,
            tools,
            tools_json,
            mcp_listings,
            id_seed,
            settings,
            keep_messages,
        };
        let inner = core::ResponseStream::new(Arc::clone(&vocab.inner), cfg);
        Ok(Self {
            response_id: inner.response_id().to_string(),
            engine: Exclusive::new(Engine {
                inner,
                poisoned: false,
                sent: Tally::default(),
                failed_response: None,
            }),
        })
    }

    /// `response.created`, `response.in_progress` and the `mcp_list_tools` items.
    fn start(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let ev: Vec<core::Event> = self.run_start(py)?;
        to_events(py, ev)
    }

    /// Events for one engine step's tokens (starts the response if needed).
    #[pyo3(signature = (token_ids, logprobs=None))]
    fn feed(
        &self,
        py: Python<'_>,
        token_ids: &Bound<'_, PyAny>,
        logprobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyList>> {
        let ev: Vec<core::Event> = self.run_feed(py, token_ids, logprobs)?;
        to_events(py, ev)
    }

    /// The result of the server-run call that ended the turn.
    #[pyo3(signature = (output=None, error=None))]
    fn tool_output(
        &self,
        py: Python<'_>,
        output: Option<&Bound<'_, PyAny>>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyList>> {
        let ev: Vec<core::Event> = self.run_tool_output(py, output, error)?;
        to_events(py, ev)
    }

    /// Ends the response: `stop`, `length`, `abort` or `error` (with `message`).
    #[pyo3(signature = (reason=Given::Absent, message=None), text_signature = "(self, reason='stop', message=None)")]
    fn finish(
        &self,
        py: Python<'_>,
        reason: Given<'_>,
        message: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyList>> {
        let ev: Vec<core::Event> = self.run_finish(py, reason, message)?;
        to_events(py, ev)
    }

    /// `start()` as SSE bytes.
    fn start_sse(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let sse: String = self.run_start(py)?;
        Ok(sse_bytes(py, &sse))
    }

    /// `feed()` as one SSE `bytes`, without event objects.
    #[pyo3(signature = (token_ids, logprobs=None))]
    fn feed_sse(
        &self,
        py: Python<'_>,
        token_ids: &Bound<'_, PyAny>,
        logprobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyBytes>> {
        let sse: String = self.run_feed(py, token_ids, logprobs)?;
        Ok(sse_bytes(py, &sse))
    }

    /// `tool_output()` as SSE bytes.
    #[pyo3(signature = (output=None, error=None))]
    fn tool_output_sse(
        &self,
        py: Python<'_>,
        output: Option<&Bound<'_, PyAny>>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyBytes>> {
        let sse: String = self.run_tool_output(py, output, error)?;
        Ok(sse_bytes(py, &sse))
    }

    /// `finish()` as SSE bytes.
    #[pyo3(signature = (reason=Given::Absent, message=None), text_signature = "(self, reason='stop', message=None)")]
    fn finish_sse(
        &self,
        py: Python<'_>,
        reason: Given<'_>,
        message: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyBytes>> {
        let sse: String = self.run_finish(py, reason, message)?;
        Ok(sse_bytes(py, &sse))
    }

    /// The final response as a dict (mid-stream: status `in_progress`, no output yet).
    fn response<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.response_json(py)?;
        JSON.get(py)?.call_method1("loads", (json,))
    }

    /// The final response as openai-python's `Response` (needs `openai`).
    fn response_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let data = self.response(py)?;
        OPENAI.get(py)?.call_method1("to_openai_response", (data,))
    }

    /// The final response as JSON.
    fn response_json(&self, py: Python<'_>) -> PyResult<String> {
        let mut e = self.engine.lock(py)?;
        if e.poisoned {
            return e
                .failed_response
                .clone()
                .ok_or_else(|| poisoned_error(py, "stream"));
        }
        let e = &mut *e;
        let inner = &e.inner;
        guard::run(py, &mut e.poisoned, "stream", false, || {
            Ok(inner.response_json())
        })
    }

    #[getter]
    fn response_id(&self) -> &str {
        &self.response_id
    }

    #[getter]
    fn finished(&self, py: Python<'_>) -> PyResult<bool> {
        let e = self.engine.lock(py)?;
        Ok(if e.poisoned {
            e.sent.terminal
        } else {
            e.inner.is_finished()
        })
    }

    /// The messages completed since the last call (each once), in order; always
    /// empty unless the stream was made with `keep_messages=True`.
    fn take_messages(&self, py: Python<'_>) -> PyResult<Vec<Py<Message>>> {
        let mut e = self.engine.lock(py)?;
        if e.poisoned {
            return Ok(Vec::new());
        }
        e.inner
            .take_messages()
            .iter()
            .map(|m| Py::new(py, Message::from(m)))
            .collect()
    }

    /// Regular tokens read inside an `analysis` message or a tool call (a
    /// `commentary` message with a recipient): vLLM's count of reasoning tokens.
    #[getter]
    fn analysis_or_call_tokens(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.engine.lock(py)?.inner.analysis_or_call_tokens())
    }

    #[getter]
    fn awaiting_tool_output(&self, py: Python<'_>) -> PyResult<bool> {
        let e = self.engine.lock(py)?;
        Ok(!e.poisoned && e.inner.awaiting_tool_output())
    }

    /// The server-run call that waits for `tool_output()`, as a dict (`type`:
    /// `mcp_call` / `code_interpreter_call` / `web_search_call`, `id`,
    /// `output_index`, `arguments` as the model wrote them (the code, for python),
    /// and `name`/`server_label` for MCP, `container_id` for python), or `None`.
    #[getter]
    fn pending_call<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let e = self.engine.lock(py)?;
        if e.poisoned {
            return Ok(None);
        }
        let Some(call) = e.inner.pending_call() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        let item_type = match call.kind {
            core::CallKind::Mcp => "mcp_call",
            core::CallKind::CodeInterpreter => "code_interpreter_call",
            core::CallKind::WebSearch => "web_search_call",
        };
        d.set_item("type", item_type)?;
        d.set_item("id", call.item_id)?;
        d.set_item("output_index", call.output_index)?;
        d.set_item("arguments", call.arguments)?;
        if let Some(name) = call.name {
            d.set_item("name", name)?;
        }
        if let Some(label) = call.server_label {
            d.set_item("server_label", label)?;
        }
        if let Some(c) = call.container_id {
            d.set_item("container_id", c)?;
        }
        Ok(Some(d))
    }

    /// Test hook: panics inside Rust (after feeding `token_ids`, whose events are
    /// then lost), to prove a panic becomes `InternalError` on this stream, never
    /// aborts the process, and that `finish("error")` still ends the response.
    #[pyo3(signature = (token_ids=None))]
    fn _panic_for_tests(
        &self,
        py: Python<'_>,
        token_ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut e = self.engine.lock(py)?;
        let ids = match token_ids {
            Some(t) => {
                let parser = e.inner.parser();
                extract_tokens(py, t, parser.tokens_processed(), parser.vocab())?
            }
            None => Vec::new(),
        };
        let _: Vec<core::Event> = e.call(py, false, |inner, out| {
            if !ids.is_empty() {
                inner.feed(&ids, None, out)?;
            }
            panic!("deliberate panic for tests")
        })?;
        Ok(())
    }

    /// The serving loop's seam: the events of `outputs`, an iterator of what a
    /// generation loop makes (token-id chunks, `Tokens`, `ToolResult`, `Finish`),
    /// each applied before the next is asked for; `start()` first, `finish("stop")`
    /// when it ends unfinished. With `sse`, one SSE `bytes` per engine call (empty
    /// ones skipped). `harmony_stream._loop.stream`.
    #[pyo3(signature = (outputs, *, sse=false))]
    fn stream<'py>(
        slf: &Bound<'py, Self>,
        outputs: &Bound<'py, PyAny>,
        sse: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        LOOP.get(slf.py())?
            .call_method1("stream", (slf, outputs, sse))
    }

    /// `stream()` for an async iterator (or a plain iterable): an async iterator.
    /// `harmony_stream._loop.astream`.
    #[pyo3(signature = (outputs, *, sse=false))]
    fn astream<'py>(
        slf: &Bound<'py, Self>,
        outputs: &Bound<'py, PyAny>,
        sse: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        LOOP.get(slf.py())?
            .call_method1("astream", (slf, outputs, sse))
    }
}
