"""``ResponseStream.stream`` / ``astream``: the serving loop's seam, against calls by hand.

The oracle is the engine itself: for every plan (random Harmony pieces in random
steps with tool results at random points, then a random end; every recorded
transcript, with and without logprobs), the events ``stream(plan)`` yields equal,
event for event (JSON), those of ``start``/``feed``/``tool_output``/``finish``
called by hand on a second stream of the same configuration and response id;
with ``sse=True``, the bytes equal the ``*_sse`` calls' bytes, one chunk per call
(empty ones left out); ``astream`` gives the same from an async iterator and
from a plain one. Then the rules of the loop: errors, the end, early close.
"""

from __future__ import annotations

import asyncio
import dataclasses
from array import array
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from test_events_properties import (
    TERMINAL_FOR,
    TOOLS,
    _settings,
    garbage_pieces,
    texts,
    tool_results,
)

from harmony_stream import (
    Finish,
    InvalidRequestError,
    InvalidTokenError,
    ResponseEvent,
    ResponseStateError,
    ResponseStream,
    StreamOutput,
    Tokens,
    ToolResult,
    Vocab,
)
from harmony_stream.replay import Feed, replay_steps
from harmony_stream.replay import ToolResult as RecordedResult
from harmony_stream.serve.corpus import bundled_corpus_dir
from harmony_stream.transcript import load_transcript

DATA = Path(__file__).parent / "data"
TRANSCRIPTS = sorted({p.name: p for p in (DATA / "transcripts").glob("*.json")}.values()) + sorted(
    bundled_corpus_dir().glob("*.json")
)
LISTS = {"github": [{"name": "search_issues", "input_schema": {"type": "object"}}]}


def new_stream(vocab: Vocab, **kwargs: Any) -> ResponseStream:
    kwargs.setdefault("tools", TOOLS)
    return ResponseStream(
        vocab, id_seed=7, response_id="resp_loop", created_at=0, input_tokens=11, **kwargs
    )


def dumps(events: Iterable[ResponseEvent]) -> list[str]:
    return [e.model_dump_json() for e in events]


class ByHand:
    """The oracle: the plan's calls made one by one, what each handed out kept."""

    def __init__(self, stream: ResponseStream, sse: bool, *, start: bool = True) -> None:
        self.s = stream
        self.sse = sse
        self.calls: list[Any] = []
        if start:
            self.calls.append(stream.start_sse() if sse else stream.start())

    def do(self, item: StreamOutput) -> None:
        s, sse = self.s, self.sse
        if isinstance(item, ToolResult):
            out = (s.tool_output_sse if sse else s.tool_output)(item.output, item.error)
        elif isinstance(item, Finish):
            out = (s.finish_sse if sse else s.finish)(item.reason, item.message)
        elif isinstance(item, Tokens):
            out = (s.feed_sse if sse else s.feed)(item.token_ids, item.logprobs)
        else:
            out = (s.feed_sse if sse else s.feed)(item)
        self.calls.append(out)

    def expected(self) -> list[Any]:
        if self.sse:
            return [b for b in self.calls if b]
        return dumps(e for events in self.calls for e in events)


def got(items: Iterable[Any], sse: bool) -> list[Any]:
    return list(items) if sse else dumps(items)


def drain(items: Iterable[Any], into: list[Any]) -> None:
    """Everything `items` yields, into `into`, up to an exception."""
    for x in items:
        into.append(x)


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in items]


async def agen(plan: Iterable[StreamOutput]) -> AsyncIterator[StreamOutput]:
    for item in plan:
        await asyncio.sleep(0)
        yield item


def check_plan(
    vocab: Vocab, plan: list[StreamOutput], expected: dict[bool, list[Any]], **kwargs: Any
) -> None:
    """``stream``/``astream`` over `plan` (as a list, an iterator, an async
    generator) give `expected[sse]`, for both forms."""
    for sse in (False, True):
        want = expected[sse]
        assert got(new_stream(vocab, **kwargs).stream(plan, sse=sse), sse) == want
        assert got(new_stream(vocab, **kwargs).stream(iter(plan), sse=sse), sse) == want
        s = new_stream(vocab, **kwargs)
        assert got(asyncio.run(collect(s.astream(agen(plan), sse=sse))), sse) == want
        s = new_stream(vocab, **kwargs)
        assert got(asyncio.run(collect(s.astream(plan, sse=sse))), sse) == want
        assert s.finished


