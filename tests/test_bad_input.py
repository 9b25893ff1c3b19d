"""Bad input: a clear typed exception, and the parser exactly as it was before."""

from __future__ import annotations

from typing import Any

import pytest

from harmony_stream import HarmonyError, HarmonyParser, InvalidTokenError, Vocab

START, CHANNEL, MESSAGE, END = 200006, 200005, 200008, 200007


def snapshot(p: HarmonyParser) -> tuple[Any, ...]:
    return (
        p.state,
        p.current_role,
        p.current_channel,
        p.current_recipient,
        p.current_content_type,
        p.current_content,
        p.last_content_delta,
        p.tokens_processed,
        [m.to_dict() for m in p.messages],
        [(r.token_index, r.kind) for r in p.recoveries],
    )


def stream(enc: Any) -> list[int]:
    return [CHANNEL, *enc.encode("final"), MESSAGE, *enc.encode("Hello, world! 🌸"), END]


@pytest.mark.parametrize("bad", [-1, 201_089, 2**31, 2**40, 2**70, -(2**70)])
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("at", [0, 2, 4])
def test_invalid_ids_raise_and_change_nothing(
    enc: Any, vocab: Vocab, bad: int, strict: bool, at: int
) -> None:
    toks = stream(enc)
    p = HarmonyParser(vocab, strict=strict)
    p.process_many(toks[:at])
    before = snapshot(p)
    with pytest.raises(InvalidTokenError) as info:
        p.process(bad)
    assert info.value.token_index == at
    assert info.value.token == bad
    assert "not in the o200k_harmony vocabulary" in str(info.value)
    assert isinstance(info.value, HarmonyError)
    assert isinstance(info.value, ValueError)
    assert snapshot(p) == before
    # The stream goes on as if the bad id had never been sent.
    p.process_many(toks[at:])
    ref = HarmonyParser(vocab, strict=strict)
    ref.process_many(toks)
    assert snapshot(p) == snapshot(ref)


@pytest.mark.parametrize("bad", ["5", 5.0, None, True, b"\x05", [5]])
def test_non_int_ids_raise_type_error(vocab: Vocab, bad: Any) -> None:
    p = HarmonyParser(vocab)
    before = snapshot(p)
    with pytest.raises(TypeError, match="token ids must be int"):
        p.process(bad)
    assert snapshot(p) == before


