"""Session fixtures of the SGLang suite (run only in SGLang's virtualenv; see harness.py).

The suite reuses the vLLM suite's corpus and MCP servers (tests_vllm/) and the
stream checks both suites share (tests/stream_checks): both directories are
appended to ``sys.path``, so this directory's own modules come first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
for _shared in (_ROOT / "tests_vllm", _ROOT / "tests"):
    if str(_shared) not in sys.path:
        sys.path.append(str(_shared))

import harness  # noqa: E402
import mcp_servers  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # SGLang's error responses use FastAPI's deprecated ORJSONResponse on every call
    config.addinivalue_line("filterwarnings", "ignore:ORJSONResponse is deprecated")


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
    """SGLang's own MCPToolServer, connected to them (SGLang's --tool-server)."""
    return harness.connect_tool_server(mcp.tool_server_arg)


@pytest.fixture(scope="session")
def streaming_tool_server(tool_server: harness.MCPToolServer) -> harness.ForwardingToolServer:
    """The same tools behind a tool server SGLang lets stream (see ForwardingToolServer)."""
    return harness.ForwardingToolServer(tool_server)


@pytest.fixture(scope="session", autouse=True)
def _event_loop() -> Iterator[None]:
    yield
    harness.close()
