"""Drive vLLM 0.33.0's real OpenAI serving (Responses and Chat Completions) without a GPU.

Real: `OpenAIServingModels`, `OnlineRenderer` (Harmony prompt rendering),
`OpenAIServingResponses` (HarmonyContext, its built-in tool loop, its MCP tool
server client), `OpenAIServingChat`, the FastAPI routers and vLLM's exception
handlers. The HTTP client is httpx over `ASGITransport`, so the bytes parsed
here are exactly the bytes vLLM writes.

Stand-ins: the model (`ScriptedEngine.generate` replays a recorded transcript:
sub-request n, `{request_id}_n`, gets model turn n), the model config (a
namespace with `hf_config.model_type == "gpt_oss"`), and the tokenizer (only
`decode`, done by the openai_harmony encoding itself).

Use: `responses(entry, stream=True)` / `chat(entry, stream=False)`; the app for a
given tool server (and plugin state) is built once and cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]

# Before vLLM reads its environment: the vocabulary offline, a fixed date in
# the system prompt (deterministic prompts), and the "container" MCP label
# allowed as a built-in tool (vLLM only enables labels listed here).
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(REPO / ".cache" / "tiktoken"))
os.environ.setdefault("VLLM_SYSTEM_START_DATE", "2026-01-01")
os.environ.setdefault("VLLM_GPT_OSS_SYSTEM_TOOL_MCP_LABELS", "container")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

# The client side both suites share (tests/suite_client.py): appended, so this
# directory's own modules come first.
if str(REPO / "tests") not in sys.path:
    sys.path.append(str(REPO / "tests"))

import logging  # noqa: E402

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from openai_harmony import HarmonyEncodingName, load_harmony_encoding  # noqa: E402
from suite_client import CatchAppErrors, final_response, post, read_response  # noqa: E402
from suite_client import normalize as normalize  # noqa: E402  (harness.normalize)
from suite_client import parse_sse as parse_sse  # noqa: E402  (harness.parse_sse)
from vllm.entrypoints.mcp.tool_server import MCPToolServer, ToolServer  # noqa: E402
from vllm.entrypoints.openai.chat_completion import api_router as chat_router  # noqa: E402
from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat  # noqa: E402
from vllm.entrypoints.openai.models import api_router as models_router  # noqa: E402
from vllm.entrypoints.openai.models.protocol import BaseModelPath  # noqa: E402
from vllm.entrypoints.openai.models.serving import OpenAIServingModels  # noqa: E402
from vllm.entrypoints.openai.responses import api_router as responses_router  # noqa: E402
from vllm.entrypoints.openai.responses.serving import OpenAIServingResponses  # noqa: E402
from vllm.entrypoints.serve.exception_handling.register import (  # noqa: E402
    init_exception_handler,
)
from vllm.outputs import CompletionOutput, RequestOutput  # noqa: E402
from vllm.renderers.online_renderer import OnlineRenderer  # noqa: E402
from vllm.sampling_params import RequestOutputKind  # noqa: E402

for _quiet in ("httpx", "mcp", "vllm"):
    logging.getLogger(_quiet).setLevel(logging.ERROR)

MODEL = "openai/gpt-oss-20b"
DEFAULT_PROMPT = "What is the weather in Paris today?"
ENCODING = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)


class TurnLike(Protocol):
    tokens: Sequence[int]
    finish_reason: str


class TranscriptLike(Protocol):
    name: str
    turns: Sequence[TurnLike]
    responses_tools: Sequence[dict[str, Any]]
    chat_tools: Sequence[dict[str, Any]] | None
    prompt: str


# --- tokenizer, renderer, model config stand-ins --------------------------------


class HarmonyTokenizer:
    """Only what the serving code calls on a gpt-oss tokenizer: `decode`."""

    def __init__(self, encoding: Any) -> None:
        self._encoding = encoding

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False, **_: Any) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if not self._encoding.is_special_token(i)]
        return str(self._encoding.decode(ids))

    def __repr__(self) -> str:
        return "HarmonyTokenizer(o200k_harmony)"


class Renderer:
    def __init__(self, tokenizer: HarmonyTokenizer) -> None:
        self.tokenizer = tokenizer

    def get_tokenizer(self) -> HarmonyTokenizer:
        return self.tokenizer


def model_config() -> SimpleNamespace:
    return SimpleNamespace(
        model=MODEL,
        served_model_name=MODEL,
        hf_config=SimpleNamespace(model_type="gpt_oss"),
        architecture="GptOssForCausalLM",
        max_model_len=131072,
        generation_config="vllm",
        override_generation_config={},
        get_diff_sampling_param=dict,
        get_vocab_size=lambda: 201088,
        logprobs_mode="raw_logprobs",
        is_hybrid=False,
        supports_multimodal_inputs=False,
        multimodal_config=None,
        get_multimodal_config=lambda: None,
        enable_prompt_embeds=False,
        allowed_local_media_path="",
        allowed_media_domains=None,
        skip_tokenizer_init=False,
        is_encoder_decoder=False,
    )


# --- the scripted engine ----------------------------------------------------------


@dataclass
class EngineCall:
    """One `generate` call as vLLM made it."""

    request_id: str
    sub_request: int
    prompt_token_ids: list[int]
    output_kind: str
    max_tokens: int | None
    stop_token_ids: list[int]
    outputs: int = 0  # RequestOutputs yielded

    @property
    def prompt_text(self) -> str:
        return str(ENCODING.decode(self.prompt_token_ids))


@dataclass
class Script:
    turns: Sequence[TurnLike]
    step: int
    calls: list[EngineCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


_SUB_REQUEST = re.compile(r"(?P<base>.+)_(?P<n>\d+)")


class ScriptedEngine:
    """Duck-typed `EngineClient` replaying one transcript per request.

    Sub-request n (`{request_id}_n`; chat has no suffix: 0) gets model turn n:
    `step` tokens per `RequestOutput` for DELTA, growing prefixes for
    CUMULATIVE, one output for FINAL_ONLY. A turn ends where the model stopped:
    a "stop" turn with its stop token (`<|return|>`/`<|call|>`, gpt-oss's EOS ids,
    which the real engine takes from the generation config; the serving layer's
    sampling params carry none), kept in `token_ids`; a "length" turn anywhere.
    """

    def __init__(self) -> None:
        self.tokenizer = HarmonyTokenizer(ENCODING)
        self.renderer = Renderer(self.tokenizer)
        self.model_config = model_config()
        self.input_processor = None
        self.vllm_config = None
        self.errored = False
        self.dead_error = RuntimeError("engine dead")
        self.script: Script | None = None

    def check_admission(self, n: int = 1) -> None:
        return None

    async def abort(self, request_id: Any, *args: Any, **kwargs: Any) -> None:
        return None

    async def is_tracing_enabled(self) -> bool:
        return False

    def _turn_index(self, request_id: str) -> int:
        m = _SUB_REQUEST.fullmatch(request_id)
        return int(m["n"]) if m else 0

    async def generate(
        self, engine_input: Any, sampling_params: Any, request_id: str, **_: Any
    ) -> AsyncIterator[RequestOutput]:
        script = self.script
        assert script is not None, "no transcript set for this request"
        n = self._turn_index(request_id)
        prompt_ids = [int(t) for t in engine_input["prompt_token_ids"]]
        call = EngineCall(
            request_id=request_id,
            sub_request=n,
            prompt_token_ids=prompt_ids,
            output_kind=sampling_params.output_kind.name,
            max_tokens=sampling_params.max_tokens,
            stop_token_ids=list(sampling_params.stop_token_ids or ()),
        )
        script.calls.append(call)
        if n >= len(script.turns):
            msg = (
                f"vLLM asked for model turn {n} ({request_id}); "
                f"the transcript has {len(script.turns)}"
            )
            script.errors.append(msg)
            raise AssertionError(msg)
        turn = script.turns[n]
        tokens = [int(t) for t in turn.tokens]
        kind = sampling_params.output_kind
        step = len(tokens) if kind == RequestOutputKind.FINAL_ONLY else max(1, script.step)
        skip_special = bool(getattr(sampling_params, "skip_special_tokens", False))
        bounds = [*range(step, len(tokens), step), len(tokens)]
        start, emitted = 0, ""
        for end in bounds:
            last = end == len(tokens)
            text = self._text(tokens[:end], skip_special, final=last)
            if kind == RequestOutputKind.DELTA:
                out_ids, out_text = tokens[start:end], text[len(emitted) :]
            else:
                out_ids, out_text = tokens[:end], text
            completion = CompletionOutput(
                index=0,
                text=out_text,
                token_ids=out_ids,
                cumulative_logprob=None,
                logprobs=None,
                finish_reason=turn.finish_reason if last else None,
                stop_reason=None,  # what vLLM reports for an EOS token
            )
            call.outputs += 1
            yield RequestOutput(
                request_id=request_id,
                prompt=None,
                prompt_token_ids=prompt_ids,
                prompt_logprobs=None,
                outputs=[completion],
                finished=last,
                num_cached_tokens=0,
            )
            start, emitted = end, text
            await asyncio.sleep(0)

    def _text(self, ids: list[int], skip_special: bool, *, final: bool) -> str:
        """Detokenized text so far; like vLLM's detokenizer, an incomplete UTF-8
        sequence at the end is held back until the next token completes it."""
        text = self.tokenizer.decode(ids, skip_special_tokens=skip_special)
        if not final:
            text = text.rstrip("\ufffd")
        return text


# --- the app ---------------------------------------------------------------------


@dataclass
class App:
    engine: ScriptedEngine
    app: FastAPI
    responses: OpenAIServingResponses
    chat: OpenAIServingChat
    tool_server: ToolServer | None
    app_errors: list[str] = field(default_factory=list)


def build_app(tool_server: ToolServer | None = None) -> App:
    engine = ScriptedEngine()
    models = OpenAIServingModels(engine, [BaseModelPath(name=MODEL, model_path=MODEL)])  # type: ignore[arg-type]
    common: dict[str, Any] = {
        "request_logger": None,
        "chat_template": None,
        "chat_template_content_format": "auto",
        "reasoning_parser": "openai_gptoss",
        "tool_parser": "openai",
        "enable_auto_tools": True,
    }
    renderer = OnlineRenderer(engine.model_config, engine.renderer, **common)  # type: ignore[arg-type]
    serving_responses = OpenAIServingResponses(
        engine,  # type: ignore[arg-type]
        models,
        renderer,
        tool_server=tool_server,
        **common,
    )
    serving_chat = OpenAIServingChat(
        engine,  # type: ignore[arg-type]
        models,
        "assistant",
        online_renderer=renderer,
        **common,
    )
    app = FastAPI()
    init_exception_handler(app)
    responses_router.attach_router(app)
    chat_router.attach_router(app)
    models_router.attach_router(app)
    app.state.openai_serving_models = models
    app.state.openai_serving_responses = serving_responses
    app.state.openai_serving_chat = serving_chat
    app.state.online_renderer = renderer
    app.state.args = SimpleNamespace(
        log_error_stack=bool(os.environ.get("HARNESS_LOG_ERROR_STACK")), sse_keep_alive_interval=0
    )
    return App(engine, app, serving_responses, serving_chat, tool_server)


# One event loop for the whole session: vLLM's serving objects hold asyncio
# primitives, and the MCP tool server client runs on it too.
_runner: asyncio.Runner | None = None
_apps: dict[tuple[int, bool], tuple[ToolServer | None, App]] = {}


def run(coro: Any) -> Any:
    global _runner
    if _runner is None:
        _runner = asyncio.Runner()
    return _runner.run(coro)


def close() -> None:
    """Close the session's event loop (and forget the apps built on it)."""
    global _runner
    _apps.clear()
    if _runner is not None:
        _runner.close()
        _runner = None


