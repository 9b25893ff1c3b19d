"""Lenient mode on the model quirks of docs/architecture.md, Lenient parsing.

Each expectation is a rule with openai-harmony as the oracle: the quirky
stream must give the messages openai-harmony gives for the clean stream the
model meant (or the stated difference), lose no content text, and record the
recovery. Strict mode must fail exactly where openai-harmony strict fails
(checked by check_against_oracle on every stream here).
"""

from __future__ import annotations

from typing import Any

import pytest

from harmony_stream import HarmonyError, HarmonyParser, Vocab

from _harness import check_against_oracle, run_oracle, run_ours

START, CHANNEL, MESSAGE, CONSTRAIN = 200006, 200005, 200008, 200003
END, CALL, RETURN = 200007, 200012, 200002


def t(enc: Any, text: str) -> list[int]:
    return list(enc.encode(text, allowed_special="all"))


def msg(enc: Any, channel: str, text: str, stop: int = END, extra: str = "") -> list[int]:
    return [CHANNEL, *t(enc, channel + extra), MESSAGE, *t(enc, text), stop]


def again(enc: Any) -> list[int]:
    """A later message's opening: `<|start|>assistant`."""
    return [START, *t(enc, "assistant")]


def lenient(vocab: Vocab, toks: list[int]) -> HarmonyParser:
    p = HarmonyParser(vocab)
    p.process_many(toks)
    p.process_eos()
    return p


def texts(p: HarmonyParser) -> list[str]:
    return [m.content for m in p.messages]


def kinds(p: HarmonyParser) -> list[str]:
    return [r.kind for r in p.recoveries]


def test_recipient_after_channel_and_constrain_forms(enc: Any, vocab: Vocab) -> None:
    for header in [
        "commentary to=functions.get_weather <|constrain|>json",
        "commentary to=functions.get_weather<|constrain|>json",
        "commentary to=functions.get_weather json",
    ]:
        toks = [CHANNEL, *t(enc, header), MESSAGE, *t(enc, '{"a": 1}'), CALL]
        ours, oracle = check_against_oracle(enc, vocab, toks)
        assert oracle.error_index is None
        assert ours.messages[0]["recipient"] == "functions.get_weather"
    before = [
        *t(enc, " to=functions.f"),
        CHANNEL,
        *t(enc, "commentary"),
        MESSAGE,
        *t(enc, "{}"),
        CALL,
    ]
    ours, _ = check_against_oracle(enc, vocab, before)
    assert ours.messages[0]["recipient"] == "functions.f"


def test_spaced_constrain_is_a_strict_error_and_recovered(enc: Any, vocab: Vocab) -> None:
    toks = [
        CHANNEL,
        *t(enc, "commentary to=functions.f <|constrain|> json"),
        MESSAGE,
        *t(enc, "{}"),
        CALL,
    ]
    check_against_oracle(enc, vocab, toks)
    assert run_oracle(enc, toks, strict=False).error_index is not None
    p = lenient(vocab, toks)
    m = p.messages[0]
    assert (m.recipient, m.content_type, m.content) == ("functions.f", "<|constrain|>json", "{}")
    assert kinds(p) == ["malformed_header"]


def test_final_constrain_json_is_a_content_type_not_a_recipient(enc: Any, vocab: Vocab) -> None:
    toks = msg(enc, "final", '{"answer": 42}', RETURN, " <|constrain|>json")
    oracle = run_oracle(enc, toks, strict=False)
    assert oracle.messages[0].get("recipient") == "<|constrain|>json"  # openai-harmony's reading
    check_against_oracle(enc, vocab, toks)
    p = lenient(vocab, toks)
    m = p.messages[0]
    assert (m.channel, m.recipient, m.content_type) == ("final", None, "<|constrain|>json")
    assert m.content == oracle.messages[0]["content"][0]["text"]
    assert kinds(p) == ["constrain_as_recipient"]


