"""The whole SGLang route, timed: one request through SGLang 0.5.23's real FastAPI app.

Runs in the SGLang virtualenv (``make sglang-venv``) with this checkout's wheel
installed there, standalone; it writes one JSON object to stdout. The app is
SGLang's own (``sglang.srt.entrypoints.http_server.app``: its ``/v1/responses``
route, middlewares and ``OpenAIServingResponses``, built by tests_sglang/harness.py
over a scripted tokenizer manager), driven in-process by a minimal ASGI caller
that keeps the response bytes (no HTTP client, no sockets: what is timed is the
server's side).

Metric: the process's CPU time (``time.process_time()``, every thread) for one
whole request, from the ASGI call to the last body byte, divided by the output
tokens (the JSON has the raw seconds; divide by ``tokens``). The request is the
last model turn of a bench corpus (``long_1k``, ``long_12k``: long reasoning,
then a long answer; no tool call, so one model turn), the tokenizer manager
yields ``step`` ids per output when streaming (SGLang's default, cumulative
mode: every id so far, in the manager's own growing list) and one output when
not.

Cases, each measured in the same process and the same rounds (keys
``ENDPOINT/MODE/WHO/CORPUS/STEP``):

* ``bare``: the floor. A minimal FastAPI route (``POST /bare``) that reads the
  JSON body, asks the same scripted tokenizer manager for the same ids and writes
  one small SSE event (``data: {"delta": ...}``) per output; not streaming, one
  JSON body with the text.
* ``sglang``: ``POST /v1/responses`` with harmony-stream's plugin off (SGLang alone).
* ``plugin``: the same with ``harmony_stream.sglang_plugin.install()`` done before
  the request (``uninstall()`` after, both untimed). Skipped, with a message on
  stderr and in the JSON's ``skipped``, while that module does not exist.

The outputs are built before the clock starts (id chunks and their text deltas);
each request only wraps them in SGLang's output dicts and yields, as the
tokenizer manager's wait loop does. Every case is run once untimed and its
output checked (the items' texts against the turn's rendered messages), then the
rounds: in each round every case once (plugin off, then on, or the other way
round, turn by turn), so machine load drifts alike.

    TIKTOKEN_ENCODINGS_BASE=.cache/tiktoken $SGLANG_VENV/bin/python benches/sglang_route.py \\
        --corpus-dir .cache/bench_corpus --names long_1k,long_12k --steps 1,4,16 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import codecs
import contextlib
import gc
import importlib
import json
import logging
import os
import sys
import time
import types
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore")
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(REPO / ".cache" / "tiktoken"))
sys.path.insert(0, str(REPO / "tests_sglang"))

import harness  # type: ignore[import-not-found]  # noqa: E402
from fastapi import FastAPI, Request  # type: ignore[import-not-found]  # noqa: E402
from fastapi.responses import (  # type: ignore[import-not-found]  # noqa: E402
    JSONResponse,
    StreamingResponse,
)

logging.disable(logging.WARNING)
IMPORT_SECONDS = time.perf_counter() - START

END, RETURN, CALL = 200007, 200002, 200012
BARE_PROMPT = [200006, 1428, 200008, 13225, 200007]  # any prompt: the bare route ignores it


# --------------------------------------------------------------------------- the model


Chunk = tuple[list[int], str]  # (ids, text delta)
_BYTES: dict[int, bytes] = {}


def _bytes_of(token: int) -> bytes:
    """A regular token's bytes, from o200k_base's vocabulary file (rank -> bytes)."""
    if not _BYTES:
        base = Path(os.environ["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken"
        for line in base.read_text(encoding="ascii").splitlines():
            if line:
                b64, rank = line.split()
                _BYTES[int(rank)] = base64.b64decode(b64)
    return _BYTES[token]


def chunks_of(tokens: list[int], step: int) -> list[Chunk]:
    """`step` ids per output, each with its text delta (special tokens skipped, as
    SGLang's detokenizer does by default; an incomplete UTF-8 sequence held back
    until it is complete)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[Chunk] = []
    for start in range(0, len(tokens), step):
        ids = tokens[start : start + step]
        last = start + step >= len(tokens)
        data = b"".join(_bytes_of(t) for t in ids if not harness.ENCODING.is_special_token(t))
        out.append((ids, decoder.decode(data, final=last)))
    return out


