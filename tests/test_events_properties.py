"""Property tests of the Responses event engine (``ResponseStream``),
docs/architecture.md, Event contract.

Four properties, each over generated Harmony token streams:

1. Random conversations (1-5 assistant messages rendered by openai-harmony, random
   Unicode, every item kind, server calls followed by a tool result and a new turn),
   fed token by token: the event stream is well formed (see ``check_stream``) and
   every item carries exactly the rendered text, kind, name and tool result.
2. Step splits: the same tokens fed in steps of random sizes give the same final
   ``output`` (ids included: same ``id_seed``), usage and texts, and the same event
   types once consecutive deltas are merged.
3. Truncation: every cut position of every turn, then ``finish("length")``: a
   well-formed ``response.incomplete`` stream; the item open at the cut closes
   ``incomplete`` and holds exactly the fed content bytes decoded with
   ``errors="replace"`` (so an incomplete UTF-8 tail becomes one U+FFFD, and only then).
4. Random garbage built from Harmony pieces, random step sizes and finish reasons:
   no exception, and a well-formed stream that ends the way the reason says.

``HS_FUZZ_EXAMPLES=N`` raises the example counts (property 3 runs N // 10 transcripts,
each cut at every position).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai_harmony import Message, Role
from stream_checks.strict import ID_PREFIX

from harmony_stream import ResponseEvent, ResponseStream, Vocab

RETURN, CONSTRAIN, CHANNEL, START, END, MESSAGE, CALL = (
    200002,
    200003,
    200005,
    200006,
    200007,
    200008,
    200012,
)
SPECIALS = (RETURN, CONSTRAIN, CHANNEL, START, END, MESSAGE, CALL)
ASSISTANT = 173781  # "assistant"

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "get_weather", "parameters": {}},
    {"type": "mcp", "server_label": "github", "server_url": "http://127.0.0.1:8765/mcp"},
    {"type": "web_search_preview"},
    {"type": "code_interpreter", "container": {"type": "auto"}},
]
ID_SEED = 7


def _examples(default: int, divisor: int = 1) -> int:
    scaled = int(os.environ.get("HS_FUZZ_EXAMPLES", "0")) // divisor
    return max(default, scaled)


def _settings(default: int, divisor: int = 1) -> Callable[[Any], Any]:
    return settings(
        max_examples=_examples(default, divisor),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------------------
# The event-stream checker: what every stream must satisfy, whatever it was fed.
# --------------------------------------------------------------------------------------

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}

# delta type -> (done type, field of the done event and of the item holding the text)
TEXT_FAMILIES: dict[str, tuple[str, str]] = {
    "response.reasoning_text.delta": ("response.reasoning_text.done", "text"),
    "response.output_text.delta": ("response.output_text.done", "text"),
    "response.function_call_arguments.delta": (
        "response.function_call_arguments.done",
        "arguments",
    ),
    "response.mcp_call_arguments.delta": ("response.mcp_call_arguments.done", "arguments"),
    "response.code_interpreter_call_code.delta": (
        "response.code_interpreter_call_code.done",
        "code",
    ),
}
DONE_TO_DELTA = {done: delta for delta, (done, _) in TEXT_FAMILIES.items()}

ADDED, DONE = "response.output_item.added", "response.output_item.done"
PART_ADDED, PART_DONE = "response.content_part.added", "response.content_part.done"

# docs/architecture.md, Event contract, per item type: the stages in order (a
# stage is one event type, or a set of alternatives). Deltas may repeat; any other
# stage occurs at most once.
LIFECYCLE: dict[str, list[frozenset[str]]] = {
    t: [frozenset(s.split("|")) for s in stages]
    for t, stages in {
        "reasoning": [
            ADDED,
            PART_ADDED,
            "response.reasoning_text.delta",
            "response.reasoning_text.done",
            PART_DONE,
            DONE,
        ],
        "message": [
            ADDED,
            PART_ADDED,
            "response.output_text.delta",
            "response.output_text.done",
            PART_DONE,
            DONE,
        ],
        "function_call": [
            ADDED,
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            DONE,
        ],
        "mcp_call": [
            ADDED,
            "response.mcp_call.in_progress",
            "response.mcp_call_arguments.delta",
            "response.mcp_call_arguments.done",
            "response.mcp_call.completed|response.mcp_call.failed",
            DONE,
        ],
        "code_interpreter_call": [
            ADDED,
            "response.code_interpreter_call.in_progress",
            "response.code_interpreter_call_code.delta",
            "response.code_interpreter_call_code.done",
            "response.code_interpreter_call.interpreting",
            "response.code_interpreter_call.completed",
            DONE,
        ],
        "web_search_call": [
            ADDED,
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
            DONE,
        ],
    }.items()
}
# The events saying that the server-run tool finished (only after it ran).
OUTCOME = {
    "response.mcp_call.completed",
    "response.mcp_call.failed",
    "response.code_interpreter_call.completed",
    "response.web_search_call.completed",
}


@dataclass
class ItemTrace:
    """One output item as seen in the event stream."""

    index: int
    added: dict[str, Any]
    types: list[str] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    # key: content_index (reasoning, message) or None (arguments, code)
    deltas: dict[int | None, list[str]] = field(default_factory=dict)
    done_texts: dict[int | None, str] = field(default_factory=dict)
    done: dict[str, Any] | None = None

    @property
    def type(self) -> str:
        return str(self.added["type"])

    @property
    def status(self) -> str:
        assert self.done is not None
        return str(self.done["status"])

    def delta_text(self, key: int | None = None) -> str:
        return "".join(self.deltas.get(key, []))

    def text(self) -> str | None:
        """The item's text in its done item: content part 0, arguments or code."""
        assert self.done is not None
        return item_text(self.done)


