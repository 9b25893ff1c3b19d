//! `HarmonyParser` (the streaming Harmony parser), the `Message`s and `Recovery`s
//! it reports, and `StreamState`, where it is in the message grammar.

use std::collections::BTreeMap;
use std::sync::Arc;

use harmony_stream_core as core;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::convert::{extract_token, extract_tokens, parse_role};
use crate::errors::IntoPyResult;
use crate::guard::{self, Exclusive, InUse};
use crate::vocab::Vocab;

/// A parsed Harmony message.
#[pyclass(frozen, get_all, module = "harmony_stream._native", name = "Message")]
pub(crate) struct Message {
    role: String,
    name: Option<String>,
    channel: Option<String>,
    recipient: Option<String>,
    content_type: Option<String>,
    content: String,
    end: &'static str,
}

#[pymethods]
impl Message {
    /// The dict shape of `openai_harmony.Message.to_dict()`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("role", &self.role)?;
        d.set_item("name", &self.name)?;
        let part = PyDict::new(py);
        part.set_item("type", "text")?;
        part.set_item("text", &self.content)?;
        d.set_item("content", PyList::new(py, [part])?)?;
        if let Some(c) = &self.channel {
            d.set_item("channel", c)?;
        }
        if let Some(r) = &self.recipient {
            d.set_item("recipient", r)?;
        }
        if let Some(t) = &self.content_type {
            d.set_item("content_type", t)?;
        }
        Ok(d)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<Message>() {
            Ok(o) => {
                let o = o.get();
                (
                    &self.role,
                    &self.name,
                    &self.channel,
                    &self.recipient,
                    &self.content_type,
                    &self.content,
                    self.end,
                ) == (
                    &o.role,
                    &o.name,
                    &o.channel,
                    &o.recipient,
                    &o.content_type,
                    &o.content,
                    o.end,
                )
            }
            Err(_) => false,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Message(role={:?}, name={}, channel={}, recipient={}, content_type={}, content={:?}, end={:?})",
            self.role,
            opt_repr(&self.name),
            opt_repr(&self.channel),
            opt_repr(&self.recipient),
            opt_repr(&self.content_type),
            self.content,
            self.end
        )
    }
}

fn opt_repr(v: &Option<String>) -> String {
    v.as_ref()
        .map_or_else(|| "None".to_string(), |s| format!("{s:?}"))
}

impl From<&core::Message> for Message {
    fn from(m: &core::Message) -> Self {
        Self {
            role: m.header.role.as_str().to_string(),
            name: m.header.name.clone(),
            channel: m.header.channel.clone(),
            recipient: m.header.recipient.clone(),
            content_type: m.header.content_type.clone(),
            content: m.content.clone(),
            end: m.end.as_str(),
        }
    }
}

/// A quirk the lenient parser recovered from.
#[pyclass(frozen, get_all, module = "harmony_stream._native", name = "Recovery")]
pub(crate) struct Recovery {
    token_index: usize,
    kind: &'static str,
    detail: String,
}

#[pymethods]
impl Recovery {
    fn __repr__(&self) -> String {
        format!(
            "Recovery(token_index={}, kind={:?}, detail={:?})",
            self.token_index, self.kind, self.detail
        )
    }
}

/// Where a parser is in the message grammar: `StreamState.EXPECT_START`,
/// `HEADER` or `CONTENT`, whose `value`s are openai-harmony's names
/// (`"ExpectStart"`, `"Header"`, `"Content"`).
///
/// Enum-like: one object per member (`parser.state is StreamState.CONTENT`),
/// `name` and `value`, `StreamState("Content")`; a member equals its value, as
/// the `str`-valued enum this class replaces did.
#[pyclass(frozen, module = "harmony_stream._native", name = "StreamState")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamState {
    #[pyo3(name = "EXPECT_START")]
    ExpectStart,
    #[pyo3(name = "HEADER")]
    Header,
    #[pyo3(name = "CONTENT")]
    Content,
}

impl From<core::StreamState> for StreamState {
    fn from(s: core::StreamState) -> Self {
        match s {
            core::StreamState::ExpectStart => Self::ExpectStart,
            core::StreamState::Header => Self::Header,
            core::StreamState::Content => Self::Content,
        }
    }
}

impl StreamState {
    const ALL: [Self; 3] = [Self::ExpectStart, Self::Header, Self::Content];

