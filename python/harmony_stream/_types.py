"""Small public types shared by the Python package."""

from __future__ import annotations

from enum import Enum
from typing import Literal

__all__ = ["RoleName", "StreamState"]

RoleName = Literal["user", "assistant", "system", "developer", "tool"]
"""The five Harmony roles."""


class StreamState(str, Enum):
    """Where a parser is in the message grammar (openai-harmony's names)."""

    EXPECT_START = "ExpectStart"
    HEADER = "Header"
    CONTENT = "Content"
