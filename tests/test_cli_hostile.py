"""The command line on hostile input, and its memory on a big transcript.

The rule: every expected failure (a file that cannot be read or is not a
transcript, an argument out of range, a port that cannot be used) prints
``harmony-stream: error: <message>`` on stderr, the message naming the file
(and the turn) or the argument, and exits 2. No traceback, and the message is
in plain words: no Python type names, no ``[Errno N]``, no Rust range syntax.

Every test runs the real command (``python -m harmony_stream``) in a subprocess.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harmony_stream import Vocab
from harmony_stream.replay import replay_response
from harmony_stream.transcript import load_transcript

from conftest import DATA

CLI = [sys.executable, "-m", "harmony_stream"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_plain_error(proc: subprocess.CompletedProcess[str], *names: str) -> None:
    """Exit 2, one `harmony-stream: error:` line naming `names`, nothing else of Python's."""
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, err[-3000:])
    assert err.startswith("harmony-stream: error: "), err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    message = err.splitlines()[0]
    for name in names:
        assert name in message, (name, message)
    assert "[Errno" not in message, message
    assert not re.search(r"\d\.\.=?\d", message), message  # Rust ranges: 0..10, 0..=9
    assert not re.search(r"\bgot (str|int|float|list|dict|bool|NoneType)\b", message), message


README_EXAMPLE = {
    "tools": [{"type": "function", "name": "get_weather", "parameters": {}}],
    "max_output_tokens": 4096,
    "turns": [
        {"tokens": [200005, 35644, 200008, 9552, 200007], "finish_reason": "stop"},
        {"tool_output": {"output": "…", "error": None}},
        {"tokens": [], "finish_reason": "stop"},
    ],
}

DEEP = 100_000

# name -> (file bytes, what the message names besides the file, commands)
BAD_FILES: dict[str, tuple[bytes, tuple[str, ...], tuple[str, ...]]] = {
    "binary": (b"\x00\x01\xff\xfe\x80" * 64, ("UTF-8",), ("events", "parse", "demo")),
    "invalid_utf8": (b'{"tokens": [1], "note": "caf\xe9"}', ("UTF-8",), ("events", "parse")),
    "empty": (b"", ("not JSON",), ("events", "parse")),
    "deep_array": (b"[" * DEEP + b"]" * DEEP, ("nested",), ("events", "parse", "demo")),
    "deep_field": (
        b'{"tokens": [], "note": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        ("nested",),
        ("events", "parse"),
    ),
    "token_string": (b'{"tokens": ["a"]}', ("turns[0]", "tokens[0]"), ("events", "parse")),
    "token_negative": (b'{"tokens": [-1]}', ("turns[0]", "tokens[0]"), ("events", "parse")),
    "token_out_of_vocab": (
        b'{"turns": [{"tokens": [200005]}, {"tokens": [200005, 300000]}]}',
        ("turns[1]", "tokens[1]", "300000", "vocabulary"),
        ("events", "parse", "demo"),
    ),
    "token_1e400": (b'{"tokens": [1e400]}', ("turns[0]", "tokens[0]"), ("events", "parse")),
    "token_2_70": (
        b'{"tokens": [%d]}' % 2**70,
        ("turns[0]", "tokens[0]"),
        ("events", "parse"),
    ),
    "token_5000_digits": (
        b'{"tokens": [' + b"9" * 5000 + b"]}",
        ("digits",),
        ("events", "parse"),
    ),
    "max_output_tokens_2_70": (
        b'{"tokens": [200005], "max_output_tokens": %d}' % 2**70,
        ("max_output_tokens",),
        ("events", "parse"),
    ),
    "max_output_tokens_1e400": (
        b'{"tokens": [200005], "max_output_tokens": 1e400}',
        ("max_output_tokens",),
        ("events", "parse"),
    ),
    "tool_name_5": (
        b'{"tools": [{"type": "function", "name": 5}], "tokens": [200005]}',
        ("tools[0]", "name"),
        ("events", "demo"),
    ),
    "second_tool_label_7": (
        b'{"tools": [{"type": "function", "name": "f"}, {"type": "mcp", "server_label": 7}],'
        b' "tokens": [200005]}',
        ("tools[1]", "server_label"),
        ("events",),
    ),
    "tool_output_without_call": (
        json.dumps(README_EXAMPLE).encode(),
        ("turns[1]", "tool_output", "no call"),
        ("events", "demo"),
    ),
}

