"""`harmony-stream serve` with real clients over loopback HTTP.

The openai SDK talks to the replay server; MCP calls go to real MCP servers
(the `mcp` SDK under uvicorn). Oracles: every stream passes the stack validator
(`stream_checks.validate_stream`), the streamed `response.completed` equals the
non-streaming response of the same request, MCP results equal what the MCP
server answers to the same call made directly, and texts and arguments equal
what openai-harmony parses from the transcript's tokens.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver.exceptions import ToolError
from openai_harmony import Role
from stream_checks import validate_stream

from harmony_stream import Vocab
from harmony_stream.serve import ServeConfig, create_app, load_config
from harmony_stream.serve.corpus import Corpus, bundled_corpus_dir
from harmony_stream.transcript import (
    ModelTurn,
    ToolOutput,
    Transcript,
    TranscriptError,
    load_transcript,
)

from _servers import (
    ServerThread,
    free_port,
    get_latest_release,
    github_server,
    search_issues,
    units_server,
)

MODEL = "gpt-oss-120b"
CORPUS_NAMES = sorted(p.stem for p in bundled_corpus_dir().glob("*.json"))
LOGGER = "harmony_stream.serve"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mcp_urls() -> Iterator[dict[str, str]]:
    with (
        ServerThread(github_server().streamable_http_app()) as github,
        ServerThread(units_server().streamable_http_app()) as units,
    ):
        yield {"github": f"{github.url}/mcp", "units": f"{units.url}/mcp"}


@pytest.fixture(scope="module")
def server(vocab: Vocab) -> Iterator[ServerThread]:
    with ServerThread(create_app(ServeConfig(seed=11), vocab=vocab)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="dummy", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def corpus(vocab: Vocab) -> Corpus:
    return Corpus.load([], vocab)


# --------------------------------------------------------------------------- helpers


def transcript(name: str) -> Transcript:
    return load_transcript(bundled_corpus_dir() / f"{name}.json")


def request_tools(t: Transcript, mcp_urls: dict[str, str] | None) -> list[Any]:
    """The transcript's tools; MCP tools point at the test servers (or at none)."""
    tools = []
    for tool in t.tools:
        tool = dict(tool)
        if tool["type"] == "mcp":
            del tool["server_url"]
            if mcp_urls is not None:
                tool["server_url"] = mcp_urls[tool["server_label"]]
        tools.append(tool)
    return tools


def conversation(k: int, outputs: list[str | None]) -> list[Any]:
    """A user message and the outputs of the first `k` function calls."""
    items: list[dict[str, Any]] = [{"role": "user", "content": "Hello from the test."}]
    for i in range(k):
        items.append({"type": "function_call_output", "call_id": f"call_{i}", "output": outputs[i]})
    return items


def function_outputs(t: Transcript) -> list[str | None]:
    return [turn.output for turn in t.turns if isinstance(turn, ToolOutput)]


def stream_events(client: openai.OpenAI, **kwargs: Any) -> list[dict[str, Any]]:
    with client.responses.create(stream=True, **kwargs) as stream:
        return [ev.to_dict(mode="json") for ev in stream]


def oracle_messages(enc: Any, tokens: list[int]) -> list[Any]:
    """openai-harmony's parse of one model turn (non-strict)."""
    return list(enc.parse_messages_from_completion_tokens(tokens, Role.ASSISTANT, strict=False))


def text_of(message: Any) -> str:
    return "".join(c.text for c in message.content)


async def _direct(url: str, action: str, name: str = "", args: Any = None) -> Any:
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        if action == "list":
            return [t.name for t in (await session.list_tools()).tools]
        return await session.call_tool(name, args)


def direct_mcp(url: str, action: str, name: str = "", args: Any = None) -> Any:
    """The MCP server's own answer, through a separate client session (the oracle)."""
    return asyncio.run(_direct(url, action, name, args))


