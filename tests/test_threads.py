"""Threads (issue 7): independent streams in parallel, one stream shared by mistake.

* Independent streams on 8 threads give exactly the events a serial run gives (the
  engine releases the GIL for steps of 256+ tokens and in ``feed_batch``, so these
  really overlap).
* One stream used from two threads at once: a call that finds the stream busy
  raises ``StreamInUseError`` (a ``ResponseStateError``, so a ``RuntimeError``)
  at once, naming the rule, never blocks, crashes or corrupts: the calls that
  went through still make a valid stream, numbered without gaps. The same for a
  parser, whose calls only overlap when Python code runs inside one (see its test).
* A Rust panic on one thread's stream leaves the other threads' streams working.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from stream_checks import validate_stream

from harmony_stream import (
    HarmonyParser,
    InternalError,
    ResponseStateError,
    ResponseStream,
    StreamInUseError,
    Vocab,
    feed_batch,
)

RETURN, CHANNEL, START, END, MESSAGE, CALL = 200002, 200005, 200006, 200007, 200008, 200012
THE, DOG = 290, 6446  # " the", " dog"
FINAL = [CHANNEL, 17196, MESSAGE]
ANALYSIS = [CHANNEL, 35644, MESSAGE]
NEXT_TURN = [START, 173781]
MCP_CALL = [CHANNEL, 12606, 815, 316, 28, 10312, 16718, 62, 30149, MESSAGE]
MCP_CALL += [10848, 80, 1243, 220, 16, 92, CALL]
TOOLS = [{"type": "mcp", "server_label": "github", "server_url": "http://127.0.0.1:8765/mcp"}]
THREADS = 8

# Turns: token lists, with None for "the tool result arrives here".
Script = list[list[int] | None]


def script(k: int) -> Script:
    """Transcript k: its own length and shape (reasoning, a tool call, an answer)."""
    n = 300 + 37 * k  # long enough for the GIL-free path (>= 256 tokens per step)
    body = [THE if (i * (k + 1)) % 3 else DOG for i in range(n)]
    if k % 2:
        return [[*ANALYSIS, *body, END, *NEXT_TURN, *MCP_CALL], None, [*FINAL, *body, RETURN]]
    return [[*ANALYSIS, *body[: n // 2], END], [*NEXT_TURN, *FINAL, *body, RETURN]]


def run_script(vocab: Vocab, k: int, api: str, step: int) -> list[dict[str, Any]]:
    """Plays transcript k on a fresh stream; returns every event as a dict."""
    s = ResponseStream(vocab, tools=TOOLS, id_seed=100 + k, created_at=0)
    events: list[dict[str, Any]] = []
    for turn in script(k):
        if turn is None:
            events += [e.model_dump() for e in s.tool_output(f"result {k}")]
            continue
        for i in range(0, len(turn), step):
            chunk = turn[i : i + step]
            if api == "sse":
                events += parse_sse(s.feed_sse(chunk))
            else:
                events += [e.model_dump() for e in s.feed(chunk)]
    events += [e.model_dump() for e in s.finish()]
    return events


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(block.split("\n")[1].removeprefix("data: "))
        for block in data.decode().split("\n\n")
        if block
    ]


@pytest.mark.parametrize(("api", "step"), [("sse", 1000), ("objects", 300), ("sse", 7)])
def test_independent_streams_on_8_threads_match_serial(vocab: Vocab, api: str, step: int) -> None:
    jobs = list(range(2 * THREADS))
    serial = [run_script(vocab, k, api, step) for k in jobs]
    for events in serial:
        validate_stream(events)
    barrier = threading.Barrier(THREADS)

    def job(k: int) -> list[dict[str, Any]]:
        if k < THREADS:
            barrier.wait()
        return run_script(vocab, k, api, step)

    for _ in range(2):
        with ThreadPoolExecutor(THREADS) as pool:
            parallel = list(pool.map(job, jobs))
        assert parallel == serial


def test_feed_batch_from_8_threads_matches_serial(vocab: Vocab) -> None:
    """Each thread owns a batch of 4 streams and feeds them with feed_batch."""

    def play(owner: int) -> list[bytes]:
        streams = [ResponseStream(vocab, id_seed=owner * 10 + j, created_at=0) for j in range(4)]
        out = [b"".join(feed_batch(streams, [FINAL] * 4))]
        body = [THE] * (300 + owner)
        for _ in range(5):
            out += feed_batch(streams, [body] * 4)
        out += [s.finish_sse() for s in streams]
        return out

    serial = [play(o) for o in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        assert list(pool.map(play, range(THREADS))) == serial


def _busy_error(e: BaseException) -> bool:
    """The error a call gets when another thread is using the stream (or parser)."""
    return type(e) is StreamInUseError and (
        "is in use by another thread: a stream accepts one call at a time" in str(e)
        or "is in use by another thread: a parser accepts one call at a time" in str(e)
    )


def _events_of(out: Any) -> list[dict[str, Any]]:
    if isinstance(out, bytes):
        return parse_sse(out)
    if isinstance(out, list) and out and isinstance(out[0], bytes):
        return parse_sse(b"".join(out))  # feed_batch
    if isinstance(out, list):
        return [ev.model_dump() for ev in out]
    return []


def test_one_stream_from_two_threads_raises_and_stays_valid(vocab: Vocab) -> None:
    def new_stream() -> ResponseStream:
        return ResponseStream(vocab, tools=TOOLS, id_seed=9, created_at=0)

    s = new_stream()
    got = [e.model_dump() for e in s.feed(FINAL)]
    step = [THE] * 256  # 256+ tokens: the engine works with the GIL released
    lock = threading.Lock()  # guards the lists below, not the stream
    went_through: list[tuple[int, str, list[int]]] = []  # (first seq, method, tokens)
    busy: list[str] = []
    other: list[BaseException] = []
    stop = threading.Event()

    def attempt(method: str, tokens: list[int] | None = None) -> None:
        toks = tokens or []
        call: Callable[[], Any] = {
            "feed": lambda: s.feed(toks),
            "feed_sse": lambda: s.feed_sse(toks),
            "feed_batch": lambda: feed_batch([s], [toks]),
            "response_json": lambda: s.response_json(),
            "awaiting_tool_output": lambda: s.awaiting_tool_output,
            "tool_output": lambda: s.tool_output("x"),
        }[method]
        try:
            new = _events_of(call())
        except Exception as e:
            with lock:
                (busy.append(method) if _busy_error(e) else other.append(e))
            return
        with lock:
            got.extend(new)
            if new:
                went_through.append((int(new[0]["sequence_number"]), method, toks))

    def writer() -> None:
        for i in range(30):
            attempt("feed_sse", step)
            if i >= 8 and len(busy) >= 10:
                break
        stop.set()

    def intruder() -> None:
        calls: list[tuple[str, list[int] | None]] = [
            ("feed", [THE]),
            ("feed_batch", [DOG]),
            ("feed_sse", [DOG, DOG]),
            ("response_json", None),
            ("awaiting_tool_output", None),
            ("feed_batch", [THE]),
            ("tool_output", None),
        ]
        i = 0
        while not stop.is_set():
            attempt(*calls[i % len(calls)])
            i += 1

    threads = [threading.Thread(target=writer), threading.Thread(target=intruder)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    # tool_output with nothing waiting is refused as usual; anything else is a bug.
    unexpected = [
        e for e in other if not (type(e) is ResponseStateError and "no call to answer" in str(e))
    ]
    assert not unexpected, unexpected
    assert busy, "the two threads never collided: the test did not test anything"
    got += [e.model_dump() for e in s.finish()]
    got.sort(key=lambda e: int(e["sequence_number"]))
    final = validate_stream(got)  # gapless, every item whole, texts add up
    # Not corrupted: the same calls made one after the other give the same events.
    replay = new_stream()
    expected = [e.model_dump() for e in replay.feed(FINAL)]
    for _, method, toks in sorted(went_through):
        expected += _events_of(
            feed_batch([replay], [toks]) if method == "feed_batch" else replay.feed_sse(toks)
        )
    expected += [e.model_dump() for e in replay.finish()]
    assert got == expected
    accepted = len(FINAL) + sum(len(toks) for _, _, toks in went_through)
    assert final["usage"]["output_tokens"] == accepted


def test_parser_from_two_threads_collides_and_never_corrupts(vocab: Vocab) -> None:
    """Two threads take turns holding the parser and intruding on it.

    A ``process_many`` on a list never lets another thread in: the binding keeps
    the GIL for the whole call, so two threads hammering one parser with lists
    never collide, and a test built that way proves nothing. Python code run
    inside the call does let one in: the holder passes a generator whose
    ``__next__`` waits (the GIL free) until the other thread has tried its call.
    So every round has exactly one collision, from either thread in turn, and
    every intruding call must be refused without changing the parser.
    """
    p = HarmonyParser(vocab)
    p.process_many(FINAL)
    rounds = 40
    inside = [threading.Event() for _ in range(rounds)]  # the holder is mid-call
    tried = [threading.Event() for _ in range(rounds)]  # the intruder's call returned
    done = [threading.Event() for _ in range(rounds)]  # the holder's call returned
    intrusions: list[Callable[[], Any]] = [
        lambda: p.process_many([DOG, DOG]),
        lambda: p.process(DOG),
        lambda: p.process_eos(),
        lambda: p.current_content,
        lambda: p.messages,
        lambda: p.tokens_processed,
    ]
    refused: list[tuple[int, BaseException]] = []
    went_through: list[int] = []  # rounds where an intruding call was not refused
    holder_errors: list[BaseException] = []

    def held_tokens(r: int) -> Iterator[int]:
        yield THE
        inside[r].set()
        tried[r].wait(10)  # the GIL is free here: the other thread calls now
        yield THE

    def worker(me: int) -> None:
        for r in range(rounds):
            if r % 2 == me:
                try:
                    p.process_many(held_tokens(r))
                except BaseException as e:  # pragma: no cover - reported below
                    holder_errors.append(e)
                done[r].set()
            else:
                inside[r].wait(10)
                try:
                    intrusions[r % len(intrusions)]()
                except Exception as e:
                    refused.append((r, e))
                else:
                    went_through.append(r)
                tried[r].set()
                done[r].wait(10)  # the next round's holder starts on a free parser

    threads = [threading.Thread(target=worker, args=(me,)) for me in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert holder_errors == []
    assert went_through == [], "a call from another thread ran while the parser was busy"
    # A collision in every round, from each of the two threads in turn.
    assert [r for r, _ in refused] == list(range(rounds))
    assert all(_busy_error(e) for _, e in refused), refused
    # Not corrupted: only the holders' tokens, in order.
    assert p.tokens_processed == len(FINAL) + 2 * rounds
    assert p.current_content == " the" * (2 * rounds)
    assert p.process(DOG) == " dog"  # free again once the holder is done


def test_a_panic_on_one_thread_leaves_the_others_working(vocab: Vocab) -> None:
    barrier = threading.Barrier(THREADS)

    def job(k: int) -> str:
        s = ResponseStream(vocab, id_seed=k, created_at=0)
        s.feed(FINAL)
        barrier.wait()
        if k == 3:
            with pytest.raises(InternalError):
                s._panic_for_tests()
            with pytest.raises(InternalError):
                s.feed([THE])
            return "panicked"
        time.sleep(0.01)
        s.feed([THE] * 300)
        events = [e.model_dump() for e in s.finish()]
        return str(events[-1]["response"]["output"][0]["content"][0]["text"])

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(job, range(THREADS)))
    assert results == [" the" * 300 if k != 3 else "panicked" for k in range(THREADS)]
