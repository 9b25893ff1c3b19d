"""Running the app with uvicorn, with one console line per request."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .corpus import ServeConfig

__all__ = ["configure_logging", "run"]


def configure_logging(level: int = logging.INFO) -> None:
    """Our per-request line on the console; the HTTP and MCP clients' chatter off."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("harmony_stream.serve")
    log.handlers = [handler]
    log.setLevel(level)
    log.propagate = False
    for noisy in ("httpx", "httpx2", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serves until interrupted (uvicorn's access log is replaced by our line)."""
    app = create_app(config)  # a bad corpus or config fails here, before any set-up
    configure_logging()
    state = app.state.replay
    log = logging.getLogger("harmony_stream.serve")
    log.info(
        "harmony-stream serve: %d transcript(s) [%s] on http://%s:%d/v1",
        len(state.corpus.entries),
        ", ".join(state.corpus.names()),
        host,
        port,
    )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
