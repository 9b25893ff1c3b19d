"""What the strict and the loose checks share."""

from __future__ import annotations

import functools
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter

Event = dict[str, Any]

# Terminal event type -> the status its response carries.
TERMINAL = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}
ENVELOPE = frozenset({"response.created", "response.in_progress", *TERMINAL})

Path = tuple[str | int, ...]


def where(i: int, ev: Event) -> str:
    """How a failure names the event it is about."""
    return f"event #{i} (seq {ev.get('sequence_number')!r}, {ev.get('type')!r})"


@functools.cache
def event_adapter() -> TypeAdapter[Any]:
    """openai-python's ``ResponseStreamEvent`` union."""
    from openai.types.responses import ResponseStreamEvent

    return TypeAdapter(ResponseStreamEvent)


@functools.cache
def response_adapter() -> TypeAdapter[Any]:
    from openai.types.responses import Response

    return TypeAdapter(Response)


@functools.cache
def item_adapter() -> TypeAdapter[Any]:
    from openai.types.responses import ResponseOutputItem

    return TypeAdapter(ResponseOutputItem)


@functools.cache
def event_classes() -> dict[str, type[BaseModel]]:
    """openai-python's event class for each event type (the union's discriminator)."""
    from openai.types.responses import ResponseStreamEvent

    out: dict[str, type[BaseModel]] = {}
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0]):
        for name in typing.get_args(cls.model_fields["type"].annotation):
            out[name] = cls
    return out


def unknown_fields(model: Any, path: Path = ()) -> list[tuple[Path, set[str]]]:
    """Every place in a validated openai-python model holding fields its type lacks."""
    out: list[tuple[Path, set[str]]] = []
    if isinstance(model, BaseModel):
        if model.model_extra:
            out.append((path, set(model.model_extra)))
        for name in type(model).model_fields:
            out += unknown_fields(getattr(model, name), (*path, name))
    elif isinstance(model, list):
        for i, x in enumerate(model):
            out += unknown_fields(x, (*path, i))
    return out


def streamed_items(events: list[Event]) -> list[dict[str, Any]]:
    """The items of the ``output_item.done`` events, in order."""
    return [ev["item"] for ev in events if ev["type"] == "response.output_item.done"]
