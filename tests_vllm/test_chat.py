"""/v1/chat/completions of vLLM 0.33.0 with harmony_stream's plugin off and on.

With the plugin on, vLLM's `HarmonyParser` runs on harmony-stream's Rust parser.

Clean corpus: the plugin changes nothing a client sees. Streamed: the chunk
sequence (role, every content / reasoning / tool_calls delta, finish_reason,
usage) is identical, ids and timestamps replaced by placeholders (tool call ids
are random), at several engine step sizes. Non-streamed: the whole response is
identical, likewise normalized.

Quirk streams (docs/architecture.md, Lenient parsing), plugin on:
* the request never fails: HTTP 200, no exception escapes vLLM's app, a stream
  ends with `data: [DONE]` and carries no error chunk;
* no text is lost. The rule: take the model's output tokens; every message
  content is the run of tokens after a `<|message|>` token up to the next
  special token or the end of the output (parser-independent, so it applies to
  malformed headers too). Each non-empty decoded content C must be found in what
  the client gets: C is a substring of the returned `content` or of the
  returned `reasoning`, or C with all whitespace removed is a substring of some
  tool call's `arguments` with all whitespace removed, or C and some tool call's
  `arguments` parse as equal JSON (vLLM re-serializes JSON arguments with
  `json.dumps`: other spacing, non-ASCII escaped). Streamed, the fields are the
  concatenated deltas.
* no Harmony markup leaks: no special token's text (`<|start|>`, `<|channel|>`,
  …) appears in `content`, `reasoning` or any tool call's name or arguments.
The same checks run with the plugin off; where vLLM 0.33.0 breaks a rule, the
test asserts that it does (the bug named in the case), so the list goes stale
loudly if vLLM changes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import corpus
import harness
import pytest
from corpus import CLEAN, QUIRKS
from harness import ChatOutput, Result

STEPS = (1, 3, 16)
STREAM_FIELDS = {"stream_options": {"include_usage": True}}
SPECIALS = tuple(sorted(corpus.ENCODING.special_tokens_set))
_WS = re.compile(r"\s+")

# Where vLLM 0.33.0 itself (plugin off) breaks a quirk rule.
VLLM_LOSES_TEXT = {
    "quirk_malformed_channel": "a `commentary?` message is dropped (its segment is IGNORE)",
    "quirk_double_start": "`<|start|><|start|>` loses the answer",
    "quirk_missing_start": "a message without `<|start|>` is lost",
}
VLLM_LEAKS_MARKUP = {
    "quirk_cut_in_header": "a stream cut inside a header returns the raw header as content",
}


def ids(entries: tuple[corpus.Entry, ...]) -> list[str]:
    return [e.name for e in entries]


def chat(entry: corpus.Entry, *, plugin_on: bool, stream: bool, step: int = 1) -> Result:
    with harness.plugin(plugin_on):
        r = harness.chat(
            entry, stream=stream, step=step, extra_request_fields=STREAM_FIELDS if stream else None
        )
    assert len(r.calls) == 1
    return r


def assert_ok(r: Result) -> None:
    assert r.status_code == 200, r.body[:500]
    assert r.app_error is None, r.app_error
    if r.stream:
        assert r.done_marker, "the stream did not end with data: [DONE]"
        errors = [ev for ev in r.events if "error" in ev]
        assert not errors, errors


# --- clean corpus: plugin off == plugin on ------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("entry", CLEAN, ids=ids(CLEAN))
def test_stream_identical(entry: corpus.Entry, step: int) -> None:
    off = chat(entry, plugin_on=False, stream=True, step=step)
    on = chat(entry, plugin_on=True, stream=True, step=step)
    assert_ok(off)
    assert_ok(on)
    # the client's view first (a readable diff), then every chunk
    assert ChatOutput.from_result(on) == ChatOutput.from_result(off)
    assert harness.normalize(on.events) == harness.normalize(off.events)


@pytest.mark.parametrize("entry", CLEAN, ids=ids(CLEAN))
def test_non_stream_identical(entry: corpus.Entry) -> None:
    off = chat(entry, plugin_on=False, stream=False)
    on = chat(entry, plugin_on=True, stream=False)
    assert_ok(off)
    assert_ok(on)
    assert ChatOutput.from_result(on) == ChatOutput.from_result(off)
    assert harness.normalize(on.json) == harness.normalize(off.json)


# --- quirks: never fails, no text lost, no markup leaked ------------------------------


def lost_texts(entry: corpus.Entry, out: ChatOutput) -> list[str]:
    """Contents of the model's messages that the client cannot find (rule above)."""
    texts = [t for t in (out.content, out.reasoning) if t]
    args = [_WS.sub("", a) for _name, a in out.tool_calls]
    lost = []
    for _header, content in corpus.message_contents(entry.turns[0].tokens):
        if not content:
            continue
        if any(content in t for t in texts):
            continue
        if any(_WS.sub("", content) in a for a in args):
            continue
        if any(same_json(content, a) for _name, a in out.tool_calls):
            continue
        lost.append(content)
    return lost


