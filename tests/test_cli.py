"""The command line and the transcript format."""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import harmony_stream
from harmony_stream import VOCAB_SHA256, ResponseStream, Vocab
from harmony_stream.cli import (
    build_parser,
    main,
    parse_transcript_messages,
    sample_transcript_path,
)
from harmony_stream.replay import (
    Feed,
    Finish,
    ReplayStep,
    ToolResult,
    iter_sse,
    replay_events,
    replay_response,
    replay_sse,
    replay_steps,
)
from harmony_stream.transcript import (
    ModelTurn,
    ToolOutput,
    TranscriptError,
    load_transcript,
    parse_transcript,
)

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
    err = capsys.readouterr().err
    assert f"{bad}: turns[0]: " in err
    assert "token index 4" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "a transcript is a JSON object"),
        ('{"turns": []}', "non-empty list"),
        ('{"tokens": [1, "x"]}', "turns[0]: tokens[1] must be a token id (a whole number from 0"),
        ('{"tokens": [1, true]}', "turns[0]: tokens[1] must be a token id"),
        ('{"turns": [{"tool_output": {}}]}', "must follow a model turn"),
        ('{"turns": [{"tokens": [], "finish_reason": "later"}]}', "finish_reason"),
        ('{"turns": [{"foo": 1}]}', "expected 'tokens' or 'tool_output'"),
        ('{"tokens": [], "max_output_tokens": 0}', "max_output_tokens"),
        ('{"tokens": [], "tools": [1]}', "'tools' must be a list of objects"),
        ('{"tokens": [-1]}', "turns[0]: tokens[0] must be a token id"),
        (
            '{"tokens": [201089]}',
            "turns[0]: tokens[0]: token id 201089 is not in the o200k_harmony",
        ),
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


@pytest.mark.parametrize("indent", [2, 0])
def test_parse_writes_what_json_dump_would(
    vocab: Vocab, capsys: pytest.CaptureFixture[str], indent: int
) -> None:
    """`parse` writes turn by turn; the text is exactly `json.dump` of the whole."""
    for path in TRANSCRIPTS:
        assert main(["parse", "--indent", str(indent), str(path)]) == 0
        turns = parse_transcript_messages(load_transcript(path), vocab)
        whole = json.dumps({"turns": turns}, ensure_ascii=False, indent=indent) + "\n"
        assert capsys.readouterr().out == whole, path.name


# replay_steps: the one turn loop. Expected steps follow the rule in its docstring:
# feeds of at most `step` tokens in order; the first model turn that does not end
# with "stop" ends the replay with its reason; a budget cuts the tokens past it
# and ends with "length"; no tool result once the budget is spent and tokens remain.

A, B, C = [1, 2, 3, 4, 5], [6, 7, 8], [9, 10]


def _feeds(steps: Sequence[ReplayStep]) -> list[list[int]]:
    return [s.tokens for s in steps if isinstance(s, Feed)]


def test_replay_steps_in_order_with_positions() -> None:
    turns: list[ModelTurn | ToolOutput] = [ModelTurn(A), ToolOutput("out", None), ModelTurn(B)]
    steps = list(replay_steps(turns, step=2))
    assert steps == [
        Feed([1, 2], 0, 0, 0),
        Feed([3, 4], 0, 2, 2),
        Feed([5], 0, 4, 4),
        ToolResult("out", None, 1),
        Feed([6, 7], 2, 0, 5),
        Feed([8], 2, 2, 7),
        Finish("stop", None),
    ]
    whole = list(replay_steps(turns, step=None))
    assert _feeds(whole) == [A, B]
    assert whole[-1] == Finish("stop", None)
    with pytest.raises(ValueError, match="at least 1"):
        list(replay_steps(turns, step=0))


@pytest.mark.parametrize("reason", ["length", "abort", "error"])
def test_a_turn_that_does_not_stop_ends_the_replay(reason: str) -> None:
    turns: list[ModelTurn | ToolOutput] = [
        ModelTurn(A, reason),
        ToolOutput("out", None),
        ModelTurn(B),
        ModelTurn(C),
    ]
    steps = list(replay_steps(turns, step=1))
    assert _feeds(steps) == [[t] for t in A]
    assert not any(isinstance(s, ToolResult) for s in steps)
    assert steps[-1] == Finish(reason, 0)  # type: ignore[arg-type]


