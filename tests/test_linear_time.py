"""Linear time for any token sequence: the cost of a token does not grow with the stream.

Each class of token run below is fed to a ``ResponseStream`` (one ``feed_sse`` call per
64 tokens) at 20k and at 400k tokens, after a header that opens a message (or none,
where the run is about headers). A token whose cost grows with the stream (bytes held
back and moved or re-read on every token, a header re-decoded, a list scanned) makes
the long run ~20x slower per token; the bound allows 3x for a shared, noisy machine.
Memory: a run of quirks keeps a bounded list of recovery details.

The speed of the same classes, side by side, is in ``benches/test_linear.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from test_events_properties import ASSISTANT, CHANNEL, END, MESSAGE, START

from harmony_stream import HarmonyParser, ResponseStream, Vocab

FINAL_OPEN = [CHANNEL, 17196, MESSAGE]  # <|channel|>final<|message|>
THE = 290  # " the"

# Single-byte tokens of o200k (id -> the byte it decodes to).
BYTE = {0x80: 222, 0xBF: 123, 0xFF: 187, 0xC3: 127, 0xE2: 158, 0xF0: 172, 0xED: 169, 0xA0: 254}
CONT2 = 2203  # b"\x82\xac": two continuation bytes

# Every class of undecodable run (continuation bytes alone, one or two per token; bytes
# that are never valid; lead bytes with no continuation; a lead then too many
# continuations; an encoded surrogate), plus the header and recovery paths.
CLASSES: dict[str, tuple[list[int], list[int]]] = {
    "continuation_byte": (FINAL_OPEN, [BYTE[0x80]]),
    "two_continuation_bytes": (FINAL_OPEN, [CONT2]),
    "invalid_byte_ff": (FINAL_OPEN, [BYTE[0xFF]]),
    "lead_bytes_alone": (FINAL_OPEN, [BYTE[0xC3], BYTE[0xE2]]),
    "lead_then_continuations": (FINAL_OPEN, [BYTE[0xF0], CONT2, CONT2, BYTE[0xBF]]),
    "surrogate": (FINAL_OPEN, [BYTE[0xED], BYTE[0xA0], BYTE[0x80]]),
    "plain_text": (FINAL_OPEN, [THE]),
    "header_never_closed": ([CHANNEL], [THE]),
    "start_then_text": ([], [START, THE]),
    "stray_stop_tokens": ([CHANNEL, 17196, MESSAGE, THE, END], [END]),
    "many_short_messages": ([], [START, ASSISTANT, *FINAL_OPEN, THE, END]),
}
STEP = 64


def _run(vocab: Vocab, prefix: list[int], unit: list[int]) -> Callable[[int], None]:
    def run(n: int) -> None:
        s = ResponseStream(vocab, id_seed=1, created_at=0)
        s.feed_sse(prefix)
        chunk = (unit * (STEP // len(unit) + 1))[:STEP]
        chunk = chunk[: len(chunk) - len(chunk) % len(unit)] or unit
        for _ in range(n // len(chunk)):
            s.feed_sse(chunk)
        s.finish_sse("length")

    return run


def _per_token(run: Callable[[int], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(n)
        best = min(best, time.perf_counter() - t0)
    return best / n


@pytest.mark.parametrize("name", list(CLASSES))
def test_cost_per_token_does_not_grow(vocab: Vocab, name: str) -> None:
    run = _run(vocab, *CLASSES[name])
    run(2_000)  # warm up
    small = _per_token(run, 20_000, repeat=5)
    large = _per_token(run, 400_000, repeat=2)
    assert large < 3 * small, (
        f"{name}: {large * 1e9:.0f} ns/token at 400k vs {small * 1e9:.0f} at 20k"
    )


def test_recovery_details_are_bounded(vocab: Vocab) -> None:
    # After one message, 100k alternations of <|start|> and text: each <|start|> but
    # the first restarts a header (repeated_start) and drops its text
    # (header_without_message), as does the end of the stream. All are counted;
    # 100 are kept with their details.
    p = HarmonyParser(vocab, "assistant", strict=False)
    p.process_many([*FINAL_OPEN, THE, END] + [START, THE] * 100_000)
    p.process_eos()
    assert len(p.recoveries) == 100
    assert p.recovery_counts == {"repeated_start": 99_999, "header_without_message": 100_000}
    assert [m.content for m in p.messages] == [" the"]