def item_text(item: dict[str, Any]) -> str | None:
    t = item["type"]
    if t in ("reasoning", "message"):
        parts = item["content"]
        return None if not parts else str(parts[0]["text"])
    if t in ("function_call", "mcp_call"):
        return str(item["arguments"])
    if t == "code_interpreter_call":
        return str(item["code"])
    return None


def _text_key(item_type: str, ev: dict[str, Any]) -> int | None:
    if item_type in ("reasoning", "message"):
        return int(ev["content_index"])
    assert "content_index" not in ev, ev
    return None


def check_lifecycle(tr: ItemTrace) -> None:
    """The item's events follow its lifecycle (Event contract) (a prefix-closed one if cut)."""
    stages = LIFECYCLE[tr.type]
    where: list[int] = []
    for t in tr.types:
        hits = [i for i, s in enumerate(stages) if t in s]
        assert hits, (tr.type, t, tr.types)
        where.append(hits[0])
    assert tr.types[0] == ADDED
    assert tr.types[-1] == DONE
    for a, b, t in zip(where, where[1:], tr.types[1:], strict=False):
        assert a < b or (a == b and t.endswith(".delta")), ("out of order", tr.types)
    present = set(where)
    status = tr.status
    outcome = [t for t in tr.types if t in OUTCOME]
    if status == "completed":
        missing = [
            sorted(stages[i])
            for i in range(len(stages))
            if i not in present and not any(t.endswith(".delta") for t in stages[i])
        ]
        assert not missing, ("completed item lacks lifecycle events", missing, tr.types)
        assert outcome != ["response.mcp_call.failed"], tr.types
    elif status == "failed":
        # Only a server-run tool fails. mcp has its own event; openai-python has no
        # failed event for code interpreter / web search: they must not say completed.
        assert tr.type in ("mcp_call", "code_interpreter_call", "web_search_call"), tr.type
        assert outcome == (["response.mcp_call.failed"] if tr.type == "mcp_call" else []), tr.types
    else:
        assert status == "incomplete", status
        # The tool never ran for an incomplete call.
        assert outcome == [], tr.types


@dataclass
class StreamTrace:
    events: list[dict[str, Any]]
    items: list[ItemTrace]
    terminal: dict[str, Any]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


