"""Which transcript answers a request, and which of its turns.

A transcript (docs/architecture.md, Transcripts) may hold several client round
trips: a function call is run by the client, whose next request carries the `function_call_output`.
So a transcript is cut into *segments* after every model turn that ends in a
`functions.*` call followed by its `tool_output`; segment k is the answer to
the k-th request of the conversation. A request's segment is the number of
`function_call_output` items in its `input` (plus the segment of the response
named by `previous_response_id`, when this server served it).

The transcript is chosen, first match wins:

1. by name: the body field ``transcript`` or ``metadata["transcript"]``;
2. the transcript of the response named by ``previous_response_id``;
3. the config's ``rules`` (every condition of a rule must hold);
4. the config's ``default``;
5. otherwise the best fit: the transcripts whose every tool call the request
   offers (a function by name, an MCP call ``LABEL.TOOL`` by an ``mcp`` tool
   with ``server_label`` LABEL, ``python`` by ``code_interpreter``,
   ``browser.*`` by ``web_search``/``web_search_preview``); among them the one
   that uses the most of the request's tools, the first in corpus order on a
   tie. When none fits, the first transcript.

The request's ``tool_choice`` must hold for the segment served (`tool_choice_allows`):
``"none"`` a segment with no tool call, ``"required"`` one with a call, a named
function, MCP server (and tool) or hosted tool a segment making that call,
``allowed_tools`` calls among those tools only (and one at least with mode
``required``). A transcript chosen by name, rule or default that does not
comply is a 400 (``param: "tool_choice"``); the best fit is chosen among the
transcripts that comply, and a 400 says so when none does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .._native import TOOL_TYPES, HarmonyParser, Vocab, route
from ..errors import HarmonyStreamError
from ..replay import replay_response
from ..transcript import (
    ModelTurn,
    ToolOutput,
    Transcript,
    TranscriptError,
    load_transcript,
    read_json_file,
)
from .request import RequestError, ResponsesRequest

__all__ = [
    "LOG_LEVELS",
    "Call",
    "Corpus",
    "Entry",
    "Rule",
    "ServeConfig",
    "ServeConfigError",
    "bundled_corpus_dir",
    "load_config",
    "tool_choice_allows",
]

Turn = ModelTurn | ToolOutput


def bundled_corpus_dir() -> Path:
    """The transcripts shipped with the package (`harmony_stream/data/corpus`)."""
    return Path(str(resources.files("harmony_stream") / "data" / "corpus"))


@dataclass(frozen=True)
class Call:
    """A tool call a model turn ends with (or makes on its way).

    `tool_key` is the request tool that offers it, as the engine routes the call
    (`route()`, with the transcript's tools): (tool kind, function name or MCP
    server label, "" for the others).
    """

    recipient: str
    tool_key: tuple[str, str]


def _request_tool_key(tool: dict[str, Any]) -> tuple[str, str]:
    kind = TOOL_TYPES.get(tool["type"], tool["type"])
    if kind == "function":
        return ("function", tool["name"])
    if kind == "mcp":
        return ("mcp", tool["server_label"])
    return (kind, "")


@dataclass(frozen=True)
class Entry:
    """One transcript of the corpus, cut into the segments served per request."""

    name: str
    transcript: Transcript
    segments: list[list[Turn]]
    calls: list[Call]
    # The calls of each segment.
    segment_calls: list[list[Call]] = field(default_factory=list)

    @property
    def tool_keys(self) -> set[tuple[str, str]]:
        return {c.tool_key for c in self.calls}

    def calls_of(self, segment: int) -> list[Call]:
        """The calls made in `segment` (none past the last one)."""
        return self.segment_calls[segment] if segment < len(self.segment_calls) else []


def _choice_key(choice: dict[str, Any]) -> tuple[str, str]:
    """The tool a `tool_choice` object (or an `allowed_tools` entry) names, as `Call.tool_key`."""
    kind = TOOL_TYPES.get(choice.get("type", ""), choice.get("type", ""))
    if kind == "function":
        return ("function", str(choice.get("name", "")))
    if kind == "mcp":
        return ("mcp", str(choice.get("server_label", "")))
    return (kind, "")


def _makes(call: Call, choice: dict[str, Any]) -> bool:
    """Whether `call` is a call to the tool `choice` names (an MCP tool name, if given)."""
    if call.tool_key != _choice_key(choice):
        return False
    name = choice.get("name") if choice.get("type") == "mcp" else None
    return name is None or call.recipient.split(".", 1)[-1] == name


def tool_choice_allows(choice: str | dict[str, Any], calls: Sequence[Call]) -> bool:
    """Whether a segment making `calls` complies with the request's `tool_choice`."""
    if choice == "auto":
        return True
    if choice == "none":
        return not calls
    if choice == "required":
        return bool(calls)
    assert isinstance(choice, dict)
    if choice.get("type") == "allowed_tools":
        allowed = [t for t in choice.get("tools", []) if isinstance(t, dict)]
        if not all(any(_makes(c, t) for t in allowed) for c in calls):
            return False
        return bool(calls) or choice.get("mode") != "required"
    return any(_makes(c, choice) for c in calls)


