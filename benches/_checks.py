"""Correctness beside speed: each path's output, checked against the rendered corpus.

Cheap on purpose: they check behaviour once per path and corpus, outside the
timed rounds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class CheckError(AssertionError):
    pass


def parse_sse(body: bytes | str) -> list[dict[str, Any]]:
    """``event: T\\ndata: JSON\\n\\n`` blocks -> event dicts; the envelope checked."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if not text.endswith("\n\n"):
        raise CheckError("the SSE body does not end with a blank line")
    events = []
    for i, block in enumerate(text[:-2].split("\n\n")):
        lines = block.split("\n")
        if (
            len(lines) != 2
            or not lines[0].startswith("event: ")
            or not lines[1].startswith("data: ")
        ):
            raise CheckError(f"SSE block {i} is not 'event: ...\\ndata: ...': {block[:200]!r}")
        ev = json.loads(lines[1][len("data: ") :])
        if ev.get("type") != lines[0][len("event: ") :]:
            raise CheckError(f"SSE block {i}: event name {lines[0]!r} != type {ev.get('type')!r}")
        events.append(ev)
    return events


@lru_cache(maxsize=1)
def _event_adapter() -> Any:
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    return TypeAdapter(ResponseStreamEvent)


def check_events(events: Sequence[dict[str, Any]], *, validate: bool = True) -> dict[str, Any]:
    """Sequence numbers, one terminal event last, openai-python validation; returns it."""
    for i, ev in enumerate(events):
        if ev.get("sequence_number") != i:
            raise CheckError(
                f"event {i} ({ev.get('type')}) has sequence_number {ev.get('sequence_number')}"
            )
    if not events or events[-1]["type"] not in TERMINAL:
        raise CheckError("the stream does not end with a terminal response event")
    if validate:
        adapter = _event_adapter()
        for ev in events:
            adapter.validate_python(ev)
    done = [ev["item"] for ev in events if ev["type"] == "response.output_item.done"]
    final: dict[str, Any] = events[-1]["response"]
    if [it.get("id") for it in final["output"]] != [it.get("id") for it in done]:
        raise CheckError("response.output differs from the output_item.done items")
    return final


def item_text(item: dict[str, Any]) -> tuple[str, str]:
    """(type, the text a Responses item carries)."""
    t = item.get("type", "")
    if t in ("reasoning", "message"):
        content = item.get("content") or []
        return t, "".join(c.get("text", "") for c in content)
    if t in ("function_call", "mcp_call"):
        return t, item.get("arguments") or ""
    if t == "code_interpreter_call":
        return t, item.get("code") or ""
    return t, ""


def expected_type(channel: str | None, recipient: str | None, mcp_labels: Iterable[str]) -> str:
    """The item a rendered Harmony message becomes (docs/architecture.md, Routing)."""
    if recipient is None:
        return "reasoning" if channel == "analysis" else "message"
    if recipient.startswith("functions."):
        return "function_call"
    if recipient == "python":
        return "code_interpreter_call"
    if recipient.startswith("browser."):
        return "web_search_call"
    return "mcp_call"


def compare_items(
    items: Sequence[tuple[str, str]],
    expected: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]],
    *,
    check_types: bool = True,
) -> list[str]:
    """Differences between a response's items and the rendered messages ([] if none)."""
    labels = [t["server_label"] for t in tools if t.get("type") == "mcp"]
    problems = []
    if len(items) != len(expected):
        problems.append(f"{len(items)} items, {len(expected)} messages rendered")
    for i, (got, exp) in enumerate(zip(items, expected, strict=False)):
        want_type = expected_type(exp["channel"], exp["recipient"], labels)
        if check_types and got[0] != want_type:
            problems.append(f"item {i}: {got[0]}, expected {want_type}")
        want_text = "" if want_type == "web_search_call" and check_types else exp["text"]
        if got[1] != want_text:
            problems.append(
                f"item {i} ({got[0]}): text differs at char "
                f"{_first_diff(got[1], want_text)} of {len(want_text)}"
            )
    return problems


def _first_diff(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