# --------------------------------------------------------------------------- the oracle


CHUNK_FORMS: list[Callable[[list[int]], StreamOutput]] = [
    list,
    tuple,
    lambda c: array("I", c),
    lambda c: iter(c),
    Tokens,
    lambda c: c[0] if len(c) == 1 else c,
]


# Whole server-run calls (MCP, python, browser), each ending a segment of a random plan.
CALLS = [
    '<|channel|>commentary to=github.search_issues <|constrain|>json<|message|>{"q": 1}<|call|>',
    "<|channel|>analysis to=python<|message|>print(6 * 7)<|call|>",
    '<|channel|>analysis to=browser.search<|message|>{"query": "harmony"}<|call|>',
]


def random_plan(
    vocab: Vocab, data: Any, segments: list[list[int]]
) -> tuple[list[Callable[[], StreamOutput]], dict[bool, list[Any]]]:
    """A plan over the tokens of `segments` (random steps within each segment, random
    chunk types; a tool result, mostly, where a call waits, and sometimes tried
    where none does; a random end or none) and what the calls by hand give, for
    both forms.

    The plan is a list of makers: a chunk may be an iterator, read once, so each
    run makes its items afresh."""
    hands = {sse: ByHand(new_stream(vocab, mcp_tool_lists=LISTS), sse) for sse in (False, True)}
    plan: list[Callable[[], StreamOutput]] = []
    for tokens in [*segments, []]:
        waits = hands[False].s.awaiting_tool_output
        if data.draw(st.integers(0, 3), label="tool result?") < (3 if waits else 1):
            output, error = data.draw(tool_results, label="tool result")
            if waits:  # else the loop would raise the engine's ResponseStateError
                result = ToolResult(output=output, error=error)
                for h in hands.values():
                    h.do(result)
                plan.append(lambda r=result: r)  # type: ignore[misc]
                event("a tool result")
        i = 0
        while i < len(tokens):
            n = data.draw(st.integers(1, 8), label="step")
            chunk = tokens[i : i + n]
            form = data.draw(st.sampled_from(CHUNK_FORMS), label="chunk form")
            for h in hands.values():
                h.do(form(chunk))
            plan.append(lambda f=form, c=chunk: f(c))  # type: ignore[misc]
            i += n
    end = data.draw(st.sampled_from([None, *sorted(TERMINAL_FOR)]), label="end")
    event(f"end: {end}")
    if end is None:
        for h in hands.values():
            h.do(Finish("stop"))  # what the loop does when outputs runs out
    else:
        fin = Finish(end, data.draw(st.one_of(st.none(), texts), label="message"))
        for h in hands.values():
            h.do(fin)
        plan.append(lambda f=fin: f)  # type: ignore[misc]
    return plan, {sse: h.expected() for sse, h in hands.items()}


@_settings(300)
@given(data=st.data())
def test_stream_equals_the_calls_by_hand_over_random_pieces(
    enc: Any, vocab: Vocab, data: Any
) -> None:
    pieces = garbage_pieces(enc, vocab)
    calls = [list(enc.encode(c, allowed_special="all")) for c in CALLS]
    segments: list[list[int]] = [[]]
    for _ in range(data.draw(st.integers(0, 4), label="segments")):
        n = data.draw(st.integers(0, 10), label="pieces")
        choice = data.draw(st.lists(st.integers(0, len(pieces) - 1), min_size=n, max_size=n))
        segments[-1] += [t for i in choice for t in pieces[i]]
        if data.draw(st.booleans(), label="a whole call ends the segment"):
            segments[-1] += data.draw(st.sampled_from(calls), label="call")
        segments.append([])
    rebuild, expected = random_plan(vocab, data, segments)
    for sse in (False, True):
        want = expected[sse]
        plan = [make() for make in rebuild]
        s = new_stream(vocab, mcp_tool_lists=LISTS)
        assert got(s.stream(plan, sse=sse), sse) == want
        assert s.finished
        plan = [make() for make in rebuild]
        s = new_stream(vocab, mcp_tool_lists=LISTS)
        assert got(asyncio.run(collect(s.astream(agen(plan), sse=sse))), sse) == want
        plan = [make() for make in rebuild]
        s = new_stream(vocab, mcp_tool_lists=LISTS)
        assert got(asyncio.run(collect(s.astream(plan, sse=sse))), sse) == want


