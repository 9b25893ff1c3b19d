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

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

__all__ = [
    "ServerThread",
    "convert_temperature",
    "get_latest_release",
    "github_server",
    "search_issues",
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


def units_server() -> MCPServer:
    server = MCPServer("units")
    server.add_tool(convert_temperature)
    return server