def test_process_many_checks_every_id_first(enc: Any, vocab: Vocab) -> None:
    toks = stream(enc)
    p = HarmonyParser(vocab)
    with pytest.raises(InvalidTokenError) as info:
        p.process_many([*toks[:3], 999_999, *toks[3:]])
    assert info.value.token_index == 3
    assert info.value.token == 999_999
    assert p.tokens_processed == 0
    with pytest.raises(TypeError):
        p.process_many([*toks[:3], "x"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        p.process_many("abc")  # type: ignore[arg-type]
    assert p.tokens_processed == 0


def test_numpy_like_ints_are_accepted(enc: Any, vocab: Vocab) -> None:
    class Index:
        def __init__(self, v: int) -> None:
            self.v = v

        def __index__(self) -> int:
            return self.v

    p = HarmonyParser(vocab)
    p.process_many([Index(t) for t in stream(enc)])
    assert p.messages[0].content == "Hello, world! 🌸"


def test_strict_error_leaves_parser_unchanged(enc: Any, vocab: Vocab) -> None:
    p = HarmonyParser(vocab, role=None, strict=True)
    before = snapshot(p)
    with pytest.raises(HarmonyError) as info:
        p.process(CHANNEL)
    assert info.value.kind == "unexpected_token"
    assert snapshot(p) == before
    # A header error at <|message|>: the header stays open.
    p.process_many([START, *enc.encode("bogus")])
    before = snapshot(p)
    with pytest.raises(HarmonyError, match="Unknown role") as info:
        p.process(MESSAGE)
    assert info.value.kind == "unknown_role"
    assert info.value.token_index == 1 + len(enc.encode("bogus"))
    assert snapshot(p) == before


def test_eos_in_header_strict(vocab: Vocab) -> None:
    p = HarmonyParser(vocab, strict=True)
    p.process(CHANNEL)
    with pytest.raises(HarmonyError) as info:
        p.process_eos()
    assert info.value.kind == "unexpected_eos"
    assert info.value.token_index == 1


def test_bad_constructor_arguments(vocab: Vocab) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        HarmonyParser(vocab, "robot")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        HarmonyParser("not a vocab")  # type: ignore[arg-type]


def test_exceptions_pickle(vocab: Vocab) -> None:
    import pickle

    p = HarmonyParser(vocab)
    with pytest.raises(InvalidTokenError) as info:
        p.process(-5)
    again = pickle.loads(pickle.dumps(info.value))
    assert (type(again), str(again), again.token_index, again.token) == (
        InvalidTokenError,
        str(info.value),
        0,
        -5,
    )


# --------------------------------------------------------------------------------------
# ResponseStream input (issue 13): JSON that no strict parser refuses, checked arguments
# --------------------------------------------------------------------------------------

import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harmony_stream import (  # noqa: E402
    InternalError,
    InvalidRequestError,
    ResponseStateError,
    ResponseStream,
    feed_batch,
)
from harmony_stream.errors import StreamInUseError  # noqa: E402

RETURN, CALL = 200002, 200012
THE = 290  # " the"
FINAL = [CHANNEL, 17196, MESSAGE]  # <|channel|>final<|message|>
ANALYSIS = [CHANNEL, 35644, MESSAGE]  # <|channel|>analysis<|message|>
NEXT_TURN = [START, 173781]  # <|start|>assistant
GITHUB = {"type": "mcp", "server_label": "github", "server_url": "http://127.0.0.1:8765/mcp"}


def _no_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def strict_loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity (as every other parser does)."""
    return json.loads(text, parse_constant=_no_constant)


def strict_sse(data: bytes) -> list[dict[str, Any]]:
    return [
        strict_loads(block.split("\n")[1].removeprefix("data: "))
        for block in data.decode().split("\n\n")
        if block
    ]


def every_json(s: ResponseStream, events: list[Any]) -> list[Any]:
    """Every JSON text a stream gave out, strictly parsed."""
    out = [strict_loads(e.model_dump_json()) for e in events]
    out += [strict_loads(e.to_sse().split(b"\ndata: ", 1)[1]) for e in events]
    out.append(strict_loads(s.response_json()))
    return out


NON_FINITE = [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity")]


def _tool_with(value: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"x": {"type": "number", "default": value}}}
    return {"type": "function", "name": "f", "parameters": schema}


@pytest.mark.parametrize(("value", "shown"), NON_FINITE)
def test_non_finite_numbers_in_tools_are_refused_naming_the_path(
    vocab: Vocab, value: float, shown: str
) -> None:
    import numpy as np

    cases: list[tuple[dict[str, Any], str]] = [
        ({"tools": [_tool_with(value)]}, "tools[0].parameters.properties.x.default"),
        # numpy's float64 is a float: the same rule.
        (
            {"tools": [GITHUB, _tool_with(np.float64(value))]},
            "tools[1].parameters.properties.x.default",
        ),
        (
            {"tools": [{"type": "function", "name": "g", "parameters": {"enum": [1, 2.5, value]}}]},
            "tools[0].parameters.enum[2]",
        ),
        (
            {"tools": [{"type": "function", "name": "g", "parameters": {"a b": {"c": value}}}]},
            'tools[0].parameters["a b"].c',
        ),
        (
            {
                "tools": [GITHUB],
                "mcp_tool_lists": {
                    "github": [
                        {"name": "a", "input_schema": {}},
                        {"name": "b", "input_schema": {"properties": {"y": {"maximum": value}}}},
                    ]
                },
            },
            'mcp_tool_lists["github"][1].input_schema.properties.y.maximum',
        ),
    ]
    for kwargs, path in cases:
        with pytest.raises(InvalidRequestError) as info:
            ResponseStream(vocab, **kwargs)
        assert str(info.value) == f"{path} is {shown}: JSON has no NaN or Infinity"
        assert isinstance(info.value, ValueError)


def test_tools_json_is_strict_json_and_numbers_come_back_unchanged(vocab: Vocab) -> None:
    # The tools are echoed in every response: each value comes back exactly, the
    # floats in a form a strict parser reads back as the same float.
    params = {
        "type": "object",
        "properties": {"x": {"type": "number", "default": 1e308, "minimum": -5e-324}},
        "enum": [0.1, -0.0, 1.0, 2**70, -(2**70), True, None, 'é"\\\n🌸'],
        "nested": [[[]], {}, {"k": [1.5]}],
    }
    tools = [{"type": "function", "name": "f", "parameters": params, "strict": True}]
    s = ResponseStream(vocab, tools=tools, created_at=0)
    events = s.start() + s.feed([*FINAL, THE, RETURN]) + s.finish()
    for doc in every_json(s, events):
        resp = doc.get("response", doc)
        if "tools" in resp:
            assert resp["tools"] == tools
            assert math.copysign(1, resp["tools"][0]["parameters"]["enum"][1]) == -1  # -0.0


def test_pydantic_tools_are_read_like_dicts(vocab: Vocab) -> None:
    from openai.types.responses import FunctionTool

    tool = FunctionTool(type="function", name="f", parameters={"x": {"default": 0.5}})
    # (The stub types tools as mappings; pydantic models are read as their dump.)
    s = ResponseStream(vocab, tools=[tool], created_at=0)  # type: ignore[list-item]
    assert s.response()["tools"] == [tool.model_dump(exclude_none=True)]
    bad = FunctionTool(type="function", name="f", parameters={"x": {"default": math.nan}})
    with pytest.raises(InvalidRequestError, match=r"^tools\[0\]\.parameters\.x\.default is NaN"):
        ResponseStream(vocab, tools=[bad])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("tools", "exc", "message"),
    [
        # Python values JSON cannot hold: TypeError, like json.dumps.
        (
            [{"type": "function", "name": "f", "parameters": {"x": object()}}],
            TypeError,
            "tools[0].parameters.x is an object of type object, which JSON cannot hold",
        ),
        (
            [{"type": "function", "name": "f", "parameters": {"x": {1, 2}}}],
            TypeError,
            "tools[0].parameters.x is an object of type set, which JSON cannot hold",
        ),
        (
            [{"type": "function", "name": "f", "parameters": {5: "x"}}],
            TypeError,
            "tools[0].parameters has a key of type int: JSON object keys are strings",
        ),
        (
            [{"type": "function", "name": "f", "parameters": {"x": "\ud800"}}],
            InvalidRequestError,
            "tools[0].parameters.x is not valid Unicode (it holds a lone surrogate)",
        ),
        # JSON of the wrong shape for openai-python's FunctionTool: InvalidRequestError.
        (
            [{"type": "function", "name": "f", "parameters": [1]}],
            InvalidRequestError,
            "tools[0].parameters must be an object or null, got an array",
        ),
        (
            [{"type": "function", "name": "f", "strict": 2}],
            InvalidRequestError,
            "tools[0].strict must be a boolean or null, got a number",
        ),
        (
            [{"type": "function", "name": "f", "description": 5}],
            InvalidRequestError,
            "tools[0].description must be a string or null, got a number",
        ),
        (
            [{"type": "function", "name": 5}],
            InvalidRequestError,
            "tools[0].name must be a string, got a number",
        ),
        (
            [{"type": 5}],
            InvalidRequestError,
            "tools[0].type must be a string, got a number",
        ),
        (
            [GITHUB, {"type": "mcp", "server_label": "x", "headers": {"a": 1}}],
            InvalidRequestError,
            "tools[1].headers.a must be a string, got a number",
        ),
        (
            [{"type": "mcp", "server_label": "x", "server_url": 5}],
            InvalidRequestError,
            "tools[0].server_url must be a string or null, got a number",
        ),
    ],
)
def test_tool_fields_of_the_wrong_kind_are_refused_naming_the_path(
    vocab: Vocab, tools: list[Any], exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        ResponseStream(vocab, tools=tools)
    assert str(info.value) == message
    if exc is InvalidRequestError and "Unicode" not in message:
        # The oracle: openai-python's Tool type refuses the same tool.
        from openai.types.responses import Tool
        from pydantic import TypeAdapter, ValidationError

        with pytest.raises(ValidationError):
            TypeAdapter(list[Tool]).validate_python(tools)


def test_deep_or_circular_tools_are_refused_not_crashed(vocab: Vocab) -> None:
    deep: Any = {}
    node = deep
    for _ in range(100_000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidRequestError, match=r"nests deeper than \d+ levels"):
        ResponseStream(vocab, tools=[{"type": "function", "name": "f", "parameters": deep}])
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InvalidRequestError, match=r"^tools\[0\]\.parameters(\.self)+ nests deeper"):
        ResponseStream(vocab, tools=[{"type": "function", "name": "f", "parameters": loop}])
    # 100 levels is a legitimate (if odd) schema.
    ok: Any = {}
    node = ok
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    s = ResponseStream(vocab, tools=[{"type": "function", "name": "f", "parameters": ok}])
    assert s.response()["tools"][0]["parameters"] == ok


# The fields of openai-python's McpListToolsTool: name (str), input_schema (required),
# description (str or null), annotations (null or any object). The MCP specification
# makes input_schema a JSON Schema object, and a field openai-python does not know is
# refused (it would be an unknown field in every event that carries the item).
MCP_LIST_CASES: list[tuple[Any, type[Exception], str]] = [
    (5, InvalidRequestError, 'mcp_tool_lists["github"] must be a list of tools, got a number'),
    (
        {"name": "x"},
        InvalidRequestError,
        'mcp_tool_lists["github"] must be a list of tools, got an object',
    ),
    ("abc", InvalidRequestError, 'mcp_tool_lists["github"] must be a list of tools, got a string'),
    (
        [5],
        InvalidRequestError,
        'mcp_tool_lists["github"][0] must be an object (a tool), got a number',
    ),
    (
        [{"input_schema": {}}],
        InvalidRequestError,
        'mcp_tool_lists["github"][0].name is missing: a tool needs a name',
    ),
    (
        [{"name": 5, "input_schema": {}}],
        InvalidRequestError,
        'mcp_tool_lists["github"][0].name must be a string, got a number',
    ),
    (
        [{"name": "a", "input_schema": {}}, {"name": "b"}],
        InvalidRequestError,
        'mcp_tool_lists["github"][1].input_schema is missing: a tool needs an input_schema',
    ),
    (
        [{"name": "a", "input_schema": 5}],
        InvalidRequestError,
        'mcp_tool_lists["github"][0].input_schema must be an object, got a number',
    ),
    (
        [{"name": "a", "input_schema": {}, "description": 5}],
        InvalidRequestError,
        'mcp_tool_lists["github"][0].description must be a string or null, got a number',
    ),
    (
        [{"name": "a", "input_schema": {}, "annotations": [1]}],
        InvalidRequestError,
        'mcp_tool_lists["github"][0].annotations must be an object or null, got an array',
    ),
    (
        [{"name": "a", "inputSchema": {}}],
        InvalidRequestError,
        'mcp_tool_lists["github"][0] has an unknown field "inputSchema": a tool has name, '
        "input_schema, description and annotations",
    ),
    (
        object(),
        TypeError,
        'mcp_tool_lists["github"] is an object of type object, which JSON cannot hold',
    ),
]


@pytest.mark.parametrize(("tools", "exc", "message"), MCP_LIST_CASES)
def test_mcp_tool_lists_of_the_wrong_shape_are_refused_naming_the_path(
    vocab: Vocab, tools: Any, exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        ResponseStream(vocab, tools=[GITHUB], mcp_tool_lists={"github": tools})
    assert str(info.value) == message


def test_mcp_tool_lists_accepted_make_items_openai_python_takes(vocab: Vocab) -> None:
    lists: dict[str, tuple[dict[str, Any], ...]] = {
        "github": (
            {"name": "a", "input_schema": {"type": "object"}},
            {"name": "b", "input_schema": {}, "description": None, "annotations": None},
            {"name": "c", "input_schema": {}, "description": "d", "annotations": {"k": 1}},
        )
    }
    s = ResponseStream(vocab, tools=[GITHUB], mcp_tool_lists=lists)
    events = s.start()
    for e in events:
        e.to_openai()
    (done,) = [e.model_dump() for e in events if e.type == "response.output_item.done"]
    assert done["item"]["tools"] == [dict(t) for t in lists["github"]]


@pytest.mark.parametrize(
    ("bad", "exc", "message"),
    [
        (
            [1],
            TypeError,
            "mcp_tool_lists must be a dict of server_label to a list of tools, got list",
        ),
        ({5: []}, TypeError, "mcp_tool_lists keys are server labels (str), got int"),
    ],
)
def test_mcp_tool_lists_itself_of_the_wrong_type(
    vocab: Vocab, bad: Any, exc: type[Exception], message: str
) -> None:
    with pytest.raises(exc) as info:
        ResponseStream(vocab, tools=[GITHUB], mcp_tool_lists=bad)
    assert str(info.value) == message


# --- logprobs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lps", "where", "shown"),
    [
        ([0.5], "logprobs[0]", "0.5"),
        ([5e-324], "logprobs[0]", "5e-324"),
        ([1e308], "logprobs[0]", "1e+308"),
        ([math.inf], "logprobs[0]", "+inf"),
        ([math.nan], "logprobs[0]", "NaN"),
        (
            [-1.0, (-0.5, [(THE, -1.0), (17196, 0.25)])],
            "logprobs[1] alternative 1 (token 17196)",
            "0.25",
        ),
        ([(-0.5, [(THE, math.nan)]), -1.0], "logprobs[0] alternative 0 (token 290)", "NaN"),
    ],
)
def test_logprobs_above_zero_are_refused(
    vocab: Vocab, lps: list[Any], where: str, shown: str
) -> None:
    s = ResponseStream(vocab, logprobs=True, created_at=0)
    s.feed(FINAL, [-0.1] * 3)
    before = s.response_json()
    with pytest.raises(InvalidRequestError) as info:
        s.feed([THE] * len(lps), lps)
    assert str(info.value) == f"{where} is {shown}: a log probability is a number <= 0 or -inf"
    assert s.response_json() == before


def test_zero_minus_zero_and_minus_inf_are_log_probabilities(vocab: Vocab) -> None:
    s = ResponseStream(vocab, logprobs=True, created_at=0)
    s.feed(FINAL, [0.0] * 3)
    events = s.feed([THE, THE, THE], [0.0, -0.0, (-math.inf, [(THE, -0.0)])])
    got = [lp for e in events for lp in strict_loads(e.model_dump_json())["logprobs"]]
    assert [lp["logprob"] for lp in got] == [0.0, -0.0, -9999.0]
    assert math.copysign(1, got[1]["logprob"]) == -1


def _digits(number: str) -> str:
    """The significant digits of a decimal number's text (sign, point, exponent dropped)."""
    mantissa = re.split("[eE]", number.lstrip("-"))[0]
    return mantissa.replace(".", "").strip("0") or "0"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.floats(max_value=0.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=4
    )
)
def test_logprobs_round_trip_in_shortest_form(vocab: Vocab, values: list[float]) -> None:
    s = ResponseStream(vocab, logprobs=True, created_at=0)
    s.feed(FINAL)
    alts = [(THE, v) for v in values]
    deltas = s.feed([THE] * len(values), [(v, alts) for v in values])
    for texts in (
        [e.model_dump_json() for e in deltas],
        [e.to_sse().decode().split("\ndata: ", 1)[1] for e in deltas],
    ):
        raw: list[str] = []

        def keep(t: str, raw: list[str] = raw) -> float:
            raw.append(t)
            return float(t)

        got = []
        for text in texts:
            doc = json.loads(text, parse_constant=_no_constant, parse_float=keep)
            got += [lp["logprob"] for lp in doc["logprobs"]]
        assert got == values
        assert [math.copysign(1, g) for g in got] == [math.copysign(1, v) for v in values]
        # The shortest form: the digits Python's repr (shortest round-trip) uses.
        want = [_digits(repr(v)) for v in values for _ in range(len(values) + 1)]
        assert sorted(_digits(r) for r in raw) == sorted(want)
        assert all(len(r) <= 24 for r in raw), raw


# --- arguments of the wrong type or out of range ---------------------------------------

MAX_COUNT = 2**53 - 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_output_tokens": -5}, f"max_output_tokens must be between 0 and {MAX_COUNT}, got -5"),
        (
            {"max_output_tokens": 2**64},
            f"max_output_tokens must be between 0 and {MAX_COUNT}, got {2**64}",
        ),
        (
            {"max_output_tokens": 2**53},
            f"max_output_tokens must be between 0 and {MAX_COUNT}, got {2**53}",
        ),
        ({"input_tokens": -1}, f"input_tokens must be between 0 and {MAX_COUNT}, got -1"),
        ({"input_tokens": 2**64}, f"input_tokens must be between 0 and {MAX_COUNT}, got {2**64}"),
        ({"cached_tokens": -1}, f"cached_tokens must be between 0 and {MAX_COUNT}, got -1"),
        (
            {"input_tokens": 5, "cached_tokens": 6},
            "cached_tokens (6) must not be more than input_tokens (5)",
        ),
        ({"id_seed": -1}, f"id_seed must be between 0 and {2**64 - 1}, got -1"),
        ({"id_seed": 2**64}, f"id_seed must be between 0 and {2**64 - 1}, got {2**64}"),
        (
            {"created_at": 2**63},
            f"created_at must be between {-(2**63)} and {2**63 - 1}, got {2**63}",
        ),
    ],
)
def test_numbers_out_of_range_are_value_errors_naming_the_argument(
    vocab: Vocab, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ResponseStream(vocab, **kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_output_tokens": "5"}, "max_output_tokens must be an int or None, got str"),
        ({"max_output_tokens": 5.0}, "max_output_tokens must be an int or None, got float"),
        ({"max_output_tokens": True}, "max_output_tokens must be an int or None, got bool"),
        ({"input_tokens": None}, "input_tokens must be an int, got NoneType"),
        ({"cached_tokens": 1.5}, "cached_tokens must be an int, got float"),
        ({"id_seed": "7"}, "id_seed must be an int or None, got str"),
        ({"created_at": "now"}, "created_at must be an int or None, got str"),
        (
            {"tools": {"type": "function", "name": "f"}},
            "tools must be a list of tool objects, got dict",
        ),
        ({"tools": "function"}, "tools must be a list of tool objects, got str"),
        ({"tools": 5}, "tools must be a list of tool objects, got int"),
    ],
)
def test_arguments_of_the_wrong_type_are_type_errors_naming_the_argument(
    vocab: Vocab, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        ResponseStream(vocab, **kwargs)
    assert str(info.value) == message


def test_sequence_number_setter_is_checked_like_the_arguments(vocab: Vocab) -> None:
    import numpy as np

    (ev, *_) = ResponseStream(vocab, created_at=0).start()
    for bad in [-1, 2**64]:
        with pytest.raises(ValueError, match=r"^sequence_number must be between 0 and") as info:
            ev.sequence_number = bad
        assert not isinstance(info.value, OverflowError)
    with pytest.raises(TypeError, match=r"^sequence_number must be an int, got str$"):
        ev.sequence_number = "3"  # type: ignore[assignment]
    ev.sequence_number = np.uint64(2**64 - 1)
    assert strict_loads(ev.model_dump_json())["sequence_number"] == 2**64 - 1


def test_string_arguments_are_checked_naming_the_argument(vocab: Vocab) -> None:
    lone = "a\ud800b"  # not Unicode: no UTF-8 for it, no JSON string
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": lone}, "model"),
        ({"response_id": lone}, "response_id"),
    ]
    for kwargs, name in cases:
        with pytest.raises(InvalidRequestError) as info:
            ResponseStream(vocab, **kwargs)
        assert str(info.value) == f"{name} is not valid Unicode (it holds a lone surrogate)"
    with pytest.raises(TypeError, match=r"^model must be a str, got NoneType$"):
        ResponseStream(vocab, model=None)  # type: ignore[arg-type]
    s = ResponseStream(vocab, tools=[GITHUB], created_at=0)
    s.feed(MCP_CALL)
    before = s.response_json()
    calls: list[tuple[Callable[[], Any], str]] = [
        (lambda: s.tool_output(lone), "output"),
        (lambda: s.tool_output_sse(None, lone), "error"),
        (lambda: s.finish("error", lone), "message"),
        (lambda: s.finish_sse(lone), "reason"),  # type: ignore[arg-type]
    ]
    for call, name in calls:
        with pytest.raises(InvalidRequestError) as info:
            call()
        assert str(info.value) == f"{name} is not valid Unicode (it holds a lone surrogate)"
    with pytest.raises(TypeError, match=r"^message must be a str or None, got int$"):
        s.finish("error", 5)  # type: ignore[arg-type]
    assert s.response_json() == before
    assert s.awaiting_tool_output


