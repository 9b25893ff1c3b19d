"""``ResponseStream.pending_call``: the call the engine waits for, as it streamed it.

The rule: while ``awaiting_tool_output`` is true, ``pending_call`` describes the
item of the last ``output_item.added`` (same id, type, output_index), with the
arguments of its ``*_arguments.done`` / code of its ``code.done``; otherwise None.
"""

from __future__ import annotations

from typing import Any

import pytest

from harmony_stream import ResponseStream, Vocab

CALLS = {
    "mcp_call": "<|channel|>commentary to=github.search_issues <|constrain|>json"
    '<|message|>{"q": "parser"}<|call|>',
    "code_interpreter_call": "<|channel|>analysis to=python<|message|>print(6 * 7)<|call|>",
    "web_search_call": '<|channel|>analysis to=browser.search<|message|>{"query": "x"}<|call|>',
}
TOOLS = [
    {"type": "mcp", "server_label": "github"},
    {"type": "code_interpreter", "container": "cntr_1"},
    {"type": "web_search"},
]


@pytest.mark.parametrize("item_type", sorted(CALLS))
def test_pending_call_is_the_streamed_call(vocab: Vocab, enc: Any, item_type: str) -> None:
    s = ResponseStream(vocab, tools=TOOLS)
    assert s.pending_call is None
    events = [e.model_dump() for e in s.feed(enc.encode(CALLS[item_type], allowed_special="all"))]
    assert s.awaiting_tool_output
    call = s.pending_call
    assert call is not None
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"][-1]
    index = [e for e in events if e["type"] == "response.output_item.added"][-1]["output_index"]
    assert (call["type"], call["id"], call["output_index"]) == (added["type"], added["id"], index)
    done = [e for e in events if e["type"].endswith(("arguments.done", "code.done"))]
    if item_type == "mcp_call":
        assert (call["name"], call["server_label"]) == (added["name"], added["server_label"])
        assert call["arguments"] == done[-1]["arguments"]
    elif item_type == "code_interpreter_call":
        assert call["arguments"] == done[-1]["code"]
        assert call["container_id"] == added["container_id"] == "cntr_1"
    else:
        assert call["arguments"] == '{"query": "x"}'
    s.tool_output("ok")
    assert s.pending_call is None


def test_a_function_call_is_not_pending(vocab: Vocab, enc: Any) -> None:
    s = ResponseStream(vocab, tools=[{"type": "function", "name": "f"}])
    s.feed(
        enc.encode(
            "<|channel|>commentary to=functions.f<|message|>{}<|call|>", allowed_special="all"
        )
    )
    assert s.pending_call is None  # the client runs it
