"""One Responses vocabulary: what the engine accepts, the server and the plugin accept.

The lists live in the core (``TOOL_TYPES``, ``FINISH_REASONS``, ``CHANNELS``, the
routing behind ``route()``); the binding exports them and the Python layers import
them. These tests hold each layer to the engine's answer.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from harmony_stream import ResponseStream, Vocab
from harmony_stream._native import CHANNELS, FINISH_REASONS, TOOL_TYPES, route
from harmony_stream.errors import InvalidRequestError
from harmony_stream.serve.corpus import make_entry
from harmony_stream.serve.request import RequestError, parse_request
from harmony_stream.transcript import Transcript, parse_transcript
from harmony_stream.vllm_plugin import _engine_tools

REQUIRED = {"function": {"name": "f"}, "mcp": {"server_label": "gh"}}


def minimal_tool(type_name: str) -> dict[str, Any]:
    return {"type": type_name, **REQUIRED.get(TOOL_TYPES[type_name], {})}


@pytest.mark.parametrize("type_name", sorted(TOOL_TYPES))
def test_every_tool_type_the_engine_takes_the_server_and_plugin_take(
    vocab: Vocab, type_name: str
) -> None:
    tool = minimal_tool(type_name)
    ResponseStream(vocab, tools=[tool])  # the engine: the reference
    request = parse_request(json.dumps({"model": "m", "input": "x", "tools": [tool]}).encode())
    assert [t["type"] for t in request.tools] == [type_name]
    assert _engine_tools(SimpleNamespace(tools=[tool])) == [tool]


@pytest.mark.parametrize("type_name", ["file_search", "computer_use_preview", "web_search_2"])
def test_a_tool_type_the_engine_refuses_the_server_refuses(vocab: Vocab, type_name: str) -> None:
    tool = {"type": type_name}
    with pytest.raises(InvalidRequestError, match="unsupported type"):
        ResponseStream(vocab, tools=[tool])
    with pytest.raises(RequestError, match="Unsupported tool type"):
        parse_request(json.dumps({"model": "m", "input": "x", "tools": [tool]}).encode())
    # vLLM accepts more tool types than the engine; the plugin leaves them out.
    assert _engine_tools(SimpleNamespace(tools=[tool])) == []


@pytest.mark.parametrize("reason", FINISH_REASONS)
def test_every_finish_reason_in_a_transcript_and_the_engine(vocab: Vocab, reason: str) -> None:
    doc = {"turns": [{"tokens": [200005, 17196, 200008, 12194], "finish_reason": reason}]}
    transcript = parse_transcript(doc)
    assert transcript.model_turns[0].finish_reason == reason
    s = ResponseStream(vocab)
    s.feed(transcript.model_turns[0].tokens)
    assert s.finish(reason)[-1].type.startswith("response.")  # type: ignore[arg-type]


def test_channels() -> None:
    assert CHANNELS == ("analysis", "commentary", "final")
    for channel in CHANNELS:
        assert route(None, channel)[0] in ("reasoning", "message")


def test_the_server_finds_calls_as_the_engine_routes_them(vocab: Vocab, enc: Any) -> None:
    """A bare function name (the model left out `functions.`) is a function call when
    the request has that function: the engine's rule, which the server's transcript
    choice now uses too (its own copy of the routing missed it)."""
    tools = [{"type": "function", "name": "get_weather", "parameters": {}}]
    assert route("get_weather", "commentary", tools) == ("function_call", "function", "get_weather")
    assert route("get_weather", "commentary") == ("mcp_call", "mcp", "get_weather")
    tokens = enc.encode(
        '<|channel|>commentary to=get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>',
        allowed_special="all",
    )
    doc = {
        "tools": tools,
        "turns": [
            {"tokens": tokens, "finish_reason": "stop"},
            {"tool_output": {"output": "sunny"}},
            {
                "tokens": enc.encode(
                    "<|channel|>final<|message|>Sunny.<|return|>", allowed_special="all"
                )
            },
        ],
    }
    entry = make_entry("bare", parse_transcript(doc), vocab)
    assert entry.tool_keys == {("function", "get_weather")}
    # A function call ends the client's turn: the transcript answers two requests.
    assert len(entry.segments) == 2
    assert isinstance(entry.transcript, Transcript)
