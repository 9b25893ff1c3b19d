"""Hostile callers (issue 7): wrong types, bad ids, calls out of order, huge inputs.

Every refused call raises a clear typed exception and leaves the stream as it was
(the stream then goes on and its events still pass ``validate_stream``). Huge
inputs give correct events in time linear in the tokens and memory linear in the
text kept. Resource bounds are generous (CI machines are noisy) but each one is far
below what quadratic time, or memory kept per token or per event, would need.
Memory is read from ``/proc/self/statm`` (Linux; skipped elsewhere).
"""

from __future__ import annotations

import gc
import json
import math
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from stream_checks import validate_stream

from harmony_stream import (
    HarmonyParser,
    HarmonyStreamError,
    InvalidRequestError,
    InvalidTokenError,
    ResponseEvent,
    ResponseStateError,
    ResponseStream,
    Vocab,
    feed_batch,
)
from harmony_stream._types import FinishReason

RETURN, CHANNEL, START, END, MESSAGE, CALL = 200002, 200005, 200006, 200007, 200008, 200012
THE = 290  # " the"
FINAL = [CHANNEL, 17196, MESSAGE]  # <|channel|>final<|message|>
ANALYSIS = [CHANNEL, 35644, MESSAGE]  # <|channel|>analysis<|message|>
NEXT_TURN = [START, 173781]  # <|start|>assistant
# <|channel|>commentary to=github.search_issues<|message|>{"q": 1}<|call|>
MCP_CALL = [CHANNEL, 12606, 815, 316, 28, 10312, 16718, 62, 30149, MESSAGE]
MCP_CALL += [10848, 80, 1243, 220, 16, 92, CALL]
GITHUB = [{"type": "mcp", "server_label": "github", "server_url": "http://127.0.0.1:8765/mcp"}]
MB = 1 << 20


def dumps(events: list[ResponseEvent]) -> list[dict[str, Any]]:
    return [e.model_dump() for e in events]


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode("utf-8").split("\n\n"):
        if block:
            event_line, data_line = block.split("\n")
            ev = json.loads(data_line.removeprefix("data: "))
            assert event_line == f"event: {ev['type']}"
            out.append(ev)
    return out


def snapshot(s: ResponseStream) -> tuple[Any, ...]:
    return (s.finished, s.awaiting_tool_output, s.response_json())


def rss() -> int:
    """Resident set size in bytes (Linux)."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("memory is measured with /proc/self/statm (Linux)")
    import os

    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def best_time(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Best CPU time of `repeat` runs (CPU time: other processes do not count)."""
    best = math.inf
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


