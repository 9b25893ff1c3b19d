"""Sanity of the harness, with harmony_stream's plugin OFF (vLLM 0.33.0 as shipped).

* the corpus is what it says (item kinds vLLM really produces, split multi-byte text);
* vLLM's own stream passes the vLLM-equivalent validator and openai-python's types;
* the engine client gets the model turns in order, in the output kind vLLM asked for;
* vLLM's tool loop really calls the MCP servers and the results reach the next prompt.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import corpus
import harness
import mcp_servers
import pytest
from corpus import CLEAN, CORPUS
from stream_checks import loose as validate

ALL_KINDS = {
    "reasoning",
    "message",
    "function_call",
    "mcp_call",
    "code_interpreter_call",
    "web_search_call",
}
WITH_BUILTIN_CALLS = tuple(e for e in CORPUS if any(corpus.builtin_call(t) for t in e.turns))


@pytest.fixture(autouse=True)
def _plugin_off() -> None:
    import vllm.parser.harmony

    assert not harness.plugin_active()
    assert vllm.parser.harmony.HarmonyParser.__module__ == "vllm.parser.harmony"


def ids(entries: tuple[corpus.Entry, ...]) -> list[str]:
    return [e.name for e in entries]


# --- the corpus -------------------------------------------------------------------


def test_corpus_covers_every_item_kind() -> None:
    assert set().union(*(e.kinds for e in CLEAN)) == ALL_KINDS
    assert all(e.turns and all(t.tokens for t in e.turns) for e in CORPUS)
    assert len({e.name for e in CORPUS}) == len(CORPUS)
    assert {t.finish_reason for e in CORPUS for t in e.turns} == {"stop", "length"}


def test_corpus_turns_end_where_a_model_stops() -> None:
    stops = set(corpus.ENCODING.stop_tokens_for_assistant_actions())
    for entry in CORPUS:
        for turn in entry.turns:
            assert (turn.tokens[-1] in stops) == (turn.finish_reason == "stop"), entry.name
            assert not stops & set(turn.tokens[:-1]), f"{entry.name}: a stop token mid-turn"
        # a turn that is not the last ends with a built-in tool call for vLLM's loop
        assert all(corpus.builtin_call(t) for t in entry.turns[:-1]), entry.name


def test_corpus_multibyte_characters_are_split_across_tokens() -> None:
    tokens = corpus.BY_NAME["multibyte"].tokens
    partial = [t for t in tokens if "\ufffd" in corpus.ENCODING.decode([t])]
    assert partial, "no token of the multibyte entry holds a partial UTF-8 sequence"
    assert "\ufffd" not in corpus.ENCODING.decode(list(tokens))


def test_corpus_message_contents_tokenwise() -> None:
    # every content of the clean corpus is one of the texts it was written from
    for entry in CLEAN:
        for turn in entry.turns:
            for _header, content in corpus.message_contents(turn.tokens):
                assert f"<|message|>{content}" in turn.text


@pytest.mark.parametrize("entry", CLEAN, ids=ids(CLEAN))
def test_corpus_kinds_are_what_vllm_produces(entry: corpus.Entry, tool_server: Any) -> None:
    streamed = harness.responses(entry, stream=True, tool_server=tool_server)
    final = harness.responses(entry, stream=False, tool_server=tool_server)
    assert streamed.status_code == final.status_code == 200
    produced = {
        ev["item"]["type"] for ev in streamed.events if ev["type"] == "response.output_item.done"
    } | {item["type"] for item in final.json["output"]}  # type: ignore[index]
    assert entry.kinds <= produced, f"vLLM produced {produced}"


# --- vLLM's own stream against the validators --------------------------------------


@pytest.mark.parametrize("step", [1, 4])
@pytest.mark.parametrize("entry", CLEAN, ids=ids(CLEAN))
def test_vllm_stream_passes_vllm_validator(
    entry: corpus.Entry, step: int, tool_server: Any
) -> None:
    r = harness.responses(entry, stream=True, step=step, tool_server=tool_server)
    assert r.status_code == 200, r.body[:500]
    assert r.app_error is None
    validate.check_stack(r.events)
    validate.check_framing(r.sse_event_names, r.events)
    validate.check_schema(r.events, r.final_response)


@pytest.mark.parametrize("entry", CLEAN, ids=ids(CLEAN))
def test_vllm_response_is_stable_across_steps_and_stream(
    entry: corpus.Entry, tool_server: Any
) -> None:
    finals = [
        harness.responses(entry, stream=True, step=step, tool_server=tool_server).final_response
        for step in (1, 3, 16)
    ]
    non_stream = harness.responses(entry, stream=False, tool_server=tool_server).json
    validate.check_schema([], non_stream)
    assert all(harness.normalize(f) == harness.normalize(non_stream) for f in finals)


def test_validator_rejects_broken_streams(tool_server: Any) -> None:
    events = harness.responses(CLEAN[0], stream=True, tool_server=tool_server).events
    validate.check_stack(events)
    kinds = [ev["type"] for ev in events]
    i_done = kinds.index("response.output_item.done")
    broken = [
        events[:i_done] + events[i_done + 1 :],  # an item never closed
        events[:-1],  # no terminal event
        [events[1], events[0], *events[2:]],  # envelope order
        [
            {**ev, "item_id": "other"} if ev["type"].endswith(".delta") else ev for ev in events
        ],  # id mismatch
    ]
    for stream in broken:
        with pytest.raises(AssertionError):
            validate.check_stack(stream)
    with pytest.raises(AssertionError):
        validate.check_schema([{**events[2], "type": "response.output_item.nope"}])
    with pytest.raises(AssertionError):
        validate.check_framing(["response.created", *kinds[1:]], [events[1], *events[1:]])


def test_validator_zero_delta_rule(tool_server: Any) -> None:
    # an item whose text is empty: its deltas are gone, the rest stays
    events = harness.responses(CLEAN[0], stream=True, tool_server=tool_server).events
    no_deltas = [ev for ev in events if ev["type"] != "response.reasoning_text.delta"]
    validate.check_stack(no_deltas)
    with pytest.raises(AssertionError):
        validate.check_stack(no_deltas, zero_deltas=False)  # vLLM's exact rule
    # a done of one kind does not close a delta of another
    swapped = [
        {**ev, "type": "response.output_text.done"}
        if ev["type"] == "response.reasoning_text.done"
        else ev
        for ev in events
    ]
    with pytest.raises(AssertionError):
        validate.check_stack(swapped)


def test_contract_checks_catch_vllm(tool_server: Any) -> None:
    # the checks of docs/architecture.md, Event contract, that the plugin has to
    # pass, on vLLM's own stream:
    # an empty reasoning item is missing from the stream (#48274), so the final
    # output has an item the stream never closed, and output_index starts at 1
    events = harness.responses(
        corpus.BY_NAME["empty_reasoning"], stream=True, tool_server=tool_server
    ).events
    with pytest.raises(AssertionError, match="final output has 2 items, the stream closed 1"):
        validate.check_final_is_streamed_items(events)
    with pytest.raises(AssertionError):
        validate.check_output_indices(events)
    # vLLM's envelope fields are unknown to openai-python; stripping leaves the items
    stripped = validate.strip_vllm_envelope_extensions(events)
    assert "kv_transfer_params" in events[0]["response"]
    assert "kv_transfer_params" not in stripped[0]["response"]
    assert stripped[-1]["response"]["output"] == events[-1]["response"]["output"]
    assert stripped[2:-1] == events[2:-1]  # between the envelope events: unchanged


# --- the engine client ------------------------------------------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=ids(CORPUS))
def test_engine_gets_turns_in_order(entry: corpus.Entry, tool_server: Any) -> None:
    step = 3
    r = harness.responses(entry, stream=True, step=step, tool_server=tool_server)
    turns = entry.turns
    if entry.name == "quirk_malformed_channel":
        turns = turns[:1]  # vLLM fails mid-stream on this one (see test_chat)
    assert [c.sub_request for c in r.calls] == list(range(len(turns)))
    response_id = r.events[0]["response"]["id"]
    assert [c.request_id for c in r.calls] == [f"{response_id}_{n}" for n in range(len(turns))]
    assert {c.output_kind for c in r.calls} == {"DELTA"}
    assert [c.outputs for c in r.calls] == [math.ceil(len(t.tokens) / step) for t in turns]
    # each prompt extends the previous one with that turn's messages
    for before, after, turn in zip(r.calls, r.calls[1:], turns, strict=False):
        assert after.prompt_token_ids[: len(before.prompt_token_ids)] == before.prompt_token_ids
        for _header, content in corpus.message_contents(turn.tokens):
            assert content in after.prompt_text[len(before.prompt_text) :]
    assert r.calls[0].prompt_text.endswith(f"{entry.prompt}<|end|><|start|>assistant")

    final = harness.responses(entry, stream=False, tool_server=tool_server)
    assert [c.output_kind for c in final.calls] == ["FINAL_ONLY"] * len(final.calls)
    assert [c.outputs for c in final.calls] == [1] * len(final.calls)


@pytest.mark.parametrize("stream", [True, False])
def test_chat_gets_the_first_turn(stream: bool) -> None:
    entry = corpus.BY_NAME["preamble_function_call"]
    r = harness.chat(entry, stream=stream)
    assert r.status_code == 200
    assert len(r.calls) == 1
    assert r.calls[0].request_id.startswith("chatcmpl-")
    assert r.calls[0].output_kind == ("DELTA" if stream else "FINAL_ONLY")
    assert r.calls[0].prompt_text.endswith(f"{entry.prompt}<|end|><|start|>assistant")
    if stream:
        assert r.done_marker


def test_tokenizer_stand_in_decodes_like_the_encoding() -> None:
    tok = harness.HarmonyTokenizer(corpus.ENCODING)
    tokens = list(corpus.BY_NAME["preamble_function_call"].tokens)
    assert tok.decode(tokens) == corpus.ENCODING.decode(tokens)
    plain = tok.decode(tokens, skip_special_tokens=True)
    assert "<|" not in plain
    assert "Let me look that up for you." in plain


# --- the tool server --------------------------------------------------------------


def test_container_exec_result_reaches_the_next_prompt(
    tool_server: Any, mcp: mcp_servers.RunningServers
) -> None:
    entry = corpus.BY_NAME["container_exec"]
    call = corpus.builtin_call(entry.turns[0])
    assert call is not None
    assert call.recipient == "container.exec"
    before = len(mcp.log.snapshot())
    r = harness.responses(entry, stream=True, tool_server=tool_server)
    assert r.status_code == 200
    received = mcp.log.snapshot()[before:]
    assert ("container", "exec", call.arguments) in received
    word = call.arguments["cmd"][1]
    digest = hashlib.sha256(word.encode()).hexdigest()
    assert digest not in r.calls[0].prompt_text
    assert f"{digest}  {word}" in r.calls[1].prompt_text


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("entry", WITH_BUILTIN_CALLS, ids=ids(WITH_BUILTIN_CALLS))
def test_tool_loop_calls_the_mcp_servers(
    entry: corpus.Entry, stream: bool, tool_server: Any, mcp: mcp_servers.RunningServers
) -> None:
    calls = [c for t in entry.turns if (c := corpus.builtin_call(t)) is not None]
    before = len(mcp.log.snapshot())
    r = harness.responses(entry, stream=stream, tool_server=tool_server)
    received = mcp.log.snapshot()[before:]
    assert r.status_code == 200
    tool_calls = [(s, t, a) for s, t, a in received if t != "cleanup_session"]
    assert [(s, t) for s, t, _ in tool_calls] == [(c.server, c.tool) for c in calls]
    for (_s, _t, got), want in zip(tool_calls, calls, strict=True):
        assert {k: got[k] for k in want.arguments} == want.arguments
    # vLLM cleans up each server it called, after the calls
    cleanups = [s for s, t, _ in received if t == "cleanup_session"]
    assert sorted(cleanups) == sorted({c.server for c in calls})
    assert all(t == "cleanup_session" for _s, t, _ in received[len(tool_calls) :])
    # each result, as the server gives it to any client, is in the next prompt
    for n, turn in enumerate(entry.turns[:-1]):
        call = corpus.builtin_call(turn)
        assert call is not None
        url = f"http://{mcp.host}:{mcp.port}/{call.server}/sse"
        _is_error, text = harness.run(
            mcp_servers.call_tool_directly(url, call.tool, call.arguments)
        )
        assert text in r.calls[n + 1].prompt_text
        assert text not in r.calls[n].prompt_text


def test_failing_tool_is_an_error_result(mcp: mcp_servers.RunningServers) -> None:
    url = f"http://{mcp.host}:{mcp.port}/container/sse"
    assert harness.run(mcp_servers.call_tool_directly(url, "exec", {"cmd": ["echo", "hi"]})) == (
        False,
        mcp_servers.run_container_command(["echo", "hi"]),
    )
    is_error, _text = harness.run(
        mcp_servers.call_tool_directly(url, "exec", {"cmd": ["fail", "x"]})
    )
    assert is_error
