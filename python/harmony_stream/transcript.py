"""The transcript format: a recorded gpt-oss completion, turn by turn.

One JSON object::

    {"tools": [...], "max_output_tokens": 4096,
     "turns": [{"tokens": [...], "finish_reason": "stop"},
               {"tool_output": {"output": "...", "error": null}},
               {"tokens": [...], "finish_reason": "stop"}]}

``{"tokens": [...]}`` alone is the short form of one turn. ``tokens`` are the
model's output tokens after the prompt's ``<|start|>assistant``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HarmonyStreamError

__all__ = ["ModelTurn", "ToolOutput", "Transcript", "TranscriptError", "load_transcript"]

FINISH_REASONS = ("stop", "length", "abort", "error")


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
    """A parsed transcript."""

    turns: list[ModelTurn | ToolOutput]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_output_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_turns(self) -> list[ModelTurn]:
        return [t for t in self.turns if isinstance(t, ModelTurn)]

    @property
    def num_tokens(self) -> int:
        return sum(len(t.tokens) for t in self.model_turns)


def _tokens(value: Any, where: str) -> list[int]:
    if not isinstance(value, list):
        raise TranscriptError(
            f"{where}: 'tokens' must be a list of int, got {type(value).__name__}"
        )
    for i, t in enumerate(value):
        if isinstance(t, bool) or not isinstance(t, int):
            raise TranscriptError(f"{where}: tokens[{i}] must be an int, got {t!r}")
    return list(value)


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise TranscriptError(f"{where}: '{key}' must be a string or null, got {type(v).__name__}")
    return v


def parse_transcript(data: Any, source: str = "<transcript>") -> Transcript:
    """Validates a decoded transcript object."""
    if not isinstance(data, dict):
        raise TranscriptError(f"{source}: a transcript is a JSON object, got {type(data).__name__}")
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
            raise TranscriptError(f"{where} must be an object")
        if "tokens" in turn:
            reason = turn.get("finish_reason", "stop")
            if reason not in FINISH_REASONS:
                raise TranscriptError(
                    f"{where}: finish_reason must be one of {FINISH_REASONS}, got {reason!r}"
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
    mot = data.get("max_output_tokens")
    if mot is not None and (isinstance(mot, bool) or not isinstance(mot, int) or mot < 1):
        raise TranscriptError(f"{source}: 'max_output_tokens' must be a positive int or null")
    known = {"turns", "tokens", "finish_reason", "tools", "max_output_tokens"}
    extra = {k: v for k, v in data.items() if k not in known}
    return Transcript(turns=turns, tools=tools, max_output_tokens=mot, extra=extra)


def read_json_file(path: str | os.PathLike[str]) -> Any:
    """A JSON file's value; a missing file or bad JSON is a `TranscriptError` naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise TranscriptError(f"{p}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise TranscriptError(f"{p}: not JSON: {e}") from e


def load_transcript(path: str | os.PathLike[str]) -> Transcript:
    """Reads and validates a transcript file."""
    return parse_transcript(read_json_file(path), str(Path(path)))