FILE_CASES = [
    pytest.param(name, command, id=f"{command}-{name}")
    for name, (_, _, commands) in BAD_FILES.items()
    for command in commands
]


@pytest.mark.parametrize(("name", "command"), FILE_CASES)
def test_a_bad_transcript_is_one_plain_error(tmp_path: Path, name: str, command: str) -> None:
    content, names, _ = BAD_FILES[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(content)
    args = [command, str(path)] + (["--rounds", "1"] if command == "demo" else [])
    assert_plain_error(run_cli(*args), str(path), *names)


@pytest.mark.parametrize("command", ["events", "parse"])
def test_a_directory_or_a_missing_file(tmp_path: Path, command: str) -> None:
    assert_plain_error(run_cli(command, str(tmp_path)), str(tmp_path), "directory")
    missing = tmp_path / "missing.json"
    assert_plain_error(run_cli(command, str(missing)), str(missing), "No such file")


def test_the_readme_example_names_file_and_turn(tmp_path: Path) -> None:
    """Its first turn makes no call, yet a tool_output follows: turns[1] is the culprit."""
    path = tmp_path / "x.json"
    path.write_text(json.dumps(README_EXAMPLE))
    proc = run_cli("events", str(path))
    assert_plain_error(proc, f"{path}: turns[1]: tool_output follows a turn that made no call")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["events", "--step", "0"], ("--step", "'0'")),
        (["events", "--step", "-3"], ("--step",)),
        (["events", "--step", "x"], ("--step", "'x'")),
        (["events", "--seed", "-1"], ("--seed", "'-1'")),
        (["events", "--seed", str(2**64)], ("--seed",)),
        (["events", "--seed", "9" * 5000], ("--seed",)),
        (["parse", "--indent", "-1"], ("--indent",)),
        (["parse", "--indent", "1000000000"], ("--indent",)),
        (["demo", "--rounds", "0"], ("--rounds",)),
        (["serve", "--port", "80000"], ("--port", "'80000'")),
        (["serve", "--port", "-1"], ("--port",)),
        (["serve", "--step", "0"], ("--step",)),
        (["serve", "--seed", "-1"], ("--seed",)),
        (["serve", "--delay-ms", "-5"], ("--delay-ms",)),
        (["serve", "--delay-ms", "nan"], ("--delay-ms",)),
        (["events"], ("transcript",)),
        (["nonsense"], ("nonsense",)),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_bad_argument_is_one_plain_error(args: list[str], names: tuple[str, ...]) -> None:
    sample = str(DATA / "transcripts" / "chat_final.json")
    if args[0] in ("events", "parse", "demo") and len(args) > 1:
        args = [*args, sample]
    assert_plain_error(run_cli(*args), *names)


def test_vocab_install_into_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    target = blocker / "sub"
    assert_plain_error(run_cli("vocab", "install", str(target)), str(target))


def test_serve_on_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("serve", "--port", str(port), timeout=60)
    assert_plain_error(proc, "--port", str(port), "in use")