def _describe(choice: str | dict[str, Any]) -> str:
    """What `choice` asks of a response, after "must": "make no tool call", ..."""
    if choice == "none":
        return "make no tool call"
    if choice == "required":
        return "make a tool call"
    assert isinstance(choice, dict)
    if choice.get("type") == "allowed_tools":
        return "call only the allowed tools" + (
            " (one at least)" if choice.get("mode") == "required" else ""
        )
    kind, name = _choice_key(choice)
    tool = f"the {kind} tool" + (f" {name!r}" if name else "")
    if kind == "mcp" and choice.get("name"):
        tool += f" (tool {choice['name']!r})"
    return f"call {tool}"


def _segments(
    turns: Sequence[Turn], vocab: Vocab, tools: Sequence[dict[str, Any]]
) -> tuple[list[list[Turn]], list[list[Call]]]:
    segments: list[list[Turn]] = [[]]
    segment_calls: list[list[Call]] = [[]]
    ends_in_function = False
    for turn in turns:
        if isinstance(turn, ToolOutput) and ends_in_function:
            segments.append([])  # the client runs the function; its next request resumes here
            segment_calls.append([])
            ends_in_function = False
            continue
        segments[-1].append(turn)
        if isinstance(turn, ModelTurn):
            parser = HarmonyParser(vocab, "assistant")
            parser.process_many(turn.tokens)
            parser.process_eos()
            messages = parser.messages
            routes = [route(m.recipient, m.channel, tools) for m in messages]
            segment_calls[-1].extend(
                Call(m.recipient, (kind, name))
                for m, (_, kind, name) in zip(messages, routes, strict=True)
                if m.recipient and kind is not None
            )
            ends_in_function = bool(routes) and routes[-1][0] == "function_call"
    kept = [n for n, s in enumerate(segments) if s]
    return [segments[n] for n in kept], [segment_calls[n] for n in kept]


def make_entry(name: str, transcript: Transcript, vocab: Vocab) -> Entry:
    """Parses the transcript once: its calls, its segments; bad token ids fail here.

    It is also replayed once as the command line replays it (`replay_response`),
    so a transcript `harmony-stream events` refuses (a tool output with no call
    to answer, say) stops the server at start-up too, with the same message.
    """
    try:
        replay_response(transcript, vocab, id_seed=0, created_at=0)
        segments, segment_calls = _segments(transcript.turns, vocab, transcript.tools)
    except HarmonyStreamError as e:
        raise TranscriptError(f"transcript {name!r}: {e}") from e
    calls = [c for cs in segment_calls for c in cs]
    return Entry(name, transcript, segments, calls, segment_calls)


@dataclass(frozen=True)
class Rule:
    """A config rule: every given condition must hold for `transcript` to be chosen."""

    transcript: str
    input_contains: str | None = None
    model: str | None = None
    tool_types: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    server_labels: tuple[str, ...] = ()

    def matches(self, request: ResponsesRequest) -> bool:
        if self.input_contains is not None and (
            self.input_contains.casefold() not in request.input_text().casefold()
        ):
            return False
        if self.model is not None and request.model != self.model:
            return False
        types = {t["type"] for t in request.tools}
        names = {t["name"] for t in request.tools if t["type"] == "function"}
        labels = {t["server_label"] for t in request.tools if t["type"] == "mcp"}
        return (
            set(self.tool_types) <= types
            and set(self.functions) <= names
            and set(self.server_labels) <= labels
        )


