"""Drive SGLang 0.5.23's real OpenAI Responses serving without a GPU.

Real: SGLang's FastAPI app (`sglang.srt.entrypoints.http_server.app`, its
`POST /v1/responses` route, middlewares and exception handlers),
`OpenAIServingResponses` (Harmony prompt rendering, `HarmonyContext` /
`StreamingHarmonyContext`, the built-in tool loop) and, when a test asks for it,
SGLang's own `MCPToolServer` connected to the real MCP servers of
tests_vllm/mcp_servers.py. The HTTP client is httpx over `ASGITransport`, so the
bytes parsed here are the bytes SGLang writes.

Stand-ins: the tokenizer manager (`ScriptedTokenizerManager`: its
`generate_request` replays a recorded transcript, model turn n for the n-th call
of one request id, shaped like SGLang's own outputs, see its docstring), the
model config (a namespace with `hf_config.model_type == "gpt_oss"`) and the
tokenizer (the openai_harmony encoding; the gpt-oss path renders prompts with
openai_harmony and reads only `output_ids`, so no chat template is involved).

The server configuration is a real `ServerArgs(model_path="dummy")` published
for the tokenizer role, as SGLang's server entry does before it builds anything;
`incremental=True` publishes one with `incremental_streaming_output=True`
(SGLang's `--incremental-streaming-output`).

Use: `responses(entry, stream=True, step=1, incremental=False)`; the serving
object for a given (tool server, plugin state, output mode) is built once and
cached, and set as the app's `state.openai_serving_responses` per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]

# Before SGLang (and openai_harmony) read their environment: the vocabulary offline.
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(REPO / ".cache" / "tiktoken"))

# The client side both suites share (tests/suite_client.py): appended, so this
# directory's own modules come first.
if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))

import logging  # noqa: E402
import warnings  # noqa: E402

# Importing SGLang on a machine without CUDA warns about every GPU-only kernel.
warnings.filterwarnings("ignore", category=UserWarning, module=r"sglang\..*")

import httpx  # noqa: E402
from openai_harmony import HarmonyEncodingName, load_harmony_encoding  # noqa: E402
from sglang.srt.entrypoints import http_server  # noqa: E402
from sglang.srt.entrypoints.openai.serving_responses import OpenAIServingResponses  # noqa: E402
from sglang.srt.entrypoints.openai.tool_server import MCPToolServer, ToolServer  # noqa: E402
from sglang.srt.runtime_context import get_context, get_serving, publish  # noqa: E402
from sglang.srt.server_args import ServerArgs  # noqa: E402
from suite_client import TERMINAL as TERMINAL  # noqa: E402
from suite_client import CatchAppErrors, final_response, read_response  # noqa: E402
from suite_client import normalize as normalize  # noqa: E402  (harness.normalize)
from suite_client import parse_sse as parse_sse  # noqa: E402  (harness.parse_sse)
from suite_client import post as _post  # noqa: E402

for _quiet in ("httpx", "mcp", "sglang"):
    logging.getLogger(_quiet).setLevel(logging.CRITICAL)

MODEL = "openai/gpt-oss-20b"
ENCODING = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
STOP_TOKENS = frozenset(ENCODING.stop_tokens_for_assistant_actions())
APP = http_server.app


class TurnLike(Protocol):
    @property
    def tokens(self) -> Sequence[int]: ...
    @property
    def finish_reason(self) -> str: ...


class TranscriptLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def turns(self) -> Sequence[TurnLike]: ...
    @property
    def responses_tools(self) -> Sequence[dict[str, Any]]: ...
    @property
    def prompt(self) -> str: ...


# --- server configuration -----------------------------------------------------------

_server_args: dict[bool, ServerArgs] = {}


def server_args(incremental: bool) -> ServerArgs:
    """The published configuration for one output mode (made once per mode)."""
    if incremental not in _server_args:
        _server_args[incremental] = ServerArgs(
            model_path="dummy", served_model_name=MODEL, incremental_streaming_output=incremental
        )
    args = _server_args[incremental]
    if get_context()._server_args is not args:
        publish(args, role="tokenizer")
    return args


# --- tokenizer and model config stand-ins -----------------------------------------


class HarmonyTokenizer:
    """What the serving code calls on a gpt-oss tokenizer: `encode`, `decode`,
    `chat_template` (none: SGLang renders gpt-oss prompts with openai_harmony)."""

    chat_template = None

    def encode(self, text: str, **_: Any) -> list[int]:
        return list(ENCODING.encode(text, allowed_special="all"))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False, **_: Any) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if not ENCODING.is_special_token(i)]
        return str(ENCODING.decode(ids))

    def __repr__(self) -> str:
        return "HarmonyTokenizer(o200k_harmony)"


def model_config() -> SimpleNamespace:
    return SimpleNamespace(
        model_path=MODEL,
        hf_config=SimpleNamespace(model_type="gpt_oss", architectures=["GptOssForCausalLM"]),
        context_len=131072,
        is_multimodal=False,
        get_default_sampling_params=dict,
    )


# --- the scripted tokenizer manager -----------------------------------------------


@dataclass
class GenerateCall:
    """One `generate_request` call as SGLang made it."""

    rid: str
    turn: int  # the n-th call for this rid
    input_ids: list[int]
    stream: bool
    sampling_params: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)  # what was yielded (copies)

    @property
    def prompt_text(self) -> str:
        return str(ENCODING.decode(self.input_ids))


@dataclass
class Script:
    turns: Sequence[TurnLike]
    step: int
    calls: list[GenerateCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ScriptedTokenizerManager:
    """Duck-typed `TokenizerManager` replaying one transcript per request.

    The n-th `generate_request` of one request id gets model turn n (SGLang's
    built-in tool loop calls it again, same rid, after each browser/python call).
    Its outputs have the shape `TokenizerManager._handle_batch_output` gives them
    for a gpt-oss model served with token ids (read in SGLang 0.5.23):

    * `{"text", "output_ids", "meta_info"}`; `meta_info` holds `id`,
      `finish_reason` (None until the last output, then `{"type": "stop",
      "matched": <stop id>}` or `{"type": "length", "length": n}`),
      `prompt_tokens`, `weight_version`, `num_retractions`, `reasoning_tokens`,
      `completion_tokens` (the running count, in every mode), `cached_tokens`,
      and on the first output sent `response_sent_to_client_ts`;
    * stream, default mode: `output_ids` is every id so far; the intermediate
      outputs hand over the manager's own growing list (SGLang does so to avoid
      copies), the last one a copy;
    * stream, incremental mode (the published `incremental_streaming_output`):
      `output_ids` holds only the new ids;
    * not streamed: one output, when the turn is finished;
    * `step` ids per output; a "stop" turn ends with its stop token
      (`<|return|>`/`<|call|>`) in `output_ids` (SGLang keeps the matched stop
      id in the ids and trims it from the text only), a "length" turn anywhere;
    * `cached_tokens`: the prefix the request shares with the previous turn's
      prompt and output (SGLang's radix cache), 0 on the first turn.
    """

    def __init__(self, args: ServerArgs) -> None:
        self.server_args = args
        self.served_model_name = MODEL
        self.model_path = MODEL
        self.model_config = model_config()
        self.tokenizer = HarmonyTokenizer()
        self.num_reserved_tokens = 0
        self.request_logger = SimpleNamespace(log_requests=False, log_requests_level=0)
        self.script: Script | None = None

    def config_value(self, name: str) -> Any:
        if name in ("model_path", "served_model_name"):
            return getattr(self, name)
        return get_context().config_leaf(name)

    def abort_request(self, rid: str = "", *args: Any, **kwargs: Any) -> None:
        return None

    def create_abort_task(self, obj: Any) -> None:
        return None

    async def generate_request(
        self, obj: Any, request: Any = None
    ) -> AsyncIterator[dict[str, Any]]:
        script = self.script
        assert script is not None, "no transcript set for this request"
        rid = str(obj.rid)
        earlier = [c for c in script.calls if c.rid == rid]
        input_ids = [int(t) for t in obj.input_ids]
        call = GenerateCall(
            rid=rid,
            turn=len(earlier),
            input_ids=input_ids,
            stream=bool(obj.stream),
            sampling_params=dict(obj.sampling_params or {}),
        )
        script.calls.append(call)
        if call.turn >= len(script.turns):
            msg = (
                f"SGLang asked for model turn {call.turn} ({rid}); "
                f"the transcript has {len(script.turns)}"
            )
            script.errors.append(msg)
            raise AssertionError(msg)
        turn = script.turns[call.turn]
        tokens = [int(t) for t in turn.tokens]
        cached = 0
        if earlier:
            prev = earlier[-1]
            cached = _common_prefix(input_ids, prev.input_ids + _ids_of(prev))
            cached = min(cached, len(input_ids) - 1)
        incremental = call.stream and bool(get_serving().incremental_streaming_output)
        skip_special = bool(call.sampling_params.get("skip_special_tokens", True))
        step = max(1, script.step) if call.stream else len(tokens)
        bounds = [*range(step, len(tokens), step), len(tokens)]
        state: list[int] = []  # the manager's own list (state.output_ids)
        start, sent_text = 0, ""
        for end in bounds:
            last = end == len(tokens)
            state.extend(tokens[start:end])
            meta: dict[str, Any] = {
                "id": rid,
                "finish_reason": _finish_reason(turn, tokens) if last else None,
                "prompt_tokens": len(input_ids),
                "weight_version": "default",
                "num_retractions": 0,
                "reasoning_tokens": 0,
                "completion_tokens": end,
                "cached_tokens": cached,
            }
            if not call.outputs:
                meta["response_sent_to_client_ts"] = time.time()
            text = self._text(tokens[:end], turn, skip_special, final=last)
            out: dict[str, Any]
            if incremental:
                out = {"text": text[len(sent_text) :], "output_ids": tokens[start:end]}
            elif last:
                out = {"text": text, "output_ids": list(state)}
            else:
                out = {"text": text, "output_ids": state}
            out["meta_info"] = meta
            call.outputs.append({**out, "output_ids": list(out["output_ids"])})
            start, sent_text = end, text
            yield out
            await asyncio.sleep(0)

    def _text(self, ids: list[int], turn: TurnLike, skip_special: bool, *, final: bool) -> str:
        """Detokenized text so far: the matched stop id trimmed at the end, an
        incomplete UTF-8 sequence held back until the next id completes it."""
        if final and turn.finish_reason == "stop" and ids and ids[-1] in STOP_TOKENS:
            ids = ids[:-1]
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special)
        return text if final else text.rstrip("\ufffd")


def _finish_reason(turn: TurnLike, tokens: list[int]) -> dict[str, Any]:
    if turn.finish_reason == "length":
        return {"type": "length", "length": len(tokens)}
    return {"type": "stop", "matched": tokens[-1]}


def _ids_of(call: GenerateCall) -> list[int]:
    return list(call.outputs[-1]["output_ids"]) if call.outputs else []


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# --- tool servers -----------------------------------------------------------------


def connect_tool_server(spec: str) -> MCPToolServer:
    """SGLang's `--tool-server host:port/path,...`: a real `MCPToolServer`.

    SGLang 0.5.23's `add_tool_server` reads the MCP listing results by the
    field names of mcp 1.x (`serverInfo`, `inputSchema`); mcp 2.3.0 (what the
    MCP servers here run on) spells them `server_info`, `input_schema`, so
    SGLang's own call fails with AttributeError (see
    test_sglang_alone.test_mcp_tool_server_needs_mcp_1_field_names). Here the
    listing is done by mcp 2.3.0 and handed to SGLang's code in the 1.x
    spelling; everything else (the schema trimming, the Harmony tool
    descriptions, the client sessions for tool calls) is SGLang's."""
    server = MCPToolServer()
    with _mcp1_listing():
        run(server.add_tool_server(spec))
    return server


