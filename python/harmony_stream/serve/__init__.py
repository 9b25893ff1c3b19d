"""`harmony-stream serve`: a gpt-oss-shaped Responses server that replays transcripts.

Needs the ``serve`` extra (Starlette, uvicorn, the MCP SDK)::

    pip install 'harmony-stream[serve]'

``create_app(config)`` builds the ASGI app; ``run(config, host, port)`` serves it
with uvicorn. See the README section "Replay server".
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
