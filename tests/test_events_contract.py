"""The Responses event contract (docs/architecture.md, Event contract), as rules
checked on real token streams.

Token streams are rendered from Harmony messages by openai-harmony (the renderer),
or read from ``tests/data/transcripts``. Expectations are rules derived from the
messages (routing, texts, orders, counts), never recorded output. Every stream goes
through ``stream_checks.validate_stream``; the first tests prove that validator fails
on broken streams.
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from openai_harmony import Message, Role, StreamableParser
from stream_checks import validate_stream

from harmony_stream import (
    HarmonyParser,
    InvalidRequestError,
    InvalidTokenError,
    ResponseEvent,
    ResponseStateError,
    ResponseStream,
    Vocab,
)
from harmony_stream.transcript import ModelTurn, ToolOutput, Transcript, load_transcript

START, MESSAGE, END, RETURN, CALL = 200006, 200008, 200007, 200002, 200012
TRANSCRIPTS = sorted((Path(__file__).parent / "data" / "transcripts").glob("*.json"))
CREATED_AT = 1_750_000_000

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
    {"type": "mcp", "server_label": "github", "server_url": "http://127.0.0.1:8765/mcp"},
    {"type": "web_search_preview"},
    {"type": "code_interpreter", "container": {"type": "auto"}},
]
MCP_LISTS = {
    "github": [
        {"name": "search_issues", "input_schema": {"type": "object"}},
        {"name": "get_latest_release", "input_schema": {"type": "object"}, "description": "x"},
    ]
}

# docs/architecture.md, Event contract: the events of one item, in order; "X*" is
# any number (0 included) of X.
ORDER: dict[str, list[str]] = {
    "reasoning": [
        "output_item.added",
        "content_part.added",
        "reasoning_text.delta*",
        "reasoning_text.done",
        "content_part.done",
        "output_item.done",
    ],
    "message": [
        "output_item.added",
        "content_part.added",
        "output_text.delta*",
        "output_text.done",
        "content_part.done",
        "output_item.done",
    ],
    "function_call": [
        "output_item.added",
        "function_call_arguments.delta*",
        "function_call_arguments.done",
        "output_item.done",
    ],
    "mcp_call": [
        "output_item.added",
        "mcp_call.in_progress",
        "mcp_call_arguments.delta*",
        "mcp_call_arguments.done",
        "mcp_call.completed",
        "output_item.done",
    ],
    "mcp_call_failed": [
        "output_item.added",
        "mcp_call.in_progress",
        "mcp_call_arguments.delta*",
        "mcp_call_arguments.done",
        "mcp_call.failed",
        "output_item.done",
    ],
    "code_interpreter_call": [
        "output_item.added",
        "code_interpreter_call.in_progress",
        "code_interpreter_call_code.delta*",
        "code_interpreter_call_code.done",
        "code_interpreter_call.interpreting",
        "code_interpreter_call.completed",
        "output_item.done",
    ],
    "web_search_call": [
        "output_item.added",
        "web_search_call.in_progress",
        "web_search_call.searching",
        "web_search_call.completed",
        "output_item.done",
    ],
    "mcp_list_tools": [
        "output_item.added",
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "output_item.done",
    ],
}


# ---------------------------------------------------------------------------------------
# Building token streams from Harmony messages
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    """One assistant message to render."""

    content: str
    channel: str
    recipient: str | None = None
    json: bool = False  # <|constrain|>json

    def render(self, enc: Any) -> list[int]:
        m = Message.from_role_and_content(Role.ASSISTANT, self.content).with_channel(self.channel)
        if self.recipient:
            m = m.with_recipient(self.recipient)
        if self.json:
            m = m.with_content_type("<|constrain|>json")
        return list(enc.render(m))


@dataclass(frozen=True)
class Span:
    msg: Msg
    body: int  # index (in the turn) of the first content token
    stop: int  # index of the stop token


@dataclass(frozen=True)
class Turn:
    tokens: list[int]
    spans: list[Span]


def turn(enc: Any, *msgs: Msg, stop: int | None = None) -> Turn:
    """The model's tokens for one turn: the messages rendered back to back, without
    the ``<|start|>assistant`` the prompt already ends with. ``stop`` replaces the
    last message's stop token (the renderer ends a call with <|call|>, others with
    <|end|>)."""
    tokens: list[int] = []
    spans: list[Span] = []
    for i, m in enumerate(msgs):
        t = m.render(enc)
        if i == 0:
            assert t[0] == START
            assert enc.decode(t[:2]) == "<|start|>assistant"
            t = t[2:]
        if stop is not None and i == len(msgs) - 1:
            t[-1] = stop
        base = len(tokens)
        assert t[-1] in (END, RETURN, CALL)
        spans.append(Span(m, base + t.index(MESSAGE) + 1, base + len(t) - 1))
        tokens += t
    return Turn(tokens, spans)


def token_list(t: Turn | list[int]) -> list[int]:
    return t.tokens if isinstance(t, Turn) else t


def call(enc: Any, content: str, recipient: str, channel: str = "commentary") -> Msg:
    return Msg(content, channel, recipient, json=recipient.startswith(("functions.", "github.")))


def reasoning_tokens(enc: Any, tokens: Sequence[int]) -> int:
    """The rule for usage.reasoning_tokens: tokens consumed while inside the content of
    an ``analysis`` message without recipient (the content tokens and the stop token
    that ends it), as openai-harmony's parser sees the stream."""
    p = StreamableParser(enc, Role.ASSISTANT, strict=False)
    n = 0
    for tok in tokens:
        if (
            p.state.value == "Content"
            and p.current_channel == "analysis"
            and p.current_recipient is None
        ):
            n += 1
        p.process(tok)
    return n


def oracle_messages(enc: Any, tokens: Sequence[int]) -> list[dict[str, Any]]:
    p = StreamableParser(enc, Role.ASSISTANT, strict=False)
    for tok in tokens:
        p.process(tok)
    p.process_eos()
    return [m.to_dict() for m in p.messages]


def expected_kind(channel: str | None, recipient: str | None) -> str:
    """docs/architecture.md, Routing: recipient first, then channel."""
    if recipient:
        if recipient.startswith("functions."):
            return "function_call"
        if recipient == "python":
            return "code_interpreter_call"
        if recipient in ("browser.search", "browser.open", "browser.find"):
            return "web_search_call"
        return "mcp_call"
    # No channel at all (a malformed header the lenient parser recovered): a message.
    return {"analysis": "reasoning", "commentary": "message", "final": "message", "": "message"}[
        channel or ""
    ]


def item_text(item: dict[str, Any]) -> str | None:
    kind = item["type"]
    if kind in ("reasoning", "message"):
        return "".join(p["text"] for p in item["content"])
    if kind in ("function_call", "mcp_call"):
        return str(item["arguments"])
    if kind == "code_interpreter_call":
        return str(item["code"])
    return None


# ---------------------------------------------------------------------------------------
# Driving a stream and recording what each call returned
# ---------------------------------------------------------------------------------------

ToolResult = tuple[str | None, str | None]  # (output, error)


