"""Servers for the replay-server tests: uvicorn in a thread, and real MCP servers.

Every server listens on 127.0.0.1 on a free port and is stopped by its context
manager; every wait is bounded.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from types import TracebackType
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = [
    "SECRET",
    "FixedAnswer",
    "Router",
    "ScriptedMcp",
    "ServerThread",
    "convert_temperature",
    "get_latest_release",
    "github_server",
    "search_issues",
    "slow_github_server",
    "units_server",
]

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerThread:
    """An ASGI app under uvicorn in a daemon thread (logs go to the root logger)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        # log_config=None: uvicorn configures no handler of its own, so its records
        # (errors included) propagate to the root logger, where caplog sees them.
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(START_TIMEOUT_S)


# --------------------------------------------------------------------------- MCP tools
# Each tool computes its answer from its arguments, so a replayed recorded output
# can never pass for the real one.


def search_issues(repo: str, query: str, per_page: int = 10) -> str:
    """Open issues of `repo` matching `query` (a deterministic stand-in for GitHub)."""
    issues = [
        {"number": 100 + 7 * i, "title": f"{query} — match {i} in {repo}", "state": "open"}
        for i in range(per_page)
    ]
    return json.dumps(issues)


def get_latest_release(repo: str) -> str:
    """Always fails, as a repository the connector cannot see."""
    raise ToolError(f"404 Not Found: no repository {repo!r} on this test server")


def convert_temperature(value: float, from_unit: str, to_unit: str) -> str:
    """Converts between celsius and fahrenheit."""
    celsius = value if from_unit == "celsius" else (value - 32) * 5 / 9
    out = celsius * 9 / 5 + 32 if to_unit == "fahrenheit" else celsius
    return f"{out:.2f} {to_unit}"


def github_server() -> MCPServer:
    server = MCPServer("github")
    server.add_tool(search_issues)
    server.add_tool(get_latest_release)
    return server


def slow_github_server(delay_s: float) -> MCPServer:
    """`github_server`, whose `search_issues` answers after `delay_s` seconds."""

    async def slow_search_issues(repo: str, query: str, per_page: int = 10) -> str:
        await anyio.sleep(delay_s)
        return search_issues(repo, query, per_page)

    server = MCPServer("github")
    server.add_tool(slow_search_issues, name="search_issues")
    return server


def units_server() -> MCPServer:
    server = MCPServer("units")
    server.add_tool(convert_temperature)
    return server


# --------------------------------------------------------------------------- hostile servers
# Raw ASGI apps for the hostile tests (`test_serve_hostile.py`): one serves a
# fixed answer that is not MCP, the other speaks just enough MCP (JSON answers,
# no session id) to be listed and then misbehave when a tool is called.

SECRET = "INTERNAL-SECRET-7f3a9c"  # in every body the hostile servers send


async def _read_body(receive: Any) -> bytes:
    body: bytes = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send: Any, status: int, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode())] if content_type else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FixedAnswer:
    """Answers every HTTP request with one status, content type and body (not MCP).

    ``{id}`` in the body becomes the JSON-RPC id of the request (``null`` if none),
    so a JSON-RPC error can answer the request it refuses.
    """

    def __init__(self, status: int, content_type: str, body: str) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        try:
            rid = json.loads(raw).get("id")
        except (ValueError, AttributeError):
            rid = None
        body = self.body.replace("{id}", json.dumps(rid))
        await _answer(send, self.status, self.content_type, body.encode())


class ScriptedMcp:
    """A minimal MCP server (streamable HTTP, JSON answers) with a scripted ``tools/call``.

    ``tools_json`` is the raw JSON text of the ``tools/list`` result's ``tools``
    (so it may hold ``NaN``). ``call`` is what ``tools/call`` does:
    ``"junk"`` answers 200 ``application/json`` with a body that is not JSON-RPC
    (it holds `SECRET`); ``"hang"`` never answers, until the client goes away.
    ``call_started`` and ``call_dropped`` are set when a call arrives and when its
    client hangs up (times in ``time.monotonic()``).
    """

    def __init__(self, tools_json: str, call: str = "junk") -> None:
        self.tools_json = tools_json
        self.call = call
        self.call_started = threading.Event()
        self.call_dropped = threading.Event()
        self.dropped_at: float | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":  # no GET stream, no session to delete
            await _answer(send, 405, "", b"")
            return
        message = json.loads(await _read_body(receive))
        method, rid = message.get("method"), message.get("id")
        if rid is None:  # a notification
            await _answer(send, 202, "", b"")
            return
        if method == "initialize":
            result = json.dumps(
                {
                    "protocolVersion": message["params"]["protocolVersion"],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "scripted", "version": "1"},
                }
            )
        elif method == "tools/list":
            result = '{"tools": ' + self.tools_json + "}"
        elif method == "tools/call" and self.call == "hang":
            self.call_started.set()
            while (await receive())["type"] != "http.disconnect":
                pass
            self.dropped_at = time.monotonic()
            self.call_dropped.set()
            return
        elif method == "tools/call":
            self.call_started.set()
            await _answer(send, 200, "application/json", f"<html>{SECRET}</html>".encode())
            return
        else:
            error = {"code": -32601, "message": f"no method {method}"}
            body = json.dumps({"jsonrpc": "2.0", "id": rid, "error": error})
            await _answer(send, 200, "application/json", body.encode())
            return
        body = '{"jsonrpc": "2.0", "id": ' + json.dumps(rid) + ', "result": ' + result + "}"
        await _answer(send, 200, "application/json", body.encode())


class Router:
    """Sends each request to the app of its path (``/name`` or ``/name/...``)."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.apps = apps

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        app = self.apps.get(scope["path"].strip("/").split("/")[0])
        if app is None:
            await _answer(send, 404, "text/plain", b"no such app")
            return
        await app(scope, receive, send)