    fn name(self) -> &'static str {
        match self {
            Self::ExpectStart => "EXPECT_START",
            Self::Header => "HEADER",
            Self::Content => "CONTENT",
        }
    }

    fn value(self) -> &'static str {
        match self {
            Self::ExpectStart => "ExpectStart",
            Self::Header => "Header",
            Self::Content => "Content",
        }
    }

    /// The member object (the class attribute), the same one every time.
    fn member(py: Python<'_>, state: Self) -> PyResult<Bound<'_, Self>> {
        static MEMBERS: PyOnceLock<[Py<StreamState>; 3]> = PyOnceLock::new();
        let members = MEMBERS.get_or_try_init(py, || {
            let cls = py.get_type::<Self>();
            let get = |s: Self| -> PyResult<Py<Self>> {
                Ok(cls.getattr(s.name())?.cast_into::<Self>()?.unbind())
            };
            Ok::<_, PyErr>([
                get(Self::ExpectStart)?,
                get(Self::Header)?,
                get(Self::Content)?,
            ])
        })?;
        Ok(members[state as usize].bind(py).clone())
    }
}

#[pymethods]
impl StreamState {
    /// The member whose value (or name) is `value`.
    #[new]
    fn new<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, Self>> {
        if let Ok(s) = value.cast::<Self>() {
            return Ok(s.clone());
        }
        let found = value.extract::<&str>().ok().and_then(|v| {
            Self::ALL
                .into_iter()
                .find(|s| s.value() == v || s.name() == v)
        });
        match found {
            Some(s) => Self::member(py, s),
            None => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} is not a valid StreamState",
                value.repr()?
            ))),
        }
    }

    /// `"EXPECT_START"`, `"HEADER"` or `"CONTENT"`.
    #[getter(name)]
    fn py_name(&self) -> &'static str {
        self.name()
    }

    /// `"ExpectStart"`, `"Header"` or `"Content"` (openai-harmony's names).
    #[getter(value)]
    fn py_value(&self) -> &'static str {
        self.value()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        if let Ok(o) = other.cast::<Self>() {
            return *o.get() == *self;
        }
        other.extract::<&str>().is_ok_and(|v| v == self.value())
    }

    /// The value's hash: a member equals its value, so it hashes as it does.
    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        PyString::new(py, self.value()).hash()
    }

    fn __repr__(&self) -> String {
        format!("<StreamState.{}: '{}'>", self.name(), self.value())
    }

    fn __str__(&self) -> String {
        format!("StreamState.{}", self.name())
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                py.get_type::<Self>().into_any(),
                PyTuple::new(py, [self.value()])?.into_any(),
            ],
        )
    }
}

/// A parser's state, behind the lock of [`HarmonyParser`].
struct ParserState {
    inner: core::Parser,
    converted: Vec<Py<Message>>,
    /// Set when a Rust panic was caught: the parser's state cannot be trusted.
    poisoned: bool,
}

impl ParserState {
    /// Runs `f` on the parser under the panic guard ([`guard::run`]).
    fn guarded<T: Send>(
        &mut self,
        py: Python<'_>,
        f: impl FnOnce(&mut core::Parser) -> core::Result<T> + Send,
    ) -> PyResult<T> {
        let inner = &mut self.inner;
        guard::run(py, &mut self.poisoned, "parser", false, || f(inner))
    }
}

/// Streaming Harmony parser.
///
/// Frozen with a lock inside: a call that finds another call running on the
/// parser raises `StreamInUseError` at once, never waits.
#[pyclass(frozen, module = "harmony_stream._native", name = "HarmonyParser")]
pub(crate) struct HarmonyParser {
    state: Exclusive<ParserState>,
}

impl InUse for ParserState {
    const IN_USE: &'static str =
        "this HarmonyParser is in use by another thread: a parser accepts one call at a time";
}

impl HarmonyParser {
    /// One field of the header of the message being read (`None` outside content).
    fn header_field(
        &self,
        py: Python<'_>,
        field: impl FnOnce(&core::Header) -> &Option<String>,
    ) -> PyResult<Option<String>> {
        let state = self.state.lock(py)?;
        Ok(state.inner.current_header().and_then(|h| field(h).clone()))
    }
}

#[pymethods]
impl HarmonyParser {
    #[new]
    #[pyo3(signature = (vocab, role=Some("assistant"), strict=false), text_signature = "(vocab, role='assistant', strict=False)")]
    fn new(vocab: &Vocab, role: Option<&str>, strict: bool) -> PyResult<Self> {
        let role = parse_role(role)?;
        Ok(Self {
            state: Exclusive::new(ParserState {
                inner: core::Parser::new(Arc::clone(&vocab.inner), role, strict),
                converted: Vec::new(),
                poisoned: false,
            }),
        })
    }

