"""Making transcripts: `from_messages` against openai-harmony's rendering, and
`from_response` as the inverse of the engine's routing (a replay gives the items back).

The oracles: openai-harmony 0.0.8 renders each message (``HarmonyEncoding.render``)
and reads the tokens back (``parse_messages_from_completion_tokens``); the
engine's own replay of a bundled transcript gives the responses to invert. The
only thing adjusted in openai-harmony's rendering is what the rule of the format
says (docs/architecture.md, Making a transcript): a turn's first message has no
``<|start|>assistant`` (the prompt holds it), and the stop tokens are the
model's (``<|call|>`` after a call and ``<|return|>`` otherwise at the end of a
turn, ``<|end|>`` elsewhere).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai_harmony import Message, Role
from stream_checks.strict import validate_stream

from harmony_stream import HarmonyParser, Vocab
from harmony_stream._native import CHANNELS
from harmony_stream.replay import replay_events, replay_response
from harmony_stream.transcript import (
    TranscriptError,
    from_messages,
    from_response,
    load_transcript,
    parse_transcript,
)

START, ASSISTANT, END, RETURN, CALL = 200006, 173781, 200007, 200002, 200012
CORPUS = sorted(Path(str(resources.files("harmony_stream") / "data" / "corpus")).glob("*.json"))
IDS = ("id", "call_id", "container_id")

# --------------------------------------------------------------------------- the oracle


def harmony_message(msg: dict[str, Any]) -> Message:
    m = Message.from_role_and_content(Role.ASSISTANT, msg["content"]).with_channel(msg["channel"])
    if "recipient" in msg:
        m = m.with_recipient(msg["recipient"])
    if "content_type" in msg:
        m = m.with_content_type(msg["content_type"])
    return m


def oracle_turn(enc: Any, messages: list[dict[str, Any]]) -> list[int]:
    """openai-harmony's rendering of one turn, with the model's start and stop tokens."""
    tokens: list[int] = []
    for j, msg in enumerate(messages):
        rendered = enc.render(harmony_message(msg))
        assert rendered[:2] == [START, ASSISTANT]
        assert rendered[-1] == (CALL if "recipient" in msg else END)
        if j == len(messages) - 1:
            rendered[-1] = CALL if "recipient" in msg else RETURN
        else:
            rendered[-1] = END
        tokens += rendered[2:] if j == 0 else rendered
    return tokens


def oracle_transcript(enc: Any, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns: assistant messages up to each tool message, rendered by the oracle."""
    turns: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for msg in doc["messages"]:
        if msg.get("role") == "tool":
            turns.append({"tokens": oracle_turn(enc, pending), "finish_reason": "stop"})
            turns.append({"tool_output": {"output": msg.get("content"), "error": msg.get("error")}})
            pending = []
        else:
            pending.append(msg)
    if pending:
        turns.append({"tokens": oracle_turn(enc, pending), "finish_reason": "stop"})
    return turns


# --------------------------------------------------------------------------- documents

WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
RECIPIENTS = st.one_of(
    st.builds(lambda n: f"functions.{n}", WORD),
    st.sampled_from(["python", "browser.search", "browser.open", "browser.find"]),
    st.builds(lambda a, b: f"{a}.{b}", WORD, WORD),
)
CONTENT_TYPES = st.sampled_from([None, "<|constrain|>json", "code", "json", "<|constrain|>yaml"])
TEXT = st.text(max_size=60)


