//! `harmony_stream._native`: the PyO3 binding of `harmony-stream-core`. This file
//! only declares the modules and registers what they define.
//!
//! One file per concept:
//!
//! * `vocab.rs`: `Vocab`;
//! * `parser.rs`: `HarmonyParser`, `Message`, `Recovery`, `StreamState`;
//! * `stream.rs`: `ResponseStream`, `ResponseEvent`, `feed_batch`;
//! * `convert.rs`: Python values → core values (token ids, arguments, logprobs);
//! * `tools.rs`: the request's tools and MCP tool lists → core tools and JSON;
//! * `pyjson.rs`: Python request data → checked JSON text;
//! * `guard.rs`: one call at a time per object, and the panic guard;
//! * `errors.rs`: the exception types and core error → Python exception.

mod convert;
mod errors;
mod guard;
mod parser;
mod pyjson;
mod stream;
mod tools;
mod vocab;

use harmony_stream_core as core;
use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::init(m.py())?;
    m.add_class::<vocab::Vocab>()?;
    m.add_class::<parser::HarmonyParser>()?;
    m.add_class::<parser::Message>()?;
    m.add_class::<parser::Recovery>()?;
    m.add_class::<parser::StreamState>()?;
    m.add_class::<stream::ResponseStream>()?;
    m.add_class::<stream::ResponseEvent>()?;
    m.add_function(wrap_pyfunction!(stream::feed_batch, m)?)?;
    m.add("VOCAB_SHA256", core::vocab::VOCAB_SHA256)?;
    m.add("MAX_COUNT", stream::MAX_COUNT as u64)?;
    // The Responses vocabulary the engine owns; Python imports these lists.
    let tool_types = pyo3::types::PyDict::new(m.py());
    for (name, kind) in core::TOOL_TYPES {
        tool_types.set_item(name, kind.as_str())?;
    }
    m.add("TOOL_TYPES", tool_types)?;
    m.add(
        "FINISH_REASONS",
        pyo3::types::PyTuple::new(m.py(), core::FinishReason::NAMES)?,
    )?;
    m.add(
        "CHANNELS",
        pyo3::types::PyTuple::new(m.py(), core::KNOWN_CHANNELS)?,
    )?;
    m.add_function(wrap_pyfunction!(tools::route, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
