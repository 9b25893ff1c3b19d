"""Real MCP servers (the `mcp` SDK's `MCPServer`) for vLLM's built-in tool loop.

vLLM 0.33's `MCPToolServer` connects with `mcp.client.sse.sse_client` to
`http://{host:port/path}/sse` and names each server by the `server_info.name`
it reports, so three `MCPServer`s named "container", "python" and "browser" are
mounted under /container, /python and /browser of one Starlette app, served by
uvicorn on 127.0.0.1 (free port) in a background thread.

Every tool computes its answer (nothing is canned per test) and each server
records the calls it received, so a test can check that vLLM really called it.
"""

from __future__ import annotations

import ast
import hashlib
import operator
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette
from starlette.routing import Mount

# Tools vLLM calls itself but that must not be described in the prompt.
_HIDDEN = {"include_in_prompt": False}


@dataclass
class CallLog:
    """Calls received by the servers, in order: (server, tool, arguments)."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, server: str, tool: str, arguments: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append((server, tool, arguments))

    def snapshot(self) -> list[tuple[str, str, dict[str, Any]]]:
        with self.lock:
            return list(self.calls)


# --- container: a tiny whitelisted shell, computed in Python -------------------


def run_container_command(cmd: list[str]) -> str:
    """Run one whitelisted command. Unknown commands and `fail` raise."""
    if not cmd:
        raise ValueError("empty command")
    prog, args = cmd[0], cmd[1:]
    if prog == "echo":
        return " ".join(args) + "\n"
    if prog == "sha256sum":
        return "".join(f"{hashlib.sha256(a.encode()).hexdigest()}  {a}\n" for a in args)
    if prog == "wc":
        text = " ".join(args)
        return f"{len(text.splitlines()) or 1} {len(text.split())} {len(text.encode())}\n"
    if prog == "seq":
        lo, hi = (1, int(args[0])) if len(args) == 1 else (int(args[0]), int(args[1]))
        return "".join(f"{i}\n" for i in range(lo, hi + 1))
    if prog == "fail":
        raise RuntimeError(" ".join(args) or "command failed")
    raise ValueError(f"command not allowed: {prog}")


# --- python: safe arithmetic --------------------------------------------------

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _eval_node(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        if isinstance(node.op, ast.Pow):
            exponent = _eval_node(node.right)
            if abs(exponent) > 64:
                raise ValueError("exponent too large")
            return _BINOPS[ast.Pow](_eval_node(node.left), exponent)  # type: ignore[no-any-return]
        return _BINOPS[type(node.op)](_eval_node(node.left), _eval_node(node.right))  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
        return _UNOPS[type(node.op)](_eval_node(node.operand))  # type: ignore[no-any-return]
    raise ValueError(f"unsupported syntax: {type(node).__name__}")


def evaluate_python(code: str) -> str:
    """Evaluate the arithmetic of the last line of `code` (optionally `print(...)`)."""
    tree = ast.parse(code.strip(), mode="exec")
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        raise ValueError("the last statement must be an expression")
    expr = tree.body[-1].value
    if (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id == "print"
        and len(expr.args) == 1
    ):
        expr = expr.args[0]
    return f"{_eval_node(expr)}\n"


# --- browser: a small in-memory web --------------------------------------------

PAGES = {
    "https://example.org/paris-weather": (
        "Paris weather",
        "Paris today: 18 C, light rain in the afternoon. Tomorrow: 21 C and sunny.",
    ),
    "https://example.org/harmony": (
        "The Harmony format",
        "Harmony messages have a role, a channel and an optional recipient. "
        "Tool calls end with the call token.",
    ),
    "https://example.org/tokyo": (
        "東京の天気",
        "東京: 晴れ 23度。明日は雨 🌧️ の予報です。",
    ),
}


def browser_search(query: str, topn: int = 5) -> str:
    words = [w.lower() for w in query.split() if w]
    hits = [
        (url, title)
        for url, (title, body) in PAGES.items()
        if any(w in (title + " " + body + " " + url).lower() for w in words)
    ][:topn]
    if not hits:
        return f"No results for {query!r}."
    return "\n".join(f"【{i}†{title}†{url}】" for i, (url, title) in enumerate(hits))


def browser_open(id: int | str = -1, cursor: int = -1, loc: int = -1) -> str:
    urls = list(PAGES)
    url = urls[id] if isinstance(id, int) and 0 <= id < len(urls) else str(id)
    if url not in PAGES:
        raise ValueError(f"page not found: {id}")
    title, body = PAGES[url]
    return f"{title}\n{url}\n\n{body}"


def browser_find(pattern: str, cursor: int = -1) -> str:
    found = [
        f"{url}: {sentence.strip()}"
        for url, (_title, body) in PAGES.items()
        for sentence in body.split(".")
        if pattern.lower() in sentence.lower()
    ]
    return "\n".join(found) if found else f"No match for {pattern!r}."


def build_servers(log: CallLog) -> dict[str, MCPServer]:
    """The three servers, by the name vLLM knows them by."""
    container = MCPServer(name="container", instructions="A sandboxed shell.", log_level="WARNING")
    python = MCPServer(
        name="python", instructions="Evaluates Python arithmetic.", log_level="WARNING"
    )
    browser = MCPServer(
        name="browser", instructions="Searches and opens web pages.", log_level="WARNING"
    )

    @container.tool(name="exec", description="Run a command in the container.")
    def exec_(cmd: list[str]) -> str:
        log.record("container", "exec", {"cmd": cmd})
        return run_container_command(cmd)

    @python.tool(name="python", description="Run Python code; returns its output.")
    def python_(code: str) -> str:
        log.record("python", "python", {"code": code})
        return evaluate_python(code)

    @browser.tool(name="search", description="Search the web.")
    def search(query: str, topn: int = 5) -> str:
        log.record("browser", "search", {"query": query, "topn": topn})
        return browser_search(query, topn)

    @browser.tool(name="open", description="Open a page by result index or URL.")
    def open_(id: int | str = -1, cursor: int = -1, loc: int = -1) -> str:
        log.record("browser", "open", {"id": id, "cursor": cursor, "loc": loc})
        return browser_open(id, cursor, loc)

    @browser.tool(name="find", description="Find text in the pages.")
    def find(pattern: str, cursor: int = -1) -> str:
        log.record("browser", "find", {"pattern": pattern, "cursor": cursor})
        return browser_find(pattern, cursor)

    def add_cleanup(server: MCPServer, name: str) -> None:
        # vLLM calls `cleanup_session` on every server it used, after the request.
        def cleanup_session() -> str:
            log.record(name, "cleanup_session", {})
            return "ok"

        server.tool(name="cleanup_session", meta=_HIDDEN)(cleanup_session)

    for name, server in (("container", container), ("python", python), ("browser", browser)):
        add_cleanup(server, name)

    return {"container": container, "python": python, "browser": browser}


@dataclass
class RunningServers:
    host: str
    port: int
    log: CallLog
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def tool_server_arg(self) -> str:
        """What `MCPToolServer.add_tool_server` (vLLM's --tool-server) takes."""
        return ",".join(f"{self.host}:{self.port}/{name}" for name in SERVER_NAMES)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


SERVER_NAMES = ("container", "python", "browser")


def start_servers(host: str = "127.0.0.1") -> RunningServers:
    """Start the three MCP servers under uvicorn in a daemon thread."""
    log = CallLog()
    servers = build_servers(log)
    app = Starlette(
        routes=[Mount(f"/{name}", app=servers[name].sse_app(host=host)) for name in SERVER_NAMES]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="mcp-servers", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("MCP servers did not start")
        time.sleep(0.01)
    return RunningServers(host, port, log, server, thread)


async def call_tool_directly(url: str, tool: str, arguments: dict[str, Any]) -> tuple[bool, str]:
    """Call one tool over MCP/SSE as any client would: (is_error, first text)."""
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    async with sse_client(url=url) as streams, ClientSession(*streams) as session:
        await session.initialize()
        result = await session.call_tool(tool, arguments)
    return bool(result.is_error), result.content[0].text  # type: ignore[union-attr]