class Run:
    """A ResponseStream plus the events each call returned (as dicts)."""

    def __init__(self, vocab: Vocab, **kwargs: Any) -> None:
        kwargs.setdefault("id_seed", 7)
        kwargs.setdefault("created_at", CREATED_AT)
        self.kwargs = kwargs
        self.stream = ResponseStream(vocab, **kwargs)
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.fed = 0

    def _rec(self, name: str, evs: list[ResponseEvent]) -> list[dict[str, Any]]:
        assert all(isinstance(e, ResponseEvent) for e in evs)
        dumped = [e.model_dump() for e in evs]
        self.calls.append((name, dumped))
        return dumped

    def start(self) -> list[dict[str, Any]]:
        return self._rec("start", self.stream.start())

    def feed(
        self, tokens: Sequence[int], logprobs: Sequence[Any] | None = None
    ) -> list[dict[str, Any]]:
        out = self._rec("feed", self.stream.feed(tokens, logprobs))
        self.fed += len(tokens)
        return out

    def feed_turn(self, tokens: Sequence[int], step: int | None) -> None:
        if step is None:
            self.feed(tokens)
        else:
            for i in range(0, len(tokens), step):
                self.feed(tokens[i : i + step])

    def tool_output(self, output: str | None = None, error: str | None = None) -> list[Any]:
        return self._rec("tool_output", self.stream.tool_output(output, error))

    def finish(self, reason: Any = "stop", message: str | None = None) -> list[dict[str, Any]]:
        return self._rec("finish", self.stream.finish(reason, message))

    def play(self, turns: Sequence[Turn | list[int] | ToolResult], step: int | None = 1) -> None:
        for t in turns:
            if isinstance(t, tuple):
                self.tool_output(*t)
            else:
                self.feed_turn(token_list(t), step)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for _, evs in self.calls for e in evs]

    def validate(self) -> dict[str, Any]:
        """The contract on the whole stream; the non-streaming result is the same."""
        final = validate_stream(self.events)
        assert self.stream.finished
        assert self.stream.response() == final
        assert json.loads(self.stream.response_json()) == final
        assert final["id"] == self.stream.response_id
        return final


def run(
    vocab: Vocab,
    turns: Sequence[Turn | list[int] | ToolResult],
    *,
    finish: str = "stop",
    step: int | None = 1,
    **kwargs: Any,
) -> tuple[Run, dict[str, Any]]:
    r = Run(vocab, **kwargs)
    r.start()
    r.play(turns, step)
    r.finish(finish)
    return r, r.validate()


def item_events(events: list[dict[str, Any]], item_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e.get("item_id") == item_id or (e.get("item") or {}).get("id") == item_id
    ]


def lifecycle(events: list[dict[str, Any]], item_id: str) -> list[str]:
    """The item's event types (without "response."), runs of deltas written "X.delta*"."""
    out: list[str] = []
    for e in item_events(events, item_id):
        t = e["type"].removeprefix("response.")
        if t.endswith(".delta"):
            t += "*"
            if out and out[-1] == t:
                continue
        out.append(t)
    return out


def expect_order(kind: str, *, deltas: bool) -> list[str]:
    return [t for t in ORDER[kind] if deltas or not t.endswith("*")]


def types(evs: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in evs]


# ---------------------------------------------------------------------------------------
# A rich reference stream: every item kind, tool turns, logprobs
# ---------------------------------------------------------------------------------------


def reference_turns(enc: Any) -> list[Turn | ToolResult]:
    return [
        turn(
            enc,
            Msg("The user wants open parser issues. Search.", "analysis"),
            Msg("Let me look that up.", "commentary"),
            call(enc, '{"query": "parser", "state": "open"}', "github.search_issues"),
        ),
        ('[{"number": 61, "title": "constrain after final"}]', None),
        turn(enc, call(enc, "print(6 * 7)", "python", "analysis")),
        ("42\n", None),
        turn(
            enc, call(enc, '{"query": "gpt-oss harmony", "topn": 3}', "browser.search", "analysis")
        ),
        ("# 【0†Harmony†github.com】", None),
        turn(enc, call(enc, '{"location": "Tokyo"}', "functions.get_weather")),
        ('{"temperature": 18}', None),
        turn(enc, Msg("", "analysis"), Msg("Issue #61: 42 🌸 and 18°C.", "final"), stop=RETURN),
    ]


def reference_run(vocab: Vocab, enc: Any) -> Run:
    r = Run(vocab, tools=TOOLS, mcp_tool_lists=MCP_LISTS, logprobs=True)
    r.start()
    for t in reference_turns(enc):
        if isinstance(t, tuple):
            r.tool_output(*t)
        else:
            for i, tok in enumerate(t.tokens):
                r.feed([tok], [(-0.25 - i / 100, [(tok, -0.25 - i / 100), (13, -3.5)])])
    r.finish()
    return r


@pytest.fixture(scope="module")
def reference(vocab: Vocab, enc: Any) -> list[dict[str, Any]]:
    r = reference_run(vocab, enc)
    r.validate()
    events: list[dict[str, Any]] = r.events
    return events


# ---------------------------------------------------------------------------------------
# 1. The validator fails on broken streams
# ---------------------------------------------------------------------------------------


