"""Checks of a Responses event stream that vLLM 0.33's own stream also passes.

`check_stack(events)` is the equivalent of vLLM's `validate_streaming_event_stack`
(tests/entrypoints/openai/responses/conftest.py in vLLM): start/end events
nest like a stack, the envelope is in place, and item ids and indices agree
within each item. Written for the dicts of the SSE data, and with the
lifecycle events vLLM's table lacks (`mcp_call.failed`, a terminal
`response.incomplete` / `response.failed`).

`check_framing(names, events)` checks what the SSE layer adds: the `event:` line
is the data's `type`, `sequence_number` counts 0, 1, 2, ….

`check_schema(events, final)` validates every event as openai-python's
`ResponseStreamEvent` and the final response as `Response`.

The strict validator (`stream_checks.strict.validate_stream`) checks the whole
Event contract of docs/architecture.md; vLLM 0.33's own stream does not meet it
(see tests_vllm/test_harness.py), so the vLLM suite holds only streams of this
project's engine to it.
"""

from __future__ import annotations

import copy
from typing import Any

from .common import (
    ENVELOPE,
    TERMINAL,
    Event,
    event_adapter,
    item_adapter,
    response_adapter,
    streamed_items,
    unknown_fields,
    where,
)

__all__ = [
    "check_final_is_streamed_items",
    "check_framing",
    "check_output_indices",
    "check_schema",
    "check_stack",
    "streamed_items",
    "strip_vllm_envelope_extensions",
]

# end event -> the start event it closes (vLLM's table, plus mcp_call.failed)
PAIRS = {
    "response.output_item.done": "response.output_item.added",
    "response.content_part.done": "response.content_part.added",
    "response.output_text.done": "response.output_text.delta",
    "response.reasoning_text.done": "response.reasoning_text.delta",
    "response.reasoning_part.done": "response.reasoning_part.added",
    "response.mcp_call_arguments.done": "response.mcp_call_arguments.delta",
    "response.mcp_call.completed": "response.mcp_call.in_progress",
    "response.mcp_call.failed": "response.mcp_call.in_progress",
    "response.function_call_arguments.done": "response.function_call_arguments.delta",
    "response.code_interpreter_call_code.done": "response.code_interpreter_call_code.delta",
    "response.code_interpreter_call.completed": "response.code_interpreter_call.in_progress",
    "response.web_search_call.completed": "response.web_search_call.in_progress",
}
STARTS = frozenset(PAIRS.values())


def check_pairing(events: list[Event], *, zero_deltas: bool = True) -> None:
    """Start/end events nest; consecutive deltas of one type share a slot.

    vLLM's table pairs each `*.done` with its `*.delta`, so it rejects an item
    whose text or arguments are empty (a `.done` with no delta before it). Such
    items are legal (docs/architecture.md, Event contract: `delta*`; openai-python's
    types) and vLLM 0.33
    never meets them only because it drops those items from the stream
    altogether (#48274). With `zero_deltas` (the default) a `.done` whose deltas
    never came closes nothing; `zero_deltas=False` is vLLM's exact rule."""
    stack: list[tuple[int, str]] = []
    for i, ev in enumerate(events):
        t = ev["type"]
        if t == "response.output_item.done" and (ev.get("item") or {}).get("status") in (
            "incomplete",
            "failed",
        ):
            # A call cut by max_output_tokens, or a python/browser call whose tool
            # failed, has no event that ends its `*.in_progress` (the Responses API
            # defines none): its `output_item.done` with that status closes it.
            # vLLM 0.33 never sends such items (it calls every call `completed`).
            while stack and stack[-1][1].endswith(".in_progress"):
                stack.pop()
        if t in PAIRS:
            want = PAIRS[t]
            top = stack[-1][1] if stack else "<empty>"
            if zero_deltas and top != want and want.endswith(".delta"):
                continue
            assert top == want, f"{where(i, ev)} closes {want} but the open event is {top}"
            stack.pop()
        elif t in STARTS:
            if t.endswith(".delta") and stack and stack[-1][1] == t:
                continue
            stack.append((i, t))
    assert not stack, f"unclosed at the end: {[f'#{i} {t}' for i, t in stack]}"


def check_envelope(events: list[Event]) -> None:
    """created first, in_progress (if any) second, exactly one terminal event, last."""
    assert len(events) >= 2, f"only {len(events)} events"
    types = [ev["type"] for ev in events]
    assert types[0] == "response.created", f"first event is {types[0]}"
    assert types.count("response.created") == 1, "more than one response.created"
    in_progress = [i for i, t in enumerate(types) if t == "response.in_progress"]
    assert in_progress in ([], [1]), f"response.in_progress at {in_progress}, not only at 1"
    terminals = [i for i, t in enumerate(types) if t in TERMINAL]
    assert terminals == [len(events) - 1], (
        f"terminal events at {terminals}; want exactly one, last ({len(events) - 1})"
    )


