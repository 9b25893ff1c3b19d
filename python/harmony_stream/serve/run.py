"""Running the app with uvicorn: its logging config, its access log, and our replay line.

The console is set up with uvicorn's own logging config (`uvicorn.config.LOGGING_CONFIG`,
applied with `logging.config.dictConfig`), extended with our logger
(``harmony_stream.serve``: one line per replay, on uvicorn's ``default`` handler),
so each request gets uvicorn's access line and our replay line; ``log_level``
(``--log-level``) sets them all. Under ``uvicorn --factory
harmony_stream.serve:create_app`` uvicorn's access line is there as usual.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import logging.config
import sys
from typing import Any

import uvicorn
import uvicorn.config

from .app import create_app
from .corpus import ServeConfig

__all__ = ["bind_warning", "configure_logging", "is_loopback", "logging_config", "run"]


def logging_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's logging config with our logger added, all at `level` (uvicorn's names).

    The MCP SDK logs a server's malformed answer with a traceback that quotes
    it; our line names the failure instead, so the SDK's own log is silenced
    (and the HTTP clients' chatter kept below warnings).
    """
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    name = level.upper()
    config["loggers"]["harmony_stream.serve"] = {
        "handlers": ["default"],
        "level": name,
        "propagate": False,
    }
    for logger in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        config["loggers"][logger]["level"] = name
    config["loggers"]["httpx"] = {"level": "WARNING"}
    config["loggers"]["httpx2"] = {"level": "WARNING"}
    config["loggers"]["mcp"] = {"level": logging.CRITICAL + 1}
    return config


def configure_logging(level: str = "info") -> None:
    """Applies `logging_config(level)` (before uvicorn starts, so our start-up line shows)."""
    logging.config.dictConfig(logging_config(level))


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
    """Serves until interrupted, logging at `config.log_level` (see the module docstring)."""
    app = create_app(config)  # a bad corpus or config fails here, before any set-up
    warning = bind_warning(host, config)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    configure_logging(config.log_level)
    state = app.state.replay
    log = logging.getLogger("harmony_stream.serve")
    log.info(
        "harmony-stream serve: %d transcript(s) [%s] on http://%s:%d/v1",
        len(state.corpus.entries),
        ", ".join(state.corpus.names()),
        host,
        port,
    )
    # The logging is configured above; uvicorn only sets its loggers' level.
    uvicorn.run(app, host=host, port=port, log_config=None, log_level=config.log_level)
