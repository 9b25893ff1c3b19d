"""vLLM's HarmonyParser with the plugin: the replaced process_chunk against vLLM's own.

With the plugin on, ``HarmonyParser.process_chunk`` is the plugin's (fewer
Python calls per token). Its oracle is vLLM's own ``process_chunk`` run on the
same Rust parser (``RustStreamableParser``): the segments, completed messages,
reasoning counts, the error-recovery token buffer and ``flush`` must be the same,
for every corpus stream (quirks included), chunked 1, 3 and 16 tokens at a time,
with ids outside the vocabulary mixed in (vLLM skips those).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import corpus
import pytest
import vllm
from vllm.parser import harmony as vparser

from harmony_stream import vllm_plugin

BAD_IDS = (10**9, 201_088 + 5)  # past the vocabulary: openai_harmony would refuse them too
_VLLM_OWN_PROCESS_CHUNK = vparser.HarmonyParser.__dict__["process_chunk"]


def _vllm_031_process_chunk(parser: Any, token_ids: Any) -> Any:
    """vLLM 0.31's process_chunk with 0.32's skip of a token the parser refuses
    (0.31 raises; the plugin skips it, as vLLM 0.32 and 0.33 do): the oracle on 0.31."""
    kept = [t for t in token_ids if t not in BAD_IDS]
    result = _VLLM_OWN_PROCESS_CHUNK(parser, kept)
    parser._num_counted_tokens += len(token_ids) - len(kept)
    return result


VLLM_PROCESS_CHUNK = (
    _vllm_031_process_chunk if vllm.__version__ == "0.31.0" else _VLLM_OWN_PROCESS_CHUNK
)


class _Tokenizer:
    def decode(self, ids: list[int], **_: Any) -> str:
        return corpus.ENCODING.decode(ids)


@pytest.fixture(scope="module", autouse=True)
def _plugin() -> Iterator[None]:
    assert vllm_plugin.install()
    yield
    vllm_plugin.uninstall()


def _segments(result: Any) -> list[Any]:
    return [
        (
            s.channel,
            s.recipient,
            s.delta,
            None if s.completed_message is None else s.completed_message.to_dict(),
        )
        for s in result.segments
    ]


def _run(process_chunk: Any, tokens: list[int], step: int) -> Any:
    parser = vparser.HarmonyParser(_Tokenizer())
    trace = []
    for i in range(0, len(tokens), step):
        result = process_chunk(parser, tokens[i : i + step])
        trace.append(
            (
                _segments(result),
                result.reasoning_token_count,
                list(parser._current_message_tokens),
                parser._num_processed_messages,
            )
        )
    flushed = [(s.channel, s.recipient, s.delta) for s in parser.flush()]
    return trace, flushed, parser._num_counted_tokens, parser._num_reasoning_tokens


def _with_bad_ids(tokens: tuple[int, ...]) -> list[int]:
    out: list[int] = []
    for i, t in enumerate(tokens):
        out.append(t)
        if i % 7 == 3:
            out.append(BAD_IDS[i % 2])
    return out


@pytest.mark.parametrize("bad", [False, True], ids=["clean-ids", "with-bad-ids"])
@pytest.mark.parametrize("step", [1, 3, 16])
@pytest.mark.parametrize("entry", corpus.CORPUS, ids=[e.name for e in corpus.CORPUS])
def test_process_chunk_equals_vllms_on_the_same_parser(
    entry: corpus.Entry, step: int, bad: bool
) -> None:
    patched = vparser.HarmonyParser.__dict__["process_chunk"]
    assert patched is not _VLLM_OWN_PROCESS_CHUNK
    for turn in entry.turns:
        tokens = _with_bad_ids(turn.tokens) if bad else list(turn.tokens)
        assert _run(patched, tokens, step) == _run(VLLM_PROCESS_CHUNK, tokens, step)


def test_reasoning_count_matches_vllms_own_counter() -> None:
    """`count_reasoning_tokens` re-parses from scratch (vLLM's code, our parser)."""
    entry = corpus.BY_NAME["preamble_function_call"]
    tokens = list(entry.tokens)
    parser = vparser.HarmonyParser(_Tokenizer())
    counted = parser.process_chunk(tokens).reasoning_token_count
    assert counted > 0
    assert vparser.HarmonyParser(_Tokenizer()).count_reasoning_tokens(tokens) == counted


# Random streams from Harmony pieces (seeded: reproducible without hypothesis,
# which the vLLM virtualenv does not carry), with stray regular tokens and bad ids.
def _random_stream(rng: Any) -> list[int]:
    tokens: list[int] = []
    for _ in range(rng.randrange(1, 40)):
        r = rng.random()
        if r < 0.85:
            piece = rng.choice(corpus.HARMONY_PIECES)
            tokens += corpus.ENCODING.encode(piece, allowed_special="all")
        elif r < 0.95:
            tokens.append(rng.randrange(0, 199_998))  # any regular token (partial UTF-8 too)
        else:
            tokens.append(rng.choice(BAD_IDS))
    return tokens


@pytest.mark.parametrize("seed", range(40))
def test_process_chunk_equals_vllms_on_random_streams(seed: int) -> None:
    import random

    rng = random.Random(seed)
    patched = vparser.HarmonyParser.__dict__["process_chunk"]
    for _ in range(10):
        tokens = _random_stream(rng)
        step = rng.choice([1, 2, 5, 64])
        assert _run(patched, tokens, step) == _run(VLLM_PROCESS_CHUNK, tokens, step), tokens
