"""`harmony-stream serve`: a gpt-oss-shaped Responses server that replays transcripts.

Needs the ``serve`` extra (Starlette, uvicorn, the MCP SDK)::

    pip install 'harmony-stream[serve]'

``create_app(config)`` builds the ASGI app (``uvicorn --factory
harmony_stream.serve:create_app`` serves it with the default settings);
``run(config, host, port)`` serves it with uvicorn and its logging config.
``python -m harmony_stream.serve.example_mcp`` is an example MCP server for it.
See the README section "Replay server".
"""

from __future__ import annotations

from ._deps import SERVE_EXTRA_HINT
from .app import create_app, synthetic_logprobs
from .corpus import (
    Corpus,
    Rule,
    ServeConfig,
    ServeConfigError,
    bundled_corpus_dir,
    load_config,
)
from .request import RequestError, ResponsesRequest, parse_request
from .run import run

__all__ = [
    "SERVE_EXTRA_HINT",
    "Corpus",
    "RequestError",
    "ResponsesRequest",
    "Rule",
    "ServeConfig",
    "ServeConfigError",
    "bundled_corpus_dir",
    "create_app",
    "load_config",
    "parse_request",
    "run",
    "synthetic_logprobs",
]
