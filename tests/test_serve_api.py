"""The replay server answers as the Responses API does: settings, endpoints, CORS,
keep-alive, ``tool_choice``, background mode, validation errors, logging.

Everything goes over loopback HTTP, through the real openai SDK where it has a
call for it (raw HTTP where the SDK hides what is checked: SSE comments, CORS
headers). Oracles: the request itself (each echoed setting equals what was
sent), openai-python's types (`Response`, `ResponseItem`, `Model` validate
what the server sends), the stack validator for streams, the MCP server's own
answer for MCP results, and stated rules (the error names the JSON type of the
value sent; ``tool_choice`` holds for the calls in the output).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from openai.types import Model
from openai.types.responses import Response, ResponseItem
from pydantic import TypeAdapter
from stream_checks import validate_stream

from harmony_stream import ResponseStream, Vocab
from harmony_stream.errors import InvalidRequestError
from harmony_stream.serve import ServeConfig, ServeConfigError, create_app, load_config
from harmony_stream.serve.corpus import bundled_corpus_dir
from harmony_stream.transcript import load_transcript

from _servers import ServerThread, free_port, github_server, slow_github_server

MODEL = "gpt-oss-120b"
ROOT = Path(__file__).resolve().parent.parent
ITEMS = TypeAdapter(ResponseItem)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(vocab: Vocab) -> Iterator[ServerThread]:
    with ServerThread(create_app(ServeConfig(seed=5), vocab=vocab)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="dummy", max_retries=0, timeout=30)


def stream_events(client: openai.OpenAI, **kwargs: Any) -> list[dict[str, Any]]:
    with client.responses.create(stream=True, **kwargs) as stream:
        return [ev.to_dict(mode="json") for ev in stream]


def post(url: str, body: Any, path: str = "/v1/responses") -> httpx.Response:
    return httpx.post(f"{url}{path}", content=json.dumps(body).encode(), timeout=30)


def transcript_tools(name: str) -> list[dict[str, Any]]:
    """The tools a bundled transcript was recorded with (MCP tools without a URL)."""
    tools = []
    for tool in load_transcript(bundled_corpus_dir() / f"{name}.json").tools:
        tool = {k: v for k, v in tool.items() if k != "server_url"}
        tools.append(tool)
    return tools


def calls(response: dict[str, Any]) -> list[tuple[str, str]]:
    """The tool calls of a response: (item type, function name or MCP label.tool or '')."""
    out = []
    for item in response["output"]:
        if item["type"] == "function_call":
            out.append(("function", item["name"]))
        elif item["type"] == "mcp_call":
            out.append(("mcp", f"{item['server_label']}.{item['name']}"))
        elif item["type"] in ("code_interpreter_call", "web_search_call"):
            out.append((item["type"], ""))
    return out


# --------------------------------------------------------------------------- settings echo

# Every request setting openai-python's `Response` carries, with a value set.
SETTINGS: dict[str, Any] = {
    "instructions": "Answer in one short paragraph.",
    "temperature": 0.25,
    "top_p": 0.5,
    "tool_choice": "none",
    "parallel_tool_calls": False,
    "metadata": {"transcript": "chat_final", "team": "ui"},
    "text": {"format": {"type": "text"}, "verbosity": "low"},
    "reasoning": {"effort": "high", "summary": "auto"},
    "user": "user-1234",
    "max_output_tokens": 4096,
    "top_logprobs": 3,
    "truncation": "disabled",
    "service_tier": "auto",
    "safety_identifier": "safety-42",
    "prompt_cache_key": "cache-key-7",
    "prompt_cache_retention": "24h",
    "max_tool_calls": 2,
    "background": False,
}


def assert_echoes(response: dict[str, Any], request: dict[str, Any]) -> None:
    """Each setting of the request is in the response, as sent; the response is a `Response`."""
    for key, value in request.items():
        assert response[key] == value, key
    Response.model_validate(response)


def test_every_setting_is_echoed_streamed_and_not(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "input": "Why is the sky blue?", **SETTINGS}
    whole = client.responses.create(**kwargs).to_dict(mode="json")
    assert_echoes(whole, SETTINGS)
    events = stream_events(client, **kwargs)
    final = validate_stream(events)
    created = events[0]
    assert created["type"] == "response.created"
    assert_echoes(created["response"], SETTINGS)
    assert_echoes(final, SETTINGS)
    # The stored response (GET) echoes them too.
    assert_echoes(client.responses.retrieve(whole["id"]).to_dict(mode="json"), SETTINGS)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    temperature=st.floats(0, 2),
    top_p=st.floats(0, 1),
    parallel=st.booleans(),
    instructions=st.text(st.characters(codec="utf-8"), max_size=40),
    user=st.text(st.characters(codec="utf-8"), max_size=20),
    metadata=st.dictionaries(
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
        st.text(st.characters(codec="utf-8"), max_size=16),
        max_size=4,
    ),
)
def test_echo_property(
    client: openai.OpenAI,
    temperature: float,
    top_p: float,
    parallel: bool,
    instructions: str,
    user: str,
    metadata: dict[str, str],
) -> None:
    """Any value of these settings comes back as sent."""
    metadata = {**metadata, "transcript": "chat_final"}
    request: dict[str, Any] = {
        "temperature": temperature,
        "top_p": top_p,
        "parallel_tool_calls": parallel,
        "instructions": instructions,
        "user": user,
        "metadata": metadata,
    }
    response = client.responses.create(model=MODEL, input="hi", **request)
    assert_echoes(response.to_dict(mode="json"), request)


def test_engine_settings_refuse_engine_members_and_bad_json(vocab: Vocab) -> None:
    stream = ResponseStream(vocab, settings={"temperature": 0.5, "user": "u"})
    response = stream.response()
    assert (response["temperature"], response["user"]) == (0.5, "u")
    Response.model_validate(response)
    for own in ("id", "output", "usage", "status", "max_output_tokens"):
        with pytest.raises(InvalidRequestError, match=own):
            ResponseStream(vocab, settings={own: 1})
    with pytest.raises(InvalidRequestError, match=r"settings\[\"temperature\"\]"):
        ResponseStream(vocab, settings={"temperature": float("nan")})
    with pytest.raises(TypeError):
        ResponseStream(vocab, settings={"user": {1, 2}})


# --------------------------------------------------------------------------- endpoints


def test_get_and_delete_a_stored_response(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="hi")
    got = client.responses.retrieve(created.id)
    assert got.to_dict(mode="json") == created.to_dict(mode="json")
    events = stream_events(client, model=MODEL, input="hi again")
    final = validate_stream(events)
    assert client.responses.retrieve(final["id"]).to_dict(mode="json") == final
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(created.id)
    assert created.id in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model=MODEL, input="x", previous_response_id=created.id)
    assert bad.value.param == "previous_response_id"


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    created = client.responses.create(model=MODEL, input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_stored_responses_are_bounded(vocab: Vocab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The oldest go first, past the count or the bytes (README "Limits")."""
    from harmony_stream.serve import app as app_module
    from harmony_stream.serve.corpus import Corpus

    monkeypatch.setattr(app_module, "MAX_REMEMBERED", 3)
    monkeypatch.setattr(app_module, "MAX_REMEMBERED_BYTES", 100)
    state = app_module.State(ServeConfig(), vocab, Corpus.load([], vocab))
    for i in range(5):
        state.remember(f"resp_{i}", app_module.Stored("chat_final", 0, "x", 10, json="{}"))
    assert list(state.served) == ["resp_2", "resp_3", "resp_4"]
    state.remember("resp_big", app_module.Stored("chat_final", 0, "x", 90, json="{}"))
    assert list(state.served) == ["resp_4", "resp_big"]  # 10 + 90 bytes: at the limit
    assert state.served_bytes == 100
    assert state.forget("resp_big")
    assert (state.served_bytes, state.forget("resp_big")) == (10, False)