def test_the_budget_cuts_the_replay() -> None:
    turns: list[ModelTurn | ToolOutput] = [ModelTurn(A), ToolOutput("out", None), ModelTurn(B)]
    # Past the budget inside a turn: cut there.
    steps = list(replay_steps(turns, step=None, max_output_tokens=7))
    assert _feeds(steps) == [A, [6, 7]]
    assert steps[-1] == Finish("length", 2)
    # Spent exactly when a tool result comes, with tokens after it: the call never runs.
    steps = list(replay_steps(turns, step=None, max_output_tokens=5))
    assert steps == [Feed(A, 0, 0, 0), Finish("length", 1)]
    # Spent exactly at the end: completed.
    steps = list(replay_steps(turns, step=None, max_output_tokens=8))
    assert steps[-1] == Finish("stop", None)
    # Nothing left to generate after the tool result: it is given.
    steps = list(replay_steps([ModelTurn(A), ToolOutput("out", None)], max_output_tokens=5))
    assert steps[-2:] == [ToolResult("out", None, 1), Finish("stop", None)]


def test_every_replay_helper_follows_the_rule(vocab: Vocab) -> None:
    """A first turn cut by `length`: every helper stops there, as the engine fed only it."""
    tokens = load_transcript(DATA / "transcripts" / "chat_final.json").model_turns[0].tokens
    tr = parse_transcript(
        {
            "turns": [
                {"tokens": tokens[:30], "finish_reason": "length"},
                {"tokens": tokens, "finish_reason": "stop"},
            ]
        },
        "cut.json",
    )
    expected_stream = ResponseStream(vocab, id_seed=1, created_at=0)
    expected_stream.feed(tokens[:30])
    expected_stream.finish("length")
    expected = expected_stream.response()
    assert expected["status"] == "incomplete"
    kw: dict[str, Any] = {"id_seed": 1, "created_at": 0}
    assert replay_response(tr, vocab, **kw) == expected
    events = list(replay_events(tr, vocab, step=3, **kw))
    assert events[-1].model_dump()["response"] == expected
    body = replay_sse(tr, vocab, step=3, **kw)
    assert body == b"".join(e.to_sse() for e in events)
    chunks = list(iter_sse(tr, vocab, step=3, **kw))
    assert len(chunks) == 1 + 10 + 1  # start, one per step of 3 tokens, finish
    assert b"".join(chunks) == body


def test_a_budget_below_the_transcript_ends_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """max_output_tokens smaller than the recorded tokens: the replay stops at it."""
    data = json.loads((DATA / "transcripts" / "chat_final.json").read_text())
    data["max_output_tokens"] = 50
    path = tmp_path / "short.json"
    path.write_text(json.dumps(data))
    assert main(["events", "--format", "jsonl", str(path)]) == 0
    terminal = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert terminal["type"] == "response.incomplete"
    assert terminal["response"]["usage"]["output_tokens"] == 50


# --------------------------------------------------------------------------- transcript


def _example_messages() -> Path:
    return sample_transcript_path().parent / "example_messages.json"


