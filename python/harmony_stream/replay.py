"""Replaying a transcript through the event engine, as a server would stream it.

The turn loop exists once, in :func:`replay_steps`: it turns a transcript's
turns into engine steps (feed these tokens, give this tool result, finish for
this reason) and holds the one rule of a replay's end. Every replay here
drives it: :func:`iter_sse` (the CLI's ``events``), :func:`replay_events`,
:func:`replay_sse`, :func:`replay_response`; it is built so the replay server's
async loop can drive it too (see its contract).

The rule: the replay ends at the first model turn that does not end with
``stop``. A turn that ends with ``length`` was cut by the maximum number of
output tokens, so the response ends ``incomplete`` (``max_output_tokens``)
there; ``abort`` and ``error`` end it ``failed``. Later turns are not replayed
(the model never got to them). With a budget (``max_output_tokens``), a turn
that would go past it is cut at the budget and the response ends
``incomplete``; a tool result is not given when the budget is spent and model
tokens remain (the call never runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from ._native import ResponseEvent, ResponseStream, Vocab
from ._types import FinishReason
from .errors import HarmonyStreamError, InternalError, InvalidTokenError, ResponseStateError
from .transcript import ModelTurn, ToolOutput, Transcript, TranscriptError

__all__ = [
    "Feed",
    "Finish",
    "ReplayStep",
    "ToolResult",
    "iter_sse",
    "replay_events",
    "replay_response",
    "replay_sse",
    "replay_steps",
    "stream_for",
]


@dataclass(slots=True)
class Feed:
    """One engine step: feed `tokens` (``ResponseStream.feed`` / ``feed_sse``).

    The steps are plain records (slotted, not frozen, for speed): read them, do
    not change them.

    Attributes:
        tokens: the step's tokens (at most `step` of them; never empty).
        turn: index of their model turn in the replayed turns.
        offset: index of ``tokens[0]`` in that turn's tokens.
        position: output tokens fed before this step, over the whole replay
            (the output position of ``tokens[0]``, e.g. for logprobs).
    """

    tokens: list[int]
    turn: int
    offset: int
    position: int


@dataclass(slots=True)
class ToolResult:
    """The recorded result of the call that ended the previous model turn
    (``ResponseStream.tool_output``). A driver that runs the tool itself (an MCP
    server) gives its own result instead."""

    output: str | None
    error: str | None
    turn: int


@dataclass(slots=True)
class Finish:
    """The end: ``ResponseStream.finish(reason)``. Always the last step.

    Attributes:
        reason: ``stop`` (completed), ``length`` (incomplete: max output tokens),
            ``abort`` or ``error`` (failed).
        turn: the turn that ended the replay, or None when the turns ran out.
    """

    reason: FinishReason
    turn: int | None


ReplayStep = Feed | ToolResult | Finish


def replay_steps(
    turns: Transcript | Sequence[ModelTurn | ToolOutput],
    *,
    step: int | None = 1,
    max_output_tokens: int | None = None,
) -> Iterator[ReplayStep]:
    """The engine steps that replay `turns`, one at a time; the rule of the module doc.

    Contract:

    * It only reads `turns`: no engine, no I/O, no clock. The first ``next()``
      looks over the turns once; each further one costs O(`step`) (a slice of
      the turn's token list, or the list itself when the whole turn fits one
      step: read it, do not change it), so an async driver can
      apply a step, await its own work (write to a client, call an MCP tool,
      sleep), then ask for the next one; it may stop at any point (``break``),
      nothing is left to clean up.
    * The steps come in transcript order: `Feed` steps of up to `step` tokens
      (``None``: a whole turn per step), a `ToolResult` for each ``tool_output``
      turn, and exactly one `Finish`, last. A model turn with no tokens gives
      no `Feed`.
    * It does not know the engine's state: the driver applies each step to its
      ``ResponseStream`` in order (``start()`` first is the driver's), and
      decides what to do with a `ToolResult` the engine is not waiting for
      (the replays of this module raise a `TranscriptError` naming the turn).
    * `max_output_tokens` is the response's budget, the value the engine was
      given: the tokens past it are never yielded, the replay finishes with
      ``length``, and a `ToolResult` is not yielded when the budget is spent
      and model tokens remain after it.
    * Finish reasons: ``length``, ``abort`` or ``error`` from the first model
      turn that ends so (nothing after it is yielded); otherwise ``stop``.
    """
    _check_step(step)
    if isinstance(turns, Transcript):
        turns = turns.turns
    budget = max_output_tokens
    used = 0
    # The last model turn with tokens: a tool result before it has an answer to wait for.
    last_tokens = max(
        (i for i, t in enumerate(turns) if isinstance(t, ModelTurn) and t.tokens), default=-1
    )
    for index, turn in enumerate(turns):
        if isinstance(turn, ModelTurn):
            tokens = turn.tokens
            cut = budget is not None and used + len(tokens) > budget
            if cut:
                assert budget is not None
                tokens = tokens[: max(budget - used, 0)]
            size = len(tokens) if step is None else step
            for offset in range(0, len(tokens), max(size, 1)):
                chunk = tokens if size >= len(tokens) else tokens[offset : offset + size]
                yield Feed(chunk, index, offset, used)
                used += len(chunk)
            if cut:
                yield Finish("length", index)
                return
            if turn.finish_reason != "stop":
                yield Finish(cast(FinishReason, turn.finish_reason), index)
                return
        else:
            if budget is not None and used >= budget and index < last_tokens:
                yield Finish("length", index)  # no budget left for the answer
                return
            yield ToolResult(turn.output, turn.error, index)
    yield Finish("stop", None)


def stream_for(transcript: Transcript, vocab: Vocab, **kwargs: Any) -> ResponseStream:
    """A `ResponseStream` set up with the transcript's tools and max_output_tokens."""
    kwargs.setdefault("tools", transcript.tools)
    kwargs.setdefault("max_output_tokens", transcript.max_output_tokens)
    return ResponseStream(vocab, **kwargs)


def _open(transcript: Transcript, vocab: Vocab, kwargs: dict[str, Any]) -> ResponseStream:
    """`stream_for`, with a tool the engine refuses named by its index in the file.

    Fills in `kwargs` as `stream_for` does, so ``kwargs["max_output_tokens"]``
    is the engine's budget afterwards.
    """
    kwargs.setdefault("tools", transcript.tools)
    kwargs.setdefault("max_output_tokens", transcript.max_output_tokens)
    try:
        return ResponseStream(vocab, **kwargs)
    except InternalError:
        raise
    except (HarmonyStreamError, TypeError, ValueError, OverflowError) as e:
        message = str(e)
        if not message.startswith("tools["):
            for i, tool in enumerate(kwargs["tools"] or []):
                try:
                    ResponseStream(vocab, tools=[tool])
                except (HarmonyStreamError, TypeError, ValueError, OverflowError) as one:
                    message = f"tools[{i}]: {one}".replace(": tool field ", ": field ")
                    break
        raise TranscriptError(f"{transcript.source}: {message}") from e


T = TypeVar("T")


@dataclass(frozen=True)
class _Calls(Generic[T]):
    """The engine calls of one output kind (SSE bytes or event objects)."""

    start: Callable[[ResponseStream], T]
    feed: Callable[[ResponseStream, list[int]], T]
    tool_output: Callable[[ResponseStream, str | None, str | None], T]
    finish: Callable[[ResponseStream, FinishReason], T]


_SSE = _Calls[bytes](
    ResponseStream.start_sse,
    ResponseStream.feed_sse,
    ResponseStream.tool_output_sse,
    ResponseStream.finish_sse,
)
_EVENTS = _Calls[list[ResponseEvent]](
    ResponseStream.start, ResponseStream.feed, ResponseStream.tool_output, ResponseStream.finish
)


def _apply(stream: ResponseStream, s: ReplayStep, calls: _Calls[T], source: str) -> T:
    """One step on the engine; an error the transcript caused names the file and turn."""
    try:
        if isinstance(s, Feed):
            return calls.feed(stream, s.tokens)
        if isinstance(s, ToolResult):
            return calls.tool_output(stream, s.output, s.error)
        return calls.finish(stream, s.reason)
    except InternalError:
        raise
    except HarmonyStreamError as e:
        raise _step_error(s, e, source) from e


def _step_error(s: ReplayStep, e: HarmonyStreamError, source: str) -> Exception:
    where = source if s.turn is None else f"{source}: turns[{s.turn}]"
    if isinstance(e, ResponseStateError) and isinstance(s, ToolResult):
        return TranscriptError(
            f"{where}: tool_output follows a turn that made no call (no MCP, python, "
            "browser or function call is waiting for a result)"
        )
    if isinstance(e, InvalidTokenError) and isinstance(s, Feed) and e.token in s.tokens:
        return TranscriptError(f"{where}: tokens[{s.offset + s.tokens.index(e.token)}]: {e}")
    return TranscriptError(f"{where}: {e}")


def _check_step(step: int | None) -> None:
    if step is not None and step < 1:
        raise ValueError("step must be at least 1")


def _replay(
    stream: ResponseStream,
    transcript: Transcript,
    vocab: Vocab,
    calls: _Calls[T],
    step: int | None,
    budget: int | None,
) -> Iterator[T]:
    """`stream` driven by `replay_steps`: start, then one output per step."""
    yield calls.start(stream)
    for s in replay_steps(transcript.turns, step=step, max_output_tokens=budget):
        yield _apply(stream, s, calls, transcript.source)


def iter_sse(
    transcript: Transcript, vocab: Vocab, *, step: int = 1, **kwargs: Any
) -> Iterator[bytes]:
    """The SSE body of the transcript's response, one engine step's bytes at a time.

    Nothing is kept between steps, so a consumer that writes each chunk out
    replays any transcript in bounded memory. `kwargs` go to `ResponseStream`
    (the transcript's tools and max_output_tokens by default). Errors the
    transcript causes (a tool the engine refuses, a tool_output with no call
    waiting) are `TranscriptError`s naming the file and turn.
    """
    _check_step(step)
    stream = _open(transcript, vocab, kwargs)
    yield from _replay(stream, transcript, vocab, _SSE, step, kwargs["max_output_tokens"])


def replay_events(
    transcript: Transcript, vocab: Vocab, *, step: int = 1, **kwargs: Any
) -> Iterator[ResponseEvent]:
    """Every event of the transcript's response, feeding `step` tokens per engine step."""
    _check_step(step)
    stream = _open(transcript, vocab, kwargs)
    for events in _replay(stream, transcript, vocab, _EVENTS, step, kwargs["max_output_tokens"]):
        yield from events


def replay_sse(transcript: Transcript, vocab: Vocab, *, step: int = 1, **kwargs: Any) -> bytes:
    """The whole SSE body of the transcript's response, without event objects."""
    return b"".join(iter_sse(transcript, vocab, step=step, **kwargs))


def replay_response(
    transcript: Transcript, vocab: Vocab, *, step: int | None = None, **kwargs: Any
) -> dict[str, Any]:
    """The non-streaming result: the same replay (a whole turn per step), then `response()`."""
    _check_step(step)
    stream = _open(transcript, vocab, kwargs)
    for _ in _replay(stream, transcript, vocab, _SSE, step, kwargs["max_output_tokens"]):
        pass
    return stream.response()