def test_cancel_and_stream_of_a_foreground_response_are_refused(
    client: openai.OpenAI, server: ServerThread
) -> None:
    created = client.responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.cancel(created.id)
    answer = httpx.get(f"{server.url}/v1/responses/{created.id}?stream=true")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "stream"


def _input_items(client: openai.OpenAI, response_id: str, **kw: Any) -> list[dict[str, Any]]:
    return [
        item.to_dict(mode="json") for item in client.responses.input_items.list(response_id, **kw)
    ]


def test_input_items_list_the_input(client: openai.OpenAI, server: ServerThread) -> None:
    created = client.responses.create(model=MODEL, input="Why is the sky blue?")
    (item,) = _input_items(client, created.id)
    ITEMS.validate_python(item)
    assert (item["type"], item["role"]) == ("message", "user")
    assert item["content"] == [{"type": "input_text", "text": "Why is the sky blue?"}]

    sent: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "function_call", "call_id": "call_0", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_0", "output": '{"temp": 18}'},
    ]
    tools: Any = transcript_tools("function_call")
    created = client.responses.create(model=MODEL, input=sent, tools=tools)
    asc = _input_items(client, created.id, order="asc")
    for item in asc:
        ITEMS.validate_python(item)
    assert [i["type"] for i in asc] == [s.get("type", "message") for s in sent]
    assert asc[0]["content"] == [{"type": "input_text", "text": "Be brief."}]
    assert asc[1]["content"] == sent[1]["content"]
    assert (asc[2]["name"], asc[3]["output"]) == ("get_weather", '{"temp": 18}')
    assert len({i["id"] for i in asc}) == len(asc)
    # The default order is the API's: newest first. Pages of one, followed by the SDK.
    assert _input_items(client, created.id) == asc[::-1]
    assert _input_items(client, created.id, order="asc", limit=1) == asc
    page = httpx.get(f"{server.url}/v1/responses/{created.id}/input_items?order=asc&limit=2").json()
    assert page["object"] == "list"
    assert page["data"] == asc[:2]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (
        asc[0]["id"],
        asc[1]["id"],
        True,
    )
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.input_items.list(created.id, limit=0)
    assert e.value.param == "limit"


