//! `ResponseStream` and `ResponseEvent`: the event engine for Python.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use harmony_stream_core as core;
use harmony_stream_core::events::EventSink;
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};

use crate::errors::{self, IntoPyResult};
use crate::pyjson::{self, json_kind, type_name, wrong_kind, Path};
use crate::{extract_token, extract_tokens, not_a_value, Vocab};

/// One Responses streaming event.
///
/// `type`, a settable `sequence_number`, and the pydantic-style
/// `model_dump_json` / `model_dump` that servers such as vLLM call.
///
/// Frozen (no borrow flag): any thread may read it or set `sequence_number`.
#[pyclass(frozen, module = "harmony_stream._native", name = "ResponseEvent")]
pub struct ResponseEvent {
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

fn invalid(py: Python<'_>, msg: String) -> PyErr {
    pyjson::invalid(py, msg)
}

/// A field of a tool object (`None` when absent).
fn field<'py>(obj: &Bound<'py, PyAny>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return d.get_item(key);
    }
    match obj.get_item(key) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a field may hold.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    OptStr,
    OptBool,
    Object,
    OptObject,
    /// An object of strings, or null (`headers`).
    OptStrMap,
    /// A string or an object (`container`).
    StrOrObject,
}

impl Kind {
    fn accepts(self, v: &Bound<'_, PyAny>) -> bool {
        let kind = json_kind(v);
        let null = kind == Some("null");
        match self {
            Self::Str => kind == Some("a string"),
            Self::OptStr | Self::OptStrMap if null => true,
            Self::OptStr => kind == Some("a string"),
            Self::OptBool => null || kind == Some("a boolean"),
            Self::Object | Self::OptStrMap => kind == Some("an object"),
            Self::OptObject => null || kind == Some("an object"),
            Self::StrOrObject => kind == Some("a string") || kind == Some("an object"),
        }
    }

    fn want(self) -> &'static str {
        match self {
            Self::Str => "a string",
            Self::OptStr => "a string or null",
            Self::OptBool => "a boolean or null",
            Self::Object => "an object",
            Self::OptObject | Self::OptStrMap => "an object or null",
            Self::StrOrObject => "a string or an object",
        }
    }
}

/// Checks the kind of `obj[key]` when present; returns it.
fn check_field<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    path: &mut Path,
    key: &str,
    kind: Kind,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(v) = field(obj, key)? else {
        return Ok(None);
    };
    path.key(key, |p| {
        if !kind.accepts(&v) {
            return Err(wrong_kind(py, p, &v, kind.want()));
        }
        if let (Kind::OptStrMap, false) = (kind, v.is_none()) {
            for (k, x) in pyjson::items(&v)? {
                let k = pyjson::key_str(py, p, &k)?;
                p.key(&k, |p| {
                    if Kind::Str.accepts(&x) {
                        Ok(())
                    } else {
                        Err(wrong_kind(py, p, &x, "a string"))
                    }
                })?;
            }
        }
        Ok(())
    })?;
    Ok(Some(v))
}

/// A required non-empty string field of a tool.
fn need_str(
    py: Python<'_>,
    tool: &Bound<'_, PyAny>,
    path: &mut Path,
    kind: &str,
    key: &str,
) -> PyResult<String> {
    let s = match field(tool, key)? {
        Some(v) if !v.is_none() => {
            check_field(py, tool, path, key, Kind::Str)?;
            path.key(key, |p| {
                pyjson::to_str(py, p, v.cast::<PyString>()?).map(|s| s.into_owned())
            })?
        }
        _ => String::new(),
    };
    if s.is_empty() {
        return Err(invalid(
            py,
            format!(
                "{} of type {kind:?} needs a non-empty {key:?}",
                path.as_str()
            ),
        ));
    }
    Ok(s)
}

/// A pydantic model (not a dict) as its `model_dump(exclude_none=True)`.
fn plain<'py>(py: Python<'py>, v: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if !v.is_instance_of::<PyDict>() && v.hasattr("model_dump")? {
        let kw = PyDict::new(py);
        kw.set_item("exclude_none", true)?;
        return v.call_method("model_dump", (), Some(&kw));
    }
    Ok(v.clone())
}

