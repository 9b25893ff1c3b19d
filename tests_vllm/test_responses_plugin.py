"""/v1/responses through vLLM 0.33.0's real serving code, plugin off vs on.

The oracle is vLLM itself: with the plugin on, every event and the final
response must equal vLLM's own (ids replaced by placeholders in order of first
appearance), except the intentional differences listed in README "Use with
vLLM" and below. Each difference has its own test, which also shows vLLM's
behaviour with the plugin off, so a test fails if vLLM stops behaving that way
(then the list is out of date) or if the plugin stops fixing it.

Representation rules applied to both sides before comparing (each is a
difference of spelling, not of content, and each is asserted by a test below):

* R1 a key whose value is null is the same as an absent key;
* R2 ``logprobs: []`` is the same as ``logprobs: null`` (no logprobs requested);
* R3 a reasoning item's ``content: []`` is the same as ``content: null``;
* R4 message items: vLLM sends ``phase: null``; the plugin sends the phase of
  the Harmony channel (``final`` → ``final_answer``, ``commentary`` →
  ``commentary``): ``phase`` is compared by :func:`test_message_phase_follows_the_channel`;
* R5 vLLM leaks ``output_index`` and ``sequence_number: -1`` into a
  ``function_call`` item: keys that are not fields of the item are dropped;
* R6 in vLLM's final response a reasoning item has ``status: null`` while its
  stream said ``completed``; the plugin keeps ``completed``.

Intentional differences (items that are compared by their own tests, not by
the generic comparison):

* D1 vllm#48274: an item with no delta (empty reasoning, empty message, a
  function call with empty arguments) gets no added/done events from vLLM;
* D2 vllm#52443: a browser call is streamed by vLLM as an ``mcp_call`` and
  then as a ``web_search_call``; the plugin streams one ``web_search_call``;
* D3 (vllm#23221, tool output not streamed for MCP tools): vLLM sends
  ``mcp_call.completed`` when the model's call message ends, before the tool
  ran, with no ``output`` and no ``failed`` path, and names the call by the
  whole recipient (``container.exec``); the plugin closes the call after the
  tool ran with its ``output`` (or ``mcp_call.failed`` and the ``error``), and
  names it by the tool (``exec``) under its ``server_label``;
* D4 (no vLLM issue found; nearest vllm#30222): vLLM sends
  ``code_interpreter_call.completed`` before the code ran, with ``outputs: []``,
  and its final response lists the python call as a ``reasoning`` item; the
  plugin sends the tool's output as ``logs`` and keeps the same item in the
  final response;
* D6 (no vLLM issue found): the item that ``max_output_tokens`` cut is
  ``completed`` in vLLM's stream (and a cut reasoning item has ``status: null``
  in its final response); the plugin closes it ``incomplete`` in both. The
  generic comparison reads vLLM's cut item as ``incomplete``
  (:func:`truncation_rule`); :func:`test_d6_the_cut_item_is_incomplete` shows both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import corpus
import harness
import mcp_servers
import pytest
import vllm
from stream_checks import loose as validate
from stream_checks import validate_stream

Event = dict[str, Any]
ID_KEYS = frozenset({"id", "item_id", "call_id", "container_id"})
BUILTIN_KINDS = frozenset({"mcp_call", "web_search_call", "code_interpreter_call"})
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
ITEM_FIELDS_LEAKED = frozenset({"output_index", "sequence_number"})  # R5
STEPS = (1, 3, 16)

CLEAN = [e for e in corpus.CLEAN]
CLEAN_IDS = [e.name for e in CLEAN]


# --- running ---------------------------------------------------------------------

_cache: dict[tuple[str, bool, bool, int], harness.Result] = {}


def run(
    entry: corpus.Entry, *, on: bool, stream: bool, tool_server: Any, step: int = 1
) -> harness.Result:
    key = (entry.name, on, stream, step)
    if key not in _cache:
        with harness.plugin(on):
            _cache[key] = harness.responses(
                entry, stream=stream, step=step, tool_server=tool_server
            )
    return _cache[key]


# --- ids and representation ------------------------------------------------------


def placeholders(obj: Any) -> Any:
    """Ids → `<n>` in order of first appearance (keys walked in sorted order,
    so the two sides' key order does not matter); `created_at` → `<t>`."""
    seen: dict[str, str] = {}

    def walk(x: Any, key: str | None = None) -> Any:
        if isinstance(x, dict):
            return {k: walk(x[k], k) for k in sorted(x)}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if key in ID_KEYS and isinstance(x, str):
            return seen.setdefault(x, f"<{len(seen)}>")
        if key == "created_at":
            return "<t>"
        return x

    return walk(obj)


def canon(obj: Any, parent: str | None = None) -> Any:
    """R1-R5 (R6 is applied to final responses only)."""
    if isinstance(obj, list):
        return [canon(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if v is None:  # R1
            continue
        if k == "logprobs" and v == []:  # R2
            continue
        if k == "phase":  # R4 (its own test)
            continue
        if parent == "item" and k in ITEM_FIELDS_LEAKED:  # R5
            continue
        out[k] = canon(v, k)
    if out.get("type") == "reasoning" and out.get("content") == []:  # R3
        del out["content"]
    return out


# Fields vLLM adds to its Response objects (not in openai-python's Response).
VLLM_RESPONSE_EXTENSIONS = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "ec_transfer_params",
        "kv_transfer_params",
        "output_messages",
        "input_messages",
    }
)


def without_vllm_extensions(event: Event) -> Event:
    if "response" not in event:
        return event
    response = {k: v for k, v in event["response"].items() if k not in VLLM_RESPONSE_EXTENSIONS}
    usage = response.get("usage")
    if usage:
        # ... and to its usage details: per-turn counts and tool output tokens.
        usage = dict(usage)
        for details in ("input_tokens_details", "output_tokens_details"):
            if usage.get(details):
                usage[details] = {
                    k: v
                    for k, v in usage[details].items()
                    if not k.endswith("_per_turn") and k != "tool_output_tokens"
                }
        response["usage"] = usage
    # R1: vLLM writes the final response's items with pydantic (absent → null).
    response["output"] = drop_none(response.get("output") or [])
    return {**event, "response": response}


def r1_items(event: Event) -> Event:
    """R1 on the items of output_item events too (the engine writes `url: null`)."""
    if "item" in event:
        return {**event, "item": drop_none(event["item"])}
    return event


def drop_none(obj: Any) -> Any:
    """R1 alone."""
    if isinstance(obj, list):
        return [drop_none(v) for v in obj]
    if isinstance(obj, dict):
        return {k: drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def item_text(item: dict[str, Any]) -> str:
    if item["type"] in ("reasoning", "message"):
        return "".join(c.get("text") or "" for c in item.get("content") or [])
    if item["type"] in ("function_call", "mcp_call"):
        return str(item.get("arguments") or "")
    if item["type"] == "code_interpreter_call":
        return str(item.get("code") or "")
    return ""


def done_items(events: list[Event]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def terminal(events: list[Event]) -> Event:
    last = events[-1]
    assert last["type"] in TERMINAL, last["type"]
    return last


def project(events: list[Event], keep: Callable[[dict[str, Any]], bool]) -> list[Event]:
    """The events of the items `keep` accepts (plus the envelope), output_index
    renumbered over the kept items, sequence_number dropped."""
    kept_ids: set[str] = set()
    dropped_ids: set[str] = set()
    for e in events:
        if e["type"] == "response.output_item.done":
            (kept_ids if keep(e["item"]) else dropped_ids).add(e["item"]["id"])
    index: dict[int, int] = {}
    out: list[Event] = []
    for e in events:
        item_id = e.get("item_id") or (e.get("item") or {}).get("id")
        if item_id is not None and (item_id in dropped_ids or item_id not in kept_ids):
            continue
        e = {k: v for k, v in e.items() if k != "sequence_number"}
        if "output_index" in e:
            e["output_index"] = index.setdefault(e["output_index"], len(index))
        if e["type"] in TERMINAL:
            response = dict(e["response"])
            response["output"] = [
                {**i, "status": i.get("status") or "completed"}  # R6
                if i["type"] == "reasoning"
                else i
                for i in response["output"]
                if keep(i)
            ]
            e["response"] = response
        out.append(e)
    return out


def generic(item: dict[str, Any]) -> bool:
    """Items outside D1-D4: compared event by event."""
    return item["type"] not in BUILTIN_KINDS and item_text(item) != ""


def python_codes(entry: corpus.Entry) -> set[str]:
    codes = set()
    for turn in entry.turns:
        call = corpus.builtin_call(turn)
        if call is not None and call.server == "python":
            codes.add(call.arguments["code"])
    return codes


def vllm_final_keep(entry: corpus.Entry) -> Callable[[dict[str, Any]], bool]:
    """D4: vLLM's final response lists a python call as a reasoning item."""
    codes = python_codes(entry)
    return lambda i: generic(i) and not (i["type"] == "reasoning" and item_text(i) in codes)


def truncated(entry: corpus.Entry) -> bool:
    return entry.turns[-1].finish_reason == "length"


def truncation_rule(entry: corpus.Entry, events: list[Event]) -> list[Event]:
    """D6 on vLLM's side: the last item of a cut response reads `incomplete`; D9
    (vLLM 0.32): its terminal event is `response.incomplete`, not `response.completed`."""
    if not truncated(entry):
        return events
    events = [
        {**e, "type": "response.incomplete"}
        if e["type"] == "response.completed" and e["response"]["status"] == "incomplete"
        else e
        for e in events
    ]
    done = [e for e in events if e["type"] == "response.output_item.done"]
    last_id = done[-1]["item"]["id"] if done else None
    out = []
    for e in events:
        if e["type"] == "response.output_item.done" and e["item"]["id"] == last_id:
            e = {**e, "item": {**e["item"], "status": "incomplete"}}
        elif e["type"] in TERMINAL:
            output = e["response"]["output"]
            output = [{**i, "status": "incomplete"} if i is output[-1] else i for i in output]
            e = {**e, "response": {**e["response"], "output": output}}
        out.append(e)
    return out


# --- the generic comparison -----------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("entry", CLEAN, ids=CLEAN_IDS)
def test_stream_equals_vllm_outside_the_listed_differences(
    entry: corpus.Entry, step: int, tool_server: Any
) -> None:
    off = run(entry, on=False, stream=True, tool_server=tool_server, step=step)
    on = run(entry, on=True, stream=True, tool_server=tool_server, step=step)
    assert off.status_code == on.status_code == 200
    assert on.app_error is None
    a = canon(placeholders(project(truncation_rule(entry, off.events), vllm_final_keep(entry))))
    b = canon(placeholders(project(on.events, generic)))
    assert len(a) == len(b), (
        [e["type"] for e in a],
        [e["type"] for e in b],
    )
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"event {i}"


@pytest.mark.parametrize("entry", CLEAN, ids=CLEAN_IDS)
def test_non_streaming_response_equals_vllm_outside_the_listed_differences(
    entry: corpus.Entry, tool_server: Any
) -> None:
    off = run(entry, on=False, stream=False, tool_server=tool_server)
    on = run(entry, on=True, stream=False, tool_server=tool_server)
    assert off.status_code == on.status_code == 200, (off.body[:300], on.body[:300])
    assert off.json is not None
    assert on.json is not None
    (off_event,) = truncation_rule(entry, [{"type": "response.completed", "response": off.json}])
    a = canon(placeholders(_final_projection(off_event["response"], vllm_final_keep(entry))))
    b = canon(placeholders(_final_projection(on.json, generic)))
    assert a == b


def _final_projection(response: dict[str, Any], keep: Callable[[Any], bool]) -> dict[str, Any]:
    event = {"type": "response.completed", "response": response}
    (projected,) = project([event], keep)
    return projected["response"]  # type: ignore[no-any-return]


# --- the plugin's own guarantees --------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("entry", CLEAN, ids=CLEAN_IDS)
def test_streamed_items_are_the_final_response(
    entry: corpus.Entry, step: int, tool_server: Any
) -> None:
    """Ids included: output_item.done items == response.completed output (R1:
    vLLM writes the final response with pydantic, which spells absent fields null)."""
    on = run(entry, on=True, stream=True, tool_server=tool_server, step=step)
    assert drop_none(done_items(on.events)) == drop_none(terminal(on.events)["response"]["output"])


@pytest.mark.parametrize("entry", CLEAN, ids=CLEAN_IDS)
def test_non_streaming_equals_streaming(entry: corpus.Entry, tool_server: Any) -> None:
    streamed = run(entry, on=True, stream=True, tool_server=tool_server)
    plain = run(entry, on=True, stream=False, tool_server=tool_server)
    assert plain.json is not None
    assert placeholders(plain.json) == placeholders(terminal(streamed.events)["response"])


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("entry", corpus.CORPUS, ids=[e.name for e in corpus.CORPUS])
def test_every_event_passes_the_validators(
    entry: corpus.Entry, step: int, tool_server: Any
) -> None:
    on = run(entry, on=True, stream=True, tool_server=tool_server, step=step)
    assert on.status_code == 200
    assert on.app_error is None
    validate.check_stack(on.events)
    validate.check_framing(on.sse_event_names, on.events)
    validate.check_schema(on.events, terminal(on.events)["response"])
    # The strict validator of the engine's own suite (pairing, per-kind order,
    # deltas == done == final, gapless sequence numbers, openai types), on the
    # events with vLLM's own extension fields taken off its response objects.
    validate_stream([r1_items(without_vllm_extensions(e)) for e in on.events])


def test_message_phase_follows_the_channel(tool_server: Any) -> None:
    """R4: the plugin's phase is the channel's; vLLM sends null."""
    entry = corpus.BY_NAME["preamble_function_call"]
    channels = [h for h, _ in corpus.message_contents(entry.tokens)]
    expected = [
        "commentary" if "commentary" in h else "final_answer"
        for h in channels
        if "to=" not in h and "analysis" not in h
    ]
    on = run(entry, on=True, stream=True, tool_server=tool_server)
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    assert [i["phase"] for i in done_items(on.events) if i["type"] == "message"] == expected
    assert {i.get("phase") for i in done_items(off.events) if i["type"] == "message"} == {None}


def test_representation_rules_are_what_vllm_sends(tool_server: Any) -> None:
    """R2, R3, R5, R6 describe vLLM's stream as it is (else the rules are stale)."""
    entry = corpus.BY_NAME["preamble_function_call"]
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    on = run(entry, on=True, stream=True, tool_server=tool_server)
    added = [e["item"] for e in off.events if e["type"] == "response.output_item.added"]
    assert [i["content"] for i in added if i["type"] == "reasoning"] == [None]  # R3
    parts = [e["part"] for e in off.events if e["type"] == "response.content_part.done"]
    assert {p.get("logprobs", "absent") for p in parts if p["type"] == "output_text"} == {None}
    fc = [i for i in done_items(off.events) if i["type"] == "function_call"]
    assert fc
    assert all(i.get("sequence_number") == -1 for i in fc)
    final_reasoning = [
        i for i in terminal(off.events)["response"]["output"] if i["type"] == "reasoning"
    ]
    assert final_reasoning
    assert {i["status"] for i in final_reasoning} == {None}
    # ... and the plugin's spelling.
    on_parts = [e["part"] for e in on.events if e["type"] == "response.content_part.done"]
    assert {str(p.get("logprobs")) for p in on_parts if p["type"] == "output_text"} == {"[]"}
    assert all(ITEM_FIELDS_LEAKED.isdisjoint(i) for i in done_items(on.events) if i["type"] != "x")
    on_final = terminal(on.events)["response"]["output"]
    assert {i["status"] for i in on_final if i["type"] == "reasoning"} == {"completed"}


# --- D6: the item max_output_tokens cut --------------------------------------------------

TRUNCATED = [e for e in corpus.CLEAN if truncated(e)]


@pytest.mark.parametrize("entry", TRUNCATED, ids=[e.name for e in TRUNCATED])
def test_d6_the_cut_item_is_incomplete(entry: corpus.Entry, tool_server: Any) -> None:
    on = run(entry, on=True, stream=True, tool_server=tool_server)
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    assert terminal(on.events)["type"] == "response.incomplete"
    # D9: vLLM 0.31 and 0.32 name that terminal event `response.completed` (0.33 fixed it).
    off_terminal = (
        "response.completed" if vllm.__version__ in ("0.31.0", "0.32.0") else "response.incomplete"
    )
    assert terminal(off.events)["type"] == off_terminal
    assert terminal(off.events)["response"]["status"] == "incomplete"
    assert done_items(on.events)[-1]["status"] == "incomplete"
    assert terminal(on.events)["response"]["output"][-1]["status"] == "incomplete"
    # vLLM: `completed` in the stream.
    assert done_items(off.events)[-1]["status"] == "completed"
    off_last = terminal(off.events)["response"]["output"][-1]
    assert off_last["status"] != "incomplete" or off_last["type"] != "reasoning"


# --- D1: items with no delta (vllm#48274) ----------------------------------------------

ZERO_DELTA = ["empty_reasoning", "empty_final", "empty_function_args"]


@pytest.mark.parametrize("name", ZERO_DELTA)
def test_d1_items_without_delta_keep_their_lifecycle(name: str, tool_server: Any) -> None:
    entry = corpus.BY_NAME[name]
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    on = run(entry, on=True, stream=True, tool_server=tool_server)

    def empty_done(events: list[Event]) -> list[dict[str, Any]]:
        return [i for i in done_items(events) if item_text(i) == ""]

    # vLLM: the empty item is in its final response but was never streamed.
    off_final = terminal(off.events)["response"]["output"]
    assert empty_done(off.events) == []
    assert len(done_items(off.events)) < len(off_final)
    # The plugin: added and done, in the stream and in the final response.
    empty = empty_done(on.events)
    assert len(empty) == 1
    added = [
        e["item"]["id"]
        for e in on.events
        if e["type"] == "response.output_item.added" and e["item"]["id"] == empty[0]["id"]
    ]
    assert added == [empty[0]["id"]]
    assert drop_none(empty[0]) in drop_none(terminal(on.events)["response"]["output"])


# --- D2: browser calls (vllm#52443) ------------------------------------------------------

BROWSER = ["browser_search_open", "browser_find", "tool_loop_multi_turn"]


def _calls(entry: corpus.Entry, server: str) -> list[corpus.BuiltinCall]:
    calls = [corpus.builtin_call(t) for t in entry.turns]
    return [c for c in calls if c is not None and c.server == server]


@pytest.mark.parametrize("name", BROWSER)
def test_d2_a_browser_call_is_one_web_search_call(name: str, tool_server: Any) -> None:
    entry = corpus.BY_NAME[name]
    n_calls = len(_calls(entry, "browser"))
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    on = run(entry, on=True, stream=True, tool_server=tool_server)

    def kinds(events: list[Event], kind: str) -> list[dict[str, Any]]:
        return [i for i in done_items(events) if i["type"] == kind]

    off_mcp = [i for i in kinds(off.events, "mcp_call") if i["name"].startswith("browser.")]
    assert len(off_mcp) == n_calls  # vLLM: the same call as an mcp_call ...
    assert len(kinds(off.events, "web_search_call")) == n_calls  # ... and a web_search_call
    on_mcp = [i for i in kinds(on.events, "mcp_call") if i["name"].startswith("browser")]
    assert on_mcp == []
    ws = kinds(on.events, "web_search_call")
    assert len(ws) == n_calls
    assert all(i["status"] == "completed" for i in ws)
    assert drop_none(ws) == drop_none(
        [i for i in terminal(on.events)["response"]["output"] if i["type"] == "web_search_call"]
    )


# --- D3: MCP calls through vLLM's tool server --------------------------------------------


def _server_result(mcp: mcp_servers.RunningServers, call: corpus.BuiltinCall) -> tuple[bool, str]:
    """What the real MCP server answers to the same call, asked directly."""
    url = f"http://{mcp.host}:{mcp.port}/{call.server}/sse"
    return harness.run(mcp_servers.call_tool_directly(url, call.tool, call.arguments))  # type: ignore[no-any-return]


@pytest.mark.parametrize("stream", [True, False])
def test_d3_mcp_call_carries_the_real_tool_output(
    stream: bool, tool_server: Any, mcp: mcp_servers.RunningServers
) -> None:
    entry = corpus.BY_NAME["container_exec"]
    (call,) = _calls(entry, "container")
    is_error, text = _server_result(mcp, call)
    assert not is_error
    assert text
    on = run(entry, on=True, stream=stream, tool_server=tool_server)
    final = (terminal(on.events)["response"] if stream else on.json) or {}
    (item,) = [i for i in final["output"] if i["type"] == "mcp_call"]
    assert item["output"] == text
    assert item["status"] == "completed"
    assert (item["server_label"], item["name"]) == ("container", call.tool)
    if stream:
        types = [e["type"] for e in on.events if e.get("item_id") == item["id"]]
        assert types[-1] == "response.mcp_call.completed"
        (streamed,) = [i for i in done_items(on.events) if i["type"] == "mcp_call"]
        assert drop_none(streamed) == drop_none(item)
    # vLLM: no output; in its stream, the whole recipient as the name.
    off = run(entry, on=False, stream=stream, tool_server=tool_server)
    off_final = (terminal(off.events)["response"] if stream else off.json) or {}
    (off_item,) = [i for i in off_final["output"] if i["type"] == "mcp_call"]
    assert off_item.get("output") is None
    if stream:
        (off_streamed,) = [i for i in done_items(off.events) if i["type"] == "mcp_call"]
        assert off_streamed["name"] == "container.exec"
        assert off_streamed.get("output") is None


def test_d3_a_failing_mcp_tool_is_mcp_call_failed(
    tool_server: Any, mcp: mcp_servers.RunningServers
) -> None:
    entry = corpus.BY_NAME["container_exec_error"]
    (call,) = _calls(entry, "container")
    is_error, text = _server_result(mcp, call)
    assert is_error
    assert text
    on = run(entry, on=True, stream=True, tool_server=tool_server)
    (item,) = [i for i in done_items(on.events) if i["type"] == "mcp_call"]
    assert item["status"] == "failed"
    assert item.get("output") is None
    assert text in str(item["error"])
    types = [e["type"] for e in on.events if e.get("item_id") == item["id"]]
    assert "response.mcp_call.failed" in types
    assert "response.mcp_call.completed" not in types
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    off_types = [e["type"] for e in off.events]
    assert "response.mcp_call.completed" in off_types
    assert "response.mcp_call.failed" not in off_types


# --- D4: code interpreter -------------------------------------------------------------


@pytest.mark.parametrize("name", ["python_call", "tool_loop_multi_turn"])
def test_d4_code_interpreter_carries_its_output(
    name: str, tool_server: Any, mcp: mcp_servers.RunningServers
) -> None:
    entry = corpus.BY_NAME[name]
    calls = _calls(entry, "python")
    expected = [_server_result(mcp, c)[1] for c in calls]
    on = run(entry, on=True, stream=True, tool_server=tool_server)
    ci = [i for i in done_items(on.events) if i["type"] == "code_interpreter_call"]
    assert [i["code"] for i in ci] == [c.arguments["code"] for c in calls]
    assert [[o["logs"] for o in i["outputs"]] for i in ci] == [[t] for t in expected]
    assert drop_none(ci) == drop_none(
        [
            i
            for i in terminal(on.events)["response"]["output"]
            if i["type"] == "code_interpreter_call"
        ]
    )
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    off_ci = [i for i in done_items(off.events) if i["type"] == "code_interpreter_call"]
    assert [i["outputs"] for i in off_ci] == [[] for _ in calls]
    off_final = terminal(off.events)["response"]["output"]
    assert not [i for i in off_final if i["type"] == "code_interpreter_call"]
    assert {c.arguments["code"] for c in calls} <= {item_text(i) for i in off_final}


# --- bad input: the quirks of docs/architecture.md, Lenient parsing ------------------------


def _all_text(response: dict[str, Any]) -> str:
    return "\n".join(item_text(i) for i in response["output"])


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("entry", corpus.QUIRKS, ids=[e.name for e in corpus.QUIRKS])
def test_quirks_never_fail_and_lose_no_text(
    entry: corpus.Entry, step: int, tool_server: Any
) -> None:
    """Every message content the model wrote (read from the tokens alone) is in
    the final response, and the serving loop raised nothing."""
    on = run(entry, on=True, stream=True, tool_server=tool_server, step=step)
    assert on.status_code == 200
    assert on.app_error is None
    final = terminal(on.events)["response"]
    text = _all_text(final)
    for header, content in corpus.message_contents(entry.tokens):
        assert content in text, (header, content)
    plain = run(entry, on=True, stream=False, tool_server=tool_server)
    assert plain.status_code == 200
    assert plain.json is not None
    assert placeholders(plain.json) == placeholders(final)


@pytest.mark.parametrize(
    "name", ["quirk_malformed_channel", "quirk_double_start", "quirk_missing_start"]
)
def test_quirks_vllm_alone_fails_or_loses_the_answer(name: str, tool_server: Any) -> None:
    """D5 (parser): what the plugin fixes here, shown on vLLM alone."""
    entry = corpus.BY_NAME[name]
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    contents = [c for _, c in corpus.message_contents(entry.tokens) if c]
    has_terminal = bool(off.events) and off.events[-1]["type"] in TERMINAL
    lost = not has_terminal or any(
        c not in _all_text(terminal(off.events)["response"]) for c in contents
    )
    assert lost


def test_quirk_cut_header_is_not_returned_as_the_answer(tool_server: Any) -> None:
    """D5: vLLM returns the raw header text of a stream cut inside a header as
    the answer; the plugin drops the partial header (lenient mode's
    `header_without_message`)."""
    entry = corpus.BY_NAME["quirk_cut_in_header"]
    off = run(entry, on=False, stream=True, tool_server=tool_server)
    on = run(entry, on=True, stream=True, tool_server=tool_server)

    def messages(events: list[Event]) -> list[str]:
        output = terminal(events)["response"]["output"]
        return [item_text(i) for i in output if i["type"] == "message"]

    assert any("<|channel|>" in m for m in messages(off.events))
    assert messages(on.events) == []


def _ids(events: Iterable[Event]) -> list[str]:
    return [e["item"]["id"] for e in events if e["type"] == "response.output_item.added"]


def test_item_ids_have_the_engine_prefixes(tool_server: Any) -> None:
    entry = corpus.BY_NAME["tool_loop_multi_turn"]
    on = run(entry, on=True, stream=True, tool_server=tool_server)
    prefixes = {re.sub(r"_.*", "", i) for i in _ids(on.events)}
    assert prefixes == {"rs", "mcp", "ci", "ws", "msg"}


# --- background mode: vLLM stores the event objects and the response ---------------


async def _get(app: harness.App, path: str) -> Any:
    """GET through the app in process; a response that never ends fails after 30 s
    (httpx's timeout does not reach an in-process ASGI app)."""
    import asyncio

    import httpx

    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://vllm.test") as client:
        return await asyncio.wait_for(client.get(path), timeout=30)


# truncated_final: an incomplete response, whose replay vLLM 0.32 never ended (D9).
@pytest.mark.parametrize("name", ["container_exec", "tool_loop_multi_turn", "truncated_final"])
def test_background_stream_replays_the_same_events_and_stores_the_items(
    name: str, tool_server: Any
) -> None:
    entry = corpus.BY_NAME[name]
    foreground = run(entry, on=True, stream=True, tool_server=tool_server)
    with harness.plugin(True):
        app = harness.get_app(tool_server)
        app.responses.enable_store = True
        try:
            bg = harness.responses(
                entry,
                stream=True,
                tool_server=tool_server,
                extra_request_fields={"background": True, "store": True},
            )
            response_id = terminal(bg.events)["response"]["id"]
            stored = harness.run(_get(app, f"/v1/responses/{response_id}"))
            replay = harness.run(_get(app, f"/v1/responses/{response_id}?stream=true"))
        finally:
            app.responses.enable_store = False
    assert bg.status_code == 200
    assert bg.app_error is None

    # The same item events as in the foreground (ids as placeholders); the
    # envelope differs by design (background, store), its output does not.
    def items_and_output(events: list[Event]) -> Any:
        return placeholders(
            [e for e in events if "response" not in e] + [terminal(events)["response"]["output"]]
        )

    assert items_and_output(bg.events) == items_and_output(foreground.events)
    assert terminal(bg.events)["response"]["background"] is True
    # The stored response carries the streamed items, ids included ...
    assert stored.status_code == 200
    assert drop_none(stored.json()["output"]) == drop_none(done_items(bg.events))
    # ... and a second reader gets the stored event objects again, unchanged.
    _, replayed, _ = harness.parse_sse(replay.content)
    assert replayed == bg.events


# --- random garbage through vLLM with the plugin: never raises out of the loop -----


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_never_break_the_serving_loop(seed: int, tool_server: Any) -> None:
    import random

    rng = random.Random(seed)
    text = corpus.random_harmony_text(rng)
    finish = rng.choice(["stop", "length"])
    # Later turns answer whatever tool call vLLM's loop runs.
    answer = corpus.Turn("<|channel|>final<|message|>ok<|return|>")
    entry = corpus.Entry(
        f"random_{seed}",
        (corpus.Turn(text, finish), answer, answer, answer),
        # vLLM 0.33 refuses an MCP tool beside a function tool (HTTP 400): one or the other.
        responses_tools=(corpus.WEATHER_RESPONSES,) if seed % 2 else (corpus.CONTAINER,),
    )
    for stream in (True, False):
        with harness.plugin(True):
            r = harness.responses(entry, stream=stream, tool_server=tool_server)
        assert r.status_code == 200, (text, r.body[:300])
        assert r.app_error is None, text
        if stream:
            validate.check_stack(r.events)
            validate_stream([r1_items(without_vllm_extensions(e)) for e in r.events])


# --- D7 / D8: tool calls the model got wrong ---------------------------------------

_FINAL_OK = corpus.Turn("<|channel|>final<|message|>Sorry, that did not work.<|return|>")


def _exec_entry(name: str, call: str, finish: str) -> corpus.Entry:
    return corpus.Entry(
        name,
        (
            corpus.Turn(
                "<|channel|>analysis<|message|>Run it.<|end|><|start|>assistant"
                "<|channel|>analysis to=container.exec <|constrain|>json<|message|>" + call,
                finish,
            ),
            _FINAL_OK,
        ),
        responses_tools=(corpus.CONTAINER,),
    )


def test_d7_a_tool_call_that_raises_fails_the_call_not_the_request(tool_server: Any) -> None:
    """vLLM 0.33 lets `json.loads` of the model's arguments raise out of its tool
    loop; with the plugin the call closes `mcp_call.failed` with the error, the
    model gets the error as the tool's answer, and the response completes."""
    entry = _exec_entry("exec_bad_json", "ls -la<|call|>", "stop")
    with harness.plugin(False):
        off = harness.responses(entry, stream=True, tool_server=tool_server)
    assert off.app_error is not None  # raised out of vLLM's loop mid-stream ...
    assert terminal_or_none(off.events) is None  # ... so the stream has no end
    with harness.plugin(True):
        on = harness.responses(entry, stream=True, tool_server=tool_server)
    assert on.status_code == 200
    assert on.app_error is None
    final = terminal(on.events)
    assert final["type"] == "response.completed"
    (item,) = [i for i in final["response"]["output"] if i["type"] == "mcp_call"]
    assert item["status"] == "failed"
    assert "JSONDecodeError" in str(item["error"])
    assert "response.mcp_call.failed" in [e["type"] for e in on.events]
    # The second model turn saw the error in its prompt, and answered.
    assert len(on.calls) == 2
    assert "JSONDecodeError" in on.calls[1].prompt_text
    assert item_text(final["response"]["output"][-1]) == "Sorry, that did not work."


def test_d8_a_call_cut_by_max_tokens_is_not_run(
    tool_server: Any, mcp: mcp_servers.RunningServers
) -> None:
    """vLLM 0.33 runs a built-in call whose arguments max_tokens cut off; the
    plugin does not run it, and the item closes `incomplete`."""
    entry = _exec_entry("exec_cut", '{"cmd": ["seq", "3', "length")
    before = len(mcp.log.snapshot())
    with harness.plugin(True):
        on = harness.responses(entry, stream=True, tool_server=tool_server)
    assert on.app_error is None
    assert len(on.calls) == 1  # no second model turn: no tool ran
    assert [c for c in mcp.log.snapshot()[before:] if c[1] == "exec"] == []
    final = terminal(on.events)
    assert final["type"] == "response.incomplete"
    (item,) = [i for i in final["response"]["output"] if i["type"] == "mcp_call"]
    assert item["status"] == "incomplete"
    with harness.plugin(False):
        off = harness.responses(entry, stream=True, tool_server=tool_server)
    # vLLM runs it with the cut arguments: its JSON error ends the stream.
    assert off.app_error is not None
    assert terminal_or_none(off.events) is None


def terminal_or_none(events: list[Event]) -> Event | None:
    return events[-1] if events and events[-1]["type"] in TERMINAL else None


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_never_break_chat_completions(seed: int) -> None:
    """The same random streams through /v1/chat/completions (parser only)."""
    import random

    rng = random.Random(1000 + seed)
    text = corpus.random_harmony_text(rng)
    entry = corpus.Entry(
        f"random_chat_{seed}",
        (corpus.Turn(text, rng.choice(["stop", "length"])),),
        chat_tools=(corpus.WEATHER_CHAT,),
    )
    for stream in (True, False):
        with harness.plugin(True):
            r = harness.chat(entry, stream=stream)
        assert r.status_code == 200, (text, r.body[:300])
        assert r.app_error is None, text
        if stream:
            assert r.done_marker, text
            assert not [e for e in r.events if "error" in e], text


def test_d3b_an_mcp_call_vllm_never_runs_fails_with_the_reason() -> None:
    """vLLM 0.33's tool loop runs only browser/python/container: a call to any
    other MCP server never runs. vLLM still says `mcp_call.completed` (no output);
    the plugin says `mcp_call.failed` with why."""
    entry = corpus.Entry(
        "github_call",
        (
            corpus.Turn(
                "<|channel|>commentary to=github.search_issues <|constrain|>json"
                '<|message|>{"q": "parser"}<|call|>'
            ),
        ),
        responses_tools=(
            {"type": "mcp", "server_label": "github", "server_url": "http://unused.invalid"},
        ),
    )
    results = {}
    for on in (False, True):
        with harness.plugin(on):
            results[on] = harness.responses(entry, stream=True)
        assert results[on].status_code == 200
        assert results[on].app_error is None
    (off_item,) = done_items(results[False].events)
    assert off_item["status"] == "completed"
    assert off_item.get("output") is None
    (on_item,) = done_items(results[True].events)
    assert (on_item["type"], on_item["server_label"], on_item["name"]) == (
        "mcp_call",
        "github",
        "search_issues",
    )
    assert on_item["status"] == "failed"
    assert "the response finished before the tool result arrived" in str(on_item["error"])
    assert len(results[True].calls) == 1  # nothing was run, no second model turn