def test_models_and_health(client: openai.OpenAI, server: ServerThread) -> None:
    listed = [m.id for m in client.models.list()]
    for name in listed:
        model = client.models.retrieve(name)
        Model.model_validate(model.to_dict())
        assert model.id == name
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.code == "model_not_found"
    body: Any = e.value.body
    assert set(body) == {"message", "type", "param", "code"}
    health = httpx.get(f"{server.url}/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


# --------------------------------------------------------------------------- CORS

ORIGIN = "http://ui.example:5173"


def preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{url}/v1/responses",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization",
        },
    )


def test_cors_is_opt_in(vocab: Vocab, server: ServerThread) -> None:
    off = preflight(server.url, ORIGIN)
    assert off.status_code == 405
    assert "access-control-allow-origin" not in off.headers
    with ServerThread(create_app(ServeConfig(cors_origins=[ORIGIN]), vocab=vocab)) as s:
        on = preflight(s.url, ORIGIN)
        assert on.status_code == 200
        assert on.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in on.headers["access-control-allow-methods"]
        assert "authorization" in on.headers["access-control-allow-headers"].lower()
        assert preflight(s.url, "http://elsewhere.example").status_code == 400
        answer = httpx.post(
            f"{s.url}/v1/responses",
            json={"model": MODEL, "input": "hi"},
            headers={"origin": ORIGIN},
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN


def test_cors_origins_setting(tmp_path: Path) -> None:
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"cors_origins": [ORIGIN], "keepalive_s": 2, "log_level": "DEBUG"}))
    config = load_config(path)
    assert (config.cors_origins, config.keepalive_s, config.log_level) == ([ORIGIN], 2.0, "debug")
    for bad in ({"cors_origins": ""}, {"keepalive_s": 0}, {"log_level": "loud"}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ServeConfigError, match=next(iter(bad))):
            load_config(path)


