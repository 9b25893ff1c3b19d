"""The MCP client of the replay server: list a server's tools, call one.

One `McpServers` per request: it opens a session to a tool's ``server_url``
(streamable HTTP, the `mcp` SDK) the first time the request needs it, and
closes every session when the request ends. Everything runs in the task that
entered it, so a cancelled request (a client that went away) unwinds cleanly.

The URLs come from requests, so a server may be anything: an error names the
URL and the kind of failure (``HTTP 500``, ``connection refused``, ``not an MCP
server``), never text from the server's body, unless the server completed the
MCP handshake (then its JSON-RPC error messages are its own words, like its
tool results). What a server sends is checked before it reaches an event: a
tool list holding a non-finite number or a lone surrogate is that server's
error. Each server gets at most `MAX_CONNECTIONS_PER_SERVER` connections.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import PARSE_ERROR, PaginatedRequestParams

from .request import find_json_problem, has_lone_surrogate

__all__ = [
    "MAX_CONNECTIONS_PER_SERVER",
    "McpConnectionError",
    "McpResult",
    "McpServerError",
    "McpServers",
    "result_text",
]

# HTTP connections open at once to one MCP server (the SDK's event stream and its POSTs).
MAX_CONNECTIONS_PER_SERVER = 4


@dataclass(frozen=True)
class McpResult:
    """What a call gave: `output` on success, `error` (the server's text) on failure."""

    output: str | None = None
    error: str | None = None


def result_text(content: list[Any]) -> str:
    """The text of a tool result: text parts joined by newlines, other parts as JSON.

    Raises `ValueError` for a part JSON cannot hold (a non-finite number).
    """
    parts: list[str] = []
    for c in content:
        text = getattr(c, "text", None)
        if getattr(c, "type", None) == "text" and isinstance(text, str):
            parts.append(text)
        else:
            dumped = c.model_dump(mode="json", exclude_none=True)
            parts.append(json.dumps(dumped, allow_nan=False))
    return "\n".join(parts)


def _tool_entry(tool: Any) -> dict[str, Any]:
    """A tool of ``tools/list`` as an `mcp_list_tools` item entry."""
    annotations = (
        tool.annotations.model_dump(mode="json", exclude_none=True) if tool.annotations else None
    )
    return {
        "name": tool.name,
        "input_schema": tool.input_schema,
        "description": tool.description,
        "annotations": annotations,
    }


def _allowed(tool: dict[str, Any]) -> set[str] | None:
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, list):
        return {a for a in allowed if isinstance(a, str)}
    if isinstance(allowed, dict) and isinstance(allowed.get("tool_names"), list):
        return {a for a in allowed["tool_names"] if isinstance(a, str)}
    return None


# As the MCP SDK's own client: a server may hold its event stream open a long time.
MCP_SSE_READ_TIMEOUT_S = 300.0


class _FailFast(httpx2.AsyncHTTPTransport):
    """An HTTP transport that ends the MCP session at once when a request cannot be sent.

    The MCP SDK (2.3.0) logs a failed POST (connection refused) and leaves the
    waiting request hanging until its timeout; here the failure is recorded and
    the session task is cancelled instead, so the call fails right away.
    """

    def __init__(self, on_error: Callable[[Exception], None]) -> None:
        super().__init__(limits=httpx2.Limits(max_connections=MAX_CONNECTIONS_PER_SERVER))
        self.on_error = on_error

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await super().handle_async_request(request)
        except httpx2.TransportError as e:
            self.on_error(e)  # cancels the session's scope...
            await anyio.lowlevel.checkpoint()  # ...which ends this task here, quietly
            raise


@dataclass
class _Job:
    """One operation for a session's task, and where its result goes."""

    run: Callable[[ClientSession], Awaitable[Any]]
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class McpConnectionError(Exception):
    """The MCP server could not be reached, or its session broke (our own words)."""


class McpServerError(Exception):
    """An MCP operation failed; the message names the server's URL and what went wrong."""


@dataclass
class _Server:
    """What is known of one server: its URL, whether the handshake passed, its last answer."""

    url: str
    initialized: bool = False
    status: int | None = None
    content_type: str = ""

    def answer(self) -> str:
        if self.status is None:
            return "no HTTP answer"
        return f"HTTP {self.status}" + (f", {self.content_type}" if self.content_type else "")