def plugin_active() -> bool:
    """Whether harmony_stream's vLLM plugin is installed right now."""
    mod = sys.modules.get("harmony_stream.vllm_plugin")
    return bool(mod is not None and mod.is_active())


def get_app(tool_server: ToolServer | None = None) -> App:
    """The cached app for this tool server and the current plugin state (the
    plugin may replace classes the serving objects resolve at construction)."""
    key = (id(tool_server), plugin_active())
    if key not in _apps:
        _apps[key] = (tool_server, build_app(tool_server))
    return _apps[key][1]


def connect_tool_server(spec: str) -> MCPToolServer:
    """vLLM's `--tool-server host:port/path,...`: a real `MCPToolServer`."""
    server = MCPToolServer()
    run(server.add_tool_server(spec))
    return server


# --- requests --------------------------------------------------------------------


@dataclass
class Result:
    status_code: int
    body: bytes
    stream: bool
    events: list[dict[str, Any]]  # SSE data objects, in order (stream only)
    sse_event_names: list[str | None]  # the `event:` line of each SSE block
    done_marker: bool  # `data: [DONE]` seen (chat)
    json: dict[str, Any] | None  # the non-streamed body
    app_error: str | None  # an exception that escaped vLLM's app
    calls: list[EngineCall]  # the engine's generate calls, in order

    @property
    def final_response(self) -> dict[str, Any] | None:
        """Responses: the terminal event's response (stream) or the body."""
        return final_response(self.stream, self.json, self.events)