class Recorder:
    """A stream plus every event it emitted, for the final validation."""

    def __init__(self, vocab: Vocab, **kw: Any) -> None:
        kw.setdefault("id_seed", 3)
        kw.setdefault("created_at", 0)
        self.stream = ResponseStream(vocab, **kw)
        self.events: list[dict[str, Any]] = []

    def feed(self, toks: Any) -> list[dict[str, Any]]:
        new = dumps(self.stream.feed(toks))
        self.events += new
        return new

    def refused(self, exc: Any, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """`call` raises `exc`, emits nothing, changes nothing; returns the exception."""
        before = snapshot(self.stream)
        with pytest.raises(exc) as info:
            call(*args, **kw)
        assert snapshot(self.stream) == before, "a refused call changed the stream"
        return info.value

    def finish(self, reason: FinishReason = "stop") -> dict[str, Any]:
        self.events += dumps(self.stream.finish(reason))
        return validate_stream(self.events)


# --------------------------------------------------------------------------------------
# Wrong types
# --------------------------------------------------------------------------------------


def _raising_iter() -> Iterator[int]:
    yield CHANNEL
    raise KeyError("the caller's iterator failed")


class BadIndex:
    def __index__(self) -> int:
        raise ValueError("no index")


WRONG_TOKENS: list[tuple[Any, type[BaseException]]] = [
    ("abc", TypeError),
    (b"\x01\x02", TypeError),
    (None, TypeError),
    (1.5, TypeError),
    (True, TypeError),
    ([1.5], TypeError),
    ([None], TypeError),
    ([True, 1], TypeError),
    ([[1]], TypeError),
    ({"a": 1}, TypeError),
    ([1, "2"], TypeError),
    (object(), TypeError),
    # An exception raised by the object itself propagates unchanged (issue 13); only
    # "this is not an int" becomes TypeError.
    ([BadIndex()], ValueError),
    (_raising_iter, KeyError),
]


@pytest.mark.parametrize(("bad", "exc"), WRONG_TOKENS, ids=lambda x: type(x).__name__)
@pytest.mark.parametrize("api", ["feed", "feed_sse", "batch"])
def test_wrong_token_types_raise_and_change_nothing(
    vocab: Vocab, bad: Any, exc: type[BaseException], api: str
) -> None:
    r = Recorder(vocab)
    r.feed(FINAL)
    if callable(bad) and not isinstance(bad, type):
        bad = bad()
    call: Callable[[], Any] = {
        "feed": lambda: r.stream.feed(bad),
        "feed_sse": lambda: r.stream.feed_sse(bad),
        "batch": lambda: feed_batch([r.stream], [bad]),
    }[api]
    r.refused(exc, call)
    r.feed([THE, RETURN])
    final = r.finish()
    assert final["output"][0]["content"][0]["text"] == " the"
    assert final["usage"]["output_tokens"] == 5


def test_wrong_argument_types_elsewhere(vocab: Vocab) -> None:
    r = Recorder(vocab, tools=GITHUB)
    r.feed(MCP_CALL)
    assert r.stream.awaiting_tool_output
    for call in [
        lambda: r.stream.tool_output(5),  # type: ignore[arg-type]
        lambda: r.stream.tool_output(None, b"x"),  # type: ignore[arg-type]
        lambda: r.stream.finish(5),  # type: ignore[arg-type]
        lambda: r.stream.finish("stop", 5),  # type: ignore[arg-type]
        lambda: feed_batch("ab", [[1]]),  # type: ignore[arg-type]
        lambda: feed_batch([r.stream], None),  # type: ignore[arg-type]
        lambda: feed_batch(None, None),  # type: ignore[arg-type]
    ]:
        r.refused(TypeError, call)
    for bad_reason in ["", "STOP", "max_tokens", "stop\0"]:
        r.refused(InvalidRequestError, r.stream.finish, bad_reason)
    # Logprobs that are not logprobs: the wrong shape or length, NaN, +inf.
    for lps in ["x", [None], [[1]], [(-1.0, [(1, "x")])], [-1.0, -1.0], [math.nan], [math.inf]]:
        r.refused(InvalidRequestError, r.stream.feed, [THE], lps)
    # An undefined alternative id: 32-bit ones are an InvalidRequestError, ids that do
    # not fit in 32 bits are refused while being read (InvalidTokenError).
    for alt in [300_000, -5, 2**40]:
        r.refused(
            (InvalidRequestError, InvalidTokenError), r.stream.feed, [THE], [(-1.0, [(alt, -1.0)])]
        )
    r.events += dumps(r.stream.tool_output("ok"))
    r.feed([*FINAL, THE, RETURN])
    assert r.finish()["output"][1]["status"] == "completed"


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"tools": [{"type": "bogus"}]}, InvalidRequestError),
        ({"tools": [{"type": "mcp"}]}, InvalidRequestError),
        ({"tools": [{"type": "function"}]}, InvalidRequestError),
        ({"tools": [5]}, InvalidRequestError),
        ({"tools": [{}]}, InvalidRequestError),
        ({"tools": 5}, TypeError),
        ({"tools": {"type": "mcp", "server_label": "github"}}, TypeError),
        ({"mcp_tool_lists": {"nope": []}}, InvalidRequestError),
        ({"tools": GITHUB, "mcp_tool_lists": {"github": object()}}, TypeError),
        ({"tools": GITHUB, "mcp_tool_lists": {"github": 5}}, InvalidRequestError),
        ({"tools": GITHUB, "mcp_tool_lists": [("github", [])]}, TypeError),
        # Out of range: a ValueError naming the argument (issue 13), not OverflowError.
        ({"max_output_tokens": -1}, InvalidRequestError),
        ({"input_tokens": -1}, InvalidRequestError),
        ({"id_seed": 2**64}, InvalidRequestError),
        ({"created_at": 2**64}, InvalidRequestError),
        ({"created_at": "now"}, TypeError),
        ({"model": None}, TypeError),
        ({"response_id": 5}, TypeError),
        ({"logprobs": "yes"}, TypeError),
    ],
)
def test_bad_constructor_arguments(vocab: Vocab, kwargs: dict[str, Any], exc: type) -> None:
    with pytest.raises(exc) as info:
        ResponseStream(vocab, **kwargs)
    assert not isinstance(info.value, OverflowError)
    if exc is InvalidRequestError and set(kwargs) <= {
        "max_output_tokens",
        "input_tokens",
        "id_seed",
        "created_at",
    }:
        (name,) = kwargs
        assert str(info.value).startswith(f"{name} must be between ")


