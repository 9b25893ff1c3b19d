//! One call at a time, and Rust panics kept inside: the guard shared by
//! `HarmonyParser` and `ResponseStream`.
//!
//! * [`Exclusive`]: the lock of a frozen class. A call that finds another call
//!   running on the object (another thread, or a callback from inside a call)
//!   raises `StreamInUseError` at once, never waits.
//! * [`run`]: runs core work under `catch_unwind` ([`catching`]). A panic
//!   becomes `InternalError` and sets the object's `poisoned` flag
//!   ([`panicked`]); a poisoned object refuses further work
//!   ([`poisoned_error`]; `ResponseStream.finish("error")` still ends the
//!   response, see `stream.rs`, whose per-token call spells `run` out).

use std::sync::{Mutex, MutexGuard, TryLockError};

use harmony_stream_core as core;
use pyo3::prelude::*;

use crate::errors::{self, IntoPyResult};

/// What an [`Exclusive`] holds: the object's state, which names the object in
/// the `StreamInUseError` message.
pub(crate) trait InUse {
    /// The `StreamInUseError` message.
    const IN_USE: &'static str;
}

/// A value that one call at a time may use (a `Mutex` and nothing else: the
/// message comes with the type).
pub(crate) struct Exclusive<T>(Mutex<T>);

impl<T: InUse> Exclusive<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    /// The value, or `StreamInUseError` when another call holds it.
    #[inline]
    pub(crate) fn lock(&self, py: Python<'_>) -> PyResult<MutexGuard<'_, T>> {
        self.try_lock()
            .ok_or_else(|| errors::in_use(py, T::IN_USE.to_string()))
    }

    /// The value, or `None` when another call holds it. A lock poisoned by a
    /// panic is taken anyway (the `poisoned` flags say what the panic left).
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// Runs core work, turning a Rust panic into its message (never an abort).
pub(crate) fn catching<T>(f: impl FnOnce() -> core::Result<T>) -> Result<core::Result<T>, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string())
    })
}

/// `InternalError` for an object a panic poisoned earlier (`what`: "parser", "stream").
#[cold]
pub(crate) fn poisoned_error(py: Python<'_>, what: &str) -> PyErr {
    errors::internal(
        py,
        format!("this {what} hit an internal error earlier and cannot be used"),
    )
}

/// Runs `f` unless `poisoned` (without the GIL when `detach`): a core error
/// becomes its exception, a panic sets `poisoned` and becomes `InternalError`.
#[inline]
pub(crate) fn run<T: Send>(
    py: Python<'_>,
    poisoned: &mut bool,
    what: &str,
    detach: bool,
    f: impl FnOnce() -> core::Result<T> + Send,
) -> PyResult<T> {
    if *poisoned {
        return Err(poisoned_error(py, what));
    }
    let result = if detach {
        py.detach(|| catching(f))
    } else {
        catching(f)
    };
    match result {
        Ok(r) => r.py_err(py),
        Err(msg) => Err(panicked(py, poisoned, msg)),
    }
}

/// A panic caught by [`catching`]: sets `poisoned`; the `InternalError` to raise.
#[cold]
pub(crate) fn panicked(py: Python<'_>, poisoned: &mut bool, msg: String) -> PyErr {
    *poisoned = true;
    errors::internal(py, msg)
}