@contextlib.contextmanager
def _mcp1_listing() -> Iterator[None]:
    from sglang.srt.entrypoints.openai import tool_server as module

    original = module.list_server_and_tools

    async def listing(server_url: str) -> tuple[Any, Any]:
        init, tools = await original(server_url)
        info = SimpleNamespace(name=init.server_info.name)
        init_view = SimpleNamespace(serverInfo=info, instructions=init.instructions)
        tools_view = SimpleNamespace(
            tools=[
                SimpleNamespace(
                    name=t.name,
                    description=t.description,
                    inputSchema=dict(t.input_schema),
                    annotations=t.annotations,
                )
                for t in tools.tools
            ]
        )
        return init_view, tools_view

    module.list_server_and_tools = listing  # type: ignore[assignment]
    try:
        yield
    finally:
        module.list_server_and_tools = original


class ForwardingToolServer(ToolServer):
    """The same MCP tools behind a `ToolServer` that is not an `MCPToolServer`.

    SGLang 0.5.23 refuses a streamed (or background) request with web_search or
    code_interpreter tools when its tool server is an `MCPToolServer` (400, "MCP
    tool server is not supported in background mode and streaming mode"): it
    opens the tool sessions in `create_responses` and closes them when that
    returns, before the stream runs. Its other tool servers (`--tool-server
    demo`, the Exa-backed `NativeToolServer`) hand out session objects that hold
    no connection, and stream. This one does the same with the real MCP servers:
    its session opens one MCP connection per tool call, so SGLang's streamed
    built-in tool loop runs against them."""

    def __init__(self, inner: MCPToolServer) -> None:
        self.inner = inner

    def has_tool(self, tool_name: str) -> bool:
        return bool(self.inner.has_tool(tool_name))

    def get_tool_description(self, tool_name: str) -> Any:
        return self.inner.get_tool_description(tool_name)

    def get_tool_session(self, tool_name: str) -> AbstractAsyncContextManager[Any]:
        return self._session(tool_name)

    @asynccontextmanager
    async def _session(self, tool_name: str) -> AsyncIterator[Any]:
        yield _CallSession(self.inner.urls[tool_name])


