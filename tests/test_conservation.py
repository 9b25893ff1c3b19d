"""Conservation of text: whatever the order of calls, no accepted character is lost.

The rule: run a ``ResponseStream`` over any sequence of ``feed`` (any split),
``tool_output`` (tried at random points; where it is refused, nothing changes) and one
``finish`` (every reason). Cut the tokens into completions at every accepted
``tool_output`` (each starts a new completion, as the engine's parser does) and run
the lenient ``HarmonyParser`` over each completion, then ``process_eos()``. Then the
response's items, ``mcp_list_tools`` aside, are those messages one for one and in
order, and each item carries its message's content exactly: a reasoning or message
item as its text, a function or MCP call as its arguments, a code interpreter call as
its code. A browser call becomes a ``web_search_call``, whose action (query, url,
pattern) is all the Responses API has room for: its arguments are not compared.

The streamed events carry the same items (``check_stream``: deltas == done == final),
and every event is strict JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_events_properties import (
    TERMINAL_FOR,
    _settings,
    check_stream,
    garbage_pieces,
    new_stream,
    texts,
    tool_results,
)

from harmony_stream import HarmonyParser, ResponseEvent, ResponseStream, Vocab
from harmony_stream.errors import ResponseStateError

BROWSER = ("browser.search", "browser.open", "browser.find")


def _no_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def strict_json(text: str | bytes) -> Any:
    return json.loads(text, parse_constant=_no_constant)


def item_text(item: dict[str, Any]) -> str | None:
    t = item["type"]
    if t in ("reasoning", "message"):
        return "".join(str(p["text"]) for p in item["content"])
    if t in ("function_call", "mcp_call"):
        return str(item["arguments"])
    if t == "code_interpreter_call":
        return str(item["code"])
    return None  # web_search_call: its action only


def reference_messages(vocab: Vocab, completions: list[list[int]]) -> list[tuple[str, str]]:
    """(recipient, content) of every message the lenient parser accepts."""
    out = []
    for tokens in completions:
        p = HarmonyParser(vocab, "assistant", strict=False)
        p.process_many(tokens)
        p.process_eos()
        out += [(m.recipient or "", m.content) for m in p.messages]
    return out


def check_conservation(
    vocab: Vocab, s: ResponseStream, events: list[ResponseEvent], completions: list[list[int]]
) -> None:
    for ev in events:
        strict_json(ev.model_dump_json())
        strict_json(ev.to_sse().split(b"data: ", 1)[1])
    final = s.response()
    strict_json(json.dumps(final))
    check_stream(events, final)
    items = [i for i in final["output"] if i["type"] != "mcp_list_tools"]
    want = reference_messages(vocab, completions)
    assert len(items) == len(want), (
        [(i["type"], item_text(i)) for i in items],
        want,
    )
    for item, (recipient, content) in zip(items, want, strict=True):
        if recipient in BROWSER:
            assert item["type"] == "web_search_call", (item, recipient)
            continue
        assert item_text(item) == content, (item, recipient, content)


def random_calls(data: Any, tokens: list[int], call: Callable[..., Any]) -> list[list[int]]:
    """Feeds ``tokens`` through ``call("feed", chunk)`` in random steps, with
    ``call("tool_output", output, error)`` tried at random points (a refusal raises
    ``ResponseStateError`` and changes nothing); returns the completions: the tokens
    cut at every accepted tool output."""
    completions: list[list[int]] = [[]]
    i = 0
    while True:
        if data.draw(st.integers(0, 3), label="try tool_output") == 0:
            result = data.draw(tool_results, label="tool result")
            try:
                call("tool_output", *result)
            except ResponseStateError:
                pass  # refused: nothing changed, the completion goes on
            else:
                completions.append([])
        if i >= len(tokens):
            return completions
        n = data.draw(st.integers(1, 8), label="step")
        chunk = tokens[i : i + n]
        call("feed", chunk)
        completions[-1] += chunk
        i += n


def play(vocab: Vocab, data: Any, tokens: list[int]) -> None:
    """Feeds ``tokens`` in random steps with ``tool_output`` tried at random points,
    then finishes for a random reason; checks conservation."""
    s = new_stream(vocab)
    events: list[ResponseEvent] = []

    def call(name: str, *args: Any) -> None:
        events.extend(getattr(s, name)(*args))

    completions = random_calls(data, tokens, call)
    reason = data.draw(st.sampled_from(sorted(TERMINAL_FOR)), label="reason")
    events += s.finish(reason, data.draw(st.one_of(st.none(), texts), label="message"))
    assert events[-1].type == TERMINAL_FOR[reason]
    check_conservation(vocab, s, events, completions)


@_settings(1500)
@given(data=st.data())
def test_conservation_over_random_harmony_pieces(enc: Any, vocab: Vocab, data: Any) -> None:
    pieces = garbage_pieces(enc, vocab)
    choice = data.draw(st.lists(st.integers(0, len(pieces) - 1), max_size=40), label="pieces")
    play(vocab, data, [t for i in choice for t in pieces[i]])


# The three ways text was lost before (issue 13), each as the property's example.


def _tokens(enc: Any, text: str) -> list[int]:
    return list(enc.encode(text, allowed_special="all"))


def _items(s: ResponseStream) -> list[tuple[str, str | None]]:
    return [(i["type"], item_text(i)) for i in s.response()["output"]]


def test_text_after_a_call_survives_its_tool_output(enc: Any, vocab: Vocab) -> None:
    s = new_stream(vocab)
    call = _tokens(enc, "<|channel|>commentary to=github.search<|message|>{}<|call|>")
    s.feed(call + _tokens(enc, "Hello there"))
    s.tool_output("r")
    s.finish("stop")
    assert _items(s) == [("mcp_call", "{}"), ("message", "Hello there")]


def test_plain_text_with_no_header_and_no_stop_token(enc: Any, vocab: Vocab) -> None:
    s = new_stream(vocab)
    s.feed(_tokens(enc, "Hello world"))
    s.finish("stop")
    assert _items(s) == [("message", "Hello world")]


def test_answer_written_into_a_later_header(enc: Any, vocab: Vocab) -> None:
    # From vLLM's Harmony parser tests: the model never wrote <|message|>.
    s = new_stream(vocab)
    s.feed(
        _tokens(
            enc,
            "<|channel|>analysis<|message|>think<|end|>"
            '<|start|>assistant<|channel|>final {"answer": "hi"}<|return|>',
        )
    )
    s.finish("stop")
    assert _items(s) == [("reasoning", "think"), ("message", '{"answer": "hi"}')]
    # No markup: a header with nothing after its parts is still dropped.
    s = new_stream(vocab)
    s.feed(_tokens(enc, "<|channel|>analysis<|message|>t<|end|><|start|>assistant<|channel|>final"))
    s.finish("length")
    assert _items(s) == [("reasoning", "t")]
