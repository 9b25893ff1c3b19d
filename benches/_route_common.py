"""What the whole-route bench scripts (vllm_route.py, sglang_route.py) share.

Those scripts run standalone in a server's virtualenv with ``benches/`` as their
directory, so this module is imported from there (``import _route_common``, after
the script's clock has started: it imports FastAPI) and needs only the standard
library and FastAPI, which both servers have: the server's harness functions it
uses (``parse_sse``, the event loop) are passed in.

Here: the set-up before the server's imports, the corpus turn's tokens and their
text deltas, the bare route (the floor), the in-process ASGI caller, the output
checks of the bare route and of ``/v1/responses``, a case and its CPU timing, the
runner's common part, the untimed check run and the timed rounds, the arguments
and the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import codecs
import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fastapi import FastAPI, Request  # type: ignore[import-not-found]
from fastapi.responses import (  # type: ignore[import-not-found]
    JSONResponse,
    StreamingResponse,
)

END, RETURN, CALL = 200007, 200002, 200012
BARE_PROMPT = [200006, 1428, 200008, 13225, 200007]  # any prompt: the bare route ignores it

ParseSSE = Callable[[bytes], tuple[list[str], list[dict[str, Any]], bool]]


# --------------------------------------------------------------------------- the turn


def prepare(suite: str) -> Path:
    """Before the server's imports: the vocabulary's default place, the suite's
    harness (REPO/`suite`/harness.py) importable; REPO."""
    repo = Path(__file__).resolve().parents[1]
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(repo / ".cache" / "tiktoken"))
    sys.path.insert(0, str(repo / suite))
    return repo


def token_bytes() -> dict[int, bytes]:
    """o200k_base's regular tokens (rank -> bytes), from the vocabulary file."""
    base = Path(os.environ["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken"
    table: dict[int, bytes] = {}
    for line in base.read_text(encoding="ascii").splitlines():
        if line:
            b64, rank = line.split()
            table[int(rank)] = base64.b64decode(b64)
    return table


def text_deltas(
    tokens: list[int], step: int, bytes_of: Callable[[int], bytes], keep: Callable[[int], bool]
) -> list[tuple[list[int], str, bool]]:
    """`step` tokens per output: (ids, text delta, last), the text of the ids `keep`
    keeps (an incomplete UTF-8 sequence held back until it is complete, as the
    servers' detokenizers do)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[tuple[list[int], str, bool]] = []
    for start in range(0, len(tokens), step):
        ids = tokens[start : start + step]
        last = start + step >= len(tokens)
        data = b"".join(bytes_of(t) for t in ids if keep(t))
        out.append((ids, decoder.decode(data, final=last), last))
    return out


T = TypeVar("T", bound="Turn")


@dataclass
class Turn:
    """The request's model turn and what its response must carry."""

    name: str
    tokens: list[int]
    finish_reason: str
    expected: list[dict[str, Any]]  # the rendered messages of this turn
    prompt: str = "Explain the history of the river bridge."

    @classmethod
    def load(cls: type[T], corpus_dir: Path, name: str) -> T:
        """The corpus's last model turn, and the messages it renders (its last ones)."""
        data = json.loads((corpus_dir / f"{name}.json").read_text(encoding="utf-8"))
        turn = [t for t in data["turns"] if "tokens" in t][-1]
        tokens = [int(t) for t in turn["tokens"]]
        n_messages = sum(1 for t in tokens if t in (END, RETURN, CALL))
        return cls(
            name=name,
            tokens=tokens,
            finish_reason=turn.get("finish_reason") or "stop",
            expected=data["expected"][-n_messages:],
        )


def bare_app(
    outputs: Callable[[dict[str, Any]], AsyncIterator[Any]],
    text_of: Callable[[Any], str],
    finish_of: Callable[[Any], Any],
) -> FastAPI:
    """The floor: a minimal FastAPI route (``POST /bare``) that reads the JSON body,
    asks the scripted model for its outputs (`outputs(body)`) and writes one small
    SSE event (``data: {"delta": ...}``) per output; not streaming, one JSON body
    with the text and the finish reason."""
    app = FastAPI()

    @app.post("/bare")  # type: ignore[untyped-decorator]
    async def bare(raw: Request) -> Any:
        body = await raw.json()
        stream = bool(body.get("stream"))
        outs = outputs(body)
        if not stream:
            text, finish = [], None
            async for out in outs:
                text.append(text_of(out))
                finish = finish_of(out)
            return JSONResponse({"text": "".join(text), "finish_reason": finish})

        async def events() -> AsyncIterator[str]:
            async for out in outs:
                yield f"data: {json.dumps({'delta': text_of(out)})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


# --------------------------------------------------------------------------- requests


async def call_asgi(app: Any, path: str, body: dict[str, Any], host: str) -> tuple[int, bytes]:
    """POST `body` to the ASGI `app`; (status, the response body's bytes)."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", host.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": (host, 80),
        "state": {},
    }
    sent = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    status = 0
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    done.set()
    return status, b"".join(chunks)


# --------------------------------------------------------------------------- checks


def item_text(item: dict[str, Any]) -> tuple[str, str]:
    t = str(item.get("type"))
    return t, "".join((c or {}).get("text") or "" for c in item.get("content") or [])


def texts_responses(
    status: int, body: bytes, stream: bool, parse_sse: ParseSSE
) -> list[tuple[str, str]]:
    """A /v1/responses answer's (item type, text) list; AssertionError if the stream
    is not well formed."""
    if status != 200:
        raise AssertionError(f"status {status}: {body[:300]!r}")
    if stream:
        _names, events, _done = parse_sse(body)
        for i, ev in enumerate(events):
            if ev.get("sequence_number") != i:
                raise AssertionError(f"event {i} has sequence_number {ev.get('sequence_number')}")
        final = events[-1]
        if final.get("type") != "response.completed":
            raise AssertionError(f"the stream ends with {final.get('type')}")
        output = final["response"]["output"]
        done = [ev["item"] for ev in events if ev["type"] == "response.output_item.done"]
        if [item_text(x) for x in done] != [item_text(x) for x in output]:
            raise AssertionError("the output_item.done items differ from response.output")
    else:
        output = json.loads(body)["output"]
    return [item_text(x) for x in output]


def check_bare(status: int, body: bytes, stream: bool, want: str, parse_sse: ParseSSE) -> str:
    """'' if the bare route's answer has the text `want`, else what differs."""
    if status != 200:
        return f"status {status}"
    if stream:
        _n, events, _d = parse_sse(body)
        text = "".join(ev["delta"] for ev in events)
    else:
        text = json.loads(body)["text"]
    return "" if text == want else "the streamed text differs from the turn's"


def check_responses(
    status: int, body: bytes, stream: bool, expected: list[dict[str, Any]], parse_sse: ParseSSE
) -> str:
    """'' if a /v1/responses answer has the turn's reasoning and message, else what differs."""
    got = texts_responses(status, body, stream, parse_sse)
    want_items = [("reasoning", expected[0]["text"]), ("message", expected[1]["text"])]
    return "" if got == want_items else f"items {[(t, len(x)) for t, x in got]}"


def channels_problem(expected: list[dict[str, Any]]) -> str:
    channels = [e["channel"] for e in expected]
    if channels != ["analysis", "final"]:
        return f"the turn's messages are {channels}, the checks expect analysis, final"
    return ""


def problem_of(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:300]}"


CHECK_ERRORS = (AssertionError, KeyError, ValueError, IndexError)


# --------------------------------------------------------------------------- the run


@dataclass
class Case:
    """One measured case; a script's subclass names its server (``SERVER``, the
    key's WHO when the plugin is off)."""

    SERVER: ClassVar[str] = "server"

    endpoint: str  # bare | responses | chat
    stream: bool
    plugin: bool
    corpus: str
    step: int  # tokens per output (streaming); 0 = one output (not streaming)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    problem: str = ""
    body_bytes: int = 0

    @property
    def key(self) -> str:
        mode = "stream" if self.stream else "full"
        who = "bare" if self.endpoint == "bare" else ("plugin" if self.plugin else self.SERVER)
        return f"{self.endpoint}/{mode}/{who}/{self.corpus}/{self.step}"

    def record(self, tokens: int) -> dict[str, Any]:
        """The case in the JSON output."""
        return {
            "key": self.key,
            "endpoint": self.endpoint,
            "stream": self.stream,
            "plugin": self.plugin,
            "corpus": self.corpus,
            "step": self.step,
            "tokens": tokens,
            "cpu": self.cpu,
            "wall": self.wall,
            "problem": self.problem,
            "body_bytes": self.body_bytes,
        }


def timed_request(
    case: Case,
    timed: bool,
    run: Callable[[Coroutine[Any, Any, tuple[int, bytes]]], tuple[int, bytes]],
    request: Coroutine[Any, Any, tuple[int, bytes]],
) -> tuple[int, bytes]:
    """`run(request)` after a garbage collection (outside the clock); its process CPU
    time and wall time appended to the case's when `timed`."""
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    status, data = run(request)
    w1, c1 = time.perf_counter(), time.process_time()
    if timed:
        case.cpu.append(c1 - c0)
        case.wall.append(w1 - w0)
    return status, data


class Runner:
    """What both scripts' runners share. A script's subclass sets ``plugin`` (the
    plugin module, or None), ``plugin_name``, ``host`` and ``source`` (the scripted
    model: ``turn``, ``step``, ``calls``) and gives ``route`` (the app and path of a
    case), ``request_body`` and ``run`` (the harness's event loop)."""

    plugin: Any = None
    plugin_name = "plugin"
    host = "bench"
    source: Any

    def route(self, case: Any) -> tuple[Any, str]:
        raise NotImplementedError

    def request_body(self, case: Any, turn: Any) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, request: Coroutine[Any, Any, tuple[int, bytes]]) -> tuple[int, bytes]:
        raise NotImplementedError

    def active(self) -> bool:
        return bool(self.plugin is not None and self.plugin.is_active())

    @contextlib.contextmanager
    def plugin_state(self, on: bool) -> Iterator[None]:
        """The plugin installed (on) or not around a group of requests: installing
        checks the server's seams and builds the plugin's adapters, which takes a
        while."""
        if on and not self.plugin.install():
            raise RuntimeError(f"{self.plugin_name}.install() refused")
        try:
            yield
        finally:
            if on:
                self.plugin.uninstall()

    def once(self, case: Case, turn: Any, timed: bool) -> tuple[int, bytes]:
        """One request (the plugin in the state `case` needs: see plugin_state);
        a garbage collection before it, outside the clock."""
        if case.plugin != self.active():
            raise RuntimeError(f"{case.key}: the plugin is not in the state this case needs")
        app, path = self.route(case)
        body = self.request_body(case, turn)
        source = self.source
        source.turn, source.step, source.calls = turn, max(1, case.step), 0
        request = call_asgi(app, path, body, self.host)
        try:
            return timed_request(case, timed, self.run, request)
        finally:
            source.turn = None


