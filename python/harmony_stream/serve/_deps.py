"""Fails early, naming the extra to install, when the serve dependencies are missing."""

from __future__ import annotations

__all__ = ["SERVE_EXTRA_HINT"]

SERVE_EXTRA_HINT = "pip install 'harmony-stream[serve]'"

try:
    import mcp  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"harmony-stream serve needs Starlette, uvicorn and the MCP SDK ({e.name} is "
        f"missing): {SERVE_EXTRA_HINT}"
    ) from e
