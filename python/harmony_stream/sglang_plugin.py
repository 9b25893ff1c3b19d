"""harmony-stream inside SGLang: a general plugin, switched on by one variable.

``pip install harmony-stream`` into SGLang's environment registers
:func:`register` under SGLang's ``sglang.srt.plugins`` entry point group (name
``harmony_stream``; with ``SGLANG_PLUGINS`` set, list that name in it). SGLang
calls it in every process it starts (the server, the scheduler, the
detokenizer). It does nothing unless ``HARMONY_STREAM_SGLANG=1`` (or ``true``/
``yes``/``on``). Then, on an SGLang release of :data:`SUPPORTED_SGLANG_VERSIONS`
(or any release with ``HARMONY_STREAM_SGLANG=force``), in the process that
serves the API (once SGLang's Responses serving module is imported: schedulers
and detokenizers never import it), it first checks every seam of :data:`SEAMS`,
then patches all of them or none. For gpt-oss (SGLang's Harmony path of
``/v1/responses``):

* ``HarmonyContext.append_output`` (and ``StreamingHarmonyContext``'s): each
  turn's ``output_ids`` (cumulative or only the new ids, as the tokenizer
  manager's ``incremental_streaming_output`` says, with the request's ``stream``)
  feed the request's :class:`harmony_stream.ResponseStream`, the one parse of
  the tokens: the context's messages (which SGLang's tool loop runs and renders
  the next prompt from) are the engine's, usage comes from each turn's
  ``meta_info`` (prompt, completion and cached tokens, summed over turns), and
  the reasoning tokens are the engine's count of analysis and tool-call tokens;
  a tool's answer is the engine's ``tool_output`` (with the MCP error flag);
* ``StreamingHarmonyContext.messages`` / ``render_for_completion``: the
  streaming context reads the same messages as the other one;
* ``HarmonyContext.need_builtin_tool_call`` / ``call_tool``: a built-in call
  cut by ``max_output_tokens`` is not run, and a call that raises becomes the
  tool's error answer (the item closes ``failed``) instead of failing the request;
* ``OpenAIServingResponses.responses_stream_generator``: the items' events come
  from the engine, between SGLang's own ``response.created``/``in_progress``
  and its terminal event; an exception from generation ends the stream with
  the open items closed and ``response.failed``;
* ``OpenAIServingResponses.responses_full_generator``: the final response's
  ``output`` is the engine's items (streamed, not streamed, stored).

The server's FastAPI app answers ``/v1/responses`` with the header
``x-harmony-stream: VERSION`` while the plugin is active (a middleware added
when :func:`register` runs in the server process, before the app starts).

On another SGLang version (without ``force``), or a seam that is not as
expected, or a patch that fails, it logs one line, undoes what it patched, and
SGLang runs as it would without the plugin. A request the engine cannot take
(its tools, for one) keeps SGLang's own path, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from ._native import FINISH_REASONS, ResponseEvent, ResponseStream, Vocab
from ._plugin import (
    FORCE,
    HEADER,
    Engine,
    HeaderMiddleware,
    InstallOnImport,
    Seam,
    SessionProxy,
    Target,
    engine_tools,
    first_leaf,
    original,
    switch,
    tool_error_message,
    tool_text,
)
from ._plugin import check_seams as _check_seams
from .errors import HarmonyStreamError

__all__ = [
    "ENV_VAR",
    "FORCE",
    "HEADER",
    "SEAMS",
    "SUPPORTED_SGLANG_VERSIONS",
    "check_seams",
    "install",
    "is_active",
    "register",
    "uninstall",
]

ENV_VAR = "HARMONY_STREAM_SGLANG"
"""The switch: ``1`` (``true``/``yes``/``on``) on, ``force`` also an untested
SGLang version if every seam matches (:data:`FORCE`)."""
SUPPORTED_SGLANG_VERSIONS: tuple[str, ...] = ("0.5.23",)
"""The SGLang releases the plugin is tested on (``tests_sglang/``)."""

# A child of SGLang's "sglang" logger, so the lines appear with SGLang's own.
logger = logging.getLogger("sglang.srt.plugins.harmony_stream")

_SERVING = "sglang.srt.entrypoints.openai.serving_responses"
_CONTEXT = "sglang.srt.entrypoints.context"
_HTTP_SERVER = "sglang.srt.entrypoints.http_server"
_SERVING_MODULES = (_SERVING,)
_HEADER_PATHS = ("/v1/responses",)
_SERVING_CALL = (
    "self",
    "request",
    "sampling_params",
    "result_generator",
    "context",
    "model_name",
    "tokenizer",
    "request_metadata",
    "created_time",
)

SEAMS: tuple[Seam, ...] = (
    # Patched.
    Seam(_CONTEXT, "HarmonyContext", "append_output", True, ("self", "output")),
    Seam(_CONTEXT, "StreamingHarmonyContext", "append_output", True, ("self", "output")),
    Seam(_CONTEXT, "StreamingHarmonyContext", "messages", True),
    Seam(_CONTEXT, "StreamingHarmonyContext", "render_for_completion", True, ("self",)),
    Seam(_CONTEXT, "HarmonyContext", "need_builtin_tool_call", True, ("self",)),
    Seam(_CONTEXT, "HarmonyContext", "call_tool", True, ("self",)),
    Seam(_SERVING, "OpenAIServingResponses", "responses_stream_generator", True, _SERVING_CALL),
    Seam(
        _SERVING,
        "OpenAIServingResponses",
        "responses_full_generator",
        True,
        (*_SERVING_CALL, "..."),
    ),
    # Read by the replacements.
    Seam(_CONTEXT, "HarmonyContext", "_messages", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "messages"),
    Seam(_CONTEXT, "HarmonyContext", "tool_sessions", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "num_init_messages", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "num_prompt_tokens", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "num_cached_tokens", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "num_output_tokens", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "num_reasoning_tokens", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "finish_reason", instance=True),
    Seam(_CONTEXT, "", "render_for_completion", params=("messages",)),
    Seam(_CONTEXT, "", "Tool"),
    Seam(_SERVING, "", "ResponsesResponse"),
    Seam(_SERVING, "", "_RESPONSE_OUTPUT"),
    Seam(_SERVING, "OpenAIServingResponses", "use_harmony", instance=True),
    Seam("sglang.srt.runtime_context", "", "get_serving", params=()),
    Seam("sglang.srt.entrypoints.harmony_utils", "", "get_encoding", params=()),
)
"""Every seam, in one table; :func:`check_seams` checks them all before patching."""

_TARGET = Target("SGLang", "sglang", SUPPORTED_SGLANG_VERSIONS, ENV_VAR, logger)
_vocab: Vocab | None = None


def register() -> None:
    """The ``sglang.srt.plugins`` entry point: install when ``HARMONY_STREAM_SGLANG`` is on.

    SGLang calls it in every process it starts. Unless SGLang's Responses
    serving module is already imported, patching waits until it is (an import
    hook): schedulers and detokenizers never import it because of this plugin.
    """
    if switch(ENV_VAR) is None:
        return
    if _TARGET.version() is None:
        return
    http_server = sys.modules.get(_HTTP_SERVER)
    if http_server is not None:
        add_header(getattr(http_server, "app", None))
    if _SERVING in sys.modules:
        install()
    elif not any(isinstance(f, _InstallOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _InstallOnImport())


def add_header(app: Any) -> bool:
    """Adds the ``x-harmony-stream`` middleware to SGLang's FastAPI `app` (once,
    before the app starts); the header is sent only while the plugin is active."""
    if app is None or getattr(app.state, "harmony_stream_header", False):
        return False
    try:
        app.add_middleware(HeaderMiddleware, paths=_HEADER_PATHS, is_active=is_active)
    except RuntimeError as e:  # the app has started
        logger.warning("harmony-stream: no %s header on this server: %s", HEADER, e)
        return False
    app.state.harmony_stream_header = True
    return True


class _InstallOnImport(InstallOnImport):
    """Runs :func:`install` once SGLang's Responses serving module is imported."""

    modules = _SERVING_MODULES
    depth = 0

    @staticmethod
    def install() -> object:
        return install()