def check_item_fields(events: list[Event]) -> None:
    """Within added..done of an item, item_id / output_index / content_index agree;
    output_index never goes backwards."""
    active_id: str | None = None
    active_index: int | None = None
    active_content: int | None = None
    last_index = -1
    for i, ev in enumerate(events):
        t = ev["type"]
        if t in ENVELOPE:
            continue
        if t == "response.output_item.added":
            item = ev.get("item")
            assert item is not None, f"{where(i, ev)} has no item"
            assert item.get("id"), f"{where(i, ev)}: the item has no id"
            index = ev.get("output_index")
            if index is not None:
                assert index >= last_index, f"{where(i, ev)}: output_index {index} < {last_index}"
                last_index = index
            active_id, active_index, active_content = item["id"], index, None
            continue
        if t == "response.output_item.done":
            item = ev.get("item")
            assert item is not None, f"{where(i, ev)} has no item"
            if active_id is not None and item.get("id"):
                assert item["id"] == active_id, (
                    f"{where(i, ev)}: item id {item['id']} != open item {active_id}"
                )
            index = ev.get("output_index")
            if active_index is not None and index is not None:
                assert index == active_index, (
                    f"{where(i, ev)}: output_index {index} != open item's {active_index}"
                )
            active_id = active_index = active_content = None
            continue
        item_id, index = ev.get("item_id"), ev.get("output_index")
        if active_id is not None and item_id is not None:
            assert item_id == active_id, f"{where(i, ev)}: item_id {item_id} != {active_id}"
        if active_index is not None and index is not None:
            assert index == active_index, f"{where(i, ev)}: output_index {index} != {active_index}"
        if t in ("response.content_part.added", "response.reasoning_part.added"):
            active_content = ev.get("content_index")
            continue
        content = ev.get("content_index")
        if content is not None and active_content is not None:
            assert content == active_content, (
                f"{where(i, ev)}: content_index {content} != {active_content}"
            )


def check_stack(events: list[Event], *, zero_deltas: bool = True) -> None:
    """vLLM's `validate_streaming_event_stack`, on SSE data dicts."""
    check_pairing(events, zero_deltas=zero_deltas)
    check_envelope(events)
    check_item_fields(events)


def check_framing(names: list[str | None], events: list[Event]) -> None:
    """SSE `event:` line == data `type`; sequence_number 0, 1, 2, … without gap."""
    assert len(names) == len(events)
    for i, (name, ev) in enumerate(zip(names, events, strict=True)):
        assert name == ev.get("type"), f"{where(i, ev)}: SSE event line {name!r}"
        assert ev.get("sequence_number") == i, f"{where(i, ev)}: sequence_number, want {i}"


def check_schema(events: list[Event], final: dict[str, Any] | None = None) -> None:
    """Every event is an openai-python ResponseStreamEvent; the final response a Response."""
    adapter = event_adapter()
    for i, ev in enumerate(events):
        try:
            adapter.validate_python(ev)
        except Exception as e:
            raise AssertionError(f"{where(i, ev)} is not a ResponseStreamEvent: {e}") from e
    if final is not None:
        try:
            response_adapter().validate_python(final)
        except Exception as e:
            raise AssertionError(f"the final response is not a Response: {e}") from e


def strip_vllm_envelope_extensions(events: list[Event]) -> list[Event]:
    """Copies of the events without the fields vLLM's own `ResponsesResponse` adds
    to the response object of the envelope events (kv_transfer_params,
    input_messages, per-turn usage, …): fields openai-python does not know,
    outside `response.output` (the items, which are checked as they are)."""
    adapter = event_adapter()
    out = []
    for ev in events:
        ev = copy.deepcopy(ev)
        if ev.get("type") in ENVELOPE:
            for path, keys in unknown_fields(adapter.validate_python(ev)):
                if len(path) >= 2 and path[:2] == ("response", "output"):
                    continue
                node: Any = ev
                for part in path:
                    node = node[part]
                for key in keys:
                    node.pop(key, None)
        out.append(ev)
    return out


def check_final_is_streamed_items(events: list[Event]) -> None:
    """Event contract: the terminal response's `output` is the `output_item.done` items,
    in order; compared as openai-python items (a field sent as null equals one
    left out)."""
    final = events[-1]["response"]["output"]
    done = streamed_items(events)
    adapter = item_adapter()
    assert len(final) == len(done), (
        f"final output has {len(final)} items, the stream closed {len(done)}: "
        f"{[i.get('type') for i in final]} vs {[i.get('type') for i in done]}"
    )
    for n, (a, b) in enumerate(zip(final, done, strict=True)):
        assert adapter.validate_python(a) == adapter.validate_python(b), (
            f"output[{n}] differs from its output_item.done item:\n  final {a}\n  done  {b}"
        )


def check_output_indices(events: list[Event]) -> None:
    """Event contract: output_index counts the items from 0 without gap or reuse, one
    open at a time."""
    added = [ev for ev in events if ev["type"] == "response.output_item.added"]
    assert [ev["output_index"] for ev in added] == list(range(len(added))), [
        ev["output_index"] for ev in added
    ]
    open_index = None
    for i, ev in enumerate(events):
        if ev["type"] == "response.output_item.added":
            assert open_index is None, f"{where(i, ev)}: item {open_index} still open"
            open_index = ev["output_index"]
        elif ev["type"] == "response.output_item.done":
            assert ev["output_index"] == open_index, f"{where(i, ev)}: closes {open_index}"
            open_index = None
