"""The replay server: a Starlette app answering the Responses API from transcripts.

`create_app(config)` builds it; its routes are listed in `ROUTES`. Each
`POST /v1/responses` body is read up to `config.max_body_bytes` (a 413 past
it), checked (`request.py`), gets a transcript and a segment of it
(`corpus.py`, which honours `tool_choice`), and is replayed through the
engine as a generation loop drives it: an async generator of outputs (each
step's tokens, the result of each tool call, the end) that
`ResponseStream.astream(..., sse=True)` turns into SSE bytes, written as they
come when streaming, `ResponseStream.response()` at the end otherwise; the
request's settings are echoed by the engine (`settings=`). MCP calls go to the
request's MCP servers (`mcp.py`), with SSE keep-alive comments while they run;
every other tool result comes from the transcript. Either way the replay stops
when the client goes away, unless the request asked for background mode: then
it runs in the app's task group (its lifespan) and its events are kept for
`GET …?stream=true&starting_after=N`.
Responses are stored (unless `store: false`) for `GET`/`DELETE
/v1/responses/{id}`, its `input_items`, and `previous_response_id`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._loop import Finish, StreamOutput, Tokens, ToolResult
from .._native import ResponseStream, Vocab
from ..errors import HarmonyStreamError
from ..replay import Feed, replay_steps
from ..replay import ToolResult as RecordedResult
from .corpus import Corpus, Entry, ServeConfig, Turn
from .mcp import McpServerError, McpServers
from .request import (
    RequestError,
    ResponsesRequest,
    check_mcp_hosts,
    error_body,
    parse_request,
)

__all__ = ["ROUTES", "Replay", "Stored", "create_app", "input_items", "synthetic_logprobs"]

log = logging.getLogger("harmony_stream.serve")

Sink = Callable[[bytes], Awaitable[None]]

# Remembered responses (`previous_response_id`, `GET /v1/responses/{id}`): the newest
# this many, and no more than this many bytes of their JSON and requests.
MAX_REMEMBERED = 4096
MAX_REMEMBERED_BYTES = 256 * 1024 * 1024
# The SSE comment sent while a tool call runs, every `keepalive_s` seconds.
KEEPALIVE = b": keep-alive\n\n"
# Bodies larger than this are parsed in a worker thread, so the event loop goes on.
PARSE_IN_THREAD_BYTES = 64 * 1024


def synthetic_logprobs(
    tokens: list[int], first_position: int, top: int, n_regular: int
) -> list[Any]:
    """Deterministic logprobs for transcripts that recorded none.

    Token ``t`` at output position ``i`` (counted from 0 over the response) gets
    ``-((7 * t + 13 * i) % 500) / 100`` (a number in ``(-5, 0]``). With
    ``top_logprobs = k > 0`` its alternatives are the token itself, then the
    regular tokens ``(t + j) % n_regular`` for ``j = 1 … k-1``, each ``j`` lower.
    """
    out: list[Any] = []
    for n, t in enumerate(tokens):
        lp = -((7 * t + 13 * (first_position + n)) % 500) / 100
        if top > 0:
            alts = [(t, lp)] + [((t + j) % n_regular, lp - j) for j in range(1, top)]
            out.append((lp, alts))
        else:
            out.append(lp)
    return out


class Background:
    """The events of a background response, kept for whoever reads them, when they do.

    Event ``i`` (one ``event: …\ndata: …\n\n`` block) has ``sequence_number`` i:
    the engine numbers its events from 0, one by one. Readers (`follow`) wait
    for new events; the replay runs in the app's task group, whoever listens.
    """

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.done = False
        self.cancelled = False
        self.scope: anyio.CancelScope | None = None
        self._changed = anyio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def add(self, chunk: bytes) -> None:
        """A `Sink`: the SSE bytes of one engine step (one or more whole events)."""
        self.events.extend(part + b"\n\n" for part in chunk.split(b"\n\n") if part)
        self._notify()

    def finish(self) -> None:
        self.done = True
        self._notify()

    async def wait_done(self) -> None:
        while not self.done:
            await self._changed.wait()

    async def follow(self, starting_after: int, keepalive_s: float) -> AsyncIterator[bytes]:
        """The events after `starting_after`, as they come, until the response ends;
        ``: keep-alive`` when nothing came for `keepalive_s` seconds."""
        i = max(starting_after + 1, 0)
        while True:
            if i < len(self.events):
                chunk = b"".join(self.events[i:])
                i = len(self.events)
                yield chunk
                continue
            if self.done:
                return
            changed = self._changed
            with anyio.move_on_after(keepalive_s) as waited:
                await changed.wait()
            if waited.cancelled_caught:
                yield KEEPALIVE


@dataclass
class Stored:
    """A response the server keeps (its request had ``store`` true, the default).

    While it streams, its JSON is read from its engine (`stream`); once finished
    the final JSON is kept and the engine let go. A background response keeps
    its events too (`background`).
    """

    entry: str
    segment: int
    input: str | list[dict[str, Any]]
    size: int
    stream: ResponseStream | None = None
    json: str = ""
    background: Background | None = None

    def response_json(self) -> str:
        return self.stream.response_json() if self.stream is not None else self.json


@dataclass
class State:
    """What the app shares between requests."""

    config: ServeConfig
    vocab: Vocab
    corpus: Corpus
    served: OrderedDict[str, Stored] = field(default_factory=OrderedDict)
    served_bytes: int = 0
    # The app's task group (its lifespan), where background responses run.
    tasks: TaskGroup | None = None

    def remember(self, response_id: str, stored: Stored) -> None:
        self.forget(response_id)
        self.served[response_id] = stored
        self.served_bytes += stored.size
        while len(self.served) > MAX_REMEMBERED or self.served_bytes > MAX_REMEMBERED_BYTES:
            _, old = self.served.popitem(last=False)
            self.served_bytes -= old.size

    def finished(self, response_id: str, stream: ResponseStream) -> None:
        """Keeps the final JSON of a stored response (if still stored)."""
        stored = self.served.get(response_id)
        if stored is not None and stored.stream is stream:
            stored.json = stream.response_json()
            stored.stream = None
            grown = len(stored.json)
            if stored.background is not None:
                if stored.background.cancelled:
                    response = json.loads(stored.json)
                    response["status"] = "cancelled"
                    stored.json = json.dumps(response, ensure_ascii=False)
                grown += sum(map(len, stored.background.events))
            stored.size += grown
            self.served_bytes += grown

    def forget(self, response_id: str) -> bool:
        stored = self.served.pop(response_id, None)
        if stored is not None:
            self.served_bytes -= stored.size
        return stored is not None


class Replay:
    """One request's replay: its transcript segment through one `ResponseStream`."""

    def __init__(self, state: State, request: ResponsesRequest) -> None:
        self.state = state
        self.request = request
        previous: Stored | None = None
        if request.previous_response_id is not None:
            previous = state.served.get(request.previous_response_id)
            if previous is None:
                raise RequestError(
                    f"Previous response with id '{request.previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
        if state.config.mcp_allowed_hosts is not None:
            check_mcp_hosts(request, state.config.mcp_allowed_hosts)
        index = request.count_input("function_call_output") + (previous.segment if previous else 0)
        self.entry: Entry = state.corpus.choose(
            request, state.config, previous.entry if previous else None, index
        )
        if index >= len(self.entry.segments):
            raise RequestError(
                f"Transcript {self.entry.name!r} answers {len(self.entry.segments)} request(s) "
                f"(one more after each function call); this request, with "
                f"{request.count_input('function_call_output')} function_call_output item(s), "
                "goes past its end.",
                param="input",
                code="transcript_exhausted",
            )
        self.segment_index = index
        self.turns: list[Turn] = self.entry.segments[index]
        self.tokens = 0
        self.events = 0
        self.engine_s = 0.0
        # When the engine call being timed began (see `_engine_time`).
        self._engine_since: float | None = None
        self.status = "in_progress"
        self.disconnected = False
        self.stream: ResponseStream | None = None

    def _listed_labels(self) -> set[str]:
        return {
            item["server_label"]
            for item in self.request.input_items
            if item.get("type") == "mcp_list_tools" and isinstance(item.get("server_label"), str)
        }

    async def prepare(self, mcp: McpServers) -> None:
        """Lists the tools of the request's MCP servers (not yet listed in its input)."""
        listed = self._listed_labels()
        lists: dict[str, list[dict[str, Any]]] = {}
        for label in mcp.tools:
            if label in listed:
                continue
            try:
                lists[label] = await mcp.list_tools(label)
            except McpServerError as e:  # its words never quote the server's body
                raise RequestError(
                    f"Error retrieving tool list from MCP server: '{label}'. {e}",
                    param="tools",
                    code="mcp_list_tools_failed",
                    status=424,
                    type="external_connector_error",
                ) from None
        config = self.state.config
        try:
            self.stream = ResponseStream(
                self.state.vocab,
                tools=self.request.tools,
                model=self.request.model,
                max_output_tokens=self.request.max_output_tokens,
                logprobs=self.request.logprobs,
                mcp_tool_lists=lists or None,
                id_seed=self.id_seed(),
                created_at=0 if config.seed is not None else None,
                settings=self.request.settings,
            )
        except (HarmonyStreamError, ValueError, TypeError, OverflowError) as e:
            # The request passed our checks but the engine refuses its settings.
            raise RequestError(
                f"The request's settings cannot be used: {e}", code="invalid_request"
            ) from None

    def id_seed(self) -> int | None:
        """With a configured seed: one derived from it and the request without `stream`.

        The same request then gets the same ids (streamed or not); different
        requests get different ones, so `previous_response_id` stays unambiguous.
        """
        seed = self.state.config.seed
        if seed is None:
            return None
        digest = hashlib.sha256(f"{seed}\n{self.request.fingerprint}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    def _timed(self, fn: Callable[..., bytes], *args: Any) -> bytes:
        t0 = time.perf_counter()
        out = fn(*args)
        self.engine_s += time.perf_counter() - t0
        self.events += out.count(b"\n\n")
        return out

    async def run(self, mcp: McpServers, sink: Sink, keepalive: Sink | None = None) -> None:
        """Streams the segment into `sink`: start, tokens, tool results, finish.

        A transcript the engine refuses (a token id outside the vocabulary, say)
        ends the response with ``response.failed`` carrying the reason.
        """
        try:
            await self._run(mcp, sink, keepalive)
        except HarmonyStreamError as e:
            stream = self.stream
            assert stream is not None
            log.warning("transcript %s: replay failed: %s", self.entry.name, e)
            if not stream.finished:
                message = f"replay of transcript {self.entry.name!r} failed: {e}"
                await sink(self._timed(stream.finish_sse, "error", message))
            self.status = stream.response()["status"]

    def _engine_time(self) -> None:
        """Adds the engine call timed since `_engine_since` (if one is) to `engine_s`.

        The call is ``astream``'s: from the moment the outputs hand it an item
        (or ask for the start) to the moment it hands back that item's bytes, or
        asks for the next item when there were none.
        """
        if self._engine_since is not None:
            self.engine_s += time.perf_counter() - self._engine_since
            self._engine_since = None

    async def _run(self, mcp: McpServers, sink: Sink, keepalive: Sink | None) -> None:
        stream = self.stream
        assert stream is not None, "prepare() first"
        self._engine_since = time.perf_counter()  # start()
        outputs = self._outputs(mcp, keepalive)
        async with aclosing(stream.astream(outputs, sse=True)) as chunks:
            async for chunk in chunks:
                self._engine_time()
                self.events += chunk.count(b"\n\n")
                await sink(chunk)
        self.status = stream.response()["status"]

    async def _outputs(
        self, mcp: McpServers, keepalive: Sink | None
    ) -> AsyncIterator[StreamOutput]:
        """The segment as a generation loop hands it to the engine: each step's
        tokens (with synthetic logprobs when asked for), the result of each call
        the engine waits for, the end. ``astream`` applies each item before it
        asks for the next, so the stream's state is current here."""
        stream = self.stream
        assert stream is not None
        config = self.state.config
        top = self.request.top_logprobs or 0
        n_regular = self.state.vocab.n_regular
        delay = config.step_delay_ms / 1000
        budget = self.request.max_output_tokens
        for step in replay_steps(self.turns, step=config.step, max_output_tokens=budget):
            if isinstance(step, Feed):
                item: StreamOutput = step.tokens
                if self.request.logprobs:
                    lps = synthetic_logprobs(step.tokens, step.position, top, n_regular)
                    item = Tokens(step.tokens, lps)
                self.tokens += len(step.tokens)
                self._engine_since = time.perf_counter()
                yield item
                self._engine_time()
                if delay:
                    await anyio.sleep(delay)
                else:
                    await anyio.lowlevel.checkpoint()  # lets a disconnect be noticed
            elif isinstance(step, RecordedResult):
                if stream.awaiting_tool_output:
                    output, error = await self._tool_result(mcp, step, keepalive)
                    # As tool_output(output, error) reads them: an error wins, no output is "".
                    result = (
                        ToolResult(error=error)
                        if error is not None
                        else ToolResult(output=output or "")
                    )
                    self._engine_since = time.perf_counter()
                    yield result
                    self._engine_time()
            else:
                self._engine_since = time.perf_counter()
                yield Finish(step.reason)

    async def _tool_result(
        self, mcp: McpServers, turn: RecordedResult, keepalive: Sink | None
    ) -> tuple[str | None, str | None]:
        """The result for the call the engine waits for: from its MCP server when
        the request gives one for its label, else the transcript's recorded one.

        While the MCP server works, `keepalive` gets ``: keep-alive`` (an SSE
        comment) every `keepalive_s` seconds, so proxies and clients keep the
        stream open."""
        assert self.stream is not None
        call = self.stream.pending_call
        if call is None or call["type"] != "mcp_call" or not mcp.has_server(call["server_label"]):
            return turn.output, turn.error
        async with anyio.create_task_group() as tg:
            if keepalive is not None:
                interval = self.state.config.keepalive_s

                async def tick() -> None:
                    while True:
                        await anyio.sleep(interval)
                        try:
                            await keepalive(KEEPALIVE)
                        except OSError:  # the client went away: the watcher ends the replay
                            return

                tg.start_soon(tick)
            result = await mcp.call(call["server_label"], call["name"], call["arguments"])
            tg.cancel_scope.cancel()
        return result.output, result.error

    def log_line(self, elapsed_s: float) -> str:
        us = self.engine_s / max(self.tokens, 1) * 1e6
        if self.stream is None:  # the client left while the MCP tools were being listed
            self.status = "not_started"
        line = (
            f"POST /v1/responses transcript={self.entry.name} segment={self.segment_index} "
            f"stream={self.request.stream} tokens={self.tokens} events={self.events} "
            f"status={self.status} {us:.2f} µs/token total={elapsed_s * 1e3:.1f} ms"
        )
        if self.disconnected:
            line += " client disconnected: replay stopped"
        return line


def _error_response(e: RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _remember(replay: Replay, background: Background | None = None) -> None:
    """Stores the response (unless its request says ``store: false``)."""
    assert replay.stream is not None
    if not replay.request.store:
        return
    stored = Stored(
        replay.entry.name,
        replay.segment_index,
        replay.request.input,
        len(replay.request.fingerprint),
        stream=replay.stream,
        background=background,
    )
    replay.state.remember(replay.stream.response_id, stored)


async def _run_background(
    replay: Replay,
    background: Background,
    started: float,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """A background response, in the app's task group: its MCP tools listed (a
    `RequestError` then is the POST's answer), stored, then replayed into
    `background`; cancelled by `POST /v1/responses/{id}/cancel`."""
    state = replay.state
    stored = False
    try:
        with anyio.CancelScope() as scope:
            background.scope = scope
            async with McpServers(replay.request.tools, state.config.mcp_timeout_s) as mcp:
                await replay.prepare(mcp)
                _remember(replay, background)
                stored = True
                task_status.started()
                try:
                    await replay.run(mcp, background.add)
                except Exception as e:  # never let a replay end the app's task group
                    log.warning("background replay failed: %s", type(e).__name__)
    finally:
        stream = replay.stream
        if stored and stream is not None:
            # Cancelled (by a client, or at shutdown): the stream still ends, for its readers.
            with anyio.CancelScope(shield=True):
                if not stream.finished:
                    await background.add(stream.finish_sse("abort"))
                status = stream.response()["status"]
                replay.status = "cancelled" if background.cancelled else status
                state.finished(stream.response_id, stream)
                background.finish()
                log.info(replay.log_line(time.perf_counter() - started) + " background=True")


_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def _start_background(replay: Replay, started: float) -> Response:
    """Starts a background response; answers with it (in progress) or its event stream."""
    tasks = replay.state.tasks
    if tasks is None:
        return _error_response(
            RequestError(
                "Background mode needs the app's lifespan to run (uvicorn runs it): "
                "this server was started without it.",
                param="background",
                code="unsupported_parameter",
            )
        )
    background = Background()
    try:
        await tasks.start(_run_background, replay, background, started)
    except RequestError as e:
        log.info("POST /v1/responses %d %s: %s", e.status, e.type, e.message)
        return _error_response(e)
    if replay.request.stream:
        return StreamingResponse(
            background.follow(-1, replay.state.config.keepalive_s),
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
        )
    assert replay.stream is not None
    return Response(replay.stream.response_json(), media_type="application/json")


class ReplayResponse(Response):
    """The answer: SSE written by the replay, or the response's JSON at its end.

    One task group per response: the replay (which owns the MCP sessions) and a
    watcher of ``http.disconnect`` that cancels it, streaming or not. Nothing is
    left running and nothing is logged as an error when the client goes away.
    """

    def __init__(self, replay: Replay, started: float) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.replay = replay
        self.started = started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replay = self.replay
        streaming = replay.request.stream
        headers_sent = False
        answered = False  # the last byte of the answer is being (or was) sent
        logged = False

        async def sink(chunk: bytes) -> None:
            nonlocal headers_sent
            if not streaming:
                return  # the response is sent whole at the end
            if not headers_sent:
                headers_sent = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"text/event-stream; charset=utf-8"),
                            (b"cache-control", b"no-cache"),
                            (b"x-accel-buffering", b"no"),
                        ],
                    }
                )
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        # Once the answer is out, a client closing its end is no news.
                        replay.disconnected = not answered
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            try:
                async with McpServers(
                    replay.request.tools, replay.state.config.mcp_timeout_s
                ) as mcp:
                    try:
                        await replay.prepare(mcp)
                    except RequestError as e:
                        log.info("POST /v1/responses %d %s: %s", e.status, e.type, e.message)
                        answered = True
                        await _error_response(e)(scope, receive, send)
                        tg.cancel_scope.cancel()
                        return
                    self._remember(replay)  # before the end is sent: a follow-up may name it
                    await replay.run(mcp, sink, sink if streaming else None)
                    answered = streaming  # every event is out
                # Stored and logged before the answer ends: a client that reads the
                # log or asks for the response next finds them.
                logged = True
                self._finished(replay)
                if streaming:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                else:
                    assert replay.stream is not None
                    answered = True
                    await Response(replay.stream.response_json(), media_type="application/json")(
                        scope, receive, send
                    )
            except OSError:  # the client went away while we wrote
                replay.disconnected = True
            finally:
                tg.cancel_scope.cancel()
                if not logged:
                    self._finished(replay)

    @staticmethod
    def _remember(replay: Replay) -> None:
        _remember(replay)

    def _finished(self, replay: Replay) -> None:
        if replay.stream is not None:
            replay.state.finished(replay.stream.response_id, replay.stream)
        if replay.stream is not None or replay.disconnected:
            log.info(replay.log_line(time.perf_counter() - self.started))