def transcript_plan(path: Path, step: int, logprobs: bool) -> list[StreamOutput]:
    transcript = load_transcript(path)
    plan: list[StreamOutput] = []
    for s in replay_steps(transcript, step=step, max_output_tokens=transcript.max_output_tokens):
        if isinstance(s, Feed):
            lps = [-((t + s.position) % 7) / 4 for t in s.tokens]
            plan.append(Tokens(s.tokens, lps) if logprobs else s.tokens)
        elif isinstance(s, RecordedResult):
            result = ToolResult(output=s.output) if s.error is None else ToolResult(error=s.error)
            plan.append(result)
        else:
            plan.append(Finish(s.reason))
    return plan


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("step", [1, 5])
@pytest.mark.parametrize("logprobs", [False, True])
def test_stream_equals_the_calls_by_hand_over_the_transcripts(
    vocab: Vocab, path: Path, step: int, logprobs: bool
) -> None:
    transcript = load_transcript(path)
    config = {
        "tools": transcript.tools,
        "max_output_tokens": transcript.max_output_tokens,
        "logprobs": logprobs,
    }
    plan = transcript_plan(path, step, logprobs)
    # A function call's output is not given (the replays skip it too: the client runs it).
    plan = [
        item
        for item, waits in zip(plan, awaiting(vocab, plan, config), strict=True)
        if not isinstance(item, ToolResult) or waits
    ]
    expected = {}
    for sse in (False, True):
        hand = ByHand(new_stream(vocab, **config), sse)
        for item in plan:
            hand.do(item)
        expected[sse] = hand.expected()
    check_plan(vocab, plan, expected, **config)


def awaiting(vocab: Vocab, plan: list[StreamOutput], config: dict[str, Any]) -> Iterator[bool]:
    """Whether the stream waits for a tool result before each item of `plan`."""
    hand = ByHand(new_stream(vocab, **config), False)
    for item in plan:
        waits = hand.s.awaiting_tool_output
        yield waits
        if not isinstance(item, ToolResult) or waits:
            hand.do(item)


# --------------------------------------------------------------------------- the loop's rules


def test_each_item_is_applied_before_the_next_is_asked_for(vocab: Vocab) -> None:
    """The generation loop reads the stream's state: the call to run, then its result."""
    path = bundled_corpus_dir() / "mcp_call.json"
    transcript = load_transcript(path)
    s = new_stream(vocab, tools=transcript.tools)
    ran: list[str] = []

    def outputs() -> Iterator[StreamOutput]:
        for turn in transcript.turns:
            if hasattr(turn, "tokens"):
                yield from ([t] for t in turn.tokens)
            else:
                call = s.pending_call
                assert call is not None
                assert s.awaiting_tool_output
                ran.append(call["name"])
                yield ToolResult(output=turn.output)

    types = [e.type for e in s.stream(outputs())]
    assert ran == ["search_issues"]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.mcp_call.completed" in types


def test_a_started_stream_is_not_started_again_and_a_finished_one_takes_nothing(
    vocab: Vocab,
) -> None:
    for sse in (False, True):
        s, hand = new_stream(vocab), ByHand(new_stream(vocab), sse, start=False)
        s.start()
        hand.s.start()
        hand.do([200005])
        hand.do(Finish("stop"))
        assert got(s.stream([[200005]], sse=sse), sse) == hand.expected()
        assert s.finished
        assert list(s.stream([], sse=sse)) == []
        with pytest.raises(ResponseStateError, match="finished"):
            list(s.stream([[200005]], sse=sse))


def test_outputs_that_end_without_finish_finish_with_stop(vocab: Vocab) -> None:
    for sse in (False, True):
        hand = ByHand(new_stream(vocab), sse)
        hand.do(Finish("stop"))
        assert got(new_stream(vocab).stream([], sse=sse), sse) == hand.expected()


