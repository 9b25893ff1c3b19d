"""harmony-stream inside vLLM: a general plugin, switched on by one variable.

``pip install harmony-stream`` into vLLM's environment (there is no ``vllm``
extra, so vLLM is never replaced) registers :func:`register`
under vLLM's ``vllm.general_plugins`` entry point group; vLLM calls it in every
process it starts. It does nothing unless ``HARMONY_STREAM_VLLM=1`` (or ``true``/
``yes``/``on``). Then, on a vLLM release of :data:`SUPPORTED_VLLM_VERSIONS` (or
any release with ``HARMONY_STREAM_VLLM=force``), in the process that serves the
API (once vLLM's chat or responses serving module is imported: engine cores and
workers never are), it first checks every seam of :data:`SEAMS` (each patched
attribute and each private name the replacements read, with the signature they
were written for), then patches all of them or none:

* ``vllm.parser.harmony.get_streamable_parser_for_assistant``: vLLM's
  ``HarmonyParser`` (``process_chunk``/``flush``, used by /v1/chat/completions
  and /v1/responses) runs on harmony-stream's lenient Rust parser through
  :class:`RustStreamableParser`, which has the ``openai_harmony.StreamableParser``
  interface vLLM uses; ``HarmonyParser.process_chunk`` itself is replaced by one
  with the same result and fewer Python calls per token;
* ``HarmonyContext.append_output`` / ``append_tool_output`` /
  ``init_tool_sessions``: every request's tokens, and the built-in tool results
  of vLLM's tool loop (with the MCP ``is_error`` flag), also feed a
  :class:`harmony_stream.ResponseStream`;
* ``OpenAIServingResponses._process_harmony_streaming_events``: the streamed
  items' events come from that engine; ``response.created``/``in_progress`` and
  the terminal event stay vLLM's (its response id, usage and status);
* ``HarmonyContext.need_builtin_tool_call`` / ``call_tool``: a built-in call
  cut by ``max_tokens`` is not run, and a tool call that raises becomes the
  tool's error answer (the item closes ``failed``) instead of failing the request;
* ``responses.serving.harmony_to_response_output``: a message vLLM's builder
  cannot take (kept by the lenient parser) no longer fails the request; one with
  no known channel is read as ``final``;
* ``OpenAIServingResponses.responses_full_generator``: the final response's
  ``output`` is the engine's items, so ``response.completed``, the stored
  response and a ``stream=False`` response carry the streamed items, ids included.
* ``attach_router`` of the Responses and Chat Completions routers: the app they
  are attached to answers ``/v1/responses`` and ``/v1/chat/completions`` with a
  ``x-harmony-stream: VERSION`` header while the plugin is active (an operator
  checks it with ``curl -i``), through one ASGI middleware per app.

On another vLLM version (without ``force``), a seam that is not as expected, or
a patch that fails, it logs one line, undoes what it patched, and vLLM runs as
it would without the plugin. A request the engine cannot take (it raises while
the stream is set up) falls back to vLLM's own event path, with a warning.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ._native import CHANNELS, HarmonyParser, ResponseStream, Vocab
from ._plugin import (
    FORCE,
    HEADER,
    TERMINAL,
    Engine,
    HeaderMiddleware,
    InstallOnImport,
    Seam,
    SessionProxy,
    Target,
    engine_tools,
    first_leaf,
    original,
    signature_problem,
    stored,
    switch,
    tool_error_message,
    tool_text,
)
from ._plugin import check_seams as _check_seams
from .errors import HarmonyError, HarmonyStreamError

__all__ = [
    "ENV_VAR",
    "FORCE",
    "HEADER",
    "SEAMS",
    "SUPPORTED_VLLM_VERSION",
    "SUPPORTED_VLLM_VERSIONS",
    "RustStreamableParser",
    "Seam",
    "check_seams",
    "install",
    "is_active",
    "register",
    "uninstall",
]

ENV_VAR = "HARMONY_STREAM_VLLM"
"""The switch: ``1`` (``true``/``yes``/``on``) on, ``force`` also an untested vLLM
version if every seam matches (:data:`FORCE`)."""
SUPPORTED_VLLM_VERSIONS: tuple[str, ...] = ("0.32.0", "0.33.0")
"""The vLLM releases the plugin is tested on (``tests_vllm/``, each in its own virtualenv)."""
SUPPORTED_VLLM_VERSION = SUPPORTED_VLLM_VERSIONS[-1]
"""The newest of :data:`SUPPORTED_VLLM_VERSIONS`."""

# A child of vLLM's "vllm" logger, so the lines appear with vLLM's own.
logger = logging.getLogger("vllm.plugins.harmony_stream")

_TERMINAL = TERMINAL
_KNOWN_CHANNELS = frozenset(CHANNELS)

_TARGET = Target("vLLM", "vllm", SUPPORTED_VLLM_VERSIONS, ENV_VAR, logger)
_patches = _TARGET.patches.made  # (owner, name, what it held), in the order patched
_vocab: Vocab | None = None


# Importing one of these means the process serves the OpenAI API. The routers
# import their serving module: patching waits until the outermost one is done,
# so no router is half-initialised when its `attach_router` is checked.
_SERVING_MODULES = (
    "vllm.entrypoints.openai.responses.serving",
    "vllm.entrypoints.openai.chat_completion.serving",
    "vllm.entrypoints.openai.responses.api_router",
    "vllm.entrypoints.openai.chat_completion.api_router",
)


def register() -> None:
    """The ``vllm.general_plugins`` entry point: install when ``HARMONY_STREAM_VLLM`` is on.

    vLLM calls it in every process it starts: the API server, but also engine
    cores and GPU workers, which never serve the API. So unless a serving module
    is already imported, patching waits until one is (an import hook), and those
    processes never import vLLM's OpenAI layer because of this plugin.
    """
    if _switch() is None:
        return
    if _vllm_version() is None:
        return
    if any(name in sys.modules for name in _SERVING_MODULES):
        install()
    elif not any(isinstance(f, _InstallOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _InstallOnImport())


def _switch() -> str | None:
    """``"on"``, ``"force"`` (any vLLM version whose seams match) or None (off)."""
    return switch(ENV_VAR)


def _vllm_version() -> str | None:
    """The importable vLLM's version if the plugin may patch it; else one log line says why not."""
    return _TARGET.version()


