"""In-process consumers: the events the plugin hands to vLLM read like openai-python's.

With the plugin on, ``responses_stream_generator`` yields harmony-stream's own
``ResponseEvent`` objects for the streamed items (vLLM's envelope and terminal
events stay vLLM's). Code in the API process that reads ``.item``, ``.delta`` or
``.output_index`` on them (a middleware, another plugin, vLLM's own code) must
get what openai-python's event type would give it.

The oracle is openai-python: for every ``ResponseEvent`` of every corpus stream,
taken from the real route (vLLM's router, serving class and tool loop, with the
real MCP servers), each field that the event's ``openai.types.responses`` class
declares reads through the attribute exactly as it reads on that class's
instance built from the same event (``to_openai()``): equal, and of the same type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import corpus
import harness
import pytest

from harmony_stream import ResponseEvent

ENTRIES = list(corpus.CORPUS)


def _stream_events(entry: corpus.Entry, tool_server: Any) -> list[Any]:
    """The objects `responses_stream_generator` yields for `entry`, plugin on, in order."""
    with harness.plugin(True):
        app = harness.get_app(tool_server)
        serving = app.responses
        original = serving.responses_stream_generator
        seen: list[Any] = []

        async def recording(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async for event in original(*args, **kwargs):
                seen.append(event)
                yield event

        serving.responses_stream_generator = recording  # type: ignore[method-assign]
        try:
            result = harness.responses(entry, stream=True, tool_server=tool_server)
        finally:
            del serving.responses_stream_generator
    assert result.status_code == 200, result.body[:500]
    return seen


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_declared_field_reads_as_openai_python(entry: corpus.Entry, tool_server: Any) -> None:
    events = [e for e in _stream_events(entry, tool_server) if isinstance(e, ResponseEvent)]
    assert events, "the plugin handed vLLM none of its own events"
    for event in events:
        model = event.to_openai()
        for name in type(model).model_fields:
            expected = getattr(model, name)
            got = getattr(event, name)
            where = f"{event.type} #{event.sequence_number}: .{name}"
            assert type(got) is type(expected), f"{where}: {type(got)} != {type(expected)}"
            assert got == expected, f"{where}: {got!r} != {expected!r}"
        # A name openai-python's type does not declare is missing here too.
        assert not hasattr(model, "no_such_field")
        assert not hasattr(event, "no_such_field")
        assert not hasattr(event, "_private")


def test_the_corpus_reaches_the_fields_consumers_read(tool_server: Any) -> None:
    """The check above is not vacuous: the corpus's events carry `.item`, `.delta`,
    `.part` and `.output_index`, and item fields read as openai-python's items."""
    read: set[str] = set()
    for entry in ENTRIES:
        for event in _stream_events(entry, tool_server):
            if isinstance(event, ResponseEvent):
                read.update(type(event.to_openai()).model_fields)
    assert {"item", "delta", "part", "output_index", "item_id", "content_index"} <= read
    entry = corpus.CORPUS[0]
    added = next(
        e
        for e in _stream_events(entry, tool_server)
        if isinstance(e, ResponseEvent) and e.type == "response.output_item.added"
    )
    assert added.item.id == added.to_openai().item.id
    assert added.item.type == added.to_openai().item.type
