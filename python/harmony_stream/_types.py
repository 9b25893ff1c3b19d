"""Small public types shared by the Python package.

``StreamState`` is defined by the extension (``harmony_stream._native``) and
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ._native import StreamState

__all__ = ["FinishReason", "LogprobInput", "RoleName", "StreamState"]

FinishReason = Literal["stop", "length", "abort", "error"]
"""Why generation ended: ``stop`` (completed), ``length`` (max output tokens),
``abort`` or ``error`` (failed)."""

LogprobInput = float | tuple[float, Sequence[tuple[int, float]]]
"""One token's log probability, optionally with ``(token_id, logprob)`` alternatives."""

RoleName = Literal["user", "assistant", "system", "developer", "tool"]
"""The five Harmony roles."""