def check_stream(events: Sequence[ResponseEvent], final: dict[str, Any]) -> StreamTrace:
    """The contract every stream meets (docs/architecture.md, Event contract); returns its items.

    * every event validates as openai-python's ``ResponseStreamEvent``; its dump has the
      same type and sequence number; sequence numbers are 0, 1, 2, ... with no gap;
    * ``response.created``, ``response.in_progress`` first; exactly one terminal event,
      last; its response is ``response()`` and validates;
    * items are opened by ``output_item.added`` with output_index 0, 1, 2, ... one at a
      time; every event in between names that item (index, id); every added has a done
      with the same id and type; ids are unique and carry their prefix;
    * content parts: content_index from 0, each part added then done;
    * no empty delta; the concatenated deltas equal the ``.done`` text, the part's text
      in ``content_part.done`` and the text in the done item;
    * each item follows its lifecycle (``check_lifecycle``);
    * the terminal response's ``output`` is the list of done items, in order.
    """
    dumps: list[dict[str, Any]] = []
    for i, ev in enumerate(events):
        d = ev.model_dump()
        assert ev.sequence_number == i, (i, ev.sequence_number, d)
        assert d["sequence_number"] == i, d
        assert d["type"] == ev.type, d
        ev.to_openai()  # raises if openai-python rejects it
        dumps.append(d)
    types = [d["type"] for d in dumps]
    assert types[:2] == ["response.created", "response.in_progress"], types[:3]
    for d in dumps[:2]:
        assert d["response"]["status"] == "in_progress"
        assert d["response"]["output"] == []
    terminals = [i for i, t in enumerate(types) if t in TERMINAL]
    assert terminals == [len(types) - 1], ("terminal events", terminals, types[-3:])

    items: list[ItemTrace] = []
    open_item: ItemTrace | None = None
    open_part: int | None = None
    for d in dumps[2:-1]:
        t = d["type"]
        if t == ADDED:
            assert open_item is None, ("item added while another is open", d)
            assert d["output_index"] == len(items), d
            assert d["item"]["status"] == "in_progress", d
            open_item = ItemTrace(index=len(items), added=d["item"])
            items.append(open_item)
            open_part = None
        assert open_item is not None, ("event outside an item", d)
        assert d["output_index"] == open_item.index, (d, open_item.index)
        item_id = d["item"]["id"] if "item" in d else d["item_id"]
        assert item_id == open_item.added["id"], (d, open_item.added)
        open_item.types.append(t)
        open_item.seqs.append(d["sequence_number"])
        if t == PART_ADDED:
            assert open_part is None
            assert d["content_index"] == len(open_item.done_texts), d
            assert d["part"]["text"] == ""
            open_part = d["content_index"]
        elif t == PART_DONE:
            assert open_part == d["content_index"], d
            assert d["part"]["text"] == open_item.done_texts.get(open_part), (d, open_item)
            open_part = None
        elif t in TEXT_FAMILIES:
            key = _text_key(open_item.type, d)
            assert key == open_part, (d, open_part)
            assert key not in open_item.done_texts, ("delta after done", d)
            assert isinstance(d["delta"], str)
            assert d["delta"] != "", ("empty delta", d)
            open_item.deltas.setdefault(key, []).append(d["delta"])
        elif t in DONE_TO_DELTA:
            key = _text_key(open_item.type, d)
            assert key not in open_item.done_texts, ("second done", d)
            text = d[TEXT_FAMILIES[DONE_TO_DELTA[t]][1]]
            assert text == open_item.delta_text(key), (text, open_item.deltas)
            open_item.done_texts[key] = text
            if t == "response.function_call_arguments.done":
                assert d["name"] == open_item.added["name"], d
        elif t == DONE:
            assert open_part is None, ("item done with a part open", d)
            it = d["item"]
            assert it["type"] == open_item.type, d
            assert it["id"] == open_item.added["id"], d
            open_item.done = it
            # The item holds the same text as its deltas and its .done event.
            if open_item.type in ("reasoning", "message"):
                texts = [p["text"] for p in it["content"]]
                assert texts == [
                    open_item.done_texts.get(i, open_item.delta_text(i)) for i in range(len(texts))
                ], (it, open_item.deltas)
                assert len(texts) == len(open_item.done_texts), (it, open_item.types)
            elif open_item.type != "web_search_call":
                text = item_text(it)
                assert text == open_item.delta_text(None), (it, open_item.deltas)
                if None in open_item.done_texts:
                    assert text == open_item.done_texts[None]
            check_lifecycle(open_item)
            open_item = None
    assert open_item is None, ("item never done", open_item)

    ids = [tr.added["id"] for tr in items]
    assert len(set(ids)) == len(ids), ids
    for tr in items:
        assert tr.added["id"].startswith(ID_PREFIX[tr.type]), tr.added

    terminal = dumps[-1]["response"]
    assert terminal["output"] == [tr.done for tr in items], (terminal["output"], items)
    assert terminal == final, ("terminal response != response()", terminal, final)
    usage = terminal["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"], usage
    return StreamTrace(dumps, items, terminal)


# --------------------------------------------------------------------------------------
# Generated conversations: rendered by openai-harmony.
# --------------------------------------------------------------------------------------

KINDS = ("reasoning", "final", "preamble", "function", "mcp", "python", "browser")
SERVER_KINDS = ("mcp", "python", "browser")
RECIPIENT = {
    "function": "functions.get_weather",
    "mcp": "github.search_issues",
    "python": "python",
    "browser": "browser.search",
}
ITEM_TYPE = {
    "reasoning": "reasoning",
    "final": "message",
    "preamble": "message",
    "function": "function_call",
    "mcp": "mcp_call",
    "python": "code_interpreter_call",
    "browser": "web_search_call",
}

