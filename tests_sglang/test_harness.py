"""Sanity of the SGLang harness, with harmony_stream's plugin OFF (SGLang 0.5.23 as shipped).

* the request really goes through SGLang's own FastAPI app and serving class;
* the scripted tokenizer manager yields what SGLang's tokenizer manager yields,
  in each output mode, and gets the model turns in order;
* SGLang's tool loop really calls the MCP servers (non-streamed: SGLang's
  `MCPToolServer`; streamed: `ForwardingToolServer`) and the results reach the
  next prompt;
* the checking helpers accept SGLang's well-formed streams and reject broken ones.
"""

from __future__ import annotations

import math
from typing import Any

import corpus
import harness
import mcp_servers
import pytest
from corpus import CLEAN, CORPUS
from sglang.srt.entrypoints.openai.serving_responses import OpenAIServingResponses
from sglang.srt.runtime_context import get_serving
from stream_checks import loose

SINGLE_TURN = tuple(e for e in CLEAN if len(e.turns) == 1)
WITH_BUILTIN_CALLS = tuple(
    e
    for e in CORPUS
    if any(
        (c := corpus.builtin_call(t)) is not None and c.server in ("browser", "python")
        for t in e.turns
    )
    and all(c is None or c.server != "container" for c in (corpus.builtin_call(t) for t in e.turns))
)


@pytest.fixture(autouse=True)
def _plugin_off() -> None:
    assert not harness.plugin_active()


def ids(entries: tuple[corpus.Entry, ...]) -> list[str]:
    return [e.name for e in entries]


# --- the app and the serving class ------------------------------------------------


def test_the_route_is_sglangs_own() -> None:
    from sglang.srt.entrypoints import http_server

    routes = {getattr(r, "path", None): r for r in http_server.app.routes}
    assert "/v1/responses" in routes
    assert harness.APP is http_server.app
    serving = harness.get_serving_for()
    assert type(serving.responses) is OpenAIServingResponses
    assert serving.responses.use_harmony
    assert harness.server_args(False).model_path == "dummy"


def test_sglang_checks_the_content_type() -> None:
    # SGLang's own dependency on the route, so the request really went through it
    response = harness.run(_post_text())
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]["message"]