class _CallSession:
    """What SGLang calls on a tool session: `call_tool(name, arguments)`."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        from mcp import ClientSession
        from mcp.client.sse import sse_client

        TIMELINE.append(("tool", name))
        async with sse_client(url=self.url) as streams, ClientSession(*streams) as session:
            await session.initialize()
            return await session.call_tool(name, arguments)


# --- the serving objects ----------------------------------------------------------


@dataclass
class Serving:
    manager: ScriptedTokenizerManager
    responses: OpenAIServingResponses
    tool_server: ToolServer | None
    incremental: bool


# What happened, in order, during the current request: ("event", type) for each
# SSE event as the app hands it to the server, ("tool", name) for each tool call
# a ForwardingToolServer session makes.
TIMELINE: list[tuple[str, str]] = []


def _record_events(message: Any) -> None:
    """In TIMELINE, each SSE event when the app sends it."""
    if message.get("type") == "http.response.body":
        for line in bytes(message.get("body", b"")).decode("utf-8").split("\n"):
            if line.startswith("event: "):
                TIMELINE.append(("event", line[len("event: ") :]))


def build_serving(tool_server: ToolServer | None = None, *, incremental: bool = False) -> Serving:
    """A scripted tokenizer manager and SGLang's `OpenAIServingResponses` over it,
    built as SGLang's server lifespan builds it."""
    manager = ScriptedTokenizerManager(server_args(incremental))
    serving = OpenAIServingResponses(
        manager,  # type: ignore[arg-type]
        SimpleNamespace(chat_template_name=None, python_chat_template=None),  # type: ignore[arg-type]
        enable_prompt_tokens_details=True,
        tool_server=tool_server,
    )
    return Serving(manager, serving, tool_server, incremental)