def test_transcript_command_makes_what_events_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """messages file → transcript file → events: the items hold the messages' words."""
    doc = json.loads(_example_messages().read_text())
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps(doc))
    out = tmp_path / "transcript.json"
    assert main(["transcript", str(messages), "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["events", "--format", "jsonl", str(out)]) == 0
    terminal = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert terminal["type"] == "response.completed"
    output = terminal["response"]["output"]
    assert [i["type"] for i in output] == ["reasoning", "function_call", "message"]
    assert output[0]["content"][0]["text"] == doc["messages"][0]["content"]
    assert output[1]["name"] == doc["messages"][1]["recipient"].removeprefix("functions.")
    assert output[1]["arguments"] == doc["messages"][1]["content"]
    assert output[2]["content"][0]["text"] == doc["messages"][3]["content"]
    assert terminal["response"]["tools"] == doc["tools"]
    # Without -o the same transcript goes to stdout.
    assert main(["transcript", str(messages)]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_transcript_of_a_response_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A saved response (here the events command's own final response) is read too."""
    assert main(["events", "--format", "jsonl", str(DATA / "transcripts" / "chat_final.json")]) == 0
    response = json.loads(capsys.readouterr().out.splitlines()[-1])["response"]
    saved = tmp_path / "response.json"
    saved.write_text(json.dumps(response))
    assert main(["transcript", str(saved)]) == 0
    made = json.loads(capsys.readouterr().out)
    again = replay_response(parse_transcript(made), Vocab.load())
    strip = ("id",)
    assert [{k: v for k, v in i.items() if k not in strip} for i in again["output"]] == [
        {k: v for k, v in i.items() if k not in strip} for i in response["output"]
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"messages": [{"channel": "final", "content": "a"}, {"channel": "final", '
            '"content": "b"}, {"channel": "final", "content": "c"}, {"channel": "nope", '
            '"content": "d"}]}',
            'm.json: messages[3]: channel "nope": the channel is one of analysis, '
            "commentary, final",
        ),
        (
            '{"messages": [{"channel": "final", "content": "a"}, '
            '{"role": "tool", "name": "x", "content": "out"}]}',
            "m.json: messages[1]: a tool message answers the call just before it",
        ),
        ('{"turns": [{"tokens": []}]}', "m.json: this is already a transcript"),
        ('{"foo": 1}', "m.json: not a messages document"),
        ('[{"type": "message", "role": "user", "content": []}]', "m.json: output[0]: "),
        ("not json", "m.json: not JSON"),
    ],
)
def test_transcript_errors_name_file_and_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    content: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("m.json").write_text(content)
    assert main(["transcript", "m.json", "-o", "out.json"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"harmony-stream: error: {message}")
    assert captured.err.count("\n") == 1
    assert not Path("out.json").exists()


def test_transcript_output_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-dir" / "t.json"
    assert main(["transcript", str(_example_messages()), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harmony-stream: error: {target}: No such file or directory")


# ---------------------------------------------------------------------------
# The `harmony-stream` entry point itself, run as a user runs it (the console
# script pip installed next to this Python), in a subprocess.

ENTRY_POINT = str(Path(sys.executable).parent / "harmony-stream")
CHAT = str(DATA / "transcripts" / "chat_final.json")


def run_entry_point(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENTRY_POINT, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without the vocabulary variables, plus `values`."""
    names = ("TIKTOKEN_ENCODINGS_BASE", "TIKTOKEN_RS_CACHE_DIR", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in names}
    return {**env, **values}


def test_version_is_the_installed_distribution_s() -> None:
    proc = run_entry_point("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"harmony-stream {importlib.metadata.version('harmony-stream')}\n"
    assert importlib.metadata.version("harmony-stream") == harmony_stream.__version__


@pytest.mark.parametrize("command", ["events", "parse", "demo"])
def test_global_options_before_or_after_the_command(command: str, tmp_path: Path) -> None:
    """`--vocab` works on both sides of the command; given twice, the later one counts."""
    good = os.environ["TIKTOKEN_ENCODINGS_BASE"] + "/o200k_base.tiktoken"
    bad = str(tmp_path / "missing.tiktoken")
    args = [command, CHAT, *(["--seed", "1"] if command == "events" else [])]
    if command == "demo":
        args += ["--rounds", "1"]
    plain = run_entry_point(*args)
    before = run_entry_point("--vocab", good, *args)
    after = run_entry_point(*args, "--vocab", good)
    for proc in (plain, before, after):
        assert proc.returncode == 0, proc.stderr
    if command != "demo":  # demo prints timings
        assert plain.stdout == before.stdout == after.stdout
    for proc in (run_entry_point(*args, "--vocab", bad), run_entry_point("--vocab", bad, *args)):
        assert proc.returncode == 2
        assert proc.stderr.startswith("harmony-stream: error: the o200k_base.tiktoken vocabulary ")
        assert bad in proc.stderr
    assert run_entry_point("--vocab", bad, *args, "--vocab", good).returncode == 0
    assert bad in run_entry_point("--vocab", good, *args, "--vocab", bad).stderr


def _parsers(
    parser: argparse.ArgumentParser, name: str = "harmony-stream"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line: the program's, each command's, each sub-command's."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


ALL_PARSERS = dict(_parsers(build_parser()))


def test_every_command_is_checked() -> None:
    assert {"harmony-stream events", "harmony-stream vocab check", "harmony-stream serve"} <= set(
        ALL_PARSERS
    )


@pytest.mark.parametrize("name", sorted(ALL_PARSERS))
def test_help_describes_every_argument_and_default(name: str) -> None:
    """The rule: a description; a help text for every argument, naming its default
    (its value, or in words when it has none); no reStructuredText markup."""
    proc = run_entry_point(*name.split()[1:], "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    parser = ALL_PARSERS[name]
    assert parser.description, name
    assert " ".join(parser.description.split()) in text
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        label = action.dest if not action.option_strings else action.option_strings[0]
        assert action.help, (name, label)
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, (name, label)
        elif action.option_strings or action.nargs in ("?", "*"):
            assert "(default" in action.help, (name, label)
    for markup in ("``", ":class:", ":func:", ":meth:", "`~"):
        assert markup not in proc.stdout, (name, markup)
    assert not re.search(r"^\s*\.\. [a-z-]+::", proc.stdout, re.MULTILINE), name


def test_vocab_check_honours_its_argument(tmp_path: Path) -> None:
    """A directory or a file, whatever the environment says; the output names the file
    and its SHA-256 (checked with hashlib)."""
    source = Path(os.environ["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken"
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(source, mine / "o200k_base.tiktoken")
    digest = hashlib.sha256((mine / "o200k_base.tiktoken").read_bytes()).hexdigest()
    elsewhere = clean_env(TIKTOKEN_ENCODINGS_BASE=str(tmp_path / "empty"))
    for arg in (str(mine), str(mine / "o200k_base.tiktoken")):
        proc = run_entry_point("vocab", "check", arg, env=elsewhere)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"ok: {mine / 'o200k_base.tiktoken'} (sha256 {digest},")
    found = run_entry_point("vocab", "check", env=clean_env(TIKTOKEN_ENCODINGS_BASE=str(mine)))
    assert found.stdout.startswith(f"ok: {mine / 'o200k_base.tiktoken'} (sha256 {digest},")
    missing = run_entry_point("vocab", "check", str(tmp_path))
    assert missing.returncode == 2
    assert str(tmp_path / "o200k_base.tiktoken") in missing.stderr


def test_the_advice_for_a_directory_without_the_file_works(tmp_path: Path) -> None:
    """The error's suggested command, run as written in a shell, fixes the error."""
    env = clean_env(TIKTOKEN_ENCODINGS_BASE=str(tmp_path / "vocab dir"))
    proc = run_entry_point("vocab", "check", env=env)
    assert proc.returncode == 2
    assert "which turns off the other sources" in proc.stderr
    suggested = re.search(r"`(harmony-stream vocab install [^`]+)`", proc.stderr)
    assert suggested is not None, proc.stderr
    env["PATH"] = f"{Path(ENTRY_POINT).parent}{os.pathsep}{env['PATH']}"
    fix = subprocess.run(
        ["bash", "-c", suggested[1]], env=env, capture_output=True, text=True, check=False
    )
    assert fix.returncode == 0, fix.stderr
    after = run_entry_point("vocab", "check", env=env)
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith(f"ok: {tmp_path / 'vocab dir' / 'o200k_base.tiktoken'} ")


def test_vocab_install_without_a_directory_leaves_the_working_directory_alone(
    tmp_path: Path,
) -> None:
    """It writes to the user cache and prints the path and the export line; the line,
    run by a shell, makes the default search find that file."""
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    env = clean_env(HOME=str(home))
    proc = run_entry_point("vocab", "install", env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    target = home / ".cache" / "harmony-stream" / "tiktoken" / "o200k_base.tiktoken"
    assert proc.stdout == f"{target}\n"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == VOCAB_SHA256
    assert list(work.iterdir()) == []
    export = proc.stderr.strip()
    assert export == f"export TIKTOKEN_ENCODINGS_BASE={shlex.quote(str(target.parent))}"
    check = subprocess.run(
        ["bash", "-c", f'{export} && "$0" vocab check', ENTRY_POINT],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.stdout.startswith(f"ok: {target} "), check.stderr
    xdg = run_entry_point("vocab", "install", env={**env, "XDG_CACHE_HOME": str(tmp_path / "x")})
    assert (
        xdg.stdout == f"{tmp_path / 'x' / 'harmony-stream' / 'tiktoken' / 'o200k_base.tiktoken'}\n"
    )
