//! `ResponseStream` and `ResponseEvent`: the event engine for Python.

use std::sync::Arc;

use harmony_stream_core as core;
use harmony_stream_core::events::EventSink;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyMapping, PyString};

use crate::errors::{self, IntoPyResult};
use crate::{extract_token, extract_tokens, Vocab};

/// One Responses streaming event.
///
/// `type`, a settable `sequence_number`, and the pydantic-style
/// `model_dump_json` / `model_dump` that servers such as vLLM call.
#[pyclass(module = "harmony_stream._native", name = "ResponseEvent")]
pub struct ResponseEvent {
    event: core::Event,
    /// The event's sequence number (vLLM renumbers events; set it freely).
    #[pyo3(get, set)]
    sequence_number: u64,
}

impl ResponseEvent {
    fn json(&self) -> String {
        let mut s = String::new();
        self.event.write_json(self.sequence_number, &mut s);
        s
    }
}

#[pymethods]
impl ResponseEvent {
    /// The event type, e.g. `"response.output_text.delta"`.
    #[getter(r#type)]
    fn kind(&self) -> &'static str {
        self.event.kind
    }

    /// `event: TYPE\ndata: JSON\n\n` as bytes.
    fn to_sse<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut s = String::new();
        self.event.write_sse(self.sequence_number, &mut s);
        PyBytes::new(py, s.as_bytes())
    }

    /// The event as JSON (compact unless `indent` is given).
    #[pyo3(signature = (*, indent=None, by_alias=true))]
    fn model_dump_json(
        &self,
        py: Python<'_>,
        indent: Option<usize>,
        by_alias: bool,
    ) -> PyResult<String> {
        let _ = by_alias; // the JSON uses the wire names already
        let s = self.json();
        match indent {
            None => Ok(s),
            Some(n) => {
                let json = py.import("json")?;
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
        py.import("json")?.call_method1("loads", (self.json(),))
    }

    /// The event as openai-python's `ResponseStreamEvent` (needs `openai`).
    fn to_openai<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let data = self.model_dump(py, None)?;
        py.import("harmony_stream._openai")?
            .call_method1("to_openai_event", (data,))
    }

    fn __repr__(&self) -> String {
        let json = self.json();
        let shown: String = json.chars().take(200).collect();
        let more = if shown.len() < json.len() { "…" } else { "" };
        format!("ResponseEvent({shown}{more})")
    }
}

fn get_str(d: &Bound<'_, PyAny>, key: &str) -> PyResult<Option<String>> {
    match d.get_item(key) {
        Ok(v) if v.is_none() => Ok(None),
        Ok(v) => v
            .extract()
            .map(Some)
            .map_err(|_| PyTypeError::new_err(format!("tool field {key:?} must be a string"))),
        Err(_) => Ok(None),
    }
}

fn invalid(py: Python<'_>, msg: String) -> PyErr {
    errors::to_pyerr(py, core::Error::InvalidRequest(msg))
}

