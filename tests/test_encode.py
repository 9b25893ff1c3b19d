"""`Vocab.encode`: ordinary text to o200k tokens, against openai-harmony's tokenizer.

The oracle is openai-harmony 0.0.8's own encoder with every special token
allowed as plain text (``disallowed_special=()``): what it renders message text
with. Nothing in the text is a special token, so ``"<|start|>"`` is the tokens
of its nine characters.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmony_stream import Vocab, VocabError

# Pieces that stress the split pattern: contractions, digit runs, whitespace
# runs before text, newlines, letters of every case, marks, emoji, and the text
# of Harmony's special tokens.
PIECES = [
    "'s", "'T", "'ll", "'RE", "'ve", "'m", "'d", " ", "  ", "\t", "\n", "\r\n", "\n\n ",
    "1", "12", "123", "1234", "0.5", "a", "A", "Ab", "aB", "hello", " world", "HTTP",
    "é", "e\u0301", "ß", "ǅ", "中文", "日本語", "한국어", "😀", "👩‍👩‍👧", "🇫🇷", "\u200b",
    "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|call|>", "<|return|>",
    "<|constrain|>", "<|endoftext|>", "<|reserved_200014|>", "<|", "|>", "to=", "functions.",
    '{"a": 1}', "...", "!?", "—", "\u00a0", "$", "@@", "/", "\\",
]  # fmt: skip


def oracle(enc: Any, text: str) -> list[int]:
    tokens: list[int] = enc.encode(text, disallowed_special=())
    return tokens


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200))
def test_random_unicode_matches_openai_harmony(vocab: Vocab, enc: Any, text: str) -> None:
    tokens = vocab.encode(text)
    assert tokens == oracle(enc, text)
    assert vocab.decode_bytes(tokens).decode("utf-8") == text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=30))
def test_pieces_match_openai_harmony(vocab: Vocab, enc: Any, pieces: list[str]) -> None:
    text = "".join(pieces)
    tokens = vocab.encode(text)
    assert tokens == oracle(enc, text)
    assert vocab.decode_bytes(tokens).decode("utf-8") == text


def test_special_token_text_is_ordinary_text(vocab: Vocab, enc: Any) -> None:
    """Every special token's text encodes as ordinary tokens, as openai-harmony does."""
    names = sorted(enc.special_tokens_set)
    assert "<|start|>" in names
    for name in names:
        tokens = vocab.encode(name)
        assert tokens == oracle(enc, name), name
        assert all(t < vocab.n_regular for t in tokens), name
        assert vocab.decode_bytes(tokens).decode() == name


def test_empty_and_long_text(vocab: Vocab, enc: Any) -> None:
    assert vocab.encode("") == []
    text = "The quick brown fox jumps over the lazy dog. 1234567 ünïcödé 😀\n" * 2000
    assert vocab.encode(text) == oracle(enc, text)


def test_not_a_string_is_a_type_error(vocab: Vocab) -> None:
    with pytest.raises(TypeError):
        vocab.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vocab.encode(None)  # type: ignore[arg-type]


def test_vocabulary_that_cannot_encode_says_why() -> None:
    """Byte-pair encoding needs every single byte; a reduced vocabulary is refused in words."""
    small = Vocab.from_token_bytes([b"a", b"b", b"ab"], sha256=None)
    with pytest.raises(
        VocabError, match="cannot encode text: it has no token for the single byte 0x00"
    ):
        small.encode("ab")
    # The error is kept: a second call says the same.
    with pytest.raises(VocabError, match="single byte 0x00"):
        small.encode("a")


def test_byte_vocabulary_encodes_byte_by_byte() -> None:
    """With only the 256 single bytes there is nothing to merge: one token per byte."""
    byte_vocab = Vocab.from_token_bytes([bytes([b]) for b in range(256)], sha256=None)
    text = "a<|start|>é😀"
    assert byte_vocab.encode(text) == list(text.encode())


def test_encoding_releases_the_gil(vocab: Vocab) -> None:
    """While one thread encodes a long text, another runs Python without a long pause.

    A long run of one letter is one pre-token, merged in one Rust call; holding
    the GIL would stop the main thread for the whole call.
    """
    text = "a" * 40000
    t0 = time.perf_counter()
    vocab.encode(text)
    alone = time.perf_counter() - t0
    assert alone > 0.2, "the text must take a while for this test to mean anything"

    worker = threading.Thread(target=vocab.encode, args=(text,))
    gaps: list[float] = []
    worker.start()
    last = time.perf_counter()
    while worker.is_alive():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    worker.join()
    assert max(gaps) < alone / 2, (max(gaps), alone)