def renumber(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = copy.deepcopy(events)
    for i, e in enumerate(out):
        e["sequence_number"] = i
    return out


def rejects(events: list[dict[str, Any]]) -> str | None:
    """The validator's message for a broken stream, or None if it wrongly accepts it."""
    try:
        validate_stream(events)
    except AssertionError as e:
        return str(e)
    return None


def test_reference_stream_covers_every_kind(reference: list[dict[str, Any]]) -> None:
    final = validate_stream(reference)
    kinds = [i["type"] for i in final["output"]]
    assert kinds == [
        "mcp_list_tools",
        "reasoning",
        "message",
        "mcp_call",
        "code_interpreter_call",
        "web_search_call",
        "function_call",
        "reasoning",
        "message",
    ]


def test_validator_rejects_every_dropped_event(reference: list[dict[str, Any]]) -> None:
    accepted = [
        (i, e["type"])
        for i, e in enumerate(reference)
        if rejects(renumber(reference[:i] + reference[i + 1 :])) is None
    ]
    assert accepted == []
    # Without renumbering the gap itself is named.
    msg = rejects(reference[:5] + reference[6:])
    assert msg is not None
    assert "sequence_number must be 5" in msg


def test_validator_rejects_every_swap_of_neighbours(reference: list[dict[str, Any]]) -> None:
    accepted = []
    for i in range(len(reference) - 1):
        a, b = reference[i], reference[i + 1]
        if {**a, "sequence_number": 0} == {**b, "sequence_number": 0}:
            continue  # indistinguishable events
        swapped = [*reference[:i], b, a, *reference[i + 2 :]]
        if rejects(renumber(swapped)) is None:
            accepted.append((i, a["type"], b["type"]))
    assert accepted == []


def test_validator_rejects_every_changed_delta(reference: list[dict[str, Any]]) -> None:
    deltas = [i for i, e in enumerate(reference) if e["type"].endswith(".delta")]
    assert len(deltas) > 50
    accepted = []
    for i in deltas:
        broken = copy.deepcopy(reference)
        broken[i]["delta"] += "x"
        msg = rejects(broken)
        if msg is None or "concatenated deltas" not in msg:
            accepted.append((i, reference[i]["type"], msg))
    assert accepted == []


@pytest.mark.parametrize(
    ("numbers", "message"),
    [
        (lambda n: list(range(1, n + 1)), "sequence_number must be 0"),
        (lambda n: [0, 1, 2, 2, *range(4, n)], "sequence_number must be 3"),
        (lambda n: [0, 1, 3, 2, *range(4, n)], "sequence_number must be 2"),
        (lambda n: [*range(n - 1), n], "sequence_number must be {n1}"),
    ],
    ids=["starts-at-1", "duplicate", "two-swapped", "gap-at-end"],
)
def test_validator_rejects_renumbering(
    reference: list[dict[str, Any]], numbers: Callable[[int], list[int]], message: str
) -> None:
    broken = copy.deepcopy(reference)
    for e, n in zip(broken, numbers(len(broken)), strict=True):
        e["sequence_number"] = n
    msg = rejects(broken)
    assert msg is not None
    assert message.format(n1=len(broken) - 1) in msg


Mutation = Callable[[list[Any]], None]


def _first(events: list[dict[str, Any]], etype: str, nth: int = 0) -> dict[str, Any]:
    return [e for e in events if e["type"] == etype][nth]


MUTATIONS: list[Any] = []


def mutation(name: str, message: str) -> Callable[[Mutation], Mutation]:
    """Registers a way to break the reference stream and the message expected for it."""

    def register(f: Mutation) -> Mutation:
        MUTATIONS.append(pytest.param(f, message, id=name))
        return f

    return register


@mutation("delta-item-id", "is not the open item")
def _mut_delta_item_id(ev: list[Any]) -> None:
    _first(ev, "response.output_text.delta")["item_id"] = "msg_other"


@mutation("delta-output-index", "output_index 99")
def _mut_delta_output_index(ev: list[Any]) -> None:
    _first(ev, "response.reasoning_text.delta")["output_index"] = 99


@mutation("added-output-index-gap", "output_index must be 2")
def _mut_added_output_index_gap(ev: list[Any]) -> None:
    e = _first(ev, "response.output_item.added", 2)
    e["output_index"] = 3


@mutation("done-other-id", "while")
def _mut_done_other_id(ev: list[Any]) -> None:
    _first(ev, "response.output_item.done", 1)["item"]["id"] = "rs_x"


@mutation("content-index-1", "content_index must be 0")
def _mut_content_index_1(ev: list[Any]) -> None:
    _first(ev, "response.content_part.added")["content_index"] = 1


@mutation("done-text", "concatenated deltas")
def _mut_done_text(ev: list[Any]) -> None:
    _first(ev, "response.output_text.done")["text"] += "!"


@mutation("part-text", "part text")
def _mut_part_text(ev: list[Any]) -> None:
    _first(ev, "response.content_part.done")["part"]["text"] = "other"


@mutation("done-item-content", "closed parts")
def _mut_done_item_content(ev: list[Any]) -> None:
    _first(ev, "response.output_item.done", 1)["item"]["content"][0]["text"] = "other"


@mutation("done-logprobs", "logprobs")
def _mut_done_logprobs(ev: list[Any]) -> None:
    _first(ev, "response.output_text.done")["logprobs"][0]["logprob"] = -9.0


@mutation("fc-done-name", "name")
def _mut_fc_done_name(ev: list[Any]) -> None:
    _first(ev, "response.function_call_arguments.done")["name"] = "other"


@mutation("fc-call-id", "call_id must start with 'call_'")
def _mut_fc_call_id(ev: list[Any]) -> None:
    e = _first(ev, "response.output_item.added", 6)
    assert e["item"]["type"] == "function_call"
    e["item"]["call_id"] = "fc_1"


@mutation("id-prefix", "must start with 'rs_'")
def _mut_id_prefix(ev: list[Any]) -> None:
    for e in item_events(ev, _first(ev, "response.reasoning_text.delta")["item_id"]):
        if "item" in e:
            e["item"]["id"] = "msg_renamed"
        else:
            e["item_id"] = "msg_renamed"


@mutation("mcp-status", "must have status in ['completed']")
def _mut_mcp_status(ev: list[Any]) -> None:
    [e for e in ev if e["type"] == "response.output_item.done"][3]["item"]["status"] = "failed"


@mutation("final-output-differs", "differs from its output_item.done item")
def _mut_final_output_differs(ev: list[Any]) -> None:
    ev[-1]["response"]["output"][2]["content"][0]["text"] = "other"


@mutation("final-output-missing", "item ids differ")
def _mut_final_output_missing(ev: list[Any]) -> None:
    del ev[-1]["response"]["output"][1]


@mutation("terminal-status", "response.status must be 'completed'")
def _mut_terminal_status(ev: list[Any]) -> None:
    ev[-1]["response"]["status"] = "incomplete"


@mutation("created-status", "response.status must be 'in_progress'")
def _mut_created_status(ev: list[Any]) -> None:
    ev[0]["response"]["status"] = "queued"


@mutation("terminal-id", "response.id")
def _mut_terminal_id(ev: list[Any]) -> None:
    ev[-1]["response"]["id"] = "resp_other"


@mutation("schema-delta-not-str", "not a valid openai ResponseTextDeltaEvent")
def _mut_schema_delta_not_str(ev: list[Any]) -> None:
    _first(ev, "response.output_text.delta")["delta"] = 5


@mutation("unknown-field", "fields unknown to openai-python")
def _mut_unknown_field(ev: list[Any]) -> None:
    _first(ev, "response.output_text.delta")["extra"] = 1


@mutation("coerced-type", "round-trip")
def _mut_coerced_type(ev: list[Any]) -> None:
    _first(ev, "response.output_text.delta")["output_index"] = "8"


@mutation("unknown-event", "not a valid openai ResponseStreamEvent")
def _mut_unknown_event(ev: list[Any]) -> None:
    _first(ev, "response.output_text.delta")["type"] = "response.output_text.delta2"


@mutation("usage-total", "total_tokens")
def _mut_usage_total(ev: list[Any]) -> None:
    ev[-1]["response"]["usage"]["total_tokens"] += 1


@pytest.mark.parametrize(("mutate", "message"), MUTATIONS)
def test_validator_rejects_broken_fields(
    reference: list[dict[str, Any]], mutate: Callable[[list[Any]], None], message: str
) -> None:
    broken = copy.deepcopy(reference)
    mutate(broken)
    assert broken != reference
    msg = rejects(broken)
    assert msg is not None, "accepted a broken stream"
    assert message in msg


def test_validator_rejects_vllm_bugs(reference: list[dict[str, Any]]) -> None:
    # #48274: an item with no delta loses its whole lifecycle but stays in the response.
    final = reference[-1]["response"]["output"]
    empty = next(i for i in final if i["type"] == "reasoning" and not i["content"][0]["text"])
    gone = item_events(reference, empty["id"])
    lost = renumber([e for e in reference if e not in gone])
    msg = rejects(lost)
    assert msg is not None
    assert "output_index must be" in msg
    # Even with the later items' output_index shifted to hide the gap.
    for e in lost:
        if e.get("output_index", -1) > gone[0]["output_index"]:
            e["output_index"] -= 1
    msg = rejects(lost)
    assert msg is not None
    assert "item ids differ" in msg
    # mcp_call.completed sent before the call's arguments were done.
    mcp = next(i for i in final if i["type"] == "mcp_call")
    evs = copy.deepcopy(reference)
    idx = [i for i, e in enumerate(evs) if e.get("item_id") == mcp["id"]]
    done = next(i for i in idx if evs[i]["type"] == "response.mcp_call.completed")
    evs.insert(idx[1], evs.pop(done))
    msg = rejects(renumber(evs))
    assert msg is not None
    assert "mcp_call.completed not allowed" in msg
    # Two terminal events.
    msg = rejects(renumber([*reference, copy.deepcopy(reference[-1])]))
    assert msg is not None
    assert "must be the last event" in msg


# ---------------------------------------------------------------------------------------
# 2. Each item kind, from rendered Harmony
# ---------------------------------------------------------------------------------------


def the_item(final: dict[str, Any], kind: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [i for i in final["output"] if i["type"] == kind]
    assert len(found) == 1, final["output"]
    return found[0]


def test_reasoning(vocab: Vocab, enc: Any) -> None:
    text = "The user asks about the sky. Rayleigh scattering explains it."
    t = turn(enc, Msg(text, "analysis"))
    r, final = run(vocab, [t])
    item = the_item(final, "reasoning")
    assert item["id"].startswith("rs_")
    assert item["content"] == [{"type": "reasoning_text", "text": text}]
    assert item["status"] == "completed"
    assert lifecycle(r.events, item["id"]) == expect_order("reasoning", deltas=True)
    deltas = [e for e in r.events if e["type"] == "response.reasoning_text.delta"]
    # ASCII text: one delta per content token, each the token's text.
    content = t.tokens[t.spans[0].body : t.spans[0].stop]
    assert [d["delta"] for d in deltas] == [enc.decode([tok]) for tok in content]


@pytest.mark.parametrize("stop", [END, RETURN])
def test_final_message(vocab: Vocab, enc: Any, stop: int) -> None:
    text = "The sky is blue because of **Rayleigh scattering**.\n\nShort waves scatter more."
    r, final = run(vocab, [turn(enc, Msg(text, "final"), stop=stop)])
    item = the_item(final, "message")
    assert item["id"].startswith("msg_")
    assert (item["role"], item["phase"], item["status"]) == (
        "assistant",
        "final_answer",
        "completed",
    )
    assert [(p["type"], p["text"]) for p in item["content"]] == [("output_text", text)]
    assert lifecycle(r.events, item["id"]) == expect_order("message", deltas=True)


def test_commentary_preamble(vocab: Vocab, enc: Any) -> None:
    t = turn(
        enc,
        Msg("Let me check the weather.", "commentary"),
        call(enc, '{"location": "Paris"}', "functions.get_weather"),
    )
    r, final = run(vocab, [t], tools=TOOLS)
    assert [i["type"] for i in final["output"]] == ["message", "function_call"]
    pre = final["output"][0]
    assert pre["phase"] == "commentary"
    assert pre["content"][0]["text"] == "Let me check the weather."
    assert lifecycle(r.events, pre["id"]) == expect_order("message", deltas=True)


@pytest.mark.parametrize("channel", ["commentary", "analysis"])
def test_function_call(vocab: Vocab, enc: Any, channel: str) -> None:
    # Routed on the recipient first: also from the analysis channel.
    args = '{"location": "Tokyo, JP", "unit": "celsius"}'
    t = turn(enc, call(enc, args, "functions.get_weather", channel))
    r = Run(vocab, tools=TOOLS)
    r.play([t])
    item_evs = r.events
    tail = r.tool_output('{"temperature": 18}')  # recorded, no events
    assert tail == []
    assert not r.stream.awaiting_tool_output
    r.play([turn(enc, Msg("It is 18°C in Tokyo.", "final"))])
    r.finish()
    final = r.validate()
    assert [i["type"] for i in final["output"]] == ["function_call", "message"]
    fc = final["output"][0]
    assert fc["id"].startswith("fc_")
    assert fc["call_id"].startswith("call_")
    assert (fc["name"], fc["arguments"], fc["status"]) == ("get_weather", args, "completed")
    assert lifecycle(item_evs, fc["id"]) == expect_order("function_call", deltas=True)
    done = _first(item_evs, "response.function_call_arguments.done")
    assert (done["name"], done["arguments"]) == ("get_weather", args)
    # The response goes on after the call: output_index continues at 1.
    assert _first(r.events, "response.output_item.added", 1)["output_index"] == 1


def test_mcp_call_with_output(vocab: Vocab, enc: Any) -> None:
    args = '{"query": "repo:openai/harmony parser", "per_page": 5}'
    out = '[{"number": 61, "title": "StreamableParser fails"}]'
    r = Run(vocab, tools=TOOLS)
    r.play([turn(enc, call(enc, args, "github.search_issues"))])
    streamed = r.events
    # The tool has not run yet: nothing claims it completed.
    assert not {"response.mcp_call.completed", "response.mcp_call.failed"} & {
        e["type"] for e in streamed
    }
    assert "response.output_item.done" not in {e["type"] for e in streamed}
    assert r.stream.awaiting_tool_output
    # The result closes the call: exactly completed, then output_item.done.
    closing = r.tool_output(out)
    assert types(closing) == ["mcp_call.completed", "output_item.done"]
    assert not r.stream.awaiting_tool_output
    r.play([turn(enc, Msg("Found issue #61.", "final"))])
    r.finish()
    final = r.validate()
    item = final["output"][0]
    assert item["type"] == "mcp_call"
    assert item["id"].startswith("mcp_")
    assert (item["server_label"], item["name"]) == ("github", "search_issues")
    assert (item["arguments"], item["output"], item["status"]) == (args, out, "completed")
    assert item.get("error") is None
    assert lifecycle(r.events, item["id"]) == expect_order("mcp_call", deltas=True)
    assert final["output"][1]["content"][0]["text"] == "Found issue #61."


def test_mcp_call_failed(vocab: Vocab, enc: Any) -> None:
    err = "Error executing tool get_latest_release: 404 Not Found"
    r = Run(vocab, tools=TOOLS)
    r.play([turn(enc, call(enc, '{"repo": "x/y"}', "github.get_latest_release"))])
    closing = r.tool_output(error=err)
    assert types(closing) == ["mcp_call.failed", "output_item.done"]
    r.play([turn(enc, Msg("Sorry, the release lookup failed.", "final"))])
    r.finish()
    final = r.validate()
    item = final["output"][0]
    assert item["status"] == "failed"
    assert item.get("output") is None
    assert err in json.dumps(item["error"])
    assert lifecycle(r.events, item["id"]) == expect_order("mcp_call_failed", deltas=True)


def test_code_interpreter(vocab: Vocab, enc: Any) -> None:
    code = "import math\nprint(math.factorial(10))"
    logs = "3628800\n"
    r = Run(vocab, tools=TOOLS)
    r.play([turn(enc, call(enc, code, "python", "analysis"))])
    # At the end of the call message: code done, then interpreting; not completed yet.
    assert types(r.calls[-1][1])[-2:] == [
        "code_interpreter_call_code.done",
        "code_interpreter_call.interpreting",
    ]
    assert "response.code_interpreter_call.completed" not in {e["type"] for e in r.events}
    closing = r.tool_output(logs)
    assert types(closing) == ["code_interpreter_call.completed", "output_item.done"]
    r.finish()
    final = r.validate()
    item = the_item(final, "code_interpreter_call")
    assert item["id"].startswith("ci_")
    assert item["code"] == code
    assert item["outputs"] == [{"type": "logs", "logs": logs}]
    assert item["status"] == "completed"
    assert isinstance(item["container_id"], str)
    assert item["container_id"]
    assert lifecycle(r.events, item["id"]) == expect_order("code_interpreter_call", deltas=True)


SOLAR = "https://www.esa.int/solar"


# The action type follows the recipient; its query / url / pattern are the JSON
# arguments' (gpt-oss's browser.open takes the page as "id", a URL or a link number).
@pytest.mark.parametrize(
    ("recipient", "args", "action"),
    [
        ("browser.search", {"query": "solar orbiter", "topn": 5}, {"query": "solar orbiter"}),
        ("browser.open", {"url": SOLAR}, {"url": SOLAR}),
        ("browser.open", {"id": SOLAR, "cursor": -1}, {"url": SOLAR}),
        ("browser.find", {"pattern": "magnetic field", "cursor": 1}, {"pattern": "magnetic field"}),
    ],
    ids=["search", "open-url", "open-id", "find"],
)
def test_web_search(
    vocab: Vocab, enc: Any, recipient: str, args: dict[str, Any], action: dict[str, Any]
) -> None:
    action_type = {"search": "search", "open": "open_page", "find": "find_in_page"}
    expected = {"type": action_type[recipient.removeprefix("browser.")], **action}
    t = turn(enc, call(enc, json.dumps(args), recipient, "analysis"))
    r = Run(vocab, tools=TOOLS)
    r.start()
    before = len(r.events)
    r.feed_turn(t.tokens[:-1], step=1)
    # The action is known only at <|call|>: nothing for the item before it.
    assert len(r.events) == before
    at_call = r.feed(t.tokens[-1:])
    assert types(at_call) == [
        "output_item.added",
        "web_search_call.in_progress",
        "web_search_call.searching",
    ]
    closing = r.tool_output("# 【0†Solar Orbiter†esa.int】")
    assert types(closing) == ["web_search_call.completed", "output_item.done"]
    r.finish()
    final = r.validate()
    item = the_item(final, "web_search_call")
    assert item["id"].startswith("ws_")
    assert item["status"] == "completed"
    assert {k: item["action"].get(k) for k in expected} == expected
    assert at_call[0]["item"]["action"] == item["action"]
    assert lifecycle(r.events, item["id"]) == expect_order("web_search_call", deltas=False)
    # A browser call is one web_search_call, not also an mcp_call.
    assert [i["type"] for i in final["output"]] == ["web_search_call"]


def test_mcp_list_tools_at_start(vocab: Vocab, enc: Any) -> None:
    r = Run(vocab, tools=TOOLS, mcp_tool_lists=MCP_LISTS)
    started = r.start()
    assert types(started)[:2] == ["created", "in_progress"]
    r.play([turn(enc, Msg("Hi.", "final"))])
    r.finish()
    final = r.validate()
    first = final["output"][0]
    assert first["type"] == "mcp_list_tools"
    assert first["server_label"] == "github"
    assert first["tools"] == MCP_LISTS["github"]
    assert lifecycle(started, first["id"]) == expect_order("mcp_list_tools", deltas=False)
    # Items of the model's messages count on from 1.
    assert final["output"][1]["type"] == "message"
    assert _first(r.events, "response.output_item.added", 1)["output_index"] == 1


def test_mcp_list_tools_with_auto_start(vocab: Vocab, enc: Any) -> None:
    r = Run(vocab, tools=TOOLS, mcp_tool_lists=MCP_LISTS)
    r.play([turn(enc, Msg("Hi.", "final"))])
    r.finish()
    final = r.validate()
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "message"]


def _logprob_inputs(tokens: Sequence[int]) -> list[Any]:
    # Odd positions give alternatives (the token itself and id 13 "."), even ones a float.
    return [
        (-(i + 1) / 8, [(tok, -(i + 1) / 8), (13, -7.5)]) if i % 2 else -(i + 1) / 8
        for i, tok in enumerate(tokens)
    ]


@pytest.mark.parametrize("step", [1, None], ids=["per-token", "one-feed"])
@pytest.mark.parametrize(
    "text", ["Hello world, this is plain text.", "Blossom 🌸 and 😀 — ça va, 東京?"]
)
def test_logprobs_on_output_text(vocab: Vocab, enc: Any, text: str, step: int | None) -> None:
    t = turn(enc, Msg("Think first.", "analysis"), Msg(text, "final"))
    lps = _logprob_inputs(t.tokens)
    r = Run(vocab, logprobs=True)
    r.start()
    for i in range(0, len(t.tokens), step or len(t.tokens)):
        chunk = slice(i, i + (step or len(t.tokens)))
        r.feed(t.tokens[chunk], lps[chunk])
    r.finish()
    final = r.validate()
    span = t.spans[1]
    content = t.tokens[span.body : span.stop]
    wanted = lps[span.body : span.stop]
    deltas = [e for e in r.events if e["type"] == "response.output_text.delta"]
    entries = [lp for d in deltas for lp in d["logprobs"]]
    # One entry per content token of the message, in order, with the given values.
    assert len(entries) == len(content)
    for entry, tok, given in zip(entries, content, wanted, strict=True):
        value, alts = given if isinstance(given, tuple) else (given, [])
        assert entry["token"] == vocab.token_bytes(tok).decode("utf-8", "replace")
        assert entry["logprob"] == value
        assert [(a["token"], a["logprob"]) for a in entry["top_logprobs"]] == [
            (vocab.token_bytes(a).decode("utf-8", "replace"), v) for a, v in alts
        ]
    # Tokens decode to the delta they arrived with (when the token is whole UTF-8).
    for d in deltas:
        if all("\ufffd" not in lp["token"] for lp in d["logprobs"]):
            assert "".join(lp["token"] for lp in d["logprobs"]) == d["delta"]
    # The final part carries the bytes: together they are the text.
    part = final["output"][1]["content"][0]
    assert [lp["bytes"] for lp in part["logprobs"]] == [list(vocab.token_bytes(x)) for x in content]
    assert b"".join(bytes(lp["bytes"]) for lp in part["logprobs"]).decode() == text
    # Reasoning has no logprobs field; the header and stop tokens give no entries.
    assert all("logprobs" not in e for e in r.events if e["type"].startswith("response.reasoning"))


def test_no_logprobs_unless_asked(vocab: Vocab, enc: Any) -> None:
    t = turn(enc, Msg("Hello world", "final"))
    r = Run(vocab, logprobs=False)
    r.feed(t.tokens, _logprob_inputs(t.tokens))
    r.finish()
    final = r.validate()
    assert all(e["logprobs"] == [] for e in r.events if e["type"] == "response.output_text.delta")
    assert final["output"][0]["content"][0]["logprobs"] == []


def test_usage(vocab: Vocab, enc: Any) -> None:
    turns: list[Turn | ToolResult] = [
        turn(
            enc,
            Msg("Need the weather. Call the tool.", "analysis"),
            Msg("Checking.", "commentary"),
            call(enc, '{"location": "Oslo"}', "functions.get_weather"),
        ),
        ('{"temperature": -3}', None),
        turn(enc, Msg("It is cold: minus three.", "analysis"), Msg("-3°C in Oslo.", "final")),
    ]
    r, final = run(vocab, turns, tools=TOOLS, input_tokens=321, cached_tokens=256)
    fed = [tok for t in turns if isinstance(t, Turn) for tok in t.tokens]
    usage = final["usage"]
    assert usage["output_tokens"] == len(fed) == r.fed
    # Rule: reasoning = content + stop tokens of analysis messages without recipient.
    by_span = sum(
        s.stop - s.body + 1
        for t in turns
        if isinstance(t, Turn)
        for s in t.spans
        if s.msg.channel == "analysis" and s.msg.recipient is None
    )
    oracle = sum(reasoning_tokens(enc, t.tokens) for t in turns if isinstance(t, Turn))
    assert usage["output_tokens_details"]["reasoning_tokens"] == by_span == oracle
    assert usage["input_tokens"] == 321
    assert usage["input_tokens_details"]["cached_tokens"] == 256
    assert usage["total_tokens"] == 321 + len(fed)


def test_finish_length_mid_message(vocab: Vocab, enc: Any) -> None:
    text = "The ocean is blue mostly because water absorbs red light."
    t = turn(enc, Msg("Short answer.", "analysis"), Msg(text, "final"))
    cut = t.spans[1].body + 5
    r, final = run(vocab, [t.tokens[:cut]], finish="length", max_output_tokens=cut)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r.events[-1]["type"] == "response.incomplete"
    reasoning, message = final["output"]
    assert reasoning["status"] == "completed"
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == enc.decode(t.tokens[t.spans[1].body : cut])
    assert text.startswith(message["content"][0]["text"])
    assert final["usage"]["output_tokens"] == cut
    assert final["max_output_tokens"] == cut


@pytest.mark.parametrize(("reason", "message"), [("abort", None), ("error", "engine died: OOM")])
def test_abort_and_error(vocab: Vocab, enc: Any, reason: str, message: str | None) -> None:
    t = turn(enc, Msg("Thinking about it.", "analysis"), Msg("Partial answer here", "final"))
    r = Run(vocab)
    r.play([t.tokens[:-4]])
    closing = r.finish(reason, message)
    final = r.validate()
    assert types(closing)[-1] == "failed"
    assert final["status"] == "failed"
    assert final["error"]["code"] == "server_error"
    assert isinstance(final["error"]["message"], str)
    assert final["error"]["message"]
    if message is not None:
        assert final["error"]["message"] == message
    assert [i["status"] for i in final["output"]] == ["completed", "incomplete"]


def _cut_points(turns: Sequence[Turn | ToolResult]) -> Iterator[tuple[int, int]]:
    for n, t in enumerate(turns):
        if isinstance(t, Turn):
            for j in range(len(t.tokens)):
                yield n, j


@pytest.mark.parametrize("reason", ["length", "abort"])
def test_cut_anywhere(vocab: Vocab, enc: Any, reason: str) -> None:
    """Cut the reference conversation before every token: the stream stays valid, the
    finished messages' items are those of the full run, the message in flight (if its
    content had started) closes incomplete with a prefix of its full text, and usage
    counts what was fed."""
    turns = reference_turns(enc)
    _, full = run(vocab, turns, tools=TOOLS)
    failures = []
    for n, j in _cut_points(turns):
        cur = turns[n]
        assert isinstance(cur, Turn)
        prefix = [*turns[:n], cur.tokens[:j]]
        _, final = run(vocab, prefix, tools=TOOLS, finish=reason)
        done_before = sum(len(t.spans) for t in turns[:n] if isinstance(t, Turn))
        finished_here = sum(1 for s in cur.spans if s.stop < j)
        in_flight = [s for s in cur.spans if s.body <= j <= s.stop]
        k = done_before + finished_here
        out = final["output"]
        problems = []
        if out[:k] != full["output"][:k]:
            problems.append("finished items differ from the full run")
        if len(out) != k + len(in_flight):
            problems.append(f"{len(out)} items, expected {k + len(in_flight)}")
        elif in_flight:
            last, ref = out[-1], full["output"][k]
            if (last["id"], last["type"], last["status"]) != (ref["id"], ref["type"], "incomplete"):
                problems.append(f"in-flight item {last} vs {ref}")
            # Its text is what openai-harmony holds for the cut message at end of stream
            # (a character cut in its middle ends as U+FFFD there too) ...
            text, ref_text = item_text(last), item_text(ref)
            cut_msg = oracle_messages(enc, cur.tokens[:j])[-1]
            want_text = "".join(c["text"] for c in cut_msg["content"])
            if ref_text is not None and text != want_text:
                problems.append(f"in-flight text {text!r} != oracle's {want_text!r}")
            # ... so a prefix of the full text, but for that last character.
            if ref_text is not None and not ref_text.startswith((text or "").rstrip("\ufffd")):
                problems.append(f"in-flight text {text!r} is no prefix of {ref_text!r}")
        fed = [tok for t in prefix if not isinstance(t, tuple) for tok in token_list(t)]
        if final["usage"]["output_tokens"] != len(fed):
            problems.append("output_tokens")
        want = sum(reasoning_tokens(enc, token_list(t)) for t in prefix if not isinstance(t, tuple))
        if final["usage"]["output_tokens_details"]["reasoning_tokens"] != want:
            problems.append(f"reasoning_tokens {final['usage']['output_tokens_details']} != {want}")
        if any("<|" in (item_text(i) or "") for i in out):
            problems.append("raw special token text in an item")
        if problems:
            failures.append((n, j, problems))
    assert failures == []


EMPTY_CASES = [
    ("reasoning", [Msg("", "analysis")], None),
    ("message", [Msg("", "final")], None),
    ("message", [Msg("", "commentary")], None),
    ("function_call", [Msg("", "commentary", "functions.get_weather", json=True)], None),
    ("mcp_call", [Msg("", "commentary", "github.search_issues", json=True)], "[]"),
    ("code_interpreter_call", [Msg("", "analysis", "python")], ""),
]


@pytest.mark.parametrize(
    ("kind", "msgs", "tool_out"),
    EMPTY_CASES,
    ids=["reasoning", "final", "commentary", "function", "mcp", "python"],
)
def test_items_without_delta_keep_their_lifecycle(
    vocab: Vocab, enc: Any, kind: str, msgs: list[Msg], tool_out: str | None
) -> None:
    """vLLM #48274: an item whose content is empty still gets every event of its
    lifecycle (docs/architecture.md, Event contract)."""
    t = turn(enc, *msgs, Msg("Done.", "final"))
    # A server-run call ends its turn; its result arrives before the next message.
    if tool_out is not None:
        first = turn(enc, *msgs)
        turns: list[Turn | ToolResult] = [first, (tool_out, None), turn(enc, Msg("Done.", "final"))]
    else:
        turns = [t]
    r, final = run(vocab, turns, tools=TOOLS)
    item = final["output"][0]
    assert item["type"] == kind
    assert item_text(item) == ""
    assert item["status"] == "completed"
    assert lifecycle(r.events, item["id"]) == expect_order(kind, deltas=False)
    assert final["output"][1]["content"][0]["text"] == "Done."


def test_pending_calls_close_when_the_model_moves_on(vocab: Vocab, enc: Any) -> None:
    """A server call with no result is closed before the next message's item: mcp as
    failed (with an error), python and browser as incomplete."""
    calls = [
        call(enc, '{"q": "x"}', "github.search_issues"),
        call(enc, "print(1)", "python", "analysis"),
        call(enc, '{"query": "x"}', "browser.search", "analysis"),
    ]
    turns: list[Turn | ToolResult] = [turn(enc, c) for c in calls]
    turns.append(turn(enc, Msg("Giving up.", "final")))
    _, final = run(vocab, turns, tools=TOOLS)
    kinds = [(i["type"], i["status"]) for i in final["output"]]
    assert kinds == [
        ("mcp_call", "failed"),
        ("code_interpreter_call", "incomplete"),
        ("web_search_call", "incomplete"),
        ("message", "completed"),
    ]
    assert final["output"][0]["error"] is not None


@pytest.mark.parametrize(
    ("recipient", "args"),
    [("python", "1 / 0"), ("browser.search", '{"query": "x"}')],
    ids=["python", "browser"],
)
def test_server_call_whose_tool_fails(vocab: Vocab, enc: Any, recipient: str, args: str) -> None:
    """A python or browser call whose tool returns an error closes failed, without a
    completed event, and the response goes on."""
    err = "Traceback (most recent call last): ZeroDivisionError: division by zero"
    r = Run(vocab, tools=TOOLS)
    r.play([turn(enc, call(enc, args, recipient, "analysis"))])
    closing = r.tool_output(error=err)
    assert types(closing) == ["output_item.done"]
    r.play([turn(enc, Msg("The tool failed.", "final"))])
    r.finish()
    final = r.validate()
    item = final["output"][0]
    assert item["status"] == "failed"
    if item["type"] == "code_interpreter_call":
        assert err in json.dumps(item["outputs"])
    assert final["output"][1]["content"][0]["text"] == "The tool failed."


@pytest.mark.parametrize("recipient", ["github.search_issues", "python", "browser.search"])
def test_pending_call_closes_at_finish(vocab: Vocab, enc: Any, recipient: str) -> None:
    _, final = run(vocab, [turn(enc, call(enc, '{"query": "x"}', recipient, "analysis"))])
    (item,) = final["output"]
    assert item["status"] == ("failed" if recipient.startswith("github") else "incomplete")
    assert final["status"] == "completed"


# ---------------------------------------------------------------------------------------
# Transcripts: token by token and one feed per turn
# ---------------------------------------------------------------------------------------


def play_transcript(vocab: Vocab, tr: Transcript, step: int | None) -> tuple[Run, dict[str, Any]]:
    r = Run(vocab, tools=tr.tools, max_output_tokens=tr.max_output_tokens)
    r.start()
    for t in tr.turns:
        if isinstance(t, ModelTurn):
            r.feed_turn(t.tokens, step)
        else:
            assert isinstance(t, ToolOutput)
            r.tool_output(t.output, t.error)
    r.finish(tr.model_turns[-1].finish_reason)
    return r, r.validate()


def collapsed(events: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for t in types(events):
        if t.endswith(".delta") and out and out[-1] == t:
            continue
        out.append(t)
    return out


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(vocab: Vocab, enc: Any, path: Path) -> None:
    tr = load_transcript(path)
    per_token, final = play_transcript(vocab, tr, step=1)
    per_turn, final_turn = play_transcript(vocab, tr, step=None)
    # Same events (deltas may be grouped differently), same result.
    assert collapsed(per_token.events) == collapsed(per_turn.events)
    assert final_turn == final
    # One item per Harmony message, routed by recipient then channel, with its text.
    per_turn_msgs = [oracle_messages(enc, t.tokens) for t in tr.model_turns]
    messages = [m for msgs in per_turn_msgs for m in msgs]
    assert [i["type"] for i in final["output"]] == [
        expected_kind(m.get("channel"), m.get("recipient")) for m in messages
    ]
    for item, m in zip(final["output"], messages, strict=True):
        content = "".join(c["text"] for c in m["content"])
        if item["type"] == "web_search_call":
            args = json.loads(content)
            for key in ("query", "url", "pattern"):
                if key in args:
                    assert item["action"][key] == args[key]
        else:
            assert item_text(item) == content
        if item["type"] == "message":
            assert item["phase"] == ("final_answer" if m["channel"] == "final" else "commentary")
    # A tool result lands in the call that ended the turn before it (the turn's last item).
    end_of_turn = 0
    model_turn = iter(per_turn_msgs)
    for t in tr.turns:
        if isinstance(t, ModelTurn):
            end_of_turn += len(next(model_turn))
            continue
        assert isinstance(t, ToolOutput)
        item = final["output"][end_of_turn - 1]
        if item["type"] == "mcp_call" and t.error is None:
            assert (item["status"], item["output"]) == ("completed", t.output)
        elif item["type"] == "mcp_call":
            assert item["status"] == "failed"
            assert str(t.error) in json.dumps(item["error"])
        elif item["type"] == "code_interpreter_call":
            assert (item["status"], item["outputs"]) == (
                "completed",
                [{"type": "logs", "logs": t.output}],
            )
        elif item["type"] == "web_search_call":
            assert item["status"] == "completed"
        else:  # a function call's result is the client's business: no event, no field
            assert item["type"] == "function_call"
    usage = final["usage"]
    assert usage["output_tokens"] == tr.num_tokens
    assert usage["output_tokens_details"]["reasoning_tokens"] == sum(
        reasoning_tokens(enc, t.tokens) for t in tr.model_turns
    )
    reason = tr.model_turns[-1].finish_reason
    assert final["status"] == {"stop": "completed", "length": "incomplete"}[reason]


QUIRKS = sorted((Path(__file__).parent / "data" / "golden").glob("quirk_*.json"))


@pytest.mark.parametrize("reason", ["stop", "length"])
@pytest.mark.parametrize("path", QUIRKS, ids=[p.stem.removeprefix("quirk_") for p in QUIRKS])
def test_quirk_stream(vocab: Vocab, path: Path, reason: str) -> None:
    """Model quirks (docs/architecture.md, Lenient parsing) keep the contract: a
    valid stream with one item per message the lenient parser recovers (its
    agreement with openai-harmony is test_parser_differential's job), routed by
    recipient (when there is one) then channel, carrying the message's text."""
    tokens = json.loads(path.read_text(encoding="utf-8"))["tokens"]
    parser = HarmonyParser(vocab, "assistant", strict=False)
    parser.process_many(tokens)
    parser.process_eos()
    messages = parser.messages
    r = Run(vocab, tools=TOOLS)
    r.play([tokens])
    r.finish(reason)
    final = r.validate()
    got = [(i["type"], item_text(i)) for i in final["output"]]
    want = [(expected_kind(m.channel, m.recipient), m.content) for m in messages]
    assert [k for k, _ in got] == [k for k, _ in want], [(m.channel, m.recipient) for m in messages]
    for (kind, text), (_, content) in zip(got, want, strict=True):
        assert text == content or kind == "web_search_call"
    for item, m in zip(final["output"], messages, strict=True):
        if item["type"] == "message" and m.channel in ("final", "commentary"):
            assert item["phase"] == ("final_answer" if m.channel == "final" else "commentary")


# ---------------------------------------------------------------------------------------
# Serialization: SSE, sequence numbers, openai-python models
# ---------------------------------------------------------------------------------------


def sse_blocks(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    assert body.endswith(b"\n\n")
    out = []
    for block in body.decode().split("\n\n")[:-1]:
        head, data = block.split("\n")
        assert head.startswith("event: ")
        assert data.startswith("data: ")
        out.append((head[7:], json.loads(data[6:])))
    return out


def _sse_pair(vocab: Vocab, tr: Transcript) -> tuple[list[ResponseEvent], bytes]:
    kw: dict[str, Any] = {
        "tools": tr.tools,
        "max_output_tokens": tr.max_output_tokens,
        "id_seed": 11,
        "created_at": CREATED_AT,
    }
    ev_stream, sse_stream = ResponseStream(vocab, **kw), ResponseStream(vocab, **kw)
    events = ev_stream.start()
    body = [sse_stream.start_sse()]
    for t in tr.turns:
        if isinstance(t, ModelTurn):
            for tok in t.tokens:
                events += ev_stream.feed([tok])
                body.append(sse_stream.feed_sse([tok]))
        else:
            assert isinstance(t, ToolOutput)
            events += ev_stream.tool_output(t.output, t.error)
            body.append(sse_stream.tool_output_sse(t.output, t.error))
    reason: Any = tr.model_turns[-1].finish_reason
    events += ev_stream.finish(reason)
    body.append(sse_stream.finish_sse(reason))
    assert ev_stream.response() == sse_stream.response()
    return events, b"".join(body)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_sse_equals_events(vocab: Vocab, path: Path) -> None:
    events, body = _sse_pair(vocab, load_transcript(path))
    assert body == b"".join(e.to_sse() for e in events)
    for e in events:
        assert e.to_sse() == f"event: {e.type}\ndata: {e.model_dump_json()}\n\n".encode()
        assert json.loads(e.model_dump_json()) == e.model_dump()
        assert json.loads(e.model_dump_json(indent=2)) == e.model_dump()
        assert "\n" not in e.model_dump_json()
    blocks = sse_blocks(body)
    assert [name for name, _ in blocks] == [d["type"] for _, d in blocks]
    validate_stream([d for _, d in blocks])


def test_sequence_number_setter(vocab: Vocab, enc: Any) -> None:
    r = Run(vocab)
    evs = r.stream.feed(turn(enc, Msg("Hi", "final")).tokens) + r.stream.finish()
    before = [e.model_dump() for e in evs]
    # A server numbering events itself (vLLM's generator) shifts them all.
    for e in evs:
        e.sequence_number += 1000
    for e, b in zip(evs, before, strict=True):
        assert e.sequence_number == b["sequence_number"] + 1000
        assert e.model_dump() == {**b, "sequence_number": e.sequence_number}
        assert json.loads(e.model_dump_json())["sequence_number"] == e.sequence_number
        assert json.loads(e.to_sse().decode().split("data: ", 1)[1]) == e.model_dump()
        assert e.to_openai().sequence_number == e.sequence_number
    for i, e in enumerate(evs):
        e.sequence_number = i
    validate_stream([e.model_dump() for e in evs])


def _openai_classes() -> dict[str, type[Any]]:
    union = typing.get_args(ResponseStreamEvent)[0]
    out = {}
    for cls in typing.get_args(union):
        (name,) = typing.get_args(cls.model_fields["type"].annotation)
        out[name] = cls
    return out


def test_to_openai(vocab: Vocab, enc: Any) -> None:
    classes = _openai_classes()
    r = Run(vocab, tools=TOOLS, mcp_tool_lists=MCP_LISTS, logprobs=True)
    evs = r.stream.start()
    for t in reference_turns(enc):
        if isinstance(t, tuple):
            evs += r.stream.tool_output(*t)
        else:
            evs += r.stream.feed(t.tokens, [-0.5] * len(t.tokens))
    evs += r.stream.finish()
    seen = set()
    for e in evs:
        model = e.to_openai()
        assert type(model) is classes[e.type]
        assert model.model_dump(mode="json", exclude_unset=True) == e.model_dump()
        seen.add(e.type)
    final = evs[-1].to_openai().response
    assert isinstance(final, Response)
    assert final.id == r.stream.response_id
    assert len(seen) >= 25


# ---------------------------------------------------------------------------------------
# Bad input: typed exceptions, nothing emitted, the stream goes on unchanged
# ---------------------------------------------------------------------------------------


def _bad_calls() -> list[Any]:
    def feed(*a: Any, **k: Any) -> Callable[[ResponseStream], Any]:
        return lambda s: s.feed(*a, **k)

    def alt(token: Any) -> Callable[[ResponseStream], Any]:
        return lambda s: s.feed([12194], [(-0.5, [(13, -1.0), (token, -2.0)])])

    return [
        pytest.param(feed([-1]), InvalidTokenError, id="negative-id"),
        pytest.param(feed([201_089]), InvalidTokenError, id="id-past-vocab"),
        pytest.param(feed([2**70]), (InvalidTokenError, OverflowError), id="huge-id"),
        pytest.param(feed([12194, 1354, 999_999]), InvalidTokenError, id="bad-id-last-in-batch"),
        pytest.param(feed(["5"]), TypeError, id="str-id"),
        pytest.param(feed([5.0]), TypeError, id="float-id"),
        pytest.param(feed([None]), TypeError, id="none-id"),
        pytest.param(feed([12194, "x"]), TypeError, id="str-id-in-batch"),
        pytest.param(feed([12194, 1354], [-0.1]), InvalidRequestError, id="too-few-logprobs"),
        pytest.param(feed([12194], [-0.1, -0.2]), InvalidRequestError, id="too-many-logprobs"),
        pytest.param(feed([12194], ["x"]), InvalidRequestError, id="logprob-str"),
        pytest.param(feed([12194], [None]), InvalidRequestError, id="logprob-none"),
        # A top-logprob alternative is a token id like any other.
        pytest.param(alt(-5), (InvalidTokenError, InvalidRequestError), id="alt-negative-id"),
        pytest.param(
            alt(201_089), (InvalidTokenError, InvalidRequestError), id="alt-id-past-vocab"
        ),
        pytest.param(alt(10**9), (InvalidTokenError, InvalidRequestError), id="alt-id-huge"),
        pytest.param(alt("13"), (TypeError, InvalidRequestError), id="alt-str-id"),
        pytest.param(alt(True), (TypeError, InvalidRequestError), id="alt-bool-id"),
        pytest.param(lambda s: s.tool_output("x"), ResponseStateError, id="tool-output-unasked"),
        pytest.param(lambda s: s.finish("later"), InvalidRequestError, id="unknown-finish"),
    ]


@pytest.mark.parametrize(("bad", "exc"), _bad_calls())
@pytest.mark.parametrize("where", ["before-start", "in-header", "mid-content", "after-message"])
def test_bad_call_changes_nothing(
    vocab: Vocab, enc: Any, bad: Callable[[ResponseStream], Any], exc: Any, where: str
) -> None:
    t = turn(enc, Msg("Let me think.", "analysis"), Msg("Hello world", "final"))
    at = {
        "before-start": 0,
        "in-header": 1,
        "mid-content": t.spans[1].body + 1,
        "after-message": t.spans[0].stop + 1,
    }[where]
    ref = Run(vocab, logprobs=True)
    ref.play([t.tokens])
    ref.finish()
    ref_final = ref.validate()

    r = Run(vocab, logprobs=True)
    if at:
        r.play([t.tokens[:at]])
    snapshot = (r.stream.response(), r.stream.finished, r.stream.awaiting_tool_output)
    with pytest.raises(exc):
        bad(r.stream)
    assert (r.stream.response(), r.stream.finished, r.stream.awaiting_tool_output) == snapshot
    r.play([t.tokens[at:]])
    r.finish()
    # The same events as a stream that never saw the bad call: nothing lost or repeated.
    assert r.events == ref.events
    assert r.validate() == ref_final


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["logprob", "top-logprob"])
def test_non_finite_logprobs(vocab: Vocab, enc: Any, value: float, where: str) -> None:
    """JSON has no NaN or infinity: a non-finite logprob is either refused (typed error,
    nothing emitted) or written so that every event still validates with openai-python."""
    t = turn(enc, Msg("Hello world", "final"))
    body = t.spans[0].body
    lps: list[Any] = [-0.5] * len(t.tokens)
    lps[body] = value if where == "logprob" else (-0.5, [(13, value)])
    r = Run(vocab, logprobs=True)
    r.feed(t.tokens[:body], lps[:body])
    try:
        r.feed(t.tokens[body:], lps[body:])
    except InvalidRequestError:
        r.feed(t.tokens[body:], [-0.5] * (len(t.tokens) - body))
    r.finish()
    r.validate()


def test_tool_output_twice(vocab: Vocab, enc: Any) -> None:
    r = Run(vocab, tools=TOOLS)
    r.play([turn(enc, call(enc, '{"q": 1}', "github.search_issues"))])
    r.tool_output("first")
    before = r.events
    with pytest.raises(ResponseStateError):
        r.stream.tool_output("second")
    with pytest.raises(ResponseStateError):
        r.stream.tool_output(error="second")
    assert r.events == before
    r.play([turn(enc, Msg("ok", "final"))])
    r.finish()
    final = r.validate()
    assert final["output"][0]["output"] == "first"


def test_start_twice(vocab: Vocab) -> None:
    r = Run(vocab)
    r.start()
    with pytest.raises(ResponseStateError):
        r.stream.start()
    r.finish()
    r.validate()


@pytest.mark.parametrize(
    "late",
    [
        lambda s: s.feed([12194]),
        lambda s: s.feed([]),
        lambda s: s.finish(),
        lambda s: s.finish("length"),
        lambda s: s.tool_output("x"),
        lambda s: s.start(),
        lambda s: s.feed_sse([12194]),
        lambda s: s.finish_sse(),
        lambda s: s.tool_output_sse("x"),
        lambda s: s.start_sse(),
    ],
    ids=[
        "feed",
        "feed-empty",
        "finish",
        "finish-length",
        "tool_output",
        "start",
        "feed_sse",
        "finish_sse",
        "tool_output_sse",
        "start_sse",
    ],
)
@pytest.mark.parametrize("pending", [False, True], ids=["idle", "call-pending"])
def test_calls_after_finish(
    vocab: Vocab, enc: Any, late: Callable[[ResponseStream], Any], pending: bool
) -> None:
    r = Run(vocab, tools=TOOLS)
    if pending:
        r.play([turn(enc, call(enc, '{"q": 1}', "github.search_issues"))])
    else:
        r.play([turn(enc, Msg("Hi", "final"))])
    r.finish()
    final = r.validate()
    with pytest.raises(ResponseStateError):
        late(r.stream)
    assert r.stream.finished
    assert r.stream.response() == final


@pytest.mark.parametrize(
    "tools",
    [
        [{"type": "file_search", "vector_store_ids": ["vs_1"]}],
        [{"type": "computer_use_preview"}],
        [{"name": "get_weather"}],
        [{"type": "function"}],
        [{"type": "function", "name": ""}],
        [{"type": "mcp", "server_url": "http://127.0.0.1:8765/mcp"}],
        [{"type": "mcp", "server_label": ""}],
        [TOOLS[0], {"type": "nope"}],
    ],
    ids=[
        "file_search",
        "computer_use",
        "no-type",
        "function-no-name",
        "function-empty-name",
        "mcp-no-label",
        "mcp-empty-label",
        "second-tool-unknown",
    ],
)
def test_bad_tools(vocab: Vocab, tools: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        ResponseStream(vocab, tools=tools)
    assert "tools[" in str(info.value)


def test_feed_auto_starts(vocab: Vocab, enc: Any) -> None:
    r = Run(vocab)
    first = r.feed(turn(enc, Msg("Hi", "final")).tokens[:1])
    assert types(first) == ["created", "in_progress"]
    r.feed(turn(enc, Msg("Hi", "final")).tokens[1:])
    r.finish()
    r.validate()


def test_response_mid_stream(vocab: Vocab, enc: Any) -> None:
    r = Run(vocab)
    r.feed(turn(enc, Msg("Hi there", "final")).tokens[:5])
    mid = r.stream.response()
    assert mid["status"] == "in_progress"
    assert mid["id"] == r.events[0]["response"]["id"]
    assert not r.stream.finished