def test_items_after_finish_are_a_response_state_error(vocab: Vocab) -> None:
    for after in ([200005], ToolResult(output="x"), Finish("stop"), Tokens([1])):
        s = new_stream(vocab)
        seen: list[ResponseEvent] = []
        with pytest.raises(ResponseStateError, match=r"after Finish\(reason='length'"):
            drain(s.stream([[200005], Finish("length"), after]), seen)
        assert seen[-1].type == "response.incomplete"

        async def run(s: ResponseStream, after: StreamOutput = after) -> None:
            async for _ in s.astream(agen([Finish("stop"), after]), sse=True):
                pass

        with pytest.raises(ResponseStateError, match="after Finish"):
            asyncio.run(run(new_stream(vocab)))


class ModelCrashed(Exception):
    pass


def crashing(plan: list[StreamOutput], error: BaseException) -> Iterator[StreamOutput]:
    yield from plan
    raise error


async def acrashing(plan: list[StreamOutput], error: BaseException) -> AsyncIterator[StreamOutput]:
    for item in plan:
        yield item
    raise error


def test_outputs_that_raise_end_the_response_failed_then_raise_again(vocab: Vocab) -> None:
    # <|channel|>final<|message|>, Hello
    plan: list[StreamOutput] = [[200005, 17196, 200008], [13225]]
    for sse in (False, True):
        for message, reason in (("the GPU fell over", "the GPU fell over"), ("", "ModelCrashed")):
            hand = ByHand(new_stream(vocab), sse)
            for item in plan:
                hand.do(item)
            hand.do(Finish("error", reason))
            error = ModelCrashed(message)

            seen: list[Any] = []
            with pytest.raises(ModelCrashed) as info:
                drain(new_stream(vocab).stream(crashing(plan, error), sse=sse), seen)
            assert info.value is error
            assert got(seen, sse) == hand.expected()

            async def run(
                out: list[Any], outputs: Any, error: Exception = error, sse: bool = sse
            ) -> None:
                async for x in new_stream(vocab).astream(outputs, sse=sse):
                    out.append(x)

            for outputs in (acrashing(plan, error), crashing(plan, error)):  # async, plain
                seen = []
                with pytest.raises(ModelCrashed) as info:
                    asyncio.run(run(seen, outputs))
                assert info.value is error
                assert got(seen, sse) == hand.expected()
    s = new_stream(vocab)
    events = list(s.stream([[200005], Finish("abort")]))
    with pytest.raises(ModelCrashed):  # already finished: nothing more, raised again
        list(s.stream(crashing([], ModelCrashed("late"))))
    assert events[-1].type == "response.failed"


def test_a_cancelled_outputs_finishes_nothing(vocab: Vocab) -> None:
    class Cancelled(BaseException):
        pass

    s = new_stream(vocab)
    with pytest.raises(Cancelled):
        list(s.stream(crashing([[200005]], Cancelled())))
    assert not s.finished
    assert s.finish("abort")[-1].type == "response.failed"

    async def run(s: ResponseStream) -> None:
        async for _ in s.astream(acrashing([[200005]], asyncio.CancelledError())):
            pass

    s = new_stream(vocab)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run(s))
    assert not s.finished