/// Reads one tool and appends its JSON (checked: [`pyjson::write`]).
fn parse_tool(
    py: Python<'_>,
    tool: &Bound<'_, PyAny>,
    path: &mut Path,
    out: &mut String,
) -> PyResult<core::Tool> {
    let tool = plain(py, tool)?;
    if json_kind(&tool) != Some("an object") {
        return Err(wrong_kind(py, path, &tool, "an object (a tool)"));
    }
    let kind = match check_field(py, &tool, path, "type", Kind::Str)? {
        Some(t) => t.extract::<String>()?,
        None => return Err(invalid(py, format!("{} has no \"type\"", path.as_str()))),
    };
    let parsed = match kind.as_str() {
        "function" => {
            let name = need_str(py, &tool, path, &kind, "name")?;
            check_field(py, &tool, path, "description", Kind::OptStr)?;
            check_field(py, &tool, path, "parameters", Kind::OptObject)?;
            check_field(py, &tool, path, "strict", Kind::OptBool)?;
            core::Tool::Function { name }
        }
        "mcp" => {
            let server_label = need_str(py, &tool, path, &kind, "server_label")?;
            for key in ["server_url", "server_description", "authorization"] {
                check_field(py, &tool, path, key, Kind::OptStr)?;
            }
            check_field(py, &tool, path, "headers", Kind::OptStrMap)?;
            core::Tool::Mcp { server_label }
        }
        "web_search_preview" | "web_search" | "web_search_preview_2025_03_11" => {
            core::Tool::WebSearch
        }
        "code_interpreter" => {
            let container = check_field(py, &tool, path, "container", Kind::StrOrObject)?;
            let container_id = match container {
                Some(c) if c.is_instance_of::<PyString>() => Some(path.key("container", |p| {
                    pyjson::to_str(py, p, c.cast::<PyString>()?).map(|s| s.into_owned())
                })?),
                _ => None,
            };
            core::Tool::CodeInterpreter { container_id }
        }
        other => {
            return Err(invalid(
                py,
                format!(
                    "{} has unsupported type {other:?}: supported types are function, \
                     mcp, web_search_preview, web_search and code_interpreter",
                    path.as_str()
                ),
            ))
        }
    };
    pyjson::write(py, &tool, path, out)?;
    Ok(parsed)
}

