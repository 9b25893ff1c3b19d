"""Running the app with uvicorn, with one console line per request."""

from __future__ import annotations

import ipaddress
import logging
import sys

import uvicorn

from .app import create_app
from .corpus import ServeConfig

__all__ = ["bind_warning", "configure_logging", "is_loopback", "run"]


def configure_logging(level: int = logging.INFO) -> None:
    """Our per-request line on the console; the HTTP and MCP clients' chatter off.

    The MCP SDK logs a server's malformed answer with a traceback that quotes
    it; our line names the failure instead, so the SDK's own log is silenced.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("harmony_stream.serve")
    log.handlers = [handler]
    log.setLevel(level)
    log.propagate = False
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("mcp").setLevel(logging.CRITICAL + 1)


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def bind_warning(host: str, config: ServeConfig) -> str | None:
    """The start-up warning for a server other machines can reach, or None."""
    if is_loopback(host):
        return None
    allowed = (
        "only to the hosts in mcp_allowed_hosts"
        if config.mcp_allowed_hosts is not None
        else "to any URL named by a request (restrict them with mcp_allowed_hosts in --config)"
    )
    return (
        f"harmony-stream serve: WARNING: listening on {host}, reachable from other machines. "
        f"The server has no authentication, and it connects to MCP servers {allowed}."
    )


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serves until interrupted (uvicorn's access log is replaced by our line)."""
    app = create_app(config)  # a bad corpus or config fails here, before any set-up
    warning = bind_warning(host, config)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
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
