"""The serving loop's seam: ``ResponseStream.stream`` and ``ResponseStream.astream``.

A server's generation loop is an iterator of what happened: each engine step's
new token ids, the result of a tool the server ran, the end. ``stream(outputs)``
turns that iterator into the response's events (or one SSE ``bytes`` per item);
``astream`` does the same for an async iterator. The two methods are defined on
the extension's ``ResponseStream`` and call `stream` / `astream` here.

Each item of ``outputs`` is applied to the engine before the next one is asked
for, so the loop that makes them can read ``awaiting_tool_output`` and
``pending_call`` to know which tool to run:

* a chunk of token ids (a list, a tuple, ``array('I')``, any iterable of ints,
  or one int): ``feed(chunk)``; `Tokens` carries logprobs with them;
* `ToolResult`: ``tool_output(output=...)`` or ``tool_output(error=...)``;
* `Finish`: ``finish(reason, message)``; any item after it raises
  ``ResponseStateError``.

``start()`` comes first (unless the stream was started already); when
``outputs`` ends without a `Finish`, the response finishes with ``stop`` (unless
it is finished). When ``outputs`` raises an ``Exception``, the response finishes
with ``error`` and the exception's message (the client sees it in
``response.failed``), those closing events are yielded, then the exception is
raised again. Cancellation (a ``BaseException`` such as ``CancelledError`` or
``KeyboardInterrupt``) finishes nothing: the caller decides how the response
ends (``finish("abort")``, say). An item the engine refuses (a token id outside
the vocabulary, a ``ToolResult`` with no call waiting, a chunk that is not ints)
raises the engine's error with nothing emitted and the stream unchanged; it
does not finish the response either. When the iterator stops early (an error,
``close()``/``aclose()``, a ``break`` then garbage collection), ``outputs`` is
closed if it can be (``close()``, ``aclose()``), as ``yield from`` does.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Literal, SupportsIndex, TypeAlias, overload

from ._native import FINISH_REASONS, ResponseEvent, ResponseStream
from ._types import FinishReason, LogprobInput
from .errors import InvalidRequestError, ResponseStateError, StreamInUseError

__all__ = ["Finish", "StreamOutput", "Tokens", "ToolResult", "astream", "stream"]


def _check_text(owner: str, name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{owner} {name} must be a str or None, got {type(value).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResult:
    """The result of the server-run call (MCP, python, browser) the stream waits for:
    ``ToolResult(output="...")`` or ``ToolResult(error="...")``, exactly one of them.

    ``ResponseStream.stream`` gives it to ``tool_output()``.
    """

    output: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _check_text("ToolResult", "output", self.output)
        _check_text("ToolResult", "error", self.error)
        if (self.output is None) == (self.error is None):
            raise ValueError(
                "ToolResult takes exactly one of output= (the tool's result) or error= "
                f"(why it failed), got {'both' if self.output is not None else 'neither'}"
            )


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of the response: ``finish(reason, message)``.

    ``reason``: ``stop`` (completed), ``length`` (incomplete: max output tokens),
    ``abort`` or ``error`` (failed, with ``message``). An unknown reason is an
    ``InvalidRequestError``, as ``finish()`` says.
    """

    reason: FinishReason = "stop"
    message: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str):
            raise TypeError(f"Finish reason must be a str, got {type(self.reason).__name__}")
        if self.reason not in FINISH_REASONS:
            raise InvalidRequestError(
                f"unknown finish reason {self.reason!r}: expected {', '.join(FINISH_REASONS)}"
            )
        _check_text("Finish", "message", self.message)


@dataclass(frozen=True, slots=True)
class Tokens:
    """One engine step's new token ids with their logprobs: ``feed(token_ids, logprobs)``.

    A plain chunk of ids needs no wrapper; this one is for a response that
    streams logprobs (``ResponseStream(logprobs=True)``), one entry per token.
    """

    token_ids: Iterable[SupportsIndex] | SupportsIndex
    logprobs: Sequence[LogprobInput] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.token_ids, (str, bytes, bytearray)):
            raise TypeError("Tokens token_ids must be a sequence of int, got str/bytes")


StreamOutput: TypeAlias = Iterable[SupportsIndex] | SupportsIndex | Tokens | ToolResult | Finish
"""One item of what a generation loop hands ``ResponseStream.stream``."""

_Out: TypeAlias = Sequence[Any]  # what one call hands out: its events, or (its SSE bytes,)


