"""A Hypothesis state machine over the Python surface of ``ResponseStream`` (issue 7).

One stream per run, driven through ``start``, ``feed`` (event objects, one id at a
time, ``feed_sse``, ``feed_batch``), ``tool_output`` (objects and SSE) and ``finish``
(objects and SSE) in any order, with well-formed Harmony messages, token soup,
undefined ids, wrong types and bad logprobs mixed in. Every event that comes back,
as an object or as SSE bytes, is collected in one list.

Invariants:

* a refused call raises a typed exception (``ResponseStateError``,
  ``InvalidTokenError``, ``InvalidRequestError``, or ``TypeError`` for wrong types)
  and changes nothing: same ``finished``, ``awaiting_tool_output`` and response,
  and the next event's ``sequence_number`` follows the last one;
* a call is refused exactly when the stream's state says so (the model below);
* after ``finish`` every call raises ``ResponseStateError``; arguments are read
  first, so wrong *types* still raise ``TypeError`` and ids outside 32 bits
  (negative, >= 2**32) ``InvalidTokenError``;
* the events collected so far are numbered 0, 1, 2, … without a gap, and once the
  stream is finished they pass ``validate_stream`` (the whole contract: lifecycles,
  texts, final response, openai-python schema) and ``usage.output_tokens`` counts
  exactly the accepted tokens.

``HS_FUZZ_EXAMPLES=N`` raises the number of runs.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from openai_harmony import HarmonyEncodingName, load_harmony_encoding
from stream_checks import validate_stream

from harmony_stream import (
    InvalidRequestError,
    InvalidTokenError,
    ResponseEvent,
    ResponseStateError,
    ResponseStream,
    Vocab,
    feed_batch,
)
from harmony_stream._types import FinishReason

RETURN, CONSTRAIN, CHANNEL, START, END, MESSAGE, CALL = (
    200002,
    200003,
    200005,
    200006,
    200007,
    200008,
    200012,
)
SPECIALS = [RETURN, CONSTRAIN, CHANNEL, START, END, MESSAGE, CALL, 199999, 200000, 201088]
N_TOKENS = 201_089  # ids 0..=201088 are defined in o200k_harmony

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "get_weather", "parameters": {}},
    {"type": "mcp", "server_label": "github", "server_url": "http://127.0.0.1:8765/mcp"},
    {"type": "web_search_preview"},
    {"type": "code_interpreter", "container": {"type": "auto"}},
]

# Message headers (after `<|start|>assistant`) for every item kind, quirks included.
HEADERS = [
    "<|channel|>analysis",
    "<|channel|>final",
    "<|channel|>commentary",
    "<|channel|>commentary to=functions.get_weather <|constrain|>json",
    "<|channel|>commentary to=github.search_issues",
    "<|channel|>analysis to=python",
    "<|channel|>analysis to=browser.search",
    "<|channel|>analysis to=browser.open",
    " to=functions.get_weather<|channel|>commentary",
    "<|channel|>commentary?",
    "<|channel|>final <|constrain|>json",
    "<|channel|>commentary to=mcp.fetch",
]
BODIES = ["", "Hello", '{"query": "rust"}', '{"url": "https://example.com"}', 'é🌸 "q"\n']
STOPS = [END, CALL, RETURN]


@functools.cache
def _vocab() -> Vocab:
    return Vocab.load()


@functools.cache
def _enc() -> Any:
    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


def _encode(text: str) -> list[int]:
    return list(_enc().encode(text, allowed_special="all"))


def parse_sse(data: bytes) -> list[dict[str, Any]]:
    """SSE bytes → event dicts; checks the framing (`event:` matches `type`)."""
    out: list[dict[str, Any]] = []
    if not data:
        return out
    text = data.decode("utf-8")
    assert text.endswith("\n\n"), text[-40:]
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 2, f"an SSE block is two lines: {block[:200]!r}"
        assert lines[0].startswith("event: "), block[:200]
        assert lines[1].startswith("data: "), block[:200]
        ev = json.loads(lines[1].removeprefix("data: "))
        assert ev["type"] == lines[0].removeprefix("event: ")
        out.append(ev)
    return out


def dumps(events: list[ResponseEvent]) -> list[dict[str, Any]]:
    return [e.model_dump() for e in events]


@st.composite
def messages(draw: st.DrawFn) -> list[int]:
    """One Harmony message as the model writes it, sometimes cut short."""
    toks: list[int] = []
    if draw(st.booleans()):
        toks += [START, *_encode("assistant")]
    toks += _encode(draw(st.sampled_from(HEADERS)))
    toks.append(MESSAGE)
    body = draw(st.one_of(st.sampled_from(BODIES), st.text(max_size=12)))
    toks += _encode(body)
    toks.append(draw(st.sampled_from(STOPS)))
    if draw(st.integers(0, 9)) == 0:
        toks = toks[: draw(st.integers(0, len(toks)))]
    return toks


# Valid ids: mostly structure, some arbitrary ordinary and special/reserved tokens.
token_soup = st.lists(
    st.one_of(
        st.sampled_from(SPECIALS),
        st.integers(0, 199_997),
        st.sampled_from(_encode("analysis final commentary to=functions.x é🌸")),
    ),
    max_size=12,
)
steps = st.one_of(messages(), token_soup)
apis = st.sampled_from(["objects", "one_by_one", "sse", "batch"])
bad_ids = st.sampled_from([-1, -(2**63), 2**31, 2**32, 2**64, 2**100, N_TOKENS, 10**6])
wrong_types: Any = st.sampled_from(
    ["abc", b"\x01", None, 1.5, [1.5], [None], [True], True, {"a": 1}]
)
reasons: st.SearchStrategy[FinishReason] = st.sampled_from(["stop", "length", "abort", "error"])
texts = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["", "x" * 5000, '"\n\\']))


class StreamMachine(RuleBasedStateMachine):
    """The model: finished, started, and whether a function call waits for a result."""

    def __init__(self) -> None:
        super().__init__()
        self.stream = ResponseStream(_vocab(), tools=TOOLS, id_seed=7, created_at=0)
        self.events: list[dict[str, Any]] = []
        self.started = False
        self.finished = False
        self.function_waiting = False
        self.accepted = 0
        self.validated = False
        self.logprobs = False

    @initialize(
        logprobs=st.booleans(),
        tools=st.sampled_from([TOOLS, TOOLS[1:2], []]),
        mcp_list=st.booleans(),
    )
    def configure(self, logprobs: bool, tools: list[dict[str, Any]], mcp_list: bool) -> None:
        lists = {"github": [{"name": "search_issues", "input_schema": {}}]}
        self.logprobs = logprobs
        self.stream = ResponseStream(
            _vocab(),
            tools=tools,
            id_seed=7,
            created_at=0,
            logprobs=logprobs,
            input_tokens=11,
            mcp_tool_lists=lists if mcp_list and tools else None,
        )

    # -- helpers ----------------------------------------------------------------------
    def snapshot(self) -> tuple[Any, ...]:
        s = self.stream
        return (s.finished, s.awaiting_tool_output, s.response_json(), len(self.events))

    def collect(self, new: list[dict[str, Any]]) -> None:
        for i, ev in enumerate(new):
            assert ev["sequence_number"] == len(self.events) + i, "sequence number gap"
        for ev in new:
            if ev["type"] == "response.output_item.added":
                self.function_waiting = False
            elif ev["type"] == "response.output_item.done":
                item = ev["item"]
                self.function_waiting = (
                    item["type"] == "function_call" and item["status"] == "completed"
                )
        self.events += new
        if new:
            self.started = True

    def refused(self, exc: Any, call: Any, *args: Any, **kw: Any) -> None:
        """The call raises `exc` (a typed error) and changes nothing."""
        before = self.snapshot()
        with pytest.raises(exc):
            call(*args, **kw)
        assert self.snapshot() == before, "a refused call changed the stream"

    def feed_with(self, api: str, toks: list[int], logprobs: list[float] | None = None) -> None:
        s = self.stream
        if api == "objects" or logprobs is not None:
            new = dumps(s.feed(toks, logprobs))
        elif api == "one_by_one":
            new = []
            for t in toks:
                new += dumps(s.feed(t))
            if not toks:
                new = dumps(s.feed([]))
        elif api == "sse":
            new = parse_sse(s.feed_sse(toks))
        else:
            (out,) = feed_batch([s], [toks])
            new = parse_sse(out)
        self.collect(new)
        self.accepted += len(toks)

    # -- rules --------------------------------------------------------------------------
    @rule(toks=steps, api=apis, with_logprobs=st.booleans())
    def feed(self, toks: list[int], api: str, with_logprobs: bool) -> None:
        logprobs = [-0.5] * len(toks) if with_logprobs else None
        if self.finished:
            self.refused(ResponseStateError, self.stream.feed, toks, logprobs)
            self.refused(ResponseStateError, self.stream.feed_sse, toks)
            self.refused(ResponseStateError, feed_batch, [self.stream], [toks])
            return
        self.feed_with(api, toks, logprobs)

    @rule(prefix=token_soup, bad=bad_ids, api=apis)
    def feed_undefined_id(self, prefix: list[int], bad: int, api: str) -> None:
        toks = [*prefix, bad]
        exc: Any = InvalidTokenError
        if self.finished:
            # Ids that do not fit in 32 bits are refused while being read, before the
            # state is looked at; larger-but-32-bit ids get the state error.
            wide = bad < 0 or bad >= 2**32
            exc = (ResponseStateError, InvalidTokenError) if wide else ResponseStateError
        if api == "batch":
            self.refused(exc, feed_batch, [self.stream], [toks])
        elif api == "sse":
            self.refused(exc, self.stream.feed_sse, toks)
        else:
            self.refused(exc, self.stream.feed, toks)
        if not self.finished:
            with pytest.raises(InvalidTokenError) as info:
                self.stream.feed(toks)
            assert info.value.token == bad
            assert info.value.kind == "invalid_token"

    @rule(bad=wrong_types)
    def feed_wrong_type(self, bad: Any) -> None:
        self.refused(TypeError, self.stream.feed, bad)
        self.refused(TypeError, self.stream.feed_sse, bad)

    @rule(toks=token_soup, how=st.sampled_from(["short", "long", "nan", "inf"]))
    def feed_bad_logprobs(self, toks: list[int], how: str) -> None:
        lps: list[float] = [-1.0] * len(toks)
        if how == "short":
            lps = lps[:-1] if lps else [-1.0]
        elif how == "long":
            lps.append(-1.0)
        elif toks:
            lps[-1] = math.nan if how == "nan" else math.inf
        else:
            lps = [math.nan]
        exc: type[Exception] = ResponseStateError if self.finished else InvalidRequestError
        self.refused(exc, self.stream.feed, toks, lps)

    @rule(output=texts, error=st.one_of(st.none(), texts), sse=st.booleans())
    def tool_output(self, output: str | None, error: str | None, sse: bool) -> None:
        s = self.stream
        call = s.tool_output_sse if sse else s.tool_output
        if self.finished or not (s.awaiting_tool_output or self.function_waiting):
            self.refused(ResponseStateError, call, output, error)
            return
        out = call(output, error)
        self.collect(parse_sse(out) if isinstance(out, bytes) else dumps(out))
        self.function_waiting = False
        assert not s.awaiting_tool_output

    @rule(reason=reasons, message=st.one_of(st.none(), st.text(max_size=20)), sse=st.booleans())
    def finish(self, reason: FinishReason, message: str | None, sse: bool) -> None:
        s = self.stream
        call = s.finish_sse if sse else s.finish
        if self.finished:
            self.refused(ResponseStateError, call, reason, message)
            return
        out = call(reason, message)
        new = parse_sse(out) if isinstance(out, bytes) else dumps(out)
        self.collect(new)
        self.finished = True
        terminal = {
            "stop": "response.completed",
            "length": "response.incomplete",
        }.get(reason, "response.failed")
        assert new[-1]["type"] == terminal

    @rule(sse=st.booleans())
    def start(self, sse: bool) -> None:
        s = self.stream
        call = s.start_sse if sse else s.start
        if self.finished or self.started:
            self.refused(ResponseStateError, call)
            return
        out = call()
        self.collect(parse_sse(out) if isinstance(out, bytes) else dumps(out))
        assert self.events[0]["type"] == "response.created"

    @precondition(lambda self: not self.finished)
    @rule()
    def unknown_finish_reason(self) -> None:
        self.refused(InvalidRequestError, self.stream.finish, "maybe")

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def model_agrees(self) -> None:
        assert self.stream.finished == self.finished
        assert [e["sequence_number"] for e in self.events] == list(range(len(self.events)))
        if not self.finished:
            resp = self.stream.response()
            assert resp["status"] == "in_progress"
            assert resp["output"] == []

    @invariant()
    def finished_stream_validates(self) -> None:
        if self.finished and not self.validated:
            final = validate_stream(self.events)
            assert final == self.stream.response()
            assert final["usage"]["output_tokens"] == self.accepted
            assert final["usage"]["input_tokens"] == 11
            self.validated = True

    def teardown(self) -> None:
        # Every run ends with a finished, valid stream.
        if not self.finished:
            self.collect(dumps(self.stream.finish("stop")))
            self.finished = True
            self.finished_stream_validates()


StreamMachine.TestCase.settings = settings(
    max_examples=max(150, int(os.environ.get("HS_FUZZ_EXAMPLES", "0"))),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestResponseStreamStateMachine = StreamMachine.TestCase