/// Reads the request's tools: dicts (or pydantic models) with a `type`.
fn parse_tools(py: Python<'_>, tools: &Bound<'_, PyAny>) -> PyResult<(Vec<core::Tool>, String)> {
    let mut out = Vec::new();
    let plain = PyList::empty(py);
    for (i, tool) in tools.try_iter()?.enumerate() {
        let mut tool = tool?;
        if tool.hasattr("model_dump")? && !tool.is_instance_of::<PyDict>() {
            let kw = PyDict::new(py);
            kw.set_item("exclude_none", true)?;
            tool = tool.call_method("model_dump", (), Some(&kw))?;
        }
        if !tool.is_instance_of::<PyDict>() && tool.cast::<PyMapping>().is_err() {
            return Err(invalid(
                py,
                format!("tools[{i}] must be an object with a \"type\""),
            ));
        }
        let kind = get_str(&tool, "type")?.unwrap_or_default();
        let need = |field: &str| -> PyResult<String> {
            get_str(&tool, field)?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    invalid(
                        py,
                        format!("tools[{i}] of type {kind:?} needs a non-empty {field:?}"),
                    )
                })
        };
        let parsed = match kind.as_str() {
            "function" => core::Tool::Function {
                name: need("name")?,
            },
            "mcp" => core::Tool::Mcp {
                server_label: need("server_label")?,
            },
            "web_search_preview" | "web_search" | "web_search_preview_2025_03_11" => {
                core::Tool::WebSearch
            }
            "code_interpreter" => {
                let container = tool.get_item("container").ok();
                let container_id = match container {
                    Some(c) if c.is_instance_of::<PyString>() => Some(c.extract::<String>()?),
                    _ => None,
                };
                core::Tool::CodeInterpreter { container_id }
            }
            other => {
                return Err(invalid(
                    py,
                    format!(
                        "tools[{i}] has unsupported type {other:?}: supported types are function, \
                         mcp, web_search_preview, web_search and code_interpreter"
                    ),
                ))
            }
        };
        out.push(parsed);
        plain.append(tool)?;
    }
    Ok((out, compact_json(py, plain.as_any())?))
}

/// `json.dumps` with compact separators and UTF-8 kept.
fn compact_json(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let kw = PyDict::new(py);
    kw.set_item("separators", (",", ":"))?;
    kw.set_item("ensure_ascii", false)?;
    py.import("json")?
        .call_method("dumps", (obj,), Some(&kw))?
        .extract()
}

fn parse_logprobs(
    py: Python<'_>,
    lps: &Bound<'_, PyAny>,
    n_regular: u32,
) -> PyResult<Vec<core::TokenLogprob>> {
    let mut out = Vec::new();
    for (i, lp) in lps.try_iter()?.enumerate() {
        let lp = lp?;
        let bad = || {
            invalid(
                py,
                format!("logprobs[{i}] must be a float or (logprob, [(token_id, logprob), ...])"),
            )
        };
        let number = |v: &Bound<'_, PyAny>| -> PyResult<f64> {
            if v.is_instance_of::<PyBool>() {
                return Err(bad());
            }
            v.extract::<f64>().map_err(|_| bad())
        };
        if lp.is_instance_of::<PyString>() || lp.is_instance_of::<PyBytes>() {
            return Err(bad());
        }
        if let Ok(v) = number(&lp) {
            out.push(core::TokenLogprob {
                logprob: v,
                top: Vec::new(),
            });
            continue;
        }
        let pair: Vec<Bound<'_, PyAny>> = lp.extract().map_err(|_| bad())?;
        let [value, alternatives] = pair.as_slice() else {
            return Err(bad());
        };
        let mut top = Vec::new();
        for alt in alternatives.try_iter().map_err(|_| bad())? {
            let alt: Vec<Bound<'_, PyAny>> = alt?.extract().map_err(|_| bad())?;
            let [id, v] = alt.as_slice() else {
                return Err(bad());
            };
            top.push((extract_token(py, id, i, n_regular)?, number(v)?));
        }
        out.push(core::TokenLogprob {
            logprob: number(value)?,
            top,
        });
    }
    Ok(out)
}

/// The Responses event engine for one response.
#[pyclass(module = "harmony_stream._native", name = "ResponseStream")]
pub struct ResponseStream {
    inner: core::ResponseStream,
    /// Set when a Rust panic was caught: the stream's state cannot be trusted.
    poisoned: bool,
}

fn to_events(py: Python<'_>, events: Vec<core::Event>) -> PyResult<Vec<Py<ResponseEvent>>> {
    events
        .into_iter()
        .map(|e| {
            let seq = e.sequence_number;
            Py::new(
                py,
                ResponseEvent {
                    event: e,
                    sequence_number: seq,
                },
            )
        })
        .collect()
}

