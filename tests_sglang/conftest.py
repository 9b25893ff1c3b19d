"""Session fixtures of the SGLang suite (run only in SGLang's virtualenv; see harness.py).

The suite reuses the vLLM suite's corpus and MCP servers (tests_vllm/) and the
stream checks both suites share (tests/stream_checks): both directories are
appended to ``sys.path``, so this directory's own modules come first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
for _shared in (_ROOT / "tests_vllm", _ROOT / "tests"):
    if str(_shared) not in sys.path:
        sys.path.append(str(_shared))

import harness  # noqa: E402

# The session fixtures both suites share: mcp, tool_server, _event_loop.
from suite_fixtures import _event_loop, mcp, tool_server  # noqa: E402, F401


def pytest_configure(config: pytest.Config) -> None:
    # SGLang's error responses use FastAPI's deprecated ORJSONResponse on every call
    config.addinivalue_line("filterwarnings", "ignore:ORJSONResponse is deprecated")


@pytest.fixture(scope="session")
def streaming_tool_server(
    tool_server: harness.MCPToolServer,  # noqa: F811  (the shared fixture, asked for by name)
) -> harness.ForwardingToolServer:
    """The same tools behind a tool server SGLang lets stream (see ForwardingToolServer)."""
    return harness.ForwardingToolServer(tool_server)
