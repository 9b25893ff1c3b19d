"""/v1/responses with the plugin parses each token once.

With the plugin on, vLLM's ``HarmonyContext`` takes the model's messages from
the engine (``ResponseStream(keep_messages=True)``) instead of running vLLM's
``HarmonyParser`` on the same tokens. The oracle is vLLM's own context, plugin
off: with ``enable_response_messages`` vLLM returns the context's messages
(``output_messages``), which its tool loop and its next-turn prompt are made
from; they, the prompts vLLM sends to the engine and the usage must be the same
with the plugin on, while vLLM's parser is not called at all.

Should the engine fail mid-turn, vLLM's parser takes the turn over from its
start: the request still completes with the same messages.
"""

from __future__ import annotations

from typing import Any

import corpus
import harness
import pytest
from vllm.parser import harmony as vparser

from harmony_stream import HarmonyStreamError, vllm_plugin

STEPS = (1, 3)
# Every clean corpus entry: function calls, built-in tool loops over several
# turns (browser, python, container), reasoning, cut turns.
ENTRIES = corpus.CLEAN


def _request(entry: corpus.Entry, stream: bool, step: int, tool_server: Any) -> harness.Result:
    return harness.responses(
        entry,
        stream=stream,
        step=step,
        tool_server=tool_server,
        extra_request_fields={"enable_response_messages": True},
    )


def _context_view(result: harness.Result) -> dict[str, Any]:
    response = result.final_response
    assert response is not None, result.body[:500]
    return {
        "output_messages": response.get("output_messages"),
        "usage": response.get("usage"),
        "prompts": [call.prompt_token_ids for call in result.calls],
    }


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "full"])
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_the_context_reads_the_engines_messages(
    entry: corpus.Entry, step: int, stream: bool, tool_server: Any, monkeypatch: Any
) -> None:
    with harness.plugin(False):
        expected = _context_view(_request(entry, stream, step, tool_server))
    with harness.plugin(True):
        seen: list[int] = []
        patched = vparser.HarmonyParser.process_chunk

        def counting(self: Any, token_ids: Any) -> Any:
            seen.extend(token_ids)
            return patched(self, token_ids)

        monkeypatch.setattr(vparser.HarmonyParser, "process_chunk", counting)
        result = _request(entry, stream, step, tool_server)
        monkeypatch.undo()
    assert result.status_code == 200, result.body[:500]
    assert result.app_error is None
    assert _context_view(result) == expected
    assert seen == [], "vLLM's parser ran on tokens the engine had parsed"


class _FailingStream:
    """The engine's ResponseStream, failing at its `fail_at`-th feed (an
    internal error, as a Rust panic becomes one)."""

    def __init__(self, stream: Any, fail_at: int) -> None:
        self._stream = stream
        self._feeds = 0
        self._fail_at = fail_at

    def feed(self, token_ids: Any) -> Any:
        self._feeds += 1
        if self._feeds == self._fail_at:
            raise HarmonyStreamError("deliberate failure for tests")
        return self._stream.feed(token_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@pytest.mark.parametrize("fail_at", [1, 7, 40])
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_vllms_parser_takes_over_when_the_engine_fails(
    entry: corpus.Entry, fail_at: int, tool_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with harness.plugin(False):
        expected = _context_view(_request(entry, False, 1, tool_server))
    engine_init = vllm_plugin._Engine.__init__

    def failing_init(self: Any, stream: Any) -> None:
        engine_init(self, stream)
        self.stream = _FailingStream(stream, fail_at)

    with harness.plugin(True):
        monkeypatch.setattr(vllm_plugin._Engine, "__init__", failing_init)
        result = _request(entry, False, 1, tool_server)
        monkeypatch.undo()
    assert result.status_code == 200, result.body[:500]
    assert result.app_error is None
    assert _context_view(result) == expected
