"""What SGLang 0.5.23's /v1/responses does for gpt-oss on its own (plugin OFF).

Each test states one behaviour, observed through SGLang's real app and serving
class (harness.py), and says why it breaks the OpenAI Responses contract. They
are the oracle of the plugin's difference table: a test fails if SGLang stops
behaving that way (then the table is out of date).

Facts reported in issue 15, each confirmed here:

1. usage: all zeros in every streamed response; not streamed, `input_tokens` 0
   (`test_streamed_usage_is_all_zeros`, `test_non_streamed_input_tokens_is_zero`);
2. the model quirks openai-harmony rejects raise out of the stream mid-way, no
   `response.failed` (`test_quirk_raises_out_of_the_stream`; not streamed: a 400,
   `test_quirk_non_streamed_is_a_400`);
3. a function call on the `analysis` channel becomes a reasoning item
   (`test_function_call_on_analysis_is_a_reasoning_item`);
4. `mcp` request tools are dropped, no `mcp_*` event exists
   (`test_mcp_request_tool_is_dropped`, `test_mcp_call_on_commentary_raises`);
5. built-in browser/python calls: the call's events all fire before the tool
   runs (`test_builtin_call_closes_before_the_tool_runs`), its output is never
   streamed (`test_builtin_tool_output_is_never_streamed`), and the second turn
   crashes (`test_streamed_second_turn_crashes`) — or, when the first output of
   the second turn holds more than one id, is silently lost
   (`test_streamed_second_turn_is_lost`);
6. both streaming output modes (cumulative, incremental) give the same stream
   for one model turn (`test_output_modes_agree_on_one_turn`); across turns both
   lose the second turn's first output.

Found on the way (not in the issue):

* SGLang's `MCPToolServer` cannot list tools with mcp 2.3.0
  (`test_mcp_tool_server_needs_mcp_1_field_names`), and refuses every streamed
  request with web_search/code_interpreter tools
  (`test_mcp_tool_server_refuses_streamed_builtin_tools`);
* streamed, the second turn's prompt has lost the system, developer and user
  messages (`test_streamed_second_prompt_drops_the_conversation`);
* not streamed, the second turn fails too, with a 400
  (`test_non_streamed_second_turn_is_a_400`);
* `response.function_call_arguments.done` has no `name`
  (`test_function_call_arguments_done_has_no_name`);
* a reasoning item is `completed` in the stream and `status: null` in the
  non-streamed response (`test_reasoning_status_differs_between_modes`);
* the envelope events of a stream carry `tools: []`
  (`test_stream_envelope_drops_the_request_tools`).
"""

from __future__ import annotations

import json
from typing import Any

import corpus
import harness
import mcp_servers
import pytest
from corpus import CLEAN, QUIRKS
from stream_checks import loose

SINGLE_TURN = tuple(e for e in CLEAN if len(e.turns) == 1)
BUILTIN = ("browser_search_open", "browser_find", "python_call")
TWO_TURNS = ("browser_find", "python_call")  # one built-in call, then the answer

# The quirks openai-harmony's parser rejects, and what SGLang lets escape.
REJECTED_QUIRKS = {
    "quirk_malformed_channel": "ValueError: Unknown channel: commentary?",
    "quirk_double_start": "HarmonyError: Unknown role: <|start|>assistant",
    "quirk_stray_end_return": "HarmonyError: Unexpected token 200002 while expecting start token",
    "quirk_stray_end_call": "HarmonyError: Unexpected token 200012 while expecting start token",
    "quirk_missing_start": "HarmonyError: Unexpected token 200005 while expecting start token",
    "quirk_text_after_end": "HarmonyError: Unexpected token 689 while expecting start token",
}
SURVIVING_QUIRKS = tuple(e for e in QUIRKS if e.name not in REJECTED_QUIRKS)


@pytest.fixture(autouse=True)
def _plugin_off() -> None:
    assert not harness.plugin_active()


