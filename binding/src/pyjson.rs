//! Python request data (tools, MCP tool lists) → JSON text, checked on the way.
//!
//! The engine echoes this JSON in its events, so it must be JSON every parser
//! takes. [`write`] walks the Python value once, writes it, and refuses what
//! JSON cannot hold, naming the path (`tools[0].parameters.properties.x.default`):
//!
//! * NaN and ±Infinity (a float): `InvalidRequestError` (a `ValueError`, as
//!   `json.dumps(allow_nan=False)` raises);
//! * a value of a type JSON has no form for (`set`, `bytes`, any object), or a
//!   dict key that is not a `str`: `TypeError` (as `json.dumps` raises);
//! * a string with a lone surrogate (not Unicode): `InvalidRequestError`;
//! * nesting deeper than [`MAX_DEPTH`] (or a value that contains itself):
//!   `InvalidRequestError`, never a stack overflow.
//!
//! Strings are written as [`core::json::push_str`] writes them, floats in their
//! shortest round-trip form, ints exactly.

use harmony_stream_core as core;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};

use crate::convert::type_name;
use crate::errors::invalid_request as invalid;

/// How deep request data may nest (JSON Schemas are a few levels deep; this is
/// far above any real one, and far below what the stack holds).
pub const MAX_DEPTH: usize = 128;

/// A path into request data, built as the walk goes down and cut back on the way up.
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Self {
        Self(root.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Runs `f` with `.key` (or `["key"]` when the key is not a plain name) appended.
    pub fn key<T>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'-')
            && !key.as_bytes()[0].is_ascii_digit();
        if plain {
            self.with(
                |p| {
                    p.push('.');
                    p.push_str(key);
                },
                f,
            )
        } else {
            self.entry(key, f)
        }
    }

    /// Runs `f` with `["key"]` appended (an entry of a mapping whose keys are data).
    pub fn entry<T>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.with(
            |p| {
                p.push('[');
                core::json::push_str(p, key);
                p.push(']');
            },
            f,
        )
    }

    /// Runs `f` with `[i]` appended.
    pub fn index<T>(&mut self, i: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        self.with(
            |p| {
                p.push('[');
                p.push_str(&i.to_string());
                p.push(']');
            },
            f,
        )
    }

    /// Runs `f` with what `step` appends to the path, then takes it off again.
    fn with<T>(&mut self, step: impl FnOnce(&mut String), f: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.0.len();
        step(&mut self.0);
        let out = f(self);
        self.0.truncate(len);
        out
    }
}

/// The JSON kind of a Python value, in words ("a number", "an object"...), or
/// `None` when JSON cannot hold it at all.
pub fn json_kind(v: &Bound<'_, PyAny>) -> Option<&'static str> {
    if v.is_none() {
        Some("null")
    } else if v.is_instance_of::<PyBool>() {
        Some("a boolean")
    } else if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
        Some("a number")
    } else if v.is_instance_of::<PyString>() {
        Some("a string")
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        Some("an array")
    } else if v.is_instance_of::<PyDict>() || v.cast::<PyMapping>().is_ok() {
        Some("an object")
    } else {
        None
    }
}

/// `TypeError`: `v` at `path` is nothing JSON can hold.
pub fn not_json(path: &Path, v: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "{} is an object of type {}, which JSON cannot hold",
        path.as_str(),
        type_name(v)
    ))
}

/// Wrong JSON kind at `path`: `InvalidRequestError` if `v` is JSON of another
/// kind, `TypeError` if it is not JSON at all. `want` is e.g. "a string or null".
pub fn wrong_kind(py: Python<'_>, path: &Path, v: &Bound<'_, PyAny>, want: &str) -> PyErr {
    match json_kind(v) {
        Some(kind) => invalid(py, format!("{} must be {want}, got {kind}", path.as_str())),
        None => not_json(path, v),
    }
}

/// The string at `path` (`InvalidRequestError` if it is not Unicode).
pub fn to_str<'a>(
    py: Python<'_>,
    path: &Path,
    s: &'a Bound<'_, PyString>,
) -> PyResult<std::borrow::Cow<'a, str>> {
    s.to_cow().map_err(|_| {
        invalid(
            py,
            format!(
                "{} is not valid Unicode (it holds a lone surrogate)",
                path.as_str()
            ),
        )
    })
}

/// The items of a dict or other mapping, as (key, value) pairs.
pub fn items<'py>(v: &Bound<'py, PyAny>) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    if let Ok(d) = v.cast::<PyDict>() {
        return Ok(d.iter().collect());
    }
    let mapping = v.cast::<PyMapping>()?;
    mapping
        .items()?
        .iter()
        .map(|pair| pair.extract::<(Bound<'py, PyAny>, Bound<'py, PyAny>)>())
        .collect()
}

/// A dict key: a `str` (anything else is a `TypeError`, JSON keys being strings).
pub fn key_str<'a>(
    py: Python<'_>,
    path: &Path,
    k: &'a Bound<'_, PyAny>,
) -> PyResult<std::borrow::Cow<'a, str>> {
    match k.cast::<PyString>() {
        Ok(s) => to_str(py, path, s),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{} has a key of type {}: JSON object keys are strings",
            path.as_str(),
            type_name(k)
        ))),
    }
}

/// Appends `v` as JSON, checking it (see the module documentation).
pub fn write(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    path: &mut Path,
    out: &mut String,
) -> PyResult<()> {
    write_at(py, v, path, 0, out)
}

fn write_at(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    path: &mut Path,
    depth: usize,
    out: &mut String,
) -> PyResult<()> {
    if v.is_none() {
        out.push_str("null");
    } else if v.is_instance_of::<PyBool>() {
        out.push_str(if v.is_truthy()? { "true" } else { "false" });
    } else if v.is_instance_of::<PyInt>() {
        match v.extract::<i64>() {
            Ok(n) => out.push_str(&n.to_string()),
            // A big int, or an int subclass: int.__repr__ gives its digits.
            Err(_) => {
                let digits = py.get_type::<PyInt>().call_method1("__repr__", (v,))?;
                out.push_str(digits.cast::<PyString>()?.to_str()?);
            }
        }
    } else if let Ok(f) = v.cast::<PyFloat>() {
        let x = f.value();
        if !core::json::push_finite_f64(out, x) {
            let shown = if x.is_nan() {
                "NaN"
            } else if x > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            return Err(invalid(
                py,
                format!("{} is {shown}: JSON has no NaN or Infinity", path.as_str()),
            ));
        }
    } else if let Ok(s) = v.cast::<PyString>() {
        core::json::push_str(out, &to_str(py, path, s)?);
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        deeper(py, path, depth)?;
        out.push('[');
        for (i, x) in v.try_iter()?.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let x = x?;
            path.index(i, |p| write_at(py, &x, p, depth + 1, out))?;
        }
        out.push(']');
    } else if v.is_instance_of::<PyDict>() || v.cast::<PyMapping>().is_ok() {
        deeper(py, path, depth)?;
        out.push('{');
        for (i, (k, x)) in items(v)?.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let k = key_str(py, path, k)?;
            core::json::push_str(out, &k);
            out.push(':');
            path.key(&k, |p| write_at(py, x, p, depth + 1, out))?;
        }
        out.push('}');
    } else {
        return Err(not_json(path, v));
    }
    Ok(())
}

fn deeper(py: Python<'_>, path: &Path, depth: usize) -> PyResult<()> {
    if depth >= MAX_DEPTH {
        return Err(invalid(
            py,
            format!(
                "{} nests deeper than {MAX_DEPTH} levels (or contains itself)",
                path.as_str()
            ),
        ));
    }
    Ok(())
}