def same_json(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def leaked_markup(out: ChatOutput) -> list[str]:
    fields = [out.content or "", out.reasoning or ""]
    fields += [f"{name or ''} {args}" for name, args in out.tool_calls]
    return [s for s in SPECIALS for f in fields if s in f]


def quirk_runs() -> list[tuple[corpus.Entry, bool, str]]:
    """(entry, plugin_on, test id): every quirk, with the plugin off and on."""
    return [(e, on, f"{e.name}-{'on' if on else 'off'}") for e in QUIRKS for on in (False, True)]


def quirk_cases(known: dict[str, str]) -> list[Any]:
    """(entry, plugin_on, vLLM's bug or None): with the plugin off, a case in
    `known` must break the rule; every other case must keep it."""
    cases = []
    for entry, on, name in quirk_runs():
        bug = None if on else known.get(entry.name)
        cases.append(pytest.param(entry, on, bug, id=name + ("-vllm-bug" if bug else "")))
    return cases


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("entry", "plugin_on"), [pytest.param(e, on, id=name) for e, on, name in quirk_runs()]
)
def test_quirk_request_never_fails(entry: corpus.Entry, plugin_on: bool, stream: bool) -> None:
    """No quirk fails a chat request, plugin off or on (so there is no known vLLM
    bug to name here, unlike the tests below)."""
    for step in (1, 3) if stream else (1,):
        assert_ok(chat(entry, plugin_on=plugin_on, stream=stream, step=step))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(("entry", "plugin_on", "bug"), quirk_cases(VLLM_LOSES_TEXT))
def test_quirk_no_text_lost(
    entry: corpus.Entry, plugin_on: bool, bug: str | None, stream: bool
) -> None:
    for step in (1, 3) if stream else (1,):
        out = ChatOutput.from_result(chat(entry, plugin_on=plugin_on, stream=stream, step=step))
        if bug:
            assert lost_texts(entry, out), f"vLLM 0.33.0 no longer shows: {bug}"
        else:
            assert not lost_texts(entry, out), f"lost: {lost_texts(entry, out)}; got {out}"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(("entry", "plugin_on", "bug"), quirk_cases(VLLM_LEAKS_MARKUP))
def test_quirk_no_markup_leaked(
    entry: corpus.Entry, plugin_on: bool, bug: str | None, stream: bool
) -> None:
    out = ChatOutput.from_result(chat(entry, plugin_on=plugin_on, stream=stream, step=1))
    if bug:
        assert leaked_markup(out), f"vLLM 0.33.0 no longer shows: {bug}"
    else:
        assert not leaked_markup(out), out


def test_rules_catch_loss_and_leaks() -> None:
    entry = corpus.BY_NAME["quirk_malformed_channel"]
    contents = [c for _h, c in corpus.message_contents(entry.turns[0].tokens) if c]
    whole = ChatOutput(" ".join(contents), None, [], "stop")
    assert not lost_texts(entry, whole)
    assert lost_texts(entry, ChatOutput(contents[0], None, [], "stop")) == contents[1:]
    assert leaked_markup(ChatOutput("a<|channel|>fin", None, [], "length")) == ["<|channel|>"]
    call = corpus.BY_NAME["quirk_constrain_glued"]
    (args,) = [c for _h, c in corpus.message_contents(call.turns[0].tokens)]
    escaped = json.dumps(json.loads(args))
    assert not lost_texts(call, ChatOutput(None, None, [("get_weather", escaped)], "tool_calls"))
    assert lost_texts(call, ChatOutput(None, None, [("get_weather", "{}")], "tool_calls"))