@pytest.mark.parametrize("bad", [None, "o200k", object(), 5])
def test_not_a_vocab(bad: Any) -> None:
    with pytest.raises(TypeError, match="vocab"):
        ResponseStream(bad)
    with pytest.raises(TypeError):
        HarmonyParser(bad)


def test_numpy_ints_and_generators_are_token_ids(vocab: Vocab) -> None:
    import numpy as np

    r = Recorder(vocab)
    r.feed(np.array(FINAL, dtype=np.int64))
    r.feed(x for x in [THE, THE])
    r.feed([np.uint32(RETURN)])
    assert r.finish()["output"][0]["content"][0]["text"] == " the the"
    r2 = Recorder(vocab)
    r2.refused(InvalidTokenError, r2.stream.feed, np.array([-1]))
    p = HarmonyParser(vocab)
    p.process_many(FINAL)
    assert p.process(np.uint32(THE)) == " the"


def test_feed_takes_one_numpy_int(vocab: Vocab) -> None:
    import numpy as np

    s = ResponseStream(vocab)
    s.feed(FINAL)
    (delta,) = s.feed(np.uint32(THE))
    assert delta.model_dump()["delta"] == " the"


# --------------------------------------------------------------------------------------
# Negative and huge ids
# --------------------------------------------------------------------------------------

BAD_IDS = [-1, -(2**31), -(2**63), -(2**64), 201_089, 2**31 - 1, 2**31, 2**32, 2**64, 2**200]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("api", ["feed", "feed_sse", "batch", "parser"])
def test_undefined_ids_raise_invalid_token_error(vocab: Vocab, bad: int, api: str) -> None:
    if api == "parser":
        p = HarmonyParser(vocab)
        p.process_many(FINAL)
        with pytest.raises(InvalidTokenError) as pinfo:
            p.process_many([THE, bad])
        assert (pinfo.value.token, pinfo.value.token_index) == (bad, 4)
        assert p.tokens_processed == 3
        return
    r = Recorder(vocab)
    r.feed(FINAL)
    call: Callable[[], Any] = {
        "feed": lambda: r.stream.feed([THE, bad]),
        "feed_sse": lambda: r.stream.feed_sse([THE, bad]),
        "batch": lambda: feed_batch([r.stream], [[THE, bad]]),
    }[api]
    err = r.refused(InvalidTokenError, call)
    assert err.token == bad
    assert err.kind == "invalid_token"
    assert str(bad) in str(err)
    assert "o200k_harmony" in str(err)
    assert isinstance(err, ValueError)
    assert isinstance(err, HarmonyStreamError)
    r.feed([THE, RETURN])
    final = r.finish()
    assert final["output"][0]["content"][0]["text"] == " the"
    assert final["usage"]["output_tokens"] == 5  # the refused step counted nothing


def test_every_special_and_reserved_id_is_accepted(vocab: Vocab) -> None:
    r = Recorder(vocab)
    for tok in range(199_998, 201_089):
        r.feed([tok])
    assert r.finish()["usage"]["output_tokens"] == 201_089 - 199_998


# --------------------------------------------------------------------------------------
# Calls out of order
# --------------------------------------------------------------------------------------