def items_of(response: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [item for item in response["output"] if item["type"] == kind]


def serve_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def post_raw(url: str, path: str, body: bytes) -> tuple[int, Any]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------- whole corpus


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_stream_equals_non_stream(
    name: str,
    client: openai.OpenAI,
    corpus: Corpus,
    mcp_urls: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every segment of every bundled transcript: a valid stream whose completed
    response equals the non-streaming response; the console line counts them."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    t = transcript(name)
    segments = corpus.by_name[name].segments
    for k in range(len(segments)):
        kwargs: dict[str, Any] = {
            "model": MODEL,
            "input": conversation(k, function_outputs(t)),
            "tools": request_tools(t, mcp_urls),
            "metadata": {"transcript": name},
        }
        caplog.clear()
        events = stream_events(client, **kwargs)
        final = validate_stream(events)
        assert events[-1]["response"] == final
        line = serve_lines(caplog)[-1]
        assert f"transcript={name} segment={k} stream=True" in line
        assert f"tokens={final['usage']['output_tokens']} events={len(events)} " in line
        assert re.search(r" [0-9.]+ µs/token", line)
        non_stream = client.responses.create(**kwargs).to_dict(mode="json")
        assert non_stream == final
    # Past the last segment there is nothing left to replay.
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model=MODEL,
            input=conversation(len(segments), [*function_outputs(t), "x", "x"]),
            metadata={"transcript": name},
        )
    assert e.value.param == "input"


def test_stream_helper_accumulates_the_completed_response(client: openai.OpenAI, enc: Any) -> None:
    """`client.responses.stream(...)`: its accumulated snapshot and final response
    equal `response.completed` and the non-streaming response."""
    kwargs: dict[str, Any] = {"model": MODEL, "input": "Why is the sky blue?"}
    deltas: list[str] = []
    snapshot = ""
    completed: dict[str, Any] | None = None
    with client.responses.stream(**kwargs, metadata={"transcript": "chat_final"}) as stream:
        for ev in stream:
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
                snapshot = ev.snapshot
            elif ev.type == "response.completed":
                completed = ev.response.to_dict(mode="json")
        final = stream.get_final_response()
    assert completed is not None
    assert final.to_dict(mode="json") == completed
    messages = items_of(completed, "message")
    assert final.output_text == snapshot == "".join(deltas) == messages[-1]["content"][0]["text"]
    oracle = oracle_messages(enc, transcript("chat_final").model_turns[0].tokens)
    assert final.output_text == text_of(oracle[-1])
    # The SDK's non-streaming counterpart of the helper (both parse the output text).
    non_stream = client.responses.parse(**kwargs, metadata={"transcript": "chat_final"})
    assert non_stream.to_dict(mode="json") == completed


# --------------------------------------------------------------------------- MCP


def test_mcp_call_answered_by_the_real_server(
    client: openai.OpenAI, mcp_urls: dict[str, str], enc: Any
) -> None:
    t = transcript("mcp_call")
    events = stream_events(
        client,
        model=MODEL,
        input="Open issues about streaming?",
        tools=request_tools(t, mcp_urls),
        metadata={"transcript": "mcp_call"},
    )
    final = validate_stream(events)
    assert final["status"] == "completed"
    (listing,) = items_of(final, "mcp_list_tools")
    assert [tool["name"] for tool in listing["tools"]] == direct_mcp(mcp_urls["github"], "list")
    (call,) = items_of(final, "mcp_call")
    # The arguments are the transcript's, as openai-harmony reads them.
    recipient_msg = oracle_messages(enc, t.model_turns[0].tokens)[-1]
    assert recipient_msg.recipient == f"github.{call['name']}"
    assert call["arguments"] == text_of(recipient_msg)
    args = json.loads(call["arguments"])
    real = direct_mcp(mcp_urls["github"], "call", call["name"], args)
    assert not real.is_error
    assert call["status"] == "completed"
    assert call["output"] == real.content[0].text == search_issues(**args)
    recorded = function_outputs(t)[0]
    assert call["output"] != recorded
    types = [ev["type"] for ev in events]
    assert "response.mcp_call.completed" in types
    assert "response.mcp_call.failed" not in types


def test_mcp_call_failure_streams_mcp_call_failed(
    client: openai.OpenAI, mcp_urls: dict[str, str]
) -> None:
    t = transcript("mcp_failed")
    events = stream_events(
        client,
        model=MODEL,
        input="Latest release notes?",
        tools=request_tools(t, mcp_urls),
        metadata={"transcript": "mcp_failed"},
    )
    final = validate_stream(events)
    (call,) = items_of(final, "mcp_call")
    failed = [ev for ev in events if ev["type"] == "response.mcp_call.failed"]
    assert [ev["item_id"] for ev in failed] == [call["id"]]
    assert "response.mcp_call.completed" not in [ev["type"] for ev in events]
    assert call["status"] == "failed"
    assert call.get("output") is None
    args = json.loads(call["arguments"])
    real = direct_mcp(mcp_urls["github"], "call", call["name"], args)
    assert real.is_error
    error_text = call["error"]["content"][0]["text"]
    assert error_text == real.content[0].text
    with pytest.raises(ToolError) as raised:
        get_latest_release(**args)
    assert str(raised.value) in error_text
    recorded = t.turns[1]
    assert isinstance(recorded, ToolOutput)
    assert recorded.error is not None
    assert error_text != recorded.error  # not the recorded text


def test_mcp_without_server_url_uses_the_recorded_output(client: openai.OpenAI) -> None:
    t = transcript("mcp_call")
    response = client.responses.create(
        model=MODEL, input="x", tools=request_tools(t, None), metadata={"transcript": "mcp_call"}
    ).to_dict(mode="json")
    assert items_of(response, "mcp_list_tools") == []
    (call,) = items_of(response, "mcp_call")
    assert call["output"] == t.turns[1].output  # type: ignore[union-attr]


def test_unreachable_mcp_server_is_a_424(client: openai.OpenAI) -> None:
    tool = {
        "type": "mcp",
        "server_label": "github",
        "server_url": f"http://127.0.0.1:{free_port()}/mcp",
        "require_approval": "never",
    }
    with pytest.raises(openai.APIStatusError) as e:
        client.responses.create(model=MODEL, input="x", tools=[tool])  # type: ignore[list-item]
    assert e.value.status_code == 424
    assert e.value.type == "external_connector_error"
    assert "github" in e.value.message


# --------------------------------------------------------------------------- request settings


@pytest.mark.parametrize(
    ("name", "limit"),
    [("chat_final", 1), ("chat_final", 60), ("mcp_call", 2), ("mcp_call", None)],
)
def test_max_output_tokens_ends_incomplete(
    name: str,
    limit: int | None,
    client: openai.OpenAI,
    mcp_urls: dict[str, str],
) -> None:
    t = transcript(name)
    total = t.num_tokens
    # None: exactly the tokens of the first model turn, which ends in an MCP call.
    limit = limit if limit is not None else len(t.model_turns[0].tokens)
    assert limit < total
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "input": "x",
        "tools": request_tools(t, mcp_urls),
        "metadata": {"transcript": name},
        "max_output_tokens": limit,
    }
    events = stream_events(client, **kwargs)
    final = validate_stream(events)
    assert events[-1]["type"] == "response.incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["max_output_tokens"] == limit
    assert final["usage"]["output_tokens"] == limit
    assert client.responses.create(**kwargs).to_dict(mode="json") == final
    for call in items_of(final, "mcp_call"):  # cut before the tool ran: never called
        assert call["status"] == "incomplete"
        assert call.get("output") is None