_MEDIA_TYPE = re.compile(r"[A-Za-z0-9.+-]{1,40}/[A-Za-z0-9.+-]{1,40}")


def _kind(e: BaseException, server: _Server) -> str:
    """What went wrong, in words that hold nothing the server sent (but its status).

    Exception groups (task groups wrap errors in them) give their innermost causes.
    """
    inner = getattr(e, "exceptions", None)  # an exception group (Python 3.10: a backport)
    if isinstance(inner, tuple) and inner:
        return "; ".join(dict.fromkeys(_kind(x, server) for x in inner))
    if isinstance(e, McpConnectionError):
        return str(e)
    if isinstance(e, TimeoutError | httpx2.TimeoutException):
        return "no answer in time"
    if isinstance(e, httpx2.HTTPStatusError):
        return f"HTTP {e.response.status_code}"
    if isinstance(e, httpx2.ConnectError):
        return f"could not connect ({e})" if str(e) else "could not connect"
    if isinstance(e, httpx2.RemoteProtocolError):
        return "the server broke the HTTP protocol"
    if isinstance(e, httpx2.TransportError):
        return f"the connection failed ({type(e).__name__})"
    if isinstance(e, MCPError) and server.initialized and e.code != PARSE_ERROR:
        status = f" (HTTP {server.status})" if server.status and server.status >= 400 else ""
        return f"JSON-RPC error {e.code}: {e.message}{status}"
    if server.status is not None and server.status >= 400:
        return f"HTTP {server.status}"
    if isinstance(e, MCPError) and server.initialized:
        return f"an answer that is not valid JSON-RPC ({server.answer()})"
    if isinstance(e, MCPError) or type(e).__name__ == "ValidationError":
        return f"not an MCP server ({server.answer()})"
    return type(e).__name__


