"""Every code block of README.md runs (or is checked for what it is) in the test suite.

Each fenced block is one test, named ``README.md:LINE LANGUAGE``, found afresh on
every run, so a block added to the README is tested without a change here; a
block whose language has no rule below fails, naming the line. The rules, by the
fence's language:

``python``
    Run with pydantic's ``pytest-examples``: the block must run, and when it has
    ``#>`` comments (``EvalExample.run_print_check``) what it prints must equal them.
``bash``
    Run with ``bash -eu`` in the scratch directory (below), with this virtualenv's
    ``bin`` first on ``PATH``. Lines the suite cannot run are replaced by a check
    stated in ``COMMAND_RULES`` (``make TARGET``: ``make -n TARGET``, since
    ``make test`` runs this file; ``pip install``: the requirement parses and names
    extras the package declares; ``harmony-stream serve``: started, it must answer
    ``GET /v1/models``, then it is stopped; ``vllm serve`` and ``python -m
    sglang.launch_server``: the vLLM and SGLang suites run those servers, here the
    plugin's entry point must be registered). Every other line runs.
``console``
    A shell session: each ``$ COMMAND`` line runs under ``bash`` (no rule applies:
    a session shows what a command prints), and the lines after it, up to the
    next ``$``, must be exactly what it printed (stdout, then stderr).
``json``
    Parsed, then checked for what it is: a transcript (``tokens`` or ``turns``) is
    loaded with ``load_transcript`` and replayed with ``harmony-stream events`` (one
    marked ``invalid``, an example of a bad file, must fail with ``TranscriptError``); a
    serve config (``transcripts``, ``rules``, ``default`` ...) is loaded with the
    serve config loader; a messages document (``messages``) is turned into a
    transcript with ``harmony_stream.transcript.from_messages`` (one marked
    ``invalid`` must fail with ``TranscriptError``). Anything else fails.
``text``
    A diagram (the layout tree): every file or directory name in it must exist in
    the repository.

A block with no language fails: every block says what it is.

The scratch directory (one per test module) holds what the README's commands
name: each ``json`` block written to a file (its name given by ``file=NAME`` in
the fence's info string, else ``x.json`` for a transcript, ``serve.json`` for a
serve config, ``messages.json`` for a messages document), ``my_transcripts/`` and
``recorded/`` (copies of the bundled corpus) and ``extra.json`` (one of its
transcripts), so the serve config and the serve command find their files.

Servers: a ``python`` block that talks to ``http://127.0.0.1:8000`` gets a real
``harmony-stream serve`` on that port (the bundled corpus); one that names
``http://127.0.0.1:8765/mcp`` also gets the test suite's GitHub-like MCP server
there (``tests/_servers.py``: ``search_issues``). A port already in use fails the
test, naming it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from pytest_examples import CodeExample, EvalExample, find_examples

import harmony_stream.transcript as transcript_module
from harmony_stream import Vocab
from harmony_stream.replay import replay_response
from harmony_stream.serve import load_config
from harmony_stream.serve.corpus import bundled_corpus_dir
from harmony_stream.transcript import TranscriptError, check_token_ids, load_transcript

from _servers import ServerThread, github_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
COMMAND_TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int  # of the opening fence, 1-based
    lang: str
    info: dict[str, str]  # `key=value` words after the language
    flags: frozenset[str]  # the other words after it
    text: str

    @property
    def id(self) -> str:
        return f"README.md:{self.line} {self.lang or '(no language)'}"


def readme_blocks(path: Path = README) -> list[Block]:
    """The fenced blocks (```lang key=value ...), in order; an unclosed fence fails."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)(.*)$", lines[i])
        if m is None:
            i += 1
            continue
        start = i
        words = shlex.split(m[2])
        info = dict(w.split("=", 1) for w in words if "=" in w)
        i += 1
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            i += 1
        if i == len(lines):
            raise AssertionError(f"README.md:{start + 1}: a fence that is never closed")
        flags = frozenset(w for w in words if "=" not in w)
        text = "\n".join(lines[start + 1 : i])
        blocks.append(Block(start + 1, m[1].lower(), info, flags, text))
        i += 1
    return blocks


BLOCKS = readme_blocks()


def test_the_readme_has_blocks_of_every_kind() -> None:
    assert {"python", "bash", "json", "console"} <= {b.lang for b in BLOCKS}


# --------------------------------------------------------------------------- set-up


def env_for_commands() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


def json_file_name(block: Block, data: Any) -> str:
    if "file" in block.info:
        return block.info["file"]
    return {"transcript": "x.json", "config": "serve.json", "messages": "messages.json"}.get(
        json_kind(data), f"block_{block.line}.json"
    )


def json_kind(data: Any) -> str:
    if not isinstance(data, dict):
        return "unknown"
    if "tokens" in data or "turns" in data:
        return "transcript"
    if "messages" in data:
        return "messages"
    if {"transcripts", "rules", "default"} & set(data):
        return "config"
    return "unknown"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the README's commands run in (see the module docstring)."""
    d = tmp_path_factory.mktemp("readme")
    corpus = bundled_corpus_dir()
    shutil.copytree(corpus, d / "my_transcripts")
    shutil.copytree(corpus, d / "recorded")
    shutil.copy(corpus / "chat_final.json", d / "extra.json")
    for block in BLOCKS:
        if block.lang == "json":
            data = json.loads(block.text)
            (d / json_file_name(block, data)).write_text(block.text + "\n", encoding="utf-8")
    return d


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_models(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} did not answer GET /v1/models in {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_serve(args: list[str], cwd: Path) -> None:
    """`harmony-stream serve ARGS`: it must come up and answer, then it is stopped."""
    port = 8000
    if "--port" in args:
        port = int(args[args.index("--port") + 1])
    assert port_is_free(port), f"port {port} is in use: the README's server cannot start"
    proc = subprocess.Popen(
        [str(BIN / "harmony-stream"), "serve", *args],
        cwd=cwd,
        env=env_for_commands(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_models(f"http://127.0.0.1:{port}", proc)
    except AssertionError as e:
        stop(proc)
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise AssertionError(f"harmony-stream serve {shlex.join(args)}: {e}\n{err}") from e
    stop(proc)


# --------------------------------------------------------------------------- bash


def check_make(words: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        ["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def check_pip_install(words: list[str], cwd: Path) -> None:
    """Each requirement is this package (`.` or `harmony-stream`) with extras it declares."""
    extras = set(importlib.metadata.metadata("harmony-stream").get_all("Provides-Extra") or [])
    specs = [w for w in words[2:] if not w.startswith("-")]
    assert specs, words
    for spec in specs:
        req = Requirement("harmony-stream" + spec[1:] if spec.startswith(".") else spec)
        assert req.name == "harmony-stream", f"the README installs {req.name}, not this package"
        assert req.extras <= extras, f"extras {sorted(req.extras - extras)} are not declared"


def check_serve(words: list[str], cwd: Path) -> None:
    run_serve(words[2:], cwd)


def check_vllm_serve(words: list[str], cwd: Path) -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert plugins.get("harmony_stream") == "harmony_stream.vllm_plugin:register"


def check_sglang_serve(words: list[str], cwd: Path) -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="sglang.srt.plugins")}
    assert plugins.get("harmony_stream") == "harmony_stream.sglang_plugin:register"


# pattern of a command line -> (why it is not run here, the check it gets instead)
COMMAND_RULES: dict[str, tuple[str, Callable[[list[str], Path], None]]] = {
    r"make\b": ("make test runs this file: make -n TARGET instead", check_make),
    r"pip install\b": (
        "never change the test environment: the extras must exist",
        check_pip_install,
    ),
    r"harmony-stream serve\b": ("runs until stopped: started, asked, stopped", check_serve),
    r"vllm serve\b": ("the vLLM suite runs vLLM: the plugin must be registered", check_vllm_serve),
    r"python -m sglang\.launch_server\b": (
        "the SGLang suite runs SGLang: the plugin must be registered",
        check_sglang_serve,
    ),
}


def command_lines(text: str) -> Iterator[str]:
    """The block's commands: one a line, comments dropped (`#` after a space or at the start)."""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            yield line


def run_command(
    line: str, cwd: Path, env: dict[str, str], *, rules: bool = True
) -> subprocess.CompletedProcess[str]:
    """One command line: a rule's check (unless `rules` is false), or the line under bash."""
    for pattern, (_, check) in COMMAND_RULES.items() if rules else ():
        if re.match(pattern, line):
            check(shlex.split(line), cwd)
            return subprocess.CompletedProcess(line, 0, "", "")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def run_bash(block: Block, cwd: Path) -> None:
    env = env_for_commands()
    for line in command_lines(block.text):
        m = re.match(r"export (\w+)=(.*)$", line)
        if m:  # kept for the following lines
            value = subprocess.run(
                ["bash", "-c", f"printf %s {m[2]}"], env=env, capture_output=True, text=True
            ).stdout
            env[m[1]] = value
            continue
        proc = run_command(line, cwd, env)
        assert proc.returncode == 0, f"{block.id}: {line}: exit {proc.returncode}\n{proc.stderr}"


# --------------------------------------------------------------------------- console


def run_console(block: Block, cwd: Path) -> None:
    env = env_for_commands()
    sessions: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            sessions.append((line[2:], []))
        else:
            assert sessions, f"{block.id}: output before the first `$ command` line"
            sessions[-1][1].append(line)
    assert sessions, f"{block.id}: no `$ command` line"
    for command, expected in sessions:
        proc = run_command(command, cwd, env, rules=False)
        got = (proc.stdout + proc.stderr).rstrip("\n").split("\n")
        assert got == expected, f"{block.id}: $ {command}"


# --------------------------------------------------------------------------- json, text


def replay_checked(path: Path, vocab: Vocab) -> None:
    transcript = load_transcript(path)
    check_token_ids(transcript, vocab)
    replay_response(transcript, vocab)


def check_json(block: Block, cwd: Path, vocab: Vocab) -> None:
    data = json.loads(block.text)
    path = cwd / json_file_name(block, data)
    kind = json_kind(data)
    if kind == "transcript" and "invalid" in block.flags:  # an example of an error
        with pytest.raises(TranscriptError):
            replay_checked(path, vocab)
    elif kind == "transcript":
        check_token_ids(load_transcript(path), vocab)
        command = f"harmony-stream events {shlex.quote(str(path))}"
        proc = run_command(command, cwd, env_for_commands())
        assert proc.returncode == 0, proc.stderr
    elif kind == "config":
        load_config(path)
    elif kind == "messages" and "invalid" in block.flags:  # an example of an error
        with pytest.raises(TranscriptError):
            transcript_module.from_messages(vocab, data)
    elif kind == "messages":
        transcript_module.from_messages(vocab, data)
    else:
        raise AssertionError(
            f"{block.id}: a JSON block that is neither a transcript, a "
            "messages document nor a serve config"
        )


def check_text(block: Block) -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    paths = set(tracked) | {str(Path(p).parent) + "/" for p in tracked}
    names = re.findall(
        r"(?<![\w./-])([\w-]+(?:/[\w.-]+)*(?:\.(?:rs|pyi|py|toml|md|json|sh)\b|/))", block.text
    )
    assert names, f"{block.id}: a text block names no file"
    for name in names:
        assert any(p == name or p.endswith("/" + name) for p in paths), f"{block.id}: {name}"


# --------------------------------------------------------------------------- python


PYTHON_EXAMPLES = {ex.start_line: ex for ex in find_examples(str(README))}  # fence line


@pytest.fixture
def servers_for(request: pytest.FixtureRequest) -> Callable[[str], Iterator[None]]:
    """Starts what a Python block talks to (see the module docstring)."""

    def start(source: str) -> Iterator[None]:
        mcp: ServerThread | None = None
        serve: subprocess.Popen[bytes] | None = None
        try:
            if "http://127.0.0.1:8765/mcp" in source:
                assert port_is_free(8765), "port 8765 is in use: the README's MCP server"
                mcp = ServerThread(github_server().streamable_http_app())
                mcp.port = mcp.server.config.port = 8765
                mcp.__enter__()
            if "http://127.0.0.1:8000" in source:
                assert port_is_free(8000), "port 8000 is in use: the README's server"
                serve = subprocess.Popen(
                    [str(BIN / "harmony-stream"), "serve"],
                    env=env_for_commands(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                wait_for_models("http://127.0.0.1:8000", serve)
            yield
        finally:
            if serve is not None:
                stop(serve)
            if mcp is not None:
                mcp.__exit__(None, None, None)

    return start


def run_python(block: Block, eval_example: EvalExample, cwd: Path, servers: Any) -> None:
    example: CodeExample | None = PYTHON_EXAMPLES.get(block.line)
    assert example is not None, f"{block.id}: pytest-examples did not find this block"
    eval_example.set_config(line_length=100)
    before = Path.cwd()
    os.chdir(cwd)
    try:
        for _ in servers(example.source):
            if "#>" in example.source:
                eval_example.run_print_check(example)
            else:
                eval_example.run(example)
    finally:
        os.chdir(before)


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.id)
def test_readme_block(
    block: Block,
    scratch: Path,
    vocab: Vocab,
    eval_example: EvalExample,
    servers_for: Callable[[str], Iterator[None]],
) -> None:
    if block.lang == "python":
        run_python(block, eval_example, scratch, servers_for)
    elif block.lang == "bash":
        run_bash(block, scratch)
    elif block.lang == "console":
        run_console(block, scratch)
    elif block.lang == "json":
        check_json(block, scratch, vocab)
    elif block.lang == "text":
        check_text(block)
    else:
        raise AssertionError(
            f"{block.id}: no rule for this block: give it a language the runner knows "
            "(python, bash, console, json, text; see tests/test_readme.py)"
        )


# --------------------------------------------------------------------------- the runner


def test_the_runner_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    """A block with no language, an unclosed fence, an undeclared extra, output that
    differs, a JSON block of no known kind: each fails, none is passed over."""
    md = tmp_path / "x.md"
    md.write_text('```\nplain\n```\n\n```json file=a.json\n{"a": 1}\n```\n')
    plain, other = readme_blocks(md)
    assert (plain.lang, other.info, other.flags) == ("", {"file": "a.json"}, frozenset())
    md.write_text("```bash\nls\n")
    with pytest.raises(AssertionError, match="never closed"):
        readme_blocks(md)
    with pytest.raises(AssertionError, match=r"\['vllm'\] are not declared"):
        check_pip_install(["pip", "install", "harmony-stream[vllm]"], tmp_path)
    with pytest.raises(AssertionError, match="not this package"):
        check_pip_install(["pip", "install", "vllm==0.33.0"], tmp_path)
    wrong = Block(1, "console", {}, frozenset(), "$ echo hi\nho")
    with pytest.raises(AssertionError, match=r"\$ echo hi"):
        run_console(wrong, tmp_path)
    (tmp_path / "a.json").write_text('{"a": 1}')
    with pytest.raises(AssertionError, match="neither a transcript"):
        check_json(other, tmp_path, Vocab.load())