@st.composite
def plain_messages(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {"channel": draw(st.sampled_from(CHANNELS)), "content": draw(TEXT)}
    if draw(st.booleans()):
        msg["role"] = "assistant"
    return msg


@st.composite
def call_messages(draw: st.DrawFn) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "channel": draw(st.sampled_from(CHANNELS)),
        "recipient": draw(RECIPIENTS),
        "content": draw(TEXT),
    }
    content_type = draw(CONTENT_TYPES)
    if content_type is not None:
        msg["content_type"] = content_type
    return msg


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Turns of plain messages, each but maybe the last ended by a call and its result."""
    messages: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        turn = draw(st.lists(plain_messages(), max_size=3))
        call = draw(call_messages()) if draw(st.booleans()) or not turn else None
        if call is not None:
            turn.append(call)
        messages += turn
        if call is not None and draw(st.booleans()):
            result = {"role": "tool", "name": call["recipient"]}
            result["error" if draw(st.booleans()) else "content"] = draw(TEXT)
            messages.append(result)
        else:
            break
    return {"tools": [], "messages": messages}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents())
def test_tokens_are_openai_harmony_rendering(vocab: Vocab, enc: Any, doc: dict[str, Any]) -> None:
    made = from_messages(vocab, doc)
    assert made["turns"] == oracle_transcript(enc, doc)
    # openai-harmony reads each turn back as the messages it came from.
    docs_turns = [t for t in made["turns"] if "tokens" in t]
    assistant = [m for m in doc["messages"] if m.get("role") != "tool"]
    parsed = [
        m
        for t in docs_turns
        for m in enc.parse_messages_from_completion_tokens(t["tokens"], Role.ASSISTANT)
    ]
    assert [m.to_dict()["content"][0]["text"] for m in parsed] == [m["content"] for m in assistant]
    assert [m.channel for m in parsed] == [m["channel"] for m in assistant]
    assert [m.recipient for m in parsed] == [m.get("recipient") for m in assistant]
    assert [m.content_type for m in parsed] == [m.get("content_type") for m in assistant]
    # harmony-stream's parser reads the same, strict, and lenient with nothing to recover.
    ours = []
    for t in docs_turns:
        for strict in (True, False):
            parser = HarmonyParser(vocab, strict=strict)
            parser.process_many(t["tokens"])
            parser.process_eos()
            assert not parser.recoveries
        ours += [m.to_dict() for m in parser.messages]
    assert ours == [m.to_dict() for m in parsed]


def test_the_readme_example(vocab: Vocab, enc: Any) -> None:
    """The README's messages example: oracle tokens, and the items it replays as."""
    path = Path(str(resources.files("harmony_stream") / "data" / "example_messages.json"))
    doc = json.loads(path.read_text())
    made = from_messages(vocab, doc)
    assert made["turns"] == oracle_transcript(enc, doc)
    response = replay_response(parse_transcript(made), vocab)
    assert [i["type"] for i in response["output"]] == ["reasoning", "function_call", "message"]
    call = response["output"][1]
    assert (call["name"], call["arguments"]) == ("get_weather", doc["messages"][1]["content"])
    assert response["output"][2]["content"][0]["text"] == doc["messages"][3]["content"]


# --------------------------------------------------------------------------- responses


def items(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The output items without their ids (new ones are made on every replay)."""
    return [{k: v for k, v in item.items() if k not in IDS} for item in response["output"]]


def replay(transcript: dict[str, Any], vocab: Vocab) -> dict[str, Any]:
    events = list(replay_events(parse_transcript(transcript), vocab))
    validate_stream([e.model_dump() for e in events])
    return replay_response(parse_transcript(transcript), vocab)


def test_there_is_a_corpus() -> None:
    assert len(CORPUS) >= 7


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_response_round_trips(vocab: Vocab, path: Path) -> None:
    """corpus transcript → replay → from_response → replay again: the same items."""
    original = load_transcript(path)
    response = replay_response(original, vocab)
    made = from_response(vocab, response)
    again = replay(made, vocab)
    assert items(again) == items(response)
    assert again["tools"] == response["tools"]
    # The output list alone gives the same turns.
    assert from_response(vocab, response["output"])["turns"] == made["turns"]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_response_through_json(vocab: Vocab, path: Path, tmp_path: Path) -> None:
    """The response as saved (JSON) and the CLI's output file give the same items."""
    from harmony_stream.cli import main

    response = replay_response(load_transcript(path), vocab)
    saved = tmp_path / "response.json"
    saved.write_text(json.dumps(response))
    out = tmp_path / "transcript.json"
    assert main(["transcript", str(saved), "-o", str(out)]) == 0
    assert items(replay_response(load_transcript(out), vocab)) == items(response)


# Items in the engine's own form, so a replay can give them back exactly.
TEXTS = st.text(max_size=40)
NAMES = WORD


@st.composite
def model_items(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["reasoning", "message"]))
    text = draw(TEXTS)
    if kind == "reasoning":
        return {
            "type": "reasoning",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": text}],
            "status": "completed",
        }
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        "phase": draw(st.sampled_from(["commentary", "final_answer"])),
        "status": "completed",
    }


