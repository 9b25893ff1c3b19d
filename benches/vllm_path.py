"""Baseline (4): vLLM 0.33.0's own Harmony → Responses streaming path, timed.

Runs in the vLLM virtualenv (``make vllm-venv``), whose ``openai_harmony`` is
vLLM's fork: path (4) imports only vLLM and what it installs; path (5) also
the harmony-stream wheel installed there. The bench (benches/test_throughput.py)
starts it as a subprocess and reads one JSON object from stdout.

What is timed per response, as vLLM's serving loop does it (docs/architecture.md, vLLM seam):
``response.created``/``response.in_progress`` from ``ResponsesResponse.from_request``;
per engine step (one token), ``HarmonyParser.process_chunk`` and, per segment,
``emit_content_delta_events`` or ``emit_previous_item_done_events`` +
``reset_for_new_item``; ``flush()`` at the end of each model turn (vLLM starts a
new completion after a tool call); ``response.completed`` with the streamed
items; every event numbered by mutating ``sequence_number`` and written as
``api_router`` writes it (``model_dump_json(indent=None, by_alias=True)``).
Not timed: request parsing, the engine, the tool calls themselves.

With ``--plugin`` it also times the same response with harmony-stream's vLLM
plugin installed (path (5)): per engine step, vLLM's ``HarmonyParser.process_chunk``
(now on the Rust parser: vLLM's tool loop still reads its messages) and the
plugin's engine (``feed`` + the events numbered and written as ``api_router``
does); tool results go to the engine; ``flush()`` per turn; the same envelope,
with the engine's items as the final ``output``.

    TIKTOKEN_ENCODINGS_BASE=.cache/tiktoken $VLLM_VENV/bin/python benches/vllm_path.py \
        --corpus-dir .cache/bench_corpus --names long_1k,long_12k --budget 1.0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

START = time.perf_counter()
warnings.filterwarnings("ignore")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
logging.disable(logging.WARNING)

from openai.types.responses import ResponseOutputItemDoneEvent  # noqa: E402
from vllm import SamplingParams  # noqa: E402
from vllm.entrypoints.openai.responses.protocol import (  # noqa: E402
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseInProgressEvent,
    ResponsesRequest,
    ResponsesResponse,
)
from vllm.entrypoints.openai.responses.streaming_events import (  # noqa: E402
    StreamingState,
    emit_content_delta_events,
    emit_previous_item_done_events,
)
from vllm.parser.harmony import HarmonyParser  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - START


class _Tokenizer:
    """vLLM's parser needs a tokenizer only to decode a broken tail in ``flush()``."""

    def decode(self, ids: list[int], **_kw: Any) -> str:
        return ""


def _item_text(item: Any) -> tuple[str, str]:
    """(type, the text the item carries) of an ``output_item.done`` item."""
    d: dict[str, Any] = item if isinstance(item, dict) else item.model_dump()
    t = str(d.get("type"))
    if t in ("reasoning", "message"):
        return t, "".join((c or {}).get("text") or "" for c in d.get("content") or [])
    if t in ("function_call", "mcp_call"):
        return t, d.get("arguments") or ""
    if t == "code_interpreter_call":
        return t, d.get("code") or ""
    return t, ""


def _open_response(transcript: dict[str, Any], sink: list[str]) -> tuple[Any, Any, Any]:
    """vLLM's request objects, `send` (numbers an event and writes it as
    ``api_router`` does) and response.created/in_progress sent."""
    seq = 0

    def send(ev: Any) -> None:
        nonlocal seq
        ev.sequence_number = seq
        seq += 1
        sink.append(f"event: {ev.type}\ndata: {ev.model_dump_json(indent=None, by_alias=True)}\n\n")

    request = ResponsesRequest(
        input="Hello", model="gpt-oss-120b", stream=True, tools=transcript.get("tools") or []
    )
    params = SamplingParams(max_tokens=transcript.get("max_output_tokens") or 65536)
    initial = ResponsesResponse.from_request(
        request, params, model_name="gpt-oss-120b", created_time=0, output=[], status="in_progress"
    ).model_dump(mode="json", by_alias=True)
    send(ResponseCreatedEvent(type="response.created", sequence_number=-1, response=initial))
    send(ResponseInProgressEvent(type="response.in_progress", sequence_number=-1, response=initial))
    return send, request, params


def run_response(
    transcript: dict[str, Any], sink: list[str], done_items: list[Any] | None = None
) -> None:
    """One whole response through vLLM's path; SSE strings appended to ``sink``."""
    send, request, params = _open_response(transcript, sink)

    # As HarmonyContext gets them from the request: the function tools' names.
    fn_names = frozenset(
        t["name"] for t in transcript.get("tools") or [] if t.get("type") == "function"
    )
    parser = HarmonyParser(_Tokenizer())
    state = StreamingState()
    items: list[Any] = []
    for turn in transcript["turns"]:
        tokens = turn.get("tokens")
        if tokens is None:
            continue  # the tool ran: vLLM appends its output to the prompt
        for i in range(len(tokens)):
            segments = parser.process_chunk(tokens[i : i + 1]).segments
            for seg in segments:
                _segment(seg, state, fn_names, send, items)
        for seg in parser.flush():
            _segment(seg, state, fn_names, send, items)
    final = ResponsesResponse.from_request(
        request, params, model_name="gpt-oss-120b", created_time=0, output=items, status="completed"
    )
    send(ResponseCompletedEvent(type="response.completed", sequence_number=-1, response=final))
    if done_items is not None:
        done_items.extend(items)


