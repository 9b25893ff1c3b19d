"""/v1/responses for gpt-oss through SGLang 0.5.23's real serving code, plugin off vs on.

The model is the corpus of the vLLM suite (tests_vllm/corpus.py), replayed by
the harness's scripted tokenizer manager through SGLang's own FastAPI app,
``OpenAIServingResponses`` and tool loop (real MCP servers behind a tool
server). With the plugin on, every stream must be valid by the project's whole
event contract (``stream_checks.validate_stream``, run with the project's
openai-python, see :func:`test_every_stream_meets_the_event_contract`), keep
every character of the model's messages, and agree with the non-streamed
response; each intentional difference from SGLang alone has its own test below,
which also shows SGLang's behaviour with the plugin off (so a test fails if
SGLang stops behaving that way, or if the plugin stops fixing it):

* D1 usage: SGLang's streamed usage is all zeros, its non-streamed
  ``input_tokens`` 0; the plugin reports the tokenizer manager's ``meta_info``
  (prompt, completion and cached tokens, summed over the turns of a tool loop);
* D2 model quirks openai-harmony rejects: SGLang's stream raises mid-way (no
  terminal event) or loses text; the plugin recovers them (lenient parsing);
* D3 a function call on the ``analysis`` channel: a ``reasoning`` item in
  SGLang; a ``function_call`` with the plugin;
* D4 request tools of type ``mcp``: SGLang sends no ``mcp_*`` event; the
  plugin streams an ``mcp_call`` that fails with the reason (SGLang runs no
  MCP tool of the request);
* D5 built-in browser/python calls: SGLang closes the item before the tool ran,
  never streams its output, and its streaming context crashes on the second
  turn; the plugin closes the item after the tool ran, with its output, and
  the tool loop goes on;
* D6 the item ``max_output_tokens`` cut: ``incomplete`` with the plugin.

Representation rules (spelling, not content), applied where stated:

* R1 SGLang's envelope response carries fields openai-python does not know
  (``store``): removed before the strict checks, as for vLLM;
* R2 SGLang's response model is built on openai-python 2.8.0's types, older
  than the contract: in a non-streamed (or stored) response a failed MCP call's
  ``error`` is the error's text, a browser action's missing URL, query or
  pattern is ``""`` and ``find_in_page`` is ``find``,
  and a browser call cut before it ran is ``failed`` (not ``incomplete``); the
  stream (and its terminal response) carries the engine's items as they are.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import corpus
import harness
import pytest
from stream_checks import loose
from stream_checks.common import streamed_items

# A response SGLang's pydantic model cannot serialize as its types declare it warns;
# here that fails the test (R2 must cover every item the engine makes).
pytestmark = pytest.mark.filterwarnings("error::UserWarning:pydantic.main")

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = frozenset(harness.TERMINAL)
BUILTIN_TOOL_TYPES = frozenset({"web_search", "web_search_preview", "code_interpreter"})
ENTRIES = list(corpus.CORPUS)
IDS = [e.name for e in ENTRIES]

_cache: dict[tuple[str, bool, bool, int, bool], harness.Result] = {}


def needs_tools(entry: corpus.Entry) -> bool:
    """A transcript with a browser/python call or a built-in request tool needs
    SGLang's tool server (it refuses web_search without a browser)."""
    return any(corpus.builtin_call(t) for t in entry.turns) or any(
        t.get("type") in BUILTIN_TOOL_TYPES for t in entry.responses_tools
    )


def run(
    entry: corpus.Entry,
    *,
    on: bool,
    stream: bool,
    tools: Any,
    step: int = 1,
    incremental: bool = False,
) -> harness.Result:
    key = (entry.name, on, stream, step, incremental)
    if key not in _cache:
        with harness.plugin(on):
            _cache[key] = harness.responses(
                entry,
                stream=stream,
                step=step,
                incremental=incremental,
                tool_server=tools if needs_tools(entry) else None,
            )
    return _cache[key]


@pytest.fixture
def tools(streaming_tool_server: Any) -> Any:
    return streaming_tool_server