fn sse_bytes(py: Python<'_>, sse: &str) -> Py<PyBytes> {
    PyBytes::new(py, sse.as_bytes()).unbind()
}

/// Collects events as objects (`Vec<Event>`) or as SSE text (`String`).
trait Sink: EventSink + Default + Send {}
impl<S: EventSink + Default + Send> Sink for S {}

/// Runs engine work, turning a Rust panic into `InternalError` (never an abort).
pub(crate) fn catching<T>(f: impl FnOnce() -> core::Result<T>) -> Result<core::Result<T>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string())
    })
}

/// Calls `f` on `inner` unless `poisoned`; a Rust panic sets `poisoned` and
/// becomes `InternalError` (`what` names the object in the message).
pub(crate) fn guarded_call<E, T>(
    py: Python<'_>,
    poisoned: &mut bool,
    inner: &mut E,
    what: &str,
    f: impl FnOnce(&mut E) -> core::Result<T>,
) -> PyResult<T> {
    if *poisoned {
        return Err(errors::internal(
            py,
            format!("this {what} hit an internal error earlier and cannot be used"),
        ));
    }
    match catching(|| f(inner)) {
        Ok(r) => r.py_err(py),
        Err(msg) => {
            *poisoned = true;
            Err(errors::internal(py, msg))
        }
    }
}

impl ResponseStream {
    fn guarded<T>(
        &mut self,
        py: Python<'_>,
        f: impl FnOnce(&mut core::ResponseStream) -> core::Result<T>,
    ) -> PyResult<T> {
        guarded_call(py, &mut self.poisoned, &mut self.inner, "stream", f)
    }