/// Reads the request's tools: a list of dicts (or pydantic models) with a `type`;
/// returns them and their JSON.
fn parse_tools(py: Python<'_>, tools: &Bound<'_, PyAny>) -> PyResult<(Vec<core::Tool>, String)> {
    let not_a_list = || {
        PyTypeError::new_err(format!(
            "tools must be a list of tool objects, got {}",
            type_name(tools)
        ))
    };
    // A str, a dict or a model iterate (characters, keys, fields), but are no list.
    if tools.is_instance_of::<PyString>()
        || tools.is_instance_of::<PyBytes>()
        || tools.is_instance_of::<PyDict>()
        || tools.cast::<PyMapping>().is_ok()
        || tools.hasattr("model_dump")?
    {
        return Err(not_a_list());
    }
    let iter = match tools.try_iter() {
        Ok(it) => it,
        Err(e) if e.is_instance_of::<PyTypeError>(py) => return Err(not_a_list()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut json = String::from("[");
    let mut path = Path::new("tools");
    for (i, tool) in iter.enumerate() {
        let tool = tool?;
        if i > 0 {
            json.push(',');
        }
        out.push(path.index(i, |p| parse_tool(py, &tool, p, &mut json))?);
    }
    json.push(']');
    Ok((out, json))
}

/// The fields of an `mcp_list_tools` item's tool (openai-python's `McpListToolsTool`).
const MCP_TOOL_FIELDS: [&str; 4] = ["name", "input_schema", "description", "annotations"];

/// One tool of an MCP server's list, checked, appended as JSON.
fn write_mcp_tool(
    py: Python<'_>,
    tool: &Bound<'_, PyAny>,
    path: &mut Path,
    out: &mut String,
) -> PyResult<()> {
    let tool = plain(py, tool)?;
    if json_kind(&tool) != Some("an object") {
        return Err(wrong_kind(py, path, &tool, "an object (a tool)"));
    }
    for (k, _) in pyjson::items(&tool)? {
        let k = pyjson::key_str(py, path, &k)?;
        if !MCP_TOOL_FIELDS.contains(&k.as_ref()) {
            let mut shown = String::new();
            core::json::push_str(&mut shown, &k);
            return Err(invalid(
                py,
                format!(
                    "{} has an unknown field {shown}: a tool has name, input_schema, \
                     description and annotations",
                    path.as_str()
                ),
            ));
        }
    }
    for (key, kind, article) in [
        ("name", Kind::Str, "a"),
        ("input_schema", Kind::Object, "an"),
    ] {
        if check_field(py, &tool, path, key, kind)?.is_none() {
            return Err(invalid(
                py,
                format!(
                    "{}.{key} is missing: a tool needs {article} {key}",
                    path.as_str()
                ),
            ));
        }
    }
    check_field(py, &tool, path, "description", Kind::OptStr)?;
    check_field(py, &tool, path, "annotations", Kind::OptObject)?;
    pyjson::write(py, &tool, path, out)
}

/// `mcp_tool_lists`: server_label → the server's tools; each becomes an
/// `mcp_list_tools` item. Returns `(label, tools JSON array)` pairs.
fn parse_mcp_lists(
    py: Python<'_>,
    lists: &Bound<'_, PyAny>,
    tools: &[core::Tool],
) -> PyResult<Vec<(String, String)>> {
    if json_kind(lists) != Some("an object") {
        return Err(PyTypeError::new_err(format!(
            "mcp_tool_lists must be a dict of server_label to a list of tools, got {}",
            type_name(lists)
        )));
    }
    let mut out = Vec::new();
    let mut path = Path::new("mcp_tool_lists");
    for (label, list) in pyjson::items(lists)? {
        let Ok(label) = label.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "mcp_tool_lists keys are server labels (str), got {}",
                type_name(&label)
            )));
        };
        let label = pyjson::to_str(py, &path, label)?.into_owned();
        if !tools
            .iter()
            .any(|t| matches!(t, core::Tool::Mcp { server_label } if *server_label == label))
        {
            return Err(invalid(
                py,
                format!("mcp_tool_lists names {label:?}, which is no mcp tool's server_label"),
            ));
        }
        let json = path.entry(&label, |p| -> PyResult<String> {
            if !(list.is_instance_of::<PyList>() || list.is_instance_of::<PyTuple>()) {
                return Err(wrong_kind(py, p, &list, "a list of tools"));
            }
            let mut json = String::from("[");
            for (i, tool) in list.try_iter()?.enumerate() {
                let tool = tool?;
                if i > 0 {
                    json.push(',');
                }
                p.index(i, |p| write_mcp_tool(py, &tool, p, &mut json))?;
            }
            json.push(']');
            Ok(json)
        })?;
        out.push((label, json));
    }
    Ok(out)
}

/// Token counts are written as JSON numbers: up to 2**53 - 1, the largest
/// integer every JSON reader (JavaScript's included) holds exactly.
pub(crate) const MAX_COUNT: i128 = (1 << 53) - 1;

/// A constructor argument taken as given (checked by the constructor), or absent
/// (the default).
pub(crate) enum Given<'py> {
    Value(Bound<'py, PyAny>),
    Absent,
}

impl<'a, 'py> FromPyObject<'a, 'py> for Given<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Self::Value(obj.to_owned()))
    }
}

/// An int argument in `min..=max`: `TypeError` for a non-int (bool included),
/// `InvalidRequestError` (a `ValueError`) out of range, both naming it; an
/// exception raised by the object's own `__index__` propagates unchanged.
fn int_arg(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    name: &str,
    or_none: bool,
    min: i128,
    max: i128,
) -> PyResult<i128> {
    let wrong_type = || {
        PyTypeError::new_err(format!(
            "{name} must be an int{}, got {}",
            if or_none { " or None" } else { "" },
            type_name(v)
        ))
    };
    let out_of_range = |shown: String| {
        invalid(
            py,
            format!("{name} must be between {min} and {max}, got {shown}"),
        )
    };
    if v.is_instance_of::<PyBool>() {
        return Err(wrong_type());
    }
    let n = match v.extract::<i128>() {
        Ok(n) => n,
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => {
            let n = py.import("operator")?.call_method1("index", (v,))?;
            return Err(out_of_range(n.str()?.to_string()));
        }
        Err(e) if e.is_instance_of::<PyTypeError>(py) && !has_index(v) => return Err(wrong_type()),
        Err(e) => return Err(e),
    };
    if n < min || n > max {
        return Err(out_of_range(n.to_string()));
    }
    Ok(n)
}

