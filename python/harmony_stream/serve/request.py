"""The `POST /v1/responses` body: checked field by field, errors in OpenAI's shape.

The body is decoded strictly first (`decode_json`): no NaN or Infinity (nor a
float that overflows to infinity), no lone surrogate in any string or key, no
nesting deeper than `MAX_JSON_DEPTH`, no integer of more digits than Python
converts. The whole body is checked, unknown fields included, so nothing the
engine or the JSON writer cannot take gets past this point; the error names
the field.

Then only the fields the replay uses are read; each known field is type-checked
(a wrong type is an error even when the replay would not use it), and unknown
fields are ignored, so clients that send newer parameters keep working.
"""

from __future__ import annotations

import fnmatch
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .._native import MAX_COUNT, TOOL_TYPES

__all__ = [
    "LOGPROBS_INCLUDE",
    "MAX_JSON_DEPTH",
    "MAX_MCP_SERVERS",
    "MAX_OUTPUT_TOKENS",
    "SUPPORTED_TOOL_TYPES",
    "JsonProblem",
    "RequestError",
    "ResponsesRequest",
    "check_mcp_hosts",
    "decode_json",
    "error_body",
    "find_json_problem",
    "has_lone_surrogate",
    "parse_request",
]

# The tool types the engine routes (docs/architecture.md, Routing); anything else is a 400.
SUPPORTED_TOOL_TYPES = tuple(TOOL_TYPES)
LOGPROBS_INCLUDE = "message.output_text.logprobs"
MAX_TOP_LOGPROBS = 20
# The largest `max_output_tokens` (a signed 64-bit integer, as the engine counts).
MAX_OUTPUT_TOKENS = MAX_COUNT
# Objects and arrays inside one another, the body itself counting as one level.
MAX_JSON_DEPTH = 64
# `mcp` tools with a `server_url` in one request (each is one MCP session).
MAX_MCP_SERVERS = 8