# Graphemes and pieces that tokenizers split: emoji (with modifiers, ZWJ sequences,
# flags), combining marks, CJK (including outside the BMP), RTL, controls, JSON
# punctuation and the text of special tokens (ordinary tokens inside content).
PIECES = [
    "🤔",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "🇯🇵",
    "\u200d",
    "\ufe0f",
    "e\u0301",
    "a\u0308\u0301",
    "\u0301",
    "中文",
    "東京",
    "日本語",
    "𠀀",
    "한국어",
    "العربية",
    "नमस्ते",
    "ภาษาไทย",
    " ",
    "\n",
    "\t",
    "\r\n",
    '{"',
    '":',
    "}",
    "\\",
    "<|end|>",
    "<|call|>",
    "<|",
    " the",
    "Hello",
    "0",
]
texts = st.lists(
    st.one_of(st.sampled_from(PIECES), st.characters(codec="utf-8"), st.text(max_size=4)),
    max_size=14,
).map("".join)
# (output, None) or (None, error); an empty error is still an error.
tool_results = st.one_of(st.tuples(texts, st.none()), st.tuples(st.none(), texts))


@dataclass(frozen=True)
class Spec:
    """One assistant message to render."""

    kind: str
    text: str  # as rendered (for browser: the JSON arguments)
    channel: str
    content_type: str | None
    recipient_after_channel: bool  # the model's habit; the renderer puts it first
    byte_split: int  # 0: content as encoded; 1: each token as single bytes; 2: every other
    ret: bool = False  # a final message ending with <|return|> instead of <|end|>

    @property
    def recipient(self) -> str | None:
        return RECIPIENT.get(self.kind)

    @property
    def expected(self) -> str:
        """The item's text: content, arguments or code (browser: the query)."""
        if self.kind == "browser":
            return str(json.loads(self.text)["query"])
        return self.text


@st.composite
def specs(draw: Any) -> Spec:
    kind = draw(st.sampled_from(KINDS))
    text = draw(texts)
    if kind == "browser":
        text = json.dumps({"query": text}, ensure_ascii=draw(st.booleans()))
    channel = {"reasoning": "analysis", "final": "final", "preamble": "commentary"}.get(kind)
    if channel is None:
        channel = draw(st.sampled_from(["analysis", "commentary"]))
    content_type = None
    if kind in ("function", "mcp", "browser"):
        content_type = draw(st.sampled_from([None, "json", "<|constrain|>json"]))
    elif kind == "python":
        content_type = draw(st.sampled_from([None, "code"]))
    rac = kind in RECIPIENT and draw(st.booleans())
    return Spec(kind, text, channel, content_type, rac, draw(st.integers(0, 2)))


@st.composite
def conversations(draw: Any, max_messages: int = 5) -> tuple[list[Spec], list[tuple[Any, Any]]]:
    """1-5 messages (a function call ends the response) and one result per server call."""
    out: list[Spec] = []
    for _ in range(draw(st.integers(1, max_messages))):
        spec = draw(specs())
        out.append(spec)
        if spec.kind == "function":
            break
    if out[-1].kind == "final" and draw(st.booleans()):
        out[-1] = dataclasses.replace(out[-1], ret=True)
    results = [draw(tool_results) for s in out if s.kind in SERVER_KINDS]
    return out, results


@dataclass
class Rendered:
    spec: Spec
    tokens: list[int]  # from <|start|>assistant to the end token
    content: list[int]  # the content tokens (between <|message|> and the end token)


@dataclass
class Turn:
    """One completion: tokens after the prompt's ``<|start|>assistant``."""

    messages: list[Rendered]
    tokens: list[int]
    # per message: (start, index of <|message|>, index of its end token), turn coordinates
    spans: list[tuple[int, int, int]]
    result: tuple[str | None, str | None] | None  # tool_output after the turn


@functools.cache
def single_byte_tokens(vocab: Vocab) -> dict[int, int]:
    """byte value -> the token of that single byte (ids 0..1000)."""
    table: dict[int, int] = {}
    for i in range(1001):
        b = vocab.token_bytes(i)
        if len(b) == 1:
            table.setdefault(b[0], i)
    assert len(table) == 256
    return table


def render(enc: Any, vocab: Vocab, spec: Spec) -> Rendered:
    m = Message.from_role_and_content(Role.ASSISTANT, spec.text).with_channel(spec.channel)
    if spec.recipient is not None:
        m = m.with_recipient(spec.recipient)
    if spec.content_type is not None:
        m = m.with_content_type(spec.content_type)
    toks = list(enc.render(m))
    assert toks[:2] == [START, ASSISTANT], toks[:3]
    assert toks[-1] == (CALL if spec.recipient else END), toks[-1]
    at = toks.index(MESSAGE)
    header, content = toks[2:at], toks[at + 1 : -1]
    assert not any(t >= 199998 for t in content), content
    assert vocab.decode_bytes(content).decode() == spec.text
    if spec.recipient_after_channel:
        ct = f" {spec.content_type}" if spec.content_type else ""
        header = enc.encode(
            f"<|channel|>{spec.channel} to={spec.recipient}{ct}", allowed_special="all"
        )
    if spec.byte_split:
        one = single_byte_tokens(vocab)
        split: list[int] = []
        for i, t in enumerate(content):
            if spec.byte_split == 1 or i % 2 == 0:
                split.extend(one[b] for b in vocab.token_bytes(t))
            else:
                split.append(t)
        content = split
    end = RETURN if spec.ret else toks[-1]
    return Rendered(spec, [START, ASSISTANT, *header, MESSAGE, *content, end], content)


