"""The public typed response: `ResponseStream.response_openai()` and
`harmony_stream.to_openai_response`, against openai-python's own `Response` model.

The oracle is openai-python 3.57's `Response.model_validate(..., strict=True)` of
the plain dict `response()` returns; the typed form must equal it and dump back to
that dict (nothing dropped, nothing added), for every replayed transcript: the
bundled corpus and the test transcripts, streamed one token per step.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pydantic
import pytest
from openai.types.responses import Response

import harmony_stream
from harmony_stream import ResponseStream, Vocab, to_openai_response
from harmony_stream._types import FinishReason
from harmony_stream.replay import Feed, ToolResult, replay_steps, stream_for
from harmony_stream.transcript import load_transcript

from conftest import DATA

CORPUS = Path(str(resources.files("harmony_stream") / "data" / "corpus"))
TRANSCRIPTS = sorted(CORPUS.glob("*.json")) + sorted((DATA / "transcripts").glob("*.json"))


def replayed(path: Path, vocab: Vocab) -> ResponseStream:
    """The transcript's stream, driven to its end by the one replay rule."""
    transcript = load_transcript(path)
    stream = stream_for(transcript, vocab, id_seed=7, created_at=0)
    stream.start()
    for step in replay_steps(transcript, max_output_tokens=transcript.max_output_tokens):
        if isinstance(step, Feed):
            stream.feed(step.tokens)
        elif isinstance(step, ToolResult):
            stream.tool_output(step.output, step.error)
        else:
            stream.finish(step.reason)
    return stream


def test_there_are_transcripts() -> None:
    assert len(list(CORPUS.glob("*.json"))) >= 7
    assert len(TRANSCRIPTS) >= 15


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_typed_response_is_openai_s(path: Path, vocab: Vocab) -> None:
    stream = replayed(path, vocab)
    data = stream.response()
    oracle = Response.model_validate(data, strict=True)
    typed = stream.response_openai()
    assert isinstance(typed, Response)
    assert typed == oracle
    assert typed.model_dump(mode="json", exclude_unset=True) == data
    public = to_openai_response(data)
    assert isinstance(public, Response)
    assert public == oracle


def test_mid_stream_and_every_finish_reason(vocab: Vocab) -> None:
    stream = ResponseStream(vocab)
    assert stream.response_openai().status == "in_progress"
    cases: list[tuple[FinishReason, str]] = [
        ("stop", "completed"),
        ("length", "incomplete"),
        ("error", "failed"),
    ]
    for reason, status in cases:
        s = ResponseStream(vocab)
        s.feed([200005, 17196, 200008, 17196])  # <|channel|>final<|message|>final
        s.finish(reason)
        typed = s.response_openai()
        assert typed.status == status
        assert typed == Response.model_validate(s.response(), strict=True)


def test_public_and_exported() -> None:
    assert "to_openai_response" in harmony_stream.__all__
    assert harmony_stream.to_openai_response is to_openai_response


def test_a_dict_that_is_not_a_response_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        to_openai_response({"id": "resp_1", "object": "response"})
