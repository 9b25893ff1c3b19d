"""The `POST /v1/responses` body: checked field by field, errors in OpenAI's shape.

The body is decoded strictly first (`decode_json`): no NaN or Infinity (nor a
float that overflows to infinity), no lone surrogate in any string or key, no
nesting deeper than `MAX_JSON_DEPTH`, no integer of more digits than Python
converts. The whole body is checked, unknown fields included, so nothing the
engine or the JSON writer cannot take gets past this point; the error names
the field.

Then the fields are validated by typed models (`RequestBody`, pydantic in
strict mode): every known field is checked (a wrong type or a value out of the
API's range is an error even when the replay would not use it), the first
error is worded as OpenAI words it (``Invalid type for 'tools[0].server_url':
expected a string, but got an integer instead.``) with ``param`` naming the
field's path, and unknown fields are ignored, so clients that send newer
parameters keep working.
"""

from __future__ import annotations

import fnmatch
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from .._native import MAX_COUNT, TOOL_TYPES

__all__ = [
    "ECHOED_SETTINGS",
    "LOGPROBS_INCLUDE",
    "MAX_JSON_DEPTH",
    "MAX_MCP_SERVERS",
    "MAX_OUTPUT_TOKENS",
    "SUPPORTED_TOOL_TYPES",
    "JsonProblem",
    "RequestBody",
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
# The body's fields as typed models (pydantic, strict: no "1" for 1, no true for 1).
# Unknown fields are allowed (and ignored), as newer clients send newer parameters.


def _json_type(value: Any) -> str:
    """The JSON type of a decoded value, in OpenAI's words (``a string``, ``an integer``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _tool_kind(value: Any) -> str | None:
    """The union member of a tool: by its ``type``; None for a tool that is no object."""
    if not isinstance(value, dict):
        return None
    return {"function": "function", "mcp": "mcp"}.get(value.get("type"), "hosted")  # type: ignore[arg-type]


def _supported_type(value: str) -> str:
    if value not in SUPPORTED_TOOL_TYPES:
        raise PydanticCustomError(
            "unsupported_tool_type",
            "Unsupported tool type '{type}': this server supports {supported}.",
            {"type": value, "supported": ", ".join(f"'{t}'" for t in SUPPORTED_TOOL_TYPES)},
        )
    return value


def _http_url(value: str) -> str:
    try:
        _url_host(value, "server_url")
    except RequestError:
        raise PydanticCustomError(
            "invalid_url",
            "Invalid URL: {url!r} is not an http:// or https:// URL with a host.",
            {"url": value},
        ) from None
    return value


_Name = Annotated[str, StringConstraints(min_length=1)]


class _Body(BaseModel):
    """A part of the body: strict types, unknown fields kept (and ignored)."""

    model_config = ConfigDict(strict=True, extra="allow")


class FunctionTool(_Body):
    """A `function` tool: its `name` required."""

    type: Literal["function"]
    name: _Name


class McpTool(_Body):
    """An `mcp` tool: `server_label` required, `server_url` an http(s) URL if given."""

    type: Literal["mcp"]
    server_label: _Name
    server_url: Annotated[str, AfterValidator(_http_url)] | None = None


class HostedTool(_Body):
    """Any other tool: its `type` one the engine routes (`SUPPORTED_TOOL_TYPES`)."""

    type: Annotated[str, AfterValidator(_supported_type)]


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[McpTool, Tag("mcp")]
    | Annotated[HostedTool, Tag("hosted")],
    Discriminator(
        _tool_kind,
        custom_error_type="invalid_tool",
        custom_error_message="not a tool",
    ),
]


def _input_kind(value: Any) -> str | None:
    return "text" if isinstance(value, str) else "items" if isinstance(value, list) else None


Input = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[dict[str, Any]], Tag("items")],
    Discriminator(
        _input_kind,
        custom_error_type="invalid_input",
        custom_error_message="not an input",
    ),
]


class ToolChoiceFunction(_Body):
    """`tool_choice` naming a function."""

    type: Literal["function"]
    name: _Name


class ToolChoiceMcp(_Body):
    """`tool_choice` naming an MCP server (and one of its tools)."""

    type: Literal["mcp"]
    server_label: _Name
    name: str | None = None


class ToolChoiceAllowed(_Body):
    """`tool_choice` limiting the calls to `tools` (at least one with mode `required`)."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class ToolChoiceHosted(_Body):
    """`tool_choice` naming a hosted tool type (`code_interpreter`, ...)."""

    type: Annotated[str, AfterValidator(_supported_type)]


def _choice_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "mode"
    if not isinstance(value, dict):
        return None
    kinds = {"function": "function", "mcp": "mcp", "allowed_tools": "allowed_tools"}
    return kinds.get(value.get("type"), "hosted")  # type: ignore[arg-type]


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("mode")]
    | Annotated[ToolChoiceFunction, Tag("function")]
    | Annotated[ToolChoiceMcp, Tag("mcp")]
    | Annotated[ToolChoiceAllowed, Tag("allowed_tools")]
    | Annotated[ToolChoiceHosted, Tag("hosted")],
    Discriminator(
        _choice_kind,
        custom_error_type="invalid_tool_choice",
        custom_error_message="not a tool choice",
    ),
]