def build(enc: Any, vocab: Vocab, msgs: list[Spec], results: list[tuple[Any, Any]]) -> list[Turn]:
    turns: list[Turn] = []
    results_left = list(results)
    cur: list[Rendered] = []

    def close(result: tuple[Any, Any] | None) -> None:
        tokens: list[int] = []
        spans = []
        for r in cur:
            toks = r.tokens[2:] if not tokens else r.tokens
            start = len(tokens)
            at = start + toks.index(MESSAGE)
            tokens += toks
            spans.append((start, at, len(tokens) - 1))
        turns.append(Turn(list(cur), tokens, spans, result))
        cur.clear()

    for spec in msgs:
        cur.append(render(enc, vocab, spec))
        if spec.kind in SERVER_KINDS:
            close(results_left.pop(0))
    if cur or not turns or turns[-1].result is not None:
        close(None)  # (possibly empty: the completion after the last tool result)
    return turns


def new_stream(vocab: Vocab) -> ResponseStream:
    return ResponseStream(vocab, tools=TOOLS, id_seed=ID_SEED, input_tokens=11)


def run(
    vocab: Vocab, turns: list[Turn], steps: Callable[[list[int]], list[list[int]]]
) -> tuple[list[ResponseEvent], ResponseStream]:
    """Feeds every turn in the given steps, each tool result after its turn, then
    ``finish("stop")``; returns (events, stream)."""
    s = new_stream(vocab)
    events = s.start()
    for turn in turns:
        for chunk in steps(turn.tokens):
            events += s.feed(chunk)
        if turn.result is not None:
            assert s.awaiting_tool_output
            events += s.tool_output(*turn.result)
        assert not s.awaiting_tool_output
    events += s.finish("stop")
    assert s.finished
    return events, s


def one_by_one(tokens: list[int]) -> list[list[int]]:
    return [[t] for t in tokens]


def check_items_match(turns: list[Turn], trace: StreamTrace) -> None:
    """Each item is the rendered message: kind, text, names, tool result, status."""
    msgs = [(r.spec, t.result if r is t.messages[-1] else None) for t in turns for r in t.messages]
    assert [tr.type for tr in trace.items] == [ITEM_TYPE[s.kind] for s, _ in msgs], (
        [tr.type for tr in trace.items],
        [s.kind for s, _ in msgs],
    )
    for tr, (spec, result) in zip(trace.items, msgs, strict=True):
        item = tr.done
        assert item is not None
        if spec.kind == "browser":
            assert item["action"]["type"] == "search", item
            assert item["action"].get("query") == spec.expected, (item, spec)
        else:
            assert tr.text() == spec.expected, (tr.text(), spec)
            assert tr.delta_text(0 if tr.type in ("reasoning", "message") else None) == (
                spec.expected
            )
        if spec.kind in ("final", "preamble"):
            assert item["role"] == "assistant"
            assert item["phase"] == ("final_answer" if spec.kind == "final" else "commentary")
        if spec.kind == "function":
            assert item["name"] == "get_weather"
            assert item["call_id"].startswith("call_")
        if spec.kind == "mcp":
            assert (item["server_label"], item["name"]) == ("github", "search_issues"), item
        if spec.kind in SERVER_KINDS:
            assert result is not None
            output, error = result
            assert item["status"] == ("failed" if error is not None else "completed"), item
            if spec.kind == "mcp":
                if error is not None:
                    # openai-python 3.x: a structured McpToolCallError carrying the text.
                    assert item.get("error") == {
                        "type": "mcp_tool_execution_error",
                        "content": [{"type": "text", "text": error}],
                    }, item
                    assert item.get("output") is None, item
                else:
                    assert item.get("output") == output, item
                    assert item.get("error") is None, item
            if spec.kind == "python" and output:
                assert item["outputs"] == [{"type": "logs", "logs": output}], item
        else:
            assert item["status"] == "completed", item


# --------------------------------------------------------------------------------------
# 1. Random conversations
# --------------------------------------------------------------------------------------


