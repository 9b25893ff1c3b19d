"""Replaying a transcript through the event engine, as a server would stream it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._native import ResponseEvent, ResponseStream, Vocab
from .transcript import ModelTurn, ToolOutput, Transcript

__all__ = ["replay_events", "replay_response", "replay_sse", "stream_for"]


def stream_for(transcript: Transcript, vocab: Vocab, **kwargs: Any) -> ResponseStream:
    """A `ResponseStream` set up with the transcript's tools and max_output_tokens."""
    kwargs.setdefault("tools", transcript.tools)
    kwargs.setdefault("max_output_tokens", transcript.max_output_tokens)
    return ResponseStream(vocab, **kwargs)


def _finish_reason(transcript: Transcript) -> str:
    turns = transcript.model_turns
    return turns[-1].finish_reason if turns else "stop"


def replay_events(
    transcript: Transcript, vocab: Vocab, *, step: int = 1, **kwargs: Any
) -> Iterator[ResponseEvent]:
    """Every event of the transcript's response, feeding `step` tokens per engine step."""
    if step < 1:
        raise ValueError("step must be >= 1")
    stream = stream_for(transcript, vocab, **kwargs)
    yield from stream.start()
    for turn in transcript.turns:
        if isinstance(turn, ModelTurn):
            for i in range(0, len(turn.tokens), step):
                yield from stream.feed(turn.tokens[i : i + step])
        elif isinstance(turn, ToolOutput):
            yield from stream.tool_output(turn.output, turn.error)
    yield from stream.finish(_finish_reason(transcript))  # type: ignore[arg-type]


def replay_sse(transcript: Transcript, vocab: Vocab, *, step: int = 1, **kwargs: Any) -> bytes:
    """The whole SSE body of the transcript's response, without event objects."""
    if step < 1:
        raise ValueError("step must be >= 1")
    stream = stream_for(transcript, vocab, **kwargs)
    out = [stream.start_sse()]
    for turn in transcript.turns:
        if isinstance(turn, ModelTurn):
            for i in range(0, len(turn.tokens), step):
                out.append(stream.feed_sse(turn.tokens[i : i + step]))
        elif isinstance(turn, ToolOutput):
            out.append(stream.tool_output_sse(turn.output, turn.error))
    out.append(stream.finish_sse(_finish_reason(transcript)))  # type: ignore[arg-type]
    return b"".join(out)


def replay_response(transcript: Transcript, vocab: Vocab, **kwargs: Any) -> dict[str, Any]:
    """The non-streaming result: the same engine fed to the end, then `response()`."""
    stream = stream_for(transcript, vocab, **kwargs)
    for turn in transcript.turns:
        if isinstance(turn, ModelTurn):
            stream.feed_sse(turn.tokens)
        elif isinstance(turn, ToolOutput):
            stream.tool_output_sse(turn.output, turn.error)
    stream.finish_sse(_finish_reason(transcript))  # type: ignore[arg-type]
    return stream.response()