class _GcPause:
    """The cyclic garbage collector off while big bodies are parsed (in worker threads).

    Decoding a few MiB of JSON makes up to a million containers, and the collector
    would walk them all again and again, holding the interpreter lock (most of the
    parse time). Decoded JSON holds no reference cycles, so nothing is missed; the
    collector is back on when the last parse ends (if it was on before the first).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsing = 0
        self._was_enabled = False

    def __enter__(self) -> None:
        with self._lock:
            if self._parsing == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._parsing += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._parsing -= 1
            if self._parsing == 0 and self._was_enabled:
                gc.enable()


_gc_pause = _GcPause()


def _parse_big(raw: bytes) -> ResponsesRequest:
    with _gc_pause:
        return parse_request(raw)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        f"The request body is larger than this server's limit of {limit} bytes "
        "(max_body_bytes in the server's config).",
        code="request_too_large",
        status=413,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read as it comes and refused (413) as soon as it passes `limit` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)  # refused before reading any of it
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # chunked bodies are counted as they arrive
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _responses(request: Request) -> Response:
    started = time.perf_counter()
    state: State = request.app.state.replay
    try:
        raw = await _read_body(request, state.config.max_body_bytes)
        if len(raw) > PARSE_IN_THREAD_BYTES:
            req = await anyio.to_thread.run_sync(_parse_big, raw)
        else:
            req = parse_request(raw)
        replay = Replay(state, req)
        if req.background:
            return await _start_background(replay, started)
    except RequestError as e:
        log.info("POST /v1/responses %d %s: %s", e.status, e.type, e.message)
        return _error_response(e)
    except ClientDisconnect:
        log.info("POST /v1/responses client disconnected before its body was read")
        return Response(status_code=400)  # nobody reads it
    except Exception as e:  # a request our checks missed: still the client's, still a 400
        log.warning("POST /v1/responses 400: request not understood: %s", type(e).__name__)
        return _error_response(
            RequestError(
                f"The request could not be read ({type(e).__name__}).", code="invalid_request"
            )
        )
    return ReplayResponse(replay, started)


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "harmony-stream"}


async def _models(request: Request) -> Response:
    state: State = request.app.state.replay
    return JSONResponse({"object": "list", "data": [_model(m) for m in state.config.models]})


async def _get_model(request: Request) -> Response:
    state: State = request.app.state.replay
    name = request.path_params["model"]
    if name not in state.config.models:
        return JSONResponse(
            error_body(
                f"The model '{name}' does not exist or you do not have access to it.",
                code="model_not_found",
            ),
            status_code=404,
        )
    return JSONResponse(_model(name))


def _stored(request: Request) -> tuple[str, Stored] | Response:
    """The stored response the path names, or the 404 OpenAI answers."""
    state: State = request.app.state.replay
    response_id = request.path_params["response_id"]
    stored = state.served.get(response_id)
    if stored is None:
        return JSONResponse(
            error_body(f"Response with id '{response_id}' not found.", param="response_id"),
            status_code=404,
        )
    return response_id, stored


async def _get_response(request: Request) -> Response:
    """The stored response; with ``stream=true`` (a background response only) its
    events after ``starting_after`` (a sequence number), live until it ends."""
    found = _stored(request)
    if isinstance(found, Response):
        return found
    stored = found[1]
    query = request.query_params
    if query.get("stream", "false").lower() != "true":
        return Response(stored.response_json(), media_type="application/json")
    if stored.background is None:
        return _error_response(
            RequestError(
                "Only responses created with background=true can be streamed again: "
                "get this one without stream=true.",
                param="stream",
                code="unsupported_parameter",
            )
        )
    text = query.get("starting_after", "-1")
    try:
        after = int(text)
    except ValueError:
        after = -2
    if after < -1:
        return _error_response(
            RequestError(
                f"Invalid 'starting_after': expected an integer >= 0 (an event's "
                f"sequence_number), but got {text!r} instead.",
                param="starting_after",
                code="invalid_value",
            )
        )
    state: State = request.app.state.replay
    return StreamingResponse(
        stored.background.follow(after, state.config.keepalive_s),
        media_type="text/event-stream",
        headers=_SSE_HEADERS,
    )


async def _delete_response(request: Request) -> Response:
    found = _stored(request)
    if isinstance(found, Response):
        return found
    state: State = request.app.state.replay
    state.forget(found[0])
    return JSONResponse({"id": found[0], "object": "response.deleted", "deleted": True})


async def _cancel_response(request: Request) -> Response:
    """Cancels a background response in progress: it ends, ``status: "cancelled"``.

    Cancelling one already cancelled answers it again; one that ended otherwise,
    or that is not a background response, is a 400.
    """
    found = _stored(request)
    if isinstance(found, Response):
        return found
    response_id, stored = found
    background = stored.background
    if background is None:
        return _error_response(
            RequestError(
                "Only responses created with background=true can be cancelled.",
                code="unsupported_parameter",
            )
        )
    if background.done and not background.cancelled:
        return _error_response(
            RequestError(
                f"Response '{response_id}' has already ended and cannot be cancelled.",
                code="response_not_cancellable",
            )
        )
    if not background.done:
        background.cancelled = True
        assert background.scope is not None
        background.scope.cancel()
        await background.wait_done()
    return Response(stored.response_json(), media_type="application/json")


_ITEM_ID_PREFIX = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "mcp_list_tools": "mcpl",
    "mcp_call": "mcp",
}


def input_items(response_id: str, given: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A request's input as the API lists it: every item with an ``id``.

    A string input is one user message; a message whose ``content`` is a string
    gets it as one ``input_text`` part (``output_text`` for the assistant's); an
    item without an id gets one derived from the response id and its position
    (the same on every call), and a message, function call or output without a
    ``status`` is ``completed``.
    """
    items = (
        [{"type": "message", "role": "user", "content": given}] if isinstance(given, str) else given
    )
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        entry = {"type": kind, **item}
        content = entry.get("content")
        if kind == "message" and isinstance(content, str):
            part = "output_text" if entry.get("role") == "assistant" else "input_text"
            entry["content"] = [{"type": part, "text": content}]
            if part == "output_text":
                entry["content"][0]["annotations"] = []
        if "id" not in entry:
            digest = hashlib.sha256(f"{response_id}/{i}".encode()).hexdigest()[:32]
            entry["id"] = f"{_ITEM_ID_PREFIX.get(kind, 'item')}_{digest}"
        if kind in ("message", "function_call", "function_call_output"):
            entry.setdefault("status", "completed")
        out.append(entry)
    return out


