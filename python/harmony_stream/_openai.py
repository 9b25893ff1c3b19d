"""Conversion to openai-python's types (optional: ``pip install 'harmony-stream[openai]'``)."""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["to_openai_event", "to_openai_response"]


@functools.cache
def _adapters() -> tuple[Any, Any]:
    try:
        from openai.types.responses import Response, ResponseStreamEvent
        from pydantic import TypeAdapter
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_openai() needs openai-python: pip install 'harmony-stream[openai]'"
        ) from e
    return TypeAdapter(ResponseStreamEvent), TypeAdapter(Response)


def to_openai_event(data: dict[str, Any]) -> Any:
    """Validates an event dict as ``openai.types.responses.ResponseStreamEvent``."""
    return _adapters()[0].validate_python(data)


def to_openai_response(data: dict[str, Any]) -> Any:
    """Validates a response dict as ``openai.types.responses.Response``."""
    return _adapters()[1].validate_python(data)