# --------------------------------------------------------------------------- keep-alive


def sse_lines(url: str, body: dict[str, Any]) -> list[str]:
    with httpx.stream("POST", f"{url}/v1/responses", json=body, timeout=30) as answer:
        assert answer.status_code == 200
        return list(answer.iter_lines())


def test_keepalive_comments_while_an_mcp_tool_runs(vocab: Vocab) -> None:
    delay_s, every_s = 1.2, 0.2
    tools = transcript_tools("mcp_call")
    with (
        ServerThread(slow_github_server(delay_s).streamable_http_app()) as github,
        ServerThread(create_app(ServeConfig(keepalive_s=every_s), vocab=vocab)) as s,
    ):
        tools[0]["server_url"] = f"{github.url}/mcp"
        body = {"model": MODEL, "input": "issues?", "tools": tools, "stream": True}
        lines = sse_lines(s.url, body)
        data = [json.loads(x[6:]) for x in lines if x.startswith("data: ")]
        validate_stream(data)
        kinds = [x if x.startswith(":") else "" for x in lines]
        types = [json.loads(x[6:])["type"] if x.startswith("data: ") else x for x in lines]
        start = types.index("response.mcp_call.in_progress")
        end = types.index("response.mcp_call.completed")
        during = [x for x in kinds[start:end] if x]
        # One every `every_s` while the tool works (scheduling may cost one or two).
        assert len(during) >= int(delay_s / every_s) - 2, lines[start:end]
        assert set(during) == {": keep-alive"}
        assert not [x for x in kinds[:start] + kinds[end:] if x]
        # The SDK reads the same stream (comments skipped).
        sdk = openai.OpenAI(base_url=f"{s.url}/v1", api_key="x", max_retries=0)
        body.pop("stream")
        events = stream_events(sdk, **body)
        assert validate_stream(events)["status"] == "completed"
        # A background response's readers get them too, while nothing new comes.
        lines = sse_lines(s.url, {**body, "stream": True, "background": True})
        validate_stream([json.loads(x[6:]) for x in lines if x.startswith("data: ")])
        assert len([x for x in lines if x == ": keep-alive"]) >= int(delay_s / every_s) - 2


def test_no_keepalive_for_a_quick_tool(vocab: Vocab) -> None:
    tools = transcript_tools("mcp_call")
    with (
        ServerThread(github_server().streamable_http_app()) as github,
        ServerThread(create_app(ServeConfig(), vocab=vocab)) as s,
    ):
        tools[0]["server_url"] = f"{github.url}/mcp"
        lines = sse_lines(s.url, {"model": MODEL, "input": "x", "tools": tools, "stream": True})
        assert not [x for x in lines if x.startswith(":")]


# --------------------------------------------------------------------------- tool_choice


ALL_TOOLS: Any = (
    transcript_tools("function_call")
    + transcript_tools("mcp_call")
    + transcript_tools("browser_python")
)
# The output item of a call to each hosted tool type.
HOSTED_ITEMS = {
    "code_interpreter": "code_interpreter_call",
    "web_search": "web_search_call",
    "web_search_preview": "web_search_call",
}


def complies(choice: Any, made: list[tuple[str, str]]) -> bool:
    """The rule: what each `tool_choice` asks of the calls in the output."""
    if choice == "none":
        return not made
    if choice == "required":
        return bool(made)
    if choice["type"] == "function":
        return ("function", choice["name"]) in made
    if choice["type"] == "mcp":
        return any(
            kind == "mcp"
            and name.split(".")[0] == choice["server_label"]
            and ("name" not in choice or name.split(".", 1)[1] == choice["name"])
            for kind, name in made
        )
    if choice["type"] in HOSTED_ITEMS:
        return (HOSTED_ITEMS[choice["type"]], "") in made
    allowed = {("function", t["name"]) for t in choice["tools"] if t["type"] == "function"}
    return bool(made) and set(made) <= allowed