class RequestError(Exception):
    """A request the server refuses: HTTP `status` with an OpenAI-style error body."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.type = type

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` as the OpenAI API answers."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class ResponsesRequest:
    """The parts of a Responses request that steer the replay."""

    model: str
    stream: bool = False
    input: str | list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_output_tokens: int | None = None
    include: list[str] = field(default_factory=list)
    top_logprobs: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    previous_response_id: str | None = None
    transcript: str | None = None
    # The body without `stream`, as canonical JSON (for ids derived from a seed).
    fingerprint: str = ""

    @property
    def logprobs(self) -> bool:
        """Whether output text deltas carry logprobs (``include`` asks for them)."""
        return LOGPROBS_INCLUDE in self.include

    @property
    def input_items(self) -> list[dict[str, Any]]:
        return self.input if isinstance(self.input, list) else []

    def count_input(self, item_type: str) -> int:
        return sum(1 for item in self.input_items if item.get("type") == item_type)

    def input_text(self) -> str:
        """The text of the input (a string, or every text part of the input items)."""
        if isinstance(self.input, str):
            return self.input
        texts: list[str] = []
        for item in self.input_items:
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(
                    part["text"]
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
        return "\n".join(texts)


# --------------------------------------------------------------------------- strict JSON


class _NonFinite:
    """Stands for a ``NaN``/``Infinity``/``-Infinity`` literal while the body is checked."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _LongInt:
    """Stands for an integer literal of more digits than Python converts."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _max_int_digits() -> int:
    get = getattr(sys, "get_int_max_str_digits", None)  # Python >= 3.11 (and patch releases)
    return int(get()) if get is not None else 0


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a lone UTF-16 surrogate (which is not text: UTF-8 cannot hold it)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# A path is built as linked pairs (parent, key or index), formatted only for an error.
_Path = tuple[Any, str | int] | None


def _format_path(path: _Path, prefix: str = "") -> str:
    parts: list[str | int] = []
    while path is not None:
        path, key = path
        parts.append(key)
    out = prefix
    for key in reversed(parts):
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else key
    return out


@dataclass(frozen=True)
class JsonProblem:
    """What is wrong in a decoded JSON value, and where (``tools[0].parameters.x``).

    ``kind`` is ``"lone_surrogate"``, ``"lone_surrogate_key"``, ``"non_finite"``,
    ``"too_deep"`` or ``"long_integer"``; ``what`` says it in words.
    """

    path: str
    kind: str
    what: str


def _plain(x: Any) -> bool:
    """A leaf that needs no check: null, a boolean, an integer, an ASCII string."""
    return x is None or type(x) in (bool, int) or (type(x) is str and x.isascii())


_SAFE_LEAVES = {type(None), bool, int}
_JSON_TYPES = {type(None), bool, int, float, str, dict, list}


def _looks_clean(value: Any, max_depth: int) -> bool:
    """Whether `value` surely holds no problem: one level at a time, in C where it can.

    Containers only are visited in Python; their leaves are checked in bulk (a
    set of types, ``all(map(math.isfinite, ...))``, one joined string per
    container), so a 4 MiB body is checked in tens of milliseconds.
    """
    if type(value) not in (dict, list):
        return False  # a lone leaf: the precise walk is as quick
    level = [value]
    depth = 1
    while level:
        if depth > max_depth:
            return False
        below: list[Any] = []
        for c in level:
            if type(c) is dict:
                keys = "".join(c)
                if not keys.isascii() and has_lone_surrogate(keys):
                    return False
                vals: Any = c.values()
            else:
                vals = c
            types = set(map(type, vals))
            if types <= _SAFE_LEAVES:
                continue
            if not types <= _JSON_TYPES:
                return False  # a NaN literal or an over-long integer
            if float in types and not all(
                map(math.isfinite, [x for x in vals if type(x) is float])
            ):
                return False
            if str in types:
                text = "".join([x for x in vals if type(x) is str])
                if not text.isascii() and has_lone_surrogate(text):
                    return False
            if dict in types or list in types:
                below.extend([x for x in vals if type(x) is dict or type(x) is list])
        level = below
        depth += 1
    return True


def find_json_problem(
    value: Any, *, prefix: str = "", max_depth: int = MAX_JSON_DEPTH
) -> JsonProblem | None:
    """The first thing in `value` that strict JSON text cannot carry, or None.

    Iterative (no recursion, whatever the depth); strings, keys and numbers
    anywhere in the value are checked. A quick pass first; only when it finds
    something is the value walked again keeping paths, to say where.
    """
    if _looks_clean(value, max_depth):
        return None
    stack: list[tuple[Any, int, _Path]] = [(value, 1, None)]
    while stack:
        v, depth, path = stack.pop()
        if isinstance(v, str):
            if has_lone_surrogate(v):
                return JsonProblem(
                    _format_path(path, prefix),
                    "lone_surrogate",
                    "the string holds a lone surrogate (such as \\ud800), which is not text",
                )
        elif isinstance(v, float):
            if not math.isfinite(v):
                return JsonProblem(
                    _format_path(path, prefix),
                    "non_finite",
                    f"{v} is a non-finite number, which JSON does not allow",
                )
        elif isinstance(v, dict | list):
            if depth > max_depth:
                return JsonProblem(
                    _format_path(path, prefix),
                    "too_deep",
                    f"the value is nested more than {max_depth} levels deep",
                )
            if isinstance(v, dict):
                for k, x in v.items():
                    if isinstance(k, str) and has_lone_surrogate(k):
                        return JsonProblem(
                            _format_path(path, prefix),
                            "lone_surrogate_key",
                            "a key holds a lone surrogate (such as \\ud800), which is not text",
                        )
                    if not _plain(x):
                        stack.append((x, depth + 1, (path, k)))
            else:
                for i, x in enumerate(v):
                    if not _plain(x):
                        stack.append((x, depth + 1, (path, i)))
        elif isinstance(v, _NonFinite):
            return JsonProblem(
                _format_path(path, prefix),
                "non_finite",
                f"{v.text} is a non-finite number, which JSON does not allow",
            )
        elif isinstance(v, _LongInt):
            return JsonProblem(
                _format_path(path, prefix),
                "long_integer",
                f"the integer has {v.digits} digits, more than the {_max_int_digits()} allowed",
            )
    return None


def _long_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    limit = _max_int_digits()
    return _LongInt(digits) if limit and digits > limit else int(text)


def _too_deep(param: str | None) -> RequestError:
    where = f"Invalid value for '{param}': the" if param else "The"
    return RequestError(
        f"{where} request body is nested more than {MAX_JSON_DEPTH} levels deep "
        "(objects and arrays inside one another).",
        param=param,
        code="json_too_deep",
    )


def decode_json(raw: bytes) -> Any:
    """The request body as JSON, strictly (see the module docstring); raises `RequestError`."""
    try:
        body = json.loads(raw, parse_constant=_NonFinite)
    except RecursionError:
        raise _too_deep(None) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(
            f"We could not parse the JSON body of your request: {e}. "
            "The body must be a JSON object.",
            code="invalid_json",
        ) from None
    except ValueError:
        # Python refuses to convert an integer of too many digits; parse again,
        # keeping such integers aside, to say which field holds one.
        try:
            body = json.loads(raw, parse_constant=_NonFinite, parse_int=_long_int)
        except (ValueError, RecursionError) as e:
            raise RequestError(
                f"We could not parse the JSON body of your request: {e}.", code="invalid_json"
            ) from None
    problem = find_json_problem(body)
    if problem is not None:
        if problem.kind == "too_deep":
            raise _too_deep(problem.path.split(".")[0].split("[")[0] or None)
        where = f"'{problem.path}'" if problem.path else "the request body"
        kind = "key in" if problem.kind == "lone_surrogate_key" else "value for"
        code = {
            "lone_surrogate": "invalid_string",
            "lone_surrogate_key": "invalid_string",
            "non_finite": "invalid_number",
            "long_integer": "integer_too_large",
        }[problem.kind]
        raise RequestError(
            f"Invalid {kind} {where}: {problem.what}.",
            param=problem.path or None,
            code=code,
        )
    return body


# --------------------------------------------------------------------------- fields


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _wrong_type(param: str, expected: str, value: Any) -> RequestError:
    return RequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)}.",
        param=param,
        code="invalid_type",
    )


def _opt(body: dict[str, Any], key: str, kind: type | tuple[type, ...], expected: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise _wrong_type(key, expected, value)
    if not isinstance(value, kind):
        raise _wrong_type(key, expected, value)
    return value


def _check_tool(i: int, tool: Any) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise _wrong_type(where, "an object", tool)
    kind = tool.get("type")
    if not isinstance(kind, str):
        raise _wrong_type(f"{where}.type", "a string", kind)
    if kind not in SUPPORTED_TOOL_TYPES:
        raise RequestError(
            f"Unsupported tool type '{kind}' in '{where}.type': this server supports "
            + ", ".join(f"'{t}'" for t in SUPPORTED_TOOL_TYPES)
            + ".",
            param=f"{where}.type",
            code="unsupported_tool_type",
        )
    required = {"function": "name", "mcp": "server_label"}.get(kind)
    if required is not None:
        value = tool.get(required)
        if not isinstance(value, str) or not value:
            if required not in tool:
                raise RequestError(
                    f"Missing required parameter: '{where}.{required}'.",
                    param=f"{where}.{required}",
                    code="missing_required_parameter",
                )
            raise _wrong_type(f"{where}.{required}", "a non-empty string", value)
    if kind == "mcp":
        url = tool.get("server_url")
        if url is not None and not isinstance(url, str):
            raise _wrong_type(f"{where}.server_url", "a string", url)
        if url is not None:
            _url_host(url, f"{where}.server_url")
    return tool


def _url_host(url: str, param: str) -> str:
    """The host of an MCP `server_url`, which must be an http(s) URL; raises `RequestError`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as e:
        raise RequestError(
            f"Invalid '{param}': {url!r} is not a valid URL ({e}).",
            param=param,
            code="invalid_url",
        ) from None
    if parts.scheme not in ("http", "https") or not host:
        raise RequestError(
            f"Invalid '{param}': {url!r} is not an http:// or https:// URL with a host.",
            param=param,
            code="invalid_url",
        )
    return host


