"""Session fixtures both server suites share (the vLLM suite's and the SGLang
suite's conftest.py import them): the real MCP servers, the server's own
``MCPToolServer`` connected to them, and the session's event loop closed at the end.

``harness`` here is the running suite's own (tests_vllm/harness.py or
tests_sglang/harness.py): each conftest imports it first, its directory ahead of
this one on ``sys.path``; both give ``connect_tool_server`` and ``close``.
"""

from __future__ import annotations

from collections.abc import Iterator

import harness
import mcp_servers
import pytest


@pytest.fixture(scope="session")
def mcp() -> Iterator[mcp_servers.RunningServers]:
    """The real MCP servers (container, python, browser) on a free local port."""
    servers = mcp_servers.start_servers()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def tool_server(mcp: mcp_servers.RunningServers) -> harness.MCPToolServer:
    """The server's own MCPToolServer, connected to them (its --tool-server)."""
    return harness.connect_tool_server(mcp.tool_server_arg)


@pytest.fixture(scope="session", autouse=True)
def _event_loop() -> Iterator[None]:
    yield
    harness.close()
