"""The whole vLLM route, timed: one request through vLLM 0.33.0's real FastAPI app.

Runs in the vLLM virtualenv (``make vllm-venv``) with this checkout's wheel
installed there; benches/test_route.py starts it as one subprocess and reads one
JSON object from stdout. The app is tests_vllm/harness.py's (vLLM's real routers,
serving classes, renderer and exception handlers; a scripted engine stands in for
the model), driven in-process by a minimal ASGI caller that keeps the response
bytes (no HTTP client, no sockets: what is timed is the server's side).

Metric: the process's CPU time (``time.process_time()``, every thread) for one
whole request, from the ASGI call to the last body byte, divided by the output
tokens. The request is the last model turn of a bench corpus (``long_1k``,
``long_12k``: long reasoning, then a long answer; no tool call, so both endpoints
take the same turn), the engine yields ``step`` tokens per output (DELTA) when
streaming and one output (FINAL_ONLY) when not, as vLLM asks it to.

Cases, each measured in the same process and the same rounds:

* ``bare``: the floor. A minimal FastAPI route (``POST /bare``) that reads the
  JSON body, asks the same scripted engine for the same tokens and writes one
  small SSE event (``data: {"delta": ...}``) per engine output; not streaming, one
  JSON body with the text.
* ``responses`` / ``chat``: ``POST /v1/responses`` and ``POST /v1/chat/completions``
  with harmony-stream's plugin off (vLLM alone) and on (``vllm_plugin.install()``
  before the request, ``uninstall()`` after it, both untimed).

The engine's outputs are built before the clock starts (token ids and the
detokenized text of each step, as vLLM's detokenizer would have them); each
request only wraps them in vLLM's ``RequestOutput`` and yields, as an engine
client's output queue does. Every case is run once untimed and its output
checked (the items' texts against the turn's rendered messages), then the
rounds: in each round every case once (the plugin-off cases, then the plugin-on
ones with the plugin installed once for them, or the other way round, turn by
turn), so machine load drifts alike.

    TIKTOKEN_ENCODINGS_BASE=.cache/tiktoken $VLLM_VENV/bin/python benches/vllm_route.py \
        --corpus-dir .cache/bench_corpus --names long_1k,long_12k --steps 1,4,16 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import codecs
import contextlib
import gc
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
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", str(REPO / ".cache" / "tiktoken"))
sys.path.insert(0, str(REPO / "tests_vllm"))

import harness  # type: ignore[import-not-found]  # noqa: E402
from fastapi import FastAPI, Request  # type: ignore[import-not-found]  # noqa: E402
from fastapi.responses import (  # type: ignore[import-not-found]  # noqa: E402
    JSONResponse,
    StreamingResponse,
)
from vllm import SamplingParams  # noqa: E402
from vllm.outputs import CompletionOutput, RequestOutput  # noqa: E402
from vllm.sampling_params import RequestOutputKind  # noqa: E402
from vllm.utils.gc_utils import freeze_gc_heap  # noqa: E402

logging.disable(logging.WARNING)
IMPORT_SECONDS = time.perf_counter() - START

END, RETURN, CALL = 200007, 200002, 200012
BARE_PROMPT = [200006, 1428, 200008, 13225, 200007]  # any prompt: the bare route ignores it


# --------------------------------------------------------------------------- the engine


def _token_bytes() -> dict[int, bytes]:
    """o200k_base's regular tokens (rank -> bytes), from the vocabulary file."""
    base = Path(os.environ["TIKTOKEN_ENCODINGS_BASE"]) / "o200k_base.tiktoken"
    table: dict[int, bytes] = {}
    for line in base.read_text(encoding="ascii").splitlines():
        if line:
            b64, rank = line.split()
            table[int(rank)] = base64.b64decode(b64)
    return table


_BYTES: dict[int, bytes] = {}


def _bytes_of(token: int) -> bytes:
    if not _BYTES:
        _BYTES.update(_token_bytes())
    b = _BYTES.get(token)
    if b is None:  # a special token: its text
        b = str(harness.ENCODING.decode([token])).encode()
        _BYTES[token] = b
    return b


Step = tuple[list[int], str, str | None]  # (token ids, text, finish reason)