@st.composite
def call_items(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["function", "mcp", "python", "web"]))
    args = json.dumps(draw(st.dictionaries(NAMES, TEXTS, max_size=2)))
    if kind == "function":
        return {
            "type": "function_call",
            "name": draw(NAMES),
            "arguments": args,
            "status": "completed",
        }
    if kind == "mcp":
        item: dict[str, Any] = {
            "type": "mcp_call",
            "server_label": draw(NAMES.filter(lambda s: s != "functions")),
            "name": draw(NAMES),
            "arguments": args,
        }
        if draw(st.booleans()):
            item["output"] = draw(TEXTS)
            item["status"] = "completed"
        else:
            text = draw(TEXTS)
            item["error"] = {
                "type": "mcp_tool_execution_error",
                "content": [{"type": "text", "text": text}],
            }
            item["status"] = "failed"
        if item["server_label"] == "python" or f"{item['server_label']}.{item['name']}" in (
            "browser.search",
            "browser.open",
            "browser.find",
        ):
            item["server_label"] = "x" + item["server_label"]
        return item
    if kind == "python":
        return {
            "type": "code_interpreter_call",
            "code": draw(TEXTS),
            "outputs": [{"type": "logs", "logs": draw(TEXTS)}],
            "status": draw(st.sampled_from(["completed", "failed"])),
        }
    action = draw(
        st.one_of(
            st.builds(lambda q: {"type": "search", "query": q}, TEXTS),
            st.just({"type": "search"}),
            st.builds(lambda u: {"type": "open_page", "url": u}, TEXTS),
            st.just({"type": "open_page", "url": None}),
            st.builds(lambda p, u: {"type": "find_in_page", "pattern": p, "url": u}, TEXTS, TEXTS),
        )
    )
    return {
        "type": "web_search_call",
        "action": action,
        "status": draw(st.sampled_from(["completed", "failed"])),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(output=st.lists(st.one_of(model_items(), call_items()), min_size=1, max_size=8))
def test_random_responses_round_trip(vocab: Vocab, output: list[dict[str, Any]]) -> None:
    made = from_response(vocab, {"output": copy.deepcopy(output), "tools": []})
    assert items(replay(made, vocab)) == output


def test_function_output_items_are_used(vocab: Vocab) -> None:
    """A conversation's function_call_output (after its call) becomes the tool_output."""
    output = [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "ok"}],
        },
    ]
    made = from_response(vocab, output)
    assert made["turns"][1] == {"tool_output": {"output": "42", "error": None}}
    assert len(made["turns"]) == 3


