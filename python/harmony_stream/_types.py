"""Small public types shared by the Python package.

``StreamState`` is defined by the extension (``harmony_stream._native``) and
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from ._native import StreamState

__all__ = [
    "AssistantMessage",
    "FinishReason",
    "LogprobInput",
    "MessagesDocument",
    "RoleName",
    "StreamState",
    "ToolMessage",
]

FinishReason = Literal["stop", "length", "abort", "error"]
"""Why generation ended: ``stop`` (completed), ``length`` (max output tokens),
``abort`` or ``error`` (failed)."""

LogprobInput = float | tuple[float, Sequence[tuple[int, float]]]
"""One token's log probability, optionally with ``(token_id, logprob)`` alternatives."""

RoleName = Literal["user", "assistant", "system", "developer", "tool"]
"""The five Harmony roles."""


class _AssistantMessageOptional(TypedDict, total=False):
    role: Literal["assistant"]
    recipient: str
    content_type: str


class AssistantMessage(_AssistantMessageOptional):
    """One Harmony message the model writes, in a messages document.

    ``channel`` is one of ``CHANNELS``; ``recipient`` makes it a call
    (``functions.NAME``, ``python``, ``browser.search``, ``LABEL.TOOL``);
    ``content_type`` (``<|constrain|>json``, ``code``) goes with a recipient.
    """

    channel: str
    content: str


class _ToolMessageOptional(TypedDict, total=False):
    content: str
    error: str


class ToolMessage(_ToolMessageOptional):
    """The result of the call just before it: ``content`` or ``error``, not both.

    ``name`` is that call's recipient. It ends the model's turn; the next
    assistant message starts a new completion.
    """

    role: Literal["tool"]
    name: str


class _MessagesDocumentOptional(TypedDict, total=False):
    tools: list[dict[str, Any]]
    max_output_tokens: int


class MessagesDocument(_MessagesDocumentOptional):
    """What ``harmony-stream transcript`` turns into a transcript: the request's
    ``tools``, an optional ``max_output_tokens``, and the model's messages with
    the tools' results between them."""

    messages: list[AssistantMessage | ToolMessage]
