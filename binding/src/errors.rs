//! The exception types, and the one place where core errors become Python exceptions.
//!
//! The classes are plain Python classes in `harmony_stream/errors.py` (multiple
//! bases such as `HarmonyError(HarmonyStreamError, ValueError)`, keyword-only
//! typed attributes, pickling, docstrings): [`init`] imports that module once, at
//! module init, and keeps the type objects here. No error path imports anything.
//! `errors.py` imports nothing from the extension, so this is the only edge
//! between the two and it points one way.

use harmony_stream_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use pyo3::BoundObject;

/// The module that defines the exception classes.
const MODULE: &str = "harmony_stream.errors";

/// The exception classes of `harmony_stream.errors`, looked up once.
struct Types {
    harmony: Py<PyType>,
    invalid_token: Py<PyType>,
    response_state: Py<PyType>,
    stream_in_use: Py<PyType>,
    invalid_request: Py<PyType>,
    internal: Py<PyType>,
    vocab: Py<PyType>,
    vocab_not_found: Py<PyType>,
    vocab_hash: Py<PyType>,
    vocab_format: Py<PyType>,
}

static TYPES: PyOnceLock<Types> = PyOnceLock::new();

fn load(py: Python<'_>) -> PyResult<Types> {
    let module = py.import(MODULE)?;
    let get = |name: &str| -> PyResult<Py<PyType>> {
        Ok(module.getattr(name)?.cast_into::<PyType>()?.unbind())
    };
    Ok(Types {
        harmony: get("HarmonyError")?,
        invalid_token: get("InvalidTokenError")?,
        response_state: get("ResponseStateError")?,
        stream_in_use: get("StreamInUseError")?,
        invalid_request: get("InvalidRequestError")?,
        internal: get("InternalError")?,
        vocab: get("VocabError")?,
        vocab_not_found: get("VocabNotFoundError")?,
        vocab_hash: get("VocabHashError")?,
        vocab_format: get("VocabFormatError")?,
    })
}

fn types(py: Python<'_>) -> PyResult<&'static Types> {
    TYPES.get_or_try_init(py, || load(py))
}

/// Looks the exception classes up (at module init: a missing or broken
/// `harmony_stream.errors` fails the import, not the first error).
pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    types(py).map(|_| ())
}

fn build(
    py: Python<'_>,
    class: fn(&Types) -> &Py<PyType>,
    message: String,
    attrs: &[(&str, Py<PyAny>)],
) -> PyErr {
    let result = (|| -> PyResult<PyErr> {
        let cls = class(types(py)?).bind(py);
        let exc = if attrs.is_empty() {
            cls.call1((message.clone(),))?
        } else {
            let kwargs = PyDict::new(py);
            for (k, v) in attrs {
                kwargs.set_item(k, v)?;
            }
            cls.call((message.clone(),), Some(&kwargs))?
        };
        Ok(PyErr::from_value(exc))
    })();
    result.unwrap_or_else(|e| {
        PyRuntimeError::new_err(format!(
            "{message} (and building the exception failed: {e})"
        ))
    })
}

fn pyval<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> Py<PyAny> {
    v.into_pyobject(py)
        .map(|b| b.into_any().unbind())
        .unwrap_or_else(|_| py.None())
}

/// Converts a core error into the matching `harmony_stream.errors` exception.
#[cold]
pub(crate) fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::InvalidToken { index, token, .. } => build(
            py,
            |t| &t.invalid_token,
            message,
            &[
                ("token_index", pyval(py, index)),
                ("token", pyval(py, token)),
            ],
        ),
        Error::Parse { index, kind, .. } => build(
            py,
            |t| &t.harmony,
            message,
            &[
                ("token_index", pyval(py, index)),
                ("kind", pyval(py, kind.as_str())),
            ],
        ),
        Error::VocabNotFound { .. } => build(py, |t| &t.vocab_not_found, message, &[]),
        Error::VocabHashMismatch { .. } => build(py, |t| &t.vocab_hash, message, &[]),
        Error::VocabFormat { .. } => build(py, |t| &t.vocab_format, message, &[]),
        Error::VocabIo { .. } | Error::VocabCannotEncode(_) => {
            build(py, |t| &t.vocab, message, &[])
        }
        Error::StreamState(_) => build(py, |t| &t.response_state, message, &[]),
        Error::InvalidRequest(_) => build(py, |t| &t.invalid_request, message, &[]),
    }
}

/// `InvalidRequestError` with this message.
#[cold]
pub(crate) fn invalid_request(py: Python<'_>, message: String) -> PyErr {
    to_pyerr(py, Error::InvalidRequest(message))
}

/// `InternalError`: a Rust panic caught at the boundary.
#[cold]
pub(crate) fn internal(py: Python<'_>, detail: String) -> PyErr {
    build(
        py,
        |t| &t.internal,
        format!("internal error in harmony-stream (please report it): {detail}"),
        &[],
    )
}

/// `StreamInUseError`: a call on a stream or parser while another call runs on it.
#[cold]
pub(crate) fn in_use(py: Python<'_>, message: String) -> PyErr {
    build(py, |t| &t.stream_in_use, message, &[])
}

/// The same exception class with another message.
#[cold]
pub(crate) fn with_message(py: Python<'_>, err: PyErr, message: String) -> PyErr {
    let cls = err.get_type(py);
    match cls.call1((message,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => err,
    }
}

/// `InvalidTokenError` for a Python int too large for 64 bits: the core's
/// message, with the id as Python writes it.
#[cold]
pub(crate) fn huge_token(
    py: Python<'_>,
    index: usize,
    token: &Bound<'_, PyAny>,
    n_regular: u32,
) -> PyErr {
    // The core writes the message for a placeholder id (no index or range in it
    // is negative, so the placeholder occurs once), replaced by the real one.
    let placeholder = i64::MIN;
    let message = Error::InvalidToken {
        index,
        token: placeholder,
        n_regular,
    }
    .to_string()
    .replacen(&placeholder.to_string(), &token.to_string(), 1);
    build(
        py,
        |t| &t.invalid_token,
        message,
        &[
            ("token_index", pyval(py, index)),
            ("token", token.clone().unbind()),
        ],
    )
}

/// `Result` conversion for `?` in `#[pymethods]`.
pub(crate) trait IntoPyResult<T> {
    /// Maps the core error with [`to_pyerr`].
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    #[inline]
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}