@_settings(400)
@given(conv=conversations())
def test_random_conversations(
    enc: Any, vocab: Vocab, conv: tuple[list[Spec], list[tuple[Any, Any]]]
) -> None:
    turns = build(enc, vocab, *conv)
    events, s = run(vocab, turns, one_by_one)
    trace = check_stream(events, s.response())
    assert trace.events[-1]["type"] == "response.completed"
    assert trace.terminal["status"] == "completed"
    check_items_match(turns, trace)
    usage = trace.terminal["usage"]
    assert usage["output_tokens"] == sum(len(t.tokens) for t in turns), usage
    assert usage["input_tokens"] == 11


# --------------------------------------------------------------------------------------
# 2. Step splits
# --------------------------------------------------------------------------------------


def merged_types(trace: StreamTrace) -> list[str]:
    """Event types with each run of consecutive deltas (one item) merged into one."""
    out: list[str] = []
    for t in trace.types():
        if t.endswith(".delta") and out and out[-1] == t:
            continue
        out.append(t)
    return out


@_settings(300)
@given(conv=conversations(), data=st.data())
def test_step_splits(
    enc: Any, vocab: Vocab, conv: tuple[list[Spec], list[tuple[Any, Any]]], data: Any
) -> None:
    turns = build(enc, vocab, *conv)
    ref_events, ref_s = run(vocab, turns, one_by_one)
    ref = check_stream(ref_events, ref_s.response())

    def steps(tokens: list[int]) -> list[list[int]]:
        if data.draw(st.booleans(), label="one feed for the turn"):
            return [tokens]
        out: list[list[int]] = []
        i = 0
        while i < len(tokens):
            if data.draw(st.integers(0, 9), label="empty feed first") == 9:
                out.append([])
            n = data.draw(st.integers(1, len(tokens)), label="step")
            out.append(tokens[i : i + n])
            i += n
        return out

    events, s = run(vocab, turns, steps)
    got = check_stream(events, s.response())
    assert got.terminal["output"] == ref.terminal["output"]
    assert got.terminal["usage"] == ref.terminal["usage"]
    assert got.terminal["status"] == ref.terminal["status"]
    assert merged_types(got) == merged_types(ref)
    for a, b in zip(got.items, ref.items, strict=True):
        assert a.done_texts == b.done_texts
        assert {k: "".join(v) for k, v in a.deltas.items()} == {
            k: "".join(v) for k, v in b.deltas.items()
        }
    check_items_match(turns, got)


def test_one_feed_equals_token_by_token_example(enc: Any, vocab: Vocab) -> None:
    """A fixed example of property 2 (emoji split over tokens, a tool turn)."""
    msgs = [
        Spec("reasoning", "think 🤔 東京", "analysis", None, False, 1),
        Spec("mcp", '{"q": "👨‍👩‍👧"}', "commentary", "<|constrain|>json", True, 0),
        Spec("final", "done e\u0301", "final", None, False, 2, ret=True),
    ]
    turns = build(enc, vocab, msgs, [("found", None)])
    a_events, a = run(vocab, turns, one_by_one)
    b_events, b = run(vocab, turns, lambda toks: [toks])
    ta, tb = check_stream(a_events, a.response()), check_stream(b_events, b.response())
    assert ta.terminal["output"] == tb.terminal["output"]
    assert merged_types(ta) == merged_types(tb)
    check_items_match(turns, ta)


# --------------------------------------------------------------------------------------
# 3. Truncation at every position
# --------------------------------------------------------------------------------------


def expected_cut_text(vocab: Vocab, content: list[int]) -> str:
    """What the open item must hold: the fed content bytes, decoded with replacement.

    The fed bytes are a prefix of valid UTF-8, so the only invalid part can be an
    incomplete tail (1-3 bytes still pending); Python's decoder replaces it with
    exactly one U+FFFD, and adds none when no byte is pending.
    """
    return vocab.decode_bytes(content).decode("utf-8", errors="replace")


def run_cut(
    vocab: Vocab, turns: list[Turn], t: int, k: int
) -> tuple[list[ResponseEvent], ResponseStream, int]:
    """Feeds turns[:t] in full (with their results), turns[t].tokens[:k], finish("length").

    The cut turn goes in one feed (odd k) or token by token (even k). Returns the events,
    the stream and the index of the first event that finish() returned.
    """
    s = new_stream(vocab)
    events = s.start()
    for turn in turns[:t]:
        events += s.feed(turn.tokens)
        if turn.result is not None:
            events += s.tool_output(*turn.result)
    cut = turns[t].tokens[:k]
    if k % 2:
        events += s.feed(cut)
    else:
        for tok in cut:
            events += s.feed([tok])
    finish_from = len(events)
    events += s.finish("length")
    return events, s, finish_from