# Tags of the unions above: a step of a pydantic error location, not of the body.
_UNION_TAGS = {"function", "mcp", "hosted", "text", "items", "mode", "allowed_tools"}


class TextConfig(_Body):
    """`text`: the output format and verbosity."""

    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Body):
    """`reasoning`: effort and summary, as the API takes them."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class RequestBody(_Body):
    """A `POST /v1/responses` body: the fields the server reads, echoes or refuses.

    Value ranges are the API's (``temperature`` 0-2, ``top_logprobs`` 0-20, ...),
    ``max_output_tokens`` up to the engine's count limit.
    """

    model: str
    stream: bool | None = None
    input: Input | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)] | None = None
    include: list[str] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    metadata: dict[str, str] | None = None
    previous_response_id: str | None = None
    transcript: str | None = None
    instructions: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None
    background: bool | None = None
    stream_options: dict[str, Any] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    user: str | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    prompt: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: str | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    conversation: str | dict[str, Any] | None = None


_BODY = TypeAdapter(RequestBody)

# The request settings a response echoes (the fields of openai-python's `Response`
# a request sets), with the value shown when the request gives none (the engine's
# own defaults for the first six: `SETTING_DEFAULTS`). `store` is no field of
# `Response`: it is honoured (`store: false` keeps nothing) but not echoed.
ECHOED_SETTINGS: dict[str, Any] = {
    "instructions": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "temperature": None,
    "tool_choice": "auto",
    "top_p": None,
    "background": False,
    "max_tool_calls": None,
    "previous_response_id": None,
    "prompt": None,
    "prompt_cache_key": None,
    "prompt_cache_retention": None,
    "reasoning": None,
    "safety_identifier": None,
    "service_tier": None,
    "text": {"format": {"type": "text"}},
    "top_logprobs": None,
    "truncation": None,
    "user": None,
}


def _param(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as OpenAI names a field: ``tools[0].server_url``.

    The tag of a union member (``tools.0.mcp.server_url``, ``input.items.0``) is
    a step of the location but no field: it is left out.
    """
    out = ""
    for n, step in enumerate(loc):
        union_tag = (n == 2 and loc[0] == "tools") or (
            n == 1 and loc[0] in ("input", "tool_choice")
        )
        if union_tag and step in _UNION_TAGS:
            continue
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else step
    return out


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a decimal",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
    # The unions' own errors (their `Discriminator`s found no member).
    "invalid_tool": "an object",
    "invalid_input": "a string or an array of input items",
    "invalid_tool_choice": "a string or an object",
}


# pydantic's bound errors: OpenAI's sign, side and limit words.
_BOUNDS = {
    "greater_than_equal": (">=", "below", "minimum"),
    "greater_than": (">", "below", "minimum"),
    "less_than_equal": ("<=", "above", "maximum"),
    "less_than": ("<", "above", "maximum"),
}