def terminal(r: harness.Result) -> dict[str, Any]:
    assert r.events, f"no events: {r.status_code} {r.body[:300]!r} {r.app_error}"
    last = r.events[-1]
    assert last["type"] in TERMINAL, f"the stream ends with {last['type']}: {r.app_error}"
    return last["response"]  # type: ignore[no-any-return]


def all_text(value: Any) -> str:
    """Every string in an item tree, joined (texts, arguments, code, outputs)."""
    if isinstance(value, str):
        return value + "\n"
    if isinstance(value, dict):
        return "".join(all_text(v) for v in value.values())
    if isinstance(value, list):
        return "".join(all_text(v) for v in value)
    return ""


def without_ids(value: Any) -> Any:
    """Ids (the engine makes new ones per response) replaced by their kind's prefix."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("id", "item_id", "call_id", "container_id") and isinstance(v, str):
                out[k] = v.split("_", 1)[0]
            else:
                out[k] = without_ids(v)
        return out
    if isinstance(value, list):
        return [without_ids(v) for v in value]
    return value


def without_nulls(value: Any) -> Any:
    """A key whose value is null is the same as an absent key (openai-python reads
    both as None)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def r2(item: dict[str, Any]) -> dict[str, Any]:
    """R2: an engine item as SGLang's openai-python 2.8.0 types write it."""
    item = dict(item)
    error = item.get("error")
    if item.get("type") == "mcp_call" and isinstance(error, dict):
        item["error"] = "".join(p.get("text", "") for p in error.get("content") or ())
    action = item.get("action")
    needed = {"search": ("query",), "open_page": ("url",), "find_in_page": ("url", "pattern")}
    if isinstance(action, dict):
        strings = needed.get(action.get("type", ""), ())
        action = {**action, **{k: "" for k in strings if action.get(k) is None}}
        if action.get("type") == "find_in_page":
            action["type"] = "find"
        item["action"] = action
    if item.get("type") == "web_search_call" and item.get("status") == "incomplete":
        item["status"] = "failed"
    return dict(without_nulls(item))


def loose_checks(r: harness.Result) -> dict[str, Any]:
    assert r.status_code == 200, r.body[:500]
    assert r.app_error is None, r.app_error
    final = terminal(r)
    loose.check_stack(r.events)
    loose.check_output_indices(r.events)
    done = streamed_items(r.events)
    assert without_ids(done) == without_ids(final["output"]), "stream items != terminal output"
    return final


# --- every stream -----------------------------------------------------------------


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
@pytest.mark.parametrize("step", [1, 3, 16])
@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_every_stream_is_whole_and_keeps_every_character(
    entry: corpus.Entry, step: int, incremental: bool, tools: Any
) -> None:
    """Plugin on: 200, a terminal event, items paired and indexed, the terminal
    output is the streamed items, and every message's content (read from the
    tokens alone, quirks included) is in the items."""
    r = run(entry, on=True, stream=True, tools=tools, step=step, incremental=incremental)
    loose_checks(r)
    assert_every_character_kept(entry, r)


def assert_every_character_kept(entry: corpus.Entry, r: harness.Result) -> None:
    """Every message's content, in the turns the model was asked for (SGLang runs
    no tool after an MCP call, so the response ends there), is in the items'
    text; a browser call's arguments are kept as its action (the query or
    pattern: the Responses API has no room for the rest, see README "Responses
    events")."""
    text = all_text(terminal(r)["output"])
    served = tuple(t for turn in entry.turns[: len(r.calls)] for t in turn.tokens)
    for header, content in corpus.message_contents(served):
        if "to=browser." in header:
            args = json.loads(content)
            for key in ("query", "pattern"):
                if key in args:
                    assert str(args[key]) in text, (header, key)
            continue
        assert content in text, (header, content)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_stream_and_not_streamed_agree(entry: corpus.Entry, tools: Any) -> None:
    """Plugin on: the non-streamed response has the streamed items (R2), status
    and usage; the incremental and cumulative streams give the same items."""
    streamed = run(entry, on=True, stream=True, tools=tools)
    incremental = run(entry, on=True, stream=True, tools=tools, step=3, incremental=True)
    plain = run(entry, on=True, stream=False, tools=tools)
    assert plain.status_code == 200, plain.body[:500]
    assert plain.json is not None
    final = terminal(streamed)
    assert [without_ids(r2(i)) for i in final["output"]] == [
        without_ids(r2(i)) for i in plain.json["output"]
    ]
    assert final["status"] == plain.json["status"]
    assert final["usage"] == plain.json["usage"]
    assert without_ids(terminal(incremental)["output"]) == without_ids(final["output"])