def measure(
    runner: Runner,
    turn: Any,
    cases: Sequence[Case],
    check: Callable[[Case, int, bytes], str],
    max_rounds: int,
    budget: float,
) -> None:
    """Every case once untimed, its output checked (`check`: '' or the problem),
    then the rounds: in each, every case that ran once, plugin off then on or on
    then off, each group's order turned by one, so machine load drifts alike. At
    most `max_rounds`, and as many as fit in `budget` seconds."""
    t0 = time.perf_counter()
    live: list[Case] = []  # the cases whose request ran (a failed check is still timed)
    for on in (False, True):  # untimed: warm-up and the correctness record
        group = [c for c in cases if c.plugin == on]
        if not group:
            continue
        with runner.plugin_state(on):
            for case in group:
                try:
                    status, body = runner.once(case, turn, timed=False)
                except Exception as e:  # a failure is a result to report, not a crash
                    case.problem = f"{type(e).__name__}: {e}"[:400]
                    continue
                case.problem = check(case, status, body)
                case.body_bytes = len(body)
                live.append(case)
    first = time.perf_counter() - t0
    rounds = max(1, min(max_rounds, int(budget / max(first, 1e-9))))
    for r in range(rounds):
        for on in (bool(r % 2), not r % 2):
            group = [c for c in live if c.plugin == on]
            if not group:
                continue
            k = r % len(group)
            with runner.plugin_state(on):
                for case in group[k:] + group[:k]:
                    runner.once(case, turn, timed=True)