@pytest.mark.parametrize(("stray", "end"), [(RETURN, "return"), (CALL, "call"), (END, "end")])
def test_stop_token_right_after_end(enc: Any, vocab: Vocab, stray: int, end: str) -> None:
    clean = msg(enc, "analysis", "thinking") + again(enc) + msg(enc, "final", "Answer.")
    quirky = [*clean, stray]
    check_against_oracle(enc, vocab, quirky)
    assert run_oracle(enc, quirky, strict=False).error_index is not None  # openai-harmony fails
    p = lenient(vocab, quirky)
    assert [m.to_dict() for m in p.messages] == run_oracle(enc, clean, strict=False).messages
    assert p.messages[-1].end == end
    assert kinds(p) == ["stray_stop_token"]


def test_repeated_start(enc: Any, vocab: Vocab) -> None:
    clean = msg(enc, "analysis", "a") + again(enc) + msg(enc, "final", "The answer.", RETURN)
    quirky = [
        *msg(enc, "analysis", "a"),
        START,
        *again(enc),
        *msg(enc, "final", "The answer.", RETURN),
    ]
    check_against_oracle(enc, vocab, quirky)
    p = lenient(vocab, quirky)
    assert [m.to_dict() for m in p.messages] == run_oracle(enc, clean, strict=False).messages
    assert kinds(p) == ["repeated_start"]
    # At the very beginning too: the model repeats the prompt's `<|start|>assistant`.
    first = again(enc) + msg(enc, "final", "Hi!", RETURN)
    p = lenient(vocab, first)
    assert [m.to_dict() for m in p.messages] == run_oracle(
        enc, msg(enc, "final", "Hi!", RETURN), strict=False
    ).messages
    assert kinds(p) == ["repeated_start"]


def test_stray_text_after_end_is_kept(enc: Any, vocab: Vocab) -> None:
    head = msg(enc, "analysis", "x")
    tail = again(enc) + msg(enc, "final", "Done.", RETURN)
    quirky = head + t(enc, "Hello there") + tail
    check_against_oracle(enc, vocab, quirky)
    p = lenient(vocab, quirky)
    assert texts(p) == ["x", "Hello there", "Done."]
    assert p.messages[1].channel is None
    assert "missing_start" in kinds(p)
    # Text at the very end of the stream is kept as well.
    p = lenient(vocab, head + t(enc, "trailing words"))
    assert texts(p) == ["x", "trailing words"]


def test_missing_start_before_a_header(enc: Any, vocab: Vocab) -> None:
    clean = msg(enc, "analysis", "a") + again(enc) + msg(enc, "final", "b", RETURN)
    quirky = msg(enc, "analysis", "a") + msg(enc, "final", "b", RETURN)
    check_against_oracle(enc, vocab, quirky)
    p = lenient(vocab, quirky)
    assert [m.to_dict() for m in p.messages] == run_oracle(enc, clean, strict=False).messages
    assert kinds(p) == ["missing_start"]


@pytest.mark.parametrize("channel", ["commentary?", "commentary.", "final!", "analysis:"])
def test_malformed_channel_is_normalized(enc: Any, vocab: Vocab, channel: str) -> None:
    toks = msg(enc, channel, "Let me check.")
    check_against_oracle(enc, vocab, toks)
    p = lenient(vocab, toks)
    assert p.messages[0].channel == channel.rstrip("?.!:")
    assert texts(p) == ["Let me check."]
    assert kinds(p) == ["channel_normalized"]


def test_unknown_channel_is_left_alone(enc: Any, vocab: Vocab) -> None:
    p = lenient(vocab, msg(enc, "notes", "n"))
    assert p.messages[0].channel == "notes"
    assert kinds(p) == []


def test_analysis_with_recipient(enc: Any, vocab: Vocab) -> None:
    toks = msg(enc, "analysis", '{"x": 1}', CALL, " to=functions.lookup")
    ours, _ = check_against_oracle(enc, vocab, toks)
    assert ours.messages[0]["channel"] == "analysis"
    assert ours.messages[0]["recipient"] == "functions.lookup"