async def _post(app: App, path: str, body: dict[str, Any]) -> httpx.Response:
    wrapped = CatchAppErrors(app.app, app.app_errors)
    return await post(wrapped, path, body, base_url="http://vllm.test")


def _request(
    path: str,
    transcript: TranscriptLike,
    body: dict[str, Any],
    *,
    step: int,
    tool_server: ToolServer | None,
) -> Result:
    app = get_app(tool_server)
    script = Script(turns=list(transcript.turns), step=step)
    app.engine.script = script
    del app.app_errors[:]
    try:
        response = run(_post(app, path, body))
    finally:
        app.engine.script = None
    if script.errors:
        raise AssertionError("; ".join(script.errors))
    stream = bool(body.get("stream"))
    names, events, done, parsed_json = read_response(response, stream)
    return Result(
        status_code=response.status_code,
        body=response.content,
        stream=stream,
        events=events,
        sse_event_names=names,
        done_marker=done,
        json=parsed_json,
        app_error=app.app_errors[0] if app.app_errors else None,
        calls=list(script.calls),
    )


def responses(
    transcript: TranscriptLike,
    *,
    stream: bool,
    step: int = 1,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_server: ToolServer | None = None,
    extra_request_fields: dict[str, Any] | None = None,
) -> Result:
    """POST /v1/responses with the transcript as the model."""
    body: dict[str, Any] = {
        "model": MODEL,
        "input": transcript.prompt,
        "stream": stream,
        "tools": list(transcript.responses_tools if tools is None else tools),
    }
    body.update(extra_request_fields or {})
    return _request("/v1/responses", transcript, body, step=step, tool_server=tool_server)


