"""Conversion to openai-python's types (optional: ``pip install 'harmony-stream[openai]'``).

``harmony_stream.to_openai_response`` (public) and the binding's
``ResponseEvent.to_openai()`` / ``ResponseStream.response_openai()`` come here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai.types.responses import Response

__all__ = ["to_openai_event", "to_openai_response"]


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