def test_cut_inside_a_header_drops_only_the_header(enc: Any, vocab: Vocab) -> None:
    done = msg(enc, "analysis", "thought")
    quirky = done + again(enc) + [CHANNEL, *t(enc, "fin")]
    check_against_oracle(enc, vocab, quirky)
    assert run_oracle(enc, quirky, strict=True).error_index == len(quirky)  # EOS in header
    p = lenient(vocab, quirky)
    assert [m.to_dict() for m in p.messages] == run_oracle(enc, done, strict=False).messages
    assert all("<|" not in m.content for m in p.messages)
    assert kinds(p) == ["header_without_message"]
    # Cut in the very first header: nothing at all, not the raw header as an answer.
    p = lenient(vocab, [CHANNEL, *t(enc, "fin")])
    assert p.messages == []


def test_cut_mid_content_keeps_the_partial_text(enc: Any, vocab: Vocab) -> None:
    toks = msg(enc, "final", "The answer is")[:-1]
    ours, _oracle = check_against_oracle(enc, vocab, toks)
    assert ours.messages[0]["content"][0]["text"] == "The answer is"
    p = lenient(vocab, toks)
    assert p.messages[0].end == "eos"


def test_multibyte_split_across_tokens(enc: Any, vocab: Vocab) -> None:
    emoji = "🌸".encode()
    toks = [CHANNEL, *t(enc, "final"), MESSAGE]
    byte_tokens = [_single_byte_token(enc, vocab, b) for b in emoji]
    ours, _ = check_against_oracle(enc, vocab, toks + byte_tokens + [END])
    assert ours.deltas[-5:-1] == [None, None, None, "🌸"]


def _single_byte_token(enc: Any, vocab: Vocab, b: int) -> int:
    for cand in range(0, 1000):
        if vocab.token_bytes(cand) == bytes([b]):
            return cand
    raise AssertionError(f"no single-byte token for {b}")


def test_truncated_utf8_at_message_end(enc: Any, vocab: Vocab) -> None:
    toks = [
        CHANNEL,
        *t(enc, "final"),
        MESSAGE,
        *t(enc, "ok"),
        _single_byte_token(enc, vocab, 0xF0),
        END,
    ]
    ours, _ = check_against_oracle(enc, vocab, toks)
    assert ours.messages[0]["content"][0]["text"] == "ok\ufffd"


def test_stop_token_in_first_header_keeps_words(enc: Any, vocab: Vocab) -> None:
    toks = [CHANNEL, *t(enc, "final hello world"), RETURN]
    ours, oracle = check_against_oracle(enc, vocab, toks)
    assert oracle.error_index is None
    assert ours.messages[0]["content"][0]["text"] == "hello world"


def test_strict_raises_where_openai_harmony_does(enc: Any, vocab: Vocab) -> None:
    toks = [*msg(enc, "final", "a"), RETURN]
    p = HarmonyParser(vocab, strict=True)
    with pytest.raises(HarmonyError) as info:
        p.process_many(toks)
    assert info.value.token_index == len(toks) - 1
    assert info.value.kind == "unexpected_token"
    assert isinstance(info.value, ValueError)
    assert run_oracle(enc, toks, strict=True).error_index == len(toks) - 1
    # The failed token was not consumed; the parser goes on.
    assert p.tokens_processed == len(toks) - 1
    p.process_many(again(enc) + msg(enc, "final", "b"))
    assert [m.content for m in p.messages] == ["a", "b"]


def test_lenient_matches_strict_on_clean_streams(enc: Any, vocab: Vocab) -> None:
    toks = msg(enc, "analysis", "x") + again(enc) + msg(enc, "final", "y", RETURN)
    a = run_ours(vocab, toks, strict=True)
    b = run_ours(vocab, toks, strict=False)
    assert a.comparable() == b.comparable()
    assert b.recoveries == []


def test_messages_seen_before_a_stray_return_are_updated(enc: Any, vocab: Vocab) -> None:
    p = HarmonyParser(vocab)
    p.process_many(msg(enc, "final", "Answer."))
    assert [m.end for m in p.messages] == ["end"]
    p.process(RETURN)
    assert [m.end for m in p.messages] == ["return"]
    assert p.messages[0].content == "Answer."