def test_int_like_arguments_are_accepted(vocab: Vocab) -> None:
    import numpy as np

    s = ResponseStream(
        vocab,
        max_output_tokens=np.int64(16),
        input_tokens=np.uint32(9),
        cached_tokens=np.int16(3),
        created_at=np.int64(-5),
        id_seed=np.uint64(2**64 - 1),
    )
    resp = s.response()
    assert (resp["max_output_tokens"], resp["created_at"]) == (16, -5)
    s.feed([*FINAL, THE, RETURN])
    usage = strict_loads(s.finish()[-1].model_dump_json())["response"]["usage"]
    assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]) == (9, 3)


# --- __index__ / __float__ that raise: only "not an int" is rewritten -------------------


class Raises:
    """An int-like (or float-like) object whose conversion raises `exc`."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __index__(self) -> int:
        raise self.exc

    def __float__(self) -> float:
        raise self.exc


RAISED = [KeyboardInterrupt("stop"), MemoryError("full"), ValueError("bad"), ZeroDivisionError()]


def _calls_with(
    vocab: Vocab, bad: Any
) -> Iterator[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(name, call, snapshot) for every place that reads a token id or a number."""
    s = ResponseStream(vocab, logprobs=True, created_at=0)
    s.feed(FINAL, [-1.0] * 3)
    snap: Callable[[], Any] = s.response_json
    yield "feed", lambda: s.feed([THE, bad]), snap
    yield "feed one", lambda: s.feed(bad), snap
    yield "feed_sse", lambda: s.feed_sse([bad]), snap
    yield "feed_batch", lambda: feed_batch([s], [[bad]]), snap
    yield "logprob", lambda: s.feed([THE], [bad]), snap
    yield "alternative id", lambda: s.feed([THE], [(-1.0, [(bad, -1.0)])]), snap
    yield "alternative logprob", lambda: s.feed([THE], [(-1.0, [(THE, bad)])]), snap
    p = HarmonyParser(vocab)
    p.process_many(FINAL)
    psnap: Callable[[], Any] = lambda: snapshot(p)  # noqa: E731
    yield "process", lambda: p.process(bad), psnap
    yield "process_many", lambda: p.process_many([THE, bad]), psnap
    yield "token_bytes", lambda: vocab.token_bytes(bad), lambda: None
    yield "decode_bytes", lambda: vocab.decode_bytes([THE, bad]), lambda: None


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
def test_exceptions_from_index_and_float_propagate_unchanged(
    vocab: Vocab, exc: BaseException
) -> None:
    for name, call, snap in _calls_with(vocab, Raises(exc)):
        before = snap()
        with pytest.raises(type(exc)) as info:
            call()
        assert info.value is exc, f"{name}: {info.value!r} instead of {exc!r}"
        assert snap() == before, name