    /// Consumes one token; returns the content text it added, if any.
    fn process(&self, py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let mut st = self.state.lock(py)?;
        let id = extract_token(py, token, st.inner.tokens_processed(), st.inner.vocab())?;
        st.guarded(py, |p| p.process(id))?;
        Ok(st.inner.last_content_delta().map(str::to_string))
    }

    /// Consumes tokens; returns each token's content delta (`None` where it added none).
    fn process_many(
        &self,
        py: Python<'_>,
        tokens: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Option<String>>> {
        let mut st = self.state.lock(py)?;
        let ids = extract_tokens(py, tokens, st.inner.tokens_processed(), st.inner.vocab())?;
        // The core checks every id first: an unknown one consumes none.
        st.inner.validate(&ids).py_err(py)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            st.guarded(py, |p| p.process(id))?;
            out.push(st.inner.last_content_delta().map(str::to_string));
        }
        Ok(out)
    }

    /// End of stream: closes the open message.
    fn process_eos(&self, py: Python<'_>) -> PyResult<()> {
        self.state.lock(py)?.guarded(py, |p| p.process_eos())?;
        Ok(())
    }

    /// `StreamState.EXPECT_START`, `HEADER` or `CONTENT`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, StreamState>> {
        let state = self.state.lock(py)?.inner.state();
        StreamState::member(py, state.into())
    }

    #[getter]
    fn current_role(&self, py: Python<'_>) -> PyResult<Option<&'static str>> {
        Ok(self
            .state
            .lock(py)?
            .inner
            .current_role()
            .map(core::Role::as_str))
    }

    #[getter]
    fn current_channel(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.header_field(py, |h| &h.channel)
    }

    #[getter]
    fn current_recipient(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.header_field(py, |h| &h.recipient)
    }

    #[getter]
    fn current_content_type(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.header_field(py, |h| &h.content_type)
    }

    #[getter]
    fn current_content<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        Ok(PyString::new(
            py,
            self.state.lock(py)?.inner.current_content(),
        ))
    }

    #[getter]
    fn last_content_delta<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyString>>> {
        Ok(self
            .state
            .lock(py)?
            .inner
            .last_content_delta()
            .map(|d| PyString::new(py, d)))
    }

    /// Completed messages (objects are created once and reused).
    #[getter]
    fn messages(&self, py: Python<'_>) -> PyResult<Vec<Py<Message>>> {
        let mut locked = self.state.lock(py)?;
        let st = &mut *locked;
        let all = st.inner.messages();
        // A stray `<|call|>`/`<|return|>` may change the last message's end token.
        if let (Some(last_py), Some(last)) = (
            st.converted.last(),
            all.get(st.converted.len().wrapping_sub(1)),
        ) {
            if last_py.get().end != last.end.as_str() {
                st.converted.pop();
            }
        }
        for m in &all[st.converted.len()..] {
            st.converted.push(Py::new(py, Message::from(m))?);
        }
        Ok(st.converted.iter().map(|m| m.clone_ref(py)).collect())
    }

    /// Quirks recovered from so far.
    #[getter]
    fn recoveries(&self, py: Python<'_>) -> PyResult<Vec<Recovery>> {
        Ok(self
            .state
            .lock(py)?
            .inner
            .recoveries()
            .iter()
            .map(|r| Recovery {
                token_index: r.token_index,
                kind: r.kind.as_str(),
                detail: r.detail.clone(),
            })
            .collect())
    }

    /// How many recoveries of each kind happened (all of them; `recoveries` keeps
    /// the details of the first 100).
    #[getter]
    fn recovery_counts(&self, py: Python<'_>) -> PyResult<BTreeMap<&'static str, u64>> {
        let counts = self.state.lock(py)?.inner.recovery_counts();
        Ok(core::RecoveryKind::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.as_str(), n))
            .collect())
    }

    #[getter]
    fn tokens_processed(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.state.lock(py)?.inner.tokens_processed())
    }

    /// `len(messages)` without building the list (for per-token polling).
    #[getter]
    fn message_count(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.state.lock(py)?.inner.messages().len())
    }

    #[getter]
    fn strict(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.state.lock(py)?.inner.is_strict())
    }
}