def is_active() -> bool:
    """Whether SGLang is patched in this process."""
    return bool(_TARGET.patches.made)


def check_seams(version: str | None = None, seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """What is not as the plugin expects in SGLang `version` (default: the
    installed one's): one line per seam."""
    if version is None:
        import sglang

        version = str(getattr(sglang, "__version__", "unknown"))
    return _check_seams(version, seams, "sglang")


def install() -> bool:
    """Patch SGLang, all or nothing (idempotent).

    False, with one log line, when the SGLang version is not supported (see
    :data:`SUPPORTED_SGLANG_VERSIONS` and ``HARMONY_STREAM_SGLANG=force``), when
    a seam of :data:`SEAMS` is not as the plugin expects, or when a patch fails
    (then every patch already made is undone).
    """
    return _TARGET.install(
        check_seams,
        lambda version: _patch_table(),
        "gpt-oss /v1/responses parsing and streaming events",
    )


def uninstall() -> None:
    """Restore SGLang's own functions (for tests and A/B runs in one process)."""
    _TARGET.uninstall()


def _get_vocab() -> Vocab:
    """The vocabulary from SGLang's own loaded Harmony encoding (no second file)."""
    global _vocab
    if _vocab is None:
        from sglang.srt.entrypoints.harmony_utils import get_encoding

        _vocab = Vocab.from_encoding(get_encoding())
    return _vocab


# ---------------------------------------------------------------------------
# One request


class _Engine(Engine):
    """A request's engine, logging as SGLang's plugin."""

    __slots__ = ()
    log = logger
    server = "SGLang"


class _Turns:
    """What the context knows of the request's turns beyond SGLang's own fields."""

    __slots__ = ("cached", "completion", "incremental", "open", "prompt", "seen")

    def __init__(self, incremental: bool) -> None:
        self.incremental = incremental  # output_ids holds only the new ids
        self.open = False  # a turn has begun and not finished
        self.prompt = self.completion = self.cached = 0  # the finished turns' usage
        self.seen = 0  # ids of this turn already fed (cumulative output_ids)


def _reason(finish_reason: Any) -> str | None:
    """SGLang's finish reason (``{"type": "length", ...}`` or a string) as the engine's."""
    kind = finish_reason.get("type") if isinstance(finish_reason, dict) else finish_reason
    if kind is None:
        return None
    return kind if kind in FINISH_REASONS else "stop"


def _attach(context: Any, request: Any, model_name: Any) -> _Engine | None:
    """The context's engine, made on first use; None when the engine cannot take the request."""
    if "_hs_engine" in context.__dict__:
        engine: _Engine | None = context.__dict__["_hs_engine"]
        return engine
    engine = None
    try:
        stream = ResponseStream(
            _get_vocab(),
            tools=engine_tools(request, exclude_unset=True),
            model=model_name or getattr(request, "model", None) or "gpt-oss",
            response_id=getattr(request, "request_id", None),
            max_output_tokens=getattr(request, "max_output_tokens", None),
            keep_messages=True,
        )
        engine = _Engine(stream)
    except (HarmonyStreamError, TypeError, ValueError) as e:
        logger.warning("harmony-stream: using SGLang's own events for this request: %s", e)
    context.__dict__["_hs_engine"] = engine
    if engine is not None:
        from sglang.srt.runtime_context import get_serving

        # As SGLang's tokenizer manager decides it: new ids only when the server
        # runs with --incremental-streaming-output and the request streams.
        incremental = bool(request.stream) and bool(get_serving().incremental_streaming_output)
        context.__dict__["_hs_turns"] = _Turns(incremental)
        sessions = context.tool_sessions
        from sglang.srt.entrypoints.context import Tool

        for name, session in list(sessions.items()):
            if not isinstance(session, (Tool, SessionProxy)):
                sessions[name] = SessionProxy(session, context)
    return engine


_ENGINE_FAILED = "harmony-stream's event engine failed"

# The strings openai-python 2.8.0 requires in a browser action (newer ones do not).
_ACTION_STRINGS = {"search": ("query",), "open_page": ("url",), "find_in_page": ("url", "pattern")}


def _server_items(adapter: Any, items: list[dict[str, Any]]) -> list[Any]:
    """The engine's items as SGLang's response model holds them (its openai-python's
    types, 2.8.0 for SGLang 0.5.23).

    The engine writes the newest Responses shapes; where SGLang's older types
    differ, the item is written as they declare it: an MCP call's ``error``
    object becomes its text; a browser action's missing URL, query or pattern (a
    page opened by its id, a cut call) an empty string, and ``find_in_page``
    their ``find``; a browser call cut before it ran ``failed`` (they have no
    ``incomplete`` for it). Fields those types do not know (a message's
    ``phase``) are kept as extra fields. An item they still refuse is kept as
    the engine wrote it, with a warning.
    """
    try:
        return list(adapter.validate_python(items))
    except Exception:
        pass
    out: list[Any] = []
    for item in items:
        try:
            out.extend(adapter.validate_python([item]))
            continue
        except Exception:
            pass
        older = dict(item)
        error = older.get("error")
        if older.get("type") == "mcp_call" and isinstance(error, dict):
            parts = error.get("content") or ()
            older["error"] = "".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))
        action = older.get("action")
        if isinstance(action, dict):
            needed = _ACTION_STRINGS.get(str(action.get("type")), ())
            action = {**action, **{k: "" for k in needed if action.get(k) is None}}
            if action.get("type") == "find_in_page":
                action["type"] = "find"  # its name in those types
            older["action"] = action
        if older.get("type") == "web_search_call" and older.get("status") == "incomplete":
            older["status"] = "failed"
        try:
            out.extend(adapter.validate_python([older]))
        except Exception as e:
            logger.warning(
                "harmony-stream: SGLang's types refuse a %s item: %s", item.get("type"), e
            )
            out.append(item)
    return out


