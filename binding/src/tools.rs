//! The request's tools and MCP tool lists: Python values → `core::Tool`s and the
//! JSON the engine echoes (written and checked by `pyjson`).

use harmony_stream_core as core;
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyMapping, PyString, PyTuple};

use crate::convert::type_name;
use crate::errors::invalid_request as invalid;
use crate::pyjson::{self, json_kind, wrong_kind, Path};

/// A field of a tool object (`None` when absent).
fn field<'py>(obj: &Bound<'py, PyAny>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Ok(d) = obj.cast::<PyDict>() {
        return d.get_item(key);
    }
    match obj.get_item(key) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<PyKeyError>(obj.py()) => Ok(None),
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
    let Some(tool_type) = core::ToolType::parse(&kind) else {
        let known: Vec<&str> = core::TOOL_TYPES.iter().map(|(n, _)| *n).collect();
        return Err(invalid(
            py,
            format!(
                "{} has unsupported type {kind:?}: supported types are {}",
                path.as_str(),
                known.join(", ")
            ),
        ));
    };
    let parsed = match tool_type {
        core::ToolType::Function => {
            let name = need_str(py, &tool, path, &kind, "name")?;
            check_field(py, &tool, path, "description", Kind::OptStr)?;
            check_field(py, &tool, path, "parameters", Kind::OptObject)?;
            check_field(py, &tool, path, "strict", Kind::OptBool)?;
            core::Tool::Function { name }
        }
        core::ToolType::Mcp => {
            let server_label = need_str(py, &tool, path, &kind, "server_label")?;
            for key in ["server_url", "server_description", "authorization"] {
                check_field(py, &tool, path, key, Kind::OptStr)?;
            }
            check_field(py, &tool, path, "headers", Kind::OptStrMap)?;
            core::Tool::Mcp { server_label }
        }
        core::ToolType::WebSearch => core::Tool::WebSearch,
        core::ToolType::CodeInterpreter => {
            let container = check_field(py, &tool, path, "container", Kind::StrOrObject)?;
            let container_id = match container {
                Some(c) if c.is_instance_of::<PyString>() => Some(path.key("container", |p| {
                    pyjson::to_str(py, p, c.cast::<PyString>()?).map(|s| s.into_owned())
                })?),
                _ => None,
            };
            core::Tool::CodeInterpreter { container_id }
        }
    };
    pyjson::write(py, &tool, path, out)?;
    Ok(parsed)
}

/// Reads the request's tools: a list of dicts (or pydantic models) with a `type`;
/// returns them and their JSON.
pub(crate) fn parse_tools(
    py: Python<'_>,
    tools: &Bound<'_, PyAny>,
) -> PyResult<(Vec<core::Tool>, String)> {
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

/// The items of the dict argument `name` with the JSON path that names it; a
/// `TypeError` saying `what` (and what `value` is) when it is not a dict.
#[allow(clippy::type_complexity)]
fn dict_items<'py>(
    value: &Bound<'py, PyAny>,
    name: &str,
    what: &str,
) -> PyResult<(Path, Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>)> {
    if json_kind(value) != Some("an object") {
        return Err(PyTypeError::new_err(format!(
            "{name} must be {what}, got {}",
            type_name(value)
        )));
    }
    Ok((Path::new(name), pyjson::items(value)?))
}

/// `mcp_tool_lists`: server_label → the server's tools; each becomes an
/// `mcp_list_tools` item. Returns `(label, tools JSON array)` pairs.
pub(crate) fn parse_mcp_lists(
    py: Python<'_>,
    lists: &Bound<'_, PyAny>,
    tools: &[core::Tool],
) -> PyResult<Vec<(String, String)>> {
    let (mut path, items) = dict_items(
        lists,
        "mcp_tool_lists",
        "a dict of server_label to a list of tools",
    )?;
    let mut out = Vec::new();
    for (label, list) in items {
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

/// The item a message to `recipient` on `channel` becomes with the request's
/// `tools` (the engine's routing): `(item type, tool type or None, function
/// name or MCP server label, "" for other kinds)`.
#[pyfunction]
#[pyo3(signature = (recipient, channel=None, tools=None))]
pub(crate) fn route(
    py: Python<'_>,
    recipient: Option<String>,
    channel: Option<String>,
    tools: Option<&Bound<'_, PyAny>>,
) -> PyResult<(&'static str, Option<&'static str>, String)> {
    let tools = match tools {
        Some(t) => parse_tools(py, t)?.0,
        None => Vec::new(),
    };
    let header = core::Header {
        recipient,
        channel,
        ..core::Header::new(core::Role::Assistant)
    };
    let route = core::route_with_tools(&header, &tools);
    let (tool_type, name) = match route.tool() {
        Some((t, n)) => (Some(t.as_str()), n.to_string()),
        None => (None, String::new()),
    };
    Ok((route.item_type(), tool_type, name))
}

/// `settings`: the request settings echoed in the response (`temperature`,
/// `tool_choice`, ...), as `(key, JSON value)` pairs. A key the engine writes
/// itself (`id`, `output`, `usage`, ...: `core::ENGINE_KEYS`) is refused.
pub(crate) fn parse_settings(
    py: Python<'_>,
    settings: &Bound<'_, PyAny>,
) -> PyResult<Vec<(String, String)>> {
    let (mut path, items) = dict_items(
        settings,
        "settings",
        "a dict of setting name to a JSON value",
    )?;
    let mut out = Vec::new();
    for (k, v) in items {
        let k = pyjson::key_str(py, &path, &k)?.into_owned();
        if core::ENGINE_KEYS.contains(&k.as_str()) {
            return Err(invalid(
                py,
                format!("settings names {k:?}, which the engine writes itself"),
            ));
        }
        let mut json = String::new();
        path.entry(&k, |p| pyjson::write(py, &v, p, &mut json))?;
        out.push((k, json));
    }
    Ok(out)
}