def check_cut(vocab: Vocab, turns: list[Turn], t: int, k: int) -> None:
    """Property 3 for one cut: see the module docstring."""
    events, s, finish_from = run_cut(vocab, turns, t, k)
    ctx = {"turn": t, "cut": k, "tokens": turns[t].tokens, "fed": turns[t].tokens[:k]}
    trace = check_stream(events, s.response())
    assert trace.events[-1]["type"] == "response.incomplete", ctx
    assert trace.terminal["status"] == "incomplete", ctx
    assert trace.terminal["incomplete_details"] == {"reason": "max_output_tokens"}, ctx
    assert trace.terminal["usage"]["output_tokens"] == (
        sum(len(x.tokens) for x in turns[:t]) + k
    ), ctx

    # The expected items: all of the earlier turns, then those of this turn whose
    # <|message|> was fed (a web search call appears at its <|call|>: the action is
    # known only then; one cut before that may add none or an incomplete one).
    expected: list[tuple[Rendered, str, str]] = []  # (message, text, status)
    for turn in turns[:t]:
        for r in turn.messages:
            expected.append((r, r.spec.expected, "?"))  # status: checked by property 1
    optional_last = False
    for r, (_start, at, end) in zip(turns[t].messages, turns[t].spans, strict=True):
        if k <= at:
            break
        fed = r.content[: min(k, end) - at - 1]
        complete = k > end
        awaiting = complete and r.spec.kind in SERVER_KINDS  # the tool never ran
        status = "completed" if complete and not awaiting else "incomplete"
        if r.spec.kind == "browser":
            text = r.spec.expected if complete else "?"
            optional_last = not complete
        else:
            text = expected_cut_text(vocab, fed)
        expected.append((r, text, status))

    items = trace.items
    if optional_last and len(items) == len(expected) - 1:
        expected.pop()
    assert [tr.type for tr in items] == [ITEM_TYPE[r.spec.kind] for r, _, _ in expected], (
        ctx,
        [tr.type for tr in items],
    )
    for tr, (r, text, status) in zip(items, expected, strict=True):
        if status != "?":
            assert tr.status == status, (ctx, r.spec, tr.done)
        if r.spec.kind != "browser":
            assert tr.text() == text, (ctx, r.spec, tr.text(), text)
        elif text != "?":
            assert tr.done is not None
            assert tr.done["action"].get("query") == text, ctx
    # Only the item open at the cut is closed by finish(), and it closes incomplete.
    closed_by_finish = [tr for tr in items if tr.seqs[-1] >= finish_from]
    assert len(closed_by_finish) <= 1, ctx
    for tr in closed_by_finish:
        assert tr.status == "incomplete", (ctx, tr.done)
    for tr in items:
        if tr.seqs[-1] < finish_from:
            assert tr.status != "incomplete", (ctx, tr.done)


@_settings(40, divisor=10)
@given(conv=conversations(max_messages=4))
def test_truncation_at_every_position(
    enc: Any, vocab: Vocab, conv: tuple[list[Spec], list[tuple[Any, Any]]]
) -> None:
    turns = build(enc, vocab, *conv)
    for t, turn in enumerate(turns):
        for k in range(len(turn.tokens) + 1):
            check_cut(vocab, turns, t, k)


def test_truncation_inside_a_character(enc: Any, vocab: Vocab) -> None:
    """A fixed example of property 3: cut between the bytes of one emoji."""
    turns = build(enc, vocab, [Spec("final", "a🤔b", "final", None, False, 1)], [])
    for k in range(len(turns[0].tokens) + 1):
        check_cut(vocab, turns, 0, k)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_truncation_while_a_server_call_awaits_its_result(
    enc: Any, vocab: Vocab, kind: str
) -> None:
    """A fixed example of property 3: the turn ends with a server call's <|call|> and the
    response hits max tokens before the tool result: that call is the open item."""
    text = '{"query": "q"}' if kind == "browser" else "{}"
    turns = build(enc, vocab, [Spec(kind, text, "analysis", None, False, 0)], [("r", None)])
    check_cut(vocab, turns, 0, len(turns[0].tokens))


# --------------------------------------------------------------------------------------
# 4. Random garbage from Harmony pieces
# --------------------------------------------------------------------------------------