class _InstallOnImport(InstallOnImport):
    """Runs :func:`install` once a serving module has been imported (outermost
    import of one, so no module is half-initialised then), then removes itself."""

    modules = _SERVING_MODULES
    depth = 0

    @staticmethod
    def install() -> object:
        return install()


def is_active() -> bool:
    """Whether vLLM is patched in this process."""
    return bool(_TARGET.patches.made)


def install() -> bool:
    """Patch vLLM, all or nothing (idempotent).

    False, with one log line, when the vLLM version is not supported (see
    :data:`SUPPORTED_VLLM_VERSIONS` and ``HARMONY_STREAM_VLLM=force``), when a
    seam of :data:`SEAMS` is not as the plugin expects, or when a patch fails
    (then every patch already made is undone).
    """
    return _TARGET.install(
        check_seams,
        lambda version: _patch_table(version),
        "Harmony parsing and Responses streaming events",
    )


def uninstall() -> None:
    """Restore vLLM's own functions (for tests and A/B runs in one process)."""
    _TARGET.uninstall()


_stored = stored
_original = original


# ---------------------------------------------------------------------------
# The seams: every place of vLLM the plugin patches or reads, checked before
# anything is patched


_PARSER = "vllm.parser.harmony"
_CONTEXT = "vllm.entrypoints.openai.responses.context"
_SERVING = "vllm.entrypoints.openai.responses.serving"
_RESPONSES_ROUTER = "vllm.entrypoints.openai.responses.api_router"
_CHAT_ROUTER = "vllm.entrypoints.openai.chat_completion.api_router"
_SERVING_CALL = ("self", "request", "sampling_params", "result_generator", "context", "model_name")
# The releases whose incomplete stream ends with `response.completed` (0.33 fixed it).
_COMPLETED_WHEN_INCOMPLETE = ("0.31.0", "0.32.0")