@pytest.mark.parametrize(
    "choice",
    [
        "none",
        "required",
        {"type": "function", "name": "get_weather"},
        {"type": "mcp", "server_label": "github"},
        {"type": "mcp", "server_label": "github", "name": "get_latest_release"},
        {"type": "code_interpreter"},
        {"type": "web_search_preview"},
        {
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "get_weather"}],
        },
    ],
    ids=str,
)
def test_tool_choice_is_honoured(client: openai.OpenAI, choice: Any) -> None:
    response = client.responses.create(
        model=MODEL, input="Weather and issues?", tools=ALL_TOOLS, tool_choice=choice
    ).to_dict(mode="json")
    assert response["tool_choice"] == choice
    assert complies(choice, calls(response)), calls(response)


@pytest.mark.parametrize(
    ("choice", "transcript"),
    [
        ("none", "function_call"),
        ("required", "chat_final"),
        ({"type": "function", "name": "get_weather"}, "mcp_call"),
        ({"type": "function", "name": "no_such_function"}, None),
    ],
    ids=str,
)
def test_tool_choice_that_cannot_be_honoured_is_a_400(
    client: openai.OpenAI, choice: Any, transcript: str | None
) -> None:
    extra: dict[str, Any] = {"metadata": {"transcript": transcript}} if transcript else {}
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model=MODEL, input="x", tools=ALL_TOOLS, tool_choice=choice, **extra
        )
    assert e.value.param == "tool_choice"
    assert "cannot be honoured" in e.value.message