def _numbered(event: ResponseEvent, number: int) -> str:
    event.sequence_number = number
    return event.to_sse().decode()


def _patch_table() -> list[tuple[Any, str, Any]]:
    """Every replacement, as (owner, attribute, new value); SGLang is not touched here."""
    import orjson
    from sglang.srt.entrypoints import context as sctx
    from sglang.srt.entrypoints.openai import serving_responses as sserving

    HarmonyContext = sctx.HarmonyContext
    StreamingContext = sctx.StreamingHarmonyContext
    Serving = sserving.OpenAIServingResponses
    ResponsesResponse = sserving.ResponsesResponse
    output_adapter = sserving._RESPONSE_OUTPUT
    render = sctx.render_for_completion
    table: list[tuple[Any, str, Any]] = []

    def _sse(event_type: str, number: int, payload: dict[str, Any]) -> str:
        """An event as SGLang writes its own (orjson, ``event:`` and ``data:`` lines)."""
        body = {"type": event_type, "sequence_number": number, **payload}
        return f"event: {event_type}\ndata: {orjson.dumps(body).decode()}\n\n"

    # The tokens parsed once, by the engine; SGLang's usage fields from meta_info.
    def engine_append_output(self: Any, engine: _Engine, output: Any) -> None:
        turns: _Turns = self.__dict__["_hs_turns"]
        if not (isinstance(output, dict) and "output_ids" in output):
            # A built-in tool's answer, as messages.
            messages = list(output)
            for m in messages:
                if m.author.role == "tool" and m.recipient is None:
                    m.recipient = "assistant"
            self._messages.extend(messages)
            is_error = bool(self.__dict__.pop("_hs_tool_error", False))
            engine.tool_output(tool_text(messages), is_error)
            return
        ids = output["output_ids"]
        if not turns.open:
            turns.open = True
            turns.seen = 0
            self.finish_reason = None
        if not turns.incremental:
            ids = ids[turns.seen :]
            turns.seen += len(ids)
        if ids and engine.feed(ids):
            self._messages += engine.messages()
        meta = output.get("meta_info") or {}
        prompt = meta.get("prompt_tokens") or 0
        completion = meta.get("completion_tokens") or 0
        cached = meta.get("cached_tokens") or 0
        self.num_prompt_tokens = turns.prompt + prompt
        self.num_output_tokens = turns.completion + completion
        self.num_cached_tokens = turns.cached + cached
        self.num_reasoning_tokens = engine.stream.analysis_or_call_tokens
        reason = meta.get("finish_reason")
        if reason is not None:
            self.finish_reason = reason
            turns.open = False
            turns.prompt, turns.completion, turns.cached = (
                self.num_prompt_tokens,
                self.num_output_tokens,
                self.num_cached_tokens,
            )
            kind = _reason(reason)
            if kind not in (None, "stop"):
                # The response ends here (no tool runs after a cut turn).
                engine.close(kind)
                self._messages += engine.messages()

    for Context in (HarmonyContext, StreamingContext):
        orig_append = original(Context, "append_output")

        def append_output(self: Any, output: Any, *, _orig: Any = orig_append) -> None:
            engine = self.__dict__.get("_hs_engine")
            if engine is None:
                _orig(self, output)
            else:
                engine_append_output(self, engine, output)

        table.append((Context, "append_output", append_output))

    orig_messages = StreamingContext.__dict__["messages"]

    def messages(self: Any) -> list[Any]:
        if self.__dict__.get("_hs_engine") is None:
            return list(orig_messages.__get__(self))
        # As SGLang's streaming context: the output (model and tool messages) only.
        return self._messages[self.num_init_messages :]  # type: ignore[no-any-return]

    table.append((StreamingContext, "messages", property(messages)))

    orig_render = original(StreamingContext, "render_for_completion")

    def render_for_completion(self: Any) -> list[int]:
        if self.__dict__.get("_hs_engine") is None:
            return list(orig_render(self))
        return list(render(self._messages))

    table.append((StreamingContext, "render_for_completion", render_for_completion))

    # A built-in call cut by max_output_tokens (or an abort) is not a call.
    orig_need_call = original(HarmonyContext, "need_builtin_tool_call")

    def need_builtin_tool_call(self: Any) -> bool:
        if _reason(self.finish_reason) not in (None, "stop"):
            return False
        return bool(orig_need_call(self))

    table.append((HarmonyContext, "need_builtin_tool_call", need_builtin_tool_call))

    # A tool call that raises fails that call, not the whole request: the model
    # gets the error as the tool's answer and the item closes `failed`.
    orig_call_tool = original(HarmonyContext, "call_tool")

    async def call_tool(self: Any) -> Any:
        if self.__dict__.get("_hs_engine") is None:
            return await orig_call_tool(self)
        try:
            return await orig_call_tool(self)
        except Exception as e:
            error = first_leaf(e)
            last = self.messages[-1]
            logger.warning("harmony-stream: the %s call failed: %s", last.recipient, error)
            self.__dict__["_hs_tool_error"] = True
            return [tool_error_message(last, f"{type(error).__name__}: {error}")]

    table.append((HarmonyContext, "call_tool", call_tool))

    orig_full = original(Serving, "responses_full_generator")

    async def responses_full_generator(self: Any, *args: Any, **kwargs: Any) -> Any:
        request, _, _, context = args[:4]
        engine = None
        if self.use_harmony and isinstance(context, HarmonyContext):
            engine = _attach(context, request, args[4])
        if engine is None:
            return await orig_full(self, *args, **kwargs)
        # SGLang's own items are not built (the engine's replace them).
        kwargs["output_items"] = []
        response = await orig_full(self, *args, **kwargs)
        if not isinstance(response, ResponsesResponse):
            return response
        engine.finish(_reason(context.finish_reason))
        # The same object is in SGLang's response store: retrieval sees it too.
        if engine.output is not None:
            response.output = _server_items(output_adapter, engine.output)
        if engine.broken:
            # An engine bug: the response fails rather than end without its items.
            response.status = "failed"
            response.incomplete_details = None
            response.error = {"code": "server_error", "message": _ENGINE_FAILED}
        return response

    table.append((Serving, "responses_full_generator", responses_full_generator))

    orig_stream = original(Serving, "responses_stream_generator")

    async def responses_stream_generator(
        self: Any,
        request: Any,
        sampling_params: Any,
        result_generator: Any,
        context: Any,
        model_name: Any,
        tokenizer: Any,
        request_metadata: Any,
        created_time: Any = None,
        **kwargs: Any,
    ) -> Any:
        args = (request, sampling_params, result_generator, context, model_name)
        engine = _attach(context, request, model_name)
        if engine is None:
            async for chunk in orig_stream(
                self, *args, tokenizer, request_metadata, created_time, **kwargs
            ):
                yield chunk
            return
        created_time = created_time or int(time.time())
        envelope = ResponsesResponse.from_request(
            request,
            sampling_params,
            model_name=model_name,
            created_time=created_time,
            output=[],
            status="in_progress",
            usage=None,
        ).model_dump()
        envelope["tools"] = []  # as SGLang sends it
        yield _sse("response.created", 0, {"response": envelope})
        yield _sse("response.in_progress", 1, {"response": envelope})
        number = 2
        failure: BaseException | None = None
        try:
            for event in engine.drain():
                yield _numbered(event, number)
                number += 1
            async for _ in result_generator:
                for event in engine.drain():
                    yield _numbered(event, number)
                    number += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:
            failure = e
            logger.exception("harmony-stream: generation failed mid-stream")
        if engine.broken and failure is None:
            failure = RuntimeError(_ENGINE_FAILED)
        if engine.broken:
            closing = engine.abandon()
        else:
            closing = engine.finish("error" if failure else _reason(context.finish_reason))
        for event in closing:
            yield _numbered(event, number)
            number += 1

        async def nothing() -> Any:
            for _ in ():
                yield

        final = await responses_full_generator(
            self,
            request,
            sampling_params,
            nothing(),
            context,
            model_name,
            tokenizer,
            request_metadata,
            created_time=created_time,
            **kwargs,
        )
        if not isinstance(final, ResponsesResponse):
            return
        if failure is not None:
            # The same object is in SGLang's response store: retrieval sees it too.
            final.status = "failed"
            final.incomplete_details = None
            final.error = {
                "code": "server_error",
                "message": str(failure) or type(failure).__name__,
            }
        body = final.model_dump()
        body["tools"] = []  # as SGLang sends it
        if engine.output is not None:
            body["output"] = engine.output  # the streamed items, as streamed
        yield _sse(f"response.{final.status}", number, {"response": body})

    table.append((Serving, "responses_stream_generator", responses_stream_generator))
    return table