class NotAnInt:
    pass


def test_not_an_int_is_still_a_type_error(vocab: Vocab) -> None:
    for name, call, _ in _calls_with(vocab, NotAnInt()):
        with pytest.raises((TypeError, InvalidRequestError)) as info:
            call()
        assert "NotAnInt" in str(info.value) or "logprobs" in str(info.value), name


def test_an_index_too_large_is_an_invalid_token(vocab: Vocab) -> None:
    class Huge:
        def __index__(self) -> int:
            return 2**70

    p = HarmonyParser(vocab)
    with pytest.raises(InvalidTokenError) as info:
        p.process(Huge())
    assert info.value.token == 2**70


def test_error_texts_use_words_not_rust_ranges(vocab: Vocab) -> None:
    p = HarmonyParser(vocab)
    for bad in [-1, 2**70]:
        with pytest.raises(InvalidTokenError) as info:
            p.process(bad)
        text = str(info.value)
        assert "valid ids are 0 to 199997 and 199998 to 201088" in text, text
        assert ".." not in text, text


# --- one stream, two callers ---------------------------------------------------------------


BUSY = "this ResponseStream is in use by another thread: a stream accepts one call at a time"


def test_a_stream_in_use_refuses_a_second_call_with_a_typed_error(vocab: Vocab) -> None:
    s = ResponseStream(vocab, created_at=0, id_seed=1)
    s.feed(FINAL)
    inside = threading.Event()
    release = threading.Event()
    seen: list[BaseException] = []

    def slow_tokens() -> Iterator[int]:
        yield THE
        inside.set()
        release.wait(10)  # the GIL is free here: the other thread runs
        yield THE

    t = threading.Thread(target=lambda: s.feed(slow_tokens()))
    t.start()
    assert inside.wait(10)
    calls: list[Callable[[], Any]] = [
        lambda: s.feed([THE]),
        lambda: s.feed_sse([THE]),
        lambda: s.finish(),
        lambda: s.tool_output("x"),
        lambda: s.response(),
        lambda: s.response_json(),
        lambda: s.awaiting_tool_output,
        lambda: s.finished,
    ]
    for call in calls:
        try:
            call()
        except Exception as e:
            seen.append(e)
    with pytest.raises(StreamInUseError) as info:
        feed_batch([s], [[THE]])
    release.set()
    t.join(10)
    assert len(seen) == len(calls)
    for err in seen:
        assert type(err) is StreamInUseError, repr(err)
        assert str(err) == BUSY
        assert isinstance(err, RuntimeError)
        assert isinstance(err, ResponseStateError)
    assert "in use by another thread" in str(info.value)
    assert s.response_id.startswith("resp_")  # never refused: it never changes
    # Nothing the refused calls did: the stream holds the two tokens of the slow call.
    final = s.finish()[-1].model_dump()["response"]
    assert final["output"][0]["content"][0]["text"] == " the the"