def chat(
    transcript: TranscriptLike,
    *,
    stream: bool,
    step: int = 1,
    tools: Sequence[dict[str, Any]] | None = None,
    extra_request_fields: dict[str, Any] | None = None,
) -> Result:
    """POST /v1/chat/completions with the transcript's first turn as the model."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": transcript.prompt}],
        "stream": stream,
    }
    chat_tools = transcript.chat_tools if tools is None else tools
    if chat_tools:
        body["tools"] = list(chat_tools)
    body.update(extra_request_fields or {})
    return _request("/v1/chat/completions", transcript, body, step=step, tool_server=None)


# --- comparing outputs ------------------------------------------------------------


@dataclass
class ChatOutput:
    """What a chat client ends up with: the text fields and the tool calls."""

    content: str | None
    reasoning: str | None
    tool_calls: list[tuple[str | None, str]]  # (name, arguments)
    finish_reason: str | None

    @classmethod
    def from_result(cls, r: Result) -> ChatOutput:
        if not r.stream:
            assert r.json is not None
            choice = r.json["choices"][0]
            msg = choice["message"]
            return cls(
                msg.get("content"),
                msg.get("reasoning"),
                [
                    (c["function"]["name"], c["function"]["arguments"])
                    for c in msg.get("tool_calls") or []
                ],
                choice.get("finish_reason"),
            )
        content: list[str] = []
        reasoning: list[str] = []
        calls: dict[int, list[Any]] = {}
        finish = None
        for chunk in r.events:
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    content.append(delta["content"])
                if delta.get("reasoning"):
                    reasoning.append(delta["reasoning"])
                for tc in delta.get("tool_calls") or []:
                    slot = calls.setdefault(tc["index"], [None, ""])
                    fn = tc.get("function") or {}
                    if fn.get("name"):
                        slot[0] = fn["name"]
                    slot[1] += fn.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
        return cls(
            "".join(content) if content else None,
            "".join(reasoning) if reasoning else None,
            [(name, args) for _i, (name, args) in sorted(calls.items())],
            finish,
        )


# --- the plugin switch ----------------------------------------------------------


@contextlib.contextmanager
def plugin(on: bool) -> Iterator[None]:
    """harmony_stream's vLLM plugin on (install/uninstall around the block) or off."""
    from harmony_stream import vllm_plugin

    if not on:
        assert not vllm_plugin.is_active(), "the plugin is active where it must be off"
        yield
        return
    assert vllm_plugin.install() is True, "vllm_plugin.install() refused (vLLM != 0.33.0?)"
    try:
        assert vllm_plugin.is_active()
        yield
    finally:
        vllm_plugin.uninstall()
        assert not vllm_plugin.is_active()
