//! The one place where core errors become Python exceptions.
//!
//! The exception classes are plain Python classes in `harmony_stream.errors`
//! (so they carry typed attributes and pickle); this module instantiates them.

use harmony_stream_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::BoundObject;

fn build(py: Python<'_>, class: &str, message: String, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
    let result = (|| -> PyResult<PyErr> {
        let module = py.import("harmony_stream.errors")?;
        let cls = module.getattr(class)?;
        let kwargs = PyDict::new(py);
        for (k, v) in attrs {
            kwargs.set_item(k, v)?;
        }
        let exc = cls.call((message.clone(),), Some(&kwargs))?;
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
pub fn to_pyerr(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    match err {
        Error::InvalidToken { index, token, .. } => build(
            py,
            "InvalidTokenError",
            message,
            &[
                ("token_index", pyval(py, index)),
                ("token", pyval(py, token)),
            ],
        ),
        Error::Parse { index, kind, .. } => build(
            py,
            "HarmonyError",
            message,
            &[
                ("token_index", pyval(py, index)),
                ("kind", pyval(py, kind.as_str())),
            ],
        ),
        Error::VocabNotFound { .. } => build(py, "VocabNotFoundError", message, &[]),
        Error::VocabHashMismatch { .. } => build(py, "VocabHashError", message, &[]),
        Error::VocabFormat { .. } => build(py, "VocabFormatError", message, &[]),
        Error::VocabIo { .. } => build(py, "VocabError", message, &[]),
        Error::StreamState(_) => build(py, "ResponseStateError", message, &[]),
        Error::InvalidRequest(_) => build(py, "InvalidRequestError", message, &[]),
    }
}

/// `InternalError`: a Rust panic caught at the boundary.
#[cold]
pub fn internal(py: Python<'_>, detail: String) -> PyErr {
    build(
        py,
        "InternalError",
        format!("internal error in harmony-stream (please report it): {detail}"),
        &[],
    )
}

/// The same exception class with another message.
#[cold]
pub fn with_message(py: Python<'_>, err: PyErr, message: String) -> PyErr {
    let cls = err.get_type(py);
    match cls.call1((message,)) {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => err,
    }
}

/// `InvalidTokenError` for a Python int too large for 64 bits.
#[cold]
pub fn huge_token(py: Python<'_>, index: usize, token: &Bound<'_, PyAny>, n_regular: u32) -> PyErr {
    let message = format!(
        "token id {token} at index {index} is not in the o200k_harmony vocabulary ({})",
        harmony_stream_core::error::valid_ids(n_regular)
    );
    build(
        py,
        "InvalidTokenError",
        message,
        &[
            ("token_index", pyval(py, index)),
            ("token", token.clone().unbind()),
        ],
    )
}

/// `StreamInUseError`: a call on a stream or parser while another call runs on it.
#[cold]
pub fn in_use(py: Python<'_>, message: String) -> PyErr {
    build(py, "StreamInUseError", message, &[])
}

/// `Result` conversion for `?` in `#[pymethods]`.
pub trait IntoPyResult<T> {
    /// Maps the core error with [`to_pyerr`].
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    #[inline]
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}