def test_a_parser_in_use_refuses_a_second_call_with_a_typed_error(vocab: Vocab) -> None:
    p = HarmonyParser(vocab)
    p.process_many(FINAL)
    got: list[BaseException] = []

    def tokens() -> Iterator[int]:
        yield THE
        try:
            p.process(THE)  # the same parser, from inside its own call
        except StreamInUseError as e:
            got.append(e)
        yield THE

    p.process_many(tokens())
    assert [str(e) for e in got] == [
        "this HarmonyParser is in use by another thread: a parser accepts one call at a time"
    ]
    assert p.current_content == " the the"


# --- after an internal error: finish("error") still ends the response ----------------------

from stream_checks import validate_stream  # noqa: E402

MCP_CALL = [CHANNEL, 12606, 815, 316, 28, 10312, 16718, 62, 30149, MESSAGE]
MCP_CALL += [10848, 80, 1243, 220, 16, 92, CALL]  # commentary to=github.search_issues {"q": 1}


def _events(out: Any) -> list[dict[str, Any]]:
    if isinstance(out, bytes):
        return strict_sse(out)
    return [strict_loads(e.model_dump_json()) for e in out]


def _failed_after_panic(
    vocab: Vocab, before: list[tuple[str, Any]], panic_with: list[int] | None, sse: bool
) -> tuple[ResponseStream, list[dict[str, Any]]]:
    """Plays `before`, panics (after feeding `panic_with` inside the panicking call),
    then finish("error"); returns the stream and every event a client got."""
    s = ResponseStream(
        vocab,
        tools=[GITHUB],
        mcp_tool_lists={"github": [{"name": "search_issues", "input_schema": {}}]},
        created_at=0,
        id_seed=5,
        input_tokens=7,
    )
    got: list[dict[str, Any]] = []
    for method, arg in before:
        got += _events(getattr(s, method)(*arg))
    with pytest.raises(InternalError):
        s._panic_for_tests(panic_with)
    got += _events(s.finish_sse("error") if sse else s.finish("error"))
    return s, got