@pytest.mark.parametrize(
    ("chunk", "error"),
    [
        ([200005, "x"], TypeError),
        ("hello", TypeError),
        (b"hi", TypeError),
        (None, TypeError),
        ({"tokens": [1]}, TypeError),
        ([1.5], TypeError),
        ([10**9], InvalidTokenError),
        (-1, InvalidTokenError),
    ],
)
def test_a_chunk_the_engine_refuses_raises_its_error_and_changes_nothing(
    vocab: Vocab, chunk: Any, error: type[Exception]
) -> None:
    for sse in (False, True):
        s, hand = new_stream(vocab), ByHand(new_stream(vocab), sse)
        closed: list[bool] = []

        def outputs(closed: list[bool] = closed) -> Iterator[StreamOutput]:
            try:
                yield [200005]
                yield chunk
            finally:
                closed.append(True)

        seen: list[Any] = []
        with pytest.raises(error):
            drain(s.stream(outputs(), sse=sse), seen)
        assert closed == [True]  # outputs closed
        assert not s.finished

        async def aoutputs(closed: list[bool] = closed) -> AsyncIterator[StreamOutput]:
            try:
                yield [200005]
                yield chunk
            finally:
                closed.append(True)

        async def run(s: ResponseStream, sse: bool = sse) -> None:
            async for _ in s.astream(aoutputs(), sse=sse):
                pass

        with pytest.raises(error):
            asyncio.run(run(new_stream(vocab)))
        assert closed == [True, True]
        hand.do([200005])
        assert got(seen, sse) == hand.expected()
        # Unchanged: the response goes on by hand as if the chunk never came.
        rest = (s.feed_sse if sse else s.feed)([17196]), (s.finish_sse if sse else s.finish)()
        hand.do([17196])
        hand.do(Finish("stop"))
        assert got(seen + [x for r in rest for x in ((r,) if sse else r) if x], sse) == (
            hand.expected()
        )


def test_a_tool_result_with_no_call_waiting_is_the_engines_error(vocab: Vocab) -> None:
    s = new_stream(vocab)
    with pytest.raises(ResponseStateError, match="no call to answer"):
        list(s.stream([[200005], ToolResult(output="x")]))
    assert not s.finished


def test_tool_result_and_finish_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match=r"exactly one of output= .* got both"):
        ToolResult(output="a", error="b")
    with pytest.raises(ValueError, match="got neither"):
        ToolResult()
    with pytest.raises(TypeError, match="ToolResult output must be a str or None, got int"):
        ToolResult(output=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ToolResult("positional")  # type: ignore[call-arg]
    assert ToolResult(output="") == ToolResult(output="")
    with pytest.raises(InvalidRequestError, match="unknown finish reason 'done'"):
        Finish("done")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Finish reason must be a str, got NoneType"):
        Finish(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Finish message must be a str or None, got int"):
        Finish("error", 3)  # type: ignore[arg-type]
    assert Finish() == Finish("stop", None)
    with pytest.raises(TypeError, match="got str/bytes"):
        Tokens("abc")  # type: ignore[arg-type]
    made = (ToolResult(output="a"), Finish(), Tokens([1]))
    for item, field in zip(made, ("output", "reason", "logprobs"), strict=True):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(item, field, None)
        assert not hasattr(item, "__dict__")  # slotted


def test_finish_refuses_a_reason_as_the_engine_does(vocab: Vocab) -> None:
    with pytest.raises(InvalidRequestError, match="unknown finish reason") as by_hand:
        new_stream(vocab).finish("done")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="unknown finish reason") as made:
        Finish("done")  # type: ignore[arg-type]
    assert type(made.value) is type(by_hand.value)


def test_arguments_are_checked_at_once(vocab: Vocab) -> None:
    s = new_stream(vocab)
    with pytest.raises(TypeError, match=r"outputs must be an iterable .* got int"):
        s.stream(5)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="outputs must be an async iterable or an iterable"):
        s.astream(5)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        s.stream([], sse=1)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        s.stream([], True)  # type: ignore[call-overload]  # sse is keyword-only
    assert not s.finished


def test_closing_early_closes_outputs_and_leaves_the_stream_open(vocab: Vocab) -> None:
    closed: list[str] = []

    def outputs() -> Iterator[StreamOutput]:
        try:
            yield [200005, 17196, 200008]  # <|channel|>final<|message|>
            while True:
                yield [13225]  # Hello: a delta each
        finally:
            closed.append("sync")

    async def aoutputs() -> AsyncIterator[StreamOutput]:
        try:
            yield [200005, 17196, 200008]
            while True:
                yield [13225]
        finally:
            closed.append("async")

    s = new_stream(vocab)
    it = s.stream(outputs(), sse=True)
    assert next(it).startswith(b"event: response.created")
    next(it)
    it.close()

    async def run() -> None:
        ait = s.astream(aoutputs(), sse=True)
        await ait.__anext__()
        await ait.__anext__()
        await ait.aclose()

    asyncio.run(run())
    assert closed == ["sync", "async"]
    assert not s.finished