def test_logprobs_when_asked(client: openai.OpenAI, enc: Any) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "input": "x",
        "metadata": {"transcript": "chat_final"},
    }
    plain = stream_events(client, **kwargs)
    validate_stream(plain)
    assert all(ev["logprobs"] == [] for ev in plain if ev["type"] == "response.output_text.delta")

    events = stream_events(
        client, **kwargs, include=["message.output_text.logprobs"], top_logprobs=3
    )
    final = validate_stream(events)
    deltas = [ev for ev in events if ev["type"] == "response.output_text.delta"]
    for ev in deltas:
        assert ev["logprobs"], "one entry per token of the delta"
        for lp in ev["logprobs"]:
            assert lp["logprob"] <= 0
            tops = lp["top_logprobs"]
            assert len(tops) == 3
            assert tops[0] == {"token": lp["token"], "logprob": lp["logprob"]}
            assert [x["logprob"] for x in tops] == sorted(
                (x["logprob"] for x in tops), reverse=True
            )
    (message,) = items_of(final, "message")
    content = message["content"][0]
    # The final item's entries are the deltas' entries, with each token's bytes; the
    # bytes spell the text openai-harmony parses from the transcript.
    without_bytes = [
        {
            **lp,
            "top_logprobs": [
                {k: v for k, v in t.items() if k != "bytes"} for t in lp["top_logprobs"]
            ],
        }
        for lp in content["logprobs"]
    ]
    assert [{k: v for k, v in lp.items() if k != "bytes"} for lp in without_bytes] == [
        lp for ev in deltas for lp in ev["logprobs"]
    ]
    spelled = b"".join(bytes(lp["bytes"]) for lp in content["logprobs"])
    oracle = oracle_messages(enc, transcript("chat_final").model_turns[0].tokens)
    assert spelled.decode() == content["text"] == text_of(oracle[-1])


