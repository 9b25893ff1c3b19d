"""Small public types shared by the Python package."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Literal

__all__ = ["FinishReason", "LogprobInput", "RoleName", "StreamState"]

FinishReason = Literal["stop", "length", "abort", "error"]
"""Why generation ended: ``stop`` (completed), ``length`` (max output tokens),
``abort`` or ``error`` (failed)."""

LogprobInput = float | tuple[float, Sequence[tuple[int, float]]]
"""One token's log probability, optionally with ``(token_id, logprob)`` alternatives."""

RoleName = Literal["user", "assistant", "system", "developer", "tool"]
"""The five Harmony roles."""


class StreamState(str, Enum):
    """Where a parser is in the message grammar (openai-harmony's names)."""

    EXPECT_START = "ExpectStart"
    HEADER = "Header"
    CONTENT = "Content"