class _Loop:
    """The engine calls of one output kind (event objects or SSE bytes), and the rules."""

    __slots__ = ("_finish", "_start", "_tool_output", "feed", "finished_by", "rs", "sse")

    def __init__(self, rs: ResponseStream, sse: bool) -> None:
        if not isinstance(sse, bool):
            raise TypeError(f"sse must be a bool, got {type(sse).__name__}")
        self.rs = rs
        self.sse = sse
        self.finished_by: Finish | None = None
        if sse:
            self._start: Any = rs.start_sse
            self.feed: Any = rs.feed_sse
            self._tool_output: Any = rs.tool_output_sse
            self._finish: Any = rs.finish_sse
        else:
            self._start = rs.start
            self.feed = rs.feed
            self._tool_output = rs.tool_output
            self._finish = rs.finish

    def _out(self, got: Any) -> _Out:
        if self.sse:
            return (got,) if got else ()
        return got  # type: ignore[no-any-return]

    def begin(self) -> _Out:
        """``start()``, unless the stream was started (or finished) already."""
        if self.rs.finished:
            return ()
        try:
            return self._out(self._start())
        except StreamInUseError:
            raise
        except ResponseStateError:  # start() was already called
            return ()

    def apply(self, item: Any) -> _Out:
        """One item of ``outputs`` on the engine."""
        if self.finished_by is not None:
            raise ResponseStateError(
                f"outputs went on after {self.finished_by!r}: got {_describe(item)}, but "
                "the response is finished"
            )
        if isinstance(item, ToolResult):
            return self._out(self._tool_output(item.output, item.error))
        if isinstance(item, Finish):
            out = self._out(self._finish(item.reason, item.message))
            self.finished_by = item
            return out
        if isinstance(item, Tokens):
            return self._out(self.feed(item.token_ids, item.logprobs))
        return self._out(self.feed(item))

    def end(self) -> _Out:
        """``outputs`` ended: ``finish("stop")`` unless the response is finished."""
        return () if self.rs.finished else self._out(self._finish("stop"))

    def fail(self, e: Exception) -> _Out:
        """``outputs`` raised `e`: ``finish("error", its message)`` unless finished."""
        if self.rs.finished:
            return ()
        return self._out(self._finish("error", str(e) or type(e).__name__))


def _describe(item: object) -> str:
    if isinstance(item, (ToolResult, Finish, Tokens)):
        return repr(item)
    return f"a chunk of token ids ({type(item).__name__})"


def _outputs_error(outputs: object, kind: str) -> TypeError:
    return TypeError(
        f"outputs must be {kind} of token-id chunks, Tokens, ToolResult and Finish, "
        f"got {type(outputs).__name__}"
    )


@overload
def stream(
    rs: ResponseStream, outputs: Iterable[StreamOutput], sse: Literal[False] = False
) -> Generator[ResponseEvent, None, None]: ...
@overload
def stream(
    rs: ResponseStream, outputs: Iterable[StreamOutput], sse: Literal[True]
) -> Generator[bytes, None, None]: ...
@overload
def stream(
    rs: ResponseStream, outputs: Iterable[StreamOutput], sse: bool = False
) -> Generator[ResponseEvent, None, None] | Generator[bytes, None, None]: ...
def stream(
    rs: ResponseStream, outputs: Iterable[StreamOutput], sse: bool = False
) -> Generator[ResponseEvent, None, None] | Generator[bytes, None, None]:
    """``ResponseStream.stream(outputs, sse=sse)``: see the module doc."""
    loop = _Loop(rs, sse)
    try:
        it = iter(outputs)
    except TypeError:
        raise _outputs_error(outputs, "an iterable") from None
    return _stream(loop, it)


def _stream(loop: _Loop, it: Iterator[Any]) -> Generator[Any, None, None]:
    feed, sse = loop.feed, loop.sse
    try:
        yield from loop.begin()
        while True:
            try:
                item = next(it)
            except StopIteration:
                break
            except Exception as e:
                yield from loop.fail(e)
                raise
            if type(item) is list and loop.finished_by is None:  # the common case, inline
                out = feed(item)
                if not sse:
                    yield from out
                elif out:
                    yield out
                continue
            yield from loop.apply(item)
        yield from loop.end()
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


@overload
def astream(
    rs: ResponseStream,
    outputs: AsyncIterable[StreamOutput] | Iterable[StreamOutput],
    sse: Literal[False] = False,
) -> AsyncGenerator[ResponseEvent, None]: ...
@overload
def astream(
    rs: ResponseStream,
    outputs: AsyncIterable[StreamOutput] | Iterable[StreamOutput],
    sse: Literal[True],
) -> AsyncGenerator[bytes, None]: ...
@overload
def astream(
    rs: ResponseStream,
    outputs: AsyncIterable[StreamOutput] | Iterable[StreamOutput],
    sse: bool = False,
) -> AsyncGenerator[ResponseEvent, None] | AsyncGenerator[bytes, None]: ...
def astream(
    rs: ResponseStream,
    outputs: AsyncIterable[StreamOutput] | Iterable[StreamOutput],
    sse: bool = False,
) -> AsyncGenerator[ResponseEvent, None] | AsyncGenerator[bytes, None]:
    """``ResponseStream.astream(outputs, sse=sse)``: see the module doc."""
    loop = _Loop(rs, sse)
    if isinstance(outputs, AsyncIterable):
        return _astream(loop, aiter(outputs), None)
    try:
        it = iter(outputs)
    except TypeError:
        raise _outputs_error(outputs, "an async iterable or an iterable") from None
    return _astream(loop, None, it)


async def _astream(
    loop: _Loop, ait: AsyncIterator[Any] | None, it: Iterator[Any] | None
) -> AsyncGenerator[Any, None]:
    feed, sse = loop.feed, loop.sse
    try:
        for x in loop.begin():
            yield x
        while True:
            try:
                item = await ait.__anext__() if ait is not None else next(it)  # type: ignore[arg-type]
            except (StopAsyncIteration, StopIteration):
                break
            except Exception as e:
                for x in loop.fail(e):
                    yield x
                raise
            if type(item) is list and loop.finished_by is None:  # the common case, inline
                out = feed(item)
                if not sse:
                    for x in out:
                        yield x
                elif out:
                    yield out
                continue
            for x in loop.apply(item):
                yield x
        for x in loop.end():
            yield x
    finally:
        aclose = getattr(ait, "aclose", None)
        close = getattr(it, "close", None)
        if aclose is not None:
            await aclose()
        elif close is not None:
            close()