def test_previous_response_id_continues_the_transcript(client: openai.OpenAI, enc: Any) -> None:
    t = transcript("function_call")
    tools = request_tools(t, None)
    first = client.responses.create(model=MODEL, input="Umbrella in Tokyo?", tools=tools)
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    call = first.output[-1]
    assert call.type == "function_call"
    output = function_outputs(t)[0]
    assert output is not None
    follow = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": output}],
        tools=tools,
    )
    full_history = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Umbrella in Tokyo?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": output},
        ],
        tools=tools,
    )
    oracle = oracle_messages(enc, t.model_turns[1].tokens)
    assert follow.output_text == full_history.output_text == text_of(oracle[-1])
    assert follow.id != full_history.id  # different requests, different ids (seeded)


def test_best_fit_and_config_rules(vocab: Vocab, tmp_path: Path, enc: Any) -> None:
    config_path = tmp_path / "serve.json"
    config_path.write_text(
        json.dumps(
            {
                "transcripts": [str(bundled_corpus_dir())],
                "rules": [{"transcript": "unicode", "input_contains": "RAMEN"}],
                "models": ["gpt-oss-20b"],
            }
        )
    )
    config = load_config(config_path)
    with ServerThread(create_app(config, vocab=vocab)) as s:
        c = openai.OpenAI(base_url=f"{s.url}/v1", api_key="dummy", max_retries=0, timeout=30)
        assert [m.id for m in c.models.list()] == ["gpt-oss-20b"]
        by_rule = c.responses.create(model="gpt-oss-20b", input="Best ramen in Tokyo?")
        unicode_final = oracle_messages(enc, transcript("unicode").model_turns[0].tokens)[-1]
        assert by_rule.output_text == text_of(unicode_final)
        by_field = c.responses.create(
            model="gpt-oss-20b", input="Why?", extra_body={"transcript": "unicode"}
        )
        assert by_field.output_text == text_of(unicode_final)
        no_tools = c.responses.create(model="gpt-oss-20b", input="Why is the sky blue?")
        chat_final = oracle_messages(enc, transcript("chat_final").model_turns[0].tokens)[-1]
        assert no_tools.output_text == text_of(chat_final)
        # get_weather and an MCP server labelled "units": the transcript calling both.
        agent_tools = request_tools(transcript("weather_agent"), None)
        fit = c.responses.create(model="gpt-oss-20b", input="x", tools=agent_tools)
        call = fit.output[-1]
        assert call.type == "function_call"
        agent_call = oracle_messages(enc, transcript("weather_agent").model_turns[0].tokens)[-1]
        assert call.arguments == text_of(agent_call)


