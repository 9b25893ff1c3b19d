"""Session fixtures of the vLLM suite (run only in .venv-vllm; see harness.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import harness
import mcp_servers
import pytest

# The stream checks both suites share (tests/stream_checks): this suite runs in
# vLLM's virtualenv, with the package installed as a wheel and tests/ not on the
# path. Appended, so this directory's own modules come first.
_SHARED = str(Path(__file__).resolve().parents[1] / "tests")
if _SHARED not in sys.path:
    sys.path.append(_SHARED)


def pytest_configure(config: pytest.Config) -> None:
    # vLLM's chat serving reads its own deprecated field on every request
    config.addinivalue_line("filterwarnings", "ignore:max_tokens is deprecated:DeprecationWarning")


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
    """vLLM's own MCPToolServer, connected to them (vLLM's --tool-server)."""
    return harness.connect_tool_server(mcp.tool_server_arg)


@pytest.fixture(scope="session", autouse=True)
def _event_loop() -> Iterator[None]:
    yield
    harness.close()