def engine_steps(tokens: list[int], finish: str, step: int, skip_special: bool) -> list[Step]:
    """What the engine yields for one turn: `step` tokens per output, each with its
    text delta (an incomplete UTF-8 sequence held back until it is complete, as
    vLLM's detokenizer does); `step >= len(tokens)`: one output (FINAL_ONLY)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out: list[Step] = []
    for start in range(0, len(tokens), step):
        ids = tokens[start : start + step]
        last = start + step >= len(tokens)
        data = b"".join(
            _bytes_of(t) for t in ids if not (skip_special and harness.ENCODING.is_special_token(t))
        )
        out.append((ids, decoder.decode(data, final=last), finish if last else None))
    return out


@dataclass
class Turn:
    """The request's model turn (harness.TurnLike) and what its response must carry."""

    name: str
    tokens: list[int]
    finish_reason: str
    expected: list[dict[str, Any]]  # the rendered messages of this turn
    steps: dict[tuple[int, bool], list[Step]] = field(default_factory=dict)

    # harness.TranscriptLike
    @property
    def turns(self) -> list[Turn]:
        return [self]

    responses_tools: tuple[dict[str, Any], ...] = ()
    chat_tools: tuple[dict[str, Any], ...] | None = None
    prompt: str = "Explain the history of the river bridge."

    def outputs(self, step: int, skip_special: bool) -> list[Step]:
        key = (step, skip_special)
        if key not in self.steps:
            self.steps[key] = engine_steps(self.tokens, self.finish_reason, step, skip_special)
        return self.steps[key]


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


class Engine:
    """The current request's turn and step; ``generate`` replaces harness.ScriptedEngine's
    on both apps' engine and serves the bare route."""

    def __init__(self) -> None:
        self.turn: Turn | None = None
        self.step = 1
        self.calls = 0

    async def generate(
        self, engine_input: Any, sampling_params: Any, request_id: str, **_: Any
    ) -> AsyncIterator[RequestOutput]:
        turn = self.turn
        assert turn is not None, "no turn set"
        self.calls += 1
        assert self.calls == 1, "one model turn per request (no tool call in these turns)"
        prompt_ids = list(engine_input["prompt_token_ids"])
        kind = sampling_params.output_kind
        if kind == RequestOutputKind.CUMULATIVE:
            raise AssertionError("the serving routes ask for DELTA or FINAL_ONLY")
        step = len(turn.tokens) if kind == RequestOutputKind.FINAL_ONLY else self.step
        skip = bool(getattr(sampling_params, "skip_special_tokens", False))
        for ids, text, finish in turn.outputs(step, skip):
            yield RequestOutput(
                request_id=request_id,
                prompt=None,
                prompt_token_ids=prompt_ids,
                prompt_logprobs=None,
                outputs=[
                    CompletionOutput(
                        index=0,
                        text=text,
                        token_ids=ids,
                        cumulative_logprob=None,
                        logprobs=None,
                        finish_reason=finish,
                        stop_reason=None,
                    )
                ],
                finished=finish is not None,
                num_cached_tokens=0,
            )
            await asyncio.sleep(0)