SEAMS: tuple[Seam, ...] = (
    # Patched.
    Seam(_PARSER, "", "get_streamable_parser_for_assistant", True, ()),
    Seam(_PARSER, "HarmonyParser", "process_chunk", True, ("self", "token_ids")),
    Seam(_CONTEXT, "HarmonyContext", "append_output", True, ("self", "output")),
    Seam(_CONTEXT, "HarmonyContext", "append_tool_output", True, ("self", "output")),
    Seam(_CONTEXT, "HarmonyContext", "need_builtin_tool_call", True, ("self",)),
    Seam(_CONTEXT, "HarmonyContext", "call_tool", True, ("self",)),
    Seam(_CONTEXT, "HarmonyContext", "init_tool_sessions", True, ("self", "...")),
    Seam(
        _SERVING,
        "OpenAIServingResponses",
        "_process_harmony_streaming_events",
        True,
        (*_SERVING_CALL, "..."),
    ),
    Seam(_SERVING, "", "harmony_to_response_output", True, ("message", "...")),
    Seam(
        _SERVING,
        "OpenAIServingResponses",
        "responses_full_generator",
        True,
        (*_SERVING_CALL, "..."),
    ),
    # vLLM 0.31 and 0.32 end an incomplete streamed response with `response.completed`
    # (status "incomplete"), and their background replay stops only at that event.
    Seam(
        _SERVING,
        "OpenAIServingResponses",
        "responses_stream_generator",
        True,
        (*_SERVING_CALL, "..."),
        versions=_COMPLETED_WHEN_INCOMPLETE,
    ),
    Seam(
        _SERVING,
        "OpenAIServingResponses",
        "responses_background_stream_generator",
        True,
        ("self", "response_id", "..."),
        versions=_COMPLETED_WHEN_INCOMPLETE,
    ),
    Seam(_RESPONSES_ROUTER, "", "attach_router", True, ("app",)),
    Seam(_CHAT_ROUTER, "", "attach_router", True, ("app",)),
    # Read by the replacements.
    Seam(_PARSER, "", "Segment"),
    Seam(_PARSER, "", "ChunkResult"),
    Seam(_PARSER, "HarmonyParser", "_normalize_recipient", params=("recipient",)),
    Seam(_PARSER, "HarmonyParser", "_poll_completed_message", params=("self",)),
    Seam(_PARSER, "HarmonyParser", "_harmony_parser", instance=True),
    Seam(_PARSER, "HarmonyParser", "_current_message_tokens", instance=True),
    Seam(_PARSER, "HarmonyParser", "_num_processed_messages", instance=True),
    Seam(_PARSER, "HarmonyParser", "_num_counted_tokens", instance=True),
    Seam(_PARSER, "HarmonyParser", "_num_reasoning_tokens", instance=True),
    Seam(_PARSER, "HarmonyParser", "flush", params=("self",)),
    Seam(_CONTEXT, "HarmonyContext", "finish_reason", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "messages"),
    Seam(_CONTEXT, "HarmonyContext", "_messages", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "last_append_flush_status", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "response_parser", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "first_tok_of_message", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "num_reasoning_tokens", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "current_turn_metrics", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "all_turn_metrics", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "kv_transfer_params", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "ec_transfer_params", instance=True),
    Seam(_CONTEXT, "HarmonyContext", "_update_prefill_token_usage", params=("self", "output")),
    Seam(_CONTEXT, "HarmonyContext", "_update_decode_token_usage", params=("self", "output")),
    Seam(_CONTEXT, "HarmonyContext", "_tool_sessions", instance=True),
    Seam(_SERVING, "OpenAIServingResponses", "_raise_if_error", params=("self", "...")),
    Seam(_SERVING, "OpenAIServingResponses", "use_harmony", instance=True),
    Seam("vllm.entrypoints.openai.responses.protocol", "", "ResponsesResponse"),
    Seam("vllm.entrypoints.mcp.tool", "", "Tool"),
    Seam("vllm.entrypoints.openai.parser.harmony_utils", "", "get_encoding", params=()),
)
"""Every seam, in one table; :func:`check_seams` checks them all before patching."""


