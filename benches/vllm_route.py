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

import asyncio
import json
import logging
import os
import sys
import time
import types
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

START = time.perf_counter()
warnings.filterwarnings("ignore")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

import _route_common as common  # noqa: E402

common.prepare("tests_vllm")

import harness  # type: ignore[import-not-found]  # noqa: E402
from vllm import SamplingParams  # noqa: E402
from vllm.outputs import CompletionOutput, RequestOutput  # noqa: E402
from vllm.sampling_params import RequestOutputKind  # noqa: E402
from vllm.utils.gc_utils import freeze_gc_heap  # noqa: E402

logging.disable(logging.WARNING)
IMPORT_SECONDS = time.perf_counter() - START

BARE_PROMPT = common.BARE_PROMPT


# --------------------------------------------------------------------------- the engine


_BYTES: dict[int, bytes] = {}


def _bytes_of(token: int) -> bytes:
    if not _BYTES:
        _BYTES.update(common.token_bytes())
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

    def keep(t: int) -> bool:
        return not (skip_special and harness.ENCODING.is_special_token(t))

    return [
        (ids, text, finish if last else None)
        for ids, text, last in common.text_deltas(tokens, step, _bytes_of, keep)
    ]


@dataclass
class Turn(common.Turn):
    """The request's model turn (harness.TurnLike) and what its response must carry."""

    steps: dict[tuple[int, bool], list[Step]] = field(default_factory=dict)

    # harness.TranscriptLike
    @property
    def turns(self) -> list[Turn]:
        return [self]

    responses_tools: tuple[dict[str, Any], ...] = ()
    chat_tools: tuple[dict[str, Any], ...] | None = None

    def outputs(self, step: int, skip_special: bool) -> list[Step]:
        key = (step, skip_special)
        if key not in self.steps:
            self.steps[key] = engine_steps(self.tokens, self.finish_reason, step, skip_special)
        return self.steps[key]


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


def bare_app(engine: Engine) -> Any:
    """The floor: one small SSE event per engine output, nothing else."""

    def outputs(body: dict[str, Any]) -> AsyncIterator[RequestOutput]:
        stream = bool(body.get("stream"))
        params = SamplingParams(
            max_tokens=body.get("max_tokens") or 65536,
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
            skip_special_tokens=False,
        )
        return engine.generate({"prompt_token_ids": BARE_PROMPT}, params, "bare")

    return common.bare_app(
        outputs, lambda out: out.outputs[0].text, lambda out: out.outputs[0].finish_reason
    )


# --------------------------------------------------------------------------- requests


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


def check(case: common.Case, turn: Turn, status: int, body: bytes) -> str:
    """'' if the response carries the turn's messages, else what differs."""
    endpoint, stream, exp = case.endpoint, case.stream, turn.expected
    try:
        if endpoint == "bare":
            want = str(harness.ENCODING.decode(turn.tokens))
            return common.check_bare(status, body, stream, want, harness.parse_sse)
        if problem := common.channels_problem(exp):
            return problem
        if endpoint == "responses":
            return common.check_responses(status, body, stream, exp, harness.parse_sse)
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
    except common.CHECK_ERRORS as e:
        return common.problem_of(e)


# --------------------------------------------------------------------------- the run


class Case(common.Case):
    """endpoint: bare | responses | chat; step: tokens per engine output (streaming),
    0 = one output (not streaming)."""

    SERVER = "vllm"


class Runner(common.Runner):
    plugin_name = "vllm_plugin"
    host = "vllm.bench"

    def __init__(self) -> None:
        from harmony_stream import vllm_plugin

        self.plugin = vllm_plugin
        self.engine = self.source = Engine()
        self.apps: dict[bool, Any] = {}
        for on in (False, True):
            with harness.plugin(on):
                app = harness.get_app()
            app.engine.generate = types.MethodType(
                lambda _self, *a, **k: self.engine.generate(*a, **k), app.engine
            )
            self.apps[on] = app.app
        self.bare = bare_app(self.engine)

    def route(self, case: common.Case) -> tuple[Any, str]:
        app = self.bare if case.endpoint == "bare" else self.apps[case.plugin]
        return app, ENDPOINT_PATH[case.endpoint]

    def request_body(self, case: common.Case, turn: Turn) -> dict[str, Any]:
        return request_body(case.endpoint, turn, case.stream)

    def run(self, request: Any) -> tuple[int, bytes]:
        return harness.run(request)  # type: ignore[no-any-return]


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
    args = common.parse_args("tokens per engine output (streaming)")
    import vllm

    runner = Runner()
    # As vLLM's API server does after its start-up (vllm.utils.gc_utils): the
    # start-up heap is frozen, so a collection no longer walks torch and vLLM.
    freeze_gc_heap()
    steps = common.steps_of(args)
    out = common.header("vllm", vllm.__version__, IMPORT_SECONDS)
    common.run_corpora(args, runner, out, Turn.load, lambda name: cases_for(name, steps), check)
    common.write_result(out, harness.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