def bare_app(engine: Engine) -> FastAPI:
    """The floor: one small SSE event per engine output, nothing else."""
    app = FastAPI()

    @app.post("/bare")  # type: ignore[untyped-decorator]
    async def bare(raw: Request) -> Any:
        body = await raw.json()
        stream = bool(body.get("stream"))
        params = SamplingParams(
            max_tokens=body.get("max_tokens") or 65536,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
            skip_special_tokens=False,
        )
        outputs = engine.generate({"prompt_token_ids": BARE_PROMPT}, params, "bare")
        if not stream:
            text, finish = [], None
            async for out in outputs:
                text.append(out.outputs[0].text)
                finish = out.outputs[0].finish_reason
            return JSONResponse({"text": "".join(text), "finish_reason": finish})

        async def events() -> AsyncIterator[str]:
            async for out in outputs:
                yield f"data: {json.dumps({'delta': out.outputs[0].text})}\n\n"

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
            (b"host", b"vllm.bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("vllm.bench", 80),
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


ENDPOINT_PATH = {"responses": "/v1/responses", "chat": "/v1/chat/completions", "bare": "/bare"}


def request_body(endpoint: str, turn: Turn, stream: bool) -> dict[str, Any]:
    if endpoint == "responses":
        return {"model": harness.MODEL, "input": turn.prompt, "stream": stream}
    if endpoint == "chat":
        return {
            "model": harness.MODEL,
            "messages": [{"role": "user", "content": turn.prompt}],
            "stream": stream,
        }
    return {"stream": stream}


# --------------------------------------------------------------------------- checks


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


def _item(item: dict[str, Any]) -> tuple[str, str]:
    t = str(item.get("type"))
    return t, "".join((c or {}).get("text") or "" for c in item.get("content") or [])


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
            want = str(harness.ENCODING.decode(turn.tokens))
            return "" if text == want else "the streamed text differs from the turn's"
        if channels != ["analysis", "final"]:
            return f"the turn's messages are {channels}, the checks expect analysis, final"
        if endpoint == "responses":
            got = _texts_responses(status, body, stream)
            want_items = [("reasoning", exp[0]["text"]), ("message", exp[1]["text"])]
            return "" if got == want_items else f"items {[(t, len(x)) for t, x in got]}"
        if status != 200:
            return f"status {status}: {body[:300]!r}"
        names, events, done = harness.parse_sse(body) if stream else ([], [], False)
        result = harness.Result(200, body, stream, events, names, done, None, None, [])
        if not stream:
            result.json = json.loads(body)
        out = harness.ChatOutput.from_result(result)
        if stream and not done:
            return "no data: [DONE]"
        if (out.reasoning, out.content) != (exp[0]["text"], exp[1]["text"]):
            return (
                f"reasoning {len(out.reasoning or '')} chars (want {len(exp[0]['text'])}), "
                f"content {len(out.content or '')} chars (want {len(exp[1]['text'])})"
            )
        return ""
    except (AssertionError, KeyError, ValueError, IndexError) as e:
        return f"{type(e).__name__}: {str(e)[:300]}"


# --------------------------------------------------------------------------- the run


@dataclass
class Case:
    endpoint: str  # bare | responses | chat
    stream: bool
    plugin: bool
    corpus: str
    step: int  # tokens per engine output (streaming); 0 = one output (not streaming)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    problem: str = ""
    body_bytes: int = 0

    @property
    def key(self) -> str:
        mode = "stream" if self.stream else "full"
        who = "bare" if self.endpoint == "bare" else ("plugin" if self.plugin else "vllm")
        return f"{self.endpoint}/{mode}/{who}/{self.corpus}/{self.step}"


class Runner:
    def __init__(self) -> None:
        from harmony_stream import vllm_plugin

        self.plugin = vllm_plugin
        self.engine = Engine()
        self.apps: dict[bool, Any] = {}
        for on in (False, True):
            with harness.plugin(on):
                app = harness.get_app()
            app.engine.generate = types.MethodType(
                lambda _self, *a, **k: self.engine.generate(*a, **k), app.engine
            )
            self.apps[on] = app.app
        self.bare = bare_app(self.engine)

    @contextlib.contextmanager
    def plugin_state(self, on: bool) -> Iterator[None]:
        """The plugin installed (on) or not around a group of requests: installing
        checks every seam and builds the plugin's adapters, which takes a while."""
        if on and not self.plugin.install():
            raise RuntimeError("vllm_plugin.install() refused")
        try:
            yield
        finally:
            if on:
                self.plugin.uninstall()

    def once(self, case: Case, turn: Turn, timed: bool) -> tuple[int, bytes]:
        """One request (the plugin in the state `case` needs: see plugin_state);
        a garbage collection before it, outside the clock."""
        if case.plugin != self.plugin.is_active():
            raise RuntimeError(f"{case.key}: the plugin is not in the state this case needs")
        app = self.bare if case.endpoint == "bare" else self.apps[case.plugin]
        body = request_body(case.endpoint, turn, case.stream)
        self.engine.turn, self.engine.step, self.engine.calls = turn, max(1, case.step), 0
        try:
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            status, data = harness.run(call_asgi(app, ENDPOINT_PATH[case.endpoint], body))
            w1, c1 = time.perf_counter(), time.process_time()
        finally:
            self.engine.turn = None
        if timed:
            case.cpu.append(c1 - c0)
            case.wall.append(w1 - w0)
        return status, data


def cases_for(corpus: str, steps: list[int]) -> list[Case]:
    out: list[Case] = []
    for step in steps:
        out.append(Case("bare", True, False, corpus, step))
        for endpoint in ("responses", "chat"):
            for plugin in (False, True):
                out.append(Case(endpoint, True, plugin, corpus, step))
    out.append(Case("bare", False, False, corpus, 0))
    for endpoint in ("responses", "chat"):
        for plugin in (False, True):
            out.append(Case(endpoint, False, plugin, corpus, 0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--names", required=True, help="comma-separated corpus names")
    ap.add_argument("--steps", default="1,4,16", help="tokens per engine output (streaming)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (each case once per round)")
    ap.add_argument(
        "--budget", type=float, default=60.0, help="seconds of rounds per corpus (at most)"
    )
    ap.add_argument("--only", default="", help="run only the cases whose key contains this")
    args = ap.parse_args()
    import vllm

    import harmony_stream

    runner = Runner()
    # As vLLM's API server does after its start-up (vllm.utils.gc_utils): the
    # start-up heap is frozen, so a collection no longer walks torch and vLLM.
    freeze_gc_heap()
    steps = [int(s) for s in args.steps.split(",")]
    out: dict[str, Any] = {
        "vllm": vllm.__version__,
        "harmony_stream": harmony_stream.__version__,
        "python": sys.version.split()[0],
        "import_seconds": IMPORT_SECONDS,
        "cases": [],
    }
    for name in args.names.split(","):
        turn = load_turn(args.corpus_dir, name)
        cases = [c for c in cases_for(name, steps) if args.only in c.key]
        t0 = time.perf_counter()
        live: list[Case] = []  # the cases whose request ran (a failed check is still timed)
        for on in (False, True):  # untimed: warm-up and the correctness record
            with runner.plugin_state(on):
                for case in (c for c in cases if c.plugin == on):
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
                k = r % len(group) if group else 0
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