class McpServers:
    """The MCP servers of one request (``mcp`` tools that have a ``server_url``).

    Each server's session lives in its own task, which runs the operations sent to
    it: a transport that fails (connection refused, a broken stream) ends that task
    and fails the operation, never the request's own task.
    """

    def __init__(self, tools: list[dict[str, Any]], timeout_s: float) -> None:
        self.tools = {
            t["server_label"]: t
            for t in tools
            if t["type"] == "mcp" and isinstance(t.get("server_url"), str)
        }
        self.timeout_s = timeout_s
        self._servers = {label: _Server(t["server_url"]) for label, t in self.tools.items()}
        self._tg: TaskGroup | None = None
        self._inboxes: dict[str, MemoryObjectSendStream[_Job]] = {}
        self._broken: dict[str, str] = {}
        self.calls = 0

    async def __aenter__(self) -> McpServers:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        for inbox in self._inboxes.values():
            inbox.close()  # each session task closes its session (DELETE) and ends
        assert self._tg is not None
        return await self._tg.__aexit__(exc_type, exc, tb)

    def has_server(self, label: str) -> bool:
        return label in self.tools

    def url(self, label: str) -> str:
        return self._servers[label].url

    def failure(self, label: str, e: BaseException) -> str:
        """An error of this server's, in words that never quote what it sent."""
        return _kind(e, self._servers[label])

    async def _serve(self, label: str, inbox: MemoryObjectReceiveStream[_Job]) -> None:
        """The session task: connect, then run jobs until the inbox closes."""
        job: _Job | None = None
        scope = anyio.CancelScope()
        server = self._servers[label]

        def broken(e: Exception) -> None:
            self._broken.setdefault(label, _kind(e, server))
            scope.cancel()

        async def on_response(response: httpx2.Response) -> None:
            server.status = response.status_code
            media = response.headers.get("content-type", "").split(";")[0].strip()
            server.content_type = media if _MEDIA_TYPE.fullmatch(media) else ""

        async def on_message(message: Any) -> None:
            # The transport reports some failures (HTTP errors) here, while the request
            # waiting for an answer would wait on: end the session.
            if isinstance(message, Exception):
                broken(message)
            await anyio.lowlevel.checkpoint()

        try:
            url = server.url
            http = httpx2.AsyncClient(
                transport=_FailFast(broken),
                timeout=httpx2.Timeout(self.timeout_s, read=MCP_SSE_READ_TIMEOUT_S),
                event_hooks={"response": [on_response]},
            )
            with scope:
                async with (
                    http,
                    streamable_http_client(url, http_client=http) as (read, write),
                    ClientSession(read, write, message_handler=on_message) as session,
                ):
                    with anyio.fail_after(self.timeout_s):
                        await session.initialize()
                    server.initialized = True
                    async for job in inbox:
                        try:
                            with anyio.fail_after(self.timeout_s):
                                job.result = await job.run(session)
                        except TimeoutError:
                            job.error = McpConnectionError(f"no answer in {self.timeout_s:g} s")
                        except Exception as e:
                            job.error = e
                        job.done.set()
                        job = None
        except TimeoutError:
            self._broken.setdefault(label, f"no answer in {self.timeout_s:g} s")
        except Exception as e:  # the transport failed: this session is over
            self._broken.setdefault(label, _kind(e, server))
        finally:
            # Answer the job in hand and those still queued, then refuse new ones.
            error = McpConnectionError(self._broken.get(label, "session closed"))
            pending = [job] if job is not None else []
            for _ in range(1000):  # the inbox holds at most a few jobs
                try:
                    pending.append(inbox.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
            inbox.close()
            for j in pending:
                j.error = error
                j.done.set()

    async def _do(self, label: str, run: Callable[[ClientSession], Awaitable[Any]]) -> Any:
        if label in self._broken:
            raise McpConnectionError(self._broken[label])
        inbox = self._inboxes.get(label)
        if inbox is None:
            assert self._tg is not None, "use McpServers as an async context manager"
            inbox, receive = anyio.create_memory_object_stream[_Job](8)
            self._inboxes[label] = inbox
            self._tg.start_soon(self._serve, label, receive)
        job = _Job(run)
        try:
            await inbox.send(job)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise McpConnectionError(self._broken.get(label, "session closed")) from None
        # The session task answers every job (or dies and says why): bounded anyway.
        with anyio.fail_after(3 * self.timeout_s + 1):
            await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    async def list_tools(self, label: str) -> list[dict[str, Any]]:
        """The server's tools (filtered by the tool's ``allowed_tools``).

        Raises `McpServerError` (naming the URL and the failure) when the server
        cannot be used, or when its list holds what strict JSON cannot (a
        non-finite number, a lone surrogate, nesting too deep).
        """

        async def run(session: ClientSession) -> list[Any]:
            tools: list[Any] = []
            cursor: str | None = None
            for _ in range(100):  # pages; bounded
                params = None if cursor is None else PaginatedRequestParams(cursor=cursor)
                page = await session.list_tools(params=params)
                tools += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools

        allowed = _allowed(self.tools[label])
        try:
            tools = await self._do(label, run)
        except Exception as e:
            raise McpServerError(f"{self.url(label)}: {self.failure(label, e)}") from None
        entries = [_tool_entry(t) for t in tools if allowed is None or t.name in allowed]
        problem = find_json_problem(entries, prefix="tools")
        if problem is not None:
            what = {
                "non_finite": "a non-finite number",
                "too_deep": "JSON nested too deep",
                "long_integer": "an integer too long",
            }.get(problem.kind, "a lone surrogate (not text)")
            raise McpServerError(
                f"{self.url(label)}: the tool list holds {what}, at {problem.path}"
            )
        return entries

    async def call(self, label: str, name: str, arguments: str) -> McpResult:
        """Calls tool `name` with the JSON `arguments`; every failure becomes `error`."""
        self.calls += 1
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            return McpResult(error=f"arguments of {label}.{name} are not JSON: {e}")
        if not isinstance(args, dict):
            return McpResult(error=f"arguments of {label}.{name} are not a JSON object")
        allowed = _allowed(self.tools[label])
        if allowed is not None and name not in allowed:
            return McpResult(error=f"tool {name!r} is not in allowed_tools of server {label!r}")

        async def run(session: ClientSession) -> Any:
            return await session.call_tool(name, args)

        where = f"MCP server {label!r} at {self.url(label)}"
        try:
            result = await self._do(label, run)
        except Exception as e:  # unreachable server, broken session, protocol error
            return McpResult(error=f"{where}: {self.failure(label, e)}")
        try:
            text = result_text(list(result.content))
        except ValueError:
            return McpResult(error=f"{where}: the result of {name} holds a non-finite number")
        if has_lone_surrogate(text):
            return McpResult(error=f"{where}: the result of {name} holds a lone surrogate")
        return McpResult(error=text) if result.is_error else McpResult(output=text)