def poll(client: openai.OpenAI, response_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The response, once it is no longer queued or in progress."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.responses.retrieve(response_id).to_dict(mode="json")
        if response["status"] not in ("queued", "in_progress"):
            return response
        time.sleep(0.05)
    raise AssertionError(f"{response_id} still in progress after {timeout_s} s")


def same_output(a: dict[str, Any], b: dict[str, Any]) -> None:
    """The same items (types, texts, calls), ids aside."""

    def shape(r: dict[str, Any]) -> list[Any]:
        return [
            {k: v for k, v in item.items() if k not in ("id", "call_id")} for item in r["output"]
        ]

    assert shape(a) == shape(b)


def test_background_polling(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "input": "Why is the sky blue?"}
    queued = client.responses.create(background=True, **kwargs).to_dict(mode="json")
    assert queued["background"] is True
    assert queued["status"] in ("queued", "in_progress", "completed")
    final = poll(client, queued["id"])
    assert final["status"] == "completed"
    Response.model_validate(final)
    same_output(final, client.responses.create(**kwargs).to_dict(mode="json"))
    # Its events can be read again, whole, and give the same response.
    with client.responses.retrieve(queued["id"], stream=True) as stream:
        events = [ev.to_dict(mode="json") for ev in stream]
    assert validate_stream(events) == final


def test_background_stream_resumes_after_a_sequence_number(client: openai.OpenAI) -> None:
    events = stream_events(client, model=MODEL, input="Why?", background=True)
    final = validate_stream(events)
    assert final["background"] is True
    for after in (0, 5, len(events) // 2, len(events) - 2):
        with client.responses.retrieve(final["id"], stream=True, starting_after=after) as s:
            resumed = [ev.to_dict(mode="json") for ev in s]
        assert resumed == events[after + 1 :]
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.retrieve(final["id"], stream=True, starting_after=-5)
    assert e.value.param == "starting_after"


def test_background_cancel(vocab: Vocab) -> None:
    tools: Any = transcript_tools("mcp_call")
    with (
        ServerThread(slow_github_server(10).streamable_http_app()) as github,
        ServerThread(create_app(ServeConfig(), vocab=vocab)) as s,
    ):
        tools[0]["server_url"] = f"{github.url}/mcp"
        sdk = openai.OpenAI(base_url=f"{s.url}/v1", api_key="x", max_retries=0, timeout=30)
        started = sdk.responses.create(model=MODEL, input="x", tools=tools, background=True)
        t0 = time.monotonic()
        cancelled = sdk.responses.cancel(started.id).to_dict(mode="json")
        assert time.monotonic() - t0 < 5  # not after the 10 s tool
        assert cancelled["status"] == "cancelled"
        Response.model_validate(cancelled)
        assert sdk.responses.retrieve(started.id).to_dict(mode="json") == cancelled
        assert sdk.responses.cancel(started.id).to_dict(mode="json") == cancelled  # again
        # Its readers get a stream that ends (the engine ends it as aborted).
        with sdk.responses.retrieve(started.id, stream=True) as stream:
            events = [ev.to_dict(mode="json") for ev in stream]
        assert validate_stream(events)["status"] == "failed"
        done = sdk.responses.create(model=MODEL, input="hi", background=True)
        poll(sdk, done.id)
        with pytest.raises(openai.BadRequestError):
            sdk.responses.cancel(done.id)


def test_conversation_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input="x", conversation="conv_123")
    assert e.value.param == "conversation"
    assert "previous_response_id" in e.value.message


def test_background_must_be_stored(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input="x", background=True, store=False)
    assert e.value.param == "store"


# --------------------------------------------------------------------------- validation

JSON_VALUES: dict[str, Any] = {
    "a string": "text",
    "an integer": 7,
    "a decimal": 0.5,
    "a boolean": True,
    "an array": [1],
    "an object": {"a": 1},
}

# (field, what it expects, the JSON types it takes).
TYPED_FIELDS = [
    ("model", "a string", {"a string"}),
    ("stream", "a boolean", {"a boolean"}),
    ("input", "a string or an array of input items", {"a string", "an array"}),
    ("tools", "an array", {"an array"}),
    ("max_output_tokens", "an integer", {"an integer"}),
    ("temperature", "a decimal", {"a decimal", "an integer"}),
    ("top_p", "a decimal", {"a decimal", "an integer"}),
    ("parallel_tool_calls", "a boolean", {"a boolean"}),
    ("instructions", "a string", {"a string"}),
    ("metadata", "an object", {"an object"}),
    ("user", "a string", {"a string"}),
    ("store", "a boolean", {"a boolean"}),
    ("tool_choice", "a string or an object", {"a string", "an object"}),
    ("text", "an object", {"an object"}),
    ("reasoning", "an object", {"an object"}),
    ("include", "an array", {"an array"}),
    ("previous_response_id", "a string", {"a string"}),
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=st.sampled_from(TYPED_FIELDS), sent=st.sampled_from(sorted(JSON_VALUES)))
def test_a_wrong_type_is_named_as_openai_does(
    server: ServerThread, case: tuple[str, str, set[str]], sent: str
) -> None:
    field, expected, takes = case
    if sent in takes:
        return
    body = {"model": MODEL, "input": "x", field: JSON_VALUES[sent]}
    answer = post(server.url, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error == {
        "message": f"Invalid type for '{field}': expected {expected}, but got {sent} instead.",
        "type": "invalid_request_error",
        "param": field,
        "code": "invalid_type",
    }


@pytest.mark.parametrize(
    ("fields", "param", "wording"),
    [
        (
            {"tools": [{"type": "mcp", "server_label": "gh", "server_url": 5}]},
            "tools[0].server_url",
            "but got an integer instead",
        ),
        (
            {"tools": [{"type": "mcp", "server_label": "gh", "server_url": "ftp://x"}]},
            "tools[0].server_url",
            "is not an http:// or https:// URL",
        ),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "Missing required parameter"),
        ({"tools": [{"type": "function", "name": ""}]}, "tools[0].name", "empty string"),
        ({"tools": ["x"]}, "tools[0]", "expected an object, but got a string"),
        ({"input": [3]}, "input[0]", "expected an object, but got an integer"),
        ({"metadata": {"k": 1}}, "metadata.k", "expected a string, but got an integer"),
        ({"temperature": 2.5}, "temperature", "decimal above maximum value"),
        ({"top_logprobs": 21}, "top_logprobs", "integer above maximum value"),
        ({"max_output_tokens": 0}, "max_output_tokens", "integer below minimum value"),
        ({"tool_choice": "sometimes"}, "tool_choice", "Supported values are"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.name", "Missing required"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort", "Supported values are"),
        ({"include": [None]}, "include[0]", "expected a string, but got null"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_nested_errors_name_the_path(
    client: openai.OpenAI, fields: dict[str, Any], param: str, wording: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, input="x", extra_body=fields)
    assert e.value.param == param
    body: Any = e.value.body
    assert wording in body["message"]
    assert not re.search(r"\b(str|int|dict|list|NoneType|float|bool)\b", body["message"])


# --------------------------------------------------------------------------- logging


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.communicate()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def run_and_request(cmd: list[str], port: int) -> tuple[str, str]:
    """Starts `cmd` (a server on `port`), sends one request, stops it; its stdout and stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_port(port, proc)
        sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        sdk.responses.create(model=MODEL, input="hi")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    return out, err


ACCESS_LINE = '"POST /v1/responses HTTP/1.1" 200'
REPLAY_LINE = "POST /v1/responses transcript=chat_final"


def test_serve_logs_the_access_line_and_the_replay_line() -> None:
    port = free_port()
    cli = [sys.executable, "-m", "harmony_stream.cli", "serve", "--port", str(port)]
    out, err = run_and_request(cli, port)
    assert ACCESS_LINE in out + err
    assert REPLAY_LINE in out + err
    port = free_port()
    out, err = run_and_request([*cli[:-1], str(port), "--log-level", "warning"], port)
    assert ACCESS_LINE not in out + err
    assert REPLAY_LINE not in out + err


def test_uvicorn_factory_keeps_the_access_line() -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "harmony_stream.serve:create_app",
        "--port",
        str(port),
    ]
    out, err = run_and_request(cmd, port)
    assert ACCESS_LINE in out + err


def test_cli_cors_origin_and_keepalive_options() -> None:
    """`--cors-origin` (twice) and `--keepalive-s` reach the server's settings."""
    port = free_port()
    cmd = [
        *[sys.executable, "-m", "harmony_stream.cli", "serve", "--port", str(port)],
        *["--cors-origin", ORIGIN, "--cors-origin", "http://other.example"],
        *["--keepalive-s", "0.5"],
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}"
        for origin in (ORIGIN, "http://other.example"):
            answer = preflight(url, origin)
            assert answer.status_code == 200
            assert answer.headers["access-control-allow-origin"] == origin
        assert preflight(url, "http://elsewhere.example").status_code == 400
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    bad = subprocess.run(
        [*cmd[:6], "--keepalive-s", "0"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "keepalive_s (--keepalive-s)" in bad.stderr


def test_a_bad_log_level_is_refused() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harmony_stream.cli",
            "serve",
            "--port",
            str(free_port()),
            "--log-level",
            "loud",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "log_level (--log-level)" in proc.stderr


# --------------------------------------------------------------------------- example MCP server


async def _direct_call(url: str, name: str, args: dict[str, Any]) -> Any:
    async with (
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await session.call_tool(name, args)


def test_readme_mcp_example_against_the_example_server(client: openai.OpenAI) -> None:
    """The README's request, with the example server the README starts (on a free port)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harmony_stream.serve.example_mcp", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        response: dict[str, Any] = client.responses.create(
            model="gpt-oss-120b",
            input="Open issues about streaming?",
            tools=[
                {
                    "type": "mcp",
                    "server_label": "github",
                    "server_url": url,
                    "require_approval": "never",
                }
            ],
        ).to_dict(mode="json")
        kinds = [item["type"] for item in response["output"]]
        assert kinds[0] == "mcp_list_tools"
        listed = {t["name"] for t in response["output"][0]["tools"]}
        assert listed == {"search_issues", "get_latest_release"}
        (call,) = [item for item in response["output"] if item["type"] == "mcp_call"]
        assert call["name"] == "search_issues"
        real = asyncio.run(_direct_call(url, call["name"], json.loads(call["arguments"])))
        assert call["output"] == real.content[0].text
        assert call.get("error") is None
        assert response["status"] == "completed"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