async def _post_text() -> Any:
    import httpx

    transport = httpx.ASGITransport(app=harness.APP, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://sglang.test") as client:
        return await client.post(
            "/v1/responses", content=b"{}", headers={"content-type": "text/plain"}
        )


def test_unknown_model_is_404() -> None:
    entry = corpus.BY_NAME["final_only"]
    r = harness.responses(entry, stream=False, extra_request_fields={"model": "nope"})
    assert r.status_code == 404
    assert r.json is not None
    assert r.json["error"]["param"] == "model"
    assert r.calls == []


# --- the scripted tokenizer manager -----------------------------------------------


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("step", [1, 3])
def test_outputs_are_shaped_like_sglangs(step: int, incremental: bool) -> None:
    entry = corpus.BY_NAME["reasoning_final"]
    tokens = list(entry.turns[0].tokens)
    r = harness.responses(entry, stream=True, step=step, incremental=incremental)
    assert get_serving().incremental_streaming_output is incremental
    (call,) = r.calls
    assert call.stream
    assert len(call.outputs) == math.ceil(len(tokens) / step)
    ids_seen: list[int] = []
    for n, out in enumerate(call.outputs):
        meta = out["meta_info"]
        end = min((n + 1) * step, len(tokens))
        assert meta["completion_tokens"] == end
        assert meta["prompt_tokens"] == len(call.input_ids)
        assert meta["id"] == call.rid
        assert ("response_sent_to_client_ts" in meta) == (n == 0)
        if incremental:
            assert out["output_ids"] == tokens[n * step : end]
            ids_seen += out["output_ids"]
        else:
            assert out["output_ids"] == tokens[:end]
            ids_seen = out["output_ids"]
        last = n == len(call.outputs) - 1
        assert (meta["finish_reason"] is None) != last
    assert ids_seen == tokens
    # the stop token stays in the ids, and SGLang's finish reason names it
    assert tokens[-1] in harness.STOP_TOKENS
    assert call.outputs[-1]["meta_info"]["finish_reason"] == {"type": "stop", "matched": tokens[-1]}
    assert "<|return|>" not in call.outputs[-1]["text"]


def test_non_streamed_is_one_output() -> None:
    entry = corpus.BY_NAME["truncated_final"]
    tokens = list(entry.turns[0].tokens)
    r = harness.responses(entry, stream=False, step=1)
    (call,) = r.calls
    assert not call.stream
    (out,) = call.outputs
    assert out["output_ids"] == tokens
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": len(tokens)}
    assert out["meta_info"]["completion_tokens"] == len(tokens)


def test_sampling_params_carry_the_harmony_stop_tokens() -> None:
    r = harness.responses(corpus.BY_NAME["final_only"], stream=True)
    (call,) = r.calls
    assert set(call.sampling_params["stop_token_ids"]) == harness.STOP_TOKENS


def test_prompt_is_rendered_by_openai_harmony() -> None:
    entry = corpus.BY_NAME["preamble_function_call"]
    r = harness.responses(entry, stream=False)
    prompt = r.calls[0].prompt_text
    assert prompt.startswith("<|start|>system<|message|>")
    assert "get_weather" in prompt
    assert prompt.endswith(f"{entry.prompt}<|end|><|start|>assistant")


def test_tokenizer_stand_in_decodes_like_the_encoding() -> None:
    tok = harness.HarmonyTokenizer()
    tokens = list(corpus.BY_NAME["preamble_function_call"].tokens)
    assert tok.decode(tokens) == corpus.ENCODING.decode(tokens)
    plain = tok.decode(tokens, skip_special_tokens=True)
    assert "<|" not in plain
    assert tok.encode(corpus.BY_NAME["final_only"].turns[0].text) == list(
        corpus.BY_NAME["final_only"].turns[0].tokens
    )
    assert tok.encode("") == []


def test_corpus_single_turn_kinds_are_what_sglang_produces() -> None:
    for entry in SINGLE_TURN:
        streamed = harness.responses(entry, stream=True)
        final = harness.responses(entry, stream=False)
        assert streamed.status_code == final.status_code == 200, entry.name
        produced = {
            ev["item"]["type"]
            for ev in streamed.events
            if ev["type"] == "response.output_item.done"
        } | {item["type"] for item in final.json["output"]}  # type: ignore[index]
        assert entry.kinds == produced, (entry.name, produced)


# --- the tool loop ----------------------------------------------------------------


@pytest.mark.parametrize("entry", WITH_BUILTIN_CALLS, ids=ids(WITH_BUILTIN_CALLS))
def test_tool_loop_calls_the_mcp_servers(
    entry: corpus.Entry,
    tool_server: harness.MCPToolServer,
    streaming_tool_server: harness.ForwardingToolServer,
    mcp: mcp_servers.RunningServers,
) -> None:
    # SGLang fails on the second model turn (see test_sglang_alone), so only the
    # first built-in call is made, in both modes; its result is in the second prompt.
    call = corpus.builtin_call(entry.turns[0])
    assert call is not None
    url = f"http://{mcp.host}:{mcp.port}/{call.server}/sse"
    _is_error, text = harness.run(mcp_servers.call_tool_directly(url, call.tool, call.arguments))
    for stream, server in ((False, tool_server), (True, streaming_tool_server)):
        before = len(mcp.log.snapshot())
        r = harness.responses(entry, stream=stream, tool_server=server)
        received = mcp.log.snapshot()[before:]
        assert [(s, t) for s, t, _a in received] == [(call.server, call.tool)], stream
        assert {k: received[0][2][k] for k in call.arguments} == call.arguments
        assert [c.turn for c in r.calls] == [0, 1]
        assert len({c.rid for c in r.calls}) == 1
        assert text in r.calls[1].prompt_text
        assert text not in r.calls[0].prompt_text
        if not stream:  # streamed, SGLang drops the conversation (test_sglang_alone)
            assert r.calls[1].input_ids[: len(r.calls[0].input_ids)] == r.calls[0].input_ids
            # the second turn's prompt is cached up to the first turn's prompt and output
            cached = r.calls[1].outputs[0]["meta_info"]["cached_tokens"]
            assert cached >= len(r.calls[0].input_ids)


def test_mcp_tool_server_lists_the_servers(tool_server: harness.MCPToolServer) -> None:
    assert {n: tool_server.has_tool(n) for n in ("browser", "python", "container")} == {
        "browser": True,
        "python": True,
        "container": True,
    }
    browser = tool_server.get_tool_description("browser")
    assert {t.name for t in browser.tools} >= {"search", "open", "find"}
    serving = harness.get_serving_for(tool_server)
    assert serving.responses.supports_browsing
    assert serving.responses.supports_code_interpreter


def test_timeline_orders_events_and_tool_calls(
    streaming_tool_server: harness.ForwardingToolServer,
) -> None:
    r = harness.responses(
        corpus.BY_NAME["browser_find"], stream=True, tool_server=streaming_tool_server
    )
    events = [name for kind, name in r.timeline if kind == "event"]
    assert events == r.types
    assert [name for kind, name in r.timeline if kind == "tool"] == ["find"]


# --- the checks -------------------------------------------------------------------


@pytest.mark.parametrize("entry", SINGLE_TURN, ids=ids(SINGLE_TURN))
def test_sglang_stream_passes_the_stack_checks(entry: corpus.Entry) -> None:
    r = harness.responses(entry, stream=True, step=2)
    assert r.status_code == 200
    assert r.app_error is None
    loose.check_stack(r.events)
    loose.check_framing(r.sse_event_names, r.events)


def test_check_stream_rejects_broken_streams() -> None:
    good = harness.responses(corpus.BY_NAME["reasoning_final"], stream=True)
    harness.check_stream(good)
    events = good.events
    kinds = [ev["type"] for ev in events]
    i_done = kinds.index("response.output_item.done")
    for broken in (
        events[:i_done] + events[i_done + 1 :],
        events[:-1],
        [events[1], events[0], *events[2:]],
    ):
        bad = harness.Result(
            **{**good.__dict__, "events": broken, "sse_event_names": [e["type"] for e in broken]}
        )
        with pytest.raises(AssertionError):
            harness.check_stream(bad)
    with pytest.raises(AssertionError):
        harness.check_stream(harness.Result(**{**good.__dict__, "app_error": "boom"}))


def test_check_stream_matches_final_sees_a_difference() -> None:
    entry = corpus.BY_NAME["final_only"]
    streamed = harness.responses(entry, stream=True)
    final = harness.responses(entry, stream=False)
    harness.check_stream_matches_final(streamed, final)
    other = harness.responses(corpus.BY_NAME["multibyte"], stream=False)
    with pytest.raises(AssertionError):
        harness.check_stream_matches_final(streamed, other)


def test_plugin_switch_turns_the_plugin_on_and_off() -> None:
    with harness.plugin(True):
        assert harness.plugin_active()
    assert not harness.plugin_active()
    with harness.plugin(False):
        assert not harness.plugin_active()