def test_serve_with_an_unreadable_transcript(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00" * 10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert_plain_error(run_cli("serve", "--port", str(port), str(path)), str(path), "UTF-8")


def _big_transcript(path: Path, n_tokens: int) -> None:
    """One final-channel message of `n_tokens` text tokens (five words, repeated)."""
    words = [123849, 38714, 25840, 2353, 36204]  # " lorem ipsum dolor sit amet"
    with path.open("w") as f:
        f.write('{"tokens": [200005, 17196, 200008')  # <|channel|>final<|message|>
        chunk = ", " + ", ".join(map(str, words))
        for _ in range(n_tokens // len(words)):
            f.write(chunk)
        f.write(", 200002]}")  # <|return|>


# Runs the command with its address space capped (so a regression fails here
# instead of eating the machine), reads its stdout as it comes, and reports the
# command's peak RSS and the size of what it wrote.
MEASURE = textwrap.dedent(
    r"""
    import json, re, resource, subprocess, sys
    cap = int(sys.argv[1])
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    p = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=limit)
    size, carry, last = 0, b"", b""
    while True:
        chunk = p.stdout.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        headers = re.findall(rb"event: ([a-z_.]+)\n", carry + chunk)
        last = headers[-1] if headers else last
        carry = chunk[-100:]
    err = p.stderr.read()
    rc = p.wait()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"rc": rc, "peak": peak, "size": size, "last_event": last.decode(),
                      "err": err.decode(errors="replace")[-2000:]}))
    """
)


def test_events_on_a_big_transcript_run_in_bounded_memory(tmp_path: Path) -> None:
    """`events` writes each step's events as it makes them: it never holds the output.

    The rule: on a ~21 MB transcript (3M tokens, ~700 MB of SSE), the command's
    peak RSS stays under half the size of what it wrote, and under 400 MB. An
    implementation that collects the output before writing it holds at least
    the whole output (the old one peaked at about 3x), so it fails both; its
    address space is capped at 1.2 GB so that it fails without eating the
    machine. What remains is the transcript itself (O(file)).
    """
    path = tmp_path / "big.json"
    _big_transcript(path, 3_000_000)
    assert 18e6 < path.stat().st_size < 40e6
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(1200 << 20), *CLI, "events", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["rc"] == 0, report["err"]
    assert "Traceback" not in report["err"]
    assert report["last_event"] == "response.completed"
    size, peak = report["size"], report["peak"]
    assert size > 600e6, size  # the output dwarfs the bound below
    assert peak < size / 2, (peak, size)
    assert peak < 400 << 20, peak


def test_closing_stdout_early_is_quiet(tmp_path: Path) -> None:
    """`harmony-stream events big.json | head`: the reader leaves, the command stops, quietly."""
    path = tmp_path / "big.json"
    _big_transcript(path, 200_000)
    proc = subprocess.Popen(
        [*CLI, "events", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.read(100).startswith(b"event: response.created")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_events_of_the_length_rule_match_replay_response(tmp_path: Path, vocab: Vocab) -> None:
    """A non-final turn cut by `length`: the CLI stops there, like `replay_response`."""
    tokens = load_transcript(DATA / "transcripts" / "chat_final.json").model_turns[0].tokens
    path = tmp_path / "cut.json"
    path.write_text(
        json.dumps(
            {
                "turns": [
                    {"tokens": tokens[:40], "finish_reason": "length"},
                    {"tokens": tokens, "finish_reason": "stop"},
                ]
            }
        )
    )
    proc = run_cli("events", "--format", "jsonl", "--seed", "5", str(path))
    assert proc.returncode == 0, proc.stderr
    terminal = json.loads(proc.stdout.splitlines()[-1])
    assert terminal["type"] == "response.incomplete"
    response = terminal["response"]
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["usage"]["output_tokens"] == 40  # later turns are not replayed
    expected = replay_response(load_transcript(path), vocab, id_seed=5, created_at=0)
    assert expected == response


def test_demo_on_tokens_openai_harmony_cannot_read(tmp_path: Path) -> None:
    """Stray stop tokens: the lenient parser recovers, openai-harmony's comparison stops.

    The demo still succeeds and says why the comparison is missing.
    """
    path = tmp_path / "stray.json"
    path.write_text(json.dumps({"tokens": [200007, 200002, 200012, 200006, 200005]}))
    proc = run_cli("demo", "--rounds", "1", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "openai-harmony StreamableParser cannot read these tokens" in proc.stdout
