"""The transcript format: a recorded gpt-oss completion, turn by turn.

One JSON object::

    {"tools": [...], "max_output_tokens": 4096,
     "turns": [{"tokens": [...], "finish_reason": "stop"},
               {"tool_output": {"output": "...", "error": null}},
               {"tokens": [...], "finish_reason": "stop"}]}

``{"tokens": [...]}`` alone is the short form of one turn. ``tokens`` are the
model's output tokens after the prompt's ``<|start|>assistant``.

Every error is a :class:`TranscriptError` whose message starts with the file
(and ``turns[i]`` when it is about one turn), in plain words.

:func:`from_messages` and :func:`from_response` make a transcript: from Harmony
messages, or from a Responses API response (docs/architecture.md, Making a
transcript).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._native import FINISH_REASONS as _FINISH_REASONS
from ._native import MAX_COUNT
from ._types import AssistantMessage, MessagesDocument, ToolMessage
from .errors import HarmonyStreamError, InvalidTokenError

if TYPE_CHECKING:
    from ._native import Vocab

__all__ = [
    "AssistantMessage",
    "MessagesDocument",
    "ModelTurn",
    "ToolMessage",
    "ToolOutput",
    "Transcript",
    "TranscriptError",
    "check_token_ids",
    "from_messages",
    "from_response",
    "load_transcript",
]

FINISH_REASONS = _FINISH_REASONS

MAX_TOKEN_ID = 2**32 - 1
"""The largest id a transcript may hold (the engine's ids are 32-bit)."""

MAX_OUTPUT_TOKENS = MAX_COUNT
"""The largest ``max_output_tokens`` the engine takes."""


class TranscriptError(HarmonyStreamError, ValueError):
    """A transcript that does not follow the format; the message says where."""


@dataclass(frozen=True)
class ModelTurn:
    """Tokens the model generated in one turn, and why it stopped."""

    tokens: list[int]
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ToolOutput:
    """The result of the tool call that ended the previous turn."""

    output: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Transcript:
    """A parsed transcript. `source` (the file) starts the messages of errors about it."""

    turns: list[ModelTurn | ToolOutput]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_output_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="<transcript>", compare=False)

    @property
    def model_turns(self) -> list[ModelTurn]:
        return [t for t in self.turns if isinstance(t, ModelTurn)]

    @property
    def num_tokens(self) -> int:
        return sum(len(t.tokens) for t in self.model_turns)