def test_config_errors_are_caught_at_start_up(vocab: Vocab, tmp_path: Path) -> None:
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"default": "no_such_transcript"}))
    with pytest.raises(TranscriptError, match="no_such_transcript"):
        create_app(load_config(path), vocab=vocab)
    path.write_text(json.dumps({"rules": [{"transcript": "chat_final", "when": "always"}]}))
    with pytest.raises(TranscriptError, match="when"):
        load_config(path)
    path.write_text(json.dumps({"step": 0}))
    with pytest.raises(TranscriptError, match="step"):
        load_config(path)


# --------------------------------------------------------------------------- errors


def _fco(i: int) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": f"call_{i}", "output": "{}"}


BAD_REQUESTS: list[tuple[str, bytes | dict[str, Any], str | None]] = [
    ("malformed JSON", b'{"model": "gpt-oss-120b",', None),
    ("not an object", b"[1, 2]", None),
    ("no model", b'{"input": "hi"}', "model"),
    ("model not a string", b'{"model": 5}', "model"),
    # The rest: {"model": "m", **fields}
    ("stream not a boolean", {"stream": "yes"}, "stream"),
    ("input a number", {"input": 5}, "input"),
    ("input item not an object", {"input": ["hi"]}, "input[0]"),
    ("tools not a list", {"tools": {"type": "function"}}, "tools"),
    ("unsupported tool", {"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
    ("function without name", {"tools": [{"type": "function"}]}, "tools[0].name"),
    (
        "mcp label a number",
        {"tools": [{"type": "mcp", "server_label": 3}]},
        "tools[0].server_label",
    ),
    ("max_output_tokens a string", {"max_output_tokens": "10"}, "max_output_tokens"),
    ("max_output_tokens zero", {"max_output_tokens": 0}, "max_output_tokens"),
    ("include not strings", {"include": [1]}, "include[0]"),
    ("top_logprobs too large", {"top_logprobs": 50}, "top_logprobs"),
    ("metadata value a number", {"metadata": {"a": 1}}, "metadata.a"),
    ("temperature a string", {"temperature": "hot"}, "temperature"),
    ("unknown transcript", {"metadata": {"transcript": "nope"}}, "metadata.transcript"),
    ("unknown previous response", {"previous_response_id": "resp_0"}, "previous_response_id"),
    (
        "past the transcript's end",
        {"input": [_fco(0), _fco(1)], "metadata": {"transcript": "function_call"}},
        "input",
    ),
]


@pytest.mark.parametrize(("case", "body", "param"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_are_400_with_an_openai_error(
    case: str, body: bytes | dict[str, Any], param: str | None, server: ServerThread
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps({"model": "m", **body}).encode()
    status, answer = post_raw(server.url, "/v1/responses", raw)
    assert status == 400, case
    assert set(answer) == {"error"}
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert isinstance(error["message"], str)
    assert error["message"]


def test_openai_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    unsupported: Any = {"type": "computer_use_preview", "environment": "linux"}
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input="hi", tools=[unsupported])
    assert e.value.status_code == 400
    assert e.value.param == "tools[0].type"
    assert "computer_use_preview" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input="hi", stream=True, max_output_tokens=0)


def test_unknown_route_is_an_openai_404(server: ServerThread) -> None:
    status, answer = post_raw(server.url, "/v1/chat/nothing", b"{}")
    assert status == 404
    assert set(answer["error"]) == {"message", "type", "param", "code"}


# --------------------------------------------------------------------------- disconnect


def test_client_disconnect_stops_the_replay_quietly(
    vocab: Vocab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    total = transcript("chat_final").num_tokens
    config = ServeConfig(step_delay_ms=5)
    with ServerThread(create_app(config, vocab=vocab)) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        body = {
            "model": MODEL,
            "input": "x",
            "stream": True,
            "metadata": {"transcript": "chat_final"},
        }
        conn.request("POST", "/v1/responses", body=json.dumps(body))
        resp = conn.getresponse()
        assert resp.status == 200
        seen = 0
        for _ in range(1000):  # read a few events, then hang up
            if resp.readline().startswith(b"event: "):
                seen += 1
                if seen == 5:
                    break
        assert seen == 5
        conn.close()  # closes the socket: the client has gone
        deadline = time.monotonic() + 5
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = [x for x in serve_lines(caplog) if "client disconnected" in x]
            if lines:
                break
            time.sleep(0.02)
        assert len(lines) == 1, serve_lines(caplog)
        m = re.search(r" tokens=(\d+) ", lines[0])
        assert m is not None
        assert 0 < int(m.group(1)) < total / 2  # stopped early, not replayed to the end
        # The server goes on serving.
        status, answer = post_raw(s.url, "/v1/responses", json.dumps({"model": MODEL}).encode())
        assert status == 200
        assert answer["status"] == "completed"
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]


# --------------------------------------------------------------------------- command line


def test_cli_serve_default_corpus() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_stream", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        c = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="dummy", max_retries=0, timeout=10
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                models = c.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        assert [m.id for m in models] == ["gpt-oss-120b", "gpt-oss-20b"]
        response = c.responses.create(model=MODEL, input="Why is the sky blue?")
        assert response.status == "completed"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    usage = response.usage
    assert usage is not None
    line = next(x for x in err.splitlines() if "POST /v1/responses" in x)
    assert "transcript=chat_final " in line
    assert f"tokens={usage.output_tokens} " in line
    assert "µs/token" in line
    assert "Traceback" not in err


def test_cli_serve_names_the_extra_when_deps_are_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harmony_stream.cli import main

    for mod in [m for m in sys.modules if m.startswith("harmony_stream.serve")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'harmony-stream[serve]'" in err
    assert "uvicorn" in err


def test_transcripts_are_cut_after_function_calls(corpus: Corpus, enc: Any) -> None:
    """A new segment after each function call's output (openai-harmony finds the calls)."""
    for entry in corpus.entries:
        turns = entry.transcript.turns
        cuts = [
            i
            for i in range(1, len(turns))
            if isinstance(turns[i], ToolOutput)
            and isinstance(turns[i - 1], ModelTurn)
            and (oracle_messages(enc, turns[i - 1].tokens)[-1].recipient or "").startswith(  # type: ignore[union-attr]
                "functions."
            )
        ]
        expected = [
            list(turns[a + 1 : b]) for a, b in zip([-1, *cuts], [*cuts, len(turns)], strict=True)
        ]
        assert entry.segments == expected, entry.name


def test_a_transcript_with_a_bad_token_fails_at_start_up(
    vocab: Vocab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token id outside the vocabulary: refused when the corpus loads, not mid-request."""
    from harmony_stream.cli import main

    good = transcript("chat_final").model_turns[0].tokens
    bad_id = len(vocab) + 5
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"tokens": [*good[:10], bad_id, *good[10:]]}))
    with pytest.raises(TranscriptError) as e:
        create_app(ServeConfig(transcripts=[tmp_path]), vocab=vocab)
    assert "'broken'" in str(e.value)
    assert str(bad_id) in str(e.value)
    assert main(["serve", "--port", str(free_port()), str(path)]) == 2
    assert str(bad_id) in capsys.readouterr().err