/// A `str` argument: `TypeError` for another type, `InvalidRequestError` (a
/// `ValueError`) for a string that is not Unicode (a lone surrogate), both naming it.
fn text_arg<'a>(
    py: Python<'_>,
    v: &'a Bound<'_, PyAny>,
    name: &str,
    or_none: bool,
) -> PyResult<std::borrow::Cow<'a, str>> {
    match v.cast::<PyString>() {
        Ok(s) => s.to_cow().map_err(|_| {
            invalid(
                py,
                format!("{name} is not valid Unicode (it holds a lone surrogate)"),
            )
        }),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be a str{}, got {}",
            if or_none { " or None" } else { "" },
            type_name(v)
        ))),
    }
}

/// An optional `str` argument (see [`text_arg`]).
fn opt_text<'a>(
    py: Python<'_>,
    v: Option<&'a Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<std::borrow::Cow<'a, str>>> {
    v.map(|v| text_arg(py, v, name, true)).transpose()
}

/// Whether `v`'s type can be used as an int (`__index__`).
pub(crate) fn has_index(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<PyInt>() || v.get_type().hasattr("__index__").unwrap_or(false)
}

fn parse_logprobs(
    py: Python<'_>,
    lps: &Bound<'_, PyAny>,
    n_regular: u32,
) -> PyResult<Vec<core::TokenLogprob>> {
    const NUMBER: &[&str] = &["__float__", "__index__"];
    const SEQUENCE: &[&str] = &["__iter__", "__getitem__"];
    let mut out = Vec::new();
    for (i, lp) in lps.try_iter()?.enumerate() {
        let lp = lp?;
        let bad = || {
            invalid(
                py,
                format!("logprobs[{i}] must be a float or (logprob, [(token_id, logprob), ...])"),
            )
        };
        // "Not a number / not a pair" becomes `bad()`; an exception the object
        // itself raised (a failing `__float__`, `__iter__`) propagates unchanged.
        let or_bad = |e: PyErr, v: &Bound<'_, PyAny>, hooks: &[&str]| {
            if not_a_value(py, &e, v, hooks) {
                bad()
            } else {
                e
            }
        };
        let number = |v: &Bound<'_, PyAny>| -> PyResult<f64> {
            if v.is_instance_of::<PyBool>()
                || v.is_instance_of::<PyString>()
                || v.is_instance_of::<PyBytes>()
            {
                return Err(bad());
            }
            v.extract::<f64>().map_err(|e| or_bad(e, v, NUMBER))
        };
        if lp.is_instance_of::<PyString>() || lp.is_instance_of::<PyBytes>() {
            return Err(bad());
        }
        let is_number = lp.is_instance_of::<PyFloat>()
            || lp.is_instance_of::<PyInt>()
            || NUMBER
                .iter()
                .any(|h| lp.get_type().hasattr(*h).unwrap_or(false));
        if is_number {
            out.push(core::TokenLogprob {
                logprob: number(&lp)?,
                top: Vec::new(),
            });
            continue;
        }
        let pair: Vec<Bound<'_, PyAny>> = lp.extract().map_err(|e| or_bad(e, &lp, SEQUENCE))?;
        let [value, alternatives] = pair.as_slice() else {
            return Err(bad());
        };
        let mut top = Vec::new();
        let alts = alternatives
            .try_iter()
            .map_err(|e| or_bad(e, alternatives, SEQUENCE))?;
        for alt in alts {
            let alt = alt?;
            let alt: Vec<Bound<'_, PyAny>> =
                alt.extract().map_err(|e| or_bad(e, &alt, SEQUENCE))?;
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

fn poisoned_error(py: Python<'_>, what: &str) -> PyErr {
    errors::internal(
        py,
        format!("this {what} hit an internal error earlier and cannot be used"),
    )
}

impl Engine {
    /// Runs `f` on the engine (without the GIL when `detach`); a Rust panic poisons
    /// the engine and becomes `InternalError`. Counts what a call that returns hands out.
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
            Err(msg) => {
                self.poisoned = true;
                Err(errors::internal(py, msg))
            }
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
pub struct ResponseStream {
    engine: Mutex<Engine>,
    /// Never changes: readable while a call runs.
    response_id: String,
}

const STREAM_IN_USE: &str =
    "this ResponseStream is in use by another thread: a stream accepts one call at a time";

/// `try_lock`: the guard, or `None` when another call holds it. A lock poisoned by
/// a panic is taken anyway (the `poisoned` flags say what the panic left).
pub(crate) fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

impl ResponseStream {
    fn lock(&self, py: Python<'_>) -> PyResult<MutexGuard<'_, Engine>> {
        try_lock(&self.engine).ok_or_else(|| errors::in_use(py, STREAM_IN_USE.to_string()))
    }
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
                    sequence_number: AtomicU64::new(seq),
                },
            )
        })
        .collect()
}

