"""The `POST /v1/responses` body: checked field by field, errors in OpenAI's shape.

Only the fields the replay uses are read; each known field is type-checked
(a wrong type is an error even when the replay would not use it), and unknown
fields are ignored, so clients that send newer parameters keep working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LOGPROBS_INCLUDE",
    "SUPPORTED_TOOL_TYPES",
    "RequestError",
    "ResponsesRequest",
    "error_body",
    "parse_request",
]

# The tool types the engine routes (DESIGN §4); anything else is a 400.
SUPPORTED_TOOL_TYPES = ("function", "mcp", "web_search_preview", "web_search", "code_interpreter")
LOGPROBS_INCLUDE = "message.output_text.logprobs"
MAX_TOP_LOGPROBS = 20


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
    return tool


def parse_request(raw: bytes) -> ResponsesRequest:
    """Decodes and checks a request body; raises `RequestError` (HTTP 400)."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(
            f"We could not parse the JSON body of your request: {e}. "
            "The body must be a JSON object.",
            code="invalid_json",
        ) from None
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
    mot = _opt(body, "max_output_tokens", int, "an integer")
    if mot is not None and mot < 1:
        raise RequestError(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 1, "
            f"but got {mot} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
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