def _segment(seg: Any, state: Any, fn_names: Any, send: Any, items: list[Any]) -> None:
    if seg.delta:
        for ev in emit_content_delta_events(seg, state, fn_names):
            send(ev)
    elif seg.completed_message is not None:
        for ev in emit_previous_item_done_events(seg.completed_message, state, fn_names):
            if isinstance(ev, ResponseOutputItemDoneEvent):
                items.append(ev.item)
            send(ev)
        state.reset_for_new_item()


def run_response_plugin(
    transcript: dict[str, Any], sink: list[str], done_items: list[Any] | None = None
) -> None:
    """One whole response as the patched serving loop makes it (plugin installed)."""
    from harmony_stream import ResponseStream, vllm_plugin

    send, request, params = _open_response(transcript, sink)
    engine = vllm_plugin._Engine(
        ResponseStream(
            vllm_plugin._get_vocab(),
            tools=vllm_plugin._engine_tools(request),
            model="gpt-oss-120b",
            max_output_tokens=transcript.get("max_output_tokens"),
        )
    )
    parser = HarmonyParser(_Tokenizer())
    for ev in engine.drain():
        send(ev)
    reason = "stop"
    for turn in transcript["turns"]:
        tokens = turn.get("tokens")
        if tokens is None:
            out = turn.get("tool_output") or {}
            error = out.get("error")
            engine.tool_output(error or out.get("output") or "", error is not None)
            continue
        reason = turn.get("finish_reason") or "stop"
        for i in range(len(tokens)):
            chunk = tokens[i : i + 1]
            parser.process_chunk(chunk)
            engine.feed(chunk)
            for ev in engine.drain():
                send(ev)
        parser.flush()
    for ev in engine.finish(reason):
        send(ev)
    output = _items_adapter().validate_python(engine.output or [])
    final = ResponsesResponse.from_request(
        request,
        params,
        model_name="gpt-oss-120b",
        created_time=0,
        output=output,
        status="completed",
    )
    send(ResponseCompletedEvent(type="response.completed", sequence_number=-1, response=final))
    if done_items is not None:
        done_items.extend(engine.output or [])


_ADAPTER: Any = None


def _items_adapter() -> Any:
    global _ADAPTER
    if _ADAPTER is None:
        from openai.types.responses import ResponseOutputItem
        from pydantic import TypeAdapter

        _ADAPTER = TypeAdapter(list[ResponseOutputItem])
    return _ADAPTER


def measure(
    transcript: dict[str, Any],
    budget: float,
    min_rounds: int,
    max_rounds: int,
    run: Any = run_response,
) -> Any:
    n_tokens = sum(len(t["tokens"]) for t in transcript["turns"] if "tokens" in t)
    # First run: the correctness record (and warm-up).
    sink: list[str] = []
    items: list[Any] = []
    t0 = time.perf_counter()
    run(transcript, sink, items)
    first = time.perf_counter() - t0
    n_events = len(sink)
    sse_bytes = sum(len(s.encode()) for s in sink)
    del sink
    rounds = max(min_rounds, min(max_rounds, int(budget / max(first, 1e-9))))
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(rounds):
        sink = []
        c0, w0 = time.process_time(), time.perf_counter()
        run(transcript, sink)
        w1, c1 = time.perf_counter(), time.process_time()
        walls.append(w1 - w0)
        cpus.append(c1 - c0)
        del sink
    return {
        "tokens": n_tokens,
        "rounds": rounds,
        "wall": walls,
        "cpu": cpus,
        "events": n_events,
        "sse_bytes": sse_bytes,
        "items": [_item_text(it) for it in items],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-dir", type=Path, required=True)
    ap.add_argument("--names", required=True, help="comma-separated corpus names")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed runs per corpus")
    ap.add_argument("--min-rounds", type=int, default=1)
    ap.add_argument("--max-rounds", type=int, default=20)
    ap.add_argument("--plugin", action="store_true", help="also time vLLM with the plugin (5)")
    args = ap.parse_args()
    import vllm

    out: dict[str, Any] = {
        "vllm": vllm.__version__,
        "python": sys.version.split()[0],
        "import_seconds": IMPORT_SECONDS,
        "results": {},
        "errors": {},
    }
    for name in args.names.split(","):
        transcript = json.loads((args.corpus_dir / f"{name}.json").read_text(encoding="utf-8"))
        try:
            out["results"][name] = measure(
                transcript, args.budget, args.min_rounds, args.max_rounds
            )
        except Exception as e:  # a vLLM failure is a result to report, not a crash
            out["errors"][name] = f"{type(e).__name__}: {e}"
    if args.plugin:
        out["plugin_results"], out["plugin_errors"] = {}, {}
        try:
            from harmony_stream import vllm_plugin

            if not vllm_plugin.install():
                raise RuntimeError("vllm_plugin.install() refused")
        except Exception as e:
            out["plugin_errors"]["*"] = f"{type(e).__name__}: {e}"
        else:
            for name in args.names.split(","):
                transcript = json.loads((args.corpus_dir / f"{name}.json").read_text("utf-8"))
                try:
                    out["plugin_results"][name] = measure(
                        transcript,
                        args.budget,
                        args.min_rounds,
                        args.max_rounds,
                        run=run_response_plugin,
                    )
                except Exception as e:
                    out["plugin_errors"][name] = f"{type(e).__name__}: {e}"
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