_LIST_LIMIT = (1, 100)


async def _input_items(request: Request) -> Response:
    """`GET /v1/responses/{id}/input_items`: ``limit`` (1-100, 20), ``order`` (desc),
    ``after`` (an item id): a page of the list, as the API pages it."""
    found = _stored(request)
    if isinstance(found, Response):
        return found
    response_id, stored = found
    query = request.query_params
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not _LIST_LIMIT[0] <= limit <= _LIST_LIMIT[1]:
        return _error_response(
            RequestError(
                f"Invalid 'limit': expected an integer between 1 and 100, but got "
                f"{query.get('limit')!r} instead.",
                param="limit",
                code="invalid_value",
            )
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        return _error_response(
            RequestError(
                f"Invalid value: {order!r}. Supported values are: 'asc' and 'desc'.",
                param="order",
                code="invalid_value",
            )
        )
    items = input_items(response_id, stored.input)
    if order == "desc":
        items.reverse()
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            return _error_response(
                RequestError(
                    f"No input item with id '{after}' in response '{response_id}'.",
                    param="after",
                    code="invalid_value",
                )
            )
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# Every route of the server, in one place.
ROUTES = [
    Route("/v1/responses", _responses, methods=["POST"]),
    Route("/v1/responses/{response_id}", _get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", _delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", _cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", _input_items, methods=["GET"]),
    Route("/v1/models", _models, methods=["GET"]),
    Route("/v1/models/{model:path}", _get_model, methods=["GET"]),
    Route("/health", _health, methods=["GET"]),
]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = (
        f"Invalid URL ({request.method} {request.url.path})"
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    return JSONResponse(error_body(message), status_code=exc.status_code)


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """The app's task group, for background responses (cancelled at shutdown)."""
    state: State = app.state.replay
    async with anyio.create_task_group() as tasks:
        state.tasks = tasks
        yield
        state.tasks = None
        tasks.cancel_scope.cancel()


def create_app(
    config: ServeConfig | None = None,
    *,
    vocab: Vocab | None = None,
    corpus: Corpus | None = None,
) -> Starlette:
    """The ASGI app: the routes of `ROUTES` (`POST /v1/responses`, ...).

    The corpus is `config.transcripts` (files or directories), or the bundled
    one when that is empty; the vocabulary is `config.vocab_path` or `Vocab.load()`.
    With `config.cors_origins`, Starlette's `CORSMiddleware` answers preflight
    requests and adds the CORS headers for those origins.
    """
    config = config or ServeConfig()
    vocab = vocab or Vocab.load(config.vocab_path)
    corpus = corpus or Corpus.load(config.transcripts, vocab)
    corpus.check_config(config)
    middleware = []
    if config.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.cors_origins,
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["*"],
            )
        )
    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
        lifespan=_lifespan,
    )
    app.state.replay = State(config, vocab, corpus)
    return app
