"""The in-process paths: what is timed, what is set up outside the timer, what is checked.

Timed: one whole response, ``start`` to ``finish``, tool outputs included, every
event written as SSE. Set up outside the timer: the stream objects (and the
one-token lists, which an engine hands over anyway). Each path appends its SSE
chunks to a list, as a server writes them to its transport; the batch path
drops them after each step (256 x 47k events would not fit in memory otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _baseline import run_baseline
from _checks import CheckError, check_events, compare_items, item_text, parse_sse
from _common import BATCH_STREAMS, Corpus

import harmony_stream as hs

STREAM_KW: dict[str, Any] = {"id_seed": 1, "created_at": 0}


def new_stream(vocab: hs.Vocab, corpus: Corpus) -> hs.ResponseStream:
    return hs.ResponseStream(
        vocab,
        tools=corpus.tools,
        max_output_tokens=corpus.transcript.max_output_tokens,
        **STREAM_KW,
    )


# --------------------------------------------------------------------------- (1) per token


def run_sse(stream: hs.ResponseStream, turns: list[Any], reason: Any, sink: list[bytes]) -> None:
    append = sink.append
    append(stream.start_sse())
    for turn in turns:
        if isinstance(turn, tuple):
            append(stream.tool_output_sse(*turn))
        else:
            feed = stream.feed_sse
            for one in turn:
                append(feed(one))
    append(stream.finish_sse(reason))


def run_events(stream: hs.ResponseStream, turns: list[Any], reason: Any, sink: list[bytes]) -> None:
    append = sink.append
    for ev in stream.start():
        append(ev.to_sse())
    for turn in turns:
        if isinstance(turn, tuple):
            for ev in stream.tool_output(*turn):
                append(ev.to_sse())
        else:
            feed = stream.feed
            for one in turn:
                for ev in feed(one):
                    append(ev.to_sse())
    for ev in stream.finish(reason):
        append(ev.to_sse())


# --------------------------------------------------------------------------- (2) batch


def feed_batch_fn() -> Callable[..., list[bytes]]:
    fn = getattr(hs, "feed_batch", None)
    if fn is None:
        raise RuntimeError(
            "harmony_stream.feed_batch is missing: the batch API "
            "(feed_batch(streams, steps) -> list[bytes], issue 5) is not built into this "
            "extension yet; rebuild with `make install` once it lands"
        )
    return fn  # type: ignore[no-any-return]


def run_batch(streams: list[hs.ResponseStream], turns: list[Any], reason: Any) -> None:
    """All streams in lockstep: one feed_batch call per engine step, 1 token per stream."""
    feed_batch = feed_batch_fn()
    n = len(streams)
    for s in streams:
        s.start_sse()
    for turn in turns:
        if isinstance(turn, tuple):
            for s in streams:
                s.tool_output_sse(*turn)
        else:
            for one in turn:
                feed_batch(streams, [one] * n)
    for s in streams:
        s.finish_sse(reason)


def run_batch_kept(
    streams: list[hs.ResponseStream], turns: list[Any], reason: Any, keep: tuple[int, ...]
) -> dict[int, bytes]:
    """`run_batch`, keeping the SSE bodies of the streams in `keep` (for the checks)."""
    feed_batch = feed_batch_fn()
    n = len(streams)
    kept: dict[int, list[bytes]] = {i: [] for i in keep}
    for i, s in enumerate(streams):
        out = s.start_sse()
        if i in kept:
            kept[i].append(out)
    for turn in turns:
        if isinstance(turn, tuple):
            for i, s in enumerate(streams):
                out = s.tool_output_sse(*turn)
                if i in kept:
                    kept[i].append(out)
        else:
            for one in turn:
                outs = feed_batch(streams, [one] * n)
                if len(outs) != n:
                    raise CheckError(f"feed_batch returned {len(outs)} bodies for {n} streams")
                for i in kept:
                    kept[i].append(outs[i])
    for i, s in enumerate(streams):
        out = s.finish_sse(reason)
        if i in kept:
            kept[i].append(out)
    return {i: b"".join(chunks) for i, chunks in kept.items()}


# --------------------------------------------------------------------------- the table


class Path:
    key: str
    tokens_factor = 1

    def __init__(self, vocab: hs.Vocab, encoding: Any) -> None:
        self.vocab = vocab
        self.encoding = encoding

    def tokens(self, corpus: Corpus) -> int:
        return corpus.num_tokens * self.tokens_factor

    def prepare(self, corpus: Corpus) -> Callable[[], None]:
        """Untimed set-up of one round; returns the timed callable."""
        raise NotImplementedError

    def verify(self, corpus: Corpus, reference: bytes | None) -> tuple[bool, str]:
        """Runs once and checks the output: (ok, note)."""
        raise NotImplementedError


def _check_hs_body(body: bytes, corpus: Corpus, reference: bytes | None) -> tuple[bool, str]:
    if reference is not None:
        if body == reference:
            return True, ""
        return False, "SSE bytes differ from feed_sse's"
    final = check_events(parse_sse(body))
    problems = compare_items(
        [item_text(it) for it in final["output"]], corpus.expected, corpus.tools
    )
    if problems:
        return False, "; ".join(problems[:3])
    return True, ""


class HsSse(Path):
    key = "hs_sse"

    def prepare(self, corpus: Corpus) -> Callable[[], None]:
        stream, turns, reason = (
            new_stream(self.vocab, corpus),
            corpus.turns_for_feeding(),
            corpus.finish_reason,
        )
        sink: list[bytes] = []
        return lambda: run_sse(stream, turns, reason, sink)

    def body(self, corpus: Corpus) -> bytes:
        sink: list[bytes] = []
        run_sse(
            new_stream(self.vocab, corpus), corpus.turns_for_feeding(), corpus.finish_reason, sink
        )
        return b"".join(sink)

    def verify(self, corpus: Corpus, reference: bytes | None) -> tuple[bool, str]:
        return _check_hs_body(self.body(corpus), corpus, None)


class HsEvents(Path):
    key = "hs_events"

    def prepare(self, corpus: Corpus) -> Callable[[], None]:
        stream, turns, reason = (
            new_stream(self.vocab, corpus),
            corpus.turns_for_feeding(),
            corpus.finish_reason,
        )
        sink: list[bytes] = []
        return lambda: run_events(stream, turns, reason, sink)

    def verify(self, corpus: Corpus, reference: bytes | None) -> tuple[bool, str]:
        sink: list[bytes] = []
        run_events(
            new_stream(self.vocab, corpus), corpus.turns_for_feeding(), corpus.finish_reason, sink
        )
        return _check_hs_body(b"".join(sink), corpus, reference)


class HsBatch(Path):
    key = "hs_batch"
    tokens_factor = BATCH_STREAMS

    def prepare(self, corpus: Corpus) -> Callable[[], None]:
        feed_batch_fn()
        streams = [new_stream(self.vocab, corpus) for _ in range(BATCH_STREAMS)]
        turns, reason = corpus.turns_for_feeding(), corpus.finish_reason
        return lambda: run_batch(streams, turns, reason)

    def verify(self, corpus: Corpus, reference: bytes | None) -> tuple[bool, str]:
        streams = [new_stream(self.vocab, corpus) for _ in range(BATCH_STREAMS)]
        keep = (0, BATCH_STREAMS - 1)
        bodies = run_batch_kept(streams, corpus.turns_for_feeding(), corpus.finish_reason, keep)
        for i, body in bodies.items():
            ok, note = _check_hs_body(body, corpus, reference)
            if not ok:
                return False, f"stream {i}: {note}"
        return True, ""


class OhPydantic(Path):
    key = "oh_pydantic"

    def prepare(self, corpus: Corpus) -> Callable[[], None]:
        turns = corpus.turns_raw()
        sink: list[str] = []
        return lambda: run_baseline(self.encoding, corpus.tools, turns, sink)

    def verify(self, corpus: Corpus, reference: bytes | None) -> tuple[bool, str]:
        sink: list[str] = []
        run_baseline(self.encoding, corpus.tools, corpus.turns_raw(), sink)
        try:
            final = check_events(parse_sse("".join(sink)))
        except (CheckError, ValueError) as e:
            return False, f"events: {e}"[:200]
        problems = compare_items(
            [item_text(it) for it in final["output"]], corpus.expected, corpus.tools
        )
        return (not problems), "; ".join(problems[:3])


PATH_CLASSES: dict[str, type[Path]] = {c.key: c for c in (HsSse, HsEvents, HsBatch, OhPydantic)}