def check_failed_stream(s: ResponseStream, got: list[dict[str, Any]]) -> dict[str, Any]:
    """What holds for every stream ended by finish("error") after a panic, also with
    an item left open: numbered 0, 1, 2... without gaps, created and in_progress
    first, every event an openai-python event, one response.failed last, whose
    output is the items whose output_item.done the client got."""
    from harmony_stream._openai import to_openai_event, to_openai_response

    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    assert [e["type"] for e in got[:2]] == ["response.created", "response.in_progress"]
    for e in got:
        to_openai_event(e)
    terminal = [e for e in got if e["type"] in ("response.completed", "response.incomplete")]
    assert terminal == []
    assert [e["type"] for e in got].count("response.failed") == 1
    assert got[-1]["type"] == "response.failed"
    final: dict[str, Any] = got[-1]["response"]
    to_openai_response(final)
    assert final["id"] == s.response_id == got[0]["response"]["id"]
    assert final["status"] == "failed"
    assert final["error"]["code"] == "server_error"
    assert "internal error" in final["error"]["message"]
    done = [e["item"] for e in got if e["type"] == "response.output_item.done"]
    assert final["output"] == done
    assert s.finished
    assert strict_loads(s.response_json()) == final
    return final


# (calls before the panic, tokens fed inside the panicking call). Each ends with no
# item open for the client: the whole stream is valid (the validator's every rule).
SCENARIOS: dict[str, tuple[list[tuple[str, Any]], list[int] | None]] = {
    "nothing sent": ([], None),
    "nothing sent, work lost": ([], [*FINAL, THE, RETURN]),
    "after start": ([("start", ())], None),
    "between items": ([("feed", ([*ANALYSIS, THE, END],))], None),
    "between items, a whole item lost": (
        [("feed", ([*ANALYSIS, THE, END],))],
        [*NEXT_TURN, *FINAL, THE, END],
    ),
    "after a tool result": ([("feed", (MCP_CALL,)), ("tool_output", ("ok",))], None),
}