    fn run_feed<S: Sink>(
        &mut self,
        py: Python<'_>,
        token_ids: &Bound<'_, PyAny>,
        logprobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<S> {
        let n = self.inner.parser().tokens_processed();
        let n_regular = self.inner.parser().vocab().n_regular();
        let ids = extract_tokens(py, token_ids, n, n_regular)?;
        let lps = logprobs
            .map(|l| parse_logprobs(py, l, n_regular))
            .transpose()?;
        let mut out = S::default();
        if ids.len() >= 256 && !self.poisoned {
            // Long steps run without the GIL.
            let inner = &mut self.inner;
            match py.detach(|| catching(|| inner.feed(&ids, lps.as_deref(), &mut out))) {
                Ok(r) => r.py_err(py)?,
                Err(msg) => {
                    self.poisoned = true;
                    return Err(errors::internal(py, msg));
                }
            }
        } else {
            self.guarded(py, |e| e.feed(&ids, lps.as_deref(), &mut out))?;
        }
        Ok(out)
    }

    fn run_finish<S: Sink>(
        &mut self,
        py: Python<'_>,
        reason: &str,
        message: Option<String>,
    ) -> PyResult<S> {
        let reason = match reason {
            "stop" => core::FinishReason::Stop,
            "length" => core::FinishReason::Length,
            "abort" => core::FinishReason::Error(
                message.unwrap_or_else(|| "the request was aborted".into()),
            ),
            "error" => {
                core::FinishReason::Error(message.unwrap_or_else(|| "the engine failed".into()))
            }
            other => {
                return Err(invalid(
                    py,
                    format!(
                        "unknown finish reason {other:?}: expected stop, length, abort or error"
                    ),
                ))
            }
        };
        let mut out = S::default();
        self.guarded(py, |e| e.finish(reason, &mut out))?;
        Ok(out)
    }

    fn run_tool_output<S: Sink>(
        &mut self,
        py: Python<'_>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> PyResult<S> {
        let mut out = S::default();
        self.guarded(py, |e| e.tool_output(output, error, &mut out))?;
        Ok(out)
    }

    fn run_start<S: Sink>(&mut self, py: Python<'_>) -> PyResult<S> {
        let mut out = S::default();
        self.guarded(py, |e| e.start(&mut out))?;
        Ok(out)
    }
}

/// One engine step for many streams in one call: `steps[i]` are the new tokens
/// of `streams[i]`. Returns each stream's SSE bytes. Every stream and id is
/// checked first (an error consumes nothing); the work runs without the GIL.
#[pyfunction]
pub fn feed_batch(
    py: Python<'_>,
    streams: &Bound<'_, PyAny>,
    steps: &Bound<'_, PyAny>,
) -> PyResult<Vec<Py<PyBytes>>> {
    let mut guards: Vec<PyRefMut<'_, ResponseStream>> = Vec::new();
    for (i, s) in streams.try_iter()?.enumerate() {
        let s = s?;
        let cell = s
            .cast::<ResponseStream>()
            .map_err(|_| PyTypeError::new_err(format!("streams[{i}] is not a ResponseStream")))?;
        let guard = cell.try_borrow_mut().map_err(|_| {
            errors::to_pyerr(
                py,
                core::Error::StreamState(format!(
                    "streams[{i}] is in use elsewhere, or appears twice in the batch"
                )),
            )
        })?;
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
            parser.vocab().n_regular(),
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
        g.inner.validate_feed(step).py_err(py)?;
    }
    let mut engines: Vec<&mut core::ResponseStream> =
        guards.iter_mut().map(|g| &mut g.inner).collect();
    // All streams write into one buffer; each gets its slice as bytes.
    let mut buf = String::with_capacity(ids.iter().map(|s| s.len() * 200 + 64).sum());
    let outs: Vec<Result<core::Result<(usize, usize)>, String>> = py.detach(|| {
        engines
            .iter_mut()
            .zip(&ids)
            .map(|(engine, step)| {
                let start = buf.len();
                catching(|| {
                    engine
                        .feed(step, None, &mut buf)
                        .map(|()| (start, buf.len()))
                })
            })
            .collect()
    });
    let mut result = Vec::with_capacity(outs.len());
    let mut first_err = None;
    for (g, r) in guards.iter_mut().zip(outs) {
        match r {
            Ok(Ok((a, b))) => result.push(sse_bytes(py, buf.get(a..b).unwrap_or_default())),
            Ok(Err(e)) => {
                first_err.get_or_insert_with(|| errors::to_pyerr(py, e));
            }
            Err(msg) => {
                g.poisoned = true;
                first_err.get_or_insert_with(|| errors::internal(py, msg));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

#[pymethods]
impl ResponseStream {
    #[new]
    #[pyo3(signature = (
        vocab, *, tools=None, model="gpt-oss-120b".to_string(), response_id=None,
        max_output_tokens=None, logprobs=false, input_tokens=0, cached_tokens=0,
        created_at=None, mcp_tool_lists=None, id_seed=None
    ), text_signature = "(vocab, *, tools=None, model='gpt-oss-120b', response_id=None, \
        max_output_tokens=None, logprobs=False, input_tokens=0, cached_tokens=0, created_at=None, \
        mcp_tool_lists=None, id_seed=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        vocab: &Vocab,
        tools: Option<&Bound<'_, PyAny>>,
        model: String,
        response_id: Option<String>,
        max_output_tokens: Option<u64>,
        logprobs: bool,
        input_tokens: u64,
        cached_tokens: u64,
        created_at: Option<i64>,
        mcp_tool_lists: Option<&Bound<'_, PyDict>>,
        id_seed: Option<u64>,
    ) -> PyResult<Self> {
        let (tools, tools_json) = match tools {
            Some(t) => parse_tools(py, t)?,
            None => (Vec::new(), "[]".to_string()),
        };
        let mut mcp_listings = Vec::new();
        if let Some(lists) = mcp_tool_lists {
            for (label, list) in lists.iter() {
                let label: String = label.extract()?;
                if !tools.iter().any(
                    |t| matches!(t, core::Tool::Mcp { server_label } if *server_label == label),
                ) {
                    return Err(invalid(
                        py,
                        format!(
                            "mcp_tool_lists names {label:?}, which is no mcp tool's server_label"
                        ),
                    ));
                }
                let dumped = compact_json(py, &list)?;
                mcp_listings.push((label, dumped));
            }
        }
        let created_at = match created_at {
            Some(c) => c,
            None => py.import("time")?.call_method0("time")?.extract::<f64>()? as i64,
        };
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
        };
        Ok(Self {
            inner: core::ResponseStream::new(Arc::clone(&vocab.inner), cfg),
            poisoned: false,
        })
    }

    /// `response.created`, `response.in_progress` and the `mcp_list_tools` items.
    fn start(&mut self, py: Python<'_>) -> PyResult<Vec<Py<ResponseEvent>>> {
        let ev: Vec<core::Event> = self.run_start(py)?;
        to_events(py, ev)
    }

    /// Events for one engine step's tokens (starts the response if needed).
    #[pyo3(signature = (token_ids, logprobs=None))]
    fn feed(
        &mut self,
        py: Python<'_>,
        token_ids: &Bound<'_, PyAny>,
        logprobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Py<ResponseEvent>>> {
        let ev: Vec<core::Event> = self.run_feed(py, token_ids, logprobs)?;
        to_events(py, ev)
    }

    /// The result of the server-run call that ended the turn.
    #[pyo3(signature = (output=None, error=None))]
    fn tool_output(
        &mut self,
        py: Python<'_>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> PyResult<Vec<Py<ResponseEvent>>> {
        let ev: Vec<core::Event> = self.run_tool_output(py, output, error)?;
        to_events(py, ev)
    }

    /// Ends the response: `stop`, `length`, `abort` or `error` (with `message`).
    #[pyo3(signature = (reason="stop", message=None))]
    fn finish(
        &mut self,
        py: Python<'_>,
        reason: &str,
        message: Option<String>,
    ) -> PyResult<Vec<Py<ResponseEvent>>> {
        let ev: Vec<core::Event> = self.run_finish(py, reason, message)?;
        to_events(py, ev)
    }

    /// `start()` as SSE bytes.
    fn start_sse(&mut self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let sse: String = self.run_start(py)?;
        Ok(sse_bytes(py, &sse))
    }

    /// `feed()` as one SSE `bytes`, without event objects.
    #[pyo3(signature = (token_ids, logprobs=None))]
    fn feed_sse(
        &mut self,
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
        &mut self,
        py: Python<'_>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> PyResult<Py<PyBytes>> {
        let sse: String = self.run_tool_output(py, output, error)?;
        Ok(sse_bytes(py, &sse))
    }

    /// `finish()` as SSE bytes.
    #[pyo3(signature = (reason="stop", message=None))]
    fn finish_sse(
        &mut self,
        py: Python<'_>,
        reason: &str,
        message: Option<String>,
    ) -> PyResult<Py<PyBytes>> {
        let sse: String = self.run_finish(py, reason, message)?;
        Ok(sse_bytes(py, &sse))
    }

    /// The final response as a dict (mid-stream: status `in_progress`, no output yet).
    fn response<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (self.inner.response_json(),))
    }

    /// The final response as JSON.
    fn response_json(&self) -> String {
        self.inner.response_json()
    }

    #[getter]
    fn response_id(&self) -> &str {
        self.inner.response_id()
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }

    #[getter]
    fn awaiting_tool_output(&self) -> bool {
        self.inner.awaiting_tool_output()
    }

    /// Test hook: panics inside Rust, to prove a panic becomes `InternalError`
    /// on this stream and never aborts the process.
    fn _panic_for_tests(&mut self, py: Python<'_>) -> PyResult<()> {
        self.guarded(py, |_| -> core::Result<()> {
            panic!("deliberate panic for tests")
        })
    }
}