fn sse_bytes(py: Python<'_>, sse: &str) -> Py<PyBytes> {
    PyBytes::new(py, sse.as_bytes()).unbind()
}

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
        return Err(poisoned_error(py, what));
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
    fn run_feed<S: Sink>(
        &self,
        py: Python<'_>,
        token_ids: &Bound<'_, PyAny>,
        logprobs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<S> {
        let mut e = self.lock(py)?;
        if e.poisoned {
            return Err(poisoned_error(py, "stream"));
        }
        let n = e.inner.parser().tokens_processed();
        let n_regular = e.inner.parser().vocab().n_regular();
        let ids = extract_tokens(py, token_ids, n, n_regular)?;
        let lps = logprobs
            .map(|l| parse_logprobs(py, l, n_regular))
            .transpose()?;
        // Long steps run without the GIL.
        e.call(py, ids.len() >= 256, |inner, out| {
            inner.feed(&ids, lps.as_deref(), out)
        })
    }

    fn run_finish<S: Sink>(
        &self,
        py: Python<'_>,
        reason: &str,
        message: Option<String>,
    ) -> PyResult<S> {
        let parsed = match reason {
            "stop" => core::FinishReason::Stop,
            "length" => core::FinishReason::Length,
            "abort" => core::FinishReason::Error(
                message
                    .clone()
                    .unwrap_or_else(|| "the request was aborted".into()),
            ),
            "error" => core::FinishReason::Error(
                message
                    .clone()
                    .unwrap_or_else(|| "the engine failed".into()),
            ),
            other => {
                return Err(invalid(
                    py,
                    format!(
                        "unknown finish reason {other:?}: expected stop, length, abort or error"
                    ),
                ))
            }
        };
        let mut e = self.lock(py)?;
        if e.poisoned {
            return e.end_after_panic(py, reason, message.as_deref());
        }
        e.call(py, false, |inner, out| inner.finish(parsed, out))
    }

    fn run_tool_output<S: Sink>(
        &self,
        py: Python<'_>,
        output: Option<&str>,
        error: Option<&str>,
    ) -> PyResult<S> {
        self.lock(py)?.call(py, false, |inner, out| {
            inner.tool_output(output, error, out)
        })
    }

    fn run_start<S: Sink>(&self, py: Python<'_>) -> PyResult<S> {
        self.lock(py)?
            .call(py, false, |inner, out| inner.start(out))
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
        let guard = try_lock(&cell.get().engine)
            .ok_or_else(|| errors::in_use(py, format!("streams[{i}]: {STREAM_IN_USE}")))?;
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
        cached_tokens=Given::Absent, created_at=None, mcp_tool_lists=None, id_seed=None
    ), text_signature = "(vocab, *, tools=None, model='gpt-oss-120b', response_id=None, \
        max_output_tokens=None, logprobs=False, input_tokens=0, cached_tokens=0, created_at=None, \
        mcp_tool_lists=None, id_seed=None)")]
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
            None => py.import("time")?.call_method0("time")?.extract::<f64>()? as i64,
        };
        let (tools, tools_json) = match tools {
            Some(t) => parse_tools(py, t)?,
            None => (Vec::new(), "[]".to_string()),
        };
        let mcp_listings = match mcp_tool_lists {
            Some(lists) => parse_mcp_lists(py, lists, &tools)?,
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
        };
        let inner = core::ResponseStream::new(Arc::clone(&vocab.inner), cfg);
        Ok(Self {
            response_id: inner.response_id().to_string(),
            engine: Mutex::new(Engine {
                inner,
                poisoned: false,
                sent: Tally::default(),
                failed_response: None,
            }),
        })
    }

    /// `response.created`, `response.in_progress` and the `mcp_list_tools` items.
    fn start(&self, py: Python<'_>) -> PyResult<Vec<Py<ResponseEvent>>> {
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
    ) -> PyResult<Vec<Py<ResponseEvent>>> {
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
    ) -> PyResult<Vec<Py<ResponseEvent>>> {
        let (output, error) = (
            opt_text(py, output, "output")?,
            opt_text(py, error, "error")?,
        );
        let ev: Vec<core::Event> = self.run_tool_output(py, output.as_deref(), error.as_deref())?;
        to_events(py, ev)
    }

    /// Ends the response: `stop`, `length`, `abort` or `error` (with `message`).
    #[pyo3(signature = (reason=Given::Absent, message=None), text_signature = "(self, reason='stop', message=None)")]
    fn finish(
        &self,
        py: Python<'_>,
        reason: Given<'_>,
        message: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Py<ResponseEvent>>> {
        let reason = match &reason {
            Given::Absent => std::borrow::Cow::Borrowed("stop"),
            Given::Value(r) => text_arg(py, r, "reason", false)?,
        };
        let message = opt_text(py, message, "message")?.map(|m| m.into_owned());
        let ev: Vec<core::Event> = self.run_finish(py, &reason, message)?;
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
        let (output, error) = (
            opt_text(py, output, "output")?,
            opt_text(py, error, "error")?,
        );
        let sse: String = self.run_tool_output(py, output.as_deref(), error.as_deref())?;
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
        let reason = match &reason {
            Given::Absent => std::borrow::Cow::Borrowed("stop"),
            Given::Value(r) => text_arg(py, r, "reason", false)?,
        };
        let message = opt_text(py, message, "message")?.map(|m| m.into_owned());
        let sse: String = self.run_finish(py, &reason, message)?;
        Ok(sse_bytes(py, &sse))
    }

    /// The final response as a dict (mid-stream: status `in_progress`, no output yet).
    fn response<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.response_json(py)?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The final response as JSON.
    fn response_json(&self, py: Python<'_>) -> PyResult<String> {
        let mut e = self.lock(py)?;
        if e.poisoned {
            return e
                .failed_response
                .clone()
                .ok_or_else(|| poisoned_error(py, "stream"));
        }
        let inner = &e.inner;
        match catching(|| Ok(inner.response_json())) {
            Ok(r) => r.py_err(py),
            Err(msg) => {
                e.poisoned = true;
                Err(errors::internal(py, msg))
            }
        }
    }

    #[getter]
    fn response_id(&self) -> &str {
        &self.response_id
    }

    #[getter]
    fn finished(&self, py: Python<'_>) -> PyResult<bool> {
        let e = self.lock(py)?;
        Ok(if e.poisoned {
            e.sent.terminal
        } else {
            e.inner.is_finished()
        })
    }

    #[getter]
    fn awaiting_tool_output(&self, py: Python<'_>) -> PyResult<bool> {
        let e = self.lock(py)?;
        Ok(!e.poisoned && e.inner.awaiting_tool_output())
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
        let mut e = self.lock(py)?;
        let ids = match token_ids {
            Some(t) => {
                let parser = e.inner.parser();
                extract_tokens(py, t, parser.tokens_processed(), parser.vocab().n_regular())?
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
}