def names(entries: tuple[corpus.Entry, ...]) -> list[str]:
    return [e.name for e in entries]


def completes(r: harness.Result) -> dict[str, Any]:
    """A stream that ends as SGLang means it to: 200, no exception out of the app,
    events that nest (not openai-python's types: see
    test_function_call_arguments_done_has_no_name). Its terminal response."""
    assert r.status_code == 200, r.body[:500]
    assert r.app_error is None, r.app_error
    loose.check_stack(r.events)
    final = r.final_response
    assert final is not None
    return final


def item_types(output: list[dict[str, Any]]) -> list[str]:
    return [str(item["type"]) for item in output]


# --- 1. usage ---------------------------------------------------------------------


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("entry", SINGLE_TURN, ids=names(SINGLE_TURN))
def test_streamed_usage_is_all_zeros(entry: corpus.Entry, incremental: bool) -> None:
    """`StreamingHarmonyContext` never counts tokens, so every streamed response
    reports 0 input, 0 output, 0 total tokens, though SGLang's tokenizer manager
    handed it `prompt_tokens` and `completion_tokens` in every output. The
    Responses contract: `usage` counts the tokens the request used."""
    r = harness.responses(entry, stream=True, step=2, incremental=incremental)
    final = completes(r)
    meta = r.calls[-1].outputs[-1]["meta_info"]
    assert meta["prompt_tokens"] > 0
    assert meta["completion_tokens"] == len(entry.turns[0].tokens)
    usage = final["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (0, 0, 0)
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0


@pytest.mark.parametrize("entry", SINGLE_TURN, ids=names(SINGLE_TURN))
def test_non_streamed_input_tokens_is_zero(entry: corpus.Entry) -> None:
    """`HarmonyContext` reads `prompt_tokens` only when `meta_info` has a
    `prompt_token_ids` key, which SGLang's tokenizer manager never puts there:
    `input_tokens` is always 0 (and `total_tokens` is the output alone). The
    output count is right."""
    r = harness.responses(entry, stream=False)
    assert r.status_code == 200
    assert r.json is not None
    usage = r.json["usage"]
    assert r.calls[0].outputs[0]["meta_info"]["prompt_tokens"] == len(r.calls[0].input_ids) > 0
    assert usage["input_tokens"] == 0
    assert usage["output_tokens"] == len(entry.turns[0].tokens)
    assert usage["total_tokens"] == usage["output_tokens"]


# --- 2. quirks --------------------------------------------------------------------


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("name", sorted(REJECTED_QUIRKS))
def test_quirk_raises_out_of_the_stream(name: str, incremental: bool) -> None:
    """A quirk openai-harmony's parser rejects raises out of SGLang's stream
    generator after the 200 and the events so far were sent: the stream stops
    mid-item, with no terminal event at all (no `response.failed`, no
    `response.completed`); a real server then drops the connection. The contract:
    a stream ends with exactly one terminal event, `response.failed` with the error
    when the server fails."""
    r = harness.responses(corpus.BY_NAME[name], stream=True, incremental=incremental)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.app_error is not None
    assert r.app_error.split(".")[-1].startswith(REJECTED_QUIRKS[name]), r.app_error
    assert r.types[0] == "response.created"
    assert not set(r.types) & set(harness.TERMINAL)
    assert not r.done_marker


def test_quirk_cuts_the_http_connection() -> None:
    """Over a real connection (uvicorn, as SGLang serves), the client gets the
    200, the events so far, and then the connection closes mid-body: httpx raises
    `RemoteProtocolError` (incomplete chunked read). Nothing tells the client why."""
    import httpx

    entry = corpus.BY_NAME["quirk_double_start"]
    body = {"model": harness.MODEL, "input": entry.prompt, "stream": True}
    received: list[bytes] = []

    def read(url: str) -> None:
        with httpx.stream("POST", f"{url}/v1/responses", json=body, timeout=30) as r:
            assert r.status_code == 200
            received.extend(r.iter_bytes())

    with (
        harness.http_server(harness.get_serving_for(), entry) as url,
        pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"),
    ):
        read(url)
    _names, events, _done = harness.parse_sse(b"".join(received))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.output_item.done"


@pytest.mark.parametrize("name", sorted(REJECTED_QUIRKS))
def test_quirk_non_streamed_is_a_400(name: str) -> None:
    """Not streamed, the same parser error becomes a 400 `invalid_request_error`
    carrying the parser's message: a fault of the model's output reported as the
    client's. Everything the model wrote before the quirk is lost."""
    r = harness.responses(corpus.BY_NAME[name], stream=False)
    assert r.status_code == 400
    assert r.json is not None
    error = r.json["error"]
    assert error["type"] == "invalid_request_error"
    assert REJECTED_QUIRKS[name].split(": ", 1)[1] in error["message"]
    assert "output" not in r.json


@pytest.mark.parametrize("entry", SURVIVING_QUIRKS, ids=names(SURVIVING_QUIRKS))
def test_quirks_sglang_parses(entry: corpus.Entry) -> None:
    """The other quirks pass openai-harmony's parser: a header cut by the token
    limit, `<|constrain|>` glued to the recipient, `<|constrain|>json` on a final
    message, a function call on `analysis` (see below)."""
    streamed = harness.responses(entry, stream=True)
    completes(streamed)
    final = harness.responses(entry, stream=False)
    assert final.status_code == 200
    want = {
        "quirk_cut_in_header": ["reasoning"],
        "quirk_constrain_glued": ["function_call"],
        "quirk_final_constrain_json": ["message"],
        "quirk_function_on_analysis": ["reasoning"],
    }[entry.name]
    assert item_types(streamed.final_response["output"]) == want  # type: ignore[index]
    assert final.json is not None
    assert item_types(final.json["output"]) == want


# --- 3. a function call on analysis -------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_function_call_on_analysis_is_a_reasoning_item(stream: bool) -> None:
    """`<|channel|>analysis to=functions.get_weather` (gpt-oss sends function calls
    on analysis now and then): SGLang looks at the channel before the recipient,
    so the call becomes a reasoning item holding the arguments, and the client
    never gets the call it has to run. The contract: a message to `functions.*`
    is a `function_call` item, whatever its channel."""
    entry = corpus.BY_NAME["quirk_function_on_analysis"]
    r = harness.responses(entry, stream=stream)
    final = r.final_response
    assert final is not None
    (item,) = final["output"]
    assert item["type"] == "reasoning"
    assert item["content"][0]["text"] == '{"location": "Paris"}'
    if stream:
        assert not any("function_call" in t for t in r.types)
    assert final["status"] == "completed"


# --- 4. mcp request tools -----------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
def test_mcp_request_tool_is_dropped(stream: bool, mcp: mcp_servers.RunningServers) -> None:
    """A request tool `{"type": "mcp", "server_label": "container", ...}` is echoed
    in the response and otherwise ignored: it is not in the prompt, SGLang runs no
    such tool, and a call to it (`container.exec` on analysis) becomes a reasoning
    item. No `mcp_*` event or `mcp_call` item exists in SGLang. The contract: an
    `mcp` tool's calls are `mcp_call` items (`mcp_call.failed` with the reason
    where the server cannot run it)."""
    entry = corpus.BY_NAME["container_exec"]
    before = len(mcp.log.snapshot())
    r = harness.responses(entry, stream=stream)
    assert mcp.log.snapshot()[before:] == []
    assert len(r.calls) == 1
    assert "container" not in r.calls[0].prompt_text
    final = r.final_response
    assert final is not None
    assert item_types(final["output"]) == ["reasoning", "reasoning"]
    assert final["output"][1]["content"][0]["text"] == '{"cmd": ["sha256sum", "harmony"]}'
    assert not any(t.startswith("response.mcp") for t in r.types)
    assert final["tools"] == ([] if stream else [corpus.CONTAINER | _mcp_defaults()])


def _mcp_defaults() -> dict[str, Any]:
    return {
        "name": None,
        "description": None,
        "parameters": None,
        "strict": False,
        "tools": None,
        "defer_loading": None,
        "format": None,
    }


def test_mcp_call_on_commentary_raises() -> None:
    """The same call on the commentary channel (where gpt-oss usually sends it)
    raises `Unknown recipient: container.exec` out of the stream (no terminal
    event), and is a 400 not streamed."""
    entry = corpus.BY_NAME["tool_loop_multi_turn"]
    streamed = harness.responses(entry, stream=True, tools=[corpus.CONTAINER])
    assert streamed.status_code == 200
    assert streamed.app_error == "ValueError: Unknown recipient: container.exec"
    assert not set(streamed.types) & set(harness.TERMINAL)
    final = harness.responses(entry, stream=False, tools=[corpus.CONTAINER])
    assert final.status_code == 400
    assert final.json is not None
    assert final.json["error"]["message"] == "Unknown recipient: container.exec"


# --- 5. built-in tools ----------------------------------------------------------------


def test_mcp_tool_server_needs_mcp_1_field_names(mcp: mcp_servers.RunningServers) -> None:
    """SGLang's `MCPToolServer.add_tool_server` (its `--tool-server`) reads
    `tool.inputSchema` and `serverInfo`, mcp 1.x's names; mcp 2.3.0 (the version
    this project pins) names them `input_schema`, `server_info`, so SGLang cannot
    start with an MCP tool server there. The harness hands SGLang the listing in
    1.x spelling (harness.connect_tool_server)."""
    server = harness.MCPToolServer()
    with pytest.raises(AttributeError, match="inputSchema"):
        harness.run(server.add_tool_server(mcp.tool_server_arg))


@pytest.mark.parametrize("tools", [[corpus.WEB_SEARCH], [corpus.CODE_INTERPRETER]])
def test_mcp_tool_server_refuses_streamed_builtin_tools(
    tools: list[dict[str, Any]], tool_server: harness.MCPToolServer
) -> None:
    """With an `MCPToolServer`, SGLang refuses any streamed request with
    web_search or code_interpreter tools (it would close the MCP sessions before
    the stream runs). The built-in tool tests below stream through
    `ForwardingToolServer`, like SGLang's demo and Exa tool servers."""
    entry = corpus.BY_NAME["final_only"]
    r = harness.responses(entry, stream=True, tools=tools, tool_server=tool_server)
    assert r.status_code == 400
    assert r.json is not None
    assert r.json["error"]["message"] == (
        "MCP tool server is not supported in background mode and streaming mode"
    )
    assert r.calls == []
    assert harness.responses(entry, stream=False, tools=tools, tool_server=tool_server).json


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_call_closes_before_the_tool_runs(
    name: str, streaming_tool_server: harness.ForwardingToolServer
) -> None:
    """The built-in call's item is closed (`*.completed`, `output_item.done` with
    `status: completed`) as soon as the model's call message ends, before SGLang
    runs the tool; nothing follows when the tool runs. The contract: the call is
    in progress while the tool runs, completed (or failed) after."""
    entry = corpus.BY_NAME[name]
    call = corpus.builtin_call(entry.turns[0])
    assert call is not None
    kind = "web_search_call" if call.server == "browser" else "code_interpreter_call"
    r = harness.responses(entry, stream=True, step=1, tool_server=streaming_tool_server)
    tool_at = r.timeline.index(("tool", call.tool))
    completed_at = r.timeline.index(("event", f"response.{kind}.completed"))
    assert completed_at < tool_at
    sent = [n for k, n in r.timeline[:tool_at] if k == "event"]
    assert sent[-1] == "response.output_item.done"
    done = [ev for ev in r.events if ev["type"] == "response.output_item.done"][-1]
    assert done["item"]["type"] == kind
    assert done["item"]["status"] == "completed"


@pytest.mark.parametrize("name", TWO_TURNS)
def test_builtin_tool_output_is_never_streamed(
    name: str, streaming_tool_server: harness.ForwardingToolServer, mcp: mcp_servers.RunningServers
) -> None:
    """The tool's output reaches the model's next prompt but never the client:
    no event carries it (a `code_interpreter_call` has `outputs: []`, a
    `web_search_call` no result). Shown where the stream does complete (step 16,
    see test_streamed_second_turn_is_lost)."""
    entry = corpus.BY_NAME[name]
    call = corpus.builtin_call(entry.turns[0])
    assert call is not None
    url = f"http://{mcp.host}:{mcp.port}/{call.server}/sse"
    _is_error, text = harness.run(mcp_servers.call_tool_directly(url, call.tool, call.arguments))
    r = harness.responses(entry, stream=True, step=16, tool_server=streaming_tool_server)
    assert r.types[-1] == "response.completed"
    assert text in r.calls[1].prompt_text
    assert json.dumps(text)[1:-1] not in r.body.decode()
    for item in r.final_response["output"]:  # type: ignore[index]
        if item["type"] == "code_interpreter_call":
            assert item["outputs"] == []


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("name", BUILTIN)
def test_streamed_second_turn_crashes(
    name: str, incremental: bool, streaming_tool_server: harness.ForwardingToolServer
) -> None:
    """`StreamingHarmonyContext` keeps its count of processed ids from the first
    turn. The second turn's first output has as many ids as its
    `completion_tokens` (a new turn counts from 0), so the context takes it for a
    cumulative output and processes only the ids past the first turn's count:
    none of them. With one id per output,
    the lost id is the second turn's `<|channel|>`, the channel name is read as
    part of the role, and openai-harmony raises `Unknown role: assistant<channel>`
    out of the stream (no terminal event). Both output modes: the guess is the same."""
    entry = corpus.BY_NAME[name]
    channel = corpus.ENCODING.decode([entry.turns[1].tokens[1]])
    r = harness.responses(
        entry, stream=True, step=1, incremental=incremental, tool_server=streaming_tool_server
    )
    assert r.status_code == 200
    assert r.app_error == f"openai_harmony.HarmonyError: Unknown role: assistant{channel}"
    assert not set(r.types) & set(harness.TERMINAL)
    assert [c.turn for c in r.calls] == [0, 1]


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("name", TWO_TURNS)
def test_streamed_second_turn_is_lost(
    name: str, incremental: bool, streaming_tool_server: harness.ForwardingToolServer
) -> None:
    """With 16 ids per output, the whole first output of the second turn is
    skipped the same way and what follows parses without error: the response is
    `completed` with the first turn's items only, the model's answer is gone.
    (With a third turn, browser_search_open, the rest of the turn is read as a
    header again and raises `Unknown role: assistant.open`.)"""
    entry = corpus.BY_NAME[name]
    r = harness.responses(
        entry, stream=True, step=16, incremental=incremental, tool_server=streaming_tool_server
    )
    final = completes(r)
    assert final["status"] == "completed"
    assert len(r.calls) == 2
    answer = corpus.message_contents(entry.turns[-1].tokens)[-1][1]
    assert json.dumps(answer)[1:-1] not in r.body.decode()
    assert "message" not in item_types(final["output"])


def test_streamed_second_prompt_drops_the_conversation(
    streaming_tool_server: harness.ForwardingToolServer,
) -> None:
    """`StreamingHarmonyContext.messages` are the parser's messages only, so the
    second turn's prompt is rendered from the model's output and the tool's
    result alone: no system message (tools, date), no developer instructions, no
    user message. The contract: each turn continues the whole conversation."""
    entry = corpus.BY_NAME["browser_find"]
    r = harness.responses(entry, stream=True, step=16, tool_server=streaming_tool_server)
    first, second = (c.prompt_text for c in r.calls)
    assert first.startswith("<|start|>system<|message|>")
    assert entry.prompt in first
    assert second.startswith("<|start|>assistant to=browser.find<|channel|>analysis")
    assert "<|start|>system" not in second
    assert entry.prompt not in second


@pytest.mark.parametrize("name", BUILTIN)
def test_non_streamed_second_turn_is_a_400(
    name: str, tool_server: harness.MCPToolServer, mcp: mcp_servers.RunningServers
) -> None:
    """Not streamed, `HarmonyContext` feeds every turn to one parser, which after
    the first turn's `<|call|>` expects `<|start|>`; the second turn starts with
    `<|channel|>` (its prompt ends in `<|start|>assistant`), so it raises and the
    client gets a 400 after the tool ran."""
    entry = corpus.BY_NAME[name]
    before = len(mcp.log.snapshot())
    r = harness.responses(entry, stream=False, tool_server=tool_server)
    assert len(mcp.log.snapshot()) == before + 1
    assert r.status_code == 400
    assert r.json is not None
    assert r.json["error"]["message"] == (
        "Unexpected token 200005 while expecting start token 200006"
    )
    assert [c.turn for c in r.calls] == [0, 1]


# --- 6. output modes ----------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 3])
@pytest.mark.parametrize("entry", SINGLE_TURN, ids=names(SINGLE_TURN))
def test_output_modes_agree_on_one_turn(entry: corpus.Entry, step: int) -> None:
    """For one model turn SGLang's guess of the output mode (`len(output_ids) ==
    completion_tokens`) holds in both modes, and the streams are the same (ids
    aside)."""
    cumulative = harness.responses(entry, stream=True, step=step, incremental=False)
    incremental = harness.responses(entry, stream=True, step=step, incremental=True)
    loose.check_stack(cumulative.events)
    assert cumulative.app_error is None
    assert incremental.app_error is None
    assert harness.normalize(cumulative.events) == harness.normalize(incremental.events)


# --- found on the way ---------------------------------------------------------------


def test_function_call_arguments_done_has_no_name() -> None:
    """SGLang's `response.function_call_arguments.done` has no `name`, a required
    field of the event (openai-python rejects it)."""
    r = harness.responses(corpus.BY_NAME["preamble_function_call"], stream=True)
    (done,) = [ev for ev in r.events if ev["type"] == "response.function_call_arguments.done"]
    assert "name" not in done
    with pytest.raises(AssertionError, match=r"function_call_arguments\.done"):
        loose.check_schema(r.events)


def test_reasoning_status_differs_between_modes() -> None:
    """A reasoning item is `completed` in the stream (and its terminal response)
    but `status: null` in the non-streamed response."""
    entry = corpus.BY_NAME["reasoning_final"]
    streamed = harness.responses(entry, stream=True).final_response
    final = harness.responses(entry, stream=False).json
    assert streamed is not None
    assert final is not None
    assert streamed["output"][0]["status"] == "completed"
    assert final["output"][0]["status"] is None
    assert [i["status"] for i in streamed["output"][1:]] == [
        i["status"] for i in final["output"][1:]
    ]


def test_stream_envelope_drops_the_request_tools() -> None:
    """`response.created`, `response.in_progress` and the terminal event carry
    `tools: []` whatever the request's tools were (the non-streamed response
    echoes them)."""
    entry = corpus.BY_NAME["preamble_function_call"]
    streamed = harness.responses(entry, stream=True)
    envelope = [ev for ev in streamed.events if "response" in ev]
    assert [ev["response"]["tools"] for ev in envelope] == [[], [], []]
    final = harness.responses(entry, stream=False).json
    assert final is not None
    assert [t["name"] for t in final["tools"]] == ["get_weather"]
