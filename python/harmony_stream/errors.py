"""Exceptions raised by harmony-stream.

Every exception derives from :class:`HarmonyStreamError`. Errors about token
streams also derive from :class:`ValueError`, so code written for
``openai_harmony`` (which raises ``HarmonyError(ValueError)``) keeps working.

The extension (``harmony_stream._native``) imports this module once, when it is
loaded, and raises these classes: this module must not import the extension.
"""

from __future__ import annotations

__all__ = [
    "HarmonyError",
    "HarmonyStreamError",
    "InternalError",
    "InvalidRequestError",
    "InvalidTokenError",
    "ResponseStateError",
    "StreamInUseError",
    "VocabError",
    "VocabFormatError",
    "VocabHashError",
    "VocabNotFoundError",
]


class HarmonyStreamError(Exception):
    """Base class of every harmony-stream error."""


class HarmonyError(HarmonyStreamError, ValueError):
    """Malformed Harmony (strict mode) or an unusable token.

    Attributes:
        token_index: index of the offending token in the stream (for end of
            stream: the number of tokens seen). The token was not consumed and
            the parser is unchanged.
        kind: a stable snake_case name of the rule that was broken, e.g.
            ``"unexpected_token"``, ``"unknown_role"``, ``"invalid_token"``.
    """

    def __init__(self, message: str, *, token_index: int, kind: str) -> None:
        super().__init__(message)
        self.token_index = token_index
        self.kind = kind

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class InvalidTokenError(HarmonyError):
    """A token id outside the ``o200k_harmony`` vocabulary.

    Attributes:
        token: the id that was given.
    """

    def __init__(self, message: str, *, token_index: int, token: int) -> None:
        super().__init__(message, token_index=token_index, kind="invalid_token")
        self.token = token


class ResponseStateError(HarmonyStreamError, RuntimeError):
    """A call the response stream's state does not allow: ``feed`` or ``finish``
    after ``finish``, ``tool_output`` with no call waiting for a result. Nothing
    was emitted and the stream is unchanged."""


class StreamInUseError(ResponseStateError):
    """A call on a ``ResponseStream`` or ``HarmonyParser`` while another call is
    running on it (from another thread, or from a callback inside that call). A
    stream accepts one call at a time: this one is refused at once, never waits;
    nothing was emitted and the object is unchanged."""


class InvalidRequestError(HarmonyStreamError, ValueError):
    """A request setting the engine cannot use, named by its path: an unknown tool
    type, a tool or MCP tool list of the wrong shape or missing a required field,
    NaN or Infinity in request data (JSON has neither), a count out of range,
    logprobs that do not line up with the tokens or are not log probabilities.

    Python values of the wrong type raise ``TypeError`` instead: ``tools`` that is
    not a list, an object JSON cannot hold (as ``json.dumps`` does), an argument
    that is not an int."""


class InternalError(HarmonyStreamError, RuntimeError):
    """A bug inside harmony-stream (a Rust panic), caught at the boundary: the
    process goes on, the stream that hit it refuses further calls."""


class VocabError(HarmonyStreamError):
    """The vocabulary could not be loaded."""


class VocabNotFoundError(VocabError, FileNotFoundError):
    """No ``o200k_base.tiktoken`` was found; the message says where to put it."""


class VocabHashError(VocabError, ValueError):
    """A vocabulary whose SHA-256 is not the one gpt-oss uses."""


class VocabFormatError(VocabError, ValueError):
    """Bytes that are not a tiktoken BPE file."""


def _rebuild(cls: type[HarmonyError], message: str, attrs: dict[str, object]) -> HarmonyError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(attrs)
    return exc