# One event loop for the whole session: the serving objects hold asyncio
# primitives, and the MCP tool server client runs on it too.
_runner: asyncio.Runner | None = None
_servings: dict[tuple[int, bool, bool], tuple[ToolServer | None, Serving]] = {}


def run(coro: Any) -> Any:
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()
    return _runner.run(coro)


def close() -> None:
    """Close the session's event loop (and forget the serving objects built on it)."""
    global _runner
    _servings.clear()
    if _runner is not None:
        _runner.close()
        _runner = None


def plugin_active() -> bool:
    """Whether harmony_stream's SGLang plugin is installed right now."""
    mod = sys.modules.get("harmony_stream.sglang_plugin")
    return bool(mod is not None and mod.is_active())


def get_serving_for(tool_server: ToolServer | None = None, *, incremental: bool = False) -> Serving:
    """The cached serving object for this tool server, output mode and plugin state
    (the plugin may replace what the serving object resolves at construction)."""
    key = (id(tool_server), plugin_active(), incremental)
    if key not in _servings:
        _servings[key] = (tool_server, build_serving(tool_server, incremental=incremental))
    serving = _servings[key][1]
    server_args(incremental)  # published for this request
    return serving


# --- requests ---------------------------------------------------------------------


@dataclass
class Result:
    status_code: int
    headers: dict[str, str]
    body: bytes
    stream: bool
    events: list[dict[str, Any]]  # SSE data objects, in order (stream only)
    sse_event_names: list[str | None]  # the `event:` line of each SSE block
    done_marker: bool  # `data: [DONE]` seen
    json: dict[str, Any] | None  # the non-streamed body
    app_error: str | None  # an exception that escaped SGLang's app
    calls: list[GenerateCall]  # the tokenizer manager's generate_request calls, in order
    timeline: list[tuple[str, str]]  # SSE events sent and tool calls made, in order

    @property
    def final_response(self) -> dict[str, Any] | None:
        """The terminal event's response (stream) or the body."""
        return final_response(self.stream, self.json, self.events)

    @property
    def types(self) -> list[str]:
        return [str(ev.get("type")) for ev in self.events]


async def post(app: Any, path: str, body: dict[str, Any], errors: list[str]) -> httpx.Response:
    """POST `body` as JSON to the in-process app; the whole body read. An exception
    escaping the app goes to `errors`, each SSE event to TIMELINE when it is sent."""
    wrapped = CatchAppErrors(app, errors, _record_events)
    return await _post(wrapped, path, body, base_url="http://sglang.test")


