"""The command line and the transcript format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harmony_stream.cli import main, sample_transcript_path
from harmony_stream.transcript import TranscriptError, load_transcript, parse_transcript

from _harness import run_oracle
from conftest import DATA

TRANSCRIPTS = sorted((DATA / "transcripts").glob("*.json"))


def test_there_are_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 8


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_parse_matches_openai_harmony(
    path: Path, enc: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["parse", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    transcript = load_transcript(path)
    assert len(out["turns"]) == len(transcript.model_turns)
    for turn, got in zip(transcript.model_turns, out["turns"], strict=True):
        oracle = run_oracle(enc, turn.tokens, strict=False)
        assert oracle.error_index is None
        assert [{k: v for k, v in m.items() if k != "end"} for m in got["messages"]] == (
            oracle.messages
        )
        assert got["finish_reason"] == turn.finish_reason


def test_bundled_sample_and_demo(capsys: pytest.CaptureFixture[str]) -> None:
    path = sample_transcript_path()
    assert path.is_file()
    assert main(["demo", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "µs/token" in out
    n = load_transcript(path).num_tokens
    assert f"({n} output tokens)" in out


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_stream", "parse", str(sample_transcript_path())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["turns"]


def test_strict_flag_reports_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "t.json"
    # `<|return|>` after `<|end|>`: openai-harmony strict fails at index 4, lenient recovers.
    bad.write_text(json.dumps({"tokens": [200005, 17196, 200008, 200007, 200002]}))
    assert main(["parse", str(bad)]) == 0
    kinds = [r["kind"] for r in json.loads(capsys.readouterr().out)["turns"][0]["recoveries"]]
    assert kinds == ["stray_stop_token"]
    assert main(["parse", "--strict", str(bad)]) == 2
    assert "token index 4" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "a transcript is a JSON object"),
        ('{"turns": []}', "non-empty list"),
        ('{"tokens": [1, "x"]}', "tokens[1] must be an int"),
        ('{"tokens": [1, true]}', "tokens[1] must be an int"),
        ('{"turns": [{"tool_output": {}}]}', "must follow a model turn"),
        ('{"turns": [{"tokens": [], "finish_reason": "later"}]}', "finish_reason"),
        ('{"turns": [{"foo": 1}]}', "expected 'tokens' or 'tool_output'"),
        ('{"tokens": [], "max_output_tokens": 0}', "max_output_tokens"),
        ('{"tokens": [], "tools": [1]}', "'tools' must be a list of objects"),
        ('{"tokens": [-1]}', "not in the o200k_harmony vocabulary"),
    ],
)
def test_bad_transcripts_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    assert main(["parse", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harmony-stream: error:")
    assert message in err


def test_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", "/nonexistent/t.json"]) == 2
    assert "No such file" in capsys.readouterr().err


def test_transcript_short_form_and_extra_fields() -> None:
    t = parse_transcript({"tokens": [1, 2], "finish_reason": "length", "note": "x"})
    assert t.num_tokens == 2
    assert t.model_turns[0].finish_reason == "length"
    assert t.extra == {"note": "x"}
    with pytest.raises(TranscriptError, match="not both"):
        parse_transcript({"tokens": [], "turns": []})


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_events_jsonl_and_sse_agree_with_the_final_response(
    path: Path, vocab: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from harmony_stream._openai import to_openai_event
    from harmony_stream.replay import replay_response

    assert main(["events", "--format", "jsonl", "--seed", "3", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    for ev in events:
        to_openai_event(ev)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    terminal = events[-1]
    assert terminal["type"] in ("response.completed", "response.incomplete")
    # Non-streaming (the engine fed to the end) gives the same response.
    transcript = load_transcript(path)
    assert replay_response(transcript, vocab, id_seed=3, created_at=0) == terminal["response"]

    assert main(["events", "--format", "sse", "--seed", "3", "--step", "7", str(path)]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert blocks[-1] == ""
    sse_events = []
    for block in blocks[:-1]:
        head, data = block.split("\n")
        assert head.startswith("event: ")
        assert data.startswith("data: ")
        ev = json.loads(data[len("data: ") :])
        assert ev["type"] == head[len("event: ") :]
        sse_events.append(ev)
    # Steps of 7 tokens: same items and same final response as one token per step.
    assert sse_events[-1]["response"] == terminal["response"]