@functools.cache
def garbage_pieces(enc: Any, vocab: Vocab) -> list[list[int]]:
    one = single_byte_tokens(vocab)
    e = functools.partial(enc.encode, allowed_special="all")
    words = [
        "assistant",
        "user",
        "system",
        "developer",
        "tool",
        "analysis",
        "final",
        "commentary",
        "commentary?",
        " to=functions.get_weather",
        " to=functions.unknown",
        " to=github.search_issues",
        "to=python",
        " to=browser.search",
        " to=browser.open",
        " to=browser.find",
        " to=container.exec",
        " to=",
        " json",
        "json",
        " code",
        '{"query": "x"}',
        '{"cursor": 1, "id": 2}',
        "Hello world",
        "\n",
        "東京🌸",
        "👨‍👩‍👧",
        # whole header fragments, so that random streams often reach every item kind
        "<|channel|>analysis<|message|>",
        "<|channel|>final<|message|>",
        "<|channel|>commentary<|message|>",
        "<|start|>assistant<|channel|>final<|message|>",
        "<|start|>assistant<|start|>assistant",
        "<|channel|>final <|constrain|>json<|message|>",
        " to=python<|channel|>analysis<|message|>",
        "<|channel|>analysis to=browser.search json<|message|>",
        "<|channel|>commentary to=github.search_issues <|constrain|>json<|message|>",
        "<|channel|>commentary to=functions.get_weather<|constrain|>json<|message|>",
        "<|channel|>commentary?<|message|>",
        "<|end|><|return|>",
    ]
    return [
        *([t] for t in SPECIALS for _ in range(3)),  # weighted: the grammar's skeleton
        [199998],
        [199999],
        [200000],
        [200014],
        [201087],
        *(e(w) for w in words),
        *([one[b]] for b in (0xF0, 0xFF, 0x80, 0x9F, 0xC3, 0xE6, 0xED, 0xA0)),
    ]


TERMINAL_FOR = {
    "stop": "response.completed",
    "length": "response.incomplete",
    "abort": "response.failed",
    "error": "response.failed",
}


def run_garbage(
    enc: Any, vocab: Vocab, data: Any
) -> tuple[list[ResponseEvent], ResponseStream, list[int], str, list[str]]:
    """Draws a stream of Harmony pieces and feeds it in random steps, answering every
    server call, then finishes for a random reason. Returns the events, the stream, the
    tokens, the reason and the calls made (a reproducer)."""
    pieces = garbage_pieces(enc, vocab)
    choice = data.draw(st.lists(st.integers(0, len(pieces) - 1), max_size=40), label="pieces")
    tokens = [t for i in choice for t in pieces[i]]
    reason = data.draw(st.sampled_from(["stop", "length", "abort", "error"]), label="reason")
    message = data.draw(st.one_of(st.none(), texts), label="message")
    s = new_stream(vocab)
    calls: list[str] = []
    events: list[ResponseEvent] = []
    if data.draw(st.booleans(), label="start()"):
        calls.append("start()")
        events += s.start()
    i = 0
    while i < len(tokens):
        if s.awaiting_tool_output:
            result = data.draw(tool_results, label="tool result")
            calls.append(f"tool_output{result!r}")
            events += s.tool_output(*result)
        n = data.draw(st.integers(1, 8), label="step")
        calls.append(f"feed({tokens[i : i + n]})")
        events += s.feed(tokens[i : i + n])
        i += n
    calls.append(f"finish({reason!r}, {message!r})")
    events += s.finish(reason, message)
    return events, s, tokens, reason, calls


@_settings(1500)
@given(data=st.data())
def test_random_garbage(enc: Any, vocab: Vocab, data: Any) -> None:
    events, s, tokens, reason, calls = run_garbage(enc, vocab, data)
    assert s.finished
    trace = check_stream(events, s.response())
    assert trace.events[-1]["type"] == TERMINAL_FOR[reason], calls
    if reason == "length":
        assert trace.terminal["incomplete_details"] == {"reason": "max_output_tokens"}, calls
    if reason in ("abort", "error"):
        assert trace.terminal["error"] is not None, calls
    assert trace.terminal["usage"]["output_tokens"] == len(tokens), calls


# --------------------------------------------------------------------------------------
# The shared stack validator (tests/stream_checks/strict.py) on the same kinds of streams
# --------------------------------------------------------------------------------------


@_settings(60)
@given(conv=conversations(), data=st.data())
def test_shared_validator_accepts_these_streams(
    enc: Any, vocab: Vocab, conv: tuple[list[Spec], list[tuple[Any, Any]]], data: Any
) -> None:
    """Streams that pass ``check_stream`` also pass ``stream_checks.validate_stream``:
    a whole conversation, one truncation of it, and one garbage stream."""
    from stream_checks import validate_stream

    turns = build(enc, vocab, *conv)
    events, s = run(vocab, turns, one_by_one)
    check_stream(events, s.response())
    assert validate_stream([e.model_dump() for e in events]) == s.response()

    t = data.draw(st.integers(0, len(turns) - 1), label="cut turn")
    k = data.draw(st.integers(0, len(turns[t].tokens)), label="cut")
    events, s, _ = run_cut(vocab, turns, t, k)
    check_stream(events, s.response())
    assert validate_stream([e.model_dump() for e in events]) == s.response()

    events, s, *_ = run_garbage(enc, vocab, data)
    check_stream(events, s.response())
    assert validate_stream([e.model_dump() for e in events]) == s.response()
