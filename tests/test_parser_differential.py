"""Differential tests: our parser against openai-harmony 0.0.8's StreamableParser.

Rules (see _harness.check_against_oracle): strict mode is identical to
openai-harmony strict token by token; lenient mode is identical to
openai-harmony non-strict wherever that succeeds (except the documented fixes)
and never fails on valid ids.
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai_harmony import Author, Message, Role

from harmony_stream import Vocab

from _harness import check_against_oracle, run_oracle, run_ours

END, CALL, RETURN = 200007, 200012, 200002
START, CHANNEL, MESSAGE, CONSTRAIN = 200006, 200005, 200008, 200003


def _msg(role: Role, text: str, **kw: str) -> Message:
    m = Message.from_role_and_content(role, text)
    if "channel" in kw:
        m = m.with_channel(kw["channel"])
    if "recipient" in kw:
        m = m.with_recipient(kw["recipient"])
    if "content_type" in kw:
        m = m.with_content_type(kw["content_type"])
    return m


def _tool(name: str, text: str) -> Message:
    return (
        Message.from_author_and_content(Author.new(Role.TOOL, name), text)
        .with_channel("commentary")
        .with_recipient("assistant")
    )


A = Role.ASSISTANT
RENDERED: dict[str, list[Message]] = {
    "analysis_final": [
        _msg(A, "Let me think about the user's question.\n\nIt is simple.", channel="analysis"),
        _msg(A, "The answer is **42**.", channel="final"),
    ],
    "preamble": [_msg(A, "I'll look that up for you.", channel="commentary")],
    "function_json": [
        _msg(
            A,
            '{"location": "Tokyo, Japan", "unit": "celsius"}',
            channel="commentary",
            recipient="functions.get_weather",
            content_type="<|constrain|>json",
        )
    ],
    "function_plain_type": [
        _msg(A, "{}", channel="commentary", recipient="functions.f", content_type="json")
    ],
    "function_no_type": [_msg(A, "{}", channel="commentary", recipient="functions.f")],
    "analysis_recipient": [_msg(A, '{"q": 1}', channel="analysis", recipient="functions.lookup")],
    "python": [_msg(A, "import math\nprint(math.pi)", channel="analysis", recipient="python")],
    "browser": [
        _msg(A, '{"query": "harmony format"}', channel="analysis", recipient="browser.search"),
        _msg(A, '{"id": 3, "cursor": 1}', channel="analysis", recipient="browser.open"),
        _msg(A, '{"pattern": "gpt"}', channel="analysis", recipient="browser.find"),
    ],
    "mcp": [
        _msg(
            A,
            '{"repo": "openai/harmony"}',
            channel="commentary",
            recipient="github.search_issues",
            content_type="<|constrain|>json",
        )
    ],
    "no_channel": [_msg(A, "plain assistant text")],
    "tool_result": [_tool("functions.get_weather", '{"temp": 21}')],
    "user_and_system": [_msg(Role.USER, "hi there"), _msg(Role.SYSTEM, "be brief")],
    "developer": [_msg(Role.DEVELOPER, "# Instructions\n\nAnswer in French.")],
    "empty_content": [_msg(A, "", channel="final")],
    "unicode": [
        _msg(A, "naïve café — 東京 🌸 👩‍👩‍👧 e\u0301 \u200d", channel="analysis"),
        _msg(A, "Ελληνικά, русский, العربية, हिन्दी 🇯🇵", channel="final"),
    ],
    "special_text_in_content": [_msg(A, "literal <|end|> and <|start|> text", channel="final")],
}


def render(enc: Any, messages: list[Message], last_stop: int | None = None) -> list[int]:
    toks: list[int] = []
    for m in messages:
        toks += enc.render(m)
    if last_stop is not None:
        toks[-1] = last_stop
    return list(toks)


@pytest.mark.parametrize("name", sorted(RENDERED))
@pytest.mark.parametrize("stop", [None, RETURN])
def test_rendered_conversations(enc: Any, vocab: Vocab, name: str, stop: int | None) -> None:
    toks = render(enc, RENDERED[name], stop)
    # As a completion after `<|start|>assistant` (role given, starts in the header) ...
    if RENDERED[name][0].author.role == A:
        ours, oracle = check_against_oracle(enc, vocab, toks[2:], role="assistant")
        assert oracle.error_index is None
        assert len(ours.messages) == len(RENDERED[name])
    # ... and as a whole stream that starts with `<|start|>` (no role given).
    ours, oracle = check_against_oracle(enc, vocab, toks, role=None)
    assert oracle.error_index is None
    assert [m["content"][0]["text"] for m in ours.messages] == [
        m.content[0].text for m in RENDERED[name]
    ]


def test_rendered_conversation_in_one_stream(enc: Any, vocab: Vocab) -> None:
    toks: list[int] = []
    for name in sorted(RENDERED):
        toks += render(enc, RENDERED[name])
    ours, _ = check_against_oracle(enc, vocab, toks, role=None)
    assert len(ours.messages) == sum(len(v) for v in RENDERED.values())


@functools.cache
def _bytes_to_token(enc_id: int) -> dict[bytes, int]:
    del enc_id
    import base64
    import os
    from pathlib import Path

    from conftest import DATA  # noqa: F401  (keeps the import graph explicit)

    path = Path(os.environ["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken"
    table: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        b64, rank = line.split()
        table[base64.b64decode(b64)] = int(rank)
    return table


def retokenize(text: bytes, cuts: list[int]) -> list[int]:
    """Some token sequence whose bytes spell `text`: chunks at `cuts` where the chunk is a
    token, single-byte tokens otherwise."""
    table = _bytes_to_token(0)
    out: list[int] = []
    bounds = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    for a, b in itertools.pairwise(bounds):
        chunk = text[a:b]
        if chunk in table:
            out.append(table[chunk])
        else:
            out.extend(table[bytes([x])] for x in chunk)
    return out


unicode_text = st.lists(
    st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
        st.sampled_from(
            ["👩‍👩‍👧", "🇯🇵", "e\u0301", "東京", "\u200d", "🌸", "\n", " ", "ß", "word"]
        ),
    ),
    max_size=25,
).map("".join)
headers = st.sampled_from(
    [
        {"channel": "analysis"},
        {"channel": "final"},
        {"channel": "commentary"},
        {
            "channel": "commentary",
            "recipient": "functions.get_weather",
            "content_type": "<|constrain|>json",
        },
        {"channel": "analysis", "recipient": "python"},
        {"channel": "analysis", "recipient": "browser.search"},
        {"channel": "commentary", "recipient": "github.search_issues"},
        {},
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(
        st.tuples(
            headers,
            unicode_text,
            st.lists(st.integers(0, 200), max_size=12),
            st.sampled_from([END, CALL, RETURN]),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_random_unicode_and_retokenization(
    enc: Any, vocab: Vocab, parts: list[tuple[dict[str, str], str, list[int], int]]
) -> None:
    toks: list[int] = []
    texts: list[str] = []
    for hdr, text, cuts, stop in parts:
        rendered = enc.render(_msg(A, text, **hdr))
        header = rendered[: rendered.index(MESSAGE) + 1]
        toks += header + retokenize(text.encode(), cuts) + [stop]
        texts.append(text)
    ours, oracle = check_against_oracle(enc, vocab, toks[2:])
    assert oracle.error_index is None
    assert [m["content"][0]["text"] for m in ours.messages] == texts
    # Deltas are valid UTF-8 text (str) and add up to the contents.
    assert "".join(d for d in ours.deltas if d) == "".join(texts)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.lists(st.binary(min_size=1, max_size=3), max_size=12), stop=st.sampled_from([END, None])
)
def test_random_bytes_replacement_characters(
    enc: Any, vocab: Vocab, raw: list[bytes], stop: int | None
) -> None:
    """Invalid UTF-8 becomes U+FFFD exactly where openai-harmony puts it, delta by delta."""
    table = _bytes_to_token(0)
    toks = [CHANNEL, *enc.encode("final", allowed_special="all"), MESSAGE]
    for chunk in raw:
        toks.extend(table[bytes([b])] for b in chunk)
    if stop is not None:
        toks.append(stop)
    check_against_oracle(enc, vocab, toks)


# Pieces of Harmony that random streams are built from (so they are often near-valid).
def _pieces(enc: Any) -> list[list[int]]:
    e = functools.partial(enc.encode, allowed_special="all")
    return [
        [START],
        [CHANNEL],
        [MESSAGE],
        [END],
        [CALL],
        [RETURN],
        [CONSTRAIN],
        [199999],
        [200014],
        e("assistant"),
        e("user"),
        e("tool"),
        e("functions.x"),
        e("bogus"),
        e("analysis"),
        e("final"),
        e("commentary"),
        e("commentary?"),
        e(" to=functions.get_weather"),
        e(" to=python"),
        e("to=browser.search"),
        e(" "),
        e("json"),
        e(" json"),
        e("Hello world"),
        e("\n\n"),
        e("東京🌸"),
        [_bytes_to_token(0)[b"\xf0"]],
        [_bytes_to_token(0)[b"\x9f"]],
        [_bytes_to_token(0)[b"\xff"]],
    ]


@settings(
    max_examples=int(os.environ.get("HS_FUZZ_EXAMPLES", "1500")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data(), role=st.sampled_from(["assistant", None]))
def test_random_harmony_like_streams(enc: Any, vocab: Vocab, data: Any, role: str | None) -> None:
    pieces = _pieces(enc)
    choice = data.draw(st.lists(st.integers(0, len(pieces) - 1), max_size=25))
    toks = [t for i in choice for t in pieces[i]]
    check_against_oracle(enc, vocab, toks, role=role)


def test_oracle_and_ours_disagree_is_detected(enc: Any, vocab: Vocab) -> None:
    """The harness can fail: a different stream gives a different run."""
    a = run_ours(
        vocab, [CHANNEL, *enc.encode("final"), MESSAGE, *enc.encode("a"), END], strict=True
    )
    b = run_oracle(
        enc, [CHANNEL, *enc.encode("final"), MESSAGE, *enc.encode("b"), END], strict=True
    )
    assert a.comparable() != b.comparable()
