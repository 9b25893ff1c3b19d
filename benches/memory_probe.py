"""Memory retained per stream, measured in a fresh process (one case per process).

A process that already freed memory reuses it without growing its RSS, so
each case gets its own interpreter: load the vocabulary, warm up with one
whole response, then take RSS (psutil) and the Python heap (tracemalloc) before
and after making N streams and holding them. tracemalloc sees the Python
objects only; RSS sees everything, the Rust heap included.

Cases: ``idle`` (created), ``idle_started`` (``start_sse()`` sent, waiting for
its first token), ``<corpus>`` (every token of the corpus fed, one engine step
per token, then measured again after ``finish_sse``).

    .venv/bin/python benches/memory_probe.py --case long_47k --streams 16
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil  # type: ignore[import-untyped]
from _common import load_corpus
from _paths import new_stream

import harmony_stream as hs


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def feed_all(stream: hs.ResponseStream, turns: list[Any]) -> None:
    stream.start_sse()
    for turn in turns:
        if isinstance(turn, tuple):
            stream.tool_output_sse(*turn)
        else:
            for one in turn:
                stream.feed_sse(one)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--corpus", default="chat_short", help="tools of the idle streams")
    args = ap.parse_args()

    vocab = hs.Vocab.load()
    idle = args.case in ("idle", "idle_started")
    corpus = load_corpus(args.corpus if idle else args.case)
    turns = corpus.turns_for_feeding()
    warm = new_stream(vocab, corpus)  # warm-up: one whole response, then dropped
    feed_all(warm, turns)
    warm.finish_sse(corpus.finish_reason)  # type: ignore[arg-type]
    del warm

    tracemalloc.start()
    rss0, heap0 = rss(), heap()
    streams = [new_stream(vocab, corpus) for _ in range(args.streams)]
    if args.case == "idle_started":
        for s in streams:
            s.start_sse()
    elif not idle:
        for s in streams:
            feed_all(s, turns)
    rss1, heap1 = rss(), heap()
    out: dict[str, Any] = {
        "case": args.case,
        "streams": args.streams,
        "rss_per_stream": (rss1 - rss0) / args.streams,
        "tracemalloc_per_stream": (heap1 - heap0) / args.streams,
        "output_tokens": 0 if idle else corpus.num_tokens,
        "output_bytes": 0 if idle else corpus.output_text_bytes,
    }
    if not idle:
        for s in streams:
            s.finish_sse(corpus.finish_reason)  # type: ignore[arg-type]
        rss2, heap2 = rss(), heap()
        out["rss_per_stream_finished"] = (rss2 - rss0) / args.streams
        out["tracemalloc_per_stream_finished"] = (heap2 - heap0) / args.streams
        worst = max(out["rss_per_stream"], out["rss_per_stream_finished"])
        out["rss_per_output_byte"] = worst / corpus.output_text_bytes
    del streams
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