def test_openai_shapes_are_read(vocab: Vocab, enc: Any) -> None:
    """What OpenAI saves: a summary-only reasoning item, an error string, phase missing."""
    output = [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
        {"type": "mcp_call", "server_label": "gh", "name": "s", "arguments": "{}", "error": "boom"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A"}]},
        {"type": "mcp_list_tools", "server_label": "gh", "tools": []},
    ]
    made = from_response(vocab, output)
    expected = oracle_transcript(
        enc,
        {
            "messages": [
                {"channel": "analysis", "content": "think"},
                {
                    "channel": "commentary",
                    "recipient": "gh.s",
                    "content_type": "<|constrain|>json",
                    "content": "{}",
                },
                {"role": "tool", "name": "gh.s", "error": "boom"},
                {"channel": "final", "content": "A"},
            ]
        },
    )
    assert made["turns"] == expected


# --------------------------------------------------------------------------- errors


def doc_with(*messages: Any, **top: Any) -> dict[str, Any]:
    return {"messages": list(messages), **top}


CALL_MSG = {"channel": "commentary", "recipient": "functions.f", "content": "{}"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "a messages document is a JSON object"),
        ({}, "missing 'messages'"),
        (doc_with(), "'messages' must be a non-empty list"),
        (
            doc_with({"channel": "final", "content": ""}, tokens=[]),
            "'tokens' belongs to a transcript",
        ),
        (doc_with(1), "messages[0] must be an object"),
        (doc_with({"channel": "final"}), "messages[0]: missing 'content'"),
        (doc_with({"channel": "summary", "content": ""}), 'messages[0]: channel "summary"'),
        (doc_with({"content": ""}), "messages[0]: missing 'channel': the channel is one of"),
        (doc_with({"channel": "final", "content": 3}), "messages[0]: 'content' is 3"),
        (
            doc_with({"channel": "final", "content": "", "recepient": "x"}),
            'messages[0]: unknown key "recepient"',
        ),
        (doc_with({"role": "user", "content": "hi"}), 'messages[0]: role "user"'),
        (
            doc_with(
                {"channel": "final", "content": ""}, {"role": "tool", "name": "x", "content": ""}
            ),
            "messages[1]: a tool message answers the call just before it",
        ),
        (
            doc_with({"role": "tool", "name": "x", "content": ""}),
            "messages[0]: a tool message answers the call just before it",
        ),
        (
            doc_with(CALL_MSG, {"role": "tool", "name": "functions.g", "content": ""}),
            "messages[1]: 'name' must be the recipient of the call it answers, \"functions.f\"",
        ),
        (
            doc_with(CALL_MSG, {"role": "tool", "name": "functions.f"}),
            "messages[1]: a tool message has either 'content'",
        ),
        (
            doc_with(CALL_MSG, {"role": "tool", "name": "functions.f", "content": "", "error": ""}),
            "either 'content' (the tool's output) or 'error', not both",
        ),
        (
            doc_with(CALL_MSG, {"channel": "final", "content": ""}),
            "messages[1]: messages[0] is a call (to functions.f), so the next message is its",
        ),
        (
            doc_with({"channel": "final", "content": "", "content_type": "json"}),
            "messages[0]: a 'content_type' needs a 'recipient'",
        ),
        (
            doc_with({"channel": "commentary", "recipient": "functions.a b", "content": ""}),
            "messages[0]: 'recipient' must be one word",
        ),
        (
            doc_with({"channel": "final", "content": ""}, tools=[{"type": "file_search"}]),
            "file_search",
        ),
        (doc_with({"channel": "final", "content": ""}, tools={}), "'tools' must be a list"),
        (
            doc_with({"channel": "final", "content": ""}, max_output_tokens=0),
            "'max_output_tokens' must be a whole number from 1",
        ),
    ],
)
def test_bad_documents_say_where(vocab: Vocab, doc: Any, message: str) -> None:
    with pytest.raises(TranscriptError) as info:
        from_messages(vocab, doc, source="m.json")
    assert str(info.value).startswith("m.json: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"output": {}}, "a response's 'output' must be a list"),
        ([{"type": "file_search_call"}], 'output[0]: item type "file_search_call" is not one'),
        ([{"type": "function_call", "name": "a b", "arguments": "{}"}], "output[0]: 'name'"),
        ([{"type": "function_call", "name": "f"}], "output[0]: missing 'arguments'"),
        (
            [{"type": "mcp_call", "server_label": "a.b", "name": "c", "arguments": "{}"}],
            "output[0]: the call a.b.c would read back as another kind of call",
        ),
        (
            [
                {"type": "mcp_call", "server_label": "gh", "name": "c", "arguments": "{}"},
                {"type": "message", "content": []},
            ],
            "output[1]: the call before it (to gh.c) has no result",
        ),
        ([{"type": "web_search_call", "action": {"type": "scroll"}}], "output[0]: action type"),
        ([{"type": "mcp_list_tools"}], "the response has no output item gpt-oss writes"),
        (
            [{"type": "function_call_output", "call_id": "c", "output": ""}],
            "output[0]: a function_call_output comes right after its function_call",
        ),
        ([{"type": "message", "role": "user", "content": []}], "output[0]: a message of the model"),
    ],
)
def test_bad_responses_say_where(vocab: Vocab, response: Any, message: str) -> None:
    with pytest.raises(TranscriptError) as info:
        from_response(vocab, response, source="r.json")
    assert str(info.value).startswith("r.json: ")
    assert message in str(info.value)


def test_other_keys_are_kept_as_a_transcript_keeps_them(vocab: Vocab) -> None:
    doc = doc_with({"channel": "final", "content": "x"}, description="a test", max_output_tokens=9)
    made = from_messages(vocab, doc)
    assert made["description"] == "a test"
    assert made["max_output_tokens"] == 9
    assert parse_transcript(made).extra == {"description": "a test"}