def responses(
    transcript: TranscriptLike,
    *,
    stream: bool,
    step: int = 1,
    incremental: bool = False,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_server: ToolServer | None = None,
    extra_request_fields: dict[str, Any] | None = None,
) -> Result:
    """POST /v1/responses to SGLang's app with the transcript as the model."""
    body: dict[str, Any] = {
        "model": MODEL,
        "input": transcript.prompt,
        "stream": stream,
        "tools": list(transcript.responses_tools if tools is None else tools),
    }
    body.update(extra_request_fields or {})
    serving = get_serving_for(tool_server, incremental=incremental)
    script = Script(turns=list(transcript.turns), step=step)
    serving.manager.script = script
    APP.state.openai_serving_responses = serving.responses
    errors: list[str] = []
    del TIMELINE[:]
    try:
        response = run(post(APP, "/v1/responses", body, errors))
    finally:
        serving.manager.script = None
    if script.errors:
        raise AssertionError("; ".join(script.errors))
    names, events, done, parsed_json = read_response(response, stream)
    return Result(
        status_code=response.status_code,
        headers=dict(response.headers),
        body=response.content,
        stream=stream,
        events=events,
        sse_event_names=names,
        done_marker=done,
        json=parsed_json,
        app_error=errors[0] if errors else None,
        calls=list(script.calls),
        timeline=list(TIMELINE),
    )


@contextlib.contextmanager
def http_server(serving: Serving, transcript: TranscriptLike, *, step: int = 1) -> Iterator[str]:
    """SGLang's app served by uvicorn on a free local port (a thread), with
    `serving` as its Responses handler and `transcript` as the model, for tests of
    what a client sees over a real connection. Yields the base URL."""
    import socket
    import threading

    import uvicorn

    APP.state.openai_serving_responses = serving.responses
    serving.manager.script = Script(turns=list(transcript.turns), step=step)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(APP, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        serving.manager.script = None


# --- checking and comparing outputs ---------------------------------------------


def check_stream(r: Result, *, strict: bool = False) -> dict[str, Any]:
    """A whole streamed response, as a client needs it: 200, SSE, no exception out
    of the app; the loose checks (stack, framing, openai-python's types) or, with
    `strict`, the whole Event contract (stream_checks.validate_stream). Returns
    the terminal event's response."""
    from stream_checks import loose, validate_stream

    assert r.stream, "not a streamed result"
    assert r.status_code == 200, r.body[:500]
    assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
    assert r.app_error is None, r.app_error
    if strict:
        return validate_stream(r.events)
    loose.check_stack(r.events)
    loose.check_framing(r.sse_event_names, r.events)
    final = r.final_response
    loose.check_schema(r.events, final)
    assert final is not None
    return final


def check_stream_matches_final(streamed: Result, final: Result) -> None:
    """The stream's `output_item.done` items, its terminal response's output and
    the non-streamed response's output are the same items (ids aside), and the
    two responses end with the same status."""
    from stream_checks.common import item_adapter, streamed_items

    assert final.status_code == 200, final.body[:500]
    assert final.json is not None
    terminal = streamed.final_response
    assert terminal is not None, "the stream has no terminal event"
    done = streamed_items(streamed.events)
    adapter = item_adapter()

    def items(xs: list[dict[str, Any]]) -> Any:
        return normalize([adapter.validate_python(x).model_dump(mode="json") for x in xs])

    assert items(done) == items(terminal["output"]), "stream items != its terminal output"
    assert items(terminal["output"]) == items(final.json["output"]), "stream != non-stream"
    assert terminal["status"] == final.json["status"]


# --- the plugin switch ----------------------------------------------------------


@contextlib.contextmanager
def plugin(on: bool) -> Iterator[None]:
    """harmony_stream's SGLang plugin on (install/uninstall around the block) or off.

    Imports `harmony_stream.sglang_plugin` lazily: until it exists, a test that
    asks for the plugin fails with ImportError (on or off)."""
    import importlib

    sglang_plugin = importlib.import_module("harmony_stream.sglang_plugin")

    if not on:
        assert not sglang_plugin.is_active(), "the plugin is active where it must be off"
        yield
        return
    assert sglang_plugin.install() is True, "sglang_plugin.install() refused (SGLang != 0.5.23?)"
    try:
        assert sglang_plugin.is_active()
        yield
    finally:
        sglang_plugin.uninstall()
        assert not sglang_plugin.is_active()
