"""Small public types shared by the Python package."""

from __future__ import annotations

from enum import Enum

__all__ = ["StreamState"]


class StreamState(str, Enum):
    """Where a parser is in the message grammar (openai-harmony's names)."""

    EXPECT_START = "ExpectStart"
    HEADER = "Header"
    CONTENT = "Content"
