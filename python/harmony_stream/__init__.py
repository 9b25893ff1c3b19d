"""harmony-stream: gpt-oss Harmony token streams, parsed in Rust as they arrive.

>>> from harmony_stream import HarmonyParser, Vocab
>>> vocab = Vocab.load()                 # doctest: +SKIP
>>> parser = HarmonyParser(vocab)        # doctest: +SKIP
>>> parser.process(200005)               # doctest: +SKIP
"""

from __future__ import annotations

from ._loop import Finish, StreamOutput, Tokens, ToolResult
from ._native import (
    VOCAB_SHA256,
    HarmonyParser,
    Message,
    Recovery,
    ResponseEvent,
    ResponseStream,
    StreamState,
    Vocab,
    __version__,
    feed_batch,
)
from ._openai import to_openai_response
from .errors import (
    HarmonyError,
    HarmonyStreamError,
    InternalError,
    InvalidRequestError,
    InvalidTokenError,
    ResponseStateError,
    StreamInUseError,
    VocabError,
    VocabFormatError,
    VocabHashError,
    VocabNotFoundError,
)

__all__ = [
    "VOCAB_SHA256",
    "Finish",
    "HarmonyError",
    "HarmonyParser",
    "HarmonyStreamError",
    "InternalError",
    "InvalidRequestError",
    "InvalidTokenError",
    "Message",
    "Recovery",
    "ResponseEvent",
    "ResponseStateError",
    "ResponseStream",
    "StreamInUseError",
    "StreamOutput",
    "StreamState",
    "Tokens",
    "ToolResult",
    "Vocab",
    "VocabError",
    "VocabFormatError",
    "VocabHashError",
    "VocabNotFoundError",
    "__version__",
    "feed_batch",
    "to_openai_response",
]