def _every_call(s: ResponseStream) -> list[Callable[[], Any]]:
    return [
        lambda: s.start(),
        lambda: s.start_sse(),
        lambda: s.feed([THE]),
        lambda: s.feed([]),
        lambda: s.feed(THE),
        lambda: s.feed_sse([THE]),
        lambda: feed_batch([s], [[THE]]),
        lambda: s.feed([THE], [-0.1]),
        lambda: s.feed([201_089]),
        lambda: s.tool_output("x"),
        lambda: s.tool_output(None, "e"),
        lambda: s.tool_output_sse("x"),
        lambda: s.finish(),
        lambda: s.finish("length"),
        lambda: s.finish("error", "boom"),
        lambda: s.finish_sse("abort"),
    ]


@pytest.mark.parametrize("reason", ["stop", "length", "abort", "error"])
def test_after_finish_every_call_raises_response_state_error(
    vocab: Vocab, reason: FinishReason
) -> None:
    r = Recorder(vocab, tools=GITHUB)
    r.feed([*FINAL, THE])
    r.events += dumps(r.stream.finish(reason))
    final = validate_stream(r.events)
    for call in _every_call(r.stream):
        err = r.refused(ResponseStateError, call)
        assert "finish" in str(err)
        assert isinstance(err, RuntimeError)
    assert r.stream.response() == final
    # Twice more, to be sure refusing does not wear anything down.
    for call in _every_call(r.stream) * 2:
        r.refused(ResponseStateError, call)
    assert validate_stream(r.events) == final


def test_finish_without_anything_fed(vocab: Vocab) -> None:
    r = Recorder(vocab)
    final = r.finish()
    assert final["output"] == []
    assert final["usage"]["output_tokens"] == 0
    r.refused(ResponseStateError, r.stream.finish)


def test_start_twice(vocab: Vocab) -> None:
    r = Recorder(vocab)
    r.events += dumps(r.stream.start())
    r.refused(ResponseStateError, r.stream.start)
    r.refused(ResponseStateError, r.stream.start_sse)
    r.feed([*FINAL, THE, RETURN])
    r.finish()


def test_tool_output_with_nothing_pending(vocab: Vocab) -> None:
    r = Recorder(vocab, tools=GITHUB)
    r.refused(ResponseStateError, r.stream.tool_output, "x")  # before anything
    r.feed(FINAL)
    r.refused(ResponseStateError, r.stream.tool_output, "x")  # mid-message
    r.feed([THE, END])
    r.refused(ResponseStateError, r.stream.tool_output_sse, None, "e")  # after a message
    r.finish()


@pytest.mark.parametrize("sse", [False, True])
def test_tool_output_twice(vocab: Vocab, sse: bool) -> None:
    r = Recorder(vocab, tools=GITHUB)
    r.feed(MCP_CALL)
    assert r.stream.awaiting_tool_output
    if sse:
        r.events += parse_sse(r.stream.tool_output_sse("result"))
    else:
        r.events += dumps(r.stream.tool_output("result"))
    assert not r.stream.awaiting_tool_output
    err = r.refused(ResponseStateError, r.stream.tool_output, "again")
    assert "no call" in str(err)
    r.refused(ResponseStateError, r.stream.tool_output_sse, None, "again")
    r.feed([*FINAL, THE, RETURN])
    final = r.finish()
    assert final["output"][0]["output"] == "result"


def test_one_stream_twice_in_a_batch(vocab: Vocab) -> None:
    r = Recorder(vocab)
    r.feed(FINAL)
    r.refused(ResponseStateError, feed_batch, [r.stream, r.stream], [[THE], [THE]])
    r.refused(InvalidRequestError, feed_batch, [r.stream], [[THE], [THE]])
    r.refused(InvalidRequestError, feed_batch, [r.stream], [])
    r.feed([THE, RETURN])
    assert r.finish()["usage"]["output_tokens"] == 5


# --------------------------------------------------------------------------------------
# Huge inputs: 10 MB tool outputs, a million tokens, a million events
# --------------------------------------------------------------------------------------