def _request_error(error: ErrorDetails) -> RequestError:
    """One pydantic error as OpenAI words it (400, ``invalid_request_error``)."""
    param = _param(tuple(error["loc"]))
    kind = error["type"]
    value = error["input"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return RequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        return RequestError(
            f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} "
            "instead.",
            param=param,
            code="invalid_type",
        )
    if kind == "string_too_short":
        return RequestError(
            f"Invalid '{param}': empty string. Expected a string with minimum length "
            f"{ctx['min_length']}, but got an empty string instead.",
            param=param,
            code="empty_string",
        )
    bound = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
    number = "decimal" if isinstance(bound, float) else "integer"  # the field's type
    if isinstance(bound, float):
        bound = f"{bound:g}"
    if kind in _BOUNDS:
        sign, side, limit = _BOUNDS[kind]
        return RequestError(
            f"Invalid '{param}': {number} {side} {limit} value. Expected a value {sign} {bound}, "
            f"but got {value} instead.",
            param=param,
            code=f"{number}_{side}_{limit[:3]}_value",
        )
    if kind == "literal_error":
        return RequestError(
            f"Invalid value: {value!r}. Supported values are: {ctx['expected']}.",
            param=param,
            code="invalid_value",
        )
    if kind == "unsupported_tool_type":
        where = param if param.endswith(".type") else f"{param}.type"
        return RequestError(
            f"Unsupported tool type '{value}' in '{where}': this server supports "
            f"{ctx['supported']}.",
            param=where,
            code="unsupported_tool_type",
        )
    if kind == "invalid_url":
        return RequestError(
            f"Invalid '{param}': {value!r} is not an http:// or https:// URL with a host.",
            param=param,
            code="invalid_url",
        )
    return RequestError(f"Invalid value for '{param}'.", param=param, code="invalid_value")


@dataclass(frozen=True)
class ResponsesRequest:
    """A checked Responses request: what steers the replay, and what its response echoes."""

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
    # As the request gave it: "none", "auto", "required" or an object.
    tool_choice: str | dict[str, Any] = "auto"
    store: bool = True
    background: bool = False
    # The settings the response echoes (`ECHOED_SETTINGS`): given or default.
    settings: dict[str, Any] = field(default_factory=dict)
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


def _settings(given: dict[str, Any]) -> dict[str, Any]:
    """The echoed settings: each as the request gave it (checked), else its default."""
    out = dict(ECHOED_SETTINGS)
    out.update({k: given[k] for k in ECHOED_SETTINGS if given.get(k) is not None})
    return out


def parse_request(raw: bytes) -> ResponsesRequest:
    """Decodes and checks a request body; raises `RequestError` (HTTP 400)."""
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise RequestError(
            f"The request body must be a JSON object, but got {_json_type(data)} instead.",
            code="invalid_json",
        )
    try:
        body = _BODY.validate_python(data)
    except ValidationError as e:
        raise _request_error(e.errors(include_url=False)[0]) from None
    tools: list[dict[str, Any]] = data.get("tools") or []
    servers = sum(1 for t in tools if t["type"] == "mcp" and t.get("server_url") is not None)
    if servers > MAX_MCP_SERVERS:
        raise RequestError(
            f"Too many MCP servers: a request may name at most {MAX_MCP_SERVERS} MCP servers "
            f"('mcp' tools with a 'server_url'); this one names {servers}.",
            param="tools",
            code="too_many_mcp_servers",
        )
    if body.conversation is not None:
        raise RequestError(
            "Conversations are not supported by this replay server: chain responses "
            "with previous_response_id instead.",
            param="conversation",
            code="unsupported_parameter",
        )
    if body.background and body.store is False:
        raise RequestError(
            "A background response must be stored: background=true needs store=true (the default).",
            param="store",
            code="invalid_value",
        )
    settings = _settings(data)
    return ResponsesRequest(
        model=body.model,
        stream=bool(body.stream),
        input=data.get("input") or [],
        tools=tools,
        max_output_tokens=body.max_output_tokens,
        include=body.include or [],
        top_logprobs=body.top_logprobs,
        metadata=body.metadata or {},
        previous_response_id=body.previous_response_id,
        transcript=body.transcript,
        tool_choice=settings["tool_choice"],
        store=body.store is not False,
        background=bool(body.background),
        settings=settings,
        fingerprint=json.dumps(
            {k: v for k, v in data.items() if k != "stream"}, sort_keys=True, default=str
        ),
    )