def _strict_problems(streams: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """`python -m stream_checks` with the project's own virtualenv (its
    openai-python is the one the event contract is written against)."""
    python = os.environ.get("HS_DEV_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
    assert Path(python).exists(), (
        f"{python} is missing: the strict checks run with the project's virtualenv "
        "(`make install`), or set HS_DEV_PYTHON"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(streams, f)
    try:
        done = subprocess.run(
            [python, "-m", "stream_checks", f.name],
            cwd=ROOT / "tests",
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        os.unlink(f.name)
    assert done.returncode == 0, done.stderr
    problems: dict[str, str] = json.loads(done.stdout)
    return problems


def test_every_stream_meets_the_event_contract(tools: Any) -> None:
    """Plugin on, every corpus entry, 1 and 3 tokens a step, both streaming
    modes: the whole event contract (R1), checked by the project's own
    openai-python (SGLang's 2.8.0 is older than the contract)."""
    streams: dict[str, list[dict[str, Any]]] = {}
    for entry in ENTRIES:
        for step, incremental in ((1, False), (3, True)):
            r = run(entry, on=True, stream=True, tools=tools, step=step, incremental=incremental)
            streams[f"{entry.name} step={step} incremental={incremental}"] = r.events
    assert _strict_problems(streams) == {}


def test_the_strict_checks_see_a_broken_stream(tools: Any) -> None:
    """The cross-virtualenv check is not vacuous: a stream with one delta lost fails."""
    r = run(corpus.BY_NAME["reasoning_final"], on=True, stream=True, tools=tools)
    events = r.events
    n = next(i for i, e in enumerate(events) if e["type"].endswith(".delta"))
    broken = copy.deepcopy(events[:n] + events[n + 1 :])
    for i, e in enumerate(broken):
        e["sequence_number"] = i
    problems = _strict_problems({"good": events, "broken": broken})
    assert list(problems) == ["broken"]


# --- D1 usage ------------------------------------------------------------------------


def _meta_usage(r: harness.Result) -> tuple[int, int, int]:
    """What SGLang's tokenizer manager reported: each turn's last meta_info, summed."""
    prompt = completion = cached = 0
    for call in r.calls:
        meta = call.outputs[-1]["meta_info"]
        prompt += meta["prompt_tokens"]
        completion += meta["completion_tokens"]
        cached += meta.get("cached_tokens") or 0
    return prompt, completion, cached


@pytest.mark.parametrize("name", ["reasoning_final", "preamble_function_call", "python_call"])
def test_d1_usage_is_the_tokenizer_managers(name: str, tools: Any) -> None:
    entry = corpus.BY_NAME[name]
    off_stream = run(entry, on=False, stream=True, tools=tools)
    off_plain = run(entry, on=False, stream=False, tools=tools)
    if off_stream.events and off_stream.events[-1]["type"] in TERMINAL:
        usage = terminal(off_stream)["usage"]
        assert (usage["input_tokens"], usage["output_tokens"]) == (0, 0)
    if off_plain.json is not None and "usage" in off_plain.json:
        assert off_plain.json["usage"]["input_tokens"] == 0
    for stream in (True, False):
        r = run(entry, on=True, stream=stream, tools=tools)
        usage = (terminal(r) if stream else r.json or {})["usage"]
        prompt, completion, cached = _meta_usage(r)
        assert prompt == sum(len(c.input_ids) for c in r.calls)
        assert usage["input_tokens"] == prompt
        assert usage["output_tokens"] == completion
        assert usage["total_tokens"] == prompt + completion
        assert usage["input_tokens_details"]["cached_tokens"] == cached
        assert 0 < usage["output_tokens_details"]["reasoning_tokens"] <= completion


# --- D2 quirks -----------------------------------------------------------------------


QUIRKS = [e for e in ENTRIES if e.quirk]


@pytest.mark.parametrize("entry", QUIRKS, ids=[e.name for e in QUIRKS])
def test_d2_quirks_are_recovered(entry: corpus.Entry, tools: Any) -> None:
    """SGLang alone: the stream stops without a terminal event, or loses text;
    the plugin: whole stream, no text lost (checked for every entry above)."""
    off = run(entry, on=False, stream=True, tools=tools)
    on = run(entry, on=True, stream=True, tools=tools)
    contents = [c for _, c in corpus.message_contents(entry.tokens) if c]
    whole = bool(off.events) and off.events[-1]["type"] in TERMINAL
    kept = whole and all(c in all_text(off.events[-1]["response"]["output"]) for c in contents)
    assert_every_character_kept(entry, on)
    if entry.name in SGLANG_KEEPS:
        assert kept, f"SGLang alone now fails {entry.name}: update SGLANG_KEEPS"
    else:
        assert not kept, f"SGLang alone now handles {entry.name}: update SGLANG_KEEPS"


# Quirks SGLang alone gets through with every character (observed on 0.5.23).
SGLANG_KEEPS = frozenset(
    {
        "quirk_cut_in_header",
        "quirk_constrain_glued",
        "quirk_final_constrain_json",
        "quirk_function_on_analysis",  # its text, as the wrong item (D3)
    }
)


# --- D3 function call on the analysis channel -----------------------------------------


def test_d3_function_call_on_analysis_is_a_function_call(tools: Any) -> None:
    entry = corpus.BY_NAME["quirk_function_on_analysis"]
    off = run(entry, on=False, stream=False, tools=tools)
    on = run(entry, on=True, stream=False, tools=tools)
    assert off.json is not None
    assert on.json is not None
    off_types = [i["type"] for i in off.json["output"]]
    assert "function_call" not in off_types
    assert "reasoning" in off_types
    calls = [i for i in on.json["output"] if i["type"] == "function_call"]
    assert [c["name"] for c in calls] == ["get_weather"]


# --- D4 mcp request tools -------------------------------------------------------------


def test_d4_mcp_request_tools_become_failed_mcp_calls(tools: Any) -> None:
    entry = corpus.BY_NAME["container_exec"]
    assert any(t.get("type") == "mcp" for t in entry.responses_tools)
    off = run(entry, on=False, stream=True, tools=tools)
    assert not any(e["type"].startswith("response.mcp_") for e in off.events)
    on = run(entry, on=True, stream=True, tools=tools)
    types = [e["type"] for e in on.events]
    assert "response.mcp_call.failed" in types
    (call,) = [i for i in terminal(on)["output"] if i["type"] == "mcp_call"]
    assert (call["server_label"], call["name"]) == ("container", "exec")
    assert "finished before the tool result arrived" in all_text(call["error"])


# --- D5 built-in tools ----------------------------------------------------------------


# Transcripts whose calls SGLang runs (browser, python; it has no container tool).
BUILTIN = [
    e
    for e in ENTRIES
    if (calls := [c for t in e.turns if (c := corpus.builtin_call(t))])
    and all(c.server in ("browser", "python") for c in calls)
]


@pytest.mark.parametrize("entry", BUILTIN, ids=[e.name for e in BUILTIN])
def test_d5_builtin_calls_close_after_the_tool_ran(entry: corpus.Entry, tools: Any) -> None:
    on = run(entry, on=True, stream=True, tools=tools)
    final = terminal(on)
    assert final["status"] == "completed"
    tool_calls = [n for what, n in on.timeline if what == "tool"]
    runs_here = [
        c
        for t in entry.turns
        if (c := corpus.builtin_call(t)) and c.server in ("browser", "python")
    ]
    assert len(tool_calls) == len(runs_here)
    # Each browser/python item is closed after its tool ran, with the tool's output.
    order = [(what, name) for what, name in on.timeline]
    closes = [
        i
        for i, (what, name) in enumerate(order)
        if what == "event"
        and name
        in ("response.web_search_call.completed", "response.code_interpreter_call.completed")
    ]
    tools_at = [i for i, (what, _) in enumerate(order) if what == "tool"]
    assert len(closes) == len(runs_here)
    for close, ran in zip(closes, tools_at, strict=True):
        assert ran < close
    # The next turn's prompt carries the tool's answer and the model's turn before it.
    assert len(on.calls) == len(entry.turns)
    for before, after in zip(on.calls, on.calls[1:], strict=False):
        assert after.input_ids[: len(before.input_ids)] == before.input_ids
    off = run(entry, on=False, stream=True, tools=tools)
    off_whole = bool(off.events) and off.events[-1]["type"] in TERMINAL
    off_closes = [
        i
        for i, (what, name) in enumerate(off.timeline)
        if what == "event" and name.endswith("_call.completed")
    ]
    off_tools = [i for i, (what, _) in enumerate(off.timeline) if what == "tool"]
    early = bool(off_closes) and bool(off_tools) and off_closes[0] < off_tools[0]
    assert early or not off_whole, "SGLang alone now closes the call after the tool ran"


def test_d5_python_output_is_streamed(tools: Any) -> None:
    entry = corpus.BY_NAME["python_call"]
    on = run(entry, on=True, stream=True, tools=tools)
    (item,) = [i for i in terminal(on)["output"] if i["type"] == "code_interpreter_call"]
    assert [o["type"] for o in item["outputs"]] == ["logs"]
    assert item["outputs"][0]["logs"]
    off = run(entry, on=False, stream=True, tools=tools)
    off_items = [
        e["item"]
        for e in off.events
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "code_interpreter_call"
    ]
    assert all(not (i.get("outputs") or []) for i in off_items)


# --- D6 cut items ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["truncated_final", "truncated_function_args"])
def test_d6_the_cut_item_is_incomplete(name: str, tools: Any) -> None:
    """SGLang alone marks the cut item ``incomplete`` in its stream, but not in
    its non-streamed response (a cut message ``completed``, a cut function call
    ``in_progress``); the plugin: ``incomplete`` in both."""
    entry = corpus.BY_NAME[name]
    off = run(entry, on=False, stream=False, tools=tools)
    assert off.json is not None
    assert off.json["status"] == "incomplete"
    assert off.json["output"][-1]["status"] in ("completed", "in_progress")
    for stream in (True, False):
        on = run(entry, on=True, stream=stream, tools=tools)
        final = terminal(on) if stream else on.json
        assert final is not None
        assert final["status"] == "incomplete"
        assert final["output"][-1]["status"] == "incomplete"


# --- D7 generation fails mid-stream ----------------------------------------------------


@pytest.mark.parametrize("after", [1, 20])
def test_d7_a_generation_error_ends_with_response_failed(
    after: int, monkeypatch: pytest.MonkeyPatch, tools: Any
) -> None:
    """The tokenizer manager raises after `after` outputs (an engine that died).
    SGLang alone: the exception leaves the stream, no terminal event. The plugin:
    the open item closes, ``response.failed`` carries the error, and the text
    read so far is in the items."""
    real = harness.ScriptedTokenizerManager.generate_request

    async def dying(self: Any, obj: Any, request: Any = None) -> Any:
        n = 0
        async for out in real(self, obj, request):
            if n == after:
                raise RuntimeError("the engine died")
            n += 1
            yield out

    monkeypatch.setattr(harness.ScriptedTokenizerManager, "generate_request", dying)
    entry = corpus.BY_NAME["reasoning_final"]
    with harness.plugin(False):
        off = harness.responses(entry, stream=True)
    assert not (off.events and off.events[-1]["type"] in TERMINAL)
    with harness.plugin(True):
        on = harness.responses(entry, stream=True)
    assert on.app_error is None
    final = terminal(on)
    assert on.events[-1]["type"] == "response.failed"
    assert final["error"] == {"code": "server_error", "message": "the engine died"}
    loose.check_stack(on.events)
    assert without_ids(streamed_items(on.events)) == without_ids(final["output"])
    streamed = "".join(e["delta"] for e in on.events if e["type"].endswith("text.delta"))
    assert streamed in all_text(final["output"]).replace("\n", "")
    problems = _strict_problems({"failed": on.events})
    assert problems == {}


# --- random streams: never an exception out of SGLang's serving loop --------------------


def _random_entry(seed: int) -> corpus.Entry:
    import random

    rng = random.Random(seed)
    text = corpus.random_harmony_text(rng)
    # Later turns answer whatever built-in call SGLang's tool loop runs.
    answer = corpus.Turn("<|channel|>final<|message|>ok<|return|>")
    return corpus.Entry(
        f"random_{seed}",
        (corpus.Turn(text, rng.choice(["stop", "length"])), answer, answer, answer),
        responses_tools=(corpus.WEATHER_RESPONSES,) if seed % 2 else (corpus.CONTAINER,),
    )


def test_random_streams_are_whole_and_valid(tools: Any) -> None:
    """40 seeded streams of random Harmony pieces (quirks, stray specials, calls to
    any recipient), stream and not, plugin on: 200, no exception out of the app,
    a terminal event, the whole event contract; not streamed, the same items
    (R2), which SGLang's response model serializes without a complaint."""
    import warnings

    streams: dict[str, list[dict[str, Any]]] = {}
    for seed in range(40):
        entry = _random_entry(seed)
        results = {}
        for stream in (True, False):
            with harness.plugin(True), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r = harness.responses(entry, stream=stream, tool_server=tools)
            assert r.status_code == 200, (entry.turns[0].text, r.body[:300])
            assert r.app_error is None, entry.turns[0].text
            assert not [
                str(w.message)[:600] for w in caught if "serializ" in str(w.message).lower()
            ]
            results[stream] = r
        streams[entry.name] = results[True].events
        final = loose_checks(results[True])
        plain = results[False].json
        assert plain is not None
        assert [without_ids(r2(i)) for i in final["output"]] == [
            without_ids(r2(i)) for i in plain["output"]
        ], entry.turns[0].text
    assert _strict_problems(streams) == {}


# --- the engine failing (a bug of ours) ------------------------------------------------


class _FailingStream:
    """A ResponseStream whose `feed` raises on its `n`-th call."""

    def __init__(self, real: Any, n: int) -> None:
        self._real = real
        self._n = n

    def feed(self, ids: Any) -> Any:
        from harmony_stream.errors import HarmonyStreamError

        self._n -= 1
        if self._n == 0:
            raise HarmonyStreamError("a bug in the engine")
        return self._real.feed(ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.parametrize("stream", [True, False])
def test_a_failing_engine_fails_the_response(stream: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never a response that ends without its items: streamed, the open item
    closes and ``response.failed`` follows; not streamed, the response is
    ``failed`` with the reason."""
    from harmony_stream import sglang_plugin

    real = sglang_plugin.ResponseStream
    monkeypatch.setattr(
        # Not streamed, the turn is one output: its first feed fails.
        sglang_plugin,
        "ResponseStream",
        lambda *a, **k: _FailingStream(real(*a, **k), 20 if stream else 1),
    )
    with harness.plugin(True):
        r = harness.responses(corpus.BY_NAME["reasoning_final"], stream=stream)
    assert r.status_code == 200
    assert r.app_error is None
    final = terminal(r) if stream else r.json
    assert final is not None
    assert final["status"] == "failed"
    assert final["error"] == {
        "code": "server_error",
        "message": "harmony-stream's event engine failed",
    }
    if stream:
        loose.check_stack(r.events)
        assert _strict_problems({"engine failed": r.events}) == {}