def check_mcp_hosts(request: ResponsesRequest, allowed: Sequence[str]) -> None:
    """Every MCP `server_url` of the request has a host matching one of `allowed`.

    The patterns are host names or shell-style wildcards (``*.internal``,
    ``127.0.0.*``), matched without case; an IPv6 host is matched without its
    brackets. Raises `RequestError` (400) naming the first host not allowed.
    """
    for i, tool in enumerate(request.tools):
        url = tool.get("server_url") if tool["type"] == "mcp" else None
        if not isinstance(url, str):
            continue
        param = f"tools[{i}].server_url"
        host = _url_host(url, param).lower()
        if not any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in allowed):
            raise RequestError(
                f"MCP server host '{host}' in '{param}' is not allowed: this server connects "
                "only to the hosts in its mcp_allowed_hosts setting.",
                param=param,
                code="mcp_host_not_allowed",
            )


def parse_request(raw: bytes) -> ResponsesRequest:
    """Decodes and checks a request body; raises `RequestError` (HTTP 400)."""
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise RequestError(
            f"The request body must be a JSON object, got {_type_name(body)}.",
            code="invalid_json",
        )
    model = body.get("model")
    if model is None:
        raise RequestError(
            "Missing required parameter: 'model'.",
            param="model",
            code="missing_required_parameter",
        )
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    stream = _opt(body, "stream", bool, "a boolean")
    inp = body.get("input")
    if inp is None:
        inp = []
    elif isinstance(inp, list):
        for i, item in enumerate(inp):
            if not isinstance(item, dict):
                raise _wrong_type(f"input[{i}]", "an object", item)
    elif not isinstance(inp, str):
        raise _wrong_type("input", "a string or an array of input items", inp)
    tools = _opt(body, "tools", list, "an array of tools") or []
    tools = [_check_tool(i, t) for i, t in enumerate(tools)]
    servers = sum(1 for t in tools if t["type"] == "mcp" and t.get("server_url") is not None)
    if servers > MAX_MCP_SERVERS:
        raise RequestError(
            f"Too many MCP servers: a request may name at most {MAX_MCP_SERVERS} MCP servers "
            f"('mcp' tools with a 'server_url'); this one names {servers}.",
            param="tools",
            code="too_many_mcp_servers",
        )
    mot = _opt(body, "max_output_tokens", int, "an integer")
    if mot is not None and mot < 1:
        raise RequestError(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 1, "
            f"but got {mot} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )
    if mot is not None and mot > MAX_OUTPUT_TOKENS:
        raise RequestError(
            f"Invalid 'max_output_tokens': integer above maximum value. Expected a value <= "
            f"{MAX_OUTPUT_TOKENS} (2^53 - 1), but got {mot} instead.",
            param="max_output_tokens",
            code="integer_above_max_value",
        )
    include = _opt(body, "include", list, "an array of strings") or []
    for i, v in enumerate(include):
        if not isinstance(v, str):
            raise _wrong_type(f"include[{i}]", "a string", v)
    top = _opt(body, "top_logprobs", int, "an integer")
    if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
        raise RequestError(
            f"Invalid 'top_logprobs': expected a value between 0 and {MAX_TOP_LOGPROBS}, "
            f"but got {top} instead.",
            param="top_logprobs",
            code="invalid_value",
        )
    metadata = _opt(body, "metadata", dict, "an object") or {}
    for k, v in metadata.items():
        if not isinstance(v, str):
            raise _wrong_type(f"metadata.{k}", "a string", v)
    prev = _opt(body, "previous_response_id", str, "a string")
    transcript = _opt(body, "transcript", str, "a string")
    for key, kind, expected in (
        ("instructions", str, "a string"),
        ("temperature", (int, float), "a number"),
        ("top_p", (int, float), "a number"),
        ("parallel_tool_calls", bool, "a boolean"),
        ("store", bool, "a boolean"),
        ("background", bool, "a boolean"),
        ("stream_options", dict, "an object"),
        ("text", dict, "an object"),
        ("reasoning", dict, "an object"),
    ):
        _opt(body, key, kind, expected)
    return ResponsesRequest(
        model=model,
        stream=bool(stream),
        input=inp,
        tools=tools,
        max_output_tokens=mot,
        include=include,
        top_logprobs=top,
        metadata=metadata,
        previous_response_id=prev,
        transcript=transcript,
        fingerprint=json.dumps(
            {k: v for k, v in body.items() if k != "stream"}, sort_keys=True, default=str
        ),
    )