@dataclass
class Turn:
    """The request's model turn and what its response must carry."""

    name: str
    tokens: list[int]
    finish_reason: str
    expected: list[dict[str, Any]]  # the rendered messages of this turn
    chunks: dict[int, list[Chunk]] = field(default_factory=dict)
    prompt: str = "Explain the history of the river bridge."

    def outputs(self, step: int) -> list[Chunk]:
        if step not in self.chunks:
            self.chunks[step] = chunks_of(self.tokens, step)
        return self.chunks[step]


def load_turn(corpus_dir: Path, name: str) -> Turn:
    """The corpus's last model turn, and the messages it renders (its last ones)."""
    data = json.loads((corpus_dir / f"{name}.json").read_text(encoding="utf-8"))
    turn = [t for t in data["turns"] if "tokens" in t][-1]
    tokens = [int(t) for t in turn["tokens"]]
    n_messages = sum(1 for t in tokens if t in (END, RETURN, CALL))
    return Turn(
        name=name,
        tokens=tokens,
        finish_reason=turn.get("finish_reason") or "stop",
        expected=data["expected"][-n_messages:],
    )


class Manager:
    """The current request's turn and step; `generate_request` replaces the harness
    tokenizer manager's on both serving objects and serves the bare route."""

    def __init__(self) -> None:
        self.turn: Turn | None = None
        self.step = 1
        self.calls = 0

    async def generate_request(self, obj: Any, request: Any = None) -> AsyncIterator[Any]:
        turn = self.turn
        assert turn is not None, "no turn set"
        self.calls += 1
        assert self.calls == 1, "one model turn per request (no tool call in these turns)"
        stream = bool(obj.stream)
        step = self.step if stream else len(turn.tokens)
        chunks = turn.outputs(step)
        n_prompt = len(obj.input_ids)
        state: list[int] = []
        for i, (ids, text) in enumerate(chunks):
            last = i == len(chunks) - 1
            state.extend(ids)
            finish = None
            if last:
                finish = (
                    {"type": "length", "length": len(state)}
                    if turn.finish_reason == "length"
                    else {"type": "stop", "matched": state[-1]}
                )
            meta = {
                "id": obj.rid,
                "finish_reason": finish,
                "prompt_tokens": n_prompt,
                "weight_version": "default",
                "num_retractions": 0,
                "reasoning_tokens": 0,
                "completion_tokens": len(state),
                "cached_tokens": 0,
            }
            yield {"text": text, "output_ids": list(state) if last else state, "meta_info": meta}
            await asyncio.sleep(0)


def bare_app(manager: Manager) -> FastAPI:
    """The floor: one small SSE event per output, nothing else."""
    app = FastAPI()

    @app.post("/bare")  # type: ignore[untyped-decorator]
    async def bare(raw: Request) -> Any:
        body = await raw.json()
        stream = bool(body.get("stream"))
        obj = types.SimpleNamespace(rid="bare", input_ids=BARE_PROMPT, stream=stream)
        outputs = manager.generate_request(obj)
        if not stream:
            text, finish = [], None
            async for out in outputs:
                text.append(out["text"])
                finish = out["meta_info"]["finish_reason"]
            return JSONResponse({"text": "".join(text), "finish_reason": finish})

        async def events() -> AsyncIterator[str]:
            async for out in outputs:
                yield f"data: {json.dumps({'delta': out['text']})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


# --------------------------------------------------------------------------- requests


