"""Checks of one Responses event stream, shared by both test suites.

* :mod:`stream_checks.strict`: ``validate_stream(events)``, the whole event
  contract of docs/architecture.md (Event contract), for streams of this
  project's engine.
* :mod:`stream_checks.loose`: the checks vLLM 0.33's own stream also passes
  (vLLM's ``validate_streaming_event_stack`` and a few more), so a stream with
  the plugin off and on can be held to the same rules.
* :mod:`stream_checks.common`: what both use (event type sets, openai-python
  adapters, where an event is, unknown fields).

``tests/`` imports it as a sibling directory of its test modules; ``tests_vllm/``
(run in vLLM's own virtualenv) gets ``tests/`` on ``sys.path`` from its
conftest.py. It needs only pydantic and openai-python, which both have.
"""

from __future__ import annotations

from .strict import validate_stream

__all__ = ["validate_stream"]
