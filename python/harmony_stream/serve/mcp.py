"""The MCP client of the replay server: list a server's tools, call one.

One `McpServers` per request: it opens a session to a tool's ``server_url``
(streamable HTTP, the `mcp` SDK) the first time the request needs it, and
closes every session when the request ends. Everything runs in the task that
entered it, so a cancelled request (a client that went away) unwinds cleanly.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

__all__ = ["McpResult", "McpServers", "result_text"]


@dataclass(frozen=True)
class McpResult:
    """What a call gave: `output` on success, `error` (the server's text) on failure."""

    output: str | None = None
    error: str | None = None


def result_text(content: list[Any]) -> str:
    """The text of a tool result: text parts joined by newlines, other parts as JSON."""
    parts: list[str] = []
    for c in content:
        text = getattr(c, "text", None)
        if getattr(c, "type", None) == "text" and isinstance(text, str):
            parts.append(text)
        else:
            parts.append(json.dumps(c.model_dump(mode="json", exclude_none=True)))
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


class McpServers:
    """The MCP servers of one request (``mcp`` tools that have a ``server_url``)."""

    def __init__(self, tools: list[dict[str, Any]], timeout_s: float) -> None:
        self.tools = {
            t["server_label"]: t
            for t in tools
            if t["type"] == "mcp" and isinstance(t.get("server_url"), str)
        }
        self.timeout_s = timeout_s
        self._sessions: dict[str, ClientSession] = {}
        self._stack = contextlib.AsyncExitStack()
        self.calls = 0

    async def __aenter__(self) -> McpServers:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._sessions.clear()
        # Closing sends the session's DELETE; a server already gone must not fail the
        # request. No cancel scope around this: the transports' task groups close inside.
        with contextlib.suppress(Exception):
            await self._stack.aclose()

    def has_server(self, label: str) -> bool:
        return label in self.tools

    async def _session(self, label: str) -> ClientSession:
        session = self._sessions.get(label)
        if session is None:
            url = self.tools[label]["server_url"]
            # The transport's task group stays open on the stack: no cancel scope around this.
            read, write = await self._stack.enter_async_context(streamable_http_client(url))
            session = await self._stack.enter_async_context(ClientSession(read, write))
            with anyio.fail_after(self.timeout_s):
                await session.initialize()
            self._sessions[label] = session
        return session

    async def list_tools(self, label: str) -> list[dict[str, Any]]:
        """The server's tools (filtered by the tool's ``allowed_tools``); raises on failure."""
        session = await self._session(label)
        allowed = _allowed(self.tools[label])
        entries: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):  # pages; bounded
            with anyio.fail_after(self.timeout_s):
                if cursor is None:
                    page = await session.list_tools()
                else:
                    from mcp.types import PaginatedRequestParams

                    page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
            entries += [_tool_entry(t) for t in page.tools if allowed is None or t.name in allowed]
            cursor = page.next_cursor
            if not cursor:
                break
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
        try:
            session = await self._session(label)
            with anyio.fail_after(self.timeout_s):
                result = await session.call_tool(name, args)
        except TimeoutError:
            return McpResult(error=f"MCP server {label!r} did not answer in {self.timeout_s:g} s")
        except Exception as e:  # connection refused, protocol errors: the call failed
            return McpResult(error=f"MCP server {label!r}: {type(e).__name__}: {e}")
        text = result_text(list(result.content))
        return McpResult(error=text) if result.is_error else McpResult(output=text)
