"""The batch API: one call per engine step for many streams, same bytes as one by one."""

from __future__ import annotations

import random

import pytest

from harmony_stream import (
    InvalidRequestError,
    InvalidTokenError,
    ResponseStateError,
    ResponseStream,
    Vocab,
    feed_batch,
)
from harmony_stream.transcript import ModelTurn, load_transcript

from conftest import DATA


def turns(name: str) -> list[int]:
    t = load_transcript(DATA / "transcripts" / f"{name}.json")
    first = t.model_turns[0]
    assert isinstance(first, ModelTurn)
    return first.tokens


def test_batch_equals_streams_fed_one_by_one(vocab: Vocab) -> None:
    names = ["chat_final", "unicode", "preamble", "function_call", "truncated"]
    token_lists = [turns(n) for n in names]
    rng = random.Random(5)
    batch = [ResponseStream(vocab, id_seed=i, created_at=0) for i in range(len(names))]
    alone = [ResponseStream(vocab, id_seed=i, created_at=0) for i in range(len(names))]
    got = [s.start_sse() for s in batch]
    want = [s.start_sse() for s in alone]
    pos = [0] * len(names)
    while any(p < len(t) for p, t in zip(pos, token_lists, strict=True)):
        steps = []
        for i, toks in enumerate(token_lists):
            n = rng.randint(0, 4)
            steps.append(toks[pos[i] : pos[i] + n])
            pos[i] += n
        for i, chunk in enumerate(feed_batch(batch, steps)):
            got[i] += chunk
        for i, (s, step) in enumerate(zip(alone, steps, strict=True)):
            want[i] += s.feed_sse(step)
    for s, a in zip(batch, alone, strict=True):
        assert s.response() == a.response()
    assert got == want
    assert all(b"response.output_item.done" in g for g in got)


def test_batch_checks_everything_before_consuming(vocab: Vocab) -> None:
    a = ResponseStream(vocab, id_seed=1)
    b = ResponseStream(vocab, id_seed=2)
    b.finish()
    with pytest.raises(ResponseStateError):
        feed_batch([a, b], [[200005], [200005]])
    with pytest.raises(InvalidTokenError):
        feed_batch([a, a.__class__(vocab)], [[200005], [-1]])
    with pytest.raises(InvalidRequestError, match="steps for"):
        feed_batch([a], [[1], [2]])
    with pytest.raises(ResponseStateError, match="twice"):
        feed_batch([a, a], [[1], [2]])
    with pytest.raises(TypeError, match="not a ResponseStream"):
        feed_batch([object()], [[1]])  # type: ignore[list-item]
    # Nothing was consumed: `a` has not even started.
    assert a.response()["status"] == "in_progress"
    assert a.feed_sse([]).startswith(b"event: response.created")


def test_a_rust_panic_becomes_internal_error_on_that_stream_only(vocab: Vocab) -> None:
    from harmony_stream import InternalError

    hurt = ResponseStream(vocab, id_seed=1)
    fine = ResponseStream(vocab, id_seed=2)
    hurt.start()
    with pytest.raises(InternalError, match="deliberate panic"):
        hurt._panic_for_tests()
    # The stream that panicked refuses further work; the process and other streams go on.
    with pytest.raises(InternalError, match="cannot be used"):
        hurt.feed([200005])
    with pytest.raises(InternalError):
        feed_batch([fine, hurt], [[200005], [200005]])
    assert fine.feed_sse([200005]).startswith(b"event: response.created")
    assert isinstance(InternalError("x"), RuntimeError)