# Quotes, backslashes, newlines, a control character, two- and four-byte UTF-8: the
# JSON writer escapes some of these (up to 6 bytes for 1).
NASTY_UNIT = 'a"b\\c\nd\x01é🌸 '


@pytest.mark.parametrize("field", ["output", "error"])
@pytest.mark.parametrize("sse", [False, True])
def test_ten_megabyte_tool_output(vocab: Vocab, field: str, sse: bool) -> None:
    big = NASTY_UNIT * -(-10 * MB // len(NASTY_UNIT.encode()))
    assert len(big.encode()) >= 10 * MB
    r = Recorder(vocab, tools=GITHUB)
    r.feed(MCP_CALL)
    gc.collect()
    before = rss()
    t = time.perf_counter()
    kw = {field: big}
    if sse:
        data = r.stream.tool_output_sse(**kw)
        new = parse_sse(data)
        del data
    else:
        new = dumps(r.stream.tool_output(**kw))
    r.events += new
    r.feed([*NEXT_TURN, *FINAL, THE, RETURN])
    r.events += dumps(r.stream.finish())
    elapsed = time.perf_counter() - t
    grown = rss() - before
    final = validate_stream(r.events)
    item = final["output"][0]
    if field == "output":
        assert item["status"] == "completed"
        same = item["output"] == big  # (not compared in the assert: no 10 MB diff)
        assert [e["type"] for e in new] == [
            "response.mcp_call.completed",
            "response.output_item.done",
        ]
    else:
        assert item["status"] == "failed"
        same = item["error"]["content"][0]["text"] == big
    assert same, "the tool result did not come back unchanged"
    assert final["output"][1]["content"][0]["text"] == " the"
    # The text is kept a bounded number of times (engine item, done-item JSON, final
    # response, the event objects and dicts the test holds): linear, not per byte.
    assert grown < 40 * len(big), f"{grown / MB:.0f} MB for a 10 MB tool output"
    assert elapsed < 10, f"{elapsed:.1f} s for a 10 MB tool output"


def _million_token_stream(
    vocab: Vocab, n: int, step: int, api: str
) -> tuple[dict[str, Any], float, int]:
    s = ResponseStream(vocab, id_seed=1, created_at=0)
    gc.collect()
    before = rss()
    t = time.perf_counter()
    n_events = 0
    toks = [THE] * step
    if api == "sse":
        n_events += len(parse_sse(s.feed_sse(FINAL)))
        for _ in range(n // step):
            n_events += s.feed_sse(toks).count(b"\n\n")
        tail = parse_sse(s.finish_sse())
    else:
        n_events += len(s.feed(FINAL))
        for _ in range(n // step):
            n_events += len(s.feed(toks))
        tail = dumps(s.finish())
    elapsed = time.perf_counter() - t
    n_events += len(tail)
    grown = rss() - before
    assert tail[-1]["sequence_number"] == n_events - 1
    return tail[-1]["response"], elapsed, grown


@pytest.mark.parametrize("api", ["sse", "objects"])
def test_a_million_token_output(vocab: Vocab, api: str) -> None:
    n = 1_000_000
    final, elapsed, grown = _million_token_stream(vocab, n, 1000, api)
    text = final["output"][0]["content"][0]["text"]
    same = text == " the" * n
    assert same, "the million-token text is wrong"
    assert final["usage"]["output_tokens"] == n + len(FINAL)
    # 4 MB of text: kept by the engine (parser buffer, item, done JSON and the final
    # response) and by this test (the parsed terminal event). 1M tokens of per-token
    # state (>= 16 bytes each) or per-event objects would show as tens of MB more.
    assert grown < 12 * len(text) + 24 * MB, f"{grown / MB:.0f} MB for 4 MB of text"
    assert elapsed < 15, f"{elapsed:.1f} s for a million tokens"


def _per_token(fn: Callable[[int], Any], n: int) -> float:
    return best_time(lambda: fn(n)) / n


def _feed_one_by_one(vocab: Vocab) -> Callable[[int], Any]:
    def run(n: int) -> None:
        s = ResponseStream(vocab, id_seed=1, created_at=0)
        s.feed(FINAL)
        for _ in range(n):
            s.feed(THE)
        s.finish()

    return run


def _feed_sse_small_steps(vocab: Vocab) -> Callable[[int], Any]:
    def run(n: int) -> None:
        s = ResponseStream(vocab, id_seed=1, created_at=0)
        s.feed_sse(FINAL)
        step = [THE] * 4
        for _ in range(n // 4):
            s.feed_sse(step)
        s.finish_sse()

    return run


def _many_messages(vocab: Vocab) -> Callable[[int], Any]:
    # A new item every 10 tokens: the cost per token must not grow with the items.
    unit = [*NEXT_TURN, *ANALYSIS, THE, THE, END]

    def run(n: int) -> None:
        s = ResponseStream(vocab, id_seed=1, created_at=0)
        toks = unit * 25
        for _ in range(n // len(toks)):
            s.feed_sse(toks)
        s.finish_sse()

    return run


def _parser_one_by_one(vocab: Vocab) -> Callable[[int], Any]:
    def run(n: int) -> None:
        p = HarmonyParser(vocab)
        p.process_many(FINAL)
        for _ in range(n):
            p.process(THE)
        p.process_eos()

    return run


@pytest.mark.parametrize(
    "make", [_feed_one_by_one, _feed_sse_small_steps, _many_messages, _parser_one_by_one]
)
def test_time_is_linear_in_tokens(
    vocab: Vocab, make: Callable[[Vocab], Callable[[int], Any]]
) -> None:
    run = make(vocab)
    run(2_000)  # warm up
    small = _per_token(run, 20_000)
    large = _per_token(run, 200_000)
    # Quadratic work would make the large run ~10x slower per token.
    assert large < 3 * small, f"{large * 1e9:.0f} ns/token at 200k vs {small * 1e9:.0f} at 20k"


def test_memory_is_linear_in_retained_text(vocab: Vocab) -> None:
    # The same stream shape at 200k and 1M tokens: memory grows with the text only.
    _, _, small = _million_token_stream(vocab, 200_000, 1000, "sse")
    final, _, large = _million_token_stream(vocab, 1_000_000, 1000, "sse")
    text_bytes = len(final["output"][0]["content"][0]["text"].encode())
    per_byte = (large - small) / (text_bytes * 0.8)
    assert per_byte < 12, f"{per_byte:.1f} bytes of memory per byte of text"


def test_a_million_events_in_a_python_loop_with_steady_memory(vocab: Vocab) -> None:
    """One long stream, one token per call, every event object dropped at once."""
    s = ResponseStream(vocab, id_seed=1, created_at=0)
    s.feed(FINAL)
    n_events = 0
    marks: dict[int, int] = {}
    for i in range(1_000_000):
        n_events += len(s.feed(THE))
        if i in (200_000, 999_999):
            gc.collect()
            marks[i] = rss()
    n_events += len(s.finish())
    assert n_events >= 1_000_000
    # 800k more tokens add 3.2 MB of kept text (plus buffer doubling); an object or
    # a few dozen bytes kept per event would be 30+ MB.
    grown = marks[999_999] - marks[200_000]
    assert grown < 24 * MB, f"{grown / MB:.1f} MB grown over 800k events"


def test_a_million_events_from_many_streams_with_steady_memory(vocab: Vocab) -> None:
    """50 000 short streams of 20 events each: streams and events are freed."""
    toks = [*FINAL, *[THE] * 12, RETURN]

    def one() -> int:
        s = ResponseStream(vocab, tools=GITHUB)
        return len(s.feed(toks)) + len(s.finish())

    n_events = sum(one() for _ in range(5_000))  # warm up the allocators
    gc.collect()
    before = rss()
    n_events += sum(one() for _ in range(45_000))
    gc.collect()
    grown = rss() - before
    assert n_events >= 1_000_000
    assert grown < 16 * MB, f"{grown / MB:.1f} MB grown over 45 000 streams"
    # Python objects made during 2000 more streams and still alive after them.
    tracemalloc.start()
    for _ in range(2_000):
        one()
    gc.collect()
    alive = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert alive < 256 * 1024, f"{alive} bytes of Python objects left by 2000 streams"
