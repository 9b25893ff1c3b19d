"""Conversion to openai-python's types (optional: ``pip install 'harmony-stream[openai]'``).

``harmony_stream.to_openai_response`` (public) and the binding's
``ResponseEvent.to_openai()`` / ``ResponseStream.response_openai()`` come here.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from openai.types.responses import Response

__all__ = ["event_attribute", "to_openai_event", "to_openai_response"]


@functools.cache
def _adapters() -> tuple[Any, Any]:
    try:
        from openai.types.responses import Response, ResponseStreamEvent
        from pydantic import TypeAdapter
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "conversion to openai-python's types needs openai-python: "
            "pip install 'harmony-stream[openai]'"
        ) from e
    return TypeAdapter(ResponseStreamEvent), TypeAdapter(Response)


def to_openai_event(data: Mapping[str, Any]) -> Any:
    """Validates an event dict as ``openai.types.responses.ResponseStreamEvent``."""
    return _adapters()[0].validate_python(data)


def to_openai_response(data: Mapping[str, Any]) -> Response:
    """A response dict as openai-python's ``openai.types.responses.Response``.

    ``data`` is what :meth:`ResponseStream.response` returns (or the ``response``
    of a ``response.completed`` event, or a replay's final response). pydantic
    validates it: a dict that is not a ``Response`` raises
    ``pydantic.ValidationError``. Needs ``pip install 'harmony-stream[openai]'``.
    """
    response: Response = _adapters()[1].validate_python(data)
    return response


# Field types read straight from the event's JSON: pydantic would return the
# JSON value itself for them (strings, integers, literals, or null).
_PLAIN = (str, int, bool, type(None))


def _plain(annotation: Any) -> bool:
    """Whether pydantic reads a JSON value of this field type as the value itself."""
    if annotation in _PLAIN:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return all(_plain(a) for a in typing.get_args(annotation))
    return False


@functools.cache
def _event_types() -> dict[str, tuple[Any, frozenset[str], frozenset[str]]]:
    """Each event type's openai-python class, its fields, and the plain ones among them."""
    from openai.types.responses import ResponseStreamEvent

    union = typing.get_args(ResponseStreamEvent)[0]
    table: dict[str, tuple[Any, frozenset[str], frozenset[str]]] = {}
    for cls in typing.get_args(union):
        fields = cls.model_fields
        plain = frozenset(n for n, f in fields.items() if _plain(f.annotation))
        for kind in typing.get_args(fields["type"].annotation):
            table[kind] = (cls, frozenset(fields), plain)
    return table


def event_attribute(kind: str, data: str, name: str) -> Any:
    """Field `name` of the event of type `kind` whose JSON is `data`, as
    openai-python's type for that event reads it (``ResponseEvent.__getattr__``).

    A string, integer or literal field is the JSON value itself (no pydantic
    object); any other field (an item, a part, a response, logprobs) is read
    from the event validated as openai-python's type. A name the type does not
    declare raises ``AttributeError``, as it does on openai-python's event.
    """
    entry = _event_types().get(kind)
    if entry is None or name not in entry[1]:
        raise AttributeError(f"a {kind!r} event has no attribute {name!r}")
    cls, _, plain = entry
    values = json.loads(data)
    if name in plain and name in values:
        return values[name]
    return getattr(cls.model_validate(values), name)
