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

import asyncio
import gc
import importlib
import logging
import sys
import time
import types
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

START = time.perf_counter()
warnings.filterwarnings("ignore")

import _route_common as common  # noqa: E402

common.prepare("tests_sglang")

import harness  # type: ignore[import-not-found]  # noqa: E402

logging.disable(logging.WARNING)
IMPORT_SECONDS = time.perf_counter() - START

BARE_PROMPT = common.BARE_PROMPT


# --------------------------------------------------------------------------- the model


Chunk = tuple[list[int], str]  # (ids, text delta)
_BYTES: dict[int, bytes] = {}


def _bytes_of(token: int) -> bytes:
    """A regular token's bytes, from o200k_base's vocabulary file (rank -> bytes)."""
    if not _BYTES:
        _BYTES.update(common.token_bytes())
    return _BYTES[token]


def chunks_of(tokens: list[int], step: int) -> list[Chunk]:
    """`step` ids per output, each with its text delta (special tokens skipped, as
    SGLang's detokenizer does by default; an incomplete UTF-8 sequence held back
    until it is complete)."""

    def keep(t: int) -> bool:
        return not harness.ENCODING.is_special_token(t)

    return [(ids, text) for ids, text, _last in common.text_deltas(tokens, step, _bytes_of, keep)]


@dataclass
class Turn(common.Turn):
    """The request's model turn and what its response must carry."""

    chunks: dict[int, list[Chunk]] = field(default_factory=dict)

    def outputs(self, step: int) -> list[Chunk]:
        if step not in self.chunks:
            self.chunks[step] = chunks_of(self.tokens, step)
        return self.chunks[step]


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


def bare_app(manager: Manager) -> Any:
    """The floor: one small SSE event per output, nothing else."""

    def outputs(body: dict[str, Any]) -> AsyncIterator[Any]:
        obj = types.SimpleNamespace(
            rid="bare", input_ids=BARE_PROMPT, stream=bool(body.get("stream"))
        )
        return manager.generate_request(obj)

    return common.bare_app(
        outputs, lambda out: out["text"], lambda out: out["meta_info"]["finish_reason"]
    )


# --------------------------------------------------------------------------- requests


def request_body(endpoint: str, turn: Turn, stream: bool) -> dict[str, Any]:
    if endpoint == "responses":
        return {"model": harness.MODEL, "input": turn.prompt, "stream": stream}
    return {"stream": stream}


# --------------------------------------------------------------------------- checks


def check(case: common.Case, turn: Turn, status: int, body: bytes) -> str:
    """'' if the response carries the turn's messages, else what differs."""
    endpoint, stream, exp = case.endpoint, case.stream, turn.expected
    try:
        if endpoint == "bare":
            plain = [t for t in turn.tokens if not harness.ENCODING.is_special_token(t)]
            want = str(harness.ENCODING.decode(plain))
            return common.check_bare(status, body, stream, want, harness.parse_sse)
        if problem := common.channels_problem(exp):
            return problem
        return common.check_responses(status, body, stream, exp, harness.parse_sse)
    except common.CHECK_ERRORS as e:
        return common.problem_of(e)


# --------------------------------------------------------------------------- the run


class Case(common.Case):
    """endpoint: bare | responses; step: ids per output (streaming), 0 = one output
    (not streaming)."""

    SERVER = "sglang"


def load_plugin() -> Any:
    """harmony_stream.sglang_plugin, or None (with a message) while it does not exist."""
    try:
        return importlib.import_module("harmony_stream.sglang_plugin")
    except ImportError as e:
        sys.stderr.write(f"sglang_route: no plugin cases ({e})\n")
        return None


class Runner(common.Runner):
    plugin_name = "sglang_plugin"
    host = "sglang.bench"

    def __init__(self) -> None:
        self.plugin = load_plugin()
        self.manager = self.source = Manager()
        self.servings: dict[bool, Any] = {}
        for on in (False, True) if self.plugin is not None else (False,):
            with self.plugin_state(on):
                serving = harness.get_serving_for()
            serving.manager.generate_request = types.MethodType(
                lambda _self, *a, **k: self.manager.generate_request(*a, **k), serving.manager
            )
            self.servings[on] = serving.responses
        self.bare = bare_app(self.manager)

    def route(self, case: common.Case) -> tuple[Any, str]:
        if case.endpoint == "bare":
            return self.bare, "/bare"
        app = harness.APP
        app.state.openai_serving_responses = self.servings[case.plugin]
        return app, "/v1/responses"

    def request_body(self, case: common.Case, turn: Turn) -> dict[str, Any]:
        return request_body(case.endpoint, turn, case.stream)

    def run(self, request: Any) -> tuple[int, bytes]:
        return harness.run(request)  # type: ignore[no-any-return]


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
    args = common.parse_args("ids per output (streaming)")
    import sglang  # type: ignore[import-not-found,unused-ignore]

    runner = Runner()
    # What SGLang's /freeze_gc does: the start-up heap is frozen, so a collection
    # no longer walks torch and SGLang (as vLLM's server does after its start-up).
    gc.collect()
    gc.freeze()
    steps = common.steps_of(args)
    out = common.header("sglang", sglang.__version__, IMPORT_SECONDS)
    out["skipped"] = (
        [] if runner.plugin is not None else ["plugin: no harmony_stream.sglang_plugin"]
    )
    plugin = runner.plugin is not None
    common.run_corpora(
        args, runner, out, Turn.load, lambda name: cases_for(name, steps, plugin), check
    )
    common.write_result(out, harness.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