def check_seams(version: str | None = None, seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    """What is not as the plugin expects in vLLM `version` (default: the installed
    one's): one line per seam."""
    if version is None:
        import vllm

        version = str(getattr(vllm, "__version__", "unknown"))
    return _check_seams(version, seams, "vllm")


_signature_problem = signature_problem


def _get_vocab() -> Vocab:
    """The vocabulary from vLLM's own loaded Harmony encoding (no second file)."""
    global _vocab
    if _vocab is None:
        from vllm.entrypoints.openai.parser.harmony_utils import get_encoding

        _vocab = Vocab.from_encoding(get_encoding())
    return _vocab


# ---------------------------------------------------------------------------
# The parser


class RustStreamableParser:
    """``openai_harmony.StreamableParser`` as vLLM uses it, on harmony-stream's parser.

    Lenient mode: the model quirks that make openai-harmony raise are recovered
    (``recoveries``). ``messages`` are ``openai_harmony.Message`` objects, each
    converted once. An id outside the vocabulary raises ``openai_harmony.HarmonyError``
    (vLLM skips that token) and leaves the parser unchanged.
    """

    __slots__ = ("_converted", "_n_regular", "_parser")

    def __init__(self, vocab: Vocab | None = None) -> None:
        vocab = vocab if vocab is not None else _get_vocab()
        self._parser = HarmonyParser(vocab)
        self._n_regular = vocab.n_regular  # ids from here on are special tokens
        self._converted: list[Any] = []

    def process(self, token: int) -> RustStreamableParser:
        try:
            self._parser.process(token)
        except HarmonyError as e:
            raise _harmony_error(e) from e
        return self

    def process_eos(self) -> RustStreamableParser:
        try:
            self._parser.process_eos()
        except HarmonyError as e:
            raise _harmony_error(e) from e
        return self

    @property
    def messages(self) -> list[Any]:
        ours = self._parser.messages
        done = len(self._converted)
        if len(ours) > done:
            from openai_harmony import Message

            self._converted.extend(Message.from_dict(m.to_dict()) for m in ours[done:])
        return list(self._converted)

    @property
    def current_channel(self) -> str | None:
        return self._parser.current_channel

    @property
    def current_recipient(self) -> str | None:
        return self._parser.current_recipient

    @property
    def current_content_type(self) -> str | None:
        return self._parser.current_content_type

    @property
    def current_content(self) -> str:
        return self._parser.current_content

    @property
    def current_role(self) -> Any:
        from openai_harmony import Role

        role = self._parser.current_role
        return None if role is None else Role(role)

    @property
    def last_content_delta(self) -> str | None:
        return self._parser.last_content_delta

    @property
    def recoveries(self) -> list[Any]:
        return self._parser.recoveries


def _harmony_error(e: Exception) -> Exception:
    from openai_harmony import HarmonyError as OpenAIHarmonyError

    error: Exception = OpenAIHarmonyError(str(e))
    return error


def _rust_streamable_parser() -> RustStreamableParser:
    return RustStreamableParser()


# ---------------------------------------------------------------------------
# The event engine, one per HarmonyContext


class _Engine(Engine):
    """A request's engine (:class:`harmony_stream._plugin.Engine`), logging as vLLM's plugin."""

    __slots__ = ()
    log = logger
    server = "vLLM"


_engine_tools = engine_tools


def _attach_engine(context: Any, request: Any, model_name: str | None) -> _Engine | None:
    """The context's engine, made on first use; None when the engine cannot take it."""
    if "_hs_engine" in context.__dict__:
        engine: _Engine | None = context.__dict__["_hs_engine"]
        return engine
    try:
        stream = ResponseStream(
            _get_vocab(),
            tools=_engine_tools(request),
            model=model_name or getattr(request, "model", None) or "gpt-oss",
            response_id=getattr(request, "request_id", None),
            max_output_tokens=getattr(request, "max_output_tokens", None),
            keep_messages=True,
        )
        engine = _Engine(stream)
    except (HarmonyStreamError, TypeError, ValueError) as e:
        logger.warning("harmony-stream: using vLLM's own events for this request: %s", e)
        engine = None
    context.__dict__["_hs_engine"] = engine
    return engine


_SessionProxy = SessionProxy


def _take_over_turn(context: Any, engine: _Engine) -> None:
    """The engine failed mid-turn: vLLM's own parser reads the turn so far (it
    starts each turn fresh, as the engine does), and the rest of the request."""
    result = context.response_parser.process_chunk(engine.turn)
    engine.turn = []
    context.num_reasoning_tokens = engine.turn_base + result.reasoning_token_count
    context._messages.extend(
        s.completed_message for s in result.segments if s.completed_message is not None
    )
    if context.finish_reason is not None:
        flushed = context.response_parser.flush()
        context.last_append_flush_status = len(flushed) > 0
        context._messages.extend(
            s.completed_message for s in flushed if s.completed_message is not None
        )


_tool_error_message = tool_error_message
_tool_text = tool_text


# ---------------------------------------------------------------------------
# The patches


def _patch_table(version: str) -> list[tuple[Any, str, Any]]:
    """Every replacement, as (owner, attribute, new value); vLLM is not touched here."""
    from openai.types.responses import ResponseOutputItem
    from pydantic import TypeAdapter
    from vllm.entrypoints.mcp.tool import Tool as VllmTool
    from vllm.entrypoints.openai.responses import context as vctx
    from vllm.entrypoints.openai.responses import serving as vserving
    from vllm.entrypoints.openai.responses.protocol import ResponsesResponse
    from vllm.parser import harmony as vparser

    HarmonyContext = vctx.HarmonyContext
    Serving = vserving.OpenAIServingResponses
    items_adapter: TypeAdapter[list[Any]] = TypeAdapter(list[ResponseOutputItem])

    table: list[tuple[Any, str, Any]] = [
        (vparser, "get_streamable_parser_for_assistant", _rust_streamable_parser)
    ]

    # HarmonyParser.process_chunk, with the same result, in fewer Python calls per
    # token: the delta is what `process` returns, a completed message is polled only
    # when the message count grew, and "special token" is `id >= n_regular` (the
    # o200k_harmony layout) instead of a call into openai_harmony.
    Segment, ChunkResult = vparser.Segment, vparser.ChunkResult
    normalize = vparser.HarmonyParser._normalize_recipient
    orig_process_chunk = _original(vparser.HarmonyParser, "process_chunk")
    # A Segment (a NamedTuple) made as its own __new__ makes it, without the Python
    # frame of that __new__; ChunkResult (a dataclass) without keyword matching.
    make_tuple = tuple.__new__

    def process_chunk(self: Any, token_ids: Any) -> Any:
        if not token_ids:
            return ChunkResult([], 0)
        adapter = self._harmony_parser
        if type(adapter) is not RustStreamableParser and not isinstance(
            adapter, RustStreamableParser
        ):
            return orig_process_chunk(self, token_ids)
        parser = adapter._parser
        n_regular = adapter._n_regular
        pending = self._current_message_tokens
        processed = self._num_processed_messages
        segments: list[Any] = []
        reasoning = 0
        for token_id in token_ids:
            try:
                delta = parser.process(token_id)
            except HarmonyError:
                continue  # as vLLM does with a token openai_harmony refuses
            channel = parser.current_channel
            recipient = parser.current_recipient
            if recipient is not None and "<|constrain|>" in recipient:
                recipient = normalize(recipient)
            completed = None
            if parser.message_count > processed:
                completed = self._poll_completed_message()
                processed = self._num_processed_messages
            if completed is not None:
                pending.clear()
            else:
                pending.append(token_id)
            if token_id < n_regular and (
                channel == "analysis" or (channel == "commentary" and recipient is not None)
            ):
                reasoning += 1
            segments.append(make_tuple(Segment, (channel, recipient, delta or "", completed)))
        self._num_counted_tokens += len(token_ids)
        self._num_reasoning_tokens += reasoning
        return ChunkResult(segments, reasoning)

    table.append((vparser.HarmonyParser, "process_chunk", process_chunk))

    orig_append_output = _original(HarmonyContext, "append_output")
    update_prefill = HarmonyContext._update_prefill_token_usage
    update_decode = HarmonyContext._update_decode_token_usage

    # vLLM's HarmonyContext.append_output with the tokens parsed once: by the
    # engine, whose completed messages become the context's (vLLM's tool loop and
    # next prompt read them), its count of analysis and tool-call tokens the
    # context's reasoning tokens. The rest is vLLM's bookkeeping, as vLLM does it.
    # A context with no engine, or whose engine failed, runs vLLM's own.
    def append_output(self: Any, output: Any) -> None:
        engine = self.__dict__.get("_hs_engine")
        if engine is None or engine.broken:
            orig_append_output(self, output)
            return
        if self.first_tok_of_message:
            self.finish_reason = None
            update_prefill(self, output)
            engine.turn.clear()
            engine.turn_base = engine.stream.analysis_or_call_tokens
        completion = output.outputs[0] if output.outputs else None
        if completion is not None:
            token_ids = completion.token_ids
            engine.turn += token_ids
            if engine.feed(token_ids):
                self._messages += engine.messages()
        self.first_tok_of_message = output.finished
        update_decode(self, output)
        if output.kv_transfer_params is not None:
            self.kv_transfer_params = output.kv_transfer_params
        if output.ec_transfer_params is not None:
            self.ec_transfer_params = output.ec_transfer_params
        if output.finished:
            reason = completion.finish_reason if completion is not None else None
            self.finish_reason = reason
            if reason not in (None, "stop"):
                # The response ends here (no tool runs after a cut turn): the
                # message the cut left open is closed, as vLLM's flush does.
                engine.close(reason)
                self._messages += engine.messages()
            self.all_turn_metrics.append(self.current_turn_metrics.copy())
            self.current_turn_metrics.reset()
        self.num_reasoning_tokens = engine.stream.analysis_or_call_tokens
        if engine.broken:
            _take_over_turn(self, engine)

    table.append((HarmonyContext, "append_output", append_output))

    orig_append_tool_output = _original(HarmonyContext, "append_tool_output")

    def append_tool_output(self: Any, output: Any) -> None:
        orig_append_tool_output(self, output)
        engine = self.__dict__.get("_hs_engine")
        is_error = bool(self.__dict__.pop("_hs_tool_error", False))
        if engine is not None:
            engine.tool_output(_tool_text(output), is_error)

    table.append((HarmonyContext, "append_tool_output", append_tool_output))

    # A built-in call cut by max_tokens (or an abort) is not a call: vLLM 0.33 would
    # run it with the truncated arguments.
    orig_need_call = _original(HarmonyContext, "need_builtin_tool_call")

    def need_builtin_tool_call(self: Any) -> bool:
        if self.finish_reason not in (None, "stop"):
            return False
        return bool(orig_need_call(self))

    table.append((HarmonyContext, "need_builtin_tool_call", need_builtin_tool_call))

    # A tool call that raises (arguments that are not JSON, a server that fails)
    # fails that call, not the whole request: the model gets the error as the
    # tool's answer and the item closes `failed`.
    orig_call_tool = _original(HarmonyContext, "call_tool")

    async def call_tool(self: Any) -> Any:
        try:
            return await orig_call_tool(self)
        except Exception as e:
            error = first_leaf(e)
            last = self.messages[-1]
            logger.warning("harmony-stream: the %s call failed: %s", last.recipient, error)
            self.__dict__["_hs_tool_error"] = True
            return [_tool_error_message(last, f"{type(error).__name__}: {error}")]

    table.append((HarmonyContext, "call_tool", call_tool))

    orig_init_tool_sessions = _original(HarmonyContext, "init_tool_sessions")

    async def init_tool_sessions(self: Any, *args: Any, **kwargs: Any) -> None:
        await orig_init_tool_sessions(self, *args, **kwargs)
        sessions = self.__dict__.get("_tool_sessions") or {}
        for name, session in list(sessions.items()):
            if not isinstance(session, (VllmTool, _SessionProxy)):
                sessions[name] = _SessionProxy(session, self)

    table.append((HarmonyContext, "init_tool_sessions", init_tool_sessions))

    def _serving_engine(args: tuple[Any, ...]) -> _Engine | None:
        """The engine of a serving call, or None where vLLM's own path stays.

        Both patched serving methods take (request, sampling_params,
        result_generator, context, model_name, ...) positionally; the rest is
        passed on as vLLM gave it.
        """
        request, _, _, context, model_name = args[:5]
        if not isinstance(context, HarmonyContext):
            return None
        return _attach_engine(context, request, model_name)

    orig_process = _original(Serving, "_process_harmony_streaming_events")

    async def _process_harmony_streaming_events(self: Any, *args: Any) -> Any:
        engine = _serving_engine(args)
        if engine is None:
            async for event in orig_process(self, *args):
                yield event
            return
        request, _, result_generator, context, _ = args[:5]
        number = args[-1]  # vLLM's _increment_sequence_number_and_return
        for event in engine.drain():
            yield number(event)
        async for ctx in result_generator:
            self._raise_if_error(ctx.finish_reason, request.request_id)
            for event in engine.drain():
                yield number(event)
        for event in engine.finish(context.finish_reason):
            yield number(event)

    table.append((Serving, "_process_harmony_streaming_events", _process_harmony_streaming_events))

    # vLLM's final-response builder raises on messages its strict parser never let
    # through and the lenient one keeps (no known channel, `browser.<garbage>` ...).
    # Its items give way to the engine's anyway; one it cannot build must not fail
    # the request. Text with no known channel is read as `final`, as the engine does.
    orig_to_output = _original(vserving, "harmony_to_response_output")

    def harmony_to_response_output(message: Any, *args: Any, **kwargs: Any) -> Any:
        if (
            message.recipient is None
            and message.channel not in _KNOWN_CHANNELS
            and message.author.role == "assistant"
        ):
            message = message.with_channel("final")
        try:
            return orig_to_output(message, *args, **kwargs)
        except Exception as e:
            logger.warning("harmony-stream: vLLM cannot build an item for a message: %s", e)
            return []

    table.append((vserving, "harmony_to_response_output", harmony_to_response_output))

    orig_full = _original(Serving, "responses_full_generator")

    async def responses_full_generator(self: Any, *args: Any, **kwargs: Any) -> Any:
        engine = _serving_engine(args) if self.use_harmony else None
        response = await orig_full(self, *args, **kwargs)
        if engine is None or not isinstance(response, ResponsesResponse):
            return response
        engine.finish(args[3].finish_reason)
        if engine.output is not None:
            try:
                output = items_adapter.validate_python(engine.output)
            except Exception:
                logger.exception("harmony-stream: the engine's items do not validate; vLLM's kept")
                return response
            # The same object is in vLLM's response store: retrieval sees it too.
            response.output = output
        return response

    table.append((Serving, "responses_full_generator", responses_full_generator))
    table.extend(_header_patches())
    if version in _COMPLETED_WHEN_INCOMPLETE:
        table.extend(_terminal_event_patches(Serving))
    return table


_HEADER_PATHS = ("/v1/responses", "/v1/chat/completions")


def _header_patches() -> list[tuple[Any, str, Any]]:
    """The routers' ``attach_router``: the app gets the header middleware (once)."""
    from vllm.entrypoints.openai.chat_completion import api_router as chat_router
    from vllm.entrypoints.openai.responses import api_router as responses_router

    table: list[tuple[Any, str, Any]] = []
    for module in (responses_router, chat_router):
        original = _original(module, "attach_router")

        def attach_router(app: Any, *, _original: Any = original) -> None:
            _original(app)
            if not getattr(app.state, "harmony_stream_header", False):
                app.add_middleware(HeaderMiddleware, paths=_HEADER_PATHS, is_active=is_active)
                app.state.harmony_stream_header = True

        table.append((module, "attach_router", attach_router))
    return table


def _terminal_event_patches(Serving: Any) -> list[tuple[Any, str, Any]]:
    """vLLM 0.31 and 0.32: an incomplete streamed response ends with `response.incomplete`
    (it sent `response.completed`), and a background stream replay ends there too."""
    from contextlib import aclosing

    from openai.types.responses import ResponseIncompleteEvent as OpenAIIncompleteEvent
    from vllm.entrypoints.openai.responses.protocol import ResponsesResponse

    class ResponseIncompleteEvent(OpenAIIncompleteEvent):
        """As vLLM 0.33 declares it: the event carries vLLM's own response type."""

        response: ResponsesResponse

    orig_stream = _original(Serving, "responses_stream_generator")

    # vLLM's generator is left to be closed as vLLM leaves it (no aclosing here):
    # closing it explicitly ends its MCP sessions with an error after the response.
    async def responses_stream_generator(self: Any, *args: Any, **kwargs: Any) -> Any:
        async for event in orig_stream(self, *args, **kwargs):
            if event.type == "response.completed" and event.response.status == "incomplete":
                event = ResponseIncompleteEvent(
                    type="response.incomplete",
                    sequence_number=event.sequence_number,
                    response=event.response,
                )
            yield event

    orig_replay = _original(Serving, "responses_background_stream_generator")

    async def responses_background_stream_generator(self: Any, *args: Any, **kwargs: Any) -> Any:
        async with aclosing(orig_replay(self, *args, **kwargs)) as events:
            async for event in events:
                yield event
                if event.type in _TERMINAL:
                    return

    return [
        (Serving, "responses_stream_generator", responses_stream_generator),
        (Serving, "responses_background_stream_generator", responses_background_stream_generator),
    ]