async def call_asgi(app: Any, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
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
            (b"host", b"sglang.bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("sglang.bench", 80),
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
    parts: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    done.set()
    return status, b"".join(parts)


def request_body(endpoint: str, turn: Turn, stream: bool) -> dict[str, Any]:
    if endpoint == "responses":
        return {"model": harness.MODEL, "input": turn.prompt, "stream": stream}
    return {"stream": stream}


# --------------------------------------------------------------------------- checks


def _item(item: dict[str, Any]) -> tuple[str, str]:
    t = str(item.get("type"))
    return t, "".join((c or {}).get("text") or "" for c in item.get("content") or [])


def _texts_responses(status: int, body: bytes, stream: bool) -> list[tuple[str, str]]:
    if status != 200:
        raise AssertionError(f"status {status}: {body[:300]!r}")
    if stream:
        _names, events, _done = harness.parse_sse(body)
        for i, ev in enumerate(events):
            if ev.get("sequence_number") != i:
                raise AssertionError(f"event {i} has sequence_number {ev.get('sequence_number')}")
        final = events[-1]
        if final.get("type") != "response.completed":
            raise AssertionError(f"the stream ends with {final.get('type')}")
        output = final["response"]["output"]
        done = [ev["item"] for ev in events if ev["type"] == "response.output_item.done"]
        if [_item(x) for x in done] != [_item(x) for x in output]:
            raise AssertionError("the output_item.done items differ from response.output")
    else:
        output = json.loads(body)["output"]
    return [_item(x) for x in output]


def check(endpoint: str, turn: Turn, stream: bool, status: int, body: bytes) -> str:
    """'' if the response carries the turn's messages, else what differs."""
    exp = turn.expected
    channels = [e["channel"] for e in exp]
    try:
        if endpoint == "bare":
            if status != 200:
                return f"status {status}"
            if stream:
                _n, events, _d = harness.parse_sse(body)
                text = "".join(ev["delta"] for ev in events)
            else:
                text = json.loads(body)["text"]
            plain = [t for t in turn.tokens if not harness.ENCODING.is_special_token(t)]
            want = str(harness.ENCODING.decode(plain))
            return "" if text == want else "the streamed text differs from the turn's"
        if channels != ["analysis", "final"]:
            return f"the turn's messages are {channels}, the checks expect analysis, final"
        got = _texts_responses(status, body, stream)
        want_items = [("reasoning", exp[0]["text"]), ("message", exp[1]["text"])]
        return "" if got == want_items else f"items {[(t, len(x)) for t, x in got]}"
    except (AssertionError, KeyError, ValueError, IndexError) as e:
        return f"{type(e).__name__}: {str(e)[:300]}"


# --------------------------------------------------------------------------- the run


@dataclass
class Case:
    endpoint: str  # bare | responses
    stream: bool
    plugin: bool
    corpus: str
    step: int  # ids per output (streaming); 0 = one output (not streaming)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    problem: str = ""
    body_bytes: int = 0

    @property
    def key(self) -> str:
        mode = "stream" if self.stream else "full"
        who = "bare" if self.endpoint == "bare" else ("plugin" if self.plugin else "sglang")
        return f"{self.endpoint}/{mode}/{who}/{self.corpus}/{self.step}"


def load_plugin() -> Any:
    """harmony_stream.sglang_plugin, or None (with a message) while it does not exist."""
    try:
        return importlib.import_module("harmony_stream.sglang_plugin")
    except ImportError as e:
        sys.stderr.write(f"sglang_route: no plugin cases ({e})\n")
        return None


class Runner:
    def __init__(self) -> None:
        self.plugin = load_plugin()
        self.manager = Manager()
        self.servings: dict[bool, Any] = {}
        for on in (False, True) if self.plugin is not None else (False,):
            with self.plugin_state(on):
                serving = harness.get_serving_for()
            serving.manager.generate_request = types.MethodType(
                lambda _self, *a, **k: self.manager.generate_request(*a, **k), serving.manager
            )
            self.servings[on] = serving.responses
        self.bare = bare_app(self.manager)

    def active(self) -> bool:
        return bool(self.plugin is not None and self.plugin.is_active())

    @contextlib.contextmanager
    def plugin_state(self, on: bool) -> Iterator[None]:
        """The plugin installed (on) or not around a group of requests."""
        if on and not self.plugin.install():
            raise RuntimeError("sglang_plugin.install() refused")
        try:
            yield
        finally:
            if on:
                self.plugin.uninstall()

    def once(self, case: Case, turn: Turn, timed: bool) -> tuple[int, bytes]:
        """One request (the plugin in the state `case` needs: see plugin_state);
        a garbage collection before it, outside the clock."""
        if case.plugin != self.active():
            raise RuntimeError(f"{case.key}: the plugin is not in the state this case needs")
        if case.endpoint == "bare":
            app, path = self.bare, "/bare"
        else:
            app, path = harness.APP, "/v1/responses"
            app.state.openai_serving_responses = self.servings[case.plugin]
        body = request_body(case.endpoint, turn, case.stream)
        self.manager.turn, self.manager.step, self.manager.calls = turn, max(1, case.step), 0
        try:
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            status, data = harness.run(call_asgi(app, path, body))
            w1, c1 = time.perf_counter(), time.process_time()
        finally:
            self.manager.turn = None
        if timed:
            case.cpu.append(c1 - c0)
            case.wall.append(w1 - w0)
        return status, data


def cases_for(corpus: str, steps: list[int], plugin: bool) -> list[Case]:
    whos = (False, True) if plugin else (False,)
    out: list[Case] = []
    for step in steps:
        out.append(Case("bare", True, False, corpus, step))
        out += [Case("responses", True, on, corpus, step) for on in whos]
    out.append(Case("bare", False, False, corpus, 0))
    out += [Case("responses", False, on, corpus, 0) for on in whos]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--names", required=True, help="comma-separated corpus names")
    ap.add_argument("--steps", default="1,4,16", help="ids per output (streaming)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (each case once per round)")
    ap.add_argument(
        "--budget", type=float, default=60.0, help="seconds of rounds per corpus (at most)"
    )
    ap.add_argument("--only", default="", help="run only the cases whose key contains this")
    args = ap.parse_args()
    import sglang  # type: ignore[import-not-found,unused-ignore]

    import harmony_stream

    runner = Runner()
    # What SGLang's /freeze_gc does: the start-up heap is frozen, so a collection
    # no longer walks torch and SGLang (as vLLM's server does after its start-up).
    gc.collect()
    gc.freeze()
    steps = [int(s) for s in args.steps.split(",")]
    out: dict[str, Any] = {
        "sglang": sglang.__version__,
        "harmony_stream": harmony_stream.__version__,
        "python": sys.version.split()[0],
        "import_seconds": IMPORT_SECONDS,
        "skipped": [] if runner.plugin is not None else ["plugin: no harmony_stream.sglang_plugin"],
        "cases": [],
    }
    for name in args.names.split(","):
        turn = load_turn(args.corpus_dir, name)
        cases = [c for c in cases_for(name, steps, runner.plugin is not None) if args.only in c.key]
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
                    case.problem = check(case.endpoint, turn, case.stream, status, body)
                    case.body_bytes = len(body)
                    live.append(case)
        first = time.perf_counter() - t0
        rounds = max(1, min(args.rounds, int(args.budget / max(first, 1e-9))))
        for r in range(rounds):
            # Plugin off then on, or on then off; each group's order turned by one.
            for on in (bool(r % 2), not r % 2):
                group = [c for c in live if c.plugin == on]
                if not group:
                    continue
                k = r % len(group)
                with runner.plugin_state(on):
                    for case in group[k:] + group[:k]:
                        runner.once(case, turn, timed=True)
        for case in cases:
            out["cases"].append(
                {
                    "key": case.key,
                    "endpoint": case.endpoint,
                    "stream": case.stream,
                    "plugin": case.plugin,
                    "corpus": case.corpus,
                    "step": case.step,
                    "tokens": len(turn.tokens),
                    "cpu": case.cpu,
                    "wall": case.wall,
                    "problem": case.problem,
                    "body_bytes": case.body_bytes,
                }
            )
    out["load_after"] = os.getloadavg()
    harness.close()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
