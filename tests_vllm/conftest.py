"""Session fixtures of the vLLM suite (run only in .venv-vllm; see harness.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The session fixtures both suites share: mcp, tool_server, _event_loop.
from suite_fixtures import _event_loop, mcp, tool_server  # noqa: F401

# The stream checks both suites share (tests/stream_checks): this suite runs in
# vLLM's virtualenv, with the package installed as a wheel and tests/ not on the
# path. Appended, so this directory's own modules come first.
_SHARED = str(Path(__file__).resolve().parents[1] / "tests")
if _SHARED not in sys.path:
    sys.path.append(_SHARED)


def pytest_configure(config: pytest.Config) -> None:
    # vLLM's chat serving reads its own deprecated field on every request
    config.addinivalue_line("filterwarnings", "ignore:max_tokens is deprecated:DeprecationWarning")
