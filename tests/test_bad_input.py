"""Bad input: a clear typed exception, and the parser exactly as it was before."""

from __future__ import annotations

from typing import Any

import pytest

from harmony_stream import HarmonyError, HarmonyParser, InvalidTokenError, Vocab

START, CHANNEL, MESSAGE, END = 200006, 200005, 200008, 200007


def snapshot(p: HarmonyParser) -> tuple[Any, ...]:
    return (
        p.state,
        p.current_role,
        p.current_channel,
        p.current_recipient,
        p.current_content_type,
        p.current_content,
        p.last_content_delta,
        p.tokens_processed,
        [m.to_dict() for m in p.messages],
        [(r.token_index, r.kind) for r in p.recoveries],
    )


def stream(enc: Any) -> list[int]:
    return [CHANNEL, *enc.encode("final"), MESSAGE, *enc.encode("Hello, world! 🌸"), END]


@pytest.mark.parametrize("bad", [-1, 201_089, 2**31, 2**40, 2**70, -(2**70)])
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("at", [0, 2, 4])
def test_invalid_ids_raise_and_change_nothing(
    enc: Any, vocab: Vocab, bad: int, strict: bool, at: int
) -> None:
    toks = stream(enc)
    p = HarmonyParser(vocab, strict=strict)
    p.process_many(toks[:at])
    before = snapshot(p)
    with pytest.raises(InvalidTokenError) as info:
        p.process(bad)
    assert info.value.token_index == at
    assert info.value.token == bad
    assert "not in the o200k_harmony vocabulary" in str(info.value)
    assert isinstance(info.value, HarmonyError)
    assert isinstance(info.value, ValueError)
    assert snapshot(p) == before
    # The stream goes on as if the bad id had never been sent.
    p.process_many(toks[at:])
    ref = HarmonyParser(vocab, strict=strict)
    ref.process_many(toks)
    assert snapshot(p) == snapshot(ref)


@pytest.mark.parametrize("bad", ["5", 5.0, None, True, b"\x05", [5]])
def test_non_int_ids_raise_type_error(vocab: Vocab, bad: Any) -> None:
    p = HarmonyParser(vocab)
    before = snapshot(p)
    with pytest.raises(TypeError, match="token ids must be int"):
        p.process(bad)
    assert snapshot(p) == before


def test_process_many_checks_every_id_first(enc: Any, vocab: Vocab) -> None:
    toks = stream(enc)
    p = HarmonyParser(vocab)
    with pytest.raises(InvalidTokenError) as info:
        p.process_many([*toks[:3], 999_999, *toks[3:]])
    assert info.value.token_index == 3
    assert info.value.token == 999_999
    assert p.tokens_processed == 0
    with pytest.raises(TypeError):
        p.process_many([*toks[:3], "x"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        p.process_many("abc")  # type: ignore[arg-type]
    assert p.tokens_processed == 0


def test_numpy_like_ints_are_accepted(enc: Any, vocab: Vocab) -> None:
    class Index:
        def __init__(self, v: int) -> None:
            self.v = v

        def __index__(self) -> int:
            return self.v

    p = HarmonyParser(vocab)
    p.process_many([Index(t) for t in stream(enc)])
    assert p.messages[0].content == "Hello, world! 🌸"


def test_strict_error_leaves_parser_unchanged(enc: Any, vocab: Vocab) -> None:
    p = HarmonyParser(vocab, role=None, strict=True)
    before = snapshot(p)
    with pytest.raises(HarmonyError) as info:
        p.process(CHANNEL)
    assert info.value.kind == "unexpected_token"
    assert snapshot(p) == before
    # A header error at <|message|>: the header stays open.
    p.process_many([START, *enc.encode("bogus")])
    before = snapshot(p)
    with pytest.raises(HarmonyError, match="Unknown role") as info:
        p.process(MESSAGE)
    assert info.value.kind == "unknown_role"
    assert info.value.token_index == 1 + len(enc.encode("bogus"))
    assert snapshot(p) == before


def test_eos_in_header_strict(vocab: Vocab) -> None:
    p = HarmonyParser(vocab, strict=True)
    p.process(CHANNEL)
    with pytest.raises(HarmonyError) as info:
        p.process_eos()
    assert info.value.kind == "unexpected_eos"
    assert info.value.token_index == 1


def test_bad_constructor_arguments(vocab: Vocab) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        HarmonyParser(vocab, "robot")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        HarmonyParser("not a vocab")  # type: ignore[arg-type]


def test_exceptions_pickle(vocab: Vocab) -> None:
    import pickle

    p = HarmonyParser(vocab)
    with pytest.raises(InvalidTokenError) as info:
        p.process(-5)
    again = pickle.loads(pickle.dumps(info.value))
    assert (type(again), str(again), again.token_index, again.token) == (
        InvalidTokenError,
        str(info.value),
        0,
        -5,
    )