def parse_args(steps_help: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--names", required=True, help="comma-separated corpus names")
    ap.add_argument("--steps", default="1,4,16", help=steps_help)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (each case once per round)")
    ap.add_argument(
        "--budget", type=float, default=60.0, help="seconds of rounds per corpus (at most)"
    )
    ap.add_argument("--only", default="", help="run only the cases whose key contains this")
    return ap.parse_args()


def steps_of(args: argparse.Namespace) -> list[int]:
    return [int(s) for s in args.steps.split(",")]


def run_corpora(
    args: argparse.Namespace,
    runner: Runner,
    out: dict[str, Any],
    load: Callable[[Path, str], Turn],
    cases_for: Callable[[str], Sequence[Case]],
    check: Callable[[Case, Any, int, bytes], str],
) -> None:
    """Each corpus of ``--names``: its turn, its cases (those whose key contains
    ``--only``) measured, and their records in ``out["cases"]``."""
    out["cases"] = []
    for name in args.names.split(","):
        turn = load(args.corpus_dir, name)
        cases = [c for c in cases_for(name) if args.only in c.key]

        def check_case(case: Case, status: int, body: bytes, turn: Turn = turn) -> str:
            return check(case, turn, status, body)

        measure(runner, turn, cases, check_case, args.rounds, args.budget)
        out["cases"] += [case.record(len(turn.tokens)) for case in cases]


def header(server: str, version: str, import_seconds: float) -> dict[str, Any]:
    """The JSON output's first keys (the server's version under its name)."""
    import harmony_stream

    return {
        server: version,
        "harmony_stream": harmony_stream.__version__,
        "python": sys.version.split()[0],
        "import_seconds": import_seconds,
    }


def write_result(out: dict[str, Any], close: Callable[[], None]) -> None:
    """The JSON object on stdout: `out` and the load average now (taken before
    `close`, the harness's shutdown)."""
    out["load_after"] = os.getloadavg()
    close()
    sys.stdout.write(json.dumps(out) + "\n")