class ServeConfigError(TranscriptError):
    """A server setting that cannot be used; the message names the setting (and its flag).

    Raised when a `ServeConfig` is built or a setting is assigned, and by
    `load_config`, so a bad setting stops the server at start-up rather than
    failing every request. A `TranscriptError` (hence a `HarmonyStreamError` and
    a `ValueError`) too, as config errors always were.
    """


# The command-line flag of each setting that has one (named in the error messages).
_FLAGS = {
    "seed": "--seed",
    "step": "--step",
    "step_delay_ms": "--delay-ms",
    "max_body_bytes": "--max-body-bytes",
    "mcp_allowed_hosts": "--mcp-allowed-host",
    "cors_origins": "--cors-origin",
    "keepalive_s": "--keepalive-s",
    "log_level": "--log-level",
}

# The `log_level` values (uvicorn's, lower case).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def _setting_error(name: str, rule: str, value: Any) -> ServeConfigError:
    flag = f" ({_FLAGS[name]})" if name in _FLAGS else ""
    return ServeConfigError(f"{name}{flag} must be {rule}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_float(value: Any) -> float | None:
    """`value` as a finite float, or None (not a number, NaN, infinite, too large)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _whole(name: str, minimum: int, rule: str, *, optional: bool = False) -> Callable[[Any], Any]:
    """A check: an integer >= `minimum` (or None when `optional`)."""

    def check(value: Any) -> Any:
        if not ((optional and value is None) or (_is_int(value) and value >= minimum)):
            raise _setting_error(name, rule, value)
        return value

    return check


def _number(name: str, rule: str, *, zero: bool) -> Callable[[Any], Any]:
    """A check: a finite number > 0 (or >= 0 when `zero`), as a float."""

    def check(value: Any) -> Any:
        f = _finite_float(value)
        if f is None or f < 0 or (f == 0 and not zero):
            raise _setting_error(name, rule, value)
        return f

    return check


def _strings(name: str, rule: str, *, optional: bool = False) -> Callable[[Any], Any]:
    """A check: a list of non-empty strings (or None when `optional`)."""

    def check(value: Any) -> Any:
        if optional and value is None:
            return None
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise _setting_error(name, rule, value)
        return list(value)

    return check


def _check_log_level(value: Any) -> Any:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise _setting_error("log_level", "one of " + ", ".join(LOG_LEVELS), value)
    return value.lower()


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "seed": _whole("seed", 0, "an integer >= 0 (or none)", optional=True),
    "step": _whole("step", 1, "an integer >= 1"),
    "step_delay_ms": _number("step_delay_ms", "a finite number >= 0", zero=True),
    "mcp_timeout_s": _number("mcp_timeout_s", "a finite number > 0", zero=False),
    "max_body_bytes": _whole("max_body_bytes", 1, "an integer >= 1 (bytes)"),
    "mcp_allowed_hosts": _strings(
        "mcp_allowed_hosts",
        "a list of host names or patterns (non-empty strings)",
        optional=True,
    ),
    "models": _strings("models", "a list of model names (non-empty strings)"),
    "keepalive_s": _number("keepalive_s", "a finite number > 0 (seconds)", zero=False),
    "cors_origins": _strings("cors_origins", 'a list of origins (non-empty strings, or "*")'),
    "log_level": _check_log_level,
}


@dataclass
class ServeConfig:
    """Server settings (`--config FILE` is this as JSON; see `load_config`).

    Every setting is checked when the config is built and whenever one is
    assigned: a bad value raises `ServeConfigError` naming it.
    """

    transcripts: list[Path] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    default: str | None = None
    models: list[str] = field(default_factory=lambda: ["gpt-oss-120b", "gpt-oss-20b"])
    # Fixed ids and created_at for every response (reproducible output, tests).
    seed: int | None = None
    # Tokens per engine step (one SSE write per step) and a pause after each step.
    step: int = 1
    step_delay_ms: float = 0.0
    # Each MCP operation (connect, list, call) must answer within this.
    mcp_timeout_s: float = 30.0
    vocab_path: str | None = None
    # The largest request body read; a larger one is a 413.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # When set, the only hosts (names or shell-style patterns) an MCP server_url may name.
    mcp_allowed_hosts: list[str] | None = None
    # Browser origins allowed by CORS (none: no CORS headers; "*": any origin).
    cors_origins: list[str] = field(default_factory=list)
    # While an MCP tool runs, a streamed response gets `: keep-alive` this often.
    keepalive_s: float = 15.0
    # The console's log level (uvicorn's names); "warning" hides the per-request lines.
    log_level: str = "info"

    def __setattr__(self, name: str, value: Any) -> None:
        check = _CHECKS.get(name)
        super().__setattr__(name, check(value) if check is not None else value)


_RULE_KEYS = {"transcript", "input_contains", "model", "tool_types", "functions", "server_labels"}
_CONFIG_KEYS = {
    "transcripts",
    "rules",
    "default",
    "models",
    "seed",
    "step",
    "step_delay_ms",
    "mcp_timeout_s",
    "max_body_bytes",
    "mcp_allowed_hosts",
    "vocab",
    "cors_origins",
    "keepalive_s",
    "log_level",
}


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TranscriptError(f"{where} must be a string or a list of strings")
    return tuple(value)


def load_config(path: str | Path) -> ServeConfig:
    """Reads a JSON config file; relative transcript paths are relative to it.

    ``{"transcripts": ["dir/", "x.json"], "default": "chat_final", "models": [...],
    "rules": [{"transcript": "mcp_call", "input_contains": "issues",
    "server_labels": ["github"]}], "seed": 1, "step": 1, "step_delay_ms": 0,
    "mcp_timeout_s": 30, "max_body_bytes": 4194304, "mcp_allowed_hosts": ["localhost"],
    "cors_origins": ["http://localhost:5173"], "keepalive_s": 15, "log_level": "info"}``

    A setting the server cannot use raises `ServeConfigError` naming the file
    and the key; other mistakes raise `TranscriptError`.
    """
    p = Path(path)
    data = read_json_file(p)
    if not isinstance(data, dict):
        raise TranscriptError(f"{p}: a config is a JSON object")
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise TranscriptError(f"{p}: unknown keys {sorted(unknown)}; known: {sorted(_CONFIG_KEYS)}")
    cfg = ServeConfig()
    cfg.transcripts = [
        p.parent / t for t in _strs(data.get("transcripts", []), f"{p}: transcripts")
    ]
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise TranscriptError(f"{p}: rules must be a list of objects")
    for i, r in enumerate(rules):
        where = f"{p}: rules[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("transcript"), str):
            raise TranscriptError(f"{where} must be an object with a 'transcript' name")
        if set(r) - _RULE_KEYS:
            raise TranscriptError(f"{where}: unknown keys {sorted(set(r) - _RULE_KEYS)}")
        for key in ("input_contains", "model"):
            if key in r and not isinstance(r[key], str):
                raise TranscriptError(f"{where}.{key} must be a string")
        cfg.rules.append(
            Rule(
                transcript=r["transcript"],
                input_contains=r.get("input_contains"),
                model=r.get("model"),
                tool_types=_strs(r.get("tool_types", []), f"{where}.tool_types"),
                functions=_strs(r.get("functions", []), f"{where}.functions"),
                server_labels=_strs(r.get("server_labels", []), f"{where}.server_labels"),
            )
        )
    if "default" in data:
        if not isinstance(data["default"], str):
            raise TranscriptError(f"{p}: default must be a transcript name")
        cfg.default = data["default"]
    if "models" in data:
        cfg.models = list(_strs(data["models"], f"{p}: models"))
    for key in ("seed", "step", "step_delay_ms", "mcp_timeout_s", "max_body_bytes"):
        if key in data:
            try:
                setattr(cfg, key, data[key])
            except ServeConfigError as e:
                raise ServeConfigError(f"{p}: {e}") from None
    for key in ("mcp_allowed_hosts", "cors_origins", "keepalive_s", "log_level"):
        if key in data:
            try:
                setattr(cfg, key, data[key])
            except ServeConfigError as e:
                raise ServeConfigError(f"{p}: {e}") from None
    if "vocab" in data:
        if not isinstance(data["vocab"], str):
            raise TranscriptError(f"{p}: vocab must be a path")
        cfg.vocab_path = str(p.parent / data["vocab"])
    return cfg


def _expand(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise TranscriptError(f"{path}: no *.json transcripts in this directory")
            files.extend(found)
        else:
            files.append(path)
    return files


class Corpus:
    """The transcripts a server replays, by name (file stem), in order."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        if not entries:
            raise TranscriptError("the corpus holds no transcript")
        self.entries = list(entries)
        self.by_name: dict[str, Entry] = {}
        for e in self.entries:
            if e.name in self.by_name:
                raise TranscriptError(f"two transcripts are named {e.name!r}")
            self.by_name[e.name] = e

    @classmethod
    def load(cls, paths: Sequence[str | Path], vocab: Vocab) -> Corpus:
        """Files and directories (their *.json, sorted); none: the bundled corpus."""
        files = _expand([Path(p) for p in paths] or [bundled_corpus_dir()])
        return cls([make_entry(f.stem, load_transcript(f), vocab) for f in files])

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str, param: str) -> Entry:
        try:
            return self.by_name[name]
        except KeyError:
            raise RequestError(
                f"Unknown transcript {name!r}; this server has: {', '.join(self.names())}.",
                param=param,
                code="unknown_transcript",
            ) from None

    def best_fit(self, request: ResponsesRequest, segment: int = 0) -> Entry:
        """Among the transcripts whose `segment` complies with the request's `tool_choice`."""
        offered = {_request_tool_key(t) for t in request.tools}
        complying = [
            e
            for e in self.entries
            if segment < len(e.segments)
            and tool_choice_allows(request.tool_choice, e.calls_of(segment))
        ]
        if not complying:
            raise RequestError(
                f"tool_choice {request.tool_choice!r} cannot be honoured: the response must "
                f"{_describe(request.tool_choice)}, and no transcript of this server has such "
                "a response here.",
                param="tool_choice",
                code="tool_choice_unsatisfiable",
            )
        best: Entry | None = None
        best_used = -1
        for e in complying:
            keys = e.tool_keys
            if keys <= offered and len(keys) > best_used:
                best, best_used = e, len(keys)
        return best if best is not None else complying[0]

    def choose(
        self,
        request: ResponsesRequest,
        config: ServeConfig,
        previous: str | None = None,
        segment: int = 0,
    ) -> Entry:
        """The transcript for a request (see the module docstring for the order).

        `segment` is the one the request will be served; `tool_choice` must hold for it.
        """
        entry = self._named(request, config, previous)
        if entry is None:
            return self.best_fit(request, segment)
        if not tool_choice_allows(request.tool_choice, entry.calls_of(segment)):
            raise RequestError(
                f"tool_choice {request.tool_choice!r} cannot be honoured: the response must "
                f"{_describe(request.tool_choice)}, and the one transcript {entry.name!r} "
                f"gives here (segment {segment}) does not.",
                param="tool_choice",
                code="tool_choice_unsatisfiable",
            )
        return entry

    def _named(
        self, request: ResponsesRequest, config: ServeConfig, previous: str | None
    ) -> Entry | None:
        if request.transcript is not None:
            return self.get(request.transcript, "transcript")
        if "transcript" in request.metadata:
            return self.get(request.metadata["transcript"], "metadata.transcript")
        if previous is not None:
            return self.get(previous, "previous_response_id")
        for rule in config.rules:
            if rule.matches(request):
                return self.get(rule.transcript, "rules")
        if config.default is not None:
            return self.get(config.default, "default")
        return None

    def check_config(self, config: ServeConfig) -> None:
        """Every transcript the config names exists (checked once, at start-up)."""
        named = [r.transcript for r in config.rules]
        named += [config.default] if config.default else []
        for name in named:
            if name not in self.by_name:
                raise TranscriptError(
                    f"the config names transcript {name!r}, which is not in the corpus "
                    f"({', '.join(self.names())})"
                )