@pytest.mark.parametrize("sse", [False, True])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_finish_error_after_a_panic_ends_with_response_failed(
    vocab: Vocab, scenario: str, sse: bool
) -> None:
    before, panic_with = SCENARIOS[scenario]
    s, got = _failed_after_panic(vocab, before, panic_with, sse)
    final = validate_stream(got)  # gapless from 0, whole items, valid openai types
    assert check_failed_stream(s, got) == final


# An item the client saw added but not done stays open: what the engine holds for it
# after a panic cannot be trusted to match what the client got, so it is not closed
# (nor listed in the output); the terminal event still comes, numbered in order.
OPEN_ITEM_SCENARIOS: dict[str, tuple[list[tuple[str, Any]], list[int] | None, str]] = {
    "mid-message, its last deltas lost": (
        [("feed", ([*ANALYSIS, THE, END, *NEXT_TURN, *FINAL, THE],))],
        [THE, THE, END],
        "message",
    ),
    "waiting for a tool": ([("feed", (MCP_CALL,))], None, "mcp_call"),
}


@pytest.mark.parametrize("sse", [False, True])
@pytest.mark.parametrize("scenario", list(OPEN_ITEM_SCENARIOS))
def test_finish_error_after_a_panic_mid_item(vocab: Vocab, scenario: str, sse: bool) -> None:
    before, panic_with, open_kind = OPEN_ITEM_SCENARIOS[scenario]
    s, got = _failed_after_panic(vocab, before, panic_with, sse)
    final = check_failed_stream(s, got)
    added = [e["item"] for e in got if e["type"] == "response.output_item.added"]
    assert [i["type"] for i in added[len(final["output"]) :]] == [open_kind]
    if open_kind == "message":
        deltas = [e["delta"] for e in got if e["type"] == "response.output_text.delta"]
        assert deltas == [" the"]  # the lost call's deltas never came


def test_a_poisoned_stream_refuses_everything_else(vocab: Vocab) -> None:
    s = ResponseStream(vocab, created_at=0)
    s.feed(FINAL)
    with pytest.raises(InternalError):
        s._panic_for_tests()
    refused: list[Callable[[], Any]] = [
        lambda: s.feed([THE]),
        lambda: s.feed_sse([THE]),
        lambda: s.tool_output("x"),
        lambda: s.finish("stop"),
        lambda: s.finish("length"),
        lambda: s.finish_sse("stop"),
        lambda: s.response(),
        lambda: feed_batch([s], [[THE]]),
    ]
    for call in refused:
        with pytest.raises(InternalError):
            call()
    (failed,) = s.finish("abort", "client went away")
    assert failed.type == "response.failed"
    assert "client went away" in failed.model_dump()["response"]["error"]["message"]
    # One terminal event only.
    after: list[Callable[[], Any]] = [
        lambda: s.finish("error"),
        lambda: s.finish_sse("error"),
        lambda: s.feed([THE]),
    ]
    for call in after:
        with pytest.raises(InternalError):
            call()
    assert s.response() == failed.model_dump()["response"]