def _show(value: Any) -> str:
    """A JSON value as the file spelled it, more or less, and short."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a number too large to read" if not math.isnan(value) else "NaN"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "a list"
    elif isinstance(value, dict):
        text = "an object"
    else:
        text = json.dumps(value)  # numbers, true, false, null
    return text if len(text) <= 40 else text[:37] + "..."


def _tokens(value: Any, where: str) -> list[int]:
    """The token list itself (not copied), once every item is a whole number in range."""
    if not isinstance(value, list):
        raise TranscriptError(f"{where}: 'tokens' must be a list of token ids, not {_show(value)}")
    # The fast path: one pass in C for the common case of a clean list.
    if all(type(t) is int for t in value) and (
        not value or (min(value) >= 0 and max(value) <= MAX_TOKEN_ID)
    ):
        return value
    for i, t in enumerate(value):
        if type(t) is not int or not 0 <= t <= MAX_TOKEN_ID:
            raise TranscriptError(
                f"{where}: tokens[{i}] must be a token id (a whole number from 0 to "
                f"{MAX_TOKEN_ID}), not {_show(t)}"
            )
    return value  # pragma: no cover (the fast path took it)


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise TranscriptError(f"{where}: '{key}' must be a string or null, not {_show(v)}")
    return v


def parse_transcript(data: Any, source: str = "<transcript>") -> Transcript:
    """Validates a decoded transcript object (its token lists are used as they are)."""
    if not isinstance(data, dict):
        raise TranscriptError(f"{source}: a transcript is a JSON object, not {_show(data)}")
    if "turns" in data and "tokens" in data:
        raise TranscriptError(f"{source}: give either 'turns' or 'tokens', not both")
    raw_turns = data.get("turns")
    if raw_turns is None:
        if "tokens" not in data:
            raise TranscriptError(f"{source}: missing 'turns' (or 'tokens' for a single turn)")
        raw_turns = [{"tokens": data["tokens"], "finish_reason": data.get("finish_reason", "stop")}]
    if not isinstance(raw_turns, list) or not raw_turns:
        raise TranscriptError(f"{source}: 'turns' must be a non-empty list")
    turns: list[ModelTurn | ToolOutput] = []
    for i, turn in enumerate(raw_turns):
        where = f"{source}: turns[{i}]"
        if not isinstance(turn, dict):
            raise TranscriptError(f"{where} must be an object, not {_show(turn)}")
        if "tokens" in turn:
            reason = turn.get("finish_reason", "stop")
            if not isinstance(reason, str) or reason not in FINISH_REASONS:
                raise TranscriptError(
                    f"{where}: finish_reason must be one of {', '.join(FINISH_REASONS)}, "
                    f"not {_show(reason)}"
                )
            turns.append(ModelTurn(_tokens(turn["tokens"], where), reason))
        elif "tool_output" in turn:
            out = turn["tool_output"]
            if not isinstance(out, dict):
                raise TranscriptError(f"{where}: 'tool_output' must be an object")
            if i == 0 or not isinstance(turns[-1], ModelTurn):
                raise TranscriptError(f"{where}: a tool_output must follow a model turn")
            turns.append(ToolOutput(_opt_str(out, "output", where), _opt_str(out, "error", where)))
        else:
            raise TranscriptError(f"{where}: expected 'tokens' or 'tool_output'")
    tools = data.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise TranscriptError(f"{source}: 'tools' must be a list of objects")
    mot = _max_output_tokens(data, source)
    known = {"turns", "tokens", "finish_reason", "tools", "max_output_tokens"}
    extra = {k: v for k, v in data.items() if k not in known}
    return Transcript(turns=turns, tools=tools, max_output_tokens=mot, extra=extra, source=source)


class _Ints(dict[str, int]):
    """JSON integers by their text: one int object per distinct number.

    A transcript repeats the same few thousand token ids millions of times; the
    default decoder makes a new int object (28 bytes) for each.
    """

    def __missing__(self, text: str) -> int:
        value = self[text] = int(text)
        return value


def read_json_file(path: str | os.PathLike[str]) -> Any:
    """A JSON file's value; any file that cannot be read as JSON is a `TranscriptError`.

    The message names the file and says why in plain words: it does not exist,
    is a directory, is not UTF-8 text, is not JSON, is nested too deeply, or
    holds a number too long to read.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise TranscriptError(f"{p}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 1].hex()
        raise TranscriptError(
            f"{p}: not UTF-8 text (byte 0x{bad} at offset {e.start}), so not JSON"
        ) from None
    del raw
    try:
        return json.loads(text, parse_int=_Ints().__getitem__)
    except json.JSONDecodeError as e:
        raise TranscriptError(f"{p}: not JSON: {e}") from None
    except RecursionError:
        raise TranscriptError(
            f"{p}: JSON nested too deeply to read (lists or objects inside each other "
            "more than about a thousand levels deep)"
        ) from None
    except ValueError as e:  # int() of a number with more digits than Python converts
        if "digits" not in str(e):
            raise
        limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        raise TranscriptError(f"{p}: holds a number with more than {limit} digits") from None


def load_transcript(path: str | os.PathLike[str]) -> Transcript:
    """Reads and validates a transcript file."""
    return parse_transcript(read_json_file(path), str(Path(path)))


def _max_output_tokens(data: Mapping[str, Any], source: str) -> int | None:
    """`data`'s `max_output_tokens`: a whole number from 1 to MAX_OUTPUT_TOKENS, or None."""
    mot = data.get("max_output_tokens")
    if mot is not None and (type(mot) is not int or not 1 <= mot <= MAX_OUTPUT_TOKENS):
        raise TranscriptError(
            f"{source}: 'max_output_tokens' must be a whole number from 1 to "
            f"{MAX_OUTPUT_TOKENS}, or null; not {_show(mot)}"
        )
    return mot


def check_token_ids(transcript: Transcript, vocab: Vocab) -> None:
    """Every token id in `vocab`, or a `TranscriptError` naming the turn and index
    (with the engine's own message)."""
    for i, turn in enumerate(transcript.turns):
        if not isinstance(turn, ModelTurn):
            continue
        try:
            vocab.decode_bytes(turn.tokens)
        except InvalidTokenError as e:
            raise TranscriptError(
                f"{transcript.source}: turns[{i}]: tokens[{e.token_index}]: {e}"
            ) from e


def from_messages(
    vocab: Vocab, doc: MessagesDocument | Mapping[str, Any], *, source: str = "<messages>"
) -> dict[str, Any]:
    """The transcript (a JSON-ready dict) of a messages document.

    ``{"tools": [...], "max_output_tokens": N, "messages": [...]}``: assistant
    messages ``{"channel", "recipient"?, "content_type"?, "content"}`` and, after
    a call, its result ``{"role": "tool", "name": RECIPIENT, "content" | "error"}``,
    which ends the model's turn. The tokens are openai-harmony's rendering of the
    messages; a bad document is a `TranscriptError` naming ``messages[i]``.
    """
    from ._compose import from_messages as compose

    return compose(vocab, doc, source=source)


def from_response(
    vocab: Vocab, response: Mapping[str, Any] | Sequence[Any], *, source: str = "<response>"
) -> dict[str, Any]:
    """The transcript (a JSON-ready dict) that replays as this Responses API response.

    `response` is a response object or its ``output`` list; each item becomes the
    Harmony message gpt-oss writes for it (the inverse of the engine's routing),
    and a call's output or error the ``tool_output`` after its turn. A bad item is
    a `TranscriptError` naming ``output[i]``.
    """
    from ._compose import from_response as compose

    return compose(vocab, response, source=source)
